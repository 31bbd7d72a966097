/*
 * trainer.c: the DP-SGD training step and loop (Abadi et al. 2016; DESIGN.md
 * algorithms 1-4). Relies on dp.h (Poisson sampler, noise), mlp.h (clipped
 * summed gradient), ledger.h (accounting), optim.c and checkpoint.c.
 *
 * One step t, exactly:
 *   S_t      = Poisson sample of [0, N) with rate q, from key_sample at counter t
 *   g        = sum over i in S_t of clip_C(grad loss_i)       (dp_mlp_clipped_grad)
 *   g       += N(0, sigma^2 C^2 I), from key_noise at (t, stream 0)
 *   g       /= q N                 (the EXPECTED batch size, never |S_t|)
 *   params   = optimizer(params, g, lr_t)
 *   ledger  += one subsampled Gaussian step (q, sigma)
 * q, sigma and the step count live in one plan (dp_train_plan) that both the
 * sampler and the ledger read, so the accountant cannot be told a sampling
 * scheme other than the one that ran. An empty S_t is a normal step: g is the
 * noise alone. --no-dp: same network and sampler, no clipping, no noise, and
 * g /= |S_t| (the ordinary mean; not private).
 *
 * The noise does not depend on the data, so a second thread draws step t+1's
 * noise while step t computes (the "noise pump"); both ways draw into a zeroed
 * buffer that is then added, so the bits are the same with or without it.
 *
 * Every random choice is counter-based on (key, step): a checkpoint that holds
 * the keys, the step, the parameters, the optimizer state and the ledger lets
 * a resumed run continue bit for bit as if it had never stopped.
 *
 * Data parallelism (dp_trainer_create_dist, R > 1 ranks; DESIGN.md
 * algorithms 1, 3, 5, 6): every rank holds the whole model and a shard of the
 * rows, takes S_t within its shard (the sampler gives the same global S_t for
 * any partition), and computes its clipped sum g_r. The step then becomes
 *
 *   owner:   [g_r | extras] --reduce-scatter--> rank r holds chunk r of sum_r g_r
 *            rank r adds noise coordinates [chunk r) (key_noise, stream 0, offset
 *            of the chunk: the noise vector of one process, whatever R)
 *            --allgather--> every rank holds sum g + N(0, sigma^2 C^2 I)
 *   shares:  rank r adds N(0, sigma^2 C^2 / R) (stream r + 1) to all of g_r,
 *            --allreduce--> sum g + (a sum of R independent shares)
 *
 * and the rest (division by qN, optimizer, ledger) is the same on every rank,
 * so the replicas stay bit-identical (checked every check_every steps with a
 * checksum). Four floats ride along at the end of the buffer, outside the
 * noise: a failure flag (so a rank whose step failed still enters the
 * collective and every rank learns of it in the same step: then the status is
 * agreed and all fail together instead of leaving the others blocked), the
 * realised batch size, the loss sum and the clipped count of the rank (for the
 * progress line; not private). The noise thread draws only what this rank
 * adds: its chunk (owner; P/R coordinates) or its whole share (shares).
 * --overlap starts one non-blocking allreduce per layer as soon as the layer's
 * weight gradient is final (dp_mlp_clipped_grad_layers); owner noise is then
 * added after the sum by every rank (the same full vector, drawn by each).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core/dp_internal.h"
#include "dpsgd/checkpoint.h"
#include "dpsgd/dp.h"
#include "train/backend.h"
#include "train/train_internal.h"

#define LEDGER_WHAT "train: DP-SGD"
/* --device cuda: the most rows of one device micro-batch (a step of a larger
 * Poisson capacity is split, each part padded to this size in graph mode) */
#define DP_DEV_MAX_MICRO (1u << 20)

/* The noise pump: a thread that fills buf[s % PUMP_DEPTH] with step s's
 * noise for s < consumed + PUMP_DEPTH, so the noise of the next steps is drawn
 * while step t computes, and a hiccup of the scheduler is absorbed by the
 * steps drawn ahead.
 *
 *   main:   wait filled > t ... add buf[t % D] ... consumed = t + 1, signal
 *   pump:   while filled < consumed + D: draw step `filled`, filled++, signal
 */
#define PUMP_DEPTH 4
typedef struct noise_pump {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, quit;
    float *buf[PUMP_DEPTH];
    uint64_t filled, consumed, limit;
    dp_status err;
    char errmsg[512];
    const dp_key *key;
    uint64_t stream; /* 0: the noise of one process (owner); r + 1: rank r's share */
    size_t offset;   /* first coordinate drawn (owner: the rank's chunk) */
    double std;
    size_t n; /* coordinates drawn per step */
} noise_pump;

#define N_EXTRA 4 /* after the gradient when R > 1: failed, batch, loss sum, clipped */

struct dp_trainer {
    dp_train_config cfg;
    dp_train_plan plan;
    const dp_dataset *ds;
    size_t d, begin, end; /* features; this process's global row range */
    int k;
    dp_mlp *mlp;
    size_t n_params;
    dp_optim opt;
    dp_ledger *ledger;
    dp_key key_sample, key_noise;
    uint64_t init_seed;
    int seeded;
    uint64_t step;
    dp_stop_reason stop;
    dp_clip_config clip;
    /* step buffers, allocated once */
    size_t cap, chunk;
    size_t *idx;
    float *xbuf;
    int32_t *ybuf;
    float *grad;
    noise_pump pump;
    dp_train_timings tm;
    /* data parallelism */
    dp_comm *comm; /* borrowed; NULL: one process */
    int rank, R;   /* R > 1: the data-parallel step */
    size_t nbuf;   /* floats of grad: n_params, + N_EXTRA when R > 1 */
    dp_key key_share;
    uint64_t last_check; /* last step at which the ranks' checksums agreed */
    int failed_together;
    /* --overlap: requests of the step's per-layer allreduces */
    int ov_req[DP_MLP_MAX_LAYERS + 1];
    unsigned ov_issued; /* bit l: layer l's allreduce started */
    dp_status ov_err;
    const float *ov_share; /* shares mode: this step's share [P], added per layer */
    /* --device cuda (backend.h): NULL be is the host step of this file */
    const train_backend *be;
    train_dev *dev;
    int dev_stale;        /* the host parameters lag the device's */
    dp_grad_stats dev_gs; /* statistics read from the device, not yet reported */
    size_t dev_batch;     /* examples of the steps since the last read */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

DP_API void dp_train_config_default(dp_train_config *c) {
    memset(c, 0, sizeof *c);
    c->n_hidden = 2;
    c->hidden[0] = c->hidden[1] = 64;
    c->activation = DP_ACT_RELU;
    c->optimizer = DP_OPT_SGD;
    c->lr = 0.1;
    c->momentum = 0.9;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->lr_schedule = DP_LR_CONSTANT;
    c->epochs = 5;
    c->batch_size = 256;
    c->micro_batch = 256;
    c->private_ = 1;
    c->clip.mode = DP_CLIP_FLAT;
    c->clip.max_grad_norm = 1.0;
    c->target_delta = 1e-5;
    c->accountant = DP_ACCOUNTANT_RDP;
    c->noise_ahead = 1;
    c->allreduce = DP_ALLREDUCE_MPI;
    c->noise_mode = DP_NOISE_OWNER;
    c->check_every = 100;
    c->cuda_graph = 1;
}

DP_API void dp_train_placement_keep(dp_train_placement *pl) {
    pl->device = pl->allreduce = pl->nccl = pl->overlap = pl->cuda_graph = pl->noise_ahead = -1;
    pl->check_every = -1;
}

/* Noise is drawn and charged: private and not the zero-noise ablation. */
static int noisy(const dp_trainer *t) {
    return t->cfg.private_ && !t->cfg.zero_noise;
}

DP_API const char *dp_noise_mode_name(dp_noise_mode m) {
    return m == DP_NOISE_SHARES ? "shares" : m == DP_NOISE_OWNER ? "owner" : "unknown";
}

DP_API dp_status dp_noise_mode_parse(const char *name, dp_noise_mode *out) {
    if (name && !strcmp(name, "owner"))
        *out = DP_NOISE_OWNER;
    else if (name && !strcmp(name, "shares"))
        *out = DP_NOISE_SHARES;
    else
        return dp_error(DP_E_USAGE, "noise mode: expected owner or shares, found '%s'",
                        name ? name : "(null)");
    return DP_OK;
}

/* ---------------------------------------------------------------- noise */

static dp_status pump_fill(noise_pump *p, uint64_t step, float *buf) {
    memset(buf, 0, p->n * sizeof(float));
    return dp_noise_add(p->key, step, p->stream, p->offset, buf, p->n, p->std);
}

static void *pump_main(void *arg) {
    noise_pump *p = arg;
#ifdef _OPENMP
    /* One core for the noise: the step's BLAS and OpenMP keep the others. */
    omp_set_num_threads(1);
#endif
    pthread_mutex_lock(&p->mu);
    while (!p->quit) {
        if (p->err == DP_OK && p->filled < p->consumed + PUMP_DEPTH && p->filled < p->limit) {
            uint64_t s = p->filled;
            pthread_mutex_unlock(&p->mu);
            dp_status st = pump_fill(p, s, p->buf[s % PUMP_DEPTH]);
            pthread_mutex_lock(&p->mu);
            if (st != DP_OK) {
                p->err = st;
                snprintf(p->errmsg, sizeof p->errmsg, "%s", dp_last_error());
            }
            p->filled = s + 1;
            pthread_cond_broadcast(&p->cv);
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pump_stop(noise_pump *p) {
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        p->started = 0;
    }
}

/* (Re)start the pump at `step`. */
static dp_status pump_start(noise_pump *p, uint64_t step, uint64_t limit, int threaded) {
    pump_stop(p);
    p->filled = p->consumed = step;
    p->limit = limit;
    p->quit = 0;
    p->err = DP_OK;
    if (!threaded) return DP_OK;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, pump_main, p)) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        return dp_error(DP_E_INTERNAL, "trainer: cannot start the noise thread");
    }
    p->started = 1;
    return DP_OK;
}

/* Step `step`'s noise (p->n values, for coordinates [p->offset, +n)) in
 * *out, valid until pump_release(step). */
static dp_status pump_get(noise_pump *p, uint64_t step, const float **out) {
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        while (p->filled <= step && p->err == DP_OK)
            pthread_cond_wait(&p->cv, &p->mu);
        dp_status err = p->err;
        pthread_mutex_unlock(&p->mu);
        if (err != DP_OK) return dp_error(err, "%s", p->errmsg);
        *out = p->buf[step % PUMP_DEPTH];
    } else {
        DP_TRY(pump_fill(p, step, p->buf[0]));
        *out = p->buf[0];
    }
    return DP_OK;
}

static void pump_release(noise_pump *p, uint64_t step) {
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->consumed = step + 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void add_to(float *restrict g, const float *restrict v, size_t n) {
    for (size_t i = 0; i < n; i++)
        g[i] += v[i];
}

/* Add step `step`'s noise to g[0..n). */
static dp_status pump_add(noise_pump *p, uint64_t step, float *restrict g) {
    const float *buf;
    DP_TRY(pump_get(p, step, &buf));
    add_to(g, buf, p->n);
    pump_release(p, step);
    return DP_OK;
}

/* ---------------------------------------------------------------- plan */

/* Earlier releases about the same records (prep's DP statistics), from the
 * dataset's meta.json: {"privacy": {"ledger": <dp_ledger JSON>}} or a
 * top-level "ledger". Each entry is added to `ledger`. */
static dp_status add_prior_entries(dp_ledger *ledger, const char *meta_json) {
    if (!meta_json) return DP_OK;
    cJSON *meta = cJSON_Parse(meta_json);
    if (!meta) return DP_OK; /* the dataset module validated meta.json already */
    const cJSON *led = cJSON_GetObjectItemCaseSensitive(meta, "ledger");
    const cJSON *priv = cJSON_GetObjectItemCaseSensitive(meta, "privacy");
    if (!led && cJSON_IsObject(priv)) led = cJSON_GetObjectItemCaseSensitive(priv, "ledger");
    dp_status st = DP_OK;
    if (cJSON_IsObject(led)) {
        char *txt = cJSON_PrintUnformatted(led);
        dp_ledger *prior = NULL;
        st = txt ? dp_ledger_from_json(txt, &prior) : DP_E_NOMEM;
        cJSON_free(txt);
        if (st != DP_OK) {
            cJSON_Delete(meta);
            return dp_error_prefix(st, "meta.json: privacy ledger");
        }
        for (size_t i = 0; i < dp_ledger_count(prior) && st == DP_OK; i++) {
            const char *what;
            dp_privacy_event ev;
            st = dp_ledger_entry(prior, i, &what, &ev);
            if (st == DP_OK) st = dp_ledger_add(ledger, what, ev);
        }
        dp_ledger_destroy(prior);
    }
    cJSON_Delete(meta);
    return st;
}

/* The most total steps (<= plan->steps) that keep the ledger within the
 * target, given that `done` of them are in the ledger already: the ledger's
 * bisection over epsilon_if (epsilon grows with the steps), done once before
 * training instead of an accountant call per step. */
static dp_status budget_steps(const dp_ledger *ledger, const dp_train_plan *plan, uint64_t done,
                              double target, uint64_t *out) {
    if (plan->steps <= done) {
        *out = plan->steps;
        return DP_OK;
    }
    uint64_t k = 0;
    DP_TRY(dp_ledger_max_steps(ledger, plan->sample_rate, plan->noise_multiplier, target,
                               plan->steps - done, &k));
    *out = done + k;
    return DP_OK;
}

static dp_status make_plan(const dp_train_config *c, size_t n_total, int n_layers,
                           dp_train_plan *p) {
    memset(p, 0, sizeof *p);
    if (n_total == 0) return dp_error(DP_E_EMPTY, "trainer: the training split has no rows");
    p->n_total = n_total;
    double q = c->sample_rate > 0 ? c->sample_rate : c->batch_size / (double)n_total;
    if (!(q > 0 && q <= 1))
        return dp_error(DP_E_USAGE,
                        "trainer: sample rate must be in (0, 1], found %g (batch size %g of %zu "
                        "rows)",
                        q, c->batch_size, n_total);
    p->sample_rate = q;
    p->expected_batch = q * (double)n_total;
    double spe = floor(1.0 / q + 0.5);
    p->steps_per_epoch = spe < 1 ? 1 : (uint64_t)spe;
    p->steps = c->max_steps ? c->max_steps
                            : (uint64_t)(c->epochs > 0 ? c->epochs : 0) * p->steps_per_epoch;
    if (p->steps == 0)
        return dp_error(DP_E_USAGE, "trainer: zero steps planned (epochs %d)", c->epochs);
    p->budget_steps = p->steps;
    p->sensitivity = c->private_ ? dp_clip_sensitivity(&c->clip, n_layers) : 0;
    return DP_OK;
}

static dp_status check_config(const dp_train_config *c, const dp_dataset *ds) {
    int k = dp_dataset_classes(ds);
    if (c->n_hidden < 0 || c->n_hidden >= DP_MLP_MAX_LAYERS)
        return dp_error(DP_E_USAGE, "trainer: %d hidden layers, expected 0 to %d", c->n_hidden,
                        DP_MLP_MAX_LAYERS - 1);
    for (int l = 0; l < c->n_hidden; l++)
        if (c->hidden[l] < 1)
            return dp_error(DP_E_USAGE, "trainer: hidden layer %d has width %d", l, c->hidden[l]);
    if (c->n_class_weight && c->n_class_weight != k)
        return dp_error(DP_E_USAGE, "trainer: %d class weights for a dataset of %d classes",
                        c->n_class_weight, k);
    for (int i = 0; i < c->n_class_weight; i++)
        if (!(c->class_weight[i] >= 0) || !isfinite(c->class_weight[i]))
            return dp_error(DP_E_USAGE, "trainer: class weight %d is %g, expected >= 0", i,
                            c->class_weight[i]);
    if (!(c->lr > 0) || !isfinite(c->lr))
        return dp_error(DP_E_USAGE, "trainer: learning rate must be > 0, found %g", c->lr);
    if (c->micro_batch == 0) return dp_error(DP_E_USAGE, "trainer: micro-batch size 0");
    if ((int)c->allreduce < DP_ALLREDUCE_MPI || (int)c->allreduce > DP_ALLREDUCE_TREE)
        return dp_error(DP_E_USAGE, "trainer: unknown allreduce algorithm %d", (int)c->allreduce);
    if (c->noise_mode != DP_NOISE_OWNER && c->noise_mode != DP_NOISE_SHARES)
        return dp_error(DP_E_USAGE, "trainer: unknown noise mode %d", (int)c->noise_mode);
    if (c->device != DP_DEVICE_CPU && c->device != DP_DEVICE_CUDA)
        return dp_error(DP_E_USAGE, "trainer: unknown device %d", (int)c->device);
    if (c->nccl && c->device != DP_DEVICE_CUDA)
        return dp_error(DP_E_USAGE, "trainer: the nccl allreduce needs the cuda device");
    if (c->device == DP_DEVICE_CUDA && c->overlap)
        return dp_error(DP_E_USAGE, "trainer: --overlap is for the cpu device (on cuda the "
                                    "gradient is summed once, on the device)");
    if (c->zero_noise && !c->private_)
        return dp_error(DP_E_USAGE, "trainer: zero_noise applies to clipped (private_) training");
    if (c->private_) {
        if (c->clip.mode == DP_CLIP_NONE)
            return dp_error(DP_E_USAGE, "trainer: private training needs clipping");
        if (c->clip.mode == DP_CLIP_FLAT && !(c->clip.max_grad_norm > 0))
            return dp_error(DP_E_USAGE, "trainer: max_grad_norm must be > 0, found %g",
                            c->clip.max_grad_norm);
        if (c->clip.mode == DP_CLIP_PER_LAYER)
            for (int l = 0; l <= c->n_hidden; l++)
                if (!(c->clip.layer_norms[l] > 0))
                    return dp_error(DP_E_USAGE,
                                    "trainer: per-layer clipping needs %d bounds > 0 (layer %d "
                                    "has %g)",
                                    c->n_hidden + 1, l, c->clip.layer_norms[l]);
        if (!(c->target_delta > 0 && c->target_delta < 1))
            return dp_error(DP_E_USAGE, "trainer: target_delta must be in (0, 1), found %g",
                            c->target_delta);
        if (c->noise_multiplier < 0 || !isfinite(c->noise_multiplier))
            return dp_error(DP_E_USAGE, "trainer: noise multiplier %g", c->noise_multiplier);
        if (c->zero_noise && (c->noise_multiplier != 0 || c->target_epsilon != 0))
            return dp_error(DP_E_USAGE, "trainer: zero_noise (noise multiplier exactly 0) excludes "
                                        "a noise multiplier and a target epsilon");
        if (c->noise_multiplier == 0 && !(c->target_epsilon > 0) && !c->zero_noise)
            return dp_error(DP_E_USAGE,
                            "trainer: private training needs a noise multiplier or a target "
                            "epsilon");
    }
    return DP_OK;
}

/* Network, optimizer and step buffers for `t->cfg` on `ds`. */
static dp_status build(dp_trainer *t, const dp_dataset *ds) {
    const dp_train_config *c = &t->cfg;
    t->ds = ds;
    t->d = dp_dataset_cols(ds);
    t->k = dp_dataset_classes(ds);
    t->begin = dp_dataset_row_begin(ds);
    t->end = t->begin + dp_dataset_rows(ds);
    dp_mlp_config mc;
    memset(&mc, 0, sizeof mc);
    mc.n_in = t->d;
    mc.n_hidden = c->n_hidden;
    memcpy(mc.hidden, c->hidden, sizeof mc.hidden);
    mc.n_classes = t->k;
    mc.activation = c->activation;
    DP_TRY(dp_mlp_create(&mc, c->micro_batch, &t->mlp));
    t->n_params = dp_mlp_nparams(t->mlp);
    DP_TRY(optim_init(&t->opt, c->optimizer, t->n_params, c->momentum, c->adam_beta1, c->adam_beta2,
                      c->adam_eps));
    t->clip = c->clip;
    if (!c->private_) t->clip.mode = DP_CLIP_NONE;
    /* Buffers sized once from public quantities: the sampler's bound on
     * |S_t ∩ [begin, end)| and a fixed gather chunk, so memory does not grow
     * with the batch beyond the index list. */
    t->cap = dp_poisson_capacity(t->end - t->begin, t->plan.sample_rate);
    if (t->cap < 1) t->cap = 1;
    t->chunk = DP_MIN(t->cap, DP_MAX(c->micro_batch, (size_t)16384));
    t->idx = dp_malloc(t->cap * sizeof(size_t));
    t->xbuf = dp_malloc(t->chunk * t->d * sizeof(float));
    t->ybuf = dp_malloc(t->chunk * sizeof(int32_t));
    t->nbuf = t->n_params + (t->R > 1 ? N_EXTRA : 0);
    t->grad = dp_malloc(t->nbuf * sizeof(float));
    t->pump.n = t->n_params;
    int bufs_ok = 1;
    for (int i = 0; i < PUMP_DEPTH; i++)
        bufs_ok &= (t->pump.buf[i] = dp_malloc(t->n_params * sizeof(float))) != NULL;
    if (!t->idx || !t->xbuf || !t->ybuf || !t->grad || !bufs_ok)
        return dp_error(DP_E_NOMEM, "trainer: cannot allocate step buffers (%zu rows of %zu)",
                        t->chunk, t->d);
    /* A non-private run keeps an empty ledger (RDP: available in every build). */
    DP_TRY(dp_ledger_create(c->private_ ? c->accountant : DP_ACCOUNTANT_RDP,
                            c->private_ ? c->target_delta : 0.5, &t->ledger));
    return DP_OK;
}

/* What this rank's noise thread draws (see the top of the file), then start
 * it. One rank: the whole vector of stream 0, whatever the mode. */
static dp_status start(dp_trainer *t) {
    noise_pump *p = &t->pump;
    p->key = &t->key_noise;
    p->stream = 0;
    p->offset = 0;
    p->n = t->n_params;
    p->std = t->plan.noise_std;
    if (!noisy(t)) return DP_OK;
    /* on the device (one rank, or NCCL) the noise is drawn there */
    if (t->be && (t->R == 1 || t->cfg.nccl)) return DP_OK;
    if (t->R > 1 && t->cfg.noise_mode == DP_NOISE_SHARES) {
        p->key = &t->key_share;
        p->stream = (uint64_t)t->rank + 1;
        p->std = t->plan.noise_std / sqrt((double)t->R);
    } else if (t->R > 1 && !t->cfg.overlap) {
        /* the chunk that dp_comm_reduce_scatter leaves complete on this rank,
         * without the extras */
        size_t b, e;
        DP_TRY(dp_comm_shard(t->nbuf, t->R, t->rank, &b, &e));
        e = DP_MIN(e, t->n_params);
        b = DP_MIN(b, e);
        p->offset = b;
        p->n = e - b;
    }
    return pump_start(p, t->step, DP_MIN(t->plan.steps, t->plan.budget_steps), t->cfg.noise_ahead);
}

/* The communicator's view: rank and size, 0 and 1 without one. */
static void attach(dp_trainer *t, dp_comm *comm) {
    t->comm = comm;
    t->rank = comm ? dp_comm_rank(comm) : 0;
    t->R = comm ? dp_comm_size(comm) : 1;
    t->failed_together = 1;
}

/* Every rank leaves with the status of the lowest failing rank (one rank:
 * unchanged). */
static dp_status agree(dp_comm *comm, dp_status st) {
    if (comm && dp_comm_size(comm) > 1) return dp_comm_agree(comm, st, NULL);
    return st;
}

/* The part of creation that each rank does alone: configuration, plan,
 * network, keys, and (rank 0) the noise calibration. */
static dp_status create_local(const dp_dataset *ds, const dp_train_config *cfg, dp_comm *comm,
                              dp_trainer **out) {
    *out = NULL;
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "trainer: libsodium failed to start");
    DP_TRY(check_config(cfg, ds));
    dp_trainer *t = dp_calloc(1, sizeof *t);
    if (!t) return dp_error(DP_E_NOMEM, "trainer: out of memory");
    *out = t;
    attach(t, comm);
    t->cfg = *cfg;
    DP_TRY(make_plan(cfg, dp_dataset_rows_total(ds), cfg->n_hidden + 1, &t->plan));
    DP_TRY(build(t, ds));

    /* Keys: from the seed (reproducible) or from the operating system (on
     * rank 0; the others get them by broadcast). */
    t->seeded = cfg->seeded;
    if (cfg->seeded) {
        dp_key_from_seed(cfg->seed, "sample", &t->key_sample);
        dp_key_from_seed(cfg->seed, "noise", &t->key_noise);
        t->init_seed = cfg->seed;
    } else if (t->rank == 0) {
        dp_key init;
        DP_TRY(dp_key_from_os(&t->key_sample));
        DP_TRY(dp_key_from_os(&t->key_noise));
        DP_TRY(dp_key_from_os(&init));
        memcpy(&t->init_seed, init.bytes, sizeof t->init_seed);
    }

    if (cfg->private_) {
        DP_TRY(add_prior_entries(t->ledger, dp_dataset_meta_json(ds)));
        t->plan.n_prior = dp_ledger_count(t->ledger);
        DP_TRY(dp_ledger_epsilon(t->ledger, &t->plan.prior_epsilon));
    }
    if (noisy(t) && t->rank == 0) {
        double sigma = cfg->noise_multiplier;
        if (sigma == 0) {
            /* Calibrate sigma so that the planned steps, composed with the
             * dataset's earlier entries, spend at most target_epsilon. */
            size_t np = t->plan.n_prior;
            dp_privacy_event prior[64];
            if (np > 64) np = 64;
            for (size_t i = 0; i < np; i++) {
                const char *what;
                DP_TRY(dp_ledger_entry(t->ledger, i, &what, &prior[i]));
            }
            dp_status st =
                dp_account_sigma(cfg->accountant, prior, np, t->plan.sample_rate, t->plan.steps,
                                 cfg->target_epsilon, cfg->target_delta, &sigma);
            if (st != DP_OK)
                return dp_error_prefix(st, "calibrating the noise multiplier for epsilon %g",
                                       cfg->target_epsilon);
        }
        t->plan.noise_multiplier = sigma;
        if (cfg->target_epsilon > 0) {
            DP_TRY(
                budget_steps(t->ledger, &t->plan, 0, cfg->target_epsilon, &t->plan.budget_steps));
            if (t->plan.budget_steps == 0)
                return dp_error(DP_E_PRIVACY,
                                "trainer: not one step fits in epsilon %g at delta %g with noise "
                                "multiplier %g (earlier entries spent %g)",
                                cfg->target_epsilon, cfg->target_delta, sigma,
                                t->plan.prior_epsilon);
        }
    }
    return DP_OK;
}

/* ---------------------------------------------------------------- device */

/* --device cuda: the network (with its host parameters, just initialised or
 * resumed), this rank's rows and the optimizer state go to the device of
 * this process's local rank. From here on the device holds the parameters;
 * dev_pull brings them back when the host needs them. */
static dp_status dev_open(dp_trainer *t) {
    if (t->cfg.device == DP_DEVICE_CPU) return DP_OK;
    t->be = train_backend_for(t->cfg.device);
    if (!t->be) return dp_error(DP_E_USAGE, "trainer: unknown device %d", (int)t->cfg.device);
    train_dev_setup s;
    memset(&s, 0, sizeof s);
    s.mlp = dp_mlp_get_config(t->mlp);
    s.params = dp_mlp_params(t->mlp);
    s.n_params = t->n_params;
    s.X = dp_dataset_X(t->ds);
    s.y = dp_dataset_y(t->ds);
    s.rows = t->end - t->begin;
    s.d = t->d;
    s.row_begin = t->begin;
    /* one micro-batch per step (the Poisson capacity: exceeded with
     * probability < 1e-12), so that a step is one graph replay; the rows'
     * activations are small on a device (DP_DEV_MAX_MICRO bounds them) */
    s.max_micro = DP_MIN(t->cap, (size_t)DP_DEV_MAX_MICRO);
    s.graph = t->cfg.cuda_graph;
    s.optimizer = t->opt.kind;
    s.momentum = t->opt.momentum;
    s.beta1 = t->opt.beta1;
    s.beta2 = t->opt.beta2;
    s.eps = t->opt.eps;
    s.opt_state = optim_state_len(&t->opt) ? t->opt.state : NULL;
    s.opt_t = t->opt.t;
    s.comm = t->comm;
    s.nccl = t->cfg.nccl;
    dp_status st = t->be->open(&s, &t->dev);
    if (st != DP_OK) t->be = NULL; /* nothing to close */
    return st;
}

/* The device's parameters and optimizer state into the host copies (the
 * host's are what checkpoints, the model file and the checksum read). */
static dp_status dev_pull(const dp_trainer *tc) {
    dp_trainer *t = (dp_trainer *)tc; /* the host copies are a cache */
    if (!t->be || !t->dev_stale) return DP_OK;
    DP_TRY(t->be->get_params(t->dev, dp_mlp_params(t->mlp)));
    DP_TRY(t->be->get_state(t->dev, t->opt.state, &t->opt.t));
    t->dev_stale = 0;
    return DP_OK;
}

/* Rank 0's keys, initial seed and calibrated plan to every rank (R > 1). */
static dp_status share_rank0(dp_trainer *t) {
    if (t->R <= 1) return DP_OK;
    struct {
        dp_key sample, noise;
        uint64_t init_seed, budget_steps;
        double sigma;
    } m;
    memset(&m, 0, sizeof m);
    m.sample = t->key_sample;
    m.noise = t->key_noise;
    m.init_seed = t->init_seed;
    m.budget_steps = t->plan.budget_steps;
    m.sigma = t->plan.noise_multiplier;
    dp_status st = dp_comm_bcast(t->comm, &m, sizeof m, 0);
    if (st == DP_OK) {
        t->key_sample = m.sample;
        t->key_noise = m.noise;
        t->init_seed = m.init_seed;
        t->plan.budget_steps = m.budget_steps;
        t->plan.noise_multiplier = m.sigma;
    }
    sodium_memzero(&m, sizeof m);
    return st;
}

/* Shares mode: the key of this rank's share. Seeded: the run's noise key
 * (stream rank + 1 keeps the shares independent). Unseeded: a key of this
 * rank's own, never sent or saved, so no other rank (and no checkpoint) can
 * reproduce this rank's share. */
static dp_status share_key(dp_trainer *t) {
    if (t->R <= 1 || t->cfg.noise_mode != DP_NOISE_SHARES || !noisy(t)) return DP_OK;
    if (t->seeded) {
        t->key_share = t->key_noise;
        return DP_OK;
    }
    return dp_key_from_os(&t->key_share);
}

/* The last part of creating or resuming, on every rank: the device, this
 * rank's noise-share key, the noise pump; agreed across the ranks. */
static dp_status ready(dp_trainer *t, dp_comm *comm) {
    dp_status st = dev_open(t);
    if (st == DP_OK) st = share_key(t);
    if (st == DP_OK) st = start(t);
    return agree(comm, st);
}

DP_API dp_status dp_trainer_create_dist(const dp_dataset *ds, const dp_train_config *cfg,
                                        dp_comm *comm, dp_trainer **out) {
    *out = NULL;
    dp_trainer *t = NULL;
    dp_status st = agree(comm, create_local(ds, cfg, comm, &t));
    if (st == DP_OK) st = agree(comm, share_rank0(t));
    if (st == DP_OK) {
        t->plan.noise_std = t->plan.noise_multiplier * t->plan.sensitivity;
        dp_mlp_init(t->mlp, t->init_seed);
        st = ready(t, comm);
    }
    if (st != DP_OK) {
        dp_trainer_destroy(t);
        return st;
    }
    *out = t;
    return DP_OK;
}

DP_API dp_status dp_trainer_create(const dp_dataset *ds, const dp_train_config *cfg,
                                   dp_trainer **out) {
    return dp_trainer_create_dist(ds, cfg, NULL, out);
}

DP_API int dp_trainer_failed_together(const dp_trainer *t) {
    return t ? t->failed_together : 1;
}

DP_API void dp_trainer_destroy(dp_trainer *t) {
    if (!t) return;
    pump_stop(&t->pump);
    if (t->be) t->be->close(t->dev);
    dp_mlp_destroy(t->mlp);
    optim_free(&t->opt);
    dp_ledger_destroy(t->ledger);
    dp_free(t->idx);
    dp_free(t->xbuf);
    dp_free(t->ybuf);
    dp_free(t->grad);
    for (int i = 0; i < PUMP_DEPTH; i++)
        dp_free(t->pump.buf[i]);
    sodium_memzero(&t->key_sample, sizeof t->key_sample);
    sodium_memzero(&t->key_noise, sizeof t->key_noise);
    sodium_memzero(&t->key_share, sizeof t->key_share);
    dp_free(t);
}

/* ---------------------------------------------------------------- step */

/* The one place where the summed clipped gradient of this process becomes
 * the noisy sum over all examples, on one process: add the noise. (Several
 * ranks: step_dist.) */
static dp_status combine_and_noise(dp_trainer *t, float *g) {
    if (!noisy(t)) return DP_OK;
    return pump_add(&t->pump, t->step, g);
}

/* Refuse a step past the plan or the budget (the same on every rank). */
static dp_status step_allowed(dp_trainer *t) {
    const dp_train_plan *p = &t->plan;
    if (t->step >= p->steps)
        return dp_error(DP_E_RANGE, "trainer: all %llu planned steps are done",
                        (unsigned long long)p->steps);
    if (noisy(t) && t->step >= p->budget_steps) {
        double eps = NAN;
        dp_privacy_event ev = {p->sample_rate, p->noise_multiplier, 1};
        dp_ledger_epsilon_if(t->ledger, ev, &eps);
        return dp_error(DP_E_PRIVACY,
                        "trainer: step %llu would spend epsilon %.6g, above the target %g",
                        (unsigned long long)t->step + 1, eps, t->cfg.target_epsilon);
    }
    return DP_OK;
}

/* This rank's rows of S_t gathered in chunks and their clipped gradient
 * summed into g; with `done`, layer callbacks on the last chunk. */
static dp_status local_grad(dp_trainer *t, size_t count, float *g, dp_grad_stats *gs,
                            double *t_gather, dp_layer_done_fn done) {
    const size_t d = t->d;
    const float *X = dp_dataset_X(t->ds);
    const int32_t *y = dp_dataset_y(t->ds);
    const float *cw = t->cfg.n_class_weight ? t->cfg.class_weight : NULL;
    for (size_t c = 0; c < count; c += t->chunk) {
        double tg = now();
        size_t m = DP_MIN(t->chunk, count - c);
        for (size_t r = 0; r < m; r++) {
            size_t row = t->idx[c + r] - t->begin;
            memcpy(t->xbuf + r * d, X + row * d, d * sizeof(float));
            t->ybuf[r] = y[row];
        }
        *t_gather += now() - tg;
        if (done && c + m == count)
            DP_TRY(dp_mlp_clipped_grad_layers(t->mlp, t->xbuf, t->ybuf, m, &t->clip, cw, g, gs,
                                              done, t));
        else
            DP_TRY(dp_mlp_clipped_grad(t->mlp, t->xbuf, t->ybuf, m, &t->clip, cw, g, gs));
    }
    return DP_OK;
}

/* Division by the expected batch size, optimizer, ledger tick, timings and
 * the step's info: the same on one process and on every rank. */

/* What dp_trainer_step reports of a step (the CPU, distributed and device
 * steps fill it the same way); info may be NULL. */
static void fill_info(dp_step_info *info, const dp_trainer *t, uint64_t total, size_t batch,
                      double loss, size_t n_clipped, double seconds) {
    if (!info) return;
    const dp_train_plan *p = &t->plan;
    info->step = t->step;
    info->steps = total;
    info->steps_per_epoch = p->steps_per_epoch;
    info->epoch = (t->step - 1) / p->steps_per_epoch;
    info->step_in_epoch = (t->step - 1) % p->steps_per_epoch + 1;
    info->batch = batch;
    info->loss = loss;
    info->n_clipped = n_clipped;
    info->seconds = seconds;
}

static dp_status finish_step(dp_trainer *t, float *g, size_t batch, double loss_sum,
                             size_t n_clipped, const dp_grad_stats *gs, double t0, double t_sample,
                             double t_gather, double t_noise, double t_comm, size_t local_count,
                             dp_step_info *info) {
    const dp_train_plan *p = &t->plan;
    const size_t P = t->n_params;
    const double t3 = now();
    /* Divide by the expected batch size qN (public), never by |S_t|: the
     * realised size depends on the data's membership and is not private. */
    float scale;
    if (t->cfg.private_)
        scale = (float)(1.0 / p->expected_batch);
    else
        scale = batch ? (float)(1.0 / (double)batch) : 0.0f;
    for (size_t i = 0; i < P; i++)
        g[i] *= scale;
    uint64_t total = DP_MIN(p->steps, p->budget_steps);
    optim_step(&t->opt, dp_mlp_params(t->mlp), g,
               lr_at(t->cfg.lr_schedule, t->cfg.lr, t->step, total));
    if (noisy(t)) {
        dp_privacy_event ev = {p->sample_rate, p->noise_multiplier, 1};
        DP_TRY(dp_ledger_add(t->ledger, LEDGER_WHAT, ev));
    }
    t->step++;
    double t4 = now();

    t->tm.sample += t_sample;
    t->tm.gather += t_gather;
    t->tm.forward += gs->t_forward;
    t->tm.backward += gs->t_backward;
    t->tm.norms += gs->t_norms;
    t->tm.wgrad += gs->t_wgrad;
    t->tm.noise += t_noise;
    t->tm.comm += t_comm;
    t->tm.optimizer += t4 - t3;
    t->tm.total += t4 - t0;
    t->tm.steps++;
    t->tm.examples += local_count;
    fill_info(info, t, total, batch, batch ? loss_sum / (double)batch : NAN, n_clipped, t4 - t0);
    return DP_OK;
}

static dp_status step_once(dp_trainer *t, dp_step_info *info) {
    const dp_train_plan *p = &t->plan;
    DP_TRY(step_allowed(t));
    double t0 = now();
    size_t count = 0;
    DP_TRY(dp_poisson_sample(&t->key_sample, t->step, p->n_total, p->sample_rate, t->begin, t->end,
                             t->idx, t->cap, &count));
    double t1 = now();
    float *restrict g = t->grad;
    memset(g, 0, t->n_params * sizeof(float));
    dp_grad_stats gs;
    memset(&gs, 0, sizeof gs);
    double t_gather = 0;
    DP_TRY(local_grad(t, count, g, &gs, &t_gather, NULL));
    double t2 = now();
    DP_TRY(combine_and_noise(t, g));
    double t3 = now();
    return finish_step(t, g, count, gs.loss_sum, gs.n_clipped, &gs, t0, t1 - t0, t_gather, t3 - t2,
                       0, count, info);
}

/* ---------------------------------------------------------------- step, R > 1 */

/* --overlap: layer l's weight gradient is final: add this rank's noise share
 * to it (shares mode) and start its allreduce. Every rank starts the same
 * requests in the same order (layers 0..L-1, then the extras), also a rank
 * whose step failed (it sends zeros and raises the failure flag). */
static void overlap_layer_done(int l, void *ud) {
    dp_trainer *t = ud;
    if (t->ov_issued & (1u << l)) return;
    t->ov_issued |= 1u << l;
    size_t w_off, b_off, n_out, n_in;
    dp_mlp_layer(t->mlp, l, &w_off, &b_off, &n_out, &n_in);
    size_t n = b_off + n_out - w_off;
    float *slice = t->grad + w_off;
    if (t->ov_share) add_to(slice, t->ov_share + w_off, n);
    dp_status st = dp_comm_iallreduce(t->comm, slice, n, t->cfg.allreduce, &t->ov_req[l]);
    if (st != DP_OK && t->ov_err == DP_OK) t->ov_err = st;
}

/* The sum over ranks of [g | extras] with the noise of `noise` added where
 * this rank adds it (noise may be NULL when this rank failed before getting
 * it: it still takes part in the same collectives). Fused form. */
static dp_status dist_combine(dp_trainer *t, float *g, const float *noise) {
    const size_t P = t->n_params;
    const dp_allreduce_algo algo = t->cfg.allreduce;
    if (!noisy(t)) return dp_comm_allreduce(t->comm, g, t->nbuf, algo);
    if (t->cfg.noise_mode == DP_NOISE_SHARES) {
        if (noise) add_to(g, noise, P);
        return dp_comm_allreduce(t->comm, g, t->nbuf, algo);
    }
    size_t cb, ce;
    DP_TRY(dp_comm_reduce_scatter(t->comm, g, t->nbuf, algo, &cb, &ce));
    ce = DP_MIN(ce, P);
    cb = DP_MIN(cb, ce);
    if (cb != t->pump.offset || ce - cb != t->pump.n)
        return dp_error(DP_E_INTERNAL,
                        "rank %d: reduce-scatter chunk [%zu, %zu) is not the noise range "
                        "[%zu, +%zu)",
                        t->rank, cb, ce, t->pump.offset, t->pump.n);
    if (noise) add_to(g + cb, noise, ce - cb);
    return dp_comm_allgather_chunks(t->comm, g, t->nbuf, algo);
}

/* The same with --overlap: the layers' requests were started during the
 * gradient; the extras go last; owner noise is added after the sum by every
 * rank (the whole vector, identical everywhere). */
static dp_status dist_combine_overlap(dp_trainer *t, float *g, const float *noise) {
    const size_t P = t->n_params;
    const int L = dp_mlp_nlayers(t->mlp);
    for (int l = 0; l < L; l++)
        overlap_layer_done(l, t); /* those not started yet (a failed or empty step) */
    dp_status st = t->ov_err;
    if (st == DP_OK)
        st = dp_comm_iallreduce(t->comm, g + P, N_EXTRA, t->cfg.allreduce, &t->ov_req[L]);
    if (st == DP_OK) st = dp_comm_wait_all(t->comm);
    if (st == DP_OK && noise && noisy(t) && t->cfg.noise_mode == DP_NOISE_OWNER)
        add_to(g, noise, P);
    return st;
}

static dp_status ranks_same(dp_trainer *t) {
    int same = 0;
    dp_status st = dev_pull(t);
    if (st == DP_OK) st = dp_comm_check_same(t->comm, dp_mlp_params(t->mlp), t->n_params, &same);
    if (st != DP_OK) {
        t->failed_together = 0;
        return st;
    }
    if (!same)
        return dp_error(DP_E_INTERNAL,
                        "step %llu: the parameters differ between the ranks (checksum mismatch; "
                        "they last agreed after step %llu): the replicas diverged",
                        (unsigned long long)t->step, (unsigned long long)t->last_check);
    t->last_check = t->step;
    return DP_OK;
}

/* One data-parallel step (R > 1); see the top of the file. A local failure
 * (sampling, gradient, noise) does not return early: the rank takes part in
 * the step's collectives with a raised flag, and then every rank returns the
 * agreed status. Only a failure of the communication itself is this rank's
 * alone (failed_together = 0). */
static dp_status step_dist(dp_trainer *t, dp_step_info *info) {
    const dp_train_plan *p = &t->plan;
    const size_t P = t->n_params;
    t->failed_together = 1;
    DP_TRY(step_allowed(t));
    double t0 = now();
    size_t count = 0;
    dp_status ls = dp_poisson_sample(&t->key_sample, t->step, p->n_total, p->sample_rate, t->begin,
                                     t->end, t->idx, t->cap, &count);
    if (ls != DP_OK) count = 0;
    double t1 = now();
    float *restrict g = t->grad;
    memset(g, 0, t->nbuf * sizeof(float));
    const float *noise = NULL;
    double t_noise = 0;
    if (ls == DP_OK && noisy(t)) {
        ls = pump_get(&t->pump, t->step, &noise);
        t_noise = now() - t1;
    }
    dp_grad_stats gs;
    memset(&gs, 0, sizeof gs);
    double t_gather = 0;
    t->ov_issued = 0;
    t->ov_err = DP_OK;
    t->ov_share = t->cfg.noise_mode == DP_NOISE_SHARES ? noise : NULL;
    if (ls == DP_OK)
        ls = local_grad(t, count, g, &gs, &t_gather, t->cfg.overlap ? overlap_layer_done : NULL);
    g[P] = ls != DP_OK ? 1.0f : 0.0f;
    g[P + 1] = (float)count; /* exact below 2^24 rows per step */
    g[P + 2] = (float)gs.loss_sum;
    g[P + 3] = (float)gs.n_clipped;
    double t2 = now();
    dp_status cs = t->cfg.overlap ? dist_combine_overlap(t, g, noise) : dist_combine(t, g, noise);
    if (noise) pump_release(&t->pump, t->step);
    double t3 = now();
    if (cs != DP_OK) {
        t->failed_together = 0;
        return cs;
    }
    if (g[P] != 0.0f) return agree(t->comm, ls);
    DP_TRY(finish_step(t, g, (size_t)g[P + 1], (double)g[P + 2], (size_t)g[P + 3], &gs, t0, t1 - t0,
                       t_gather, t_noise, t3 - t2, count, info));
    uint64_t total = DP_MIN(p->steps, p->budget_steps);
    if ((t->cfg.check_every && t->step % t->cfg.check_every == 0) || t->step == total)
        DP_TRY(ranks_same(t));
    return DP_OK;
}

/* ---------------------------------------------------------------- step, device */

/* One step on the device (backend.h; docs/cuda.md's recipe). The host
 * samples S_t (so it knows |S_t|) and sends the index list; the gradient,
 * the noise (one rank: stream 0, as step_once; NCCL: owner chunk or share,
 * as step_dist), the division and the optimizer stay on the device. Several
 * ranks without NCCL stage the gradient through host memory and reuse
 * step_dist's dist_combine (host noise from the pump, the failure flag and
 * the extras). The loss and clipped count are read from the device (a wait)
 * at the end of each epoch and at the last step; other steps report loss
 * NaN, unless host staging waited anyway. With NCCL they are this rank's. */
static dp_status step_dev(dp_trainer *t, dp_step_info *info) {
    const dp_train_plan *p = &t->plan;
    const train_backend *be = t->be;
    const size_t P = t->n_params;
    t->failed_together = 1;
    DP_TRY(step_allowed(t));
    double t0 = now();
    size_t count = 0;
    dp_status ls = dp_poisson_sample(&t->key_sample, t->step, p->n_total, p->sample_rate, t->begin,
                                     t->end, t->idx, t->cap, &count);
    if (ls != DP_OK && t->R == 1) return ls;
    if (ls != DP_OK) count = 0;
    double t1 = now();
    const float *cw = t->cfg.n_class_weight ? t->cfg.class_weight : NULL;
    if (ls == DP_OK) ls = be->batch_grad(t->dev, t->idx, count, &t->clip, cw);
    t->dev_stale = 1;
    double t2 = now();
    const uint64_t total = DP_MIN(p->steps, p->budget_steps);
    const double std = noisy(t) ? p->noise_std : 0;
    double noise_in_update = 0, t_comm = 0;
    size_t batch = count;
    dp_grad_stats gs;
    memset(&gs, 0, sizeof gs);
    int have_stats = 0;
    if (t->R == 1) {
        DP_TRY(ls);
        noise_in_update = std;
    } else if (t->cfg.nccl) {
        /* this rank's share of the noise before the flag, so that a failure
         * there is agreed like the gradient's; only a failure inside the
         * NCCL collectives is this rank's alone (the caller aborts the job) */
        if (ls == DP_OK && std > 0 && t->cfg.noise_mode == DP_NOISE_SHARES)
            ls = be->noise_add(t->dev, &t->key_share, t->step, (uint64_t)t->rank + 1, 0, P,
                               std / sqrt((double)t->R));
        float ex[2] = {ls != DP_OK ? 1.0f : 0.0f, (float)count};
        dp_status cs = dp_comm_allreduce(t->comm, ex, 2, t->cfg.allreduce);
        if (cs != DP_OK) {
            t->failed_together = 0;
            return cs;
        }
        if (ex[0] != 0.0f) return agree(t->comm, ls);
        batch = (size_t)ex[1];
        cs = be->nccl_sum(t->dev, &t->key_noise, t->step,
                          t->cfg.noise_mode == DP_NOISE_OWNER ? std : 0);
        if (cs != DP_OK) {
            t->failed_together = 0;
            return cs;
        }
        t_comm = now() - t2;
    } else {
        float *g = t->grad;
        memset(g, 0, t->nbuf * sizeof(float));
        if (ls == DP_OK) ls = be->grad_get(t->dev, g);
        if (ls == DP_OK) ls = be->stats(t->dev, &gs);
        const float *noise = NULL;
        if (ls == DP_OK && noisy(t)) ls = pump_get(&t->pump, t->step, &noise);
        g[P] = ls != DP_OK ? 1.0f : 0.0f;
        g[P + 1] = (float)count;
        g[P + 2] = (float)gs.loss_sum;
        g[P + 3] = (float)gs.n_clipped;
        double tc = now();
        dp_status cs = dist_combine(t, g, noise);
        if (noise) pump_release(&t->pump, t->step);
        t_comm = now() - tc;
        if (cs != DP_OK) {
            t->failed_together = 0;
            return cs;
        }
        if (g[P] != 0.0f) return agree(t->comm, ls);
        batch = (size_t)g[P + 1];
        gs.loss_sum = (double)g[P + 2];
        gs.n_clipped = (size_t)g[P + 3];
        have_stats = 1;
        DP_TRY(be->grad_put(t->dev, g));
    }
    /* the divisor of finish_step: qN when private, |S_t| otherwise */
    float scale;
    if (t->cfg.private_)
        scale = (float)(1.0 / p->expected_batch);
    else
        scale = batch ? (float)(1.0 / (double)batch) : 0.0f;
    const double t3 = now();
    dp_status us = be->update(t->dev, &t->key_noise, t->step, noise_in_update, scale,
                              lr_at(t->cfg.lr_schedule, t->cfg.lr, t->step, total));
    if (us != DP_OK) {
        t->failed_together = t->R == 1;
        return us;
    }
    if (noisy(t)) {
        dp_privacy_event ev = {p->sample_rate, p->noise_multiplier, 1};
        DP_TRY(dp_ledger_add(t->ledger, LEDGER_WHAT, ev));
    }
    t->step++;
    double loss = NAN;
    size_t n_clipped = 0;
    if (have_stats) {
        loss = batch ? gs.loss_sum / (double)batch : NAN;
        n_clipped = gs.n_clipped;
    } else {
        t->dev_batch += count;
        if (t->step % p->steps_per_epoch == 0 || t->step == total) {
            DP_TRY(be->stats(t->dev, &t->dev_gs));
            loss = t->dev_batch ? t->dev_gs.loss_sum / (double)t->dev_batch : NAN;
            n_clipped = t->dev_gs.n_clipped;
            memset(&t->dev_gs, 0, sizeof t->dev_gs);
            t->dev_batch = 0;
        }
    }
    double t4 = now();
    t->tm.sample += t1 - t0;
    t->tm.forward += t2 - t1; /* queueing the device's gradient (it runs asynchronously) */
    t->tm.comm += t_comm;
    t->tm.optimizer += t4 - t3;
    t->tm.total += t4 - t0;
    t->tm.steps++;
    t->tm.examples += count;
    fill_info(info, t, total, batch, loss, n_clipped, t4 - t0);
    if (t->R > 1 && ((t->cfg.check_every && t->step % t->cfg.check_every == 0) || t->step == total))
        DP_TRY(ranks_same(t));
    return DP_OK;
}

static dp_status step_any(dp_trainer *t, dp_step_info *info) {
    if (t->be) return step_dev(t, info);
    return t->R > 1 ? step_dist(t, info) : step_once(t, info);
}

DP_API dp_status dp_trainer_step(dp_trainer *t, dp_step_info *info) {
    dp_step_info tmp;
    return step_any(t, info ? info : &tmp);
}

DP_API dp_status dp_trainer_run(dp_trainer *t, dp_train_callback cb, void *ud) {
    t->stop = DP_STOP_NONE;
    for (;;) {
        if (t->step >= t->plan.steps) {
            t->stop = DP_STOP_DONE;
            break;
        }
        if (noisy(t) && t->step >= t->plan.budget_steps) {
            t->stop = DP_STOP_BUDGET;
            break;
        }
        dp_step_info info;
        DP_TRY(step_any(t, &info));
        if (cb && cb(t, &info, ud)) {
            t->stop = DP_STOP_CALLBACK;
            break;
        }
    }
    return DP_OK;
}

DP_API dp_stop_reason dp_trainer_stop_reason(const dp_trainer *t) {
    return t->stop;
}
DP_API const dp_train_config *dp_trainer_config(const dp_trainer *t) {
    return &t->cfg;
}
DP_API const dp_train_plan *dp_trainer_plan(const dp_trainer *t) {
    return &t->plan;
}
DP_API uint64_t dp_trainer_steps_done(const dp_trainer *t) {
    return t->step;
}
DP_API dp_mlp *dp_trainer_mlp(dp_trainer *t) {
    /* the device's parameters, if it holds them; a failed copy leaves the
     * last ones the host had and records the error */
    dev_pull(t);
    return t->mlp;
}
DP_API const dp_ledger *dp_trainer_ledger(const dp_trainer *t) {
    return t->ledger;
}
DP_API int dp_trainer_seeded(const dp_trainer *t) {
    return t->seeded;
}
DP_API void dp_trainer_timings(const dp_trainer *t, dp_train_timings *out) {
    *out = t->tm;
}

DP_API dp_status dp_trainer_epsilon(const dp_trainer *t, double *eps) {
    if (!noisy(t)) {
        *eps = INFINITY;
        return DP_OK;
    }
    return dp_ledger_epsilon(t->ledger, eps);
}

/* ---------------------------------------------------------------- config JSON */

static const char *clip_name(dp_clip_mode m) {
    return m == DP_CLIP_PER_LAYER ? "per_layer" : m == DP_CLIP_FLAT ? "flat" : "none";
}

static cJSON *config_json(const dp_train_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *h = cJSON_AddArrayToObject(o, "hidden");
    for (int l = 0; l < c->n_hidden; l++)
        cJSON_AddItemToArray(h, cJSON_CreateNumber(c->hidden[l]));
    cJSON_AddStringToObject(o, "activation", c->activation == DP_ACT_TANH ? "tanh" : "relu");
    cJSON *w = cJSON_AddArrayToObject(o, "class_weight");
    for (int i = 0; i < c->n_class_weight; i++)
        cJSON_AddItemToArray(w, cJSON_CreateNumber(c->class_weight[i]));
    cJSON_AddStringToObject(o, "optimizer", dp_optimizer_name(c->optimizer));
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddNumberToObject(o, "momentum", c->momentum);
    cJSON_AddNumberToObject(o, "adam_beta1", c->adam_beta1);
    cJSON_AddNumberToObject(o, "adam_beta2", c->adam_beta2);
    cJSON_AddNumberToObject(o, "adam_eps", c->adam_eps);
    cJSON_AddStringToObject(o, "lr_schedule", dp_lr_schedule_name(c->lr_schedule));
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON_AddNumberToObject(o, "max_steps", (double)c->max_steps);
    cJSON_AddNumberToObject(o, "batch_size", c->batch_size);
    cJSON_AddNumberToObject(o, "sample_rate", c->sample_rate);
    cJSON_AddNumberToObject(o, "micro_batch", (double)c->micro_batch);
    cJSON_AddBoolToObject(o, "private", c->private_);
    cJSON_AddStringToObject(o, "clipping", clip_name(c->clip.mode));
    cJSON_AddNumberToObject(o, "max_grad_norm", c->clip.max_grad_norm);
    cJSON *ln = cJSON_AddArrayToObject(o, "per_layer_max_grad_norm");
    if (c->clip.mode == DP_CLIP_PER_LAYER)
        for (int l = 0; l <= c->n_hidden; l++)
            cJSON_AddItemToArray(ln, cJSON_CreateNumber(c->clip.layer_norms[l]));
    cJSON_AddNumberToObject(o, "noise_multiplier", c->noise_multiplier);
    cJSON_AddNumberToObject(o, "target_epsilon", c->target_epsilon);
    cJSON_AddNumberToObject(o, "target_delta", c->target_delta);
    cJSON_AddStringToObject(o, "accountant", dp_accountant_name(c->accountant));
    if (c->seeded) {
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)c->seed);
        cJSON_AddStringToObject(o, "seed", s);
    } else {
        cJSON_AddNullToObject(o, "seed");
    }
    cJSON_AddBoolToObject(o, "noise_ahead", c->noise_ahead);
    cJSON_AddStringToObject(o, "allreduce", dp_allreduce_name(c->allreduce));
    cJSON_AddStringToObject(o, "noise_mode", dp_noise_mode_name(c->noise_mode));
    cJSON_AddBoolToObject(o, "overlap", c->overlap);
    cJSON_AddNumberToObject(o, "check_every", (double)c->check_every);
    cJSON_AddBoolToObject(o, "zero_noise", c->zero_noise);
    /* written only off the default, so CPU runs keep their bytes */
    if (c->device == DP_DEVICE_CUDA) cJSON_AddStringToObject(o, "device", "cuda");
    if (c->nccl) cJSON_AddBoolToObject(o, "nccl", 1);
    if (!c->cuda_graph) cJSON_AddBoolToObject(o, "cuda_graph", 0);
    return o;
}

DP_API dp_status dp_train_config_to_json(const dp_train_config *cfg, char **json_out) {
    cJSON *o = config_json(cfg);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return dp_error(DP_E_NOMEM, "config: out of memory");
    *json_out = s;
    return DP_OK;
}

DP_API void dp_train_free_string(char *s) {
    cJSON_free(s);
}

static int num(const cJSON *o, const char *k, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

static dp_status config_from(const cJSON *o, dp_train_config *c) {
    dp_train_config_default(c);
#define NEED(cond, what)                                                                           \
    if (!(cond)) return dp_error(DP_E_FORMAT, "config: bad or missing '%s'", what)
    double v;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hidden");
    NEED(cJSON_IsArray(h) && cJSON_GetArraySize(h) < DP_MLP_MAX_LAYERS, "hidden");
    c->n_hidden = 0;
    for (const cJSON *it = h->child; it; it = it->next) {
        NEED(cJSON_IsNumber(it) && it->valuedouble >= 1, "hidden");
        c->hidden[c->n_hidden++] = (int)it->valuedouble;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "activation");
    NEED(cJSON_IsString(a), "activation");
    c->activation = strcmp(a->valuestring, "tanh") ? DP_ACT_RELU : DP_ACT_TANH;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "class_weight");
    NEED(cJSON_IsArray(w) && cJSON_GetArraySize(w) <= DP_TRAIN_MAX_CLASSES, "class_weight");
    c->n_class_weight = 0;
    for (const cJSON *it = w->child; it; it = it->next) {
        NEED(cJSON_IsNumber(it), "class_weight");
        c->class_weight[c->n_class_weight++] = (float)it->valuedouble;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
    NEED(cJSON_IsString(s) && dp_optimizer_parse(s->valuestring, &c->optimizer) == DP_OK,
         "optimizer");
    s = cJSON_GetObjectItemCaseSensitive(o, "lr_schedule");
    NEED(cJSON_IsString(s) && dp_lr_schedule_parse(s->valuestring, &c->lr_schedule) == DP_OK,
         "lr_schedule");
    NEED(num(o, "lr", &c->lr), "lr");
    NEED(num(o, "momentum", &c->momentum), "momentum");
    NEED(num(o, "adam_beta1", &c->adam_beta1), "adam_beta1");
    NEED(num(o, "adam_beta2", &c->adam_beta2), "adam_beta2");
    NEED(num(o, "adam_eps", &c->adam_eps), "adam_eps");
    NEED(num(o, "epochs", &v), "epochs");
    c->epochs = (int)v;
    NEED(num(o, "max_steps", &v) && v >= 0, "max_steps");
    c->max_steps = (uint64_t)v;
    NEED(num(o, "batch_size", &c->batch_size), "batch_size");
    NEED(num(o, "sample_rate", &c->sample_rate), "sample_rate");
    NEED(num(o, "micro_batch", &v) && v >= 1, "micro_batch");
    c->micro_batch = (size_t)v;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "private");
    NEED(cJSON_IsBool(b), "private");
    c->private_ = cJSON_IsTrue(b);
    s = cJSON_GetObjectItemCaseSensitive(o, "clipping");
    NEED(cJSON_IsString(s), "clipping");
    c->clip.mode = !strcmp(s->valuestring, "per_layer") ? DP_CLIP_PER_LAYER
                   : !strcmp(s->valuestring, "flat")    ? DP_CLIP_FLAT
                                                        : DP_CLIP_NONE;
    NEED(num(o, "max_grad_norm", &c->clip.max_grad_norm), "max_grad_norm");
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(o, "per_layer_max_grad_norm");
    NEED(cJSON_IsArray(ln) && cJSON_GetArraySize(ln) <= DP_MLP_MAX_LAYERS,
         "per_layer_max_grad_norm");
    int l = 0;
    for (const cJSON *it = ln->child; it; it = it->next) {
        NEED(cJSON_IsNumber(it), "per_layer_max_grad_norm");
        c->clip.layer_norms[l++] = it->valuedouble;
    }
    NEED(num(o, "noise_multiplier", &c->noise_multiplier), "noise_multiplier");
    NEED(num(o, "target_epsilon", &c->target_epsilon), "target_epsilon");
    NEED(num(o, "target_delta", &c->target_delta), "target_delta");
    s = cJSON_GetObjectItemCaseSensitive(o, "accountant");
    NEED(cJSON_IsString(s) && dp_accountant_parse(s->valuestring, &c->accountant) == DP_OK,
         "accountant");
    s = cJSON_GetObjectItemCaseSensitive(o, "seed");
    c->seeded = cJSON_IsString(s);
    if (c->seeded) c->seed = strtoull(s->valuestring, NULL, 10);
    b = cJSON_GetObjectItemCaseSensitive(o, "noise_ahead");
    c->noise_ahead = cJSON_IsBool(b) ? cJSON_IsTrue(b) : 1;
    /* the data-parallel settings are optional (checkpoints of one process
     * written before they existed) */
    s = cJSON_GetObjectItemCaseSensitive(o, "allreduce");
    if (s)
        NEED(cJSON_IsString(s) && dp_allreduce_parse(s->valuestring, &c->allreduce) == DP_OK,
             "allreduce");
    s = cJSON_GetObjectItemCaseSensitive(o, "noise_mode");
    if (s)
        NEED(cJSON_IsString(s) && dp_noise_mode_parse(s->valuestring, &c->noise_mode) == DP_OK,
             "noise_mode");
    b = cJSON_GetObjectItemCaseSensitive(o, "overlap");
    if (b) NEED(cJSON_IsBool(b), "overlap");
    c->overlap = cJSON_IsTrue(b);
    if (cJSON_GetObjectItemCaseSensitive(o, "check_every")) {
        NEED(num(o, "check_every", &v) && v >= 0, "check_every");
        c->check_every = (uint64_t)v;
    }
    b = cJSON_GetObjectItemCaseSensitive(o, "zero_noise");
    if (b) NEED(cJSON_IsBool(b), "zero_noise");
    c->zero_noise = cJSON_IsTrue(b);
    s = cJSON_GetObjectItemCaseSensitive(o, "device");
    if (s) {
        NEED(cJSON_IsString(s) &&
                 (!strcmp(s->valuestring, "cuda") || !strcmp(s->valuestring, "cpu")),
             "device");
        c->device = strcmp(s->valuestring, "cuda") ? DP_DEVICE_CPU : DP_DEVICE_CUDA;
    }
    b = cJSON_GetObjectItemCaseSensitive(o, "nccl");
    if (b) NEED(cJSON_IsBool(b), "nccl");
    c->nccl = cJSON_IsTrue(b);
    b = cJSON_GetObjectItemCaseSensitive(o, "cuda_graph");
    if (b) NEED(cJSON_IsBool(b), "cuda_graph");
    c->cuda_graph = b ? cJSON_IsTrue(b) : 1;
#undef NEED
    return DP_OK;
}

DP_API dp_status dp_train_config_from_json(const char *json, dp_train_config *cfg) {
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dp_error(DP_E_FORMAT, "config: not a JSON object");
    }
    dp_status st = config_from(o, cfg);
    cJSON_Delete(o);
    return st;
}

/* ---------------------------------------------------------------- checkpoint */

static void hex(const uint8_t *b, size_t n, char *out) {
    sodium_bin2hex(out, 2 * n + 1, b, n);
}

DP_API dp_status dp_trainer_save(const dp_trainer *t, const char *path) {
    DP_TRY(dev_pull(t));
    cJSON *o = cJSON_CreateObject();
    if (!o) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    char buf[80];
    cJSON_AddStringToObject(o, "format", "dpsgd-checkpoint");
    cJSON_AddItemToObject(o, "config", config_json(&t->cfg));
    cJSON *p = cJSON_AddObjectToObject(o, "plan");
    cJSON_AddNumberToObject(p, "n_total", (double)t->plan.n_total);
    cJSON_AddNumberToObject(p, "sample_rate", t->plan.sample_rate);
    cJSON_AddNumberToObject(p, "steps_per_epoch", (double)t->plan.steps_per_epoch);
    cJSON_AddNumberToObject(p, "steps", (double)t->plan.steps);
    cJSON_AddNumberToObject(p, "budget_steps", (double)t->plan.budget_steps);
    cJSON_AddNumberToObject(p, "noise_multiplier", t->plan.noise_multiplier);
    cJSON_AddNumberToObject(p, "prior_epsilon", t->plan.prior_epsilon);
    cJSON_AddNumberToObject(p, "n_prior", (double)t->plan.n_prior);
    cJSON_AddNumberToObject(o, "step", (double)t->step);
    cJSON_AddNumberToObject(o, "optimizer_t", (double)t->opt.t);
    /* for information only: a checkpoint resumes on any number of ranks */
    cJSON_AddNumberToObject(o, "world_size", t->R);
    cJSON_AddBoolToObject(o, "seeded", t->seeded);
    hex(t->key_sample.bytes, 32, buf);
    cJSON_AddStringToObject(o, "key_sample", buf);
    hex(t->key_noise.bytes, 32, buf);
    cJSON_AddStringToObject(o, "key_noise", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->init_seed);
    cJSON_AddStringToObject(o, "init_seed", buf);
    cJSON_AddStringToObject(o, "schema_hash", dp_dataset_schema_hash(t->ds));
    cJSON_AddNumberToObject(o, "n_features", (double)t->d);
    cJSON_AddNumberToObject(o, "n_classes", t->k);
    char *led = NULL;
    dp_status st = dp_ledger_to_json(t->ledger, &led);
    if (st != DP_OK) {
        cJSON_Delete(o);
        return st;
    }
    cJSON_AddItemToObject(o, "ledger", cJSON_Parse(led));
    dp_ledger_free_string(led);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    dp_checkpoint ck = {json, dp_mlp_params(t->mlp), t->n_params, t->opt.state,
                        optim_state_len(&t->opt)};
    st = dp_checkpoint_write(path, &ck);
    cJSON_free(json);
    return st;
}

static int get_key(const cJSON *o, const char *name, dp_key *k) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
    size_t n = 0;
    return cJSON_IsString(s) && strlen(s->valuestring) == 64 &&
           sodium_hex2bin(k->bytes, 32, s->valuestring, 64, NULL, &n, NULL) == 0 && n == 32;
}

/* The placement's fields that are set (>= 0) over the checkpoint's; what
 * they may combine into is check_config's to judge. */
static void place(dp_train_config *c, const dp_train_placement *pl) {
    if (pl->device >= 0) c->device = (dp_device_kind)pl->device;
    if (pl->allreduce >= 0) c->allreduce = (dp_allreduce_algo)pl->allreduce;
    if (pl->nccl >= 0) c->nccl = pl->nccl;
    if (pl->overlap >= 0) c->overlap = pl->overlap;
    if (pl->cuda_graph >= 0) c->cuda_graph = pl->cuda_graph;
    if (pl->noise_ahead >= 0) c->noise_ahead = pl->noise_ahead;
    if (pl->check_every >= 0) c->check_every = (uint64_t)pl->check_every;
}

/* What each rank does alone to resume: read and check the checkpoint, build. */
static dp_status resume_local(const dp_dataset *ds, const char *path, dp_comm *comm,
                              const dp_train_placement *pl, dp_trainer **out) {
    *out = NULL;
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "trainer: libsodium failed to start");
    dp_checkpoint ck;
    DP_TRY(dp_checkpoint_read(path, &ck));
    dp_status st = DP_OK;
    dp_trainer *t = NULL;
    cJSON *o = cJSON_Parse(ck.json);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "plan");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "schema_hash");
    const cJSON *led = cJSON_GetObjectItemCaseSensitive(o, "ledger");
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(o, "init_seed");
    double v;
#define BADCK(what)                                                                                \
    do {                                                                                           \
        st = dp_error(DP_E_FORMAT, "%s: checkpoint: bad or missing %s", path, what);               \
        goto fail;                                                                                 \
    } while (0)
    if (!cJSON_IsObject(o) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "dpsgd-checkpoint"))
        BADCK("format");
    if (!cJSON_IsObject(p) || !cJSON_IsString(sh) || !cJSON_IsObject(led) || !cJSON_IsString(is))
        BADCK("plan, schema_hash, ledger or init_seed");
    if (strcmp(sh->valuestring, dp_dataset_schema_hash(ds))) {
        st = dp_error(DP_E_SCHEMA,
                      "%s: the checkpoint was written for a dataset of schema %.12s, this one "
                      "has %.12s",
                      path, sh->valuestring, dp_dataset_schema_hash(ds));
        goto fail;
    }
    t = dp_calloc(1, sizeof *t);
    if (!t) {
        st = dp_error(DP_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    attach(t, comm);
    if ((st = config_from(cJSON_GetObjectItemCaseSensitive(o, "config"), &t->cfg)) != DP_OK) {
        dp_error_prefix(st, "%s", path);
        goto fail;
    }
    if (pl) place(&t->cfg, pl);
    if ((st = check_config(&t->cfg, ds)) != DP_OK) {
        dp_error_prefix(st, "%s", path);
        goto fail;
    }
    if ((st = make_plan(&t->cfg, dp_dataset_rows_total(ds), t->cfg.n_hidden + 1, &t->plan)))
        goto fail;
    if (!num(p, "n_total", &v) || (size_t)v != t->plan.n_total) {
        st = dp_error(DP_E_SCHEMA,
                      "%s: the checkpoint was written for a split of %.0f rows, this "
                      "one has %zu",
                      path, v, t->plan.n_total);
        goto fail;
    }
    if (!num(p, "budget_steps", &v)) BADCK("plan.budget_steps");
    t->plan.budget_steps = (uint64_t)v;
    if (!num(p, "noise_multiplier", &t->plan.noise_multiplier)) BADCK("plan.noise_multiplier");
    num(p, "prior_epsilon", &t->plan.prior_epsilon);
    if (num(p, "n_prior", &v)) t->plan.n_prior = (size_t)v;
    t->plan.noise_std = t->plan.noise_multiplier * t->plan.sensitivity;
    if ((st = build(t, ds)) != DP_OK) goto fail;
    if (ck.n_params != t->n_params || ck.n_state != optim_state_len(&t->opt)) {
        st = dp_error(DP_E_FORMAT,
                      "%s: checkpoint holds %zu parameters and %zu state values, "
                      "the configured network needs %zu and %zu",
                      path, ck.n_params, ck.n_state, t->n_params, optim_state_len(&t->opt));
        goto fail;
    }
    memcpy(dp_mlp_params(t->mlp), ck.params, ck.n_params * sizeof(float));
    if (ck.n_state) memcpy(t->opt.state, ck.state, ck.n_state * sizeof(float));
    if (!num(o, "step", &v) || v < 0) BADCK("step");
    t->step = (uint64_t)v;
    if (!num(o, "optimizer_t", &v) || v < 0) BADCK("optimizer_t");
    t->opt.t = (uint64_t)v;
    if (!get_key(o, "key_sample", &t->key_sample) || !get_key(o, "key_noise", &t->key_noise))
        BADCK("random keys");
    t->seeded = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "seeded"));
    t->init_seed = strtoull(is->valuestring, NULL, 10);
    dp_ledger_destroy(t->ledger);
    t->ledger = NULL;
    {
        char *txt = cJSON_PrintUnformatted(led);
        st = txt ? dp_ledger_from_json(txt, &t->ledger) : DP_E_NOMEM;
        cJSON_free(txt);
        if (st != DP_OK) {
            dp_error_prefix(st, "%s: checkpoint ledger", path);
            goto fail;
        }
    }
    cJSON_Delete(o);
    dp_checkpoint_free(&ck);
    *out = t;
    return DP_OK;
#undef BADCK
fail:
    cJSON_Delete(o);
    dp_checkpoint_free(&ck);
    dp_trainer_destroy(t);
    return st;
}

/* Every rank reads the checkpoint (on a shared file system, as the dataset):
 * it holds everything that is the same on all ranks (keys, step, parameters,
 * optimizer state, ledger) and nothing that depends on R, so it resumes on
 * any number of ranks. The ranks then compare a checksum of what they read. */
DP_API dp_status dp_trainer_resume_placed(const dp_dataset *ds, const char *path, dp_comm *comm,
                                          const dp_train_placement *pl, dp_trainer **out) {
    *out = NULL;
    dp_trainer *t = NULL;
    dp_status st = agree(comm, resume_local(ds, path, comm, pl, &t));
    if (st == DP_OK && t->R > 1) {
        st = ranks_same(t);
        if (st == DP_OK) {
            /* the optimizer state must match too: one more checksum */
            int same = 0;
            st = dp_comm_check_same(comm, t->opt.state, optim_state_len(&t->opt), &same);
            if (st == DP_OK && !same)
                st = dp_error(DP_E_FORMAT, "%s: the ranks read different checkpoints", path);
        } else if (st == DP_E_INTERNAL) {
            st = dp_error(DP_E_FORMAT, "%s: the ranks read different checkpoints", path);
        }
    }
    if (st == DP_OK) st = ready(t, comm);
    if (st != DP_OK) {
        dp_trainer_destroy(t);
        return st;
    }
    t->last_check = t->step;
    *out = t;
    return DP_OK;
}

DP_API dp_status dp_trainer_resume_dist(const dp_dataset *ds, const char *path, dp_comm *comm,
                                        dp_trainer **out) {
    return dp_trainer_resume_placed(ds, path, comm, NULL, out);
}

DP_API dp_status dp_trainer_resume(const dp_dataset *ds, const char *path, dp_trainer **out) {
    return dp_trainer_resume_placed(ds, path, NULL, NULL, out);
}
