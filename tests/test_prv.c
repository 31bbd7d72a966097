/*
 * test_prv.c: the PRV accountant against independent references: at q = 1
 * the exact curve of composed Gaussian mechanisms (mu-GDP, mu = sqrt(T)/sigma),
 * including epsilons far above 10; at q < 1 and T = 1, 2 the exact curve
 * (closed form for one step, one numerical integral for two, in long
 * double); at q < 1 and T = 20..100 the pessimistic/optimistic bracket of
 * tests/prv_reference.py (numpy, another algorithm); PRV <= RDP on a grid;
 * monotonicity; composition of events.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

/* 1 if this build has the PRV accountant (FFTW); tests of it are skipped otherwise. */
static int have_prv(void) {
    dp_prv_result r;
    int ok = dp_account_prv(NULL, 0, 1e-5, 0, 0, &r) == DP_OK;
    dp_clear_error();
    return ok;
}

static void require_prv(void) {
    if (!have_prv()) cr_skip_test("this build has no FFTW: the PRV accountant is unavailable");
}
TestSuite(prv, .init = require_prv);

static dp_prv_result prv(double q, double s, uint64_t T, double delta) {
    dp_privacy_event ev = {q, s, T};
    dp_prv_result r;
    cr_assert_eq(dp_account_prv(&ev, 1, delta, 0.0, 0.0, &r), DP_OK, "q=%g s=%g T=%llu: %s", q, s,
                 (unsigned long long)T, dp_last_error());
    cr_assert(r.eps_lower <= r.eps_estimate && r.eps_estimate <= r.eps_upper);
    return r;
}

/* Smallest eps with d(eps) <= delta by bisection; d decreasing. */
static double solve(long double (*d)(double, const double *), const double *par, double delta) {
    double lo = 0, hi = 1;
    if (d(0.0, par) <= delta) return 0.0;
    while (d(hi, par) > delta)
        lo = hi, hi *= 2;
    for (int i = 0; i < 44; i++) { /* to 1e-13 relative */
        double m = 0.5 * (lo + hi);
        if (d(m, par) > delta)
            lo = m;
        else
            hi = m;
    }
    return hi;
}

/* ---- q = 1: mu-GDP (Dong, Roth, Su 2019, Cor. 2.13) ---- */

static long double gdp_delta(double e, const double *par) {
    long double mu = par[0];
    long double a = 0.5L * erfcl((e / mu - mu / 2) / sqrtl(2.0L));
    long double b = 0.5L * erfcl((e / mu + mu / 2) / sqrtl(2.0L));
    return a - (b > 0 ? expl(e + logl(b)) : 0.0L);
}

static void check_gdp(double sigma, uint64_t T, double delta) {
    double mu = sqrt((double)T) / sigma;
    double exact = solve(gdp_delta, &mu, delta);
    dp_prv_result r = prv(1.0, sigma, T, delta);
    cr_assert(r.eps_lower <= exact + 1e-9 && exact <= r.eps_upper + 1e-9,
              "sigma=%g T=%llu: exact %.9g outside [%.9g, %.9g]", sigma, (unsigned long long)T,
              exact, r.eps_lower, r.eps_upper);
    /* Never above the truth by more than the stated error (plus the delta budget
     * it set aside, which moves eps by far less than eps_error here). */
    cr_assert(r.eps_upper - exact <= 1.2 * r.eps_error,
              "sigma=%g T=%llu: upper %.9g exceeds exact %.9g by more than 1.2 x %.3g", sigma,
              (unsigned long long)T, r.eps_upper, exact, r.eps_error);
    cr_assert(fabs(r.eps_estimate - exact) <= 0.2 * r.eps_error,
              "sigma=%g T=%llu: estimate %.9g vs exact %.9g", sigma, (unsigned long long)T,
              r.eps_estimate, exact);
}

Test(prv, q_one_matches_the_exact_gaussian_curve) {
    check_gdp(1.0, 1, 1e-5);
    check_gdp(2.0, 50, 1e-5);
    check_gdp(10.0, 1000, 1e-5);
    check_gdp(5.0, 10000, 1e-6);
    check_gdp(30.0, 100000, 1e-5);
    check_gdp(100.0, 1, 1e-5); /* epsilon ~ 0.05 */
}

Test(prv, large_epsilons_up_to_hundreds_stay_exact) {
    /* Opacus's PRV failed above epsilon 10 (opacus#601, #604). */
    check_gdp(1.0, 16, 1e-5);  /* eps ~ 20 */
    check_gdp(0.7, 30, 1e-5);  /* eps ~ 60 */
    check_gdp(0.3, 100, 1e-5); /* eps ~ 700 */
}

/* ---- q < 1, T = 1 and 2: exact curves ---- */

/* z where l(z) = log(1 - q + q exp((2z-1)/(2s^2))) equals u (u > log(1-q)). */
static long double zof(long double q, long double s, long double u) {
    return s * s * log1pl(expm1l(u) / q) + 0.5L;
}
static long double Phic(long double x) {
    return 0.5L * erfcl(x / sqrtl(2.0L));
}
static long double lossl(long double q, long double s, long double z) {
    long double w = (2 * z - 1) / (2 * s * s);
    return w > 30 ? logl(q) + w + log1pl((1 - q) / q * expl(-w)) : log1pl(q * expm1l(w));
}

/* One step, record removed: P(l(Z) > e) - e^e Q(l(Z) > e), Z ~ P resp. Q. */
static long double d1_remove(long double q, long double s, long double e) {
    if (e <= log1pl(-q)) return -expm1l(e);
    long double z = zof(q, s, e);
    return (1 - q) * Phic(z / s) + q * Phic((z - 1) / s) - expl(e) * Phic(z / s);
}
/* One step, record added: Y = -l(Z), Z ~ Q; Y > e iff Z < zof(-e). */
static long double d1_add(long double q, long double s, long double e) {
    if (e >= -log1pl(-q)) return 0.0L;
    long double z = zof(q, s, -e);
    return (1 - Phic(z / s)) -
           expl(e) * ((1 - q) * (1 - Phic(z / s)) + q * (1 - Phic((z - 1) / s)));
}

static long double d1r(double e, const double *p) {
    return d1_remove(p[0], p[1], e);
}
static long double d1a(double e, const double *p) {
    return d1_add(p[0], p[1], e);
}

/* Two steps: delta_2(e) = E_{Z1}[delta_1(e - Y(Z1))], one integral by Simpson. */
static long double d2(double e, const double *p, int add) {
    long double q = p[0], s = p[1], lo = -40 * s, hi = 1 + 40 * s;
    long n = 12000;
    long double h = (hi - lo) / n, acc = 0, c = 1 / (s * sqrtl(2 * M_PI));
    for (long i = 0; i <= n; i++) {
        long double z = lo + i * h;
        long double d0 = c * expl(-z * z / (2 * s * s)),
                    d1 = c * expl(-(z - 1) * (z - 1) / (2 * s * s));
        long double w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
        long double y = lossl(q, s, z);
        acc += add ? w * d0 * d1_add(q, s, e + y)
                   : w * ((1 - q) * d0 + q * d1) * d1_remove(q, s, e - y);
    }
    return acc * h / 3;
}
static long double d2r(double e, const double *p) {
    return d2(e, p, 0);
}
static long double d2a(double e, const double *p) {
    return d2(e, p, 1);
}

Test(prv, one_and_two_steps_match_the_exact_curves) {
    const double set[][2] = {{0.01, 0.5}, {0.1, 1.0}, {0.5, 0.8}, {0.05, 2.0}};
    for (int k = 0; k < 4; k++) {
        const double *p = set[k];
        double e1 = fmax(solve(d1r, p, 1e-5), solve(d1a, p, 1e-5));
        dp_prv_result r1 = prv(p[0], p[1], 1, 1e-5);
        cr_assert(r1.eps_lower <= e1 + 1e-9 && e1 <= r1.eps_upper + 1e-9,
                  "T=1 q=%g s=%g: exact %.9g outside [%.9g, %.9g]", p[0], p[1], e1, r1.eps_lower,
                  r1.eps_upper);
        double e2 = fmax(solve(d2r, p, 1e-5), solve(d2a, p, 1e-5));
        dp_prv_result r2 = prv(p[0], p[1], 2, 1e-5);
        cr_assert(r2.eps_lower <= e2 + 1e-7 && e2 <= r2.eps_upper + 1e-7,
                  "T=2 q=%g s=%g: exact %.9g outside [%.9g, %.9g]", p[0], p[1], e2, r2.eps_lower,
                  r2.eps_upper);
        cr_assert(fabs(r2.eps_estimate - e2) <= 0.3 * r2.eps_error, "T=2: estimate %.9g vs %.9g",
                  r2.eps_estimate, e2);
    }
}

/* ---- q < 1, many steps: the numpy bracket ---- */

static void check_reference(double q, double s, unsigned T, double delta, double h) {
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/prv_reference.py' %.17g %.17g %u %.17g %.17g",
             tu_source_dir(), q, s, T, delta, h);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    double lo, hi;
    int n = fscanf(f, "%lf %lf", &lo, &hi);
    int rc = pclose(f);
    free(out);
    cr_assert(n == 2 && rc == 0, "reference failed: %s", cmd);
    dp_prv_result r = prv(q, s, T, delta);
    /* The truth is in both [lo, hi] and [lower, upper]: the intervals overlap,
     * and the estimate is inside the reference's bracket up to eps_error. */
    cr_assert(r.eps_lower <= hi && lo <= r.eps_upper,
              "q=%g s=%g T=%u: ours [%.9g, %.9g], reference [%.9g, %.9g]", q, s, T, r.eps_lower,
              r.eps_upper, lo, hi);
    cr_assert(r.eps_estimate >= lo - 0.2 * r.eps_error && r.eps_estimate <= hi + 0.2 * r.eps_error,
              "q=%g s=%g T=%u: estimate %.9g, reference [%.9g, %.9g]", q, s, T, r.eps_estimate, lo,
              hi);
}

Test(prv, many_steps_match_an_independent_bracket) {
    check_reference(0.01, 1.0, 100, 1e-5, 1e-4);
    check_reference(0.2, 0.8, 20, 1e-5, 1e-4);
}

/* ---- properties ---- */

Test(prv, never_above_rdp_on_a_grid) {
    const double qs[] = {1e-3, 0.01, 0.1, 1.0};
    const double ss[] = {0.6, 1.0, 2.0};
    const uint64_t Ts[] = {10, 1000, 20000};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) {
                if (qs[i] == 1.0 && Ts[k] > 1000) continue; /* eps in the thousands */
                dp_privacy_event ev = {qs[i], ss[j], Ts[k]};
                double rdp;
                cr_assert_eq(dp_account_rdp(&ev, 1, 1e-5, &rdp, NULL), DP_OK);
                dp_prv_result r = prv(qs[i], ss[j], Ts[k], 1e-5);
                cr_assert(r.eps_upper <= rdp, "q=%g s=%g T=%llu: prv %.6g > rdp %.6g", qs[i], ss[j],
                          (unsigned long long)Ts[k], r.eps_upper, rdp);
            }
}

Test(prv, monotone_in_sigma_q_and_steps) {
    double prev = INFINITY;
    for (double s = 0.6; s < 5; s *= 1.25) {
        double e = prv(0.01, s, 2000, 1e-5).eps_upper;
        cr_assert(e <= prev, "sigma %g: %g > %g", s, e, prev);
        prev = e;
    }
    prev = 0;
    for (double q = 1e-3; q <= 1.0; q *= 2.5) {
        double e = prv(q, 1.0, 50, 1e-5).eps_upper;
        cr_assert(e >= prev, "q %g: %g < %g", q, e, prev);
        prev = e;
    }
    prev = 0;
    for (uint64_t T = 1; T <= 100000; T *= 4) {
        double e = prv(0.005, 1.0, T, 1e-5).eps_upper;
        cr_assert(e >= prev, "T %llu: %g < %g", (unsigned long long)T, e, prev);
        prev = e;
    }
}

Test(prv, tiny_sample_rates_and_a_million_steps) {
    dp_privacy_event ev = {1e-6, 0.8, 1000000};
    double rdp;
    cr_assert_eq(dp_account_rdp(&ev, 1, 1e-6, &rdp, NULL), DP_OK);
    dp_prv_result r = prv(1e-6, 0.8, 1000000, 1e-6);
    cr_assert(r.eps_upper <= rdp && r.eps_upper > 0.0, "prv %g, rdp %g", r.eps_upper, rdp);
}

Test(prv, events_compose) {
    dp_privacy_event two[2] = {{0.02, 1.0, 400}, {0.02, 1.0, 600}};
    dp_prv_result a, b;
    cr_assert_eq(dp_account_prv(two, 2, 1e-5, 0, 0, &a), DP_OK);
    b = prv(0.02, 1.0, 1000, 1e-5);
    cr_assert(fabs(a.eps_estimate - b.eps_estimate) <= 0.2 * b.eps_error, "%g vs %g",
              a.eps_estimate, b.eps_estimate);
    /* A noisy statistic (q = 1) before training: more than training alone, less
     * than the sum of the two epsilons (composition is sublinear). */
    dp_privacy_event mixed[2] = {{1.0, 20.0, 3}, {0.02, 1.0, 1000}};
    dp_privacy_event stat = {1.0, 20.0, 3};
    dp_prv_result m, s;
    cr_assert_eq(dp_account_prv(mixed, 2, 1e-5, 0, 0, &m), DP_OK);
    cr_assert_eq(dp_account_prv(&stat, 1, 1e-5, 0, 0, &s), DP_OK);
    cr_assert(m.eps_estimate > b.eps_estimate && m.eps_upper < b.eps_upper + s.eps_upper,
              "mixed %g, training %g, statistic %g", m.eps_estimate, b.eps_estimate, s.eps_upper);
    double rdp;
    cr_assert_eq(dp_account_rdp(mixed, 2, 1e-5, &rdp, NULL), DP_OK);
    cr_assert(m.eps_upper <= rdp);
}

Test(prv, tighter_error_targets_tighten_the_bounds) {
    dp_privacy_event ev = {0.01, 1.0, 1000};
    dp_prv_result a, b;
    cr_assert_eq(dp_account_prv(&ev, 1, 1e-5, 0.05, 0, &a), DP_OK);
    cr_assert_eq(dp_account_prv(&ev, 1, 1e-5, 0.002, 0, &b), DP_OK);
    cr_assert(b.eps_upper - b.eps_lower < a.eps_upper - a.eps_lower);
    cr_assert(b.eps_upper <= a.eps_upper && b.eps_lower >= a.eps_lower - 1e-12);
    cr_assert_eq(dp_account_prv(&ev, 1, 1e-5, 0, 1e-5, &a), DP_E_RANGE); /* delta_error >= delta */
    cr_assert_eq(dp_account_prv(&ev, 1, 1e-5, -1, 0, &a), DP_E_RANGE);
    cr_assert_eq(dp_account_prv(&ev, 1, 0, 0, 0, &a), DP_E_RANGE);
}

/* Every mesh gives rigorous bounds, so the intervals of coarse and fine meshes
 * must intersect. At tiny q one step's loss is a spike narrower than the mesh,
 * where rounding to the mesh is biased by up to h/2 per step: only the mean
 * shift keeps a million steps from drifting by ~K h/2 >> eps_error. */
Test(prv, bounds_from_different_meshes_intersect_at_tiny_q) {
    const double errs[] = {0.05, 0.01, 0.003};
    const double qs[] = {1e-5, 1e-3};
    for (int i = 0; i < 2; i++) {
        double lo = 0, hi = INFINITY;
        for (int k = 0; k < 3; k++) {
            dp_privacy_event ev = {qs[i], 0.8, (uint64_t)(2.0 / qs[i])};
            dp_prv_result r;
            cr_assert_eq(dp_account_prv(&ev, 1, 1e-6, errs[k], 0, &r), DP_OK, "%s",
                         dp_last_error());
            lo = fmax(lo, r.eps_lower);
            hi = fmin(hi, r.eps_upper);
            cr_assert(lo <= hi, "q=%g: eps_error %g gives [%.6g, %.6g], disjoint from the others",
                      qs[i], errs[k], r.eps_lower, r.eps_upper);
        }
    }
}
