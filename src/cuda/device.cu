/*
 * device.cu: device discovery, the device context (stream, cuBLAS handle and
 * workspace), device memory helpers, and the dataset on the device (resident
 * copy, or the host arrays kept for streamed batches). Relies on the CUDA
 * runtime and cuBLAS; every call goes through cuda_check.h's macros.
 */
#include <string.h>
#include "cuda/cuda_internal.h"

/* cudaGetDeviceCount reports "no device" in several ways: no driver at all
 * (cudaErrorInsufficientDriver, or the stub libcuda of a container without a
 * GPU: cudaErrorStubLibrary), no visible device (cudaErrorNoDevice), or a
 * driver older than the runtime. All of them mean the same to a user. */
extern "C" dp_status dp_cuda_device_count(int *count) {
    if (!count) return dp_error(DP_E_USAGE, "dp_cuda_device_count: expected a count, found NULL");
    *count = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* not sticky: clear it so later calls start clean */
        const char *why = e == cudaErrorInsufficientDriver
                              ? "no NVIDIA driver, or one older than this CUDA runtime"
                          : e == cudaErrorNoDevice
                              ? "the driver sees no GPU (CUDA_VISIBLE_DEVICES?)"
                          : e == cudaErrorStubLibrary ? "only the toolkit's stub libcuda is present"
                                                      : "the CUDA runtime failed to start";
        return dp_error(DP_E_CUDA, "cuda: no CUDA device: %s (%s: %s)", why, cudaGetErrorName(e),
                        cudaGetErrorString(e));
    }
    if (n <= 0) return dp_error(DP_E_CUDA, "cuda: no CUDA device: the driver reports 0 devices");
    *count = n;
    return DP_OK;
}

extern "C" dp_status dp_cuda_device_query(int device, dp_cuda_device_info *out) {
    int n = 0;
    DP_CU_TRY(dp_cuda_device_count(&n));
    if (device < 0 || device >= n)
        return dp_error(DP_E_RANGE, "cuda: expected a device index in [0, %d), found %d", n,
                        device);
    cudaDeviceProp p;
    DP_CUDA_TRY(cudaGetDeviceProperties(&p, device));
    memset(out, 0, sizeof *out);
    out->index = device;
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->n_sm = p.multiProcessorCount;
    out->total_mem = p.totalGlobalMem;
    out->l2_bytes = (size_t)p.l2CacheSize;
    int cur = 0;
    DP_CUDA_TRY(cudaGetDevice(&cur));
    DP_CUDA_TRY(cudaSetDevice(device));
    size_t fr = 0, tot = 0;
    cudaError_t e = cudaMemGetInfo(&fr, &tot);
    DP_CUDA_TRY(cudaSetDevice(cur));
    DP_CUDA_TRY(e);
    out->free_mem = fr;
    return DP_OK;
}

extern "C" dp_status dp_cuda_device_for_rank(int local_rank, int *device) {
    int n = 0;
    DP_CU_TRY(dp_cuda_device_count(&n));
    if (local_rank < 0)
        return dp_error(DP_E_RANGE, "cuda: expected a local rank >= 0, found %d", local_rank);
    *device = local_rank % n;
    return DP_OK;
}

/* 32 MiB is what cuBLAS asks for on Hopper when it owns the workspace; we
 * give it one explicitly so that graph capture never has cuBLAS allocate. */
#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20)

static dp_status ctx_init(dp_cuda_ctx *c, int device) {
    DP_CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp p;
    DP_CUDA_TRY(cudaGetDeviceProperties(&p, device));
    c->n_sm = p.multiProcessorCount;
    DP_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    DP_CUBLAS_TRY(cublasCreate(&c->blas));
    DP_CUBLAS_TRY(cublasSetStream(c->blas, c->stream));
    /* Plain float32 products: no TF32 (whose 10-bit mantissa would break the
     * 1e-5 agreement with the CPU), and reproducible results (no atomics). */
    DP_CUBLAS_TRY(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    DP_CUBLAS_TRY(cublasSetAtomicsMode(c->blas, CUBLAS_ATOMICS_NOT_ALLOWED));
    DP_CUBLAS_TRY(cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST));
    DP_CUDA_TRY(cudaMalloc(&c->blas_workspace, BLAS_WORKSPACE_BYTES));
    c->blas_workspace_bytes = BLAS_WORKSPACE_BYTES;
    DP_CUBLAS_TRY(cublasSetWorkspace(c->blas, c->blas_workspace, c->blas_workspace_bytes));
    return DP_OK;
}

extern "C" dp_status dp_cuda_ctx_create(int device, dp_cuda_ctx **out) {
    *out = NULL;
    int n = 0;
    DP_CU_TRY(dp_cuda_device_count(&n));
    if (device < 0 || device >= n)
        return dp_error(DP_E_RANGE, "cuda: expected a device index in [0, %d), found %d", n,
                        device);
    dp_cuda_ctx *c = (dp_cuda_ctx *)dp_calloc(1, sizeof *c);
    if (!c) return dp_error(DP_E_NOMEM, "cuda: cannot allocate a device context");
    c->device = device;
    dp_status s = ctx_init(c, device);
    if (s != DP_OK) {
        dp_cuda_ctx_destroy(c);
        return s;
    }
    *out = c;
    return DP_OK;
}

/* Teardown ignores errors: it runs on failure paths too, and a failed
 * destroy has nothing left to report to. */
extern "C" void dp_cuda_ctx_destroy(dp_cuda_ctx *c) {
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_workspace) cudaFree(c->blas_workspace);
    if (c->stream) cudaStreamDestroy(c->stream);
    dp_free(c);
}

extern "C" dp_status dp_cuda_ctx_sync(dp_cuda_ctx *c) {
    DP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return DP_OK;
}

extern "C" int dp_cuda_ctx_device(const dp_cuda_ctx *c) {
    return c->device;
}

extern "C" dp_status dp_cuda_alloc(dp_cuda_ctx *c, size_t bytes, void **dev) {
    *dev = NULL;
    cudaError_t e = cudaMalloc(dev, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *dev = NULL;
        return dp_error(e == cudaErrorMemoryAllocation ? DP_E_NOMEM : DP_E_CUDA,
                        "cuda: cannot allocate %zu bytes on device %d: %s", bytes, c->device,
                        cudaGetErrorString(e));
    }
    DP_CUDA_TRY(cudaMemsetAsync(*dev, 0, bytes, c->stream));
    return DP_OK;
}

extern "C" void dp_cuda_free(dp_cuda_ctx *c, void *dev) {
    if (dev) cudaFree(dev); /* cudaFree waits for the device: safe after queued work */
}

extern "C" dp_status dp_cuda_to_device(dp_cuda_ctx *c, void *dev, const void *host, size_t bytes) {
    if (!bytes) return DP_OK;
    DP_CUDA_TRY(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, c->stream));
    /* pageable host memory may be reused by the caller at once: wait */
    DP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return DP_OK;
}

extern "C" dp_status dp_cuda_to_host(dp_cuda_ctx *c, void *host, const void *dev, size_t bytes) {
    if (!bytes) return DP_OK;
    DP_CUDA_TRY(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->stream));
    DP_CUDA_TRY(cudaStreamSynchronize(c->stream));
    return DP_OK;
}

extern "C" dp_status dp_cuda_zero_dev(dp_cuda_ctx *c, void *dev, size_t bytes) {
    if (!bytes) return DP_OK;
    DP_CUDA_TRY(cudaMemsetAsync(dev, 0, bytes, c->stream));
    return DP_OK;
}

/* ---------------------------------------------------------------- dataset */

extern "C" dp_status dp_cuda_data_create(dp_cuda_ctx *c, const float *X, const int32_t *y, size_t n,
                                         size_t d, size_t row_begin, size_t budget_bytes,
                                         dp_cuda_data **out) {
    *out = NULL;
    if (!d || (n && (!X || !y)))
        return dp_error(DP_E_USAGE, "cuda: dataset: expected X, y and d > 0, found d = %zu", d);
    if (n && d > (size_t)-1 / sizeof(float) / n)
        return dp_error(DP_E_RANGE, "cuda: dataset: %zu x %zu floats overflow size_t", n, d);
    size_t need = n * d * sizeof(float) + n * sizeof(int32_t);
    /* the context's device, also for the allocations below (with an explicit
     * budget too: cudaMalloc allocates on the thread's current device) */
    DP_CUDA_TRY(cudaSetDevice(c->device));
    if (!budget_bytes) {
        size_t fr = 0, tot = 0;
        DP_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
        budget_bytes = fr / 10 * 8;
    }
    dp_cuda_data *dd = (dp_cuda_data *)dp_calloc(1, sizeof *dd);
    if (!dd) return dp_error(DP_E_NOMEM, "cuda: cannot allocate a dataset handle");
    dd->ctx = c;
    dd->n = n;
    dd->d = d;
    dd->row_begin = row_begin;
    dd->X_host = X;
    dd->y_host = y;
    /* the labels' range, once: the batch path indexes class weights and
     * logits by label on the device, where nothing can check it */
    dd->y_min = n ? y[0] : 0;
    dd->y_max = n ? y[0] : 0;
    for (size_t i = 1; i < n; i++) {
        if (y[i] < dd->y_min) dd->y_min = y[i];
        if (y[i] > dd->y_max) dd->y_max = y[i];
    }
    dd->resident = need <= budget_bytes;
    if (dd->resident) {
        dp_status s = dp_cuda_alloc(c, n * d * sizeof(float), (void **)&dd->X_dev);
        if (s == DP_OK) s = dp_cuda_alloc(c, n * sizeof(int32_t), (void **)&dd->y_dev);
        if (s == DP_OK) s = dp_cuda_to_device(c, dd->X_dev, X, n * d * sizeof(float));
        if (s == DP_OK) s = dp_cuda_to_device(c, dd->y_dev, y, n * sizeof(int32_t));
        if (s != DP_OK) {
            dp_cuda_data_destroy(dd);
            return s;
        }
    }
    *out = dd;
    return DP_OK;
}

extern "C" void dp_cuda_data_destroy(dp_cuda_data *dd) {
    if (!dd) return;
    if (dd->X_dev) cudaFree(dd->X_dev);
    if (dd->y_dev) cudaFree(dd->y_dev);
    dp_free(dd);
}

extern "C" int dp_cuda_data_resident(const dp_cuda_data *dd) {
    return dd->resident;
}
