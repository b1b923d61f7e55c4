/* Reading a prefix from any worker that holds it, and perforated prefixes, with real
 * pd-prefill and pd-decode processes (the test plays the router): a third worker pins the
 * prompt's blocks, prefill reads and verifies them, computes only what is missing, and the
 * tokens equal the single-process reference. */
#include "cluster_fr.h"

TestSuite(cluster_holders, .timeout = 120, .fini = fr_stop);

/* 2P2D. Request 1 (prefill-0 -> decode-0) leaves the 71-token prompt's 4 full blocks in
 * decode-0's cache. Request 2 sends the same prompt through prefill-1 and decode-1, which
 * hold none of it, with decode-0 as the holder: it pins its 4 blocks, prefill-1 reads
 * them. hole_at / corrupt_at make block k missing from the holder's answer, or its
 * checksum wrong: prefill-1 then computes that block alone. */
static void fr_holder_case(int hole_at, int corrupt_at, double temperature)
{
    fr_start(2, 2, false, 4, NULL);
    fr_req_t a, b;
    fr_req_init(&a, 1, 71, 4, 12, 0.0, 1);
    a.pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 0);
    a.dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 0);
    fr_run(&a, 1, 20000);
    fr_expect_reference(&a);
    cr_assert_eq(a.prefilled.n_computed_tokens, 71);

    fr_req_init(&b, 2, 71, 4, 12, temperature, 9);
    b.pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 1);
    b.dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 1);
    b.holder = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 0);
    b.hole_at = hole_at;
    b.corrupt_at = corrupt_at;
    fr_run(&b, 1, 20000);
    fr_expect_reference(&b);
    cr_assert(b.pinned, "the holder never answered pin");
    cr_assert_eq(b.pin_status, PD_OK);
    cr_assert_eq(b.n_src, 4);
    for (uint32_t i = 0; i < 4; i++)
        cr_assert(i == (uint32_t)hole_at || b.src_table[i] != PD_PROTO_NO_BLOCK,
                  "the holder lacks block %u", i);
    cr_assert_eq(b.n_cached_blocks, 0, "decode-1 held nothing");
    int bad = hole_at >= 0 ? hole_at : corrupt_at;
    const uint32_t want_computed = 7 + (bad >= 0 ? FR_BT : 0);
    cr_expect_eq(b.prefilled.n_computed_tokens, want_computed, "prefill-1 computed %u tokens",
                 b.prefilled.n_computed_tokens);
    cr_expect_eq(b.prefilled.n_cached_tokens, 71 - want_computed);
    if (bad >= 0) {
        cr_assert_eq(b.n_holes, 1, "%u blocks reported recomputed", b.n_holes);
        cr_assert_eq(b.holes[0], (uint32_t)bad);
    } else {
        cr_assert_eq(b.n_holes, 0);
    }
    /* Blocks read and verified are this worker's cache now, as are those computed over
     * them. */
    cr_expect_eq(b.prefilled.cache_creation_input_tokens, 64);

    /* Prefill-1 serves the prompt from its own cache now, without a holder. */
    fr_req_t c;
    fr_req_init(&c, 3, 71, 4, 12, 0.0, 3);
    c.pre = fr_worker_by_role(PD_PROTO_ROLE_PREFILL, 1);
    c.dec = fr_worker_by_role(PD_PROTO_ROLE_DECODE, 0);
    fr_run(&c, 1, 20000);
    fr_expect_reference(&c);
    cr_expect_eq(c.prefilled.n_computed_tokens, 7);
    cr_expect_eq(c.n_holes, 0);
    fr_expect_all_free(); /* the holder's pins went with the cancel */
    fr_stop();
}

Test(cluster_holders, a_third_holder_serves_the_prefix_and_tokens_are_exact)
{
    fr_holder_case(-1, -1, 0.0);
}

Test(cluster_holders, a_hole_in_the_middle_is_recomputed_alone)
{
    fr_holder_case(1, -1, 0.7);
}

Test(cluster_holders, a_block_failing_its_checksum_is_recomputed)
{
    fr_holder_case(-1, 2, 0.0);
}
