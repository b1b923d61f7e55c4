/* A client of pd-router: one DEALER on the router's client socket, messages encoded and
 * decoded with pd/proto.h. Used by `pdctl submit` and `pdctl status`, and by tests. */
#ifndef PD_CLIENT_H
#define PD_CLIENT_H

#include "pd/proto.h"
#include "pd/status.h"

typedef struct pd_client pd_client_t;

/* Connect to the router's client endpoint (e.g. tcp://127.0.0.1:7100). Connecting does not
 * wait for the router; sends queue until it is there. */
PD_MUST_CHECK pd_status_t pd_client_connect(const char *endpoint, pd_client_t **client_p);

/* Connect with CurveZMQ: server_public_z85 is the router's public key, client_secret_z85
 * this client's secret key (its public key is derived), both 40-character Z85 strings.
 * PD_ERR_UNSUPPORTED when libzmq has no CURVE, PD_ERR_INVALID_PARAM for a bad key. */
PD_MUST_CHECK pd_status_t pd_client_connect_curve(const char *endpoint,
                                                  const char *server_public_z85,
                                                  const char *client_secret_z85,
                                                  pd_client_t **client_p);

/* Read a Z85 key (the first word of the file, 40 characters) into key_z85 (41 bytes).
 * PD_ERR_IO when the file cannot be read, PD_ERR_FORMAT for anything else in it. */
PD_MUST_CHECK pd_status_t pd_client_read_key_file(const char *path, char *key_z85);

/* Connect with or without CURVE: with when server_public_z85 is not NULL (then
 * secret_file names this client's secret key file). Reports problems on stderr with
 * prog as prefix. */
PD_MUST_CHECK pd_status_t pd_client_connect_opt(const char *prog, const char *endpoint,
                                                const char *server_public_z85,
                                                const char *secret_file, pd_client_t **client_p);

/* Close the socket and free the client; clears *client_p, accepts NULL. */
void pd_client_destroy(pd_client_t **client_p);

/* Encode and send one message. PD_ERR_INVALID_PARAM / PD_ERR_LIMIT from the encoder,
 * PD_ERR_IO when the socket refused it. */
PD_MUST_CHECK pd_status_t pd_client_send(pd_client_t *client, const pd_proto_msg_t *msg);

/* Wait up to timeout_ms (-1: forever) for one message from the router and decode it into
 * msg (free with pd_proto_msg_cleanup). PD_ERR_TIMEOUT when nothing came; a decode error
 * with fault (may be NULL) filled; PD_ERR_CANCELED when a signal interrupted the wait. */
PD_MUST_CHECK pd_status_t pd_client_recv(pd_client_t *client, int timeout_ms, pd_proto_msg_t *msg,
                                         pd_proto_fault_t *fault);

/* The DEALER socket, for callers that poll several sockets. */
void *pd_client_socket(pd_client_t *client);

#endif
