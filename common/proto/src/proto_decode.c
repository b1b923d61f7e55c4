/* Decoding: frame limits first (pd_mp_doc_parse), then every field's type, range and
 * length. Arrays are converted into memory from the doc's own zone, whose size the frame
 * limit bounds, so a decoded message never holds more than its frame allowed. This file:
 * the client channel and the entry point. */
#include "proto_dec_int.h"

#include <string.h>

static pd_status_t pd_proto_dec_generate(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_generate_t *g = &d->msg->u.generate;
    pd_status_t st;

    if ((st = pd_proto_dec_strbuf(d, m, "id", OPT, g->id, sizeof(g->id))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_strz(d, m, "prompt", OPT, PD_PROTO_MAX_PROMPT_BYTES, &g->prompt,
                                &g->prompt_bytes)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", OPT, PD_PROTO_MAX_PROMPT_TOKENS, &g->tokens,
                                &g->n_tokens)) != PD_OK)
        return st;
    if ((g->prompt == NULL) == (pd_mp_map_find(m, "tokens") == NULL))
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "exactly one of 'prompt' or 'tokens'");
    if (g->prompt == NULL && g->n_tokens == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'tokens' is empty");
    if (g->prompt != NULL && g->prompt_bytes == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'prompt' is empty");
    if ((st = pd_proto_dec_u32(d, m, "max_tokens", OPT, 64, 1, PD_PROTO_MAX_NEW_TOKENS,
                               PD_ERR_LIMIT, &g->max_tokens)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_sampling(d, m, &g->sampling)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_i32s(d, m, "stop", OPT, PD_PROTO_MAX_STOP, &g->stop, &g->n_stop)) !=
        PD_OK)
        return st;
    if ((st = pd_proto_dec_strbuf(d, m, "tenant", OPT, g->tenant, sizeof(g->tenant))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_cache(d, m, &g->cache)) != PD_OK)
        return st;
    return pd_proto_dec_bool(d, m, "stream", true, &g->stream);
}

static pd_status_t pd_proto_dec_usage(pd_proto_dec_t *d, const msgpack_object *m,
                                      pd_proto_usage_t *u)
{
    const msgpack_object *o;
    pd_status_t st;
    if ((st = pd_proto_dec_map(d, m, "usage", REQ, &o)) != PD_OK)
        return st;
    const uint32_t cap = PD_PROTO_MAX_PROMPT_TOKENS + PD_PROTO_MAX_NEW_TOKENS;
    if ((st = pd_proto_dec_u32(d, o, "input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "cache_creation_input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->cache_creation_input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "cache_read_input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->cache_read_input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "output_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->output_tokens)) != PD_OK)
        return st;
    return PD_OK;
}

static pd_status_t pd_proto_dec_timings(pd_proto_dec_t *d, const msgpack_object *m,
                                        pd_proto_timings_t *t)
{
    const msgpack_object *o;
    pd_status_t st;
    const double max = 1e9;
    if ((st = pd_proto_dec_map(d, m, "timings", REQ, &o)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_f64(d, o, "queue_ms", OPT, 0, 0, max, &t->queue_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "prefill_ms", OPT, 0, 0, max, &t->prefill_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "transfer_ms", OPT, 0, 0, max, &t->transfer_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "ttft_ms", OPT, 0, 0, max, &t->ttft_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "tpot_ms", OPT, 0, 0, max, &t->tpot_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "total_ms", OPT, 0, 0, max, &t->total_ms)) != PD_OK)
        return st;
    return PD_OK;
}

static pd_status_t pd_proto_dec_done(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_done_t *x = &d->msg->u.done;
    const msgpack_object *w;
    pd_status_t st;
    int fr = 0;

    if ((st = pd_proto_dec_strbuf(d, m, "id", REQ, x->id, sizeof(x->id))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_enum(d, m, "finish_reason", REQ, 0, pd_proto_finish_lookup, &fr)) !=
        PD_OK)
        return st;
    x->finish_reason = (pd_proto_finish_t)fr;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", REQ, PD_PROTO_MAX_NEW_TOKENS, &x->tokens,
                                &x->n_tokens)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_usage(d, m, &x->usage)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_timings(d, m, &x->timings)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_map(d, m, "workers", OPT, &w)) != PD_OK)
        return st;
    x->prefill_worker[0] = x->decode_worker[0] = '\0';
    if (w != NULL) {
        if ((st = pd_proto_dec_strbuf(d, w, "prefill", OPT, x->prefill_worker,
                                      sizeof(x->prefill_worker))) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, w, "decode", OPT, x->decode_worker,
                                      sizeof(x->decode_worker))) != PD_OK)
            return st;
    }
    return PD_OK;
}

static pd_status_t pd_proto_dec_status_reply(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_status_reply_t *x = &d->msg->u.status_reply;
    const msgpack_object_array *a;
    pd_status_t st;

    if ((st = pd_proto_dec_array(d, m, "workers", REQ, PD_PROTO_MAX_WORKERS, &a)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_u64(d, m, "directory_blocks", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                               &x->directory_blocks)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "queue_depth", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->queue_depth)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "requests_in_flight", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->requests_in_flight)) != PD_OK)
        return st;
    x->workers = NULL;
    x->n_workers = 0;
    if (a->size == 0)
        return PD_OK;
    pd_proto_worker_info_t *ws = pd_proto_dec_alloc(d, a->size * sizeof(*ws));
    if (ws == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    memset(ws, 0, a->size * sizeof(*ws));
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *o = &a->ptr[i];
        const msgpack_object *load;
        int role = 0;
        if (o->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "workers[%u] must be a map", i);
        if ((st = pd_proto_dec_strbuf(d, o, "id", REQ, ws[i].id, sizeof(ws[i].id))) != PD_OK ||
            (st = pd_proto_dec_enum(d, o, "role", REQ, 0, pd_proto_role_lookup, &role)) != PD_OK ||
            (st = pd_proto_dec_u64(d, o, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &ws[i].epoch)) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, o, "state", REQ, ws[i].state, sizeof(ws[i].state))) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, o, "n_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].n_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, o, "free_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].free_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, o, "directory_blocks", OPT, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].directory_blocks)) != PD_OK ||
            (st = pd_proto_dec_map(d, o, "load", REQ, &load)) != PD_OK)
            return st;
        ws[i].role = (pd_proto_role_t)role;
        if ((st = pd_proto_dec_u32(d, load, "running", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].running)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "queued", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].queued)) != PD_OK)
            return st;
    }
    x->workers = ws;
    x->n_workers = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_client(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_msg_t *msg = d->msg;
    pd_status_t st;

    switch (msg->type) {
    case PD_PROTO_TYPE_GENERATE:
        return pd_proto_dec_generate(d, m);
    case PD_PROTO_TYPE_STATUS:
        return PD_OK;
    case PD_PROTO_TYPE_CANCEL:
        return pd_proto_dec_strbuf(d, m, "id", REQ, msg->u.cancel.id, sizeof(msg->u.cancel.id));
    case PD_PROTO_TYPE_ACCEPTED:
        return pd_proto_dec_strbuf(d, m, "id", REQ, msg->u.accepted.id, sizeof(msg->u.accepted.id));
    case PD_PROTO_TYPE_TOKEN: {
        pd_proto_token_t *x = &msg->u.token;
        if ((st = pd_proto_dec_strbuf(d, m, "id", REQ, x->id, sizeof(x->id))) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "index", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS - 1,
                                   PD_ERR_PROTO, &x->index)) != PD_OK)
            return st;
        uint32_t tok;
        if ((st = pd_proto_dec_u32(d, m, "token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID, PD_ERR_PROTO,
                                   &tok)) != PD_OK)
            return st;
        x->token = (int32_t)tok;
        if ((st = pd_proto_dec_strz(d, m, "text", OPT, PD_PROTO_MAX_PIECE_BYTES, &x->text,
                                    &x->text_bytes)) != PD_OK)
            return st;
        if (x->text == NULL)
            x->text = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_DONE:
        return pd_proto_dec_done(d, m);
    case PD_PROTO_TYPE_ERROR: {
        pd_proto_error_t *x = &msg->u.error;
        if ((st = pd_proto_dec_strbuf(d, m, "id", OPT, x->id, sizeof(x->id))) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "code", true, &x->code)) != PD_OK ||
            (st = pd_proto_dec_strz(d, m, "message", OPT, PD_PROTO_MAX_MESSAGE_BYTES, &x->message,
                                    NULL)) != PD_OK)
            return st;
        if (x->message == NULL)
            x->message = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_STATUS_REPLY:
        return pd_proto_dec_status_reply(d, m);
    default:
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "unknown message type");
    }
}

/* Best effort: the request id of a frame that fails later, for the error reply. */
static void pd_proto_dec_fault_ids(pd_proto_fault_t *fault, const msgpack_object *root)
{
    const char *s;
    size_t n;
    uint64_t v;
    if (pd_mp_get_str(root, "id", &s, &n) == PD_OK && n < sizeof(fault->id) &&
        memchr(s, '\0', n) == NULL) {
        memcpy(fault->id, s, n);
        fault->id[n] = '\0';
    }
    if (pd_mp_get_u64(root, "req_id", &v) == PD_OK)
        fault->req_id = v;
}

pd_status_t pd_proto_decode(pd_proto_msg_t *msg, pd_proto_chan_t chan, const void *buf, size_t len,
                            pd_proto_fault_t *fault)
{
    pd_proto_dec_t d = {.msg = msg, .fault = fault};
    const pd_mp_limits_t *limits =
        (chan == PD_PROTO_CHAN_CLIENT) ? &pd_proto_limits_client : &pd_proto_limits_worker;
    const msgpack_object *root;
    const char *type;
    size_t type_len;
    uint64_t version;
    pd_status_t st;

    memset(msg, 0, sizeof(*msg));
    if (fault != NULL)
        memset(fault, 0, sizeof(*fault));
    st = pd_mp_doc_parse(&msg->doc, buf, len, limits);
    if (st != PD_OK)
        return pd_proto_dec_fail(&d, st,
                                 st == PD_ERR_LIMIT ? "frame exceeds a size limit"
                                                    : "frame is not valid msgpack");
    root = &msg->doc.root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "message must be a map");
        goto err_doc;
    }
    if (fault != NULL)
        pd_proto_dec_fault_ids(fault, root);
    if (pd_mp_get_u64(root, "v", &version) != PD_OK) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "missing or invalid field 'v'");
        goto err_doc;
    }
    if (version != PD_PROTO_VERSION) {
        st = pd_proto_dec_fail(&d, PD_ERR_UNSUPPORTED, "protocol version %llu, expected %d",
                               (unsigned long long)version, PD_PROTO_VERSION);
        goto err_doc;
    }
    if (pd_mp_get_str(root, "type", &type, &type_len) != PD_OK) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "missing or invalid field 'type'");
        goto err_doc;
    }
    msg->type = pd_proto_type_lookup(chan, type, type_len);
    if (msg->type == PD_PROTO_TYPE_NONE) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "unknown message type '%.*s'",
                               (int)(type_len < 32 ? type_len : 32), type);
        goto err_doc;
    }
    switch (chan) {
    case PD_PROTO_CHAN_CLIENT:
        st = pd_proto_dec_client(&d, root);
        break;
    case PD_PROTO_CHAN_WORKER:
        st = pd_proto_dec_worker(&d, root);
        break;
    case PD_PROTO_CHAN_EVENTS:
        st = pd_proto_dec_kv_event(&d, root);
        break;
    default:
        st = pd_proto_dec_fail(&d, PD_ERR_INVALID_PARAM, "unknown channel");
        break;
    }
    if (st != PD_OK)
        goto err_doc;
    return PD_OK;

err_doc:
    pd_mp_doc_cleanup(&msg->doc);
    msg->type = PD_PROTO_TYPE_NONE;
    return st;
}

void pd_proto_msg_cleanup(pd_proto_msg_t *msg)
{
    if (msg == NULL)
        return;
    pd_mp_doc_cleanup(&msg->doc);
    msg->type = PD_PROTO_TYPE_NONE;
}
