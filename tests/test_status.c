/*
 * test_status.c: result codes, the thread-local message, and symbol hygiene
 * (libdpsgd.so exports only dp_ symbols).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "core/dp_internal.h"
#include "testutil.h"

Test(status, error_sets_message_and_returns_code) {
    dp_status s = dp_error(DP_E_FORMAT, "%s:%d:%d: expected %s", "a.csv", 3, 7, "a digit");
    cr_assert_eq(s, DP_E_FORMAT);
    cr_assert_str_eq(dp_last_error(), "a.csv:3:7: expected a digit");
    dp_error_prefix(s, "rank %d", 2);
    cr_assert_str_eq(dp_last_error(), "rank 2: a.csv:3:7: expected a digit");
    dp_clear_error();
    cr_assert_str_eq(dp_last_error(), "");
}

Test(status, every_code_has_a_distinct_phrase) {
    for (int a = DP_OK; a <= DP_E_EMPTY; a++)
        for (int b = a + 1; b <= DP_E_EMPTY; b++)
            cr_assert_str_neq(dp_status_str(a), dp_status_str(b), "codes %d and %d", a, b);
    cr_assert_str_eq(dp_status_str((dp_status)999), "unknown status");
}

static size_t n_alloc;
static void *count_malloc(void *ud, size_t n) { n_alloc++; return malloc(n); }
static void *count_realloc(void *ud, void *p, size_t n) { n_alloc++; return realloc(p, n); }
static void count_free(void *ud, void *p) { free(p); }

Test(status, allocator_injection_routes_every_allocation) {
    dp_set_allocator(count_malloc, count_realloc, count_free, NULL);
    char *s = dp_strdup("abc");
    void *p = dp_calloc(4, 8);
    cr_assert_eq(n_alloc, 2);
    dp_free(s);
    dp_free(p);
    dp_set_allocator(NULL, NULL, NULL, NULL);
    cr_assert_null(dp_calloc((size_t)-1, 16), "overflow must fail, not wrap");
}

Test(status, shared_library_exports_only_dp_symbols) {
    /* $DPSGD is <build>/dpsgd; the library sits beside it as <build>/libdpsgd.so */
    char dir[4096], cmd[4400];
    snprintf(dir, sizeof dir, "%s", tu_dpsgd());
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    snprintf(cmd, sizeof cmd,
             "nm -D --defined-only '%s/libdpsgd.so' | awk '$2 ~ /[TDBR]/ {print $3}' | "
             "grep -v '^dp_' | grep -v '^_'", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[256], bad[4096] = "";
    while (fgets(line, sizeof line, p)) strncat(bad, line, sizeof bad - strlen(bad) - 1);
    pclose(p);
    cr_assert_str_eq(bad, "", "symbols exported without the dp_ prefix:\n%s", bad);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/libdpsgd.so' | grep -c ' T dp_'", dir);
    p = popen(cmd, "r");
    int n = 0;
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    cr_assert_gt(n, 3, "the library exports dp_ functions");
}
