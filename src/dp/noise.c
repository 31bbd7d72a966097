/*
 * noise.c: the Gaussian noise of DP-SGD (DESIGN.md algorithm 3), counter-based
 * from ChaCha20 (libsodium) so that coordinate j of the noise vector of
 * (step, stream) is fixed by the key alone. Each draw is a sum of four
 * Gaussians (Holohan & Braghin 2021, as Opacus's secure mode) made by
 * Box-Muller from 53-bit uniforms in double precision.
 */
#include <endian.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <sodium.h>
#include <string.h>
#include "core/dp_internal.h"
#include "dpsgd/dp.h"

/*
 * Layout of the randomness.
 *
 *   subkey   = HChaCha20(key, le64(step) || le64(stream))
 *   stream   = ChaCha20(subkey, nonce "noise\0\0\0", 64-bit block counter)
 *              (together: XChaCha20 with nonce le64(step)||le64(stream)||"noise\0\0\0")
 *   coord j  = keystream bytes [32 j, 32 j + 32) = little-endian words w0 w1 w2 w3
 *
 *   u1 = (w0 >> 11 + 1) 2^-53 in (0, 1],  u2 = (w1 >> 11) 2^-53 in [0, 1)
 *   Box-Muller: sqrt(-2 ln u1) cos(2 pi u2) and sqrt(-2 ln u1) sin(2 pi u2) are
 *   two independent N(0, 1); (w2, w3) give two more.
 *   z_j = (g1 + g2 + g3 + g4) / 2  ~  N(0, 1)
 *
 * Why four. A floating-point Gaussian sample reveals more than its value: its
 * low-order bits narrow down the uniforms it was made from, and through them
 * the unnoised value (Mironov 2012; Jin et al. 2022 attack DP-SGD this way).
 * Holohan & Braghin (2021) make the inversion exponentially harder by drawing
 * an infinitely divisible law as a sum of n samples; Opacus's secure mode
 * uses four samples of std/2 (they estimate 2^53 -> 2^159 work). We do the
 * same: its cost is 32 bytes of keystream and two Box-Muller pairs per
 * coordinate, a few percent of a training step (bench/kernels measures it).
 *
 * Counter-based means: any [offset, offset + n) can be drawn alone, by any
 * rank or thread, and equals the same coordinates of one big draw bit for
 * bit. To make that hold also for the floating point, coordinates are always
 * computed in whole aligned blocks of NB (the vector loops then see the same
 * lane positions whatever the caller's chunking), and the requested part is
 * copied out.
 */

#define NB 128 /* coordinates per block; 4 KiB of keystream */

/* libmvec (glibc's vector math) provides SIMD versions of these; declaring
 * them `declare simd` lets the loops below call the vector variants (glibc
 * declares them so itself only under -ffast-math, which we do not want). */
#pragma omp declare simd notinbranch
extern double log(double);
#pragma omp declare simd notinbranch
extern double sin(double);
#pragma omp declare simd notinbranch
extern double cos(double);

static const unsigned char NOISE_TAG[8] = {'n', 'o', 'i', 's', 'e', 0, 0, 0};

typedef struct block_buf {
    uint64_t w[4 * NB] __attribute__((aligned(64))); /* keystream */
    double u1[2 * NB] __attribute__((aligned(64)));  /* per Box-Muller pair */
    double u2[2 * NB] __attribute__((aligned(64)));
    double r[2 * NB] __attribute__((aligned(64)));
    double c[2 * NB] __attribute__((aligned(64)));
    double s[2 * NB] __attribute__((aligned(64)));
} block_buf;

/* r[p] = sqrt(r[p]): with the vector instruction where there is one. (gcc
 * will not vectorise sqrt() without -fno-math-errno; IEEE sqrt is correctly
 * rounded, so the vector and scalar results are the same bits.) */
static void sqrt_all(double *r, int n) {
    int p = 0;
#if defined(__AVX512F__)
    for (; p + 8 <= n; p += 8)
        _mm512_store_pd(r + p, _mm512_sqrt_pd(_mm512_load_pd(r + p)));
#elif defined(__AVX__)
    for (; p + 4 <= n; p += 4)
        _mm256_store_pd(r + p, _mm256_sqrt_pd(_mm256_load_pd(r + p)));
#elif defined(__SSE2__)
    for (; p + 2 <= n; p += 2)
        _mm_store_pd(r + p, _mm_sqrt_pd(_mm_load_pd(r + p)));
#endif
    for (; p < n; p++)
        r[p] = sqrt(r[p]);
}

/* z[0..NB) = the standard normals of coordinates [blk NB, blk NB + NB). */
static void draw_block(const unsigned char *subkey, uint64_t blk, block_buf *bb, double *z) {
    static const unsigned char zeros[sizeof bb->w];
    /* coordinate j starts at byte 32 j = ChaCha20 block j / 2 */
    crypto_stream_chacha20_xor_ic((unsigned char *)bb->w, zeros, sizeof bb->w, NOISE_TAG,
                                  blk * (NB / 2), subkey);
#pragma omp simd
    for (int p = 0; p < 2 * NB; p++) {
        /* the keystream's bytes as little-endian words, on any host */
        uint64_t a = le64toh(bb->w[2 * p]), b = le64toh(bb->w[2 * p + 1]);
        bb->u1[p] = (double)(int64_t)((a >> 11) + 1) * 0x1p-53;
        bb->u2[p] = (double)(int64_t)(b >> 11) * 0x1p-53;
    }
    /* separate loops: gcc fuses sin and cos of one argument into a scalar
     * sincos call, which would stop the vectoriser */
#pragma omp simd simdlen(8) /* 8 lanes (AVX-512) where the CPU has them; else narrower */
    for (int p = 0; p < 2 * NB; p++)
        bb->r[p] = -2.0 * log(bb->u1[p]);
#pragma omp simd simdlen(8)
    for (int p = 0; p < 2 * NB; p++)
        bb->c[p] = cos(6.283185307179586477 * bb->u2[p]);
#pragma omp simd simdlen(8)
    for (int p = 0; p < 2 * NB; p++)
        bb->s[p] = sin(6.283185307179586477 * bb->u2[p]);
    sqrt_all(bb->r, 2 * NB);
#pragma omp simd
    for (int j = 0; j < NB; j++) {
        int p = 2 * j, q = 2 * j + 1;
        z[j] = 0.5 * ((bb->r[p] * bb->c[p] + bb->r[p] * bb->s[p]) +
                      (bb->r[q] * bb->c[q] + bb->r[q] * bb->s[q]));
    }
}

static void subkey_of(const dp_key *key, uint64_t step, uint64_t stream, unsigned char *subkey) {
    unsigned char in[crypto_core_hchacha20_INPUTBYTES];
    for (int i = 0; i < 8; i++) {
        in[i] = (unsigned char)(step >> (8 * i));
        in[8 + i] = (unsigned char)(stream >> (8 * i));
    }
    crypto_core_hchacha20(subkey, in, key->bytes, NULL);
}

/* Shared by both entry points: f64 != NULL overwrites with N(0, 1), else adds
 * N(0, std^2) to f32. */
static dp_status noise_run(const char *fn, const dp_key *key, uint64_t step, uint64_t stream,
                           size_t offset, float *f32, double *f64, size_t n, double std) {
    if (n == 0) return DP_OK;
    if (!key || (!f32 && !f64))
        return dp_error(DP_E_USAGE, "%s: expected a key and an output vector, found NULL", fn);
    if (offset > SIZE_MAX - n || offset + n > ((uint64_t)1 << 62))
        return dp_error(DP_E_RANGE, "%s: coordinates [%zu, %zu + %zu) exceed the stream", fn,
                        offset, offset, n);
    if (!(std >= 0.0) || !isfinite(std))
        return dp_error(DP_E_RANGE, "%s: expected a finite standard deviation >= 0, found %g", fn,
                        std);
    if (sodium_init() < 0)
        return dp_error(DP_E_INTERNAL, "%s: libsodium could not be initialised", fn);
    unsigned char subkey[crypto_core_hchacha20_KEYBYTES];
    subkey_of(key, step, stream, subkey);
    const uint64_t b0 = offset / NB, b1 = (offset + n - 1) / NB + 1;
    const long nblk = (long)(b1 - b0);
    /* a thread pays ~10 us to wake: only worth it for several blocks each */
#pragma omp parallel if (nblk >= 16)
    {
        block_buf bb;
        double z[NB] __attribute__((aligned(64)));
#pragma omp for schedule(static)
        for (long t = 0; t < nblk; t++) {
            uint64_t blk = b0 + (uint64_t)t;
            draw_block(subkey, blk, &bb, z);
            size_t lo = blk * NB < offset ? offset - blk * NB : 0;
            size_t hi = (blk + 1) * NB > offset + n ? offset + n - blk * NB : NB;
            size_t o = blk * NB + lo - offset;
            if (f64) {
                for (size_t j = lo; j < hi; j++)
                    f64[o + j - lo] = z[j];
            } else {
                float *restrict out = f32 + o - lo;
                for (size_t j = lo; j < hi; j++)
                    out[j] = (float)((double)out[j] + std * z[j]);
            }
        }
    }
    sodium_memzero(subkey, sizeof subkey);
    return DP_OK;
}

DP_API dp_status dp_noise_add(const dp_key *key, uint64_t step, uint64_t stream, size_t offset,
                              float *out, size_t n, double std) {
    return noise_run("dp_noise_add", key, step, stream, offset, out, NULL, n, std);
}

DP_API dp_status dp_noise_draw_f64(const dp_key *key, uint64_t step, uint64_t stream, size_t offset,
                                   double *out, size_t n) {
    return noise_run("dp_noise_draw_f64", key, step, stream, offset, NULL, out, n, 1.0);
}
