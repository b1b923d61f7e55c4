/* Decoding of the worker channel (registry, reserve/prefill, the decode stream, snapshots)
 * and of the events channel (kv_event). */
#include "proto_dec_int.h"

#include <string.h>

static pd_status_t pd_proto_dec_register(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_register_t *x = &d->msg->u.reg;
    pd_status_t st;
    int role = 0;
    if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id, sizeof(x->worker_id))) !=
            PD_OK ||
        (st = pd_proto_dec_enum(d, m, "role", REQ, 0, pd_proto_role_lookup, &role)) != PD_OK ||
        (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->epoch)) !=
            PD_OK ||
        (st = pd_proto_dec_strbuf(d, m, "model_id", REQ, x->model_id, sizeof(x->model_id))) !=
            PD_OK ||
        (st = pd_proto_dec_u32(d, m, "block_tokens", REQ, 0, 1, PD_PROTO_MAX_BLOCK_TOKENS,
                               PD_ERR_PROTO, &x->block_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "n_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->n_blocks)) != PD_OK ||
        (st = pd_proto_dec_bin(d, m, "xfer_desc", REQ, PD_PROTO_MAX_XFER_DESC_BYTES, &x->xfer_desc,
                               &x->xfer_desc_bytes)) != PD_OK ||
        (st = pd_proto_dec_strbuf(d, m, "events_endpoint", OPT, x->events_endpoint,
                                  sizeof(x->events_endpoint))) != PD_OK)
        return st;
    if (x->worker_id[0] == '\0')
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'worker_id' is empty");
    x->role = (pd_proto_role_t)role;
    return PD_OK;
}

/* tokens + block_hashes + sampling + stop + cache plan, shared by reserve and prefill. */
static pd_status_t pd_proto_dec_work(pd_proto_dec_t *d, const msgpack_object *m,
                                     const int32_t **tokens_p, uint32_t *n_tokens_p,
                                     const uint64_t **hashes_p, uint32_t *n_hashes_p,
                                     pd_proto_sampling_t *sampling, pd_proto_cache_plan_t *plan)
{
    const msgpack_object *s;
    pd_status_t st;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", REQ, PD_PROTO_MAX_PROMPT_TOKENS, tokens_p,
                                n_tokens_p)) != PD_OK)
        return st;
    if (*n_tokens_p == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'tokens' is empty");
    if ((st = pd_proto_dec_u64s(d, m, "block_hashes", REQ, PD_PROTO_MAX_BLOCKS, hashes_p,
                                n_hashes_p)) != PD_OK)
        return st;
    if (*n_hashes_p > *n_tokens_p)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "more block hashes than tokens");
    if ((st = pd_proto_dec_map(d, m, "sampling", REQ, &s)) != PD_OK ||
        (st = pd_proto_dec_sampling(d, s, sampling)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_plan(d, m, plan)) != PD_OK)
        return st;
    if (plan->read_blocks > *n_hashes_p)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache.read_blocks beyond block_hashes");
    for (uint32_t i = 0; i < plan->n_writes; i++)
        if (plan->writes[i].n_blocks > *n_hashes_p)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache.write beyond block_hashes");
    return PD_OK;
}

pd_status_t pd_proto_dec_worker(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_msg_t *msg = d->msg;
    pd_status_t st;
    const uint32_t max_in = PD_PROTO_MAX_PROMPT_TOKENS + PD_PROTO_MAX_NEW_TOKENS;

    switch (msg->type) {
    case PD_PROTO_TYPE_REGISTER:
        return pd_proto_dec_register(d, m);
    case PD_PROTO_TYPE_REGISTERED:
        return pd_proto_dec_u32(d, m, "heartbeat_ms", OPT, 1000, 1, 3600000, PD_ERR_PROTO,
                                &msg->u.registered.heartbeat_ms);
    case PD_PROTO_TYPE_HEARTBEAT: {
        pd_proto_heartbeat_t *x = &msg->u.heartbeat;
        const msgpack_object *load;
        if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id,
                                      sizeof(x->worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->epoch)) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "kv_seq", OPT, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->kv_seq)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "load", REQ, &load)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "running", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->running)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "queued", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->queued)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "free_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->free_blocks)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_RESERVE: {
        pd_proto_reserve_t *x = &msg->u.reserve;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_work(d, m, &x->tokens, &x->n_tokens, &x->block_hashes,
                                    &x->n_block_hashes, &x->sampling, &x->cache)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "max_tokens", REQ, 0, 1, PD_PROTO_MAX_NEW_TOKENS,
                                   PD_ERR_LIMIT, &x->max_tokens)) != PD_OK ||
            (st = pd_proto_dec_i32s(d, m, "stop", OPT, PD_PROTO_MAX_STOP, &x->stop, &x->n_stop)) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, m, "deadline_ms", REQ, 0, 0, PD_PROTO_MAX_DEADLINE_MS,
                                   PD_ERR_PROTO, &x->deadline_ms)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_RESERVED: {
        pd_proto_reserved_t *x = &msg->u.reserved;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "status", false, &x->status)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_cached_blocks", OPT, 0, 0, PD_PROTO_MAX_BLOCKS,
                                   PD_ERR_LIMIT, &x->n_cached_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32s(d, m, "block_table", OPT, PD_PROTO_MAX_BLOCKS, &x->block_table,
                                    &x->n_block_table)) != PD_OK)
            return st;
        if (x->status == PD_OK && x->n_cached_blocks > x->n_block_table)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "n_cached_blocks beyond block_table");
        return PD_OK;
    }
    case PD_PROTO_TYPE_PREFILL: {
        pd_proto_prefill_t *x = &msg->u.prefill;
        const msgpack_object *dest;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_work(d, m, &x->tokens, &x->n_tokens, &x->block_hashes,
                                    &x->n_block_hashes, &x->sampling, &x->cache)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_skip_blocks", REQ, 0, 0, x->n_block_hashes,
                                   PD_ERR_PROTO, &x->n_skip_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "deadline_ms", REQ, 0, 0, PD_PROTO_MAX_DEADLINE_MS,
                                   PD_ERR_PROTO, &x->deadline_ms)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "dest", REQ, &dest)) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, dest, "worker_id", REQ, x->dest_worker_id,
                                      sizeof(x->dest_worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, dest, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->dest_epoch)) != PD_OK ||
            (st = pd_proto_dec_bin(d, dest, "xfer_desc", REQ, PD_PROTO_MAX_XFER_DESC_BYTES,
                                   &x->dest_xfer_desc, &x->dest_xfer_desc_bytes)) != PD_OK ||
            (st = pd_proto_dec_u32s(d, dest, "block_table", REQ, PD_PROTO_MAX_BLOCKS,
                                    &x->dest_block_table, &x->n_dest_block_table)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_PREFILLED: {
        pd_proto_prefilled_t *x = &msg->u.prefilled;
        uint32_t tok;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "first_token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID,
                                   PD_ERR_PROTO, &tok)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_computed_tokens", REQ, 0, 0, max_in, PD_ERR_PROTO,
                                   &x->n_computed_tokens)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_cached_tokens", REQ, 0, 0, max_in, PD_ERR_PROTO,
                                   &x->n_cached_tokens)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "cache_creation_input_tokens", OPT, 0, 0, max_in,
                                   PD_ERR_PROTO, &x->cache_creation_input_tokens)) != PD_OK ||
            (st = pd_proto_dec_f64(d, m, "prefill_ms", OPT, 0, 0, 1e9, &x->prefill_ms)) != PD_OK ||
            (st = pd_proto_dec_f64(d, m, "transfer_ms", OPT, 0, 0, 1e9, &x->transfer_ms)) != PD_OK)
            return st;
        x->first_token = (int32_t)tok;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_TOKEN: {
        pd_proto_worker_token_t *x = &msg->u.worker_token;
        uint32_t tok;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "index", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS - 1,
                                   PD_ERR_PROTO, &x->index)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID, PD_ERR_PROTO,
                                   &tok)) != PD_OK)
            return st;
        x->token = (int32_t)tok;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_DONE: {
        pd_proto_worker_done_t *x = &msg->u.worker_done;
        const msgpack_object *usage, *timings;
        int fr = 0;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_enum(d, m, "finish_reason", REQ, 0, pd_proto_finish_lookup, &fr)) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, m, "output_tokens", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS,
                                   PD_ERR_PROTO, &x->output_tokens)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "usage", OPT, &usage)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "timings", OPT, &timings)) != PD_OK)
            return st;
        x->finish_reason = (pd_proto_finish_t)fr;
        x->cache_read_input_tokens = x->cache_creation_input_tokens = 0;
        x->transfer_wait_ms = x->tpot_ms = 0;
        if (usage != NULL &&
            ((st = pd_proto_dec_u32(d, usage, "cache_read_input_tokens", OPT, 0, 0, max_in,
                                    PD_ERR_PROTO, &x->cache_read_input_tokens)) != PD_OK ||
             (st = pd_proto_dec_u32(d, usage, "cache_creation_input_tokens", OPT, 0, 0, max_in,
                                    PD_ERR_PROTO, &x->cache_creation_input_tokens)) != PD_OK))
            return st;
        if (timings != NULL &&
            ((st = pd_proto_dec_f64(d, timings, "transfer_wait_ms", OPT, 0, 0, 1e9,
                                    &x->transfer_wait_ms)) != PD_OK ||
             (st = pd_proto_dec_f64(d, timings, "tpot_ms", OPT, 0, 0, 1e9, &x->tpot_ms)) != PD_OK))
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_ERROR: {
        pd_proto_worker_error_t *x = &msg->u.worker_error;
        if ((st = pd_proto_dec_u64(d, m, "req_id", OPT, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "code", true, &x->code)) != PD_OK ||
            (st = pd_proto_dec_strz(d, m, "message", OPT, PD_PROTO_MAX_MESSAGE_BYTES, &x->message,
                                    NULL)) != PD_OK)
            return st;
        if (x->message == NULL)
            x->message = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_CANCEL:
        return pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                &msg->u.worker_cancel.req_id);
    case PD_PROTO_TYPE_RESYNC:
        return PD_OK;
    case PD_PROTO_TYPE_KV_SNAPSHOT: {
        pd_proto_kv_snapshot_t *x = &msg->u.kv_snapshot;
        const msgpack_object *by_tier;
        if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id,
                                      sizeof(x->worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->epoch)) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "seq", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->seq)) !=
                PD_OK ||
            (st = pd_proto_dec_map(d, m, "hashes_by_tier", REQ, &by_tier)) != PD_OK)
            return st;
        for (int t = 0; t < PD_PROTO_N_TIERS; t++) {
            const char *name = pd_proto_tier_name((pd_proto_tier_t)t);
            if ((st = pd_proto_dec_u64s(d, by_tier, name, OPT, PD_PROTO_MAX_SNAPSHOT_HASHES,
                                        &x->hashes[t], &x->n_hashes[t])) != PD_OK)
                return st;
        }
        return PD_OK;
    }
    default:
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "unknown message type");
    }
}

pd_status_t pd_proto_dec_kv_event(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_kv_event_t *x = &d->msg->u.kv_event;
    const msgpack_object_array *a;
    pd_status_t st;

    if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id, sizeof(x->worker_id))) !=
            PD_OK ||
        (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->epoch)) !=
            PD_OK ||
        (st = pd_proto_dec_u64(d, m, "seq", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO, &x->seq)) !=
            PD_OK ||
        (st = pd_proto_dec_array(d, m, "events", REQ, PD_PROTO_MAX_EVENTS, &a)) != PD_OK)
        return st;
    x->events = NULL;
    x->n_events = 0;
    if (a->size == 0)
        return PD_OK;
    pd_proto_kv_event_item_t *items = pd_proto_dec_alloc(d, a->size * sizeof(*items));
    if (items == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *e = &a->ptr[i];
        int kind = 0, tier = 0;
        if (e->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "events[%u] must be a map", i);
        if ((st = pd_proto_dec_enum(d, e, "kind", REQ, 0, pd_proto_kind_lookup, &kind)) != PD_OK ||
            (st = pd_proto_dec_enum(d, e, "tier", REQ, 0, pd_proto_tier_lookup, &tier)) != PD_OK ||
            (st = pd_proto_dec_u64s(d, e, "hashes", REQ, PD_PROTO_MAX_EVENT_HASHES,
                                    &items[i].hashes, &items[i].n_hashes)) != PD_OK)
            return st;
        items[i].kind = (pd_proto_event_kind_t)kind;
        items[i].tier = (pd_proto_tier_t)tier;
    }
    x->events = items;
    x->n_events = a->size;
    return PD_OK;
}
