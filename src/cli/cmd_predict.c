/*
 * cmd_predict.c: `dpsgd predict RUN INPUT.csv -o predictions.csv`: encode a
 * raw CSV of the training data's schema with the dataset's own encodings
 * (prep's encoder, from the copy of meta.json the run keeps), predict class
 * probabilities with the run's model, and write one output row per input
 * record, in order: valid rows get probabilities and the predicted class,
 * invalid rows the reason they could not be encoded. Refuses a model and
 * data of different schemas; the output is written atomically.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "dpsgd/checkpoint.h"
#include "dpsgd/eval.h"
#include "dpsgd/model.h"
#include "dpsgd/train.h"
#include "dpsgd/prep.h"

enum { O_DATASET = 256, O_THREADS, O_FORCE, O_DEVICE, O_THRESHOLD };

static const cli_opt opts[] = {
    {"output", 'o', "FILE", "predictions CSV to write (required)"},
    {"dataset", O_DATASET, "DIR",
     "take the encodings from DIR/meta.json (default: the run's copy)"},
    {"threads", O_THREADS, "T", "threads for parsing (default: all cores)"},
    {"force", O_FORCE, NULL, "overwrite an existing FILE"},
    {"device", O_DEVICE, "cpu|cuda", "where to predict (default cpu)"},
    {"threshold", O_THRESHOLD, "T",
     "two classes: the prediction is 1 when prob_1 >= T (default: the most probable class)"},
    {0},
};

static const cli_cmd cmd = {
    "predict",
    "RUN INPUT.csv -o predictions.csv",
    "Predict class probabilities for the records of a raw CSV of the training data's schema.\n"
    "Output columns: record, line, valid, reason, prob_0 .. prob_{k-1}, prediction.",
    "dpsgd predict runs/eps1 new_persons.csv -o predictions.csv",
    opts,
};

int cmd_predict(int argc, char **argv) {
    const char *device = "cpu";
    const char *out = NULL, *dataset = NULL;
    long long threads = 0;
    int force = 0;
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
        case 'o':
            out = optarg;
            break;
        case O_DATASET:
            dataset = optarg;
            break;
        case O_THREADS:
            if (cli_parse_long("threads", optarg, 1, 4096, &threads)) return CLI_BAD_INPUT;
            break;
        case O_FORCE:
            force = 1;
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
    if (argc - optind != 2) return cli_usage_error("expected RUN and INPUT.csv");
    if (!out) return cli_usage_error("-o FILE is required");
    dp_device_kind dev;
    if (cli_parse_device(device, &dev) || cli_device_ready(dev)) return CLI_BAD_INPUT;
    const char *run = argv[optind], *input = argv[optind + 1];
    if (!force && access(out, F_OK) == 0) {
        cli_error("%s exists (use --force to overwrite it)", out);
        return CLI_BAD_INPUT;
    }
    char path[4200], tmpdir[4200] = "";
    snprintf(path, sizeof path, "%s/model.safetensors", run);
    dp_model *model = NULL;
    dp_prep_encoded enc;
    memset(&enc, 0, sizeof enc);
    float *P = NULL;
    char *buf = NULL;
    int rc = CLI_OK;
    dp_status st = dp_model_load(path, 1024, &model);
    if (st != DP_OK) return cli_fail(st);
    if (dp_eval_check_threshold(threshold, dp_mlp_get_config(dp_model_mlp(model))->n_classes)) {
        cli_error("--threshold: %s (%s)", dp_last_error(), path);
        dp_model_destroy(model);
        return CLI_BAD_INPUT;
    }
    if (!dataset) {
        /* The encoder reads DIR/meta.json: give it the run's copy. */
        snprintf(path, sizeof path, "%s/dataset_meta.json", run);
        FILE *f = fopen(path, "rb");
        if (!f) {
            cli_error("%s: cannot open (%s); give the dataset with --dataset DIR", path,
                      strerror(errno));
            rc = CLI_BAD_INPUT;
            goto done;
        }
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/dpsgd-predict-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            fclose(f);
            cli_error("cannot create a temporary directory: %s", strerror(errno));
            tmpdir[0] = '\0';
            rc = CLI_INTERNAL;
            goto done;
        }
        char meta[4300];
        snprintf(meta, sizeof meta, "%s/meta.json", tmpdir);
        FILE *g = fopen(meta, "wb");
        char chunk[65536];
        size_t r;
        while (g && (r = fread(chunk, 1, sizeof chunk, f)) > 0)
            fwrite(chunk, 1, r, g);
        fclose(f);
        if (!g || fclose(g)) {
            cli_error("%s: cannot write", meta);
            rc = CLI_INTERNAL;
            goto done;
        }
        dataset = tmpdir;
    }
    st = dp_prep_encode_file(dataset, input, (int)threads, &enc);
    if (st != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    if (strcmp(enc.schema_hash, dp_model_schema_hash(model)) ||
        enc.d != dp_model_n_features(model)) {
        cli_error("%s/model.safetensors was trained on data of schema %.16s (%zu features); the "
                  "encodings give schema %.16s (%zu features)",
                  run, dp_model_schema_hash(model), dp_model_n_features(model), enc.schema_hash,
                  enc.d);
        rc = CLI_BAD_INPUT;
        goto done;
    }
    int k = dp_mlp_get_config(dp_model_mlp(model))->n_classes;
    P = malloc((enc.n ? enc.n : 1) * (size_t)k * sizeof(float));
    if (!P) {
        cli_error("out of memory for %zu predictions", enc.n);
        rc = CLI_INTERNAL;
        goto done;
    }
    if ((st = dp_mlp_predict_on(dp_model_mlp(model), dev, enc.X, enc.n, P)) != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    fprintf(o, "record,line,valid,reason");
    for (int j = 0; j < k; j++)
        fprintf(o, ",prob_%d", j);
    fprintf(o, ",prediction\n");
    for (size_t i = 0; i < enc.n; i++) {
        fprintf(o, "%zu,%llu,", i + 1, (unsigned long long)enc.line[i]);
        if (enc.reason[i]) {
            fprintf(o, "0,%s", dp_prep_reason_name(enc.reason[i]));
            for (int j = 0; j < k; j++)
                fputc(',', o);
            fprintf(o, ",\n");
            continue;
        }
        fprintf(o, "1,");
        for (int j = 0; j < k; j++) {
            fprintf(o, ",%.6g", P[i * k + j]);
        }
        fprintf(o, ",%d\n", dp_eval_decide(P + i * k, (int)k, threshold));
    }
    fclose(o);
    if ((st = dp_file_write_atomic(out, buf, len)) != DP_OK) {
        rc = cli_fail(st);
        goto done;
    }
    cli_note("%zu records: %zu predicted, %zu could not be encoded (reason in the 'reason' "
             "column); wrote %s",
             enc.n, enc.n_valid, enc.n - enc.n_valid, out);
done:
    if (tmpdir[0]) {
        char meta[4300];
        snprintf(meta, sizeof meta, "%s/meta.json", tmpdir);
        unlink(meta);
        rmdir(tmpdir);
    }
    free(buf);
    free(P);
    dp_prep_encoded_free(&enc);
    dp_model_destroy(model);
    return rc;
}
