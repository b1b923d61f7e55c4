/* Paged attention on the device: prefill (many rows per sequence) and decode (one row per
 * sequence) through the same two kernels, so that a query's output never depends on
 * which kind of step computed it. */
#ifndef PD_CUDA_ATTENTION_CUH
#define PD_CUDA_ATTENTION_CUH

#include "cuda/common.cuh"

/* The step's attention: q (n_rows, n_heads, hd) over pool_layer (n_blocks, 2, B,
 * n_kv_heads, hd), work items, flat block tables and partial offsets from the device copy
 * of the step plan; partials (n_parts * n_heads * (hd + 2) floats) is scratch; out
 * (n_rows, n_heads, hd). */
pd_status_t pd_cuda_attention(cudaStream_t stream, const float *q, const float *pool_layer,
                              const pd_kv_layout_t *layout, uint32_t n_heads,
                              const pd_cuda_attn_item_t *items, uint32_t n_items,
                              const uint32_t *tables, const uint32_t *part, uint32_t n_rows,
                              uint32_t n_parts, float *partials, float *out);

#endif
