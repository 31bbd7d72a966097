/*
 * comm.c: the communicator (DESIGN.md "Scale"): MPI_COMM_WORLD when launched
 * by mpirun, a single rank without MPI otherwise; status agreement so ranks
 * fail together; small collectives for counts; the parameter checksum of
 * DESIGN.md algorithm 5 (BLAKE2b from libsodium); and the point-to-point
 * exchange that the naive, ring and tree algorithms are built on.
 */
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dist/comm_internal.h"

/* Communicators this library has open, and whether it was this library that
 * initialised MPI (then the last close finalises it). */
static int open_count;
static int we_initialised;

dp_status comm_mpi_fail(const dp_comm *c, int err, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", err);
    return dp_error(DP_E_MPI, "rank %d: %s: %s", c ? c->rank : -1, what, s);
}

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static dp_status init_mpi(dp_comm *c) {
    int inited = 0, finalized = 0, err;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized)
        return dp_error(DP_E_MPI, "comm open: MPI was already finalised in this process; "
                                  "it cannot be started twice");
    if (!inited) {
        int provided = 0;
        err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (err != MPI_SUCCESS) return comm_mpi_fail(NULL, err, "MPI_Init_thread");
        we_initialised = 1;
    }
    err = MPI_Comm_dup(MPI_COMM_WORLD, &c->mc);
    if (err != MPI_SUCCESS) return comm_mpi_fail(NULL, err, "MPI_Comm_dup");
    /* Failures come back as codes (turned into DP_E_MPI) rather than killing
     * the process from inside MPI, where the transport allows it. */
    MPI_Comm_set_errhandler(c->mc, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->mc, &c->rank);
    MPI_Comm_size(c->mc, &c->size);
    c->use_mpi = 1;
    return DP_OK;
}

DP_API dp_status dp_comm_open(dp_comm **out) {
    if (!out) return dp_error(DP_E_USAGE, "comm open: out is NULL");
    *out = NULL;
    dp_comm *c = dp_calloc(1, sizeof *c);
    if (!c) return dp_error(DP_E_NOMEM, "comm open: cannot allocate the communicator");
    c->rank = 0;
    c->size = 1;
    c->mc = MPI_COMM_NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (launched_by_mpirun() || inited) {
        dp_status s = init_mpi(c);
        if (s != DP_OK) {
            dp_free(c);
            return s;
        }
    }
    open_count++; /* from here on, dp_comm_close undoes this open */
    const char *d = getenv("DPSGD_COMM_DELAY_US");
    if (d && *d) {
        char *end;
        double v = strtod(d, &end);
        if (*end || !(v >= 0 && v <= 1e7)) {
            dp_comm_close(c);
            return dp_error(DP_E_USAGE,
                            "DPSGD_COMM_DELAY_US: expected microseconds in "
                            "[0, 1e7], found '%s'",
                            d);
        }
        c->delay_us = v;
    }
    c->reqs = dp_calloc(2 * (size_t)c->size, sizeof *c->reqs);
    c->counts = dp_calloc((size_t)c->size, sizeof *c->counts);
    c->displs = dp_calloc((size_t)c->size, sizeof *c->displs);
    if (!c->reqs || !c->counts || !c->displs) {
        dp_comm_close(c);
        return dp_error(DP_E_NOMEM, "comm open: cannot allocate tables for %d ranks", c->size);
    }
    *out = c;
    return DP_OK;
}

DP_API void dp_comm_close(dp_comm *c) {
    if (!c) return;
    if (c->use_mpi) {
        /* An MPI request never waited still belongs to MPI, and every rank
         * started it, so it completes; a deferred one of ours never started
         * and is dropped (running it here could wait for ranks that will
         * never call it). */
        for (int i = 0; i < c->pending_cap; i++)
            if (c->pending[i].active && !c->pending[i].deferred)
                MPI_Wait(&c->pending[i].mreq, MPI_STATUS_IGNORE);
        if (c->mc != MPI_COMM_NULL) MPI_Comm_free(&c->mc);
    }
    dp_free(c->scratch);
    dp_free(c->reqs);
    dp_free(c->counts);
    dp_free(c->displs);
    dp_free(c->pending);
    dp_free(c);
    if (--open_count == 0 && we_initialised) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
        we_initialised = 0;
    }
}

DP_API int dp_comm_rank(const dp_comm *c) {
    return c ? c->rank : 0;
}
DP_API int dp_comm_size(const dp_comm *c) {
    return c ? c->size : 1;
}
DP_API int dp_comm_uses_mpi(const dp_comm *c) {
    return c ? c->use_mpi : 0;
}

DP_API dp_status dp_comm_barrier(dp_comm *c) {
    if (!c) return dp_error(DP_E_USAGE, "comm barrier: comm is NULL");
    if (!c->use_mpi) return DP_OK;
    int err = MPI_Barrier(c->mc);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "MPI_Barrier");
}

DP_API void dp_comm_abort(dp_comm *c, int code) {
    if (c && c->use_mpi) MPI_Abort(MPI_COMM_WORLD, code);
}

/*
 * Agreement: one MPI_Allreduce(MIN) of "my rank if I failed, else INT_MAX"
 * finds the lowest failing rank; only when someone failed, a broadcast from
 * that rank carries its code and message. The common all-OK path costs one
 * small allreduce; a failing path two collectives, and every rank leaves with
 * the same status, so the next phase is skipped everywhere instead of the
 * healthy ranks waiting forever in a collective the failed one never enters.
 */
DP_API dp_status dp_comm_agree(dp_comm *c, dp_status local, dp_status *global) {
    if (global) *global = local;
    if (!c) return dp_error(DP_E_USAGE, "comm agree: comm is NULL");
    if (!c->use_mpi || c->size == 1) return local;
    int mine = local != DP_OK ? c->rank : INT_MAX, lowest = INT_MAX;
    int err = MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, c->mc);
    if (err != MPI_SUCCESS) {
        if (global) *global = DP_E_MPI;
        return comm_mpi_fail(c, err, "comm agree: MPI_Allreduce");
    }
    if (lowest == INT_MAX) {
        if (global) *global = DP_OK;
        return DP_OK;
    }
    struct {
        int code;
        char msg[1000];
    } m;
    memset(&m, 0, sizeof m);
    if (c->rank == lowest) {
        m.code = (int)local;
        snprintf(m.msg, sizeof m.msg, "%s",
                 *dp_last_error() ? dp_last_error() : dp_status_str(local));
    }
    err = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, lowest, c->mc);
    if (err != MPI_SUCCESS) {
        if (global) *global = DP_E_MPI;
        return comm_mpi_fail(c, err, "comm agree: MPI_Bcast");
    }
    m.msg[sizeof m.msg - 1] = '\0';
    dp_status g = (dp_status)m.code;
    if (global) *global = g;
    return dp_error(g, "rank %d: %s", lowest, m.msg);
}

static MPI_Op mpi_op(dp_reduce_op op) {
    return op == DP_OP_MIN ? MPI_MIN : op == DP_OP_MAX ? MPI_MAX : MPI_SUM;
}

/* MPI counts are int: go through long buffers in pieces. */
static dp_status allreduce_typed(dp_comm *c, void *buf, size_t n, size_t elem, MPI_Datatype t,
                                 dp_reduce_op op, const char *what) {
    if (!c) return dp_error(DP_E_USAGE, "%s: comm is NULL", what);
    if (n && !buf) return dp_error(DP_E_USAGE, "%s: buf is NULL with n = %zu", what, n);
    if (op != DP_OP_SUM && op != DP_OP_MIN && op != DP_OP_MAX)
        return dp_error(DP_E_USAGE, "%s: unknown reduce op %d", what, (int)op);
    if (!c->use_mpi || c->size == 1) return DP_OK;
    for (size_t off = 0; off < n;) {
        size_t k = DP_MIN(n - off, (size_t)INT_MAX);
        int err =
            MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)k, t, mpi_op(op), c->mc);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, what);
        off += k;
    }
    return DP_OK;
}

DP_API dp_status dp_comm_allreduce_f64(dp_comm *c, double *buf, size_t n, dp_reduce_op op) {
    return allreduce_typed(c, buf, n, sizeof *buf, MPI_DOUBLE, op, "comm allreduce f64");
}

DP_API dp_status dp_comm_allreduce_u64(dp_comm *c, uint64_t *buf, size_t n, dp_reduce_op op) {
    return allreduce_typed(c, buf, n, sizeof *buf, MPI_UINT64_T, op, "comm allreduce u64");
}

DP_API dp_status dp_comm_bcast(dp_comm *c, void *buf, size_t bytes, int root) {
    if (!c) return dp_error(DP_E_USAGE, "comm bcast: comm is NULL");
    if (root < 0 || root >= c->size)
        return dp_error(DP_E_USAGE, "comm bcast: root %d outside [0, %d)", root, c->size);
    if (bytes && !buf) return dp_error(DP_E_USAGE, "comm bcast: buf is NULL");
    if (!c->use_mpi || c->size == 1) return DP_OK;
    for (size_t off = 0; off < bytes;) {
        size_t k = DP_MIN(bytes - off, (size_t)INT_MAX);
        int err = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, c->mc);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "comm bcast: MPI_Bcast");
        off += k;
    }
    return DP_OK;
}

DP_API dp_status dp_comm_check_same(dp_comm *c, const float *params, size_t n, int *same) {
    if (!c || !same) return dp_error(DP_E_USAGE, "comm check same: comm or same is NULL");
    if (n && !params) return dp_error(DP_E_USAGE, "comm check same: params is NULL");
    *same = 1;
    if (!c->use_mpi || c->size == 1) return DP_OK;
    if (sodium_init() < 0)
        return dp_error(DP_E_INTERNAL, "comm check same: libsodium failed to initialise");
    /* n goes into the hash too, so a rank holding a shorter model differs. */
    crypto_generichash_state st;
    uint8_t digest[crypto_generichash_BYTES_MIN];
    uint64_t len = n;
    crypto_generichash_init(&st, NULL, 0, sizeof digest);
    crypto_generichash_update(&st, (const uint8_t *)&len, sizeof len);
    if (n) crypto_generichash_update(&st, (const uint8_t *)params, n * sizeof *params);
    crypto_generichash_final(&st, digest, sizeof digest);
    uint64_t h;
    memcpy(&h, digest, sizeof h);
    /* min(h) == max(h) on all ranks iff all equal; max(h) = ~min(~h), so one
     * MIN allreduce of two words answers it. */
    uint64_t v[2] = {h, ~h};
    int err = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MIN, c->mc);
    if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "comm check same: MPI_Allreduce");
    *same = v[0] == ~v[1];
    return DP_OK;
}

/* ---- shared by the algorithm files ---- */

dp_status comm_scratch(dp_comm *c, size_t n, float **out) {
    if (n > c->scratch_cap) {
        if (n > SIZE_MAX / sizeof(float))
            return dp_error(DP_E_NOMEM, "rank %d: allreduce scratch of %zu floats", c->rank, n);
        float *p = dp_malloc(n * sizeof(float));
        if (!p)
            return dp_error(DP_E_NOMEM, "rank %d: cannot allocate %zu bytes of allreduce scratch",
                            c->rank, n * sizeof(float));
        dp_free(c->scratch);
        c->scratch = p;
        c->scratch_cap = n;
    }
    *out = c->scratch;
    return DP_OK;
}

void comm_delay(const dp_comm *c) {
    if (c->delay_us <= 0) return;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((double)(t.tv_sec - t0.tv_sec) * 1e6 + (double)(t.tv_nsec - t0.tv_nsec) * 1e-3 <
             c->delay_us);
}

/* Pieces of at most 2^30 floats; 8 pieces each way covers 8 Gi floats. */
#define XCHG_PIECE ((size_t)1 << 30)
#define XCHG_MAX_PIECES 8

dp_status comm_xchg(dp_comm *c, const float *sbuf, size_t scount, int dest, float *rbuf,
                    size_t rcount, int src) {
    MPI_Request r[2 * XCHG_MAX_PIECES];
    int nr = 0, err;
    if (scount > XCHG_PIECE * XCHG_MAX_PIECES || rcount > XCHG_PIECE * XCHG_MAX_PIECES)
        return dp_error(DP_E_RANGE, "rank %d: allreduce message of %zu floats exceeds %zu", c->rank,
                        DP_MAX(scount, rcount), XCHG_PIECE * XCHG_MAX_PIECES);
    if (scount && rcount && scount <= XCHG_PIECE && rcount <= XCHG_PIECE) {
        /* the common case: one message each way */
        comm_delay(c);
        err = MPI_Sendrecv(sbuf, (int)scount, MPI_FLOAT, dest, 0, rbuf, (int)rcount, MPI_FLOAT, src,
                           0, c->mc, MPI_STATUS_IGNORE);
        return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "allreduce: MPI_Sendrecv");
    }
    for (size_t off = 0; off < rcount; off += XCHG_PIECE) {
        err = MPI_Irecv(rbuf + off, (int)DP_MIN(rcount - off, XCHG_PIECE), MPI_FLOAT, src, 0, c->mc,
                        &r[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "allreduce: MPI_Irecv");
    }
    for (size_t off = 0; off < scount; off += XCHG_PIECE) {
        comm_delay(c);
        err = MPI_Isend(sbuf + off, (int)DP_MIN(scount - off, XCHG_PIECE), MPI_FLOAT, dest, 0,
                        c->mc, &r[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "allreduce: MPI_Isend");
    }
    err = MPI_Waitall(nr, r, MPI_STATUSES_IGNORE);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "allreduce: MPI_Waitall");
}

/* -O2's "very cheap" vectoriser leaves a loop of unknown length scalar;
 * the simd pragma (OpenMP is on) makes it AVX: bench/allreduce's gamma. */
void comm_add(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}
