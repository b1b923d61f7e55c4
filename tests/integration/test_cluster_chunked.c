/* Chunked prefill in a real pd-prefill, driven by the test playing the router (cluster_fr.h):
 * a long prompt computes in chunks while shorter ones that arrive with it pass between
 * them and finish first; every prompt's tokens equal the single-process reference (the
 * loop of `pdctl generate`); the worker's report of where the time went adds up; a prompt
 * canceled while queued or mid-way releases everything. */
#include "cluster_fr.h"

TestSuite(cluster_chunked, .timeout = 120, .fini = fr_stop);

/* Reserve every request, and once all are reserved send their prefills in array order,
 * in one burst, so that they reach the prefill worker together. cancel_id (0: none) is
 * canceled at both workers right after the burst; nothing more may come for it. */
static void run_burst(fr_req_t *reqs, int n, uint64_t cancel_id)
{
    for (int i = 0; i < n; i++) {
        reqs[i].order_ok = true;
        fr_send_reserve(&reqs[i]);
    }
    int n_reserved = 0;
    uint64_t end = pd_time_now_ms() + 30000;
    while (fr_count_open(reqs, n) > (cancel_id != 0 ? 1 : 0) && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        int wi = fr_recv(100, &m);
        if (wi < 0)
            continue;
        fr_req_t *q = NULL;
        switch (m.type) {
        case PD_PROTO_TYPE_RESERVED:
            q = fr_req_by_id(reqs, n, m.u.reserved.req_id);
            cr_assert_eq(m.u.reserved.status, PD_OK);
            q->reserved = true;
            q->n_cached_blocks = m.u.reserved.n_cached_blocks;
            memcpy(q->block_table, m.u.reserved.block_table,
                   m.u.reserved.n_block_table * sizeof(uint32_t));
            q->n_block_table = m.u.reserved.n_block_table;
            if (++n_reserved == n) {
                for (int i = 0; i < n; i++)
                    fr_send_prefill(&reqs[i]);
                for (int k = 0; cancel_id != 0 && k < 2; k++) {
                    pd_proto_msg_t c;
                    memset(&c, 0, sizeof(c));
                    c.type = PD_PROTO_TYPE_WORKER_CANCEL;
                    c.u.worker_cancel.req_id = cancel_id;
                    fr_send(k == 0 ? reqs[0].pre : reqs[0].dec, &c);
                }
            }
            break;
        case PD_PROTO_TYPE_PREFILLED:
            q = fr_req_by_id(reqs, n, m.u.prefilled.req_id);
            q->prefilled_seen = true;
            q->prefilled = m.u.prefilled;
            q->prefilled.recomputed_blocks = NULL; /* freed with the message */
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
        if (q != NULL && q->req_id == cancel_id && m.type != PD_PROTO_TYPE_RESERVED)
            cr_assert_fail("%s about request %llu after its cancel", pd_proto_type_name(m.type),
                           (unsigned long long)cancel_id);
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(fr_count_open(reqs, n), cancel_id != 0 ? 1 : 0, "requests did not end in time");
}

/* The worker's own account of a request: its parts cover its time in the worker. */
static void expect_breakdown(const fr_req_t *q)
{
    const pd_proto_prefilled_t *r = &q->prefilled;
    cr_expect_gt(r->compute_ms, 0.0, "req %llu", (unsigned long long)q->req_id);
    cr_expect_geq(r->queue_ms, 0.0);
    cr_expect_geq(r->transfer_ms, 0.0);
    /* prefill_ms spans its first pass to its first token: its own passes are inside. */
    cr_expect_geq(r->prefill_ms + 1e-6, r->compute_ms, "req %llu: prefill %.3f < compute %.3f",
                  (unsigned long long)q->req_id, r->prefill_ms, r->compute_ms);
    cr_expect_eq(r->n_computed_tokens + r->n_cached_tokens, q->n_prompt);
}

Test(cluster_chunked, short_prompts_pass_between_a_long_ones_chunks_with_exact_tokens)
{
    fr_prefill_extra = "--chunk-tokens 16";
    fr_start(1, 1, false, 8, NULL);
    /* A long prompt (15 chunks), then a short one (2 chunks) and a medium one (4). */
    fr_req_t q[3];
    fr_req_init(&q[0], 1, 240, 1, 8, 0.0, 1);
    fr_req_init(&q[1], 2, 20, 2, 8, 0.8, 5);
    fr_req_init(&q[2], 3, 50, 3, 8, 0.0, 2);
    run_burst(q, 3, 0);
    for (int i = 0; i < 3; i++) {
        fr_expect_reference(&q[i]);
        cr_assert(q[i].prefilled_seen);
        expect_breakdown(&q[i]);
    }
    cr_expect_eq(q[0].prefilled.n_chunks, 15);
    cr_expect_eq(q[1].prefilled.n_chunks, 2);
    cr_expect_eq(q[2].prefilled.n_chunks, 4);
    cr_expect_eq(q[0].prefilled.n_computed_tokens, 240);
    /* Fewest tokens left first: the short and the medium prompt had their first token
     * before the long one although it was sent first. They reached the worker together,
     * so their times from arrival to first token (queue_ms + prefill_ms) give the order;
     * `prefilled` itself is sent when decode acknowledges the push, in any order. */
    double to_first[3];
    for (int i = 0; i < 3; i++)
        to_first[i] = q[i].prefilled.queue_ms + q[i].prefilled.prefill_ms;
    cr_expect_lt(to_first[1], to_first[2], "short %.2f ms, medium %.2f ms", to_first[1],
                 to_first[2]);
    cr_expect_lt(to_first[2], to_first[0], "medium %.2f ms, long %.2f ms", to_first[2],
                 to_first[0]);

    /* Again, with the long prompt now in the prefill worker's cache: it computes only its
     * last block, in one chunk, and the new short one still equals the reference. */
    fr_req_init(&q[0], 4, 240, 1, 8, 0.0, 1);
    fr_req_init(&q[1], 5, 33, 6, 8, 0.0, 3);
    run_burst(q, 2, 0);
    for (int i = 0; i < 2; i++) {
        fr_expect_reference(&q[i]);
        expect_breakdown(&q[i]);
    }
    cr_expect_eq(q[0].prefilled.n_chunks, 1);
    cr_expect_eq(q[0].prefilled.n_computed_tokens, 16);
    cr_expect_eq(q[0].prefilled.n_cached_tokens, 224);
    fr_expect_all_free();
    fr_stop();
    fr_prefill_extra = NULL;
}

Test(cluster_chunked, a_prompt_canceled_queued_or_mid_way_releases_everything)
{
    fr_prefill_extra = "--chunk-tokens 16";
    fr_start(1, 1, false, 8, NULL);
    /* Two long prompts: the second is canceled right after the burst, while it waits
     * behind the first or after some of its chunks; the first still finishes exactly. */
    fr_req_t q[2];
    fr_req_init(&q[0], 1, 200, 7, 8, 0.0, 1);
    fr_req_init(&q[1], 2, 240, 8, 8, 0.0, 1);
    q[0].cache_off = q[1].cache_off = true;
    run_burst(q, 2, 2);
    fr_expect_reference(&q[0]);
    cr_expect_eq(q[1].n_terminal, 0);
    cr_expect(!q[1].prefilled_seen);
    /* The prefill worker released its blocks at once; the decode worker keeps those it
     * reserved for a push out of use until the push's deadline (5 s here) has passed. */
    const int pre = q[0].pre, dec = q[0].dec;
    /* Counted only from heartbeats sent after this point: an older one may predate the
     * canceled prompt's reservation. */
    const uint64_t hb_pre = g.w[pre].n_heartbeats, hb_dec = g.w[dec].n_heartbeats;
    uint64_t end = pd_time_now_ms() + 8000;
    while ((g.w[pre].free_blocks != g.w[pre].n_blocks ||
            g.w[dec].free_blocks != g.w[dec].n_blocks || g.w[pre].n_heartbeats <= hb_pre ||
            g.w[dec].n_heartbeats <= hb_dec) &&
           pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (fr_recv(50, &m) >= 0) {
            cr_expect_fail("unexpected %s", pd_proto_type_name(m.type));
            pd_proto_msg_cleanup(&m);
        }
        if (g.w[pre].free_blocks != g.w[pre].n_blocks)
            cr_assert_lt(pd_time_now_ms() + 5000, end, "the prefill worker kept blocks");
    }
    fr_expect_all_free();
    /* The worker goes on serving. */
    fr_req_init(&q[0], 3, 100, 9, 8, 0.0, 1);
    fr_run(&q[0], 1, 20000);
    fr_expect_reference(&q[0]);
    cr_expect_eq(q[0].prefilled.n_chunks, 7);
    fr_expect_all_free();
    fr_stop();
    fr_prefill_extra = NULL;
}
