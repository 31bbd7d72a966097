/*
 * bench/scaling.c: data-parallel scaling of DP-SGD (issue 4, bench/scaling).
 * Run under `mpirun -np R` (or alone: R = 1). On a synthetic dataset of
 * --rows rows (float32 .npy in /dev/shm, written once with --make DIR), each
 * repetition times, on all ranks at once:
 *   gemm   the step's eight matrix products alone (3 forward, 2 backward to
 *          activations, 3 weight gradients of the MLP D -> 64 -> 64 -> 2) on
 *          this rank's share B / R of the expected batch, in the trainer's
 *          micro-batches of 256 rows, for one epoch of round(N / B) steps:
 *          what the machine gives the same products on R ranks, the limit
 *          of data parallelism here (../shared/probes/mpi/sgemm_mpi.c);
 *   train  one epoch of DP-SGD (dp_trainer_create_dist on this rank's shard,
 *          sigma 1, C 1, owner noise, the given allreduce) after 10 warm-up
 *          steps; with --overlap-too also the same with --overlap.
 * Time is wall time between barriers (the slowest rank). Repetitions
 * alternate the phases so that load from other processes hits them alike;
 * medians are printed. bench/scaling.sh runs R = 1 and 2 and divides.
 *
 *   build/bench/scaling --make DIR [--rows N] [--d D]       write the dataset
 *   mpirun -np R build/bench/scaling --dir DIR [--batch B] [--reps K]
 *          [--allreduce A] [--noise-mode M] [--overlap-too] [--noise-inline] [--json]
 */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/train.h"

#define MICRO 256
#define HID 64
#define MAXREP 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dp_comm *comm;

static void die(const char *what) {
    fprintf(stderr, "bench/scaling [rank %d]: %s: %s\n", dp_comm_rank(comm), what, dp_last_error());
    dp_comm_abort(comm, 2);
    exit(2);
}

/* rows x d features in [-1, 1) from a counter hash (splitmix64 of the
 * element index), label 1 when a fixed +-1 combination of the first eight
 * features is positive, flipped for 10% of the rows. */
static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void make_dataset(const char *dir, size_t rows, size_t d) {
    char path[4200];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    if (system(path)) die("mkdir");
    float *X = malloc(rows * d * sizeof(float));
    int32_t *y = malloc(rows * sizeof(int32_t));
    if (!X || !y) die("out of memory");
    for (size_t i = 0; i < rows; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) {
            float v = (float)((double)(mix(i * d + j) >> 11) * 0x1.0p-52 - 1.0);
            X[i * d + j] = v;
            if (j < 8) s += (j & 1) ? -v : v;
        }
        y[i] = (s > 0) ^ ((mix(~i) >> 11) * 0x1.0p-53 < 0.1);
    }
    snprintf(path, sizeof path, "%s/X_train.npy", dir);
    if (dp_npy_write_f32(path, X, rows, d) != DP_OK) die(path);
    snprintf(path, sizeof path, "%s/y_train.npy", dir);
    if (dp_npy_write_i32(path, y, rows) != DP_OK) die(path);
    free(X);
    free(y);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) die(path);
    fprintf(f,
            "{\"format\": \"dpsgd-dataset\", \"version\": 1, \"n_features\": %zu, \"n_classes\": "
            "2, \"schema_hash\": \"bench-scaling\", \"columns\": [",
            d);
    for (size_t j = 0; j < d; j++)
        fprintf(f, "%s\"x%zu\"", j ? ", " : "", j);
    fprintf(f, "], \"splits\": {\"train\": {\"rows\": %zu}}}\n", rows);
    fclose(f);
}

/* The step's products for `rows` rows in micro-batches of MICRO: forward
 * X W0^T, A1 W1^T, A2 W2^T; backward D2 W2, D1 W1; weight gradients D0^T X,
 * D1^T A1, D2^T A2 (the shapes of src/nn/linear.c). */
typedef struct gemm_ws {
    float *X, *W0, *W1, *W2, *A1, *A2, *Z, *D0, *D1, *D2, *G0, *G1, *G2;
} gemm_ws;

static void gemm_step(gemm_ws *w, size_t rows, size_t d) {
    const int k = 2;
    for (size_t r0 = 0; r0 < rows; r0 += MICRO) {
        int m = (int)(rows - r0 < MICRO ? rows - r0 : MICRO);
        const float *X = w->X + r0 * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, HID, (int)d, 1, X, (int)d, w->W0,
                    (int)d, 0, w->A1, HID);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, HID, HID, 1, w->A1, HID, w->W1, HID,
                    0, w->A2, HID);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, HID, 1, w->A2, HID, w->W2, HID,
                    0, w->Z, k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HID, k, 1, w->D2, k, w->W2, HID,
                    0, w->D1, HID);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HID, HID, 1, w->D1, HID, w->W1,
                    HID, 0, w->D0, HID);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HID, (int)d, m, 1, w->D0, HID, X,
                    (int)d, 1, w->G0, (int)d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HID, HID, m, 1, w->D1, HID, w->A1, HID,
                    1, w->G1, HID);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, HID, m, 1, w->D2, k, w->A2, HID, 1,
                    w->G2, HID);
    }
}

static float *filled(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) die("out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((double)(mix(i + 12345) >> 11) * 0x1.0p-53 - 0.5);
    return p;
}

typedef struct result {
    double gemm, train[2], train_cpu[2];
    dp_train_timings tm[2]; /* per epoch, this rank (rank 0 reports its own) */
} result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    double s[MAXREP];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void tm_sub(dp_train_timings *a, const dp_train_timings *b) {
    a->sample -= b->sample, a->gather -= b->gather, a->forward -= b->forward;
    a->backward -= b->backward, a->norms -= b->norms, a->wgrad -= b->wgrad;
    a->noise -= b->noise, a->optimizer -= b->optimizer, a->total -= b->total;
    a->comm -= b->comm, a->steps -= b->steps, a->examples -= b->examples;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *make = NULL;
    size_t rows = 1000000, d = 89;
    double batch = 1024;
    int reps = 5, json = 0, overlap_too = 0, inline_noise = 0;
    dp_train_config cfg;
    dp_train_config_default(&cfg);
    static struct option lo[] = {{"dir", 1, 0, 'D'},         {"make", 1, 0, 'M'},
                                 {"rows", 1, 0, 'n'},        {"d", 1, 0, 'd'},
                                 {"batch", 1, 0, 'b'},       {"reps", 1, 0, 'r'},
                                 {"allreduce", 1, 0, 'a'},   {"noise-mode", 1, 0, 'm'},
                                 {"overlap-too", 0, 0, 'o'}, {"noise-inline", 0, 0, 'i'},
                                 {"json", 0, 0, 'j'},        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'D':
            dir = optarg;
            break;
        case 'M':
            make = optarg;
            break;
        case 'n':
            rows = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            d = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            batch = strtod(optarg, NULL);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        case 'a':
            if (dp_allreduce_parse(optarg, &cfg.allreduce) != DP_OK) die("--allreduce");
            break;
        case 'm':
            if (dp_noise_mode_parse(optarg, &cfg.noise_mode) != DP_OK) die("--noise-mode");
            break;
        case 'o':
            overlap_too = 1;
            break;
        case 'i':
            inline_noise = 1;
            break;
        case 'j':
            json = 1;
            break;
        default:
            fprintf(stderr, "bench/scaling: see the comment at the top of bench/scaling.c\n");
            return 2;
        }
    }
    if (dp_comm_open(&comm) != DP_OK) die("comm");
    if (make) {
        if (dp_comm_rank(comm) == 0) make_dataset(make, rows, d);
        dp_comm_close(comm);
        return 0;
    }
    if (!dir || reps < 1 || reps > MAXREP) {
        fprintf(stderr, "bench/scaling: --dir DATASET (from --make) and 1 <= --reps <= %d\n",
                MAXREP);
        return 2;
    }
    const int rank = dp_comm_rank(comm), R = dp_comm_size(comm);
    dp_dataset *meta, *ds;
    if (dp_dataset_open(dir, "train", 0, 0, &meta) != DP_OK) die(dir);
    size_t N = dp_dataset_rows_total(meta), b, e;
    d = dp_dataset_cols(meta);
    dp_dataset_close(meta);
    dp_comm_shard(N, R, rank, &b, &e);
    if (dp_dataset_open(dir, "train", b, e, &ds) != DP_OK) die("shard");

    cfg.batch_size = batch;
    cfg.noise_multiplier = 1.0;
    cfg.seeded = 1;
    cfg.seed = 7;
    cfg.max_steps = 1000000000;
    cfg.noise_ahead = !inline_noise;
    const uint64_t spe = (uint64_t)floor((double)N / batch + 0.5);
    const int variants = overlap_too ? 2 : 1;

    /* the GEMM reference's buffers: one micro-batch, this rank's rows */
    const size_t local = (size_t)ceil(batch / R);
    gemm_ws w = {filled(local * d),   filled(HID * d),     filled(HID * HID), filled(2 * HID),
                 filled(MICRO * HID), filled(MICRO * HID), filled(MICRO * 2), filled(MICRO * HID),
                 filled(MICRO * HID), filled(MICRO * 2),   filled(HID * d),   filled(HID * HID),
                 filled(2 * HID)};
    result res[MAXREP];
    memset(res, 0, sizeof res);
    dp_trainer *tr[2] = {NULL, NULL};
    for (int v = 0; v < variants; v++) {
        cfg.overlap = v;
        if (dp_trainer_create_dist(ds, &cfg, comm, &tr[v]) != DP_OK) die("trainer");
        for (int s = 0; s < 10; s++)
            if (dp_trainer_step(tr[v], NULL) != DP_OK) die("warm-up step");
    }
    for (int r = 0; r < reps; r++) {
        dp_comm_barrier(comm);
        double t0 = now();
        for (uint64_t s = 0; s < spe; s++)
            gemm_step(&w, local, d);
        dp_comm_barrier(comm);
        res[r].gemm = now() - t0;
        for (int v = 0; v < variants; v++) {
            dp_train_timings before;
            dp_trainer_timings(tr[v], &before);
            dp_comm_barrier(comm);
            double c0 = cpu_now();
            t0 = now();
            for (uint64_t s = 0; s < spe; s++)
                if (dp_trainer_step(tr[v], NULL) != DP_OK) die("step");
            dp_comm_barrier(comm);
            res[r].train[v] = now() - t0;
            res[r].train_cpu[v] = cpu_now() - c0;
            dp_trainer_timings(tr[v], &res[r].tm[v]);
            tm_sub(&res[r].tm[v], &before);
        }
    }
    if (rank == 0) {
        double g[MAXREP], tt[2][MAXREP], cpu[2][MAXREP], ratio[MAXREP];
        for (int r = 0; r < reps; r++) {
            g[r] = res[r].gemm;
            ratio[r] = res[r].train[0] / res[r].gemm; /* paired: same repetition, same load */
            for (int v = 0; v < variants; v++)
                tt[v][r] = res[r].train[v], cpu[v][r] = res[r].train_cpu[v];
        }
        double gm = median(g, reps), tm[2] = {median(tt[0], reps), 0};
        if (variants > 1) tm[1] = median(tt[1], reps);
        /* phase split of the median repetition of the fused variant */
        int mid = 0;
        for (int r = 0; r < reps; r++)
            if (tt[0][r] == tm[0]) mid = r;
        const dp_train_timings *p = &res[mid].tm[0];
        double us = 1e6 / (double)p->steps;
        if (json) {
            printf("{\"ranks\": %d, \"rows\": %zu, \"d\": %zu, \"batch\": %g, \"steps\": %llu, "
                   "\"allreduce\": \"%s\", \"noise_mode\": \"%s\", \"noise_thread\": %s, "
                   "\"gemm_s\": %.6f, \"epoch_s\": %.6f, \"epoch_cpu_s\": %.6f, "
                   "\"epoch_over_gemm\": %.6f",
                   R, N, d, batch, (unsigned long long)spe, dp_allreduce_name(cfg.allreduce),
                   dp_noise_mode_name(cfg.noise_mode), inline_noise ? "false" : "true", gm, tm[0],
                   median(cpu[0], reps), median(ratio, reps));
            if (variants > 1) printf(", \"epoch_overlap_s\": %.6f", tm[1]);
            printf(", \"step_us\": {\"sample\": %.2f, \"gather\": %.2f, \"forward\": %.2f, "
                   "\"backward\": %.2f, \"norms\": %.2f, \"wgrad\": %.2f, \"noise\": %.2f, "
                   "\"comm\": %.2f, \"optimizer\": %.2f, \"total\": %.2f}}\n",
                   p->sample * us, p->gather * us, p->forward * us, p->backward * us, p->norms * us,
                   p->wgrad * us, p->noise * us, p->comm * us, p->optimizer * us, p->total * us);
        } else {
            printf("R=%d N=%zu D=%zu B=%g steps/epoch=%llu allreduce=%s noise=%s%s reps=%d\n", R, N,
                   d, batch, (unsigned long long)spe, dp_allreduce_name(cfg.allreduce),
                   dp_noise_mode_name(cfg.noise_mode), inline_noise ? " (inline)" : "", reps);
            printf("  gemm alone   %8.3f s/epoch (median)\n", gm);
            printf("  dp-sgd       %8.3f s/epoch (median), %.3f CPU-s of this rank; %.3f x gemm\n",
                   tm[0], median(cpu[0], reps), median(ratio, reps));
            if (variants > 1) printf("  dp-sgd overlap %6.3f s/epoch (median)\n", tm[1]);
            printf("  rank 0 per step (us): sample %.1f gather %.1f fwd %.1f bwd %.1f norms %.1f "
                   "wgrad %.1f noise %.1f comm %.1f optim %.1f total %.1f\n",
                   p->sample * us, p->gather * us, p->forward * us, p->backward * us, p->norms * us,
                   p->wgrad * us, p->noise * us, p->comm * us, p->optimizer * us, p->total * us);
        }
    }
    for (int v = 0; v < variants; v++)
        dp_trainer_destroy(tr[v]);
    dp_dataset_close(ds);
    float **bufs = (float **)&w;
    for (size_t i = 0; i < sizeof w / sizeof(float *); i++)
        free(bufs[i]);
    dp_comm_close(comm);
    return 0;
}
