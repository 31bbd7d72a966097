/*
 * version.c: the version string and the build configuration (BLAS, MPI,
 * OpenMP, FFTW, CUDA found or not), as `dpsgd --version` prints it.
 */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "core/dp_internal.h"

DP_API const char *dp_version(void) { return DP_VERSION_STRING; }

DP_API const char *dp_build_config(void) {
    static char buf[1024];
    if (buf[0]) return buf;
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strpbrk(mpi, ",\n");
    if (nl) *nl = '\0';
    snprintf(buf, sizeof buf,
             "BLAS: %s\nMPI: %s\nOpenMP: %s\nFFTW (PRV accountant): %s\nCUDA: %s\nNCCL: %s\n",
             openblas_get_config(), mpi,
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
#ifdef DP_HAVE_FFTW
             "yes",
#else
             "no (built with -DDP_WITH_FFTW=OFF)",
#endif
#ifdef DP_HAVE_CUDA
             "yes (backend built; a device is looked for at run time)",
#else
             "no (no nvcc when built, or -DDP_WITH_CUDA=OFF)",
#endif
#ifdef DP_HAVE_NCCL
             "yes"
#else
             "no"
#endif
    );
    return buf;
}
