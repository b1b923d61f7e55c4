/* CPU kernels: the canonical dot product, RMSNorm,
 * RoPE, SwiGLU, softmax and paged attention. Short loops in the llama2.c tone; the only
 * intrinsics live behind simd_int.h. */
#include "pd/ops.h"

#include "cpu/simd_int.h"

#include <math.h>
#include <string.h>

/* exp(x) for x in [-87, 88] (clamped outside), within ~2 ulp: Cody-Waite reduction by
 * ln 2 and a degree-6 polynomial (Cephes expf). Plain float arithmetic with no library
 * call, so loops over it vectorise and give the same bits in every build. */
static inline float pd_cpu_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float kf = x * 1.44269504088896341f + shifter;
    int32_t ki;
    memcpy(&ki, &kf, sizeof(ki));
    ki -= 0x4B400000; /* the integer n = round(x / ln 2) */
    float n = kf - shifter;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = (ki + 127) * (1 << 23); /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

/* Sum of x (n) in 16 lanes (lane l takes i = l mod 16, in order), then pairwise. */
static float pd_cpu_sum(const float *x, uint32_t n)
{
    float acc[16] = {0};
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (uint32_t l = 0; l < 16; l++)
            acc[l] += x[i + l];
    for (uint32_t l = 0; i + l < n; l++)
        acc[l] += x[i + l];
    for (uint32_t w = 8; w >= 1; w /= 2)
        for (uint32_t l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

float pd_cpu_dot(const float *a, const float *b, uint32_t n)
{
    pd_v16_t acc = pd_v16_zero();
    uint32_t k = 0;
    for (; k + 16 <= n; k += 16)
        acc = pd_v16_fma(pd_v16_load(a + k), pd_v16_load(b + k), acc);
    if (k < n)
        acc = pd_v16_fma(pd_v16_load_tail(a + k, n - k), pd_v16_load_tail(b + k, n - k), acc);
    return pd_v16_hsum(acc);
}

void pd_cpu_rmsnorm(const float *x, const float *weight, float *y, uint32_t dim, float eps)
{
    float ss = pd_cpu_dot(x, x, dim);
    float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    for (uint32_t i = 0; i < dim; i++)
        y[i] = (x[i] * scale) * weight[i];
}

void pd_rope_inv_freq(uint32_t head_dim, float theta, const pd_rope_scaling_t *scaling,
                      double *inv_freq)
{
    uint32_t half = head_dim / 2;
    for (uint32_t i = 0; i < half; i++) {
        double f = pow((double)theta, -2.0 * (double)i / (double)head_dim);
        if (scaling != NULL && scaling->factor > 0.0f) {
            double factor = scaling->factor, lo = scaling->low_freq_factor,
                   hi = scaling->high_freq_factor, old = scaling->original_max_position;
            double wavelen = 2.0 * 3.14159265358979323846 / f;
            if (wavelen > old / lo) {
                f = f / factor;
            } else if (wavelen >= old / hi) {
                double s = (old / wavelen - lo) / (hi - lo);
                f = (1.0 - s) * f / factor + s * f;
            }
        }
        inv_freq[i] = f;
    }
}

void pd_cpu_rope_table(float *cs, uint32_t n_pos, uint32_t head_dim, float theta,
                       const pd_rope_scaling_t *scaling)
{
    uint32_t half = head_dim / 2;
    double inv_freq[2048];
    pd_rope_inv_freq(head_dim, theta, scaling, inv_freq);
    for (uint32_t i = 0; i < half; i++) {
        double freq = inv_freq[i];
        for (uint32_t p = 0; p < n_pos; p++) {
            double angle = (double)p * freq;
            cs[(size_t)p * head_dim + i] = (float)cos(angle);
            cs[(size_t)p * head_dim + half + i] = (float)sin(angle);
        }
    }
}

void pd_cpu_rope(float *x, uint32_t n_heads, uint32_t head_dim, const float *cs,
                 pd_rope_style_t style)
{
    uint32_t half = head_dim / 2;
    const float *c = cs;
    const float *s = cs + half;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (style == PD_ROPE_PAIR) {
            for (uint32_t i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c[i] - b * s[i];
                v[2 * i + 1] = a * s[i] + b * c[i];
            }
        } else {
            for (uint32_t i = 0; i < half; i++) {
                float a = v[i], b = v[half + i];
                v[i] = a * c[i] - b * s[i];
                v[half + i] = a * s[i] + b * c[i];
            }
        }
    }
}

void pd_cpu_swiglu(const float *gate, const float *up, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = (g / (1.0f + pd_cpu_exp(-g))) * up[i];
    }
}

/* Softmax of x (n) whose maximum is max. */
static void pd_cpu_softmax_max(float *x, uint32_t n, float max)
{
    for (uint32_t i = 0; i < n; i++)
        x[i] = pd_cpu_exp(x[i] - max);
    float inv = 1.0f / pd_cpu_sum(x, n);
    for (uint32_t i = 0; i < n; i++)
        x[i] *= inv;
}

void pd_cpu_softmax(float *x, uint32_t n)
{
    float max = x[0];
    for (uint32_t i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    pd_cpu_softmax_max(x, n, max);
}

/* out[g] [0 .. 16 nd) = P (ng, ld_p) V for ng queries and nd vectors of 16 of each V row
 * starting at float col of the token's row; query g attends positions 0 .. lens[g] - 1
 * (lens ascending). Element d of each output is fma(p_j, v_j[d], .) over j ascending from
 * zero, the same for every tile shape and whatever the other queries' lengths: the
 * positions all queries share run together, each query's remaining ones after. */
__attribute__((always_inline)) static inline void
pd_cpu_pv_tile(const float *p, size_t ld_p, const uint32_t *lens, const float *pool_layer,
               const uint32_t *table, uint32_t bt, size_t blk, size_t row, size_t col,
               float *const *out, uint32_t ng, uint32_t nd)
{
    pd_v16_t acc[4][4];
    for (uint32_t g = 0; g < ng; g++)
        for (uint32_t c = 0; c < nd; c++)
            acc[g][c] = pd_v16_zero();
    const uint32_t n_common = lens[0];
    for (uint32_t j0 = 0; j0 < n_common; j0 += bt) {
        /* vb: (B, n_kv_heads, hd) V rows of this block, at col */
        const float *vb = pool_layer + table[j0 / bt] * blk + (size_t)bt * row + col;
        const uint32_t nj = n_common - j0 < bt ? n_common - j0 : bt;
        for (uint32_t jj = 0; jj < nj; jj++) {
            const float *v = vb + jj * row;
            pd_v16_t vv[4];
            for (uint32_t c = 0; c < nd; c++)
                vv[c] = pd_v16_load(v + 16 * c);
            for (uint32_t g = 0; g < ng; g++) {
                pd_v16_t pj = pd_v16_set1(p[(size_t)g * ld_p + j0 + jj]);
                for (uint32_t c = 0; c < nd; c++)
                    acc[g][c] = pd_v16_fma(pj, vv[c], acc[g][c]);
            }
        }
    }
    for (uint32_t j = n_common; j < lens[ng - 1]; j++) {
        const float *v = pool_layer + table[j / bt] * blk + ((size_t)bt + j % bt) * row + col;
        for (uint32_t g = 0; g < ng; g++) {
            if (j >= lens[g])
                continue;
            pd_v16_t pj = pd_v16_set1(p[(size_t)g * ld_p + j]);
            for (uint32_t c = 0; c < nd; c++)
                acc[g][c] = pd_v16_fma(pj, pd_v16_load(v + 16 * c), acc[g][c]);
        }
    }
    for (uint32_t g = 0; g < ng; g++)
        for (uint32_t c = 0; c < nd; c++)
            pd_v16_store(out[g] + 16 * c, acc[g][c]);
}

typedef void (*pd_cpu_pv_tile_fn)(const float *p, size_t ld_p, const uint32_t *lens,
                                  const float *pool_layer, const uint32_t *table, uint32_t bt,
                                  size_t blk, size_t row, size_t col, float *const *out);

#define PD_PV_TILE_FN(NG, ND)                                                                      \
    static void pd_cpu_pv_tile_##NG##x##ND(                                                        \
        const float *p, size_t ld_p, const uint32_t *lens, const float *pool_layer,                \
        const uint32_t *table, uint32_t bt, size_t blk, size_t row, size_t col, float *const *out) \
    {                                                                                              \
        pd_cpu_pv_tile(p, ld_p, lens, pool_layer, table, bt, blk, row, col, out, NG, ND);          \
    }
PD_PV_TILE_FN(1, 1)
PD_PV_TILE_FN(1, 2)
PD_PV_TILE_FN(1, 3)
PD_PV_TILE_FN(1, 4)
PD_PV_TILE_FN(2, 1)
PD_PV_TILE_FN(2, 2)
PD_PV_TILE_FN(2, 3)
PD_PV_TILE_FN(2, 4)
PD_PV_TILE_FN(3, 1)
PD_PV_TILE_FN(3, 2)
PD_PV_TILE_FN(3, 3)
PD_PV_TILE_FN(3, 4)
PD_PV_TILE_FN(4, 1)
PD_PV_TILE_FN(4, 2)
PD_PV_TILE_FN(4, 3)
PD_PV_TILE_FN(4, 4)

static const pd_cpu_pv_tile_fn pd_cpu_pv_tiles[4][4] = {
    {pd_cpu_pv_tile_1x1, pd_cpu_pv_tile_1x2, pd_cpu_pv_tile_1x3, pd_cpu_pv_tile_1x4},
    {pd_cpu_pv_tile_2x1, pd_cpu_pv_tile_2x2, pd_cpu_pv_tile_2x3, pd_cpu_pv_tile_2x4},
    {pd_cpu_pv_tile_3x1, pd_cpu_pv_tile_3x2, pd_cpu_pv_tile_3x3, pd_cpu_pv_tile_3x4},
    {pd_cpu_pv_tile_4x1, pd_cpu_pv_tile_4x2, pd_cpu_pv_tile_4x3, pd_cpu_pv_tile_4x4},
};

/* acc[i] (ni) = per-lane fused multiply-adds of q (hd) and key i of k (ni, ld), over the
 * head dimension in increasing order; the keys interleave so that the chains overlap. */
__attribute__((always_inline)) static inline void
pd_cpu_qk_lanes(const float *q, const float *k, size_t ld, uint32_t hd, uint32_t ni, pd_v16_t *acc)
{
    const uint32_t hd16 = hd - hd % 16;
    uint32_t d = 0;
    for (; d < hd16; d += 16) {
        pd_v16_t qv = pd_v16_load(q + d);
        for (uint32_t i = 0; i < ni; i++)
            acc[i] = pd_v16_fma(qv, pd_v16_load(k + i * ld + d), acc[i]);
    }
    if (d < hd) {
        pd_v16_t qv = pd_v16_load_tail(q + d, hd - d);
        for (uint32_t i = 0; i < ni; i++)
            acc[i] = pd_v16_fma(qv, pd_v16_load_tail(k + i * ld + d, hd - d), acc[i]);
    }
}

/* Scores of one query q (hd) against ni <= 16 keys k (ni, ld): score i is the per-lane
 * sum of pd_cpu_qk_lanes, reduced by pd_v16_hsum16, times scale; written to out (ni),
 * and max raised to the largest. A key's score does not depend on ni or the other keys. */
static inline void pd_cpu_scores16(const float *q, const float *k, size_t ld, uint32_t hd,
                                   uint32_t ni, float scale, float *out, float *max)
{
    pd_v16_t acc[16];
    float sums[16];
    for (uint32_t i = 0; i < 16; i++)
        acc[i] = pd_v16_zero();
    if (ni == 16)
        pd_cpu_qk_lanes(q, k, ld, hd, 16, acc);
    else
        pd_cpu_qk_lanes(q, k, ld, hd, ni, acc);
    pd_v16_hsum16(acc, sums);
    float m = *max;
    for (uint32_t i = 0; i < ni; i++) {
        float sc = sums[i] * scale;
        out[i] = sc;
        m = sc > m ? sc : m;
    }
    *max = m;
}

/* Attention of n_rows x group queries sharing one KV head: query (r, h) is
 * q + r * stride + h * hd and attends positions 0 .. n_ctx0 + r - 1 (consecutive rows of
 * one sequence, causal); its output goes to the same offset of out. For every query the
 * arithmetic is the same whatever the other queries are: score j is pd_cpu_scores16's,
 * the softmax is pd_cpu_softmax, and output element d is fma(p_j, v_j[d], .) over j
 * ascending from zero. More queries only share the loads of K and V. */
void pd_cpu_attention_rows(const float *q, size_t stride, uint32_t n_rows, uint32_t group,
                           const float *pool_layer, const pd_kv_layout_t *layout,
                           const uint32_t *block_table, uint32_t n_ctx0, uint32_t kv_head,
                           float *out, float *scores)
{
    const uint32_t hd = layout->head_dim;
    const uint32_t n_q = n_rows * group;
    if (n_q == 0)
        return;
    if (n_q > PD_CPU_ATTN_MAX_Q) {
        /* Split by rows, or by heads when one row alone has too many. */
        if (n_rows > 1) {
            uint32_t rows = PD_CPU_ATTN_MAX_Q / group > 0 ? PD_CPU_ATTN_MAX_Q / group : 1;
            for (uint32_t r0 = 0; r0 < n_rows; r0 += rows)
                pd_cpu_attention_rows(q + r0 * stride, stride,
                                      n_rows - r0 < rows ? n_rows - r0 : rows, group, pool_layer,
                                      layout, block_table, n_ctx0 + r0, kv_head, out + r0 * stride,
                                      scores);
        } else {
            for (uint32_t h0 = 0; h0 < group; h0 += PD_CPU_ATTN_MAX_Q)
                pd_cpu_attention_rows(
                    q + (size_t)h0 * hd, stride, 1,
                    group - h0 < PD_CPU_ATTN_MAX_Q ? group - h0 : PD_CPU_ATTN_MAX_Q, pool_layer,
                    layout, block_table, n_ctx0, kv_head, out + (size_t)h0 * hd, scores);
        }
        return;
    }
    const uint32_t bt = layout->block_tokens;
    const size_t row = (size_t)layout->n_kv_heads * hd; /* floats per token */
    const size_t blk = 2 * (size_t)bt * row;            /* floats per block slice */
    const float scale = 1.0f / sqrtf((float)hd);
    const uint32_t n_max = n_ctx0 + n_rows - 1; /* the last row's context: the score stride */
    const float *qp[PD_CPU_ATTN_MAX_Q];
    float *op[PD_CPU_ATTN_MAX_Q];
    uint32_t len[PD_CPU_ATTN_MAX_Q];
    float max[PD_CPU_ATTN_MAX_Q];
    for (uint32_t i = 0; i < n_q; i++) {
        size_t off = (i / group) * stride + (size_t)(i % group) * hd;
        qp[i] = q + off;
        op[i] = out + off;
        len[i] = n_ctx0 + i / group;
        max[i] = -INFINITY;
    }
    /* Walk the context block by block (no division per position), keeping each query's
     * running maximum for the softmax; a query stops at its own length. */
    for (uint32_t j0 = 0; j0 < n_max; j0 += bt) {
        /* kb: (B, n_kv_heads, hd) K rows of this block, at kv_head */
        const float *kb = pool_layer + block_table[j0 / bt] * blk + kv_head * hd;
        const uint32_t nj = n_max - j0 < bt ? n_max - j0 : bt;
        for (uint32_t i0 = 0; i0 < nj; i0 += 16) {
            const uint32_t j = j0 + i0;
            for (uint32_t i = 0; i < n_q; i++) {
                if (j >= len[i])
                    continue;
                /* this block's keys, at most 16, and none past the query's length */
                uint32_t ni = nj - i0 < 16 ? nj - i0 : 16;
                ni = len[i] - j < ni ? len[i] - j : ni;
                pd_cpu_scores16(qp[i], kb + (size_t)i0 * row, row, hd, ni, scale,
                                scores + (size_t)i * n_max + j, &max[i]);
            }
        }
    }
    for (uint32_t i = 0; i < n_q; i++)
        pd_cpu_softmax_max(scores + (size_t)i * n_max, len[i], max[i]);

    /* out = P V in register tiles of up to 4 queries x 4 vectors, scalar tail. */
    const uint32_t hd16 = hd - hd % 16;
    for (uint32_t g0 = 0; g0 < n_q; g0 += 4) {
        const uint32_t ng = n_q - g0 < 4 ? n_q - g0 : 4;
        for (uint32_t d0 = 0; d0 < hd16; d0 += 64) {
            const uint32_t nd = (hd16 - d0) / 16 < 4 ? (hd16 - d0) / 16 : 4;
            float *o[4];
            for (uint32_t g = 0; g < ng; g++)
                o[g] = op[g0 + g] + d0;
            pd_cpu_pv_tiles[ng - 1][nd - 1](scores + (size_t)g0 * n_max, n_max, len + g0,
                                            pool_layer, block_table, bt, blk, row,
                                            (size_t)kv_head * hd + d0, o);
        }
        for (uint32_t g = g0; g < g0 + ng; g++)
            for (uint32_t d = hd16; d < hd; d++) {
                float a = 0.0f;
                for (uint32_t j = 0; j < len[g]; j++) {
                    const float *v = pool_layer + block_table[j / bt] * blk +
                                     ((size_t)bt + j % bt) * row + kv_head * hd;
                    a = fmaf(scores[(size_t)g * n_max + j], v[d], a);
                }
                op[g][d] = a;
            }
    }
}

void pd_cpu_attention_group(const float *q, uint32_t n_q, const float *pool_layer,
                            const pd_kv_layout_t *layout, const uint32_t *block_table,
                            uint32_t n_ctx, uint32_t kv_head, float *out, float *scores)
{
    pd_cpu_attention_rows(q, 0, 1, n_q, pool_layer, layout, block_table, n_ctx, kv_head, out,
                          scores);
}

void pd_cpu_attention_head(const float *q, const float *pool_layer, const pd_kv_layout_t *layout,
                           const uint32_t *block_table, uint32_t n_ctx, uint32_t kv_head,
                           float *out, float *scores)
{
    pd_cpu_attention_group(q, 1, pool_layer, layout, block_table, n_ctx, kv_head, out, scores);
}
