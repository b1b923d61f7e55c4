/* pd-router's KV-aware policy with fake workers: the holder of a prefix is picked, tenants do
 * not share blocks, a busy holder is pinned for prefill to read, and load counts for
 * decode as for prefill. */
#include "router_test_util.h"

Test(router, kv_policy_picks_the_holder_and_tenants_do_not_share)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);

    /* decode-1 (the later slot) holds tenant A's 8-block prefix. */
    int32_t tokens[130];
    for (int k = 0; k < 130; k++)
        tokens[k] = 7 * k + 3;
    uint64_t ha[8];
    pd_block_hash_chain(pd_block_hash_root("tenant-a", "test-model"), tokens, 128, 16, ha, 8);
    fw_cluster_pump(&cl, 100); /* let the SUB connect before publishing */
    fw_worker_store(&d1, ha, 8);
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    dir_goal_t goal = {"decode-1", 8};
    cr_assert(fw_wait_status(c, &cl, 5000, worker_has_blocks, &goal),
              "the directory never listed decode-1's 8 blocks");

    seen_t s[2] = {{.id = "A", .tokens_in_order = true}, {.id = "B", .tokens_in_order = true}};
    fw_send_generate(c, "A", tokens, 130, 2, "tenant-a");
    run_until_terminal(c, &cl, s, 1, 3000, 50);
    cr_assert_eq(s[0].n_done, 1);
    cr_assert_str_eq(s[0].decode_worker, "decode-1");
    cr_assert_eq(s[0].usage.cache_read_input_tokens, 128);

    /* Same tokens, tenant B: no hit anywhere; the tie goes round-robin, to the worker
     * after the previous pick (decode-1), i.e. decode-0. */
    fw_send_generate(c, "B", tokens, 130, 2, "tenant-b");
    run_until_terminal(c, &cl, s + 1, 1, 3000, 50);
    cr_assert_eq(s[1].n_done, 1);
    cr_assert_str_eq(s[1].decode_worker, "decode-0");
    cr_assert_eq(s[1].usage.cache_read_input_tokens, 0);

    /* More cold prompts, one at a time on an idle cluster: they alternate rather than
     * all landing on the first slot. */
    static const char *const tenants[4] = {"tenant-c", "tenant-d", "tenant-e", "tenant-f"};
    for (int i = 0; i < 4; i++) {
        seen_t t = {.tokens_in_order = true};
        snprintf(t.id, sizeof(t.id), "C%d", i);
        fw_send_generate(c, t.id, tokens, 130, 2, tenants[i]);
        run_until_terminal(c, &cl, &t, 1, 3000, 50);
        cr_assert_eq(t.n_done, 1);
        cr_assert_str_eq(t.decode_worker, i % 2 == 0 ? "decode-1" : "decode-0");
    }
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

/* A worker that holds the prefix but has no room for the request (here: one request in
 * flight with --max-inflight 1) is not chosen for it, but pinned as a holder: prefill is
 * told where its blocks are, and the holder's pins are cancelled once prefill answered.
 * The holder lost block 3 since the directory heard of it: prefill reports recomputing
 * it, and the client's done and the router's status say so. */
static bool holder_counted(const pd_proto_status_reply_t *s, void *arg)
{
    (void)arg;
    return s->holder_reads == 1 && s->recomputed_blocks == 1;
}

Test(router, a_busy_holder_is_pinned_for_prefill_to_read)
{
    fw_router_t r;
    const char *const extra[] = {"--max-inflight", "1", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    int32_t tokens[130];
    for (int k = 0; k < 130; k++)
        tokens[k] = 5 * k + 1;
    uint64_t ha[8];
    pd_block_hash_chain(pd_block_hash_root("t", "test-model"), tokens, 128, 16, ha, 8);
    /* decode-1 also holds the busy request's prefix, so that KV routing sends it there. */
    uint64_t hb[2];
    pd_block_hash_chain(pd_block_hash_root("other", "test-model"), tokens, 32, 16, hb, 2);
    fw_cluster_pump(&cl, 100);
    fw_worker_store(&d1, ha, 8);
    fw_worker_store(&d1, hb, 2);
    d1.held[3] = 0; /* lost without an event */
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    dir_goal_t goal = {"decode-1", 10};
    cr_assert(fw_wait_status(c, &cl, 5000, worker_has_blocks, &goal));
    /* Occupy decode-1 with another tenant's request that never finishes. */
    d1.hang = true;
    seen_t busy = {.id = "busy", .tokens_in_order = true};
    fw_send_generate(c, "busy", tokens, 40, 2, "other");
    run_until_terminal(c, &cl, &busy, 1, 300, 0); /* reads its accepted; it never ends */
    cr_assert_eq(busy.accepted, 1);
    cr_assert_eq(d1.n_reserve, 1, "the first request should go to the holder");
    /* The prefix's request: decode-1 is full, decode-0 takes it, decode-1 holds. */
    seen_t s = {.id = "A", .tokens_in_order = true};
    fw_send_generate(c, "A", tokens, 130, 2, "t");
    run_until_terminal(c, &cl, &s, 1, 3000, 50);
    cr_assert_eq(s.n_done, 1);
    cr_assert_str_eq(s.decode_worker, "decode-0");
    cr_assert_eq(d1.n_pin, 1, "decode-1 was not asked to pin");
    cr_assert_eq(p0.last_src, 8, "prefill was told of %u holder blocks", p0.last_src);
    cr_assert_str_eq(p0.last_src_id, "decode-1");
    cr_assert_eq(s.n_recomputed, 1);
    cr_assert_eq(s.recomputed[0], 3);
    fw_cluster_pump(&cl, 200);
    cr_assert_geq(d1.n_cancel, 1, "the holder's pins were never cancelled");
    cr_assert(fw_wait_status(c, &cl, 5000, holder_counted, NULL),
              "status never showed 1 holder read and 1 recomputed block");
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}

/* Load counts on the decode side too, with the same score as prefill's: with no cached
 * prefix anywhere, a request goes to the decode worker with fewer tokens assigned, where
 * round-robin would alternate. The workers reserve and never stream, so load stays. */
static fw_worker_t *reserved_on(fw_cluster_t *cl, fw_worker_t *a, fw_worker_t *b, uint32_t n)
{
    uint64_t until = pd_time_now_ms() + 5000;
    while (a->n_reserve + b->n_reserve < n && pd_time_now_ms() < until)
        fw_cluster_pump(cl, 5);
    cr_assert_eq(a->n_reserve + b->n_reserve, n, "request %u was not reserved", n);
    return a->n_reserve > b->n_reserve ? a : b;
}

Test(router, decode_load_counts_in_the_choice)
{
    fw_router_t r;
    fw_router_start(&r, NULL);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0, d1;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    fw_worker_start(&cl, &d1, &r, "decode-1", PD_PROTO_ROLE_DECODE);
    wait_registered(&cl);
    d0.hang = d1.hang = true;
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    int32_t tokens[512];
    for (int k = 0; k < 512; k++)
        tokens[k] = k % 250 + 3;

    /* A long request lands somewhere; a short one then goes to the other worker. */
    fw_send_generate(c, "long", tokens, 512, 200, "tenant-l");
    fw_worker_t *heavy = reserved_on(&cl, &d0, &d1, 1);
    fw_worker_t *light = heavy == &d0 ? &d1 : &d0;
    fw_send_generate(c, "short-1", tokens, 16, 4, "tenant-s1");
    (void)reserved_on(&cl, &d0, &d1, 2);
    cr_assert_eq(light->n_reserve, 1, "the first short request went to the loaded worker");
    /* Round-robin would now pick the heavy worker (the one after the last pick); its
     * 712 assigned tokens against 20 send the next short request to the light one. */
    fw_send_generate(c, "short-2", tokens, 16, 4, "tenant-s2");
    (void)reserved_on(&cl, &d0, &d1, 3);
    cr_assert_eq(light->n_reserve, 2,
                 "the second short request went to the worker holding "
                 "the long one");
    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_worker_stop(&d1);
    fw_router_stop(&r);
}
