/*
 * gpu_train.c: speed of the DP-SGD step on the GPU (issue 5): an epoch over
 * N rows (default 1M, features D = 64) of an MLP D -> 64 -> 64 -> 2 at
 * expected batch sizes 1024 and 16384, private (flat clipping, noise) and
 * not (--no-dp semantics), with kernels launched one by one and with the
 * step replayed as a CUDA graph; the time per phase; and the floor from the
 * device's measured ceilings (FLOPs over the sgemm rate, bytes over the copy
 * bandwidth, launch latency times kernels per step). The step is the one the
 * trainer runs: Poisson sample on the host (dp_poisson_sample), device
 * gather + clipped gradient (dp_mlp_batch_grad_cuda), fused noise + 1/(qN) +
 * optimizer (dp_optim_noisy_step_dev_cuda); nothing waits inside the loop.
 *
 *   build/bench/gpu_train [--rows N] [--features D] [--batches 1024,16384]
 *                         [--quick] [--json] [--json-file PATH] [--budget S]
 * --json prints the JSON object instead of the table; --json-file writes it
 * to PATH as well as printing the table. --budget (default 110 s): no new
 * measurement starts after S seconds; the rest is reported as skipped, so
 * that bench/gpu.sh's timeout (150 s) never cuts the report off.
 * Exit 77 with a message when there is no CUDA device or no backend.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cuda/dp_cuda.h"
#include "dpsgd/dpsgd.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        dp_status s_ = (call);                                                                     \
        if (s_ != DP_OK) {                                                                         \
            fprintf(stderr, "gpu_train: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,               \
                    dp_last_error());                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct run {
    int batch, dp, graph;
    double epoch_s, examples, steps, sample_s;
} run;

typedef struct phases {
    int batch, dp;
    double steps, sample, gather, forward, backward, norms, wgrad, update;
} phases;

typedef struct setup {
    dp_cuda_ctx *ctx;
    dp_cuda_data *data;
    dp_mlp_config cfg;
    size_t N;
    const float *init;
    dp_key ks, kn;
    size_t *idx;
} setup;

/* Run `steps` steps from step number t0; returns the wall time (waits at the
 * end only). prof: per-phase timing (waits after each phase). */
static double run_steps(setup *S, dp_cuda_mlp *m, dp_cuda_optim *o, double q, int dp, uint64_t t0,
                        uint64_t steps, size_t cap, double *examples, double *sample_s,
                        phases *prof) {
    dp_clip_config clip;
    memset(&clip, 0, sizeof clip);
    clip.mode = dp ? DP_CLIP_FLAT : DP_CLIP_NONE;
    clip.max_grad_norm = 1.0;
    const double sigma = 1.0, B = q * (double)S->N, lr = 0.05;
    double ts = 0, ex = 0, tu = 0;
    TRY(dp_cuda_ctx_sync(S->ctx));
    double start = now();
    for (uint64_t t = t0; t < t0 + steps; t++) {
        size_t count = 0;
        double a = now();
        TRY(dp_poisson_sample(&S->ks, t, S->N, q, 0, S->N, S->idx, cap, &count));
        ts += now() - a;
        ex += (double)count;
        TRY(dp_mlp_batch_grad_cuda(m, S->data, S->idx, count, &clip, NULL));
        float scale = dp ? (float)(1.0 / B) : (count ? (float)(1.0 / (double)count) : 0.0f);
        if (prof) {
            TRY(dp_cuda_ctx_sync(S->ctx));
            a = now();
        }
        TRY(dp_optim_noisy_step_dev_cuda(o, dp_mlp_params_dev_cuda(m), dp_mlp_grad_dev_cuda(m),
                                         &S->kn, t, 0, 0, dp ? sigma * clip.max_grad_norm : 0.0,
                                         scale, lr));
        if (prof) {
            TRY(dp_cuda_ctx_sync(S->ctx));
            tu += now() - a;
        }
    }
    TRY(dp_cuda_ctx_sync(S->ctx));
    double wall = now() - start;
    if (examples) *examples = ex;
    if (sample_s) *sample_s = ts;
    if (prof) {
        dp_grad_stats gs;
        memset(&gs, 0, sizeof gs);
        double tg = 0;
        TRY(dp_mlp_stats_cuda(m, &gs, &tg));
        prof->steps = (double)steps;
        prof->sample = ts;
        prof->gather = tg;
        prof->forward = gs.t_forward;
        prof->backward = gs.t_backward;
        prof->norms = gs.t_norms;
        prof->wgrad = gs.t_wgrad;
        prof->update = tu;
    }
    return wall;
}

static void fresh(setup *S, size_t cap, dp_cuda_mlp **m, dp_cuda_optim **o) {
    TRY(dp_mlp_create_cuda(S->ctx, &S->cfg, cap, m));
    TRY(dp_mlp_set_params_cuda(*m, S->init));
    TRY(dp_mlp_zero_grad_cuda(*m));
    TRY(dp_optim_create_cuda(S->ctx, DP_OPT_SGD, dp_mlp_nparams_cuda(*m), 0.9, 0.9, 0.999, 1e-8,
                             o));
}

int main(int argc, char **argv) {
    size_t N = 1000000, D = 64;
    int batches[8] = {1024, 16384}, nb = 2, json = 0, quick = 0;
    double budget = 110;
    const char *json_file = NULL;
    const double t_begin = now();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            N = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--features") && i + 1 < argc)
            D = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            nb = 0;
            for (char *p = argv[++i]; *p && nb < 8;) {
                batches[nb++] = atoi(p);
                char *c = strchr(p, ',');
                if (!c) break;
                p = c + 1;
            }
        } else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--json-file") && i + 1 < argc)
            json_file = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
            budget = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: gpu_train [--rows N] [--features D] [--batches B1,B2] "
                            "[--quick] [--json] [--json-file PATH] [--budget S]\n");
            return 1;
        }
    }
    if (quick) N = 100000;
    int bad_batch = 0;
    for (int i = 0; i < nb; i++)
        bad_batch |= batches[i] < 1 || (size_t)batches[i] > N;
    if (N < 1000 || D < 1 || nb < 1 || bad_batch || !(budget > 0)) {
        fprintf(stderr, "gpu_train: expected --rows >= 1000, --features >= 1, batches in [1, "
                        "rows], --budget > 0\n");
        return 1;
    }
    int ndev = 0;
    if (dp_cuda_device_count(&ndev) != DP_OK) {
        fprintf(stderr, "gpu_train: skipped: %s\n", dp_last_error());
        return 77;
    }
    dp_cuda_device_info info;
    TRY(dp_cuda_device_query(0, &info));
    setup S;
    memset(&S, 0, sizeof S);
    S.N = N;
    TRY(dp_cuda_ctx_create(0, &S.ctx));

    /* data: standard-normal-ish features (uniform sums), a learnable label */
    float *X = malloc(N * D * sizeof(float));
    int32_t *y = malloc(N * sizeof(int32_t));
    if (!X || !y) {
        fprintf(stderr, "gpu_train: out of host memory for %zu x %zu\n", N, D);
        return 1;
    }
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < N; i++) {
        double s = 0;
        for (size_t j = 0; j < D; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            float v = (float)((double)(x >> 11) * 0x1p-53 * 3.4641016 - 1.7320508);
            X[i * D + j] = v;
            s += (j % 3 ? 0.3 : -0.2) * v;
        }
        y[i] = s > 0;
    }
    double t_up = now();
    TRY(dp_cuda_data_create(S.ctx, X, y, N, D, 0, 0, &S.data));
    t_up = now() - t_up;

    memset(&S.cfg, 0, sizeof S.cfg);
    S.cfg.n_in = D;
    S.cfg.n_hidden = 2;
    S.cfg.hidden[0] = S.cfg.hidden[1] = 64;
    S.cfg.n_classes = 2;
    S.cfg.activation = DP_ACT_RELU;
    dp_mlp *cpu = NULL;
    TRY(dp_mlp_create(&S.cfg, 16, &cpu));
    dp_mlp_init(cpu, 1);
    S.init = dp_mlp_params(cpu);
    const size_t P = dp_mlp_nparams(cpu);
    dp_key_from_seed(7, "sample", &S.ks);
    dp_key_from_seed(7, "noise", &S.kn);

    dp_cuda_ceilings ceil;
    TRY(dp_cuda_ceilings_measure(S.ctx, batches[0], 64, (int)D, &ceil));

    run runs[32];
    phases ph[16];
    int nr = 0, np = 0, skipped = 0;
    for (int bi = 0; bi < nb && !skipped; bi++) {
        const int B = batches[bi];
        const double q = (double)B / (double)N;
        const uint64_t steps = (uint64_t)llround(1.0 / q);
        const size_t cap = dp_poisson_capacity(N, q);
        S.idx = realloc(S.idx, cap * sizeof(size_t));
        for (int dp = 1; dp >= 0 && !skipped; dp--) {
            for (int graph = 0; graph < 2; graph++) {
                if (now() - t_begin > budget) {
                    skipped = 1;
                    break;
                }
                dp_cuda_mlp *m = NULL;
                dp_cuda_optim *o = NULL;
                fresh(&S, cap, &m, &o);
                TRY(dp_mlp_use_graph_cuda(m, graph));
                run_steps(&S, m, o, q, dp, 0, 10, cap, NULL, NULL, NULL); /* warm-up, capture */
                run *r = &runs[nr++];
                r->batch = B;
                r->dp = dp;
                r->graph = graph;
                r->steps = (double)steps;
                r->epoch_s =
                    run_steps(&S, m, o, q, dp, 10, steps, cap, &r->examples, &r->sample_s, NULL);
                dp_optim_destroy_cuda(o);
                dp_mlp_destroy_cuda(m);
            }
            /* phases: a separate run that waits after each phase */
            if (skipped || now() - t_begin > budget) {
                skipped = 1;
                break;
            }
            dp_cuda_mlp *m = NULL;
            dp_cuda_optim *o = NULL;
            fresh(&S, cap, &m, &o);
            TRY(dp_mlp_profile_cuda(m, 1));
            run_steps(&S, m, o, q, dp, 0, 5, cap, NULL, NULL, NULL);
            TRY(dp_mlp_stats_cuda(m, NULL, NULL));
            phases *p = &ph[np++];
            p->batch = B;
            p->dp = dp;
            uint64_t ps = steps < 200 ? steps : 200;
            run_steps(&S, m, o, q, dp, 100000, ps, cap, NULL, NULL, p);
            dp_optim_destroy_cuda(o);
            dp_mlp_destroy_cuda(m);
        }
    }

    /* the floor of one step at expected batch B (see the header comment) */
    const int L = 3;
    size_t in[3] = {D, 64, 64}, out[3] = {64, 64, 2};
    double macs = 0, macs_bwd = 0;
    for (int l = 0; l < L; l++) {
        macs += (double)in[l] * (double)out[l];
        if (l > 0) macs_bwd += (double)in[l] * (double)out[l];
    }
    /* kernels per step: memcpy, gather, L gemm + (L-1) bias_act, loss,
     * (L-1) gemm + (L-1) act_back, clip, L gemm + L gemv, update */
    const int kernels = 1 + 1 + L + (L - 1) + 1 + 2 * (L - 1) + 1 + 2 * L + 1;

    for (int pass = 0; pass < 2; pass++) {
        FILE *jf = NULL;
        if (pass == 0 && json) jf = stdout;
        if (pass == 1 && json_file && !(jf = fopen(json_file, "w"))) {
            fprintf(stderr, "gpu_train: cannot write %s\n", json_file);
            return 1;
        }
        if (!jf) continue;
        fprintf(jf,
                "{\"device\":\"%s\",\"rows\":%zu,\"features\":%zu,\"params\":%zu,"
                "\"upload_s\":%.4f,\"sgemm_tflops\":%.2f,\"bandwidth_gbs\":%.1f,"
                "\"launch_us\":%.3f,\"graph_node_us\":%.3f,\"small_gemm_us\":%.3f,\"runs\":[",
                info.name, N, D, P, t_up, ceil.sgemm_flops * 1e-12, ceil.bandwidth * 1e-9,
                ceil.launch_s * 1e6, ceil.graph_node_s * 1e6, ceil.small_gemm_s * 1e6);
        for (int i = 0; i < nr; i++)
            fprintf(
                jf,
                "%s{\"batch\":%d,\"dp\":%s,\"graph\":%s,\"epoch_s\":%.5f,\"examples_per_s\":%.1f,"
                "\"step_us\":%.2f,\"sample_s\":%.5f}",
                i ? "," : "", runs[i].batch, runs[i].dp ? "true" : "false",
                runs[i].graph ? "true" : "false", runs[i].epoch_s,
                runs[i].examples / runs[i].epoch_s, 1e6 * runs[i].epoch_s / runs[i].steps,
                runs[i].sample_s);
        fprintf(jf, "],\"phases_us_per_step\":[");
        for (int i = 0; i < np; i++) {
            phases *p = &ph[i];
            double k = 1e6 / p->steps;
            fprintf(jf,
                    "%s{\"batch\":%d,\"dp\":%s,\"sample\":%.2f,\"gather\":%.2f,\"forward\":%.2f,"
                    "\"backward\":%.2f,\"norms_clip\":%.2f,\"wgrad\":%.2f,\"noise_update\":%.2f}",
                    i ? "," : "", p->batch, p->dp ? "true" : "false", p->sample * k, p->gather * k,
                    p->forward * k, p->backward * k, p->norms * k, p->wgrad * k, p->update * k);
        }
        fprintf(jf, "],\"kernels_per_step\":%d,\"budget_reached\":%s}\n", kernels,
                skipped ? "true" : "false");
        if (jf != stdout) fclose(jf);
    }
    if (json) return 0;

    printf("device: %s (cc %d.%d, %d SMs, %.0f GiB); data %zu x %zu float32 resident (upload "
           "%.2f s); MLP %zu-64-64-2, %zu parameters\n",
           info.name, info.cc_major, info.cc_minor, info.n_sm, info.total_mem / 1073741824.0, N, D,
           t_up, D, P);
    printf("ceilings (measured): sgemm %.1f TFLOP/s (fp32, 8192^3), copy %.0f GB/s, launch %.2f "
           "us, graph node %.2f us, sgemm %dx64x%zu %.2f us\n\n",
           ceil.sgemm_flops * 1e-12, ceil.bandwidth * 1e-9, ceil.launch_s * 1e6,
           ceil.graph_node_s * 1e6, batches[0], D, ceil.small_gemm_s * 1e6);
    printf("%7s %-6s %-9s %10s %13s %9s %10s %9s\n", "batch", "mode", "launch", "epoch s",
           "examples/s", "step us", "sample us", "DP/no-DP");
    for (int i = 0; i < nr; i++) {
        run *r = &runs[i];
        double ratio = 0;
        for (int j = 0; j < nr; j++)
            if (runs[j].batch == r->batch && runs[j].graph == r->graph && !runs[j].dp && r->dp)
                ratio = r->epoch_s / runs[j].epoch_s;
        printf("%7d %-6s %-9s %10.4f %13.0f %9.1f %10.1f ", r->batch, r->dp ? "DP" : "no-DP",
               r->graph ? "graph" : "kernels", r->epoch_s, r->examples / r->epoch_s,
               1e6 * r->epoch_s / r->steps, 1e6 * r->sample_s / r->steps);
        if (ratio > 0)
            printf("%9.3f\n", ratio);
        else
            printf("%9s\n", "");
    }
    printf("\nphases (us per step; each phase waited for, so they sum to more than a step):\n");
    printf("%7s %-6s %8s %8s %8s %8s %10s %8s %13s\n", "batch", "mode", "sample", "gather",
           "forward", "backward", "norms+clip", "wgrad", "noise+update");
    for (int i = 0; i < np; i++) {
        phases *p = &ph[i];
        double k = 1e6 / p->steps;
        printf("%7d %-6s %8.1f %8.1f %8.1f %8.1f %10.1f %8.1f %13.1f\n", p->batch,
               p->dp ? "DP" : "no-DP", p->sample * k, p->gather * k, p->forward * k,
               p->backward * k, p->norms * k, p->wgrad * k, p->update * k);
    }
    if (skipped)
        printf("\n(time budget of %.0f s reached: the runs not listed above were skipped)\n",
               budget);
    printf("\nfloor per step (expected batch B; %d kernels per step):\n", kernels);
    printf("%7s %12s %12s %14s %14s %12s %12s\n", "batch", "FLOPs", "flop us", "bytes", "bytes us",
           "launch us", "graph us");
    for (int bi = 0; bi < nb; bi++) {
        double B = batches[bi];
        /* forward, backward to the deltas (no input gradient), weight gradient */
        double flops = 2.0 * B * (macs + macs_bwd + macs);
        /* each input read once: rows, labels, indices; parameters read and written */
        double bytes = B * (4.0 * (double)D + 4.0 + 8.0) + 2.0 * 4.0 * (double)P;
        printf("%7d %12.3g %12.2f %14.3g %14.2f %12.1f %12.1f\n", batches[bi], flops,
               1e6 * flops / ceil.sgemm_flops, bytes, 1e6 * bytes / ceil.bandwidth,
               1e6 * kernels * ceil.launch_s, 1e6 * kernels * ceil.graph_node_s);
    }
    dp_cuda_data_destroy(S.data);
    dp_mlp_destroy(cpu);
    dp_cuda_ctx_destroy(S.ctx);
    free(S.idx);
    free(X);
    free(y);
    return 0;
}
