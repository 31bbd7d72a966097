/*
 * roofline.cu: the device's ceilings measured once, for bench/gpu_train's
 * floor (METHOD.md "two numbers first"): cuBLAS float32 sgemm on a large
 * square product, device-to-device copy bandwidth (bytes read + written),
 * the cost of a launch (empty kernels queued back to back) and of a kernel
 * node in a replayed graph, and one small sgemm of the step's own shape.
 * Timed with CUDA events after a warm-up; medians of several runs.
 */
#include <stdlib.h>
#include "cuda/cuda_internal.h"

__global__ void empty_kernel(int *p) {
    if (p && threadIdx.x == 1024) *p = 0; /* never true: keeps the launch real */
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median over `reps` (<= 16) timed runs of the statement(s) given (ms each),
 * after one warm-up run. */
#define TIMED(reps, result_ms, ...)                                                                \
    do {                                                                                           \
        float ms_[16];                                                                             \
        __VA_ARGS__;                                                                               \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            DP_CUDA_TRY(cudaEventRecord(e0, st));                                                  \
            __VA_ARGS__;                                                                           \
            DP_CUDA_TRY(cudaEventRecord(e1, st));                                                  \
            DP_CUDA_TRY(cudaEventSynchronize(e1));                                                 \
            DP_CUDA_TRY(cudaEventElapsedTime(&ms_[r_], e0, e1));                                   \
        }                                                                                          \
        qsort(ms_, (size_t)(reps), sizeof(float), cmp_float);                                      \
        (result_ms) = ms_[(reps) / 2];                                                             \
    } while (0)

static dp_status measure(dp_cuda_ctx *ctx, int m, int n, int k, dp_cuda_ceilings *out, float *buf,
                         cudaEvent_t e0, cudaEvent_t e1) {
    cudaStream_t st = ctx->stream;
    cublasHandle_t h = ctx->blas;
    const float one = 1.0f, zero = 0.0f;
    /* sgemm 8192^3: 1.1 TFLOP, tens of ms on a Hopper GPU */
    const int N = 8192;
    float *A = buf, *B = A + (size_t)N * N, *C = B + (size_t)N * N;
    float ms = 0;
    TIMED(5, ms,
          DP_CUBLAS_TRY(
              cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, N, B, N, &zero, C, N)));
    out->sgemm_flops = 2.0 * N * (double)N * N / (ms * 1e-3);
    /* bandwidth: copy A (256 MiB) over C */
    size_t bytes = (size_t)N * N * sizeof(float);
    TIMED(5, ms, DP_CUDA_TRY(cudaMemcpyAsync(C, A, bytes, cudaMemcpyDeviceToDevice, st)));
    out->bandwidth = 2.0 * (double)bytes / (ms * 1e-3);
    /* launches: 2000 empty kernels back to back */
    const int nl = 2000;
    TIMED(5, ms, for (int i = 0; i < nl; i++) empty_kernel<<<1, 32, 0, st>>>(NULL));
    DP_CUDA_LAUNCHED("empty");
    out->launch_s = ms * 1e-3 / nl;
    /* graph: 100 empty kernel nodes, replayed */
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    DP_CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < 100; i++)
        empty_kernel<<<1, 32, 0, st>>>(NULL);
    DP_CUDA_TRY(cudaStreamEndCapture(st, &g));
    cudaError_t e = cudaGraphInstantiate(&ge, g, 0);
    cudaGraphDestroy(g);
    DP_CUDA_TRY(e);
    e = cudaSuccess;
    TIMED(5, ms, for (int i = 0; i < 20 && e == cudaSuccess; i++) e = cudaGraphLaunch(ge, st));
    cudaGraphExecDestroy(ge);
    DP_CUDA_TRY(e);
    out->graph_node_s = ms * 1e-3 / 2000.0;
    /* the step's own shape: C [m, n] = A [m, k] B [k, n], 200 in a row */
    TIMED(5, ms,
          for (int i = 0; i < 200; i++) DP_CUBLAS_TRY(
              cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, B, n, A, k, &zero, C, n)));
    out->small_gemm_s = ms * 1e-3 / 200.0;
    return DP_OK;
}

extern "C" dp_status dp_cuda_ceilings_measure(dp_cuda_ctx *ctx, int m, int n, int k,
                                              dp_cuda_ceilings *out) {
    const size_t N = 8192;
    if ((size_t)m * k > N * N || (size_t)k * n > N * N || (size_t)m * n > N * N)
        return dp_error(DP_E_USAGE, "cuda: ceilings: small gemm %d x %d x %d too large", m, n, k);
    float *buf = NULL;
    /* random data, not zeros: METHOD.md saw products run faster on zeros */
    DP_CU_TRY(dp_cuda_alloc(ctx, 3 * N * N * sizeof(float), (void **)&buf));
    float *h = (float *)dp_malloc(N * N * sizeof(float));
    if (!h) {
        dp_cuda_free(ctx, buf);
        return dp_error(DP_E_NOMEM, "cuda: ceilings: cannot allocate the host buffer");
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < N * N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        h[i] = (float)((double)(x >> 11) * 0x1p-53 - 0.5);
    }
    dp_status s = dp_cuda_to_device(ctx, buf, h, N * N * sizeof(float));
    if (s == DP_OK) s = dp_cuda_to_device(ctx, buf + N * N, h, N * N * sizeof(float));
    dp_free(h);
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (s == DP_OK && (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess))
        s = dp_error(DP_E_CUDA, "cuda: ceilings: cannot create events");
    if (s == DP_OK) s = measure(ctx, m, n, k, out, buf, e0, e1);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaStreamSynchronize(ctx->stream);
    dp_cuda_free(ctx, buf);
    return s;
}
