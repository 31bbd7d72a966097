/*
 * testutil.c: see testutil.h.
 */
#include "testutil.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_seed(void) {
    const char *env = getenv("DP_TEST_SEED");
    uint64_t s;
    if (env) {
        s = strtoull(env, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    fprintf(stderr, "test seed: DP_TEST_SEED=%llu\n", (unsigned long long)s);
    return s;
}

uint64_t tu_next(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double tu_uniform(uint64_t *s) { return (tu_next(s) >> 11) * 0x1.0p-53; }

double tu_normal(uint64_t *s) {
    double u1 = tu_uniform(s), u2 = tu_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

char *tu_tempdir(void) {
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/dpsgd-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

char *tu_dir;

void tu_dir_init(void) {
    tu_dir = tu_tempdir();
    if (!tu_dir) {
        fprintf(stderr, "testutil: cannot make a temporary directory\n");
        abort();
    }
}

void tu_dir_fini(void) {
    tu_rmrf(tu_dir);
    free(tu_dir);
    tu_dir = NULL;
}

int tu_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd) return -1;
    return system(cmd);
}

void tu_rmrf(const char *path) {
    if (!path || !*path || strcmp(path, "/") == 0) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

int tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

const char *tu_dpsgd(void) {
    const char *p = getenv("DPSGD");
    return p ? p : "build/dpsgd";
}

const char *tu_source_dir(void) {
    const char *p = getenv("DP_SOURCE_DIR");
    return p ? p : ".";
}

char *tu_path(const char *dir, const char *name) {
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

int tu_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int tu_run(char **out, char **err, const char *fmt, ...) {
    char args[8192], cmd[17000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *dir = tu_tempdir();
    char of[4200], ef[4200];
    snprintf(of, sizeof of, "%s/out", dir);
    snprintf(ef, sizeof ef, "%s/err", dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s' </dev/null", tu_dpsgd(), args, of, ef);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (out) *out = tu_read_file(of, NULL);
    if (err) *err = tu_read_file(ef, NULL);
    tu_rmrf(dir);
    free(dir);
    return rc;
}
