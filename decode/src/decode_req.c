/* Requests on pd-decode: reserve (pin the cached prefix, allocate the rest, expect the
 * transfer), KV arrival, the colocated local prefill, cancel, and the one release path. */
#include "decode_int.h"
#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pd_decode_req_t *pd_decode_req_find(pd_decode_t *d, uint64_t req_id)
{
    if (req_id == 0)
        return NULL;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state != PD_DECODE_REQ_FREE && d->reqs[i].req_id == req_id)
            return &d->reqs[i];
    return NULL;
}

static void pd_decode_reply_reserved(pd_decode_t *d, uint64_t req_id, pd_status_t status,
                                     const pd_decode_req_t *q)
{
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_RESERVED;
    msg.u.reserved.req_id = req_id;
    msg.u.reserved.status = status;
    if (q != NULL) {
        msg.u.reserved.n_cached_blocks = q->n_cached;
        msg.u.reserved.block_table = q->blocks;
        msg.u.reserved.n_block_table = q->n_blocks;
    }
    pd_worker_send(d->rt->worker, &msg);
}

long pd_decode_quarantine_poll(pd_decode_t *d, bool force)
{
    uint64_t now = pd_time_now_ms();
    long next = -1;
    for (uint32_t i = 0; i < d->n_quarantine;) {
        pd_decode_quarantine_t *e = &d->quarantine[i];
        if (force || now >= e->release_ms) {
            pd_kvbm_release(d->rt->bm, e->blocks, e->n_blocks);
            free(e->blocks);
            d->quarantine[i] = d->quarantine[--d->n_quarantine];
            pd_worker_load_changed(d->rt->worker);
            continue;
        }
        long left = (long)(e->release_ms - now);
        if (next < 0 || left < next)
            next = left;
        i++;
    }
    return next;
}

void pd_decode_req_end(pd_decode_t *d, pd_decode_req_t *q)
{
    /* Before the KV arrived, a prefill may still be pushing into the blocks it was given:
     * keep them out of use until its transfer deadline has surely passed. The pinned
     * cached prefix is never pushed to, so it is released now. */
    bool quarantine = q->state == PD_DECODE_REQ_WAIT_KV && q->recv != NULL &&
                      q->n_blocks > q->n_cached && d->n_quarantine < PD_DECODE_MAX_REQS &&
                      !pd_worker_stopping();
    pd_xfer_recv_destroy(&q->recv);
    if (quarantine) {
        pd_kvbm_release(d->rt->bm, q->blocks, q->n_cached);
        memmove(q->blocks, q->blocks + q->n_cached,
                (q->n_blocks - q->n_cached) * sizeof(*q->blocks));
        pd_decode_quarantine_t *e = &d->quarantine[d->n_quarantine++];
        e->blocks = q->blocks;
        e->n_blocks = q->n_blocks - q->n_cached;
        e->release_ms = pd_time_now_ms() + d->rt->args.xfer_timeout_ms + 500u;
        q->blocks = NULL;
        q->n_blocks = 0;
    }
    if (q->n_blocks > 0 && q->blocks != NULL)
        pd_kvbm_release(d->rt->bm, q->blocks, q->n_blocks);
    if (q->state == PD_DECODE_REQ_RUNNING) {
        for (uint32_t i = 0; i < d->n_batch; i++) {
            if (d->batch[i] == q) {
                memmove(&d->batch[i], &d->batch[i + 1], (d->n_batch - i - 1) * sizeof(*d->batch));
                d->n_batch--;
                break;
            }
        }
    }
    free(q->tokens);
    free(q->hashes);
    free(q->blocks);
    free(q->logits);
    memset(q, 0, sizeof(*q));
    d->n_live--;
    pd_worker_load_changed(d->rt->worker);
}

void pd_decode_req_fail(pd_decode_t *d, pd_decode_req_t *q, pd_status_t code, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "decode %s: %s: %s", d->rt->args.id, why, pd_status_str(code));
    pd_log_warn("req %llu: %s", (unsigned long long)q->req_id, msg);
    pd_worker_send_error(d->rt->worker, q->req_id, code, msg);
    pd_decode_req_end(d, q);
}

/* Make the valid full prompt blocks [q->n_cached, n_hashes) findable per the plan. */
static void pd_decode_commit(pd_decode_t *d, pd_decode_req_t *q)
{
    for (uint32_t i = q->n_cached; i < q->n_hashes; i++) {
        uint64_t ttl_ms = pd_proto_cache_plan_block_ttl_ms(&q->plan, i);
        if (ttl_ms == 0)
            continue;
        int stored = 0;
        pd_status_t st = pd_kvbm_commit(d->rt->bm, q->blocks[i], q->hashes[i], ttl_ms, &stored);
        if (st != PD_OK)
            pd_log_warn("req %llu: commit of block %u failed: %s", (unsigned long long)q->req_id, i,
                        pd_status_str(st));
        else if (stored)
            q->n_created_tokens += d->rt->args.block_tokens;
    }
}

/* The recv ranges: for every layer, one range per run of consecutive block ids among the
 * prompt blocks prefill pushes. ranges_p: (n_layers * n_push) entries. */
static size_t pd_decode_ranges(const pd_decode_t *d, const uint32_t *blocks, uint32_t n_push,
                               pd_xfer_range_t *ranges_p)
{
    size_t n = 0;
    size_t lb = pd_kv_block_layer_bytes(&d->rt->layout);
    for (uint32_t l = 0; l < d->rt->layout.n_layers; l++) {
        uint32_t i = 0;
        while (i < n_push) {
            uint32_t j = i + 1;
            while (j < n_push && blocks[j] == blocks[j - 1] + 1)
                j++;
            ranges_p[n].offset = pd_kv_offset(&d->rt->layout, l, blocks[i]);
            ranges_p[n].bytes = (uint64_t)(j - i) * lb;
            n++;
            i = j;
        }
    }
    return n;
}

static pd_status_t pd_decode_reserve_check(const pd_decode_t *d, const pd_proto_reserve_t *r,
                                           const char **why_p)
{
    const uint32_t bt = d->rt->args.block_tokens;
    if (r->n_tokens == 0 || r->tokens == NULL) {
        *why_p = "empty prompt";
        return PD_ERR_INVALID_PARAM;
    }
    if (r->n_block_hashes != r->n_tokens / bt) {
        *why_p = "block_hashes do not match the prompt's full blocks";
        return PD_ERR_INVALID_PARAM;
    }
    if (r->max_tokens == 0) {
        *why_p = "max_tokens is 0";
        return PD_ERR_INVALID_PARAM;
    }
    /* A prompt that fills the context is an error; a max_tokens that overruns it is cut
     * (pd_decode_max_new), as `pdctl generate` does, and the request ends with "length". */
    if (r->n_tokens > d->rt->model->config.max_seq_len) {
        /* The numbers tell the user how much to cut. One event loop per process: a
         * thread-local buffer outlives the call long enough for the error reply. */
        static _Thread_local char why[128];
        snprintf(why, sizeof(why), "the prompt is %u tokens, the model's context %u", r->n_tokens,
                 d->rt->model->config.max_seq_len);
        *why_p = why;
        return PD_ERR_CONTEXT;
    }
    for (uint32_t i = 0; i < r->n_tokens; i++) {
        if (r->tokens[i] < 0 || (uint32_t)r->tokens[i] >= d->rt->vocab) {
            *why_p = "token id outside the vocabulary";
            return PD_ERR_OUT_OF_RANGE;
        }
    }
    if (r->n_stop > PD_PROTO_MAX_STOP) {
        *why_p = "too many stop tokens";
        return PD_ERR_LIMIT;
    }
    return PD_OK;
}

/* Tokens the request may generate: max_tokens, cut to the context. The last generated token
 * is never fed back, so positions 0 .. n_tokens + n - 2 are written: n <= ctx - n_tokens + 1. */
static uint32_t pd_decode_max_new(const pd_decode_t *d, const pd_proto_reserve_t *r)
{
    uint32_t room = d->rt->model->config.max_seq_len - r->n_tokens + 1;
    return r->max_tokens < room ? r->max_tokens : room;
}

void pd_decode_on_reserve(void *state, const pd_proto_reserve_t *r)
{
    pd_decode_t *d = state;
    const uint32_t bt = d->rt->args.block_tokens;
    const char *why = "";
    pd_status_t st = pd_decode_reserve_check(d, r, &why);
    if (st == PD_OK && pd_decode_req_find(d, r->req_id) != NULL) {
        why = "request id already reserved";
        st = PD_ERR_EXISTS;
    }
    pd_decode_req_t *q = NULL;
    for (uint32_t i = 0; st == PD_OK && i < PD_DECODE_MAX_REQS; i++) {
        if (d->reqs[i].state == PD_DECODE_REQ_FREE) {
            q = &d->reqs[i];
            break;
        }
    }
    if (st == PD_OK && q == NULL) {
        why = "too many requests";
        st = PD_ERR_OVERLOADED;
    }
    if (st != PD_OK) {
        pd_log_warn("req %llu: reserve refused: %s", (unsigned long long)r->req_id, why);
        if (st == PD_ERR_CONTEXT) {
            /* The reserved reply carries a status only; the client needs the numbers, so
             * an error with them goes first (the router fails the request on it and then
             * drops the reply as one for a request it no longer has). */
            char msg[256];
            snprintf(msg, sizeof(msg), "decode %s: %s", d->rt->args.id, why);
            pd_worker_send_error(d->rt->worker, r->req_id, st, msg);
        }
        pd_decode_reply_reserved(d, r->req_id, st, NULL);
        return;
    }

    const uint32_t n_prompt_blocks = (r->n_tokens + bt - 1) / bt;
    /* Positions written: the prompt and every generated token but the last. */
    uint32_t n_blocks = (r->n_tokens + pd_decode_max_new(d, r) - 1 + bt - 1) / bt;
    if (n_blocks < n_prompt_blocks)
        n_blocks = n_prompt_blocks;
    memset(q, 0, sizeof(*q));
    q->req_id = r->req_id;
    q->n_tokens = r->n_tokens;
    q->max_tokens = pd_decode_max_new(d, r);
    q->first_step = r->first_step;
    q->n_hashes = r->n_block_hashes;
    q->plan = r->cache;
    q->sampling.temperature = (float)r->sampling.temperature;
    q->sampling.top_p = (float)r->sampling.top_p;
    q->sampling.seed = r->sampling.seed;
    q->n_stop = r->n_stop;
    if (r->n_stop > 0)
        memcpy(q->stop, r->stop, r->n_stop * sizeof(*q->stop));
    q->t_reserve_ns = pd_time_now_ns();
    q->tokens = malloc(((size_t)r->n_tokens + r->max_tokens) * sizeof(*q->tokens));
    q->hashes = malloc(((size_t)r->n_block_hashes + 1) * sizeof(*q->hashes));
    q->blocks = malloc((size_t)n_blocks * sizeof(*q->blocks));
    q->logits = malloc((size_t)d->rt->vocab * sizeof(*q->logits));
    pd_xfer_range_t *ranges =
        malloc(((size_t)d->rt->layout.n_layers * n_prompt_blocks + 1) * sizeof(*ranges));
    q->state = PD_DECODE_REQ_WAIT_KV;
    d->n_live++;
    if (q->tokens == NULL || q->hashes == NULL || q->blocks == NULL || q->logits == NULL ||
        ranges == NULL) {
        free(ranges);
        pd_decode_req_end(d, q);
        pd_decode_reply_reserved(d, r->req_id, PD_ERR_NO_MEMORY, NULL);
        return;
    }
    memcpy(q->tokens, r->tokens, (size_t)r->n_tokens * sizeof(*q->tokens));
    if (r->n_block_hashes > 0)
        memcpy(q->hashes, r->block_hashes, (size_t)r->n_block_hashes * sizeof(*q->hashes));

    /* Pin the longest cached prefix the plan allows, but never the block holding the
     * prompt's last token: prefill computes that token for its logits, so it pushes (or,
     * colocated, writes) that block, and every transfer has at least one range. */
    size_t n_read =
        r->cache.read_blocks < r->n_block_hashes ? r->cache.read_blocks : r->n_block_hashes;
    if (n_read > (r->n_tokens - 1) / bt)
        n_read = (r->n_tokens - 1) / bt;
    size_t n_hit = 0;
    st = pd_kvbm_lookup_prefix(d->rt->bm, q->hashes, n_read, q->blocks, &n_hit);
    if (st != PD_OK)
        n_hit = 0;
    q->n_cached = (uint32_t)n_hit;
    q->n_blocks = (uint32_t)n_hit;
    st = pd_kvbm_alloc(d->rt->bm, n_blocks - n_hit, q->blocks + n_hit);
    if (st != PD_OK) {
        pd_log_info("req %llu: no room for %u blocks", (unsigned long long)r->req_id,
                    n_blocks - (uint32_t)n_hit);
        free(ranges);
        pd_decode_req_end(d, q);
        pd_decode_reply_reserved(d, r->req_id, PD_ERR_NO_RESOURCE, NULL);
        return;
    }
    q->n_blocks = n_blocks;

    size_t n_ranges =
        pd_decode_ranges(d, q->blocks + n_hit, n_prompt_blocks - (uint32_t)n_hit, ranges);
    uint32_t timeout_ms = r->deadline_ms > 0 ? r->deadline_ms : d->rt->args.xfer_timeout_ms;
    st = pd_xfer_recv_expect(d->rt->fabric.engine, q->req_id, ranges, n_ranges, timeout_ms,
                             &q->recv);
    free(ranges);
    if (st != PD_OK) {
        pd_log_warn("req %llu: cannot expect the transfer: %s", (unsigned long long)r->req_id,
                    pd_status_str(st));
        pd_decode_req_end(d, q);
        pd_decode_reply_reserved(d, r->req_id, st, NULL);
        return;
    }
    pd_log_debug("req %llu: reserved %u blocks, %u cached", (unsigned long long)q->req_id,
                 q->n_blocks, q->n_cached);
    pd_decode_reply_reserved(d, q->req_id, PD_OK, q);
    pd_worker_load_changed(d->rt->worker);
}

/* KV complete with token 0 known: commit, queue for the batch, stream token 0. */
static void pd_decode_kv_ready(pd_decode_t *d, pd_decode_req_t *q, int32_t first_token)
{
    pd_decode_commit(d, q);
    q->tokens[q->n_tokens] = first_token;
    q->n_gen = 1;
    q->t_kv_ns = pd_time_now_ns();
    q->t_first_ns = q->t_kv_ns;
    q->t_last_ns = q->t_kv_ns;
    q->state = PD_DECODE_REQ_READY;
    q->admit_seq = ++d->next_admit;
    pd_decode_emit(d, q);
}

void pd_decode_poll_recvs(pd_decode_t *d)
{
    if (d->n_live == 0)
        return;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++) {
        pd_decode_req_t *q = &d->reqs[i];
        if (q->state != PD_DECODE_REQ_WAIT_KV || q->recv == NULL)
            continue;
        pd_status_t st = pd_xfer_recv_status(q->recv);
        if (st == PD_INPROGRESS)
            continue;
        if (st != PD_OK) {
            pd_decode_req_fail(d, q, st, "KV transfer failed");
            continue;
        }
        const void *payload = NULL;
        size_t payload_bytes = 0;
        pd_worker_kv_payload_t p;
        st = pd_xfer_recv_payload(q->recv, &payload, &payload_bytes);
        if (st == PD_OK)
            st = pd_worker_kv_payload_unpack(payload, payload_bytes, &p);
        if (st != PD_OK || p.req_id != q->req_id || p.first_token < 0 ||
            (uint32_t)p.first_token >= d->rt->vocab) {
            pd_decode_req_fail(d, q, PD_ERR_PROTO, "bad transfer payload");
            continue;
        }
        pd_xfer_recv_destroy(&q->recv);
        pd_decode_kv_ready(d, q, p.first_token);
    }
}

/* Between layers of a long local prefill: keep heartbeating. */
static void pd_decode_on_layer(void *arg, uint32_t layer)
{
    (void)layer;
    pd_worker_tick(arg);
}

void pd_decode_on_prefill(void *state, const pd_proto_prefill_t *p)
{
    pd_decode_t *d = state;
    pd_decode_req_t *q = pd_decode_req_find(d, p->req_id);
    if (d->rt->args.role != PD_PROTO_ROLE_BOTH) {
        pd_worker_send_error(d->rt->worker, p->req_id, PD_ERR_UNSUPPORTED,
                             "decode worker is not colocated: it does not prefill");
        if (q != NULL)
            pd_decode_req_end(d, q);
        return;
    }
    if (q == NULL || q->state != PD_DECODE_REQ_WAIT_KV) {
        pd_worker_send_error(d->rt->worker, p->req_id, PD_ERR_NOT_FOUND,
                             "prefill for a request this worker has not reserved");
        return;
    }
    if (strcmp(p->dest_worker_id, d->rt->args.id) != 0 || p->n_tokens != q->n_tokens ||
        memcmp(p->tokens, q->tokens, (size_t)q->n_tokens * sizeof(*q->tokens)) != 0) {
        pd_decode_req_fail(d, q, PD_ERR_INVALID_PARAM,
                           "colocated prefill must target this worker with the reserved prompt");
        return;
    }
    pd_xfer_recv_destroy(&q->recv);
    if (p->sampling.seed != q->sampling.seed)
        pd_log_warn("req %llu: prefill and reserve disagree on the seed",
                    (unsigned long long)q->req_id);

    const uint32_t start = q->n_cached * d->rt->args.block_tokens;
    pd_fwd_seq_t seq = {q->tokens + start, q->n_tokens - start, start,
                        q->blocks,         q->n_blocks,         q->logits};
    uint64_t t0 = pd_time_now_ns();
    pd_status_t st = pd_role_forward(d->rt, &seq, 1, pd_decode_on_layer, d->rt->worker);
    if (st != PD_OK) {
        pd_decode_req_fail(d, q, st, "local prefill failed");
        return;
    }
    int32_t first =
        pd_sample_token(&q->sampling, q->logits, d->rt->vocab, q->first_step, d->scratch);
    double prefill_ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);

    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_PREFILLED;
    msg.u.prefilled.req_id = q->req_id;
    msg.u.prefilled.first_token = first;
    msg.u.prefilled.n_computed_tokens = q->n_tokens - start;
    /* The pinned prefix is decode's cache read (done reports it); counting it here too
     * would count it twice in the router's usage sum. */
    msg.u.prefilled.n_cached_tokens = 0;
    msg.u.prefilled.prefill_ms = prefill_ms;
    msg.u.prefilled.transfer_ms = 0.0;
    pd_worker_send(d->rt->worker, &msg);
    pd_decode_kv_ready(d, q, first);
}

void pd_decode_on_cancel(void *state, uint64_t req_id)
{
    pd_decode_t *d = state;
    pd_decode_req_t *q = pd_decode_req_find(d, req_id);
    if (q == NULL) {
        pd_log_debug("cancel of unknown req %llu", (unsigned long long)req_id);
        return;
    }
    pd_log_info("req %llu: canceled by the router", (unsigned long long)req_id);
    pd_decode_req_end(d, q);
}
