/*
 * allreduce_ring.c: the bandwidth-optimal ring allreduce (DESIGN.md
 * algorithm 6, `ring`; Patarasuk & Yuan 2009, the algorithm of Baidu's
 * ring-allreduce and NCCL): a reduce-scatter then an allgather, each R-1
 * steps in which every rank sends one chunk (about n/R floats) to its right
 * neighbour while receiving one from its left. Cost 2(R-1) alpha +
 * 2 (R-1)/R n beta.
 *
 * Chunks are the partition of dp_comm_shard: chunk c = comm_chunk(n, R, c),
 * sizes differing by at most one, empty when n < R (an empty chunk sends
 * nothing: both ends know its size).
 *
 * Reduce-scatter, indices mod R. At step s = 0..R-2 rank r sends chunk
 * r-s-1 and receives chunk r-s-2, which it adds into its own copy:
 *
 *   s = 0:  r sends its own chunk r-1; r+1 receives it as chunk (r+1)-2.
 *   s:      r sends chunk r-s-1, the one it finished adding at step s-1.
 *   last (s = R-2): r receives chunk r-R = r: complete.
 *
 * so rank r ends owning chunk r, as dp_comm_reduce_scatter promises. The
 * sum of chunk c is accumulated in the fixed order x_{c+1}, x_{c+2}, ...,
 * x_c (each rank adds its term to the running sum it received), so runs are
 * deterministic. The allgather then circulates each finished chunk: at step
 * s rank r sends chunk r-s and receives chunk r-s-1 straight into place,
 * so every rank ends with the owners' bits.
 */
#include <limits.h>
#include "dist/comm_internal.h"

static int mod(int a, int R) {
    return ((a % R) + R) % R;
}

static dp_status rs_simple(dp_comm *c, float *buf, size_t n) {
    int R = c->size, r = c->rank, right = mod(r + 1, R), left = mod(r - 1, R);
    float *tmp;
    DP_TRY(comm_scratch(c, n / (size_t)R + 1, &tmp));
    for (int s = 0; s < R - 1; s++) {
        size_t sb, se, rb, re;
        comm_chunk(n, R, mod(r - s - 1, R), &sb, &se);
        comm_chunk(n, R, mod(r - s - 2, R), &rb, &re);
        DP_TRY(comm_xchg(c, buf + sb, se - sb, right, tmp, re - rb, left));
        comm_add(buf + rb, tmp, re - rb);
    }
    return DP_OK;
}

static dp_status ag_simple(dp_comm *c, float *buf, size_t n) {
    int R = c->size, r = c->rank, right = mod(r + 1, R), left = mod(r - 1, R);
    for (int s = 0; s < R - 1; s++) {
        size_t sb, se, rb, re;
        comm_chunk(n, R, mod(r - s, R), &sb, &se);
        comm_chunk(n, R, mod(r - s - 1, R), &rb, &re);
        DP_TRY(comm_xchg(c, buf + sb, se - sb, right, buf + rb, re - rb, left));
    }
    return DP_OK;
}

/* Chunks above INT_MAX floats (n > 2^31 R) take the plain loop over
 * comm_xchg, which splits messages; everything else the pipelined form. */
static int huge(size_t n, int R) {
    return n / (size_t)R + 1 > (size_t)INT_MAX;
}

static dp_status post(dp_comm *c, int send, float *p, size_t count, int peer, MPI_Request *req) {
    *req = MPI_REQUEST_NULL;
    if (!count) return DP_OK; /* the partner computes the same size and posts nothing either */
    int err;
    if (send) {
        comm_delay(c);
        err = MPI_Isend(p, (int)count, MPI_FLOAT, peer, 3, c->mc, req);
    } else {
        err = MPI_Irecv(p, (int)count, MPI_FLOAT, peer, 3, c->mc, req);
    }
    return err == MPI_SUCCESS ? DP_OK
                              : comm_mpi_fail(c, err, send ? "ring: MPI_Isend" : "ring: MPI_Irecv");
}

static dp_status wait1(dp_comm *c, MPI_Request *req) {
    int err = MPI_Wait(req, MPI_STATUS_IGNORE);
    return err == MPI_SUCCESS ? DP_OK : comm_mpi_fail(c, err, "ring: MPI_Wait");
}

/*
 * The receive of step s+1 is posted before step s's sum is done (two
 * receive buffers, alternating), as Open MPI's own ring does: when the left
 * neighbour's message for step s+1 arrives it finds its receive waiting and
 * is copied during whatever MPI call this rank is in, instead of costing
 * another round of handshakes once this rank gets to it. That matters most
 * when ranks share cores and every handshake may wait for a time slice.
 */
dp_status comm_ring_reduce_scatter(dp_comm *c, float *buf, size_t n) {
    int R = c->size, r = c->rank, right = mod(r + 1, R), left = mod(r - 1, R);
    if (huge(n, R)) return rs_simple(c, buf, n);
    size_t cap = n / (size_t)R + 1, sb, se, rb, re;
    float *tmp;
    DP_TRY(comm_scratch(c, 2 * cap, &tmp));
    MPI_Request rq[2], sq;
    comm_chunk(n, R, mod(r - 2, R), &rb, &re);
    DP_TRY(post(c, 0, tmp, re - rb, left, &rq[0]));
    comm_chunk(n, R, mod(r - 1, R), &sb, &se);
    DP_TRY(post(c, 1, buf + sb, se - sb, right, &sq));
    for (int s = 0; s < R - 1; s++) {
        if (s + 1 < R - 1) { /* receive of the next step, into the other buffer */
            size_t nb, ne;
            comm_chunk(n, R, mod(r - s - 3, R), &nb, &ne);
            DP_TRY(post(c, 0, tmp + (size_t)((s + 1) & 1) * cap, ne - nb, left, &rq[(s + 1) & 1]));
        }
        comm_chunk(n, R, mod(r - s - 2, R), &rb, &re);
        DP_TRY(wait1(c, &rq[s & 1]));
        comm_add(buf + rb, tmp + (size_t)(s & 1) * cap, re - rb);
        DP_TRY(wait1(c, &sq));
        if (s + 1 < R - 1) /* forward the chunk just completed */
            DP_TRY(post(c, 1, buf + rb, re - rb, right, &sq));
    }
    return DP_OK;
}

/* All R-1 receives go straight into place, so they are all posted first. */
dp_status comm_ring_allgather(dp_comm *c, float *buf, size_t n) {
    int R = c->size, r = c->rank, right = mod(r + 1, R), left = mod(r - 1, R);
    if (huge(n, R)) return ag_simple(c, buf, n);
    MPI_Request *rq = c->reqs, sq = MPI_REQUEST_NULL;
    size_t b, e;
    for (int s = 0; s < R - 1; s++) {
        comm_chunk(n, R, mod(r - s - 1, R), &b, &e);
        DP_TRY(post(c, 0, buf + b, e - b, left, &rq[s]));
    }
    for (int s = 0; s < R - 1; s++) {
        if (s > 0) DP_TRY(wait1(c, &rq[s - 1])); /* the chunk forwarded now */
        DP_TRY(wait1(c, &sq));
        comm_chunk(n, R, mod(r - s, R), &b, &e);
        DP_TRY(post(c, 1, buf + b, e - b, right, &sq));
    }
    DP_TRY(wait1(c, &rq[R - 2]));
    return wait1(c, &sq);
}
