/*
 * alloc.c: every allocation of the library, through an injectable allocator
 * (lua_newstate's pattern), so tests can prove the step loop allocates
 * nothing and fuzzers can inject failures.
 */
#include <string.h>
#include "core/dp_internal.h"

static void *std_malloc(void *ud, size_t n) { return malloc(n); }
static void *std_realloc(void *ud, void *p, size_t n) { return realloc(p, n); }
static void std_free(void *ud, void *p) { free(p); }

static dp_malloc_fn a_malloc = std_malloc;
static dp_realloc_fn a_realloc = std_realloc;
static dp_free_fn a_free = std_free;
static void *a_ud;

DP_API void dp_set_allocator(dp_malloc_fn m, dp_realloc_fn r, dp_free_fn f, void *ud) {
    int custom = m && r && f;
    a_malloc = custom ? m : std_malloc;
    a_realloc = custom ? r : std_realloc;
    a_free = custom ? f : std_free;
    a_ud = custom ? ud : NULL;
}

void *dp_malloc(size_t size) { return a_malloc(a_ud, size ? size : 1); }

void *dp_calloc(size_t n, size_t size) {
    if (size && n > (size_t)-1 / size) return NULL;
    void *p = dp_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *dp_realloc(void *ptr, size_t size) { return a_realloc(a_ud, ptr, size ? size : 1); }

void dp_free(void *ptr) {
    if (ptr) a_free(a_ud, ptr);
}

char *dp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = dp_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
