/*
 * prep.h: from a raw census CSV (plain, .csv.gz, or a zip holding one CSV)
 * to a dataset directory (dataset.h): parse, validate, drop invalid records
 * (each reason counted), impute missing values, one-hot encode categoricals
 * from the PUMS dictionary's code lists and scale numeric columns by public
 * ranges, split stratified by label, write meta.json + .npy arrays. The
 * statistics the encoding uses come from the dictionary or the user
 * (`public`, the default) or from the data (`exact`: not private, and
 * meta.json says so). docs/prep.md describes tasks, reasons and formats.
 *
 * Parsing is streaming and parallel (OpenMP over chunks of whole records,
 * merged in file order), so the output does not depend on the thread count,
 * and memory is bounded by the output, not the input. Under MPI each rank
 * parses a byte range of the file (dp_prep_run_dist), and the output does
 * not depend on the number of ranks either.
 */
#ifndef DPSGD_PREP_H
#define DPSGD_PREP_H
#include <stddef.h>
#include <stdint.h>
#include "comm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dp_prep_stats {
    DP_PREP_STATS_PUBLIC = 0, /* dictionary code lists and ranges, --range, --categories */
    DP_PREP_STATS_EXACT = 1,  /* imputation values (mode, median) and missing ranges from the
                                 data: not private */
    DP_PREP_STATS_DP = 2,     /* imputation values from one Gaussian release of the
                                 columns' histograms over their public domains, charged to
                                 the privacy ledger in meta.json (docs/privacy.md) */
} dp_prep_stats;

typedef struct dp_prep_config {
    const char *input;  /* CSV path ("-": standard input) */
    const char *output; /* dataset directory to create */
    /* The task: "unemployment" or "employment" (PUMS), or NULL for the
     * custom task given by target/positive/features (NULL and no target:
     * unemployment). */
    const char *task;
    const char *target;     /* custom: the label column */
    const char *positive;   /* custom: comma-separated target values labelled 1 */
    const char *population; /* custom, optional: comma-separated target values kept
                               (default: every valid, non-missing value) */
    const char *features;   /* custom: comma-separated feature columns */
    const char *columns;    /* comma-separated names when the file has no header row */
    const char *na;         /* comma-separated tokens that mean "missing" (blank always does
                               where the dictionary does not make it a code) */
    /* Public descriptions of columns outside the dictionary: "COL:LO:HI"
     * (numeric, range [LO, HI]) and "COL:V1|V2|..." (categorical, those
     * values); columns named in `categorical` (comma-separated) are
     * categorical with categories from the data. */
    const char *const *ranges;
    size_t n_ranges;
    const char *const *categories;
    size_t n_categories;
    const char *categorical;
    int dictionary;      /* 1 (default): columns named as in the PUMS dictionary use it */
    double split[3];     /* train, validation, test fractions; sum 1 (default .8 .1 .1) */
    uint64_t seed;       /* of the split (default 0) */
    dp_prep_stats stats; /* default DP_PREP_STATS_PUBLIC */
    /* DP_PREP_STATS_DP: the noise multiplier sigma_s of the histogram release
     * (0: 5), or a target epsilon (0: unused; not with stats_noise) at
     * stats_delta (0: 1e-5) that sigma_s is calibrated for (q = 1, one step).
     * stats_seeded: the noise key is dp_key_from_seed(seed, "prep-stats")
     * (reproducible; meta.json says "seeded"), else from the OS. */
    double stats_noise;
    double stats_epsilon;
    double stats_delta;
    int stats_seeded;
    int threads;         /* OpenMP threads; 0 = the OpenMP default */
    int force;           /* replace an existing dataset directory (only once the new one is
                            complete; a directory that is not a dpsgd dataset is never
                            replaced) */
    size_t max_field;    /* longest field in bytes; 0 = 1 MiB */
    size_t chunk_bytes;  /* bytes per parse chunk; 0 = 4 MiB (tests use tiny ones) */
} dp_prep_config;

DP_API void dp_prep_config_init(dp_prep_config *c);

typedef struct dp_prep_result dp_prep_result;

/* Run prep. On success the dataset directory exists, complete, and *out
 * (may be NULL if not wanted) holds the result. On failure nothing is left
 * at config->output that was not there before. Statuses: DP_E_USAGE (bad
 * config), DP_E_IO, DP_E_FORMAT (unreadable CSV: unterminated quote, NUL,
 * bad UTF-8, over-long field, damaged .gz/.zip), DP_E_SCHEMA (header: missing
 * or duplicate columns), DP_E_EMPTY (no record, or no valid one), DP_E_EXISTS,
 * DP_E_PRIVACY (stats_epsilon unreachable). */
DP_API dp_status dp_prep_run(const dp_prep_config *config, dp_prep_result **out);
/* The same on every rank of comm (collective; comm NULL: this process alone,
 * exactly dp_prep_run): a plain file is read by byte ranges, one per rank,
 * cut at record boundaries (a .gz, .zip or standard input by rank 0 alone);
 * counts, duplicate keys and statistics are combined across ranks; each rank
 * writes its rows' slices of the arrays, rank 0 meta.json. The dataset
 * equals the one-process one byte for byte, but for meta.json's last object
 * "run" (ranks, threads, timings). Every rank returns the same status (the
 * lowest failing rank's, its message prefixed "rank K: "), and on success
 * *out holds meta.json's text on every rank. */
DP_API dp_status dp_prep_run_dist(const dp_prep_config *config, dp_comm *comm,
                                  dp_prep_result **out);
DP_API void dp_prep_result_free(dp_prep_result *r);
/* The meta.json text that was written (it holds the quality report under
 * "report" and warnings under "warnings"). Owned by the result. */
DP_API const char *dp_prep_result_meta(const dp_prep_result *r);

/* ---- encoding new data with a dataset's schema (for `predict`) ---- */

/* Why a record was not encoded; 0 means it was. */
typedef enum dp_prep_reason {
    DP_PREP_VALID = 0,
    DP_PREP_WRONG_FIELD_COUNT = 1, /* ragged row */
    DP_PREP_BAD_QUOTING = 2,       /* readable but malformed quotes */
    DP_PREP_MISSING_LABEL = 3,     /* (prep only) the target is blank or NA */
    DP_PREP_NON_NUMERIC = 4,       /* a number was expected */
    DP_PREP_OUT_OF_RANGE = 5,      /* not a code of the column, or outside its range */
    DP_PREP_MISSING_KEY = 6,       /* (prep only) SERIALNO or SPORDER blank */
    DP_PREP_DUPLICATE_KEY = 7,     /* (prep only) SERIALNO+SPORDER seen before */
    DP_PREP_NOT_IN_POPULATION = 8, /* (prep only) outside the task's population: not an error */
    DP_PREP_REASONS = 9
} dp_prep_reason;

/* "wrong_field_count", "bad_quoting", ... as used in meta.json; "valid" for 0. */
DP_API const char *dp_prep_reason_name(int reason);

/* A raw CSV encoded with a dataset's encodings: one row per record of the
 * file (header and blank lines excepted), in file order. */
typedef struct dp_prep_encoded {
    size_t n;        /* records */
    size_t d;        /* encoded columns (n_features of the dataset) */
    float *X;        /* [n, d] row-major; a row whose reason is not 0 is all zeros */
    uint8_t *reason; /* [n] dp_prep_reason: 0 = encoded */
    int32_t *y;      /* [n] label where the file has a valid target value, else -1 */
    uint64_t *line;  /* [n] line number of each record, for messages */
    size_t n_valid;  /* rows with reason 0 */
    char schema_hash[65];
} dp_prep_encoded;

/* Encode `csv_path` (same column names as the dataset's input; the target
 * column may be absent) with the encodings stored in dataset_dir/meta.json:
 * the same categories, scaling, imputation, NA tokens and header handling as
 * the dataset. Records that are invalid get a non-zero reason, never dropped
 * silently. The population filter of the task is not applied. Statuses as
 * dp_prep_run, plus DP_E_FORMAT/DP_E_SCHEMA for a missing or foreign
 * meta.json. Free with dp_prep_encoded_free. threads: 0 = default. */
DP_API dp_status dp_prep_encode_file(const char *dataset_dir, const char *csv_path, int threads,
                                     dp_prep_encoded *out);
DP_API void dp_prep_encoded_free(dp_prep_encoded *e);

#ifdef __cplusplus
}
#endif
#endif
