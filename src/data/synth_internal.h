/*
 * synth_internal.h: what the three synth files share (never exported):
 * the counter-based random stream, the person record the model fills
 * (synth_model.c), and the column plan and row writer (synth_emit.c) that
 * the driver (synth.c) runs over blocks of households.
 */
#ifndef DP_SYNTH_INTERNAL_H
#define DP_SYNTH_INTERNAL_H
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/pums.h"
#include "dpsgd/synth.h"

/* ---- random numbers ------------------------------------------------------
 * Counter-based: the stream of household h is a pure function of (seed, h),
 * so any thread can make any household and the output does not depend on the
 * thread count. A stream is splitmix64 (Steele, Lea & Flood 2014, the
 * generator Java's SplittableRandom uses) started at a state derived by the
 * same finaliser from (seed, h, purpose); draw i is mix64(start + i*gamma),
 * i.e. a counter hashed by a bijective 64-bit mixer. It is not
 * cryptographic, which synthetic data does not need; it is ~10x faster than
 * libsodium's ChaCha20 keystream for the ~500 draws a full-width row takes
 * (bench/synth measures both). */
typedef struct synth_rng {
    uint64_t s;
} synth_rng;

static inline uint64_t synth_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The stream for (seed, a, b): a = household index, b = purpose/person. */
static inline synth_rng synth_stream(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t k = synth_mix64(seed ^ 0x5851f42d4c957f2dULL);
    k = synth_mix64(k ^ (a * 0x9e3779b97f4a7c15ULL));
    k = synth_mix64(k ^ (b * 0xd1b54a32d192ed03ULL + 0x632be59bd9b4e019ULL));
    return (synth_rng){k};
}

static inline uint64_t synth_next(synth_rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return synth_mix64(r->s);
}

/* Uniform on [0, 1) with 53 random bits. */
static inline double synth_u(synth_rng *r) {
    return (double)(synth_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n) by multiply-shift (Lemire 2019; the bias of
 * n / 2^32 is far below anything the model could show). */
static inline uint32_t synth_below(synth_rng *r, uint32_t n) {
    return (uint32_t)(((synth_next(r) >> 32) * (uint64_t)n) >> 32);
}

static inline int synth_bern(synth_rng *r, double p) {
    return synth_u(r) < p;
}

/* Standard normal by Box-Muller (one of the pair; the model draws few). */
static inline double synth_normal(synth_rng *r) {
    double u1 = 1.0 - synth_u(r), u2 = synth_u(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- the person record ---------------------------------------------------
 * One int per modelled column ("slot"); SYNTH_BLANK is an N/A field. The
 * model (synth_model.c) fills every slot of every person; the writer prints
 * slot values, zero-padded to the dictionary's code width for C codes. */
#define SYNTH_BLANK INT_MIN

enum synth_slot {
    S_DIVISION,
    S_PUMA,
    S_REGION,
    S_STATE,
    S_PWGTP,
    S_AGEP,
    S_CIT,
    S_CITWP,
    S_COW,
    S_DDRS,
    S_DEAR,
    S_DEYE,
    S_DOUT,
    S_DPHY,
    S_DREM,
    S_FER,
    S_HINS1,
    S_HINS2,
    S_HINS3,
    S_HINS4,
    S_HINS5,
    S_HINS6,
    S_HINS7,
    S_INTP,
    S_LANX,
    S_MAR,
    S_MIG,
    S_MIL,
    S_OIP,
    S_PAP,
    S_RELSHIPP,
    S_RETP,
    S_SCH,
    S_SCHG,
    S_SCHL,
    S_SEMP,
    S_SEX,
    S_SSIP,
    S_SSP,
    S_WAGP,
    S_WKHP,
    S_WKL,
    S_WKWN,
    S_WRK,
    S_YOEP,
    S_ANC,
    S_DECADE,
    S_DIS,
    S_ESP,
    S_ESR,
    S_HICOV,
    S_HISP,
    S_MSP,
    S_NATIVITY,
    S_OC,
    S_PAOC,
    S_PERNP,
    S_PINCP,
    S_POBP,
    S_PRIVCOV,
    S_PUBCOV,
    S_RAC1P,
    S_RACAIAN,
    S_RACASN,
    S_RACBLK,
    S_RACNH,
    S_RACNUM,
    S_RACPI,
    S_RACSOR,
    S_RACWHT,
    S_RC,
    S_WAOB,
    S_PWGTP1, /* .. S_PWGTP1 + 79 */
    S_NSLOTS = S_PWGTP1 + 80
};

typedef struct synth_person {
    int v[S_NSLOTS];
    /* model state the writer's gates need and no column holds */
    int gq;     /* 1 institutional group quarters, 2 non-institutional, 0 housing unit */
    int worked; /* worked in the past 12 months */
} synth_person;

#define SYNTH_MAX_PERSONS 20 /* SPORDER is 01..20 */

typedef struct synth_household {
    uint64_t index; /* 0-based; SERIALNO number is index + 1 */
    int gq;         /* 0 housing unit, else group quarters (one person) */
    int n;          /* persons */
    synth_person p[SYNTH_MAX_PERSONS];
} synth_household;

/* Tables the model draws codes from, built once from the dictionary. */
typedef struct synth_tables {
    int pob_us[64], n_pob_us;               /* POBP codes of the 50 states and DC */
    int pob_island[8], n_pob_island;        /* 060..099: PR and island areas */
    int pob_region[9][96], n_pob_region[9]; /* foreign POBP codes by WAOB (3..8) */
    int yoep[128], n_yoep;                  /* YOEP codes, ascending */
    int citwp[128], n_citwp;                /* CITWP codes, ascending */
} synth_tables;

dp_status synth_tables_init(synth_tables *t);

/* Fill `hh` with household `index` of the stream keyed by `seed`. */
void synth_model_household(const synth_tables *t, uint64_t seed, uint64_t index,
                           synth_household *hh);

/* ---- the writer ---------------------------------------------------------- */

/* How one output column is written. */
typedef struct synth_col {
    const dp_pums_var *var;
    int kind;                    /* SC_* below */
    int slot;                    /* SC_SLOT: the person slot */
    int pad;                     /* zero-pad integer codes to this many digits (C codes) */
    int dict_index;              /* index in the dictionary (dp_pums_person_var) */
    int gate;                    /* SC_GENERIC: when the field is N/A (G_* in synth_emit.c) */
    int gate_arg;                /* age limit, or the slot G_SLOT_EQ reads */
    int gate_val;                /* G_SLOT_EQ: the slot value that makes the field N/A */
    double p_blank;              /* extra chance of N/A where the gate allows a value */
    int flag01;                  /* allocation flag: "0" mostly */
    const char *special;         /* code for COW == 9 (INDP "9920", ...) */
    int defect_pool;             /* may receive an injected bad code / non-number */
    int missing_pool;            /* may receive an injected blank (no N/A row) */
    int bad_ints[4], n_bad_ints; /* integers outside the code list */
} synth_col;

struct generic_codes;

typedef struct synth_plan {
    synth_col *cols;
    struct generic_codes *generic; /* per column: the code rows a generic column draws */
    int year;
    int ncols;
    size_t max_row; /* bound on the bytes of one line */
    int defect_cols[16], n_defect_cols;
    int missing_cols[16], n_missing_cols;
    double invalid_rate, missing_rate;
    uint64_t seed;
    synth_tables tables;
    char *header; /* "RT,SERIALNO,...\n" */
    size_t header_len;
} synth_plan;

/* Row kinds, in the order of dp_synth_report's counters. */
enum { SR_CLEAN, SR_MISSING, SR_BAD_CODE, SR_BAD_NUMBER, SR_RAGGED, SR_DUPLICATE };

/* What the writer records for each line of a block. */
typedef struct synth_line {
    uint32_t end;    /* offset just past the line's '\n' in the block text */
    uint8_t kind;    /* SR_* */
    uint8_t esr;     /* ESR value, 0 when blank */
    int16_t missing; /* dictionary index of the blanked column, or -1 */
    uint8_t first;   /* first line of its household */
} synth_line;

dp_status synth_plan_init(synth_plan *plan, const dp_synth_config *cfg);
void synth_plan_free(synth_plan *plan);

/* Append the lines of household `hh` to buf at *len (capacity must allow
 * (n + n) * plan->max_row more bytes) and their records to lines[*nlines]. */
void synth_emit_household(const synth_plan *plan, const synth_household *hh, char *buf, size_t *len,
                          synth_line *lines, size_t *nlines);

#endif
