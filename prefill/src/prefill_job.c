/* One prefill: pin the worker's own cached prefix, compute the rest of the prompt, push
 * the KV of blocks n_skip_blocks .. (the last, partial one included) into the decode
 * worker's reserved blocks layer by layer while later layers compute, sample token 0,
 * notify decode with it, and answer the router once the push is final. */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the per-layer callback needs. */
typedef struct pd_prefill_push {
    pd_prefill_t *p;
    pd_xfer_send_t *send;
    const pd_kv_layout_t *dest_layout;
    const uint32_t *dest_blocks; /* (n_prompt_blocks) */
    const uint32_t *own_blocks;  /* (n_prompt_blocks) */
    uint32_t first;              /* first block pushed (n_skip_blocks) */
    uint32_t n_prompt_blocks;
    pd_xfer_seg_t *segs; /* (n_prompt_blocks) */
    pd_status_t status;
} pd_prefill_push_t;

static void pd_prefill_push_layer(pd_prefill_push_t *x, uint32_t layer)
{
    if (x->status != PD_OK || x->first >= x->n_prompt_blocks)
        return;
    const size_t lb = pd_kv_block_layer_bytes(&x->p->rt->layout);
    size_t n = 0;
    for (uint32_t i = x->first; i < x->n_prompt_blocks; i++, n++) {
        x->segs[n].local_offset = pd_kv_offset(&x->p->rt->layout, layer, x->own_blocks[i]);
        x->segs[n].remote_offset = pd_kv_offset(x->dest_layout, layer, x->dest_blocks[i]);
        x->segs[n].bytes = lb;
    }
    x->status = pd_xfer_send_post(x->send, x->segs, n);
    pd_xfer_engine_progress(x->p->rt->fabric.engine);
}

static void pd_prefill_on_layer(void *arg, uint32_t layer)
{
    pd_prefill_push_t *x = arg;
    if (x->p->rt->args.layerwise)
        pd_prefill_push_layer(x, layer);
    pd_worker_tick(x->p->rt->worker);
}

/* The peer for (worker_id, epoch): cached, replaced when the epoch changes. */
static pd_status_t pd_prefill_peer_get(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                       pd_prefill_peer_t **peer_p)
{
    pd_prefill_peer_t *slot = NULL, *oldest = &p->peers[0];
    for (uint32_t i = 0; i < PD_PREFILL_MAX_PEERS; i++) {
        pd_prefill_peer_t *e = &p->peers[i];
        if (e->peer != NULL && strcmp(e->worker_id, m->dest_worker_id) == 0) {
            if (e->epoch == m->dest_epoch) {
                e->last_used_ms = pd_time_now_ms();
                *peer_p = e;
                return PD_OK;
            }
            pd_log_info("prefill: %s restarted (epoch %llu -> %llu); reconnecting", e->worker_id,
                        (unsigned long long)e->epoch, (unsigned long long)m->dest_epoch);
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
    pd_status_t st = pd_xfer_peer_connect(p->rt->fabric.engine, m->dest_xfer_desc,
                                          m->dest_xfer_desc_bytes, &slot->peer);
    if (st != PD_OK)
        return st;
    uint64_t bytes = 0;
    st = pd_xfer_peer_region(slot->peer, &bytes, &slot->layout);
    if (st != PD_OK || slot->layout.n_layers != p->rt->layout.n_layers ||
        slot->layout.n_kv_heads != p->rt->layout.n_kv_heads ||
        slot->layout.head_dim != p->rt->layout.head_dim ||
        slot->layout.block_tokens != p->rt->layout.block_tokens ||
        bytes < pd_kv_pool_bytes(&slot->layout)) {
        pd_log_warn("prefill: %s's KV pool does not match this model's layout", m->dest_worker_id);
        pd_xfer_peer_disconnect(&slot->peer);
        return PD_ERR_INVALID_PARAM;
    }
    snprintf(slot->worker_id, sizeof(slot->worker_id), "%s", m->dest_worker_id);
    slot->epoch = m->dest_epoch;
    slot->last_used_ms = pd_time_now_ms();
    char tl[128];
    if (pd_xfer_peer_transports(slot->peer, tl, sizeof(tl)) == PD_OK)
        pd_log_info("prefill: connected to %s (epoch %llu) over %s", slot->worker_id,
                    (unsigned long long)slot->epoch, tl);
    *peer_p = slot;
    return PD_OK;
}

void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j)
{
    pd_xfer_send_destroy(&j->send);
    if (j->blocks != NULL && j->n_blocks > 0)
        pd_kvbm_release(p->rt->bm, j->blocks, j->n_blocks);
    free(j->blocks);
    memset(j, 0, sizeof(*j));
    p->n_jobs--;
    pd_worker_load_changed(p->rt->worker);
}

static void pd_prefill_fail(pd_prefill_t *p, uint64_t req_id, pd_status_t code, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "prefill %s: %s: %s", p->rt->args.id, why, pd_status_str(code));
    pd_log_warn("req %llu: %s", (unsigned long long)req_id, msg);
    pd_worker_send_error(p->rt->worker, req_id, code, msg);
}

static pd_status_t pd_prefill_check(const pd_prefill_t *p, const pd_proto_prefill_t *m,
                                    const char **why_p)
{
    const uint32_t bt = p->rt->args.block_tokens;
    if (m->n_tokens == 0 || m->tokens == NULL) {
        *why_p = "empty prompt";
        return PD_ERR_INVALID_PARAM;
    }
    if (m->n_tokens > p->rt->model->config.max_seq_len) {
        *why_p = "prompt longer than the model context";
        return PD_ERR_CONTEXT;
    }
    if (m->n_block_hashes != m->n_tokens / bt || m->n_skip_blocks > m->n_block_hashes) {
        *why_p = "block_hashes or n_skip_blocks do not match the prompt";
        return PD_ERR_INVALID_PARAM;
    }
    if (m->n_dest_block_table < (m->n_tokens + bt - 1) / bt) {
        *why_p = "dest block_table shorter than the prompt";
        return PD_ERR_INVALID_PARAM;
    }
    for (uint32_t i = 0; i < m->n_tokens; i++) {
        if (m->tokens[i] < 0 || (uint32_t)m->tokens[i] >= p->rt->vocab) {
            *why_p = "token id outside the vocabulary";
            return PD_ERR_OUT_OF_RANGE;
        }
    }
    return PD_OK;
}

/* Fetching is assumed to run at 1 GB/s until one has been measured. */
#define PD_PREFILL_FETCH_MS_PER_BYTE_GUESS 1e-6

/* The decode worker already holds (pinned for this request) the prompt's blocks
 * [0, n_skip_blocks) at dest_block_table; this worker's own cache covers [0, n_hit). When
 * reading [n_hit, end) from the decode worker's pool is expected to cost less than
 * computing those tokens, read them into blocks[n_hit, end) and return end (blocks whose
 * tokens need not be computed); otherwise, or if the read fails, return n_hit. */
static size_t pd_prefill_fetch_prefix(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                      pd_prefill_peer_t *peer, const uint32_t *blocks, size_t n_hit)
{
    const uint32_t bt = p->rt->args.block_tokens;
    if (!p->rt->args.fetch)
        return n_hit;
    size_t end = m->n_skip_blocks;
    if (end > (m->n_tokens - 1) / bt) /* the last token is always computed */
        end = (m->n_tokens - 1) / bt;
    if (end <= n_hit)
        return n_hit;
    const uint32_t n_layers = p->rt->layout.n_layers;
    const size_t lb = pd_kv_block_layer_bytes(&p->rt->layout);
    const size_t n_blocks = end - n_hit;
    const double bytes = (double)n_blocks * n_layers * lb;
    const double fetch_ms = bytes * (p->fetch_ms_per_byte > 0 ? p->fetch_ms_per_byte
                                                              : PD_PREFILL_FETCH_MS_PER_BYTE_GUESS);
    const double compute_ms = (double)n_blocks * bt * p->compute_ms_per_token;
    if (p->compute_ms_per_token > 0 && fetch_ms >= compute_ms)
        return n_hit;
    pd_xfer_seg_t *segs = malloc(n_blocks * n_layers * sizeof(*segs));
    if (segs == NULL)
        return n_hit;
    size_t n = 0;
    for (uint32_t l = 0; l < n_layers; l++)
        for (size_t i = n_hit; i < end; i++) {
            segs[n].local_offset = pd_kv_offset(&p->rt->layout, l, blocks[i]);
            segs[n].remote_offset = pd_kv_offset(&peer->layout, l, m->dest_block_table[i]);
            segs[n].bytes = lb;
            n++;
        }
    uint64_t t0 = pd_time_now_ns();
    pd_status_t st = pd_xfer_get(peer->peer, segs, n, p->rt->args.xfer_timeout_ms);
    free(segs);
    double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
    if (st != PD_OK) {
        /* Whatever is still in flight is canceled with the connection; the next request
         * to this worker connects again. */
        pd_log_warn("req %llu: fetching %zu blocks from %s failed (%s); computing them",
                    (unsigned long long)m->req_id, n_blocks, peer->worker_id, pd_status_str(st));
        pd_xfer_peer_disconnect(&peer->peer);
        return n_hit;
    }
    double per_byte = ms / bytes;
    p->fetch_ms_per_byte =
        p->fetch_ms_per_byte > 0 ? 0.8 * p->fetch_ms_per_byte + 0.2 * per_byte : per_byte;
    pd_log_debug("req %llu: fetched %zu blocks (%.1f MiB) from %s in %.2f ms instead of "
                 "computing %zu tokens (estimated %.1f ms)",
                 (unsigned long long)m->req_id, n_blocks, bytes / 1048576.0, peer->worker_id, ms,
                 n_blocks * bt, compute_ms);
    return end;
}

void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m)
{
    pd_prefill_t *p = state;
    const uint32_t bt = p->rt->args.block_tokens;
    const char *why = "";
    pd_status_t st = pd_prefill_check(p, m, &why);
    pd_prefill_job_t *j = NULL;
    for (uint32_t i = 0; st == PD_OK && i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live && p->jobs[i].req_id == m->req_id) {
            why = "request id already in flight";
            st = PD_ERR_EXISTS;
        } else if (!p->jobs[i].live && j == NULL) {
            j = &p->jobs[i];
        }
    }
    if (st == PD_OK && j == NULL) {
        why = "too many prefills in flight";
        st = PD_ERR_OVERLOADED;
    }
    if (st != PD_OK) {
        pd_prefill_fail(p, m->req_id, st, why);
        return;
    }
    pd_prefill_peer_t *peer = NULL;
    st = pd_prefill_peer_get(p, m, &peer);
    if (st != PD_OK) {
        pd_prefill_fail(p, m->req_id, st, "cannot connect to the decode worker");
        return;
    }
    const uint32_t n_prompt_blocks = (m->n_tokens + bt - 1) / bt;
    for (uint32_t i = 0; i < n_prompt_blocks; i++) {
        if (m->dest_block_table[i] >= peer->layout.n_blocks) {
            pd_prefill_fail(p, m->req_id, PD_ERR_OUT_OF_RANGE, "dest block id outside its pool");
            return;
        }
    }

    uint64_t t0 = pd_time_now_ns();
    memset(j, 0, sizeof(*j));
    j->live = true;
    j->req_id = m->req_id;
    snprintf(j->dest, sizeof(j->dest), "%s", m->dest_worker_id);
    p->n_jobs++;
    pd_worker_load_changed(p->rt->worker);
    j->blocks = malloc((size_t)n_prompt_blocks * sizeof(*j->blocks));
    pd_xfer_seg_t *segs = malloc((size_t)n_prompt_blocks * sizeof(*segs));
    pd_xfer_range_t *allowed =
        malloc(((size_t)p->rt->layout.n_layers * n_prompt_blocks + 1) * sizeof(*allowed));
    if (j->blocks == NULL || segs == NULL || allowed == NULL) {
        st = PD_ERR_NO_MEMORY;
        why = "out of memory";
        goto fail;
    }

    /* Own cached prefix, leaving at least the last token to compute for its logits. */
    size_t n_read =
        m->cache.read_blocks < m->n_block_hashes ? m->cache.read_blocks : m->n_block_hashes;
    if (n_read > (m->n_tokens - 1) / bt)
        n_read = (m->n_tokens - 1) / bt;
    size_t n_hit = 0;
    if (pd_kvbm_lookup_prefix(p->rt->bm, m->block_hashes, n_read, j->blocks, &n_hit) != PD_OK)
        n_hit = 0;
    j->n_blocks = (uint32_t)n_hit;
    st = pd_kvbm_alloc(p->rt->bm, n_prompt_blocks - n_hit, j->blocks + n_hit);
    if (st != PD_OK) {
        why = "no room in the prefill pool";
        goto fail;
    }
    j->n_blocks = n_prompt_blocks;

    /* The remote ranges decode reserved for the pushed blocks, per layer and run. */
    size_t n_allowed = 0;
    const size_t lb = pd_kv_block_layer_bytes(&peer->layout);
    for (uint32_t l = 0; l < p->rt->layout.n_layers; l++) {
        uint32_t i = m->n_skip_blocks;
        while (i < n_prompt_blocks) {
            uint32_t k = i + 1;
            while (k < n_prompt_blocks && m->dest_block_table[k] == m->dest_block_table[k - 1] + 1)
                k++;
            allowed[n_allowed].offset = pd_kv_offset(&peer->layout, l, m->dest_block_table[i]);
            allowed[n_allowed].bytes = (uint64_t)(k - i) * lb;
            n_allowed++;
            i = k;
        }
    }
    /* A prefix the decode worker holds and this worker does not: read it rather than
     * compute it when that is cheaper. Such a job caches nothing here (below). */
    const size_t n_ready = pd_prefill_fetch_prefix(p, m, peer, j->blocks, n_hit);
    if (peer->peer == NULL) {
        st = pd_prefill_peer_get(p, m, &peer);
        if (st != PD_OK) {
            why = "cannot connect to the decode worker";
            goto fail;
        }
    }
    st = pd_xfer_send_begin(peer->peer, m->req_id, allowed, n_allowed, p->rt->args.xfer_timeout_ms,
                            &j->send);
    if (st != PD_OK) {
        why = "cannot start the KV transfer";
        goto fail;
    }

    pd_prefill_push_t push = {p,         j->send,          &peer->layout,   m->dest_block_table,
                              j->blocks, m->n_skip_blocks, n_prompt_blocks, segs,
                              PD_OK};
    const uint32_t start = (uint32_t)n_ready * bt;
    pd_fwd_seq_t seq = {m->tokens + start, m->n_tokens - start, start,
                        j->blocks,         n_prompt_blocks,     p->logits};
    const uint64_t t_forward = pd_time_now_ns();
    st = pd_engine_forward(p->rt->engine, p->rt->fabric.pool, &p->rt->layout, &seq, 1,
                           pd_prefill_on_layer, &push);
    if (st != PD_OK) {
        why = "prefill compute failed";
        goto fail;
    }
    pd_sampling_t s = {(float)m->sampling.temperature, (float)m->sampling.top_p, m->sampling.seed};
    j->first_token = pd_sample_token(&s, p->logits, p->rt->vocab, 0, p->scratch);
    j->t_compute_end_ns = pd_time_now_ns();
    j->prefill_ms = pd_time_ns_to_ms(j->t_compute_end_ns - t0);
    j->n_computed_tokens = m->n_tokens - start;
    j->n_cached_tokens = start;
    if (j->n_computed_tokens >= 16) {
        double per_token = pd_time_ns_to_ms(j->t_compute_end_ns - t_forward) / j->n_computed_tokens;
        p->compute_ms_per_token = p->compute_ms_per_token > 0
                                      ? 0.8 * p->compute_ms_per_token + 0.2 * per_token
                                      : per_token;
    }
    if (!p->rt->args.layerwise)
        for (uint32_t l = 0; l < p->rt->layout.n_layers; l++)
            pd_prefill_push_layer(&push, l);
    if (push.status != PD_OK) {
        st = push.status;
        why = "KV push refused";
        goto fail;
    }
    uint8_t payload[PD_WORKER_KV_PAYLOAD_BYTES];
    pd_worker_kv_payload_t pl = {m->req_id, j->first_token, j->n_computed_tokens};
    pd_worker_kv_payload_pack(&pl, payload);
    st = pd_xfer_send_finish(j->send, payload, sizeof(payload));
    if (st != PD_OK) {
        why = "cannot finish the KV transfer";
        goto fail;
    }

    /* The computed full blocks are valid now: make them findable per the plan. They stay
     * pinned (and unchanged) until the push is final. Not after a fetch: what was read
     * came from another worker's pool without a checksum, and the blocks computed over it
     * depend on it, so none of this job's blocks becomes this worker's cache. */
    for (uint32_t i = (uint32_t)n_hit; n_ready == n_hit && i < m->n_block_hashes; i++) {
        uint64_t ttl_ms = pd_proto_cache_plan_block_ttl_ms(&m->cache, i);
        int stored = 0;
        if (ttl_ms > 0 &&
            pd_kvbm_commit(p->rt->bm, j->blocks[i], m->block_hashes[i], ttl_ms, &stored) == PD_OK &&
            stored)
            j->n_created_tokens += bt;
    }
    free(segs);
    free(allowed);
    pd_xfer_engine_progress(p->rt->fabric.engine);
    pd_prefill_poll_jobs(p);
    return;

fail:
    free(segs);
    free(allowed);
    pd_prefill_fail(p, m->req_id, st, why);
    pd_prefill_job_end(p, j);
}

void pd_prefill_poll_jobs(void *state)
{
    pd_prefill_t *p = state;
    if (p->n_jobs == 0)
        return;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        pd_prefill_job_t *j = &p->jobs[i];
        if (!j->live || j->send == NULL)
            continue;
        pd_status_t st = pd_xfer_send_status(j->send);
        if (st == PD_INPROGRESS)
            continue;
        if (st != PD_OK) {
            pd_prefill_fail(p, j->req_id, st, "KV push to the decode worker failed");
            pd_prefill_job_end(p, j);
            continue;
        }
        pd_proto_msg_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.type = PD_PROTO_TYPE_PREFILLED;
        pd_proto_prefilled_t *r = &msg.u.prefilled;
        r->req_id = j->req_id;
        r->first_token = j->first_token;
        r->n_computed_tokens = j->n_computed_tokens;
        r->n_cached_tokens = j->n_cached_tokens;
        r->cache_creation_input_tokens = j->n_created_tokens;
        r->prefill_ms = j->prefill_ms;
        r->transfer_ms = pd_time_ns_to_ms(pd_time_now_ns() - j->t_compute_end_ns);
        pd_worker_send(p->rt->worker, &msg);
        pd_prefill_job_end(p, j);
    }
}

void pd_prefill_on_cancel(void *state, uint64_t req_id)
{
    pd_prefill_t *p = state;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live && p->jobs[i].req_id == req_id) {
            pd_log_info("req %llu: canceled by the router", (unsigned long long)req_id);
            pd_prefill_job_end(p, &p->jobs[i]);
            return;
        }
    }
}
