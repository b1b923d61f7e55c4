/* The worker runtime's pieces that need no router: command line, the held-hash record
 * behind kv_snapshot, KV event batches on the PUB, and the transfer payload. */
#include "pd/mp.h"
#include "pd/time.h"
#include "pd/proto.h"
#include "pd/worker.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static pd_status_t parse(pd_proto_role_t role, int argc, const char **argv, pd_worker_args_t *a)
{
    return pd_worker_args_parse(argc, (char **)argv, role, a);
}

Test(worker_args, launcher_flags)
{
    const char *argv[] = {"pd-decode",   "--router",    "tcp://10.0.0.2:7101",
                          "--id",        "decode-0",    "--model",
                          "/m",          "--threads",   "2",
                          "--pool-mb",   "64",          "--block-tokens",
                          "32",          "--events",    "tcp://10.0.0.11:7112",
                          "--ip",        "10.0.0.11",   "--xfer-backend",
                          "ucx",         "--checksum",  "0",
                          "--layerwise", "0",           "--xfer-timeout-ms",
                          "900",         "--max-batch", "7",
                          "--colocated", "--host-mb",   "16",
                          "--ssd-dir",   "/tmp/x",      "--ssd-mb",
                          "32"};
    pd_worker_args_t a;
    cr_assert_eq(parse(PD_PROTO_ROLE_DECODE, sizeof(argv) / sizeof(argv[0]), argv, &a), PD_OK);
    cr_expect_eq(a.role, PD_PROTO_ROLE_BOTH);
    cr_expect_str_eq(a.router, "tcp://10.0.0.2:7101");
    cr_expect_str_eq(a.id, "decode-0");
    cr_expect_eq(a.threads, 2);
    cr_expect_eq(a.pool_mb, 64);
    cr_expect_eq(a.block_tokens, 32);
    cr_expect_str_eq(a.ip, "10.0.0.11");
    cr_expect(!a.checksum);
    cr_expect(!a.layerwise);
    cr_expect_eq(a.xfer_timeout_ms, 900);
    cr_expect_eq(a.max_batch, 7);
    cr_expect_eq(a.host_mb, 16);
    cr_expect_str_eq(a.ssd_dir, "/tmp/x");
    cr_expect_eq(a.ssd_mb, 32);
}

Test(worker_args, rejects_bad_input)
{
    pd_worker_args_t a;
    const char *missing[] = {"pd-prefill", "--router", "tcp://x:1", "--id", "p"};
    cr_expect_eq(parse(PD_PROTO_ROLE_PREFILL, 5, missing, &a), PD_ERR_INVALID_PARAM);
    const char *bad_num[] = {"pd-prefill", "--router", "tcp://x:1", "--id", "p",
                             "--model",    "m",        "--threads", "-1"};
    cr_expect_eq(parse(PD_PROTO_ROLE_PREFILL, 9, bad_num, &a), PD_ERR_INVALID_PARAM);
    const char *decode_only[] = {"pd-prefill", "--router", "tcp://x:1", "--id",
                                 "p",          "--model",  "m",         "--colocated"};
    cr_expect_eq(parse(PD_PROTO_ROLE_PREFILL, 8, decode_only, &a), PD_ERR_INVALID_PARAM);
    const char *backend[] = {"pd-decode", "--router", "tcp://x:1",      "--id",          "d",
                             "--model",   "m",        "--xfer-backend", "carrier-pigeon"};
    cr_expect_eq(parse(PD_PROTO_ROLE_DECODE, 9, backend, &a), PD_ERR_INVALID_PARAM);
    const char *help[] = {"pd-decode", "--help"};
    cr_expect_eq(parse(PD_PROTO_ROLE_DECODE, 2, help, &a), PD_INPROGRESS);
}

Test(worker_payload, round_trip_and_length)
{
    pd_worker_kv_payload_t p = {0x1122334455667788ULL, 258, 4000}, q;
    uint8_t buf[PD_WORKER_KV_PAYLOAD_BYTES];
    pd_worker_kv_payload_pack(&p, buf);
    cr_expect_eq(buf[0], 0x88); /* little-endian */
    cr_assert_eq(pd_worker_kv_payload_unpack(buf, sizeof(buf), &q), PD_OK);
    cr_expect_eq(q.req_id, p.req_id);
    cr_expect_eq(q.first_token, 258);
    cr_expect_eq(q.n_computed_tokens, 4000);
    cr_expect_eq(pd_worker_kv_payload_unpack(buf, sizeof(buf) - 1, &q), PD_ERR_PROTO);
}

static pd_worker_t *make_worker(void)
{
    pd_worker_args_t a;
    const char *argv[] = {"pd-decode", "--router", "tcp://127.0.0.1:1", "--id", "w", "--model",
                          "m",         "--events", "tcp://127.0.0.1:*"};
    cr_assert_eq(parse(PD_PROTO_ROLE_DECODE, 9, argv, &a), PD_OK);
    pd_worker_reg_t reg = {16, "\x80", 1};
    pd_worker_t *w = NULL;
    cr_assert_eq(pd_worker_create(&a, &reg, &w), PD_OK);
    return w;
}

Test(worker_held, record_follows_random_events)
{
    /* Many hashes with colliding low bits, stored, moved and removed at random: the counts
     * per tier must always equal a plain array's. */
    pd_worker_t *w = make_worker();
    enum { N = 5000 };
    static int8_t ref[N]; /* tier or -1 */
    memset(ref, -1, sizeof(ref));
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int i = rand() % N;
        uint64_t h = (uint64_t)i << 40; /* only high bits differ */
        int op = rand() % 3;
        if (op == 0 || ref[i] < 0) {
            pd_proto_tier_t t = (pd_proto_tier_t)(rand() % PD_PROTO_N_TIERS);
            pd_worker_kv_event(w, PD_PROTO_EVENT_STORED, t, h);
            ref[i] = (int8_t)t;
        } else if (op == 1) {
            pd_proto_tier_t t = (pd_proto_tier_t)(rand() % PD_PROTO_N_TIERS);
            pd_worker_kv_event(w, PD_PROTO_EVENT_TIER, t, h);
            ref[i] = (int8_t)t;
        } else {
            pd_worker_kv_event(w, PD_PROTO_EVENT_REMOVED, (pd_proto_tier_t)ref[i], h);
            ref[i] = -1;
        }
        if (step % 997 == 0)
            pd_worker_events_flush(w);
        if (step % 9973 == 0 || step == 199999) {
            uint32_t want[PD_PROTO_N_TIERS] = {0};
            for (int k = 0; k < N; k++)
                if (ref[k] >= 0)
                    want[ref[k]]++;
            for (int t = 0; t < PD_PROTO_N_TIERS; t++)
                cr_assert_eq(pd_worker_held_count(w, (pd_proto_tier_t)t), want[t],
                             "step %d tier %d", step, t);
        }
    }
    pd_worker_destroy(&w);
    cr_expect_null(w);
}

/* Receive one kv_event from sub within timeout_ms into *m: true, or false if none came. */
static bool recv_event(void *sub, int timeout_ms, pd_proto_msg_t *m)
{
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    zmq_msg_t f;
    zmq_msg_init(&f);
    cr_assert_geq(zmq_msg_recv(&f, sub, 0), 0);
    memset(m, 0, sizeof(*m));
    cr_assert_eq(pd_proto_decode(m, PD_PROTO_CHAN_EVENTS, zmq_msg_data(&f), zmq_msg_size(&f), NULL),
                 PD_OK);
    zmq_msg_close(&f);
    return true;
}

Test(worker_events, batches_on_the_pub_with_consecutive_seq)
{
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof(zero));
    pd_worker_t *w = make_worker(); /* its PUB on a port the system chose */
    cr_assert_eq(zmq_connect(sub, pd_worker_events_endpoint(w)), 0);
    /* PUB/SUB drops what is published before the subscription arrives: publish a probe
     * (a hash stored) until the subscriber sees one, then its removal as a marker. Every
     * flush so far was one batch, so the marker's seq counts them all from 1. */
    const uint64_t probe = 0xfeedULL << 32;
    uint64_t n_flushes = 0, deadline = pd_time_now_ms() + 5000;
    pd_proto_msg_t m;
    bool seen = false;
    while (!seen && pd_time_now_ms() < deadline) {
        pd_worker_kv_event(w, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, probe);
        pd_worker_events_flush(w);
        n_flushes++;
        seen = recv_event(sub, 10, &m);
        if (seen)
            pd_proto_msg_cleanup(&m);
    }
    cr_assert(seen, "the subscriber never saw a probe");
    pd_worker_kv_event(w, PD_PROTO_EVENT_REMOVED, PD_PROTO_TIER_G1, probe);
    pd_worker_events_flush(w);
    n_flushes++;
    for (;;) {
        cr_assert(recv_event(sub, 2000, &m), "the marker was not published");
        cr_assert_eq(m.u.kv_event.n_events, 1);
        bool marker = m.u.kv_event.events[0].kind == PD_PROTO_EVENT_REMOVED;
        uint64_t seq = m.u.kv_event.seq;
        pd_proto_msg_cleanup(&m);
        if (marker) {
            cr_assert_eq(seq, n_flushes, "the marker is batch %llu of %llu",
                         (unsigned long long)seq, (unsigned long long)n_flushes);
            break;
        }
    }
    for (int batch = 0; batch < 3; batch++) {
        for (uint64_t h = 0; h < 5; h++)
            pd_worker_kv_event(w, PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, 100 * batch + h);
        pd_worker_kv_event(w, PD_PROTO_EVENT_TIER, PD_PROTO_TIER_G2, 100 * batch);
        pd_worker_events_flush(w);
        pd_worker_events_flush(w); /* nothing pending: no message */
    }
    for (int batch = 0; batch < 3; batch++) {
        cr_assert(recv_event(sub, 2000, &m), "batch %d not published", batch);
        cr_expect_eq(m.u.kv_event.seq, n_flushes + (uint64_t)batch + 1);
        cr_expect_eq(m.u.kv_event.epoch, pd_worker_epoch(w));
        cr_assert_eq(m.u.kv_event.n_events, 2);
        cr_expect_eq(m.u.kv_event.events[0].kind, PD_PROTO_EVENT_STORED);
        cr_expect_eq(m.u.kv_event.events[0].n_hashes, 5);
        cr_expect_eq(m.u.kv_event.events[0].hashes[4], 100 * (uint64_t)batch + 4);
        cr_expect_eq(m.u.kv_event.events[1].kind, PD_PROTO_EVENT_TIER);
        cr_expect_eq(m.u.kv_event.events[1].tier, PD_PROTO_TIER_G2);
        pd_proto_msg_cleanup(&m);
    }
    /* A deliberate wait: nothing more may arrive within 100 ms. */
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    cr_expect_eq(zmq_poll(&it, 1, 100), 0, "an empty flush published something");
    cr_expect_eq(pd_worker_held_count(w, PD_PROTO_TIER_G1), 12);
    cr_expect_eq(pd_worker_held_count(w, PD_PROTO_TIER_G2), 3);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    pd_worker_destroy(&w);
}
