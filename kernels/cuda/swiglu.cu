/* SwiGLU, element by element (expf, not the fast intrinsic: the result must not depend on
 * a compiler flag). */
#include "cuda/swiglu.cuh"

__global__ void pd_cuda_swiglu_kernel(const float *gate, const float *up, float *out, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
    }
}

pd_status_t pd_cuda_swiglu(cudaStream_t stream, const float *gate, const float *up, float *out,
                           size_t n)
{
    if (n == 0)
        return PD_OK;
    const uint32_t threads = 256;
    uint32_t blocks = pd_cuda_grid_1d(n, threads);
    blocks = blocks > 65535 ? 65535 : blocks; /* grid-stride beyond that */
    pd_cuda_swiglu_kernel<<<blocks, threads, 0, stream>>>(gate, up, out, n);
    return pd_cuda_launched("swiglu");
}
