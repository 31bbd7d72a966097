/*
 * task.c: what prep predicts and from what. The PUMS tasks: `unemployment`
 * (the mission's: people in the labour force, ESR 1-5; label ESR = 3; ten
 * demographic features) and `employment` (folktables' ACSEmployment: label
 * ESR = 1 over every person, 16 features, RELP or, from 2019 on, RELSHIPP);
 * or a custom task from --target/--positive/--features. Also the record key
 * SERIALNO+SPORDER by which duplicated persons are found.
 */
#include <string.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

typedef struct builtin {
    const char *name, *target, *positive, *population, *population_text;
    const char *classes[2];
    const char *features[20]; /* "A|B": the first of A, B that the file has */
} builtin;

/* unemployment: ten features that describe who a person is, not what work
 * they do (docs/prep.md says why WKHP, COW and income are left out: they
 * describe the job, so they partly restate the label). */
static const builtin builtins[] = {
    {"unemployment",
     "ESR",
     "3",
     "1,2,3,4,5",
     "people in the labour force (ESR 1-5: employed, at work or not, civilian or armed forces, "
     "and unemployed)",
     {"employed", "unemployed"},
     {"AGEP", "SCHL", "MAR", "SEX", "RAC1P", "HISP", "DIS", "CIT", "NATIVITY", "MIL", NULL}},
    {"employment",
     "ESR",
     "1",
     NULL,
     "every person, as folktables' ACSEmployment (no age filter; a blank ESR, under 16, is "
     "label 0)",
     {"not employed", "employed"},
     {"AGEP", "SCHL", "MAR", "RELSHIPP|RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY",
      "DEAR", "DEYE", "DREM", "SEX", "RAC1P", NULL}},
};

/* RELP as the dictionaries up to 2018 define it (RELSHIPP replaced it in
 * 2019, so the compiled 2023 dictionary lacks it). */
static const dp_pums_code relp_codes[] = {
    {"00", "00", "Reference person", 0},
    {"01", "01", "Husband/wife", 0},
    {"02", "02", "Biological son or daughter", 0},
    {"03", "03", "Adopted son or daughter", 0},
    {"04", "04", "Stepson or stepdaughter", 0},
    {"05", "05", "Brother or sister", 0},
    {"06", "06", "Father or mother", 0},
    {"07", "07", "Grandchild", 0},
    {"08", "08", "Parent-in-law", 0},
    {"09", "09", "Son-in-law or daughter-in-law", 0},
    {"10", "10", "Other relative", 0},
    {"11", "11", "Roomer or boarder", 0},
    {"12", "12", "Housemate or roommate", 0},
    {"13", "13", "Unmarried partner", 0},
    {"14", "14", "Foster child", 0},
    {"15", "15", "Other nonrelative", 0},
    {"16", "16", "Institutionalized group quarters population", 0},
    {"17", "17", "Noninstitutionalized group quarters population", 0},
};
static const dp_pums_var relp_var = {"RELP",     'C', 2, "Relationship (dictionaries to 2018)",
                                     relp_codes, 18};

const dp_pums_var *prep_relp_var(void) {
    return &relp_var;
}

static const dp_pums_var *dictionary_var(const char *name) {
    const dp_pums_var *v = dp_pums_find(name);
    return v ? v : strcmp(name, "RELP") == 0 ? &relp_var : NULL;
}

static char *trimmed_dup(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    char *d = dp_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void prep_values_free(prep_value *v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        dp_free(v[i].text);
    dp_free(v);
}

dp_status prep_values_parse(const char *list, prep_value **out, size_t *n, const char *what) {
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *s = list; *s; s++)
        cap += *s == ',';
    prep_value *v = dp_calloc(cap, sizeof *v);
    if (!v) return dp_error(DP_E_NOMEM, "out of memory for %s", what);
    const char *s = list;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char *t = trimmed_dup(s, len);
        if (!t) {
            prep_values_free(v, *n);
            return dp_error(DP_E_NOMEM, "out of memory for %s", what);
        }
        v[*n].text = t;
        v[*n].is_int = prep_parse_int(t, strlen(t), 1, &v[*n].iv);
        (*n)++;
        if (!e) break;
        s = e + 1;
    }
    *out = v;
    return DP_OK;
}

static int match(const prep_value *v, size_t n, const char *p, size_t len, int is_int,
                 long long iv) {
    for (size_t k = 0; k < n; k++) {
        if (is_int && v[k].is_int) {
            if (v[k].iv == iv) return 1;
        } else if (strlen(v[k].text) == len && memcmp(v[k].text, p, len) == 0) {
            return 1;
        }
    }
    return 0;
}

int prep_task_label(const prep_task *t, const prep_na *na, const char *p, size_t len, int *label,
                    int *in_pop) {
    const dp_pums_var *var = t->target_var;
    if (len == 0 ? !(var && dp_pums_valid(var, p, 0)) : na->n && prep_is_na(na, p, len))
        return DP_PREP_MISSING_LABEL;
    long long iv = 0;
    int is_int = len && prep_parse_int(p, len, 1, &iv);
    if (var && !dp_pums_valid(var, p, len))
        return is_int ? DP_PREP_OUT_OF_RANGE : DP_PREP_NON_NUMERIC;
    /* a dictionary code matches by value ("03" is 3); other text exactly */
    if (!var) is_int = 0;
    *label = match(t->pos, t->npos, p, len, is_int, iv);
    *in_pop = t->pop ? match(t->pop, t->npop, p, len, is_int, iv) : 1;
    return DP_PREP_VALID;
}

int prep_task_key(const char *s, size_t slen, const char *p, size_t plen, uint64_t *key) {
    if (slen == 0 || plen == 0) return DP_PREP_MISSING_KEY;
    long long year, num, sp;
    if (slen != 13 || !prep_parse_int(s, 4, 0, &year) || !prep_parse_int(s + 6, 7, 0, &num) ||
        !((s[4] == 'H' && s[5] == 'U') || (s[4] == 'G' && s[5] == 'Q')))
        return DP_PREP_OUT_OF_RANGE;
    if (!prep_parse_int(p, plen, 0, &sp)) return DP_PREP_NON_NUMERIC;
    const dp_pums_var *v = dp_pums_find("SPORDER");
    if ((v && !dp_pums_valid(v, p, plen)) || sp < 1 || sp > 99) return DP_PREP_OUT_OF_RANGE;
    /* year (4 digits), HU/GQ, number (7 digits), person (2 digits): exact, no collisions */
    *key = (((uint64_t)year * 2 + (s[4] == 'G')) * 10000000u + (uint64_t)num) * 100u + (uint64_t)sp;
    return DP_PREP_VALID;
}

void prep_task_free(prep_task *t) {
    if (!t) return;
    dp_free(t->name);
    dp_free(t->target);
    prep_values_free(t->pos, t->npos);
    prep_values_free(t->pop, t->npop);
    dp_free(t->population);
    dp_free(t->classes[0]);
    dp_free(t->classes[1]);
    for (size_t i = 0; i < t->nfeat; i++)
        dp_free(t->features[i]);
    dp_free(t->features);
    dp_free(t->feature_vars);
    memset(t, 0, sizeof *t);
}

static int find_col(char **cols, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(cols[i], name) == 0) return (int)i;
    return -1;
}

static dp_status add_feature(prep_task *t, const char *name, const dp_prep_config *c) {
    for (size_t i = 0; i < t->nfeat; i++)
        if (strcmp(t->features[i], name) == 0)
            return dp_error(DP_E_USAGE, "--features: the column '%s' is listed twice", name);
    if (strcmp(name, t->target) == 0)
        return dp_error(DP_E_USAGE, "--features: '%s' is the target; it cannot be a feature", name);
    char **f = dp_realloc(t->features, (t->nfeat + 1) * sizeof *f);
    if (!f) return dp_error(DP_E_NOMEM, "out of memory for the task");
    t->features = f;
    const dp_pums_var **v = dp_realloc(t->feature_vars, (t->nfeat + 1) * sizeof *v);
    if (!v) return dp_error(DP_E_NOMEM, "out of memory for the task");
    t->feature_vars = v;
    if (!(t->features[t->nfeat] = dp_strdup(name)))
        return dp_error(DP_E_NOMEM, "out of memory for the task");
    t->feature_vars[t->nfeat] = c->dictionary ? dictionary_var(name) : NULL;
    t->nfeat++;
    return DP_OK;
}

static dp_status set_str(char **dst, const char *s) {
    *dst = dp_strdup(s);
    return *dst ? DP_OK : dp_error(DP_E_NOMEM, "out of memory for the task");
}

static dp_status check_values(const prep_task *t, const prep_value *v, size_t n, const char *opt) {
    for (size_t k = 0; t->target_var && k < n; k++)
        if (!dp_pums_valid(t->target_var, v[k].text, strlen(v[k].text)))
            return dp_error(DP_E_USAGE,
                            "%s: '%s' is not a code of %s in the PUMS dictionary (expected one "
                            "of its codes, or --dictionary none)",
                            opt, v[k].text, t->target);
    return DP_OK;
}

/* Build the task; `where` names the header in messages ("persons.csv:1"). */
dp_status prep_task_build(prep_task *t, const dp_prep_config *c, char **cols, size_t ncols,
                          const char *where) {
    memset(t, 0, sizeof *t);
    const builtin *b = NULL;
    int custom = c->target || c->features || c->positive;
    if (c->task) {
        for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
            if (strcmp(c->task, builtins[i].name) == 0) b = &builtins[i];
        if (!b)
            return dp_error(DP_E_USAGE,
                            "--task '%s': unknown (expected unemployment or employment, or a "
                            "custom task with --target, --positive and --features)",
                            c->task);
        if (custom)
            return dp_error(DP_E_USAGE,
                            "--task %s cannot be combined with --target, --positive "
                            "or --features (they define a custom task)",
                            c->task);
    } else if (!custom) {
        b = &builtins[0];
    } else if (!c->target || !c->positive || !c->features) {
        return dp_error(DP_E_USAGE,
                        "a custom task needs --target, --positive and --features "
                        "(missing %s)",
                        !c->target     ? "--target"
                        : !c->positive ? "--positive"
                                       : "--features");
    }
    dp_status st;
    char missing[1024] = "";
    size_t nmissing = 0;
#define NOTE_MISSING(name)                                                                         \
    do {                                                                                           \
        size_t u_ = strlen(missing);                                                               \
        snprintf(missing + u_, sizeof missing - u_, "%s'%s'", nmissing++ ? ", " : "", name);       \
    } while (0)
    if (b) {
        if ((st = set_str(&t->name, b->name)) || (st = set_str(&t->target, b->target)) ||
            (st = set_str(&t->population, b->population_text)) ||
            (st = set_str(&t->classes[0], b->classes[0])) ||
            (st = set_str(&t->classes[1], b->classes[1])) ||
            (st = prep_values_parse(b->positive, &t->pos, &t->npos, "the task")))
            goto fail;
        if (b->population && (st = prep_values_parse(b->population, &t->pop, &t->npop, "the task")))
            goto fail;
        t->target_var = dp_pums_find(b->target);
        for (int i = 0; b->features[i]; i++) {
            char alt[64];
            snprintf(alt, sizeof alt, "%s", b->features[i]);
            char *second = strchr(alt, '|');
            if (second) *second++ = '\0';
            const char *name = find_col(cols, ncols, alt) >= 0 || !second ? alt : second;
            if (find_col(cols, ncols, name) < 0) {
                char both[80];
                snprintf(both, sizeof both, second ? "%s (or %s)" : "%s", alt, second);
                NOTE_MISSING(both);
            }
            dp_prep_config pums = *c;
            pums.dictionary = 1;
            if ((st = add_feature(t, name, &pums))) goto fail;
        }
    } else {
        if ((st = set_str(&t->name, "custom")) || (st = set_str(&t->target, c->target)) ||
            (st = prep_values_parse(c->positive, &t->pos, &t->npos, "--positive")))
            goto fail;
        if (c->population &&
            (st = prep_values_parse(c->population, &t->pop, &t->npop, "--population")))
            goto fail;
        t->target_var = c->dictionary ? dictionary_var(c->target) : NULL;
        char pos[512] = "";
        for (size_t k = 0; k < t->npos; k++) {
            size_t u = strlen(pos);
            snprintf(pos + u, sizeof pos - u, "%s%s", k ? "|" : "", t->pos[k].text);
        }
        char neg[600];
        snprintf(neg, sizeof neg, "not %s", pos);
        if ((st = set_str(&t->classes[0], neg)) || (st = set_str(&t->classes[1], pos))) goto fail;
        char popt[700];
        if (c->population)
            snprintf(popt, sizeof popt, "records whose %s is one of %s", c->target, c->population);
        else
            snprintf(popt, sizeof popt, "every record with a valid %s", c->target);
        if ((st = set_str(&t->population, popt))) goto fail;
        if ((st = check_values(t, t->pos, t->npos, "--positive")) ||
            (st = check_values(t, t->pop, t->npop, "--population")))
            goto fail;
        const char *s = c->features;
        for (;;) {
            const char *e = strchr(s, ',');
            char *name = trimmed_dup(s, e ? (size_t)(e - s) : strlen(s));
            if (!name) {
                st = dp_error(DP_E_NOMEM, "out of memory for the task");
                goto fail;
            }
            if (!*name) {
                dp_free(name);
                st = dp_error(DP_E_USAGE, "--features '%s': an empty column name", c->features);
                goto fail;
            }
            if (find_col(cols, ncols, name) < 0) NOTE_MISSING(name);
            st = add_feature(t, name, c);
            dp_free(name);
            if (st) goto fail;
            if (!e) break;
            s = e + 1;
        }
    }
    if (find_col(cols, ncols, t->target) < 0) {
        /* the target first in the message */
        char rest[1024];
        snprintf(rest, sizeof rest, "%s", missing);
        nmissing++;
        snprintf(missing, sizeof missing, "'%.64s'%s%.900s", t->target, *rest ? ", " : "", rest);
    }
    if (nmissing) {
        char have[600] = "";
        for (size_t i = 0; i < ncols && strlen(have) < 400; i++) {
            size_t u = strlen(have);
            snprintf(have + u, sizeof have - u, "%s%s", i ? "," : "", cols[i]);
        }
        if (strlen(have) >= 400) strcat(have, ",...");
        st = dp_error(DP_E_SCHEMA,
                      "%s: missing column%s %s required by task %s (expected in the header; it "
                      "has %zu: %s)",
                      where, nmissing > 1 ? "s" : "", missing, t->name, ncols, have);
        goto fail;
    }
    t->key = find_col(cols, ncols, "SERIALNO") >= 0 && find_col(cols, ncols, "SPORDER") >= 0 &&
             (b || c->dictionary);
    return DP_OK;
fail:
    prep_task_free(t);
    return st;
#undef NOTE_MISSING
}
