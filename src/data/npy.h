/*
 * npy.h: the NumPy .npy header (format versions 1.0-3.0), internal to the
 * library: parse a header to find dtype, shape and where the data starts;
 * build one for writing (version 1.0, 64-byte aligned data as numpy does).
 */
#ifndef DP_NPY_H
#define DP_NPY_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/status.h"

typedef struct dp_npy_info {
    char descr[8];      /* "<f4" or "<i4" */
    int ndim;           /* 1 or 2 */
    uint64_t shape[2];  /* shape[1] = 1 when ndim == 1 */
    size_t data_offset; /* bytes from the file start to the first element */
} dp_npy_info;

/* Parse the header in buf[0..len) (at least the first 10 bytes plus the
 * header length). `name` names the file in messages. DP_E_FORMAT on anything
 * that is not a little-endian, C-order, 1-D or 2-D array. */
dp_status dp_npy_parse(const char *name, const unsigned char *buf, size_t len, dp_npy_info *info);

/* Write the header of an array into hdr (capacity >= 128); returns its length. */
size_t dp_npy_header(char *hdr, const char *descr, int ndim, uint64_t rows, uint64_t cols);

/* Write header + data to `path` atomically (temporary file, fsync, rename). */
dp_status dp_npy_write(const char *path, const char *descr, int ndim, const void *data,
                       uint64_t rows, uint64_t cols);

#endif
