/*
 * prep_dp.h: --stats dp, the statistics of prep as post-processing of one
 * Gaussian mechanism (prep_dp.c; DESIGN.md "Privacy of preprocessing"):
 * the histograms of the c feature columns over their public domains, each
 * bin plus N(0, (sigma_s sqrt(c))^2). Inside the library only.
 */
#ifndef DP_PREP_DP_H
#define DP_PREP_DP_H
#include <stddef.h>
#include <stdint.h>
#include "data/prep_internal.h"
#include "dpsgd/accountant.h"
#include "dpsgd/dp.h"

/* Numeric columns whose integer domain holds at most this many values get
 * one bin per integer; wider or non-integer ones PREP_DP_BINS equal bins. */
#define PREP_DP_MAX_INT_BINS 1024
#define PREP_DP_BINS 256
#define PREP_DP_DEFAULT_NOISE 5.0
#define PREP_DP_DEFAULT_DELTA 1e-5

typedef struct prep_dp {
    dp_key key;     /* of the noise: the same on every rank */
    int seeded;     /* key from --seed (reproducible) rather than the OS */
    double sigma;   /* noise multiplier sigma_s (std / L2 sensitivity) */
    size_t columns; /* c: the histograms released together */
    double delta;   /* the ledger's delta */
    dp_accountant_kind accountant;
} prep_dp;

/* sigma_s: calibrated for (epsilon, delta) with q = 1, one step, when
 * epsilon > 0; else noise (0: PREP_DP_DEFAULT_NOISE). delta 0: the default.
 * DP_E_USAGE for both given, DP_E_PRIVACY when no sigma reaches the target. */
dp_status prep_dp_sigma(double noise, double epsilon, double delta, dp_accountant_kind kind,
                        double *sigma);
/* The L2 sensitivity of the concatenated histograms: sqrt(c). */
double prep_dp_sensitivity(size_t columns);

/* Bins of a numeric feature's value domain [lo, hi] (integer bins or
 * PREP_DP_BINS), the bin of a finite value, and the value a bin stands for
 * (the integer, or the bin's centre). The histogram has two more bins after
 * these: missing (NaN) and the dictionary's blank N/A (-inf). */
size_t prep_dp_numeric_bins(const prep_feature *f);
size_t prep_dp_bin_of(const prep_feature *f, size_t nbins, double x);
double prep_dp_bin_value(const prep_feature *f, size_t nbins, size_t k);

/* ADD N(0, (sigma sqrt(c))^2) to hist[0..n): draws of dp_noise_draw_f64 for
 * (key, step 0, stream) so each column has its own stream. */
dp_status prep_dp_noise(const prep_dp *dp, uint64_t stream, double *hist, size_t n);
/* Post-processing of a noisy histogram: the argmax of h[0..n) (-1 for
 * n = 0), and the bin where the cumulative of max(h, 0) first reaches half
 * its total (-1 when the total is 0). */
long prep_dp_argmax(const double *h, size_t n);
long prep_dp_median_bin(const double *h, size_t n);

/* The imputation of feature f (the stream-th of the c columns) from its
 * noisy histogram over the kept cells of every rank (collective over comm):
 * categorical: the noisy mode; numeric: the noisy median (the public
 * midpoint when the noisy total is not positive). Sets missing_kept,
 * impute*, missing_col and ncols as prep_feature_finalize does. */
dp_status prep_dp_finalize(prep_feature *f, const prep_dp *dp, uint64_t stream,
                           const prep_cell *cells, size_t n, size_t stride, size_t col0,
                           dp_comm *comm);

/* The ledger of the release, as dp_ledger_to_json writes it: one entry
 * "prep: histograms of c columns", q = 1, sigma_s, one step. Free with
 * dp_ledger_free_string. */
dp_status prep_dp_ledger_json(const prep_dp *dp, char **json);

/* The release's parameters from the config, for c feature columns
 * (collective over comm): sigma_s, delta, and the key (from --seed, or rank
 * 0's OS key broadcast). */
dp_status prep_dp_setup(const dp_prep_config *c, size_t columns, dp_comm *comm, prep_dp *dp);
/* DP_E_USAGE (one line) for a feature with no public domain: a column
 * outside the dictionary without --range or --categories. */
dp_status prep_dp_check_domains(const prep_feature *feat, size_t nf);
/* meta.json: noise_multiplier, sensitivity, seeded, columns ... added to the
 * "statistics" object, and {"ledger": <ledger JSON>, "seeded"} to the
 * "privacy" object of meta (created if absent), as the trainer reads it. */
dp_status prep_dp_meta(const prep_dp *dp, const prep_feature *feat, size_t nf, cJSON *stats,
                       cJSON *meta);

#endif
