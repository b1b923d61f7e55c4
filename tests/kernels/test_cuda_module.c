/* The CUDA module (kernels/cuda/module.h): programs link neither the CUDA runtime nor
 * cuBLASLt; the module is opened the first time CUDA is asked for, and a missing or foreign
 * module is a plain "no CUDA" answer, not a crash. Runs on every machine: these tests
 * need the module (when the build has one) but no device. */
#include "pd/ops.h"
#include "pd/status.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether any mapping of this process names a file containing `name`. */
static bool mapped(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

Test(cuda_module, nothing_of_cuda_is_mapped_until_cuda_is_asked_for)
{
    cr_assert_not(mapped("libcudart"), "the CUDA runtime is linked into the program");
    cr_assert_not(mapped("libcublas"), "cuBLAS is linked into the program");
    cr_assert_not(mapped("libpdkv-cuda"));

    char why[512] = "";
    const int n = pd_cuda_device_count(why, sizeof(why));
#ifdef PD_CUDA_MODULE_BUILT
    /* Asking opens the module, and with it the runtime, whether or not a device answers. */
    cr_assert(mapped("libpdkv-cuda.so"), "the module was not opened: %s", why);
    cr_assert(mapped("libcudart"));
    cr_assert(n > 0 || strstr(why, "no CUDA device") != NULL, "%s", why);
#else
    cr_assert_eq(n, 0);
    cr_assert(strstr(why, "this build has no CUDA module") != NULL, "%s", why);
    cr_assert_not(mapped("libcudart"));
#endif
}

Test(cuda_module, a_missing_module_is_a_clear_error_on_every_entry_point)
{
    setenv("PD_CUDA_MODULE", "/nonexistent/libpdkv-cuda.so", 1);
    char why[512] = "";
    cr_assert_eq(pd_cuda_device_count(why, sizeof(why)), 0);
    cr_assert(strstr(why, "/nonexistent/libpdkv-cuda.so") != NULL, "%s", why);
    cr_assert(strncmp(why, "no CUDA", 7) == 0, "%s", why);

    pd_model_config_t c;
    memset(&c, 0, sizeof(c));
    c.head_dim = 64;
    const pd_backend_cuda_opts_t o = {PD_CUDA_WEIGHTS_MODEL, false};
    pd_backend_t be = {NULL, NULL};
    cr_assert_eq(pd_backend_cuda_create(&o, &c, &be), PD_ERR_UNSUPPORTED);
    cr_assert_null(be.ops);
    cr_assert_not(mapped("libcudart"));
}

Test(cuda_module, a_library_that_is_not_the_module_is_refused)
{
    /* A real shared library without the module's symbol: the loader closes it again. */
    setenv("PD_CUDA_MODULE", "libz.so.1", 1);
    char why[512] = "";
    cr_assert_eq(pd_cuda_device_count(why, sizeof(why)), 0);
    cr_assert(strstr(why, "is not a CUDA module") != NULL, "%s", why);
}
