/*
 * train.h: DP-SGD training of an MLP on one dataset split (DESIGN.md
 * algorithms 1-4): the configuration (Opacus's knob names), the privacy plan
 * from which both batch selection and accounting derive, and a trainer handle
 * that steps, runs with a progress callback, checkpoints and resumes.
 * Relies on dataset.h, mlp.h, dp.h, accountant.h and ledger.h.
 */
#ifndef DPSGD_TRAIN_H
#define DPSGD_TRAIN_H
#include <stddef.h>
#include <stdint.h>
#include "accountant.h"
#include "comm.h"
#include "dataset.h"
#include "ledger.h"
#include "mlp.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DP_TRAIN_MAX_CLASSES 64

typedef enum dp_optimizer_kind {
    DP_OPT_SGD = 0,      /* p -= lr g */
    DP_OPT_MOMENTUM = 1, /* v = mu v + g; p -= lr v (PyTorch's SGD with momentum) */
    DP_OPT_ADAM = 2      /* Kingma & Ba 2015, bias-corrected */
} dp_optimizer_kind;

/* How the noise of a step is added when several ranks train one model
 * (DESIGN.md algorithm 3). Either way the summed gradient carries
 * N(0, sigma^2 C^2) on every coordinate whatever the number of ranks R;
 * with one rank both are the single-process path. */
typedef enum dp_noise_mode {
    /* reduce-scatter; the owner of each chunk adds that chunk's noise
     * (key_noise, stream 0, the chunk's offset: the same noise vector as one
     * process draws, for any R); allgather. P/R draws per rank. Every rank
     * holds the noise key: the ranks trust each other. */
    DP_NOISE_OWNER = 0,
    /* every rank adds N(0, sigma^2 C^2 / R) to its whole local sum (stream
     * rank + 1; unseeded: a key of its own from the OS, never sent or saved)
     * before a plain allreduce: no rank can subtract the total noise unless
     * all R collude. P draws per rank. */
    DP_NOISE_SHARES = 1
} dp_noise_mode;

typedef enum dp_lr_schedule {
    DP_LR_CONSTANT = 0, /* lr */
    DP_LR_COSINE = 1    /* lr * (1 + cos(pi t / T)) / 2 over the T planned steps */
} dp_lr_schedule;

/* Everything that defines a run. dp_train_config_default fills the defaults;
 * zero means "unset" where a comment says so. */
/* Where the step runs. */
typedef enum dp_device_kind { DP_DEVICE_CPU = 0, DP_DEVICE_CUDA = 1 } dp_device_kind;

/* DP_OK when `kind` can run here: the CPU always; CUDA when this build has
 * the backend (else DP_E_UNSUPPORTED, "this build has no CUDA backend") and a
 * device answers (else DP_E_CUDA, "no CUDA device ..."). Never crashes or hangs. */
DP_API dp_status dp_device_available(dp_device_kind kind);

/* dp_mlp_predict on `kind`: class probabilities P [n, k] for X [n, d], host
 * arrays. CUDA: on the device of this process's local rank. */
DP_API dp_status dp_mlp_predict_on(dp_mlp *m, dp_device_kind kind, const float *X, size_t n,
                                   float *P);

typedef struct dp_train_config {
    /* model */
    int n_hidden;                  /* hidden layers (default 2) */
    int hidden[DP_MLP_MAX_LAYERS]; /* widths (default 64, 64) */
    dp_activation activation;      /* default ReLU */
    int n_class_weight;            /* 0: unweighted; else = classes of the dataset */
    float class_weight[DP_TRAIN_MAX_CLASSES];
    /* optimisation */
    dp_optimizer_kind optimizer;             /* default SGD */
    double lr;                               /* default 0.1 */
    double momentum;                         /* default 0.9 (momentum optimizer) */
    double adam_beta1, adam_beta2, adam_eps; /* 0.9, 0.999, 1e-8 */
    dp_lr_schedule lr_schedule;              /* default constant */
    int epochs;                              /* default 5 */
    uint64_t max_steps;                      /* 0: epochs * steps per epoch; else this many steps */
    double batch_size;                       /* expected batch size B (default 256): q = B / N */
    double sample_rate;                      /* q directly; 0: from batch_size */
    size_t micro_batch;                      /* rows per micro-batch (memory bound; default 256) */
    /* privacy */
    int private_;                  /* 1: DP-SGD (default); 0: --no-dp, not private */
    dp_clip_config clip;           /* default flat, max_grad_norm 1.0 */
    double noise_multiplier;       /* sigma; 0: calibrate from target_epsilon */
    double target_epsilon;         /* 0: no budget (needs noise_multiplier) */
    double target_delta;           /* default 1e-5 */
    dp_accountant_kind accountant; /* default RDP */
    /* randomness */
    int seeded; /* 1: all keys from `seed` (reproducible; privacy.json says so) */
    uint64_t seed;
    int noise_ahead; /* 1 (default): a thread draws step t+1's noise during step t */
    /* data parallelism (used by dp_trainer_create_dist with several ranks) */
    dp_allreduce_algo allreduce; /* default DP_ALLREDUCE_MPI */
    dp_noise_mode noise_mode;    /* default DP_NOISE_OWNER */
    int overlap;                 /* 1: one non-blocking allreduce per layer, started as soon as that
                                    layer's weight gradient is final (default 0: one fused allreduce) */
    uint64_t check_every; /* compare a parameter checksum across ranks every K steps and after
                             the last (default 100; 0: after the last step only) */
    /* 1: private_ training (clipping, division by qN) with noise_multiplier
     * exactly 0: NO noise, NOT private (epsilon infinite, nothing charged to
     * the ledger); for tests and ablations. Default 0. */
    int zero_noise;
    /* where the step runs (issue 5; added at the end): DP_DEVICE_CPU (default) or
     * DP_DEVICE_CUDA, one GPU per rank (local rank modulo the device count). */
    dp_device_kind device;
    int nccl; /* 1: sum the ranks' gradients with NCCL between the GPUs (needs
                 DP_DEVICE_CUDA and a build with NCCL); 0: `allreduce` through host memory */
    /* DP_DEVICE_CUDA: 1 (default) replays one captured CUDA graph per
     * micro-batch (padded to the Poisson capacity; docs/cuda.md); 0 launches
     * the kernels one by one. The sum is the same either way. */
    int cuda_graph;
} dp_train_config;

/* Where and how a resumed run's steps execute: the fields of dp_train_config
 * that change neither the function computed (up to float summation order)
 * nor the privacy guarantee, so a checkpoint written on CPUs may continue on
 * a GPU, or with another allreduce algorithm, and back. Each field is -1 to
 * keep the checkpoint's value (dp_train_placement_keep). The noise mode, the
 * keys, the sampling and the plan always come from the checkpoint. */
typedef struct dp_train_placement {
    int device;      /* dp_device_kind */
    int allreduce;   /* dp_allreduce_algo (the host algorithm; with nccl, the few host floats) */
    int nccl;        /* 0 or 1 */
    int overlap;     /* 0 or 1 */
    int cuda_graph;  /* 0 or 1 */
    int noise_ahead; /* 0 or 1 */
    long long check_every; /* >= 0 */
} dp_train_placement;

/* Every field -1: resume exactly as the checkpoint ran. */
DP_API void dp_train_placement_keep(dp_train_placement *pl);

DP_API void dp_train_config_default(dp_train_config *cfg);

/* The plan: the one object from which the sampler (q, N) and the ledger
 * (q, sigma, steps) both read, so accounting cannot describe a sampling
 * scheme other than the one that ran. Every field comes from public
 * parameters (configuration and the split's row count), never from a
 * realised batch. */
typedef struct dp_train_plan {
    size_t n_total;           /* N: rows of the training split */
    double sample_rate;       /* q: Poisson inclusion probability of each row at each step */
    double expected_batch;    /* q N: the divisor of every private update */
    uint64_t steps_per_epoch; /* round(1 / q) */
    uint64_t steps;           /* planned steps */
    uint64_t budget_steps;    /* the most steps the budget allows (= steps without a budget) */
    double noise_multiplier;  /* sigma (0 when not private) */
    double sensitivity;       /* L2 bound of one example's clipped gradient (C) */
    double noise_std;         /* sigma C, per coordinate of the summed gradient */
    double prior_epsilon;     /* epsilon of the dataset's earlier ledger entries alone */
    size_t n_prior;           /* how many earlier entries (prep's DP statistics) */
} dp_train_plan;

typedef struct dp_trainer dp_trainer;

/* Wall seconds per phase, accumulated over the steps done by this process. */
typedef struct dp_train_timings {
    double sample, gather, forward, backward, norms, wgrad, noise, optimizer, total;
    uint64_t steps;
    uint64_t examples; /* realised batch sizes summed, this rank's rows only (not private) */
    double comm;       /* allreduces across ranks (waiting for the slowest rank included) */
} dp_train_timings;

/* What the callback sees after each step. loss depends on the private data
 * and is NOT private: a caller that shows or logs it must say so. */
typedef struct dp_step_info {
    uint64_t step;          /* steps done so far (this one included) */
    uint64_t steps;         /* planned (budget-capped) total */
    uint64_t epoch;         /* 0-based epoch of this step */
    uint64_t step_in_epoch; /* 1-based position within the epoch */
    uint64_t steps_per_epoch;
    size_t batch;     /* realised batch size, all ranks (not private) */
    double loss;      /* mean loss over the realised batch, all ranks (not private) */
    size_t n_clipped; /* examples clipped in this step, all ranks (not private) */
    double seconds;   /* wall time of the step */
} dp_step_info;

/* Return 0 to go on, nonzero to stop after this step. */
typedef int (*dp_train_callback)(dp_trainer *t, const dp_step_info *info, void *ud);

typedef enum dp_stop_reason {
    DP_STOP_NONE = 0,    /* not stopped (more steps to do) */
    DP_STOP_DONE = 1,    /* the planned steps are done */
    DP_STOP_BUDGET = 2,  /* the next step would have exceeded target_epsilon */
    DP_STOP_CALLBACK = 3 /* the callback asked to stop */
} dp_stop_reason;

/* Plan the run (q, steps, calibrated sigma composed with the dataset's ledger
 * entries from meta.json), draw the keys (OS, or from cfg->seed), create and
 * initialise the network and optimizer. `train` is borrowed and must outlive
 * the trainer. DP_E_PRIVACY for an infeasible target; DP_E_USAGE for a bad
 * configuration (q outside (0, 1], class weights of the wrong count, ...). */
DP_API dp_status dp_trainer_create(const dp_dataset *train, const dp_train_config *cfg,
                                   dp_trainer **out);
/* Continue from a checkpoint (see checkpoint.h) on the same training split:
 * configuration, keys, step, parameters, optimizer state and ledger come from
 * the file; DP_E_SCHEMA when `train` is not the split it was written for. */
DP_API dp_status dp_trainer_resume(const dp_dataset *train, const char *checkpoint_path,
                                   dp_trainer **out);
DP_API void dp_trainer_destroy(dp_trainer *t);

/* The same on every rank of `comm` (borrowed; it must outlive the trainer;
 * NULL or a one-rank communicator: exactly dp_trainer_create/_resume).
 * Collective: every rank calls it with the same configuration (or the same
 * checkpoint) and its own shard of the training split: the rows
 * dp_comm_shard(N, R, rank) opened with dp_dataset_open(dir, split, begin,
 * end) (a shard of another range works too, as long as the shards partition
 * [0, N)). The global Poisson batch S_t is the same for every R: each rank
 * takes S_t within its rows. Unseeded keys and the initial parameters are
 * drawn on rank 0 and broadcast. A failure on any rank fails every rank with
 * the lowest failing rank's status and message ("rank K: ...").
 * Then every step sums the ranks' clipped gradients with cfg->allreduce,
 * adds the noise per cfg->noise_mode, and every cfg->check_every steps the
 * ranks compare a checksum of the parameters (DP_E_INTERNAL on a mismatch,
 * naming the step). Steps, runs and checkpoints are collective too: call
 * them on every rank in the same order, and a dp_train_callback must return
 * the same value on every rank. A checkpoint is the same on every rank (only
 * one needs writing it) and resumes on any number of ranks: with
 * counter-based random streams and a global sampler the run does not depend
 * on R except for floating-point summation order (and, in shares mode, which
 * stream each share comes from). */
DP_API dp_status dp_trainer_create_dist(const dp_dataset *train_shard, const dp_train_config *cfg,
                                        dp_comm *comm, dp_trainer **out);
DP_API dp_status dp_trainer_resume_dist(const dp_dataset *train_shard, const char *checkpoint_path,
                                        dp_comm *comm, dp_trainer **out);
/* dp_trainer_resume_dist, then run where `pl` says (NULL: as the checkpoint
 * ran); collective like it: every rank passes the same placement. The
 * combination is checked as dp_trainer_create_dist checks a
 * configuration (DP_E_USAGE for nccl without cuda, overlap on cuda; the
 * device's own errors when it cannot run here). */
DP_API dp_status dp_trainer_resume_placed(const dp_dataset *train_shard,
                                          const char *checkpoint_path, dp_comm *comm,
                                          const dp_train_placement *pl, dp_trainer **out);
/* After dp_trainer_step or dp_trainer_run failed on several ranks: 1 when the
 * failure was agreed (every rank returned the same status and message: a
 * failed step on any rank, a checksum mismatch, a budget or range error),
 * 0 when this rank failed alone (an MPI error): the other ranks may be
 * blocked in a collective and the caller must end the job
 * (dp_comm_abort). 1 on one rank. */
DP_API int dp_trainer_failed_together(const dp_trainer *t);

/* One step: Poisson batch, clipped summed gradient, noise, division by the
 * expected batch size, optimizer update, ledger tick. DP_E_PRIVACY (and no
 * change) when the step would exceed the budget; DP_E_RANGE when all planned
 * steps are done. info may be NULL. */
DP_API dp_status dp_trainer_step(dp_trainer *t, dp_step_info *info);

/* Steps until the plan is done, the budget stops it, or cb returns nonzero
 * (cb may be NULL). A budget stop is not an error: see dp_trainer_stop_reason. */
DP_API dp_status dp_trainer_run(dp_trainer *t, dp_train_callback cb, void *ud);
DP_API dp_stop_reason dp_trainer_stop_reason(const dp_trainer *t);

/* Write a checkpoint of the whole state (atomic; see checkpoint.h). It holds
 * the random keys: it is as secret as the data. */
DP_API dp_status dp_trainer_save(const dp_trainer *t, const char *path);

DP_API const dp_train_config *dp_trainer_config(const dp_trainer *t);
DP_API const dp_train_plan *dp_trainer_plan(const dp_trainer *t);
DP_API uint64_t dp_trainer_steps_done(const dp_trainer *t);
DP_API dp_mlp *dp_trainer_mlp(dp_trainer *t);
DP_API const dp_ledger *dp_trainer_ledger(const dp_trainer *t);
DP_API void dp_trainer_timings(const dp_trainer *t, dp_train_timings *out);
/* Epsilon spent so far (all ledger entries, at target_delta; 0 if not private). */
DP_API dp_status dp_trainer_epsilon(const dp_trainer *t, double *eps);
/* 1 when the keys came from cfg->seed (reproducible noise), 0 from the OS. */
DP_API int dp_trainer_seeded(const dp_trainer *t);

/* Optimizer names <-> kinds ("sgd", "momentum", "adam"; "constant", "cosine"). */
DP_API const char *dp_optimizer_name(dp_optimizer_kind k);
DP_API dp_status dp_optimizer_parse(const char *name, dp_optimizer_kind *out);
DP_API const char *dp_lr_schedule_name(dp_lr_schedule s);
DP_API dp_status dp_lr_schedule_parse(const char *name, dp_lr_schedule *out);
/* "owner", "shares". */
DP_API const char *dp_noise_mode_name(dp_noise_mode m);
DP_API dp_status dp_noise_mode_parse(const char *name, dp_noise_mode *out);

/* The configuration as a JSON object (for privacy.json, checkpoints and the
 * report) and back. *json_out is freed with dp_train_free_string. */
DP_API dp_status dp_train_config_to_json(const dp_train_config *cfg, char **json_out);
DP_API dp_status dp_train_config_from_json(const char *json, dp_train_config *cfg);
DP_API void dp_train_free_string(char *s);

/* ---- metrics.jsonl: one JSON object per line, appended and flushed ---- */
typedef struct dp_metrics dp_metrics;
/* Open `path` for appending (truncate = 1: start empty). */
DP_API dp_status dp_metrics_open(const char *path, int truncate, dp_metrics **out);
/* Append one line: `json_object` must be one JSON object without newlines. */
DP_API dp_status dp_metrics_write(dp_metrics *m, const char *json_object);
DP_API void dp_metrics_close(dp_metrics *m);
/* Keep only the lines of `path` whose "step" is <= max_step (a resumed run
 * drops what the interrupted run logged after its checkpoint). Atomic. */
DP_API dp_status dp_metrics_truncate_after(const char *path, uint64_t max_step);

#ifdef __cplusplus
}
#endif
#endif
