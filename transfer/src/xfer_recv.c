/* The receiving side: expectations, notification checks, checksum verification, acks;
 * and the engine's progress pass that drives both sides. */
#include "xfer_int.h"

#include "pd/hash.h"
#include "pd/log.h"
#include "pd/time.h"

#include <stdlib.h>
#include <string.h>

/* A notification carries at most this many segments (a 64-layer, 8192-block transfer
 * is 512K segments, 12 MiB of triples). */
#define PD_XFER_NOTIFY_MAX_SEGS (512u * 1024u)

static const pd_mp_limits_t pd_xfer__msg_limits = {
    .max_frame_bytes = 16 * 1024 * 1024,
    .max_array_len = 16,
    .max_map_len = 16,
    .max_str_bytes = 64,
    .max_bin_bytes = PD_XFER_NOTIFY_MAX_SEGS * 24,
    .max_depth = 2,
    .max_objects = 64,
};

pd_status_t pd_xfer_recv_expect(pd_xfer_engine_t *engine, uint64_t xfer_id,
                                const pd_xfer_range_t *ranges, size_t n_ranges, uint32_t timeout_ms,
                                pd_xfer_recv_t **recv_p)
{
    if (!engine->registered)
        return PD_ERR_NOT_FOUND;
    if (n_ranges == 0 || ranges == NULL)
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n_ranges; i++) {
        if (ranges[i].offset + ranges[i].bytes < ranges[i].offset ||
            ranges[i].offset + ranges[i].bytes > engine->bytes)
            return PD_ERR_OUT_OF_RANGE;
    }
    for (const pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->xfer_id == xfer_id && !r->orphan)
            return PD_ERR_EXISTS;
    }
    pd_xfer_recv_t *recv = calloc(1, sizeof(*recv));
    if (recv == NULL)
        return PD_ERR_NO_MEMORY;
    recv->ranges = malloc(n_ranges * sizeof(*ranges));
    if (recv->ranges == NULL) {
        free(recv);
        return PD_ERR_NO_MEMORY;
    }
    memcpy(recv->ranges, ranges, n_ranges * sizeof(*ranges));
    recv->n_ranges = pd_xfer__ranges_merge(recv->ranges, n_ranges);
    recv->engine = engine;
    recv->xfer_id = xfer_id;
    recv->status = PD_INPROGRESS;
    recv->deadline_ns =
        pd_time_now_ns() + (uint64_t)(timeout_ms ? timeout_ms : engine->cfg.timeout_ms) * 1000000u;
    recv->next = engine->recvs;
    if (engine->recvs != NULL)
        engine->recvs->prev = recv;
    engine->recvs = recv;
    *recv_p = recv;
    return PD_OK;
}

pd_status_t pd_xfer_recv_status(const pd_xfer_recv_t *recv)
{
    return recv->status;
}

pd_status_t pd_xfer_recv_payload(const pd_xfer_recv_t *recv, const void **payload_p,
                                 size_t *payload_bytes_p)
{
    if (recv->status != PD_OK)
        return recv->status == PD_INPROGRESS ? PD_ERR_BUSY : recv->status;
    *payload_p = recv->payload;
    *payload_bytes_p = recv->payload_bytes;
    return PD_OK;
}

pd_status_t pd_xfer_recv_segments(const pd_xfer_recv_t *recv, const pd_xfer_seg_t **segs_p,
                                  size_t *n_segs_p)
{
    if (recv->status != PD_OK)
        return recv->status == PD_INPROGRESS ? PD_ERR_BUSY : recv->status;
    *segs_p = recv->segs;
    *n_segs_p = recv->n_segs;
    return PD_OK;
}

static void pd_xfer__recv_free(pd_xfer_recv_t *recv)
{
    pd_xfer_engine_t *engine = recv->engine;
    if (recv->prev != NULL)
        recv->prev->next = recv->next;
    else
        engine->recvs = recv->next;
    if (recv->next != NULL)
        recv->next->prev = recv->prev;
    free(recv->parked);
    free(recv->ranges);
    free(recv->payload);
    free(recv->segs);
    free(recv);
}

void pd_xfer_recv_destroy(pd_xfer_recv_t **recv_p)
{
    if (recv_p == NULL || *recv_p == NULL)
        return;
    pd_xfer_recv_t *recv = *recv_p;
    *recv_p = NULL;
    if (recv->status == PD_INPROGRESS)
        recv->status = PD_ERR_CANCELED;
    if (recv->n_landing > 0) {
        /* A receive still writes into the region on our behalf: keep the handle (not
         * its expectation) until it completes. */
        recv->orphan = true;
        recv->engine->n_orphan_recvs++;
        free(recv->parked);
        recv->parked = NULL;
        return;
    }
    pd_xfer__recv_free(recv);
}

/* The live expectation of xfer_id, or NULL. */
static pd_xfer_recv_t *pd_xfer__recv_find(pd_xfer_engine_t *engine, uint64_t xfer_id)
{
    for (pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->xfer_id == xfer_id && !r->orphan)
            return r;
    }
    return NULL;
}

static void pd_xfer__recv_finish(pd_xfer_recv_t *recv, pd_status_t status);

uint64_t pd_xfer__data_wire_bytes(const pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr)
{
    if (hdr->raw_bytes == 0)
        return 0;
    const size_t raw = pd_kv_block_layer_bytes(&engine->layout);
    const size_t packed = pd_xfer_codec_block_bytes((pd_xfer_codec_t)hdr->codec, &engine->layout);
    return hdr->raw_bytes / raw * packed;
}

/* A packed message's shape against this engine's layout: a known codec, whole slices at a
 * block boundary, exactly the packed size of those slices. */
static bool pd_xfer__packed_ok(const pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr,
                               uint64_t wire_bytes)
{
    if (!engine->has_layout ||
        (hdr->codec != PD_XFER_CODEC_INT8 && hdr->codec != PD_XFER_CODEC_FP8))
        return false;
    const size_t raw = pd_kv_block_layer_bytes(&engine->layout);
    const size_t packed = pd_xfer_codec_block_bytes((pd_xfer_codec_t)hdr->codec, &engine->layout);
    return raw > 0 && packed > 0 && hdr->raw_bytes % raw == 0 && hdr->offset % raw == 0 &&
           hdr->raw_bytes / raw <= UINT64_MAX / packed &&
           wire_bytes == hdr->raw_bytes / raw * packed;
}

pd_status_t pd_xfer__data_accept(pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr,
                                 uint64_t wire_bytes, pd_xfer_recv_t **recv_p, void **dest_p)
{
    pd_xfer_recv_t *recv = pd_xfer__recv_find(engine, hdr->xfer_id);
    const uint64_t bytes = hdr->raw_bytes != 0 ? hdr->raw_bytes : wire_bytes;
    pd_status_t st = PD_OK;
    if (recv == NULL || recv->status != PD_INPROGRESS) {
        st = recv == NULL ? PD_ERR_NOT_FOUND : recv->status;
    } else if (!engine->registered || bytes == 0 ||
               !pd_xfer__ranges_contain(recv->ranges, recv->n_ranges, hdr->offset, bytes) ||
               hdr->offset + bytes > engine->bytes) {
        /* Nothing of it is written: the sender claims bytes it was not given. */
        pd_log_warn("xfer: recv %llu: data message [%llu, +%llu) was not reserved",
                    (unsigned long long)hdr->xfer_id, (unsigned long long)hdr->offset,
                    (unsigned long long)bytes);
        st = PD_ERR_OUT_OF_RANGE;
        pd_xfer__recv_finish(recv, st);
    } else if (hdr->raw_bytes != 0 && !pd_xfer__packed_ok(engine, hdr, wire_bytes)) {
        pd_log_warn("xfer: recv %llu: packed data message (codec %u, %llu bytes for %llu) "
                    "does not fit this pool's layout",
                    (unsigned long long)hdr->xfer_id, hdr->codec, (unsigned long long)wire_bytes,
                    (unsigned long long)hdr->raw_bytes);
        st = PD_ERR_PROTO;
        pd_xfer__recv_finish(recv, st);
    } else if (recv->bytes_landed + recv->n_landing == 0) {
        recv->data_src = hdr->src; /* the first message names the sender */
    } else if (recv->data_src != hdr->src) {
        pd_log_warn("xfer: recv %llu: data from two senders", (unsigned long long)hdr->xfer_id);
        st = PD_ERR_PROTO;
        pd_xfer__recv_finish(recv, st);
    }
    if (st != PD_OK) {
        engine->stats.n_data_refused++;
        return st;
    }
    *recv_p = recv;
    *dest_p = engine->base + hdr->offset;
    return PD_OK;
}

void pd_xfer__data_restore(pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr, void *dest,
                           const void *packed)
{
    const pd_xfer_codec_t codec = (pd_xfer_codec_t)hdr->codec;
    const size_t raw = pd_kv_block_layer_bytes(&engine->layout);
    const size_t n = hdr->raw_bytes / raw;
    if (packed == NULL) {
        pd_xfer_codec_unpack_run(codec, &engine->layout, dest, n);
        return;
    }
    const size_t pb = pd_xfer_codec_block_bytes(codec, &engine->layout);
    for (size_t j = 0; j < n; j++)
        pd_xfer_codec_unpack(codec, &engine->layout, (const uint8_t *)packed + j * pb,
                             (float *)(void *)((uint8_t *)dest + j * raw));
}

void pd_xfer__data_landed(pd_xfer_recv_t *recv, uint64_t bytes, pd_status_t status, bool in_flight)
{
    if (in_flight && recv->n_landing > 0)
        recv->n_landing--;
    if (recv->orphan) {
        if (recv->n_landing == 0) {
            recv->engine->n_orphan_recvs--;
            pd_xfer__recv_free(recv);
        }
        return;
    }
    if (status != PD_OK) {
        if (recv->status == PD_INPROGRESS) {
            pd_log_warn("xfer: recv %llu: data message failed: %s",
                        (unsigned long long)recv->xfer_id, pd_status_str(status));
            pd_xfer__recv_finish(recv, status);
        }
        return;
    }
    recv->bytes_landed += bytes;
    recv->engine->stats.bytes_received += bytes;
}

void pd_xfer__msg_deliver(pd_xfer_engine_t *engine, const void *data, size_t bytes, void *reply_ctx)
{
    if (bytes > pd_xfer__msg_limits.max_frame_bytes) {
        engine->stats.n_notify_refused++;
        return;
    }
    pd_xfer__msg_t *m = malloc(sizeof(*m) + bytes);
    if (m == NULL) {
        pd_log_error("xfer: out of memory queueing a %zu-byte message", bytes);
        return;
    }
    m->next = NULL;
    m->reply_ctx = reply_ctx;
    m->bytes = bytes;
    memcpy(m->data, data, bytes);
    if (engine->msg_tail != NULL)
        engine->msg_tail->next = m;
    else
        engine->msg_head = m;
    engine->msg_tail = m;
}

static void pd_xfer__ack_send(pd_xfer_engine_t *engine, void *reply_ctx, uint64_t xfer_id,
                              pd_status_t status)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 4);
    pd_mp_put_str(&w, "t");
    pd_mp_put_str(&w, "ack");
    pd_mp_put_str(&w, "xfer");
    pd_mp_put_u64(&w, xfer_id);
    pd_mp_put_str(&w, "src");
    pd_mp_put_u64(&w, engine->id);
    pd_mp_put_str(&w, "status");
    pd_mp_put_i64(&w, status);
    pd_status_t st =
        engine->ops->reply(engine, reply_ctx, pd_mp_writer_data(&w), pd_mp_writer_size(&w));
    if (st != PD_OK)
        pd_log_warn("xfer: ack of %llu not sent: %s", (unsigned long long)xfer_id,
                    pd_status_str(st));
    pd_mp_writer_cleanup(&w);
}

static void pd_xfer__recv_finish(pd_xfer_recv_t *recv, pd_status_t status)
{
    recv->status = status;
    recv->engine->n_completed++;
    if (status != PD_OK)
        recv->engine->stats.n_notify_refused++;
}

/* Check a notification's claims, verify its checksums, make the transfer final. */
static pd_status_t pd_xfer__notify_apply(pd_xfer_engine_t *engine, pd_xfer_recv_t *recv,
                                         const msgpack_object *root)
{
    uint64_t msg_bytes = 0;
    if (pd_mp_map_find(root, "msg_bytes") != NULL &&
        (pd_mp_get_u64(root, "msg_bytes", &msg_bytes) != PD_OK || recv->bytes_landed != msg_bytes))
        return PD_ERR_PROTO; /* more data than the sender says it sent */
    const void *segs_bin = NULL, *payload = NULL;
    size_t segs_bytes = 0, payload_bytes = 0;
    bool ck = false;
    if (pd_mp_get_bin(root, "segs", &segs_bin, &segs_bytes) != PD_OK ||
        pd_mp_get_bin(root, "payload", &payload, &payload_bytes) != PD_OK ||
        pd_mp_get_bool(root, "ck", &ck) != PD_OK || segs_bytes % 24 != 0 ||
        payload_bytes > PD_XFER_PAYLOAD_MAX)
        return PD_ERR_PROTO;
    if (engine->cfg.verify_checksums && !ck)
        return PD_ERR_CHECKSUM; /* we insist on checksums and got none */
    size_t n = segs_bytes / 24;
    pd_xfer_seg_t *segs = malloc((n ? n : 1) * sizeof(*segs));
    uint64_t *sums = malloc((n ? n : 1) * sizeof(*sums));
    void *copy = malloc(payload_bytes ? payload_bytes : 1);
    pd_status_t st = PD_OK;
    if (segs == NULL || sums == NULL || copy == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto out;
    }
    const unsigned char *p = segs_bin;
    for (size_t i = 0; i < n; i++) {
        uint64_t t[3];
        memcpy(t, p + 24 * i, sizeof(t));
        /* Refuse before looking at any byte: every claim must lie in what we reserved. */
        if (!pd_xfer__ranges_contain(recv->ranges, recv->n_ranges, t[0], t[1]) ||
            t[0] + t[1] > engine->bytes) {
            pd_log_warn("xfer: recv %llu: notified segment [%llu, +%llu) was not reserved",
                        (unsigned long long)recv->xfer_id, (unsigned long long)t[0],
                        (unsigned long long)t[1]);
            st = PD_ERR_OUT_OF_RANGE;
            goto out;
        }
        segs[i].local_offset = t[0];
        segs[i].remote_offset = t[0];
        segs[i].bytes = t[1];
        sums[i] = t[2];
    }
    if (engine->verify_hook != NULL)
        engine->verify_hook(engine->verify_hook_arg, engine->base, segs, n);
    if (engine->cfg.verify_checksums) {
        for (size_t i = 0; i < n; i++) {
            if (pd_hash_bytes(engine->base + segs[i].local_offset, segs[i].bytes, 0) != sums[i]) {
                pd_log_warn("xfer: recv %llu: checksum mismatch in segment %zu at %llu",
                            (unsigned long long)recv->xfer_id, i,
                            (unsigned long long)segs[i].local_offset);
                st = PD_ERR_CHECKSUM;
                goto out;
            }
        }
    }
    memcpy(copy, payload_bytes ? payload : "", payload_bytes);
    recv->segs = segs;
    recv->n_segs = n;
    recv->payload = copy;
    recv->payload_bytes = payload_bytes;
    segs = NULL;
    copy = NULL;
out:
    free(segs);
    free(sums);
    free(copy);
    return st;
}

/* Handle one received message. Returns true when the message was kept (a notification
 * parked on its expectation until its data lands), false when the caller frees it. */
static bool pd_xfer__msg_handle(pd_xfer_engine_t *engine, pd_xfer__msg_t *m)
{
    pd_mp_doc_t doc;
    bool kept = false;
    if (pd_mp_doc_parse(&doc, m->data, m->bytes, &pd_xfer__msg_limits) != PD_OK) {
        pd_log_warn("xfer: dropped a malformed %zu-byte message", m->bytes);
        engine->stats.n_notify_refused++;
        return false;
    }
    uint64_t xfer_id = 0, src = 0;
    if (pd_mp_get_u64(&doc.root, "xfer", &xfer_id) != PD_OK ||
        pd_mp_get_u64(&doc.root, "src", &src) != PD_OK) {
        engine->stats.n_notify_refused++;
        goto out;
    }
    const msgpack_object *type = pd_mp_map_find(&doc.root, "t");
    if (type != NULL && pd_mp_str_eq(type, "ack")) {
        int64_t status = 0;
        if (pd_mp_get_i64(&doc.root, "status", &status) == PD_OK && status <= 0 && status >= -1000)
            pd_xfer__sends_ack(engine, xfer_id, src, (pd_status_t)status);
        goto out;
    }
    if (type == NULL || !pd_mp_str_eq(type, "notify")) {
        engine->stats.n_notify_refused++;
        goto out;
    }
    pd_xfer_recv_t *recv = pd_xfer__recv_find(engine, xfer_id);
    if (recv == NULL || recv->status != PD_INPROGRESS) {
        /* A transfer its data already failed answers with that failure. */
        pd_status_t why = recv != NULL ? recv->status : PD_ERR_NOT_FOUND;
        if (recv == NULL)
            pd_log_warn("xfer: notification for transfer %llu that is not expected",
                        (unsigned long long)xfer_id);
        engine->stats.n_notify_refused++;
        pd_xfer__ack_send(engine, m->reply_ctx, xfer_id, why);
        goto out;
    }
    uint64_t msg_bytes = 0;
    if (pd_mp_get_u64(&doc.root, "msg_bytes", &msg_bytes) == PD_OK &&
        (recv->bytes_landed < msg_bytes || recv->n_landing > 0) && recv->parked != m) {
        /* Its data is still on the way: park it, re-handled when the bytes are in. */
        if (recv->parked != NULL) {
            engine->stats.n_notify_refused++;
            goto out; /* a second notification for one transfer */
        }
        recv->parked = m;
        recv->parked_need = msg_bytes;
        kept = true;
        goto out;
    }
    if (recv->parked == m)
        recv->parked = NULL; /* the caller frees it now */
    pd_status_t st = pd_xfer__notify_apply(engine, recv, &doc.root);
    pd_xfer__recv_finish(recv, st);
    pd_xfer__ack_send(engine, m->reply_ctx, xfer_id, st);
out:
    pd_mp_doc_cleanup(&doc);
    return kept;
}

int pd_xfer_engine_progress(pd_xfer_engine_t *engine)
{
    engine->n_completed = 0;
    engine->ops->progress(engine);
    while (engine->msg_head != NULL) {
        pd_xfer__msg_t *m = engine->msg_head;
        engine->msg_head = m->next;
        if (engine->msg_head == NULL)
            engine->msg_tail = NULL;
        if (!pd_xfer__msg_handle(engine, m))
            free(m);
    }
    uint64_t now = pd_time_now_ns();
    pd_xfer__sends_progress(engine, now);
    for (pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->orphan)
            continue;
        if (r->parked != NULL && r->status == PD_INPROGRESS && r->n_landing == 0 &&
            r->bytes_landed >= r->parked_need) {
            pd_xfer__msg_t *m = r->parked;
            pd_xfer__msg_handle(engine, m); /* clears r->parked */
            free(m);
        }
        if (r->status == PD_INPROGRESS && now >= r->deadline_ns) {
            pd_log_warn("xfer: recv %llu timed out (%llu bytes of data landed)",
                        (unsigned long long)r->xfer_id, (unsigned long long)r->bytes_landed);
            pd_xfer__recv_finish(r, PD_ERR_TIMEOUT);
        }
        if (r->status != PD_INPROGRESS && r->parked != NULL) {
            /* The transfer ended without its data: answer the parked notification. */
            pd_xfer__ack_send(engine, r->parked->reply_ctx, r->xfer_id, r->status);
            free(r->parked);
            r->parked = NULL;
        }
    }
    return engine->n_completed;
}
