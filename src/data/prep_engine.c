/*
 * prep_engine.c: the parallel heart of prep. The input is cut into chunks of
 * whole records (csv_chunker); a batch of chunks is parsed by OpenMP threads
 * while one thread reads the next batch, each chunk into its own buffers;
 * then the chunks are merged in file order. Duplicate keys, interned strings
 * and "first seen" locations are decided at the merge, sequentially, so the
 * result is the same for any number of threads and any chunk size:
 *
 *     reader:   [batch k+1: read, hash, cut at line ends] ......
 *     workers:  [chunk k.0] [chunk k.1] ... (dynamic schedule)  -> merge k in order
 *
 * A chunk's records are checked in this order, the first failure being the
 * record's one reason: field count, quoting, target (missing, invalid), the
 * population (not an error: filtered), features, the record key.
 */
#include <math.h>
#include <omp.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

/* ---- interning strings of inferred columns ---- */

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

void prep_interner_free(prep_interner *in) {
    for (size_t i = 0; i < in->n; i++)
        dp_free(in->str[i]);
    dp_free(in->str);
    dp_free(in->tab);
    dp_free(in->hash);
    memset(in, 0, sizeof *in);
}

static dp_status interner_grow(prep_interner *in) {
    size_t cap = in->tcap ? 2 * in->tcap : 256;
    uint32_t *tab = dp_calloc(cap, sizeof *tab);
    if (!tab) return dp_error(DP_E_NOMEM, "out of memory for distinct values");
    for (size_t i = 0; i < in->tcap; i++) {
        if (!in->tab[i]) continue;
        size_t j = in->hash[in->tab[i] - 1] & (cap - 1);
        while (tab[j])
            j = (j + 1) & (cap - 1);
        tab[j] = in->tab[i];
    }
    dp_free(in->tab);
    in->tab = tab;
    in->tcap = cap;
    return DP_OK;
}

dp_status prep_intern(prep_interner *in, const char *p, size_t n, int32_t *id) {
    if (2 * (in->n + 1) > in->tcap) DP_TRY(interner_grow(in));
    uint64_t h = fnv1a(p, n);
    size_t j = h & (in->tcap - 1);
    for (; in->tab[j]; j = (j + 1) & (in->tcap - 1)) {
        uint32_t k = in->tab[j] - 1;
        if (in->hash[k] == h && strlen(in->str[k]) == n && memcmp(in->str[k], p, n) == 0) {
            *id = (int32_t)k;
            return DP_OK;
        }
    }
    if (in->n == in->cap) {
        size_t cap = in->cap ? 2 * in->cap : 64;
        char **s = dp_realloc(in->str, cap * sizeof *s);
        uint64_t *hs = s ? dp_realloc(in->hash, cap * sizeof *hs) : NULL;
        if (s) in->str = s;
        if (!s || !hs) return dp_error(DP_E_NOMEM, "out of memory for distinct values");
        in->hash = hs;
        in->cap = cap;
    }
    char *c = dp_malloc(n + 1);
    if (!c) return dp_error(DP_E_NOMEM, "out of memory for distinct values");
    memcpy(c, p, n);
    c[n] = '\0';
    in->str[in->n] = c;
    in->hash[in->n] = h;
    in->tab[j] = (uint32_t)(in->n + 1);
    *id = (int32_t)in->n++;
    return DP_OK;
}

/* ---- header ---- */

void prep_free_names(char **names, size_t n) {
    for (size_t i = 0; names && i < n; i++)
        dp_free(names[i]);
    dp_free(names);
}

dp_status prep_read_header(csv_chunker *ck, csv_chunk *first, const dp_csv_options *o,
                           const char *name, char ***cols, size_t *ncols, int *got) {
    *cols = NULL;
    *ncols = 0;
    DP_TRY(csv_chunker_next(ck, first, got));
    if (!*got) return DP_OK;
    size_t cap = 64;
    int32_t *slot = NULL;
    dp_csv_field *f = NULL;
    char *scratch = dp_malloc(first->len + 1);
    dp_status st = DP_OK;
    csv_rec r;
    for (;;) {
        dp_free(slot);
        dp_free(f);
        slot = dp_malloc(cap * sizeof *slot);
        f = dp_malloc(cap * sizeof *f);
        if (!slot || !f || !scratch) {
            st = dp_error(DP_E_NOMEM, "%s: out of memory for the header", name);
            goto done;
        }
        for (size_t i = 0; i < cap; i++)
            slot[i] = (int32_t)i;
        csv_parser ps;
        csv_parser_init(&ps, o, slot, cap);
        for (;;) { /* blank lines before the header are skipped */
            if (first->start >= first->len) {
                *got = 0;
                goto done;
            }
            const char *p = first->buf + first->start;
            if (csv_parse_record(&ps, p, first->buf + first->len, f, scratch, &r)) {
                st = csv_fatal_error_in(ck->src, p, first->line, &r, o);
                goto done;
            }
            if (!r.blank || r.nfields > cap) break;
            first->start += r.len;
            first->line += r.lines;
        }
        if (r.nfields <= cap) break;
        cap = r.nfields;
    }
    char **names = dp_calloc(r.nfields, sizeof *names);
    if (!names) {
        st = dp_error(DP_E_NOMEM, "%s: out of memory for the header", name);
        goto done;
    }
    for (size_t i = 0; i < r.nfields; i++) {
        if (!(names[i] = dp_malloc(f[i].len + 1))) {
            prep_free_names(names, r.nfields);
            st = dp_error(DP_E_NOMEM, "%s: out of memory for the header", name);
            goto done;
        }
        memcpy(names[i], f[i].p, f[i].len);
        names[i][f[i].len] = '\0';
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                uint64_t l, c, local;
                const char *where;
                csv_locate(first->buf + first->start, f[i].off, first->line, &l, &c);
                dp_source_locate(ck->src, l, &where, &local);
                st = dp_error(DP_E_SCHEMA,
                              "%s:%llu:%llu: duplicate column name '%s' (also column %zu; "
                              "expected unique names)",
                              where, (unsigned long long)local, (unsigned long long)c, names[i],
                              j + 1);
                prep_free_names(names, r.nfields);
                goto done;
            }
        }
    }
    *cols = names;
    *ncols = r.nfields;
    first->start += r.len;
    first->line += r.lines;
done:
    dp_free(slot);
    dp_free(f);
    dp_free(scratch);
    return st;
}

/* ---- mapping the used columns ---- */

static int find(char **cols, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(cols[i], name) == 0) return (int)i;
    return -1;
}

static int use(prep_engine *e, const char *name) {
    int c = find(e->colnames, e->ncols, name);
    if (c < 0) return -1;
    if (e->slot[c] < 0) {
        e->slot[c] = (int32_t)e->nused;
        e->used_name[e->nused++] = e->colnames[c];
    }
    return e->slot[c];
}

dp_status prep_engine_map(prep_engine *e) {
    e->slot = dp_malloc((e->ncols + 1) * sizeof *e->slot);
    e->used_name = dp_malloc((e->nfeat + 4) * sizeof *e->used_name);
    e->u_feat = dp_malloc((e->nfeat + 1) * sizeof *e->u_feat);
    if (!e->slot || !e->used_name || !e->u_feat)
        return dp_error(DP_E_NOMEM, "out of memory for the column map");
    for (size_t i = 0; i < e->ncols; i++)
        e->slot[i] = -1;
    e->nused = 0;
    e->u_target = e->task ? use(e, e->task->target) : -1;
    for (size_t k = 0; k < e->nfeat; k++) {
        e->u_feat[k] = use(e, e->feat[k].name);
        if (e->u_feat[k] < 0)
            return dp_error(DP_E_SCHEMA, "%s: no column '%s' (expected in the header)", e->name,
                            e->feat[k].name);
    }
    e->u_serial = e->keyed ? use(e, "SERIALNO") : -1;
    e->u_spord = e->keyed ? use(e, "SPORDER") : -1;
    if (e->keyed && (e->u_serial < 0 || e->u_spord < 0)) e->keyed = 0;
    return DP_OK;
}

void prep_engine_free(prep_engine *e) {
    dp_free(e->slot);
    dp_free(e->used_name);
    dp_free(e->u_feat);
    e->slot = NULL;
    e->used_name = NULL;
    e->u_feat = NULL;
}

/* ---- one chunk ---- */

typedef struct chunk_out {
    size_t n, cap;
    prep_cell *cells;
    int32_t *label;
    uint8_t *reason;
    uint64_t *key, *line;
    char *arena; /* strings of inferred columns: [uint32 length][bytes] */
    size_t alen, acap;
    uint64_t records, blank, filtered;
    uint64_t dropped[DP_PREP_REASONS];
    uint64_t *dropped_col, *missing;
    prep_first first[DP_PREP_REASONS];
    dp_status status;
    char msg[1024];
} chunk_out;

typedef struct worker {
    dp_csv_field *fields;
    prep_cell *row;
    char *scratch;
    size_t scap;
} worker;

static int reserve_rows(const prep_engine *e, chunk_out *o) {
    if (o->n < o->cap) return 1;
    size_t cap = o->cap ? 2 * o->cap : 1024;
    prep_cell *c = dp_realloc(o->cells, cap * (e->nfeat + 1) * sizeof *c);
    if (c) o->cells = c;
    int32_t *l = dp_realloc(o->label, cap * sizeof *l);
    if (l) o->label = l;
    uint8_t *r = dp_realloc(o->reason, cap);
    if (r) o->reason = r;
    uint64_t *k = dp_realloc(o->key, cap * sizeof *k);
    if (k) o->key = k;
    uint64_t *ln = dp_realloc(o->line, cap * sizeof *ln);
    if (ln) o->line = ln;
    if (!c || !l || !r || !k || !ln) return 0;
    o->cap = cap;
    return 1;
}

static int arena_put(chunk_out *o, const char *p, size_t n, int32_t *off) {
    size_t need = o->alen + 4 + n;
    if (need > INT32_MAX) return 0;
    if (need > o->acap) {
        size_t cap = o->acap ? 2 * o->acap : 4096;
        while (cap < need)
            cap *= 2;
        char *a = dp_realloc(o->arena, cap);
        if (!a) return 0;
        o->arena = a;
        o->acap = cap;
    }
    uint32_t len = (uint32_t)n;
    memcpy(o->arena + o->alen, &len, 4);
    memcpy(o->arena + o->alen + 4, p, n);
    *off = (int32_t)o->alen;
    o->alen = need;
    return 1;
}

/* A short, printable copy of a field for messages. */
static void snippet(char *out, size_t cap, const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        out[k++] = c >= 32 && c != 127 ? (char)c : '?';
        if (i == 40 && n > 44) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
    }
    out[k] = '\0';
}

static void note_first(chunk_out *o, int reason, const char *rec, uint64_t line, size_t off,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void note_first(chunk_out *o, int reason, const char *rec, uint64_t line, size_t off,
                       const char *fmt, ...) {
    prep_first *f = &o->first[reason];
    if (f->have) return;
    f->have = 1;
    csv_locate(rec, off, line, &f->line, &f->col);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof f->detail, fmt, ap);
    va_end(ap);
}

static const char *what_expected(const prep_feature *f, int reason) {
    if (reason == DP_PREP_NON_NUMERIC)
        return f->integer || f->dict_type ? "expected an integer code" : "expected a number";
    if (f->kind == PREP_CATEGORICAL)
        return f->dict_type ? "expected a code of the dictionary"
                            : "expected one of the listed categories";
    return f->nspans ? "expected a value of the dictionary's ranges"
                     : "expected a value within the range";
}

static void process_chunk(const prep_engine *e, const csv_chunk *c, chunk_out *o, worker *w,
                          csv_parser *ps) {
    o->n = o->alen = 0;
    o->records = o->blank = o->filtered = 0;
    memset(o->dropped, 0, sizeof o->dropped);
    memset(o->dropped_col, 0, DP_PREP_REASONS * e->nused * sizeof *o->dropped_col);
    memset(o->missing, 0, e->nused * sizeof *o->missing);
    memset(o->first, 0, sizeof o->first);
    o->status = DP_OK;
    if (w->scap < c->len + 1) {
        char *s = dp_realloc(w->scratch, c->len + 1);
        if (!s) {
            o->status = dp_error(DP_E_NOMEM, "out of memory for a chunk of %zu bytes", c->len);
            snprintf(o->msg, sizeof o->msg, "%s", dp_last_error());
            return;
        }
        w->scratch = s;
        w->scap = c->len + 1;
    }
    const char *end = c->buf + c->len;
    size_t pos = c->start;
    uint64_t line = c->line;
    const size_t nf = e->nfeat;
    while (pos < c->len) {
        const char *rec = c->buf + pos;
        csv_rec r;
        if (csv_parse_record(ps, rec, end, w->fields, w->scratch, &r)) {
            o->status = e->src ? csv_fatal_error_in(e->src, rec, line, &r, &e->copt)
                               : csv_fatal_error(e->name, rec, line, &r, &e->copt);
            snprintf(o->msg, sizeof o->msg, "%s", dp_last_error());
            return;
        }
        uint64_t rline = line;
        pos += r.len;
        line += r.lines;
        if (r.blank) {
            o->blank++;
            continue;
        }
        o->records++;
        int reason = 0, label = -1, u_bad = -1;
        const dp_csv_field *fl = w->fields;
        if (r.nfields != e->ncols) {
            reason = DP_PREP_WRONG_FIELD_COUNT;
            note_first(o, reason, rec, rline, 0, "expected %zu fields as in the header, found %zu",
                       e->ncols, r.nfields);
        } else if (r.flags & DP_CSV_BAD_QUOTES) {
            reason = DP_PREP_BAD_QUOTING;
            note_first(o, reason, rec, rline, r.bad_off,
                       "a quote inside a field or text after a closing quote (expected RFC 4180 "
                       "quoting)");
        }
        if (!reason && e->u_target >= 0) {
            const dp_csv_field *t = &fl[e->u_target];
            int in_pop = 1;
            reason = prep_task_label(e->task, &e->na, t->p, t->len, &label, &in_pop);
            if (reason) {
                u_bad = e->u_target;
                char v[64];
                snippet(v, sizeof v, t->p, t->len);
                note_first(o, reason, rec, rline, t->off, "%s %s%s%s", e->task->target,
                           reason == DP_PREP_MISSING_LABEL ? "is blank or missing" : "'",
                           reason == DP_PREP_MISSING_LABEL ? "" : v,
                           reason == DP_PREP_MISSING_LABEL ? " (expected a label)"
                                                           : "' (expected a valid code)");
                label = -1;
                if (e->predict) reason = 0; /* predict: a bad label does not spoil the row */
            } else if (!in_pop && !e->predict) {
                o->filtered++;
                continue;
            }
        }
        int freason = 0;
        if (!reason) {
            for (size_t k = 0; k < nf; k++) {
                const prep_feature *f = &e->feat[k];
                const dp_csv_field *fd = &fl[e->u_feat[k]];
                int pr = prep_feature_parse(f, &e->na, fd->p, fd->len, &w->row[k]);
                if (pr == PREP_PARSE_MISSING) {
                    o->missing[e->u_feat[k]]++;
                } else if (pr > 0 && !freason) {
                    freason = pr;
                    u_bad = e->u_feat[k];
                    char v[64];
                    snippet(v, sizeof v, fd->p, fd->len);
                    note_first(o, pr, rec, rline, fd->off, "%s '%s' (%s)", f->name, v,
                               what_expected(f, pr));
                }
            }
            reason = freason;
        }
        uint64_t key = 0;
        if (!reason && e->keyed) {
            const dp_csv_field *s = &fl[e->u_serial], *p = &fl[e->u_spord];
            reason = prep_task_key(s->p, s->len, p->p, p->len, &key);
            if (reason) {
                u_bad = reason == DP_PREP_MISSING_KEY ? (s->len ? e->u_spord : e->u_serial)
                        : reason == DP_PREP_OUT_OF_RANGE && !(s->len == 13) ? e->u_serial
                                                                            : e->u_spord;
                const dp_csv_field *bad = &fl[u_bad];
                char v[64];
                snippet(v, sizeof v, bad->p, bad->len);
                note_first(o, reason, rec, rline, bad->off, "%s '%s' (expected %s)",
                           e->used_name[u_bad], v,
                           u_bad == e->u_serial ? "a serial number as 2023HU0000001"
                                                : "a person number 1-20");
            }
        }
        if (reason) {
            o->dropped[reason]++;
            if (u_bad >= 0) o->dropped_col[reason * e->nused + (size_t)u_bad]++;
            if (!e->predict) continue;
        }
        if (!reserve_rows(e, o)) {
            o->status = dp_error(DP_E_NOMEM, "%s: out of memory for the rows", e->name);
            snprintf(o->msg, sizeof o->msg, "%s", dp_last_error());
            return;
        }
        prep_cell *out = o->cells + o->n * nf;
        if (reason) {
            memset(out, 0, nf * sizeof *out);
        } else {
            for (size_t k = 0; k < nf; k++) {
                out[k] = w->row[k];
                if (e->feat[k].inferred) {
                    const dp_csv_field *fd = &fl[e->u_feat[k]];
                    /* the cell holds -1 (missing) or the string's arena offset */
                    out[k].i = -1;
                    if (!(fd->len == 0 || (e->na.n && prep_is_na(&e->na, fd->p, fd->len))) &&
                        !arena_put(o, fd->p, fd->len, &out[k].i)) {
                        o->status = dp_error(DP_E_NOMEM, "%s: out of memory for values", e->name);
                        snprintf(o->msg, sizeof o->msg, "%s", dp_last_error());
                        return;
                    }
                }
            }
        }
        o->label[o->n] = label;
        o->reason[o->n] = (uint8_t)reason;
        o->key[o->n] = key;
        o->line[o->n] = rline;
        o->n++;
    }
}

/* ---- merging, in file order ---- */

static dp_status rows_reserve(prep_rows *r, size_t nf, size_t more, int keys) {
    if (r->n + more <= r->cap) return DP_OK;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->n + more)
        cap *= 2;
    prep_cell *c = dp_realloc(r->cells, cap * (nf + 1) * sizeof *c);
    if (c) r->cells = c;
    int32_t *l = dp_realloc(r->label, cap * sizeof *l);
    if (l) r->label = l;
    uint8_t *re = dp_realloc(r->reason, cap);
    if (re) r->reason = re;
    uint64_t *ln = dp_realloc(r->line, cap * sizeof *ln);
    if (ln) r->line = ln;
    uint64_t *ky = keys ? dp_realloc(r->key, cap * sizeof *ky) : r->key;
    if (ky) r->key = ky;
    if (!c || !l || !re || !ln || (keys && !ky))
        return dp_error(DP_E_NOMEM, "out of memory for %zu rows", cap);
    r->cap = cap;
    return DP_OK;
}

void prep_note_duplicate(prep_first *f, uint64_t line, uint64_t seen) {
    f->have = 1;
    f->line = line;
    f->col = 1;
    f->seen = seen;
    snprintf(f->detail, sizeof f->detail, "SERIALNO+SPORDER already seen");
}

/* Insert a key; 1 if it was new, 0 if seen (then *first_line is where). */
static int key_insert(prep_rows *r, uint64_t key, uint64_t line, uint64_t *first_line, int *nomem) {
    if (2 * (r->nkeys + 1) > r->kcap) {
        size_t cap = r->kcap ? 2 * r->kcap : 1 << 16;
        uint64_t *k = dp_calloc(cap, sizeof *k), *l = dp_malloc(cap * sizeof *l);
        if (!k || !l) {
            dp_free(k);
            dp_free(l);
            *nomem = 1;
            return 0;
        }
        for (size_t i = 0; i < r->kcap; i++) {
            if (!r->keys[i]) continue;
            size_t j = (r->keys[i] * 0x9e3779b97f4a7c15ULL) >> 20 & (cap - 1);
            while (k[j])
                j = (j + 1) & (cap - 1);
            k[j] = r->keys[i];
            l[j] = r->key_line[i];
        }
        dp_free(r->keys);
        dp_free(r->key_line);
        r->keys = k;
        r->key_line = l;
        r->kcap = cap;
    }
    uint64_t k1 = key + 1;
    size_t j = (k1 * 0x9e3779b97f4a7c15ULL) >> 20 & (r->kcap - 1);
    for (; r->keys[j]; j = (j + 1) & (r->kcap - 1))
        if (r->keys[j] == k1) {
            *first_line = r->key_line[j];
            return 0;
        }
    r->keys[j] = k1;
    r->key_line[j] = line;
    r->nkeys++;
    return 1;
}

static dp_status merge(const prep_engine *e, const csv_chunk *c, chunk_out *o, prep_rows *r) {
    if (o->status) return dp_error(o->status, "%s", o->msg);
    const size_t nf = e->nfeat;
    r->records += o->records;
    r->blank += o->blank;
    r->filtered += o->filtered;
    for (int k = 0; k < DP_PREP_REASONS; k++) {
        r->dropped[k] += o->dropped[k];
        if (!r->first[k].have && o->first[k].have) r->first[k] = o->first[k];
    }
    for (size_t k = 0; k < DP_PREP_REASONS * e->nused; k++)
        r->dropped_col[k] += o->dropped_col[k];
    for (size_t k = 0; k < e->nused; k++)
        r->missing[k] += o->missing[k];
    DP_TRY(rows_reserve(r, nf, o->n, e->keep_keys));
    int inferred = 0;
    for (size_t k = 0; k < nf; k++)
        inferred |= e->feat[k].inferred;
    for (size_t i = 0; i < o->n; i++) {
        if (e->keyed && !e->predict) {
            uint64_t seen = 0;
            int nomem = 0;
            if (!key_insert(r, o->key[i], o->line[i], &seen, &nomem)) {
                if (nomem) return dp_error(DP_E_NOMEM, "out of memory for the record keys");
                r->dropped[DP_PREP_DUPLICATE_KEY]++;
                r->dropped_col[DP_PREP_DUPLICATE_KEY * e->nused + (size_t)e->u_serial]++;
                prep_first *f = &r->first[DP_PREP_DUPLICATE_KEY];
                if (!f->have) prep_note_duplicate(f, o->line[i], seen);
                continue;
            }
        }
        prep_cell *dst = r->cells + r->n * nf;
        memcpy(dst, o->cells + i * nf, nf * sizeof *dst);
        if (inferred && !o->reason[i]) {
            for (size_t k = 0; k < nf; k++) {
                if (!e->feat[k].inferred || dst[k].i < 0) continue;
                uint32_t len;
                memcpy(&len, o->arena + dst[k].i, 4);
                DP_TRY(prep_intern(&r->strings[k], o->arena + dst[k].i + 4, len, &dst[k].i));
            }
        }
        r->label[r->n] = o->label[i];
        r->reason[r->n] = o->reason[i];
        r->line[r->n] = o->line[i];
        if (e->keep_keys) r->key[r->n] = o->key[i];
        r->n++;
    }
    (void)c;
    return DP_OK;
}

void prep_rows_free(prep_rows *r, size_t nfeat) {
    dp_free(r->cells);
    dp_free(r->label);
    dp_free(r->reason);
    dp_free(r->line);
    dp_free(r->key);
    dp_free(r->dropped_col);
    dp_free(r->missing);
    dp_free(r->keys);
    dp_free(r->key_line);
    for (size_t k = 0; r->strings && k < nfeat; k++)
        prep_interner_free(&r->strings[k]);
    dp_free(r->strings);
    memset(r, 0, sizeof *r);
}

static void chunk_out_free(chunk_out *o) {
    dp_free(o->cells);
    dp_free(o->label);
    dp_free(o->reason);
    dp_free(o->key);
    dp_free(o->line);
    dp_free(o->arena);
    dp_free(o->dropped_col);
    dp_free(o->missing);
}

typedef struct batch {
    csv_chunk *ch;
    chunk_out *out;
    int n;
} batch;

static dp_status read_batch(csv_chunker *ck, batch *b, int nb, int *eof) {
    b->n = 0;
    while (b->n < nb && !*eof) {
        int got;
        DP_TRY(csv_chunker_next(ck, &b->ch[b->n], &got));
        if (!got) {
            *eof = 1;
            break;
        }
        if (b->ch[b->n++].final) *eof = 1;
    }
    return DP_OK;
}

dp_status prep_engine_run(const prep_engine *e, csv_chunker *ck, csv_chunk *first, prep_rows *r) {
    memset(r, 0, sizeof *r);
    const int T = e->threads > 0 ? e->threads : 1, nb = 2 * T;
    dp_status st = DP_OK;
    batch b[2] = {{0}, {0}};
    worker *w = dp_calloc((size_t)T, sizeof *w);
    csv_parser *ps = dp_calloc((size_t)T, sizeof *ps);
    r->dropped_col = dp_calloc(DP_PREP_REASONS * e->nused + 1, sizeof *r->dropped_col);
    r->missing = dp_calloc(e->nused + 1, sizeof *r->missing);
    r->strings = dp_calloc(e->nfeat + 1, sizeof *r->strings);
    if (!w || !ps || !r->dropped_col || !r->missing || !r->strings) goto nomem;
    for (int t = 0; t < T; t++) {
        w[t].fields = dp_calloc(e->nused + 1, sizeof *w[t].fields);
        w[t].row = dp_calloc(e->nfeat + 1, sizeof *w[t].row);
        if (!w[t].fields || !w[t].row) goto nomem;
        csv_parser_init(&ps[t], &e->copt, e->slot, e->ncols);
    }
    for (int k = 0; k < 2; k++) {
        b[k].ch = dp_calloc((size_t)nb, sizeof *b[k].ch);
        b[k].out = dp_calloc((size_t)nb, sizeof *b[k].out);
        if (!b[k].ch || !b[k].out) goto nomem;
        for (int i = 0; i < nb; i++) {
            b[k].out[i].dropped_col = dp_calloc(DP_PREP_REASONS * e->nused + 1, sizeof(uint64_t));
            b[k].out[i].missing = dp_calloc(e->nused + 1, sizeof(uint64_t));
            if (!b[k].out[i].dropped_col || !b[k].out[i].missing) goto nomem;
        }
    }
    /* the first chunk (already read, header skipped) starts batch 0 */
    int eof = first->final, cur = 0;
    b[0].ch[0] = *first;
    memset(first, 0, sizeof *first); /* the batch owns its buffer now */
    b[0].n = 1;
    if (!eof) {
        batch rest = {b[0].ch + 1, b[0].out + 1, 0};
        if ((st = read_batch(ck, &rest, nb - 1, &eof))) goto done;
        b[0].n += rest.n;
    }
    while (b[cur].n > 0) {
        batch *a = &b[cur], *nx = &b[1 - cur];
        nx->n = 0;
        dp_status rst = DP_OK;
        char rmsg[1024] = "";
#pragma omp parallel num_threads(T)
        {
#pragma omp single nowait
            {
                if (!eof) {
                    rst = read_batch(ck, nx, nb, &eof);
                    if (rst) snprintf(rmsg, sizeof rmsg, "%s", dp_last_error());
                }
            }
            int t = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < a->n; i++)
                process_chunk(e, &a->ch[i], &a->out[i], &w[t], &ps[t]);
        }
        for (int i = 0; i < a->n && st == DP_OK; i++)
            st = merge(e, &a->ch[i], &a->out[i], r);
        if (st) goto done;
        if (rst) {
            st = dp_error(rst, "%s", rmsg);
            goto done;
        }
        cur = 1 - cur;
    }
    r->bytes = ck && ck->src ? dp_source_bytes_read(ck->src) : 0;
    goto done;
nomem:
    st = dp_error(DP_E_NOMEM, "%s: out of memory for the parse buffers", e->name);
done:
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < nb; i++) {
            if (b[k].ch) csv_chunk_free(&b[k].ch[i]);
            if (b[k].out) chunk_out_free(&b[k].out[i]);
        }
        dp_free(b[k].ch);
        dp_free(b[k].out);
    }
    for (int t = 0; w && t < T; t++) {
        dp_free(w[t].fields);
        dp_free(w[t].row);
        dp_free(w[t].scratch);
    }
    dp_free(w);
    dp_free(ps);
    if (st) prep_rows_free(r, e->nfeat);
    return st;
}
