/*
 * test_comm.c: the single-rank communicator (no mpirun: MPI is never
 * initialised), the shard/chunk partition, and the algorithm-name helpers.
 * The multi-rank behaviour is tested under mpirun by test_allreduce_mpi.sh.
 */
#include <criterion/criterion.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include "core/dp_internal.h"
#include "testutil.h"

static dp_comm *open_single(void) {
    cr_assert_null(getenv("OMPI_COMM_WORLD_SIZE"), "this test must not run under mpirun");
    dp_comm *c = NULL;
    cr_assert_eq(dp_comm_open(&c), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_comm_size(c), 1);
    cr_assert_eq(dp_comm_rank(c), 0);
    cr_assert_eq(dp_comm_uses_mpi(c), 0);
    return c;
}

Test(comm, single_rank_open_does_not_initialise_mpi) {
    dp_comm *c = open_single();
    int inited = 1;
    MPI_Initialized(&inited);
    cr_assert_eq(inited, 0, "a plain run must not pay for MPI_Init");
    cr_assert_eq(dp_comm_barrier(c), DP_OK);
    dp_comm_close(c);
    dp_comm_close(NULL);
}

static const dp_allreduce_algo algos[] = {DP_ALLREDUCE_MPI, DP_ALLREDUCE_NAIVE, DP_ALLREDUCE_RING,
                                          DP_ALLREDUCE_TREE};

Test(comm, single_rank_collectives_are_identity) {
    uint64_t s = tu_seed();
    dp_comm *c = open_single();
    size_t n = 1237;
    float *buf = malloc(n * sizeof *buf), *orig = malloc(n * sizeof *orig);
    for (size_t i = 0; i < n; i++)
        orig[i] = (float)tu_normal(&s);
    for (int a = 0; a < 4; a++) {
        memcpy(buf, orig, n * sizeof *buf);
        cr_assert_eq(dp_comm_allreduce(c, buf, n, algos[a]), DP_OK);
        cr_assert_eq(memcmp(buf, orig, n * sizeof *buf), 0, "allreduce %d changed buf", a);
        size_t b = 99, e = 0;
        cr_assert_eq(dp_comm_reduce_scatter(c, buf, n, algos[a], &b, &e), DP_OK);
        cr_assert(b == 0 && e == n, "one rank owns the whole vector, got [%zu, %zu)", b, e);
        cr_assert_eq(dp_comm_allgather_chunks(c, buf, n, algos[a]), DP_OK);
        cr_assert_eq(memcmp(buf, orig, n * sizeof *buf), 0);
        int req = -1, done = 0;
        cr_assert_eq(dp_comm_iallreduce(c, buf, n, algos[a], &req), DP_OK);
        cr_assert_eq(dp_comm_test(c, req, &done), DP_OK);
        cr_assert_eq(done, 1);
        cr_assert_eq(dp_comm_iallreduce(c, buf, n, algos[a], &req), DP_OK);
        cr_assert_eq(dp_comm_wait(c, req), DP_OK);
        cr_assert_eq(dp_comm_wait(c, req), DP_E_USAGE, "a request is released by its wait");
        cr_assert_eq(memcmp(buf, orig, n * sizeof *buf), 0);
    }
    cr_assert_eq(dp_comm_allreduce(c, NULL, 0, DP_ALLREDUCE_RING), DP_OK, "n = 0 is fine");
    double d[2] = {1.5, -2};
    uint64_t u[2] = {7, UINT64_MAX};
    cr_assert_eq(dp_comm_allreduce_f64(c, d, 2, DP_OP_SUM), DP_OK);
    cr_assert_eq(dp_comm_allreduce_u64(c, u, 2, DP_OP_MAX), DP_OK);
    cr_assert(d[0] == 1.5 && d[1] == -2 && u[0] == 7 && u[1] == UINT64_MAX);
    char msg[] = "unchanged";
    cr_assert_eq(dp_comm_bcast(c, msg, sizeof msg, 0), DP_OK);
    cr_assert_str_eq(msg, "unchanged");
    int same = 0;
    cr_assert_eq(dp_comm_check_same(c, orig, n, &same), DP_OK);
    cr_assert_eq(same, 1);
    free(buf);
    free(orig);
    dp_comm_close(c);
}

Test(comm, bad_arguments_are_usage_errors) {
    dp_comm *c = open_single();
    float x = 0;
    cr_assert_eq(dp_comm_allreduce(c, NULL, 4, DP_ALLREDUCE_RING), DP_E_USAGE);
    cr_assert_eq(dp_comm_allreduce(c, &x, 1, (dp_allreduce_algo)4), DP_E_USAGE);
    cr_assert_eq(dp_comm_allreduce(c, &x, 1, (dp_allreduce_algo)-1), DP_E_USAGE);
    cr_assert_eq(dp_comm_reduce_scatter(c, NULL, 4, DP_ALLREDUCE_TREE, NULL, NULL), DP_E_USAGE);
    cr_assert_eq(dp_comm_iallreduce(c, &x, 1, DP_ALLREDUCE_MPI, NULL), DP_E_USAGE);
    cr_assert_eq(dp_comm_wait(c, 12), DP_E_USAGE);
    cr_assert_eq(dp_comm_bcast(c, &x, sizeof x, 1), DP_E_USAGE, "root 1 of 1 rank");
    cr_assert_eq(dp_comm_bcast(c, &x, sizeof x, -1), DP_E_USAGE);
    cr_assert_eq(dp_comm_allreduce_f64(c, NULL, 0, (dp_reduce_op)7), DP_E_USAGE);
    cr_assert_eq(dp_comm_open(NULL), DP_E_USAGE);
    cr_assert(strstr(dp_last_error(), "out is NULL"), "%s", dp_last_error());
    dp_comm_close(c);
}

Test(comm, agree_passes_status_and_message_through_on_one_rank) {
    dp_comm *c = open_single();
    dp_status g = DP_E_INTERNAL;
    cr_assert_eq(dp_comm_agree(c, DP_OK, &g), DP_OK);
    cr_assert_eq(g, DP_OK);
    dp_status s = dp_error(DP_E_IO, "X.npy: cannot read");
    cr_assert_eq(dp_comm_agree(c, s, &g), DP_E_IO);
    cr_assert_eq(g, DP_E_IO);
    cr_assert_str_eq(dp_last_error(), "X.npy: cannot read");
    cr_assert_eq(dp_comm_agree(c, DP_E_NOMEM, NULL), DP_E_NOMEM);
    dp_comm_close(c);
}

/* Reference: deal n items one by one to ranks in turn, then lay the piles out
 * in rank order; the partition must have exactly these sizes and offsets. */
Test(comm, shard_ranges_cover_exactly_and_differ_by_at_most_one) {
    size_t ns[] = {0, 1, 2, 5, 6, 7, 10, 13, 100, 1001, 65537};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (int R = 1; R <= 7; R++) {
            size_t n = ns[k], expect_b = 0, prev_end = 0, lo = (size_t)-1, hi = 0;
            size_t dealt[7] = {0};
            for (size_t i = 0; i < n; i++)
                dealt[i % (size_t)R]++;
            for (int r = 0; r < R; r++) {
                size_t b, e;
                cr_assert_eq(dp_comm_shard(n, R, r, &b, &e), DP_OK);
                cr_assert_eq(b, prev_end, "n=%zu R=%d r=%d: gap or overlap", n, R, r);
                cr_assert_eq(b, expect_b);
                cr_assert_eq(e - b, dealt[r], "n=%zu R=%d r=%d: size %zu, dealt %zu", n, R, r,
                             e - b, dealt[r]);
                expect_b += dealt[r];
                prev_end = e;
                lo = DP_MIN(lo, e - b);
                hi = DP_MAX(hi, e - b);
            }
            cr_assert_eq(prev_end, n, "n=%zu R=%d: the ranges do not end at n", n, R);
            cr_assert_leq(hi - lo, 1);
        }
    size_t b, e;
    cr_assert_eq(dp_comm_shard(10, 0, 0, &b, &e), DP_E_USAGE);
    cr_assert_eq(dp_comm_shard(10, 3, 3, &b, &e), DP_E_USAGE);
    cr_assert_eq(dp_comm_shard(10, 3, -1, &b, &e), DP_E_USAGE);
}

Test(comm, algorithm_names_round_trip) {
    const char *names[] = {"mpi", "naive", "ring", "tree"};
    for (int i = 0; i < 4; i++) {
        dp_allreduce_algo a = (dp_allreduce_algo)99;
        cr_assert_eq(dp_allreduce_parse(names[i], &a), DP_OK);
        cr_assert_eq((int)a, i);
        cr_assert_str_eq(dp_allreduce_name(a), names[i]);
    }
    dp_allreduce_algo a;
    cr_assert_eq(dp_allreduce_parse("Ring", &a), DP_E_USAGE);
    cr_assert(strstr(dp_last_error(), "mpi, naive, ring, tree"), "%s", dp_last_error());
    cr_assert_eq(dp_allreduce_parse("", &a), DP_E_USAGE);
    cr_assert_eq(dp_allreduce_parse(NULL, &a), DP_E_USAGE);
    cr_assert_str_eq(dp_allreduce_name((dp_allreduce_algo)9), "unknown");
}

Test(comm, bad_delay_setting_is_refused) {
    setenv("DPSGD_COMM_DELAY_US", "ten", 1);
    dp_comm *c = NULL;
    cr_assert_eq(dp_comm_open(&c), DP_E_USAGE);
    cr_assert_null(c);
    cr_assert(strstr(dp_last_error(), "DPSGD_COMM_DELAY_US"), "%s", dp_last_error());
    setenv("DPSGD_COMM_DELAY_US", "2.5", 1);
    cr_assert_eq(dp_comm_open(&c), DP_OK);
    dp_comm_close(c);
    unsetenv("DPSGD_COMM_DELAY_US");
}
