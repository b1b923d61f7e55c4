/* A generation's life in the gateway, from the checked request to its terminal message:
 * admission (router reachable, workers registered, the key's limits), the `generate`
 * sent with token ids, tokens turned into text and stream events, the terminal `done` or
 * `error` turned into the last events or the whole reply, and the cancel sent when the
 * client leaves first (EPOLLRDHUP on its socket, or libmicrohttpd giving up on it).
 *
 * Every request ends exactly once: `terminal` is set by the first of done, error, stop
 * string, deadline or hang-up, and nothing after it changes the response. */
#include "gw_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

/* epoll tags of the request sockets: the request's seq with the top bit set. */
#define PD_GW_EPOLL_REQ_BIT (1ull << 63)

void pd_gw_req_suspend(pd_gw_req_t *req)
{
    if (req->suspended)
        return;
    MHD_suspend_connection(req->conn);
    req->suspended = true;
    req->gw->n_suspended++;
}

void pd_gw_req_wake(pd_gw_req_t *req)
{
    if (!req->suspended)
        return;
    req->suspended = false;
    req->gw->n_suspended--;
    req->gw->n_resumed++;
    MHD_resume_connection(req->conn);
}

static void pd_gw_gen_watch(pd_gw_req_t *req)
{
    if (req->c != NULL && req->c->watched) {
        req->c->req = req; /* the connection's own watch reports the hang-up */
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = req->seq | PD_GW_EPOLL_REQ_BIT};
    if (epoll_ctl(req->gw->epfd, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0)
        req->fd = ci->connect_fd;
}

static void pd_gw_gen_unwatch(pd_gw_req_t *req)
{
    if (req->c != NULL && req->c->req == req)
        req->c->req = NULL;
    if (req->fd < 0)
        return;
    epoll_ctl(req->gw->epfd, EPOLL_CTL_DEL, req->fd, NULL);
    req->fd = -1;
}

/* 64 bits of a per-process generator, for requests that name no seed (splitmix64). */
static uint64_t pd_gw_gen_seed(pd_gw_t *gw)
{
    uint64_t z = (gw->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

pd_status_t pd_gw_gen_parse(pd_gw_req_t *req, pd_gw_err_t *err)
{
    pd_gw_t *gw = req->gw;
    static const pd_gw_api_ops_t *const ops[] = {
        [PD_GW_ROUTE_COMPLETIONS] = &pd_gw_openai_completions_ops,
        [PD_GW_ROUTE_CHAT] = &pd_gw_openai_chat_ops,
        [PD_GW_ROUTE_MESSAGES] = &pd_gw_anthropic_ops,
    };
    req->ops = ops[req->route];
    req->api = req->route == PD_GW_ROUTE_COMPLETIONS ? PD_GW_API_COMPLETIONS
               : req->route == PD_GW_ROUTE_CHAT      ? PD_GW_API_CHAT
                                                     : PD_GW_API_MESSAGES;
    req->cache.mode = PD_PROTO_CACHE_AUTO;
    pd_gw_text_init(&req->text, gw->tok, -1);

    json_error_t jerr;
    json_t *body = json_loadb(req->body.data != NULL ? pd_gw_buf_data(&req->body) : "",
                              req->body.len, JSON_REJECT_DUPLICATES, &jerr);
    pd_gw_buf_cleanup(&req->body);
    if (body == NULL || !json_is_object(body)) {
        if (body == NULL)
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
        else
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "the body must be a JSON object");
        json_decref(body);
        return PD_ERR_INVALID_PARAM;
    }
    pd_status_t st = req->ops->parse(req, body, err);
    json_decref(body);
    return st;
}

pd_status_t pd_gw_gen_start(pd_gw_req_t *req, pd_gw_err_t *err)
{
    pd_gw_t *gw = req->gw;
    pd_status_t st = pd_gw_gen_parse(req, err);
    if (st != PD_OK)
        return st;
    req->text.prev = req->prompt[req->n_prompt - 1];
    if (!req->seeded)
        req->sampling.seed = pd_gw_gen_seed(gw);

    uint64_t now = pd_time_now_ms();
    const pd_proto_stats_reply_t *c = &gw->cluster.s;
    if (!pd_gw_link_router_up(gw, now)) {
        pd_gw_err_set(err, 503, "server_error", "unavailable", "the router does not answer");
        err->retry_after_s = 1;
        return PD_ERR_UNREACHABLE;
    }
    if (c->n_prefill + c->n_both == 0 || c->n_decode + c->n_both == 0) {
        pd_gw_err_set(err, 503, "server_error", "unavailable",
                      "no %s worker is registered with the router",
                      c->n_prefill + c->n_both == 0 ? "prefill" : "decode");
        err->retry_after_s = 1;
        return PD_ERR_UNREACHABLE;
    }
    if (gw->n_inflight >= gw->cfg.max_inflight) {
        pd_gw_err_set(err, 429, "rate_limit_error", "overloaded",
                      "this gateway has %u requests in flight; retry later", gw->n_inflight);
        err->retry_after_s = 1;
        return PD_ERR_OVERLOADED;
    }
    if (req->key != NULL) {
        uint32_t retry_s = 0;
        if (pd_gw_key_admit(req->key, now, &retry_s) != PD_OK) {
            gw->metrics.key_rejections++;
            pd_gw_err_set(err, 429, "rate_limit_error", "rate_limit_exceeded",
                          "the key's request rate or concurrency limit is reached");
            err->retry_after_s = retry_s;
            return PD_ERR_OVERLOADED;
        }
        req->key_counted = true;
    }
    req->out = malloc(req->max_tokens * sizeof(*req->out));
    if (req->out == NULL) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    req->seq = ++gw->next_seq;
    snprintf(req->resp_id, sizeof(req->resp_id), "%s%s%" PRIx64,
             req->api == PD_GW_API_MESSAGES ? "msg_"
             : req->api == PD_GW_API_CHAT   ? "chatcmpl-"
                                            : "cmpl-",
             gw->id_prefix, req->seq);
    req->created = (int64_t)time(NULL);
    req->deadline_ms = now + gw->cfg.request_timeout_ms;
    if ((st = pd_gw_link_submit(gw, req, err)) != PD_OK)
        return st;
    pd_gw_gen_watch(req);
    return PD_OK;
}

/* The key's in-flight count drops as soon as the request ends, not when its last byte
 * is written. */
static void pd_gw_gen_release_key(pd_gw_req_t *req)
{
    if (req->key_counted) {
        pd_gw_key_release(req->key);
        req->key_counted = false;
    }
}

/* A piece of text (and the ids it came from) to the response. */
static void pd_gw_gen_emit(pd_gw_req_t *req, const pd_gw_buf_t *delta, const int32_t *ids,
                           uint32_t n_ids)
{
    if (!req->stream) {
        pd_gw_buf_append(&req->all_text, pd_gw_buf_data(delta), delta->len);
        return;
    }
    if (!req->started) {
        req->ops->stream_start(req, &req->sse);
        req->started = true;
    }
    if (delta->len > 0 || (req->return_token_ids && n_ids > 0))
        req->ops->stream_delta(req, delta->len ? pd_gw_buf_data(delta) : "", delta->len, ids, n_ids,
                               &req->sse);
}

static void pd_gw_gen_push(pd_gw_req_t *req, int32_t token)
{
    pd_gw_buf_t delta = {0};
    req->out[req->n_out++] = token;
    if (pd_gw_text_push(&req->text, token, &delta)) {
        req->stopped = true;
        req->n_counted = req->n_out;
    }
    pd_gw_gen_emit(req, &delta, &req->out[req->n_out - 1], 1);
    pd_gw_buf_cleanup(&delta);
}

/* The end: flush the text, account, write the last events or the whole reply. */
static void pd_gw_gen_finish(pd_gw_req_t *req)
{
    pd_gw_t *gw = req->gw;
    pd_gw_metrics_t *m = &gw->metrics;
    req->terminal = true;
    pd_gw_gen_unwatch(req);
    pd_gw_gen_release_key(req);
    if (!req->stopped) {
        pd_gw_buf_t delta = {0};
        pd_gw_text_finish(&req->text, &delta);
        pd_gw_gen_emit(req, &delta, NULL, 0);
        pd_gw_buf_cleanup(&delta);
    }
    uint64_t now = pd_time_now_ns();
    uint32_t n = req->stopped ? req->n_counted : req->n_out;
    pd_gw_histogram_observe(&m->e2e, pd_gw_latency_bounds, (double)(now - req->arrival_ns) / 1e9);
    if (n > 1 && req->last_ns > req->first_ns)
        pd_gw_histogram_observe(&m->tpot, pd_gw_tpot_bounds,
                                (double)(req->last_ns - req->first_ns) / 1e9 / (n - 1));
    m->prompt_tokens += req->n_prompt;
    m->completion_tokens += n;
    m->cache_read_tokens += req->usage.cache_read_input_tokens;
    m->cache_write_tokens += req->usage.cache_creation_input_tokens;
    if (req->stream) {
        if (!req->started) {
            req->ops->stream_start(req, &req->sse);
            req->started = true;
        }
        req->ops->stream_finish(req, &req->sse);
        req->sse_done = true;
    } else {
        req->reply = req->ops->full(req);
        if (req->reply == NULL)
            pd_gw_err_set(&req->reply_err, 500, "server_error", NULL, "out of memory");
    }
    pd_gw_req_wake(req);
}

void pd_gw_req_on_token(pd_gw_req_t *req, uint32_t index, int32_t token)
{
    if (req->terminal || req->stopped || index != req->n_out || req->n_out >= req->max_tokens)
        return;
    uint64_t now = pd_time_now_ns();
    if (req->n_out == 0) {
        req->first_ns = now;
        pd_gw_histogram_observe(&req->gw->metrics.ttft, pd_gw_latency_bounds,
                                (double)(now - req->arrival_ns) / 1e9);
    }
    req->last_ns = now;
    pd_gw_gen_push(req, token);
    if (req->stopped) {
        /* A stop string ended the text: nothing more is needed from the cluster, whose
         * `done` (the answer to `stop`) brings the usage. */
        pd_gw_link_stop(req->gw, req);
    }
    if (req->stream)
        pd_gw_req_wake(req);
}

void pd_gw_req_on_done(pd_gw_req_t *req, const pd_proto_done_t *d)
{
    if (req->terminal)
        return;
    req->usage = d->usage;
    req->have_usage = true;
    req->finish = pd_proto_finish_name(d->finish_reason);

    /* Tokens the stream did not carry: a non-streaming request sees them only here, so
     * its TTFT and TPOT are the router's. */
    if (req->n_out == 0 && d->n_tokens > 0) {
        req->first_ns = req->arrival_ns + (uint64_t)(d->timings.ttft_ms * 1e6);
        req->last_ns = req->first_ns + (uint64_t)(d->timings.tpot_ms * 1e6) * (d->n_tokens - 1);
        pd_gw_histogram_observe(&req->gw->metrics.ttft, pd_gw_latency_bounds,
                                d->timings.ttft_ms / 1e3);
    }
    for (uint32_t i = req->n_out; i < d->n_tokens && i < req->max_tokens && !req->stopped; i++)
        pd_gw_gen_push(req, d->tokens[i]);
    if (req->stopped)
        req->finish = "stop";
    pd_gw_gen_finish(req);
}

void pd_gw_req_on_error(pd_gw_req_t *req, pd_status_t code, const char *message)
{
    if (req->terminal)
        return;
    req->terminal = true;
    pd_gw_gen_unwatch(req);
    pd_gw_gen_release_key(req);
    pd_gw_err_t err;
    pd_gw_err_from_status(code, message, &err);
    if (req->phase == PD_GW_PHASE_STREAMING) {
        req->ops->stream_error(req, &err, &req->sse);
        req->sse_done = true;
    } else {
        /* No header is out yet: the error gets its own HTTP status. */
        pd_gw_buf_consume(&req->sse, req->sse.len);
        req->reply_err = err;
    }
    pd_gw_req_wake(req);
}

void pd_gw_req_on_hangup(pd_gw_req_t *req)
{
    pd_gw_gen_unwatch(req);
    if (req->in_table) {
        pd_gw_link_cancel(req->gw, req);
        req->gw->metrics.disconnects++;
        pd_log_debug("%s: the client left; canceled", req->resp_id);
    }
    req->terminal = true;
    req->aborted = true;
    pd_gw_gen_release_key(req);
    pd_gw_req_wake(req);
}

void pd_gw_gen_end(pd_gw_req_t *req)
{
    pd_gw_gen_unwatch(req);
    if (req->in_table) {
        pd_gw_link_cancel(req->gw, req);
        req->gw->metrics.disconnects++;
    }
    if (req->suspended) {
        req->suspended = false;
        req->gw->n_suspended--;
    }
    pd_gw_gen_release_key(req);
    pd_gw_key_unref(&req->key);
    pd_gw_text_cleanup(&req->text);
    pd_gw_buf_cleanup(&req->body);
    pd_gw_buf_cleanup(&req->all_text);
    pd_gw_buf_cleanup(&req->sse);
    json_decref(req->reply);
    free(req->prompt);
    free(req->out);
}

/* epoll's tag for a request socket, and back. */
uint64_t pd_gw_gen_tag(uint64_t seq)
{
    return seq | PD_GW_EPOLL_REQ_BIT;
}

pd_gw_req_t *pd_gw_gen_from_tag(pd_gw_t *gw, uint64_t tag)
{
    if ((tag & PD_GW_EPOLL_REQ_BIT) == 0)
        return NULL;
    return pd_gw_req_find(gw, tag & ~PD_GW_EPOLL_REQ_BIT);
}
