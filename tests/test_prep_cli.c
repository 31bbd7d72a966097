/*
 * test_prep_cli.c: `dpsgd prep` on bad input, through the binary. Each case
 * must exit 1 with one line on stderr naming the file, the line and column
 * where they apply and what was expected, and leave no dataset directory (nor
 * a temporary one) behind; an earlier dataset survives. Also: CRLF, .gz and
 * .zip inputs give the same arrays as the plain file, and so does a zip of
 * the file in parts (the national PUMS zip), whose messages and first
 * examples name the part and its own line; --force replaces only a dataset,
 * numpy.load reads the output.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

TestSuite(prep_cli, .init = tu_dir_init, .fini = tu_dir_fini);

static char *P(const char *name) {
    return tu_path(tu_dir, name);
}

/* a shell command that must succeed */
#define sh(...) cr_assert_eq(tu_sh(__VA_ARGS__), 0, "command failed: " __VA_ARGS__)

static const char header[] =
    "RT,SERIALNO,SPORDER,AGEP,ESR,SCHL,MAR,SEX,RAC1P,HISP,DIS,CIT,NATIVITY,MIL\n";
static const char rows[] = "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4\n"
                           "P,2023HU0000001,2,33,3,16,1,2,1,01,2,1,1,4\n"
                           "P,2023HU0000002,1,52,1,18,3,1,2,01,1,4,2,2\n"
                           "P,2023HU0000003,1,27,3,20,5,2,6,02,2,5,2,4\n"
                           "P,2023HU0000004,1,44,1,22,1,1,1,01,2,1,1,4\n"
                           "P,2023HU0000005,1,61,2,24,2,2,9,01,2,1,1,2\n";

/* No dataset and no temporary directory left in the test directory. */
static void assert_nothing_left(const char *out_name) {
    cr_assert(!tu_exists(P(out_name)), "%s was left behind", out_name);
    DIR *d = opendir(tu_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        cr_assert(strstr(e->d_name, ".tmp-") == NULL, "temporary %s left behind", e->d_name);
    closedir(d);
}

/* Run prep on `name` (already written) and expect a one-line error holding
 * every needle. */
static void expect_error(const char *name, const char *args, const char **needles) {
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep '%s' -o '%s' %s", P(name), P("out"), args ? args : "");
    cr_assert_eq(rc, 1, "%s: exit %d, stderr: %s", name, rc, err);
    cr_assert_not_null(err);
    size_t n = strlen(err);
    cr_assert(n > 0 && err[n - 1] == '\n' && strchr(err, '\n') == err + n - 1,
              "%s: expected one line, got: %s", name, err);
    cr_assert(strncmp(err, "dpsgd prep: error: ", 19) == 0, "%s", err);
    for (const char **s = needles; *s; s++)
        cr_assert(strstr(err, *s) != NULL, "%s: message lacks '%s': %s", name, *s, err);
    free(err);
    assert_nothing_left("out");
}

static void write_file(const char *name, const char *text, size_t n) {
    cr_assert_eq(tu_write_file(P(name), text, n), 0);
}

static void write_pums(const char *name, const char *body) {
    char *t = malloc(strlen(header) + strlen(body) + 1);
    strcpy(t, header);
    strcat(t, body);
    write_file(name, t, strlen(t));
    free(t);
}

Test(prep_cli, empty_file_and_header_only) {
    write_file("empty.csv", "", 0);
    expect_error("empty.csv", NULL,
                 (const char *[]){"empty.csv", "empty file", "expected a header", NULL});
    write_file("header.csv", header, strlen(header));
    expect_error("header.csv", NULL,
                 (const char *[]){"header.csv", "no records after the header", NULL});
}

Test(prep_cli, missing_and_duplicate_columns) {
    write_file("miss.csv", "RT,AGEP,SEX,MAR\nP,30,1,1\n", 25);
    expect_error("miss.csv", NULL,
                 (const char *[]){"miss.csv:1:", "missing columns 'ESR'", "'SCHL'",
                                  "required by task unemployment", NULL});
    write_file("dup.csv", "RT,AGEP,ESR,AGEP\nP,30,1,31\n", 27);
    expect_error(
        "dup.csv", NULL,
        (const char *[]){"dup.csv:1:13:", "duplicate column name 'AGEP'", "also column 2", NULL});
}

Test(prep_cli, no_valid_record_counts_every_reason) {
    write_pums("bad.csv", "P,2023HU0000001,1,35\n"
                          "garbage\n"
                          "P,2023HU0000002,1,35,1,21,1,7,1,01,2,1,1,4\n");
    expect_error("bad.csv", NULL,
                 (const char *[]){"bad.csv", "no valid record", "3 rows read",
                                  "wrong_field_count 2", "out_of_range 1",
                                  "first: ", "bad.csv:2:1: expected 14 fields", NULL});
    /* single bad rows are dropped and counted, not fatal */
    write_pums("onebad.csv", "P,2023HU0000001,1,35\n"
                             "P,2023HU0000002,1,35,1,21,1,1,1,01,2,1,1,4\n");
    char *out = NULL;
    int rc = tu_run(&out, NULL, "prep '%s' -o '%s' --json", P("onebad.csv"), P("ok"));
    cr_assert_eq(rc, 0);
    cr_assert(strstr(out, "\"wrong_field_count\":1") && strstr(out, "\"rows_kept\":1"), "%s", out);
    free(out);
}

Test(prep_cli, unterminated_quote_nul_and_invalid_utf8) {
    write_pums("quote.csv", "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4\nP,\"2023HU0000002,1\n");
    expect_error("quote.csv", NULL,
                 (const char *[]){"quote.csv:3:3:", "unterminated quoted field",
                                  "expected a closing", NULL});
    char nul[256];
    int n = snprintf(nul, sizeof nul, "%sP,2023H", header);
    memcpy(nul + n, "\0U0000001,1,35,1,21,1,1,1,01,2,1,1,4\n", 38);
    write_file("nul.csv", nul, (size_t)n + 38);
    expect_error("nul.csv", NULL, (const char *[]){"nul.csv:2:8:", "NUL byte", NULL});
    write_pums("latin1.csv", "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4,\xE9t\xE9\n");
    expect_error(
        "latin1.csv", NULL,
        (const char *[]){"latin1.csv:2:44:", "invalid UTF-8 byte 0xE9", "expected UTF-8", NULL});
}

Test(prep_cli, a_10_mib_field_is_one_line_not_a_crash) {
    size_t big = (size_t)10 << 20, hl = strlen(header);
    char *t = malloc(hl + big + 64);
    memcpy(t, header, hl);
    memcpy(t + hl, "P,", 2);
    memset(t + hl + 2, '7', big);
    strcpy(t + hl + 2 + big, ",1,35,1,21,1,1,1,01,2,1,1,4\n");
    write_file("big.csv", t, strlen(t));
    free(t);
    expect_error(
        "big.csv", NULL,
        (const char *[]){"big.csv:2:3:", "field longer than 1048576 bytes", "--max-field", NULL});
}

static char *arrays(const char *ds) {
    static char all[1 << 16];
    all[0] = '\0';
    const char *files[] = {"X_train.npy", "y_train.npy", "X_val.npy",
                           "y_val.npy",   "X_test.npy",  "y_test.npy"};
    size_t used = 0;
    for (int i = 0; i < 6; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", ds, files[i]);
        size_t n;
        char *b = tu_read_file(p, &n);
        cr_assert_not_null(b, "%s", p);
        cr_assert_lt(used + n, sizeof all);
        memcpy(all + used, b, n);
        used += n;
        free(b);
    }
    return all;
}

static void prep_ok(const char *in, const char *out, const char *args) {
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep '%s' -o '%s' --quiet %s", P(in), P(out), args ? args : "");
    cr_assert_eq(rc, 0, "prep %s: %s", in, err);
    free(err);
}

Test(prep_cli, crlf_gzip_and_zip_give_the_same_arrays_as_plain) {
    write_pums("plain.csv", rows);
    prep_ok("plain.csv", "d_plain", "--split 0.5,0.25,0.25");
    static char want[1 << 16];
    memcpy(want, arrays(P("d_plain")), sizeof want);
    sh("sed 's/$/\\r/' '%s' > '%s'", P("plain.csv"), P("crlf.csv"));
    prep_ok("crlf.csv", "d_crlf", "--split 0.5,0.25,0.25");
    cr_assert(memcmp(arrays(P("d_crlf")), want, sizeof want) == 0, "CRLF changes the arrays");
    sh("gzip -c '%s' > '%s'", P("plain.csv"), P("plain.csv.gz"));
    prep_ok("plain.csv.gz", "d_gz", "--split 0.5,0.25,0.25");
    cr_assert(memcmp(arrays(P("d_gz")), want, sizeof want) == 0, ".gz changes the arrays");
    sh("cd '%s' && cp plain.csv psam_p06.csv && echo readme > README.pdf && zip -q csv_pca.zip "
       "psam_p06.csv README.pdf",
       tu_dir);
    prep_ok("csv_pca.zip", "d_zip", "--split 0.5,0.25,0.25");
    cr_assert(memcmp(arrays(P("d_zip")), want, sizeof want) == 0, ".zip changes the arrays");
    char meta[4200];
    snprintf(meta, sizeof meta, "%s/meta.json", P("d_zip"));
    char *m = tu_read_file(meta, NULL);
    cr_assert(strstr(m, "\"kind\":\t\"zip\"") && strstr(m, "csv_pca.zip:psam_p06.csv"), "%s", m);
    free(m);
}

Test(prep_cli, damaged_gzip_and_zip_are_refused) {
    size_t n = strlen(header) + 20000 * strlen(rows) / 6 + 1;
    char *t = malloc(n + strlen(rows));
    strcpy(t, header);
    while (strlen(t) + strlen(rows) < n)
        strcat(t, rows);
    write_file("p.csv", t, strlen(t));
    free(t);
    sh("gzip -c '%s' > '%s' && head -c 3000 '%s' > '%s'", P("p.csv"), P("p.csv.gz"), P("p.csv.gz"),
       P("cut.csv.gz"));
    expect_error("cut.csv.gz", NULL, (const char *[]){"cut.csv.gz", "truncated gzip", NULL});
    sh("cp '%s' '%s' && printf '%%064d' 0 | dd of='%s' bs=1 seek=2000 conv=notrunc 2>/dev/null",
       P("p.csv.gz"), P("bad.csv.gz"), P("bad.csv.gz"));
    expect_error("bad.csv.gz", NULL, (const char *[]){"bad.csv.gz", "corrupt gzip", NULL});
    sh("cd '%s' && zip -q p.zip p.csv && head -c 3000 p.zip > cut.zip", tu_dir);
    expect_error("cut.zip", NULL, (const char *[]){"cut.zip", "not a readable zip", NULL});
    sh("cp '%s' '%s' && printf '%%064d' 0 | dd of='%s' bs=1 seek=2000 conv=notrunc 2>/dev/null",
       P("p.zip"), P("bad.zip"), P("bad.zip"));
    expect_error("bad.zip", NULL, (const char *[]){"bad.zip", "corrupt zip member", NULL});
    write_file("a.csv", "x\n", 2);
    write_file("b.csv", "y\n", 2);
    write_file("notes.txt", "z\n", 2);
    sh("cd '%s' && zip -q none.zip notes.txt && zip -q two.zip a.csv b.csv", tu_dir);
    expect_error("none.zip", NULL,
                 (const char *[]){"none.zip", "no .csv file", "expected one", NULL});
    expect_error("two.zip", NULL,
                 (const char *[]){"two.zip: b.csv's header differs from a.csv's at column 1",
                                  "('y' against 'x')", "expected parts of one table", NULL});
}

/* The JSON report on stdout of `prep IN -o OUT --json ARGS`. */
static char *report(const char *in, const char *out, const char *args) {
    char *o = NULL, *err = NULL;
    int rc = tu_run(&o, &err, "prep '%s' -o '%s' --json %s", P(in), P(out), args ? args : "");
    cr_assert_eq(rc, 0, "prep %s: %s", in, err);
    free(err);
    return o;
}

/* The national file as the Census Bureau ships it: csv_pus.zip holding the
 * table in parts, each with the header, and a README. Split a synthetic
 * file's lines in two (the first part without its final line end): the
 * arrays and every count are those of the whole file; only the places of
 * the first examples differ, now in the parts' own lines. */
Test(prep_cli, a_zip_in_parts_gives_the_arrays_and_counts_of_the_whole_file) {
    char *err = NULL;
    int rc = tu_run(NULL, &err, "synth --rows 4000 --seed 5 --columns minimal --quiet -o '%s'",
                    P("all.csv"));
    cr_assert_eq(rc, 0, "synth: %s", err);
    free(err);
    sh("cd '%s' && head -n 1 all.csv > h && (cat h; sed -n '2,1500p' all.csv) | head -c -1 > "
       "psam_pusa.csv && (cat h; sed -n '1501,$p' all.csv) > psam_pusb.csv && echo pdf > "
       "README.pdf && zip -q csv_pus.zip psam_pusb.csv README.pdf psam_pusa.csv",
       tu_dir);
    char *whole = report("all.csv", "d_csv", NULL), *parts = report("csv_pus.zip", "d_zip", NULL);
    sh("cd '%s' && for a in X_train X_val X_test y_train y_val y_test; do cmp d_zip/$a.npy "
       "d_csv/$a.npy; done",
       tu_dir);
    /* the report up to "first", and from "filtered" to "run", are equal */
    const char *f0 = strstr(whole, "\"first\":"), *f1 = strstr(parts, "\"first\":");
    cr_assert(f0 && f1 && f0 - whole == f1 - parts && !memcmp(whole, parts, (size_t)(f0 - whole)),
              "counts differ:\n%s\n%s", whole, parts);
    const char *g0 = strstr(whole, "\"filtered\""), *g1 = strstr(parts, "\"filtered\"");
    const char *r0 = strstr(whole, "\"run\""), *r1 = strstr(parts, "\"run\"");
    cr_assert(g0 && g1 && r0 && r1 && r0 - g0 == r1 - g1 && !memcmp(g0, g1, (size_t)(r0 - g0)),
              "counts differ:\n%s\n%s", whole, parts);
    free(whole);
    free(parts);
    char meta[4200];
    snprintf(meta, sizeof meta, "%s/meta.json", P("d_zip"));
    char *m = tu_read_file(meta, NULL);
    cr_assert(strstr(m, "csv_pus.zip:psam_pusa.csv..psam_pusb.csv") && strstr(m, "\"parts\"") &&
                  strstr(m, "\"name\":\t\"psam_pusa.csv\"") &&
                  strstr(m, "\"name\":\t\"psam_pusb.csv\""),
              "%s", m);
    free(m);
}

/* Records of the fixture, the second part holding a repeated person and a
 * bad code: the first examples name the part and its own lines. */
Test(prep_cli, first_examples_in_a_later_part_name_it_and_its_line) {
    write_pums("p1.csv", rows);
    write_pums("p2.csv", "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4\n"
                         "P,2023HU0000009,1,35,1,21,1,7,1,01,2,1,1,4\n");
    sh("cd '%s' && zip -q f.zip p1.csv p2.csv", tu_dir);
    char *o = report("f.zip", "d", NULL);
    char want[2][4400];
    snprintf(want[0], sizeof want[0], "%s:3:", P("f.zip:p2.csv"));
    snprintf(want[1], sizeof want[1], "%s:2:1: SERIALNO+SPORDER already seen on line 2 of %s",
             P("f.zip:p2.csv"), P("f.zip:p1.csv"));
    cr_assert(strstr(o, "\"rows_read\":8") && strstr(o, want[0]) && strstr(o, want[1]), "%s", o);
    free(o);
}

Test(prep_cli, a_fatal_error_in_a_later_part_names_it_and_its_line) {
    write_pums("p1.csv", rows);
    write_pums("p2.csv", "P,2023HU0000011,1,35,1,21,1,1,1,01,2,1,1,4\n"
                         "P,2023HU0000012,1,35,1,21,1,1,1,01,2,1,1,4\n"
                         "P,\"2023HU0000013,1,35,1,21,1,1,1,01,2,1,1,4\n"
                         "P,2023HU0000014,1,35,1,21,1,1,1,01,2,1,1,4\n");
    write_pums("p3.csv", rows);
    sh("cd '%s' && zip -q q.zip p1.csv p2.csv p3.csv", tu_dir);
    char where[4400];
    snprintf(where, sizeof where, "%s:4:3: unterminated quoted field", P("q.zip:p2.csv"));
    expect_error("q.zip", NULL, (const char *[]){where, NULL});
    char *t = malloc(strlen(header) + strlen(rows) + 1);
    sprintf(t, "%s%s", header, rows);
    memcpy(strstr(t, "AGEP"), "AGEX", 4);
    write_file("p4.csv", t, strlen(t));
    free(t);
    sh("cd '%s' && zip -q h.zip p1.csv p4.csv", tu_dir);
    expect_error("h.zip", NULL,
                 (const char *[]){"h.zip: p4.csv's header differs from p1.csv's at column 4",
                                  "('AGEX' against 'AGEP')", NULL});
}

/* --columns: a file without a header, in parts; no line is dropped */
Test(prep_cli, with_columns_every_line_of_every_part_is_a_record) {
    write_pums("plain.csv", rows);
    prep_ok("plain.csv", "d_plain", "--split 0.5,0.25,0.25");
    static char want[1 << 16];
    memcpy(want, arrays(P("d_plain")), sizeof want);
    sh("cd '%s' && sed -n '2,4p' plain.csv > c1.csv && sed -n '5,7p' plain.csv > c2.csv && zip -q "
       "c.zip c2.csv c1.csv",
       tu_dir);
    char cols[256], args[400];
    snprintf(cols, sizeof cols, "%.*s", (int)strlen(header) - 1, header);
    snprintf(args, sizeof args, "--split 0.5,0.25,0.25 --columns %s", cols);
    char *o = report("c.zip", "d_cols", args);
    cr_assert(strstr(o, "\"rows_read\":6") && strstr(o, "\"rows_dropped\":0"), "%s", o);
    free(o);
    cr_assert(memcmp(arrays(P("d_cols")), want, sizeof want) == 0, "--columns on parts");
}

Test(prep_cli, existing_output_is_refused_unless_forced_and_never_lost) {
    write_pums("p.csv", rows);
    /* a directory that is not a dataset: refused, even with --force */
    sh("mkdir '%s' && echo precious > '%s/keep.txt'", P("out"), P("out"));
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep '%s' -o '%s'", P("p.csv"), P("out"));
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "already exists") && strstr(err, "--force"), "%s", err);
    free(err);
    rc = tu_run(NULL, &err, "prep '%s' -o '%s' --force", P("p.csv"), P("out"));
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "not a dpsgd dataset"), "%s", err);
    free(err);
    char keep[4200];
    snprintf(keep, sizeof keep, "%s/keep.txt", P("out"));
    char *k = tu_read_file(keep, NULL);
    cr_assert_str_eq(k, "precious\n");
    free(k);
    /* a dataset: kept when a run fails, replaced by a forced run that succeeds */
    prep_ok("p.csv", "ds", "--seed 1");
    static char before[1 << 16];
    memcpy(before, arrays(P("ds")), sizeof before);
    write_file("empty.csv", "", 0);
    rc = tu_run(NULL, &err, "prep '%s' -o '%s' --force", P("empty.csv"), P("ds"));
    cr_assert_eq(rc, 1);
    free(err);
    cr_assert(memcmp(arrays(P("ds")), before, sizeof before) == 0,
              "a failed run changed the dataset");
    prep_ok("p.csv", "ds", "--force --seed 2 --split 0.5,0.5,0");
    cr_assert(memcmp(arrays(P("ds")), before, sizeof before) != 0, "--force did not replace it");
    DIR *d = opendir(tu_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        cr_assert(strstr(e->d_name, ".tmp-") == NULL, "%s left", e->d_name);
    closedir(d);
}

Test(prep_cli, unwritable_output_path) {
    write_pums("p.csv", rows);
    write_file("afile", "x", 1);
    char *err = NULL;
    int rc = tu_run(NULL, &err, "prep '%s' -o '%s/ds'", P("p.csv"), P("afile"));
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "afile/ds") && strstr(err, "cannot create the dataset directory"), "%s",
              err);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1);
    free(err);
    if (geteuid() != 0) { /* permissions do not stop root */
        sh("mkdir '%s' && chmod 555 '%s'", P("ro"), P("ro"));
        rc = tu_run(NULL, &err, "prep '%s' -o '%s/ds'", P("p.csv"), P("ro"));
        cr_assert_eq(rc, 1);
        cr_assert(strstr(err, "Permission denied"), "%s", err);
        free(err);
        sh("chmod 755 '%s'", P("ro"));
    }
}

Test(prep_cli, usage_errors_and_stats_dp) {
    write_pums("p.csv", rows);
    const char *needles_dp[] = {"--stats-noise", "--stats-epsilon", "not both", NULL};
    expect_error("p.csv", "--stats dp --stats-noise 2 --stats-epsilon 1", needles_dp);
    const char *needles_need[] = {"need --stats dp", NULL};
    expect_error("p.csv", "--stats exact --stats-noise 2", needles_need);
    expect_error("p.csv", "--split 0.5,0.2,0.2", (const char *[]){"--split", "sum to 1", NULL});
    expect_error("p.csv", "--task income", (const char *[]){"--task 'income'", "unknown", NULL});
    expect_error("p.csv", "--target ESR", (const char *[]){"custom task", "--positive", NULL});
    expect_error("p.csv", "--target ESR --positive 9 --features AGEP",
                 (const char *[]){"--positive", "'9' is not a code of ESR", NULL});
    char *err = NULL;
    cr_assert_eq(tu_run(NULL, &err, "prep '%s'", P("p.csv")), 1);
    cr_assert(strstr(err, "missing -o") && strstr(err, "--help"), "%s", err);
    free(err);
    char *out = NULL;
    cr_assert_eq(tu_run(&out, NULL, "prep --help"), 0);
    cr_assert(strstr(out, "--stats") && strstr(out, "--columns") && strstr(out, "--na"), "%s", out);
    free(out);
}

Test(prep_cli, uci_adult_through_the_cli_and_numpy_load) {
    char path[4096];
    const char *shared = getenv("DP_SHARED_DIR");
    snprintf(path, sizeof path, "%s/data/adult/adult.data", shared ? shared : "../shared");
    if (!tu_exists(path)) cr_skip_test("no %s", path);
    char *out = NULL, *err = NULL;
    int rc =
        tu_run(&out, &err,
               "prep '%s' -o '%s' --columns age,workclass,fnlwgt,education,education-num,"
               "marital-status,occupation,relationship,race,sex,capital-gain,capital-loss,"
               "hours-per-week,native-country,income --target income --positive '>50K' --na '?' "
               "--features age,workclass,fnlwgt,education,education-num,marital-status,"
               "occupation,relationship,race,sex,capital-gain,capital-loss,hours-per-week,"
               "native-country",
               path, P("adult"));
    cr_assert_eq(rc, 0, "%s", err);
    /* the report on stdout; the privacy warning on stderr */
    cr_assert(strstr(out, "32561") && strstr(out, "1836") && strstr(out, "1843") &&
                  strstr(out, "583"),
              "%s", out);
    cr_assert(strstr(err, "NOT PRIVATE"), "%s", err);
    free(out);
    free(err);
    char cmd[8400];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import numpy' 2>/dev/null || exit 77; /usr/bin/python3 -c \""
             "import numpy as np, json\n"
             "d = '%s'\n"
             "m = json.load(open(d + '/meta.json'))\n"
             "n = 0; pos = 0\n"
             "for s in ('train', 'val', 'test'):\n"
             "    X = np.load(d + '/X_' + s + '.npy'); y = np.load(d + '/y_' + s + '.npy')\n"
             "    assert X.dtype == np.float32 and y.dtype == np.int32, (X.dtype, y.dtype)\n"
             "    assert X.shape == (m['splits'][s]['rows'], m['n_features']), X.shape\n"
             "    assert X.flags['C_CONTIGUOUS'] and 0 <= X.min() and X.max() <= 1\n"
             "    n += len(y); pos += int(y.sum())\n"
             "assert (n, pos) == (32561, 7841), (n, pos)\n\"",
             P("adult"));
    rc = system(cmd);
    if (WEXITSTATUS(rc) == 77) cr_skip_test("numpy is not installed for /usr/bin/python3");
    cr_assert_eq(rc, 0, "numpy.load check failed");
}

Test(prep_cli, malformed_quotes_drop_the_record_not_the_file) {
    write_pums("q.csv", "P,2023HU0000001,1,35,1,21,1,1,1,01,2,1,1,4\n"
                        "P,\"2023HU0000002\"x,1,35,1,21,1,1,1,01,2,1,1,4\n"
                        "P,2023HU0000003,1,3\"5,1,21,1,1,1,01,2,1,1,4\"\n"
                        "P,\"2023HU0000004\",1,35,1,\"21\",1,1,1,01,2,1,1,4\n");
    char *out = NULL;
    int rc = tu_run(&out, NULL, "prep '%s' -o '%s' --json", P("q.csv"), P("ok"));
    cr_assert_eq(rc, 0);
    /* the stray quote of line 4 opens quoting and swallows its commas: by the
     * toggle rule that line has 4 fields, and the field count is checked first */
    cr_assert(strstr(out, "\"bad_quoting\":1") && strstr(out, "\"wrong_field_count\":1") &&
                  strstr(out, "\"rows_kept\":2"),
              "%s", out);
    cr_assert(strstr(out, "q.csv:3:18: a quote inside a field"), "%s", out);
    free(out);
}
