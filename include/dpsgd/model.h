/*
 * model.h: the model file, model.safetensors (DESIGN.md "File formats"):
 * the safetensors layout (8-byte little-endian header length, JSON header,
 * raw little-endian tensors) with the tensors named as PyTorch's
 * nn.Sequential(Linear, act, Linear, act, ..., Linear) names them:
 * "0.weight" [out, in], "0.bias" [out], "2.weight", ... so that
 * `safetensors.torch.load_file` + `load_state_dict` reproduce the network.
 * __metadata__ (all values strings): format "dpsgd-mlp", format_version "1",
 * architecture (JSON list of widths "[d, h1, ..., k]"), activation,
 * feature_names (JSON list), schema_hash, classes, and optionally privacy
 * (a JSON summary: epsilon, delta, noise multiplier, ...).
 */
#ifndef DPSGD_MODEL_H
#define DPSGD_MODEL_H
#include <stddef.h>
#include "mlp.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dp_model dp_model;

/* Write the network `m` with its metadata to `path` atomically.
 * feature_names: n_in strings; schema_hash: the dataset's; privacy_json: a
 * JSON object text or NULL. */
DP_API dp_status dp_model_save(const char *path, dp_mlp *m, const char *const *feature_names,
                               const char *schema_hash, const char *privacy_json);

/* Read and validate a model file: header length, JSON, every tensor's name,
 * dtype (F32), shape against the architecture, offsets tiling the data with
 * no gap or overlap, finite values. DP_E_FORMAT with the path and what was
 * wrong for a foreign, truncated or corrupt file. The network is created for
 * micro-batches of up to max_micro rows. */
DP_API dp_status dp_model_load(const char *path, size_t max_micro, dp_model **out);
DP_API void dp_model_destroy(dp_model *model);

DP_API dp_mlp *dp_model_mlp(dp_model *model);
DP_API const char *dp_model_schema_hash(const dp_model *model);
DP_API size_t dp_model_n_features(const dp_model *model);
DP_API const char *dp_model_feature(const dp_model *model, size_t j);
/* A __metadata__ value, or NULL when absent. */
DP_API const char *dp_model_meta(const dp_model *model, const char *key);

#ifdef __cplusplus
}
#endif
#endif
