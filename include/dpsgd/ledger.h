/*
 * ledger.h: the privacy ledger (DESIGN.md algorithm 4, "Privacy of
 * preprocessing"): every release that depends on the private data (DP-SGD
 * training steps, prep's noisy statistics) is one entry, and the ledger's
 * epsilon is the accountant's composition of all entries at the ledger's delta.
 * Serialised into privacy.json and checkpoints. Relies on accountant.h.
 *
 * Neighbouring relation: add/remove one record (one person's row). Every
 * event's sigma is the noise multiplier relative to the L2 sensitivity under
 * that relation; a mechanism whose sensitivity is stated for replace-one
 * (which doubles it) must be charged with sigma halved.
 */
#ifndef DPSGD_LEDGER_H
#define DPSGD_LEDGER_H
#include <stddef.h>
#include <stdint.h>
#include "accountant.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_ledger dp_ledger;

/* The neighbouring relation every ledger is accounted under; written to JSON. */
#define DP_LEDGER_NEIGHBOURING "add/remove one record"

/* A new, empty ledger accounted with `kind` at `delta` in (0, 1).
 * DP_E_RANGE for a bad delta; DP_E_UNSUPPORTED for PRV without FFTW. */
DP_API dp_status dp_ledger_create(dp_accountant_kind kind, double delta, dp_ledger **out);
DP_API void dp_ledger_destroy(dp_ledger *ledger);

/* Append an entry (`what` is copied: "train", "prep: mean of AGEP"). An entry
 * with the same `what`, q and sigma as the last entry is merged into it by
 * adding steps (so a training loop may call this once per step). DP_E_RANGE
 * for q outside (0, 1], sigma <= 0 or not finite, steps = 0. */
DP_API dp_status dp_ledger_add(dp_ledger *ledger, const char *what, dp_privacy_event ev);

/* Epsilon of all entries composed, at the ledger's delta (0 when empty). */
DP_API dp_status dp_ledger_epsilon(const dp_ledger *ledger, double *eps);

/* Epsilon if `next` were added, without adding it: a trainer calls this before
 * a step and stops when it would exceed the budget. */
DP_API dp_status dp_ledger_epsilon_if(const dp_ledger *ledger, dp_privacy_event next, double *eps);

/* The largest number of steps T <= limit such that the ledger plus
 * {q, sigma, T} spends at most `budget` epsilon (0 if even the ledger alone
 * exceeds it), by bisection on T. One call before training replaces a
 * dp_ledger_epsilon_if per step, which is cheap for RDP (a sum over orders)
 * but costs a whole PRV composition each time. */
DP_API dp_status dp_ledger_max_steps(const dp_ledger *ledger, double q, double sigma, double budget,
                                     uint64_t limit, uint64_t *steps);

/* Entries, in order. `*what` stays owned by the ledger, valid until the next
 * dp_ledger_add or destroy. DP_E_RANGE for i >= count. */
DP_API size_t dp_ledger_count(const dp_ledger *ledger);
DP_API dp_status dp_ledger_entry(const dp_ledger *ledger, size_t i, const char **what,
                                 dp_privacy_event *ev);

/* The ledger's accountant kind and delta. */
DP_API dp_accountant_kind dp_ledger_kind(const dp_ledger *ledger);
DP_API double dp_ledger_delta(const dp_ledger *ledger);

/* JSON object:
 *   {"accountant": "rdp", "delta": 1e-05, "neighbouring": "add/remove one record",
 *    "epsilon": 0.93, "entries": [{"what": "train", "sample_rate": 0.001,
 *    "noise_multiplier": 1.1, "steps": 10000}, ...]}
 * `*json_out` is allocated by the library; free it with dp_ledger_free_string
 * (or free() when no allocator was injected).
 * "epsilon" is informative: from_json recomputes it. */
DP_API dp_status dp_ledger_to_json(const dp_ledger *ledger, char **json_out);
DP_API void dp_ledger_free_string(char *s);

/* Parse the JSON written by dp_ledger_to_json (also as a cJSON sub-object
 * printed back to text). DP_E_FORMAT on malformed or foreign JSON, including
 * a neighbouring relation other than add/remove one record. */
DP_API dp_status dp_ledger_from_json(const char *json, dp_ledger **out);

#ifdef __cplusplus
}
#endif
#endif
