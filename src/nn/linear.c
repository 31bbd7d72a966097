/*
 * linear.c: the three matrix products of a Linear layer (forward, backward to
 * the input, weight gradient) as row-major OpenBLAS cblas_sgemm calls. The
 * weight gradient of DP-SGD is the same product with the rows of D scaled by
 * the clip factors beforehand (Goodfellow 2015; DESIGN.md algorithm 2).
 */
#include <cblas.h>
#include "nn/nn_internal.h"

void nn_linear_forward(const float *A, size_t m, size_t in, const float *W, size_t out, float *Z) {
    if (m == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)out, (int)in, 1.0f, A,
                (int)in, W, (int)in, 0.0f, Z, (int)out);
}

void nn_linear_backward(const float *D, size_t m, size_t out, const float *W, size_t in, float *G) {
    if (m == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)in, (int)out, 1.0f, D,
                (int)out, W, (int)in, 0.0f, G, (int)in);
}

void nn_linear_wgrad(const float *D, const float *A, size_t m, size_t out, size_t in, float *gW) {
    if (m == 0) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)m, 1.0f, D,
                (int)out, A, (int)in, 1.0f, gW, (int)in);
}
