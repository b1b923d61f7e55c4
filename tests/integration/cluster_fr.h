/* The test playing the router for real pd-prefill and pd-decode processes on a ZeroMQ
 * ROUTER socket (shared by the cluster_workers and cluster_holders tests): start and stop
 * workers, send reserve / pin / prefill, drive requests to their end, compare with the
 * single-process reference. Included by the tests only (it uses Criterion). */
#ifndef PD_TEST_CLUSTER_FR_H
#define PD_TEST_CLUSTER_FR_H

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
    /* A third worker that holds the prefix (-1: none): pinned there, read by prefill. */
    int holder;
    bool pinned;
    pd_status_t pin_status;
    uint32_t src_table[64];
    uint64_t src_sums[64];
    uint32_t n_src;
    int hole_at;        /* >= 0: pass the holder's table on with this block missing */
    int corrupt_at;     /* >= 0: pass this block's checksum on with one bit flipped */
    uint32_t holes[64]; /* prefilled.recomputed_blocks */
    uint32_t n_holes;
} fr_req_t;

static fr_t g;
static bool fr_curve;                /* fr_start: CURVE on the router socket */
static bool fr_curve_wrong_key;      /* ... and give the workers another server key */
static int fr_expect_workers = -1;   /* fr_start: how many must register (-1: all) */
static const char *fr_prefill_extra; /* fr_start: more arguments for prefill workers only */

static inline void fr_send(int wi, const pd_proto_msg_t *msg)
{
    pd_mp_writer_reset(&g.wr);
    cr_assert_eq(pd_proto_encode(msg, &g.wr), PD_OK, "encode %s", pd_proto_type_name(msg->type));
    zmq_send(g.sock, g.w[wi].rid, g.w[wi].rid_len, ZMQ_SNDMORE);
    zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0);
}

static inline void fr_send_raw(int wi, const void *buf, size_t len)
{
    zmq_send(g.sock, g.w[wi].rid, g.w[wi].rid_len, ZMQ_SNDMORE);
    zmq_send(g.sock, buf, len, 0);
}

static inline int fr_find_rid(const uint8_t *rid, size_t len)
{
    for (int i = 0; i < g.n_w; i++)
        if (g.w[i].rid_len == len && memcmp(g.w[i].rid, rid, len) == 0)
            return i;
    return -1;
}

/* Receive one message within timeout_ms; registry traffic is handled here. Returns the
 * worker index with *msg filled (caller cleans up), -1 on timeout, -2 if it was handled. */
static inline int fr_recv(int timeout_ms, pd_proto_msg_t *msg)
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

static inline void fr_start(int n_prefill, int n_decode, bool colocated, uint32_t pool_mb,
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
        snprintf(extra_buf, sizeof(extra_buf), "%s %s %s", extra != NULL ? extra : "", curve_args,
                 pre && fr_prefill_extra != NULL ? fr_prefill_extra : "");
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
static inline void fr_stop(void)
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

static inline int fr_worker_by_role(pd_proto_role_t role, int nth)
{
    for (int i = 0; i < g.n_w; i++)
        if (g.w[i].role == role && nth-- == 0)
            return i;
    return -1;
}

static inline void fr_send_reserve(fr_req_t *q)
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

static inline void fr_send_prefill(fr_req_t *q)
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
    if (q->holder >= 0 && q->pin_status == PD_OK && q->n_src > 0) {
        p->src_worker_id = g.w[q->holder].id;
        p->src_epoch = g.w[q->holder].epoch;
        p->src_xfer_desc = g.w[q->holder].desc;
        p->src_xfer_desc_bytes = g.w[q->holder].desc_bytes;
        p->src_block_table = q->src_table;
        p->n_src_block_table = q->n_src;
        p->src_checksums = q->src_sums;
        p->n_src_checksums = q->n_src;
    }
    fr_send(q->pre, &m);
}

/* Ask the holder to pin the prompt's full blocks, as the router does beside reserve. */
static inline void fr_send_pin(fr_req_t *q)
{
    uint64_t hashes[64];
    pd_block_hash_t root = pd_block_hash_root(q->tenant, g.env.model);
    size_t nh = pd_block_hash_chain(root, q->prompt, q->n_prompt, FR_BT, hashes, 64);
    cr_assert_gt(nh, 0);
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_PIN;
    m.u.pin = (pd_proto_pin_t){q->req_id, hashes, (uint32_t)nh, 20000};
    fr_send(q->holder, &m);
}

static inline fr_req_t *fr_req_by_id(fr_req_t *reqs, int n, uint64_t id)
{
    for (int i = 0; i < n; i++)
        if (reqs[i].req_id == id)
            return &reqs[i];
    cr_assert_fail("message for unknown req_id %llu", (unsigned long long)id);
    return NULL;
}

/* Open until its terminal message and, once prefill was asked, prefill's answer (which
 * may come after decode's done: prefill answers after the transfer's ack). */
static inline bool fr_req_open(const fr_req_t *q)
{
    if (q->n_terminal == 0)
        return true;
    return q->pre >= 0 && q->reserve_status == PD_OK && q->done && !q->prefilled_seen;
}

static inline int fr_count_open(const fr_req_t *reqs, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += fr_req_open(&reqs[i]);
    return k;
}

/* Drive n requests to their end; pre < 0 means: do not send prefill. */
static inline void fr_run(fr_req_t *reqs, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        reqs[i].order_ok = true;
        fr_send_reserve(&reqs[i]);
        if (reqs[i].holder >= 0)
            fr_send_pin(&reqs[i]);
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
            if (q->pre >= 0 && (q->holder < 0 || q->pinned))
                fr_send_prefill(q);
            break;
        case PD_PROTO_TYPE_PINNED:
            q = fr_req_by_id(reqs, n, m.u.pinned.req_id);
            cr_assert_eq(wi, q->holder, "pinned from a worker that was not asked");
            q->pinned = true;
            q->pin_status = m.u.pinned.status;
            q->n_src = m.u.pinned.n_block_table;
            cr_assert_leq(q->n_src, 64);
            memcpy(q->src_table, m.u.pinned.block_table, q->n_src * sizeof(uint32_t));
            memcpy(q->src_sums, m.u.pinned.checksums, q->n_src * sizeof(uint64_t));
            if (q->hole_at >= 0 && (uint32_t)q->hole_at < q->n_src)
                q->src_table[q->hole_at] = PD_PROTO_NO_BLOCK;
            if (q->corrupt_at >= 0 && (uint32_t)q->corrupt_at < q->n_src)
                q->src_sums[q->corrupt_at] ^= 1;
            if (q->reserved && q->reserve_status == PD_OK && q->pre >= 0)
                fr_send_prefill(q);
            break;
        case PD_PROTO_TYPE_PREFILLED:
            q = fr_req_by_id(reqs, n, m.u.prefilled.req_id);
            q->prefilled_seen = true;
            q->prefilled = m.u.prefilled;
            q->n_holes =
                m.u.prefilled.n_recomputed_blocks < 64 ? m.u.prefilled.n_recomputed_blocks : 64;
            memcpy(q->holes, m.u.prefilled.recomputed_blocks, q->n_holes * sizeof(uint32_t));
            q->prefilled.recomputed_blocks = NULL; /* freed with the message */
            if (q->holder >= 0) {
                /* Prefill is done reading: the holder lets the pins go. */
                pd_proto_msg_t c;
                memset(&c, 0, sizeof(c));
                c.type = PD_PROTO_TYPE_WORKER_CANCEL;
                c.u.worker_cancel.req_id = q->req_id;
                fr_send(q->holder, &c);
            }
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
static inline void fr_expect_all_free(void)
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

static inline void fr_expect_reference(const fr_req_t *q)
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

static inline void fr_req_init(fr_req_t *q, uint64_t id, uint32_t n_prompt, uint32_t salt,
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
    q->holder = -1;
    q->hole_at = -1;
    q->corrupt_at = -1;
}

#endif
