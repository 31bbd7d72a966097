/*
 * kernels.c: speed of the DP-SGD gradient kernel (dp_mlp_clipped_grad) on
 * one process: examples/s with flat clipping and without (DP_CLIP_NONE),
 * their ratio, the time per phase, the noise draw for the whole parameter
 * vector, the floor of the same matrix products alone through OpenBLAS, and
 * the alternative of one multi-threaded BLAS instead of our row split.
 *
 *   build/bench/kernels [--dims 64,100] [--batches 256,1024,4096] [--hidden 64]
 *                       [--seconds 3] [--json]
 *
 * --seconds is the measuring time per (D, B) cell. Columns: examples/s of the
 * gradient with flat clipping (DP) and with DP_CLIP_NONE, their time ratio;
 * phase times of the DP call (first thread's wall time, us); the noise draw of
 * all P coordinates (us), as % of the DP gradient, and (DP + noise) / no DP;
 * the GEMM floor (the same cblas_sgemm calls on the same row split, nothing
 * else) in examples/s and DP / floor; DP with one multi-threaded OpenBLAS
 * instead of our OpenMP row split.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dpsgd/dpsgd.h"
#include "nn/nn_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

typedef struct ctx {
    dp_mlp *m;
    const float *X;
    const int32_t *y;
    size_t n;
    dp_clip_config clip;
    float *grad;
    dp_grad_stats st;
    dp_key key;
    uint64_t step;
    float **priv; /* floor: per-thread gradient buffers */
    float **act;  /* floor: per-thread activation buffers */
} ctx;

static void run_grad(void *p) {
    ctx *c = p;
    memset(c->grad, 0, dp_mlp_nparams(c->m) * sizeof(float));
    if (dp_mlp_clipped_grad(c->m, c->X, c->y, c->n, &c->clip, NULL, c->grad, &c->st) != DP_OK) {
        fprintf(stderr, "kernels: %s\n", dp_last_error());
        exit(2);
    }
}

static void run_noise(void *p) {
    ctx *c = p;
    if (dp_noise_add(&c->key, c->step++, 0, 0, c->grad, dp_mlp_nparams(c->m), 1.0) != DP_OK)
        exit(2);
}

/* The floor: the same GEMMs as one gradient call (forward L, backward L-1,
 * weight gradient L), on the same row split and chunking, nothing else. */
static void run_floor(void *p) {
    ctx *c = p;
    dp_mlp *m = c->m;
    int nt = omp_get_max_threads();
    if ((size_t)nt > c->n / 64) nt = (int)(c->n / 64);
    if (nt < 1) nt = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        size_t lo = c->n * t / nt, hi = c->n * (t + 1) / nt;
        float *buf = c->act[t];
        for (size_t r0 = lo; r0 < hi; r0 += m->rows) {
            size_t r = hi - r0 < m->rows ? hi - r0 : m->rows;
            /* act[l] at buf + l * rows * 512 (widths <= 512 here) */
            const float *a = c->X + r0 * m->cfg.n_in;
            for (int l = 0; l < m->L; l++) {
                float *z = buf + (size_t)(l + 1) * m->rows * 512;
                nn_linear_forward(a, r, m->n_in[l], m->params + m->w_off[l], m->n_out[l], z);
                a = z;
            }
            for (int l = m->L - 1; l > 0; l--)
                nn_linear_backward(buf + (size_t)(l + 1) * m->rows * 512, r, m->n_out[l],
                                   m->params + m->w_off[l], m->n_in[l],
                                   buf + (size_t)(m->L + 1 + l) * m->rows * 512);
            for (int l = 0; l < m->L; l++)
                nn_linear_wgrad(buf + (size_t)(l + 1) * m->rows * 512,
                                l == 0 ? c->X + r0 * m->cfg.n_in : buf + (size_t)l * m->rows * 512,
                                r, m->n_out[l], m->n_in[l], c->priv[t] + m->w_off[l]);
        }
    }
}

/*
 * Timing on a shared machine: the variants (DP, no DP, floor, noise, BLAS
 * threads) are measured in round-robin trials of one call each (20-800 us)
 * until the time is up, and each keeps its fastest trial: every variant sees
 * the same background load, and the minimum is the run nothing disturbed.
 */
enum { V_DP, V_NODP, V_FLOOR, V_NOISE, V_BLASMT, NV };

static void set_threads(int v, int threads, int blas) {
    if (v == V_BLASMT) {
        omp_set_num_threads(1);
        openblas_set_num_threads(threads);
    } else if (v == V_FLOOR) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(1);
    } else {
        omp_set_num_threads(threads);
        openblas_set_num_threads(blas);
    }
}

static void run_variant(int v, ctx *c) {
    if (v == V_NOISE) return run_noise(c);
    if (v == V_FLOOR) return run_floor(c);
    c->clip = v == V_NODP ? (dp_clip_config){.mode = DP_CLIP_NONE}
                          : (dp_clip_config){.mode = DP_CLIP_FLAT, .max_grad_norm = 0.1};
    run_grad(c);
}

/* best[v]: seconds per call; *phase: per-call phase times of the best DP trial */
static void measure(ctx *c, double secs, int threads, double *best, dp_grad_stats *phase) {
    const int blas = openblas_get_num_threads();
    int k[NV];
    for (int v = 0; v < NV; v++) {
        set_threads(v, threads, blas);
        run_variant(v, c); /* warm up */
        run_variant(v, c);
        k[v] = 1; /* one call per trial: the most trials, the best chance of a quiet one */
        best[v] = 1e30;
    }
    double start = now();
    do {
        for (int v = 0; v < NV; v++) {
            set_threads(v, threads, blas);
            dp_grad_stats before = c->st;
            double a = now();
            for (int r = 0; r < k[v]; r++)
                run_variant(v, c);
            double t = (now() - a) / k[v];
            if (t < best[v]) {
                best[v] = t;
                if (v == V_DP) {
                    phase->t_forward = (c->st.t_forward - before.t_forward) / k[v];
                    phase->t_backward = (c->st.t_backward - before.t_backward) / k[v];
                    phase->t_norms = (c->st.t_norms - before.t_norms) / k[v];
                    phase->t_wgrad = (c->st.t_wgrad - before.t_wgrad) / k[v];
                }
            }
        }
    } while (now() - start < secs);
    set_threads(V_DP, threads, blas);
}

int main(int argc, char **argv) {
    int dims[8] = {64, 100}, nd = 2, batches[8] = {256, 1024, 4096}, nb = 3, hidden = 64;
    double secs = 3.0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--dims") && i + 1 < argc)
            nd = parse_list(argv[++i], dims, 8);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
            nb = parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc)
            hidden = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: kernels [--dims 64,100] [--batches 256,1024,4096] "
                            "[--hidden 64] [--seconds 3] [--json]\n");
            return 1;
        }
    }
    const int threads = omp_get_max_threads();
    if (!json) {
        printf("dp_mlp_clipped_grad, MLP D->%d->%d->2, %d OpenMP threads, OpenBLAS %d threads "
               "outside our regions\n",
               hidden, hidden, threads, openblas_get_num_threads());
        printf("%4s %5s %6s | %10s %10s %5s | %7s %7s %7s %7s | %8s %5s %6s | %10s %5s | %10s\n",
               "D", "B", "P", "DP ex/s", "noDP ex/s", "ratio", "fwd us", "bwd us", "norm us",
               "wgrad us", "noise us", "%step", "+noise", "floor ex/s", "xfl", "blasMT ex/s");
    } else {
        printf("{\"bench\":\"kernels\",\"threads\":%d,\"hidden\":%d,\"results\":[", threads,
               hidden);
    }
    int first = 1;
    for (int a = 0; a < nd; a++) {
        for (int b = 0; b < nb; b++) {
            const size_t D = (size_t)dims[a], B = (size_t)batches[b];
            dp_mlp_config cfg = {.n_in = D,
                                 .n_hidden = 2,
                                 .hidden = {hidden, hidden},
                                 .n_classes = 2,
                                 .activation = DP_ACT_RELU};
            dp_mlp *m;
            if (dp_mlp_create(&cfg, B, &m) != DP_OK) {
                fprintf(stderr, "kernels: %s\n", dp_last_error());
                return 2;
            }
            dp_mlp_init(m, 1);
            const size_t P = dp_mlp_nparams(m);
            float *X = malloc(B * D * sizeof(float));
            int32_t *y = malloc(B * sizeof(int32_t));
            uint64_t s = 12345;
            for (size_t i = 0; i < B * D; i++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                X[i] = (float)((double)(s >> 11) * 0x1p-53 * 2 - 1);
            }
            for (size_t i = 0; i < B; i++)
                y[i] = (int32_t)(i % 3 == 0);
            ctx c = {.m = m, .X = X, .y = y, .n = B, .grad = calloc(P, sizeof(float))};
            dp_key_from_seed(7, "noise", &c.key);
            c.priv = malloc((size_t)threads * sizeof(float *));
            c.act = malloc((size_t)threads * sizeof(float *));
            for (int t = 0; t < threads; t++) {
                c.priv[t] = calloc(P, sizeof(float));
                c.act[t] = calloc((size_t)(2 * m->L + 2) * m->rows * 512, sizeof(float));
            }
            double best[NV];
            dp_grad_stats ph = {0};
            measure(&c, secs, threads, best, &ph);
            const double t_dp = best[V_DP], t_no = best[V_NODP], t_floor = best[V_FLOOR],
                         t_noise = best[V_NOISE], t_mt = best[V_BLASMT];
            double fwd = ph.t_forward * 1e6, bwd = ph.t_backward * 1e6, nrm = ph.t_norms * 1e6,
                   wg = ph.t_wgrad * 1e6;
            if (!json) {
                printf(
                    "%4zu %5zu %6zu | %10.0f %10.0f %5.3f | %7.1f %7.1f %7.1f %7.1f | %8.1f %5.1f "
                    "%6.3f | %10.0f %5.2f | %10.0f\n",
                    D, B, P, B / t_dp, B / t_no, t_dp / t_no, fwd, bwd, nrm, wg, t_noise * 1e6,
                    100 * t_noise / t_dp, (t_dp + t_noise) / t_no, B / t_floor, t_dp / t_floor,
                    B / t_mt);
            } else {
                printf("%s{\"D\":%zu,\"batch\":%zu,\"params\":%zu,\"dp_examples_per_s\":%.0f,"
                       "\"nodp_examples_per_s\":%.0f,\"dp_over_nodp\":%.4f,\"phase_us\":{"
                       "\"forward\":%.2f,\"backward\":%.2f,\"norms\":%.2f,\"wgrad\":%.2f},"
                       "\"noise_us\":%.2f,\"dp_plus_noise_over_nodp\":%.4f,"
                       "\"gemm_floor_examples_per_s\":%.0f,"
                       "\"dp_over_floor\":%.4f,\"blas_threaded_dp_examples_per_s\":%.0f}",
                       first ? "" : ",", D, B, P, B / t_dp, B / t_no, t_dp / t_no, fwd, bwd, nrm,
                       wg, t_noise * 1e6, (t_dp + t_noise) / t_no, B / t_floor, t_dp / t_floor,
                       B / t_mt);
                first = 0;
            }
            fflush(stdout);
            for (int t = 0; t < threads; t++)
                free(c.priv[t]), free(c.act[t]);
            free(c.priv), free(c.act), free(c.grad), free(X), free(y);
            dp_mlp_destroy(m);
        }
    }
    if (json) printf("]}\n");
    return 0;
}
