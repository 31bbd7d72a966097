/*
 * opt.c: getopt_long tables and --help text generated from one cli_opt table
 * per subcommand, and strict typed argument parsing (never atoi/atof).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

void cli_parser_init(cli_parser *p, const cli_cmd *cmd, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->argc = argc;
    p->argv = argv;
    int n = 0;
    char *s = p->sopts;
    *s++ = ':'; /* report a missing argument as ':' rather than '?' */
    for (const cli_opt *o = cmd->opts; o && o->name && n < 62; o++, n++) {
        p->lopts[n] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, o->id};
        if (o->id < 256) {
            *s++ = (char)o->id;
            if (o->arg) *s++ = ':';
        }
    }
    p->lopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    *s++ = 'h';
    *s = '\0';
    p->lopts[n] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
}

int cli_next(cli_parser *p) {
    int c = getopt_long(p->argc, p->argv, p->sopts, p->lopts, NULL);
    if (c == 'h') {
        cli_print_help(stdout, p->cmd);
        return CLI_HELP;
    }
    if (c == '?' || c == ':') {
        const char *bad = p->argv[optind - 1];
        if (c == ':')
            cli_usage_error("option '%s' needs an argument", bad);
        else if (optopt && optopt < 256)
            cli_usage_error("unknown option '-%c'", optopt);
        else
            cli_usage_error("unknown option '%s'", bad);
        return CLI_ERROR;
    }
    return c;
}

void cli_print_help(FILE *f, const cli_cmd *cmd) {
    fprintf(f, "usage: dpsgd %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->example) fprintf(f, "\nexample:\n  %s\n", cmd->example);
    fprintf(f, "\noptions:\n");
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        char left[64];
        if (o->id < 256)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->id, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(f, "  %-30s %s\n", left, o->help);
    }
    fprintf(f, "  %-30s %s\n", "-h, --help", "print this help and exit");
}

int cli_parse_long(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        cli_usage_error("--%s expects an integer from %lld to %lld, got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        cli_usage_error("--%s expects a number from %g to %g, got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_device(const char *s, dp_device_kind *out) {
    if (strcmp(s, "cpu") && strcmp(s, "cuda")) {
        cli_usage_error("--device expects cpu or cuda, got '%s'", s);
        return -1;
    }
    *out = strcmp(s, "cuda") ? DP_DEVICE_CPU : DP_DEVICE_CUDA;
    return 0;
}

int cli_device_ready(dp_device_kind dev) {
    if (dev == DP_DEVICE_CPU || dp_device_available(dev) == DP_OK) return 0;
    cli_error("--device cuda: %s (use --device cpu)", dp_last_error());
    return -1;
}

int cli_parse_probability(const char *opt, const char *s, double *out) {
    double v;
    if (cli_parse_double(opt, s, 0, 1, &v)) return -1;
    if (v <= 0 || v >= 1) {
        cli_usage_error("--%s expects a probability strictly between 0 and 1, got '%s'", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_doubles(const char *opt, const char *s, double *out, int max, int *n) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == max) {
            cli_usage_error("--%s takes at most %d values, got '%s'", opt, max, s);
            return -1;
        }
        if (cli_parse_double(opt, tok, -INFINITY, INFINITY, &out[(*n)++])) return -1;
    }
    if (*n == 0) {
        cli_usage_error("--%s expects a comma-separated list, got '%s'", opt, s);
        return -1;
    }
    return 0;
}

int cli_parse_longs(const char *opt, const char *s, long long lo, long long hi, long long *out,
                    int max, int *n) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == max) {
            cli_usage_error("--%s takes at most %d values, got '%s'", opt, max, s);
            return -1;
        }
        if (cli_parse_long(opt, tok, lo, hi, &out[(*n)++])) return -1;
    }
    return 0;
}
