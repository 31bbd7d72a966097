/*
 * test_poisson.c: Poisson sampling (dp_poisson_sample) and keys: each example
 * is included with frequency q (chi-square over many steps), batch sizes
 * follow Binomial(N, q) (mean and variance), steps are independent, the
 * batch is the same for every partition of [0, N) into rank ranges, the
 * documented XChaCha20 construction reproduced here from libsodium's public
 * API gives the same batch, tiny q over huge N returns quickly, q = 1 takes
 * everything, bad arguments are refused; seeded keys are reproducible and
 * OS keys differ.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

static dp_key test_key(uint64_t *s) {
    dp_key k;
    dp_key_from_seed(tu_next(s), "sample", &k);
    return k;
}

static size_t *sample(const dp_key *k, uint64_t step, size_t n, double q, size_t lo, size_t hi,
                      size_t *count) {
    size_t cap = dp_poisson_capacity(hi - lo, q);
    size_t *idx = malloc((cap + 1) * sizeof(size_t));
    cr_assert_eq(dp_poisson_sample(k, step, n, q, lo, hi, idx, cap, count), DP_OK, "%s",
                 dp_last_error());
    for (size_t i = 0; i < *count; i++) {
        cr_assert(idx[i] >= lo && idx[i] < hi);
        if (i) cr_assert_gt(idx[i], idx[i - 1], "ascending");
    }
    return idx;
}

Test(poisson, inclusion_frequency_per_example_is_q_chi_square) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    const size_t N = 150000; /* three blocks of 2^16 */
    const double q = 0.01;
    const int T = 800;
    unsigned *hits = calloc(N, sizeof(unsigned));
    double bs = 0, bs2 = 0;
    for (int t = 0; t < T; t++) {
        size_t c;
        size_t *idx = sample(&k, (uint64_t)t, N, q, 0, N, &c);
        for (size_t i = 0; i < c; i++)
            hits[idx[i]]++;
        bs += (double)c, bs2 += (double)c * c;
        free(idx);
    }
    /* sum_i (h_i - Tq)^2 / (Tq(1-q)) has mean N and variance N (2 + (1 - 6pq) / (Tpq)) */
    const double mu = T * q, var = T * q * (1 - q);
    double x2 = 0;
    for (size_t i = 0; i < N; i++)
        x2 += (hits[i] - mu) * (hits[i] - mu) / var;
    double sd = sqrt(N * (2 + (1 - 6 * q * (1 - q)) / var));
    cr_assert(fabs(x2 - N) < 6 * sd, "chi-square %.1f, expected %zu +- %.1f", x2, N, sd);
    /* batch sizes: Binomial(N, q) mean and variance */
    double mean = bs / T, s2 = (bs2 - T * mean * mean) / (T - 1);
    double bmu = N * q, bvar = N * q * (1 - q);
    cr_assert(fabs(mean - bmu) < 5 * sqrt(bvar / T), "mean batch %.2f, expected %.2f", mean, bmu);
    cr_assert(fabs(s2 / bvar - 1) < 5 * sqrt(2.0 / (T - 1)), "batch variance %.2f, expected %.2f",
              s2, bvar);
    free(hits);
}

Test(poisson, consecutive_steps_are_independent) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    const size_t N = 20000;
    const double q = 0.2;
    const int T = 200;
    unsigned char *prev = calloc(N, 1), *cur = calloc(N, 1);
    double overlap = 0;
    for (int t = 0; t < T; t++) {
        size_t c;
        size_t *idx = sample(&k, (uint64_t)t, N, q, 0, N, &c);
        memset(cur, 0, N);
        for (size_t i = 0; i < c; i++)
            cur[idx[i]] = 1;
        if (t) {
            for (size_t i = 0; i < N; i++)
                overlap += prev[i] & cur[i];
        }
        unsigned char *tmp = prev;
        prev = cur, cur = tmp;
        free(idx);
    }
    /* |S_t and S_t+1| ~ Binomial(N, q^2) */
    double m = overlap / (T - 1), e = N * q * q;
    cr_assert(fabs(m - e) < 6 * sqrt(e / (T - 1)), "mean overlap %.2f, expected %.2f", m, e);
    free(prev), free(cur);
}

Test(poisson, batch_is_the_same_for_every_partition_into_ranks) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    struct {
        size_t n;
        double q;
    } cases[] = {{300000, 0.3}, {300000, 0.01}, {3000000, 1e-4},
                 {1000, 0.5},   {5, 0.9},       {2500000, 1e-6}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const size_t n = cases[c].n;
        const double q = cases[c].q;
        uint64_t step = tu_next(&s) % 100000;
        size_t total;
        size_t *all = sample(&k, step, n, q, 0, n, &total);
        for (int R = 1; R <= 4; R++) {
            for (int rep = 0; rep < 3; rep++) {
                size_t cut[5] = {0};
                cut[R] = n;
                for (int r = 1; r < R; r++)
                    cut[r] = (size_t)(tu_uniform(&s) * (double)n);
                for (int a = 1; a < R; a++) /* sort the inner cuts */
                    for (int b = a + 1; b < R; b++)
                        if (cut[b] < cut[a]) {
                            size_t t = cut[a];
                            cut[a] = cut[b];
                            cut[b] = t;
                        }
                size_t got = 0;
                for (int r = 0; r < R; r++) {
                    size_t cnt;
                    size_t *part = sample(&k, step, n, q, cut[r], cut[r + 1], &cnt);
                    cr_assert_leq(got + cnt, total, "n %zu q %g R %d: too many", n, q, R);
                    cr_assert_eq(memcmp(part, all + got, cnt * sizeof(size_t)), 0,
                                 "n %zu q %g R %d rank %d differs", n, q, R, r);
                    got += cnt;
                    free(part);
                }
                cr_assert_eq(got, total, "n %zu q %g R %d: %zu of %zu", n, q, R, got, total);
            }
        }
        free(all);
    }
}

/* The construction documented in poisson.c, rebuilt from libsodium's public
 * XChaCha20: block b of step t reads the keystream of nonce
 * le64(t) || le64(b) || "sample\0\0"; gap = floor(log(U) / log1p(-q)). */
Test(poisson, batch_follows_the_documented_xchacha20_construction) {
    uint64_t s = tu_seed();
    cr_assert(sodium_init() >= 0);
    dp_key k = test_key(&s);
    const size_t n = 70000; /* blocks [0, 65536) and [65536, 70000) */
    const double q = 0.02;
    const uint64_t step = tu_next(&s);
    size_t want[4096], nw = 0;
    for (uint64_t b = 0; b < 2; b++) {
        unsigned char nonce[24] = {0}, ks[8 * 4096];
        for (int i = 0; i < 8; i++)
            nonce[i] = (unsigned char)(step >> (8 * i));
        for (int i = 0; i < 8; i++)
            nonce[8 + i] = (unsigned char)(b >> (8 * i));
        memcpy(nonce + 16, "sample", 6);
        crypto_stream_xchacha20(ks, sizeof ks, nonce, k.bytes);
        size_t i = b * 65536, end = b ? n : 65536, w = 0;
        for (;;) {
            uint64_t v = 0;
            for (int j = 7; j >= 0; j--)
                v = (v << 8) | ks[8 * w + (size_t)j];
            w++;
            double u = (double)((v >> 11) + 1) / 9007199254740992.0;
            double g = floor(log(u) / log1p(-q));
            if (g >= (double)(end - i)) break;
            i += (size_t)g;
            want[nw++] = i++;
        }
    }
    size_t c;
    size_t *got = sample(&k, step, n, q, 0, n, &c);
    cr_assert_eq(c, nw);
    cr_assert_eq(memcmp(got, want, c * sizeof(size_t)), 0);
    free(got);
}

Test(poisson, tiny_q_over_huge_n_returns_quickly) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    struct {
        size_t n;
        double q;
    } cases[] = {
        {(size_t)1 << 40, 1e-9}, {(size_t)1 << 60, 1e-15}, {SIZE_MAX, 1e-300}, {SIZE_MAX, 1e-17}};
    for (int c = 0; c < 4; c++) {
        size_t cnt;
        size_t *idx = sample(&k, 7, cases[c].n, cases[c].q, 0, cases[c].n, &cnt);
        double mu = (double)cases[c].n * cases[c].q;
        cr_assert(fabs((double)cnt - mu) < 8 * sqrt(mu) + 8, "n %zu q %g: %zu members", cases[c].n,
                  cases[c].q, cnt);
        free(idx);
        /* a rank range deep inside */
        idx = sample(&k, 7, cases[c].n, cases[c].q, cases[c].n / 3, cases[c].n / 2, &cnt);
        free(idx);
    }
}

Test(poisson, q_one_takes_everything_and_bad_arguments_are_refused) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    size_t idx[100], c;
    cr_assert_eq(dp_poisson_sample(&k, 3, 100, 1.0, 10, 90, idx, 100, &c), DP_OK);
    cr_assert_eq(c, 80);
    for (size_t i = 0; i < c; i++)
        cr_assert_eq(idx[i], 10 + i);
    double bad[] = {0.0, -0.1, 1.0000001, NAN, INFINITY};
    for (int b = 0; b < 5; b++)
        cr_assert_eq(dp_poisson_sample(&k, 3, 100, bad[b], 0, 100, idx, 100, &c), DP_E_RANGE,
                     "q = %g", bad[b]);
    cr_assert_eq(dp_poisson_sample(&k, 3, 100, 0.5, 50, 40, idx, 100, &c), DP_E_RANGE);
    cr_assert_eq(dp_poisson_sample(&k, 3, 100, 0.5, 0, 101, idx, 100, &c), DP_E_RANGE);
    cr_assert_eq(dp_poisson_sample(&k, 3, 100, 0.9, 0, 100, idx, 10, &c), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "cap") != NULL, "%s", dp_last_error());
    cr_assert_eq(dp_poisson_sample(&k, 3, 100, 0.5, 0, 0, idx, 0, &c), DP_OK);
    cr_assert_eq(c, 0);
    cr_assert_eq(dp_poisson_sample(&k, 3, 0, 0.5, 0, 0, NULL, 0, &c), DP_OK);
}

Test(poisson, capacity_bounds_the_batch) {
    uint64_t s = tu_seed();
    dp_key k = test_key(&s);
    cr_assert_eq(dp_poisson_capacity(1000, 1.0), 1000);
    cr_assert_eq(dp_poisson_capacity(1000, 0.0), 0);
    size_t ns[] = {10, 1000, 100000, 5000000};
    double qs[] = {0.5, 0.01, 1e-3};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++) {
            size_t cap = dp_poisson_capacity(ns[a], qs[b]);
            double mu = ns[a] * qs[b], sd = sqrt(mu * (1 - qs[b]));
            cr_assert(cap <= ns[a]);
            cr_assert((double)cap >= fmin((double)ns[a], mu + 7 * sd), "n %zu q %g cap %zu", ns[a],
                      qs[b], cap);
            cr_assert(cap <= mu + 10 * sd + 40, "n %zu q %g cap %zu too loose", ns[a], qs[b], cap);
        }
    for (int t = 0; t < 50; t++) {
        size_t c, cap = dp_poisson_capacity(2000, 0.3);
        size_t *idx = malloc(cap * sizeof(size_t));
        cr_assert_eq(dp_poisson_sample(&k, (uint64_t)t, 2000, 0.3, 0, 2000, idx, cap, &c), DP_OK);
        free(idx);
    }
}

Test(poisson, seeded_keys_are_reproducible_and_os_keys_differ) {
    dp_key a, b, c, d;
    dp_key_from_seed(42, "noise", &a);
    dp_key_from_seed(42, "noise", &b);
    dp_key_from_seed(42, "sample", &c);
    dp_key_from_seed(43, "noise", &d);
    cr_assert_eq(memcmp(a.bytes, b.bytes, 32), 0);
    cr_assert_neq(memcmp(a.bytes, c.bytes, 32), 0);
    cr_assert_neq(memcmp(a.bytes, d.bytes, 32), 0);
    /* independent check: BLAKE2b-256 of the documented encoding */
    unsigned char in[64], want[32];
    size_t len = 0;
    memcpy(in, "dpsgd key v1", 13), len = 13;
    memcpy(in + len, "noise", 6), len += 6;
    for (int i = 0; i < 8; i++)
        in[len++] = (unsigned char)((uint64_t)42 >> (8 * i));
    crypto_generichash(want, 32, in, len, NULL, 0);
    cr_assert_eq(memcmp(a.bytes, want, 32), 0);
    dp_key o1, o2;
    cr_assert_eq(dp_key_from_os(&o1), DP_OK);
    cr_assert_eq(dp_key_from_os(&o2), DP_OK);
    cr_assert_neq(memcmp(o1.bytes, o2.bytes, 32), 0);
    static const unsigned char zero[32];
    cr_assert_neq(memcmp(o1.bytes, zero, 32), 0);
}
