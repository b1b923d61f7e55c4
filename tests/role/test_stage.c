/* The row ranges a staged worker copies back after each layer (pd_role_stage_row_ranges):
 * exactly the K and V rows of the new positions, whole blocks merged when consecutive in
 * the pool. The end-to-end check is integration_test_cluster's staged cluster. */
#include "pd/role.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const pd_kv_layout_t L = {3, 2, 4, 4, 16}; /* layers, kv heads, head_dim, B, blocks */

/* Mark in `mask` (one byte per pool byte) every byte the ranges cover, counting overlaps. */
static void cover(unsigned char *mask, const pd_buf_range_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (uint64_t b = 0; b < r[i].bytes; b++)
            mask[r[i].offset + b]++;
}

/* The bytes positions pos .. pos + n - 1 of a sequence own in layer `layer`. */
static void expect_rows(unsigned char *mask, uint32_t layer, const uint32_t *table, uint32_t pos,
                        uint32_t n)
{
    const size_t tb = pd_kv_token_bytes(&L);
    for (uint32_t p = pos; p < pos + n; p++) {
        const size_t base = pd_kv_offset(&L, layer, table[p / L.block_tokens]);
        const uint32_t r = p % L.block_tokens;
        for (size_t b = 0; b < tb; b++) {
            mask[base + r * tb + b]++;                    /* K row */
            mask[base + (L.block_tokens + r) * tb + b]++; /* V row */
        }
    }
}

static void check(uint32_t layer, const uint32_t *table, uint32_t pos, uint32_t n,
                  size_t want_ranges)
{
    const size_t pool = pd_kv_pool_bytes(&L);
    unsigned char *got = calloc(1, pool), *want = calloc(1, pool);
    cr_assert(got != NULL && want != NULL);
    pd_buf_range_t r[2 * (16 / 4 + 2)];
    const size_t k = pd_role_stage_row_ranges(&L, layer, table, pos, n, r);
    cr_assert_leq(k, 2 * (n / L.block_tokens + 2));
    cr_assert_eq(k, want_ranges, "pos %u n %u: %zu ranges", pos, n, k);
    cover(got, r, k);
    expect_rows(want, layer, table, pos, n);
    cr_assert_eq(memcmp(got, want, pool), 0, "pos %u n %u: other bytes than the rows", pos, n);
    free(got);
    free(want);
}

Test(role_stage, decode_token_is_one_k_row_and_one_v_row)
{
    const uint32_t table[] = {7, 2, 9};
    check(1, table, 5, 1, 2);  /* middle of block 1 (pool block 2) */
    check(2, table, 11, 1, 2); /* the last row of block 2 */
    check(0, table, 0, 1, 2);
}

Test(role_stage, prefill_chunk_merges_whole_blocks_consecutive_in_the_pool)
{
    /* Blocks 0 and 1 of the sequence are pool blocks 3 and 4 (one range), block 2 is pool
     * block 9 (partial: K and V rows apart). */
    const uint32_t table[] = {3, 4, 9};
    check(1, table, 0, 10, 3);
    /* Starting mid-block: rows 2-3 of pool block 3 (K, V), whole block 4 merged onto the V
     * rows that end where it starts, then block 9 partly (K, V). */
    check(1, table, 2, 8, 4);
    /* Whole blocks not consecutive in the pool stay apart. */
    const uint32_t apart[] = {3, 5, 4};
    check(0, apart, 0, 12, 3);
}
