/* Sampling: greedy, seeded draws, top-p and the temperature distribution. */
#include "pd/sample.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

Test(sample, greedy_picks_argmax_lowest_id_on_ties)
{
    float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, NAN, 1.0f}, scratch[12];
    pd_sampling_t s = {0.0f, 1.0f, 42};
    cr_assert_eq(pd_sample_token(&s, logits, 6, 0, scratch), 1);
    float nan_first[3] = {NAN, -5.0f, -4.0f};
    cr_assert_eq(pd_sample_token(&s, nan_first, 3, 0, scratch), 2);
    /* A tiny temperature behaves like greedy in practice; top_p near 0 does exactly. */
    pd_sampling_t p = {1.0f, 1e-6f, 7};
    for (uint64_t step = 0; step < 50; step++) {
        float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 0.0f, 1.0f};
        cr_assert_eq(pd_sample_token(&p, l, 6, step, scratch), 1);
    }
}

Test(sample, uniform_depends_only_on_seed_and_step)
{
    double sum = 0;
    for (uint64_t i = 0; i < 10000; i++) {
        float u = pd_sample_uniform(123, i);
        cr_assert(u >= 0.0f && u < 1.0f);
        cr_assert_eq(u, pd_sample_uniform(123, i));
        sum += u;
    }
    cr_assert_float_eq(sum / 10000, 0.5, 0.01);
    cr_assert_neq(pd_sample_uniform(1, 5), pd_sample_uniform(2, 5));
    cr_assert_neq(pd_sample_uniform(1, 5), pd_sample_uniform(1, 6));
}

Test(sample, same_seed_and_step_give_the_same_token)
{
    float scratch[512], a[256], b[256];
    pd_sampling_t s = {0.8f, 0.95f, 99};
    int differ = 0;
    for (uint64_t step = 0; step < 64; step++) {
        for (int i = 0; i < 256; i++)
            a[i] = b[i] = sinf((float)i * 0.1f) * 3.0f;
        int32_t ta = pd_sample_token(&s, a, 256, step, scratch);
        int32_t tb = pd_sample_token(&s, b, 256, step, scratch);
        cr_assert_eq(ta, tb);
        for (int i = 0; i < 256; i++)
            b[i] = sinf((float)i * 0.1f) * 3.0f;
        differ += pd_sample_token(&s, b, 256, step + 1000, scratch) != ta;
    }
    cr_assert_gt(differ, 5, "different steps should draw differently");
}

Test(sample, temperature_one_follows_the_softmax)
{
    const float p[3] = {0.5f, 0.3f, 0.2f};
    float scratch[6];
    int count[3] = {0};
    pd_sampling_t s = {1.0f, 1.0f, 5};
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        float l[3] = {logf(p[0]), logf(p[1]), logf(p[2])};
        count[pd_sample_token(&s, l, 3, (uint64_t)i, scratch)]++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq((double)count[k] / n, p[k], 0.015, "token %d: %d", k, count[k]);
    /* A high temperature flattens the distribution. */
    pd_sampling_t hot = {100.0f, 1.0f, 5};
    memset(count, 0, sizeof(count));
    for (int i = 0; i < n; i++) {
        float l[3] = {logf(p[0]), logf(p[1]), logf(p[2])};
        count[pd_sample_token(&hot, l, 3, (uint64_t)i, scratch)]++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq((double)count[k] / n, 1.0 / 3.0, 0.02);
}

Test(sample, top_p_keeps_only_the_nucleus_renormalised)
{
    const float p[4] = {0.1f, 0.5f, 0.15f, 0.25f};
    float scratch[8];
    int count[4] = {0};
    pd_sampling_t s = {1.0f, 0.7f, 11}; /* nucleus: tokens 1 (0.5) and 3 (0.25) */
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        float l[4] = {logf(p[0]), logf(p[1]), logf(p[2]), logf(p[3])};
        count[pd_sample_token(&s, l, 4, (uint64_t)i, scratch)]++;
    }
    cr_assert_eq(count[0], 0);
    cr_assert_eq(count[2], 0);
    cr_assert_float_eq((double)count[1] / n, 2.0 / 3.0, 0.015);
}
