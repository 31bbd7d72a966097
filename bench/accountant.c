/*
 * accountant.c: benchmark of the privacy accountants (src/dp/rdp.c, prv.c,
 * calibrate.c): the time to compute epsilon for T = 1e3 .. 1e5 steps (and
 * 1e6 with --big) of the Poisson-subsampled Gaussian, and the time to
 * calibrate sigma for a target epsilon, with the RDP and PRV accountants.
 * Each time is the median of --reps runs (default 3).
 *
 *   build/bench/accountant [--json] [--reps N] [--big]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dpsgd/dpsgd.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct row {
    const char *acc;
    double q, sigma;
    uint64_t T;
    double eps, eps_ms, sigma_cal, sigma_ms;
    size_t points;
} row;

int main(int argc, char **argv) {
    int json = 0, reps = 3, big = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--big"))
            big = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--json] [--reps N] [--big]\n", argv[0]);
            return 1;
        }
    }
    if (reps < 1 || reps > 100) reps = 3;
    const double delta = 1e-5, target = 1.0;
    /* Settings of DP-SGD on census data (N = 1e6): batch 1000 (q = 1e-3) and
     * batch 10,000 (q = 1e-2), sigma 1. */
    const double qs[] = {1e-3, 1e-2};
    uint64_t Ts[] = {1000, 10000, 100000, 1000000};
    int nT = big ? 4 : 3;
    row rows[64];
    int nr = 0;
    double *t = malloc((size_t)reps * sizeof *t);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < nT; j++) {
                row r = {k ? "prv" : "rdp", qs[i], 1.0, Ts[j], 0, 0, 0, 0, 0};
                dp_privacy_event ev = {r.q, r.sigma, r.T};
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = now();
                    dp_status st;
                    if (k) {
                        dp_prv_result pr;
                        st = dp_account_prv(&ev, 1, delta, 0, 0, &pr);
                        r.eps = pr.eps_upper;
                        r.points = pr.points;
                    } else {
                        st = dp_account_rdp(&ev, 1, delta, &r.eps, NULL);
                    }
                    t[rep] = now() - t0;
                    if (st != DP_OK) {
                        fprintf(stderr, "accountant: %s\n", dp_last_error());
                        return 2;
                    }
                }
                qsort(t, (size_t)reps, sizeof *t, cmp);
                r.eps_ms = 1e3 * t[reps / 2];
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = now();
                    dp_status st =
                        dp_account_sigma(k, NULL, 0, r.q, r.T, target, delta, &r.sigma_cal);
                    t[rep] = now() - t0;
                    if (st != DP_OK) {
                        fprintf(stderr, "calibration: %s\n", dp_last_error());
                        return 2;
                    }
                }
                qsort(t, (size_t)reps, sizeof *t, cmp);
                r.sigma_ms = 1e3 * t[reps / 2];
                rows[nr++] = r;
            }
    free(t);
    if (json) {
        printf("{\"bench\": \"accountant\", \"delta\": %g, \"target_epsilon\": %g, \"reps\": %d, "
               "\"rows\": [",
               delta, target, reps);
        for (int i = 0; i < nr; i++)
            printf("%s{\"accountant\": \"%s\", \"sample_rate\": %g, \"noise_multiplier\": %g, "
                   "\"steps\": %llu, \"epsilon\": %.6g, \"epsilon_ms\": %.3f, "
                   "\"calibrated_sigma\": %.6g, \"calibrate_ms\": %.3f, \"fft_points\": %zu}",
                   i ? ", " : "", rows[i].acc, rows[i].q, rows[i].sigma,
                   (unsigned long long)rows[i].T, rows[i].eps, rows[i].eps_ms, rows[i].sigma_cal,
                   rows[i].sigma_ms, rows[i].points);
        printf("]}\n");
        return 0;
    }
    printf("epsilon at sigma 1 and the sigma for epsilon %g (delta %g); median of %d runs\n\n",
           target, delta, reps);
    printf("| accountant | q | steps | epsilon (sigma 1) | time ms | sigma for eps 1 | time ms | "
           "FFT points |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < nr; i++)
        printf("| %s | %g | %llu | %.4f | %.2f | %.4f | %.1f | %zu |\n", rows[i].acc, rows[i].q,
               (unsigned long long)rows[i].T, rows[i].eps, rows[i].eps_ms, rows[i].sigma_cal,
               rows[i].sigma_ms, rows[i].points);
    return 0;
}
