/* The router client: a DEALER with the client channel's frame limit. */
#include "pd/client.h"

#include "pd/log.h"
#include "pd/mp.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

struct pd_client {
    void *ctx;
    void *sock;
    pd_mp_writer_t w;
};

pd_status_t pd_client_connect(const char *endpoint, pd_client_t **client_p)
{
    pd_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PD_ERR_NO_MEMORY;
    pd_mp_writer_init(&c->w);
    c->ctx = zmq_ctx_new();
    if (c->ctx == NULL)
        goto err;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (c->sock == NULL)
        goto err;
    int64_t max = PD_PROTO_MAX_CLIENT_FRAME_BYTES;
    int linger = 0;
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max));
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(c->sock, endpoint) != 0) {
        pd_log_error("connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto err;
    }
    *client_p = c;
    return PD_OK;

err:
    pd_client_destroy(&c);
    return PD_ERR_IO;
}

void pd_client_destroy(pd_client_t **client_p)
{
    if (client_p == NULL || *client_p == NULL)
        return;
    pd_client_t *c = *client_p;
    if (c->sock != NULL)
        zmq_close(c->sock);
    if (c->ctx != NULL)
        zmq_ctx_term(c->ctx);
    pd_mp_writer_cleanup(&c->w);
    free(c);
    *client_p = NULL;
}

pd_status_t pd_client_send(pd_client_t *c, const pd_proto_msg_t *msg)
{
    pd_mp_writer_reset(&c->w);
    pd_status_t st = pd_proto_encode(msg, &c->w);
    if (st != PD_OK)
        return st;
    if (zmq_send(c->sock, pd_mp_writer_data(&c->w), pd_mp_writer_size(&c->w), 0) < 0) {
        pd_log_error("send: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_client_recv(pd_client_t *c, int timeout_ms, pd_proto_msg_t *msg,
                           pd_proto_fault_t *fault)
{
    zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0)
        return zmq_errno() == EINTR ? PD_ERR_CANCELED : PD_ERR_IO;
    if (rc == 0)
        return PD_ERR_TIMEOUT;
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return PD_ERR_TIMEOUT;
    }
    pd_status_t st =
        pd_proto_decode(msg, PD_PROTO_CHAN_CLIENT, zmq_msg_data(&part), zmq_msg_size(&part), fault);
    bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    while (more) {
        zmq_msg_init(&part);
        more = zmq_msg_recv(&part, c->sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return st;
}

void *pd_client_socket(pd_client_t *c)
{
    return c->sock;
}
