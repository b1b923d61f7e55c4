/* Work that nobody waits for is cancelled: pd-router as a process with fake workers
 * (docs/ARCHITECTURE.md, 11b). */
#include "fake_worker.h"

#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

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
    cr_assert_geq(d0.n_cancel, 2, "the decode worker was told about %u of 2 requests",
                  d0.n_cancel);
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
