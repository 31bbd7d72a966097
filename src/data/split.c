/*
 * split.c: the stratified train/validation/test split. Each class is split
 * on its own, so every split has the label balance of the whole (to within
 * one row per class): sizes by the largest-remainder rule, membership by a
 * Fisher-Yates shuffle driven by splitmix64 (Steele, Lea, Flood 2014), seeded
 * by (seed, class). Simple enough that tests/prep_ref.py redoes it exactly;
 * this is a reproducible partition, not a privacy mechanism, so no CSPRNG.
 * Which part the j-th row of a class gets depends only on (m, fractions,
 * seed, class), so ranks that know their rows' places j need no labels of
 * the others (distributed prep).
 */
#include <math.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1, without modulo bias: reject the 2^64 mod n
 * smallest values so that the rest is a whole number of copies of [0, n). */
static uint64_t below(uint64_t *state, uint64_t n) {
    uint64_t t = (0 - n) % n, r;
    do
        r = splitmix64(state);
    while (r < t);
    return r % n;
}

dp_status prep_split_class(size_t m, const double frac[3], uint64_t seed, int c, uint8_t *out) {
    size_t *perm = dp_malloc((m + 1) * sizeof *perm);
    if (!perm) return dp_error(DP_E_NOMEM, "out of memory for the split (%zu rows)", m);
    /* largest remainder: floor of each quota, then one more to the parts
     * with the largest fractional parts (ties: train, validation, test) */
    size_t size[3], given = 0;
    double rem[3];
    for (int s = 0; s < 3; s++) {
        double q = (double)m * frac[s];
        size[s] = (size_t)floor(q);
        rem[s] = q - floor(q);
        given += size[s];
    }
    for (int s = 2; given > m; s = (s + 2) % 3) /* fractions summing to 1 + eps */
        if (size[s]) size[s]--, given--;
    while (given < m) {
        int best = 0;
        for (int s = 1; s < 3; s++)
            if (rem[s] > rem[best]) best = s;
        size[best]++;
        rem[best] = -1.0;
        given++;
    }
    /* perm[k]: which row of the class (by file order) lands at position k */
    for (size_t k = 0; k < m; k++)
        perm[k] = k;
    uint64_t state = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(c + 1));
    for (size_t i = m; i > 1; i--) {
        size_t j = (size_t)below(&state, i);
        size_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
    for (size_t k = 0; k < m; k++)
        out[perm[k]] = k < size[0] ? 0 : k < size[0] + size[1] ? 1 : 2;
    dp_free(perm);
    return DP_OK;
}

dp_status prep_split(const int32_t *label, size_t n, int nclass, const double frac[3],
                     uint64_t seed, uint8_t *split, size_t counts[3]) {
    counts[0] = counts[1] = counts[2] = 0;
    size_t *rows = dp_malloc((n + 1) * sizeof *rows);
    uint8_t *plan = dp_malloc(n + 1);
    dp_status st = DP_OK;
    if (!rows || !plan) st = dp_error(DP_E_NOMEM, "out of memory for the split (%zu rows)", n);
    for (int c = 0; c < nclass && st == DP_OK; c++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (label[i] == c) rows[m++] = i;
        if ((st = prep_split_class(m, frac, seed, c, plan))) break;
        for (size_t j = 0; j < m; j++) {
            split[rows[j]] = plan[j];
            counts[plan[j]]++;
        }
    }
    dp_free(rows);
    dp_free(plan);
    return st;
}
