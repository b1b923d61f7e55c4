/* The router client: a DEALER with the client channel's frame limit. */
#include "pd/client.h"

#include "pd/log.h"
#include "pd/mp.h"
#include "pd/time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

struct pd_client {
    void *ctx;
    void *sock;
    pd_mp_writer_t w;
};

static pd_status_t pd_client_open(const char *endpoint, const char *server_public_z85,
                                  const char *client_secret_z85, pd_client_t **client_p)
{
    pd_status_t st = PD_ERR_IO;
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
    /* A routing id of its own, kept across reconnects: a restarted router can still
     * reach it (ids starting with a zero byte are the router's to make). */
    unsigned char rid[16];
    if (getrandom(rid, sizeof(rid), 0) != (ssize_t)sizeof(rid)) {
        uint64_t t = pd_time_now_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(rid, &t, sizeof(t));
        memcpy(rid + 8, &c, sizeof(c) < 8 ? sizeof(c) : 8);
    }
    rid[0] |= 0x80;
    zmq_setsockopt(c->sock, ZMQ_ROUTING_ID, rid, sizeof(rid));
    if (server_public_z85 != NULL) {
        char public_z85[41];
        if (!zmq_has("curve")) {
            st = PD_ERR_UNSUPPORTED;
            goto err;
        }
        if (strlen(server_public_z85) != 40 || strlen(client_secret_z85) != 40 ||
            zmq_curve_public(public_z85, client_secret_z85) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server_public_z85, 41) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, public_z85, 41) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, client_secret_z85, 41) != 0) {
            pd_log_error("CURVE keys: %s", zmq_strerror(zmq_errno()));
            st = PD_ERR_INVALID_PARAM;
            goto err;
        }
    }
    if (zmq_connect(c->sock, endpoint) != 0) {
        pd_log_error("connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto err;
    }
    *client_p = c;
    return PD_OK;

err:
    pd_client_destroy(&c);
    return st;
}

pd_status_t pd_client_connect(const char *endpoint, pd_client_t **client_p)
{
    return pd_client_open(endpoint, NULL, NULL, client_p);
}

pd_status_t pd_client_connect_curve(const char *endpoint, const char *server_public_z85,
                                    const char *client_secret_z85, pd_client_t **client_p)
{
    if (server_public_z85 == NULL || client_secret_z85 == NULL)
        return PD_ERR_INVALID_PARAM;
    return pd_client_open(endpoint, server_public_z85, client_secret_z85, client_p);
}

pd_status_t pd_client_read_key_file(const char *path, char *key_z85)
{
    char word[128], key[41] = "";
    bool after_secret = false, found = false;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return PD_ERR_IO;
    /* A bare key, or `pd-router --keygen` output ("public K" / "secret K"): the secret. */
    while (fscanf(f, "%127s", word) == 1) {
        bool is_key = strlen(word) == 40;
        if (is_key && (after_secret || !found)) {
            memcpy(key, word, 41);
            found = true;
            if (after_secret)
                break;
        }
        after_secret = strcmp(word, "secret") == 0;
    }
    fclose(f);
    if (!found)
        return PD_ERR_FORMAT;
    memcpy(key_z85, key, 41);
    return PD_OK;
}

pd_status_t pd_client_connect_opt(const char *prog, const char *endpoint,
                                  const char *server_public_z85, const char *secret_file,
                                  pd_client_t **client_p)
{
    char secret[41];
    pd_status_t st;
    if (server_public_z85 == NULL)
        return pd_client_connect(endpoint, client_p);
    if (secret_file == NULL) {
        fprintf(stderr, "%s: --curve-server-key needs --curve-secret-file\n", prog);
        return PD_ERR_INVALID_PARAM;
    }
    st = pd_client_read_key_file(secret_file, secret);
    if (st != PD_OK) {
        fprintf(stderr, "%s: %s: %s\n", prog, secret_file,
                st == PD_ERR_IO ? "cannot read" : "not a 40-character Z85 key");
        return st;
    }
    st = pd_client_connect_curve(endpoint, server_public_z85, secret, client_p);
    memset(secret, 0, sizeof(secret));
    if (st != PD_OK)
        fprintf(stderr, "%s: CURVE connection to %s: %s\n", prog, endpoint, pd_status_str(st));
    return st;
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
