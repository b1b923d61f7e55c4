/* Paged attention against a contiguous double-precision reference, with grouped-query
 * heads and shuffled block tables. */
#include "pd/ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KVH 2
#define HD  24
#define BT  4

static float val(uint32_t pos, uint32_t head, uint32_t d, uint32_t which)
{
    return sinf(0.1f * (float)pos + 0.7f * (float)head + 0.3f * (float)d + 1.9f * (float)which);
}

/* Write K (which 0) and V (which 1) of positions 0..n-1 into pool through table. */
static void fill_pool(float *pool, const pd_kv_layout_t *l, const uint32_t *table, uint32_t n)
{
    size_t row = (size_t)KVH * HD, blk = 2 * (size_t)BT * row;
    for (uint32_t p = 0; p < n; p++)
        for (uint32_t which = 0; which < 2; which++)
            for (uint32_t h = 0; h < KVH; h++)
                for (uint32_t d = 0; d < HD; d++)
                    pool[table[p / BT] * blk + ((size_t)which * BT + p % BT) * row + h * HD + d] =
                        val(p, h, d, which);
    (void)l;
}

static void ref_attention(const float *q, uint32_t n_ctx, uint32_t kvh, double *out)
{
    double s[64], mx = -1e300, sum = 0.0;
    for (uint32_t j = 0; j < n_ctx; j++) {
        double dot = 0.0;
        for (uint32_t d = 0; d < HD; d++)
            dot += (double)q[d] * val(j, kvh, d, 0);
        s[j] = dot / sqrt((double)HD);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (uint32_t j = 0; j < n_ctx; j++)
        sum += s[j] = exp(s[j] - mx);
    for (uint32_t d = 0; d < HD; d++) {
        out[d] = 0.0;
        for (uint32_t j = 0; j < n_ctx; j++)
            out[d] += s[j] / sum * val(j, kvh, d, 1);
    }
}

Test(attention, paged_head_matches_reference_and_ignores_block_placement)
{
    const uint32_t n_ctx = 37, n_blocks = 16;
    pd_kv_layout_t l = {1, KVH, HD, BT, n_blocks};
    float *pool_a = calloc(pd_kv_pool_bytes(&l), 1);
    float *pool_b = calloc(pd_kv_pool_bytes(&l), 1);
    uint32_t contiguous[10], shuffled[10] = {13, 2, 9, 0, 15, 7, 4, 11, 5, 1};
    for (uint32_t i = 0; i < 10; i++)
        contiguous[i] = i;
    fill_pool(pool_a, &l, contiguous, n_ctx);
    fill_pool(pool_b, &l, shuffled, n_ctx);
    float q[HD], out_a[HD], out_b[HD], scores[64];
    double ref[HD];
    for (uint32_t d = 0; d < HD; d++)
        q[d] = cosf(0.5f * (float)d);
    for (uint32_t kvh = 0; kvh < KVH; kvh++)
        for (uint32_t ctx = 1; ctx <= n_ctx; ctx += 3) {
            pd_cpu_attention_head(q, pool_a, &l, contiguous, ctx, kvh, out_a, scores);
            pd_cpu_attention_head(q, pool_b, &l, shuffled, ctx, kvh, out_b, scores);
            cr_assert_eq(memcmp(out_a, out_b, sizeof(out_a)), 0, "kvh %u ctx %u", kvh, ctx);
            ref_attention(q, ctx, kvh, ref);
            for (uint32_t d = 0; d < HD; d++)
                cr_assert_float_eq(out_a[d], ref[d], 1e-5, "kvh %u ctx %u d %u", kvh, ctx, d);
        }
    free(pool_a);
    free(pool_b);
}

Test(attention, backend_op_maps_query_heads_to_kv_groups_causally)
{
    /* 4 query heads over 2 KV heads: heads 0,1 read KV head 0 and heads 2,3 KV head 1. */
    const uint32_t n_heads = 4, n_tok = 5, pos = 3, n_blocks = 8;
    pd_kv_layout_t l = {1, KVH, HD, BT, n_blocks};
    float *pool = calloc(pd_kv_pool_bytes(&l), 1);
    uint32_t table[2] = {6, 3};
    fill_pool(pool, &l, table, pos + n_tok);
    float q[5 * 4 * HD], out[5 * 4 * HD], want[HD], scores[16];
    for (uint32_t i = 0; i < 5 * 4 * HD; i++)
        q[i] = sinf(0.21f * (float)i);
    pd_backend_t be;
    cr_assert_eq(pd_backend_cpu_create(2, 64, 2, &be), PD_OK);
    pd_attn_seq_t seq = {0, n_tok, pos, table};
    be.ops->attention(be.ctx, q, pool, &l, &seq, 1, n_heads, out);
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t h = 0; h < n_heads; h++) {
            pd_cpu_attention_head(q + (t * n_heads + h) * HD, pool, &l, table, pos + t + 1, h / 2,
                                  want, scores);
            cr_assert_eq(memcmp(want, out + (t * n_heads + h) * HD, sizeof(want)), 0, "t %u h %u",
                         t, h);
        }
    pd_backend_destroy(&be);
    cr_assert_null(be.ops);
    free(pool);
}

Test(attention, group_of_queries_equals_one_query_at_a_time_bitwise)
{
    /* 3 queries per KV head as in m50, head_dim 64 (the tiled path) and 24 (tile + tail). */
    const uint32_t dims[2] = {64, 24};
    for (int di = 0; di < 2; di++) {
        const uint32_t hd = dims[di], n_ctx = 29, n_blocks = 8;
        pd_kv_layout_t l = {1, 2, hd, BT, n_blocks};
        float *pool = calloc(pd_kv_pool_bytes(&l), 1);
        for (size_t i = 0; i < pd_kv_pool_bytes(&l) / sizeof(float); i++)
            pool[i] = sinf(0.013f * (float)i);
        uint32_t table[8] = {5, 1, 7, 3, 0, 2, 6, 4};
        float q[3 * 64], out_g[3 * 64], out_1[64], scores[3 * 29];
        for (uint32_t i = 0; i < 3 * hd; i++)
            q[i] = cosf(0.3f * (float)i);
        pd_cpu_attention_group(q, 3, pool, &l, table, n_ctx, 1, out_g, scores);
        for (uint32_t g = 0; g < 3; g++) {
            pd_cpu_attention_head(q + g * hd, pool, &l, table, n_ctx, 1, out_1, scores);
            cr_assert_eq(memcmp(out_1, out_g + g * hd, hd * sizeof(float)), 0, "hd %u g %u", hd, g);
        }
        free(pool);
    }
}

Test(attention, consecutive_rows_equal_one_query_at_a_time_bitwise)
{
    /* Rows r = 0 .. n_rows - 1 of a prefill, each attending n_ctx0 + r positions, groups of
     * 1, 2 and 3 heads, head_dim 64 (tiles) and 24 (tile + scalar tail), row counts that
     * fill tiles unevenly and one over PD_CPU_ATTN_MAX_Q queries (split). */
    const uint32_t dims[2] = {64, 24}, groups[3] = {1, 2, 3}, rows[4] = {1, 3, 5, 23};
    for (int di = 0; di < 2; di++)
        for (int gi = 0; gi < 3; gi++)
            for (int ri = 0; ri < 4; ri++) {
                const uint32_t hd = dims[di], group = groups[gi], n_rows = rows[ri];
                const uint32_t n_ctx0 = 14, n_blocks = 12, n_heads = 2 * group;
                pd_kv_layout_t l = {1, 2, hd, BT, n_blocks};
                float *pool = calloc(pd_kv_pool_bytes(&l), 1);
                for (size_t i = 0; i < pd_kv_pool_bytes(&l) / sizeof(float); i++)
                    pool[i] = sinf(0.017f * (float)i);
                uint32_t table[12] = {5, 1, 7, 3, 0, 2, 6, 4, 11, 9, 8, 10};
                const size_t stride = (size_t)n_heads * hd;
                float *q = malloc(n_rows * stride * sizeof(float));
                float *out = calloc(n_rows * stride, sizeof(float));
                float *scores = malloc(64 * 64 * sizeof(float));
                float one[64];
                for (size_t i = 0; i < n_rows * stride; i++)
                    q[i] = cosf(0.31f * (float)i);
                /* KV head 1: its queries are heads group .. 2 group - 1 of each row. */
                pd_cpu_attention_rows(q + group * hd, stride, n_rows, group, pool, &l, table,
                                      n_ctx0, 1, out + group * hd, scores);
                for (uint32_t r = 0; r < n_rows; r++)
                    for (uint32_t h = 0; h < group; h++) {
                        size_t off = r * stride + (group + h) * hd;
                        pd_cpu_attention_head(q + off, pool, &l, table, n_ctx0 + r, 1, one, scores);
                        cr_assert_eq(memcmp(one, out + off, hd * sizeof(float)), 0,
                                     "hd %u group %u rows %u: row %u head %u", hd, group, n_rows, r,
                                     h);
                    }
                /* KV head 0's outputs were not touched. */
                for (uint32_t r = 0; r < n_rows; r++)
                    for (uint32_t d = 0; d < group * hd; d++)
                        cr_assert_eq(out[r * stride + d], 0.0f);
                free(q);
                free(out);
                free(scores);
                free(pool);
            }
}
