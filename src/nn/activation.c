/*
 * activation.c: the element-wise passes of the MLP, written so the compiler
 * vectorises them: bias + activation (ReLU or tanh) in the forward pass,
 * the activation's derivative in the backward pass, each fused with the
 * squared row norms that per-example clipping needs (|a_i|^2 and |delta_i|^2
 * of DESIGN.md algorithm 2), so the norms cost no extra pass over memory.
 */
#include <math.h>
#include "nn/nn_internal.h"

/* libmvec (glibc >= 2.35) has SIMD tanhf; see noise.c for why we declare it. */
#pragma omp declare simd notinbranch
extern float tanhf(float);

void nn_act_forward(dp_activation act, float *Z, const float *b, size_t m, size_t n, float *sq) {
    if (act == DP_ACT_RELU) {
        for (size_t i = 0; i < m; i++) {
            float *restrict z = Z + i * n;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < n; j++) {
                float v = z[j] + b[j];
                v = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as in PyTorch, to be caught */
                z[j] = v;
                s += v * v;
            }
            if (sq) sq[i] = s;
        }
        return;
    }
    /* tanh: the call in a loop of its own so that it is vectorised */
    for (size_t i = 0; i < m; i++) {
        float *restrict z = Z + i * n;
#pragma omp simd
        for (size_t j = 0; j < n; j++)
            z[j] += b[j];
    }
    float *restrict z = Z;
#pragma omp simd simdlen(16)
    for (size_t j = 0; j < m * n; j++)
        z[j] = tanhf(z[j]);
    if (sq) nn_row_sq(Z, m, n, sq);
}

void nn_act_backward(dp_activation act, float *G, const float *A, size_t m, size_t n, float *sq) {
    for (size_t i = 0; i < m; i++) {
        float *restrict g = G + i * n;
        const float *restrict a = A + i * n;
        float s = 0.0f;
        if (act == DP_ACT_RELU) {
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < n; j++) {
                float v = a[j] > 0.0f ? g[j] : 0.0f;
                g[j] = v;
                s += v * v;
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < n; j++) {
                float v = g[j] * (1.0f - a[j] * a[j]);
                g[j] = v;
                s += v * v;
            }
        }
        sq[i] = s;
    }
}

void nn_row_sq(const float *X, size_t m, size_t n, float *sq) {
    for (size_t i = 0; i < m; i++) {
        const float *restrict x = X + i * n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (size_t j = 0; j < n; j++)
            s += x[j] * x[j];
        sq[i] = s;
    }
}
