/*
 * test_train.c: the DP-SGD trainer. Each update is rebuilt here from the
 * public parts (the sampler's batch, the clipped sum, the noise stream) to
 * show it divides by the expected batch size qN and that an empty batch is a
 * noise-only step; the budget is never exceeded; sigma calibration and the
 * dataset's earlier ledger entries compose; a resumed run equals the
 * uninterrupted one bit for bit; synthetic separable data is learnt.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/eval.h"
#include "dpsgd/train.h"
#include "testutil.h"
#include "train_fixture.h"

static dp_dataset *open_split(const char *dir, const char *split) {
    dp_dataset *ds;
    cr_assert_eq(dp_dataset_open(dir, split, 0, SIZE_MAX, &ds), DP_OK, "%s", dp_last_error());
    return ds;
}

static double test_accuracy(dp_trainer *t, const char *dir) {
    dp_dataset *te = open_split(dir, "test");
    size_t n = dp_dataset_rows(te);
    float *P = malloc(n * 2 * sizeof(float));
    cr_assert_eq(dp_mlp_predict(dp_trainer_mlp(t), dp_dataset_X(te), n, P), DP_OK);
    dp_eval_metrics m;
    cr_assert_eq(dp_eval_compute(P, dp_dataset_y(te), n, 2, NULL, &m), DP_OK);
    free(P);
    dp_dataset_close(te);
    return m.accuracy;
}

static void small_net(dp_train_config *c) {
    dp_train_config_default(c);
    c->n_hidden = 1;
    c->hidden[0] = 16;
    c->seeded = 1;
}

Test(train, no_dp_learns_separable_data) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(3000, 10, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.private_ = 0;
    c.epochs = 10;
    c.batch_size = 64;
    c.lr = 0.5;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_run(t, NULL, NULL), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_stop_reason(t), DP_STOP_DONE);
    double acc = test_accuracy(t, dir);
    cr_assert_geq(acc, 0.95, "non-private accuracy %.3f", acc);
    double eps;
    dp_trainer_epsilon(t, &eps);
    cr_assert(isinf(eps), "not private: epsilon is infinite");
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, dp_at_large_epsilon_learns_separable_data_within_budget) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(5000, 10, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.epochs = 10;
    c.batch_size = 250;
    c.lr = 1.0;
    c.optimizer = DP_OPT_MOMENTUM;
    c.momentum = 0.5;
    c.target_epsilon = 8.0;
    c.target_delta = 1e-5;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
    cr_assert_gt(dp_trainer_plan(t)->noise_multiplier, 0.3);
    cr_assert_eq(dp_trainer_run(t, NULL, NULL), DP_OK, "%s", dp_last_error());
    double eps, acc = test_accuracy(t, dir);
    dp_trainer_epsilon(t, &eps);
    cr_assert_leq(eps, 8.0);
    cr_assert_geq(eps, 7.0, "calibration uses the budget (%.3f)", eps);
    cr_assert_eq(dp_trainer_steps_done(t), 200);
    cr_assert_geq(acc, 0.85, "private accuracy %.3f at epsilon %.2f", acc, eps);
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

/* The update of step 0 rebuilt from public pieces: parameters after one SGD
 * step must be p0 - lr (clipped_sum(S_0) + noise_0) / divisor. */
typedef struct rebuilt {
    size_t count; /* |S_0| */
    size_t P;
    float *p0, *sum, *noise;
} rebuilt;

static void rebuild_step0(const dp_dataset *ds, const dp_train_config *c, double sigma,
                          rebuilt *r) {
    size_t N = dp_dataset_rows(ds), d = dp_dataset_cols(ds);
    double q = c->batch_size / (double)N;
    dp_key ks, kn;
    dp_key_from_seed(c->seed, "sample", &ks);
    dp_key_from_seed(c->seed, "noise", &kn);
    size_t cap = dp_poisson_capacity(N, q), *idx = malloc(cap * sizeof(size_t));
    cr_assert_eq(dp_poisson_sample(&ks, 0, N, q, 0, N, idx, cap, &r->count), DP_OK);
    dp_mlp_config mc = {
        .n_in = d, .n_hidden = c->n_hidden, .n_classes = 2, .activation = c->activation};
    memcpy(mc.hidden, c->hidden, sizeof mc.hidden);
    dp_mlp *m;
    cr_assert_eq(dp_mlp_create(&mc, 64, &m), DP_OK);
    dp_mlp_init(m, c->seed);
    r->P = dp_mlp_nparams(m);
    r->p0 = malloc(r->P * 4);
    r->sum = calloc(r->P, 4);
    r->noise = calloc(r->P, 4);
    memcpy(r->p0, dp_mlp_params(m), r->P * 4);
    float *X = malloc((r->count + 1) * d * 4);
    int32_t *y = malloc((r->count + 1) * 4);
    for (size_t i = 0; i < r->count; i++) {
        memcpy(X + i * d, dp_dataset_X(ds) + idx[i] * d, d * 4);
        y[i] = dp_dataset_y(ds)[idx[i]];
    }
    dp_clip_config clip = c->clip;
    if (!c->private_) clip.mode = DP_CLIP_NONE;
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, r->count, &clip, NULL, r->sum, NULL), DP_OK);
    if (c->private_)
        cr_assert_eq(dp_noise_add(&kn, 0, 0, 0, r->noise, r->P, sigma * c->clip.max_grad_norm),
                     DP_OK);
    free(X), free(y), free(idx);
    dp_mlp_destroy(m);
}

static void free_rebuilt(rebuilt *r) {
    free(r->p0), free(r->sum), free(r->noise);
}

/* max |p - (p0 - lr (sum + noise) / divisor)| */
static double gap(const float *p, const rebuilt *r, double lr, double divisor) {
    double worst = 0;
    for (size_t i = 0; i < r->P; i++) {
        double want = r->p0[i] - lr * ((double)r->sum[i] + r->noise[i]) / divisor;
        worst = fmax(worst, fabs(p[i] - want));
    }
    return worst;
}

Test(train, private_update_divides_by_expected_batch_size) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(10, 4, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.hidden[0] = 3;
    c.batch_size = 3.5; /* qN = 3.5: never a realised size */
    c.noise_multiplier = 0.5;
    c.lr = 1.0;
    c.max_steps = 1;
    int checked = 0;
    for (uint64_t s = seed; checked < 3; s++) {
        c.seed = s;
        rebuilt r;
        rebuild_step0(ds, &c, 0.5, &r);
        dp_trainer *t;
        cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
        cr_assert_float_eq(dp_trainer_plan(t)->expected_batch, 3.5, 1e-12);
        dp_step_info info;
        cr_assert_eq(dp_trainer_step(t, &info), DP_OK, "%s", dp_last_error());
        cr_assert_eq(info.batch, r.count, "the trainer used the sampler's batch");
        const float *p = dp_mlp_params(dp_trainer_mlp(t));
        double g = gap(p, &r, 1.0, 3.5);
        cr_assert_lt(g, 2e-5, "update = -(lr/qN)(clipped sum + noise): off by %g", g);
        if (r.count > 0) {
            /* dividing by the realised size would be visibly different */
            cr_assert_gt(gap(p, &r, 1.0, (double)r.count), 1e-3);
            checked++;
        }
        free_rebuilt(&r);
        dp_trainer_destroy(t);
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, non_private_update_divides_by_realised_batch_size) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(40, 4, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.private_ = 0;
    c.batch_size = 10;
    c.lr = 0.3;
    c.max_steps = 1;
    for (uint64_t s = seed;; s++) {
        c.seed = s;
        rebuilt r;
        rebuild_step0(ds, &c, 0, &r);
        if (r.count == 0 || r.count == 10) {
            free_rebuilt(&r);
            continue;
        }
        dp_trainer *t;
        cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_step(t, NULL), DP_OK);
        double g = gap(dp_mlp_params(dp_trainer_mlp(t)), &r, 0.3, (double)r.count);
        cr_assert_lt(g, 2e-6, "non-private: plain mean over the realised batch (%g)", g);
        free_rebuilt(&r);
        dp_trainer_destroy(t);
        break;
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, empty_batch_is_a_noise_only_step) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(50, 4, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.hidden[0] = 3;
    c.batch_size = 0.05; /* q = 0.001: S_0 is almost always empty */
    c.noise_multiplier = 2.0;
    c.lr = 0.01;
    c.max_steps = 1;
    for (uint64_t s = seed;; s++) {
        c.seed = s;
        rebuilt r;
        rebuild_step0(ds, &c, 2.0, &r);
        if (r.count != 0) {
            free_rebuilt(&r);
            continue;
        }
        dp_trainer *t;
        cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
        dp_step_info info;
        cr_assert_eq(dp_trainer_step(t, &info), DP_OK, "%s", dp_last_error());
        cr_assert_eq(info.batch, 0);
        const float *p = dp_mlp_params(dp_trainer_mlp(t));
        double moved = 0;
        for (size_t i = 0; i < r.P; i++)
            moved = fmax(moved, fabs(p[i] - r.p0[i]));
        cr_assert_gt(moved, 0.1, "the noise moved the parameters");
        cr_assert_lt(gap(p, &r, 0.01, 0.05), 1e-4, "update = -(lr/qN) noise");
        const char *what;
        dp_privacy_event ev;
        cr_assert_eq(dp_ledger_count(dp_trainer_ledger(t)), 1);
        dp_ledger_entry(dp_trainer_ledger(t), 0, &what, &ev);
        cr_assert_eq(ev.steps, 1, "the empty step is charged like any other");
        free_rebuilt(&r);
        dp_trainer_destroy(t);
        break;
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, training_stops_before_the_budget_is_exceeded) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(1000, 6, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.batch_size = 100;
    c.noise_multiplier = 1.0;
    c.target_epsilon = 5.0;
    c.epochs = 50;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_run(t, NULL, NULL), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_stop_reason(t), DP_STOP_BUDGET);
    uint64_t done = dp_trainer_steps_done(t);
    cr_assert_lt(done, 500);
    cr_assert_gt(done, 0);
    double eps, next;
    cr_assert_eq(dp_trainer_epsilon(t, &eps), DP_OK);
    cr_assert_leq(eps, 5.0);
    dp_privacy_event one = {0.1, 1.0, 1};
    cr_assert_eq(dp_ledger_epsilon_if(dp_trainer_ledger(t), one, &next), DP_OK);
    cr_assert_gt(next, 5.0, "one more step would exceed the budget: %g", next);
    /* the accountant, asked afresh about what ran, agrees */
    dp_privacy_event ran = {0.1, 1.0, done};
    double again;
    cr_assert_eq(dp_account_epsilon(DP_ACCOUNTANT_RDP, &ran, 1, 1e-5, &again), DP_OK);
    cr_assert_float_eq(again, eps, 1e-9);
    /* and a further step is refused, leaving the ledger as it was */
    cr_assert_eq(dp_trainer_step(t, NULL), DP_E_PRIVACY);
    cr_assert(strstr(dp_last_error(), "above the target"), "%s", dp_last_error());
    cr_assert_eq(dp_trainer_steps_done(t), done);
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, dataset_ledger_entries_are_composed_with_training) {
    uint64_t seed = tu_seed();
    dp_ledger *prep;
    cr_assert_eq(dp_ledger_create(DP_ACCOUNTANT_RDP, 1e-5, &prep), DP_OK);
    dp_privacy_event stat = {1.0, 4.0, 3};
    cr_assert_eq(dp_ledger_add(prep, "prep: noisy mean of AGEP", stat), DP_OK);
    char *lj, extra[4096];
    cr_assert_eq(dp_ledger_to_json(prep, &lj), DP_OK);
    snprintf(extra, sizeof extra, "\"privacy\": {\"ledger\": %s}", lj);
    dp_ledger_free_string(lj);
    dp_ledger_destroy(prep);
    char *with = fx_dataset(500, 6, seed, NULL, extra),
         *without = fx_dataset(500, 6, seed, NULL, NULL);
    dp_dataset *a = open_split(with, "train"), *b = open_split(without, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.batch_size = 50;
    c.epochs = 2;
    c.target_epsilon = 3.0;
    dp_trainer *ta, *tb;
    cr_assert_eq(dp_trainer_create(a, &c, &ta), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_create(b, &c, &tb), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_plan(ta)->n_prior, 1);
    cr_assert_gt(dp_trainer_plan(ta)->prior_epsilon, 0);
    cr_assert_gt(dp_trainer_plan(ta)->noise_multiplier, dp_trainer_plan(tb)->noise_multiplier,
                 "the earlier release leaves less budget: more noise");
    cr_assert_eq(dp_trainer_run(ta, NULL, NULL), DP_OK);
    double eps;
    dp_trainer_epsilon(ta, &eps);
    cr_assert_leq(eps, 3.0);
    cr_assert_eq(dp_ledger_count(dp_trainer_ledger(ta)), 2);
    const char *what;
    dp_privacy_event ev;
    dp_ledger_entry(dp_trainer_ledger(ta), 0, &what, &ev);
    cr_assert_str_eq(what, "prep: noisy mean of AGEP");
    dp_trainer_destroy(ta);
    dp_trainer_destroy(tb);
    dp_dataset_close(a);
    dp_dataset_close(b);
    tu_rmrf(with), tu_rmrf(without);
    free(with), free(without);
}

static char *ledger_text(dp_trainer *t) {
    char *s;
    cr_assert_eq(dp_ledger_to_json(dp_trainer_ledger(t), &s), DP_OK);
    char *copy = strdup(s);
    dp_ledger_free_string(s);
    return copy;
}

Test(train, resume_after_interruption_equals_uninterrupted_run_bit_for_bit) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(600, 8, seed, NULL, NULL), ck[4300];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    dp_dataset *ds = open_split(dir, "train");
    for (int opt = 0; opt < 3; opt++) {
        dp_train_config c;
        small_net(&c);
        c.seed = seed + opt;
        c.optimizer = (dp_optimizer_kind)opt;
        c.lr = opt == DP_OPT_ADAM ? 0.01 : 0.2;
        c.lr_schedule = DP_LR_COSINE;
        c.batch_size = 60;
        c.epochs = 3;
        c.noise_multiplier = 1.1;
        dp_trainer *full, *part;
        cr_assert_eq(dp_trainer_create(ds, &c, &full), DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_run(full, NULL, NULL), DP_OK);
        cr_assert_eq(dp_trainer_create(ds, &c, &part), DP_OK);
        for (int s = 0; s < 13; s++)
            cr_assert_eq(dp_trainer_step(part, NULL), DP_OK);
        cr_assert_eq(dp_trainer_save(part, ck), DP_OK, "%s", dp_last_error());
        for (int s = 0; s < 3; s++)
            dp_trainer_step(part, NULL); /* lost work */
        dp_trainer_destroy(part);
        cr_assert_eq(dp_trainer_resume(ds, ck, &part), DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_steps_done(part), 13);
        cr_assert_eq(dp_trainer_run(part, NULL, NULL), DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_steps_done(part), dp_trainer_steps_done(full));
        size_t P = dp_mlp_nparams(dp_trainer_mlp(full));
        cr_assert_eq(
            memcmp(dp_mlp_params(dp_trainer_mlp(full)), dp_mlp_params(dp_trainer_mlp(part)), P * 4),
            0, "%s: parameters differ after resume", dp_optimizer_name(opt));
        char *la = ledger_text(full), *lb = ledger_text(part);
        cr_assert_str_eq(la, lb);
        free(la), free(lb);
        dp_trainer_destroy(full);
        dp_trainer_destroy(part);
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, resume_refuses_a_dataset_of_another_schema_and_corrupt_checkpoints) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(200, 6, seed, NULL, NULL),
         *other = fx_dataset(200, 6, seed, "other", NULL);
    char ck[4300];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    dp_dataset *ds = open_split(dir, "train"), *ods = open_split(other, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.noise_multiplier = 1;
    c.batch_size = 20;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK);
    dp_trainer_step(t, NULL);
    cr_assert_eq(dp_trainer_save(t, ck), DP_OK);
    dp_trainer_destroy(t);
    cr_assert_eq(dp_trainer_resume(ods, ck, &t), DP_E_SCHEMA);
    cr_assert(strstr(dp_last_error(), "schema"), "%s", dp_last_error());
    size_t len;
    char *bytes = tu_read_file(ck, &len);
    tu_write_file(ck, bytes, len - 10);
    cr_assert_eq(dp_trainer_resume(ds, ck, &t), DP_E_FORMAT);
    cr_assert(strstr(dp_last_error(), "truncated"), "%s", dp_last_error());
    free(bytes);
    dp_dataset_close(ds);
    dp_dataset_close(ods);
    tu_rmrf(dir), tu_rmrf(other);
    free(dir), free(other);
}

Test(train, noise_thread_gives_the_same_bits_as_inline_noise) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(300, 6, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.noise_multiplier = 1;
    c.batch_size = 30;
    c.epochs = 2;
    dp_trainer *a, *b;
    cr_assert_eq(dp_trainer_create(ds, &c, &a), DP_OK);
    c.noise_ahead = 0;
    cr_assert_eq(dp_trainer_create(ds, &c, &b), DP_OK);
    dp_trainer_run(a, NULL, NULL);
    dp_trainer_run(b, NULL, NULL);
    cr_assert_eq(memcmp(dp_mlp_params(dp_trainer_mlp(a)), dp_mlp_params(dp_trainer_mlp(b)),
                        4 * dp_mlp_nparams(dp_trainer_mlp(a))),
                 0);
    dp_trainer_destroy(a);
    dp_trainer_destroy(b);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, unseeded_runs_draw_keys_from_the_os) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(100, 6, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seeded = 0;
    c.noise_multiplier = 1;
    c.batch_size = 10;
    dp_trainer *a, *b;
    cr_assert_eq(dp_trainer_create(ds, &c, &a), DP_OK);
    cr_assert_eq(dp_trainer_create(ds, &c, &b), DP_OK);
    cr_assert_eq(dp_trainer_seeded(a), 0);
    cr_assert_neq(memcmp(dp_mlp_params(dp_trainer_mlp(a)), dp_mlp_params(dp_trainer_mlp(b)),
                         4 * dp_mlp_nparams(dp_trainer_mlp(a))),
                  0);
    dp_trainer_destroy(a);
    dp_trainer_destroy(b);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train, bad_configurations_are_refused) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(100, 6, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    dp_trainer *t = NULL;
    small_net(&c);
    c.noise_multiplier = 1;
    c.batch_size = 101;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    cr_assert(strstr(dp_last_error(), "sample rate"), "%s", dp_last_error());
    small_net(&c);
    c.noise_multiplier = 1;
    c.batch_size = 10;
    c.n_class_weight = 3;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    small_net(&c); /* neither sigma nor a target */
    c.batch_size = 10;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    small_net(&c);
    c.batch_size = 10;
    c.noise_multiplier = 0.5; /* one step at q = 0.1 already spends more than 0.5 */
    c.target_epsilon = 0.5;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_PRIVACY);
    cr_assert(strstr(dp_last_error(), "not one step fits"), "%s", dp_last_error());
    cr_assert_null(t);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

static size_t n_allocs;
static void *count_malloc(void *ud, size_t n) {
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return malloc(n);
}
static void *count_realloc(void *ud, void *p, size_t n) {
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return realloc(p, n);
}
static void count_free(void *ud, void *p) {
    free(p);
}

Test(train, steps_allocate_nothing) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(2000, 8, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.noise_multiplier = 1;
    c.batch_size = 100;
    c.optimizer = DP_OPT_ADAM;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK);
    cr_assert_eq(dp_trainer_step(t, NULL), DP_OK); /* first-touch of lazily sized workspaces */
    dp_set_allocator(count_malloc, count_realloc, count_free, NULL);
    for (int s = 0; s < 30; s++)
        cr_assert_eq(dp_trainer_step(t, NULL), DP_OK);
    dp_set_allocator(NULL, NULL, NULL, NULL);
    cr_assert_eq(n_allocs, 0, "%zu allocations in 30 steps", n_allocs);
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

/* The library side of --device cuda: where no device can run the step (a
 * build without the backend, or no GPU), dp_trainer_create fails with the
 * backend's status and one message, leaves no trainer, and leaks nothing
 * (ASan build); the nccl allreduce is refused on the cpu device. On a
 * machine with a GPU the creation must succeed instead, and the first step
 * too. */
Test(train, cuda_device_without_a_gpu_fails_cleanly_and_nccl_needs_cuda) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(400, 6, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.private_ = 0;
    c.batch_size = 40;
    c.nccl = 1;
    dp_trainer *t = (dp_trainer *)&c; /* must be reset to NULL */
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    cr_assert_null(t);
    cr_assert(strstr(dp_last_error(), "nccl"), "%s", dp_last_error());
    c.nccl = 0;
    c.device = DP_DEVICE_CUDA;
    dp_status avail = dp_device_available(DP_DEVICE_CUDA);
    dp_status st = dp_trainer_create(ds, &c, &t);
    if (avail == DP_OK) {
        cr_assert_eq(st, DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_step(t, NULL), DP_OK, "%s", dp_last_error());
        dp_trainer_destroy(t);
    } else {
        cr_assert(avail == DP_E_UNSUPPORTED || avail == DP_E_CUDA, "status %d", (int)avail);
        cr_assert_eq(st, avail, "%s", dp_last_error());
        cr_assert_null(t);
        cr_assert(
            strstr(dp_last_error(), avail == DP_E_CUDA ? "no CUDA device" : "no CUDA backend"),
            "%s", dp_last_error());
        cr_assert_null(strchr(dp_last_error(), '\n'), "one line: %s", dp_last_error());
    }
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

/* dp_trainer_resume_placed: the placement's set fields replace the
 * checkpoint's (device, allreduce, graph, check_every), the rest (plan,
 * keys, noise mode) is the checkpoint's; a CPU checkpoint moved to cuda
 * reaches the device (here: its clean failure without a GPU, or a step
 * with one) and nccl without cuda is refused as at creation. Moving the
 * noise thread changes no bit. */
Test(train, resume_placed_moves_a_run_without_changing_what_it_computes) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(400, 6, seed, NULL, NULL), ck[4300];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    dp_dataset *ds = open_split(dir, "train");
    dp_train_config c;
    small_net(&c);
    c.seed = seed;
    c.noise_multiplier = 1.3;
    c.batch_size = 40;
    c.epochs = 2;
    dp_trainer *full, *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &full), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_trainer_run(full, NULL, NULL), DP_OK);
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK);
    for (int s = 0; s < 7; s++)
        cr_assert_eq(dp_trainer_step(t, NULL), DP_OK);
    cr_assert_eq(dp_trainer_save(t, ck), DP_OK, "%s", dp_last_error());
    dp_trainer_destroy(t);

    dp_train_placement pl;
    dp_train_placement_keep(&pl);
    pl.allreduce = DP_ALLREDUCE_TREE;
    pl.noise_ahead = 0;
    pl.check_every = 7;
    pl.cuda_graph = 0;
    cr_assert_eq(dp_trainer_resume_placed(ds, ck, NULL, &pl, &t), DP_OK, "%s", dp_last_error());
    const dp_train_config *rc = dp_trainer_config(t);
    cr_assert_eq(rc->allreduce, DP_ALLREDUCE_TREE);
    cr_assert_eq(rc->noise_ahead, 0);
    cr_assert_eq(rc->check_every, 7);
    cr_assert_eq(rc->cuda_graph, 0);
    cr_assert_eq(rc->device, DP_DEVICE_CPU, "kept from the checkpoint");
    cr_assert_eq(rc->noise_mode, c.noise_mode);
    cr_assert_eq(dp_trainer_plan(t)->noise_multiplier, 1.3);
    cr_assert_eq(dp_trainer_run(t, NULL, NULL), DP_OK, "%s", dp_last_error());
    size_t P = dp_mlp_nparams(dp_trainer_mlp(full));
    cr_assert_eq(memcmp(dp_mlp_params(dp_trainer_mlp(full)), dp_mlp_params(dp_trainer_mlp(t)), P * 4),
                 0, "one rank: the placement must not change a bit");
    dp_trainer_destroy(t);

    dp_train_placement_keep(&pl);
    pl.nccl = 1;
    t = (dp_trainer *)&pl;
    cr_assert_eq(dp_trainer_resume_placed(ds, ck, NULL, &pl, &t), DP_E_USAGE);
    cr_assert_null(t);
    cr_assert(strstr(dp_last_error(), "nccl"), "%s", dp_last_error());

    dp_train_placement_keep(&pl);
    pl.device = DP_DEVICE_CUDA;
    dp_status avail = dp_device_available(DP_DEVICE_CUDA);
    dp_status st = dp_trainer_resume_placed(ds, ck, NULL, &pl, &t);
    if (avail == DP_OK) {
        cr_assert_eq(st, DP_OK, "%s", dp_last_error());
        cr_assert_eq(dp_trainer_config(t)->device, DP_DEVICE_CUDA);
        cr_assert_eq(dp_trainer_step(t, NULL), DP_OK, "%s", dp_last_error());
        dp_trainer_destroy(t);
    } else {
        cr_assert_eq(st, avail, "the cuda placement was not applied: %s", dp_last_error());
        cr_assert_null(t);
    }
    dp_trainer_destroy(full);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}
