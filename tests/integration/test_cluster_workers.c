/* pd-prefill and pd-decode as real processes, driven by the test playing the router on a
 * ZeroMQ ROUTER socket: the workers' side of the protocol, KV over UCX between them, and
 * tokens equal to the single-process reference, cold, cached, batched, with failures. */
#include "pd/hash.h"
#include "pd/mp.h"
#include "pd/proto.h"
#include "test_cluster_util.h"

#include <zmq.h>

#define FR_MAX_WORKERS 8
#define FR_BT          16
#define FR_MAX_REQS    64

typedef struct fr_worker {
    char id[PD_PROTO_NAME_CAP];
    uint8_t rid[256];
    size_t rid_len;
    pd_proto_role_t role;
    uint64_t epoch;
    uint8_t desc[PD_PROTO_MAX_XFER_DESC_BYTES];
    size_t desc_bytes;
    uint32_t n_blocks;
    uint32_t free_blocks;
    uint64_t n_heartbeats;
    uint64_t n_snapshots;
    uint64_t n_errors0; /* error messages with req_id 0 */
    char events[PD_PROTO_ENDPOINT_CAP];
    uint64_t snap_seq;
    uint32_t snap_g1;
    uint64_t snap_hashes[64]; /* G1 */
} fr_worker_t;

typedef struct fr {
    pd_tc_env_t env;
    void *ctx;
    void *sock;
    char ep[64];
    fr_worker_t w[FR_MAX_WORKERS];
    int n_w;
    pd_model_t *model;
    pd_mp_writer_t wr;
} fr_t;

typedef struct fr_req {
    uint64_t req_id;
    int32_t prompt[320];
    uint32_t n_prompt;
    uint32_t max_tokens;
    pd_proto_sampling_t sampling;
    char tenant[32];
    bool cache_off;
    int dec, pre; /* worker indices */
    /* results */
    int32_t tokens[256];
    uint32_t n_tokens;
    bool reserved, prefilled_seen;
    pd_status_t reserve_status;
    uint32_t n_cached_blocks;
    uint32_t block_table[64];
    uint32_t n_block_table;
    int n_terminal;
    bool done;
    pd_status_t error_code;
    pd_proto_worker_done_t done_msg;
    pd_proto_prefilled_t prefilled;
    bool order_ok;
} fr_req_t;

static fr_t g;
static bool fr_curve;              /* fr_start: CURVE on the router socket */
static bool fr_curve_wrong_key;    /* ... and give the workers another server key */
static int fr_expect_workers = -1; /* fr_start: how many must register (-1: all) */

static void fr_send(int wi, const pd_proto_msg_t *msg)
{
    pd_mp_writer_reset(&g.wr);
    cr_assert_eq(pd_proto_encode(msg, &g.wr), PD_OK, "encode %s", pd_proto_type_name(msg->type));
    zmq_send(g.sock, g.w[wi].rid, g.w[wi].rid_len, ZMQ_SNDMORE);
    zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0);
}

static void fr_send_raw(int wi, const void *buf, size_t len)
{
    zmq_send(g.sock, g.w[wi].rid, g.w[wi].rid_len, ZMQ_SNDMORE);
    zmq_send(g.sock, buf, len, 0);
}

static int fr_find_rid(const uint8_t *rid, size_t len)
{
    for (int i = 0; i < g.n_w; i++)
        if (g.w[i].rid_len == len && memcmp(g.w[i].rid, rid, len) == 0)
            return i;
    return -1;
}

/* Receive one message within timeout_ms; registry traffic is handled here. Returns the
 * worker index with *msg filled (caller cleans up), -1 on timeout, -2 if it was handled. */
static int fr_recv(int timeout_ms, pd_proto_msg_t *msg)
{
    zmq_pollitem_t it = {g.sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -1;
    uint8_t rid[256];
    int rl = zmq_recv(g.sock, rid, sizeof(rid), 0);
    cr_assert_gt(rl, 0);
    zmq_msg_t f;
    zmq_msg_init(&f);
    cr_assert_geq(zmq_msg_recv(&f, g.sock, 0), 0);
    memset(msg, 0, sizeof(*msg));
    pd_proto_fault_t fault;
    pd_status_t st =
        pd_proto_decode(msg, PD_PROTO_CHAN_WORKER, zmq_msg_data(&f), zmq_msg_size(&f), &fault);
    zmq_msg_close(&f);
    cr_assert_eq(st, PD_OK, "worker sent an undecodable message: %s", fault.reason);
    int wi = fr_find_rid(rid, (size_t)rl);
    if (msg->type == PD_PROTO_TYPE_REGISTER) {
        if (wi < 0) {
            cr_assert_lt(g.n_w, FR_MAX_WORKERS);
            wi = g.n_w++;
        }
        fr_worker_t *w = &g.w[wi];
        memcpy(w->rid, rid, (size_t)rl);
        w->rid_len = (size_t)rl;
        snprintf(w->id, sizeof(w->id), "%s", msg->u.reg.worker_id);
        w->role = msg->u.reg.role;
        w->epoch = msg->u.reg.epoch;
        w->n_blocks = msg->u.reg.n_blocks;
        w->free_blocks = w->n_blocks;
        cr_assert_eq(msg->u.reg.block_tokens, FR_BT);
        cr_assert_str_eq(msg->u.reg.model_id, g.env.model);
        cr_assert_leq(msg->u.reg.xfer_desc_bytes, sizeof(w->desc));
        memcpy(w->desc, msg->u.reg.xfer_desc, msg->u.reg.xfer_desc_bytes);
        w->desc_bytes = msg->u.reg.xfer_desc_bytes;
        snprintf(w->events, sizeof(w->events), "%s", msg->u.reg.events_endpoint);
        pd_proto_msg_cleanup(msg);
        pd_proto_msg_t r;
        memset(&r, 0, sizeof(r));
        r.type = PD_PROTO_TYPE_REGISTERED;
        r.u.registered.heartbeat_ms = 100;
        fr_send(wi, &r);
        r.type = PD_PROTO_TYPE_RESYNC;
        fr_send(wi, &r);
        return -2;
    }
    if (wi < 0) {
        /* Like the router: an unknown worker is told to register again. */
        pd_proto_msg_cleanup(msg);
        pd_proto_msg_t r;
        memset(&r, 0, sizeof(r));
        r.type = PD_PROTO_TYPE_WORKER_ERROR;
        r.u.worker_error.code = PD_ERR_NOT_FOUND;
        r.u.worker_error.message = "unknown worker";
        pd_mp_writer_reset(&g.wr);
        cr_assert_eq(pd_proto_encode(&r, &g.wr), PD_OK);
        zmq_send(g.sock, rid, (size_t)rl, ZMQ_SNDMORE);
        zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0);
        return -2;
    }
    if (msg->type == PD_PROTO_TYPE_HEARTBEAT) {
        cr_assert_eq(msg->u.heartbeat.epoch, g.w[wi].epoch);
        g.w[wi].free_blocks = msg->u.heartbeat.free_blocks;
        g.w[wi].n_heartbeats++;
        pd_proto_msg_cleanup(msg);
        return -2;
    }
    if (msg->type == PD_PROTO_TYPE_KV_SNAPSHOT) {
        g.w[wi].n_snapshots++;
        g.w[wi].snap_seq = msg->u.kv_snapshot.seq;
        g.w[wi].snap_g1 = msg->u.kv_snapshot.n_hashes[PD_PROTO_TIER_G1];
        for (uint32_t i = 0; i < g.w[wi].snap_g1 && i < 64; i++)
            g.w[wi].snap_hashes[i] = msg->u.kv_snapshot.hashes[PD_PROTO_TIER_G1][i];
        pd_proto_msg_cleanup(msg);
        return -2;
    }
    if (msg->type == PD_PROTO_TYPE_WORKER_ERROR && msg->u.worker_error.req_id == 0) {
        g.w[wi].n_errors0++;
        pd_proto_msg_cleanup(msg);
        return -2;
    }
    return wi;
}

/* Start the workers; extra (may be NULL) holds more flags, space-separated, which win
 * over the defaults. */
/* The dtype of the model's matrices in the next fr_start. */
static pd_dtype_t fr_dtype = PD_DTYPE_F32;

static void fr_start(int n_prefill, int n_decode, bool colocated, uint32_t pool_mb,
                     const char *extra)
{
    memset(&g, 0, sizeof(g));
    pd_tc_env_init_dtype(&g.env, fr_dtype);
    pd_mp_writer_init(&g.wr);
    cr_assert_eq(pd_model_load(g.env.model, &g.model), PD_OK);
    g.ctx = zmq_ctx_new();
    g.sock = zmq_socket(g.ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(g.sock, ZMQ_LINGER, &zero, sizeof(zero));
    char curve_args[PATH_MAX / 2 + 128] = "";
    if (fr_curve) {
        /* The router side of CURVE: a server key pair; each worker gets a key pair file. */
        char server_public[41], server_secret[41], worker_public[41], worker_secret[41];
        cr_assert_eq(zmq_curve_keypair(server_public, server_secret), 0);
        cr_assert_eq(zmq_curve_keypair(worker_public, worker_secret), 0);
        int one = 1;
        zmq_setsockopt(g.sock, ZMQ_CURVE_SERVER, &one, sizeof(one));
        zmq_setsockopt(g.sock, ZMQ_CURVE_SECRETKEY, server_secret, 41);
        char path[PATH_MAX / 2 + 16];
        snprintf(path, sizeof(path), "%s/worker.key", g.env.dir);
        FILE *kf = fopen(path, "w");
        cr_assert_not_null(kf);
        fprintf(kf, "public %s\nsecret %s\n", worker_public, worker_secret);
        fclose(kf);
        if (fr_curve_wrong_key)
            cr_assert_eq(zmq_curve_keypair(server_public, server_secret), 0);
        snprintf(curve_args, sizeof(curve_args), "--curve-server-key %s --curve-secret-file %s",
                 server_public, path);
    }
    cr_assert_eq(zmq_bind(g.sock, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof(g.ep);
    zmq_getsockopt(g.sock, ZMQ_LAST_ENDPOINT, g.ep, &len);

    int n = n_prefill + n_decode;
    for (int i = 0; i < n; i++) {
        bool pre = i < n_prefill;
        char name[32], path[PATH_MAX + 32], pool[16];
        snprintf(name, sizeof(name), "%s-%d", pre ? "prefill" : (colocated ? "both" : "decode"),
                 pre ? i : i - n_prefill);
        snprintf(path, sizeof(path), "%s/%s", g.env.bin, pre ? "pd-prefill" : "pd-decode");
        snprintf(pool, sizeof(pool), "%u", pool_mb);
        char *argv[48];
        int a = 0;
        argv[a++] = path;
        char *common[] = {"--router",
                          g.ep,
                          "--id",
                          name,
                          "--model",
                          g.env.model,
                          "--threads",
                          "1",
                          "--pool-mb",
                          pool,
                          "--block-tokens",
                          "16",
                          "--events",
                          "tcp://127.0.0.1:*",
                          "--ip",
                          "127.0.0.1",
                          "--xfer-backend",
                          "ucx",
                          "--checksum",
                          "1",
                          "--layerwise",
                          "1",
                          "--xfer-timeout-ms",
                          "5000"};
        for (size_t k = 0; k < sizeof(common) / sizeof(common[0]); k++)
            argv[a++] = common[k];
        if (!pre) {
            argv[a++] = "--max-batch";
            argv[a++] = "8";
        }
        if (!pre && colocated)
            argv[a++] = "--colocated";
        /* "@NAME@" in extra becomes the worker's name (per-worker tier directories). */
        char extra_buf[PATH_MAX];
        snprintf(extra_buf, sizeof(extra_buf), "%s %s", extra != NULL ? extra : "", curve_args);
        char *at = strstr(extra_buf, "@NAME@");
        if (at != NULL) {
            char rest[PATH_MAX];
            snprintf(rest, sizeof(rest), "%s", at + 6);
            snprintf(at, sizeof(extra_buf) - (size_t)(at - extra_buf), "%s%s", name, rest);
        }
        for (char *tok = strtok(extra_buf, " "); tok != NULL && a < 44; tok = strtok(NULL, " "))
            argv[a++] = tok;
        argv[a] = NULL;
        pd_tc_spawn(&g.env, name, argv);
    }
    uint64_t end = pd_time_now_ms() + (fr_expect_workers >= 0 ? 2000 : 20000);
    while (g.n_w < n && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        int wi = fr_recv(200, &m);
        if (wi >= 0)
            pd_proto_msg_cleanup(&m);
    }
    if (fr_expect_workers >= 0) {
        /* Nothing registers here, so nothing says the workers are up: wait until each
         * catches SIGTERM, or a loaded machine still loading UCX's libraries takes the
         * test's SIGTERM for a crash. */
        for (int i = 0; i < g.env.n_procs; i++)
            cr_assert(pd_tc_wait_catches_sigterm(g.env.procs[i].pid, 20000),
                      "%s never installed its SIGTERM handler", g.env.procs[i].name);
        return;
    }
    cr_assert_eq(g.n_w, n, "only %d of %d workers registered", g.n_w, n);
}

/* Stop the workers and clean up; also the suite's fini, so that a failed assertion
 * leaves nothing running. Idempotent. */
static void fr_stop(void)
{
    if (g.env.dir[0] == '\0')
        return;
    int bad = pd_tc_stop_all(&g.env);
    int reports = pd_tc_sanitizer_reports(g.env.dir);
    pd_model_destroy(&g.model);
    if (g.sock != NULL)
        zmq_close(g.sock);
    if (g.ctx != NULL)
        zmq_ctx_term(g.ctx);
    g.sock = g.ctx = NULL;
    pd_mp_writer_cleanup(&g.wr);
    pd_tc_env_cleanup(&g.env, bad != 0 || getenv("PD_TEST_LOGS") != NULL);
    cr_expect_eq(bad, 0, "a worker did not exit cleanly on SIGTERM");
    cr_expect_eq(reports, 0, "sanitizer reports in the worker logs");
}

static int fr_worker_by_role(pd_proto_role_t role, int nth)
{
    for (int i = 0; i < g.n_w; i++)
        if (g.w[i].role == role && nth-- == 0)
            return i;
    return -1;
}

static void fr_send_reserve(fr_req_t *q)
{
    uint64_t hashes[64];
    pd_block_hash_t root = pd_block_hash_root(q->tenant, g.env.model);
    size_t nh = pd_block_hash_chain(root, q->prompt, q->n_prompt, FR_BT, hashes, 64);
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_RESERVE;
    pd_proto_reserve_t *r = &m.u.reserve;
    r->req_id = q->req_id;
    r->tokens = q->prompt;
    r->n_tokens = q->n_prompt;
    r->block_hashes = hashes;
    r->n_block_hashes = (uint32_t)nh;
    if (!q->cache_off && nh > 0) {
        r->cache.read_blocks = (uint32_t)nh;
        r->cache.n_writes = 1;
        r->cache.writes[0].n_blocks = (uint32_t)nh;
        r->cache.writes[0].ttl_s = PD_PROTO_TTL_5M_S;
    }
    r->max_tokens = q->max_tokens;
    r->sampling = q->sampling;
    r->deadline_ms = 20000;
    fr_send(q->dec, &m);
}

static void fr_send_prefill(fr_req_t *q)
{
    uint64_t hashes[64];
    pd_block_hash_t root = pd_block_hash_root(q->tenant, g.env.model);
    size_t nh = pd_block_hash_chain(root, q->prompt, q->n_prompt, FR_BT, hashes, 64);
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_PREFILL;
    pd_proto_prefill_t *p = &m.u.prefill;
    p->req_id = q->req_id;
    p->tokens = q->prompt;
    p->n_tokens = q->n_prompt;
    p->block_hashes = hashes;
    p->n_block_hashes = (uint32_t)nh;
    p->n_skip_blocks = q->n_cached_blocks;
    if (!q->cache_off && nh > 0) {
        p->cache.read_blocks = (uint32_t)nh;
        p->cache.n_writes = 1;
        p->cache.writes[0].n_blocks = (uint32_t)nh;
        p->cache.writes[0].ttl_s = PD_PROTO_TTL_5M_S;
    }
    p->sampling = q->sampling;
    snprintf(p->dest_worker_id, sizeof(p->dest_worker_id), "%s", g.w[q->dec].id);
    p->dest_epoch = g.w[q->dec].epoch;
    p->dest_xfer_desc = g.w[q->dec].desc;
    p->dest_xfer_desc_bytes = g.w[q->dec].desc_bytes;
    p->dest_block_table = q->block_table;
    p->n_dest_block_table = q->n_block_table;
    p->deadline_ms = 20000;
    fr_send(q->pre, &m);
}

static fr_req_t *fr_req_by_id(fr_req_t *reqs, int n, uint64_t id)
{
    for (int i = 0; i < n; i++)
        if (reqs[i].req_id == id)
            return &reqs[i];
    cr_assert_fail("message for unknown req_id %llu", (unsigned long long)id);
    return NULL;
}

/* Open until its terminal message and, once prefill was asked, prefill's answer (which
 * may come after decode's done: prefill answers after the transfer's ack). */
static bool fr_req_open(const fr_req_t *q)
{
    if (q->n_terminal == 0)
        return true;
    return q->pre >= 0 && q->reserve_status == PD_OK && q->done && !q->prefilled_seen;
}

static int fr_count_open(const fr_req_t *reqs, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += fr_req_open(&reqs[i]);
    return k;
}

/* Drive n requests to their end; pre < 0 means: do not send prefill. */
static void fr_run(fr_req_t *reqs, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        reqs[i].order_ok = true;
        fr_send_reserve(&reqs[i]);
    }
    int n_open = n;
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    while ((n_open = fr_count_open(reqs, n)) > 0 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        int wi = fr_recv(100, &m);
        if (wi < 0)
            continue;
        fr_req_t *q = NULL;
        switch (m.type) {
        case PD_PROTO_TYPE_RESERVED:
            q = fr_req_by_id(reqs, n, m.u.reserved.req_id);
            q->reserved = true;
            q->reserve_status = m.u.reserved.status;
            if (m.u.reserved.status != PD_OK) {
                q->n_terminal++;
                q->error_code = m.u.reserved.status;
                break;
            }
            q->n_cached_blocks = m.u.reserved.n_cached_blocks;
            cr_assert_leq(m.u.reserved.n_block_table, 64);
            memcpy(q->block_table, m.u.reserved.block_table,
                   m.u.reserved.n_block_table * sizeof(uint32_t));
            q->n_block_table = m.u.reserved.n_block_table;
            if (q->pre >= 0)
                fr_send_prefill(q);
            break;
        case PD_PROTO_TYPE_PREFILLED:
            q = fr_req_by_id(reqs, n, m.u.prefilled.req_id);
            q->prefilled_seen = true;
            q->prefilled = m.u.prefilled;
            break;
        case PD_PROTO_TYPE_WORKER_TOKEN:
            q = fr_req_by_id(reqs, n, m.u.worker_token.req_id);
            if (m.u.worker_token.index != q->n_tokens || q->n_terminal > 0)
                q->order_ok = false;
            if (q->n_tokens < 256)
                q->tokens[q->n_tokens++] = m.u.worker_token.token;
            break;
        case PD_PROTO_TYPE_WORKER_DONE:
            q = fr_req_by_id(reqs, n, m.u.worker_done.req_id);
            q->n_terminal++;
            q->done = true;
            q->done_msg = m.u.worker_done;
            break;
        case PD_PROTO_TYPE_WORKER_ERROR:
            q = fr_req_by_id(reqs, n, m.u.worker_error.req_id);
            q->n_terminal++;
            q->error_code = m.u.worker_error.code;
            break;
        default:
            cr_assert_fail("unexpected %s", pd_proto_type_name(m.type));
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_open, 0, "%d requests did not end in %d ms", n_open, timeout_ms);
}

/* Wait until every worker's heartbeat says all its blocks are unreserved. */
static void fr_expect_all_free(void)
{
    uint64_t end = pd_time_now_ms() + 3000;
    for (;;) {
        int n_busy = 0;
        for (int i = 0; i < g.n_w; i++)
            if (g.w[i].free_blocks != g.w[i].n_blocks)
                n_busy++;
        if (n_busy == 0)
            return;
        if (pd_time_now_ms() >= end)
            break;
        pd_proto_msg_t m;
        int wi = fr_recv(50, &m);
        if (wi >= 0) {
            cr_expect_fail("unexpected %s after the requests ended", pd_proto_type_name(m.type));
            pd_proto_msg_cleanup(&m);
        }
    }
    for (int i = 0; i < g.n_w; i++)
        cr_expect_eq(g.w[i].free_blocks, g.w[i].n_blocks, "%s: %u of %u blocks free", g.w[i].id,
                     g.w[i].free_blocks, g.w[i].n_blocks);
}

static void fr_expect_reference(const fr_req_t *q)
{
    int32_t ref[256];
    pd_sampling_t s = {(float)q->sampling.temperature, (float)q->sampling.top_p, q->sampling.seed};
    uint32_t n = pd_tc_reference(g.model, q->prompt, q->n_prompt, q->max_tokens, &s, ref);
    cr_assert(q->done, "req %llu: no done (error %s)", (unsigned long long)q->req_id,
              pd_status_name(q->error_code));
    cr_assert_eq(q->n_terminal, 1);
    cr_assert(q->order_ok, "req %llu: tokens out of order", (unsigned long long)q->req_id);
    cr_assert_eq(q->n_tokens, n, "req %llu: %u tokens, reference %u", (unsigned long long)q->req_id,
                 q->n_tokens, n);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(q->tokens[i], ref[i], "req %llu: token %u is %d, reference %d",
                     (unsigned long long)q->req_id, i, q->tokens[i], ref[i]);
    cr_assert_eq(q->done_msg.output_tokens, n);
    if (q->prefilled_seen)
        cr_assert_eq(q->prefilled.first_token, ref[0]);
}

static void fr_req_init(fr_req_t *q, uint64_t id, uint32_t n_prompt, uint32_t salt,
                        uint32_t max_tokens, double temperature, uint64_t seed)
{
    memset(q, 0, sizeof(*q));
    q->req_id = id;
    q->n_prompt = n_prompt;
    pd_tc_prompt(q->prompt, n_prompt, salt);
    q->max_tokens = max_tokens;
    q->sampling.temperature = temperature;
    q->sampling.top_p = temperature > 0 ? 0.9 : 1.0;
    q->sampling.seed = seed;
    q->dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 0);
    q->pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 0);
}

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
    cr_expect_eq(q.reserve_status, PD_ERR_CONTEXT);
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
        usleep(50000);
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
    void *sub[2];
    for (int i = 0; i < 2; i++) {
        sub[i] = zmq_socket(g.ctx, ZMQ_SUB);
        int zero = 0;
        zmq_setsockopt(sub[i], ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(sub[i], ZMQ_SUBSCRIBE, "", 0);
        cr_assert_eq(zmq_connect(sub[i], g.w[i].events), 0, "%s", g.w[i].events);
    }
    usleep(300000); /* PUB/SUB: let the subscriptions arrive before anything is published */
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
