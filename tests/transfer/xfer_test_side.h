/* Test-side helpers of the UCX integration tests: an engine with a pool, a pd-xfer-peer
 * child, and the exchanges with it. Included by the tests only (it uses Criterion). */
#ifndef PD_XFER_TEST_SIDE_H
#define PD_XFER_TEST_SIDE_H

#include "xfer_test_util.h"

#include <criterion/criterion.h>

#define POOL_BYTES  (1u << 20)
#define BLOCK_BYTES 4096u

static const char *const shm_tls = "posix,sysv,cma,self";

/* Make the pd-xfer-peer receiver register malloc'd memory instead of letting the fabric
 * allocate its pool. */
static bool xt_peer_register;

/* The data path this side's engine is configured with, and the one the connection must
 * end up with (AUTO: not checked). */
static pd_xfer_data_path_t xt_data_path = PD_XFER_DATA_PATH_AUTO;
static pd_xfer_data_path_t xt_want_path = PD_XFER_DATA_PATH_AUTO;

/* A KV layout for both pools ("L,H,D,B,N" for pd-xfer-peer; NULL: plain regions) and this
 * side's wire codec. */
static const pd_kv_layout_t *xt_layout;
static const char *xt_layout_arg;
static pd_xfer_codec_t xt_codec = PD_XFER_CODEC_NONE;

typedef struct side {
    pd_xfer_engine_t *engine;
    uint8_t *pool; /* (POOL_BYTES) */
    xt_child_t child;
    pd_xfer_peer_t *peer;
} side_t;

static inline void side_open(side_t *s, const char *tls, const char *net_devices, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->pool = aligned_alloc(4096, POOL_BYTES);
    cr_assert_not_null(s->pool);
    xt_fill(s->pool, POOL_BYTES, seed);
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.transports = tls;
    cfg.net_devices = net_devices;
    cfg.data_path = xt_data_path;
    cfg.codec = xt_codec;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &s->engine), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(s->engine, s->pool, POOL_BYTES, xt_layout), PD_OK);
}

static inline void side_close(side_t *s)
{
    pd_xfer_peer_disconnect(&s->peer);
    pd_xfer_engine_destroy(&s->engine);
    free(s->pool);
}

/* Start pd-xfer-peer recv (inside netns when not NULL) and connect to it; writes the
 * transports UCX chose. */
static inline void start_receiver_in(side_t *s, const char *netns, const char *tls,
                                     const char *net_devices, char *transports, size_t n)
{
    char *argv[] = {"ip",
                    "netns",
                    "exec",
                    (char *)netns,
                    (char *)xt_peer_path(),
                    "recv",
                    "--tls",
                    (char *)(tls ? tls : ""),
                    "--net-devices",
                    (char *)(net_devices ? net_devices : ""),
                    "--pool",
                    "1048576",
                    xt_layout_arg ? "--layout" : "--pool",
                    xt_layout_arg ? (char *)xt_layout_arg : "1048576",
                    xt_peer_register ? "--register" : NULL,
                    NULL};
    cr_assert(xt_child_start(netns != NULL ? argv : argv + 4, &s->child));
    void *desc = NULL;
    size_t desc_bytes = 0;
    cr_assert(xt_frame_recv(s->child.from_fd, &desc, &desc_bytes, 10000),
              "no descriptor from pd-xfer-peer");
    cr_assert_eq(pd_xfer_peer_connect(s->engine, desc, desc_bytes, &s->peer), PD_OK);
    free(desc);
    cr_assert_eq(pd_xfer_peer_transports(s->peer, transports, n), PD_OK);
    pd_xfer_data_path_t path = pd_xfer_peer_data_path(s->peer);
    cr_log_info("data path to the peer over %s: %s", transports, pd_xfer_data_path_name(path));
    cr_assert_neq(path, PD_XFER_DATA_PATH_AUTO);
    if (xt_want_path != PD_XFER_DATA_PATH_AUTO)
        cr_assert_eq(path, xt_want_path, "data path %s over %s, expected %s",
                     pd_xfer_data_path_name(path), transports,
                     pd_xfer_data_path_name(xt_want_path));
}

static inline void expect_at_child(side_t *s, uint64_t xfer_id, const pd_xfer_range_t *ranges,
                                   size_t n_ranges, uint32_t timeout_ms, bool reset, bool dump)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 6);
    pd_mp_put_str(&w, "op");
    pd_mp_put_str(&w, "expect");
    pd_mp_put_str(&w, "xfer");
    pd_mp_put_u64(&w, xfer_id);
    pd_mp_put_str(&w, "ranges");
    pd_mp_put_bin(&w, ranges, n_ranges * sizeof(*ranges));
    pd_mp_put_str(&w, "timeout_ms");
    pd_mp_put_u64(&w, timeout_ms);
    pd_mp_put_str(&w, "reset");
    pd_mp_put_u64(&w, reset);
    pd_mp_put_str(&w, "dump");
    pd_mp_put_u64(&w, dump);
    cr_assert(xt_frame_send(s->child.to_fd, &w));
    pd_mp_writer_cleanup(&w);
    void *buf = NULL;
    size_t len = 0;
    cr_assert(xt_frame_recv(s->child.from_fd, &buf, &len, 10000), "no ready from the peer");
    pd_mp_doc_t doc;
    cr_assert_eq(pd_mp_doc_parse(&doc, buf, len, xt_limits()), PD_OK);
    int64_t st = -1;
    cr_assert_eq(pd_mp_get_i64(&doc.root, "status", &st), PD_OK);
    cr_assert_eq(st, PD_OK);
    pd_mp_doc_cleanup(&doc);
    free(buf);
}

/* Read the child's result: its status, and its pool into pool_out (when dumped). */
static inline int64_t result_from_child(side_t *s, uint8_t *pool_out, int32_t *token_p)
{
    void *buf = NULL;
    size_t len = 0;
    cr_assert(xt_frame_recv(s->child.from_fd, &buf, &len, 15000), "no result from the peer");
    pd_mp_doc_t doc;
    cr_assert_eq(pd_mp_doc_parse(&doc, buf, len, xt_limits()), PD_OK);
    int64_t st = -1;
    cr_assert_eq(pd_mp_get_i64(&doc.root, "status", &st), PD_OK);
    const void *pool = NULL, *payload = NULL;
    size_t pool_bytes = 0, payload_bytes = 0;
    cr_assert_eq(pd_mp_get_bin(&doc.root, "pool", &pool, &pool_bytes), PD_OK);
    cr_assert_eq(pd_mp_get_bin(&doc.root, "payload", &payload, &payload_bytes), PD_OK);
    if (pool_out != NULL) {
        cr_assert_eq(pool_bytes, POOL_BYTES);
        memcpy(pool_out, pool, POOL_BYTES);
    }
    if (token_p != NULL && payload_bytes == sizeof(int32_t))
        memcpy(token_p, payload, sizeof(int32_t));
    pd_mp_doc_cleanup(&doc);
    free(buf);
    return st;
}

static inline bool send_final(void *arg)
{
    return pd_xfer_send_status(arg) != PD_INPROGRESS;
}

/* Scattered blocks: n_blocks blocks from a permutation of the pool to another. */
static inline size_t make_segs(pd_xfer_seg_t *segs, pd_xfer_range_t *ranges, size_t n_blocks,
                               uint64_t salt)
{
    const size_t n_pool_blocks = POOL_BYTES / BLOCK_BYTES;
    for (size_t i = 0; i < n_blocks; i++) {
        /* Destinations: every other block, with runs of two to exercise coalescing. */
        size_t dst = (i / 2) * 4 + (i % 2);
        size_t src = (dst * 7 + salt) % n_pool_blocks;
        segs[i].local_offset = src * BLOCK_BYTES;
        segs[i].remote_offset = (dst % n_pool_blocks) * BLOCK_BYTES;
        segs[i].bytes = BLOCK_BYTES;
        ranges[i].offset = segs[i].remote_offset;
        ranges[i].bytes = BLOCK_BYTES;
    }
    return n_blocks;
}

static inline void start_receiver(side_t *s, const char *tls, const char *net_devices,
                                  char *transports, size_t n)
{
    start_receiver_in(s, NULL, tls, net_devices, transports, n);
}

/* iterations transfers into a pd-xfer-peer receiver (in netns when not NULL, using
 * peer_net_devices there), every byte checked each time. */
static inline void run_intact_in(const char *netns, const char *tls, const char *net_devices,
                                 const char *peer_net_devices, const char *must_have,
                                 const char *must_not_have, int iterations)
{
    side_t s;
    side_open(&s, tls, net_devices, 1);
    char transports[256];
    start_receiver_in(&s, netns, tls, peer_net_devices, transports, sizeof(transports));
    cr_log_info("UCX transports to the peer: %s", transports);
    if (must_have != NULL)
        cr_assert(strstr(transports, must_have) != NULL, "transports '%s' lack %s", transports,
                  must_have);
    if (must_not_have != NULL)
        cr_assert(strstr(transports, must_not_have) == NULL, "transports '%s' include %s",
                  transports, must_not_have);
    uint8_t *remote = malloc(POOL_BYTES);
    uint8_t *expect = malloc(POOL_BYTES);
    pd_xfer_seg_t segs[128];
    pd_xfer_range_t ranges[128];
    for (int it = 0; it < iterations; it++) {
        /* Fresh bytes each time, so a notification that overtook its data would find
         * the previous iteration's bytes and fail the checksum. */
        xt_fill(s.pool, POOL_BYTES, 100 + (uint64_t)it);
        size_t n = make_segs(segs, ranges, 128, (uint64_t)it);
        bool dump = it % 10 == 0 || it == iterations - 1;
        expect_at_child(&s, 1000 + (uint64_t)it, ranges, n, 5000, true, dump);
        pd_xfer_send_t *send = NULL;
        cr_assert_eq(pd_xfer_send_begin(s.peer, 1000 + (uint64_t)it, ranges, n, 5000, &send),
                     PD_OK);
        for (int l = 0; l < 4; l++)
            cr_assert_eq(pd_xfer_send_post(send, segs + 32 * l, 32), PD_OK);
        int32_t token = 500 + it;
        cr_assert_eq(pd_xfer_send_finish(send, &token, sizeof(token)), PD_OK);
        cr_assert(xt_wait(s.engine, NULL, send_final, send, 8000), "iteration %d hung", it);
        cr_assert_eq(pd_xfer_send_status(send), PD_OK, "iteration %d: %s", it,
                     pd_status_name(pd_xfer_send_status(send)));
        pd_xfer_send_destroy(&send);
        int32_t got_token = -1;
        cr_assert_eq(result_from_child(&s, dump ? remote : NULL, &got_token), PD_OK);
        cr_assert_eq(got_token, token);
        if (dump) {
            memset(expect, 0xEE, POOL_BYTES);
            for (size_t i = 0; i < n; i++)
                memcpy(expect + segs[i].remote_offset, s.pool + segs[i].local_offset,
                       segs[i].bytes);
            cr_assert_eq(memcmp(expect, remote, POOL_BYTES), 0, "iteration %d: bytes differ", it);
        }
    }
    free(remote);
    free(expect);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 1);
    pd_mp_put_str(&w, "op");
    pd_mp_put_str(&w, "quit");
    xt_frame_send(s.child.to_fd, &w);
    pd_mp_writer_cleanup(&w);
    int status = xt_child_reap(&s.child, 5000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "peer exit status %d", status);
    side_close(&s);
}

static inline void run_intact(const char *tls, const char *net_devices, const char *must_have,
                              const char *must_not_have, int iterations)
{
    run_intact_in(NULL, tls, net_devices, net_devices, must_have, must_not_have, iterations);
}

#endif
