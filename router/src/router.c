/* pd-router's sockets and its one zmq_poll loop: a ROUTER for clients, a ROUTER for
 * workers, a SUB connected to each worker's KV-event PUB. Every frame is decoded with the
 * channel's limits before anything else looks at it; malformed client frames get an
 * `error` and the loop goes on. */
#include "router_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define PD_ROUTER_TICK_MS 20
#define PD_ROUTER_BATCH   256 /* messages per socket per loop turn */
#define PD_ROUTER_SNDHWM  100000

pd_status_t pd_router_send_rid(pd_router_t *r, void *sock, const pd_router_rid_t *rid,
                               const pd_proto_msg_t *msg)
{
    pd_mp_writer_reset(&r->w);
    pd_status_t st = pd_proto_encode(msg, &r->w);
    if (st != PD_OK) {
        pd_log_error("encode %s: %s", pd_proto_type_name(msg->type), pd_status_name(st));
        return st;
    }
    if (zmq_send(sock, rid->bytes, rid->n, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, pd_mp_writer_data(&r->w), pd_mp_writer_size(&r->w), ZMQ_DONTWAIT) < 0) {
        pd_log_warn("send %s: %s", pd_proto_type_name(msg->type), zmq_strerror(zmq_errno()));
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_router_send_client(pd_router_t *r, const pd_router_rid_t *client,
                                  const pd_proto_msg_t *msg)
{
    return pd_router_send_rid(r, r->client_sock, client, msg);
}

pd_status_t pd_router_send_worker(pd_router_t *r, const pd_router_worker_t *wk,
                                  const pd_proto_msg_t *msg)
{
    return pd_router_send_rid(r, r->worker_sock, &wk->rid, msg);
}

void pd_router_send_client_error(pd_router_t *r, const pd_router_rid_t *client, const char *id,
                                 pd_status_t code, const char *message)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_ERROR};
    snprintf(m.u.error.id, sizeof(m.u.error.id), "%s", id ? id : "");
    m.u.error.code = code < 0 ? code : PD_ERR_INTERNAL;
    m.u.error.message = message;
    pd_router_send_client(r, client, &m);
}

void pd_router_send_cancel(pd_router_t *r, const pd_router_worker_t *wk, uint64_t req_id)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_WORKER_CANCEL};
    m.u.worker_cancel.req_id = req_id;
    pd_router_send_worker(r, wk, &m);
}

void pd_router_send_status(pd_router_t *r, const pd_router_rid_t *client, bool details)
{
    pd_proto_worker_info_t infos[PD_DIR_MAX_WORKERS];
    uint32_t n = 0;
    memset(infos, 0, sizeof(infos));
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        const pd_router_worker_t *wk = &r->workers[s];
        if (!wk->used)
            continue;
        pd_proto_worker_info_t *i = &infos[n++];
        memcpy(i->id, wk->id, sizeof(i->id));
        i->role = wk->role;
        i->epoch = wk->epoch;
        snprintf(i->state, sizeof(i->state), "%s",
                 pd_dir_worker_synced(r->dir, s) ? "ready" : "resyncing");
        i->running = wk->running;
        i->queued = wk->queued;
        i->n_blocks = wk->n_blocks;
        i->free_blocks = wk->free_blocks;
        /* What the directory holds says what other tenants' prompts share: admin only. */
        i->directory_blocks = details ? (uint32_t)pd_dir_worker_n_hashes(r->dir, s) : 0;
    }
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS_REPLY};
    m.u.status_reply.workers = infos;
    m.u.status_reply.n_workers = n;
    m.u.status_reply.directory_blocks = details ? pd_dir_n_hashes(r->dir) : 0;
    m.u.status_reply.queue_depth = r->n_queued;
    m.u.status_reply.requests_in_flight = r->n_live;
    m.u.status_reply.holder_reads = details ? r->n_holder_reads : 0;
    m.u.status_reply.recomputed_blocks = details ? r->n_recomputed_blocks : 0;
    m.u.status_reply.moved_requests = details ? r->n_moved : 0;
    m.u.status_reply.resumed_requests = details ? r->n_resumed : 0;
    m.u.status_reply.client_gone_requests = details ? r->n_client_gone_reqs : 0;
    pd_router_send_client(r, client, &m);
}

void pd_router_send_stats(pd_router_t *r, const pd_router_rid_t *client, bool details)
{
    pd_proto_stats_worker_t infos[PD_DIR_MAX_WORKERS];
    uint32_t n = 0;
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATS_REPLY};
    pd_proto_stats_reply_t *s = &m.u.stats_reply;
    memset(infos, 0, sizeof(infos));
    for (uint32_t slot = 0; slot < PD_DIR_MAX_WORKERS; slot++) {
        const pd_router_worker_t *wk = &r->workers[slot];
        if (!wk->used)
            continue;
        s->n_prefill += wk->role == PD_PROTO_ROLE_PREFILL;
        s->n_decode += wk->role == PD_PROTO_ROLE_DECODE;
        s->n_both += wk->role == PD_PROTO_ROLE_BOTH;
        s->g1_blocks += wk->n_blocks;
        s->g1_free_blocks += wk->free_blocks;
        s->g1_cached_blocks += wk->stats.g1_cached_blocks;
        s->g2_blocks += wk->stats.g2_blocks;
        s->g2_used_blocks += wk->stats.g2_used_blocks;
        s->g3_blocks += wk->stats.g3_blocks;
        s->g3_used_blocks += wk->stats.g3_used_blocks;
        s->hit_blocks += wk->stats.hit_blocks;
        s->miss_blocks += wk->stats.miss_blocks;
        s->xfer_bytes += wk->stats.xfer_bytes;
        s->xfer_bytes_wire += wk->stats.xfer_bytes_wire;
        pd_proto_stats_worker_t *i = &infos[n++];
        memcpy(i->id, wk->id, sizeof(i->id));
        i->role = wk->role;
        bool synced = pd_dir_worker_synced(r->dir, slot);
        s->n_ready += synced;
        snprintf(i->state, sizeof(i->state), "%s", synced ? "ready" : "resyncing");
        i->running = wk->running;
        i->queued = wk->queued;
        i->n_blocks = wk->n_blocks;
        i->free_blocks = wk->free_blocks;
        i->directory_blocks = (uint32_t)pd_dir_worker_n_hashes(r->dir, slot);
        i->stats = wk->stats;
    }
    s->queue_depth = r->n_queued;
    s->requests_in_flight = r->n_live;
    s->requests_total = r->requests_total;
    s->directory_blocks = pd_dir_n_hashes(r->dir);
    s->holder_reads = r->n_holder_reads;
    s->recomputed_blocks = r->n_recomputed_blocks;
    s->xfer_count = r->xfer_count;
    s->xfer_ms_sum = r->xfer_ms_sum;
    if (details && n > 0) {
        s->workers = infos;
        s->n_workers = n;
    }
    pd_router_send_client(r, client, &m);
}

static void *pd_router_socket(pd_router_t *r, int type, int max_frame)
{
    void *s = zmq_socket(r->ctx, type);
    if (s == NULL)
        return NULL;
    int64_t max = max_frame;
    int linger = 0, hwm = PD_ROUTER_SNDHWM;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max));
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    return s;
}

static pd_status_t pd_router_bind(void *sock, const char *endpoint, char *resolved, size_t cap)
{
    if (zmq_bind(sock, endpoint) != 0) {
        int err = zmq_errno();
        pd_log_error("bind %s: %s", endpoint, zmq_strerror(err));
        return pd_status_from_errno(err);
    }
    size_t n = cap;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, resolved, &n) != 0)
        snprintf(resolved, cap, "%s", endpoint);
    return PD_OK;
}

/* Write the resolved endpoints to path atomically (tmp file + rename). */
static pd_status_t pd_router_write_ready(const char *path, const char *client, const char *workers)
{
    char tmp[PD_ROUTER_PATH_CAP + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        pd_log_error("ready file %s: %s", tmp, strerror(errno));
        return PD_ERR_IO;
    }
    fprintf(f, "client=%s\nworkers=%s\npid=%d\n", client, workers, (int)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        pd_log_error("ready file %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_router_create(const pd_router_config_t *config, pd_router_t **router_p)
{
    char client_ep[PD_PROTO_ENDPOINT_CAP], worker_ep[PD_PROTO_ENDPOINT_CAP];
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_router_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return PD_ERR_NO_MEMORY;
    r->cfg = *config;
    r->epoch = pd_time_epoch_new();
    r->journal_fd = -1;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++)
        r->workers[s].slot = s;
    pd_mp_writer_init(&r->w);

    if (config->tokenizer_path[0] != '\0') {
        if (strcmp(config->tokenizer_path, "byte") == 0)
            st = pd_tokenizer_create_byte(&r->tok);
        else
            st = pd_tokenizer_open(config->tokenizer_path, 0, &r->tok);
        if (st != PD_OK) {
            pd_log_error("tokenizer %s: %s", config->tokenizer_path, pd_status_str(st));
            goto err;
        }
    }
    if ((st = pd_dir_create(0, &r->dir)) != PD_OK)
        goto err;
    st = PD_ERR_IO;
    r->ctx = zmq_ctx_new();
    if (r->ctx == NULL)
        goto err;
    r->client_sock = pd_router_socket(r, ZMQ_ROUTER, PD_PROTO_MAX_CLIENT_FRAME_BYTES);
    r->worker_sock = pd_router_socket(r, ZMQ_ROUTER, PD_PROTO_MAX_WORKER_FRAME_BYTES);
    r->event_sock = pd_router_socket(r, ZMQ_SUB, PD_PROTO_MAX_WORKER_FRAME_BYTES);
    if (r->client_sock == NULL || r->worker_sock == NULL || r->event_sock == NULL)
        goto err;
    zmq_setsockopt(r->event_sock, ZMQ_SUBSCRIBE, "", 0);
    /* Workers name their DEALER after their worker_id: a restarted worker must take the
     * name over from a connection the router has not yet seen close. */
    int handover = 1;
    zmq_setsockopt(r->worker_sock, ZMQ_ROUTER_HANDOVER, &handover, sizeof(handover));
    r->client_keys = calloc(PD_ROUTER_MAX_CLIENT_KEYS, sizeof(*r->client_keys));
    if (r->client_keys == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto err;
    }
    if ((st = pd_router_auth_setup(r)) != PD_OK)
        goto err;
    r->client_fd_now = -1;
    if ((st = pd_router_clients_watch_setup(r)) != PD_OK)
        goto err;
    /* Request ids never repeat across restarts: workers may still hold the previous
     * router's, and their messages must not be taken for a new request's. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->next_req_id = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if ((st = pd_router_journal_open(r)) != PD_OK)
        goto err;
    if ((st = pd_router_bind(r->client_sock, config->client_endpoint, client_ep,
                             sizeof(client_ep))) != PD_OK ||
        (st = pd_router_bind(r->worker_sock, config->worker_endpoint, worker_ep,
                             sizeof(worker_ep))) != PD_OK)
        goto err;
    if (config->ready_file[0] != '\0' &&
        (st = pd_router_write_ready(config->ready_file, client_ep, worker_ep)) != PD_OK)
        goto err;
    pd_log_info("listening: clients %s, workers %s; block %u tokens, policy %s, model '%s'",
                client_ep, worker_ep, config->block_tokens,
                config->policy == PD_ROUTER_POLICY_KV ? "kv" : "rr", config->model_id);
    *router_p = r;
    return PD_OK;

err:
    pd_router_destroy(&r);
    return st;
}

void pd_router_stop(pd_router_t *router)
{
    router->stop = true;
}

/* Read one ROUTER message: routing id + exactly one payload frame. Returns 1 with
 * *payload set (caller closes it), 0 when nothing is waiting, -1 for a message of the
 * wrong shape (consumed). */
static int pd_router_recv(void *sock, pd_router_rid_t *rid, zmq_msg_t *payload)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return 0;
    }
    size_t n = zmq_msg_size(&part);
    rid->n = n < sizeof(rid->bytes) ? n : sizeof(rid->bytes);
    memcpy(rid->bytes, zmq_msg_data(&part), rid->n);
    bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more)
        return -1;
    zmq_msg_init(payload);
    if (zmq_msg_recv(payload, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(payload);
        return -1;
    }
    if (!zmq_msg_more(payload))
        return 1;
    /* More than one payload frame: drain and refuse. */
    zmq_msg_close(payload);
    for (;;) {
        zmq_msg_init(&part);
        int rc = zmq_msg_recv(&part, sock, ZMQ_DONTWAIT);
        more = rc >= 0 && zmq_msg_more(&part);
        zmq_msg_close(&part);
        if (!more)
            break;
    }
    return -1;
}

static void pd_router_on_client(pd_router_t *r)
{
    for (int k = 0; k < PD_ROUTER_BATCH; k++) {
        pd_router_rid_t rid;
        zmq_msg_t payload;
        int got = pd_router_recv(r->client_sock, &rid, &payload);
        if (got == 0)
            return;
        if (got < 0) {
            pd_router_send_client_error(r, &rid, "", PD_ERR_PROTO,
                                        "a message is one frame of msgpack");
            continue;
        }
        pd_proto_msg_t msg;
        pd_proto_fault_t fault;
        char tenant[PD_PROTO_NAME_CAP] = "";
        bool admin = !r->auth, gateway = false;
        if (r->auth) {
            /* The ZAP handler's user id: the tenant listed with the client's key; and the
             * key's roles, which the handler attached as metadata. */
            const char *user = zmq_msg_gets(&payload, "User-Id");
            const char *roles = zmq_msg_gets(&payload, PD_ROUTER_ROLES_PROPERTY);
            snprintf(tenant, sizeof(tenant), "%s", user != NULL ? user : "");
            admin = roles != NULL && strstr(roles, "admin") != NULL;
            gateway = roles != NULL && strstr(roles, "gateway") != NULL;
        }
        r->client_fd_now = zmq_msg_get(&payload, ZMQ_SRCFD);
        pd_status_t st = pd_proto_decode(&msg, PD_PROTO_CHAN_CLIENT, zmq_msg_data(&payload),
                                         zmq_msg_size(&payload), &fault);
        zmq_msg_close(&payload);
        if (st != PD_OK) {
            pd_log_debug("client frame refused: %s: %s", pd_status_name(st), fault.reason);
            pd_router_send_client_error(r, &rid, fault.id, st, fault.reason);
            continue;
        }
        switch (msg.type) {
        case PD_PROTO_TYPE_GENERATE:
            if (pd_router_client_fd_gone(r, r->client_fd_now)) {
                pd_log_debug("generate '%s' from a client that has left: dropped",
                             msg.u.generate.id);
                break;
            }
            /* With auth, the key's tenant; a gateway key may name the tenant of each
             * request (its own user's), and its own tenant is the default. */
            pd_router_on_generate(
                r, &rid, &msg.u.generate,
                !r->auth || (gateway && msg.u.generate.tenant[0] != '\0') ? NULL : tenant);
            break;
        case PD_PROTO_TYPE_STATS:
            pd_router_send_stats(r, &rid, admin);
            break;
        case PD_PROTO_TYPE_STOP:
            pd_router_on_stop(r, &rid, msg.u.stop.id);
            break;
        case PD_PROTO_TYPE_STATUS:
            pd_router_send_status(r, &rid, admin);
            break;
        case PD_PROTO_TYPE_CANCEL:
            pd_router_on_cancel(r, &rid, msg.u.cancel.id);
            break;
        default:
            pd_router_send_client_error(r, &rid, "", PD_ERR_PROTO,
                                        "not a client -> router message type");
            break;
        }
        pd_proto_msg_cleanup(&msg);
    }
}

static void pd_router_on_workers(pd_router_t *r)
{
    for (int k = 0; k < PD_ROUTER_BATCH; k++) {
        pd_router_rid_t rid;
        zmq_msg_t payload;
        int got = pd_router_recv(r->worker_sock, &rid, &payload);
        if (got == 0)
            return;
        if (got < 0) {
            pd_log_warn("worker message of the wrong shape dropped");
            continue;
        }
        pd_proto_msg_t msg;
        pd_proto_fault_t fault;
        /* Worker auth: the ZAP handler's user id is the peer's CURVE key. */
        char key[PD_ROUTER_Z85_KEY_CHARS + 1] = "";
        if (r->worker_auth) {
            const char *user = zmq_msg_gets(&payload, "User-Id");
            snprintf(key, sizeof(key), "%s", user != NULL ? user : "");
        }
        pd_status_t st = pd_proto_decode(&msg, PD_PROTO_CHAN_WORKER, zmq_msg_data(&payload),
                                         zmq_msg_size(&payload), &fault);
        zmq_msg_close(&payload);
        if (st != PD_OK) {
            /* Not answered: an error reply to a confused peer could start a ping-pong. */
            pd_log_warn("worker frame refused: %s: %s", pd_status_name(st), fault.reason);
            pd_router_worker_on_garbage(r, &rid, fault.req_id, st);
            continue;
        }
        pd_router_worker_on_message(r, &rid, r->worker_auth ? key : NULL, &msg);
        pd_proto_msg_cleanup(&msg);
    }
}

static void pd_router_on_events(pd_router_t *r)
{
    for (int k = 0; k < PD_ROUTER_BATCH; k++) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, r->event_sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return;
        }
        bool more = zmq_msg_more(&part);
        pd_proto_msg_t msg;
        pd_proto_fault_t fault;
        pd_status_t st = more ? PD_ERR_PROTO
                              : pd_proto_decode(&msg, PD_PROTO_CHAN_EVENTS, zmq_msg_data(&part),
                                                zmq_msg_size(&part), &fault);
        zmq_msg_close(&part);
        while (more) {
            zmq_msg_init(&part);
            more = zmq_msg_recv(&part, r->event_sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        if (st != PD_OK) {
            pd_log_warn("kv_event refused: %s", pd_status_name(st));
            continue;
        }
        pd_router_worker_on_event(r, &msg.u.kv_event);
        pd_proto_msg_cleanup(&msg);
    }
}

pd_status_t pd_router_run(pd_router_t *r, volatile int *stop_flag)
{
    uint64_t last_tick = 0;
    pd_status_t st = PD_OK;
    r->stop = false;
    while (!r->stop && (stop_flag == NULL || !*stop_flag)) {
        zmq_pollitem_t items[5] = {
            {r->client_sock, 0, ZMQ_POLLIN, 0}, {r->worker_sock, 0, ZMQ_POLLIN, 0},
            {r->event_sock, 0, ZMQ_POLLIN, 0},  {r->client_mon, 0, ZMQ_POLLIN, 0},
            {r->zap_sock, 0, ZMQ_POLLIN, 0},
        };
        int rc = zmq_poll(items, r->zap_sock != NULL ? 5 : 4, PD_ROUTER_TICK_MS);
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            pd_log_error("zmq_poll: %s", zmq_strerror(zmq_errno()));
            st = PD_ERR_IO;
            break;
        }
        if (r->zap_sock != NULL && (items[4].revents & ZMQ_POLLIN))
            pd_router_auth_serve(r);
        /* Closed client connections first: their requests need no more work. */
        if (items[3].revents & ZMQ_POLLIN)
            pd_router_clients_watch_drain(r);
        /* Workers first: their tokens and releases free room for new requests. */
        if (items[1].revents & ZMQ_POLLIN)
            pd_router_on_workers(r);
        if (items[2].revents & ZMQ_POLLIN)
            pd_router_on_events(r);
        if (items[0].revents & ZMQ_POLLIN)
            pd_router_on_client(r);
        uint64_t now = pd_time_now_ms();
        pd_router_journal_tokens(r, now);
        if (now >= last_tick + PD_ROUTER_TICK_MS) {
            last_tick = now;
            pd_router_workers_tick(r, now);
            pd_router_reqs_tick(r, now);
            pd_router_journal_tick(r, now);
            pd_router_dispatch(r);
        }
    }
    pd_router_reqs_cleanup(r, PD_ERR_CANCELED, "the router is shutting down");
    return st;
}

void pd_router_destroy(pd_router_t **router_p)
{
    if (router_p == NULL || *router_p == NULL)
        return;
    pd_router_t *r = *router_p;
    if (r->client_sock != NULL)
        pd_router_reqs_cleanup(r, PD_ERR_CANCELED, "the router is shutting down");
    pd_router_workers_cleanup(r);
    pd_router_sched_cleanup(r);
    pd_router_clients_watch_cleanup(r);
    pd_router_journal_close(r);
    if (r->client_sock != NULL)
        zmq_close(r->client_sock);
    if (r->worker_sock != NULL)
        zmq_close(r->worker_sock);
    if (r->event_sock != NULL)
        zmq_close(r->event_sock);
    if (r->zap_sock != NULL)
        zmq_close(r->zap_sock);
    free(r->client_keys);
    free(r->worker_keys);
    if (r->ctx != NULL)
        zmq_ctx_term(r->ctx);
    pd_dir_destroy(&r->dir);
    pd_tokenizer_destroy(&r->tok);
    pd_mp_writer_cleanup(&r->w);
    free(r);
    *router_p = NULL;
}
