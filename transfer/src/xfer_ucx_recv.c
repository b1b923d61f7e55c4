/* The UCX backend's receive path: active messages for notifications and replies, and data
 * messages checked against the receive they name before a byte is written, then received
 * straight into the reserved blocks (eager or rendezvous; packed KV landed at the tail of
 * its range and restored in place). */
#include "xfer_ucx_int.h"

#include "pd/log.h"

#include <stdlib.h>
#include <string.h>

ucs_status_t pd_xfer__ucx_am_cb(void *arg, const void *header, size_t header_length, void *data,
                                size_t length, const ucp_am_recv_param_t *param)
{
    pd_xfer_engine_t *engine = arg;
    (void)header;
    (void)header_length;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        /* Senders force eager; a rendezvous message is not ours to take. */
        engine->stats.n_notify_refused++;
        return UCS_OK;
    }
    void *reply_ep =
        (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ? (void *)param->reply_ep : NULL;
    pd_xfer__msg_deliver(engine, data, length, reply_ep);
    return UCS_OK;
}

static void pd_xfer__ucx_landed_cb(void *request, ucs_status_t status, size_t length,
                                   void *user_data)
{
    pd_xfer__data_landed(user_data, length, pd_xfer__ucs_status(status), true);
    ucp_request_free(request);
}

static void pd_xfer__ucx_packed_landed_cb(void *request, ucs_status_t status, size_t length,
                                          void *user_data)
{
    (void)length;
    pd_xfer__ucx_landing_t *g = user_data;
    pd_xfer__ucx_engine_t *ue = g->engine->be;
    pd_status_t st = pd_xfer__ucs_status(status);
    /* Restore only for an expectation still waiting: after a timeout the blocks may be
     * another request's already. */
    if (st == PD_OK && !g->recv->orphan && g->recv->status == PD_INPROGRESS)
        pd_xfer__data_restore(g->engine, &g->hdr, g->dest, NULL);
    pd_xfer__data_landed(g->recv, g->hdr.raw_bytes, st, true);
    g->next = ue->landing_free;
    ue->landing_free = g;
    ucp_request_free(request);
}

static pd_xfer__ucx_landing_t *pd_xfer__ucx_landing_get(pd_xfer__ucx_engine_t *ue)
{
    pd_xfer__ucx_landing_t *g = ue->landing_free;
    if (g != NULL) {
        ue->landing_free = g->next;
        return g;
    }
    g = calloc(1, sizeof(*g));
    if (g != NULL) {
        g->next_all = ue->landing_all;
        ue->landing_all = g;
    }
    return g;
}

/* The status a refused rendezvous message completes with on its sender. */
static ucs_status_t pd_xfer__ucx_refusal(pd_status_t st)
{
    switch (st) {
    case PD_ERR_OUT_OF_RANGE:
        return UCS_ERR_OUT_OF_RANGE;
    case PD_ERR_NOT_FOUND:
        return UCS_ERR_NO_ELEM;
    case PD_ERR_TIMEOUT:
        return UCS_ERR_TIMED_OUT;
    case PD_ERR_CANCELED:
        return UCS_ERR_CANCELED;
    default:
        return UCS_ERR_REJECTED;
    }
}

/* A data message (the am data path): checked against the expectation it names, then
 * copied into place (eager: the bytes are here) or received straight into the reserved
 * block (rendezvous: UCX moves them when we ask). Nothing is written before the check. */
ucs_status_t pd_xfer__ucx_data_cb(void *arg, const void *header, size_t header_length, void *data,
                                  size_t length, const ucp_am_recv_param_t *param)
{
    pd_xfer_engine_t *engine = arg;
    pd_xfer__ucx_engine_t *ue = engine->be;
    const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    pd_xfer__data_hdr_t hdr;
    pd_xfer_recv_t *recv = NULL;
    void *dest = NULL;
    pd_status_t st = PD_ERR_PROTO;
    if (header_length == sizeof(hdr)) {
        memcpy(&hdr, header, sizeof(hdr)); /* the header need not be aligned */
        st = pd_xfer__data_accept(engine, &hdr, length, &recv, &dest);
    } else {
        engine->stats.n_data_refused++;
    }
    if (st != PD_OK)
        return rndv ? pd_xfer__ucx_refusal(st) : UCS_OK;
    const uint64_t raw = hdr.raw_bytes != 0 ? hdr.raw_bytes : length;
    if (!rndv) {
        if (hdr.raw_bytes != 0)
            pd_xfer__data_restore(engine, &hdr, dest, data);
        else
            memcpy(dest, data, length);
        pd_xfer__data_landed(recv, raw, PD_OK, false);
        return UCS_OK;
    }
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .cb.recv_am = pd_xfer__ucx_landed_cb,
        .user_data = recv,
        .memh = ue->memh,
    };
    void *into = dest;
    pd_xfer__ucx_landing_t *g = NULL;
    if (hdr.raw_bytes != 0) {
        /* Packed: land at the tail of the reserved range, restore in place when in. */
        g = pd_xfer__ucx_landing_get(ue);
        if (g == NULL) {
            pd_xfer__data_landed(recv, 0, PD_ERR_NO_MEMORY, false);
            return UCS_ERR_NO_MEMORY;
        }
        g->engine = engine;
        g->recv = recv;
        g->hdr = hdr;
        g->dest = dest;
        into = (uint8_t *)dest + (hdr.raw_bytes - length);
        prm.cb.recv_am = pd_xfer__ucx_packed_landed_cb;
        prm.user_data = g;
    }
    recv->n_landing++;
    ucs_status_ptr_t req = ucp_am_recv_data_nbx(ue->worker, data, into, length, &prm);
    if (UCS_PTR_IS_ERR(req) || req == NULL) {
        pd_status_t rs = UCS_PTR_IS_ERR(req) ? pd_xfer__ucs_status(UCS_PTR_STATUS(req)) : PD_OK;
        if (rs == PD_OK && g != NULL)
            pd_xfer__data_restore(engine, &hdr, dest, NULL);
        pd_xfer__data_landed(recv, rs == PD_OK ? raw : 0, rs, true);
        if (g != NULL) {
            g->next = ue->landing_free;
            ue->landing_free = g;
        }
        /* UCX owns the descriptor after the call, even on failure. */
        return UCS_PTR_IS_ERR(req) ? UCS_OK : UCS_INPROGRESS;
    }
    /* The receive was started here: UCX keeps the descriptor until it completes. */
    return UCS_INPROGRESS;
}
