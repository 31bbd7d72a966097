/*
 * prep_dp.c: --stats dp (prep_dp.h). Every statistic prep takes from the
 * data is post-processing of ONE Gaussian mechanism release (Dwork & Roth
 * 2014, thm A.1; accounted as the Gaussian of noise multiplier sigma_s with
 * q = 1 by accountant.h): the histograms of the c feature columns over
 * their public domains. Relies on dp.h (noise), ledger.h, prep_dist.c (sums
 * across ranks).
 *
 * Sensitivity. Under add/remove one record, one record has one cell per
 * feature column, and that cell falls in exactly one bin of its column's
 * histogram (a missing value and the dictionary's blank N/A are bins of
 * their own, a value outside a numeric domain is clamped into an edge bin).
 * So each of the c histograms changes by one in one bin, and the
 * concatenation changes by a vector of c entries +-1: L2 norm sqrt(c). Each
 * bin gets N(0, (sigma_s sqrt(c))^2), so the whole release is a Gaussian
 * mechanism of noise multiplier sigma_s. The domains (code lists, integer
 * ranges, --range, --categories) do not depend on the data, and neither
 * does which rows are kept: the population filter is a function of the
 * record itself. Rows dropped as duplicates of an earlier key are dropped
 * because of another record, which could change one more cell per column;
 * prep counts them in its report, and the PUMS key is unique by design, so
 * we accept that as the usual convention of DP on a deduplicated table.
 *
 * The noise of column j is stream j of (key, step 0): independent across
 * columns, the same on every rank (rank 0's key is broadcast), and with
 * --seed reproducible. The mode is the argmax of the noisy category counts,
 * the median the bin where the cumulative of the clamped counts crosses
 * half; both are post-processing and cost nothing more. The scaling ranges
 * stay the public domains.
 */
#include "data/prep_dp.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/ledger.h"

dp_status prep_dp_sigma(double noise, double epsilon, double delta, dp_accountant_kind kind,
                        double *sigma) {
    if (noise > 0 && epsilon > 0)
        return dp_error(DP_E_USAGE,
                        "--stats-noise and --stats-epsilon: give one of them, not both");
    if (!(epsilon > 0)) {
        if (noise == 0) noise = PREP_DP_DEFAULT_NOISE;
        if (!(noise > 0) || !isfinite(noise))
            return dp_error(DP_E_USAGE, "--stats-noise: expected a finite number > 0, got %g",
                            noise);
        *sigma = noise;
        return DP_OK;
    }
    if (!isfinite(epsilon))
        return dp_error(DP_E_USAGE, "--stats-epsilon: expected a finite number > 0");
    if (delta == 0) delta = PREP_DP_DEFAULT_DELTA;
    if (!(delta > 0 && delta < 1))
        return dp_error(DP_E_USAGE, "--stats-delta: expected a number in (0, 1), got %g", delta);
    return dp_account_sigma(kind, NULL, 0, 1.0, 1, epsilon, delta, sigma);
}

double prep_dp_sensitivity(size_t columns) {
    return sqrt((double)columns);
}

/* ---- numeric domains ---- */

static int integer_bins(const prep_feature *f) {
    return f->integer && isfinite(f->lo) && isfinite(f->hi) && f->lo == floor(f->lo) &&
           f->hi == floor(f->hi) && f->hi >= f->lo && f->hi - f->lo + 1 <= PREP_DP_MAX_INT_BINS;
}

size_t prep_dp_numeric_bins(const prep_feature *f) {
    if (integer_bins(f)) return (size_t)(f->hi - f->lo + 1);
    return f->hi > f->lo ? PREP_DP_BINS : 1;
}

size_t prep_dp_bin_of(const prep_feature *f, size_t nbins, double x) {
    double b;
    if (integer_bins(f))
        b = floor(x - f->lo + 0.5);
    else if (nbins > 1)
        b = floor((x - f->lo) / (f->hi - f->lo) * (double)nbins);
    else
        b = 0;
    if (!(b > 0)) return 0; /* below the domain (or NaN, never passed) */
    if (b >= (double)nbins) return nbins - 1;
    return (size_t)b;
}

double prep_dp_bin_value(const prep_feature *f, size_t nbins, size_t k) {
    if (integer_bins(f)) return f->lo + (double)k;
    if (nbins <= 1) return (f->lo + f->hi) / 2;
    return f->lo + ((double)k + 0.5) * (f->hi - f->lo) / (double)nbins;
}

/* ---- the mechanism and its post-processing ---- */

dp_status prep_dp_noise(const prep_dp *dp, uint64_t stream, double *hist, size_t n) {
    const double std = dp->sigma * prep_dp_sensitivity(dp->columns);
    if (!(std > 0) || !isfinite(std))
        return dp_error(DP_E_RANGE, "prep: noise std %g (expected finite and > 0)", std);
    double z[256]; /* the draws, in blocks: no allocation */
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        DP_TRY(dp_noise_draw_f64(&dp->key, 0, stream, i, z, m));
        for (size_t j = 0; j < m; j++)
            hist[i + j] += std * z[j];
    }
    return DP_OK;
}

long prep_dp_argmax(const double *h, size_t n) {
    long best = n ? 0 : -1;
    for (size_t k = 1; k < n; k++)
        if (h[k] > h[best]) best = (long)k;
    return best;
}

long prep_dp_median_bin(const double *h, size_t n) {
    double total = 0;
    for (size_t k = 0; k < n; k++)
        total += h[k] > 0 ? h[k] : 0;
    if (!(total > 0)) return -1;
    double cum = 0;
    for (size_t k = 0; k < n; k++) {
        cum += h[k] > 0 ? h[k] : 0;
        if (cum >= total / 2) return (long)k;
    }
    return (long)n - 1;
}

dp_status prep_dp_finalize(prep_feature *f, const prep_dp *dp, uint64_t stream,
                           const prep_cell *cells, size_t n, size_t stride, size_t col0,
                           dp_comm *comm) {
    f->missing_kept = 0;
    f->col0 = col0;
    const int cat = f->kind == PREP_CATEGORICAL;
    const size_t nb = cat ? f->ncat : prep_dp_numeric_bins(f);
    const size_t len = nb + 2; /* values, missing, blank N/A */
    uint64_t *count = dp_calloc(len, sizeof *count);
    double *h = dp_calloc(len, sizeof *h);
    dp_status st = prep_agree(
        comm, count && h ? DP_OK : dp_error(DP_E_NOMEM, "column %s: out of memory", f->name));
    if (st) goto done;
    for (size_t i = 0; i < n; i++) {
        prep_cell c = cells[i * stride];
        if (cat) {
            count[c.i < 0 ? nb : (size_t)c.i]++;
        } else if (isnan(c.f)) {
            count[nb]++;
        } else if (c.f == -INFINITY) {
            count[nb + 1]++;
        } else {
            count[prep_dp_bin_of(f, nb, (double)c.f)]++;
        }
    }
    if ((st = prep_sum(comm, count, len))) goto done;
    /* exact, like --stats public: a count meta.json's report marks not private */
    f->missing_kept = count[nb];
    for (size_t k = 0; k < len; k++)
        h[k] = (double)count[k];
    if ((st = prep_dp_noise(dp, stream, h, len))) goto done;
    if (cat) {
        long m = prep_dp_argmax(h, nb);
        f->impute = PREP_IMPUTE_MODE;
        f->impute_origin = PREP_FROM_DATA;
        f->impute_cat = (int)m;
        f->missing_col = 0;
        f->ncols = f->ncat;
    } else {
        long k = prep_dp_median_bin(h, nb);
        if (k >= 0) {
            f->impute = PREP_IMPUTE_MEDIAN;
            f->impute_num = prep_dp_bin_value(f, nb, (size_t)k);
            f->impute_origin = PREP_FROM_DATA;
        } else {
            prep_impute_midpoint(f);
        }
        f->ncols = 1 + (size_t)f->blank_na;
    }
done:
    dp_free(count);
    dp_free(h);
    return st;
}

dp_status prep_dp_ledger_json(const prep_dp *dp, char **json) {
    dp_ledger *l = NULL;
    DP_TRY(dp_ledger_create(dp->accountant, dp->delta, &l));
    char what[96];
    snprintf(what, sizeof what, "prep: histograms of %zu columns", dp->columns);
    dp_privacy_event ev = {1.0, dp->sigma, 1};
    dp_status st = dp_ledger_add(l, what, ev);
    if (st == DP_OK) st = dp_ledger_to_json(l, json);
    dp_ledger_destroy(l);
    return st;
}

dp_status prep_dp_setup(const dp_prep_config *c, size_t columns, dp_comm *comm, prep_dp *dp) {
    memset(dp, 0, sizeof *dp);
    dp->columns = columns;
    dp->accountant = DP_ACCOUNTANT_RDP;
    dp->delta = c->stats_delta > 0 ? c->stats_delta : PREP_DP_DEFAULT_DELTA;
    dp_status st =
        prep_dp_sigma(c->stats_noise, c->stats_epsilon, dp->delta, dp->accountant, &dp->sigma);
    if (st == DP_OK && columns == 0)
        st = dp_error(DP_E_USAGE, "--stats dp: no feature column to release");
    DP_TRY(prep_agree(comm, st));
    dp->seeded = c->stats_seeded;
    if (dp->seeded) {
        dp_key_from_seed(c->seed, "prep-stats", &dp->key);
        return DP_OK;
    }
    /* rank 0's key on every rank: the same noise, so the same statistics */
    st = prep_rank(comm) == 0 ? dp_key_from_os(&dp->key) : DP_OK;
    DP_TRY(prep_agree(comm, st));
    return prep_bcast(comm, dp->key.bytes, sizeof dp->key.bytes, 0);
}

dp_status prep_dp_check_domains(const prep_feature *feat, size_t nf) {
    for (size_t k = 0; k < nf; k++)
        if (feat[k].inferred || feat[k].origin == PREP_FROM_DATA)
            return dp_error(DP_E_USAGE,
                            "--stats dp: column %s has no public domain (expected --range "
                            "%s:LO:HI or --categories %s:V1|V2|..., or a PUMS dictionary column)",
                            feat[k].name, feat[k].name, feat[k].name);
    return DP_OK;
}

dp_status prep_dp_meta(const prep_dp *dp, const prep_feature *feat, size_t nf, cJSON *stats,
                       cJSON *meta) {
    cJSON_AddNumberToObject(stats, "noise_multiplier", dp->sigma);
    cJSON_AddNumberToObject(stats, "sensitivity", prep_dp_sensitivity(dp->columns));
    cJSON_AddNumberToObject(stats, "noise_std", dp->sigma * prep_dp_sensitivity(dp->columns));
    cJSON_AddStringToObject(stats, "mechanism",
                            "Gaussian: histograms of the feature columns over their public "
                            "domains (missing a bin of its own), N(0, (noise_multiplier * "
                            "sensitivity)^2) per bin; modes and medians are post-processing, "
                            "scaling ranges the public domains");
    cJSON_AddBoolToObject(stats, "seeded", dp->seeded);
    cJSON *cols = cJSON_AddArrayToObject(stats, "columns");
    for (size_t k = 0; k < nf; k++)
        cJSON_AddItemToArray(cols, cJSON_CreateString(feat[k].name));
    char *js = NULL;
    DP_TRY(prep_dp_ledger_json(dp, &js));
    cJSON *led = cJSON_Parse(js);
    dp_ledger_free_string(js);
    if (!led) return dp_error(DP_E_NOMEM, "meta.json: out of memory for the ledger");
    cJSON *priv = cJSON_GetObjectItemCaseSensitive(meta, "privacy");
    if (!cJSON_IsObject(priv)) priv = cJSON_AddObjectToObject(meta, "privacy");
    cJSON_AddItemToObject(priv, "ledger", led);
    cJSON_AddBoolToObject(priv, "seeded", dp->seeded);
    cJSON_AddStringToObject(priv, "not_private",
                            "splits (the label balance), the report (dropped, missing and imputed "
                            "counts) and run: exact counts, not covered by the ledger");
    return DP_OK;
}
