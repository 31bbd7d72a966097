/*
 * cmd_eval.c: `dpsgd eval` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_eval(int argc, char **argv) {
    cli_error("'eval' is not implemented in this build yet");
    return CLI_INTERNAL;
}
