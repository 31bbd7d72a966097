/*
 * dataset.c: opening a prepared dataset (meta.json + X_<split>.npy +
 * y_<split>.npy) by memory-mapping only the rows asked for, so a rank of a
 * distributed job touches only its byte range of the arrays (DESIGN.md,
 * "Scale"). Everything read is checked against meta.json: a truncated,
 * foreign or inconsistent file is refused with the file named.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/npy.h"

/* One mapped slice of an .npy file: [data, data + bytes) inside a mapping
 * that starts at a page boundary at or before it. */
typedef struct slice {
    void *map;
    size_t map_len;
    const void *data;
} slice;

struct dp_dataset {
    size_t rows_total, row_begin, rows, cols;
    int classes;
    slice x, y;
    char **features; /* cols names */
    char *schema_hash;
    char *meta_text;
};

static void slice_unmap(slice *s) {
    if (s->map && s->map_len) munmap(s->map, s->map_len);
    memset(s, 0, sizeof *s);
}

static char *read_text(const char *path, dp_status *st) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *st = dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, r;
    char *buf = dp_malloc(cap + 1);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap >= (64u << 20)) break; /* meta.json is small; refuse a huge file */
            char *nb = dp_realloc(buf, (cap *= 2) + 1);
            if (!nb) {
                dp_free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        *st = dp_error(DP_E_NOMEM, "%s: out of memory reading it", path);
        return NULL;
    }
    buf[n] = '\0';
    *st = DP_OK;
    return buf;
}

/* Map rows [r0, r1) of an .npy file whose element type must be `descr`,
 * with `cols` columns (1 for a vector) and `rows_expected` rows in all. */
static dp_status map_rows(const char *path, const char *descr, int ndim, size_t cols,
                          size_t rows_expected, size_t r0, size_t r1, slice *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    dp_status s = DP_OK;
    unsigned char head[4096];
    struct stat st;
    ssize_t got = pread(fd, head, sizeof head, 0);
    dp_npy_info info;
    if (fstat(fd, &st) != 0 || got < 0) {
        s = dp_error(DP_E_IO, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    if ((s = dp_npy_parse(path, head, (size_t)got, &info)) != DP_OK) goto done;
    if (strcmp(info.descr, descr) != 0 || info.ndim != ndim) {
        s = dp_error(DP_E_FORMAT, "%s: expected a %d-D array of dtype '%s', found %d-D '%s'", path,
                     ndim, descr, info.ndim, info.descr);
        goto done;
    }
    if (info.shape[0] != rows_expected || (ndim == 2 && info.shape[1] != cols)) {
        s = dp_error(DP_E_FORMAT, "%s: shape (%llu, %llu) does not match meta.json (%zu, %zu)",
                     path, (unsigned long long)info.shape[0], (unsigned long long)info.shape[1],
                     rows_expected, cols);
        goto done;
    }
    uint64_t need = info.data_offset + (uint64_t)rows_expected * cols * 4;
    if ((uint64_t)st.st_size != need) {
        s = dp_error(DP_E_FORMAT, "%s: %s: the file has %lld bytes, its header says %llu", path,
                     (uint64_t)st.st_size < need ? "truncated" : "trailing bytes",
                     (long long)st.st_size, (unsigned long long)need);
        goto done;
    }
    if (r1 > r0) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        uint64_t begin = info.data_offset + (uint64_t)r0 * cols * 4;
        uint64_t end = info.data_offset + (uint64_t)r1 * cols * 4;
        uint64_t aligned = begin / page * page;
        out->map_len = (size_t)(end - aligned);
        out->map = mmap(NULL, out->map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)aligned);
        if (out->map == MAP_FAILED) {
            out->map = NULL;
            s = dp_error(DP_E_IO, "%s: cannot map: %s", path, strerror(errno));
            goto done;
        }
        out->data = (const char *)out->map + (begin - aligned);
    } else {
        static const int32_t empty[1];
        out->data = empty;
    }
done:
    close(fd);
    return s;
}

DP_API void dp_dataset_close(dp_dataset *ds) {
    if (!ds) return;
    slice_unmap(&ds->x);
    slice_unmap(&ds->y);
    if (ds->features)
        for (size_t j = 0; j < ds->cols; j++) dp_free(ds->features[j]);
    dp_free(ds->features);
    dp_free(ds->schema_hash);
    dp_free(ds->meta_text);
    dp_free(ds);
}

static dp_status meta_fail(const char *path, const char *what) {
    return dp_error(DP_E_FORMAT, "%s: not a dpsgd dataset: %s", path, what);
}

DP_API dp_status dp_dataset_open(const char *dir, const char *split, size_t row_begin,
                                 size_t row_end, dp_dataset **out) {
    *out = NULL;
    char path[4096];
    dp_status s;
    if (strcmp(split, "train") && strcmp(split, "val") && strcmp(split, "test"))
        return dp_error(DP_E_USAGE, "unknown split '%s' (expected train, val or test)", split);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    char *text = read_text(path, &s);
    if (!text) return s;
    dp_dataset *ds = dp_calloc(1, sizeof *ds);
    cJSON *meta = cJSON_Parse(text);
    if (!ds) {
        s = dp_error(DP_E_NOMEM, "out of memory");
        goto fail;
    }
    ds->meta_text = text;
    text = NULL;
    if (!meta) {
        s = meta_fail(path, "invalid JSON");
        goto fail;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(meta, "version");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "dpsgd-dataset") != 0) {
        s = meta_fail(path, "expected \"format\": \"dpsgd-dataset\"");
        goto fail;
    }
    if (!cJSON_IsNumber(ver) || ver->valueint != 1) {
        s = meta_fail(path, "expected \"version\": 1");
        goto fail;
    }
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(meta, "columns");
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(meta, "n_features");
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(meta, "n_classes");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(meta, "schema_hash");
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(meta, "splits");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(splits, split);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(sp, "rows");
    if (!cJSON_IsArray(cols) || !cJSON_IsNumber(nf) || nf->valuedouble < 1 ||
        cJSON_GetArraySize(cols) != nf->valueint) {
        s = meta_fail(path, "\"columns\" and \"n_features\" missing or inconsistent");
        goto fail;
    }
    if (!cJSON_IsNumber(nc) || nc->valueint < 2 || nc->valueint > 1 << 20) {
        s = meta_fail(path, "\"n_classes\" must be at least 2");
        goto fail;
    }
    if (!cJSON_IsString(hash)) {
        s = meta_fail(path, "no \"schema_hash\"");
        goto fail;
    }
    if (!cJSON_IsNumber(rows) || rows->valuedouble < 0) {
        s = meta_fail(path, "no row count for the split");
        goto fail;
    }
    ds->cols = (size_t)nf->valueint;
    ds->classes = nc->valueint;
    ds->rows_total = (size_t)rows->valuedouble;
    ds->schema_hash = dp_strdup(hash->valuestring);
    ds->features = dp_calloc(ds->cols, sizeof *ds->features);
    if (!ds->schema_hash || !ds->features) {
        s = dp_error(DP_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t j = 0; j < ds->cols; j++) {
        const cJSON *c = cJSON_GetArrayItem(cols, (int)j);
        if (!cJSON_IsString(c)) {
            s = meta_fail(path, "a column name is not a string");
            goto fail;
        }
        if (!(ds->features[j] = dp_strdup(c->valuestring))) {
            s = dp_error(DP_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (row_end > ds->rows_total) row_end = ds->rows_total;
    if (row_begin > row_end) row_begin = row_end;
    ds->row_begin = row_begin;
    ds->rows = row_end - row_begin;
    snprintf(path, sizeof path, "%s/X_%s.npy", dir, split);
    if ((s = map_rows(path, "<f4", 2, ds->cols, ds->rows_total, row_begin, row_end, &ds->x)))
        goto fail;
    snprintf(path, sizeof path, "%s/y_%s.npy", dir, split);
    if ((s = map_rows(path, "<i4", 1, 1, ds->rows_total, row_begin, row_end, &ds->y))) goto fail;
    /* Labels index the softmax: one out of range would read past a buffer. */
    const int32_t *y = ds->y.data;
    for (size_t i = 0; i < ds->rows; i++) {
        if (y[i] < 0 || y[i] >= ds->classes) {
            s = dp_error(DP_E_FORMAT, "%s: row %zu: label %d outside [0, %d)", path,
                         row_begin + i, (int)y[i], ds->classes);
            goto fail;
        }
    }
    cJSON_Delete(meta);
    *out = ds;
    return DP_OK;
fail:
    cJSON_Delete(meta);
    dp_free(text);
    dp_dataset_close(ds);
    return s;
}

DP_API size_t dp_dataset_rows_total(const dp_dataset *ds) { return ds->rows_total; }
DP_API size_t dp_dataset_row_begin(const dp_dataset *ds) { return ds->row_begin; }
DP_API size_t dp_dataset_rows(const dp_dataset *ds) { return ds->rows; }
DP_API size_t dp_dataset_cols(const dp_dataset *ds) { return ds->cols; }
DP_API int dp_dataset_classes(const dp_dataset *ds) { return ds->classes; }
DP_API const float *dp_dataset_X(const dp_dataset *ds) { return ds->x.data; }
DP_API const int32_t *dp_dataset_y(const dp_dataset *ds) { return ds->y.data; }
DP_API const char *dp_dataset_feature(const dp_dataset *ds, size_t j) {
    return j < ds->cols ? ds->features[j] : NULL;
}
DP_API const char *dp_dataset_schema_hash(const dp_dataset *ds) { return ds->schema_hash; }
DP_API const char *dp_dataset_meta_json(const dp_dataset *ds) { return ds->meta_text; }
