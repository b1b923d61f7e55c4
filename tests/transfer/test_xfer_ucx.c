/* The UCX backend between two real processes (this test and pd-xfer-peer): bytes arrive
 * intact over shared memory and TCP, by puts where the transport does them natively and
 * by active messages where it does not, the notification never overtakes its data, a
 * receiver refuses data outside what it reserved, and a peer that dies mid-batch turns
 * into an error on the other side within the timeout. */
#include "xfer_test_side.h"

Test(xfer_ucx, bytes_arrive_intact_over_shared_memory)
{
    /* Only shared-memory transports are allowed: if this works, shm carried it. The
     * receiver's pool is fabric-allocated, mapped here: puts are copies. */
    xt_want_path = PD_XFER_DATA_PATH_PUT;
    run_intact(shm_tls, NULL, NULL, "tcp", 20);
}

Test(xfer_ucx, bytes_arrive_intact_over_shm_into_registered_memory)
{
    /* Memory the caller registers (not allocated by UCX) cannot be mapped by the sender:
     * UCX would emulate puts, so the fabric sends active messages. */
    xt_peer_register = true;
    xt_want_path = PD_XFER_DATA_PATH_AM;
    run_intact(shm_tls, NULL, NULL, "tcp", 20);
}

Test(xfer_ucx, notification_never_overtakes_its_data_over_shm)
{
    run_intact(shm_tls, NULL, NULL, "tcp", 200);
}

Test(xfer_ucx, bytes_arrive_intact_over_tcp)
{
    /* Loopback only: the worker address then carries no other interface. UCX 1.13 has no
     * native put over TCP: the fabric chooses active messages. */
    xt_want_path = PD_XFER_DATA_PATH_AM;
    run_intact("tcp", "lo", "tcp/lo", "posix", 50);
}

Test(xfer_ucx, notification_never_overtakes_its_data_over_tcp)
{
    xt_want_path = PD_XFER_DATA_PATH_AM;
    run_intact("tcp", "lo", "tcp/lo", "posix", 200);
}

Test(xfer_ucx, forced_puts_still_work_over_tcp)
{
    xt_data_path = PD_XFER_DATA_PATH_PUT;
    xt_want_path = PD_XFER_DATA_PATH_PUT;
    run_intact("tcp", "lo", "tcp/lo", "posix", 10);
}

Test(xfer_ucx, forced_active_messages_work_over_shm)
{
    xt_data_path = PD_XFER_DATA_PATH_AM;
    xt_want_path = PD_XFER_DATA_PATH_AM;
    run_intact(shm_tls, NULL, NULL, "tcp", 20);
}

/* A sender given the whole region (allowed = NULL) writes a block the receiver did not
 * reserve for this transfer: the receiver refuses the data message before writing any of
 * it, the transfer fails on both sides, and the receiver's pool is untouched. block_bytes
 * picks the protocol: small messages arrive eagerly, large ones by rendezvous. */
static void run_refused_data(size_t block_bytes)
{
    side_t s;
    xt_want_path = PD_XFER_DATA_PATH_AM;
    side_open(&s, "tcp", "lo", 4);
    char transports[256];
    start_receiver(&s, "tcp", "lo", transports, sizeof(transports));
    pd_xfer_range_t reserved = {.offset = 0, .bytes = block_bytes};
    expect_at_child(&s, 31, &reserved, 1, 3000, true, true);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(s.peer, 31, NULL, 0, 3000, &send), PD_OK);
    pd_xfer_seg_t segs[2] = {
        {.local_offset = 0, .remote_offset = 0, .bytes = block_bytes},
        {.local_offset = block_bytes, .remote_offset = POOL_BYTES / 2, .bytes = block_bytes},
    };
    cr_assert_eq(pd_xfer_send_post(send, segs, 2), PD_OK); /* our side allows it */
    pd_status_t st = pd_xfer_send_finish(send, NULL, 0);
    /* The child reports (with a 1 MiB dump of its pool) as soon as its expectation failed;
     * read that while progressing, or the child blocks on the pipe and stops progressing
     * its engine, and the notification waits for the sender's timeout. */
    uint8_t *remote = malloc(POOL_BYTES);
    bool have_result = false;
    uint64_t t0 = pd_time_now_ns(), deadline = t0 + 6000000000ull;
    while ((pd_xfer_send_status(send) == PD_INPROGRESS && st == PD_OK) || !have_result) {
        cr_assert(pd_time_now_ns() < deadline, "the sender hung");
        pd_xfer_engine_progress(s.engine);
        void *buf = NULL;
        size_t len = 0;
        if (!have_result && xt_frame_recv(s.child.from_fd, &buf, &len, 2)) {
            pd_mp_doc_t doc;
            cr_assert_eq(pd_mp_doc_parse(&doc, buf, len, xt_limits()), PD_OK);
            int64_t rst = -1;
            const void *pool = NULL;
            size_t pool_bytes = 0;
            cr_assert_eq(pd_mp_get_i64(&doc.root, "status", &rst), PD_OK);
            cr_assert_eq(rst, PD_ERR_OUT_OF_RANGE, "receiver status %s",
                         pd_status_name((pd_status_t)rst));
            cr_assert_eq(pd_mp_get_bin(&doc.root, "pool", &pool, &pool_bytes), PD_OK);
            cr_assert_eq(pool_bytes, POOL_BYTES);
            memcpy(remote, pool, POOL_BYTES);
            pd_mp_doc_cleanup(&doc);
            free(buf);
            have_result = true;
        }
    }
    if (st == PD_OK)
        st = pd_xfer_send_status(send);
    double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
    cr_log_info("%zu-byte blocks: the sender saw %s after %.0f ms", block_bytes, pd_status_name(st),
                ms);
    /* A refused rendezvous message fails the send itself (out of range); an eager one is
     * dropped, and the notification is answered with the expectation's failure, or not
     * found once the receiver has let the failed expectation go. Either way well before
     * the 3 s deadline. */
    cr_assert(st == PD_ERR_OUT_OF_RANGE || (block_bytes < 8192 && st == PD_ERR_NOT_FOUND),
              "sender status %s", pd_status_name(st));
    cr_assert(ms < 2500, "the sender learnt of the refusal only after %.0f ms", ms);
    pd_xfer_send_destroy(&send);
    for (size_t i = 0; i < block_bytes; i++)
        cr_assert_eq(remote[POOL_BYTES / 2 + i], 0xEE, "byte %zu of the refused block written", i);
    free(remote);
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

Test(xfer_ucx, receiver_refuses_rendezvous_data_outside_its_reservation_tcp)
{
    run_refused_data(64 * 1024);
}

Test(xfer_ucx, receiver_refuses_eager_data_outside_its_reservation_tcp)
{
    run_refused_data(2048);
}

Test(xfer_ucx, default_transports_choose_shared_memory_on_one_host)
{
    side_t s;
    side_open(&s, NULL, NULL, 1);
    char transports[256];
    start_receiver(&s, NULL, NULL, transports, sizeof(transports));
    cr_log_info("UCX default transports to a local peer: %s", transports);
    bool shm =
        strstr(transports, "posix") || strstr(transports, "sysv") || strstr(transports, "cma");
    cr_assert(shm, "UCX chose '%s' for a peer on this host", transports);
    xt_child_reap(&s.child, 5000);
    side_close(&s);
}

static void run_killed_receiver(const char *tls, const char *net_devices)
{
    side_t s;
    side_open(&s, tls, net_devices, 1);
    char transports[256];
    start_receiver(&s, tls, net_devices, transports, sizeof(transports));
    pd_xfer_seg_t segs[128];
    pd_xfer_range_t ranges[128];
    size_t n = make_segs(segs, ranges, 128, 3);
    expect_at_child(&s, 7, ranges, n, 5000, true, false);
    pd_xfer_send_t *send = NULL;
    const uint32_t timeout_ms = 1000;
    cr_assert_eq(pd_xfer_send_begin(s.peer, 7, ranges, n, timeout_ms, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, 32), PD_OK);
    uint64_t t0 = pd_time_now_ns();
    kill(s.child.pid, SIGKILL);
    int status = xt_child_reap(&s.child, 5000);
    cr_assert(WIFSIGNALED(status));
    pd_status_t st = pd_xfer_send_post(send, segs + 32, 96);
    if (st == PD_OK)
        st = pd_xfer_send_finish(send, NULL, 0);
    if (st == PD_OK) {
        cr_assert(xt_wait(s.engine, NULL, send_final, send, timeout_ms + 3000), "the sender hung");
        st = pd_xfer_send_status(send);
    }
    double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
    cr_assert(st < 0, "status %s", pd_status_name(st));
    cr_assert(ms < timeout_ms + 1000, "took %.0f ms", ms);
    cr_log_info("dead receiver: %s after %.0f ms", pd_status_name(st), ms);
    pd_xfer_send_destroy(&send);
    side_close(&s);
}

Test(xfer_ucx, killed_receiver_fails_the_sender_within_the_timeout_shm)
{
    run_killed_receiver(shm_tls, NULL);
}

Test(xfer_ucx, killed_receiver_fails_the_sender_within_the_timeout_tcp)
{
    run_killed_receiver("tcp", "lo");
}

static bool recv_final(void *arg)
{
    return pd_xfer_recv_status(arg) != PD_INPROGRESS;
}

/* pd-xfer-peer sends 128 scattered blocks in 4 layers into this process. With die, it
 * exits after the first layer and the expectation must time out; otherwise the bytes
 * must land exactly, and the wait sleeps on the engine's fd with a long poll timeout, so
 * finishing quickly shows that the fd woke us. */
static void run_remote_sender(const char *tls, const char *net_devices, bool die)
{
    side_t s;
    side_open(&s, tls, net_devices, 1);
    memset(s.pool, 0xEE, POOL_BYTES);
    char *argv[] = {(char *)xt_peer_path(),
                    "send",
                    "--tls",
                    (char *)tls,
                    "--net-devices",
                    (char *)(net_devices ? net_devices : ""),
                    "--pool",
                    "1048576",
                    "--seed",
                    "9",
                    die ? "--die-after-layers" : NULL,
                    "1",
                    NULL};
    cr_assert(xt_child_start(argv, &s.child));
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_xfer_desc_export(s.engine, &w), PD_OK);
    cr_assert(xt_frame_send(s.child.to_fd, &w));
    void *buf = NULL;
    size_t len = 0;
    /* Keep progressing while the child connects (wireup may need us). */
    uint64_t deadline = pd_time_now_ns() + 10000000000ull;
    while (!xt_frame_recv(s.child.from_fd, &buf, &len, 10)) {
        pd_xfer_engine_progress(s.engine);
        cr_assert(pd_time_now_ns() < deadline, "the sender never connected");
    }
    pd_mp_doc_t cdoc;
    cr_assert_eq(pd_mp_doc_parse(&cdoc, buf, len, xt_limits()), PD_OK);
    char path[8] = "";
    cr_assert_eq(pd_mp_get_strcpy(&cdoc.root, "data_path", path, sizeof(path)), PD_OK);
    /* TCP has no native puts, and this side's pool is caller-registered memory that a
     * shared-memory sender cannot map: active messages either way. */
    cr_assert_str_eq(path, "am", "over %s", tls);
    pd_mp_doc_cleanup(&cdoc);
    free(buf);
    pd_xfer_seg_t segs[128];
    pd_xfer_range_t ranges[128];
    size_t n = make_segs(segs, ranges, 128, 5);
    const uint32_t timeout_ms = die ? 800 : 5000;
    pd_xfer_recv_t *recv = NULL;
    cr_assert_eq(pd_xfer_recv_expect(s.engine, 11, ranges, n, timeout_ms, &recv), PD_OK);
    pd_mp_writer_reset(&w);
    pd_mp_put_map(&w, 5);
    pd_mp_put_str(&w, "op");
    pd_mp_put_str(&w, "send");
    pd_mp_put_str(&w, "xfer");
    pd_mp_put_u64(&w, 11);
    pd_mp_put_str(&w, "segs");
    pd_mp_put_bin(&w, segs, n * sizeof(*segs));
    pd_mp_put_str(&w, "layers");
    pd_mp_put_u64(&w, 4);
    pd_mp_put_str(&w, "timeout_ms");
    pd_mp_put_u64(&w, 5000);
    cr_assert(xt_frame_send(s.child.to_fd, &w));
    pd_mp_writer_cleanup(&w);
    uint64_t t0 = pd_time_now_ns();
    if (die) {
        cr_assert(xt_wait(s.engine, NULL, recv_final, recv, timeout_ms + 3000), "receiver hung");
        double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
        cr_assert_eq(pd_xfer_recv_status(recv), PD_ERR_TIMEOUT);
        cr_assert(ms < timeout_ms + 1000, "took %.0f ms", ms);
        const pd_xfer_seg_t *v;
        size_t nv;
        cr_assert_eq(pd_xfer_recv_segments(recv, &v, &nv), PD_ERR_TIMEOUT); /* none valid */
        int status = xt_child_reap(&s.child, 5000);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 9, "sender did not die");
    } else {
        int fd = -1, sleeps = 0;
        cr_assert_eq(pd_xfer_engine_fd(s.engine, &fd), PD_OK);
        while (pd_xfer_recv_status(recv) == PD_INPROGRESS) {
            pd_xfer_engine_progress(s.engine);
            if (pd_xfer_recv_status(recv) != PD_INPROGRESS)
                break;
            cr_assert(pd_time_now_ns() - t0 < 4000000000ull, "no wakeup");
            if (pd_xfer_engine_arm(s.engine) == PD_OK) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                poll(&pfd, 1, 3000);
                sleeps++;
            }
        }
        double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
        cr_log_info("%s: received after %.1f ms, %d sleeps on the fd", tls, ms, sleeps);
        cr_assert_eq(pd_xfer_recv_status(recv), PD_OK);
        cr_assert(ms < 2500, "took %.0f ms: the fd did not wake the receiver", ms);
        uint8_t *expect = malloc(POOL_BYTES);
        memset(expect, 0xEE, POOL_BYTES);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < segs[i].bytes; k++)
                expect[segs[i].remote_offset + k] = xt_pattern(segs[i].local_offset + k, 9);
        cr_assert_eq(memcmp(expect, s.pool, POOL_BYTES), 0, "bytes differ");
        free(expect);
        /* Drive the ack to the sender while waiting for its result. */
        deadline = pd_time_now_ns() + 10000000000ull;
        while (!xt_frame_recv(s.child.from_fd, &buf, &len, 5)) {
            pd_xfer_engine_progress(s.engine);
            cr_assert(pd_time_now_ns() < deadline, "no result from the sender");
        }
        pd_mp_doc_t doc;
        cr_assert_eq(pd_mp_doc_parse(&doc, buf, len, xt_limits()), PD_OK);
        int64_t st = -1;
        cr_assert_eq(pd_mp_get_i64(&doc.root, "status", &st), PD_OK);
        cr_assert_eq(st, PD_OK, "sender saw %s", pd_status_name((pd_status_t)st));
        pd_mp_doc_cleanup(&doc);
        free(buf);
        int status = xt_child_reap(&s.child, 5000);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    pd_xfer_recv_destroy(&recv);
    side_close(&s);
}

Test(xfer_ucx, remote_sender_wakes_the_receiver_through_its_fd_shm)
{
    run_remote_sender(shm_tls, NULL, false);
}

Test(xfer_ucx, remote_sender_wakes_the_receiver_through_its_fd_tcp)
{
    run_remote_sender("tcp", "lo", false);
}

Test(xfer_ucx, killed_sender_fails_the_receiver_within_the_timeout_shm)
{
    run_remote_sender(shm_tls, NULL, true);
}

Test(xfer_ucx, killed_sender_fails_the_receiver_within_the_timeout_tcp)
{
    run_remote_sender("tcp", "lo", true);
}

/* One-sided reads (pd_xfer_get, how a prefill worker fetches a cached prefix from the
 * decode worker that holds it): after a transfer into the peer, reading the same remote
 * segments into other local offsets returns exactly the bytes sent; an untouched remote
 * region reads as the peer's fill; out-of-range segments on either side are refused. */
static void run_get(const char *tls, const char *net_devices)
{
    side_t s;
    side_open(&s, tls, net_devices, 3);
    char transports[256];
    start_receiver(&s, tls, net_devices, transports, sizeof(transports));
    cr_log_info("UCX transports to the peer: %s", transports);
    pd_xfer_seg_t segs[32];
    pd_xfer_range_t ranges[32];
    size_t n = make_segs(segs, ranges, 32, 5);
    expect_at_child(&s, 77, ranges, n, 5000, true, false);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(s.peer, 77, ranges, n, 5000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    int32_t token = 9;
    cr_assert_eq(pd_xfer_send_finish(send, &token, sizeof(token)), PD_OK);
    cr_assert(xt_wait(s.engine, NULL, send_final, send, 8000), "the transfer hung");
    cr_assert_eq(pd_xfer_send_status(send), PD_OK);
    pd_xfer_send_destroy(&send);
    int32_t got_token = -1;
    cr_assert_eq(result_from_child(&s, NULL, &got_token), PD_OK);

    /* Read every segment back into the upper half of the local pool (the sources are
     * spread over the whole pool, so keep a copy of what was sent first). */
    uint8_t *sent = malloc(POOL_BYTES);
    memcpy(sent, s.pool, POOL_BYTES);
    pd_xfer_seg_t back[33];
    const uint64_t half = POOL_BYTES / 2;
    for (size_t i = 0; i < n; i++) {
        back[i].local_offset = half + i * BLOCK_BYTES;
        back[i].remote_offset = segs[i].remote_offset;
        back[i].bytes = BLOCK_BYTES;
    }
    /* And one remote block nothing was sent to (make_segs fills every other pair). */
    back[n].local_offset = half + n * BLOCK_BYTES;
    back[n].remote_offset = 2 * BLOCK_BYTES;
    back[n].bytes = BLOCK_BYTES;
    memset(s.pool + half, 0, POOL_BYTES / 2);
    cr_assert_eq(pd_xfer_get(s.peer, back, n + 1, 5000), PD_OK);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(
            memcmp(s.pool + back[i].local_offset, sent + segs[i].local_offset, BLOCK_BYTES), 0,
            "segment %zu read back differs", i);
    for (size_t b = 0; b < BLOCK_BYTES; b++)
        cr_assert_eq(s.pool[back[n].local_offset + b], 0xEE);

    pd_xfer_seg_t bad = {0, POOL_BYTES - 8, 16};
    cr_assert_eq(pd_xfer_get(s.peer, &bad, 1, 1000), PD_ERR_OUT_OF_RANGE);
    bad = (pd_xfer_seg_t){POOL_BYTES - 8, 0, 16};
    cr_assert_eq(pd_xfer_get(s.peer, &bad, 1, 1000), PD_ERR_OUT_OF_RANGE);
    bad = (pd_xfer_seg_t){0, UINT64_MAX - 4, 16};
    cr_assert_eq(pd_xfer_get(s.peer, &bad, 1, 1000), PD_ERR_OUT_OF_RANGE);
    free(sent);

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

Test(xfer_ucx, get_reads_back_what_was_sent_over_shm)
{
    run_get(shm_tls, NULL);
}

Test(xfer_ucx, get_reads_back_what_was_sent_over_tcp)
{
    run_get("tcp", "lo");
}

/* Compression on the wire over TCP: the receiver holds exactly what packing and restoring
 * each block-layer slice gives, checksums of the restored bytes verify, and fewer bytes
 * cross the wire. Blocks of 128 KiB go by rendezvous (restored in place at the tail of
 * their range), of 4 KiB eagerly. */
static void run_packed(pd_xfer_codec_t codec, const pd_kv_layout_t *l, const char *layout_arg)
{
    side_t s;
    xt_want_path = PD_XFER_DATA_PATH_AM;
    xt_layout = l;
    xt_layout_arg = layout_arg;
    xt_codec = codec;
    side_open(&s, "tcp", "lo", 6);
    /* KV-like values, so that scales matter: the pattern as small signed floats. */
    float *f = (float *)(void *)s.pool;
    for (size_t i = 0; i < POOL_BYTES / sizeof(float); i++)
        f[i] = ((float)xt_pattern(i, 6) - 128.0f) / 37.0f;
    char transports[256];
    start_receiver(&s, "tcp", "lo", transports, sizeof(transports));
    const size_t raw = pd_kv_block_layer_bytes(l);
    const size_t n_slices = POOL_BYTES / raw;
    /* Every other slice, from the first half of the pool to the second, in runs of two
     * when slices are small. */
    pd_xfer_seg_t segs[128];
    pd_xfer_range_t ranges[128];
    size_t n = 0;
    for (size_t i = 0; i < n_slices / 2 && n < 128; i++) {
        if (n_slices > 8 && i % 4 >= 2)
            continue;
        segs[n] = (pd_xfer_seg_t){i * raw, (n_slices / 2 + i) * raw, raw};
        ranges[n] = (pd_xfer_range_t){segs[n].remote_offset, raw};
        n++;
    }
    expect_at_child(&s, 41, ranges, n, 5000, true, true);
    pd_xfer_send_t *send = NULL;
    cr_assert_eq(pd_xfer_send_begin(s.peer, 41, ranges, n, 5000, &send), PD_OK);
    cr_assert_eq(pd_xfer_send_post(send, segs, n), PD_OK);
    cr_assert_eq(pd_xfer_send_finish(send, NULL, 0), PD_OK);
    cr_assert(xt_wait(s.engine, NULL, send_final, send, 8000), "the transfer hung");
    cr_assert_eq(pd_xfer_send_status(send), PD_OK, "%s", pd_status_name(pd_xfer_send_status(send)));
    pd_xfer_send_destroy(&send);
    uint8_t *remote = malloc(POOL_BYTES);
    cr_assert_eq(result_from_child(&s, remote, NULL), PD_OK);
    float *want = malloc(raw);
    uint8_t *packed = malloc(pd_xfer_codec_block_bytes(codec, l));
    for (size_t i = 0; i < n; i++) {
        pd_xfer_codec_pack(codec, l, (const float *)(void *)(s.pool + segs[i].local_offset),
                           packed);
        pd_xfer_codec_unpack(codec, l, packed, want);
        cr_assert_eq(memcmp(remote + segs[i].remote_offset, want, raw), 0,
                     "slice %zu is not the restored one", i);
        cr_assert_neq(memcmp(remote + segs[i].remote_offset, s.pool + segs[i].local_offset, raw), 0,
                      "slice %zu arrived unchanged: nothing was packed", i);
    }
    pd_xfer_stats_t st;
    pd_xfer_engine_stats(s.engine, &st);
    cr_log_info("%s, %zu-byte slices: %llu bytes posted, %llu on the wire",
                pd_xfer_codec_name(codec), raw, (unsigned long long)st.bytes_posted,
                (unsigned long long)st.bytes_wire);
    cr_assert(st.bytes_wire * 3 < st.bytes_posted, "packing saved too little");
    free(want);
    free(packed);
    free(remote);
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

/* 1 layer of 8 slices of (2, 16, 8, 128) f32 = 128 KiB; 1 layer of 256 slices of 4 KiB. */
static const pd_kv_layout_t big_slices = {1, 8, 128, 16, 8};
static const pd_kv_layout_t small_slices = {1, 2, 64, 4, 256};

Test(xfer_ucx, int8_packed_rendezvous_over_tcp)
{
    run_packed(PD_XFER_CODEC_INT8, &big_slices, "1,8,128,16,8");
}

Test(xfer_ucx, fp8_packed_eager_over_tcp)
{
    run_packed(PD_XFER_CODEC_FP8, &small_slices, "1,2,64,4,256");
}
