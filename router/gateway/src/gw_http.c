/* libmicrohttpd's side: routing, the request body (bounded), API keys, the simple
 * endpoints (/health, /ready, /metrics, /v1/models), error replies in each API's shape,
 * and the response of a generation once it is ready (a JSON body, or an SSE stream read
 * through a content reader that suspends the connection while no event is waiting).
 *
 * libmicrohttpd calls the access handler once when the headers are in, once per piece
 * of body, once more at the end of the body, and again after every resume of a
 * connection suspended in it. A response can only be queued from inside that handler,
 * so the router side (gw_gen.c) prepares replies and resumes; the handler queues them. */
#include "gw_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void pd_gw_err_set(pd_gw_err_t *err, unsigned status, const char *type, const char *code,
                   const char *fmt, ...)
{
    memset(err, 0, sizeof(*err));
    err->status = status;
    err->type = type;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void pd_gw_err_from_status(pd_status_t code, const char *message, pd_gw_err_t *err)
{
    const char *m = message != NULL && message[0] != '\0' ? message : pd_status_str(code);
    switch (code) {
    case PD_ERR_OVERLOADED:
        pd_gw_err_set(err, 429, "rate_limit_error", "overloaded", "the cluster is overloaded: %s",
                      m);
        err->retry_after_s = 1;
        break;
    case PD_ERR_UNREACHABLE:
    case PD_ERR_PEER:
    case PD_ERR_NO_RESOURCE:
    case PD_ERR_CANCELED:
        pd_gw_err_set(err, 503, "server_error", "unavailable", "%s", m);
        err->retry_after_s = 1;
        break;
    case PD_ERR_TIMEOUT:
        pd_gw_err_set(err, 504, "timeout_error", "timeout", "%s", m);
        break;
    case PD_ERR_LIMIT:
        pd_gw_err_set(err, 413, "invalid_request_error", "request_too_large", "%s", m);
        break;
    case PD_ERR_CONTEXT:
        pd_gw_err_set(err, 400, "invalid_request_error", "context_length_exceeded", "%s", m);
        break;
    case PD_ERR_PROTO:
    case PD_ERR_INVALID_PARAM:
    case PD_ERR_OUT_OF_RANGE:
        pd_gw_err_set(err, 400, "invalid_request_error", NULL, "%s", m);
        break;
    default:
        pd_gw_err_set(err, 500, "server_error", NULL, "%s: %s", pd_status_name(code), m);
        break;
    }
}

static pd_gw_route_t pd_gw_http_route(const char *url)
{
    static const struct {
        const char *path;
        pd_gw_route_t route;
    } routes[] = {
        {"/health", PD_GW_ROUTE_HEALTH},
        {"/ready", PD_GW_ROUTE_READY},
        {"/metrics", PD_GW_ROUTE_METRICS},
        {"/v1/models", PD_GW_ROUTE_MODELS},
        {"/v1/completions", PD_GW_ROUTE_COMPLETIONS},
        {"/v1/chat/completions", PD_GW_ROUTE_CHAT},
        {"/v1/messages", PD_GW_ROUTE_MESSAGES},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(url, routes[i].path) == 0)
            return routes[i].route;
    if (strncmp(url, "/v1/models/", 11) == 0)
        return PD_GW_ROUTE_MODELS;
    return PD_GW_ROUTE_OTHER;
}

static enum MHD_Result pd_gw_http_queue(pd_gw_req_t *req, unsigned status, const char *type,
                                        char *body, size_t len, uint32_t retry_after_s)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof(v), "%u", retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (req->resp_id[0] != '\0') {
        MHD_add_response_header(resp, "x-request-id", req->resp_id);
        if (req->api == PD_GW_API_MESSAGES)
            MHD_add_response_header(resp, "request-id", req->resp_id);
    }
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                req->route == PD_GW_ROUTE_COMPLETIONS ||
                                        req->route == PD_GW_ROUTE_CHAT ||
                                        req->route == PD_GW_ROUTE_MESSAGES
                                    ? "POST"
                                    : "GET");
    enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->status = status;
    req->phase = PD_GW_PHASE_ANSWERED;
    return ret;
}

/* Queue j (taken over) as the JSON response. */
static enum MHD_Result pd_gw_http_json(pd_gw_req_t *req, unsigned status, json_t *j,
                                       uint32_t retry_after_s)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL)
        return MHD_NO;
    return pd_gw_http_queue(req, status, "application/json", s, strlen(s), retry_after_s);
}

static enum MHD_Result pd_gw_http_error(pd_gw_req_t *req, const pd_gw_err_t *err)
{
    json_t *j = req->anthropic_shape ? pd_gw_anthropic_error(err) : pd_gw_openai_error(err);
    return pd_gw_http_json(req, err->status, j, err->retry_after_s);
}

/* The key of the request, when keys are configured: Authorization: Bearer K, x-api-key
 * (Anthropic) or api-key. PD_OK when it may go on. */
static bool pd_gw_http_auth(pd_gw_req_t *req, bool need_admin, pd_gw_err_t *err)
{
    pd_gw_t *gw = req->gw;
    if (gw->keys == NULL)
        return true;
    const char *secret = NULL;
    const char *auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)
        secret = auth + 7 + strspn(auth + 7, " ");
    if (secret == NULL)
        secret = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "x-api-key");
    if (secret == NULL)
        secret = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "api-key");
    if (secret == NULL || secret[0] == '\0') {
        pd_gw_err_set(err, 401, "invalid_request_error", "invalid_api_key",
                      "an API key is required (Authorization: Bearer KEY or x-api-key: KEY)");
        return false;
    }
    pd_gw_key_t *key = pd_gw_keys_find(gw->keys, secret, strlen(secret));
    if (key == NULL) {
        pd_gw_err_set(err, 401, "invalid_request_error", "invalid_api_key",
                      "the API key is not valid");
        return false;
    }
    if (need_admin && !key->admin) {
        pd_gw_err_set(err, 403, "permission_error", "forbidden",
                      "this endpoint needs an admin key");
        return false;
    }
    pd_gw_key_ref(key);
    req->key = key;
    snprintf(req->tenant, sizeof(req->tenant), "%s", key->tenant);
    return true;
}

static enum MHD_Result pd_gw_http_ready(pd_gw_req_t *req)
{
    pd_gw_t *gw = req->gw;
    const pd_proto_stats_reply_t *c = &gw->cluster.s;
    bool up = pd_gw_link_router_up(gw, pd_time_now_ms());
    bool prefill = c->n_prefill + c->n_both > 0, decode = c->n_decode + c->n_both > 0;
    bool ready = up && prefill && decode;
    json_t *j = json_pack("{s:s, s:b, s:{s:i, s:i, s:i}}", "status", ready ? "ready" : "not ready",
                          "router", up, "workers", "prefill", (json_int_t)c->n_prefill, "decode",
                          (json_int_t)c->n_decode, "both", (json_int_t)c->n_both);
    if (!ready)
        json_object_set_new(j, "reason",
                            json_string(!up        ? "the router does not answer"
                                        : !prefill ? "no prefill worker is registered"
                                                   : "no decode worker is registered"));
    return pd_gw_http_json(req, ready ? 200 : 503, j, 0);
}

static enum MHD_Result pd_gw_http_models(pd_gw_req_t *req, const char *url)
{
    pd_gw_t *gw = req->gw;
    const char *name = gw->cfg.model_name;
    if (strncmp(url, "/v1/models/", 11) == 0 && strcmp(url + 11, name) != 0) {
        pd_gw_err_t err;
        pd_gw_err_set(&err, 404, "invalid_request_error", "model_not_found",
                      "the model '%.100s' does not exist; this gateway serves '%s'", url + 11,
                      name);
        return pd_gw_http_error(req, &err);
    }
    json_t *model;
    if (req->anthropic_shape)
        model = json_pack("{s:s, s:s, s:s, s:s}", "type", "model", "id", name, "display_name", name,
                          "created_at", "1970-01-01T00:00:00Z");
    else
        model = json_pack("{s:s, s:s, s:i, s:s}", "id", name, "object", "model", "created", 0,
                          "owned_by", "pdkv");
    if (url[10] == '/')
        return pd_gw_http_json(req, 200, model, 0);
    json_t *list = req->anthropic_shape
                       ? json_pack("{s:[o], s:b, s:s, s:s}", "data", model, "has_more", 0,
                                   "first_id", name, "last_id", name)
                       : json_pack("{s:s, s:[o]}", "object", "list", "data", model);
    return pd_gw_http_json(req, 200, list, 0);
}

static enum MHD_Result pd_gw_http_handle(pd_gw_req_t *req, const char *url, const char *method)
{
    pd_gw_t *gw = req->gw;
    pd_gw_err_t err;
    bool post = req->route == PD_GW_ROUTE_COMPLETIONS || req->route == PD_GW_ROUTE_CHAT ||
                req->route == PD_GW_ROUTE_MESSAGES;
    if (req->route == PD_GW_ROUTE_OTHER) {
        pd_gw_err_set(&err, 404, "invalid_request_error", "not_found", "no such path: %.200s", url);
        return pd_gw_http_error(req, &err);
    }
    if (strcmp(method, post ? "POST" : "GET") != 0) {
        pd_gw_err_set(&err, 405, "invalid_request_error", "method_not_allowed", "%s takes %s",
                      pd_gw_route_name(req->route), post ? "POST" : "GET");
        return pd_gw_http_error(req, &err);
    }
    if (req->body_too_large) {
        pd_gw_err_set(&err, 413, "invalid_request_error", "request_too_large",
                      "the request body is larger than %u bytes", gw->cfg.max_body_bytes);
        return pd_gw_http_error(req, &err);
    }
    switch (req->route) {
    case PD_GW_ROUTE_HEALTH:
        return pd_gw_http_json(req, 200, json_pack("{s:s}", "status", "ok"), 0);
    case PD_GW_ROUTE_READY:
        return pd_gw_http_ready(req);
    case PD_GW_ROUTE_METRICS: {
        if (!pd_gw_http_auth(req, true, &err))
            return pd_gw_http_error(req, &err);
        size_t len = 0;
        char *text = pd_gw_metrics_render(gw, &len);
        if (text == NULL)
            return MHD_NO;
        return pd_gw_http_queue(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, 0);
    }
    case PD_GW_ROUTE_MODELS:
        if (!pd_gw_http_auth(req, false, &err))
            return pd_gw_http_error(req, &err);
        return pd_gw_http_models(req, url);
    default:
        break;
    }
    if (!pd_gw_http_auth(req, false, &err))
        return pd_gw_http_error(req, &err);
    if (pd_gw_gen_start(req, &err) != PD_OK)
        return pd_gw_http_error(req, &err);
    req->phase = PD_GW_PHASE_WAITING;
    pd_gw_req_suspend(req);
    return MHD_YES;
}

static ssize_t pd_gw_http_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    pd_gw_req_t *req = cls;
    if (req->aborted)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (req->sse.len > 0) {
        size_t n = req->sse.len < max ? req->sse.len : max;
        memcpy(buf, pd_gw_buf_data(&req->sse), n);
        pd_gw_buf_consume(&req->sse, n);
        return (ssize_t)n;
    }
    if (req->sse_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send: sleep until the router side has an event (it resumes us). */
    pd_gw_req_suspend(req);
    return 0;
}

/* The generation's response, once gw_gen.c has one: an SSE stream or a whole reply. */
static enum MHD_Result pd_gw_http_respond(pd_gw_req_t *req)
{
    if (req->aborted)
        return MHD_NO;
    if (req->reply != NULL) {
        json_t *j = req->reply;
        req->reply = NULL;
        return pd_gw_http_json(req, 200, j, 0);
    }
    if (req->reply_err.status != 0)
        return pd_gw_http_error(req, &req->reply_err);
    if (req->stream && (req->sse.len > 0 || req->sse_done)) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, pd_gw_http_read, req, NULL);
        if (resp == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        MHD_add_response_header(resp, "x-request-id", req->resp_id);
        if (req->api == PD_GW_API_MESSAGES)
            MHD_add_response_header(resp, "request-id", req->resp_id);
        enum MHD_Result ret = MHD_queue_response(req->conn, 200, resp);
        MHD_destroy_response(resp);
        req->status = 200;
        req->phase = PD_GW_PHASE_STREAMING;
        return ret;
    }
    pd_gw_req_suspend(req); /* woken before anything was ready */
    return MHD_YES;
}

enum MHD_Result pd_gw_http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    (void)version;
    pd_gw_t *gw = cls;
    pd_gw_req_t *req = *req_cls;
    if (req == NULL) {
        req = calloc(1, sizeof(*req));
        if (req == NULL)
            return MHD_NO;
        req->gw = gw;
        req->conn = conn;
        req->fd = -1;
        req->arrival_ns = pd_time_now_ns();
        req->route = pd_gw_http_route(url);
        req->anthropic_shape =
            req->route == PD_GW_ROUTE_MESSAGES ||
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "anthropic-version") != NULL;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        req->c = ci != NULL ? ci->socket_context : NULL;
        *req_cls = req;
        /* A declared body over the limit is refused before a byte of it is read. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > gw->cfg.max_body_bytes) {
            req->body_too_large = true;
            pd_gw_err_t err;
            pd_gw_err_set(&err, 413, "invalid_request_error", "request_too_large",
                          "the request body is larger than %u bytes", gw->cfg.max_body_bytes);
            return pd_gw_http_error(req, &err);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!req->body_too_large) {
            if (req->body.len + *upload_data_size > gw->cfg.max_body_bytes) {
                req->body_too_large = true; /* read on, keep nothing, answer 413 */
                pd_gw_buf_cleanup(&req->body);
            } else if (!pd_gw_buf_append(&req->body, upload_data, *upload_data_size)) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->phase == PD_GW_PHASE_READING) {
        if (req->c != NULL)
            req->c->read_deadline_ms = 0; /* the request is in: no read deadline now */
        return pd_gw_http_handle(req, url, method);
    }
    return pd_gw_http_respond(req);
}

void pd_gw_http_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                             enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    pd_gw_t *gw = cls;
    pd_gw_req_t *req = *req_cls;
    if (req == NULL)
        return;
    *req_cls = NULL;
    if (req->c != NULL)
        req->c->read_deadline_ms = pd_time_now_ms() + gw->cfg.read_timeout_ms;
    bool clean = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->aborted;
    pd_gw_metrics_count(&gw->metrics, req->route, clean ? req->status : 499);
    pd_gw_gen_end(req);
    free(req);
}
