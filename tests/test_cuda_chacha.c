/*
 * test_cuda_chacha.c: the CUDA backend's ChaCha20 block function and noise
 * construction (src/cuda/chacha_dev.h), compiled for the host, against
 * libsodium's keystream (original and IETF layouts) and src/dp/noise.c's
 * draws. CPU CI has no GPU; this pins the algorithm the device runs, and
 * tests/gpu/check_cuda.c then pins the device's execution of it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sodium.h>
#include <string.h>
#include "dpsgd/dp.h"
#include "testutil.h"
#define DP_CHACHA_HOST 1
#include "cuda/chacha_dev.h"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* bytes of block words w[16], little-endian, as the stream emits them */
static void words_to_bytes(const uint32_t w[16], uint8_t out[64]) {
    for (int i = 0; i < 64; i++)
        out[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
}

Test(cuda_chacha, block_function_equals_libsodium_original_and_ietf) {
    cr_assert_geq(sodium_init(), 0);
    uint64_t rng = tu_seed();
    uint8_t key[32], nonce[12], zeros[64 * 4] = {0}, ref[64 * 4], got[64];
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < 32; i++)
            key[i] = (uint8_t)tu_next(&rng);
        for (int i = 0; i < 12; i++)
            nonce[i] = (uint8_t)tu_next(&rng);
        uint32_t k[8];
        for (int i = 0; i < 8; i++)
            k[i] = le32(key + 4 * i);
        /* counters near the 32-bit boundary: the original variant carries */
        uint64_t ctr = trial % 3 == 0 ? 0xfffffffeull : tu_next(&rng) >> (trial % 2 ? 0 : 33);
        crypto_stream_chacha20_xor_ic(ref, zeros, sizeof ref, nonce, ctr, key);
        for (int b = 0; b < 4; b++) {
            uint64_t c = ctr + (uint64_t)b;
            uint32_t w[16];
            dp_chacha20_block(k, (uint32_t)c, (uint32_t)(c >> 32), le32(nonce), le32(nonce + 4), w);
            words_to_bytes(w, got);
            cr_assert(!memcmp(got, ref + 64 * b, 64), "original variant, counter %llu",
                      (unsigned long long)c);
        }
        uint32_t c32 = (uint32_t)(tu_next(&rng) >> 40);
        crypto_stream_chacha20_ietf_xor_ic(ref, zeros, 64, nonce, c32, key);
        uint32_t w[16];
        dp_chacha20_block(k, c32, le32(nonce), le32(nonce + 4), le32(nonce + 8), w);
        words_to_bytes(w, got);
        cr_assert(!memcmp(got, ref, 64), "IETF variant, counter %u", c32);
    }
}

/* The noise of coordinates [offset, offset + n) through dp_noise_pair, with
 * the subkey made as noise.c makes it, against dp_noise_draw_f64. The CPU
 * uses glibc's vector log/sin/cos (a few ulp): equal to ~1e-15, not bits. */
Test(cuda_chacha, noise_pair_equals_dp_noise_draw_f64) {
    cr_assert_geq(sodium_init(), 0);
    uint64_t rng = tu_seed();
    dp_key key;
    dp_key_from_seed(tu_next(&rng), "noise", &key);
    uint64_t step = tu_next(&rng) >> 30, stream = tu_next(&rng) % 5;
    size_t offset = (size_t)(tu_next(&rng) % 1000), n = 5001;
    double *ref = malloc(n * sizeof *ref);
    cr_assert_eq(dp_noise_draw_f64(&key, step, stream, offset, ref, n), DP_OK);
    uint8_t in[16], sub[32];
    for (int i = 0; i < 8; i++) {
        in[i] = (uint8_t)(step >> (8 * i));
        in[8 + i] = (uint8_t)(stream >> (8 * i));
    }
    crypto_core_hchacha20(sub, in, key.bytes, NULL);
    uint32_t sk[8];
    for (int i = 0; i < 8; i++)
        sk[i] = le32(sub + 4 * i);
    double maxd = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t j = offset + i;
        double z[2];
        dp_noise_pair(sk, j / 2, z);
        double d = fabs(z[j % 2] - ref[i]);
        if (!(d <= maxd)) maxd = d;
    }
    cr_assert_leq(maxd, 1e-13, "max |device construction - cpu| = %g", maxd);
    free(ref);
}
