/*
 * synth.h: a synthetic ACS PUMS person file, for work without the real one.
 *
 * dp_synth_write() writes a CSV that a PUMS reader cannot tell from the
 * Census Bureau's person file by its format: the real header (all 287 person
 * columns of the compiled dictionary, or a minimal subset, in dictionary
 * order), codes written as the real files write them, persons grouped by
 * household, and blanks exactly where the dictionary says N/A. Values come
 * from a documented generative model (docs/synth.md) with the joint structure
 * the tasks need (education by age; labour force and unemployment by age,
 * sex, education, disability, race, citizenship). A configurable share of
 * records is damaged on purpose (out-of-range codes, non-numeric fields,
 * ragged rows, duplicate SERIALNO+SPORDER) and a share gets one extra blank
 * where the dictionary allows none; the report counts each kind written.
 *
 * Deterministic: the same config and seed give the same bytes whatever the
 * number of threads. Streaming: memory does not grow with `rows`. A path
 * ending in ".gz" is written gzip-compressed. The file is written under a
 * temporary name and renamed, so no half-written output is ever left.
 */
#ifndef DPSGD_SYNTH_H
#define DPSGD_SYNTH_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which columns the header holds. */
typedef enum dp_synth_columns {
    DP_SYNTH_FULL = 0,    /* all person columns of the dictionary (287 for 2023) */
    DP_SYNTH_MINIMAL = 1, /* RT, SERIALNO, SPORDER, PUMA, STATE, PWGTP, AGEP, CIT, COW, DEAR,
                             DEYE, DREM, MAR, MIG, MIL, RELSHIPP, SCHL, SEX, WKHP, ANC, DIS,
                             ESP, ESR, HISP, NATIVITY, PINCP, RAC1P (dictionary order) */
} dp_synth_columns;

/* Largest --rows: SERIALNO numbers households with 7 digits. */
#define DP_SYNTH_MAX_ROWS 20000000ULL

typedef struct dp_synth_config {
    uint64_t rows; /* data lines to write (header not counted); 0 writes the header only */
    uint64_t seed; /* every value is a function of (seed, household, person) */
    dp_synth_columns columns; /* DP_SYNTH_FULL (default) or DP_SYNTH_MINIMAL */
    double invalid_rate;      /* probability that a record is damaged (default 0.005) */
    double missing_rate;      /* probability that an undamaged record gets one extra blank in
                                 a column that cannot be blank (default 0.01) */
    int year;                 /* survey year; must equal dp_pums_year() (default) */
    int threads;              /* OpenMP threads; 0 = the OpenMP default */
    int force;                /* replace an existing output file */
    int gzip_level;           /* 1..9 for .gz output (default 1: fast) */
} dp_synth_config;

/* What was written, counted line by line as it went to the file. Every data
 * line is exactly one of: clean, missing, bad_code, bad_number, ragged,
 * duplicate. */
typedef struct dp_synth_report {
    uint64_t rows;       /* data lines written */
    uint64_t households; /* distinct SERIALNO values written */
    uint64_t clean;      /* valid against the dictionary and its N/A rules */
    uint64_t missing;    /* clean but for one blank in a column without an N/A row */
    uint64_t bad_code;   /* one integer field outside its code list (AGEP 101, SEX 3, ...) */
    uint64_t bad_number; /* one field that is not a number ("NA", "1.5", "?") */
    uint64_t ragged;     /* one field too few or one too many */
    uint64_t duplicate;  /* an exact copy of an earlier clean line of the same household */
    /* Extra blanks by dictionary variable index (dp_pums_person_var(i)); sums to `missing`. */
    uint64_t missing_by_var[320];
    /* Among clean and missing lines: ESR in 1..5 (labour force), ESR == 3, ESR == 1. */
    uint64_t labor_force, unemployed, employed_at_work;
    uint64_t bytes;      /* CSV bytes (before compression) */
    uint64_t file_bytes; /* bytes of the file written */
    int columns;         /* columns in the header */
} dp_synth_report;

/* Defaults: 1000 rows, seed 1, full columns, invalid 0.005, missing 0.01,
 * year dp_pums_year(), threads 0, no force, gzip level 1. */
DP_API void dp_synth_config_default(dp_synth_config *cfg);

/* Write the file. `report` may be NULL. Statuses: DP_E_USAGE (rates outside
 * [0, 1], rows above DP_SYNTH_MAX_ROWS, bad level), DP_E_UNSUPPORTED (a year
 * other than the compiled dictionary's), DP_E_EXISTS (path exists and not
 * force), DP_E_IO (cannot create, write or rename), DP_E_NOMEM. On failure
 * nothing is left at `path` that was not there before. */
DP_API dp_status dp_synth_write(const char *path, const dp_synth_config *cfg,
                                dp_synth_report *report);

#ifdef __cplusplus
}
#endif
#endif
