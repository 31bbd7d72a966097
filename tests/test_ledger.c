/*
 * test_ledger.c: the privacy ledger: run-length merging, epsilon equal to the
 * accountant's composition of the entries (RDP from cached curves, PRV from
 * scratch), epsilon_if without side effects, max_steps at the budget edge,
 * and the JSON round trip with its neighbouring relation, read back by cJSON
 * and refused when malformed or foreign.
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

static dp_ledger *make(dp_accountant_kind k) {
    dp_ledger *l;
    cr_assert_eq(dp_ledger_create(k, 1e-5, &l), DP_OK, "%s", dp_last_error());
    return l;
}

Test(ledger, consecutive_equal_entries_merge_by_adding_steps) {
    dp_ledger *l = make(DP_ACCOUNTANT_RDP);
    cr_assert_eq(dp_ledger_add(l, "prep: mean of AGEP", (dp_privacy_event){1.0, 20.0, 1}), DP_OK);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(dp_ledger_add(l, "train", (dp_privacy_event){0.01, 1.1, 1}), DP_OK);
    cr_assert_eq(dp_ledger_add(l, "train", (dp_privacy_event){0.01, 1.2, 5}), DP_OK);
    cr_assert_eq(dp_ledger_add(l, "train", (dp_privacy_event){0.01, 1.1, 7}), DP_OK);
    cr_assert_eq(dp_ledger_count(l), 4);
    const char *what;
    dp_privacy_event ev;
    cr_assert_eq(dp_ledger_entry(l, 1, &what, &ev), DP_OK);
    cr_assert_str_eq(what, "train");
    cr_assert_eq(ev.steps, 100);
    cr_assert_eq(dp_ledger_entry(l, 3, &what, &ev), DP_OK);
    cr_assert_eq(ev.steps, 7);
    cr_assert_eq(ev.sigma, 1.1);
    cr_assert_eq(dp_ledger_entry(l, 4, &what, &ev), DP_E_RANGE);
    dp_ledger_destroy(l);
}

Test(ledger, epsilon_is_the_composition_of_the_entries) {
    dp_privacy_event evs[3] = {{1.0, 20.0, 2}, {0.01, 1.1, 300}, {0.02, 0.9, 50}};
    for (int k = 0; k < 1 + have_prv(); k++) {
        dp_ledger *l = make(k);
        double e0;
        cr_assert_eq(dp_ledger_epsilon(l, &e0), DP_OK);
        cr_assert_eq(e0, 0.0);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(dp_ledger_add(l, "x", evs[i]), DP_OK);
        double a, b;
        cr_assert_eq(dp_ledger_epsilon(l, &a), DP_OK);
        cr_assert_eq(dp_account_epsilon(k, evs, 3, 1e-5, &b), DP_OK);
        cr_assert_float_eq(a, b, 1e-12 * b, "%s: ledger %g, accountant %g", dp_accountant_name(k),
                           a, b);
        dp_ledger_destroy(l);
    }
}

Test(ledger, epsilon_if_predicts_without_adding) {
    for (int k = 0; k < 1 + have_prv(); k++) {
        dp_ledger *l = make(k);
        cr_assert_eq(dp_ledger_add(l, "train", (dp_privacy_event){0.01, 1.0, 200}), DP_OK);
        double before, pred, after;
        dp_privacy_event next = {0.01, 1.0, 50};
        cr_assert_eq(dp_ledger_epsilon(l, &before), DP_OK);
        cr_assert_eq(dp_ledger_epsilon_if(l, next, &pred), DP_OK);
        double again;
        cr_assert_eq(dp_ledger_epsilon(l, &again), DP_OK);
        cr_assert_eq(again, before, "epsilon_if changed the ledger");
        cr_assert_eq(dp_ledger_add(l, "train", next), DP_OK);
        cr_assert_eq(dp_ledger_epsilon(l, &after), DP_OK);
        cr_assert_float_eq(pred, after, 1e-12 * after);
        cr_assert(pred > before);
        /* A different event is priced too. */
        cr_assert_eq(dp_ledger_epsilon_if(l, (dp_privacy_event){1.0, 5.0, 1}, &pred), DP_OK);
        cr_assert(pred > after);
        cr_assert_eq(dp_ledger_epsilon_if(l, (dp_privacy_event){0.01, 1.0, 0}, &pred), DP_E_RANGE);
        dp_ledger_destroy(l);
    }
}

Test(ledger, max_steps_stops_at_the_budget) {
    for (int k = 0; k < 1 + have_prv(); k++) {
        dp_ledger *l = make(k);
        cr_assert_eq(dp_ledger_add(l, "prep", (dp_privacy_event){1.0, 10.0, 1}), DP_OK);
        uint64_t T;
        cr_assert_eq(dp_ledger_max_steps(l, 0.01, 1.0, 3.0, 1000000, &T), DP_OK);
        cr_assert(T > 0 && T < 1000000, "%s: T=%llu", dp_accountant_name(k), (unsigned long long)T);
        double e_at, e_over;
        cr_assert_eq(dp_ledger_epsilon_if(l, (dp_privacy_event){0.01, 1.0, T}, &e_at), DP_OK);
        cr_assert_eq(dp_ledger_epsilon_if(l, (dp_privacy_event){0.01, 1.0, T + 1}, &e_over), DP_OK);
        cr_assert(e_at <= 3.0 && e_over > 3.0, "%s: T=%llu: %g, %g", dp_accountant_name(k),
                  (unsigned long long)T, e_at, e_over);
        cr_assert_eq(dp_ledger_max_steps(l, 0.01, 1.0, 1e-6, 1000, &T), DP_OK);
        cr_assert_eq(T, 0); /* the prior entry alone exceeds the budget */
        cr_assert_eq(dp_ledger_max_steps(l, 0.01, 1.0, 100.0, 500, &T), DP_OK);
        cr_assert_eq(T, 500); /* the limit binds */
        dp_ledger_destroy(l);
    }
}

Test(ledger, json_round_trips_and_states_the_neighbouring_relation) {
    dp_ledger *l;
    cr_assert_eq(dp_ledger_create(DP_ACCOUNTANT_RDP, 3e-7, &l), DP_OK);
    cr_assert_eq(dp_ledger_add(l, "prep: mean of \"AGEP\"\n", (dp_privacy_event){1.0, 20.5, 3}),
                 DP_OK);
    cr_assert_eq(
        dp_ledger_add(l, "train", (dp_privacy_event){0.0012345678901234567, 0.7, 123456789}),
        DP_OK);
    char *json;
    cr_assert_eq(dp_ledger_to_json(l, &json), DP_OK);
    /* An independent reader sees the documented fields. */
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "%s", json);
    cr_assert_str_eq(cJSON_GetObjectItem(root, "neighbouring")->valuestring,
                     "add/remove one record");
    cr_assert_str_eq(cJSON_GetObjectItem(root, "accountant")->valuestring, "rdp");
    cr_assert_eq(cJSON_GetObjectItem(root, "delta")->valuedouble, 3e-7);
    double eps;
    cr_assert_eq(dp_ledger_epsilon(l, &eps), DP_OK);
    cr_assert_eq(cJSON_GetObjectItem(root, "epsilon")->valuedouble, eps);
    cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "entries"), 1);
    cr_assert_eq(cJSON_GetObjectItem(e1, "steps")->valuedouble, 123456789.0);
    cr_assert_eq(cJSON_GetObjectItem(e1, "sample_rate")->valuedouble, 0.0012345678901234567);
    cJSON_Delete(root);

    dp_ledger *back;
    cr_assert_eq(dp_ledger_from_json(json, &back), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_ledger_count(back), 2);
    cr_assert_eq(dp_ledger_kind(back), DP_ACCOUNTANT_RDP);
    cr_assert_eq(dp_ledger_delta(back), 3e-7);
    for (size_t i = 0; i < 2; i++) {
        const char *wa, *wb;
        dp_privacy_event a, b;
        dp_ledger_entry(l, i, &wa, &a);
        dp_ledger_entry(back, i, &wb, &b);
        cr_assert_str_eq(wa, wb);
        cr_assert(a.q == b.q && a.sigma == b.sigma && a.steps == b.steps);
    }
    double eps2;
    cr_assert_eq(dp_ledger_epsilon(back, &eps2), DP_OK);
    cr_assert_eq(eps2, eps);
    dp_ledger_free_string(json);
    dp_ledger_destroy(back);
    dp_ledger_destroy(l);
}

static void refused(const char *json, const char *needle) {
    dp_ledger *l = (dp_ledger *)1;
    dp_status st = dp_ledger_from_json(json, &l);
    cr_assert_eq(st, DP_E_FORMAT, "accepted: %s", json);
    cr_assert_null(l);
    cr_assert(strstr(dp_last_error(), needle) != NULL, "message '%s' lacks '%s'", dp_last_error(),
              needle);
}

Test(ledger, malformed_or_foreign_json_is_refused) {
    const char *ok_head =
        "{\"accountant\":\"rdp\",\"delta\":1e-5,\"neighbouring\":\"add/remove one record\",";
    char buf[512];
    refused("{\"accountant\":\"rdp\"", "offset");
    refused("[1,2]", "object");
    refused("{\"accountant\":\"gdp\",\"delta\":1e-5,\"neighbouring\":\"add/remove one record\","
            "\"entries\":[]}",
            "accountant");
    refused("{\"accountant\":\"rdp\",\"delta\":1.5,\"neighbouring\":\"add/remove one record\","
            "\"entries\":[]}",
            "delta");
    refused("{\"accountant\":\"rdp\",\"delta\":1e-5,\"neighbouring\":\"replace one record\","
            "\"entries\":[]}",
            "neighbouring");
    snprintf(buf, sizeof buf, "%s\"entries\":{}}", ok_head);
    refused(buf, "entries");
    snprintf(buf, sizeof buf, "%s\"entries\":[{\"what\":\"t\",\"sample_rate\":0.1,\"steps\":3}]}",
             ok_head);
    refused(buf, "entry 0");
    snprintf(buf, sizeof buf,
             "%s\"entries\":[{\"what\":\"t\",\"sample_rate\":0.1,\"noise_multiplier\":1,\"steps\":"
             "2.5}]}",
             ok_head);
    refused(buf, "whole number");
    snprintf(
        buf, sizeof buf,
        "%s\"entries\":[{\"what\":\"t\",\"sample_rate\":0.1,\"noise_multiplier\":1,\"steps\":0}]}",
        ok_head);
    refused(buf, "whole number");
    snprintf(
        buf, sizeof buf,
        "%s\"entries\":[{\"what\":\"t\",\"sample_rate\":1.1,\"noise_multiplier\":1,\"steps\":1}]}",
        ok_head);
    dp_ledger *l;
    cr_assert_eq(dp_ledger_from_json(buf, &l), DP_E_RANGE);
    cr_assert(strstr(dp_last_error(), "entry 0") != NULL, "%s", dp_last_error());
    snprintf(buf, sizeof buf, "%s\"entries\":[]} trailing", ok_head);
    refused(buf, "offset");
}

Test(ledger, bad_arguments_are_refused) {
    dp_ledger *l;
    cr_assert_eq(dp_ledger_create(DP_ACCOUNTANT_RDP, 0.0, &l), DP_E_RANGE);
    cr_assert_eq(dp_ledger_create((dp_accountant_kind)9, 1e-5, &l), DP_E_USAGE);
    l = make(DP_ACCOUNTANT_RDP);
    cr_assert_eq(dp_ledger_add(l, "t", (dp_privacy_event){0.0, 1.0, 1}), DP_E_RANGE);
    cr_assert_eq(dp_ledger_add(l, "t", (dp_privacy_event){0.1, -1.0, 1}), DP_E_RANGE);
    cr_assert_eq(dp_ledger_add(l, "t", (dp_privacy_event){0.1, 1.0, 0}), DP_E_RANGE);
    cr_assert_eq(dp_ledger_add(l, NULL, (dp_privacy_event){0.1, 1.0, 1}), DP_E_USAGE);
    cr_assert_eq(dp_ledger_count(l), 0);
    cr_assert_eq(dp_ledger_add(l, "t", (dp_privacy_event){0.1, 1.0, UINT64_MAX}), DP_OK);
    cr_assert_eq(dp_ledger_add(l, "t", (dp_privacy_event){0.1, 1.0, 1}), DP_E_RANGE);
    dp_ledger_destroy(l);
    dp_ledger_destroy(NULL);
}

Test(ledger, prv_without_fftw_says_so) {
    if (have_prv()) cr_skip_test("this build has FFTW");
    dp_ledger *l;
    cr_assert_eq(dp_ledger_create(DP_ACCOUNTANT_PRV, 1e-5, &l), DP_E_UNSUPPORTED);
    cr_assert(strstr(dp_last_error(), "FFTW") != NULL, "%s", dp_last_error());
}
