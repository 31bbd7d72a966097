/*
 * rdp.c: the Rényi-DP accountant of the Poisson-subsampled Gaussian mechanism
 * (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
 * Gaussian Mechanism", arXiv 1908.10530, sections 3.2-3.3), composed over
 * events by adding RDP per order, and converted to (eps, delta) with the
 * improved bound of Balle et al. 2020 (arXiv 1905.09982 Thm 21; Canonne,
 * Kamath, Steinke 2020 Prop 12). Relies only on libm.
 *
 * The mechanism at one step, for add/remove neighbours with L2 sensitivity 1
 * and noise multiplier s, is dominated by the pair
 *     mu  = (1-q) N(0, s^2) + q N(1, s^2)      (the record is present)
 *     mu0 = N(0, s^2)                          (the record is absent),
 * and its RDP at order a is eps(a) = log(A_a) / (a-1) with
 *     A_a = E_{z~mu0} [ (mu(z)/mu0(z))^a ].
 * Mironov et al. show D_a(mu || mu0) >= D_a(mu0 || mu), so this one direction
 * is the RDP of the mechanism (tests/test_rdp.c checks both directions by
 * numerical integration).
 *
 * Integer a. Expanding (1-q + q mu1/mu0)^a binomially and using
 * E_{mu0}[(mu1/mu0)^k] = exp((k^2-k) / (2 s^2)):
 *     A_a = sum_{k=0}^{a} C(a,k) q^k (1-q)^(a-k) exp((k^2-k) / (2 s^2)).
 * The k = 0 and 1 terms have exponent 0 and the weights sum to 1, so
 *     A_a - 1 = sum_{k=2}^{a} C(a,k) q^k (1-q)^(a-k) expm1((k^2-k) / (2 s^2)),
 * a sum of positive terms, computed in log space: this keeps full relative
 * precision even when the RDP is 1e-12 (tiny q, large s), where log(A_a)
 * computed from A_a itself would round to 0.
 *
 * Fractional a. The binomial series of (x + y)^a converges only where
 * |x| < |y|, so the integral is split at z0 = s^2 log(1/q - 1) + 1/2, where
 * (1-q) mu0(z) = q mu1(z). Below z0 expand in powers of q mu1 / ((1-q) mu0),
 * above z0 in powers of (1-q) mu0 / (q mu1); each term is a Gaussian integral
 * over a half line, which gives the erfc factors:
 *     A_a = sum_{i>=0} C(a,i) [ q^i (1-q)^(a-i) e^{(i^2-i)/(2s^2)} Phi((z0-i)/s)
 *                             + q^(a-i) (1-q)^i e^{(j^2-j)/(2s^2)} Phi((j-z0)/s) ],
 * with j = a - i. C(a,i) alternates in sign once i > a, so positive and
 * negative terms are summed in separate log-space accumulators; the series is
 * stopped once i > a and both new terms are below e^-40 times the running sum
 * (the tail of an alternating series with decreasing terms is smaller than its
 * first term).
 */
#include <float.h>
#include <math.h>
#include "dp/accountant_internal.h"

/* log(erfc(x)), finite far into the right tail where erfc underflows. */
static double log_erfc(double x) {
    if (x < 25.0) return log(erfc(x));
    /* erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8));
     * at x >= 25 the next term is below 1e-13. */
    double u = 1.0 / (2.0 * x * x);
    double series = 1.0 - u * (1.0 - 3.0 * u * (1.0 - 5.0 * u * (1.0 - 7.0 * u)));
    return -x * x - log(x) - 0.5 * log(M_PI) + log(series);
}

/* log(expm1(x)) for x > 0. */
static double log_expm1(double x) {
    return x > 40.0 ? x + log1p(-exp(-x)) : log(expm1(x));
}

/* log(A_a - 1) for integer a >= 2 (see the top of the file); -INFINITY if 0. */
static double log_a_minus_1_int(double q, double s, unsigned a) {
    double lq = log(q), l1q = log1p(-q), inv2s2 = 1.0 / (2.0 * s * s);
    double lgam_a1 = lgamma((double)a + 1.0), acc = -INFINITY;
    for (unsigned k = 2; k <= a; k++) {
        double kk = (double)k;
        double lbinom = lgam_a1 - lgamma(kk + 1.0) - lgamma((double)(a - k) + 1.0);
        double t = lbinom + kk * lq + (double)(a - k) * l1q + log_expm1((kk * kk - kk) * inv2s2);
        acc = acct_logadd(acc, t);
    }
    return acc;
}

/* log(A_a) for fractional a > 1 by the two-sided series; NaN if it did not
 * converge (which would be a bug: the terms decay at least polynomially). */
static double log_a_frac(double q, double s, double a) {
    const double sqrt2s = M_SQRT2 * s, inv2s2 = 1.0 / (2.0 * s * s);
    double lq = log(q), l1q = log1p(-q);
    double z0 = s * s * (l1q - lq) + 0.5;
    double pos = -INFINITY, neg = -INFINITY;
    double lcoef = 0.0; /* log|C(a, i)| */
    int sign = 1;       /* sign of C(a, i) */
    for (long i = 0; i < 4000000; i++) {
        double di = (double)i, j = a - di;
        double s0 = lcoef + di * lq + j * l1q + (di * di - di) * inv2s2 - M_LN2 +
                    log_erfc((di - z0) / sqrt2s);
        double s1 =
            lcoef + j * lq + di * l1q + (j * j - j) * inv2s2 - M_LN2 + log_erfc((z0 - j) / sqrt2s);
        double t = acct_logadd(s0, s1);
        if (sign > 0)
            pos = acct_logadd(pos, t);
        else
            neg = acct_logadd(neg, t);
        if (di > a + 1.0 && t < pos - 40.0) {
            if (!(neg < pos)) return NAN;
            return pos + log1p(-exp(neg - pos));
        }
        lcoef += log(fabs(a - di)) - log(di + 1.0);
        if (a - di < 0.0) sign = -sign;
    }
    return NAN;
}

DP_API dp_status dp_rdp_subsampled_gaussian(double q, double sigma, double alpha, double *rdp) {
    DP_TRY(acct_check_event("dp_rdp_subsampled_gaussian", 0,
                            (dp_privacy_event){.q = q, .sigma = sigma, .steps = 1}));
    if (!(alpha > 1.0) || !isfinite(alpha))
        return dp_error(DP_E_RANGE,
                        "dp_rdp_subsampled_gaussian: expected an order alpha > 1, "
                        "found %g",
                        alpha);
    if (q == 1.0) { /* no subsampling: the Gaussian mechanism itself */
        *rdp = alpha / (2.0 * sigma * sigma);
        return DP_OK;
    }
    double r;
    if (alpha == floor(alpha) && alpha <= 1e6) {
        double lam1 = log_a_minus_1_int(q, sigma, (unsigned)alpha);
        double la = lam1 > 0.0 ? lam1 + log1p(exp(-lam1)) : log1p(exp(lam1));
        r = la / (alpha - 1.0);
    } else {
        r = log_a_frac(q, sigma, alpha) / (alpha - 1.0);
    }
    /* The divergence is >= 0; a slightly negative value is rounding in the
     * alternating series when A_a is 1 + 1e-16 (huge sigma). */
    if (r < 0.0 && r > -1e-12) r = 0.0;
    if (isnan(r) || r < 0.0)
        return dp_error(DP_E_NUMERIC,
                        "dp_rdp_subsampled_gaussian: the RDP series did not "
                        "converge at q=%g sigma=%g alpha=%g",
                        q, sigma, alpha);
    *rdp = r; /* may be +inf for tiny sigma at a large order: that order is then useless */
    return DP_OK;
}

/* The order grid: Opacus's 1.1..10.9 (step 0.1) and 12..63, plus 11, orders
 * near 1 for large epsilons and up to 1024 for small ones (the best order for
 * epsilon e is roughly 1 + log(1/delta) / e). A constant table: no lazy
 * initialisation to race on. */
static const double orders[ACCT_RDP_ORDERS] = {
    1.02, 1.05, 1.1,  1.2,  1.3,  1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2,   2.1,  2.2,  2.3,  2.4,
    2.5,  2.6,  2.7,  2.8,  2.9,  3,   3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7,  3.8,  3.9,  4,
    4.1,  4.2,  4.3,  4.4,  4.5,  4.6, 4.7, 4.8, 4.9, 5,   5.1, 5.2, 5.3,  5.4,  5.5,  5.6,
    5.7,  5.8,  5.9,  6,    6.1,  6.2, 6.3, 6.4, 6.5, 6.6, 6.7, 6.8, 6.9,  7,    7.1,  7.2,
    7.3,  7.4,  7.5,  7.6,  7.7,  7.8, 7.9, 8,   8.1, 8.2, 8.3, 8.4, 8.5,  8.6,  8.7,  8.8,
    8.9,  9,    9.1,  9.2,  9.3,  9.4, 9.5, 9.6, 9.7, 9.8, 9.9, 10,  10.1, 10.2, 10.3, 10.4,
    10.5, 10.6, 10.7, 10.8, 10.9, 11,  12,  13,  14,  15,  16,  17,  18,   19,   20,   21,
    22,   23,   24,   25,   26,   27,  28,  29,  30,  31,  32,  33,  34,   35,   36,   37,
    38,   39,   40,   41,   42,   43,  44,  45,  46,  47,  48,  49,  50,   51,   52,   53,
    54,   55,   56,   57,   58,   59,  60,  61,  62,  63,  64,  72,  80,   96,   112,  128,
    160,  192,  224,  256,  320,  384, 448, 512, 640, 768, 896, 1024};

DP_API const double *dp_rdp_orders(size_t *n) {
    if (n) *n = ACCT_RDP_ORDERS;
    return orders;
}

dp_status acct_rdp_curve(double q, double sigma, double *out) {
    size_t n_ord;
    const double *ord = dp_rdp_orders(&n_ord);
    for (size_t k = 0; k < n_ord; k++)
        DP_TRY(dp_rdp_subsampled_gaussian(q, sigma, ord[k], &out[k]));
    return DP_OK;
}

int acct_rdp_epsilon_of_curve(const double *total, double delta, double *epsilon,
                              double *best_order) {
    size_t n_ord;
    const double *ord = dp_rdp_orders(&n_ord);
    double log_delta = log(delta), best = INFINITY, best_a = ord[0];
    for (size_t k = 0; k < n_ord; k++) {
        double a = ord[k];
        if (!isfinite(total[k])) continue;
        /* Balle et al. 2020: eps = rdp + log((a-1)/a) - (log delta + log a) / (a-1). */
        double eps = total[k] + log1p(-1.0 / a) - (log_delta + log(a)) / (a - 1.0);
        if (eps < best) {
            best = eps;
            best_a = a;
        }
    }
    if (!isfinite(best)) return -1;
    *epsilon = best > 0.0 ? best : 0.0;
    if (best_order) *best_order = best_a;
    return 0;
}

DP_API dp_status dp_account_rdp(const dp_privacy_event *events, size_t n_events, double delta,
                                double *epsilon, double *best_order) {
    DP_TRY(acct_check_events("rdp accountant", events, n_events));
    DP_TRY(acct_check_delta("rdp accountant", delta));
    int any = 0;
    for (size_t e = 0; e < n_events; e++)
        any |= events[e].steps != 0;
    if (!any) { /* nothing released (the conversion alone would give a small positive eps) */
        *epsilon = 0.0;
        if (best_order) *best_order = NAN;
        return DP_OK;
    }
    double total[ACCT_RDP_ORDERS] = {0}, curve[ACCT_RDP_ORDERS];
    for (size_t e = 0; e < n_events; e++) {
        if (events[e].steps == 0) continue;
        DP_TRY(acct_rdp_curve(events[e].q, events[e].sigma, curve));
        for (size_t k = 0; k < ACCT_RDP_ORDERS; k++)
            total[k] += (double)events[e].steps * curve[k];
    }
    if (acct_rdp_epsilon_of_curve(total, delta, epsilon, best_order))
        return dp_error(DP_E_PRIVACY, "rdp accountant: epsilon is infinite at every order "
                                      "(noise multiplier too small)");
    return DP_OK;
}
