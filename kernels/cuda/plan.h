/* Host-side planning for the CUDA backend: the step's metadata (token ids, positions,
 * KV offsets, block tables) flattened into one upload, the attention work items and
 * the launch shapes. Plain C, built on every machine, so that the arithmetic that decides
 * what each GPU block computes is tested where no GPU exists.
 *
 * Attention numerics: a query's context is cut into chunks of PD_CUDA_ATTN_CHUNK
 * positions at fixed absolute offsets (chunk j holds positions j*C .. j*C + C - 1); each
 * chunk gives a partial (max, sum, unnormalised P V) and the partials are combined in
 * chunk order. Every step of that arithmetic depends only on the query and its own
 * context, never on the other rows or sequences of the step, so a row's output is the
 * same whether it was decoded alone, batched, or prefilled with its whole prompt. */
#ifndef PD_CUDA_PLAN_H
#define PD_CUDA_PLAN_H

#include "pd/kv_layout.h"
#include "pd/ops.h"
#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

/* Positions per attention partial; fixed, as the numerics require. */
#define PD_CUDA_ATTN_CHUNK 256u
/* Queries (rows x heads of one KV head) that one work item holds. */
#define PD_CUDA_ATTN_MAX_Q 16u
/* Threads of one attention work item. */
#define PD_CUDA_ATTN_THREADS 128u
/* Largest head_dim the attention kernels take. */
#define PD_CUDA_MAX_HEAD_DIM 256u

/* One CUDA block of the partial-attention kernel: n_rows consecutive rows of one
 * sequence, n_q_heads query heads of one KV head, one chunk of the context. Row i of the
 * item is activation row row0 + i and attends positions 0 .. ctx0 + i - 1; a row whose
 * context ends before the chunk starts has no partial there and is skipped. */
typedef struct pd_cuda_attn_item {
    uint32_t row0;
    uint32_t ctx0;      /* context length of row0 (its position + 1) */
    uint32_t table_off; /* the sequence's block table in the step's flat table */
    uint16_t n_rows;
    uint16_t kv_head;
    uint16_t head0; /* first query head (global head index) */
    uint16_t n_q_heads;
    uint32_t chunk;
} pd_cuda_attn_item_t;

/* How the attention kernels lay threads over a head of hd floats. */
typedef struct pd_cuda_attn_shape {
    uint32_t lanes_per_key;   /* lanes that share one key's dot product (power of 2, <= 32) */
    uint32_t vec_per_lane;    /* float4 loads of one key per lane */
    uint32_t keys_per_warp;   /* keys a warp scores at once: 32 / lanes_per_key */
    uint32_t pv_cols;         /* float4 columns of a head: hd / 4 */
    uint32_t pv_q_lanes;      /* threads sharing a column in P V: threads / pv_cols */
    uint32_t pv_q_per_thread; /* queries each P V thread accumulates: ceil(MAX_Q / q_lanes) */
    size_t smem_bytes;        /* q (MAX_Q, hd) + scores (MAX_Q, CHUNK) */
} pd_cuda_attn_shape_t;

/* The shape for head_dim hd: PD_ERR_UNSUPPORTED unless hd is 16, 32, 64, 128 or 256. */
PD_MUST_CHECK pd_status_t pd_cuda_attn_shape(uint32_t hd, pd_cuda_attn_shape_t *shape_p);

/* The step as uploaded: one host buffer (pinned on the CUDA backend) that mirrors the
 * device buffer byte for byte; the offsets say where each array starts. */
typedef struct pd_cuda_step_plan {
    /* Host image of the upload and its capacity; grown by pd_cuda_plan_build through
     * grow (realloc-like: a backend passes a pinned allocator). */
    unsigned char *buf;
    size_t cap_bytes;
    size_t bytes; /* used by the current step */
    /* Offsets into buf of: */
    size_t off_ids;    /* int32 (n_rows) token ids */
    size_t off_pos;    /* uint32 (n_rows) positions */
    size_t off_kv;     /* uint64 (n_rows) float offset of each row's K in a layer slice */
    size_t off_part;   /* uint32 (n_rows + 1) first partial slot of each row */
    size_t off_tables; /* uint32 (n_table) the sequences' block tables, one after another */
    size_t off_items;  /* pd_cuda_attn_item_t (n_items) */
    uint32_t n_rows;
    uint32_t n_table;
    uint32_t n_items;
    uint32_t n_parts;    /* partial slots per head: sum over rows of the row's chunk count */
    uint32_t max_chunks; /* the most chunks of any row */
} pd_cuda_step_plan_t;

/* Reallocate *buf_p (of *cap_p bytes) to at least want bytes; contents need not be kept. */
typedef pd_status_t (*pd_cuda_plan_grow_fn)(void *arg, unsigned char **buf_p, size_t *cap_p,
                                            size_t want);

/* Lay out one step: rows, ids, positions and KV offsets from seqs (n_seqs, host memory,
 * rows covering 0 .. n_rows - 1 in order), their block tables, and the attention items for
 * n_heads query heads over n_kv_heads KV heads. n_table_blocks(s) is
 * ceil((pos + n_tokens) / B) of sequence s. PD_ERR_INVALID_PARAM for shapes that do not
 * fit (zero heads, heads not a multiple of KV heads, rows out of order). */
PD_MUST_CHECK pd_status_t pd_cuda_plan_build(pd_cuda_step_plan_t *plan, const int32_t *ids,
                                             const uint32_t *pos, const size_t *kv_off,
                                             uint32_t n_rows, const pd_attn_seq_t *seqs,
                                             uint32_t n_seqs, const pd_kv_layout_t *layout,
                                             uint32_t n_heads, pd_cuda_plan_grow_fn grow,
                                             void *grow_arg);

/* Chunks of a row with context n_ctx: ceil(n_ctx / PD_CUDA_ATTN_CHUNK). */
static inline uint32_t pd_cuda_attn_n_chunks(uint32_t n_ctx)
{
    return (n_ctx + PD_CUDA_ATTN_CHUNK - 1) / PD_CUDA_ATTN_CHUNK;
}

/* Blocks of threads threads that cover n elements, at least 1. */
static inline uint32_t pd_cuda_grid_1d(size_t n, uint32_t threads)
{
    size_t g = (n + threads - 1) / threads;
    return g == 0 ? 1u : g > 0x7fffffffu ? 0x7fffffffu : (uint32_t)g;
}

#endif
