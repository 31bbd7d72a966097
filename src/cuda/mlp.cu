/*
 * mlp.cu: the MLP of src/nn on the device and the DP-SGD gradient of a batch
 * (DESIGN.md algorithm 2; Goodfellow 2015's per-example norm trick): forward
 * and backward through cuBLAS sgemm, fused row kernels for bias+activation,
 * activation backward, loss, per-example squared norms, clip factors and row
 * scaling, then the clipped sum (diag(c) Delta)^T A as one sgemm per layer.
 * Relies on cuBLAS (column-major: see the note at gemm_rm) and cuda_internal.h.
 *
 * Buffers of one micro-batch of up to M rows (one allocation, `ws`):
 *
 *     A[0] = X_b [M, d]    A[l] [M, in_l] = act(A[l-1] W_{l-1}^T + b_{l-1})
 *     Z    [M, k]          logits of the last layer
 *     D[l] [M, out_l]      dLoss_i / d(pre-activation of layer l), row i
 *     asq[l][M] = |A[l]_i|^2     dsq[l][M] = |D[l]_i|^2
 *
 * Layer l's per-example weight gradient is D[l]_i A[l]_i^T (an outer
 * product), so |g_i|^2 = sum_l dsq[l]_i (asq[l]_i + 1), the +1 for the bias.
 * Every row kernel gives one warp to one row (rows are 2..300 floats here).
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "cuda/cuda_internal.h"

#define WARPS_PER_BLOCK 8
#define MAX_L DP_MLP_MAX_LAYERS

/* What changes from one micro-batch to the next lives in device memory, so
 * a captured graph can be replayed unchanged: the valid row count, the clip
 * setting, and the row indices (which follow this header in the same buffer,
 * so one copy moves both). */
struct chunk_params {
    int32_t n_valid; /* rows [0, n_valid) are examples; the rest is padding */
    int32_t mode;    /* dp_clip_mode */
    int32_t n_layers;
    int32_t pad_;
    double C;         /* flat bound */
    double Cl[MAX_L]; /* per-layer bounds */
};
#define PARAMS_BYTES ((sizeof(struct chunk_params) + 63) / 64 * 64)

struct dev_stats {
    double loss_sum;
    unsigned long long n_clipped, n_nonfinite;
};

/* Pointers of every layer, passed by value to the kernels that touch all
 * layers of a row at once (the clip kernel). */
struct layer_ptrs {
    float *A[MAX_L];
    float *D[MAX_L];
    float *asq[MAX_L];
    float *dsq[MAX_L];
    int in[MAX_L];
    int out[MAX_L];
};

#define NSLOT 2

struct dp_cuda_mlp {
    dp_cuda_ctx *ctx;
    dp_mlp_config cfg;
    int L;
    size_t n_in[MAX_L], n_out[MAX_L], w_off[MAX_L], b_off[MAX_L];
    size_t P, M, k;
    float *params, *grad; /* device [P] each, one allocation */
    float *ws;            /* device workspace, see the diagram above */
    struct layer_ptrs lp;
    float *Z;
    float *ones; /* [M] of 1.0f: the bias gradient is D^T 1 */
    int32_t *yb;
    double *loss; /* [M] per-row loss */
    float *cw;    /* [k] class weights (1.0 when none) */
    float cw_host[DP_TRAIN_MAX_CLASSES];
    struct dev_stats *stats;
    /* host -> device staging: pinned slots, each [params | idx[M]] */
    unsigned char *slot_host[NSLOT];
    cudaEvent_t slot_ev[NSLOT];
    unsigned slot_next;
    unsigned char *slot_dev; /* [params | idx[M]] on the device */
    float *xs_host[NSLOT];   /* streamed data: pinned X rows [M, d] and y [M] */
    int32_t *ys_host[NSLOT];
    /* graph replay */
    int graph_on;
    cudaGraphExec_t graph[2]; /* [0]: resident gather, [1]: streamed rows */
    /* What graph[0]'s gather kernel has baked in as arguments: the device
     * arrays and the first row number. Compared by value, not by handle: a
     * data handle freed and another allocated at the same address must not
     * replay a graph that reads the old arrays. graph[1] reads no data. */
    const float *graph_X;
    const int32_t *graph_y;
    size_t graph_base;
    /* profiling */
    int profile;
    cudaEvent_t pev[6];
    double t_gather, t_forward, t_backward, t_norms, t_wgrad;
};

/* ---------------------------------------------------------------- kernels */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One row's logits, by the warp: z[j] += b[j] in place, and the largest
 * (0 when it is not finite: the subtraction before exp must not make every
 * term NaN; a NaN logit is lost by the comparisons but still reaches the
 * exponential sum, and so the loss, which the clip kernel checks). */
__device__ __forceinline__ float add_bias_max(float *z, const float *b, int k, int lane) {
    float m = -INFINITY;
    for (int j = lane; j < k; j += 32) {
        float v = z[j] + b[j];
        z[j] = v;
        m = v > m ? v : m;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float t = __shfl_xor_sync(0xffffffffu, m, o);
        m = t > m ? t : m;
    }
    return isfinite(m) ? m : 0.0f;
}

__device__ __forceinline__ int warp_row(void) {
    return (int)(blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32);
}

/* X_b[r] = X[idx[r] - base], y_b[r] = y[...], asq0[r] = |X_b[r]|^2; padding
 * rows (r >= n_valid) become zeros, whose forward pass is finite. */
__global__ void gather_kernel(const float *__restrict__ X, const int32_t *__restrict__ y,
                              size_t base, int d, const unsigned char *__restrict__ slot,
                              float *__restrict__ Xb, int32_t *__restrict__ yb,
                              float *__restrict__ asq0, int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const struct chunk_params *cp = (const struct chunk_params *)slot;
    const uint64_t *idx = (const uint64_t *)(slot + PARAMS_BYTES);
    float *dst = Xb + (size_t)r * d;
    float s = 0.0f;
    if (r < cp->n_valid) {
        size_t src_row = (size_t)idx[r] - base;
        const float *src = X + src_row * d;
        for (int j = lane; j < d; j += 32) {
            float v = src[j];
            dst[j] = v;
            s += v * v;
        }
        if (lane == 0) yb[r] = y[src_row];
    } else {
        for (int j = lane; j < d; j += 32)
            dst[j] = 0.0f;
        if (lane == 0) yb[r] = 0;
    }
    s = warp_sum(s);
    if (lane == 0) asq0[r] = s;
}

/* asq[r] = |A[r]|^2, for rows copied from the host. */
__global__ void rownorm_kernel(const float *__restrict__ A, int width, float *__restrict__ asq,
                               int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *a = A + (size_t)r * width;
    float s = 0.0f;
    for (int j = lane; j < width; j += 32)
        s += a[j] * a[j];
    s = warp_sum(s);
    if (lane == 0) asq[r] = s;
}

__device__ __forceinline__ float act_f(float z, int act) {
    /* z < 0 ? 0 : z keeps a NaN a NaN (as PyTorch and src/nn do), to be caught */
    return act == DP_ACT_TANH ? tanhf(z) : (z < 0.0f ? 0.0f : z);
}

/* In place: A[r] = act(Z[r] + b); asq[r] = |A[r]|^2 (asq may be NULL). */
__global__ void bias_act_kernel(float *__restrict__ Z, const float *__restrict__ b, int width,
                                int act, float *__restrict__ asq, int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *z = Z + (size_t)r * width;
    float s = 0.0f;
    for (int j = lane; j < width; j += 32) {
        float a = act_f(z[j] + b[j], act);
        z[j] = a;
        s += a * a;
    }
    if (asq) {
        s = warp_sum(s);
        if (lane == 0) asq[r] = s;
    }
}

/* In place: D[r] *= act'(A[r]) where A = act(pre-activation);
 * relu' = [A > 0], tanh' = 1 - A^2. dsq[r] = |D[r]|^2. */
__global__ void act_back_kernel(float *__restrict__ D, const float *__restrict__ A, int width,
                                int act, float *__restrict__ dsq, int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *dd = D + (size_t)r * width;
    const float *a = A + (size_t)r * width;
    float s = 0.0f;
    for (int j = lane; j < width; j += 32) {
        float g = act == DP_ACT_TANH ? dd[j] * (1.0f - a[j] * a[j]) : (a[j] > 0.0f ? dd[j] : 0.0f);
        dd[j] = g;
        s += g * g;
    }
    s = warp_sum(s);
    if (lane == 0) dsq[r] = s;
}

/* Softmax cross-entropy of one row, from logits Z[r] + b, as src/nn/loss.c:
 *   loss_r = w_y (logsumexp(z) - z_y),  D[r] = w_y (softmax(z) - onehot(y)),
 * the largest logit subtracted first (0 if it is not finite, so NaN and Inf
 * flow on to the norm check), the exp sum in double. One warp per row.
 * Padding rows get D = 0 and loss 0. */
__global__ void loss_kernel(float *__restrict__ Z, const float *__restrict__ b,
                            const int32_t *__restrict__ yb, const float *__restrict__ cw, int k,
                            const unsigned char *__restrict__ slot, float *__restrict__ D,
                            float *__restrict__ dsq, double *__restrict__ loss, int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const struct chunk_params *cp = (const struct chunk_params *)slot;
    float *z = Z + (size_t)r * k;
    float *dd = D + (size_t)r * k;
    if (r >= cp->n_valid) {
        for (int j = lane; j < k; j += 32)
            dd[j] = 0.0f;
        if (lane == 0) {
            dsq[r] = 0.0f;
            loss[r] = 0.0;
        }
        return;
    }
    const float m = add_bias_max(z, b, k, lane);
    double se = 0.0;
    for (int j = lane; j < k; j += 32)
        se += (double)expf(z[j] - m);
    se = warp_sum_d(se);
    int yi = yb[r];
    float w = cw[yi];
    float inv = (float)(1.0 / se);
    float s = 0.0f;
    for (int j = lane; j < k; j += 32) {
        float g = w * (expf(z[j] - m) * inv - (j == yi ? 1.0f : 0.0f));
        dd[j] = g;
        s += g * g;
    }
    s = warp_sum(s);
    /* z[yi] was written by lane yi % 32: __syncwarp orders that write before
     * lane 0's read (shuffles synchronise lanes but give no memory ordering) */
    __syncwarp();
    if (lane == 0) {
        dsq[r] = s;
        loss[r] = (double)w * (((double)m + log(se)) - (double)z[yi]);
    }
}

/* Class probabilities in place: Z[r] = softmax(Z[r] + b) (src/nn/loss.c's
 * nn_softmax: exp sum in double, one reciprocal). */
__global__ void softmax_kernel(float *__restrict__ Z, const float *__restrict__ b, int k,
                               int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *z = Z + (size_t)r * k;
    const float m = add_bias_max(z, b, k, lane);
    double se = 0.0;
    for (int j = lane; j < k; j += 32) {
        float e = expf(z[j] - m);
        z[j] = e;
        se += (double)e;
    }
    se = warp_sum_d(se);
    float inv = (float)(1.0 / se);
    for (int j = lane; j < k; j += 32)
        z[j] *= inv;
}

/* Clip factors and row scaling, all layers of one row in one warp (the
 * norms and wgrad phases of src/dp/clip.c):
 *   n_l = dsq[l] (asq[l] + 1)                (layer l's squared norm)
 *   flat:      c = min(1, C / (sqrt(sum_l n_l) + 1e-6)), same c for all l
 *   per-layer: c_l = min(1, C_l / (sqrt(n_l) + 1e-6))
 *   none:      c = 1
 * A row whose total is not <= FLT_MAX (NaN, Inf, or a float sum of squares
 * that overflowed) or whose loss is not finite is bad in every mode: c = 0,
 * and its rows of D and A are overwritten with zeros, because 0 * Inf in the
 * weight-gradient product would still be NaN. Padding rows are zeroed the
 * same way. The loss of good rows goes to the statistics. */
__global__ void clip_kernel(struct layer_ptrs lp, int L, const unsigned char *__restrict__ slot,
                            const double *__restrict__ loss, struct dev_stats *stats, int rows) {
    int r = warp_row(), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const struct chunk_params *cp = (const struct chunk_params *)slot;
    int valid = r < cp->n_valid;
    double nl[MAX_L];
    double total = 0.0;
#pragma unroll
    for (int l = 0; l < MAX_L; l++) {
        if (l < L) {
            nl[l] = (double)lp.dsq[l][r] * ((double)lp.asq[l][r] + 1.0);
            total += nl[l];
        }
    }
    int bad = valid && (!(total <= (double)FLT_MAX) || !isfinite(loss[r]));
    int zero = !valid || bad;
    int clipped = 0;
    double c_flat = 1.0;
    if (!zero && cp->mode == DP_CLIP_FLAT) {
        double f = cp->C / (sqrt(total) + 1e-6);
        clipped = f < 1.0;
        c_flat = f < 1.0 ? f : 1.0;
    }
#pragma unroll
    for (int l = 0; l < MAX_L; l++) {
        if (l < L) {
            double c = c_flat;
            if (!zero && cp->mode == DP_CLIP_PER_LAYER) {
                double f = cp->Cl[l] / (sqrt(nl[l]) + 1e-6);
                clipped |= f < 1.0;
                c = f < 1.0 ? f : 1.0;
            }
            float *dd = lp.D[l] + (size_t)r * lp.out[l];
            if (zero) {
                for (int j = lane; j < lp.out[l]; j += 32)
                    dd[j] = 0.0f;
                float *a = lp.A[l] + (size_t)r * lp.in[l];
                for (int j = lane; j < lp.in[l]; j += 32)
                    a[j] = 0.0f;
            } else if (c < 1.0) {
                float cf = (float)c;
                for (int j = lane; j < lp.out[l]; j += 32)
                    dd[j] *= cf;
            }
        }
    }
    /* one atomic per warp-row; stats are not on the step's critical path */
    if (lane == 0 && valid && stats) {
        if (bad) {
            atomicAdd(&stats->n_nonfinite, 1ull);
        } else {
            atomicAdd(&stats->loss_sum, loss[r]);
            if (clipped) atomicAdd(&stats->n_clipped, 1ull);
        }
    }
}

/* ---------------------------------------------------------------- cuBLAS */

/* Row-major products through column-major cuBLAS. A row-major [r, c] matrix
 * is, byte for byte, the column-major [c, r] matrix (its transpose) with
 * leading dimension c. So the row-major C = op(A) op(B) is computed as the
 * column-major C^T = op(B)^T op(A)^T: swap the operands, keep the ops.
 *   C [m, n] (ldc = n) = alpha op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n]
 * with ta/tb saying whether A / B are stored transposed (row-major). */
static dp_status gemm_rm(cublasHandle_t h, int ta, int tb, int m, int n, int k, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc) {
    DP_CUBLAS_TRY(cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n,
                              m, k, &alpha, B, ldb, A, lda, &beta, C, ldc));
    return DP_OK;
}

/* ---------------------------------------------------------------- pipeline */

static unsigned row_blocks(int rows) {
    return (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
}
#define ROW_LAUNCH(rows) row_blocks(rows), WARPS_PER_BLOCK * 32, 0, m->ctx->stream

static dp_status prof_mark(dp_cuda_mlp *m, int i) {
    if (m->profile) DP_CUDA_TRY(cudaEventRecord(m->pev[i], m->ctx->stream));
    return DP_OK;
}

/* Forward of `rows` rows from A0 (= A[0] or resident data rows): hidden
 * activations into A[1..L-1] with their squared norms, logits (without the
 * last bias, which the loss or softmax kernel adds) into Z. */
static dp_status forward(dp_cuda_mlp *m, const float *A0, int rows, int want_norms) {
    cublasHandle_t h = m->ctx->blas;
    const float *in = A0;
    for (int l = 0; l < m->L; l++) {
        int o = (int)m->n_out[l], i = (int)m->n_in[l];
        float *out = l + 1 < m->L ? m->lp.A[l + 1] : m->Z;
        /* out [rows, o] = in [rows, i] W_l^T, W_l [o, i] row-major */
        DP_CU_TRY(
            gemm_rm(h, 0, 1, rows, o, i, 1.0f, in, i, m->params + m->w_off[l], i, 0.0f, out, o));
        if (l + 1 < m->L) {
            bias_act_kernel<<<ROW_LAUNCH(rows)>>>(out, m->params + m->b_off[l], o,
                                                  (int)m->cfg.activation,
                                                  want_norms ? m->lp.asq[l + 1] : NULL, rows);
            DP_CUDA_LAUNCHED("bias_act");
        }
        in = out;
    }
    return DP_OK;
}

/* Everything after the rows of A[0], y_b and asq[0] are in place: forward,
 * loss, backward to the deltas, norms and clip factors, the clipped sum. */
static dp_status grad_pipeline(dp_cuda_mlp *m, int rows) {
    cublasHandle_t h = m->ctx->blas;
    int L = m->L;
    DP_CU_TRY(prof_mark(m, 1));
    DP_CU_TRY(forward(m, m->lp.A[0], rows, 1));
    loss_kernel<<<ROW_LAUNCH(rows)>>>(m->Z, m->params + m->b_off[L - 1], m->yb, m->cw, (int)m->k,
                                      m->slot_dev, m->lp.D[L - 1], m->lp.dsq[L - 1], m->loss, rows);
    DP_CUDA_LAUNCHED("loss");
    DP_CU_TRY(prof_mark(m, 2));
    /* backward: D[l-1] = (D[l] W_l) * act'(A[l]), W_l [out_l, in_l] */
    for (int l = L - 1; l >= 1; l--) {
        int o = (int)m->n_out[l], i = (int)m->n_in[l];
        DP_CU_TRY(gemm_rm(h, 0, 0, rows, i, o, 1.0f, m->lp.D[l], o, m->params + m->w_off[l], i,
                          0.0f, m->lp.D[l - 1], i));
        act_back_kernel<<<ROW_LAUNCH(rows)>>>(m->lp.D[l - 1], m->lp.A[l], i, (int)m->cfg.activation,
                                              m->lp.dsq[l - 1], rows);
        DP_CUDA_LAUNCHED("act_back");
    }
    DP_CU_TRY(prof_mark(m, 3));
    /* Also without clipping: a non-finite example is zeroed in every mode
     * (src/dp/clip.c), which needs the norms and this kernel. */
    clip_kernel<<<ROW_LAUNCH(rows)>>>(m->lp, L, m->slot_dev, m->loss, m->stats, rows);
    DP_CUDA_LAUNCHED("clip");
    DP_CU_TRY(prof_mark(m, 4));
    /* grad W_l [o, i] += D'[l]^T [o, rows] A[l] [rows, i];  grad b_l += D'[l]^T 1 */
    for (int l = 0; l < L; l++) {
        int o = (int)m->n_out[l], i = (int)m->n_in[l];
        DP_CU_TRY(gemm_rm(h, 1, 0, o, i, rows, 1.0f, m->lp.D[l], o, m->lp.A[l], i, 1.0f,
                          m->grad + m->w_off[l], i));
        const float one = 1.0f;
        DP_CUBLAS_TRY(cublasSgemv(h, CUBLAS_OP_N, o, rows, &one, m->lp.D[l], o, m->ones, 1, &one,
                                  m->grad + m->b_off[l], 1));
    }
    DP_CU_TRY(prof_mark(m, 5));
    return DP_OK;
}

/* ---------------------------------------------------------------- create */

extern "C" dp_status dp_mlp_create_cuda(dp_cuda_ctx *ctx, const dp_mlp_config *cfg,
                                        size_t max_micro, dp_cuda_mlp **out) {
    *out = NULL;
    if (!cfg || cfg->n_in == 0 || cfg->n_hidden < 0 || cfg->n_hidden >= MAX_L ||
        cfg->n_classes < 2 || cfg->n_classes > DP_TRAIN_MAX_CLASSES)
        return dp_error(DP_E_USAGE,
                        "cuda: mlp: expected d > 0, 0..%d hidden layers and 2..%d "
                        "classes",
                        MAX_L - 1, DP_TRAIN_MAX_CLASSES);
    if (max_micro == 0 || max_micro > (1u << 24))
        return dp_error(DP_E_USAGE, "cuda: mlp: expected 1 <= max_micro <= 16777216, found %zu",
                        max_micro);
    for (int l = 0; l < cfg->n_hidden; l++)
        if (cfg->hidden[l] <= 0)
            return dp_error(DP_E_USAGE, "cuda: mlp: hidden layer %d has width %d", l,
                            cfg->hidden[l]);
    if (cfg->n_in > (1u << 24))
        return dp_error(DP_E_USAGE, "cuda: mlp: expected d <= 16777216, found %zu", cfg->n_in);
    dp_cuda_mlp *m = (dp_cuda_mlp *)dp_calloc(1, sizeof *m);
    if (!m) return dp_error(DP_E_NOMEM, "cuda: cannot allocate an mlp handle");
    m->ctx = ctx;
    m->cfg = *cfg;
    m->L = cfg->n_hidden + 1;
    m->M = max_micro;
    m->k = (size_t)cfg->n_classes;
    size_t P = 0, wsf = max_micro * cfg->n_in + max_micro * m->k;
    for (int l = 0; l < m->L; l++) {
        m->n_in[l] = l == 0 ? cfg->n_in : (size_t)cfg->hidden[l - 1];
        m->n_out[l] = l + 1 < m->L ? (size_t)cfg->hidden[l] : m->k;
        m->w_off[l] = P;
        P += m->n_out[l] * m->n_in[l];
        m->b_off[l] = P;
        P += m->n_out[l];
        if (l > 0) wsf += max_micro * m->n_in[l];       /* A[l] */
        wsf += max_micro * m->n_out[l] + 2 * max_micro; /* D[l], asq[l], dsq[l] */
    }
    wsf += max_micro + m->k; /* ones, cw */
    m->P = P;
    dp_status s = DP_OK;
    size_t slot_bytes = PARAMS_BYTES + max_micro * sizeof(uint64_t);
#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            s = dp_error(DP_E_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #x,                       \
                         cudaGetErrorString(e_));                                                  \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    CK(cudaSetDevice(ctx->device));
    /* params [P] | grad [P + DP_CUDA_GRAD_PAD], the padding zero for ever (see dp_cuda.h) */
    if ((s = dp_cuda_alloc(ctx, (2 * P + DP_CUDA_GRAD_PAD) * sizeof(float), (void **)&m->params)) !=
        DP_OK)
        goto fail;
    m->grad = m->params + P;
    if ((s = dp_cuda_alloc(ctx, wsf * sizeof(float), (void **)&m->ws)) != DP_OK) goto fail;
    if ((s = dp_cuda_alloc(ctx, max_micro * sizeof(int32_t), (void **)&m->yb)) != DP_OK) goto fail;
    if ((s = dp_cuda_alloc(ctx, max_micro * sizeof(double), (void **)&m->loss)) != DP_OK) goto fail;
    if ((s = dp_cuda_alloc(ctx, sizeof(struct dev_stats), (void **)&m->stats)) != DP_OK) goto fail;
    if ((s = dp_cuda_alloc(ctx, slot_bytes, (void **)&m->slot_dev)) != DP_OK) goto fail;
    {
        float *p = m->ws;
        m->lp.A[0] = p;
        p += max_micro * cfg->n_in;
        m->Z = p;
        p += max_micro * m->k;
        for (int l = 0; l < m->L; l++) {
            if (l > 0) {
                m->lp.A[l] = p;
                p += max_micro * m->n_in[l];
            }
            m->lp.D[l] = p;
            p += max_micro * m->n_out[l];
            m->lp.asq[l] = p;
            p += max_micro;
            m->lp.dsq[l] = p;
            p += max_micro;
            m->lp.in[l] = (int)m->n_in[l];
            m->lp.out[l] = (int)m->n_out[l];
        }
        m->ones = p;
        p += max_micro;
        m->cw = p;
        p += m->k;
        /* ones and unit class weights, written once */
        float *h1 = (float *)dp_malloc((max_micro > m->k ? max_micro : m->k) * sizeof(float));
        if (!h1) {
            s = dp_error(DP_E_NOMEM, "cuda: mlp: cannot allocate %zu floats", max_micro);
            goto fail;
        }
        for (size_t i = 0; i < (max_micro > m->k ? max_micro : m->k); i++)
            h1[i] = 1.0f;
        s = dp_cuda_to_device(ctx, m->ones, h1, max_micro * sizeof(float));
        if (s == DP_OK) s = dp_cuda_to_device(ctx, m->cw, h1, m->k * sizeof(float));
        dp_free(h1);
        if (s != DP_OK) goto fail;
        for (size_t j = 0; j < m->k; j++)
            m->cw_host[j] = 1.0f;
    }
    for (int i = 0; i < NSLOT; i++) {
        CK(cudaMallocHost((void **)&m->slot_host[i], slot_bytes));
        memset(m->slot_host[i], 0, slot_bytes);
        CK(cudaEventCreateWithFlags(&m->slot_ev[i], cudaEventDisableTiming));
    }
    for (int i = 0; i < 6; i++)
        CK(cudaEventCreate(&m->pev[i]));
    *out = m;
    return DP_OK;
#undef CK
fail:
    dp_mlp_destroy_cuda(m);
    return s;
}

extern "C" void dp_mlp_destroy_cuda(dp_cuda_mlp *m) {
    if (!m) return;
    cudaSetDevice(m->ctx->device);
    cudaStreamSynchronize(m->ctx->stream);
    for (int g = 0; g < 2; g++)
        if (m->graph[g]) cudaGraphExecDestroy(m->graph[g]);
    for (int i = 0; i < NSLOT; i++) {
        if (m->slot_host[i]) cudaFreeHost(m->slot_host[i]);
        if (m->slot_ev[i]) cudaEventDestroy(m->slot_ev[i]);
        if (m->xs_host[i]) cudaFreeHost(m->xs_host[i]);
        if (m->ys_host[i]) cudaFreeHost(m->ys_host[i]);
    }
    for (int i = 0; i < 6; i++)
        if (m->pev[i]) cudaEventDestroy(m->pev[i]);
    if (m->params) cudaFree(m->params);
    if (m->ws) cudaFree(m->ws);
    if (m->yb) cudaFree(m->yb);
    if (m->loss) cudaFree(m->loss);
    if (m->stats) cudaFree(m->stats);
    if (m->slot_dev) cudaFree(m->slot_dev);
    dp_free(m);
}

extern "C" size_t dp_mlp_nparams_cuda(const dp_cuda_mlp *m) {
    return m->P;
}
extern "C" size_t dp_mlp_max_micro_cuda(const dp_cuda_mlp *m) {
    return m->M;
}
extern "C" float *dp_mlp_params_dev_cuda(dp_cuda_mlp *m) {
    return m->params;
}
extern "C" float *dp_mlp_grad_dev_cuda(dp_cuda_mlp *m) {
    return m->grad;
}

extern "C" dp_status dp_mlp_set_params_cuda(dp_cuda_mlp *m, const float *params) {
    return dp_cuda_to_device(m->ctx, m->params, params, m->P * sizeof(float));
}
extern "C" dp_status dp_mlp_get_params_cuda(dp_cuda_mlp *m, float *params) {
    return dp_cuda_to_host(m->ctx, params, m->params, m->P * sizeof(float));
}
extern "C" dp_status dp_mlp_zero_grad_cuda(dp_cuda_mlp *m) {
    return dp_cuda_zero_dev(m->ctx, m->grad, m->P * sizeof(float));
}
extern "C" dp_status dp_mlp_get_grad_cuda(dp_cuda_mlp *m, float *grad) {
    return dp_cuda_to_host(m->ctx, grad, m->grad, m->P * sizeof(float));
}

/* ---------------------------------------------------------------- staging */

static dp_status check_clip(const dp_cuda_mlp *m, const dp_clip_config *clip) {
    if (!clip) return dp_error(DP_E_USAGE, "cuda: expected a clip configuration, found NULL");
    if (clip->mode == DP_CLIP_FLAT && !(clip->max_grad_norm > 0.0))
        return dp_error(DP_E_USAGE, "cuda: expected max_grad_norm > 0, found %g",
                        clip->max_grad_norm);
    if (clip->mode == DP_CLIP_PER_LAYER)
        for (int l = 0; l < m->L; l++)
            if (!(clip->layer_norms[l] > 0.0))
                return dp_error(DP_E_USAGE, "cuda: expected layer_norms[%d] > 0, found %g", l,
                                clip->layer_norms[l]);
    if (clip->mode != DP_CLIP_NONE && clip->mode != DP_CLIP_FLAT && clip->mode != DP_CLIP_PER_LAYER)
        return dp_error(DP_E_USAGE, "cuda: unknown clip mode %d", (int)clip->mode);
    return DP_OK;
}

/* Class weights live on the device; copy them only when they change. */
static dp_status set_class_weight(dp_cuda_mlp *m, const float *cw) {
    float w[DP_TRAIN_MAX_CLASSES];
    for (size_t j = 0; j < m->k; j++) {
        w[j] = cw ? cw[j] : 1.0f;
        if (!(w[j] >= 0.0f) || !isfinite(w[j]))
            return dp_error(DP_E_RANGE, "cuda: class %zu: expected a finite weight >= 0, found %g",
                            j, (double)w[j]);
    }
    if (!memcmp(w, m->cw_host, m->k * sizeof(float))) return DP_OK;
    memcpy(m->cw_host, w, m->k * sizeof(float));
    /* pageable source: dp_cuda_to_device waits, so `w` may go out of scope */
    return dp_cuda_to_device(m->ctx, m->cw, w, m->k * sizeof(float));
}

/* Take the next pinned slot, waiting until the copy that last read it is
 * done (two steps ago: in practice never a wait). */
static dp_status slot_take(dp_cuda_mlp *m, unsigned *which) {
    unsigned s = m->slot_next++ % NSLOT;
    DP_CUDA_TRY(cudaEventSynchronize(m->slot_ev[s]));
    *which = s;
    return DP_OK;
}

/* Fill slot s with the chunk's parameters (and n_idx indices), queue its
 * copy to the device. */
static dp_status slot_send(dp_cuda_mlp *m, unsigned s, int n_valid, const dp_clip_config *clip,
                           const size_t *idx, size_t n_idx) {
    struct chunk_params *cp = (struct chunk_params *)m->slot_host[s];
    memset(cp, 0, sizeof *cp);
    cp->n_valid = n_valid;
    cp->mode = clip ? (int32_t)clip->mode : DP_CLIP_NONE;
    cp->n_layers = m->L;
    cp->C = clip ? clip->max_grad_norm : 0.0;
    for (int l = 0; l < m->L && clip; l++)
        cp->Cl[l] = clip->layer_norms[l];
    uint64_t *dst = (uint64_t *)(m->slot_host[s] + PARAMS_BYTES);
    for (size_t i = 0; i < n_idx; i++)
        dst[i] = (uint64_t)idx[i];
    DP_CUDA_TRY(cudaMemcpyAsync(m->slot_dev, m->slot_host[s], PARAMS_BYTES + n_idx * 8,
                                cudaMemcpyHostToDevice, m->ctx->stream));
    return DP_OK;
}

/* After the last copy that reads slot s's pinned buffers. */
static dp_status slot_done(dp_cuda_mlp *m, unsigned s) {
    DP_CUDA_TRY(cudaEventRecord(m->slot_ev[s], m->ctx->stream));
    return DP_OK;
}

/* Streamed data: gather the chunk's rows on the host into pinned memory
 * (padding rows zero up to `rows`), copy them to A[0] and y_b. */
static dp_status stream_rows(dp_cuda_mlp *m, unsigned s, const dp_cuda_data *data,
                             const size_t *idx, size_t n, int rows) {
    size_t d = data->d;
    /* each separately: a failed second allocation must not leave a NULL
     * ys_host behind a non-NULL xs_host for the next call */
    if (!m->xs_host[s])
        DP_CUDA_TRY(cudaMallocHost((void **)&m->xs_host[s], m->M * d * sizeof(float)));
    if (!m->ys_host[s])
        DP_CUDA_TRY(cudaMallocHost((void **)&m->ys_host[s], m->M * sizeof(int32_t)));
    for (size_t i = 0; i < n; i++) {
        size_t r = idx[i] - data->row_begin;
        memcpy(m->xs_host[s] + i * d, data->X_host + r * d, d * sizeof(float));
        m->ys_host[s][i] = data->y_host[r];
    }
    if ((size_t)rows > n) {
        memset(m->xs_host[s] + n * d, 0, ((size_t)rows - n) * d * sizeof(float));
        memset(m->ys_host[s] + n, 0, ((size_t)rows - n) * sizeof(int32_t));
    }
    DP_CUDA_TRY(cudaMemcpyAsync(m->lp.A[0], m->xs_host[s], (size_t)rows * d * sizeof(float),
                                cudaMemcpyHostToDevice, m->ctx->stream));
    DP_CUDA_TRY(cudaMemcpyAsync(m->yb, m->ys_host[s], (size_t)rows * sizeof(int32_t),
                                cudaMemcpyHostToDevice, m->ctx->stream));
    return DP_OK;
}

/* The rows-in stage: gather from resident data, or norms of streamed rows. */
static dp_status rows_in(dp_cuda_mlp *m, const dp_cuda_data *data, int rows) {
    if (data->resident) {
        gather_kernel<<<ROW_LAUNCH(rows)>>>(data->X_dev, data->y_dev, data->row_begin, (int)data->d,
                                            m->slot_dev, m->lp.A[0], m->yb, m->lp.asq[0], rows);
        DP_CUDA_LAUNCHED("gather");
    } else {
        rownorm_kernel<<<ROW_LAUNCH(rows)>>>(m->lp.A[0], (int)data->d, m->lp.asq[0], rows);
        DP_CUDA_LAUNCHED("rownorm");
    }
    return DP_OK;
}

/* Capture rows_in + grad_pipeline for M rows into graph[g]. Everything that
 * varies (row count, indices, clip mode and bounds) is read at run time from
 * the device slot, so one graph serves every step. */
static dp_status capture(dp_cuda_mlp *m, const dp_cuda_data *data, int g) {
    cudaStream_t st = m->ctx->stream;
    cudaGraph_t graph = NULL;
    int prof = m->profile;
    m->profile = 0;
    DP_CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    dp_status s = rows_in(m, data, (int)m->M);
    if (s == DP_OK) s = grad_pipeline(m, (int)m->M);
    cudaError_t e = cudaStreamEndCapture(st, &graph);
    m->profile = prof;
    if (s != DP_OK) {
        if (graph) cudaGraphDestroy(graph);
        return s;
    }
    DP_CUDA_TRY(e);
    if (m->graph[g]) {
        cudaGraphExecDestroy(m->graph[g]);
        m->graph[g] = NULL;
    }
    e = cudaGraphInstantiate(&m->graph[g], graph, 0);
    cudaGraphDestroy(graph);
    DP_CUDA_TRY(e);
    if (g == 0) {
        m->graph_X = data->X_dev;
        m->graph_y = data->y_dev;
        m->graph_base = data->row_begin;
    }
    return DP_OK;
}

static dp_status prof_collect(dp_cuda_mlp *m) {
    DP_CUDA_TRY(cudaEventSynchronize(m->pev[5]));
    float ms[5];
    for (int i = 0; i < 5; i++)
        DP_CUDA_TRY(cudaEventElapsedTime(&ms[i], m->pev[i], m->pev[i + 1]));
    m->t_gather += ms[0] * 1e-3;
    m->t_forward += ms[1] * 1e-3;
    m->t_backward += ms[2] * 1e-3;
    m->t_norms += ms[3] * 1e-3;
    m->t_wgrad += ms[4] * 1e-3;
    return DP_OK;
}

extern "C" dp_status dp_mlp_batch_grad_cuda(dp_cuda_mlp *m, const dp_cuda_data *data,
                                            const size_t *idx, size_t n, const dp_clip_config *clip,
                                            const float *class_weight) {
    DP_CU_TRY(check_clip(m, clip));
    if (!data || data->d != m->cfg.n_in)
        return dp_error(DP_E_USAGE, "cuda: batch: expected data with %zu columns, found %zu",
                        m->cfg.n_in, data ? data->d : 0);
    if (data->n && (data->y_min < 0 || (size_t)data->y_max >= m->k))
        return dp_error(DP_E_RANGE, "cuda: batch: labels in [%d, %d], expected [0, %zu)",
                        (int)data->y_min, (int)data->y_max, m->k);
    if (n == 0) return DP_OK;
    for (size_t i = 0; i < n; i++)
        if (idx[i] < data->row_begin || idx[i] - data->row_begin >= data->n)
            return dp_error(DP_E_RANGE,
                            "cuda: batch: index %zu (position %zu) is outside the rows "
                            "[%zu, %zu) held on the device",
                            idx[i], i, data->row_begin, data->row_begin + data->n);
    DP_CU_TRY(set_class_weight(m, class_weight));
    int g = data->resident ? 0 : 1;
    /* The first micro-batch in graph mode runs as plain launches of the
     * padded shape, and the graph is captured after it: kernels are loaded
     * lazily (CUDA_MODULE_LOADING=LAZY) and cuBLAS picks its kernels on
     * first use, neither of which should happen inside a capture. */
    int stale = g == 0 && (m->graph_X != data->X_dev || m->graph_y != data->y_dev ||
                           m->graph_base != data->row_begin);
    int need_capture = m->graph_on && (!m->graph[g] || stale);
    for (size_t c0 = 0; c0 < n; c0 += m->M) {
        size_t nb = n - c0 < m->M ? n - c0 : m->M;
        int rows = m->graph_on ? (int)m->M : (int)nb;
        unsigned s = 0;
        DP_CU_TRY(slot_take(m, &s));
        DP_CU_TRY(prof_mark(m, 0));
        DP_CU_TRY(slot_send(m, s, (int)nb, clip, idx + c0, data->resident ? nb : 0));
        if (!data->resident) DP_CU_TRY(stream_rows(m, s, data, idx + c0, nb, rows));
        DP_CU_TRY(slot_done(m, s));
        if (m->graph_on && !need_capture) {
            DP_CUDA_TRY(cudaGraphLaunch(m->graph[g], m->ctx->stream));
        } else {
            DP_CU_TRY(rows_in(m, data, rows));
            DP_CU_TRY(grad_pipeline(m, rows));
            if (m->profile && !m->graph_on) DP_CU_TRY(prof_collect(m));
            if (need_capture) {
                DP_CU_TRY(capture(m, data, g));
                need_capture = 0;
            }
        }
    }
    return DP_OK;
}

extern "C" dp_status dp_mlp_example_sqnorms_cuda(dp_cuda_mlp *m, size_t n, double *out) {
    if (n > m->M) return dp_error(DP_E_RANGE, "cuda: sqnorms: %zu rows > max_micro %zu", n, m->M);
    if (n == 0) return DP_OK;
    float *h = (float *)dp_malloc(2 * n * sizeof(float));
    if (!h) return dp_error(DP_E_NOMEM, "cuda: sqnorms: cannot allocate %zu floats", 2 * n);
    dp_status s = DP_OK;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.0;
    for (int l = 0; l < m->L && s == DP_OK; l++) {
        s = dp_cuda_to_host(m->ctx, h, m->lp.asq[l], n * sizeof(float));
        if (s == DP_OK) s = dp_cuda_to_host(m->ctx, h + n, m->lp.dsq[l], n * sizeof(float));
        for (size_t i = 0; i < n && s == DP_OK; i++)
            out[i] += (double)h[n + i] * ((double)h[i] + 1.0); /* as clip_kernel */
    }
    dp_free(h);
    return s;
}

extern "C" dp_status dp_mlp_use_graph_cuda(dp_cuda_mlp *m, int on) {
    m->graph_on = on != 0;
    return DP_OK;
}

extern "C" dp_status dp_mlp_profile_cuda(dp_cuda_mlp *m, int on) {
    m->profile = on != 0;
    return DP_OK;
}

extern "C" dp_status dp_mlp_stats_cuda(dp_cuda_mlp *m, dp_grad_stats *stats, double *t_gather) {
    struct dev_stats h;
    DP_CU_TRY(dp_cuda_to_host(m->ctx, &h, m->stats, sizeof h));
    DP_CU_TRY(dp_cuda_zero_dev(m->ctx, m->stats, sizeof h));
    if (stats) {
        stats->loss_sum += h.loss_sum;
        stats->n_clipped += (size_t)h.n_clipped;
        stats->n_nonfinite += (size_t)h.n_nonfinite;
        stats->t_forward += m->t_forward;
        stats->t_backward += m->t_backward;
        stats->t_norms += m->t_norms;
        stats->t_wgrad += m->t_wgrad;
    }
    if (t_gather) *t_gather += m->t_gather;
    m->t_gather = m->t_forward = m->t_backward = m->t_norms = m->t_wgrad = 0.0;
    return DP_OK;
}

/* ---------------------------------------------------------------- host-array API */

extern "C" dp_status dp_mlp_clipped_grad_cuda(dp_cuda_mlp *m, const float *X, const int32_t *y,
                                              size_t n, const dp_clip_config *clip,
                                              const float *class_weight, float *grad,
                                              dp_grad_stats *stats) {
    DP_CU_TRY(check_clip(m, clip));
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || (size_t)y[i] >= m->k)
            return dp_error(DP_E_RANGE, "cuda: grad: label %d of row %zu is outside [0, %zu)", y[i],
                            i, m->k);
    DP_CU_TRY(set_class_weight(m, class_weight));
    DP_CU_TRY(dp_mlp_zero_grad_cuda(m));
    DP_CU_TRY(dp_mlp_stats_cuda(m, NULL, NULL)); /* start from zero stats */
    size_t d = m->cfg.n_in;
    for (size_t c0 = 0; c0 < n; c0 += m->M) {
        size_t nb = n - c0 < m->M ? n - c0 : m->M;
        unsigned s = 0;
        DP_CU_TRY(slot_take(m, &s));
        DP_CU_TRY(slot_send(m, s, (int)nb, clip, NULL, 0));
        DP_CU_TRY(slot_done(m, s));
        DP_CU_TRY(dp_cuda_to_device(m->ctx, m->lp.A[0], X + c0 * d, nb * d * sizeof(float)));
        DP_CU_TRY(dp_cuda_to_device(m->ctx, m->yb, y + c0, nb * sizeof(int32_t)));
        rownorm_kernel<<<ROW_LAUNCH((int)nb)>>>(m->lp.A[0], (int)d, m->lp.asq[0], (int)nb);
        DP_CUDA_LAUNCHED("rownorm");
        DP_CU_TRY(grad_pipeline(m, (int)nb));
    }
    float *g = (float *)dp_malloc(m->P * sizeof(float));
    if (!g) return dp_error(DP_E_NOMEM, "cuda: grad: cannot allocate %zu floats", m->P);
    dp_status s = dp_mlp_get_grad_cuda(m, g);
    if (s == DP_OK) {
        for (size_t j = 0; j < m->P; j++)
            grad[j] += g[j];
        s = dp_mlp_stats_cuda(m, stats, NULL);
    }
    dp_free(g);
    return s;
}

static dp_status predict_rows(dp_cuda_mlp *m, const float *A0, int rows, float *P) {
    DP_CU_TRY(forward(m, A0, rows, 0));
    softmax_kernel<<<ROW_LAUNCH(rows)>>>(m->Z, m->params + m->b_off[m->L - 1], (int)m->k, rows);
    DP_CUDA_LAUNCHED("softmax");
    return dp_cuda_to_host(m->ctx, P, m->Z, (size_t)rows * m->k * sizeof(float));
}

extern "C" dp_status dp_mlp_predict_cuda(dp_cuda_mlp *m, const float *X, size_t n, float *P) {
    size_t d = m->cfg.n_in;
    for (size_t c0 = 0; c0 < n; c0 += m->M) {
        size_t nb = n - c0 < m->M ? n - c0 : m->M;
        DP_CU_TRY(dp_cuda_to_device(m->ctx, m->lp.A[0], X + c0 * d, nb * d * sizeof(float)));
        DP_CU_TRY(predict_rows(m, m->lp.A[0], (int)nb, P + c0 * m->k));
    }
    return DP_OK;
}

extern "C" dp_status dp_mlp_predict_data_cuda(dp_cuda_mlp *m, const dp_cuda_data *data,
                                              size_t first, size_t n, float *P) {
    if (!data || data->d != m->cfg.n_in)
        return dp_error(DP_E_USAGE, "cuda: predict: expected data with %zu columns", m->cfg.n_in);
    if (first > data->n || n > data->n - first)
        return dp_error(DP_E_RANGE, "cuda: predict: rows [%zu, %zu) outside the %zu held", first,
                        first + n, data->n);
    if (!data->resident) return dp_mlp_predict_cuda(m, data->X_host + first * data->d, n, P);
    for (size_t c0 = 0; c0 < n; c0 += m->M) {
        size_t nb = n - c0 < m->M ? n - c0 : m->M;
        DP_CU_TRY(predict_rows(m, data->X_dev + (first + c0) * data->d, (int)nb, P + c0 * m->k));
    }
    return DP_OK;
}
