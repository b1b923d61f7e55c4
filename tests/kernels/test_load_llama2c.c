/* A model written as a llama2.c checkpoint (interleaved-pair RoPE) computes what the same
 * model computes as a Hugging Face checkpoint (rotate-half RoPE) once the q and k rows of
 * every head are permuted from halves to pairs: this checks the llama2.c loader's tensor
 * order and both RoPE styles end to end. */
#include "pd/loader.h"
#include "pd/model.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(FILE *f, const float *x, size_t n)
{
    cr_assert_eq(fwrite(x, sizeof(float), n, f), n);
}

/* Rows of one layer's (n_heads * hd, dim) projection, reordered from rotate-half to
 * interleaved pairs: new row 2i + c of a head is old row c * hd / 2 + i. */
static void put_permuted(FILE *f, const float *w, uint32_t n_heads, uint32_t hd, uint32_t dim,
                         bool permute)
{
    if (!permute) {
        put(f, w, (size_t)n_heads * hd * dim);
        return;
    }
    for (uint32_t h = 0; h < n_heads; h++) {
        for (uint32_t j = 0; j < hd; j++) {
            uint32_t i = j / 2, c = j % 2;
            put(f, w + ((size_t)h * hd + c * hd / 2 + i) * dim, dim);
        }
    }
}

static void write_llama2c(const pd_model_t *m, const char *path, bool permute)
{
    const pd_model_config_t *c = &m->config;
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    int32_t hdr[7] = {(int32_t)c->dim,        (int32_t)c->hidden_dim, (int32_t)c->n_layers,
                      (int32_t)c->n_heads,    (int32_t)c->n_kv_heads, -(int32_t)c->vocab_size,
                      (int32_t)c->max_seq_len};
    cr_assert_eq(fwrite(hdr, sizeof(hdr), 1, f), 1);
    size_t d = c->dim, h = c->hidden_dim, L = c->n_layers, hd = c->head_dim;
    size_t q = c->n_heads * hd, kv = c->n_kv_heads * hd;
    put(f, pd_weight_f32(&m->w.tok_embed), c->vocab_size * d);
    put(f, m->w.attn_norm, L * d);
    for (size_t l = 0; l < L; l++)
        put_permuted(f, pd_weight_f32(&m->w.wq) + l * q * d, c->n_heads, c->head_dim, c->dim,
                     permute);
    for (size_t l = 0; l < L; l++)
        put_permuted(f, pd_weight_f32(&m->w.wk) + l * kv * d, c->n_kv_heads, c->head_dim, c->dim,
                     permute);
    put(f, pd_weight_f32(&m->w.wv), L * kv * d);
    put(f, pd_weight_f32(&m->w.wo), L * d * q);
    put(f, m->w.ffn_norm, L * d);
    put(f, pd_weight_f32(&m->w.w_gate), L * h * d);
    put(f, pd_weight_f32(&m->w.w_down), L * d * h);
    put(f, pd_weight_f32(&m->w.w_up), L * h * d);
    put(f, m->w.final_norm, d);
    float *freq = calloc((size_t)c->max_seq_len * hd, sizeof(float));
    put(f, freq, (size_t)c->max_seq_len * hd);
    free(freq);
    put(f, pd_weight_f32(&m->w.lm_head), c->vocab_size * d);
    fclose(f);
}

/* Logits of the last token after prefilling tokens[0..n_prefill) and then feeding the
 * rest one at a time; out: (n_steps, vocab). */
static void run(const pd_model_t *m, const int32_t *tokens, uint32_t n_prefill, uint32_t n,
                float *out)
{
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 1, &e), PD_OK);
    const pd_model_config_t *c = &m->config;
    pd_kv_layout_t layout = {c->n_layers, c->n_kv_heads, c->head_dim, 16, 2};
    float *kv = calloc(1, pd_kv_pool_bytes(&layout));
    uint32_t table[2] = {0, 1};
    uint32_t pos = 0, step = 0;
    while (pos < n) {
        uint32_t len = pos == 0 ? n_prefill : 1;
        pd_fwd_seq_t s = {tokens + pos, len, pos, table, 2, out + (size_t)step * c->vocab_size};
        cr_assert_eq(pd_engine_forward(e, kv, &layout, &s, 1, NULL, NULL), PD_OK);
        pos += len;
        step++;
    }
    free(kv);
    pd_engine_destroy(&e);
}

Test(load_llama2c, pair_checkpoint_computes_what_the_half_one_does)
{
    pd_model_config_t c;
    pd_model_t *half = NULL, *pair = NULL;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    cr_assert_eq(pd_model_alloc(&c, &half), PD_OK);
    pd_model_init_random(half, 11);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/tmp/pd_test_l2c_%d.bin", (int)getpid());
    write_llama2c(half, path, true);
    cr_assert_eq(pd_model_load(path, &pair), PD_OK);
    cr_assert_eq(pair->config.rope_style, PD_ROPE_PAIR);
    cr_assert_not(pair->config.tie_embeddings);

    const int32_t tokens[] = {1, 40, 77, 3, 200, 9, 150, 42, 8, 100};
    const uint32_t n = 10, n_prefill = 6, n_steps = 1 + (n - n_prefill);
    size_t V = c.vocab_size;
    float *a = malloc(n_steps * V * sizeof(float)), *b = malloc(n_steps * V * sizeof(float));
    run(half, tokens, n_prefill, n, a);
    run(pair, tokens, n_prefill, n, b);
    for (size_t s = 0; s < n_steps; s++) {
        size_t arg_a = 0, arg_b = 0;
        float max_abs = 0;
        for (size_t v = 0; v < V; v++) {
            float x = a[s * V + v], y = b[s * V + v];
            cr_assert(isfinite(x) && isfinite(y));
            cr_assert_float_eq(x, y, 1e-3f + 1e-3f * fabsf(x), "step %zu logit %zu: %g vs %g", s, v,
                               x, y);
            if (fabsf(x) > max_abs)
                max_abs = fabsf(x);
            if (x > a[s * V + arg_a])
                arg_a = v;
            if (y > b[s * V + arg_b])
                arg_b = v;
        }
        cr_assert_gt(max_abs, 0.0f);
        cr_assert_eq(arg_a, arg_b, "step %zu", s);
    }
    /* Without the permutation the pair model computes something else: the check above
     * can fail. */
    pd_model_destroy(&pair);
    write_llama2c(half, path, false);
    cr_assert_eq(pd_model_load(path, &pair), PD_OK);
    run(pair, tokens, n_prefill, n, b);
    float max_diff = 0;
    for (size_t i = 0; i < n_steps * V; i++)
        max_diff = fmaxf(max_diff, fabsf(a[i] - b[i]));
    cr_assert_gt(max_diff, 1e-2f);
    free(a);
    free(b);
    pd_model_destroy(&half);
    pd_model_destroy(&pair);
    unlink(path);
}

/* A llama2.c file reordered to rotate-half rows holds exactly the Hugging Face model it was
 * written from (the permutation is undone row for row), in f32 and after conversion to
 * int8 (row scales move with their rows). */
Test(load_llama2c, rope_to_half_restores_the_half_rows)
{
    pd_model_config_t c;
    pd_model_t *half = NULL, *pair = NULL, *half8 = NULL, *pair8 = NULL;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    cr_assert_eq(pd_model_alloc(&c, &half), PD_OK);
    pd_model_init_random(half, 12);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/tmp/pd_test_l2c_half_%d.bin", (int)getpid());
    write_llama2c(half, path, true);
    cr_assert_eq(pd_model_load(path, &pair), PD_OK);
    unlink(path);
    cr_assert_eq(pd_model_convert(pair, PD_DTYPE_I8, &pair8), PD_OK);
    cr_assert_eq(pd_model_convert(half, PD_DTYPE_I8, &half8), PD_OK);
    size_t q = (size_t)c.n_layers * c.n_heads * c.head_dim * c.dim;
    size_t k = (size_t)c.n_layers * c.n_kv_heads * c.head_dim * c.dim;
    /* the file's rows differ from the half model's before */
    cr_assert_neq(memcmp(pair->w.wq.data, half->w.wq.data, q * sizeof(float)), 0);
    cr_assert_eq(pd_model_rope_to_half(pair), PD_OK);
    cr_assert_eq(pair->config.rope_style, PD_ROPE_HALF);
    cr_assert_eq(memcmp(pair->w.wq.data, half->w.wq.data, q * sizeof(float)), 0);
    cr_assert_eq(memcmp(pair->w.wk.data, half->w.wk.data, k * sizeof(float)), 0);
    cr_assert_eq(pd_model_rope_to_half(pair8), PD_OK);
    cr_assert_eq(memcmp(pair8->w.wq.data, half8->w.wq.data, q), 0);
    cr_assert_eq(memcmp(pair8->w.wk.data, half8->w.wk.data, k), 0);
    cr_assert_eq(memcmp(pair8->w.wq.scale, half8->w.wq.scale,
                        (size_t)c.n_layers * c.n_heads * c.head_dim * sizeof(float)),
                 0);
    cr_assert_eq(memcmp(pair8->w.wk.scale, half8->w.wk.scale,
                        (size_t)c.n_layers * c.n_kv_heads * c.head_dim * sizeof(float)),
                 0);
    /* a second call leaves a half model alone */
    cr_assert_eq(pd_model_rope_to_half(pair), PD_OK);
    cr_assert_eq(memcmp(pair->w.wq.data, half->w.wq.data, q * sizeof(float)), 0);
    pd_model_destroy(&half);
    pd_model_destroy(&pair);
    pd_model_destroy(&half8);
    pd_model_destroy(&pair8);
}
