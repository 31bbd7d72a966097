/*
 * bench/synth.c: how fast `dpsgd synth` writes a full-width file, plain and
 * gzip, on 1 and 2 threads, and how much memory it takes (each run in a
 * forked child, so ru_maxrss is that run's peak); plus the random stream it
 * uses (splitmix64 counters) against libsodium's ChaCha20 keystream, the
 * measurement behind choosing the former for synthetic data.
 *
 * usage: synth [--rows N] [--dir DIR] [--json]     (default 1000000 rows, $TMPDIR)
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dpsgd/dpsgd.h"
#include "data/synth_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct run {
    const char *name;
    uint64_t rows;
    int threads, gz;
    double wall, cpu;
    long rss_kb;
    uint64_t bytes, file_bytes;
    int ok;
} run;

/* One dp_synth_write in a child process; the report comes back by a pipe. */
static void measure(run *r, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-synth-%d.csv%s", dir, (int)getpid(), r->gz ? ".gz" : "");
    int fds[2];
    if (pipe(fds)) return;
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dp_synth_config cfg;
        dp_synth_config_default(&cfg);
        cfg.rows = r->rows;
        cfg.seed = 1;
        cfg.threads = r->threads;
        cfg.force = 1;
        dp_synth_report rep;
        dp_status st = dp_synth_write(path, &cfg, &rep);
        if (st != DP_OK) fprintf(stderr, "synth: %s\n", dp_last_error());
        uint64_t out[2] = {rep.bytes, rep.file_bytes};
        if (write(fds[1], out, sizeof out) != sizeof out) st = DP_E_IO;
        _exit(st == DP_OK ? 0 : 1);
    }
    close(fds[1]);
    int status = 0;
    struct rusage ru;
    uint64_t out[2] = {0, 0};
    if (read(fds[0], out, sizeof out) != sizeof out) out[0] = out[1] = 0;
    close(fds[0]);
    wait4(pid, &status, 0, &ru);
    r->wall = now() - t0;
    r->cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
             ru.ru_stime.tv_usec * 1e-6;
    r->rss_kb = ru.ru_maxrss;
    r->bytes = out[0];
    r->file_bytes = out[1];
    r->ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    unlink(path);
}

/* 64-bit draws per second: the counter stream vs the ChaCha20 keystream. */
static double draws_splitmix(size_t n) {
    synth_rng r = synth_stream(1, 2, 3);
    uint64_t acc = 0;
    double t0 = now();
    for (size_t i = 0; i < n; i++)
        acc ^= synth_next(&r);
    double t = now() - t0;
    if (acc == 42) printf(" ");
    return n / t;
}

static double draws_chacha20(size_t n) {
    static unsigned char key[crypto_stream_chacha20_KEYBYTES],
        nonce[crypto_stream_chacha20_NONCEBYTES];
    uint64_t buf[512], acc = 0;
    double t0 = now();
    for (size_t i = 0, blk = 0; i < n; i += 512, blk++) {
        memcpy(nonce, &blk, sizeof blk); /* one short stream per household, as synth would */
        crypto_stream_chacha20((unsigned char *)buf, sizeof buf, nonce, key);
        for (int k = 0; k < 512; k++)
            acc ^= buf[k];
    }
    double t = now() - t0;
    if (acc == 42) printf(" ");
    return n / t;
}

int main(int argc, char **argv) {
    uint64_t rows = 1000000;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr, "usage: synth [--rows N] [--dir DIR] [--json]\n");
            return 1;
        }
    }
    if (sodium_init() < 0) return 2;
    run runs[] = {
        {.name = "plain, 1 thread", .rows = rows, .threads = 1, .gz = 0},
        {.name = "plain, 2 threads", .rows = rows, .threads = 2, .gz = 0},
        {.name = "gzip -1, 1 thread", .rows = rows, .threads = 1, .gz = 1},
        {.name = "gzip -1, 2 threads", .rows = rows, .threads = 2, .gz = 1},
        {.name = "plain, 2 threads, rows/10", .rows = rows / 10, .threads = 2, .gz = 0},
    };
    int nr = (int)(sizeof runs / sizeof runs[0]);
    for (int k = 0; k < nr; k++)
        measure(&runs[k], dir);
    double sm = draws_splitmix(200000000), cc = draws_chacha20(200000000);
    if (json) {
        printf("{\"bench\":\"synth\",\"rows\":%llu,\"runs\":[", (unsigned long long)rows);
        for (int k = 0; k < nr; k++)
            printf("%s{\"name\":\"%s\",\"rows\":%llu,\"threads\":%d,\"gzip\":%d,\"ok\":%d,"
                   "\"wall_s\":%.3f,\"cpu_s\":%.3f,\"max_rss_kb\":%ld,\"csv_bytes\":%llu,"
                   "\"file_bytes\":%llu}",
                   k ? "," : "", runs[k].name, (unsigned long long)runs[k].rows, runs[k].threads,
                   runs[k].gz, runs[k].ok, runs[k].wall, runs[k].cpu, runs[k].rss_kb,
                   (unsigned long long)runs[k].bytes, (unsigned long long)runs[k].file_bytes);
        printf("],\"draws_per_s\":{\"splitmix64\":%.4g,\"chacha20\":%.4g}}\n", sm, cc);
        return 0;
    }
    printf("dpsgd synth, %llu rows, full width (287 columns), seed 1\n\n",
           (unsigned long long)rows);
    printf("%-28s %9s %9s %11s %10s %10s %10s\n", "run", "wall s", "cpu s", "rows/s", "CSV MB/s",
           "file MB", "max RSS MB");
    for (int k = 0; k < nr; k++) {
        run *r = &runs[k];
        printf("%-28s %9.2f %9.2f %11.0f %10.1f %10.1f %10.1f%s\n", r->name, r->wall, r->cpu,
               r->rows / r->wall, r->bytes / 1e6 / r->wall, r->file_bytes / 1e6, r->rss_kb / 1024.0,
               r->ok ? "" : "  FAILED");
    }
    printf("\nrandom 64-bit draws per second, one core: splitmix64 counters %.3g, "
           "libsodium ChaCha20 keystream %.3g (%.1fx)\n",
           sm, cc, sm / cc);
    return 0;
}
