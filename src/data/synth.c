/*
 * synth.c: dp_synth_write, the driver of the synthetic PUMS writer. It runs
 * the model (synth_model.c) and the row writer (synth_emit.c) over blocks of
 * households in parallel (OpenMP), cuts the last block at the requested row
 * count, optionally deflates the blocks in parallel (zlib), and writes them
 * in order to a temporary file that is renamed at the end.
 *
 *   round:  [block b][block b+1] ... [block b+B-1]   generated in parallel
 *           walk the line records in order until `rows` lines are taken
 *           deflate the kept blocks in parallel (raw deflate, sync-flushed)
 *           write them in block order; the next round starts after them
 *
 * A block is a pure function of (seed, block index), so the bytes do not
 * depend on the number of threads. The .gz output is one gzip member: a
 * header, each block as raw deflate ended by a sync flush (the last by
 * Z_FINISH), and a trailer whose CRC-32 is combined from the blocks' CRCs
 * with crc32_combine (the technique of pigz).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core/dp_internal.h"
#include "data/synth_internal.h"

#define HOUSEHOLDS_PER_BLOCK 1024
#define MAX_HOUSEHOLDS 9999999ULL /* SERIALNO's 7 digits */

typedef struct block {
    uint64_t index; /* block number: households index*H .. index*H + H-1 */
    char *text;
    size_t len, cap;
    synth_line *lines;
    size_t nlines, lines_cap;
    size_t keep_lines, keep_len; /* after the cut */
    unsigned char *z;
    size_t zlen, zcap;
    uint32_t crc;
    int fail; /* 1 out of memory, 2 deflate error */
    synth_household hh;
} block;

DP_API void dp_synth_config_default(dp_synth_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->rows = 1000;
    cfg->seed = 1;
    cfg->columns = DP_SYNTH_FULL;
    cfg->invalid_rate = 0.005;
    cfg->missing_rate = 0.01;
    cfg->year = dp_pums_year();
    cfg->threads = 0;
    cfg->force = 0;
    cfg->gzip_level = 1;
}

static int ensure(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = dp_realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* Make block b: its households, lines and line records (block 0 starts
 * with the header). */
static void make_block(const synth_plan *pl, block *bk, uint64_t b) {
    bk->index = b;
    bk->len = bk->nlines = 0;
    bk->fail = 0;
    if (b == 0) {
        if (!ensure((void **)&bk->text, &bk->cap, pl->header_len, 1)) {
            bk->fail = 1;
            return;
        }
        memcpy(bk->text, pl->header, pl->header_len);
        bk->len = pl->header_len;
    }
    for (uint64_t i = 0; i < HOUSEHOLDS_PER_BLOCK; i++) {
        uint64_t h = b * HOUSEHOLDS_PER_BLOCK + i;
        synth_model_household(&pl->tables, pl->seed, h, &bk->hh);
        size_t most = 2 * (size_t)bk->hh.n; /* every person duplicated, at worst */
        if (!ensure((void **)&bk->text, &bk->cap, bk->len + most * pl->max_row, 1) ||
            !ensure((void **)&bk->lines, &bk->lines_cap, bk->nlines + most, sizeof *bk->lines)) {
            bk->fail = 1;
            return;
        }
        synth_emit_household(pl, &bk->hh, bk->text, &bk->len, bk->lines, &bk->nlines);
    }
}

/* Raw deflate of the kept text; `last` ends the stream. */
static void deflate_block(block *bk, int level, int last) {
    bk->crc = (uint32_t)crc32(0L, (const Bytef *)bk->text, (uInt)bk->keep_len);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        bk->fail = 2;
        return;
    }
    size_t bound = deflateBound(&zs, (uLong)bk->keep_len) + 64;
    if (!ensure((void **)&bk->z, &bk->zcap, bound, 1)) {
        deflateEnd(&zs);
        bk->fail = 1;
        return;
    }
    zs.next_in = (Bytef *)bk->text;
    zs.avail_in = (uInt)bk->keep_len;
    zs.next_out = bk->z;
    zs.avail_out = (uInt)bk->zcap;
    int rc = deflate(&zs, last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((last && rc != Z_STREAM_END) || (!last && rc != Z_OK) || zs.avail_in != 0) bk->fail = 2;
    bk->zlen = bk->zcap - zs.avail_out;
    deflateEnd(&zs);
}

static dp_status write_all(int fd, const void *p, size_t n, const char *path) {
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dp_error(DP_E_IO, "%s: cannot write: %s", path, strerror(errno));
        }
        s += w;
        n -= (size_t)w;
    }
    return DP_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static dp_status check_config(const char *path, const dp_synth_config *cfg) {
    if (!path || !*path) return dp_error(DP_E_USAGE, "no output path");
    if (!cfg) return dp_error(DP_E_USAGE, "no configuration");
    if (cfg->rows > DP_SYNTH_MAX_ROWS)
        return dp_error(DP_E_USAGE, "rows must be at most %llu (SERIALNO has 7 digits), got %llu",
                        (unsigned long long)DP_SYNTH_MAX_ROWS, (unsigned long long)cfg->rows);
    if (!(cfg->invalid_rate >= 0 && cfg->invalid_rate <= 1))
        return dp_error(DP_E_USAGE, "invalid rate must be in [0, 1], got %g", cfg->invalid_rate);
    if (!(cfg->missing_rate >= 0 && cfg->missing_rate <= 1))
        return dp_error(DP_E_USAGE, "missing rate must be in [0, 1], got %g", cfg->missing_rate);
    if (cfg->columns != DP_SYNTH_FULL && cfg->columns != DP_SYNTH_MINIMAL)
        return dp_error(DP_E_USAGE, "unknown column set %d", (int)cfg->columns);
    if (cfg->year != dp_pums_year())
        return dp_error(DP_E_UNSUPPORTED,
                        "year %d: this build's dictionary is the %d ACS 1-year PUMS", cfg->year,
                        dp_pums_year());
    if (cfg->gzip_level < 1 || cfg->gzip_level > 9)
        return dp_error(DP_E_USAGE, "gzip level must be 1..9, got %d", cfg->gzip_level);
    if (cfg->threads < 0) return dp_error(DP_E_USAGE, "threads must be >= 0, got %d", cfg->threads);
    return DP_OK;
}

/* The body: everything after the temporary file is open. */
static dp_status run(const char *path, int fd, const synth_plan *pl, const dp_synth_config *cfg,
                     dp_synth_report *rep) {
    int gz = ends_with(path, ".gz");
    int threads = cfg->threads;
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    int nblk = 2 * threads;
    block *blk = dp_calloc((size_t)nblk, sizeof *blk);
    if (!blk) return dp_error(DP_E_NOMEM, "out of memory for %d blocks", nblk);
    dp_status st = DP_OK;
    uint64_t rows_done = 0, next_block = 0, crc_len = 0;
    uint32_t crc = 0;
    if (gz) {
        static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
        st = write_all(fd, header, sizeof header, path);
        rep->file_bytes += sizeof header;
    }
    int done = 0;
    while (st == DP_OK && !done) {
        /* how many blocks this round: about enough for the rows left */
        uint64_t left = cfg->rows - rows_done;
        uint64_t want = left / (HOUSEHOLDS_PER_BLOCK * 2) + 1;
        int nb = want < (uint64_t)nblk ? (int)want : nblk;
        if ((next_block + (uint64_t)nb) * HOUSEHOLDS_PER_BLOCK > MAX_HOUSEHOLDS) {
            st = dp_error(DP_E_RANGE, "more than %llu households: SERIALNO has 7 digits",
                          (unsigned long long)MAX_HOUSEHOLDS);
            break;
        }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int b = 0; b < nb; b++)
            make_block(pl, &blk[b], next_block + (uint64_t)b);
        /* the cut: take lines in order until `rows` */
        int used = 0;
        for (int b = 0; b < nb && st == DP_OK; b++) {
            block *bk = &blk[b];
            if (bk->fail) {
                st = dp_error(DP_E_NOMEM, "out of memory for block %llu",
                              (unsigned long long)bk->index);
                break;
            }
            size_t take = bk->nlines;
            if (rows_done + take >= cfg->rows) {
                take = (size_t)(cfg->rows - rows_done);
                done = 1;
            }
            bk->keep_lines = take;
            size_t start = bk->index == 0 ? pl->header_len : 0;
            bk->keep_len = take ? bk->lines[take - 1].end : start;
            rows_done += take;
            used = b + 1;
            if (done) break;
        }
        if (st != DP_OK) break;
        if (gz) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
            for (int b = 0; b < used; b++)
                deflate_block(&blk[b], cfg->gzip_level, done && b == used - 1);
        }
        for (int b = 0; b < used && st == DP_OK; b++) {
            block *bk = &blk[b];
            if (bk->fail)
                st = bk->fail == 1 ? dp_error(DP_E_NOMEM, "out of memory compressing")
                                   : dp_error(DP_E_INTERNAL, "deflate failed");
            if (st != DP_OK) break;
            for (size_t i = 0; i < bk->keep_lines; i++) {
                const synth_line *ln = &bk->lines[i];
                rep->households += ln->first;
                switch (ln->kind) {
                case SR_CLEAN:
                    rep->clean++;
                    break;
                case SR_MISSING:
                    rep->missing++;
                    if (ln->missing >= 0 && ln->missing < 320) rep->missing_by_var[ln->missing]++;
                    break;
                case SR_BAD_CODE:
                    rep->bad_code++;
                    break;
                case SR_BAD_NUMBER:
                    rep->bad_number++;
                    break;
                case SR_RAGGED:
                    rep->ragged++;
                    break;
                default:
                    rep->duplicate++;
                    break;
                }
                if (ln->kind == SR_CLEAN || ln->kind == SR_MISSING) {
                    rep->labor_force += ln->esr >= 1 && ln->esr <= 5;
                    rep->unemployed += ln->esr == 3;
                    rep->employed_at_work += ln->esr == 1;
                }
            }
            rep->rows += bk->keep_lines;
            rep->bytes += bk->keep_len;
            if (gz) {
                crc = (uint32_t)crc32_combine(crc, bk->crc, (z_off_t)bk->keep_len);
                crc_len += bk->keep_len;
                st = write_all(fd, bk->z, bk->zlen, path);
                rep->file_bytes += bk->zlen;
            } else {
                st = write_all(fd, bk->text, bk->keep_len, path);
                rep->file_bytes += bk->keep_len;
            }
        }
        next_block += (uint64_t)nb;
    }
    if (st == DP_OK && gz) {
        unsigned char trailer[8];
        for (int k = 0; k < 4; k++) {
            trailer[k] = (unsigned char)(crc >> (8 * k));
            trailer[4 + k] = (unsigned char)((uint32_t)crc_len >> (8 * k));
        }
        st = write_all(fd, trailer, sizeof trailer, path);
        rep->file_bytes += sizeof trailer;
    }
    for (int b = 0; b < nblk; b++) {
        dp_free(blk[b].text);
        dp_free(blk[b].lines);
        dp_free(blk[b].z);
    }
    dp_free(blk);
    return st;
}

DP_API dp_status dp_synth_write(const char *path, const dp_synth_config *cfg,
                                dp_synth_report *report) {
    DP_TRY(check_config(path, cfg));
    struct stat sb;
    if (!cfg->force && stat(path, &sb) == 0)
        return dp_error(DP_E_EXISTS, "%s: already exists; not replaced without force", path);
    synth_plan plan;
    DP_TRY(synth_plan_init(&plan, cfg));
    dp_synth_report rep;
    memset(&rep, 0, sizeof rep);
    rep.columns = plan.ncols;

    size_t n = strlen(path);
    char *tmp = dp_malloc(n + 16);
    if (!tmp) {
        synth_plan_free(&plan);
        return dp_error(DP_E_NOMEM, "out of memory");
    }
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        dp_status st = dp_error(DP_E_IO, "%s: cannot create: %s", path, strerror(errno));
        dp_free(tmp);
        synth_plan_free(&plan);
        return st;
    }
    /* mkstemp makes the file 0600; give it the mode a plain fopen would */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    dp_status st = run(path, fd, &plan, cfg, &rep);
    if (close(fd) != 0 && st == DP_OK)
        st = dp_error(DP_E_IO, "%s: cannot write: %s", path, strerror(errno));
    if (st == DP_OK && rename(tmp, path) != 0)
        st = dp_error(DP_E_IO, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
    if (st != DP_OK) unlink(tmp);
    dp_free(tmp);
    synth_plan_free(&plan);
    if (st == DP_OK && report) *report = rep;
    return st;
}
