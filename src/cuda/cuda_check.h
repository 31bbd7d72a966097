/*
 * cuda_check.h: every CUDA runtime, cuBLAS and NCCL call of the backend goes
 * through one of these macros. A failure is recorded with dp_error (file,
 * line, the statement as written, the runtime's own error string) and the
 * enclosing function returns DP_E_CUDA: the library never exits or prints.
 * Included only by .cu files (nvcc); plain C sees src/cuda/dp_cuda.h instead.
 */
#ifndef DP_CUDA_CHECK_H
#define DP_CUDA_CHECK_H
#include <cublas_v2.h>
#include <cuda_runtime.h>
extern "C" {
#include "core/dp_internal.h"
}

/* `DP_CUDA_TRY(cudaMemcpyAsync(...));` returns DP_E_CUDA from the caller on
 * failure. The statement text tells which call failed without a debugger. */
#define DP_CUDA_TRY(stmt)                                                                          \
    do {                                                                                           \
        cudaError_t dp_cu_e_ = (stmt);                                                             \
        if (dp_cu_e_ != cudaSuccess)                                                               \
            return dp_error(DP_E_CUDA, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, #stmt,            \
                            cudaGetErrorString(dp_cu_e_), cudaGetErrorName(dp_cu_e_));             \
    } while (0)

/* After a kernel launch: launch-configuration errors are reported by
 * cudaGetLastError, not by the <<<>>> expression itself. */
#define DP_CUDA_LAUNCHED(what) DP_CUDA_TRY(cudaGetLastError())

#define DP_CUBLAS_TRY(stmt)                                                                        \
    do {                                                                                           \
        cublasStatus_t dp_cb_s_ = (stmt);                                                          \
        if (dp_cb_s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return dp_error(DP_E_CUDA, "%s:%d: %s: cuBLAS: %s", __FILE__, __LINE__, #stmt,         \
                            cublasGetStatusString(dp_cb_s_));                                      \
    } while (0)

#ifdef DP_HAVE_NCCL
#include <nccl.h>
#define DP_NCCL_TRY(stmt)                                                                          \
    do {                                                                                           \
        ncclResult_t dp_nc_r_ = (stmt);                                                            \
        if (dp_nc_r_ != ncclSuccess)                                                               \
            return dp_error(DP_E_CUDA, "%s:%d: %s: NCCL: %s", __FILE__, __LINE__, #stmt,           \
                            ncclGetErrorString(dp_nc_r_));                                         \
    } while (0)
#endif

/* Status-returning internal calls inside .cu files (DP_TRY without the C
 * header's dependency on statement expressions). */
#define DP_CU_TRY(expr)                                                                            \
    do {                                                                                           \
        dp_status dp_cu_s_ = (expr);                                                               \
        if (dp_cu_s_ != DP_OK) return dp_cu_s_;                                                    \
    } while (0)

#endif
