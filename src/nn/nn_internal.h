/*
 * nn_internal.h: the inside of dp_mlp (mlp.h) shared by src/nn/ and
 * src/dp/clip.c: the parameter layout, the per-thread workspaces, the layer
 * kernels (linear.c, activation.c, loss.c) and the plain reference
 * implementations (reference.c) that the tests compare the fast path against.
 *
 * Layers are numbered l = 0 .. L-1 (L = n_hidden + 1 Linear layers). For a
 * micro-batch of m rows (all matrices row-major):
 *
 *   A_0 = X [m, d]                         input of layer 0
 *   Z_l = A_l W_l^T + b_l  [m, out_l]      W_l [out_l, in_l]
 *   A_{l+1} = act(Z_l)  [m, in_{l+1}]      for l < L-1 (in_{l+1} = out_l)
 *   Z_{L-1} = logits [m, k]
 *   D_l = dloss_i / dZ_l  [m, out_l]       "delta", output gradient of layer l
 *   D_{L-1} = w_{y_i} (softmax(Z_{L-1}) - onehot(y))
 *   D_{l-1} = (D_l W_l) .* act'(A_l)
 *   grad W_l += (diag(c) D_l)^T A_l,   grad b_l += D_l^T c
 */
#ifndef DP_NN_INTERNAL_H
#define DP_NN_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "dpsgd/mlp.h"

/* One thread's buffers for micro-batches of up to `rows` rows. */
typedef struct nn_ws {
    float *x;                           /* [rows, d]: copy of X when a row must be zeroed */
    float *act[DP_MLP_MAX_LAYERS];      /* act[l], l >= 1: A_l [rows, in_l]; act[0] unused */
    float *delta[DP_MLP_MAX_LAYERS];    /* D_l [rows, out_l]; D_{L-1} holds the logits first */
    float *sq_act[DP_MLP_MAX_LAYERS];   /* |A_l row i|^2 [rows] */
    float *sq_delta[DP_MLP_MAX_LAYERS]; /* |D_l row i|^2 [rows] */
    float *clip[DP_MLP_MAX_LAYERS];     /* clip factors [rows]; flat/none use clip[0] only */
    double *loss;                       /* per-row weighted cross-entropy [rows] */
    float *grad;                        /* [P] private gradient sum of this thread */
    unsigned char *bad;                 /* [rows] 1 = non-finite, zeroed */
} nn_ws;

#define NN_MAX_THREADS 64

struct dp_mlp {
    dp_mlp_config cfg;
    int L; /* Linear layers */
    size_t n_in[DP_MLP_MAX_LAYERS], n_out[DP_MLP_MAX_LAYERS];
    size_t w_off[DP_MLP_MAX_LAYERS], b_off[DP_MLP_MAX_LAYERS];
    size_t nparams;
    size_t max_micro; /* the caller's bound on rows per micro-batch */
    size_t rows;      /* rows of each workspace = min(max_micro, NN_CHUNK) */
    int n_ws;         /* workspaces = the most threads one call uses */
    float *params;    /* [nparams], in `block` */
    void *block;      /* the one allocation behind params and every workspace */
    nn_ws ws[NN_MAX_THREADS];
};

/* Internal chunk: a thread processes its rows in micro-batches of at most this
 * many rows even when max_micro is larger, so that a micro-batch's
 * activations stay in the core's L2 cache (bench/kernels measures it). */
#define NN_CHUNK 512

/* ---- linear.c: the matrix products, through OpenBLAS (single-threaded per
 * calling thread when called inside our OpenMP regions) ---- */
/* Z [m, out] = A [m, in] W^T  (overwrite) */
void nn_linear_forward(const float *A, size_t m, size_t in, const float *W, size_t out, float *Z);
/* G [m, in] = D [m, out] W  (overwrite) */
void nn_linear_backward(const float *D, size_t m, size_t out, const float *W, size_t in, float *G);
/* gW [out, in] += D^T [out, m] A [m, in] */
void nn_linear_wgrad(const float *D, const float *A, size_t m, size_t out, size_t in, float *gW);

/* ---- activation.c ---- */
/* Z [m, n] := act(Z + b) row by row; sq[i] = |row i|^2 afterwards (sq may be NULL). */
void nn_act_forward(dp_activation act, float *Z, const float *b, size_t m, size_t n, float *sq);
/* G [m, n] := G .* act'(A) where A = act(Z) is the layer's output; sq[i] = |row i of G|^2. */
void nn_act_backward(dp_activation act, float *G, const float *A, size_t m, size_t n, float *sq);
/* sq[i] = |row i of X [m, n]|^2 */
void nn_row_sq(const float *X, size_t m, size_t n, float *sq);

/* ---- loss.c ---- */
/* Z [m, k] holds logits plus bias b; on return D = w_{y_i} (softmax(Z + b) - e_{y_i})
 * overwrites Z, loss[i] = w_{y_i} (logsumexp(z_i) - z_{i,y_i}), sq[i] = |D row i|^2. */
void nn_softmax_xent(float *Z, const float *b, const int32_t *y, const float *class_weight,
                     size_t m, size_t k, double *loss, float *sq);
/* P [m, k] := softmax(Z + b) (P may alias Z). */
void nn_softmax(const float *Z, const float *b, size_t m, size_t k, float *P);

/* ---- reference.c: plain loops, one example at a time, double accumulation.
 * Same contract as dp_mlp_clipped_grad / dp_mlp_predict. Allocates. ---- */
dp_status dp_mlp_clipped_grad_ref(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                  const dp_clip_config *clip, const float *class_weight,
                                  float *grad, dp_grad_stats *stats);
dp_status dp_mlp_predict_ref(dp_mlp *m, const float *X, size_t n, float *P);

/* ---- shared checks (mlp.c) ---- */
dp_status nn_check_batch(const char *fn, const dp_mlp *m, const float *X, const int32_t *y,
                         size_t n, const dp_clip_config *clip, const float *class_weight,
                         const float *grad);

#endif
