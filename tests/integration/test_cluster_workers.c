/* pd-prefill and pd-decode as real processes, driven by the test playing the router on a
 * ZeroMQ ROUTER socket: the workers' side of the protocol, KV over UCX between them, and
 * tokens equal to the single-process reference, cold, cached, batched, with failures. */
#include "cluster_fr.h"

TestSuite(cluster_workers, .timeout = 120, .fini = fr_stop);

Test(cluster_workers, tokens_equal_reference_cold_and_cached)
{
    fr_start(1, 1, false, 4, NULL);
    static const uint32_t lens[] = {1, 5, 16, 17, 40, 64};
    static const double temps[] = {0.0, 0.8};
    fr_req_t q;
    uint64_t id = 1;
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            fr_req_init(&q, id++, lens[i], (uint32_t)i, 24, temps[t], 7 + i);
            fr_run(&q, 1, 20000);
            fr_expect_reference(&q);
            /* The second pass (t == 1) reuses none of the first's blocks: other tokens
             * would follow, but the prompts are the same, so decode's cache serves every
             * full block but the last token's. */
            uint32_t full = (lens[i] - 1) / FR_BT;
            uint32_t expect_cached = t == 0 ? 0 : full;
            cr_expect_eq(q.n_cached_blocks, expect_cached, "len %u pass %zu", lens[i], t);
            cr_expect_eq(q.done_msg.cache_read_input_tokens, expect_cached * FR_BT);
            if (t == 0)
                cr_expect_eq(q.done_msg.cache_creation_input_tokens, (lens[i] / FR_BT) * FR_BT);
            cr_expect(q.prefilled_seen);
            cr_expect_eq(q.prefilled.n_computed_tokens + q.prefilled.n_cached_tokens, lens[i]);
        }
    }
    fr_expect_all_free();
    fr_stop();
}

/* Prefill and decode workers computing with bf16 and int8 weights give the tokens of the
 * same weights computed in one process, cold and from cache, greedy and sampled. */
Test(cluster_workers, tokens_equal_reference_with_bf16_and_int8_weights)
{
    static const pd_dtype_t dtypes[] = {PD_DTYPE_BF16, PD_DTYPE_I8};
    for (size_t d = 0; d < 2; d++) {
        fr_dtype = dtypes[d];
        fr_start(1, 1, false, 4, NULL);
        cr_assert_eq(pd_model_dtype(g.model), (int)dtypes[d]);
        fr_req_t q;
        uint64_t id = 1;
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t i = 0; i < 3; i++) {
                fr_req_init(&q, id++, 20 + 11 * i, i, 16, i == 2 ? 0.8 : 0.0, 3 + i);
                fr_run(&q, 1, 20000);
                fr_expect_reference(&q);
                if (pass == 1)
                    cr_expect_gt(q.n_cached_blocks, 0, "%s: the second pass reads the cache",
                                 pd_dtype_name(dtypes[d]));
            }
        fr_expect_all_free();
        fr_stop();
    }
    fr_dtype = PD_DTYPE_F32;
}

Test(cluster_workers, other_tenant_misses)
{
    fr_start(1, 1, false, 4, NULL);
    fr_req_t a, b;
    fr_req_init(&a, 1, 48, 3, 8, 0.0, 1);
    snprintf(a.tenant, sizeof(a.tenant), "alice");
    fr_run(&a, 1, 20000);
    fr_expect_reference(&a);
    fr_req_init(&b, 2, 48, 3, 8, 0.0, 1);
    snprintf(b.tenant, sizeof(b.tenant), "bob");
    fr_run(&b, 1, 20000);
    fr_expect_reference(&b);
    cr_expect_eq(b.n_cached_blocks, 0);
    cr_expect_eq(b.prefilled.n_cached_tokens, 0);
    fr_req_init(&b, 3, 48, 3, 8, 0.0, 1);
    snprintf(b.tenant, sizeof(b.tenant), "alice");
    fr_run(&b, 1, 20000);
    fr_expect_reference(&b);
    cr_expect_eq(b.n_cached_blocks, 2);
    cr_expect_eq(b.prefilled.n_cached_tokens, 32);
    fr_expect_all_free();
    fr_stop();
}

/* 2P1D: prefill-0 computes a 71-token prompt for decode-0, which caches its 4 full
 * blocks. Then the same prompt goes `repeats` times through prefill-1, whose cache is
 * empty: decode-0 pins the 4 blocks each time, and prefill-1 computes expect_computed
 * tokens (7 when it reads the prefix from decode-0's pool, 71 when it recomputes it). The
 * tokens equal the one-process reference either way. */
static void fr_fetch_case(const char *worker_args, uint32_t expect_computed, int repeats)
{
    fr_start(2, 1, false, 4, worker_args);
    fr_req_t q;
    fr_req_init(&q, 1, 71, 9, 12, 0.0, 1);
    q.pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 0);
    fr_run(&q, 1, 20000);
    fr_expect_reference(&q);
    cr_expect_eq(q.prefilled.n_computed_tokens, 71);
    for (int r = 0; r < repeats; r++) {
        fr_req_init(&q, 2 + (uint64_t)r, 71, 9, 12, r == 0 ? 0.7 : 0.0, 5 + (uint64_t)r);
        q.pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 1);
        fr_run(&q, 1, 20000);
        fr_expect_reference(&q);
        cr_expect_eq(q.n_cached_blocks, 4);
        cr_expect_eq(q.done_msg.cache_read_input_tokens, 64);
        cr_expect_eq(q.prefilled.n_computed_tokens, expect_computed,
                     "round %d: prefill-1 computed %u tokens", r, q.prefilled.n_computed_tokens);
        cr_expect_eq(q.prefilled.n_cached_tokens, 71 - expect_computed);
    }
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, prefill_fetches_a_prefix_the_decode_worker_holds)
{
    /* Twice: a fetch caches nothing at prefill-1 (its blocks rest on bytes read without a
     * checksum), so the second round fetches again rather than hitting its own cache. */
    fr_fetch_case(NULL, 7, 2);
}

Test(cluster_workers, prefill_without_fetch_computes_the_prefix)
{
    fr_fetch_case("--fetch 0", 71, 1);
}

Test(cluster_workers, concurrent_2p2d_batched)
{
    fr_start(2, 2, false, 4, NULL);
    static fr_req_t reqs[32];
    for (int i = 0; i < 32; i++) {
        fr_req_init(&reqs[i], 100 + i, 3 + (uint32_t)i * 3, (uint32_t)i % 5, 12 + i % 7,
                    i % 2 ? 0.7 : 0.0, (uint64_t)i);
        reqs[i].dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, i % 2);
        reqs[i].pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, (i / 2) % 2);
    }
    fr_run(reqs, 32, 60000);
    for (int i = 0; i < 32; i++)
        fr_expect_reference(&reqs[i]);
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, colocated_both)
{
    fr_start(0, 1, true, 4, NULL);
    int both = fr_worker_by_role(PD_PROTO_ROLE_BOTH, 0);
    cr_assert_geq(both, 0);
    fr_req_t q;
    for (int pass = 0; pass < 2; pass++) {
        fr_req_init(&q, 1 + pass, 37, 2, 16, 0.5, 3);
        q.dec = both;
        q.pre = both;
        fr_run(&q, 1, 20000);
        fr_expect_reference(&q);
        cr_expect_eq(q.n_cached_blocks, pass == 0 ? 0 : 2);
        cr_expect_eq(q.prefilled.n_computed_tokens, pass == 0 ? 37 : 5);
    }
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, failures_release_and_keep_serving)
{
    /* A short transfer deadline: blocks of requests that end before their KV arrived are
     * held that long (plus 500 ms) in case a prefill still writes into them. */
    fr_start(1, 1, false, 1, "--xfer-timeout-ms 1000");
    int dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 0);
    int pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 0);

    /* Garbage and a frame over the limit: error with req_id 0, the worker keeps going. */
    fr_send_raw(dec, "\xdd\xff\x00\x00\x00", 5);
    fr_send_raw(pre, "not msgpack", 11);
    uint64_t end = pd_time_now_ms() + 2000;
    while ((g.w[dec].n_errors0 == 0 || g.w[pre].n_errors0 == 0) && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (fr_recv(50, &m) >= 0)
            pd_proto_msg_cleanup(&m);
    }
    cr_expect_geq(g.w[dec].n_errors0, 1);
    cr_expect_geq(g.w[pre].n_errors0, 1);

    /* A token outside the vocabulary: reserved with an error status. */
    fr_req_t q;
    fr_req_init(&q, 1, 8, 0, 4, 0.0, 0);
    q.prompt[3] = 100000;
    fr_run(&q, 1, 5000);
    cr_expect_eq(q.reserve_status, PD_ERR_OUT_OF_RANGE);
    /* A prompt longer than the context (tiny: 256); a max_tokens that overruns the
     * context is cut instead (tokens_equal_reference... covers that path). */
    fr_req_init(&q, 2, 300, 0, 4, 0.0, 0);
    fr_run(&q, 1, 5000);
    /* The refusal comes first as an error that carries the numbers (the reserved reply
     * with the same status follows; the run ends at the error). */
    cr_expect_eq(q.error_code, PD_ERR_CONTEXT);
    /* No room: a 1 MiB pool holds 128 blocks of 8 KiB. */
    static fr_req_t many[12];
    for (int i = 0; i < 12; i++) {
        fr_req_init(&many[i], 10 + i, 100, (uint32_t)i, 100, 0.0, 0);
        many[i].pre = -1; /* hold the reservations */
    }
    for (int i = 0; i < 12; i++)
        fr_send_reserve(&many[i]);
    int n_ok = 0, n_full = 0;
    end = pd_time_now_ms() + 5000;
    while (n_ok + n_full < 12 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (fr_recv(100, &m) < 0)
            continue;
        cr_assert_eq(m.type, PD_PROTO_TYPE_RESERVED);
        if (m.u.reserved.status == PD_OK)
            n_ok++;
        else if (m.u.reserved.status == PD_ERR_NO_RESOURCE)
            n_full++;
        pd_proto_msg_cleanup(&m);
    }
    /* 199 positions are 13 blocks: 9 requests fit in 128 blocks, 3 do not. */
    cr_expect_eq(n_ok, 9);
    cr_expect_eq(n_full, 3);
    /* Cancel them all: every block comes back, nothing is sent for them. */
    for (int i = 0; i < 12; i++) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_WORKER_CANCEL;
        m.u.worker_cancel.req_id = many[i].req_id;
        fr_send(dec, &m);
    }
    fr_expect_all_free();

    /* Reserved but prefill never comes: the transfer deadline ends it with one error. */
    fr_req_init(&q, 40, 20, 0, 4, 0.0, 0);
    q.pre = -1;
    q.order_ok = true;
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_RESERVE;
    m.u.reserve.req_id = 40;
    m.u.reserve.tokens = q.prompt;
    m.u.reserve.n_tokens = 20;
    pd_block_hash_t h[1];
    pd_block_hash_chain(pd_block_hash_root("", g.env.model), q.prompt, 20, FR_BT, h, 1);
    m.u.reserve.block_hashes = h;
    m.u.reserve.n_block_hashes = 1;
    m.u.reserve.max_tokens = 4;
    m.u.reserve.sampling.top_p = 1.0;
    m.u.reserve.deadline_ms = 300;
    fr_send(dec, &m);
    int n_err = 0, n_res = 0;
    end = pd_time_now_ms() + 3000;
    while (pd_time_now_ms() < end && n_err == 0) {
        pd_proto_msg_t r;
        if (fr_recv(100, &r) < 0)
            continue;
        if (r.type == PD_PROTO_TYPE_RESERVED)
            n_res++;
        if (r.type == PD_PROTO_TYPE_WORKER_ERROR) {
            n_err++;
            cr_expect_eq(r.u.worker_error.req_id, 40);
            cr_expect_eq(r.u.worker_error.code, PD_ERR_TIMEOUT);
        }
        pd_proto_msg_cleanup(&r);
    }
    cr_expect_eq(n_res, 1);
    cr_expect_eq(n_err, 1);

    /* Prefill to a decode worker that does not exist (bad descriptor): error, served on. */
    fr_req_init(&q, 50, 20, 0, 4, 0.0, 0);
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_PREFILL;
    m.u.prefill.req_id = 50;
    m.u.prefill.tokens = q.prompt;
    m.u.prefill.n_tokens = 20;
    m.u.prefill.block_hashes = h;
    m.u.prefill.n_block_hashes = 1;
    snprintf(m.u.prefill.dest_worker_id, sizeof(m.u.prefill.dest_worker_id), "ghost");
    m.u.prefill.dest_epoch = 1;
    m.u.prefill.dest_xfer_desc = "\x80";
    m.u.prefill.dest_xfer_desc_bytes = 1;
    uint32_t table[2] = {0, 1};
    m.u.prefill.dest_block_table = table;
    m.u.prefill.n_dest_block_table = 2;
    m.u.prefill.sampling.top_p = 1.0;
    fr_send(pre, &m);
    n_err = 0;
    end = pd_time_now_ms() + 3000;
    while (pd_time_now_ms() < end && n_err == 0) {
        pd_proto_msg_t r;
        if (fr_recv(100, &r) < 0)
            continue;
        if (r.type == PD_PROTO_TYPE_WORKER_ERROR && r.u.worker_error.req_id == 50)
            n_err++;
        pd_proto_msg_cleanup(&r);
    }
    cr_expect_eq(n_err, 1);

    /* And the next request is served exactly. */
    fr_req_init(&q, 60, 33, 4, 10, 0.0, 5);
    fr_run(&q, 1, 20000);
    fr_expect_reference(&q);
    fr_expect_all_free();
    fr_stop();
}

/* A 1 MiB pool (128 blocks) with a lower tier: fillers push the first prompt's blocks out
 * of G1, and the repeat brings them back, on both workers, with the same tokens. */
static void fr_tier_roundtrip(const char *extra)
{
    fr_start(1, 1, false, 1, extra);
    fr_req_t first;
    fr_req_init(&first, 1, 64, 1000, 6, 0.0, 9);
    fr_run(&first, 1, 20000);
    fr_expect_reference(&first);
    static fr_req_t fill[8];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 8; i++)
            fr_req_init(&fill[i], 100 + (uint64_t)round * 8 + (uint64_t)i, 64,
                        (uint32_t)(round * 8 + i), 4, 0.0, 1);
        fr_run(fill, 8, 30000);
        for (int i = 0; i < 8; i++)
            cr_assert(fill[i].done, "filler %d of round %d failed: %s", i, round,
                      pd_status_name(fill[i].error_code));
    }
    fr_req_t again;
    fr_req_init(&again, 2, 64, 1000, 6, 0.0, 9);
    fr_run(&again, 1, 20000);
    fr_expect_reference(&again);
    cr_expect_eq(again.n_cached_blocks, 3);
    cr_expect_eq(again.prefilled.n_cached_tokens, 48);
    for (uint32_t i = 0; i < first.n_tokens; i++)
        cr_expect_eq(again.tokens[i], first.tokens[i]);
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, push_after_compute_and_host_tier_hits)
{
    /* --layerwise 0: every layer is posted after compute; G2 host DRAM of 2 MiB. */
    fr_tier_roundtrip("--layerwise 0 --host-mb 2");
}

Test(cluster_workers, ssd_tier_hits)
{
    /* G3 only: evicted blocks go to checksummed files and come back from them. */
    char extra[256];
    snprintf(extra, sizeof(extra), "--ssd-dir /tmp/pd-ssd-%d/@NAME@ --ssd-mb 2", (int)getpid());
    fr_tier_roundtrip(extra);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf /tmp/pd-ssd-%d", (int)getpid());
    cr_expect_eq(system(cmd), 0);
}

Test(cluster_workers, register_again_after_router_restart)
{
    fr_start(1, 1, false, 4, NULL);
    uint64_t epochs[2] = {g.w[0].epoch, g.w[1].epoch};
    /* The router goes away and comes back on the same endpoint, knowing nobody. */
    zmq_close(g.sock);
    g.sock = zmq_socket(g.ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(g.sock, ZMQ_LINGER, &zero, sizeof(zero));
    uint64_t end = pd_time_now_ms() + 5000;
    while (zmq_bind(g.sock, g.ep) != 0 && pd_time_now_ms() < end)
        usleep(10000); /* the old socket's port is released by the I/O thread, soon */
    g.n_w = 0;
    memset(g.w, 0, sizeof(g.w));
    end = pd_time_now_ms() + 10000;
    while (g.n_w < 2 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (fr_recv(100, &m) >= 0)
            pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(g.n_w, 2, "workers did not register with the restarted router");
    for (int i = 0; i < 2; i++)
        cr_expect(g.w[i].epoch == epochs[0] || g.w[i].epoch == epochs[1],
                  "a worker changed its epoch without restarting");
    fr_req_t q;
    fr_req_init(&q, 1, 20, 2, 8, 0.0, 3);
    fr_run(&q, 1, 20000);
    fr_expect_reference(&q);
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, kv_events_and_snapshot)
{
    fr_start(1, 1, false, 4, NULL);
    /* PUB/SUB drops what is published before the subscription arrives, and the workers
     * publish only their own KV events (nothing the test could send as a probe): wait until
     * each subscriber's connection has completed its handshake; the subscription follows
     * on it at once, long before the request below has computed a block. */
    void *sub[2];
    for (int i = 0; i < 2; i++) {
        sub[i] = zmq_socket(g.ctx, ZMQ_SUB);
        int zero = 0;
        zmq_setsockopt(sub[i], ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(sub[i], ZMQ_SUBSCRIBE, "", 0);
        char mon_ep[32];
        snprintf(mon_ep, sizeof(mon_ep), "inproc://sub-monitor-%d", i);
        cr_assert_eq(zmq_socket_monitor(sub[i], mon_ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED), 0);
        void *mon = zmq_socket(g.ctx, ZMQ_PAIR);
        zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof(zero));
        cr_assert_eq(zmq_connect(mon, mon_ep), 0);
        cr_assert_eq(zmq_connect(sub[i], g.w[i].events), 0, "%s", g.w[i].events);
        zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
        cr_assert_gt(zmq_poll(&it, 1, 5000), 0, "no handshake with %s", g.w[i].events);
        zmq_socket_monitor(sub[i], NULL, 0);
        zmq_close(mon);
    }
    fr_req_t q;
    fr_req_init(&q, 1, 48, 6, 4, 0.0, 1);
    fr_run(&q, 1, 20000);
    fr_expect_reference(&q);
    pd_block_hash_t want[3];
    cr_assert_eq(
        pd_block_hash_chain(pd_block_hash_root("", g.env.model), q.prompt, 48, FR_BT, want, 3), 3);
    /* Each worker stored the 3 full blocks in G1, in batches numbered 1, 2, ... */
    for (int i = 0; i < 2; i++) {
        uint64_t next_seq = 1;
        uint32_t n_stored = 0;
        uint64_t end = pd_time_now_ms() + 2000;
        while (n_stored < 3 && pd_time_now_ms() < end) {
            zmq_pollitem_t it = {sub[i], 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 100) <= 0)
                continue;
            zmq_msg_t f;
            zmq_msg_init(&f);
            cr_assert_geq(zmq_msg_recv(&f, sub[i], 0), 0);
            pd_proto_msg_t m;
            memset(&m, 0, sizeof(m));
            cr_assert_eq(
                pd_proto_decode(&m, PD_PROTO_CHAN_EVENTS, zmq_msg_data(&f), zmq_msg_size(&f), NULL),
                PD_OK);
            zmq_msg_close(&f);
            cr_assert_eq(m.type, PD_PROTO_TYPE_KV_EVENT);
            cr_expect_str_eq(m.u.kv_event.worker_id, g.w[i].id);
            cr_expect_eq(m.u.kv_event.epoch, g.w[i].epoch);
            cr_expect_eq(m.u.kv_event.seq, next_seq, "%s: seq %llu, expected %llu", g.w[i].id,
                         (unsigned long long)m.u.kv_event.seq, (unsigned long long)next_seq);
            next_seq = m.u.kv_event.seq + 1;
            for (uint32_t e = 0; e < m.u.kv_event.n_events; e++) {
                const pd_proto_kv_event_item_t *it2 = &m.u.kv_event.events[e];
                cr_expect_eq(it2->kind, PD_PROTO_EVENT_STORED);
                cr_expect_eq(it2->tier, PD_PROTO_TIER_G1);
                for (uint32_t h = 0; h < it2->n_hashes && n_stored < 3; h++, n_stored++)
                    cr_expect_eq(it2->hashes[h], want[n_stored]);
            }
            pd_proto_msg_cleanup(&m);
        }
        cr_expect_eq(n_stored, 3, "%s published %u stored hashes", g.w[i].id, n_stored);
        /* resync: the snapshot lists the same hashes and the last published seq. */
        pd_proto_msg_t r;
        memset(&r, 0, sizeof(r));
        r.type = PD_PROTO_TYPE_RESYNC;
        uint64_t before = g.w[i].n_snapshots;
        fr_send(i, &r);
        end = pd_time_now_ms() + 2000;
        while (g.w[i].n_snapshots == before && pd_time_now_ms() < end) {
            pd_proto_msg_t m;
            if (fr_recv(50, &m) >= 0)
                pd_proto_msg_cleanup(&m);
        }
        cr_assert_gt(g.w[i].n_snapshots, before);
        cr_expect_eq(g.w[i].snap_seq, next_seq - 1);
        cr_expect_eq(g.w[i].snap_g1, 3);
        for (uint32_t h = 0; h < 3; h++) {
            bool found = false;
            for (uint32_t k = 0; k < g.w[i].snap_g1; k++)
                found = found || g.w[i].snap_hashes[k] == want[h];
            cr_expect(found, "%s: snapshot lacks block %u", g.w[i].id, h);
        }
    }
    for (int i = 0; i < 2; i++)
        zmq_close(sub[i]);
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, curve_on_the_router_connection)
{
    fr_curve = true;
    fr_start(1, 1, false, 4, NULL);
    fr_req_t q;
    fr_req_init(&q, 1, 40, 8, 10, 0.5, 4);
    fr_run(&q, 1, 20000);
    fr_expect_reference(&q);
    fr_expect_all_free();
    fr_stop();
}

Test(cluster_workers, curve_wrong_server_key_never_registers)
{
    fr_curve = true;
    fr_curve_wrong_key = true;
    fr_expect_workers = 0;
    fr_start(1, 1, false, 4, NULL);
    cr_expect_eq(g.n_w, 0, "a worker with the wrong server key got through");
    fr_stop();
}
