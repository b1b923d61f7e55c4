/* ZAP requests and replies (RFC 27): version, request id, domain, address, identity,
 * mechanism, credentials; answered with version, request id, status code, status text,
 * user id, metadata. */
#include "pd/zap.h"

#include "pd/log.h"

#include <string.h>
#include <zmq.h>

#define PD_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define PD_ZAP_PARTS    7

void *pd_zap_bind(void *ctx)
{
    void *s = zmq_socket(ctx, ZMQ_REP);
    if (s == NULL || zmq_bind(s, PD_ZAP_ENDPOINT) != 0) {
        pd_log_error("ZAP handler: %s", zmq_strerror(zmq_errno()));
        if (s != NULL)
            zmq_close(s);
        return NULL;
    }
    int linger = 0;
    int64_t max_frame = 4096; /* ZAP frames are short: version, ids, a 32-byte key */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_frame, sizeof(max_frame));
    return s;
}

bool pd_zap_recv(void *sock, pd_zap_request_t *req)
{
    bool got = false, more = true;
    int n = 0;
    bool mech_curve = false;
    memset(req, 0, sizeof(*req));
    while (more) {
        zmq_msg_t p;
        zmq_msg_init(&p);
        if (zmq_msg_recv(&p, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&p);
            break;
        }
        got = true;
        more = zmq_msg_more(&p);
        const void *data = zmq_msg_data(&p);
        size_t size = zmq_msg_size(&p);
        if (n == 1 && size <= sizeof(req->request_id)) {
            memcpy(req->request_id, data, size);
            req->request_id_bytes = size;
        } else if (n == 2 && size < sizeof(req->domain)) {
            memcpy(req->domain, data, size);
            req->domain[size] = '\0';
        } else if (n == 5) {
            mech_curve = size == 5 && memcmp(data, "CURVE", 5) == 0;
        } else if (n == 6 && mech_curve && size == PD_ZAP_KEY_BYTES) {
            memcpy(req->key, data, PD_ZAP_KEY_BYTES);
            req->curve = true;
        }
        n++;
        zmq_msg_close(&p);
    }
    /* A request of any other shape keeps curve false: it is refused. */
    if (n != PD_ZAP_PARTS)
        req->curve = false;
    return got;
}

void pd_zap_reply(void *sock, const pd_zap_request_t *req, bool allowed, const char *user_id,
                  const void *metadata, size_t metadata_bytes)
{
    const char *code = allowed ? "200" : "400";
    const char *text = allowed ? "OK" : "unknown key";
    const char *user = allowed && user_id != NULL ? user_id : "";
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, req->request_id, req->request_id_bytes, ZMQ_SNDMORE);
    zmq_send(sock, code, 3, ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, metadata, allowed ? metadata_bytes : 0, 0);
}

void pd_zap_key_text(const uint8_t *key, char *out)
{
    if (zmq_z85_encode(out, key, PD_ZAP_KEY_BYTES) == NULL)
        out[0] = '\0';
}
