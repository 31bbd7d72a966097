/*
 * source.h: the bytes of an input file, whatever its packaging: plain text,
 * gzip (.csv.gz, zlib; concatenated members allowed) or a zip archive holding
 * exactly one .csv (the Census Bureau ships each PUMS file as csv_pXX.zip with
 * a CSV and a README PDF; libzip). The kind is found from the file's magic
 * bytes, not its name. Reading is streaming (memory does not grow with the
 * file) and hashes the file's own bytes with SHA-256 (libsodium) as it goes,
 * so the dataset can record which file it came from at no extra pass.
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
    DP_SOURCE_ZIP = 2,   /* zip archive; the one member named *.csv is read */
} dp_source_kind;

/* Open `path` ("-" is standard input, plain or gzip). Refuses, with the path
 * in the message: a missing or unreadable file or a directory (DP_E_IO); a
 * zip that is truncated or corrupt, or holds no or several .csv members
 * (DP_E_FORMAT). A gzip stream is checked as it is read (see dp_source_read). */
DP_API dp_status dp_source_open(const char *path, dp_source **out);
DP_API void dp_source_close(dp_source *s);

/* Read up to `cap` decompressed bytes into buf; *got = 0 means the end of the
 * data. A truncated or corrupt gzip or zip member gives DP_E_FORMAT (with the
 * compressed byte offset where it was found); a read error DP_E_IO. */
DP_API dp_status dp_source_read(dp_source *s, void *buf, size_t cap, size_t *got);

DP_API dp_source_kind dp_source_kind_of(const dp_source *s);
DP_API const char *dp_source_kind_name(dp_source_kind kind); /* "plain", "gzip", "zip" */

/* The name used in messages: the path, or "path:member.csv" for a zip. */
DP_API const char *dp_source_name(const dp_source *s);
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
