/*
 * dp.h: the randomness of DP-SGD. Poisson sampling of each step's batch
 * (DESIGN.md algorithm 1) and Gaussian noise (algorithm 3), both from
 * ChaCha20 (libsodium) keyed by a 256-bit key, counter-based: the value for
 * (step, example) or (step, coordinate) is fixed by the key alone, so every
 * rank derives the same batch without communication, any rank can draw any
 * chunk of the noise, results do not depend on the number of ranks or
 * threads, and a resumed run continues the same streams.
 */
#ifndef DPSGD_DP_H
#define DPSGD_DP_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

/* A 256-bit key for a random stream. */
typedef struct dp_key {
    uint8_t bytes[32];
} dp_key;

/* A fresh key from the operating system (getrandom via libsodium). */
DP_API dp_status dp_key_from_os(dp_key *out);
/* A key derived from a user seed and a purpose ("sample", "noise", "init"):
 * reproducible runs (privacy.json then says the noise was seeded).
 * key = BLAKE2b-256("dpsgd key v1\0" || purpose || "\0" || le64(seed)). */
DP_API void dp_key_from_seed(uint64_t seed, const char *purpose, dp_key *out);

/* ---- Poisson sampling ----
 * S_t = { i in [0, n_total) : example i drawn with probability q at step t },
 * by geometric skipping (O(q n) per step, never O(n)). Write the members of
 * S_t within [begin, end) to idx (ascending) and their count to *count.
 * Needs cap >= the count; DP_E_RANGE if idx is too small (the caller sizes it
 * from dp_poisson_capacity). The same (key, step) gives the same S_t whatever
 * [begin, end) partition the ranks use. DP_E_RANGE too for q outside (0, 1]
 * and for a range outside [0, n_total). The construction (independent
 * XChaCha20 streams per block of 2^k indices, k from q alone) and its cost,
 * O(q (end - begin) + q 2^16 + 1), are described in src/dp/poisson.c. */
DP_API dp_status dp_poisson_sample(const dp_key *key, uint64_t step, size_t n_total, double q,
                                   size_t begin, size_t end, size_t *idx, size_t cap,
                                   size_t *count);
/* A bound on |S_t ∩ [begin, end)| that fails with probability < 1e-12
 * (Bernstein's bound on the binomial, variance n q (1 - q)), to size buffers
 * once. n_range for q >= 1; 0 for q <= 0. */
DP_API size_t dp_poisson_capacity(size_t n_range, double q);

/* ---- Gaussian noise ----
 * ADD N(0, std^2) to out[0..n): coordinates [offset, offset + n) of the noise
 * vector of step `step` and stream `stream` (e.g. one stream per rank for
 * shares mode; 0 for owner mode). Each draw is a sum of several Gaussians
 * (Holohan & Braghin 2021) built from ChaCha20 output. Vectorised and
 * multi-threaded; n may be 0.
 * Precisely: z_j = (g1 + g2 + g3 + g4) / 2, four N(0, 1) from two Box-Muller
 * pairs of 53-bit uniforms, made from bytes [32 j, 32 j + 32) of the XChaCha20
 * keystream of nonce le64(step) || le64(stream) || "noise\0\0\0"; computed in
 * double, out[j] = (float)(out[j] + std z_j). The values do not depend on the
 * chunking or the thread count (bit for bit, within one build; across CPUs
 * with other vector units glibc's vector log/sin/cos may differ in the last
 * bits). DP_E_RANGE for std not finite and >= 0, or offset + n > 2^62. */
DP_API dp_status dp_noise_add(const dp_key *key, uint64_t step, uint64_t stream, size_t offset,
                              float *out, size_t n, double std);

/* The same draws z_j (std 1) in double precision, overwriting out (for tests). */
DP_API dp_status dp_noise_draw_f64(const dp_key *key, uint64_t step, uint64_t stream, size_t offset,
                                   double *out, size_t n);

#endif
