/* The active-message data path's receiver logic over the loopback backend: data messages
 * land only inside what was reserved, a notification waits for its data (it never
 * overtakes it, in whatever order they arrive), more data than announced is refused, a
 * parked notification times out cleanly, and a receive still landing when its handle is
 * destroyed is kept until it completes. */
#include "xfer_int.h"
#include "xfer_test_util.h"

#include "pd/hash.h"

#include <criterion/criterion.h>

#define AM_POOL_BYTES (64u * 1024u)

typedef struct am_pair {
    pd_xfer_engine_t *tx, *rx;
    uint8_t *tx_pool, *rx_pool; /* (AM_POOL_BYTES) */
    pd_xfer_peer_t *peer;
} am_pair_t;

static void am_pair_open(am_pair_t *p)
{
    p->tx_pool = malloc(AM_POOL_BYTES);
    p->rx_pool = malloc(AM_POOL_BYTES);
    xt_fill(p->tx_pool, AM_POOL_BYTES, 3);
    memset(p->rx_pool, 0xEE, AM_POOL_BYTES);
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.backend = PD_XFER_BACKEND_LOOPBACK;
    cfg.data_path = PD_XFER_DATA_PATH_AM;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->tx), PD_OK);
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->rx), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->tx, p->tx_pool, AM_POOL_BYTES, NULL), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->rx, p->rx_pool, AM_POOL_BYTES, NULL), PD_OK);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_xfer_desc_export(p->rx, &w), PD_OK);
    cr_assert_eq(
        pd_xfer_peer_connect(p->tx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &p->peer), PD_OK);
    pd_mp_writer_cleanup(&w);
    cr_assert_eq(pd_xfer_peer_data_path(p->peer), PD_XFER_DATA_PATH_AM);
}

static void am_pair_close(am_pair_t *p)
{
    pd_xfer_peer_disconnect(&p->peer);
    pd_xfer_engine_destroy(&p->tx);
    pd_xfer_engine_destroy(&p->rx);
    free(p->tx_pool);
    free(p->rx_pool);
}

/* A notification as the sender writes it for one segment [off, +bytes) whose bytes hash to
 * sum, announcing msg_bytes of data messages. */
static void notify_inject(pd_xfer_engine_t *rx, uint64_t xfer_id, uint64_t src, uint64_t off,
                          uint64_t bytes, uint64_t sum, uint64_t msg_bytes)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    uint64_t triple[3] = {off, bytes, sum};
    pd_mp_put_map(&w, 7);
    pd_mp_put_str(&w, "t");
    pd_mp_put_str(&w, "notify");
    pd_mp_put_str(&w, "xfer");
    pd_mp_put_u64(&w, xfer_id);
    pd_mp_put_str(&w, "src");
    pd_mp_put_u64(&w, src);
    pd_mp_put_str(&w, "ck");
    pd_mp_put_bool(&w, true);
    pd_mp_put_str(&w, "segs");
    pd_mp_put_bin(&w, triple, sizeof(triple));
    pd_mp_put_str(&w, "payload");
    pd_mp_put_bin(&w, "", 0);
    pd_mp_put_str(&w, "msg_bytes");
    pd_mp_put_u64(&w, msg_bytes);
    pd_xfer__msg_deliver(rx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), (void *)(uintptr_t)1);
    pd_mp_writer_cleanup(&w);
}

/* What a backend does with an arriving data message: check it, copy it into place. */
static pd_status_t data_arrive(pd_xfer_engine_t *rx, uint64_t xfer_id, uint64_t src, uint64_t off,
                               const void *bytes, uint64_t n)
{
    pd_xfer__data_hdr_t hdr = {.xfer_id = xfer_id, .src = src, .offset = off};
    pd_xfer_recv_t *recv = NULL;
    void *dest = NULL;
    pd_status_t st = pd_xfer__data_accept(rx, &hdr, n, &recv, &dest);
    if (st != PD_OK)
        return st;
    memcpy(dest, bytes, n);
    pd_xfer__data_landed(recv, n, PD_OK, false);
    return PD_OK;
}

Test(xfer_am, blocks_land_through_data_messages)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 8192, .bytes = 16384};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, &r, 1, 2000, &recv), PD_OK);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 1, &r, 1, 2000, &send), PD_OK);
    pd_xfer_seg_t segs[2] = {{0, 8192, 4096}, {32768, 12288, 12288}};
    cr_assert_eq(pd_xfer_send_post(send, segs, 2), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, "tok", 3), PD_OK);
    for (int i = 0; i < 10 && pd_xfer_send_status(send) == PD_INPROGRESS; i++) {
        pd_xfer_engine_progress(p.tx);
        pd_xfer_engine_progress(p.rx);
    }
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    cr_assert_eq(pd_xfer_send_status(send), PD_OK);
    cr_assert_eq(memcmp(p.rx_pool + 8192, p.tx_pool, 4096), 0);
    cr_assert_eq(memcmp(p.rx_pool + 12288, p.tx_pool + 32768, 12288), 0);
    cr_assert_eq(p.rx_pool[8191], 0xEE);
    cr_assert_eq(p.rx_pool[24576], 0xEE);
    pd_xfer_stats_t st;
    pd_xfer_engine_stats(p.rx, &st);
    cr_assert_eq(st.bytes_received, 16384);
    cr_assert_eq(st.n_data_refused, 0);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

Test(xfer_am, notification_waits_for_its_data)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 0, .bytes = 8192};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 5, &r, 1, 2000, &recv), PD_OK);
    const uint8_t *data = p.tx_pool; /* (8192) what will land */
    notify_inject(p.rx, 5, 42, 0, 8192, pd_hash_bytes(data, 8192, 0), 8192);
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_INPROGRESS, "applied before any data landed");
    cr_assert_eq(pd_xfer_engine_arm(p.rx), PD_OK, "nothing is due yet");
    cr_assert_eq(data_arrive(p.rx, 5, 42, 4096, data + 4096, 4096), PD_OK);
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_INPROGRESS, "applied with half its data");
    cr_assert_eq(data_arrive(p.rx, 5, 42, 0, data, 4096), PD_OK);
    cr_assert_eq(pd_xfer_engine_arm(p.rx), PD_ERR_BUSY, "a parked notification is due");
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
    cr_assert_eq(memcmp(p.rx_pool, data, 8192), 0);
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

Test(xfer_am, more_data_than_announced_is_refused)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 0, .bytes = 8192};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 6, &r, 1, 2000, &recv), PD_OK);
    cr_assert_eq(data_arrive(p.rx, 6, 42, 0, p.tx_pool, 4096), PD_OK);
    cr_assert_eq(data_arrive(p.rx, 6, 42, 0, p.tx_pool, 4096), PD_OK); /* the same block twice */
    notify_inject(p.rx, 6, 42, 0, 4096, pd_hash_bytes(p.tx_pool, 4096, 0), 4096);
    pd_xfer_engine_progress(p.rx);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_PROTO);
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

Test(xfer_am, data_outside_the_reservation_or_from_a_second_sender_is_refused)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 4096, .bytes = 4096};
    pd_xfer_recv_t *a = NULL, *b = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 7, &r, 1, 2000, &a), PD_OK);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 8, &r, 1, 2000, &b), PD_OK);
    /* Unknown transfer: nothing is written, nothing fails. */
    cr_assert_eq(data_arrive(p.rx, 99, 42, 4096, p.tx_pool, 4096), PD_ERR_NOT_FOUND);
    /* One byte past the reservation, and an offset that wraps. */
    cr_assert_eq(data_arrive(p.rx, 7, 42, 4097, p.tx_pool, 4096), PD_ERR_OUT_OF_RANGE);
    pd_xfer__data_hdr_t wrap = {.xfer_id = 8, .src = 42, .offset = UINT64_MAX - 100};
    pd_xfer_recv_t *got = NULL;
    void *dest = NULL;
    cr_assert_eq(pd_xfer__data_accept(p.rx, &wrap, 4096, &got, &dest), PD_ERR_OUT_OF_RANGE);
    for (size_t i = 0; i < AM_POOL_BYTES; i++)
        cr_assert_eq(p.rx_pool[i], 0xEE, "byte %zu written", i);
    cr_assert_eq(pd_xfer_recv_status(a), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_recv_status(b), PD_ERR_OUT_OF_RANGE);
    /* Two senders for one transfer. */
    pd_xfer_recv_t *c = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 9, &r, 1, 2000, &c), PD_OK);
    cr_assert_eq(data_arrive(p.rx, 9, 42, 4096, p.tx_pool, 2048), PD_OK);
    cr_assert_eq(data_arrive(p.rx, 9, 43, 6144, p.tx_pool, 2048), PD_ERR_PROTO);
    cr_assert_eq(pd_xfer_recv_status(c), PD_ERR_PROTO);
    pd_xfer_stats_t st;
    pd_xfer_engine_stats(p.rx, &st);
    cr_assert_eq(st.n_data_refused, 4);
    pd_xfer_recv_destroy(&a);
    pd_xfer_recv_destroy(&b);
    pd_xfer_recv_destroy(&c);
    am_pair_close(&p);
}

Test(xfer_am, sender_sees_a_refused_data_message)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 0, .bytes = 4096};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 3, &r, 1, 2000, &recv), PD_OK);
    pd_xfer_send_t *send = NULL;
    /* The sender believes it may write anywhere; the receiver knows better. */
    cr_assert_eq(pd_xfer_send_begin(p.peer, 3, NULL, 0, 2000, &send), PD_OK);
    pd_xfer_seg_t seg = {0, 8192, 4096};
    cr_assert_eq(pd_xfer_send_post(send, &seg, 1), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_send_status(send), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(p.rx_pool[8192], 0xEE);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

static bool recv_final(void *arg)
{
    return pd_xfer_recv_status(arg) != PD_INPROGRESS;
}

Test(xfer_am, parked_notification_times_out_and_is_answered)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 0, .bytes = 8192};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 4, &r, 1, 150, &recv), PD_OK);
    cr_assert_eq(data_arrive(p.rx, 4, 42, 0, p.tx_pool, 4096), PD_OK);
    notify_inject(p.rx, 4, 42, 0, 8192, 0, 8192); /* half of it never comes */
    uint64_t t0 = pd_time_now_ns();
    cr_assert(xt_wait(p.rx, NULL, recv_final, recv, 2000), "the expectation never ended");
    cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_TIMEOUT);
    cr_assert(pd_time_now_ns() - t0 < 1000000000ull);
    cr_assert_null(recv->parked, "the parked notification is still held");
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

Test(xfer_am, handle_destroyed_while_data_lands_is_kept_until_it_completes)
{
    am_pair_t p;
    am_pair_open(&p);
    pd_xfer_range_t r = {.offset = 0, .bytes = 8192};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 2, &r, 1, 2000, &recv), PD_OK);
    /* A rendezvous receive in flight, as the UCX backend starts one. */
    pd_xfer__data_hdr_t hdr = {.xfer_id = 2, .src = 42, .offset = 0};
    pd_xfer_recv_t *landing = NULL;
    void *dest = NULL;
    cr_assert_eq(pd_xfer__data_accept(p.rx, &hdr, 8192, &landing, &dest), PD_OK);
    landing->n_landing++;
    pd_xfer_recv_destroy(&recv);
    cr_assert_eq(p.rx->n_orphan_recvs, 1);
    cr_assert_eq(pd_xfer_mem_deregister(p.rx), PD_ERR_BUSY, "deregistered under a receive");
    /* The id is free again, and a new expectation does not see the orphan's data. */
    pd_xfer_recv_t *again = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 2, &r, 1, 2000, &again), PD_OK);
    pd_xfer__data_landed(landing, 8192, PD_OK, true); /* frees the orphan */
    cr_assert_eq(p.rx->n_orphan_recvs, 0);
    cr_assert_eq(again->bytes_landed, 0);
    pd_xfer_recv_destroy(&again);
    cr_assert_eq(pd_xfer_mem_deregister(p.rx), PD_OK);
    am_pair_close(&p);
}

/* Compression over the loopback backend: the receiver restores what the sender packed,
 * the checksums (of restored bytes) verify, slices that are not whole blocks go raw, and a
 * packed message whose size does not match the receiver's layout is refused. */
static const pd_kv_layout_t klay = {
    .n_layers = 2, .n_kv_heads = 2, .head_dim = 32, .block_tokens = 4, .n_blocks = 16};

static void kv_pair_open(am_pair_t *p, pd_xfer_codec_t codec)
{
    const size_t bytes = pd_kv_pool_bytes(&klay);
    p->tx_pool = malloc(bytes);
    p->rx_pool = malloc(bytes);
    float *f = (float *)(void *)p->tx_pool;
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        f[i] = ((float)xt_pattern(i, 2) - 128.0f) / 50.0f;
    memset(p->rx_pool, 0xEE, bytes);
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.backend = PD_XFER_BACKEND_LOOPBACK;
    cfg.data_path = PD_XFER_DATA_PATH_AM;
    cfg.codec = codec;
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->tx), PD_OK);
    cr_assert_eq(pd_xfer_engine_create(&cfg, &p->rx), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->tx, p->tx_pool, bytes, &klay), PD_OK);
    cr_assert_eq(pd_xfer_mem_register(p->rx, p->rx_pool, bytes, &klay), PD_OK);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_xfer_desc_export(p->rx, &w), PD_OK);
    cr_assert_eq(
        pd_xfer_peer_connect(p->tx, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &p->peer), PD_OK);
    pd_mp_writer_cleanup(&w);
}

Test(xfer_am, packed_blocks_restore_and_verify)
{
    am_pair_t p;
    kv_pair_open(&p, PD_XFER_CODEC_FP8);
    const size_t raw = pd_kv_block_layer_bytes(&klay);
    /* Layer 1, blocks 2..4 to 9..11 (one packed run), and half a block (goes raw). */
    pd_xfer_seg_t segs[4];
    for (uint32_t i = 0; i < 3; i++)
        segs[i] =
            (pd_xfer_seg_t){pd_kv_offset(&klay, 1, 2 + i), pd_kv_offset(&klay, 1, 9 + i), raw};
    segs[3] = (pd_xfer_seg_t){pd_kv_offset(&klay, 0, 5), pd_kv_offset(&klay, 0, 5), raw / 2};
    pd_xfer_range_t r[2] = {{pd_kv_offset(&klay, 1, 9), 3 * raw},
                            {pd_kv_offset(&klay, 0, 5), raw / 2}};
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, r, 2, 2000, &recv), PD_OK);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(p.peer, 1, r, 2, 2000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, 4), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    for (int i = 0; i < 10 && pd_xfer_send_status(send) == PD_INPROGRESS; i++) {
        pd_xfer_engine_progress(p.tx);
        pd_xfer_engine_progress(p.rx);
    }
    cr_assert_eq(pd_xfer_recv_status(recv), PD_OK, "%s", pd_status_name(pd_xfer_recv_status(recv)));
    cr_assert_eq(pd_xfer_send_status(send), PD_OK);
    float *want = malloc(raw);
    uint8_t *packed = malloc(pd_xfer_codec_block_bytes(PD_XFER_CODEC_FP8, &klay));
    for (uint32_t i = 0; i < 3; i++) {
        pd_xfer_codec_pack(PD_XFER_CODEC_FP8, &klay,
                           (const float *)(void *)(p.tx_pool + segs[i].local_offset), packed);
        pd_xfer_codec_unpack(PD_XFER_CODEC_FP8, &klay, packed, want);
        cr_assert_eq(memcmp(p.rx_pool + segs[i].remote_offset, want, raw), 0, "block %u", i);
    }
    cr_assert_eq(
        memcmp(p.rx_pool + segs[3].remote_offset, p.tx_pool + segs[3].local_offset, raw / 2), 0,
        "the half block must go as it is");
    pd_xfer_stats_t st;
    pd_xfer_engine_stats(p.tx, &st);
    const size_t pb = pd_xfer_codec_block_bytes(PD_XFER_CODEC_FP8, &klay);
    cr_assert_eq(st.bytes_wire, 3 * pb + raw / 2);
    cr_assert_eq(st.bytes_posted, 3 * raw + raw / 2);
    free(want);
    free(packed);
    pd_xfer_send_destroy(&send);
    pd_xfer_recv_destroy(&recv);
    am_pair_close(&p);
}

Test(xfer_am, packed_message_of_the_wrong_shape_is_refused)
{
    am_pair_t p;
    kv_pair_open(&p, PD_XFER_CODEC_INT8);
    const size_t raw = pd_kv_block_layer_bytes(&klay);
    const size_t pb = pd_xfer_codec_block_bytes(PD_XFER_CODEC_INT8, &klay);
    pd_xfer_range_t r = {0, 4 * raw};
    pd_xfer_recv_t *a = NULL, *b = NULL, *c = NULL;
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 1, &r, 1, 2000, &a), PD_OK);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 2, &r, 1, 2000, &b), PD_OK);
    cr_assert_eq(pd_xfer_recv_expect(p.rx, 3, &r, 1, 2000, &c), PD_OK);
    pd_xfer__data_hdr_t h = {
        .xfer_id = 1, .src = 9, .offset = 0, .raw_bytes = 2 * raw, .codec = PD_XFER_CODEC_INT8};
    pd_xfer_recv_t *got = NULL;
    void *dest = NULL;
    cr_assert_eq(pd_xfer__data_accept(p.rx, &h, 2 * pb - 1, &got, &dest), PD_ERR_PROTO);
    h.xfer_id = 2;
    h.offset = 8; /* not at a block boundary */
    cr_assert_eq(pd_xfer__data_accept(p.rx, &h, 2 * pb, &got, &dest), PD_ERR_PROTO);
    h.xfer_id = 3;
    h.offset = 0;
    h.codec = 7; /* no such codec */
    cr_assert_eq(pd_xfer__data_accept(p.rx, &h, 2 * pb, &got, &dest), PD_ERR_PROTO);
    for (size_t i = 0; i < 4 * raw; i++)
        cr_assert_eq(p.rx_pool[i], 0xEE);
    pd_xfer_recv_destroy(&a);
    pd_xfer_recv_destroy(&b);
    pd_xfer_recv_destroy(&c);
    am_pair_close(&p);
}
