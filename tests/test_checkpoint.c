/*
 * test_checkpoint.c: the checkpoint file: a round trip keeps every byte;
 * truncated, corrupt (any flipped byte), foreign and future-version files are
 * refused with a clear message; writes are atomic (no temporary file left,
 * the old file intact when the write cannot happen).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "dpsgd/checkpoint.h"
#include "dpsgd/dpsgd.h"
#include "testutil.h"

TestSuite(checkpoint, .init = tu_dir_init, .fini = tu_dir_fini);

static void make(dp_checkpoint *ck, uint64_t *r, size_t np, size_t ns) {
    ck->json = strdup("{\"step\": 42, \"key\": \"secret\"}");
    ck->params = malloc(np * 4 + 4);
    ck->state = malloc(ns * 4 + 4);
    ck->n_params = np;
    ck->n_state = ns;
    for (size_t i = 0; i < np; i++)
        ck->params[i] = (float)tu_normal(r);
    for (size_t i = 0; i < ns; i++)
        ck->state[i] = (float)tu_normal(r);
}

static void unmake(dp_checkpoint *ck) {
    free(ck->json);
    free(ck->params);
    free(ck->state);
}

static char *path_of(const char *name) {
    char *p = malloc(4300);
    snprintf(p, 4300, "%s/%s", tu_dir, name);
    return p;
}

Test(checkpoint, round_trip_keeps_every_value) {
    uint64_t r = tu_seed();
    dp_checkpoint ck, back;
    make(&ck, &r, 1000, 2000);
    char *p = path_of("ck");
    cr_assert_eq(dp_checkpoint_write(p, &ck), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_checkpoint_read(p, &back), DP_OK, "%s", dp_last_error());
    cr_assert_str_eq(back.json, ck.json);
    cr_assert_eq(back.n_params, 1000);
    cr_assert_eq(back.n_state, 2000);
    cr_assert_eq(memcmp(back.params, ck.params, 4000), 0);
    cr_assert_eq(memcmp(back.state, ck.state, 8000), 0);
    dp_checkpoint_free(&back);
    unmake(&ck);
    free(p);
}

Test(checkpoint, empty_state_round_trips) {
    uint64_t r = tu_seed();
    dp_checkpoint ck, back;
    make(&ck, &r, 3, 0);
    char *p = path_of("ck");
    cr_assert_eq(dp_checkpoint_write(p, &ck), DP_OK);
    cr_assert_eq(dp_checkpoint_read(p, &back), DP_OK, "%s", dp_last_error());
    cr_assert_eq(back.n_state, 0);
    dp_checkpoint_free(&back);
    unmake(&ck);
    free(p);
}

static void expect_refused(const char *p, const char *phrase) {
    dp_checkpoint back;
    dp_status st = dp_checkpoint_read(p, &back);
    cr_assert_eq(st, DP_E_FORMAT, "status %d: %s", st, dp_last_error());
    cr_assert(strstr(dp_last_error(), phrase), "message '%s' lacks '%s'", dp_last_error(), phrase);
    cr_assert(strstr(dp_last_error(), p), "message names the file: %s", dp_last_error());
}

Test(checkpoint, truncated_files_are_refused) {
    uint64_t r = tu_seed();
    dp_checkpoint ck;
    make(&ck, &r, 100, 100);
    char *p = path_of("ck"), *q = path_of("cut");
    dp_checkpoint_write(p, &ck);
    size_t len;
    char *bytes = tu_read_file(p, &len);
    size_t cuts[] = {0, 5, 39, 40, 41, len / 2, len - 33, len - 32, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_write_file(q, bytes, cuts[i]);
        dp_checkpoint back;
        cr_assert_eq(dp_checkpoint_read(q, &back), DP_E_FORMAT, "cut at %zu accepted", cuts[i]);
        cr_assert(strstr(dp_last_error(), "truncated") || strstr(dp_last_error(), "too short"),
                  "cut at %zu: %s", cuts[i], dp_last_error());
    }
    free(bytes);
    unmake(&ck);
    free(p);
    free(q);
}

Test(checkpoint, every_flipped_byte_is_detected) {
    uint64_t r = tu_seed();
    dp_checkpoint ck;
    make(&ck, &r, 20, 10);
    char *p = path_of("ck"), *q = path_of("bad");
    dp_checkpoint_write(p, &ck);
    size_t len;
    char *bytes = tu_read_file(p, &len);
    for (size_t i = 0; i < len; i++) {
        char orig = bytes[i];
        bytes[i] ^= (char)(1 + tu_next(&r) % 255);
        tu_write_file(q, bytes, len);
        dp_checkpoint back;
        cr_assert_neq(dp_checkpoint_read(q, &back), DP_OK, "flip at byte %zu accepted", i);
        bytes[i] = orig;
    }
    free(bytes);
    unmake(&ck);
    free(p);
    free(q);
}

Test(checkpoint, checksum_mismatch_says_corrupt) {
    uint64_t r = tu_seed();
    dp_checkpoint ck;
    make(&ck, &r, 20, 10);
    char *p = path_of("ck");
    dp_checkpoint_write(p, &ck);
    size_t len;
    char *bytes = tu_read_file(p, &len);
    bytes[50] ^= 0x10; /* inside the parameters */
    tu_write_file(p, bytes, len);
    expect_refused(p, "checksum mismatch");
    free(bytes);
    unmake(&ck);
    free(p);
}

Test(checkpoint, foreign_and_future_files_are_refused) {
    char *p = path_of("foreign");
    const char png[] =
        "\x89PNG\r\n\x1a\n0123456789012345678901234567890123456789012345678901234567";
    tu_write_file(p, png, sizeof png);
    expect_refused(p, "not a dpsgd checkpoint");
    tu_write_file(p, "{\"step\": 1}", 11);
    expect_refused(p, "not a dpsgd checkpoint");
    uint64_t r = tu_seed();
    dp_checkpoint ck;
    make(&ck, &r, 4, 4);
    dp_checkpoint_write(p, &ck);
    size_t len;
    char *bytes = tu_read_file(p, &len);
    bytes[8] = 2; /* format version 2 */
    tu_write_file(p, bytes, len);
    expect_refused(p, "format version 2");
    free(bytes);
    unmake(&ck);
    free(p);
}

Test(checkpoint, missing_file_is_an_io_error_naming_it) {
    char *p = path_of("nope");
    dp_checkpoint back;
    cr_assert_eq(dp_checkpoint_read(p, &back), DP_E_IO);
    cr_assert(strstr(dp_last_error(), p));
    free(p);
}

Test(checkpoint, atomic_write_replaces_whole_file_and_leaves_no_temporary) {
    uint64_t r = tu_seed();
    dp_checkpoint a, b, back;
    make(&a, &r, 10, 0);
    make(&b, &r, 5000, 5000);
    char *p = path_of("ck");
    cr_assert_eq(dp_checkpoint_write(p, &b), DP_OK);
    cr_assert_eq(dp_checkpoint_write(p, &a), DP_OK);
    cr_assert_eq(dp_checkpoint_read(p, &back), DP_OK);
    cr_assert_eq(back.n_params, 10);
    dp_checkpoint_free(&back);
    DIR *d = opendir(tu_dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    cr_assert_eq(files, 1, "only the checkpoint is left in the directory");
    /* A write into a directory that does not exist fails and names the path. */
    char *bad = path_of("no/such/dir/ck");
    cr_assert_eq(dp_checkpoint_write(bad, &a), DP_E_IO);
    cr_assert(strstr(dp_last_error(), bad));
    unmake(&a);
    unmake(&b);
    free(p);
    free(bad);
}
