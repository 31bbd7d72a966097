/*
 * clip.c: the DP-SGD gradient of a batch (mlp.h dp_mlp_clipped_grad):
 * per-example gradient norms without per-example gradients, clip factors,
 * and the clipped summed gradient as one matrix product per layer
 * (Goodfellow 2015, arXiv 1510.01799; DESIGN.md algorithm 2; the math is in
 * research/field.md section 3). Relies on the layer kernels of src/nn/.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/dp_internal.h"
#include "nn/nn_internal.h"

/*
 * One micro-batch of r rows, on one thread, in four phases:
 *
 *   forward   A_{l+1} = act(A_l W_l^T + b_l), logits, softmax cross-entropy
 *             and D_{L-1}; fused into the element-wise passes: |a_i^l|^2 and
 *             |delta_i^{L-1}|^2
 *   backward  D_{l-1} = (D_l W_l) .* act'(A_l), fused: |delta_i^{l-1}|^2.
 *             The deltas do not depend on the clip factors, so the whole
 *             backward pass runs before any factor is known.
 *   norms     |g_i|^2 = sum_l |delta_i^l|^2 (|a_i^l|^2 + 1) (the +1 is the
 *             bias, an input that is always 1), c_i = min(1, C / (|g_i| + 1e-6)),
 *             or per layer c_i^l = min(1, C_l / (|g_i^l| + 1e-6)).
 *             A non-finite |g_i|^2 (some input, activation or delta is NaN or
 *             Inf, or a squared norm overflows float) gives c_i = 0, and the row is zeroed in every
 * D_l and A_l (0 * Inf would still be NaN inside the product). wgrad     D_l := diag(c) D_l (row
 * scaling, fused with the bias gradient grad b_l += D_l^T 1 = sum of the scaled rows), then one
 * GEMM grad W_l += D_l^T A_l, the same shape as non-private SGD's.
 *
 * DP_CLIP_NONE runs the same phases with c_i = 1 (0 for a non-finite row,
 * which is why it still needs the norms).
 *
 * Threads: the n rows are split into nt contiguous ranges, one per OpenMP
 * thread; each thread runs the phases above on its range in micro-batches of
 * at most m->rows rows, with single-threaded BLAS and its own gradient
 * buffer (thread 0 accumulates into `grad` directly), and the buffers are
 * summed in a fixed order at the end. Small GEMMs run faster side by side on
 * separate cores than one at a time on a multi-threaded BLAS (bench/kernels).
 * For a fixed thread count the result is deterministic; across thread counts
 * and micro-batch sizes it agrees up to float rounding.
 *
 * dp_mlp_clipped_grad_layers is the same computation with a callback after
 * each layer's last weight-gradient product (data-parallel training starts
 * that layer's allreduce there, overlapping it with the later layers'
 * products); layers write disjoint slices of grad, so the callback changes
 * no bit of the result.
 */

/* Below this many rows per thread, a second thread costs more than it saves. */
#define MIN_ROWS_PER_THREAD 64

typedef struct thread_stats {
    double loss, t_fwd, t_bwd, t_norm, t_wgrad;
    size_t n_clipped, n_nonfinite;
    char pad[64];
} thread_stats;

static void forward(dp_mlp *m, nn_ws *w, const float *X, const int32_t *y, size_t r,
                    const float *cw) {
    const int L = m->L;
    nn_row_sq(X, r, m->cfg.n_in, w->sq_act[0]);
    const float *a = X;
    for (int l = 0; l < L - 1; l++) {
        const float *W = m->params + m->w_off[l], *b = m->params + m->b_off[l];
        nn_linear_forward(a, r, m->n_in[l], W, m->n_out[l], w->act[l + 1]);
        nn_act_forward(m->cfg.activation, w->act[l + 1], b, r, m->n_out[l], w->sq_act[l + 1]);
        a = w->act[l + 1];
    }
    nn_linear_forward(a, r, m->n_in[L - 1], m->params + m->w_off[L - 1], m->n_out[L - 1],
                      w->delta[L - 1]);
    nn_softmax_xent(w->delta[L - 1], m->params + m->b_off[L - 1], y, cw, r, m->n_out[L - 1],
                    w->loss, w->sq_delta[L - 1]);
}

static void backward(dp_mlp *m, nn_ws *w, size_t r) {
    for (int l = m->L - 1; l > 0; l--) {
        nn_linear_backward(w->delta[l], r, m->n_out[l], m->params + m->w_off[l], m->n_in[l],
                           w->delta[l - 1]);
        nn_act_backward(m->cfg.activation, w->delta[l - 1], w->act[l], r, m->n_in[l],
                        w->sq_delta[l - 1]);
    }
}

/* Clip factors into w->clip; returns the number of non-finite rows (w->bad). */
static size_t norms(dp_mlp *m, nn_ws *w, size_t r, const dp_clip_config *clip, thread_stats *st) {
    const int L = m->L;
    size_t bad = 0;
    for (size_t i = 0; i < r; i++) {
        double sq[DP_MLP_MAX_LAYERS], total = 0.0;
        for (int l = 0; l < L; l++) {
            sq[l] = (double)w->sq_delta[l][i] * ((double)w->sq_act[l][i] + 1.0);
            total += sq[l];
        }
        /* float sums of squares that overflowed are Inf (0 * Inf = NaN): caught here */
        if (!(total <= FLT_MAX) || !isfinite(w->loss[i])) {
            w->bad[i] = 1;
            bad++;
            for (int l = 0; l < L; l++)
                w->clip[l][i] = 0.0f;
            continue;
        }
        w->bad[i] = 0;
        st->loss += w->loss[i];
        if (clip->mode == DP_CLIP_FLAT) {
            double f = clip->max_grad_norm / (sqrt(total) + 1e-6);
            st->n_clipped += f < 1.0;
            w->clip[0][i] = f < 1.0 ? (float)f : 1.0f;
        } else if (clip->mode == DP_CLIP_PER_LAYER) {
            int clipped = 0;
            for (int l = 0; l < L; l++) {
                double f = clip->layer_norms[l] / (sqrt(sq[l]) + 1e-6);
                clipped |= f < 1.0;
                w->clip[l][i] = f < 1.0 ? (float)f : 1.0f;
            }
            st->n_clipped += (size_t)clipped;
        } else {
            w->clip[0][i] = 1.0f;
        }
    }
    st->n_nonfinite += bad;
    return bad;
}

/* Zero the non-finite rows of every D_l and A_l; returns the input to use for layer 0. */
static const float *zero_bad_rows(dp_mlp *m, nn_ws *w, const float *X, size_t r) {
    const size_t d = m->cfg.n_in;
    memcpy(w->x, X, r * d * sizeof(float));
    for (size_t i = 0; i < r; i++) {
        if (!w->bad[i]) continue;
        memset(w->x + i * d, 0, d * sizeof(float));
        for (int l = 0; l < m->L; l++) {
            memset(w->delta[l] + i * m->n_out[l], 0, m->n_out[l] * sizeof(float));
            if (l > 0) memset(w->act[l] + i * m->n_in[l], 0, m->n_in[l] * sizeof(float));
        }
    }
    return w->x;
}

/* D := diag(c) D and gb += column sums of D (the bias gradient sum_i c_i delta_i). */
static void scale_rows(float *restrict D, const float *restrict c, size_t r, size_t out,
                       float *restrict gb) {
    for (size_t i = 0; i < r; i++) {
        const float ci = c[i];
        float *restrict d = D + i * out;
#pragma omp simd
        for (size_t o = 0; o < out; o++) {
            float v = d[o] * ci;
            d[o] = v;
            gb[o] += v;
        }
    }
}

static void column_sums(const float *restrict D, size_t r, size_t out, float *restrict gb) {
    for (size_t i = 0; i < r; i++) {
        const float *restrict d = D + i * out;
#pragma omp simd
        for (size_t o = 0; o < out; o++)
            gb[o] += d[o];
    }
}

/* done (may be NULL): the per-layer callback of dp_mlp_clipped_grad_layers,
 * passed only for the last micro-batch of a single-threaded call. */
static void wgrad(dp_mlp *m, nn_ws *w, const float *X, size_t r, const dp_clip_config *clip,
                  float *g, dp_layer_done_fn done, void *ud) {
    for (int l = 0; l < m->L; l++) {
        const size_t out = m->n_out[l];
        if (clip->mode == DP_CLIP_NONE)
            column_sums(w->delta[l], r, out, g + m->b_off[l]);
        else
            scale_rows(w->delta[l], clip->mode == DP_CLIP_PER_LAYER ? w->clip[l] : w->clip[0], r,
                       out, g + m->b_off[l]);
        nn_linear_wgrad(w->delta[l], l == 0 ? X : w->act[l], r, out, m->n_in[l], g + m->w_off[l]);
        if (done) done(l, ud);
    }
}

static void run_rows(dp_mlp *m, nn_ws *w, const float *X, const int32_t *y, size_t n,
                     const dp_clip_config *clip, const float *cw, float *g, thread_stats *st,
                     dp_layer_done_fn done, void *ud) {
    const size_t d = m->cfg.n_in;
    for (size_t r0 = 0; r0 < n; r0 += m->rows) {
        const size_t r = DP_MIN(m->rows, n - r0);
        const float *x = X + r0 * d;
        double t0 = omp_get_wtime();
        forward(m, w, x, y + r0, r, cw);
        double t1 = omp_get_wtime();
        backward(m, w, r);
        double t2 = omp_get_wtime();
        if (norms(m, w, r, clip, st) > 0) x = zero_bad_rows(m, w, x, r);
        double t3 = omp_get_wtime();
        wgrad(m, w, x, r, clip, g, r0 + r == n ? done : NULL, ud);
        double t4 = omp_get_wtime();
        st->t_fwd += t1 - t0;
        st->t_bwd += t2 - t1;
        st->t_norm += t3 - t2;
        st->t_wgrad += t4 - t3;
    }
}

/* The body of both entry points; done (may be NULL) as documented at
 * dp_mlp_clipped_grad_layers. */
static dp_status clipped_grad(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                              const dp_clip_config *clip, const float *class_weight, float *grad,
                              dp_grad_stats *stats, dp_layer_done_fn done, void *ud) {
    if (n == 0) {
        for (int l = 0; done && l < m->L; l++)
            done(l, ud);
        return DP_OK;
    }
    int nt = DP_MIN(m->n_ws, omp_get_max_threads());
    if ((size_t)nt > n / MIN_ROWS_PER_THREAD) nt = (int)(n / MIN_ROWS_PER_THREAD);
    if (nt < 1) nt = 1;
    thread_stats st[NN_MAX_THREADS];
    memset(st, 0, sizeof(thread_stats) * (size_t)nt);
    const size_t P = m->nparams;
    int blas_threads = openblas_get_num_threads();
    if (nt > 1 && blas_threads > 1) openblas_set_num_threads(1);
    int team = 1; /* the team we get: fewer than nt inside another parallel region */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        if (t == 0) team = T;
        const size_t lo = n * (size_t)t / (size_t)T, hi = n * (size_t)(t + 1) / (size_t)T;
        float *g = t == 0 ? grad : m->ws[t].grad;
        if (t > 0) memset(g, 0, P * sizeof(float));
        /* one thread: its own last micro-batch completes each layer */
        run_rows(m, &m->ws[t], X + lo * m->cfg.n_in, y + lo, hi - lo, clip, class_weight, g, &st[t],
                 T == 1 ? done : NULL, ud);
        if (T > 1) {
#pragma omp barrier
            /* sum the private buffers into grad, a slice of coordinates per thread */
            const size_t j0 = P * (size_t)t / (size_t)T, j1 = P * (size_t)(t + 1) / (size_t)T;
            for (int u = 1; u < T; u++) {
                const float *restrict src = m->ws[u].grad;
                float *restrict dst = grad;
                for (size_t j = j0; j < j1; j++)
                    dst[j] += src[j];
            }
        }
    }
    if (nt > 1 && blas_threads > 1) openblas_set_num_threads(blas_threads);
    for (int l = 0; done && team > 1 && l < m->L; l++)
        done(l, ud);
    if (stats) {
        for (int t = 0; t < team; t++) {
            stats->loss_sum += st[t].loss;
            stats->n_clipped += st[t].n_clipped;
            stats->n_nonfinite += st[t].n_nonfinite;
        }
        /* wall time: the threads run side by side, so report thread 0's */
        stats->t_forward += st[0].t_fwd;
        stats->t_backward += st[0].t_bwd;
        stats->t_norms += st[0].t_norm;
        stats->t_wgrad += st[0].t_wgrad;
    }
    return DP_OK;
}

DP_API dp_status dp_mlp_clipped_grad(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                     const dp_clip_config *clip, const float *class_weight,
                                     float *grad, dp_grad_stats *stats) {
    DP_TRY(nn_check_batch("dp_mlp_clipped_grad", m, X, y, n, clip, class_weight, grad));
    return clipped_grad(m, X, y, n, clip, class_weight, grad, stats, NULL, NULL);
}

DP_API dp_status dp_mlp_clipped_grad_layers(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                            const dp_clip_config *clip, const float *class_weight,
                                            float *grad, dp_grad_stats *stats,
                                            dp_layer_done_fn done, void *ud) {
    DP_TRY(nn_check_batch("dp_mlp_clipped_grad_layers", m, X, y, n, clip, class_weight, grad));
    return clipped_grad(m, X, y, n, clip, class_weight, grad, stats, done, ud);
}

DP_API double dp_clip_sensitivity(const dp_clip_config *clip, int n_layers) {
    if (!clip) return NAN;
    switch (clip->mode) {
    case DP_CLIP_FLAT:
        return clip->max_grad_norm;
    case DP_CLIP_PER_LAYER: {
        double s = 0.0;
        for (int l = 0; l < n_layers && l < DP_MLP_MAX_LAYERS; l++)
            s += clip->layer_norms[l] * clip->layer_norms[l];
        return sqrt(s);
    }
    default:
        return INFINITY; /* no clipping: the sensitivity is unbounded */
    }
}
