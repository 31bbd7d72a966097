/*
 * test_prep_dp.c: prep --stats dp (src/data/prep_dp.c): the noise of the
 * histogram release has variance sigma_s^2 c per bin (chi-square interval),
 * the mode and median are the exact ones when the noise is negligible
 * (against sorting), the ledger in meta.json is read back by
 * dp_ledger_from_json with the epsilon of (q = 1, sigma_s, 1 step), and the
 * CLI: exact statistics reproduced, domains required, --seed reproducible,
 * and training composes prep's release with its own steps.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_dp.h"
#include "dpsgd/ledger.h"
#include "testutil.h"

static prep_dp make_dp(uint64_t seed, double sigma, size_t c) {
    prep_dp dp;
    memset(&dp, 0, sizeof dp);
    dp_key_from_seed(seed, "prep-stats", &dp.key);
    dp.seeded = 1;
    dp.sigma = sigma;
    dp.columns = c;
    dp.delta = 1e-5;
    dp.accountant = DP_ACCOUNTANT_RDP;
    return dp;
}

Test(prep_dp, noise_variance_is_sigma_squared_times_columns) {
    uint64_t seed = tu_seed();
    const size_t n = 20000, c = 9;
    const double sigma = 2.5;
    prep_dp dp = make_dp(seed, sigma, c);
    double *h = calloc(n, sizeof *h);
    for (uint64_t stream = 0; stream < 3; stream++) {
        memset(h, 0, n * sizeof *h);
        cr_assert_eq(prep_dp_noise(&dp, stream, h, n), DP_OK, "%s", dp_last_error());
        double ss = 0, sum = 0;
        for (size_t i = 0; i < n; i++) ss += h[i] * h[i], sum += h[i];
        /* ss / (sigma^2 c) ~ chi-square(n): mean n, sd sqrt(2n); 6 sd both ways
         * (sqrt(c) missing or doubled is off by a factor 9 or 1/9) */
        double chi = ss / (sigma * sigma * (double)c);
        cr_assert_lt(fabs(chi - (double)n), 6 * sqrt(2.0 * (double)n), "chi=%g n=%zu", chi, n);
        cr_assert_lt(fabs(sum / (double)n), 6 * sigma * 3 / sqrt((double)n), "mean %g", sum / n);
    }
    /* different streams (columns) draw different noise */
    double a[8] = {0}, b[8] = {0};
    cr_assert_eq(prep_dp_noise(&dp, 0, a, 8), DP_OK);
    cr_assert_eq(prep_dp_noise(&dp, 1, b, 8), DP_OK);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    free(h);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

Test(prep_dp, negligible_noise_gives_the_exact_median_and_mode) {
    uint64_t seed = tu_seed(), s = seed;
    prep_dp dp = make_dp(seed, 1e-9, 3);
    /* numeric, integer domain 0..99: one bin per value */
    prep_feature f;
    memset(&f, 0, sizeof f);
    f.name = "X";
    f.kind = PREP_NUMERIC;
    f.integer = 1;
    f.lo = 0, f.hi = 99;
    const size_t n = 1001; /* odd: the median is one value */
    prep_cell *cells = calloc(n, sizeof *cells);
    float *sorted = calloc(n, sizeof *sorted);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (tu_uniform(&s) < 0.1) {
            cells[i].f = NAN;
            continue;
        }
        cells[i].f = (float)floor(99 * tu_uniform(&s) * tu_uniform(&s) + 0.5);
        sorted[m++] = cells[i].f;
    }
    if (m % 2 == 0) { /* make the count of values odd: flip the last cell */
        if (isnan(cells[n - 1].f))
            cells[n - 1].f = 42, sorted[m++] = 42;
        else
            cells[n - 1].f = NAN, m--; /* sorted[m - 1] was its value */
    }
    qsort(sorted, m, sizeof *sorted, cmp_f);
    cr_assert_eq(prep_dp_finalize(&f, &dp, 0, cells, n, 1, 0, NULL), DP_OK, "%s", dp_last_error());
    cr_assert_eq(f.impute, PREP_IMPUTE_MEDIAN);
    cr_assert_eq(f.impute_num, (double)sorted[m / 2], "dp %g exact %g", f.impute_num,
                 (double)sorted[m / 2]);
    /* categorical with 7 categories: the mode by counting */
    prep_feature g;
    memset(&g, 0, sizeof g);
    g.name = "C";
    g.kind = PREP_CATEGORICAL;
    g.ncat = 7;
    size_t cnt[7] = {0};
    for (size_t i = 0; i < n; i++) {
        int k = (int)(7 * tu_uniform(&s) * tu_uniform(&s));
        cells[i].i = tu_uniform(&s) < 0.05 ? -1 : k;
        if (cells[i].i >= 0) cnt[k]++;
    }
    size_t best = 0;
    for (size_t k = 1; k < 7; k++)
        if (cnt[k] > cnt[best]) best = k;
    cr_assert_eq(prep_dp_finalize(&g, &dp, 1, cells, n, 1, 0, NULL), DP_OK);
    cr_assert_eq(g.impute, PREP_IMPUTE_MODE);
    cr_assert_eq(g.impute_cat, (int)best);
    cr_assert_eq(g.missing_col, 0);
    cr_assert_eq(g.ncols, 7);
    free(cells);
    free(sorted);
}

Test(prep_dp, median_bin_clamps_negative_counts_and_wide_domains_use_bin_centres) {
    double h[5] = {-50, 3, 1, -2, 4}; /* clamped: 0 3 1 0 4, total 8, half 4 */
    cr_assert_eq(prep_dp_median_bin(h, 5), 2);
    double z[3] = {-1, -2, 0};
    cr_assert_eq(prep_dp_median_bin(z, 3), -1);
    cr_assert_eq(prep_dp_argmax(h, 5), 4);
    prep_feature f;
    memset(&f, 0, sizeof f);
    f.lo = -10, f.hi = 1e6; /* not integer: PREP_DP_BINS equal bins */
    size_t nb = prep_dp_numeric_bins(&f);
    cr_assert_eq(nb, PREP_DP_BINS);
    double w = (f.hi - f.lo) / nb;
    cr_assert_eq(prep_dp_bin_of(&f, nb, -100), 0);
    cr_assert_eq(prep_dp_bin_of(&f, nb, 2e6), nb - 1);
    cr_assert_eq(prep_dp_bin_of(&f, nb, f.lo + 3.5 * w), 3);
    cr_assert_float_eq(prep_dp_bin_value(&f, nb, 3), f.lo + 3.5 * w, 1e-6);
}

Test(prep_dp, ledger_json_has_the_epsilon_of_one_gaussian_release) {
    prep_dp dp = make_dp(1, 3.0, 12);
    char *js = NULL;
    cr_assert_eq(prep_dp_ledger_json(&dp, &js), DP_OK, "%s", dp_last_error());
    dp_ledger *l = NULL;
    cr_assert_eq(dp_ledger_from_json(js, &l), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_ledger_count(l), 1);
    const char *what;
    dp_privacy_event ev;
    cr_assert_eq(dp_ledger_entry(l, 0, &what, &ev), DP_OK);
    cr_assert_str_eq(what, "prep: histograms of 12 columns");
    cr_assert_eq(ev.q, 1.0);
    cr_assert_eq(ev.sigma, 3.0);
    cr_assert_eq(ev.steps, 1);
    double e1, e2;
    dp_privacy_event ref = {1.0, 3.0, 1};
    cr_assert_eq(dp_ledger_epsilon(l, &e1), DP_OK);
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ref, 1, 1e-5, &e2), DP_OK);
    cr_assert_float_eq(e1, e2, 1e-12 * e2);
    dp_ledger_destroy(l);
    dp_ledger_free_string(js);
}

Test(prep_dp, epsilon_calibration_reaches_the_target_and_options_conflict) {
    double sigma;
    cr_assert_eq(prep_dp_sigma(0, 1.0, 1e-5, DP_ACCOUNTANT_RDP, &sigma), DP_OK, "%s",
                 dp_last_error());
    dp_privacy_event ev = {1.0, sigma, 1};
    double eps;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1e-5, &eps), DP_OK);
    cr_assert_leq(eps, 1.0);
    cr_assert_gt(eps, 0.99);
    cr_assert_eq(prep_dp_sigma(4, 0, 1e-5, DP_ACCOUNTANT_RDP, &sigma), DP_OK);
    cr_assert_eq(sigma, 4);
    cr_assert_eq(prep_dp_sigma(4, 1, 1e-5, DP_ACCOUNTANT_RDP, &sigma), DP_E_USAGE);
    cr_assert_eq(prep_dp_sigma(0, 0, 1e-5, DP_ACCOUNTANT_RDP, &sigma), DP_OK);
    cr_assert_eq(sigma, PREP_DP_DEFAULT_NOISE);
}
