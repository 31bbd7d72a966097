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
        for (size_t i = 0; i < n; i++)
            ss += h[i] * h[i], sum += h[i];
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

/* ---- through the CLI ---- */

#include <cjson/cJSON.h>

static cJSON *load_json(const char *dir, const char *file) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *t = tu_read_file(p, NULL);
    cr_assert(t, "cannot read %s", p);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cr_assert(j, "%s is not JSON", p);
    return j;
}

static const cJSON *at(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(v, "no \"%s\"", k);
    return v;
}

/* A synthetic PUMS file of `rows` rows in a fresh directory. */
static char *synth(size_t rows, uint64_t seed) {
    char *dir = tu_tempdir();
    char *err = NULL;
    int rc = tu_run(NULL, &err, "synth --rows %zu --seed %llu -o %s/p.csv", rows,
                    (unsigned long long)seed, dir);
    cr_assert_eq(rc, 0, "synth: %s", err);
    free(err);
    return dir;
}

static void prep_ok(const char *dir, const char *out, const char *opts) {
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep %s/p.csv -o %s/%s --quiet %s", dir, dir, out, opts);
    cr_assert_eq(rc, 0, "prep %s: %s", opts, err);
    free(err);
}

Test(prep_dp, negligible_noise_reproduces_the_exact_modes_and_medians) {
    uint64_t seed = tu_seed();
    char *dir = synth(20000, seed);
    prep_ok(dir, "ex", "--stats exact");
    prep_ok(dir, "dp", "--stats dp --stats-noise 1e-6 --seed 3");
    char p[4096];
    snprintf(p, sizeof p, "%s/ex", dir);
    cJSON *ex = load_json(p, "meta.json");
    snprintf(p, sizeof p, "%s/dp", dir);
    cJSON *dp = load_json(p, "meta.json");
    const cJSON *fe = at(ex, "features"), *fd = at(dp, "features");
    int c = cJSON_GetArraySize(fe);
    cr_assert_eq(cJSON_GetArraySize(fd), c);
    for (int k = 0; k < c; k++) {
        const cJSON *ie = at(cJSON_GetArrayItem(fe, k), "impute"),
                    *id = at(cJSON_GetArrayItem(fd, k), "impute");
        const char *name = at(cJSON_GetArrayItem(fe, k), "name")->valuestring;
        cr_assert_str_eq(at(ie, "method")->valuestring, at(id, "method")->valuestring, "%s", name);
        const cJSON *ve = at(ie, "value"), *vd = at(id, "value");
        if (cJSON_IsString(ve)) {
            cr_assert_str_eq(ve->valuestring, vd->valuestring, "mode of %s", name);
        } else { /* an integer column: the exact median may be a half between two */
            cr_assert_leq(fabs(ve->valuedouble - vd->valuedouble), 0.5, "median of %s: %g vs %g",
                          name, ve->valuedouble, vd->valuedouble);
        }
    }
    const cJSON *st = at(dp, "statistics");
    cr_assert_str_eq(at(st, "source")->valuestring, "dp");
    cr_assert(cJSON_IsTrue(at(st, "private")));
    cr_assert_eq(cJSON_GetArraySize(at(st, "columns")), c);
    cr_assert_float_eq(at(st, "sensitivity")->valuedouble, sqrt((double)c), 1e-12);
    cr_assert_float_eq(at(st, "noise_multiplier")->valuedouble, 1e-6, 1e-18);
    cr_assert(cJSON_IsTrue(at(st, "seeded")));
    cJSON_Delete(ex);
    cJSON_Delete(dp);
    tu_rmrf(dir);
    free(dir);
}

Test(prep_dp, meta_ledger_has_the_release_and_training_composes_it) {
    uint64_t seed = tu_seed();
    char *dir = synth(4000, seed);
    prep_ok(dir, "ds", "--stats dp --stats-noise 3 --stats-delta 1e-6 --seed 1");
    char p[4096];
    snprintf(p, sizeof p, "%s/ds", dir);
    cJSON *meta = load_json(p, "meta.json");
    const int c = cJSON_GetArraySize(at(meta, "features"));
    char *lj = cJSON_PrintUnformatted(at(at(meta, "privacy"), "ledger"));
    dp_ledger *l = NULL;
    cr_assert_eq(dp_ledger_from_json(lj, &l), DP_OK, "%s", dp_last_error());
    free(lj);
    cr_assert_eq(dp_ledger_count(l), 1);
    cr_assert_eq(dp_ledger_delta(l), 1e-6);
    const char *what;
    dp_privacy_event ev, ref = {1.0, 3.0, 1};
    cr_assert_eq(dp_ledger_entry(l, 0, &what, &ev), DP_OK);
    char want[64];
    snprintf(want, sizeof want, "prep: histograms of %d columns", c);
    cr_assert_str_eq(what, want);
    cr_assert(ev.q == 1 && ev.sigma == 3 && ev.steps == 1);
    double e1, e2;
    cr_assert_eq(dp_ledger_epsilon(l, &e1), DP_OK);
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ref, 1, 1e-6, &e2), DP_OK);
    cr_assert_float_eq(e1, e2, 1e-12 * e2);
    dp_ledger_destroy(l);
    cJSON_Delete(meta);

    /* training adds its steps to prep's release */
    char *err = NULL;
    int rc = tu_run(NULL, &err,
                    "train %s/ds -o %s/run --hidden 8 --epochs 1 --batch-size 200 "
                    "--noise-multiplier 1.1 --target-delta 1e-5 --seed 2 --quiet",
                    dir, dir);
    cr_assert_eq(rc, 0, "train: %s", err);
    free(err);
    snprintf(p, sizeof p, "%s/run", dir);
    cJSON *pj = load_json(p, "privacy.json");
    const cJSON *entries = at(at(pj, "ledger"), "entries");
    cr_assert_eq(cJSON_GetArraySize(entries), 2);
    dp_privacy_event evs[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(entries, i);
        evs[i].q = at(e, "sample_rate")->valuedouble;
        evs[i].sigma = at(e, "noise_multiplier")->valuedouble;
        evs[i].steps = (uint64_t)at(e, "steps")->valuedouble;
    }
    cr_assert_str_eq(at(cJSON_GetArrayItem(entries, 0), "what")->valuestring, want);
    cr_assert(evs[0].q == 1 && evs[0].sigma == 3 && evs[0].steps == 1);
    cr_assert_eq(evs[1].sigma, 1.1);
    cr_assert_gt(evs[1].steps, 0);
    double both, train_only;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, evs, 2, 1e-5, &both), DP_OK);
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, evs + 1, 1, 1e-5, &train_only), DP_OK);
    double eps = at(pj, "epsilon")->valuedouble;
    cr_assert_float_eq(eps, both, 1e-9 * both, "privacy.json %g, composition %g", eps, both);
    cr_assert_gt(eps, train_only);
    cJSON_Delete(pj);
    tu_rmrf(dir);
    free(dir);
}

Test(prep_dp, a_column_without_a_public_domain_is_refused_in_one_line) {
    char *dir = tu_tempdir(), p[4096];
    snprintf(p, sizeof p, "%s/p.csv", dir);
    const char *csv = "y,a,b\n1,3,x\n0,7,y\n1,2,x\n0,9,y\n1,4,x\n0,1,x\n";
    cr_assert_eq(tu_write_file(p, csv, strlen(csv)), 0);
    char *err = NULL;
    int rc = tu_run(NULL, &err,
                    "prep %s -o %s/ds --target y --positive 1 --features a,b --dictionary none "
                    "--stats dp --split 0.5,0.25,0.25",
                    p, dir);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "no public domain") && strstr(err, "a"), "%s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    free(err);
    snprintf(p, sizeof p, "%s/ds", dir);
    cr_assert(!tu_exists(p), "nothing written");
    /* with public domains it runs */
    snprintf(p, sizeof p, "%s/p.csv", dir);
    rc = tu_run(NULL, &err,
                "prep %s -o %s/ds --target y --positive 1 --features a,b --dictionary none "
                "--range a:0:10 --categories 'b:x|y' --stats dp --split 0.5,0.25,0.25 --quiet",
                p, dir);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    tu_rmrf(dir);
    free(dir);
}

Test(prep_dp, the_seed_reproduces_the_noise_and_the_os_key_does_not_claim_it) {
    uint64_t seed = tu_seed();
    char *dir = synth(3000, seed);
    /* large noise, so different keys give different statistics */
    prep_ok(dir, "a", "--stats dp --stats-noise 300 --seed 9");
    prep_ok(dir, "b", "--stats dp --stats-noise 300 --seed 9");
    prep_ok(dir, "c", "--stats dp --stats-noise 300");
    char p[4096];
    cJSON *m[3];
    char *feat[3];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%c", dir, "abc"[i]);
        m[i] = load_json(p, "meta.json");
        feat[i] = cJSON_PrintUnformatted(at(m[i], "features"));
    }
    cr_assert_str_eq(feat[0], feat[1], "the same seed, the same statistics");
    cr_assert(cJSON_IsTrue(at(at(m[0], "statistics"), "seeded")));
    cr_assert(cJSON_IsFalse(at(at(m[2], "statistics"), "seeded")));
    cr_assert(cJSON_IsFalse(at(at(m[2], "privacy"), "seeded")));
    for (int i = 0; i < 3; i++) {
        free(feat[i]);
        cJSON_Delete(m[i]);
    }
    tu_rmrf(dir);
    free(dir);
}

Test(prep_dp, stats_options_need_stats_dp) {
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep x.csv -o y --stats-noise 2");
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "need --stats dp"), "%s", err);
    free(err);
    rc = tu_run(NULL, &err, "prep x.csv -o y --stats dp --stats-noise 2 --stats-epsilon 1");
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "not both"), "%s", err);
    free(err);
}
