/*
 * backend.h: the one backend table of the training step (STYLE.md): where
 * the step's gradient, noise and update run. The CPU entry is the host path
 * of trainer.c (NULL table: its code and bits are those of the CPU trainer);
 * the CUDA entry (backend_cuda.c) calls the dp_*_cuda functions of
 * src/cuda/dp_cuda.h, which are stubs answering DP_E_UNSUPPORTED in a build
 * without CUDA, so this file and its users compile in every build.
 */
#ifndef DP_TRAIN_BACKEND_H
#define DP_TRAIN_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/comm.h"
#include "dpsgd/dp.h"
#include "dpsgd/mlp.h"
#include "dpsgd/train.h"

/* What a device needs to hold the step: the network (its host parameters
 * are uploaded), this process's rows, the optimizer. */
typedef struct train_dev_setup {
    const dp_mlp_config *mlp;
    const float *params; /* [P] host, dp_mlp_params layout */
    size_t n_params;
    const float *X;   /* [rows, d] host, must outlive the device (streamed data) */
    const int32_t *y; /* [rows] */
    size_t rows, d, row_begin;
    size_t max_micro; /* rows per device micro-batch */
    int graph;        /* 1: replay a captured CUDA graph per micro-batch (padded to max_micro) */
    dp_optimizer_kind optimizer;
    double momentum, beta1, beta2, eps;
    const float *opt_state; /* host optimizer state (resume) or NULL */
    uint64_t opt_t;
    dp_comm *comm; /* R > 1 with nccl: the NCCL communicator is made over it */
    int nccl;
} train_dev_setup;

typedef struct train_dev train_dev;

typedef struct train_backend {
    const char *name;
    /* DP_OK when a device answers (see dp_device_available). */
    dp_status (*probe)(void);
    dp_status (*open)(const train_dev_setup *s, train_dev **out);
    void (*close)(train_dev *d);
    /* parameters and optimizer state to and from the host (checkpoints, the
     * model file, the ranks' checksum); these wait */
    dp_status (*get_params)(train_dev *d, float *params);
    dp_status (*get_state)(train_dev *d, float *state, uint64_t *t);
    /* ACCUMULATE into the device gradient the clipped sum over global rows
     * idx[0..n) (the index list is the only host->device traffic) */
    dp_status (*batch_grad)(train_dev *d, const size_t *idx, size_t n, const dp_clip_config *clip,
                            const float *class_weight);
    /* the device gradient [P] to / from the host (MPI host staging) */
    dp_status (*grad_get)(train_dev *d, float *g);
    dp_status (*grad_put)(train_dev *d, const float *g);
    /* ADD coordinates [off, off + n) of the noise vector of (key, step,
     * stream) with std to the same coordinates of the device gradient */
    dp_status (*noise_add)(train_dev *d, const dp_key *key, uint64_t step, uint64_t stream,
                           size_t off, size_t n, double std);
    /* NCCL sum of the device gradient over the ranks; owner_noise_std > 0:
     * reduce-scatter, rank r adds its chunk of the noise of (key, step,
     * stream 0), allgather (DESIGN.md's owner mode) */
    dp_status (*nccl_sum)(train_dev *d, const dp_key *key, uint64_t step, double owner_noise_std);
    /* g = (g + std z) * scale; params = optimizer(params, g, lr); g = 0 */
    dp_status (*update)(train_dev *d, const dp_key *key, uint64_t step, double noise_std,
                        float scale, double lr);
    /* ADD the statistics since the last call (waits) */
    dp_status (*stats)(train_dev *d, dp_grad_stats *gs);
} train_backend;

/* The table entry for `kind`: NULL for the CPU (trainer.c's host step). */
const train_backend *train_backend_for(dp_device_kind kind);

/* This process's local rank (OMPI_COMM_WORLD_LOCAL_RANK, else
 * MPI_LOCALRANKID / SLURM_LOCALID, else 0): rank -> local device. */
int train_local_rank(void);

#endif
