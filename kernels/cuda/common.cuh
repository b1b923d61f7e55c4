/* Shared by the CUDA backend's .cu files: the C headers, element types and the error
 * check every launch goes through. */
#ifndef PD_CUDA_COMMON_CUH
#define PD_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "cuda/plan.h"
#include "pd/log.h"
#include "pd/ops.h"
}

/* Element types of weights on the device: pd_dtype_t's F32, F16 and BF16 (int8 stacks are
 * widened to bf16 on upload; activations are always f32). */
typedef pd_dtype_t pd_cuda_dtype_t;
#define PD_CUDA_F32  PD_DTYPE_F32
#define PD_CUDA_F16  PD_DTYPE_F16
#define PD_CUDA_BF16 PD_DTYPE_BF16

static inline size_t pd_cuda_dtype_size(pd_cuda_dtype_t t)
{
    return t == PD_CUDA_F32 ? 4 : 2;
}

/* Convert a CUDA error once, where it is first seen, and log it with the call site. */
static inline pd_status_t pd_cuda_check(cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return PD_OK;
    pd_log_error("cuda: %s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
    return err == cudaErrorMemoryAllocation ? PD_ERR_NO_MEMORY : PD_ERR_INTERNAL;
}

/* The status of the launch just made (configuration errors show at once; faults inside
 * the kernel show at the next synchronisation). */
static inline pd_status_t pd_cuda_launched(const char *kernel)
{
    return pd_cuda_check(cudaGetLastError(), kernel);
}

/* Widen one weight element to f32. */
__device__ __forceinline__ float pd_cuda_to_f32(float v)
{
    return v;
}
__device__ __forceinline__ float pd_cuda_to_f32(__half v)
{
    return __half2float(v);
}
__device__ __forceinline__ float pd_cuda_to_f32(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

#endif
