/*
 * npy.c: reading and writing NumPy .npy files (format 1.0 on write; 1.0 to
 * 3.0 on read), so numpy.load opens dpsgd's datasets and dpsgd maps the
 * arrays without copying. Spec: numpy/lib/format.py's documented layout:
 * magic "\x93NUMPY", version, little-endian header length, a Python dict
 * literal padded with spaces to a 64-byte boundary and ended by '\n'.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/dp_internal.h"
#include "data/npy.h"

/* Find `key` in the dict text and return a pointer just after its ':'. */
static const char *dict_value(const char *d, size_t n, const char *key) {
    size_t k = strlen(key);
    for (size_t i = 0; i + k + 2 < n; i++) {
        if ((d[i] == '\'' || d[i] == '"') && !memcmp(d + i + 1, key, k) && d[i + 1 + k] == d[i]) {
            const char *p = d + i + k + 2;
            while (p < d + n && (*p == ' ' || *p == ':')) p++;
            return p;
        }
    }
    return NULL;
}

dp_status dp_npy_parse(const char *name, const unsigned char *buf, size_t len, dp_npy_info *info) {
    memset(info, 0, sizeof *info);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return dp_error(DP_E_FORMAT, "%s: not a NumPy .npy file (expected the magic \\x93NUMPY)",
                        name);
    int major = buf[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return dp_error(DP_E_FORMAT, "%s: truncated .npy header", name);
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        start = 12;
    } else {
        return dp_error(DP_E_FORMAT, "%s: .npy format version %d.%d is not supported (expected 1-3)",
                        name, major, buf[7]);
    }
    if (hlen > 1 << 20 || start + hlen > len)
        return dp_error(DP_E_FORMAT, "%s: truncated .npy header (%zu bytes announced)", name, hlen);
    const char *d = (const char *)buf + start;
    const char *v = dict_value(d, hlen, "descr");
    if (!v || (*v != '\'' && *v != '"'))
        return dp_error(DP_E_FORMAT, "%s: .npy header has no 'descr'", name);
    size_t i = 0;
    for (v++; i < sizeof info->descr - 1 && *v != '\'' && *v != '"' && v < d + hlen; v++)
        info->descr[i++] = *v;
    v = dict_value(d, hlen, "fortran_order");
    if (!v || strncmp(v, "False", 5) != 0)
        return dp_error(DP_E_FORMAT, "%s: expected a C-order array (fortran_order False)", name);
    v = dict_value(d, hlen, "shape");
    if (!v || *v != '(') return dp_error(DP_E_FORMAT, "%s: .npy header has no 'shape'", name);
    v++;
    info->shape[1] = 1;
    while (info->ndim < 3) {
        while (*v == ' ') v++;
        if (*v == ')') break;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || errno)
            return dp_error(DP_E_FORMAT, "%s: malformed shape in the .npy header", name);
        if (info->ndim == 2)
            return dp_error(DP_E_FORMAT, "%s: expected a 1-D or 2-D array, found more dimensions",
                            name);
        info->shape[info->ndim++] = x;
        v = end;
        while (*v == ' ') v++;
        if (*v == ',') v++;
    }
    if (info->ndim == 0)
        return dp_error(DP_E_FORMAT, "%s: expected a 1-D or 2-D array, found a scalar", name);
    info->data_offset = start + hlen;
    return DP_OK;
}

size_t dp_npy_header(char *hdr, const char *descr, int ndim, uint64_t rows, uint64_t cols) {
    char dict[96];
    int n;
    if (ndim == 1)
        n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%llu,), }",
                     descr, (unsigned long long)rows);
    else
        n = snprintf(dict, sizeof dict,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%llu, %llu), }", descr,
                     (unsigned long long)rows, (unsigned long long)cols);
    size_t total = 10 + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    size_t hlen = total - 10;
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    hdr[8] = (char)(hlen & 0xff);
    hdr[9] = (char)(hlen >> 8);
    memcpy(hdr + 10, dict, (size_t)n);
    memset(hdr + 10 + n, ' ', hlen - (size_t)n - 1);
    hdr[total - 1] = '\n';
    return total;
}

static dp_status write_all(int fd, const char *path, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dp_error(DP_E_IO, "%s: write failed: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return DP_OK;
}

dp_status dp_npy_write(const char *path, const char *descr, int ndim, const void *data,
                       uint64_t rows, uint64_t cols) {
    char hdr[128], tmp[4096];
    size_t hl = dp_npy_header(hdr, descr, ndim, rows, cols);
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return dp_error(DP_E_IO, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return dp_error(DP_E_IO, "%s: cannot create: %s", path, strerror(errno));
    fchmod(fd, 0644);
    dp_status s = write_all(fd, path, hdr, hl);
    if (s == DP_OK) s = write_all(fd, path, data, (size_t)(rows * (ndim == 2 ? cols : 1) * 4));
    if (s == DP_OK && fsync(fd) != 0)
        s = dp_error(DP_E_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && s == DP_OK)
        s = dp_error(DP_E_IO, "%s: close failed: %s", path, strerror(errno));
    if (s == DP_OK && rename(tmp, path) != 0)
        s = dp_error(DP_E_IO, "%s: rename failed: %s", path, strerror(errno));
    if (s != DP_OK) unlink(tmp);
    return s;
}

DP_API dp_status dp_npy_write_f32(const char *path, const float *a, size_t rows, size_t cols) {
    return dp_npy_write(path, "<f4", 2, a, rows, cols);
}

DP_API dp_status dp_npy_write_i32(const char *path, const int32_t *a, size_t rows) {
    return dp_npy_write(path, "<i4", 1, a, rows, 1);
}
