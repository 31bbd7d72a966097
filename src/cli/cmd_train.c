/*
 * cmd_train.c: `dpsgd train` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_train(int argc, char **argv) {
    cli_error("'train' is not implemented in this build yet");
    return CLI_INTERNAL;
}
