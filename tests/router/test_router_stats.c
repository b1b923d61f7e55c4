/* pd-router's answers to what an HTTP gateway asks of it: `stats` (the workers' figures
 * summed, every worker's only for admin keys), `stop` (end a request now with `done`),
 * and client keys marked `gateway`, which name the tenant of each request. Fake workers
 * speak the real protocol over loopback; the router is a process with CURVE on. */
#include "fake_worker.h"

#include "pd/hash.h"
#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

typedef struct keys {
    char dir[64], secret_path[96], clients_path[96];
    char server_pub[41], server_sec[41];
    char pub[3][41], sec[3][41]; /* 0: admin, 1: plain, 2: gateway */
} keys_t;

static void keys_write(keys_t *k)
{
    snprintf(k->dir, sizeof(k->dir), "/tmp/pdkv-stats-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(k->dir));
    cr_assert_eq(zmq_curve_keypair(k->server_pub, k->server_sec), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(zmq_curve_keypair(k->pub[i], k->sec[i]), 0);
    snprintf(k->secret_path, sizeof(k->secret_path), "%s/router.key", k->dir);
    snprintf(k->clients_path, sizeof(k->clients_path), "%s/clients", k->dir);
    FILE *f = fopen(k->secret_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", k->server_sec);
    fclose(f);
    f = fopen(k->clients_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "ops %s admin\nalice %s\ngw %s gateway\n", k->pub[0], k->pub[1], k->pub[2]);
    fclose(f);
}

static void keys_remove(keys_t *k)
{
    unlink(k->secret_path);
    unlink(k->clients_path);
    rmdir(k->dir);
}

static void wait_registered(fw_cluster_t *cl)
{
    uint64_t until = pd_time_now_ms() + 5000;
    for (;;) {
        bool all = true;
        for (uint32_t i = 0; i < cl->n; i++)
            all &= cl->workers[i]->registered;
        if (all)
            return;
        cr_assert_lt(pd_time_now_ms(), until, "workers did not get 'registered' in 5 s");
        fw_cluster_pump(cl, 10);
    }
}

/* Pump the workers until c has a message (3 s); the message goes to m. */
static void recv_pumping(pd_client_t *c, fw_cluster_t *cl, pd_proto_msg_t *m)
{
    uint64_t until = pd_time_now_ms() + 3000;
    while (pd_client_recv(c, 0, m, NULL) != PD_OK) {
        cr_assert_lt(pd_time_now_ms(), until, "no answer from the router in 3 s");
        fw_cluster_pump(cl, 5);
    }
}

/* Ask for stats until the decode worker's heartbeat figures are in (3 s); the last reply
 * goes to m (the caller cleans it up). */
static void stats_until_fresh(pd_client_t *c, fw_cluster_t *cl, pd_proto_msg_t *m)
{
    uint64_t until = pd_time_now_ms() + 3000;
    for (;;) {
        pd_proto_msg_t q = {.type = PD_PROTO_TYPE_STATS};
        cr_assert_eq(pd_client_send(c, &q), PD_OK);
        recv_pumping(c, cl, m);
        cr_assert_eq(m->type, PD_PROTO_TYPE_STATS_REPLY);
        if (m->u.stats_reply.g2_blocks == 256 && m->u.stats_reply.hit_blocks == 7 + 70)
            return;
        cr_assert_lt(pd_time_now_ms(), until, "the heartbeats' stats never showed");
        pd_proto_msg_cleanup(m);
        fw_cluster_pump(cl, 20);
    }
}

Test(router_stats, sums_for_every_client_and_each_worker_for_admin_keys)
{
    keys_t k;
    keys_write(&k);
    fw_router_t r;
    const char *const extra[] = {"--curve-secret-file", k.secret_path, "--client-keys",
                                 k.clients_path, NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    static const pd_proto_worker_stats_t ps = {
        .g1_cached_blocks = 5, .hit_blocks = 7, .miss_blocks = 3, .xfer_bytes = 1u << 20};
    static const pd_proto_worker_stats_t ds = {.g1_cached_blocks = 11,
                                               .g2_blocks = 256,
                                               .g2_used_blocks = 9,
                                               .g3_blocks = 1024,
                                               .g3_used_blocks = 2,
                                               .hit_blocks = 70,
                                               .miss_blocks = 30};
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    p0.hb_stats = &ps;
    d0.hb_stats = &ds;
    wait_registered(&cl);

    pd_client_t *admin = NULL, *plain = NULL;
    cr_assert_eq(pd_client_connect_curve(r.client_ep, k.server_pub, k.sec[0], &admin), PD_OK);
    cr_assert_eq(pd_client_connect_curve(r.client_ep, k.server_pub, k.sec[1], &plain), PD_OK);
    pd_proto_msg_t m;
    stats_until_fresh(admin, &cl, &m);
    const pd_proto_stats_reply_t *s = &m.u.stats_reply;
    cr_assert_eq(s->n_prefill, 1);
    cr_assert_eq(s->n_decode, 1);
    cr_assert_eq(s->n_both, 0);
    cr_assert_eq(s->n_ready, 2);
    cr_assert_eq(s->g1_blocks, 2000); /* each fake registers 1000 and reports 1000 free */
    cr_assert_eq(s->g1_free_blocks, 2000);
    cr_assert_eq(s->g1_cached_blocks, 16);
    cr_assert_eq(s->g2_used_blocks, 9);
    cr_assert_eq(s->g3_blocks, 1024);
    cr_assert_eq(s->g3_used_blocks, 2);
    cr_assert_eq(s->miss_blocks, 33);
    cr_assert_eq(s->xfer_bytes, 1u << 20);
    cr_assert_eq(s->n_workers, 2, "an admin key sees every worker");
    for (uint32_t i = 0; i < 2; i++) {
        const pd_proto_stats_worker_t *w = &s->workers[i];
        bool prefill = strcmp(w->id, "prefill-0") == 0;
        cr_assert(prefill || strcmp(w->id, "decode-0") == 0, "unknown worker '%s'", w->id);
        cr_assert_eq(w->role, prefill ? PD_PROTO_ROLE_PREFILL : PD_PROTO_ROLE_DECODE);
        cr_assert_str_eq(w->state, "ready");
        cr_assert_eq(w->n_blocks, 1000);
        cr_assert_eq(memcmp(&w->stats, prefill ? &ps : &ds, sizeof(w->stats)), 0);
    }
    pd_proto_msg_cleanup(&m);

    /* Another key gets the same sums, and no worker one by one. */
    stats_until_fresh(plain, &cl, &m);
    cr_assert_eq(m.u.stats_reply.g1_cached_blocks, 16);
    cr_assert_eq(m.u.stats_reply.n_workers, 0);
    cr_assert_null(m.u.stats_reply.workers);
    pd_proto_msg_cleanup(&m);

    pd_client_destroy(&admin);
    pd_client_destroy(&plain);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    keys_remove(&k);
}

/* Send a generate of tokens[0..n) from c as tenant and read until its terminal message. */
static void generate(pd_client_t *c, fw_cluster_t *cl, const char *id, const int32_t *tokens,
                     uint32_t n, const char *tenant, pd_proto_msg_t *terminal)
{
    fw_send_generate(c, id, tokens, n, 2, tenant);
    for (;;) {
        recv_pumping(c, cl, terminal);
        if (terminal->type == PD_PROTO_TYPE_DONE || terminal->type == PD_PROTO_TYPE_ERROR)
            return;
        pd_proto_msg_cleanup(terminal);
    }
}

Test(router_stats, gateway_keys_name_the_tenant_and_stop_ends_with_done)
{
    keys_t k;
    keys_write(&k);
    fw_router_t r;
    const char *const extra[] = {"--curve-secret-file", k.secret_path, "--client-keys",
                                 k.clients_path, NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);

    /* decode holds tenant carol's first two blocks of this prompt. */
    int32_t tokens[40];
    for (int i = 0; i < 40; i++)
        tokens[i] = 5 * i + 2;
    uint64_t h[2];
    pd_block_hash_chain(pd_block_hash_root("carol", "test-model"), tokens, 32, 16, h, 2);
    fw_cluster_pump(&cl, 100);
    fw_worker_store(&d0, h, 2);
    fw_cluster_pump(&cl, 300);

    /* The gateway key's requests are carol's when they say so: her cache is read. A plain
     * key's request naming carol is alice's (its key's tenant) and reads nothing. */
    pd_client_t *gw = NULL, *plain = NULL;
    cr_assert_eq(pd_client_connect_curve(r.client_ep, k.server_pub, k.sec[2], &gw), PD_OK);
    cr_assert_eq(pd_client_connect_curve(r.client_ep, k.server_pub, k.sec[1], &plain), PD_OK);
    pd_proto_msg_t m;
    generate(gw, &cl, "g1", tokens, 40, "carol", &m);
    cr_assert_eq(m.type, PD_PROTO_TYPE_DONE);
    cr_assert_eq(m.u.done.usage.cache_read_input_tokens, 32);
    pd_proto_msg_cleanup(&m);
    generate(plain, &cl, "p1", tokens, 40, "carol", &m);
    cr_assert_eq(m.type, PD_PROTO_TYPE_DONE);
    cr_assert_eq(m.u.done.usage.cache_read_input_tokens, 0);
    pd_proto_msg_cleanup(&m);

    /* stop: a request decode holds (and never streams) ends with one `done`, reason stop,
     * and decode is told to let go. */
    d0.hang = true;
    uint32_t cancels = d0.n_cancel;
    fw_send_generate(gw, "g2", tokens, 40, 8, "carol");
    uint64_t until = pd_time_now_ms() + 3000;
    while (d0.n_reserve < 3 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_reserve, 3);
    pd_proto_msg_t stop = {.type = PD_PROTO_TYPE_STOP};
    snprintf(stop.u.stop.id, sizeof(stop.u.stop.id), "g2");
    cr_assert_eq(pd_client_send(gw, &stop), PD_OK);
    int n_done = 0;
    until = pd_time_now_ms() + 1000; /* and nothing after it */
    while (pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 5);
        while (pd_client_recv(gw, 0, &m, NULL) == PD_OK) {
            cr_assert_neq(m.type, PD_PROTO_TYPE_ERROR, "%s", m.u.error.message);
            if (m.type == PD_PROTO_TYPE_DONE) {
                n_done++;
                cr_assert_str_eq(m.u.done.id, "g2");
                cr_assert_eq(m.u.done.finish_reason, PD_PROTO_FINISH_STOP);
                cr_assert_eq(m.u.done.usage.cache_read_input_tokens, 32);
            }
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert_eq(n_done, 1);
    cr_assert_eq(d0.n_cancel, cancels + 1);

    /* A stop for a request that is over (or never was) is an error, as for cancel. */
    cr_assert_eq(pd_client_send(gw, &stop), PD_OK);
    recv_pumping(gw, &cl, &m);
    cr_assert_eq(m.type, PD_PROTO_TYPE_ERROR);
    cr_assert_eq(m.u.error.code, PD_ERR_NOT_FOUND);
    pd_proto_msg_cleanup(&m);

    pd_client_destroy(&gw);
    pd_client_destroy(&plain);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    keys_remove(&k);
}
