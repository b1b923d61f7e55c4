/* pd-router as a process, with fake workers speaking the real protocol over loopback. */
#include "router_test_util.h"

/* A manifest that says nothing about the router starts it as pd-router with no options
 * does: the two sets of defaults agree. */
Test(router, manifest_defaults_are_the_routers)
{
    pd_manifest_t m;
    pd_router_config_t c;
    pd_manifest_defaults(&m);
    pd_router_config_defaults(&c);
    cr_assert_eq(m.max_queue, c.max_queue);
    cr_assert_eq(m.min_cached_prefix, c.min_cached_prefix_tokens);
    cr_assert_eq(m.block_tokens, c.block_tokens);
    cr_assert_eq(m.worker_timeout_ms, c.worker_timeout_ms);
    cr_assert_eq(m.request_timeout_ms, c.request_timeout_ms);
    cr_assert_str_eq(m.policy, c.policy == PD_ROUTER_POLICY_KV ? "kv" : "rr");
}

Test(router, every_request_ends_exactly_once_under_concurrency)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);

    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    static seen_t s[N_CONC];
    memset(s, 0, sizeof(s));
    int32_t tokens[40];
    for (int i = 0; i < N_CONC; i++) {
        snprintf(s[i].id, sizeof(s[i].id), "req-%d", i);
        s[i].tokens_in_order = true;
        for (int k = 0; k < 40; k++)
            tokens[k] = 1 + i * 40 + k;
        fw_send_generate(c, s[i].id, tokens, 40, 1 + (uint32_t)i % 8, NULL);
    }
    run_until_terminal(c, &cl, s, N_CONC, 10000, 300);
    for (int i = 0; i < N_CONC; i++) {
        cr_assert_eq(s[i].accepted, 1, "%s accepted %d times", s[i].id, s[i].accepted);
        cr_assert_eq(s[i].n_done, 1, "%s: %d done, %d error (%s)", s[i].id, s[i].n_done,
                     s[i].n_error, pd_status_name(s[i].error_code));
        cr_assert_eq(s[i].n_error, 0);
        cr_assert(s[i].tokens_in_order, "%s tokens out of order", s[i].id);
        cr_assert_eq(s[i].n_tokens, 1 + (uint32_t)i % 8);
        cr_assert(s[i].done_matches_stream, "%s done.tokens differ from the stream", s[i].id);
        cr_assert_eq(s[i].usage.output_tokens, s[i].n_tokens);
        cr_assert_eq(s[i].usage.input_tokens, 40);
        cr_assert(s[i].timings.ttft_ms > 0 && s[i].timings.total_ms >= s[i].timings.ttft_ms);
        cr_assert_float_eq(s[i].timings.prefill_ms, 1.5, 1e-9);
    }
    /* Both decode workers were used; each reserve got one prefill. */
    cr_assert_gt(d0.n_reserve, 0);
    cr_assert_gt(d1.n_reserve, 0);
    cr_assert_eq(d0.n_reserve + d1.n_reserve, N_CONC);
    cr_assert_eq(p0.n_prefill, N_CONC);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

Test(router, malformed_requests_get_errors_and_the_next_is_served)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    void *sock = pd_client_socket(c);

    /* Garbage bytes, the array bomb, two frames: each answered with an error, id "". */
    const unsigned char bomb[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
    const char garbage[] = "not msgpack at all";
    zmq_send(sock, garbage, sizeof(garbage), 0);
    zmq_send(sock, bomb, sizeof(bomb), 0);
    zmq_send(sock, "a", 1, ZMQ_SNDMORE);
    zmq_send(sock, "b", 1, 0);
    pd_status_t expect[3] = {PD_ERR_PROTO, PD_ERR_LIMIT, PD_ERR_PROTO};
    for (int i = 0; i < 3; i++) {
        pd_proto_msg_t m;
        cr_assert_eq(pd_client_recv(c, 3000, &m, NULL), PD_OK, "no reply to bad frame %d", i);
        cr_assert_eq(m.type, PD_PROTO_TYPE_ERROR);
        cr_assert_eq(m.u.error.code, expect[i], "frame %d: %s", i, pd_status_name(m.u.error.code));
        cr_assert_str_eq(m.u.error.id, "");
        pd_proto_msg_cleanup(&m);
    }

    /* A well-formed frame over a limit keeps its id in the error. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 5);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "id");
    pd_mp_put_str(&w, "too-long");
    pd_mp_put_str(&w, "tokens");
    pd_mp_put_array(&w, 1);
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "max_tokens");
    pd_mp_put_u64(&w, 100000);
    zmq_send(sock, pd_mp_writer_data(&w), pd_mp_writer_size(&w), 0);
    pd_mp_writer_cleanup(&w);
    pd_proto_msg_t m;
    cr_assert_eq(pd_client_recv(c, 3000, &m, NULL), PD_OK);
    cr_assert_eq(m.type, PD_PROTO_TYPE_ERROR);
    cr_assert_eq(m.u.error.code, PD_ERR_LIMIT);
    cr_assert_str_eq(m.u.error.id, "too-long");
    pd_proto_msg_cleanup(&m);

    /* A text prompt without --tokenizer is refused politely. */
    pd_proto_msg_t g = {.type = PD_PROTO_TYPE_GENERATE};
    snprintf(g.u.generate.id, sizeof(g.u.generate.id), "text");
    g.u.generate.prompt = "hello";
    g.u.generate.prompt_bytes = 5;
    g.u.generate.max_tokens = 2;
    g.u.generate.sampling = (pd_proto_sampling_t){1.0, 0.9, 0};
    cr_assert_eq(pd_client_send(c, &g), PD_OK);
    cr_assert_eq(pd_client_recv(c, 3000, &m, NULL), PD_OK);
    cr_assert_eq(m.type, PD_PROTO_TYPE_ERROR);
    cr_assert_eq(m.u.error.code, PD_ERR_INVALID_PARAM);
    pd_proto_msg_cleanup(&m);

    /* And the next good request is served. */
    seen_t s[1] = {{.id = "good", .tokens_in_order = true}};
    int32_t tokens[20];
    for (int k = 0; k < 20; k++)
        tokens[k] = k + 1;
    fw_send_generate(c, "good", tokens, 20, 3, NULL);
    run_until_terminal(c, &cl, s, 1, 5000, 100);
    cr_assert_eq(s[0].n_done, 1);
    cr_assert_eq(s[0].n_tokens, 3);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router, full_queue_answers_overloaded_and_deadlines_end_the_rest)
{
    fw_router_t r;
    const char *const extra[] = {"--max-queue", "2", "--request-timeout-ms", "500", NULL};
    fw_router_start(&r, extra);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    /* No workers: requests wait in the queue. */
    seen_t s[3] = {{.id = "q0"}, {.id = "q1"}, {.id = "q2"}};
    int32_t tokens[4] = {1, 2, 3, 4};
    for (int i = 0; i < 3; i++)
        fw_send_generate(c, s[i].id, tokens, 4, 2, NULL);
    uint64_t t0 = pd_time_now_ms();
    run_until_terminal(c, NULL, s, 3, 5000, 200);
    uint64_t elapsed = pd_time_now_ms() - t0;
    cr_assert_eq(s[0].accepted, 1);
    cr_assert_eq(s[1].accepted, 1);
    cr_assert_eq(s[2].accepted, 0);
    cr_assert_eq(s[2].n_error, 1);
    cr_assert_eq(s[2].error_code, PD_ERR_OVERLOADED);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(s[i].n_error, 1);
        cr_assert_eq(s[i].n_done, 0);
        cr_assert_eq(s[i].error_code, PD_ERR_TIMEOUT, "%s", pd_status_name(s[i].error_code));
    }
    cr_assert_lt(elapsed, 3000);
    pd_client_destroy(&c);
    fw_router_stop(&r);
}

Test(router, dead_worker_ends_its_requests_and_cancels_the_other_side)
{
    fw_router_t r;
    const char *const extra[] = {"--worker-timeout-ms", "400", "--heartbeat-ms", "100", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    d0.hang = true;
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    seen_t s[4] = {{.id = "a"}, {.id = "b"}, {.id = "c"}, {.id = "d"}};
    int32_t tokens[32];
    for (int k = 0; k < 32; k++)
        tokens[k] = k + 5;
    for (int i = 0; i < 4; i++)
        fw_send_generate(c, s[i].id, tokens, 32, 4, NULL);
    /* Let them reach decode, then decode goes silent. */
    uint64_t until = pd_time_now_ms() + 3000;
    while (d0.n_reserve < 4 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert_eq(d0.n_reserve, 4);
    d0.heartbeats = false;
    uint64_t t0 = pd_time_now_ms();
    run_until_terminal(c, &cl, s, 4, 3000, 200);
    uint64_t elapsed = pd_time_now_ms() - t0;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s[i].n_error, 1, "%s: %d errors %d done", s[i].id, s[i].n_error, s[i].n_done);
        cr_assert_eq(s[i].n_done, 0);
        cr_assert_eq(s[i].error_code, PD_ERR_PEER, "%s", pd_status_name(s[i].error_code));
    }
    cr_assert_lt(elapsed, 2000, "errors took %llu ms", (unsigned long long)elapsed);
    /* The prefill side was told to release each request (its prefilled already came, but
     * cancel is idempotent and sent on every failure path). */
    cr_assert_eq(p0.n_cancel, 4);
    /* A new request still works once a healthy decode registers. */
    static fw_worker_t d1;
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    seen_t s2[1] = {{.id = "after", .tokens_in_order = true}};
    fw_send_generate(c, "after", tokens, 32, 2, NULL);
    run_until_terminal(c, &cl, s2, 1, 3000, 50);
    cr_assert_eq(s2[0].n_done, 1);
    cr_assert_str_eq(s2[0].decode_worker, "decode-1");
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

Test(router, survives_garbage_from_workers_and_their_events)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    fw_cluster_pump(&cl, 100);

    /* A stranger on the worker socket, a registered worker sending junk, junk events. */
    void *ctx = zmq_ctx_new();
    void *bad = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(bad, ZMQ_LINGER, &linger, sizeof(linger));
    cr_assert_eq(zmq_connect(bad, r.worker_ep), 0);
    const unsigned char bomb[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
    zmq_send(bad, bomb, sizeof(bomb), 0);
    zmq_send(bad, "junk", 4, ZMQ_SNDMORE);
    zmq_send(bad, "more junk", 9, 0);
    zmq_send(d0.dealer, "\xc1\xc1", 2, 0);
    zmq_send(d0.pub, bomb, sizeof(bomb), 0);
    zmq_send(d0.pub, "\x81\xa1k", 3, 0);
    /* A token for a request that does not exist, and a reserved for one either. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t t = {.type = PD_PROTO_TYPE_WORKER_TOKEN};
    t.u.worker_token = (pd_proto_worker_token_t){999, 0, 5, false};
    cr_assert_eq(pd_proto_encode(&t, &w), PD_OK);
    zmq_send(d0.dealer, pd_mp_writer_data(&w), pd_mp_writer_size(&w), 0);
    pd_mp_writer_cleanup(&w);
    fw_cluster_pump(&cl, 200);

    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    seen_t s[1] = {{.id = "ok", .tokens_in_order = true}};
    int32_t tokens[16];
    for (int k = 0; k < 16; k++)
        tokens[k] = k + 1;
    fw_send_generate(c, "ok", tokens, 16, 4, NULL);
    run_until_terminal(c, &cl, s, 1, 3000, 50);
    cr_assert_eq(s[0].n_done, 1);
    cr_assert_eq(s[0].n_tokens, 4);
    pd_client_destroy(&c);
    zmq_close(bad);
    zmq_ctx_term(ctx);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router, colocated_worker_serves_both_sides)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t b0;
    fw_worker_start(&cl, &b0, &r, "both-0", PD_PROTO_ROLE_BOTH);
    wait_registered(&cl);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    seen_t s[1] = {{.id = "co", .tokens_in_order = true}};
    int32_t tokens[50];
    for (int k = 0; k < 50; k++)
        tokens[k] = k + 1;
    fw_send_generate(c, "co", tokens, 50, 5, NULL);
    run_until_terminal(c, &cl, s, 1, 3000, 50);
    cr_assert_eq(s[0].n_done, 1);
    cr_assert_eq(s[0].n_tokens, 5);
    cr_assert_eq(b0.n_reserve, 1);
    cr_assert_eq(b0.n_prefill, 1);
    cr_assert_str_eq(s[0].decode_worker, "both-0");
    pd_client_destroy(&c);
    fw_worker_stop(&b0);
    fw_router_stop(&r);
}

Test(router, client_cancel_ends_the_request_and_releases_workers)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    d0.hang = true;
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    seen_t s[1] = {{.id = "x"}};
    int32_t tokens[16] = {1};
    fw_send_generate(c, "x", tokens, 16, 4, NULL);
    uint64_t until = pd_time_now_ms() + 3000;
    while (d0.n_reserve < 1 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_CANCEL};
    snprintf(m.u.cancel.id, sizeof(m.u.cancel.id), "x");
    cr_assert_eq(pd_client_send(c, &m), PD_OK);
    run_until_terminal(c, &cl, s, 1, 3000, 100);
    cr_assert_eq(s[0].n_error, 1);
    cr_assert_eq(s[0].error_code, PD_ERR_CANCELED);
    cr_assert_eq(d0.n_cancel, 1);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router, lost_trailing_event_is_recovered_by_heartbeat_seq)
{
    fw_router_t r;
    const char *const extra[] = {"--heartbeat-ms", "100", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t d0;
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    dir_goal_t empty = {"decode-0", 0};
    cr_assert(fw_wait_status(c, &cl, 3000, worker_has_blocks, &empty));
    uint32_t resyncs = d0.n_resync;
    const uint64_t h[3] = {42, 43, 44};
    fw_worker_store_lost(&d0, h, 3);
    dir_goal_t goal = {"decode-0", 3};
    cr_assert(fw_wait_status(c, &cl, 5000, worker_has_blocks, &goal),
              "the lost event was never recovered");
    cr_assert_gt(d0.n_resync, resyncs);
    pd_client_destroy(&c);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router, malformed_worker_message_for_a_request_fails_it_at_once)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    d0.hang = true;
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    seen_t s[1] = {{.id = "m"}};
    int32_t tokens[16] = {1};
    fw_send_generate(c, "m", tokens, 16, 4, NULL);
    uint64_t until = pd_time_now_ms() + 3000;
    while (d0.n_reserve < 1 && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    uint64_t req_id = 0;
    for (int i = 0; i < FW_MAX_REQS; i++)
        if (d0.reqs[i].used)
            req_id = d0.reqs[i].req_id;
    cr_assert_neq(req_id, 0);
    /* A token whose index is a string. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 5);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "token");
    pd_mp_put_str(&w, "req_id");
    pd_mp_put_u64(&w, req_id);
    pd_mp_put_str(&w, "index");
    pd_mp_put_str(&w, "zero");
    pd_mp_put_str(&w, "token");
    pd_mp_put_u64(&w, 5);
    zmq_send(d0.dealer, pd_mp_writer_data(&w), pd_mp_writer_size(&w), 0);
    pd_mp_writer_cleanup(&w);
    uint64_t t0 = pd_time_now_ms();
    run_until_terminal(c, &cl, s, 1, 3000, 100);
    cr_assert_eq(s[0].n_error, 1);
    cr_assert_eq(s[0].error_code, PD_ERR_PROTO);
    cr_assert_lt(pd_time_now_ms() - t0, 1500);
    cr_assert_eq(d0.n_cancel, 1);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(router, requests_wait_for_room_and_all_finish)
{
    fw_router_t r;
    const char *const extra[] = {"--max-inflight", "2", "--policy", "rr", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    enum { N = 40 };
    static seen_t s[N];
    memset(s, 0, sizeof(s));
    int32_t tokens[24];
    for (int k = 0; k < 24; k++)
        tokens[k] = k + 9;
    for (int i = 0; i < N; i++) {
        snprintf(s[i].id, sizeof(s[i].id), "w%d", i);
        s[i].tokens_in_order = true;
        fw_send_generate(c, s[i].id, tokens, 24, 3, NULL);
    }
    run_until_terminal(c, &cl, s, N, 10000, 200);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(s[i].n_done, 1, "%s: %d done %d error", s[i].id, s[i].n_done, s[i].n_error);
        cr_assert_eq(s[i].n_error, 0);
        cr_assert(s[i].tokens_in_order && s[i].done_matches_stream);
    }
    cr_assert_eq(d0.n_reserve, N);
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(router, curve_clients_act_as_their_listed_tenant_and_strangers_get_nothing)
{
    char server_pub[41], server_sec[41], a_pub[41], a_sec[41], x_pub[41], x_sec[41];
    cr_assert_eq(zmq_curve_keypair(server_pub, server_sec), 0);
    /* Z85 keys may hold '#', which must not read as a comment in the keys file. */
    do
        cr_assert_eq(zmq_curve_keypair(a_pub, a_sec), 0);
    while (strchr(a_pub, '#') == NULL);
    cr_assert_eq(zmq_curve_keypair(x_pub, x_sec), 0);
    char admin_pub[41], admin_sec[41];
    cr_assert_eq(zmq_curve_keypair(admin_pub, admin_sec), 0);
    char dir[] = "/tmp/pdkv-auth-XXXXXX", secret_path[64], keys_path[64], text[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(secret_path, sizeof(secret_path), "%s/router.key", dir);
    snprintf(keys_path, sizeof(keys_path), "%s/clients", dir);
    snprintf(text, sizeof(text), "%s\n", server_sec);
    write_file(secret_path, text);
    snprintf(text, sizeof(text), "# tenant key\ntenant-a %s\nops %s admin\n", a_pub, admin_pub);
    write_file(keys_path, text);

    fw_router_t r;
    const char *const extra[] = {"--curve-secret-file", secret_path, "--client-keys", keys_path,
                                 NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    int32_t tokens[40];
    for (int k = 0; k < 40; k++)
        tokens[k] = 3 * k + 1;
    uint64_t h[2];
    pd_block_hash_chain(pd_block_hash_root("tenant-a", "test-model"), tokens, 32, 16, h, 2);
    fw_cluster_pump(&cl, 100);
    fw_worker_store(&d0, h, 2);

    /* The directory's block counts: an admin key sees them, a tenant's key does not. */
    pd_client_t *c = NULL, *admin = NULL;
    cr_assert_eq(pd_client_connect_curve(r.client_ep, server_pub, admin_sec, &admin), PD_OK);
    dir_goal_t goal = {"decode-0", 2};
    cr_assert(fw_wait_status(admin, &cl, 5000, worker_has_blocks, &goal));
    pd_client_destroy(&admin);
    cr_assert_eq(pd_client_connect_curve(r.client_ep, server_pub, a_sec, &c), PD_OK);
    dir_goal_t hidden = {"decode-0", 0};
    cr_assert(fw_wait_status(c, &cl, 5000, worker_has_blocks, &hidden),
              "a tenant's key saw the directory's block counts");

    /* The listed client: served, and its body's tenant is ignored. */
    seen_t s[1] = {{.id = "auth", .tokens_in_order = true}};
    fw_send_generate(c, "auth", tokens, 40, 2, "someone-else");
    run_until_terminal(c, &cl, s, 1, 3000, 50);
    cr_assert_eq(s[0].n_done, 1);
    cr_assert_eq(s[0].usage.cache_read_input_tokens, 32);
    pd_client_destroy(&c);

    /* An unlisted key and a plain client get no answer at all. */
    pd_client_t *x = NULL, *plain = NULL;
    cr_assert_eq(pd_client_connect_curve(r.client_ep, server_pub, x_sec, &x), PD_OK);
    cr_assert_eq(pd_client_connect(r.client_ep, &plain), PD_OK);
    pd_proto_msg_t st = {.type = PD_PROTO_TYPE_STATUS};
    cr_assert_eq(pd_client_send(x, &st), PD_OK);
    cr_assert_eq(pd_client_send(plain, &st), PD_OK);
    uint64_t until = pd_time_now_ms() + 800;
    while (pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 20);
    pd_proto_msg_t m;
    cr_assert_eq(pd_client_recv(x, 0, &m, NULL), PD_ERR_TIMEOUT);
    cr_assert_eq(pd_client_recv(plain, 0, &m, NULL), PD_ERR_TIMEOUT);
    pd_client_destroy(&x);
    pd_client_destroy(&plain);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    unlink(secret_path);
    unlink(keys_path);
    rmdir(dir);
}
