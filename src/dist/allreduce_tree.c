/*
 * allreduce_tree.c: the latency-optimal family (DESIGN.md algorithm 6,
 * `tree`; Thakur, Rabenseifner & Gropp 2005, "Optimization of collective
 * communication operations in MPICH"): recursive doubling for small
 * messages, log2(R) (alpha + n beta); recursive halving then doubling
 * (Rabenseifner) for large ones, 2 log2(R) alpha + 2 (R-1)/R n beta.
 *
 * Non-power-of-two R: with p the largest power of two <= R and rem = R - p,
 * the first 2 rem ranks pair up (2i, 2i+1); the even one folds its vector
 * into the odd one first and sits out, so p "virtual" ranks run the
 * power-of-two algorithm, and the odd one hands the result back at the end:
 *
 *     real:     0  1 | 2  3 | 4  5  6        (R = 7, p = 4, rem = 3)
 *     virtual:  -  0 | -  1 | -  2  3
 *
 * Virtual rank v stands for real ranks {2v, 2v+1} if v < rem, else {v + rem},
 * always consecutive and in order, so the data segment of v can be the union
 * of those ranks' chunks of dp_comm_shard: segments of consecutive virtual
 * ranks are consecutive ranges of the vector. Recursive halving then leaves
 * virtual rank v with the complete sum of its segment, and the split form
 * (reduce-scatter, owner noise, allgather) ends with each real rank owning
 * exactly its dp_comm_shard chunk, like the other algorithms.
 *
 * Every partial sum is computed by one rank (halving) or by two partners as
 * a + b and b + a (doubling), equal in IEEE arithmetic: all ranks end with
 * the same bits, and the fixed pairing makes runs deterministic.
 */
#include "dist/comm_internal.h"

typedef struct tree {
    int R, r, p, rem, v; /* v = -1 for a rank that folded out */
} tree;

static tree layout(const dp_comm *c) {
    tree t = {c->size, c->rank, 1, 0, 0};
    while (t.p * 2 <= t.R)
        t.p *= 2;
    t.rem = t.R - t.p;
    t.v = t.r < 2 * t.rem ? (t.r & 1 ? t.r / 2 : -1) : t.r - t.rem;
    return t;
}

static int real_of(const tree *t, int v) {
    return v < t->rem ? 2 * v + 1 : v + t->rem;
}

/* Data range of the virtual ranks [a, b). */
static void vrange(const tree *t, size_t n, int a, int b, size_t *lo, size_t *hi) {
    size_t x;
    int first = a < t->rem ? 2 * a : a + t->rem;
    int last = b - 1 < t->rem ? 2 * (b - 1) + 1 : b - 1 + t->rem;
    comm_chunk(n, t->R, first, lo, &x);
    comm_chunk(n, t->R, last, &x, hi);
}

/* The even partner of a folded pair gives its whole vector to the odd one,
 * which adds it; *idle is set on the even rank, which then sits out. */
static dp_status fold_in(dp_comm *c, const tree *t, float *buf, size_t n, float *tmp, int *idle) {
    *idle = 0;
    if (t->r >= 2 * t->rem) return DP_OK;
    if (t->v < 0) {
        *idle = 1;
        return comm_xchg(c, buf, n, t->r + 1, NULL, 0, t->r + 1);
    }
    DP_TRY(comm_xchg(c, NULL, 0, t->r - 1, tmp, n, t->r - 1));
    comm_add(buf, tmp, n);
    return DP_OK;
}

/* The odd partner hands the whole result back to the even one. */
static dp_status fold_out(dp_comm *c, const tree *t, float *buf, size_t n) {
    if (t->r >= 2 * t->rem) return DP_OK;
    if (t->v < 0) return comm_xchg(c, NULL, 0, t->r + 1, buf, n, t->r + 1);
    return comm_xchg(c, buf, n, t->r - 1, NULL, 0, t->r - 1);
}

static dp_status recursive_doubling(dp_comm *c, float *buf, size_t n) {
    tree t = layout(c);
    float *tmp;
    int idle;
    DP_TRY(comm_scratch(c, n, &tmp));
    DP_TRY(fold_in(c, &t, buf, n, tmp, &idle));
    for (int mask = 1; !idle && mask < t.p; mask <<= 1) {
        int partner = real_of(&t, t.v ^ mask);
        DP_TRY(comm_xchg(c, buf, n, partner, tmp, n, partner));
        comm_add(buf, tmp, n);
    }
    return fold_out(c, &t, buf, n);
}

/* Recursive halving: at each step the group [lo, hi) of virtual ranks splits
 * in two; each rank sends the other half's data to its partner there and adds
 * the partner's copy of its own half. give_back: the odd rank of a folded pair
 * then sends the even one its chunk (the split form). */
static dp_status halving(dp_comm *c, float *buf, size_t n, int give_back) {
    tree t = layout(c);
    float *tmp;
    int idle;
    DP_TRY(comm_scratch(c, n, &tmp));
    DP_TRY(fold_in(c, &t, buf, n, tmp, &idle));
    if (idle) {
        if (!give_back) return DP_OK;
        size_t b, e;
        comm_chunk(n, t.R, t.r, &b, &e);
        return comm_xchg(c, NULL, 0, t.r + 1, buf + b, e - b, t.r + 1);
    }
    for (int lo = 0, hi = t.p; hi - lo > 1;) {
        int half = (hi - lo) / 2, mid = lo + half, lower = t.v < mid;
        int partner = real_of(&t, lower ? t.v + half : t.v - half);
        size_t sb, se, rb, re;
        vrange(&t, n, lower ? mid : lo, lower ? hi : mid, &sb, &se);
        vrange(&t, n, lower ? lo : mid, lower ? mid : hi, &rb, &re);
        DP_TRY(comm_xchg(c, buf + sb, se - sb, partner, tmp, re - rb, partner));
        comm_add(buf + rb, tmp, re - rb);
        if (lower)
            hi = mid;
        else
            lo = mid;
    }
    if (give_back && t.r < 2 * t.rem) {
        size_t b, e;
        comm_chunk(n, t.R, t.r - 1, &b, &e);
        return comm_xchg(c, buf + b, e - b, t.r - 1, NULL, 0, t.r - 1);
    }
    return DP_OK;
}

/* Recursive doubling of segments, the mirror of halving: blocks of 1, 2, 4,
 * ... virtual ranks swap their data with the partner block. take_first: the
 * even rank of a folded pair first gives the odd one its (noised) chunk. */
static dp_status doubling(dp_comm *c, float *buf, size_t n, int take_first) {
    tree t = layout(c);
    if (t.v < 0) {
        if (take_first) {
            size_t b, e;
            comm_chunk(n, t.R, t.r, &b, &e);
            DP_TRY(comm_xchg(c, buf + b, e - b, t.r + 1, NULL, 0, t.r + 1));
        }
        return fold_out(c, &t, buf, n);
    }
    if (take_first && t.r < 2 * t.rem) {
        size_t b, e;
        comm_chunk(n, t.R, t.r - 1, &b, &e);
        DP_TRY(comm_xchg(c, NULL, 0, t.r - 1, buf + b, e - b, t.r - 1));
    }
    for (int size = 1; size < t.p; size <<= 1) {
        int mine = t.v & ~(size - 1), theirs = (t.v ^ size) & ~(size - 1);
        int partner = real_of(&t, t.v ^ size);
        size_t sb, se, rb, re;
        vrange(&t, n, mine, mine + size, &sb, &se);
        vrange(&t, n, theirs, theirs + size, &rb, &re);
        DP_TRY(comm_xchg(c, buf + sb, se - sb, partner, buf + rb, re - rb, partner));
    }
    return fold_out(c, &t, buf, n);
}

dp_status comm_tree_allreduce(dp_comm *c, float *buf, size_t n) {
    if (n * sizeof *buf < COMM_TREE_SMALL_BYTES || n < (size_t)c->size)
        return recursive_doubling(c, buf, n);
    DP_TRY(halving(c, buf, n, 0));
    return doubling(c, buf, n, 0);
}

dp_status comm_tree_reduce_scatter(dp_comm *c, float *buf, size_t n) {
    return halving(c, buf, n, 1);
}

dp_status comm_tree_allgather(dp_comm *c, float *buf, size_t n) {
    return doubling(c, buf, n, 1);
}
