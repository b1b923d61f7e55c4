/* The router's queue with the whole cluster as a user runs it (`pdctl up -d`, real
 * pd-router, pd-prefill and pd-decode on loopback ports chosen at run time): a request
 * whose TTFT objective cannot be met is refused before anything is computed for it; a
 * request a busy worker turns away goes back to the queue and still ends exactly once,
 * with the reference's tokens; a request cancelled while it waits in the router's queue
 * leaves nothing behind. */
#include "cluster_cl.h"

TestSuite(sched, .timeout = 240, .fini = cl_down);

static const char *const roles_1p1d = "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                      "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                      "  max_batch: 32\n";

/* The router's figures once two replies a heartbeat apart agree on the workers' counters
 * (they come with heartbeats). */
static pd_proto_stats_reply_t stats_settled(void)
{
    pd_proto_stats_reply_t last;
    memset(&last, 0, sizeof(last));
    for (int i = 0; i < 20; i++) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATS;
        cl_send(&m);
        pd_proto_msg_t r;
        cr_assert_eq(cl_recv(5000, &r), 0, "no stats reply");
        cr_assert_eq(r.type, PD_PROTO_TYPE_STATS_REPLY);
        pd_proto_stats_reply_t s = r.u.stats_reply;
        s.workers = NULL;
        s.n_workers = 0;
        pd_proto_msg_cleanup(&r);
        if (i > 0 && s.hit_blocks == last.hit_blocks && s.miss_blocks == last.miss_blocks &&
            s.xfer_count == last.xfer_count && s.xfer_bytes == last.xfer_bytes)
            return s;
        last = s;
        usleep(1200 * 1000); /* past a heartbeat (1 s) */
    }
    cr_assert_fail("the workers' counters never settled");
    return last;
}

/* A generate with a TTFT objective; returns the terminal message's type and fills err. */
static int generate_with_slo(const cl_req_t *q, uint32_t slo_ttft_ms, pd_status_t *code_p,
                             char *message, size_t message_bytes, bool *accepted_p)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_GENERATE;
    pd_proto_generate_t *x = &m.u.generate;
    snprintf(x->id, sizeof(x->id), "%s", q->id);
    x->tokens = q->prompt;
    x->n_tokens = q->n_prompt;
    x->max_tokens = q->max_tokens;
    x->sampling = q->sampling;
    x->stream = true;
    x->slo_ttft_ms = slo_ttft_ms;
    cl_send(&m);
    *accepted_p = false;
    uint64_t end = pd_time_now_ms() + 60000;
    while (pd_time_now_ms() < end) {
        pd_proto_msg_t r;
        if (cl_recv(100, &r) < 0)
            continue;
        int type = r.type;
        if (type == PD_PROTO_TYPE_ACCEPTED)
            *accepted_p = true;
        if (type == PD_PROTO_TYPE_ERROR) {
            *code_p = r.u.error.code;
            snprintf(message, message_bytes, "%s", r.u.error.message);
        }
        pd_proto_msg_cleanup(&r);
        if (type == PD_PROTO_TYPE_ERROR || type == PD_PROTO_TYPE_DONE)
            return type;
    }
    cr_assert_fail("%s: no terminal message", q->id);
    return -1;
}

Test(sched, refuses_an_impossible_ttft_before_any_compute)
{
    /* The small preset: a 320-token prompt takes well over a millisecond to compute. */
    cl_preset[0] = "small";
    cl_up("slo", roles_1p1d, false);
    cl_preset[0] = NULL;

    /* One request measures the prefill rate; an objective it can meet is met. */
    cl_req_t warm;
    cl_req_init(&warm, "warm", 320, 1, 4, 0.0, 0);
    cl_generate(&warm, 1, 60000);
    cr_assert(warm.done, "the warm-up request failed: %s", pd_status_name(warm.err));
    pd_proto_stats_reply_t before = stats_settled();

    cl_req_t q;
    cl_req_init(&q, "impossible", 320, 2, 4, 0.0, 0);
    pd_status_t code = PD_OK;
    char message[PD_PROTO_MAX_MESSAGE_BYTES + 1] = "";
    bool accepted = false;
    int type = generate_with_slo(&q, 1, &code, message, sizeof(message), &accepted);
    cr_assert_eq(type, PD_PROTO_TYPE_ERROR);
    cr_assert_eq(code, PD_ERR_OVERLOADED, "%s", pd_status_name(code));
    cr_assert(!accepted, "refused after it was accepted");
    cr_assert(strstr(message, "predicted TTFT") != NULL && strstr(message, "1 ms") != NULL,
              "the reason: '%s'", message);

    /* Nothing was admitted, looked up, computed or pushed for it. */
    pd_proto_stats_reply_t after = stats_settled();
    cr_assert_eq(after.requests_total, before.requests_total);
    cr_assert_eq(after.hit_blocks + after.miss_blocks, before.hit_blocks + before.miss_blocks);
    cr_assert_eq(after.xfer_count, before.xfer_count);
    cr_assert_eq(after.xfer_bytes, before.xfer_bytes);

    /* The same prompt with an objective it can meet is served. */
    cl_req_init(&q, "possible", 320, 2, 4, 0.0, 0);
    type = generate_with_slo(&q, 60000, &code, message, sizeof(message), &accepted);
    cr_assert_eq(type, PD_PROTO_TYPE_DONE, "%s", message);
    cl_expect_all_free(2);
    cl_down();
}

/* The decode worker's pool, in blocks, from the router's status. */
static uint32_t decode_blocks(void)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_STATUS;
    cl_send(&m);
    pd_proto_msg_t r;
    cr_assert_eq(cl_recv(5000, &r), 0, "no status reply");
    cr_assert_eq(r.type, PD_PROTO_TYPE_STATUS_REPLY);
    uint32_t n = 0;
    for (uint32_t i = 0; i < r.u.status_reply.n_workers; i++)
        if (r.u.status_reply.workers[i].role == PD_PROTO_ROLE_DECODE)
            n = r.u.status_reply.workers[i].n_blocks;
    pd_proto_msg_cleanup(&r);
    return n;
}

Test(sched, a_request_a_busy_decode_worker_turns_away_ends_once)
{
    /* A 1 MiB decode pool; each request reserves 16 blocks (16 prompt tokens and 240 to
     * generate), and three more than fit are sent at once (and committed at once: a
     * prefill depth of 32): decode refuses a reservation,
     * the router puts the request back in its queue and sends it again when decode has
     * room. */
    cl_up("reroute",
          "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
          "decode:\n  count: 1\n  threads: 1\n  pool_mb: 1\n  max_batch: 32\n"
          "router:\n  prefill_depth: 32\n",
          false);
    uint32_t pool = decode_blocks();
    int n = (int)(pool / 16) + 3;
    cr_assert(pool >= 16 && n <= 32, "decode pool of %u blocks", pool);
    static cl_req_t reqs[32];
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "r%d", i);
        cl_req_init(&reqs[i], id, 16, 40 + (uint32_t)i, 240, i % 2 ? 0.8 : 0.0, (uint64_t)i);
    }
    cl_generate(reqs, n, 120000);
    for (int i = 0; i < n; i++) {
        cr_assert(reqs[i].done, "%s: %s", reqs[i].id, pd_status_name(reqs[i].err));
        cr_assert(reqs[i].order_ok, "%s: tokens out of order", reqs[i].id);
        cl_expect_reference(&reqs[i]);
    }
    /* The router says so in its log. */
    cr_assert_eq(cl_run("grep -q 'back in the queue' %s/*router*.log", g.run_dir), 0,
                 "no request was turned away: the test did not test re-routing");
    cl_expect_all_free(2);
    cl_down();
}

Test(sched, cancel_while_queued_in_the_router_frees_everything)
{
    cl_up("cancelq", roles_1p1d, false);
    /* One prompt at a time goes to the prefill worker (router.prefill_depth 1); the rest
     * wait in the router, shortest first: the longest, sent last, waits behind six. */
    static cl_req_t reqs[7];
    for (int i = 0; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof(id), "l%d", i);
        cl_req_init(&reqs[i], id, 200, 60 + (uint32_t)i, 8, 0.0, 0);
    }
    cl_req_init(&reqs[6], "queued", 240, 70, 8, 0.0, 0);
    pd_proto_stats_reply_t before = stats_settled();
    for (int i = 0; i < 7; i++) {
        reqs[i].order_ok = true;
        cl_send_generate(&reqs[i]);
    }
    pd_proto_msg_t c;
    memset(&c, 0, sizeof(c));
    c.type = PD_PROTO_TYPE_CANCEL;
    snprintf(c.u.cancel.id, sizeof(c.u.cancel.id), "queued");
    cl_send(&c);
    /* Collect every terminal message (cl_generate would send them again). */
    int n_open = 7;
    uint64_t end = pd_time_now_ms() + 60000;
    while (n_open > 0 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (cl_recv(100, &m) < 0)
            continue;
        cl_req_t *q = NULL;
        if (m.type == PD_PROTO_TYPE_DONE)
            q = cl_find(reqs, 7, m.u.done.id);
        else if (m.type == PD_PROTO_TYPE_ERROR)
            q = cl_find(reqs, 7, m.u.error.id);
        if (q != NULL) {
            if (q->n_terminal++ == 0)
                n_open--;
            q->done = m.type == PD_PROTO_TYPE_DONE;
            if (m.type == PD_PROTO_TYPE_ERROR)
                q->err = m.u.error.code;
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_open, 0, "%d requests got no terminal message", n_open);
    usleep(300 * 1000);
    pd_proto_msg_t m;
    cr_assert_lt(cl_recv(200, &m), 0, "a message after every request ended");
    for (int i = 0; i < 6; i++)
        cr_assert(reqs[i].done && reqs[i].n_terminal == 1, "%s", reqs[i].id);
    cr_assert_eq(reqs[6].n_terminal, 1);
    cr_assert_eq(reqs[6].err, PD_ERR_CANCELED, "%s", pd_status_name(reqs[6].err));

    /* Six prefills ran and were pushed; the cancelled one never reached a worker. */
    pd_proto_stats_reply_t after = stats_settled();
    cr_assert_eq(after.requests_total, before.requests_total + 7);
    cr_assert_eq(after.xfer_count, before.xfer_count + 6);
    cl_expect_all_free(2);
    cl_down();
}
