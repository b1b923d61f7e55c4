/* A request's life on the worker side: the messages its workers send back (reserved,
 * pinned, prefilled, token, done, error), each checked against the request it names, and
 * the prefill sent once decode has reserved. The request table and the client side are in
 * request.c; the life-cycle comment atop request.c holds for both. */
#include "router_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a request whose decode is done waits for prefill's `prefilled` (for usage and
 * timings) before it is finished without it. */
#define PD_ROUTER_PREFILLED_GRACE_MS 1000
/* Times one request may be turned away by busy workers before it fails. */
#define PD_ROUTER_MAX_REROUTES 16

/* The request req_id if wk is its worker on the side asked for, in one of the states.
 * Otherwise the worker is working for nobody (the request ended, or was never its own):
 * it gets `cancel` for the id, so that what it holds goes now (docs/ARCHITECTURE.md, 11b);
 * a `done` needs none, the worker has already let the request go. */
static pd_router_req_t *pd_router_req_for(pd_router_t *r, pd_router_worker_t *wk, uint64_t req_id,
                                          bool decode_side, const char *what)
{
    pd_router_req_t *req = pd_router_req_find(r, req_id);
    bool terminal = strcmp(what, "done") == 0;
    if (req == NULL) {
        pd_log_debug("%s for unknown request %llu from %s%s", what, (unsigned long long)req_id,
                     wk->id, terminal ? "" : ": cancel");
        if (!terminal && req_id != 0)
            pd_router_send_cancel(r, wk, req_id);
        return NULL;
    }
    int slot = decode_side ? req->decode_slot : req->prefill_slot;
    uint64_t epoch = decode_side ? req->decode_epoch : req->prefill_epoch;
    if (slot != (int)wk->slot || epoch != wk->epoch || req->state == PD_REQ_QUEUED) {
        pd_log_warn("%s for request %llu from %s, which does not serve it", what,
                    (unsigned long long)req_id, wk->id);
        if (!terminal)
            pd_router_send_cancel(r, wk, req_id);
        return NULL;
    }
    return req;
}

/* Send prefill once decode reserved (and a holder answered, or was waited for long
 * enough): with the holder's pinned blocks when it has some. */
void pd_router_req_send_prefill(pd_router_t *r, pd_router_req_t *req)
{
    pd_router_worker_t *pw = pd_router_req_worker(r, req->prefill_slot, req->prefill_epoch);
    pd_router_worker_t *dw = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
    if (pw == NULL || dw == NULL) {
        pd_router_req_fail(r, req, PD_ERR_PEER, "a worker of the request is gone");
        return;
    }
    if (!pw->chunked && pw->n_prefill_sent >= r->cfg.prefill_depth) {
        /* Its worker computes one prompt at a time and has its fill: the prompt waits
         * here, reserved, rather than in the worker's socket; pd_router_dispatch sends it. */
        req->prefill_held = true;
        return;
    }
    req->prefill_held = false;
    req->prefill_counted = true;
    pw->n_prefill_sent++;
    req->prefill_sent = true;
    req->prefill_sent_ns = pd_time_now_ns();
    uint64_t now_ms = pd_time_now_ms();
    pd_proto_msg_t pm = {.type = PD_PROTO_TYPE_PREFILL};
    pd_proto_prefill_t *x = &pm.u.prefill;
    x->req_id = req->req_id;
    x->tokens = req->tokens;
    x->n_tokens = req->n_tokens;
    x->block_hashes = req->hashes;
    x->n_block_hashes = req->n_hashes;
    x->n_skip_blocks = req->n_cached_blocks;
    x->cache = req->plan;
    x->sampling = req->sampling;
    x->first_step = req->first_step;
    memcpy(x->dest_worker_id, dw->id, sizeof(x->dest_worker_id));
    x->dest_epoch = dw->epoch;
    x->dest_xfer_desc = dw->xfer_desc;
    x->dest_xfer_desc_bytes = dw->xfer_desc_bytes;
    x->dest_block_table = req->block_table;
    x->n_dest_block_table = req->n_block_table;
    x->deadline_ms = (uint32_t)(req->deadline_ms > now_ms ? req->deadline_ms - now_ms : 0);
    pd_router_worker_t *hw = pd_router_req_worker(r, req->holder_slot, req->holder_epoch);
    if (hw != NULL && req->n_src > 0) {
        x->src_worker_id = hw->id;
        x->src_epoch = hw->epoch;
        x->src_xfer_desc = hw->xfer_desc;
        x->src_xfer_desc_bytes = hw->xfer_desc_bytes;
        x->src_block_table = req->src_table;
        x->n_src_block_table = req->n_src;
        x->src_checksums = req->src_sums;
        x->n_src_checksums = req->n_src;
    }
    if (pd_router_send_worker(r, pw, &pm) != PD_OK) {
        pd_router_req_fail(r, req, PD_ERR_INTERNAL, "could not send prefill");
        return;
    }
    if (x->src_xfer_desc != NULL)
        r->n_holder_reads++;
}

void pd_router_req_on_reserved(pd_router_t *r, pd_router_worker_t *wk, const pd_proto_reserved_t *m)
{
    pd_router_req_t *req = pd_router_req_for(r, wk, m->req_id, true, "reserved");
    if (req == NULL || req->state != PD_REQ_RESERVING)
        return;
    if ((m->status == PD_ERR_NO_RESOURCE || m->status == PD_ERR_OVERLOADED) && req->n_out == 0 &&
        req->n_rerouted < PD_ROUTER_MAX_REROUTES) {
        pd_router_req_reroute(r, req, wk, pd_status_str(m->status));
        pd_router_dispatch(r);
        return;
    }
    if (m->status != PD_OK) {
        char msg[128];
        snprintf(msg, sizeof(msg), "decode worker %s could not reserve: %s", wk->id,
                 pd_status_str(m->status));
        pd_router_req_fail(r, req, m->status < 0 ? m->status : PD_ERR_INTERNAL, msg);
        return;
    }
    uint64_t prompt_blocks = (req->n_tokens + r->cfg.block_tokens - 1) / r->cfg.block_tokens;
    if (m->n_block_table < prompt_blocks || m->n_cached_blocks > req->n_hashes) {
        pd_router_req_fail(r, req, PD_ERR_PROTO, "reserved block table does not fit the prompt");
        return;
    }
    req->block_table = malloc(m->n_block_table * sizeof(*req->block_table));
    if (req->block_table == NULL) {
        pd_router_req_fail(r, req, PD_ERR_NO_MEMORY, "out of memory");
        return;
    }
    memcpy(req->block_table, m->block_table, m->n_block_table * sizeof(*m->block_table));
    req->n_block_table = m->n_block_table;
    req->n_cached_blocks = m->n_cached_blocks;
    req->state = PD_REQ_PREFILLING;
    req->reserved_ns = pd_time_now_ns();

    if (!req->pin_waiting)
        pd_router_req_send_prefill(r, req);
}

void pd_router_req_on_pinned(pd_router_t *r, pd_router_worker_t *wk, const pd_proto_pinned_t *m)
{
    pd_router_req_t *req = pd_router_req_find(r, m->req_id);
    if (req == NULL || !req->pin_waiting || (int)wk->slot != req->holder_slot ||
        wk->epoch != req->holder_epoch) {
        /* Late or stray: whatever it pinned for this id goes. */
        if (m->status == PD_OK)
            pd_router_send_cancel(r, wk, m->req_id);
        return;
    }
    req->pin_waiting = false;
    if (m->status == PD_OK && m->n_block_table > 0 && m->n_block_table <= req->n_hashes &&
        m->n_checksums == m->n_block_table) {
        req->src_table = malloc(m->n_block_table * sizeof(*req->src_table));
        req->src_sums = malloc(m->n_block_table * sizeof(*req->src_sums));
        if (req->src_table != NULL && req->src_sums != NULL) {
            memcpy(req->src_table, m->block_table, m->n_block_table * sizeof(*m->block_table));
            memcpy(req->src_sums, m->checksums, m->n_block_table * sizeof(*m->checksums));
            req->n_src = m->n_block_table;
        }
    } else if (m->status != PD_OK) {
        req->pin_held = false;
        pd_log_debug("request %llu: %s did not pin: %s", (unsigned long long)req->req_id, wk->id,
                     pd_status_name(m->status));
    }
    if (req->state == PD_REQ_PREFILLING && !req->prefill_sent)
        pd_router_req_send_prefill(r, req);
}

void pd_router_req_on_prefilled(pd_router_t *r, pd_router_worker_t *wk,
                                const pd_proto_prefilled_t *m)
{
    pd_router_req_t *req = pd_router_req_for(r, wk, m->req_id, false, "prefilled");
    if (req == NULL || req->state == PD_REQ_RESERVING || req->prefilled)
        return;
    req->prefilled = true;
    req->prefill_first_token = m->first_token;
    wk->busy_until_ms = 0;
    pd_router_sched_on_prefilled(r, wk, m);
    if (!req->keep_usage) {
        req->n_computed_tokens = m->n_computed_tokens;
        req->n_prefill_cached_tokens = m->n_cached_tokens;
        req->prefill_cc_tokens = m->cache_creation_input_tokens;
        req->prefill_ms = m->prefill_ms;
        req->transfer_ms = m->transfer_ms;
        req->prefill_queue_ms = m->queue_ms;
        req->n_fetched_tokens = m->n_fetched_tokens;
        req->prefilled_ns = pd_time_now_ns();
    }
    if (req->prefill_slot != req->decode_slot) { /* colocated: no transfer */
        r->xfer_count++;
        r->xfer_ms_sum += m->transfer_ms;
    }
    if (m->n_recomputed_blocks > 0 && m->n_recomputed_blocks <= req->n_hashes) {
        req->recomputed = malloc(m->n_recomputed_blocks * sizeof(*req->recomputed));
        if (req->recomputed != NULL) {
            memcpy(req->recomputed, m->recomputed_blocks,
                   m->n_recomputed_blocks * sizeof(*req->recomputed));
            req->n_recomputed = m->n_recomputed_blocks;
        }
        r->n_recomputed_blocks += m->n_recomputed_blocks;
    }
    if (req->n_out > req->first_step && req->out[req->first_step] != m->first_token)
        pd_log_warn("request %llu: prefill sampled %d, decode streamed %d first",
                    (unsigned long long)req->req_id, m->first_token, req->out[0]);
    pd_router_req_release_prefill(r, req);
    pd_router_req_release_holder(r, req);
    if (req->decode_done) {
        pd_router_req_finish(r, req);
        pd_router_dispatch(r);
        return;
    }
    req->state = PD_REQ_DECODING;
    pd_router_dispatch(r);
}

void pd_router_req_on_token(pd_router_t *r, pd_router_worker_t *wk,
                            const pd_proto_worker_token_t *m)
{
    pd_router_req_t *req = pd_router_req_for(r, wk, m->req_id, true, "token");
    if (req == NULL || req->state == PD_REQ_RESERVING || req->decode_done)
        return;
    if (m->index != req->n_out || req->n_out >= req->max_tokens) {
        pd_log_warn("request %llu: token index %u dropped (expected %u of %u)",
                    (unsigned long long)req->req_id, m->index, req->n_out, req->max_tokens);
        return;
    }
    uint64_t now = pd_time_now_ns();
    if (m->index > req->first_step && req->last_token_ns != 0)
        pd_router_sched_on_token_gap(wk, pd_router_ms_between(req->last_token_ns, now));
    req->out[req->n_out++] = m->token;
    req->last_streamed = m->last;
    if (m->index == 0)
        req->first_token_ns = now;
    if (m->index == req->first_step) {
        if (req->prefilled && m->token != req->prefill_first_token)
            pd_log_warn("request %llu: prefill sampled %d, decode streamed %d first",
                        (unsigned long long)req->req_id, req->prefill_first_token, m->token);
    }
    req->last_token_ns = now;
    if (!req->stream)
        return;

    pd_proto_msg_t t = {.type = PD_PROTO_TYPE_TOKEN};
    memcpy(t.u.token.id, req->id, sizeof(t.u.token.id));
    t.u.token.index = m->index;
    t.u.token.token = m->token;
    t.u.token.text = "";
    if (r->tok != NULL) {
        /* Text comes out whole characters at a time: a token that ends inside one sends
         * "" and the character goes with the token that completes it. */
        const char *text;
        size_t len;
        if (req->detok == NULL) /* on failure detok stays NULL: tokens go without text */
            pd_status_ignore(
                pd_tokenizer_stream_create(r->tok, 0, req->tokens[req->n_prompt - 1], &req->detok));
        if (req->detok != NULL &&
            pd_tokenizer_stream_push(req->detok, m->token, &text, &len) == PD_OK) {
            while (len > PD_PROTO_MAX_PIECE_BYTES ||
                   (len < strlen(text) && ((unsigned char)text[len] & 0xc0) == 0x80))
                len--; /* cut a long run on a character boundary */
            t.u.token.text = text;
            t.u.token.text_bytes = len;
        }
        /* The token's own bytes, for clients that assemble text themselves. */
        const char *piece;
        size_t piece_len;
        int32_t prev = req->n_out > 1 ? req->out[req->n_out - 2] : req->tokens[req->n_prompt - 1];
        if (pd_tokenizer_piece(r->tok, prev, m->token, &piece, &piece_len) == PD_OK &&
            piece_len <= PD_PROTO_MAX_PIECE_BYTES) {
            t.u.token.bytes = piece;
            t.u.token.n_bytes = piece_len;
        }
    }
    pd_router_send_client(r, &req->client, &t);
}

void pd_router_req_on_done(pd_router_t *r, pd_router_worker_t *wk, const pd_proto_worker_done_t *m)
{
    pd_router_req_t *req = pd_router_req_for(r, wk, m->req_id, true, "done");
    if (req == NULL || req->state == PD_REQ_RESERVING || req->decode_done)
        return;
    if (m->output_tokens != req->n_out)
        pd_log_warn("request %llu: decode reports %u tokens, %u were streamed",
                    (unsigned long long)req->req_id, m->output_tokens, req->n_out);
    req->done = *m;
    req->decode_done = true;
    wk->busy_until_ms = 0; /* it has room again */
    pd_router_req_release_decode(r, req);
    if (req->prefilled) {
        pd_router_req_finish(r, req);
    } else {
        /* Wait a little for prefill's report; pd_router_reqs_tick finishes it anyway. */
        req->deadline_ms = pd_time_now_ms() + PD_ROUTER_PREFILLED_GRACE_MS;
    }
    pd_router_dispatch(r);
}

void pd_router_req_on_error(pd_router_t *r, pd_router_worker_t *wk,
                            const pd_proto_worker_error_t *m)
{
    char msg[PD_PROTO_MAX_MESSAGE_BYTES + 1];
    if (m->req_id == 0) {
        pd_log_warn("worker %s reports %s: %s", wk->id, pd_status_name(m->code), m->message);
        return;
    }
    pd_router_req_t *req = pd_router_req_find(r, m->req_id);
    if (req == NULL)
        return;
    bool mine = ((int)wk->slot == req->decode_slot && wk->epoch == req->decode_epoch) ||
                ((int)wk->slot == req->prefill_slot && wk->epoch == req->prefill_epoch);
    if (!mine || req->state == PD_REQ_QUEUED) {
        pd_log_warn("error for request %llu from %s, which does not serve it",
                    (unsigned long long)m->req_id, wk->id);
        return;
    }
    if (req->decode_done && (int)wk->slot == req->prefill_slot) {
        /* Decode already finished: the tokens stand; prefill's report is simply missing. */
        pd_router_req_release_prefill(r, req);
        pd_router_req_finish(r, req);
        return;
    }
    if (m->code == PD_ERR_OVERLOADED && (int)wk->slot == req->prefill_slot && !req->prefilled &&
        req->n_out == 0 && req->n_rerouted < PD_ROUTER_MAX_REROUTES) {
        pd_router_req_reroute(r, req, wk, m->message);
        pd_router_dispatch(r);
        return;
    }
    pd_router_worker_t *dw = pd_router_req_worker(r, req->decode_slot, req->decode_epoch);
    if ((int)wk->slot == req->prefill_slot && dw != NULL && dw != wk && !req->prefilled &&
        (m->code == PD_ERR_TIMEOUT || m->code == PD_ERR_PEER || m->code == PD_ERR_IO)) {
        /* The KV push failed: the decode worker may be dead, which its heartbeats will
         * tell (then the request moves on), or out of reach (then it fails, as now). It
         * waits for that; the decode worker takes nothing new meanwhile. */
        dw->suspect_ms = pd_time_now_ms();
        req->push_error = m->code;
        snprintf(req->push_from, sizeof(req->push_from), "%s", wk->id);
        pd_router_req_release_prefill(r, req);
        pd_log_info("request %llu (%s): KV push from %s into %s failed (%s); waiting for %s's "
                    "heartbeat",
                    (unsigned long long)req->req_id, req->id, wk->id, dw->id,
                    pd_status_name(m->code), dw->id);
        pd_router_dispatch(r);
        return;
    }
    snprintf(msg, sizeof(msg), "worker %s: %s", wk->id, m->message);
    pd_router_req_fail(r, req, m->code, msg);
    pd_router_dispatch(r);
}

void pd_router_req_on_suspect_alive(pd_router_t *r, pd_router_worker_t *dw)
{
    for (pd_router_req_t *req = r->head, *next; req != NULL; req = next) {
        next = req->next;
        if (req->push_error == PD_OK || req->decode_slot != (int)dw->slot ||
            req->decode_epoch != dw->epoch)
            continue;
        char msg[PD_PROTO_NAME_CAP * 2 + 64];
        snprintf(msg, sizeof(msg), "worker %s: KV push to the decode worker %s failed",
                 req->push_from, dw->id);
        pd_router_req_fail(r, req, req->push_error, msg);
    }
    pd_router_dispatch(r);
}

void pd_router_reqs_tick(pd_router_t *r, uint64_t now_ms)
{
    pd_router_req_t *q = r->head;
    while (q != NULL) {
        pd_router_req_t *next = q->next;
        if (q->pin_waiting && now_ms >= q->pin_sent_ms + PD_ROUTER_PIN_WAIT_MS) {
            q->pin_waiting = false; /* it keeps pin_held: cancelled at the end */
            if (q->state == PD_REQ_PREFILLING && !q->prefill_sent) {
                pd_router_req_send_prefill(r, q);
                q = next;
                continue;
            }
        }
        if (now_ms >= q->deadline_ms) {
            if (q->decode_done)
                pd_router_req_finish(r, q);
            else
                pd_router_req_fail(r, q, PD_ERR_TIMEOUT, "request deadline passed");
        }
        q = next;
    }
    /* A worker marked busy takes work again when its mark runs out. */
    pd_router_dispatch(r);
}

void pd_router_reqs_cleanup(pd_router_t *r, pd_status_t code, const char *message)
{
    while (r->head != NULL)
        pd_router_req_fail(r, r->head, code, message);
}
