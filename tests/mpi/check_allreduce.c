/*
 * check_allreduce.c: the MPI-side test of src/dist/ (run under mpirun by
 * tests/test_allreduce_mpi.sh with -np 1..4). Every rank regenerates every
 * rank's input from one broadcast seed, so each can compute the exact sum in
 * double as the reference; the algorithms' float sums must match it within
 * the rounding bound of R-term summation, agree bit for bit across ranks and
 * (naive, ring, tree) across runs. Also the split form with owner "noise",
 * the non-blocking form, the checksum, status agreement and the small
 * collectives. Exit 0 only if every rank passed every check.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/dp_internal.h" /* dp_error, to make a failure with a message */

static int R, me, failures;
static uint64_t seed;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "check_allreduce: rank %d/%d: FAIL: ", me, R);                             \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        failures++;                                                                                \
    } while (0)
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        dp_status s_ = (expr);                                                                     \
        if (s_ != DP_OK) FAIL("%s -> %s: %s", #expr, dp_status_str(s_), dp_last_error());          \
    } while (0)

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Input of rank r at coordinate i: a float in +-[2^-6, 2^6) with a random
 * mantissa, so different summation orders really round differently. */
static float input(int r, size_t i, uint64_t salt) {
    uint64_t h = mix(seed ^ mix(salt + (uint64_t)r * 0x100000001b3ULL) ^ mix(i));
    double u = (double)(h >> 11) * 0x1.0p-53; /* [0, 1) */
    int e = (int)((h >> 3) % 13) - 6;         /* [-6, 6] */
    return (float)((h & 1 ? -1.0 : 1.0) * ldexp(1.0 + u, e));
}

static void fill(float *buf, size_t n, uint64_t salt) {
    for (size_t i = 0; i < n; i++)
        buf[i] = input(me, i, salt);
}

/* ref[i] = exact-ish sum in double, tol[i] = bound on float summation error. */
static void reference(size_t n, uint64_t salt, double *ref, double *tol) {
    for (size_t i = 0; i < n; i++) {
        double s = 0, a = 0;
        for (int r = 0; r < R; r++) {
            double x = input(r, i, salt);
            s += x;
            a += fabs(x);
        }
        ref[i] = s;
        /* roundings of at most 2^-24 of a partial sum <= sum |x|, plus
         * one for the final float; doubled for slack. */
        tol[i] = 2.0 * R * 0x1.0p-24 * a;
    }
}

static void compare(const char *what, const float *buf, size_t b, size_t e, const double *ref,
                    const double *tol) {
    for (size_t i = b; i < e; i++)
        if (!(fabs((double)buf[i] - ref[i]) <= tol[i])) {
            FAIL("%s: element %zu of [%zu, %zu): %.9g, expected %.9g +- %.3g", what, i, b, e,
                 (double)buf[i], ref[i], tol[i]);
            return;
        }
}

static const dp_allreduce_algo algos[] = {DP_ALLREDUCE_MPI, DP_ALLREDUCE_NAIVE, DP_ALLREDUCE_RING,
                                          DP_ALLREDUCE_TREE};
#define NALGO 4
#define GUARD 12345.678f

/* One size: every algorithm, whole and split, against the reference. */
static void check_size(dp_comm *c, size_t n) {
    double *ref = malloc((n + 1) * sizeof *ref), *tol = malloc((n + 1) * sizeof *tol);
    float *mem = malloc((n + 2) * sizeof *mem), *first = malloc((n + 1) * sizeof *first);
    float *whole = malloc((n + 1) * sizeof *whole);
    float *buf = mem + 1;
    uint64_t salt = n * 7 + 1;
    reference(n, salt, ref, tol);
    for (int a = 0; a < NALGO; a++) {
        dp_allreduce_algo algo = algos[a];
        char what[96];
        snprintf(what, sizeof what, "allreduce %s n=%zu", dp_allreduce_name(algo), n);
        /* whole allreduce, with guards on both sides */
        mem[0] = GUARD;
        buf[n] = GUARD;
        fill(buf, n, salt);
        CHECK_OK(dp_comm_allreduce(c, buf, n, algo));
        if (mem[0] != GUARD || buf[n] != GUARD) FAIL("%s: wrote outside buf[0..n)", what);
        compare(what, buf, 0, n, ref, tol);
        int same = 0;
        CHECK_OK(dp_comm_check_same(c, buf, n, &same));
        if (!same && algo != DP_ALLREDUCE_MPI) FAIL("%s: ranks hold different bits", what);
        if (!same && algo == DP_ALLREDUCE_MPI)
            fprintf(stderr, "check_allreduce: note: %s: MPI_Allreduce left ranks differing\n",
                    what);
        memcpy(whole, buf, n * sizeof *buf);
        /* run to run: the same inputs give the same bits (not promised by mpi) */
        if (algo != DP_ALLREDUCE_MPI) {
            memcpy(first, buf, n * sizeof *buf);
            fill(buf, n, salt);
            CHECK_OK(dp_comm_allreduce(c, buf, n, algo));
            if (memcmp(first, buf, n * sizeof *buf))
                FAIL("%s: a second run gave different bits", what);
        }
        /* split form: reduce-scatter, owner changes its chunk, allgather */
        snprintf(what, sizeof what, "reduce-scatter %s n=%zu", dp_allreduce_name(algo), n);
        fill(buf, n, salt);
        buf[n] = GUARD;
        size_t cb = 1, ce = 0, xb, xe;
        CHECK_OK(dp_comm_reduce_scatter(c, buf, n, algo, &cb, &ce));
        CHECK_OK(dp_comm_shard(n, R, me, &xb, &xe));
        if (cb != xb || ce != xe)
            FAIL("%s: chunk [%zu, %zu), dp_comm_shard says [%zu, %zu)", what, cb, ce, xb, xe);
        if (buf[n] != GUARD) FAIL("%s: wrote past buf[n)", what);
        if (cb <= ce && ce <= n) {
            compare(what, buf, cb, ce, ref, tol);
            /* naive and ring sum each coordinate in the same order both ways */
            if ((algo == DP_ALLREDUCE_NAIVE || algo == DP_ALLREDUCE_RING) &&
                memcmp(buf + cb, whole + cb, (ce - cb) * sizeof *buf))
                FAIL("%s: chunk differs in bits from the allreduce", what);
            for (size_t i = 0; i < n; i++)
                buf[i] = i >= cb && i < ce ? input(R + 7, i, salt) : NAN;
        }
        snprintf(what, sizeof what, "allgather %s n=%zu", dp_allreduce_name(algo), n);
        CHECK_OK(dp_comm_allgather_chunks(c, buf, n, algo));
        if (buf[n] != GUARD) FAIL("%s: wrote past buf[n)", what);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&buf[i], &(float){input(R + 7, i, salt)}, sizeof(float))) {
                FAIL("%s: element %zu is %g, not its owner's %g", what, i, (double)buf[i],
                     (double)input(R + 7, i, salt));
                break;
            }
    }
    free(ref);
    free(tol);
    free(mem);
    free(first);
    free(whole);
}

/* Several requests in flight, algorithms mixed, waited in reverse order. */
static void check_nonblocking(dp_comm *c) {
    enum { K = 6 };
    size_t sizes[K] = {1000, 33, 4097, 1, 70000, (size_t)R + 1};
    float *bufs[K];
    int req[K];
    for (int k = 0; k < K; k++) {
        bufs[k] = malloc(sizes[k] * sizeof(float));
        fill(bufs[k], sizes[k], 1000 + k);
        CHECK_OK(dp_comm_iallreduce(c, bufs[k], sizes[k], algos[k % NALGO], &req[k]));
    }
    for (int k = K - 1; k >= 0; k--)
        CHECK_OK(dp_comm_wait(c, req[k]));
    for (int k = 0; k < K; k++) {
        double *ref = malloc(sizes[k] * sizeof *ref), *tol = malloc(sizes[k] * sizeof *tol);
        char what[64];
        snprintf(what, sizeof what, "iallreduce %s n=%zu", dp_allreduce_name(algos[k % NALGO]),
                 sizes[k]);
        reference(sizes[k], 1000 + k, ref, tol);
        compare(what, bufs[k], 0, sizes[k], ref, tol);
        free(ref);
        free(tol);
    }
    /* dp_comm_test until done, on an mpi request */
    fill(bufs[4], sizes[4], 1004);
    CHECK_OK(dp_comm_iallreduce(c, bufs[4], sizes[4], DP_ALLREDUCE_MPI, &req[0]));
    int done = 0;
    for (long spins = 0; !done && spins < 100000000L; spins++)
        CHECK_OK(dp_comm_test(c, req[0], &done));
    if (!done) FAIL("dp_comm_test never reported completion");
    if (dp_comm_wait(c, req[0]) != DP_E_USAGE) FAIL("a completed request can be waited twice");
    /* wait_all drains whatever is left */
    CHECK_OK(dp_comm_iallreduce(c, bufs[0], sizes[0], DP_ALLREDUCE_RING, &req[0]));
    CHECK_OK(dp_comm_iallreduce(c, bufs[1], sizes[1], DP_ALLREDUCE_MPI, &req[1]));
    CHECK_OK(dp_comm_wait_all(c));
    for (int k = 0; k < K; k++)
        free(bufs[k]);
}

static void check_checksum(dp_comm *c) {
    enum { N = 5000 };
    float *p = malloc(N * sizeof *p);
    for (size_t i = 0; i < N; i++)
        p[i] = input(0, i, 77); /* the same on every rank */
    int same = 0;
    CHECK_OK(dp_comm_check_same(c, p, N, &same));
    if (!same) FAIL("check_same: identical parameters reported different");
    if (R > 1) {
        if (me == R - 1) {
            uint32_t bits;
            memcpy(&bits, &p[N / 3], sizeof bits);
            bits ^= 1u; /* the last bit of one mantissa */
            memcpy(&p[N / 3], &bits, sizeof bits);
        }
        same = 1;
        CHECK_OK(dp_comm_check_same(c, p, N, &same));
        if (same) FAIL("check_same: a one-bit difference on rank %d went unnoticed", R - 1);
        same = 1;
        CHECK_OK(dp_comm_check_same(c, p, me == 0 ? N - 1 : N, &same)); /* lengths differ */
        if (same) FAIL("check_same: a shorter vector on rank 0 went unnoticed");
    }
    free(p);
}

static void check_agree(dp_comm *c) {
    dp_status g = DP_E_INTERNAL;
    dp_clear_error();
    if (dp_comm_agree(c, DP_OK, &g) != DP_OK || g != DP_OK) FAIL("agree: all OK gave %d", g);
    int bad = R > 1 ? 1 : 0;
    dp_status local = DP_OK;
    if (me == bad) local = dp_error(DP_E_IO, "X_train.npy: cannot read rows 10..20");
    dp_status ret = dp_comm_agree(c, local, &g);
    char want[128];
    snprintf(want, sizeof want,
             R > 1 ? "rank %d: X_train.npy: cannot read rows 10..20"
                   : "X_train.npy: cannot read rows 10..20",
             bad);
    if (g != DP_E_IO || ret != DP_E_IO)
        FAIL("agree: rank %d's DP_E_IO arrived as %d/%d", bad, g, ret);
    if (strcmp(dp_last_error(), want))
        FAIL("agree: message '%s', expected '%s'", dp_last_error(), want);
    if (R >= 3) { /* two failures: the lowest failing rank speaks for all */
        local = me == 2   ? dp_error(DP_E_NOMEM, "out of memory on two")
                : me == 1 ? dp_error(DP_E_FORMAT, "bad file on one")
                          : DP_OK;
        dp_comm_agree(c, local, &g);
        if (g != DP_E_FORMAT || strcmp(dp_last_error(), "rank 1: bad file on one"))
            FAIL("agree: two failing ranks gave %d '%s'", g, dp_last_error());
    }
    dp_clear_error();
}

static void check_small_collectives(dp_comm *c) {
    double d[3] = {me + 0.5, -(double)me, 1.0 / (me + 1)};
    CHECK_OK(dp_comm_allreduce_f64(c, d, 3, DP_OP_SUM));
    double want = 0;
    for (int r = 0; r < R; r++)
        want += r + 0.5;
    if (fabs(d[0] - want) > 1e-12) FAIL("allreduce f64 sum: %g, expected %g", d[0], want);
    uint64_t u[2] = {(uint64_t)me + 10, UINT64_MAX - (uint64_t)me};
    uint64_t v[2] = {u[0], u[1]};
    CHECK_OK(dp_comm_allreduce_u64(c, u, 2, DP_OP_MIN));
    CHECK_OK(dp_comm_allreduce_u64(c, v, 2, DP_OP_MAX));
    if (u[0] != 10 || u[1] != UINT64_MAX - (uint64_t)(R - 1) || v[0] != (uint64_t)R + 9 ||
        v[1] != UINT64_MAX)
        FAIL("allreduce u64 min/max wrong");
    uint64_t cnt = 1ULL << 40; /* counts above 32 bits */
    CHECK_OK(dp_comm_allreduce_u64(c, &cnt, 1, DP_OP_SUM));
    if (cnt != (uint64_t)R << 40) FAIL("allreduce u64 sum: %llu", (unsigned long long)cnt);
    char msg[64];
    snprintf(msg, sizeof msg, "from rank %d", me);
    CHECK_OK(dp_comm_bcast(c, msg, sizeof msg, R - 1));
    char expect[64];
    snprintf(expect, sizeof expect, "from rank %d", R - 1);
    if (strcmp(msg, expect)) FAIL("bcast: got '%s'", msg);
    if (dp_comm_bcast(c, msg, sizeof msg, R) != DP_E_USAGE) FAIL("bcast to root R accepted");
    float x = 1;
    if (dp_comm_allreduce(c, NULL, 3, DP_ALLREDUCE_RING) != DP_E_USAGE)
        FAIL("allreduce of a NULL buffer accepted");
    if (dp_comm_allreduce(c, &x, 1, (dp_allreduce_algo)9) != DP_E_USAGE)
        FAIL("an unknown algorithm accepted");
    CHECK_OK(dp_comm_barrier(c));
}

/* After a warm-up at the largest size, no call of any algorithm allocates. */
static size_t n_alloc;
static void *count_malloc(void *ud, size_t n) {
    n_alloc++;
    return malloc(n);
}
static void *count_realloc(void *ud, void *p, size_t n) {
    n_alloc++;
    return realloc(p, n);
}
static void count_free(void *ud, void *p) {
    free(p);
}

static void check_no_allocation(dp_comm *c) {
    size_t n = 100000;
    float *buf = malloc(n * sizeof *buf);
    fill(buf, n, 5);
    int req;
    for (int a = 0; a < NALGO; a++) { /* warm-up: scratch and request table grow here */
        CHECK_OK(dp_comm_allreduce(c, buf, n, algos[a]));
        CHECK_OK(dp_comm_reduce_scatter(c, buf, n, algos[a], NULL, NULL));
        CHECK_OK(dp_comm_allgather_chunks(c, buf, n, algos[a]));
        CHECK_OK(dp_comm_iallreduce(c, buf, n, algos[a], &req));
        CHECK_OK(dp_comm_wait(c, req));
    }
    n_alloc = 0;
    dp_set_allocator(count_malloc, count_realloc, count_free, NULL);
    for (int a = 0; a < NALGO; a++)
        for (size_t m = 1; m <= n; m *= 7) {
            fill(buf, m, 5);
            CHECK_OK(dp_comm_allreduce(c, buf, m, algos[a]));
            CHECK_OK(dp_comm_reduce_scatter(c, buf, m, algos[a], NULL, NULL));
            CHECK_OK(dp_comm_allgather_chunks(c, buf, m, algos[a]));
            CHECK_OK(dp_comm_iallreduce(c, buf, m, algos[a], &req));
            CHECK_OK(dp_comm_wait(c, req));
        }
    dp_set_allocator(NULL, NULL, NULL, NULL);
    if (n_alloc) FAIL("steady-state collectives allocated %zu times", n_alloc);
    free(buf);
}

int main(void) {
    dp_comm *c = NULL;
    if (dp_comm_open(&c) != DP_OK) {
        fprintf(stderr, "check_allreduce: dp_comm_open: %s\n", dp_last_error());
        return 2;
    }
    R = dp_comm_size(c);
    me = dp_comm_rank(c);
    if (getenv("OMPI_COMM_WORLD_SIZE") && !dp_comm_uses_mpi(c))
        FAIL("launched by mpirun but the communicator does not use MPI");
    const char *env = getenv("DP_TEST_SEED");
    seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    CHECK_OK(dp_comm_bcast(c, &seed, sizeof seed, 0));
    if (me == 0)
        fprintf(stderr, "check_allreduce: %d ranks, DP_TEST_SEED=%llu\n", R,
                (unsigned long long)seed);

    size_t sizes[] = {0,    1,    (size_t)R - 1, (size_t)R, (size_t)R + 1, 7,
                      1000, 4097, 8191,          1 << 14,   100003,        1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        check_size(c, sizes[k]);
    check_nonblocking(c);
    check_checksum(c);
    check_agree(c);
    check_small_collectives(c);
    check_no_allocation(c);

    uint64_t total = (uint64_t)failures;
    if (dp_comm_allreduce_u64(c, &total, 1, DP_OP_SUM) != DP_OK) total = failures + 1;
    if (me == 0)
        fprintf(stderr, "check_allreduce: %d ranks: %s (%llu failures)\n", R,
                total ? "FAILED" : "passed", (unsigned long long)total);
    dp_comm_close(c);
    return total ? 1 : 0;
}
