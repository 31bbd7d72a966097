/*
 * chacha_dev.h: ChaCha20 (Bernstein 2008) as device functions, the block
 * function libsodium's crypto_stream_chacha20_xor_ic (original variant:
 * 64-bit block counter in words 12-13, 64-bit nonce in 14-15) and
 * crypto_stream_chacha20_ietf_xor_ic (32-bit counter in word 12, 96-bit nonce
 * in 13-15) compute, and the Gaussian of src/dp/noise.c built from it.
 * Header-only: included by noise.cu and optim.cu (no separable compilation),
 * and compiled for the host by tests/test_cuda_chacha.c (DP_CHACHA_HOST), so
 * CPU CI checks the construction against libsodium without a GPU.
 */
#ifndef DP_CHACHA_DEV_H
#define DP_CHACHA_DEV_H
#include <stdint.h>

#ifdef DP_CHACHA_HOST
#include <math.h>
#define DP_DEVFN static inline
#define DP_UNROLL
#define DP_DMUL(a, b) ((a) * (b))
#define DP_DADD(a, b) ((a) + (b))
#else
#define DP_DEVFN __device__ __forceinline__
#define DP_UNROLL _Pragma("unroll")
/* the _rn intrinsics keep nvcc from fusing products and sums into FMAs */
#define DP_DMUL(a, b) __dmul_rn(a, b)
#define DP_DADD(a, b) __dadd_rn(a, b)
#endif

#define DP_ROTL32(v, c) (((v) << (c)) | ((v) >> (32 - (c))))
#define DP_QR(a, b, c, d)                                                                          \
    a += b;                                                                                        \
    d ^= a;                                                                                        \
    d = DP_ROTL32(d, 16);                                                                          \
    c += d;                                                                                        \
    b ^= c;                                                                                        \
    b = DP_ROTL32(b, 12);                                                                          \
    a += b;                                                                                        \
    d ^= a;                                                                                        \
    d = DP_ROTL32(d, 8);                                                                           \
    c += d;                                                                                        \
    b ^= c;                                                                                        \
    b = DP_ROTL32(b, 7)

/* out[16] = the keystream block (as little-endian words) for key k[8] and
 * words 12..15 of the state (counter and nonce, laid out by the caller). */
DP_DEVFN void dp_chacha20_block(const uint32_t k[8], uint32_t w12, uint32_t w13, uint32_t w14,
                                uint32_t w15, uint32_t out[16]) {
    /* "expand 32-byte k" */
    const uint32_t c0 = 0x61707865u, c1 = 0x3320646eu, c2 = 0x79622d32u, c3 = 0x6b206574u;
    uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
    uint32_t x4 = k[0], x5 = k[1], x6 = k[2], x7 = k[3];
    uint32_t x8 = k[4], x9 = k[5], x10 = k[6], x11 = k[7];
    uint32_t x12 = w12, x13 = w13, x14 = w14, x15 = w15;
    DP_UNROLL
    for (int i = 0; i < 10; i++) {
        DP_QR(x0, x4, x8, x12);
        DP_QR(x1, x5, x9, x13);
        DP_QR(x2, x6, x10, x14);
        DP_QR(x3, x7, x11, x15);
        DP_QR(x0, x5, x10, x15);
        DP_QR(x1, x6, x11, x12);
        DP_QR(x2, x7, x8, x13);
        DP_QR(x3, x4, x9, x14);
    }
    out[0] = x0 + c0;
    out[1] = x1 + c1;
    out[2] = x2 + c2;
    out[3] = x3 + c3;
    out[4] = x4 + k[0];
    out[5] = x5 + k[1];
    out[6] = x6 + k[2];
    out[7] = x7 + k[3];
    out[8] = x8 + k[4];
    out[9] = x9 + k[5];
    out[10] = x10 + k[6];
    out[11] = x11 + k[7];
    out[12] = x12 + w12;
    out[13] = x13 + w13;
    out[14] = x14 + w14;
    out[15] = x15 + w15;
}

/* The nonce "noise\0\0\0" of src/dp/noise.c as the state's words 14 and 15. */
#define DP_NOISE_N14 0x73696f6eu /* 'n' 'o' 'i' 's' */
#define DP_NOISE_N15 0x00000065u /* 'e' 0 0 0 */

/* One Box-Muller pair's contribution r cos + r sin from words (a, b), as
 * src/dp/noise.c: u1 = ((a >> 11) + 1) 2^-53 in (0, 1], u2 = (b >> 11) 2^-53,
 * r = sqrt(-2 ln u1). */
DP_DEVFN double dp_bm_pair(uint64_t a, uint64_t b) {
    double u1 = (double)(int64_t)((a >> 11) + 1) * 0x1p-53;
    double u2 = (double)(int64_t)(b >> 11) * 0x1p-53;
    double r = sqrt(DP_DMUL(-2.0, log(u1)));
    double t = DP_DMUL(6.283185307179586477, u2);
    return DP_DADD(DP_DMUL(r, cos(t)), DP_DMUL(r, sin(t)));
}

/* The standard normals of noise coordinates 2 blk and 2 blk + 1 (one
 * ChaCha20 block of 64 bytes = 32 bytes per coordinate) under the step's
 * subkey sk[8]: z = (g1 + g2 + g3 + g4) / 2, Holohan & Braghin 2021. */
DP_DEVFN void dp_noise_pair(const uint32_t sk[8], uint64_t blk, double z[2]) {
    uint32_t w[16];
    dp_chacha20_block(sk, (uint32_t)blk, (uint32_t)(blk >> 32), DP_NOISE_N14, DP_NOISE_N15, w);
    DP_UNROLL
    for (int h = 0; h < 2; h++) {
        const uint32_t *q = w + 8 * h;
        uint64_t w0 = (uint64_t)q[0] | (uint64_t)q[1] << 32;
        uint64_t w1 = (uint64_t)q[2] | (uint64_t)q[3] << 32;
        uint64_t w2 = (uint64_t)q[4] | (uint64_t)q[5] << 32;
        uint64_t w3 = (uint64_t)q[6] | (uint64_t)q[7] << 32;
        z[h] = DP_DMUL(0.5, DP_DADD(dp_bm_pair(w0, w1), dp_bm_pair(w2, w3)));
    }
}

#endif
