/*
 * safetensors.c: model.safetensors writer and validating reader (format in
 * include/dpsgd/model.h; the safetensors layout of Hugging Face's
 * `safetensors`: u64 LE header length N, N bytes of JSON padded with spaces
 * to a multiple of 8, then the tensors' bytes, little-endian, contiguous).
 * JSON through cJSON; writes through dp_file_write_atomic_v.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/dp_internal.h"
#include "dpsgd/checkpoint.h"
#include "dpsgd/model.h"

#define MAX_HEADER (64u << 20)

struct dp_model {
    dp_mlp *mlp;
    cJSON *meta;     /* the __metadata__ object (owned) */
    char **features; /* n_in names */
    size_t n_features;
};

static const char *act_name(dp_activation a) {
    return a == DP_ACT_TANH ? "tanh" : "relu";
}

DP_API dp_status dp_model_save(const char *path, dp_mlp *m, const char *const *feature_names,
                               const char *schema_hash, const char *privacy_json) {
    const dp_mlp_config *cfg = dp_mlp_get_config(m);
    int L = dp_mlp_nlayers(m);
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    cJSON *arch = cJSON_CreateArray(), *feats = cJSON_CreateArray();
    dp_status st = DP_OK;
    char *head = NULL, *arch_s = NULL, *feats_s = NULL;
    char buf[64];
    if (!root || !meta || !arch || !feats) goto nomem;
    cJSON_AddItemToArray(arch, cJSON_CreateNumber((double)cfg->n_in));
    for (int l = 0; l < cfg->n_hidden; l++)
        cJSON_AddItemToArray(arch, cJSON_CreateNumber(cfg->hidden[l]));
    cJSON_AddItemToArray(arch, cJSON_CreateNumber(cfg->n_classes));
    for (size_t j = 0; j < cfg->n_in; j++)
        cJSON_AddItemToArray(feats, cJSON_CreateString(feature_names ? feature_names[j] : ""));
    arch_s = cJSON_PrintUnformatted(arch);
    feats_s = cJSON_PrintUnformatted(feats);
    if (!arch_s || !feats_s) goto nomem;
    cJSON_AddStringToObject(meta, "format", "dpsgd-mlp");
    cJSON_AddStringToObject(meta, "format_version", "1");
    cJSON_AddStringToObject(meta, "architecture", arch_s);
    cJSON_AddStringToObject(meta, "activation", act_name(cfg->activation));
    cJSON_AddStringToObject(meta, "feature_names", feats_s);
    cJSON_AddStringToObject(meta, "schema_hash", schema_hash ? schema_hash : "");
    snprintf(buf, sizeof buf, "%d", cfg->n_classes);
    cJSON_AddStringToObject(meta, "classes", buf);
    if (privacy_json) cJSON_AddStringToObject(meta, "privacy", privacy_json);
    cJSON_AddItemToObject(root, "__metadata__", meta);
    meta = NULL;
    /* Tensors in state_dict order, which is also the order of the flat
     * parameter vector: the data section is that vector, byte for byte. */
    for (int l = 0; l < L; l++) {
        size_t w_off, b_off, n_out, n_in;
        dp_mlp_layer(m, l, &w_off, &b_off, &n_out, &n_in);
        for (int which = 0; which < 2; which++) {
            cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(),
                  *offs = cJSON_CreateArray();
            if (!t || !shape || !offs) {
                cJSON_Delete(t);
                cJSON_Delete(shape);
                cJSON_Delete(offs);
                goto nomem;
            }
            size_t off = which ? b_off : w_off, count = which ? n_out : n_out * n_in;
            cJSON_AddStringToObject(t, "dtype", "F32");
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)n_out));
            if (!which) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)n_in));
            cJSON_AddItemToObject(t, "shape", shape);
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off * 4)));
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)((off + count) * 4)));
            cJSON_AddItemToObject(t, "data_offsets", offs);
            snprintf(buf, sizeof buf, "%d.%s", 2 * l, which ? "bias" : "weight");
            cJSON_AddItemToObject(root, buf, t);
        }
    }
    head = cJSON_PrintUnformatted(root);
    if (!head) goto nomem;
    {
        size_t hlen = strlen(head), padded = (hlen + 7) / 8 * 8;
        char *h = dp_malloc(padded);
        if (!h) goto nomem;
        memcpy(h, head, hlen);
        memset(h + hlen, ' ', padded - hlen);
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        const void *parts[3] = {len8, h, dp_mlp_params(m)};
        size_t lens[3] = {8, padded, dp_mlp_nparams(m) * sizeof(float)};
        st = dp_file_write_atomic_v(path, parts, lens, 3);
        dp_free(h);
    }
    goto done;
nomem:
    st = dp_error(DP_E_NOMEM, "%s: out of memory writing the model", path);
done:
    cJSON_free(head);
    cJSON_free(arch_s);
    cJSON_free(feats_s);
    cJSON_Delete(root);
    cJSON_Delete(meta);
    cJSON_Delete(arch);
    cJSON_Delete(feats);
    return st;
}

DP_API void dp_model_destroy(dp_model *model) {
    if (!model) return;
    dp_mlp_destroy(model->mlp);
    cJSON_Delete(model->meta);
    for (size_t j = 0; j < model->n_features; j++)
        dp_free(model->features[j]);
    dp_free(model->features);
    dp_free(model);
}

DP_API dp_mlp *dp_model_mlp(dp_model *model) {
    return model->mlp;
}
DP_API size_t dp_model_n_features(const dp_model *model) {
    return model->n_features;
}
DP_API const char *dp_model_feature(const dp_model *model, size_t j) {
    return j < model->n_features ? model->features[j] : NULL;
}
DP_API const char *dp_model_meta(const dp_model *model, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
DP_API const char *dp_model_schema_hash(const dp_model *model) {
    const char *h = dp_model_meta(model, "schema_hash");
    return h ? h : "";
}

/* A non-negative integer JSON number that fits a size_t exactly. */
static int as_size(const cJSON *v, size_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (size_t)v->valuedouble;
    return 1;
}

typedef struct span {
    size_t begin, end;
} span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        st = dp_error(DP_E_FORMAT, __VA_ARGS__);                                                   \
        goto fail;                                                                                 \
    } while (0)

DP_API dp_status dp_model_load(const char *path, size_t max_micro, dp_model **out) {
    *out = NULL;
    dp_status st = DP_OK;
    unsigned char *buf = NULL;
    cJSON *root = NULL, *arch = NULL, *feats = NULL;
    dp_model *model = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dp_error(DP_E_IO, "%s: cannot open model: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dp_error(DP_E_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    buf = dp_malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return dp_error(DP_E_NOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) BAD("%s: read failed", path);
    if (size < 8)
        BAD("%s: not a safetensors file (%zu bytes, shorter than its 8-byte header)", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > MAX_HEADER || hlen > size - 8)
        BAD("%s:0: not a safetensors file or truncated (header length %llu, file of %zu bytes)",
            path, (unsigned long long)hlen, size);
    if (hlen == 0 || buf[8] != '{')
        BAD("%s:8: not a safetensors file (header is not a JSON object)", path);
    root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!cJSON_IsObject(root)) BAD("%s:8: malformed safetensors header (invalid JSON)", path);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    if (!cJSON_IsObject(meta) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "dpsgd-mlp"))
        BAD("%s: a safetensors file but not a dpsgd model (expected __metadata__.format "
            "'dpsgd-mlp')",
            path);
    for (const cJSON *it = meta->child; it; it = it->next)
        if (!cJSON_IsString(it)) BAD("%s: __metadata__.%s is not a string", path, it->string);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(meta, "format_version");
    if (!cJSON_IsString(ver) || strcmp(ver->valuestring, "1"))
        BAD("%s: model format_version '%s', this build reads '1'", path,
            cJSON_IsString(ver) ? ver->valuestring : "");
    const char *keys[] = {"architecture", "activation", "feature_names", "schema_hash", "classes"};
    for (int i = 0; i < 5; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, keys[i])))
            BAD("%s: __metadata__ lacks '%s'", path, keys[i]);

    dp_mlp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    arch = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(meta, "architecture")->valuestring);
    int n_w = cJSON_GetArraySize(arch);
    if (!cJSON_IsArray(arch) || n_w < 2 || n_w > DP_MLP_MAX_LAYERS + 1)
        BAD("%s: __metadata__.architecture must be a list of 2 to %d layer widths", path,
            DP_MLP_MAX_LAYERS + 1);
    size_t widths[DP_MLP_MAX_LAYERS + 1];
    for (int i = 0; i < n_w; i++)
        if (!as_size(cJSON_GetArrayItem(arch, i), &widths[i]) || widths[i] == 0 ||
            widths[i] > (1u << 24))
            BAD("%s: __metadata__.architecture: width %d is not a positive integer", path, i);
    cfg.n_in = widths[0];
    cfg.n_hidden = n_w - 2;
    for (int l = 0; l < cfg.n_hidden; l++)
        cfg.hidden[l] = (int)widths[l + 1];
    cfg.n_classes = (int)widths[n_w - 1];
    const char *act = cJSON_GetObjectItemCaseSensitive(meta, "activation")->valuestring;
    if (!strcmp(act, "relu"))
        cfg.activation = DP_ACT_RELU;
    else if (!strcmp(act, "tanh"))
        cfg.activation = DP_ACT_TANH;
    else
        BAD("%s: __metadata__.activation: expected relu or tanh, found '%s'", path, act);
    if (cfg.n_classes < 2) BAD("%s: __metadata__.architecture: fewer than 2 classes", path);
    const char *cls = cJSON_GetObjectItemCaseSensitive(meta, "classes")->valuestring;
    if (strtol(cls, NULL, 10) != cfg.n_classes)
        BAD("%s: __metadata__.classes '%s' disagrees with the architecture (%d)", path, cls,
            cfg.n_classes);
    feats = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(meta, "feature_names")->valuestring);
    if (!cJSON_IsArray(feats) || (size_t)cJSON_GetArraySize(feats) != cfg.n_in)
        BAD("%s: __metadata__.feature_names must list %zu names", path, cfg.n_in);

    model = dp_calloc(1, sizeof *model);
    if (!model) goto nomem;
    model->features = dp_calloc(cfg.n_in, sizeof(char *));
    if (!model->features) goto nomem;
    model->n_features = cfg.n_in;
    size_t j = 0;
    for (const cJSON *it = feats->child; it; it = it->next, j++) {
        if (!cJSON_IsString(it))
            BAD("%s: __metadata__.feature_names[%zu] is not a string", path, j);
        if (!(model->features[j] = dp_strdup(it->valuestring))) goto nomem;
    }
    st = dp_mlp_create(&cfg, max_micro ? max_micro : 256, &model->mlp);
    if (st != DP_OK) goto fail;

    /* Every tensor the architecture implies, with its exact shape and bytes;
     * nothing else; the offsets tile the data section exactly. */
    int L = dp_mlp_nlayers(model->mlp);
    size_t data_len = size - 8 - (size_t)hlen;
    const unsigned char *data = buf + 8 + hlen;
    float *params = dp_mlp_params(model->mlp);
    span spans[2 * DP_MLP_MAX_LAYERS];
    int n_spans = 0, n_tensors = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__")) n_tensors++;
    if (n_tensors != 2 * L)
        BAD("%s: expected %d tensors for architecture %s, found %d", path, 2 * L,
            cJSON_GetObjectItemCaseSensitive(meta, "architecture")->valuestring, n_tensors);
    for (int l = 0; l < L; l++) {
        size_t w_off, b_off, n_out, n_in;
        dp_mlp_layer(model->mlp, l, &w_off, &b_off, &n_out, &n_in);
        for (int which = 0; which < 2; which++) {
            char name[32];
            snprintf(name, sizeof name, "%d.%s", 2 * l, which ? "bias" : "weight");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
            if (!cJSON_IsObject(t)) BAD("%s: tensor '%s' is missing", path, name);
            const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
            const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
            const cJSON *of = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
            if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32"))
                BAD("%s: tensor '%s': expected dtype F32, found '%s'", path, name,
                    cJSON_IsString(dt) ? dt->valuestring : "?");
            size_t s0 = 0, s1 = 0, b = 0, e = 0;
            int rank = cJSON_GetArraySize(sh);
            if (!cJSON_IsArray(sh) || rank != (which ? 1 : 2) ||
                !as_size(cJSON_GetArrayItem(sh, 0), &s0) ||
                (!which && !as_size(cJSON_GetArrayItem(sh, 1), &s1)) || s0 != n_out ||
                (!which && s1 != n_in)) {
                if (which) BAD("%s: tensor '%s': expected shape [%zu]", path, name, n_out);
                BAD("%s: tensor '%s': expected shape [%zu, %zu]", path, name, n_out, n_in);
            }
            if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
                !as_size(cJSON_GetArrayItem(of, 0), &b) || !as_size(cJSON_GetArrayItem(of, 1), &e))
                BAD("%s: tensor '%s': malformed data_offsets", path, name);
            size_t count = which ? n_out : n_out * n_in;
            if (e < b || e - b != count * 4 || e > data_len)
                BAD("%s: tensor '%s': data_offsets [%zu, %zu] do not hold %zu floats within the "
                    "%zu data bytes (truncated or corrupt)",
                    path, name, b, e, count, data_len);
            float *dst = params + (which ? b_off : w_off);
            memcpy(dst, data + b, count * 4);
            for (size_t i = 0; i < count; i++)
                if (!isfinite(dst[i]))
                    BAD("%s: tensor '%s': element %zu is not finite", path, name, i);
            spans[n_spans++] = (span){b, e};
        }
    }
    qsort(spans, (size_t)n_spans, sizeof(span), span_cmp);
    size_t pos = 0;
    for (int i = 0; i < n_spans; i++) {
        if (spans[i].begin != pos)
            BAD("%s: tensor data overlaps or leaves a gap at byte %zu", path, pos);
        pos = spans[i].end;
    }
    if (pos != data_len)
        BAD("%s: %zu bytes of data after the last tensor (corrupt file)", path, data_len - pos);
    cJSON_DetachItemViaPointer(root, (cJSON *)meta);
    model->meta = (cJSON *)meta;
    cJSON_Delete(root);
    cJSON_Delete(arch);
    cJSON_Delete(feats);
    dp_free(buf);
    *out = model;
    return DP_OK;
nomem:
    st = dp_error(DP_E_NOMEM, "%s: out of memory reading the model", path);
fail:
    dp_model_destroy(model);
    cJSON_Delete(root);
    cJSON_Delete(arch);
    cJSON_Delete(feats);
    dp_free(buf);
    return st;
}
