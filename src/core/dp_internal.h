/*
 * dp_internal.h: helpers shared by every module of the library and never
 * exported: the one function that records a failure (status + message
 * together), the allocation wrappers behind dp_set_allocator, and assertions
 * for programmer errors (never for anything a user's input can cause).
 */
#ifndef DP_INTERNAL_H
#define DP_INTERNAL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include "dpsgd/dpsgd.h"

/* Record `status` with a printf-style message for this thread and return
 * `status`, so a call site reads `return dp_error(DP_E_FORMAT, "%s:%d: ...")`. */
dp_status dp_error(dp_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
dp_status dp_verror(dp_status status, const char *fmt, va_list ap);

/* Prefix the current message of this thread with "prefix: " (used to add a
 * file name or rank to a message made deeper down). Returns `status`. */
dp_status dp_error_prefix(dp_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Allocation through the injected allocator. dp_malloc_or sets DP_E_NOMEM with
 * what was being allocated when it fails. */
void *dp_malloc(size_t size);
void *dp_calloc(size_t n, size_t size);
void *dp_realloc(void *ptr, size_t size);
void dp_free(void *ptr);
char *dp_strdup(const char *s);

/* A failed invariant is a bug in dpsgd: print file and line and abort. */
#define DP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "dpsgd: internal error: %s:%d: assertion '%s' failed\n", __FILE__,     \
                    __LINE__, #cond);                                                              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Propagate a failure: `DP_TRY(f(x));` returns f's status if it is not DP_OK. */
#define DP_TRY(expr)                                                                               \
    do {                                                                                           \
        dp_status dp_try_s_ = (expr);                                                              \
        if (dp_try_s_ != DP_OK)                                                                    \
            return dp_try_s_;                                                                      \
    } while (0)

#define DP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DP_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
