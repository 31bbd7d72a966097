/*
 * mlp.c: the MLP object (mlp.h): its configuration, the flat parameter vector
 * in PyTorch nn.Sequential order, nn.Linear's default initialisation from a
 * counter-based ChaCha20 stream, the per-thread workspaces (one allocation),
 * and prediction. Relies on OpenBLAS (linear.c), OpenMP and libsodium.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <sodium.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/dp.h"
#include "nn/nn_internal.h"

#define ALIGN_FLOATS 16 /* 64 bytes: every array starts on a cache line */

static size_t round_up(size_t n) {
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Floats one workspace needs for `rows` rows; with `base` != NULL, also carve it. */
static size_t ws_layout(const dp_mlp *m, size_t rows, float *base, nn_ws *ws) {
    size_t off = 0;
#define TAKE(ptr, type, count)                                                                     \
    do {                                                                                           \
        size_t n_ = round_up(((count) * sizeof(type) + sizeof(float) - 1) / sizeof(float));        \
        if (base) (ptr) = (type *)(base + off);                                                    \
        off += n_;                                                                                 \
    } while (0)
    TAKE(ws->x, float, rows * m->cfg.n_in);
    for (int l = 1; l < m->L; l++)
        TAKE(ws->act[l], float, rows * m->n_in[l]);
    for (int l = 0; l < m->L; l++) {
        TAKE(ws->delta[l], float, rows * m->n_out[l]);
        TAKE(ws->sq_act[l], float, rows);
        TAKE(ws->sq_delta[l], float, rows);
        TAKE(ws->clip[l], float, rows);
    }
    TAKE(ws->loss, double, rows);
    TAKE(ws->grad, float, m->nparams);
    TAKE(ws->bad, unsigned char, rows);
#undef TAKE
    return off;
}

DP_API dp_status dp_mlp_create(const dp_mlp_config *cfg, size_t max_micro, dp_mlp **out) {
    if (!cfg || !out)
        return dp_error(DP_E_USAGE, "dp_mlp_create: expected cfg and out, found NULL");
    *out = NULL;
    if (cfg->n_in < 1 || cfg->n_in > (1u << 24))
        return dp_error(DP_E_RANGE, "dp_mlp_create: expected 1 <= n_in <= 2^24, found %zu",
                        cfg->n_in);
    if (cfg->n_hidden < 0 || cfg->n_hidden >= DP_MLP_MAX_LAYERS)
        return dp_error(DP_E_RANGE, "dp_mlp_create: expected 0 <= n_hidden <= %d, found %d",
                        DP_MLP_MAX_LAYERS - 1, cfg->n_hidden);
    for (int h = 0; h < cfg->n_hidden; h++)
        if (cfg->hidden[h] < 1 || cfg->hidden[h] > (1 << 20))
            return dp_error(DP_E_RANGE,
                            "dp_mlp_create: hidden layer %d: expected a width in "
                            "[1, 2^20], found %d",
                            h + 1, cfg->hidden[h]);
    if (cfg->n_classes < 2 || cfg->n_classes > (1 << 20))
        return dp_error(DP_E_RANGE, "dp_mlp_create: expected 2 <= n_classes <= 2^20, found %d",
                        cfg->n_classes);
    if (cfg->activation != DP_ACT_RELU && cfg->activation != DP_ACT_TANH)
        return dp_error(DP_E_RANGE, "dp_mlp_create: expected activation relu or tanh, found %d",
                        (int)cfg->activation);
    if (max_micro < 1 || max_micro > (1u << 24))
        return dp_error(DP_E_RANGE, "dp_mlp_create: expected 1 <= max_micro <= 2^24, found %zu",
                        max_micro);
    dp_mlp *m = dp_calloc(1, sizeof *m);
    if (!m) return dp_error(DP_E_NOMEM, "dp_mlp_create: out of memory for the model");
    m->cfg = *cfg;
    m->L = cfg->n_hidden + 1;
    size_t in = cfg->n_in, off = 0;
    for (int l = 0; l < m->L; l++) {
        size_t o = l < cfg->n_hidden ? (size_t)cfg->hidden[l] : (size_t)cfg->n_classes;
        m->n_in[l] = in;
        m->n_out[l] = o;
        m->w_off[l] = off;
        off += o * in;
        m->b_off[l] = off;
        off += o;
        in = o;
    }
    m->nparams = off;
    m->max_micro = max_micro;
    m->rows = DP_MIN(max_micro, (size_t)NN_CHUNK);
    int nt = omp_get_max_threads();
    m->n_ws = nt < 1 ? 1 : nt > NN_MAX_THREADS ? NN_MAX_THREADS : nt;
    nn_ws probe;
    size_t per_ws = ws_layout(m, m->rows, NULL, &probe);
    size_t total = round_up(m->nparams) + per_ws * (size_t)m->n_ws;
    m->block = dp_calloc(total + ALIGN_FLOATS, sizeof(float)); /* + room to align to 64 bytes */
    if (!m->block) {
        dp_free(m);
        return dp_error(DP_E_NOMEM,
                        "dp_mlp_create: out of memory for %zu parameters and %d "
                        "workspaces of %zu rows",
                        off, m->n_ws, m->rows);
    }
    m->params = (float *)(((uintptr_t)m->block + 63) & ~(uintptr_t)63);
    float *p = m->params + round_up(m->nparams);
    for (int t = 0; t < m->n_ws; t++, p += per_ws)
        ws_layout(m, m->rows, p, &m->ws[t]);
    *out = m;
    return DP_OK;
}

DP_API void dp_mlp_destroy(dp_mlp *m) {
    if (!m) return;
    dp_free(m->block);
    dp_free(m);
}

DP_API const dp_mlp_config *dp_mlp_get_config(const dp_mlp *m) {
    return &m->cfg;
}
DP_API size_t dp_mlp_nparams(const dp_mlp *m) {
    return m->nparams;
}
DP_API float *dp_mlp_params(dp_mlp *m) {
    return m->params;
}
DP_API int dp_mlp_nlayers(const dp_mlp *m) {
    return m->L;
}

DP_API void dp_mlp_layer(const dp_mlp *m, int l, size_t *w_off, size_t *b_off, size_t *n_out,
                         size_t *n_in) {
    DP_ASSERT(l >= 0 && l < m->L);
    if (w_off) *w_off = m->w_off[l];
    if (b_off) *b_off = m->b_off[l];
    if (n_out) *n_out = m->n_out[l];
    if (n_in) *n_in = m->n_in[l];
}

/*
 * Initialisation, as PyTorch's nn.Linear.reset_parameters: kaiming_uniform_
 * with a = sqrt(5) gives W ~ U(-1/sqrt(in), 1/sqrt(in)), and the bias is
 * U(-1/sqrt(in), 1/sqrt(in)) too. The uniforms come from a counter-based
 * stream: key = dp_key_from_seed(seed, "init"), parameter j (flat index)
 * takes the 64-bit little-endian word j of the XChaCha20 keystream with nonce
 * 0^16 || "init\0\0\0\0", u = (word >> 11) 2^-53 in [0, 1), value =
 * (2u - 1) / sqrt(in). Every rank computes the same parameters from the seed.
 */
DP_API void dp_mlp_init(dp_mlp *m, uint64_t seed) {
    static const unsigned char tag[8] = {'i', 'n', 'i', 't', 0, 0, 0, 0};
    static const unsigned char zero16[16];
    dp_key key;
    dp_key_from_seed(seed, "init", &key);
    unsigned char subkey[crypto_core_hchacha20_KEYBYTES];
    crypto_core_hchacha20(subkey, zero16, key.bytes, NULL);
    unsigned char buf[512];
    static const unsigned char zeros[sizeof buf];
    for (int l = 0; l < m->L; l++) {
        const double bound = 1.0 / sqrt((double)m->n_in[l]);
        const size_t lo = m->w_off[l], hi = m->b_off[l] + m->n_out[l];
        for (size_t j = lo; j < hi;) {
            /* words [j, ...) of the keystream: ChaCha20 block j / 8, word j % 8 */
            uint64_t blk = j / 8;
            crypto_stream_chacha20_xor_ic(buf, zeros, sizeof buf, tag, blk, subkey);
            for (size_t w = j % 8; w < sizeof buf / 8 && j < hi; w++, j++) {
                uint64_t v = 0;
                for (int i = 7; i >= 0; i--)
                    v = (v << 8) | buf[8 * w + (size_t)i];
                double u = (double)(v >> 11) * 0x1p-53;
                m->params[j] = (float)((2.0 * u - 1.0) * bound);
            }
        }
    }
    sodium_memzero(subkey, sizeof subkey);
    sodium_memzero(&key, sizeof key);
}

dp_status nn_check_batch(const char *fn, const dp_mlp *m, const float *X, const int32_t *y,
                         size_t n, const dp_clip_config *clip, const float *class_weight,
                         const float *grad) {
    if (!m || !clip || (n > 0 && (!X || !y)) || !grad)
        return dp_error(DP_E_USAGE, "%s: expected model, X, y, clip and grad, found NULL", fn);
    const int k = m->cfg.n_classes;
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return dp_error(DP_E_RANGE, "%s: row %zu: expected a label in [0, %d), found %d", fn, i,
                            k, (int)y[i]);
    if (class_weight)
        for (int c = 0; c < k; c++)
            if (!(class_weight[c] >= 0.0f) || !isfinite(class_weight[c]))
                return dp_error(DP_E_RANGE,
                                "%s: class %d: expected a finite weight >= 0, "
                                "found %g",
                                fn, c, (double)class_weight[c]);
    switch (clip->mode) {
    case DP_CLIP_NONE:
        break;
    case DP_CLIP_FLAT:
        if (!(clip->max_grad_norm > 0.0) || !isfinite(clip->max_grad_norm))
            return dp_error(DP_E_RANGE, "%s: expected max_grad_norm > 0, found %g", fn,
                            clip->max_grad_norm);
        break;
    case DP_CLIP_PER_LAYER:
        for (int l = 0; l < m->L; l++)
            if (!(clip->layer_norms[l] > 0.0) || !isfinite(clip->layer_norms[l]))
                return dp_error(DP_E_RANGE,
                                "%s: layer %d: expected a clipping bound > 0, "
                                "found %g",
                                fn, l, clip->layer_norms[l]);
        break;
    default:
        return dp_error(DP_E_RANGE, "%s: expected clip mode none, flat or per-layer, found %d", fn,
                        (int)clip->mode);
    }
    return DP_OK;
}

/* Forward pass of rows [0, r) of X on workspace w; probabilities to P. */
static void predict_rows(dp_mlp *m, nn_ws *w, const float *X, size_t r, float *P) {
    const float *a = X;
    for (int l = 0; l < m->L; l++) {
        const float *W = m->params + m->w_off[l], *b = m->params + m->b_off[l];
        if (l == m->L - 1) {
            nn_linear_forward(a, r, m->n_in[l], W, m->n_out[l], P);
            nn_softmax(P, b, r, m->n_out[l], P);
        } else {
            nn_linear_forward(a, r, m->n_in[l], W, m->n_out[l], w->act[l + 1]);
            nn_act_forward(m->cfg.activation, w->act[l + 1], b, r, m->n_out[l], NULL);
            a = w->act[l + 1];
        }
    }
}

DP_API dp_status dp_mlp_predict(dp_mlp *m, const float *X, size_t n, float *P) {
    if (!m || (n > 0 && (!X || !P)))
        return dp_error(DP_E_USAGE, "dp_mlp_predict: expected model, X and P, found NULL");
    if (n == 0) return DP_OK;
    const size_t d = m->cfg.n_in, k = (size_t)m->cfg.n_classes, R = m->rows;
    const size_t nchunks = (n + R - 1) / R;
    int nt = DP_MIN(m->n_ws, omp_get_max_threads());
    if ((size_t)nt > nchunks) nt = (int)nchunks;
    /* one BLAS thread per OpenMP thread (OpenBLAS's pthread pool would oversubscribe) */
    int blas_threads = openblas_get_num_threads();
    if (nt > 1 && blas_threads > 1) openblas_set_num_threads(1);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t r0 = c * R, r = DP_MIN(R, n - r0);
        predict_rows(m, &m->ws[omp_get_thread_num()], X + r0 * d, r, P + r0 * k);
    }
    if (nt > 1 && blas_threads > 1) openblas_set_num_threads(blas_threads);
    return DP_OK;
}
