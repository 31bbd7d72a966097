/*
 * accountant.h: privacy accounting for DP-SGD (DESIGN.md algorithm 4).
 * RDP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang
 * 2019; integer and fractional orders) with the improved RDP-to-(eps, delta)
 * conversion (Balle et al. 2020), and the PRV accountant (Gopi, Lee,
 * Wutschitz 2021; needs FFTW). Calibration finds sigma for a target epsilon.
 *
 * A mechanism run is a list of events, each `steps` compositions of the
 * Gaussian mechanism with noise multiplier `sigma` (std / L2 sensitivity)
 * on a Poisson sample of rate `q` (q = 1: no subsampling, e.g. a noisy
 * statistic of prep). Events compose.
 */
#ifndef DPSGD_ACCOUNTANT_H
#define DPSGD_ACCOUNTANT_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef enum dp_accountant_kind { DP_ACCOUNTANT_RDP = 0, DP_ACCOUNTANT_PRV = 1 } dp_accountant_kind;

typedef struct dp_privacy_event {
    double q;       /* Poisson sampling rate in (0, 1] */
    double sigma;   /* noise multiplier > 0 */
    uint64_t steps; /* number of compositions */
} dp_privacy_event;

/* "rdp" / "prv" <-> kind. */
DP_API const char *dp_accountant_name(dp_accountant_kind kind);
DP_API dp_status dp_accountant_parse(const char *name, dp_accountant_kind *out);

/* epsilon of the composition of the events at `delta` (add/remove-one
 * neighbours). DP_E_UNSUPPORTED for PRV in a build without FFTW. */
DP_API dp_status dp_account_epsilon(dp_accountant_kind kind, const dp_privacy_event *events,
                                    size_t n_events, double delta, double *epsilon);

/* The smallest noise multiplier (to a relative tolerance of 1e-4, rounded
 * up: conservative) such that `steps` steps at rate q, composed with the
 * `prior` events (may be NULL/0), spend at most target_epsilon at delta.
 * DP_E_PRIVACY when no sigma <= 1e6 reaches the target. */
DP_API dp_status dp_account_sigma(dp_accountant_kind kind, const dp_privacy_event *prior,
                                  size_t n_prior, double q, uint64_t steps, double target_epsilon,
                                  double delta, double *sigma);

/* RDP of the subsampled Gaussian at one order alpha > 1 (for tests and the
 * CLI's detail output): one step, rate q, multiplier sigma. */
DP_API dp_status dp_rdp_subsampled_gaussian(double q, double sigma, double alpha, double *rdp);

/* ---- details (additive to the contract above) ---- */

/* The RDP accountant with its detail: epsilon as dp_account_epsilon(RDP) and
 * the order alpha at which the minimum over the order grid was attained
 * (`best_order` may be NULL). */
DP_API dp_status dp_account_rdp(const dp_privacy_event *events, size_t n_events, double delta,
                                double *epsilon, double *best_order);

/* The orders of the RDP grid, ascending (1.02 ... 1024); *n gets the count. */
DP_API const double *dp_rdp_orders(size_t *n);

/* What the PRV accountant computed. The true epsilon of the composition lies
 * in [eps_lower, eps_upper] (up to the floating-point error of the FFT, which
 * is estimated and charged into the delta budget); eps_estimate is the
 * epsilon of the discretised composition without error terms. dp_account_epsilon
 * reports eps_upper, or the RDP epsilon where that is smaller (both are upper
 * bounds; RDP wins only where PRV had to coarsen its mesh). */
typedef struct dp_prv_result {
    double eps_lower, eps_estimate, eps_upper;
    double eps_error;   /* the discretisation allowance t: eps_upper = estimate(delta') + t */
    double delta_error; /* the part of delta set aside for tails and discretisation */
    double mesh;        /* grid step h of the privacy loss */
    size_t points;      /* FFT length */
} dp_prv_result;

/* The PRV accountant with its detail. eps_error: the allowance for the
 * discretisation of the privacy loss (0: the default, 0.01 for epsilon in
 * [1, 10], 1% of epsilon below 1 but at least 1e-3, 0.1% of epsilon above 10);
 * delta_error: 0 for delta/1000. DP_E_UNSUPPORTED in a build without FFTW. */
DP_API dp_status dp_account_prv(const dp_privacy_event *events, size_t n_events, double delta,
                                double eps_error, double delta_error, dp_prv_result *out);

#endif
