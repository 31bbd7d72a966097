/*
 * allreduce.c: benchmark of the float allreduce algorithms of src/dist/
 * (naive, ring, tree) against MPI_Allreduce (algo mpi), run under mpirun.
 * Measures alpha and beta by a ping-pong between ranks 0 and 1 and gamma
 * (the reduction's cost per byte) by timing the sum loop, then for sizes
 * 1 KiB .. 64 MiB (x4 steps, plus 32 KiB) prints median and min time, bus
 * bandwidth 2(R-1)/R * bytes / t (the nccl-tests convention: a perfect ring
 * reaches the link bandwidth) and the alpha-beta-gamma model's prediction
 * (Thakur, Rabenseifner & Gropp 2005; docs/scaling.md).
 *
 *   mpirun -np 2 build/bench/allreduce [--json] [--json-file PATH] [--min-bytes B]
 *          [--max-bytes B] [--reps-scale X] [--algos mpi,naive,ring,tree] [--label TEXT]
 *          [--overlap]
 *
 * --json prints only the JSON object; --json-file writes it to PATH beside
 * the table (one run, both forms). --overlap adds a measurement of how much
 * of a non-blocking allreduce hides behind computation (see overlap()).
 *
 * Method: one buffer of the largest size, touched before timing; our
 * algorithms' scratch grown before timing; algorithms interleaved within
 * each repetition, in an order rotating from one repetition to the next,
 * each call after a barrier; a repetition's time is the
 * slowest rank's; vs_mpi is the median over repetitions of this call's time
 * over the mpi call's in the same repetition; each algorithm is first checked
 * once per size against the exact sum. Timed calls run on zeros, so
 * repeated in-place sums stay finite.
 */
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dist/comm_internal.h" /* comm_add: the reduction loop, for gamma */

typedef struct model {
    double alpha;               /* seconds per message */
    double beta;                /* seconds per byte on the wire */
    double gamma;               /* seconds per byte reduced (one float add per 4 bytes) */
    double delay;               /* DPSGD_COMM_DELAY_US, in seconds: injected per message of ours */
    double beta_mem, gamma_mem; /* the same for vectors above 8 MiB (DRAM-bound) */
} model;

static int R, me;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Half the round trip of `bytes` between ranks 0 and 1: the minimum over
 * reps, the uncontended cost (other work shares these 2 cores, and the
 * model is meant as the hardware's lower bound). */
static double pingpong(char *buf, int bytes, int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    for (int i = -2; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (me == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, 1, 7, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (me == 1) {
            MPI_Recv(buf, bytes, MPI_BYTE, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
        }
        if (i >= 0) t[i] = (MPI_Wtime() - t0) / 2;
    }
    double m = t[0];
    for (int i = 1; i < reps; i++)
        m = fmin(m, t[i]);
    free(t);
    MPI_Bcast(&m, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return m;
}

/* The time per byte of comm_add over n floats already in memory, best of 9. */
static double reduce_cost(float *buf, size_t n) {
    double best = 1e30;
    for (int rep = 0; rep < 9; rep++) {
        double t0 = MPI_Wtime();
        comm_add(buf, buf + n, n);
        best = fmin(best, MPI_Wtime() - t0);
    }
    MPI_Bcast(&best, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return best / (double)(n * sizeof(float));
}

/* Two regimes: messages up to 4 MiB stay in the caches (beta, gamma from a
 * 4 MiB ping-pong and a 1 MiB sum); the halves of a 64 MiB vector stream
 * from DRAM (beta_mem, gamma_mem from 32 MiB), several times slower here. */
static model measure(float *buf, size_t buf_bytes, size_t max_bytes) {
    model m;
    size_t cache = (size_t)4 << 20, mem = DP_MIN(max_bytes / 2, (size_t)32 << 20);
    int big = (int)DP_MIN(max_bytes, cache);
    double t_small = pingpong((char *)buf, 8, 1000);
    double t_big = pingpong((char *)buf, big, 50);
    m.alpha = t_small;
    m.beta = big > 8 ? fmax(0, (t_big - t_small) / (big - 8)) : 0;
    m.gamma = reduce_cost(buf, ((size_t)1 << 20) / sizeof(float));
    m.beta_mem = m.beta;
    m.gamma_mem = m.gamma;
    if (mem > cache) {
        double t_mem = pingpong((char *)buf, (int)mem, 10);
        m.beta_mem = fmax(0, (t_mem - t_small) / (double)(mem - 8));
        m.gamma_mem = reduce_cost(buf, mem / 2 / sizeof(float));
    }
    const char *d = getenv("DPSGD_COMM_DELAY_US"); /* dp_comm_open has validated it */
    m.delay = d && *d ? atof(d) * 1e-6 : 0;
    memset(buf, 0, buf_bytes);
    return m;
}

/* The alpha-beta-gamma cost of each algorithm for n bytes on R ranks, as
 * implemented in src/dist/ (docs/scaling.md derives them). mpi: the cheaper
 * of ring and tree, what an ideally tuned library would pick. Our three pay
 * the injected latency DPSGD_COMM_DELAY_US on every message; mpi does not. */
static double predict(dp_allreduce_algo a, double n, const model *m) {
    int p = 1, lg = 0;
    while (p * 2 <= R)
        p *= 2, lg++;
    double al = a == DP_ALLREDUCE_MPI ? m->alpha : m->alpha + m->delay;
    int dram = n > 8.0 * (1 << 20);
    double be = dram ? m->beta_mem : m->beta, ga = dram ? m->gamma_mem : m->gamma;
    double fold = R > p ? 2 * (al + n * be) + n * ga : 0;
    double ring = 2.0 * (R - 1) * al + 2.0 * (R - 1) / R * n * be + (double)(R - 1) / R * n * ga;
    double tree = n < (double)COMM_TREE_SMALL_BYTES ? lg * (al + n * be + n * ga) + fold
                                                    : 2.0 * lg * al + 2.0 * (p - 1) / p * n * be +
                                                          (double)(p - 1) / p * n * ga + fold;
    switch (a) {
    case DP_ALLREDUCE_NAIVE:
        return (R - 1) * (al + n * be + n * ga);
    case DP_ALLREDUCE_RING:
        return ring;
    case DP_ALLREDUCE_TREE:
        return tree;
    case DP_ALLREDUCE_MPI:
        return fmin(ring, tree);
    }
    return 0;
}

static void die(const char *what) {
    if (me == 0) fprintf(stderr, "allreduce: %s: %s\n", what, dp_last_error());
    MPI_Abort(MPI_COMM_WORLD, 2);
}

static int base_reps(size_t bytes) {
    return bytes <= (64u << 10) ? 200 : bytes <= (1u << 20) ? 50 : bytes <= (16u << 20) ? 10 : 5;
}

/* ---- --overlap: how much of an allreduce hides behind computation ----
 * The stand-in for "computing earlier layers' gradients" is a multiply-add
 * sweep over a 16 KiB array (L1-resident: it does not compete with the
 * transfer for memory bandwidth), sized to last about as long as the
 * allreduce alone. hidden = (t_comm + t_comp - t_both) / t_comm: 0 when
 * start + compute + wait costs the sum of the parts, 1 when the transfer
 * hid entirely. "poke" calls dp_comm_test 16 times during the computation,
 * which is what lets MPI's non-blocking collective advance (mpi only; a poke
 * would run one of our progress-on-wait requests to completion at once). */
static volatile float sink;

static void compute(float *w, long iters, dp_comm *c, int req, int pokes, int *done) {
    long every = pokes ? (iters / pokes > 0 ? iters / pokes : 1) : 0;
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 4096; i++)
            w[i] = w[i] * 0.999f + 0.001f;
        if (every && !*done && it % every == 0) dp_comm_test(c, req, done);
    }
    sink = w[0];
}

static double timed(dp_comm *c, float *buf, size_t n, dp_allreduce_algo a, float *w, long iters,
                    int mode, int pokes) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    int req = -1, done = 0;
    if (mode == 0) { /* communication alone */
        dp_comm_allreduce(c, buf, n, a);
    } else if (mode == 1) { /* computation alone */
        compute(w, iters, c, -1, 0, &done);
    } else { /* both, overlapped */
        dp_comm_iallreduce(c, buf, n, a, &req);
        compute(w, iters, c, req, pokes, &done);
        if (!done) dp_comm_wait(c, req);
    }
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

static void overlap(dp_comm *c, float *buf, const dp_allreduce_algo *algos, int nalgo, int table,
                    FILE *jf, const char *label) {
    static float w[4096];
    double v[64];
    const int reps = 41;
    /* the cost of one sweep, measured once and shared so every rank agrees */
    double t0 = MPI_Wtime();
    int dummy = 0;
    compute(w, 2000, c, -1, 0, &dummy);
    double sweep = (MPI_Wtime() - t0) / 2000;
    MPI_Bcast(&sweep, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (table)
        printf("\noverlap (iallreduce, then computation, then wait), median of %d:\n"
               "%10s  %-6s %-5s %10s %10s %10s %7s\n",
               reps, "bytes", "algo", "poke", "comm_us", "comp_us", "both_us", "hidden");
    if (jf) fprintf(jf, ",\n\"overlap\": [");
    int first = 1;
    size_t sizes[2] = {32768, 1048576};
    for (int si = 0; si < 2; si++)
        for (int a = 0; a < nalgo; a++)
            for (int pokes = 0; pokes <= 16; pokes += 16) {
                if (pokes && algos[a] != DP_ALLREDUCE_MPI) continue;
                size_t n = sizes[si] / sizeof(float);
                memset(buf, 0, sizes[si]);
                for (int i = 0; i < reps; i++)
                    v[i] = timed(c, buf, n, algos[a], w, 0, 0, 0);
                double tc = median(v, reps);
                long iters = (long)(tc / sweep) + 1;
                for (int i = 0; i < reps; i++)
                    v[i] = timed(c, buf, n, algos[a], w, iters, 1, 0);
                double tp = median(v, reps);
                for (int i = 0; i < reps; i++)
                    v[i] = timed(c, buf, n, algos[a], w, iters, 2, pokes);
                double tb = median(v, reps), hidden = (tc + tp - tb) / tc;
                if (table)
                    printf("%10zu  %-6s %-5s %10.1f %10.1f %10.1f %6.0f%%\n", sizes[si],
                           dp_allreduce_name(algos[a]), pokes ? "yes" : "no", tc * 1e6, tp * 1e6,
                           tb * 1e6, 100 * hidden);
                if (jf)
                    fprintf(jf,
                            "%s\n  {\"algorithm\": \"%s\", \"ranks\": %d, \"bytes\": %zu, "
                            "\"poke\": %s, \"comm_seconds\": %.9g, \"compute_seconds\": %.9g, "
                            "\"both_seconds\": %.9g, \"hidden_fraction\": %.4f, \"label\": \"%s\"}",
                            first ? "" : ",", dp_allreduce_name(algos[a]), R, sizes[si],
                            pokes ? "true" : "false", tc, tp, tb, hidden, label);
                first = 0;
            }
    if (jf) fprintf(jf, "\n]");
}

int main(int argc, char **argv) {
    int json = 0, do_overlap = 0;
    size_t min_bytes = 1024, max_bytes = (size_t)64 << 20;
    double reps_scale = 1;
    const char *algo_list = "mpi,naive,ring,tree", *label = "", *json_file = NULL;
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"min-bytes", required_argument, 0, 'a'},
                                         {"max-bytes", required_argument, 0, 'b'},
                                         {"reps-scale", required_argument, 0, 'r'},
                                         {"algos", required_argument, 0, 'g'},
                                         {"label", required_argument, 0, 'l'},
                                         {"json-file", required_argument, 0, 'f'},
                                         {"overlap", no_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        char *end = NULL;
        switch (o) {
        case 'j':
            json = 1;
            break;
        case 'a':
            min_bytes = strtoull(optarg, &end, 10);
            break;
        case 'b':
            max_bytes = strtoull(optarg, &end, 10);
            break;
        case 'r':
            reps_scale = strtod(optarg, &end);
            break;
        case 'g':
            algo_list = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 'f':
            json_file = optarg;
            break;
        case 'o':
            do_overlap = 1;
            break;
        default:
            fprintf(o == 'h' ? stdout : stderr,
                    "usage: mpirun -np R allreduce [--json] [--json-file PATH] [--min-bytes B] "
                    "[--max-bytes B] [--reps-scale X] [--algos mpi,naive,ring,tree] "
                    "[--label TEXT] [--overlap]\n");
            return o == 'h' ? 0 : 1;
        }
        if (end && (*end || end == optarg)) {
            fprintf(stderr, "allreduce: --%s: expected a number, found '%s'\n",
                    o == 'a'   ? "min-bytes"
                    : o == 'b' ? "max-bytes"
                               : "reps-scale",
                    optarg);
            return 1;
        }
    }
    if (min_bytes < 4 || max_bytes < min_bytes || !(reps_scale > 0)) {
        fprintf(stderr, "allreduce: need 4 <= --min-bytes <= --max-bytes and --reps-scale > 0\n");
        return 1;
    }
    dp_allreduce_algo algos[4];
    int nalgo = 0;
    char list[64];
    snprintf(list, sizeof list, "%s", algo_list);
    for (char *tok = strtok(list, ","); tok && nalgo < 4; tok = strtok(NULL, ",")) {
        if (dp_allreduce_parse(tok, &algos[nalgo]) != DP_OK) {
            fprintf(stderr, "allreduce: --algos: %s\n", dp_last_error());
            return 1;
        }
        nalgo++;
    }
    if (!nalgo) {
        fprintf(stderr, "allreduce: --algos: expected a list of algorithms\n");
        return 1;
    }

    dp_comm *c;
    if (dp_comm_open(&c) != DP_OK) {
        fprintf(stderr, "allreduce: %s\n", dp_last_error());
        return 2;
    }
    R = dp_comm_size(c);
    me = dp_comm_rank(c);
    if (R < 2) {
        fprintf(stderr, "allreduce: run under mpirun with 2 or more ranks "
                        "(mpirun -np 2 build/bench/allreduce)\n");
        dp_comm_close(c);
        return 1;
    }

    size_t sizes[16];
    int nsizes = 0;
    for (size_t b = 1024; b <= ((size_t)64 << 20) && nsizes < 15; b *= 4) {
        if (b >= min_bytes && b <= max_bytes) sizes[nsizes++] = b;
        if (b == 16384 && 32768 >= min_bytes && 32768 <= max_bytes) sizes[nsizes++] = 32768;
    }
    size_t max_n = max_bytes / sizeof(float);
    if (max_n < (2u << 20) / sizeof(float)) max_n = (2u << 20) / sizeof(float);
    float *buf = malloc(max_n * sizeof *buf);
    if (!buf) die("cannot allocate the buffer");
    memset(buf, 0, max_n * sizeof *buf); /* pre-touch every page */
    model m = measure(buf, max_n * sizeof *buf, max_bytes);
    /* grow our scratch to the largest size now, outside the timings */
    for (int a = 0; a < nalgo; a++)
        if (dp_comm_allreduce(c, buf, sizes[nsizes - 1] / sizeof(float), algos[a]) != DP_OK)
            die("warm-up");

    if (me == 0 && !json) {
        printf("allreduce: %d ranks%s%s; ping-pong alpha %.2f us, beta %.3f ns/byte (%.2f GB/s), "
               "reduction gamma %.3f ns/byte; above 8 MiB beta %.3f, gamma %.3f ns/byte",
               R, *label ? ", " : "", label, m.alpha * 1e6, m.beta * 1e9,
               m.beta > 0 ? 1e-9 / m.beta : 0.0, m.gamma * 1e9, m.beta_mem * 1e9,
               m.gamma_mem * 1e9);
        if (m.delay > 0)
            printf("; injected delay %.1f us per message of naive/ring/tree", m.delay * 1e6);
        printf("\n");
        printf("%10s  %-6s %11s %11s %9s %11s %8s\n", "bytes", "algo", "median_us", "min_us",
               "busbw_GB/s", "model_us", "vs_mpi");
    }
    FILE *jf = NULL; /* where the JSON goes, on rank 0 */
    if (me == 0 && json) jf = stdout;
    if (me == 0 && json_file && !(jf = fopen(json_file, "w"))) {
        fprintf(stderr, "allreduce: --json-file: cannot create %s\n", json_file);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (jf) fprintf(jf, "{\"results\": [");
    int first_json = 1;
    for (int si = 0; si < nsizes; si++) {
        size_t bytes = sizes[si], n = bytes / sizeof(float);
        int reps = (int)ceil(base_reps(bytes) * reps_scale);
        if (reps < 3) reps = 3;
        /* correctness first: rank r contributes r + 1 everywhere; the sum
         * R(R+1)/2 is exact in float, so every algorithm must hit it exactly */
        for (int a = 0; a < nalgo; a++) {
            for (size_t i = 0; i < n; i++)
                buf[i] = (float)(me + 1);
            if (dp_comm_allreduce(c, buf, n, algos[a]) != DP_OK) die("allreduce");
            int bad = 0;
            for (size_t i = 0; i < n && !bad; i++)
                bad = buf[i] != (float)(R * (R + 1) / 2);
            MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (bad) {
                if (me == 0)
                    fprintf(stderr, "allreduce: %s gave a wrong sum at %zu bytes\n",
                            dp_allreduce_name(algos[a]), bytes);
                MPI_Abort(MPI_COMM_WORLD, 3);
            }
        }
        memset(buf, 0, bytes);
        for (int a = 0; a < nalgo; a++)
            for (int w = 0; w < 2; w++)
                if (dp_comm_allreduce(c, buf, n, algos[a]) != DP_OK) die("allreduce");
        double *t = malloc((size_t)reps * nalgo * sizeof *t);
        /* the order rotates every repetition: the call that follows another
         * runs measurably faster or slower by cache state (up to 30% at
         * 32-64 KiB here), so each algorithm takes each position equally */
        for (int rep = 0; rep < reps; rep++)
            for (int j = 0; j < nalgo; j++) {
                int a = (j + rep) % nalgo;
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = MPI_Wtime();
                if (dp_comm_allreduce(c, buf, n, algos[a]) != DP_OK) die("allreduce");
                t[a * reps + rep] = MPI_Wtime() - t0;
            }
        MPI_Allreduce(MPI_IN_PLACE, t, reps * nalgo, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        /* vs_mpi pairs each repetition with the mpi call made just before it
         * and takes the median of those ratios: other work on these cores
         * slows neighbouring calls alike, so the pairs cancel much of it. */
        double med[4], mn[4], vs_mpi[4] = {0, 0, 0, 0};
        double *ratio = malloc((size_t)reps * sizeof *ratio);
        int ampi = -1;
        for (int a = 0; a < nalgo; a++)
            if (algos[a] == DP_ALLREDUCE_MPI) ampi = a;
        for (int a = 0; a < nalgo && ampi >= 0; a++) {
            for (int rep = 0; rep < reps; rep++)
                ratio[rep] = t[a * reps + rep] / t[ampi * reps + rep];
            vs_mpi[a] = median(ratio, reps);
        }
        free(ratio);
        for (int a = 0; a < nalgo; a++) {
            double *ta = t + a * reps;
            med[a] = median(ta, reps); /* sorts ta */
            mn[a] = ta[0];
        }
        for (int a = 0; a < nalgo && me == 0; a++) {
            double busbw = 2.0 * (R - 1) / R * (double)bytes / med[a] / 1e9;
            double pred = predict(algos[a], (double)bytes, &m);
            if (!json) {
                char vs[16] = "-";
                if (ampi >= 0) snprintf(vs, sizeof vs, "%.2fx", vs_mpi[a]);
                printf("%10zu  %-6s %11.1f %11.1f %9.3f %11.1f %8s\n", bytes,
                       dp_allreduce_name(algos[a]), med[a] * 1e6, mn[a] * 1e6, busbw, pred * 1e6,
                       vs);
            }
            if (jf) {
                fprintf(jf,
                        "%s\n  {\"algorithm\": \"%s\", \"ranks\": %d, \"bytes\": %zu, "
                        "\"seconds\": %.9g, \"seconds_min\": %.9g, \"bus_gbps\": %.6g, "
                        "\"model_seconds\": %.9g, \"reps\": %d, \"label\": \"%s\", "
                        "\"alpha_s\": %.6g, \"beta_s_per_byte\": %.6g, "
                        "\"gamma_s_per_byte\": %.6g, \"beta_mem_s_per_byte\": %.6g, "
                        "\"gamma_mem_s_per_byte\": %.6g, \"delay_s\": %.6g, \"vs_mpi\": %.6g}",
                        first_json ? "" : ",", dp_allreduce_name(algos[a]), R, bytes, med[a], mn[a],
                        busbw, pred, reps, label, m.alpha, m.beta, m.gamma, m.beta_mem, m.gamma_mem,
                        m.delay, vs_mpi[a]);
                first_json = 0;
            }
        }
        if (me == 0) fflush(stdout);
        free(t);
    }
    if (jf) fprintf(jf, "\n]");
    if (do_overlap) overlap(c, buf, algos, nalgo, me == 0 && !json, jf, label);
    if (jf) fprintf(jf, "}\n");
    if (jf && jf != stdout) fclose(jf);
    free(buf);
    dp_comm_close(c);
    return 0;
}
