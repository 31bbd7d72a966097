/*
 * noise.cu: the Gaussian noise of src/dp/noise.c on the device (DESIGN.md
 * algorithm 3), the same draws for the same (key, step, stream, coordinate):
 * XChaCha20 = ChaCha20 under the HChaCha20 subkey of (le64 step, le64
 * stream), computed once per call on the host with libsodium (the very
 * function the CPU uses), then the keystream and Box-Muller on the device,
 * one thread per ChaCha20 block = two coordinates (chacha_dev.h).
 * Also the raw keystream, so a test can hold it against libsodium's.
 */
#include <sodium.h>
#include <string.h>
#include "cuda/chacha_dev.h"
#include "cuda/cuda_internal.h"

/* Subkey words for (key, step, stream), little-endian, as noise.c's subkey_of. */
dp_status dp_cu_noise_subkey(const dp_key *key, uint64_t step, uint64_t stream, uint32_t sk[8]) {
    unsigned char in[crypto_core_hchacha20_INPUTBYTES], sub[crypto_core_hchacha20_KEYBYTES];
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "cuda: noise: libsodium failed to start");
    for (int i = 0; i < 8; i++) {
        in[i] = (unsigned char)(step >> (8 * i));
        in[8 + i] = (unsigned char)(stream >> (8 * i));
    }
    crypto_core_hchacha20(sub, in, key->bytes, NULL);
    for (int i = 0; i < 8; i++)
        sk[i] = (uint32_t)sub[4 * i] | (uint32_t)sub[4 * i + 1] << 8 |
                (uint32_t)sub[4 * i + 2] << 16 | (uint32_t)sub[4 * i + 3] << 24;
    sodium_memzero(sub, sizeof sub);
    return DP_OK;
}

struct words8 {
    uint32_t w[8];
};

/* Keystream blocks [0, nblk) from block counter `counter`: the original
 * variant carries the 64-bit counter into word 13; IETF keeps 32 bits and
 * wraps as libsodium's does. */
__global__ void keystream_kernel(struct words8 key, int ietf, uint64_t counter, uint32_t n0,
                                 uint32_t n1, uint32_t n2, uint32_t *out, size_t nblk) {
    for (size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x; b < nblk;
         b += (size_t)gridDim.x * blockDim.x) {
        uint32_t w[16];
        if (ietf)
            dp_chacha20_block(key.w, (uint32_t)(counter + b), n0, n1, n2, w);
        else
            dp_chacha20_block(key.w, (uint32_t)(counter + b), (uint32_t)((counter + b) >> 32), n0,
                              n1, w);
        for (int i = 0; i < 16; i++)
            out[b * 16 + i] = w[i];
    }
}

/* Coordinates [offset, offset + n): thread t owns ChaCha20 block
 * offset / 2 + t and writes the one or two of its coordinates in range.
 * f32 != NULL: f32[i] = (float)((double)f32[i] + std z) as dp_noise_add;
 * else f64[i] = z as dp_noise_draw_f64. */
__global__ void noise_kernel(struct words8 sk, uint64_t offset, size_t n, float *f32, double *f64,
                             double std) {
    const uint64_t b0 = offset / 2, b1 = (offset + n - 1) / 2 + 1;
    for (uint64_t b = b0 + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; b < b1;
         b += (uint64_t)gridDim.x * blockDim.x) {
        double z[2];
        dp_noise_pair(sk.w, b, z);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint64_t j = 2 * b + (uint64_t)h;
            if (j < offset || j >= offset + n) continue;
            size_t i = (size_t)(j - offset);
            if (f32)
                f32[i] = (float)__dadd_rn((double)f32[i], __dmul_rn(std, z[h]));
            else
                f64[i] = z[h];
        }
    }
}

static dp_status noise_check(const char *fn, const dp_key *key, size_t offset, size_t n,
                             double std) {
    if (!key) return dp_error(DP_E_USAGE, "%s: expected a key, found NULL", fn);
    if (offset > SIZE_MAX - n || offset + n > ((uint64_t)1 << 62))
        return dp_error(DP_E_RANGE, "%s: coordinates [%zu, %zu + %zu) exceed the stream", fn,
                        offset, offset, n);
    if (!(std >= 0.0) || !isfinite(std))
        return dp_error(DP_E_RANGE, "%s: expected a finite standard deviation >= 0, found %g", fn,
                        std);
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "%s: libsodium failed to start", fn);
    return DP_OK;
}

extern "C" dp_status dp_noise_add_dev_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step,
                                           uint64_t stream, size_t offset, float *out_dev, size_t n,
                                           double std) {
    if (n == 0) return DP_OK;
    DP_CU_TRY(noise_check("dp_noise_add_dev_cuda", key, offset, n, std));
    struct words8 sk;
    DP_CU_TRY(dp_cu_noise_subkey(key, step, stream, sk.w));
    size_t nblk = (offset + n - 1) / 2 + 1 - offset / 2;
    noise_kernel<<<dp_cu_blocks(nblk, 256, ctx->n_sm), 256, 0, ctx->stream>>>(sk, offset, n,
                                                                              out_dev, NULL, std);
    DP_CUDA_LAUNCHED("noise");
    return DP_OK;
}

extern "C" dp_status dp_noise_draw_f64_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step,
                                            uint64_t stream, size_t offset, double *out, size_t n) {
    if (n == 0) return DP_OK;
    DP_CU_TRY(noise_check("dp_noise_draw_f64_cuda", key, offset, n, 1.0));
    double *dev = NULL;
    DP_CU_TRY(dp_cuda_alloc(ctx, n * sizeof(double), (void **)&dev));
    struct words8 sk;
    DP_CU_TRY(dp_cu_noise_subkey(key, step, stream, sk.w));
    size_t nblk = (offset + n - 1) / 2 + 1 - offset / 2;
    noise_kernel<<<dp_cu_blocks(nblk, 256, ctx->n_sm), 256, 0, ctx->stream>>>(sk, offset, n, NULL,
                                                                              dev, 1.0);
    cudaError_t e = cudaGetLastError();
    dp_status s = e == cudaSuccess ? dp_cuda_to_host(ctx, out, dev, n * sizeof(double))
                                   : dp_error(DP_E_CUDA, "%s:%d: noise kernel: %s", __FILE__,
                                              __LINE__, cudaGetErrorString(e));
    cudaFree(dev);
    return s;
}

extern "C" dp_status dp_chacha20_cuda(dp_cuda_ctx *ctx, const uint8_t key[32], const uint8_t *nonce,
                                      size_t nonce_len, uint64_t counter, uint8_t *out,
                                      size_t nbytes) {
    if (nonce_len != 8 && nonce_len != 12)
        return dp_error(DP_E_USAGE,
                        "dp_chacha20_cuda: expected a nonce of 8 or 12 bytes, found %zu",
                        nonce_len);
    if (nbytes == 0) return DP_OK;
    struct words8 k;
    for (int i = 0; i < 8; i++)
        k.w[i] = (uint32_t)key[4 * i] | (uint32_t)key[4 * i + 1] << 8 |
                 (uint32_t)key[4 * i + 2] << 16 | (uint32_t)key[4 * i + 3] << 24;
    uint32_t nw[3] = {0, 0, 0};
    for (size_t i = 0; i < nonce_len; i++)
        nw[i / 4] |= (uint32_t)nonce[i] << (8 * (i % 4));
    size_t nblk = (nbytes + 63) / 64;
    uint32_t *dev = NULL;
    DP_CU_TRY(dp_cuda_alloc(ctx, nblk * 64, (void **)&dev));
    keystream_kernel<<<dp_cu_blocks(nblk, 256, ctx->n_sm), 256, 0, ctx->stream>>>(
        k, nonce_len == 12, counter, nw[0], nw[1], nw[2], dev, nblk);
    cudaError_t e = cudaGetLastError();
    dp_status s = DP_OK;
    uint32_t *host = (uint32_t *)dp_malloc(nblk * 64);
    if (e != cudaSuccess)
        s = dp_error(DP_E_CUDA, "%s:%d: keystream kernel: %s", __FILE__, __LINE__,
                     cudaGetErrorString(e));
    else if (!host)
        s = dp_error(DP_E_NOMEM, "dp_chacha20_cuda: cannot allocate %zu bytes", nblk * 64);
    else
        s = dp_cuda_to_host(ctx, host, dev, nblk * 64);
    if (s == DP_OK)
        for (size_t i = 0; i < nbytes; i++)
            out[i] = (uint8_t)(host[i / 4] >> (8 * (i % 4)));
    dp_free(host);
    cudaFree(dev);
    return s;
}
