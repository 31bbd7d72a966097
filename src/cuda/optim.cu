/*
 * optim.cu: the optimizers of src/train/optim.c on the device (SGD; SGD with
 * momentum as PyTorch defines it; Adam of Kingma & Ba 2015 with PyTorch's
 * placement of epsilon), element-wise in float32 with per-step scalars
 * computed in double on the host exactly as optim.c does. The fused variant
 * also does the end of trainer.c's private step in the same pass: the noise
 * (chacha_dev.h, the CPU's draws), the division by the expected batch size,
 * and zeroing the gradient for the next step.
 */
#include <math.h>
#include <string.h>
#include "cuda/chacha_dev.h"
#include "cuda/cuda_internal.h"

struct dp_cuda_optim {
    dp_cuda_ctx *ctx;
    dp_optimizer_kind kind;
    size_t n;
    double momentum, beta1, beta2, eps;
    uint64_t t;
    float *state; /* momentum: v [n]; Adam: m [n] then v [n] */
};

/* Per-step scalars, as optim.c derives them. */
struct opt_scalars {
    int kind;
    float lr;     /* SGD, momentum */
    float mu;     /* momentum */
    float step;   /* Adam: lr / (1 - b1^t) */
    float inv_c2; /* Adam: 1 / sqrt(1 - b2^t) */
    float b1, b2, c1, c2, eps;
    float g_scale; /* applied to g first (1 / expected batch) */
};

struct noise_args {
    uint32_t sk[8];  /* the step's XChaCha20 subkey */
    uint64_t offset; /* noise coordinate of element 0 */
    double std;      /* 0: no noise */
};

/* One element, in optim.c's order of float operations. The explicit _rn
 * intrinsics stop nvcc from contracting into FMAs (results to the last bit
 * where the CPU build does not contract either). */
__device__ __forceinline__ void opt_update(const struct opt_scalars &s, float *p, float g,
                                           float *st, size_t n, size_t i) {
    if (s.kind == DP_OPT_SGD) {
        p[i] = __fsub_rn(p[i], __fmul_rn(s.lr, g));
    } else if (s.kind == DP_OPT_MOMENTUM) {
        float v = __fadd_rn(__fmul_rn(s.mu, st[i]), g);
        st[i] = v;
        p[i] = __fsub_rn(p[i], __fmul_rn(s.lr, v));
    } else {
        float m = __fadd_rn(__fmul_rn(s.b1, st[i]), __fmul_rn(s.c1, g));
        float v = __fadd_rn(__fmul_rn(s.b2, st[n + i]), __fmul_rn(__fmul_rn(s.c2, g), g));
        st[i] = m;
        st[n + i] = v;
        float den = __fadd_rn(__fmul_rn(__fsqrt_rn(v), s.inv_c2), s.eps);
        p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(s.step, m), den));
    }
}

__global__ void optim_kernel(struct opt_scalars s, float *__restrict__ p, float *__restrict__ g,
                             float *__restrict__ st, size_t n, int zero_grad) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], s.g_scale);
        opt_update(s, p, gi, st, n, i);
        if (zero_grad) g[i] = 0.0f;
    }
}

/* The private step's end: g = (g + (float)(std z)) * scale, as trainer.c
 * (noise drawn into a zeroed float buffer, then added), then the update,
 * then g = 0. Thread t owns noise block (offset + 2 t') so that one ChaCha20
 * block serves two consecutive coordinates. */
__global__ void noisy_optim_kernel(struct opt_scalars s, struct noise_args na,
                                   float *__restrict__ p, float *__restrict__ g,
                                   float *__restrict__ st, size_t n) {
    const uint64_t b0 = na.offset / 2, b1 = (na.offset + n - 1) / 2 + 1;
    for (uint64_t b = b0 + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; b < b1;
         b += (uint64_t)gridDim.x * blockDim.x) {
        double z[2] = {0.0, 0.0};
        if (na.std > 0.0) dp_noise_pair(na.sk, b, z);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint64_t j = 2 * b + (uint64_t)h;
            if (j < na.offset || j >= na.offset + n) continue;
            size_t i = (size_t)(j - na.offset);
            float gi = g[i];
            if (na.std > 0.0) gi = __fadd_rn(gi, (float)__dmul_rn(na.std, z[h]));
            gi = __fmul_rn(gi, s.g_scale);
            opt_update(s, p, gi, st, n, i);
            g[i] = 0.0f;
        }
    }
}

extern "C" dp_status dp_optim_create_cuda(dp_cuda_ctx *ctx, dp_optimizer_kind kind, size_t n,
                                          double momentum, double beta1, double beta2, double eps,
                                          dp_cuda_optim **out) {
    *out = NULL;
    if (kind != DP_OPT_SGD && kind != DP_OPT_MOMENTUM && kind != DP_OPT_ADAM)
        return dp_error(DP_E_USAGE, "cuda: optimizer: unknown kind %d", (int)kind);
    dp_cuda_optim *o = (dp_cuda_optim *)dp_calloc(1, sizeof *o);
    if (!o) return dp_error(DP_E_NOMEM, "cuda: cannot allocate an optimizer handle");
    o->ctx = ctx;
    o->kind = kind;
    o->n = n;
    o->momentum = momentum;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    size_t len = kind == DP_OPT_SGD ? 0 : kind == DP_OPT_MOMENTUM ? n : 2 * n;
    if (len) {
        dp_status s = dp_cuda_alloc(ctx, len * sizeof(float), (void **)&o->state);
        if (s != DP_OK) {
            dp_free(o);
            return s;
        }
    }
    *out = o;
    return DP_OK;
}

extern "C" void dp_optim_destroy_cuda(dp_cuda_optim *o) {
    if (!o) return;
    if (o->state) cudaFree(o->state);
    dp_free(o);
}

static size_t state_len(const dp_cuda_optim *o) {
    return o->kind == DP_OPT_SGD ? 0 : o->kind == DP_OPT_MOMENTUM ? o->n : 2 * o->n;
}

/* optim.c's scalars for update number o->t + 1. */
static struct opt_scalars scalars(const dp_cuda_optim *o, double lr, float g_scale) {
    struct opt_scalars s;
    memset(&s, 0, sizeof s);
    s.kind = (int)o->kind;
    s.lr = (float)lr;
    s.mu = (float)o->momentum;
    double t = (double)(o->t + 1);
    s.step = (float)(lr / (1.0 - pow(o->beta1, t)));
    s.inv_c2 = (float)(1.0 / sqrt(1.0 - pow(o->beta2, t)));
    s.b1 = (float)o->beta1;
    s.b2 = (float)o->beta2;
    s.c1 = (float)(1.0 - o->beta1);
    s.c2 = (float)(1.0 - o->beta2);
    s.eps = (float)o->eps;
    s.g_scale = g_scale;
    return s;
}

extern "C" dp_status dp_optim_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev,
                                            float g_scale, double lr, int zero_grad) {
    if (o->n) {
        struct opt_scalars s = scalars(o, lr, g_scale);
        optim_kernel<<<dp_cu_blocks(o->n, 256, o->ctx->n_sm), 256, 0, o->ctx->stream>>>(
            s, p_dev, g_dev, o->state, o->n, zero_grad);
        DP_CUDA_LAUNCHED("optim");
    }
    o->t++;
    return DP_OK;
}

extern "C" dp_status dp_optim_noisy_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev,
                                                  const dp_key *key, uint64_t step, uint64_t stream,
                                                  size_t offset, double noise_std, float g_scale,
                                                  double lr) {
    if (!(noise_std >= 0.0) || !isfinite(noise_std))
        return dp_error(DP_E_RANGE, "cuda: noisy step: expected a finite noise std >= 0, found %g",
                        noise_std);
    if (noise_std > 0.0 && !key)
        return dp_error(DP_E_USAGE, "cuda: noisy step: expected a noise key, found NULL");
    if (o->n) {
        struct opt_scalars s = scalars(o, lr, g_scale);
        struct noise_args na;
        memset(&na, 0, sizeof na);
        na.offset = offset;
        na.std = noise_std;
        if (noise_std > 0.0) DP_CU_TRY(dp_cu_noise_subkey(key, step, stream, na.sk));
        size_t nblk = (offset + o->n - 1) / 2 + 1 - offset / 2;
        noisy_optim_kernel<<<dp_cu_blocks(nblk, 256, o->ctx->n_sm), 256, 0, o->ctx->stream>>>(
            s, na, p_dev, g_dev, o->state, o->n);
        DP_CUDA_LAUNCHED("noisy_optim");
    }
    o->t++;
    return DP_OK;
}

extern "C" dp_status dp_optim_get_state_cuda(dp_cuda_optim *o, float *state, uint64_t *t) {
    if (t) *t = o->t;
    return dp_cuda_to_host(o->ctx, state, o->state, state_len(o) * sizeof(float));
}

extern "C" dp_status dp_optim_set_state_cuda(dp_cuda_optim *o, const float *state, uint64_t t) {
    o->t = t;
    return dp_cuda_to_device(o->ctx, o->state, state, state_len(o) * sizeof(float));
}
