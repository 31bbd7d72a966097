/*
 * cuda_internal.h: what the .cu files of the CUDA backend share and nothing
 * else sees: the context and dataset structures, launch helpers, and the
 * declarations of kernels-as-functions that one file queues for another.
 * Relies on cuda_check.h (error macros) and dp_cuda.h (the C interface).
 */
#ifndef DP_CUDA_INTERNAL_H
#define DP_CUDA_INTERNAL_H
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include "cuda/cuda_check.h"
#include "cuda/dp_cuda.h"

struct dp_cuda_ctx {
    int device;
    int n_sm;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_workspace; /* cuBLAS workspace bound to the stream (graph capture needs one) */
    size_t blas_workspace_bytes;
};

struct dp_cuda_data {
    dp_cuda_ctx *ctx;
    size_t n, d, row_begin;
    int resident;
    int32_t y_min, y_max; /* the labels' range (checked against a network's classes) */
    /* resident: device copies; streamed: the caller's host arrays */
    float *X_dev;
    int32_t *y_dev;
    const float *X_host;
    const int32_t *y_host;
};

/* Grid size for `n` items of `per_block` each, capped so a grid-stride loop
 * covers the rest (a few waves of the device's multiprocessors). */
static inline unsigned dp_cu_blocks(size_t n, unsigned per_block, int n_sm) {
    size_t b = (n + per_block - 1) / per_block;
    size_t cap = (size_t)(n_sm > 0 ? n_sm : 1) * 32;
    if (b > cap) b = cap;
    return b ? (unsigned)b : 1u;
}

/* The XChaCha20 subkey of noise (key, step, stream) as little-endian words,
 * computed with libsodium exactly as src/dp/noise.c does (noise.cu); the
 * fused optimizer kernel (optim.cu) draws the noise from it. */
dp_status dp_cu_noise_subkey(const dp_key *key, uint64_t step, uint64_t stream, uint32_t sk[8]);

#endif
