/* RoPE and the KV append into the paged pool, on the device. */
#ifndef PD_CUDA_ROPE_CUH
#define PD_CUDA_ROPE_CUH

#include "cuda/common.cuh"

/* Rotate q (n, n_heads, hd) and k (n, n_kv_heads, hd) in place at positions pos (n), with
 * the rotation table cs (max_pos, hd) of pd_cpu_rope_table, in the given pairing; then
 * store each row's k and v (n, n_kv_heads, hd) into pool_layer (n_blocks, 2, B,
 * n_kv_heads, hd) at float offset kv_off[row] (K) and kv_off[row] + B * n_kv_heads * hd
 * (V). pos and kv_off are device arrays from the step plan. */
pd_status_t pd_cuda_rope_store(cudaStream_t stream, float *q, float *k, const float *v,
                               const uint32_t *pos, const uint64_t *kv_off, uint32_t n,
                               const float *cs, uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                               pd_rope_style_t style, uint32_t block_tokens, float *pool_layer);

#endif
