/*
 * test_clip.c: the DP-SGD gradient (dp_mlp_clipped_grad): per-example norms
 * and the clipped sum against a naive float64 implementation that
 * materialises every per-example gradient (its own backpropagation, written
 * here independently of src/), flat and per-layer clipping, independence
 * from the micro-batch size and the thread count, non-finite rows zeroed and
 * counted, the empty batch, and the fast path against the library's plain
 * reference (dp_mlp_clipped_grad_ref).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "nn/nn_internal.h"
#include "testutil.h"

/* ---- the naive reference: a per-example gradient vector, in double ---- */

typedef struct net {
    int L, relu;
    size_t P, in[DP_MLP_MAX_LAYERS], out[DP_MLP_MAX_LAYERS], woff[DP_MLP_MAX_LAYERS],
        boff[DP_MLP_MAX_LAYERS];
    double *theta;
} net;

static net net_of(dp_mlp *m) {
    net n = {0};
    n.L = dp_mlp_nlayers(m);
    n.relu = dp_mlp_get_config(m)->activation == DP_ACT_RELU;
    n.P = dp_mlp_nparams(m);
    for (int l = 0; l < n.L; l++)
        dp_mlp_layer(m, l, &n.woff[l], &n.boff[l], &n.out[l], &n.in[l]);
    n.theta = malloc(n.P * sizeof(double));
    for (size_t j = 0; j < n.P; j++)
        n.theta[j] = dp_mlp_params(m)[j];
    return n;
}

/* g[P] = gradient of w * CE(x, y) with respect to every parameter; returns the loss. */
static double example_grad(const net *n, const float *x, int y, double w, double *g) {
    double a[DP_MLP_MAX_LAYERS + 1][256], dz[256], da[256];
    for (size_t j = 0; j < n->in[0]; j++)
        a[0][j] = x[j];
    for (int l = 0; l < n->L; l++)
        for (size_t o = 0; o < n->out[l]; o++) {
            double s = n->theta[n->boff[l] + o];
            for (size_t i = 0; i < n->in[l]; i++)
                s += n->theta[n->woff[l] + o * n->in[l] + i] * a[l][i];
            if (l < n->L - 1) s = n->relu ? fmax(s, 0.0) : tanh(s);
            if (isnan(s)) s = NAN;
            a[l + 1][o] = s;
        }
    const int L = n->L;
    const size_t k = n->out[L - 1];
    double mx = a[L][0];
    for (size_t j = 1; j < k; j++)
        mx = fmax(mx, a[L][j]);
    double se = 0;
    for (size_t j = 0; j < k; j++)
        se += exp(a[L][j] - mx);
    double loss = w * (mx + log(se) - a[L][y]);
    for (size_t j = 0; j < k; j++)
        dz[j] = w * (exp(a[L][j] - mx) / se - (j == (size_t)y));
    for (int l = L - 1; l >= 0; l--) {
        for (size_t o = 0; o < n->out[l]; o++) {
            g[n->boff[l] + o] = dz[o];
            for (size_t i = 0; i < n->in[l]; i++)
                g[n->woff[l] + o * n->in[l] + i] = dz[o] * a[l][i];
        }
        if (l == 0) break;
        for (size_t i = 0; i < n->in[l]; i++) {
            double s = 0;
            for (size_t o = 0; o < n->out[l]; o++)
                s += dz[o] * n->theta[n->woff[l] + o * n->in[l] + i];
            double act = a[l][i];
            da[i] = s * (n->relu ? (act > 0) : 1 - act * act);
        }
        memcpy(dz, da, n->in[l] * sizeof(double));
    }
    return loss;
}

typedef struct naive_out {
    double *sum;  /* [P] clipped sum */
    double *norm; /* [n] per-example norms |g_i| */
    size_t clipped, nonfinite;
    double loss;
} naive_out;

static naive_out naive(const net *nt, const float *X, const int32_t *y, size_t n,
                       const dp_clip_config *clip, const float *cw) {
    naive_out r = {calloc(nt->P, sizeof(double)), calloc(n + 1, sizeof(double)), 0, 0, 0};
    double *g = malloc(nt->P * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double loss = example_grad(nt, X + i * nt->in[0], y[i], cw ? cw[y[i]] : 1.0, g);
        double tot = 0, lay[DP_MLP_MAX_LAYERS];
        for (int l = 0; l < nt->L; l++) {
            lay[l] = 0;
            for (size_t j = nt->woff[l]; j < nt->boff[l] + nt->out[l]; j++)
                lay[l] += g[j] * g[j];
            tot += lay[l];
        }
        r.norm[i] = sqrt(tot);
        int finite = isfinite(tot);
        for (size_t j = 0; j < nt->P; j++)
            finite &= isfinite(g[j]) != 0;
        if (!finite) {
            r.nonfinite++;
            continue;
        }
        r.loss += loss;
        int clipped = 0;
        for (int l = 0; l < nt->L; l++) {
            double c = 1;
            if (clip->mode == DP_CLIP_FLAT) c = fmin(1, clip->max_grad_norm / (sqrt(tot) + 1e-6));
            if (clip->mode == DP_CLIP_PER_LAYER)
                c = fmin(1, clip->layer_norms[l] / (sqrt(lay[l]) + 1e-6));
            clipped |= c < 1;
            for (size_t j = nt->woff[l]; j < nt->boff[l] + nt->out[l]; j++)
                r.sum[j] += c * g[j];
        }
        r.clipped += (size_t)clipped;
    }
    free(g);
    return r;
}

/* ---- fixtures ---- */

static dp_mlp *make(size_t d, int h1, int h2, int k, dp_activation act, size_t micro,
                    uint64_t seed) {
    dp_mlp_config cfg = {.n_in = d, .n_classes = k, .activation = act};
    if (h1) cfg.hidden[cfg.n_hidden++] = h1;
    if (h2) cfg.hidden[cfg.n_hidden++] = h2;
    dp_mlp *m = NULL;
    cr_assert_eq(dp_mlp_create(&cfg, micro, &m), DP_OK, "%s", dp_last_error());
    dp_mlp_init(m, seed);
    return m;
}

static void data(uint64_t *s, size_t n, size_t d, int k, double scale, float *X, int32_t *y) {
    for (size_t i = 0; i < n * d; i++)
        X[i] = (float)(scale * tu_normal(s));
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(tu_next(s) % (uint64_t)k);
}

/* |a - b| <= atol + rtol |b| everywhere */
static void assert_close(const float *a, const double *b, size_t n, double rtol, double atol,
                         const char *what) {
    for (size_t j = 0; j < n; j++)
        cr_assert(fabs(a[j] - b[j]) <= atol + rtol * fabs(b[j]), "%s[%zu]: %.9g vs %.9g", what, j,
                  (double)a[j], b[j]);
}

static double max_abs(const double *v, size_t n) {
    double m = 0;
    for (size_t j = 0; j < n; j++)
        m = fmax(m, fabs(v[j]));
    return m;
}

static void check_mode(dp_activation act, dp_clip_mode mode, int weighted) {
    uint64_t s = tu_seed();
    const size_t n = 300, d = 13;
    const int k = 3;
    dp_mlp *m = make(d, 24, 17, k, act, 64, s);
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    data(&s, n, d, k, 1.5, X, y);
    float cw[3] = {1.0f, 2.5f, 0.5f};
    net nt = net_of(m);
    dp_clip_config clip = {.mode = mode, .max_grad_norm = 0};
    /* bounds that clip about half of the examples */
    naive_out free_ = naive(&nt, X, y, n, &(dp_clip_config){.mode = DP_CLIP_NONE}, NULL);
    double *sorted = malloc(n * sizeof(double));
    memcpy(sorted, free_.norm, n * sizeof(double));
    int cmp(const void *a, const void *b) {
        double x = *(const double *)a, z = *(const double *)b;
        return (x > z) - (x < z);
    }
    qsort(sorted, n, sizeof(double), cmp);
    clip.max_grad_norm = 0.5 * (sorted[n / 2] + sorted[n / 2 + 1]);
    for (int l = 0; l < nt.L; l++)
        clip.layer_norms[l] = clip.max_grad_norm / sqrt(nt.L) * (1 + 0.3 * l);
    naive_out ref = naive(&nt, X, y, n, &clip, weighted ? cw : NULL);
    float *g = calloc(nt.P, sizeof(float));
    dp_grad_stats st = {0};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, n, &clip, weighted ? cw : NULL, g, &st), DP_OK, "%s",
                 dp_last_error());
    double scale = max_abs(ref.sum, nt.P);
    assert_close(g, ref.sum, nt.P, 1e-4, 1e-5 * scale, "clipped sum");
    cr_assert_eq(st.n_clipped, ref.clipped, "clipped %zu vs naive %zu", st.n_clipped, ref.clipped);
    cr_assert_eq(st.n_nonfinite, 0);
    cr_assert(fabs(st.loss_sum - ref.loss) <= 1e-5 * fabs(ref.loss), "loss %.10g vs %.10g",
              st.loss_sum, ref.loss);
    if (mode == DP_CLIP_FLAT) cr_assert(ref.clipped > n / 4 && ref.clipped < 3 * n / 4);
    /* the library's plain reference agrees too */
    float *g2 = calloc(nt.P, sizeof(float));
    dp_grad_stats st2 = {0};
    cr_assert_eq(dp_mlp_clipped_grad_ref(m, X, y, n, &clip, weighted ? cw : NULL, g2, &st2), DP_OK);
    assert_close(g2, ref.sum, nt.P, 1e-4, 1e-5 * scale, "reference");
    cr_assert_eq(st2.n_clipped, ref.clipped);
    free(g2);
    free(g);
    free(sorted);
    free(ref.sum), free(ref.norm), free(free_.sum), free(free_.norm);
    free(nt.theta);
    free(X), free(y);
    dp_mlp_destroy(m);
}

Test(clip, clip_sum_equals_naive_per_example_sum_flat_relu) {
    check_mode(DP_ACT_RELU, DP_CLIP_FLAT, 0);
}
Test(clip, clip_sum_equals_naive_per_example_sum_flat_tanh) {
    check_mode(DP_ACT_TANH, DP_CLIP_FLAT, 0);
}
Test(clip, clip_sum_equals_naive_per_example_sum_per_layer) {
    check_mode(DP_ACT_RELU, DP_CLIP_PER_LAYER, 0);
}
Test(clip, unclipped_sum_equals_naive_sum) {
    check_mode(DP_ACT_RELU, DP_CLIP_NONE, 0);
}
Test(clip, class_weights_scale_each_example_before_clipping) {
    check_mode(DP_ACT_TANH, DP_CLIP_FLAT, 1);
}

/* One example at a time: the result is g_i scaled to norm min(|g_i|, C), which
 * checks the per-example norm itself. */
Test(clip, single_example_gradient_has_norm_min_of_norm_and_bound) {
    uint64_t s = tu_seed();
    const size_t d = 9;
    dp_mlp *m = make(d, 16, 0, 2, DP_ACT_RELU, 8, s);
    net nt = net_of(m);
    float x[9];
    int32_t y[1];
    double *g = malloc(nt.P * sizeof(double));
    float *f = malloc(nt.P * sizeof(float));
    for (int rep = 0; rep < 20; rep++) {
        data(&s, 1, d, 2, 2.0, x, y);
        example_grad(&nt, x, y[0], 1.0, g);
        double norm = 0;
        for (size_t j = 0; j < nt.P; j++)
            norm += g[j] * g[j];
        norm = sqrt(norm);
        double C = norm * (rep % 2 ? 0.3 : 3.0);
        dp_clip_config clip = {.mode = DP_CLIP_FLAT, .max_grad_norm = C};
        memset(f, 0, nt.P * sizeof(float));
        cr_assert_eq(dp_mlp_clipped_grad(m, x, y, 1, &clip, NULL, f, NULL), DP_OK);
        double got = 0;
        for (size_t j = 0; j < nt.P; j++)
            got += (double)f[j] * f[j];
        got = sqrt(got);
        double want = fmin(norm, C * norm / (norm + 1e-6));
        cr_assert(fabs(got - want) <= 1e-5 * want, "norm %.9g, want %.9g (C %.4g, |g| %.4g)", got,
                  want, C, norm);
    }
    free(g), free(f), free(nt.theta);
    dp_mlp_destroy(m);
}

static float *grad_with(size_t micro, int threads, uint64_t seed, const float *X, const int32_t *y,
                        size_t n, size_t d, const dp_clip_config *clip, size_t *P) {
    int old = omp_get_max_threads();
    omp_set_num_threads(threads);
    dp_mlp *m = make(d, 32, 32, 2, DP_ACT_RELU, micro, seed);
    *P = dp_mlp_nparams(m);
    float *g = calloc(*P, sizeof(float));
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, n, clip, NULL, g, NULL), DP_OK, "%s",
                 dp_last_error());
    dp_mlp_destroy(m);
    omp_set_num_threads(old);
    return g;
}

Test(clip, clip_sum_is_the_same_for_micro_batch_sizes_and_thread_counts) {
    uint64_t s = tu_seed();
    const size_t n = 1500, d = 20;
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    data(&s, n, d, 2, 1.0, X, y);
    uint64_t seed = tu_next(&s);
    for (int mode = DP_CLIP_NONE; mode <= DP_CLIP_PER_LAYER; mode++) {
        dp_clip_config clip = {.mode = (dp_clip_mode)mode, .max_grad_norm = 0.2};
        for (int l = 0; l < 3; l++)
            clip.layer_norms[l] = 0.1;
        size_t P;
        float *base = grad_with(n, 1, seed, X, y, n, d, &clip, &P);
        double *b = malloc(P * sizeof(double)), sc = 0;
        for (size_t j = 0; j < P; j++)
            b[j] = base[j], sc = fmax(sc, fabs(b[j]));
        size_t micro[] = {1, 7, 512, 1000, n};
        for (size_t t = 0; t < sizeof micro / sizeof *micro; t++)
            for (int threads = 1; threads <= 2; threads++) {
                float *g = grad_with(micro[t], threads, seed, X, y, n, d, &clip, &P);
                cr_assert(1, "micro %zu threads %d", micro[t], threads);
                assert_close(g, b, P, 1e-4, 1e-5 * sc, "micro-batch");
                free(g);
            }
        free(b), free(base);
    }
    free(X), free(y);
}

Test(clip, nonfinite_rows_are_zeroed_and_counted_not_propagated) {
    uint64_t s = tu_seed();
    const size_t n = 400, d = 11;
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    data(&s, n, d, 3, 1.0, X, y);
    /* rows 3, 150, 151 and 399 are broken in different ways; 200 overflows inside */
    X[3 * d + 2] = NAN;
    X[150 * d + 0] = INFINITY;
    X[151 * d + 10] = -INFINITY;
    X[399 * d + 5] = NAN;
    for (size_t j = 0; j < d; j++)
        X[200 * d + j] = 3e38f;
    dp_mlp *m = make(d, 24, 24, 3, DP_ACT_RELU, 128, tu_next(&s));
    net nt = net_of(m);
    /* the expected sum: the finite rows only */
    float *Xf = malloc(n * d * sizeof(float));
    int32_t *yf = malloc(n * sizeof(int32_t));
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 3 || i == 150 || i == 151 || i == 399 || i == 200) continue;
        memcpy(Xf + nf * d, X + i * d, d * sizeof(float));
        yf[nf++] = y[i];
    }
    for (int mode = DP_CLIP_NONE; mode <= DP_CLIP_PER_LAYER; mode++) {
        dp_clip_config clip = {.mode = (dp_clip_mode)mode, .max_grad_norm = 0.5};
        for (int l = 0; l < 3; l++)
            clip.layer_norms[l] = 0.3;
        naive_out ref = naive(&nt, Xf, yf, nf, &clip, NULL);
        float *g = calloc(nt.P, sizeof(float));
        dp_grad_stats st = {0};
        cr_assert_eq(dp_mlp_clipped_grad(m, X, y, n, &clip, NULL, g, &st), DP_OK);
        cr_assert_eq(st.n_nonfinite, 5, "mode %d: counted %zu", mode, st.n_nonfinite);
        cr_assert(isfinite(st.loss_sum));
        assert_close(g, ref.sum, nt.P, 1e-4, 1e-5 * max_abs(ref.sum, nt.P), "finite rows");
        memset(g, 0, nt.P * sizeof(float));
        dp_grad_stats st2 = {0};
        cr_assert_eq(dp_mlp_clipped_grad_ref(m, X, y, n, &clip, NULL, g, &st2), DP_OK);
        cr_assert_eq(st2.n_nonfinite, 5);
        assert_close(g, ref.sum, nt.P, 1e-4, 1e-5 * max_abs(ref.sum, nt.P), "reference");
        free(g), free(ref.sum), free(ref.norm);
    }
    free(Xf), free(yf), free(X), free(y), free(nt.theta);
    dp_mlp_destroy(m);
}

Test(clip, empty_batch_gives_zero_gradient_and_accumulate_adds) {
    uint64_t s = tu_seed();
    dp_mlp *m = make(5, 8, 0, 2, DP_ACT_RELU, 16, tu_next(&s));
    size_t P = dp_mlp_nparams(m);
    float *g = calloc(P, sizeof(float));
    dp_clip_config clip = {.mode = DP_CLIP_FLAT, .max_grad_norm = 1};
    dp_grad_stats st = {0};
    cr_assert_eq(dp_mlp_clipped_grad(m, NULL, NULL, 0, &clip, NULL, g, &st), DP_OK);
    for (size_t j = 0; j < P; j++)
        cr_assert_eq(g[j], 0.0f);
    cr_assert_eq(st.loss_sum, 0.0);
    /* accumulate: two calls on halves equal one call on the whole */
    float X[40 * 5];
    int32_t y[40];
    data(&s, 40, 5, 2, 1.0, X, y);
    float *h = calloc(P, sizeof(float));
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 40, &clip, NULL, g, NULL), DP_OK);
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 17, &clip, NULL, h, NULL), DP_OK);
    cr_assert_eq(dp_mlp_clipped_grad(m, X + 17 * 5, y + 17, 23, &clip, NULL, h, NULL), DP_OK);
    for (size_t j = 0; j < P; j++)
        cr_assert(fabsf(g[j] - h[j]) <= 1e-5f * (1 + fabsf(g[j])));
    free(g), free(h);
    dp_mlp_destroy(m);
}

Test(clip, bad_labels_and_bounds_are_refused) {
    dp_mlp *m = make(3, 4, 0, 2, DP_ACT_RELU, 4, 1);
    float X[6] = {0};
    int32_t y[2] = {0, 2};
    float g[64] = {0};
    dp_clip_config clip = {.mode = DP_CLIP_FLAT, .max_grad_norm = 1};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 2, &clip, NULL, g, NULL), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "row 1") != NULL, "%s", dp_last_error());
    y[1] = 1;
    clip.max_grad_norm = 0;
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 2, &clip, NULL, g, NULL), DP_E_RANGE);
    clip.max_grad_norm = NAN;
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 2, &clip, NULL, g, NULL), DP_E_RANGE);
    clip = (dp_clip_config){.mode = DP_CLIP_PER_LAYER, .layer_norms = {1, 0}};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 2, &clip, NULL, g, NULL), DP_E_RANGE);
    float cw[2] = {1, -1};
    clip.layer_norms[1] = 1;
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 2, &clip, cw, g, NULL), DP_E_RANGE);
    dp_mlp_destroy(m);
}

Test(clip, sensitivity_is_bound_for_flat_and_root_sum_of_squares_per_layer) {
    dp_clip_config flat = {.mode = DP_CLIP_FLAT, .max_grad_norm = 1.7};
    cr_assert_eq(dp_clip_sensitivity(&flat, 3), 1.7);
    dp_clip_config pl = {.mode = DP_CLIP_PER_LAYER, .layer_norms = {3, 4, 12}};
    cr_assert(fabs(dp_clip_sensitivity(&pl, 3) - 13.0) < 1e-12);
    cr_assert(fabs(dp_clip_sensitivity(&pl, 2) - 5.0) < 1e-12);
}

/* Called from inside the caller's own parallel region (nested parallelism
 * off: the inner team has one thread), every row must still be counted. */
Test(clip, call_inside_a_parallel_region_counts_every_row) {
    uint64_t s = tu_seed();
    const size_t n = 700, d = 8;
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    data(&s, n, d, 2, 1.0, X, y);
    omp_set_num_threads(2);
    dp_mlp *m = make(d, 16, 0, 2, DP_ACT_RELU, 256, tu_next(&s));
    size_t P = dp_mlp_nparams(m);
    float *a = calloc(P, sizeof(float)), *b = calloc(P, sizeof(float));
    dp_clip_config clip = {.mode = DP_CLIP_FLAT, .max_grad_norm = 0.5};
    dp_grad_stats sa = {0}, sb = {0};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, n, &clip, NULL, a, &sa), DP_OK);
    dp_status st = DP_OK;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        st = dp_mlp_clipped_grad(m, X, y, n, &clip, NULL, b, &sb);
    }
    cr_assert_eq(st, DP_OK);
    cr_assert(fabs(sa.loss_sum - sb.loss_sum) <= 1e-6 * sa.loss_sum, "loss %g vs %g", sa.loss_sum,
              sb.loss_sum);
    cr_assert_eq(sa.n_clipped, sb.n_clipped);
    for (size_t j = 0; j < P; j++)
        cr_assert(fabsf(a[j] - b[j]) <= 1e-5f * (1 + fabsf(a[j])));
    free(a), free(b), free(X), free(y);
    dp_mlp_destroy(m);
}
