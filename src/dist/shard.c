/*
 * shard.c: which rows of a dataset (or which chunk of a reduce-scatter) a
 * rank owns: contiguous, ascending, balanced to within one element. The
 * formula is comm_chunk in comm_internal.h, stated in comm.h, so that the
 * trainer's shard, the noise owner's chunk and every algorithm agree.
 */
#include "dist/comm_internal.h"

DP_API dp_status dp_comm_shard(size_t n, int nranks, int rank, size_t *begin, size_t *end) {
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return dp_error(DP_E_USAGE, "comm shard: rank %d outside [0, %d)", rank, nranks);
    size_t b, e;
    comm_chunk(n, nranks, rank, &b, &e);
    if (begin) *begin = b;
    if (end) *end = e;
    return DP_OK;
}
