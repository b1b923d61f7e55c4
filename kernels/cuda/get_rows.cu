/* Row gather and f32 -> f16/bf16 conversion: element-wise, so a row never depends on
 * another. */
#include "cuda/get_rows.cuh"

template <typename T>
__global__ void pd_cuda_get_rows_kernel(const T *table, const int32_t *ids, float *out,
                                        uint32_t dim)
{
    const T *src = table + (size_t)ids[blockIdx.x] * dim;
    float *dst = out + (size_t)blockIdx.x * dim;
    for (uint32_t i = threadIdx.x; i < dim; i += blockDim.x)
        dst[i] = pd_cuda_to_f32(src[i]);
}

pd_status_t pd_cuda_get_rows(cudaStream_t stream, const void *table, pd_cuda_dtype_t dtype,
                             const int32_t *ids, float *out, uint32_t n, uint32_t dim)
{
    if (n == 0)
        return PD_OK;
    switch (dtype) {
    case PD_CUDA_F32:
        pd_cuda_get_rows_kernel<<<n, 256, 0, stream>>>((const float *)table, ids, out, dim);
        break;
    case PD_CUDA_F16:
        pd_cuda_get_rows_kernel<<<n, 256, 0, stream>>>((const __half *)table, ids, out, dim);
        break;
    case PD_CUDA_BF16:
        pd_cuda_get_rows_kernel<<<n, 256, 0, stream>>>((const __nv_bfloat16 *)table, ids, out, dim);
        break;
    default:
        return PD_ERR_UNSUPPORTED;
    }
    return pd_cuda_launched("get_rows");
}

__global__ void pd_cuda_to_f16_kernel(const float *src, __half *dst, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

__global__ void pd_cuda_to_bf16_kernel(const float *src, __nv_bfloat16 *dst, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

pd_status_t pd_cuda_convert(cudaStream_t stream, const float *src, void *dst, pd_cuda_dtype_t dtype,
                            size_t n)
{
    if (n == 0)
        return PD_OK;
    uint32_t blocks = pd_cuda_grid_1d(n, 256);
    blocks = blocks > 65535 ? 65535 : blocks;
    switch (dtype) {
    case PD_CUDA_F32:
        return pd_cuda_check(
            cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream),
            "convert copy");
    case PD_CUDA_F16:
        pd_cuda_to_f16_kernel<<<blocks, 256, 0, stream>>>(src, (__half *)dst, n);
        break;
    case PD_CUDA_BF16:
        pd_cuda_to_bf16_kernel<<<blocks, 256, 0, stream>>>(src, (__nv_bfloat16 *)dst, n);
        break;
    default:
        return PD_ERR_UNSUPPORTED;
    }
    return pd_cuda_launched("convert");
}
