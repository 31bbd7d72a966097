/*
 * test_noise.c: Gaussian noise (dp_noise_add, dp_noise_draw_f64): mean,
 * variance (chi-square interval), tails and a Kolmogorov-Smirnov test
 * against N(0, 1) at alpha = 1e-4 on a large sample; the documented
 * XChaCha20 + Box-Muller construction rebuilt here from libsodium's public
 * API and libm; chunked draws equal one big draw bit for bit whatever the
 * chunks and the thread count; different steps, streams and keys are
 * uncorrelated; the added noise has standard deviation std.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

static dp_key key_of(uint64_t *s) {
    dp_key k;
    dp_key_from_seed(tu_next(s), "noise", &k);
    return k;
}

static double *draw(const dp_key *k, uint64_t step, uint64_t stream, size_t off, size_t n) {
    double *z = malloc((n + 1) * sizeof(double));
    cr_assert_eq(dp_noise_draw_f64(k, step, stream, off, z, n), DP_OK, "%s", dp_last_error());
    return z;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(noise, draws_are_standard_normal_mean_variance_tails_ks) {
    uint64_t s = tu_seed();
    dp_key k = key_of(&s);
    const size_t n = 400000;
    double *z = draw(&k, tu_next(&s) % 1000000, 0, 0, n);
    double m = 0, v = 0;
    size_t tail3 = 0;
    for (size_t i = 0; i < n; i++)
        m += z[i];
    m /= n;
    for (size_t i = 0; i < n; i++)
        v += (z[i] - m) * (z[i] - m), tail3 += fabs(z[i]) > 3;
    v /= n - 1;
    cr_assert(fabs(m) < 5 / sqrt((double)n), "mean %g", m);
    /* (n-1) s^2 ~ chi-square(n-1): |s^2 - 1| < 5 sqrt(2 / (n-1)) */
    cr_assert(fabs(v - 1) < 5 * sqrt(2.0 / (n - 1)), "variance %g", v);
    const double p3 = erfc(3 / sqrt(2.0)); /* P(|Z| > 3) */
    cr_assert(fabs(tail3 - n * p3) < 5 * sqrt(n * p3), "|z| > 3: %zu, expected %.0f", tail3,
              n * p3);
    /* Kolmogorov-Smirnov: sqrt(n) D < 2.2302, the alpha = 1e-4 point of Kolmogorov's law */
    qsort(z, n, sizeof(double), cmp_double);
    double D = 0;
    for (size_t i = 0; i < n; i++) {
        double F = 0.5 * erfc(-z[i] / sqrt(2.0));
        D = fmax(D, fmax(fabs((double)(i + 1) / n - F), fabs(F - (double)i / n)));
    }
    cr_assert(sqrt((double)n) * D < 2.2302, "KS statistic sqrt(n) D = %g", sqrt((double)n) * D);
    free(z);
}

/* Rebuild coordinates from the construction documented in noise.c. */
Test(noise, draws_follow_the_documented_xchacha20_box_muller_construction) {
    uint64_t s = tu_seed();
    cr_assert(sodium_init() >= 0);
    dp_key k = key_of(&s);
    const uint64_t step = tu_next(&s), stream = tu_next(&s) % 16;
    const size_t off = 1000, n = 300;
    unsigned char nonce[24] = {0}, ks[32 * 1300];
    for (int i = 0; i < 8; i++)
        nonce[i] = (unsigned char)(step >> (8 * i));
    for (int i = 0; i < 8; i++)
        nonce[8 + i] = (unsigned char)(stream >> (8 * i));
    memcpy(nonce + 16, "noise", 5);
    crypto_stream_xchacha20(ks, sizeof ks, nonce, k.bytes);
    double *z = draw(&k, step, stream, off, n);
    for (size_t j = off; j < off + n; j++) {
        uint64_t w[4] = {0};
        for (int q = 0; q < 4; q++)
            for (int b = 7; b >= 0; b--)
                w[q] = (w[q] << 8) | ks[32 * j + 8 * (size_t)q + (size_t)b];
        double want = 0;
        for (int pair = 0; pair < 2; pair++) {
            double u1 = (double)((w[2 * pair] >> 11) + 1) / 9007199254740992.0;
            double u2 = (double)(w[2 * pair + 1] >> 11) / 9007199254740992.0;
            double r = sqrt(-2 * log(u1));
            want += r * cos(2 * M_PI * u2) + r * sin(2 * M_PI * u2);
        }
        want /= 2;
        cr_assert(fabs(z[j - off] - want) < 1e-12 * (1 + fabs(want)),
                  "coordinate %zu: %.17g vs %.17g", j, z[j - off], want);
    }
    free(z);
}

Test(noise, chunked_draws_equal_one_big_draw_bit_for_bit) {
    uint64_t s = tu_seed();
    dp_key k = key_of(&s);
    const size_t n = 70001, off = tu_next(&s) % 100000;
    const uint64_t step = tu_next(&s);
    double *whole = draw(&k, step, 3, off, n);
    double *parts = malloc(n * sizeof(double));
    for (int rep = 0; rep < 5; rep++) {
        omp_set_num_threads(1 + rep % 2);
        memset(parts, 0, n * sizeof(double));
        for (size_t a = 0; a < n;) {
            size_t len = 1 + tu_next(&s) % (rep < 2 ? 300 : 20000);
            if (len > n - a) len = n - a;
            cr_assert_eq(dp_noise_draw_f64(&k, step, 3, off + a, parts + a, len), DP_OK);
            a += len;
        }
        cr_assert_eq(memcmp(parts, whole, n * sizeof(double)), 0, "rep %d", rep);
    }
    omp_set_num_threads(2);
    /* the float path: chunked adds equal one add */
    float *f1 = calloc(n, sizeof(float)), *f2 = calloc(n, sizeof(float));
    cr_assert_eq(dp_noise_add(&k, step, 3, off, f1, n, 0.7), DP_OK);
    for (size_t a = 0; a < n;) {
        size_t len = 1 + tu_next(&s) % 5000;
        if (len > n - a) len = n - a;
        cr_assert_eq(dp_noise_add(&k, step, 3, off + a, f2 + a, len, 0.7), DP_OK);
        a += len;
    }
    cr_assert_eq(memcmp(f1, f2, n * sizeof(float)), 0);
    free(whole), free(parts), free(f1), free(f2);
}

Test(noise, add_adds_std_times_the_draws_in_double_rounded_once) {
    uint64_t s = tu_seed();
    dp_key k = key_of(&s);
    const size_t n = 100000;
    const double std = 2.75;
    float *out = malloc(n * sizeof(float)), *base = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        base[i] = out[i] = (float)(10 * tu_normal(&s));
    cr_assert_eq(dp_noise_add(&k, 9, 1, 5, out, n, std), DP_OK);
    double *z = draw(&k, 9, 1, 5, n);
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(out[i], (float)((double)base[i] + std * z[i]), "coordinate %zu", i);
        double e = (double)out[i] - base[i];
        v += e * e;
    }
    v /= n;
    cr_assert(fabs(v / (std * std) - 1) < 5 * sqrt(2.0 / n) + 1e-6, "variance %g, want %g", v,
              std * std);
    /* std 0 adds nothing */
    memcpy(out, base, n * sizeof(float));
    cr_assert_eq(dp_noise_add(&k, 9, 1, 5, out, n, 0.0), DP_OK);
    cr_assert_eq(memcmp(out, base, n * sizeof(float)), 0);
    free(out), free(base), free(z);
}

static double corr(const double *a, const double *b, size_t n) {
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++)
        sab += a[i] * b[i], saa += a[i] * a[i], sbb += b[i] * b[i];
    return sab / sqrt(saa * sbb);
}

Test(noise, steps_streams_keys_and_neighbours_are_uncorrelated) {
    uint64_t s = tu_seed();
    dp_key k = key_of(&s), k2 = key_of(&s);
    const size_t n = 200000;
    const double bound = 5 / sqrt((double)n);
    double *a = draw(&k, 10, 0, 0, n + 1);
    double *vs[4] = {draw(&k, 11, 0, 0, n), draw(&k, 10, 1, 0, n), draw(&k2, 10, 0, 0, n),
                     draw(&k, 10, 0, 128, n)};
    const char *what[4] = {"next step", "next stream", "other key", "shifted by one block"};
    for (int t = 0; t < 4; t++) {
        double r = corr(a, vs[t], n);
        cr_assert(fabs(r) < bound, "%s: correlation %g", what[t], r);
        free(vs[t]);
    }
    double r1 = corr(a, a + 1, n);
    cr_assert(fabs(r1) < bound, "lag-1 correlation %g", r1);
    /* squares too: the two halves of a Box-Muller pair are uncorrelated but
     * share a radius; the sums must not inherit that */
    double *sq = malloc((n + 1) * sizeof(double));
    for (size_t i = 0; i <= n; i++)
        sq[i] = a[i] * a[i] - 1;
    double r2 = corr(sq, sq + 1, n);
    cr_assert(fabs(r2) < bound, "lag-1 correlation of squares %g", r2);
    free(sq), free(a);
}

Test(noise, bad_arguments_are_refused) {
    dp_key k;
    dp_key_from_seed(1, "noise", &k);
    float f[4] = {0};
    cr_assert_eq(dp_noise_add(&k, 0, 0, 0, NULL, 0, 1.0), DP_OK);
    cr_assert_eq(dp_noise_add(&k, 0, 0, 0, f, 4, -1.0), DP_E_RANGE);
    cr_assert_eq(dp_noise_add(&k, 0, 0, 0, f, 4, NAN), DP_E_RANGE);
    cr_assert_eq(dp_noise_add(&k, 0, 0, 0, f, 4, INFINITY), DP_E_RANGE);
    cr_assert_eq(dp_noise_add(&k, 0, 0, 0, NULL, 4, 1.0), DP_E_USAGE);
    cr_assert_eq(dp_noise_add(&k, 0, 0, SIZE_MAX - 1, f, 4, 1.0), DP_E_RANGE);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(f[i], 0.0f);
}
