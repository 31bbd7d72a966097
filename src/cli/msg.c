/*
 * msg.c: the only code that prints messages for the user. Each line starts
 * "dpsgd <cmd>: " (with the rank when several run); errors from any rank,
 * notes and warnings from rank 0 only. Exit statuses per DESIGN.md.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>
#include "cli/cli.h"

static const char *command = "";
static int rank_, size_ = 1;

void cli_set_command(const char *name) { command = name; }
void cli_set_rank(int rank, int size) {
    rank_ = rank;
    size_ = size;
}
int cli_rank(void) { return rank_; }

static void vprint_tail(const char *kind, const char *tail, const char *fmt, va_list ap) {
    char where[64] = "";
    if (size_ > 1) snprintf(where, sizeof where, " [rank %d]", rank_);
    fprintf(stderr, "dpsgd%s%s%s: %s", *command ? " " : "", command, where, kind);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "%s\n", tail);
    fflush(stderr);
}

static void vprint(const char *kind, const char *fmt, va_list ap) {
    vprint_tail(kind, "", fmt, ap);
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint("error: ", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...) {
    if (rank_ != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprint("warning: ", fmt, ap);
    va_end(ap);
}

void cli_note(const char *fmt, ...) {
    if (rank_ != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprint("", fmt, ap);
    va_end(ap);
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    char tail[96];
    snprintf(tail, sizeof tail, " (see 'dpsgd %s --help')", command);
    va_start(ap, fmt);
    vprint_tail("error: ", tail, fmt, ap);
    va_end(ap);
    return CLI_BAD_INPUT;
}

int cli_exit_code(dp_status status) {
    switch (status) {
    case DP_OK: return CLI_OK;
    case DP_E_NOMEM:
    case DP_E_INTERNAL:
    case DP_E_MPI:
    case DP_E_CUDA: return CLI_INTERNAL;
    default: return CLI_BAD_INPUT;
    }
}

int cli_fail(dp_status status) {
    const char *msg = dp_last_error();
    cli_error("%s", msg && *msg ? msg : dp_status_str(status));
    return cli_exit_code(status);
}

void cli_mute(int on, int fds[2]) {
    fflush(stdout);
    fflush(stderr);
    if (on) {
        int null = open("/dev/null", O_WRONLY);
        fds[0] = dup(1);
        fds[1] = dup(2);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
    } else if (fds[0] >= 0) {
        dup2(fds[0], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
    }
}
