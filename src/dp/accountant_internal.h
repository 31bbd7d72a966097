/*
 * accountant_internal.h: what the accountant files (accountant.c, rdp.c,
 * prv.c, calibrate.c, ledger.c) share and do not export: validation of
 * privacy events with one consistent message, and numerically careful
 * log-space helpers.
 */
#ifndef DP_ACCOUNTANT_INTERNAL_H
#define DP_ACCOUNTANT_INTERNAL_H
#include <math.h>
#include "core/dp_internal.h"
#include "dpsgd/accountant.h"

/* DP_E_RANGE with "<where>: expected ..." unless q in (0, 1], sigma > 0 and
 * finite. steps = 0 is accepted (an event that releases nothing). */
dp_status acct_check_event(const char *where, size_t i, dp_privacy_event ev);
dp_status acct_check_events(const char *where, const dp_privacy_event *events, size_t n);
/* DP_E_RANGE unless delta in (0, 1). */
dp_status acct_check_delta(const char *where, double delta);

/* The RDP order grid has this many orders (dp_rdp_orders). */
enum { ACCT_RDP_ORDERS = 2 + 99 + 53 + 18 };
/* One step's RDP at every order of the grid into out[ACCT_RDP_ORDERS]
 * (+inf where it overflows). */
dp_status acct_rdp_curve(double q, double sigma, double *out);
/* Epsilon at delta of a total RDP curve (Balle et al. conversion, minimised
 * over orders, clamped at 0); -1 if infinite at every order. */
int acct_rdp_epsilon_of_curve(const double *total, double delta, double *epsilon,
                              double *best_order);

/* log(exp(a) + exp(b)) without overflow; -INFINITY is the log of 0. */
static inline double acct_logadd(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

#endif
