/*
 * dataset.h: a prepared dataset directory as DESIGN.md specifies:
 * meta.json + X_<split>.npy (float32 [n, d], row-major) + y_<split>.npy
 * (int32 [n]) for split in train, val, test. dpsgd memory-maps the arrays;
 * a rank of a distributed job maps only its byte range of them.
 */
#ifndef DPSGD_DATASET_H
#define DPSGD_DATASET_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef struct dp_dataset dp_dataset;

/* Open split `split` ("train", "val", "test") of the dataset in `dir`,
 * mapping rows [row_begin, row_end) only (row_end = SIZE_MAX: to the end).
 * Refuses (DP_E_FORMAT) a missing, truncated or foreign meta.json or .npy,
 * with the file named in the message. out: the handle. */
DP_API dp_status dp_dataset_open(const char *dir, const char *split, size_t row_begin,
                                 size_t row_end, dp_dataset **out);
DP_API void dp_dataset_close(dp_dataset *ds);

DP_API size_t dp_dataset_rows_total(const dp_dataset *ds); /* rows of the whole split */
DP_API size_t dp_dataset_row_begin(const dp_dataset *ds);  /* first mapped row */
DP_API size_t dp_dataset_rows(const dp_dataset *ds);       /* mapped rows */
DP_API size_t dp_dataset_cols(const dp_dataset *ds);       /* d, features after encoding */
DP_API int dp_dataset_classes(const dp_dataset *ds);       /* k >= 2 */
/* X is [rows, cols] row-major float32, y is [rows] int32 in [0, k); row 0 is
 * global row dp_dataset_row_begin(). Valid until dp_dataset_close. */
DP_API const float *dp_dataset_X(const dp_dataset *ds);
DP_API const int32_t *dp_dataset_y(const dp_dataset *ds);
/* Name of encoded column j ("AGEP", "SCHL=21", ...). */
DP_API const char *dp_dataset_feature(const dp_dataset *ds, size_t j);
/* A hex sha256 over the schema (task, features and their encodings), so a
 * model trained on one dataset refuses data of another schema. */
DP_API const char *dp_dataset_schema_hash(const dp_dataset *ds);
/* The whole meta.json text (owned by the handle). */
DP_API const char *dp_dataset_meta_json(const dp_dataset *ds);

/* NumPy .npy files (format 1.0): write a float32 [rows, cols] or int32 [rows]
 * array atomically (temporary file, fsync, rename). */
DP_API dp_status dp_npy_write_f32(const char *path, const float *a, size_t rows, size_t cols);
DP_API dp_status dp_npy_write_i32(const char *path, const int32_t *a, size_t rows);

#endif
