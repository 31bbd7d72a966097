/*
 * source.h: the bytes of an input file, whatever its packaging: plain text,
 * gzip (.csv.gz, zlib; concatenated members allowed) or a zip archive holding
 * .csv members (libzip). The Census Bureau ships each state's PUMS file as
 * csv_pXX.zip with one CSV and a README PDF, and the national file as
 * csv_pus.zip with the one table split in parts psam_pusa.csv ..
 * psam_pusd.csv, each with the same header: several parts are read as one
 * table. The kind is found from the file's magic bytes, not its name.
 * Reading is streaming (memory does not grow with the file) and hashes the
 * file's own bytes with SHA-256 (libsodium) as it goes, so the dataset can
 * record which file it came from at no extra pass.
 */
#ifndef DPSGD_SOURCE_H
#define DPSGD_SOURCE_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_source dp_source;

typedef enum dp_source_kind {
    DP_SOURCE_PLAIN = 0, /* the file is the text itself */
    DP_SOURCE_GZIP = 1,  /* gzip stream(s), RFC 1952 */
    DP_SOURCE_ZIP = 2,   /* zip archive; its members named *.csv are read */
} dp_source_kind;

/*
 * A zip with several .csv members (directories, __MACOSX/ entries and other
 * members are ignored) is read as one stream: the members in byte-wise name
 * order, a line end inserted after a member that lacks one, a UTF-8 byte
 * order mark at the start of a later member dropped, and, when the input has
 * a header, each later member's header dropped: its first line that is not
 * blank (spaces, tabs, CR), which must equal the first member's header
 * byte for byte once a final CR is removed (else DP_E_FORMAT naming both
 * members and the first differing column). A member that ends inside a
 * quoted field ends the stream there, so that a CSV reader reports the
 * unterminated field in that member rather than reading on into the next.
 */
typedef struct dp_source_options {
    int header;     /* 1 (default): every .csv member of a zip begins with the header line;
                       0: no member has one, they are concatenated whole */
    char delimiter; /* ',' (default): only to name the column where two headers differ */
} dp_source_options;

DP_API void dp_source_options_init(dp_source_options *o);

/* Open `path` ("-" is standard input, plain or gzip); o NULL for the defaults.
 * Refuses, with the path in the message: a missing or unreadable file or a
 * directory (DP_E_IO); a zip that is truncated or corrupt, holds no .csv
 * member, or whose members' headers differ (DP_E_FORMAT). A gzip stream is
 * checked as it is read (see dp_source_read). */
DP_API dp_status dp_source_open_with(const char *path, const dp_source_options *o, dp_source **out);
/* dp_source_open_with(path, NULL, out). */
DP_API dp_status dp_source_open(const char *path, dp_source **out);
DP_API void dp_source_close(dp_source *s);

/* Read up to `cap` decompressed bytes into buf; *got = 0 means the end of the
 * data. A truncated or corrupt gzip or zip member gives DP_E_FORMAT (with the
 * compressed byte offset where it was found); a read error DP_E_IO. */
DP_API dp_status dp_source_read(dp_source *s, void *buf, size_t cap, size_t *got);

DP_API dp_source_kind dp_source_kind_of(const dp_source *s);
DP_API const char *dp_source_kind_name(dp_source_kind kind); /* "plain", "gzip", "zip" */

/* The name used in messages: the path, "path:member.csv" for a zip, or
 * "path:first.csv..last.csv" for a zip of several parts. */
DP_API const char *dp_source_name(const dp_source *s);

/* Where physical line `line` (from 1, counting line ends '\n' of the data
 * handed out by dp_source_read) lies: *name is the file that holds it and
 * *local its line there. For a zip of several parts that is "path:member"
 * and the line within the member (its header is its line 1); otherwise
 * dp_source_name(s) and `line` itself. Every message that shows a line of
 * the data goes through this. Lines already handed out may be located from
 * another thread while dp_source_read runs. */
DP_API void dp_source_locate(const dp_source *s, uint64_t line, const char **name, uint64_t *local);

/* The .csv members read: 1 but for a zip of several parts. */
DP_API size_t dp_source_parts(const dp_source *s);
/* Part i (< dp_source_parts): its member name in the zip (NULL for plain
 * and gzip) and its uncompressed size in bytes (0 for plain and gzip). */
DP_API void dp_source_part(const dp_source *s, size_t i, const char **member, uint64_t *bytes);
/* The path as given to dp_source_open. */
DP_API const char *dp_source_path(const dp_source *s);

/* Size of the file on disk in bytes (compressed size for gzip and zip; 0 for
 * standard input until its end is reached, then the bytes read). */
DP_API uint64_t dp_source_file_bytes(const dp_source *s);
/* Decompressed bytes handed out by dp_source_read so far. */
DP_API uint64_t dp_source_bytes_read(const dp_source *s);

/* Lower-case hex SHA-256 of the file's bytes as stored on disk (the .gz or
 * .zip itself, not its content), into hex[65]. For plain and gzip the hash
 * is accumulated while reading and is available only once dp_source_read
 * has returned the end of the data (DP_E_USAGE before that); a zip is hashed
 * when opened. */
DP_API dp_status dp_source_sha256(const dp_source *s, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
