/*
 * cmd_account.c: `dpsgd account`, the privacy calculator: epsilon for a
 * setting (q, sigma, steps, delta), or the smallest sigma for a target
 * epsilon, with the RDP or PRV accountant (src/dp/rdp.c, prv.c, calibrate.c).
 * q may be given as --batch-size/--dataset-size and steps as --epochs.
 */
#include <math.h>
#include <string.h>
#include "cli/cli.h"

enum {
    O_Q = 256,
    O_SIGMA,
    O_TARGET,
    O_STEPS,
    O_EPOCHS,
    O_BATCH,
    O_N,
    O_DELTA,
    O_ACCOUNTANT,
    O_JSON
};

static const cli_opt opts[] = {
    {"sample-rate", O_Q, "Q",
     "Poisson sampling rate in (0, 1] (or --batch-size with --dataset-size)"},
    {"batch-size", O_BATCH, "B", "expected batch size: q = B / N (with --dataset-size)"},
    {"dataset-size", O_N, "N", "number of training records N (with --batch-size)"},
    {"noise-multiplier", O_SIGMA, "S", "noise std / clipping norm: print epsilon"},
    {"target-epsilon", O_TARGET, "E",
     "instead of --noise-multiplier: print the sigma that meets E"},
    {"steps", O_STEPS, "T", "number of steps (or --epochs)"},
    {"epochs", O_EPOCHS, "E", "passes over the data: steps = ceil(E / q)"},
    {"delta", O_DELTA, "D", "delta in (0, 1), e.g. 1e-5 (required)"},
    {"accountant", O_ACCOUNTANT, "NAME",
     "rdp (Renyi DP, default) or prv (privacy random variable, tighter)"},
    {"json", O_JSON, NULL, "print one JSON object instead of the table"},
    {0},
};

static const cli_cmd cmd = {
    "account",
    "--sample-rate Q (--noise-multiplier S | --target-epsilon E) --steps T --delta D [options]",
    "Privacy calculator for DP-SGD with Poisson sampling and the Gaussian mechanism\n"
    "(add/remove-one-record neighbours): epsilon spent by T steps at rate q with noise\n"
    "multiplier sigma, or the smallest sigma (rounded up) whose epsilon is at most a\n"
    "target. The PRV accountant reports an upper bound that includes its error terms.",
    "dpsgd account --batch-size 1024 --dataset-size 1000000 --epochs 5 --target-epsilon 1 "
    "--delta 1e-5",
    opts,
};

static int parse_pos(const char *opt, const char *s, double *out) {
    return cli_parse_double(opt, s, -INFINITY, INFINITY, out);
}

int cmd_account(int argc, char **argv) {
    double q = NAN, sigma = NAN, target = NAN, epochs = NAN, delta = NAN;
    long long steps = -1, batch = -1, n = -1;
    dp_accountant_kind kind = DP_ACCOUNTANT_RDP;
    int json = 0;
    cli_parser p;
    cli_parser_init(&p, &cmd, argc, argv);
    for (int c; (c = cli_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP:
            return CLI_OK;
        case CLI_ERROR:
            return CLI_BAD_INPUT;
        case O_Q:
            if (parse_pos("sample-rate", optarg, &q)) return CLI_BAD_INPUT;
            if (!(q > 0.0 && q <= 1.0))
                return cli_usage_error("--sample-rate expects a number in (0, 1], got '%s'",
                                       optarg);
            break;
        case O_SIGMA:
            if (parse_pos("noise-multiplier", optarg, &sigma)) return CLI_BAD_INPUT;
            if (!(sigma > 0.0))
                return cli_usage_error("--noise-multiplier expects a number > 0, got '%s'", optarg);
            break;
        case O_TARGET:
            if (parse_pos("target-epsilon", optarg, &target)) return CLI_BAD_INPUT;
            if (!(target > 0.0))
                return cli_usage_error("--target-epsilon expects a number > 0, got '%s'", optarg);
            break;
        case O_EPOCHS:
            if (parse_pos("epochs", optarg, &epochs)) return CLI_BAD_INPUT;
            if (!(epochs > 0.0))
                return cli_usage_error("--epochs expects a number > 0, got '%s'", optarg);
            break;
        case O_DELTA:
            if (parse_pos("delta", optarg, &delta)) return CLI_BAD_INPUT;
            if (!(delta > 0.0 && delta < 1.0))
                return cli_usage_error("--delta expects a number in (0, 1), got '%s'", optarg);
            break;
        case O_STEPS:
            if (cli_parse_long("steps", optarg, 1, 1000000000000LL, &steps)) return CLI_BAD_INPUT;
            break;
        case O_BATCH:
            if (cli_parse_long("batch-size", optarg, 1, 9007199254740992LL, &batch))
                return CLI_BAD_INPUT;
            break;
        case O_N:
            if (cli_parse_long("dataset-size", optarg, 1, 9007199254740992LL, &n))
                return CLI_BAD_INPUT;
            break;
        case O_ACCOUNTANT:
            if (dp_accountant_parse(optarg, &kind) != DP_OK)
                return cli_usage_error("--accountant expects rdp or prv, got '%s'", optarg);
            break;
        case O_JSON:
            json = 1;
            break;
        default:
            return cli_usage_error("unexpected option");
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);

    /* q: --sample-rate, or --batch-size / --dataset-size. */
    if ((batch >= 0) != (n >= 0))
        return cli_usage_error("--batch-size and --dataset-size go together");
    if (batch >= 0) {
        if (!isnan(q))
            return cli_usage_error("give either --sample-rate or --batch-size, not both");
        if (batch > n)
            return cli_usage_error("--batch-size %lld exceeds --dataset-size %lld", batch, n);
        q = (double)batch / (double)n;
    }
    if (isnan(q))
        return cli_usage_error("missing --sample-rate (or --batch-size with --dataset-size)");
    /* steps: --steps, or --epochs. */
    if (steps >= 0 && !isnan(epochs))
        return cli_usage_error("give either --steps or --epochs, not both");
    if (!isnan(epochs)) {
        double t = epochs / q;
        t = ceil(t - 1e-9 * t); /* 5 / 0.001 is 5000.000000000001 in floating point */
        if (!(t >= 1.0 && t <= 1e12))
            return cli_usage_error("--epochs %g at rate %g gives %g steps; expected 1 to 1e12",
                                   epochs, q, t);
        steps = (long long)t;
    }
    if (steps < 0) return cli_usage_error("missing --steps (or --epochs)");
    if (isnan(delta)) return cli_usage_error("missing --delta");
    if (isnan(sigma) == isnan(target))
        return cli_usage_error("give exactly one of --noise-multiplier and --target-epsilon");

    dp_status st;
    if (!isnan(target)) {
        st = dp_account_sigma(kind, NULL, 0, q, (uint64_t)steps, target, delta, &sigma);
        if (st != DP_OK) return cli_fail(st);
    }
    dp_privacy_event ev = {q, sigma, (uint64_t)steps};
    double eps = NAN, order = NAN;
    dp_prv_result prv = {0};
    if (kind == DP_ACCOUNTANT_RDP) {
        st = dp_account_rdp(&ev, 1, delta, &eps, &order);
    } else {
        st = dp_account_prv(&ev, 1, delta, 0.0, 0.0, &prv);
        /* As dp_account_epsilon: the smaller of the two upper bounds. */
        double rdp = INFINITY;
        if (st == DP_OK) st = dp_account_rdp(&ev, 1, delta, &rdp, NULL);
        eps = fmin(prv.eps_upper, rdp);
    }
    if (st != DP_OK) return cli_fail(st);

    if (json) {
        printf("{\"epsilon\": %.17g, \"delta\": %.17g, \"noise_multiplier\": %.17g, "
               "\"sample_rate\": %.17g, \"steps\": %lld, \"accountant\": \"%s\"",
               eps, delta, sigma, q, steps, dp_accountant_name(kind));
        if (!isnan(target)) printf(", \"target_epsilon\": %.17g", target);
        if (kind == DP_ACCOUNTANT_RDP) printf(", \"rdp_order\": %.17g", order);
        if (kind == DP_ACCOUNTANT_PRV)
            printf(", \"epsilon_estimate\": %.17g, \"epsilon_lower\": %.17g, \"eps_error\": %.17g",
                   prv.eps_estimate, prv.eps_lower, prv.eps_error);
        printf(", \"neighbouring\": \"%s\"}\n", DP_LEDGER_NEIGHBOURING);
        return CLI_OK;
    }
    printf("accountant        %s (neighbours: %s)\n", dp_accountant_name(kind),
           DP_LEDGER_NEIGHBOURING);
    printf("sample rate q     %.6g\n", q);
    printf("steps             %lld (%.4g epochs)\n", steps, (double)steps * q);
    printf("delta             %g\n", delta);
    if (!isnan(target))
        printf("noise multiplier  %.6g (smallest, rounded up, for epsilon <= %g)\n", sigma, target);
    else
        printf("noise multiplier  %.6g\n", sigma);
    if (kind == DP_ACCOUNTANT_RDP) {
        printf("epsilon           %.6g\n", eps);
        size_t n_ord;
        const double *ord = dp_rdp_orders(&n_ord);
        const char *edge = order == ord[0] || order == ord[n_ord - 1] ? " (edge of the grid)" : "";
        printf("best RDP order    %g%s\n", order, edge);
    } else {
        printf("epsilon           %.6g (upper bound; estimate %.6g, lower bound %.6g)\n", eps,
               prv.eps_estimate, prv.eps_lower);
        if (eps < prv.eps_upper)
            printf("                  (the RDP bound; PRV's own upper bound is %.6g)\n",
                   prv.eps_upper);
        printf("mesh              %.3g (%zu points)\n", prv.mesh, prv.points);
    }
    return CLI_OK;
}
