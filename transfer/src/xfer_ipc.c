/* The host-side half of KV transfers by CUDA IPC (pd/xfer_ipc.h): descriptor, copy plan,
 * notify-after-data ordering. Nothing here touches a GPU. */
#include "pd/xfer_ipc.h"
#include "xfer_int.h"

#include "pd/log.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

uint64_t pd_xfer_ipc_host_id(void)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f == NULL)
        return 0;
    char buf[64];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    uint64_t h = XXH3_64bits(buf, n);
    return h != 0 ? h : 1;
}

void pd_xfer_ipc_desc_write(const pd_xfer_ipc_desc_t *d, pd_mp_writer_t *w)
{
    pd_mp_put_map(w, 11);
    pd_mp_put_str(w, "handle");
    pd_mp_put_bin(w, d->handle, sizeof(d->handle));
    pd_mp_put_str(w, "pool_offset");
    pd_mp_put_u64(w, d->pool_offset);
    pd_mp_put_str(w, "pool_bytes");
    pd_mp_put_u64(w, d->pool_bytes);
    pd_mp_put_str(w, "host_id");
    pd_mp_put_u64(w, d->host_id);
    pd_mp_put_str(w, "pid");
    pd_mp_put_u64(w, d->pid);
    pd_mp_put_str(w, "device");
    pd_mp_put_i64(w, d->device);
    pd_xfer__layout_put_fields(w, &d->layout);
}

static pd_status_t pd_xfer_ipc_get_u32(const msgpack_object *obj, const char *key, uint32_t max,
                                       uint32_t *v_p)
{
    uint64_t v;
    if (pd_mp_get_u64(obj, key, &v) != PD_OK || v > max)
        return PD_ERR_PROTO;
    *v_p = (uint32_t)v;
    return PD_OK;
}

pd_status_t pd_xfer_ipc_desc_read(const msgpack_object *obj, pd_xfer_ipc_desc_t *d_p)
{
    pd_xfer_ipc_desc_t d;
    memset(&d, 0, sizeof(d));
    const void *handle = NULL;
    size_t handle_bytes = 0;
    int64_t device = 0;
    if (obj == NULL || d_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (pd_mp_get_bin(obj, "handle", &handle, &handle_bytes) != PD_OK ||
        handle_bytes != sizeof(d.handle) ||
        pd_mp_get_u64(obj, "pool_offset", &d.pool_offset) != PD_OK ||
        pd_mp_get_u64(obj, "pool_bytes", &d.pool_bytes) != PD_OK ||
        pd_mp_get_u64(obj, "host_id", &d.host_id) != PD_OK ||
        pd_xfer_ipc_get_u32(obj, "pid", UINT32_MAX, &d.pid) != PD_OK ||
        pd_mp_get_i64(obj, "device", &device) != PD_OK || device < 0 || device > 1024 ||
        pd_xfer_ipc_get_u32(obj, "n_layers", 4096, &d.layout.n_layers) != PD_OK ||
        pd_xfer_ipc_get_u32(obj, "n_kv_heads", 4096, &d.layout.n_kv_heads) != PD_OK ||
        pd_xfer_ipc_get_u32(obj, "head_dim", 4096, &d.layout.head_dim) != PD_OK ||
        pd_xfer_ipc_get_u32(obj, "block_tokens", 4096, &d.layout.block_tokens) != PD_OK ||
        pd_xfer_ipc_get_u32(obj, "n_blocks", UINT32_MAX, &d.layout.n_blocks) != PD_OK)
        return PD_ERR_PROTO;
    memcpy(d.handle, handle, sizeof(d.handle));
    d.device = (int32_t)device;
    if (d.layout.n_layers == 0 || d.layout.n_kv_heads == 0 || d.layout.head_dim == 0 ||
        d.layout.block_tokens == 0 || d.layout.n_blocks == 0)
        return PD_ERR_PROTO;
    /* Every factor is at most 2^32, so the pool size fits in 64 bits only when checked
     * step by step. */
    const uint64_t block_layer = pd_kv_block_layer_bytes(&d.layout); /* < 2^39 */
    if ((uint64_t)d.layout.n_blocks > UINT64_MAX / block_layer)
        return PD_ERR_PROTO;
    const uint64_t layer = block_layer * d.layout.n_blocks;
    if ((uint64_t)d.layout.n_layers > UINT64_MAX / layer)
        return PD_ERR_PROTO;
    if (layer * d.layout.n_layers != d.pool_bytes || d.pool_offset > UINT64_MAX - d.pool_bytes)
        return PD_ERR_PROTO;
    *d_p = d;
    return PD_OK;
}

bool pd_xfer_ipc_reachable(const pd_xfer_ipc_desc_t *d, uint64_t host_id, uint32_t pid, char *why,
                           size_t why_bytes)
{
    const char *reason = NULL;
    if (d->host_id == 0 || host_id == 0)
        reason = "the host identity is unknown";
    else if (d->host_id != host_id)
        reason = "the peer runs on another host (or boot)";
    else if (d->pid == pid)
        reason = "the peer is this process (CUDA cannot open its own IPC handle)";
    if (reason != NULL && why != NULL && why_bytes > 0)
        snprintf(why, why_bytes, "%s", reason);
    return reason == NULL;
}

static bool pd_xfer_ipc_allowed(const pd_xfer_range_t *allowed, size_t n_allowed, uint64_t off,
                                uint64_t bytes)
{
    if (allowed == NULL || n_allowed == 0)
        return true;
    for (size_t i = 0; i < n_allowed; i++)
        if (off >= allowed[i].offset && bytes <= allowed[i].bytes &&
            off - allowed[i].offset <= allowed[i].bytes - bytes)
            return true;
    return false;
}

pd_status_t pd_xfer_ipc_plan_layer(const pd_kv_layout_t *src, const pd_kv_layout_t *dst,
                                   uint64_t dst_pool_bytes, uint32_t layer,
                                   const uint32_t *src_blocks, const uint32_t *dst_blocks,
                                   uint32_t n, const pd_xfer_range_t *allowed, size_t n_allowed,
                                   pd_xfer_seg_t *segs, size_t *n_segs_p)
{
    if (src == NULL || dst == NULL ||
        (n > 0 && (src_blocks == NULL || dst_blocks == NULL || segs == NULL)) || n_segs_p == NULL)
        return PD_ERR_INVALID_PARAM;
    /* Both pools must hold blocks of one shape, or a block's bytes mean different things. */
    if (src->n_layers != dst->n_layers || src->n_kv_heads != dst->n_kv_heads ||
        src->head_dim != dst->head_dim || src->block_tokens != dst->block_tokens)
        return PD_ERR_INVALID_PARAM;
    if (layer >= src->n_layers || pd_kv_pool_bytes(dst) > dst_pool_bytes)
        return PD_ERR_OUT_OF_RANGE;
    const uint64_t bl = pd_kv_block_layer_bytes(src);
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (src_blocks[i] >= src->n_blocks || dst_blocks[i] >= dst->n_blocks)
            return PD_ERR_OUT_OF_RANGE;
        const uint64_t lo = pd_kv_offset(src, layer, src_blocks[i]);
        const uint64_t ro = pd_kv_offset(dst, layer, dst_blocks[i]);
        if (!pd_xfer_ipc_allowed(allowed, n_allowed, ro, bl))
            return PD_ERR_OUT_OF_RANGE;
        if (k > 0 && segs[k - 1].local_offset + segs[k - 1].bytes == lo &&
            segs[k - 1].remote_offset + segs[k - 1].bytes == ro) {
            segs[k - 1].bytes += bl;
            continue;
        }
        segs[k].local_offset = lo;
        segs[k].remote_offset = ro;
        segs[k].bytes = bl;
        k++;
    }
    *n_segs_p = k;
    return PD_OK;
}

pd_status_t pd_xfer_ipc_send_init(pd_xfer_ipc_send_t *s, const pd_xfer_ipc_dev_ops_t *ops,
                                  void *src_base, void *dst_base, uint32_t n_layers)
{
    if (s == NULL || ops == NULL || src_base == NULL || dst_base == NULL || n_layers == 0 ||
        n_layers > PD_XFER_IPC_MAX_LAYERS)
        return PD_ERR_INVALID_PARAM;
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->src_base = src_base;
    s->dst_base = dst_base;
    s->n_layers = n_layers;
    s->status = PD_INPROGRESS;
    return PD_OK;
}

static pd_status_t pd_xfer_ipc_send_fail(pd_xfer_ipc_send_t *s, pd_status_t st)
{
    if (s->status == PD_INPROGRESS)
        s->status = st;
    return s->status;
}

pd_status_t pd_xfer_ipc_send_post(pd_xfer_ipc_send_t *s, const pd_xfer_seg_t *segs, size_t n_segs)
{
    if (s->status != PD_INPROGRESS)
        return s->status;
    if (s->finished || s->n_posted >= s->n_layers)
        return pd_xfer_ipc_send_fail(s, PD_ERR_INVALID_PARAM);
    for (size_t i = 0; i < n_segs; i++) {
        pd_status_t st = s->ops->copy_async(s->ops->ctx, s->dst_base + segs[i].remote_offset,
                                            s->src_base + segs[i].local_offset, segs[i].bytes);
        if (st != PD_OK)
            return pd_xfer_ipc_send_fail(s, st);
        s->bytes_posted += segs[i].bytes;
    }
    /* The event closes the layer: it completes only after every copy queued before it. */
    pd_status_t st = s->ops->event_record(s->ops->ctx, &s->events[s->n_posted]);
    if (st != PD_OK)
        return pd_xfer_ipc_send_fail(s, st);
    s->n_posted++;
    return PD_OK;
}

pd_status_t pd_xfer_ipc_send_finish(pd_xfer_ipc_send_t *s)
{
    if (s->status != PD_INPROGRESS)
        return s->status;
    if (s->n_posted != s->n_layers)
        return pd_xfer_ipc_send_fail(s, PD_ERR_INVALID_PARAM);
    s->finished = true;
    return PD_OK;
}

pd_status_t pd_xfer_ipc_send_progress(pd_xfer_ipc_send_t *s)
{
    if (s->status != PD_INPROGRESS)
        return s->status;
    /* One stream orders the copies, so events complete in posting order; querying them
     * in that order also finds a failed copy of any layer. */
    while (s->n_done < s->n_posted) {
        pd_status_t st = s->ops->event_query(s->ops->ctx, s->events[s->n_done]);
        if (st == PD_INPROGRESS)
            return PD_INPROGRESS;
        if (st != PD_OK)
            return pd_xfer_ipc_send_fail(s, st);
        s->n_done++;
    }
    if (!s->finished)
        return PD_INPROGRESS;
    s->status = PD_OK;
    return PD_OK;
}
