/*
 * test_source.c: input sources. The bytes read back must equal the original
 * text for plain, gzip (made by the gzip tool, also concatenated) and zip
 * (made by Python's zipfile) files, read in any piece size; the SHA-256 must
 * equal what coreutils' sha256sum computes; damaged and ambiguous archives
 * must be refused with a message naming the file.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "dpsgd/source.h"
#include "testutil.h"

static char *dir;

static void setup(void) {
    dir = tu_tempdir();
    cr_assert_not_null(dir);
}
static void teardown(void) {
    tu_rmrf(dir);
    free(dir);
}

static char *path_in(const char *name) {
    return tu_path(dir, name);
}

static void sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

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

TestSuite(source, .init = setup, .fini = teardown);

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
       p, dir, p, dir);
    check_roundtrip(path_in("two.gz"), t, n, DP_SOURCE_GZIP);
    free(t);
}

Test(source, zip_with_one_csv_and_a_readme_reads_the_csv) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("psam_p06.csv"), t, n), 0);
    cr_assert_eq(tu_write_file(path_in("README.pdf"), "%PDF-1.4 not really", 19), 0);
    sh("cd '%s' && zip -q csv_pca.zip psam_p06.csv README.pdf", dir);
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

Test(source, zip_without_csv_or_with_two_csvs_is_refused) {
    cr_assert_eq(tu_write_file(path_in("a.csv"), "x\n1\n", 4), 0);
    cr_assert_eq(tu_write_file(path_in("b.csv"), "x\n2\n", 4), 0);
    cr_assert_eq(tu_write_file(path_in("readme.txt"), "hi", 2), 0);
    sh("cd '%s' && zip -q none.zip readme.txt && zip -q two.zip a.csv b.csv", dir);
    expect_open_error(path_in("none.zip"), DP_E_FORMAT, "no .csv file");
    expect_open_error(path_in("two.zip"), DP_E_FORMAT, "2 .csv files");
}

Test(source, truncated_and_corrupt_gzip_are_refused) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("a.csv"), t, n), 0);
    sh("gzip -c '%s/a.csv' > '%s/a.csv.gz'", dir, dir);
    sh("head -c 5000 '%s/a.csv.gz' > '%s/cut.csv.gz'", dir, dir);
    expect_open_error(path_in("cut.csv.gz"), DP_E_FORMAT, "truncated gzip");
    /* overwrite 64 bytes in the middle of the deflate data */
    sh("cp '%s/a.csv.gz' '%s/bad.csv.gz' && printf '%%064d' 0 | dd of='%s/bad.csv.gz' bs=1 "
       "seek=3000 conv=notrunc 2>/dev/null",
       dir, dir, dir);
    expect_open_error(path_in("bad.csv.gz"), DP_E_FORMAT, "corrupt gzip");
    /* garbage after a complete stream */
    sh("cp '%s/a.csv.gz' '%s/tail.csv.gz' && printf 'xyz' >> '%s/tail.csv.gz'", dir, dir, dir);
    expect_open_error(path_in("tail.csv.gz"), DP_E_FORMAT, "after the compressed data");
    free(t);
}

Test(source, truncated_and_corrupt_zip_are_refused) {
    uint64_t rng = tu_seed();
    size_t n = 200000;
    char *t = random_text(&rng, n);
    cr_assert_eq(tu_write_file(path_in("p.csv"), t, n), 0);
    sh("cd '%s' && zip -q p.zip p.csv", dir);
    sh("head -c 3000 '%s/p.zip' > '%s/cut.zip'", dir, dir);
    expect_open_error(path_in("cut.zip"), DP_E_FORMAT, "not a readable zip");
    sh("cp '%s/p.zip' '%s/bad.zip' && printf '%%064d' 0 | dd of='%s/bad.zip' bs=1 seek=2000 "
       "conv=notrunc 2>/dev/null",
       dir, dir, dir);
    expect_open_error(path_in("bad.zip"), DP_E_FORMAT, "corrupt zip member");
    free(t);
}

Test(source, missing_file_and_directory_are_io_errors) {
    expect_open_error(path_in("nope.csv"), DP_E_IO, "No such file");
    expect_open_error(dir, DP_E_IO, "is a directory");
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
