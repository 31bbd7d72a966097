/*
 * synth_emit.c: from persons to CSV lines. The column plan decides, once per
 * file, how each dictionary column is written: from a model slot (zero-padded
 * to the width of its codes, as the real files write "01" or "00101"), or for
 * a column the model does not hold, a code drawn from the dictionary's own
 * list behind a gate that leaves it blank exactly where its N/A rule applies
 * (under an age, not a worker, never married, ...). Then, per record, the
 * injected damage: a bad code, a non-number, a ragged line, a duplicate, or
 * an extra blank, each counted in the line records the driver sums.
 */
#include <ctype.h>
#include <string.h>
#include "core/dp_internal.h"
#include "data/synth_internal.h"

enum { SC_GENERIC, SC_SLOT, SC_RT, SC_SERIALNO, SC_SPORDER };

/* When a generic column is N/A. */
enum {
    G_NONE,         /* never blank */
    G_AGE,          /* blank iff AGEP < gate_arg */
    G_AGE_RANDOM,   /* blank if AGEP < gate_arg, else with p_blank */
    G_RANDOM,       /* blank with p_blank */
    G_GQ_RANDOM,    /* blank in group quarters, else with p_blank */
    G_AT_WORK,      /* blank unless ESR is 1 or 4 (a worker at work), then p_blank */
    G_NOT_AT_WORK,  /* blank under 16 and for those at work */
    G_MOVER,        /* blank unless MIG is 2 or 3 */
    G_DEGREE,       /* blank unless SCHL >= 21 (bachelor's), then p_blank */
    G_VETERAN,      /* blank unless MIL is 1 or 2 (active duty now or before), then p_blank */
    G_EVER_MARRIED, /* blank under 15 and for the never married */
    G_COW,          /* blank iff COW is; COW 9 takes the column's "never worked" code */
    G_OWN_CHILD,    /* blank iff ESP is */
    G_OTHER_LANG,   /* blank unless LANX == 1 */
    G_SLOT_EQ,      /* blank iff slot gate_arg equals gate_val */
};

/* Model slots by column name. */
static const struct {
    const char *name;
    int slot;
} slot_names[] = {
    {"DIVISION", S_DIVISION},
    {"PUMA", S_PUMA},
    {"REGION", S_REGION},
    {"STATE", S_STATE},
    {"PWGTP", S_PWGTP},
    {"AGEP", S_AGEP},
    {"CIT", S_CIT},
    {"CITWP", S_CITWP},
    {"COW", S_COW},
    {"DDRS", S_DDRS},
    {"DEAR", S_DEAR},
    {"DEYE", S_DEYE},
    {"DOUT", S_DOUT},
    {"DPHY", S_DPHY},
    {"DREM", S_DREM},
    {"FER", S_FER},
    {"HINS1", S_HINS1},
    {"HINS2", S_HINS2},
    {"HINS3", S_HINS3},
    {"HINS4", S_HINS4},
    {"HINS5", S_HINS5},
    {"HINS6", S_HINS6},
    {"HINS7", S_HINS7},
    {"INTP", S_INTP},
    {"LANX", S_LANX},
    {"MAR", S_MAR},
    {"MIG", S_MIG},
    {"MIL", S_MIL},
    {"OIP", S_OIP},
    {"PAP", S_PAP},
    {"RELSHIPP", S_RELSHIPP},
    {"RETP", S_RETP},
    {"SCH", S_SCH},
    {"SCHG", S_SCHG},
    {"SCHL", S_SCHL},
    {"SEMP", S_SEMP},
    {"SEX", S_SEX},
    {"SSIP", S_SSIP},
    {"SSP", S_SSP},
    {"WAGP", S_WAGP},
    {"WKHP", S_WKHP},
    {"WKL", S_WKL},
    {"WKWN", S_WKWN},
    {"WRK", S_WRK},
    {"YOEP", S_YOEP},
    {"ANC", S_ANC},
    {"DECADE", S_DECADE},
    {"DIS", S_DIS},
    {"ESP", S_ESP},
    {"ESR", S_ESR},
    {"HICOV", S_HICOV},
    {"HISP", S_HISP},
    {"MSP", S_MSP},
    {"NATIVITY", S_NATIVITY},
    {"OC", S_OC},
    {"PAOC", S_PAOC},
    {"PERNP", S_PERNP},
    {"PINCP", S_PINCP},
    {"POBP", S_POBP},
    {"PRIVCOV", S_PRIVCOV},
    {"PUBCOV", S_PUBCOV},
    {"RAC1P", S_RAC1P},
    {"RACAIAN", S_RACAIAN},
    {"RACASN", S_RACASN},
    {"RACBLK", S_RACBLK},
    {"RACNH", S_RACNH},
    {"RACNUM", S_RACNUM},
    {"RACPI", S_RACPI},
    {"RACSOR", S_RACSOR},
    {"RACWHT", S_RACWHT},
    {"RC", S_RC},
    {"WAOB", S_WAOB},
};

/* Gates of the generic columns whose N/A rule is not only an age. */
static const struct {
    const char *name;
    int gate, arg, val;
    double p_blank;
} gate_names[] = {
    {"DRAT", G_VETERAN, 0, 0, .75},
    {"DRATX", G_VETERAN, 0, 0, 0},
    {"VPS", G_VETERAN, 0, 0, 0},
    {"MLPA", G_VETERAN, 0, 0, 0},
    {"MLPB", G_VETERAN, 0, 0, 0},
    {"MLPCD", G_VETERAN, 0, 0, 0},
    {"MLPE", G_VETERAN, 0, 0, 0},
    {"MLPFG", G_VETERAN, 0, 0, 0},
    {"MLPH", G_VETERAN, 0, 0, 0},
    {"MLPIK", G_VETERAN, 0, 0, 0},
    {"MLPJ", G_VETERAN, 0, 0, 0},
    {"ENG", G_OTHER_LANG, 0, 0, 0},
    {"LANP", G_OTHER_LANG, 0, 0, 0},
    {"GCL", G_AGE_RANDOM, 30, 0, 0},
    {"GCM", G_AGE_RANDOM, 30, 0, .95},
    {"GCR", G_AGE_RANDOM, 30, 0, .95},
    {"JWMNP", G_AT_WORK, 0, 0, .15},
    {"JWRIP", G_AT_WORK, 0, 0, .25},
    {"JWAP", G_AT_WORK, 0, 0, .15},
    {"JWDP", G_AT_WORK, 0, 0, .15},
    {"DRIVESP", G_AT_WORK, 0, 0, .25},
    {"JWTRNS", G_AT_WORK, 0, 0, 0},
    {"POWPUMA", G_AT_WORK, 0, 0, 0},
    {"POWSP", G_AT_WORK, 0, 0, 0},
    {"MIGPUMA", G_MOVER, 0, 0, 0},
    {"MIGSP", G_MOVER, 0, 0, 0},
    {"NWAB", G_NOT_AT_WORK, 0, 0, 0},
    {"NWAV", G_NOT_AT_WORK, 0, 0, 0},
    {"NWLA", G_NOT_AT_WORK, 0, 0, 0},
    {"NWLK", G_NOT_AT_WORK, 0, 0, 0},
    {"NWRE", G_NOT_AT_WORK, 0, 0, 0},
    {"FOD1P", G_DEGREE, 0, 0, 0},
    {"FOD2P", G_DEGREE, 0, 0, .85},
    {"SCIENGP", G_DEGREE, 0, 0, 0},
    {"SCIENGRLP", G_DEGREE, 0, 0, 0},
    {"INDP", G_COW, 0, 0, 0},
    {"OCCP", G_COW, 0, 0, 0},
    {"NAICSP", G_COW, 0, 0, 0},
    {"SOCP", G_COW, 0, 0, 0},
    {"NOP", G_OWN_CHILD, 0, 0, 0},
    {"MARHD", G_EVER_MARRIED, 0, 0, 0},
    {"MARHM", G_EVER_MARRIED, 0, 0, 0},
    {"MARHT", G_EVER_MARRIED, 0, 0, 0},
    {"MARHW", G_EVER_MARRIED, 0, 0, 0},
    {"MARHYP", G_EVER_MARRIED, 0, 0, 0},
    {"FHINS3C", G_SLOT_EQ, S_HINS3, 2, 0},
    {"FHINS4C", G_SLOT_EQ, S_HINS4, 2, 0},
    {"FHINS5C", G_SLOT_EQ, S_HINS5, 2, 0},
    {"SFN", G_GQ_RANDOM, 0, 0, .9},
    {"SFR", G_GQ_RANDOM, 0, 0, .9},
    {"POVPIP", G_RANDOM, 0, 0, .01},
};

/* The minimal column set (written in dictionary order). */
static const char *const minimal_names[] = {
    "RT",   "SERIALNO", "SPORDER", "PUMA", "STATE", "PWGTP", "AGEP",     "CIT",   "COW",
    "DEAR", "DEYE",     "DREM",    "MAR",  "MIG",   "MIL",   "RELSHIPP", "SCHL",  "SEX",
    "WKHP", "ANC",      "DIS",     "ESP",  "ESR",   "HISP",  "NATIVITY", "PINCP", "RAC1P",
};

/* Columns that receive injected damage: the demographic core every task reads. */
static const char *const defect_names[] = {"AGEP", "SEX",   "SCHL", "MAR",
                                           "ESR",  "RAC1P", "CIT",  "DIS"};
/* Columns that receive an injected blank: never N/A in the dictionary. */
static const char *const missing_names[] = {"AGEP",     "SEX", "MAR",  "RAC1P", "HISP", "CIT",
                                            "NATIVITY", "DIS", "DEAR", "DEYE",  "ANC",  "RELSHIPP"};
/* Non-numbers as files re-saved by hand contain them. */
static const char *const junk[] = {"NA", "?", "x", "1.5", "N/A", "abc", "2a", "null"};
#define NJUNK ((int)(sizeof junk / sizeof junk[0]))

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Per generic column: the non-blank code rows it draws from. */
typedef struct generic_codes {
    const dp_pums_code **rows;
    int n;
} generic_codes;

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

static int in_list(const char *name, const char *const *list, int n) {
    for (int k = 0; k < n; k++)
        if (!strcmp(name, list[k])) return 1;
    return 0;
}

/* "N/A (less than 16 years old)" -> 16; 0 if no age limit is named. */
static int label_age(const char *label, int *only_age) {
    const char *s = label;
    for (; *s; s++)
        if (!strncasecmp(s, "less than ", 10) && isdigit((unsigned char)s[10])) break;
    *only_age = 0;
    if (!*s) return 0;
    int age = atoi(s + 10);
    *only_age = !strchr(label, '/') && !strchr(label, ';') && !strchr(label, ',');
    return age;
}

static void plan_generic(synth_col *c) {
    const dp_pums_var *v = c->var;
    const char *blank_label = NULL;
    int n01 = 0, nonblank = 0;
    for (int k = 0; k < v->n_codes; k++) {
        if (v->codes[k].blank) {
            blank_label = v->codes[k].label;
            continue;
        }
        nonblank++;
        if (!strcmp(v->codes[k].lo, "0") || !strcmp(v->codes[k].lo, "1")) n01++;
    }
    c->flag01 = v->name[0] == 'F' && nonblank == 2 && n01 == 2;
    c->gate = G_NONE;
    for (int k = 0; k < N_OF(gate_names); k++) {
        if (!strcmp(v->name, gate_names[k].name)) {
            c->gate = gate_names[k].gate;
            c->gate_arg = gate_names[k].arg;
            c->gate_val = gate_names[k].val;
            c->p_blank = gate_names[k].p_blank;
            break;
        }
    }
    if (c->gate == G_COW) {
        for (int k = 0; k < v->n_codes; k++)
            if (strstr(v->codes[k].label, "Unemployed, With No Work Experience"))
                c->special = v->codes[k].lo;
    }
    if (c->gate != G_NONE || !blank_label) return;
    /* not named above: read the N/A rule from the dictionary's label */
    int only_age, age = label_age(blank_label, &only_age);
    if (age > 0) {
        c->gate = only_age ? G_AGE : G_AGE_RANDOM;
        c->gate_arg = age;
        c->p_blank = only_age ? 0 : 0.5;
    } else if (strstr(blank_label, "GQ")) {
        c->gate = G_GQ_RANDOM;
        c->p_blank = 0.5;
    } else {
        c->gate = G_RANDOM;
        c->p_blank = 0.5;
    }
}

/* Integers outside the code list of `v`, for injected bad codes. */
static void plan_bad_ints(synth_col *c) {
    const dp_pums_var *v = c->var;
    long long maxv = 0;
    for (int k = 0; k < v->n_codes; k++)
        if (!v->codes[k].blank && all_digits(v->codes[k].hi)) {
            long long x = atoll(v->codes[k].hi);
            if (x > maxv) maxv = x;
        }
    long long cand[6] = {0, maxv + 1, maxv + 2, 9, 99, -1};
    c->n_bad_ints = 0;
    for (int k = 0; k < 6 && c->n_bad_ints < 4; k++) {
        char s[32];
        int n = snprintf(s, sizeof s, "%lld", cand[k]);
        int dup = 0;
        for (int j = 0; j < c->n_bad_ints; j++)
            dup |= c->bad_ints[j] == cand[k];
        if (!dup && !dp_pums_valid(v, s, (size_t)n)) c->bad_ints[c->n_bad_ints++] = (int)cand[k];
    }
}

dp_status synth_plan_init(synth_plan *plan, const dp_synth_config *cfg) {
    memset(plan, 0, sizeof *plan);
    DP_TRY(synth_tables_init(&plan->tables));
    size_t nv = dp_pums_person_nvars();
    plan->cols = dp_calloc(nv, sizeof *plan->cols);
    plan->generic = dp_calloc(nv, sizeof *plan->generic);
    if (!plan->cols || !plan->generic) {
        synth_plan_free(plan);
        return dp_error(DP_E_NOMEM, "out of memory for the column plan");
    }
    plan->seed = cfg->seed;
    plan->invalid_rate = cfg->invalid_rate;
    plan->missing_rate = cfg->missing_rate;
    plan->year = dp_pums_year();
    size_t header_len = 0, max_row = 64;
    for (size_t i = 0; i < nv; i++) {
        const dp_pums_var *v = dp_pums_person_var(i);
        if (cfg->columns == DP_SYNTH_MINIMAL &&
            !in_list(v->name, minimal_names, N_OF(minimal_names)))
            continue;
        int ci = plan->ncols++;
        synth_col *c = &plan->cols[ci];
        c->var = v;
        c->dict_index = (int)i;
        c->slot = -1;
        if (!strcmp(v->name, "RT"))
            c->kind = SC_RT;
        else if (!strcmp(v->name, "SERIALNO"))
            c->kind = SC_SERIALNO;
        else if (!strcmp(v->name, "SPORDER"))
            c->kind = SC_SPORDER;
        else if (!strncmp(v->name, "PWGTP", 5) && v->name[5]) {
            c->kind = SC_SLOT;
            c->slot = S_PWGTP1 + atoi(v->name + 5) - 1;
        } else {
            for (int k = 0; k < N_OF(slot_names); k++)
                if (!strcmp(v->name, slot_names[k].name)) c->slot = slot_names[k].slot;
            c->kind = c->slot >= 0 ? SC_SLOT : SC_GENERIC;
        }
        /* C codes made of digits are written zero-padded to their width */
        for (int k = 0; k < v->n_codes; k++)
            if (!v->codes[k].blank) {
                if (v->type == 'C' && all_digits(v->codes[k].lo))
                    c->pad = (int)strlen(v->codes[k].lo);
                break;
            }
        if (c->kind == SC_GENERIC) {
            plan_generic(c);
            generic_codes *g = &plan->generic[ci];
            g->rows = dp_calloc((size_t)v->n_codes + 1, sizeof *g->rows);
            if (!g->rows) {
                synth_plan_free(plan);
                return dp_error(DP_E_NOMEM, "out of memory for the column plan");
            }
            for (int k = 0; k < v->n_codes; k++)
                if (!v->codes[k].blank && !(c->special && !strcmp(v->codes[k].lo, c->special)))
                    g->rows[g->n++] = &v->codes[k];
            if (g->n == 0) {
                synth_plan_free(plan);
                return dp_error(DP_E_INTERNAL, "%s has no code to draw", v->name);
            }
        }
        if (in_list(v->name, defect_names, N_OF(defect_names))) {
            plan_bad_ints(c);
            if (plan->n_defect_cols < 16) plan->defect_cols[plan->n_defect_cols++] = ci;
        }
        if (in_list(v->name, missing_names, N_OF(missing_names))) {
            if (dp_pums_valid(v, "", 0)) {
                synth_plan_free(plan);
                return dp_error(DP_E_INTERNAL, "%s has an N/A row; cannot inject a missing value",
                                v->name);
            }
            if (plan->n_missing_cols < 16) plan->missing_cols[plan->n_missing_cols++] = ci;
        }
        header_len += strlen(v->name) + 1;
        max_row += (size_t)v->width + 2;
    }
    if (plan->n_defect_cols == 0 || plan->n_missing_cols == 0) {
        synth_plan_free(plan);
        return dp_error(DP_E_INTERNAL, "no column can take injected damage");
    }
    plan->max_row = max_row + 32; /* a non-number or an extra field */
    plan->header = dp_malloc(header_len + 1);
    if (!plan->header) {
        synth_plan_free(plan);
        return dp_error(DP_E_NOMEM, "out of memory for the header");
    }
    char *o = plan->header;
    for (int ci = 0; ci < plan->ncols; ci++) {
        size_t n = strlen(plan->cols[ci].var->name);
        memcpy(o, plan->cols[ci].var->name, n);
        o += n;
        *o++ = ci + 1 < plan->ncols ? ',' : '\n';
    }
    plan->header_len = (size_t)(o - plan->header);
    return DP_OK;
}

void synth_plan_free(synth_plan *plan) {
    if (plan->generic)
        for (int ci = 0; ci < plan->ncols; ci++)
            dp_free(plan->generic[ci].rows);
    dp_free(plan->generic);
    dp_free(plan->cols);
    dp_free(plan->header);
    memset(plan, 0, sizeof *plan);
}

/* ---- formatting ----------------------------------------------------------- */

/* Decimal digits of v, at least `pad` of them (zero-filled). Most fields are
 * one-digit codes, so they take the first branch. */
static char *put_int(char *o, long long v, int pad) {
    if (v >= 0 && v < 10 && pad <= 1) {
        *o++ = (char)('0' + v);
        return o;
    }
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930"
                                   "31323334353637383940414243444546474849505152535455565758596061"
                                   "62636465666768697071727374757677787980818283848586878889909192"
                                   "93949596979899";
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100);
        u /= 100;
        tmp[n++] = pairs[2 * d + 1];
        tmp[n++] = pairs[2 * d];
    }
    if (u >= 10) {
        tmp[n++] = pairs[2 * u + 1];
        tmp[n++] = pairs[2 * u];
    } else {
        tmp[n++] = (char)('0' + u);
    }
    if (v < 0) *o++ = '-';
    for (int k = n; k < pad; k++)
        *o++ = '0';
    while (n)
        *o++ = tmp[--n];
    return o;
}

static char *put_str(char *o, const char *s) {
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

/* A value from one code row: the code itself, or a number in the range
 * (uniform over short ranges, log-uniform over long ones such as dollars). */
static char *put_code_row(char *o, const dp_pums_code *row, const synth_col *c, synth_rng *r) {
    if (row->lo == row->hi || !strcmp(row->lo, row->hi)) return put_str(o, row->lo);
    long long lo = atoll(row->lo), hi = atoll(row->hi), x;
    if (hi - lo < 200) {
        x = lo + (long long)synth_below(r, (uint32_t)(hi - lo + 1));
    } else if (lo >= 1) {
        x = (long long)(lo * exp(synth_u(r) * log((double)hi / (double)lo)));
    } else if (hi <= -1) {
        x = -(long long)(-hi * exp(synth_u(r) * log((double)lo / (double)hi)));
    } else {
        x = lo + (long long)(synth_u(r) * (double)(hi - lo + 1));
    }
    if (x < lo) x = lo;
    if (x > hi) x = hi;
    return put_int(o, x, c->pad ? (int)strlen(row->lo) : 0);
}

static int gate_blank(const synth_col *c, const synth_person *p, synth_rng *r) {
    const int *v = p->v;
    switch (c->gate) {
    case G_NONE:
        return 0;
    case G_AGE:
        return v[S_AGEP] < c->gate_arg;
    case G_AGE_RANDOM:
        return v[S_AGEP] < c->gate_arg || synth_bern(r, c->p_blank);
    case G_RANDOM:
        return synth_bern(r, c->p_blank);
    case G_GQ_RANDOM:
        return p->gq || synth_bern(r, c->p_blank);
    case G_AT_WORK:
        return !(v[S_ESR] == 1 || v[S_ESR] == 4) || synth_bern(r, c->p_blank);
    case G_NOT_AT_WORK:
        return v[S_AGEP] < 16 || v[S_ESR] == 1 || v[S_ESR] == 4;
    case G_MOVER:
        return !(v[S_MIG] == 2 || v[S_MIG] == 3);
    case G_DEGREE:
        return v[S_SCHL] == SYNTH_BLANK || v[S_SCHL] < 21 || synth_bern(r, c->p_blank);
    case G_VETERAN:
        return !(v[S_MIL] == 1 || v[S_MIL] == 2) || synth_bern(r, c->p_blank);
    case G_EVER_MARRIED:
        return v[S_AGEP] < 15 || v[S_MAR] == 5;
    case G_COW:
        return v[S_COW] == SYNTH_BLANK;
    case G_OWN_CHILD:
        return v[S_ESP] == SYNTH_BLANK;
    case G_OTHER_LANG:
        return v[S_LANX] != 1;
    case G_SLOT_EQ:
        return v[c->gate_arg] == c->gate_val;
    }
    return 0;
}

static char *put_field(const synth_plan *pl, int ci, const synth_person *p, int sporder,
                       const char *serial, synth_rng *r, char *o) {
    const synth_col *c = &pl->cols[ci];
    switch (c->kind) {
    case SC_RT:
        *o++ = 'P';
        return o;
    case SC_SERIALNO:
        return put_str(o, serial);
    case SC_SPORDER:
        return put_int(o, sporder, 0);
    case SC_SLOT: {
        int x = p->v[c->slot];
        return x == SYNTH_BLANK ? o : put_int(o, x, c->pad);
    }
    default:
        break;
    }
    if (gate_blank(c, p, r)) return o;
    if (c->gate == G_COW && p->v[S_COW] == 9 && c->special) return put_str(o, c->special);
    if (c->flag01) {
        *o++ = synth_bern(r, 0.04) ? '1' : '0';
        return o;
    }
    const generic_codes *g = &pl->generic[ci];
    return put_code_row(o, g->rows[synth_below(r, (uint32_t)g->n)], c, r);
}

/* One person's line; `kind` and `target` say what damage it carries. */
static char *put_line(const synth_plan *pl, const synth_person *p, int sporder, const char *serial,
                      synth_rng *r, synth_rng *d, int kind, int target, char *o) {
    int nfields = pl->ncols, extra = 0;
    if (kind == SR_RAGGED) {
        if (synth_bern(d, 0.5))
            nfields--; /* a field too few */
        else
            extra = 1; /* a field too many */
    }
    for (int ci = 0; ci < nfields; ci++) {
        if (ci == target && kind == SR_MISSING) {
            /* the injected blank */
        } else if (ci == target && kind == SR_BAD_CODE) {
            const synth_col *c = &pl->cols[ci];
            o = put_int(o, c->bad_ints[synth_below(d, (uint32_t)c->n_bad_ints)], 0);
        } else if (ci == target && kind == SR_BAD_NUMBER) {
            o = put_str(o, junk[synth_below(d, NJUNK)]);
        } else {
            o = put_field(pl, ci, p, sporder, serial, r, o);
        }
        *o++ = ',';
    }
    if (extra) {
        o = put_int(o, synth_below(d, 10), 0);
        *o++ = ',';
    }
    o[-1] = '\n';
    return o;
}

void synth_emit_household(const synth_plan *pl, const synth_household *hh, char *buf, size_t *len,
                          synth_line *lines, size_t *nlines) {
    char serial[16];
    snprintf(serial, sizeof serial, "%04d%s%07llu", pl->year, hh->gq ? "GQ" : "HU",
             (unsigned long long)(hh->index + 1));
    char *o = buf + *len;
    size_t dup_start[SYNTH_MAX_PERSONS], dup_len[SYNTH_MAX_PERSONS];
    int dup_esr[SYNTH_MAX_PERSONS], ndup = 0;
    for (int k = 0; k < hh->n; k++) {
        const synth_person *p = &hh->p[k];
        /* field values and damage come from separate streams, so a person's
         * line is the same whatever the damage rates unless it is damaged */
        synth_rng r = synth_stream(pl->seed, hh->index, 1000 + (uint64_t)k);
        synth_rng d = synth_stream(pl->seed, hh->index, 2000 + (uint64_t)k);
        int kind = SR_CLEAN, target = -1;
        double u_invalid = synth_u(&d), u_missing = synth_u(&d);
        if (u_invalid < pl->invalid_rate) {
            kind = SR_BAD_CODE + (int)synth_below(&d, 4);
            if (kind == SR_BAD_CODE || kind == SR_BAD_NUMBER)
                target = pl->defect_cols[synth_below(&d, (uint32_t)pl->n_defect_cols)];
        } else if (u_missing < pl->missing_rate) {
            kind = SR_MISSING;
            target = pl->missing_cols[synth_below(&d, (uint32_t)pl->n_missing_cols)];
        }
        char *start = o;
        o = put_line(pl, p, k + 1, serial, &r, &d, kind == SR_DUPLICATE ? SR_CLEAN : kind, target,
                     o);
        int esr = p->v[S_ESR] == SYNTH_BLANK ? 0 : p->v[S_ESR];
        if (kind == SR_DUPLICATE) {
            dup_start[ndup] = (size_t)(start - buf);
            dup_len[ndup] = (size_t)(o - start);
            dup_esr[ndup++] = esr;
            kind = SR_CLEAN;
        }
        synth_line *ln = &lines[(*nlines)++];
        ln->end = (uint32_t)(o - buf);
        ln->kind = (uint8_t)kind;
        ln->esr = (uint8_t)esr;
        ln->missing = (int16_t)(kind == SR_MISSING ? pl->cols[target].dict_index : -1);
        ln->first = k == 0;
    }
    /* duplicates: exact copies at the end of the household, as when two
     * extracts that overlap are concatenated */
    for (int d = 0; d < ndup; d++) {
        memcpy(o, buf + dup_start[d], dup_len[d]);
        o += dup_len[d];
        synth_line *ln = &lines[(*nlines)++];
        ln->end = (uint32_t)(o - buf);
        ln->kind = SR_DUPLICATE;
        ln->esr = (uint8_t)dup_esr[d];
        ln->missing = -1;
        ln->first = 0;
    }
    *len = (size_t)(o - buf);
}
