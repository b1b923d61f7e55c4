/* Work that nobody waits for is cancelled: pd-router as a process with fake workers
 * (docs/ARCHITECTURE.md, 11b). */
#include "fake_worker.h"

#include "pd/mp.h"
#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* The router's PD_ROUTER_SUSPECT_MIN_MS. */
#define PD_ROUTER_SUSPECT_MIN_MS_TEST 200

static void fx_wait_registered(fw_cluster_t *cl)
{
    uint64_t until = pd_time_now_ms() + 5000;
    bool all = false;
    while (!all && pd_time_now_ms() < until) {
        fw_cluster_pump(cl, 10);
        all = true;
        for (uint32_t i = 0; i < cl->n; i++)
            all = all && cl->workers[i]->registered;
    }
    cr_assert(all, "workers did not get 'registered' in 5 s");
}

/* pd-router (with extra arguments), a fake prefill and decode worker, both registered,
 * and a client connected to it. */
static pd_client_t *fx_up_1p1d(fw_router_t *r, const char *const *extra, fw_cluster_t *cl,
                               fw_worker_t *p0, fw_worker_t *d0)
{
    fw_router_start(r, extra);
    memset(p0, 0, sizeof(*p0));
    memset(d0, 0, sizeof(*d0));
    fw_worker_start(cl, p0, r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(cl, d0, r, "decode-0", PD_PROTO_ROLE_DECODE);
    fx_wait_registered(cl);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r->client_ep, &c), PD_OK);
    return c;
}

static bool fx_idle(const pd_proto_status_reply_t *s, void *arg)
{
    (void)arg;
    return s->requests_in_flight == 0;
}

Test(router_faults, messages_for_unknown_request_ids_are_answered_with_cancel)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fx_wait_registered(&cl);

    /* A token of a request the router never had, and a reservation it never asked for:
     * the worker must let them go. */
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_WORKER_TOKEN};
    m.u.worker_token.req_id = 4242;
    m.u.worker_token.index = 3;
    m.u.worker_token.token = 7;
    fw_worker_send(&d0, &m);
    uint64_t until = pd_time_now_ms() + 5000;
    while (d0.n_cancel < 1 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_cancel, 1, "no cancel for a token of an unknown request");
    cr_assert_eq(d0.last_cancel, 4242);

    pd_proto_msg_t res = {.type = PD_PROTO_TYPE_RESERVED};
    res.u.reserved.req_id = 4343;
    res.u.reserved.status = PD_OK;
    fw_worker_send(&d0, &res);
    pd_proto_msg_t pf = {.type = PD_PROTO_TYPE_PREFILLED};
    pf.u.prefilled.req_id = 4444;
    pf.u.prefilled.first_token = 1;
    fw_worker_send(&p0, &pf);
    until = pd_time_now_ms() + 5000;
    while ((d0.n_cancel < 2 || p0.n_cancel < 1) && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_cancel, 2);
    cr_assert_eq(d0.last_cancel, 4343);
    cr_assert_eq(p0.n_cancel, 1);
    cr_assert_eq(p0.last_cancel, 4444);

    /* A done needs none: the worker already let the request go. */
    pd_proto_msg_t dn = {.type = PD_PROTO_TYPE_WORKER_DONE};
    dn.u.worker_done.req_id = 4545;
    fw_worker_send(&d0, &dn);
    fw_cluster_pump(&cl, 300);
    cr_assert_eq(d0.n_cancel, 2);

    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router_faults, a_client_that_disconnects_has_its_requests_canceled_at_once)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fx_wait_registered(&cl);
    d0.hang = true; /* reserves, never streams: the request would run to its deadline */

    pd_client_t *gone = NULL, *watcher = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &gone), PD_OK);
    cr_assert_eq(pd_client_connect(r.client_ep, &watcher), PD_OK);
    int32_t tokens[32];
    for (int k = 0; k < 32; k++)
        tokens[k] = k + 3;
    fw_send_generate(gone, "a", tokens, 32, 16, NULL);
    fw_send_generate(gone, "b", tokens, 32, 16, NULL);
    uint64_t until = pd_time_now_ms() + 5000;
    while (d0.n_reserve < 2 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_reserve, 2);
    cr_assert_eq(d0.n_cancel, 0);

    /* The client leaves without a word. */
    uint64_t t0 = pd_time_now_ms();
    pd_client_destroy(&gone);
    until = t0 + 3000;
    while (d0.n_cancel < 2 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 5);
    uint64_t elapsed = pd_time_now_ms() - t0;
    /* Two cancels at least: one per request (a reply the worker sent meanwhile for a
     * request already ended is answered with one more). */
    cr_assert_geq(d0.n_cancel, 2, "the decode worker was told about %u of 2 requests", d0.n_cancel);
    cr_assert_lt(elapsed, 1000, "cancel took %llu ms", (unsigned long long)elapsed);
    cr_assert(fw_wait_status(watcher, &cl, 2000, fx_idle, NULL), "requests still in flight");

    /* Another client is served as before. */
    d0.hang = false;
    fw_send_generate(watcher, "c", tokens, 32, 4, NULL);
    bool done = false;
    until = pd_time_now_ms() + 5000;
    while (!done && pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 2);
        pd_proto_msg_t m;
        while (pd_client_recv(watcher, 0, &m, NULL) == PD_OK) {
            done = done || m.type == PD_PROTO_TYPE_DONE;
            cr_assert_neq(m.type, PD_PROTO_TYPE_ERROR);
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert(done);
    pd_client_destroy(&watcher);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

/* A decode worker that streamed a request's last token (flagged "last": EOS here, after 5
 * of 16) and died before its done: the tokens stand, the client gets its done, and the
 * request is not moved to the other decode worker (which would go on past the EOS). */
Test(router_faults, a_stream_that_ended_before_its_worker_died_is_done_not_moved)
{
    fw_router_t r;
    const char *const extra[] = {"--worker-timeout-ms", "600", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    fx_wait_registered(&cl);
    d0.end_after = d1.end_after = 5;

    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    int32_t tokens[32];
    for (int k = 0; k < 32; k++)
        tokens[k] = k + 3;
    fw_send_generate(c, "e", tokens, 32, 16, NULL);
    uint64_t until = pd_time_now_ms() + 5000;
    while (d0.n_reserve + d1.n_reserve < 1 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_reserve + d1.n_reserve, 1);
    fw_worker_t *dead = d0.n_reserve == 1 ? &d0 : &d1;
    fw_worker_t *spare = dead == &d0 ? &d1 : &d0;

    /* Tokens 0-4 stream, the last flagged; then the worker goes silent. */
    uint32_t n_tokens = 0;
    bool done = false, err = false;
    pd_proto_finish_t finish = PD_PROTO_FINISH_LENGTH;
    uint32_t done_tokens = 0;
    until = pd_time_now_ms() + 8000;
    while (!done && !err && pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 5);
        if (n_tokens == 5)
            dead->heartbeats = false;
        pd_proto_msg_t m;
        while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
            if (m.type == PD_PROTO_TYPE_TOKEN && strcmp(m.u.token.id, "e") == 0)
                n_tokens++;
            if (m.type == PD_PROTO_TYPE_DONE && strcmp(m.u.done.id, "e") == 0) {
                done = true;
                finish = m.u.done.finish_reason;
                done_tokens = m.u.done.n_tokens;
            }
            if (m.type == PD_PROTO_TYPE_ERROR && strcmp(m.u.error.id, "e") == 0)
                err = true;
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert(!err, "the request ended with an error");
    cr_assert(done, "no done within 8 s (%u tokens streamed)", n_tokens);
    cr_assert_eq(n_tokens, 5);
    cr_assert_eq(done_tokens, 5);
    cr_assert_eq(finish, PD_PROTO_FINISH_EOS, "finish %d", (int)finish);
    cr_assert_eq(spare->n_reserve, 0, "the finished request was moved to the other decode worker");
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

/* A journal line for request req_id of client rid: its generate frame (prompt of n
 * tokens, max_tokens) unless no_frame. */
static void fx_journal_accept(FILE *f, unsigned req_id, const char *rid, const char *id, uint32_t n,
                              uint32_t max_tokens, bool no_frame)
{
    fprintf(f, "A %u ", req_id);
    for (const char *p = rid; *p; p++)
        fprintf(f, "%02x", (unsigned char)*p);
    fprintf(f, " ");
    for (const char *p = id; *p; p++)
        fprintf(f, "%02x", (unsigned char)*p);
    if (!no_frame) {
        int32_t tokens[64];
        for (uint32_t k = 0; k < n; k++)
            tokens[k] = (int32_t)k + 3;
        pd_proto_msg_t m = {.type = PD_PROTO_TYPE_GENERATE};
        snprintf(m.u.generate.id, sizeof(m.u.generate.id), "%s", id);
        m.u.generate.tokens = tokens;
        m.u.generate.n_tokens = n;
        m.u.generate.max_tokens = max_tokens;
        m.u.generate.sampling = (pd_proto_sampling_t){0.0, 1.0, 1};
        m.u.generate.stream = true;
        pd_mp_writer_t w;
        pd_mp_writer_init(&w);
        cr_assert_eq(pd_proto_encode(&m, &w), PD_OK);
        fprintf(f, " ");
        const unsigned char *b = pd_mp_writer_data(&w);
        for (size_t i = 0; i < pd_mp_writer_size(&w); i++)
            fprintf(f, "%02x", b[i]);
        pd_mp_writer_cleanup(&w);
    }
    fprintf(f, "\n");
}

/* A router that starts on the journal of one that was killed: each request that can go
 * on is `accepted` again with `resumed` at the token its client has and continues with the
 * prompt and those tokens; one whose final token was streamed ends with `done` at once;
 * one it cannot continue gets one PD_ERR_PEER; ended and cut lines are not read. */
Test(router_faults, a_restarted_router_goes_on_with_the_requests_of_its_journal)
{
    char dir[] = "/tmp/pdkv-journal-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/router.journal", dir);
    const char *rid = "client-A";
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fx_journal_accept(f, 7, rid, "finished", 8, 16, false);
    fprintf(f, "T 7 - 5 6\nT 7 L 7\n");
    fx_journal_accept(f, 8, rid, "no-frame", 8, 16, true);
    fx_journal_accept(f, 9, rid, "ended", 8, 16, false);
    fprintf(f, "T 9 - 1\nE 9\n");
    fx_journal_accept(f, 10, rid, "goes-on", 20, 16, false);
    fprintf(f, "T 10 - 1 2\n");
    fprintf(f, "A 11 %s 00", "636c69656e742d41"); /* cut by the kill: no newline */
    fclose(f);

    fw_router_t r;
    const char *const extra[] = {"--journal", path, NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    d0.hang = true; /* reserve, never stream: the request stays where it went on */
    fx_wait_registered(&cl);

    void *ctx = zmq_ctx_new();
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &linger, sizeof(linger));
    cr_assert_eq(zmq_setsockopt(c, ZMQ_ROUTING_ID, rid, strlen(rid)), 0);
    cr_assert_eq(zmq_connect(c, r.client_ep), 0);
    /* The client also sends "goes-on" again, as one that saw no accepted would: it must
     * not run twice. */
    {
        int32_t prompt[20];
        for (uint32_t k = 0; k < 20; k++)
            prompt[k] = (int32_t)k + 3;
        pd_proto_msg_t g = {.type = PD_PROTO_TYPE_GENERATE};
        snprintf(g.u.generate.id, sizeof(g.u.generate.id), "goes-on");
        g.u.generate.tokens = prompt;
        g.u.generate.n_tokens = 20;
        g.u.generate.max_tokens = 16;
        g.u.generate.sampling = (pd_proto_sampling_t){0.0, 1.0, 1};
        g.u.generate.stream = true;
        pd_mp_writer_t w;
        pd_mp_writer_init(&w);
        cr_assert_eq(pd_proto_encode(&g, &w), PD_OK);
        cr_assert_eq(zmq_send(c, pd_mp_writer_data(&w), pd_mp_writer_size(&w), 0),
                     (int)pd_mp_writer_size(&w));
        pd_mp_writer_cleanup(&w);
    }

    int n_accepted = 0, n_done = 0, n_peer = 0, n_other = 0;
    uint32_t next_goes_on = 99, next_finished = 99, done_tokens = 0;
    pd_proto_finish_t finish = PD_PROTO_FINISH_LENGTH;
    uint64_t until = pd_time_now_ms() + 3000;
    while (pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 10);
        char buf[4096];
        int n;
        while ((n = zmq_recv(c, buf, sizeof(buf), ZMQ_DONTWAIT)) >= 0) {
            pd_proto_msg_t m;
            pd_proto_fault_t fault;
            cr_assert_eq(pd_proto_decode(&m, PD_PROTO_CHAN_CLIENT, buf, (size_t)n, &fault), PD_OK);
            if (m.type == PD_PROTO_TYPE_ACCEPTED) {
                bool again = !m.u.accepted.resumed && strcmp(m.u.accepted.id, "goes-on") == 0;
                cr_assert(m.u.accepted.resumed || again);
                n_accepted += !again; /* the repeat is answered with a plain accepted */
                if (m.u.accepted.resumed && strcmp(m.u.accepted.id, "goes-on") == 0)
                    next_goes_on = m.u.accepted.next_index;
                else if (strcmp(m.u.accepted.id, "finished") == 0)
                    next_finished = m.u.accepted.next_index;
                else
                    n_other++;
            } else if (m.type == PD_PROTO_TYPE_DONE && strcmp(m.u.done.id, "finished") == 0) {
                n_done++;
                done_tokens = m.u.done.n_tokens;
                finish = m.u.done.finish_reason;
                cr_assert_eq(m.u.done.tokens[0], 5);
                cr_assert_eq(m.u.done.tokens[2], 7);
            } else if (m.type == PD_PROTO_TYPE_ERROR && strcmp(m.u.error.id, "no-frame") == 0) {
                cr_assert_eq(m.u.error.code, PD_ERR_PEER);
                n_peer++;
            } else {
                n_other++;
            }
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert_eq(n_accepted, 2);
    cr_assert_eq(next_finished, 3);
    cr_assert_eq(next_goes_on, 2);
    cr_assert_eq(n_done, 1);
    cr_assert_eq(done_tokens, 3);
    cr_assert_eq(finish, PD_PROTO_FINISH_EOS, "finish %d", (int)finish);
    cr_assert_eq(n_peer, 1);
    cr_assert_eq(n_other, 0, "%d messages for ended, cut or unknown entries", n_other);
    /* It went on with the prompt and the two tokens the client has. */
    cr_assert_eq(d0.n_reserve, 1);
    bool found = false;
    for (int i = 0; i < FW_MAX_REQS; i++)
        found = found || (d0.reqs[i].used && d0.reqs[i].n_tokens == 22);
    cr_assert(found, "decode was not asked for prompt + 2 tokens");

    /* Its own journal holds the request that goes on, tokens included. */
    f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[8192];
    bool a = false, t = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        a = a || (line[0] == 'A' && strstr(line, " 676f65732d6f6e ") != NULL);
        t = t || strstr(line, " - 1 2\n") != NULL;
    }
    fclose(f);
    cr_assert(a && t, "the new journal lacks the request that went on");

    zmq_close(c);
    zmq_ctx_term(ctx);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    /* Stopped cleanly, it told every client: the journal ends every request it holds,
     * so that the next router goes on with none of them. */
    f = fopen(path, "r");
    cr_assert_not_null(f);
    unsigned long long a_ids[16], e_ids[16];
    int n_a = 0, n_e = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long id;
        if (line[0] == 'A' && sscanf(line, "A %llu", &id) == 1 && n_a < 16)
            a_ids[n_a++] = id;
        if (line[0] == 'E' && sscanf(line, "E %llu", &id) == 1 && n_e < 16)
            e_ids[n_e++] = id;
    }
    fclose(f);
    cr_assert_geq(n_a, 1);
    for (int i = 0; i < n_a; i++) {
        bool ended = false;
        for (int k = 0; k < n_e; k++)
            ended = ended || e_ids[k] == a_ids[i];
        cr_assert(ended, "request %llu is live in the journal of a router that stopped", a_ids[i]);
    }
    unlink(path);
    rmdir(dir);
}

/* A prefill worker whose KV push into a decode worker failed: the request waits for
 * that worker's heartbeats. While it lives (a link fault), the request ends with the
 * push's error; when it is dead, the request goes on on the other decode worker, though
 * that one is busier. Either way the suspect takes nothing new meanwhile. */
static void fx_failed_push(bool decode_dies)
{
    fw_router_t r;
    const char *const extra[] = {"--worker-timeout-ms", "800", "--heartbeat-ms", "100", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    memset(&p0, 0, sizeof(p0));
    memset(&d0, 0, sizeof(d0));
    memset(&d1, 0, sizeof(d1));
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    fx_wait_registered(&cl);
    d0.hang = d1.hang = true; /* requests stay where they are */

    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    int32_t tokens[64];
    for (int k = 0; k < 64; k++)
        tokens[k] = k + 3;
    /* A long request makes one decode worker the busier. */
    fw_send_generate(c, "busy", tokens, 64, 64, NULL);
    uint64_t until = pd_time_now_ms() + 5000;
    while ((d0.n_reserve + d1.n_reserve < 1 || p0.n_prefill < 1) && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 5);
    cr_assert_eq(d0.n_reserve + d1.n_reserve, 1);
    cr_assert_eq(p0.n_prefill, 1);
    fw_worker_t *busy = d0.n_reserve == 1 ? &d0 : &d1;
    fw_worker_t *idle = busy == &d0 ? &d1 : &d0;

    /* The next goes to the idle one, and its push fails. */
    p0.fail_push = PD_ERR_TIMEOUT;
    if (decode_dies)
        idle->heartbeats = false;
    uint64_t t0 = pd_time_now_ms();
    fw_send_generate(c, "pushed", tokens + 1, 32, 4, NULL);
    pd_status_t err = PD_OK;
    uint64_t err_ms = 0;
    until = pd_time_now_ms() + 5000;
    while (err == PD_OK && busy->n_reserve < 2 && pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 5);
        pd_proto_msg_t m;
        while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
            if (m.type == PD_PROTO_TYPE_ERROR) {
                err = m.u.error.code;
                err_ms = pd_time_now_ms() - t0;
            }
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert_eq(idle->n_reserve, 1);
    if (decode_dies) {
        cr_assert_eq(err, PD_OK, "the request failed: %s", pd_status_name(err));
        cr_assert_eq(busy->n_reserve, 2, "the request did not go on at the other decode worker");
        until = pd_time_now_ms() + 2000; /* its prefill follows the reservation */
        while (p0.n_prefill < 3 && pd_time_now_ms() < until)
            fw_cluster_pump(&cl, 5);
        cr_assert_eq(p0.n_prefill, 3, "prefill was asked %u times", p0.n_prefill);
    } else {
        cr_assert_eq(err, PD_ERR_TIMEOUT, "%s", pd_status_name(err));
        cr_assert_geq(err_ms, PD_ROUTER_SUSPECT_MIN_MS_TEST,
                      "failed after %llu ms, before a "
                      "heartbeat could tell",
                      (unsigned long long)err_ms);
        cr_assert_eq(busy->n_reserve, 1, "a request went on despite a live decode worker");
        cr_assert_eq(p0.n_prefill, 2);
        cr_assert_eq(idle->n_cancel, 1, "its reservation was not canceled");
    }
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

Test(router_faults, a_failed_kv_push_into_a_dead_decode_worker_moves_the_request)
{
    fx_failed_push(true);
}

Test(router_faults, a_failed_kv_push_into_a_live_decode_worker_fails_the_request)
{
    fx_failed_push(false);
}

/* A client that saw no accepted sends its request again (a router that died with it
 * unread): a router that has the request answers accepted again and runs it once. */
Test(router_faults, a_request_sent_again_runs_once)
{
    fw_router_t r;
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    pd_client_t *c = fx_up_1p1d(&r, NULL, &cl, &p0, &d0);
    int32_t tokens[32];
    for (int k = 0; k < 32; k++)
        tokens[k] = k + 3;
    fw_send_generate(c, "twice", tokens, 32, 6, NULL);
    fw_send_generate(c, "twice", tokens, 32, 6, NULL);
    int n_accepted = 0, n_done = 0, n_err = 0, n_tokens = 0;
    uint64_t until = pd_time_now_ms() + 3000;
    while (pd_time_now_ms() < until && n_done + n_err == 0) {
        fw_cluster_pump(&cl, 5);
        pd_proto_msg_t m;
        while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
            n_accepted += m.type == PD_PROTO_TYPE_ACCEPTED;
            n_tokens += m.type == PD_PROTO_TYPE_TOKEN;
            n_done += m.type == PD_PROTO_TYPE_DONE;
            n_err += m.type == PD_PROTO_TYPE_ERROR;
            pd_proto_msg_cleanup(&m);
        }
    }
    fw_cluster_pump(&cl, 300); /* anything more would come now */
    pd_proto_msg_t m;
    while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
        n_done += m.type == PD_PROTO_TYPE_DONE;
        n_err += m.type == PD_PROTO_TYPE_ERROR;
        n_tokens += m.type == PD_PROTO_TYPE_TOKEN;
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_accepted, 2);
    cr_assert_eq(n_err, 0);
    cr_assert_eq(n_done, 1, "%d done", n_done);
    cr_assert_eq(n_tokens, 6, "%d tokens: the request ran twice", n_tokens);
    cr_assert_eq(d0.n_reserve, 1);
    cr_assert_eq(p0.n_prefill, 1);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

/* Past --journal-compact-kb the journal is rewritten with only the requests in flight:
 * it does not grow with the requests a router has served. */
Test(router_faults, the_journal_is_compacted_to_the_requests_in_flight)
{
    char dir[] = "/tmp/pdkv-journal-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/router.journal", dir);
    fw_router_t r;
    const char *const extra[] = {"--journal", path, "--journal-compact-kb", "2", NULL};
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    pd_client_t *c = fx_up_1p1d(&r, extra, &cl, &p0, &d0);
    int32_t tokens[64];
    for (int k = 0; k < 64; k++)
        tokens[k] = k + 3;
    int n_done = 0;
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        fw_send_generate(c, id, tokens, 64, 8, NULL);
        uint64_t until = pd_time_now_ms() + 3000;
        bool done = false;
        while (!done && pd_time_now_ms() < until) {
            fw_cluster_pump(&cl, 5);
            pd_proto_msg_t m;
            while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
                done = done || m.type == PD_PROTO_TYPE_DONE;
                pd_proto_msg_cleanup(&m);
            }
        }
        n_done += done;
    }
    cr_assert_eq(n_done, 40);
    fw_cluster_pump(&cl, 100); /* the last end lines are written */
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[8192];
    int n_a = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n_a += line[0] == 'A';
    long size = ftell(f);
    fclose(f);
    /* Each request writes about 0.5 KB: 40 of them are 20 KB uncompacted. */
    cr_assert_lt(n_a, 10, "%d requests in a journal compacted at 2 KB", n_a);
    cr_assert_lt(size, 8 * 1024, "the journal is %ld bytes", size);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    unlink(path);
    rmdir(dir);
}
