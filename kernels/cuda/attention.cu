/* Paged attention in two kernels (plan.h explains the numerics).
 *
 * pd_cuda_attn_partial: one block per work item (up to 16 queries of one KV head over
 * one chunk of 256 positions). The chunk's K rows are read once for all the item's
 * queries: lanes_per_key lanes split a key's dot product into float4 pieces, fused
 * multiply-add in element order, then a butterfly sum; the scores stay in shared memory;
 * each query's maximum and exp-sum are warp reductions in a fixed order; P V reads each V
 * row once and accumulates every query's column in position order.
 *
 * pd_cuda_attn_combine: one block per row; each (head, column) combines its chunks in
 * chunk order. */
#include "cuda/attention.cuh"

#include <math.h>

#define PD_CUDA_ATTN_UNROLL 4

template <int HD> struct pd_cuda_attn_cfg {
    static constexpr int LANES = HD / 4 < 32 ? HD / 4 : 32; /* lanes per key */
    static constexpr int VPL = HD / 4 / LANES;              /* float4 per lane per key */
    static constexpr int KPW = 32 / LANES;                  /* keys per warp at once */
    static constexpr int COLS = HD / 4;                     /* float4 columns of a head */
    static constexpr int QL = PD_CUDA_ATTN_THREADS / COLS;  /* query lanes in P V */
    static constexpr int QPT = (PD_CUDA_ATTN_MAX_Q + QL - 1) / QL;
};

template <int HD>
__global__ void __launch_bounds__(PD_CUDA_ATTN_THREADS)
    pd_cuda_attn_partial(const float *__restrict__ q, const float *__restrict__ pool_layer,
                         const uint32_t *__restrict__ tables,
                         const pd_cuda_attn_item_t *__restrict__ items,
                         const uint32_t *__restrict__ part, uint32_t n_heads, uint32_t n_kv_heads,
                         uint32_t block_tokens, float scale, float *__restrict__ part_m,
                         float *__restrict__ part_l, float *__restrict__ part_acc)
{
    typedef pd_cuda_attn_cfg<HD> C;
    __shared__ __align__(16) float qs[PD_CUDA_ATTN_MAX_Q][HD];
    __shared__ float sc[PD_CUDA_ATTN_MAX_Q][PD_CUDA_ATTN_CHUNK];
    __shared__ unsigned long long rowoff[PD_CUDA_ATTN_CHUNK]; /* K row of each position */
    __shared__ float qm[PD_CUDA_ATTN_MAX_Q], ql[PD_CUDA_ATTN_MAX_Q];
    __shared__ uint32_t qn[PD_CUDA_ATTN_MAX_Q]; /* valid positions of each query here */

    const pd_cuda_attn_item_t it = items[blockIdx.x];
    const uint32_t tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const uint32_t nqh = it.n_q_heads, n_q = it.n_rows * nqh;
    const uint32_t j0 = it.chunk * PD_CUDA_ATTN_CHUNK;
    const uint32_t ctx_last = it.ctx0 + it.n_rows - 1;
    const uint32_t n_pos = min(PD_CUDA_ATTN_CHUNK, ctx_last - j0);
    const size_t kvd = (size_t)n_kv_heads * HD;
    const size_t blk_floats = 2 * (size_t)block_tokens * kvd;
    const size_t v_skip = (size_t)block_tokens * kvd;

    for (uint32_t i = tid; i < n_q * (HD / 4); i += PD_CUDA_ATTN_THREADS) {
        const uint32_t qi = i / (HD / 4), c = i % (HD / 4);
        const uint32_t row = it.row0 + qi / nqh, head = it.head0 + qi % nqh;
        const float4 v =
            reinterpret_cast<const float4 *>(q + ((size_t)row * n_heads + head) * HD)[c];
        reinterpret_cast<float4 *>(qs[qi])[c] = v;
    }
    for (uint32_t i = tid; i < n_pos; i += PD_CUDA_ATTN_THREADS) {
        const uint32_t p = j0 + i;
        rowoff[i] = (unsigned long long)tables[it.table_off + p / block_tokens] * blk_floats +
                    (size_t)(p % block_tokens) * kvd + (size_t)it.kv_head * HD;
    }
    if (tid < n_q) {
        const uint32_t ctx = it.ctx0 + tid / nqh;
        qn[tid] = ctx > j0 ? min(PD_CUDA_ATTN_CHUNK, ctx - j0) : 0;
    }
    __syncthreads();

    /* Scores: key i goes to sub-group (warp, lane / LANES); all lanes run every pass so
     * that the shuffles see full warps. */
    const uint32_t sg = lane / C::LANES, sl = lane % C::LANES;
    const uint32_t keys_per_pass = (PD_CUDA_ATTN_THREADS / 32) * C::KPW;
    for (uint32_t base = 0; base < n_pos; base += keys_per_pass * PD_CUDA_ATTN_UNROLL) {
        float4 k[PD_CUDA_ATTN_UNROLL][C::VPL];
#pragma unroll
        for (int u = 0; u < PD_CUDA_ATTN_UNROLL; u++) {
            const uint32_t i = base + u * keys_per_pass + warp * C::KPW + sg;
#pragma unroll
            for (int v = 0; v < C::VPL; v++)
                k[u][v] = i < n_pos ? reinterpret_cast<const float4 *>(pool_layer +
                                                                       rowoff[i])[sl + v * C::LANES]
                                    : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        for (uint32_t qi = 0; qi < n_q; qi++) {
            const float4 *qv = reinterpret_cast<const float4 *>(qs[qi]);
#pragma unroll
            for (int u = 0; u < PD_CUDA_ATTN_UNROLL; u++) {
                float d = 0.0f;
#pragma unroll
                for (int v = 0; v < C::VPL; v++) {
                    const float4 a = qv[sl + v * C::LANES], b = k[u][v];
                    d = fmaf(a.x, b.x, d);
                    d = fmaf(a.y, b.y, d);
                    d = fmaf(a.z, b.z, d);
                    d = fmaf(a.w, b.w, d);
                }
#pragma unroll
                for (int o = C::LANES / 2; o > 0; o >>= 1)
                    d += __shfl_xor_sync(0xffffffffu, d, o);
                const uint32_t i = base + u * keys_per_pass + warp * C::KPW + sg;
                if (sl == 0 && i < qn[qi])
                    sc[qi][i] = d * scale;
            }
        }
    }
    __syncthreads();

    /* Softmax partials: warp w takes queries w, w + 4, ...; lane l positions l, l + 32, ... */
    for (uint32_t qi = warp; qi < n_q; qi += PD_CUDA_ATTN_THREADS / 32) {
        const uint32_t nv = qn[qi];
        float m = -INFINITY;
        for (uint32_t i = lane; i < nv; i += 32)
            m = fmaxf(m, sc[qi][i]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (uint32_t i = lane; i < nv; i += 32) {
            const float p = expf(sc[qi][i] - m);
            sc[qi][i] = p;
            l += p;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            qm[qi] = m;
            ql[qi] = l;
        }
    }
    __syncthreads();

    /* P V: thread (query lane, column); V rows in position order. */
    const uint32_t col = tid % C::COLS, qlane = tid / C::COLS;
    float4 acc[C::QPT];
#pragma unroll
    for (int u = 0; u < C::QPT; u++)
        acc[u] = make_float4(0.f, 0.f, 0.f, 0.f);
    for (uint32_t i0 = 0; i0 < n_pos; i0 += PD_CUDA_ATTN_UNROLL) {
        float4 v[PD_CUDA_ATTN_UNROLL];
#pragma unroll
        for (int u = 0; u < PD_CUDA_ATTN_UNROLL; u++)
            v[u] = i0 + u < n_pos
                       ? reinterpret_cast<const float4 *>(pool_layer + rowoff[i0 + u] + v_skip)[col]
                       : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int u = 0; u < PD_CUDA_ATTN_UNROLL; u++)
#pragma unroll
            for (int w = 0; w < C::QPT; w++) {
                const uint32_t qi = qlane + w * C::QL;
                if (qi < n_q && i0 + u < qn[qi]) {
                    const float p = sc[qi][i0 + u];
                    acc[w].x = fmaf(p, v[u].x, acc[w].x);
                    acc[w].y = fmaf(p, v[u].y, acc[w].y);
                    acc[w].z = fmaf(p, v[u].z, acc[w].z);
                    acc[w].w = fmaf(p, v[u].w, acc[w].w);
                }
            }
    }
#pragma unroll
    for (int w = 0; w < C::QPT; w++) {
        const uint32_t qi = qlane + w * C::QL;
        if (qi >= n_q || qn[qi] == 0)
            continue;
        const uint32_t row = it.row0 + qi / nqh, head = it.head0 + qi % nqh;
        const size_t slot = (size_t)(part[row] + it.chunk) * n_heads + head;
        reinterpret_cast<float4 *>(part_acc + slot * HD)[col] = acc[w];
        if (col == 0) {
            part_m[slot] = qm[qi];
            part_l[slot] = ql[qi];
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(PD_CUDA_ATTN_THREADS)
    pd_cuda_attn_combine(const uint32_t *__restrict__ part, uint32_t n_heads,
                         const float *__restrict__ part_m, const float *__restrict__ part_l,
                         const float *__restrict__ part_acc, float *__restrict__ out)
{
    const uint32_t row = blockIdx.x;
    const uint32_t p0 = part[row], n_chunks = part[row + 1] - p0;
    for (uint32_t i = threadIdx.x; i < n_heads * (HD / 4); i += PD_CUDA_ATTN_THREADS) {
        const uint32_t head = i / (HD / 4), col = i % (HD / 4);
        float m = -INFINITY;
        for (uint32_t j = 0; j < n_chunks; j++)
            m = fmaxf(m, part_m[(size_t)(p0 + j) * n_heads + head]);
        float l = 0.0f;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        for (uint32_t j = 0; j < n_chunks; j++) {
            const size_t slot = (size_t)(p0 + j) * n_heads + head;
            const float w = expf(part_m[slot] - m);
            const float4 c = reinterpret_cast<const float4 *>(part_acc + slot * HD)[col];
            l = fmaf(part_l[slot], w, l);
            a.x = fmaf(c.x, w, a.x);
            a.y = fmaf(c.y, w, a.y);
            a.z = fmaf(c.z, w, a.z);
            a.w = fmaf(c.w, w, a.w);
        }
        const float r = __fdiv_rn(1.0f, l);
        reinterpret_cast<float4 *>(out + ((size_t)row * n_heads + head) * HD)[col] =
            make_float4(a.x * r, a.y * r, a.z * r, a.w * r);
    }
}

template <int HD>
static pd_status_t pd_cuda_attention_hd(cudaStream_t stream, const float *q,
                                        const float *pool_layer, const pd_kv_layout_t *layout,
                                        uint32_t n_heads, const pd_cuda_attn_item_t *items,
                                        uint32_t n_items, const uint32_t *tables,
                                        const uint32_t *part, uint32_t n_rows, uint32_t n_parts,
                                        float *partials, float *out)
{
    const size_t n_slots = (size_t)n_parts * n_heads;
    float *pm = partials, *pl = partials + n_slots, *pa = partials + 2 * n_slots;
    /* keep the acc rows 16-byte aligned */
    pa = partials + ((2 * n_slots + 3) & ~(size_t)3);
    const float scale = 1.0f / sqrtf((float)HD);
    for (uint32_t b = 0; b < n_items; b += 0x7fffffffu) {
        const uint32_t nb = n_items - b < 0x7fffffffu ? n_items - b : 0x7fffffffu;
        pd_cuda_attn_partial<HD><<<nb, PD_CUDA_ATTN_THREADS, 0, stream>>>(
            q, pool_layer, tables, items + b, part, n_heads, layout->n_kv_heads,
            layout->block_tokens, scale, pm, pl, pa);
        pd_status_t st = pd_cuda_launched("attention partial");
        if (st != PD_OK)
            return st;
    }
    pd_cuda_attn_combine<HD>
        <<<n_rows, PD_CUDA_ATTN_THREADS, 0, stream>>>(part, n_heads, pm, pl, pa, out);
    return pd_cuda_launched("attention combine");
}

pd_status_t pd_cuda_attention(cudaStream_t stream, const float *q, const float *pool_layer,
                              const pd_kv_layout_t *layout, uint32_t n_heads,
                              const pd_cuda_attn_item_t *items, uint32_t n_items,
                              const uint32_t *tables, const uint32_t *part, uint32_t n_rows,
                              uint32_t n_parts, float *partials, float *out)
{
    if (n_rows == 0)
        return PD_OK;
#define PD_CUDA_ATTN_CASE(hd)                                                                      \
    case hd:                                                                                       \
        return pd_cuda_attention_hd<hd>(stream, q, pool_layer, layout, n_heads, items, n_items,    \
                                        tables, part, n_rows, n_parts, partials, out);
    switch (layout->head_dim) {
        PD_CUDA_ATTN_CASE(16)
        PD_CUDA_ATTN_CASE(32)
        PD_CUDA_ATTN_CASE(64)
        PD_CUDA_ATTN_CASE(128)
        PD_CUDA_ATTN_CASE(256)
    default:
        pd_log_error("cuda attention: head_dim %u is not built", layout->head_dim);
        return PD_ERR_UNSUPPORTED;
    }
#undef PD_CUDA_ATTN_CASE
}
