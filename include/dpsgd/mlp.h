/*
 * mlp.h: the multilayer perceptron classifier, and the DP-SGD gradient of a
 * batch: per-example gradient norms without per-example gradients
 * (DESIGN.md algorithm 2), clip factors, and the clipped summed gradient as
 * one matrix product per layer.
 *
 * Parameter layout (one flat float32 vector of dp_mlp_nparams() values, the
 * order PyTorch's nn.Sequential state_dict uses): for each Linear layer l,
 * W_l [out_l, in_l] row-major, then b_l [out_l]. Gradients use the same layout.
 */
#ifndef DPSGD_MLP_H
#define DPSGD_MLP_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define DP_MLP_MAX_LAYERS 16

typedef enum dp_activation { DP_ACT_RELU = 0, DP_ACT_TANH = 1 } dp_activation;

typedef struct dp_mlp_config {
    size_t n_in;                   /* d, input features */
    int n_hidden;                  /* number of hidden layers, 0..DP_MLP_MAX_LAYERS-1 */
    int hidden[DP_MLP_MAX_LAYERS]; /* their widths */
    int n_classes;                 /* k >= 2; softmax cross-entropy */
    dp_activation activation;      /* after every hidden layer */
} dp_mlp_config;

typedef struct dp_mlp dp_mlp;

/* Create a network and the workspace for micro-batches of up to `max_micro`
 * rows (memory does not grow with the batch: larger batches are processed in
 * micro-batches). Parameters are zero until dp_mlp_init. out: the handle.
 * One workspace per OpenMP thread (omp_get_max_threads() now, at most 64),
 * each of min(max_micro, 512) rows: a micro-batch of at most 512 rows keeps
 * its activations in a core's L2 cache. A dp_mlp is not reentrant: do not run
 * two calls on the same handle at once (they share the workspaces).
 * DP_E_RANGE for a width, depth, class count or max_micro out of range. */
DP_API dp_status dp_mlp_create(const dp_mlp_config *cfg, size_t max_micro, dp_mlp **out);
DP_API void dp_mlp_destroy(dp_mlp *m);
DP_API const dp_mlp_config *dp_mlp_get_config(const dp_mlp *m);

DP_API size_t dp_mlp_nparams(const dp_mlp *m);
DP_API float *dp_mlp_params(dp_mlp *m);
DP_API int dp_mlp_nlayers(const dp_mlp *m); /* Linear layers = n_hidden + 1 */
/* Offset (in floats) of W_l and b_l in the parameter vector, and layer shape. */
DP_API void dp_mlp_layer(const dp_mlp *m, int l, size_t *w_off, size_t *b_off, size_t *n_out,
                         size_t *n_in);

/* PyTorch nn.Linear's default initialisation: W, b ~ U(-1/sqrt(in), 1/sqrt(in)),
 * from a counter-based stream keyed by `seed` (same parameters on every rank):
 * parameter j of the flat vector takes 64-bit little-endian word j of the
 * XChaCha20 keystream of key dp_key_from_seed(seed, "init") and nonce
 * 0^16 || "init\0\0\0\0"; u = (word >> 11) 2^-53, value = (2u - 1) / sqrt(in). */
DP_API void dp_mlp_init(dp_mlp *m, uint64_t seed);

/* Class probabilities P [n, k] for inputs X [n, d] (row-major); any n.
 * Rows are split over the OpenMP threads (each with single-threaded BLAS). */
DP_API dp_status dp_mlp_predict(dp_mlp *m, const float *X, size_t n, float *P);

/* Clipping of per-example gradients. */
typedef enum dp_clip_mode {
    DP_CLIP_NONE = 0,     /* non-private: plain summed gradient */
    DP_CLIP_FLAT = 1,     /* one bound C on the whole per-example gradient */
    DP_CLIP_PER_LAYER = 2 /* bound C_l per Linear layer; sensitivity sqrt(sum C_l^2) */
} dp_clip_mode;

typedef struct dp_clip_config {
    dp_clip_mode mode;
    double max_grad_norm;                  /* C for DP_CLIP_FLAT */
    double layer_norms[DP_MLP_MAX_LAYERS]; /* C_l for DP_CLIP_PER_LAYER */
} dp_clip_config;

/* Statistics of one gradient call. They depend on the private data and are
 * NOT private: never release them without saying so. loss_sum leaves out the
 * examples zeroed as non-finite. The phase times are the wall time of the
 * first thread (the threads run side by side); the element-wise work of the
 * norms (|a|^2, |delta|^2) is fused into the forward and backward passes and
 * counted there, so t_norms is only the clip factors. */
typedef struct dp_grad_stats {
    double loss_sum;    /* sum of per-example (weighted) cross-entropy */
    size_t n_clipped;   /* examples whose gradient was scaled down */
    size_t n_nonfinite; /* examples whose gradient was non-finite and zeroed */
    /* wall seconds per phase, accumulated (for bench/train's phase table) */
    double t_forward, t_backward, t_norms, t_wgrad;
} dp_grad_stats;

/* ACCUMULATE into grad[P] the sum over the n examples (X [n, d] row-major,
 * y [n] in [0, k)) of each example's gradient of its cross-entropy loss
 * (times class_weight[y_i] when class_weight is not NULL), each clipped per
 * `clip`: g_i * min(1, C / (|g_i| + 1e-6)). A non-finite per-example gradient
 * contributes zero. The result does not depend on the micro-batch size. n may
 * be 0. stats (may be NULL) is accumulated into too.
 *
 * Non-finite, precisely: an example whose input, activations, output
 * gradients or loss hold a NaN or an Inf, or one of whose squared norms
 * |a_l|^2, |delta_l|^2, |g|^2 overflows float, is zeroed (in every mode,
 * DP_CLIP_NONE included) and counted in n_nonfinite; it is not an error.
 * DP_E_RANGE for a label outside [0, k), a negative or non-finite class
 * weight, a clipping bound that is not finite and > 0, or an unknown mode.
 *
 * Threads: the rows are split into one contiguous range per OpenMP thread
 * (at least 64 rows each), each thread runs single-threaded BLAS on its range
 * with its own gradient buffer, and the buffers are summed in a fixed order;
 * OpenBLAS is set to one thread for the duration of the call (and restored).
 * For a given thread count the result is deterministic; across thread
 * counts and max_micro it is equal up to float rounding. */
DP_API dp_status dp_mlp_clipped_grad(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                     const dp_clip_config *clip, const float *class_weight,
                                     float *grad, dp_grad_stats *stats);

/* Called when layer `layer`'s slice of the gradient, [w_off, b_off + n_out)
 * of dp_mlp_layer (W_l then b_l, contiguous), holds its final value. */
typedef void (*dp_layer_done_fn)(int layer, void *ud);

/* dp_mlp_clipped_grad, and done(l, ud) once for each layer l = 0, 1, ..., L-1
 * as soon as grad's slice of layer l is final for this call, so that a
 * caller can start sending it (a non-blocking allreduce) while the weight
 * gradients of the later layers are still computed. With one thread (and
 * any number of micro-batches) each call comes right after that layer's last
 * weight-gradient product; with several threads, after their buffers are
 * summed (all layers at once, in order). n = 0: all calls at once. The
 * gradient is bit for bit that of dp_mlp_clipped_grad. done may be NULL. On
 * failure, the calls not yet made are not made. */
DP_API dp_status dp_mlp_clipped_grad_layers(dp_mlp *m, const float *X, const int32_t *y, size_t n,
                                            const dp_clip_config *clip, const float *class_weight,
                                            float *grad, dp_grad_stats *stats,
                                            dp_layer_done_fn done, void *ud);

/* Sensitivity (L2) of one example's clipped gradient under `clip`:
 * C for flat, sqrt(sum_l C_l^2) for per-layer, +inf for DP_CLIP_NONE. */
DP_API double dp_clip_sensitivity(const dp_clip_config *clip, int n_layers);

#endif
