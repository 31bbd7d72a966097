/*
 * ledger.c: the privacy ledger (include/dpsgd/ledger.h): the list of
 * releases charged against the private data, run-length merged, composed by
 * the accountant, and serialised to JSON (cJSON) for privacy.json and
 * checkpoints. Relies on accountant.c/rdp.c/prv.c.
 *
 * For the RDP accountant each entry keeps its one-step RDP curve over the
 * order grid, so the ledger's epsilon is a sum of curves and one conversion:
 * a trainer may ask dp_ledger_epsilon_if every step for the cost of ~200
 * multiply-adds. The PRV accountant recomposes from scratch (10 ms to 2 s);
 * a trainer using it asks dp_ledger_max_steps once instead.
 */
#include <cjson/cJSON.h>
#include <string.h>
#include "dp/accountant_internal.h"

typedef struct entry {
    char *what;
    dp_privacy_event ev;
    double *rdp; /* one step's RDP at each order (RDP ledgers only) */
} entry;

struct dp_ledger {
    dp_accountant_kind kind;
    double delta;
    entry *e;
    size_t n, cap;
};

DP_API dp_status dp_ledger_create(dp_accountant_kind kind, double delta, dp_ledger **out) {
    *out = NULL;
    if (kind != DP_ACCOUNTANT_RDP && kind != DP_ACCOUNTANT_PRV)
        return dp_error(DP_E_USAGE, "ledger: unknown accountant kind %d", (int)kind);
    DP_TRY(acct_check_delta("ledger", delta));
    if (kind == DP_ACCOUNTANT_PRV) { /* fails now, not at the first epsilon, without FFTW */
        dp_prv_result r;
        DP_TRY(dp_account_prv(NULL, 0, delta, 0.0, 0.0, &r));
    }
    dp_ledger *l = dp_calloc(1, sizeof *l);
    if (!l) return dp_error(DP_E_NOMEM, "ledger: allocating the ledger");
    l->kind = kind;
    l->delta = delta;
    *out = l;
    return DP_OK;
}

DP_API void dp_ledger_destroy(dp_ledger *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        dp_free(l->e[i].what);
        dp_free(l->e[i].rdp);
    }
    dp_free(l->e);
    dp_free(l);
}

DP_API dp_accountant_kind dp_ledger_kind(const dp_ledger *l) {
    return l->kind;
}
DP_API double dp_ledger_delta(const dp_ledger *l) {
    return l->delta;
}
DP_API size_t dp_ledger_count(const dp_ledger *l) {
    return l ? l->n : 0;
}

static dp_status check_new_event(const char *where, dp_privacy_event ev) {
    DP_TRY(acct_check_event(where, 0, ev));
    if (ev.steps == 0)
        return dp_error(DP_E_RANGE, "%s: expected at least one step, found 0", where);
    return DP_OK;
}

DP_API dp_status dp_ledger_add(dp_ledger *l, const char *what, dp_privacy_event ev) {
    if (!l || !what) return dp_error(DP_E_USAGE, "dp_ledger_add: NULL ledger or description");
    DP_TRY(check_new_event("ledger", ev));
    if (l->n) {
        entry *last = &l->e[l->n - 1];
        if (!strcmp(last->what, what) && last->ev.q == ev.q && last->ev.sigma == ev.sigma) {
            if (last->ev.steps > UINT64_MAX - ev.steps)
                return dp_error(DP_E_RANGE, "ledger: entry '%s' would exceed 2^64 steps", what);
            last->ev.steps += ev.steps;
            return DP_OK;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        entry *e = dp_realloc(l->e, cap * sizeof *e);
        if (!e) return dp_error(DP_E_NOMEM, "ledger: growing to %zu entries", cap);
        l->e = e;
        l->cap = cap;
    }
    entry en = {dp_strdup(what), ev, NULL};
    if (!en.what) return dp_error(DP_E_NOMEM, "ledger: copying the description");
    if (l->kind == DP_ACCOUNTANT_RDP) {
        en.rdp = dp_malloc(ACCT_RDP_ORDERS * sizeof(double));
        dp_status st = en.rdp ? acct_rdp_curve(ev.q, ev.sigma, en.rdp)
                              : dp_error(DP_E_NOMEM, "ledger: RDP curve");
        if (st != DP_OK) {
            dp_free(en.what);
            dp_free(en.rdp);
            return st;
        }
    }
    l->e[l->n++] = en;
    return DP_OK;
}

DP_API dp_status dp_ledger_entry(const dp_ledger *l, size_t i, const char **what,
                                 dp_privacy_event *ev) {
    if (!l || i >= l->n)
        return dp_error(DP_E_RANGE, "ledger: entry %zu requested, the ledger has %zu", i,
                        l ? l->n : 0);
    if (what) *what = l->e[i].what;
    if (ev) *ev = l->e[i].ev;
    return DP_OK;
}

/* Epsilon of the entries plus `extra` (extra.steps may be 0). */
static dp_status ledger_eps(const dp_ledger *l, dp_privacy_event extra, double *eps) {
    if (l->kind == DP_ACCOUNTANT_RDP) {
        double total[ACCT_RDP_ORDERS] = {0}, curve[ACCT_RDP_ORDERS];
        int any = 0;
        const double *extra_curve = NULL;
        for (size_t i = 0; i < l->n; i++) {
            const entry *en = &l->e[i];
            for (size_t k = 0; k < ACCT_RDP_ORDERS; k++)
                total[k] += (double)en->ev.steps * en->rdp[k];
            if (en->ev.q == extra.q && en->ev.sigma == extra.sigma) extra_curve = en->rdp;
            any = 1;
        }
        if (extra.steps) {
            if (!extra_curve) {
                DP_TRY(acct_rdp_curve(extra.q, extra.sigma, curve));
                extra_curve = curve;
            }
            for (size_t k = 0; k < ACCT_RDP_ORDERS; k++)
                total[k] += (double)extra.steps * extra_curve[k];
            any = 1;
        }
        if (!any) {
            *eps = 0.0;
            return DP_OK;
        }
        if (acct_rdp_epsilon_of_curve(total, l->delta, eps, NULL))
            return dp_error(DP_E_PRIVACY, "ledger: epsilon is infinite at every RDP order");
        return DP_OK;
    }
    dp_privacy_event *evs = dp_malloc((l->n + 1) * sizeof *evs);
    if (!evs) return dp_error(DP_E_NOMEM, "ledger: %zu events", l->n + 1);
    for (size_t i = 0; i < l->n; i++)
        evs[i] = l->e[i].ev;
    evs[l->n] = extra;
    dp_status st = dp_account_epsilon(l->kind, evs, l->n + (extra.steps ? 1 : 0), l->delta, eps);
    dp_free(evs);
    return st;
}

DP_API dp_status dp_ledger_epsilon(const dp_ledger *l, double *eps) {
    if (!l) return dp_error(DP_E_USAGE, "dp_ledger_epsilon: NULL ledger");
    return ledger_eps(l, (dp_privacy_event){.q = 1.0, .sigma = 1.0, .steps = 0}, eps);
}

DP_API dp_status dp_ledger_epsilon_if(const dp_ledger *l, dp_privacy_event next, double *eps) {
    if (!l) return dp_error(DP_E_USAGE, "dp_ledger_epsilon_if: NULL ledger");
    DP_TRY(check_new_event("ledger", next));
    return ledger_eps(l, next, eps);
}

DP_API dp_status dp_ledger_max_steps(const dp_ledger *l, double q, double sigma, double budget,
                                     uint64_t limit, uint64_t *steps) {
    if (!l) return dp_error(DP_E_USAGE, "dp_ledger_max_steps: NULL ledger");
    DP_TRY(check_new_event("ledger", (dp_privacy_event){.q = q, .sigma = sigma, .steps = 1}));
    if (!(budget >= 0.0))
        return dp_error(DP_E_RANGE, "ledger: expected an epsilon budget >= 0, found %g", budget);
    /* Epsilon grows with steps: the largest T in [0, limit] within budget,
     * by doubling from 1 (evaluations stay at T <= twice the answer, which
     * matters for PRV, whose cost grows with T) and then bisection. */
    uint64_t lo = 0, hi = 1;
    double e;
    DP_TRY(ledger_eps(l, (dp_privacy_event){q, sigma, 0}, &e));
    if (e > budget || limit == 0) {
        *steps = 0;
        return DP_OK;
    }
    for (;;) { /* invariant: lo within budget */
        if (hi > limit) hi = limit;
        DP_TRY(ledger_eps(l, (dp_privacy_event){q, sigma, hi}, &e));
        if (e > budget) break;
        lo = hi;
        if (hi == limit) {
            *steps = limit;
            return DP_OK;
        }
        hi = hi > limit / 2 ? limit : 2 * hi;
    }
    while (hi - lo > 1) { /* invariant: lo within budget, hi not */
        uint64_t mid = lo + (hi - lo) / 2;
        DP_TRY(ledger_eps(l, (dp_privacy_event){q, sigma, mid}, &e));
        if (e <= budget)
            lo = mid;
        else
            hi = mid;
    }
    *steps = lo;
    return DP_OK;
}

/* ---- JSON ---- */

DP_API void dp_ledger_free_string(char *s) {
    dp_free(s);
}

DP_API dp_status dp_ledger_to_json(const dp_ledger *l, char **json_out) {
    *json_out = NULL;
    if (!l) return dp_error(DP_E_USAGE, "dp_ledger_to_json: NULL ledger");
    double eps;
    DP_TRY(dp_ledger_epsilon(l, &eps));
    cJSON *root = cJSON_CreateObject(), *arr = NULL;
    int ok = root && cJSON_AddStringToObject(root, "accountant", dp_accountant_name(l->kind)) &&
             cJSON_AddNumberToObject(root, "delta", l->delta) &&
             cJSON_AddStringToObject(root, "neighbouring", DP_LEDGER_NEIGHBOURING) &&
             cJSON_AddNumberToObject(root, "epsilon", eps) &&
             (arr = cJSON_AddArrayToObject(root, "entries"));
    for (size_t i = 0; ok && i < l->n; i++) {
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(arr, o) &&
             cJSON_AddStringToObject(o, "what", l->e[i].what) &&
             cJSON_AddNumberToObject(o, "sample_rate", l->e[i].ev.q) &&
             cJSON_AddNumberToObject(o, "noise_multiplier", l->e[i].ev.sigma) &&
             cJSON_AddNumberToObject(o, "steps", (double)l->e[i].ev.steps);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return dp_error(DP_E_NOMEM, "ledger: writing JSON");
    *json_out = dp_strdup(text);
    cJSON_free(text);
    if (!*json_out) return dp_error(DP_E_NOMEM, "ledger: copying JSON");
    return DP_OK;
}

static dp_status bad(const char *what) {
    return dp_error(DP_E_FORMAT, "ledger json: expected %s", what);
}

DP_API dp_status dp_ledger_from_json(const char *json, dp_ledger **out) {
    *out = NULL;
    if (!json) return dp_error(DP_E_USAGE, "dp_ledger_from_json: NULL text");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) {
        size_t off = end ? (size_t)(end - json) : 0;
        return dp_error(DP_E_FORMAT, "ledger json: offset %zu: malformed JSON", off);
    }
    dp_status st = DP_OK;
    dp_ledger *l = NULL;
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(root, "accountant");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(root, "delta");
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(root, "neighbouring");
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
    dp_accountant_kind kind;
    if (!cJSON_IsObject(root)) {
        st = bad("an object");
        goto out;
    }
    if (!cJSON_IsString(acc) || dp_accountant_parse(acc->valuestring, &kind) != DP_OK) {
        st = bad("\"accountant\": \"rdp\" or \"prv\"");
        goto out;
    }
    if (!cJSON_IsNumber(delta) || !(delta->valuedouble > 0.0 && delta->valuedouble < 1.0)) {
        st = bad("\"delta\": a number in (0, 1)");
        goto out;
    }
    if (!cJSON_IsString(nb) || strcmp(nb->valuestring, DP_LEDGER_NEIGHBOURING)) {
        st = dp_error(DP_E_FORMAT, "ledger json: expected \"neighbouring\": \"%s\", found %s",
                      DP_LEDGER_NEIGHBOURING,
                      cJSON_IsString(nb) ? nb->valuestring : "no such string");
        goto out;
    }
    if (!cJSON_IsArray(entries)) {
        st = bad("\"entries\": an array");
        goto out;
    }
    if ((st = dp_ledger_create(kind, delta->valuedouble, &l)) != DP_OK) goto out;
    size_t i = 0;
    const cJSON *en;
    cJSON_ArrayForEach(en, entries) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(en, "what");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(en, "sample_rate");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(en, "noise_multiplier");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(en, "steps");
        if (!cJSON_IsString(w) || !cJSON_IsNumber(q) || !cJSON_IsNumber(s) || !cJSON_IsNumber(t)) {
            st = dp_error(DP_E_FORMAT,
                          "ledger json: entry %zu: expected \"what\", "
                          "\"sample_rate\", \"noise_multiplier\" and \"steps\"",
                          i);
            goto out;
        }
        double steps = t->valuedouble;
        if (!(steps >= 1.0 && steps <= 9007199254740992.0 && steps == floor(steps))) {
            st = dp_error(DP_E_FORMAT,
                          "ledger json: entry %zu: expected a whole number of steps "
                          ">= 1, found %g",
                          i, steps);
            goto out;
        }
        dp_privacy_event ev = {q->valuedouble, s->valuedouble, (uint64_t)steps};
        if ((st = dp_ledger_add(l, w->valuestring, ev)) != DP_OK) {
            st = dp_error_prefix(st, "ledger json: entry %zu", i);
            goto out;
        }
        i++;
    }
    *out = l;
    l = NULL;
out:
    dp_ledger_destroy(l);
    cJSON_Delete(root);
    return st;
}
