/*
 * allreduce.c: the dispatch of the float allreduce (DESIGN.md algorithm 6):
 * argument checks, the trivial cases (one rank, n = 0), the `mpi` algorithm
 * (MPI_Allreduce, MPI_Reduce_scatter + MPI_Allgatherv), and the request
 * table of the non-blocking form. naive, ring and tree live in
 * allreduce_<name>.c.
 */
#include <limits.h>
#include <string.h>
#include "dist/comm_internal.h"

static const char *const algo_names[] = {"mpi", "naive", "ring", "tree"};
#define NALGO ((int)(sizeof algo_names / sizeof algo_names[0]))

DP_API dp_status dp_allreduce_parse(const char *name, dp_allreduce_algo *out) {
    for (int i = 0; name && i < NALGO; i++)
        if (!strcmp(name, algo_names[i])) {
            if (out) *out = (dp_allreduce_algo)i;
            return DP_OK;
        }
    return dp_error(DP_E_USAGE, "allreduce: expected one of mpi, naive, ring, tree, found '%s'",
                    name ? name : "(null)");
}

DP_API const char *dp_allreduce_name(dp_allreduce_algo algo) {
    return (int)algo >= 0 && (int)algo < NALGO ? algo_names[algo] : "unknown";
}

static dp_status check(const dp_comm *c, const float *buf, size_t n, dp_allreduce_algo algo,
                       const char *what) {
    if (!c) return dp_error(DP_E_USAGE, "%s: comm is NULL", what);
    if (n && !buf)
        return dp_error(DP_E_USAGE, "rank %d: %s: buf is NULL with n = %zu", c->rank, what, n);
    if ((int)algo < 0 || (int)algo >= NALGO)
        return dp_error(DP_E_USAGE, "%s: unknown algorithm %d", what, (int)algo);
    return DP_OK;
}

/* ---- algo mpi ---- */

static dp_status mpi_allreduce(dp_comm *c, float *buf, size_t n) {
    for (size_t off = 0; off < n;) {
        size_t k = DP_MIN(n - off, (size_t)INT_MAX);
        int err = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, c->mc);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "allreduce mpi: MPI_Allreduce");
        off += k;
    }
    return DP_OK;
}

/* counts[] and displs[] of the chunk partition, for the v-collectives. */
static dp_status mpi_layout(dp_comm *c, size_t n, const char *what) {
    if (n > (size_t)INT_MAX)
        return dp_error(DP_E_UNSUPPORTED,
                        "rank %d: %s: algorithm mpi takes at most %d floats "
                        "here, found %zu (use ring or tree)",
                        c->rank, what, INT_MAX, n);
    for (int r = 0; r < c->size; r++) {
        size_t b, e;
        comm_chunk(n, c->size, r, &b, &e);
        c->counts[r] = (int)(e - b);
        c->displs[r] = (int)b;
    }
    return DP_OK;
}

static dp_status mpi_reduce_scatter(dp_comm *c, float *buf, size_t n) {
    DP_TRY(mpi_layout(c, n, "reduce-scatter"));
    /* In place, MPI_Reduce_scatter takes the whole vector from buf and puts
     * this rank's block at the start of buf; move it to where it belongs. */
    int err = MPI_Reduce_scatter(MPI_IN_PLACE, buf, c->counts, MPI_FLOAT, MPI_SUM, c->mc);
    if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "reduce-scatter mpi: MPI_Reduce_scatter");
    if (c->displs[c->rank])
        memmove(buf + c->displs[c->rank], buf, (size_t)c->counts[c->rank] * sizeof *buf);
    return DP_OK;
}

static dp_status mpi_allgather(dp_comm *c, float *buf, size_t n) {
    DP_TRY(mpi_layout(c, n, "allgather"));
    int err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c->counts, c->displs,
                             MPI_FLOAT, c->mc);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "allgather mpi: MPI_Allgatherv");
}

/* ---- dispatch ---- */

DP_API dp_status dp_comm_allreduce(dp_comm *c, float *buf, size_t n, dp_allreduce_algo algo) {
    DP_TRY(check(c, buf, n, algo, "allreduce"));
    if (!c->use_mpi || c->size == 1 || n == 0) return DP_OK;
    switch (algo) {
    case DP_ALLREDUCE_MPI:
        return mpi_allreduce(c, buf, n);
    case DP_ALLREDUCE_NAIVE:
        return comm_naive_allreduce(c, buf, n);
    case DP_ALLREDUCE_RING:
        DP_TRY(comm_ring_reduce_scatter(c, buf, n));
        return comm_ring_allgather(c, buf, n);
    case DP_ALLREDUCE_TREE:
        return comm_tree_allreduce(c, buf, n);
    }
    return DP_E_INTERNAL; /* unreachable: check() screened algo */
}

DP_API dp_status dp_comm_reduce_scatter(dp_comm *c, float *buf, size_t n, dp_allreduce_algo algo,
                                        size_t *chunk_begin, size_t *chunk_end) {
    DP_TRY(check(c, buf, n, algo, "reduce-scatter"));
    size_t b, e;
    comm_chunk(n, c->size, c->rank, &b, &e);
    if (chunk_begin) *chunk_begin = b;
    if (chunk_end) *chunk_end = e;
    if (!c->use_mpi || c->size == 1 || n == 0) return DP_OK;
    switch (algo) {
    case DP_ALLREDUCE_MPI:
        return mpi_reduce_scatter(c, buf, n);
    case DP_ALLREDUCE_NAIVE:
        return comm_naive_reduce_scatter(c, buf, n);
    case DP_ALLREDUCE_RING:
        return comm_ring_reduce_scatter(c, buf, n);
    case DP_ALLREDUCE_TREE:
        return comm_tree_reduce_scatter(c, buf, n);
    }
    return DP_E_INTERNAL;
}

DP_API dp_status dp_comm_allgather_chunks(dp_comm *c, float *buf, size_t n,
                                          dp_allreduce_algo algo) {
    DP_TRY(check(c, buf, n, algo, "allgather"));
    if (!c->use_mpi || c->size == 1 || n == 0) return DP_OK;
    switch (algo) {
    case DP_ALLREDUCE_MPI:
        return mpi_allgather(c, buf, n);
    case DP_ALLREDUCE_NAIVE:
        return comm_naive_allgather(c, buf, n);
    case DP_ALLREDUCE_RING:
        return comm_ring_allgather(c, buf, n);
    case DP_ALLREDUCE_TREE:
        return comm_tree_allgather(c, buf, n);
    }
    return DP_E_INTERNAL;
}

/* ---- non-blocking form ----
 * The request table is an array of slots in the handle; a request id is a
 * slot index. MPI requests run in MPI from the start; ours are recorded and
 * run by the wait, earliest first (see comm.h for what overlaps). */

DP_API dp_status dp_comm_iallreduce(dp_comm *c, float *buf, size_t n, dp_allreduce_algo algo,
                                    int *request) {
    DP_TRY(check(c, buf, n, algo, "iallreduce"));
    if (!request) return dp_error(DP_E_USAGE, "iallreduce: request is NULL");
    *request = -1;
    int slot = -1;
    for (int i = 0; i < c->pending_cap && slot < 0; i++)
        if (!c->pending[i].active) slot = i;
    if (slot < 0) {
        int cap = c->pending_cap ? 2 * c->pending_cap : 8;
        comm_req *p = dp_realloc(c->pending, (size_t)cap * sizeof *p);
        if (!p) return dp_error(DP_E_NOMEM, "iallreduce: cannot grow the request table");
        memset(p + c->pending_cap, 0, (size_t)(cap - c->pending_cap) * sizeof *p);
        slot = c->pending_cap;
        c->pending = p;
        c->pending_cap = cap;
    }
    comm_req *q = &c->pending[slot];
    memset(q, 0, sizeof *q);
    q->buf = buf;
    q->n = n;
    q->algo = algo;
    q->seq = c->next_seq++;
    q->deferred = 1;
    q->mreq = MPI_REQUEST_NULL;
    if (algo == DP_ALLREDUCE_MPI && c->use_mpi && c->size > 1 && n > 0 && n <= (size_t)INT_MAX) {
        int err = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->mc, &q->mreq);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "iallreduce mpi: MPI_Iallreduce");
        q->deferred = 0;
    }
    q->active = 1;
    *request = slot;
    return DP_OK;
}

static dp_status check_request(const dp_comm *c, int request, const char *what) {
    if (!c) return dp_error(DP_E_USAGE, "%s: comm is NULL", what);
    if (request < 0 || request >= c->pending_cap || !c->pending[request].active)
        return dp_error(DP_E_USAGE, "rank %d: %s: no outstanding request %d", c->rank, what,
                        request);
    return DP_OK;
}

/* Run every deferred request started no later than `upto`, in start order. */
static dp_status run_deferred(dp_comm *c, uint64_t upto) {
    for (;;) {
        comm_req *next = NULL;
        for (int i = 0; i < c->pending_cap; i++) {
            comm_req *q = &c->pending[i];
            if (q->active && q->deferred && !q->ran && q->seq <= upto &&
                (!next || q->seq < next->seq))
                next = q;
        }
        if (!next) return DP_OK;
        next->ran = 1;
        dp_status s = dp_comm_allreduce(c, next->buf, next->n, next->algo);
        if (s != DP_OK) return s;
    }
}

DP_API dp_status dp_comm_test(dp_comm *c, int request, int *done) {
    DP_TRY(check_request(c, request, "test"));
    if (!done) return dp_error(DP_E_USAGE, "test: done is NULL");
    comm_req *q = &c->pending[request];
    *done = 0;
    if (q->deferred) {
        /* ours progress only when asked: run it (and earlier ones) now */
        dp_status s = run_deferred(c, q->seq);
        q->active = 0;
        *done = 1;
        return s;
    } else {
        int err = MPI_Test(&q->mreq, done, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) {
            q->active = 0;
            return comm_mpi_fail(c, err, "test: MPI_Test");
        }
    }
    if (*done) q->active = 0;
    return DP_OK;
}

DP_API dp_status dp_comm_wait(dp_comm *c, int request) {
    DP_TRY(check_request(c, request, "wait"));
    comm_req *q = &c->pending[request];
    dp_status s = DP_OK;
    if (q->deferred) {
        s = run_deferred(c, q->seq);
    } else {
        int err = MPI_Wait(&q->mreq, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS) s = comm_mpi_fail(c, err, "wait: MPI_Wait");
    }
    q->active = 0;
    return s;
}

DP_API dp_status dp_comm_wait_all(dp_comm *c) {
    if (!c) return dp_error(DP_E_USAGE, "wait all: comm is NULL");
    dp_status first = DP_OK;
    for (;;) {
        int next = -1;
        for (int i = 0; i < c->pending_cap; i++)
            if (c->pending[i].active && (next < 0 || c->pending[i].seq < c->pending[next].seq))
                next = i;
        if (next < 0) return first;
        dp_status s = dp_comm_wait(c, next);
        if (first == DP_OK) first = s;
    }
}
