/*
 * cmd_account.c: `dpsgd account` (placeholder until its issue lands; see issues).
 */
#include "cli/cli.h"

int cmd_account(int argc, char **argv) {
    cli_error("'account' is not implemented in this build yet");
    return CLI_INTERNAL;
}
