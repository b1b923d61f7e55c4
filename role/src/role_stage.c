/* The compute pool apart from the transfer pool (pd_role_forward): with --backend cuda
 * the KV the model reads and writes lives in device memory, while the fabric, the block
 * manager's tiers, checksums and readers keep using the host pool (pinned, registered
 * with UCX). The host pool stays authoritative: every row a forward step writes is
 * copied back to it as soon as its layer is computed (before prefill pushes that layer),
 * and a block is uploaded before a step reads it unless the device already holds what
 * the host holds. The block manager tells which blocks took new content on the host
 * (pd_kvbm_set_take_hook): received, restored from G2/G3 or read from a holder.
 *
 * The same path runs on the CPU backend with --kv-staging 1 (a second host pool and
 * memcpy), which is how it is tested on machines without a GPU. */
#include "role_int.h"

#include "pd/log.h"
#include "pd/cuda_ipc.h"
#include "pd/ops.h"

#include <stdlib.h>
#include <string.h>

static void pd_role_stage_forget(void *arg, uint32_t block)
{
    pd_role_t *rt = arg;
    rt->kv_valid[block] = 0;
}

pd_status_t pd_role_stage_open(pd_role_t *rt)
{
    const size_t bytes = pd_kv_pool_bytes(&rt->layout);
    void *dev = NULL;
    pd_status_t st = pd_engine_buf_alloc(rt->engine, bytes, &dev);
    if (st != PD_OK) {
        pd_log_error("%s: cannot allocate the %zu MiB compute pool on the %s backend: %s",
                     rt->ops->name, bytes >> 20, pd_engine_backend_name(rt->engine),
                     pd_status_str(st));
        return st;
    }
    rt->kv_valid = calloc(rt->layout.n_blocks, 1);
    if (rt->kv_valid == NULL) {
        pd_engine_buf_free(rt->engine, dev);
        return PD_ERR_NO_MEMORY;
    }
    rt->kv_compute = dev;
    pd_kvbm_set_take_hook(rt->bm, pd_role_stage_forget, rt);
    /* Pinned host memory: copies run at the bus's speed and need no bounce buffer. A
     * pool CUDA cannot pin still works, slower. */
    if (strcmp(pd_engine_backend_name(rt->engine), "cuda") == 0) {
        rt->host_pinned = pd_cuda_host_register(rt->fabric.pool, rt->fabric.pool_bytes) == PD_OK;
        if (!rt->host_pinned)
            pd_log_warn("%s: the host pool is not pinned: KV copies go through pageable memory",
                        rt->ops->name);
    }
    return PD_OK;
}

void pd_role_stage_close(pd_role_t *rt)
{
    if (rt->bm != NULL)
        pd_kvbm_set_take_hook(rt->bm, NULL, NULL);
    if (rt->host_pinned)
        pd_cuda_host_unregister(rt->fabric.pool);
    rt->host_pinned = false;
    if (rt->kv_compute != NULL && rt->kv_compute != rt->fabric.pool)
        pd_engine_buf_free(rt->engine, rt->kv_compute);
    rt->kv_compute = NULL;
    free(rt->kv_valid);
    rt->kv_valid = NULL;
    free(rt->stage_ranges);
    rt->stage_ranges = NULL;
    rt->stage_cap = 0;
}

size_t pd_role_stage_row_ranges(const pd_kv_layout_t *l, uint32_t layer, const uint32_t *table,
                                uint32_t pos, uint32_t n, pd_buf_range_t *out)
{
    const size_t tb = pd_kv_token_bytes(l);
    const uint32_t bt = l->block_tokens;
    size_t k = 0;
    for (uint32_t p = pos; p < pos + n;) {
        const uint32_t i = p / bt, r0 = p % bt;
        const uint32_t r1 = pos + n - i * bt < bt ? pos + n - i * bt : bt;
        const uint64_t base = pd_kv_offset(l, layer, table[i]);
        if (r0 == 0 && r1 == bt) {
            /* A whole block: K and V are adjacent, one range. */
            if (k > 0 && out[k - 1].offset + out[k - 1].bytes == base)
                out[k - 1].bytes += pd_kv_block_layer_bytes(l);
            else
                out[k++] = (pd_buf_range_t){base, pd_kv_block_layer_bytes(l)};
        } else {
            out[k++] = (pd_buf_range_t){base + r0 * tb, (uint64_t)(r1 - r0) * tb};
            out[k++] = (pd_buf_range_t){base + (bt + r0) * tb, (uint64_t)(r1 - r0) * tb};
        }
        p = i * bt + r1;
    }
    return k;
}

static pd_status_t pd_role_stage_reserve(pd_role_t *rt, size_t n)
{
    if (n <= rt->stage_cap)
        return PD_OK;
    size_t cap = rt->stage_cap ? rt->stage_cap : 64;
    while (cap < n)
        cap *= 2;
    pd_buf_range_t *r = realloc(rt->stage_ranges, cap * sizeof(*r));
    if (r == NULL)
        return PD_ERR_NO_MEMORY;
    rt->stage_ranges = r;
    rt->stage_cap = cap;
    return PD_OK;
}

/* Upload every block a step reads (positions before pos) that the device does not hold
 * as the host does: all of its layers, in one batch of copies. */
static pd_status_t pd_role_stage_upload(pd_role_t *rt, const pd_fwd_seq_t *seqs, uint32_t n_seqs)
{
    const pd_kv_layout_t *l = &rt->layout;
    const size_t bl = pd_kv_block_layer_bytes(l);
    size_t k = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const uint32_t n_ctx = (seqs[s].pos + l->block_tokens - 1) / l->block_tokens;
        for (uint32_t i = 0; i < n_ctx && i < seqs[s].n_table; i++) {
            const uint32_t b = seqs[s].block_table[i];
            if (b >= l->n_blocks)
                return PD_ERR_INVALID_PARAM;
            if (rt->kv_valid[b])
                continue;
            pd_status_t st = pd_role_stage_reserve(rt, k + l->n_layers);
            if (st != PD_OK)
                return st;
            for (uint32_t layer = 0; layer < l->n_layers; layer++)
                rt->stage_ranges[k++] = (pd_buf_range_t){pd_kv_offset(l, layer, b), bl};
            /* Marked now so a block two sequences share goes once; a failed copy below
             * makes the caller forget every block. */
            rt->kv_valid[b] = 1;
            rt->stage_blocks_up++;
        }
    }
    return k == 0 ? PD_OK
                  : pd_engine_copy_ranges(rt->engine, rt->fabric.pool, rt->kv_compute,
                                          rt->stage_ranges, k, false);
}

typedef struct pd_role_stage_cb {
    pd_role_t *rt;
    const pd_fwd_seq_t *seqs;
    uint32_t n_seqs;
    pd_fwd_layer_cb user;
    void *user_arg;
    pd_status_t status;
} pd_role_stage_cb_t;

/* After a layer: copy the rows the step wrote back to the host pool (one batch, one
 * wait), then hand the layer to the role (prefill pushes it from the host pool). */
static void pd_role_stage_on_layer(void *arg, uint32_t layer)
{
    pd_role_stage_cb_t *c = arg;
    pd_role_t *rt = c->rt;
    if (c->status != PD_OK)
        return;
    size_t k = 0;
    for (uint32_t s = 0; s < c->n_seqs; s++) {
        const pd_fwd_seq_t *q = &c->seqs[s];
        /* At most two ranges per block touched. */
        const size_t most = 2 * ((size_t)q->n_tokens / rt->layout.block_tokens + 2);
        if ((c->status = pd_role_stage_reserve(rt, k + most)) != PD_OK)
            return;
        k += pd_role_stage_row_ranges(&rt->layout, layer, q->block_table, q->pos, q->n_tokens,
                                      rt->stage_ranges + k);
    }
    for (size_t i = 0; i < k; i++)
        rt->stage_bytes_down += rt->stage_ranges[i].bytes;
    c->status = pd_engine_copy_ranges(rt->engine, rt->fabric.pool, rt->kv_compute, rt->stage_ranges,
                                      k, true);
    if (c->status == PD_OK && c->user != NULL)
        c->user(c->user_arg, layer);
}

pd_status_t pd_role_forward(pd_role_t *rt, pd_fwd_seq_t *seqs, uint32_t n_seqs,
                            pd_fwd_layer_cb on_layer, void *cb_arg)
{
    if (rt->kv_valid == NULL)
        return pd_engine_forward(rt->engine, rt->fabric.pool, &rt->layout, seqs, n_seqs, on_layer,
                                 cb_arg);
    for (uint32_t s = 0; s < n_seqs; s++) {
        const uint64_t end = (uint64_t)seqs[s].pos + seqs[s].n_tokens;
        if (seqs[s].block_table == NULL ||
            (uint64_t)seqs[s].n_table * rt->layout.block_tokens < end)
            return PD_ERR_INVALID_PARAM;
    }
    pd_status_t st = pd_role_stage_upload(rt, seqs, n_seqs);
    if (st != PD_OK) {
        memset(rt->kv_valid, 0, rt->layout.n_blocks);
        return st;
    }
    pd_role_stage_cb_t c = {rt, seqs, n_seqs, on_layer, cb_arg, PD_OK};
    st = pd_engine_forward(rt->engine, rt->kv_compute, &rt->layout, seqs, n_seqs,
                           pd_role_stage_on_layer, &c);
    if (st == PD_OK)
        st = c.status;
    /* The blocks written hold on the device what the host holds now. */
    for (uint32_t s = 0; s < n_seqs && st == PD_OK; s++) {
        const uint32_t bt = rt->layout.block_tokens;
        const uint32_t end = seqs[s].pos + seqs[s].n_tokens;
        for (uint32_t i = seqs[s].pos / bt; i * bt < end; i++)
            rt->kv_valid[seqs[s].block_table[i]] = 1;
    }
    if (st != PD_OK) /* what the device holds is unknown now */
        memset(rt->kv_valid, 0, rt->layout.n_blocks);
    return st;
}
