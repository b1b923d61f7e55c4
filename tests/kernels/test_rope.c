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
    pd_cpu_rope_table(cs, 100, HD, 10000.0f, NULL);
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
    pd_cpu_rope_table(cs, 10, HD, 10000.0f, NULL);
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
    pd_cpu_rope_table(cs, 2048, 64, 10000.0f, NULL);
    for (uint32_t p = 0; p < 2048; p += 97)
        for (uint32_t i = 0; i < 32; i++) {
            double a = p * pow(10000.0, -2.0 * i / 64);
            cr_assert_float_eq(cs[p * 64 + i], cos(a), 1e-7);
            cr_assert_float_eq(cs[p * 64 + 32 + i], sin(a), 1e-7);
        }
}

/* Llama 3's RoPE scaling (rope_type "llama3") against the published formula (transformers'
 * _compute_llama3_parameters, written out here), with Llama 3.1 8B's settings: theta
 * 500000, head_dim 128, factor 8, low_freq_factor 1, high_freq_factor 4, original context
 * 8192. */
Test(rope, llama3_scaling_follows_the_published_formula)
{
    const pd_rope_scaling_t s = {8.0f, 1.0f, 4.0f, 8192};
    const uint32_t hd = 128;
    double got[64], plain[64];
    pd_rope_inv_freq(hd, 500000.0f, &s, got);
    pd_rope_inv_freq(hd, 500000.0f, NULL, plain);
    int n_low = 0, n_mid = 0, n_high = 0;
    for (uint32_t i = 0; i < hd / 2; i++) {
        double inv_freq = 1.0 / pow(500000.0, (double)(2 * i) / hd);
        double low_wavelen = 8192.0 / 1.0, high_wavelen = 8192.0 / 4.0;
        double wavelen = 2 * M_PI / inv_freq, want;
        if (wavelen < high_wavelen) {
            want = inv_freq;
            n_high++;
        } else if (wavelen > low_wavelen) {
            want = inv_freq / 8.0;
            n_low++;
        } else {
            double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            want = (1 - smooth) * inv_freq / 8.0 + smooth * inv_freq;
            n_mid++;
        }
        cr_assert_float_eq(plain[i], inv_freq, 1e-12 * inv_freq, "i %u", i);
        cr_assert_float_eq(got[i], want, 1e-12 * want, "i %u: %g, want %g", i, got[i], want);
    }
    /* the settings put frequencies in each of the three bands */
    cr_assert_gt(n_low, 0);
    cr_assert_gt(n_mid, 0);
    cr_assert_gt(n_high, 0);
    cr_log_info("llama3 rope: %d kept, %d blended, %d divided by the factor", n_high, n_mid, n_low);
    /* and the rotation table is built from them */
    float *cs = malloc((size_t)3000 * hd * sizeof(float));
    pd_cpu_rope_table(cs, 3000, hd, 500000.0f, &s);
    for (uint32_t p = 0; p < 3000; p += 997)
        for (uint32_t i = 0; i < hd / 2; i++) {
            cr_assert_float_eq(cs[(size_t)p * hd + i], cos(p * got[i]), 1e-6);
            cr_assert_float_eq(cs[(size_t)p * hd + hd / 2 + i], sin(p * got[i]), 1e-6);
        }
    free(cs);
}
