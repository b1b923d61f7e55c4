/* The NCCL backend's host-side half (pd/xfer_nccl.h): descriptor, pair plan, frames. */
#include "pd/xfer_nccl.h"
#include "xfer_int.h"

#include <stdio.h>
#include <string.h>

void pd_xfer_nccl_desc_write(const pd_xfer_nccl_desc_t *d, pd_mp_writer_t *w)
{
    pd_mp_put_map(w, 8);
    pd_mp_put_str(w, "uid");
    pd_mp_put_bin(w, d->uid, sizeof(d->uid));
    pd_mp_put_str(w, "device_uuid");
    pd_mp_put_bin(w, d->device_uuid, sizeof(d->device_uuid));
    pd_mp_put_str(w, "pool_bytes");
    pd_mp_put_u64(w, d->pool_bytes);
    pd_xfer__layout_put_fields(w, &d->layout);
}

static int pd_xfer_nccl_u32(const msgpack_object *obj, const char *key, uint64_t max, uint32_t *v_p)
{
    uint64_t v;
    if (pd_mp_get_u64(obj, key, &v) != PD_OK || v == 0 || v > max)
        return -1;
    *v_p = (uint32_t)v;
    return 0;
}

pd_status_t pd_xfer_nccl_desc_read(const msgpack_object *obj, pd_xfer_nccl_desc_t *d_p)
{
    pd_xfer_nccl_desc_t d;
    memset(&d, 0, sizeof(d));
    const void *uid = NULL, *uuid = NULL;
    size_t uid_bytes = 0, uuid_bytes = 0;
    if (obj == NULL || d_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (pd_mp_get_bin(obj, "uid", &uid, &uid_bytes) != PD_OK || uid_bytes != sizeof(d.uid) ||
        pd_mp_get_bin(obj, "device_uuid", &uuid, &uuid_bytes) != PD_OK ||
        uuid_bytes != sizeof(d.device_uuid) ||
        pd_mp_get_u64(obj, "pool_bytes", &d.pool_bytes) != PD_OK ||
        pd_xfer_nccl_u32(obj, "n_layers", 4096, &d.layout.n_layers) ||
        pd_xfer_nccl_u32(obj, "n_kv_heads", 4096, &d.layout.n_kv_heads) ||
        pd_xfer_nccl_u32(obj, "head_dim", 4096, &d.layout.head_dim) ||
        pd_xfer_nccl_u32(obj, "block_tokens", 4096, &d.layout.block_tokens) ||
        pd_xfer_nccl_u32(obj, "n_blocks", UINT32_MAX, &d.layout.n_blocks))
        return PD_ERR_PROTO;
    const uint64_t bl = pd_kv_block_layer_bytes(&d.layout); /* < 2^39 */
    if ((uint64_t)d.layout.n_blocks > UINT64_MAX / bl ||
        (uint64_t)d.layout.n_layers > UINT64_MAX / (bl * d.layout.n_blocks) ||
        bl * d.layout.n_blocks * d.layout.n_layers != d.pool_bytes)
        return PD_ERR_PROTO;
    memcpy(d.uid, uid, sizeof(d.uid));
    memcpy(d.device_uuid, uuid, sizeof(d.device_uuid));
    *d_p = d;
    return PD_OK;
}

pd_status_t pd_xfer_nccl_pair_plan(const uint8_t *sender_device_uuid, const pd_xfer_nccl_desc_t *d,
                                   pd_xfer_nccl_pair_t *pair_p, char *why, size_t why_bytes)
{
    if (sender_device_uuid == NULL || d == NULL || pair_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (memcmp(sender_device_uuid, d->device_uuid, PD_XFER_NCCL_UUID_BYTES) == 0) {
        if (why != NULL && why_bytes > 0)
            snprintf(why, why_bytes,
                     "both workers use one GPU: NCCL refuses two ranks on one device (use CUDA "
                     "IPC or the host path)");
        return PD_ERR_UNSUPPORTED;
    }
    pair_p->n_ranks = 2;
    pair_p->rank = 0;
    pair_p->peer = 1;
    return PD_OK;
}

static void pd_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void pd_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t pd_rd32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t pd_rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

pd_status_t pd_xfer_nccl_frame_pack(uint64_t xfer_id, uint32_t layer, const pd_xfer_seg_t *segs,
                                    size_t n_segs, void *buf, size_t cap, size_t *len_p)
{
    if ((n_segs > 0 && segs == NULL) || buf == NULL || len_p == NULL ||
        n_segs > PD_XFER_NCCL_FRAME_MAX_SEGS)
        return PD_ERR_INVALID_PARAM;
    const size_t len = pd_xfer_nccl_frame_bytes(n_segs);
    if (len > cap)
        return PD_ERR_LIMIT;
    unsigned char *p = buf;
    pd_le32(p, PD_XFER_NCCL_FRAME_MAGIC);
    pd_le32(p + 4, PD_XFER_NCCL_FRAME_VERSION);
    pd_le64(p + 8, xfer_id);
    pd_le32(p + 16, layer);
    pd_le32(p + 20, (uint32_t)n_segs);
    for (size_t i = 0; i < n_segs; i++) {
        pd_le64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i, segs[i].remote_offset);
        pd_le64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i + 8, segs[i].bytes);
    }
    *len_p = len;
    return PD_OK;
}

static bool pd_xfer_nccl_inside(const pd_xfer_nccl_expect_t *e, uint64_t off, uint64_t bytes)
{
    if (bytes == 0 || off > e->pool_bytes || bytes > e->pool_bytes - off)
        return false;
    for (size_t i = 0; i < e->n_ranges; i++)
        if (off >= e->ranges[i].offset && bytes <= e->ranges[i].bytes &&
            off - e->ranges[i].offset <= e->ranges[i].bytes - bytes)
            return true;
    return false;
}

pd_status_t pd_xfer_nccl_frame_unpack(const void *buf, size_t len, const pd_xfer_nccl_expect_t *e,
                                      pd_xfer_seg_t *segs, size_t cap, size_t *n_segs_p,
                                      uint32_t *layer_p, uint64_t *bytes_p)
{
    const unsigned char *p = buf;
    if (buf == NULL || e == NULL || n_segs_p == NULL || layer_p == NULL || bytes_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (len < PD_XFER_NCCL_FRAME_HEAD || pd_rd32(p) != PD_XFER_NCCL_FRAME_MAGIC ||
        pd_rd32(p + 4) != PD_XFER_NCCL_FRAME_VERSION)
        return PD_ERR_PROTO;
    const uint32_t n = pd_rd32(p + 20);
    if (n > PD_XFER_NCCL_FRAME_MAX_SEGS || len != pd_xfer_nccl_frame_bytes(n))
        return PD_ERR_PROTO;
    if (pd_rd64(p + 8) != e->xfer_id)
        return PD_ERR_NOT_FOUND;
    const uint32_t layer = pd_rd32(p + 16);
    if (layer >= e->n_layers)
        return PD_ERR_OUT_OF_RANGE;
    if (n > cap)
        return PD_ERR_LIMIT;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint64_t off = pd_rd64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i);
        const uint64_t bytes = pd_rd64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i + 8);
        if (!pd_xfer_nccl_inside(e, off, bytes))
            return PD_ERR_OUT_OF_RANGE;
        if (bytes > UINT64_MAX - total)
            return PD_ERR_PROTO;
        total += bytes;
    }
    for (uint32_t i = 0; i < n; i++) {
        segs[i].local_offset = 0;
        segs[i].remote_offset = pd_rd64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i);
        segs[i].bytes = pd_rd64(p + PD_XFER_NCCL_FRAME_HEAD + 16 * i + 8);
    }
    *n_segs_p = n;
    *layer_p = layer;
    *bytes_p = total;
    return PD_OK;
}
