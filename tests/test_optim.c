/*
 * test_optim.c: the optimizers and learning-rate schedules against updates
 * computed by hand in float64 (textbook formulas, independent of optim.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include "core/dp_internal.h"
#include "testutil.h"
#include "train/train_internal.h"

#define N 257

static void fill(float *a, size_t n, uint64_t *r, double scale) {
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(scale * tu_normal(r));
}

/* Parameters are O(1) float32 values (ulp ~1e-7) updated by steps of ~0.01-0.1,
 * so a result that lands near zero carries an absolute rounding error of the
 * operands' size: the tolerance is relative to max(|want|, 1), which still
 * catches any wrong formula (an error of one update is >= 1e-3). */
static void close_to(const float *got, const double *want, size_t n, double rel) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= rel * fmax(fabs(want[i]), 1.0),
                  "i=%zu got %.9g want %.9g", i, got[i], want[i]);
}

Test(optim, sgd_matches_hand_update_in_double) {
    uint64_t r = tu_seed();
    float p[N], g[N];
    double ref[N];
    fill(p, N, &r, 1);
    for (int i = 0; i < N; i++)
        ref[i] = p[i];
    dp_optim o;
    cr_assert_eq(optim_init(&o, DP_OPT_SGD, N, 0, 0, 0, 0), DP_OK);
    for (int s = 0; s < 4; s++) {
        fill(g, N, &r, 0.5);
        double lr = 0.05 * (s + 1);
        for (int i = 0; i < N; i++)
            ref[i] -= lr * g[i];
        optim_step(&o, p, g, lr);
    }
    close_to(p, ref, N, 1e-5);
    cr_assert_eq(optim_state_len(&o), 0);
    optim_free(&o);
}

Test(optim, momentum_matches_pytorch_definition_in_double) {
    uint64_t r = tu_seed();
    float p[N], g[N];
    double ref[N], v[N] = {0};
    fill(p, N, &r, 1);
    for (int i = 0; i < N; i++)
        ref[i] = p[i];
    dp_optim o;
    cr_assert_eq(optim_init(&o, DP_OPT_MOMENTUM, N, 0.9, 0, 0, 0), DP_OK);
    for (int s = 0; s < 6; s++) {
        fill(g, N, &r, 0.5);
        for (int i = 0; i < N; i++) {
            v[i] = s == 0 ? g[i] : 0.9 * v[i] + g[i];
            ref[i] -= 0.1 * v[i];
        }
        optim_step(&o, p, g, 0.1);
    }
    close_to(p, ref, N, 1e-5);
    optim_free(&o);
}

Test(optim, adam_matches_textbook_bias_corrected_update_in_double) {
    uint64_t r = tu_seed();
    float p[N], g[N];
    double ref[N], m[N] = {0}, v[N] = {0};
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 0.01;
    fill(p, N, &r, 1);
    for (int i = 0; i < N; i++)
        ref[i] = p[i];
    dp_optim o;
    cr_assert_eq(optim_init(&o, DP_OPT_ADAM, N, 0, b1, b2, eps), DP_OK);
    cr_assert_eq(optim_state_len(&o), 2 * N);
    for (int t = 1; t <= 7; t++) {
        fill(g, N, &r, 0.3);
        for (int i = 0; i < N; i++) {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
            double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
            ref[i] -= lr * mh / (sqrt(vh) + eps);
        }
        optim_step(&o, p, g, lr);
    }
    close_to(p, ref, N, 1e-4);
    cr_assert_eq(o.t, 7);
    optim_free(&o);
}

Test(optim, first_adam_step_moves_each_coordinate_by_lr) {
    /* After one step m_hat = g and v_hat = g^2: the update is lr * sign(g). */
    float p[3] = {0, 0, 0}, g[3] = {2.0f, -0.5f, 1e-3f};
    dp_optim o;
    optim_init(&o, DP_OPT_ADAM, 3, 0, 0.9, 0.999, 1e-8);
    optim_step(&o, p, g, 0.01);
    cr_assert_float_eq(p[0], -0.01f, 1e-6);
    cr_assert_float_eq(p[1], 0.01f, 1e-6);
    cr_assert_float_eq(p[2], -0.01f, 1e-5);
    optim_free(&o);
}

Test(optim, cosine_schedule_halves_at_midpoint_and_ends_at_zero) {
    cr_assert_float_eq(lr_at(DP_LR_COSINE, 0.2, 0, 100), 0.2, 1e-12);
    cr_assert_float_eq(lr_at(DP_LR_COSINE, 0.2, 50, 100), 0.1, 1e-12);
    cr_assert_float_eq(lr_at(DP_LR_COSINE, 0.2, 25, 100), 0.1 * (1 + cos(M_PI / 4)), 1e-12);
    cr_assert_float_eq(lr_at(DP_LR_COSINE, 0.2, 100, 100), 0.0, 1e-12);
    cr_assert_float_eq(lr_at(DP_LR_CONSTANT, 0.2, 77, 100), 0.2, 1e-12);
}

Test(optim, names_round_trip_and_unknown_names_are_refused) {
    for (int k = 0; k < 3; k++) {
        dp_optimizer_kind back;
        cr_assert_eq(dp_optimizer_parse(dp_optimizer_name((dp_optimizer_kind)k), &back), DP_OK);
        cr_assert_eq((int)back, k);
    }
    dp_optimizer_kind o;
    cr_assert_eq(dp_optimizer_parse("adagrad", &o), DP_E_USAGE);
    cr_assert(strstr(dp_last_error(), "adagrad"));
    dp_lr_schedule s;
    cr_assert_eq(dp_lr_schedule_parse("cosine", &s), DP_OK);
    cr_assert_eq(s, DP_LR_COSINE);
    cr_assert_eq(dp_lr_schedule_parse("step", &s), DP_E_USAGE);
}
