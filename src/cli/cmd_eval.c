/*
 * cmd_eval.c: `dpsgd eval RUN DATASET [--split test] [--json]`: the model of
 * a run on a dataset split: accuracy, balanced accuracy, precision, recall,
 * F1, ROC-AUC, PR-AUC, confusion matrix, beside the majority-class baseline,
 * and the same per group of SEX and RAC1P where the dataset has their
 * one-hot columns (DP-SGD is known to cost minorities more accuracy:
 * Bagdasaryan et al. 2019). Refuses a dataset of another schema.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "dpsgd/eval.h"
#include "dpsgd/model.h"
#include "dpsgd/train.h"

enum { O_SPLIT = 256, O_JSON, O_DEVICE, O_THRESHOLD };

static const cli_opt opts[] = {
    {"split", O_SPLIT, "NAME", "split to evaluate: train, val or test (default test)"},
    {"json", O_JSON, NULL, "print one JSON object instead of tables"},
    {"device", O_DEVICE, "cpu|cuda", "where to predict (default cpu)"},
    {"threshold", O_THRESHOLD, "T",
     "two classes: predict class 1 when its probability is >= T (default: the larger "
     "probability); choose T in advance, e.g. near the known prevalence"},
    {0},
};

static const cli_cmd cmd = {
    "eval",
    "RUN DATASET [--split test] [--json]",
    "Evaluate the model of RUN on a split of DATASET (same schema), beside the majority-class\n"
    "baseline, overall and per group of SEX and RAC1P.",
    "dpsgd eval runs/eps1 data/pums --split test",
    opts,
};

static const char *group_vars[] = {"SEX", "RAC1P"};
#define MAX_GROUPS 32

typedef struct group_result {
    dp_eval_group g;
    dp_eval_metrics m, base;
} group_result;

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *metrics_json(const dp_eval_metrics *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)m->n);
    add_num(o, "accuracy", m->accuracy);
    add_num(o, "balanced_accuracy", m->balanced_accuracy);
    add_num(o, "precision", m->precision);
    add_num(o, "recall", m->recall);
    add_num(o, "f1", m->f1);
    add_num(o, "roc_auc", m->roc_auc);
    add_num(o, "pr_auc", m->pr_auc);
    add_num(o, "log_loss", m->log_loss);
    cJSON *c = cJSON_AddArrayToObject(o, "confusion");
    for (int t = 0; t < m->k; t++) {
        cJSON *row = cJSON_CreateArray();
        for (int p = 0; p < m->k; p++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[t * m->k + p]));
        cJSON_AddItemToArray(c, row);
    }
    return o;
}

static void fmt(char *buf, size_t n, double v) {
    if (isfinite(v))
        snprintf(buf, n, "%.4f", v);
    else
        snprintf(buf, n, "-");
}

static void print_table(const dp_eval_metrics *m, const dp_eval_metrics *b) {
    const char *names[] = {"accuracy", "balanced accuracy", "precision", "recall",
                           "F1",       "ROC-AUC",           "PR-AUC",    "log loss"};
    double mv[] = {m->accuracy, m->balanced_accuracy, m->precision, m->recall,
                   m->f1,       m->roc_auc,           m->pr_auc,    m->log_loss};
    double bv[] = {b->accuracy, b->balanced_accuracy, b->precision, b->recall,
                   b->f1,       b->roc_auc,           b->pr_auc,    b->log_loss};
    printf("  %-20s %10s %10s\n", "metric", "model", "baseline");
    for (int i = 0; i < 8; i++) {
        char a[32], c[32];
        fmt(a, sizeof a, mv[i]);
        fmt(c, sizeof c, bv[i]);
        printf("  %-20s %10s %10s\n", names[i], a, c);
    }
    if (isnan(m->threshold))
        printf("\n  confusion matrix (rows: true class, columns: predicted: the most probable)\n"
               "  %8s",
               "");
    else
        printf("\n  confusion matrix (rows: true class, columns: predicted: 1 when p(1) >= %g)\n"
               "  %8s",
               m->threshold, "");
    for (int p = 0; p < m->k; p++)
        printf(" %10s%d", "pred ", p);
    printf("\n");
    for (int t = 0; t < m->k; t++) {
        printf("  true %-3d", t);
        for (int p = 0; p < m->k; p++)
            printf(" %11llu", (unsigned long long)m->confusion[t * m->k + p]);
        printf("\n");
    }
}

int cmd_eval(int argc, char **argv) {
    const char *device = "cpu";
    const char *split = "test";
    int json = 0;
    double threshold = NAN;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    int c;
    while ((c = cli_next(&p)) != -1) {
        switch (c) {
        case CLI_HELP:
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case O_SPLIT:
            split = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case O_DEVICE:
            device = optarg;
            break;
        case O_THRESHOLD:
            if (cli_parse_probability("threshold", optarg, &threshold)) return CLI_BAD_INPUT;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("expected RUN and DATASET");
    const char *run = argv[optind], *dataset = argv[optind + 1];
    if (strcmp(split, "train") && strcmp(split, "val") && strcmp(split, "test"))
        return cli_usage_error("--split expects train, val or test, got '%s'", split);
    dp_device_kind dev;
    if (cli_parse_device(device, &dev) || cli_device_ready(dev)) return CLI_BAD_INPUT;

    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", run);
    dp_model *model = NULL;
    dp_dataset *ds = NULL, *train = NULL;
    float *P = NULL;
    uint8_t *mask = NULL;
    int rc = CLI_OK;
    dp_status st = dp_model_load(path, 1024, &model);
    if (st != DP_OK) return cli_fail(st);
    st = dp_dataset_open(dataset, split, 0, SIZE_MAX, &ds);
    if (st != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    if (strcmp(dp_model_schema_hash(model), dp_dataset_schema_hash(ds)) ||
        dp_model_n_features(model) != dp_dataset_cols(ds)) {
        cli_error("%s was trained on data of schema %.16s (%zu features); %s has schema %.16s "
                  "(%zu features): evaluate it on data prepared the same way",
                  path, dp_model_schema_hash(model), dp_model_n_features(model), dataset,
                  dp_dataset_schema_hash(ds), dp_dataset_cols(ds));
        rc = CLI_BAD_INPUT;
        goto done;
    }
    size_t n = dp_dataset_rows(ds), d = dp_dataset_cols(ds);
    int k = dp_dataset_classes(ds);
    if (k != dp_mlp_get_config(dp_model_mlp(model))->n_classes) {
        cli_error("%s predicts %d classes, %s has %d", path,
                  dp_mlp_get_config(dp_model_mlp(model))->n_classes, dataset, k);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if (!isnan(threshold) && k != 2) {
        cli_error("--threshold applies to two classes; %s predicts %d (the largest probability "
                  "decides)",
                  path, k);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    if (k > DP_EVAL_MAX_CLASSES) {
        cli_error("%s: %d classes; eval reports at most %d", dataset, k, DP_EVAL_MAX_CLASSES);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    P = malloc((n ? n : 1) * (size_t)k * sizeof(float));
    mask = malloc(n ? n : 1);
    if (!P || !mask) {
        cli_error("out of memory for %zu predictions", n);
        rc = CLI_INTERNAL;
        goto done;
    }
    if ((st = dp_mlp_predict_on(dp_model_mlp(model), dev, dp_dataset_X(ds), n, P)) != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    const int32_t *y = dp_dataset_y(ds);
    /* The baseline predicts the majority class of the training split (public
     * knowledge in practice, e.g. the published unemployment rate); the
     * evaluated split's own majority if the training split is unavailable. */
    int major;
    if (strcmp(split, "train") && dp_dataset_open(dataset, "train", 0, SIZE_MAX, &train) == DP_OK &&
        dp_dataset_rows(train) > 0)
        major = dp_eval_majority(dp_dataset_y(train), dp_dataset_rows(train), k);
    else
        major = dp_eval_majority(y, n, k);
    dp_eval_metrics all, base;
    if ((st = dp_eval_compute_at(P, y, n, k, NULL, threshold, &all)) != DP_OK ||
        (st = dp_eval_baseline(y, n, k, major, NULL, &base)) != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    /* Groups from the one-hot columns of SEX and RAC1P. */
    const char **names = malloc(d * sizeof *names);
    for (size_t j = 0; j < d; j++)
        names[j] = dp_dataset_feature(ds, j);
    group_result groups[2][MAX_GROUPS];
    size_t ng[2];
    const float *X = dp_dataset_X(ds);
    for (int v = 0; v < 2; v++) {
        dp_eval_group g[MAX_GROUPS];
        ng[v] = dp_eval_find_groups(names, d, group_vars[v], g, MAX_GROUPS);
        for (size_t i = 0; i < ng[v]; i++) {
            groups[v][i].g = g[i];
            for (size_t r = 0; r < n; r++)
                mask[r] = X[r * d + g[i].column] > 0.5f;
            dp_eval_compute_at(P, y, n, k, mask, threshold, &groups[v][i].m);
            dp_eval_baseline(y, n, k, major, mask, &groups[v][i].base);
        }
    }
    free(names);
    const char *priv = dp_model_meta(model, "privacy");
    if (json) {
        cJSON *o = metrics_json(&all);
        cJSON_AddStringToObject(o, "split", split);
        if (isnan(threshold))
            cJSON_AddNullToObject(o, "threshold");
        else
            cJSON_AddNumberToObject(o, "threshold", threshold);
        cJSON *b = metrics_json(&base);
        cJSON_AddNumberToObject(b, "class", major);
        cJSON_AddItemToObject(o, "baseline", b);
        cJSON *gr = cJSON_AddObjectToObject(o, "groups");
        for (int v = 0; v < 2; v++)
            for (size_t i = 0; i < ng[v]; i++) {
                cJSON *gm = metrics_json(&groups[v][i].m);
                cJSON_AddItemToObject(gm, "baseline", metrics_json(&groups[v][i].base));
                cJSON_AddItemToObject(gr, groups[v][i].g.name, gm);
            }
        cJSON *pj = priv ? cJSON_Parse(priv) : NULL;
        if (pj) cJSON_AddItemToObject(o, "privacy", pj);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
        goto done;
    }
    printf("model %s on %s (%s split, %zu rows)\n", run, dataset, split, n);
    cJSON *pj = priv ? cJSON_Parse(priv) : NULL;
    const cJSON *pe = cJSON_GetObjectItem(pj, "epsilon"), *pd = cJSON_GetObjectItem(pj, "delta");
    if (cJSON_IsFalse(cJSON_GetObjectItem(pj, "private")))
        printf("privacy: NOT private (trained with --no-dp)\n");
    else if (cJSON_IsNumber(pe) && cJSON_IsNumber(pd))
        printf("privacy: (epsilon %.4g, delta %g)-DP for the training records\n", pe->valuedouble,
               pd->valuedouble);
    cJSON_Delete(pj);
    printf("baseline: always predict class %d (the training split's majority)\n\n", major);
    print_table(&all, &base);
    for (int v = 0; v < 2; v++) {
        if (!ng[v]) continue;
        printf("\n  per group of %s (DP-SGD tends to cost small groups more)\n", group_vars[v]);
        printf("  %-12s %8s %9s %9s %9s %9s %9s\n", "group", "rows", "accuracy", "bal.acc", "F1",
               "ROC-AUC", "base.acc");
        for (size_t i = 0; i < ng[v]; i++) {
            const dp_eval_metrics *m = &groups[v][i].m;
            if (m->n == 0) continue; /* a category absent from this split */
            char a[4][32], bacc[32];
            fmt(a[0], 32, m->accuracy);
            fmt(a[1], 32, m->balanced_accuracy);
            fmt(a[2], 32, m->f1);
            fmt(a[3], 32, m->roc_auc);
            fmt(bacc, 32, groups[v][i].base.accuracy);
            printf("  %-12s %8zu %9s %9s %9s %9s %9s\n", groups[v][i].g.name, m->n, a[0], a[1],
                   a[2], a[3], bacc);
        }
    }
done:
    free(P);
    free(mask);
    dp_model_destroy(model);
    dp_dataset_close(ds);
    dp_dataset_close(train);
    return rc;
}
