/* The CUDA backend's entry points in a build without CUDA: the slot answers plainly. */
#include "pd/log.h"
#include "pd/ops.h"

#include <stdio.h>

int pd_cuda_device_count(char *why, size_t why_bytes)
{
    if (why != NULL && why_bytes > 0)
        snprintf(why, why_bytes,
                 "this build has no CUDA (configured without a CUDA toolkit or "
                 "with -DPD_WITH_CUDA=OFF)");
    return 0;
}

pd_status_t pd_backend_cuda_create(const pd_backend_cuda_opts_t *opts,
                                   const pd_model_config_t *config, pd_backend_t *backend_p)
{
    (void)opts;
    (void)config;
    (void)backend_p;
    pd_log_error("cuda backend: this build has no CUDA (reconfigure with a CUDA toolkit and "
                 "-DPD_WITH_CUDA=ON)");
    return PD_ERR_UNSUPPORTED;
}

#include "cuda/bench.h"

pd_status_t pd_cuda_bench_copy(size_t bytes, uint32_t runs, double *rate_p)
{
    (void)bytes;
    (void)runs;
    (void)rate_p;
    return PD_ERR_UNSUPPORTED;
}

pd_status_t pd_cuda_bench_attention(pd_cuda_attn_bench_t *b)
{
    (void)b;
    return PD_ERR_UNSUPPORTED;
}
