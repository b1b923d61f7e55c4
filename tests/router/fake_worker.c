/* Fake workers and the pd-router process for the router tests (see fake_worker.h). */
#include "fake_worker.h"

#include "pd/time.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

void fw_router_start(fw_router_t *r, const char *const *extra)
{
    const char *bin_dir = getenv("PD_BIN_DIR");
    char bin[1024], ready[300];
    cr_assert_not_null(bin_dir, "PD_BIN_DIR is not set");
    snprintf(bin, sizeof(bin), "%s/pd-router", bin_dir);
    snprintf(r->dir, sizeof(r->dir), "/tmp/pdkv-router-test-XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    snprintf(ready, sizeof(ready), "%s/ready", r->dir);

    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--client";
    argv[n++] = "tcp://127.0.0.1:*";
    argv[n++] = "--workers";
    argv[n++] = "tcp://127.0.0.1:*";
    argv[n++] = "--ready-file";
    argv[n++] = ready;
    argv[n++] = "--model-id";
    argv[n++] = "test-model";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* The router dies with the test's process: a failed assertion ends the test without
     * fw_router_stop, and a router left running would hold ctest's output pipe open. */
    pid_t parent = getpid();
    r->pid = fork();
    cr_assert_geq(r->pid, 0);
    if (r->pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(127);
        execve(bin, (char *const *)argv, environ);
        _exit(127);
    }

    uint64_t until = pd_time_now_ms() + 5000;
    FILE *f = NULL;
    while (pd_time_now_ms() < until && (f = fopen(ready, "r")) == NULL) {
        int status;
        cr_assert_eq(waitpid(r->pid, &status, WNOHANG), 0, "pd-router exited early");
        usleep(10000);
    }
    cr_assert_not_null(f, "pd-router wrote no ready file in 5 s");
    char line[512];
    r->client_ep[0] = r->worker_ep[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "client=", 7) == 0)
            snprintf(r->client_ep, sizeof(r->client_ep), "%s", line + 7);
        else if (strncmp(line, "workers=", 8) == 0)
            snprintf(r->worker_ep, sizeof(r->worker_ep), "%s", line + 8);
    }
    fclose(f);
    cr_assert(strncmp(r->client_ep, "tcp://127.0.0.1:", 16) == 0, "%s", r->client_ep);
    cr_assert(strncmp(r->worker_ep, "tcp://127.0.0.1:", 16) == 0, "%s", r->worker_ep);
}

void fw_router_stop(fw_router_t *r)
{
    int status = 0;
    pid_t got = 0;
    char path[300];
    kill(r->pid, SIGTERM);
    uint64_t until = pd_time_now_ms() + 5000;
    while (pd_time_now_ms() < until && (got = waitpid(r->pid, &status, WNOHANG)) == 0)
        usleep(10000);
    if (got == 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &status, 0);
    }
    snprintf(path, sizeof(path), "%s/ready", r->dir);
    unlink(path);
    rmdir(r->dir);
    cr_assert_neq(got, 0, "pd-router did not stop on SIGTERM within 5 s");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pd-router exit status %d", status);
}

static void fw_send(fw_worker_t *w, const pd_proto_msg_t *m)
{
    pd_mp_writer_t wr;
    pd_mp_writer_init(&wr);
    cr_assert_eq(pd_proto_encode(m, &wr), PD_OK, "encode %s", pd_proto_type_name(m->type));
    void *sock = (m->type == PD_PROTO_TYPE_KV_EVENT) ? w->pub : w->dealer;
    cr_assert(zmq_send(sock, pd_mp_writer_data(&wr), pd_mp_writer_size(&wr), 0) >= 0);
    pd_mp_writer_cleanup(&wr);
}

void fw_worker_send(fw_worker_t *w, const pd_proto_msg_t *m)
{
    fw_send(w, m);
}

static void fw_register(fw_worker_t *w)
{
    static const unsigned char desc[] = {'f', 'a', 'k', 'e'};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_REGISTER};
    snprintf(m.u.reg.worker_id, sizeof(m.u.reg.worker_id), "%s", w->id);
    m.u.reg.role = w->role;
    m.u.reg.epoch = w->epoch;
    snprintf(m.u.reg.model_id, sizeof(m.u.reg.model_id), "test-model");
    m.u.reg.block_tokens = 16;
    m.u.reg.n_blocks = 1000;
    m.u.reg.xfer_desc = desc;
    m.u.reg.xfer_desc_bytes = sizeof(desc);
    snprintf(m.u.reg.events_endpoint, sizeof(m.u.reg.events_endpoint), "%s", w->events_ep);
    fw_send(w, &m);
}

static void fw_worker_open(fw_cluster_t *cl, fw_worker_t *w, const fw_router_t *r, const char *id,
                           pd_proto_role_t role, const char *server_public, const char *secret)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->role = role;
    w->epoch = pd_time_now_ns() ^ (uint64_t)getpid();
    w->heartbeats = true;
    w->ctx = zmq_ctx_new();
    w->dealer = zmq_socket(w->ctx, ZMQ_DEALER);
    w->pub = zmq_socket(w->ctx, ZMQ_PUB);
    int linger = 0;
    zmq_setsockopt(w->dealer, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(w->pub, ZMQ_LINGER, &linger, sizeof(linger));
    if (server_public != NULL) {
        char public_key[41];
        int server = 1;
        cr_assert_eq(zmq_curve_public(public_key, secret), 0);
        cr_assert_eq(zmq_setsockopt(w->dealer, ZMQ_CURVE_SERVERKEY, server_public, 41), 0);
        cr_assert_eq(zmq_setsockopt(w->dealer, ZMQ_CURVE_PUBLICKEY, public_key, 41), 0);
        cr_assert_eq(zmq_setsockopt(w->dealer, ZMQ_CURVE_SECRETKEY, secret, 41), 0);
        cr_assert_eq(zmq_setsockopt(w->pub, ZMQ_CURVE_SERVER, &server, sizeof(server)), 0);
        cr_assert_eq(zmq_setsockopt(w->pub, ZMQ_CURVE_SECRETKEY, secret, 41), 0);
    }
    cr_assert_eq(zmq_bind(w->pub, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof(w->events_ep);
    zmq_getsockopt(w->pub, ZMQ_LAST_ENDPOINT, w->events_ep, &n);
    cr_assert_eq(zmq_connect(w->dealer, r->worker_ep), 0);
    fw_register(w);
    cl->workers[cl->n++] = w;
}

void fw_worker_start(fw_cluster_t *cl, fw_worker_t *w, const fw_router_t *r, const char *id,
                     pd_proto_role_t role)
{
    fw_worker_open(cl, w, r, id, role, NULL, NULL);
}

void fw_worker_start_curve(fw_cluster_t *cl, fw_worker_t *w, const fw_router_t *r, const char *id,
                           pd_proto_role_t role, const char *server_public, const char *secret)
{
    fw_worker_open(cl, w, r, id, role, server_public, secret);
}

void fw_worker_stop(fw_worker_t *w)
{
    if (w->ctx == NULL)
        return;
    zmq_close(w->dealer);
    zmq_close(w->pub);
    zmq_ctx_term(w->ctx);
    w->ctx = NULL;
}

void fw_worker_store(fw_worker_t *w, const uint64_t *hashes, uint32_t n)
{
    cr_assert(w->n_held + n <= FW_MAX_HELD);
    memcpy(w->held + w->n_held, hashes, n * sizeof(*hashes));
    w->n_held += n;
    pd_proto_kv_event_item_t it = {PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, hashes, n};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_KV_EVENT};
    snprintf(m.u.kv_event.worker_id, sizeof(m.u.kv_event.worker_id), "%s", w->id);
    m.u.kv_event.epoch = w->epoch;
    m.u.kv_event.seq = ++w->seq;
    m.u.kv_event.events = &it;
    m.u.kv_event.n_events = 1;
    fw_send(w, &m);
}

void fw_worker_store_lost(fw_worker_t *w, const uint64_t *hashes, uint32_t n)
{
    cr_assert(w->n_held + n <= FW_MAX_HELD);
    memcpy(w->held + w->n_held, hashes, n * sizeof(*hashes));
    w->n_held += n;
    w->seq++;
}

static bool fw_holds(const fw_worker_t *w, uint64_t h)
{
    for (uint32_t i = 0; i < w->n_held; i++)
        if (w->held[i] == h)
            return true;
    return false;
}

static fw_req_t *fw_req_get(fw_worker_t *w, uint64_t req_id, bool create)
{
    for (uint32_t i = 0; i < FW_MAX_REQS; i++)
        if (w->reqs[i].used && w->reqs[i].req_id == req_id)
            return &w->reqs[i];
    if (!create)
        return NULL;
    for (uint32_t i = 0; i < FW_MAX_REQS; i++) {
        if (!w->reqs[i].used) {
            memset(&w->reqs[i], 0, sizeof(w->reqs[i]));
            w->reqs[i].used = true;
            w->reqs[i].req_id = req_id;
            return &w->reqs[i];
        }
    }
    cr_assert_fail("fake worker %s: too many requests", w->id);
    return NULL;
}

static fw_worker_t *fw_cluster_find(fw_cluster_t *cl, const char *id)
{
    for (uint32_t i = 0; i < cl->n; i++)
        if (cl->workers[i]->ctx != NULL && strcmp(cl->workers[i]->id, id) == 0)
            return cl->workers[i];
    return NULL;
}

static void fw_on_message(fw_cluster_t *cl, fw_worker_t *w, const pd_proto_msg_t *m)
{
    switch (m->type) {
    case PD_PROTO_TYPE_REGISTERED:
        w->registered = true;
        break;
    case PD_PROTO_TYPE_RESYNC: {
        w->n_resync++;
        pd_proto_msg_t s = {.type = PD_PROTO_TYPE_KV_SNAPSHOT};
        snprintf(s.u.kv_snapshot.worker_id, sizeof(s.u.kv_snapshot.worker_id), "%s", w->id);
        s.u.kv_snapshot.epoch = w->epoch;
        s.u.kv_snapshot.seq = w->seq;
        s.u.kv_snapshot.hashes[PD_PROTO_TIER_G1] = w->held;
        s.u.kv_snapshot.n_hashes[PD_PROTO_TIER_G1] = w->n_held;
        fw_send(w, &s);
        break;
    }
    case PD_PROTO_TYPE_RESERVE: {
        const pd_proto_reserve_t *x = &m->u.reserve;
        w->n_reserve++;
        fw_req_t *q = fw_req_get(w, x->req_id, true);
        q->n_tokens = x->n_tokens;
        q->max_tokens = x->max_tokens;
        uint32_t cached = 0;
        while (cached < x->cache.read_blocks && fw_holds(w, x->block_hashes[cached]))
            cached++;
        q->n_cached_blocks = cached;
        uint32_t table[4096];
        uint32_t n_table = (x->n_tokens + x->max_tokens + 15) / 16;
        for (uint32_t i = 0; i < n_table; i++)
            table[i] = i;
        pd_proto_msg_t rm = {.type = PD_PROTO_TYPE_RESERVED};
        rm.u.reserved = (pd_proto_reserved_t){x->req_id, PD_OK, cached, table, n_table};
        fw_send(w, &rm);
        break;
    }
    case PD_PROTO_TYPE_PREFILL: {
        const pd_proto_prefill_t *x = &m->u.prefill;
        w->n_prefill++;
        if (w->fail_push != PD_OK) {
            pd_proto_msg_t em = {.type = PD_PROTO_TYPE_WORKER_ERROR};
            em.u.worker_error = (pd_proto_worker_error_t){x->req_id, w->fail_push,
                                                          "KV push to the decode worker failed"};
            w->fail_push = PD_OK;
            fw_send(w, &em);
            break;
        }
        w->last_src = x->src_xfer_desc != NULL ? x->n_src_block_table : 0;
        snprintf(w->last_src_id, sizeof(w->last_src_id), "%s",
                 x->src_worker_id != NULL ? x->src_worker_id : "");
        int32_t first = (int32_t)(100 + x->req_id % 100);
        /* The fabric's notification, by hand: the decode worker gets the first token. */
        fw_worker_t *d = fw_cluster_find(cl, x->dest_worker_id);
        if (d != NULL) {
            fw_req_t *q = fw_req_get(d, x->req_id, false);
            if (q != NULL) {
                q->ready = true;
                q->first_token = first;
            }
        }
        /* The holder's holes are the blocks it reports recomputing. */
        static uint32_t holes[4096];
        uint32_t n_holes = 0;
        for (uint32_t i = 0; x->src_xfer_desc != NULL && i < x->n_src_block_table && i < 4096; i++)
            if (x->src_block_table[i] == PD_PROTO_NO_BLOCK)
                holes[n_holes++] = i;
        pd_proto_msg_t pm = {.type = PD_PROTO_TYPE_PREFILLED};
        pm.u.prefilled = (pd_proto_prefilled_t){
            .req_id = x->req_id,
            .first_token = first,
            .n_computed_tokens = x->n_tokens,
            .n_cached_tokens = 0,
            .prefill_ms = 1.5,
            .transfer_ms = 0.5,
            .recomputed_blocks = n_holes > 0 ? holes : NULL,
            .n_recomputed_blocks = n_holes,
        };
        fw_send(w, &pm);
        break;
    }
    case PD_PROTO_TYPE_PIN: {
        /* Pins what it holds: block i at index i, its hash as the checksum. */
        const pd_proto_pin_t *x = &m->u.pin;
        w->n_pin++;
        static uint32_t ids[4096];
        static uint64_t sums[4096];
        uint32_t n = x->n_block_hashes < 4096 ? x->n_block_hashes : 4096;
        for (uint32_t i = 0; i < n; i++) {
            bool has = fw_holds(w, x->block_hashes[i]);
            ids[i] = has ? i : PD_PROTO_NO_BLOCK;
            sums[i] = has ? x->block_hashes[i] : 0;
        }
        pd_proto_msg_t pm = {.type = PD_PROTO_TYPE_PINNED};
        pm.u.pinned = (pd_proto_pinned_t){x->req_id, PD_OK, ids, n, sums, n};
        fw_send(w, &pm);
        break;
    }
    case PD_PROTO_TYPE_WORKER_CANCEL: {
        w->n_cancel++;
        w->last_cancel = m->u.worker_cancel.req_id;
        fw_req_t *q = fw_req_get(w, m->u.worker_cancel.req_id, false);
        if (q != NULL)
            q->used = false;
        break;
    }
    default:
        break;
    }
}

/* Decode: stream every ready request to the end. */
static void fw_stream(fw_worker_t *w)
{
    if (w->hang)
        return;
    for (uint32_t i = 0; i < FW_MAX_REQS; i++) {
        fw_req_t *q = &w->reqs[i];
        if (!q->used || !q->ready)
            continue;
        uint32_t n =
            w->end_after > 0 && w->end_after < q->max_tokens ? w->end_after : q->max_tokens;
        for (uint32_t k = 0; k < n; k++) {
            pd_proto_msg_t t = {.type = PD_PROTO_TYPE_WORKER_TOKEN};
            t.u.worker_token.req_id = q->req_id;
            t.u.worker_token.index = k;
            t.u.worker_token.token = w->script != NULL ? w->script[k % w->n_script]
                                     : k == 0          ? q->first_token
                                                       : (int32_t)((q->req_id * 31 + k) % 500 + 3);
            t.u.worker_token.last = k + 1 == n;
            fw_send(w, &t);
        }
        if (w->end_after > 0) { /* dies before its done */
            q->used = false;
            continue;
        }
        pd_proto_msg_t d = {.type = PD_PROTO_TYPE_WORKER_DONE};
        d.u.worker_done.req_id = q->req_id;
        d.u.worker_done.finish_reason = PD_PROTO_FINISH_LENGTH;
        d.u.worker_done.output_tokens = q->max_tokens;
        d.u.worker_done.cache_read_input_tokens = q->n_cached_blocks * 16;
        d.u.worker_done.tpot_ms = 1.0;
        fw_send(w, &d);
        q->used = false;
    }
}

void fw_cluster_pump(fw_cluster_t *cl, int ms)
{
    uint64_t until = pd_time_now_ms() + (uint64_t)ms;
    do {
        zmq_pollitem_t items[FW_MAX_WORKER];
        uint32_t n = 0;
        for (uint32_t i = 0; i < cl->n; i++)
            if (cl->workers[i]->ctx != NULL)
                items[n++] = (zmq_pollitem_t){cl->workers[i]->dealer, 0, ZMQ_POLLIN, 0};
        zmq_poll(items, (int)n, 5);
        uint64_t now = pd_time_now_ms();
        for (uint32_t i = 0; i < cl->n; i++) {
            fw_worker_t *w = cl->workers[i];
            if (w->ctx == NULL)
                continue;
            for (;;) {
                zmq_msg_t part;
                zmq_msg_init(&part);
                if (zmq_msg_recv(&part, w->dealer, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&part);
                    break;
                }
                pd_proto_msg_t m;
                pd_proto_fault_t f;
                pd_status_t st = pd_proto_decode(&m, PD_PROTO_CHAN_WORKER, zmq_msg_data(&part),
                                                 zmq_msg_size(&part), &f);
                zmq_msg_close(&part);
                cr_assert_eq(st, PD_OK, "worker %s got a bad frame: %s", w->id, f.reason);
                fw_on_message(cl, w, &m);
                pd_proto_msg_cleanup(&m);
            }
            if (w->heartbeats && now >= w->last_hb_ms + 100) {
                w->last_hb_ms = now;
                pd_proto_msg_t hb = {.type = PD_PROTO_TYPE_HEARTBEAT};
                snprintf(hb.u.heartbeat.worker_id, sizeof(hb.u.heartbeat.worker_id), "%s", w->id);
                hb.u.heartbeat.epoch = w->epoch;
                hb.u.heartbeat.free_blocks = 1000;
                hb.u.heartbeat.kv_seq = w->seq;
                hb.u.heartbeat.stats = w->hb_stats;
                fw_send(w, &hb);
            }
        }
        for (uint32_t i = 0; i < cl->n; i++)
            if (cl->workers[i]->ctx != NULL && cl->workers[i]->role != PD_PROTO_ROLE_PREFILL)
                fw_stream(cl->workers[i]);
    } while (pd_time_now_ms() < until);
}

void fw_send_generate(pd_client_t *c, const char *id, const int32_t *tokens, uint32_t n,
                      uint32_t max_tokens, const char *tenant)
{
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_GENERATE};
    pd_proto_generate_t *g = &m.u.generate;
    snprintf(g->id, sizeof(g->id), "%s", id);
    g->tokens = tokens;
    g->n_tokens = n;
    g->max_tokens = max_tokens;
    g->sampling = (pd_proto_sampling_t){0.0, 1.0, 1};
    snprintf(g->tenant, sizeof(g->tenant), "%s", tenant ? tenant : "");
    g->cache.mode = PD_PROTO_CACHE_AUTO;
    g->stream = true;
    cr_assert_eq(pd_client_send(c, &m), PD_OK);
}

bool fw_wait_status(pd_client_t *c, fw_cluster_t *cl, int timeout_ms,
                    bool (*pred)(const pd_proto_status_reply_t *s, void *arg), void *arg)
{
    uint64_t until = pd_time_now_ms() + (uint64_t)timeout_ms;
    while (pd_time_now_ms() < until) {
        pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
        cr_assert_eq(pd_client_send(c, &m), PD_OK);
        uint64_t reply_until = pd_time_now_ms() + 1000;
        while (pd_time_now_ms() < reply_until) {
            if (cl != NULL)
                fw_cluster_pump(cl, 5);
            pd_proto_msg_t r;
            if (pd_client_recv(c, cl != NULL ? 0 : 20, &r, NULL) != PD_OK)
                continue;
            bool is_status = r.type == PD_PROTO_TYPE_STATUS_REPLY;
            bool ok = is_status && pred(&r.u.status_reply, arg);
            pd_proto_msg_cleanup(&r);
            if (ok)
                return true;
            if (is_status)
                break;
        }
        if (cl != NULL)
            fw_cluster_pump(cl, 20);
    }
    return false;
}
