/*
 * check_cuda.c: the CUDA backend against the CPU implementation, on a GPU.
 * Not a ctest test (CPU CI has no device): bench/gpu.sh runs it, plain and
 * under compute-sanitizer. Each check draws fresh random inputs (seed
 * printed; DP_TEST_SEED replays) and compares with the CPU code that defines
 * the semantics: the ChaCha20 keystream with libsodium's, the noise with
 * dp_noise_draw_f64 / dp_noise_add, every gradient kernel through
 * dp_mlp_clipped_grad (relative error < 1e-5), prediction with
 * dp_mlp_predict, the optimizers with optim.c, a whole training run with
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

/* dp_mlp_batch_grad_cuda (device gather from resident data, or streamed
 * rows; exact launches or graph replay) vs the CPU on the gathered rows. */
static void check_batch(dp_cuda_ctx *ctx) {
    netcase nc = {40, 2, {64, 64, 0}, 2, DP_ACT_RELU};
    dp_mlp_config cfg;
    make_cfg(&nc, &cfg);
    size_t N = quick ? 500 : 20000, row0 = 1000, max_micro = quick ? 64 : 512;
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
    for (size_t i = 0; i < n; i++) {
        memcpy(Xb + i * nc.d, X + (idx[i] - row0) * nc.d, nc.d * sizeof(float));
        yb[i] = y[idx[i] - row0];
    }
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
                for (size_t i = 0; i < count; i++) {
                    memcpy(Xb + i * nc.d, X + idx[i] * nc.d, nc.d * 4);
                    yb[i] = y[idx[i]];
                }
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
    if (R == 1) CHECK(rel_err_f(o, h, n) == 0.0, "nccl reduce-scatter on one rank changed the data");
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
        CHECK(rel_err_f(o, h, n) == 0.0, "nccl in-place reduce-scatter + allgather changed the data");
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
