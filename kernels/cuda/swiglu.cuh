/* SwiGLU on the device. */
#ifndef PD_CUDA_SWIGLU_CUH
#define PD_CUDA_SWIGLU_CUH

#include "cuda/common.cuh"

/* out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)); out may alias gate or up. */
pd_status_t pd_cuda_swiglu(cudaStream_t stream, const float *gate, const float *up, float *out,
                           size_t n);

#endif
