/* The gateway's side of the router: one DEALER on the router's client socket (CURVE when
 * configured), requests named "g<seq>", replies matched back by that id, a stats
 * request every --status-interval-ms whose reply feeds /ready and /metrics, and the
 * gateway's own deadline on every request. */
#include "gw_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The router counts as up while its last status reply is younger than this many status
 * periods (and at least 2 s, so a busy router is not declared gone at once). */
#define PD_GW_ROUTER_UP_PERIODS 3
#define PD_GW_ROUTER_UP_MIN_MS  2000

static uint32_t pd_gw_bucket(uint64_t seq)
{
    return (uint32_t)(seq & (PD_GW_REQ_BUCKETS - 1));
}

pd_gw_req_t *pd_gw_req_find(pd_gw_t *gw, uint64_t seq)
{
    for (pd_gw_req_t *q = gw->buckets[pd_gw_bucket(seq)]; q != NULL; q = q->next_hash)
        if (q->seq == seq)
            return q;
    return NULL;
}

void pd_gw_req_link(pd_gw_t *gw, pd_gw_req_t *req)
{
    uint32_t b = pd_gw_bucket(req->seq);
    req->next_hash = gw->buckets[b];
    gw->buckets[b] = req;
    req->in_table = true;
    gw->n_inflight++;
}

void pd_gw_req_unlink(pd_gw_t *gw, pd_gw_req_t *req)
{
    if (!req->in_table)
        return;
    pd_gw_req_t **pp = &gw->buckets[pd_gw_bucket(req->seq)];
    while (*pp != NULL && *pp != req)
        pp = &(*pp)->next_hash;
    if (*pp == req)
        *pp = req->next_hash;
    req->in_table = false;
    req->next_hash = NULL;
    gw->n_inflight--;
}

pd_status_t pd_gw_link_open(pd_gw_t *gw)
{
    const pd_gw_config_t *c = &gw->cfg;
    pd_status_t st = pd_client_connect_opt(
        "pd-gateway", c->router_endpoint, c->curve_server_key[0] ? c->curve_server_key : NULL,
        c->curve_secret_file[0] ? c->curve_secret_file : NULL, &gw->client);
    if (st != PD_OK)
        return st;
    gw->sock = pd_client_socket(gw->client);
    /* Replies of a busy cluster must not be dropped at the high-water mark. */
    int hwm = 100000;
    zmq_setsockopt(gw->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(gw->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    size_t n = sizeof(gw->zmq_fd);
    if (zmq_getsockopt(gw->sock, ZMQ_FD, &gw->zmq_fd, &n) != 0) {
        pd_log_error("ZMQ_FD: %s", zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    return PD_OK;
}

void pd_gw_link_close(pd_gw_t *gw)
{
    pd_client_destroy(&gw->client);
    gw->sock = NULL;
    free(gw->cluster.workers);
    gw->cluster.workers = NULL;
    gw->cluster.n_workers = 0;
}

bool pd_gw_link_router_up(const pd_gw_t *gw, uint64_t now_ms)
{
    uint64_t window = (uint64_t)gw->cfg.status_interval_ms * PD_GW_ROUTER_UP_PERIODS;
    if (window < PD_GW_ROUTER_UP_MIN_MS)
        window = PD_GW_ROUTER_UP_MIN_MS;
    return gw->cluster.have && now_ms < gw->cluster.at_ms + window;
}

/* Encode and send without blocking the loop. */
static pd_status_t pd_gw_link_send(pd_gw_t *gw, const pd_proto_msg_t *m)
{
    pd_mp_writer_reset(&gw->w);
    pd_status_t st = pd_proto_encode(m, &gw->w);
    if (st != PD_OK)
        return st;
    if (zmq_send(gw->sock, pd_mp_writer_data(&gw->w), pd_mp_writer_size(&gw->w), ZMQ_DONTWAIT) <
        0) {
        int e = zmq_errno();
        pd_log_warn("send %s: %s", pd_proto_type_name(m->type), zmq_strerror(e));
        return e == EAGAIN ? PD_ERR_OVERLOADED : PD_ERR_IO;
    }
    return PD_OK;
}

/* A request with no accepted this long is sent again, at most this often: the router may
 * have died with it unread (a router answers a request it has with another accepted and
 * runs it once). */
#define PD_GW_RESEND_MS   2000u
#define PD_GW_MAX_RESENDS 5u

static pd_status_t pd_gw_link_send_generate(pd_gw_t *gw, pd_gw_req_t *req)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_GENERATE;
    pd_proto_generate_t *g = &m.u.generate;
    snprintf(g->id, sizeof(g->id), "g%" PRIx64, req->seq);
    g->tokens = req->prompt;
    g->n_tokens = req->n_prompt;
    g->max_tokens = req->max_tokens;
    g->sampling = req->sampling;
    memcpy(g->tenant, req->tenant, sizeof(g->tenant));
    g->cache = req->cache;
    /* Without stop strings a non-streaming request needs no tokens on the wire; with
     * them the gateway must see each token to stop early. */
    g->stream = req->stream || req->text.n_stops > 0;
    req->sent_ms = pd_time_now_ms();
    return pd_gw_link_send(gw, &m);
}

pd_status_t pd_gw_link_submit(pd_gw_t *gw, pd_gw_req_t *req, pd_gw_err_t *err)
{
    pd_status_t st = pd_gw_link_send_generate(gw, req);
    if (st != PD_OK) {
        if (st == PD_ERR_OVERLOADED)
            pd_gw_err_set(err, 503, "server_error", "router_busy",
                          "the gateway cannot reach the router fast enough; retry later");
        else
            pd_gw_err_set(err, 500, "server_error", NULL, "could not send the request: %s",
                          pd_status_str(st));
        err->retry_after_s = st == PD_ERR_OVERLOADED ? 1 : 0;
        return st;
    }
    pd_gw_req_link(gw, req);
    return PD_OK;
}

void pd_gw_link_stop(pd_gw_t *gw, pd_gw_req_t *req)
{
    if (!req->in_table)
        return;
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_STOP;
    snprintf(m.u.stop.id, sizeof(m.u.stop.id), "g%" PRIx64, req->seq);
    if (pd_gw_link_send(gw, &m) != PD_OK) {
        /* The router will not hear it: end here, without the cluster's cache figures. */
        pd_gw_link_cancel(gw, req);
        pd_gw_req_on_error(req, PD_ERR_IO, "the request could not be stopped");
    }
}

void pd_gw_link_cancel(pd_gw_t *gw, pd_gw_req_t *req)
{
    if (!req->in_table)
        return;
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_CANCEL;
    snprintf(m.u.cancel.id, sizeof(m.u.cancel.id), "g%" PRIx64, req->seq);
    pd_gw_link_send(gw, &m);
    pd_gw_req_unlink(gw, req);
}

static void pd_gw_link_on_stats(pd_gw_t *gw, const pd_proto_stats_reply_t *s)
{
    pd_gw_cluster_t *c = &gw->cluster;
    pd_proto_stats_worker_t *copy = NULL;
    if (s->n_workers > 0) {
        copy = malloc(s->n_workers * sizeof(*copy));
        if (copy == NULL)
            return;
        memcpy(copy, s->workers, s->n_workers * sizeof(*copy));
    }
    free(c->workers);
    c->workers = copy;
    c->n_workers = s->n_workers;
    c->details = s->workers != NULL;
    c->s = *s;
    c->s.workers = NULL;
    c->have = true;
    c->at_ms = pd_time_now_ms();
    gw->status_pending = false;
}

/* The request a reply names, if it is still in flight here. */
static pd_gw_req_t *pd_gw_link_req(pd_gw_t *gw, const char *id)
{
    if (id[0] != 'g' || id[1] == '\0')
        return NULL;
    char *end = NULL;
    errno = 0;
    unsigned long long seq = strtoull(id + 1, &end, 16);
    if (errno != 0 || *end != '\0')
        return NULL;
    return pd_gw_req_find(gw, seq);
}

static void pd_gw_link_on_message(pd_gw_t *gw, const pd_proto_msg_t *m)
{
    pd_gw_req_t *req;
    switch (m->type) {
    case PD_PROTO_TYPE_STATS_REPLY:
        pd_gw_link_on_stats(gw, &m->u.stats_reply);
        break;
    case PD_PROTO_TYPE_ACCEPTED:
        if ((req = pd_gw_link_req(gw, m->u.accepted.id)) != NULL)
            req->accepted = true;
        break;
    case PD_PROTO_TYPE_TOKEN:
        if ((req = pd_gw_link_req(gw, m->u.token.id)) != NULL)
            pd_gw_req_on_token(req, m->u.token.index, m->u.token.token);
        break;
    case PD_PROTO_TYPE_DONE:
        if ((req = pd_gw_link_req(gw, m->u.done.id)) != NULL) {
            pd_gw_req_unlink(gw, req);
            pd_gw_req_on_done(req, &m->u.done);
        }
        break;
    case PD_PROTO_TYPE_ERROR:
        if ((req = pd_gw_link_req(gw, m->u.error.id)) != NULL) {
            pd_gw_req_unlink(gw, req);
            pd_gw_req_on_error(req, m->u.error.code, m->u.error.message);
        } else if (m->u.error.id[0] == '\0') {
            pd_log_warn("router: %s: %s", pd_status_name(m->u.error.code), m->u.error.message);
        }
        break;
    default:
        pd_log_warn("router sent a %s; ignored", pd_proto_type_name(m->type));
        break;
    }
}

void pd_gw_link_drain(pd_gw_t *gw)
{
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, gw->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return;
        }
        bool more = zmq_msg_more(&part);
        pd_proto_msg_t m;
        pd_proto_fault_t fault;
        pd_status_t st = more ? PD_ERR_PROTO
                              : pd_proto_decode(&m, PD_PROTO_CHAN_CLIENT, zmq_msg_data(&part),
                                                zmq_msg_size(&part), &fault);
        zmq_msg_close(&part);
        while (more) {
            zmq_msg_init(&part);
            more = zmq_msg_recv(&part, gw->sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        if (st != PD_OK) {
            pd_log_warn("router frame refused: %s", pd_status_name(st));
            continue;
        }
        pd_gw_link_on_message(gw, &m);
        pd_proto_msg_cleanup(&m);
    }
}

void pd_gw_link_tick(pd_gw_t *gw, uint64_t now_ms)
{
    /* One stats request at a time; one that got no answer is sent again. */
    uint64_t period = gw->cfg.status_interval_ms;
    if ((!gw->status_pending && now_ms >= gw->cluster.at_ms + period &&
         now_ms >= gw->status_sent_ms + period) ||
        (gw->status_pending && now_ms >= gw->status_sent_ms + 4 * period)) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATS;
        if (pd_gw_link_send(gw, &m) == PD_OK) {
            gw->status_pending = true;
            gw->status_sent_ms = now_ms;
        }
    }
    /* The gateway's own deadline, in case the router's never comes. */
    for (uint32_t b = 0; b < PD_GW_REQ_BUCKETS && gw->n_inflight > 0; b++) {
        pd_gw_req_t *q = gw->buckets[b];
        while (q != NULL) {
            pd_gw_req_t *next = q->next_hash;
            if (now_ms >= q->deadline_ms) {
                pd_gw_link_cancel(gw, q);
                pd_gw_req_on_error(q, PD_ERR_TIMEOUT, "no answer from the cluster in time");
            } else if (!q->accepted && !q->terminal && q->n_out == 0 &&
                       q->n_resent < PD_GW_MAX_RESENDS && now_ms >= q->sent_ms + PD_GW_RESEND_MS) {
                q->n_resent++;
                pd_status_ignore(pd_gw_link_send_generate(gw, q)); /* tried again later */
            }
            q = next;
        }
    }
}
