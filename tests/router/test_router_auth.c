/* Worker authentication: pd-router with --worker-keys against fake workers that hold
 * listed keys and raw ZeroMQ peers that do not. */
#include "fake_worker.h"

#include "pd/hash.h"
#include "pd/router.h"
#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

typedef struct keypair {
    char pub[41];
    char sec[41];
} keypair_t;

static void keypair_new(keypair_t *k)
{
    cr_assert_eq(zmq_curve_keypair(k->pub, k->sec), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* A raw peer on the worker socket: a DEALER, with CURVE when secret is not NULL, and a
 * routing id of its choosing when rid is not NULL. */
static void *raw_peer(void *ctx, const char *endpoint, const char *server_pub, const char *secret,
                      const char *rid)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    cr_assert_not_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (rid != NULL)
        cr_assert_eq(zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid)), 0);
    if (secret != NULL) {
        char pub[41];
        cr_assert_eq(zmq_curve_public(pub, secret), 0);
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 41), 0);
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 41), 0);
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret, 41), 0);
    }
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    return s;
}

/* Send a well-formed register for id from a raw peer (an epoch of its own, a descriptor
 * and an events endpoint, as a real worker would). */
static void raw_register(void *s, const char *id, pd_proto_role_t role)
{
    static const unsigned char desc[] = {'e', 'v', 'i', 'l'};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_REGISTER};
    snprintf(m.u.reg.worker_id, sizeof(m.u.reg.worker_id), "%s", id);
    m.u.reg.role = role;
    m.u.reg.epoch = 424242;
    snprintf(m.u.reg.model_id, sizeof(m.u.reg.model_id), "test-model");
    m.u.reg.block_tokens = 16;
    m.u.reg.n_blocks = 1000;
    m.u.reg.xfer_desc = desc;
    m.u.reg.xfer_desc_bytes = sizeof(desc);
    snprintf(m.u.reg.events_endpoint, sizeof(m.u.reg.events_endpoint), "tcp://127.0.0.1:9");
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_proto_encode(&m, &w), PD_OK);
    /* The send queues until a connection completes its handshake, which a refused peer's
     * never does: never block on it. */
    zmq_send(s, pd_mp_writer_data(&w), pd_mp_writer_size(&w), ZMQ_DONTWAIT);
    pd_mp_writer_cleanup(&w);
}

/* Frames a raw peer receives within window_ms, pumping the fake workers meanwhile; the
 * last one decoded into *last (when not NULL and one came). */
static int raw_frames(void *s, fw_cluster_t *cl, int window_ms, pd_proto_msg_t *last)
{
    int n = 0;
    uint64_t until = pd_time_now_ms() + (uint64_t)window_ms;
    while (pd_time_now_ms() < until) {
        fw_cluster_pump(cl, 5);
        zmq_msg_t f;
        zmq_msg_init(&f);
        while (zmq_msg_recv(&f, s, ZMQ_DONTWAIT) >= 0) {
            n++;
            if (last != NULL) {
                pd_proto_msg_cleanup(last);
                cr_assert_eq(pd_proto_decode(last, PD_PROTO_CHAN_WORKER, zmq_msg_data(&f),
                                             zmq_msg_size(&f), NULL),
                             PD_OK);
            }
        }
        zmq_msg_close(&f);
    }
    return n;
}

/* The status reply's view of one worker. */
typedef struct worker_goal {
    const char *id;
    uint64_t epoch;    /* 0: any */
    uint32_t blocks;   /* directory blocks */
    bool want_present; /* false: the worker must not be listed */
} worker_goal_t;

static bool worker_is(const pd_proto_status_reply_t *s, void *arg)
{
    const worker_goal_t *g = arg;
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (strcmp(s->workers[i].id, g->id) != 0)
            continue;
        return g->want_present && (g->epoch == 0 || s->workers[i].epoch == g->epoch) &&
               s->workers[i].directory_blocks == g->blocks &&
               strcmp(s->workers[i].state, "ready") == 0;
    }
    return !g->want_present;
}

static bool wait_registered(fw_cluster_t *cl)
{
    uint64_t until = pd_time_now_ms() + 5000;
    for (;;) {
        bool all = true;
        for (uint32_t i = 0; i < cl->n; i++)
            all &= cl->workers[i]->registered;
        if (all)
            return true;
        if (pd_time_now_ms() >= until)
            return false;
        fw_cluster_pump(cl, 10);
    }
}

/* One generate from c to the end: true when it ended with done after n tokens. */
static bool generate_done(pd_client_t *c, fw_cluster_t *cl, const char *id, uint32_t n)
{
    int32_t tokens[20];
    for (int k = 0; k < 20; k++)
        tokens[k] = k + 5;
    fw_send_generate(c, id, tokens, 20, n, "t");
    uint64_t until = pd_time_now_ms() + 5000;
    uint32_t got = 0;
    while (pd_time_now_ms() < until) {
        fw_cluster_pump(cl, 2);
        pd_proto_msg_t m;
        while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
            bool done = m.type == PD_PROTO_TYPE_DONE, error = m.type == PD_PROTO_TYPE_ERROR;
            got += m.type == PD_PROTO_TYPE_TOKEN;
            pd_proto_msg_cleanup(&m);
            if (done || error)
                return done && got == n;
        }
    }
    return false;
}

Test(router_auth, strangers_get_nothing_and_a_live_id_keeps_its_key, .timeout = 60)
{
    keypair_t router, p_key, d_key, any_key, stranger;
    keypair_new(&router);
    keypair_new(&p_key);
    keypair_new(&d_key);
    keypair_new(&any_key);
    keypair_new(&stranger);
    char dir[] = "/tmp/pdkv-wauth-XXXXXX", secret_path[64], keys_path[64], text[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(secret_path, sizeof(secret_path), "%s/router.key", dir);
    snprintf(keys_path, sizeof(keys_path), "%s/workers", dir);
    snprintf(text, sizeof(text), "public %s\nsecret %s\n", router.pub, router.sec);
    write_file(secret_path, text);
    /* Two keys bound to their ids, one for any id. */
    snprintf(text, sizeof(text), "# id key\nprefill-0 %s\ndecode-0 %s\n%s\n", p_key.pub, d_key.pub,
             any_key.pub);
    write_file(keys_path, text);

    fw_router_t r;
    const char *const extra[] = {"--curve-secret-file", secret_path, "--worker-keys", keys_path,
                                 NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start_curve(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL, router.pub, p_key.sec);
    fw_worker_start_curve(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE, router.pub, d_key.sec);
    cr_assert(wait_registered(&cl), "keyed workers did not register in 5 s");

    /* The KV events come in over CURVE too: the directory lists decode-0's blocks. */
    int32_t tokens[32];
    for (int k = 0; k < 32; k++)
        tokens[k] = k + 1;
    uint64_t h[2];
    pd_block_hash_chain(pd_block_hash_root("t", "test-model"), tokens, 32, 16, h, 2);
    fw_cluster_pump(&cl, 100);
    fw_worker_store(&d0, h, 2);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    worker_goal_t live = {"decode-0", d0.epoch, 2, true};
    cr_assert(fw_wait_status(c, &cl, 5000, worker_is, &live),
              "decode-0's events never reached the directory over CURVE");
    cr_assert(generate_done(c, &cl, "before", 3));

    void *ctx = zmq_ctx_new();
    /* No key at all, even under the live worker's routing id: no handshake, no frame. */
    void *plain = raw_peer(ctx, r.worker_ep, NULL, NULL, "decode-0");
    /* A key the router does not list. */
    void *unlisted = raw_peer(ctx, r.worker_ep, router.pub, stranger.sec, NULL);
    /* A key listed for another worker, and the router's public key mistaken for another. */
    void *wrong_server = raw_peer(ctx, r.worker_ep, stranger.pub, any_key.sec, NULL);
    raw_register(plain, "decode-0", PD_PROTO_ROLE_DECODE);
    raw_register(unlisted, "decode-0", PD_PROTO_ROLE_DECODE);
    raw_register(wrong_server, "decode-0", PD_PROTO_ROLE_DECODE);
    /* Requests run meanwhile: none of their messages may reach the strangers. */
    cr_assert(generate_done(c, &cl, "during", 4));
    cr_assert_eq(raw_frames(plain, &cl, 1000, NULL), 0, "an unauthenticated peer got a frame");
    cr_assert_eq(raw_frames(unlisted, &cl, 200, NULL), 0, "an unlisted key got a frame");
    cr_assert_eq(raw_frames(wrong_server, &cl, 200, NULL), 0, "a wrong-server peer got a frame");

    /* Listed keys under a live worker's id: the key bound to prefill-0, and the key for any
     * id. Both are told why, and decode-0 stays as it was. */
    void *other_id = raw_peer(ctx, r.worker_ep, router.pub, p_key.sec, NULL);
    void *any_id = raw_peer(ctx, r.worker_ep, router.pub, any_key.sec, NULL);
    raw_register(other_id, "decode-0", PD_PROTO_ROLE_DECODE);
    raw_register(any_id, "decode-0", PD_PROTO_ROLE_DECODE);
    pd_proto_msg_t m = {0};
    cr_assert_eq(raw_frames(other_id, &cl, 500, &m), 1);
    cr_assert_eq(m.type, PD_PROTO_TYPE_WORKER_ERROR);
    cr_assert_eq(m.u.worker_error.code, PD_ERR_AUTH);
    pd_proto_msg_cleanup(&m);
    cr_assert_eq(raw_frames(any_id, &cl, 200, &m), 1);
    cr_assert_eq(m.type, PD_PROTO_TYPE_WORKER_ERROR);
    cr_assert_eq(m.u.worker_error.code, PD_ERR_AUTH);
    cr_assert(strstr(m.u.worker_error.message, "another key") != NULL, "%s",
              m.u.worker_error.message);
    pd_proto_msg_cleanup(&m);
    cr_assert(fw_wait_status(c, &cl, 2000, worker_is, &live),
              "decode-0 changed after refused registrations");
    cr_assert(generate_done(c, &cl, "after", 5));
    cr_assert_eq(d0.n_cancel, 0, "a refused registration cancelled decode-0's work");

    /* The key for any id registers under a free id. */
    raw_register(any_id, "decode-9", PD_PROTO_ROLE_DECODE);
    cr_assert_geq(raw_frames(any_id, &cl, 500, &m), 1);
    cr_assert_neq(m.type, PD_PROTO_TYPE_WORKER_ERROR);
    pd_proto_msg_cleanup(&m);

    zmq_close(plain);
    zmq_close(unlisted);
    zmq_close(wrong_server);
    zmq_close(other_id);
    zmq_close(any_id);
    zmq_ctx_term(ctx);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    unlink(secret_path);
    unlink(keys_path);
    rmdir(dir);
}

Test(router_auth, bad_worker_key_files_stop_the_router_at_start)
{
    char dir[] = "/tmp/pdkv-wauth-XXXXXX", secret_path[64], keys_path[64], text[256];
    keypair_t router;
    keypair_new(&router);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(secret_path, sizeof(secret_path), "%s/router.key", dir);
    snprintf(keys_path, sizeof(keys_path), "%s/workers", dir);
    write_file(secret_path, router.sec);
    write_file(keys_path, "decode-0 not-a-key\n");
    pd_router_config_t cfg;
    pd_router_t *rt = NULL;
    pd_router_config_defaults(&cfg);
    snprintf(cfg.client_endpoint, sizeof(cfg.client_endpoint), "tcp://127.0.0.1:*");
    snprintf(cfg.worker_endpoint, sizeof(cfg.worker_endpoint), "tcp://127.0.0.1:*");
    snprintf(cfg.curve_secret_file, sizeof(cfg.curve_secret_file), "%s", secret_path);
    snprintf(cfg.worker_keys_file, sizeof(cfg.worker_keys_file), "%s", keys_path);
    cr_assert_eq(pd_router_create(&cfg, &rt), PD_ERR_FORMAT);
    cr_assert_null(rt);
    /* Worker keys without the router's own secret: refused too. */
    cfg.curve_secret_file[0] = '\0';
    snprintf(text, sizeof(text), "decode-0 %s\n", router.pub);
    write_file(keys_path, text);
    cr_assert_eq(pd_router_create(&cfg, &rt), PD_ERR_INVALID_PARAM);
    unlink(secret_path);
    unlink(keys_path);
    rmdir(dir);
}
