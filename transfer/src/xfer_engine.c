/* The engine: configuration, the registered region, descriptors, peers, progress. */
#include "xfer_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Descriptors are small; anything bigger than this is refused before parsing. */
static const pd_mp_limits_t pd_xfer__desc_limits = {
    .max_frame_bytes = 64 * 1024,
    .max_array_len = 64,
    .max_map_len = 32,
    .max_str_bytes = 64,
    .max_bin_bytes = 16 * 1024,
    .max_depth = 4,
    .max_objects = 256,
};

void pd_xfer_config_default(pd_xfer_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = PD_XFER_BACKEND_UCX;
    cfg->timeout_ms = 5000;
    cfg->verify_checksums = true;
    cfg->coalesce = true;
    cfg->ucx_peer_err_mode = false;
}

pd_status_t pd_xfer_backend_parse(const char *name, pd_xfer_backend_t *backend_p)
{
    if (name == NULL)
        return PD_ERR_INVALID_PARAM;
    if (strcmp(name, "ucx") == 0)
        *backend_p = PD_XFER_BACKEND_UCX;
    else if (strcmp(name, "loopback") == 0)
        *backend_p = PD_XFER_BACKEND_LOOPBACK;
    else if (strcmp(name, "nccl") == 0)
        *backend_p = PD_XFER_BACKEND_NCCL;
    else
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

pd_status_t pd_xfer_data_path_parse(const char *name, pd_xfer_data_path_t *path_p)
{
    if (name == NULL)
        return PD_ERR_INVALID_PARAM;
    if (strcmp(name, "auto") == 0)
        *path_p = PD_XFER_DATA_PATH_AUTO;
    else if (strcmp(name, "put") == 0)
        *path_p = PD_XFER_DATA_PATH_PUT;
    else if (strcmp(name, "am") == 0)
        *path_p = PD_XFER_DATA_PATH_AM;
    else
        return PD_ERR_INVALID_PARAM;
    return PD_OK;
}

const char *pd_xfer_data_path_name(pd_xfer_data_path_t path)
{
    switch (path) {
    case PD_XFER_DATA_PATH_AUTO:
        return "auto";
    case PD_XFER_DATA_PATH_PUT:
        return "put";
    case PD_XFER_DATA_PATH_AM:
        return "am";
    }
    return "?";
}

static const pd_xfer_backend_ops_t *pd_xfer__backend_ops(pd_xfer_backend_t backend)
{
    switch (backend) {
    case PD_XFER_BACKEND_UCX:
        return &pd_xfer_ucx_ops;
    case PD_XFER_BACKEND_LOOPBACK:
        return &pd_xfer_loopback_ops;
    case PD_XFER_BACKEND_NCCL:
        /* The nccl backend (GPU to GPU) plugs in here when CUDA and NCCL are built;
         * this build has neither. */
        return NULL;
    }
    return NULL;
}

pd_status_t pd_xfer_engine_create(const pd_xfer_config_t *cfg, pd_xfer_engine_t **engine_p)
{
    const pd_xfer_backend_ops_t *ops = pd_xfer__backend_ops(cfg->backend);
    if (ops == NULL) {
        pd_log_error("xfer: backend %d is not built in", (int)cfg->backend);
        return PD_ERR_UNSUPPORTED;
    }
    pd_xfer_engine_t *engine = calloc(1, sizeof(*engine));
    if (engine == NULL)
        return PD_ERR_NO_MEMORY;
    engine->cfg = *cfg;
    engine->ops = ops;
    if (engine->cfg.timeout_ms == 0)
        engine->cfg.timeout_ms = 5000;
    while (engine->id == 0) {
        if (getrandom(&engine->id, sizeof(engine->id), 0) != (ssize_t)sizeof(engine->id))
            engine->id = pd_time_now_ns() ^ ((uint64_t)(uintptr_t)engine << 16);
    }
    /* The backend reads the borrowed strings during init only. */
    pd_status_t st = ops->engine_init(engine);
    engine->cfg.transports = NULL;
    engine->cfg.net_devices = NULL;
    if (st != PD_OK)
        goto err_free;
    *engine_p = engine;
    return PD_OK;

err_free:
    free(engine);
    return st;
}

void pd_xfer_engine_destroy(pd_xfer_engine_t **engine_p)
{
    if (engine_p == NULL || *engine_p == NULL)
        return;
    pd_xfer_engine_t *engine = *engine_p;
    while (engine->peers != NULL) {
        pd_xfer_peer_t *peer = engine->peers;
        pd_xfer_peer_disconnect(&peer);
    }
    /* Live expectations go; those that data still lands in stay, orphaned, until the
     * backend is gone. */
    for (pd_xfer_recv_t *r = engine->recvs, *next; r != NULL; r = next) {
        next = r->next;
        if (!r->orphan) {
            pd_xfer_recv_t *recv = r;
            pd_xfer_recv_destroy(&recv);
        }
    }
    /* The backend stops its worker before it deregisters the region (it does both). */
    engine->ops->engine_cleanup(engine);
    engine->registered = false;
    /* The backend's requests are gone: nothing lands in the orphans any more. */
    while (engine->recvs != NULL) {
        pd_xfer_recv_t *recv = engine->recvs;
        recv->n_landing = 0;
        recv->orphan = false;
        pd_xfer_recv_destroy(&recv);
    }
    /* Backend requests are gone with the backend: what is left of sends can go. */
    while (engine->sends != NULL) {
        pd_xfer_send_t *send = engine->sends;
        send->n_refs = 0;
        send->orphan = false;
        pd_xfer_send_destroy(&send);
    }
    while (engine->msg_head != NULL) {
        pd_xfer__msg_t *m = engine->msg_head;
        engine->msg_head = m->next;
        free(m);
    }
    free(engine->scratch);
    free(engine);
    *engine_p = NULL;
}

pd_status_t pd_xfer_engine_fd(pd_xfer_engine_t *engine, int *fd_p)
{
    return engine->ops->get_fd(engine, fd_p);
}

pd_status_t pd_xfer_engine_arm(pd_xfer_engine_t *engine)
{
    if (engine->msg_head != NULL)
        return PD_ERR_BUSY;
    for (pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->state == PD_XFER_SEND_FLUSHING && s->flushed)
            return PD_ERR_BUSY;
    }
    for (pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->parked != NULL && r->n_landing == 0 && r->bytes_landed >= r->parked_need)
            return PD_ERR_BUSY;
    }
    return engine->ops->arm(engine);
}

long pd_xfer_engine_next_deadline_ms(const pd_xfer_engine_t *engine)
{
    uint64_t nearest = UINT64_MAX;
    for (const pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->state != PD_XFER_SEND_DONE && s->deadline_ns < nearest)
            nearest = s->deadline_ns;
    }
    for (const pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->status == PD_INPROGRESS && r->deadline_ns < nearest)
            nearest = r->deadline_ns;
    }
    if (nearest == UINT64_MAX)
        return -1;
    uint64_t now = pd_time_now_ns();
    if (nearest <= now)
        return 0;
    return (long)((nearest - now + 999999u) / 1000000u);
}

void pd_xfer_engine_stats(const pd_xfer_engine_t *engine, pd_xfer_stats_t *stats_p)
{
    *stats_p = engine->stats;
}

void pd_xfer_engine_set_verify_hook(pd_xfer_engine_t *engine, pd_xfer_verify_hook_fn fn, void *arg)
{
    engine->verify_hook = fn;
    engine->verify_hook_arg = arg;
}

pd_status_t pd_xfer_mem_register(pd_xfer_engine_t *engine, void *base, size_t bytes,
                                 const pd_kv_layout_t *layout)
{
    if (engine->registered)
        return PD_ERR_EXISTS;
    if (base == NULL || bytes == 0)
        return PD_ERR_INVALID_PARAM;
    if (layout != NULL && pd_kv_pool_bytes(layout) > bytes)
        return PD_ERR_INVALID_PARAM;
    engine->base = base;
    engine->bytes = bytes;
    engine->allocated = false;
    engine->has_layout = layout != NULL;
    if (layout != NULL)
        engine->layout = *layout;
    pd_status_t st = engine->ops->mem_register(engine);
    if (st != PD_OK) {
        engine->base = NULL;
        engine->bytes = 0;
        return st;
    }
    engine->registered = true;
    return PD_OK;
}

pd_status_t pd_xfer_mem_alloc(pd_xfer_engine_t *engine, size_t bytes, const pd_kv_layout_t *layout,
                              void **base_p)
{
    if (engine->registered)
        return PD_ERR_EXISTS;
    if (bytes == 0 || (layout != NULL && pd_kv_pool_bytes(layout) > bytes))
        return PD_ERR_INVALID_PARAM;
    engine->base = NULL;
    engine->bytes = bytes;
    engine->allocated = true;
    engine->has_layout = layout != NULL;
    if (layout != NULL)
        engine->layout = *layout;
    pd_status_t st = engine->ops->mem_register(engine);
    if (st != PD_OK) {
        engine->allocated = false;
        engine->bytes = 0;
        engine->base = NULL;
        return st;
    }
    engine->registered = true;
    *base_p = engine->base;
    return PD_OK;
}

pd_status_t pd_xfer_mem_deregister(pd_xfer_engine_t *engine)
{
    if (!engine->registered)
        return PD_ERR_NOT_FOUND;
    for (pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->state != PD_XFER_SEND_DONE || s->n_refs > 0)
            return PD_ERR_BUSY;
    }
    for (pd_xfer_recv_t *r = engine->recvs; r != NULL; r = r->next) {
        if (r->status == PD_INPROGRESS || r->n_landing > 0)
            return PD_ERR_BUSY;
    }
    engine->ops->mem_deregister(engine);
    engine->registered = false;
    engine->allocated = false;
    engine->base = NULL;
    engine->bytes = 0;
    return PD_OK;
}

void pd_xfer__layout_put_fields(pd_mp_writer_t *w, const pd_kv_layout_t *l)
{
    pd_mp_put_str(w, "n_layers");
    pd_mp_put_u64(w, l->n_layers);
    pd_mp_put_str(w, "n_kv_heads");
    pd_mp_put_u64(w, l->n_kv_heads);
    pd_mp_put_str(w, "head_dim");
    pd_mp_put_u64(w, l->head_dim);
    pd_mp_put_str(w, "block_tokens");
    pd_mp_put_u64(w, l->block_tokens);
    pd_mp_put_str(w, "n_blocks");
    pd_mp_put_u64(w, l->n_blocks);
}

static void pd_xfer__layout_pack(pd_mp_writer_t *w, const pd_kv_layout_t *l)
{
    pd_mp_put_map(w, 5);
    pd_xfer__layout_put_fields(w, l);
}

pd_status_t pd_xfer_desc_export(pd_xfer_engine_t *engine, pd_mp_writer_t *w)
{
    if (!engine->registered)
        return PD_ERR_NOT_FOUND;
    pd_mp_put_map(w, 6 + engine->ops->n_desc_pairs);
    pd_mp_put_str(w, "v");
    pd_mp_put_u64(w, 1);
    pd_mp_put_str(w, "backend");
    pd_mp_put_str(w, engine->ops->name);
    pd_mp_put_str(w, "engine");
    pd_mp_put_u64(w, engine->id);
    pd_mp_put_str(w, "base");
    pd_mp_put_u64(w, (uint64_t)(uintptr_t)engine->base);
    pd_mp_put_str(w, "bytes");
    pd_mp_put_u64(w, engine->bytes);
    pd_mp_put_str(w, "layout");
    if (engine->has_layout)
        pd_xfer__layout_pack(w, &engine->layout);
    else
        pd_mp_put_nil(w);
    return engine->ops->desc_pack(engine, w);
}

static pd_status_t pd_xfer__layout_unpack(const msgpack_object *obj, pd_kv_layout_t *l)
{
    uint64_t v[5];
    static const char *const keys[5] = {"n_layers", "n_kv_heads", "head_dim", "block_tokens",
                                        "n_blocks"};
    for (int i = 0; i < 5; i++) {
        if (pd_mp_get_u64(obj, keys[i], &v[i]) != PD_OK || v[i] > UINT32_MAX)
            return PD_ERR_PROTO;
    }
    l->n_layers = (uint32_t)v[0];
    l->n_kv_heads = (uint32_t)v[1];
    l->head_dim = (uint32_t)v[2];
    l->block_tokens = (uint32_t)v[3];
    l->n_blocks = (uint32_t)v[4];
    return PD_OK;
}

pd_status_t pd_xfer_peer_connect(pd_xfer_engine_t *engine, const void *desc, size_t desc_bytes,
                                 pd_xfer_peer_t **peer_p)
{
    pd_mp_doc_t doc;
    pd_status_t st = pd_mp_doc_parse(&doc, desc, desc_bytes, &pd_xfer__desc_limits);
    if (st != PD_OK) {
        pd_log_warn("xfer: bad descriptor: %s", pd_status_str(st));
        return st;
    }
    pd_xfer_peer_t *peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto err_doc;
    }
    uint64_t version = 0;
    char backend[16];
    if (pd_mp_get_u64(&doc.root, "v", &version) != PD_OK || version != 1 ||
        pd_mp_get_strcpy(&doc.root, "backend", backend, sizeof(backend)) != PD_OK ||
        pd_mp_get_u64(&doc.root, "engine", &peer->remote_id) != PD_OK ||
        pd_mp_get_u64(&doc.root, "base", &peer->remote_base) != PD_OK ||
        pd_mp_get_u64(&doc.root, "bytes", &peer->remote_bytes) != PD_OK) {
        st = PD_ERR_PROTO;
        goto err_peer;
    }
    if (strcmp(backend, engine->ops->name) != 0) {
        pd_log_warn("xfer: descriptor of backend %s, engine is %s", backend, engine->ops->name);
        st = PD_ERR_UNSUPPORTED;
        goto err_peer;
    }
    if (peer->remote_bytes == 0 || peer->remote_base + peer->remote_bytes < peer->remote_base) {
        st = PD_ERR_PROTO;
        goto err_peer;
    }
    const msgpack_object *layout = pd_mp_map_find(&doc.root, "layout");
    if (layout != NULL && layout->type == MSGPACK_OBJECT_MAP) {
        st = pd_xfer__layout_unpack(layout, &peer->layout);
        if (st != PD_OK)
            goto err_peer;
        if (pd_kv_pool_bytes(&peer->layout) > peer->remote_bytes) {
            st = PD_ERR_PROTO;
            goto err_peer;
        }
        peer->has_layout = true;
    }
    peer->engine = engine;
    peer->fail_status = PD_OK;
    st = engine->ops->peer_connect(peer, &doc.root);
    if (st != PD_OK)
        goto err_peer;
    peer->data_path = engine->ops->data_path(peer);
    peer->next = engine->peers;
    if (engine->peers != NULL)
        engine->peers->prev = peer;
    engine->peers = peer;
    pd_mp_doc_cleanup(&doc);
    *peer_p = peer;
    return PD_OK;

err_peer:
    free(peer);
err_doc:
    pd_mp_doc_cleanup(&doc);
    return st;
}

/* Fail the transfers to peer that are not final yet. */
static void pd_xfer__peer_fail_sends(pd_xfer_peer_t *peer, pd_status_t status)
{
    for (pd_xfer_send_t *s = peer->engine->sends; s != NULL; s = s->next) {
        if (s->peer == peer && s->state != PD_XFER_SEND_DONE) {
            s->state = PD_XFER_SEND_DONE;
            s->status = status;
            peer->engine->n_completed++;
        }
    }
}

void pd_xfer_peer_fail(pd_xfer_peer_t *peer, pd_status_t status)
{
    if (status >= PD_OK)
        status = PD_ERR_PEER;
    pd_log_info("xfer: peer %016llx failed: %s", (unsigned long long)peer->remote_id,
                pd_status_str(status));
    peer->fail_status = status;
    pd_xfer__peer_fail_sends(peer, status);
}

void pd_xfer_peer_disconnect(pd_xfer_peer_t **peer_p)
{
    if (peer_p == NULL || *peer_p == NULL)
        return;
    pd_xfer_peer_t *peer = *peer_p;
    pd_xfer_engine_t *engine = peer->engine;
    pd_xfer__peer_fail_sends(peer, PD_ERR_CANCELED);
    engine->ops->peer_close(peer);
    for (pd_xfer_send_t *s = engine->sends; s != NULL; s = s->next) {
        if (s->peer == peer)
            s->peer = NULL;
    }
    if (peer->prev != NULL)
        peer->prev->next = peer->next;
    else
        engine->peers = peer->next;
    if (peer->next != NULL)
        peer->next->prev = peer->prev;
    free(peer);
    *peer_p = NULL;
}

pd_status_t pd_xfer_peer_region(const pd_xfer_peer_t *peer, uint64_t *bytes_p,
                                pd_kv_layout_t *layout_p)
{
    if (layout_p != NULL) {
        if (!peer->has_layout)
            return PD_ERR_NOT_FOUND;
        *layout_p = peer->layout;
    }
    *bytes_p = peer->remote_bytes;
    return PD_OK;
}

pd_status_t pd_xfer_get(pd_xfer_peer_t *peer, const pd_xfer_seg_t *segs, size_t n_segs,
                        uint32_t timeout_ms)
{
    if (peer == NULL || (segs == NULL && n_segs > 0))
        return PD_ERR_INVALID_PARAM;
    if (peer->fail_status != PD_OK)
        return peer->fail_status;
    pd_xfer_engine_t *engine = peer->engine;
    if (!engine->registered)
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n_segs; i++) {
        const pd_xfer_seg_t *g = &segs[i];
        if (g->bytes > engine->bytes || g->local_offset > engine->bytes - g->bytes ||
            g->bytes > peer->remote_bytes || g->remote_offset > peer->remote_bytes - g->bytes)
            return PD_ERR_OUT_OF_RANGE;
    }
    uint64_t ms = timeout_ms > 0 ? timeout_ms : engine->cfg.timeout_ms;
    return engine->ops->get(peer, segs, n_segs, pd_time_now_ns() + ms * 1000000u);
}

pd_xfer_data_path_t pd_xfer_peer_data_path(const pd_xfer_peer_t *peer)
{
    return peer->data_path;
}

pd_status_t pd_xfer_peer_transports(pd_xfer_peer_t *peer, char *buf, size_t buf_bytes)
{
    if (buf_bytes == 0)
        return PD_ERR_INVALID_PARAM;
    return peer->engine->ops->transports(peer, buf, buf_bytes);
}

size_t pd_xfer__ranges_merge(pd_xfer_range_t *ranges, size_t n)
{
    /* Insertion sort: reservations are short lists. */
    for (size_t i = 1; i < n; i++) {
        pd_xfer_range_t r = ranges[i];
        size_t j = i;
        while (j > 0 && ranges[j - 1].offset > r.offset) {
            ranges[j] = ranges[j - 1];
            j--;
        }
        ranges[j] = r;
    }
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].bytes == 0)
            continue;
        if (out > 0 && ranges[out - 1].offset + ranges[out - 1].bytes >= ranges[i].offset) {
            uint64_t end = ranges[i].offset + ranges[i].bytes;
            uint64_t prev_end = ranges[out - 1].offset + ranges[out - 1].bytes;
            if (end > prev_end)
                ranges[out - 1].bytes = end - ranges[out - 1].offset;
            continue;
        }
        ranges[out++] = ranges[i];
    }
    return out;
}

bool pd_xfer__ranges_contain(const pd_xfer_range_t *ranges, size_t n, uint64_t offset,
                             uint64_t bytes)
{
    if (bytes == 0 || offset + bytes < offset)
        return false;
    /* Binary search for the last range starting at or before offset. */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ranges[mid].offset <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    const pd_xfer_range_t *r = &ranges[lo - 1];
    return offset + bytes <= r->offset + r->bytes;
}
