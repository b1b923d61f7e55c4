/* The chunk scheduler of pd-prefill (pd_prefill_sched_plan): which prompts' chunks the next
 * forward pass computes, and how many tokens of each. */
#include "pd/prefill.h"

#include <criterion/criterion.h>

typedef pd_prefill_sched_item_t item_t;

static uint32_t plan(const item_t *items, uint32_t n, uint32_t chunk, uint32_t *pick,
                     uint32_t *take)
{
    return pd_prefill_sched_plan(items, n, chunk, PD_PREFILL_MAX_PASS_SEQS, pick, take);
}

Test(prefill_sched, a_long_prompt_computes_in_chunks_of_the_budget)
{
    item_t it[1] = {{1900, 1900, 0, 0}};
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    cr_assert_eq(plan(it, 1, 256, pick, take), 1);
    cr_assert_eq(pick[0], 0);
    cr_assert_eq(take[0], 256);
    it[0] = (item_t){108, 108, 0, 0};
    cr_assert_eq(plan(it, 1, 256, pick, take), 1);
    cr_assert_eq(take[0], 108);
}

Test(prefill_sched, the_prompt_with_fewest_tokens_left_goes_first)
{
    /* A long prompt mid-way, then a short one that arrived later, and a mostly cached one
     * (its remaining tokens are few). */
    item_t it[3] = {{1644, 1644, 0, 0}, {64, 64, 1, 0}, {16, 16, 2, 0}};
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    cr_assert_eq(plan(it, 3, 256, pick, take), 2);
    cr_assert_eq(pick[0], 2);
    cr_assert_eq(take[0], 16);
    cr_assert_eq(pick[1], 1, "a second prompt that finishes in the pass shares it");
    cr_assert_eq(take[1], 64);
    /* With a budget the second does not fit in, it waits for the next pass. */
    cr_assert_eq(plan(it, 3, 32, pick, take), 1);
    cr_assert_eq(pick[0], 2);
    /* Ties go by arrival. */
    item_t tie[2] = {{64, 64, 7, 0}, {64, 64, 3, 0}};
    cr_assert_eq(plan(tie, 2, 64, pick, take), 1);
    cr_assert_eq(pick[0], 1);
}

Test(prefill_sched, a_partial_chunk_never_joins_a_pass_another_prompt_finishes_in)
{
    item_t it[2] = {{64, 64, 1, 0}, {1900, 1900, 0, 0}};
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    cr_assert_eq(plan(it, 2, 256, pick, take), 1);
    cr_assert_eq(pick[0], 0);
    cr_assert_eq(take[0], 64);
    /* A prompt with a hole: its run (the hole) is shorter than what it has left, so it
     * would not finish and does not join either. */
    item_t h[2] = {{40, 40, 0, 0}, {80, 16, 1, 0}};
    cr_assert_eq(plan(h, 2, 256, pick, take), 1);
    cr_assert_eq(pick[0], 0);
    /* Alone, its chunk ends with its run. */
    cr_assert_eq(plan(&h[1], 1, 256, pick, take), 1);
    cr_assert_eq(take[0], 16);
}

Test(prefill_sched, a_prompt_passed_over_too_often_goes_first)
{
    item_t it[2] = {{64, 64, 1, 0}, {1900, 1900, 0, PD_PREFILL_MAX_PASSED_OVER}};
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    cr_assert_eq(plan(it, 2, 256, pick, take), 1);
    cr_assert_eq(pick[0], 1);
    cr_assert_eq(take[0], 256);
    it[1].n_passed_over = PD_PREFILL_MAX_PASSED_OVER - 1;
    cr_assert_eq(plan(it, 2, 256, pick, take), 1);
    cr_assert_eq(pick[0], 0);
}

Test(prefill_sched, many_short_prompts_share_a_pass_up_to_the_limits)
{
    item_t it[20];
    for (uint32_t i = 0; i < 20; i++)
        it[i] = (item_t){10, 10, i, 0};
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    cr_assert_eq(plan(it, 20, 1000, pick, take), PD_PREFILL_MAX_PASS_SEQS);
    for (uint32_t k = 0; k < PD_PREFILL_MAX_PASS_SEQS; k++)
        cr_assert_eq(pick[k], k);
    cr_assert_eq(plan(it, 20, 45, pick, take), 4, "the token budget bounds it too");
    /* Nothing to compute: no pass. */
    item_t none[1] = {{0, 0, 0, 0}};
    cr_assert_eq(plan(none, 1, 256, pick, take), 0);
}
