/* Encoding: each message is checked against the limits its decoder enforces, then written
 * as one map {"v": 1, "type": name, fields...}. */
#include "pd/proto.h"
#include "proto_int.h"

#include <math.h>
#include <string.h>

static pd_status_t pd_proto_enc_check_str(const char *s, size_t max_bytes)
{
    if (s == NULL)
        return PD_ERR_INVALID_PARAM;
    return (strnlen(s, max_bytes + 1) > max_bytes) ? PD_ERR_LIMIT : PD_OK;
}

static pd_status_t pd_proto_enc_check_ids(const int32_t *ids, uint32_t n, uint32_t max_n)
{
    if (n > max_n)
        return PD_ERR_LIMIT;
    if (n > 0 && ids == NULL)
        return PD_ERR_INVALID_PARAM;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

static pd_status_t pd_proto_enc_check_sampling(const pd_proto_sampling_t *s)
{
    if (!isfinite(s->temperature) || s->temperature < 0 || s->temperature > 100)
        return PD_ERR_INVALID_PARAM;
    if (!isfinite(s->top_p) || s->top_p <= 0 || s->top_p > 1)
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

static void pd_proto_enc_head(pd_mp_writer_t *w, pd_proto_type_t type, uint32_t n_fields)
{
    pd_mp_put_map(w, n_fields + 2);
    pd_mp_put_str(w, "v");
    pd_mp_put_u64(w, PD_PROTO_VERSION);
    pd_mp_put_str(w, "type");
    pd_mp_put_str(w, pd_proto_type_name(type));
}

static void pd_proto_enc_key(pd_mp_writer_t *w, const char *key)
{
    pd_mp_put_str(w, key);
}

static void pd_proto_enc_kstr(pd_mp_writer_t *w, const char *key, const char *s)
{
    pd_mp_put_str(w, key);
    pd_mp_put_str(w, s);
}

static void pd_proto_enc_ku64(pd_mp_writer_t *w, const char *key, uint64_t v)
{
    pd_mp_put_str(w, key);
    pd_mp_put_u64(w, v);
}

static void pd_proto_enc_kf64(pd_mp_writer_t *w, const char *key, double v)
{
    pd_mp_put_str(w, key);
    pd_mp_put_f64(w, v);
}

static void pd_proto_enc_ids(pd_mp_writer_t *w, const char *key, const int32_t *ids, uint32_t n)
{
    pd_mp_put_str(w, key);
    pd_mp_put_array(w, n);
    for (uint32_t i = 0; i < n; i++)
        pd_mp_put_u64(w, (uint64_t)ids[i]);
}

static void pd_proto_enc_u64s(pd_mp_writer_t *w, const char *key, const uint64_t *v, uint32_t n)
{
    pd_mp_put_str(w, key);
    pd_mp_put_array(w, n);
    for (uint32_t i = 0; i < n; i++)
        pd_mp_put_u64(w, v[i]);
}

static void pd_proto_enc_u32s(pd_mp_writer_t *w, const char *key, const uint32_t *v, uint32_t n)
{
    pd_mp_put_str(w, key);
    pd_mp_put_array(w, n);
    for (uint32_t i = 0; i < n; i++)
        pd_mp_put_u64(w, v[i]);
}

static void pd_proto_enc_sampling_fields(pd_mp_writer_t *w, const pd_proto_sampling_t *s)
{
    pd_proto_enc_kf64(w, "temperature", s->temperature);
    pd_proto_enc_kf64(w, "top_p", s->top_p);
    pd_proto_enc_ku64(w, "seed", s->seed);
}

static pd_status_t pd_proto_enc_check_plan(const pd_proto_cache_plan_t *p, uint32_t n_hashes)
{
    if (p->n_writes > PD_PROTO_MAX_BREAKPOINTS || p->read_blocks > n_hashes)
        return PD_ERR_INVALID_PARAM;
    for (uint32_t i = 0; i < p->n_writes; i++)
        if (p->writes[i].n_blocks == 0 || p->writes[i].n_blocks > n_hashes)
            return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

static void pd_proto_enc_plan(pd_mp_writer_t *w, const pd_proto_cache_plan_t *p)
{
    pd_proto_enc_key(w, "cache");
    pd_mp_put_map(w, 2);
    pd_proto_enc_ku64(w, "read_blocks", p->read_blocks);
    pd_proto_enc_key(w, "write");
    pd_mp_put_array(w, p->n_writes);
    for (uint32_t i = 0; i < p->n_writes; i++) {
        pd_mp_put_map(w, 2);
        pd_proto_enc_ku64(w, "n_blocks", p->writes[i].n_blocks);
        pd_proto_enc_kstr(w, "ttl", pd_proto_ttl_name(p->writes[i].ttl_s));
    }
}

static pd_status_t pd_proto_enc_generate(const pd_proto_generate_t *g, pd_mp_writer_t *w)
{
    pd_status_t st;
    bool has_prompt = (g->prompt != NULL);

    if (has_prompt == (g->tokens != NULL))
        return PD_ERR_INVALID_PARAM;
    if (has_prompt && (g->prompt_bytes == 0 || g->prompt_bytes > PD_PROTO_MAX_PROMPT_BYTES))
        return g->prompt_bytes == 0 ? PD_ERR_INVALID_PARAM : PD_ERR_LIMIT;
    if (!has_prompt && g->n_tokens == 0)
        return PD_ERR_INVALID_PARAM;
    if ((st = pd_proto_enc_check_ids(g->tokens, g->n_tokens, PD_PROTO_MAX_PROMPT_TOKENS)) !=
            PD_OK ||
        (st = pd_proto_enc_check_ids(g->stop, g->n_stop, PD_PROTO_MAX_STOP)) != PD_OK ||
        (st = pd_proto_enc_check_str(g->id, PD_PROTO_ID_CAP - 1)) != PD_OK ||
        (st = pd_proto_enc_check_str(g->tenant, PD_PROTO_NAME_CAP - 1)) != PD_OK ||
        (st = pd_proto_enc_check_sampling(&g->sampling)) != PD_OK)
        return st;
    if (g->max_tokens == 0)
        return PD_ERR_INVALID_PARAM;
    if (g->max_tokens > PD_PROTO_MAX_NEW_TOKENS)
        return PD_ERR_LIMIT;
    if ((unsigned)g->cache.mode > PD_PROTO_CACHE_OFF ||
        g->cache.n_breakpoints > PD_PROTO_MAX_BREAKPOINTS ||
        (g->cache.mode == PD_PROTO_CACHE_EXPLICIT) != (g->cache.n_breakpoints > 0))
        return PD_ERR_INVALID_PARAM;
    for (uint32_t i = 0; i < g->cache.n_breakpoints; i++) {
        const pd_proto_breakpoint_t *bp = &g->cache.breakpoints[i];
        if (bp->offset_tokens == 0 || bp->offset_tokens > PD_PROTO_MAX_PROMPT_TOKENS ||
            (i > 0 && bp->offset_tokens <= g->cache.breakpoints[i - 1].offset_tokens) ||
            (bp->ttl_s != PD_PROTO_TTL_5M_S && bp->ttl_s != PD_PROTO_TTL_1H_S))
            return PD_ERR_INVALID_PARAM;
    }

    pd_proto_enc_head(w, PD_PROTO_TYPE_GENERATE, 10);
    pd_proto_enc_kstr(w, "id", g->id);
    if (has_prompt) {
        pd_proto_enc_key(w, "prompt");
        pd_mp_put_strn(w, g->prompt, g->prompt_bytes);
    } else {
        pd_proto_enc_ids(w, "tokens", g->tokens, g->n_tokens);
    }
    pd_proto_enc_ku64(w, "max_tokens", g->max_tokens);
    pd_proto_enc_sampling_fields(w, &g->sampling);
    pd_proto_enc_ids(w, "stop", g->stop, g->n_stop);
    pd_proto_enc_kstr(w, "tenant", g->tenant);
    pd_proto_enc_key(w, "cache");
    pd_mp_put_map(w, 2);
    pd_proto_enc_kstr(w, "mode", pd_proto_cache_mode_name(g->cache.mode));
    pd_proto_enc_key(w, "breakpoints");
    pd_mp_put_array(w, g->cache.n_breakpoints);
    for (uint32_t i = 0; i < g->cache.n_breakpoints; i++) {
        pd_mp_put_map(w, 2);
        pd_proto_enc_ku64(w, "offset", g->cache.breakpoints[i].offset_tokens);
        pd_proto_enc_kstr(w, "ttl", pd_proto_ttl_name(g->cache.breakpoints[i].ttl_s));
    }
    pd_proto_enc_key(w, "stream");
    pd_mp_put_bool(w, g->stream);
    return PD_OK;
}

static pd_status_t pd_proto_enc_done(const pd_proto_done_t *x, pd_mp_writer_t *w)
{
    pd_status_t st;
    if ((unsigned)x->finish_reason > PD_PROTO_FINISH_EOS)
        return PD_ERR_INVALID_PARAM;
    if ((st = pd_proto_enc_check_ids(x->tokens, x->n_tokens, PD_PROTO_MAX_NEW_TOKENS)) != PD_OK ||
        (st = pd_proto_enc_check_str(x->id, PD_PROTO_ID_CAP - 1)) != PD_OK ||
        (st = pd_proto_enc_check_str(x->prefill_worker, PD_PROTO_NAME_CAP - 1)) != PD_OK ||
        (st = pd_proto_enc_check_str(x->decode_worker, PD_PROTO_NAME_CAP - 1)) != PD_OK)
        return st;
    pd_proto_enc_head(w, PD_PROTO_TYPE_DONE, 6);
    pd_proto_enc_kstr(w, "id", x->id);
    pd_proto_enc_kstr(w, "finish_reason", pd_proto_finish_name(x->finish_reason));
    pd_proto_enc_ids(w, "tokens", x->tokens, x->n_tokens);
    pd_proto_enc_key(w, "usage");
    pd_mp_put_map(w, 4);
    pd_proto_enc_ku64(w, "input_tokens", x->usage.input_tokens);
    pd_proto_enc_ku64(w, "cache_creation_input_tokens", x->usage.cache_creation_input_tokens);
    pd_proto_enc_ku64(w, "cache_read_input_tokens", x->usage.cache_read_input_tokens);
    pd_proto_enc_ku64(w, "output_tokens", x->usage.output_tokens);
    pd_proto_enc_key(w, "timings");
    pd_mp_put_map(w, 6);
    pd_proto_enc_kf64(w, "queue_ms", x->timings.queue_ms);
    pd_proto_enc_kf64(w, "prefill_ms", x->timings.prefill_ms);
    pd_proto_enc_kf64(w, "transfer_ms", x->timings.transfer_ms);
    pd_proto_enc_kf64(w, "ttft_ms", x->timings.ttft_ms);
    pd_proto_enc_kf64(w, "tpot_ms", x->timings.tpot_ms);
    pd_proto_enc_kf64(w, "total_ms", x->timings.total_ms);
    pd_proto_enc_key(w, "workers");
    pd_mp_put_map(w, 2);
    pd_proto_enc_kstr(w, "prefill", x->prefill_worker);
    pd_proto_enc_kstr(w, "decode", x->decode_worker);
    return PD_OK;
}

static pd_status_t pd_proto_enc_status_reply(const pd_proto_status_reply_t *x, pd_mp_writer_t *w)
{
    if (x->n_workers > PD_PROTO_MAX_WORKERS)
        return PD_ERR_LIMIT;
    if (x->n_workers > 0 && x->workers == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_proto_enc_head(w, PD_PROTO_TYPE_STATUS_REPLY, 4);
    pd_proto_enc_key(w, "workers");
    pd_mp_put_array(w, x->n_workers);
    for (uint32_t i = 0; i < x->n_workers; i++) {
        const pd_proto_worker_info_t *wi = &x->workers[i];
        pd_mp_put_map(w, 8);
        pd_proto_enc_kstr(w, "id", wi->id);
        pd_proto_enc_kstr(w, "role", pd_proto_role_name(wi->role));
        pd_proto_enc_ku64(w, "epoch", wi->epoch);
        pd_proto_enc_kstr(w, "state", wi->state);
        pd_proto_enc_key(w, "load");
        pd_mp_put_map(w, 2);
        pd_proto_enc_ku64(w, "running", wi->running);
        pd_proto_enc_ku64(w, "queued", wi->queued);
        pd_proto_enc_ku64(w, "n_blocks", wi->n_blocks);
        pd_proto_enc_ku64(w, "free_blocks", wi->free_blocks);
        pd_proto_enc_ku64(w, "directory_blocks", wi->directory_blocks);
    }
    pd_proto_enc_ku64(w, "directory_blocks", x->directory_blocks);
    pd_proto_enc_ku64(w, "queue_depth", x->queue_depth);
    pd_proto_enc_ku64(w, "requests_in_flight", x->requests_in_flight);
    return PD_OK;
}

static pd_status_t pd_proto_enc_check_work(const int32_t *tokens, uint32_t n_tokens,
                                           const uint64_t *hashes, uint32_t n_hashes,
                                           const pd_proto_sampling_t *sampling,
                                           const pd_proto_cache_plan_t *plan)
{
    pd_status_t st;
    if (n_tokens == 0 || n_hashes > n_tokens || n_hashes > PD_PROTO_MAX_BLOCKS ||
        (n_hashes > 0 && hashes == NULL))
        return PD_ERR_INVALID_PARAM;
    if ((st = pd_proto_enc_check_ids(tokens, n_tokens, PD_PROTO_MAX_PROMPT_TOKENS)) != PD_OK ||
        (st = pd_proto_enc_check_sampling(sampling)) != PD_OK ||
        (st = pd_proto_enc_check_plan(plan, n_hashes)) != PD_OK)
        return st;
    return PD_OK;
}

static void pd_proto_enc_work(pd_mp_writer_t *w, uint64_t req_id, const int32_t *tokens,
                              uint32_t n_tokens, const uint64_t *hashes, uint32_t n_hashes,
                              const pd_proto_sampling_t *sampling,
                              const pd_proto_cache_plan_t *plan, uint32_t deadline_ms)
{
    pd_proto_enc_ku64(w, "req_id", req_id);
    pd_proto_enc_ids(w, "tokens", tokens, n_tokens);
    pd_proto_enc_u64s(w, "block_hashes", hashes, n_hashes);
    pd_proto_enc_key(w, "sampling");
    pd_mp_put_map(w, 3);
    pd_proto_enc_sampling_fields(w, sampling);
    pd_proto_enc_plan(w, plan);
    pd_proto_enc_ku64(w, "deadline_ms", deadline_ms);
}

static pd_status_t pd_proto_enc_reserve(const pd_proto_reserve_t *x, pd_mp_writer_t *w)
{
    pd_status_t st;
    if (x->req_id == 0 || x->max_tokens == 0 || x->deadline_ms > PD_PROTO_MAX_DEADLINE_MS)
        return PD_ERR_INVALID_PARAM;
    if (x->max_tokens > PD_PROTO_MAX_NEW_TOKENS)
        return PD_ERR_LIMIT;
    if ((st = pd_proto_enc_check_work(x->tokens, x->n_tokens, x->block_hashes, x->n_block_hashes,
                                      &x->sampling, &x->cache)) != PD_OK ||
        (st = pd_proto_enc_check_ids(x->stop, x->n_stop, PD_PROTO_MAX_STOP)) != PD_OK)
        return st;
    pd_proto_enc_head(w, PD_PROTO_TYPE_RESERVE, 8);
    pd_proto_enc_work(w, x->req_id, x->tokens, x->n_tokens, x->block_hashes, x->n_block_hashes,
                      &x->sampling, &x->cache, x->deadline_ms);
    pd_proto_enc_ku64(w, "max_tokens", x->max_tokens);
    pd_proto_enc_ids(w, "stop", x->stop, x->n_stop);
    return PD_OK;
}

static pd_status_t pd_proto_enc_prefill(const pd_proto_prefill_t *x, pd_mp_writer_t *w)
{
    pd_status_t st;
    if (x->req_id == 0 || x->deadline_ms > PD_PROTO_MAX_DEADLINE_MS ||
        x->n_skip_blocks > x->n_block_hashes ||
        (x->n_dest_block_table > 0 && x->dest_block_table == NULL) ||
        (x->dest_xfer_desc_bytes > 0 && x->dest_xfer_desc == NULL))
        return PD_ERR_INVALID_PARAM;
    if (x->n_dest_block_table > PD_PROTO_MAX_BLOCKS ||
        x->dest_xfer_desc_bytes > PD_PROTO_MAX_XFER_DESC_BYTES)
        return PD_ERR_LIMIT;
    if ((st = pd_proto_enc_check_work(x->tokens, x->n_tokens, x->block_hashes, x->n_block_hashes,
                                      &x->sampling, &x->cache)) != PD_OK ||
        (st = pd_proto_enc_check_str(x->dest_worker_id, PD_PROTO_NAME_CAP - 1)) != PD_OK)
        return st;
    pd_proto_enc_head(w, PD_PROTO_TYPE_PREFILL, 8);
    pd_proto_enc_work(w, x->req_id, x->tokens, x->n_tokens, x->block_hashes, x->n_block_hashes,
                      &x->sampling, &x->cache, x->deadline_ms);
    pd_proto_enc_ku64(w, "n_skip_blocks", x->n_skip_blocks);
    pd_proto_enc_key(w, "dest");
    pd_mp_put_map(w, 4);
    pd_proto_enc_kstr(w, "worker_id", x->dest_worker_id);
    pd_proto_enc_ku64(w, "epoch", x->dest_epoch);
    pd_proto_enc_key(w, "xfer_desc");
    pd_mp_put_bin(w, x->dest_xfer_desc ? x->dest_xfer_desc : "", x->dest_xfer_desc_bytes);
    pd_proto_enc_u32s(w, "block_table", x->dest_block_table, x->n_dest_block_table);
    return PD_OK;
}

static pd_status_t pd_proto_enc_snapshot(const pd_proto_kv_snapshot_t *x, pd_mp_writer_t *w)
{
    pd_status_t st = pd_proto_enc_check_str(x->worker_id, PD_PROTO_NAME_CAP - 1);
    if (st != PD_OK)
        return st;
    for (int t = 0; t < PD_PROTO_N_TIERS; t++) {
        if (x->n_hashes[t] > PD_PROTO_MAX_SNAPSHOT_HASHES)
            return PD_ERR_LIMIT;
        if (x->n_hashes[t] > 0 && x->hashes[t] == NULL)
            return PD_ERR_INVALID_PARAM;
    }
    pd_proto_enc_head(w, PD_PROTO_TYPE_KV_SNAPSHOT, 4);
    pd_proto_enc_kstr(w, "worker_id", x->worker_id);
    pd_proto_enc_ku64(w, "epoch", x->epoch);
    pd_proto_enc_ku64(w, "seq", x->seq);
    pd_proto_enc_key(w, "hashes_by_tier");
    pd_mp_put_map(w, PD_PROTO_N_TIERS);
    for (int t = 0; t < PD_PROTO_N_TIERS; t++)
        pd_proto_enc_u64s(w, pd_proto_tier_name((pd_proto_tier_t)t), x->hashes[t], x->n_hashes[t]);
    return PD_OK;
}

static pd_status_t pd_proto_enc_kv_event(const pd_proto_kv_event_t *x, pd_mp_writer_t *w)
{
    pd_status_t st = pd_proto_enc_check_str(x->worker_id, PD_PROTO_NAME_CAP - 1);
    if (st != PD_OK)
        return st;
    if (x->seq == 0 || (x->n_events > 0 && x->events == NULL))
        return PD_ERR_INVALID_PARAM;
    if (x->n_events > PD_PROTO_MAX_EVENTS)
        return PD_ERR_LIMIT;
    for (uint32_t i = 0; i < x->n_events; i++) {
        const pd_proto_kv_event_item_t *e = &x->events[i];
        if ((unsigned)e->kind > PD_PROTO_EVENT_TIER || (unsigned)e->tier >= PD_PROTO_N_TIERS ||
            (e->n_hashes > 0 && e->hashes == NULL))
            return PD_ERR_INVALID_PARAM;
        if (e->n_hashes > PD_PROTO_MAX_EVENT_HASHES)
            return PD_ERR_LIMIT;
    }
    pd_proto_enc_head(w, PD_PROTO_TYPE_KV_EVENT, 4);
    pd_proto_enc_kstr(w, "worker_id", x->worker_id);
    pd_proto_enc_ku64(w, "epoch", x->epoch);
    pd_proto_enc_ku64(w, "seq", x->seq);
    pd_proto_enc_key(w, "events");
    pd_mp_put_array(w, x->n_events);
    for (uint32_t i = 0; i < x->n_events; i++) {
        const pd_proto_kv_event_item_t *e = &x->events[i];
        pd_mp_put_map(w, 3);
        pd_proto_enc_kstr(w, "kind", pd_proto_event_kind_name(e->kind));
        pd_proto_enc_kstr(w, "tier", pd_proto_tier_name(e->tier));
        pd_proto_enc_u64s(w, "hashes", e->hashes, e->n_hashes);
    }
    return PD_OK;
}

static pd_status_t pd_proto_enc_error(pd_mp_writer_t *w, pd_proto_type_t type, bool client,
                                      const char *id, uint64_t req_id, pd_status_t code,
                                      const char *message)
{
    pd_status_t st;
    if (code >= 0)
        return PD_ERR_INVALID_PARAM;
    if (message == NULL)
        message = "";
    if ((st = pd_proto_enc_check_str(message, PD_PROTO_MAX_MESSAGE_BYTES)) != PD_OK)
        return st;
    if (client && (st = pd_proto_enc_check_str(id, PD_PROTO_ID_CAP - 1)) != PD_OK)
        return st;
    pd_proto_enc_head(w, type, 3);
    if (client)
        pd_proto_enc_kstr(w, "id", id);
    else
        pd_proto_enc_ku64(w, "req_id", req_id);
    pd_proto_enc_kstr(w, "code", pd_status_name(code));
    pd_proto_enc_kstr(w, "message", message);
    return PD_OK;
}

pd_status_t pd_proto_encode(const pd_proto_msg_t *msg, pd_mp_writer_t *w)
{
    const pd_proto_msg_t *m = msg;
    pd_status_t st;

    switch (m->type) {
    case PD_PROTO_TYPE_GENERATE:
        return pd_proto_enc_generate(&m->u.generate, w);
    case PD_PROTO_TYPE_STATUS:
    case PD_PROTO_TYPE_RESYNC:
        pd_proto_enc_head(w, m->type, 0);
        return PD_OK;
    case PD_PROTO_TYPE_CANCEL:
    case PD_PROTO_TYPE_ACCEPTED: {
        const char *id = (m->type == PD_PROTO_TYPE_CANCEL) ? m->u.cancel.id : m->u.accepted.id;
        if ((st = pd_proto_enc_check_str(id, PD_PROTO_ID_CAP - 1)) != PD_OK)
            return st;
        pd_proto_enc_head(w, m->type, 1);
        pd_proto_enc_kstr(w, "id", id);
        return PD_OK;
    }
    case PD_PROTO_TYPE_TOKEN: {
        const pd_proto_token_t *x = &m->u.token;
        if ((st = pd_proto_enc_check_str(x->id, PD_PROTO_ID_CAP - 1)) != PD_OK)
            return st;
        if (x->token < 0 || x->index >= PD_PROTO_MAX_NEW_TOKENS ||
            (x->text == NULL && x->text_bytes > 0))
            return PD_ERR_INVALID_PARAM;
        if (x->text_bytes > PD_PROTO_MAX_PIECE_BYTES)
            return PD_ERR_LIMIT;
        pd_proto_enc_head(w, m->type, 4);
        pd_proto_enc_kstr(w, "id", x->id);
        pd_proto_enc_ku64(w, "index", x->index);
        pd_proto_enc_ku64(w, "token", (uint64_t)x->token);
        pd_proto_enc_key(w, "text");
        pd_mp_put_strn(w, x->text_bytes ? x->text : "", x->text_bytes);
        return PD_OK;
    }
    case PD_PROTO_TYPE_DONE:
        return pd_proto_enc_done(&m->u.done, w);
    case PD_PROTO_TYPE_ERROR:
        return pd_proto_enc_error(w, m->type, true, m->u.error.id, 0, m->u.error.code,
                                  m->u.error.message);
    case PD_PROTO_TYPE_STATUS_REPLY:
        return pd_proto_enc_status_reply(&m->u.status_reply, w);
    case PD_PROTO_TYPE_REGISTER: {
        const pd_proto_register_t *x = &m->u.reg;
        if ((st = pd_proto_enc_check_str(x->worker_id, PD_PROTO_NAME_CAP - 1)) != PD_OK ||
            (st = pd_proto_enc_check_str(x->model_id, PD_PROTO_MODEL_ID_CAP - 1)) != PD_OK ||
            (st = pd_proto_enc_check_str(x->events_endpoint, PD_PROTO_ENDPOINT_CAP - 1)) != PD_OK)
            return st;
        if (x->worker_id[0] == '\0' || (unsigned)x->role > PD_PROTO_ROLE_BOTH ||
            x->block_tokens == 0 || x->block_tokens > PD_PROTO_MAX_BLOCK_TOKENS ||
            (x->xfer_desc == NULL && x->xfer_desc_bytes > 0))
            return PD_ERR_INVALID_PARAM;
        if (x->xfer_desc_bytes > PD_PROTO_MAX_XFER_DESC_BYTES)
            return PD_ERR_LIMIT;
        pd_proto_enc_head(w, m->type, 8);
        pd_proto_enc_kstr(w, "worker_id", x->worker_id);
        pd_proto_enc_kstr(w, "role", pd_proto_role_name(x->role));
        pd_proto_enc_ku64(w, "epoch", x->epoch);
        pd_proto_enc_kstr(w, "model_id", x->model_id);
        pd_proto_enc_ku64(w, "block_tokens", x->block_tokens);
        pd_proto_enc_ku64(w, "n_blocks", x->n_blocks);
        pd_proto_enc_key(w, "xfer_desc");
        pd_mp_put_bin(w, x->xfer_desc ? x->xfer_desc : "", x->xfer_desc_bytes);
        pd_proto_enc_kstr(w, "events_endpoint", x->events_endpoint);
        return PD_OK;
    }
    case PD_PROTO_TYPE_REGISTERED:
        if (m->u.registered.heartbeat_ms == 0)
            return PD_ERR_INVALID_PARAM;
        pd_proto_enc_head(w, m->type, 1);
        pd_proto_enc_ku64(w, "heartbeat_ms", m->u.registered.heartbeat_ms);
        return PD_OK;
    case PD_PROTO_TYPE_HEARTBEAT: {
        const pd_proto_heartbeat_t *x = &m->u.heartbeat;
        if ((st = pd_proto_enc_check_str(x->worker_id, PD_PROTO_NAME_CAP - 1)) != PD_OK)
            return st;
        pd_proto_enc_head(w, m->type, 4);
        pd_proto_enc_kstr(w, "worker_id", x->worker_id);
        pd_proto_enc_ku64(w, "epoch", x->epoch);
        pd_proto_enc_ku64(w, "kv_seq", x->kv_seq);
        pd_proto_enc_key(w, "load");
        pd_mp_put_map(w, 3);
        pd_proto_enc_ku64(w, "running", x->running);
        pd_proto_enc_ku64(w, "queued", x->queued);
        pd_proto_enc_ku64(w, "free_blocks", x->free_blocks);
        return PD_OK;
    }
    case PD_PROTO_TYPE_RESERVE:
        return pd_proto_enc_reserve(&m->u.reserve, w);
    case PD_PROTO_TYPE_RESERVED: {
        const pd_proto_reserved_t *x = &m->u.reserved;
        if (x->req_id == 0 || (x->n_block_table > 0 && x->block_table == NULL) ||
            (x->status == PD_OK && x->n_cached_blocks > x->n_block_table))
            return PD_ERR_INVALID_PARAM;
        if (x->n_block_table > PD_PROTO_MAX_BLOCKS)
            return PD_ERR_LIMIT;
        pd_proto_enc_head(w, m->type, 4);
        pd_proto_enc_ku64(w, "req_id", x->req_id);
        pd_proto_enc_kstr(w, "status", pd_status_name(x->status));
        pd_proto_enc_ku64(w, "n_cached_blocks", x->n_cached_blocks);
        pd_proto_enc_u32s(w, "block_table", x->block_table, x->n_block_table);
        return PD_OK;
    }
    case PD_PROTO_TYPE_PREFILL:
        return pd_proto_enc_prefill(&m->u.prefill, w);
    case PD_PROTO_TYPE_PREFILLED: {
        const pd_proto_prefilled_t *x = &m->u.prefilled;
        if (x->req_id == 0 || x->first_token < 0 || !isfinite(x->prefill_ms) ||
            !isfinite(x->transfer_ms) || x->prefill_ms < 0 || x->transfer_ms < 0)
            return PD_ERR_INVALID_PARAM;
        pd_proto_enc_head(w, m->type, 7);
        pd_proto_enc_ku64(w, "req_id", x->req_id);
        pd_proto_enc_ku64(w, "first_token", (uint64_t)x->first_token);
        pd_proto_enc_ku64(w, "n_computed_tokens", x->n_computed_tokens);
        pd_proto_enc_ku64(w, "n_cached_tokens", x->n_cached_tokens);
        pd_proto_enc_ku64(w, "cache_creation_input_tokens", x->cache_creation_input_tokens);
        pd_proto_enc_kf64(w, "prefill_ms", x->prefill_ms);
        pd_proto_enc_kf64(w, "transfer_ms", x->transfer_ms);
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_TOKEN: {
        const pd_proto_worker_token_t *x = &m->u.worker_token;
        if (x->req_id == 0 || x->token < 0 || x->index >= PD_PROTO_MAX_NEW_TOKENS)
            return PD_ERR_INVALID_PARAM;
        pd_proto_enc_head(w, m->type, 3);
        pd_proto_enc_ku64(w, "req_id", x->req_id);
        pd_proto_enc_ku64(w, "index", x->index);
        pd_proto_enc_ku64(w, "token", (uint64_t)x->token);
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_DONE: {
        const pd_proto_worker_done_t *x = &m->u.worker_done;
        if (x->req_id == 0 || (unsigned)x->finish_reason > PD_PROTO_FINISH_EOS ||
            x->output_tokens > PD_PROTO_MAX_NEW_TOKENS || !isfinite(x->tpot_ms) ||
            !isfinite(x->transfer_wait_ms) || x->tpot_ms < 0 || x->transfer_wait_ms < 0)
            return PD_ERR_INVALID_PARAM;
        pd_proto_enc_head(w, m->type, 5);
        pd_proto_enc_ku64(w, "req_id", x->req_id);
        pd_proto_enc_kstr(w, "finish_reason", pd_proto_finish_name(x->finish_reason));
        pd_proto_enc_ku64(w, "output_tokens", x->output_tokens);
        pd_proto_enc_key(w, "usage");
        pd_mp_put_map(w, 2);
        pd_proto_enc_ku64(w, "cache_read_input_tokens", x->cache_read_input_tokens);
        pd_proto_enc_ku64(w, "cache_creation_input_tokens", x->cache_creation_input_tokens);
        pd_proto_enc_key(w, "timings");
        pd_mp_put_map(w, 2);
        pd_proto_enc_kf64(w, "transfer_wait_ms", x->transfer_wait_ms);
        pd_proto_enc_kf64(w, "tpot_ms", x->tpot_ms);
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_ERROR:
        return pd_proto_enc_error(w, m->type, false, NULL, m->u.worker_error.req_id,
                                  m->u.worker_error.code, m->u.worker_error.message);
    case PD_PROTO_TYPE_WORKER_CANCEL:
        if (m->u.worker_cancel.req_id == 0)
            return PD_ERR_INVALID_PARAM;
        pd_proto_enc_head(w, m->type, 1);
        pd_proto_enc_ku64(w, "req_id", m->u.worker_cancel.req_id);
        return PD_OK;
    case PD_PROTO_TYPE_KV_SNAPSHOT:
        return pd_proto_enc_snapshot(&m->u.kv_snapshot, w);
    case PD_PROTO_TYPE_KV_EVENT:
        return pd_proto_enc_kv_event(&m->u.kv_event, w);
    default:
        return PD_ERR_INVALID_PARAM;
    }
}
