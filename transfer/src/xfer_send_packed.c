/* The sending side of compression on the wire: block-layer slices packed into staging
 * memory the send keeps, runs of them consecutive at the peer sent as one data message. */
#include "xfer_int.h"

#include "pd/hash.h"

#include <stdlib.h>
#include <string.h>

bool pd_xfer__send_packs(const pd_xfer_send_t *send)
{
    const pd_xfer_engine_t *engine = send->engine;
    const pd_xfer_peer_t *peer = send->peer;
    if (engine->cfg.codec == PD_XFER_CODEC_NONE || peer->data_path != PD_XFER_DATA_PATH_AM ||
        !engine->has_layout || !peer->has_layout)
        return false;
    const pd_kv_layout_t *a = &engine->layout, *b = &peer->layout;
    return a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim &&
           a->block_tokens == b->block_tokens &&
           pd_xfer_codec_block_bytes(engine->cfg.codec, b) > 0;
}

/* A buffer for one restored slice (checksums cover what the receiver will hold). */
static float *pd_xfer__scratch(pd_xfer_engine_t *engine, size_t bytes)
{
    if (engine->scratch_bytes < bytes) {
        float *s = realloc(engine->scratch, bytes);
        if (s == NULL)
            return NULL;
        engine->scratch = s;
        engine->scratch_bytes = bytes;
    }
    return engine->scratch;
}

/* One data message: n consecutive packed slices at stage, restoring to the peer's
 * [remote, remote + n * raw). */
static pd_status_t pd_xfer__put_packed(pd_xfer_send_t *send, const uint8_t *stage, uint64_t remote,
                                       size_t n, size_t raw, size_t packed)
{
    pd_xfer_engine_t *engine = send->engine;
    pd_xfer__data_hdr_t *hdr = pd_xfer__hdr_next(send, remote);
    if (hdr == NULL)
        return PD_ERR_NO_MEMORY;
    hdr->raw_bytes = (uint64_t)n * raw;
    hdr->codec = (uint32_t)engine->cfg.codec;
    send->data_bytes += hdr->raw_bytes;
    engine->stats.n_ops_issued++;
    engine->stats.bytes_wire += (uint64_t)n * packed;
    return engine->ops->put(send->peer, send, stage, remote, n * packed, hdr);
}

pd_status_t pd_xfer__send_post_packed(pd_xfer_send_t *send, const pd_xfer_seg_t *segs,
                                      size_t n_segs)
{
    pd_xfer_engine_t *engine = send->engine;
    const pd_xfer_codec_t codec = engine->cfg.codec;
    const pd_kv_layout_t *l = &send->peer->layout;
    const size_t raw = pd_kv_block_layer_bytes(l);
    const size_t packed = pd_xfer_codec_block_bytes(codec, l);
    const bool checksum = engine->cfg.verify_checksums;
    /* A segment packs when it is one whole slice at a block boundary of the peer's pool. */
    size_t n_packs = 0;
    for (size_t i = 0; i < n_segs; i++)
        n_packs += segs[i].bytes == raw && segs[i].remote_offset % raw == 0 &&
                   segs[i].local_offset % sizeof(float) == 0;
    pd_xfer__stage_t *stage = NULL;
    if (n_packs > 0) {
        stage = malloc(sizeof(*stage) + n_packs * packed);
        if (stage == NULL)
            return PD_ERR_NO_MEMORY;
        stage->next = send->stages;
        send->stages = stage;
    }
    float *scratch = checksum ? pd_xfer__scratch(engine, raw) : NULL;
    if (checksum && scratch == NULL)
        return PD_ERR_NO_MEMORY;
    size_t used = 0, run_n = 0;
    uint64_t run_remote = 0;
    const uint8_t *run_at = NULL;
    pd_status_t st = PD_OK;
    for (size_t i = 0; i < n_segs && st == PD_OK; i++) {
        const pd_xfer_seg_t *g = &segs[i];
        uint64_t *rec = &send->recs[3 * send->n_recs++];
        rec[0] = g->remote_offset;
        rec[1] = g->bytes;
        rec[2] = 0;
        const bool packs =
            g->bytes == raw && g->remote_offset % raw == 0 && g->local_offset % sizeof(float) == 0;
        const bool joins = packs && run_n > 0 && engine->cfg.coalesce &&
                           run_remote + run_n * raw == g->remote_offset;
        if (run_n > 0 && !joins) {
            st = pd_xfer__put_packed(send, run_at, run_remote, run_n, raw, packed);
            run_n = 0;
            if (st != PD_OK)
                break;
        }
        if (!packs) {
            if (checksum)
                rec[2] = pd_hash_bytes(engine->base + g->local_offset, g->bytes, 0);
            st = pd_xfer__put(send, g->local_offset, g->remote_offset, g->bytes);
            continue;
        }
        uint8_t *dst = stage->data + used;
        used += packed;
        pd_xfer_codec_pack(codec, l, (const float *)(const void *)(engine->base + g->local_offset),
                           dst);
        if (checksum) {
            pd_xfer_codec_unpack(codec, l, dst, scratch);
            rec[2] = pd_hash_bytes(scratch, raw, 0);
        }
        if (run_n == 0) {
            run_remote = g->remote_offset;
            run_at = dst;
        }
        run_n++;
    }
    if (st == PD_OK && run_n > 0)
        st = pd_xfer__put_packed(send, run_at, run_remote, run_n, raw, packed);
    return st;
}
