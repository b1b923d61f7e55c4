/* Clients that go away: a ROUTER socket says nothing when a peer leaves (the notification
 * option is a draft API that Debian's libzmq leaves out), so the router watches its client
 * socket's connections instead. Each client frame carries the descriptor of the
 * connection it came in on (ZMQ_SRCFD); a socket monitor reports when a connection is
 * accepted and when it closes. A closed connection cancels every request that came in on
 * it at once (docs/ARCHITECTURE.md, 11b): nothing runs for nobody. ZMTP heartbeats close
 * the connection of a client whose host stopped answering.
 *
 * Descriptor numbers are reused. The monitor reports a connection's close before the
 * kernel can hand its number to the next one, and a new connection's accept before any of
 * its frames, so a frame on a descriptor marked closed is re-checked against the events
 * not yet read: still closed, it is a frame the old client sent just before it left. */
#include "router_int.h"

#include "pd/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PD_ROUTER_CLIENT_FD_CAP (1u << 20)

pd_status_t pd_router_clients_watch_setup(pd_router_t *r)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "inproc://pd-router-clients-%p", (void *)r);
    int ivl = (int)r->cfg.client_heartbeat_ms, timeout = 3 * (int)r->cfg.client_heartbeat_ms;
    if (ivl > 0) {
        zmq_setsockopt(r->client_sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof(ivl));
        zmq_setsockopt(r->client_sock, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof(timeout));
    }
    if (zmq_socket_monitor(r->client_sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
        pd_log_error("client socket monitor: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    r->client_mon = zmq_socket(r->ctx, ZMQ_PAIR);
    int linger = 0;
    if (r->client_mon == NULL ||
        zmq_setsockopt(r->client_mon, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_connect(r->client_mon, ep) != 0) {
        pd_log_error("client socket monitor: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    return PD_OK;
}

void pd_router_clients_watch_cleanup(pd_router_t *r)
{
    if (r->client_sock != NULL && r->client_mon != NULL)
        zmq_socket_monitor(r->client_sock, NULL, 0);
    if (r->client_mon != NULL)
        zmq_close(r->client_mon);
    r->client_mon = NULL;
    free(r->client_fd_gone);
    r->client_fd_gone = NULL;
    r->n_client_fd_gone = 0;
}

static void pd_router_client_fd_mark(pd_router_t *r, int fd, bool gone)
{
    if (fd < 0 || (uint32_t)fd >= PD_ROUTER_CLIENT_FD_CAP)
        return;
    if ((size_t)fd >= r->n_client_fd_gone) {
        if (!gone)
            return; /* unmarked by default */
        size_t n = r->n_client_fd_gone ? r->n_client_fd_gone : 256;
        while (n <= (size_t)fd)
            n *= 2;
        uint8_t *p = realloc(r->client_fd_gone, n);
        if (p == NULL)
            return; /* only the late-frame check is lost */
        memset(p + r->n_client_fd_gone, 0, n - r->n_client_fd_gone);
        r->client_fd_gone = p;
        r->n_client_fd_gone = n;
    }
    r->client_fd_gone[fd] = gone;
}

/* Cancel what the client on connection fd asked for: its requests get no more work. */
static void pd_router_client_left(pd_router_t *r, int fd)
{
    uint32_t n = 0;
    pd_router_req_t *q = r->head;
    while (q != NULL) {
        pd_router_req_t *next = q->next;
        if (q->client_fd == fd) {
            pd_router_req_fail(r, q, PD_ERR_CANCELED, "the client disconnected");
            n++;
        }
        q = next;
    }
    if (n > 0) {
        r->n_client_gone_reqs += n;
        pd_log_info("client connection %d closed: %u request(s) canceled", fd, n);
        pd_router_dispatch(r);
    }
}

void pd_router_clients_watch_drain(pd_router_t *r)
{
    if (r->client_mon == NULL)
        return;
    for (;;) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, r->client_mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        /* Frame 1: event (u16) and value (u32, the descriptor); frame 2: the endpoint. */
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&frame) >= 6) {
            memcpy(&event, zmq_msg_data(&frame), sizeof(event));
            memcpy(&value, (const uint8_t *)zmq_msg_data(&frame) + 2, sizeof(value));
        }
        int more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
        while (more) {
            zmq_msg_init(&frame);
            more = zmq_msg_recv(&frame, r->client_mon, 0) >= 0 && zmq_msg_more(&frame);
            zmq_msg_close(&frame);
        }
        if (event == ZMQ_EVENT_ACCEPTED) {
            pd_router_client_fd_mark(r, (int)value, false);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            pd_router_client_fd_mark(r, (int)value, true);
            pd_router_client_left(r, (int)value);
        }
    }
}

bool pd_router_client_fd_gone(pd_router_t *r, int fd)
{
    if (fd < 0 || (size_t)fd >= r->n_client_fd_gone || !r->client_fd_gone[fd])
        return false;
    pd_router_clients_watch_drain(r); /* an accept not yet read reopens the number */
    return (size_t)fd < r->n_client_fd_gone && r->client_fd_gone[fd];
}
