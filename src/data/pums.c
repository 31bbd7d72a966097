/*
 * pums.c: look-ups in the compiled ACS PUMS person dictionary (pums_codes.c,
 * generated from the Census Bureau's data dictionary CSV) and validation of
 * one field against a variable's code list.
 *
 * Validation compares values as integers wherever the code is made of digits,
 * so "1" and "01" are the same SCHL code: real files write leading zeros,
 * files re-saved by spreadsheets drop them, and a reader must accept both.
 * Codes that are not integers (SERIALNO "2023HU0000017", NAICSP "113M", SOCP
 * "1110XX") are compared as text: equal to a code, or inside a range of
 * strings of the same shape (digits where the bounds have digits, the same
 * letters elsewhere). A blank field is valid only where the dictionary has a
 * row of 'b's (N/A). A field longer than the dictionary's width is invalid.
 */
#include <stdint.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/pums_codes.h"

DP_API size_t dp_pums_person_nvars(void) {
    return pums_person_count;
}

DP_API const dp_pums_var *dp_pums_person_var(size_t i) {
    return i < pums_person_count ? &pums_person_vars[i] : NULL;
}

DP_API int dp_pums_year(void) {
    return pums_dict_year;
}

DP_API const dp_pums_var *dp_pums_find(const char *name) {
    if (!name) return NULL;
    size_t lo = 0, hi = pums_person_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dp_pums_var *v = &pums_person_vars[pums_person_by_name[mid]];
        int c = strcmp(name, v->name);
        if (c == 0) return v;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Parse an integer field: digits only for C codes, an optional '-' for N
 * values. The caller has bounded len by the field width (at most 13), so the
 * value cannot overflow. Returns 1 and sets *out when the whole field is one. */
static int parse_int(const char *s, size_t len, int allow_sign, long long *out) {
    size_t i = 0;
    int neg = 0;
    if (allow_sign && len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len) return 0;
    long long v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

static int is_blank_code(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s != 'b') return 0;
    return 1;
}

static int is_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* A text code: equal to `lo` when lo == hi; otherwise within [lo, hi] by
 * byte order and of the same shape as both bounds. */
static int text_match(const char *lo, const char *hi, const char *f, size_t len) {
    size_t n = strlen(lo);
    if (len != n) return 0;
    if (strcmp(lo, hi) == 0) return memcmp(f, lo, n) == 0;
    if (strlen(hi) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        int dl = lo[i] >= '0' && lo[i] <= '9', dh = hi[i] >= '0' && hi[i] <= '9';
        int df = f[i] >= '0' && f[i] <= '9';
        if (dl && dh) {
            if (!df) return 0;
        } else if (f[i] != lo[i] || f[i] != hi[i]) {
            return 0;
        }
    }
    return memcmp(f, lo, n) >= 0 && memcmp(f, hi, n) <= 0;
}

/* The reference: read the dictionary rows of `var` one by one. Used for a
 * variable that is not in the compiled table (a caller's own dp_pums_var),
 * and by the tests as the oracle for the fast path below. */
static int valid_slow(const dp_pums_var *var, const char *f, size_t len) {
    if (len == 0) {
        for (int k = 0; k < var->n_codes; k++)
            if (var->codes[k].blank || is_blank_code(var->codes[k].lo)) return 1;
        return 0;
    }
    if (len > (size_t)var->width) return 0;
    long long x;
    int numeric = parse_int(f, len, var->type == 'N', &x);
    for (int k = 0; k < var->n_codes; k++) {
        const dp_pums_code *c = &var->codes[k];
        if (c->blank || is_blank_code(c->lo)) continue;
        long long a, b;
        int code_numeric = parse_int(c->lo, strlen(c->lo), var->type == 'N', &a) &&
                           parse_int(c->hi, strlen(c->hi), var->type == 'N', &b);
        if (var->type == 'C' && !(is_digits(c->lo) && is_digits(c->hi))) code_numeric = 0;
        if (code_numeric) {
            if (numeric && x >= a && x <= b) return 1;
        } else if (text_match(c->lo, c->hi, f, len)) {
            return 1;
        }
    }
    return 0;
}

DP_API int dp_pums_valid(const dp_pums_var *var, const char *field, size_t len) {
    if (!var || (!field && len)) return 0;
    uintptr_t p = (uintptr_t)var, base = (uintptr_t)pums_person_vars;
    if (p < base || p >= base + pums_person_count * sizeof *var) return valid_slow(var, field, len);
    const pums_check *ck = &pums_person_checks[var - pums_person_vars];
    if (len == 0) return ck->has_blank;
    if (len > (size_t)var->width) return 0;
    long long x;
    if (parse_int(field, len, var->type == 'N', &x)) {
        /* the last span whose lo <= x, if any, decides */
        int lo = 0, hi = ck->n_spans;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (ck->spans[mid].lo <= x)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo > 0 && x <= ck->spans[lo - 1].hi;
    }
    for (int k = 0; k < ck->n_text; k++) {
        const dp_pums_code *c = &var->codes[ck->text[k]];
        if (text_match(c->lo, c->hi, field, len)) return 1;
    }
    return 0;
}
