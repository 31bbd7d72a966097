/*
 * encode.c: one feature column of prep, from its description to its encoded
 * columns. A column is described by the PUMS dictionary (code list or numeric
 * ranges: public), by the user (--range, --categories: public), or inferred
 * from the data (kind, categories, range: not private). Categorical columns
 * become one-hot columns (plus "missing" with public statistics); numeric
 * ones are scaled to [0, 1] by their range (plus an "=N/A" indicator where
 * the dictionary makes a blank a valid value, as WKHP's "did not work").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

enum { MAX_CATEGORIES = 1000, MAX_EXPANDED_RANGE = 256, MAX_LUT = 1 << 16 };

int prep_parse_int(const char *p, size_t len, int allow_sign, long long *out) {
    size_t i = 0;
    int neg = 0;
    if (allow_sign && len && (p[0] == '-' || p[0] == '+')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == len || len - i > 18) return 0;
    long long v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    return 1;
}

int prep_parse_double(const char *p, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, p, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + len || !isfinite(v)) return 0;
    /* strtod also reads "0x1p3" and "infinity"; a census number is decimal */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == 'x' || buf[i] == 'X' || buf[i] == 'n' || buf[i] == 'N') return 0;
    *out = v;
    return 1;
}

int prep_is_na(const prep_na *na, const char *p, size_t len) {
    for (size_t k = 0; k < na->n; k++)
        if (strlen(na->tok[k]) == len && memcmp(na->tok[k], p, len) == 0) return 1;
    return 0;
}

static int is_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int is_blank_code(const dp_pums_code *c) {
    if (c->blank) return 1;
    for (const char *s = c->lo; *s; s++)
        if (*s != 'b') return 0;
    return *c->lo != '\0';
}

static void reset(prep_feature *f) {
    memset(f, 0, sizeof *f);
    f->blank_cat = -1;
    f->impute_cat = -1;
}

static dp_status nomem(const char *name) {
    return dp_error(DP_E_NOMEM, "column %s: out of memory", name);
}

static dp_status add_category(prep_feature *f, const char *text) {
    char **c = dp_realloc(f->cats, (f->ncat + 1) * sizeof *c);
    if (!c) return nomem(f->name);
    f->cats = c;
    long long *ci = dp_realloc(f->cat_int, (f->ncat + 1) * sizeof *ci);
    if (!ci) return nomem(f->name);
    f->cat_int = ci;
    uint8_t *isi = dp_realloc(f->cat_is_int, (f->ncat + 1) * sizeof *isi);
    if (!isi) return nomem(f->name);
    f->cat_is_int = isi;
    if (!(f->cats[f->ncat] = dp_strdup(text))) return nomem(f->name);
    f->cat_is_int[f->ncat] = f->dict_type && is_digits(text);
    f->cat_int[f->ncat] = 0;
    if (f->cat_is_int[f->ncat]) prep_parse_int(text, strlen(text), 0, &f->cat_int[f->ncat]);
    f->ncat++;
    return DP_OK;
}

/* Integer value -> category index, for dictionary codes ("1" and "01" are
 * the same code). A table when the codes are few and close, as they are. */
static dp_status build_lut(prep_feature *f) {
    long long lo = 0, hi = -1;
    for (size_t k = 0; k < f->ncat; k++) {
        if (!f->cat_is_int[k]) continue;
        if (hi < lo) lo = hi = f->cat_int[k];
        lo = DP_MIN(lo, f->cat_int[k]);
        hi = DP_MAX(hi, f->cat_int[k]);
    }
    if (hi < lo || hi - lo >= MAX_LUT) return DP_OK; /* none, or searched linearly */
    f->lut_lo = lo;
    f->lut_n = (size_t)(hi - lo + 1);
    f->lut = dp_malloc(f->lut_n * sizeof *f->lut);
    if (!f->lut) return nomem(f->name);
    for (size_t j = 0; j < f->lut_n; j++)
        f->lut[j] = -1;
    for (size_t k = 0; k < f->ncat; k++)
        if (f->cat_is_int[k]) f->lut[f->cat_int[k] - lo] = (int32_t)k;
    return DP_OK;
}

static int cmp_span(const void *a, const void *b) {
    const prep_span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

dp_status prep_feature_from_dictionary(prep_feature *f, const dp_pums_var *var) {
    reset(f);
    if (!(f->name = dp_strdup(var->name))) return nomem(var->name);
    f->origin = PREP_FROM_DICTIONARY;
    f->dict_type = var->type;
    f->width = var->width;
    if (var->type == 'N') {
        f->kind = PREP_NUMERIC;
        f->integer = 1;
        f->check_range = 1;
        f->scale_origin = PREP_FROM_DICTIONARY;
        f->spans = dp_malloc(((size_t)var->n_codes + 1) * sizeof *f->spans);
        if (!f->spans) return nomem(f->name);
        for (int k = 0; k < var->n_codes; k++) {
            const dp_pums_code *c = &var->codes[k];
            if (is_blank_code(c)) {
                f->blank_na = 1;
                continue;
            }
            long long a, b;
            if (!prep_parse_int(c->lo, strlen(c->lo), 1, &a) ||
                !prep_parse_int(c->hi, strlen(c->hi), 1, &b))
                continue; /* a text code in a numeric column: not a number to scale */
            f->spans[f->nspans++] = (prep_span){DP_MIN(a, b), DP_MAX(a, b)};
        }
        if (!f->nspans)
            return dp_error(DP_E_SCHEMA, "column %s: the dictionary gives it no numeric range",
                            f->name);
        qsort(f->spans, f->nspans, sizeof *f->spans, cmp_span);
        size_t m = 0;
        for (size_t k = 1; k < f->nspans; k++) {
            if (f->spans[k].lo <= f->spans[m].hi + 1)
                f->spans[m].hi = DP_MAX(f->spans[m].hi, f->spans[k].hi);
            else
                f->spans[++m] = f->spans[k];
        }
        f->nspans = m + 1;
        f->lo = (double)f->spans[0].lo;
        f->hi = (double)f->spans[f->nspans - 1].hi;
        return DP_OK;
    }
    f->kind = PREP_CATEGORICAL;
    for (int k = 0; k < var->n_codes; k++) {
        const dp_pums_code *c = &var->codes[k];
        if (is_blank_code(c)) {
            if (f->blank_cat < 0) {
                f->blank_cat = (int)f->ncat;
                DP_TRY(add_category(f, ""));
            }
            continue;
        }
        if (strcmp(c->lo, c->hi) == 0) {
            DP_TRY(add_category(f, c->lo));
            continue;
        }
        long long a, b;
        if (!is_digits(c->lo) || !is_digits(c->hi) ||
            !prep_parse_int(c->lo, strlen(c->lo), 0, &a) ||
            !prep_parse_int(c->hi, strlen(c->hi), 0, &b) || b < a || b - a >= MAX_EXPANDED_RANGE)
            return dp_error(DP_E_SCHEMA,
                            "column %s: the dictionary gives it the code range %s..%s, too many "
                            "codes to one-hot encode (expected a column with a short code list)",
                            f->name, c->lo, c->hi);
        for (long long v = a; v <= b; v++) { /* a short range: one category per code */
            char text[32];
            snprintf(text, sizeof text, "%0*lld", (int)strlen(c->lo), v);
            DP_TRY(add_category(f, text));
        }
    }
    if (f->ncat > MAX_CATEGORIES)
        return dp_error(DP_E_SCHEMA, "column %s: %zu codes, too many to one-hot encode", f->name,
                        f->ncat);
    return build_lut(f);
}

dp_status prep_feature_from_range(prep_feature *f, const char *name, double lo, double hi) {
    reset(f);
    if (!(f->name = dp_strdup(name))) return nomem(name);
    f->kind = PREP_NUMERIC;
    f->origin = f->scale_origin = PREP_FROM_USER;
    f->lo = lo;
    f->hi = hi;
    f->check_range = 1;
    return DP_OK;
}

dp_status prep_feature_from_categories(prep_feature *f, const char *name, char **values, size_t n) {
    reset(f);
    if (!(f->name = dp_strdup(name))) return nomem(name);
    f->kind = PREP_CATEGORICAL;
    f->origin = PREP_FROM_USER;
    for (size_t k = 0; k < n; k++) {
        for (size_t j = 0; j < k; j++)
            if (strcmp(values[j], values[k]) == 0)
                return dp_error(DP_E_USAGE, "--categories %s: the value '%s' is listed twice", name,
                                values[k]);
        DP_TRY(add_category(f, values[k]));
    }
    return DP_OK;
}

dp_status prep_feature_inferred(prep_feature *f, const char *name, int categorical) {
    reset(f);
    if (!(f->name = dp_strdup(name))) return nomem(name);
    f->origin = PREP_FROM_DATA;
    f->inferred = 1;
    f->forced_categorical = categorical;
    f->kind = categorical ? PREP_CATEGORICAL : PREP_NUMERIC;
    return DP_OK;
}

void prep_feature_free(prep_feature *f) {
    if (!f) return;
    for (size_t k = 0; k < f->ncat; k++)
        dp_free(f->cats[k]);
    dp_free(f->cats);
    dp_free(f->cat_int);
    dp_free(f->cat_is_int);
    dp_free(f->lut);
    dp_free(f->spans);
    dp_free(f->name);
    reset(f);
}

static int find_int(const prep_feature *f, long long v) {
    if (f->lut) {
        if (v < f->lut_lo || v - f->lut_lo >= (long long)f->lut_n) return -1;
        return f->lut[v - f->lut_lo];
    }
    for (size_t k = 0; k < f->ncat; k++)
        if (f->cat_is_int[k] && f->cat_int[k] == v) return (int)k;
    return -1;
}

static int find_text(const prep_feature *f, const char *p, size_t len) {
    for (size_t k = 0; k < f->ncat; k++)
        if (!f->cat_is_int[k] && strlen(f->cats[k]) == len && memcmp(f->cats[k], p, len) == 0)
            return (int)k;
    return -1;
}

static int in_spans(const prep_feature *f, long long v) {
    size_t a = 0, b = f->nspans; /* the last span with lo <= v decides */
    while (a < b) {
        size_t m = (a + b) / 2;
        if (f->spans[m].lo <= v)
            a = m + 1;
        else
            b = m;
    }
    return a > 0 && v <= f->spans[a - 1].hi;
}

int prep_feature_parse(const prep_feature *f, const prep_na *na, const char *p, size_t len,
                       prep_cell *cell) {
    if (len == 0) {
        if (f->kind == PREP_CATEGORICAL && f->blank_cat >= 0 && !f->inferred) {
            cell->i = f->blank_cat;
            return PREP_PARSE_OK;
        }
        if (f->kind == PREP_NUMERIC && f->blank_na && !f->inferred) {
            cell->f = -INFINITY;
            return PREP_PARSE_OK;
        }
        goto missing;
    }
    if (na->n && prep_is_na(na, p, len)) goto missing;
    if (f->inferred) return PREP_PARSE_STRING;
    if (f->kind == PREP_CATEGORICAL) {
        int k;
        long long v;
        if (f->dict_type) {
            /* invalid: "non_numeric" if it is no integer and the column has no
             * text codes, else "out_of_range" (as docs/prep.md says) */
            int as_int = prep_parse_int(p, len, 0, &v);
            k = f->width && len > (size_t)f->width ? -1
                : as_int                           ? find_int(f, v)
                                                   : find_text(f, p, len);
            if (k < 0) {
                long long w;
                int has_text = 0;
                for (size_t j = 0; j < f->ncat && !has_text; j++)
                    has_text = !f->cat_is_int[j] && f->cats[j][0];
                return as_int || has_text || prep_parse_int(p, len, 1, &w) ? DP_PREP_OUT_OF_RANGE
                                                                           : DP_PREP_NON_NUMERIC;
            }
        } else {
            k = find_text(f, p, len);
            if (k < 0) return DP_PREP_OUT_OF_RANGE;
        }
        cell->i = k;
        return PREP_PARSE_OK;
    }
    double x;
    if (f->integer) {
        long long v;
        if (!prep_parse_int(p, len, 1, &v) || (len && p[0] == '+')) return DP_PREP_NON_NUMERIC;
        if ((f->width && len > (size_t)f->width) || (f->nspans && !in_spans(f, v)))
            return DP_PREP_OUT_OF_RANGE;
        x = (double)v;
    } else {
        if (!prep_parse_double(p, len, &x)) return DP_PREP_NON_NUMERIC;
    }
    if (f->check_range && !f->nspans && (x < f->lo || x > f->hi)) return DP_PREP_OUT_OF_RANGE;
    cell->f = (float)x;
    return PREP_PARSE_OK;
missing:
    if (f->kind == PREP_CATEGORICAL)
        cell->i = -1;
    else
        cell->f = NAN;
    return PREP_PARSE_MISSING;
}

/* ---- inferred columns ---- */

typedef struct sort_ctx {
    char *const *strs;
    const double *vals;
} sort_ctx;
static int cmp_by_text(const void *a, const void *b, void *ctx) {
    const sort_ctx *c = ctx;
    return strcmp(c->strs[*(const size_t *)a], c->strs[*(const size_t *)b]);
}
static int cmp_by_value(const void *a, const void *b, void *ctx) {
    const sort_ctx *c = ctx;
    double x = c->vals[*(const size_t *)a], y = c->vals[*(const size_t *)b];
    if (x != y) return x < y ? -1 : 1;
    return cmp_by_text(a, b, ctx); /* "1" and "1.0": still a fixed order */
}

dp_status prep_feature_resolve(prep_feature *f, char **strs, size_t n, prep_cell *remap) {
    double *val = dp_malloc((n + 1) * sizeof *val);
    size_t *order = dp_malloc((n + 1) * sizeof *order);
    if (!val || !order) {
        dp_free(val);
        dp_free(order);
        return nomem(f->name);
    }
    int numeric = 1;
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        if (!prep_parse_double(strs[i], strlen(strs[i]), &val[i])) numeric = 0;
    }
    dp_status st = DP_OK;
    f->inferred = 0;
    if (numeric && n > 0 && !f->forced_categorical) {
        f->kind = PREP_NUMERIC;
        f->scale_origin = PREP_FROM_DATA;
        f->lo = f->hi = val[0];
        for (size_t i = 0; i < n; i++) {
            remap[i].f = (float)val[i];
            f->lo = DP_MIN(f->lo, val[i]);
            f->hi = DP_MAX(f->hi, val[i]);
        }
    } else {
        f->kind = PREP_CATEGORICAL;
        if (n > MAX_CATEGORIES) {
            st = dp_error(DP_E_SCHEMA,
                          "column %s has %zu distinct values, too many to one-hot encode "
                          "(expected at most %d; give it a public range with --range, or leave "
                          "it out)",
                          f->name, n, MAX_CATEGORIES);
        } else {
            sort_ctx ctx = {strs, val};
            qsort_r(order, n, sizeof *order, numeric ? cmp_by_value : cmp_by_text, &ctx);
            for (size_t k = 0; k < n && st == DP_OK; k++) {
                remap[order[k]].i = (int32_t)k;
                st = add_category(f, strs[order[k]]);
            }
        }
    }
    dp_free(val);
    dp_free(order);
    return st;
}

/* Counts and order statistics of the kept rows of every rank (prep_dist.c;
 * comm NULL: this process alone), so the imputation values are the same
 * whatever the number of ranks. */
dp_status prep_feature_finalize(prep_feature *f, dp_prep_stats stats, const prep_cell *cells,
                                size_t n, size_t stride, size_t col0, dp_comm *comm) {
    f->missing_kept = 0;
    f->col0 = col0;
    if (f->kind == PREP_CATEGORICAL) {
        uint64_t *count = dp_calloc(f->ncat + 1, sizeof *count); /* [ncat] = missing */
        dp_status st = prep_agree(comm, count ? DP_OK : nomem(f->name));
        if (st) {
            dp_free(count);
            return st;
        }
        for (size_t i = 0; i < n; i++) {
            int32_t k = cells[i * stride].i;
            count[k < 0 ? f->ncat : (size_t)k]++;
        }
        st = prep_sum(comm, count, f->ncat + 1);
        if (st) {
            dp_free(count);
            return st;
        }
        f->missing_kept = count[f->ncat];
        if (stats == DP_PREP_STATS_EXACT) {
            f->impute = PREP_IMPUTE_MODE;
            f->impute_origin = PREP_FROM_DATA;
            f->impute_cat = f->ncat ? 0 : -1;
            for (size_t k = 1; k < f->ncat; k++)
                if (count[k] > count[f->impute_cat]) f->impute_cat = (int)k;
            f->missing_col = 0;
        } else {
            f->impute = PREP_IMPUTE_MISSING_CATEGORY;
            f->impute_origin = PREP_FROM_USER; /* not a statistic */
            f->missing_col = 1;
        }
        dp_free(count);
        f->ncols = f->ncat + (size_t)f->missing_col;
        return DP_OK;
    }
    uint64_t tally[2] = {0, 0}; /* missing, finite */
    for (size_t i = 0; i < n; i++) {
        float x = cells[i * stride].f;
        if (isnan(x))
            tally[0]++;
        else if (isfinite(x))
            tally[1]++;
    }
    DP_TRY(prep_sum(comm, tally, 2));
    f->missing_kept = tally[0];
    const uint64_t m = tally[1];
    if (stats == DP_PREP_STATS_EXACT && m) {
        /* the median: the middle value, or the mean of the two middle ones */
        uint64_t ks[2] = {m / 2, m / 2};
        int nk = 1;
        if (m % 2 == 0) ks[0] = m / 2 - 1, nk = 2;
        float mid[2];
        DP_TRY(prep_dist_kth(comm, cells, n, stride, ks, nk, mid));
        f->impute = PREP_IMPUTE_MEDIAN;
        f->impute_num = nk == 1 ? (double)mid[0] : ((double)mid[0] + (double)mid[1]) / 2;
        f->impute_origin = PREP_FROM_DATA;
    } else {
        prep_impute_midpoint(f);
    }
    f->ncols = 1 + (size_t)f->blank_na;
    return DP_OK;
}

void prep_impute_midpoint(prep_feature *f) {
    f->impute = PREP_IMPUTE_MIDPOINT;
    f->impute_num = (f->lo + f->hi) / 2;
    f->impute_origin = f->scale_origin;
}

void prep_feature_encode(const prep_feature *f, prep_cell cell, float *x) {
    x += f->col0;
    if (f->kind == PREP_CATEGORICAL) {
        int32_t k = cell.i;
        if (k < 0) {
            if (f->missing_col)
                x[f->ncat] = 1.0f;
            else if (f->impute_cat >= 0)
                x[f->impute_cat] = 1.0f;
        } else {
            x[k] = 1.0f;
        }
        return;
    }
    double v = cell.f;
    if (v == -INFINITY) { /* the dictionary's N/A: indicator on, value at the bottom */
        x[1] = 1.0f;
        return;
    }
    if (isnan(v)) v = f->impute_num;
    x[0] = f->hi > f->lo ? (float)((v - f->lo) / (f->hi - f->lo)) : 0.0f;
}

/* ---- names and JSON ---- */

static const char *origin_name(int o) {
    return o == PREP_FROM_DICTIONARY ? "dictionary" : o == PREP_FROM_USER ? "user" : "data";
}
static int origin_from(const char *s) {
    return !s                         ? -1
           : !strcmp(s, "dictionary") ? PREP_FROM_DICTIONARY
           : !strcmp(s, "user")       ? PREP_FROM_USER
           : !strcmp(s, "data")       ? PREP_FROM_DATA
                                      : -1;
}
static const char *impute_name(int m) {
    switch (m) {
    case PREP_IMPUTE_MIDPOINT:
        return "midpoint";
    case PREP_IMPUTE_MEDIAN:
        return "median";
    case PREP_IMPUTE_MISSING_CATEGORY:
        return "missing_category";
    default:
        return "mode";
    }
}

static dp_status add_name(cJSON *names, const char *a, const char *b) {
    size_t n = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;
    char *s = dp_malloc(n);
    if (!s) return dp_error(DP_E_NOMEM, "out of memory for column names");
    snprintf(s, n, "%s%s%s", a, b ? "=" : "", b ? b : "");
    cJSON *item = cJSON_CreateString(s);
    dp_free(s);
    if (!item) return dp_error(DP_E_NOMEM, "out of memory for column names");
    cJSON_AddItemToArray(names, item);
    return DP_OK;
}

dp_status prep_feature_column_names(const prep_feature *f, cJSON *names) {
    if (f->kind == PREP_NUMERIC) {
        DP_TRY(add_name(names, f->name, NULL));
        if (f->blank_na) DP_TRY(add_name(names, f->name, "N/A"));
        return DP_OK;
    }
    for (size_t k = 0; k < f->ncat; k++)
        DP_TRY(add_name(names, f->name, f->cats[k][0] ? f->cats[k] : "N/A"));
    if (f->missing_col) DP_TRY(add_name(names, f->name, "missing"));
    return DP_OK;
}

cJSON *prep_feature_to_json(const prep_feature *f) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "name", f->name);
    cJSON_AddStringToObject(j, "kind", f->kind == PREP_NUMERIC ? "numeric" : "categorical");
    cJSON_AddStringToObject(j, "origin", origin_name(f->origin));
    if (f->dict_type) {
        char t[2] = {f->dict_type, 0};
        cJSON *d = cJSON_AddObjectToObject(j, "dictionary");
        cJSON_AddStringToObject(d, "type", t);
        cJSON_AddNumberToObject(d, "width", f->width);
    }
    cJSON *imp = cJSON_CreateObject();
    cJSON_AddStringToObject(imp, "method", impute_name(f->impute));
    cJSON_AddStringToObject(
        imp, "source",
        f->impute == PREP_IMPUTE_MISSING_CATEGORY ? "none" : origin_name(f->impute_origin));
    if (f->kind == PREP_CATEGORICAL) {
        cJSON *cats = cJSON_AddArrayToObject(j, "categories");
        for (size_t k = 0; k < f->ncat; k++)
            cJSON_AddItemToArray(cats, cJSON_CreateString(f->cats[k]));
        cJSON_AddStringToObject(j, "match", f->dict_type ? "integer" : "text");
        if (f->blank_cat >= 0) cJSON_AddNumberToObject(j, "blank_category", f->blank_cat);
        cJSON_AddBoolToObject(j, "missing_category", f->missing_col);
        if (f->impute == PREP_IMPUTE_MODE && f->impute_cat >= 0)
            cJSON_AddStringToObject(imp, "value", f->cats[f->impute_cat]);
    } else {
        cJSON *sc = cJSON_AddObjectToObject(j, "scale");
        cJSON_AddNumberToObject(sc, "min", f->lo);
        cJSON_AddNumberToObject(sc, "max", f->hi);
        cJSON_AddStringToObject(sc, "source", origin_name(f->scale_origin));
        cJSON_AddBoolToObject(j, "integer", f->integer);
        cJSON_AddBoolToObject(j, "check_range", f->check_range);
        if (f->nspans) {
            cJSON *v = cJSON_AddArrayToObject(j, "valid");
            for (size_t k = 0; k < f->nspans; k++) {
                cJSON *s = cJSON_CreateArray();
                cJSON_AddItemToArray(s, cJSON_CreateNumber((double)f->spans[k].lo));
                cJSON_AddItemToArray(s, cJSON_CreateNumber((double)f->spans[k].hi));
                cJSON_AddItemToArray(v, s);
            }
        }
        if (f->blank_na) cJSON_AddStringToObject(j, "blank", "indicator");
        cJSON_AddNumberToObject(imp, "value", f->impute_num);
    }
    cJSON_AddItemToObject(j, "impute", imp);
    cJSON *cols = cJSON_AddArrayToObject(j, "columns");
    cJSON_AddItemToArray(cols, cJSON_CreateNumber((double)f->col0));
    cJSON_AddItemToArray(cols, cJSON_CreateNumber((double)f->ncols));
    return j;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

dp_status prep_feature_from_json(prep_feature *f, const cJSON *j, const char *where) {
    reset(f);
    const cJSON *name = get(j, "name"), *kind = get(j, "kind"), *cols = get(j, "columns"),
                *imp = get(j, "impute");
    if (!cJSON_IsString(name) || !cJSON_IsString(kind) || cJSON_GetArraySize(cols) != 2 ||
        !cJSON_IsObject(imp))
        return dp_error(DP_E_FORMAT, "%s: a feature lacks name, kind, columns or impute", where);
    if (!(f->name = dp_strdup(name->valuestring))) return nomem("?");
    f->origin = origin_from(cJSON_GetStringValue(get(j, "origin")));
    if (f->origin < 0)
        return dp_error(DP_E_FORMAT, "%s: feature %s: unknown origin", where, f->name);
    const cJSON *d = get(j, "dictionary");
    if (d) {
        const char *t = cJSON_GetStringValue(get(d, "type"));
        f->dict_type = t && (*t == 'C' || *t == 'N') ? *t : 'C';
        f->width = (int)cJSON_GetNumberValue(get(d, "width"));
    }
    f->col0 = (size_t)cJSON_GetNumberValue(cJSON_GetArrayItem(cols, 0));
    f->ncols = (size_t)cJSON_GetNumberValue(cJSON_GetArrayItem(cols, 1));
    const char *method = cJSON_GetStringValue(get(imp, "method"));
    if (!method) return dp_error(DP_E_FORMAT, "%s: feature %s: no impute method", where, f->name);
    f->impute = !strcmp(method, "midpoint")           ? PREP_IMPUTE_MIDPOINT
                : !strcmp(method, "median")           ? PREP_IMPUTE_MEDIAN
                : !strcmp(method, "missing_category") ? PREP_IMPUTE_MISSING_CATEGORY
                                                      : PREP_IMPUTE_MODE;
    if (!strcmp(kind->valuestring, "categorical")) {
        f->kind = PREP_CATEGORICAL;
        const cJSON *cats = get(j, "categories"), *c;
        if (!cJSON_IsArray(cats))
            return dp_error(DP_E_FORMAT, "%s: feature %s: no categories", where, f->name);
        cJSON_ArrayForEach(c, cats) {
            if (!cJSON_IsString(c))
                return dp_error(DP_E_FORMAT, "%s: feature %s: a category is not a string", where,
                                f->name);
            DP_TRY(add_category(f, c->valuestring));
        }
        const cJSON *bc = get(j, "blank_category");
        f->blank_cat = cJSON_IsNumber(bc) ? bc->valueint : -1;
        f->missing_col = cJSON_IsTrue(get(j, "missing_category"));
        const char *mode = cJSON_GetStringValue(get(imp, "value"));
        for (size_t k = 0; mode && k < f->ncat; k++)
            if (!strcmp(f->cats[k], mode)) f->impute_cat = (int)k;
        if (f->ncols != f->ncat + (size_t)f->missing_col)
            return dp_error(DP_E_FORMAT, "%s: feature %s: column count does not match", where,
                            f->name);
        return f->dict_type ? build_lut(f) : DP_OK;
    }
    if (strcmp(kind->valuestring, "numeric"))
        return dp_error(DP_E_FORMAT, "%s: feature %s: unknown kind '%s'", where, f->name,
                        kind->valuestring);
    f->kind = PREP_NUMERIC;
    const cJSON *sc = get(j, "scale");
    if (!cJSON_IsNumber(get(sc, "min")) || !cJSON_IsNumber(get(sc, "max")))
        return dp_error(DP_E_FORMAT, "%s: feature %s: no scale", where, f->name);
    f->lo = get(sc, "min")->valuedouble;
    f->hi = get(sc, "max")->valuedouble;
    f->scale_origin = origin_from(cJSON_GetStringValue(get(sc, "source")));
    f->integer = cJSON_IsTrue(get(j, "integer"));
    f->check_range = cJSON_IsTrue(get(j, "check_range"));
    f->blank_na = get(j, "blank") != NULL;
    f->impute_num = cJSON_GetNumberValue(get(imp, "value"));
    const cJSON *valid = get(j, "valid"), *s;
    if (cJSON_IsArray(valid)) {
        f->spans = dp_malloc(((size_t)cJSON_GetArraySize(valid) + 1) * sizeof *f->spans);
        if (!f->spans) return nomem(f->name);
        cJSON_ArrayForEach(s, valid) {
            f->spans[f->nspans].lo = (long long)cJSON_GetNumberValue(cJSON_GetArrayItem(s, 0));
            f->spans[f->nspans].hi = (long long)cJSON_GetNumberValue(cJSON_GetArrayItem(s, 1));
            f->nspans++;
        }
    }
    if (f->ncols != 1 + (size_t)f->blank_na)
        return dp_error(DP_E_FORMAT, "%s: feature %s: column count does not match", where, f->name);
    return DP_OK;
}
