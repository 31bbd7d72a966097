/*
 * cmd_predict.c: `dpsgd predict` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_predict(int argc, char **argv) {
    cli_error("'predict' is not implemented in this build yet");
    return CLI_INTERNAL;
}
