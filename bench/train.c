/*
 * bench/train.c: DP-SGD training throughput (issue 3's benchmark). On a
 * synthetic dataset of --rows rows (default 1M; written as .npy to a tmpfs
 * directory and memory-mapped, as real datasets are), MLP D->64->64->2, for
 * each expected batch size: examples/s of DP-SGD, of DP-SGD with the noise
 * drawn inline (no noise thread), and of --no-dp; the time per phase; and the
 * floor: the same eight matrix products of a step (3 forward, 2 backward to
 * activations, 3 weight gradients) at the full batch, through OpenBLAS alone.
 *
 *   build/bench/train [--rows N] [--d 64,80] [--batch 256,1024,4096]
 *                     [--steps-examples E] [--threads T] [--json]
 * D = 80 is the width prep gives the PUMS unemployment task (--pums DIR reads
 * it from a prepared dataset's meta.json instead).
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "dpsgd/dpsgd.h"
#include "dpsgd/train.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) {
    return clock_s(CLOCK_MONOTONIC);
}

static void die(const char *what, dp_status st) {
    fprintf(stderr, "bench/train: %s: %s\n", what, st ? dp_last_error() : "failed");
    exit(2);
}

/* rows x d features, uniform-ish from a 64-bit LCG, labels from a linear rule
 * with 10% label noise (so the task is not trivially separable). */
static char *make_dataset(size_t rows, size_t d) {
    const char *base = getenv("DP_BENCH_DIR");
    char *dir = malloc(4096);
    snprintf(dir, 4096, "%s/dpsgd-bench-train-XXXXXX", base ? base : "/dev/shm");
    if (!mkdtemp(dir)) {
        snprintf(dir, 4096, "/tmp/dpsgd-bench-train-XXXXXX");
        if (!mkdtemp(dir)) die("mkdtemp", DP_E_IO);
    }
    float *X = malloc(rows * d * sizeof(float));
    int32_t *y = malloc(rows * sizeof(int32_t));
    uint64_t s = 0x9e3779b97f4a7c15ULL ^ d;
    for (size_t i = 0; i < rows; i++) {
        double dot = 0;
        for (size_t j = 0; j < d; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            float v = (float)((double)(s >> 11) * 0x1.0p-53 * 2 - 1);
            X[i * d + j] = v;
            dot += v * ((j % 3) - 1.0);
        }
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        y[i] = (dot > 0) ^ ((s >> 11) * 0x1.0p-53 < 0.1);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/X_train.npy", dir);
    dp_status st = dp_npy_write_f32(path, X, rows, d);
    if (st) die(path, st);
    snprintf(path, sizeof path, "%s/y_train.npy", dir);
    if ((st = dp_npy_write_i32(path, y, rows))) die(path, st);
    free(X);
    free(y);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(
        f,
        "{\"format\": \"dpsgd-dataset\", \"version\": 1, \"n_features\": %zu, \"n_classes\": 2, "
        "\"schema_hash\": \"bench\", \"columns\": [",
        d);
    for (size_t j = 0; j < d; j++)
        fprintf(f, "%s\"x%zu\"", j ? ", " : "", j);
    fprintf(f, "], \"splits\": {\"train\": {\"rows\": %zu}}}\n", rows);
    fclose(f);
    return dir;
}

/* Wall time is what a user sees; on a shared machine it includes time the
 * threads were preempted, so CPU time is recorded too: examples per CPU
 * second of the stepping thread (what one idle core would do, with the noise
 * thread on another) and the CPU the rest of the process (noise thread,
 * OpenMP workers) spent per step. */
typedef struct measure {
    double ex_per_s, step_us, ex_per_cpu_s, other_cpu_us;
    dp_train_timings t; /* measured steps only */
} measure;

static void sub(dp_train_timings *a, const dp_train_timings *b) {
    a->sample -= b->sample, a->gather -= b->gather, a->forward -= b->forward;
    a->backward -= b->backward, a->norms -= b->norms, a->wgrad -= b->wgrad;
    a->noise -= b->noise, a->optimizer -= b->optimizer, a->total -= b->total;
    a->steps -= b->steps, a->examples -= b->examples;
}

static measure run(const dp_dataset *ds, double batch, int private_, int noise_ahead,
                   uint64_t steps) {
    dp_train_config c;
    dp_train_config_default(&c);
    c.batch_size = batch;
    c.private_ = private_;
    c.noise_multiplier = private_ ? 1.0 : 0;
    c.noise_ahead = noise_ahead;
    c.seeded = 1;
    c.seed = 7;
    c.lr = 0.05;
    uint64_t warm = 10;
    c.max_steps = warm + steps;
    dp_trainer *t;
    dp_status st = dp_trainer_create(ds, &c, &t);
    if (st) die("trainer", st);
    for (uint64_t i = 0; i < warm; i++)
        if ((st = dp_trainer_step(t, NULL))) die("step", st);
    dp_train_timings t0, t1;
    dp_trainer_timings(t, &t0);
    double w0 = now(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID),
           p0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (uint64_t i = 0; i < steps; i++)
        if ((st = dp_trainer_step(t, NULL))) die("step", st);
    double wall = now() - w0, cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    double pcpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - p0;
    dp_trainer_timings(t, &t1);
    sub(&t1, &t0);
    measure m = {(double)t1.examples / wall, 1e6 * wall / (double)steps, (double)t1.examples / cpu,
                 1e6 * (pcpu - cpu) / (double)steps, t1};
    dp_trainer_destroy(t);
    return m;
}

/* The matrix products of one step at the full batch B, row-major:
 * forward  H1 = X W1^T, H2 = A1 W2^T, Z = A2 W3^T
 * backward G2 = D3 W3, G1 = D2 W2
 * weights  W3g = D3^T A2, W2g = D2^T A1, W1g = D1^T X */
static double floor_us(size_t B, size_t D, int reps) {
    const int H = 64, K = 2;
    float *X = calloc(B * D, 4), *A1 = calloc(B * H, 4), *A2 = calloc(B * H, 4);
    float *Z = calloc(B * K, 4), *D3 = calloc(B * K, 4), *G2 = calloc(B * H, 4);
    float *G1 = calloc(B * H, 4), *W1 = calloc(H * D, 4), *W2 = calloc(H * H, 4);
    float *W3 = calloc(K * H, 4), *g1 = calloc(H * D, 4), *g2 = calloc(H * H, 4),
          *g3 = calloc(K * H, 4);
    for (size_t i = 0; i < B * D; i++)
        X[i] = (float)(i % 7) * 0.1f;
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, D, 1, X, D, W1, D, 0, A1, H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, H, 1, A1, H, W2, H, 0, A2, H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, K, H, 1, A2, H, W3, H, 0, Z, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, K, 1, D3, K, W3, H, 0, G2, H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, H, 1, G2, H, W2, H, 0, G1, H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, H, B, 1, D3, K, A2, H, 0, g3, H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, H, B, 1, G2, H, A1, H, 0, g2, H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, D, B, 1, G1, H, X, D, 0, g1, D);
        double t = now() - t0;
        if (t < best) best = t;
    }
    free(X), free(A1), free(A2), free(Z), free(D3), free(G2), free(G1);
    free(W1), free(W2), free(W3), free(g1), free(g2), free(g3);
    return best * 1e6;
}

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save, *t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = strtod(t, NULL);
    return n;
}

static size_t pums_width(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *buf = malloc(1 << 24);
    size_t n = fread(buf, 1, (1 << 24) - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    cJSON *d = cJSON_GetObjectItem(o, "n_features");
    size_t w = cJSON_IsNumber(d) ? (size_t)d->valuedouble : 0;
    cJSON_Delete(o);
    return w;
}

int main(int argc, char **argv) {
    size_t rows = 1000000;
    double ds_list[8] = {64, 80}, bs[8] = {256, 1024, 4096};
    int nd = 2, nb = 3, json = 0, threads = 0;
    double per_config = 400000; /* examples measured per configuration */
    static struct option lo[] = {
        {"rows", 1, 0, 'r'},           {"d", 1, 0, 'd'},       {"batch", 1, 0, 'b'},
        {"steps-examples", 1, 0, 'e'}, {"threads", 1, 0, 't'}, {"json", 0, 0, 'j'},
        {"pums", 1, 0, 'p'},           {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'r':
            rows = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            nd = parse_list(optarg, ds_list, 8);
            break;
        case 'b':
            nb = parse_list(optarg, bs, 8);
            break;
        case 'e':
            per_config = strtod(optarg, NULL);
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'p': {
            size_t w = pums_width(optarg);
            if (!w) die("--pums: cannot read n_features from meta.json", DP_E_IO);
            ds_list[nd < 8 ? nd++ : 7] = (double)w;
            break;
        }
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: bench/train [--rows N] [--d 64,80] [--batch 256,1024,4096] "
                    "[--steps-examples E] [--threads T] [--pums DATASET] [--json]\n");
            return c == 'h' ? 0 : 1;
        }
    }
    if (threads > 0) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        openblas_set_num_threads(threads);
    }
#ifdef _OPENMP
    int nthreads = omp_get_max_threads();
#else
    int nthreads = 1;
#endif
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "rows", (double)rows);
    cJSON_AddNumberToObject(out, "threads", nthreads);
    cJSON_AddStringToObject(out, "network", "D->64->64->2 relu, flat clipping C=1, sigma=1, SGD");
    cJSON *res = cJSON_AddArrayToObject(out, "results");
    if (!json)
        printf(
            "bench/train: %zu rows, MLP D->64->64->2, %d threads (examples/s; phase times in "
            "microseconds per step, DP run)\n\n"
            "%4s %5s %10s %10s %10s %6s %10s %6s | %10s %10s %7s %7s %6s | %6s %6s %6s %6s %6s %6s "
            "%6s %6s %6s\n",
            rows, nthreads, "D", "batch", "dp", "dp-inline", "no-dp", "dp/nodp", "floor", "x-floor",
            "dp/cpu-s", "nodp/cpu-s", "cpu-rat", "xfl-cpu", "bg-us", "sample", "gather", "fwd",
            "bwd", "norms", "wgrad", "noise", "optim", "step");
    for (int i = 0; i < nd; i++) {
        size_t d = (size_t)ds_list[i];
        char *dir = make_dataset(rows, d);
        dp_dataset *ds;
        dp_status st = dp_dataset_open(dir, "train", 0, SIZE_MAX, &ds);
        if (st) die(dir, st);
        for (int j = 0; j < nb; j++) {
            uint64_t steps = (uint64_t)fmax(20, per_config / bs[j]);
            measure nodp = run(ds, bs[j], 0, 1, steps);
            measure dp = run(ds, bs[j], 1, 1, steps);
            measure inl = run(ds, bs[j], 1, 0, steps);
            double fl = floor_us((size_t)bs[j], d, 50);
            double ratio = nodp.ex_per_s / dp.ex_per_s; /* time per example, DP over non-DP */
            double xfloor = dp.step_us / fl;
            double xfloor_cpu = 1e6 * bs[j] / dp.ex_per_cpu_s / fl; /* CPU time of a step / floor */
            const dp_train_timings *t = &dp.t;
            double k = 1e6 / (double)t->steps;
            if (!json)
                printf("%4zu %5.0f %10.0f %10.0f %10.0f %6.3f %10.0f %6.2f | %10.0f %10.0f %7.3f "
                       "%7.2f %6.1f "
                       "| %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f\n",
                       d, bs[j], dp.ex_per_s, inl.ex_per_s, nodp.ex_per_s, ratio,
                       bs[j] / (fl * 1e-6), xfloor, dp.ex_per_cpu_s, nodp.ex_per_cpu_s,
                       nodp.ex_per_cpu_s / dp.ex_per_cpu_s, xfloor_cpu, dp.other_cpu_us,
                       t->sample * k, t->gather * k, t->forward * k, t->backward * k, t->norms * k,
                       t->wgrad * k, t->noise * k, t->optimizer * k, dp.step_us);
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "d", (double)d);
            cJSON_AddNumberToObject(r, "batch", bs[j]);
            cJSON_AddNumberToObject(r, "steps", (double)steps);
            cJSON_AddNumberToObject(r, "dp_examples_per_s", dp.ex_per_s);
            cJSON_AddNumberToObject(r, "dp_inline_noise_examples_per_s", inl.ex_per_s);
            cJSON_AddNumberToObject(r, "nodp_examples_per_s", nodp.ex_per_s);
            cJSON_AddNumberToObject(r, "dp_over_nodp_time", ratio);
            cJSON_AddNumberToObject(r, "dp_examples_per_cpu_s", dp.ex_per_cpu_s);
            cJSON_AddNumberToObject(r, "nodp_examples_per_cpu_s", nodp.ex_per_cpu_s);
            cJSON_AddNumberToObject(r, "dp_inline_examples_per_cpu_s", inl.ex_per_cpu_s);
            cJSON_AddNumberToObject(r, "dp_other_threads_cpu_us_per_step", dp.other_cpu_us);
            cJSON_AddNumberToObject(r, "floor_step_us", fl);
            cJSON_AddNumberToObject(r, "dp_step_us", dp.step_us);
            cJSON_AddNumberToObject(r, "nodp_step_us", nodp.step_us);
            cJSON_AddNumberToObject(r, "dp_step_over_floor", xfloor);
            cJSON_AddNumberToObject(r, "dp_step_cpu_over_floor", xfloor_cpu);
            cJSON *ph = cJSON_AddObjectToObject(r, "dp_phase_us");
            cJSON_AddNumberToObject(ph, "sample", t->sample * k);
            cJSON_AddNumberToObject(ph, "gather", t->gather * k);
            cJSON_AddNumberToObject(ph, "forward", t->forward * k);
            cJSON_AddNumberToObject(ph, "backward", t->backward * k);
            cJSON_AddNumberToObject(ph, "norms", t->norms * k);
            cJSON_AddNumberToObject(ph, "wgrad", t->wgrad * k);
            cJSON_AddNumberToObject(ph, "noise", t->noise * k);
            cJSON_AddNumberToObject(ph, "optimizer", t->optimizer * k);
            cJSON_AddNumberToObject(ph, "noise_inline", inl.t.noise * 1e6 / (double)inl.t.steps);
            cJSON_AddItemToArray(res, r);
        }
        dp_dataset_close(ds);
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "bench/train: could not remove %s\n", dir);
        free(dir);
    }
    if (json) {
        char *s = cJSON_PrintUnformatted(out);
        printf("%s\n", s);
        cJSON_free(s);
    } else {
        printf(
            "\ndp/nodp: time per example of DP-SGD over non-private SGD (goal <= 1.10);\n"
            "floor: examples/s of the step's 8 matrix products alone at the full batch;\n"
            "x-floor: DP step time over that floor (goal <= 2); noise: the step's wait for\n"
            "noise drawn ahead by the noise thread (dp-inline draws it on the step's thread);\n"
            "dp/cpu-s, nodp/cpu-s: examples per CPU second of the stepping thread (robust to a\n"
            "shared machine), cpu-rat their ratio (goal <= 1.10), xfl-cpu the stepping thread's\n"
            "CPU time per step over the floor (goal <= 2); bg-us: CPU per step of the other "
            "threads\n"
            "(the noise thread, OpenMP workers).\n");
    }
    cJSON_Delete(out);
    return 0;
}
