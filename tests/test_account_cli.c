/*
 * test_account_cli.c: `dpsgd account` through the binary: --json output read
 * by cJSON and checked against the library, the calibration direction, the
 * --epochs and --batch-size/--dataset-size conveniences, and one clear line
 * with exit status 1 for each impossible setting.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "testutil.h"

/* 1 if this build has the PRV accountant (FFTW); tests of it are skipped otherwise. */
static int have_prv(void) {
    dp_prv_result r;
    int ok = dp_account_prv(NULL, 0, 1e-5, 0, 0, &r) == DP_OK;
    dp_clear_error();
    return ok;
}

static cJSON *run_json(const char *args) {
    char *out = NULL, *err = NULL;
    int rc = tu_run(&out, &err, "account %s --json", args);
    cr_assert_eq(rc, 0, "dpsgd account %s: exit %d: %s", args, rc, err);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    free(out);
    free(err);
    return j;
}

static double num(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(j, k);
    cr_assert(cJSON_IsNumber(v), "field %s missing", k);
    return v->valuedouble;
}

Test(account_cli, json_fields_parse_and_match_the_library) {
    const char *acc[2] = {"rdp", "prv"};
    for (int k = 0; k < 1 + have_prv(); k++) {
        char args[256];
        snprintf(
            args, sizeof args,
            "--sample-rate 0.004 --noise-multiplier 1.1 --steps 2500 --delta 1e-6 --accountant %s",
            acc[k]);
        cJSON *j = run_json(args);
        cr_assert_str_eq(cJSON_GetObjectItem(j, "accountant")->valuestring, acc[k]);
        cr_assert_eq(num(j, "sample_rate"), 0.004);
        cr_assert_eq(num(j, "noise_multiplier"), 1.1);
        cr_assert_eq(num(j, "steps"), 2500);
        cr_assert_eq(num(j, "delta"), 1e-6);
        dp_privacy_event ev = {0.004, 1.1, 2500};
        double e;
        cr_assert_eq(dp_account_epsilon(k, &ev, 1, 1e-6, &e), DP_OK);
        cr_assert_float_eq(num(j, "epsilon"), e, 1e-12 * e);
        cJSON_Delete(j);
    }
}

Test(account_cli, target_epsilon_prints_a_sigma_that_meets_it) {
    cJSON *j = run_json("--sample-rate 0.01 --target-epsilon 2 --steps 1000 --delta 1e-5");
    double s = num(j, "noise_multiplier"), e = num(j, "epsilon");
    cr_assert(e <= 2.0 && e > 1.98, "eps %g", e);
    cr_assert_eq(num(j, "target_epsilon"), 2.0);
    dp_privacy_event ev = {0.01, s, 1000};
    double e2;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ev, 1, 1e-5, &e2), DP_OK);
    cr_assert(e2 <= 2.0);
    cJSON_Delete(j);
}

Test(account_cli, epochs_and_batch_size_are_conveniences) {
    cJSON *j = run_json("--batch-size 1024 --dataset-size 1000000 --epochs 5 "
                        "--noise-multiplier 1 --delta 1e-5");
    cr_assert_eq(num(j, "sample_rate"), 1024.0 / 1e6);
    cr_assert_eq(num(j, "steps"), ceil(5 / (1024.0 / 1e6))); /* 4882.8 -> 4883 */
    cJSON_Delete(j);
    j = run_json("--sample-rate 0.001 --epochs 5 --noise-multiplier 1 --delta 1e-5");
    cr_assert_eq(num(j, "steps"), 5000); /* not 5001 from 5/0.001 = 5000.000000000001 */
    cJSON_Delete(j);
}

Test(account_cli, human_output_names_the_best_order) {
    char *out = NULL, *err = NULL;
    int rc = tu_run(&out, &err,
                    "account --sample-rate 0.01 --noise-multiplier 1 --steps 100 "
                    "--delta 1e-5");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "epsilon") && strstr(out, "best RDP order"), "%s", out);
    free(out);
    free(err);
    rc = tu_run(&out, &err, "account --help");
    cr_assert_eq(rc, 0);
    cr_assert(strstr(out, "--target-epsilon") != NULL);
    free(out);
    free(err);
}

static void bad(const char *args, const char *needle) {
    char *out = NULL, *err = NULL;
    int rc = tu_run(&out, &err, "account %s", args);
    cr_assert_eq(rc, 1, "dpsgd account %s: exit %d (%s)", args, rc, err);
    cr_assert_str_eq(out, "", "stdout not empty: %s", out);
    size_t len = strlen(err);
    cr_assert(len > 0 && err[len - 1] == '\n' && strchr(err, '\n') == err + len - 1,
              "expected one line on stderr, got: %s", err);
    cr_assert(strstr(err, needle) != NULL, "'%s' not in: %s", needle, err);
    free(out);
    free(err);
}

Test(account_cli, impossible_settings_give_one_line_and_exit_1) {
    const char *rest = "--steps 100 --delta 1e-5";
    char a[256];
    snprintf(a, sizeof a, "--sample-rate 0 --noise-multiplier 1 %s", rest);
    bad(a, "sample-rate");
    snprintf(a, sizeof a, "--sample-rate 1.5 --noise-multiplier 1 %s", rest);
    bad(a, "sample-rate");
    snprintf(a, sizeof a, "--sample-rate 0.1 --noise-multiplier 0 %s", rest);
    bad(a, "noise-multiplier");
    snprintf(a, sizeof a, "--sample-rate 0.1 --noise-multiplier -2 %s", rest);
    bad(a, "noise-multiplier");
    snprintf(a, sizeof a, "--sample-rate abc --noise-multiplier 1 %s", rest);
    bad(a, "sample-rate");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 0 --delta 1e-5", "steps");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1", "delta");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10 --delta 0", "delta");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10", "delta");
    bad("--sample-rate 0.1 --steps 10 --delta 1e-5", "noise-multiplier");
    bad("--sample-rate 0.1 --noise-multiplier 1 --target-epsilon 1 --steps 10 --delta 1e-5",
        "exactly one");
    bad("--sample-rate 0.1 --target-epsilon 1e-9 --steps 1000 --delta 1e-5", "unreachable");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 --accountant gdp",
        "accountant");
    bad("--batch-size 10 --noise-multiplier 1 --steps 10 --delta 1e-5", "dataset-size");
    bad("--batch-size 10 --dataset-size 5 --noise-multiplier 1 --steps 10 --delta 1e-5", "exceeds");
    bad("--sample-rate 0.1 --epochs 2 --steps 3 --noise-multiplier 1 --delta 1e-5", "either");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 extra", "unexpected");
    bad("--sample-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 --bogus", "unknown option");
}
