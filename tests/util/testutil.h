/*
 * testutil.h: helpers shared by the Criterion tests: a fresh random seed
 * printed on failure, temporary directories, running the `dpsgd` binary
 * (path from $DPSGD) and capturing its exit status and output.
 */
#ifndef DP_TESTUTIL_H
#define DP_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>

/* A seed from the clock unless $DP_TEST_SEED is set; printed to stderr so a
 * failure can be replayed. */
uint64_t tu_seed(void);

/* splitmix64: a tiny independent PRNG for test inputs (not the library's). */
uint64_t tu_next(uint64_t *state);
double tu_uniform(uint64_t *state); /* [0, 1) */
double tu_normal(uint64_t *state);

/* mkdtemp under $TMPDIR; the caller frees the string. tu_rmrf removes a tree. */
char *tu_tempdir(void);
void tu_rmrf(const char *path);

/* One temporary directory per test, tu_dir:
 * TestSuite(name, .init = tu_dir_init, .fini = tu_dir_fini). */
extern char *tu_dir;
void tu_dir_init(void);
void tu_dir_fini(void);

/* system() of the formatted command line: its status (0: success). */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write `len` bytes to `path`; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* Read a whole file (NUL-terminated); NULL on failure; *len may be NULL. */
char *tu_read_file(const char *path, size_t *len);

/* Run `$DPSGD <args>` through /bin/sh with stdout and stderr captured into
 * malloc'd strings (either may be NULL to discard). Returns the exit status,
 * or 128+signal if killed by a signal. */
int tu_run(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Path of the dpsgd binary ($DPSGD), and of the source tree ($DP_SOURCE_DIR). */
const char *tu_dpsgd(void);
const char *tu_source_dir(void);

/* "dir/name" in one of 8 rotating static buffers (so a call can take a few
 * such paths as arguments at once); for test temporary files. */
char *tu_path(const char *dir, const char *name);

/* 1 if `path` exists. */
int tu_exists(const char *path);

#endif
