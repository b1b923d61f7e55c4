/* Matrix products y (n, out) (+)= x (n, in) W^T on the device: cuBLASLt with one algorithm
 * pinned per weight shape, or the plain tiled kernel. */
#ifndef PD_CUDA_GEMM_CUH
#define PD_CUDA_GEMM_CUH

#include "cuda/common.cuh"

#include <cublasLt.h>

typedef struct pd_cuda_gemm pd_cuda_gemm_t;

/* One weight matrix on the device: (out, in) row-major in dtype. */
typedef struct pd_cuda_mat {
    const void *data;
    pd_cuda_dtype_t dtype;
    uint32_t out;
    uint32_t in;
} pd_cuda_mat_t;

/* Which implementation runs the products. */
typedef enum pd_cuda_gemm_impl {
    PD_CUDA_GEMM_CUBLASLT = 0, /* cuBLASLt, one algorithm per shape for every n */
    PD_CUDA_GEMM_TILED = 1     /* the plain kernel of gemm.cu (f32 fused multiply-add) */
} pd_cuda_gemm_impl_t;

/* Create the GEMM context: a cuBLASLt handle and its workspace; max_n is the most rows
 * a product will have (activations of 16-bit weights are converted into a scratch of
 * max_n * max_in elements, grown on demand). */
pd_status_t pd_cuda_gemm_create(pd_cuda_gemm_impl_t impl, pd_cuda_gemm_t **gemm_p);
void pd_cuda_gemm_destroy(pd_cuda_gemm_t **gemm_p);

/* Choose and pin the algorithm of a weight shape (dtype, out, in) for products of 1 ..
 * max_n rows: cuBLASLt's heuristic for max_n rows, split-K off and no reduction scheme,
 * checked for 1 and max_n rows. A shape no such algorithm serves falls back to the tiled
 * kernel (logged), so every n of a shape runs the same code. */
pd_status_t pd_cuda_gemm_plan(pd_cuda_gemm_t *gemm, pd_cuda_dtype_t dtype, uint32_t out,
                              uint32_t in, uint32_t max_n);

/* y (n, out) = x (n, in) W^T, or y += when accumulate. x and y are f32 device memory. */
pd_status_t pd_cuda_gemm_run(pd_cuda_gemm_t *gemm, cudaStream_t stream, const pd_cuda_mat_t *w,
                             const float *x, float *y, uint32_t n, bool accumulate);

/* The implementation a planned shape runs (for tests and pd-kbench). */
pd_cuda_gemm_impl_t pd_cuda_gemm_shape_impl(const pd_cuda_gemm_t *gemm, pd_cuda_dtype_t dtype,
                                            uint32_t out, uint32_t in);

#endif
