/* RMSNorm: one block per row. The sum of squares is reduced in a fixed order (thread t
 * sums elements t, t + 256, ... with fused multiply-add, then a tree over the threads), so
 * a row's result depends on nothing but the row. */
#include "cuda/rmsnorm.cuh"

#define PD_CUDA_RMSNORM_THREADS 256

__global__ void pd_cuda_rmsnorm_kernel(const float *x, const float *weight, float *y, uint32_t dim,
                                       float eps)
{
    __shared__ float part[PD_CUDA_RMSNORM_THREADS];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (uint32_t i = threadIdx.x; i < dim; i += PD_CUDA_RMSNORM_THREADS)
        ss = fmaf(xr[i], xr[i], ss);
    part[threadIdx.x] = ss;
    __syncthreads();
    for (uint32_t s = PD_CUDA_RMSNORM_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            part[threadIdx.x] = __fadd_rn(part[threadIdx.x], part[threadIdx.x + s]);
        __syncthreads();
    }
    /* as the CPU: 1 / sqrt(ss / dim + eps), both correctly rounded here */
    const float scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(part[0], (float)dim), eps)));
    for (uint32_t i = threadIdx.x; i < dim; i += PD_CUDA_RMSNORM_THREADS)
        yr[i] = __fmul_rn(__fmul_rn(xr[i], scale), weight[i]);
}

pd_status_t pd_cuda_rmsnorm(cudaStream_t stream, const float *x, const float *weight, float *y,
                            uint32_t n, uint32_t dim, float eps)
{
    if (n == 0)
        return PD_OK;
    pd_cuda_rmsnorm_kernel<<<n, PD_CUDA_RMSNORM_THREADS, 0, stream>>>(x, weight, y, dim, eps);
    return pd_cuda_launched("rmsnorm");
}
