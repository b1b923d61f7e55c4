/* Where each block of a prompt's KV comes from before prefill computes: this worker's own
 * cache (perforated: every block is looked up, not only a leading run), a third worker
 * that pinned them for this request (read, then checked against its checksums), the
 * decode worker's pinned prefix (read, unchecked), or, for what none of them has, compute.
 * Also the transfer peers, cached by worker and epoch. */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pd_status_t pd_prefill_peer_get(pd_prefill_t *p, const char *worker_id, uint64_t epoch,
                                const void *desc, size_t desc_bytes, pd_prefill_peer_t **peer_p)
{
    pd_prefill_peer_t *slot = NULL, *oldest = &p->peers[0];
    for (uint32_t i = 0; i < PD_PREFILL_MAX_PEERS; i++) {
        pd_prefill_peer_t *e = &p->peers[i];
        if (e->peer != NULL && strcmp(e->worker_id, worker_id) == 0) {
            if (e->epoch == epoch) {
                e->last_used_ms = pd_time_now_ms();
                *peer_p = e;
                return PD_OK;
            }
            pd_log_info("prefill: %s restarted (epoch %llu -> %llu); reconnecting", e->worker_id,
                        (unsigned long long)e->epoch, (unsigned long long)epoch);
            pd_xfer_peer_disconnect(&e->peer);
        }
        if (e->peer == NULL && slot == NULL)
            slot = e;
        if (e->last_used_ms < oldest->last_used_ms)
            oldest = e;
    }
    if (slot == NULL) {
        slot = oldest;
        pd_xfer_peer_disconnect(&slot->peer);
    }
    memset(slot, 0, sizeof(*slot));
    pd_status_t st = pd_xfer_peer_connect(p->rt->fabric.engine, desc, desc_bytes, &slot->peer);
    if (st != PD_OK)
        return st;
    uint64_t bytes = 0;
    const pd_kv_layout_t *own = &p->rt->layout;
    st = pd_xfer_peer_region(slot->peer, &bytes, &slot->layout);
    if (st != PD_OK || slot->layout.n_layers != own->n_layers ||
        slot->layout.n_kv_heads != own->n_kv_heads || slot->layout.head_dim != own->head_dim ||
        slot->layout.block_tokens != own->block_tokens || bytes < pd_kv_pool_bytes(&slot->layout)) {
        pd_log_warn("prefill: %s's KV pool does not match this model's layout", worker_id);
        pd_xfer_peer_disconnect(&slot->peer);
        return PD_ERR_INVALID_PARAM;
    }
    snprintf(slot->worker_id, sizeof(slot->worker_id), "%s", worker_id);
    slot->epoch = epoch;
    slot->last_used_ms = pd_time_now_ms();
    char tl[128];
    if (pd_xfer_peer_transports(slot->peer, tl, sizeof(tl)) == PD_OK)
        pd_log_info("prefill: connected to %s (epoch %llu) over %s", slot->worker_id,
                    (unsigned long long)slot->epoch, tl);
    *peer_p = slot;
    return PD_OK;
}

/* Fetching is assumed to run at 1 GB/s until one has been measured. */
#define PD_PREFILL_FETCH_MS_PER_BYTE_GUESS 1e-6

/* Whether reading n_blocks is expected to cost less than computing their tokens. */
static bool pd_prefill_fetch_pays(const pd_prefill_t *p, size_t n_blocks)
{
    const double bytes = (double)n_blocks * pd_kv_block_bytes(&p->rt->layout);
    const double fetch_ms = bytes * (p->fetch_ms_per_byte > 0 ? p->fetch_ms_per_byte
                                                              : PD_PREFILL_FETCH_MS_PER_BYTE_GUESS);
    const double compute_ms = (double)n_blocks * p->rt->args.block_tokens * p->compute_ms_per_token;
    return p->compute_ms_per_token <= 0 || fetch_ms < compute_ms;
}

/* Read every layer of the blocks i with src[i] == want from remote[i] of peer's pool into
 * blocks[i]; on failure the peer is disconnected (which cancels what is in flight) and
 * those blocks are marked to compute. */
static void pd_prefill_fetch(pd_prefill_t *p, const pd_proto_prefill_t *m, pd_prefill_peer_t *peer,
                             const uint32_t *remote, const uint32_t *blocks, uint8_t *src, size_t n,
                             uint8_t want)
{
    const uint32_t n_layers = p->rt->layout.n_layers;
    const size_t lb = pd_kv_block_layer_bytes(&p->rt->layout);
    size_t n_want = 0;
    for (size_t i = 0; i < n; i++)
        n_want += src[i] == want;
    if (n_want == 0)
        return;
    pd_xfer_seg_t *segs = malloc(n_want * n_layers * sizeof(*segs));
    pd_status_t st = PD_ERR_NO_MEMORY;
    double ms = 0;
    if (segs != NULL) {
        size_t k = 0;
        for (uint32_t l = 0; l < n_layers; l++)
            for (size_t i = 0; i < n; i++) {
                if (src[i] != want)
                    continue;
                segs[k].local_offset = pd_kv_offset(&p->rt->layout, l, blocks[i]);
                segs[k].remote_offset = pd_kv_offset(&peer->layout, l, remote[i]);
                segs[k].bytes = lb;
                k++;
            }
        uint64_t t0 = pd_time_now_ns();
        st = pd_xfer_get(peer->peer, segs, k, p->rt->args.xfer_timeout_ms);
        ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
        free(segs);
    }
    if (st != PD_OK) {
        pd_log_warn("req %llu: reading %zu blocks from %s failed (%s); computing them",
                    (unsigned long long)m->req_id, n_want, peer->worker_id, pd_status_str(st));
        pd_xfer_peer_disconnect(&peer->peer);
        for (size_t i = 0; i < n; i++)
            if (src[i] == want)
                src[i] = PD_PREFILL_BLOCK_COMPUTE;
        return;
    }
    double per_byte = ms / ((double)n_want * n_layers * lb);
    p->fetch_ms_per_byte =
        p->fetch_ms_per_byte > 0 ? 0.8 * p->fetch_ms_per_byte + 0.2 * per_byte : per_byte;
    pd_log_debug("req %llu: read %zu blocks from %s in %.2f ms", (unsigned long long)m->req_id,
                 n_want, peer->worker_id, ms);
}

/* Blocks a third worker pinned for this request: read those this worker lacks, keep the
 * ones whose bytes hash to the holder's checksums; the others become holes. */
static void pd_prefill_from_holder(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                   const uint32_t *blocks, uint8_t *src, size_t n_reuse)
{
    size_t n = m->n_src_block_table < n_reuse ? m->n_src_block_table : n_reuse;
    const char *id = m->src_worker_id; /* present with src_xfer_desc (the schema checks) */
    pd_prefill_peer_t *holder = NULL;
    pd_status_t st =
        pd_prefill_peer_get(p, id, m->src_epoch, m->src_xfer_desc, m->src_xfer_desc_bytes, &holder);
    if (st != PD_OK) {
        pd_log_warn("req %llu: cannot reach holder %s (%s); computing its blocks",
                    (unsigned long long)m->req_id, id, pd_status_str(st));
        return;
    }
    size_t n_want = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == PD_PREFILL_BLOCK_COMPUTE && m->src_block_table[i] != PD_PROTO_NO_BLOCK &&
            m->src_block_table[i] < holder->layout.n_blocks) {
            src[i] = PD_PREFILL_BLOCK_HOLDER;
            n_want++;
        }
    }
    if (n_want == 0)
        return;
    if (!pd_prefill_fetch_pays(p, n_want)) {
        for (size_t i = 0; i < n; i++)
            if (src[i] == PD_PREFILL_BLOCK_HOLDER)
                src[i] = PD_PREFILL_BLOCK_COMPUTE;
        return;
    }
    pd_prefill_fetch(p, m, holder, m->src_block_table, blocks, src, n, PD_PREFILL_BLOCK_HOLDER);
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] != PD_PREFILL_BLOCK_HOLDER)
            continue;
        uint64_t sum = pd_role_block_checksum(&p->rt->layout, p->rt->fabric.pool, blocks[i]);
        if (sum != m->src_checksums[i]) {
            pd_log_warn("req %llu: block %zu read from %s fails its checksum; computing it",
                        (unsigned long long)m->req_id, i, id);
            src[i] = PD_PREFILL_BLOCK_COMPUTE;
            n_bad++;
        }
    }
    p->n_checksum_failures += n_bad;
}

pd_status_t pd_prefill_assemble(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                pd_prefill_peer_t *dest, uint32_t *blocks, uint8_t *src,
                                const char **why_p)
{
    const uint32_t bt = p->rt->args.block_tokens;
    const uint32_t n_prompt_blocks = (m->n_tokens + bt - 1) / bt;
    /* Blocks that may be reused: within the plan's reads, and never the one holding the
     * last token (its logits are computed). */
    size_t n_reuse =
        m->cache.read_blocks < m->n_block_hashes ? m->cache.read_blocks : m->n_block_hashes;
    if (n_reuse > (m->n_tokens - 1) / bt)
        n_reuse = (m->n_tokens - 1) / bt;
    size_t n_hit = 0;
    if (n_reuse == 0 ||
        pd_kvbm_lookup_each(p->rt->bm, m->block_hashes, n_reuse, blocks, &n_hit) != PD_OK) {
        n_reuse = 0;
        n_hit = 0;
    }
    size_t n_miss = n_prompt_blocks - n_hit;
    uint32_t *fresh = malloc((n_miss ? n_miss : 1) * sizeof(*fresh));
    pd_status_t st = fresh == NULL ? PD_ERR_NO_MEMORY : pd_kvbm_alloc(p->rt->bm, n_miss, fresh);
    if (st != PD_OK) {
        if (n_hit > 0)
            pd_kvbm_release(p->rt->bm, blocks, n_reuse); /* skips the holes */
        free(fresh);
        *why_p = "no room in the prefill pool";
        return st;
    }
    for (size_t i = 0, k = 0; i < n_prompt_blocks; i++) {
        if (i < n_reuse && blocks[i] != PD_KVBM_NO_BLOCK) {
            src[i] = PD_PREFILL_BLOCK_OWN;
        } else {
            blocks[i] = fresh[k++];
            src[i] = PD_PREFILL_BLOCK_COMPUTE;
        }
    }
    free(fresh);
    if (!p->rt->args.fetch)
        return PD_OK;
    if (m->src_xfer_desc != NULL)
        pd_prefill_from_holder(p, m, blocks, src, n_reuse);
    /* What the decode worker pinned and nobody else gave: read it when that pays. */
    size_t n_dest = m->n_skip_blocks < n_reuse ? m->n_skip_blocks : n_reuse, n_want = 0;
    for (size_t i = 0; i < n_dest; i++)
        n_want += src[i] == PD_PREFILL_BLOCK_COMPUTE;
    if (n_want > 0 && pd_prefill_fetch_pays(p, n_want)) {
        for (size_t i = 0; i < n_dest; i++)
            if (src[i] == PD_PREFILL_BLOCK_COMPUTE)
                src[i] = PD_PREFILL_BLOCK_DEST;
        pd_prefill_fetch(p, m, dest, m->dest_block_table, blocks, src, n_dest,
                         PD_PREFILL_BLOCK_DEST);
    }
    return PD_OK;
}
