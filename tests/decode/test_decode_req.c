/* pd-decode's request handlers driven directly (pd_role_dispatch, pd_role_step) over the
 * tiny model and the loopback transfer backend, with a ROUTER socket as the router:
 * reserve, cancel and the quarantine of blocks a prefill may still write, the colocated
 * prefill and the order requests join the batch in. */
#include "decode_int.h"
#include "role_test_util.h"

#include <unistd.h>

static rt_env_t env;
static pd_role_t *rt;

static void teardown(void)
{
    pd_role_destroy(&rt);
    rt_env_cleanup(&env);
}

TestSuite(decode_req, .fini = teardown);

/* A decode worker ("d0"; colocated: role both) with a pool of pool_mb and transfers that
 * time out after xfer_timeout_ms. */
static pd_decode_t *start(const char *pool_mb, const char *xfer_timeout_ms, bool colocated)
{
    rt_env_init(&env);
    const char *extra[] = {"--max-batch", "2", "--colocated"};
    rt = rt_role_create(&env, &pd_decode_role, "d0", pool_mb, xfer_timeout_ms, extra,
                        colocated ? 3 : 2);
    return rt->state;
}

static uint32_t free_blocks(void)
{
    return pd_worker_kvbm_free_blocks(rt->bm);
}

/* The prompt of the last request sent. */
static rt_prompt_t prompt;

/* Send reserve for req_id (n prompt tokens, max_tokens) and return the reserved reply's
 * status; *n_blocks_p (may be NULL) gets its block table's length. */
static pd_status_t reserve(uint64_t req_id, uint32_t n, uint32_t max_tokens, uint32_t *n_blocks_p)
{
    rt_prompt_make(&prompt, req_id, n);
    pd_proto_msg_t m;
    rt_reserve_msg(&m, req_id, &prompt, max_tokens);
    pd_role_dispatch(rt, &m);
    pd_proto_msg_t reply;
    rt_expect(&env, PD_PROTO_TYPE_RESERVED, &reply);
    cr_assert_eq(reply.u.reserved.req_id, req_id);
    pd_status_t st = reply.u.reserved.status;
    if (n_blocks_p != NULL)
        *n_blocks_p = reply.u.reserved.n_block_table;
    pd_proto_msg_cleanup(&reply);
    return st;
}

static void cancel(uint64_t req_id)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_WORKER_CANCEL;
    m.u.worker_cancel.req_id = req_id;
    pd_role_dispatch(rt, &m);
}

/* The router's prefill of a reserved request to the colocated worker itself. */
static void prefill_local(uint64_t req_id, uint32_t n)
{
    rt_prompt_make(&prompt, req_id, n);
    pd_proto_msg_t m;
    rt_prefill_msg(&m, req_id, &prompt);
    pd_role_dispatch(rt, &m);
}

Test(decode_req, a_reserve_without_room_is_no_resource_and_takes_nothing)
{
    pd_decode_t *d = start("1", "1000", false);
    const uint32_t n_free0 = free_blocks();
    /* One small request first, of 1 or 2 blocks, so that the requests of 4 blocks that
     * fill the pool leave 1 to 3 blocks over. */
    const uint32_t small = n_free0 % 4 == 1 ? 2 : 1;
    uint32_t k = 0;
    cr_assert_eq(reserve(1, 16, small == 1 ? 1 : 17, &k), PD_OK);
    cr_assert_eq(k, small);
    cr_assert_eq(reserve(2, 20, 40, &k), PD_OK);
    cr_assert_eq(k, 4, "20 prompt + 39 written tokens are 4 blocks of 16");
    cr_assert_eq(free_blocks(), n_free0 - small - k);
    uint64_t id = 3;
    while (free_blocks() >= k)
        cr_assert_eq(reserve(id++, 20, 40, NULL), PD_OK);
    const uint32_t n_free = free_blocks(), n_live = d->n_live;
    cr_assert_gt(n_free, 0);
    cr_expect_eq(reserve(100, 20, 40, NULL), PD_ERR_NO_RESOURCE);
    cr_expect_eq(free_blocks(), n_free, "a refused reserve changed the free blocks");
    cr_expect_eq(d->n_live, n_live);
    cr_expect_null(pd_decode_req_find(d, 100));
    /* A request that fits in what is left still gets it. */
    cr_expect_eq(reserve(101, 16, 1, &k), PD_OK);
    cr_expect_eq(k, 1);
    cr_expect_eq(free_blocks(), n_free - 1);
}

Test(decode_req, a_reserve_for_a_known_req_id_is_refused)
{
    pd_decode_t *d = start("1", "1000", false);
    const uint32_t n_free0 = free_blocks();
    uint32_t k = 0;
    cr_assert_eq(reserve(7, 40, 10, &k), PD_OK);
    const pd_decode_req_t *q = pd_decode_req_find(d, 7);
    cr_assert_not_null(q);
    const uint32_t first_block = q->blocks[0];
    cr_expect_eq(reserve(7, 40, 10, NULL), PD_ERR_EXISTS);
    cr_expect_eq(free_blocks(), n_free0 - k);
    cr_expect_eq(d->n_live, 1);
    q = pd_decode_req_find(d, 7);
    cr_assert_not_null(q, "the refusal dropped the first reservation");
    cr_expect_eq(q->n_blocks, k);
    cr_expect_eq(q->blocks[0], first_block);
    cr_expect_eq(q->state, PD_DECODE_REQ_WAIT_KV);
}

Test(decode_req, a_cancel_while_waiting_for_kv_quarantines_the_blocks_until_the_timeout)
{
    /* Transfers time out after 100 ms: the blocks come back 100 + 500 ms after the cancel. */
    pd_decode_t *d = start("1", "100", false);
    const uint32_t n_free0 = free_blocks();
    uint32_t k = 0;
    cr_assert_eq(reserve(9, 40, 10, &k), PD_OK);
    const uint64_t t_cancel = pd_time_now_ms();
    cancel(9);
    cr_expect_null(pd_decode_req_find(d, 9));
    cr_expect_eq(d->n_live, 0);
    cr_assert_eq(d->n_quarantine, 1);
    cr_expect_eq(d->quarantine[0].n_blocks, k);
    cr_expect_eq(free_blocks(), n_free0 - k, "quarantined blocks were freed at once");
    /* A deliberate wait: for 300 ms of steps the blocks stay out of use. */
    while (pd_time_now_ms() < t_cancel + 300) {
        pd_role_step(rt);
        cr_assert_eq(free_blocks(), n_free0 - k, "quarantined blocks freed too early");
        usleep(2000); /* steps of an idle worker: no need to spin */
    }
    uint64_t end = pd_time_now_ms() + 5000;
    while (free_blocks() != n_free0 && pd_time_now_ms() < end) {
        pd_role_step(rt);
        usleep(2000);
    }
    cr_assert_eq(free_blocks(), n_free0, "quarantined blocks never came back");
    cr_expect_geq(pd_time_now_ms() - t_cancel, 600);
    cr_expect_eq(d->n_quarantine, 0);
    rt_expect_quiet(&env, 50);
}

Test(decode_req, a_reserve_for_a_req_id_past_its_transfer_is_refused)
{
    /* Once the KV is in, the transfer engine no longer knows the id: decode itself must
     * refuse the second reserve. */
    pd_decode_t *d = start("1", "1000", true);
    cr_assert_eq(reserve(8, 20, 10, NULL), PD_OK);
    prefill_local(8, 20);
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_PREFILLED, &m);
    pd_proto_msg_cleanup(&m);
    rt_expect(&env, PD_PROTO_TYPE_WORKER_TOKEN, &m);
    pd_proto_msg_cleanup(&m);
    cr_assert_eq(pd_decode_req_find(d, 8)->state, PD_DECODE_REQ_READY);
    const uint32_t n_free = free_blocks();
    cr_expect_eq(reserve(8, 20, 10, NULL), PD_ERR_EXISTS);
    cr_expect_eq(free_blocks(), n_free);
    cr_expect_eq(d->n_live, 1);
    cr_expect_eq(pd_decode_req_find(d, 8)->state, PD_DECODE_REQ_READY);
}

Test(decode_req, a_prefill_on_a_decode_only_worker_is_refused_and_ends_the_request)
{
    pd_decode_t *d = start("1", "1000", false);
    cr_assert_eq(reserve(4, 20, 5, NULL), PD_OK);
    prefill_local(4, 20);
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_WORKER_ERROR, &m);
    cr_expect_eq(m.u.worker_error.req_id, 4);
    cr_expect_eq(m.u.worker_error.code, PD_ERR_UNSUPPORTED);
    pd_proto_msg_cleanup(&m);
    cr_expect_null(pd_decode_req_find(d, 4));
    cr_expect_eq(d->n_live, 0);
    cr_expect_eq(d->n_quarantine, 1, "its blocks may still be written by a prefill");
}

Test(decode_req, a_colocated_prefill_of_an_unreserved_request_is_not_found)
{
    pd_decode_t *d = start("1", "1000", true);
    const uint32_t n_free0 = free_blocks();
    prefill_local(5, 20);
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_WORKER_ERROR, &m);
    cr_expect_eq(m.u.worker_error.req_id, 5);
    cr_expect_eq(m.u.worker_error.code, PD_ERR_NOT_FOUND);
    pd_proto_msg_cleanup(&m);
    cr_expect_eq(d->n_live, 0);
    cr_expect_eq(free_blocks(), n_free0);
}

/* Prefill req_id locally and check what the router hears: prefilled, then token 0. */
static int32_t prefill_and_expect_token0(uint64_t req_id, uint32_t n)
{
    prefill_local(req_id, n);
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_PREFILLED, &m);
    cr_assert_eq(m.u.prefilled.req_id, req_id);
    cr_expect_eq(m.u.prefilled.n_computed_tokens, n);
    int32_t first = m.u.prefilled.first_token;
    pd_proto_msg_cleanup(&m);
    rt_expect(&env, PD_PROTO_TYPE_WORKER_TOKEN, &m);
    cr_expect_eq(m.u.worker_token.req_id, req_id);
    cr_expect_eq(m.u.worker_token.index, 0);
    cr_expect_eq(m.u.worker_token.token, first);
    pd_proto_msg_cleanup(&m);
    return first;
}

Test(decode_req, the_batch_admits_requests_in_the_order_their_kv_completed)
{
    /* Reserved 1, 2, 3 (slots in that order), prefilled 3, 1, 2; a batch of 2 takes 3 and
     * 1, and 2 waits. */
    pd_decode_t *d = start("1", "1000", true);
    for (uint64_t id = 1; id <= 3; id++)
        cr_assert_eq(reserve(id, 20, 30, NULL), PD_OK);
    const uint64_t order[3] = {3, 1, 2};
    for (int i = 0; i < 3; i++)
        prefill_and_expect_token0(order[i], 20);
    for (uint64_t id = 1; id <= 3; id++)
        cr_expect_eq(pd_decode_req_find(d, id)->state, PD_DECODE_REQ_READY);
    cr_assert(pd_decode_step(d));
    cr_assert_eq(d->n_batch, 2);
    cr_expect_eq(d->batch[0]->req_id, 3);
    cr_expect_eq(d->batch[1]->req_id, 1);
    cr_expect_eq(pd_decode_req_find(d, 2)->state, PD_DECODE_REQ_READY);
    /* The step made token 1 of each request in the batch, and of no other. */
    bool got[4] = {false};
    for (int i = 0; i < 2; i++) {
        pd_proto_msg_t m;
        rt_expect(&env, PD_PROTO_TYPE_WORKER_TOKEN, &m);
        cr_expect_eq(m.u.worker_token.index, 1);
        cr_assert(m.u.worker_token.req_id == 1 || m.u.worker_token.req_id == 3,
                  "a token for request %llu", (unsigned long long)m.u.worker_token.req_id);
        got[m.u.worker_token.req_id] = true;
        pd_proto_msg_cleanup(&m);
    }
    cr_expect(got[1] && got[3]);
    /* A cancel of a running request frees its blocks at once and makes room for 2. */
    const uint32_t n_free = free_blocks();
    cancel(3);
    cr_expect_eq(d->n_quarantine, 0);
    cr_expect_gt(free_blocks(), n_free);
    cr_assert(pd_decode_step(d));
    cr_assert_eq(d->n_batch, 2);
    cr_expect_eq(d->batch[0]->req_id, 1);
    cr_expect_eq(d->batch[1]->req_id, 2);
}
