/*
 * check_cuda.c: the CUDA backend against the CPU implementation, on a GPU.
 * Not a ctest test (CPU CI has no device): bench/gpu.sh runs it, plain and
 * under compute-sanitizer. Each check draws fresh random inputs (seed
 * printed; DP_TEST_SEED replays) and compares with the CPU code that defines
 * the semantics: the ChaCha20 keystream with libsodium's, the noise with
 * dp_noise_draw_f64 / dp_noise_add, every gradient kernel through
 * dp_mlp_clipped_grad (relative error < 1e-5), prediction with
 * dp_mlp_predict, the batch path (device gather, streamed rows, graph
 * replay) also for its statistics, for clip settings and class weights that
 * change between replays, and for one mlp over a sequence of datasets
 * (stale graphs), the optimizers with optim.c, a whole training run with
 * the CPU's step to 1e-4, and the trainer itself (dp_trainer, device cuda,
 * graph replay and launches) against the same run on the CPU. Host output
 * arrays are poisoned with NaN before each call, so a call that fills
 * nothing, or only part, cannot pass on what an earlier check left there.
 * Exit 0: all passed; 1: a check failed; 77: no CUDA device (skip), with
 * the reason on stderr.
 *
 *   check_cuda [--quick] [--nccl]
 *   --quick  smaller sizes (for compute-sanitizer, which is ~50x slower)
 *   --nccl   also MPI_Init and check the NCCL collectives on one rank
 */
#include <math.h>
#include <mpi.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "cuda/dp_cuda.h"
#include "dpsgd/dpsgd.h"
#include "testutil.h"
#include "train/train_internal.h"
#include "../train_fixture.h"

static int n_fail, n_pass, quick;
static uint64_t rng;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_pass++;                                                                              \
        } else {                                                                                   \
            n_fail++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* A call that must succeed: on failure, report and count it, and stop the check. */
#define OK(call)                                                                                   \
    do {                                                                                           \
        dp_status s_ = (call);                                                                     \
        if (s_ != DP_OK) {                                                                         \
            n_fail++;                                                                              \
            printf("FAIL %s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, dp_status_str(s_),       \
                   dp_last_error());                                                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ||a - b|| / ||b|| in double. */
static double rel_err_f(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (!isfinite(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Outputs start as NaN: a value the device did not write cannot pass. */
static void poison_f(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}
static void poison_d(double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

static void fill_normal(float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * tu_normal(&rng));
}

static size_t rand_below(size_t n) {
    return (size_t)(tu_uniform(&rng) * (double)n);
}

/* ---------------------------------------------------------------- keystream */

static void check_keystream(dp_cuda_ctx *ctx) {
    uint8_t key[32], nonce[12];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)tu_next(&rng);
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)tu_next(&rng);
    /* lengths that end inside a block; counters that carry into word 13 */
    const size_t lens[] = {1, 64, 100, 4096 + 7, 1 << 16};
    const uint64_t ctrs[] = {0, 1, 0xfffffffeull, 0x123456789ull};
    size_t maxlen = 1 << 16;
    uint8_t *zeros = calloc(maxlen, 1), *ref = malloc(maxlen), *got = malloc(maxlen);
    int bad_orig = 0, bad_ietf = 0;
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        for (size_t ci = 0; ci < sizeof ctrs / sizeof *ctrs; ci++) {
            size_t n = lens[li];
            crypto_stream_chacha20_xor_ic(ref, zeros, n, nonce, ctrs[ci], key);
            memset(got, 0xa5, n);
            OK(dp_chacha20_cuda(ctx, key, nonce, 8, ctrs[ci], got, n));
            if (memcmp(ref, got, n)) bad_orig++;
            uint32_t c32 = (uint32_t)ctrs[ci];
            /* libsodium refuses IETF streams that would wrap the 32-bit counter */
            if ((uint64_t)c32 + (n + 63) / 64 > 0x100000000ull) continue;
            crypto_stream_chacha20_ietf_xor_ic(ref, zeros, n, nonce, c32, key);
            memset(got, 0xa5, n);
            OK(dp_chacha20_cuda(ctx, key, nonce, 12, c32, got, n));
            if (memcmp(ref, got, n)) bad_ietf++;
        }
    }
    CHECK(bad_orig == 0,
          "chacha20 (original, 64-bit counter): %d of 20 streams differ from "
          "libsodium's",
          bad_orig);
    CHECK(bad_ietf == 0, "chacha20 (IETF): %d streams differ from libsodium's", bad_ietf);
    printf("keystream: device ChaCha20 equals libsodium's (original and IETF variants)%s\n",
           bad_orig || bad_ietf ? ": NO" : "");
    free(zeros);
    free(ref);
    free(got);
}

/* ---------------------------------------------------------------- noise */

static void check_noise(dp_cuda_ctx *ctx) {
    dp_key key;
    dp_key_from_seed(tu_next(&rng), "noise", &key);
    size_t n = quick ? 1001 : 200003;
    size_t offset = rand_below(1000) * 2 + 1; /* odd: a block split between calls */
    uint64_t step = tu_next(&rng) >> 20, stream = rand_below(4);
    double *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    OK(dp_noise_draw_f64(&key, step, stream, offset, ref, n));
    poison_d(got, n);
    OK(dp_noise_draw_f64_cuda(ctx, &key, step, stream, offset, got, n));
    double maxd = 0, mean = 0, var = 0;
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= maxd)) maxd = d;
        same += got[i] == ref[i];
        mean += got[i];
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        var += (got[i] - mean) * (got[i] - mean);
    var /= (double)(n - 1);
    /* The CPU's log/sin/cos are glibc's vector versions (<= 4 ulp), the GPU's
     * CUDA's (<= 2 ulp): equal draws up to a few ulps of z, never more. */
    CHECK(maxd <= 1e-13, "noise f64: max |gpu - cpu| = %.3g over %zu draws (> 1e-13)", maxd, n);
    printf("noise f64: %zu draws, max |gpu - cpu| = %.3g, bit-identical %.4f%%, mean %.4f, var "
           "%.4f\n",
           n, maxd, 100.0 * (double)same / (double)n, mean, var);
    if (!quick)
        CHECK(fabs(mean) < 0.02 && fabs(var - 1.0) < 0.02, "noise moments %g %g", mean, var);
    /* coordinates across ChaCha20 block 2^32: the counter's carry into word 13 */
    {
        const size_t far = ((size_t)1 << 33) - 501, nf = 1001;
        OK(dp_noise_draw_f64(&key, step, stream, far, ref, nf));
        poison_d(got, nf);
        OK(dp_noise_draw_f64_cuda(ctx, &key, step, stream, far, got, nf));
        double fd = 0;
        for (size_t i = 0; i < nf; i++)
            if (!(fabs(got[i] - ref[i]) <= fd)) fd = fabs(got[i] - ref[i]);
        CHECK(fd <= 1e-13, "noise f64 at coordinates [2^33 - 501, +1001): max |gpu - cpu| = %.3g",
              fd);
    }

    /* float add path: out += std z */
    float *base = malloc(n * sizeof *base), *cpu = malloc(n * sizeof *cpu),
          *gpu = malloc(n * sizeof *gpu);
    fill_normal(base, n, 1.0);
    memcpy(cpu, base, n * sizeof *cpu);
    double std = 0.5 + tu_uniform(&rng);
    OK(dp_noise_add(&key, step, stream, offset, cpu, n, std));
    float *dev = NULL;
    OK(dp_cuda_alloc(ctx, n * sizeof(float), (void **)&dev));
    OK(dp_cuda_to_device(ctx, dev, base, n * sizeof(float)));
    OK(dp_noise_add_dev_cuda(ctx, &key, step, stream, offset, dev, n, std));
    poison_f(gpu, n);
    OK(dp_cuda_to_host(ctx, gpu, dev, n * sizeof(float)));
    size_t fsame = 0;
    for (size_t i = 0; i < n; i++)
        fsame += gpu[i] == cpu[i];
    double re = rel_err_f(gpu, cpu, n);
    CHECK(re < 1e-6, "noise add f32: relative error %.3g", re);
    printf("noise add f32: rel err %.3g, bit-identical %.4f%%\n", re,
           100.0 * (double)fsame / (double)n);
    dp_cuda_free(ctx, dev);
    free(base);
    free(cpu);
    free(gpu);
    free(ref);
    free(got);
}

/* ---------------------------------------------------------------- gradient */

typedef struct netcase {
    size_t d;
    int n_hidden, hidden[3], k;
    dp_activation act;
} netcase;

static void make_cfg(const netcase *nc, dp_mlp_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n_in = nc->d;
    cfg->n_hidden = nc->n_hidden;
    for (int i = 0; i < nc->n_hidden; i++)
        cfg->hidden[i] = nc->hidden[i];
    cfg->n_classes = nc->k;
    cfg->activation = nc->act;
}

static const char *mode_name(dp_clip_mode m) {
    return m == DP_CLIP_NONE ? "none" : m == DP_CLIP_FLAT ? "flat" : "per-layer";
}

/* dp_mlp_clipped_grad_cuda vs dp_mlp_clipped_grad on random X, y (a few
 * rows non-finite), for each clip mode, with and without class weights. */
static void check_grad_case(dp_cuda_ctx *ctx, const netcase *nc, size_t n, size_t max_micro) {
    dp_mlp_config cfg;
    make_cfg(nc, &cfg);
    dp_mlp *cpu = NULL;
    dp_cuda_mlp *gpu = NULL;
    OK(dp_mlp_create(&cfg, 256, &cpu));
    dp_mlp_init(cpu, tu_next(&rng));
    size_t P = dp_mlp_nparams(cpu);
    dp_status s = dp_mlp_create_cuda(ctx, &cfg, max_micro, &gpu);
    if (s != DP_OK) {
        dp_mlp_destroy(cpu);
        OK(s);
    }
    OK(dp_mlp_set_params_cuda(gpu, dp_mlp_params(cpu)));
    float *X = malloc(n * nc->d * sizeof *X), *g_cpu = malloc(P * sizeof(float)),
          *g_gpu = malloc(P * sizeof(float));
    int32_t *y = malloc(n * sizeof *y);
    fill_normal(X, n * nc->d, 1.5);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)rand_below((size_t)nc->k);
    size_t n_bad = n >= 50 ? 3 : 0;
    for (size_t b = 0; b < n_bad; b++)
        X[rand_below(n) * nc->d + rand_below(nc->d)] =
            b == 0 ? NAN : (b == 1 ? INFINITY : -INFINITY);
    float cw[8];
    for (int c = 0; c < nc->k; c++)
        cw[c] = (float)(0.5 + tu_uniform(&rng));
    for (int mode = DP_CLIP_NONE; mode <= DP_CLIP_PER_LAYER; mode++) {
        for (int use_cw = 0; use_cw < 2; use_cw++) {
            dp_clip_config clip;
            memset(&clip, 0, sizeof clip);
            clip.mode = (dp_clip_mode)mode;
            /* bounds that clip some examples and not others */
            clip.max_grad_norm = 0.3 + tu_uniform(&rng);
            for (int l = 0; l < DP_MLP_MAX_LAYERS; l++)
                clip.layer_norms[l] = 0.1 + tu_uniform(&rng);
            dp_grad_stats sc, sg;
            memset(&sc, 0, sizeof sc);
            memset(&sg, 0, sizeof sg);
            /* accumulate semantics: both start from the same nonzero grad */
            fill_normal(g_cpu, P, 0.1);
            memcpy(g_gpu, g_cpu, P * sizeof(float));
            const float *w = use_cw ? cw : NULL;
            OK(dp_mlp_clipped_grad(cpu, X, y, n, &clip, w, g_cpu, &sc));
            OK(dp_mlp_clipped_grad_cuda(gpu, X, y, n, &clip, w, g_gpu, &sg));
            double re = rel_err_f(g_gpu, g_cpu, P);
            double lre = fabs(sg.loss_sum - sc.loss_sum) / (fabs(sc.loss_sum) + 1e-30);
            long dcl = (long)sg.n_clipped - (long)sc.n_clipped;
            CHECK(re < 1e-5, "grad d=%zu L=%d k=%d %s n=%zu micro=%zu clip=%s cw=%d: rel err %.3g",
                  nc->d, nc->n_hidden + 1, nc->k, nc->act == DP_ACT_RELU ? "relu" : "tanh", n,
                  max_micro, mode_name(clip.mode), use_cw, re);
            CHECK(sg.n_nonfinite == sc.n_nonfinite, "non-finite rows: gpu %zu, cpu %zu",
                  sg.n_nonfinite, sc.n_nonfinite);
            CHECK(labs(dcl) <= 1, "clipped rows: gpu %zu, cpu %zu", sg.n_clipped, sc.n_clipped);
            CHECK(lre < 1e-5, "loss sum: gpu %.9g, cpu %.9g", sg.loss_sum, sc.loss_sum);
            printf("grad d=%-3zu L=%d k=%d %-4s n=%-5zu micro=%-4zu clip=%-9s cw=%d: rel err "
                   "%.2e, clipped %zu/%zu, non-finite %zu\n",
                   nc->d, nc->n_hidden + 1, nc->k, nc->act == DP_ACT_RELU ? "relu" : "tanh", n,
                   max_micro, mode_name(clip.mode), use_cw, re, sg.n_clipped, sc.n_clipped,
                   sg.n_nonfinite);
        }
    }
    /* prediction (forward, bias+activation, softmax) on the finite rows */
    for (size_t i = 0; i < n * nc->d; i++)
        if (!isfinite(X[i])) X[i] = 0.0f;
    /* per-example norms without per-example gradients (gather/bias_act/
     * act_back/loss kernels' fused squared norms) against the norm of each
     * example's gradient materialised by the CPU, one example at a time */
    {
        size_t ne = n < 64 ? n : 64;
        if (ne > max_micro) ne = max_micro;
        dp_clip_config none;
        memset(&none, 0, sizeof none);
        none.mode = DP_CLIP_NONE;
        double *sq = malloc(ne * sizeof *sq), worst = 0;
        poison_d(sq, ne);
        OK(dp_mlp_clipped_grad_cuda(gpu, X, y, ne, &none, NULL, g_gpu, NULL));
        OK(dp_mlp_example_sqnorms_cuda(gpu, ne, sq));
        for (size_t i = 0; i < ne; i++) {
            memset(g_cpu, 0, P * sizeof(float));
            OK(dp_mlp_clipped_grad(cpu, X + i * nc->d, y + i, 1, &none, NULL, g_cpu, NULL));
            double ref = 0;
            for (size_t j = 0; j < P; j++)
                ref += (double)g_cpu[j] * g_cpu[j];
            double e = fabs(sq[i] - ref) / (ref + 1e-30);
            if (!(e <= worst)) worst = e;
        }
        CHECK(worst < 1e-5, "per-example squared norms: worst rel err %.3g over %zu examples",
              worst, ne);
        printf("per-example |g_i|^2 (no per-example gradients) vs materialised: worst rel err "
               "%.2e over %zu\n",
               worst, ne);
        free(sq);
    }
    float *P_cpu = malloc(n * (size_t)nc->k * sizeof(float)),
          *P_gpu = malloc(n * (size_t)nc->k * sizeof(float));
    OK(dp_mlp_predict(cpu, X, n, P_cpu));
    poison_f(P_gpu, n * (size_t)nc->k);
    OK(dp_mlp_predict_cuda(gpu, X, n, P_gpu));
    double re = rel_err_f(P_gpu, P_cpu, n * (size_t)nc->k);
    CHECK(re < 1e-5, "predict: rel err %.3g", re);
    printf("predict d=%zu n=%zu: rel err %.2e\n", nc->d, n, re);
    free(P_cpu);
    free(P_gpu);
    free(X);
    free(y);
    free(g_cpu);
    free(g_gpu);
    dp_mlp_destroy_cuda(gpu);
    dp_mlp_destroy(cpu);
}

static void check_grads(dp_cuda_ctx *ctx) {
    const netcase cases[] = {
        {37, 2, {64, 64, 0}, 2, DP_ACT_RELU},
        {300, 2, {64, 64, 0}, 2, DP_ACT_TANH},
        {5, 0, {0, 0, 0}, 3, DP_ACT_RELU},      /* logistic regression: one layer */
        {50, 3, {17, 100, 33}, 7, DP_ACT_TANH}, /* widths that are not multiples of 32 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n = quick ? 150 : 2500;
        check_grad_case(ctx, &cases[c], n, quick ? 64 : 1024);        /* several micro-batches */
        if (!quick && c == 0) check_grad_case(ctx, &cases[c], 1, 16); /* one example */
    }
}

/* ---------------------------------------------------------------- batch path */

/* Rows idx[0..n) (global row numbers; X [N, d], y [N] hold rows from row0
 * on) into Xb [n, d], yb [n]: the host side of the device gather. */
static void gather_rows(const float *X, const int32_t *y, size_t d, size_t row0, const size_t *idx,
                        size_t n, float *Xb, int32_t *yb) {
    for (size_t i = 0; i < n; i++) {
        memcpy(Xb + i * d, X + (idx[i] - row0) * d, d * sizeof(float));
        yb[i] = y[idx[i] - row0];
    }
}

/* The reference for dp_mlp_batch_grad_cuda: the CPU's clipped sum g [P]
 * (overwritten) and statistics *st (overwritten) of rows idx[0..n). */
static dp_status batch_ref(dp_mlp *cpu, const float *X, const int32_t *y, size_t d, size_t row0,
                           const size_t *idx, size_t n, const dp_clip_config *clip, const float *cw,
                           float *g, dp_grad_stats *st) {
    float *Xb = malloc((n ? n : 1) * d * sizeof *Xb);
    int32_t *yb = malloc((n ? n : 1) * sizeof *yb);
    gather_rows(X, y, d, row0, idx, n, Xb, yb);
    memset(g, 0, dp_mlp_nparams(cpu) * sizeof *g);
    memset(st, 0, sizeof *st);
    dp_status s = dp_mlp_clipped_grad(cpu, Xb, yb, n, clip, cw, g, st);
    free(Xb);
    free(yb);
    return s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Clip bounds near the middle of the per-example gradient norms of rows
 * X [n, d], y [n] (their first 64 finite rows, each gradient materialised
 * by the CPU), so that a bound clips some examples and not others: the
 * median norm of the whole gradient (*flat) and of each layer's part
 * (layer[l], W_l and b_l). */
static void median_bounds(dp_mlp *cpu, const float *X, const int32_t *y, size_t n, double *flat,
                          double layer[DP_MLP_MAX_LAYERS]) {
    const size_t d = dp_mlp_get_config(cpu)->n_in, P = dp_mlp_nparams(cpu);
    const int L = dp_mlp_nlayers(cpu);
    enum { NM = 64 };
    double nrm[DP_MLP_MAX_LAYERS + 1][NM];
    float *g = malloc(P * sizeof *g);
    dp_clip_config none;
    memset(&none, 0, sizeof none);
    none.mode = DP_CLIP_NONE;
    size_t cnt = 0;
    for (size_t i = 0; i < n && cnt < NM; i++) {
        int finite = 1;
        for (size_t j = 0; j < d; j++)
            finite &= isfinite(X[i * d + j]) != 0;
        if (!finite) continue;
        memset(g, 0, P * sizeof *g);
        if (dp_mlp_clipped_grad(cpu, X + i * d, y + i, 1, &none, NULL, g, NULL) != DP_OK) break;
        double tot = 0;
        for (int l = 0; l < L; l++) {
            size_t w_off, b_off, n_out, n_in;
            dp_mlp_layer(cpu, l, &w_off, &b_off, &n_out, &n_in);
            double sq = 0;
            for (size_t j = w_off; j < b_off + n_out; j++)
                sq += (double)g[j] * g[j];
            nrm[l][cnt] = sqrt(sq);
            tot += sq;
        }
        nrm[DP_MLP_MAX_LAYERS][cnt++] = sqrt(tot);
    }
    free(g);
    for (int l = 0; l <= DP_MLP_MAX_LAYERS; l++) {
        double med = 1.0;
        if (cnt && (l < L || l == DP_MLP_MAX_LAYERS)) {
            qsort(nrm[l], cnt, sizeof(double), cmp_double);
            med = nrm[l][cnt / 2];
        }
        if (l == DP_MLP_MAX_LAYERS)
            *flat = med;
        else
            layer[l] = med;
    }
}

/* The device gradient accumulator and the statistics gathered since the
 * last dp_mlp_stats_cuda against the CPU's for the same rows: gradient and
 * loss sum to 1e-5 relative, non-finite rows exactly, clipped rows to one
 * (a norm within float rounding of its bound may fall either way). Padding
 * rows of a graph replay that reached the statistics would show in the loss
 * sum (each adds about w_0 log k). g_buf [P] is scratch. */
static void expect_batch(dp_cuda_mlp *gpu, const float *g_ref, const dp_grad_stats *st_ref,
                         size_t P, float *g_buf, const char *what) {
    dp_grad_stats sg;
    memset(&sg, 0, sizeof sg);
    poison_f(g_buf, P);
    OK(dp_mlp_get_grad_cuda(gpu, g_buf));
    OK(dp_mlp_stats_cuda(gpu, &sg, NULL));
    double re = rel_err_f(g_buf, g_ref, P);
    double lre = fabs(sg.loss_sum - st_ref->loss_sum) / (fabs(st_ref->loss_sum) + 1e-30);
    long dcl = (long)sg.n_clipped - (long)st_ref->n_clipped;
    CHECK(re < 1e-5, "%s: grad rel err %.3g", what, re);
    CHECK(lre < 1e-5, "%s: stats loss sum: gpu %.9g, cpu %.9g", what, sg.loss_sum,
          st_ref->loss_sum);
    CHECK(sg.n_nonfinite == st_ref->n_nonfinite, "%s: stats non-finite rows: gpu %zu, cpu %zu",
          what, sg.n_nonfinite, st_ref->n_nonfinite);
    CHECK(labs(dcl) <= 1, "%s: stats clipped rows: gpu %zu, cpu %zu", what, sg.n_clipped,
          st_ref->n_clipped);
    printf("%s: rel err %.2e, loss sum rel err %.1e, clipped %zu/%zu, non-finite %zu/%zu\n", what,
           re, lre, sg.n_clipped, st_ref->n_clipped, sg.n_nonfinite, st_ref->n_nonfinite);
}

/* dp_mlp_batch_grad_cuda (device gather from resident data, or streamed
 * rows; exact launches or graph replay) vs the CPU on the gathered rows. */
static void check_batch(dp_cuda_ctx *ctx) {
    netcase nc = {40, 2, {64, 64, 0}, 2, DP_ACT_RELU};
    dp_mlp_config cfg;
    make_cfg(&nc, &cfg);
    /* --quick: ~35 rows in micro-batches of 16, so that memcheck sees
     * several per call (pinned slot reuse, streamed staging buffers) */
    size_t N = quick ? 500 : 20000, row0 = 1000, max_micro = quick ? 16 : 512;
    float *X = malloc(N * nc.d * sizeof *X);
    int32_t *y = malloc(N * sizeof *y);
    fill_normal(X, N * nc.d, 1.0);
    for (size_t i = 0; i < N; i++)
        y[i] = (int32_t)rand_below(2);
    dp_mlp *cpu = NULL;
    OK(dp_mlp_create(&cfg, 256, &cpu));
    dp_mlp_init(cpu, tu_next(&rng));
    size_t P = dp_mlp_nparams(cpu);
    size_t cap = N, n = 0;
    size_t *idx = malloc(cap * sizeof *idx);
    float *Xb = malloc(N * nc.d * sizeof *Xb), *g_cpu = malloc(P * 4), *g_gpu = malloc(P * 4);
    int32_t *yb = malloc(N * sizeof *yb);
    for (size_t i = 0; i < N; i++)
        if (tu_uniform(&rng) < 0.07) idx[n++] = row0 + i; /* ~1400 rows: 3 micro-batches */
    gather_rows(X, y, nc.d, row0, idx, n, Xb, yb);
    dp_clip_config clip;
    memset(&clip, 0, sizeof clip);
    clip.mode = DP_CLIP_FLAT;
    clip.max_grad_norm = 0.5;
    memset(g_cpu, 0, P * 4);
    OK(dp_mlp_clipped_grad(cpu, Xb, yb, n, &clip, NULL, g_cpu, NULL));
    for (int streamed = 0; streamed < 2; streamed++) {
        for (int graph = 0; graph < 2; graph++) {
            dp_cuda_mlp *gpu = NULL;
            dp_cuda_data *data = NULL;
            OK(dp_mlp_create_cuda(ctx, &cfg, max_micro, &gpu));
            OK(dp_mlp_set_params_cuda(gpu, dp_mlp_params(cpu)));
            OK(dp_cuda_data_create(ctx, X, y, N, nc.d, row0, streamed ? 1 : 0, &data));
            CHECK(dp_cuda_data_resident(data) == !streamed, "resident flag");
            OK(dp_mlp_use_graph_cuda(gpu, graph));
            OK(dp_mlp_zero_grad_cuda(gpu));
            /* twice over half the batch each: accumulation across calls */
            OK(dp_mlp_batch_grad_cuda(gpu, data, idx, n / 2, &clip, NULL));
            OK(dp_mlp_batch_grad_cuda(gpu, data, idx + n / 2, n - n / 2, &clip, NULL));
            poison_f(g_gpu, P);
            OK(dp_mlp_get_grad_cuda(gpu, g_gpu));
            double re = rel_err_f(g_gpu, g_cpu, P);
            CHECK(re < 1e-5, "batch grad streamed=%d graph=%d: rel err %.3g", streamed, graph, re);
            printf("batch grad (%s data, %s): n=%zu rel err %.2e\n",
                   streamed ? "streamed" : "resident", graph ? "graph replay" : "launches", n, re);
            /* an index outside the held rows is refused, not read */
            size_t badidx = row0 + N;
            dp_status s = dp_mlp_batch_grad_cuda(gpu, data, &badidx, 1, &clip, NULL);
            CHECK(s == DP_E_RANGE, "out-of-range index: status %d (%s)", (int)s, dp_last_error());
            /* a label outside [0, k) in the data is refused, not used as an
             * index into the class weights and logits on the device */
            if (!graph) {
                int32_t keep = y[N / 2];
                dp_cuda_data *bad = NULL;
                y[N / 2] = 2; /* the network has 2 classes */
                OK(dp_cuda_data_create(ctx, X, y, N, nc.d, row0, streamed ? 1 : 0, &bad));
                size_t one = row0;
                s = dp_mlp_batch_grad_cuda(gpu, bad, &one, 1, &clip, NULL);
                CHECK(s == DP_E_RANGE, "label 2 of 2 classes: status %d (%s)", (int)s,
                      dp_last_error());
                dp_cuda_data_destroy(bad);
                y[N / 2] = keep;
            }
            if (!streamed && !graph) {
                /* eval on resident rows */
                size_t first = 123, m = quick ? 100 : 5000;
                float *Pc = malloc(m * 2 * 4), *Pg = malloc(m * 2 * 4);
                OK(dp_mlp_predict(cpu, X + first * nc.d, m, Pc));
                poison_f(Pg, m * 2);
                OK(dp_mlp_predict_data_cuda(gpu, data, first, m, Pg));
                double pe = rel_err_f(Pg, Pc, m * 2);
                CHECK(pe < 1e-5, "predict on resident data: rel err %.3g", pe);
                free(Pc);
                free(Pg);
            }
            dp_cuda_data_destroy(data);
            dp_mlp_destroy_cuda(gpu);
        }
    }
    dp_mlp_destroy(cpu);
    free(X);
    free(y);
    free(idx);
    free(Xb);
    free(yb);
    free(g_cpu);
    free(g_gpu);
}

/* The batch path over calls that change the clip mode, its bounds and the
 * class weights, on data with non-finite rows: one dp_cuda_mlp for each of
 * resident / streamed data and launches / graph replay, five micro-batches
 * per call (the last one partial: padded in graph mode; more than the two
 * pinned slots, so they are reused). In graph mode all micro-batches after
 * the first call's first are replays of one captured graph, which must read
 * each call's clip setting and class weights from device memory. After
 * each call the gradient and the device statistics against the CPU's on the
 * same rows; then two calls back to back with different settings, without a
 * read between, against the sum of the two references. */
static void check_batch_settings(dp_cuda_ctx *ctx) {
    netcase nc = {29, 2, {48, 33, 0}, 3, DP_ACT_TANH};
    dp_mlp_config cfg;
    make_cfg(&nc, &cfg);
    const size_t d = nc.d, N = quick ? 300 : 8000, row0 = 777, M = quick ? 16 : 512;
    const size_t n = 4 * M + (quick ? 5 : 77);
    float *X = malloc(N * d * sizeof *X);
    int32_t *y = malloc(N * sizeof *y);
    size_t *idx = malloc(n * sizeof *idx);
    fill_normal(X, N * d, 1.5);
    for (size_t i = 0; i < N; i++)
        y[i] = (int32_t)rand_below((size_t)nc.k);
    for (size_t i = 0; i < n; i++)
        idx[i] = row0 + rand_below(N); /* any order, repeats allowed */
    /* a NaN, a +Inf and a -Inf row, in the first micro-batch, a middle one
     * and the last (partial) one */
    const size_t at[3] = {1, 2 * M + 3, n - 2};
    for (int b = 0; b < 3; b++)
        X[(idx[at[b]] - row0) * d + rand_below(d)] = b == 0 ? NAN : b == 1 ? INFINITY : -INFINITY;
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = X + (idx[i] - row0) * d;
        int finite = 1;
        for (size_t j = 0; j < d; j++)
            finite &= isfinite(row[j]) != 0;
        n_bad += !finite;
    }
    dp_mlp *cpu = NULL;
    OK(dp_mlp_create(&cfg, 256, &cpu));
    dp_mlp_init(cpu, tu_next(&rng));
    const size_t P = dp_mlp_nparams(cpu);
    /* settings in call order: each differs from the one before in mode or
     * bound and in the class weights (none -> cw1 -> cw2 -> cw1) */
    enum { NS = 4 };
    float cw1[3], cw2[3];
    for (int c = 0; c < 3; c++) {
        cw1[c] = (float)(0.5 + tu_uniform(&rng));
        cw2[c] = (float)(0.5 + tu_uniform(&rng));
    }
    const float *cws[NS] = {NULL, cw1, cw2, cw1};
    dp_clip_config clips[NS];
    memset(clips, 0, sizeof clips);
    double c_flat, c_layer[DP_MLP_MAX_LAYERS];
    median_bounds(cpu, X, y, N, &c_flat, c_layer);
    clips[0].mode = DP_CLIP_FLAT;
    clips[0].max_grad_norm = c_flat;
    clips[1].mode = DP_CLIP_PER_LAYER;
    for (int l = 0; l < DP_MLP_MAX_LAYERS; l++)
        clips[1].layer_norms[l] = c_layer[l];
    clips[2].mode = DP_CLIP_NONE;
    clips[3].mode = DP_CLIP_FLAT;
    clips[3].max_grad_norm = 0.8 * clips[0].max_grad_norm;
    float *g_ref = malloc((NS + 1) * P * sizeof *g_ref), *g_gpu = malloc(P * sizeof *g_gpu);
    dp_grad_stats st_ref[NS + 1];
    for (int s = 0; s < NS; s++)
        OK(batch_ref(cpu, X, y, d, row0, idx, n, &clips[s], cws[s], g_ref + (size_t)s * P,
                     &st_ref[s]));
    /* [NS]: settings 1 then 2, accumulated */
    float *g_sum = g_ref + (size_t)NS * P;
    for (size_t j = 0; j < P; j++)
        g_sum[j] = g_ref[P + j] + g_ref[2 * P + j];
    st_ref[NS] = st_ref[1];
    st_ref[NS].loss_sum += st_ref[2].loss_sum;
    st_ref[NS].n_clipped += st_ref[2].n_clipped;
    st_ref[NS].n_nonfinite += st_ref[2].n_nonfinite;
    /* the setup itself: the reference does see the non-finite rows */
    CHECK(st_ref[0].n_nonfinite == n_bad && n_bad >= 1,
          "batch settings: reference counts %zu non-finite rows, expected %zu",
          st_ref[0].n_nonfinite, n_bad);
    for (int run = 0; run < 4; run++) {
        const int streamed = run / 2, graph = run % 2;
        dp_cuda_mlp *gpu = NULL;
        dp_cuda_data *data = NULL;
        char what[160];
        OK(dp_mlp_create_cuda(ctx, &cfg, M, &gpu));
        OK(dp_mlp_set_params_cuda(gpu, dp_mlp_params(cpu)));
        OK(dp_cuda_data_create(ctx, X, y, N, d, row0, streamed ? 1 : 0, &data));
        CHECK(dp_cuda_data_resident(data) == !streamed, "resident flag");
        OK(dp_mlp_use_graph_cuda(gpu, graph));
        OK(dp_mlp_stats_cuda(gpu, NULL, NULL)); /* statistics from zero */
        for (int s = 0; s < NS; s++) {
            OK(dp_mlp_zero_grad_cuda(gpu));
            OK(dp_mlp_batch_grad_cuda(gpu, data, idx, n, &clips[s], cws[s]));
            const char *cwn = cws[s] == cw1 ? "1" : cws[s] == cw2 ? "2" : "-";
            snprintf(what, sizeof what, "batch %s %-8s n=%zu micro=%zu call %d clip=%-9s cw=%s",
                     graph ? "graph" : "launch", streamed ? "streamed" : "resident", n, M, s,
                     mode_name(clips[s].mode), cwn);
            expect_batch(gpu, g_ref + (size_t)s * P, &st_ref[s], P, g_gpu, what);
        }
        OK(dp_mlp_zero_grad_cuda(gpu));
        OK(dp_mlp_batch_grad_cuda(gpu, data, idx, n, &clips[1], cws[1]));
        OK(dp_mlp_batch_grad_cuda(gpu, data, idx, n, &clips[2], cws[2]));
        snprintf(what, sizeof what, "batch %s %-8s calls 1 and 2 back to back",
                 graph ? "graph" : "launch", streamed ? "streamed" : "resident");
        expect_batch(gpu, g_sum, &st_ref[NS], P, g_gpu, what);
        dp_cuda_data_destroy(data);
        dp_mlp_destroy_cuda(gpu);
    }
    dp_mlp_destroy(cpu);
    free(X);
    free(y);
    free(idx);
    free(g_ref);
    free(g_gpu);
}

/* One dp_cuda_mlp in graph mode over a sequence of datasets, each call
 * against the CPU on that dataset's rows (gradient and statistics):
 *   A  resident, rows from 0
 *   B  resident, A destroyed first: other arrays of A's size, rows from 37
 *      (cudaMalloc and malloc may hand back A's addresses: a graph kept by
 *      the handle or by the device pointers alone would gather B's arrays
 *      with A's first row, or A's freed arrays)
 *   C  resident beside B, rows from 37 too (other pointers, same first row)
 *   S  streamed, rows from 1234;  then B and S again.
 * Row numbers are drawn below first + N - 64, so a stale first row of 0
 * instead of 37 still reads rows inside the arrays (wrong ones, not a
 * crash). Then dp_mlp_predict_data_cuda on S (streamed: the host rows) and
 * on B against dp_mlp_predict, over several micro-batches and up to the
 * last row, and a range past the end refused. */
static void check_batch_switch(dp_cuda_ctx *ctx) {
    netcase nc = {29, 1, {40, 0, 0}, 2, DP_ACT_RELU};
    dp_mlp_config cfg;
    make_cfg(&nc, &cfg);
    const size_t d = nc.d, N = quick ? 200 : 3000, M = quick ? 16 : 256, n = 2 * M + 9;
    enum { A, B, C, S, ND };
    const size_t base[ND] = {0, 37, 37, 1234};
    const char *name = "ABCS";
    float *X[ND];
    int32_t *y[ND];
    for (int k = 0; k < ND; k++) {
        X[k] = malloc(N * d * sizeof(float));
        y[k] = malloc(N * sizeof(int32_t));
        fill_normal(X[k], N * d, 1.0);
        for (size_t i = 0; i < N; i++)
            y[k][i] = (int32_t)rand_below(2);
    }
    dp_mlp *cpu = NULL;
    OK(dp_mlp_create(&cfg, 256, &cpu));
    dp_mlp_init(cpu, tu_next(&rng));
    const size_t P = dp_mlp_nparams(cpu);
    float *g_ref = malloc(P * sizeof *g_ref), *g_gpu = malloc(P * sizeof *g_gpu);
    size_t *idx = malloc(n * sizeof *idx);
    dp_clip_config clip;
    memset(&clip, 0, sizeof clip);
    clip.mode = DP_CLIP_FLAT;
    median_bounds(cpu, X[A], y[A], N, &clip.max_grad_norm, clip.layer_norms);
    dp_cuda_mlp *gpu = NULL;
    dp_cuda_data *data[ND] = {NULL, NULL, NULL, NULL};
    OK(dp_mlp_create_cuda(ctx, &cfg, M, &gpu));
    OK(dp_mlp_set_params_cuda(gpu, dp_mlp_params(cpu)));
    OK(dp_mlp_use_graph_cuda(gpu, 1));
    OK(dp_mlp_stats_cuda(gpu, NULL, NULL));
    OK(dp_cuda_data_create(ctx, X[A], y[A], N, d, base[A], 0, &data[A]));
    const int seq[] = {A, B, C, S, B, S};
    for (size_t t = 0; t < sizeof seq / sizeof *seq; t++) {
        const int k = seq[t];
        if (k == B && !data[B]) {
            dp_cuda_data_destroy(data[A]);
            data[A] = NULL;
            OK(dp_cuda_data_create(ctx, X[B], y[B], N, d, base[B], 0, &data[B]));
        } else if (!data[k]) {
            OK(dp_cuda_data_create(ctx, X[k], y[k], N, d, base[k], k == S ? 1 : 0, &data[k]));
        }
        CHECK(dp_cuda_data_resident(data[k]) == (k != S), "resident flag of %c", name[k]);
        for (size_t i = 0; i < n; i++)
            idx[i] = base[k] + rand_below(N - 64);
        dp_grad_stats st;
        OK(batch_ref(cpu, X[k], y[k], d, base[k], idx, n, &clip, NULL, g_ref, &st));
        OK(dp_mlp_zero_grad_cuda(gpu));
        OK(dp_mlp_batch_grad_cuda(gpu, data[k], idx, n, &clip, NULL));
        char what[160];
        snprintf(what, sizeof what, "batch graph, one mlp, call %zu on %c (%s, rows from %zu)", t,
                 name[k], k == S ? "streamed" : "resident", base[k]);
        expect_batch(gpu, g_ref, &st, P, g_gpu, what);
    }
    /* predictions of the last m rows of S and of rows [11, 11 + m) of B */
    const size_t m = 2 * M + 3;
    float *Pc = malloc(m * 2 * sizeof *Pc), *Pg = malloc(m * 2 * sizeof *Pg);
    const int pk[2] = {S, B};
    const size_t first[2] = {N - m, 11};
    for (int p = 0; p < 2; p++) {
        const int k = pk[p];
        OK(dp_mlp_predict(cpu, X[k] + first[p] * d, m, Pc));
        poison_f(Pg, m * 2);
        OK(dp_mlp_predict_data_cuda(gpu, data[k], first[p], m, Pg));
        double pe = rel_err_f(Pg, Pc, m * 2);
        CHECK(pe < 1e-5, "predict on %s data rows [%zu, %zu): rel err %.3g",
              k == S ? "streamed" : "resident", first[p], first[p] + m, pe);
        printf("predict on %s data rows [%zu, %zu) of %zu, micro=%zu: rel err %.2e\n",
               k == S ? "streamed" : "resident", first[p], first[p] + m, N, M, pe);
    }
    dp_status s = dp_mlp_predict_data_cuda(gpu, data[S], N - 3, 4, Pg);
    CHECK(s == DP_E_RANGE, "predict past the end of streamed data: status %d (%s)", (int)s,
          dp_last_error());
    free(Pc);
    free(Pg);
    for (int k = 0; k < ND; k++) {
        dp_cuda_data_destroy(data[k]);
        free(X[k]);
        free(y[k]);
    }
    dp_mlp_destroy_cuda(gpu);
    dp_mlp_destroy(cpu);
    free(g_ref);
    free(g_gpu);
    free(idx);
}

/* ---------------------------------------------------------------- optimizers */

static void check_optim(dp_cuda_ctx *ctx) {
    size_t n = quick ? 1000 : 100001;
    dp_key key;
    dp_key_from_seed(tu_next(&rng), "noise", &key);
    for (int kind = DP_OPT_SGD; kind <= DP_OPT_ADAM; kind++) {
        for (int noisy = 0; noisy < 2; noisy++) {
            dp_optim co;
            OK(optim_init(&co, (dp_optimizer_kind)kind, n, 0.9, 0.9, 0.999, 1e-8));
            dp_cuda_optim *go = NULL;
            OK(dp_optim_create_cuda(ctx, (dp_optimizer_kind)kind, n, 0.9, 0.9, 0.999, 1e-8, &go));
            float *p = malloc(n * 4), *g = malloc(n * 4), *pg = malloc(n * 4), *nb = malloc(n * 4);
            fill_normal(p, n, 1.0);
            float *pd = NULL, *gd = NULL;
            OK(dp_cuda_alloc(ctx, n * 4, (void **)&pd));
            OK(dp_cuda_alloc(ctx, n * 4, (void **)&gd));
            OK(dp_cuda_to_device(ctx, pd, p, n * 4));
            double std = noisy ? 0.8 : 0.0;
            float scale = 1.0f / 1024.0f;
            /* momentum: the vector is a chunk at an odd noise coordinate (owner
             * noise): element i takes noise coordinate off + i */
            size_t off = kind == DP_OPT_MOMENTUM ? 1001 : 0;
            for (uint64_t t = 0; t < 4; t++) {
                fill_normal(g, n, 3.0);
                OK(dp_cuda_to_device(ctx, gd, g, n * 4));
                /* the CPU trainer's order: noise into a zeroed buffer, add, scale */
                if (noisy) {
                    memset(nb, 0, n * 4);
                    OK(dp_noise_add(&key, t, 0, off, nb, n, std));
                    for (size_t i = 0; i < n; i++)
                        g[i] += nb[i];
                }
                for (size_t i = 0; i < n; i++)
                    g[i] *= scale;
                double lr = 0.05 * (double)(t + 1);
                optim_step(&co, p, g, lr);
                if (noisy)
                    OK(dp_optim_noisy_step_dev_cuda(go, pd, gd, &key, t, 0, off, std, scale, lr));
                else
                    OK(dp_optim_step_dev_cuda(go, pd, gd, scale, lr, 1));
            }
            poison_f(pg, n);
            OK(dp_cuda_to_host(ctx, pg, pd, n * 4));
            double re = rel_err_f(pg, p, n);
            CHECK(re < 1e-5, "optimizer %s noisy=%d: rel err %.3g", dp_optimizer_name(kind), noisy,
                  re);
            /* the gradient is zeroed for the next step */
            OK(dp_cuda_to_host(ctx, g, gd, n * 4));
            size_t nz = 0;
            for (size_t i = 0; i < n; i++)
                nz += g[i] != 0.0f;
            CHECK(nz == 0, "optimizer left %zu nonzero gradient entries", nz);
            /* the state in the CPU's layout (checkpoints move between devices):
             * read back; then the CPU's state and parameters put into a fresh
             * device optimizer, one more step on each side from there */
            if (kind != DP_OPT_SGD) {
                size_t len = optim_state_len(&co);
                float *st = malloc(len * 4);
                uint64_t tt = 0;
                poison_f(st, len);
                OK(dp_optim_get_state_cuda(go, st, &tt));
                double se = rel_err_f(st, co.state, len);
                CHECK(se < 1e-5 && tt == co.t, "optimizer state: rel err %.3g, t %llu vs %llu", se,
                      (unsigned long long)tt, (unsigned long long)co.t);
                dp_cuda_optim *go2 = NULL;
                OK(dp_optim_create_cuda(ctx, (dp_optimizer_kind)kind, n, 0.9, 0.9, 0.999, 1e-8,
                                        &go2));
                OK(dp_optim_set_state_cuda(go2, co.state, co.t));
                OK(dp_cuda_to_device(ctx, pd, p, n * 4));
                fill_normal(g, n, 3.0);
                OK(dp_cuda_to_device(ctx, gd, g, n * 4));
                for (size_t i = 0; i < n; i++)
                    g[i] *= scale;
                optim_step(&co, p, g, 0.07);
                OK(dp_optim_step_dev_cuda(go2, pd, gd, scale, 0.07, 1));
                poison_f(pg, n);
                OK(dp_cuda_to_host(ctx, pg, pd, n * 4));
                poison_f(st, len);
                OK(dp_optim_get_state_cuda(go2, st, &tt));
                double pe = rel_err_f(pg, p, n);
                se = rel_err_f(st, co.state, len);
                CHECK(pe < 1e-6 && se < 1e-6 && tt == co.t,
                      "optimizer %s resumed from the CPU's state: params rel err %.3g, state %.3g, "
                      "t %llu vs %llu",
                      dp_optimizer_name(kind), pe, se, (unsigned long long)tt,
                      (unsigned long long)co.t);
                dp_optim_destroy_cuda(go2);
                free(st);
            }
            printf("optimizer %-8s %s: 4 steps, rel err %.2e\n", dp_optimizer_name(kind),
                   noisy ? "noise+scale+update fused" : "scale+update", re);
            dp_cuda_free(ctx, pd);
            dp_cuda_free(ctx, gd);
            dp_optim_destroy_cuda(go);
            optim_free(&co);
            free(p);
            free(g);
            free(pg);
            free(nb);
        }
    }
}

/* ---------------------------------------------------------------- a training run */

/* The trainer's step on both sides: Poisson sample, clipped sum, noise,
 * division by the expected batch size, optimizer. Noise-free (the issue's
 * check), then with the same noise draws on both sides. */
static void check_training(dp_cuda_ctx *ctx) {
    netcase nc = {24, 2, {64, 64, 0}, 2, DP_ACT_RELU};
    dp_mlp_config cfg;
    make_cfg(&nc, &cfg);
    size_t N = quick ? 2000 : 50000, T = quick ? 4 : 40;
    double q = quick ? 0.05 : 0.02, B = q * (double)N;
    float *X = malloc(N * nc.d * 4);
    int32_t *y = malloc(N * 4);
    fill_normal(X, N * nc.d, 1.0);
    /* a learnable label: sign of a random projection plus noise */
    float wtrue[64];
    fill_normal(wtrue, nc.d, 1.0);
    for (size_t i = 0; i < N; i++) {
        double s = 0;
        for (size_t j = 0; j < nc.d; j++)
            s += wtrue[j] * X[i * nc.d + j];
        y[i] = s + 0.5 * tu_normal(&rng) > 0;
    }
    dp_key ks, kn;
    dp_key_from_seed(tu_next(&rng), "sample", &ks);
    dp_key_from_seed(tu_next(&rng), "noise", &kn);
    size_t cap = dp_poisson_capacity(N, q);
    size_t *idx = malloc(cap * sizeof *idx);
    float *Xb = malloc(cap * nc.d * 4);
    int32_t *yb = malloc(cap * 4);
    for (int noisy = 0; noisy < 2; noisy++) {
        /* noise-free: SGD and momentum, whose updates are smooth in g, so the
         * float differences stay float-sized; noisy: SGD and Adam (Adam's
         * g / sqrt(v) is steep near g = 0: the noise keeps g away from it) */
        const int kinds[2][2] = {{DP_OPT_SGD, DP_OPT_MOMENTUM}, {DP_OPT_SGD, DP_OPT_ADAM}};
        for (int run = 0; run < 4; run++) {
            /* each optimizer with kernels launched one by one, then with the
             * micro-batches padded to the Poisson capacity and replayed */
            const int kind = kinds[noisy][run / 2], graph = run % 2;
            dp_mlp *cpu = NULL;
            OK(dp_mlp_create(&cfg, 256, &cpu));
            dp_mlp_init(cpu, 42);
            size_t P = dp_mlp_nparams(cpu);
            dp_cuda_mlp *gpu = NULL;
            dp_cuda_data *data = NULL;
            dp_cuda_optim *go = NULL;
            dp_optim co;
            OK(dp_mlp_create_cuda(ctx, &cfg, cap, &gpu));
            OK(dp_mlp_set_params_cuda(gpu, dp_mlp_params(cpu)));
            OK(dp_cuda_data_create(ctx, X, y, N, nc.d, 0, 0, &data));
            OK(dp_mlp_use_graph_cuda(gpu, graph));
            OK(optim_init(&co, (dp_optimizer_kind)kind, P, 0.9, 0.9, 0.999, 1e-8));
            OK(dp_optim_create_cuda(ctx, (dp_optimizer_kind)kind, P, 0.9, 0.9, 0.999, 1e-8, &go));
            float *g = malloc(P * 4), *nbuf = malloc(P * 4), *pg = malloc(P * 4);
            dp_clip_config clip;
            memset(&clip, 0, sizeof clip);
            clip.mode = DP_CLIP_FLAT;
            clip.max_grad_norm = 1.0;
            double std = noisy ? 1.0 * clip.max_grad_norm : 0.0;
            double lr = kind == DP_OPT_ADAM ? 0.01 : kind == DP_OPT_MOMENTUM ? 0.1 : 0.5;
            OK(dp_mlp_zero_grad_cuda(gpu));
            for (uint64_t t = 0; t < T; t++) {
                size_t count = 0;
                OK(dp_poisson_sample(&ks, t, N, q, 0, N, idx, cap, &count));
                gather_rows(X, y, nc.d, 0, idx, count, Xb, yb);
                memset(g, 0, P * 4);
                OK(dp_mlp_clipped_grad(cpu, Xb, yb, count, &clip, NULL, g, NULL));
                if (noisy) {
                    memset(nbuf, 0, P * 4);
                    OK(dp_noise_add(&kn, t, 0, 0, nbuf, P, std));
                    for (size_t i = 0; i < P; i++)
                        g[i] += nbuf[i];
                }
                float scale = (float)(1.0 / B);
                for (size_t i = 0; i < P; i++)
                    g[i] *= scale;
                optim_step(&co, dp_mlp_params(cpu), g, lr);
                OK(dp_mlp_batch_grad_cuda(gpu, data, idx, count, &clip, NULL));
                OK(dp_optim_noisy_step_dev_cuda(go, dp_mlp_params_dev_cuda(gpu),
                                                dp_mlp_grad_dev_cuda(gpu), &kn, t, 0, 0, std, scale,
                                                lr));
            }
            poison_f(pg, P);
            OK(dp_mlp_get_params_cuda(gpu, pg));
            double re = rel_err_f(pg, dp_mlp_params(cpu), P);
            CHECK(re < 1e-4, "training run (%s, %s, %s, %zu steps): params rel err %.3g",
                  dp_optimizer_name(kind), noisy ? "noisy" : "noise-free",
                  graph ? "graph" : "launches", (size_t)T, re);
            printf("training run: %zu steps of q=%.3g on N=%zu, %-4s %-10s %s: params rel err "
                   "%.2e\n",
                   (size_t)T, q, N, dp_optimizer_name(kind), noisy ? "noisy" : "noise-free",
                   graph ? "graph" : "launches", re);
            free(g);
            free(nbuf);
            free(pg);
            optim_free(&co);
            dp_optim_destroy_cuda(go);
            dp_cuda_data_destroy(data);
            dp_mlp_destroy_cuda(gpu);
            dp_mlp_destroy(cpu);
        }
    }
    free(X);
    free(y);
    free(idx);
    free(Xb);
    free(yb);
}

/* ---------------------------------------------------------------- the trainer */

/* One seeded noisy run of dp_trainer on the CPU (noise pump, finish_step),
 * then on the device (backend.c's table, trainer.c's step_dev: index list,
 * micro-batch padded to the Poisson capacity and replayed as a CUDA graph,
 * fused noise + 1/(qN) + optimizer) with cuda_graph 1, then 0: parameters
 * to 1e-4, the same steps and epsilon. */
static void check_trainer_case(const dp_dataset *ds, dp_optimizer_kind kind, uint64_t seed) {
    dp_train_config c;
    dp_train_config_default(&c);
    c.n_hidden = 2;
    c.hidden[0] = 32;
    c.hidden[1] = 17;
    c.seeded = 1;
    c.seed = seed;
    c.optimizer = kind;
    c.lr = kind == DP_OPT_ADAM ? 0.01 : 0.5;
    c.batch_size = 200;
    c.noise_multiplier = 1.0;
    c.epochs = 1;
    c.max_steps = quick ? 5 : 0;
    float *ref = NULL;
    size_t P = 0;
    uint64_t steps_ref = 0;
    double eps_ref = 0;
    for (int run = 0; run < 3; run++) {
        c.device = run ? DP_DEVICE_CUDA : DP_DEVICE_CPU;
        c.cuda_graph = run == 1;
        const char *what = run == 0 ? "cpu" : run == 1 ? "cuda graph" : "cuda launches";
        dp_trainer *t = NULL;
        dp_status s = dp_trainer_create(ds, &c, &t);
        if (s == DP_OK) s = dp_trainer_run(t, NULL, NULL);
        double eps = NAN;
        if (s == DP_OK) s = dp_trainer_epsilon(t, &eps);
        dp_mlp *m = s == DP_OK ? dp_trainer_mlp(t) : NULL;
        if (!m) {
            CHECK(0, "trainer %s %s: %s: %s", dp_optimizer_name(kind), what, dp_status_str(s),
                  dp_last_error());
            dp_trainer_destroy(t);
            break;
        }
        if (run == 0) {
            P = dp_mlp_nparams(m);
            ref = malloc(P * sizeof *ref);
            memcpy(ref, dp_mlp_params(m), P * sizeof *ref);
            steps_ref = dp_trainer_steps_done(t);
            eps_ref = eps;
        } else {
            double re = rel_err_f(dp_mlp_params(m), ref, P);
            uint64_t steps = dp_trainer_steps_done(t);
            CHECK(re < 1e-4 && steps == steps_ref && eps == eps_ref,
                  "trainer %s %s vs cpu: params rel err %.3g, steps %llu vs %llu, epsilon %g vs %g",
                  dp_optimizer_name(kind), what, re, (unsigned long long)steps,
                  (unsigned long long)steps_ref, eps, eps_ref);
            printf("trainer (dp_trainer, noisy %-4s, %llu steps): %-13s vs cpu: params rel err "
                   "%.2e\n",
                   dp_optimizer_name(kind), (unsigned long long)steps, what, re);
        }
        dp_trainer_destroy(t);
    }
    free(ref);
}

static void check_trainer(void) {
    char *dir = fx_dataset(quick ? 1000 : 6000, 10, tu_next(&rng), NULL, NULL);
    dp_dataset *ds = NULL;
    dp_status s = dp_dataset_open(dir, "train", 0, SIZE_MAX, &ds);
    CHECK(s == DP_OK, "trainer: dataset: %s", dp_last_error());
    if (s == DP_OK) {
        check_trainer_case(ds, DP_OPT_SGD, tu_next(&rng));
        /* (under compute-sanitizer each device run's context start is slow) */
        if (!quick) check_trainer_case(ds, DP_OPT_ADAM, tu_next(&rng));
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

/* ---------------------------------------------------------------- NCCL */

static void check_nccl(dp_cuda_ctx *ctx) {
    MPI_Comm world = MPI_COMM_WORLD;
    dp_cuda_comm *c = NULL;
    dp_status s = dp_nccl_create_cuda(ctx, &world, &c);
    if (s == DP_E_UNSUPPORTED) {
        printf("nccl: skipped: %s\n", dp_last_error());
        return;
    }
    OK(s);
    int R = 1, rank = 0;
    MPI_Comm_size(world, &R);
    MPI_Comm_rank(world, &rank);
    size_t n = 1000;
    float *h = malloc(n * R * 4), *o = malloc(n * R * 4);
    fill_normal(h, n * R, 1.0);
    float *d = NULL, *e = NULL;
    OK(dp_cuda_alloc(ctx, n * R * 4, (void **)&d));
    OK(dp_cuda_alloc(ctx, n * R * 4, (void **)&e));
    OK(dp_cuda_to_device(ctx, d, h, n * R * 4));
    OK(dp_nccl_allreduce_cuda(c, d, n * R));
    OK(dp_cuda_to_host(ctx, o, d, n * R * 4));
    /* with one rank the sum is the input; with R ranks of different data the
     * check would need the others' inputs, so only R = 1 is checked exactly */
    if (R == 1) CHECK(rel_err_f(o, h, n) == 0.0, "nccl allreduce on one rank changed the data");
    /* separate buffers, then the in-place forms the trainer's owner noise
     * uses (backend.c): reduce-scatter into chunk `rank` of the send buffer,
     * allgather from it. On one rank each is the identity. */
    OK(dp_cuda_to_device(ctx, d, h, n * R * 4));
    OK(dp_nccl_reduce_scatter_cuda(c, d, e, n));
    poison_f(o, n);
    OK(dp_cuda_to_host(ctx, o, e, n * 4));
    if (R == 1)
        CHECK(rel_err_f(o, h, n) == 0.0, "nccl reduce-scatter on one rank changed the data");
    OK(dp_nccl_allgather_cuda(c, e, d, n));
    poison_f(o, n * R);
    OK(dp_cuda_to_host(ctx, o, d, n * R * 4));
    if (R == 1) CHECK(rel_err_f(o, h, n) == 0.0, "nccl allgather on one rank changed the data");
    OK(dp_cuda_to_device(ctx, d, h, n * R * 4));
    OK(dp_nccl_reduce_scatter_cuda(c, d, d + (size_t)rank * n, n));
    OK(dp_nccl_allgather_cuda(c, d + (size_t)rank * n, d, n));
    poison_f(o, n * R);
    OK(dp_cuda_to_host(ctx, o, d, n * R * 4));
    if (R == 1)
        CHECK(rel_err_f(o, h, n) == 0.0,
              "nccl in-place reduce-scatter + allgather changed the data");
    printf("nccl: %d rank(s): allreduce, reduce-scatter, allgather (separate and in place) ran\n",
           R);
    dp_cuda_free(ctx, d);
    dp_cuda_free(ctx, e);
    free(h);
    free(o);
    dp_nccl_destroy_cuda(c);
}

int main(int argc, char **argv) {
    int nccl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--nccl"))
            nccl = 1;
        else {
            fprintf(stderr, "usage: check_cuda [--quick] [--nccl]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ndev = 0;
    dp_status s = dp_cuda_device_count(&ndev);
    if (s != DP_OK) {
        fprintf(stderr, "check_cuda: skipped: %s\n", dp_last_error());
        return 77;
    }
    dp_cuda_device_info info;
    if (dp_cuda_device_query(0, &info) != DP_OK) {
        fprintf(stderr, "check_cuda: %s\n", dp_last_error());
        return 1;
    }
    printf("device 0 of %d: %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f free)\n", ndev,
           info.name, info.cc_major, info.cc_minor, info.n_sm, info.total_mem / 1073741824.0,
           info.free_mem / 1073741824.0);
    rng = tu_seed();
    if (sodium_init() < 0) return 1;
    dp_cuda_ctx *ctx = NULL;
    if (dp_cuda_ctx_create(0, &ctx) != DP_OK) {
        printf("FAIL: context: %s\n", dp_last_error());
        return 1;
    }
    check_keystream(ctx);
    check_noise(ctx);
    check_grads(ctx);
    check_batch(ctx);
    check_batch_settings(ctx);
    check_batch_switch(ctx);
    check_optim(ctx);
    check_training(ctx);
    check_trainer();
    if (nccl) {
        MPI_Init(&argc, &argv);
        check_nccl(ctx);
        MPI_Finalize();
    }
    dp_cuda_ctx_destroy(ctx);
    printf("check_cuda: %d checks passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
