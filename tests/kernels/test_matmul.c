/* Matmuls with weights in each dtype: against double-precision references of what the
 * weights and prepared inputs hold, the exact int8 arithmetic, the bf16 pair order, and
 * independence from the batch, the row range and the column blocking. */
#include "pd/loader.h"
#include "pd/model.h"
#include "pd/ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static float rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

/* A (rows, cols) matrix of random values in dtype; f32 copy of what it holds in ref. */
static pd_weight_t make_weight(pd_dtype_t dtype, uint32_t rows, uint32_t cols, float **ref_p)
{
    size_t n = (size_t)rows * cols;
    float *f = malloc(n * sizeof(float));
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++)
        f[i] = rnd();
    pd_weight_t src = {f, NULL, PD_DTYPE_F32, 1, rows, cols};
    pd_weight_t w = {aligned_alloc(64, ((n * pd_dtype_size(dtype)) + 63) & ~(size_t)63),
                     dtype == PD_DTYPE_I8 ? malloc(rows * sizeof(float)) : NULL,
                     dtype,
                     1,
                     rows,
                     cols};
    cr_assert_eq(pd_weight_convert(&src, &w), PD_OK);
    for (uint32_t r = 0; r < rows; r++)
        pd_weight_row_f32(&w, 0, r, f + (size_t)r * cols);
    *ref_p = f;
    return w;
}

static void free_weight(pd_weight_t *w)
{
    free(w->data);
    free(w->scale);
}

/* y (T, out) for x (T, in) with weights w: prepared input and product. */
static void run(const pd_weight_t *w, const float *x, uint32_t T, float *y, uint32_t r0,
                uint32_t r1)
{
    void *buf = aligned_alloc(64, (pd_cpu_act_bytes(w->dtype, T, w->cols) + 64) & ~(size_t)63);
    pd_cpu_act_t act;
    pd_cpu_act_prepare(w->dtype, x, T, w->cols, buf, &act);
    pd_cpu_matmul_w(w, &act, y, T, r0, r1, false);
    free(buf);
}

/* What the prepared input of x (in) holds, as doubles. */
static void prepared_ref(pd_dtype_t dtype, const float *x, uint32_t in, double *out)
{
    if (dtype == PD_DTYPE_BF16) {
        for (uint32_t i = 0; i < in; i++)
            out[i] = pd_bf16_to_f32(pd_cpu_bf16_round(x[i]));
    } else if (dtype == PD_DTYPE_I8) {
        int8_t *q = malloc(in);
        float s;
        pd_cpu_quantize_act(x, in, q, &s);
        for (uint32_t i = 0; i < in; i++)
            out[i] = (double)s * q[i];
        free(q);
    } else {
        for (uint32_t i = 0; i < in; i++)
            out[i] = x[i];
    }
}

static const pd_dtype_t dtypes[] = {PD_DTYPE_F32, PD_DTYPE_F16, PD_DTYPE_BF16, PD_DTYPE_I8};

Test(matmul, every_dtype_matches_a_double_reference_of_what_it_holds)
{
    /* Shapes with tails for every step (16, 32, 64 elements) and long rows. */
    const uint32_t shapes[][3] = {{37, 45, 9}, {20, 64, 5}, {9, 200, 6}, {12, 1100, 7}};
    for (size_t d = 0; d < 4; d++)
        for (size_t s = 0; s < 4; s++) {
            rng_state = 10 + s;
            const uint32_t out = shapes[s][0], in = shapes[s][1], T = shapes[s][2];
            float *ref = NULL;
            pd_weight_t w = make_weight(dtypes[d], out, in, &ref);
            float *x = malloc((size_t)T * in * sizeof(float));
            for (size_t i = 0; i < (size_t)T * in; i++)
                x[i] = rnd();
            float *y = malloc((size_t)T * out * sizeof(float));
            double *xr = malloc(in * sizeof(double));
            run(&w, x, T, y, 0, out);
            for (uint32_t t = 0; t < T; t++) {
                prepared_ref(dtypes[d], x + (size_t)t * in, in, xr);
                for (uint32_t o = 0; o < out; o++) {
                    double a = 0, mag = 0;
                    for (uint32_t i = 0; i < in; i++) {
                        a += (double)ref[(size_t)o * in + i] * xr[i];
                        mag += fabs((double)ref[(size_t)o * in + i] * xr[i]);
                    }
                    cr_assert_leq(fabs(y[t * out + o] - a), 2e-6 * mag + 1e-6,
                                  "%s %ux%u t=%u o=%u: %g vs %g", pd_dtype_name(dtypes[d]), out, in,
                                  t, o, y[t * out + o], a);
                }
            }
            free(x);
            free(y);
            free(xr);
            free(ref);
            free_weight(&w);
        }
}

Test(matmul, a_row_is_independent_of_batch_row_range_and_column_blocks)
{
    /* in > 1024 with more than 4 tokens takes the column-blocked path; alone it does not. */
    const uint32_t out = 23, in = 1500, T = 13;
    for (size_t d = 0; d < 4; d++) {
        rng_state = 20 + d;
        float *ref = NULL;
        pd_weight_t w = make_weight(dtypes[d], out, in, &ref);
        float *x = malloc((size_t)T * in * sizeof(float));
        for (size_t i = 0; i < (size_t)T * in; i++)
            x[i] = rnd();
        float *all = malloc((size_t)T * out * sizeof(float)), one[23], part[23 * 13];
        run(&w, x, T, all, 0, out);
        for (uint32_t t = 0; t < T; t++) {
            run(&w, x + (size_t)t * in, 1, one, 0, out);
            cr_assert_eq(memcmp(one, all + (size_t)t * out, sizeof(one)), 0, "%s token %u",
                         pd_dtype_name(dtypes[d]), t);
        }
        memcpy(part, all, sizeof(part));
        run(&w, x, T, part, 5, 14); /* rows 5..13 only, the rest untouched */
        cr_assert_eq(memcmp(part, all, sizeof(part)), 0, "%s row range", pd_dtype_name(dtypes[d]));
        free(x);
        free(all);
        free(ref);
        free_weight(&w);
    }
}

Test(matmul, int8_is_the_exact_integer_dot_times_both_scales)
{
    rng_state = 5;
    const uint32_t out = 9, in = 333, T = 3;
    float *ref = NULL;
    pd_weight_t w = make_weight(PD_DTYPE_I8, out, in, &ref);
    float x[3 * 333], y[3 * 9];
    for (size_t i = 0; i < 3 * 333; i++)
        x[i] = rnd() * 3.0f;
    x[100] = -7.0f; /* the largest magnitude quantizes to -127 */
    run(&w, x, T, y, 0, out);
    int8_t q[333];
    for (uint32_t t = 0; t < T; t++) {
        float sx;
        int32_t sum = pd_cpu_quantize_act(x + t * in, in, q, &sx), s2 = 0;
        for (uint32_t i = 0; i < in; i++)
            s2 += q[i];
        cr_assert_eq(sum, s2);
        if (t == 0)
            cr_assert_eq(q[100], -127);
        for (uint32_t o = 0; o < out; o++) {
            int64_t dot = 0;
            for (uint32_t i = 0; i < in; i++)
                dot += (int64_t)((const int8_t *)w.data)[o * in + i] * q[i];
            float want = ((float)dot * w.scale[o]) * sx;
            cr_assert_eq(memcmp(&want, &y[t * out + o], 4), 0, "t=%u o=%u", t, o);
        }
    }
    free(ref);
    free_weight(&w);
}

Test(matmul, bf16_adds_each_pair_in_the_vdpbf16ps_order)
{
    rng_state = 6;
    const uint32_t out = 5, in = 77, T = 2;
    float *ref = NULL;
    pd_weight_t w = make_weight(PD_DTYPE_BF16, out, in, &ref);
    float x[2 * 77], y[2 * 5];
    for (size_t i = 0; i < 2 * 77; i++)
        x[i] = rnd();
    run(&w, x, T, y, 0, out);
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t o = 0; o < out; o++) {
            /* lane j takes pairs (2j, 2j+1) of each 32: odd product, then even */
            float lane[16] = {0};
            for (uint32_t k = 0; k < in; k += 2) {
                uint32_t j = (k / 2) % 16;
                float xo = k + 1 < in ? pd_bf16_to_f32(pd_cpu_bf16_round(x[t * in + k + 1])) : 0;
                float wo = k + 1 < in ? ref[o * in + k + 1] : 0;
                lane[j] = fmaf(wo, xo, lane[j]);
                lane[j] = fmaf(ref[o * in + k], pd_bf16_to_f32(pd_cpu_bf16_round(x[t * in + k])),
                               lane[j]);
            }
            for (uint32_t s = 8; s >= 1; s /= 2)
                for (uint32_t l = 0; l < s; l++)
                    lane[l] += lane[l + s];
            cr_assert_eq(memcmp(&lane[0], &y[t * out + o], 4), 0, "t=%u o=%u: %.9g vs %.9g", t, o,
                         lane[0], y[t * out + o]);
        }
    free(ref);
    free_weight(&w);
}

Test(matmul, prepared_bf16_rounds_every_element_alike)
{
    /* The vector conversion and the scalar tail give the same bits for the same value. */
    float x[40];
    for (int i = 0; i < 40; i++)
        x[i] = (i % 20) * 0.1003f - 1.0f + (i == 39 ? 1e-3f : 0.0f);
    uint16_t buf[64];
    pd_cpu_act_t act;
    pd_cpu_act_prepare(PD_DTYPE_BF16, x, 1, 40, buf, &act);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(act.b[i], pd_cpu_bf16_round(x[i]), "element %d", i);
    cr_assert_eq(pd_cpu_bf16_round(1.0f + 1.0f / 256), 0x3f80); /* tie to even */
    cr_assert_eq(pd_cpu_bf16_round(1.0f + 3.0f / 256), 0x3f82);
}

Test(matmul, quantized_rows_round_to_nearest_and_keep_zero_rows_zero)
{
    float x[4] = {0.5f, -1.0f, 0.25f, 0.0f}, z[3] = {0, 0, 0};
    int8_t q[4];
    float s;
    pd_weight_quantize_row(x, 4, q, &s);
    cr_assert_float_eq(s, 1.0f / 127.0f, 1e-9);
    cr_assert_eq(q[0], 64); /* 63.5 rounds to even */
    cr_assert_eq(q[1], -127);
    cr_assert_eq(q[2], 32); /* 31.75 */
    cr_assert_eq(q[3], 0);
    pd_weight_quantize_row(z, 3, q, &s);
    cr_assert_eq(s, 0.0f);
    cr_assert_eq(q[0] | q[1] | q[2], 0);
}
