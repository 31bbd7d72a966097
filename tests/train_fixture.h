/*
 * train_fixture.h: a small synthetic dataset for the training tests, written
 * with dp_npy_write_* and a hand-made meta.json: n rows of d features drawn
 * N(0, 1) with SEX one-hot columns, and labels from a fixed linear rule
 * (linearly separable, with a margin), for splits train/val/test.
 * Header-only (static functions) so each test executable stays one file.
 */
#ifndef DP_TRAIN_FIXTURE_H
#define DP_TRAIN_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

/* Features: x0..x(d-3) numeric, then "SEX=1", "SEX=2". Label: 1 when
 * w.x > 0 with w_j = (-1)^j (j + 1) / d over the numeric columns; rows within
 * a margin of 0.05 of the boundary are pushed out so the classes separate. */
static void fx_make_split(const char *dir, const char *split, size_t n, size_t d, uint64_t *rng) {
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    size_t dn = d - 2;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        float *x = X + i * d;
        for (size_t j = 0; j < dn; j++) {
            x[j] = (float)tu_normal(rng);
            s += x[j] * ((j % 2 ? -1.0 : 1.0) * (double)(j + 1) / (double)dn);
        }
        if (fabs(s) < 0.05) {
            x[0] += s >= 0 ? 0.1f : -0.1f;
            s += s >= 0 ? 0.1 / dn : -0.1 / dn;
        }
        int sex = tu_uniform(rng) < 0.4;
        x[dn] = sex ? 0.0f : 1.0f;
        x[dn + 1] = sex ? 1.0f : 0.0f;
        y[i] = s > 0;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/X_%s.npy", dir, split);
    if (dp_npy_write_f32(path, X, n, d) != DP_OK) abort();
    snprintf(path, sizeof path, "%s/y_%s.npy", dir, split);
    if (dp_npy_write_i32(path, y, n) != DP_OK) abort();
    free(X);
    free(y);
}

/* meta.json with an optional extra member text (e.g. a ledger) or NULL. */
static void fx_write_meta(const char *dir, size_t n_train, size_t n_val, size_t n_test, size_t d,
                          const char *hash, const char *extra) {
    char path[4200], *buf = malloc(65536);
    size_t len = 0;
    len +=
        snprintf(buf + len, 65536 - len,
                 "{\"format\": \"dpsgd-dataset\", \"version\": 1, \"task\": \"fixture\", "
                 "\"n_features\": %zu, \"n_classes\": 2, \"schema_hash\": \"%s\", \"columns\": [",
                 d, hash);
    for (size_t j = 0; j + 2 < d; j++)
        len += snprintf(buf + len, 65536 - len, "\"x%zu\", ", j);
    len += snprintf(buf + len, 65536 - len,
                    "\"SEX=1\", \"SEX=2\"], \"splits\": {\"train\": {\"rows\": %zu}, \"val\": "
                    "{\"rows\": %zu}, \"test\": {\"rows\": %zu}}%s%s}\n",
                    n_train, n_val, n_test, extra ? ", " : "", extra ? extra : "");
    snprintf(path, sizeof path, "%s/meta.json", dir);
    tu_write_file(path, buf, len);
    free(buf);
}

/* A dataset directory (caller frees and tu_rmrf's it). */
static char *fx_dataset(size_t n_train, size_t d, uint64_t seed, const char *hash,
                        const char *extra) {
    char *dir = tu_tempdir();
    uint64_t rng = seed;
    size_t n_val = n_train / 4 + 1, n_test = n_train / 4 + 1;
    fx_make_split(dir, "train", n_train, d, &rng);
    fx_make_split(dir, "val", n_val, d, &rng);
    fx_make_split(dir, "test", n_test, d, &rng);
    fx_write_meta(dir, n_train, n_val, n_test, d, hash ? hash : "fixture-schema-1", extra);
    return dir;
}

#endif
