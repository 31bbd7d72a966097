/*
 * metrics.c: the metrics.jsonl writer (one JSON object per line, flushed per
 * line so that a killed run keeps what it logged) and the truncation a
 * resumed run applies so the log matches its checkpoint. cJSON for parsing.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/checkpoint.h"
#include "dpsgd/train.h"

struct dp_metrics {
    FILE *f;
    char *path;
};

DP_API dp_status dp_metrics_open(const char *path, int truncate, dp_metrics **out) {
    *out = NULL;
    dp_metrics *m = dp_calloc(1, sizeof *m);
    if (!m || !(m->path = dp_strdup(path))) {
        dp_free(m);
        return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    }
    m->f = fopen(path, truncate ? "w" : "a");
    if (!m->f) {
        dp_status st = dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
        dp_free(m->path);
        dp_free(m);
        return st;
    }
    *out = m;
    return DP_OK;
}

DP_API dp_status dp_metrics_write(dp_metrics *m, const char *json_object) {
    if (strchr(json_object, '\n'))
        return dp_error(DP_E_USAGE, "%s: a metrics record must be one line", m->path);
    if (fputs(json_object, m->f) < 0 || fputc('\n', m->f) < 0 || fflush(m->f))
        return dp_error(DP_E_IO, "%s: write failed: %s", m->path, strerror(errno));
    return DP_OK;
}

DP_API void dp_metrics_close(dp_metrics *m) {
    if (!m) return;
    if (m->f) fclose(m->f);
    dp_free(m->path);
    dp_free(m);
}

DP_API dp_status dp_metrics_truncate_after(const char *path, uint64_t max_step) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? DP_OK : dp_error(DP_E_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *out = dp_malloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    dp_status st = DP_OK;
    while (out && (n = getline(&line, &lcap, f)) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        /* A torn last line (the run was killed mid-write) does not parse: drop it. */
        int keep =
            o && cJSON_IsNumber(s) && s->valuedouble <= (double)max_step && line[n - 1] == '\n';
        cJSON_Delete(o);
        if (!keep) continue;
        if (len + (size_t)n > cap) {
            char *bigger = dp_realloc(out, cap = 2 * (len + (size_t)n));
            if (!bigger) {
                st = dp_error(DP_E_NOMEM, "%s: out of memory", path);
                break;
            }
            out = bigger;
        }
        memcpy(out + len, line, (size_t)n);
        len += (size_t)n;
    }
    free(line);
    fclose(f);
    if (!out) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    if (st == DP_OK) st = dp_file_write_atomic(path, out, len);
    dp_free(out);
    return st;
}
