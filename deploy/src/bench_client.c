/* pdctl bench: the open-loop client. One DEALER socket to the router's client socket and
 * one zmq_poll loop: requests leave at their arrival times (held back only by the
 * concurrency cap), replies are matched to requests by id, and every request ends in
 * done, error or a client-side timeout. */
#include "bench_client.h"

#include "pd/client.h"
#include "pd/time.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static volatile sig_atomic_t pd_bench_interrupted;

static void pd_bench_on_sigint(int sig)
{
    (void)sig;
    pd_bench_interrupted = 1;
}

typedef struct pd_bench_client {
    const pd_bench_client_opts_t *opts;
    const pd_bench_item_t *items;
    pd_bench_rec_t *recs;
    size_t n;
    size_t *order;    /* (n) item indices by arrival time */
    int32_t *tokens;  /* (max_input) scratch prompt */
    size_t *inflight; /* (n) indices of requests in flight, unordered */
    size_t n_inflight;
    size_t *slot; /* (n) position of a request in inflight */
    uint64_t t0_ns;
    pd_client_t *client;
    void *sock;
    pd_mp_writer_t w;
    size_t n_sent, n_ended, n_unmatched;
} pd_bench_client_t;

static double pd_bench_client_now(const pd_bench_client_t *c)
{
    return pd_time_ns_to_ms(pd_time_now_ns() - c->t0_ns);
}

static void pd_bench_inflight_add(pd_bench_client_t *c, size_t idx)
{
    c->slot[idx] = c->n_inflight;
    c->inflight[c->n_inflight++] = idx;
}

static void pd_bench_inflight_remove(pd_bench_client_t *c, size_t idx)
{
    size_t pos = c->slot[idx];
    size_t last = c->inflight[--c->n_inflight];
    c->inflight[pos] = last;
    c->slot[last] = pos;
}

static void pd_bench_end(pd_bench_client_t *c, size_t idx, double now)
{
    c->recs[idx].end_ms = now;
    pd_bench_inflight_remove(c, idx);
    c->n_ended++;
}

static void pd_bench_fail(pd_bench_client_t *c, size_t idx, pd_status_t code, const char *msg)
{
    pd_bench_rec_t *r = &c->recs[idx];
    r->error = code;
    snprintf(r->error_msg, sizeof(r->error_msg), "%s", msg);
    pd_bench_end(c, idx, pd_bench_client_now(c));
}

static void pd_bench_send_cancel(pd_bench_client_t *c, size_t idx)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_CANCEL};
    snprintf(m.u.cancel.id, sizeof(m.u.cancel.id), "b%zu", idx);
    pd_mp_writer_reset(&c->w);
    if (pd_proto_encode(&m, &c->w) == PD_OK)
        zmq_send(c->sock, pd_mp_writer_data(&c->w), pd_mp_writer_size(&c->w), ZMQ_DONTWAIT);
}

/* A request with no accepted this long is sent again, as often as this: the router
 * may have died with it unread (a router answers a request it already has with another
 * accepted and runs it once). */
#define PD_BENCH_RESEND_MS   2000.0
#define PD_BENCH_MAX_RESENDS 5

/* Encode request idx into c->w. */
static pd_status_t pd_bench_encode(pd_bench_client_t *c, size_t idx)
{
    const pd_bench_item_t *it = &c->items[idx];
    const pd_bench_client_opts_t *o = c->opts;
    pd_bench_item_tokens(it, (uint32_t)idx, o->token_seed, c->tokens);
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_GENERATE;
    pd_proto_generate_t *g = &m.u.generate;
    snprintf(g->id, sizeof(g->id), "b%zu", idx);
    g->tokens = c->tokens;
    g->n_tokens = it->n_input;
    g->max_tokens = it->n_output;
    g->sampling.temperature = o->temperature;
    g->sampling.top_p = o->top_p;
    g->sampling.seed = o->sampling_seed + idx;
    if (o->n_tenants > 1)
        snprintf(g->tenant, sizeof(g->tenant), "tenant-%u", it->tenant);
    g->cache.mode = o->cache_mode;
    g->slo_ttft_ms = o->slo_ttft_ms;
    g->slo_tpot_ms = o->slo_tpot_ms;
    g->stream = true;
    pd_mp_writer_reset(&c->w);
    return pd_proto_encode(&m, &c->w);
}

/* Send request idx. Returns 0, 1 when the socket would block (try again later), or -1
 * when the request could not be encoded (it is failed). */
static int pd_bench_send(pd_bench_client_t *c, size_t idx)
{
    pd_status_t st = pd_bench_encode(c, idx);
    pd_bench_rec_t *r = &c->recs[idx];
    if (st != PD_OK) {
        r->sent = true;
        r->send_ms = pd_bench_client_now(c);
        pd_bench_inflight_add(c, idx);
        pd_bench_fail(c, idx, st, "request could not be encoded");
        return -1;
    }
    /* The clock is read before the send: read after it, a client descheduled in between
     * would start its TTFT after the router started the server's. */
    const double t_send = pd_bench_client_now(c);
    if (zmq_send(c->sock, pd_mp_writer_data(&c->w), pd_mp_writer_size(&c->w), ZMQ_DONTWAIT) < 0)
        return 1;
    r->sent = true;
    r->send_ms = t_send;
    pd_bench_inflight_add(c, idx);
    c->n_sent++;
    return 0;
}

/* The request a reply names, or SIZE_MAX when it is not one of ours in flight. */
static size_t pd_bench_lookup(const pd_bench_client_t *c, const char *id)
{
    if (id[0] != 'b' || id[1] < '0' || id[1] > '9')
        return SIZE_MAX;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(id + 1, &end, 10);
    if (errno != 0 || *end != '\0' || v >= c->n)
        return SIZE_MAX;
    size_t idx = (size_t)v;
    const pd_bench_rec_t *r = &c->recs[idx];
    if (!r->sent || r->finished || r->error != PD_OK)
        return SIZE_MAX;
    return idx;
}

static void pd_bench_handle(pd_bench_client_t *c, const void *buf, size_t len)
{
    pd_proto_msg_t m;
    pd_proto_fault_t fault;
    double now = pd_bench_client_now(c);
    if (pd_proto_decode(&m, PD_PROTO_CHAN_CLIENT, buf, len, &fault) != PD_OK) {
        size_t idx = pd_bench_lookup(c, fault.id);
        if (idx != SIZE_MAX)
            pd_bench_fail(c, idx, PD_ERR_PROTO, fault.reason);
        else
            c->n_unmatched++;
        fprintf(stderr, "pdctl: bench: undecodable reply: %s\n", fault.reason);
        return;
    }
    size_t idx = SIZE_MAX;
    switch (m.type) {
    case PD_PROTO_TYPE_ACCEPTED:
        if ((idx = pd_bench_lookup(c, m.u.accepted.id)) == SIZE_MAX)
            c->n_unmatched++;
        else
            c->recs[idx].accepted = true;
        break;
    case PD_PROTO_TYPE_TOKEN:
        idx = pd_bench_lookup(c, m.u.token.id);
        if (idx == SIZE_MAX) {
            c->n_unmatched++;
            break;
        }
        if (m.u.token.index < c->recs[idx].n_recv)
            break; /* again, from a router that restarted and went on with the request */
        if (c->recs[idx].n_recv == 0)
            c->recs[idx].first_ms = now;
        c->recs[idx].last_ms = now;
        c->recs[idx].n_recv++;
        break;
    case PD_PROTO_TYPE_DONE: {
        const pd_proto_done_t *d = &m.u.done;
        idx = pd_bench_lookup(c, d->id);
        if (idx == SIZE_MAX) {
            c->n_unmatched++;
            break;
        }
        pd_bench_rec_t *r = &c->recs[idx];
        r->finished = true;
        r->finish_reason = d->finish_reason;
        r->usage = d->usage;
        r->timings = d->timings;
        snprintf(r->prefill_worker, sizeof(r->prefill_worker), "%s", d->prefill_worker);
        snprintf(r->decode_worker, sizeof(r->decode_worker), "%s", d->decode_worker);
        pd_bench_end(c, idx, now);
        break;
    }
    case PD_PROTO_TYPE_ERROR:
        idx = pd_bench_lookup(c, m.u.error.id);
        if (idx == SIZE_MAX) {
            c->n_unmatched++;
            fprintf(stderr, "pdctl: bench: router error for '%s': %s: %s\n", m.u.error.id,
                    pd_status_name(m.u.error.code), m.u.error.message);
            break;
        }
        pd_bench_fail(c, idx, m.u.error.code,
                      m.u.error.message ? m.u.error.message : pd_status_str(m.u.error.code));
        break;
    default:
        c->n_unmatched++;
        break;
    }
    pd_proto_msg_cleanup(&m);
}

static void pd_bench_check_timeouts(pd_bench_client_t *c, double now)
{
    for (size_t k = 0; k < c->n_inflight;) {
        size_t idx = c->inflight[k];
        pd_bench_rec_t *r = &c->recs[idx];
        if (now - r->send_ms > (double)c->opts->timeout_ms) {
            pd_bench_send_cancel(c, idx);
            pd_bench_fail(c, idx, PD_ERR_TIMEOUT, "no done within --timeout-ms (client)");
            continue; /* the slot now holds another request */
        }
        double last = r->n_resent > 0 ? r->resent_ms : r->send_ms;
        if (!r->accepted && r->n_recv == 0 && r->n_resent < PD_BENCH_MAX_RESENDS &&
            now - last >= PD_BENCH_RESEND_MS && pd_bench_encode(c, idx) == PD_OK &&
            zmq_send(c->sock, pd_mp_writer_data(&c->w), pd_mp_writer_size(&c->w), ZMQ_DONTWAIT) >=
                0) {
            r->n_resent++;
            r->resent_ms = now;
        }
        k++;
    }
}

/* Ask the router for its status and wait up to 5 s for the reply, so that a run against
 * a dead endpoint (or one refusing our keys) fails at once instead of at --timeout-ms. */
static pd_status_t pd_bench_client_check(pd_bench_client_t *c)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
    pd_status_t st = pd_client_send(c->client, &m);
    if (st != PD_OK)
        return st;
    uint64_t deadline = pd_time_now_ms() + 5000;
    while (pd_time_now_ms() < deadline) {
        pd_proto_msg_t r;
        pd_proto_fault_t fault;
        st = pd_client_recv(c->client, (int)(deadline - pd_time_now_ms()), &r, &fault);
        if (st == PD_ERR_TIMEOUT || st == PD_ERR_CANCELED)
            break;
        if (st != PD_OK)
            continue;
        bool ok = r.type == PD_PROTO_TYPE_STATUS_REPLY;
        if (ok && c->opts->progress)
            fprintf(stderr, "pdctl: bench: router at %s lists %u workers\n", c->opts->endpoint,
                    r.u.status_reply.n_workers);
        pd_proto_msg_cleanup(&r);
        if (ok)
            return PD_OK;
    }
    fprintf(stderr, "pdctl: bench: no status reply from a router at %s within 5 s\n",
            c->opts->endpoint);
    return PD_ERR_UNREACHABLE;
}

pd_status_t pd_bench_client_run(const pd_bench_client_opts_t *opts, const pd_bench_item_t *items,
                                size_t n, pd_bench_rec_t *recs)
{
    pd_status_t status = PD_ERR_NO_MEMORY;
    pd_bench_client_t c = {.opts = opts, .items = items, .recs = recs, .n = n};
    struct sigaction sa_old, sa = {0};
    bool sig_set = false;
    pd_mp_writer_init(&c.w);
    uint32_t max_input = pd_bench_recs_init(items, n, recs);
    c.order = malloc((n ? n : 1) * sizeof(size_t));
    c.inflight = malloc((n ? n : 1) * sizeof(size_t));
    c.slot = malloc((n ? n : 1) * sizeof(size_t));
    c.tokens = malloc(max_input * sizeof(int32_t));
    if (c.order == NULL || c.inflight == NULL || c.slot == NULL || c.tokens == NULL)
        goto out;
    pd_bench_order_by_arrival(items, n, c.order);

    status = pd_client_connect_opt("pdctl bench", opts->endpoint, opts->curve_server_key,
                                   opts->curve_secret_file, &c.client);
    if (status != PD_OK)
        goto out;
    c.sock = pd_client_socket(c.client);
    status = pd_bench_client_check(&c);
    if (status != PD_OK)
        goto out;
    pd_bench_interrupted = 0;
    sa.sa_handler = pd_bench_on_sigint;
    sigemptyset(&sa.sa_mask);
    sig_set = sigaction(SIGINT, &sa, &sa_old) == 0;

    c.t0_ns = pd_time_now_ns();
    size_t next = 0;
    double last_progress = 0, last_timeout_check = 0;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (c.n_ended < n && !pd_bench_interrupted) {
        double now = pd_bench_client_now(&c);
        bool blocked = false;
        while (next < n && items[c.order[next]].arrival_ms <= now &&
               (opts->concurrency == 0 || c.n_inflight < opts->concurrency)) {
            int rc = pd_bench_send(&c, c.order[next]);
            if (rc == 1) {
                blocked = true;
                break;
            }
            next++;
        }
        long timeout = 100;
        if (!blocked && next < n && (opts->concurrency == 0 || c.n_inflight < opts->concurrency)) {
            double wait = items[c.order[next]].arrival_ms - pd_bench_client_now(&c);
            if (wait < 100)
                timeout = wait > 0 ? (long)ceil(wait) : 0;
        }
        if (blocked)
            timeout = 1;
        zmq_pollitem_t pi = {c.sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&pi, 1, timeout);
        if (rc < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "pdctl: bench: zmq_poll: %s\n", zmq_strerror(zmq_errno()));
            goto out_msg;
        }
        while (rc > 0 && zmq_msg_recv(&msg, c.sock, ZMQ_DONTWAIT) >= 0)
            pd_bench_handle(&c, zmq_msg_data(&msg), zmq_msg_size(&msg));
        now = pd_bench_client_now(&c);
        if (now - last_timeout_check >= 100) {
            pd_bench_check_timeouts(&c, now);
            last_timeout_check = now;
        }
        if (opts->progress && now - last_progress >= 1000) {
            fprintf(stderr, "pdctl: bench: %6.1f s  sent %zu/%zu  ended %zu  in flight %zu\n",
                    now / 1000.0, c.n_sent, n, c.n_ended, c.n_inflight);
            last_progress = now;
        }
    }
    if (pd_bench_interrupted) {
        fprintf(stderr, "pdctl: bench: interrupted; canceling %zu requests in flight\n",
                c.n_inflight);
        while (c.n_inflight > 0) {
            size_t idx = c.inflight[0];
            pd_bench_send_cancel(&c, idx);
            pd_bench_fail(&c, idx, PD_ERR_CANCELED, "interrupted");
        }
    }
    if (c.n_unmatched > 0)
        fprintf(stderr, "pdctl: bench: %zu replies matched no request in flight\n", c.n_unmatched);
    status = pd_bench_interrupted ? PD_ERR_CANCELED : PD_OK;
out_msg:
    zmq_msg_close(&msg);
out:
    if (sig_set)
        sigaction(SIGINT, &sa_old, NULL);
    pd_client_destroy(&c.client);
    pd_mp_writer_cleanup(&c.w);
    free(c.order);
    free(c.inflight);
    free(c.slot);
    free(c.tokens);
    return status;
}
