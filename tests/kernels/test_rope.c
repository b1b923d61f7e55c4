/* RoPE in both pairing conventions against a double-precision reference. */
#include "pd/ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#define HD 16
#define NH 3

static void ref_rope(double *x, uint32_t pos, pd_rope_style_t style, double theta)
{
    for (uint32_t h = 0; h < NH; h++) {
        double *v = x + h * HD;
        for (uint32_t i = 0; i < HD / 2; i++) {
            double a = pos * pow(theta, -2.0 * i / HD);
            uint32_t i0 = style == PD_ROPE_PAIR ? 2 * i : i;
            uint32_t i1 = style == PD_ROPE_PAIR ? 2 * i + 1 : i + HD / 2;
            double x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * cos(a) - x1 * sin(a);
            v[i1] = x0 * sin(a) + x1 * cos(a);
        }
    }
}

static void run_style(pd_rope_style_t style)
{
    float cs[100 * HD];
    pd_cpu_rope_table(cs, 100, HD, 10000.0f);
    const uint32_t positions[] = {0, 1, 7, 99};
    for (size_t p = 0; p < 4; p++) {
        float x[NH * HD];
        double ref[NH * HD];
        for (int i = 0; i < NH * HD; i++)
            ref[i] = x[i] = sinf((float)i * 0.37f + 0.1f);
        pd_cpu_rope(x, NH, HD, cs + positions[p] * HD, style);
        ref_rope(ref, positions[p], style, 10000.0);
        for (int i = 0; i < NH * HD; i++)
            cr_assert_float_eq(x[i], ref[i], 2e-6, "style %d pos %u i %d", style, positions[p], i);
    }
}

Test(rope, half_matches_reference)
{
    run_style(PD_ROPE_HALF);
}

Test(rope, pair_matches_reference)
{
    run_style(PD_ROPE_PAIR);
}

Test(rope, styles_differ_and_position_zero_is_identity)
{
    float cs[10 * HD];
    pd_cpu_rope_table(cs, 10, HD, 10000.0f);
    float a[NH * HD], b[NH * HD], orig[NH * HD];
    for (int i = 0; i < NH * HD; i++)
        a[i] = b[i] = orig[i] = cosf((float)i);
    pd_cpu_rope(a, NH, HD, cs + 0, PD_ROPE_HALF);
    cr_assert_eq(memcmp(a, orig, sizeof(a)), 0);
    pd_cpu_rope(a, NH, HD, cs + 5 * HD, PD_ROPE_HALF);
    pd_cpu_rope(b, NH, HD, cs + 5 * HD, PD_ROPE_PAIR);
    int differ = 0;
    for (int i = 0; i < NH * HD; i++)
        differ += fabsf(a[i] - b[i]) > 1e-3f;
    cr_assert_gt(differ, NH * HD / 2);
    /* Both are rotations: each head keeps its norm. */
    for (int h = 0; h < NH; h++) {
        double na = 0, nb = 0, no = 0;
        for (int i = 0; i < HD; i++) {
            na += a[h * HD + i] * a[h * HD + i];
            nb += b[h * HD + i] * b[h * HD + i];
            no += orig[h * HD + i] * orig[h * HD + i];
        }
        cr_assert_float_eq(na, no, 1e-4);
        cr_assert_float_eq(nb, no, 1e-4);
    }
}

Test(rope, table_matches_double_angles)
{
    float cs[2048 * 64];
    pd_cpu_rope_table(cs, 2048, 64, 10000.0f);
    for (uint32_t p = 0; p < 2048; p += 97)
        for (uint32_t i = 0; i < 32; i++) {
            double a = p * pow(10000.0, -2.0 * i / 64);
            cr_assert_float_eq(cs[p * 64 + i], cos(a), 1e-7);
            cr_assert_float_eq(cs[p * 64 + 32 + i], sin(a), 1e-7);
        }
}
