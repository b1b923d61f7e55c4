/* Authentication: CurveZMQ with one ZAP handler served from the router's own loop.
 *
 * Clients (--client-keys): only the public keys listed may connect; the tenant of every
 * request is the name listed with its key (ZAP user id), never the body's.
 * Workers (--worker-keys): only the listed keys may connect to the worker socket, so an
 * unauthenticated peer never completes a handshake and is sent nothing; the ZAP user id is
 * the worker's key, which the registry binds to the worker id (registry.c). The router's
 * SUB to each worker's KV events is a CURVE client with the router's own key pair, and
 * the worker admits only that key (docs/ROUTER.md, Authentication). */
#include "router_int.h"

#include "pd/client.h"
#include "pd/log.h"
#include "pd/zap.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The router's secret key from path (a bare key or `--keygen` output). */
static pd_status_t pd_router_auth_read_key(const char *path, char *key)
{
    pd_status_t st = pd_client_read_key_file(path, key);
    if (st != PD_OK)
        pd_log_error("curve secret %s: %s", path,
                     st == PD_ERR_IO ? strerror(errno) : "no 40-character Z85 key");
    return st;
}

/* One line of a key file (lineno for messages): PD_OK (a blank line adds nothing), or an
 * error already logged. */
typedef pd_status_t (*pd_router_auth_line_fn_t)(pd_router_t *r, const char *path, unsigned lineno,
                                                const char *line);

/* Read the key file at path, named `what` in messages ("client keys"), handing parse
 * each line that is not a comment; *n_keys (what parse adds to) must not end at 0. */
static pd_status_t pd_router_auth_read_file(pd_router_t *r, const char *path, const char *what,
                                            pd_router_auth_line_fn_t parse, const uint32_t *n_keys)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        pd_log_error("%s %s: %s", what, path, strerror(errno));
        return PD_ERR_IO;
    }
    char line[512];
    unsigned lineno = 0;
    pd_status_t st = PD_OK;
    while (st == PD_OK && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        /* Z85 keys may hold '#': only a line starting with it is a comment. */
        const char *first = line + strspn(line, " \t");
        if (*first != '#')
            st = parse(r, path, lineno, line);
    }
    fclose(f);
    if (st == PD_OK && *n_keys == 0) {
        pd_log_error("%s %s: no key listed", what, path);
        st = PD_ERR_FORMAT;
    }
    return st;
}

/* A "TENANT Z85PUBLICKEY [admin] [gateway]" line. */
static pd_status_t pd_router_auth_client_line(pd_router_t *r, const char *path, unsigned lineno,
                                              const char *line)
{
    char tenant[PD_PROTO_NAME_CAP + 1], key[128], role[2][16], extra[8];
    int n = sscanf(line, "%65s %127s %15s %15s %7s", tenant, key, role[0], role[1], extra);
    if (n <= 0)
        return PD_OK;
    bool admin = false, gateway = false, roles_ok = n <= 4;
    for (int i = 0; i + 2 < n && i < 2; i++) {
        admin |= strcmp(role[i], "admin") == 0;
        gateway |= strcmp(role[i], "gateway") == 0;
        roles_ok &= strcmp(role[i], "admin") == 0 || strcmp(role[i], "gateway") == 0;
    }
    if (n < 2 || !roles_ok || strlen(tenant) >= PD_PROTO_NAME_CAP ||
        strlen(key) != PD_ROUTER_Z85_KEY_CHARS) {
        pd_log_error("client keys %s:%u: expected 'TENANT Z85KEY [admin] [gateway]' (tenant "
                     "<= 64 bytes, key 40 characters)",
                     path, lineno);
        return PD_ERR_FORMAT;
    }
    if (r->n_client_keys == PD_ROUTER_MAX_CLIENT_KEYS) {
        pd_log_error("client keys %s: more than %d keys", path, PD_ROUTER_MAX_CLIENT_KEYS);
        return PD_ERR_LIMIT;
    }
    pd_router_client_key_t *ck = &r->client_keys[r->n_client_keys];
    if (zmq_z85_decode(ck->key, key) == NULL) {
        pd_log_error("client keys %s:%u: not a Z85 key", path, lineno);
        return PD_ERR_FORMAT;
    }
    memcpy(ck->tenant, tenant, strlen(tenant) + 1); /* checked above: it fits */
    ck->admin = admin;
    ck->gateway = gateway;
    r->n_client_keys++;
    return PD_OK;
}

/* A "[WORKER_ID] Z85PUBLICKEY" line. */
static pd_status_t pd_router_auth_worker_line(pd_router_t *r, const char *path, unsigned lineno,
                                              const char *line)
{
    char word[2][128], extra[8];
    int n = sscanf(line, "%127s %127s %7s", word[0], word[1], extra);
    if (n <= 0)
        return PD_OK;
    const char *id = n == 2 ? word[0] : "";
    const char *key = word[n == 2 ? 1 : 0];
    if (n > 2 || strlen(id) >= PD_PROTO_NAME_CAP || strlen(key) != PD_ROUTER_Z85_KEY_CHARS) {
        pd_log_error("worker keys %s:%u: expected '[WORKER_ID] Z85KEY' (id < 64 bytes, key "
                     "40 characters)",
                     path, lineno);
        return PD_ERR_FORMAT;
    }
    if (r->n_worker_keys == PD_ROUTER_MAX_WORKER_KEYS) {
        pd_log_error("worker keys %s: more than %d keys", path, PD_ROUTER_MAX_WORKER_KEYS);
        return PD_ERR_LIMIT;
    }
    pd_router_worker_key_t *wk = &r->worker_keys[r->n_worker_keys];
    if (zmq_z85_decode(wk->key, key) == NULL) {
        pd_log_error("worker keys %s:%u: not a Z85 key", path, lineno);
        return PD_ERR_FORMAT;
    }
    memcpy(wk->id, id, strlen(id) + 1);
    r->n_worker_keys++;
    return PD_OK;
}

const pd_router_worker_key_t *pd_router_auth_worker_key(const pd_router_t *r, const char *key_z85)
{
    uint8_t key[32];
    if (key_z85 == NULL || strlen(key_z85) != PD_ROUTER_Z85_KEY_CHARS ||
        zmq_z85_decode(key, key_z85) == NULL)
        return NULL;
    for (uint32_t i = 0; i < r->n_worker_keys; i++)
        if (memcmp(r->worker_keys[i].key, key, sizeof(key)) == 0)
            return &r->worker_keys[i];
    return NULL;
}

static pd_status_t pd_router_auth_server(void *sock, const char *secret, const char *domain)
{
    int server = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &server, sizeof(server)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, PD_ROUTER_Z85_KEY_CHARS + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0) {
        pd_log_error("CURVE server: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_router_auth_setup(pd_router_t *r)
{
    const pd_router_config_t *c = &r->cfg;
    char secret[PD_ROUTER_Z85_KEY_CHARS + 1], public_key[PD_ROUTER_Z85_KEY_CHARS + 1];
    bool clients = c->client_keys_file[0] != '\0', workers = c->worker_keys_file[0] != '\0';
    pd_status_t st;

    if (c->curve_secret_file[0] == '\0' && !clients && !workers) {
        pd_log_info("worker socket without authentication (no --worker-keys): any process "
                    "that reaches it can join as a worker");
        return PD_OK;
    }
    if (c->curve_secret_file[0] == '\0' || (!clients && !workers)) {
        pd_log_error("authentication needs --curve-secret-file with --client-keys and/or "
                     "--worker-keys");
        return PD_ERR_INVALID_PARAM;
    }
    if (!zmq_has("curve")) {
        pd_log_error("authentication is configured but this libzmq has no CURVE");
        return PD_ERR_UNSUPPORTED;
    }
    r->worker_keys = calloc(PD_ROUTER_MAX_WORKER_KEYS, sizeof(*r->worker_keys));
    if (r->worker_keys == NULL)
        return PD_ERR_NO_MEMORY;
    if ((st = pd_router_auth_read_key(c->curve_secret_file, secret)) != PD_OK ||
        (clients &&
         (st = pd_router_auth_read_file(r, c->client_keys_file, "client keys",
                                        pd_router_auth_client_line, &r->n_client_keys)) != PD_OK) ||
        (workers &&
         (st = pd_router_auth_read_file(r, c->worker_keys_file, "worker keys",
                                        pd_router_auth_worker_line, &r->n_worker_keys)) != PD_OK))
        goto out;
    if (zmq_curve_public(public_key, secret) != 0) {
        pd_log_error("curve secret %s: not a CURVE secret key", c->curve_secret_file);
        st = PD_ERR_FORMAT;
        goto out;
    }

    /* The handler is bound before any socket it protects is, so no handshake can happen
     * without it (CurveZMQ with no ZAP handler would accept any peer). */
    st = PD_ERR_IO;
    r->zap_sock = pd_zap_bind(r->ctx);
    if (r->zap_sock == NULL)
        goto out;
    if (clients &&
        (st = pd_router_auth_server(r->client_sock, secret, PD_ROUTER_ZAP_CLIENTS)) != PD_OK)
        goto out;
    if (workers) {
        if ((st = pd_router_auth_server(r->worker_sock, secret, PD_ROUTER_ZAP_WORKERS)) != PD_OK)
            goto out;
        /* Routing ids are the router's own under worker auth: a peer that names itself
         * after a worker must not take that worker's route over (workers then send no
         * ZMQ_ROUTING_ID; a restarted one registers again under its id and key). */
        int handover = 0;
        zmq_setsockopt(r->worker_sock, ZMQ_ROUTER_HANDOVER, &handover, sizeof(handover));
        /* The KV-event SUB: a CURVE client whose server key is set per worker at connect. */
        if (zmq_setsockopt(r->event_sock, ZMQ_CURVE_PUBLICKEY, public_key, 41) != 0 ||
            zmq_setsockopt(r->event_sock, ZMQ_CURVE_SECRETKEY, secret, 41) != 0) {
            pd_log_error("CURVE client keys on the event socket: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
    }
    r->auth = clients;
    r->worker_auth = workers;
    st = PD_OK;
    pd_log_info("authentication on: %u client keys%s, %u worker keys%s", r->n_client_keys,
                clients ? "" : " (clients unauthenticated)", r->n_worker_keys,
                workers ? "" : " (workers unauthenticated)");
out:
    memset(secret, 0, sizeof(secret));
    return st;
}

/* A client request: the tenant listed with the key as user id, its roles as metadata. */
static void pd_router_auth_client(pd_router_t *r, const pd_zap_request_t *q)
{
    const pd_router_client_key_t *ck = NULL;
    for (uint32_t i = 0; q->curve && i < r->n_client_keys; i++) {
        if (memcmp(r->client_keys[i].key, q->key, 32) == 0) {
            ck = &r->client_keys[i];
            break;
        }
    }
    if (ck == NULL) {
        pd_log_warn("client handshake refused: %s", q->curve ? "unknown key" : "not CURVE");
        pd_zap_reply(r->zap_sock, q, false, NULL, NULL, 0);
        return;
    }
    /* Metadata (ZMTP properties: name length, name, 4-byte big-endian value length,
     * value): the key's roles, which every message of the connection then carries. */
    char roles[32];
    snprintf(roles, sizeof(roles), "%s%s%s", ck->admin ? "admin" : "",
             ck->admin && ck->gateway ? "," : "", ck->gateway ? "gateway" : "");
    unsigned char meta[64];
    size_t name_len = strlen(PD_ROUTER_ROLES_PROPERTY), value_len = strlen(roles);
    meta[0] = (unsigned char)name_len;
    memcpy(meta + 1, PD_ROUTER_ROLES_PROPERTY, name_len);
    for (int b = 0; b < 4; b++)
        meta[1 + name_len + b] = (unsigned char)(value_len >> (8 * (3 - b)));
    memcpy(meta + 5 + name_len, roles, value_len);
    pd_zap_reply(r->zap_sock, q, true, ck->tenant, meta, 5 + name_len + value_len);
}

/* A worker request: any listed key; the user id is the key itself, for the registry. */
static void pd_router_auth_worker(pd_router_t *r, const pd_zap_request_t *q)
{
    char key[PD_ROUTER_Z85_KEY_CHARS + 1] = "";
    if (q->curve)
        pd_zap_key_text(q->key, key);
    if (pd_router_auth_worker_key(r, key) == NULL) {
        pd_log_warn("worker handshake refused: %s",
                    q->curve ? "key not in --worker-keys" : "not CURVE");
        pd_zap_reply(r->zap_sock, q, false, NULL, NULL, 0);
        return;
    }
    pd_zap_reply(r->zap_sock, q, true, key, NULL, 0);
}

void pd_router_auth_serve(pd_router_t *r)
{
    pd_zap_request_t q;
    for (int k = 0; k < 64 && pd_zap_recv(r->zap_sock, &q); k++) {
        if (r->auth && strcmp(q.domain, PD_ROUTER_ZAP_CLIENTS) == 0)
            pd_router_auth_client(r, &q);
        else if (r->worker_auth && strcmp(q.domain, PD_ROUTER_ZAP_WORKERS) == 0)
            pd_router_auth_worker(r, &q);
        else
            pd_zap_reply(r->zap_sock, &q, false, NULL, NULL, 0);
    }
}
