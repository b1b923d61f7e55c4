/* Host-side planning of the CUDA backend's steps (see plan.h). */
#include "cuda/plan.h"

#include "pd/log.h"

#include <string.h>

pd_status_t pd_cuda_attn_shape(uint32_t hd, pd_cuda_attn_shape_t *shape_p)
{
    if (shape_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (hd != 16 && hd != 32 && hd != 64 && hd != 128 && hd != 256)
        return PD_ERR_UNSUPPORTED;
    pd_cuda_attn_shape_t s;
    s.lanes_per_key = hd / 4 < 32 ? hd / 4 : 32;
    s.vec_per_lane = hd / 4 / s.lanes_per_key;
    s.keys_per_warp = 32 / s.lanes_per_key;
    s.pv_cols = hd / 4;
    s.pv_q_lanes = PD_CUDA_ATTN_THREADS / s.pv_cols;
    s.pv_q_per_thread = (PD_CUDA_ATTN_MAX_Q + s.pv_q_lanes - 1) / s.pv_q_lanes;
    s.smem_bytes = (size_t)PD_CUDA_ATTN_MAX_Q * (hd + PD_CUDA_ATTN_CHUNK) * sizeof(float);
    *shape_p = s;
    return PD_OK;
}

static size_t pd_cuda_align16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* Call fn(arg, item) for every work item of the step, in launch order. */
typedef void (*pd_cuda_item_fn)(void *arg, const pd_cuda_attn_item_t *item);

static uint32_t pd_cuda_plan_items(const pd_attn_seq_t *seqs, uint32_t n_seqs,
                                   const uint32_t *table_off, uint32_t n_heads, uint32_t n_kv_heads,
                                   pd_cuda_item_fn fn, void *arg)
{
    const uint32_t group = n_heads / n_kv_heads;
    const uint32_t hs = group < PD_CUDA_ATTN_MAX_Q ? group : PD_CUDA_ATTN_MAX_Q;
    const uint32_t rows = PD_CUDA_ATTN_MAX_Q / hs;
    uint32_t n = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const pd_attn_seq_t *sq = &seqs[s];
        for (uint32_t r0 = 0; r0 < sq->n_tokens; r0 += rows) {
            const uint32_t nr = sq->n_tokens - r0 < rows ? sq->n_tokens - r0 : rows;
            const uint32_t ctx0 = sq->pos + r0 + 1;
            const uint32_t n_chunks = pd_cuda_attn_n_chunks(ctx0 + nr - 1);
            for (uint32_t g = 0; g < n_kv_heads; g++)
                for (uint32_t h0 = 0; h0 < group; h0 += hs)
                    for (uint32_t j = 0; j < n_chunks; j++, n++) {
                        if (fn == NULL)
                            continue;
                        pd_cuda_attn_item_t it;
                        it.row0 = sq->first_row + r0;
                        it.ctx0 = ctx0;
                        it.table_off = table_off[s];
                        it.n_rows = (uint16_t)nr;
                        it.kv_head = (uint16_t)g;
                        it.head0 = (uint16_t)(g * group + h0);
                        it.n_q_heads = (uint16_t)(group - h0 < hs ? group - h0 : hs);
                        it.chunk = j;
                        fn(arg, &it);
                    }
        }
    }
    return n;
}

typedef struct pd_cuda_item_sink {
    pd_cuda_attn_item_t *items;
    uint32_t n;
} pd_cuda_item_sink_t;

static void pd_cuda_item_store(void *arg, const pd_cuda_attn_item_t *item)
{
    pd_cuda_item_sink_t *sink = arg;
    sink->items[sink->n++] = *item;
}

pd_status_t pd_cuda_plan_build(pd_cuda_step_plan_t *plan, const int32_t *ids, const uint32_t *pos,
                               const size_t *kv_off, uint32_t n_rows, const pd_attn_seq_t *seqs,
                               uint32_t n_seqs, const pd_kv_layout_t *layout, uint32_t n_heads,
                               pd_cuda_plan_grow_fn grow, void *grow_arg)
{
    if (plan == NULL || layout == NULL || grow == NULL ||
        (n_rows > 0 && (ids == NULL || pos == NULL || kv_off == NULL)) ||
        (n_seqs > 0 && seqs == NULL))
        return PD_ERR_INVALID_PARAM;
    const uint32_t kvh = layout->n_kv_heads, bt = layout->block_tokens;
    if (n_heads == 0 || kvh == 0 || n_heads % kvh != 0 || bt == 0 || n_heads > UINT16_MAX) {
        pd_log_warn("cuda plan: %u heads over %u KV heads (B %u) do not fit", n_heads, kvh, bt);
        return PD_ERR_INVALID_PARAM;
    }
    /* The sequences must cover rows 0 .. n_rows - 1 in order (the engine flattens them so);
     * every count below is bounded by n_rows, the tables by the context. */
    uint64_t n_table = 0, n_parts = 0;
    uint32_t next_row = 0, max_chunks = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const pd_attn_seq_t *sq = &seqs[s];
        if (sq->first_row != next_row || sq->n_tokens == 0 || sq->block_table == NULL ||
            sq->n_tokens > n_rows - next_row || sq->pos > UINT32_MAX - sq->n_tokens) {
            pd_log_warn("cuda plan: sequence %u (rows %u + %u) does not follow row %u", s,
                        sq->first_row, sq->n_tokens, next_row);
            return PD_ERR_INVALID_PARAM;
        }
        next_row += sq->n_tokens;
        const uint32_t end = sq->pos + sq->n_tokens;
        n_table += (end + bt - 1) / bt;
        for (uint32_t i = 0; i < sq->n_tokens; i++)
            n_parts += pd_cuda_attn_n_chunks(sq->pos + i + 1);
        uint32_t c = pd_cuda_attn_n_chunks(end);
        max_chunks = c > max_chunks ? c : max_chunks;
    }
    if (next_row != n_rows || n_table > UINT32_MAX / 2 || n_parts > UINT32_MAX / 2 / n_heads) {
        pd_log_warn("cuda plan: %u sequences cover %u of %u rows", n_seqs, next_row, n_rows);
        return PD_ERR_INVALID_PARAM;
    }
    uint64_t n_items = pd_cuda_plan_items(seqs, n_seqs, NULL, n_heads, kvh, NULL, NULL);
    if (n_items > UINT32_MAX / 2)
        return PD_ERR_LIMIT;

    size_t off = 0;
    plan->off_ids = off;
    off = pd_cuda_align16(off + (size_t)n_rows * sizeof(int32_t));
    plan->off_pos = off;
    off = pd_cuda_align16(off + (size_t)n_rows * sizeof(uint32_t));
    plan->off_kv = off;
    off = pd_cuda_align16(off + (size_t)n_rows * sizeof(uint64_t));
    plan->off_part = off;
    off = pd_cuda_align16(off + ((size_t)n_rows + 1) * sizeof(uint32_t));
    plan->off_tables = off;
    off = pd_cuda_align16(off + (size_t)n_table * sizeof(uint32_t));
    plan->off_items = off;
    off = pd_cuda_align16(off + (size_t)n_items * sizeof(pd_cuda_attn_item_t));
    if (off > plan->cap_bytes) {
        pd_status_t st = grow(grow_arg, &plan->buf, &plan->cap_bytes, off);
        if (st != PD_OK)
            return st;
    }
    unsigned char *b = plan->buf;
    memcpy(b + plan->off_ids, ids, (size_t)n_rows * sizeof(int32_t));
    memcpy(b + plan->off_pos, pos, (size_t)n_rows * sizeof(uint32_t));
    uint64_t *kv = (uint64_t *)(void *)(b + plan->off_kv);
    for (uint32_t r = 0; r < n_rows; r++)
        kv[r] = kv_off[r];
    uint32_t *part = (uint32_t *)(void *)(b + plan->off_part);
    uint32_t *tables = (uint32_t *)(void *)(b + plan->off_tables);
    uint32_t t = 0, p = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const pd_attn_seq_t *sq = &seqs[s];
        const uint32_t need = (sq->pos + sq->n_tokens + bt - 1) / bt;
        memcpy(tables + t, sq->block_table, (size_t)need * sizeof(uint32_t));
        t += need;
        for (uint32_t i = 0; i < sq->n_tokens; i++) {
            part[sq->first_row + i] = p;
            p += pd_cuda_attn_n_chunks(sq->pos + i + 1);
        }
    }
    part[n_rows] = p;
    /* Items, 64 sequences at a time so that their table offsets fit on the stack. */
    pd_cuda_item_sink_t sink = {(pd_cuda_attn_item_t *)(void *)(b + plan->off_items), 0};
    uint32_t table_off[64];
    for (uint32_t s0 = 0, t0 = 0; s0 < n_seqs; s0 += 64) {
        const uint32_t ns = n_seqs - s0 < 64 ? n_seqs - s0 : 64;
        for (uint32_t s = 0; s < ns; s++) {
            table_off[s] = t0;
            t0 += (seqs[s0 + s].pos + seqs[s0 + s].n_tokens + bt - 1) / bt;
        }
        pd_cuda_plan_items(seqs + s0, ns, table_off, n_heads, kvh, pd_cuda_item_store, &sink);
    }
    plan->bytes = off;
    plan->n_rows = n_rows;
    plan->n_table = (uint32_t)n_table;
    plan->n_items = (uint32_t)n_items;
    plan->n_parts = (uint32_t)n_parts;
    plan->max_chunks = max_chunks;
    return PD_OK;
}
