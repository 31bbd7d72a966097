/*
 * prep.c: `dpsgd prep` as a library call: check the config, read the header,
 * build the task and its feature columns, run the parallel engine
 * (prep_engine.c), decide what the data must decide (kinds of inferred
 * columns, imputation with --stats exact), split, encode into the .npy
 * arrays and write meta.json (format in docs/prep.md), all inside a
 * temporary directory that is renamed into place only when complete. On R
 * MPI ranks (dp_prep_run_dist) each phase runs on every rank over its share
 * of the input and the results are combined (prep_dist.c), so that the
 * dataset is the one-process dataset byte for byte.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/prep_dp.h"
#include "data/prep_internal.h"
#include "data/source_internal.h"
#include "dpsgd/dataset.h"
#include "dpsgd/version.h"

struct dp_prep_result {
    char *meta;
};

DP_API void dp_prep_config_init(dp_prep_config *c) {
    memset(c, 0, sizeof *c);
    c->dictionary = 1;
    c->split[0] = 0.8;
    c->split[1] = 0.1;
    c->split[2] = 0.1;
    c->stats = DP_PREP_STATS_PUBLIC;
}

DP_API void dp_prep_result_free(dp_prep_result *r) {
    if (!r) return;
    dp_free(r->meta);
    dp_free(r);
}

DP_API const char *dp_prep_result_meta(const dp_prep_result *r) {
    return r ? r->meta : NULL;
}

static const char *const reason_names[DP_PREP_REASONS] = {
    "valid",        "wrong_field_count", "bad_quoting",   "missing_label",    "non_numeric",
    "out_of_range", "missing_key",       "duplicate_key", "not_in_population"};

DP_API const char *dp_prep_reason_name(int reason) {
    return reason >= 0 && reason < DP_PREP_REASONS ? reason_names[reason] : "unknown";
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static dp_status check_config(const dp_prep_config *c) {
    if (!c->input || !*c->input) return dp_error(DP_E_USAGE, "no input file given");
    if (!c->output || !*c->output) return dp_error(DP_E_USAGE, "no output directory given (-o)");
    if (c->stats != DP_PREP_STATS_PUBLIC && c->stats != DP_PREP_STATS_EXACT &&
        c->stats != DP_PREP_STATS_DP)
        return dp_error(DP_E_USAGE, "unknown statistics source %d", (int)c->stats);
    double sum = 0;
    for (int s = 0; s < 3; s++) {
        if (!(c->split[s] >= 0 && c->split[s] <= 1))
            return dp_error(DP_E_USAGE, "--split: fractions must lie in [0, 1], got %g",
                            c->split[s]);
        sum += c->split[s];
    }
    if (fabs(sum - 1) > 1e-9 || c->split[0] <= 0)
        return dp_error(DP_E_USAGE,
                        "--split %g,%g,%g: expected three fractions (train, validation, test) "
                        "that sum to 1, with a training share above 0",
                        c->split[0], c->split[1], c->split[2]);
    return DP_OK;
}

/* Split "a,b,c" into trimmed names. */
static dp_status split_names(const char *list, char ***out, size_t *n, const char *opt) {
    prep_value *v;
    DP_TRY(prep_values_parse(list, &v, n, opt));
    char **names = dp_calloc(*n + 1, sizeof *names);
    if (!names) {
        prep_values_free(v, *n);
        return dp_error(DP_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < *n; i++) {
        names[i] = v[i].text;
        v[i].text = NULL;
    }
    prep_values_free(v, *n);
    *out = names;
    return DP_OK;
}

static int in_list(const char *list, const char *name) {
    if (!list) return 0;
    size_t n = strlen(name);
    for (const char *s = list; *s;) {
        while (*s == ' ')
            s++;
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && s[len - 1] == ' ')
            len--;
        if (len == n && memcmp(s, name, n) == 0) return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

/* The column named by "--range COL:LO:HI" or "--categories COL:..." */
static int spec_is_for(const char *spec, const char *name, size_t *rest) {
    const char *colon = strchr(spec, ':');
    if (!colon) return 0;
    size_t n = (size_t)(colon - spec);
    if (strlen(name) != n || memcmp(spec, name, n) != 0) return 0;
    *rest = n + 1;
    return 1;
}

static dp_status build_feature(prep_feature *f, const dp_prep_config *c, const char *name,
                               const dp_pums_var *var) {
    size_t rest;
    for (size_t i = 0; i < c->n_ranges; i++) {
        if (!spec_is_for(c->ranges[i], name, &rest)) continue;
        const char *s = c->ranges[i] + rest;
        char *end;
        double lo = strtod(s, &end), hi = NAN;
        if (*end == ':') hi = strtod(end + 1, &end);
        if (*end || !isfinite(lo) || !isfinite(hi) || !(lo < hi))
            return dp_error(DP_E_USAGE, "--range %s: expected COL:LO:HI with LO < HI",
                            c->ranges[i]);
        return prep_feature_from_range(f, name, lo, hi);
    }
    for (size_t i = 0; i < c->n_categories; i++) {
        if (!spec_is_for(c->categories[i], name, &rest)) continue;
        char *list = dp_strdup(c->categories[i] + rest);
        if (!list) return dp_error(DP_E_NOMEM, "out of memory");
        for (char *p = list; *p; p++)
            if (*p == '|') *p = ',';
        char **vals;
        size_t n;
        dp_status st = split_names(list, &vals, &n, "--categories");
        dp_free(list);
        if (st) return st;
        for (size_t k = 0; k < n && !st; k++)
            if (!*vals[k])
                st = dp_error(DP_E_USAGE, "--categories %s: an empty category", c->categories[i]);
        if (!st) st = prep_feature_from_categories(f, name, vals, n);
        prep_free_names(vals, n);
        return st;
    }
    if (in_list(c->categorical, name)) return prep_feature_inferred(f, name, 1);
    if (var) return prep_feature_from_dictionary(f, var);
    return prep_feature_inferred(f, name, 0);
}

static dp_status check_overrides(const dp_prep_config *c, const prep_task *t) {
    const char *const *lists[2] = {c->ranges, c->categories};
    size_t counts[2] = {c->n_ranges, c->n_categories};
    const char *opts[2] = {"--range", "--categories"};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            int found = 0;
            size_t rest;
            for (size_t k = 0; k < t->nfeat && !found; k++)
                found = spec_is_for(lists[l][i], t->features[k], &rest);
            if (!found)
                return dp_error(DP_E_USAGE, "%s %s: expected COL:... naming one of the features",
                                opts[l], lists[l][i]);
        }
    }
    return DP_OK;
}

/* ---- meta.json ---- */

static cJSON *task_json(const prep_task *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", t->name);
    cJSON_AddStringToObject(j, "target", t->target);
    cJSON *pos = cJSON_AddArrayToObject(j, "positive");
    for (size_t k = 0; k < t->npos; k++)
        cJSON_AddItemToArray(pos, cJSON_CreateString(t->pos[k].text));
    cJSON_AddStringToObject(j, "population", t->population);
    if (t->pop) {
        cJSON *pop = cJSON_AddArrayToObject(j, "population_values");
        for (size_t k = 0; k < t->npop; k++)
            cJSON_AddItemToArray(pop, cJSON_CreateString(t->pop[k].text));
    } else {
        cJSON_AddNullToObject(j, "population_values");
    }
    cJSON_AddStringToObject(j, "target_match", t->target_var ? "dictionary" : "text");
    cJSON *cl = cJSON_AddArrayToObject(j, "classes");
    cJSON_AddItemToArray(cl, cJSON_CreateString(t->classes[0]));
    cJSON_AddItemToArray(cl, cJSON_CreateString(t->classes[1]));
    return j;
}

static dp_status schema_hash(cJSON *meta, char hex[65]) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToObject(s, "task", cJSON_Duplicate(cJSON_GetObjectItem(meta, "task"), 1));
    cJSON_AddItemToObject(s, "features", cJSON_Duplicate(cJSON_GetObjectItem(meta, "features"), 1));
    cJSON_AddItemToObject(s, "columns", cJSON_Duplicate(cJSON_GetObjectItem(meta, "columns"), 1));
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (!text) return dp_error(DP_E_NOMEM, "out of memory for the schema hash");
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
    cJSON_free(text);
    sodium_bin2hex(hex, 65, h, sizeof h);
    return DP_OK;
}

static dp_status write_text(const char *dir, const char *name, const char *text) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return dp_error(DP_E_IO, "%s: cannot write: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF && fflush(f) == 0 &&
             fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    return ok ? DP_OK : dp_error(DP_E_IO, "%s: cannot write: %s", path, strerror(errno));
}

/* ---- the run ---- */

/* How the input is read: by one process; by rank 0 alone (a stream that
 * cannot be entered in the middle: gzip, zip, standard input); or by every
 * rank over its byte range of a plain file. */
enum { READ_ONE = 0, READ_RANK0 = 1, READ_RANGES = 2 };
static const char *const read_modes[3] = {
    "one process", "rank 0 alone (a compressed or streamed input has no byte ranges)",
    "every rank its byte range of the file, cut at record boundaries"};

typedef struct run {
    const dp_prep_config *c;
    dp_comm *comm;
    int rank, ranks, mode;
    char *tmp;       /* the temporary dataset directory (rank 0 made it; every rank knows it) */
    dp_source *src;  /* rank 0: the whole input (header, SHA-256, meta.json's source) */
    dp_source *part; /* READ_RANGES: this rank's byte range */
    csv_chunker ck;
    csv_chunk first;
    char *name; /* the input as messages name it (rank 0's dp_source_name) */
    uint64_t data_begin, data_line, size; /* where the records start; the file's size */
    char **cols;
    size_t ncols;
    int cols_from_option;
    prep_task task;
    prep_feature *feat;
    size_t nfeat;
    prep_na na;
    prep_engine e;
    prep_rows rows;   /* this rank's rows; counts of all ranks after combine() */
    uint64_t n_total; /* kept rows of all ranks */
    uint8_t *split;   /* [rows.n] */
    size_t *index;    /* [rows.n]: row within this rank's part of its split */
    size_t local[3];  /* this rank's rows per split */
    size_t offset[3]; /* rows of the lower ranks per split */
    float *X[3];
    int32_t *y[3];
    cJSON *meta;
    prep_dp dp; /* --stats dp: the release's noise multiplier, key and ledger */
    double t0, t_parsed, t_encoded, t_written; /* phase ends (rank 0's), for meta.json "run" */
} run;

static void run_free(run *r) {
    csv_chunk_free(&r->first);
    csv_chunker_free(&r->ck);
    dp_source_close(r->part);
    dp_source_close(r->src);
    dp_free(r->name);
    dp_free(r->tmp);
    prep_free_names(r->cols, r->ncols);
    prep_rows_free(&r->rows, r->nfeat);
    prep_engine_free(&r->e);
    for (size_t k = 0; r->feat && k < r->nfeat; k++)
        prep_feature_free(&r->feat[k]);
    dp_free(r->feat);
    prep_task_free(&r->task);
    prep_free_names(r->na.tok, r->na.n);
    dp_free(r->split);
    dp_free(r->index);
    for (int s = 0; s < 3; s++) {
        dp_free(r->X[s]);
        dp_free(r->y[s]);
    }
    cJSON_Delete(r->meta);
}

/* Where line `line` of the input lies, for a message: the file (a part of a
 * zip of several) and the line there. Ranks other than 0 have no source;
 * only rank 0 reads a zip. */
static const char *locate(const run *r, uint64_t line, uint64_t *local) {
    const char *name = r->name;
    *local = line;
    if (r->src) dp_source_locate(r->src, line, &name, local);
    return name;
}

/* A reason's first example, "file:line:col: detail". A duplicate key also
 * says where it was first seen: a line, and in a zip of several parts, the
 * part when it is not the duplicate's own. */
static void first_text(const run *r, const prep_first *f, char *out, size_t cap) {
    uint64_t line;
    const char *name = locate(r, f->line, &line);
    char detail[sizeof f->detail + 600];
    snprintf(detail, sizeof detail, "%s", f->detail);
    if (f->seen) {
        uint64_t local;
        const char *where = locate(r, f->seen, &local);
        int other = r->src && dp_source_parts(r->src) > 1;
        snprintf(detail, sizeof detail, "%s on line %llu%s%s (expected each person once)",
                 f->detail, (unsigned long long)local, other ? " of " : "", other ? where : "");
    }
    snprintf(out, cap, "%s:%llu:%llu: %s", name, (unsigned long long)line,
             (unsigned long long)f->col, detail);
}

/* The "no valid record" message: counts of every reason and the first one. */
static dp_status no_valid(const run *r) {
    char what[700] = "", first[1500] = "";
    for (int k = 1; k < DP_PREP_REASONS; k++) {
        if (!r->rows.dropped[k]) continue;
        size_t u = strlen(what);
        snprintf(what + u, sizeof what - u, "%s%s %llu", *what ? ", " : "", reason_names[k],
                 (unsigned long long)r->rows.dropped[k]);
        if (!*first && r->rows.first[k].have) {
            char ex[1400];
            first_text(r, &r->rows.first[k], ex, sizeof ex);
            snprintf(first, sizeof first, "; first: %s", ex);
        }
    }
    if (r->rows.filtered) {
        size_t u = strlen(what);
        snprintf(what + u, sizeof what - u, "%snot_in_population %llu", *what ? ", " : "",
                 (unsigned long long)r->rows.filtered);
    }
    return dp_error(DP_E_EMPTY,
                    "%s: no valid record in the population of task %s (%llu rows read: %s%s)",
                    r->name, r->task.name, (unsigned long long)r->rows.records, what, first);
}

/* Rank 0's bytes of *buf (*len of them) to every rank (*buf allocated on the
 * others). Collective. */
static dp_status share(run *r, char **buf, uint64_t *len) {
    DP_TRY(prep_bcast(r->comm, len, sizeof *len, 0));
    if (r->rank != 0) {
        *buf = dp_malloc(*len + 1);
        if (*buf) (*buf)[*len] = '\0';
    }
    DP_TRY(prep_agree(r->comm, *buf ? DP_OK : dp_error(DP_E_NOMEM, "out of memory")));
    return prep_bcast(r->comm, *buf, *len, 0);
}

/* Rank 0: open the input, read its header (or, with --columns, its first
 * chunk), and see how it can be read. */
static dp_status open_input(run *r) {
    const dp_prep_config *c = r->c;
    dp_source_options so;
    dp_source_options_init(&so);
    so.header = !r->cols_from_option; /* a zip's later parts repeat the header: dropped */
    DP_TRY(dp_source_open_with(c->input, &so, &r->src));
    r->name = dp_strdup(dp_source_name(r->src));
    if (!r->name) return dp_error(DP_E_NOMEM, "out of memory");
    r->e.name = r->name;
    r->e.src = r->src;
    DP_TRY(csv_chunker_init(&r->ck, r->src, c->chunk_bytes, r->e.copt.max_record));
    int got;
    if (r->cols_from_option) {
        DP_TRY(csv_chunker_next(&r->ck, &r->first, &got));
        if (!got) return dp_error(DP_E_EMPTY, "%s: empty file (expected data lines)", r->name);
    } else {
        DP_TRY(prep_read_header(&r->ck, &r->first, &r->e.copt, r->name, &r->cols, &r->ncols,
                                &got));
        if (!got)
            return dp_error(DP_E_EMPTY,
                            "%s: empty file (expected a header line with the column names)",
                            r->name);
    }
    r->data_begin = r->first.offset + r->first.start;
    r->data_line = r->first.line;
    r->size = dp_source_file_bytes(r->src);
    r->mode = r->ranks == 1 ? READ_ONE
              : dp_source_kind_of(r->src) == DP_SOURCE_PLAIN && source_is_regular(r->src)
                  ? READ_RANGES
                  : READ_RANK0;
    return DP_OK;
}

/* Rank 0's header, name and reading mode to every rank. Collective. */
static dp_status share_header(run *r) {
    uint64_t h[6] = {(uint64_t)r->mode, r->data_begin, r->data_line, r->size, r->ncols, 0};
    char *blob = NULL;
    if (r->rank == 0) { /* the name, then the column names, each NUL-terminated */
        size_t len = strlen(r->name) + 1;
        for (size_t i = 0; !r->cols_from_option && i < r->ncols; i++)
            len += strlen(r->cols[i]) + 1;
        blob = dp_malloc(len);
        if (blob) {
            char *p = blob;
            memcpy(p, r->name, strlen(r->name) + 1);
            p += strlen(r->name) + 1;
            for (size_t i = 0; !r->cols_from_option && i < r->ncols; i++) {
                memcpy(p, r->cols[i], strlen(r->cols[i]) + 1);
                p += strlen(r->cols[i]) + 1;
            }
        }
        h[5] = len;
    }
    dp_status st =
        prep_agree(r->comm, r->rank || blob ? DP_OK : dp_error(DP_E_NOMEM, "out of memory"));
    if (!st) st = prep_bcast(r->comm, h, sizeof h, 0);
    if (!st) st = share(r, &blob, &h[5]);
    if (!st && r->rank != 0) {
        r->mode = (int)h[0];
        r->data_begin = h[1];
        r->data_line = h[2];
        r->size = h[3];
        r->name = dp_strdup(blob);
        r->e.name = r->name;
        if (!r->cols_from_option) {
            r->ncols = (size_t)h[4];
            r->cols = dp_calloc(r->ncols + 1, sizeof *r->cols);
            const char *p = blob + strlen(blob) + 1;
            for (size_t i = 0; r->cols && i < r->ncols; i++) {
                if (!(r->cols[i] = dp_strdup(p))) break;
                p += strlen(p) + 1;
            }
        }
        if (!r->name ||
            (!r->cols_from_option && (!r->cols || (r->ncols && !r->cols[r->ncols - 1]))))
            st = dp_error(DP_E_NOMEM, "out of memory for the header");
    }
    dp_free(blob);
    return prep_agree(r->comm, st);
}

/* The task, its features and the engine's column map: a function of the
 * config and the header, the same on every rank. */
static dp_status build_engine(run *r) {
    const dp_prep_config *c = r->c;
    char where[4200];
    if (r->cols_from_option) {
        snprintf(where, sizeof where, "--columns");
    } else {
        uint64_t line;
        const char *name = locate(r, r->data_line - 1, &line);
        snprintf(where, sizeof where, "%s:%llu", name, (unsigned long long)line);
    }
    DP_TRY(prep_task_build(&r->task, c, r->cols, r->ncols, where));
    DP_TRY(check_overrides(c, &r->task));
    r->nfeat = r->task.nfeat;
    r->feat = dp_calloc(r->nfeat + 1, sizeof *r->feat);
    if (!r->feat) return dp_error(DP_E_NOMEM, "out of memory");
    for (size_t k = 0; k < r->nfeat; k++)
        DP_TRY(build_feature(&r->feat[k], c, r->task.features[k], r->task.feature_vars[k]));
    if (c->stats == DP_PREP_STATS_DP) DP_TRY(prep_dp_check_domains(r->feat, r->nfeat));
    if (c->na) DP_TRY(split_names(c->na, &r->na.tok, &r->na.n, "--na"));
    r->e.ncols = r->ncols;
    r->e.colnames = r->cols;
    r->e.feat = r->feat;
    r->e.nfeat = r->nfeat;
    r->e.task = &r->task;
    r->e.na = r->na;
    r->e.keyed = r->task.key;
    r->e.keep_keys = r->ranks > 1;
    r->e.threads = c->threads > 0 ? c->threads : omp_get_max_threads();
    return prep_engine_map(&r->e);
}

/* Parse this rank's records: its byte range, the whole stream (rank 0 of
 * READ_ONE or READ_RANK0, on the chunker that read the header), or nothing. */
static dp_status parse_part(run *r) {
    if (r->mode == READ_RANGES) {
        uint64_t b, e, line;
        DP_TRY(prep_dist_range(r->comm, r->c->input, r->data_begin, r->data_line, r->size, &b, &e,
                               &line));
        /* rank 0's header chunk is done with; its source stays for the hash */
        csv_chunk_free(&r->first);
        csv_chunker_free(&r->ck);
        dp_status st = source_open_range(r->c->input, b, e, &r->part);
        if (!st) st = csv_chunker_init(&r->ck, r->part, r->c->chunk_bytes, r->e.copt.max_record);
        if (!st) {
            r->ck.line = line; /* where this range starts in the file */
            r->ck.offset = b;
            r->ck.started = 1; /* no byte order mark past the header */
            int got;
            st = csv_chunker_next(&r->ck, &r->first, &got);
        }
        if (!st) st = prep_engine_run(&r->e, &r->ck, &r->first, &r->rows);
        return prep_agree_idle(r->comm, st);
    }
    if (r->rank == 0)
        return prep_agree_idle(r->comm, prep_engine_run(&r->e, &r->ck, &r->first, &r->rows));
    /* an empty final chunk: the engine's counts and tables, no rows */
    dp_status st = DP_OK;
    r->first.buf = dp_malloc(16);
    r->first.cap = 16;
    r->first.final = 1;
    r->first.line = r->data_line;
    if (!r->first.buf) st = dp_error(DP_E_NOMEM, "out of memory");
    if (!st) st = prep_engine_run(&r->e, NULL, &r->first, &r->rows);
    return prep_agree_idle(r->comm, st);
}

static dp_status read_input(run *r) {
    const dp_prep_config *c = r->c;
    dp_csv_options o;
    dp_csv_options_init(&o);
    o.trim = 1;
    if (c->max_field) o.max_field = c->max_field;
    o.max_record = DP_MAX(o.max_record, 4 * o.max_field);
    r->e.copt = o;
    dp_status st = DP_OK;
    if (c->columns) {
        st = split_names(c->columns, &r->cols, &r->ncols, "--columns");
        for (size_t i = 0; !st && i < r->ncols; i++)
            for (size_t j = 0; !st && j < i; j++)
                if (!strcmp(r->cols[i], r->cols[j]))
                    st =
                        dp_error(DP_E_USAGE, "--columns: the name '%s' is given twice", r->cols[i]);
        r->cols_from_option = 1;
    }
    if (!st && r->rank == 0) st = open_input(r);
    DP_TRY(prep_agree_idle(r->comm, st));
    DP_TRY(share_header(r));
    DP_TRY(prep_agree(r->comm, build_engine(r)));
    DP_TRY(parse_part(r));
    r->t_parsed = now();
    /* one file's worth of counts, duplicates and first examples */
    DP_TRY(prep_dist_dedup(r->comm, &r->e, &r->rows));
    DP_TRY(prep_dist_counts(r->comm, &r->e, &r->rows, &r->n_total));
    if (r->rows.records == 0)
        return dp_error(DP_E_EMPTY,
                        "%s: no records after the header (expected at least one data line)",
                        r->name);
    if (r->n_total == 0) return no_valid(r);
    return DP_OK;
}

/* Decide the columns the data must decide, then imputation and layout
 * (collective: every rank's rows count). */
static dp_status finalize(run *r, size_t *D) {
    const size_t nf = r->nfeat;
    size_t col = 0;
    const int dp = r->c->stats == DP_PREP_STATS_DP;
    /* --stats dp: one Gaussian release of all nf columns' histograms (prep_dp.c) */
    if (dp) DP_TRY(prep_dp_setup(r->c, nf, r->comm, &r->dp));
    for (size_t k = 0; k < nf; k++) {
        prep_feature *f = &r->feat[k];
        if (f->inferred) DP_TRY(prep_dist_strings(r->comm, f, &r->rows, k, nf));
        if (dp)
            DP_TRY(prep_dp_finalize(f, &r->dp, k, r->rows.cells + k, r->rows.n, nf, col, r->comm));
        else
            DP_TRY(prep_feature_finalize(f, r->c->stats, r->rows.cells + k, r->rows.n, nf, col,
                                         r->comm));
        col += f->ncols;
    }
    *D = col;
    return DP_OK;
}

static const char *split_names_[3] = {"train", "val", "test"};

/* [R][k] of every rank's mine[0..k), then the sums over all ranks and over
 * the lower ranks. Collective. */
static dp_status sums_below(run *r, const uint64_t *mine, int k, uint64_t *total, uint64_t *below) {
    const size_t R = (size_t)r->ranks;
    uint64_t *all = dp_calloc(R * (size_t)k + 1, sizeof *all);
    DP_TRY(prep_agree(r->comm, all ? DP_OK : dp_error(DP_E_NOMEM, "out of memory")));
    memcpy(all + (size_t)r->rank * (size_t)k, mine, (size_t)k * sizeof *all);
    dp_status st = prep_sum(r->comm, all, R * (size_t)k);
    for (int j = 0; j < k && !st; j++) {
        total[j] = below[j] = 0;
        for (size_t q = 0; q < R; q++) {
            total[j] += all[q * (size_t)k + (size_t)j];
            if (q < (size_t)r->rank) below[j] += all[q * (size_t)k + (size_t)j];
        }
    }
    dp_free(all);
    return st;
}

/*
 * The stratified split needs the global place of each row in its class:
 * the rows of a class on lower ranks come first (file order), so an
 * exclusive sum of per-rank class counts gives it, and prep_split_class
 * gives the part of the j-th row of a class from (m, fractions, seed) alone.
 * Rows keep file order within a split, so this rank's rows of split s are
 * the contiguous slice starting after the lower ranks' rows of s: each rank
 * encodes and writes its slice of each array in place.
 */
static dp_status encode_and_write(run *r, size_t D, size_t counts[3], size_t pos[3]) {
    const size_t n = r->rows.n, nf = r->nfeat;
    uint64_t cls[2] = {0, 0}, m[2], below[2];
    for (size_t i = 0; i < n; i++)
        cls[r->rows.label[i]]++;
    DP_TRY(sums_below(r, cls, 2, m, below));
    uint8_t *plan[2] = {dp_malloc(m[0] + 1), dp_malloc(m[1] + 1)};
    r->split = dp_malloc(n + 1);
    r->index = dp_malloc((n + 1) * sizeof *r->index);
    dp_status st = DP_OK;
    if (!plan[0] || !plan[1] || !r->split || !r->index)
        st = dp_error(DP_E_NOMEM, "out of memory for the split");
    for (int c = 0; c < 2 && !st; c++)
        st = prep_split_class((size_t)m[c], r->c->split, r->c->seed, c, plan[c]);
    if (!st) {
        uint64_t j[2] = {below[0], below[1]};
        for (size_t i = 0; i < n; i++) {
            int c = r->rows.label[i];
            uint8_t s = plan[c][j[c]++];
            r->split[i] = s;
            r->index[i] = r->local[s]++;
        }
    }
    dp_free(plan[0]);
    dp_free(plan[1]);
    DP_TRY(prep_agree(r->comm, st));
    uint64_t lc[6] = {r->local[0], r->local[1], r->local[2], 0, 0, 0}, tot[6], low[6];
    for (size_t i = 0; i < n; i++)
        lc[3 + r->split[i]] += r->rows.label[i] == 1;
    DP_TRY(sums_below(r, lc, 6, tot, low));
    for (int s = 0; s < 3; s++) {
        counts[s] = (size_t)tot[s];
        pos[s] = (size_t)tot[3 + s];
        r->offset[s] = (size_t)low[s];
    }
    for (int s = 0; s < 3 && !st; s++) {
        if (r->local[s] && D > SIZE_MAX / sizeof(float) / r->local[s]) {
            st = dp_error(DP_E_NOMEM, "the %s split is too large", split_names_[s]);
            break;
        }
        r->X[s] = dp_malloc((r->local[s] * D + 1) * sizeof(float)); /* rows zeroed as encoded */
        r->y[s] = dp_malloc((r->local[s] + 1) * sizeof(int32_t));
        if (!r->X[s] || !r->y[s])
            st = dp_error(DP_E_NOMEM, "out of memory for the %s split (%zu x %zu)", split_names_[s],
                          r->local[s], D);
    }
    DP_TRY(prep_agree(r->comm, st));
    const prep_cell *cells = r->rows.cells;
#pragma omp parallel for schedule(static) num_threads(r->e.threads)
    for (size_t i = 0; i < n; i++) {
        int s = r->split[i];
        float *x = r->X[s] + r->index[i] * D;
        memset(x, 0, D * sizeof *x); /* here, in parallel, rather than a calloc's pass */
        for (size_t k = 0; k < nf; k++)
            prep_feature_encode(&r->feat[k], cells[i * nf + k], x);
        r->y[s][r->index[i]] = r->rows.label[i];
    }
    r->t_encoded = now();
    char path[2][4200];
    for (int s = 0; s < 3 && r->rank == 0 && !st; s++) {
        snprintf(path[0], sizeof path[0], "%s/X_%s.npy", r->tmp, split_names_[s]);
        snprintf(path[1], sizeof path[1], "%s/y_%s.npy", r->tmp, split_names_[s]);
        st = prep_npy_create(path[0], "<f4", 2, counts[s], D);
        if (!st) st = prep_npy_create(path[1], "<i4", 1, counts[s], 1);
    }
    DP_TRY(prep_agree(r->comm, st));
    for (int s = 0; s < 3 && !st; s++) {
        snprintf(path[0], sizeof path[0], "%s/X_%s.npy", r->tmp, split_names_[s]);
        snprintf(path[1], sizeof path[1], "%s/y_%s.npy", r->tmp, split_names_[s]);
        uint64_t x0 = prep_npy_data_offset("<f4", 2, counts[s], D),
                 y0 = prep_npy_data_offset("<i4", 1, counts[s], 1);
        st = prep_npy_write_at(path[0], x0 + (uint64_t)r->offset[s] * D * sizeof(float), r->X[s],
                               r->local[s] * D * sizeof(float));
        if (!st)
            st = prep_npy_write_at(path[1], y0 + (uint64_t)r->offset[s] * sizeof(int32_t), r->y[s],
                                   r->local[s] * sizeof(int32_t));
    }
    DP_TRY(prep_agree(r->comm, st));
    r->t_written = now();
    return DP_OK;
}

static dp_status build_meta(run *r, size_t D, const size_t counts[3], const size_t pos[3]) {
    const dp_prep_config *c = r->c;
    cJSON *m = r->meta = cJSON_CreateObject();
    if (!m) return dp_error(DP_E_NOMEM, "out of memory for meta.json");
    cJSON_AddStringToObject(m, "format", "dpsgd-dataset");
    cJSON_AddNumberToObject(m, "version", 1);
    char created[64];
    snprintf(created, sizeof created, "dpsgd prep %s", dp_version());
    cJSON_AddStringToObject(m, "created_by", created);
    char sha[65];
    if (r->mode == READ_RANGES) /* rank 0's hashing thread read the whole file */
        DP_TRY(source_sha256_whole(r->src, sha));
    else
        DP_TRY(dp_source_sha256(r->src, sha));
    cJSON *src = cJSON_AddObjectToObject(m, "source");
    cJSON_AddStringToObject(src, "path", dp_source_path(r->src));
    cJSON_AddStringToObject(src, "name", dp_source_name(r->src));
    cJSON_AddStringToObject(src, "kind", dp_source_kind_name(dp_source_kind_of(r->src)));
    cJSON_AddStringToObject(src, "sha256", sha);
    cJSON_AddNumberToObject(src, "bytes", (double)dp_source_file_bytes(r->src));
    cJSON_AddNumberToObject(src, "text_bytes",
                            (double)(r->mode == READ_RANGES ? r->size : r->rows.bytes));
    if (dp_source_parts(r->src) > 1) { /* a zip of several parts of one table, in reading order */
        cJSON *parts = cJSON_AddArrayToObject(src, "parts");
        for (size_t i = 0; i < dp_source_parts(r->src); i++) {
            const char *member;
            uint64_t bytes;
            dp_source_part(r->src, i, &member, &bytes);
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "name", member);
            cJSON_AddNumberToObject(p, "bytes", (double)bytes);
            cJSON_AddItemToArray(parts, p);
        }
    }

    cJSON *in = cJSON_AddObjectToObject(m, "input");
    cJSON_AddBoolToObject(in, "header", !r->cols_from_option);
    cJSON *cn = cJSON_AddArrayToObject(in, "column_names");
    for (size_t i = 0; i < r->ncols; i++)
        cJSON_AddItemToArray(cn, cJSON_CreateString(r->cols[i]));
    cJSON_AddStringToObject(in, "delimiter", ",");
    cJSON_AddBoolToObject(in, "trim", 1);
    cJSON *na = cJSON_AddArrayToObject(in, "na");
    for (size_t k = 0; k < r->na.n; k++)
        cJSON_AddItemToArray(na, cJSON_CreateString(r->na.tok[k]));
    cJSON_AddNumberToObject(in, "max_field", (double)r->e.copt.max_field);
    int uses_dict = r->task.target_var != NULL;
    for (size_t k = 0; k < r->nfeat; k++)
        uses_dict |= r->feat[k].origin == PREP_FROM_DICTIONARY;
    if (uses_dict) {
        cJSON *d = cJSON_AddObjectToObject(in, "dictionary");
        cJSON_AddStringToObject(d, "name", "ACS PUMS person record");
        cJSON_AddNumberToObject(d, "year", dp_pums_year());
    } else {
        cJSON_AddNullToObject(in, "dictionary");
    }
    cJSON_AddBoolToObject(in, "deduplicate_serialno_sporder", r->e.keyed);

    cJSON_AddItemToObject(m, "task", task_json(&r->task));
    cJSON *feats = cJSON_AddArrayToObject(m, "features");
    cJSON *cols = cJSON_AddArrayToObject(m, "columns");
    for (size_t k = 0; k < r->nfeat; k++) {
        cJSON_AddItemToArray(feats, prep_feature_to_json(&r->feat[k]));
        DP_TRY(prep_feature_column_names(&r->feat[k], cols));
    }
    cJSON_AddNumberToObject(m, "n_features", (double)D);
    cJSON_AddNumberToObject(m, "n_classes", 2);
    char hash[65];
    DP_TRY(schema_hash(m, hash));
    cJSON_AddStringToObject(m, "schema_hash", hash);

    /* which statistics came from the data */
    char derived[1024] = "";
    for (size_t k = 0; k < r->nfeat; k++) {
        const prep_feature *f = &r->feat[k];
        int from_data = f->origin == PREP_FROM_DATA || f->impute_origin == PREP_FROM_DATA ||
                        (f->kind == PREP_NUMERIC && f->scale_origin == PREP_FROM_DATA);
        if (!from_data) continue;
        size_t u = strlen(derived);
        snprintf(derived + u, sizeof derived - u, "%s%s", *derived ? ", " : "", f->name);
    }
    /* --stats dp: the values from the data are post-processing of the DP release */
    const int dp = c->stats == DP_PREP_STATS_DP;
    cJSON *stats = cJSON_AddObjectToObject(m, "statistics");
    cJSON_AddStringToObject(stats, "source",
                            dp                                ? "dp"
                            : c->stats == DP_PREP_STATS_EXACT ? "exact"
                                                              : "public");
    cJSON_AddBoolToObject(stats, "private", dp || !*derived);
    cJSON *dl = cJSON_AddArrayToObject(stats, "from_data");
    for (size_t k = 0; k < r->nfeat; k++)
        if (in_list(derived, r->feat[k].name))
            cJSON_AddItemToArray(dl, cJSON_CreateString(r->feat[k].name));
    char note[1400];
    if (dp)
        snprintf(note, sizeof note,
                 "--stats dp: the imputation values of %s are noisy modes and medians, "
                 "post-processing of one Gaussian release of the columns' histograms over "
                 "their public domains, charged to privacy.ledger; category lists and ranges "
                 "are public",
                 *derived ? derived : "no column");
    else if (!*derived)
        snprintf(note, sizeof note,
                 "every category list, range and imputation value comes from the PUMS dictionary "
                 "or the command line, none from the data");
    else
        snprintf(note, sizeof note,
                 "NOT PRIVATE: the encoding of %s uses statistics of the data (%s); they are "
                 "not covered by any privacy guarantee",
                 derived,
                 c->stats == DP_PREP_STATS_EXACT
                     ? "--stats exact: modes, medians, and ranges or categories of columns "
                       "outside the dictionary"
                     : "kinds, categories or ranges of columns outside the dictionary; give "
                       "--range or --categories to make them public");
    cJSON_AddStringToObject(stats, "note", note);
    cJSON *warn = cJSON_AddArrayToObject(m, "warnings");
    if (*derived && !dp) cJSON_AddItemToArray(warn, cJSON_CreateString(note));
    if (dp) DP_TRY(prep_dp_meta(&r->dp, r->feat, r->nfeat, stats, m));

    cJSON *sp = cJSON_AddObjectToObject(m, "splits");
    for (int s = 0; s < 3; s++) {
        cJSON *o = cJSON_AddObjectToObject(sp, split_names_[s]);
        cJSON_AddNumberToObject(o, "rows", (double)counts[s]);
        cJSON_AddNumberToObject(o, "positive", (double)pos[s]);
    }
    cJSON *split = cJSON_AddObjectToObject(m, "split");
    cJSON *fr = cJSON_AddArrayToObject(split, "fractions");
    for (int s = 0; s < 3; s++)
        cJSON_AddItemToArray(fr, cJSON_CreateNumber(c->split[s]));
    cJSON_AddStringToObject(split, "method",
                            "stratified by label: largest-remainder sizes per class, "
                            "splitmix64 Fisher-Yates order; rows keep file order within a split");
    cJSON_AddStringToObject(split, "note",
                            "the rows and positives of \"splits\" (the label balance) are exact "
                            "counts: not private");
    cJSON_AddNumberToObject(m, "seed", (double)c->seed);

    cJSON *rep = cJSON_AddObjectToObject(m, "report");
    uint64_t ndropped = 0;
    for (int k = 1; k < DP_PREP_REASONS; k++)
        ndropped += r->rows.dropped[k];
    cJSON_AddNumberToObject(rep, "rows_read", (double)r->rows.records);
    cJSON_AddNumberToObject(rep, "rows_kept", (double)r->n_total);
    cJSON_AddNumberToObject(rep, "rows_dropped", (double)ndropped);
    cJSON_AddNumberToObject(rep, "blank_lines", (double)r->rows.blank);
    cJSON *dr = cJSON_AddObjectToObject(rep, "dropped");
    cJSON *dbc = cJSON_AddObjectToObject(rep, "dropped_by_column");
    cJSON *firsts = cJSON_AddObjectToObject(rep, "first");
    for (int k = 1; k < DP_PREP_NOT_IN_POPULATION; k++) {
        cJSON_AddNumberToObject(dr, reason_names[k], (double)r->rows.dropped[k]);
        if (r->rows.first[k].have) {
            char ex[1400];
            first_text(r, &r->rows.first[k], ex, sizeof ex);
            cJSON_AddStringToObject(firsts, reason_names[k], ex);
        }
        cJSON *byc = NULL;
        for (size_t u = 0; u < r->e.nused; u++) {
            uint64_t v = r->rows.dropped_col[k * r->e.nused + u];
            if (!v) continue;
            if (!byc) byc = cJSON_AddObjectToObject(dbc, reason_names[k]);
            cJSON_AddNumberToObject(byc, r->e.used_name[u], (double)v);
        }
    }
    cJSON *flt = cJSON_AddObjectToObject(rep, "filtered");
    cJSON_AddNumberToObject(flt, "not_in_population", (double)r->rows.filtered);
    cJSON *mi = cJSON_AddObjectToObject(rep, "missing");
    cJSON *im = cJSON_AddObjectToObject(rep, "imputed");
    for (size_t k = 0; k < r->nfeat; k++) {
        cJSON_AddNumberToObject(mi, r->feat[k].name, (double)r->rows.missing[r->e.u_feat[k]]);
        cJSON_AddNumberToObject(im, r->feat[k].name, (double)r->feat[k].missing_kept);
    }
    cJSON_AddStringToObject(rep, "note",
                            "exact counts of the input, for whoever curates it: not private");

    /* Last, and the only part that depends on how this run went rather than
     * on the input and the options: a dataset made by 1 or R ranks, with
     * any thread count, is the same but for this object. */
    cJSON *rj = cJSON_AddObjectToObject(m, "run");
    cJSON_AddNumberToObject(rj, "ranks", r->ranks);
    cJSON_AddNumberToObject(rj, "threads_per_rank", r->e.threads);
    cJSON_AddStringToObject(rj, "input_read_by", read_modes[r->mode]);
    cJSON_AddNumberToObject(rj, "seconds", now() - r->t0);
    cJSON *ph = cJSON_AddObjectToObject(rj, "seconds_by_phase");
    cJSON_AddNumberToObject(ph, "read_parse_validate", r->t_parsed - r->t0);
    cJSON_AddNumberToObject(ph, "combine_impute_split_encode", r->t_encoded - r->t_parsed);
    cJSON_AddNumberToObject(ph, "write_arrays", r->t_written - r->t_encoded);
    return DP_OK;
}

DP_API dp_status dp_prep_run(const dp_prep_config *c, dp_prep_result **out) {
    return dp_prep_run_dist(c, NULL, out);
}

/*
 * The phases, each ending in a status that every rank agrees on, so that a
 * failure anywhere (an unreadable range, a bad header on rank 0, a full
 * disk) stops all ranks together with the lowest failing rank's message:
 *   rank 0 makes the temporary directory; rank 0 reads the header; every
 *   rank parses its records; counts, duplicates and first examples are
 *   combined; inferred columns and imputation values decided from all rows;
 *   split, encode, and every rank writes its slices of the arrays; rank 0
 *   writes meta.json and renames the directory into place.
 */
DP_API dp_status dp_prep_run_dist(const dp_prep_config *c, dp_comm *comm, dp_prep_result **out) {
    if (out) *out = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.t0 = now();
    r.c = c;
    r.comm = comm;
    r.rank = prep_rank(comm);
    r.ranks = prep_ranks(comm);
    dp_status st = check_config(c);
    if (!st && sodium_init() < 0) st = dp_error(DP_E_INTERNAL, "libsodium failed to initialise");
    if (!st && r.rank == 0) st = prep_outdir_begin(c->output, c->force, &r.tmp);
    if ((st = prep_agree(comm, st))) goto fail;
    uint64_t len = r.tmp ? strlen(r.tmp) : 0;
    size_t D = 0, counts[3] = {0, 0, 0}, pos[3] = {0, 0, 0};
    if ((st = share(&r, &r.tmp, &len)) || (st = read_input(&r)) || (st = finalize(&r, &D)) ||
        (st = encode_and_write(&r, D, counts, pos)))
        goto fail;
    char *text = NULL;
    if (r.rank == 0) {
        st = build_meta(&r, D, counts, pos);
        if (!st && !(text = cJSON_Print(r.meta)))
            st = dp_error(DP_E_NOMEM, "out of memory for meta.json");
        if (!st) st = write_text(r.tmp, "meta.json", text);
        if (!st) st = prep_outdir_commit(r.tmp, c->output, c->force);
    }
    if ((st = prep_agree_idle(comm, st))) {
        cJSON_free(text);
        goto fail;
    }
    /* the dataset is in place; every rank gets meta.json's text */
    len = text ? strlen(text) : 0;
    char *mine = text;
    st = share(&r, &mine, &len);
    if (!st && out) {
        dp_prep_result *res = dp_calloc(1, sizeof *res);
        if (res) res->meta = dp_strdup(mine);
        if (!res || !res->meta) {
            dp_prep_result_free(res);
            st = dp_error(DP_E_NOMEM, "out of memory (the dataset was written)");
        } else {
            *out = res;
        }
    }
    if (mine != text) dp_free(mine);
    cJSON_free(text);
    run_free(&r);
    return st;
fail:
    /* every rank is here with the agreed status; rank 0 made the directory */
    if (r.rank == 0) prep_outdir_abort(r.tmp);
    {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", dp_last_error());
        run_free(&r);
        dp_error(st, "%s", msg);
    }
    return st;
}
