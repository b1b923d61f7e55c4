/* pd-prefill's handlers driven directly (pd_role_dispatch, pd_role_step) over the tiny
 * model, with a decode role in the same process to push to over the loopback transfer
 * backend and a ROUTER socket as the router: what prefill refuses (a dest it cannot
 * reach, a dest block outside the dest's pool, a req_id in flight), a cancel of a queued
 * prefill, and a whole push into decode's reserved blocks. */
#include "decode_int.h"
#include "pd/mp.h"
#include "prefill_int.h"
#include "role_test_util.h"

static rt_env_t env;
static pd_role_t *prt, *drt; /* the prefill worker "p0", the decode worker "d0" */
static pd_mp_writer_t desc;  /* d0's transfer descriptor */

static void teardown(void)
{
    pd_role_destroy(&prt);
    pd_role_destroy(&drt);
    pd_mp_writer_cleanup(&desc);
    rt_env_cleanup(&env);
}

TestSuite(prefill_job, .fini = teardown);

static pd_prefill_t *start(void)
{
    rt_env_init(&env);
    prt = rt_role_create(&env, &pd_prefill_role, "p0", "1", "2000", NULL, 0);
    drt = rt_role_create(&env, &pd_decode_role, "d0", "1", "2000", NULL, 0);
    pd_mp_writer_init(&desc);
    cr_assert_eq(pd_xfer_desc_export(drt->fabric.engine, &desc), PD_OK);
    return prt->state;
}

static uint32_t free_blocks(pd_role_t *rt)
{
    return pd_worker_kvbm_free_blocks(rt->bm);
}

static rt_prompt_t prompt; /* of the last request sent */
static uint32_t table[8];  /* the decode blocks of the next prefill */

/* The router's prefill of req_id (n tokens) to d0, its KV into `table`. */
static void prefill(uint64_t req_id, uint32_t n, const void *dest_desc, size_t dest_desc_bytes)
{
    rt_prompt_make(&prompt, req_id, n);
    pd_proto_msg_t m;
    rt_prefill_msg(&m, req_id, &prompt);
    pd_proto_prefill_t *p = &m.u.prefill;
    p->dest_epoch = pd_worker_epoch(drt->worker);
    p->dest_xfer_desc = dest_desc;
    p->dest_xfer_desc_bytes = dest_desc_bytes;
    p->dest_block_table = table;
    p->n_dest_block_table = (n + 15) / 16;
    pd_role_dispatch(prt, &m);
}

static void prefill_to_d0(uint64_t req_id, uint32_t n)
{
    prefill(req_id, n, pd_mp_writer_data(&desc), pd_mp_writer_size(&desc));
}

/* The router hears an error about req_id with code. */
static void expect_error(uint64_t req_id, pd_status_t code)
{
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_WORKER_ERROR, &m);
    cr_expect_eq(m.u.worker_error.req_id, req_id);
    cr_expect_eq(m.u.worker_error.code, code, "%s instead of %s",
                 pd_status_name(m.u.worker_error.code), pd_status_name(code));
    pd_proto_msg_cleanup(&m);
}

Test(prefill_job, a_prefill_whose_dest_cannot_be_reached_is_refused)
{
    pd_prefill_t *p = start();
    const uint32_t n_free0 = free_blocks(prt);
    static const char junk[] = "not a transfer descriptor";
    for (uint32_t i = 0; i < 3; i++)
        table[i] = i;
    prefill(1, 40, junk, sizeof(junk));
    pd_proto_msg_t m;
    rt_expect(&env, PD_PROTO_TYPE_WORKER_ERROR, &m);
    cr_expect_eq(m.u.worker_error.req_id, 1);
    cr_expect_neq(m.u.worker_error.code, PD_OK);
    cr_expect_not_null(strstr(m.u.worker_error.message, "cannot connect"), "%s",
                       m.u.worker_error.message);
    pd_proto_msg_cleanup(&m);
    cr_expect_eq(p->n_jobs, 0);
    cr_expect_eq(free_blocks(prt), n_free0);
    rt_expect_quiet(&env, 50);
}

Test(prefill_job, a_dest_block_outside_the_dest_pool_is_out_of_range)
{
    pd_prefill_t *p = start();
    const uint32_t n_free0 = free_blocks(prt);
    table[0] = 0;
    table[1] = drt->layout.n_blocks; /* one past the last */
    table[2] = 1;
    prefill_to_d0(2, 40);
    expect_error(2, PD_ERR_OUT_OF_RANGE);
    cr_expect_eq(p->n_jobs, 0);
    cr_expect_eq(free_blocks(prt), n_free0);
}

Test(prefill_job, a_prefill_for_a_req_id_in_flight_is_refused_and_a_cancel_releases_it)
{
    pd_prefill_t *p = start();
    const uint32_t n_free0 = free_blocks(prt);
    for (uint32_t i = 0; i < 3; i++)
        table[i] = 4 + i;
    prefill_to_d0(3, 40);
    cr_assert_eq(p->n_jobs, 1);
    cr_expect_eq(free_blocks(prt), n_free0 - 3, "a queued prefill holds its 3 blocks");
    prefill_to_d0(3, 40);
    expect_error(3, PD_ERR_EXISTS);
    cr_expect_eq(p->n_jobs, 1);
    cr_expect_eq(free_blocks(prt), n_free0 - 3);
    /* Canceled while queued: released at once, nothing pushed, nothing said. */
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_WORKER_CANCEL;
    m.u.worker_cancel.req_id = 3;
    pd_role_dispatch(prt, &m);
    cr_expect_eq(p->n_jobs, 0);
    cr_expect_eq(free_blocks(prt), n_free0);
    pd_role_step(prt);
    rt_expect_quiet(&env, 50);
}

Test(prefill_job, the_kv_pushed_to_decode_completes_its_reservation)
{
    /* decode reserves, prefill computes and pushes over loopback: decode streams the
     * token prefill sampled, and its blocks hold the bytes prefill computed. */
    pd_prefill_t *p = start();
    pd_decode_t *d = drt->state;
    const uint32_t n = 40;
    rt_prompt_make(&prompt, 5, n);
    pd_proto_msg_t m;
    rt_reserve_msg(&m, 5, &prompt, 8);
    pd_role_dispatch(drt, &m);
    pd_proto_msg_t r;
    rt_expect(&env, PD_PROTO_TYPE_RESERVED, &r);
    cr_assert_eq(r.u.reserved.status, PD_OK);
    cr_assert_geq(r.u.reserved.n_block_table, 3);
    memcpy(table, r.u.reserved.block_table, 3 * sizeof(*table));
    pd_proto_msg_cleanup(&r);

    prefill_to_d0(5, n);
    cr_assert_eq(p->n_jobs, 1);
    uint32_t src[3];
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++)
        if (p->jobs[i].live)
            memcpy(src, p->jobs[i].blocks, sizeof(src));
    int32_t first = -1, token0 = -2;
    uint64_t end = pd_time_now_ms() + 10000;
    while ((first < 0 || token0 < 0) && pd_time_now_ms() < end) {
        pd_role_step(prt);
        pd_role_step(drt);
        if (!rt_recv(&env, 1, &m))
            continue;
        if (m.type == PD_PROTO_TYPE_PREFILLED) {
            cr_expect_eq(m.u.prefilled.req_id, 5);
            cr_expect_eq(m.u.prefilled.n_computed_tokens, n);
            first = m.u.prefilled.first_token;
        } else if (m.type == PD_PROTO_TYPE_WORKER_TOKEN && m.u.worker_token.index == 0) {
            cr_expect_eq(m.u.worker_token.req_id, 5);
            token0 = m.u.worker_token.token;
        } else if (m.type == PD_PROTO_TYPE_WORKER_ERROR) {
            cr_assert_fail("error %s: %s", pd_status_name(m.u.worker_error.code),
                           m.u.worker_error.message);
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_geq(first, 0, "prefill never reported prefilled");
    cr_assert_eq(token0, first, "decode streamed another first token than prefill sampled");
    cr_expect_eq(p->n_jobs, 0);
    const pd_decode_req_t *q = pd_decode_req_find(d, 5);
    cr_assert_not_null(q);
    cr_expect_neq(q->state, PD_DECODE_REQ_WAIT_KV);
    /* Every layer of the 3 prompt blocks arrived: the full blocks whole, of the last one
     * the K and V rows of the prompt's 8 tokens there (decode's own steps write on). */
    const size_t lb = pd_kv_block_layer_bytes(&drt->layout), tb = pd_kv_token_bytes(&drt->layout);
    const uint32_t B = drt->layout.block_tokens, tail_rows = n - 2 * B;
    const char *dpool = drt->fabric.pool, *ppool = prt->fabric.pool;
    bool nonzero = false; /* the pools start zeroed: equal zeros would prove nothing */
    for (size_t i = 0; i < lb && !nonzero; i++)
        nonzero = dpool[pd_kv_offset(&drt->layout, 0, table[0]) + i] != 0;
    cr_expect(nonzero, "decode's first block is still zero");
    for (uint32_t l = 0; l < drt->layout.n_layers; l++) {
        for (uint32_t b = 0; b < 3; b++) {
            const char *got = dpool + pd_kv_offset(&drt->layout, l, table[b]);
            const char *want = ppool + pd_kv_offset(&prt->layout, l, src[b]);
            if (b < 2) {
                cr_expect_eq(memcmp(got, want, lb), 0, "layer %u block %u differs", l, b);
                continue;
            }
            cr_expect_eq(memcmp(got, want, tail_rows * tb), 0, "layer %u: last block's K", l);
            cr_expect_eq(memcmp(got + B * tb, want + B * tb, tail_rows * tb), 0,
                         "layer %u: last block's V", l);
        }
    }
}
