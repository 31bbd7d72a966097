/*
 * allreduce_naive.c: the seed's "from scratch" allreduce (DESIGN.md
 * algorithm 6, `naive`): every rank sends its whole vector to every other
 * rank and sums all R vectors itself, in rank order 0..R-1, so the result is
 * deterministic and the same bits on every rank. Cost (R-1)(alpha + n beta)
 * per rank on a one-port link, and n floats of scratch: the baseline
 * the ring and tree algorithms are measured against.
 */
#include <limits.h>
#include <string.h>
#include "dist/comm_internal.h"

/* Scratch slot of rank k's contribution (this rank's own stays in buf). */
static float *slot(float *scratch, size_t len, int me, int k) {
    return scratch + (size_t)(k < me ? k : k - 1) * len;
}

/*
 * out[0..m) <- x_0 + x_1 + ... + x_{R-1}, left to right, where x_me = mine
 * (which may be `out` itself) and the others come from the scratch slots.
 * Blocks of 1024 keep the partial sums in L1 and let `out` alias `mine`.
 */
static void sum_in_rank_order(float *out, const float *mine, float *scratch, size_t len, size_t m,
                              int me, int R) {
    enum { BLK = 1024 };
    float acc[BLK];
    for (size_t off = 0; off < m; off += BLK) {
        size_t k = DP_MIN((size_t)BLK, m - off);
        const float *x0 = me == 0 ? mine + off : slot(scratch, len, me, 0) + off;
        memcpy(acc, x0, k * sizeof *acc);
        for (int r = 1; r < R; r++) {
            const float *restrict x = r == me ? mine + off : slot(scratch, len, me, r) + off;
#pragma omp simd
            for (size_t i = 0; i < k; i++)
                acc[i] += x[i];
        }
        memcpy(out + off, acc, k * sizeof *acc);
    }
}

static dp_status too_long(const dp_comm *c, size_t n) {
    return dp_error(DP_E_RANGE, "rank %d: naive allreduce takes at most %d floats, found %zu",
                    c->rank, INT_MAX, n);
}

/* Post receives of `len` floats from every other rank into the scratch slots,
 * then sends of send(k)[0..scount(k)) to every other rank k, and wait. Peers
 * are visited from rank+1 onwards so that no rank is everybody's first. */
static dp_status exchange(dp_comm *c, float *scratch, size_t rlen, const float *buf, size_t n,
                          int whole) {
    int R = c->size, me = c->rank, nr = 0, err;
    for (int d = 1; d < R; d++) {
        int k = (me - d + R) % R;
        if (!rlen) continue;
        err = MPI_Irecv(slot(scratch, rlen, me, k), (int)rlen, MPI_FLOAT, k, 1, c->mc,
                        &c->reqs[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "naive: MPI_Irecv");
    }
    for (int d = 1; d < R; d++) {
        int k = (me + d) % R;
        size_t b = 0, e = n;
        if (!whole) comm_chunk(n, R, k, &b, &e);
        if (e == b) continue;
        comm_delay(c);
        err = MPI_Isend(buf + b, (int)(e - b), MPI_FLOAT, k, 1, c->mc, &c->reqs[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "naive: MPI_Isend");
    }
    err = MPI_Waitall(nr, c->reqs, MPI_STATUSES_IGNORE);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "naive: MPI_Waitall");
}

dp_status comm_naive_allreduce(dp_comm *c, float *buf, size_t n) {
    if (n > (size_t)INT_MAX) return too_long(c, n);
    float *scratch;
    DP_TRY(comm_scratch(c, (size_t)(c->size - 1) * n, &scratch));
    DP_TRY(exchange(c, scratch, n, buf, n, 1));
    sum_in_rank_order(buf, buf, scratch, n, n, c->rank, c->size);
    return DP_OK;
}

/* Every rank sends each owner that owner's chunk; the owner sums the R
 * pieces of its chunk in rank order (the same order as the allreduce). */
dp_status comm_naive_reduce_scatter(dp_comm *c, float *buf, size_t n) {
    if (n > (size_t)INT_MAX) return too_long(c, n);
    size_t b, e;
    comm_chunk(n, c->size, c->rank, &b, &e);
    float *scratch;
    DP_TRY(comm_scratch(c, (size_t)(c->size - 1) * (e - b), &scratch));
    DP_TRY(exchange(c, scratch, e - b, buf, n, 0));
    sum_in_rank_order(buf + b, buf + b, scratch, e - b, e - b, c->rank, c->size);
    return DP_OK;
}

/* Every owner sends its chunk to every other rank, straight into place. */
dp_status comm_naive_allgather(dp_comm *c, float *buf, size_t n) {
    if (n > (size_t)INT_MAX) return too_long(c, n);
    int R = c->size, me = c->rank, nr = 0, err;
    size_t mb, me_end;
    comm_chunk(n, R, me, &mb, &me_end);
    for (int d = 1; d < R; d++) {
        int k = (me - d + R) % R;
        size_t b, e;
        comm_chunk(n, R, k, &b, &e);
        if (e == b) continue;
        err = MPI_Irecv(buf + b, (int)(e - b), MPI_FLOAT, k, 2, c->mc, &c->reqs[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "naive allgather: MPI_Irecv");
    }
    for (int d = 1; d < R && me_end > mb; d++) {
        comm_delay(c);
        err = MPI_Isend(buf + mb, (int)(me_end - mb), MPI_FLOAT, (me + d) % R, 2, c->mc,
                        &c->reqs[nr++]);
        if (err != MPI_SUCCESS) return comm_mpi_fail(c, err, "naive allgather: MPI_Isend");
    }
    err = MPI_Waitall(nr, c->reqs, MPI_STATUSES_IGNORE);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "naive allgather: MPI_Waitall");
}
