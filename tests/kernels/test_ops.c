/* CPU ops against plain double-precision references, and the canonical-order claims. */
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

static float *rnd_vec(size_t n)
{
    float *v = malloc(n * sizeof(float));
    cr_assert_not_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rnd();
    return v;
}

Test(cpu_ops, dot_matches_double_reference_for_all_tails)
{
    rng_state = 1;
    const uint32_t sizes[] = {1, 7, 15, 16, 17, 31, 64, 100, 768, 2048};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint32_t n = sizes[s];
        float *a = rnd_vec(n), *b = rnd_vec(n);
        double ref = 0.0, mag = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            ref += (double)a[i] * b[i];
            mag += fabs((double)a[i] * b[i]);
        }
        float got = pd_cpu_dot(a, b, n);
        cr_assert_leq(fabs(got - ref), 1e-6 * mag + 1e-7, "n=%u got %g ref %g", n, got, ref);
        free(a);
        free(b);
    }
}

Test(cpu_ops, matmul_every_output_is_the_canonical_dot)
{
    rng_state = 2;
    const uint32_t out = 37, in = 45, T = 11;
    float *w = rnd_vec((size_t)out * in), *x = rnd_vec((size_t)T * in);
    float *y = calloc((size_t)T * out, sizeof(float));
    pd_cpu_matmul(w, x, y, T, out, in, 0, out, false);
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t o = 0; o < out; o++) {
            float d = pd_cpu_dot(w + (size_t)o * in, x + (size_t)t * in, in);
            cr_assert_eq(memcmp(&d, &y[t * out + o], sizeof(float)), 0, "t=%u o=%u", t, o);
            double ref = 0.0;
            for (uint32_t i = 0; i < in; i++)
                ref += (double)w[o * in + i] * x[t * in + i];
            cr_assert_leq(fabs(y[t * out + o] - ref), 1e-5);
        }
    free(w);
    free(x);
    free(y);
}

Test(cpu_ops, matmul_row_is_independent_of_batch_and_row_range)
{
    rng_state = 3;
    const uint32_t out = 64, in = 768, T = 9;
    float *w = rnd_vec((size_t)out * in), *x = rnd_vec((size_t)T * in);
    float *all = calloc((size_t)T * out, sizeof(float));
    float *one = calloc(out, sizeof(float));
    pd_cpu_matmul(w, x, all, T, out, in, 0, out, false);
    for (uint32_t t = 0; t < T; t++) {
        memset(one, 0, out * sizeof(float));
        /* Odd row ranges put rows into different tiles than the full call did. */
        pd_cpu_matmul(w, x + (size_t)t * in, one, 1, out, in, 0, 3, false);
        pd_cpu_matmul(w, x + (size_t)t * in, one, 1, out, in, 3, 41, false);
        pd_cpu_matmul(w, x + (size_t)t * in, one, 1, out, in, 41, out, false);
        cr_assert_eq(memcmp(one, all + (size_t)t * out, out * sizeof(float)), 0, "token %u", t);
    }
    free(w);
    free(x);
    free(all);
    free(one);
}

Test(cpu_ops, matmul_accumulate_adds_and_row_range_writes_only_its_rows)
{
    rng_state = 4;
    const uint32_t out = 10, in = 20, T = 2;
    float *w = rnd_vec((size_t)out * in), *x = rnd_vec((size_t)T * in);
    float y[20], base[20];
    for (int i = 0; i < 20; i++)
        y[i] = base[i] = (float)i;
    pd_cpu_matmul(w, x, y, T, out, in, 2, 6, true);
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t o = 0; o < out; o++) {
            float v = y[t * out + o];
            if (o < 2 || o >= 6) {
                cr_assert_eq(v, base[t * out + o]);
            } else {
                float d = pd_cpu_dot(w + o * in, x + t * in, in);
                cr_assert_eq(v, base[t * out + o] + d);
            }
        }
    free(w);
    free(x);
}

Test(cpu_ops, rmsnorm_matches_double_reference)
{
    rng_state = 5;
    const uint32_t dim = 100;
    float *x = rnd_vec(dim), *g = rnd_vec(dim), y[100];
    pd_cpu_rmsnorm(x, g, y, dim, 1e-5f);
    double ss = 0.0;
    for (uint32_t i = 0; i < dim; i++)
        ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / dim + 1e-5);
    for (uint32_t i = 0; i < dim; i++)
        cr_assert_float_eq(y[i], x[i] * scale * g[i], 1e-5, "i=%u", i);
    /* In place gives the same bytes. */
    pd_cpu_rmsnorm(x, g, x, dim, 1e-5f);
    cr_assert_eq(memcmp(x, y, sizeof(y)), 0);
    free(x);
    free(g);
}

Test(cpu_ops, swiglu_matches_double_reference)
{
    rng_state = 6;
    const size_t n = 333;
    float *g = rnd_vec(n), *u = rnd_vec(n), *o = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] *= 8.0f;
    pd_cpu_swiglu(g, u, o, n);
    for (size_t i = 0; i < n; i++) {
        double gd = g[i];
        double ref = gd / (1.0 + exp(-gd)) * u[i];
        cr_assert_float_eq(o[i], ref, 1e-5, "i=%zu", i);
    }
    free(g);
    free(u);
    free(o);
}

Test(cpu_ops, softmax_matches_double_reference_and_sums_to_one)
{
    rng_state = 7;
    const uint32_t n = 50;
    float *x = rnd_vec(n);
    double ref[50], mx = -1e30, sum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        x[i] *= 30.0f; /* large logits: the max subtraction matters */
        mx = x[i] > mx ? x[i] : mx;
    }
    for (uint32_t i = 0; i < n; i++)
        sum += ref[i] = exp(x[i] - mx);
    pd_cpu_softmax(x, n);
    double total = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_float_eq(x[i], ref[i] / sum, 1e-6, "i=%u", i);
        total += x[i];
    }
    cr_assert_float_eq(total, 1.0, 1e-5);
    free(x);
}

Test(cpu_ops, matmul_with_long_rows_split_in_column_blocks_is_still_the_canonical_dot)
{
    rng_state = 8;
    const uint32_t out = 13, in = 2060, T = 9; /* in > 1024 and a tail of 12 columns */
    float *w = rnd_vec((size_t)out * in), *x = rnd_vec((size_t)T * in);
    float *y = calloc((size_t)T * out, sizeof(float));
    pd_cpu_matmul(w, x, y, T, out, in, 0, out, false);
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t o = 0; o < out; o++) {
            float d = pd_cpu_dot(w + (size_t)o * in, x + (size_t)t * in, in);
            cr_assert_eq(memcmp(&d, &y[t * out + o], sizeof(float)), 0, "t=%u o=%u", t, o);
        }
    free(w);
    free(x);
    free(y);
}
