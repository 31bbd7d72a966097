/*
 * csv.c: the CSV record parser (RFC 4180 plus the lenient rule of csv.h for
 * malformed quoting), the chunker that cuts a stream into buffers of whole
 * records (quote parity, see csv_internal.h), and the public streaming
 * reader built from the two. The reference parser reads one byte at a time
 * through one state machine; the fast one skips plain bytes with a class
 * table and points into the buffer instead of copying, falling back to the
 * reference for any field that needs rewriting. Tests hold them equal.
 */
#include <string.h>
#include "core/dp_internal.h"
#include "data/csv_internal.h"

DP_API void dp_csv_options_init(dp_csv_options *o) {
    o->delimiter = ',';
    o->trim = 0;
    o->max_field = DP_CSV_MAX_FIELD_DEFAULT;
    o->max_record = DP_CSV_MAX_RECORD_DEFAULT;
}

void csv_parser_init(csv_parser *p, const dp_csv_options *o, const int32_t *slot, size_t nslot) {
    if (o)
        p->o = *o;
    else
        dp_csv_options_init(&p->o);
    memset(p->cls, CSV_C_PLAIN, sizeof p->cls);
    for (int c = 0x80; c < 256; c++)
        p->cls[c] = CSV_C_HIGH;
    p->cls[0] = CSV_C_NUL;
    p->cls['\n'] = CSV_C_LF;
    p->cls['\r'] = CSV_C_CR;
    p->cls['"'] = CSV_C_QUOTE;
    p->cls[(unsigned char)p->o.delimiter] = CSV_C_DELIM;
    csv_parser_set_slots(p, slot, nslot);
}

void csv_parser_set_slots(csv_parser *p, const int32_t *slot, size_t nslot) {
    p->slot = slot;
    p->nslot = nslot;
    p->nneed = 0;
    for (size_t c = 0; c < nslot && p->nneed <= CSV_MAX_NEED; c++)
        if (slot[c] >= 0) {
            if (p->nneed < CSV_MAX_NEED) p->need[p->nneed] = (uint32_t)c;
            p->nneed++;
        }
    p->simd = p->nneed <= CSV_MAX_NEED;
}

int csv_utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    int n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < (size_t)n || p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

static int is_blank(const csv_parser *ps, unsigned char c) {
    return c == ' ' || (c == '\t' && ps->o.delimiter != '\t');
}

/* How a field ended. */
enum { TERM_DELIM, TERM_LINE, TERM_END };

typedef struct fld {
    const char *p;    /* content */
    size_t len;       /* content length */
    const char *next; /* first byte after the terminator */
    int term;
    int quoted; /* content came from inside quotes at least partly */
} fld;

#define FATAL(kind, at)                                                                            \
    do {                                                                                           \
        r->fatal = (kind);                                                                         \
        r->fatal_off = (size_t)((at)-rec);                                                         \
        return r->fatal;                                                                           \
    } while (0)

static void flag_bad(csv_rec *r, const char *rec, const char *at) {
    if (!(r->flags & DP_CSV_BAD_QUOTES)) r->bad_off = (uint32_t)(at - rec);
    r->flags |= DP_CSV_BAD_QUOTES;
}

/*
 * The reference reading of one field that starts at q: every byte through
 * one state machine, content always rewritten into *sp. OUT is outside
 * quotes, IN inside. Leading blanks are skipped and trailing blanks outside
 * quotes dropped when trimming (keep marks the end of what is kept).
 */
static csv_fatal field_ref(const csv_parser *ps, const char *rec, const char *q, const char *end,
                           char **sp, fld *f, csv_rec *r) {
    const char *fstart = q, *open = NULL, *raw_end;
    char *c0 = *sp, *s = *sp, *keep = *sp;
    int in = 0, quoted = 0;
    const int trim = ps->o.trim;
    for (;;) {
        if (q == end) {
            if (in) FATAL(CSV_E_UNTERMINATED, open);
            f->term = TERM_END;
            f->next = raw_end = q;
            break;
        }
        unsigned char c = (unsigned char)*q;
        if (c == 0) FATAL(CSV_E_NUL, q);
        if (c >= 0x80) {
            int n = csv_utf8_len((const unsigned char *)q, (const unsigned char *)end);
            if (!n) {
                r->byte = c;
                FATAL(CSV_E_UTF8, q);
            }
            if (!in && quoted) flag_bad(r, rec, q);
            memcpy(s, q, (size_t)n);
            s += n;
            q += n;
            if (!in) keep = s;
            continue;
        }
        if (in) {
            if (c == '"') {
                if (q + 1 < end && q[1] == '"') {
                    *s++ = '"';
                    q += 2;
                } else {
                    in = 0;
                    q++;
                    keep = s;
                }
            } else {
                if (c == '\n') r->lines++;
                *s++ = (char)c;
                q++;
            }
            continue;
        }
        if (c == (unsigned char)ps->o.delimiter) {
            f->term = TERM_DELIM;
            raw_end = q;
            f->next = q + 1;
            break;
        }
        if (c == '\n' || (c == '\r' && (q + 1 == end || q[1] == '\n'))) {
            f->term = TERM_LINE;
            raw_end = q;
            if (c == '\r') q++;
            if (q < end) { /* the '\n' (a lone CR at the very end has none) */
                r->lines++;
                q++;
            }
            f->next = q;
            break;
        }
        if (c == '"') {
            if (quoted || s != c0) flag_bad(r, rec, q); /* a quote inside a field */
            in = quoted = 1;
            open = q++;
            continue;
        }
        if (trim && is_blank(ps, c)) {
            if (s != c0 || quoted) *s++ = (char)c; /* maybe trailing: keep does not move */
            q++;
            continue;
        }
        if (quoted) flag_bad(r, rec, q); /* text after a closing quote */
        *s++ = (char)c;
        keep = s;
        q++;
    }
    if ((size_t)(raw_end - fstart) > ps->o.max_field) FATAL(CSV_E_FIELD_LONG, fstart);
    f->p = c0;
    f->len = (size_t)((trim ? keep : s) - c0);
    f->quoted = quoted;
    *sp = s;
    return CSV_OK;
}

static void store(const csv_parser *ps, dp_csv_field *fields, size_t col, const char *rec,
                  const char *fstart, const fld *f) {
    if (col < ps->nslot && ps->slot[col] >= 0) {
        dp_csv_field *o = &fields[ps->slot[col]];
        o->p = f->p;
        o->len = (uint32_t)f->len;
        o->off = (uint32_t)(fstart - rec);
    }
}

static void finish(csv_rec *r, const char *rec, const char *q, size_t col, const fld *last) {
    r->len = (size_t)(q - rec);
    r->nfields = col;
    r->blank = col == 1 && last->len == 0 && !last->quoted;
}

csv_fatal csv_parse_record_ref(const csv_parser *ps, const char *p, const char *end,
                               dp_csv_field *fields, char *scratch, csv_rec *r) {
    memset(r, 0, sizeof *r);
    const char *rec = p, *q = p;
    char *sp = scratch;
    size_t col = 0;
    fld f;
    for (;;) {
        const char *fstart = q;
        csv_fatal e = field_ref(ps, rec, q, end, &sp, &f, r);
        if (e) return e;
        store(ps, fields, col++, rec, fstart, &f);
        q = f.next;
        if (f.term != TERM_DELIM) break;
        if (q == end) { /* "a," at the very end: one more, empty field */
            fld empty = {q, 0, q, TERM_END, 0};
            store(ps, fields, col++, rec, q, &empty);
            break;
        }
    }
    finish(r, rec, q, col, &f);
    return CSV_OK;
}

/*
 * The fast reading of one field: the common shapes (plain text; one quoted
 * span with nothing after it but blanks) are found by scanning with the class
 * table and returned as pointers into the input. Anything else is read again
 * by field_ref from the field's start, so the two can only differ in speed.
 */
static csv_fatal field_fast(const csv_parser *ps, const char *rec, const char *q, const char *end,
                            char **sp, fld *f, csv_rec *r) {
    const char *fstart = q;
    const unsigned char *cls = ps->cls;
    const int trim = ps->o.trim;
    if (trim)
        while (q < end && is_blank(ps, (unsigned char)*q))
            q++;
    if (q < end && *q == '"') {
        const char *c0 = q + 1, *t = c0;
        uint32_t lines = 0;
        for (;;) {
            while (t < end && cls[(unsigned char)*t] != CSV_C_QUOTE &&
                   cls[(unsigned char)*t] < CSV_C_NUL && *t != '\n')
                t++;
            if (t == end) return field_ref(ps, rec, fstart, end, sp, f, r);
            unsigned char c = (unsigned char)*t;
            if (c == '"') break;
            if (c == '\n') {
                lines++;
                t++;
            } else if (c >= 0x80) {
                int n = csv_utf8_len((const unsigned char *)t, (const unsigned char *)end);
                if (!n) return field_ref(ps, rec, fstart, end, sp, f, r);
                t += n;
            } else { /* NUL */
                return field_ref(ps, rec, fstart, end, sp, f, r);
            }
        }
        const char *close = t, *u = t + 1;
        if (u < end && *u == '"') return field_ref(ps, rec, fstart, end, sp, f, r);
        if (trim)
            while (u < end && is_blank(ps, (unsigned char)*u))
                u++;
        if (u == end) {
            f->term = TERM_END;
            f->next = u;
        } else if (*u == ps->o.delimiter) {
            f->term = TERM_DELIM;
            f->next = u + 1;
        } else if (*u == '\n' || (*u == '\r' && (u + 1 == end || u[1] == '\n'))) {
            f->term = TERM_LINE;
            f->next = u + (*u == '\r' ? (u + 1 < end ? 2 : 1) : 1);
            if (f->next > u && f->next[-1] == '\n') lines++;
        } else {
            return field_ref(ps, rec, fstart, end, sp, f, r);
        }
        if ((size_t)(u - fstart) > ps->o.max_field) FATAL(CSV_E_FIELD_LONG, fstart);
        r->lines += lines;
        f->p = c0;
        f->len = (size_t)(close - c0);
        f->quoted = 1;
        return CSV_OK;
    }
    const char *c0 = q, *t = q;
    for (;;) {
        while (t < end && cls[(unsigned char)*t] == CSV_C_PLAIN)
            t++;
        if (t == end) {
            f->term = TERM_END;
            f->next = t;
            break;
        }
        unsigned char k = cls[(unsigned char)*t];
        if (k == CSV_C_DELIM) {
            f->term = TERM_DELIM;
            f->next = t + 1;
            break;
        }
        if (k == CSV_C_LF) {
            f->term = TERM_LINE;
            f->next = t + 1;
            r->lines++;
            break;
        }
        if (k == CSV_C_CR) {
            if (t + 1 == end) {
                f->term = TERM_LINE;
                f->next = t + 1;
                break;
            }
            if (t[1] == '\n') {
                f->term = TERM_LINE;
                f->next = t + 2;
                r->lines++;
                break;
            }
            t++; /* a CR inside a field is text */
            continue;
        }
        if (k == CSV_C_HIGH) {
            int n = csv_utf8_len((const unsigned char *)t, (const unsigned char *)end);
            if (n) {
                t += n;
                continue;
            }
        }
        return field_ref(ps, rec, fstart, end, sp, f, r); /* quote, NUL, bad UTF-8 */
    }
    if ((size_t)(t - fstart) > ps->o.max_field) FATAL(CSV_E_FIELD_LONG, fstart);
    const char *e = t;
    if (trim)
        while (e > c0 && is_blank(ps, (unsigned char)e[-1]))
            e--;
    f->p = c0;
    f->len = (size_t)(e - c0);
    f->quoted = 0;
    return CSV_OK;
}

/*
 * The block scanner: most records of a census file are plain (no quote, no
 * byte >= 0x80, no NUL, at most a CR before the LF). For those, one pass
 * over 64-byte blocks builds bit masks of delimiters and line ends (SIMD
 * compares), and the stored columns are found by counting delimiters
 * (popcount) and selecting the n-th set bit (pdep), so the ~280 fields of a
 * PUMS line that prep does not use cost a few instructions per 64 bytes,
 * not a branch per byte. Anything else returns 0 and is read field by field.
 *
 *     block b:   bytes  p[64b .. 64b+63]
 *     dmask[b]:  bit i set <=> p[64b+i] is the delimiter (before the LF)
 *     column c starts after the c-th delimiter and ends at the (c+1)-th or the LF
 */
enum { SCAN_MAX_BLOCKS = 128 };

#if defined(__AVX2__)
#include <immintrin.h>
static inline uint64_t eq64(__m256i a, __m256i b, char c) {
    __m256i v = _mm256_set1_epi8(c);
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, v)) |
           (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, v)) << 32;
}
static inline void block_masks(const unsigned char *s, char delim, uint64_t *d, uint64_t *lf,
                               uint64_t *cr, uint64_t *bad) {
    __m256i a = _mm256_loadu_si256((const __m256i *)s);
    __m256i b = _mm256_loadu_si256((const __m256i *)(s + 32));
    *d = eq64(a, b, delim);
    *lf = eq64(a, b, '\n');
    *cr = eq64(a, b, '\r');
    uint64_t high = (uint64_t)(uint32_t)_mm256_movemask_epi8(a) |
                    (uint64_t)(uint32_t)_mm256_movemask_epi8(b) << 32;
    *bad = eq64(a, b, '"') | eq64(a, b, 0) | high;
}
#elif defined(__SSE2__)
#include <emmintrin.h>
static inline uint64_t eq16(__m128i a, char c) {
    return (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, _mm_set1_epi8(c)));
}
static inline void block_masks(const unsigned char *s, char delim, uint64_t *d, uint64_t *lf,
                               uint64_t *cr, uint64_t *bad) {
    *d = *lf = *cr = *bad = 0;
    for (int k = 0; k < 4; k++) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + 16 * k));
        int sh = 16 * k;
        *d |= eq16(a, delim) << sh;
        *lf |= eq16(a, '\n') << sh;
        *cr |= eq16(a, '\r') << sh;
        *bad |= (eq16(a, '"') | eq16(a, 0) | (uint64_t)(uint16_t)_mm_movemask_epi8(a)) << sh;
    }
}
#else
static inline void block_masks(const unsigned char *s, char delim, uint64_t *d, uint64_t *lf,
                               uint64_t *cr, uint64_t *bad) {
    *d = *lf = *cr = *bad = 0;
    for (int i = 0; i < 64; i++) {
        uint64_t bit = (uint64_t)1 << i;
        unsigned char c = s[i];
        if (c == (unsigned char)delim) *d |= bit;
        if (c == '\n') *lf |= bit;
        if (c == '\r') *cr |= bit;
        if (c == '"' || c == 0 || c >= 0x80) *bad |= bit;
    }
}
#endif

#if defined(__BMI2__)
#include <immintrin.h>
static inline unsigned select_bit(uint64_t m, unsigned k) { /* k-th set bit, from 0 */
    return (unsigned)__builtin_ctzll(_pdep_u64((uint64_t)1 << k, m));
}
#else
static inline unsigned select_bit(uint64_t m, unsigned k) {
    while (k--)
        m &= m - 1;
    return (unsigned)__builtin_ctzll(m);
}
#endif

int csv_scan_record(const csv_parser *ps, const char *p, const char *end, dp_csv_field *fields,
                    csv_rec *r) {
    uint64_t dm[SCAN_MAX_BLOCKS];
    uint32_t cnt[SCAN_MAX_BLOCKS];
    const unsigned char *s = (const unsigned char *)p;
    size_t avail = (size_t)(end - p), lf = SIZE_MAX, nb;
    int cr_pending = 0; /* a CR in the last byte of the previous block */
    for (nb = 0; nb < SCAN_MAX_BLOCKS; nb++) {
        size_t off = nb * 64;
        if (off >= avail) return 0; /* no line end: the last record of the file */
        uint64_t d, l, c, bad, valid = ~(uint64_t)0;
        if (avail - off >= 64) {
            block_masks(s + off, ps->o.delimiter, &d, &l, &c, &bad);
        } else {
            unsigned char tmp[64] = {0};
            memcpy(tmp, s + off, avail - off);
            block_masks(tmp, ps->o.delimiter, &d, &l, &c, &bad);
            valid = ((uint64_t)1 << (avail - off)) - 1;
            d &= valid, l &= valid, c &= valid, bad &= valid;
        }
        if (l) {
            unsigned k = (unsigned)__builtin_ctzll(l);
            uint64_t before = ((uint64_t)1 << k) - 1; /* k < 64 */
            if (bad & before) return 0;
            c &= before;
            if (c ? (k == 0 || c != (uint64_t)1 << (k - 1) || cr_pending) : (cr_pending && k != 0))
                return 0; /* a CR that does not end the line */
            dm[nb] = d & before;
            cnt[nb] = (uint32_t)__builtin_popcountll(dm[nb]);
            lf = off + k;
            nb++;
            break;
        }
        if (bad || cr_pending || (c && c != (uint64_t)1 << 63)) return 0;
        cr_pending = c != 0;
        dm[nb] = d;
        cnt[nb] = (uint32_t)__builtin_popcountll(d);
    }
    if (lf == SIZE_MAX || lf > ps->o.max_field) return 0; /* long: let the reader check fields */
    size_t content = lf - (lf > 0 && p[lf - 1] == '\r'), total = 0;
    for (size_t b = 0; b < nb; b++)
        total += cnt[b];
    memset(r, 0, sizeof *r);
    r->len = lf + 1;
    r->lines = 1;
    r->nfields = total + 1;
    /* delimiter j (from 1) is at byte delim_at(j); walk blocks forward only */
    size_t b = 0, before = 0;
#define DELIM_AT(j, out)                                                                           \
    do {                                                                                           \
        while (before + cnt[b] < (j))                                                              \
            before += cnt[b++];                                                                    \
        (out) = b * 64 + select_bit(dm[b], (unsigned)((j)-before - 1));                            \
    } while (0)
    const int trim = ps->o.trim;
    for (size_t k = 0; k < ps->nneed; k++) {
        size_t col = ps->need[k];
        if (col >= r->nfields) break;
        size_t a = 0, e = content;
        if (col > 0) {
            DELIM_AT(col, a);
            a++;
        }
        if (col < total) DELIM_AT(col + 1, e);
        dp_csv_field *f = &fields[ps->slot[col]];
        f->off = (uint32_t)a;
        if (trim) {
            while (a < e && is_blank(ps, s[a]))
                a++;
            while (e > a && is_blank(ps, s[e - 1]))
                e--;
        }
        f->p = p + a;
        f->len = (uint32_t)(e - a);
    }
#undef DELIM_AT
    if (r->nfields == 1) { /* blank: nothing but (trimmed) blanks */
        size_t a = 0, e = content;
        if (trim)
            while (a < e && is_blank(ps, s[a]))
                a++;
        r->blank = a == e;
    }
    return 1;
}

csv_fatal csv_parse_record(const csv_parser *ps, const char *p, const char *end,
                           dp_csv_field *fields, char *scratch, csv_rec *r) {
    memset(r, 0, sizeof *r);
    if (ps->simd && csv_scan_record(ps, p, end, fields, r)) return CSV_OK;
    const char *rec = p, *q = p;
    char *sp = scratch;
    size_t col = 0;
    fld f;
    for (;;) {
        const char *fstart = q;
        csv_fatal e = field_fast(ps, rec, q, end, &sp, &f, r);
        if (e) return e;
        store(ps, fields, col++, rec, fstart, &f);
        q = f.next;
        if (f.term != TERM_DELIM) break;
        if (q == end) {
            fld empty = {q, 0, q, TERM_END, 0};
            store(ps, fields, col++, rec, q, &empty);
            break;
        }
    }
    finish(r, rec, q, col, &f);
    return CSV_OK;
}

void csv_locate(const char *rec, size_t off, uint64_t line, uint64_t *out_line, uint64_t *out_col) {
    size_t bol = 0;
    for (size_t i = 0; i < off; i++)
        if (rec[i] == '\n') {
            line++;
            bol = i + 1;
        }
    *out_line = line;
    *out_col = off - bol + 1;
}

static dp_status fatal_message(const char *name, uint64_t l, uint64_t c, const csv_rec *r,
                               const dp_csv_options *o) {
    switch (r->fatal) {
    case CSV_E_NUL:
        return dp_error(DP_E_FORMAT,
                        "%s:%llu:%llu: NUL byte (expected a text CSV file; is it binary or "
                        "UTF-16?)",
                        name, (unsigned long long)l, (unsigned long long)c);
    case CSV_E_UTF8:
        return dp_error(DP_E_FORMAT,
                        "%s:%llu:%llu: invalid UTF-8 byte 0x%02X (expected UTF-8 text; convert "
                        "the file, e.g. iconv -f latin1 -t utf-8)",
                        name, (unsigned long long)l, (unsigned long long)c, r->byte);
    case CSV_E_UNTERMINATED:
        return dp_error(DP_E_FORMAT,
                        "%s:%llu:%llu: unterminated quoted field (expected a closing '\"' before "
                        "the end of the file)",
                        name, (unsigned long long)l, (unsigned long long)c);
    case CSV_E_FIELD_LONG:
        return dp_error(DP_E_FORMAT,
                        "%s:%llu:%llu: field longer than %zu bytes (expected at most that; "
                        "raise the limit with --max-field)",
                        name, (unsigned long long)l, (unsigned long long)c, o->max_field);
    case CSV_OK:
        break;
    }
    return dp_error(DP_E_INTERNAL, "%s:%llu: csv_fatal_error without an error", name,
                    (unsigned long long)l);
}

dp_status csv_fatal_error(const char *name, const char *rec, uint64_t line, const csv_rec *r,
                          const dp_csv_options *o) {
    uint64_t l, c;
    csv_locate(rec, r->fatal_off, line, &l, &c);
    return fatal_message(name, l, c, r, o);
}

dp_status csv_fatal_error_in(const dp_source *src, const char *rec, uint64_t line, const csv_rec *r,
                             const dp_csv_options *o) {
    uint64_t l, c, local;
    const char *name;
    csv_locate(rec, r->fatal_off, line, &l, &c);
    dp_source_locate(src, l, &name, &local);
    return fatal_message(name, local, c, r, o);
}

/* ---- line boundaries ---- */

int csv_quote_parity(const char *p, size_t n) {
    int par = 0;
    const char *e = p + n;
    while ((p = memchr(p, '"', (size_t)(e - p))) != NULL) {
        par ^= 1;
        p++;
    }
    return par;
}

size_t csv_count_lines(const char *p, size_t n) {
    size_t k = 0;
#if defined(__AVX2__)
    /* the reader thread counts every line end of the input: 32 bytes a step */
    const __m256i nl = _mm256_set1_epi8('\n');
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i));
        k += (size_t)__builtin_popcount((unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, nl)));
    }
    p += i;
    n -= i;
#endif
    const char *e = p + n;
    while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

size_t csv_last_boundary(const char *p, size_t n, int in_quotes_at_start) {
    int state = in_quotes_at_start ^ csv_quote_parity(p, n); /* at p + n */
    const char *cur = p + n, *nl;
    while (cur > p && (nl = memrchr(p, '\n', (size_t)(cur - p))) != NULL) {
        state ^= csv_quote_parity(nl + 1, (size_t)(cur - nl - 1)); /* now: just after nl */
        if (!state) return (size_t)(nl - p) + 1;
        cur = nl;
    }
    return 0;
}

/* ---- the chunker ---- */

dp_status csv_chunker_init(csv_chunker *ck, dp_source *src, size_t chunk_bytes, size_t max_record) {
    memset(ck, 0, sizeof *ck);
    ck->src = src;
    ck->chunk_bytes = chunk_bytes ? chunk_bytes : (size_t)4 << 20;
    ck->max_record = max_record ? max_record : DP_CSV_MAX_RECORD_DEFAULT;
    ck->line = 1;
    return DP_OK;
}

void csv_chunker_free(csv_chunker *ck) {
    dp_free(ck->carry);
    ck->carry = NULL;
}

void csv_chunk_free(csv_chunk *c) {
    dp_free(c->buf);
    memset(c, 0, sizeof *c);
}

static dp_status grow(char **buf, size_t *cap, size_t need, const char *what) {
    if (need <= *cap) return DP_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    char *b = dp_realloc(*buf, n);
    if (!b) return dp_error(DP_E_NOMEM, "out of memory for %s (%zu bytes)", what, n);
    *buf = b;
    *cap = n;
    return DP_OK;
}

dp_status csv_chunker_next(csv_chunker *ck, csv_chunk *c, int *got) {
    *got = 0;
    if (ck->done) return DP_OK;
    size_t want = DP_MAX(ck->chunk_bytes, ck->carry_len + ck->carry_len / 2 + 1);
    DP_TRY(grow(&c->buf, &c->cap, want, "a chunk of input"));
    if (ck->carry_len) memcpy(c->buf, ck->carry, ck->carry_len);
    size_t len = ck->carry_len, boundary;
    ck->carry_len = 0;
    c->offset = ck->offset;
    c->line = ck->line;
    c->start = 0;
    c->final = 0;
    for (;;) {
        while (len < c->cap && !ck->eof) {
            size_t r;
            DP_TRY(dp_source_read(ck->src, c->buf + len, c->cap - len, &r));
            if (r == 0) ck->eof = 1;
            len += r;
        }
        if (ck->eof) {
            boundary = len;
            c->final = 1;
            break;
        }
        boundary = csv_last_boundary(c->buf, len, 0);
        if (boundary > 0) break;
        if (len >= ck->max_record) {
            const char *name;
            uint64_t line;
            dp_source_locate(ck->src, ck->line, &name, &line);
            return dp_error(DP_E_FORMAT,
                            "%s:%llu: record longer than %zu bytes without a line end outside "
                            "quotes (expected a CSV line end; is this a CSV file?)",
                            name, (unsigned long long)line, ck->max_record);
        }
        DP_TRY(grow(&c->buf, &c->cap, c->cap * 2, "a long record"));
    }
    if (!ck->started) {
        ck->started = 1;
        if (len >= 3 && (unsigned char)c->buf[0] == 0xEF && (unsigned char)c->buf[1] == 0xBB &&
            (unsigned char)c->buf[2] == 0xBF) {
            c->start = 3;
            ck->bom = 1;
        }
    }
    DP_TRY(grow(&ck->carry, &ck->carry_cap, len - boundary, "the input carry-over"));
    if (len > boundary) memcpy(ck->carry, c->buf + boundary, len - boundary);
    ck->carry_len = len - boundary;
    c->len = boundary;
    ck->line += csv_count_lines(c->buf, boundary);
    ck->offset += boundary;
    if (c->final) ck->done = 1;
    *got = c->len > c->start || !c->final ? 1 : 0;
    return DP_OK;
}

/* ---- the public streaming reader ---- */

struct dp_csv_reader {
    dp_source *src;
    int own_src;
    csv_parser ps;
    csv_chunker ck;
    csv_chunk ch;
    int have;
    size_t pos;
    uint64_t line, blank;
    dp_csv_field *fields;
    int32_t *slot;
    size_t fcap;
    char *scratch;
    size_t scap;
};

static dp_status reader_fields(dp_csv_reader *r, size_t n) {
    if (n <= r->fcap) return DP_OK;
    size_t cap = DP_MAX(n, 2 * r->fcap);
    dp_csv_field *f = dp_realloc(r->fields, cap * sizeof *f);
    if (!f) return dp_error(DP_E_NOMEM, "out of memory for %zu fields", cap);
    r->fields = f;
    int32_t *s = dp_realloc(r->slot, cap * sizeof *s);
    if (!s) return dp_error(DP_E_NOMEM, "out of memory for %zu fields", cap);
    r->slot = s;
    for (size_t i = r->fcap; i < cap; i++)
        s[i] = (int32_t)i;
    r->fcap = cap;
    csv_parser_set_slots(&r->ps, r->slot, cap);
    return DP_OK;
}

DP_API dp_status dp_csv_open_source(dp_source *src, const dp_csv_options *o, dp_csv_reader **out) {
    *out = NULL;
    dp_csv_reader *r = dp_calloc(1, sizeof *r);
    if (!r) return dp_error(DP_E_NOMEM, "out of memory for a CSV reader");
    r->src = src;
    csv_parser_init(&r->ps, o, NULL, 0);
    dp_status st = csv_chunker_init(&r->ck, src, (size_t)1 << 20, r->ps.o.max_record);
    if (st == DP_OK) st = reader_fields(r, 64);
    if (st != DP_OK) {
        dp_csv_close(r);
        return st;
    }
    *out = r;
    return DP_OK;
}

DP_API dp_status dp_csv_open(const char *path, const dp_csv_options *o, dp_csv_reader **out) {
    *out = NULL;
    dp_source *src;
    dp_source_options so;
    dp_source_options_init(&so);
    if (o) so.delimiter = o->delimiter;
    DP_TRY(dp_source_open_with(path, &so, &src));
    dp_status st = dp_csv_open_source(src, o, out);
    if (st != DP_OK) {
        dp_source_close(src);
        return st;
    }
    (*out)->own_src = 1;
    return DP_OK;
}

DP_API void dp_csv_close(dp_csv_reader *r) {
    if (!r) return;
    csv_chunker_free(&r->ck);
    csv_chunk_free(&r->ch);
    dp_free(r->fields);
    dp_free(r->slot);
    dp_free(r->scratch);
    if (r->own_src) dp_source_close(r->src);
    dp_free(r);
}

DP_API dp_status dp_csv_next(dp_csv_reader *r, dp_csv_record *rec) {
    memset(rec, 0, sizeof *rec);
    for (;;) {
        if (!r->have || r->pos >= r->ch.len) {
            if (r->have && r->ch.final) return DP_OK;
            int got;
            DP_TRY(csv_chunker_next(&r->ck, &r->ch, &got));
            if (!got) return DP_OK;
            r->have = 1;
            r->pos = r->ch.start;
            r->line = r->ch.line;
            DP_TRY(grow(&r->scratch, &r->scap, r->ch.len + 1, "CSV field text"));
            continue;
        }
        const char *p = r->ch.buf + r->pos, *end = r->ch.buf + r->ch.len;
        csv_rec cr;
        if (csv_parse_record(&r->ps, p, end, r->fields, r->scratch, &cr))
            return csv_fatal_error_in(r->src, p, r->line, &cr, &r->ps.o);
        if (cr.nfields > r->fcap) {
            DP_TRY(reader_fields(r, cr.nfields));
            csv_parse_record(&r->ps, p, end, r->fields, r->scratch, &cr);
        }
        r->pos += cr.len;
        uint64_t line = r->line;
        r->line += cr.lines;
        if (cr.blank) {
            r->blank++;
            continue;
        }
        rec->fields = r->fields;
        rec->nfields = cr.nfields;
        rec->line = line;
        rec->flags = cr.flags;
        rec->bad_off = cr.bad_off;
        rec->raw = p;
        rec->raw_len = cr.len;
        return DP_OK;
    }
}

DP_API uint64_t dp_csv_blank_lines(const dp_csv_reader *r) {
    return r->blank;
}
DP_API dp_source *dp_csv_source(dp_csv_reader *r) {
    return r->src;
}

DP_API void dp_csv_position(const dp_csv_record *rec, size_t off, uint64_t *line, uint64_t *col) {
    csv_locate(rec->raw, off, rec->line, line, col);
}
