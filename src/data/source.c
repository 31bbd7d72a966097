/*
 * source.c: input bytes from a plain file, a gzip stream (zlib inflate with
 * gzip framing, members concatenated as `cat a.gz b.gz` makes them) or the
 * CSV members of a zip archive (libzip, which also checks each member's CRC;
 * several members are parts of one table, joined as source.h says: the
 * headers are compared when the archive is opened, and while the parts are
 * streamed the line ends are counted, only then, so that dp_source_locate
 * can turn a line of the stream back into a part and a line of it).
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
#include <stdlib.h>
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

enum { GZ_INBUF = 1 << 18, HASH_THREAD_MIN = 8 << 20, HEAD_MAX = 64 << 20 };

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

/* One .csv member of a zip. Of a zip of several, the stream holds each
 * part's bytes from `skip` on (a byte order mark, blank lines and the header
 * of a later part are not handed out), so line L of the stream, with L >=
 * first_line of the last part begun at or before it, is line
 * L - first_line + 1 + skip_lines of that part. */
typedef struct part {
    zip_uint64_t index;
    char *name;          /* "path:member", for messages */
    const char *member;  /* the member's name: inside `name`, past "path:" */
    uint64_t size;       /* uncompressed bytes */
    uint64_t skip;       /* leading bytes not handed out */
    uint64_t skip_lines; /* line ends among them */
    uint64_t first_line; /* line of the stream of the first byte handed out */
} part;

struct dp_source {
    dp_source_kind kind;
    char *path;
    char *name;  /* path, path:member for a zip, path:first..last for several parts */
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
    part *parts;
    size_t nparts; /* the .csv members; > 1: parts of one table, below */
    /* zip of several parts: the one being read, how many have begun (set
     * with release order after their first_line, for dp_source_locate in
     * another thread), the line ends handed out, the bytes of the current
     * part read (skipped ones included), the parity of its quotes, a line
     * end owed before the next part, the last byte handed out */
    size_t cur, begun;
    uint64_t lines, part_read;
    int parity, pending_nl;
    unsigned char last;
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

static int by_member_name(const void *a, const void *b) {
    return strcmp(((const part *)a)->member, ((const part *)b)->member);
}

/* A short printable copy of [p, p + n) for a message. */
static void snippet(char *out, size_t cap, const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (i == 40 && n > 44) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        out[k++] = c >= 32 && c != 127 ? (char)c : '?';
    }
    out[k] = '\0';
}

/* Field `col` (from 0) of a header line, split at delimiters outside quotes
 * (every quote toggles, as the CSV reader reads): 0 if it has fewer. */
static int header_field(const char *h, size_t n, char delim, size_t col, const char **f,
                        size_t *len) {
    size_t start = 0, k = 0;
    int in = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] == '"') in = !in;
        if (i == n || (!in && h[i] == delim)) {
            if (k++ == col) {
                *f = h + start;
                *len = i - start;
                return 1;
            }
            start = i + 1;
        }
    }
    return 0;
}

/* The header of a part: its first line that is not blank (spaces, tabs, CR),
 * after a byte order mark, ending at the first line end outside quotes (or
 * at the end of the member). *hdr (allocated; NULL if the part holds no
 * such line) gets the line without its line end and a CR before it; *raw the
 * bytes up to and including that line end (all of a part without a header);
 * *nl the line ends among them. With o->header == 0 only a byte order mark
 * is looked for. */
static dp_status read_head(dp_source *s, const part *p, const dp_source_options *o, char **hdr,
                           size_t *hlen, uint64_t *raw, uint64_t *nl) {
    *hdr = NULL;
    *hlen = 0;
    *raw = *nl = 0;
    zip_file_t *zf = zip_fopen_index(s->za, p->index, 0);
    if (!zf)
        return dp_error(DP_E_FORMAT, "%s: cannot read the zip member: %s", p->name,
                        zip_strerror(s->za));
    size_t cap = 1 << 16, len = 0, pos = 0, scan = 0;
    char *buf = dp_malloc(cap);
    dp_status st = buf ? DP_OK : dp_error(DP_E_NOMEM, "%s: out of memory", p->name);
    int eof = 0, in = 0, bom_checked = 0;
    while (!st) {
        if (scan == len && !eof) { /* everything read was scanned: read more */
            if (len == cap) {
                char *b = cap < HEAD_MAX ? dp_realloc(buf, 2 * cap) : NULL;
                if (!b) {
                    st = dp_error(DP_E_FORMAT,
                                  "%s: no line end in the first %zu bytes (expected a header "
                                  "line of column names)",
                                  p->name, cap);
                    break;
                }
                buf = b;
                cap *= 2;
            }
            zip_int64_t r = zip_fread(zf, buf + len, cap - len);
            if (r < 0) {
                st = dp_error(DP_E_FORMAT,
                              "%s: corrupt zip member: %s (expected intact compressed data)",
                              p->name, zip_error_strerror(zip_file_get_error(zf)));
                break;
            }
            if (r == 0) eof = 1;
            len += (size_t)r;
            continue;
        }
        if (!bom_checked) {
            if (len < 3 && !eof) {
                scan = len; /* read more before deciding */
                continue;
            }
            bom_checked = 1;
            pos = scan = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
            if (!o->header) {
                *raw = pos;
                break;
            }
        }
        /* find the end of the line that starts at pos */
        while (scan < len && (buf[scan] != '\n' || in)) {
            if (buf[scan] == '"') in = !in;
            scan++;
        }
        if (scan == len && !eof) continue;
        size_t e = scan, next = scan < len ? scan + 1 : len; /* line [pos, e), then next */
        int blank = 1;
        for (size_t i = pos; i < e && blank; i++)
            blank = buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r';
        if (!blank) {
            size_t n = e - pos - (e > pos && buf[e - 1] == '\r');
            if (!(*hdr = dp_malloc(n + 1))) {
                st = dp_error(DP_E_NOMEM, "%s: out of memory", p->name);
                break;
            }
            memcpy(*hdr, buf + pos, n);
            (*hdr)[n] = '\0';
            *hlen = n;
        }
        pos = scan = next;
        if (!blank || next == len) { /* the header, or the end of a part without one */
            *raw = next;
            break;
        }
    }
    for (uint64_t i = 0; !st && i < *raw; i++)
        *nl += buf[i] == '\n';
    dp_free(buf);
    zip_fclose(zf);
    return st;
}

/* Several .csv members: sort them, find and compare their headers, and
 * work out what of each is handed out. */
static dp_status open_parts(dp_source *s, const dp_source_options *o) {
    qsort(s->parts, s->nparts, sizeof *s->parts, by_member_name);
    const part *first = &s->parts[0], *lastp = &s->parts[s->nparts - 1];
    size_t len = strlen(first->name) + strlen(lastp->member) + 3;
    dp_free(s->name);
    if (!(s->name = dp_malloc(len))) return dp_error(DP_E_NOMEM, "%s: out of memory", s->path);
    snprintf(s->name, len, "%s..%s", first->name, lastp->member);
    char *ref = NULL; /* the first header found, and whose it is */
    size_t ref_len = 0;
    const part *ref_part = NULL;
    dp_status st = DP_OK;
    for (size_t i = 0; i < s->nparts && !st; i++) {
        part *p = &s->parts[i];
        char *hdr;
        size_t hlen;
        uint64_t raw, nl;
        if ((st = read_head(s, p, o, &hdr, &hlen, &raw, &nl))) break;
        if (!o->header) { /* a byte order mark, dropped but from the first part */
            p->skip = i ? raw : 0;
        } else if (!ref_part) { /* this part's header (if any) is the table's: kept */
            if (hdr) {
                ref = hdr;
                ref_len = hlen;
                ref_part = p;
                hdr = NULL;
            }
        } else {
            p->skip = raw;
            p->skip_lines = nl;
            if (hdr && (hlen != ref_len || memcmp(hdr, ref, hlen) != 0)) {
                size_t col = 0, la = 0, lb = 0;
                const char *a = NULL, *b = NULL;
                for (;; col++) {
                    int ha = header_field(hdr, hlen, o->delimiter, col, &a, &la);
                    int hb = header_field(ref, ref_len, o->delimiter, col, &b, &lb);
                    if (ha != hb || (ha && (la != lb || memcmp(a, b, la) != 0))) {
                        if (!ha) a = NULL;
                        if (!hb) b = NULL;
                        break;
                    }
                }
                char sa[64] = "no column", sb[64] = "no column", qa[80], qb[80];
                if (a) snippet(sa, sizeof sa, a, la);
                if (b) snippet(sb, sizeof sb, b, lb);
                snprintf(qa, sizeof qa, a ? "'%s'" : "%s", sa);
                snprintf(qb, sizeof qb, b ? "'%s'" : "%s", sb);
                st = dp_error(DP_E_FORMAT,
                              "%s: %s's header differs from %s's at column %zu (%s against %s); "
                              "expected parts of one table",
                              s->path, p->member, ref_part->member, col + 1, qa, qb);
            }
        }
        dp_free(hdr);
    }
    dp_free(ref);
    return st;
}

/* Find the .csv members; directories and macOS resource forks (__MACOSX/...)
 * are not members a user means. One is read as it is; several are parts. */
static dp_status open_zip(dp_source *s, const dp_source_options *o) {
    int err = 0;
    s->za = zip_open(s->path, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!s->za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        dp_status st = dp_error(DP_E_FORMAT,
                                "%s: not a readable zip archive (truncated or corrupt: %s); "
                                "expected a zip holding .csv files",
                                s->path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    zip_int64_t n = zip_get_num_entries(s->za, 0);
    size_t ncsv = 0;
    char others[512] = "";
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(s->za, (zip_uint64_t)i, 0);
        if (!nm || !*nm || nm[strlen(nm) - 1] == '/' || strncmp(nm, "__MACOSX/", 9) == 0) continue;
        if (ends_with_csv(nm)) {
            ncsv++;
            continue;
        }
        size_t used = strlen(others);
        if (used < sizeof others - 2)
            snprintf(others + used, sizeof others - used, "%s%s", used ? ", " : "", nm);
    }
    if (ncsv == 0)
        return dp_error(DP_E_FORMAT,
                        "%s: the zip archive holds no .csv file (found: %s); expected one", s->path,
                        *others ? others : "nothing");
    if (!(s->parts = dp_calloc(ncsv, sizeof *s->parts)))
        return dp_error(DP_E_NOMEM, "%s: out of memory", s->path);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(s->za, (zip_uint64_t)i, 0);
        if (!nm || !*nm || nm[strlen(nm) - 1] == '/' || strncmp(nm, "__MACOSX/", 9) == 0 ||
            !ends_with_csv(nm))
            continue;
        part *p = &s->parts[s->nparts++];
        size_t len = strlen(s->path) + strlen(nm) + 2;
        if (!(p->name = dp_malloc(len))) return dp_error(DP_E_NOMEM, "%s: out of memory", s->path);
        snprintf(p->name, len, "%s:%s", s->path, nm);
        p->member = p->name + strlen(s->path) + 1;
        p->index = (zip_uint64_t)i;
        zip_stat_t zs;
        if (zip_stat_index(s->za, p->index, 0, &zs) == 0 && (zs.valid & ZIP_STAT_SIZE))
            p->size = zs.size;
    }
    if (s->nparts > 1) {
        DP_TRY(open_parts(s, o));
    } else {
        dp_free(s->name);
        if (!(s->name = dp_strdup(s->parts[0].name)))
            return dp_error(DP_E_NOMEM, "%s: out of memory", s->path);
        s->zf = zip_fopen_index(s->za, s->parts[0].index, 0);
        if (!s->zf)
            return dp_error(DP_E_FORMAT, "%s: cannot read the zip member: %s", s->name,
                            zip_strerror(s->za));
    }
    return hash_whole_file(s);
}

DP_API void dp_source_options_init(dp_source_options *o) {
    o->header = 1;
    o->delimiter = ',';
}

DP_API dp_status dp_source_open(const char *path, dp_source **out) {
    return dp_source_open_with(path, NULL, out);
}

DP_API dp_status dp_source_open_with(const char *path, const dp_source_options *opt,
                                     dp_source **out) {
    *out = NULL;
    if (!path || !*path) return dp_error(DP_E_USAGE, "dp_source_open: empty path");
    dp_source_options o;
    if (opt)
        o = *opt;
    else
        dp_source_options_init(&o);
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
        if ((st = open_zip(s, &o)) != DP_OK) goto fail;
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
    for (size_t i = 0; i < s->nparts; i++)
        dp_free(s->parts[i].name);
    dp_free(s->parts);
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

/* Occurrences of byte c in [p, p + n). */
static uint64_t count_byte(const unsigned char *p, size_t n, int c) {
    uint64_t k = 0;
    const unsigned char *e = p + n;
    while ((p = memchr(p, c, (size_t)(e - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/* Open the next part for reading, pass over what of it is not handed out,
 * and record the line of the stream where it begins. */
static dp_status begin_part(dp_source *s) {
    part *p = &s->parts[s->cur];
    if (!(s->zf = zip_fopen_index(s->za, p->index, 0)))
        return dp_error(DP_E_FORMAT, "%s: cannot read the zip member: %s", p->name,
                        zip_strerror(s->za));
    char tmp[4096];
    for (s->part_read = 0; s->part_read < p->skip;) {
        zip_int64_t r = zip_fread(s->zf, tmp, (size_t)DP_MIN(sizeof tmp, p->skip - s->part_read));
        if (r <= 0)
            return dp_error(DP_E_FORMAT,
                            "%s: corrupt zip member after %llu bytes: %s (expected intact "
                            "compressed data)",
                            p->name, (unsigned long long)s->part_read,
                            r < 0 ? zip_error_strerror(zip_file_get_error(s->zf))
                                  : "shorter than when it was opened");
        s->part_read += (uint64_t)r;
    }
    s->parity = 0;
    p->first_line = s->lines + 1;
    __atomic_store_n(&s->begun, s->cur + 1, __ATOMIC_RELEASE);
    return DP_OK;
}

/* The parts one after the other, a line end between two where the first
 * lacks one; counting line ends (for dp_source_locate) and quotes: a part
 * that ends inside quotes ends the stream (see source.h). */
static dp_status read_parts(dp_source *s, unsigned char *buf, size_t cap, size_t *got) {
    size_t n = 0;
    while (n < cap && !s->done) {
        if (s->pending_nl) {
            buf[n++] = '\n';
            s->pending_nl = 0;
            s->lines++;
            s->last = '\n';
            continue;
        }
        if (!s->zf) DP_TRY(begin_part(s));
        zip_int64_t r = zip_fread(s->zf, buf + n, cap - n);
        if (r < 0)
            return dp_error(DP_E_FORMAT,
                            "%s: corrupt zip member after %llu bytes: %s (expected intact "
                            "compressed data)",
                            s->parts[s->cur].name, (unsigned long long)s->part_read,
                            zip_error_strerror(zip_file_get_error(s->zf)));
        if (r == 0) {
            zip_fclose(s->zf);
            s->zf = NULL;
            if (s->parity || ++s->cur == s->nparts) {
                s->done = 1;
                break;
            }
            s->pending_nl = s->out_bytes + n > 0 && s->last != '\n';
            continue;
        }
        s->lines += count_byte(buf + n, (size_t)r, '\n');
        s->parity ^= (int)(count_byte(buf + n, (size_t)r, '"') & 1);
        s->last = buf[n + (size_t)r - 1];
        s->part_read += (uint64_t)r;
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
        st = s->nparts > 1 ? read_parts(s, buf, cap, got) : read_zip(s, buf, cap, got);
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

DP_API void dp_source_locate(const dp_source *s, uint64_t line, const char **name,
                             uint64_t *local) {
    size_t n = s->nparts > 1 ? __atomic_load_n(&s->begun, __ATOMIC_ACQUIRE) : 0;
    *name = s->name;
    *local = line;
    if (n == 0 || line < s->parts[0].first_line) return;
    size_t lo = 0, hi = n; /* the last part begun at or before the line */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->parts[mid].first_line <= line)
            lo = mid;
        else
            hi = mid;
    }
    const part *p = &s->parts[lo];
    *name = p->name;
    *local = line - p->first_line + 1 + p->skip_lines;
}

DP_API size_t dp_source_parts(const dp_source *s) {
    return s->nparts ? s->nparts : 1;
}

DP_API void dp_source_part(const dp_source *s, size_t i, const char **member, uint64_t *bytes) {
    *member = i < s->nparts ? s->parts[i].member : NULL;
    *bytes = i < s->nparts ? s->parts[i].size : 0;
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
