/*
 * test_cuda_stub.c: the CUDA backend's entry points on a machine without a
 * usable GPU (CPU CI): device discovery reports a clear error (DP_E_CUDA "no
 * CUDA device" in a CUDA build, DP_E_UNSUPPORTED "this build has no CUDA
 * backend" in a build without the toolkit) instead of crashing or hanging,
 * and the constructors leave NULL handles that the destructors accept.
 * On a machine that does have a GPU the same calls must simply succeed.
 */
#include <criterion/criterion.h>
#include <string.h>
#include "core/dp_internal.h"
#include "cuda/dp_cuda.h"

Test(cuda_stub, device_count_reports_a_clear_error_or_a_real_device) {
    int n = -1;
    dp_status s = dp_cuda_device_count(&n);
    if (s == DP_OK) {
        cr_assert_gt(n, 0, "success must mean at least one device");
        return;
    }
    cr_assert_eq(n, 0, "a failed count must report 0 devices, found %d", n);
    /* the library knows whether it was built with the backend (a define of
     * the library's own sources, so ask it rather than the preprocessor) */
    if (strstr(dp_build_config(), "CUDA: yes")) {
        cr_assert_eq(s, DP_E_CUDA, "status %d: %s", (int)s, dp_last_error());
        cr_assert(strstr(dp_last_error(), "no CUDA device") != NULL, "message: %s",
                  dp_last_error());
    } else {
        cr_assert_eq(s, DP_E_UNSUPPORTED, "status %d: %s", (int)s, dp_last_error());
        cr_assert(strstr(dp_last_error(), "this build has no CUDA backend") != NULL, "message: %s",
                  dp_last_error());
        cr_assert(strstr(dp_last_error(), "nvcc") != NULL, "the message says how to get it");
    }
    cr_assert(strchr(dp_last_error(), '\n') == NULL, "one line: %s", dp_last_error());
}

Test(cuda_stub, context_creation_fails_cleanly_without_a_device) {
    int n = 0;
    if (dp_cuda_device_count(&n) == DP_OK) {
        dp_cuda_ctx *ctx = NULL;
        cr_assert_eq(dp_cuda_ctx_create(0, &ctx), DP_OK, "%s", dp_last_error());
        dp_cuda_ctx_destroy(ctx);
        return;
    }
    dp_cuda_ctx *ctx = (dp_cuda_ctx *)&n; /* poison: must be overwritten with NULL */
    dp_status s = dp_cuda_ctx_create(0, &ctx);
    cr_assert(s == DP_E_CUDA || s == DP_E_UNSUPPORTED, "status %d", (int)s);
    cr_assert_null(ctx);
    cr_assert_neq(dp_last_error()[0], '\0');
    int dev = -1;
    s = dp_cuda_device_for_rank(3, &dev);
    cr_assert(s == DP_E_CUDA || s == DP_E_UNSUPPORTED, "status %d", (int)s);
    dp_cuda_device_info info;
    s = dp_cuda_device_query(0, &info);
    cr_assert(s == DP_E_CUDA || s == DP_E_UNSUPPORTED, "status %d", (int)s);
}

Test(cuda_stub, destructors_accept_null) {
    dp_cuda_ctx_destroy(NULL);
    dp_cuda_data_destroy(NULL);
    dp_mlp_destroy_cuda(NULL);
    dp_optim_destroy_cuda(NULL);
    dp_nccl_destroy_cuda(NULL);
}
