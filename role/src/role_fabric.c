/* The fabric side of a worker's start-up (pd/role_fabric.h). */
#include "pd/role_fabric.h"

#include "pd/log.h"

#include <stdlib.h>
#include <string.h>

pd_status_t pd_role_fabric_open(const pd_worker_args_t *args, const char *who,
                                const pd_kv_layout_t *layout, bool fabric_alloc,
                                pd_mp_writer_t *desc, pd_role_fabric_t *out)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->pool_bytes = pd_kv_pool_bytes(layout);

    pd_xfer_config_t xc;
    pd_xfer_config_default(&xc);
    pd_status_t st = pd_xfer_backend_parse(args->xfer_backend, &xc.backend);
    if (st != PD_OK)
        return st;
    xc.timeout_ms = args->xfer_timeout_ms;
    xc.verify_checksums = args->checksum;
    st = pd_xfer_codec_parse(args->kv_codec, &xc.codec);
    if (st != PD_OK) {
        pd_log_error("%s: unknown KV codec '%s'", who, args->kv_codec);
        return st;
    }
    if (xc.codec != PD_XFER_CODEC_NONE)
        pd_log_info("%s: KV sent over TCP is compressed to %s (lossy)", who,
                    pd_xfer_codec_name(xc.codec));
    if (xc.backend == PD_XFER_BACKEND_LOOPBACK && args->role != PD_PROTO_ROLE_BOTH)
        pd_log_warn("%s: the loopback transfer backend only reaches engines of this process: "
                    "KV pushes between workers will fail (use ucx)",
                    who);
    st = pd_xfer_engine_create(&xc, &out->engine);
    if (st != PD_OK) {
        pd_log_error("%s: cannot start the %s transfer engine: %s", who, args->xfer_backend,
                     pd_status_str(st));
        return st;
    }
    if (fabric_alloc) {
        /* The engine owns this memory and frees it when it is destroyed. */
        st = pd_xfer_mem_alloc(out->engine, out->pool_bytes, layout, &out->pool);
    } else {
        out->pool = aligned_alloc(4096, (out->pool_bytes + 4095) / 4096 * 4096);
        out->owned = out->pool != NULL;
        st = out->pool == NULL
                 ? PD_ERR_NO_MEMORY
                 : pd_xfer_mem_register(out->engine, out->pool, out->pool_bytes, layout);
    }
    if (st == PD_OK)
        memset(out->pool, 0, out->pool_bytes);
    if (st == PD_OK)
        st = pd_xfer_desc_export(out->engine, desc);
    if (st == PD_OK)
        st = pd_xfer_engine_fd(out->engine, &out->fd);
    if (st != PD_OK) {
        pd_log_error("%s: cannot register the KV pool (%zu MiB): %s", who, out->pool_bytes >> 20,
                     pd_status_str(st));
        pd_role_fabric_close(out);
    }
    return st;
}

void pd_role_fabric_close(pd_role_fabric_t *wp)
{
    pd_xfer_engine_destroy(&wp->engine); /* frees a pool it allocated */
    if (wp->owned)
        free(wp->pool);
    wp->pool = NULL;
    wp->owned = false;
    wp->fd = -1;
}
