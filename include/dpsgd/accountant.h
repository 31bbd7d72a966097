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

#endif
