/* The worker registry: register / heartbeat / death, the KV-event subscription per worker,
 * resync requests, and the routing of worker messages to the request table. */
#include "router_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

bool pd_router_worker_can_prefill(const pd_router_worker_t *wk)
{
    return wk->used && (wk->role == PD_PROTO_ROLE_PREFILL || wk->role == PD_PROTO_ROLE_BOTH);
}

bool pd_router_worker_can_decode(const pd_router_worker_t *wk)
{
    return wk->used && (wk->role == PD_PROTO_ROLE_DECODE || wk->role == PD_PROTO_ROLE_BOTH);
}

pd_router_worker_t *pd_router_worker_by_rid(pd_router_t *r, const pd_router_rid_t *rid)
{
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        pd_router_worker_t *wk = &r->workers[s];
        if (wk->used && wk->rid.n == rid->n && memcmp(wk->rid.bytes, rid->bytes, rid->n) == 0)
            return wk;
    }
    return NULL;
}

pd_router_worker_t *pd_router_worker_by_id(pd_router_t *r, const char *id)
{
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++)
        if (r->workers[s].used && strcmp(r->workers[s].id, id) == 0)
            return &r->workers[s];
    return NULL;
}

static void pd_router_worker_send_resync(pd_router_t *r, pd_router_worker_t *wk)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_RESYNC};
    pd_dir_worker_unsync(r->dir, wk->slot);
    wk->resync_pending = true;
    wk->resync_sent_ms = pd_time_now_ms();
    pd_router_send_worker(r, wk, &m);
}

/* registered (with this router's epoch, so that a worker sees a restart) and resync. */
static void pd_router_worker_welcome(pd_router_t *r, pd_router_worker_t *wk)
{
    pd_proto_msg_t ok = {.type = PD_PROTO_TYPE_REGISTERED};
    ok.u.registered.heartbeat_ms = r->cfg.heartbeat_ms;
    ok.u.registered.router_epoch = r->epoch;
    pd_router_send_worker(r, wk, &ok);
    pd_router_worker_send_resync(r, wk);
}

void pd_router_worker_remove(pd_router_t *r, pd_router_worker_t *wk, pd_status_t code,
                             const char *why)
{
    char message[160];
    pd_log_warn("worker %s (epoch %llu) removed: %s", wk->id, (unsigned long long)wk->epoch, why);
    snprintf(message, sizeof(message), "worker %s: %s", wk->id, why);
    /* Fail every request that has this worker on either side; the fail path cancels at
     * the other worker. Mark the slot unused first so no cancel goes to the dead one. */
    wk->used = false;
    pd_router_req_t *req = r->head;
    while (req != NULL) {
        pd_router_req_t *next = req->next;
        bool on_decode = (int)wk->slot == req->decode_slot && req->state != PD_REQ_QUEUED;
        bool on_prefill = (int)wk->slot == req->prefill_slot && req->state != PD_REQ_QUEUED;
        if (on_decode && (req->decode_done || req->last_streamed))
            pd_router_req_finish_now(r, req); /* every token is in; a report is not */
        else if (on_prefill && !on_decode && req->prefilled)
            ; /* prefill's part is over: decode goes on */
        else if ((on_decode || on_prefill) && !pd_router_req_move(r, req, message))
            pd_router_req_fail(r, req, code, message);
        req = next;
    }
    pd_dir_worker_drop(r->dir, wk->slot);
    if (wk->sub_connected && zmq_disconnect(r->event_sock, wk->events_endpoint) != 0)
        pd_log_debug("disconnect %s: %s", wk->events_endpoint, zmq_strerror(zmq_errno()));
    free(wk->xfer_desc);
    uint32_t slot = wk->slot;
    memset(wk, 0, sizeof(*wk));
    wk->slot = slot;
}

/* Worker auth: whether the peer's key may register as worker_id (the id its line in
 * --worker-keys names, or any id no live worker of another key holds). */
static const char *pd_router_worker_key_refusal(pd_router_t *r, const char *key,
                                                const char *worker_id)
{
    const pd_router_worker_key_t *allowed = pd_router_auth_worker_key(r, key);
    if (allowed == NULL)
        return "this key is not in the router's --worker-keys";
    if (allowed->id[0] != '\0' && strcmp(allowed->id, worker_id) != 0)
        return "this key is listed for another worker id";
    const pd_router_worker_t *live = pd_router_worker_by_id(r, worker_id);
    if (live != NULL && strcmp(live->key, key) != 0)
        return "a live worker holds this id under another key";
    return NULL;
}

static void pd_router_worker_on_register(pd_router_t *r, const pd_router_rid_t *rid,
                                         const char *key, const pd_proto_register_t *m)
{
    pd_proto_msg_t reply = {.type = PD_PROTO_TYPE_WORKER_ERROR};
    pd_router_worker_t *wk;
    const char *refusal = key != NULL ? pd_router_worker_key_refusal(r, key, m->worker_id) : NULL;

    if (refusal != NULL) {
        pd_log_warn("worker %s registration refused: %s", m->worker_id, refusal);
        reply.u.worker_error.code = PD_ERR_AUTH;
        reply.u.worker_error.message = refusal;
        pd_router_send_rid(r, r->worker_sock, rid, &reply);
        return;
    }

    if (m->block_tokens != r->cfg.block_tokens) {
        pd_log_warn("worker %s registers block_tokens %u, the router uses %u: refused",
                    m->worker_id, m->block_tokens, r->cfg.block_tokens);
        reply.u.worker_error.code = PD_ERR_INVALID_PARAM;
        reply.u.worker_error.message = "block_tokens differs from the router's --block-tokens";
        pd_router_send_rid(r, r->worker_sock, rid, &reply);
        return;
    }
    if (strcmp(m->model_id, r->cfg.model_id) != 0)
        pd_log_warn("worker %s registers model_id '%s', the router hashes with '%s'", m->worker_id,
                    m->model_id, r->cfg.model_id);

    /* The same worker again: keep it if nothing changed, else replace the old entry. */
    wk = pd_router_worker_by_id(r, m->worker_id);
    if (wk == NULL)
        wk = pd_router_worker_by_rid(r, rid);
    if (wk != NULL) {
        bool same = wk->epoch == m->epoch && wk->rid.n == rid->n &&
                    memcmp(wk->rid.bytes, rid->bytes, rid->n) == 0 &&
                    strcmp(wk->id, m->worker_id) == 0;
        if (same) {
            wk->last_seen_ms = pd_time_now_ms();
            pd_router_worker_welcome(r, wk);
            return;
        }
        pd_router_worker_remove(r, wk, PD_ERR_PEER, "re-registered (restart)");
    }
    wk = NULL;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        if (!r->workers[s].used) {
            wk = &r->workers[s];
            break;
        }
    }
    if (wk == NULL) {
        reply.u.worker_error.code = PD_ERR_NO_RESOURCE;
        reply.u.worker_error.message = "the router has no room for another worker";
        pd_router_send_rid(r, r->worker_sock, rid, &reply);
        return;
    }
    void *desc = malloc(m->xfer_desc_bytes ? m->xfer_desc_bytes : 1);
    if (desc == NULL) {
        reply.u.worker_error.code = PD_ERR_NO_MEMORY;
        reply.u.worker_error.message = "out of memory";
        pd_router_send_rid(r, r->worker_sock, rid, &reply);
        return;
    }
    if (m->xfer_desc_bytes > 0)
        memcpy(desc, m->xfer_desc, m->xfer_desc_bytes);

    uint32_t slot = wk->slot;
    memset(wk, 0, sizeof(*wk));
    wk->slot = slot;
    wk->used = true;
    memcpy(wk->id, m->worker_id, sizeof(wk->id));
    wk->role = m->role;
    wk->epoch = m->epoch;
    wk->rid = *rid;
    if (key != NULL)
        snprintf(wk->key, sizeof(wk->key), "%s", key);
    wk->n_blocks = m->n_blocks;
    wk->free_blocks = m->n_blocks;
    wk->xfer_desc = desc;
    wk->xfer_desc_bytes = m->xfer_desc_bytes;
    memcpy(wk->events_endpoint, m->events_endpoint, sizeof(wk->events_endpoint));
    wk->last_seen_ms = pd_time_now_ms();
    pd_dir_worker_reset(r->dir, slot, m->epoch);
    if (wk->events_endpoint[0] != '\0') {
        /* Under worker auth the events PUB is a CURVE server with the worker's key: the
         * option applies to the connection made next. */
        if (key != NULL)
            zmq_setsockopt(r->event_sock, ZMQ_CURVE_SERVERKEY, wk->key, sizeof(wk->key));
        if (zmq_connect(r->event_sock, wk->events_endpoint) == 0)
            wk->sub_connected = true;
        else
            pd_log_warn("worker %s: cannot subscribe to %s: %s", wk->id, wk->events_endpoint,
                        zmq_strerror(zmq_errno()));
    }
    pd_log_info("worker %s registered: role %s, epoch %llu, %u blocks, events %s", wk->id,
                pd_proto_role_name(wk->role), (unsigned long long)wk->epoch, wk->n_blocks,
                wk->events_endpoint[0] ? wk->events_endpoint : "(none)");

    pd_router_worker_welcome(r, wk);
    pd_router_dispatch(r);
}

/* A heartbeat says the worker published up to kv_seq. Events still in flight on the PUB
 * catch up by themselves; a seq that stays ahead for two heartbeat periods was lost (PUB
 * drops what a SUB has not connected for yet), and only a snapshot brings it back. */
static void pd_router_worker_check_seq(pd_router_t *r, pd_router_worker_t *wk, uint64_t kv_seq)
{
    uint64_t now = pd_time_now_ms();
    if (kv_seq == 0 || wk->resync_pending || !pd_dir_worker_synced(r->dir, wk->slot) ||
        kv_seq <= pd_dir_worker_seq(r->dir, wk->slot)) {
        wk->behind_since_ms = 0;
        return;
    }
    if (wk->behind_since_ms == 0) {
        wk->behind_since_ms = now;
        return;
    }
    if (now >= wk->behind_since_ms + 2ull * r->cfg.heartbeat_ms) {
        pd_log_info("worker %s: published seq %llu, directory at %llu: resync", wk->id,
                    (unsigned long long)kv_seq,
                    (unsigned long long)pd_dir_worker_seq(r->dir, wk->slot));
        wk->behind_since_ms = 0;
        pd_router_worker_send_resync(r, wk);
    }
}

void pd_router_worker_on_message(pd_router_t *r, const pd_router_rid_t *rid, const char *key_z85,
                                 const pd_proto_msg_t *msg)
{
    if (msg->type == PD_PROTO_TYPE_REGISTER) {
        pd_router_worker_on_register(r, rid, key_z85, &msg->u.reg);
        return;
    }
    pd_router_worker_t *wk = pd_router_worker_by_rid(r, rid);
    if (wk != NULL && key_z85 != NULL && strcmp(wk->key, key_z85) != 0) {
        pd_log_warn("%s for worker %s from another key dropped", pd_proto_type_name(msg->type),
                    wk->id);
        return;
    }
    if (wk == NULL) {
        /* A worker this router does not know (it restarted, or removed the worker as
         * dead): whatever it sent is dropped, and it is told to register again, which a
         * worker removed while it ran does under a new epoch, dropping its requests. */
        pd_log_debug("%s from an unregistered worker: register again",
                     pd_proto_type_name(msg->type));
        pd_proto_msg_t reply = {.type = PD_PROTO_TYPE_WORKER_ERROR};
        reply.u.worker_error.code = PD_ERR_NOT_FOUND;
        reply.u.worker_error.message = "unknown worker: register again";
        pd_router_send_rid(r, r->worker_sock, rid, &reply);
        return;
    }
    wk->last_seen_ms = pd_time_now_ms();

    switch (msg->type) {
    case PD_PROTO_TYPE_HEARTBEAT:
        if (msg->u.heartbeat.epoch != wk->epoch) {
            pd_log_warn("worker %s heartbeat with epoch %llu, registered %llu", wk->id,
                        (unsigned long long)msg->u.heartbeat.epoch, (unsigned long long)wk->epoch);
            return;
        }
        /* A heartbeat that left after the failed push (not one already on its way). */
        if (wk->suspect_ms != 0 && pd_time_now_ms() >= wk->suspect_ms + PD_ROUTER_SUSPECT_MIN_MS) {
            wk->suspect_ms = 0;
            pd_router_req_on_suspect_alive(r, wk);
        }
        wk->running = msg->u.heartbeat.running;
        wk->queued = msg->u.heartbeat.queued;
        wk->free_blocks = msg->u.heartbeat.free_blocks;
        if (msg->u.heartbeat.stats != NULL)
            wk->stats = *msg->u.heartbeat.stats;
        pd_router_worker_check_seq(r, wk, msg->u.heartbeat.kv_seq);
        break;
    case PD_PROTO_TYPE_KV_SNAPSHOT: {
        pd_status_t st = pd_dir_apply_snapshot(r->dir, wk->slot, &msg->u.kv_snapshot);
        if (st == PD_ERR_PEER) {
            pd_log_warn("worker %s: snapshot of epoch %llu ignored", wk->id,
                        (unsigned long long)msg->u.kv_snapshot.epoch);
            return;
        }
        wk->resync_pending = false;
        pd_log_debug("worker %s: snapshot seq %llu, %llu hashes", wk->id,
                     (unsigned long long)msg->u.kv_snapshot.seq,
                     (unsigned long long)pd_dir_worker_n_hashes(r->dir, wk->slot));
        break;
    }
    case PD_PROTO_TYPE_RESERVED:
        pd_router_req_on_reserved(r, wk, &msg->u.reserved);
        break;
    case PD_PROTO_TYPE_PREFILLED:
        pd_router_req_on_prefilled(r, wk, &msg->u.prefilled);
        break;
    case PD_PROTO_TYPE_PINNED:
        pd_router_req_on_pinned(r, wk, &msg->u.pinned);
        break;
    case PD_PROTO_TYPE_WORKER_TOKEN:
        pd_router_req_on_token(r, wk, &msg->u.worker_token);
        break;
    case PD_PROTO_TYPE_WORKER_DONE:
        pd_router_req_on_done(r, wk, &msg->u.worker_done);
        break;
    case PD_PROTO_TYPE_WORKER_ERROR:
        pd_router_req_on_error(r, wk, &msg->u.worker_error);
        break;
    default:
        pd_log_debug("worker %s sent %s: ignored", wk->id, pd_proto_type_name(msg->type));
        break;
    }
}

void pd_router_worker_on_garbage(pd_router_t *r, const pd_router_rid_t *rid, uint64_t req_id,
                                 pd_status_t code)
{
    pd_router_worker_t *wk = pd_router_worker_by_rid(r, rid);
    if (wk == NULL || req_id == 0)
        return;
    pd_router_req_t *req = pd_router_req_find(r, req_id);
    if (req == NULL || req->state == PD_REQ_QUEUED)
        return;
    bool mine = ((int)wk->slot == req->decode_slot && wk->epoch == req->decode_epoch) ||
                ((int)wk->slot == req->prefill_slot && wk->epoch == req->prefill_epoch);
    if (!mine)
        return;
    char msg[128];
    snprintf(msg, sizeof(msg), "worker %s sent a malformed message for this request", wk->id);
    pd_router_req_fail(r, req, code, msg);
    pd_router_dispatch(r);
}

void pd_router_worker_on_event(pd_router_t *r, const pd_proto_kv_event_t *ev)
{
    pd_router_worker_t *wk = pd_router_worker_by_id(r, ev->worker_id);
    if (wk == NULL)
        return;
    pd_dir_verdict_t v = pd_dir_apply_event(r->dir, wk->slot, ev);
    if (v == PD_DIR_NEED_RESYNC && !wk->resync_pending) {
        pd_log_info("worker %s: kv_event seq %llu epoch %llu needs a resync", wk->id,
                    (unsigned long long)ev->seq, (unsigned long long)ev->epoch);
        pd_router_worker_send_resync(r, wk);
    }
}

void pd_router_workers_tick(pd_router_t *r, uint64_t now_ms)
{
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        pd_router_worker_t *wk = &r->workers[s];
        if (!wk->used)
            continue;
        if (now_ms > wk->last_seen_ms + r->cfg.worker_timeout_ms) {
            pd_router_worker_remove(r, wk, PD_ERR_PEER, "no heartbeat");
            continue;
        }
        if (wk->resync_pending && now_ms > wk->resync_sent_ms + PD_ROUTER_RESYNC_RETRY_MS)
            pd_router_worker_send_resync(r, wk);
    }
}

void pd_router_workers_cleanup(pd_router_t *r)
{
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        free(r->workers[s].xfer_desc);
        r->workers[s].xfer_desc = NULL;
        r->workers[s].used = false;
    }
}
