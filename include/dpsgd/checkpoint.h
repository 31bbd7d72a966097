/*
 * checkpoint.h: the training checkpoint file (DESIGN.md "File formats") and
 * the atomic file write every output of a run goes through.
 *
 * Layout (integers little-endian):
 *   0   magic "DPSGDCKP" (8 bytes)
 *   8   u32 format version (1), u32 flags (0)
 *   16  u64 json_len, u64 n_params, u64 n_state
 *   40  json [json_len] (UTF-8: configuration, step, random keys, ledger)
 *       params f32 [n_params], then optimizer state f32 [n_state]
 *   end-32  BLAKE2b-256 (libsodium crypto_generichash) of every byte before it
 * Written to a temporary file in the same directory, fsynced, renamed, so a
 * crash leaves the old file or the new one, never a torn one. A checkpoint
 * holds the random keys of the run: it is as secret as the training data.
 */
#ifndef DPSGD_CHECKPOINT_H
#define DPSGD_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DP_CHECKPOINT_VERSION 1

typedef struct dp_checkpoint {
    char *json;    /* NUL-terminated */
    float *params; /* [n_params] */
    size_t n_params;
    float *state; /* [n_state] */
    size_t n_state;
} dp_checkpoint;

/* Write `ck` to `path` atomically. */
DP_API dp_status dp_checkpoint_write(const char *path, const dp_checkpoint *ck);
/* Read and verify a checkpoint; the fields of *out are allocated by the
 * library (free with dp_checkpoint_free). DP_E_IO when it cannot be read;
 * DP_E_FORMAT for a foreign file, another format version, a truncated file or
 * a checksum mismatch, with the path and what was wrong in the message. */
DP_API dp_status dp_checkpoint_read(const char *path, dp_checkpoint *out);
DP_API void dp_checkpoint_free(dp_checkpoint *ck);

/* Write `len` bytes to `path` atomically: temporary file in the same
 * directory, fsync, rename over `path`, fsync of the directory. */
DP_API dp_status dp_file_write_atomic(const char *path, const void *data, size_t len);
/* The same for several pieces written one after the other. */
DP_API dp_status dp_file_write_atomic_v(const char *path, const void *const *parts,
                                        const size_t *lens, int n_parts);

#ifdef __cplusplus
}
#endif
#endif
