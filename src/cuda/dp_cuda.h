/*
 * dp_cuda.h: the CUDA backend as plain C functions, usable from .c files
 * without any CUDA header (device pointers are plain float * / void *).
 * Implemented by the .cu files of src/cuda when the toolkit is found (DP_HAVE_CUDA);
 * otherwise src/core/cuda_stub.c answers every call with DP_E_UNSUPPORTED.
 * Each function mirrors a CPU function of src/nn, src/dp or src/train and
 * keeps its name with a `_cuda` suffix (STYLE.md); semantics are the CPU's.
 *
 * Internal to libdpsgd (hidden visibility, no DP_API): the trainer's backend
 * table, tests/gpu/check_cuda.c and bench/gpu_train.c call it.
 *
 * Threading: one context per host thread; every call on a context is queued
 * on its one stream. Functions named *_dev work on device memory and return
 * without waiting; functions that take or fill host arrays wait.
 */
#ifndef DP_CUDA_H
#define DP_CUDA_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/dp.h"
#include "dpsgd/mlp.h"
#include "dpsgd/status.h"
#include "dpsgd/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- devices */

typedef struct dp_cuda_device_info {
    int index;
    char name[256];
    int cc_major, cc_minor; /* compute capability (9.0 for H100/H200) */
    int n_sm;               /* multiprocessors */
    size_t total_mem;       /* bytes */
    size_t free_mem;        /* bytes free when asked */
    size_t l2_bytes;
} dp_cuda_device_info;

/* Number of CUDA devices. DP_E_CUDA with "no CUDA device" in the message
 * when there is none or no driver (never a crash or a hang); DP_E_UNSUPPORTED
 * in a build without the backend. */
dp_status dp_cuda_device_count(int *count);
dp_status dp_cuda_device_query(int device, dp_cuda_device_info *out);
/* The device a process of local rank `local_rank` should use (rank modulo the
 * count: one GPU per rank); DP_E_CUDA when there is no device. */
dp_status dp_cuda_device_for_rank(int local_rank, int *device);

/* ---------------------------------------------------------------- context */

/* A device context: the device, one stream, a cuBLAS handle bound to that
 * stream (float32, no TF32: results must match the CPU), a cuBLAS workspace,
 * and pinned staging buffers. */
typedef struct dp_cuda_ctx dp_cuda_ctx;
dp_status dp_cuda_ctx_create(int device, dp_cuda_ctx **out);
void dp_cuda_ctx_destroy(dp_cuda_ctx *ctx);
/* Wait for everything queued on the context's stream. */
dp_status dp_cuda_ctx_sync(dp_cuda_ctx *ctx);
int dp_cuda_ctx_device(const dp_cuda_ctx *ctx);

/* Device memory (cudaMalloc; never managed memory). *dev is zeroed. */
dp_status dp_cuda_alloc(dp_cuda_ctx *ctx, size_t bytes, void **dev);
void dp_cuda_free(dp_cuda_ctx *ctx, void *dev);
/* Copies in stream order; _to_host waits for the copy (and all before it). */
dp_status dp_cuda_to_device(dp_cuda_ctx *ctx, void *dev, const void *host, size_t bytes);
dp_status dp_cuda_to_host(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);
dp_status dp_cuda_zero_dev(dp_cuda_ctx *ctx, void *dev, size_t bytes);

/* ---------------------------------------------------------------- dataset */

/* Rows [row_begin, row_begin + n) of a split on the device: X [n, d] float32
 * row-major, y [n] int32. Resident (copied once) when it fits in
 * `budget_bytes` (0: 80% of the free device memory); otherwise streamed: the
 * host pointers are kept (they must outlive the handle) and each batch is
 * gathered on the host into pinned memory and copied. */
typedef struct dp_cuda_data dp_cuda_data;
dp_status dp_cuda_data_create(dp_cuda_ctx *ctx, const float *X, const int32_t *y, size_t n,
                              size_t d, size_t row_begin, size_t budget_bytes, dp_cuda_data **out);
void dp_cuda_data_destroy(dp_cuda_data *data);
int dp_cuda_data_resident(const dp_cuda_data *data);

/* ---------------------------------------------------------------- the MLP */

/* The network of mlp.h on the device: parameters, gradient (same flat layout
 * as dp_mlp_params), and a workspace for micro-batches of up to max_micro
 * rows (activations and deltas of every layer, per-example squared norms). */
typedef struct dp_cuda_mlp dp_cuda_mlp;
dp_status dp_mlp_create_cuda(dp_cuda_ctx *ctx, const dp_mlp_config *cfg, size_t max_micro,
                             dp_cuda_mlp **out);
void dp_mlp_destroy_cuda(dp_cuda_mlp *m);
size_t dp_mlp_nparams_cuda(const dp_cuda_mlp *m);
size_t dp_mlp_max_micro_cuda(const dp_cuda_mlp *m);
/* Upload / download the parameter vector [P] (host, dp_mlp_params layout). */
dp_status dp_mlp_set_params_cuda(dp_cuda_mlp *m, const float *params);
dp_status dp_mlp_get_params_cuda(dp_cuda_mlp *m, float *params);
/* Device pointers to parameters [P] and gradient accumulator [P]. The
 * gradient buffer has DP_CUDA_GRAD_PAD more floats that nothing writes and
 * stay zero, so that an NCCL reduce-scatter/allgather over R chunks of
 * ceil(P / R) floats (R <= DP_CUDA_GRAD_PAD + 1) stays inside it; noise must
 * be added to coordinates below P only. */
#define DP_CUDA_GRAD_PAD 1024
float *dp_mlp_params_dev_cuda(dp_cuda_mlp *m);
float *dp_mlp_grad_dev_cuda(dp_cuda_mlp *m);
dp_status dp_mlp_zero_grad_cuda(dp_cuda_mlp *m);
dp_status dp_mlp_get_grad_cuda(dp_cuda_mlp *m, float *grad);

/* dp_mlp_clipped_grad on the device, host arrays in and out: ACCUMULATE into
 * the host grad[P] the clipped per-example gradient sum of X [n, d], y [n]
 * (class_weight [k] or NULL), stats accumulated (may be NULL). The device
 * gradient accumulator is overwritten. For tests and small jobs. */
dp_status dp_mlp_clipped_grad_cuda(dp_cuda_mlp *m, const float *X, const int32_t *y, size_t n,
                                   const dp_clip_config *clip, const float *class_weight,
                                   float *grad, dp_grad_stats *stats);

/* The per-example squared gradient norms |g_i|^2 = sum_l |delta_i^l|^2
 * (|a_i^l|^2 + 1) of rows [0, n) of the last micro-batch processed (n at
 * most its row count), into host out[n] (waits). For tests: the norms
 * without per-example gradients, held against materialised ones. */
dp_status dp_mlp_example_sqnorms_cuda(dp_cuda_mlp *m, size_t n, double *out);

/* The step's hot path: ACCUMULATE into the device gradient the clipped sum
 * over the examples idx[0..n) (global row numbers inside the rows that
 * `data` holds), gathered on the device. Returns without waiting; the only
 * host->device traffic is the index list. Stats stay on the device until
 * dp_mlp_stats_cuda. n may be 0 (nothing is queued). */
dp_status dp_mlp_batch_grad_cuda(dp_cuda_mlp *m, const dp_cuda_data *data, const size_t *idx,
                                 size_t n, const dp_clip_config *clip, const float *class_weight);

/* Replay a captured CUDA graph for each micro-batch instead of launching its
 * ~20 kernels one by one: micro-batches are padded to max_micro rows (padding
 * rows get clip factor 0, so the sum is unchanged), so one graph serves every
 * step. on = 0 goes back to exact-size launches. */
dp_status dp_mlp_use_graph_cuda(dp_cuda_mlp *m, int on);

/* Per-phase timing with CUDA events (t_forward, t_backward, t_norms,
 * t_wgrad of dp_grad_stats, plus gather): waits after every micro-batch, so
 * only for benchmarks. Ignored in graph mode. */
dp_status dp_mlp_profile_cuda(dp_cuda_mlp *m, int on);

/* ADD the statistics gathered on the device since the last call into *stats
 * (waits) and reset them. t_gather (may be NULL) receives the gather time
 * when profiling. */
dp_status dp_mlp_stats_cuda(dp_cuda_mlp *m, dp_grad_stats *stats, double *t_gather);

/* dp_mlp_predict on the device: class probabilities P [n, k] (host) for
 * X [n, d] (host), any n. */
dp_status dp_mlp_predict_cuda(dp_cuda_mlp *m, const float *X, size_t n, float *P);
/* The same for rows [first, first + n) of device-resident data (eval without
 * copying the split again); P is host memory [n, k]. */
dp_status dp_mlp_predict_data_cuda(dp_cuda_mlp *m, const dp_cuda_data *data, size_t first, size_t n,
                                   float *P);

/* ---------------------------------------------------------------- noise */

/* The ChaCha20 keystream of src/dp (same variant as libsodium's
 * crypto_stream_chacha20_*_xor_ic used there) computed on the device: bytes
 * [0, nbytes) of the stream for (key, nonce, initial block counter), copied
 * to host out. nonce is 8 bytes (original variant) or 12 (IETF) as src/dp
 * uses; nonce_len says which. For the keystream test. */
dp_status dp_chacha20_cuda(dp_cuda_ctx *ctx, const uint8_t key[32], const uint8_t *nonce,
                           size_t nonce_len, uint64_t counter, uint8_t *out, size_t nbytes);

/* dp_noise_add on the device: ADD std * N(0,1) draws (coordinates
 * [offset, offset + n) of the noise vector of (key, step, stream)) to the
 * device array out_dev [n]. Same draws as the CPU's. Returns without waiting. */
dp_status dp_noise_add_dev_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step, uint64_t stream,
                                size_t offset, float *out_dev, size_t n, double std);
/* dp_noise_draw_f64 on the device, overwriting host out [n] (for tests). */
dp_status dp_noise_draw_f64_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step,
                                 uint64_t stream, size_t offset, double *out, size_t n);

/* ---------------------------------------------------------------- optimizer */

/* The optimizers of src/train/optim.c (SGD, PyTorch momentum, Adam with
 * PyTorch's epsilon) on device state: momentum v [n]; Adam m [n] then v [n]. */
typedef struct dp_cuda_optim dp_cuda_optim;
dp_status dp_optim_create_cuda(dp_cuda_ctx *ctx, dp_optimizer_kind kind, size_t n, double momentum,
                               double beta1, double beta2, double eps, dp_cuda_optim **out);
void dp_optim_destroy_cuda(dp_cuda_optim *o);
/* p_dev -= update(g_dev * g_scale) with learning rate lr; the update count t
 * advances (Adam's bias correction uses t + 1). If zero_grad, g_dev is set to
 * zero in the same pass (ready for the next step's accumulation). */
dp_status dp_optim_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev, float g_scale,
                                 double lr, int zero_grad);
/* The state (optim_state_len floats, host) and update count, for
 * checkpoints; set restores them. */
dp_status dp_optim_get_state_cuda(dp_cuda_optim *o, float *state, uint64_t *t);
dp_status dp_optim_set_state_cuda(dp_cuda_optim *o, const float *state, uint64_t t);

/* The end of a private step in one kernel: for coordinates [0, n) of the
 * device gradient g_dev (which are coordinates [offset, offset + n) of the
 * step's noise vector): g = (g + noise_std * N(0,1)) * g_scale, then the
 * optimizer update of p_dev, then g = 0. noise_std = 0 skips the noise.
 * Equal to dp_noise_add_dev_cuda + dp_optim_step_dev_cuda, one pass. */
dp_status dp_optim_noisy_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev,
                                       const dp_key *key, uint64_t step, uint64_t stream,
                                       size_t offset, double noise_std, float g_scale, double lr);

/* ---------------------------------------------------------------- NCCL */

/* A NCCL communicator over the ranks of an MPI communicator (`mpi_comm`
 * points to an MPI_Comm): rank 0 makes the ncclUniqueId and broadcasts it
 * over MPI. DP_E_UNSUPPORTED when the build has no NCCL. Collective. */
typedef struct dp_cuda_comm dp_cuda_comm;
dp_status dp_nccl_create_cuda(dp_cuda_ctx *ctx, const void *mpi_comm, dp_cuda_comm **out);
void dp_nccl_destroy_cuda(dp_cuda_comm *c);
/* In-place sum over the ranks of buf_dev [n] (float32), on the ctx stream. */
dp_status dp_nccl_allreduce_cuda(dp_cuda_comm *c, float *buf_dev, size_t n);
/* Reduce-scatter: rank r receives the sum of chunk r (count floats) of every
 * rank's send_dev [count * R] into recv_dev [count]; allgather is its inverse.
 * Together they make DESIGN.md's `owner` noise mode on the device. */
dp_status dp_nccl_reduce_scatter_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                      size_t count);
dp_status dp_nccl_allgather_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                 size_t count);

/* ---------------------------------------------------------------- ceilings */

/* The device's measured ceilings, for a benchmark's floor (METHOD.md): the
 * float32 sgemm rate of cuBLAS on a large square product, device memory
 * bandwidth (a large device-to-device copy, bytes read + written), the time
 * per launch of an empty kernel queued back to back, and per kernel node of
 * a replayed CUDA graph; and the time of one small sgemm of shape
 * [m, k] x [k, n] (launch included) as the step's own products see it. */
typedef struct dp_cuda_ceilings {
    double sgemm_flops;  /* FLOP/s */
    double bandwidth;    /* bytes/s */
    double launch_s;     /* seconds per queued empty kernel */
    double graph_node_s; /* seconds per empty kernel node in a graph replay */
    double small_gemm_s; /* seconds per small sgemm */
} dp_cuda_ceilings;
dp_status dp_cuda_ceilings_measure(dp_cuda_ctx *ctx, int m, int n, int k, dp_cuda_ceilings *out);

#ifdef __cplusplus
}
#endif
#endif
