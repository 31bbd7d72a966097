/*
 * cmd_train.c: `dpsgd train DATASET -o RUN`: parse the options into a
 * dp_train_config, create (or --resume) a trainer, run it with a callback
 * that draws progress, logs metrics.jsonl and writes checkpoints, then write
 * the run directory: model.safetensors, privacy.json, metrics.jsonl,
 * command.txt, dataset_meta.json, checkpoint.ckpt (all through atomic writes).
 *
 * Under `mpirun -np R` it is one rank of a data-parallel job (comm.h,
 * dp_trainer_create_dist): each rank maps only its shard of the train split,
 * rank 0 alone writes the run directory, the metrics, the checkpoints and the
 * progress, and the others print nothing but their own errors. Failures at
 * phase boundaries are agreed (every rank exits with the lowest failing
 * rank's message, printed once by rank 0); a rank that fails alone while the
 * others are inside a collective ends the job (MPI_Abort) after printing its
 * message, so a job never hangs.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "cli/cli.h"
#include "cli/progress.h"
#include "dpsgd/checkpoint.h"
#include "dpsgd/comm.h"
#include "dpsgd/eval.h"
#include "dpsgd/model.h"
#include "dpsgd/train.h"

#define MAXD(a, b) ((a) > (b) ? (a) : (b))
#define MIND(a, b) ((a) < (b) ? (a) : (b))

enum {
    O_HIDDEN = 256,
    O_ACT,
    O_CW,
    O_OPT,
    O_LR,
    O_MOM,
    O_SCHED,
    O_EPOCHS,
    O_STEPS,
    O_BATCH,
    O_RATE,
    O_CLIP,
    O_LAYERCLIP,
    O_MICRO,
    O_SIGMA,
    O_EPS,
    O_DELTA,
    O_ACC,
    O_NODP,
    O_SEED,
    O_THREADS,
    O_CKEVERY,
    O_RESUME,
    O_QUIET,
    O_FORCE,
    O_DEVICE,
    O_ALLREDUCE,
    O_LOGEVERY,
    O_NOISEINLINE,
    O_NOISEMODE,
    O_OVERLAP,
    O_CHECKEVERY,
    O_NOGRAPH
};

static const cli_opt opts[] = {
    {"output", 'o', "RUN", "run directory to create (required)"},
    {"hidden", O_HIDDEN, "W,W,..", "hidden layer widths (default 64,64; 0 for none)"},
    {"activation", O_ACT, "relu|tanh", "activation after each hidden layer (default relu)"},
    {"class-weight", O_CW, "w0,w1,..", "loss weight per class (default all 1)"},
    {"optimizer", O_OPT, "sgd|momentum|adam", "optimizer (default sgd)"},
    {"lr", O_LR, "X", "learning rate (default 0.1)"},
    {"momentum", O_MOM, "X", "momentum of the momentum optimizer (default 0.9)"},
    {"lr-schedule", O_SCHED, "constant|cosine", "learning-rate schedule (default constant)"},
    {"epochs", O_EPOCHS, "E", "epochs of round(1/q) steps each (default 5)"},
    {"steps", O_STEPS, "T", "train exactly T steps instead of whole epochs"},
    {"batch-size", O_BATCH, "B", "EXPECTED batch size: sample rate q = B / N (default 256)"},
    {"sample-rate", O_RATE, "Q", "Poisson sample rate q directly (instead of --batch-size)"},
    {"max-grad-norm", O_CLIP, "C", "clip each example's gradient to L2 norm C (default 1.0)"},
    {"per-layer-clip", O_LAYERCLIP, "C1,C2,..",
     "clip each layer's gradient separately (one bound per layer)"},
    {"micro-batch", O_MICRO, "M", "rows per micro-batch: bounds memory (default 256)"},
    {"noise-multiplier", O_SIGMA, "S",
     "noise std / clip bound (sigma); else calibrated from --target-epsilon (0: clipping "
     "without noise, NOT private)"},
    {"target-epsilon", O_EPS, "E", "privacy budget: calibrate sigma to it, never exceed it"},
    {"target-delta", O_DELTA, "D", "delta of the (epsilon, delta) guarantee (default 1e-5)"},
    {"accountant", O_ACC, "rdp|prv", "privacy accountant (default rdp)"},
    {"no-dp", O_NODP, NULL, "train without clipping or noise (NOT private; for baselines)"},
    {"seed", O_SEED, "S", "seed every random stream: reproducible (privacy.json says seeded)"},
    {"threads", O_THREADS, "T", "threads (default: all cores)"},
    {"checkpoint-every", O_CKEVERY, "N", "write a checkpoint every N steps (default: each epoch)"},
    {"log-every", O_LOGEVERY, "N",
     "log a metrics.jsonl line every N steps (default: 10 per epoch)"},
    {"resume", O_RESUME, NULL, "continue the run in RUN from its checkpoint"},
    {"force", O_FORCE, NULL, "overwrite an existing run directory"},
    {"quiet", O_QUIET, NULL, "no progress output"},
    {"device", O_DEVICE, "cpu|cuda", "where to train (default cpu)"},
    {"allreduce", O_ALLREDUCE, "mpi|naive|ring|tree|nccl",
     "allreduce algorithm across ranks (default mpi; nccl: between GPUs, needs --device cuda; "
     "the others stage a GPU gradient through host memory)"},
    {"noise-mode", O_NOISEMODE, "owner|shares",
     "across ranks: the owner of each chunk adds its noise (default), or every rank adds a "
     "share"},
    {"overlap", O_OVERLAP, NULL,
     "across ranks: one non-blocking allreduce per layer, overlapped with the gradient "
     "(default: one fused allreduce, faster here)"},
    {"check-every", O_CHECKEVERY, "K",
     "across ranks: compare a parameter checksum every K steps and at the end (default 100)"},
    {"noise-inline", O_NOISEINLINE, NULL,
     "draw noise on the step's thread (default: a thread draws it ahead)"},
    {"no-cuda-graph", O_NOGRAPH, NULL,
     "--device cuda: launch the step's kernels one by one (default: replay a captured CUDA "
     "graph)"},
    {0},
};

static const cli_cmd cmd = {
    "train",
    "DATASET -o RUN [options]",
    "Train an MLP classifier on DATASET's train split with DP-SGD (Poisson sampling, per-example\n"
    "clipping, Gaussian noise) and write the model, its privacy report and metrics to RUN.",
    "dpsgd train data/pums -o runs/eps1 --target-epsilon 1 --target-delta 1e-5 --epochs 5",
    opts,
};

#define CHECKPOINT "checkpoint.ckpt"

typedef struct run_ctx {
    const char *run;
    int rank;
    uint64_t examples; /* realised batch sizes of all ranks, this invocation */
    uint64_t kill_rank_any, kill_rank;
    uint64_t corrupt_step;
    int corrupt_rank;
    dp_metrics *metrics;
    progress prog;
    uint64_t ck_every, log_every, kill_after;
    uint64_t epochs_total;
    double loss_sum_epoch;
    size_t loss_n_epoch;
    double t_last_eps, eps_cost, eps;
    double t0;
    uint64_t step0;
    dp_dataset *val;
    float *val_P;
    dp_status err;
} run_ctx;

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Epsilon so far, recomputed at most every so often: an accountant call can
 * cost milliseconds (PRV more), so it is rate-limited to ~2% of the time. */
static double eps_now(run_ctx *c, dp_trainer *t, int force) {
    double now = progress_now();
    if (force || now - c->t_last_eps > MAXD(0.5, 50 * c->eps_cost)) {
        double e;
        if (dp_trainer_epsilon(t, &e) == DP_OK) c->eps = e;
        c->eps_cost = progress_now() - now;
        c->t_last_eps = progress_now();
    }
    return c->eps;
}

static void add_not_private(cJSON *o, const char *const *names, int n) {
    cJSON *a = cJSON_AddArrayToObject(o, "not_private");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
}

static dp_status log_json(run_ctx *c, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    dp_status st = s ? dp_metrics_write(c->metrics, s) : DP_E_NOMEM;
    cJSON_free(s);
    cJSON_Delete(o);
    return st;
}

/* Validation metrics at the end of an epoch. They are computed on held-out
 * private records: released as not private. */
static void val_metrics(run_ctx *c, dp_trainer *t, cJSON *o) {
    if (!c->val) return;
    size_t n = dp_dataset_rows(c->val);
    int k = dp_dataset_classes(c->val);
    dp_eval_metrics m;
    if (dp_mlp_predict(dp_trainer_mlp(t), dp_dataset_X(c->val), n, c->val_P) != DP_OK ||
        k > DP_EVAL_MAX_CLASSES ||
        dp_eval_compute(c->val_P, dp_dataset_y(c->val), n, k, NULL, &m) != DP_OK)
        return;
    cJSON_AddNumberToObject(o, "val_accuracy", m.accuracy);
    cJSON_AddNumberToObject(o, "val_loss", m.log_loss);
    if (!isnan(m.roc_auc)) cJSON_AddNumberToObject(o, "val_roc_auc", m.roc_auc);
}

/* Test hooks (environment, for tests/test_train*.sh): die like kill -9 after
 * step k (DPSGD_TEST_KILL_AFTER_STEP=k, on rank DPSGD_TEST_KILL_RANK or on
 * every rank), or perturb one parameter of one rank after a step
 * (DPSGD_TEST_CORRUPT=rank:step) so that the checksum must catch it. */
static void test_hooks(run_ctx *c, dp_trainer *t, uint64_t step) {
    if (c->corrupt_step && step == c->corrupt_step && c->rank == c->corrupt_rank)
        dp_mlp_params(dp_trainer_mlp(t))[0] += 1e-3f;
    if (c->kill_after && step == c->kill_after &&
        (c->kill_rank_any || c->kill_rank == (uint64_t)c->rank))
        raise(SIGKILL);
}

static int on_step(dp_trainer *t, const dp_step_info *in, void *ud) {
    run_ctx *c = ud;
    const dp_train_plan *p = dp_trainer_plan(t);
    c->examples += in->batch;
    if (c->rank != 0) { /* rank 0 alone reports and writes */
        test_hooks(c, t, in->step);
        return 0;
    }
    if (in->batch) {
        c->loss_sum_epoch += in->loss * (double)in->batch;
        c->loss_n_epoch += in->batch;
    }
    dp_train_timings tm;
    dp_trainer_timings(t, &tm);
    double rate = tm.total > 0 ? (double)c->examples / tm.total : 0;
    int epoch_end = in->step_in_epoch == in->steps_per_epoch || in->step == in->steps;
    int log = in->step % c->log_every == 0;
    double eps = eps_now(c, t, log || epoch_end);
    progress_step(&c->prog, in->step, in->steps, in->epoch, c->epochs_total, in->step_in_epoch,
                  in->steps_per_epoch, in->loss, eps, rate, epoch_end);
    static const char *np_step[] = {"train_loss", "batch_size", "n_clipped"};
    if (log) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "step");
        cJSON_AddNumberToObject(o, "step", (double)in->step);
        cJSON_AddNumberToObject(o, "epoch", (double)in->step / (double)p->steps_per_epoch);
        if (isfinite(in->loss)) cJSON_AddNumberToObject(o, "train_loss", in->loss);
        cJSON_AddNumberToObject(o, "batch_size", (double)in->batch);
        cJSON_AddNumberToObject(o, "n_clipped", (double)in->n_clipped);
        if (isfinite(eps)) cJSON_AddNumberToObject(o, "epsilon", eps);
        add_not_private(o, np_step, 3);
        if ((c->err = log_json(c, o)) != DP_OK) return 1;
    }
    if (epoch_end) {
        static const char *np_epoch[] = {"train_loss", "val_accuracy", "val_loss", "val_roc_auc"};
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "epoch");
        cJSON_AddNumberToObject(o, "step", (double)in->step);
        cJSON_AddNumberToObject(o, "epoch", (double)in->epoch + 1);
        if (c->loss_n_epoch)
            cJSON_AddNumberToObject(o, "train_loss", c->loss_sum_epoch / (double)c->loss_n_epoch);
        val_metrics(c, t, o);
        if (isfinite(eps)) cJSON_AddNumberToObject(o, "epsilon", eps);
        add_not_private(o, np_epoch, 4);
        if ((c->err = log_json(c, o)) != DP_OK) return 1;
        c->loss_sum_epoch = 0;
        c->loss_n_epoch = 0;
    }
    if (in->step % c->ck_every == 0) {
        char *path = join(c->run, CHECKPOINT);
        c->err = dp_trainer_save(t, path);
        free(path);
        if (c->err != DP_OK) return 1;
    }
    test_hooks(c, t, in->step); /* after the checkpoint of this step */
    return 0;
}

static int path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* privacy.json: what was released and what it cost. */
static dp_status write_privacy(const char *run, dp_trainer *t, const dp_dataset *ds, int ranks) {
    const dp_train_config *cfg = dp_trainer_config(t);
    const dp_train_plan *p = dp_trainer_plan(t);
    cJSON *o = cJSON_CreateObject();
    double eps = INFINITY;
    dp_trainer_epsilon(t, &eps);
    const int priv = cfg->private_ && !cfg->zero_noise;
    cJSON_AddBoolToObject(o, "private", priv);
    if (priv)
        cJSON_AddNumberToObject(o, "epsilon", eps);
    else
        cJSON_AddNullToObject(o, "epsilon");
    cJSON_AddNumberToObject(o, "delta", priv ? cfg->target_delta : 0);
    cJSON_AddNumberToObject(o, "noise_multiplier", p->noise_multiplier);
    cJSON_AddNumberToObject(o, "max_grad_norm", cfg->private_ ? p->sensitivity : 0);
    cJSON_AddStringToObject(o, "clipping",
                            !cfg->private_                        ? "none"
                            : cfg->clip.mode == DP_CLIP_PER_LAYER ? "per_layer"
                                                                  : "flat");
    if (cfg->private_ && cfg->clip.mode == DP_CLIP_PER_LAYER) {
        cJSON *a = cJSON_AddArrayToObject(o, "per_layer_max_grad_norm");
        for (int l = 0; l <= cfg->n_hidden; l++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(cfg->clip.layer_norms[l]));
    }
    cJSON_AddNumberToObject(o, "sample_rate", p->sample_rate);
    cJSON_AddNumberToObject(o, "expected_batch_size", p->expected_batch);
    cJSON_AddNumberToObject(o, "dataset_rows", (double)p->n_total);
    cJSON_AddNumberToObject(o, "steps", (double)dp_trainer_steps_done(t));
    cJSON_AddNumberToObject(o, "epochs",
                            (double)dp_trainer_steps_done(t) / (double)p->steps_per_epoch);
    cJSON_AddStringToObject(o, "accountant", dp_accountant_name(cfg->accountant));
    if (cfg->target_epsilon > 0) cJSON_AddNumberToObject(o, "target_epsilon", cfg->target_epsilon);
    cJSON_AddBoolToObject(o, "seeded_noise", dp_trainer_seeded(t));
    cJSON_AddStringToObject(
        o, "noise_source",
        dp_trainer_seeded(t) ? "ChaCha20 keyed from --seed: reproducible, so anyone who knows the "
                               "seed can subtract the noise"
                             : "ChaCha20 keyed from the operating system's random source");
    cJSON_AddStringToObject(o, "neighbouring", DP_LEDGER_NEIGHBOURING);
    cJSON_AddStringToObject(o, "sampling",
                            "Poisson: each record independently with probability sample_rate at "
                            "each step; updates divided by the expected batch size");
    const char *why = dp_trainer_steps_done(t) >= p->steps                  ? "done"
                      : priv && dp_trainer_steps_done(t) >= p->budget_steps ? "budget"
                                                                            : "interrupted";
    cJSON_AddStringToObject(o, "stopped", why);
    if (ranks > 1) {
        /* how the noise was added matters for whom the ranks must trust */
        cJSON *d = cJSON_AddObjectToObject(o, "distributed");
        cJSON_AddNumberToObject(d, "ranks", ranks);
        cJSON_AddStringToObject(d, "allreduce",
                                cfg->nccl ? "nccl" : dp_allreduce_name(cfg->allreduce));
        cJSON_AddStringToObject(d, "noise_mode", dp_noise_mode_name(cfg->noise_mode));
        cJSON_AddStringToObject(
            d, "noise_trust",
            cfg->noise_mode == DP_NOISE_SHARES
                ? "every rank added an independent share N(0, sigma^2 C^2 / ranks) before the "
                  "sum: the total noise is unknown to any rank unless all collude (when seeded, "
                  "anyone with the seed can recompute it)"
                : "the owner of each chunk of the summed gradient added that chunk's noise; every "
                  "rank holds the noise key, so the ranks must trust each other");
    }
    if (priv) {
        char *lj = NULL;
        if (dp_ledger_to_json(dp_trainer_ledger(t), &lj) == DP_OK) {
            cJSON_AddItemToObject(o, "ledger", cJSON_Parse(lj));
            dp_ledger_free_string(lj);
        }
    }
    cJSON *np = cJSON_AddArrayToObject(o, "not_private");
    if (!cfg->private_)
        cJSON_AddItemToArray(np, cJSON_CreateString("model.safetensors: trained with --no-dp"));
    else if (cfg->zero_noise)
        cJSON_AddItemToArray(np, cJSON_CreateString("model.safetensors: trained with "
                                                    "--noise-multiplier 0 (clipped, no noise)"));
    cJSON_AddItemToArray(
        np, cJSON_CreateString("metrics.jsonl: train_loss, batch_size, n_clipped, val_accuracy, "
                               "val_loss, val_roc_auc (computed on private records)"));
    cJSON_AddItemToArray(np, cJSON_CreateString("progress output: training loss"));
    /* What prep released about the data without privacy, in meta.json. */
    cJSON *meta = cJSON_Parse(dp_dataset_meta_json(ds));
    const cJSON *stats = cJSON_GetObjectItemCaseSensitive(meta, "statistics");
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(stats, "note");
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(stats, "private")) && cJSON_IsString(note)) {
        char line[1600];
        snprintf(line, sizeof line, "dataset meta.json encodings: %s", note->valuestring);
        cJSON_AddItemToArray(np, cJSON_CreateString(line));
    }
    if (cJSON_GetObjectItemCaseSensitive(meta, "report"))
        cJSON_AddItemToArray(
            np, cJSON_CreateString("dataset meta.json report and split sizes: exact counts of "
                                   "the input (keep meta.json with the data)"));
    cJSON_Delete(meta);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) return DP_E_NOMEM;
    char *path = join(run, "privacy.json");
    size_t len = strlen(s);
    char *text = malloc(len + 2);
    memcpy(text, s, len);
    text[len] = '\n';
    dp_status st = dp_file_write_atomic(path, text, len + 1);
    free(text);
    cJSON_free(s);
    free(path);
    return st;
}

static dp_status write_model(const char *run, dp_trainer *t, const dp_dataset *ds) {
    size_t d = dp_dataset_cols(ds);
    const char **names = malloc(d * sizeof *names);
    for (size_t j = 0; j < d; j++)
        names[j] = dp_dataset_feature(ds, j);
    const dp_train_config *cfg = dp_trainer_config(t);
    const dp_train_plan *p = dp_trainer_plan(t);
    char priv[512];
    double eps = INFINITY;
    dp_trainer_epsilon(t, &eps);
    if (cfg->private_ && !cfg->zero_noise)
        snprintf(priv, sizeof priv,
                 "{\"private\": true, \"epsilon\": %.17g, \"delta\": %.17g, \"noise_multiplier\": "
                 "%.17g, \"max_grad_norm\": %.17g, \"sample_rate\": %.17g, \"steps\": %llu, "
                 "\"accountant\": \"%s\"}",
                 eps, cfg->target_delta, p->noise_multiplier, p->sensitivity, p->sample_rate,
                 (unsigned long long)dp_trainer_steps_done(t), dp_accountant_name(cfg->accountant));
    else
        snprintf(priv, sizeof priv, "{\"private\": false}");
    char *path = join(run, "model.safetensors");
    dp_status st = dp_model_save(path, dp_trainer_mlp(t), names, dp_dataset_schema_hash(ds), priv);
    free(path);
    free(names);
    return st;
}

static dp_status write_text(const char *run, const char *name, const char *text, int append) {
    char *path = join(run, name);
    dp_status st;
    if (append) {
        FILE *f = fopen(path, "a");
        st = f && fputs(text, f) >= 0 && fclose(f) == 0 ? DP_OK : DP_E_IO;
        if (st != DP_OK) cli_error("%s: cannot append: %s", path, strerror(errno));
    } else {
        st = dp_file_write_atomic(path, text, strlen(text));
    }
    free(path);
    return st;
}

/* Undo a run directory this invocation created before training started. */
static void remove_run(const char *run) {
    const char *files[] = {"command.txt", "dataset_meta.json", "metrics.jsonl", CHECKPOINT};
    for (int i = 0; i < 4; i++) {
        char *p = join(run, files[i]);
        unlink(p);
        free(p);
    }
    rmdir(run);
}

static char *command_line(int argc, char **argv) {
    size_t n = 16;
    for (int i = 0; i < argc; i++)
        n += 3 * strlen(argv[i]) + 3;
    char *s = malloc(n), *w = s;
    w += sprintf(w, "dpsgd");
    for (int i = 0; i < argc; i++) {
        /* single-quote anything the shell would split or expand */
        int plain = argv[i][0] != '\0' &&
                    strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO"
                                    "PQRSTUVWXYZ0123456789-_=.,/:+@%") == strlen(argv[i]);
        *w++ = ' ';
        if (plain) {
            w += sprintf(w, "%s", argv[i]);
        } else {
            *w++ = '\'';
            for (const char *c = argv[i]; *c; c++) {
                if (*c == '\'')
                    w += sprintf(w, "'\\''");
                else
                    *w++ = *c;
            }
            *w++ = '\'';
        }
    }
    *w++ = '\n';
    *w = '\0';
    return s;
}

/* Everything the command line says. */
typedef struct train_args {
    dp_train_config cfg;
    dp_train_placement pl; /* the options of cfg a --resume applies (given ones only) */
    const char *run, *device, *dataset;
    int resume, force, quiet, have_sigma, have_batch, have_rate, have_clip, have_layer, have_eps;
    long long threads, ck_every, log_every;
    int help;
} train_args;

/* Parse and check the options: CLI_OK, or the exit status after printing
 * (--help: CLI_OK with a->help set). Deterministic in argv, so every rank of a
 * job gets the same answer without talking to the others. */
static int parse(int argc, char **argv, train_args *a) {
    memset(a, 0, sizeof *a);
    dp_train_config_default(&a->cfg);
    dp_train_placement_keep(&a->pl);
    a->device = "cpu";
    long long v;
    double dv, list[DP_TRAIN_MAX_CLASSES];
    long long lv[DP_MLP_MAX_LAYERS];
    int n;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    int c;
    while ((c = cli_next(&p)) != -1) {
        switch (c) {
        case CLI_HELP:
            a->help = 1;
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case 'o':
            a->run = optarg;
            break;
        case O_HIDDEN:
            if (!strcmp(optarg, "0") || !strcmp(optarg, "")) {
                a->cfg.n_hidden = 0;
                break;
            }
            if (cli_parse_longs("hidden", optarg, 1, 1 << 20, lv, DP_MLP_MAX_LAYERS - 1, &n))
                return CLI_BAD_INPUT;
            a->cfg.n_hidden = n;
            for (int i = 0; i < n; i++)
                a->cfg.hidden[i] = (int)lv[i];
            break;
        case O_ACT:
            if (!strcmp(optarg, "relu"))
                a->cfg.activation = DP_ACT_RELU;
            else if (!strcmp(optarg, "tanh"))
                a->cfg.activation = DP_ACT_TANH;
            else
                return cli_usage_error("--activation expects relu or tanh, got '%s'", optarg);
            break;
        case O_CW:
            if (cli_parse_doubles("class-weight", optarg, list, DP_TRAIN_MAX_CLASSES, &n))
                return CLI_BAD_INPUT;
            a->cfg.n_class_weight = n;
            for (int i = 0; i < n; i++) {
                if (!(list[i] >= 0)) return cli_usage_error("--class-weight: weights must be >= 0");
                a->cfg.class_weight[i] = (float)list[i];
            }
            break;
        case O_OPT:
            if (dp_optimizer_parse(optarg, &a->cfg.optimizer) != DP_OK)
                return cli_usage_error("--optimizer expects sgd, momentum or adam, got '%s'",
                                       optarg);
            break;
        case O_LR:
            if (cli_parse_double("lr", optarg, 1e-12, 1e6, &a->cfg.lr)) return CLI_BAD_INPUT;
            break;
        case O_MOM:
            if (cli_parse_double("momentum", optarg, 0, 0.999999, &a->cfg.momentum))
                return CLI_BAD_INPUT;
            break;
        case O_SCHED:
            if (dp_lr_schedule_parse(optarg, &a->cfg.lr_schedule) != DP_OK)
                return cli_usage_error("--lr-schedule expects constant or cosine, got '%s'",
                                       optarg);
            break;
        case O_EPOCHS:
            if (cli_parse_long("epochs", optarg, 1, 1000000, &v)) return CLI_BAD_INPUT;
            a->cfg.epochs = (int)v;
            break;
        case O_STEPS:
            if (cli_parse_long("steps", optarg, 1, (long long)1 << 50, &v)) return CLI_BAD_INPUT;
            a->cfg.max_steps = (uint64_t)v;
            break;
        case O_BATCH:
            if (cli_parse_double("batch-size", optarg, 1e-9, 1e15, &a->cfg.batch_size))
                return CLI_BAD_INPUT;
            a->have_batch = 1;
            break;
        case O_RATE:
            if (cli_parse_double("sample-rate", optarg, 1e-15, 1, &a->cfg.sample_rate))
                return CLI_BAD_INPUT;
            if (a->cfg.sample_rate <= 0) return cli_usage_error("--sample-rate must be in (0, 1]");
            a->have_rate = 1;
            break;
        case O_CLIP:
            if (cli_parse_double("max-grad-norm", optarg, 1e-12, 1e12, &a->cfg.clip.max_grad_norm))
                return CLI_BAD_INPUT;
            a->have_clip = 1;
            break;
        case O_LAYERCLIP:
            if (cli_parse_doubles("per-layer-clip", optarg, list, DP_MLP_MAX_LAYERS, &n))
                return CLI_BAD_INPUT;
            for (int i = 0; i < n; i++) {
                if (!(list[i] > 0)) return cli_usage_error("--per-layer-clip: bounds must be > 0");
                a->cfg.clip.layer_norms[i] = list[i];
            }
            a->cfg.clip.mode = DP_CLIP_PER_LAYER;
            a->have_layer = n;
            break;
        case O_MICRO:
            if (cli_parse_long("micro-batch", optarg, 1, 1 << 24, &v)) return CLI_BAD_INPUT;
            a->cfg.micro_batch = (size_t)v;
            break;
        case O_SIGMA:
            if (cli_parse_double("noise-multiplier", optarg, 0, 1e6, &a->cfg.noise_multiplier))
                return CLI_BAD_INPUT;
            if (a->cfg.noise_multiplier > 0 && a->cfg.noise_multiplier < 1e-6)
                return cli_usage_error("--noise-multiplier must be 0 or in [1e-06, 1e+06]");
            a->cfg.zero_noise = a->cfg.noise_multiplier == 0;
            a->have_sigma = 1;
            break;
        case O_EPS:
            if (cli_parse_double("target-epsilon", optarg, 1e-6, 1e6, &a->cfg.target_epsilon))
                return CLI_BAD_INPUT;
            a->have_eps = 1;
            break;
        case O_DELTA:
            if (cli_parse_double("target-delta", optarg, 1e-300, 0.999999, &dv))
                return CLI_BAD_INPUT;
            if (!(dv > 0)) return cli_usage_error("--target-delta must be in (0, 1)");
            a->cfg.target_delta = dv;
            break;
        case O_ACC:
            if (dp_accountant_parse(optarg, &a->cfg.accountant) != DP_OK)
                return cli_usage_error("--accountant expects rdp or prv, got '%s'", optarg);
            break;
        case O_NODP:
            a->cfg.private_ = 0;
            break;
        case O_SEED:
            if (cli_parse_long("seed", optarg, 0, INT64_MAX, &v)) return CLI_BAD_INPUT;
            a->cfg.seeded = 1;
            a->cfg.seed = (uint64_t)v;
            break;
        case O_THREADS:
            if (cli_parse_long("threads", optarg, 1, 4096, &a->threads)) return CLI_BAD_INPUT;
            break;
        case O_CKEVERY:
            if (cli_parse_long("checkpoint-every", optarg, 1, (long long)1 << 50, &a->ck_every))
                return CLI_BAD_INPUT;
            break;
        case O_LOGEVERY:
            if (cli_parse_long("log-every", optarg, 1, (long long)1 << 50, &a->log_every))
                return CLI_BAD_INPUT;
            break;
        case O_RESUME:
            a->resume = 1;
            break;
        case O_FORCE:
            a->force = 1;
            break;
        case O_QUIET:
            a->quiet = 1;
            break;
        case O_DEVICE:
            a->device = optarg;
            a->pl.device = 0; /* set below, once checked */
            break;
        case O_ALLREDUCE:
            a->cfg.nccl = !strcmp(optarg, "nccl");
            if (a->cfg.nccl)
                a->cfg.allreduce = DP_ALLREDUCE_MPI; /* the few host floats beside NCCL */
            else if (dp_allreduce_parse(optarg, &a->cfg.allreduce) != DP_OK)
                return cli_usage_error(
                    "--allreduce expects mpi, naive, ring, tree or nccl, got '%s'", optarg);
            a->pl.nccl = a->cfg.nccl;
            a->pl.allreduce = (int)a->cfg.allreduce;
            break;
        case O_NOISEINLINE:
            a->cfg.noise_ahead = a->pl.noise_ahead = 0;
            break;
        case O_NOGRAPH:
            a->cfg.cuda_graph = a->pl.cuda_graph = 0;
            break;
        case O_NOISEMODE:
            if (dp_noise_mode_parse(optarg, &a->cfg.noise_mode) != DP_OK)
                return cli_usage_error("--noise-mode expects owner or shares, got '%s'", optarg);
            break;
        case O_OVERLAP:
            a->cfg.overlap = a->pl.overlap = 1;
            break;
        case O_CHECKEVERY:
            if (cli_parse_long("check-every", optarg, 0, (long long)1 << 50, &v))
                return CLI_BAD_INPUT;
            a->cfg.check_every = (uint64_t)v;
            a->pl.check_every = v;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error(optind >= argc ? "expected one DATASET directory"
                                              : "expected one DATASET directory, got also '%s'",
                               argv[optind + 1 < argc ? optind + 1 : 0]);
    a->dataset = argv[optind];
    if (!a->run) return cli_usage_error("-o RUN is required");
    if (cli_parse_device(a->device, &a->cfg.device)) return CLI_BAD_INPUT;
    if (a->pl.device >= 0) a->pl.device = (int)a->cfg.device;
    /* on --resume the device may come from the checkpoint: the trainer
     * checks the combination */
    if (!a->resume && a->cfg.nccl && a->cfg.device != DP_DEVICE_CUDA)
        return cli_usage_error("--allreduce nccl sums gradients between GPUs: it needs --device "
                               "cuda (on the cpu use mpi, naive, ring or tree)");
    if (!a->resume && a->cfg.device == DP_DEVICE_CUDA && a->cfg.overlap)
        return cli_usage_error("--overlap is for --device cpu (on cuda the gradient is summed "
                               "once, on the device)");
    /* Before anything is created: a build without the backend, or a machine
     * without a GPU, is one line and no run directory. */
    if (cli_device_ready(a->cfg.device)) return CLI_BAD_INPUT;
    if (a->resume && a->force) return cli_usage_error("--resume and --force exclude each other");
    if (a->have_batch && a->have_rate)
        return cli_usage_error("give --batch-size or --sample-rate, not both");
    if (a->have_layer && a->have_clip)
        return cli_usage_error("give --max-grad-norm or --per-layer-clip, not both");
    if (a->have_layer && a->have_layer != a->cfg.n_hidden + 1)
        return cli_usage_error("--per-layer-clip needs %d bounds (one per Linear layer), got %d",
                               a->cfg.n_hidden + 1, a->have_layer);
    if (!a->cfg.private_ && (a->have_sigma || a->have_eps || a->have_layer || a->have_clip))
        return cli_usage_error("--no-dp trains without privacy: drop --noise-multiplier, "
                               "--target-epsilon and the clipping options");
    if (a->cfg.zero_noise && a->have_eps)
        return cli_usage_error("--noise-multiplier 0 adds no noise: it excludes --target-epsilon");
    if (a->cfg.private_ && !a->have_sigma && !a->have_eps && !a->resume)
        return cli_usage_error("private training needs --target-epsilon E (sigma is then "
                               "calibrated) or --noise-multiplier S; --no-dp for a baseline");
    return CLI_OK;
}

/* Threads per rank when --threads is not given: all cores for one process;
 * under mpirun the cores divided among the ranks of this node, so that R
 * ranks never run more compute threads than there are cores (the noise
 * thread comes on top: it mostly sleeps). OMP_NUM_THREADS wins when set. */
static void default_threads(int ranks) {
    if (ranks <= 1 || getenv("OMP_NUM_THREADS")) return;
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long local = ls ? strtol(ls, NULL, 10) : ranks;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(local > 0 && cores > local ? cores / local : 1);
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    openblas_set_num_threads(t);
}

/* Open this rank's shard of the train split: the rows dp_comm_shard gives it
 * (N from meta.json first: opening an empty range maps nothing). */
static dp_status open_shard(const char *dataset, int rank, int ranks, dp_dataset **out) {
    *out = NULL;
    if (ranks <= 1) return dp_dataset_open(dataset, "train", 0, SIZE_MAX, out);
    dp_dataset *meta;
    dp_status st = dp_dataset_open(dataset, "train", 0, 0, &meta);
    if (st != DP_OK) return st;
    size_t n = dp_dataset_rows_total(meta), b, e;
    dp_dataset_close(meta);
    st = dp_comm_shard(n, ranks, rank, &b, &e);
    return st == DP_OK ? dp_dataset_open(dataset, "train", b, e, out) : st;
}

/* A failure that every rank shares: printed once (rank 0). */
static int fail_together(dp_status st, int rank) {
    if (rank == 0) return cli_fail(st);
    return cli_exit_code(st);
}

/* A failure of this rank alone while the others may be inside a collective:
 * print it and end the whole job (MPI_Abort; returns on one rank). */
static int fail_alone(dp_comm *comm, dp_status st) {
    int rc = cli_fail(st);
    if (dp_comm_size(comm) > 1) dp_comm_abort(comm, rc);
    return rc;
}

static int train(dp_comm *comm, train_args *a, int argc, char **argv) {
    const int rank = dp_comm_rank(comm), ranks = dp_comm_size(comm);
    const char *run = a->run;
    if (a->threads) {
#ifdef _OPENMP
        omp_set_num_threads((int)a->threads);
#endif
        openblas_set_num_threads((int)a->threads);
    } else {
        default_threads(ranks);
    }

    /* The run directory (rank 0, which prints why it refuses): never clobber
     * an earlier run by accident. The other ranks learn the outcome from the
     * agreement and exit silently. */
    int created = 0, started = 0, rc = CLI_OK;
    char *ck_path = join(run, CHECKPOINT);
    dp_status st = DP_OK;
    if (rank == 0) {
        int exists = path_exists(run);
        if (a->resume) {
            if (access(ck_path, F_OK)) {
                cli_error("%s: no checkpoint to resume from (expected %s)", run, ck_path);
                st = DP_E_USAGE;
            }
        } else if (exists && !a->force) {
            cli_error("%s exists: give another -o, --force to overwrite it, or --resume to "
                      "continue it",
                      run);
            st = DP_E_EXISTS;
        } else if (!exists) {
            if (mkdir(run, 0755)) {
                cli_error("%s: cannot create the run directory: %s", run, strerror(errno));
                st = DP_E_IO;
            } else {
                created = 1;
            }
        }
    }
    if ((st = dp_comm_agree(comm, st, NULL)) != DP_OK) {
        free(ck_path);
        return cli_exit_code(st);
    }

    dp_dataset *ds = NULL, *val = NULL;
    dp_trainer *t = NULL;
    run_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.rank = rank;
    st = dp_comm_agree(comm, open_shard(a->dataset, rank, ranks, &ds), NULL);
    if (st != DP_OK) goto fail;
    /* Validation metrics are rank 0's (it alone logs them). */
    if (rank == 0 && dp_dataset_open(a->dataset, "val", 0, SIZE_MAX, &val) == DP_OK &&
        (dp_dataset_rows(val) == 0 || dp_dataset_classes(val) > DP_EVAL_MAX_CLASSES)) {
        dp_dataset_close(val);
        val = NULL;
    }
    if (a->resume) {
        st = dp_trainer_resume_placed(ds, ck_path, comm, &a->pl, &t);
        if (st == DP_OK)
            cli_note("resuming %s at step %llu of %llu on %s (saved configuration; options other "
                     "than --device, --allreduce, --overlap, --check-every, --noise-inline, "
                     "--no-cuda-graph, --threads and --quiet are ignored)",
                     run, (unsigned long long)dp_trainer_steps_done(t),
                     (unsigned long long)MIND(dp_trainer_plan(t)->steps,
                                              dp_trainer_plan(t)->budget_steps),
                     dp_trainer_config(t)->device == DP_DEVICE_CUDA ? "cuda" : "cpu");
    } else {
        /* an old checkpoint must never be resumed into this run */
        if (a->force && rank == 0) unlink(ck_path);
        st = dp_trainer_create_dist(ds, &a->cfg, comm, &t);
    }
    if (st != DP_OK) goto fail;
    const dp_train_config *tc = dp_trainer_config(t);
    const dp_train_plan *plan = dp_trainer_plan(t);
    const int priv = tc->private_ && !tc->zero_noise;
    if (rank == 0) {
        if (ranks > 1)
            cli_note(
                "%d ranks, %zu rows each on average, allreduce %s, noise %s%s", ranks,
                plan->n_total / (size_t)ranks, tc->nccl ? "nccl" : dp_allreduce_name(tc->allreduce),
                dp_noise_mode_name(tc->noise_mode), tc->overlap ? ", overlapped per layer" : "");
        if (!a->resume) {
            if (priv && !a->have_sigma)
                cli_note("noise multiplier %.4g calibrated for epsilon %g at delta %g over %llu "
                         "steps (sample rate %.4g%s)",
                         plan->noise_multiplier, tc->target_epsilon, tc->target_delta,
                         (unsigned long long)plan->steps, plan->sample_rate,
                         plan->n_prior ? ", composed with the dataset's earlier releases" : "");
            if (priv && tc->target_delta >= 1.0 / (double)plan->n_total)
                cli_warn("--target-delta %g is not below 1/N = %g: the guarantee is weak",
                         tc->target_delta, 1.0 / (double)plan->n_total);
            if (priv && plan->budget_steps < plan->steps)
                cli_warn("the budget epsilon %g allows %llu of the %llu planned steps: training "
                         "will stop early",
                         tc->target_epsilon, (unsigned long long)plan->budget_steps,
                         (unsigned long long)plan->steps);
            if (!tc->private_)
                cli_warn("--no-dp: this model is NOT private (no clipping, no noise)");
            if (tc->zero_noise)
                cli_warn("--noise-multiplier 0: clipped but no noise; this model is NOT private");
            char *cl = command_line(argc, argv);
            st = write_text(run, "command.txt", cl, 0);
            free(cl);
            if (st == DP_OK) st = write_text(run, "dataset_meta.json", dp_dataset_meta_json(ds), 0);
        } else {
            char *cl = command_line(argc, argv);
            write_text(run, "command.txt", cl, 1);
            free(cl);
        }
        char *mpath = join(run, "metrics.jsonl");
        if (st == DP_OK && a->resume)
            st = dp_metrics_truncate_after(mpath, dp_trainer_steps_done(t));
        if (st == DP_OK) st = dp_metrics_open(mpath, !a->resume, &ctx.metrics);
        free(mpath);
    }
    if ((st = dp_comm_agree(comm, st, NULL)) != DP_OK) goto fail;

    uint64_t total = MIND(plan->steps, plan->budget_steps);
    ctx.run = run;
    ctx.ck_every = a->ck_every ? (uint64_t)a->ck_every : plan->steps_per_epoch;
    ctx.log_every = a->log_every ? (uint64_t)a->log_every
                                 : (plan->steps_per_epoch >= 10 ? plan->steps_per_epoch / 10 : 1);
    ctx.epochs_total = (total + plan->steps_per_epoch - 1) / plan->steps_per_epoch;
    ctx.t0 = progress_now();
    ctx.step0 = dp_trainer_steps_done(t);
    ctx.eps = NAN;
    ctx.val = val;
    if (val)
        ctx.val_P = malloc(dp_dataset_rows(val) * (size_t)dp_dataset_classes(val) * sizeof(float));
    const char *env = getenv("DPSGD_TEST_KILL_AFTER_STEP");
    if (env) ctx.kill_after = strtoull(env, NULL, 10);
    env = getenv("DPSGD_TEST_KILL_RANK");
    ctx.kill_rank_any = !env;
    if (env) ctx.kill_rank = strtoull(env, NULL, 10);
    env = getenv("DPSGD_TEST_CORRUPT");
    if (env && sscanf(env, "%d:%" SCNu64, &ctx.corrupt_rank, &ctx.corrupt_step) != 2)
        ctx.corrupt_step = 0;
    progress_init(&ctx.prog, stderr, a->quiet || rank != 0, dp_trainer_steps_done(t));
    started = 1;

    st = dp_trainer_run(t, on_step, &ctx);
    progress_break(&ctx.prog);
    if (st == DP_OK && ctx.err != DP_OK) {
        /* rank 0 could not write its outputs; the others are stepping on */
        rc = fail_alone(comm, ctx.err);
        goto done;
    }
    if (st != DP_OK) {
        if (!dp_trainer_failed_together(t)) {
            rc = fail_alone(comm, st);
            goto done;
        }
        goto fail;
    }
    {
        uint64_t ex = ctx.examples; /* already summed over the ranks by the steps */
        if (rank == 0) {
            st = dp_trainer_save(t, ck_path);
            if (st == DP_OK) st = write_model(run, t, ds);
            if (st == DP_OK) st = write_privacy(run, t, ds, ranks);
        }
        if ((st = dp_comm_agree(comm, st, NULL)) != DP_OK) goto fail;
        double eps = INFINITY;
        dp_trainer_epsilon(t, &eps);
        dp_train_timings tm;
        dp_trainer_timings(t, &tm);
        /* this process's speed; a resumed run that was already complete ran no step */
        char speed[64];
        if (tm.steps)
            snprintf(speed, sizeof speed, "%.0f examples/s",
                     tm.total > 0 ? (double)ex / tm.total : 0.0);
        else
            snprintf(speed, sizeof speed, "no step left to run");
        const char *why = dp_trainer_stop_reason(t) == DP_STOP_BUDGET ? " (stopped: the next step "
                                                                        "would exceed the budget)"
                                                                      : "";
        if (priv)
            cli_note("trained %llu steps%s: epsilon %.4g at delta %g (%s accountant), noise "
                     "multiplier %.4g, clip %.4g; %s; wrote %s",
                     (unsigned long long)dp_trainer_steps_done(t), why, eps, tc->target_delta,
                     dp_accountant_name(tc->accountant), plan->noise_multiplier, plan->sensitivity,
                     speed, run);
        else if (tc->zero_noise)
            cli_note("trained %llu steps WITHOUT noise (--noise-multiplier 0: clipped, NOT "
                     "private); %s; wrote %s",
                     (unsigned long long)dp_trainer_steps_done(t), speed, run);
        else
            cli_note("trained %llu steps WITHOUT privacy (--no-dp); %s; wrote %s",
                     (unsigned long long)dp_trainer_steps_done(t), speed, run);
    }
    goto done;
fail:
    /* every rank is here with the same (agreed) status */
    progress_break(&ctx.prog);
    rc = fail_together(st, rank);
    if (created && !started) remove_run(run);
done:
    dp_metrics_close(ctx.metrics);
    free(ctx.val_P);
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    dp_dataset_close(val);
    free(ck_path);
    return rc;
}

int cmd_train(int argc, char **argv) {
    /* The communicator first: MPI is started only under a launcher, and each
     * rank must know its rank before it prints anything. */
    dp_comm *comm = NULL;
    dp_status st = dp_comm_open(&comm);
    if (st != DP_OK) return cli_fail(st);
    const int rank = dp_comm_rank(comm);
    cli_set_rank(rank, dp_comm_size(comm));
    train_args a;
    int fds[2] = {-1, -1};
    if (rank != 0) cli_mute(1, fds);
    int rc = parse(argc, argv, &a);
    if (rank != 0) cli_mute(0, fds);
    if (rc == CLI_OK && !a.help) rc = train(comm, &a, argc, argv);
    dp_comm_close(comm);
    return rc;
}
