/* RMSNorm on the device. */
#ifndef PD_CUDA_RMSNORM_CUH
#define PD_CUDA_RMSNORM_CUH

#include "cuda/common.cuh"

/* y (n, dim) = x / sqrt(mean(x^2) + eps) * weight (dim), row by row; y may equal x. */
pd_status_t pd_cuda_rmsnorm(cudaStream_t stream, const float *x, const float *weight, float *y,
                            uint32_t n, uint32_t dim, float eps);

#endif
