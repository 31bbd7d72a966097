/*
 * noise_check.c: the noise of data-parallel DP-SGD, measured through the real
 * trainer on R ranks (run by tests/test_train_mpi.sh under mpirun). Every
 * step has an empty batch (sample rate 1e-12), so the update is the noise
 * alone: with SGD, parameters reset to 0 before each step and lr = qN, the
 * parameters after the step are minus the total noise that the ranks added
 * (DESIGN.md algorithm 3). Checks, on T steps:
 *   1. exact: owner mode gives the noise vector of one process (key_noise,
 *      stream 0), whatever R; shares mode the sum over ranks r of the shares
 *      of streams r + 1 with std sigma C / sqrt(R) (seeded, so recomputable);
 *   2. statistical, independent of how the noise is made: for each
 *      coordinate j, Q_j = sum_t z_tj^2 / (f sigma C)^2 must lie in the
 *      two-sided chi-square(T) interval at level 1e-3 / P (Bonferroni), and
 *      the pooled sum in the chi-square(P T) interval at 1e-3.
 * f = 1 (default) tests the claim: variance sigma^2 C^2. --scale f tests
 * variance f^2 sigma^2 C^2 instead; the script runs f = sqrt(R) and
 * 1/sqrt(R) and requires a rejection: the test has the power to see both a
 * sqrt(R) sigma C and a sigma C / sqrt(R) total noise.
 *
 *   noise_check DATASET owner|shares [--overlap] [--algo A] [--steps T]
 *               [--sigma S] [--clip C] [--scale f] [--no-exact]
 * Exit 0: accepted; 1: rejected or failed (rank 0 prints why).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/train.h"

static void die(dp_comm *comm, const char *what, dp_status st) {
    fprintf(stderr, "noise_check [rank %d]: %s: %s\n", dp_comm_rank(comm), what, dp_last_error());
    dp_comm_abort(comm, 2);
    exit(2);
    (void)st;
}

/* Upper tail of the standard normal. */
static double norm_sf(double z) {
    return 0.5 * erfc(z / sqrt(2.0));
}

/* z with norm_sf(z) = p, by bisection (p in (0, 0.5)). */
static double norm_isf(double p) {
    double lo = 0, hi = 40;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (norm_sf(mid) > p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Two-sided chi-square(k) interval at level alpha (Wilson-Hilferty 1931:
 * (Q/k)^(1/3) is close to N(1 - 2/(9k), 2/(9k)); accurate to well under 1%
 * of the quantile for k >= 100). */
static void chi2_interval(double k, double alpha, double *lo, double *hi) {
    double z = norm_isf(alpha / 2), v = 2.0 / (9.0 * k);
    *lo = k * pow(1 - v - z * sqrt(v), 3);
    *hi = k * pow(1 - v + z * sqrt(v), 3);
}

int main(int argc, char **argv) {
    dp_comm *comm;
    if (dp_comm_open(&comm) != DP_OK) {
        fprintf(stderr, "noise_check: %s\n", dp_last_error());
        return 2;
    }
    const int rank = dp_comm_rank(comm), R = dp_comm_size(comm);
    if (argc < 3) {
        fprintf(stderr, "usage: noise_check DATASET owner|shares [options]\n");
        return 2;
    }
    const char *dir = argv[1];
    dp_train_config c;
    dp_train_config_default(&c);
    if (dp_noise_mode_parse(argv[2], &c.noise_mode) != DP_OK) die(comm, "mode", DP_E_USAGE);
    uint64_t T = 300;
    double sigma = 1.3, C = 0.7, f = 1.0;
    int exact = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--overlap"))
            c.overlap = 1;
        else if (!strcmp(argv[i], "--no-exact"))
            exact = 0;
        else if (i + 1 < argc && !strcmp(argv[i], "--algo")) {
            if (dp_allreduce_parse(argv[++i], &c.allreduce) != DP_OK) die(comm, "algo", 1);
        } else if (i + 1 < argc && !strcmp(argv[i], "--steps"))
            T = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--sigma"))
            sigma = strtod(argv[++i], NULL);
        else if (i + 1 < argc && !strcmp(argv[i], "--clip"))
            C = strtod(argv[++i], NULL);
        else if (i + 1 < argc && !strcmp(argv[i], "--scale"))
            f = strtod(argv[++i], NULL);
        else {
            fprintf(stderr, "noise_check: unknown option %s\n", argv[i]);
            return 2;
        }
    }

    /* this rank's shard */
    dp_dataset *meta, *ds;
    dp_status st = dp_dataset_open(dir, "train", 0, 0, &meta);
    if (st != DP_OK) die(comm, "dataset", st);
    size_t N = dp_dataset_rows_total(meta), b, e;
    dp_dataset_close(meta);
    dp_comm_shard(N, R, rank, &b, &e);
    if ((st = dp_dataset_open(dir, "train", b, e, &ds)) != DP_OK) die(comm, "shard", st);

    c.n_hidden = 1;
    c.hidden[0] = 8;
    c.sample_rate = 1e-12; /* every batch empty: the update is the noise alone */
    c.max_steps = T;
    c.noise_multiplier = sigma;
    c.clip.max_grad_norm = C;
    c.seeded = 1;
    c.seed = 20240601;
    c.optimizer = DP_OPT_SGD;
    c.lr = c.sample_rate * (double)N; /* lr / qN = 1: params = -noise */
    c.check_every = 50;
    dp_trainer *t;
    if ((st = dp_trainer_create_dist(ds, &c, comm, &t)) != DP_OK) die(comm, "trainer", st);
    const size_t P = dp_mlp_nparams(dp_trainer_mlp(t));
    float *params = dp_mlp_params(dp_trainer_mlp(t));
    const double std = sigma * C;
    double *Q = calloc(P, sizeof *Q);
    float *want = malloc(P * sizeof *want);
    dp_key key;
    dp_key_from_seed(c.seed, "noise", &key);
    double worst_exact = 0;
    for (uint64_t s = 0; s < T; s++) {
        memset(params, 0, P * sizeof(float));
        dp_step_info info;
        if ((st = dp_trainer_step(t, &info)) != DP_OK) die(comm, "step", st);
        if (info.batch != 0) die(comm, "a batch was not empty", DP_E_INTERNAL);
        /* the noise as the ranks made it, recomputed here from the seed */
        memset(want, 0, P * sizeof(float));
        if (R == 1 || c.noise_mode == DP_NOISE_OWNER) {
            dp_noise_add(&key, s, 0, 0, want, P, std);
        } else {
            for (int r = 0; r < R; r++)
                dp_noise_add(&key, s, (uint64_t)r + 1, 0, want, P, std / sqrt((double)R));
        }
        for (size_t j = 0; j < P; j++) {
            double z = -(double)params[j];
            Q[j] += z * z / (f * f * std * std);
            worst_exact = fmax(worst_exact, fabs(z - want[j]) / (1.0 + fabs(want[j])));
        }
    }
    int ok = 1;
    if (rank == 0) {
        double lo, hi, plo, phi, qmin = INFINITY, qmax = 0, qsum = 0;
        size_t out = 0;
        chi2_interval((double)T, 1e-3 / (double)P, &lo, &hi);
        chi2_interval((double)T * (double)P, 1e-3, &plo, &phi);
        for (size_t j = 0; j < P; j++) {
            qmin = fmin(qmin, Q[j]);
            qmax = fmax(qmax, Q[j]);
            qsum += Q[j];
            out += Q[j] < lo || Q[j] > hi;
        }
        int stat_ok = out == 0 && qsum >= plo && qsum <= phi;
        /* a few float roundings of ~1e-7 each: parameters, division, update */
        int exact_ok = !exact || worst_exact < 1e-5;
        ok = stat_ok && exact_ok;
        printf("noise_check R=%d %s%s %s scale %.4g: P=%zu T=%llu; per-coordinate Q in [%.1f, "
               "%.1f], interval [%.1f, %.1f], %zu outside; pooled Q/(PT)=%.4f, interval [%.4f, "
               "%.4f]; exact vector: worst error %.2g%s -> %s\n",
               R, dp_noise_mode_name(c.noise_mode), c.overlap ? "+overlap" : "",
               dp_allreduce_name(c.allreduce), f, P, (unsigned long long)T, qmin, qmax, lo, hi,
               out, qsum / ((double)P * (double)T), plo / ((double)P * (double)T),
               phi / ((double)P * (double)T), worst_exact, exact ? "" : " (not checked)",
               ok ? "accepted" : "REJECTED");
        fflush(stdout);
    }
    dp_comm_bcast(comm, &ok, sizeof ok, 0);
    free(Q);
    free(want);
    dp_trainer_destroy(t);
    dp_dataset_close(ds);
    dp_comm_close(comm);
    return ok ? 0 : 1;
}
