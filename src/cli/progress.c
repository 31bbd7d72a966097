/*
 * progress.c: the training progress display (see progress.h). A terminal
 * gets one bar per epoch, redrawn in place with '\r' at most 10 times a
 * second; a pipe or file gets a plain line every 10% of an epoch (at most
 * one a second) and at least every 10 seconds, so logs stay readable.
 */
#include "cli/progress.h"
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(progress *p, FILE *f, int quiet, uint64_t step_start) {
    memset(p, 0, sizeof *p);
    p->f = f;
    p->quiet = quiet;
    p->tty = isatty(fileno(f));
    p->t_start = p->t_last_draw = progress_now();
    p->step_start = p->last_line_step = step_start;
}

static void fmt_time(double s, char *out, size_t n) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static void fmt_rate(double r, char *out, size_t n) {
    if (r >= 1e6)
        snprintf(out, n, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(out, n, "%.1fk", r / 1e3);
    else
        snprintf(out, n, "%.0f", r);
}

static void fmt_eps(double eps, char *out, size_t n) {
    if (isinf(eps))
        snprintf(out, n, "not private");
    else if (isnan(eps))
        snprintf(out, n, "eps ?");
    else
        snprintf(out, n, "eps %.3g", eps);
}

void progress_step(progress *p, uint64_t step, uint64_t steps, uint64_t epoch, uint64_t epochs,
                   uint64_t step_in_epoch, uint64_t steps_per_epoch, double loss, double eps,
                   double examples_per_s, int force) {
    if (p->quiet) return;
    double t = progress_now();
    double per_step = (t - p->t_start) / (double)(step - p->step_start ? step - p->step_start : 1);
    char left[32], rate[32], e[32];
    fmt_time(per_step * (double)(steps - step), left, sizeof left);
    fmt_rate(examples_per_s, rate, sizeof rate);
    fmt_eps(eps, e, sizeof e);
    if (p->tty) {
        if (!force && t - p->t_last_draw < 0.1) return;
        p->t_last_draw = t;
        enum { W = 24 };
        char bar[W + 1];
        int fill = (int)((double)W * (double)step_in_epoch / (double)steps_per_epoch);
        for (int i = 0; i < W; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[W] = '\0';
        fprintf(p->f,
                "\r\033[Kepoch %llu/%llu [%s] %llu/%llu  loss %.4f (not private)  %s  %s ex/s  "
                "left %s",
                (unsigned long long)epoch + 1, (unsigned long long)epochs, bar,
                (unsigned long long)step_in_epoch, (unsigned long long)steps_per_epoch, loss, e,
                rate, left);
        p->drawn = 1;
        if (step_in_epoch == steps_per_epoch || step == steps) {
            fputc('\n', p->f);
            p->drawn = 0;
        }
        fflush(p->f);
        return;
    }
    uint64_t every = steps_per_epoch / 10 ? steps_per_epoch / 10 : 1;
    /* A line per 10% of an epoch, but at most one a second (fast runs would
     * otherwise flood a log), and at least one every 10 s. */
    int due = (step - p->last_line_step >= every && t - p->t_last_draw >= 1.0) ||
              t - p->t_last_draw >= 10;
    if (!force && !due && step != steps) return;
    p->last_line_step = step;
    p->t_last_draw = t;
    fprintf(p->f,
            "dpsgd train: step %llu/%llu  epoch %llu/%llu  loss %.4f (not private)  %s  %s ex/s  "
            "left %s\n",
            (unsigned long long)step, (unsigned long long)steps, (unsigned long long)epoch + 1,
            (unsigned long long)epochs, loss, e, rate, left);
    fflush(p->f);
}

void progress_break(progress *p) {
    if (p->drawn) {
        fputc('\n', p->f);
        fflush(p->f);
        p->drawn = 0;
    }
}
