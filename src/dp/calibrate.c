/*
 * calibrate.c: noise calibration: the smallest noise multiplier sigma whose
 * run (steps at rate q, composed with earlier events such as prep's noisy
 * statistics) spends at most a target epsilon, found by bracketing and a
 * safeguarded root search on log(eps) against log(sigma), where the curve is
 * nearly straight. Relies on dp_account_epsilon (rdp.c, prv.c).
 *
 * Conservative by construction (Opacus returned a sigma that overshot the
 * target until opacus#348): the search keeps a bracket [lo, hi] with
 * eps(lo) > target >= eps(hi), returns hi once hi/lo - 1 <= 1e-4, and checks
 * eps(hi) <= target once more before returning.
 */
#include "dp/accountant_internal.h"

enum { MAX_EVALS = 200 };
static const double SIGMA_MAX = 1e6, SIGMA_MIN = 1.0 / 1024.0, REL_TOL = 1e-4;

typedef struct problem {
    dp_accountant_kind kind;
    dp_privacy_event *events; /* prior events, then the run */
    size_t n;
    double delta, target;
    int evals;
} problem;

/* eps at sigma, or +inf where the accountant cannot represent the loss (a
 * sigma so small that the privacy loss is unbounded for practical purposes). */
static dp_status eps_at(problem *pb, double sigma, double *eps) {
    pb->events[pb->n - 1].sigma = sigma;
    pb->evals++;
    dp_status st = dp_account_epsilon(pb->kind, pb->events, pb->n, pb->delta, eps);
    if (st == DP_E_RANGE || st == DP_E_NUMERIC || st == DP_E_PRIVACY) {
        if (sigma >= 0.05) return st; /* not a tiny sigma: a real failure */
        dp_clear_error();
        *eps = INFINITY;
        return DP_OK;
    }
    return st;
}

/* g = log(eps / target): > 0 too little noise, <= 0 enough. */
static double gval(const problem *pb, double eps) {
    return log(fmax(eps, 1e-300)) - log(pb->target);
}

DP_API dp_status dp_account_sigma(dp_accountant_kind kind, const dp_privacy_event *prior,
                                  size_t n_prior, double q, uint64_t steps, double target_epsilon,
                                  double delta, double *sigma) {
    const char *where = "noise calibration";
    DP_TRY(acct_check_events(where, prior, n_prior));
    DP_TRY(acct_check_delta(where, delta));
    if (kind != DP_ACCOUNTANT_RDP && kind != DP_ACCOUNTANT_PRV)
        return dp_error(DP_E_USAGE, "%s: unknown accountant kind %d", where, (int)kind);
    if (!(q > 0.0 && q <= 1.0))
        return dp_error(DP_E_RANGE, "%s: expected a sample rate q in (0, 1], found %g", where, q);
    if (steps == 0) return dp_error(DP_E_RANGE, "%s: expected at least one step, found 0", where);
    if (!(target_epsilon > 0.0) || !isfinite(target_epsilon))
        return dp_error(DP_E_RANGE, "%s: expected a target epsilon > 0, found %g", where,
                        target_epsilon);

    problem pb = {kind, NULL, n_prior + 1, delta, target_epsilon, 0};
    pb.events = dp_malloc(pb.n * sizeof *pb.events);
    if (!pb.events) return dp_error(DP_E_NOMEM, "%s: %zu events", where, pb.n);
    for (size_t i = 0; i < n_prior; i++)
        pb.events[i] = prior[i];
    pb.events[n_prior] = (dp_privacy_event){.q = q, .sigma = 1.0, .steps = steps};
    dp_status st = DP_OK;
    double lo = 0, hi = 0, e_lo = 0, e_hi = 0;

    if (n_prior) {
        double e_prior;
        pb.events[n_prior].steps = 0; /* the run releases nothing: the prior alone */
        st = dp_account_epsilon(kind, pb.events, pb.n, delta, &e_prior);
        pb.events[n_prior].steps = steps;
        if (st != DP_OK) goto out;
        if (e_prior >= target_epsilon) {
            st = dp_error(DP_E_PRIVACY,
                          "%s: the earlier ledger entries alone spend epsilon %.4g, "
                          "not below the target %g",
                          where, e_prior, target_epsilon);
            goto out;
        }
    }

    /* Start: sigma 1 for RDP; for PRV the RDP answer (usually a little more
     * than needed, since PRV is tighter) is a good first point. */
    double s0 = 1.0;
    if (kind == DP_ACCOUNTANT_PRV) {
        double s_rdp;
        if (dp_account_sigma(DP_ACCOUNTANT_RDP, prior, n_prior, q, steps, target_epsilon, delta,
                             &s_rdp) == DP_OK)
            s0 = s_rdp;
        dp_clear_error();
    }
    double e0;
    if ((st = eps_at(&pb, s0, &e0)) != DP_OK) goto out;
    double f = kind == DP_ACCOUNTANT_PRV && s0 != 1.0 ? 1.05 : 2.0;
    if (e0 <= target_epsilon) { /* walk down until too little noise */
        hi = s0, e_hi = e0, lo = s0;
        for (;;) {
            lo = hi / f;
            if (lo < SIGMA_MIN) {
                st = dp_error(DP_E_RANGE,
                              "%s: target epsilon %g is met by any noise multiplier "
                              ">= %g; choose a smaller target",
                              where, target_epsilon, SIGMA_MIN);
                goto out;
            }
            if ((st = eps_at(&pb, lo, &e_lo)) != DP_OK) goto out;
            if (e_lo > target_epsilon) break;
            hi = lo, e_hi = e_lo;
            f *= f;
        }
    } else { /* walk up until enough noise */
        lo = s0, e_lo = e0;
        for (;;) {
            hi = fmin(lo * f, SIGMA_MAX);
            if ((st = eps_at(&pb, hi, &e_hi)) != DP_OK) goto out;
            if (e_hi <= target_epsilon) break;
            if (hi >= SIGMA_MAX) {
                st = dp_error(DP_E_PRIVACY,
                              "%s: target epsilon %g at delta %g is unreachable: "
                              "even noise multiplier %g spends %.4g",
                              where, target_epsilon, delta, SIGMA_MAX, e_hi);
                goto out;
            }
            lo = hi, e_lo = e_hi;
            f *= f;
        }
    }

    /* Safeguarded search in x = log sigma. Each round interpolates the root of
     * g linearly between the bracket ends (g is nearly linear in x), then
     * probes just across it, so an accurate guess closes the bracket to the
     * tolerance in two evaluations; a round that does not halve the bracket
     * is followed by a bisection. */
    double ltol = log1p(REL_TOL);
    double xl = log(lo), xh = log(hi), gl = gval(&pb, e_lo), gh = gval(&pb, e_hi);
    while (xh - xl > ltol) {
        if (pb.evals > MAX_EVALS) {
            st =
                dp_error(DP_E_INTERNAL, "%s: no convergence after %d evaluations", where, pb.evals);
            goto out;
        }
        double w0 = xh - xl;
        double x = isfinite(gl) && gl > 0 && gh <= 0 ? xl + w0 * gl / (gl - gh) : 0.5 * (xl + xh);
        double margin = 0.45 * ltol;
        if (x < xl + margin) x = xl + margin;
        if (x > xh - margin) x = xh - margin;
        for (int probe = 0; probe < 2 && xh - xl > ltol; probe++) {
            double e;
            if ((st = eps_at(&pb, exp(x), &e)) != DP_OK) goto out;
            if (e <= target_epsilon) {
                xh = x, gh = gval(&pb, e), e_hi = e;
                x -= 0.9 * ltol; /* probe just below */
                if (x <= xl) break;
            } else {
                xl = x, gl = gval(&pb, e);
                x += 0.9 * ltol; /* probe just above */
                if (x >= xh) break;
            }
        }
        if (xh - xl > 0.5 * w0 && xh - xl > ltol) { /* slow: bisect once */
            double xm = 0.5 * (xl + xh), e;
            if ((st = eps_at(&pb, exp(xm), &e)) != DP_OK) goto out;
            if (e <= target_epsilon)
                xh = xm, gh = gval(&pb, e), e_hi = e;
            else
                xl = xm, gl = gval(&pb, e);
        }
    }
    hi = exp(xh);
    /* The promise, checked: the returned sigma meets the target. */
    double e_check;
    if ((st = eps_at(&pb, hi, &e_check)) != DP_OK) goto out;
    if (!(e_check <= target_epsilon)) {
        st = dp_error(DP_E_INTERNAL, "%s: sigma %.6g spends epsilon %.6g > target %g (bug)", where,
                      hi, e_check, target_epsilon);
        goto out;
    }
    *sigma = hi;
out:
    dp_free(pb.events);
    return st;
}
