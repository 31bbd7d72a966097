/*
 * test_dataset.c: .npy files written by dpsgd are read back by numpy (an
 * independent reader) and by dp_dataset_open, for any row range; truncated,
 * foreign and inconsistent files are refused with the file named.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/npy.h"
#include "testutil.h"

static void write_meta(const char *d, size_t rows, size_t cols, int classes) {
    char path[4200], buf[4096];
    int n = snprintf(buf, sizeof buf,
                     "{\"format\":\"dpsgd-dataset\",\"version\":1,\"n_features\":%zu,"
                     "\"n_classes\":%d,\"schema_hash\":\"abc\",\"columns\":[",
                     cols, classes);
    for (size_t j = 0; j < cols; j++) n += snprintf(buf + n, sizeof buf - n, "%s\"f%zu\"", j ? "," : "", j);
    snprintf(buf + n, sizeof buf - n, "],\"splits\":{\"train\":{\"rows\":%zu}}}", rows);
    snprintf(path, sizeof path, "%s/meta.json", d);
    cr_assert_eq(tu_write_file(path, buf, strlen(buf)), 0);
}

/* rows x cols of random floats and labels in [0, classes). */
static void make(size_t rows, size_t cols, int classes, float **X, int32_t **y, uint64_t *seed) {
    *X = malloc(rows * cols * sizeof **X + 4);
    *y = malloc(rows * sizeof **y + 4);
    for (size_t i = 0; i < rows * cols; i++) (*X)[i] = (float)tu_normal(seed);
    for (size_t i = 0; i < rows; i++) (*y)[i] = (int32_t)(tu_next(seed) % (uint64_t)classes);
    char path[4200];
    snprintf(path, sizeof path, "%s/X_train.npy", tu_dir);
    cr_assert_eq(dp_npy_write_f32(path, *X, rows, cols), DP_OK, "%s", dp_last_error());
    snprintf(path, sizeof path, "%s/y_train.npy", tu_dir);
    cr_assert_eq(dp_npy_write_i32(path, *y, rows), DP_OK, "%s", dp_last_error());
    write_meta(tu_dir, rows, cols, classes);
}

TestSuite(dataset, .init = tu_dir_init, .fini = tu_dir_fini);

Test(dataset, every_row_range_maps_the_rows_written) {
    uint64_t seed = tu_seed();
    size_t rows = 5000, cols = 7; /* rows*cols*4 is not a multiple of the page size */
    float *X;
    int32_t *y;
    make(rows, cols, 3, &X, &y, &seed);
    size_t ranges[][2] = {{0, SIZE_MAX}, {0, 1}, {1, 2}, {1023, 4097}, {4999, 5000}, {2500, 2500}, {10, 9999}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        dp_dataset *ds;
        cr_assert_eq(dp_dataset_open(tu_dir, "train", ranges[r][0], ranges[r][1], &ds), DP_OK, "%s",
                     dp_last_error());
        size_t b = ranges[r][0], e = ranges[r][1] > rows ? rows : ranges[r][1];
        if (b > e) b = e;
        cr_assert_eq(dp_dataset_rows_total(ds), rows);
        cr_assert_eq(dp_dataset_row_begin(ds), b);
        cr_assert_eq(dp_dataset_rows(ds), e - b);
        cr_assert_eq(dp_dataset_cols(ds), cols);
        cr_assert_eq(dp_dataset_classes(ds), 3);
        if (e > b) {
            cr_assert_eq(memcmp(dp_dataset_X(ds), X + b * cols, (e - b) * cols * 4), 0);
            cr_assert_eq(memcmp(dp_dataset_y(ds), y + b, (e - b) * 4), 0);
        }
        cr_assert_str_eq(dp_dataset_feature(ds, 6), "f6");
        cr_assert_str_eq(dp_dataset_schema_hash(ds), "abc");
        dp_dataset_close(ds);
    }
    free(X);
    free(y);
}

Test(dataset, numpy_reads_what_dpsgd_writes) {
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
        cr_skip_test("numpy is not installed for /usr/bin/python3");
    }
    uint64_t seed = tu_seed();
    float *X;
    int32_t *y;
    make(333, 5, 2, &X, &y, &seed);
    /* numpy sums in double; compare with our own double sum of the same values. */
    double sx = 0, sy = 0;
    for (size_t i = 0; i < 333 * 5; i++) sx += X[i] * (double)(i % 5 + 1);
    for (size_t i = 0; i < 333; i++) sy += y[i];
    char cmd[8400];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; X=np.load('%s/X_train.npy'); "
             "y=np.load('%s/y_train.npy'); assert X.dtype==np.float32 and X.shape==(333,5); "
             "assert y.dtype==np.int32 and y.shape==(333,); "
             "print('%%.6f %%d' %% ((X.astype(np.float64)*np.arange(1,6)).sum(), y.sum()))\"",
             tu_dir, tu_dir);
    FILE *p = popen(cmd, "r");
    double px = 0;
    long long py = -1;
    cr_assert_eq(fscanf(p, "%lf %lld", &px, &py), 2);
    cr_assert_eq(pclose(p), 0);
    cr_assert_float_eq(px, sx, 1e-3);
    cr_assert_eq(py, (long long)sy);
    free(X);
    free(y);
}

static void expect_refused(const char *what, const char *needle) {
    dp_dataset *ds = (dp_dataset *)1;
    dp_status s = dp_dataset_open(tu_dir, "train", 0, SIZE_MAX, &ds);
    cr_assert_neq(s, DP_OK, "%s must be refused", what);
    cr_assert_null(ds);
    cr_assert(strstr(dp_last_error(), needle), "%s: message '%s' lacks '%s'", what, dp_last_error(),
              needle);
}

Test(dataset, truncated_foreign_and_inconsistent_files_are_refused) {
    uint64_t seed = tu_seed();
    float *X;
    int32_t *y;
    make(100, 4, 2, &X, &y, &seed);
    char path[4200];
    snprintf(path, sizeof path, "%s/X_train.npy", tu_dir);
    size_t len;
    char *bytes = tu_read_file(path, &len);
    tu_write_file(path, bytes, len - 3);
    expect_refused("a truncated X", "truncated");
    tu_write_file(path, "hello, world", 12);
    expect_refused("a foreign X", "not a NumPy");
    tu_write_file(path, bytes, len);
    write_meta(tu_dir, 101, 4, 2);
    expect_refused("rows that disagree with meta.json", "does not match meta.json");
    write_meta(tu_dir, 100, 4, 2);
    y[17] = 2;
    snprintf(path, sizeof path, "%s/y_train.npy", tu_dir);
    dp_npy_write_i32(path, y, 100);
    expect_refused("a label out of range", "row 17");
    snprintf(path, sizeof path, "%s/meta.json", tu_dir);
    tu_write_file(path, "{\"format\":\"other\"}", 18);
    expect_refused("a foreign meta.json", "not a dpsgd dataset");
    tu_write_file(path, "{", 1);
    expect_refused("broken JSON", "invalid JSON");
    free(bytes);
    free(X);
    free(y);
}

Test(dataset, npy_header_is_64_byte_aligned_and_parses_back) {
    char hdr[128];
    size_t n = dp_npy_header(hdr, "<f4", 2, 123456789012ULL, 77);
    cr_assert_eq(n % 64, 0);
    cr_assert_eq(hdr[n - 1], '\n');
    dp_npy_info info;
    cr_assert_eq(dp_npy_parse("h", (unsigned char *)hdr, n, &info), DP_OK);
    cr_assert_eq(info.shape[0], 123456789012ULL);
    cr_assert_eq(info.shape[1], 77);
    cr_assert_eq(info.ndim, 2);
    cr_assert_str_eq(info.descr, "<f4");
    cr_assert_eq(info.data_offset, n);
}
