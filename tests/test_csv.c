/*
 * test_csv.c: the CSV reader. Hand-worked records (quotes, CRLF, trimming,
 * malformed quoting); every fatal error located at the right line and
 * column; random tables written with RFC 4180 quoting read back field for
 * field through chunks of every small size; the fast parser equal to the
 * byte-at-a-time reference on random byte soup; and the chunker's quote
 * parity rule equal to where the parser actually ends records.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/csv_internal.h"
#include "dpsgd/csv.h"
#include "testutil.h"

TestSuite(csv, .init = tu_dir_init, .fini = tu_dir_fini);

static char *write_tmp(const char *name, const char *data, size_t n) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", tu_dir, name);
    cr_assert_eq(tu_write_file(path, data, n), 0);
    return path;
}

/* Read every record of `text` with the public reader; fields joined by '|'
 * and records by '\n' into out (a readable picture of what was parsed). */
static dp_status read_picture(const char *text, size_t n, int trim, char *out, size_t cap,
                              int *flags) {
    char *path = write_tmp("t.csv", text, n);
    dp_csv_options o;
    dp_csv_options_init(&o);
    o.trim = trim;
    dp_csv_reader *r;
    dp_status st = dp_csv_open(path, &o, &r);
    if (st) return st;
    out[0] = '\0';
    *flags = 0;
    for (;;) {
        dp_csv_record rec;
        st = dp_csv_next(r, &rec);
        if (st || rec.nfields == 0) break;
        *flags |= rec.flags;
        for (size_t i = 0; i < rec.nfields; i++) {
            size_t used = strlen(out);
            snprintf(out + used, cap - used, "%s%.*s", i ? "|" : "", (int)rec.fields[i].len,
                     rec.fields[i].p);
        }
        strncat(out, "\n", cap - strlen(out) - 1);
    }
    dp_csv_close(r);
    return st;
}

static void expect_picture(const char *text, int trim, const char *want, int want_flags) {
    char got[4096];
    int flags;
    dp_status st = read_picture(text, strlen(text), trim, got, sizeof got, &flags);
    cr_assert_eq(st, DP_OK, "%s", dp_last_error());
    cr_assert_str_eq(got, want, "input <%s> (trim %d)", text, trim);
    cr_assert_eq(flags, want_flags, "flags of <%s>", text);
}

Test(csv, hand_worked_records) {
    expect_picture("a,b,c\n1,2,3\n", 0, "a|b|c\n1|2|3\n", 0);
    expect_picture("a,b\r\n1,2\r\n", 0, "a|b\n1|2\n", 0);             /* CRLF */
    expect_picture("a,b\n1,2", 0, "a|b\n1|2\n", 0);                   /* no final line end */
    expect_picture("\"a,b\",\"c\"\"d\",e\r\n", 0, "a,b|c\"d|e\n", 0); /* RFC 4180 quoting */
    expect_picture("\"two\nlines\",x\ny,z\n", 0, "two\nlines|x\ny|z\n", 0);
    expect_picture(",,\n", 0, "||\n", 0);
    expect_picture("a,\n", 0, "a|\n", 0);
    expect_picture("a,", 0, "a|\n", 0);
    expect_picture("\n\r\na\n\n", 0, "a\n", 0);              /* blank lines skipped */
    expect_picture(" a , \"b c\" ,c \n", 1, "a|b c|c\n", 0); /* trim outside quotes */
    expect_picture(" a , b\n", 0, " a | b\n", 0);            /* no trim: kept */
    expect_picture("39, State-gov, 77516\r\n", 1, "39|State-gov|77516\n", 0); /* UCI Adult */
    expect_picture("\xEF\xBB\xBFx,y\n1,2\n", 0, "x|y\n1|2\n", 0);             /* BOM skipped */
    expect_picture("caf\xC3\xA9,\xE2\x82\xAC\n", 0, "caf\xC3\xA9|\xE2\x82\xAC\n", 0);
    expect_picture("a\rb,c\n", 0, "a\rb|c\n", 0); /* a lone CR is text */
    /* malformed quoting: read by the toggle rule and flagged */
    expect_picture("ab\"c,d\"\nx\n", 0, "abc,d\nx\n", DP_CSV_BAD_QUOTES);
    expect_picture("\"a\"b,c\n", 0, "ab|c\n", DP_CSV_BAD_QUOTES);
    expect_picture(" \"a\",b\n", 0, " a|b\n", DP_CSV_BAD_QUOTES);
}

static void expect_fatal(const char *text, size_t n, size_t max_field, const char *where,
                         const char *what) {
    char *path = write_tmp("bad.csv", text, n);
    dp_csv_options o;
    dp_csv_options_init(&o);
    if (max_field) o.max_field = max_field;
    dp_csv_reader *r;
    cr_assert_eq(dp_csv_open(path, &o, &r), DP_OK);
    dp_status st;
    dp_csv_record rec;
    do
        st = dp_csv_next(r, &rec);
    while (st == DP_OK && rec.nfields);
    dp_csv_close(r);
    cr_assert_eq(st, DP_E_FORMAT, "expected a format error for <%.40s>", text);
    char want[4200];
    snprintf(want, sizeof want, "%s:%s: ", path, where);
    const char *msg = dp_last_error();
    cr_assert(strncmp(msg, want, strlen(want)) == 0, "message '%s' should start '%s'", msg, want);
    cr_assert(strstr(msg, what) != NULL, "message '%s' should say '%s'", msg, what);
    cr_assert(strchr(msg, '\n') == NULL);
}

Test(csv, fatal_errors_name_line_and_column) {
    expect_fatal("a,b\n1,\"open\n2,3\n", 16, 0, "2:3", "unterminated quoted field");
    expect_fatal("a,b\n1,2\n3,x\0y\n", 14, 0, "3:4", "NUL byte");
    expect_fatal("a,b\n1,caf\xE9\n", 11, 0, "2:6", "invalid UTF-8 byte 0xE9");
    expect_fatal("a\n\xC0\x80\n", 5, 0, "2:1", "invalid UTF-8");          /* overlong NUL */
    expect_fatal("a\nx\xED\xA0\x80\n", 7, 0, "2:2", "invalid UTF-8");     /* a surrogate */
    expect_fatal("a\n\"x\ny\",caf\xE9\n", 13, 0, "3:7", "invalid UTF-8"); /* after a 2-line field */
    expect_fatal("a,b\n1,12345678901\n", 18, 10, "2:3", "field longer than 10 bytes");
}

Test(csv, a_10_mib_field_is_one_clear_error) {
    size_t big = (size_t)10 << 20;
    char *t = malloc(big + 32);
    strcpy(t, "x,y\n1,");
    memset(t + 6, 'z', big);
    strcpy(t + 6 + big, "\n2,3\n");
    expect_fatal(t, 6 + big + 5, 0, "2:3", "field longer than 1048576 bytes");
    /* the same field quoted */
    t[6] = '"';
    t[6 + big - 1] = '"';
    expect_fatal(t, 6 + big + 5, 0, "2:3", "field longer than 1048576 bytes");
    free(t);
}

Test(csv, a_record_longer_than_the_limit_is_refused) {
    size_t n = (size_t)3 << 20;
    char *t = malloc(n + 8);
    memcpy(t, "a\nb\n", 4);
    memset(t + 4, 'q', n);
    char *path = write_tmp("long.csv", t, n + 4);
    dp_csv_options o;
    dp_csv_options_init(&o);
    o.max_record = (size_t)2 << 20;
    o.max_field = n + 1;
    dp_csv_reader *r;
    cr_assert_eq(dp_csv_open(path, &o, &r), DP_OK);
    dp_csv_record rec;
    dp_status st;
    do
        st = dp_csv_next(r, &rec);
    while (st == DP_OK && rec.nfields);
    dp_csv_close(r);
    cr_assert_eq(st, DP_E_FORMAT);
    cr_assert(strstr(dp_last_error(), ":3: record longer than") != NULL, "%s", dp_last_error());
    free(t);
}

Test(csv, positions_count_lines_inside_quoted_fields) {
    const char *text = "h1,h2,h3\n\"a\nb\nc\",xy,\"p\nq\"\n";
    char *path = write_tmp("pos.csv", text, strlen(text));
    dp_csv_reader *r;
    cr_assert_eq(dp_csv_open(path, NULL, &r), DP_OK);
    dp_csv_record rec;
    cr_assert_eq(dp_csv_next(r, &rec), DP_OK);
    cr_assert_eq(dp_csv_next(r, &rec), DP_OK);
    cr_assert_eq(rec.nfields, 3);
    cr_assert_eq(rec.line, 2);
    uint64_t line, col;
    dp_csv_position(&rec, rec.fields[1].off, &line, &col); /* "xy" on the record's third line */
    cr_assert_eq(line, 4);
    cr_assert_eq(col, 4);
    dp_csv_position(&rec, rec.fields[2].off, &line, &col);
    cr_assert_eq(line, 4);
    cr_assert_eq(col, 7);
    cr_assert_eq(dp_csv_next(r, &rec), DP_OK);
    cr_assert_eq(rec.nfields, 0);
    dp_csv_close(r);
}

/* ---- random tables, written with RFC 4180 quoting, read back ---- */

static const char *pieces[] = {
    "a",  "b",  "7", ",", "\"", "\n", "\r\n", " ", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
    "\r", "xyz"};

static char *random_field(uint64_t *rng) {
    size_t n = tu_next(rng) % 6;
    char *f = calloc(1, 64);
    for (size_t i = 0; i < n; i++)
        strcat(f, pieces[tu_next(rng) % 13]);
    return f;
}

static int needs_quotes(const char *f) {
    return strpbrk(f, ",\"\n\r") != NULL || *f == '\0';
}

Test(csv, random_quoted_tables_read_back_through_chunks_of_every_size) {
    uint64_t rng = tu_seed();
    for (int round = 0; round < 40; round++) {
        int rows = 1 + (int)(tu_next(&rng) % 30), cols = 1 + (int)(tu_next(&rng) % 5);
        char **cell = calloc((size_t)rows * cols, sizeof *cell);
        size_t cap = 64 * rows * cols * 2 + 64, n = 0;
        char *text = malloc(cap);
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                char *f = cell[i * cols + j] = random_field(&rng);
                if (j) text[n++] = ',';
                if (needs_quotes(f) || (cols == 1 && !*f)) {
                    text[n++] = '"';
                    for (char *c = f; *c; c++) {
                        if (*c == '"') text[n++] = '"';
                        text[n++] = *c;
                    }
                    text[n++] = '"';
                } else {
                    n += (size_t)sprintf(text + n, "%s", f);
                }
            }
            if (i < rows - 1 || tu_next(&rng) % 2)
                n += (size_t)sprintf(text + n, "%s", tu_next(&rng) % 2 ? "\n" : "\r\n");
        }
        char *path = write_tmp("r.csv", text, n);
        size_t chunk = 1 + tu_next(&rng) % 97;
        dp_source *src;
        cr_assert_eq(dp_source_open(path, &src), DP_OK);
        csv_chunker ck;
        csv_chunker_init(&ck, src, chunk, 0);
        csv_chunk c = {0};
        csv_parser ps;
        int32_t slot[5] = {0, 1, 2, 3, 4};
        csv_parser_init(&ps, NULL, slot, 5);
        dp_csv_field fields[5];
        char *scratch = malloc(n + 1);
        int row = 0, got;
        uint64_t line = 1;
        size_t total = 0;
        for (;;) {
            cr_assert_eq(csv_chunker_next(&ck, &c, &got), DP_OK, "%s", dp_last_error());
            if (!got) break;
            cr_assert_eq(c.line, line, "chunk line number");
            cr_assert(c.final || (c.len > 0 && c.buf[c.len - 1] == '\n'));
            cr_assert(memcmp(c.buf, text + total, c.len) == 0, "chunks are the input in order");
            total += c.len;
            size_t pos = c.start;
            while (pos < c.len) {
                csv_rec r;
                cr_assert_eq(csv_parse_record(&ps, c.buf + pos, c.buf + c.len, fields, scratch, &r),
                             CSV_OK);
                pos += r.len;
                line += r.lines;
                if (r.blank) continue; /* a lone empty field of a 1-column table is quoted */
                cr_assert_lt(row, rows);
                cr_assert_eq(r.nfields, (size_t)cols, "round %d row %d", round, row);
                cr_assert_eq(r.flags, 0);
                for (int j = 0; j < cols; j++) {
                    const char *want = cell[row * cols + j];
                    cr_assert(fields[j].len == strlen(want) &&
                                  memcmp(fields[j].p, want, fields[j].len) == 0,
                              "round %d cell (%d,%d): got <%.*s> want <%s>", round, row, j,
                              (int)fields[j].len, fields[j].p, want);
                }
                row++;
            }
        }
        cr_assert_eq(total, n);
        cr_assert_eq(row, rows, "round %d: %d rows of %d", round, row, rows);
        csv_chunk_free(&c);
        csv_chunker_free(&ck);
        dp_source_close(src);
        for (int i = 0; i < rows * cols; i++)
            free(cell[i]);
        free(cell);
        free(text);
        free(scratch);
    }
}

/* ---- the fast parser against the reference, on byte soup ---- */

static const char soup_alphabet[] = "ab,,\"\"\n\r  \t\xC3\xA9\x80";

Test(csv, fast_parser_equals_reference_on_random_byte_soup) {
    uint64_t rng = tu_seed();
    char buf[80], s1[200], s2[200];
    int32_t slot[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int round = 0; round < 200000; round++) {
        size_t n = 1 + tu_next(&rng) % 40;
        for (size_t i = 0; i < n; i++)
            buf[i] = soup_alphabet[tu_next(&rng) % (sizeof soup_alphabet - 1)];
        if (tu_next(&rng) % 50 == 0) buf[tu_next(&rng) % n] = '\0';
        csv_parser ps;
        dp_csv_options o;
        dp_csv_options_init(&o);
        o.trim = (int)(tu_next(&rng) % 2);
        o.max_field = 1 + tu_next(&rng) % 60;
        csv_parser_init(&ps, &o, slot, 8);
        const char *p = buf, *end = buf + n;
        while (p < end) {
            dp_csv_field f1[8], f2[8];
            csv_rec r1, r2;
            csv_fatal e1 = csv_parse_record(&ps, p, end, f1, s1, &r1);
            csv_fatal e2 = csv_parse_record_ref(&ps, p, end, f2, s2, &r2);
            cr_assert_eq(e1, e2, "round %d: fatal %d vs %d", round, e1, e2);
            if (e1) {
                cr_assert_eq(r1.fatal_off, r2.fatal_off);
                break;
            }
            cr_assert_eq(r1.len, r2.len, "round %d: length", round);
            cr_assert_eq(r1.nfields, r2.nfields);
            cr_assert_eq(r1.lines, r2.lines);
            cr_assert_eq(r1.blank, r2.blank);
            cr_assert_eq(r1.flags, r2.flags);
            if (r1.flags) cr_assert_eq(r1.bad_off, r2.bad_off);
            for (size_t j = 0; j < r1.nfields && j < 8; j++) {
                cr_assert_eq(f1[j].len, f2[j].len, "round %d field %zu", round, j);
                cr_assert(memcmp(f1[j].p, f2[j].p, f1[j].len) == 0);
                cr_assert_eq(f1[j].off, f2[j].off);
            }
            p += r1.len;
        }
    }
}

/* Where the parser ends records (after a '\n') is exactly where the quote
 * parity rule of the chunker puts boundaries. */
Test(csv, record_ends_are_the_even_quote_parity_line_ends) {
    uint64_t rng = tu_seed();
    char buf[120], scratch[200];
    static const char abc[] = "a,\"\"\n\n\r x";
    int32_t slot[1] = {-1};
    for (int round = 0; round < 100000; round++) {
        size_t n = 1 + tu_next(&rng) % 100;
        for (size_t i = 0; i < n; i++)
            buf[i] = abc[tu_next(&rng) % (sizeof abc - 1)];
        csv_parser ps;
        csv_parser_init(&ps, NULL, slot, 1);
        char ends[121] = {0}, rule[121] = {0};
        const char *p = buf;
        int ok = 1;
        while (p < buf + n) {
            csv_rec r;
            dp_csv_field f;
            if (csv_parse_record_ref(&ps, p, buf + n, &f, scratch, &r)) {
                ok = 0; /* unterminated at the end: no more ends to compare */
                break;
            }
            p += r.len;
            if (p[-1] == '\n') ends[p - buf] = 1;
        }
        int par = 0;
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == '"') par ^= 1;
            if (buf[i] == '\n' && !par) rule[i + 1] = 1;
        }
        if (ok) cr_assert(memcmp(ends, rule, n + 1) == 0, "round %d", round);
        size_t last = 0;
        for (size_t i = 1; i <= n; i++)
            if (rule[i]) last = i;
        cr_assert_eq(csv_last_boundary(buf, n, 0), last, "round %d", round);
    }
}

/* The block scanner takes plain records (no quote, NUL or byte >= 0x80; a CR
 * only before the LF) of any length and any sparse choice of stored columns:
 * it must agree with the reference, and the soup must reach it. */
Test(csv, block_scanner_equals_reference_on_plain_records) {
    uint64_t rng = tu_seed();
    static const char plain[] = "abc012 ,,,\t\r";
    char buf[1200], s1[1300], s2[1300];
    int32_t slot[300];
    size_t scanned = 0;
    for (int round = 0; round < 100000; round++) {
        size_t n = 1 + tu_next(&rng) % (round % 10 ? 200 : 1100);
        for (size_t i = 0; i < n; i++)
            buf[i] = plain[tu_next(&rng) % (sizeof plain - 1)];
        for (size_t i = 0; i < n; i++) /* line ends, mostly alone or after a CR */
            if (tu_next(&rng) % 97 == 0) buf[i] = '\n';
        if (tu_next(&rng) % 2) buf[n - 1] = '\n';
        if (n > 1 && tu_next(&rng) % 3 == 0) buf[n - 2] = '\r';
        size_t nslot = 1 + tu_next(&rng) % 300;
        int32_t k = 0;
        for (size_t c = 0; c < nslot; c++)
            slot[c] = tu_next(&rng) % 3 == 0 ? k++ : -1;
        dp_csv_options o;
        dp_csv_options_init(&o);
        o.trim = (int)(tu_next(&rng) % 2);
        o.max_field = tu_next(&rng) % 4 ? 1 << 20 : 1 + tu_next(&rng) % 300;
        csv_parser fast, ref;
        csv_parser_init(&fast, &o, slot, nslot);
        csv_parser_init(&ref, &o, slot, nslot);
        ref.simd = 0;
        cr_assert(fast.simd);
        const char *p = buf, *end = buf + n;
        while (p < end) {
            dp_csv_field f1[300], f2[300];
            csv_rec r1, r2;
            csv_fatal e1 = csv_parse_record(&fast, p, end, f1, s1, &r1);
            csv_fatal e2 = csv_parse_record_ref(&ref, p, end, f2, s2, &r2);
            cr_assert_eq(e1, e2, "round %d", round);
            if (e1) break;
            cr_assert_eq(r1.len, r2.len, "round %d: record length", round);
            cr_assert_eq(r1.nfields, r2.nfields, "round %d", round);
            cr_assert_eq(r1.lines, r2.lines);
            cr_assert_eq(r1.blank, r2.blank, "round %d: blank", round);
            cr_assert_eq(r1.flags, r2.flags);
            for (size_t c = 0; c < nslot && c < r1.nfields; c++) {
                if (slot[c] < 0) continue;
                const dp_csv_field *a = &f1[slot[c]], *b = &f2[slot[c]];
                cr_assert(a->len == b->len && memcmp(a->p, b->p, a->len) == 0 && a->off == b->off,
                          "round %d column %zu: <%.*s>@%u vs <%.*s>@%u", round, c, (int)a->len,
                          a->p, a->off, (int)b->len, b->p, b->off);
            }
            dp_csv_field f3[300];
            csv_rec r3;
            scanned += (size_t)csv_scan_record(&fast, p, end, f3, &r3);
            p += r1.len;
        }
    }
    cr_assert_gt(scanned, 10000, "the scanner was exercised");
}

Test(csv, line_count_and_quote_parity_equal_naive_loops) {
    uint64_t rng = tu_seed();
    char buf[300];
    for (int round = 0; round < 20000; round++) {
        size_t n = tu_next(&rng) % sizeof buf, off = tu_next(&rng) % 8;
        if (off > n) off = n;
        for (size_t i = 0; i < n; i++)
            buf[i] = "\n\"ab,"[tu_next(&rng) % 5];
        size_t lines = 0;
        int par = 0;
        for (size_t i = off; i < n; i++) {
            lines += buf[i] == '\n';
            par ^= buf[i] == '"';
        }
        cr_assert_eq(csv_count_lines(buf + off, n - off), lines);
        cr_assert_eq(csv_quote_parity(buf + off, n - off), par);
    }
}
