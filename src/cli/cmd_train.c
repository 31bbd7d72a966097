/*
 * cmd_train.c: `dpsgd train DATASET -o RUN`: parse the options into a
 * dp_train_config, create (or --resume) a trainer, run it with a callback
 * that draws progress, logs metrics.jsonl and writes checkpoints, then write
 * the run directory: model.safetensors, privacy.json, metrics.jsonl,
 * command.txt, dataset_meta.json, checkpoint.ckpt (all through atomic writes).
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
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
    O_NOISEINLINE
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
     "noise std / clip bound (sigma); else calibrated from --target-epsilon"},
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
    {"allreduce", O_ALLREDUCE, "mpi|naive|ring|tree",
     "allreduce algorithm across ranks (default mpi)"},
    {"noise-inline", O_NOISEINLINE, NULL,
     "draw noise on the step's thread (default: a thread draws it ahead)"},
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

static int on_step(dp_trainer *t, const dp_step_info *in, void *ud) {
    run_ctx *c = ud;
    const dp_train_plan *p = dp_trainer_plan(t);
    if (in->batch) {
        c->loss_sum_epoch += in->loss * (double)in->batch;
        c->loss_n_epoch += in->batch;
    }
    dp_train_timings tm;
    dp_trainer_timings(t, &tm);
    double rate = tm.total > 0 ? (double)tm.examples / tm.total : 0;
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
    /* Test hook: die like kill -9 right after step k (and its checkpoint). */
    if (c->kill_after && in->step == c->kill_after) raise(SIGKILL);
    return 0;
}

static int path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* privacy.json: what was released and what it cost. */
static dp_status write_privacy(const char *run, dp_trainer *t, const dp_dataset *ds) {
    const dp_train_config *cfg = dp_trainer_config(t);
    const dp_train_plan *p = dp_trainer_plan(t);
    cJSON *o = cJSON_CreateObject();
    double eps = INFINITY;
    dp_trainer_epsilon(t, &eps);
    cJSON_AddBoolToObject(o, "private", cfg->private_);
    if (cfg->private_)
        cJSON_AddNumberToObject(o, "epsilon", eps);
    else
        cJSON_AddNullToObject(o, "epsilon");
    cJSON_AddNumberToObject(o, "delta", cfg->private_ ? cfg->target_delta : 0);
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
    const char *why = dp_trainer_steps_done(t) >= p->steps ? "done"
                      : cfg->private_ && dp_trainer_steps_done(t) >= p->budget_steps
                          ? "budget"
                          : "interrupted";
    cJSON_AddStringToObject(o, "stopped", why);
    if (cfg->private_) {
        char *lj = NULL;
        if (dp_ledger_to_json(dp_trainer_ledger(t), &lj) == DP_OK) {
            cJSON_AddItemToObject(o, "ledger", cJSON_Parse(lj));
            dp_ledger_free_string(lj);
        }
    }
    cJSON *np = cJSON_AddArrayToObject(o, "not_private");
    if (!cfg->private_)
        cJSON_AddItemToArray(np, cJSON_CreateString("model.safetensors: trained with --no-dp"));
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
    if (cfg->private_)
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

int cmd_train(int argc, char **argv) {
    dp_train_config cfg;
    dp_train_config_default(&cfg);
    const char *run = NULL, *device = "cpu", *allreduce = "mpi";
    int resume = 0, force = 0, quiet = 0, have_sigma = 0, have_batch = 0, have_rate = 0;
    int have_clip = 0, have_layer = 0, have_eps = 0;
    long long threads = 0, ck_every = 0, log_every = 0, v;
    double dv, list[DP_TRAIN_MAX_CLASSES];
    long long lv[DP_MLP_MAX_LAYERS];
    int n;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    int c;
    while ((c = cli_next(&p)) != -1) {
        switch (c) {
        case CLI_HELP:
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case 'o':
            run = optarg;
            break;
        case O_HIDDEN:
            if (!strcmp(optarg, "0") || !strcmp(optarg, "")) {
                cfg.n_hidden = 0;
                break;
            }
            if (cli_parse_longs("hidden", optarg, 1, 1 << 20, lv, DP_MLP_MAX_LAYERS - 1, &n))
                return CLI_BAD_INPUT;
            cfg.n_hidden = n;
            for (int i = 0; i < n; i++)
                cfg.hidden[i] = (int)lv[i];
            break;
        case O_ACT:
            if (!strcmp(optarg, "relu"))
                cfg.activation = DP_ACT_RELU;
            else if (!strcmp(optarg, "tanh"))
                cfg.activation = DP_ACT_TANH;
            else
                return cli_usage_error("--activation expects relu or tanh, got '%s'", optarg);
            break;
        case O_CW:
            if (cli_parse_doubles("class-weight", optarg, list, DP_TRAIN_MAX_CLASSES, &n))
                return CLI_BAD_INPUT;
            cfg.n_class_weight = n;
            for (int i = 0; i < n; i++) {
                if (!(list[i] >= 0)) return cli_usage_error("--class-weight: weights must be >= 0");
                cfg.class_weight[i] = (float)list[i];
            }
            break;
        case O_OPT:
            if (dp_optimizer_parse(optarg, &cfg.optimizer) != DP_OK)
                return cli_usage_error("--optimizer expects sgd, momentum or adam, got '%s'",
                                       optarg);
            break;
        case O_LR:
            if (cli_parse_double("lr", optarg, 1e-12, 1e6, &cfg.lr)) return CLI_BAD_INPUT;
            break;
        case O_MOM:
            if (cli_parse_double("momentum", optarg, 0, 0.999999, &cfg.momentum))
                return CLI_BAD_INPUT;
            break;
        case O_SCHED:
            if (dp_lr_schedule_parse(optarg, &cfg.lr_schedule) != DP_OK)
                return cli_usage_error("--lr-schedule expects constant or cosine, got '%s'",
                                       optarg);
            break;
        case O_EPOCHS:
            if (cli_parse_long("epochs", optarg, 1, 1000000, &v)) return CLI_BAD_INPUT;
            cfg.epochs = (int)v;
            break;
        case O_STEPS:
            if (cli_parse_long("steps", optarg, 1, (long long)1 << 50, &v)) return CLI_BAD_INPUT;
            cfg.max_steps = (uint64_t)v;
            break;
        case O_BATCH:
            if (cli_parse_double("batch-size", optarg, 1e-9, 1e15, &cfg.batch_size))
                return CLI_BAD_INPUT;
            have_batch = 1;
            break;
        case O_RATE:
            if (cli_parse_double("sample-rate", optarg, 1e-15, 1, &cfg.sample_rate))
                return CLI_BAD_INPUT;
            if (cfg.sample_rate <= 0) return cli_usage_error("--sample-rate must be in (0, 1]");
            have_rate = 1;
            break;
        case O_CLIP:
            if (cli_parse_double("max-grad-norm", optarg, 1e-12, 1e12, &cfg.clip.max_grad_norm))
                return CLI_BAD_INPUT;
            have_clip = 1;
            break;
        case O_LAYERCLIP:
            if (cli_parse_doubles("per-layer-clip", optarg, list, DP_MLP_MAX_LAYERS, &n))
                return CLI_BAD_INPUT;
            for (int i = 0; i < n; i++) {
                if (!(list[i] > 0)) return cli_usage_error("--per-layer-clip: bounds must be > 0");
                cfg.clip.layer_norms[i] = list[i];
            }
            cfg.clip.mode = DP_CLIP_PER_LAYER;
            have_layer = n;
            break;
        case O_MICRO:
            if (cli_parse_long("micro-batch", optarg, 1, 1 << 24, &v)) return CLI_BAD_INPUT;
            cfg.micro_batch = (size_t)v;
            break;
        case O_SIGMA:
            if (cli_parse_double("noise-multiplier", optarg, 1e-6, 1e6, &cfg.noise_multiplier))
                return CLI_BAD_INPUT;
            have_sigma = 1;
            break;
        case O_EPS:
            if (cli_parse_double("target-epsilon", optarg, 1e-6, 1e6, &cfg.target_epsilon))
                return CLI_BAD_INPUT;
            have_eps = 1;
            break;
        case O_DELTA:
            if (cli_parse_double("target-delta", optarg, 1e-300, 0.999999, &dv))
                return CLI_BAD_INPUT;
            if (!(dv > 0)) return cli_usage_error("--target-delta must be in (0, 1)");
            cfg.target_delta = dv;
            break;
        case O_ACC:
            if (dp_accountant_parse(optarg, &cfg.accountant) != DP_OK)
                return cli_usage_error("--accountant expects rdp or prv, got '%s'", optarg);
            break;
        case O_NODP:
            cfg.private_ = 0;
            break;
        case O_SEED:
            if (cli_parse_long("seed", optarg, 0, INT64_MAX, &v)) return CLI_BAD_INPUT;
            cfg.seeded = 1;
            cfg.seed = (uint64_t)v;
            break;
        case O_THREADS:
            if (cli_parse_long("threads", optarg, 1, 4096, &threads)) return CLI_BAD_INPUT;
            break;
        case O_CKEVERY:
            if (cli_parse_long("checkpoint-every", optarg, 1, (long long)1 << 50, &ck_every))
                return CLI_BAD_INPUT;
            break;
        case O_LOGEVERY:
            if (cli_parse_long("log-every", optarg, 1, (long long)1 << 50, &log_every))
                return CLI_BAD_INPUT;
            break;
        case O_RESUME:
            resume = 1;
            break;
        case O_FORCE:
            force = 1;
            break;
        case O_QUIET:
            quiet = 1;
            break;
        case O_DEVICE:
            device = optarg;
            break;
        case O_ALLREDUCE:
            allreduce = optarg;
            break;
        case O_NOISEINLINE:
            cfg.noise_ahead = 0;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error(optind >= argc ? "expected one DATASET directory"
                                              : "expected one DATASET directory, got also '%s'",
                               argv[optind + 1 < argc ? optind + 1 : 0]);
    const char *dataset = argv[optind];
    if (!run) return cli_usage_error("-o RUN is required");
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return cli_usage_error("--device expects cpu or cuda, got '%s'", device);
    if (!strcmp(device, "cuda")) {
        cli_error("--device cuda: this build has no CUDA backend (train with --device cpu)");
        return CLI_BAD_INPUT;
    }
    if (strcmp(allreduce, "mpi") && strcmp(allreduce, "naive") && strcmp(allreduce, "ring") &&
        strcmp(allreduce, "tree"))
        return cli_usage_error("--allreduce expects mpi, naive, ring or tree, got '%s'", allreduce);
    if (resume && force) return cli_usage_error("--resume and --force exclude each other");
    if (have_batch && have_rate)
        return cli_usage_error("give --batch-size or --sample-rate, not both");
    if (have_layer && have_clip)
        return cli_usage_error("give --max-grad-norm or --per-layer-clip, not both");
    if (have_layer && have_layer != cfg.n_hidden + 1)
        return cli_usage_error("--per-layer-clip needs %d bounds (one per Linear layer), got %d",
                               cfg.n_hidden + 1, have_layer);
    if (!cfg.private_ && (have_sigma || have_eps || have_layer || have_clip))
        return cli_usage_error("--no-dp trains without privacy: drop --noise-multiplier, "
                               "--target-epsilon and the clipping options");
    if (cfg.private_ && !have_sigma && !have_eps && !resume)
        return cli_usage_error("private training needs --target-epsilon E (sigma is then "
                               "calibrated) or --noise-multiplier S; --no-dp for a baseline");
    if (threads) {
#ifdef _OPENMP
        omp_set_num_threads((int)threads);
#endif
        openblas_set_num_threads((int)threads);
    }

    /* The run directory: never clobber an earlier run by accident. */
    int exists = path_exists(run), created = 0, started = 0;
    char *ck_path = join(run, CHECKPOINT);
    if (resume) {
        if (access(ck_path, F_OK)) {
            cli_error("%s: no checkpoint to resume from (expected %s)", run, ck_path);
            free(ck_path);
            return CLI_BAD_INPUT;
        }
    } else if (exists && !force) {
        cli_error("%s exists: give another -o, --force to overwrite it, or --resume to continue it",
                  run);
        free(ck_path);
        return CLI_BAD_INPUT;
    } else if (!exists) {
        if (mkdir(run, 0755)) {
            cli_error("%s: cannot create the run directory: %s", run, strerror(errno));
            free(ck_path);
            return CLI_BAD_INPUT;
        }
        created = 1;
    }

    dp_dataset *ds = NULL, *val = NULL;
    dp_trainer *t = NULL;
    run_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = CLI_OK;
    dp_status st = dp_dataset_open(dataset, "train", 0, SIZE_MAX, &ds);
    if (st != DP_OK) goto fail;
    if (dp_dataset_open(dataset, "val", 0, SIZE_MAX, &val) == DP_OK && dp_dataset_rows(val) == 0) {
        dp_dataset_close(val);
        val = NULL;
    }
    if (val && dp_dataset_classes(val) > DP_EVAL_MAX_CLASSES) {
        dp_dataset_close(val);
        val = NULL;
    }
    if (resume) {
        st = dp_trainer_resume(ds, ck_path, &t);
        if (st == DP_OK) {
            cli_note("resuming %s at step %llu of %llu (saved configuration; options other than "
                     "--threads and --quiet are ignored)",
                     run, (unsigned long long)dp_trainer_steps_done(t),
                     (unsigned long long)MIND(dp_trainer_plan(t)->steps,
                                              dp_trainer_plan(t)->budget_steps));
        }
    } else {
        if (force) unlink(ck_path); /* an old checkpoint must never be resumed into this run */
        st = dp_trainer_create(ds, &cfg, &t);
    }
    if (st != DP_OK) goto fail;
    const dp_train_config *tc = dp_trainer_config(t);
    const dp_train_plan *plan = dp_trainer_plan(t);
    if (!resume) {
        if (tc->private_ && !have_sigma)
            cli_note("noise multiplier %.4g calibrated for epsilon %g at delta %g over %llu steps "
                     "(sample rate %.4g%s)",
                     plan->noise_multiplier, tc->target_epsilon, tc->target_delta,
                     (unsigned long long)plan->steps, plan->sample_rate,
                     plan->n_prior ? ", composed with the dataset's earlier releases" : "");
        if (tc->private_ && tc->target_delta >= 1.0 / (double)plan->n_total)
            cli_warn("--target-delta %g is not below 1/N = %g: the guarantee is weak",
                     tc->target_delta, 1.0 / (double)plan->n_total);
        if (tc->private_ && plan->budget_steps < plan->steps)
            cli_warn("the budget epsilon %g allows %llu of the %llu planned steps: training will "
                     "stop early",
                     tc->target_epsilon, (unsigned long long)plan->budget_steps,
                     (unsigned long long)plan->steps);
        if (!tc->private_) cli_warn("--no-dp: this model is NOT private (no clipping, no noise)");
        char *cl = command_line(argc, argv);
        st = write_text(run, "command.txt", cl, 0);
        free(cl);
        if (st == DP_OK) st = write_text(run, "dataset_meta.json", dp_dataset_meta_json(ds), 0);
        if (st != DP_OK) goto fail;
    } else {
        char *cl = command_line(argc, argv);
        write_text(run, "command.txt", cl, 1);
        free(cl);
    }
    char *mpath = join(run, "metrics.jsonl");
    if (resume) st = dp_metrics_truncate_after(mpath, dp_trainer_steps_done(t));
    if (st == DP_OK) st = dp_metrics_open(mpath, !resume, &ctx.metrics);
    free(mpath);
    if (st != DP_OK) goto fail;

    uint64_t total = MIND(plan->steps, plan->budget_steps);
    ctx.run = run;
    ctx.ck_every = ck_every ? (uint64_t)ck_every : plan->steps_per_epoch;
    ctx.log_every = log_every ? (uint64_t)log_every
                              : (plan->steps_per_epoch >= 10 ? plan->steps_per_epoch / 10 : 1);
    ctx.epochs_total = (total + plan->steps_per_epoch - 1) / plan->steps_per_epoch;
    ctx.t0 = progress_now();
    ctx.step0 = dp_trainer_steps_done(t);
    ctx.eps = NAN;
    ctx.val = val;
    if (val)
        ctx.val_P = malloc(dp_dataset_rows(val) * (size_t)dp_dataset_classes(val) * sizeof(float));
    const char *kill = getenv("DPSGD_TEST_KILL_AFTER_STEP");
    if (kill) ctx.kill_after = strtoull(kill, NULL, 10);
    progress_init(&ctx.prog, stderr, quiet, dp_trainer_steps_done(t));
    started = 1;

    st = dp_trainer_run(t, on_step, &ctx);
    progress_break(&ctx.prog);
    if (st == DP_OK && ctx.err != DP_OK) st = ctx.err;
    if (st != DP_OK) goto fail;
    st = dp_trainer_save(t, ck_path);
    if (st == DP_OK) st = write_model(run, t, ds);
    if (st == DP_OK) st = write_privacy(run, t, ds);
    if (st != DP_OK) goto fail;
    {
        double eps = INFINITY;
        dp_trainer_epsilon(t, &eps);
        dp_train_timings tm;
        dp_trainer_timings(t, &tm);
        const char *why = dp_trainer_stop_reason(t) == DP_STOP_BUDGET ? " (stopped: the next step "
                                                                        "would exceed the budget)"
                                                                      : "";
        if (tc->private_)
            cli_note("trained %llu steps%s: epsilon %.4g at delta %g (%s accountant), noise "
                     "multiplier %.4g, clip %.4g; %.0f examples/s; wrote %s",
                     (unsigned long long)dp_trainer_steps_done(t), why, eps, tc->target_delta,
                     dp_accountant_name(tc->accountant), plan->noise_multiplier, plan->sensitivity,
                     tm.total > 0 ? (double)tm.examples / tm.total : 0.0, run);
        else
            cli_note("trained %llu steps WITHOUT privacy (--no-dp); %.0f examples/s; wrote %s",
                     (unsigned long long)dp_trainer_steps_done(t),
                     tm.total > 0 ? (double)tm.examples / tm.total : 0.0, run);
    }
    goto done;
fail:
    progress_break(&ctx.prog);
    rc = cli_fail(st);
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
