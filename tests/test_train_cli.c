/*
 * test_train_cli.c: `dpsgd train` and `dpsgd eval` end to end through the
 * binary: the run directory and privacy.json; a run killed with SIGKILL and
 * resumed ends with the same model and privacy report, byte for byte, as the
 * uninterrupted run; the budget is never exceeded; existing runs, foreign and
 * corrupt files, other schemas and --device cuda are refused with one clear
 * line and a non-zero exit.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"
#include "dpsgd/train.h"
#include "train_fixture.h"

static char *ds, *tmp;

static void setup(void) {
    uint64_t seed = tu_seed();
    ds = fx_dataset(2000, 8, seed, NULL, NULL);
    tmp = tu_tempdir();
}
static void teardown(void) {
    tu_rmrf(ds);
    tu_rmrf(tmp);
    free(ds);
    free(tmp);
}
TestSuite(train_cli, .init = setup, .fini = teardown, .timeout = 300);

static char *in(const char *dir, const char *name) {
    char *p = malloc(4400);
    snprintf(p, 4400, "%s/%s", dir, name);
    return p;
}

static cJSON *read_json(const char *dir, const char *name) {
    char *p = in(dir, name);
    char *text = tu_read_file(p, NULL);
    cr_assert_not_null(text, "%s exists", p);
    cJSON *o = cJSON_Parse(text);
    cr_assert_not_null(o, "%s is JSON", p);
    free(text);
    free(p);
    return o;
}

static int one_line(const char *err) {
    const char *nl = strchr(err, '\n');
    return nl && nl[1] == '\0';
}

Test(train_cli, no_dp_run_writes_the_run_directory_and_evaluates_well) {
    char *run = in(tmp, "run"), *err = NULL, *out = NULL;
    int rc = tu_run(NULL, &err,
                    "train '%s' -o '%s' --no-dp --epochs 8 --batch-size 50 --lr 0.5 "
                    "--hidden 16 --seed 3",
                    ds, run);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "NOT private"), "the output says the run is not private: %s", err);
    free(err);
    const char *files[] = {"model.safetensors", "privacy.json",      "metrics.jsonl",
                           "command.txt",       "dataset_meta.json", "checkpoint.ckpt"};
    for (int i = 0; i < 6; i++) {
        char *p = in(run, files[i]);
        cr_assert(tu_exists(p), "%s", p);
        free(p);
    }
    cJSON *pj = read_json(run, "privacy.json");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(pj, "private")));
    cJSON_Delete(pj);
    rc = tu_run(&out, &err, "eval '%s' '%s' --json", run, ds);
    cr_assert_eq(rc, 0, "%s", err);
    cJSON *e = cJSON_Parse(out);
    cr_assert_not_null(e, "%s", out);
    double acc = cJSON_GetObjectItem(e, "accuracy")->valuedouble;
    cr_assert_geq(acc, 0.95, "non-private accuracy %.3f", acc);
    cr_assert_geq(cJSON_GetObjectItem(e, "roc_auc")->valuedouble, 0.98);
    cr_assert_not_null(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "groups"), "SEX=2"));
    cr_assert_not_null(cJSON_GetObjectItem(e, "baseline"));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(e, "confusion")), 2);
    cJSON_Delete(e);
    free(out);
    free(err);
    /* every metrics line is a JSON object that says what is not private */
    char *mp = in(run, "metrics.jsonl");
    char *text = tu_read_file(mp, NULL);
    int lines = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save), lines++) {
        cJSON *o = cJSON_Parse(l);
        cr_assert_not_null(o, "line %d: %s", lines, l);
        cr_assert(cJSON_IsArray(cJSON_GetObjectItem(o, "not_private")), "line %d", lines);
        cJSON_Delete(o);
    }
    cr_assert_gt(lines, 8);
    free(text);
    free(mp);
    free(run);
}

Test(train_cli, private_run_reports_privacy_and_never_exceeds_the_target) {
    char *run = in(tmp, "run"), *err = NULL;
    int rc = tu_run(NULL, &err,
                    "train '%s' -o '%s' --noise-multiplier 1.0 --target-epsilon 4 "
                    "--epochs 40 --batch-size 200 --hidden 8 --seed 5",
                    ds, run);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "stop early"), "the user is warned: %s", err);
    free(err);
    cJSON *p = read_json(run, "privacy.json");
    const char *keys[] = {"epsilon",     "delta",        "noise_multiplier", "max_grad_norm",
                          "sample_rate", "steps",        "accountant",       "seeded_noise",
                          "ledger",      "neighbouring", "not_private",      "clipping"};
    for (int i = 0; i < 12; i++)
        cr_assert_not_null(cJSON_GetObjectItem(p, keys[i]), "%s", keys[i]);
    double eps = cJSON_GetObjectItem(p, "epsilon")->valuedouble;
    cr_assert_leq(eps, 4.0);
    cr_assert_gt(eps, 3.0);
    cr_assert_str_eq(cJSON_GetObjectItem(p, "stopped")->valuestring, "budget");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(p, "seeded_noise")));
    cr_assert_str_eq(cJSON_GetObjectItem(p, "neighbouring")->valuestring, "add/remove one record");
    cr_assert_float_eq(cJSON_GetObjectItem(p, "sample_rate")->valuedouble, 0.1, 1e-12);
    cr_assert_lt(cJSON_GetObjectItem(p, "steps")->valuedouble, 400);
    cJSON_Delete(p);
    free(run);
}

static char *file_bytes(const char *dir, const char *name, size_t *len) {
    char *p = in(dir, name);
    char *b = tu_read_file(p, len);
    cr_assert_not_null(b, "%s", p);
    free(p);
    return b;
}

Test(train_cli, run_killed_and_resumed_equals_the_uninterrupted_run_byte_for_byte) {
    char *a = in(tmp, "a"), *b = in(tmp, "b"), *err = NULL;
    const char *opts = "--target-epsilon 3 --epochs 3 --batch-size 100 --hidden 16,8 "
                       "--optimizer adam --lr 0.01 --lr-schedule cosine --seed 11 --quiet";
    int rc = tu_run(NULL, &err, "train '%s' -o '%s' %s", ds, a, opts);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    /* killed like kill -9 right after step 27; the last checkpoint is at step 25 */
    rc = tu_run(NULL, &err, "train '%s' -o '%s' %s --checkpoint-every 5", ds, b, opts);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char *b2 = in(tmp, "b2");
    setenv("DPSGD_TEST_KILL_AFTER_STEP", "27", 1);
    rc = tu_run(NULL, &err, "train '%s' -o '%s' %s --checkpoint-every 5", ds, b2, opts);
    unsetenv("DPSGD_TEST_KILL_AFTER_STEP");
    cr_assert_eq(rc, 128 + 9, "killed by SIGKILL (rc %d): %s", rc, err);
    free(err);
    char *mp = in(b2, "model.safetensors");
    cr_assert(!tu_exists(mp), "no model before the run ends");
    free(mp);
    rc = tu_run(NULL, &err, "train '%s' -o '%s' %s --resume", ds, b2, opts);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    const char *same[] = {"model.safetensors", "privacy.json"};
    for (int i = 0; i < 2; i++) {
        size_t la, lb;
        char *x = file_bytes(a, same[i], &la), *y = file_bytes(b2, same[i], &lb);
        cr_assert_eq(la, lb, "%s: sizes differ", same[i]);
        cr_assert_eq(memcmp(x, y, la), 0, "%s differs after kill -9 and --resume", same[i]);
        free(x);
        free(y);
    }
    /* the checkpoint cadence alone does not change the result either */
    size_t la, lb;
    char *x = file_bytes(a, "model.safetensors", &la), *y = file_bytes(b, "model.safetensors", &lb);
    cr_assert(la == lb && !memcmp(x, y, la));
    free(x), free(y);
    /* metrics.jsonl holds no step twice */
    char *text = file_bytes(b2, "metrics.jsonl", NULL);
    double last = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        double s = cJSON_GetObjectItem(o, "step")->valuedouble;
        cr_assert_geq(s, last, "steps ascend: %s", l);
        last = s;
        cJSON_Delete(o);
    }
    free(text);
    free(a), free(b), free(b2);
}

Test(train_cli, existing_runs_are_refused_unless_force_or_resume) {
    char *run = in(tmp, "run"), *err = NULL;
    const char *opts = "--no-dp --steps 3 --batch-size 10 --quiet --seed 1";
    cr_assert_eq(tu_run(NULL, NULL, "train '%s' -o '%s' %s", ds, run, opts), 0);
    char *mp = in(run, "model.safetensors");
    size_t l0;
    char *before = tu_read_file(mp, &l0);
    cr_assert_eq(tu_run(NULL, &err, "train '%s' -o '%s' %s", ds, run, opts), 1);
    cr_assert(strstr(err, "exists") && strstr(err, "--force") && one_line(err), "%s", err);
    free(err);
    size_t l1;
    char *after = tu_read_file(mp, &l1);
    cr_assert(l0 == l1 && !memcmp(before, after, l0), "the earlier run is intact");
    cr_assert_eq(tu_run(NULL, &err, "train '%s' -o '%s' %s --force", ds, run, opts), 0, "%s", err);
    free(err);
    char *fresh = in(tmp, "fresh");
    cr_assert_eq(tu_run(NULL, &err, "train '%s' -o '%s' %s --resume", ds, fresh, opts), 1);
    cr_assert(strstr(err, "no checkpoint") && one_line(err), "%s", err);
    free(err);
    free(before), free(after), free(mp), free(run), free(fresh);
}

static void refused(const char *what, const char *phrase, const char *fmt, const char *a,
                    const char *b) {
    char *err = NULL, args[9000];
    snprintf(args, sizeof args, fmt, a, b);
    int rc = tu_run(NULL, &err, "%s", args);
    cr_assert_eq(rc, 1, "%s: exit %d (%s)", what, rc, err);
    cr_assert(strstr(err, phrase), "%s: '%s' lacks '%s'", what, err, phrase);
    cr_assert(one_line(err), "%s: one line: %s", what, err);
    free(err);
}

Test(train_cli, foreign_corrupt_and_mismatched_files_are_refused_clearly) {
    char *run = in(tmp, "run");
    cr_assert_eq(tu_run(NULL, NULL,
                        "train '%s' -o '%s' --noise-multiplier 1 --steps 4 "
                        "--batch-size 20 --quiet --seed 2",
                        ds, run),
                 0);
    /* a dataset of another schema */
    uint64_t seed = tu_seed();
    char *other = fx_dataset(100, 8, seed, "another-schema", NULL);
    refused("eval on another schema", "schema", "eval '%s' '%s'", run, other);
    /* a corrupt model */
    char *mp = in(run, "model.safetensors"), *ck = in(run, "checkpoint.ckpt");
    size_t len;
    char *bytes = tu_read_file(mp, &len);
    tu_write_file(mp, bytes, len - 7);
    refused("truncated model", "model.safetensors", "eval '%s' '%s'", run, ds);
    tu_write_file(mp, "GIF89a not a model", 18);
    refused("foreign model", "not a safetensors file", "eval '%s' '%s'", run, ds);
    free(bytes);
    /* a corrupt checkpoint */
    bytes = tu_read_file(ck, &len);
    bytes[len / 2] ^= 1;
    tu_write_file(ck, bytes, len);
    refused("corrupt checkpoint", "checksum", "train '%s' -o '%s' --resume --quiet", ds, run);
    tu_write_file(ck, bytes, 30);
    refused("truncated checkpoint", "checkpoint", "train '%s' -o '%s' --resume --quiet", ds, run);
    free(bytes);
    /* a foreign dataset */
    char *meta = in(other, "meta.json");
    tu_write_file(meta, "{\"format\": \"something-else\"}", 28);
    char *run2 = in(tmp, "run2");
    refused("foreign dataset", "not a dpsgd dataset", "train '%s' -o '%s' --no-dp --quiet", other,
            run2);
    tu_rmrf(other);
    free(other), free(mp), free(ck), free(meta), free(run), free(run2);
}

Test(train_cli, usage_errors_and_missing_backends_are_one_line) {
    char *run = in(tmp, "r");
    refused("nccl without cuda", "--device cuda", "train '%s' -o '%s' --no-dp --allreduce nccl", ds,
            run);
    refused("overlap on cuda", "--overlap", "train '%s' -o '%s' --no-dp --device cuda --overlap",
            ds, run);
    refused("device name", "--device", "train '%s' -o '%s' --no-dp --device tpu", ds, run);
    refused("no budget", "--target-epsilon", "train '%s' -o '%s'", ds, run);
    refused("no-dp with sigma", "--no-dp", "train '%s' -o '%s' --no-dp --noise-multiplier 1", ds,
            run);
    refused("allreduce", "--allreduce", "train '%s' -o '%s' --no-dp --allreduce carrier-pigeon", ds,
            run);
    refused("batch too big", "sample rate", "train '%s' -o '%s' --no-dp --batch-size 5000", ds,
            run);
    refused("noise mode", "--noise-mode",
            "train '%s' -o '%s' --noise-multiplier 1 --noise-mode all", ds, run);
    refused("zero noise with a budget", "--target-epsilon",
            "train '%s' -o '%s' --noise-multiplier 0 --target-epsilon 1", ds, run);
    refused("check-every", "check-every", "train '%s' -o '%s' --no-dp --check-every -1", ds, run);
    cr_assert(!tu_exists(run), "a failed run leaves no directory behind");
    free(run);
}

Test(train_cli, noise_multiplier_zero_trains_clipped_and_is_reported_not_private) {
    char *run = in(tmp, "zero"), *err = NULL;
    cr_assert_eq(tu_run(NULL, &err,
                        "train '%s' -o '%s' --noise-multiplier 0 --steps 5 --batch-size 50 "
                        "--quiet --seed 4 --noise-mode shares --allreduce ring --check-every 2",
                        ds, run),
                 0, "%s", err);
    cr_assert(strstr(err, "NOT private"), "%s", err);
    free(err);
    cJSON *o = read_json(run, "privacy.json");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "private")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "epsilon")));
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(o, "max_grad_norm")->valuedouble, 1.0, 0,
                       "still clipped");
    char *np = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, "not_private"));
    cr_assert(strstr(np, "--noise-multiplier 0"), "%s", np);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "distributed"), "one process");
    free(np);
    cJSON_Delete(o);
    free(run);
}

Test(train_cli, report_is_one_self_contained_html_page) {
    char *run = in(tmp, "run"), *html = in(tmp, "r.html"), *err = NULL;
    cr_assert_eq(tu_run(NULL, NULL,
                        "train '%s' -o '%s' --noise-multiplier 1 --epochs 2 "
                        "--batch-size 100 --quiet --seed 4 --log-every 2",
                        ds, run),
                 0);
    cr_assert_eq(tu_run(NULL, &err, "report '%s' -o '%s'", run, html), 0, "%s", err);
    free(err);
    char *page = tu_read_file(html, NULL);
    cr_assert(strstr(page, "<!DOCTYPE html>") && strstr(page, "</html>"));
    cr_assert(strstr(page, "<polyline"), "curves drawn inline");
    cr_assert(strstr(page, "add/remove one record"));
    cr_assert(strstr(page, "not private"));
    cr_assert_null(strstr(page, "<script"), "no scripts");
    cr_assert_null(strstr(page, "src=\"http"), "no external resources");
    free(page);
    refused("existing report", "exists", "report '%s' -o '%s'", run, html);
    refused("not a run", "privacy.json", "report '%s' -o '%s/x.html'", ds, tmp);
    free(run), free(html);
}

/* synth -> prep -> train -> predict on a small PUMS-like file. */
Test(train_cli, predict_writes_one_row_per_record_and_refuses_other_schemas) {
    char *csv = in(tmp, "p.csv"), *pds = in(tmp, "pds"), *run = in(tmp, "prun"),
         *pred = in(tmp, "pred.csv"), *err = NULL, *out = NULL;
    cr_assert_eq(tu_run(NULL, &err, "synth --rows 3000 --seed 9 -o '%s'", csv), 0, "%s", err);
    free(err);
    cr_assert_eq(tu_run(NULL, &err, "prep '%s' -o '%s'", csv, pds), 0, "%s", err);
    free(err);
    cr_assert_eq(tu_run(NULL, &err,
                        "train '%s' -o '%s' --no-dp --epochs 1 --batch-size 100 "
                        "--quiet --seed 1",
                        pds, run),
                 0, "%s", err);
    free(err);
    cr_assert_eq(tu_run(NULL, &err, "predict '%s' '%s' -o '%s'", run, csv, pred), 0, "%s", err);
    free(err);
    /* records of the input: lines after the header (synth writes no blank lines) */
    char *input = tu_read_file(csv, NULL), *text = tu_read_file(pred, NULL);
    size_t records = 0, rows = 0, valid = 0;
    for (char *c = input; *c; c++)
        records += *c == '\n';
    records -= 1;
    char *save, *l = strtok_r(text, "\n", &save);
    cr_assert_str_eq(l, "record,line,valid,reason,prob_0,prob_1,prediction");
    while ((l = strtok_r(NULL, "\n", &save))) {
        char *f[8], *cur = l;
        int nf = 0;
        while (nf < 8 && (f[nf] = strsep(&cur, ",")))
            nf++;
        cr_assert_eq(nf, 7, "seven fields: %s", l);
        cr_assert_eq(strtoull(f[0], NULL, 10), ++rows);
        if (!strcmp(f[2], "1")) {
            double p0 = strtod(f[4], NULL), p1 = strtod(f[5], NULL);
            cr_assert_str_empty(f[3]);
            cr_assert_float_eq(p0 + p1, 1.0, 1e-5);
            cr_assert_eq(atoi(f[6]), p1 > p0);
            valid++;
        } else {
            cr_assert_str_eq(f[2], "0");
            cr_assert_gt(strlen(f[3]), 1, "an invalid row says why (record %zu)", rows);
            cr_assert_str_empty(f[4]);
        }
    }
    cr_assert_eq(rows, records, "one output row per input record");
    cr_assert_gt(valid, records * 9 / 10);
    free(input);
    free(text);
    /* --threshold: the prediction is prob_1 >= T, the probabilities unchanged */
    char *pred_t = in(tmp, "pred_t.csv");
    cr_assert_eq(tu_run(NULL, &err, "predict '%s' '%s' -o '%s' --threshold 0.2", run, csv, pred_t),
                 0, "%s", err);
    free(err);
    text = tu_read_file(pred_t, NULL);
    size_t flipped = 0;
    l = strtok_r(text, "\n", &save);
    while ((l = strtok_r(NULL, "\n", &save))) {
        char *f[8], *cur = l;
        int nf = 0;
        while (nf < 8 && (f[nf] = strsep(&cur, ",")))
            nf++;
        if (strcmp(f[2], "1")) continue;
        double p0 = strtod(f[4], NULL), p1 = strtod(f[5], NULL);
        cr_assert_eq(atoi(f[6]), p1 >= 0.2, "record %s: p1 %g, prediction %s", f[0], p1, f[6]);
        flipped += p1 >= 0.2 && p1 <= p0;
    }
    free(text);
    cr_assert_gt(flipped, 0, "no record has p1 in [0.2, 0.5]: the threshold was not exercised");
    refused("threshold out of range", "--threshold", "predict '%s' '%s' -o /dev/null --threshold 1",
            run, csv);
    free(pred_t);
    /* an existing output is kept */
    refused("existing predictions", "exists", "predict '%s' /dev/null -o '%s'", run, pred);
    /* a model of another schema: the fixture's */
    char *frun = in(tmp, "frun");
    cr_assert_eq(tu_run(NULL, NULL, "train '%s' -o '%s' --no-dp --steps 2 --batch-size 10 --quiet",
                        ds, frun),
                 0);
    char args[9000];
    snprintf(args, sizeof args, "predict '%s' '%s' -o '%s/x.csv' --dataset '%s'", frun, csv, tmp,
             pds);
    int rc = tu_run(&out, &err, "%s", args);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "schema") && one_line(err), "%s", err);
    free(out), free(err);
    free(csv), free(pds), free(run), free(pred), free(frun);
}

/* --device cuda where it cannot run: a build without the backend says so, a
 * CUDA build on a machine without a GPU says there is no device; either way
 * one line, exit 1, no run directory, for train, eval and predict alike. On
 * a machine where a GPU answers, the refusal is not expected (bench/gpu.sh
 * runs the GPU comparison there). */
Test(train_cli, device_cuda_without_a_gpu_is_one_clear_line) {
    dp_status avail = dp_device_available(DP_DEVICE_CUDA);
    if (avail == DP_OK) {
        cr_log_warn("a CUDA device answers here: refusal not tested");
        return;
    }
    const char *expect = avail == DP_E_UNSUPPORTED ? "no CUDA backend" : "no CUDA device";
    char *run = in(tmp, "cuda-run");
    refused("train cuda", expect, "train '%s' -o '%s' --no-dp --device cuda --quiet", ds, run);
    refused("train cuda nccl", expect,
            "train '%s' -o '%s' --no-dp --device cuda --allreduce nccl --quiet", ds, run);
    cr_assert(!tu_exists(run), "a refused run leaves no directory behind");
    refused("eval cuda", expect, "eval '%s' '%s' --device cuda", run, ds);
    char *csv = in(tmp, "pred.csv");
    char args[9000];
    snprintf(args, sizeof args, "predict '%s' '%s' -o '%s' --device cuda", run, "x.csv", csv);
    char *err = NULL;
    int rc = tu_run(NULL, &err, "%s", args);
    cr_assert_eq(rc, 1, "predict cuda: exit %d (%s)", rc, err);
    cr_assert(strstr(err, expect) && one_line(err), "predict cuda: %s", err);
    cr_assert(!tu_exists(csv), "no predictions file");
    free(err), free(csv), free(run);
}
