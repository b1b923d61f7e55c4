/* Client authentication: CurveZMQ on the client socket with a ZAP handler served from the
 * router's own loop. Only the public keys listed in --client-keys may connect; the tenant
 * of every request is the name listed with its key (ZAP user id), never the body's. */
#include "router_int.h"

#include "pd/client.h"
#include "pd/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PD_ROUTER_ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* The router's secret key from path (a bare key or `--keygen` output). */
static pd_status_t pd_router_auth_read_key(const char *path, char *key)
{
    pd_status_t st = pd_client_read_key_file(path, key);
    if (st != PD_OK)
        pd_log_error("curve secret %s: %s", path,
                     st == PD_ERR_IO ? strerror(errno) : "no 40-character Z85 key");
    return st;
}

/* Parse "TENANT Z85PUBLICKEY [admin] [gateway]" lines (a line starting with '#' is a
 * comment). */
static pd_status_t pd_router_auth_read_clients(pd_router_t *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        pd_log_error("client keys %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    char line[512];
    unsigned lineno = 0;
    pd_status_t st = PD_OK;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        /* Z85 keys may hold '#': only a line starting with it is a comment. */
        const char *first = line + strspn(line, " \t");
        if (*first == '#')
            continue;
        char tenant[PD_PROTO_NAME_CAP + 1], key[128], role[2][16], extra[8];
        int n = sscanf(line, "%65s %127s %15s %15s %7s", tenant, key, role[0], role[1], extra);
        if (n <= 0)
            continue;
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
            st = PD_ERR_FORMAT;
            break;
        }
        if (r->n_client_keys == PD_ROUTER_MAX_CLIENT_KEYS) {
            pd_log_error("client keys %s: more than %d keys", path, PD_ROUTER_MAX_CLIENT_KEYS);
            st = PD_ERR_LIMIT;
            break;
        }
        pd_router_client_key_t *ck = &r->client_keys[r->n_client_keys];
        if (zmq_z85_decode(ck->key, key) == NULL) {
            pd_log_error("client keys %s:%u: not a Z85 key", path, lineno);
            st = PD_ERR_FORMAT;
            break;
        }
        memcpy(ck->tenant, tenant, strlen(tenant) + 1); /* checked above: it fits */
        ck->admin = admin;
        ck->gateway = gateway;
        r->n_client_keys++;
    }
    fclose(f);
    if (st == PD_OK && r->n_client_keys == 0) {
        pd_log_error("client keys %s: no key listed", path);
        st = PD_ERR_FORMAT;
    }
    return st;
}

pd_status_t pd_router_auth_setup(pd_router_t *r)
{
    const pd_router_config_t *c = &r->cfg;
    char secret[PD_ROUTER_Z85_KEY_CHARS + 1];
    pd_status_t st;

    if (c->curve_secret_file[0] == '\0' && c->client_keys_file[0] == '\0')
        return PD_OK;
    if (c->curve_secret_file[0] == '\0' || c->client_keys_file[0] == '\0') {
        pd_log_error("client authentication needs both --curve-secret-file and --client-keys");
        return PD_ERR_INVALID_PARAM;
    }
    if (!zmq_has("curve")) {
        pd_log_error("client authentication is configured but this libzmq has no CURVE");
        return PD_ERR_UNSUPPORTED;
    }
    if ((st = pd_router_auth_read_key(c->curve_secret_file, secret)) != PD_OK ||
        (st = pd_router_auth_read_clients(r, c->client_keys_file)) != PD_OK)
        return st;

    /* The handler is bound before the client socket is, so no handshake can happen
     * without it (CurveZMQ with no ZAP handler would accept any client). */
    r->zap_sock = zmq_socket(r->ctx, ZMQ_REP);
    if (r->zap_sock == NULL || zmq_bind(r->zap_sock, PD_ROUTER_ZAP_ENDPOINT) != 0) {
        pd_log_error("ZAP handler: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    int linger = 0, server = 1;
    int64_t max_frame = 4096; /* ZAP frames are short: version, ids, a 32-byte key */
    zmq_setsockopt(r->zap_sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(r->zap_sock, ZMQ_MAXMSGSIZE, &max_frame, sizeof(max_frame));
    if (zmq_setsockopt(r->client_sock, ZMQ_CURVE_SERVER, &server, sizeof(server)) != 0 ||
        zmq_setsockopt(r->client_sock, ZMQ_CURVE_SECRETKEY, secret, PD_ROUTER_Z85_KEY_CHARS + 1) !=
            0 ||
        zmq_setsockopt(r->client_sock, ZMQ_ZAP_DOMAIN, "pdkv", 4) != 0) {
        pd_log_error("CURVE server: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    memset(secret, 0, sizeof(secret));
    r->auth = true;
    pd_log_info("client authentication on: %u keys", r->n_client_keys);
    return PD_OK;
}

/* One ZAP request (RFC 27): version, request id, domain, address, identity, mechanism,
 * credentials; answered with version, request id, status code, status text, user id,
 * metadata. */
void pd_router_auth_serve(pd_router_t *r)
{
    for (int k = 0; k < 64; k++) {
        zmq_msg_t parts[7];
        int n = 0;
        bool got = false, more = true;
        while (more) {
            zmq_msg_t p;
            zmq_msg_init(&p);
            if (zmq_msg_recv(&p, r->zap_sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&p);
                break;
            }
            got = true;
            more = zmq_msg_more(&p);
            if (n < 7) {
                zmq_msg_init(&parts[n]);
                zmq_msg_move(&parts[n++], &p);
            }
            zmq_msg_close(&p);
        }
        if (!got)
            return;
        const char *code = "400", *text = "unknown key";
        const char *user = "";
        const pd_router_client_key_t *ck = NULL;
        bool curve = n >= 7 && zmq_msg_size(&parts[5]) == 5 &&
                     memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0;
        if (curve && zmq_msg_size(&parts[6]) == 32) {
            for (uint32_t i = 0; i < r->n_client_keys; i++) {
                if (memcmp(r->client_keys[i].key, zmq_msg_data(&parts[6]), 32) == 0) {
                    code = "200";
                    text = "OK";
                    user = r->client_keys[i].tenant;
                    ck = &r->client_keys[i];
                    break;
                }
            }
        }
        if (strcmp(code, "200") != 0)
            pd_log_warn("client handshake refused: %s", curve ? text : "not CURVE");
        zmq_send(r->zap_sock, "1.0", 3, ZMQ_SNDMORE);
        if (n >= 2)
            zmq_send(r->zap_sock, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), ZMQ_SNDMORE);
        else
            zmq_send(r->zap_sock, "", 0, ZMQ_SNDMORE);
        zmq_send(r->zap_sock, code, 3, ZMQ_SNDMORE);
        zmq_send(r->zap_sock, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(r->zap_sock, user, strlen(user), ZMQ_SNDMORE);
        /* Metadata (ZMTP properties: name length, name, 4-byte big-endian value length,
         * value): the key's roles, which every message of the connection then carries. */
        char roles[32] = "";
        if (ck != NULL)
            snprintf(roles, sizeof(roles), "%s%s%s", ck->admin ? "admin" : "",
                     ck->admin && ck->gateway ? "," : "", ck->gateway ? "gateway" : "");
        unsigned char meta[64];
        size_t name_len = strlen(PD_ROUTER_ROLES_PROPERTY), value_len = strlen(roles);
        meta[0] = (unsigned char)name_len;
        memcpy(meta + 1, PD_ROUTER_ROLES_PROPERTY, name_len);
        for (int b = 0; b < 4; b++)
            meta[1 + name_len + b] = (unsigned char)(value_len >> (8 * (3 - b)));
        memcpy(meta + 5 + name_len, roles, value_len);
        zmq_send(r->zap_sock, meta, ck != NULL ? 5 + name_len + value_len : 0, 0);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
}
