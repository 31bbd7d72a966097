/*
 * prep_dist.c: what distributed prep (`mpirun -np R dpsgd prep`, issue 4)
 * adds to the one-process pipeline of prep.c: cutting a plain file into one
 * byte range per rank at record boundaries (quote parity, the essay in
 * csv_internal.h), and the exchanges that make R partial parses equal one
 * pass over the file: counts and first examples, duplicate keys across
 * ranks, the distinct strings of inferred columns, and exact order
 * statistics for medians. Relies on comm.h (allreduce, bcast, agree).
 * Every function takes a dp_comm that may be NULL: one process, no
 * communication, the same code path.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/prep_internal.h"

enum { SCAN_BUF = 1 << 20 };

/* ---- the communicator, or none ---- */

int prep_rank(const dp_comm *c) {
    return c ? dp_comm_rank(c) : 0;
}
int prep_ranks(const dp_comm *c) {
    return c ? dp_comm_size(c) : 1;
}
dp_status prep_agree(dp_comm *c, dp_status local) {
    return c ? dp_comm_agree(c, local, NULL) : local;
}
dp_status prep_sum(dp_comm *c, uint64_t *buf, size_t n) {
    return c ? dp_comm_allreduce_u64(c, buf, n, DP_OP_SUM) : DP_OK;
}
dp_status prep_bcast(dp_comm *c, void *buf, size_t bytes, int root) {
    return c ? dp_comm_bcast(c, buf, bytes, root) : DP_OK;
}

/* A rank that is done waits here for the others without spinning: MPI's
 * blocking collectives busy-poll, so on a small machine a rank waiting for
 * rank 0 (which alone reads a .gz, hashes the file, writes meta.json) would
 * take a core from it. A one-float non-blocking allreduce, tested every
 * 200 us with a sleep in between, costs a core nothing while it waits. */
static void wait_for_all(dp_comm *c) {
    if (!c || dp_comm_size(c) == 1) return;
    float x = 0;
    int req, done = 0;
    if (dp_comm_iallreduce(c, &x, 1, DP_ALLREDUCE_MPI, &req) != DP_OK) return;
    const struct timespec pause = {0, 200000};
    while (dp_comm_test(c, req, &done) == DP_OK && !done)
        nanosleep(&pause, NULL);
}

dp_status prep_agree_idle(dp_comm *c, dp_status local) {
    wait_for_all(c);
    return prep_agree(c, local);
}

/* [R] of every rank's `mine` (an allgather made of one sum). *all is
 * allocated here; on failure every rank returns the agreed status. */
static dp_status gather_u64(dp_comm *c, const uint64_t *mine, size_t k, uint64_t **all) {
    const int R = prep_ranks(c), me = prep_rank(c);
    uint64_t *a = dp_calloc((size_t)R * k + 1, sizeof *a);
    dp_status st = prep_agree(c, a ? DP_OK : dp_error(DP_E_NOMEM, "out of memory"));
    if (st) {
        dp_free(a);
        return st;
    }
    memcpy(a + (size_t)me * k, mine, k * sizeof *a);
    if ((st = prep_sum(c, a, (size_t)R * k))) {
        dp_free(a);
        return st;
    }
    *all = a;
    return DP_OK;
}

/* ---- byte ranges at record boundaries ---- */

static dp_status pread_some(int fd, const char *name, void *buf, size_t cap, uint64_t off,
                            size_t *got) {
    for (;;) {
        ssize_t r = pread(fd, buf, cap, (off_t)off);
        if (r >= 0) {
            *got = (size_t)r;
            return DP_OK;
        }
        if (errno != EINTR)
            return dp_error(DP_E_IO, "%s: cannot read at byte %llu: %s", name,
                            (unsigned long long)off, strerror(errno));
    }
}

dp_status prep_range_scan(int fd, const char *name, uint64_t a, uint64_t b, int *parity,
                          uint64_t *lines) {
    *parity = 0;
    *lines = 0;
    if (b <= a) return DP_OK;
    char *buf = dp_malloc(SCAN_BUF);
    if (!buf) return dp_error(DP_E_NOMEM, "%s: out of memory for the range scan", name);
    dp_status st = DP_OK;
    for (uint64_t off = a; off < b;) {
        size_t got;
        if ((st =
                 pread_some(fd, name, buf, (size_t)DP_MIN((uint64_t)SCAN_BUF, b - off), off, &got)))
            break;
        if (got == 0) {
            st = dp_error(DP_E_IO, "%s: the file ends at byte %llu, before %llu (did it change?)",
                          name, (unsigned long long)off, (unsigned long long)b);
            break;
        }
        *parity ^= csv_quote_parity(buf, got);
        *lines += csv_count_lines(buf, got);
        off += got;
    }
    dp_free(buf);
    return st;
}

dp_status prep_range_start(int fd, const char *name, uint64_t a, uint64_t size, int state_at_a,
                           uint64_t line_at_a, uint64_t *start, uint64_t *line) {
    *start = size;
    *line = line_at_a;
    if (a >= size) return DP_OK;
    /* a boundary lies just past a line end outside quotes: is a itself one? */
    char prev;
    size_t got;
    if (a == 0) {
        *start = 0;
        return DP_OK;
    }
    DP_TRY(pread_some(fd, name, &prev, 1, a - 1, &got));
    if (got == 1 && prev == '\n' && !state_at_a) {
        *start = a;
        return DP_OK;
    }
    char *buf = dp_malloc(SCAN_BUF);
    if (!buf) return dp_error(DP_E_NOMEM, "%s: out of memory for the range scan", name);
    dp_status st = DP_OK;
    int state = state_at_a;
    uint64_t lines = 0;
    for (uint64_t off = a; off < size;) {
        /* usually within the first line: read a little first, more if needed */
        size_t want = (size_t)DP_MIN(size - off, off == a ? (uint64_t)4096 : (uint64_t)SCAN_BUF);
        if ((st = pread_some(fd, name, buf, want, off, &got)) || got == 0) break;
        for (size_t i = 0; i < got; i++) {
            if (buf[i] == '"') {
                state ^= 1;
            } else if (buf[i] == '\n') {
                lines++;
                if (!state) {
                    *start = off + i + 1;
                    *line = line_at_a + lines;
                    dp_free(buf);
                    return DP_OK;
                }
            }
        }
        off += got;
    }
    *line = line_at_a + lines;
    dp_free(buf);
    return st;
}

/*
 * Each rank takes an equal share [a_r, a_{r+1}) of the data bytes and
 * scans it for its quote parity and line ends; one sum of [R] arrays gives
 * every rank the quote state and the line number at its a_r (an exclusive
 * scan), so it can find the first record boundary at or after a_r alone.
 * The boundaries are ascending in r, so rank r reads [start_r, start_{r+1}):
 * every record belongs to exactly one rank, and a share that holds no
 * boundary (one long quoted field) is simply empty.
 */
dp_status prep_dist_range(dp_comm *c, const char *path, uint64_t data_begin, uint64_t data_line,
                          uint64_t size, uint64_t *begin, uint64_t *end, uint64_t *line) {
    const int R = prep_ranks(c), me = prep_rank(c);
    size_t sb = 0, se = 0;
    DP_TRY(dp_comm_shard((size_t)(size - data_begin), R, me, &sb, &se));
    const uint64_t a = data_begin + sb, b = data_begin + se;
    int fd = open(path, O_RDONLY | O_CLOEXEC), parity = 0;
    uint64_t nl = 0;
    dp_status st = fd < 0 ? dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno)) : DP_OK;
    struct stat fs;
    if (!st && (fstat(fd, &fs) != 0 || (uint64_t)fs.st_size != size))
        st = dp_error(DP_E_IO,
                      "%s: %llu bytes here, %llu on rank 0 (expected the same file on every rank: "
                      "a shared file system)",
                      path, (unsigned long long)fs.st_size, (unsigned long long)size);
    if (!st) {
        (void)posix_fadvise(fd, (off_t)a, (off_t)(b - a), POSIX_FADV_SEQUENTIAL);
        st = prep_range_scan(fd, path, a, b, &parity, &nl);
    }
    uint64_t mine[2] = {(uint64_t)parity, nl}, *all = NULL;
    if ((st = prep_agree(c, st)) || (st = gather_u64(c, mine, 2, &all))) goto done;
    int state = 0;
    uint64_t line_a = data_line, start = a, start_line;
    for (int q = 0; q < me; q++) {
        state ^= (int)(all[2 * q] & 1);
        line_a += all[2 * q + 1];
    }
    dp_free(all);
    all = NULL;
    start_line = line_a;
    if (me > 0 && a > data_begin)
        st = prep_range_start(fd, path, a, size, state, line_a, &start, &start_line);
    mine[0] = start;
    mine[1] = start_line;
    if ((st = prep_agree(c, st)) || (st = gather_u64(c, mine, 2, &all))) goto done;
    *begin = start;
    *end = me + 1 < R ? all[2 * (me + 1)] : size;
    *line = start_line;
done:
    dp_free(all);
    if (fd >= 0) close(fd);
    return st;
}

/* ---- duplicate keys across ranks ---- */

typedef struct key_table {
    uint64_t *key; /* key + 1; 0 empty */
    uint64_t *line;
    size_t cap; /* a power of two */
    int shift;
} key_table;

static size_t slot_of(const key_table *t, uint64_t k1) {
    return (size_t)((k1 * 0x9e3779b97f4a7c15ULL) >> t->shift);
}

/* Insert if absent (the first occurrence, in the order of insertion, wins). */
static void table_put(key_table *t, uint64_t key, uint64_t line) {
    uint64_t k1 = key + 1;
    size_t j = slot_of(t, k1);
    for (; t->key[j]; j = (j + 1) & (t->cap - 1))
        if (t->key[j] == k1) return;
    t->key[j] = k1;
    t->line[j] = line;
}

static int table_get(const key_table *t, uint64_t key, uint64_t *line) {
    uint64_t k1 = key + 1;
    for (size_t j = slot_of(t, k1); t->key[j]; j = (j + 1) & (t->cap - 1))
        if (t->key[j] == k1) {
            *line = t->line[j];
            return 1;
        }
    return 0;
}

/*
 * A rank's engine has already dropped the repeats among its own rows, keeping
 * each key's first occurrence. One-process semantics ("a key seen in an
 * earlier kept record") then needs only: drop a kept row whose key some
 * lower rank also kept. So the kept (key, line) lists of ranks 0..R-2 are
 * broadcast in rank order, each rank tables those of the ranks below it
 * (the lowest rank's line wins, as the earliest line would) and drops its
 * rows found there. The first duplicate of a rank is the earlier of its own
 * first repeat and its first row found below; for a repeat of its own, the
 * key cannot also lie below (its first occurrence would then be an earlier
 * duplicate), so its "already seen on line" is right as it stands.
 */
dp_status prep_dist_dedup(dp_comm *c, const prep_engine *e, prep_rows *r) {
    const int R = prep_ranks(c), me = prep_rank(c);
    if (R == 1 || !e->keyed) return DP_OK;
    uint64_t mine = r->n, *cnt = NULL;
    DP_TRY(gather_u64(c, &mine, 1, &cnt));
    uint64_t below = 0, most = 0;
    for (int q = 0; q < R; q++) {
        if (q < me) below += cnt[q];
        if (q < R - 1) most = DP_MAX(most, cnt[q]);
    }
    key_table t = {0};
    t.cap = 2;
    t.shift = 63;
    while (t.cap < 2 * below + 2) {
        t.cap *= 2;
        t.shift--;
    }
    t.key = dp_calloc(t.cap, sizeof *t.key);
    t.line = dp_malloc(t.cap * sizeof *t.line);
    uint64_t *buf = dp_malloc((2 * most + 1) * sizeof *buf);
    dp_status st = prep_agree(c, t.key && t.line && buf
                                     ? DP_OK
                                     : dp_error(DP_E_NOMEM, "out of memory for %llu record keys",
                                                (unsigned long long)(below + most)));
    for (int q = 0; q < R - 1 && st == DP_OK; q++) {
        if (!cnt[q]) continue;
        if (q == me)
            for (size_t i = 0; i < r->n; i++) {
                buf[2 * i] = r->key[i];
                buf[2 * i + 1] = r->line[i];
            }
        st = prep_bcast(c, buf, 2 * cnt[q] * sizeof *buf, q);
        if (st == DP_OK && q < me)
            for (uint64_t i = 0; i < cnt[q]; i++)
                table_put(&t, buf[2 * i], buf[2 * i + 1]);
    }
    if (st == DP_OK && below) {
        const size_t nf = e->nfeat;
        size_t w = 0;
        for (size_t i = 0; i < r->n; i++) {
            uint64_t seen;
            if (table_get(&t, r->key[i], &seen)) {
                r->dropped[DP_PREP_DUPLICATE_KEY]++;
                r->dropped_col[DP_PREP_DUPLICATE_KEY * e->nused + (size_t)e->u_serial]++;
                prep_first *f = &r->first[DP_PREP_DUPLICATE_KEY];
                if (!f->have || r->line[i] < f->line) prep_note_duplicate(f, r->line[i], seen);
                continue;
            }
            if (w != i) {
                memcpy(r->cells + w * nf, r->cells + i * nf, nf * sizeof *r->cells);
                r->label[w] = r->label[i];
                r->reason[w] = r->reason[i];
                r->line[w] = r->line[i];
                r->key[w] = r->key[i];
            }
            w++;
        }
        r->n = w;
    }
    dp_free(cnt);
    dp_free(t.key);
    dp_free(t.line);
    dp_free(buf);
    return st;
}

/* ---- counts and first examples ---- */

/*
 * One sum does it all: the counts, and every rank's first example of each
 * reason, each in its own rank's slot of a zeroed array (a sum in which
 * every word has one contributor is an allgather); the lowest rank that
 * has an example has the file's first one.
 */
dp_status prep_dist_counts(dp_comm *c, const prep_engine *e, prep_rows *r, uint64_t *n_total) {
    const int R = prep_ranks(c), me = prep_rank(c);
    *n_total = r->n;
    if (R == 1) return DP_OK;
    const size_t nu = e->nused, fw = (sizeof r->first + 7) / 8;
    const size_t len = 4 + DP_PREP_REASONS * (1 + nu) + nu + (size_t)R * fw;
    uint64_t *v = dp_calloc(len, sizeof *v);
    dp_status st = prep_agree(c, v ? DP_OK : dp_error(DP_E_NOMEM, "out of memory"));
    if (st) {
        dp_free(v);
        return st;
    }
    size_t k = 0;
    v[k++] = r->records;
    v[k++] = r->blank;
    v[k++] = r->filtered;
    v[k++] = r->n;
    memcpy(v + k, r->dropped, DP_PREP_REASONS * sizeof *v);
    k += DP_PREP_REASONS;
    memcpy(v + k, r->dropped_col, DP_PREP_REASONS * nu * sizeof *v);
    k += DP_PREP_REASONS * nu;
    memcpy(v + k, r->missing, nu * sizeof *v);
    k += nu;
    memcpy(v + k + (size_t)me * fw, r->first, sizeof r->first);
    if ((st = prep_sum(c, v, len)) == DP_OK) {
        k = 0;
        r->records = v[k++];
        r->blank = v[k++];
        r->filtered = v[k++];
        *n_total = v[k++];
        memcpy(r->dropped, v + k, DP_PREP_REASONS * sizeof *v);
        k += DP_PREP_REASONS;
        memcpy(r->dropped_col, v + k, DP_PREP_REASONS * nu * sizeof *v);
        k += DP_PREP_REASONS * nu;
        memcpy(r->missing, v + k, nu * sizeof *v);
        k += nu;
        for (int q = 0; q < DP_PREP_REASONS; q++) {
            r->first[q].have = 0;
            for (int from = 0; from < R && !r->first[q].have; from++)
                memcpy(&r->first[q],
                       (const char *)(v + k + (size_t)from * fw) + q * sizeof *r->first,
                       sizeof *r->first);
        }
    }
    dp_free(v);
    return st;
}

/* ---- distinct strings of an inferred column ---- */

/*
 * How an inferred column is decided (prep_feature_resolve) depends only on
 * the SET of its distinct values among the kept rows, never on their order
 * (categories are sorted; a range is min and max). So each rank sends the
 * strings its kept rows use, every rank interns all of them in rank order
 * into one table, resolves from it (the same on every rank), and rewrites
 * its own cells from local string ids to the resolved values.
 */
dp_status prep_dist_strings(dp_comm *c, prep_feature *f, prep_rows *r, size_t k, size_t nf) {
    const int R = prep_ranks(c), me = prep_rank(c);
    prep_interner *loc = &r->strings[k], all = {0};
    uint8_t *used = dp_calloc(loc->n + 1, 1);
    int32_t *to_all = dp_malloc((loc->n + 1) * sizeof *to_all);
    size_t bytes = 0;
    if (used) {
        for (size_t i = 0; i < r->n; i++) {
            int32_t id = r->cells[i * nf + k].i;
            if (id >= 0) used[id] = 1;
        }
        for (size_t j = 0; j < loc->n; j++)
            if (used[j]) bytes += strlen(loc->str[j]) + 1;
    }
    char *blob = dp_malloc(bytes + 1);
    if (blob) {
        char *p = blob;
        for (size_t j = 0; j < loc->n; j++) {
            if (!used[j]) continue;
            size_t n = strlen(loc->str[j]) + 1;
            memcpy(p, loc->str[j], n);
            p += n;
        }
    }
    uint64_t mine = bytes, *sizes = NULL, most = 0;
    dp_status st = prep_agree(c, used && to_all && blob
                                     ? DP_OK
                                     : dp_error(DP_E_NOMEM, "column %s: out of memory", f->name));
    if (st == DP_OK) st = gather_u64(c, &mine, 1, &sizes);
    char *recv = NULL;
    if (st == DP_OK) {
        for (int q = 0; q < R; q++)
            if (q != me) most = DP_MAX(most, sizes[q]);
        recv = dp_malloc(most + 1);
        st =
            prep_agree(c, recv ? DP_OK : dp_error(DP_E_NOMEM, "column %s: out of memory", f->name));
    }
    dp_status local = DP_OK;
    for (int q = 0; q < R && st == DP_OK; q++) {
        char *b = q == me ? blob : recv;
        if ((st = prep_bcast(c, b, sizes[q], q))) break;
        size_t j = 0; /* the next used local id, for q == me */
        for (const char *p = b; p < b + sizes[q] && local == DP_OK;) {
            size_t n = strlen(p);
            int32_t id;
            if ((local = prep_intern(&all, p, n, &id))) break;
            if (q == me) {
                while (!used[j])
                    j++;
                to_all[j++] = id;
            }
            p += n + 1;
        }
    }
    if (st == DP_OK) st = prep_agree(c, local);
    prep_cell *remap = NULL;
    if (st == DP_OK) {
        remap = dp_malloc((all.n + 1) * sizeof *remap);
        local = remap ? prep_feature_resolve(f, all.str, all.n, remap)
                      : dp_error(DP_E_NOMEM, "column %s: out of memory", f->name);
        st = prep_agree(c, local);
    }
    if (st == DP_OK) {
        for (size_t i = 0; i < r->n; i++) {
            prep_cell *cell = &r->cells[i * nf + k];
            int32_t id = cell->i;
            if (id >= 0)
                *cell = remap[to_all[id]];
            else if (f->kind == PREP_NUMERIC)
                cell->f = NAN;
        }
    }
    prep_interner_free(&all);
    dp_free(remap);
    dp_free(recv);
    dp_free(sizes);
    dp_free(blob);
    dp_free(used);
    dp_free(to_all);
    return st;
}

/* ---- exact order statistics ---- */

/* float <-> an unsigned key with the same order (negative floats have their
 * bits flipped, positive ones their sign bit set); -0 is taken as +0 so the
 * order is total on values, not on bit patterns. */
static uint32_t key_of(float x) {
    if (x == 0.0f) x = 0.0f;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u >> 31 ? ~u : u | 0x80000000u;
}
static float float_of(uint32_t k) {
    uint32_t u = k >> 31 ? k & 0x7fffffffu : ~k;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/*
 * The k-th smallest finite value (from 0) among cells[i * stride].f over all
 * ranks, for up to two k at once (a median's two middle values), without
 * moving the values: a radix select on 32-bit order keys in two rounds, each
 * a histogram of 2^16 bins summed over the ranks: the high half of the key
 * first, then the low half among the keys of the chosen high bin. Exact,
 * O(n) per round, and the same result whatever R is (only counts move).
 */
dp_status prep_dist_kth(dp_comm *c, const prep_cell *cells, size_t n, size_t stride,
                        const uint64_t *ks, int nk, float *out) {
    enum { BINS = 1 << 16 };
    uint64_t *h = dp_calloc((size_t)BINS * (size_t)(nk + 1), sizeof *h);
    DP_TRY(prep_agree(c, h ? DP_OK : dp_error(DP_E_NOMEM, "out of memory for a median")));
    dp_status st;
    for (size_t i = 0; i < n; i++) {
        float x = cells[i * stride].f;
        if (isfinite(x)) h[key_of(x) >> 16]++;
    }
    if ((st = prep_sum(c, h, BINS))) goto done;
    uint32_t hi[2] = {0, 0};
    uint64_t rest[2] = {0, 0};
    for (int j = 0; j < nk; j++) {
        uint64_t below = 0;
        uint32_t b = 0;
        while (b < BINS - 1 && below + h[b] <= ks[j])
            below += h[b++];
        hi[j] = b;
        rest[j] = ks[j] - below;
    }
    uint64_t *lo = h + BINS; /* [nk][BINS] */
    for (size_t i = 0; i < n; i++) {
        float x = cells[i * stride].f;
        if (!isfinite(x)) continue;
        uint32_t key = key_of(x);
        for (int j = 0; j < nk; j++)
            if (key >> 16 == hi[j]) lo[(size_t)j * BINS + (key & 0xffffu)]++;
    }
    if ((st = prep_sum(c, lo, (size_t)BINS * (size_t)nk))) goto done;
    for (int j = 0; j < nk; j++) {
        const uint64_t *l = lo + (size_t)j * BINS;
        uint64_t below = 0;
        uint32_t b = 0;
        while (b < BINS - 1 && below + l[b] <= rest[j])
            below += l[b++];
        out[j] = float_of(hi[j] << 16 | b);
    }
done:
    dp_free(h);
    return st;
}
