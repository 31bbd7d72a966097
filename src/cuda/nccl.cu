/*
 * nccl.cu: NCCL between the GPUs of an MPI job (one GPU per rank): a
 * communicator made from an ncclUniqueId that rank 0 creates and broadcasts
 * over MPI, and the collectives the trainer needs on the device gradient:
 * allreduce (sum), and reduce-scatter + allgather for DESIGN.md's `owner`
 * noise mode. Without NCCL in the build every call is DP_E_UNSUPPORTED and
 * the MPI algorithms of src/dist run through host staging instead.
 */
#define OMPI_SKIP_MPICXX 1 /* the C API only: no C++ bindings in a .cu file */
#include <mpi.h>
#include "cuda/cuda_internal.h"

#ifdef DP_HAVE_NCCL
struct dp_cuda_comm {
    dp_cuda_ctx *ctx;
    ncclComm_t comm;
    int rank, size;
};

extern "C" dp_status dp_nccl_create_cuda(dp_cuda_ctx *ctx, const void *mpi_comm,
                                         dp_cuda_comm **out) {
    *out = NULL;
    if (!mpi_comm) return dp_error(DP_E_USAGE, "nccl: expected an MPI communicator, found NULL");
    MPI_Comm mc = *(const MPI_Comm *)mpi_comm;
    int rank = 0, size = 1;
    if (MPI_Comm_rank(mc, &rank) != MPI_SUCCESS || MPI_Comm_size(mc, &size) != MPI_SUCCESS)
        return dp_error(DP_E_MPI, "nccl: MPI_Comm_rank/size failed");
    ncclUniqueId id;
    /* every rank reaches the broadcast, even when rank 0's GetUniqueId
     * failed: its status travels with the id so that all ranks fail together */
    int st = 0;
    if (rank == 0) st = ncclGetUniqueId(&id) == ncclSuccess ? 0 : 1;
    struct {
        ncclUniqueId id;
        int st;
    } msg;
    if (rank == 0) {
        msg.id = id;
        msg.st = st;
    }
    if (MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, mc) != MPI_SUCCESS)
        return dp_error(DP_E_MPI, "nccl: MPI_Bcast of the NCCL unique id failed");
    if (msg.st) return dp_error(DP_E_CUDA, "nccl: rank 0 could not create an NCCL unique id");
    /* ncclCommInitRank blocks until every rank has called it: a rank that
     * cannot get there (no handle, no device) says so first, and all return */
    dp_cuda_comm *c = (dp_cuda_comm *)dp_calloc(1, sizeof *c);
    cudaError_t ce = c ? cudaSetDevice(ctx->device) : cudaSuccess;
    int bad = !c || ce != cudaSuccess, any_bad = 1;
    if (MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, mc) != MPI_SUCCESS) {
        dp_free(c);
        return dp_error(DP_E_MPI, "nccl: MPI_Allreduce before ncclCommInitRank failed");
    }
    if (any_bad) {
        dp_status code = !c ? DP_E_NOMEM : DP_E_CUDA;
        dp_free(c);
        if (bad)
            return dp_error(code, "nccl: rank %d of %d: %s", rank, size,
                            ce != cudaSuccess ? cudaGetErrorString(ce)
                                              : "cannot allocate a communicator handle");
        return dp_error(DP_E_CUDA, "nccl: rank %d of %d: another rank could not set up NCCL", rank,
                        size);
    }
    c->ctx = ctx;
    c->rank = rank;
    c->size = size;
    ncclResult_t r = ncclCommInitRank(&c->comm, size, msg.id, rank);
    if (r != ncclSuccess) {
        dp_free(c);
        return dp_error(DP_E_CUDA, "nccl: rank %d of %d: ncclCommInitRank: %s", rank, size,
                        ncclGetErrorString(r));
    }
    *out = c;
    return DP_OK;
}

extern "C" void dp_nccl_destroy_cuda(dp_cuda_comm *c) {
    if (!c) return;
    cudaStreamSynchronize(c->ctx->stream);
    ncclCommDestroy(c->comm);
    dp_free(c);
}

extern "C" dp_status dp_nccl_allreduce_cuda(dp_cuda_comm *c, float *buf_dev, size_t n) {
    if (!n) return DP_OK;
    DP_NCCL_TRY(ncclAllReduce(buf_dev, buf_dev, n, ncclFloat32, ncclSum, c->comm, c->ctx->stream));
    return DP_OK;
}

extern "C" dp_status dp_nccl_reduce_scatter_cuda(dp_cuda_comm *c, const float *send_dev,
                                                 float *recv_dev, size_t count) {
    if (!count) return DP_OK;
    DP_NCCL_TRY(ncclReduceScatter(send_dev, recv_dev, count, ncclFloat32, ncclSum, c->comm,
                                  c->ctx->stream));
    return DP_OK;
}

extern "C" dp_status dp_nccl_allgather_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                            size_t count) {
    if (!count) return DP_OK;
    DP_NCCL_TRY(ncclAllGather(send_dev, recv_dev, count, ncclFloat32, c->comm, c->ctx->stream));
    return DP_OK;
}

#else /* no NCCL in this build */

static dp_status no_nccl(const char *fn) {
    return dp_error(DP_E_UNSUPPORTED,
                    "%s: this build has CUDA but no NCCL (install NCCL beside "
                    "the CUDA toolkit and rebuild; or use --allreduce mpi)",
                    fn);
}
extern "C" dp_status dp_nccl_create_cuda(dp_cuda_ctx *ctx, const void *mpi_comm,
                                         dp_cuda_comm **out) {
    *out = NULL;
    return no_nccl(__func__);
}
extern "C" void dp_nccl_destroy_cuda(dp_cuda_comm *c) {}
extern "C" dp_status dp_nccl_allreduce_cuda(dp_cuda_comm *c, float *buf_dev, size_t n) {
    return no_nccl(__func__);
}
extern "C" dp_status dp_nccl_reduce_scatter_cuda(dp_cuda_comm *c, const float *send_dev,
                                                 float *recv_dev, size_t count) {
    return no_nccl(__func__);
}
extern "C" dp_status dp_nccl_allgather_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                            size_t count) {
    return no_nccl(__func__);
}
#endif
