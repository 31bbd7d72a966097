/*
 * cmd_report.c: `dpsgd report` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_report(int argc, char **argv) {
    cli_error("'report' is not implemented in this build yet");
    return CLI_INTERNAL;
}
