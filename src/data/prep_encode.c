/*
 * prep_encode.c: encode a raw CSV with the encodings a dataset was made with
 * (for `dpsgd predict`). Everything comes from the dataset's meta.json, not
 * from the compiled dictionary, so a model keeps working with its own
 * encoding whatever the library version; the same engine as prep reads the
 * file, in predict mode: every record is kept, in order, with its reason.
 */
#include <errno.h>
#include <omp.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

static dp_status read_meta(const char *dir, char **text, char *path, size_t cap) {
    snprintf(path, cap, "%s/meta.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = 0, c = 1 << 16;
    char *b = dp_malloc(c + 1);
    size_t r;
    while (b && (r = fread(b + n, 1, c - n, f)) > 0) {
        n += r;
        if (n == c) {
            if (c >= ((size_t)64 << 20)) break;
            char *nb = dp_realloc(b, 2 * c + 1);
            if (!nb) {
                dp_free(b);
                b = NULL;
                break;
            }
            b = nb;
            c *= 2;
        }
    }
    fclose(f);
    if (!b) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    b[n] = '\0';
    *text = b;
    return DP_OK;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static dp_status names_from_json(const cJSON *arr, char ***out, size_t *n, const char *where) {
    *out = NULL;
    *n = 0;
    size_t m = (size_t)cJSON_GetArraySize(arr);
    char **names = dp_calloc(m + 1, sizeof *names);
    if (!names) return dp_error(DP_E_NOMEM, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsString(v) || !(names[*n] = dp_strdup(v->valuestring))) {
            prep_free_names(names, *n);
            *n = 0;
            return dp_error(DP_E_FORMAT, "%s: expected an array of strings", where);
        }
        (*n)++;
    }
    *out = names;
    return DP_OK;
}

DP_API void dp_prep_encoded_free(dp_prep_encoded *e) {
    if (!e) return;
    dp_free(e->X);
    dp_free(e->reason);
    dp_free(e->y);
    dp_free(e->line);
    memset(e, 0, sizeof *e);
}

DP_API dp_status dp_prep_encode_file(const char *dataset_dir, const char *csv_path, int threads,
                                     dp_prep_encoded *out) {
    memset(out, 0, sizeof *out);
    char path[4200];
    char *text = NULL;
    DP_TRY(read_meta(dataset_dir, &text, path, sizeof path));
    cJSON *m = cJSON_Parse(text);
    dp_free(text);
    dp_status st = DP_OK;
    prep_feature *feat = NULL;
    size_t nfeat = 0, ncols = 0;
    char **cols = NULL;
    prep_na na = {0};
    prep_task task;
    memset(&task, 0, sizeof task);
    dp_source *src = NULL;
    csv_chunker ck;
    memset(&ck, 0, sizeof ck);
    csv_chunk first;
    memset(&first, 0, sizeof first);
    prep_engine e;
    memset(&e, 0, sizeof e);
    prep_rows rows;
    memset(&rows, 0, sizeof rows);
    if (!m ||
        strcmp(cJSON_GetStringValue(get(m, "format")) ? cJSON_GetStringValue(get(m, "format")) : "",
               "dpsgd-dataset") != 0 ||
        cJSON_GetNumberValue(get(m, "version")) != 1) {
        st = dp_error(DP_E_FORMAT,
                      "%s: not a dpsgd dataset's meta.json (expected \"format\": "
                      "\"dpsgd-dataset\", \"version\": 1)",
                      path);
        goto done;
    }
    const cJSON *in = get(m, "input"), *tj = get(m, "task"), *fj = get(m, "features");
    size_t D = (size_t)cJSON_GetNumberValue(get(m, "n_features"));
    const char *hash = cJSON_GetStringValue(get(m, "schema_hash"));
    if (!cJSON_IsObject(in) || !cJSON_IsObject(tj) || !cJSON_IsArray(fj) || !hash || !D) {
        st = dp_error(DP_E_FORMAT, "%s: lacks input, task, features, n_features or schema_hash",
                      path);
        goto done;
    }
    snprintf(out->schema_hash, sizeof out->schema_hash, "%s", hash);
    nfeat = (size_t)cJSON_GetArraySize(fj);
    feat = dp_calloc(nfeat + 1, sizeof *feat);
    if (!feat) {
        st = dp_error(DP_E_NOMEM, "out of memory");
        goto done;
    }
    size_t total = 0;
    for (size_t k = 0; k < nfeat; k++) {
        if ((st = prep_feature_from_json(&feat[k], cJSON_GetArrayItem(fj, (int)k), path)))
            goto done;
        if (feat[k].col0 != total) {
            st = dp_error(DP_E_FORMAT, "%s: feature %s does not start at column %zu", path,
                          feat[k].name, total);
            goto done;
        }
        total += feat[k].ncols;
    }
    if (total != D) {
        st = dp_error(DP_E_FORMAT, "%s: the features make %zu columns, n_features says %zu", path,
                      total, D);
        goto done;
    }
    const cJSON *naj = get(in, "na");
    if (cJSON_IsArray(naj) && (st = names_from_json(naj, &na.tok, &na.n, path))) goto done;

    dp_csv_options o;
    dp_csv_options_init(&o);
    o.trim = cJSON_IsFalse(get(in, "trim")) ? 0 : 1;
    double mf = cJSON_GetNumberValue(get(in, "max_field"));
    if (mf >= 16) o.max_field = (size_t)mf;
    o.max_record = DP_MAX(o.max_record, 4 * o.max_field);
    dp_source_options so;
    dp_source_options_init(&so);
    so.header = !cJSON_IsFalse(get(in, "header")); /* (a zip's later parts repeat it) */
    if ((st = dp_source_open_with(csv_path, &so, &src))) goto done;
    e.name = dp_source_name(src);
    e.src = src;
    if ((st = csv_chunker_init(&ck, src, 0, o.max_record))) goto done;
    int got;
    if (cJSON_IsFalse(get(in, "header"))) {
        if ((st = names_from_json(get(in, "column_names"), &cols, &ncols, path))) goto done;
        if ((st = csv_chunker_next(&ck, &first, &got))) goto done;
    } else {
        if ((st = prep_read_header(&ck, &first, &o, e.name, &cols, &ncols, &got))) goto done;
    }
    if (!got) {
        st = dp_error(DP_E_EMPTY, "%s: empty file (expected %s)", e.name,
                      cJSON_IsFalse(get(in, "header")) ? "data lines" : "a header line");
        goto done;
    }
    /* the label, where the file has the target column */
    const char *target = cJSON_GetStringValue(get(tj, "target"));
    int have_target = 0;
    for (size_t i = 0; target && i < ncols; i++)
        have_target |= !strcmp(cols[i], target);
    if (have_target) {
        task.target = dp_strdup(target);
        if (!task.target) {
            st = dp_error(DP_E_NOMEM, "out of memory");
            goto done;
        }
        const char *match = cJSON_GetStringValue(get(tj, "target_match"));
        if (match && !strcmp(match, "dictionary"))
            task.target_var = dp_pums_find(target)      ? dp_pums_find(target)
                              : !strcmp(target, "RELP") ? prep_relp_var()
                                                        : NULL;
        char **pos = NULL;
        size_t npos = 0;
        if ((st = names_from_json(get(tj, "positive"), &pos, &npos, path))) goto done;
        task.pos = dp_calloc(npos + 1, sizeof *task.pos);
        for (size_t k = 0; task.pos && k < npos; k++) {
            task.pos[k].text = pos[k];
            task.pos[k].is_int = prep_parse_int(pos[k], strlen(pos[k]), 1, &task.pos[k].iv);
            pos[k] = NULL;
        }
        task.npos = task.pos ? npos : 0;
        prep_free_names(pos, npos);
        if (!task.pos) {
            st = dp_error(DP_E_NOMEM, "out of memory");
            goto done;
        }
    }
    e.copt = o;
    e.ncols = ncols;
    e.colnames = cols;
    e.feat = feat;
    e.nfeat = nfeat;
    e.task = have_target ? &task : NULL;
    e.na = na;
    e.predict = 1;
    e.threads = threads > 0 ? threads : omp_get_max_threads();
    if ((st = prep_engine_map(&e))) goto done;
    if ((st = prep_engine_run(&e, &ck, &first, &rows))) goto done;
    if (rows.n == 0) {
        st = dp_error(DP_E_EMPTY, "%s: no records (expected at least one data line)", e.name);
        goto done;
    }
    out->n = rows.n;
    out->d = D;
    out->X = dp_calloc(rows.n * D + 1, sizeof *out->X);
    out->reason = dp_malloc(rows.n + 1);
    out->y = dp_malloc((rows.n + 1) * sizeof *out->y);
    out->line = dp_malloc((rows.n + 1) * sizeof *out->line);
    if (!out->X || !out->reason || !out->y || !out->line) {
        st = dp_error(DP_E_NOMEM, "out of memory for %zu x %zu encoded values", rows.n, D);
        goto done;
    }
    for (size_t i = 0; i < rows.n; i++) {
        out->reason[i] = rows.reason[i];
        out->line[i] = rows.line[i];
        out->y[i] = rows.reason[i] ? -1 : rows.label[i];
        if (rows.reason[i]) continue;
        out->n_valid++;
        for (size_t k = 0; k < nfeat; k++)
            prep_feature_encode(&feat[k], rows.cells[i * nfeat + k], out->X + i * D);
    }
done:
    if (st) dp_prep_encoded_free(out);
    prep_rows_free(&rows, nfeat);
    prep_engine_free(&e);
    csv_chunk_free(&first);
    csv_chunker_free(&ck);
    dp_source_close(src);
    prep_free_names(cols, ncols);
    prep_free_names(na.tok, na.n);
    prep_task_free(&task);
    for (size_t k = 0; feat && k < nfeat; k++)
        prep_feature_free(&feat[k]);
    dp_free(feat);
    cJSON_Delete(m);
    return st;
}
