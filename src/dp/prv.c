/*
 * prv.c: the PRV accountant (Gopi, Lee, Wutschitz 2021, "Numerical
 * Composition of Differential Privacy", arXiv 2106.02848, Algorithm 1 and
 * Theorem 5.5) for Poisson-subsampled Gaussian events: the privacy loss random
 * variable of one step is discretised on a mesh, composed by FFT (powering in
 * Fourier space), and epsilon is read off the composed distribution with the
 * discretisation and truncation errors charged conservatively, so the result
 * is an upper bound. Relies on FFTW3 (GPL; build switch DP_WITH_FFTW).
 *
 * The curve. For add/remove neighbours one step is dominated by (P, Q) =
 * ((1-q) N(0,s^2) + q N(1,s^2), N(0,s^2)) when the record is removed and by
 * (Q, P) when it is added (Zhu, Dong, Wang 2022, Thm 11). With the privacy
 * loss Y = log(P(Z)/Q(Z)), Z ~ P, the composition of steps has
 *     delta(eps) = E[(1 - e^(eps - (Y_1 + ... + Y_K)))_+]
 * (the hockey-stick divergence), and the mechanism's curve is the larger of
 * the two directions, each composed on its own. At q = 1 they coincide and
 * only one is computed.
 *
 * The discretisation, and why the result is an upper bound. For each event
 * and direction:
 *   1. clamp: Yc = min(max(Y, lo), hi), with hi chosen so that the steps'
 *      total right-tail mass sum_e k_e P(Y_e > hi_e) <= eta_r (the composed
 *      loss of a run in which some step exceeded hi is bounded by 1 in delta),
 *      lo so that the left tail is below eta_l (clamping up only raises delta);
 *   2. round to the mesh: D = h * round(Yc / h), masses from the exact CDF of
 *      Y (Y is monotone in Z, so its CDF is a Gaussian-mixture CDF);
 *   3. mean shift: Yhat = D + mu with mu = E[Yc] - E[D], E[Yc] computed by
 *      the trapezoid rule in z (spectrally accurate: the integrand is analytic
 *      in a strip of half-width pi s^2, and the step is a fraction of it).
 * Then R_i = Yhat_i - Yc_i lies in an interval of length h and has mean 0, so
 * by Hoeffding P(sum R_i < -t) <= exp(-2 t^2 / (K h^2)) =: eta_h, and
 *     delta_true(eps) <= delta_hat(eps - t) + eta_h + eta_r + eta_w + eta_fft,
 * where delta_hat is the curve of the discretised composition as computed by
 * a cyclic FFT of length n, eta_w is a Chernoff bound (from the discretised
 * masses' moment generating function, exact for them) on the mass of the
 * composed sum above the window [a_lo, a_hi] of length n h (mass that wrapped
 * around), and eta_fft is twice the total of the negative entries the inverse
 * FFT produced (the rounding noise of the transform, estimated). So with
 * eps' solving delta_hat(eps') = delta - (those etas), eps_upper = eps' + t.
 * The same argument in the other direction gives eps_lower. This is the
 * bound of Gopi et al. with their truncation replaced by explicit tail terms.
 * The mesh h is chosen from t: h = t / sqrt(K log(1/eta_h) / 2).
 *
 * FFT accuracy: each step's masses are placed cyclically centred on their mean
 * index, so the phases raised to the power k stay small where |X(w)|^k is not
 * negligible (k * arg X would otherwise be ~1e6 radians and lose 1e-10).
 */
#include <math.h>
#include <string.h>
#include "dp/accountant_internal.h"

#ifndef DP_HAVE_FFTW

DP_API dp_status dp_account_prv(const dp_privacy_event *events, size_t n_events, double delta,
                                double eps_error, double delta_error, dp_prv_result *out) {
    return dp_error(DP_E_UNSUPPORTED, "prv accountant: this build has no FFTW (configured with "
                                      "-DDP_WITH_FFTW=OFF or libfftw3-dev missing); use the rdp "
                                      "accountant");
}

#else

#include <complex.h>
#include <fftw3.h>
#include <pthread.h>
#include <stdint.h>

/* FFTW's planner is not thread-safe; execution is. */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

enum { MAX_POINTS = 1 << 23 }; /* FFT length cap: ~200 MB of buffers */

/* ---- the privacy loss of one step ---- */

typedef struct loss {
    double q, s;
    int add; /* 0: remove direction, Z ~ P; 1: add direction, Z ~ Q, Y = -l(Z) */
} loss;

static double Phi(double x) {
    return 0.5 * erfc(-x * M_SQRT1_2);
}
static double Phibar(double x) {
    return 0.5 * erfc(x * M_SQRT1_2);
}

/* l(z) = log(P(z)/Q(z)) = log(1 - q + q e^w), w = (2z - 1) / (2 s^2). */
static double loss_of_z(double q, double s, double z) {
    double w = (2.0 * z - 1.0) / (2.0 * s * s);
    if (q == 1.0) return w;
    if (w > 30.0) return log(q) + w + log1p((1.0 - q) / q * exp(-w));
    return log1p(q * expm1(w));
}

/* The z at which l(z) = u, for u > log(1 - q): z = s^2 log((e^u - 1 + q)/q) + 1/2. */
static double z_of_loss(double q, double s, double u) {
    double g;
    if (q == 1.0)
        g = u;
    else if (u > 0.0)
        g = u - log(q) + log1p(-(1.0 - q) * exp(-u));
    else
        g = log1p(expm1(u) / q);
    return s * s * g + 0.5;
}

/* Support bounds of Y: [ymin, ymax] (infinite where unbounded). */
static double loss_min(const loss *d) {
    return d->add || d->q == 1.0 ? -INFINITY : log1p(-d->q);
}
static double loss_max(const loss *d) {
    return !d->add || d->q == 1.0 ? INFINITY : -log1p(-d->q);
}

/* P(Y <= y) and P(Y > y); each accurate in its own tail. */
static double loss_cdf(const loss *d, double y) {
    if (y <= loss_min(d)) return 0.0;
    if (y >= loss_max(d)) return 1.0;
    double q = d->q, s = d->s;
    if (!d->add) {
        double z = z_of_loss(q, s, y);
        return (1.0 - q) * Phi(z / s) + q * Phi((z - 1.0) / s);
    }
    return Phibar(z_of_loss(q, s, -y) / s);
}
static double loss_sf(const loss *d, double y) {
    if (y <= loss_min(d)) return 1.0;
    if (y >= loss_max(d)) return 0.0;
    double q = d->q, s = d->s;
    if (!d->add) {
        double z = z_of_loss(q, s, y);
        return (1.0 - q) * Phibar(z / s) + q * Phibar((z - 1.0) / s);
    }
    return Phi(z_of_loss(q, s, -y) / s);
}

/* A y with sf(y) <= target (right) or cdf(y) <= target (left), by doubling
 * then bisection; `from` is a point inside the bulk. */
static double loss_tail_point(const loss *d, double target, int right, double from) {
    double step = 1.0 / d->s + 1.0, a = from, b = from;
    for (int it = 0; it < 200; it++) {
        b = right ? from + step : from - step;
        double m = right ? loss_sf(d, b) : loss_cdf(d, b);
        if (m <= target) break;
        a = b;
        step *= 2.0;
    }
    for (int it = 0; it < 100; it++) {
        double c = 0.5 * (a + b);
        double m = right ? loss_sf(d, c) : loss_cdf(d, c);
        if (m <= target)
            b = c;
        else
            a = c;
    }
    return b;
}

/* The median of Y, where the mass computation switches from cdf to sf. */
static double loss_median(const loss *d) {
    double lo = -1.0, hi = 1.0;
    while (loss_cdf(d, lo) > 0.5)
        lo *= 2.0;
    while (loss_cdf(d, hi) < 0.5)
        hi *= 2.0;
    for (int it = 0; it < 200 && hi - lo > 1e-15 * (fabs(lo) + fabs(hi)); it++) {
        double c = 0.5 * (lo + hi);
        if (loss_cdf(d, c) < 0.5)
            lo = c;
        else
            hi = c;
    }
    return hi;
}

/* E[min(max(Y, lo), hi)] by the trapezoid rule in z over the Gaussian
 * mixture (see the top of the file for why this is accurate), in long double. */
static double loss_clamped_mean(const loss *d, double lo, double hi) {
    double q = d->q, s = d->s;
    double dz = fmin(s / 24.0, s * s / 3.0);
    double zlo = -38.0 * s, zhi = 1.0 + 38.0 * s;
    long n = (long)ceil((zhi - zlo) / dz);
    dz = (zhi - zlo) / (double)n;
    long double acc = 0.0L;
    double norm = 1.0 / (s * sqrt(2.0 * M_PI));
    for (long i = 0; i <= n; i++) {
        double z = zlo + (double)i * dz;
        double dens0 = norm * exp(-0.5 * (z / s) * (z / s));
        double dens =
            d->add ? dens0
                   : (1.0 - q) * dens0 + q * norm * exp(-0.5 * ((z - 1.0) / s) * ((z - 1.0) / s));
        if (dens == 0.0) continue;
        double y = loss_of_z(q, s, z);
        if (d->add) y = -y;
        y = fmin(fmax(y, lo), hi);
        acc += (long double)((i == 0 || i == n) ? 0.5 : 1.0) * dens * y;
    }
    return (double)(acc * dz);
}

/* ---- one event's discretised step ---- */

typedef struct pmf {
    long j_lo; /* mesh index of the first mass: value j_lo * h */
    size_t len;
    double *p;
    double mu;     /* mean shift: Yhat = j h + mu */
    long center;   /* index subtracted before the FFT (about the mean) */
    double tail_r; /* P(Y > top edge): clamped into the last bin */
    double tail_l; /* P(Y <= bottom edge): clamped into the first bin */
    uint64_t steps;
} pmf;

/* Discretise one step of `d` on the mesh h with right/left tail targets. */
static dp_status pmf_build(const loss *d, double h, double tail_r, double tail_l, pmf *out) {
    double med = loss_median(d);
    double lo = loss_min(d), hi = loss_max(d);
    if (!isfinite(hi)) hi = loss_tail_point(d, tail_r, 1, med);
    if (!isfinite(lo)) lo = loss_tail_point(d, tail_l, 0, med);
    double jl = ceil(lo / h - 0.5), jh = ceil(hi / h - 0.5);
    if (!(jh - jl + 1.0 <= (double)MAX_POINTS))
        return dp_error(DP_E_RANGE,
                        "prv accountant: one step's privacy loss spans %g mesh points "
                        "(q=%g sigma=%g, mesh %g); use the rdp accountant",
                        jh - jl + 1.0, d->q, d->s, h);
    out->j_lo = (long)jl;
    out->len = (size_t)(jh - jl) + 1;
    out->p = dp_malloc(out->len * sizeof(double));
    if (!out->p) return dp_error(DP_E_NOMEM, "prv accountant: %zu mesh points", out->len);
    /* Masses between consecutive edges e_k = (j_lo + k - 1/2) h; the first
     * bin takes everything below e_1 and the last everything above e_{len-1}.
     * Below the median, masses are differences of the cdf, above it of the sf,
     * so neither tail loses its small values to cancellation against 1. */
    double prev_c = 0.0, prev_s = 1.0; /* cdf and sf at the previous edge (e_0 := -inf) */
    int prev_upper = 0;
    long double mean_d = 0.0L;
    for (size_t k = 0; k < out->len; k++) {
        double pk;
        if (k + 1 == out->len) {
            pk = prev_upper ? prev_s : 1.0 - prev_c;
        } else {
            double e = ((double)out->j_lo + (double)k + 0.5) * h;
            if (e <= med) {
                double c = loss_cdf(d, e);
                pk = c - prev_c;
                prev_c = c;
            } else {
                double sf = loss_sf(d, e);
                pk = prev_upper ? prev_s - sf : 1.0 - prev_c - sf;
                prev_s = sf;
                prev_upper = 1;
            }
        }
        out->p[k] = pk > 0.0 ? pk : 0.0;
        mean_d += (long double)out->p[k] * (long double)((double)out->j_lo + (double)k);
    }
    double e_lo = ((double)out->j_lo - 0.5) * h,
           e_hi = ((double)out->j_lo + (double)out->len - 0.5) * h;
    out->tail_r = loss_sf(d, e_hi);
    out->tail_l = loss_cdf(d, e_lo);
    out->mu = loss_clamped_mean(d, e_lo, e_hi) - (double)(mean_d * (long double)h);
    out->center = (long)llround((double)mean_d);
    return DP_OK;
}

/* log E[exp(lambda * (j - center) h)] of a step's masses. */
static double pmf_log_mgf(const pmf *m, double h, double lambda) {
    size_t a = 0, b = m->len;
    while (a < b && m->p[a] == 0.0)
        a++;
    while (b > a && m->p[b - 1] == 0.0)
        b--;
    if (a == b) return 0.0;
    double base = ((double)m->j_lo - (double)m->center) * h; /* value of index 0 */
    double top = lambda * (base + (double)(lambda > 0 ? b - 1 : a) * h);
    double acc = 0.0; /* positive terms <= 1: plain double is accurate */
    for (size_t k = a; k < b; k++)
        acc += m->p[k] * exp(lambda * (base + (double)k * h) - top);
    return top + log(acc);
}

/* Chernoff: P(sum > a) <= exp(-l a) prod_e M_e(l)^k_e for every l > 0, so
 * a(l) = (sum_e k_e log M_e(l) + log(1/eta)) / l bounds the upper edge; for
 * the lower edge use -l. */
static double chernoff_at(const pmf *ms, size_t nm, double h, double c, double sign, double x) {
    double l = exp(x), s = 0.0;
    for (size_t e = 0; e < nm; e++)
        if (ms[e].steps) s += (double)ms[e].steps * pmf_log_mgf(&ms[e], h, sign * l);
    return (s + c) / l;
}

/* The smallest Chernoff edge over l, in mesh units relative to the centred
 * sum: above it (sign +1) or below it (sign -1) lies mass <= eta. a(l) is
 * quasi-convex (l a'(l) has the sign of l A'(l) - A(l) - c, which increases
 * with l since A = sum k log M is convex), so golden-section search on log l
 * finds the minimum; any l gives a valid bound, so inexactness costs only
 * window length. */
static double chernoff_edge(const pmf *ms, size_t nm, double h, double eta, int sign) {
    const double g = 0.5 * (sqrt(5.0) - 1.0), c = log(1.0 / eta);
    double a = log(1e-6), b = log(1e6);
    double x1 = b - g * (b - a), x2 = a + g * (b - a);
    double f1 = chernoff_at(ms, nm, h, c, sign, x1), f2 = chernoff_at(ms, nm, h, c, sign, x2);
    while (b - a > 1e-2) {
        if (f1 < f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = chernoff_at(ms, nm, h, c, sign, x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = chernoff_at(ms, nm, h, c, sign, x2);
        }
    }
    return sign * fmin(f1, f2) / h;
}

/* The smallest n >= m of the form 2^a 3^b 5^c 7^d (fast for FFTW). */
static size_t fft_size(size_t m) {
    for (size_t n = m;; n++) {
        size_t r = n;
        while (r % 2 == 0)
            r /= 2;
        while (r % 3 == 0)
            r /= 3;
        while (r % 5 == 0)
            r /= 5;
        while (r % 7 == 0)
            r /= 7;
        if (r == 1) return n;
    }
}

/* The composed curve of one direction: values v_i = (J_lo + i) h + shift with
 * masses p[i], i < n. */
typedef struct curve {
    double *p;
    size_t n;
    long J_lo;
    double h, shift;
    double noise; /* estimated total FFT rounding noise in mass */
    double eta_whi, eta_wlo;
} curve;

/* Compose the events' steps by FFT into c (c->p allocated here). */
static dp_status compose(const pmf *ms, size_t nm, double h, double eta_w, curve *c) {
    memset(c, 0, sizeof *c);
    double a_hi = chernoff_edge(ms, nm, h, eta_w, +1);
    double a_lo = chernoff_edge(ms, nm, h, eta_w, -1);
    /* The sum cannot leave [sum k (j_lo - center), sum k (j_hi - center)]. */
    double min_sum = 0.0, max_sum = 0.0;
    long total_center = 0;
    for (size_t e = 0; e < nm; e++) {
        double k = (double)ms[e].steps;
        min_sum += k * (double)(ms[e].j_lo - ms[e].center);
        max_sum += k * (double)(ms[e].j_lo + (long)ms[e].len - 1 - ms[e].center);
        total_center += (long)ms[e].steps * ms[e].center;
    }
    c->eta_whi = eta_w;
    c->eta_wlo = eta_w;
    if (a_hi >= max_sum) {
        a_hi = max_sum;
        c->eta_whi = 0.0;
    }
    if (a_lo <= min_sum) {
        a_lo = min_sum;
        c->eta_wlo = 0.0;
    }
    double lo = floor(a_lo), hi = ceil(a_hi);
    if (!(hi - lo + 1.0 <= (double)MAX_POINTS))
        return dp_error(DP_E_RANGE,
                        "prv accountant: the composed privacy loss needs %g mesh "
                        "points (more than %d)",
                        hi - lo + 1.0, MAX_POINTS);
    size_t n = fft_size((size_t)(hi - lo) + 1);
    if (n < 16) n = 16;
    c->n = n;
    c->h = h;
    c->J_lo = (long)lo + total_center;
    c->shift = 0.0;
    for (size_t e = 0; e < nm; e++)
        c->shift += (double)ms[e].steps * ms[e].mu;

    size_t nc = n / 2 + 1;
    double *x = dp_malloc(n * sizeof(double));
    fftw_complex *X = dp_malloc(nc * sizeof(fftw_complex));
    fftw_complex *acc = dp_malloc(nc * sizeof(fftw_complex));
    if (!x || !X || !acc) {
        dp_free(x);
        dp_free(X);
        dp_free(acc);
        return dp_error(DP_E_NOMEM, "prv accountant: FFT buffers of %zu points", n);
    }
    pthread_mutex_lock(&plan_lock);
    fftw_plan fwd = fftw_plan_dft_r2c_1d((int)n, x, X, FFTW_ESTIMATE);
    fftw_plan inv = fftw_plan_dft_c2r_1d((int)n, acc, x, FFTW_ESTIMATE);
    pthread_mutex_unlock(&plan_lock);
    dp_status st = DP_OK;
    if (!fwd || !inv) {
        st = dp_error(DP_E_INTERNAL, "prv accountant: FFTW could not plan a transform of %zu", n);
        goto done;
    }
    for (size_t w = 0; w < nc; w++)
        acc[w] = 1.0;
    for (size_t e = 0; e < nm; e++) {
        if (!ms[e].steps) continue;
        memset(x, 0, n * sizeof(double));
        for (size_t k = 0; k < ms[e].len; k++) {
            long j = ms[e].j_lo + (long)k - ms[e].center;
            long r = j % (long)n;
            if (r < 0) r += (long)n;
            x[r] += ms[e].p[k];
        }
        fftw_execute(fwd);
        double kk = (double)ms[e].steps;
        for (size_t w = 0; w < nc; w++) {
            double r = cabs(X[w]);
            if (r == 0.0 || acc[w] == 0.0) {
                acc[w] = 0.0;
                continue;
            }
            double lr = kk * log(r);
            if (lr < -745.0) {
                acc[w] = 0.0;
                continue;
            }
            double th = kk * carg(X[w]);
            acc[w] *= exp(lr) * (cos(th) + I * sin(th));
        }
    }
    fftw_execute(inv); /* destroys acc; x = n * (masses of the centred sum mod n) */
    /* Unwrap: the centred sum S (mesh units) in [lo, lo + n) lives at S mod n. */
    c->p = dp_malloc(n * sizeof(double));
    if (!c->p) {
        st = dp_error(DP_E_NOMEM, "prv accountant: %zu points", n);
        goto done;
    }
    double neg = 0.0, inv_n = 1.0 / (double)n;
    for (size_t i = 0; i < n; i++) {
        long S = (long)lo + (long)i;
        long r = S % (long)n;
        if (r < 0) r += (long)n;
        double v = x[r] * inv_n;
        if (v < 0.0) {
            neg -= v;
            v = 0.0;
        }
        c->p[i] = v;
    }
    c->noise = 2.0 * neg;
done:
    pthread_mutex_lock(&plan_lock);
    if (fwd) fftw_destroy_plan(fwd);
    if (inv) fftw_destroy_plan(inv);
    pthread_mutex_unlock(&plan_lock);
    dp_free(x);
    dp_free(X);
    dp_free(acc);
    return st;
}

/* The smallest eps >= 0 with delta_hat(eps) <= d, where
 * delta_hat(eps) = sum_{v_i > eps} p_i (1 - e^(eps - v_i)). Scans down from
 * the top keeping the suffix sums A = sum p_i and B = sum p_i e^(-v_i) of the
 * bins above eps; within (v_{i-1}, v_i] the curve is A - e^eps B. */
static double curve_eps(const curve *c, double d) {
    long double A = 0.0L, B = 0.0L;
    for (size_t i = c->n; i-- > 0;) {
        double v = ((double)c->J_lo + (double)i) * c->h + c->shift;
        if (v <= 0.0) break;
        A += c->p[i];
        B += (long double)c->p[i] * expl(-(long double)v);
        double below = i > 0 ? ((double)c->J_lo + (double)i - 1.0) * c->h + c->shift : 0.0;
        if (below < 0.0) below = 0.0;
        long double at_below = A - expl((long double)below) * B;
        if (at_below > d) {
            double eps = (double)logl((A - d) / B);
            return eps < below ? below : eps;
        }
        if (below == 0.0) return 0.0;
    }
    return 0.0;
}

static void default_eps_error(const dp_privacy_event *events, size_t n_events, double delta,
                              double *eps_error) {
    double r;
    if (dp_account_rdp(events, n_events, delta, &r, NULL) != DP_OK || !isfinite(r)) r = 1.0;
    dp_clear_error();
    double t = r < 1.0 ? 0.01 * r : (r > 10.0 ? 1e-3 * r : 0.01);
    *eps_error = t < 1e-3 ? 1e-3 : t;
}

DP_API dp_status dp_account_prv(const dp_privacy_event *events, size_t n_events, double delta,
                                double eps_error, double delta_error, dp_prv_result *out) {
    DP_TRY(acct_check_events("prv accountant", events, n_events));
    DP_TRY(acct_check_delta("prv accountant", delta));
    if (delta_error == 0.0) delta_error = delta / 1000.0;
    if (!(delta_error > 0.0 && delta_error < delta))
        return dp_error(DP_E_RANGE, "prv accountant: expected delta_error in (0, delta), found %g",
                        delta_error);
    if (!(eps_error >= 0.0) || !isfinite(eps_error))
        return dp_error(DP_E_RANGE, "prv accountant: expected eps_error >= 0, found %g", eps_error);
    memset(out, 0, sizeof *out);
    double K = 0.0;
    int all_full = 1;
    for (size_t e = 0; e < n_events; e++) {
        K += (double)events[e].steps;
        if (events[e].steps && events[e].q != 1.0) all_full = 0;
    }
    if (K == 0.0) return DP_OK; /* nothing released */
    if (eps_error == 0.0) default_eps_error(events, n_events, delta, &eps_error);

    /* The budget delta_error: half for the rounding (Hoeffding), an eighth
     * each for the right tails, the window above, the left tails and the
     * window below (the last two only for eps_lower). */
    double eta_h = delta_error / 2.0, eta_r = delta_error / 8.0, eta_w = delta_error / 8.0;
    double t = eps_error;
    double h = t / sqrt(K * log(1.0 / eta_h) / 2.0);

    pmf *ms = dp_calloc(n_events, sizeof(pmf));
    if (!ms) return dp_error(DP_E_NOMEM, "prv accountant: %zu events", n_events);
    dp_status st = DP_OK;
    double eps_lo = 0.0, eps_est = 0.0, eps_up = 0.0;
    size_t points = 0;
    for (int dir = 0; dir < (all_full ? 1 : 2) && st == DP_OK; dir++) {
        curve c = {0};
        for (int attempt = 0; attempt < 8; attempt++) {
            double tr = 0.0, tl = 0.0;
            for (size_t e = 0; e < n_events && st == DP_OK; e++) {
                dp_free(ms[e].p);
                memset(&ms[e], 0, sizeof ms[e]);
                ms[e].steps = events[e].steps;
                if (!events[e].steps) continue;
                loss d = {events[e].q, events[e].sigma, dir};
                st = pmf_build(&d, h, eta_r / K, eta_r / K, &ms[e]);
                tr += (double)ms[e].steps * ms[e].tail_r;
                tl += (double)ms[e].steps * ms[e].tail_l;
            }
            if (st == DP_OK) st = compose(ms, n_events, h, eta_w, &c);
            if (st == DP_E_RANGE && attempt < 7) {
                /* Too many points: a coarser mesh, and a larger eps_error. */
                dp_clear_error();
                st = DP_OK;
                h *= 4.0;
                t *= 4.0;
                continue;
            }
            if (st != DP_OK) break;
            double up_slack = eta_h + tr + c.eta_whi + c.noise;
            double lo_slack = eta_h + tl + c.eta_wlo + c.noise;
            if (!(delta - up_slack > 0.0)) {
                st = dp_error(DP_E_NUMERIC, "prv accountant: the error terms (%g) exceed delta=%g",
                              up_slack, delta);
                break;
            }
            double e_up = curve_eps(&c, delta - up_slack) + t;
            double e_est = curve_eps(&c, delta);
            double e_lo = curve_eps(&c, delta + lo_slack) - t;
            if (e_lo < 0.0) e_lo = 0.0;
            if (e_up > eps_up) eps_up = e_up;
            if (e_est > eps_est) eps_est = e_est;
            if (e_lo > eps_lo) eps_lo = e_lo;
            if (c.n > points) points = c.n;
            break;
        }
        dp_free(c.p);
    }
    for (size_t e = 0; e < n_events; e++)
        dp_free(ms[e].p);
    dp_free(ms);
    if (st != DP_OK) return st;
    out->eps_lower = eps_lo;
    out->eps_estimate = eps_est;
    out->eps_upper = eps_up;
    out->eps_error = t;
    out->delta_error = delta_error;
    out->mesh = h;
    out->points = points;
    return DP_OK;
}

#endif
