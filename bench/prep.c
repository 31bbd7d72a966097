/*
 * bench/prep.c: `dpsgd prep` throughput on a full-width synthetic PUMS file
 * (dp_synth_write, 287 columns) beside the floor of reading the same file:
 * `wc -l`, a plain read(2) loop, and reading it through dp_source (read +
 * the SHA-256 that meta.json records). Each run is a forked child, so its
 * CPU seconds (user + system, from wait4) are measured apart from the wall
 * time: on a shared machine the CPU figure is the stable one.
 *
 *   build/bench/prep [--rows 1000000] [--input FILE] [--dir /tmp] [--threads 2]
 *                    [--reps 3] [--task unemployment] [--json]
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/prep.h"
#include "dpsgd/source.h"
#include "dpsgd/synth.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct result {
    double wall, cpu, parse_wall; /* parse_wall: prep's read/parse/validate phase */
    int ok;
} result;

typedef int (*job_fn)(void *arg, double *parse_wall);

/* Run job in a child; wall time measured around it there, CPU from wait4. */
static result in_child(job_fn job, void *arg) {
    result r = {0};
    int fd[2];
    if (pipe(fd) != 0) return r;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double pw = 0, t = now();
        int ok = job(arg, &pw) == 0;
        double w[3] = {now() - t, pw, ok};
        if (write(fd[1], w, sizeof w) != (ssize_t)sizeof w) _exit(2);
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    double w[3] = {0, 0, 0};
    ssize_t got = read(fd[0], w, sizeof w);
    close(fd[0]);
    int status;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    r.wall = w[0];
    r.parse_wall = w[1];
    r.ok = got == (ssize_t)sizeof w && w[2] == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    r.cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
            (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    return r;
}

static const char *input_path;

static int job_wc(void *arg, double *pw) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "wc -l '%s' > /dev/null", input_path);
    return system(cmd);
}

static int job_read(void *arg, double *pw) {
    int fd = open(input_path, O_RDONLY);
    if (fd < 0) return 1;
    static char buf[1 << 20];
    ssize_t r;
    unsigned long sum = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        sum += (unsigned char)buf[r - 1];
    close(fd);
    return r < 0 || sum == 1; /* use sum so the loop is not removed */
}

static int job_source(void *arg, double *pw) {
    dp_source *s;
    if (dp_source_open(input_path, &s) != DP_OK) return 1;
    static char buf[1 << 20];
    size_t got;
    do
        if (dp_source_read(s, buf, sizeof buf, &got) != DP_OK) return 1;
    while (got);
    char hex[65];
    int bad = dp_source_sha256(s, hex) != DP_OK;
    dp_source_close(s);
    return bad;
}

typedef struct prep_job {
    const char *out, *task;
    int threads;
} prep_job;

static int job_prep(void *arg, double *pw) {
    prep_job *j = arg;
    dp_prep_config c;
    dp_prep_config_init(&c);
    c.input = input_path;
    c.output = j->out;
    c.task = j->task;
    c.threads = j->threads;
    c.force = 1;
    dp_prep_result *res;
    if (dp_prep_run(&c, &res) != DP_OK) {
        fprintf(stderr, "bench/prep: %s\n", dp_last_error());
        return 1;
    }
    cJSON *m = cJSON_Parse(dp_prep_result_meta(res));
    cJSON *ph =
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "run"), "seconds_by_phase"),
                            "read_parse_validate");
    *pw = cJSON_GetNumberValue(ph);
    cJSON_Delete(m);
    dp_prep_result_free(res);
    return 0;
}

static long long synth_rows;
static int job_synth(void *arg, double *pw) {
    dp_synth_config sc;
    dp_synth_config_default(&sc);
    sc.rows = (uint64_t)synth_rows;
    if (dp_synth_write((const char *)arg, &sc, NULL) != DP_OK) {
        fprintf(stderr, "bench/prep: synth: %s\n", dp_last_error());
        return 1;
    }
    return 0;
}

static result best_of(int reps, job_fn job, void *arg) {
    result best = {0};
    for (int i = 0; i < reps; i++) {
        result r = in_child(job, arg);
        if (!r.ok) return r;
        if (!best.ok || r.wall < best.wall) best = r;
    }
    return best;
}

int main(int argc, char **argv) {
    long long rows = 1000000;
    const char *dir = "/tmp", *task = "unemployment";
    int threads = 2, reps = 3, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--input") && i + 1 < argc)
            input_path = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--task") && i + 1 < argc)
            task = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr,
                    "usage: prep [--rows N] [--input FILE] [--dir DIR] [--threads T] [--reps R] "
                    "[--task T] [--json]\n");
            return 1;
        }
    }
    static char made[4096], out[4096];
    synth_rows = rows;
    if (!input_path) {
        snprintf(made, sizeof made, "%s/dpsgd-bench-prep-%lld.csv", dir, rows);
        struct stat st;
        /* in a child: OpenMP threads in this process would not survive the
         * forks that run the measurements */
        if (stat(made, &st) != 0 && !in_child(job_synth, made).ok) {
            fprintf(stderr, "bench/prep: could not write %s\n", made);
            return 1;
        }
        input_path = made;
    }
    snprintf(out, sizeof out, "%s/dpsgd-bench-prep-out", dir);
    struct stat st;
    if (stat(input_path, &st) != 0) {
        fprintf(stderr, "bench/prep: %s: cannot stat\n", input_path);
        return 1;
    }
    double mb = (double)st.st_size / 1e6;
    in_child(job_read, NULL); /* warm the page cache */

    struct {
        const char *name;
        job_fn fn;
        void *arg;
        result r;
    } runs[] = {
        {.name = "wc -l (floor)", .fn = job_wc},
        {.name = "read(2) loop (floor)", .fn = job_read},
        {.name = "dp_source: read + sha256", .fn = job_source},
        {.name = "prep, 1 thread", .fn = job_prep, .arg = &(prep_job){out, task, 1}},
        {.name = "prep, T threads", .fn = job_prep, .arg = &(prep_job){out, task, threads}},
    };
    const int nruns = 5;
    static char tname[64];
    snprintf(tname, sizeof tname, "prep, %d threads", threads);
    runs[4].name = tname;
    for (int i = 0; i < nruns; i++) {
        runs[i].r = best_of(reps, runs[i].fn, runs[i].arg);
        if (!runs[i].r.ok) {
            fprintf(stderr, "bench/prep: %s failed\n", runs[i].name);
            return 1;
        }
    }
    char rm[4200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", out);
    if (system(rm) != 0) fprintf(stderr, "bench/prep: could not remove %s\n", out);
    double floor_wc = runs[0].r.wall, floor_read = runs[1].r.wall;
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "input", input_path);
        cJSON_AddNumberToObject(j, "bytes", (double)st.st_size);
        cJSON_AddNumberToObject(j, "rows", (double)rows);
        cJSON_AddStringToObject(j, "task", task);
        cJSON_AddNumberToObject(j, "threads", threads);
        cJSON_AddNumberToObject(j, "load_average", load[0]);
        cJSON *a = cJSON_AddArrayToObject(j, "runs");
        for (int i = 0; i < nruns; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", runs[i].name);
            cJSON_AddNumberToObject(o, "wall_s", runs[i].r.wall);
            cJSON_AddNumberToObject(o, "cpu_s", runs[i].r.cpu);
            cJSON_AddNumberToObject(o, "mb_per_s", mb / runs[i].r.wall);
            cJSON_AddNumberToObject(o, "rows_per_s", (double)rows / runs[i].r.wall);
            if (runs[i].r.parse_wall > 0)
                cJSON_AddNumberToObject(o, "parse_wall_s", runs[i].r.parse_wall);
            cJSON_AddNumberToObject(o, "x_wc", runs[i].r.wall / floor_wc);
            cJSON_AddNumberToObject(o, "x_read", runs[i].r.wall / floor_read);
            cJSON_AddItemToArray(a, o);
        }
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(j);
        return 0;
    }
    printf("input %s: %.1f MB, %lld rows; task %s; best of %d; load average %.1f\n", input_path, mb,
           rows, task, reps, load[0]);
    printf("%-28s %8s %8s %12s %9s %8s %8s %9s\n", "run", "wall s", "CPU s", "rows/s", "MB/s",
           "x wc -l", "x read", "parse s");
    for (int i = 0; i < nruns; i++) {
        result *r = &runs[i].r;
        printf("%-28s %8.3f %8.3f %12.0f %9.1f %8.2f %8.2f", runs[i].name, r->wall, r->cpu,
               (double)rows / r->wall, mb / r->wall, r->wall / floor_wc, r->wall / floor_read);
        if (r->parse_wall > 0)
            printf(" %9.3f\n", r->parse_wall);
        else
            printf(" %9s\n", "-");
    }
    return 0;
}
