/*
 * key.c: the 256-bit keys of dpsgd's random streams (dp.h). A key comes
 * either from the operating system (libsodium's randombytes, i.e. getrandom)
 * or, for reproducible runs, from a user seed and a purpose string hashed
 * with BLAKE2b (libsodium crypto_generichash), so that the streams of
 * different purposes ("sample", "noise", "init") are independent.
 */
#include <sodium.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/dp.h"

DP_API dp_status dp_key_from_os(dp_key *out) {
    if (!out) return dp_error(DP_E_USAGE, "dp_key_from_os: expected a key to fill, found NULL");
    if (sodium_init() < 0)
        return dp_error(DP_E_INTERNAL, "dp_key_from_os: libsodium could not be initialised");
    randombytes_buf(out->bytes, sizeof out->bytes);
    return DP_OK;
}

/* key = BLAKE2b-256("dpsgd key v1" || 0 || purpose || 0 || le64(seed)).
 * The fixed prefix separates dpsgd's keys from any other use of the same seed;
 * the NULs make the encoding injective (no purpose is a prefix trick). */
DP_API void dp_key_from_seed(uint64_t seed, const char *purpose, dp_key *out) {
    static const char prefix[] = "dpsgd key v1";
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(seed >> (8 * i));
    if (!purpose) purpose = "";
    DP_ASSERT(sodium_init() >= 0);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof out->bytes);
    crypto_generichash_update(&st, (const unsigned char *)prefix, sizeof prefix); /* with its NUL */
    crypto_generichash_update(&st, (const unsigned char *)purpose, strlen(purpose) + 1);
    crypto_generichash_update(&st, le, sizeof le);
    crypto_generichash_final(&st, out->bytes, sizeof out->bytes);
}
