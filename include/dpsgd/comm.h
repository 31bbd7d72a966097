/*
 * comm.h: the communication layer of data-parallel DP-SGD (DESIGN.md
 * algorithms 3, 5, 6): a communicator over MPI_COMM_WORLD (or a single rank
 * without MPI), status agreement so ranks fail together, collectives for
 * counts, and four in-place float allreduce algorithms (mpi, naive, ring,
 * tree), each also as reduce-scatter + allgather so the owner of each chunk
 * can add that chunk's noise between the two halves.
 *
 * Rules for every collective here (as for MPI collectives): all ranks call
 * it, in the same order, with the same n, algo and root. Only the thread that
 * opened the communicator calls it (MPI_THREAD_FUNNELED).
 */
#ifndef DPSGD_COMM_H
#define DPSGD_COMM_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_comm dp_comm;

/* ---- the communicator ----
 * dp_comm_open: if the process was started by a launcher (OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_RANK in the environment) or MPI is already initialised,
 * the communicator spans MPI_COMM_WORLD (through a private duplicate, so our
 * messages never match the caller's). MPI is initialised here when needed
 * (MPI_Init_thread, MPI_THREAD_FUNNELED), and finalised by the dp_comm_close
 * that closes the last communicator this library opened; MPI cannot be
 * initialised twice in a process, so an open after that fails (DP_E_MPI).
 * Otherwise (a plain `dpsgd train ...`) the communicator is one rank and MPI
 * is never touched (a singleton MPI_Init costs about 0.3 s): every collective
 * then returns at once and leaves its buffers as they are.
 * DP_E_MPI when MPI fails to start, DP_E_NOMEM. */
DP_API dp_status dp_comm_open(dp_comm **out);
/* Free the handle (NULL is accepted); see dp_comm_open for MPI_Finalize.
 * Outstanding mpi requests are completed first; outstanding requests of our
 * algorithms (not yet run, see dp_comm_iallreduce) are dropped. */
DP_API void dp_comm_close(dp_comm *comm);

DP_API int dp_comm_rank(const dp_comm *comm);
DP_API int dp_comm_size(const dp_comm *comm);
/* 1 if the communicator runs over MPI (launched by mpirun, even with -np 1). */
DP_API int dp_comm_uses_mpi(const dp_comm *comm);

DP_API dp_status dp_comm_barrier(dp_comm *comm);

/* For a failure that must end every rank at once (a rank that cannot agree
 * any more): over MPI this is MPI_Abort(MPI_COMM_WORLD, code) and does not
 * return. On the single-rank communicator it returns; the caller exits. */
DP_API void dp_comm_abort(dp_comm *comm, int code);

/* Status agreement at a phase boundary, so that a rank that failed (shard
 * unreadable, out of memory) makes all ranks fail together instead of leaving
 * the others waiting in the next collective. `local` is this rank's status;
 * every rank gets the status of the LOWEST failing rank in *global (may be
 * NULL) and as the return value, and that rank's dp_last_error() message
 * becomes every rank's message, prefixed "rank K: " when there is more than
 * one rank. All ranks OK: DP_OK, messages untouched. On one rank the status
 * passes through unchanged. DP_E_MPI if the agreement itself failed. */
DP_API dp_status dp_comm_agree(dp_comm *comm, dp_status local, dp_status *global);

/* ---- small collectives (counts and statistics for distributed prep) ---- */
typedef enum dp_reduce_op { DP_OP_SUM = 0, DP_OP_MIN = 1, DP_OP_MAX = 2 } dp_reduce_op;

/* In place over buf[0..n), element-wise across ranks (MPI_Allreduce). Sums of
 * uint64 wrap modulo 2^64; sums of doubles may depend on MPI's order. */
DP_API dp_status dp_comm_allreduce_f64(dp_comm *comm, double *buf, size_t n, dp_reduce_op op);
DP_API dp_status dp_comm_allreduce_u64(dp_comm *comm, uint64_t *buf, size_t n, dp_reduce_op op);
/* Copy `bytes` bytes of root's buf to every rank's buf. DP_E_USAGE for a root
 * outside [0, size). */
DP_API dp_status dp_comm_bcast(dp_comm *comm, void *buf, size_t bytes, int root);

/* ---- partition ----
 * The rows (of a dataset) or the chunk (of a reduce-scatter) of rank `rank`
 * among `nranks`: [*begin, *end) with
 *     base = n / nranks, extra = n % nranks,
 *     begin = rank * base + min(rank, extra),  end = begin + base + (rank < extra).
 * Contiguous, ascending in rank, covering [0, n) exactly, sizes differing by
 * at most one (the first n % nranks ranks get one more); empty ranges when
 * n < nranks. A pure function of (n, nranks, rank). DP_E_USAGE for
 * nranks < 1 or rank outside [0, nranks). */
DP_API dp_status dp_comm_shard(size_t n, int nranks, int rank, size_t *begin, size_t *end);

/* ---- float allreduce (gradients) ---- */
typedef enum dp_allreduce_algo {
    DP_ALLREDUCE_MPI = 0,   /* MPI_Allreduce: the library's tuned collective */
    DP_ALLREDUCE_NAIVE = 1, /* all-to-all; each rank sums in rank order 0..R-1 */
    DP_ALLREDUCE_RING = 2,  /* reduce-scatter + allgather around a ring */
    DP_ALLREDUCE_TREE = 3,  /* recursive doubling (small), halving-doubling (large) */
} dp_allreduce_algo;

/* "mpi", "naive", "ring", "tree" (exact, lower case). DP_E_USAGE otherwise,
 * with a message listing the names. */
DP_API dp_status dp_allreduce_parse(const char *name, dp_allreduce_algo *out);
/* The name of an algorithm; "unknown" for a value outside the enum. */
DP_API const char *dp_allreduce_name(dp_allreduce_algo algo);

/* buf[0..n) <- the element-wise sum over ranks of buf[0..n), in place, on
 * every rank. Any n (0, n < R, n not divisible by R). Every rank ends with
 * the same bits for naive, ring and tree (one rank computes each sum, or
 * partners compute a + b and b + a, which IEEE addition makes equal). naive,
 * ring and tree are deterministic run to run (a fixed summation order for
 * each coordinate: naive in rank order 0..R-1; ring for chunk c in order
 * c+1, c+2, ..., c (mod R); tree in its fixed pairing order). mpi depends on
 * MPI's choice. Results differ between algorithms only by rounding.
 * Scratch memory is kept in the handle and grows to the largest n seen, so
 * steady-state calls allocate nothing. Environment DPSGD_COMM_DELAY_US=x
 * makes our three algorithms (never mpi) busy-wait x microseconds before
 * every message they send: latency injection for cost-model experiments
 * only, unfair to MPI_Allreduce by construction, and meaningful only with no
 * more ranks than cores (a busy-waiting rank holds a core that an
 * oversubscribed neighbour needs; docs/scaling.md). Read at dp_comm_open;
 * DP_E_USAGE there for a value that is not a number in [0, 1e7].
 * DP_E_USAGE (NULL buf with n > 0, unknown algo), DP_E_NOMEM, DP_E_MPI. */
DP_API dp_status dp_comm_allreduce(dp_comm *comm, float *buf, size_t n, dp_allreduce_algo algo);

/* The split form, for owner noise (DESIGN.md algorithm 3, --noise-mode owner):
 * dp_comm_reduce_scatter leaves in buf[*chunk_begin .. *chunk_end) the
 * complete sum over ranks of that range, where the range is
 * dp_comm_shard(n, size, rank): this rank's chunk, a pure function of
 * (n, R, rank), the same for every algorithm. The rest of buf is left
 * unspecified. The caller may change its chunk (add noise), then
 * dp_comm_allgather_chunks copies every rank's chunk to all ranks, so buf
 * holds on every rank the owners' chunks, bit for bit. The composition of the
 * two equals dp_comm_allreduce up to rounding (with the same summation order
 * for naive and ring). Chunk pointers may be NULL. algo mpi uses
 * MPI_Reduce_scatter and MPI_Allgatherv (n <= INT_MAX there). */
DP_API dp_status dp_comm_reduce_scatter(dp_comm *comm, float *buf, size_t n, dp_allreduce_algo algo,
                                        size_t *chunk_begin, size_t *chunk_end);
DP_API dp_status dp_comm_allgather_chunks(dp_comm *comm, float *buf, size_t n,
                                          dp_allreduce_algo algo);

/* ---- non-blocking allreduce (overlap a layer's allreduce with computing
 * the gradients of earlier layers) ----
 * dp_comm_iallreduce starts the allreduce of buf[0..n) and gives a request
 * id; buf must not be touched until dp_comm_wait(request) returns, and then
 * holds the sum. Every rank must make the same sequence of starts, waits and
 * other collectives (SPMD code does); a rank may wait a later request before
 * an earlier one (the earlier one then runs first).
 * What overlaps, honestly: algo mpi is MPI_Iallreduce, whose transfers Open
 * MPI 4.1 advances only inside MPI calls (no progress thread), so it moves
 * data while the caller computes only up to the eager limit and otherwise
 * when the caller calls dp_comm_test between pieces of work. naive, ring and
 * tree are progress-on-wait: the start only records the request, and the
 * whole algorithm runs inside dp_comm_wait or dp_comm_test (requests
 * started earlier run first, in start order, so every rank runs them in the
 * same order): no overlap at all, only the convenience of one calling
 * pattern.
 * The request table lives in the handle and grows only when more requests
 * are outstanding than ever before. */
DP_API dp_status dp_comm_iallreduce(dp_comm *comm, float *buf, size_t n, dp_allreduce_algo algo,
                                    int *request);
/* *done <- 1 if the request has completed (then it is also released, as by
 * dp_comm_wait); for mpi this advances MPI's progress engine and returns at
 * once. A request of our algorithms is run to completion here (as by
 * dp_comm_wait, so the call blocks) and reports 1. */
DP_API dp_status dp_comm_test(dp_comm *comm, int request, int *done);
DP_API dp_status dp_comm_wait(dp_comm *comm, int request);
/* Wait for every outstanding request, in start order. */
DP_API dp_status dp_comm_wait_all(dp_comm *comm);

/* ---- one model on every rank (DESIGN.md algorithm 5) ----
 * *same <- 1 on every rank if params[0..n) (and n) are bit-identical on all
 * ranks (up to a 2^-64 hash collision), 0 on every rank otherwise: a 64-bit
 * BLAKE2b hash of the bytes, compared with one MPI_Allreduce of (min h, min ~h). */
DP_API dp_status dp_comm_check_same(dp_comm *comm, const float *params, size_t n, int *same);

#ifdef __cplusplus
}
#endif
#endif
