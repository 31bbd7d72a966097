/*
 * test_train_dist.c: the one-rank side of data-parallel training (the
 * multi-rank side is tests/test_train_mpi.sh under mpirun): a one-rank
 * communicator gives exactly the bits of one process in every noise mode and
 * with --overlap; the per-layer gradient callback (dp_mlp_clipped_grad_layers)
 * reports each layer once, in order, when its slice is final, and changes no
 * bit of the gradient; the zero-noise ablation clips, divides by qN and
 * charges nothing; the distributed settings survive the configuration JSON.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/train.h"
#include "testutil.h"
#include "train_fixture.h"

static dp_dataset *open_split(const char *dir) {
    dp_dataset *ds;
    cr_assert_eq(dp_dataset_open(dir, "train", 0, SIZE_MAX, &ds), DP_OK, "%s", dp_last_error());
    return ds;
}

static void small_net(dp_train_config *c, uint64_t seed) {
    dp_train_config_default(c);
    c->n_hidden = 2;
    c->hidden[0] = 12;
    c->hidden[1] = 7;
    c->seeded = 1;
    c->seed = seed;
    c->noise_multiplier = 1.1;
    c->batch_size = 40;
    c->epochs = 2;
    c->optimizer = DP_OPT_ADAM;
    c->lr = 0.01;
}

static float *params_after_run(dp_trainer *t) {
    cr_assert_eq(dp_trainer_run(t, NULL, NULL), DP_OK, "%s", dp_last_error());
    size_t P = dp_mlp_nparams(dp_trainer_mlp(t));
    float *p = malloc(P * sizeof(float));
    memcpy(p, dp_mlp_params(dp_trainer_mlp(t)), P * sizeof(float));
    return p;
}

Test(train_dist, one_rank_communicator_gives_the_bits_of_one_process_in_every_mode) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(800, 7, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir);
    dp_comm *comm;
    cr_assert_eq(dp_comm_open(&comm), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_comm_size(comm), 1, "not launched by mpirun: one rank");
    dp_train_config c;
    small_net(&c, seed);
    dp_trainer *ref;
    cr_assert_eq(dp_trainer_create(ds, &c, &ref), DP_OK, "%s", dp_last_error());
    float *want = params_after_run(ref);
    size_t P = dp_mlp_nparams(dp_trainer_mlp(ref));
    for (int mode = 0; mode < 2; mode++) {
        for (int overlap = 0; overlap < 2; overlap++) {
            for (int algo = DP_ALLREDUCE_MPI; algo <= DP_ALLREDUCE_TREE; algo++) {
                small_net(&c, seed);
                c.noise_mode = (dp_noise_mode)mode;
                c.overlap = overlap;
                c.allreduce = (dp_allreduce_algo)algo;
                dp_trainer *t;
                cr_assert_eq(dp_trainer_create_dist(ds, &c, comm, &t), DP_OK, "%s",
                             dp_last_error());
                float *got = params_after_run(t);
                cr_assert_eq(memcmp(got, want, P * sizeof(float)), 0,
                             "mode %d overlap %d algo %d: the single-process bits", mode, overlap,
                             algo);
                free(got);
                dp_trainer_destroy(t);
            }
        }
    }
    free(want);
    dp_trainer_destroy(ref);
    dp_comm_close(comm);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

typedef struct layer_log {
    dp_mlp *m;
    const float *grad;
    float *snap; /* [P]: each layer's slice copied when reported */
    int order[DP_MLP_MAX_LAYERS], calls;
} layer_log;

static void on_layer(int l, void *ud) {
    layer_log *g = ud;
    size_t w, b, out, in;
    dp_mlp_layer(g->m, l, &w, &b, &out, &in);
    memcpy(g->snap + w, g->grad + w, (b + out - w) * sizeof(float));
    if (g->calls < DP_MLP_MAX_LAYERS) g->order[g->calls] = l;
    g->calls++;
}

Test(train_dist, layer_callback_reports_each_final_slice_once_and_changes_no_bit) {
    uint64_t seed = tu_seed(), rng = seed;
    const size_t d = 9, n = 1300; /* several 512-row micro-batches on one thread */
    dp_mlp_config mc = {.n_in = d, .n_hidden = 2, .hidden = {16, 5}, .n_classes = 3};
    dp_mlp *m;
    cr_assert_eq(dp_mlp_create(&mc, 4096, &m), DP_OK);
    dp_mlp_init(m, seed);
    const size_t P = dp_mlp_nparams(m);
    float *X = malloc(n * d * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n * d; i++)
        X[i] = (float)(3 * tu_normal(&rng));
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(tu_uniform(&rng) * 3) % 3;
    dp_clip_config clip = {.mode = DP_CLIP_FLAT, .max_grad_norm = 0.5};
    float *a = calloc(P, sizeof(float)), *b = calloc(P, sizeof(float));
    float *snap = calloc(P, sizeof(float));
    const int threads[] = {1, 2};
    const size_t sizes[] = {n, 100, 0};
    for (int ti = 0; ti < 2; ti++) {
        omp_set_num_threads(threads[ti]);
        for (int si = 0; si < 3; si++) {
            size_t rows = sizes[si];
            memset(a, 0, P * sizeof(float));
            memset(b, 0, P * sizeof(float));
            memset(snap, 0, P * sizeof(float));
            cr_assert_eq(dp_mlp_clipped_grad(m, X, y, rows, &clip, NULL, a, NULL), DP_OK);
            layer_log g = {.m = m, .grad = b, .snap = snap};
            cr_assert_eq(
                dp_mlp_clipped_grad_layers(m, X, y, rows, &clip, NULL, b, NULL, on_layer, &g),
                DP_OK);
            cr_assert_eq(g.calls, 3, "threads %d rows %zu: one call per layer", threads[ti], rows);
            for (int l = 0; l < 3; l++)
                cr_assert_eq(g.order[l], l, "layers reported in order");
            cr_assert_eq(memcmp(a, b, P * sizeof(float)), 0, "the same bits as the fused call");
            cr_assert_eq(memcmp(snap, b, P * sizeof(float)), 0,
                         "threads %d rows %zu: every slice was final when reported", threads[ti],
                         rows);
        }
    }
    omp_set_num_threads(2);
    free(a), free(b), free(snap), free(X), free(y);
    dp_mlp_destroy(m);
}

Test(train_dist, zero_noise_clips_divides_by_expected_batch_and_charges_nothing) {
    uint64_t seed = tu_seed();
    char *dir = fx_dataset(60, 5, seed, NULL, NULL);
    dp_dataset *ds = open_split(dir);
    dp_train_config c;
    dp_train_config_default(&c);
    c.n_hidden = 1;
    c.hidden[0] = 4;
    c.seeded = 1;
    c.seed = seed;
    c.zero_noise = 1;
    c.batch_size = 7.5; /* never a realised size */
    c.clip.max_grad_norm = 0.05;
    c.lr = 1.0;
    c.max_steps = 1;
    dp_trainer *t;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_OK, "%s", dp_last_error());
    /* the update rebuilt from public pieces: the sampler's S_0 and the clipped sum */
    size_t N = dp_dataset_rows(ds), d = dp_dataset_cols(ds), count;
    double q = 7.5 / (double)N;
    dp_key ks;
    dp_key_from_seed(seed, "sample", &ks);
    size_t cap = dp_poisson_capacity(N, q), *idx = malloc(cap * sizeof(size_t));
    cr_assert_eq(dp_poisson_sample(&ks, 0, N, q, 0, N, idx, cap, &count), DP_OK);
    dp_mlp *m = dp_trainer_mlp(t);
    size_t P = dp_mlp_nparams(m);
    float *p0 = malloc(P * 4), *sum = calloc(P, 4), *X = malloc((count + 1) * d * 4);
    int32_t *y = malloc((count + 1) * 4);
    memcpy(p0, dp_mlp_params(m), P * 4);
    for (size_t i = 0; i < count; i++) {
        memcpy(X + i * d, dp_dataset_X(ds) + idx[i] * d, d * 4);
        y[i] = dp_dataset_y(ds)[idx[i]];
    }
    cr_assert_eq(dp_mlp_clipped_grad(m, X, y, count, &c.clip, NULL, sum, NULL), DP_OK);
    cr_assert_eq(dp_trainer_step(t, NULL), DP_OK, "%s", dp_last_error());
    double worst = 0, moved = 0;
    for (size_t i = 0; i < P; i++) {
        double want = p0[i] - (double)sum[i] / 7.5;
        worst = fmax(worst, fabs(dp_mlp_params(m)[i] - want));
        moved = fmax(moved, fabs(dp_mlp_params(m)[i] - p0[i]));
    }
    cr_assert_lt(worst, 1e-6, "update = -(lr/qN) clipped sum, no noise (off by %g)", worst);
    if (count) cr_assert_gt(moved, 1e-4, "the step moved the parameters");
    double eps;
    dp_trainer_epsilon(t, &eps);
    cr_assert(isinf(eps), "no noise: not private");
    cr_assert_eq(dp_ledger_count(dp_trainer_ledger(t)), 0, "nothing charged");
    cr_assert_eq(dp_trainer_plan(t)->noise_std, 0);
    dp_trainer_destroy(t);
    /* refused with a target epsilon, and without clipping */
    c.target_epsilon = 1;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    c.target_epsilon = 0;
    c.private_ = 0;
    cr_assert_eq(dp_trainer_create(ds, &c, &t), DP_E_USAGE);
    free(p0), free(sum), free(X), free(y), free(idx);
    dp_dataset_close(ds);
    tu_rmrf(dir);
    free(dir);
}

Test(train_dist, distributed_settings_survive_the_configuration_json) {
    dp_train_config c, back;
    dp_train_config_default(&c);
    cr_assert_eq(c.allreduce, DP_ALLREDUCE_MPI);
    cr_assert_eq(c.noise_mode, DP_NOISE_OWNER);
    cr_assert_eq(c.overlap, 0);
    cr_assert_eq(c.check_every, 100);
    c.allreduce = DP_ALLREDUCE_TREE;
    c.noise_mode = DP_NOISE_SHARES;
    c.overlap = 1;
    c.check_every = 7;
    c.zero_noise = 1;
    char *js;
    cr_assert_eq(dp_train_config_to_json(&c, &js), DP_OK);
    cr_assert_eq(dp_train_config_from_json(js, &back), DP_OK, "%s", dp_last_error());
    cr_assert_eq(back.allreduce, DP_ALLREDUCE_TREE);
    cr_assert_eq(back.noise_mode, DP_NOISE_SHARES);
    cr_assert_eq(back.overlap, 1);
    cr_assert_eq(back.check_every, 7);
    cr_assert_eq(back.zero_noise, 1);
    /* a configuration written before these settings existed: the defaults */
    char *old = strstr(js, ",\"allreduce\"");
    cr_assert_not_null(old);
    strcpy(old, "}");
    cr_assert_eq(dp_train_config_from_json(js, &back), DP_OK, "%s", dp_last_error());
    cr_assert_eq(back.allreduce, DP_ALLREDUCE_MPI);
    cr_assert_eq(back.noise_mode, DP_NOISE_OWNER);
    cr_assert_eq(back.check_every, 100);
    cr_assert_eq(back.zero_noise, 0);
    dp_train_free_string(js);
    dp_noise_mode mode;
    cr_assert_eq(dp_noise_mode_parse("shares", &mode), DP_OK);
    cr_assert_eq(mode, DP_NOISE_SHARES);
    cr_assert_str_eq(dp_noise_mode_name(DP_NOISE_OWNER), "owner");
    cr_assert_eq(dp_noise_mode_parse("owners", &mode), DP_E_USAGE);
}
