/* RoPE + KV append: one block per token row. Each thread rotates pairs of q and k with the
 * same two products and one sum as the CPU (no fused multiply-add, so the rotated values
 * are the CPU's bits), then copies the row's K and V into its pool slot. */
#include "cuda/rope.cuh"

#define PD_CUDA_ROPE_THREADS 128

__global__ void pd_cuda_rope_store_kernel(float *q, float *k, const float *v, const uint32_t *pos,
                                          const uint64_t *kv_off, const float *cs, uint32_t n_heads,
                                          uint32_t n_kv_heads, uint32_t hd, int pair_style,
                                          uint32_t block_tokens, float *pool_layer)
{
    const uint32_t row = blockIdx.x, half = hd / 2;
    const float *c = cs + (size_t)pos[row] * hd;
    const float *s = c + half;
    const size_t kvd = (size_t)n_kv_heads * hd;
    float *qr = q + (size_t)row * n_heads * hd;
    float *kr = k + (size_t)row * kvd;
    const uint32_t n_pairs = (n_heads + n_kv_heads) * half;
    for (uint32_t p = threadIdx.x; p < n_pairs; p += PD_CUDA_ROPE_THREADS) {
        const uint32_t h = p / half, i = p % half;
        float *x = h < n_heads ? qr + (size_t)h * hd : kr + (size_t)(h - n_heads) * hd;
        const uint32_t ia = pair_style ? 2 * i : i, ib = pair_style ? 2 * i + 1 : half + i;
        const float a = x[ia], b = x[ib];
        x[ia] = __fsub_rn(__fmul_rn(a, c[i]), __fmul_rn(b, s[i]));
        x[ib] = __fadd_rn(__fmul_rn(a, s[i]), __fmul_rn(b, c[i]));
    }
    __syncthreads(); /* the rotated k is read back below by other threads */
    float *kd = pool_layer + kv_off[row];
    float *vd = kd + (size_t)block_tokens * kvd;
    const float *vr = v + (size_t)row * kvd;
    for (uint32_t i = threadIdx.x; i < kvd; i += PD_CUDA_ROPE_THREADS) {
        kd[i] = kr[i];
        vd[i] = vr[i];
    }
}

pd_status_t pd_cuda_rope_store(cudaStream_t stream, float *q, float *k, const float *v,
                               const uint32_t *pos, const uint64_t *kv_off, uint32_t n,
                               const float *cs, uint32_t n_heads, uint32_t n_kv_heads, uint32_t hd,
                               pd_rope_style_t style, uint32_t block_tokens, float *pool_layer)
{
    if (n == 0)
        return PD_OK;
    pd_cuda_rope_store_kernel<<<n, PD_CUDA_ROPE_THREADS, 0, stream>>>(
        q, k, v, pos, kv_off, cs, n_heads, n_kv_heads, hd, style == PD_ROPE_PAIR ? 1 : 0,
        block_tokens, pool_layer);
    return pd_cuda_launched("rope_store");
}
