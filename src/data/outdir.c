/*
 * outdir.c: the dataset directory appears whole or not at all. prep writes
 * into "<out>.tmp-<pid>-<n>" beside the target (same file system), fsyncs,
 * then renames it into place with renameat2(RENAME_NOREPLACE); with --force,
 * RENAME_EXCHANGE swaps it with the old dataset atomically and only then is
 * the old one removed. A failure anywhere removes the temporary directory,
 * so no half-written dataset and no loss of the earlier one. The arrays are
 * made here too: rank 0 creates each .npy at its full size (header, then
 * zeros), and every rank writes its rows' slice in place (distributed prep).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/npy.h"
#include "data/prep_internal.h"

/* Is `dir` a flat directory that is empty or holds a dpsgd dataset? */
static int is_dataset_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int entries = 0, ok = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries++;
        if (e->d_type == DT_DIR) ok = 0;
    }
    closedir(d);
    if (!ok) return 0;
    if (entries == 0) return 1;
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* meta.json opens with the format; a prefix is enough to recognise it */
    return strstr(buf, "\"format\"") && strstr(buf, "\"dpsgd-dataset\"");
}

static void remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4200];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

void prep_outdir_abort(const char *tmp) {
    if (tmp) remove_flat_dir(tmp);
}

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static void parent_of(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

dp_status prep_outdir_begin(const char *out, int force, char **tmp) {
    *tmp = NULL;
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        n--;
    if (n == 0) return dp_error(DP_E_USAGE, "the output directory name is empty");
    struct stat st;
    if (lstat(out, &st) == 0) {
        if (!force)
            return dp_error(DP_E_EXISTS,
                            "%s: already exists (expected a new directory; --force replaces an "
                            "earlier dataset)",
                            out);
        if (!S_ISDIR(st.st_mode) || !is_dataset_dir(out))
            return dp_error(DP_E_EXISTS,
                            "%s: exists and is not a dpsgd dataset directory; not replacing it "
                            "even with --force",
                            out);
    }
    size_t cap = n + 64;
    char *name = dp_malloc(cap);
    if (!name) return dp_error(DP_E_NOMEM, "out of memory");
    static unsigned counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(name, cap, "%.*s.tmp-%ld-%u", (int)n, out, (long)getpid(),
                 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) + (unsigned)time(NULL));
        if (mkdir(name, 0777) == 0) {
            *tmp = name;
            return DP_OK;
        }
        if (errno != EEXIST) break;
    }
    char parent[4096];
    parent_of(name, parent, sizeof parent);
    dp_status s = dp_error(DP_E_IO,
                           "%s: cannot create the dataset directory: %s (expected a writable "
                           "directory %s)",
                           out, strerror(errno), parent);
    dp_free(name);
    return s;
}

dp_status prep_outdir_commit(const char *tmp, const char *out, int force) {
    fsync_path(tmp);
    char parent[4096];
    parent_of(out, parent, sizeof parent);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) == 0) {
        fsync_path(parent);
        return DP_OK;
    }
    int err = errno;
    if (err == EEXIST && !force)
        return dp_error(DP_E_EXISTS, "%s: appeared while prep ran; not replacing it", out);
    if (err == EEXIST) {
        if (!is_dataset_dir(out))
            return dp_error(DP_E_EXISTS, "%s: is not a dpsgd dataset directory; not replacing it",
                            out);
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
            remove_flat_dir(tmp); /* now the old dataset */
            fsync_path(parent);
            return DP_OK;
        }
        err = errno;
    }
    if (err == EINVAL || err == ENOSYS) { /* a file system without renameat2's flags */
        struct stat st;
        if (lstat(out, &st) != 0) {
            if (rename(tmp, out) == 0) return DP_OK;
        } else if (force) {
            char old[4200];
            snprintf(old, sizeof old, "%s.old", tmp);
            if (rename(out, old) == 0) {
                if (rename(tmp, out) == 0) {
                    remove_flat_dir(old);
                    return DP_OK;
                }
                rename(old, out); /* put the old one back */
            }
        }
        err = errno;
    }
    return dp_error(DP_E_IO, "%s: cannot move the new dataset into place: %s", out, strerror(err));
}

/* ---- the arrays, written in slices ---- */

size_t prep_npy_data_offset(const char *descr, int ndim, uint64_t rows, uint64_t cols) {
    char hdr[128];
    return dp_npy_header(hdr, descr, ndim, rows, cols);
}

static dp_status pwrite_all(int fd, const char *path, const void *p, size_t n, uint64_t off) {
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dp_error(DP_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return DP_OK;
}

dp_status prep_npy_create(const char *path, const char *descr, int ndim, uint64_t rows,
                          uint64_t cols) {
    char hdr[128];
    size_t hl = dp_npy_header(hdr, descr, ndim, rows, cols);
    uint64_t total = hl + rows * (ndim == 2 ? cols : 1) * 4;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return dp_error(DP_E_IO, "%s: cannot create: %s", path, strerror(errno));
    dp_status s = pwrite_all(fd, path, hdr, hl, 0);
    if (s == DP_OK && ftruncate(fd, (off_t)total) != 0)
        s = dp_error(DP_E_IO, "%s: cannot size to %llu bytes: %s", path, (unsigned long long)total,
                     strerror(errno));
    if (s == DP_OK && fsync(fd) != 0)
        s = dp_error(DP_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && s == DP_OK)
        s = dp_error(DP_E_IO, "%s: close failed: %s", path, strerror(errno));
    return s;
}

dp_status prep_npy_write_at(const char *path, uint64_t offset, const void *data, size_t bytes) {
    if (bytes == 0) return DP_OK;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return dp_error(DP_E_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    dp_status s = pwrite_all(fd, path, data, bytes, offset);
    if (s == DP_OK && fsync(fd) != 0)
        s = dp_error(DP_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && s == DP_OK)
        s = dp_error(DP_E_IO, "%s: close failed: %s", path, strerror(errno));
    return s;
}
