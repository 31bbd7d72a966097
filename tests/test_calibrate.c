/*
 * test_calibrate.c: noise calibration: round trips (eps(sigma(target)) <= target
 * and within 1%), minimality (1e-4 less noise overshoots), the published
 * census-scale table of /work/shared/research/field.md section 6 (RDP with
 * integer orders: ours may only be smaller, and by little), composition with
 * prior events (prep's noisy statistics), and the refusals.
 */
#include <criterion/criterion.h>
#include <math.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

/* 1 if this build has the PRV accountant (FFTW); tests of it are skipped otherwise. */
static int have_prv(void) {
    dp_prv_result r;
    int ok = dp_account_prv(NULL, 0, 1e-5, 0, 0, &r) == DP_OK;
    dp_clear_error();
    return ok;
}

static double eps_of(dp_accountant_kind k, const dp_privacy_event *prior, size_t n_prior,
                     dp_privacy_event run) {
    dp_privacy_event ev[8];
    for (size_t i = 0; i < n_prior; i++)
        ev[i] = prior[i];
    ev[n_prior] = run;
    double e;
    cr_assert_eq(dp_account_epsilon(k, ev, n_prior + 1, 1e-5, &e), DP_OK, "%s", dp_last_error());
    return e;
}

static void round_trip(dp_accountant_kind k, double q, uint64_t T, double target) {
    double s;
    cr_assert_eq(dp_account_sigma(k, NULL, 0, q, T, target, 1e-5, &s), DP_OK, "%s",
                 dp_last_error());
    double e = eps_of(k, NULL, 0, (dp_privacy_event){q, s, T});
    cr_assert(e <= target, "%s q=%g T=%llu: sigma %.8g spends %.8g > target %g",
              dp_accountant_name(k), q, (unsigned long long)T, s, e, target);
    cr_assert(e >= 0.99 * target, "%s q=%g T=%llu: sigma %.8g spends only %.8g of %g",
              dp_accountant_name(k), q, (unsigned long long)T, s, e, target);
    /* Minimal to the tolerance: 2e-4 less noise is over the target. */
    double e_less = eps_of(k, NULL, 0, (dp_privacy_event){q, s * (1 - 2e-4), T});
    cr_assert(e_less > target, "%s: sigma %.8g is not the smallest (%.8g at 2e-4 less)",
              dp_accountant_name(k), s, e_less);
}

Test(calibrate, rdp_round_trips_within_one_percent) {
    const double targets[] = {0.3, 1.0, 3.0, 8.0, 30.0};
    for (int i = 0; i < 5; i++) {
        round_trip(DP_ACCOUNTANT_RDP, 0.001, 10000, targets[i]);
        round_trip(DP_ACCOUNTANT_RDP, 0.05, 500, targets[i]);
        round_trip(DP_ACCOUNTANT_RDP, 1.0, 10, targets[i]);
    }
}

Test(calibrate, prv_round_trips_within_one_percent) {
    if (!have_prv()) cr_skip_test("no FFTW in this build");
    const double targets[] = {0.5, 1.0, 8.0, 50.0};
    for (int i = 0; i < 4; i++) {
        round_trip(DP_ACCOUNTANT_PRV, 0.004, 2000, targets[i]);
        round_trip(DP_ACCOUNTANT_PRV, 1.0, 10, targets[i]);
    }
}

Test(calibrate, prv_needs_no_more_noise_than_rdp) {
    if (!have_prv()) cr_skip_test("no FFTW in this build");
    double a, b;
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.001, 20000, 1.0, 1e-5, &a), DP_OK);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_PRV, NULL, 0, 0.001, 20000, 1.0, 1e-5, &b), DP_OK);
    cr_assert(b <= a, "prv sigma %g > rdp sigma %g", b, a);
}

/* field.md section 6: N = 1e6, delta = 1e-5, steps = floor(epochs N / B); values
 * rounded to two decimals and computed with integer orders 2..64 and 80..256
 * (no fractional orders), hence slightly conservative. */
Test(calibrate, census_table_of_the_field_notes) {
    static const struct {
        double B;
        uint64_t T;
        double sig[3];
    } rows[] = {
        {1024, 4882, {0.88, 0.61, 0.47}}, {1024, 19531, {0.96, 0.65, 0.50}},
        {4096, 1220, {1.05, 0.70, 0.53}}, {4096, 4882, {1.37, 0.80, 0.59}},
        {16384, 305, {1.46, 0.88, 0.62}}, {16384, 1220, {2.47, 1.14, 0.74}},
    };
    const double eps[3] = {1, 3, 8};
    for (int r = 0; r < 6; r++)
        for (int j = 0; j < 3; j++) {
            double s, theirs = rows[r].sig[j];
            cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, rows[r].B / 1e6, rows[r].T,
                                          eps[j], 1e-5, &s),
                         DP_OK);
            cr_assert(s <= theirs + 0.005 && s >= 0.95 * theirs - 0.005,
                      "B=%g T=%llu eps=%g: ours %.4f, field notes %.2f", rows[r].B,
                      (unsigned long long)rows[r].T, eps[j], s, theirs);
        }
}

Test(calibrate, prior_events_are_composed) {
    dp_privacy_event prior[2] = {{1.0, 30.0, 2}, {1.0, 50.0, 5}}; /* prep's noisy statistics */
    for (int k = 0; k < 1 + have_prv(); k++) {
        double alone, with;
        cr_assert_eq(dp_account_sigma(k, NULL, 0, 0.01, 1000, 2.0, 1e-5, &alone), DP_OK);
        cr_assert_eq(dp_account_sigma(k, prior, 2, 0.01, 1000, 2.0, 1e-5, &with), DP_OK, "%s",
                     dp_last_error());
        cr_assert(with > alone, "%s: with prior %g, alone %g", dp_accountant_name(k), with, alone);
        double e = eps_of(k, prior, 2, (dp_privacy_event){0.01, with, 1000});
        cr_assert(e <= 2.0 && e >= 1.98, "%s: total %g", dp_accountant_name(k), e);
    }
    /* A prior that alone spends the budget. */
    dp_privacy_event greedy = {1.0, 0.5, 10};
    double s;
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, &greedy, 1, 0.01, 1000, 2.0, 1e-5, &s),
                 DP_E_PRIVACY);
    cr_assert(strstr(dp_last_error(), "earlier") != NULL, "%s", dp_last_error());
}

Test(calibrate, impossible_settings_are_refused) {
    double s;
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.01, 1000, 1e-9, 1e-5, &s),
                 DP_E_PRIVACY);
    cr_assert(strstr(dp_last_error(), "unreachable") != NULL, "%s", dp_last_error());
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.0, 1000, 1, 1e-5, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 1.5, 1000, 1, 1e-5, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.1, 0, 1, 1e-5, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.1, 10, 0, 1e-5, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.1, 10, NAN, 1e-5, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.1, 10, 1, 2.0, &s), DP_E_RANGE);
    cr_assert_eq(dp_account_sigma(DP_ACCOUNTANT_RDP, NULL, 0, 0.1, 10, 1e6, 1e-5, &s), DP_E_RANGE);
}
