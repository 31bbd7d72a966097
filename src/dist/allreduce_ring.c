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
#include "dist/comm_internal.h"

static int mod(int a, int R) {
    return ((a % R) + R) % R;
}

dp_status comm_ring_reduce_scatter(dp_comm *c, float *buf, size_t n) {
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

dp_status comm_ring_allgather(dp_comm *c, float *buf, size_t n) {
    int R = c->size, r = c->rank, right = mod(r + 1, R), left = mod(r - 1, R);
    for (int s = 0; s < R - 1; s++) {
        size_t sb, se, rb, re;
        comm_chunk(n, R, mod(r - s, R), &sb, &se);
        comm_chunk(n, R, mod(r - s - 1, R), &rb, &re);
        DP_TRY(comm_xchg(c, buf + sb, se - sb, right, buf + rb, re - rb, left));
    }
    return DP_OK;
}
