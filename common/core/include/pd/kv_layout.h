/* The KV pool's byte layout, shared by kernels, transfer, prefill and decode.
 *
 * A pool holds n_blocks blocks of block_tokens tokens for every layer, layer-major:
 *
 *   pool: (n_layers, n_blocks, 2, block_tokens, n_kv_heads, head_dim) f32
 *
 * so that one layer's slice of a run of consecutive blocks is one contiguous range and
 * moves as one transfer operation. Index 0 of the "2" axis is K, 1 is V. A "block" (the
 * unit of allocation, hashing and caching) is the n_layers slices with the same block id.
 * docs/PROTOCOL.md documents the same layout for peers. */
#ifndef PD_KV_LAYOUT_H
#define PD_KV_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct pd_kv_layout {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t block_tokens; /* B, 16 by default */
    uint32_t n_blocks;     /* blocks in the pool */
} pd_kv_layout_t;

/* Bytes of one token's K (or V) in one layer. */
static inline size_t pd_kv_token_bytes(const pd_kv_layout_t *l)
{
    return (size_t)l->n_kv_heads * l->head_dim * sizeof(float);
}

/* Bytes of one block in one layer: (2, B, n_kv_heads, head_dim) f32. */
static inline size_t pd_kv_block_layer_bytes(const pd_kv_layout_t *l)
{
    return 2 * (size_t)l->block_tokens * pd_kv_token_bytes(l);
}

/* Bytes of one block across all layers. */
static inline size_t pd_kv_block_bytes(const pd_kv_layout_t *l)
{
    return (size_t)l->n_layers * pd_kv_block_layer_bytes(l);
}

/* Bytes of one layer of the whole pool. */
static inline size_t pd_kv_layer_stride_bytes(const pd_kv_layout_t *l)
{
    return (size_t)l->n_blocks * pd_kv_block_layer_bytes(l);
}

/* Bytes of the whole pool. */
static inline size_t pd_kv_pool_bytes(const pd_kv_layout_t *l)
{
    return (size_t)l->n_layers * pd_kv_layer_stride_bytes(l);
}

/* Byte offset of (layer, block) from the pool base: start of its (2, B, kvh, hd) slice. */
static inline size_t pd_kv_offset(const pd_kv_layout_t *l, uint32_t layer, uint32_t block)
{
    return (size_t)layer * pd_kv_layer_stride_bytes(l) + (size_t)block * pd_kv_block_layer_bytes(l);
}

#endif
