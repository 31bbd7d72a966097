/*
 * reference.c: the plain reference implementation of the DP-SGD gradient and
 * of prediction: one example at a time, naive loops, double accumulation with
 * float32 storage of activations and deltas (so that what overflows float in
 * the model overflows here too), no BLAS and no threads (as llm.c keeps matmul_forward_naive). The
 * fast path in src/dp/clip.c must match it (tests/test_clip.c); it is also the readable statement
 * of the algorithm: per-example output gradients delta_l, |g_i|^2 = sum_l |delta_l|^2 (|a_l|^2 +
 * 1), c_i = min(1, C / (|g_i| + 1e-6)), grad += c_i delta_l a_l^T (DESIGN.md algorithm 2).
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "core/dp_internal.h"
#include "nn/nn_internal.h"

/* Forward one example: act[l] = input of layer l (act[0] = x), z = logits. */
static void forward_one(const dp_mlp *m, const float *x, double **act, double *z) {
    const float *P = m->params;
    for (size_t j = 0; j < m->cfg.n_in; j++)
        act[0][j] = x[j];
    for (int l = 0; l < m->L; l++) {
        const float *W = P + m->w_off[l], *b = P + m->b_off[l];
        double *out = l + 1 < m->L ? act[l + 1] : z;
        for (size_t o = 0; o < m->n_out[l]; o++) {
            double s = b[o];
            for (size_t i = 0; i < m->n_in[l]; i++)
                s += (double)W[o * m->n_in[l] + i] * act[l][i];
            if (l + 1 < m->L) {
                if (m->cfg.activation == DP_ACT_RELU)
                    s = s < 0 ? 0 : s;
                else
                    s = tanh(s);
            }
            out[o] = (float)s; /* float32 storage, as the model's */
        }
    }
}

dp_status dp_mlp_clipped_grad_ref(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                  const dp_clip_config *clip, const float *class_weight,
                                  float *grad, dp_grad_stats *stats) {
    DP_TRY(nn_check_batch("dp_mlp_clipped_grad_ref", m, X, y, n, clip, class_weight, grad));
    const int L = m->L;
    const size_t d = m->cfg.n_in, k = (size_t)m->cfg.n_classes, P = m->nparams;
    size_t width = d;
    for (int l = 0; l < L; l++)
        width = DP_MAX(width, m->n_out[l]);
    /* act[l], delta[l] per layer, z, and a double gradient sum */
    double *mem = dp_calloc((size_t)(2 * L + 1) * width + P, sizeof(double));
    if (!mem) return dp_error(DP_E_NOMEM, "dp_mlp_clipped_grad_ref: out of memory");
    double *act[DP_MLP_MAX_LAYERS], *delta[DP_MLP_MAX_LAYERS], *z, *g = mem;
    for (int l = 0; l < L; l++) {
        act[l] = mem + P + (size_t)l * width;
        delta[l] = mem + P + (size_t)(L + l) * width;
    }
    z = mem + P + (size_t)(2 * L) * width;
    double loss_sum = 0.0;
    size_t n_clipped = 0, n_nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        forward_one(m, X + i * d, act, z);
        /* softmax cross-entropy, stable */
        double mx = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < k; j++)
            mx = z[j] > mx ? z[j] : mx;
        if (!isfinite(mx)) mx = 0;
        for (size_t j = 0; j < k; j++)
            sum += exp(z[j] - mx);
        const double w = class_weight ? class_weight[y[i]] : 1.0;
        const double loss = w * (mx + log(sum) - z[y[i]]);
        for (size_t j = 0; j < k; j++)
            delta[L - 1][j] = (float)(w * (exp(z[j] - mx) / sum - (j == (size_t)y[i] ? 1.0 : 0.0)));
        /* backward to the output gradient of every layer */
        for (int l = L - 1; l > 0; l--) {
            const float *W = m->params + m->w_off[l];
            for (size_t i2 = 0; i2 < m->n_in[l]; i2++) {
                double s = 0.0;
                for (size_t o = 0; o < m->n_out[l]; o++)
                    s += delta[l][o] * W[o * m->n_in[l] + i2];
                double a = act[l][i2];
                s *= m->cfg.activation == DP_ACT_RELU ? (a > 0 ? 1.0 : 0.0) : 1.0 - a * a;
                delta[l - 1][i2] = (float)s;
            }
        }
        /* per-layer squared norms |delta|^2 (|a|^2 + 1) */
        double sq[DP_MLP_MAX_LAYERS], total = 0.0;
        int finite = isfinite(loss);
        for (int l = 0; l < L; l++) {
            double sd = 0.0, sa = 0.0;
            for (size_t o = 0; o < m->n_out[l]; o++)
                sd += delta[l][o] * delta[l][o];
            for (size_t j = 0; j < m->n_in[l]; j++)
                sa += act[l][j] * act[l][j];
            finite &= sd <= FLT_MAX && sa <= FLT_MAX; /* false for NaN too */
            sq[l] = sd * (sa + 1.0);
            total += sq[l];
        }
        double c[DP_MLP_MAX_LAYERS];
        int clipped = 0;
        /* the rule of mlp.h: non-finite when a squared norm is not a finite float */
        if (!finite || !(total <= FLT_MAX)) {
            n_nonfinite++;
            continue;
        }
        for (int l = 0; l < L; l++) {
            double f = 1.0;
            if (clip->mode == DP_CLIP_FLAT) f = clip->max_grad_norm / (sqrt(total) + 1e-6);
            if (clip->mode == DP_CLIP_PER_LAYER) f = clip->layer_norms[l] / (sqrt(sq[l]) + 1e-6);
            if (f < 1.0) clipped = 1;
            c[l] = f < 1.0 ? f : 1.0;
        }
        n_clipped += (size_t)clipped;
        loss_sum += loss;
        for (int l = 0; l < L; l++) {
            double *gW = g + m->w_off[l], *gb = g + m->b_off[l];
            for (size_t o = 0; o < m->n_out[l]; o++) {
                double dd = c[l] * delta[l][o];
                for (size_t j = 0; j < m->n_in[l]; j++)
                    gW[o * m->n_in[l] + j] += dd * act[l][j];
                gb[o] += dd;
            }
        }
    }
    for (size_t j = 0; j < P; j++)
        grad[j] = (float)((double)grad[j] + g[j]);
    if (stats) {
        stats->loss_sum += loss_sum;
        stats->n_clipped += n_clipped;
        stats->n_nonfinite += n_nonfinite;
    }
    dp_free(mem);
    return DP_OK;
}

dp_status dp_mlp_predict_ref(dp_mlp *m, const float *X, size_t n, float *P) {
    if (!m || (n > 0 && (!X || !P)))
        return dp_error(DP_E_USAGE, "dp_mlp_predict_ref: expected model, X and P, found NULL");
    const size_t k = (size_t)m->cfg.n_classes;
    size_t width = m->cfg.n_in;
    for (int l = 0; l < m->L; l++)
        width = DP_MAX(width, m->n_out[l]);
    double *mem = dp_calloc((size_t)(m->L + 1) * width, sizeof(double));
    if (!mem) return dp_error(DP_E_NOMEM, "dp_mlp_predict_ref: out of memory");
    double *act[DP_MLP_MAX_LAYERS], *z = mem + (size_t)m->L * width;
    for (int l = 0; l < m->L; l++)
        act[l] = mem + (size_t)l * width;
    for (size_t i = 0; i < n; i++) {
        forward_one(m, X + i * m->cfg.n_in, act, z);
        double mx = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < k; j++)
            mx = z[j] > mx ? z[j] : mx;
        if (!isfinite(mx)) mx = 0;
        for (size_t j = 0; j < k; j++)
            sum += exp(z[j] - mx);
        for (size_t j = 0; j < k; j++)
            P[i * k + j] = (float)(exp(z[j] - mx) / sum);
    }
    dp_free(mem);
    return DP_OK;
}
