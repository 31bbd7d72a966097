/*
 * backend.c: the backend table of the training step (backend.h) and its CUDA
 * entry, which drives the dp_*_cuda functions of src/cuda/dp_cuda.h (the
 * stubs of src/core/cuda_stub.c answer DP_E_UNSUPPORTED in a build without
 * CUDA, so this file is the same in both builds). The step it runs is
 * docs/cuda.md's recipe; the CPU entry is trainer.c's host step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "cuda/dp_cuda.h"
#include "dist/comm_internal.h"
#include "train/backend.h"

struct train_dev {
    dp_cuda_ctx *ctx;
    dp_cuda_data *data;
    dp_cuda_mlp *m;
    dp_cuda_optim *o;
    dp_cuda_comm *nccl;
    size_t P;
    int rank, R;
};

int train_local_rank(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *s = getenv(vars[i]);
        char *end;
        long v = s && *s ? strtol(s, &end, 10) : -1;
        if (s && *s && !*end && v >= 0 && v < 1 << 20) return (int)v;
    }
    return 0;
}

static dp_status cuda_probe(void) {
    int n = 0;
    DP_TRY(dp_cuda_device_count(&n));
    if (n < 1) return dp_error(DP_E_CUDA, "cuda: no CUDA device");
    return DP_OK;
}

static void cuda_close(train_dev *d) {
    if (!d) return;
    dp_nccl_destroy_cuda(d->nccl);
    dp_optim_destroy_cuda(d->o);
    dp_mlp_destroy_cuda(d->m);
    dp_cuda_data_destroy(d->data);
    dp_cuda_ctx_destroy(d->ctx);
    dp_free(d);
}

static dp_status cuda_open_into(const train_dev_setup *s, train_dev *d) {
    int dev = 0;
    DP_TRY(dp_cuda_device_for_rank(train_local_rank(), &dev));
    DP_TRY(dp_cuda_ctx_create(dev, &d->ctx));
    DP_TRY(dp_cuda_data_create(d->ctx, s->X, s->y, s->rows, s->d, s->row_begin, 0, &d->data));
    DP_TRY(dp_mlp_create_cuda(d->ctx, s->mlp, s->max_micro, &d->m));
    if (dp_mlp_nparams_cuda(d->m) != s->n_params)
        return dp_error(DP_E_INTERNAL, "cuda: device network has %zu parameters, host %zu",
                        dp_mlp_nparams_cuda(d->m), s->n_params);
    DP_TRY(dp_mlp_use_graph_cuda(d->m, s->graph));
    DP_TRY(dp_mlp_set_params_cuda(d->m, s->params));
    DP_TRY(dp_mlp_zero_grad_cuda(d->m));
    DP_TRY(dp_optim_create_cuda(d->ctx, s->optimizer, s->n_params, s->momentum, s->beta1, s->beta2,
                                s->eps, &d->o));
    if (s->opt_state || s->opt_t) DP_TRY(dp_optim_set_state_cuda(d->o, s->opt_state, s->opt_t));
    return DP_OK;
}

/* The NCCL communicator, made collectively (MPI_Bcast of the id, then
 * ncclCommInitRank) only once every rank's device side is up: a rank that
 * failed above must not leave the others waiting in that broadcast while it
 * enters the trainer's agreement (two different collectives: a hang). */
static dp_status cuda_open_nccl(const train_dev_setup *s, train_dev *d, dp_status local) {
    if ((size_t)d->R > DP_CUDA_GRAD_PAD + 1)
        return dp_error(DP_E_USAGE, "cuda: NCCL owner noise supports up to %d ranks, found %d",
                        DP_CUDA_GRAD_PAD + 1, d->R);
    DP_TRY(dp_comm_agree(s->comm, local, NULL));
    dp_status st = dp_nccl_create_cuda(d->ctx, &s->comm->mc, &d->nccl);
    if (st == DP_E_UNSUPPORTED)
        return dp_error(st, "--allreduce nccl: this build has no NCCL (use mpi, naive, ring or "
                            "tree: the gradient is staged through host memory)");
    return st;
}

static dp_status cuda_open(const train_dev_setup *s, train_dev **out) {
    *out = NULL;
    train_dev *d = dp_calloc(1, sizeof *d);
    if (!d) return dp_error(DP_E_NOMEM, "cuda: out of memory");
    d->P = s->n_params;
    d->rank = s->comm ? dp_comm_rank(s->comm) : 0;
    d->R = s->comm ? dp_comm_size(s->comm) : 1;
    dp_status st = cuda_open_into(s, d);
    if (d->R > 1 && s->nccl) st = cuda_open_nccl(s, d, st);
    if (st != DP_OK) {
        cuda_close(d);
        return st;
    }
    *out = d;
    return DP_OK;
}

static dp_status cuda_get_params(train_dev *d, float *params) {
    return dp_mlp_get_params_cuda(d->m, params);
}

static dp_status cuda_get_state(train_dev *d, float *state, uint64_t *t) {
    return dp_optim_get_state_cuda(d->o, state, t);
}

static dp_status cuda_batch_grad(train_dev *d, const size_t *idx, size_t n,
                                 const dp_clip_config *clip, const float *class_weight) {
    return dp_mlp_batch_grad_cuda(d->m, d->data, idx, n, clip, class_weight);
}

static dp_status cuda_grad_get(train_dev *d, float *g) {
    return dp_cuda_to_host(d->ctx, g, dp_mlp_grad_dev_cuda(d->m), d->P * sizeof(float));
}

static dp_status cuda_grad_put(train_dev *d, const float *g) {
    return dp_cuda_to_device(d->ctx, dp_mlp_grad_dev_cuda(d->m), g, d->P * sizeof(float));
}

static dp_status cuda_noise_add(train_dev *d, const dp_key *key, uint64_t step, uint64_t stream,
                                size_t off, size_t n, double std) {
    if (n == 0 || std == 0) return DP_OK;
    return dp_noise_add_dev_cuda(d->ctx, key, step, stream, off, dp_mlp_grad_dev_cuda(d->m) + off,
                                 n, std);
}

/* The gradient buffer has DP_CUDA_GRAD_PAD zero floats past P, so R chunks
 * of ceil(P / R) fit; reduce-scatter and allgather run in place (NCCL's
 * in-place forms: chunk r of the buffer is rank r's receive space). */
static dp_status cuda_nccl_sum(train_dev *d, const dp_key *key, uint64_t step,
                               double owner_noise_std) {
    if (!d->nccl) return dp_error(DP_E_INTERNAL, "cuda: no NCCL communicator");
    float *g = dp_mlp_grad_dev_cuda(d->m);
    if (owner_noise_std == 0) return dp_nccl_allreduce_cuda(d->nccl, g, d->P);
    size_t count = (d->P + (size_t)d->R - 1) / (size_t)d->R;
    size_t off = (size_t)d->rank * count;
    DP_TRY(dp_nccl_reduce_scatter_cuda(d->nccl, g, g + off, count));
    if (off < d->P)
        DP_TRY(cuda_noise_add(d, key, step, 0, off, DP_MIN(count, d->P - off), owner_noise_std));
    return dp_nccl_allgather_cuda(d->nccl, g + off, g, count);
}

static dp_status cuda_update(train_dev *d, const dp_key *key, uint64_t step, double noise_std,
                             float scale, double lr) {
    return dp_optim_noisy_step_dev_cuda(d->o, dp_mlp_params_dev_cuda(d->m),
                                        dp_mlp_grad_dev_cuda(d->m), key, step, 0, 0, noise_std,
                                        scale, lr);
}

static dp_status cuda_stats(train_dev *d, dp_grad_stats *gs) {
    return dp_mlp_stats_cuda(d->m, gs, NULL);
}

static const train_backend backend_cuda = {
    "cuda",         cuda_probe,      cuda_open,     cuda_close,    cuda_get_params,
    cuda_get_state, cuda_batch_grad, cuda_grad_get, cuda_grad_put, cuda_noise_add,
    cuda_nccl_sum,  cuda_update,     cuda_stats,
};

/* The table: one entry per dp_device_kind; the CPU's is the host path. */
static const train_backend *const backends[] = {NULL, &backend_cuda};

const train_backend *train_backend_for(dp_device_kind kind) {
    return (int)kind >= 0 && (size_t)kind < sizeof backends / sizeof backends[0] ? backends[kind]
                                                                                 : NULL;
}

DP_API dp_status dp_device_available(dp_device_kind kind) {
    if (kind == DP_DEVICE_CPU) return DP_OK;
    const train_backend *be = train_backend_for(kind);
    if (!be) return dp_error(DP_E_USAGE, "device: unknown device kind %d", (int)kind);
    return be->probe();
}

DP_API dp_status dp_mlp_predict_on(dp_mlp *m, dp_device_kind kind, const float *X, size_t n,
                                   float *P) {
    if (kind == DP_DEVICE_CPU) return dp_mlp_predict(m, X, n, P);
    if (kind != DP_DEVICE_CUDA)
        return dp_error(DP_E_USAGE, "device: unknown device kind %d", (int)kind);
    dp_cuda_ctx *ctx = NULL;
    dp_cuda_mlp *dm = NULL;
    int dev = 0;
    dp_status st = dp_cuda_device_for_rank(train_local_rank(), &dev);
    if (st == DP_OK) st = dp_cuda_ctx_create(dev, &ctx);
    if (st == DP_OK) st = dp_mlp_create_cuda(ctx, dp_mlp_get_config(m), 4096, &dm);
    if (st == DP_OK) st = dp_mlp_set_params_cuda(dm, dp_mlp_params(m));
    if (st == DP_OK && n) st = dp_mlp_predict_cuda(dm, X, n, P);
    dp_mlp_destroy_cuda(dm);
    dp_cuda_ctx_destroy(ctx);
    return st;
}
