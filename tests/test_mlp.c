/*
 * test_mlp.c: the MLP (mlp.h): parameter layout in PyTorch nn.Sequential
 * order, nn.Linear's default initialisation, gradients against central
 * finite differences of a float64 forward pass written here, predictions
 * against the same float64 forward pass, stable softmax on huge logits, and
 * refusal of bad configurations.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "nn/nn_internal.h"
#include "testutil.h"

static dp_mlp *make(size_t d, const int *hidden, int nh, int k, dp_activation act, size_t micro) {
    dp_mlp_config cfg = {.n_in = d, .n_hidden = nh, .n_classes = k, .activation = act};
    for (int h = 0; h < nh; h++)
        cfg.hidden[h] = hidden[h];
    dp_mlp *m = NULL;
    cr_assert_eq(dp_mlp_create(&cfg, micro, &m), DP_OK, "%s", dp_last_error());
    return m;
}

/* The float64 forward pass: log-probabilities of every class of one example,
 * from parameters theta in the layout of mlp.h. */
static void logprob64(const dp_mlp *m, const double *theta, const float *x, double *lp) {
    const dp_mlp_config *cfg = dp_mlp_get_config(m);
    double a[512], z[512];
    size_t width = cfg->n_in;
    for (size_t j = 0; j < width; j++)
        a[j] = x[j];
    for (int l = 0; l < dp_mlp_nlayers(m); l++) {
        size_t wo, bo, out, in;
        dp_mlp_layer(m, l, &wo, &bo, &out, &in);
        cr_assert_eq(in, width);
        for (size_t o = 0; o < out; o++) {
            double s = theta[bo + o];
            for (size_t i = 0; i < in; i++)
                s += theta[wo + o * in + i] * a[i];
            z[o] = s;
        }
        int last = l == dp_mlp_nlayers(m) - 1;
        for (size_t o = 0; o < out; o++)
            a[o] = last                             ? z[o]
                   : cfg->activation == DP_ACT_RELU ? (z[o] > 0 ? z[o] : 0)
                                                    : tanh(z[o]);
        width = out;
    }
    double mx = a[0], s = 0;
    for (size_t j = 1; j < width; j++)
        mx = fmax(mx, a[j]);
    for (size_t j = 0; j < width; j++)
        s += exp(a[j] - mx);
    for (size_t j = 0; j < width; j++)
        lp[j] = a[j] - mx - log(s);
}

static double loss64(const dp_mlp *m, const double *theta, const float *X, const int32_t *y,
                     size_t n, const float *cw) {
    double lp[64], L = 0;
    for (size_t i = 0; i < n; i++) {
        logprob64(m, theta, X + i * dp_mlp_get_config(m)->n_in, lp);
        L -= (cw ? cw[y[i]] : 1.0) * lp[y[i]];
    }
    return L;
}

Test(mlp, layout_is_pytorch_sequential_order) {
    int h[2] = {7, 5};
    dp_mlp *m = make(4, h, 2, 3, DP_ACT_RELU, 8);
    cr_assert_eq(dp_mlp_nlayers(m), 3);
    cr_assert_eq(dp_mlp_nparams(m), 7 * 4 + 7 + 5 * 7 + 5 + 3 * 5 + 3);
    size_t wo, bo, out, in;
    dp_mlp_layer(m, 0, &wo, &bo, &out, &in);
    cr_assert(wo == 0 && bo == 28 && out == 7 && in == 4);
    dp_mlp_layer(m, 1, &wo, &bo, &out, &in);
    cr_assert(wo == 35 && bo == 70 && out == 5 && in == 7);
    dp_mlp_layer(m, 2, &wo, &bo, &out, &in);
    cr_assert(wo == 75 && bo == 90 && out == 3 && in == 5);
    for (size_t j = 0; j < dp_mlp_nparams(m); j++)
        cr_assert_eq(dp_mlp_params(m)[j], 0.0f);
    dp_mlp_destroy(m);
}

Test(mlp, init_is_uniform_within_pytorch_bound_and_reproducible) {
    uint64_t s = tu_seed();
    int h[1] = {200};
    dp_mlp *m = make(50, h, 1, 2, DP_ACT_RELU, 8), *m2 = make(50, h, 1, 2, DP_ACT_RELU, 8);
    uint64_t seed = tu_next(&s);
    dp_mlp_init(m, seed);
    dp_mlp_init(m2, seed);
    cr_assert_eq(memcmp(dp_mlp_params(m), dp_mlp_params(m2), dp_mlp_nparams(m) * sizeof(float)), 0);
    dp_mlp_init(m2, seed + 1);
    size_t same = 0;
    for (size_t j = 0; j < dp_mlp_nparams(m); j++)
        same += dp_mlp_params(m)[j] == dp_mlp_params(m2)[j];
    cr_assert_lt(same, 5);
    for (int l = 0; l < 2; l++) {
        size_t wo, bo, out, in;
        dp_mlp_layer(m, l, &wo, &bo, &out, &in);
        const double b = 1.0 / sqrt((double)in);
        double s1 = 0, s2 = 0;
        const size_t cnt = bo + out - wo;
        for (size_t j = wo; j < bo + out; j++) {
            double v = dp_mlp_params(m)[j];
            cr_assert(v >= -b && v <= b, "layer %d param %zu = %g outside +-%g", l, j, v, b);
            s1 += v, s2 += v * v;
        }
        /* U(-b, b): mean 0, variance b^2/3; 6-sigma bounds on the sample moments */
        double mean = s1 / cnt, var = s2 / cnt - mean * mean;
        cr_assert(fabs(mean) < 6 * b / sqrt(3.0 * cnt), "layer %d mean %g", l, mean);
        cr_assert(fabs(var - b * b / 3) < 6 * b * b * sqrt(4.0 / 45 / cnt), "layer %d var %g", l,
                  var);
    }
    dp_mlp_destroy(m), dp_mlp_destroy(m2);
}

/* The documented stream, rebuilt from libsodium's public XChaCha20. */
Test(mlp, init_follows_the_documented_xchacha20_stream) {
    uint64_t s = tu_seed();
    int h[1] = {37};
    dp_mlp *m = make(11, h, 1, 3, DP_ACT_TANH, 8);
    uint64_t seed = tu_next(&s);
    dp_mlp_init(m, seed);
    dp_key key;
    dp_key_from_seed(seed, "init", &key);
    const size_t P = dp_mlp_nparams(m);
    unsigned char nonce[24] = {0}, *ks = malloc(8 * P);
    memcpy(nonce + 16, "init", 4);
    cr_assert(sodium_init() >= 0);
    crypto_stream_xchacha20(ks, 8 * P, nonce, key.bytes);
    for (int l = 0; l < 2; l++) {
        size_t wo, bo, out, in;
        dp_mlp_layer(m, l, &wo, &bo, &out, &in);
        for (size_t j = wo; j < bo + out; j++) {
            uint64_t v = 0;
            for (int b = 7; b >= 0; b--)
                v = (v << 8) | ks[8 * j + (size_t)b];
            float want =
                (float)((2.0 * ((double)(v >> 11) / 9007199254740992.0) - 1.0) / sqrt((double)in));
            cr_assert_eq(dp_mlp_params(m)[j], want, "parameter %zu", j);
        }
    }
    free(ks);
    dp_mlp_destroy(m);
}

static void check_fd(dp_activation act, int weighted) {
    uint64_t s = tu_seed();
    int h[2] = {9, 6};
    const size_t d = 5, n = 12;
    const int k = 3;
    dp_mlp *m = make(d, h, 2, k, act, 5); /* micro-batches of 5: three of them */
    dp_mlp_init(m, tu_next(&s));
    const size_t P = dp_mlp_nparams(m);
    float *p = dp_mlp_params(m);
    float X[12 * 5], cw[3] = {0.7f, 1.9f, 1.1f};
    int32_t y[12];
    for (size_t i = 0; i < n * d; i++)
        X[i] = (float)tu_normal(&s);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(tu_next(&s) % 3);
    /* parameters rounded to float are the exact point where both are evaluated */
    double *theta = malloc(P * sizeof(double));
    for (size_t j = 0; j < P; j++)
        theta[j] = p[j];
    float *g = calloc(P, sizeof(float));
    dp_clip_config none = {.mode = DP_CLIP_NONE};
    dp_grad_stats st = {0};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, n, &none, weighted ? cw : NULL, g, &st), DP_OK);
    double L0 = loss64(m, theta, X, y, n, weighted ? cw : NULL);
    cr_assert(fabs(st.loss_sum - L0) < 1e-5 * fabs(L0), "loss %.9g vs %.9g", st.loss_sum, L0);
    const double eps = 1e-6;
    for (size_t j = 0; j < P; j++) {
        double keep = theta[j];
        theta[j] = keep + eps;
        double lp = loss64(m, theta, X, y, n, weighted ? cw : NULL);
        theta[j] = keep - eps;
        double lm = loss64(m, theta, X, y, n, weighted ? cw : NULL);
        theta[j] = keep;
        double fd = (lp - lm) / (2 * eps);
        cr_assert(fabs(g[j] - fd) <= 2e-4 * (1 + fabs(fd)),
                  "param %zu: gradient %.8g, finite "
                  "difference %.8g",
                  j, (double)g[j], fd);
    }
    free(theta), free(g);
    dp_mlp_destroy(m);
}

Test(mlp, gradient_matches_central_finite_differences_tanh) {
    check_fd(DP_ACT_TANH, 0);
}
Test(mlp, gradient_matches_central_finite_differences_relu) {
    check_fd(DP_ACT_RELU, 0);
}
Test(mlp, weighted_gradient_matches_finite_differences) {
    check_fd(DP_ACT_TANH, 1);
}

Test(mlp, predict_matches_float64_forward_for_any_n) {
    uint64_t s = tu_seed();
    int h[2] = {33, 17};
    const size_t d = 21, n = 1100;
    const int k = 4;
    for (int act = 0; act < 2; act++) {
        dp_mlp *m = make(d, h, 2, k, (dp_activation)act, 100);
        dp_mlp_init(m, tu_next(&s));
        float *X = malloc(n * d * sizeof(float)), *Pr = malloc(n * k * sizeof(float)),
              *Pref = malloc(n * k * sizeof(float));
        for (size_t i = 0; i < n * d; i++)
            X[i] = (float)(2 * tu_normal(&s));
        double *theta = malloc(dp_mlp_nparams(m) * sizeof(double));
        for (size_t j = 0; j < dp_mlp_nparams(m); j++)
            theta[j] = dp_mlp_params(m)[j];
        size_t ns[] = {0, 1, 99, n};
        for (int t = 0; t < 4; t++) {
            cr_assert_eq(dp_mlp_predict(m, X, ns[t], Pr), DP_OK);
            cr_assert_eq(dp_mlp_predict_ref(m, X, ns[t], Pref), DP_OK);
            for (size_t i = 0; i < ns[t]; i++) {
                double lp[4], sum = 0;
                logprob64(m, theta, X + i * d, lp);
                for (int c = 0; c < k; c++) {
                    cr_assert(fabs(Pr[i * k + c] - exp(lp[c])) < 1e-5, "row %zu class %d: %g vs %g",
                              i, c, (double)Pr[i * k + c], exp(lp[c]));
                    cr_assert(fabs(Pref[i * k + c] - exp(lp[c])) < 1e-6);
                    sum += Pr[i * k + c];
                }
                cr_assert(fabs(sum - 1) < 1e-5);
            }
        }
        free(X), free(Pr), free(Pref), free(theta);
        dp_mlp_destroy(m);
    }
}

Test(mlp, softmax_is_stable_on_huge_logits) {
    uint64_t s = tu_seed();
    int h[1] = {8};
    dp_mlp *m = make(3, h, 1, 2, DP_ACT_RELU, 16);
    dp_mlp_init(m, tu_next(&s));
    /* scale the last layer so the logits are ~1e4: naive exp would overflow */
    size_t wo, bo, out, in;
    dp_mlp_layer(m, 1, &wo, &bo, &out, &in);
    for (size_t j = wo; j < bo + out; j++)
        dp_mlp_params(m)[j] *= 3000.0f;
    float X[16 * 3], Pr[32];
    int32_t y[16];
    for (int i = 0; i < 48; i++)
        X[i] = (float)(3 * tu_normal(&s));
    for (int i = 0; i < 16; i++)
        y[i] = i % 2;
    cr_assert_eq(dp_mlp_predict(m, X, 16, Pr), DP_OK);
    for (int i = 0; i < 32; i++)
        cr_assert(isfinite(Pr[i]) && Pr[i] >= 0 && Pr[i] <= 1);
    double *theta = malloc(dp_mlp_nparams(m) * sizeof(double));
    for (size_t j = 0; j < dp_mlp_nparams(m); j++)
        theta[j] = dp_mlp_params(m)[j];
    float g[64] = {0};
    dp_grad_stats st = {0};
    dp_clip_config none = {.mode = DP_CLIP_NONE};
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, 16, &none, NULL, g, &st), DP_OK);
    cr_assert_eq(st.n_nonfinite, 0);
    double L = loss64(m, theta, X, y, 16, NULL);
    cr_assert(fabs(st.loss_sum - L) <= 1e-4 * L + 1e-3, "loss %.9g vs %.9g", st.loss_sum, L);
    free(theta);
    dp_mlp_destroy(m);
}

Test(mlp, bad_configurations_are_refused) {
    dp_mlp *m = NULL;
    dp_mlp_config cfg = {.n_in = 4, .n_hidden = 1, .hidden = {8}, .n_classes = 1};
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "n_classes") != NULL, "%s", dp_last_error());
    cfg.n_classes = 2;
    cfg.hidden[0] = 0;
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_E_RANGE);
    cfg.hidden[0] = 8;
    cfg.n_in = 0;
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_E_RANGE);
    cfg.n_in = 4;
    cfg.n_hidden = DP_MLP_MAX_LAYERS;
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_E_RANGE);
    cfg.n_hidden = 1;
    cr_assert_eq(dp_mlp_create(&cfg, 0, &m), DP_E_RANGE);
    cfg.activation = (dp_activation)7;
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_E_RANGE);
    cr_assert_null(m);
    cfg.activation = DP_ACT_TANH;
    cr_assert_eq(dp_mlp_create(&cfg, 16, &m), DP_OK);
    dp_mlp_destroy(m);
    dp_mlp_destroy(NULL);
}
