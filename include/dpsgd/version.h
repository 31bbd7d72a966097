/*
 * version.h: the library's version and build configuration, so a program can
 * check that header and library match and which optional parts were built in.
 */
#ifndef DPSGD_VERSION_H
#define DPSGD_VERSION_H
#include "status.h"

#define DP_VERSION_MAJOR 0
#define DP_VERSION_MINOR 1
#define DP_VERSION_PATCH 0
#define DP_VERSION_NUMBER (DP_VERSION_MAJOR * 10000 + DP_VERSION_MINOR * 100 + DP_VERSION_PATCH)

/* "0.1.0" */
DP_API const char *dp_version(void);

/* One line per optional part: "BLAS: OpenBLAS 0.3.21 ...", "MPI: Open MPI v4.1.4",
 * "OpenMP: yes (4.5)", "FFTW: yes", "CUDA: no", "NCCL: no". Owned by the library. */
DP_API const char *dp_build_config(void);

#endif
