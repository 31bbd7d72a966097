/*
 * cli.h: what every subcommand of the `dpsgd` tool shares: the option table
 * from which getopt_long's table and --help are both generated (so they cannot
 * drift apart), strict typed argument parsing, and the message printers (the
 * only place that writes "dpsgd <cmd>: error: ..."). The library never
 * prints; this layer does.
 */
#ifndef DP_CLI_H
#define DP_CLI_H
#include <getopt.h>
#include <stdio.h>
#include "dpsgd/dpsgd.h"

/* Exit statuses (DESIGN.md): 0 success, 1 bad input or usage, 2 internal failure. */
enum { CLI_OK = 0, CLI_BAD_INPUT = 1, CLI_INTERNAL = 2 };

/* One option. id < 256 is also its short form (-o); ids >= 256 are long-only. */
typedef struct cli_opt {
    const char *name; /* long name without "--" */
    int id;           /* value returned by cli_next */
    const char *arg;  /* argument name for help ("N", "FILE"), or NULL for a flag */
    const char *help; /* one line: meaning and default */
} cli_opt;

typedef struct cli_cmd {
    const char *name;    /* "prep" */
    const char *usage;   /* "INPUT -o DATASET [options]" */
    const char *summary; /* one sentence: what the command does */
    const char *example; /* one worked example, or NULL */
    const cli_opt *opts; /* terminated by {0} */
} cli_cmd;

typedef struct cli_parser {
    const cli_cmd *cmd;
    int argc;
    char **argv;
    struct option lopts[64];
    char sopts[160];
} cli_parser;

enum { CLI_HELP = -2, CLI_ERROR = -3 };

/* Set up parsing of argv (argv[0] is the subcommand name). */
void cli_parser_init(cli_parser *p, const cli_cmd *cmd, int argc, char **argv);

/* Next option id; -1 at the end (then optind indexes the operands), CLI_HELP
 * after printing --help, CLI_ERROR after printing a usage error. */
int cli_next(cli_parser *p);

/* Print the help of a subcommand, generated from its table. */
void cli_print_help(FILE *f, const cli_cmd *cmd);

/* Strict number parsing: the whole string, within [lo, hi]; otherwise a usage
 * error naming the option and the allowed range is printed and -1 returned. */
int cli_parse_long(const char *opt, const char *s, long long lo, long long hi, long long *out);
int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out);
/* --device: "cpu" or "cuda" into *out (else a usage error, -1). */
int cli_parse_device(const char *s, dp_device_kind *out);
/* 0 when `dev` can run here; else one line ("--device cuda: no CUDA device
 * ... (use --device cpu)") and -1. Call before anything is written. */
int cli_device_ready(dp_device_kind dev);
/* A probability strictly between 0 and 1 (a decision threshold). */
int cli_parse_probability(const char *opt, const char *s, double *out);
/* A comma-separated list of up to `max` doubles / longs. */
int cli_parse_doubles(const char *opt, const char *s, double *out, int max, int *n);
int cli_parse_longs(const char *opt, const char *s, long long lo, long long hi, long long *out,
                    int max, int *n);

/* Messages, prefixed "dpsgd <cmd>: ". cli_usage_error also points to --help and
 * returns CLI_BAD_INPUT. cli_fail prints the library's last message for
 * `status` and returns the exit status for it. */
void cli_set_command(const char *name);
void cli_set_rank(int rank, int size);
int cli_rank(void);
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_fail(dp_status status);
int cli_exit_code(dp_status status);

/* Silence this process's stdout and stderr (on = 1; the saved descriptors go
 * to fds[2]) or restore them (on = 0): ranks other than 0 parse the same argv
 * and would print the same help and usage errors R times. */
void cli_mute(int on, int fds[2]);

/* The subcommands, one file each (cmd_<name>.c). */
int cmd_synth(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_account(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
