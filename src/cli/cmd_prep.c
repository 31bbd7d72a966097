/*
 * cmd_prep.c: `dpsgd prep` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_prep(int argc, char **argv) {
    cli_error("'prep' is not implemented in this build yet");
    return CLI_INTERNAL;
}
