/*
 * source.c: input bytes from a plain file, a gzip stream (zlib inflate with
 * gzip framing, members concatenated as `cat a.gz b.gz` makes them) or the one
 * CSV member of a zip archive (libzip, which also checks the member's CRC).
 * The file's own bytes are hashed with SHA-256 for meta.json: with OpenSSL's
 * libcrypto where the build found it (the CPU's SHA instructions), else
 * libsodium. bench/prep shows the hash is prep's bottleneck, so for a large
 * regular file a thread of its own reads and hashes the file beside the
 * parse (from the page cache the second read is cheap); a stream (standard
 * input) is hashed as it is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>
#ifdef DP_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif
#include "core/dp_internal.h"
#include "data/source_internal.h"
#include "dpsgd/source.h"

enum { GZ_INBUF = 1 << 18, HASH_THREAD_MIN = 8 << 20 };

/* SHA-256 of a stream: the two implementations behind one small interface. */
typedef struct hasher {
#ifdef DP_HAVE_LIBCRYPTO
    EVP_MD_CTX *ctx;
#else
    crypto_hash_sha256_state st;
#endif
} hasher;

static int hash_init(hasher *h) {
#ifdef DP_HAVE_LIBCRYPTO
    h->ctx = EVP_MD_CTX_new();
    return h->ctx && EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) == 1;
#else
    return crypto_hash_sha256_init(&h->st) == 0;
#endif
}
static void hash_update(hasher *h, const void *p, size_t n) {
#ifdef DP_HAVE_LIBCRYPTO
    EVP_DigestUpdate(h->ctx, p, n);
#else
    crypto_hash_sha256_update(&h->st, p, n);
#endif
}
static void hash_final(hasher *h, unsigned char out[32]) {
#ifdef DP_HAVE_LIBCRYPTO
    unsigned len = 32;
    EVP_DigestFinal_ex(h->ctx, out, &len);
#else
    crypto_hash_sha256_final(&h->st, out);
#endif
}
static void hash_free(hasher *h) {
#ifdef DP_HAVE_LIBCRYPTO
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
#else
    (void)h;
#endif
}

struct dp_source {
    dp_source_kind kind;
    char *path;
    char *name;  /* path, or path:member for a zip */
    int fd;      /* plain and gzip; -1 for zip */
    int own_fd;  /* 0 for standard input */
    int regular; /* a regular file (so a second reader sees the same bytes) */
    uint64_t file_bytes, in_bytes, out_bytes;
    unsigned char peek[4];
    size_t npeek, peek_pos; /* bytes read for the magic, not yet handed on */
    int in_eof;             /* the file (compressed side) is exhausted */
    int ranged;             /* source_open_range: reads stop after range_left bytes, unhashed */
    uint64_t range_left;
    int done; /* the decompressed data is exhausted */
    hasher hash;
    unsigned char digest[32];
    int hashed;
    /* the hashing thread (hthread: running or not yet joined) */
    pthread_t hth;
    int hthread, hstop;
    dp_status hstatus;
    uint64_t hbytes;
    unsigned char hdigest[32];
    char hmsg[512];
    /* gzip */
    z_stream z;
    int z_init, member_done;
    unsigned char *inbuf;
    /* zip */
    zip_t *za;
    zip_file_t *zf;
};

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    return dp_calloc(items, size);
}
static void z_free(voidpf opaque, voidpf p) {
    dp_free(p);
}

DP_API const char *dp_source_kind_name(dp_source_kind kind) {
    switch (kind) {
    case DP_SOURCE_PLAIN:
        return "plain";
    case DP_SOURCE_GZIP:
        return "gzip";
    case DP_SOURCE_ZIP:
        return "zip";
    }
    return "unknown";
}

/* The hashing thread: its own descriptor, its own buffer, nothing shared
 * with the reader but the result fields, read only after pthread_join. */
static void *hash_thread(void *arg) {
    dp_source *s = arg;
    s->hstatus = DP_E_IO;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    unsigned char *buf = dp_malloc(1 << 20);
    hasher h;
    memset(&h, 0, sizeof h);
    if (fd < 0 || !buf || !hash_init(&h)) {
        snprintf(s->hmsg, sizeof s->hmsg, "%s: cannot read for the SHA-256: %s", s->path,
                 fd < 0 ? strerror(errno) : "out of memory");
        if (fd >= 0) close(fd);
        dp_free(buf);
        hash_free(&h);
        return NULL;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        if (__atomic_load_n(&s->hstop, __ATOMIC_RELAXED)) break;
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(s->hmsg, sizeof s->hmsg, "%s: cannot read: %s", s->path, strerror(errno));
            break;
        }
        if (r == 0) {
            hash_final(&h, s->hdigest);
            s->hstatus = DP_OK;
            break;
        }
        hash_update(&h, buf, (size_t)r);
        s->hbytes += (uint64_t)r;
    }
    hash_free(&h);
    dp_free(buf);
    close(fd);
    return NULL;
}

/* Wait for the hashing thread; at the end of the data its digest becomes
 * the source's, provided it hashed as many bytes as were read. */
static dp_status hash_join(dp_source *s, int at_end) {
    if (!s->hthread) return DP_OK;
    if (!at_end) __atomic_store_n(&s->hstop, 1, __ATOMIC_RELAXED);
    pthread_join(s->hth, NULL);
    s->hthread = 0;
    if (!at_end) return DP_OK;
    if (s->hstatus != DP_OK) return dp_error(s->hstatus, "%s", s->hmsg);
    if (s->hbytes != s->in_bytes)
        return dp_error(DP_E_IO, "%s: the file changed while it was read (%llu bytes, then %llu)",
                        s->path, (unsigned long long)s->in_bytes, (unsigned long long)s->hbytes);
    memcpy(s->digest, s->hdigest, sizeof s->digest);
    s->hashed = 1;
    return DP_OK;
}

/* read(2) that retries on EINTR and fills as much as it can. */
static dp_status read_fd(dp_source *s, void *buf, size_t cap, size_t *got) {
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(s->fd, (char *)buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return dp_error(DP_E_IO, "%s: cannot read: %s", s->path, strerror(errno));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *got = n;
    return DP_OK;
}

/* Raw file bytes: first the peeked magic bytes, then the descriptor. Every
 * byte passes through here exactly once, so this is where it is hashed. */
static dp_status read_raw(dp_source *s, void *buf, size_t cap, size_t *got) {
    size_t n = 0;
    if (s->peek_pos < s->npeek) {
        n = DP_MIN(cap, s->npeek - s->peek_pos);
        memcpy(buf, s->peek + s->peek_pos, n);
        s->peek_pos += n;
    }
    if (n < cap && !s->in_eof) {
        size_t r = 0, want = cap - n;
        if (s->ranged) want = (size_t)DP_MIN((uint64_t)want, s->range_left);
        if (want) DP_TRY(read_fd(s, (char *)buf + n, want, &r));
        if (r == 0) s->in_eof = 1;
        if (s->ranged)
            s->range_left -= r;
        else if (!s->hthread)
            hash_update(&s->hash, (unsigned char *)buf + n, r);
        s->in_bytes += r;
        n += r;
    }
    if (s->in_eof && s->peek_pos == s->npeek && !s->hashed && !s->ranged) {
        if (s->hthread) {
            DP_TRY(hash_join(s, 1));
        } else {
            hash_final(&s->hash, s->digest);
            s->hashed = 1;
        }
        if (!s->own_fd) s->file_bytes = s->in_bytes;
    }
    *got = n;
    return DP_OK;
}

static dp_status hash_whole_file(dp_source *s) {
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dp_error(DP_E_IO, "%s: cannot open: %s", s->path, strerror(errno));
    unsigned char *buf = dp_malloc(1 << 20);
    if (!buf) {
        close(fd);
        return dp_error(DP_E_NOMEM, "%s: out of memory for the hash buffer", s->path);
    }
    hasher st;
    dp_status status = DP_OK;
    if (!hash_init(&st)) {
        hash_free(&st);
        dp_free(buf);
        close(fd);
        return dp_error(DP_E_INTERNAL, "%s: the SHA-256 hasher failed to start", s->path);
    }
    for (;;) {
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            status = dp_error(DP_E_IO, "%s: cannot read: %s", s->path, strerror(errno));
            break;
        }
        if (r == 0) break;
        hash_update(&st, buf, (size_t)r);
    }
    hash_final(&st, s->digest);
    hash_free(&st);
    s->hashed = status == DP_OK;
    dp_free(buf);
    close(fd);
    return status;
}

static int ends_with_csv(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".csv") == 0;
}

/* Find the single .csv member; directories and macOS resource forks
 * (__MACOSX/...) are not members a user means. */
static dp_status open_zip(dp_source *s) {
    int err = 0;
    s->za = zip_open(s->path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!s->za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        dp_status st = dp_error(DP_E_FORMAT,
                                "%s: not a readable zip archive (truncated or corrupt: %s); "
                                "expected a zip holding one .csv file",
                                s->path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    zip_int64_t n = zip_get_num_entries(s->za, 0), found = -1, ncsv = 0;
    char names[512] = "", others[512] = "";
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(s->za, (zip_uint64_t)i, 0);
        if (!nm || !*nm || nm[strlen(nm) - 1] == '/' || strncmp(nm, "__MACOSX/", 9) == 0) continue;
        char *list = ends_with_csv(nm) ? names : others;
        size_t used = strlen(list);
        if (used < sizeof names - 2)
            snprintf(list + used, sizeof names - used, "%s%s", used ? ", " : "", nm);
        if (ends_with_csv(nm)) {
            if (found < 0) found = i;
            ncsv++;
        }
    }
    if (ncsv == 0)
        return dp_error(DP_E_FORMAT,
                        "%s: the zip archive holds no .csv file (found: %s); expected one", s->path,
                        *others ? others : "nothing");
    if (ncsv > 1)
        return dp_error(DP_E_FORMAT,
                        "%s: the zip archive holds %lld .csv files (%s); expected one: extract the "
                        "one you mean",
                        s->path, (long long)ncsv, names);
    const char *member = zip_get_name(s->za, (zip_uint64_t)found, 0);
    size_t len = strlen(s->path) + strlen(member) + 2;
    dp_free(s->name);
    s->name = dp_malloc(len);
    if (!s->name) return dp_error(DP_E_NOMEM, "%s: out of memory", s->path);
    snprintf(s->name, len, "%s:%s", s->path, member);
    s->zf = zip_fopen_index(s->za, (zip_uint64_t)found, 0);
    if (!s->zf)
        return dp_error(DP_E_FORMAT, "%s: cannot read the zip member: %s", s->name,
                        zip_strerror(s->za));
    return hash_whole_file(s);
}

DP_API dp_status dp_source_open(const char *path, dp_source **out) {
    *out = NULL;
    if (!path || !*path) return dp_error(DP_E_USAGE, "dp_source_open: empty path");
    dp_source *s = dp_calloc(1, sizeof *s);
    if (!s) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    s->fd = -1;
    dp_status st = DP_OK;
    if (!hash_init(&s->hash)) {
        hash_free(&s->hash);
        dp_free(s);
        return dp_error(DP_E_INTERNAL, "%s: the SHA-256 hasher failed to start", path);
    }
    int is_stdin = strcmp(path, "-") == 0;
    s->path = dp_strdup(is_stdin ? "standard input" : path);
    s->name = dp_strdup(s->path);
    if (!s->path || !s->name) {
        st = dp_error(DP_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (is_stdin) {
        s->fd = 0;
    } else {
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0) {
            st = dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
            goto fail;
        }
        s->own_fd = 1;
        struct stat sb;
        if (fstat(s->fd, &sb) != 0) {
            st = dp_error(DP_E_IO, "%s: cannot stat: %s", path, strerror(errno));
            goto fail;
        }
        if (S_ISDIR(sb.st_mode)) {
            st = dp_error(DP_E_IO, "%s: is a directory, expected a CSV file", path);
            goto fail;
        }
        s->file_bytes = (uint64_t)sb.st_size;
        s->regular = S_ISREG(sb.st_mode);
        (void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    size_t got;
    if ((st = read_fd(s, s->peek, sizeof s->peek, &got)) != DP_OK) goto fail;
    s->npeek = got;
    hash_update(&s->hash, s->peek, got);
    s->in_bytes = got;
    if (got < sizeof s->peek) s->in_eof = 1;
    if (got >= 2 && s->peek[0] == 0x1f && s->peek[1] == 0x8b) {
        s->kind = DP_SOURCE_GZIP;
        s->inbuf = dp_malloc(GZ_INBUF);
        if (!s->inbuf) {
            st = dp_error(DP_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        s->z.zalloc = z_alloc;
        s->z.zfree = z_free;
        if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK) {
            st = dp_error(DP_E_NOMEM, "%s: cannot start the gzip decoder", path);
            goto fail;
        }
        s->z_init = 1;
    } else if (got == 4 && s->peek[0] == 'P' && s->peek[1] == 'K' &&
               ((s->peek[2] == 3 && s->peek[3] == 4) || (s->peek[2] == 5 && s->peek[3] == 6))) {
        s->kind = DP_SOURCE_ZIP;
        if (is_stdin) {
            st = dp_error(DP_E_USAGE, "standard input: a zip archive must be given as a file");
            goto fail;
        }
        close(s->fd);
        s->fd = -1;
        if ((st = open_zip(s)) != DP_OK) goto fail;
    } else {
        s->kind = DP_SOURCE_PLAIN;
    }
    if (s->regular && s->file_bytes >= HASH_THREAD_MIN && s->kind != DP_SOURCE_ZIP &&
        pthread_create(&s->hth, NULL, hash_thread, s) == 0)
        s->hthread = 1; /* (if no thread can start, the reader hashes) */
    *out = s;
    return DP_OK;
fail:
    dp_source_close(s);
    return st;
}

DP_API void dp_source_close(dp_source *s) {
    if (!s) return;
    if (s->zf) zip_fclose(s->zf);
    if (s->za) zip_discard(s->za);
    hash_join(s, 0);
    if (s->z_init) inflateEnd(&s->z);
    hash_free(&s->hash);
    if (s->fd >= 0 && s->own_fd) close(s->fd);
    dp_free(s->inbuf);
    dp_free(s->path);
    dp_free(s->name);
    dp_free(s);
}

static dp_status read_gzip(dp_source *s, unsigned char *buf, size_t cap, size_t *got) {
    z_stream *z = &s->z;
    size_t n = 0;
    while (n < cap && !s->done) {
        if (z->avail_in == 0 && !(s->in_eof && s->peek_pos == s->npeek)) {
            size_t r;
            DP_TRY(read_raw(s, s->inbuf, GZ_INBUF, &r));
            z->next_in = s->inbuf;
            z->avail_in = (uInt)r;
        }
        uint64_t consumed = s->in_bytes - z->avail_in; /* compressed offset, for messages */
        if (s->member_done) {
            if (z->avail_in == 0) {
                if (s->in_eof && s->peek_pos == s->npeek) {
                    s->done = 1;
                    break;
                }
                continue;
            }
            /* Another member may follow (RFC 1952 allows concatenation). */
            if (z->next_in[0] != 0x1f || (z->avail_in > 1 && z->next_in[1] != 0x8b))
                return dp_error(DP_E_FORMAT,
                                "%s: corrupt gzip file: unexpected bytes after the compressed "
                                "data at byte offset %llu (expected the end of the file)",
                                s->path, (unsigned long long)consumed);
            inflateReset(z);
            s->member_done = 0;
        }
        z->next_out = buf + n;
        z->avail_out = (uInt)DP_MIN(cap - n, (size_t)1 << 30);
        int ret = inflate(z, Z_NO_FLUSH);
        n = (size_t)(z->next_out - buf);
        if (ret == Z_STREAM_END) {
            s->member_done = 1;
        } else if (ret == Z_BUF_ERROR || (ret == Z_OK && z->avail_in == 0)) {
            if (z->avail_in == 0 && s->in_eof && s->peek_pos == s->npeek && ret == Z_BUF_ERROR)
                return dp_error(DP_E_FORMAT,
                                "%s: truncated gzip file: the compressed data ends at byte %llu "
                                "before the end of the stream (expected more data; was the "
                                "download cut?)",
                                s->path, (unsigned long long)s->in_bytes);
        } else if (ret != Z_OK) {
            return dp_error(DP_E_FORMAT,
                            "%s: corrupt gzip file near compressed byte offset %llu: %s (expected "
                            "valid deflate data)",
                            s->path, (unsigned long long)consumed,
                            z->msg ? z->msg : "inflate failed");
        }
    }
    *got = n;
    return DP_OK;
}

static dp_status read_zip(dp_source *s, void *buf, size_t cap, size_t *got) {
    size_t n = 0;
    while (n < cap && !s->done) {
        zip_int64_t r = zip_fread(s->zf, (char *)buf + n, cap - n);
        if (r < 0) {
            zip_error_t *ze = zip_file_get_error(s->zf);
            return dp_error(DP_E_FORMAT,
                            "%s: corrupt zip member after %llu bytes: %s (expected intact "
                            "compressed data)",
                            s->name, (unsigned long long)(s->out_bytes + n),
                            zip_error_strerror(ze));
        }
        if (r == 0) s->done = 1;
        n += (size_t)r;
    }
    *got = n;
    return DP_OK;
}

DP_API dp_status dp_source_read(dp_source *s, void *buf, size_t cap, size_t *got) {
    *got = 0;
    if (cap == 0 || s->done) return DP_OK;
    dp_status st;
    switch (s->kind) {
    case DP_SOURCE_GZIP:
        st = read_gzip(s, buf, cap, got);
        break;
    case DP_SOURCE_ZIP:
        st = read_zip(s, buf, cap, got);
        break;
    default:
        st = read_raw(s, buf, cap, got);
        if (st == DP_OK && *got == 0) s->done = 1;
        break;
    }
    s->out_bytes += *got;
    return st;
}

DP_API dp_source_kind dp_source_kind_of(const dp_source *s) {
    return s->kind;
}
DP_API const char *dp_source_name(const dp_source *s) {
    return s->name;
}
DP_API const char *dp_source_path(const dp_source *s) {
    return s->path;
}
DP_API uint64_t dp_source_file_bytes(const dp_source *s) {
    return s->file_bytes;
}
DP_API uint64_t dp_source_bytes_read(const dp_source *s) {
    return s->out_bytes;
}

DP_API dp_status dp_source_sha256(const dp_source *s, char hex[65]) {
    if (!s->hashed) {
        hex[0] = '\0';
        return dp_error(DP_E_USAGE, "%s: the SHA-256 is known only after the whole file was read",
                        s->path);
    }
    sodium_bin2hex(hex, 65, s->digest, sizeof s->digest);
    return DP_OK;
}

/* ---- for distributed prep (source_internal.h) ---- */

dp_status source_open_range(const char *path, uint64_t begin, uint64_t end, dp_source **out) {
    *out = NULL;
    if (end < begin)
        return dp_error(DP_E_USAGE, "%s: byte range [%llu, %llu) is reversed", path,
                        (unsigned long long)begin, (unsigned long long)end);
    dp_source *s = dp_calloc(1, sizeof *s);
    if (!s) return dp_error(DP_E_NOMEM, "%s: out of memory", path);
    s->fd = -1;
    s->kind = DP_SOURCE_PLAIN;
    s->ranged = 1;
    s->range_left = end - begin;
    dp_status st = DP_OK;
    s->path = dp_strdup(path);
    s->name = dp_strdup(path);
    if (!s->path || !s->name) {
        st = dp_error(DP_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        st = dp_error(DP_E_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    s->own_fd = 1;
    struct stat sb;
    if (fstat(s->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = dp_error(DP_E_IO, "%s: expected a regular file to read a byte range of", path);
        goto fail;
    }
    s->file_bytes = (uint64_t)sb.st_size;
    s->regular = 1;
    if (lseek(s->fd, (off_t)begin, SEEK_SET) == (off_t)-1) {
        st = dp_error(DP_E_IO, "%s: cannot seek to byte %llu: %s", path, (unsigned long long)begin,
                      strerror(errno));
        goto fail;
    }
    (void)posix_fadvise(s->fd, (off_t)begin, (off_t)(end - begin), POSIX_FADV_SEQUENTIAL);
    *out = s;
    return DP_OK;
fail:
    dp_source_close(s);
    return st;
}

int source_is_regular(const dp_source *s) {
    return s->regular && s->own_fd;
}

dp_status source_sha256_whole(dp_source *s, char hex[65]) {
    hex[0] = '\0';
    if (s->ranged) return dp_error(DP_E_USAGE, "%s: a byte-range source is not hashed", s->path);
    if (!s->hashed && s->hthread) {
        pthread_join(s->hth, NULL);
        s->hthread = 0;
        if (s->hstatus != DP_OK) return dp_error(s->hstatus, "%s", s->hmsg);
        if (s->hbytes != s->file_bytes)
            return dp_error(
                DP_E_IO, "%s: the file changed while it was read (%llu bytes, then %llu)", s->path,
                (unsigned long long)s->file_bytes, (unsigned long long)s->hbytes);
        memcpy(s->digest, s->hdigest, sizeof s->digest);
        s->hashed = 1;
    }
    if (!s->hashed) {
        if (!source_is_regular(s))
            return dp_error(DP_E_USAGE, "%s: only a regular file can be hashed apart from reading",
                            s->path);
        DP_TRY(hash_whole_file(s));
    }
    sodium_bin2hex(hex, 65, s->digest, sizeof s->digest);
    return DP_OK;
}
