/* The UCX backend's private state, shared by its files: the engine and peers
 * (xfer_ucx.c), the receive path of active messages (xfer_ucx_recv.c), and the data path
 * chosen per peer from the transports UCX picked (xfer_ucx_path.c). */
#ifndef PD_XFER_UCX_INT_H
#define PD_XFER_UCX_INT_H

#include "xfer_int.h"

#include <ucp/api/ucp.h>

/* A packed rendezvous message being received: what to restore when it has landed. Kept
 * on a free list: one per message in flight, allocated once. */
typedef struct pd_xfer__ucx_landing {
    struct pd_xfer__ucx_landing *next;     /* free list */
    struct pd_xfer__ucx_landing *next_all; /* every one allocated, for cleanup */
    pd_xfer_engine_t *engine;
    pd_xfer_recv_t *recv;
    pd_xfer__data_hdr_t hdr;
    uint8_t *dest; /* (hdr.raw_bytes) */
} pd_xfer__ucx_landing_t;

typedef struct pd_xfer__ucx_engine {
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_address_t *address; /* (address_bytes) this worker's address */
    size_t address_bytes;
    ucp_mem_h memh;
    void *rkey_buf; /* (rkey_bytes) packed key of the registered region */
    size_t rkey_bytes;
    int efd;
    uint32_t n_replies; /* replies sent and not yet completed */
    pd_xfer__ucx_landing_t *landing_free, *landing_all;
} pd_xfer__ucx_engine_t;

/* A reply in flight: its bytes follow. */
typedef struct pd_xfer__ucx_reply {
    pd_xfer__ucx_engine_t *ue;
    uint8_t data[];
} pd_xfer__ucx_reply_t;

typedef struct pd_xfer__ucx_peer {
    ucp_ep_h ep;
    ucp_rkey_h rkey;
} pd_xfer__ucx_peer_t;

/* The one conversion point from ucs_status_t. */
PD_MUST_CHECK pd_status_t pd_xfer__ucs_status(ucs_status_t s);

/* Active-message handlers (xfer_ucx_recv.c): notifications and replies, and data
 * received straight into reserved blocks. */
ucs_status_t pd_xfer__ucx_am_cb(void *arg, const void *header, size_t header_length, void *data,
                                size_t length, const ucp_am_recv_param_t *param);
ucs_status_t pd_xfer__ucx_data_cb(void *arg, const void *header, size_t header_length, void *data,
                                  size_t length, const ucp_am_recv_param_t *param);

/* The transports of a peer's lanes and the data path they allow (xfer_ucx_path.c). */
PD_MUST_CHECK pd_status_t pd_xfer__ucx_transports(pd_xfer_peer_t *peer, char *buf,
                                                  size_t buf_bytes);
pd_xfer_data_path_t pd_xfer__ucx_data_path(pd_xfer_peer_t *peer);

#endif
