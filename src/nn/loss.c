/*
 * loss.c: softmax cross-entropy of a micro-batch and its gradient with respect
 * to the logits, computed stably (log-sum-exp: the largest logit is
 * subtracted before exp, so no exp overflows), with optional class weights
 * that multiply each example's loss (and so its gradient).
 */
#include <math.h>
#include "nn/nn_internal.h"

/* libmvec has SIMD versions of these (see noise.c for why we declare them). */
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern float logf(float);

/* Two classes (the common case: a binary target), vectorised across rows. The
 * transcendental calls sit in loops of their own: gcc does not if-convert a
 * loop that also calls a function, and would then not vectorise it. */
#define XB 256 /* rows per sub-block (stack scratch) */
static void xent2(float *restrict Z, const float *b, const int32_t *restrict y,
                  const float *restrict class_weight, size_t m, double *restrict loss,
                  float *restrict sq) {
    static const float ones[2] = {1.0f, 1.0f};
    const float *restrict cw = class_weight ? class_weight : ones;
    const float b0 = b[0], b1 = b[1];
    float t0[XB], t1[XB], mx[XB], ls[XB];
    for (size_t r0 = 0; r0 < m; r0 += XB) {
        const int n = (int)(m - r0 < XB ? m - r0 : XB);
        float *restrict z = Z + 2 * r0;
#pragma omp simd
        for (int i = 0; i < n; i++) {
            const float z0 = z[2 * i] + b0, z1 = z[2 * i + 1] + b1;
            const float mxi = z0 > z1 ? z0 : z1; /* NaN flows on into the norm */
            mx[i] = mxi;
            t0[i] = z0 - mxi;
            t1[i] = z1 - mxi;
        }
#pragma omp simd simdlen(16)
        for (int i = 0; i < n; i++) {
            t0[i] = expf(t0[i]);
            t1[i] = expf(t1[i]);
        }
#pragma omp simd simdlen(16)
        for (int i = 0; i < n; i++)
            ls[i] = logf(t0[i] + t1[i]);
#pragma omp simd
        for (int i = 0; i < n; i++) {
            const int c = y[r0 + (size_t)i];
            const float z0 = z[2 * i] + b0, z1 = z[2 * i + 1] + b1;
            const float zc = c == 1 ? z1 : z0;
            loss[r0 + (size_t)i] = (double)(cw[c] * (mx[i] + ls[i] - zc));
        }
        /* one loop per statement group: gcc's if-conversion gives up on more */
#pragma omp simd
        for (int i = 0; i < n; i++) {
            const float yc = (float)y[r0 + (size_t)i]; /* 0 or 1, exactly */
            const float w = cw[y[r0 + (size_t)i]];
            const float inv = 1.0f / (t0[i] + t1[i]);
            const float d0 = w * (t0[i] * inv - (1.0f - yc));
            const float d1 = w * (t1[i] * inv - yc);
            z[2 * i] = d0;
            z[2 * i + 1] = d1;
            sq[r0 + (size_t)i] = d0 * d0 + d1 * d1;
        }
    }
}

void nn_softmax_xent(float *Z, const float *b, const int32_t *y, const float *class_weight,
                     size_t m, size_t k, double *loss, float *sq) {
    if (k == 2) {
        xent2(Z, b, y, class_weight, m, loss, sq);
        return;
    }
    for (size_t i = 0; i < m; i++) {
        float *restrict z = Z + i * k;
        float mx = -INFINITY;
        for (size_t j = 0; j < k; j++) {
            z[j] += b[j];
            mx = z[j] > mx ? z[j] : mx;
        }
        if (!isfinite(mx)) mx = 0.0f; /* all -inf or a NaN: let the NaN/Inf flow to the norm */
        double sum = 0.0;
        for (size_t j = 0; j < k; j++) {
            float e = expf(z[j] - mx);
            sum += e;
        }
        const size_t c = (size_t)y[i];
        const double w = class_weight ? class_weight[c] : 1.0;
        const double lse = (double)mx + log(sum);
        loss[i] = w * (lse - (double)z[c]);
        const float inv = (float)(1.0 / sum), wf = (float)w;
        float s = 0.0f;
        for (size_t j = 0; j < k; j++) {
            float p = expf(z[j] - mx) * inv;
            float d = wf * (p - (j == c ? 1.0f : 0.0f));
            z[j] = d;
            s += d * d;
        }
        sq[i] = s;
    }
}

void nn_softmax(const float *Z, const float *b, size_t m, size_t k, float *P) {
    for (size_t i = 0; i < m; i++) {
        const float *z = Z + i * k;
        float *p = P + i * k;
        float mx = -INFINITY;
        for (size_t j = 0; j < k; j++)
            mx = z[j] + b[j] > mx ? z[j] + b[j] : mx;
        if (!isfinite(mx)) mx = 0.0f;
        double sum = 0.0;
        for (size_t j = 0; j < k; j++) {
            p[j] = expf(z[j] + b[j] - mx);
            sum += p[j];
        }
        const float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < k; j++)
            p[j] *= inv;
    }
}
