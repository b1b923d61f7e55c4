/* The fabric's logic over the loopback backend: placement, coalescing, checksums, bounds
 * on both sides, deadlines, peer failure, the event fd. */
#include "xfer_int.h"
#include "xfer_test_util.h"

#include <criterion/criterion.h>

/* 4 layers x 16 blocks of 4 KiB per layer slice: 256 KiB pools. */
static const pd_kv_layout_t layout = {
    .n_layers = 4, .n_kv_heads = 2, .head_dim = 64, .block_tokens = 4, .n_blocks = 16};

typedef struct pair {
    pd_xfer_engine_t *tx, *rx;
    uint8_t *tx_pool, *rx_pool; /* (pool_bytes) */
    size_t pool_bytes;
    pd_xfer_peer_t *peer;
} pair_t;

static void pair_open(pair_t *p, bool tx_checksums, bool rx_checksums, bool coalesce)
{
    p->pool_bytes = pd_kv_pool_bytes(&layout);
    p->tx_pool = malloc(p->pool_bytes);
    p->rx_pool = malloc(p->pool_bytes);
    xt_fill(p->tx_pool, p->pool_bytes, 7);
    memset(p->rx_pool, 0xEE, p->pool_bytes);
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.backend = PD_XFER_BACKEND_LOOPBACK;
    cfg.coalesce = coalesce;
    cfg.verify_checksums = tx_checksums;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->tx), PD_OK);
    cfg.verify_checksums = rx_checksums;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->rx), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->tx, p->tx_pool, p->pool_bytes, &layout), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->rx, p->rx_pool, p->pool_bytes, &layout), PD_OK);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_xfer_desc_export(p->rx, &w), PD_OK);
    cr_assert_eq(
        pd_xfer_peer_connect(p->tx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &p->peer), PD_OK);
    pd_mp_writer_cleanup(&w);
}

static void pair_close(pair_t *p)
{
    pd_xfer_peer_disconnect(&p->peer);
    cr_assert_null(p->peer);
    pd_xfer_engine_destroy(&p->tx);
    pd_xfer_engine_destroy(&p->rx);
    cr_assert_null(p->tx);
    free(p->tx_pool);
    free(p->rx_pool);
}

static bool both_done(void *arg)
{
    void **h = arg;
    return pd_xfer_send_status(h[0]) != PD_INPROGRESS && pd_xfer_recv_status(h[1]) != PD_INPROGRESS;
}

/* Blocks {2,3,4} and {9} of every layer, sent to blocks {5,6,7} and {12}. */
static size_t scattered_segs(pd_xfer_seg_t *segs, pd_xfer_range_t *ranges, size_t *n_ranges)
{
    static const uint32_t src[4] = {2, 3, 4, 9}, dst[4] = {5, 6, 7, 12};
    size_t bl = pd_kv_block_layer_bytes(&layout), n = 0, nr = 0;
    for (uint32_t l = 0; l < layout.n_layers; l++) {
        for (int i = 0; i < 4; i++) {
            segs[n].local_offset = pd_kv_offset(&layout, l, src[i]);
            segs[n].remote_offset = pd_kv_offset(&layout, l, dst[i]);
            segs[n].bytes = bl;
            ranges[nr].offset = segs[n].remote_offset;
            ranges[nr].bytes = bl;
            n++, nr++;
        }
    }
    *n_ranges = nr;
    return n;
}

Test(xfer_loopback, scattered_blocks_land_exactly_where_described)
{
    pair_t p;
    pair_open(&p, true, true, true);
    pd_xfer_seg_t segs[64];
    pd_xfer_range_t ranges[64];
    size_t n_ranges = 0, n = scattered_segs(segs, ranges, &n_ranges);
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 42, ranges, n_ranges, 2000, &recv), PD_OK);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 42, ranges, n_ranges, 2000, &send), PD_OK);
    for (uint32_t l = 0; l < layout.n_layers; l++)
        cr_assert_eq(pd_xfer_send_post(send, segs + 4 * l, 4), PD_OK);
    const int32_t first_token = 1234;
    cr_assert_eq(pd_xfer_send_finish(send, &first_token, sizeof(first_token)), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    cr_assert_eq(pd_xfer_send_status(send), PD_OK);
    const void *payload;
    size_t payload_bytes;
    cr_assert_eq(pd_xfer_recv_payload(recv, &payload, &payload_bytes), PD_OK);
    cr_assert_eq(payload_bytes, sizeof(int32_t));
    cr_assert_eq(*(const int32_t *)payload, 1234);
    const pd_xfer_seg_t *vsegs;
    size_t n_vsegs;
    cr_assert_eq(pd_xfer_recv_segments(recv, &vsegs, &n_vsegs), PD_OK);
    cr_assert_eq(n_vsegs, n);
    /* Every byte: the described destinations hold the source bytes, the rest is 0xEE. */
    uint8_t *expect = malloc(p.pool_bytes);
    memset(expect, 0xEE, p.pool_bytes);
    for (size_t i = 0; i < n; i++)
        memcpy(expect + segs[i].remote_offset, p.tx_pool + segs[i].local_offset, segs[i].bytes);
    cr_assert_eq(memcmp(expect, p.rx_pool, p.pool_bytes), 0);
    free(expect);
    /* {2,3,4}->{5,6,7} is one run per layer, {9}->{12} another: 8 operations. */
    pd_xfer_stats_t stats;
    pd_xfer_engine_stats(p.tx, &stats);
    cr_assert_eq(stats.n_segs_posted, 16);
    cr_assert_eq(stats.n_ops_issued, 8);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    cr_assert_null(send);
    pair_close(&p);
}

Test(xfer_loopback, coalescing_off_issues_one_op_per_segment)
{
    pair_t p;
    pair_open(&p, true, true, false);
    pd_xfer_seg_t segs[64];
    pd_xfer_range_t ranges[64];
    size_t n_ranges = 0, n = scattered_segs(segs, ranges, &n_ranges);
    pd_xfer_recv_t *recv = NULL;
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, ranges, n_ranges, 2000, &recv), PD_OK);
    cr_assert_eq(pd_xfer_send_begin(p.peer, 1, NULL, 0, 2000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    pd_xfer_stats_t stats;
    pd_xfer_engine_stats(p.tx, &stats);
    cr_assert_eq(stats.n_ops_issued, 16);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

static void corrupt_one_byte(void *arg, void *base, const pd_xfer_seg_t *segs, size_t n_segs)
{
    int *calls = arg;
    (*calls)++;
    uint8_t *b = base;
    b[segs[n_segs - 1].local_offset + 17] ^= 0x01;
}

Test(xfer_loopback, corrupt_byte_is_caught_by_checksum)
{
    pair_t p;
    pair_open(&p, true, true, true);
    int calls = 0;
    pd_xfer_engine_set_verify_hook(p.rx, corrupt_one_byte, &calls);
    pd_xfer_seg_t segs[64];
    pd_xfer_range_t ranges[64];
    size_t n_ranges = 0, n = scattered_segs(segs, ranges, &n_ranges);
    pd_xfer_recv_t *recv = NULL;
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 5, ranges, n_ranges, 2000, &recv), PD_OK);
    cr_assert_eq(pd_xfer_send_begin(p.peer, 5, ranges, n_ranges, 2000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    cr_assert_eq(calls, 1);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_CHECKSUM);
    cr_assert_eq(pd_xfer_send_status(send), PD_ERR_CHECKSUM);
    const pd_xfer_seg_t *vsegs;
    size_t n_vsegs;
    cr_assert_eq(pd_xfer_recv_segments(recv, &vsegs, &n_vsegs), PD_ERR_CHECKSUM);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

Test(xfer_loopback, checksums_can_be_switched_off)
{
    pair_t p;
    pair_open(&p, false, false, true);
    int calls = 0;
    pd_xfer_engine_set_verify_hook(p.rx, corrupt_one_byte, &calls);
    pd_xfer_seg_t segs[64];
    pd_xfer_range_t ranges[64];
    size_t n_ranges = 0, n = scattered_segs(segs, ranges, &n_ranges);
    pd_xfer_recv_t *recv = NULL;
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 5, ranges, n_ranges, 2000, &recv), PD_OK);
    cr_assert_eq(pd_xfer_send_begin(p.peer, 5, ranges, n_ranges, 2000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    /* Without checksums the corruption goes unseen: that is the cost being saved. */
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

Test(xfer_loopback, receiver_with_checksums_refuses_a_batch_without)
{
    pair_t p;
    pair_open(&p, false, true, true);
    pd_xfer_seg_t segs[64];
    pd_xfer_range_t ranges[64];
    size_t n_ranges = 0, n = scattered_segs(segs, ranges, &n_ranges);
    pd_xfer_recv_t *recv = NULL;
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 6, ranges, n_ranges, 2000, &recv), PD_OK);
    cr_assert_eq(pd_xfer_send_begin(p.peer, 6, NULL, 0, 2000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_CHECKSUM);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

Test(xfer_loopback, sender_refuses_out_of_range_and_overflowing_segments)
{
    pair_t p;
    pair_open(&p, true, true, true);
    size_t bl = pd_kv_block_layer_bytes(&layout);
    pd_xfer_range_t allowed = {.offset = pd_kv_offset(&layout, 0, 5), .bytes = 2 * bl};
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 9, &allowed, 1, 2000, &send), PD_OK);
    const pd_xfer_seg_t ok = {0, allowed.offset, bl};
    const pd_xfer_seg_t bad[] = {
        {0, allowed.offset + bl, 2 * bl},       /* runs past the reservation */
        {0, pd_kv_offset(&layout, 0, 9), bl},   /* another request's block */
        {0, p.pool_bytes - 8, 16},              /* past the peer's region */
        {0, UINT64_MAX - 8, 64},                /* offset + bytes overflows */
        {UINT64_MAX - 8, allowed.offset, 64},   /* local overflow */
        {p.pool_bytes - 8, allowed.offset, 16}, /* past the local region */
        {0, allowed.offset, 0},                 /* empty */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pd_xfer_seg_t batch[2] = {ok, bad[i]};
        cr_assert_eq(pd_xfer_send_post(send, batch, 2), PD_ERR_OUT_OF_RANGE, "case %zu", i);
    }
    /* Nothing of a refused batch moved, not even its valid first segment. */
    for (size_t i = 0; i < p.pool_bytes; i++)
        cr_assert_eq(p.rx_pool[i], 0xEE);
    pd_xfer_stats_t stats;
    pd_xfer_engine_stats(p.tx, &stats);
    cr_assert_eq(stats.n_ops_issued, 0);
    /* A reservation outside the peer's region is refused at begin. */
    pd_xfer_range_t outside = {.offset = p.pool_bytes - bl, .bytes = 2 * bl};
    pd_xfer_send_t *send2 = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 10, &outside, 1, 2000, &send2), PD_ERR_OUT_OF_RANGE);
    cr_assert_null(send2);
    pd_xfer_send_destroy(&send);
    pair_close(&p);
}

Test(xfer_loopback, receiver_refuses_bytes_it_did_not_reserve)
{
    pair_t p;
    pair_open(&p, true, true, true);
    size_t bl = pd_kv_block_layer_bytes(&layout);
    pd_xfer_range_t reserved = {.offset = pd_kv_offset(&layout, 0, 1), .bytes = bl};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 77, &reserved, 1, 2000, &recv), PD_OK);
    /* A sender that was told the whole region is fair game (a lying or confused peer). */
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 77, NULL, 0, 2000, &send), PD_OK);
    pd_xfer_seg_t segs[2] = {{0, reserved.offset, bl}, {0, pd_kv_offset(&layout, 0, 2), bl}};
    cr_assert_eq(pd_xfer_send_post(send, segs, 2), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(p.tx, p.rx, both_done, h, 2000));
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_send_status(send), PD_ERR_OUT_OF_RANGE);
    pd_xfer_stats_t stats;
    pd_xfer_engine_stats(p.rx, &stats);
    cr_assert_eq(stats.n_notify_refused, 1);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

/* A hand-made notification, as a hostile peer could send it. */
static void inject_notify(pd_xfer_engine_t *rx, uint64_t xfer_id, uint64_t off, uint64_t bytes)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    uint64_t triple[3] = {off, bytes, 0};
    pd_mp_put_map(&w, 6);
    pd_mp_put_str(&w, "t");
    pd_mp_put_str(&w, "notify");
    pd_mp_put_str(&w, "xfer");
    pd_mp_put_u64(&w, xfer_id);
    pd_mp_put_str(&w, "src");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "ck");
    pd_mp_put_bool(&w, true);
    pd_mp_put_str(&w, "segs");
    pd_mp_put_bin(&w, triple, sizeof(triple));
    pd_mp_put_str(&w, "payload");
    pd_mp_put_bin(&w, "", 0);
    pd_xfer__msg_deliver(rx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), (void *)(uintptr_t)1);
    pd_mp_writer_cleanup(&w);
}

Test(xfer_loopback, receiver_refuses_overflowing_notification)
{
    pair_t p;
    pair_open(&p, true, true, true);
    pd_xfer_range_t all = {.offset = 0, .bytes = p.pool_bytes};
    pd_xfer_recv_t *r1 = NULL, *r2 = NULL, *r3 = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, &all, 1, 2000, &r1), PD_OK);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 2, &all, 1, 2000, &r2), PD_OK);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 3, &all, 1, 2000, &r3), PD_OK);
    inject_notify(p.rx, 1, UINT64_MAX - 16, 4096);   /* wraps around */
    inject_notify(p.rx, 2, p.pool_bytes - 16, 4096); /* runs off the region */
    inject_notify(p.rx, 3, 0, 4096);                 /* in range, wrong checksum */
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(r1), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_recv_status(r2), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_recv_status(r3), PD_ERR_CHECKSUM);
    /* Expectations outside the region are refused too. */
    pd_xfer_range_t bad = {.offset = p.pool_bytes - 16, .bytes = 4096};
    pd_xfer_recv_t *r4 = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 4, &bad, 1, 2000, &r4), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, &all, 1, 2000, &r4), PD_ERR_EXISTS);
    pd_xfer_recv_destroy(&r1);
    pd_xfer_recv_destroy(&r2);
    pd_xfer_recv_destroy(&r3);
    pair_close(&p);
}

static bool recv_final(void *arg)
{
    return pd_xfer_recv_status(arg) != PD_INPROGRESS;
}

Test(xfer_loopback, expectation_times_out_without_notification)
{
    pair_t p;
    pair_open(&p, true, true, true);
    pd_xfer_range_t all = {.offset = 0, .bytes = p.pool_bytes};
    pd_xfer_recv_t *recv = NULL;
    uint64_t t0 = pd_time_now_ns();
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, &all, 1, 150, &recv), PD_OK);
    long next = pd_xfer_engine_next_deadline_ms(p.rx);
    cr_assert(next > 0 && next <= 150);
    cr_assert(xt_wait(p.rx, NULL, recv_final, recv, 3000));
    double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_TIMEOUT);
    cr_assert(ms >= 150 && ms < 1000, "took %.1f ms", ms);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

Test(xfer_loopback, declared_peer_failure_fails_inflight_transfers)
{
    pair_t p;
    pair_open(&p, true, true, true);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 3, NULL, 0, 5000, &send), PD_OK);
    pd_xfer_seg_t seg = {0, 0, 4096};
    cr_assert_eq(pd_xfer_send_post(send, &seg, 1), PD_OK);
    pd_xfer_peer_fail(p.peer, PD_ERR_PEER);
    cr_assert_eq(pd_xfer_send_status(send), PD_ERR_PEER);
    cr_assert_eq(pd_xfer_send_post(send, &seg, 1), PD_ERR_PEER);
    pd_xfer_send_t *send2 = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 4, NULL, 0, 5000, &send2), PD_ERR_PEER);
    pd_xfer_send_destroy(&send);
    pair_close(&p);
}

Test(xfer_loopback, disconnect_cancels_and_fd_wakes_receiver)
{
    pair_t p;
    pair_open(&p, true, true, true);
    int fd = -1;
    cr_assert_eq(pd_xfer_engine_fd(p.rx, &fd), PD_OK);
    cr_assert_eq(pd_xfer_engine_arm(p.rx), PD_OK);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 0), 0);
    pd_xfer_range_t all = {.offset = 0, .bytes = p.pool_bytes};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 8, &all, 1, 2000, &recv), PD_OK);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 8, NULL, 0, 2000, &send), PD_OK);
    pd_xfer_seg_t seg = {0, 0, 4096};
    cr_assert_eq(pd_xfer_send_post(send, &seg, 1), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    pd_xfer_engine_progress(p.tx); /* sends the notification */
    cr_assert_eq(poll(&pfd, 1, 1000), 1);
    cr_assert_eq(pd_xfer_engine_arm(p.rx), PD_ERR_BUSY);
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    /* Disconnect before the ack was consumed: the transfer ends canceled. */
    pd_xfer_peer_disconnect(&p.peer);
    cr_assert_eq(pd_xfer_send_status(send), PD_ERR_CANCELED);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    pair_close(&p);
}

Test(xfer_loopback, nccl_is_unsupported_in_this_build)
{
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    pd_xfer_backend_t b;
    cr_assert_eq(pd_xfer_backend_parse("nccl", &b), PD_OK);
    cfg.backend = b;
    pd_xfer_engine_t *e = NULL;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &e), PD_ERR_UNSUPPORTED);
    cr_assert_null(e);
    cr_assert_eq(pd_xfer_backend_parse("carrier-pigeon", &b), PD_ERR_INVALID_PARAM);
}

Test(xfer_loopback, bad_descriptors_are_refused)
{
    pair_t p;
    pair_open(&p, true, true, true);
    pd_xfer_peer_t *peer = NULL;
    const unsigned char bomb[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
    cr_assert_neq(pd_xfer_peer_connect(p.tx, bomb, sizeof(bomb), &peer), PD_OK);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 1);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    cr_assert_eq(pd_xfer_peer_connect(p.tx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &peer),
                 PD_ERR_PROTO);
    cr_assert_null(peer);
    pd_mp_writer_cleanup(&w);
    uint64_t bytes = 0;
    pd_kv_layout_t l;
    cr_assert_eq(pd_xfer_peer_region(p.peer, &bytes, &l), PD_OK);
    cr_assert_eq(bytes, p.pool_bytes);
    cr_assert_eq(l.n_blocks, layout.n_blocks);
    pair_close(&p);
}

Test(xfer_loopback, fabric_allocated_pool_receives_and_is_freed)
{
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.backend = PD_XFER_BACKEND_LOOPBACK;
    pd_xfer_engine_t *tx = NULL, *rx = NULL;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &tx), PD_OK);
    cr_assert_eq(pd_xfer_engine_create(&cfg, &rx), PD_OK);
    size_t bytes = pd_kv_pool_bytes(&layout);
    uint8_t *src = malloc(bytes);
    xt_fill(src, bytes, 3);
    cr_assert_eq(pd_xfer_mem_register(tx, src, bytes, &layout), PD_OK);
    void *base = NULL;
    cr_assert_eq(pd_xfer_mem_alloc(rx, bytes - 1, &layout, &base), PD_ERR_INVALID_PARAM);
    cr_assert_null(base);
    cr_assert_eq(pd_xfer_mem_alloc(rx, bytes, &layout, &base), PD_OK);
    cr_assert_not_null(base);
    cr_assert_eq(pd_xfer_mem_alloc(rx, bytes, &layout, &base), PD_ERR_EXISTS);
    memset(base, 0, bytes);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_xfer_desc_export(rx, &w), PD_OK);
    pd_xfer_peer_t *peer = NULL;
    cr_assert_eq(pd_xfer_peer_connect(tx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &peer),
                 PD_OK);
    pd_mp_writer_cleanup(&w);
    pd_xfer_range_t r = {.offset = 0, .bytes = bytes};
    pd_xfer_recv_t *recv = NULL;
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_recv_expect(rx, 1, &r, 1, 2000, &recv), PD_OK);
    cr_assert_eq(pd_xfer_send_begin(peer, 1, NULL, 0, 2000, &send), PD_OK);
    pd_xfer_seg_t seg = {.local_offset = 0, .remote_offset = 0, .bytes = bytes};
    cr_assert_eq(pd_xfer_send_post(send, &seg, 1), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    void *h[2] = {send, recv};
    cr_assert(xt_wait(tx, rx, both_done, h, 2000));
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    cr_assert_eq(memcmp(base, src, bytes), 0);
    /* Busy while a transfer into it is pending; freed by deregister otherwise. */
    pd_xfer_recv_t *pending = NULL;
    cr_assert_eq(pd_xfer_recv_expect(rx, 2, &r, 1, 2000, &pending), PD_OK);
    cr_assert_eq(pd_xfer_mem_deregister(rx), PD_ERR_BUSY);
    pd_xfer_recv_destroy(&pending);
    pd_xfer_recv_destroy(&recv);
    pd_xfer_send_destroy(&send);
    cr_assert_eq(pd_xfer_mem_deregister(rx), PD_OK);
    cr_assert_eq(pd_xfer_mem_deregister(rx), PD_ERR_NOT_FOUND);
    pd_xfer_peer_disconnect(&peer);
    pd_xfer_engine_destroy(&tx);
    pd_xfer_engine_destroy(&rx);
    free(src);
}
