/*
 * test_rdp.c: the RDP accountant against independent references: the Rényi
 * divergence between the Gaussian mixture (1-q)N(0,s^2) + qN(1,s^2) and
 * N(0,s^2), integrated numerically in long double (composite Simpson, checked
 * against itself at twice the resolution) in both directions; the exact
 * curve of the Gaussian mechanism at q = 1 (the conversion must stay above
 * it); composition and monotonicity; rejection of bad inputs.
 */
#include <criterion/criterion.h>
#include <math.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

/* log(1 - q + q e^w), w = (2z - 1)/(2 s^2): the privacy loss log(P/Q). */
static long double loss(long double q, long double s, long double z) {
    long double w = (2.0L * z - 1.0L) / (2.0L * s * s);
    if (q == 1.0L) return w;
    if (w > 30.0L) return logl(q) + w + log1pl((1.0L - q) / q * expl(-w));
    return log1pl(q * expm1l(w));
}

/* log of the integrand of E_Q[(P/Q)^a] (forward) or E_P[(Q/P)^(a-1)] =
 * int Q^a P^(1-a) (backward), with Q = N(0, s^2). */
static long double log_integrand(long double q, long double s, long double a, long double z,
                                 int backward) {
    long double lq = -z * z / (2.0L * s * s) - logl(s * sqrtl(2.0L * M_PI));
    long double l = loss(q, s, z);
    return lq + (backward ? (1.0L - a) : a) * l;
}

/* log int over [lo, hi] by composite Simpson with n (even) intervals, scaled
 * by the maximum so that nothing overflows. */
static long double log_simpson(long double q, long double s, long double a, int backward,
                               long double lo, long double hi, long n) {
    long double h = (hi - lo) / n, mx = -INFINITY;
    for (long i = 0; i <= n; i++) {
        long double v = log_integrand(q, s, a, lo + i * h, backward);
        if (v > mx) mx = v;
    }
    long double acc = 0.0L;
    for (long i = 0; i <= n; i++) {
        long double w = (i == 0 || i == n) ? 1.0L : (i % 2 ? 4.0L : 2.0L);
        acc += w * expl(log_integrand(q, s, a, lo + i * h, backward) - mx);
    }
    return mx + logl(acc * h / 3.0L);
}

/* D_a in the given direction, with the reference's own accuracy checked by
 * halving the step. */
static double renyi_ref(double q, double s, double a, int backward) {
    long double lo = -(a - 1.0L) - 40.0L * s - 1.0L, hi = a + 40.0L * s + 1.0L; /* both peaks */
    long double step = fminl(s / 40.0L, s * s / 8.0L);
    long n = (long)ceill((hi - lo) / step);
    n += n % 2;
    long double l1 = log_simpson(q, s, a, backward, lo, hi, n);
    long double l2 = log_simpson(q, s, a, backward, lo, hi, 2 * n);
    cr_assert(fabsl(l1 - l2) <= 1e-13L * (1.0L + fabsl(l2)),
              "reference not converged at q=%g s=%g a=%g: %.20Lg vs %.20Lg", q, s, a, l1, l2);
    return (double)(l2 / (a - 1.0L));
}

static void check_order(double q, double s, double a, double rtol) {
    double ours;
    cr_assert_eq(dp_rdp_subsampled_gaussian(q, s, a, &ours), DP_OK, "%s", dp_last_error());
    double fwd = renyi_ref(q, s, a, 0), bwd = renyi_ref(q, s, a, 1);
    double ref = fmax(fwd, bwd);
    /* Mironov et al.: the forward direction is the larger one. */
    cr_assert(fwd >= bwd * (1.0 - 1e-9), "q=%g s=%g a=%g: forward %.12g < backward %.12g", q, s, a,
              fwd, bwd);
    /* Relative tolerance, plus the double-precision floor of log(A) with A
     * near 1 (~1e-16 absolute), which RDP = log(A)/(a-1) divides by a-1: an
     * RDP of 1e-9 cannot be resolved to 1e-8 relative by a series whose
     * terms are O(1) (seen: 2.7e-17 apart at a=2.6, 2.2e-16 at a=1.07). */
    cr_assert(fabs(ours - ref) <= rtol * ref + 1e-16 / (a - 1.0),
              "q=%g s=%g a=%g: ours %.15g, integration %.15g (rel %.3g)", q, s, a, ours, ref,
              fabs(ours - ref) / ref);
}

Test(rdp, integer_orders_match_numerical_integration) {
    const double qs[] = {1e-3, 0.01, 0.1, 0.5, 0.9, 1.0};
    const double ss[] = {0.6, 1.0, 2.0, 5.0};
    const double as[] = {2, 3, 5, 8, 16, 32};
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 4; j++)
            for (size_t k = 0; k < 6; k++) {
                check_order(qs[i], ss[j], as[k], 1e-9);
            }
}

Test(rdp, fractional_orders_match_numerical_integration) {
    const double qs[] = {1e-3, 0.02, 0.3, 0.7};
    const double ss[] = {0.7, 1.0, 3.0};
    const double as[] = {1.02, 1.1, 1.5, 2.5, 4.7, 10.3, 27.5};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 7; k++) {
                check_order(qs[i], ss[j], as[k], 1e-8);
            }
}

Test(rdp, random_settings_match_numerical_integration) {
    uint64_t st = tu_seed();
    for (int t = 0; t < 25; t++) {
        double q = exp(log(1e-4) * tu_uniform(&st)); /* 1e-4 .. 1, log-uniform */
        double s = 0.8 + 4.0 * tu_uniform(&st);
        double a = 1.05 + 14.0 * tu_uniform(&st);
        if (tu_uniform(&st) < 0.5) a = floor(a) + 1.0;
        check_order(q, s, a, 1e-8);
    }
}

Test(rdp, tiny_rdp_keeps_relative_precision) {
    /* q = 1e-6, s = 10: RDP ~ a q^2 (e^(1/s^2) - 1)/2 ~ 1e-14, which log(A) computed
     * from A itself would round to 0 or to a multiple of 1e-16. */
    double ours;
    cr_assert_eq(dp_rdp_subsampled_gaussian(1e-6, 10.0, 4.0, &ours), DP_OK);
    /* Second-order expansion: A - 1 = C(a,2) q^2 (e^(1/s^2) - 1) + O(q^3). */
    double approx = 6.0 * 1e-12 * expm1(0.01) / 3.0;
    cr_assert(fabs(ours - approx) <= 1e-5 * approx, "ours %.15g, expansion %.15g", ours, approx);
}

Test(rdp, q_one_is_the_gaussian_mechanism) {
    for (double a = 1.5; a < 100; a *= 1.7) {
        double ours;
        cr_assert_eq(dp_rdp_subsampled_gaussian(1.0, 1.3, a, &ours), DP_OK);
        cr_assert_float_eq(ours, a / (2.0 * 1.3 * 1.3), 1e-12 * ours);
    }
}

/* Exact (eps, delta) curve of the Gaussian mechanism composed T times (mu-GDP,
 * mu = sqrt(T)/sigma; Dong, Roth, Su 2019, Cor. 2.13): eps at delta by bisection. */
static double gdp_eps(double mu, double delta) {
    double lo = 0, hi = 1e4;
    for (int i = 0; i < 200; i++) {
        double e = 0.5 * (lo + hi);
        double d = 0.5 * erfc((e / mu - mu / 2) / M_SQRT2) -
                   exp(e + log(0.5 * erfc((e / mu + mu / 2) / M_SQRT2)));
        if (d > delta)
            lo = e;
        else
            hi = e;
    }
    return hi;
}

Test(rdp, conversion_is_sound_and_close_for_the_gaussian_mechanism) {
    const double sig[] = {0.8, 1.0, 2.0, 5.0, 20.0};
    const unsigned long T[] = {1, 10, 1000};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) {
            dp_privacy_event ev = {1.0, sig[i], T[j]};
            double eps, order, exact = gdp_eps(sqrt((double)T[j]) / sig[i], 1e-5);
            cr_assert_eq(dp_account_rdp(&ev, 1, 1e-5, &eps, &order), DP_OK);
            /* RDP is an upper bound, and for the Gaussian mechanism a good one. */
            cr_assert(eps >= exact, "sigma=%g T=%lu: rdp %g below the exact %g", sig[i], T[j], eps,
                      exact);
            if (exact > 0.05)
                cr_assert(eps <= 1.25 * exact, "sigma=%g T=%lu: rdp %g vs exact %g", sig[i], T[j],
                          eps, exact);
            /* The improved conversion beats the classical eps = rdp + log(1/delta)/(a-1). */
            double classic = INFINITY;
            size_t n;
            const double *ord = dp_rdp_orders(&n);
            for (size_t k = 0; k < n; k++) {
                double r = (double)T[j] * ord[k] / (2 * sig[i] * sig[i]);
                classic = fmin(classic, r + log(1e5) / (ord[k] - 1));
            }
            cr_assert(eps < classic, "improved %g >= classical %g", eps, classic);
        }
}

Test(rdp, small_epsilons_use_large_orders) {
    dp_privacy_event ev = {1.0, 200.0, 1};
    double eps, order;
    cr_assert_eq(dp_account_rdp(&ev, 1, 1e-5, &eps, &order), DP_OK);
    cr_assert(order > 64, "best order %g", order);
    cr_assert(eps < 0.03, "eps %g", eps);
}

Test(rdp, events_compose_by_adding_rdp) {
    dp_privacy_event split[3] = {{0.01, 1.1, 300}, {0.01, 1.1, 700}, {1.0, 50.0, 0}};
    dp_privacy_event whole = {0.01, 1.1, 1000};
    double a, b;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, split, 3, 1e-6, &a), DP_OK);
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &whole, 1, 1e-6, &b), DP_OK);
    cr_assert_float_eq(a, b, 1e-12 * b);
    /* Adding a noisy statistic (q = 1) costs something. */
    split[2].steps = 3;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, split, 3, 1e-6, &a), DP_OK);
    cr_assert(a > b);
    /* Nothing released: epsilon 0. */
    dp_privacy_event none = {0.5, 1.0, 0};
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &none, 1, 1e-5, &a), DP_OK);
    cr_assert_eq(a, 0.0);
}

Test(rdp, epsilon_is_monotone_in_sigma_q_and_steps) {
    double prev = INFINITY;
    for (double s = 0.5; s < 20; s *= 1.2) {
        dp_privacy_event ev = {0.01, s, 1000};
        double e;
        cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1e-5, &e), DP_OK);
        cr_assert(e <= prev, "sigma %g: %g > %g", s, e, prev);
        prev = e;
    }
    prev = 0;
    for (double q = 1e-4; q <= 1.0; q *= 1.5) {
        dp_privacy_event ev = {q, 1.0, 100};
        double e;
        cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1e-5, &e), DP_OK);
        cr_assert(e >= prev, "q %g: %g < %g", q, e, prev);
        prev = e;
    }
    prev = 0;
    for (uint64_t t = 1; t < 10000000; t *= 3) {
        dp_privacy_event ev = {0.001, 1.0, t};
        double e;
        cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1e-5, &e), DP_OK);
        cr_assert(e >= prev, "T %llu: %g < %g", (unsigned long long)t, e, prev);
        prev = e;
    }
}

Test(rdp, bad_inputs_are_refused_with_a_message) {
    double r;
    cr_assert_eq(dp_rdp_subsampled_gaussian(0.0, 1.0, 2.0, &r), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "sample rate") != NULL, "%s", dp_last_error());
    cr_assert_eq(dp_rdp_subsampled_gaussian(1.5, 1.0, 2.0, &r), DP_E_RANGE);
    cr_assert_eq(dp_rdp_subsampled_gaussian(0.5, 0.0, 2.0, &r), DP_E_RANGE);
    cr_assert_eq(dp_rdp_subsampled_gaussian(0.5, NAN, 2.0, &r), DP_E_RANGE);
    cr_assert_eq(dp_rdp_subsampled_gaussian(0.5, 1.0, 1.0, &r), DP_E_RANGE);
    dp_privacy_event ev = {0.1, 1.0, 10};
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 0.0, &r), DP_E_RANGE);
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1.0, &r), DP_E_RANGE);
    cr_assert_eq(dp_account_epsilon((dp_accountant_kind)7, &ev, 1, 1e-5, &r), DP_E_USAGE);
    dp_accountant_kind k;
    cr_assert_eq(dp_accountant_parse("prv", &k), DP_OK);
    cr_assert_eq(k, DP_ACCOUNTANT_PRV);
    cr_assert_str_eq(dp_accountant_name(k), "prv");
    cr_assert_eq(dp_accountant_parse("gdp", &k), DP_E_USAGE);
}
