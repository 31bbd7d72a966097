/*
 * checkpoint.c: the checkpoint file (layout in include/dpsgd/checkpoint.h)
 * and atomic writes (temporary file + fsync + rename + directory fsync, the
 * pattern of SQLite's and git's lock files). The checksum is BLAKE2b-256 from
 * libsodium (crypto_generichash): a torn, truncated or edited file is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "dpsgd/checkpoint.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes floats as in memory: a big-endian host needs byte swaps"
#endif

static const char MAGIC[8] = {'D', 'P', 'S', 'G', 'D', 'C', 'K', 'P'};
enum { HEADER = 40, SUM = 32 };

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

DP_API dp_status dp_file_write_atomic_v(const char *path, const void *const *parts,
                                        const size_t *lens, int n_parts) {
    size_t plen = strlen(path);
    char *tmp = dp_malloc(plen + 16);
    if (!tmp) return dp_error(DP_E_NOMEM, "%s: cannot allocate a path", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        dp_status s =
            dp_error(DP_E_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        dp_free(tmp);
        return s;
    }
    int err = 0;
    for (int i = 0; i < n_parts && !err; i++)
        if (lens[i] && write_all(fd, parts[i], lens[i])) err = errno;
    if (!err && fchmod(fd, 0644)) err = errno;
    if (!err && fsync(fd)) err = errno;
    if (close(fd) && !err) err = errno;
    if (!err && rename(tmp, path)) err = errno;
    if (err) {
        unlink(tmp);
        dp_free(tmp);
        return dp_error(DP_E_IO, "%s: cannot write: %s", path, strerror(err));
    }
    dp_free(tmp);
    /* The rename is durable only once the directory entry is on disk. */
    char *dir = dp_strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) {
            if (slash == dir)
                slash[1] = '\0';
            else
                *slash = '\0';
            d = dir;
        }
        int dfd = open(d, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        dp_free(dir);
    }
    return DP_OK;
}

DP_API dp_status dp_file_write_atomic(const char *path, const void *data, size_t len) {
    const void *parts[1] = {data};
    return dp_file_write_atomic_v(path, parts, &len, 1);
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

DP_API dp_status dp_checkpoint_write(const char *path, const dp_checkpoint *ck) {
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "%s: libsodium failed to start", path);
    unsigned char head[HEADER], sum[SUM];
    size_t jlen = ck->json ? strlen(ck->json) : 0;
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, DP_CHECKPOINT_VERSION);
    put_u32(head + 12, 0);
    put_u64(head + 16, jlen);
    put_u64(head + 24, ck->n_params);
    put_u64(head + 32, ck->n_state);
    const void *parts[5] = {head, ck->json, ck->params, ck->state, sum};
    size_t lens[5] = {HEADER, jlen, ck->n_params * sizeof(float), ck->n_state * sizeof(float), SUM};
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, SUM);
    for (int i = 0; i < 4; i++)
        if (lens[i]) crypto_generichash_update(&st, parts[i], lens[i]);
    crypto_generichash_final(&st, sum, SUM);
    return dp_file_write_atomic_v(path, parts, lens, 5);
}

DP_API void dp_checkpoint_free(dp_checkpoint *ck) {
    if (!ck) return;
    dp_free(ck->json);
    dp_free(ck->params);
    dp_free(ck->state);
    memset(ck, 0, sizeof *ck);
}

DP_API dp_status dp_checkpoint_read(const char *path, dp_checkpoint *out) {
    memset(out, 0, sizeof *out);
    if (sodium_init() < 0) return dp_error(DP_E_INTERNAL, "%s: libsodium failed to start", path);
    FILE *f = fopen(path, "rb");
    if (!f) return dp_error(DP_E_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dp_error(DP_E_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char head[HEADER];
    if (size < HEADER || fread(head, 1, HEADER, f) != HEADER) {
        fclose(f);
        return dp_error(DP_E_FORMAT, "%s: not a dpsgd checkpoint (file of %zu bytes is too short)",
                        path, size);
    }
    if (memcmp(head, MAGIC, 8)) {
        fclose(f);
        return dp_error(DP_E_FORMAT, "%s:0: not a dpsgd checkpoint (expected magic 'DPSGDCKP')",
                        path);
    }
    uint32_t version = get_u32(head + 8);
    if (version != DP_CHECKPOINT_VERSION) {
        fclose(f);
        return dp_error(DP_E_FORMAT,
                        "%s:8: checkpoint format version %u, this build reads version %d", path,
                        version, DP_CHECKPOINT_VERSION);
    }
    uint64_t jlen = get_u64(head + 16), np = get_u64(head + 24), ns = get_u64(head + 32);
    /* Overflow-safe size check: every count is bounded by the file size first. */
    if (jlen > size || np > size / 4 || ns > size / 4 ||
        (uint64_t)HEADER + jlen + 4 * np + 4 * ns + SUM != size) {
        fclose(f);
        return dp_error(DP_E_FORMAT,
                        "%s:16: truncated or corrupt checkpoint (header describes %llu + %llu + "
                        "%llu bytes, the file has %zu)",
                        path, (unsigned long long)jlen, (unsigned long long)(4 * np + 4 * ns),
                        (unsigned long long)(HEADER + SUM), size);
    }
    size_t body = size - HEADER;
    unsigned char *buf = dp_malloc(body);
    if (!buf) {
        fclose(f);
        return dp_error(DP_E_NOMEM, "%s: cannot allocate %zu bytes", path, body);
    }
    if (fread(buf, 1, body, f) != body) {
        fclose(f);
        dp_free(buf);
        return dp_error(DP_E_IO, "%s: read failed", path);
    }
    fclose(f);
    unsigned char sum[SUM];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, SUM);
    crypto_generichash_update(&st, head, HEADER);
    crypto_generichash_update(&st, buf, body - SUM);
    crypto_generichash_final(&st, sum, SUM);
    if (sodium_memcmp(sum, buf + body - SUM, SUM) != 0) {
        dp_free(buf);
        return dp_error(DP_E_FORMAT, "%s:%zu: checkpoint checksum mismatch (corrupt file)", path,
                        size - SUM);
    }
    if (memchr(buf, '\0', jlen)) {
        dp_free(buf);
        return dp_error(DP_E_FORMAT, "%s:%d: NUL byte inside the checkpoint's JSON", path, HEADER);
    }
    out->json = dp_malloc(jlen + 1);
    out->params = dp_malloc(np * 4);
    out->state = dp_malloc(ns * 4);
    if (!out->json || !out->params || !out->state) {
        dp_free(buf);
        dp_checkpoint_free(out);
        return dp_error(DP_E_NOMEM, "%s: cannot allocate the checkpoint", path);
    }
    memcpy(out->json, buf, jlen);
    out->json[jlen] = '\0';
    memcpy(out->params, buf + jlen, np * 4);
    memcpy(out->state, buf + jlen + np * 4, ns * 4);
    out->n_params = np;
    out->n_state = ns;
    dp_free(buf);
    return DP_OK;
}
