/*
 * comm_internal.h: what the files of src/dist/ share and nobody else sees:
 * the layout of dp_comm (MPI handles, preallocated scratch and request
 * tables), the point-to-point exchange every algorithm is built on, and the
 * entry points of the naive, ring and tree algorithms (allreduce_*.c).
 * Relies on Open MPI's mpi.h; comm.h states the public contracts.
 */
#ifndef DP_COMM_INTERNAL_H
#define DP_COMM_INTERNAL_H
#include <mpi.h>
#include "core/dp_internal.h"

/* One outstanding non-blocking allreduce (see dp_comm_iallreduce). */
typedef struct comm_req {
    int active;   /* slot in use */
    int deferred; /* 1: one of ours, runs inside wait; 0: an MPI request */
    int ran;      /* deferred: already run by the wait of a later request */
    float *buf;
    size_t n;
    dp_allreduce_algo algo;
    uint64_t seq; /* start order, to run deferred requests in order */
    MPI_Request mreq;
} comm_req;

struct dp_comm {
    int rank, size;
    int use_mpi;          /* 0: single rank, no MPI call is ever made */
    MPI_Comm mc;          /* private duplicate of MPI_COMM_WORLD */
    float *scratch;       /* receive space of our algorithms, grown once */
    size_t scratch_cap;   /* in floats */
    MPI_Request *reqs;    /* 2 * size requests (naive posts them all at once) */
    int *counts, *displs; /* size ints each, for MPI_Reduce_scatter / Allgatherv */
    double delay_us;      /* DPSGD_COMM_DELAY_US: busy-wait per message (ours only) */
    comm_req *pending;    /* request table of dp_comm_iallreduce */
    int pending_cap;
    uint64_t next_seq;
};

/* [*b, *e) of chunk r of n among R: the formula documented at dp_comm_shard. */
static inline void comm_chunk(size_t n, int R, int r, size_t *b, size_t *e) {
    size_t base = n / (size_t)R, extra = n % (size_t)R, ur = (size_t)r;
    *b = ur * base + (ur < extra ? ur : extra);
    *e = *b + base + (ur < extra ? 1 : 0);
}

/* A pointer to at least n floats of scratch owned by the handle (grows, never
 * shrinks; the old contents are not kept). */
dp_status comm_scratch(dp_comm *c, size_t n, float **out);

/* Record an MPI failure as DP_E_MPI: "rank R: <what>: <MPI's error string>". */
dp_status comm_mpi_fail(const dp_comm *c, int err, const char *what);

/* Busy-wait DPSGD_COMM_DELAY_US microseconds (no-op when unset). */
void comm_delay(const dp_comm *c);

/* Send sbuf[0..scount) to `dest` while receiving rcount floats from `src` into
 * rbuf; a side whose count is 0 sends or posts nothing (both partners compute
 * the same count from (n, R), so they agree on it). Counts above INT_MAX go in
 * pieces. One delay (comm_delay) per message sent. */
dp_status comm_xchg(dp_comm *c, const float *sbuf, size_t scount, int dest, float *rbuf,
                    size_t rcount, int src);

/* dst[i] += src[i] for i < n (vectorised; dst and src do not overlap). */
void comm_add(float *restrict dst, const float *restrict src, size_t n);

/* The algorithms, called for size >= 2 and n >= 1 only (allreduce.c screens
 * the trivial cases). Each leaves the same result on every rank. */
dp_status comm_naive_allreduce(dp_comm *c, float *buf, size_t n);
dp_status comm_naive_reduce_scatter(dp_comm *c, float *buf, size_t n);
dp_status comm_naive_allgather(dp_comm *c, float *buf, size_t n);
dp_status comm_ring_reduce_scatter(dp_comm *c, float *buf, size_t n);
dp_status comm_ring_allgather(dp_comm *c, float *buf, size_t n);
dp_status comm_tree_allreduce(dp_comm *c, float *buf, size_t n);
dp_status comm_tree_reduce_scatter(dp_comm *c, float *buf, size_t n);
dp_status comm_tree_allgather(dp_comm *c, float *buf, size_t n);

/* Messages below this many bytes take recursive doubling in the tree
 * algorithm; larger ones take recursive halving-doubling (Rabenseifner). */
#define COMM_TREE_SMALL_BYTES ((size_t)32768)

#endif
