/*
 * source_internal.h: what distributed prep needs of a source beyond the
 * public dp_source API (source.h): a plain file read over one byte range
 * only (a rank's share; not hashed), and the SHA-256 of a whole regular file
 * whose reading stopped early (rank 0 reads only the header through it, its
 * hashing thread reads everything).
 */
#ifndef DP_SOURCE_INTERNAL_H
#define DP_SOURCE_INTERNAL_H
#include <stdint.h>
#include "dpsgd/source.h"

/* Open the regular file `path` as a plain source whose data are the bytes
 * [begin, end) (fewer if the file is shorter). Its kind is plain whatever
 * the magic bytes; dp_source_sha256 is refused. DP_E_IO, DP_E_NOMEM. */
dp_status source_open_range(const char *path, uint64_t begin, uint64_t end, dp_source **out);

/* 1 for a regular file opened by path (not standard input, not a pipe). */
int source_is_regular(const dp_source *s);

/* Lower-case hex SHA-256 of the whole file of a source that was not
 * necessarily read to its end: waits for its hashing thread (checking that
 * it hashed as many bytes as the file had when opened), or hashes the file
 * now; at once if the hash is already known. */
dp_status source_sha256_whole(dp_source *s, char hex[65]);

#endif
