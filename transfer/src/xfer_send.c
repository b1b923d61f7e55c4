/* The sending side of a transfer: bounds checks, coalescing, checksums, notification. */
#include "xfer_int.h"

#include "pd/hash.h"
#include "pd/log.h"
#include "pd/time.h"

#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

pd_status_t pd_xfer_send_begin(pd_xfer_peer_t *peer, uint64_t xfer_id,
                               const pd_xfer_range_t *allowed, size_t n_allowed,
                               uint32_t timeout_ms, pd_xfer_send_t **send_p)
{
    pd_xfer_engine_t *engine = peer->engine;
    if (!engine->registered)
        return PD_ERR_NOT_FOUND;
    if (peer->fail_status != PD_OK)
        return peer->fail_status;
    pd_xfer_send_t *send = calloc(1, sizeof(*send));
    if (send == NULL)
        return PD_ERR_NO_MEMORY;
    size_t n = n_allowed > 0 ? n_allowed : 1;
    send->allowed = malloc(n * sizeof(*send->allowed));
    if (send->allowed == NULL)
        goto err_send;
    if (n_allowed > 0) {
        memcpy(send->allowed, allowed, n_allowed * sizeof(*allowed));
    } else {
        send->allowed[0].offset = 0;
        send->allowed[0].bytes = peer->remote_bytes;
    }
    for (size_t i = 0; i < n; i++) {
        const pd_xfer_range_t *r = &send->allowed[i];
        if (r->offset + r->bytes < r->offset || r->offset + r->bytes > peer->remote_bytes) {
            free(send->allowed);
            free(send);
            return PD_ERR_OUT_OF_RANGE;
        }
    }
    send->n_allowed = pd_xfer__ranges_merge(send->allowed, n);
    send->engine = engine;
    send->peer = peer;
    send->xfer_id = xfer_id;
    send->remote_id = peer->remote_id;
    send->deadline_ns =
        pd_time_now_ns() + (uint64_t)(timeout_ms ? timeout_ms : engine->cfg.timeout_ms) * 1000000u;
    send->state = PD_XFER_SEND_OPEN;
    send->status = PD_INPROGRESS;
    send->next = engine->sends;
    if (engine->sends != NULL)
        engine->sends->prev = send;
    engine->sends = send;
    *send_p = send;
    return PD_OK;

err_send:
    free(send);
    return PD_ERR_NO_MEMORY;
}

/* Make the transfer final with an error (no-op when it already is). */
static void pd_xfer__send_fail(pd_xfer_send_t *send, pd_status_t status)
{
    if (send->state == PD_XFER_SEND_DONE)
        return;
    send->state = PD_XFER_SEND_DONE;
    send->status = status;
    send->engine->n_completed++;
}

static pd_status_t pd_xfer__send_check(const pd_xfer_send_t *send, const pd_xfer_seg_t *segs,
                                       size_t n_segs)
{
    const pd_xfer_engine_t *engine = send->engine;
    for (size_t i = 0; i < n_segs; i++) {
        const pd_xfer_seg_t *g = &segs[i];
        if (g->bytes == 0 || g->local_offset + g->bytes < g->local_offset ||
            g->local_offset + g->bytes > engine->bytes) {
            pd_log_warn("xfer: send %llu: segment %zu leaves the local region",
                        (unsigned long long)send->xfer_id, i);
            return PD_ERR_OUT_OF_RANGE;
        }
        if (!pd_xfer__ranges_contain(send->allowed, send->n_allowed, g->remote_offset, g->bytes)) {
            pd_log_warn("xfer: send %llu: segment %zu [%llu, +%llu) is not reserved at the "
                        "peer",
                        (unsigned long long)send->xfer_id, i, (unsigned long long)g->remote_offset,
                        (unsigned long long)g->bytes);
            return PD_ERR_OUT_OF_RANGE;
        }
    }
    return PD_OK;
}

static pd_status_t pd_xfer__recs_reserve(pd_xfer_send_t *send, size_t n_more)
{
    if (send->n_recs + n_more <= send->cap_recs)
        return PD_OK;
    size_t cap = send->cap_recs ? send->cap_recs : 64;
    while (cap < send->n_recs + n_more)
        cap *= 2;
    uint64_t *recs = realloc(send->recs, cap * 3 * sizeof(*recs));
    if (recs == NULL)
        return PD_ERR_NO_MEMORY;
    send->recs = recs;
    send->cap_recs = cap;
    return PD_OK;
}

/* With checksums on and puts as the data path, a coalesced run is put as soon as it
 * reaches this size and a longer segment goes piece by piece: the put then copies bytes
 * the checksum just read, from cache, instead of reading them from memory a second time.
 * Data messages are not split: the transport reads their bytes later anyway (rendezvous),
 * and over TCP every message costs a round trip. */
#define PD_XFER_HOT_CHUNK_BYTES (256u * 1024u)

/* A header for one more data message of send, in storage that does not move. */
pd_xfer__data_hdr_t *pd_xfer__hdr_next(pd_xfer_send_t *send, uint64_t remote_offset)
{
    pd_xfer__hdr_chunk_t *c = send->hdr_chunks;
    if (c == NULL || c->n_used == c->n_cap) {
        size_t cap = c == NULL ? 64 : c->n_cap * 2;
        if (cap > 4096)
            cap = 4096;
        pd_xfer__hdr_chunk_t *n = malloc(sizeof(*n) + cap * sizeof(n->hdrs[0]));
        if (n == NULL)
            return NULL;
        n->next = c;
        n->n_used = 0;
        n->n_cap = cap;
        send->hdr_chunks = n;
        c = n;
    }
    pd_xfer__data_hdr_t *h = &c->hdrs[c->n_used++];
    memset(h, 0, sizeof(*h));
    h->xfer_id = send->xfer_id;
    h->src = send->engine->id;
    h->offset = remote_offset;
    return h;
}

pd_status_t pd_xfer__put(pd_xfer_send_t *send, uint64_t local_offset, uint64_t remote_offset,
                         uint64_t bytes)
{
    pd_xfer_engine_t *engine = send->engine;
    engine->stats.bytes_wire += bytes;
    const pd_xfer__data_hdr_t *hdr = NULL;
    if (send->peer->data_path == PD_XFER_DATA_PATH_AM) {
        hdr = pd_xfer__hdr_next(send, remote_offset);
        if (hdr == NULL)
            return PD_ERR_NO_MEMORY;
        send->data_bytes += bytes;
    }
    engine->stats.n_ops_issued++;
    return engine->ops->put(send->peer, send, engine->base + local_offset, remote_offset, bytes,
                            hdr);
}

pd_status_t pd_xfer_send_post(pd_xfer_send_t *send, const pd_xfer_seg_t *segs, size_t n_segs)
{
    if (send->state != PD_XFER_SEND_OPEN)
        return send->state == PD_XFER_SEND_DONE ? send->status : PD_ERR_BUSY;
    pd_xfer_peer_t *peer = send->peer;
    if (peer == NULL)
        return PD_ERR_CANCELED;
    if (peer->fail_status != PD_OK) {
        pd_xfer__send_fail(send, peer->fail_status);
        return peer->fail_status;
    }
    pd_status_t st = pd_xfer__send_check(send, segs, n_segs);
    if (st != PD_OK)
        return st;
    st = pd_xfer__recs_reserve(send, n_segs);
    if (st != PD_OK)
        return st;
    pd_xfer_engine_t *engine = send->engine;
    if (pd_xfer__send_packs(send)) {
        st = pd_xfer__send_post_packed(send, segs, n_segs);
        if (st != PD_OK)
            goto err_put;
        goto posted;
    }
    const bool checksum = engine->cfg.verify_checksums;
    const bool coalesce = engine->cfg.coalesce;
    /* Split into cache-sized pieces only where the copy follows the hash at once. */
    const bool hot = checksum && peer->data_path == PD_XFER_DATA_PATH_PUT;
    uint64_t run_local = 0, run_remote = 0, run_bytes = 0;
    for (size_t i = 0; i < n_segs; i++) {
        const pd_xfer_seg_t *g = &segs[i];
        uint64_t *rec = &send->recs[3 * send->n_recs++];
        rec[0] = g->remote_offset;
        rec[1] = g->bytes;
        rec[2] = 0;
        bool joins = coalesce && run_local + run_bytes == g->local_offset &&
                     run_remote + run_bytes == g->remote_offset;
        if (run_bytes > 0 && (!joins || (hot && g->bytes > PD_XFER_HOT_CHUNK_BYTES))) {
            st = pd_xfer__put(send, run_local, run_remote, run_bytes);
            if (st != PD_OK)
                goto err_put;
            run_bytes = 0;
        }
        if (hot && g->bytes > PD_XFER_HOT_CHUNK_BYTES) {
            /* A long segment: hash and put it piece by piece, so that each put reads
             * bytes the hash has just brought into cache. */
            XXH3_state_t state;
            XXH3_INITSTATE(&state);
            XXH3_64bits_reset_withSeed(&state, 0);
            for (uint64_t off = 0; off < g->bytes; off += PD_XFER_HOT_CHUNK_BYTES) {
                uint64_t n = g->bytes - off < PD_XFER_HOT_CHUNK_BYTES ? g->bytes - off
                                                                      : PD_XFER_HOT_CHUNK_BYTES;
                XXH3_64bits_update(&state, engine->base + g->local_offset + off, n);
                st = pd_xfer__put(send, g->local_offset + off, g->remote_offset + off, n);
                if (st != PD_OK)
                    goto err_put;
            }
            rec[2] = XXH3_64bits_digest(&state);
            continue;
        }
        if (checksum)
            rec[2] = pd_hash_bytes(engine->base + g->local_offset, g->bytes, 0);
        if (run_bytes == 0) {
            run_local = g->local_offset;
            run_remote = g->remote_offset;
        }
        run_bytes += g->bytes;
        if (hot && run_bytes >= PD_XFER_HOT_CHUNK_BYTES) {
            st = pd_xfer__put(send, run_local, run_remote, run_bytes);
            if (st != PD_OK)
                goto err_put;
            run_bytes = 0;
        }
    }
    if (run_bytes > 0) {
        st = pd_xfer__put(send, run_local, run_remote, run_bytes);
        if (st != PD_OK)
            goto err_put;
    }
posted:
    engine->stats.n_segs_posted += n_segs;
    for (size_t i = 0; i < n_segs; i++)
        engine->stats.bytes_posted += segs[i].bytes;
    return PD_OK;

err_put:
    pd_log_warn("xfer: send %llu: put failed: %s", (unsigned long long)send->xfer_id,
                pd_status_str(st));
    pd_xfer__send_fail(send, st);
    return st;
}

pd_status_t pd_xfer_send_finish(pd_xfer_send_t *send, const void *payload, size_t payload_bytes)
{
    if (send->state != PD_XFER_SEND_OPEN)
        return send->state == PD_XFER_SEND_DONE ? send->status : PD_ERR_BUSY;
    if (payload_bytes > PD_XFER_PAYLOAD_MAX || (payload == NULL && payload_bytes > 0))
        return PD_ERR_LIMIT;
    if (send->peer == NULL)
        return PD_ERR_CANCELED;
    pd_xfer_engine_t *engine = send->engine;
    /* The notification: see docs/PROTOCOL.md, "Transfer descriptor and notifications". */
    pd_mp_writer_init(&send->msg);
    send->msg_live = true;
    pd_mp_writer_t *w = &send->msg;
    const bool am = send->peer->data_path == PD_XFER_DATA_PATH_AM;
    pd_mp_put_map(w, am ? 7 : 6);
    pd_mp_put_str(w, "t");
    pd_mp_put_str(w, "notify");
    pd_mp_put_str(w, "xfer");
    pd_mp_put_u64(w, send->xfer_id);
    pd_mp_put_str(w, "src");
    pd_mp_put_u64(w, engine->id);
    pd_mp_put_str(w, "ck");
    pd_mp_put_bool(w, engine->cfg.verify_checksums);
    pd_mp_put_str(w, "segs");
    /* Little-endian u64 triples; x86-64 and aarch64 hosts are little-endian already. */
    pd_mp_put_bin(w, send->recs, send->n_recs * 3 * sizeof(uint64_t));
    pd_mp_put_str(w, "payload");
    pd_mp_put_bin(w, payload_bytes ? payload : "", payload_bytes);
    if (am) {
        /* The receiver holds the notification until this many bytes of data messages
         * landed: it can never be applied before its data, in whatever order UCX
         * delivers. */
        pd_mp_put_str(w, "msg_bytes");
        pd_mp_put_u64(w, send->data_bytes);
    }
    send->state = PD_XFER_SEND_FLUSHING;
    pd_status_t st = engine->ops->flush(send->peer, send);
    if (st != PD_OK) {
        pd_xfer__send_fail(send, st);
        return st;
    }
    return PD_OK;
}

void pd_xfer__send_flushed(pd_xfer_send_t *send, pd_status_t status)
{
    send->flushed = true;
    send->flush_status = status;
}

void pd_xfer__send_data_done(pd_xfer_send_t *send, pd_status_t status)
{
    if (send->n_data_open > 0)
        send->n_data_open--;
    if (status != PD_OK && send->data_status == PD_OK)
        send->data_status = status;
    if (send->flush_on_data && send->n_data_open == 0) {
        send->flush_on_data = false;
        pd_xfer__send_flushed(send, send->data_status);
    }
}

void pd_xfer__send_ref(pd_xfer_send_t *send)
{
    send->n_refs++;
}

static void pd_xfer__send_free(pd_xfer_send_t *send)
{
    pd_xfer_engine_t *engine = send->engine;
    if (send->prev != NULL)
        send->prev->next = send->next;
    else
        engine->sends = send->next;
    if (send->next != NULL)
        send->next->prev = send->prev;
    if (send->msg_live)
        pd_mp_writer_cleanup(&send->msg);
    while (send->hdr_chunks != NULL) {
        pd_xfer__hdr_chunk_t *c = send->hdr_chunks;
        send->hdr_chunks = c->next;
        free(c);
    }
    while (send->stages != NULL) {
        pd_xfer__stage_t *g = send->stages;
        send->stages = g->next;
        free(g);
    }
    free(send->recs);
    free(send->allowed);
    free(send);
}

void pd_xfer__send_unref(pd_xfer_send_t *send)
{
    if (send->n_refs > 0)
        send->n_refs--;
    if (send->n_refs == 0 && send->orphan)
        pd_xfer__send_free(send);
}

pd_status_t pd_xfer_send_status(const pd_xfer_send_t *send)
{
    return send->state == PD_XFER_SEND_DONE ? send->status : PD_INPROGRESS;
}

void pd_xfer_send_destroy(pd_xfer_send_t **send_p)
{
    if (send_p == NULL || *send_p == NULL)
        return;
    pd_xfer_send_t *send = *send_p;
    if (send->state != PD_XFER_SEND_DONE) {
        send->state = PD_XFER_SEND_DONE;
        send->status = PD_ERR_CANCELED;
    }
    if (send->n_refs > 0)
        send->orphan = true; /* a backend request still points here */
    else
        pd_xfer__send_free(send);
    *send_p = NULL;
}

/* Advance sends whose flush completed and expire deadlines. */
void pd_xfer__sends_progress(pd_xfer_engine_t *engine, uint64_t now_ns)
{
    for (pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->state == PD_XFER_SEND_FLUSHING && s->flushed) {
            if (s->flush_status != PD_OK) {
                pd_xfer__send_fail(s, s->flush_status);
                continue;
            }
            s->state = PD_XFER_SEND_NOTIFIED;
            pd_status_t st = s->peer ? engine->ops->notify(s->peer, s, pd_mp_writer_data(&s->msg),
                                                           pd_mp_writer_size(&s->msg))
                                     : PD_ERR_CANCELED;
            if (st != PD_OK)
                pd_xfer__send_fail(s, st);
        }
        if (s->state != PD_XFER_SEND_DONE && now_ns >= s->deadline_ns) {
            pd_log_warn("xfer: send %llu timed out", (unsigned long long)s->xfer_id);
            pd_xfer__send_fail(s, PD_ERR_TIMEOUT);
        }
    }
}

/* The receiver's answer to a notification. */
void pd_xfer__sends_ack(pd_xfer_engine_t *engine, uint64_t xfer_id, uint64_t from_id,
                        pd_status_t status)
{
    for (pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->xfer_id != xfer_id || s->remote_id != from_id || s->state == PD_XFER_SEND_DONE)
            continue;
        if (s->state != PD_XFER_SEND_NOTIFIED && status == PD_OK)
            continue; /* an ack cannot precede our notification */
        s->state = PD_XFER_SEND_DONE;
        s->status = status;
        engine->n_completed++;
        return;
    }
}
