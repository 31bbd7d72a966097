/*
 * train_internal.h: what the files of src/train share and tests may call,
 * never exported: the optimizers (optim.c) and the learning-rate schedule.
 * Updates are elementwise in float32 with per-step scalars in double.
 */
#ifndef DP_TRAIN_INTERNAL_H
#define DP_TRAIN_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/train.h"

/* Optimizer state for n parameters. State layout (one allocation):
 *   SGD: none; momentum: v [n]; Adam: m [n] then v [n].
 * `t` counts the updates done (Adam's bias correction uses t + 1). */
typedef struct dp_optim {
    dp_optimizer_kind kind;
    size_t n;
    double momentum, beta1, beta2, eps;
    uint64_t t;
    float *state; /* optim_state_len() floats, zero at start */
} dp_optim;

dp_status optim_init(dp_optim *o, dp_optimizer_kind kind, size_t n, double momentum, double beta1,
                     double beta2, double eps);
void optim_free(dp_optim *o);
size_t optim_state_len(const dp_optim *o);
/* p -= update(g) with learning rate lr; g is [n], p is [n]. */
void optim_step(dp_optim *o, float *restrict p, const float *restrict g, double lr);
/* The learning rate of update number `step` (0-based) of `total`. */
double lr_at(dp_lr_schedule s, double lr, uint64_t step, uint64_t total);

#endif
