/*
 * prep_internal.h: what the files of prep share, inside the library only.
 *   task.c    the tasks (unemployment, employment, custom): target, population,
 *             label, features, and the SERIALNO+SPORDER record key
 *   encode.c  one feature column: its public description (dictionary, --range,
 *             --categories) or one inferred from the data, the parse of a
 *             field into a cell, imputation, one-hot/scaled columns, JSON
 *   split.c   the stratified train/validation/test split
 *   outdir.c  creating the dataset directory under a temporary name and
 *             publishing it atomically
 *   prep.c    the parallel driver and meta.json; prep_encode.c the encoder of
 *             new data for predict.
 *
 * A cell is one parsed feature value of one kept row (4 bytes): a category
 * index (-1 missing) or a float (NaN missing, -inf a blank the dictionary
 * allows as N/A); for a column whose kind is inferred from the data, the id
 * of its interned string until prep_feature_finalize rewrites it.
 */
#ifndef DP_PREP_INTERNAL_H
#define DP_PREP_INTERNAL_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/comm.h"
#include "dpsgd/prep.h"
#include "dpsgd/pums.h"

typedef union prep_cell {
    float f;
    int32_t i;
} prep_cell;

enum { PREP_NUMERIC = 0, PREP_CATEGORICAL = 1 };
enum { PREP_FROM_DICTIONARY = 0, PREP_FROM_USER = 1, PREP_FROM_DATA = 2 };
enum { PREP_IMPUTE_MIDPOINT, PREP_IMPUTE_MEDIAN, PREP_IMPUTE_MISSING_CATEGORY, PREP_IMPUTE_MODE };

/* prep_feature_parse results besides a dp_prep_reason (> 0). */
enum { PREP_PARSE_OK = 0, PREP_PARSE_MISSING = -1, PREP_PARSE_STRING = -2 };

/* The tokens that mean "missing" (besides a blank where it is not a code). */
typedef struct prep_na {
    char **tok;
    size_t n;
} prep_na;

typedef struct prep_span {
    long long lo, hi;
} prep_span;

typedef struct prep_feature {
    char *name;
    int kind;     /* PREP_NUMERIC or PREP_CATEGORICAL (decided at finalize when inferred) */
    int origin;   /* PREP_FROM_*: where the kind, code list or range come from */
    int inferred; /* kind and values from the data, known only at finalize */
    int forced_categorical;
    char dict_type; /* 'C'/'N' for a dictionary column, 0 otherwise */
    int width;      /* longest valid field (dictionary), 0 = any */
    /* categorical */
    char **cats; /* values; "" is the dictionary's blank (N/A) */
    size_t ncat;
    long long *cat_int; /* integer value of cats[k], when cat_is_int[k] */
    uint8_t *cat_is_int;
    int blank_cat;   /* index of "" or -1 */
    int missing_col; /* a "missing" column after the categories */
    int32_t *lut;    /* integer value lut_lo + j -> category index or -1 */
    long long lut_lo;
    size_t lut_n;
    /* numeric */
    double lo, hi; /* scaling: (x - lo) / (hi - lo) */
    int scale_origin;
    prep_span *spans; /* valid integer values (dictionary), sorted, disjoint */
    size_t nspans;
    int integer;     /* values must be integers */
    int check_range; /* values outside [lo, hi] (or the spans) are out of range */
    int blank_na;    /* blank is a valid N/A: an indicator column "<name>=N/A" */
    /* imputation */
    int impute;
    double impute_num;
    int impute_cat; /* -1 none */
    int impute_origin;
    /* result of finalize */
    size_t col0, ncols;
    uint64_t missing_kept; /* missing cells among the kept rows (imputed) */
} prep_feature;

/* ---- encode.c ---- */
dp_status prep_feature_from_dictionary(prep_feature *f, const dp_pums_var *var);
dp_status prep_feature_from_range(prep_feature *f, const char *name, double lo, double hi);
dp_status prep_feature_from_categories(prep_feature *f, const char *name, char **values, size_t n);
dp_status prep_feature_inferred(prep_feature *f, const char *name, int categorical);
void prep_feature_free(prep_feature *f);

int prep_is_na(const prep_na *na, const char *p, size_t len);
/* Parse one field: PREP_PARSE_OK (cell set), PREP_PARSE_MISSING (cell set to
 * the missing marker), PREP_PARSE_STRING (inferred column: the caller interns
 * the text), or a dp_prep_reason. */
int prep_feature_parse(const prep_feature *f, const prep_na *na, const char *p, size_t len,
                       prep_cell *cell);
/* Integer parse of a field: optional sign (if allowed), digits only. */
int prep_parse_int(const char *p, size_t len, int allow_sign, long long *out);
/* Finite decimal number (strtod syntax, C locale). */
int prep_parse_double(const char *p, size_t len, double *out);

/* Decide an inferred column from its distinct strings (strs[0..n), in first-
 * seen order): numeric when every one is a number and the column was not
 * declared categorical. remap[id] receives the value (as a cell) of string id. */
dp_status prep_feature_resolve(prep_feature *f, char **strs, size_t n, prep_cell *remap);
/* Imputation and output columns, from the kept cells of this feature
 * (cells[i * stride], i < n) of every rank of comm (NULL: this process
 * alone; collective otherwise). col0: its first output column. */
dp_status prep_feature_finalize(prep_feature *f, dp_prep_stats stats, const prep_cell *cells,
                                size_t n, size_t stride, size_t col0, dp_comm *comm);
/* Write the feature's columns of one row (x[col0 .. col0 + ncols), already 0). */
void prep_feature_encode(const prep_feature *f, prep_cell cell, float *x);
/* A numeric feature's imputation when no statistic of the data is used:
 * the midpoint of its scaling range, from wherever that range came. */
void prep_impute_midpoint(prep_feature *f);
/* Append the names of its columns ("AGEP", "SCHL=01", "SCHL=missing"). */
dp_status prep_feature_column_names(const prep_feature *f, cJSON *names);
cJSON *prep_feature_to_json(const prep_feature *f);
dp_status prep_feature_from_json(prep_feature *f, const cJSON *j, const char *where);

/* ---- task.c ---- */
typedef struct prep_value {
    char *text;
    long long iv;
    int is_int;
} prep_value;

typedef struct prep_task {
    char *name;                    /* "unemployment", "employment", "custom" */
    char *target;                  /* column name */
    const dp_pums_var *target_var; /* the dictionary's, or NULL (text comparison) */
    prep_value *pos;               /* target values labelled 1 */
    size_t npos;
    prep_value *pop; /* target values in the population; NULL = every valid value */
    size_t npop;
    char *population; /* in words */
    char *classes[2];
    char **features; /* feature columns */
    size_t nfeat;
    const dp_pums_var **feature_vars; /* dictionary variable of each (NULL outside it) */
    int key; /* SERIALNO and SPORDER are both in the file: duplicates are dropped */
} prep_task;

/* Build the task from the config and the header (column names), resolving
 * RELP/RELSHIPP and checking that every required column is there. */
dp_status prep_task_build(prep_task *t, const dp_prep_config *c, char **cols, size_t ncols,
                          const char *file);
void prep_task_free(prep_task *t);
dp_status prep_values_parse(const char *list, prep_value **out, size_t *n, const char *what);
void prep_values_free(prep_value *v, size_t n);
/* Check a target field: 0 with *label and *in_pop set, or a dp_prep_reason. */
int prep_task_label(const prep_task *t, const prep_na *na, const char *p, size_t len, int *label,
                    int *in_pop);
/* The record key of SERIALNO (yyyyHUnnnnnnn or yyyyGQnnnnnnn) and SPORDER:
 * 0 and *key, or a dp_prep_reason. */
int prep_task_key(const char *serial, size_t slen, const char *spord, size_t plen, uint64_t *key);
/* The RELP dictionary (files up to 2018) that the 2023 one lacks. */
const dp_pums_var *prep_relp_var(void);

/* ---- split.c ---- */
/* Assign each row to 0 train, 1 validation, 2 test: per class, the sizes by
 * largest remainder of n_c * frac, then a seeded Fisher-Yates permutation of
 * the class's rows (file order) fills train, validation, test in turn. */
dp_status prep_split(const int32_t *label, size_t n, int nclass, const double frac[3],
                     uint64_t seed, uint8_t *split, size_t counts[3]);
/* The same for one class of m rows: out[j] (j < m) is the part of the
 * class's j-th row in file order. prep_split is this for every class. */
dp_status prep_split_class(size_t m, const double frac[3], uint64_t seed, int c, uint8_t *out);

/* ---- outdir.c ---- */
/* Make a fresh temporary directory beside `out` ("OUT.tmp-XXXXXX"): refuse
 * an existing `out` unless force (and even then one that is not a dataset). */
dp_status prep_outdir_begin(const char *out, int force, char **tmp);
/* Move the complete temporary directory to `out` (atomic exchange with an
 * old dataset when forced, which is then removed). */
dp_status prep_outdir_commit(const char *tmp, const char *out, int force);
/* Remove a temporary directory and its files (after a failure). */
void prep_outdir_abort(const char *tmp);
/* A .npy array written by several ranks: prep_npy_create makes `path` with
 * its header and its full size (the data zero) for rows x cols ("<f4", ndim
 * 2) or rows ("<i4", ndim 1); each rank then puts its contiguous rows with
 * prep_npy_write_at at prep_npy_data_offset + first row * row bytes (fsynced).
 * The bytes equal dp_npy_write's for the same array. */
size_t prep_npy_data_offset(const char *descr, int ndim, uint64_t rows, uint64_t cols);
dp_status prep_npy_create(const char *path, const char *descr, int ndim, uint64_t rows,
                          uint64_t cols);
dp_status prep_npy_write_at(const char *path, uint64_t offset, const void *data, size_t bytes);

/* ---- prep_engine.c: parse, validate and collect rows, in parallel ---- */
#include "data/csv_internal.h"

/* Where a reason was first seen, for the report ("file:line:col: detail"). */
typedef struct prep_first {
    int have;
    uint64_t line, col;
    uint64_t seen; /* a duplicate key: the line where it was first seen (0: not a duplicate);
                      the message adds "on line N" (a part's line in a zip of several) */
    char detail[200];
} prep_first;

/* Distinct strings of a column whose kind comes from the data. */
typedef struct prep_interner {
    char **str;
    size_t n, cap;
    uint32_t *tab; /* open addressing: id + 1, 0 empty */
    uint64_t *hash;
    size_t tcap;
} prep_interner;

/* What the engine reads: set up by the caller, read-only during a run. */
typedef struct prep_engine {
    const char *name; /* the source, for messages */
    const dp_source *src; /* where line numbers are located (a zip's part and its line);
                             NULL: `name` and lines of the stream (ranks other than 0) */
    dp_csv_options copt;
    size_t ncols;    /* fields per record (header columns) */
    char **colnames; /* [ncols] */
    int32_t *slot;   /* [ncols]: column -> used index or -1 */
    size_t nused;
    const char **used_name;          /* [nused] */
    int u_target, u_serial, u_spord; /* used indices, -1 when not used */
    int *u_feat;                     /* [nfeat] */
    prep_feature *feat;
    size_t nfeat;
    const prep_task *task; /* NULL: no target (predict on a file without it) */
    prep_na na;
    int predict;   /* keep every record in order with its reason; no population, no keys */
    int keyed;     /* drop duplicate SERIALNO+SPORDER */
    int keep_keys; /* keyed: also keep each kept row's key (prep_rows.key), for the check
                      across ranks */
    int threads;   /* >= 1 */
    size_t chunk_bytes;
} prep_engine;

/* What a run collected: the kept rows (all records when predicting) in file
 * order, and the counts of the quality report. */
typedef struct prep_rows {
    size_t n, cap;
    prep_cell *cells; /* [n][nfeat] */
    int32_t *label;   /* [n]; -1 where unknown (predict) */
    uint8_t *reason;  /* [n] (predict) */
    uint64_t *line;   /* [n] line of each row's record */
    uint64_t *key;    /* [n] SERIALNO+SPORDER key (engine keep_keys only) */
    uint64_t records, blank, filtered, bytes;
    uint64_t dropped[DP_PREP_REASONS];
    uint64_t *dropped_col; /* [DP_PREP_REASONS][nused] */
    uint64_t *missing;     /* [nused]: among records of the population */
    prep_first first[DP_PREP_REASONS];
    prep_interner *strings; /* [nfeat]: for inferred features */
    /* SERIALNO+SPORDER keys seen (open addressing, key + 1, 0 empty) and their lines */
    uint64_t *keys, *key_line;
    size_t nkeys, kcap;
} prep_rows;

dp_status prep_intern(prep_interner *in, const char *p, size_t n, int32_t *id);
void prep_interner_free(prep_interner *in);

/* Read the header (the first record that is not blank) from the first chunk:
 * *cols (ncols names, trimmed, checked unique), and first->start moved past
 * it. *got = 0 if the input holds nothing. */
dp_status prep_read_header(csv_chunker *ck, csv_chunk *first, const dp_csv_options *o,
                           const char *name, char ***cols, size_t *ncols, int *got);
void prep_free_names(char **names, size_t n);
/* Map the used columns (target, features, keys) onto the header. */
dp_status prep_engine_map(prep_engine *e);
void prep_engine_free(prep_engine *e);
/* Parse every chunk (the first one given, already read) with e->threads
 * threads; rows merged in file order, so the result does not depend on the
 * number of threads or the chunk size. */
dp_status prep_engine_run(const prep_engine *e, csv_chunker *ck, csv_chunk *first, prep_rows *out);
void prep_rows_free(prep_rows *r, size_t nfeat);
/* Record the first duplicate key: the record at `line` repeats the one at `seen`. */
void prep_note_duplicate(prep_first *f, uint64_t line, uint64_t seen);

/* ---- prep_dist.c: several ranks (comm may be NULL: one process) ----
 * Every function here is collective: all ranks call it in the same order,
 * and each returns the status agreed by all (dp_comm_agree: the lowest
 * failing rank's message), so a failure never leaves a rank waiting. */
int prep_rank(const dp_comm *c);
int prep_ranks(const dp_comm *c);
dp_status prep_agree(dp_comm *c, dp_status local);
/* The same after a phase that keeps some ranks much longer than others:
 * those done first wait asleep, not spinning in MPI. */
dp_status prep_agree_idle(dp_comm *c, dp_status local);
dp_status prep_sum(dp_comm *c, uint64_t *buf, size_t n); /* element-wise over ranks */
dp_status prep_bcast(dp_comm *c, void *buf, size_t bytes, int root);

/* Not collective: the quote parity and line ends of the bytes [a, b) of the
 * file open as fd; and the first record boundary at or after a (just past
 * a line end outside quotes, given the quote state and line number at a),
 * with the line number there: size if there is none. */
dp_status prep_range_scan(int fd, const char *name, uint64_t a, uint64_t b, int *parity,
                          uint64_t *lines);
dp_status prep_range_start(int fd, const char *name, uint64_t a, uint64_t size, int state_at_a,
                           uint64_t line_at_a, uint64_t *start, uint64_t *line);
/* This rank's records of the plain file `path` whose data (after the header)
 * are the bytes [data_begin, size), starting on line data_line: the byte
 * range [*begin, *end), cut at record boundaries, and the line at *begin.
 * The ranges of ranks 0..R-1 are ascending and cover the data exactly. */
dp_status prep_dist_range(dp_comm *c, const char *path, uint64_t data_begin, uint64_t data_line,
                          uint64_t size, uint64_t *begin, uint64_t *end, uint64_t *line);
/* Drop this rank's kept rows whose SERIALNO+SPORDER a lower rank kept (each
 * rank's engine, with keep_keys, dropped its own repeats), counting them as
 * duplicate_key with the first one's location, as one process would. */
dp_status prep_dist_dedup(dp_comm *c, const prep_engine *e, prep_rows *r);
/* Sum every count of the quality report over the ranks (into r) and take
 * each reason's first example from the lowest rank that has one;
 * *n_total: the kept rows of all ranks. */
dp_status prep_dist_counts(dp_comm *c, const prep_engine *e, prep_rows *r, uint64_t *n_total);
/* Decide the inferred feature k from the distinct strings of every rank's
 * kept rows (prep_feature_resolve) and rewrite this rank's cells. */
dp_status prep_dist_strings(dp_comm *c, prep_feature *f, prep_rows *r, size_t k, size_t nf);
/* The ks[j]-th smallest finite float (from 0) of cells[i * stride].f over all
 * ranks, j < nk <= 2 (each ks[j] below the global count), into out[j]; -0
 * counts as +0. */
dp_status prep_dist_kth(dp_comm *c, const prep_cell *cells, size_t n, size_t stride,
                        const uint64_t *ks, int nk, float *out);

#endif
