/*
 * accountant.c: the accountant front door: names of the accountants, the
 * checks every privacy event passes, and dispatch of dp_account_epsilon to
 * the RDP accountant (rdp.c) or the PRV accountant (prv.c, needs FFTW).
 */
#include <string.h>
#include "dp/accountant_internal.h"

DP_API const char *dp_accountant_name(dp_accountant_kind kind) {
    switch (kind) {
    case DP_ACCOUNTANT_RDP:
        return "rdp";
    case DP_ACCOUNTANT_PRV:
        return "prv";
    }
    return "unknown";
}

DP_API dp_status dp_accountant_parse(const char *name, dp_accountant_kind *out) {
    if (name && !strcmp(name, "rdp")) {
        *out = DP_ACCOUNTANT_RDP;
        return DP_OK;
    }
    if (name && !strcmp(name, "prv")) {
        *out = DP_ACCOUNTANT_PRV;
        return DP_OK;
    }
    return dp_error(DP_E_USAGE, "accountant: expected 'rdp' or 'prv', found '%s'",
                    name ? name : "(null)");
}

dp_status acct_check_event(const char *where, size_t i, dp_privacy_event ev) {
    if (!(ev.q > 0.0 && ev.q <= 1.0))
        return dp_error(DP_E_RANGE, "%s: event %zu: expected a sample rate q in (0, 1], found %g",
                        where, i, ev.q);
    if (!(ev.sigma > 0.0) || !isfinite(ev.sigma))
        return dp_error(DP_E_RANGE,
                        "%s: event %zu: expected a noise multiplier sigma > 0, found %g", where, i,
                        ev.sigma);
    return DP_OK;
}

dp_status acct_check_events(const char *where, const dp_privacy_event *events, size_t n) {
    if (n && !events)
        return dp_error(DP_E_USAGE, "%s: %zu events but a NULL event array", where, n);
    for (size_t i = 0; i < n; i++)
        DP_TRY(acct_check_event(where, i, events[i]));
    return DP_OK;
}

dp_status acct_check_delta(const char *where, double delta) {
    if (!(delta > 0.0 && delta < 1.0))
        return dp_error(DP_E_RANGE, "%s: expected delta in (0, 1), found %g", where, delta);
    return DP_OK;
}

DP_API dp_status dp_account_epsilon(dp_accountant_kind kind, const dp_privacy_event *events,
                                    size_t n_events, double delta, double *epsilon) {
    switch (kind) {
    case DP_ACCOUNTANT_RDP:
        return dp_account_rdp(events, n_events, delta, epsilon, NULL);
    case DP_ACCOUNTANT_PRV: {
        dp_prv_result r;
        DP_TRY(dp_account_prv(events, n_events, delta, 0.0, 0.0, &r));
        /* Both are upper bounds, so the smaller is one too. RDP wins only
         * where PRV had to coarsen its mesh (billions of steps). */
        double rdp;
        DP_TRY(dp_account_rdp(events, n_events, delta, &rdp, NULL));
        *epsilon = fmin(r.eps_upper, rdp);
        return DP_OK;
    }
    }
    return dp_error(DP_E_USAGE, "dp_account_epsilon: unknown accountant kind %d", (int)kind);
}
