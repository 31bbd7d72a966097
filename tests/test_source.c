/*
 * test_source.c: input sources. The bytes read back must equal the original
 * text for plain, gzip (made by the gzip tool, also concatenated) and zip
 * (made by Python's zipfile) files, read in any piece size; the SHA-256 must
 * equal what coreutils' sha256sum computes; damaged and ambiguous archives
 * must be refused with a message naming the file. A zip of several .csv
 * parts (made by the zip tool) reads as the parts concatenated in name
 * order, later headers dropped, and locates each line in its part.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "dpsgd/csv.h"
#include "dpsgd/source.h"
#include "testutil.h"

static char *path_in(const char *name) {
    return tu_path(tu_dir, name);
}

/* a shell command that must succeed */
#define sh(...) cr_assert_eq(tu_sh(__VA_ARGS__), 0, "command failed: " __VA_ARGS__)

/* Random printable CSV-ish text of n bytes with line ends. */
static char *random_text(uint64_t *rng, size_t n) {
    char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = tu_next(rng) % 40;
        t[i] = r == 0 ? '\n' : r == 1 ? ',' : (char)('a' + r % 26);
    }
    t[n] = '\0';
    return t;
}

/* Read the whole source in pieces of `piece` bytes. */
static char *read_all(const char *path, size_t piece, size_t *len, dp_status *st_out) {
    dp_source *s;
    dp_status st = dp_source_open(path, &s);
    *st_out = st;
    if (st != DP_OK) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + piece > cap) buf = realloc(buf, cap = 2 * (n + piece));
        size_t got;
        st = dp_source_read(s, buf + n, piece, &got);
        if (st != DP_OK) break;
        if (got == 0) break;
        n += got;
    }
    *st_out = st;
    dp_source_close(s);
    *len = n;
    return buf;
}

static void sha256sum(const char *path, char hex[65]) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%64s", hex), 1);
    pclose(p);
}

static void check_roundtrip(const char *path, const char *text, size_t n, dp_source_kind kind) {
    size_t pieces[] = {1, 7, 4096, 1 << 20};
    for (size_t k = 0; k < 4; k++) {
        size_t len;
        dp_status st;
        char *got = read_all(path, pieces[k], &len, &st);
        cr_assert_eq(st, DP_OK, "%s: %s", path, dp_last_error());
        cr_assert_eq(len, n, "%s read in pieces of %zu: %zu bytes, expected %zu", path, pieces[k],
                     len, n);
        cr_assert(memcmp(got, text, n) == 0, "%s: content differs", path);
        free(got);
    }
    dp_source *s;
    cr_assert_eq(dp_source_open(path, &s), DP_OK);
    cr_assert_eq(dp_source_kind_of(s), kind);
    char hex[65], want[65];
    cr_assert_eq(dp_source_sha256(s, hex), kind == DP_SOURCE_ZIP ? DP_OK : DP_E_USAGE,
                 "the hash of a stream is known only at its end");
    char buf[65536];
    size_t got;
    do
        cr_assert_eq(dp_source_read(s, buf, sizeof buf, &got), DP_OK);
    while (got);
    cr_assert_eq(dp_source_sha256(s, hex), DP_OK);
    sha256sum(path, want);
    cr_assert_str_eq(hex, want, "sha256 of %s", path);
    cr_assert_eq(dp_source_bytes_read(s), n);
    dp_source_close(s);
}

TestSuite(source, .init = tu_dir_init, .fini = tu_dir_fini);

Test(source, plain_file_reads_back_identically_with_sha256sum_hash) {
    uint64_t rng = tu_seed();
    size_t sizes[] = {0, 1, 3, 4, 5, 100000};
    for (int i = 0; i < 6; i++) {
        char *t = random_text(&rng, sizes[i]);
        char *p = path_in("plain.csv");
        cr_assert_eq(tu_write_file(p, t, sizes[i]), 0);
        check_roundtrip(p, t, sizes[i], DP_SOURCE_PLAIN);
        free(t);
    }
}

Test(source, gzip_file_and_concatenated_members_decompress_to_the_text) {
    uint64_t rng = tu_seed();
    size_t n = 300000;
    char *t = random_text(&rng, n);
    char *p = path_in("a.csv");
    cr_assert_eq(tu_write_file(p, t, n), 0);
    sh("gzip -c '%s' > '%s.gz'", p, p);
    char gz[4200];
    snprintf(gz, sizeof gz, "%s.gz", p);
    check_roundtrip(gz, t, n, DP_SOURCE_GZIP);
    /* two members: the first 1000 bytes and the rest, compressed separately */
    sh("head -c 1000 '%s' | gzip -c > '%s/two.gz' && tail -c +1001 '%s' | gzip -c >> '%s/two.gz'",
       p, tu_dir, p, tu_dir);
    check_roundtrip(path_in("two.gz"), t, n, DP_SOURCE_GZIP);
    free(t);
}

Test(source, zip_with_one_csv_and_a_readme_reads_the_csv) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("psam_p06.csv"), t, n), 0);
    cr_assert_eq(tu_write_file(path_in("README.pdf"), "%PDF-1.4 not really", 19), 0);
    sh("cd '%s' && zip -q csv_pca.zip psam_p06.csv README.pdf", tu_dir);
    check_roundtrip(path_in("csv_pca.zip"), t, n, DP_SOURCE_ZIP);
    dp_source *s;
    cr_assert_eq(dp_source_open(path_in("csv_pca.zip"), &s), DP_OK);
    cr_assert(strstr(dp_source_name(s), "csv_pca.zip:psam_p06.csv") != NULL, "%s",
              dp_source_name(s));
    dp_source_close(s);
    free(t);
}

static void expect_open_error(const char *path, dp_status want, const char *needle) {
    dp_source *s = NULL;
    dp_status st = dp_source_open(path, &s);
    if (st == DP_OK) { /* some damage shows only when the data is read */
        char buf[65536];
        size_t got;
        do
            st = dp_source_read(s, buf, sizeof buf, &got);
        while (st == DP_OK && got);
        dp_source_close(s);
    }
    cr_assert_eq(st, want, "%s: status %d, expected %d (%s)", path, st, want, dp_last_error());
    const char *msg = dp_last_error();
    cr_assert(strstr(msg, path) != NULL, "message names the file: %s", msg);
    cr_assert(strstr(msg, needle) != NULL, "message says '%s': %s", needle, msg);
    cr_assert(strchr(msg, '\n') == NULL, "one line: %s", msg);
}

Test(source, zip_without_csv_is_refused) {
    cr_assert_eq(tu_write_file(path_in("readme.txt"), "hi", 2), 0);
    sh("mkdir '%s/docs' && cd '%s' && zip -q none.zip readme.txt docs", tu_dir, tu_dir);
    expect_open_error(path_in("none.zip"), DP_E_FORMAT, "no .csv file");
}

static void write_text(const char *name, const char *text) {
    cr_assert_eq(tu_write_file(path_in(name), text, strlen(text)), 0);
}

/* The whole stream of a source opened with `header`, read in pieces. */
static char *read_with(const char *path, int header, size_t piece, size_t *len) {
    dp_source_options o;
    dp_source_options_init(&o);
    o.header = header;
    dp_source *s;
    cr_assert_eq(dp_source_open_with(path, &o, &s), DP_OK, "%s", dp_last_error());
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + piece + 1 > cap) buf = realloc(buf, cap = 2 * (n + piece + 1));
        size_t got;
        cr_assert_eq(dp_source_read(s, buf + n, piece, &got), DP_OK, "%s", dp_last_error());
        if (got == 0) break;
        n += got;
    }
    buf[n] = '\0';
    cr_assert_eq(dp_source_bytes_read(s), n);
    dp_source_close(s);
    *len = n;
    return buf;
}

static size_t count_lines(const char *t) {
    size_t k = 0;
    for (; *t; t++)
        k += *t == '\n';
    return k;
}

static void expect_at(dp_source *s, uint64_t line, const char *name, uint64_t local) {
    const char *got;
    uint64_t l;
    dp_source_locate(s, line, &got, &l);
    char want[4300];
    snprintf(want, sizeof want, "%s/%s", tu_dir, name);
    cr_assert_str_eq(got, want, "line %llu: %s", (unsigned long long)line, got);
    cr_assert_eq(l, local, "line %llu: %s:%llu, expected :%llu", (unsigned long long)line, got,
                 (unsigned long long)l, (unsigned long long)local);
}

/* The national PUMS zip: csv_pus.zip holding psam_pusa.csv .. psam_pusd.csv
 * (each with the header) and a README. Members are added out of order, with
 * a directory and a macOS resource fork that are not parts; the third has a
 * byte order mark and CRLF, which do not make its header differ. */
Test(source, zip_of_three_parts_reads_as_their_concatenation_without_later_headers) {
    uint64_t rng = tu_seed();
    const char *hdr = "SERIALNO,SPORDER,AGEP\n";
    size_t sizes[3] = {70000, 1, 90000};
    char *body[3];
    for (int i = 0; i < 3; i++) {
        body[i] = random_text(&rng, sizes[i]);
        body[i][sizes[i] - 1] = '\n';
    }
    char *a = malloc(strlen(hdr) + sizes[0] + 1), *c = malloc(strlen(hdr) + sizes[2] + 8);
    sprintf(a, "%s%s", hdr, body[0]);
    sprintf(c, "\xEF\xBB\xBFSERIALNO,SPORDER,AGEP\r\n%s", body[2]);
    write_text("psam_pusa.csv", a);
    write_text("psam_pusb.csv", "SERIALNO,SPORDER,AGEP\n\n"); /* a header and a blank line */
    write_text("psam_pusc.csv", c);
    write_text("README.pdf", "%PDF-1.4");
    sh("cd '%s' && mkdir -p docs __MACOSX && cp psam_pusa.csv __MACOSX/._psam_pusa.csv && zip -q "
       "csv_pus.zip psam_pusc.csv README.pdf psam_pusa.csv docs __MACOSX/._psam_pusa.csv "
       "psam_pusb.csv",
       tu_dir);
    size_t n = strlen(a) + 1 + sizes[2];
    char *want = malloc(n + 1);
    sprintf(want, "%s\n%s", a, body[2]);
    char *zip = path_in("csv_pus.zip");
    size_t pieces[] = {1, 7, 4096, 1 << 20};
    for (int k = 0; k < 4; k++) {
        size_t len;
        char *got = read_with(zip, 1, pieces[k], &len);
        cr_assert_eq(len, n, "pieces of %zu: %zu bytes, expected %zu", pieces[k], len, n);
        cr_assert(memcmp(got, want, n) == 0, "pieces of %zu: content differs", pieces[k]);
        free(got);
    }
    dp_source *s;
    cr_assert_eq(dp_source_open(zip, &s), DP_OK, "%s", dp_last_error());
    cr_assert(strstr(dp_source_name(s), "csv_pus.zip:psam_pusa.csv..psam_pusc.csv"), "%s",
              dp_source_name(s));
    cr_assert_eq(dp_source_parts(s), 3);
    const char *names[3] = {"psam_pusa.csv", "psam_pusb.csv", "psam_pusc.csv"};
    uint64_t bytes[3] = {strlen(a), strlen(hdr) + 1, strlen(c)};
    for (size_t i = 0; i < 3; i++) {
        const char *m;
        uint64_t b;
        dp_source_part(s, i, &m, &b);
        cr_assert_str_eq(m, names[i]);
        cr_assert_eq(b, bytes[i], "%s: %llu bytes", m, (unsigned long long)b);
    }
    char buf[65536], hex[65], sum[65];
    size_t got;
    do
        cr_assert_eq(dp_source_read(s, buf, sizeof buf, &got), DP_OK);
    while (got);
    cr_assert_eq(dp_source_sha256(s, hex), DP_OK);
    sha256sum(zip, sum);
    cr_assert_str_eq(hex, sum, "the hash is the zip file's");
    /* lines of the stream back in their parts: a's lines are the stream's;
     * b gives its blank line 2; c's first data line is its line 2 */
    size_t la = count_lines(a);
    expect_at(s, 1, "csv_pus.zip:psam_pusa.csv", 1);
    expect_at(s, la, "csv_pus.zip:psam_pusa.csv", la);
    expect_at(s, la + 1, "csv_pus.zip:psam_pusb.csv", 2);
    expect_at(s, la + 2, "csv_pus.zip:psam_pusc.csv", 2);
    expect_at(s, la + 11, "csv_pus.zip:psam_pusc.csv", 11);
    dp_source_close(s);
    for (int i = 0; i < 3; i++)
        free(body[i]);
    free(a);
    free(c);
    free(want);
}

Test(source, a_part_without_a_final_line_end_is_not_glued_to_the_next) {
    write_text("a.csv", "x,y\n1,2\n3,4"); /* no line end */
    write_text("b.csv", "x,y\n5,6\n7,8"); /* none at the very end either: none added */
    sh("cd '%s' && zip -q p.zip a.csv b.csv", tu_dir);
    size_t len;
    char *got = read_with(path_in("p.zip"), 1, 3, &len);
    cr_assert_str_eq(got, "x,y\n1,2\n3,4\n5,6\n7,8");
    free(got);
    dp_source *s;
    cr_assert_eq(dp_source_open(path_in("p.zip"), &s), DP_OK);
    size_t n;
    do
        cr_assert_eq(dp_source_read(s, (char[64]){0}, 64, &n), DP_OK);
    while (n);
    expect_at(s, 3, "p.zip:a.csv", 3);
    expect_at(s, 4, "p.zip:b.csv", 2);
    expect_at(s, 5, "p.zip:b.csv", 3);
    dp_source_close(s);
}

Test(source, parts_whose_headers_differ_are_refused_naming_both) {
    write_text("psam_pusa.csv", "RT,SERIALNO,AGEP\nP,1,30\n");
    write_text("psam_pusb.csv", "RT,SERIALNO,AGE\nP,2,31\n");
    write_text("psam_pusc.csv", "RT,SERIALNO\nP,3\n");
    write_text("psam_pusd.csv", "\xEF\xBB\xBFRT,SERIALNO,AGEP\r\nP,4,32\n");
    sh("cd '%s' && zip -q ab.zip psam_pusa.csv psam_pusb.csv && zip -q ac.zip psam_pusa.csv "
       "psam_pusc.csv && zip -q ad.zip psam_pusa.csv psam_pusd.csv",
       tu_dir);
    expect_open_error(path_in("ab.zip"), DP_E_FORMAT,
                      "ab.zip: psam_pusb.csv's header differs from psam_pusa.csv's at column 3 "
                      "('AGE' against 'AGEP'); expected parts of one table");
    expect_open_error(path_in("ac.zip"), DP_E_FORMAT, "at column 3 (no column against 'AGEP')");
    dp_source *s;
    cr_assert_eq(dp_source_open(path_in("ad.zip"), &s), DP_OK, "BOM and CRLF: %s", dp_last_error());
    dp_source_close(s);
}

/* --columns: the parts have no header, so their first lines are data */
Test(source, without_a_header_every_line_of_every_part_is_kept) {
    write_text("a.csv", "1,2\n3,4\n");
    write_text("b.csv", "1,2\n5,6");
    write_text("c.csv", "\xEF\xBB\xBF"
                        "7,8\n");
    sh("cd '%s' && zip -q p.zip c.csv b.csv a.csv", tu_dir);
    size_t len;
    char *got = read_with(path_in("p.zip"), 0, 5, &len);
    cr_assert_str_eq(got, "1,2\n3,4\n1,2\n5,6\n7,8\n",
                     "the parts whole, a BOM of a later one dropped: %s", got);
    free(got);
}

/* A fatal CSV error in a later part names that part and its own line; a
 * part that ends inside quotes is an unterminated field there, not the
 * start of a field that runs on into the next part. */
Test(source, csv_errors_in_a_part_name_the_part_and_its_line) {
    write_text("a.csv", "x,y\n1,2\n3,4\n");
    write_text("b.csv", "x,y\n5,6\n7,\"8\n9,10\n");
    write_text("c.csv", "x,y\n\"11\",12\n");
    sh("cd '%s' && zip -q p.zip a.csv b.csv c.csv", tu_dir);
    dp_csv_reader *r;
    cr_assert_eq(dp_csv_open(path_in("p.zip"), NULL, &r), DP_OK, "%s", dp_last_error());
    dp_csv_record rec;
    dp_status st;
    int records = 0;
    while ((st = dp_csv_next(r, &rec)) == DP_OK && rec.nfields)
        records++;
    cr_assert_eq(st, DP_E_FORMAT);
    char want[4300];
    snprintf(want, sizeof want, "%s:3:3: unterminated quoted field", path_in("p.zip:b.csv"));
    cr_assert(strstr(dp_last_error(), want), "%s", dp_last_error());
    cr_assert_eq(records, 4, "header, two of a, one of b");
    dp_csv_close(r);
}

Test(source, truncated_and_corrupt_gzip_are_refused) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("a.csv"), t, n), 0);
    sh("gzip -c '%s/a.csv' > '%s/a.csv.gz'", tu_dir, tu_dir);
    sh("head -c 5000 '%s/a.csv.gz' > '%s/cut.csv.gz'", tu_dir, tu_dir);
    expect_open_error(path_in("cut.csv.gz"), DP_E_FORMAT, "truncated gzip");
    /* overwrite 64 bytes in the middle of the deflate data */
    sh("cp '%s/a.csv.gz' '%s/bad.csv.gz' && printf '%%064d' 0 | dd of='%s/bad.csv.gz' bs=1 "
       "seek=3000 conv=notrunc 2>/dev/null",
       tu_dir, tu_dir, tu_dir);
    expect_open_error(path_in("bad.csv.gz"), DP_E_FORMAT, "corrupt gzip");
    /* garbage after a complete stream */
    sh("cp '%s/a.csv.gz' '%s/tail.csv.gz' && printf 'xyz' >> '%s/tail.csv.gz'", tu_dir, tu_dir, tu_dir);
    expect_open_error(path_in("tail.csv.gz"), DP_E_FORMAT, "after the compressed data");
    free(t);
}

Test(source, truncated_and_corrupt_zip_are_refused) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("p.csv"), t, n), 0);
    sh("cd '%s' && zip -q p.zip p.csv", tu_dir);
    sh("head -c 3000 '%s/p.zip' > '%s/cut.zip'", tu_dir, tu_dir);
    expect_open_error(path_in("cut.zip"), DP_E_FORMAT, "not a readable zip");
    sh("cp '%s/p.zip' '%s/bad.zip' && printf '%%064d' 0 | dd of='%s/bad.zip' bs=1 seek=2000 "
       "conv=notrunc 2>/dev/null",
       tu_dir, tu_dir, tu_dir);
    expect_open_error(path_in("bad.zip"), DP_E_FORMAT, "corrupt zip member");
    free(t);
}

Test(source, missing_file_and_directory_are_io_errors) {
    expect_open_error(path_in("nope.csv"), DP_E_IO, "No such file");
    expect_open_error(tu_dir, DP_E_IO, "is a directory");
}

/* Files of 8 MiB and more are hashed by a thread of their own: the same
 * digest, an early close that does not hang, and a file cut while it is
 * read either hashed as read or refused as changed, never hashed wrong. */
Test(source, large_files_hashed_beside_the_reader) {
    uint64_t rng = tu_seed();
    size_t n = (size_t)20 << 20;
    char *t = random_text(&rng, n);
    char *p = path_in("large.csv");
    cr_assert_eq(tu_write_file(p, t, n), 0);
    check_roundtrip(p, t, n, DP_SOURCE_PLAIN);
    sh("gzip -1 -c '%s' > '%s.gz'", p, p);
    char gz[4200];
    snprintf(gz, sizeof gz, "%s.gz", p);
    check_roundtrip(gz, t, n, DP_SOURCE_GZIP);
    for (int k = 0; k < 20; k++) { /* closed early, at once or after a little */
        dp_source *s;
        cr_assert_eq(dp_source_open(p, &s), DP_OK);
        char buf[4096];
        size_t got;
        if (k % 2) cr_assert_eq(dp_source_read(s, buf, sizeof buf, &got), DP_OK);
        dp_source_close(s);
    }
    dp_source *s;
    cr_assert_eq(dp_source_open(p, &s), DP_OK);
    cr_assert_eq(truncate(p, (off_t)(n / 2)), 0);
    static char buf[1 << 20];
    size_t got, total = 0;
    dp_status st;
    do {
        st = dp_source_read(s, buf, sizeof buf, &got);
        total += got;
    } while (st == DP_OK && got);
    if (st == DP_OK) {
        char hex[65], want[65];
        cr_assert_eq(dp_source_sha256(s, hex), DP_OK);
        sha256sum(p, want);
        cr_assert_str_eq(hex, want, "a file cut while read is hashed as it was read");
        cr_assert_eq(total, n / 2);
    } else {
        cr_assert_eq(st, DP_E_IO, "%s", dp_last_error());
        cr_assert(strstr(dp_last_error(), "changed while it was read"), "%s", dp_last_error());
    }
    dp_source_close(s);
    free(t);
}
