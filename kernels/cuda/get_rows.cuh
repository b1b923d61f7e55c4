/* Embedding lookup and dtype conversions on the device. */
#ifndef PD_CUDA_GET_ROWS_CUH
#define PD_CUDA_GET_ROWS_CUH

#include "cuda/common.cuh"

/* out (n, dim) f32 = rows ids (n, a device array) of table (rows, dim) in dtype. */
pd_status_t pd_cuda_get_rows(cudaStream_t stream, const void *table, pd_cuda_dtype_t dtype,
                             const int32_t *ids, float *out, uint32_t n, uint32_t dim);

/* dst (n) in dtype = src (n) f32, rounded to nearest even; for weights on upload and for
 * the activations a 16-bit GEMM reads. */
pd_status_t pd_cuda_convert(cudaStream_t stream, const float *src, void *dst, pd_cuda_dtype_t dtype,
                            size_t n);

#endif
