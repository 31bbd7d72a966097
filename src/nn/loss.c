/*
 * loss.c: softmax cross-entropy of a micro-batch and its gradient with respect
 * to the logits, computed stably (log-sum-exp: the largest logit is
 * subtracted before exp, so no exp overflows), with optional class weights
 * that multiply each example's loss (and so its gradient).
 */
#include <math.h>
#include "nn/nn_internal.h"

void nn_softmax_xent(float *Z, const float *b, const int32_t *y, const float *class_weight,
                     size_t m, size_t k, double *loss, float *sq) {
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
        for (size_t j = 0; j < k; j++) mx = z[j] + b[j] > mx ? z[j] + b[j] : mx;
        if (!isfinite(mx)) mx = 0.0f;
        double sum = 0.0;
        for (size_t j = 0; j < k; j++) {
            p[j] = expf(z[j] + b[j] - mx);
            sum += p[j];
        }
        const float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < k; j++) p[j] *= inv;
    }
}
