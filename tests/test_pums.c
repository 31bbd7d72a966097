/*
 * test_pums.c: the compiled ACS 2023 PUMS person dictionary: its variables
 * (checked against the shared variables.txt list, made independently of our
 * generator), known code sets from research/pums-dictionary.md, the
 * validation rules ("1" == "01", blanks only where N/A exists, junk
 * rejected), the fast path against the row-by-row reference, and that
 * scripts/gen_pums_codes.py regenerates src/data/pums_codes.c byte for byte.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "testutil.h"

static int ok(const char *name, const char *field) {
    const dp_pums_var *v = dp_pums_find(name);
    cr_assert_not_null(v, "variable %s", name);
    return dp_pums_valid(v, field, strlen(field));
}

Test(pums, person_record_has_287_variables_from_RT_to_PWGTP80) {
    cr_assert_eq(dp_pums_year(), 2023);
    cr_assert_eq(dp_pums_person_nvars(), 287);
    cr_assert_str_eq(dp_pums_person_var(0)->name, "RT");
    cr_assert_str_eq(dp_pums_person_var(1)->name, "SERIALNO");
    cr_assert_str_eq(dp_pums_person_var(3)->name, "SPORDER");
    cr_assert_str_eq(dp_pums_person_var(286)->name, "PWGTP80");
    cr_assert_null(dp_pums_person_var(287));
    const dp_pums_var *schl = dp_pums_find("SCHL");
    cr_assert_eq(schl->type, 'C');
    cr_assert_eq(schl->width, 2);
    cr_assert_str_eq(schl->description, "Educational attainment");
    cr_assert_eq(schl->n_codes, 25); /* bb + 01..24 */
    cr_assert_eq(dp_pums_find("AGEP")->type, 'N');
}

/* ../shared/data/pums/variables.txt lists the dictionary's NAME rows, lines
 * 242-528 being the person record: NAME TAB TYPE TAB WIDTH TAB DESCRIPTION. */
Test(pums, variables_match_the_independent_list_in_order) {
    const char *shared = getenv("DP_SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/data/pums/variables.txt", shared ? shared : "../shared");
    FILE *f = fopen(path, "r");
    if (!f) cr_skip_test("no %s", path);
    char line[4096];
    int lineno = 0;
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        if (++lineno < 242) continue;
        line[strcspn(line, "\n")] = '\0';
        char *save, *name = strtok_r(line, "\t", &save), *type = strtok_r(NULL, "\t", &save);
        char *width = strtok_r(NULL, "\t", &save), *desc = strtok_r(NULL, "", &save);
        const dp_pums_var *v = dp_pums_person_var(i);
        cr_assert_not_null(v, "line %d", lineno);
        cr_assert_str_eq(v->name, name, "variable %zu", i);
        cr_assert_eq(v->type, type[0], "%s", name);
        cr_assert_eq(v->width, atoi(width), "%s", name);
        cr_assert_str_eq(v->description, desc, "%s", name);
        cr_assert_eq(dp_pums_find(name), v, "find(%s)", name);
        i++;
    }
    fclose(f);
    cr_assert_eq(i, 287);
}

Test(pums, find_returns_null_for_unknown_names) {
    cr_assert_null(dp_pums_find("ST"));   /* 2023 calls it STATE */
    cr_assert_null(dp_pums_find("RELP")); /* replaced by RELSHIPP since 2019 */
    cr_assert_null(dp_pums_find("WGTP")); /* housing record only */
    cr_assert_null(dp_pums_find("esr"));
    cr_assert_null(dp_pums_find(""));
    cr_assert_null(dp_pums_find(NULL));
    cr_assert_not_null(dp_pums_find("STATE"));
    cr_assert_not_null(dp_pums_find("RELSHIPP"));
}

Test(pums, esr_codes_are_1_to_6_with_blank_under_16) {
    for (int c = 1; c <= 6; c++) {
        char s[12];
        snprintf(s, sizeof s, "%d", c);
        cr_assert(ok("ESR", s), "ESR %s", s);
    }
    cr_assert(ok("ESR", ""));
    cr_assert_not(ok("ESR", "0"));
    cr_assert_not(ok("ESR", "7"));
    cr_assert_not(ok("ESR", "10"));
}

Test(pums, schl_codes_are_01_to_24_and_leading_zero_is_optional) {
    for (int c = 1; c <= 24; c++) {
        char a[12], b[12];
        snprintf(a, sizeof a, "%02d", c);
        snprintf(b, sizeof b, "%d", c);
        cr_assert(ok("SCHL", a), "SCHL %s", a);
        cr_assert(ok("SCHL", b), "SCHL %s", b);
    }
    cr_assert(ok("SCHL", ""));
    cr_assert_not(ok("SCHL", "00"));
    cr_assert_not(ok("SCHL", "0"));
    cr_assert_not(ok("SCHL", "25"));
    cr_assert_not(ok("SCHL", "001"), "longer than the field width");
}

Test(pums, agep_is_0_to_99_and_never_blank) {
    for (int a = 0; a <= 99; a++) {
        char s[12];
        snprintf(s, sizeof s, "%d", a);
        cr_assert(ok("AGEP", s), "AGEP %s", s);
    }
    cr_assert_not(ok("AGEP", ""));
    cr_assert_not(ok("AGEP", "100"));
    cr_assert_not(ok("AGEP", "-1"));
}

Test(pums, sex_is_1_or_2_and_never_blank) {
    cr_assert(ok("SEX", "1"));
    cr_assert(ok("SEX", "2"));
    cr_assert_not(ok("SEX", ""));
    cr_assert_not(ok("SEX", "0"));
    cr_assert_not(ok("SEX", "3"));
}

Test(pums, non_numeric_and_malformed_fields_are_rejected) {
    const char *junk[] = {"1a", "a", " 1", "1 ", "1.0", "+1", "0x1", "-", "--1", "1-", "NA", "b"};
    for (size_t k = 0; k < sizeof junk / sizeof *junk; k++) {
        cr_assert_not(ok("SEX", junk[k]), "SEX '%s'", junk[k]);
        cr_assert_not(ok("AGEP", junk[k]), "AGEP '%s'", junk[k]);
        cr_assert_not(ok("WKHP", junk[k]), "WKHP '%s'", junk[k]);
    }
    cr_assert_not(ok("SCHL", "-1"), "a C code has no sign");
    /* a length that is not the string's: only the first len bytes count */
    const dp_pums_var *sex = dp_pums_find("SEX");
    cr_assert(dp_pums_valid(sex, "1,2,3", 1));
    cr_assert_not(dp_pums_valid(sex, "1,2,3", 3));
}

Test(pums, signed_numeric_ranges) {
    cr_assert(ok("PINCP", "-19998"));
    cr_assert(ok("PINCP", "-1"));
    cr_assert(ok("PINCP", "0"));
    cr_assert(ok("PINCP", "4209995"));
    cr_assert(ok("PINCP", ""));
    cr_assert_not(ok("PINCP", "-19999"));
    cr_assert_not(ok("PINCP", "4209996"));
    cr_assert(ok("PWGTP17", "-9999"));
    cr_assert(ok("PWGTP", "1"));
    cr_assert_not(ok("PWGTP", "0"));
    cr_assert_not(ok("PWGTP", "-5"));
    cr_assert(ok("WKHP", "99"));
    cr_assert(ok("WKHP", ""));
    cr_assert_not(ok("WKHP", "0"));
}

Test(pums, text_codes_serialno_naicsp_socp) {
    cr_assert(ok("SERIALNO", "2023HU0000017"));
    cr_assert(ok("SERIALNO", "2023GQ9999999"));
    cr_assert_not(ok("SERIALNO", "2023HU0000000"), "below the range");
    cr_assert_not(ok("SERIALNO", "2022HU0000017"), "another year");
    cr_assert_not(ok("SERIALNO", "2023XX0000017"));
    cr_assert_not(ok("SERIALNO", "2023HU00000A7"), "a letter where digits go");
    cr_assert_not(ok("SERIALNO", "2023HU000001"), "too short");
    cr_assert_not(ok("SERIALNO", ""));
    cr_assert(ok("NAICSP", "113M"));
    cr_assert(ok("NAICSP", "23"));
    cr_assert(ok("NAICSP", "92811P7"));
    cr_assert_not(ok("NAICSP", "113m"));
    cr_assert(ok("SOCP", "1110XX"));
    cr_assert(ok("RT", "P"));
    cr_assert_not(ok("RT", "X"));
    cr_assert(ok("PUMA", "00101"));
    cr_assert(ok("PUMA", "101"));
    cr_assert_not(ok("PUMA", "00099"));
    cr_assert(ok("STATE", "06"));
    cr_assert(ok("STATE", "6"));
    cr_assert_not(ok("STATE", "03"), "no state has FIPS 03");
}

/* Fields to probe a variable with: every code's bounds, their neighbours,
 * with and without leading zeros, blank, and random junk. */
static void probes(const dp_pums_var *v, uint64_t *rng, char out[][32], int *n, int max) {
    *n = 0;
    snprintf(out[(*n)++], 32, "%s", "");
    for (int k = 0; k < v->n_codes && *n + 8 < max; k++) {
        const dp_pums_code *c = &v->codes[k];
        snprintf(out[(*n)++], 32, "%s", c->lo);
        snprintf(out[(*n)++], 32, "%s", c->hi);
        char *end;
        long long a = strtoll(c->lo, &end, 10);
        if (*end == '\0' && end != c->lo) {
            long long b = strtoll(c->hi, NULL, 10);
            snprintf(out[(*n)++], 32, "%lld", a - 1);
            snprintf(out[(*n)++], 32, "%lld", b + 1);
            snprintf(out[(*n)++], 32, "%lld", a);
            snprintf(out[(*n)++], 32, "0%lld", b);
        }
    }
    static const char alphabet[] = "0123456789-bPHXMZ ";
    while (*n < max) {
        int len = 1 + (int)(tu_next(rng) % 8);
        for (int i = 0; i < len; i++)
            out[*n][i] = alphabet[tu_next(rng) % (sizeof alphabet - 1)];
        out[*n][len] = '\0';
        (*n)++;
    }
}

Test(pums, fast_validation_equals_row_by_row_reference) {
    uint64_t rng = tu_seed();
    static char fields[1200][32];
    size_t n_valid = 0, n_total = 0;
    for (size_t i = 0; i < dp_pums_person_nvars(); i++) {
        const dp_pums_var *v = dp_pums_person_var(i);
        dp_pums_var copy = *v; /* not in the compiled table: takes the reference path */
        int n;
        probes(v, &rng, fields, &n, 1200);
        for (int k = 0; k < n; k++) {
            size_t len = strlen(fields[k]);
            int fast = dp_pums_valid(v, fields[k], len),
                slow = dp_pums_valid(&copy, fields[k], len);
            cr_assert_eq(fast, slow, "%s '%s': fast %d, reference %d", v->name, fields[k], fast,
                         slow);
            n_valid += fast;
            n_total++;
        }
    }
    cr_assert_gt(n_valid, n_total / 10, "the probes include valid codes");
    cr_assert_lt(n_valid, n_total, "and invalid ones");
}

Test(pums, every_dictionary_code_is_valid_and_blank_rows_are_flagged) {
    for (size_t i = 0; i < dp_pums_person_nvars(); i++) {
        const dp_pums_var *v = dp_pums_person_var(i);
        int blank_rows = 0;
        for (int k = 0; k < v->n_codes; k++) {
            const dp_pums_code *c = &v->codes[k];
            if (c->blank) {
                blank_rows++;
                cr_assert_eq(strspn(c->lo, "b"), strlen(c->lo), "%s blank row '%s'", v->name,
                             c->lo);
                continue;
            }
            cr_assert(dp_pums_valid(v, c->lo, strlen(c->lo)), "%s '%s'", v->name, c->lo);
            cr_assert(dp_pums_valid(v, c->hi, strlen(c->hi)), "%s '%s'", v->name, c->hi);
        }
        cr_assert_eq(dp_pums_valid(v, "", 0), blank_rows > 0, "%s blank", v->name);
    }
}

Test(pums, generated_table_is_what_the_script_writes) {
    if (access("/usr/bin/python3", X_OK) != 0) cr_skip_test("no /usr/bin/python3");
    const char *src = tu_source_dir();
    char *dir = tu_tempdir();
    char cmd[8192], out[4096], committed[4096];
    snprintf(out, sizeof out, "%s/pums_codes.c", dir);
    snprintf(committed, sizeof committed, "%s/src/data/pums_codes.c", src);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/scripts/gen_pums_codes.py' "
             "'%s/data/pums/PUMS_Data_Dictionary_2023.csv' '%s'",
             src, src, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    size_t na, nb;
    char *a = tu_read_file(out, &na), *b = tu_read_file(committed, &nb);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq(na, nb, "regenerated %zu bytes, committed %zu", na, nb);
    cr_assert_eq(memcmp(a, b, na), 0,
                 "src/data/pums_codes.c differs from a fresh run of the script");
    free(a);
    free(b);
    tu_rmrf(dir);
    free(dir);
}
