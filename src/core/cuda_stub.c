/*
 * cuda_stub.c: the CUDA backend's C interface (src/cuda/dp_cuda.h) in a build
 * without the CUDA toolkit: every entry point fails with DP_E_UNSUPPORTED and
 * says how to get the backend, so `--device cuda` explains itself instead of
 * failing to link. Compiled to nothing when DP_HAVE_CUDA is defined.
 */
#ifndef DP_HAVE_CUDA
#include "core/dp_internal.h"
#include "cuda/dp_cuda.h"

static dp_status no_cuda(const char *fn) {
    return dp_error(DP_E_UNSUPPORTED,
                    "%s: this build has no CUDA backend (rebuild with the CUDA toolkit: nvcc on "
                    "PATH, CUDA_HOME or /usr/local/cuda)",
                    fn);
}
#define NO_CUDA return no_cuda(__func__)

dp_status dp_cuda_device_count(int *count) {
    if (count) *count = 0;
    NO_CUDA;
}
dp_status dp_cuda_device_query(int device, dp_cuda_device_info *out) {
    NO_CUDA;
}
dp_status dp_cuda_device_for_rank(int local_rank, int *device) {
    NO_CUDA;
}

dp_status dp_cuda_ctx_create(int device, dp_cuda_ctx **out) {
    if (out) *out = NULL;
    NO_CUDA;
}
void dp_cuda_ctx_destroy(dp_cuda_ctx *ctx) {}
dp_status dp_cuda_ctx_sync(dp_cuda_ctx *ctx) {
    NO_CUDA;
}
int dp_cuda_ctx_device(const dp_cuda_ctx *ctx) {
    return -1;
}
dp_status dp_cuda_alloc(dp_cuda_ctx *ctx, size_t bytes, void **dev) {
    if (dev) *dev = NULL;
    NO_CUDA;
}
void dp_cuda_free(dp_cuda_ctx *ctx, void *dev) {}
dp_status dp_cuda_to_device(dp_cuda_ctx *ctx, void *dev, const void *host, size_t bytes) {
    NO_CUDA;
}
dp_status dp_cuda_to_host(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes) {
    NO_CUDA;
}
dp_status dp_cuda_zero_dev(dp_cuda_ctx *ctx, void *dev, size_t bytes) {
    NO_CUDA;
}

dp_status dp_cuda_data_create(dp_cuda_ctx *ctx, const float *X, const int32_t *y, size_t n,
                              size_t d, size_t row_begin, size_t budget_bytes, dp_cuda_data **out) {
    if (out) *out = NULL;
    NO_CUDA;
}
void dp_cuda_data_destroy(dp_cuda_data *data) {}
int dp_cuda_data_resident(const dp_cuda_data *data) {
    return 0;
}

dp_status dp_mlp_create_cuda(dp_cuda_ctx *ctx, const dp_mlp_config *cfg, size_t max_micro,
                             dp_cuda_mlp **out) {
    if (out) *out = NULL;
    NO_CUDA;
}
void dp_mlp_destroy_cuda(dp_cuda_mlp *m) {}
size_t dp_mlp_nparams_cuda(const dp_cuda_mlp *m) {
    return 0;
}
size_t dp_mlp_max_micro_cuda(const dp_cuda_mlp *m) {
    return 0;
}
dp_status dp_mlp_set_params_cuda(dp_cuda_mlp *m, const float *params) {
    NO_CUDA;
}
dp_status dp_mlp_get_params_cuda(dp_cuda_mlp *m, float *params) {
    NO_CUDA;
}
float *dp_mlp_params_dev_cuda(dp_cuda_mlp *m) {
    return NULL;
}
float *dp_mlp_grad_dev_cuda(dp_cuda_mlp *m) {
    return NULL;
}
dp_status dp_mlp_zero_grad_cuda(dp_cuda_mlp *m) {
    NO_CUDA;
}
dp_status dp_mlp_get_grad_cuda(dp_cuda_mlp *m, float *grad) {
    NO_CUDA;
}
dp_status dp_mlp_clipped_grad_cuda(dp_cuda_mlp *m, const float *X, const int32_t *y, size_t n,
                                   const dp_clip_config *clip, const float *class_weight,
                                   float *grad, dp_grad_stats *stats) {
    NO_CUDA;
}
dp_status dp_mlp_batch_grad_cuda(dp_cuda_mlp *m, const dp_cuda_data *data, const size_t *idx,
                                 size_t n, const dp_clip_config *clip, const float *class_weight) {
    NO_CUDA;
}
dp_status dp_mlp_use_graph_cuda(dp_cuda_mlp *m, int on) {
    NO_CUDA;
}
dp_status dp_mlp_profile_cuda(dp_cuda_mlp *m, int on) {
    NO_CUDA;
}
dp_status dp_mlp_stats_cuda(dp_cuda_mlp *m, dp_grad_stats *stats, double *t_gather) {
    NO_CUDA;
}
dp_status dp_mlp_predict_cuda(dp_cuda_mlp *m, const float *X, size_t n, float *P) {
    NO_CUDA;
}
dp_status dp_mlp_predict_data_cuda(dp_cuda_mlp *m, const dp_cuda_data *data, size_t first, size_t n,
                                   float *P) {
    NO_CUDA;
}

dp_status dp_chacha20_cuda(dp_cuda_ctx *ctx, const uint8_t key[32], const uint8_t *nonce,
                           size_t nonce_len, uint64_t counter, uint8_t *out, size_t nbytes) {
    NO_CUDA;
}
dp_status dp_noise_add_dev_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step, uint64_t stream,
                                size_t offset, float *out_dev, size_t n, double std) {
    NO_CUDA;
}
dp_status dp_noise_draw_f64_cuda(dp_cuda_ctx *ctx, const dp_key *key, uint64_t step,
                                 uint64_t stream, size_t offset, double *out, size_t n) {
    NO_CUDA;
}

dp_status dp_optim_create_cuda(dp_cuda_ctx *ctx, dp_optimizer_kind kind, size_t n, double momentum,
                               double beta1, double beta2, double eps, dp_cuda_optim **out) {
    if (out) *out = NULL;
    NO_CUDA;
}
void dp_optim_destroy_cuda(dp_cuda_optim *o) {}
dp_status dp_optim_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev, float g_scale,
                                 double lr, int zero_grad) {
    NO_CUDA;
}
dp_status dp_optim_get_state_cuda(dp_cuda_optim *o, float *state, uint64_t *t) {
    NO_CUDA;
}
dp_status dp_optim_set_state_cuda(dp_cuda_optim *o, const float *state, uint64_t t) {
    NO_CUDA;
}
dp_status dp_optim_noisy_step_dev_cuda(dp_cuda_optim *o, float *p_dev, float *g_dev,
                                       const dp_key *key, uint64_t step, uint64_t stream,
                                       size_t offset, double noise_std, float g_scale, double lr) {
    NO_CUDA;
}

dp_status dp_nccl_create_cuda(dp_cuda_ctx *ctx, const void *mpi_comm, dp_cuda_comm **out) {
    if (out) *out = NULL;
    NO_CUDA;
}
void dp_nccl_destroy_cuda(dp_cuda_comm *c) {}
dp_status dp_nccl_allreduce_cuda(dp_cuda_comm *c, float *buf_dev, size_t n) {
    NO_CUDA;
}
dp_status dp_nccl_reduce_scatter_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                      size_t count) {
    NO_CUDA;
}
dp_status dp_nccl_allgather_cuda(dp_cuda_comm *c, const float *send_dev, float *recv_dev,
                                 size_t count) {
    NO_CUDA;
}
dp_status dp_cuda_ceilings_measure(dp_cuda_ctx *ctx, int m, int n, int k, dp_cuda_ceilings *out) {
    NO_CUDA;
}
#else
typedef int dp_cuda_stub_unused; /* ISO C: a translation unit is not empty */
#endif
