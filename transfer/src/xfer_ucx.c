/* The UCX backend: one UCP context and worker per engine; per peer, one-sided puts into its
 * registered region where the transport does RMA natively, active messages received
 * straight into the reserved blocks where it does not (TCP); active messages for
 * notifications and acknowledgements.
 *
 * Endpoints use UCP_ERR_HANDLING_MODE_NONE unless the config asks for PEER: UCX 1.13's
 * shared-memory transports do not support PEER and an endpoint that asks for it silently
 * falls back to TCP. Dead peers are found by transfer deadlines and by the owner
 * (pd_xfer_peer_fail) instead. */
#include "xfer_ucx_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

pd_status_t pd_xfer__ucs_status(ucs_status_t s)
{
    switch (s) {
    case UCS_OK:
        return PD_OK;
    case UCS_INPROGRESS:
        return PD_INPROGRESS;
    case UCS_ERR_NO_MEMORY:
        return PD_ERR_NO_MEMORY;
    case UCS_ERR_INVALID_PARAM:
        return PD_ERR_INVALID_PARAM;
    case UCS_ERR_UNREACHABLE:
        return PD_ERR_UNREACHABLE;
    case UCS_ERR_TIMED_OUT:
        return PD_ERR_TIMEOUT;
    case UCS_ERR_CANCELED:
        return PD_ERR_CANCELED;
    case UCS_ERR_BUSY:
        return PD_ERR_BUSY;
    case UCS_ERR_UNSUPPORTED:
        return PD_ERR_UNSUPPORTED;
    case UCS_ERR_OUT_OF_RANGE:
        return PD_ERR_OUT_OF_RANGE;
    case UCS_ERR_NO_ELEM:
        return PD_ERR_NOT_FOUND;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_REJECTED:
        return PD_ERR_PEER;
    default:
        return PD_ERR_IO;
    }
}

static pd_status_t pd_xfer__ucx_engine_init(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = calloc(1, sizeof(*ue));
    if (ue == NULL)
        return PD_ERR_NO_MEMORY;
    ucp_config_t *config = NULL;
    ucs_status_t s = ucp_config_read(NULL, NULL, &config);
    if (s != UCS_OK)
        goto err_ucs;
    if (engine->cfg.transports != NULL && engine->cfg.transports[0] != '\0') {
        s = ucp_config_modify(config, "TLS", engine->cfg.transports);
        if (s != UCS_OK)
            goto err_config;
    }
    if (engine->cfg.net_devices != NULL && engine->cfg.net_devices[0] != '\0') {
        s = ucp_config_modify(config, "NET_DEVICES", engine->cfg.net_devices);
        if (s != UCS_OK)
            goto err_config;
    }
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES,
        .features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
    };
    s = ucp_init(&params, config, &ue->context);
    if (s != UCS_OK)
        goto err_config;
    ucp_config_release(config);
    config = NULL;
    ucp_worker_params_t wparams = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    s = ucp_worker_create(ue->context, &wparams, &ue->worker);
    if (s != UCS_OK)
        goto err_context;
    s = ucp_worker_get_address(ue->worker, &ue->address, &ue->address_bytes);
    if (s != UCS_OK)
        goto err_worker;
    s = ucp_worker_get_efd(ue->worker, &ue->efd);
    if (s != UCS_OK)
        goto err_address;
    ucp_am_handler_param_t hparams = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
        .id = PD_XFER_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = pd_xfer__ucx_am_cb,
        .arg = engine,
    };
    s = ucp_worker_set_am_recv_handler(ue->worker, &hparams);
    if (s != UCS_OK)
        goto err_address;
    hparams.id = PD_XFER_AM_DATA_ID;
    hparams.cb = pd_xfer__ucx_data_cb;
    s = ucp_worker_set_am_recv_handler(ue->worker, &hparams);
    if (s != UCS_OK)
        goto err_address;
    engine->be = ue;
    return PD_OK;

err_address:
    ucp_worker_release_address(ue->worker, ue->address);
err_worker:
    ucp_worker_destroy(ue->worker);
err_context:
    ucp_cleanup(ue->context);
err_config:
    if (config != NULL)
        ucp_config_release(config);
err_ucs:
    pd_log_error("xfer: UCX start failed: %s", ucs_status_string(s));
    free(ue);
    return pd_xfer__ucs_status(s) == PD_ERR_NO_MEMORY ? PD_ERR_NO_MEMORY : PD_ERR_IO;
}

static void pd_xfer__ucx_mem_deregister(pd_xfer_engine_t *engine);

static void pd_xfer__ucx_engine_cleanup(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    /* UCP wants every endpoint flushed before its worker goes: the reply endpoints it made
     * for incoming messages still carry replies we sent. Drain those (bounded: a dead peer
     * never completes them), then flush, also bounded. */
    uint64_t deadline = pd_time_now_ns() + 1000000000u;
    while (ue->n_replies > 0 && pd_time_now_ns() < deadline)
        ucp_worker_progress(ue->worker);
    ucp_request_param_t prm = {.op_attr_mask = 0};
    ucs_status_ptr_t req = ucp_worker_flush_nbx(ue->worker, &prm);
    if (req != NULL && !UCS_PTR_IS_ERR(req)) {
        while (ucp_request_check_status(req) == UCS_INPROGRESS && pd_time_now_ns() < deadline)
            ucp_worker_progress(ue->worker);
        ucp_request_free(req); /* released when it completes, if it has not */
    }
    if (ue->n_replies > 0)
        pd_log_warn("xfer: %u replies still in flight at shutdown", ue->n_replies);
    ucp_worker_release_address(ue->worker, ue->address);
    ucp_worker_destroy(ue->worker);
    while (ue->landing_all != NULL) {
        pd_xfer__ucx_landing_t *g = ue->landing_all;
        ue->landing_all = g->next_all;
        free(g);
    }
    /* Only now that no receive can write into it does the region go. */
    if (engine->registered)
        pd_xfer__ucx_mem_deregister(engine);
    ucp_cleanup(ue->context);
    free(ue);
    engine->be = NULL;
}

static pd_status_t pd_xfer__ucx_mem_register(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS,
        .address = engine->allocated ? NULL : engine->base,
        .length = engine->bytes,
        .flags = engine->allocated ? UCP_MEM_MAP_ALLOCATE : 0,
    };
    ucs_status_t s = ucp_mem_map(ue->context, &mp, &ue->memh);
    if (s != UCS_OK) {
        pd_log_error("xfer: ucp_mem_map of %zu bytes failed: %s", engine->bytes,
                     ucs_status_string(s));
        return pd_xfer__ucs_status(s);
    }
    if (engine->allocated) {
        ucp_mem_attr_t attr = {.field_mask =
                                   UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH};
        s = ucp_mem_query(ue->memh, &attr);
        if (s != UCS_OK || attr.length < engine->bytes) {
            pd_log_error("xfer: ucp_mem_query failed: %s", ucs_status_string(s));
            ucp_mem_unmap(ue->context, ue->memh);
            return PD_ERR_NO_MEMORY;
        }
        engine->base = attr.address;
    }
    s = ucp_rkey_pack(ue->context, ue->memh, &ue->rkey_buf, &ue->rkey_bytes);
    if (s != UCS_OK) {
        pd_log_error("xfer: ucp_rkey_pack failed: %s", ucs_status_string(s));
        ucp_mem_unmap(ue->context, ue->memh);
        return pd_xfer__ucs_status(s);
    }
    return PD_OK;
}

static void pd_xfer__ucx_mem_deregister(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    ucp_rkey_buffer_release(ue->rkey_buf);
    ucp_mem_unmap(ue->context, ue->memh);
    ue->rkey_buf = NULL;
    ue->memh = NULL;
}

static pd_status_t pd_xfer__ucx_desc_pack(pd_xfer_engine_t *engine, pd_mp_writer_t *w)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    pd_mp_put_str(w, "addr");
    pd_mp_put_bin(w, ue->address, ue->address_bytes);
    pd_mp_put_str(w, "rkey");
    pd_mp_put_bin(w, ue->rkey_buf, ue->rkey_bytes);
    return PD_OK;
}

static void pd_xfer__ucx_ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    pd_xfer_peer_t *peer = arg;
    (void)ep;
    pd_log_warn("xfer: UCX endpoint error: %s", ucs_status_string(status));
    pd_xfer_peer_fail(peer, PD_ERR_PEER);
}

static void pd_xfer__ucx_peer_close(pd_xfer_peer_t *peer);

static pd_status_t pd_xfer__ucx_peer_connect(pd_xfer_peer_t *peer, const msgpack_object *desc)
{
    pd_xfer__ucx_engine_t *ue = peer->engine->be;
    const void *addr = NULL, *rkey = NULL;
    size_t addr_bytes = 0, rkey_bytes = 0;
    if (pd_mp_get_bin(desc, "addr", &addr, &addr_bytes) != PD_OK ||
        pd_mp_get_bin(desc, "rkey", &rkey, &rkey_bytes) != PD_OK || addr_bytes == 0 ||
        rkey_bytes == 0)
        return PD_ERR_PROTO;
    pd_xfer__ucx_peer_t *up = calloc(1, sizeof(*up));
    void *addr_copy = malloc(addr_bytes);
    void *rkey_copy = malloc(rkey_bytes);
    pd_status_t st = PD_ERR_NO_MEMORY;
    if (up == NULL || addr_copy == NULL || rkey_copy == NULL)
        goto err_free;
    memcpy(addr_copy, addr, addr_bytes);
    memcpy(rkey_copy, rkey, rkey_bytes);
    ucp_ep_params_t ep_params = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .address = addr_copy,
        .err_mode = peer->engine->cfg.ucx_peer_err_mode ? UCP_ERR_HANDLING_MODE_PEER
                                                        : UCP_ERR_HANDLING_MODE_NONE,
    };
    if (peer->engine->cfg.ucx_peer_err_mode) {
        ep_params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        ep_params.err_handler.cb = pd_xfer__ucx_ep_err_cb;
        ep_params.err_handler.arg = peer;
    }
    ucs_status_t s = ucp_ep_create(ue->worker, &ep_params, &up->ep);
    if (s != UCS_OK) {
        pd_log_warn("xfer: ucp_ep_create failed: %s", ucs_status_string(s));
        st = pd_xfer__ucs_status(s);
        goto err_free;
    }
    s = ucp_ep_rkey_unpack(up->ep, rkey_copy, &up->rkey);
    if (s != UCS_OK) {
        pd_log_warn("xfer: ucp_ep_rkey_unpack failed: %s", ucs_status_string(s));
        st = PD_ERR_PROTO;
        goto err_ep;
    }
    free(addr_copy);
    free(rkey_copy);
    peer->be = up;
    return PD_OK;

err_ep:
    peer->be = up;
    up->rkey = NULL;
    pd_xfer__ucx_peer_close(peer); /* frees up */
    up = NULL;
err_free:
    free(up);
    free(addr_copy);
    free(rkey_copy);
    return st;
}

static void pd_xfer__ucx_peer_close(pd_xfer_peer_t *peer)
{
    pd_xfer__ucx_engine_t *ue = peer->engine->be;
    pd_xfer__ucx_peer_t *up = peer->be;
    if (up == NULL)
        return;
    if (up->rkey != NULL)
        ucp_rkey_destroy(up->rkey);
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_EP_CLOSE_FLAG_FORCE,
    };
    ucs_status_ptr_t req = ucp_ep_close_nbx(up->ep, &prm);
    if (req != NULL && !UCS_PTR_IS_ERR(req)) {
        /* A forced close completes locally; bound the wait anyway. */
        uint64_t deadline = pd_time_now_ns() + 2000000000u;
        while (ucp_request_check_status(req) == UCS_INPROGRESS && pd_time_now_ns() < deadline)
            ucp_worker_progress(ue->worker);
        ucp_request_free(req);
    }
    free(up);
    peer->be = NULL;
}

static void pd_xfer__ucx_data_sent_cb(void *request, ucs_status_t status, void *user_data)
{
    pd_xfer_send_t *send = user_data;
    pd_xfer__send_data_done(send, pd_xfer__ucs_status(status));
    pd_xfer__send_unref(send);
    ucp_request_free(request);
}

static pd_status_t pd_xfer__ucx_put(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *local,
                                    uint64_t remote_offset, size_t bytes,
                                    const pd_xfer__data_hdr_t *hdr)
{
    pd_xfer__ucx_engine_t *ue = peer->engine->be;
    pd_xfer__ucx_peer_t *up = peer->be;
    if (peer->data_path == PD_XFER_DATA_PATH_AM) {
        /* Completion of a rendezvous message means the receiver has the bytes; of an
         * eager one only that they left. The receiver counts what landed either way. */
        ucp_request_param_t prm = {
            .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
            .cb.send = pd_xfer__ucx_data_sent_cb,
            .user_data = send,
        };
        if (hdr->raw_bytes == 0) { /* packed bytes are staging memory, not the region */
            prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
            prm.memh = ue->memh;
        }
        ucs_status_ptr_t req =
            ucp_am_send_nbx(up->ep, PD_XFER_AM_DATA_ID, hdr, sizeof(*hdr), local, bytes, &prm);
        if (UCS_PTR_IS_ERR(req)) {
            pd_log_warn("xfer: ucp_am_send_nbx failed: %s", ucs_status_string(UCS_PTR_STATUS(req)));
            return pd_xfer__ucs_status(UCS_PTR_STATUS(req));
        }
        if (req != NULL) {
            send->n_data_open++;
            pd_xfer__send_ref(send);
        }
        return PD_OK;
    }
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_MEMH,
        .memh = ue->memh,
    };
    ucs_status_ptr_t req =
        ucp_put_nbx(up->ep, local, bytes, peer->remote_base + remote_offset, up->rkey, &prm);
    if (UCS_PTR_IS_ERR(req)) {
        pd_log_warn("xfer: ucp_put_nbx failed: %s", ucs_status_string(UCS_PTR_STATUS(req)));
        return pd_xfer__ucs_status(UCS_PTR_STATUS(req));
    }
    /* Completion is observed through the flush that precedes the notification. */
    if (req != NULL)
        ucp_request_free(req);
    return PD_OK;
}

static void pd_xfer__ucx_flush_cb(void *request, ucs_status_t status, void *user_data)
{
    pd_xfer_send_t *send = user_data;
    pd_xfer__send_flushed(send, pd_xfer__ucs_status(status));
    pd_xfer__send_unref(send);
    ucp_request_free(request);
}

static pd_status_t pd_xfer__ucx_flush(pd_xfer_peer_t *peer, pd_xfer_send_t *send)
{
    pd_xfer__ucx_peer_t *up = peer->be;
    if (peer->data_path == PD_XFER_DATA_PATH_AM) {
        /* Data messages complete one by one: the last one completes the flush. */
        if (send->n_data_open == 0)
            pd_xfer__send_flushed(send, send->data_status);
        else
            send->flush_on_data = true;
        return PD_OK;
    }
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = pd_xfer__ucx_flush_cb,
        .user_data = send,
    };
    ucs_status_ptr_t req = ucp_ep_flush_nbx(up->ep, &prm);
    if (UCS_PTR_IS_ERR(req))
        return pd_xfer__ucs_status(UCS_PTR_STATUS(req));
    if (req == NULL)
        pd_xfer__send_flushed(send, PD_OK);
    else
        pd_xfer__send_ref(send);
    return PD_OK;
}

static void pd_xfer__ucx_notify_cb(void *request, ucs_status_t status, void *user_data)
{
    pd_xfer_send_t *send = user_data;
    if (status != UCS_OK)
        pd_log_warn("xfer: notification of %llu failed: %s", (unsigned long long)send->xfer_id,
                    ucs_status_string(status));
    pd_xfer__send_unref(send);
    ucp_request_free(request);
}

static pd_status_t pd_xfer__ucx_notify(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *msg,
                                       size_t bytes)
{
    pd_xfer__ucx_peer_t *up = peer->be;
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER,
        .cb.send = pd_xfer__ucx_notify_cb,
        .user_data = send,
    };
    ucs_status_ptr_t req = ucp_am_send_nbx(up->ep, PD_XFER_AM_ID, NULL, 0, msg, bytes, &prm);
    if (UCS_PTR_IS_ERR(req))
        return pd_xfer__ucs_status(UCS_PTR_STATUS(req));
    if (req != NULL)
        pd_xfer__send_ref(send);
    return PD_OK;
}

static pd_status_t pd_xfer__ucx_get(pd_xfer_peer_t *peer, const pd_xfer_seg_t *segs, size_t n_segs,
                                    uint64_t deadline_ns)
{
    pd_xfer__ucx_engine_t *ue = peer->engine->be;
    pd_xfer__ucx_peer_t *up = peer->be;
    if (n_segs == 0)
        return PD_OK;
    ucs_status_ptr_t *reqs = calloc(n_segs, sizeof(*reqs));
    if (reqs == NULL)
        return PD_ERR_NO_MEMORY;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_MEMH,
        .memh = ue->memh,
    };
    pd_status_t st = PD_OK;
    size_t n_posted = 0;
    for (; n_posted < n_segs; n_posted++) {
        const pd_xfer_seg_t *g = &segs[n_posted];
        ucs_status_ptr_t r = ucp_get_nbx(up->ep, peer->engine->base + g->local_offset, g->bytes,
                                         peer->remote_base + g->remote_offset, up->rkey, &prm);
        if (UCS_PTR_IS_ERR(r)) {
            pd_log_warn("xfer: ucp_get_nbx failed: %s", ucs_status_string(UCS_PTR_STATUS(r)));
            st = pd_xfer__ucs_status(UCS_PTR_STATUS(r));
            break;
        }
        reqs[n_posted] = r;
    }
    /* Wait for the posted ones, even after a failed post, so none is left pointing at
     * memory the caller reuses; past the deadline they are released, and the caller's
     * disconnect cancels them. */
    size_t n_open = 0;
    do {
        ucp_worker_progress(ue->worker);
        n_open = 0;
        for (size_t i = 0; i < n_posted; i++) {
            if (reqs[i] == NULL)
                continue;
            ucs_status_t rs = ucp_request_check_status(reqs[i]);
            if (rs == UCS_INPROGRESS) {
                n_open++;
                continue;
            }
            if (rs != UCS_OK && st == PD_OK)
                st = pd_xfer__ucs_status(rs);
            ucp_request_free(reqs[i]);
            reqs[i] = NULL;
        }
    } while (n_open > 0 && pd_time_now_ns() < deadline_ns);
    if (n_open > 0) {
        for (size_t i = 0; i < n_posted; i++)
            if (reqs[i] != NULL)
                ucp_request_free(reqs[i]);
        if (st == PD_OK)
            st = PD_ERR_TIMEOUT;
    }
    free(reqs);
    return st;
}

static void pd_xfer__ucx_reply_cb(void *request, ucs_status_t status, void *user_data)
{
    (void)status;
    pd_xfer__ucx_reply_t *rp = user_data;
    rp->ue->n_replies--;
    free(rp);
    ucp_request_free(request);
}

static pd_status_t pd_xfer__ucx_reply(pd_xfer_engine_t *engine, void *reply_ctx, const void *msg,
                                      size_t bytes)
{
    if (reply_ctx == NULL)
        return PD_ERR_PEER;
    pd_xfer__ucx_reply_t *rp = malloc(sizeof(*rp) + bytes);
    if (rp == NULL)
        return PD_ERR_NO_MEMORY;
    rp->ue = engine->be;
    memcpy(rp->data, msg, bytes);
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_EAGER,
        .cb.send = pd_xfer__ucx_reply_cb,
        .user_data = rp,
    };
    ucs_status_ptr_t req =
        ucp_am_send_nbx((ucp_ep_h)reply_ctx, PD_XFER_AM_ID, NULL, 0, rp->data, bytes, &prm);
    if (req == NULL) {
        free(rp);
        return PD_OK;
    }
    if (UCS_PTR_IS_ERR(req)) {
        free(rp);
        return pd_xfer__ucs_status(UCS_PTR_STATUS(req));
    }
    rp->ue->n_replies++;
    return PD_OK;
}

static int pd_xfer__ucx_progress(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    int n = 0;
    for (int i = 0; i < 64; i++) {
        unsigned got = ucp_worker_progress(ue->worker);
        if (got == 0)
            break;
        n += (int)got;
    }
    return n;
}

static pd_status_t pd_xfer__ucx_get_fd(pd_xfer_engine_t *engine, int *fd_p)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    *fd_p = ue->efd;
    return PD_OK;
}

static pd_status_t pd_xfer__ucx_arm(pd_xfer_engine_t *engine)
{
    pd_xfer__ucx_engine_t *ue = engine->be;
    ucs_status_t s = ucp_worker_arm(ue->worker);
    if (s == UCS_OK)
        return PD_OK;
    if (s == UCS_ERR_BUSY)
        return PD_ERR_BUSY;
    return pd_xfer__ucs_status(s);
}

const pd_xfer_backend_ops_t pd_xfer_ucx_ops = {
    .name = "ucx",
    .engine_init = pd_xfer__ucx_engine_init,
    .engine_cleanup = pd_xfer__ucx_engine_cleanup,
    .mem_register = pd_xfer__ucx_mem_register,
    .mem_deregister = pd_xfer__ucx_mem_deregister,
    .n_desc_pairs = 2,
    .desc_pack = pd_xfer__ucx_desc_pack,
    .peer_connect = pd_xfer__ucx_peer_connect,
    .peer_close = pd_xfer__ucx_peer_close,
    .data_path = pd_xfer__ucx_data_path,
    .put = pd_xfer__ucx_put,
    .get = pd_xfer__ucx_get,
    .flush = pd_xfer__ucx_flush,
    .notify = pd_xfer__ucx_notify,
    .reply = pd_xfer__ucx_reply,
    .progress = pd_xfer__ucx_progress,
    .get_fd = pd_xfer__ucx_get_fd,
    .arm = pd_xfer__ucx_arm,
    .transports = pd_xfer__ucx_transports,
};
