/*
 * main.c: the `dpsgd` command table (git's commands[]): dispatch to one
 * cmd_<name>() per subcommand, --help and --version, and the nearest-match
 * suggestion for an unknown subcommand.
 */
#include <string.h>
#include "cli/cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"synth", cmd_synth, "write a synthetic ACS PUMS person file (real columns and codes)"},
    {"prep", cmd_prep, "clean, impute, encode and split a raw CSV into a dataset"},
    {"train", cmd_train, "train an MLP classifier with DP-SGD"},
    {"eval", cmd_eval, "evaluate a trained model on a dataset split"},
    {"predict", cmd_predict, "predict probabilities for a raw CSV"},
    {"account", cmd_account, "privacy calculator: epsilon for a setting, or sigma for a target"},
    {"report", cmd_report, "write an HTML report of a training run"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: dpsgd <command> [options]\n\n"
               "Train neural-network classifiers on confidential tabular data with\n"
               "differentially private SGD.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'dpsgd <command> --help' describes a command; 'dpsgd --version' the build.\n");
}

/* Levenshtein distance, for "did you mean" (git's help_unknown_cmd). */
static size_t distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la > 63 || lb > 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_BAD_INPUT;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("dpsgd %s\n%s", dp_version(), dp_build_config());
        return CLI_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (!strcmp(name, commands[i].name)) {
            cli_set_command(commands[i].name);
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t d = distance(name, commands[i].name);
        if (d < best_d || (strncmp(name, commands[i].name, strlen(name)) == 0 && *name)) {
            best_d = d;
            best = commands[i].name;
        }
    }
    if (name[0] == '-')
        fprintf(stderr, "dpsgd: error: unknown option '%s' (see 'dpsgd --help')\n", name);
    else if (best)
        fprintf(stderr, "dpsgd: error: unknown command '%s'; did you mean '%s'? (see 'dpsgd --help')\n",
                name, best);
    else
        fprintf(stderr, "dpsgd: error: unknown command '%s' (see 'dpsgd --help')\n", name);
    return CLI_BAD_INPUT;
}
