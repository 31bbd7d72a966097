/*
 * status.c: result-code phrases and the thread-local last-error message.
 * dp_error() is the only way the library records a failure, so a status can
 * never travel without a message (SQLite's errmsg, git's `return error()`).
 */
#include <string.h>
#include "core/dp_internal.h"

static _Thread_local char last_error[1024];

DP_API const char *dp_status_str(dp_status status) {
    switch (status) {
    case DP_OK: return "success";
    case DP_E_USAGE: return "invalid argument or usage";
    case DP_E_NOMEM: return "out of memory";
    case DP_E_IO: return "input/output error";
    case DP_E_FORMAT: return "malformed or foreign file";
    case DP_E_SCHEMA: return "schema mismatch";
    case DP_E_RANGE: return "value out of range";
    case DP_E_NUMERIC: return "non-finite number";
    case DP_E_PRIVACY: return "privacy setting infeasible or budget exhausted";
    case DP_E_MPI: return "MPI failure";
    case DP_E_CUDA: return "CUDA failure";
    case DP_E_UNSUPPORTED: return "not supported by this build";
    case DP_E_INTERNAL: return "internal error";
    case DP_E_EXISTS: return "output exists";
    case DP_E_EMPTY: return "no usable record";
    }
    return "unknown status";
}

DP_API const char *dp_last_error(void) {
    return last_error;
}

DP_API void dp_clear_error(void) {
    last_error[0] = '\0';
}

dp_status dp_verror(dp_status status, const char *fmt, va_list ap) {
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return status;
}

dp_status dp_error(dp_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dp_verror(status, fmt, ap);
    va_end(ap);
    return status;
}

dp_status dp_error_prefix(dp_status status, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    /* the prefix, then as much of the earlier message as fits */
    const char *rest = old[0] ? old : dp_status_str(status);
    size_t n = (size_t)snprintf(last_error, sizeof last_error, "%s: ", prefix);
    if (n < sizeof last_error) {
        size_t len = DP_MIN(strlen(rest), sizeof last_error - 1 - n);
        memcpy(last_error + n, rest, len);
        last_error[n + len] = '\0';
    }
    return status;
}
