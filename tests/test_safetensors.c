/*
 * test_safetensors.c: model.safetensors. An independent reader
 * (tests/safetensors_read.py, standard library only) sees PyTorch
 * nn.Sequential names and shapes and every parameter bit for bit; our reader
 * round-trips; truncated, corrupt and foreign files are refused clearly.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <sys/wait.h>
#include <string.h>
#include "dpsgd/dpsgd.h"
#include "dpsgd/model.h"
#include "testutil.h"

static char *dir, path[4300];
static dp_mlp *m;
static const char *feats[5] = {"AGEP", "SEX=1", "SEX=2", "SCHL=21", "WKHP"};

static void setup(void) {
    dir = tu_tempdir();
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dp_mlp_config c = {
        .n_in = 5, .n_hidden = 2, .hidden = {7, 3}, .n_classes = 3, .activation = DP_ACT_TANH};
    cr_assert_eq(dp_mlp_create(&c, 16, &m), DP_OK, "%s", dp_last_error());
    uint64_t r = tu_seed();
    dp_mlp_init(m, r);
    /* Values that a lossy writer would change: exact binary fractions,
     * subnormals, extremes of float32. */
    float *p = dp_mlp_params(m);
    p[0] = 1.0f / 3.0f;
    p[1] = 1e-40f;
    p[2] = -3.4028235e38f;
    cr_assert_eq(dp_model_save(path, m, feats, "abc123", "{\"epsilon\": 1.5}"), DP_OK, "%s",
                 dp_last_error());
}
static void teardown(void) {
    dp_mlp_destroy(m);
    tu_rmrf(dir);
    free(dir);
}
TestSuite(safetensors, .init = setup, .fini = teardown);

static cJSON *python_read(const char *file, int *rc) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/safetensors_read.py' '%s' 2>/dev/null",
             tu_source_dir(), file);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0)
        n += r;
    buf[n] = '\0';
    int st = pclose(f);
    *rc = WEXITSTATUS(st);
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    return o;
}

Test(safetensors, independent_reader_sees_sequential_names_shapes_and_exact_values) {
    int rc;
    cJSON *o = python_read(path, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_not_null(o);
    const cJSON *t = cJSON_GetObjectItem(o, "tensors");
    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"};
    size_t shapes[6][2] = {{7, 5}, {7, 0}, {3, 7}, {3, 0}, {3, 3}, {3, 0}};
    cr_assert_eq(cJSON_GetArraySize(t), 6);
    const float *p = dp_mlp_params(m);
    size_t k = 0;
    for (int i = 0; i < 6; i++) {
        const cJSON *x = cJSON_GetObjectItem(t, names[i]);
        cr_assert_not_null(x, "tensor %s", names[i]);
        cr_assert_str_eq(cJSON_GetObjectItem(x, "dtype")->valuestring, "F32");
        const cJSON *sh = cJSON_GetObjectItem(x, "shape");
        cr_assert_eq(cJSON_GetArraySize(sh), shapes[i][1] ? 2 : 1);
        cr_assert_eq((size_t)cJSON_GetArrayItem(sh, 0)->valuedouble, shapes[i][0]);
        if (shapes[i][1])
            cr_assert_eq((size_t)cJSON_GetArrayItem(sh, 1)->valuedouble, shapes[i][1]);
        /* state_dict order = our flat layout: values in sequence, bit for bit */
        for (const cJSON *v = cJSON_GetObjectItem(x, "values")->child; v; v = v->next, k++) {
            float got = (float)v->valuedouble;
            cr_assert_eq(memcmp(&got, &p[k], 4), 0, "%s: value %zu: %.9g vs %.9g", names[i], k, got,
                         p[k]);
        }
    }
    cr_assert_eq(k, dp_mlp_nparams(m));
    const cJSON *md = cJSON_GetObjectItem(o, "metadata");
    cr_assert_str_eq(cJSON_GetObjectItem(md, "architecture")->valuestring, "[5,7,3,3]");
    cr_assert_str_eq(cJSON_GetObjectItem(md, "activation")->valuestring, "tanh");
    cr_assert_str_eq(cJSON_GetObjectItem(md, "schema_hash")->valuestring, "abc123");
    cr_assert_str_eq(cJSON_GetObjectItem(md, "classes")->valuestring, "3");
    cJSON *fn = cJSON_Parse(cJSON_GetObjectItem(md, "feature_names")->valuestring);
    cr_assert_eq(cJSON_GetArraySize(fn), 5);
    cr_assert_str_eq(cJSON_GetArrayItem(fn, 3)->valuestring, "SCHL=21");
    cJSON_Delete(fn);
    cJSON_Delete(o);
}

Test(safetensors, numpy_reads_the_data_section_as_the_parameter_vector) {
    /* A second independent check: numpy.frombuffer over the bytes after the header. */
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy,struct,sys;d=open(sys.argv[1],'rb').read();"
             "n=struct.unpack('<Q',d[:8])[0];a=numpy.frombuffer(d[8+n:],dtype='<f4');"
             "print(a.size, repr(float(a.astype('f8').sum())))\" '%s'",
             path);
    FILE *f = popen(cmd, "r");
    size_t count = 0;
    double sum = 0;
    cr_assert_eq(fscanf(f, "%zu %lf", &count, &sum), 2);
    pclose(f);
    cr_assert_eq(count, dp_mlp_nparams(m));
    double want = 0;
    const float *p = dp_mlp_params(m);
    for (size_t i = 0; i < count; i++)
        want += p[i];
    cr_assert(fabs(sum - want) <= 1e-6 * fabs(want) + 1e-30, "%g vs %g", sum, want);
}

Test(safetensors, reader_round_trips_parameters_and_metadata) {
    dp_model *md;
    cr_assert_eq(dp_model_load(path, 8, &md), DP_OK, "%s", dp_last_error());
    dp_mlp *b = dp_model_mlp(md);
    cr_assert_eq(dp_mlp_nparams(b), dp_mlp_nparams(m));
    cr_assert_eq(memcmp(dp_mlp_params(b), dp_mlp_params(m), 4 * dp_mlp_nparams(m)), 0);
    cr_assert_eq(dp_mlp_get_config(b)->activation, DP_ACT_TANH);
    cr_assert_eq(dp_mlp_get_config(b)->hidden[1], 3);
    cr_assert_str_eq(dp_model_schema_hash(md), "abc123");
    cr_assert_eq(dp_model_n_features(md), 5);
    cr_assert_str_eq(dp_model_feature(md, 4), "WKHP");
    cr_assert_str_eq(dp_model_meta(md, "privacy"), "{\"epsilon\": 1.5}");
    cr_assert_null(dp_model_meta(md, "nothing"));
    dp_model_destroy(md);
}

static void expect_refused(const char *file, const char *phrase) {
    dp_model *md = NULL;
    dp_status st = dp_model_load(file, 8, &md);
    cr_assert_eq(st, DP_E_FORMAT, "status %d (%s)", st, dp_last_error());
    cr_assert_null(md);
    cr_assert(strstr(dp_last_error(), phrase), "'%s' lacks '%s'", dp_last_error(), phrase);
}

Test(safetensors, truncated_files_are_refused) {
    size_t len;
    char *bytes = tu_read_file(path, &len);
    char cut[4400];
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    size_t points[] = {0, 4, 8, 20, len / 2, len - 4, len - 1};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        tu_write_file(cut, bytes, points[i]);
        dp_model *md = NULL;
        cr_assert_eq(dp_model_load(cut, 8, &md), DP_E_FORMAT, "cut at %zu", points[i]);
        cr_assert(strstr(dp_last_error(), cut), "%s", dp_last_error());
    }
    free(bytes);
}

/* Rewrite the header: replace `from` by `to` (same length keeps offsets). */
static void edit_header(const char *from, const char *to, const char *out) {
    size_t len;
    char *bytes = tu_read_file(path, &len);
    char *at = memmem(bytes, len, from, strlen(from));
    cr_assert_not_null(at, "'%s' in the header", from);
    memcpy(at, to, strlen(to));
    tu_write_file(out, bytes, len);
    free(bytes);
}

Test(safetensors, corrupt_headers_are_refused_with_the_reason) {
    char bad[4400];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    edit_header("\"F32\"", "\"F16\"", bad);
    expect_refused(bad, "expected dtype F32");
    edit_header("\"2.weight\"", "\"2.weigXt\"", bad);
    expect_refused(bad, "'2.weight' is missing");
    edit_header("[3,7]", "[7,3]", bad);
    expect_refused(bad, "expected shape [3, 7]");
    edit_header("\"tanh\"", "\"gelu\"", bad);
    expect_refused(bad, "expected relu or tanh");
    edit_header("{\"__metadata__\"", "[\"__metadata__\"", bad);
    expect_refused(bad, "not a JSON object");
    /* a NaN among the parameters */
    size_t len;
    char *bytes = tu_read_file(path, &len);
    float nan = NAN;
    memcpy(bytes + len - 4, &nan, 4);
    tu_write_file(bad, bytes, len);
    expect_refused(bad, "not finite");
    free(bytes);
}

Test(safetensors, foreign_files_are_refused) {
    char f[4400];
    snprintf(f, sizeof f, "%s/foreign", dir);
    tu_write_file(f, "hello, this is not a model at all", 33);
    expect_refused(f, "not a safetensors file");
    /* a valid safetensors file of someone else (no dpsgd metadata) */
    const char hdr[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ";
    unsigned char buf[128];
    uint64_t n = sizeof hdr - 1;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, hdr, n);
    memset(buf + 8 + n, 0, 4);
    tu_write_file(f, buf, 8 + n + 4);
    int rc;
    cJSON *o = python_read(f, &rc);
    cr_assert_eq(rc, 0, "the hand-made file is valid safetensors");
    cJSON_Delete(o);
    expect_refused(f, "not a dpsgd model");
}
