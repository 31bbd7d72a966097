/*
 * test_synth.c: the synthetic PUMS writer (dp_synth_write, `dpsgd synth`).
 * Determinism across thread counts, the header against the dictionary, every
 * field of clean lines valid and the N/A rules kept, the unemployment rate and
 * its documented dependence on education, the damage counts against two
 * independent readers (a C one here, tests/synth_check.py with Python's csv
 * module), .gz output against the plain bytes, and bad usage.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "testutil.h"

/* ---- helpers --------------------------------------------------------------- */

typedef struct field {
    const char *p;
    size_t n;
} field;

/* Split one line (no quotes in synth files) into at most max fields. */
static int split(const char *line, const char *end, field *f, int max) {
    int n = 0;
    const char *s = line;
    for (;;) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        if (n < max) f[n] = (field){s, (size_t)((c ? c : end) - s)};
        n++;
        if (!c) break;
        s = c + 1;
    }
    return n;
}

static int fint(field f, int *out) {
    if (f.n == 0 || f.n > 9) return 0;
    int v = 0, neg = 0;
    size_t i = 0;
    if (f.p[0] == '-') neg = i = 1;
    if (i == f.n) return 0;
    for (; i < f.n; i++) {
        if (f.p[i] < '0' || f.p[i] > '9') return 0;
        v = v * 10 + (f.p[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

static char *write_synth(const char *dir, const char *name, dp_synth_config *cfg,
                         dp_synth_report *rep) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    cfg->force = 1;
    dp_status st = dp_synth_write(path, cfg, rep);
    cr_assert_eq(st, DP_OK, "dp_synth_write: %s", dp_last_error());
    return path;
}

/* Column index by name in a header of n fields, or -1. */
static int colof(const field *h, int n, const char *name) {
    for (int k = 0; k < n; k++)
        if (h[k].n == strlen(name) && !memcmp(h[k].p, name, h[k].n)) return k;
    return -1;
}

#define MAXF 400

/* ---- determinism ----------------------------------------------------------- */

Test(synth, same_seed_same_bytes_whatever_the_threads) {
    char *dir = tu_tempdir();
    uint64_t seed = tu_seed();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 23457; /* not a block boundary */
    cfg.seed = seed;
    cfg.invalid_rate = 0.02;
    char *names[3] = {"t1.csv", "t2.csv", "t3.csv"};
    char *data[3];
    size_t len[3];
    for (int t = 0; t < 3; t++) {
        cfg.threads = t + 1;
        dp_synth_report rep;
        char *path = write_synth(dir, names[t], &cfg, &rep);
        data[t] = tu_read_file(path, &len[t]);
        cr_assert_eq(rep.rows, 23457);
        cr_assert_eq(rep.bytes, len[t]);
        free(path);
    }
    cr_assert_eq(len[0], len[1]);
    cr_assert_eq(len[0], len[2]);
    cr_assert(!memcmp(data[0], data[1], len[0]), "1 and 2 threads differ");
    cr_assert(!memcmp(data[0], data[2], len[0]), "1 and 3 threads differ");
    cfg.seed = seed + 1;
    cfg.threads = 2;
    char *path = write_synth(dir, "other.csv", &cfg, NULL);
    size_t n;
    char *other = tu_read_file(path, &n);
    cr_assert(n != len[0] || memcmp(other, data[0], n), "another seed gave the same file");
    /* the first rows of a longer file are the same people */
    cfg.seed = seed;
    cfg.rows = 30000;
    char *longer = write_synth(dir, "longer.csv", &cfg, NULL);
    size_t nl;
    char *ld = tu_read_file(longer, &nl);
    cr_assert(nl > len[0] && !memcmp(ld, data[0], len[0]), "a prefix of a longer file");
    for (int t = 0; t < 3; t++)
        free(data[t]);
    free(other);
    free(ld);
    free(path);
    free(longer);
    tu_rmrf(dir);
    free(dir);
}

/* ---- header ------------------------------------------------------------------ */

Test(synth, header_is_the_dictionary_in_order) {
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 10;
    for (int minimal = 0; minimal <= 1; minimal++) {
        cfg.columns = minimal ? DP_SYNTH_MINIMAL : DP_SYNTH_FULL;
        dp_synth_report rep;
        char *path = write_synth(dir, minimal ? "m.csv" : "f.csv", &cfg, &rep);
        char *text = tu_read_file(path, NULL);
        field h[MAXF];
        int n = split(text, strchr(text, '\n'), h, MAXF);
        cr_assert_eq(n, rep.columns);
        if (!minimal) {
            cr_assert_eq((size_t)n, dp_pums_person_nvars());
            for (int k = 0; k < n; k++) {
                const char *want = dp_pums_person_var((size_t)k)->name;
                cr_assert(h[k].n == strlen(want) && !memcmp(h[k].p, want, h[k].n),
                          "column %d: want %s, got %.*s", k, want, (int)h[k].n, h[k].p);
            }
        } else {
            const char *need[] = {
                "RT",       "SERIALNO", "SPORDER", "PUMA", "STATE", "PWGTP", "AGEP",  "SEX", "MAR",
                "SCHL",     "ESR",      "RAC1P",   "HISP", "COW",   "WKHP",  "DIS",   "CIT", "MIL",
                "NATIVITY", "RELSHIPP", "MIG",     "DEAR", "DEYE",  "DREM",  "PINCP", "ANC", "ESP"};
            for (size_t k = 0; k < sizeof need / sizeof *need; k++)
                cr_assert_geq(colof(h, n, need[k]), 0, "minimal lacks %s", need[k]);
            /* dictionary order: indices increase */
            int last = -1;
            for (int k = 0; k < n; k++) {
                char name[32];
                snprintf(name, sizeof name, "%.*s", (int)h[k].n, h[k].p);
                const dp_pums_var *v = dp_pums_find(name);
                cr_assert_not_null(v, "%s is not a person variable", name);
                int idx = (int)(v - dp_pums_person_var(0));
                cr_assert_gt(idx, last, "%s out of dictionary order", name);
                last = idx;
            }
        }
        free(text);
        free(path);
    }
    tu_rmrf(dir);
    free(dir);
}

/* ---- clean lines --------------------------------------------------------------- */

Test(synth, clean_lines_validate_and_keep_the_na_rules) {
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 30000;
    cfg.seed = tu_seed();
    cfg.invalid_rate = 0;
    cfg.missing_rate = 0;
    dp_synth_report rep;
    char *path = write_synth(dir, "clean.csv", &cfg, &rep);
    cr_assert_eq(rep.clean, rep.rows);
    size_t len;
    char *text = tu_read_file(path, &len);
    char *end = text + len, *nl = strchr(text, '\n');
    field h[MAXF], f[MAXF];
    int nc = split(text, nl, h, MAXF);
    const dp_pums_var *vars[MAXF];
    for (int k = 0; k < nc; k++)
        vars[k] = dp_pums_person_var((size_t)k);
#define C(name) colof(h, nc, name)
    int cAGE = C("AGEP"), cESR = C("ESR"), cSCHL = C("SCHL"), cMIL = C("MIL"), cDREM = C("DREM"),
        cMIG = C("MIG"), cPINCP = C("PINCP"), cWKHP = C("WKHP"), cCOW = C("COW"), cESP = C("ESP"),
        cREL = C("RELSHIPP"), cSER = C("SERIALNO"), cSPO = C("SPORDER"), cDIS = C("DIS"),
        cCIT = C("CIT"), cNAT = C("NATIVITY"), cMAR = C("MAR");
    int cDif[6] = {C("DEAR"), C("DEYE"), C("DREM"), C("DPHY"), C("DDRS"), C("DOUT")};
    char last_serial[16] = "";
    int last_sp = 0, lines = 0;
    for (char *s = nl + 1; s < end; lines++) {
        char *e = memchr(s, '\n', (size_t)(end - s));
        cr_assert_not_null(e, "line %d has no end", lines + 2);
        int n = split(s, e, f, MAXF);
        cr_assert_eq(n, nc, "line %d: %d fields", lines + 2, n);
        for (int k = 0; k < n; k++)
            cr_assert(dp_pums_valid(vars[k], f[k].p, f[k].n), "line %d: %s = '%.*s' is not valid",
                      lines + 2, vars[k]->name, (int)f[k].n, f[k].p);
        int age, esr = 0, cow = 0, rel = 0, sp, dis, cit, nat, mar;
        cr_assert(fint(f[cAGE], &age));
        int has_esr = fint(f[cESR], &esr), has_cow = fint(f[cCOW], &cow);
        fint(f[cREL], &rel);
        fint(f[cDIS], &dis);
        fint(f[cCIT], &cit);
        fint(f[cNAT], &nat);
        fint(f[cMAR], &mar);
        int wkhp_blank = f[cWKHP].n == 0;
        cr_assert_eq(!has_esr, age < 16, "line %d: ESR blank iff under 16", lines + 2);
        cr_assert_eq(f[cSCHL].n == 0, age < 3, "line %d: SCHL blank iff under 3", lines + 2);
        cr_assert_eq(f[cMIL].n == 0, age < 17, "line %d: MIL", lines + 2);
        cr_assert_eq(f[cDREM].n == 0, age < 5, "line %d: DREM", lines + 2);
        cr_assert_eq(f[cMIG].n == 0, age < 1, "line %d: MIG", lines + 2);
        cr_assert_eq(f[cPINCP].n == 0, age < 15, "line %d: PINCP", lines + 2);
        if (age < 16) cr_assert(wkhp_blank && !has_cow, "line %d: WKHP/COW under 16", lines + 2);
        int employed = esr == 1 || esr == 2 || esr == 4 || esr == 5;
        if (employed)
            cr_assert(!wkhp_blank && cow >= 1 && cow <= 8, "line %d: a worker's WKHP/COW",
                      lines + 2);
        if (has_cow && cow == 9) cr_assert_eq(esr, 3, "line %d: COW 9 is unemployed", lines + 2);
        if (!has_cow && age >= 16) cr_assert_eq(esr, 6, "line %d: COW blank out of LF", lines + 2);
        if (f[cESP].n) cr_assert(age < 18 && rel >= 25 && rel <= 27, "line %d: ESP", lines + 2);
        cr_assert_eq(nat == 1, cit >= 1 && cit <= 3, "line %d: NATIVITY vs CIT", lines + 2);
        if (age < 15) cr_assert_eq(mar, 5, "line %d: MAR under 15", lines + 2);
        int any = 0;
        for (int k = 0; k < 6; k++)
            any |= f[cDif[k]].n == 1 && f[cDif[k]].p[0] == '1';
        cr_assert_eq(dis == 1, any, "line %d: DIS 1 iff a difficulty", lines + 2);
        /* households contiguous, SPORDER 1..n */
        cr_assert(fint(f[cSPO], &sp));
        cr_assert_eq(f[cSER].n, 13);
        if (memcmp(last_serial, f[cSER].p, 13)) {
            cr_assert_eq(sp, 1, "line %d: a household starts at SPORDER 1", lines + 2);
            memcpy(last_serial, f[cSER].p, 13);
        } else {
            cr_assert_eq(sp, last_sp + 1, "line %d: SPORDER consecutive", lines + 2);
        }
        last_sp = sp;
        s = e + 1;
    }
#undef C
    cr_assert_eq(lines, 30000);
    free(text);
    free(path);
    tu_rmrf(dir);
    free(dir);
}

/* ---- the model ------------------------------------------------------------- */

Test(synth, unemployment_is_a_few_percent_and_falls_with_education) {
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 200000;
    cfg.seed = tu_seed();
    cfg.columns = DP_SYNTH_MINIMAL;
    dp_synth_report rep;
    char *path = write_synth(dir, "m.csv", &cfg, &rep);
    size_t len;
    char *text = tu_read_file(path, &len);
    char *end = text + len, *nl = strchr(text, '\n');
    field h[64], f[64];
    int nc = split(text, nl, h, 64);
    int cAGE = colof(h, nc, "AGEP"), cESR = colof(h, nc, "ESR"), cSCHL = colof(h, nc, "SCHL"),
        cDIS = colof(h, nc, "DIS");
    /* education groups: <HS (SCHL<16), HS/GED (16-17), some college (18-20), BA+ (21+) */
    double lf[4] = {0}, un[4] = {0};
    double pop[2][2] = {{0}}, emp[2][2] = {{0}}; /* [age 25-54 | 65+][disability] */
    uint64_t n_lf = 0, n_un = 0;
    for (char *s = nl + 1; s < end;) {
        char *e = memchr(s, '\n', (size_t)(end - s));
        int n = split(s, e, f, 64), age, esr, schl, dis;
        s = e + 1;
        if (n != nc || !fint(f[cAGE], &age) || age < 0 || age > 99 || !fint(f[cESR], &esr) ||
            esr < 1 || esr > 6 || !fint(f[cSCHL], &schl) || schl < 1 || schl > 24 ||
            !fint(f[cDIS], &dis) || dis < 1 || dis > 2)
            continue; /* damaged, blank or under 16 */
        int g = schl < 16 ? 0 : schl <= 17 ? 1 : schl <= 20 ? 2 : 3;
        if (esr <= 5) {
            lf[g]++;
            un[g] += esr == 3;
        }
        if ((age >= 25 && age <= 54) || age >= 65) {
            int a = age >= 65;
            pop[a][dis == 1]++;
            emp[a][dis == 1] += esr == 1;
        }
    }
    for (int g = 0; g < 4; g++) {
        n_lf += (uint64_t)lf[g];
        n_un += (uint64_t)un[g];
    }
    double rate = (double)n_un / (double)n_lf;
    cr_log_info("labour force %llu, unemployment %.4f; by education %.4f %.4f %.4f %.4f",
                (unsigned long long)n_lf, rate, un[0] / lf[0], un[1] / lf[1], un[2] / lf[2],
                un[3] / lf[3]);
    cr_assert(rate >= 0.02 && rate <= 0.10, "unemployment %.4f outside [2%%, 10%%]", rate);
    /* the report counts about the same people (it leaves out duplicate lines
     * and keeps lines whose DIS carries an injected blank) */
    double gap = fabs((double)rep.labor_force - (double)n_lf);
    cr_assert_lt(gap, n_lf / 50.0, "report %llu, file %llu", (unsigned long long)rep.labor_force,
                 (unsigned long long)n_lf);
    for (int g = 0; g + 1 < 4; g++)
        cr_assert_gt(un[g] / lf[g], un[g + 1] / lf[g + 1],
                     "unemployment must fall with education (group %d vs %d)", g, g + 1);
    cr_assert_gt(un[0] / lf[0], 2 * un[3] / lf[3],
                 "less than high school vs bachelor's: a real gap");
    /* employment (ESR 1) is learnable: it differs by age and disability */
    cr_assert_gt(emp[0][0] / pop[0][0] - emp[1][0] / pop[1][0], 0.4, "25-54 vs 65+");
    cr_assert_gt(emp[0][0] / pop[0][0] - emp[0][1] / pop[0][1], 0.2, "disability");
    free(text);
    free(path);
    tu_rmrf(dir);
    free(dir);
}

/* ---- damage counts ------------------------------------------------------------ */

typedef struct key {
    char serial[14];
    int sporder;
} key;

static int cmp_key(const void *a, const void *b) {
    const key *x = a, *y = b;
    int c = memcmp(x->serial, y->serial, 13);
    return c ? c : (x->sporder > y->sporder) - (x->sporder < y->sporder);
}

Test(synth, damage_counts_equal_a_line_by_line_check) {
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 40000;
    cfg.seed = tu_seed();
    cfg.invalid_rate = 0.04;
    cfg.missing_rate = 0.03;
    dp_synth_report rep;
    char *path = write_synth(dir, "bad.csv", &cfg, &rep);
    size_t len;
    char *text = tu_read_file(path, &len);
    char *end = text + len, *nl = strchr(text, '\n');
    field h[MAXF], f[MAXF];
    int nc = split(text, nl, h, MAXF);
    int cSER = colof(h, nc, "SERIALNO"), cSPO = colof(h, nc, "SPORDER");
    uint64_t rows = 0, clean = 0, missing = 0, bad_code = 0, bad_number = 0, ragged = 0, multi = 0;
    uint64_t missing_by[320] = {0};
    key *keys = calloc(cfg.rows, sizeof *keys);
    size_t nkeys = 0;
    for (char *s = nl + 1; s < end;) {
        char *e = memchr(s, '\n', (size_t)(end - s));
        int n = split(s, e, f, MAXF);
        s = e + 1;
        rows++;
        memcpy(keys[nkeys].serial, f[cSER].p, 13);
        fint(f[cSPO], &keys[nkeys].sporder);
        nkeys++;
        if (n != nc) {
            ragged++;
            continue;
        }
        int kinds = 0, kind = 0, blank_col = -1;
        for (int k = 0; k < n; k++) {
            const dp_pums_var *v = dp_pums_person_var((size_t)k);
            if (dp_pums_valid(v, f[k].p, f[k].n)) continue;
            int x;
            kinds++;
            if (f[k].n == 0) {
                kind = 1;
                blank_col = k;
            } else if (fint(f[k], &x)) {
                kind = 2;
            } else {
                kind = 3;
            }
        }
        if (kinds > 1)
            multi++;
        else if (kind == 1) {
            missing++;
            missing_by[blank_col]++;
        } else if (kind == 2)
            bad_code++;
        else if (kind == 3)
            bad_number++;
        else
            clean++;
    }
    /* duplicates: lines whose key appeared before; they were counted clean above */
    qsort(keys, nkeys, sizeof *keys, cmp_key);
    uint64_t dup = 0, households = 0;
    for (size_t i = 1; i < nkeys; i++)
        dup += !cmp_key(&keys[i - 1], &keys[i]);
    for (size_t i = 0; i < nkeys; i++)
        households += i == 0 || memcmp(keys[i - 1].serial, keys[i].serial, 13);
    clean -= dup;
    cr_assert_eq(multi, 0, "no line carries two kinds of damage");
    cr_assert_eq(rows, rep.rows);
    cr_assert_eq(rows, cfg.rows);
    cr_assert_eq(clean, rep.clean);
    cr_assert_eq(missing, rep.missing);
    cr_assert_eq(bad_code, rep.bad_code);
    cr_assert_eq(bad_number, rep.bad_number);
    cr_assert_eq(ragged, rep.ragged);
    cr_assert_eq(dup, rep.duplicate);
    cr_assert_eq(households, rep.households, "(ragged lines keep their SERIALNO)");
    for (int k = 0; k < nc; k++)
        cr_assert_eq(missing_by[k], rep.missing_by_var[k], "column %d", k);
    /* the rates are honoured: each damage kind is invalid_rate/4 of the persons */
    double persons = (double)(rows - dup);
    for (int k = 0; k < 4; k++) {
        uint64_t c[4] = {bad_code, bad_number, ragged, dup};
        double p = c[k] / persons, sd = sqrt(0.01 * 0.99 / persons);
        cr_assert(fabs(p - 0.01) < 5 * sd, "damage kind %d at rate %.4f, want 0.01", k, p);
    }
    double pm = missing / persons, sdm = sqrt(0.03 * 0.97 / persons);
    cr_assert(fabs(pm - 0.03 * 0.96) < 5 * sdm, "missing rate %.4f", pm);
    free(keys);
    free(text);
    free(path);
    tu_rmrf(dir);
    free(dir);
}

/* Damage must not move the other persons: with the same seed, every line of
 * a damaged file that is not damaged equals the line of the same person in a
 * file written without damage, the persons come in the same order, and a
 * duplicate is a byte copy of a line of its household. */
static void line_key(const char *s, const char *e, char *key, size_t n) {
    field f[3];
    split(s, e, f, 3); /* RT, SERIALNO, SPORDER */
    snprintf(key, n, "%.*s/%.*s", (int)f[1].n, f[1].p, (int)f[2].n, f[2].p);
}

Test(synth, damage_changes_only_the_damaged_lines) {
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.seed = tu_seed();
    cfg.columns = DP_SYNTH_MINIMAL;
    cfg.rows = 21000;
    cfg.invalid_rate = 0;
    cfg.missing_rate = 0;
    char *pa = write_synth(dir, "a.csv", &cfg, NULL);
    cfg.rows = 20000;
    cfg.invalid_rate = 0.05;
    cfg.missing_rate = 0.05;
    dp_synth_report rep;
    char *pb = write_synth(dir, "b.csv", &cfg, &rep);
    size_t na, nb;
    char *a = tu_read_file(pa, &na), *b = tu_read_file(pb, &nb);
    char *ea = a + na, *eb = b + nb, *sa = strchr(a, '\n') + 1, *sb = strchr(b, '\n') + 1;
    uint64_t same = 0, damaged = 0, dups = 0;
    const char *hh[64]; /* lines of the current household in b */
    size_t hl[64];
    int nhh = 0;
    while (sb < eb) {
        char *lb = memchr(sb, '\n', (size_t)(eb - sb)) + 1;
        cr_assert(sa < ea, "the undamaged file ran out first");
        char *la = memchr(sa, '\n', (size_t)(ea - sa)) + 1;
        char kb[32], ka[32];
        line_key(sb, lb - 1, kb, sizeof kb);
        line_key(sa, la - 1, ka, sizeof ka);
        if (strcmp(ka, kb)) {
            /* not the next person: a copy of a line of this household */
            int found = 0;
            for (int k = 0; k < nhh && !found; k++)
                found = hl[k] == (size_t)(lb - sb) && !memcmp(hh[k], sb, hl[k]);
            cr_assert(found, "line %s is neither the next person (%s) nor a copy", kb, ka);
            dups++;
            sb = lb;
            continue;
        }
        if (nhh == 0 || strncmp(hh[0] + 2, sb + 2, 13)) nhh = 0;
        if (nhh < 64) {
            hh[nhh] = sb;
            hl[nhh++] = (size_t)(lb - sb);
        }
        if (lb - sb == la - sa && !memcmp(sa, sb, (size_t)(lb - sb)))
            same++;
        else
            damaged++;
        sa = la;
        sb = lb;
    }
    cr_assert_eq(dups, rep.duplicate);
    cr_assert_eq(same, rep.clean, "clean lines equal the undamaged file's");
    cr_assert_eq(damaged, rep.rows - rep.clean - rep.duplicate);
    cr_assert_gt(damaged, 0);
    free(a);
    free(b);
    free(pa);
    free(pb);
    tu_rmrf(dir);
    free(dir);
}

/* Read `name value` lines of synth_check.py's output. */
static long long check_value(const char *out, const char *name) {
    size_t n = strlen(name);
    for (const char *s = out; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
        if (!strncmp(s, name, n) && s[n] == ' ') return atoll(s + n + 1);
    return -1;
}

Test(synth, damage_counts_equal_the_python_csv_reader) {
    if (access("/usr/bin/python3", X_OK) != 0) cr_skip_test("no /usr/bin/python3");
    char *dir = tu_tempdir();
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.rows = 12000;
    cfg.seed = tu_seed();
    cfg.invalid_rate = 0.05;
    cfg.missing_rate = 0.05;
    dp_synth_report rep;
    char *path = write_synth(dir, "py.csv.gz", &cfg, &rep);
    char cmd[8192];
    snprintf(
        cmd, sizeof cmd,
        "/usr/bin/python3 '%s/tests/synth_check.py' '%s/data/pums/PUMS_Data_Dictionary_2023.csv' "
        "'%s'",
        tu_source_dir(), tu_source_dir(), path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char *out = calloc(1, 1 << 16);
    size_t got = fread(out, 1, (1 << 16) - 1, p);
    cr_assert_eq(pclose(p), 0, "%s failed:\n%s", cmd, out);
    cr_assert_gt(got, 0);
    cr_assert_eq(check_value(out, "header_ok"), 1, "%s", out);
    cr_assert_eq(check_value(out, "rows"), (long long)rep.rows, "%s", out);
    cr_assert_eq(check_value(out, "clean"), (long long)rep.clean, "%s", out);
    cr_assert_eq(check_value(out, "missing"), (long long)rep.missing, "%s", out);
    cr_assert_eq(check_value(out, "bad_code"), (long long)rep.bad_code, "%s", out);
    cr_assert_eq(check_value(out, "bad_number"), (long long)rep.bad_number, "%s", out);
    cr_assert_eq(check_value(out, "ragged"), (long long)rep.ragged, "%s", out);
    cr_assert_eq(check_value(out, "duplicate"), (long long)rep.duplicate, "%s", out);
    cr_assert_eq(check_value(out, "households"), (long long)rep.households, "%s", out);
    cr_assert_eq(check_value(out, "multi"), 0, "%s", out);
    cr_assert_eq(check_value(out, "bad_text"), 0, "%s", out);
    cr_assert_eq(check_value(out, "rule_violations"), 0, "%s", out);
    cr_assert_eq(check_value(out, "labor_force"), (long long)rep.labor_force, "%s", out);
    cr_assert_eq(check_value(out, "unemployed"), (long long)rep.unemployed, "%s", out);
    cr_assert_eq(check_value(out, "employed_at_work"), (long long)rep.employed_at_work, "%s", out);
    for (size_t k = 0; k < dp_pums_person_nvars(); k++) {
        if (!rep.missing_by_var[k]) continue;
        char name[64];
        snprintf(name, sizeof name, "missing_%s", dp_pums_person_var(k)->name);
        cr_assert_eq(check_value(out, name), (long long)rep.missing_by_var[k], "%s", name);
    }
    cr_assert_gt(rep.bad_code + rep.bad_number + rep.ragged + rep.duplicate, 0);
    free(out);
    free(path);
    tu_rmrf(dir);
    free(dir);
}

/* ---- the command line ----------------------------------------------------------- */

Test(synth, gz_output_is_the_plain_bytes_compressed) {
    char *dir = tu_tempdir();
    uint64_t seed = tu_seed();
    char *err = NULL;
    int rc = tu_run(NULL, &err, "synth --rows 30000 --seed %llu --threads 1 -o '%s/a.csv'",
                    (unsigned long long)seed, dir);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    rc = tu_run(NULL, &err, "synth --rows 30000 --seed %llu --threads 2 -o '%s/a.csv.gz'",
                (unsigned long long)seed, dir);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    rc = tu_run(NULL, &err, "synth --rows 30000 --seed %llu --threads 1 -o '%s/b.csv.gz'",
                (unsigned long long)seed, dir);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "gzip -t '%s/a.csv.gz' && gzip -dc '%s/a.csv.gz' | cmp -s - '%s/a.csv'"
             " && cmp -s '%s/a.csv.gz' '%s/b.csv.gz'",
             dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "gzip -t, decompressed bytes or thread independence: %s", cmd);
    struct stat a, b;
    char path[4096];
    snprintf(path, sizeof path, "%s/a.csv.gz", dir);
    stat(path, &b);
    snprintf(path, sizeof path, "%s/a.csv", dir);
    stat(path, &a);
    cr_assert_lt(b.st_size * 3, a.st_size, "compressed at least 3x");
    tu_rmrf(dir);
    free(dir);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

Test(synth, bad_usage_exits_1_with_one_line_and_leaves_nothing) {
    char *dir = tu_tempdir();
    char existing[4096];
    snprintf(existing, sizeof existing, "%s/old.csv", dir);
    cr_assert_eq(tu_write_file(existing, "precious\n", 9), 0);
    const char *cases[] = {
        "synth --rows -1 -o '%s/x.csv'",
        "synth --rows 10 --columns wide -o '%s/x.csv'",
        "synth --rows abc -o '%s/x.csv'",
        "synth --rows 10",
        "synth -o '%s/x.csv'",
        "synth --rows 10 --year 2019 -o '%s/x.csv'",
        "synth --rows 10 --invalid-rate 1.5 -o '%s/x.csv'",
        "synth --rows 20000001 -o '%s/x.csv'",
        "synth --rows 10 --bogus -o '%s/x.csv'",
        "synth --rows 10 -o '%s/no/such/dir/x.csv'",
        "synth --rows 10 -o '%s/old.csv'",
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char *out = NULL, *err = NULL;
        int rc = tu_run(&out, &err, cases[k], dir);
        cr_assert_eq(rc, 1, "'%s': exit %d, stderr: %s", cases[k], rc, err);
        cr_assert_eq(count_lines(err), 1, "'%s': want one line, got: %s", cases[k], err);
        cr_assert(!strncmp(err, "dpsgd synth: error: ", 20), "'%s': %s", cases[k], err);
        free(out);
        free(err);
    }
    char *old = tu_read_file(existing, NULL);
    cr_assert_str_eq(old, "precious\n", "refused output must stay as it was");
    free(old);
    /* nothing but old.csv in the directory: no x.csv, no temporary file */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = old.csv", dir);
    cr_assert_eq(system(cmd), 0, "files left behind in %s", dir);
    tu_rmrf(dir);
    free(dir);
}

Test(synth, force_replaces_and_zero_rows_is_the_header_alone) {
    char *dir = tu_tempdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/h.csv", dir);
    cr_assert_eq(tu_write_file(path, "old\n", 4), 0);
    char *err = NULL;
    int rc = tu_run(NULL, &err, "synth --rows 0 --columns minimal --force -o '%s'", path);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char *text = tu_read_file(path, NULL);
    cr_assert_str_eq(text, "RT,SERIALNO,SPORDER,PUMA,STATE,PWGTP,AGEP,CIT,COW,DEAR,DEYE,DREM,MAR,"
                           "MIG,MIL,RELSHIPP,SCHL,SEX,WKHP,ANC,DIS,ESP,ESR,HISP,NATIVITY,PINCP,"
                           "RAC1P\n");
    free(text);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = h.csv", dir);
    cr_assert_eq(system(cmd), 0, "a temporary file was left in %s", dir);
    /* the report line names the damage counts */
    rc = tu_run(NULL, &err, "synth --rows 5000 --invalid-rate 0.1 --force -o '%s'", path);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(err, "bad code") && strstr(err, "ragged") && strstr(err, "duplicate"), "%s",
              err);
    free(err);
    tu_rmrf(dir);
    free(dir);
}

Test(synth, library_refuses_bad_configs) {
    dp_synth_config cfg;
    dp_synth_config_default(&cfg);
    cfg.missing_rate = -0.1;
    cr_assert_eq(dp_synth_write("/tmp/never-written.csv", &cfg, NULL), DP_E_USAGE);
    dp_synth_config_default(&cfg);
    cfg.year = 2019;
    cr_assert_eq(dp_synth_write("/tmp/never-written.csv", &cfg, NULL), DP_E_UNSUPPORTED);
    cr_assert(strstr(dp_last_error(), "2023"), "%s", dp_last_error());
    dp_synth_config_default(&cfg);
    cr_assert_eq(dp_synth_write(NULL, &cfg, NULL), DP_E_USAGE);
    cr_assert_eq(dp_synth_write("x.csv", NULL, NULL), DP_E_USAGE);
    cr_assert(!tu_exists("/tmp/never-written.csv"));
}
