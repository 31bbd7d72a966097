/*
 * csv_internal.h: the pieces of the CSV reader that the parallel prep (and,
 * later, the distributed one) use directly: the chunker, which cuts the input
 * into buffers of whole records, and the record parser, which reads one
 * record from such a buffer, storing only the columns asked for.
 *
 * Record boundaries and quotes (the essay): a line end ends a record only
 * outside quotes, and whether a byte is inside quotes depends on every quote
 * before it. Under the reading rule of csv.h (every '"' toggles the quoting;
 * a doubled quote inside quotes toggles twice), the state at byte i is the
 * parity of the number of quotes in [0, i). So the state at the end of a
 * buffer is the state at its start XOR the parity of its quote count, and a
 * reader that knows the state at byte a can find the first record boundary
 * after a by itself. The chunker works this way sequentially (each chunk
 * starts outside quotes, at a record boundary); a distributed reader gives
 * rank r the byte range [a_r, a_{r+1}), gets the state at a_r and the number
 * of line ends before it from an exclusive scan of (quote parity, line ends)
 * over the ranks, and starts at the first boundary at or after a_r.
 */
#ifndef DP_CSV_INTERNAL_H
#define DP_CSV_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/csv.h"

/* Byte classes of the parser's scan loops. */
enum { CSV_C_PLAIN = 0, CSV_C_DELIM, CSV_C_LF, CSV_C_CR, CSV_C_QUOTE, CSV_C_NUL, CSV_C_HIGH };

/* What fatal thing a record held. */
typedef enum csv_fatal {
    CSV_OK = 0,
    CSV_E_NUL,          /* a NUL byte */
    CSV_E_UTF8,         /* invalid UTF-8 (byte in `byte`) */
    CSV_E_UNTERMINATED, /* a quoted field without its closing quote before the end */
    CSV_E_FIELD_LONG,   /* a field longer than max_field */
} csv_fatal;

/* The parser's configuration: options, byte classes, and which columns to
 * store. slot[c] (c < nslot) is where column c goes in `fields`, or -1;
 * columns >= nslot are counted but never stored. */
enum { CSV_MAX_NEED = 512 };

typedef struct csv_parser {
    dp_csv_options o;
    unsigned char cls[256];
    const int32_t *slot;
    size_t nslot;
    /* the stored columns in increasing order, for the block scanner (which
     * jumps from one to the next by counting delimiters); nneed > CSV_MAX_NEED
     * means "too many to list": the scanner is not used */
    uint32_t need[CSV_MAX_NEED];
    size_t nneed;
    int simd; /* use the block scanner (tests turn it off) */
} csv_parser;

/* The result of parsing one record. */
typedef struct csv_rec {
    size_t len;       /* raw bytes consumed, line end included */
    size_t nfields;   /* fields in the record, stored or not */
    uint32_t lines;   /* line ends consumed (inside quotes and the terminating one) */
    int blank;        /* an empty (or, with trim, blank-only) line: not a record */
    int flags;        /* DP_CSV_BAD_QUOTES */
    uint32_t bad_off; /* offset of the first quoting problem */
    csv_fatal fatal;  /* CSV_OK, or why the input cannot be read further */
    size_t fatal_off; /* offset of the fatal problem from the record start */
    unsigned char byte;
} csv_rec;

void csv_parser_init(csv_parser *p, const dp_csv_options *o, const int32_t *slot, size_t nslot);
/* Change which columns are stored (slot as for csv_parser_init). */
void csv_parser_set_slots(csv_parser *p, const int32_t *slot, size_t nslot);

/* Parse the record at [p, end): the buffer ends at a record boundary or at
 * the end of the data. fields[slot[c]] receives column c. Content that must
 * be rewritten (doubled quotes, malformed quoting) goes to scratch, which
 * must hold at least end - p bytes. Returns r->fatal. */
csv_fatal csv_parse_record(const csv_parser *ps, const char *p, const char *end,
                           dp_csv_field *fields, char *scratch, csv_rec *r);

/* The block scanner alone: 1 if it read the record (a plain one: no quote,
 * NUL or byte >= 0x80, at most a CR before the LF), 0 to leave it to the
 * field-by-field reading. */
int csv_scan_record(const csv_parser *ps, const char *p, const char *end, dp_csv_field *fields,
                    csv_rec *r);

/* The same, one byte at a time with one state machine and no shortcuts: the
 * plain reference that the scan loops of csv_parse_record must match. */
csv_fatal csv_parse_record_ref(const csv_parser *ps, const char *p, const char *end,
                               dp_csv_field *fields, char *scratch, csv_rec *r);

/* Record a fatal parse result as the thread's error, located in `name` at
 * line `line` (the record's first line). Returns its status. */
dp_status csv_fatal_error(const char *name, const char *rec_start, uint64_t line, const csv_rec *r,
                          const dp_csv_options *o);
/* The same with `line` a line of the stream of src, which names the file
 * and the line there (dp_source_locate: a part of a zip and its own line). */
dp_status csv_fatal_error_in(const dp_source *src, const char *rec_start, uint64_t line,
                             const csv_rec *r, const dp_csv_options *o);

/* Line and column of byte `off` of a record that starts at line `line`. */
void csv_locate(const char *rec, size_t off, uint64_t line, uint64_t *out_line, uint64_t *out_col);

/* Length of the valid UTF-8 sequence at p (p[0] >= 0x80), or 0 if invalid. */
int csv_utf8_len(const unsigned char *p, const unsigned char *end);

/* Quote parity of [p, p + n) and the number of line ends in it. */
int csv_quote_parity(const char *p, size_t n);
size_t csv_count_lines(const char *p, size_t n);

/* Offset just past the last line end of [p, p + n) that lies outside quotes,
 * given the quoting state at p (0 = outside); 0 if there is none. */
size_t csv_last_boundary(const char *p, size_t n, int in_quotes_at_start);

/* A buffer of whole records cut from the input. */
typedef struct csv_chunk {
    char *buf;
    size_t cap;
    size_t len;      /* bytes of whole records (all of the rest, for the final chunk) */
    size_t start;    /* first byte to parse (after a byte order mark or the header) */
    uint64_t line;   /* line number of buf[start] in the stream (dp_source_locate) */
    uint64_t offset; /* offset of buf[0] in the decompressed stream */
    int final;       /* the last chunk */
} csv_chunk;

typedef struct csv_chunker {
    dp_source *src;
    size_t chunk_bytes, max_record;
    char *carry;
    size_t carry_len, carry_cap;
    uint64_t line, offset;
    int eof, started, done;
    int bom; /* a byte order mark was skipped */
} csv_chunker;

/* chunk_bytes: target chunk size (a chunk holds at least one whole record and
 * grows up to max_record for one long record). */
dp_status csv_chunker_init(csv_chunker *ck, dp_source *src, size_t chunk_bytes, size_t max_record);
void csv_chunker_free(csv_chunker *ck);
/* Fill c (its buffer grows as needed and is reused) with the next chunk;
 * *got = 0 at the end. */
dp_status csv_chunker_next(csv_chunker *ck, csv_chunk *c, int *got);
void csv_chunk_free(csv_chunk *c);

#endif
