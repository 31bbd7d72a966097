/*
 * cmd_synth.c: `dpsgd synth` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_synth(int argc, char **argv) {
    cli_error("'synth' is not implemented in this build yet");
    return CLI_INTERNAL;
}
