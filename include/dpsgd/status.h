/*
 * status.h: result codes and error messages of libdpsgd.
 *
 * Every public function that can fail returns a dp_status; results come back
 * through pointer arguments. On failure, dp_last_error() gives a one-line
 * message for the calling thread (file:line:column, rank or step where they
 * apply, what was expected and what was found). The library never prints and
 * never exits. Codes only grow at the end; a removed code keeps its number.
 */
#ifndef DPSGD_STATUS_H
#define DPSGD_STATUS_H

#if defined(DP_BUILDING_LIBRARY)
#define DP_API __attribute__((visibility("default")))
#else
#define DP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dp_status {
    DP_OK = 0,
    DP_E_USAGE = 1,        /* the caller broke the API contract or gave a bad option */
    DP_E_NOMEM = 2,        /* an allocation failed */
    DP_E_IO = 3,           /* a file could not be opened, read or written */
    DP_E_FORMAT = 4,       /* malformed, truncated or foreign file */
    DP_E_SCHEMA = 5,       /* columns, codes or model of another schema */
    DP_E_RANGE = 6,        /* a value outside its domain */
    DP_E_NUMERIC = 7,      /* NaN or Inf produced where a number was needed */
    DP_E_PRIVACY = 8,      /* infeasible privacy setting, or budget exhausted */
    DP_E_MPI = 9,          /* an MPI call failed, or another rank failed */
    DP_E_CUDA = 10,        /* a CUDA, cuBLAS or NCCL call failed */
    DP_E_UNSUPPORTED = 11, /* this build lacks the requested feature */
    DP_E_INTERNAL = 12,    /* a bug in dpsgd */
    DP_E_EXISTS = 13,      /* the output exists and --force was not given */
    DP_E_EMPTY = 14,       /* the input holds no usable record */
} dp_status;

/* A fixed phrase for the code ("malformed or foreign file"); never NULL. */
DP_API const char *dp_status_str(dp_status status);

/* The detailed message of the last failure on this thread, or "" if none.
 * The string is owned by the library and valid until the next failure. */
DP_API const char *dp_last_error(void);

/* Forget the last message of this thread. */
DP_API void dp_clear_error(void);

/* Allocator injection (as lua_newstate): every allocation of the library goes
 * through these. Pass NULLs to restore malloc/realloc/free. Not thread-safe:
 * call before any other dpsgd function. */
typedef void *(*dp_malloc_fn)(void *ud, size_t size);
typedef void *(*dp_realloc_fn)(void *ud, void *ptr, size_t size);
typedef void (*dp_free_fn)(void *ud, void *ptr);
DP_API void dp_set_allocator(dp_malloc_fn m, dp_realloc_fn r, dp_free_fn f, void *ud);

#ifdef __cplusplus
}
#endif
#endif
