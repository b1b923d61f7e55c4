/* The module's one export: the table the programs call the CUDA backend through
 * (module.h). Every other symbol of libpdkv-cuda.so is hidden. */
#include "cuda/common.cuh"

extern "C" {
#include "cuda/module.h"
}

static const pd_cuda_module_ops_t pd_cuda_module_table = {
    PD_CUDA_MODULE_ABI,
    pd_cuda_mod_device_count,
    pd_cuda_mod_backend_create,
    pd_cuda_mod_bench_copy,
    pd_cuda_mod_bench_attention,
    pd_cuda_mod_bench_ipc,
    pd_cuda_mod_bench_ipc_peer,
    pd_cuda_mod_ipc_export,
    pd_cuda_mod_ipc_open,
    pd_cuda_mod_ipc_close,
    pd_cuda_mod_ipc_stream_create,
    pd_cuda_mod_ipc_stream_destroy,
    pd_cuda_mod_ipc_copy_async,
    pd_cuda_mod_ipc_event_record,
    pd_cuda_mod_ipc_event_query,
    pd_cuda_mod_host_register,
    pd_cuda_mod_host_unregister,
    pd_cuda_mod_dev_alloc,
    pd_cuda_mod_dev_free,
    pd_cuda_mod_dev_fill,
    pd_cuda_mod_dev_to_host,
};

extern "C" __attribute__((visibility("default"))) const pd_cuda_module_ops_t *
pd_cuda_module_ops(void)
{
    return &pd_cuda_module_table;
}
