/* A ZAP handler's two halves (ZeroMQ RFC 27), shared by pd-router and the workers: read
 * one request from the handler's REP socket and answer it. CurveZMQ with no handler bound
 * accepts any client that knows the server's public key, so every process that serves
 * CURVE binds one with pd_zap_bind before it binds the socket it protects. */
#ifndef PD_ZAP_H
#define PD_ZAP_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_ZAP_ID_CAP    256 /* request id and domain bytes kept */
#define PD_ZAP_Z85_CHARS 40  /* a CURVE key as Z85 text */
#define PD_ZAP_KEY_BYTES 32

typedef struct pd_zap_request {
    unsigned char request_id[PD_ZAP_ID_CAP]; /* echoed in the reply */
    size_t request_id_bytes;
    char domain[PD_ZAP_ID_CAP]; /* ZMQ_ZAP_DOMAIN of the socket being connected to */
    bool curve;                 /* mechanism CURVE with one 32-byte key */
    uint8_t key[PD_ZAP_KEY_BYTES];
} pd_zap_request_t;

/* Bind a REP socket in ctx (a zmq context) on the one ZAP endpoint of that context;
 * NULL (logged) when that fails. Close it with zmq_close. */
void *pd_zap_bind(void *ctx);

/* Read one waiting request from sock without blocking into req. Returns true when one
 * came (then it must be answered with pd_zap_reply), false when none waits. */
bool pd_zap_recv(void *sock, pd_zap_request_t *req);

/* Answer req: allowed or not, the user id every message of the connection will carry
 * (zmq_msg_gets "User-Id"; NULL: none) and ZMTP metadata (NULL/0: none). */
void pd_zap_reply(void *sock, const pd_zap_request_t *req, bool allowed, const char *user_id,
                  const void *metadata, size_t metadata_bytes);

/* Z85 text of a 32-byte key into out (41 bytes). */
void pd_zap_key_text(const uint8_t *key, char *out);

#endif
