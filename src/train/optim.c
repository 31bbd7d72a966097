/*
 * optim.c: the optimizers applied to the noisy mean gradient (SGD, SGD with
 * momentum as PyTorch defines it, Adam of Kingma & Ba 2015 with PyTorch's
 * placement of epsilon) and the learning-rate schedules. They see only the
 * privatised gradient, so by post-processing they cost no privacy.
 */
#include <math.h>
#include <string.h>
#include "core/dp_internal.h"
#include "train/train_internal.h"

dp_status optim_init(dp_optim *o, dp_optimizer_kind kind, size_t n, double momentum, double beta1,
                     double beta2, double eps) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->n = n;
    o->momentum = momentum;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    size_t len = optim_state_len(o);
    if (len) {
        o->state = dp_calloc(len, sizeof(float));
        if (!o->state)
            return dp_error(DP_E_NOMEM, "optimizer: cannot allocate %zu floats of state", len);
    }
    return DP_OK;
}

void optim_free(dp_optim *o) {
    dp_free(o->state);
    o->state = NULL;
}

size_t optim_state_len(const dp_optim *o) {
    switch (o->kind) {
    case DP_OPT_SGD:
        return 0;
    case DP_OPT_MOMENTUM:
        return o->n;
    case DP_OPT_ADAM:
        return 2 * o->n;
    }
    return 0;
}

static void sgd(size_t n, float *restrict p, const float *restrict g, float lr) {
    for (size_t i = 0; i < n; i++)
        p[i] -= lr * g[i];
}

/* PyTorch SGD(momentum=mu, dampening=0): v <- mu v + g (v = g on the first
 * step, which the zero initial state gives for free); p <- p - lr v. */
static void momentum(size_t n, float *restrict p, const float *restrict g, float *restrict v,
                     float mu, float lr) {
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i];
        p[i] -= lr * v[i];
    }
}

/* Adam: m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
 * p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), t = 1, 2, ... */
static void adam(size_t n, float *restrict p, const float *restrict g, float *restrict m,
                 float *restrict v, double b1, double b2, double eps, double lr, uint64_t t) {
    const float step = (float)(lr / (1.0 - pow(b1, (double)t)));
    const float inv_c2 = (float)(1.0 / sqrt(1.0 - pow(b2, (double)t)));
    const float fb1 = (float)b1, fb2 = (float)b2, fe = (float)eps;
    const float c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
    for (size_t i = 0; i < n; i++) {
        m[i] = fb1 * m[i] + c1 * g[i];
        v[i] = fb2 * v[i] + c2 * g[i] * g[i];
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_c2 + fe);
    }
}

void optim_step(dp_optim *o, float *restrict p, const float *restrict g, double lr) {
    switch (o->kind) {
    case DP_OPT_SGD:
        sgd(o->n, p, g, (float)lr);
        break;
    case DP_OPT_MOMENTUM:
        momentum(o->n, p, g, o->state, (float)o->momentum, (float)lr);
        break;
    case DP_OPT_ADAM:
        adam(o->n, p, g, o->state, o->state + o->n, o->beta1, o->beta2, o->eps, lr, o->t + 1);
        break;
    }
    o->t++;
}

double lr_at(dp_lr_schedule s, double lr, uint64_t step, uint64_t total) {
    if (s == DP_LR_COSINE && total > 0) {
        double frac = (double)step / (double)total;
        if (frac > 1.0) frac = 1.0;
        return lr * 0.5 * (1.0 + cos(M_PI * frac));
    }
    return lr;
}

static const char *opt_names[] = {"sgd", "momentum", "adam"};
static const char *sched_names[] = {"constant", "cosine"};

DP_API const char *dp_optimizer_name(dp_optimizer_kind k) {
    return (unsigned)k < 3 ? opt_names[k] : "unknown";
}

DP_API dp_status dp_optimizer_parse(const char *name, dp_optimizer_kind *out) {
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, opt_names[i])) {
            *out = (dp_optimizer_kind)i;
            return DP_OK;
        }
    return dp_error(DP_E_USAGE, "optimizer: expected sgd, momentum or adam, found '%s'",
                    name ? name : "");
}

DP_API const char *dp_lr_schedule_name(dp_lr_schedule s) {
    return (unsigned)s < 2 ? sched_names[s] : "unknown";
}

DP_API dp_status dp_lr_schedule_parse(const char *name, dp_lr_schedule *out) {
    for (int i = 0; i < 2; i++)
        if (name && !strcmp(name, sched_names[i])) {
            *out = (dp_lr_schedule)i;
            return DP_OK;
        }
    return dp_error(DP_E_USAGE, "learning-rate schedule: expected constant or cosine, found '%s'",
                    name ? name : "");
}
