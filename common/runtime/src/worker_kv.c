/* Glue between the block manager and the worker: KV events, load, transfer payloads. */
#include "pd/worker.h"

#include "pd/log.h"

#include <string.h>

static pd_proto_tier_t pd_worker_tier_wire(pd_kv_tier_t tier)
{
    switch (tier) {
    case PD_KV_TIER_G2:
        return PD_PROTO_TIER_G2;
    case PD_KV_TIER_G3:
        return PD_PROTO_TIER_G3;
    default:
        return PD_PROTO_TIER_G1;
    }
}

void pd_worker_kvbm_event(void *worker, const pd_kvbm_event_t *event)
{
    pd_worker_t *w = worker;
    pd_proto_event_kind_t kind = PD_PROTO_EVENT_STORED;
    if (event->kind == PD_KVBM_EVENT_REMOVED)
        kind = PD_PROTO_EVENT_REMOVED;
    else if (event->kind == PD_KVBM_EVENT_TIER_CHANGED)
        kind = PD_PROTO_EVENT_TIER;
    pd_worker_kv_event(w, kind, pd_worker_tier_wire(event->tier), event->hash);
}

pd_status_t pd_worker_kvbm_create(pd_worker_t *w, const pd_worker_args_t *args,
                                  const pd_kv_layout_t *layout, void *pool_base, pd_kvbm_t **bm_p)
{
    size_t block_bytes = pd_kv_block_bytes(layout);
    pd_kvbm_config_t bc;
    memset(&bc, 0, sizeof(bc));
    bc.layout = *layout;
    bc.pool_base = pool_base;
    bc.n_host_blocks = (uint32_t)(((size_t)args->host_mb << 20) / block_bytes);
    if (args->ssd_dir[0] != '\0') {
        pd_status_t st = pd_worker_mkdirs(args->ssd_dir);
        if (st != PD_OK)
            return st;
        bc.disk_dir = args->ssd_dir;
        bc.n_disk_blocks = (uint32_t)(((size_t)args->ssd_mb << 20) / block_bytes);
    }
    bc.model_id = args->model;
    bc.on_event = pd_worker_kvbm_event;
    bc.event_arg = w;
    pd_status_t st = pd_kvbm_create(&bc, bm_p);
    if (st != PD_OK)
        pd_log_error("%s: cannot create the block manager: %s", args->id, pd_status_str(st));
    return st;
}

uint32_t pd_worker_kvbm_free_blocks(const pd_kvbm_t *bm)
{
    pd_kvbm_stats_t s;
    pd_kvbm_stats(bm, &s);
    return s.n_blocks - s.n_reserved;
}

static void pd_worker_put_le(uint8_t *out, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t pd_worker_get_le(const uint8_t *in, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)in[i] << (8 * i);
    return v;
}

void pd_worker_kv_payload_pack(const pd_worker_kv_payload_t *p, uint8_t *out)
{
    pd_worker_put_le(out, p->req_id, 8);
    pd_worker_put_le(out + 8, (uint32_t)p->first_token, 4);
    pd_worker_put_le(out + 12, p->n_computed_tokens, 4);
}

pd_status_t pd_worker_kv_payload_unpack(const void *buf, size_t len, pd_worker_kv_payload_t *p_p)
{
    if (buf == NULL || len != PD_WORKER_KV_PAYLOAD_BYTES)
        return PD_ERR_PROTO;
    const uint8_t *in = buf;
    pd_worker_kv_payload_t p;
    p.req_id = pd_worker_get_le(in, 8);
    p.first_token = (int32_t)(uint32_t)pd_worker_get_le(in + 8, 4);
    p.n_computed_tokens = (uint32_t)pd_worker_get_le(in + 12, 4);
    *p_p = p;
    return PD_OK;
}
