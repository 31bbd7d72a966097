/*
 * csv.h: a streaming CSV reader (RFC 4180) over any dp_source (plain, gzip,
 * zip). Quoted fields with doubled quotes and embedded line ends; CRLF and LF
 * line ends; optional trimming of spaces and tabs around fields; a UTF-8 byte
 * order mark at the start is skipped. The reader hands out whole records;
 * whether a record has the right number of fields is the caller's business
 * (prep counts and drops ragged rows, it does not stop on them).
 *
 * Fatal errors, each one line "file:line:column: what (what was expected)",
 * with column counted in bytes from 1: an unterminated quoted field, a NUL
 * byte, invalid UTF-8, a field longer than max_field, a record longer than
 * max_record. Malformed quoting that can still be read (`ab"c`, `"a"b`) is
 * not fatal: the record is flagged DP_CSV_BAD_QUOTES and read with the rule
 * "every quote toggles quoting, a doubled quote inside quotes is one quote",
 * the same rule by which the parallel reader finds line boundaries, so every
 * reader agrees where each record starts.
 */
#ifndef DPSGD_CSV_H
#define DPSGD_CSV_H
#include <stddef.h>
#include <stdint.h>
#include "source.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_csv_options {
    char delimiter;    /* ',' (default) */
    int trim;          /* 1: drop spaces (and tabs unless the delimiter) around fields, outside
                          quotes (default 0) */
    size_t max_field;  /* longest raw field in bytes (default 1 MiB) */
    size_t max_record; /* longest raw record in bytes (default 64 MiB) */
} dp_csv_options;

#define DP_CSV_MAX_FIELD_DEFAULT ((size_t)1 << 20)
#define DP_CSV_MAX_RECORD_DEFAULT ((size_t)64 << 20)

DP_API void dp_csv_options_init(dp_csv_options *o);

/* One field: content with quotes removed and doubled quotes undone; not
 * NUL-terminated; valid until the next dp_csv_next. */
typedef struct dp_csv_field {
    const char *p;
    uint32_t len;
    uint32_t off; /* offset of the field's first raw byte from the record's first byte */
} dp_csv_field;

enum { DP_CSV_BAD_QUOTES = 1 };

typedef struct dp_csv_record {
    const dp_csv_field *fields; /* fields[0 .. nfields) */
    size_t nfields;             /* >= 1 for a record; 0 at the end of the file */
    uint64_t line;              /* physical line of the record's first byte in the source's
                                   stream, from 1 (a zip of several parts: of the parts read
                                   one after another without their repeated headers;
                                   dp_source_locate gives the part and its own line) */
    int flags;                  /* DP_CSV_BAD_QUOTES */
    uint32_t bad_off;           /* where the quoting went wrong, when flagged */
    const char *raw;            /* the record's raw bytes, for dp_csv_position */
    size_t raw_len;
} dp_csv_record;

typedef struct dp_csv_reader dp_csv_reader;

/* Open `path` through dp_source_open (so .gz and .zip work) and read CSV
 * records from it. o may be NULL for the defaults. A zip of several .csv
 * parts is taken to repeat its header in every part (dp_source_open's
 * default); for parts without a header open the source with
 * dp_source_open_with (header 0) and use dp_csv_open_source. */
DP_API dp_status dp_csv_open(const char *path, const dp_csv_options *o, dp_csv_reader **out);
/* Read records from an open source; the reader borrows it (close it after
 * the reader). */
DP_API dp_status dp_csv_open_source(dp_source *src, const dp_csv_options *o, dp_csv_reader **out);
DP_API void dp_csv_close(dp_csv_reader *r);

/* The next record into *rec (nfields == 0 at the end). Empty lines (and,
 * with trim, lines of only blanks) are skipped and counted, not returned. */
DP_API dp_status dp_csv_next(dp_csv_reader *r, dp_csv_record *rec);

/* Empty lines skipped so far; the source being read. */
DP_API uint64_t dp_csv_blank_lines(const dp_csv_reader *r);
DP_API dp_source *dp_csv_source(dp_csv_reader *r);

/* Line and byte column (from 1) of byte `off` of a record (a field's off,
 * or bad_off): line counts the line ends inside quoted fields before it
 * (a line of the stream, as dp_csv_record.line). */
DP_API void dp_csv_position(const dp_csv_record *rec, size_t off, uint64_t *line, uint64_t *col);

#ifdef __cplusplus
}
#endif
#endif
