/*
 * synth_model.c: the generative model behind `dpsgd synth`: one household at
 * a time, from its counter-based random stream, a set of persons with the
 * joint structure of the ACS person file (docs/synth.md states the model and
 * every parameter; the numbers below are rounded US figures for 2019-2023
 * from the ACS and CPS, chosen to look right, not estimated from any file).
 *
 * Order of the draws (each step may use the ones before it):
 *   household: state, PUMA, housing unit or group quarters, size, roles, ages
 *   person:    sex, race and Hispanic origin (shared within the household),
 *              nativity and citizenship, disability (rises with age),
 *              education (by age, cohort, group, household), school
 *              enrolment, marital status (by role and age), military service
 *   labour:    participation (logistic in age x sex, education, disability,
 *              enrolment, young children), unemployment among the labour
 *              force (logistic in age, education, disability, sex, race,
 *              Hispanic origin, citizenship, marital status), work history,
 *              hours, class of worker, income
 *   family:    ESP, PAOC, FER from the parents' and children's records
 */
#include <string.h>
#include "core/dp_internal.h"
#include "data/synth_internal.h"

#define BL SYNTH_BLANK

/* ---- geography ---------------------------------------------------------- */

/* 50 states and DC: FIPS code, Census division, 2023 population in 10,000s. */
static const struct {
    unsigned char fips, division;
    unsigned short pop;
} states[] = {
    {1, 6, 511},  {2, 9, 73},    {4, 8, 743},   {5, 7, 307},   {6, 9, 3897},  {8, 8, 588},
    {9, 1, 362},  {10, 5, 103},  {11, 5, 68},   {12, 5, 2261}, {13, 5, 1103}, {15, 9, 144},
    {16, 8, 196}, {17, 3, 1255}, {18, 3, 686},  {19, 4, 321},  {20, 4, 294},  {21, 6, 453},
    {22, 7, 457}, {23, 1, 140},  {24, 5, 618},  {25, 1, 700},  {26, 3, 1004}, {27, 4, 574},
    {28, 6, 294}, {29, 4, 620},  {30, 8, 113},  {31, 4, 198},  {32, 8, 319},  {33, 1, 140},
    {34, 2, 929}, {35, 8, 211},  {36, 2, 1957}, {37, 5, 1084}, {38, 4, 78},   {39, 3, 1179},
    {40, 7, 405}, {41, 9, 423},  {42, 2, 1296}, {44, 1, 110},  {45, 5, 537},  {46, 4, 92},
    {47, 6, 713}, {48, 7, 3050}, {49, 8, 342},  {50, 1, 65},   {51, 5, 872},  {53, 9, 781},
    {54, 5, 177}, {55, 3, 591},  {56, 8, 58},
};
#define NSTATES ((int)(sizeof states / sizeof states[0]))

static int pick_state(synth_rng *r) {
    static const int total = 33541; /* sum of pop above */
    int x = (int)synth_below(r, total);
    for (int i = 0; i < NSTATES; i++) {
        x -= states[i].pop;
        if (x < 0) return i;
    }
    return NSTATES - 1;
}

static int region_of(int division) {
    static const int reg[10] = {9, 1, 1, 2, 2, 3, 3, 3, 4, 4};
    return reg[division];
}

/* Draw index k with probability p[k] / sum(p). */
static int pick(synth_rng *r, const double *p, int n) {
    double s = 0;
    for (int k = 0; k < n; k++)
        s += p[k];
    double x = synth_u(r) * s;
    for (int k = 0; k < n; k++) {
        x -= p[k];
        if (x < 0) return k;
    }
    return n - 1;
}

static int clampi(int x, int lo, int hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

static double sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

/* ---- household composition ---------------------------------------------- */

/* Householder age bands and their shares (ACS householders). */
static const int ref_band_lo[8] = {18, 25, 35, 45, 55, 65, 75, 85};
static const int ref_band_hi[8] = {24, 34, 44, 54, 64, 74, 84, 99};
static const double ref_band_p[8] = {.05, .16, .17, .17, .19, .155, .08, .025};

/* Household size 1..7 by householder age (<25, 25-44, 45-64, 65+); 7 = 7..10. */
static const double size_p[4][7] = {
    {.35, .33, .17, .09, .04, .01, .01},
    {.19, .24, .18, .21, .11, .04, .03},
    {.27, .38, .16, .11, .05, .02, .01},
    {.45, .45, .06, .025, .01, .005, 0},
};

/* Relationship codes (RELSHIPP, 2019 on). */
enum {
    R_REF = 20,
    R_SPOUSE = 21,
    R_PARTNER = 22,
    R_SS_SPOUSE = 23,
    R_SS_PARTNER = 24,
    R_BIO = 25,
    R_ADOPTED = 26,
    R_STEP = 27,
    R_SIBLING = 28,
    R_PARENT = 29,
    R_GRANDCHILD = 30,
    R_PARENT_IN_LAW = 31,
    R_CHILD_IN_LAW = 32,
    R_OTHER_REL = 33,
    R_ROOMMATE = 34,
    R_FOSTER = 35,
    R_OTHER_NONREL = 36,
    R_GQ_INST = 37,
    R_GQ_NONINST = 38
};

/* Other members, by householder under 65 / 65+:
 * child, grandchild, parent, sibling, other relative, roommate, other
 * nonrelative, child-in-law, parent-in-law, foster child. */
static const int other_role[10] = {R_BIO,           R_GRANDCHILD, R_PARENT,       R_SIBLING,
                                   R_OTHER_REL,     R_ROOMMATE,   R_OTHER_NONREL, R_CHILD_IN_LAW,
                                   R_PARENT_IN_LAW, R_FOSTER};
static const double other_p[2][10] = {
    {.82, .03, .03, .03, .03, .03, .02, .005, .01, .005},
    {.45, .25, .02, .08, .08, .04, .04, .04, 0, 0},
};

static int is_partner(int rel) {
    return rel >= R_SPOUSE && rel <= R_SS_PARTNER;
}
static int is_spouse(int rel) {
    return rel == R_SPOUSE || rel == R_SS_SPOUSE;
}
static int is_own_child(int rel) {
    return rel >= R_BIO && rel <= R_STEP;
}

static int age_for_role(synth_rng *r, int rel, int ref_age, int ref_sex) {
    int a;
    switch (rel) {
    case R_SPOUSE:
    case R_PARTNER:
    case R_SS_SPOUSE:
    case R_SS_PARTNER:
        a = ref_age + (int)lround(4.5 * synth_normal(r)) + (ref_sex == 1 ? -2 : 2);
        return clampi(a, 18, 99);
    case R_BIO:
    case R_ADOPTED:
    case R_STEP:
        /* grown children live with older parents; minors at most ref_age - 18 */
        if (ref_age >= 45 && synth_bern(r, ref_age >= 70 ? 0.9 : (ref_age - 40) / 33.0))
            return clampi(ref_age - 20 - (int)synth_below(r, 18), 18, 99);
        a = (int)synth_below(r, (uint32_t)clampi(ref_age - 17, 1, 18));
        if (a < 5 && synth_bern(r, 0.35)) /* fewer infants: births spread over the years */
            a = (int)synth_below(r, (uint32_t)clampi(ref_age - 17, 1, 18));
        return a;
    case R_GRANDCHILD:
        a = ref_age - 42 - (int)synth_below(r, 20);
        return a < 0 ? (int)synth_below(r, 8) : a;
    case R_PARENT:
    case R_PARENT_IN_LAW:
        return clampi(ref_age + 22 + (int)synth_below(r, 14), 40, 99);
    case R_SIBLING:
        return clampi(ref_age + (int)lround(6 * synth_normal(r)), 12, 99);
    case R_CHILD_IN_LAW:
        return clampi(ref_age - 25 - (int)synth_below(r, 10), 18, 99);
    case R_OTHER_REL:
        return (int)synth_below(r, 90);
    case R_FOSTER:
        return (int)synth_below(r, 18);
    default: /* roommate, other nonrelative */
        return clampi(ref_age + (int)lround(8 * synth_normal(r)), 18, 99);
    }
}

static void compose_housing_unit(synth_rng *r, synth_household *hh) {
    int band = pick(r, ref_band_p, 8);
    int ref_age =
        ref_band_lo[band] + (int)synth_below(r, ref_band_hi[band] - ref_band_lo[band] + 1);
    int sband = ref_age < 25 ? 0 : ref_age < 45 ? 1 : ref_age < 65 ? 2 : 3;
    int n = 1 + pick(r, size_p[sband], 7);
    if (n == 7) n += (int)synth_below(r, 4);
    /* P(female householder) rises with age (widows) */
    int ref_sex = synth_bern(r, 0.48 + (ref_age > 60 ? 0.005 * (ref_age - 60) : 0)) ? 2 : 1;
    hh->n = n;
    synth_person *p = hh->p;
    p[0].v[S_RELSHIPP] = R_REF;
    p[0].v[S_AGEP] = ref_age;
    p[0].v[S_SEX] = ref_sex;
    int k = 1, has_partner = 0;
    if (n >= 2) {
        static const double sp[4][2] = {{.30, .25}, {.62, .12}, {.68, .07}, {.75, .04}};
        double u = synth_u(r);
        int rel = 0;
        if (u < sp[sband][0])
            rel = synth_bern(r, 0.012) ? R_SS_SPOUSE : R_SPOUSE;
        else if (u < sp[sband][0] + sp[sband][1])
            rel = synth_bern(r, 0.05) ? R_SS_PARTNER : R_PARTNER;
        if (rel) {
            p[1].v[S_RELSHIPP] = rel;
            p[1].v[S_AGEP] = age_for_role(r, rel, ref_age, ref_sex);
            int same = rel == R_SS_SPOUSE || rel == R_SS_PARTNER;
            p[1].v[S_SEX] = same ? ref_sex : 3 - ref_sex;
            has_partner = 1;
            k = 2;
        }
    }
    for (; k < n; k++) {
        int rel = other_role[pick(r, other_p[ref_age >= 65], 10)];
        if (rel == R_BIO) {
            double u = synth_u(r);
            if (u < 0.025)
                rel = R_ADOPTED;
            else if (u < 0.12 && has_partner)
                rel = R_STEP;
        }
        if ((rel == R_PARENT || rel == R_PARENT_IN_LAW) && ref_age > 74) rel = R_SIBLING;
        int age = age_for_role(r, rel, ref_age, ref_sex);
        p[k].v[S_RELSHIPP] = rel;
        p[k].v[S_AGEP] = age;
        double pf = 0.49 + (age > 60 ? 0.006 * (age - 60) : 0);
        p[k].v[S_SEX] = synth_bern(r, pf) ? 2 : 1;
    }
}

static void compose_group_quarters(synth_rng *r, synth_household *hh) {
    synth_person *p = &hh->p[0];
    hh->n = 1;
    double u = synth_u(r);
    int age, female_p;
    if (synth_bern(r, 0.42)) { /* institutional */
        p->gq = 1;
        p->v[S_RELSHIPP] = R_GQ_INST;
        if (u < 0.45) { /* nursing facilities */
            age = 65 + (int)(34.0 * sqrt(synth_u(r)));
            female_p = 68;
        } else if (u < 0.92) { /* correctional */
            age = 18 + (int)synth_below(r, 47);
            female_p = 8;
        } else { /* juvenile */
            age = 12 + (int)synth_below(r, 6);
            female_p = 15;
        }
    } else {
        p->gq = 2;
        p->v[S_RELSHIPP] = R_GQ_NONINST;
        if (u < 0.55) { /* college housing */
            age = 18 + (int)synth_below(r, 6);
            female_p = 55;
        } else if (u < 0.70) { /* military quarters */
            age = 18 + (int)synth_below(r, 13);
            female_p = 18;
            p->v[S_MIL] = 1;
        } else {
            age = 18 + (int)synth_below(r, 73);
            female_p = 40;
        }
    }
    p->v[S_AGEP] = clampi(age, 0, 99);
    p->v[S_SEX] = (int)synth_below(r, 100) < female_p ? 2 : 1;
}

/* ---- race, origin, nativity ---------------------------------------------- */

static const double race_p[9] = {.610, .122, .008, .0005, .0025, .059, .002, .066, .130};
/* P(Hispanic | RAC1P) */
static const double hisp_given_race[9] = {.14, .035, .12, .02, .05, .015, .06, .88, .30};
/* HISP 02..24 */
static const double hisp_origin_p[23] = {.59,   .095, .04,  .04,  .003, .03,  .02,  .007,
                                         .004,  .04,  .002, .005, .002, .003, .025, .01,
                                         .0005, .01,  .001, .012, .001, .015, .04};
/* P(foreign born) of an adult, by RAC1P; Hispanic replaces it with .35. */
static const double foreign_given_race[9] = {.05, .12, .05, .02, .03, .60, .20, .25, .08};

static int pick_code(synth_rng *r, const int *codes, int n) {
    return n > 0 ? codes[synth_below(r, (uint32_t)n)] : 1;
}

static int waob_of(int pob) {
    if (pob <= 59) return 1;
    if (pob == 60) return 8;
    if (pob <= 99) return 2;
    if (pob <= 157 || pob == 160 || (pob >= 162 && pob <= 199)) return 5;
    if (pob <= 299) return 4;
    if (pob <= 302 || (pob >= 304 && pob <= 309)) return 7;
    if (pob <= 399) return 3;
    if (pob <= 499) return 6;
    return 8;
}

/* Largest code <= year (or the smallest code). */
static int snap_year(const int *codes, int n, int year) {
    int best = n ? codes[0] : year;
    for (int k = 0; k < n; k++)
        if (codes[k] <= year) best = codes[k];
    return best;
}

static void draw_nativity(synth_rng *r, const synth_tables *t, synth_person *p, int foreign,
                          int state_fips) {
    int age = p->v[S_AGEP], hisp = p->v[S_HISP], race = p->v[S_RAC1P];
    int cit, pob;
    if (foreign && hisp == 3) { /* Puerto Ricans are born citizens */
        cit = 2;
        pob = 72;
    } else if (!foreign) {
        double u = synth_u(r);
        if (u < 0.012) {
            cit = 2;
            pob = pick_code(r, t->pob_island, t->n_pob_island);
        } else if (u < 0.032) {
            cit = 3;
            pob = pick_code(r, t->pob_region[5], t->n_pob_region[5]);
        } else {
            cit = 1;
            pob = synth_bern(r, 0.65) ? state_fips : pick_code(r, t->pob_us, t->n_pob_us);
        }
    } else {
        int region; /* WAOB 3..8 */
        if (hisp == 2)
            region = 0; /* Mexico */
        else if (hisp > 1)
            region = 3;
        else if (race == 6)
            region = 4;
        else if (race == 2)
            region = synth_bern(r, 0.5) ? 6 : 3;
        else if (race == 1)
            region = synth_bern(r, 0.8) ? 5 : 7;
        else
            region = 3 + (int)synth_below(r, 6);
        pob = region == 0 ? 303 : pick_code(r, t->pob_region[region], t->n_pob_region[region]);
        cit = 5; /* naturalisation decided with the year of entry below */
    }
    p->v[S_CIT] = cit;
    p->v[S_POBP] = pob;
    p->v[S_WAOB] = waob_of(pob);
    p->v[S_NATIVITY] = cit <= 3 ? 1 : 2;
    p->v[S_YOEP] = p->v[S_DECADE] = p->v[S_CITWP] = BL;
    if (cit == 1) return;
    /* year of entry: at an age uniform on [0, min(age, 45)] */
    int entry_age = (int)synth_below(r, (uint32_t)(age < 45 ? age + 1 : 46));
    int year = 2023 - age + entry_age;
    int yoep = snap_year(t->yoep, t->n_yoep, year);
    p->v[S_YOEP] = yoep;
    p->v[S_DECADE] = yoep < 1950 ? 1 : yoep >= 2010 ? 8 : 2 + (yoep - 1950) / 10;
    if (cit == 5 && age >= 18 && 2023 - yoep >= 5) {
        double pn = 0.15 + 0.012 * (age - 18) + 0.015 * (2023 - yoep - 5);
        if (synth_bern(r, pn > 0.9 ? 0.9 : pn)) {
            int y = yoep + 5 + (int)synth_below(r, (uint32_t)(2023 - yoep - 5 + 1));
            p->v[S_CIT] = 4;
            p->v[S_CITWP] = snap_year(t->citwp, t->n_citwp, y);
        }
    }
}

static void draw_race_flags(synth_rng *r, synth_person *p) {
    int race = p->v[S_RAC1P];
    int wht = race == 1, blk = race == 2, ai = race >= 3 && race <= 5, asn = race == 6;
    int pi = race == 7, sor = race == 8, nh = race == 7 && synth_bern(r, 0.4), num = 1;
    if (race == 9) { /* two or more: two flags, sometimes three */
        int a = (int)synth_below(r, 6), b = (a + 1 + (int)synth_below(r, 5)) % 6;
        int *f[6] = {&wht, &blk, &ai, &asn, &pi, &sor};
        *f[a] = *f[b] = 1;
        num = 2;
        if (synth_bern(r, 0.1)) {
            int c = (b + 1 + (int)synth_below(r, 4)) % 6;
            if (c != a && !*f[c]) {
                *f[c] = 1;
                num = 3;
            }
        }
        nh = pi && synth_bern(r, 0.4);
    }
    p->v[S_RACWHT] = wht;
    p->v[S_RACBLK] = blk;
    p->v[S_RACAIAN] = ai;
    p->v[S_RACASN] = asn;
    p->v[S_RACPI] = pi;
    p->v[S_RACSOR] = sor;
    p->v[S_RACNH] = nh;
    p->v[S_RACNUM] = num;
}

/* ---- disability ----------------------------------------------------------- */

/* P(any disability) at these ages, linear in between (ACS: ~1% under 5, 6%
 * 5-17, 8% 18-34, 13% 35-64, 24% 65-74, 46% 75+). */
static const int dis_age[8] = {0, 5, 17, 35, 64, 74, 85, 99};
static const double dis_p[8] = {.008, .04, .06, .08, .17, .25, .50, .75};

static double p_disability(int age) {
    for (int k = 1; k < 8; k++)
        if (age <= dis_age[k])
            return dis_p[k - 1] + (dis_p[k] - dis_p[k - 1]) * (age - dis_age[k - 1]) /
                                      (dis_age[k] - dis_age[k - 1]);
    return dis_p[7];
}

/* DIS = 1 exactly when one of the six difficulties is "yes" (the ACS
 * definition); difficulties not asked at this age are N/A. */
static void draw_disability(synth_rng *r, synth_person *p) {
    int age = p->v[S_AGEP];
    double pd = p_disability(age) + (p->gq == 1 ? 0.35 : 0);
    int dis = synth_bern(r, pd);
    int slots[6] = {S_DEAR, S_DEYE, S_DREM, S_DPHY, S_DDRS, S_DOUT};
    int min_age[6] = {0, 0, 5, 5, 5, 15};
    for (int k = 0; k < 6; k++) {
        p->v[slots[k]] = age >= min_age[k] ? 2 : BL;
    }
    p->v[S_DIS] = dis ? 1 : 2;
    if (!dis) return;
    /* one primary difficulty, weighted toward physical and cognitive ones,
     * then each other asked one with probability rising with age */
    static const double w[6] = {.14, .10, .22, .30, .10, .14};
    int prim;
    do
        prim = pick(r, w, 6);
    while (age < min_age[prim]);
    p->v[slots[prim]] = 1;
    double extra = 0.10 + 0.004 * age;
    for (int k = 0; k < 6; k++)
        if (k != prim && age >= min_age[k] && synth_bern(r, extra)) p->v[slots[k]] = 1;
}

/* ---- education ------------------------------------------------------------- */

/* Attainment of adults 25+: a latent normal against thresholds at the US
 * cumulative shares: <HS .095 | HS diploma .335 | GED .36 | some college <1y
 * .42 | 1y+ no degree .55 | associate .645 | bachelor .865 | master .963 |
 * professional .98 | doctorate. */
static const double edu_cut[9] = {-1.311, -0.426, -0.358, -0.202, 0.126,
                                  0.372,  1.103,  1.787,  2.054};
static const int edu_code[10] = {0, 16, 17, 18, 19, 20, 21, 22, 23, 24};

/* Education level 0..4 used by the labour model: <HS, HS/GED, some
 * college/associate, bachelor, graduate. */
static int edu_level(int schl) {
    if (schl == BL || schl < 16) return 0;
    if (schl <= 17) return 1;
    if (schl <= 20) return 2;
    if (schl == 21) return 3;
    return 4;
}

static void draw_education(synth_rng *r, synth_person *p, double hh_z) {
    int age = p->v[S_AGEP], schl, sch = BL, schg = BL;
    if (age < 3) {
        p->v[S_SCHL] = p->v[S_SCH] = p->v[S_SCHG] = BL;
        return;
    }
    /* school enrolment first (it shapes the grade of the young) */
    double pe = age <= 4 ? 0.5 : age <= 17 ? 0.97 : age <= 24 ? 0.42 : age <= 34 ? 0.09 : 0.025;
    int enrolled = p->gq == 2 && age <= 23 ? 1 : synth_bern(r, pe);
    if (age <= 18) {
        /* grade by age: 5 kindergarten (03), 6 grade 1 (04), ... 17 grade 12 (15) */
        if (age <= 4)
            schl = enrolled ? 2 : 1;
        else {
            schl = clampi(age - 2 + (synth_bern(r, 0.15) ? -1 : 0), 3, 15);
            if (age == 18) schl = synth_bern(r, 0.6) ? 16 : synth_bern(r, 0.5) ? 15 : 18;
        }
    } else {
        double z = 0.10 + 0.55 * hh_z + 0.835 * synth_normal(r);
        z += age < 35   ? 0.15
             : age < 45 ? 0.2
             : age < 55 ? 0
             : age < 65 ? -0.05
             : age < 75 ? -0.1
                        : -0.4;
        int race = p->v[S_RAC1P];
        if (p->v[S_HISP] > 1)
            z -= p->v[S_NATIVITY] == 2 ? 0.8 : 0.35;
        else if (race == 6)
            z += 0.45;
        else if (race == 2)
            z -= 0.2;
        else if (race >= 3 && race <= 5)
            z -= 0.45;
        else if (race == 7)
            z -= 0.3;
        if (p->v[S_SEX] == 2 && age < 55) z += 0.08;
        if (p->v[S_DIS] == 1) z -= 0.3;
        if (p->gq == 1) z -= 0.5;
        int lv = 0;
        while (lv < 9 && z > edu_cut[lv])
            lv++;
        /* the young have not finished yet */
        int cap = age <= 20 ? 4 : age <= 21 ? 5 : age <= 23 ? 6 : 9;
        if (lv > cap) lv = cap;
        if (lv == 0) {
            double u = synth_u(r);
            schl = u < 0.06   ? 1
                   : u < 0.30 ? 4 + (int)synth_below(r, 8)
                              : 12 + (int)synth_below(r, 4);
        } else {
            schl = edu_code[lv];
        }
    }
    if (enrolled) {
        sch = synth_bern(r, age <= 17 ? 0.88 : 0.75) ? 2 : 3;
        if (age <= 4)
            schg = 1;
        else if (age <= 17)
            schg = clampi(schl - 1, 2, 14); /* attending the grade after the one completed */
        else
            schg = schl >= 21 ? 16 : 15;
    } else {
        sch = 1;
    }
    p->v[S_SCHL] = schl;
    p->v[S_SCH] = sch;
    p->v[S_SCHG] = schg;
}

/* ---- marital status -------------------------------------------------------- */

/* MAR: 1 married, 2 widowed, 3 divorced, 4 separated, 5 never married. */
static int draw_marital(synth_rng *r, const synth_person *p, int has_spouse) {
    int age = p->v[S_AGEP], rel = p->v[S_RELSHIPP];
    if (age < 15) return 5;
    if (is_spouse(rel) || (rel == R_REF && has_spouse)) return 1;
    double pm[5]; /* married (spouse absent), widowed, divorced, separated, never */
    if (rel == R_REF && !has_spouse) {
        if (age < 30)
            memcpy(pm, (double[]){.04, .005, .08, .025, .85}, sizeof pm);
        else if (age < 55)
            memcpy(pm, (double[]){.08, .03, .35, .07, .47}, sizeof pm);
        else if (age < 75)
            memcpy(pm, (double[]){.06, .28, .42, .05, .19}, sizeof pm);
        else
            memcpy(pm, (double[]){.04, .66, .18, .02, .10}, sizeof pm);
    } else if (rel == R_PARENT || rel == R_PARENT_IN_LAW) {
        memcpy(pm, (double[]){.30, .52, .14, .02, .02}, sizeof pm);
    } else if (is_partner(rel)) {
        memcpy(pm, (double[]){.02, .04, .32, .05, .57}, sizeof pm);
    } else if (age < 25) {
        memcpy(pm, (double[]){.03, 0, .01, .01, .95}, sizeof pm);
    } else if (age < 65) {
        memcpy(pm, (double[]){.12, .02, .20, .04, .62}, sizeof pm);
    } else {
        memcpy(pm, (double[]){.20, .50, .18, .02, .10}, sizeof pm);
    }
    return 1 + pick(r, pm, 5);
}

/* ---- military -------------------------------------------------------------- */

static void draw_military(synth_rng *r, synth_person *p) {
    int age = p->v[S_AGEP];
    if (age < 17) {
        p->v[S_MIL] = BL;
        return;
    }
    if (p->v[S_MIL] == 1) return; /* military quarters */
    int male = p->v[S_SEX] == 1;
    double pa = age <= 40 ? (male ? 0.008 : 0.0015) : 0;
    double pv = age < 35 ? 0.025 : age < 55 ? 0.07 : age < 65 ? 0.12 : age < 75 ? 0.25 : 0.40;
    if (!male) pv /= 9;
    double u = synth_u(r);
    p->v[S_MIL] = u < pa ? 1 : u < pa + pv ? 2 : u < pa + pv + (age <= 60 ? 0.008 : 0) ? 3 : 4;
}

/* ---- labour force ---------------------------------------------------------- */

/* Participation, logit scale, for a high-school graduate without disability,
 * by age band (16-19, 20-24, 25-54, 55-61, 62-64, 65-69, 70-74, 75+) and sex. */
static const int lf_band_hi[8] = {19, 24, 54, 61, 64, 69, 74, 99};
static const double lf_logit[2][8] = {
    {-0.20, 1.10, 2.30, 1.30, 0.35, -0.35, -1.05, -2.25}, /* men */
    {-0.12, 0.94, 1.50, 0.85, 0.00, -0.65, -1.45, -2.65}, /* women */
};
static const double lf_edu[5] = {-0.55, 0, 0.25, 0.50, 0.70};

/* Unemployment among the labour force, logit scale: intercept and effects
 * (docs/synth.md has the table). */
#define U_INTERCEPT (-3.30)
static const double u_age[6] = {1.10, 0.55,  0.10,
                                0,    -0.05, 0.05}; /* 16-19,20-24,25-34,35-54,55-64,65+ */
static const double u_edu[5] = {0.55, 0.25, 0, -0.45, -0.70};
static const double u_race[9] = {0, 0.65, 0.55, 0.55, 0.55, -0.10, 0.25, 0.20, 0.25};
#define U_DISABILITY 0.75
#define U_MALE 0.08
#define U_HISPANIC 0.15
#define U_NONCITIZEN 0.15
#define U_NATURALIZED (-0.10)
#define U_MARRIED (-0.35)

static double unemployment_logit(const synth_person *p) {
    int age = p->v[S_AGEP];
    int ab = age <= 19 ? 0 : age <= 24 ? 1 : age <= 34 ? 2 : age <= 54 ? 3 : age <= 64 ? 4 : 5;
    double x = U_INTERCEPT + u_age[ab] + u_edu[edu_level(p->v[S_SCHL])];
    x += u_race[p->v[S_RAC1P] - 1];
    if (p->v[S_DIS] == 1) x += U_DISABILITY;
    if (p->v[S_SEX] == 1) x += U_MALE;
    if (p->v[S_HISP] > 1) x += U_HISPANIC;
    if (p->v[S_CIT] == 5) x += U_NONCITIZEN;
    if (p->v[S_CIT] == 4) x += U_NATURALIZED;
    if (p->v[S_MAR] == 1) x += U_MARRIED;
    return x;
}

static void draw_labour(synth_rng *r, synth_person *p, int young_child) {
    int age = p->v[S_AGEP];
    p->worked = 0;
    if (age < 16) {
        p->v[S_ESR] = p->v[S_WKL] = p->v[S_WRK] = p->v[S_WKHP] = p->v[S_WKWN] = BL;
        p->v[S_COW] = BL;
        return;
    }
    int esr;
    if (p->v[S_MIL] == 1) {
        esr = synth_bern(r, 0.96) ? 4 : 5;
    } else if (p->gq == 1) {
        esr = 6; /* the institutional population is outside the labour force */
    } else {
        int band = 0;
        while (age > lf_band_hi[band])
            band++;
        int female = p->v[S_SEX] == 2;
        double x = lf_logit[female][band] + lf_edu[edu_level(p->v[S_SCHL])];
        if (p->v[S_DIS] == 1) x -= 1.7;
        if (age <= 24 && p->v[S_SCH] != BL && p->v[S_SCH] > 1) x -= 0.3;
        if (female && young_child) x -= 0.45;
        if (female && p->v[S_NATIVITY] == 2) x -= 0.2;
        if (!synth_bern(r, sigmoid(x)))
            esr = 6;
        else if (synth_bern(r, sigmoid(unemployment_logit(p))))
            esr = 3;
        else
            esr = synth_bern(r, 0.025) ? 2 : 1;
    }
    p->v[S_ESR] = esr;
    /* work history: when last worked, hours and weeks in the past 12 months */
    int wkl;
    if (esr != 3 && esr != 6) {
        wkl = 1;
    } else {
        double pw = esr == 3 ? 0.55 : age < 25 ? 0.22 : age < 55 ? 0.18 : age < 65 ? 0.12 : 0.04;
        if (p->v[S_DIS] == 1) pw *= 0.5;
        double p2 = age < 25 ? 0.15 : age < 65 ? 0.25 : 0.10;
        wkl = synth_bern(r, pw) ? 1 : synth_bern(r, p2 / (1 - pw)) ? 2 : 3;
    }
    p->worked = wkl == 1;
    p->v[S_WKL] = wkl;
    p->v[S_WRK] = (esr == 1 || esr == 4) ? 1 : 2;
    if (p->worked) {
        int employed = esr != 3 && esr != 6;
        double pf = !employed          ? 0.45
                    : age < 25         ? 0.45
                    : age >= 65        ? 0.45
                    : p->v[S_SEX] == 1 ? 0.84
                                       : 0.72;
        int h;
        if (synth_bern(r, pf)) {
            double u = synth_u(r);
            h = u < 0.60   ? 40
                : u < 0.80 ? (synth_bern(r, 0.5) ? 45 : 50)
                           : 35 + (int)synth_below(r, 36);
        } else {
            h = 4 + (int)synth_below(r, 31);
        }
        p->v[S_WKHP] = clampi(h, 1, 99);
        p->v[S_WKWN] = employed && synth_bern(r, 0.78) ? 52
                       : employed                      ? 20 + (int)synth_below(r, 32)
                                                       : 1 + (int)synth_below(r, 40);
    } else {
        p->v[S_WKHP] = p->v[S_WKWN] = BL;
    }
    /* class of worker: of the current or last job (last 5 years) */
    if (esr == 4 || esr == 5) {
        p->v[S_COW] = 5;
    } else if (wkl <= 2) {
        /* private, nonprofit, local, state, federal, self not inc., self inc., unpaid */
        double w[8] = {.64, .085, .065, .045, .025, .065, .035, .002};
        int lv = edu_level(p->v[S_SCHL]);
        if (lv >= 3) {
            w[1] *= 1.6;
            w[2] *= 1.5;
            w[3] *= 1.5;
        }
        if (age >= 65) {
            w[5] *= 2.2;
            w[6] *= 2.0;
        }
        p->v[S_COW] = 1 + pick(r, w, 8);
    } else {
        p->v[S_COW] = esr == 3 ? 9 : BL;
    }
}

/* ---- income ---------------------------------------------------------------- */

/* ACS income components are rounded: to 10 below $1000, then to 100. */
static long round_income(double x) {
    long v = lround(x);
    long a = v < 0 ? -v : v;
    a = a < 1000 ? (a + 5) / 10 * 10 : (a + 50) / 100 * 100;
    if (a < 4) a = 4;
    return v < 0 ? -a : a;
}

static double lognorm(synth_rng *r, double median, double sigma) {
    return median * exp(sigma * synth_normal(r));
}

static const double wage_edu[5] = {-0.30, 0, 0.15, 0.50, 0.75};

static void draw_income(synth_rng *r, synth_person *p) {
    int age = p->v[S_AGEP];
    int slots[8] = {S_WAGP, S_SEMP, S_INTP, S_SSP, S_SSIP, S_PAP, S_RETP, S_OIP};
    if (age < 15) {
        for (int k = 0; k < 8; k++)
            p->v[slots[k]] = BL;
        p->v[S_PINCP] = p->v[S_PERNP] = BL;
        return;
    }
    long wagp = 0, semp = 0, intp = 0, ssp = 0, ssip = 0, pap = 0, retp = 0, oip = 0;
    if (p->worked) {
        double exper = age - 18 < 0 ? 0 : age - 18 > 30 ? 30 : age - 18;
        double lw = 2.55 + wage_edu[edu_level(p->v[S_SCHL])] + 0.035 * exper -
                    0.0007 * exper * exper + (p->v[S_SEX] == 2 ? -0.15 : 0) +
                    0.55 * synth_normal(r);
        double annual = exp(lw) * p->v[S_WKHP] * p->v[S_WKWN];
        int cow = p->v[S_COW];
        if (cow == 6 || cow == 7) {
            semp =
                synth_bern(r, 0.04) ? -round_income(500 + 9500 * synth_u(r)) : round_income(annual);
        } else if (cow != 8) {
            wagp = round_income(annual);
        }
    }
    if (age >= 62 && synth_bern(r, age >= 70 ? 0.92 : 0.70))
        ssp = round_income(fmax(1200, 17000 + 6000 * synth_normal(r)));
    else if (p->v[S_DIS] == 1 && synth_bern(r, 0.2))
        ssp = round_income(fmax(1200, 14000 + 5000 * synth_normal(r)));
    if (age >= 55 && synth_bern(r, age >= 65 ? 0.40 : 0.15))
        retp = round_income(lognorm(r, 18000, 0.8));
    if (synth_bern(r, age >= 50 ? 0.35 : 0.18))
        intp = synth_bern(r, 0.02) ? -round_income(10 + 3000 * synth_u(r))
                                   : round_income(lognorm(r, 400, 1.6));
    if ((p->v[S_DIS] == 1 || age >= 65) && synth_bern(r, 0.05))
        ssip = round_income(4000 + 8000 * synth_u(r));
    if (synth_bern(r, 0.015)) pap = round_income(500 + 5500 * synth_u(r));
    if (synth_bern(r, 0.06)) oip = round_income(lognorm(r, 3000, 1.0));
    /* top and bottom codes of the dictionary */
    wagp = wagp > 999999 ? 999999 : wagp;
    semp = semp > 999999 ? 999999 : semp < -10000 ? -10000 : semp;
    intp = intp > 999999 ? 999999 : intp < -10000 ? -10000 : intp;
    retp = retp > 999999 ? 999999 : retp;
    ssp = ssp > 55000 ? 55000 : ssp;
    oip = oip > 99999 ? 99999 : oip;
    long v[8] = {wagp, semp, intp, ssp, ssip, pap, retp, oip};
    long total = 0;
    for (int k = 0; k < 8; k++) {
        p->v[slots[k]] = (int)v[k];
        total += v[k];
    }
    p->v[S_PINCP] = (int)(total > 4209995 ? 4209995 : total < -19998 ? -19998 : total);
    long pern = wagp + semp;
    p->v[S_PERNP] = age < 16 ? BL : (int)(pern > 1999998 ? 1999998 : pern < -10000 ? -10000 : pern);
}

/* ---- health insurance ------------------------------------------------------ */

static void draw_insurance(synth_rng *r, synth_person *p) {
    int age = p->v[S_AGEP], dis = p->v[S_DIS] == 1, vet = p->v[S_MIL] == 2 || p->v[S_MIL] == 1;
    int low = p->v[S_PINCP] != BL && p->v[S_PINCP] < 15000 && age >= 18;
    double ph[7] = {
        p->worked   ? 0.62
        : age < 19  ? 0.50
        : age >= 65 ? 0.25
                    : 0.30, /* employer */
        0.11,               /* direct purchase */
        age >= 65 ? 0.96
        : dis     ? 0.25
                  : 0.01, /* Medicare */
        low || age < 19 ? 0.35
        : dis           ? 0.30
                        : 0.10, /* Medicaid */
        p->v[S_MIL] == 1 ? 0.95
        : vet            ? 0.25
                         : 0.02,                   /* TRICARE */
        vet ? 0.25 : 0.001,             /* VA */
        p->v[S_RACAIAN] ? 0.30 : 0.001, /* Indian Health Service */
    };
    int priv = 0, pub = 0;
    for (int k = 0; k < 7; k++) {
        int yes = synth_bern(r, ph[k]);
        p->v[S_HINS1 + k] = yes ? 1 : 2;
        if (yes && (k == 0 || k == 1 || k == 4)) priv = 1;
        if (yes && (k == 2 || k == 3 || k == 5)) pub = 1;
    }
    p->v[S_PRIVCOV] = priv ? 1 : 2;
    p->v[S_PUBCOV] = pub ? 1 : 2;
    p->v[S_HICOV] = priv || pub ? 1 : 2;
}

/* ---- the household --------------------------------------------------------- */

void synth_model_household(const synth_tables *t, uint64_t seed, uint64_t index,
                           synth_household *hh) {
    synth_rng r = synth_stream(seed, index, 0);
    hh->index = index;
    for (int k = 0; k < SYNTH_MAX_PERSONS; k++) {
        hh->p[k].gq = 0;
        hh->p[k].worked = 0;
        hh->p[k].v[S_MIL] = 0;
    }
    int st = pick_state(&r);
    int division = states[st].division;
    int npuma = states[st].pop / 75 > 1 ? states[st].pop / 75 : 1;
    int puma = 100 * (1 + (int)synth_below(&r, (uint32_t)npuma)) + 1 + (int)synth_below(&r, 9);
    hh->gq = synth_bern(&r, 0.06);
    if (hh->gq)
        compose_group_quarters(&r, hh);
    else
        compose_housing_unit(&r, hh);

    /* shared within the household */
    int race0 = 1 + pick(&r, race_p, 9);
    int hisp0 = synth_bern(&r, hisp_given_race[race0 - 1]) ? 2 + pick(&r, hisp_origin_p, 23) : 1;
    double pf0 = hisp0 > 1 ? 0.35 : foreign_given_race[race0 - 1];
    int foreign0 = synth_bern(&r, pf0);
    double hh_z = synth_normal(&r);
    /* movers: the whole household moved, at a rate by the householder's age */
    int a0 = hh->p[0].v[S_AGEP];
    int moved = synth_bern(&r, a0 < 25 ? 0.35 : a0 < 35 ? 0.22 : a0 < 65 ? 0.08 : 0.045);
    int moved_abroad = moved && synth_bern(&r, foreign0 ? 0.08 : 0.012);
    double w0 = 98.0 * exp(0.45 * synth_normal(&r));
    /* successive-difference replication: each replicate scales the
     * household's weight by 1 - 1/sqrt2, 1 or 1 + 1/sqrt2 */
    unsigned char rep[80];
    for (int k = 0; k < 80; k++) {
        uint32_t u = synth_below(&r, 4);
        rep[k] = u == 0 ? 0 : u == 3 ? 2 : 1;
    }
    int has_spouse = hh->n > 1 && is_spouse(hh->p[1].v[S_RELSHIPP]);
    int young_child = 0; /* own child under 6 of the householder */
    for (int k = 0; k < hh->n; k++)
        if (is_own_child(hh->p[k].v[S_RELSHIPP]) && hh->p[k].v[S_AGEP] < 6) young_child = 1;

    for (int k = 0; k < hh->n; k++) {
        synth_person *p = &hh->p[k];
        synth_rng pr = synth_stream(seed, index, 1 + (uint64_t)k);
        int rel = p->v[S_RELSHIPP], age = p->v[S_AGEP];
        p->v[S_DIVISION] = division;
        p->v[S_REGION] = region_of(division);
        p->v[S_STATE] = states[st].fips;
        p->v[S_PUMA] = puma;
        double w = w0 * exp(0.08 * synth_normal(&pr));
        int pw = clampi((int)lround(w), 1, 9999);
        p->v[S_PWGTP] = pw;
        static const double rf[3] = {0.29289, 1.0, 1.70711};
        for (int j = 0; j < 80; j++) {
            double x = pw * rf[rep[j]] * (0.96 + 0.08 * synth_u(&pr));
            p->v[S_PWGTP1 + j] = clampi((int)(x + 0.5), 0, 9999); /* x > 0 */
        }
        /* race and origin: shared, with some mixing for partners and others */
        int race = race0, hisp = hisp0;
        int related = rel != R_ROOMMATE && rel != R_OTHER_NONREL && rel != R_FOSTER;
        if (k > 0 && (!related || is_partner(rel)) && synth_bern(&pr, 0.15)) {
            race = 1 + pick(&pr, race_p, 9);
            hisp =
                synth_bern(&pr, hisp_given_race[race - 1]) ? 2 + pick(&pr, hisp_origin_p, 23) : 1;
        } else if (k > 0 && is_own_child(rel) && hh->n > 1 && is_partner(hh->p[1].v[S_RELSHIPP]) &&
                   hh->p[1].v[S_RAC1P] != race0) {
            race = 9; /* children of a mixed couple */
        }
        p->v[S_RAC1P] = race;
        p->v[S_HISP] = hisp;
        draw_race_flags(&pr, p);
        /* nativity: the householder's, except that children are mostly born here */
        int foreign;
        if (k == 0)
            foreign = foreign0;
        else if (age < 18)
            foreign = foreign0 && synth_bern(&pr, 0.18);
        else
            foreign = synth_bern(
                &pr, foreign0 ? 0.8 : (hisp > 1 ? 0.35 : foreign_given_race[race - 1]) * 0.5);
        draw_nativity(&pr, t, p, foreign, states[st].fips);
        /* languages other than English: mostly the foreign born and Hispanics */
        if (age < 5)
            p->v[S_LANX] = BL;
        else
            p->v[S_LANX] = synth_bern(&pr, foreign ? 0.85 : hisp > 1 ? 0.6 : 0.08) ? 1 : 2;
        p->v[S_ANC] = 1 + pick(&pr, (const double[]){.56, .19, .03, .22}, 4);
        p->v[S_MIG] = age < 1 ? BL : !moved ? 1 : moved_abroad ? 2 : 3;
        draw_disability(&pr, p);
        draw_education(&pr, p, hh_z);
        p->v[S_MAR] = draw_marital(&pr, p, has_spouse);
        int spouse_here = has_spouse && (k == 0 || k == 1);
        p->v[S_MSP] = age < 15           ? BL
                      : p->v[S_MAR] == 1 ? (spouse_here ? 1 : 2)
                      : p->v[S_MAR] == 2 ? 3
                      : p->v[S_MAR] == 3 ? 4
                      : p->v[S_MAR] == 4 ? 5
                                         : 6;
        draw_military(&pr, p);
        int parent = k == 0 || (k == 1 && is_partner(rel));
        draw_labour(&pr, p, parent && young_child);
        draw_income(&pr, p);
        draw_insurance(&pr, p);
        p->v[S_OC] = hh->gq ? BL : (is_own_child(rel) && age < 18);
        p->v[S_RC] = hh->gq ? BL : (age < 18 && rel != R_REF && !is_partner(rel) && related);
    }

    /* family: employment status of parents, own children, births */
    int own_u6 = 0, own_6_17 = 0, baby = 0;
    for (int k = 0; k < hh->n; k++) {
        int rel = hh->p[k].v[S_RELSHIPP], age = hh->p[k].v[S_AGEP];
        if (is_own_child(rel) && age < 6) own_u6 = 1;
        if (is_own_child(rel) && age >= 6 && age < 18) own_6_17 = 1;
        if (is_own_child(rel) && age == 0) baby = 1;
    }
    synth_person *ref = &hh->p[0], *sp = has_spouse ? &hh->p[1] : NULL;
    for (int k = 0; k < hh->n; k++) {
        synth_person *p = &hh->p[k];
        int rel = p->v[S_RELSHIPP], age = p->v[S_AGEP], female = p->v[S_SEX] == 2;
        synth_rng pr = synth_stream(seed, index, 100 + (uint64_t)k);
        /* ESP: own children under 18, by the parents' labour force status */
        if (is_own_child(rel) && age < 18) {
            int lf_ref = ref->v[S_ESR] != BL && ref->v[S_ESR] <= 5;
            if (sp) {
                int lf_sp = sp->v[S_ESR] != BL && sp->v[S_ESR] <= 5;
                int ref_father = ref->v[S_SEX] == 1 || sp->v[S_SEX] == 2;
                int father = ref_father ? lf_ref : lf_sp, mother = ref_father ? lf_sp : lf_ref;
                p->v[S_ESP] = father && mother ? 1 : father ? 2 : mother ? 3 : 4;
            } else {
                p->v[S_ESP] = ref->v[S_SEX] == 1 ? (lf_ref ? 5 : 6) : (lf_ref ? 7 : 8);
            }
        } else {
            p->v[S_ESP] = BL;
        }
        /* PAOC: women 16+ in housing units */
        int mother = k == 0 || (k == 1 && is_partner(rel));
        if (!female || age < 16 || hh->gq)
            p->v[S_PAOC] = BL;
        else if (mother && (own_u6 || own_6_17))
            p->v[S_PAOC] = own_u6 && own_6_17 ? 3 : own_u6 ? 1 : 2;
        else
            p->v[S_PAOC] = 4;
        /* FER: women 15-50 */
        if (!female || age < 15 || age > 50)
            p->v[S_FER] = BL;
        else
            p->v[S_FER] = (mother && baby) || synth_bern(&pr, 0.012) ? 1 : 2;
    }
}

/* ---- tables from the dictionary -------------------------------------------- */

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int sorted_codes(const char *name, int *out, int max) {
    const dp_pums_var *v = dp_pums_find(name);
    int n = 0;
    for (int k = 0; v && k < v->n_codes && n < max; k++)
        if (!v->codes[k].blank) out[n++] = atoi(v->codes[k].lo);
    qsort(out, (size_t)n, sizeof *out, cmp_int);
    return n;
}

dp_status synth_tables_init(synth_tables *t) {
    memset(t, 0, sizeof *t);
    const dp_pums_var *pob = dp_pums_find("POBP");
    if (!pob) return dp_error(DP_E_INTERNAL, "the dictionary has no POBP");
    for (int k = 0; k < pob->n_codes; k++) {
        if (pob->codes[k].blank) continue;
        int c = atoi(pob->codes[k].lo), w = waob_of(c);
        if (w == 1 && t->n_pob_us < 64)
            t->pob_us[t->n_pob_us++] = c;
        else if (w == 2 && t->n_pob_island < 8)
            t->pob_island[t->n_pob_island++] = c;
        else if (w >= 3 && t->n_pob_region[w] < 96 && c != 303)
            t->pob_region[w][t->n_pob_region[w]++] = c;
    }
    t->n_yoep = sorted_codes("YOEP", t->yoep, 128);
    t->n_citwp = sorted_codes("CITWP", t->citwp, 128);
    if (t->n_pob_us < 51 || t->n_yoep < 10 || t->n_citwp < 10)
        return dp_error(DP_E_INTERNAL, "the dictionary lacks POBP, YOEP or CITWP codes");
    return DP_OK;
}
