/* The CUDA backend against the CPU backend, on a GPU. Each test initialises CUDA itself
 * (Criterion forks) and skips, naming the reason, when this build has no CUDA or no
 * device answers. Inputs are drawn fresh for every run (the seed is printed with any
 * failure); outputs are poisoned with NaN before each op, so an element the GPU did not
 * write fails the comparison. Thresholds on ||gpu - cpu|| / ||cpu|| per precision: f32
 * 1e-5, f16 weights 3e-3, bf16 weights 1e-2 (activations rounded as the weights are). */
#include "pd/loader.h"
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define B 16

static void skip_without_gpu(void)
{
    char why[200];
    if (pd_cuda_device_count(why, sizeof(why)) == 0)
        cr_skip_test("%s", why);
}

static uint64_t fresh_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
}

static float frand(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*st >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static pd_model_t *make_model(const char *preset, pd_rope_style_t style, uint64_t seed)
{
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset(preset, &c), PD_OK);
    c.rope_style = style;
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, seed);
    return m;
}

static double rel_err(const float *got, const float *ref, size_t n)
{
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            return INFINITY; /* unwritten (poisoned) or NaN: never passes */
        e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static void *dev_from(pd_engine_t *e, const float *host, size_t n)
{
    void *d = NULL;
    cr_assert_eq(pd_engine_buf_alloc(e, n * sizeof(float), &d), PD_OK);
    if (host != NULL)
        cr_assert_eq(pd_engine_copy_from_host(e, d, host, n * sizeof(float)), PD_OK);
    return d;
}

static void *dev_poisoned(pd_engine_t *e, size_t n)
{
    float *nan = malloc(n * sizeof(float));
    cr_assert_not_null(nan);
    for (size_t i = 0; i < n; i++)
        nan[i] = NAN;
    void *d = dev_from(e, nan, n);
    free(nan);
    return d;
}

static float *from_dev(pd_engine_t *e, const void *src, size_t n)
{
    float *h = malloc(n * sizeof(float));
    cr_assert_not_null(h);
    cr_assert_eq(pd_engine_copy_to_host(e, h, src, n * sizeof(float)), PD_OK);
    return h;
}

static float *rand_vec(uint64_t *st, size_t n, float amp)
{
    float *v = malloc(n * sizeof(float));
    cr_assert_not_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = amp * frand(st);
    return v;
}

/* The value a 16-bit type rounds f to (the loaders' conversions), for the references. */
static float round_to(pd_cuda_weights_t wt, float f)
{
    if (wt == PD_CUDA_WEIGHTS_BF16)
        return pd_bf16_to_f32(pd_f32_to_bf16(f));
    if (wt == PD_CUDA_WEIGHTS_F16)
        return pd_f16_to_f32(pd_f32_to_f16(f));
    return f;
}

static void check_matmul(pd_cuda_weights_t wt, bool tiled, double tol)
{
    skip_without_gpu();
    const uint64_t seed = fresh_seed();
    uint64_t st = seed;
    pd_model_t *m = make_model("small", PD_ROPE_HALF, seed);
    const pd_backend_cuda_opts_t o = {wt, tiled};
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create_cuda(m, &o, &e), PD_OK);
    const pd_backend_t *be = pd_engine_backend(e);
    const uint32_t out = m->config.hidden_dim, in = m->config.dim;
    const pd_weight_t wm = pd_weight_at(&m->w.w_gate, 1); /* layer 1, f32 on the host */
    const float *w = pd_weight_f32(&wm);
    float *wr = malloc((size_t)out * in * sizeof(float));
    cr_assert_not_null(wr);
    for (size_t i = 0; i < (size_t)out * in; i++)
        wr[i] = round_to(wt, w[i]);
    const uint32_t ns[3] = {1, 5, 77}; /* decode rows and a prefill chunk */
    for (int k = 0; k < 3; k++) {
        const uint32_t n = ns[k];
        float *x = rand_vec(&st, (size_t)n * in, 1.0f), *xr = malloc((size_t)n * in * 4);
        float *y0 = rand_vec(&st, (size_t)n * out, 1.0f), *ref = malloc((size_t)n * out * 4);
        cr_assert(xr && ref);
        for (size_t i = 0; i < (size_t)n * in; i++)
            xr[i] = tiled ? x[i] : round_to(wt, x[i]);
        /* y = x W^T, then y += x W^T on top of a random y */
        void *dx = dev_from(e, x, (size_t)n * in), *dy = dev_poisoned(e, (size_t)n * out);
        be->ops->matmul(be->ctx, &wm, dx, dy, n, false);
        cr_assert_eq(be->ops->sync(be->ctx), PD_OK);
        float *got = from_dev(e, dy, (size_t)n * out);
        pd_cpu_matmul(wr, xr, ref, n, out, in, 0, out, false);
        double err = rel_err(got, ref, (size_t)n * out);
        cr_assert_lt(err, tol, "n %u: relative error %g (seed %llu)", n, err,
                     (unsigned long long)seed);
        cr_assert_eq(pd_engine_copy_from_host(e, dy, y0, (size_t)n * out * 4), PD_OK);
        be->ops->matmul(be->ctx, &wm, dx, dy, n, true);
        free(got);
        got = from_dev(e, dy, (size_t)n * out);
        memcpy(ref, y0, (size_t)n * out * 4);
        pd_cpu_matmul(wr, xr, ref, n, out, in, 0, out, true);
        err = rel_err(got, ref, (size_t)n * out);
        cr_assert_lt(err, tol, "accumulate n %u: relative error %g (seed %llu)", n, err,
                     (unsigned long long)seed);
        pd_engine_buf_free(e, dx);
        pd_engine_buf_free(e, dy);
        free(x);
        free(xr);
        free(y0);
        free(ref);
        free(got);
    }
    free(wr);
    pd_engine_destroy(&e);
    pd_model_destroy(&m);
}

Test(cuda_ops, matmul_f32_matches_cpu)
{
    check_matmul(PD_CUDA_WEIGHTS_F32, false, 1e-5);
}

Test(cuda_ops, matmul_f16_matches_cpu_on_rounded_operands)
{
    check_matmul(PD_CUDA_WEIGHTS_F16, false, 3e-3);
}

Test(cuda_ops, matmul_bf16_matches_cpu_on_rounded_operands)
{
    check_matmul(PD_CUDA_WEIGHTS_BF16, false, 1e-2);
}

Test(cuda_ops, matmul_tiled_kernel_matches_cpu)
{
    check_matmul(PD_CUDA_WEIGHTS_F32, true, 1e-5);
}

Test(cuda_ops, rmsnorm_and_swiglu_match_cpu)
{
    skip_without_gpu();
    const uint64_t seed = fresh_seed();
    uint64_t st = seed;
    pd_model_t *m = make_model("small", PD_ROPE_HALF, seed);
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CUDA, 1, &e), PD_OK);
    const pd_backend_t *be = pd_engine_backend(e);
    const uint32_t n = 19, dim = m->config.dim;
    /* norms of a random model are 1: give the layer-0 norm random values first */
    for (uint32_t i = 0; i < dim; i++)
        m->w.attn_norm[i] = 1.0f + 0.5f * frand(&st);
    pd_engine_destroy(&e);
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CUDA, 1, &e), PD_OK);
    be = pd_engine_backend(e);
    float *x = rand_vec(&st, (size_t)n * dim, 3.0f), *ref = malloc((size_t)n * dim * 4);
    cr_assert_not_null(ref);
    void *dx = dev_from(e, x, (size_t)n * dim), *dy = dev_poisoned(e, (size_t)n * dim);
    be->ops->rmsnorm(be->ctx, dx, m->w.attn_norm, dy, n, dim, m->config.rms_eps);
    float *got = from_dev(e, dy, (size_t)n * dim);
    for (uint32_t r = 0; r < n; r++)
        pd_cpu_rmsnorm(x + (size_t)r * dim, m->w.attn_norm, ref + (size_t)r * dim, dim,
                       m->config.rms_eps);
    double err = rel_err(got, ref, (size_t)n * dim);
    cr_assert_lt(err, 1e-6, "rmsnorm relative error %g (seed %llu)", err, (unsigned long long)seed);
    free(got);
    const size_t sn = 100003; /* not a multiple of any block size */
    float *g = rand_vec(&st, sn, 8.0f), *u = rand_vec(&st, sn, 2.0f), *sref = malloc(sn * 4);
    cr_assert_not_null(sref);
    void *dg = dev_from(e, g, sn), *du = dev_from(e, u, sn), *dout = dev_poisoned(e, sn);
    be->ops->swiglu(be->ctx, dg, du, dout, sn);
    got = from_dev(e, dout, sn);
    pd_cpu_swiglu(g, u, sref, sn);
    err = rel_err(got, sref, sn);
    cr_assert_lt(err, 1e-6, "swiglu relative error %g (seed %llu)", err, (unsigned long long)seed);
    free(got);
    pd_engine_buf_free(e, dx);
    pd_engine_buf_free(e, dy);
    pd_engine_buf_free(e, dg);
    pd_engine_buf_free(e, du);
    pd_engine_buf_free(e, dout);
    free(x);
    free(ref);
    free(g);
    free(u);
    free(sref);
    pd_engine_destroy(&e);
    pd_model_destroy(&m);
}

/* Rows of 3 sequences: a long prefill chunk after a prefix, and two decode rows. */
static void check_rope_and_attention(const char *preset)
{
    skip_without_gpu();
    const uint64_t seed = fresh_seed();
    uint64_t st = seed;
    pd_model_t *m = make_model(preset, PD_ROPE_PAIR, seed);
    const pd_model_config_t *c = &m->config;
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CUDA, 1, &e), PD_OK);
    const pd_backend_t *be = pd_engine_backend(e);
    const uint32_t hd = c->head_dim, nh = c->n_heads, kvh = c->n_kv_heads;
    const uint32_t qd = nh * hd, kvd = kvh * hd;
    /* (pos, n_tokens): across chunk boundaries where the context allows */
    const bool small_ctx = c->max_seq_len < 700;
    const uint32_t shape[3][2] = {{small_ctx ? 150 : 300, 40}, {0, 1}, {small_ctx ? 250 : 600, 1}};
    pd_kv_layout_t l = {1, kvh, hd, B, 0};
    uint32_t tables[3][64], next = 0, n = 0;
    pd_attn_seq_t seqs[3];
    for (int s = 0; s < 3; s++) {
        const uint32_t need = (shape[s][0] + shape[s][1] + B - 1) / B;
        for (uint32_t b = 0; b < need; b++)
            tables[s][b] = next + (b * 5 + 3) % need;
        next += need;
        seqs[s] = (pd_attn_seq_t){n, shape[s][1], shape[s][0], tables[s]};
        n += shape[s][1];
    }
    l.n_blocks = next;
    const size_t pool_n = pd_kv_pool_bytes(&l) / 4;
    float *pool = rand_vec(&st, pool_n, 1.0f);
    float *q = rand_vec(&st, (size_t)n * qd, 1.0f), *k = rand_vec(&st, (size_t)n * kvd, 1.0f);
    float *v = rand_vec(&st, (size_t)n * kvd, 1.0f);
    int32_t *ids = calloc(n, sizeof(int32_t));
    uint32_t *pos = malloc(n * 4);
    size_t *kv_off = malloc(n * sizeof(size_t));
    cr_assert(ids && pos && kv_off);
    for (int s = 0; s < 3; s++)
        for (uint32_t t = 0; t < seqs[s].n_tokens; t++) {
            const uint32_t p = seqs[s].pos + t, r = seqs[s].first_row + t;
            pos[r] = p;
            kv_off[r] =
                tables[s][p / B] * (pd_kv_block_layer_bytes(&l) / 4) + (size_t)(p % B) * kvd;
        }
    void *dpool = dev_from(e, pool, pool_n), *dq = dev_from(e, q, (size_t)n * qd);
    void *dk = dev_from(e, k, (size_t)n * kvd), *dv = dev_from(e, v, (size_t)n * kvd);
    void *dout = dev_poisoned(e, (size_t)n * qd);
    float *cs = malloc((size_t)c->max_seq_len * hd * 4);
    cr_assert_not_null(cs);
    pd_cpu_rope_table(cs, c->max_seq_len, hd, c->rope_theta, &c->rope_scaling);
    cr_assert_eq(be->ops->step_begin(be->ctx, ids, pos, kv_off, n, seqs, 3, &l, nh), PD_OK);
    /* the engine's table is what the backend bound; cs here is only the CPU's copy */
    be->ops->rope_store(be->ctx, dq, dk, dv, pos, kv_off, n, cs, c, &l, dpool);
    be->ops->attention(be->ctx, dq, dpool, &l, seqs, 3, nh, dout);
    cr_assert_eq(be->ops->sync(be->ctx), PD_OK);
    /* the CPU does the same on its copies */
    for (uint32_t r = 0; r < n; r++) {
        const float *row = cs + (size_t)pos[r] * hd;
        pd_cpu_rope(q + (size_t)r * qd, nh, hd, row, c->rope_style);
        pd_cpu_rope(k + (size_t)r * kvd, kvh, hd, row, c->rope_style);
        memcpy(pool + kv_off[r], k + (size_t)r * kvd, kvd * 4);
        memcpy(pool + kv_off[r] + (size_t)B * kvd, v + (size_t)r * kvd, kvd * 4);
    }
    float *gq = from_dev(e, dq, (size_t)n * qd), *gpool = from_dev(e, dpool, pool_n);
    /* RoPE and the append are the CPU's operations in the CPU's order: equal bits */
    cr_assert_eq(memcmp(gq, q, (size_t)n * qd * 4), 0, "rotated q differs (seed %llu)",
                 (unsigned long long)seed);
    cr_assert_eq(memcmp(gpool, pool, pool_n * 4), 0, "pool differs (seed %llu)",
                 (unsigned long long)seed);
    float *ref = malloc((size_t)n * qd * 4), *scores = malloc((size_t)c->max_seq_len * 4);
    cr_assert(ref && scores);
    for (int s = 0; s < 3; s++)
        for (uint32_t t = 0; t < seqs[s].n_tokens; t++) {
            const uint32_t r = seqs[s].first_row + t;
            for (uint32_t h = 0; h < nh; h++)
                pd_cpu_attention_head(q + ((size_t)r * nh + h) * hd, pool, &l, tables[s],
                                      seqs[s].pos + t + 1, h / (nh / kvh),
                                      ref + ((size_t)r * nh + h) * hd, scores);
        }
    float *got = from_dev(e, dout, (size_t)n * qd);
    const double err = rel_err(got, ref, (size_t)n * qd);
    cr_assert_lt(err, 1e-5, "attention relative error %g (seed %llu)", err,
                 (unsigned long long)seed);
    pd_engine_buf_free(e, dpool);
    pd_engine_buf_free(e, dq);
    pd_engine_buf_free(e, dk);
    pd_engine_buf_free(e, dv);
    pd_engine_buf_free(e, dout);
    free(pool);
    free(q);
    free(k);
    free(v);
    free(ids);
    free(pos);
    free(kv_off);
    free(cs);
    free(gq);
    free(gpool);
    free(ref);
    free(scores);
    free(got);
    pd_engine_destroy(&e);
    pd_model_destroy(&m);
}

Test(cuda_ops, rope_append_and_attention_match_cpu_head_dim_16)
{
    check_rope_and_attention("tiny");
}

Test(cuda_ops, rope_append_and_attention_match_cpu_head_dim_32)
{
    check_rope_and_attention("small");
}

Test(cuda_ops, rope_append_and_attention_match_cpu_head_dim_64)
{
    check_rope_and_attention("m50");
}

/* Greedy tokens of prompt p (n_prompt tokens) for n_new steps on engine e. */
static void greedy(pd_engine_t *e, const pd_model_t *m, const int32_t *prompt, uint32_t n_prompt,
                   uint32_t n_new, int32_t *out)
{
    const uint32_t vocab = m->config.vocab_size, n_blocks = (n_prompt + n_new + B - 1) / B;
    pd_kv_layout_t l = {m->config.n_layers, m->config.n_kv_heads, m->config.head_dim, B, n_blocks};
    void *pool = NULL;
    cr_assert_eq(pd_engine_buf_alloc(e, pd_kv_pool_bytes(&l), &pool), PD_OK);
    uint32_t table[64];
    for (uint32_t i = 0; i < n_blocks; i++)
        table[i] = i;
    float *logits = malloc(vocab * sizeof(float));
    cr_assert_not_null(logits);
    int32_t tok[512];
    memcpy(tok, prompt, n_prompt * sizeof(int32_t));
    uint32_t pos = 0, n = n_prompt;
    for (uint32_t i = 0; i < n_new; i++) {
        pd_fwd_seq_t s = {tok + pos, n, pos, table, n_blocks, logits};
        cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_OK);
        uint32_t best = 0;
        for (uint32_t j = 1; j < vocab; j++)
            best = logits[j] > logits[best] ? j : best;
        out[i] = (int32_t)best;
        pos += n;
        tok[pos] = (int32_t)best;
        n = 1;
    }
    free(logits);
    pd_engine_buf_free(e, pool);
}

Test(cuda_forward, greedy_tokens_equal_the_cpu_for_8_prompts_of_32_tokens)
{
    skip_without_gpu();
    /* llama2.c's convention (interleaved RoPE pairs), f32 weights */
    pd_model_t *m = make_model("small", PD_ROPE_PAIR, 1);
    pd_engine_t *cpu = NULL, *gpu = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &cpu), PD_OK);
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CUDA, 1, &gpu), PD_OK);
    const uint64_t seed = fresh_seed();
    uint64_t st = seed;
    for (int p = 0; p < 8; p++) {
        const uint32_t n_prompt = 5 + 37 * (uint32_t)p; /* 5 .. 264 tokens */
        int32_t prompt[300], a[32], b[32];
        prompt[0] = 1;
        for (uint32_t i = 1; i < n_prompt; i++)
            prompt[i] = 3 + (int32_t)((frand(&st) + 1.0f) * 127.9f);
        greedy(cpu, m, prompt, n_prompt, 32, a);
        greedy(gpu, m, prompt, n_prompt, 32, b);
        cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "prompt %d (%u tokens): tokens differ (seed %llu)",
                     p, n_prompt, (unsigned long long)seed);
    }
    pd_engine_destroy(&cpu);
    pd_engine_destroy(&gpu);
    pd_model_destroy(&m);
}

/* Logits of sequence 1 (decode at position 700 after a chunked prefill) alone and in a
 * batch with a prefill chunk and another decode row, on the GPU: equal bits. */
static void check_batch_invariance(pd_cuda_weights_t wt)
{
    skip_without_gpu();
    pd_model_t *m = make_model("small", PD_ROPE_HALF, 3);
    const pd_backend_cuda_opts_t o = {wt, false};
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create_cuda(m, &o, &e), PD_OK);
    const uint32_t vocab = m->config.vocab_size;
    pd_kv_layout_t l = {m->config.n_layers, m->config.n_kv_heads, m->config.head_dim, B, 160};
    void *pool_a = NULL, *pool_b = NULL;
    cr_assert_eq(pd_engine_buf_alloc(e, pd_kv_pool_bytes(&l), &pool_a), PD_OK);
    cr_assert_eq(pd_engine_buf_alloc(e, pd_kv_pool_bytes(&l), &pool_b), PD_OK);
    int32_t tok[701];
    for (int i = 0; i < 701; i++)
        tok[i] = (int32_t)((i * 131 + 7) % 259);
    uint32_t t0[48], t1[48], t2[48];
    for (uint32_t i = 0; i < 48; i++) {
        t0[i] = i;
        t1[i] = 48 + i;
        t2[i] = 96 + i;
    }
    float *la = malloc(vocab * 4), *lb = malloc(vocab * 4), *lx = malloc(vocab * 4);
    cr_assert(la && lb && lx);
    /* A: the whole prompt in one step, then one decode step alone */
    pd_fwd_seq_t s = {tok, 700, 0, t0, 48, NULL};
    cr_assert_eq(pd_engine_forward(e, pool_a, &l, &s, 1, NULL, NULL), PD_OK);
    s = (pd_fwd_seq_t){tok + 700, 1, 700, t0, 48, la};
    cr_assert_eq(pd_engine_forward(e, pool_a, &l, &s, 1, NULL, NULL), PD_OK);
    /* B: the prompt in chunks of 300, 300 and 100 (each batched with other work), then the
     * decode step batched with a prefill chunk and another decode row */
    for (uint32_t c0 = 0; c0 < 700; c0 += 300) {
        const uint32_t nc = 700 - c0 < 300 ? 700 - c0 : 300;
        pd_fwd_seq_t b[2] = {{tok + 3, 64, 0, t2, 48, NULL}, {tok + c0, nc, c0, t1, 48, NULL}};
        cr_assert_eq(pd_engine_forward(e, pool_b, &l, b, 2, NULL, NULL), PD_OK);
    }
    pd_fwd_seq_t b[3] = {
        {tok, 129, 0, t2, 48, lx}, {tok + 700, 1, 700, t1, 48, lb}, {tok + 5, 1, 64, t0, 48, lx}};
    cr_assert_eq(pd_engine_forward(e, pool_b, &l, b, 3, NULL, NULL), PD_OK);
    cr_assert_eq(memcmp(la, lb, vocab * 4), 0, "batched/chunked logits differ from alone/whole");
    pd_engine_buf_free(e, pool_a);
    pd_engine_buf_free(e, pool_b);
    free(la);
    free(lb);
    free(lx);
    pd_engine_destroy(&e);
    pd_model_destroy(&m);
}

Test(cuda_forward, batched_and_chunked_equal_alone_and_whole_bitwise_f32)
{
    check_batch_invariance(PD_CUDA_WEIGHTS_F32);
}

Test(cuda_forward, batched_and_chunked_equal_alone_and_whole_bitwise_bf16)
{
    check_batch_invariance(PD_CUDA_WEIGHTS_BF16);
}

Test(cuda_forward, bf16_weights_stay_close_to_the_cpu)
{
    skip_without_gpu();
    pd_model_t *m = make_model("small", PD_ROPE_HALF, 5);
    pd_engine_t *cpu = NULL, *gpu = NULL;
    const pd_backend_cuda_opts_t o = {PD_CUDA_WEIGHTS_BF16, false};
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &cpu), PD_OK);
    cr_assert_eq(pd_engine_create_cuda(m, &o, &gpu), PD_OK);
    const uint32_t vocab = m->config.vocab_size;
    pd_kv_layout_t l = {m->config.n_layers, m->config.n_kv_heads, m->config.head_dim, B, 8};
    void *pc = NULL, *pg = NULL;
    cr_assert_eq(pd_engine_buf_alloc(cpu, pd_kv_pool_bytes(&l), &pc), PD_OK);
    cr_assert_eq(pd_engine_buf_alloc(gpu, pd_kv_pool_bytes(&l), &pg), PD_OK);
    int32_t tok[100];
    for (int i = 0; i < 100; i++)
        tok[i] = (int32_t)((i * 37 + 11) % 259);
    uint32_t table[8] = {7, 6, 5, 4, 3, 2, 1, 0};
    float *a = malloc(vocab * 4), *b = malloc(vocab * 4);
    cr_assert(a && b);
    pd_fwd_seq_t s = {tok, 100, 0, table, 8, a};
    cr_assert_eq(pd_engine_forward(cpu, pc, &l, &s, 1, NULL, NULL), PD_OK);
    s.logits = b;
    cr_assert_eq(pd_engine_forward(gpu, pg, &l, &s, 1, NULL, NULL), PD_OK);
    /* bf16 operands through 4 layers: METHOD's bf16 band, not f32's */
    const double err = rel_err(b, a, vocab);
    cr_assert_lt(err, 3e-2, "bf16 logits relative error %g", err);
    free(a);
    free(b);
    pd_engine_buf_free(cpu, pc);
    pd_engine_buf_free(gpu, pg);
    pd_engine_destroy(&cpu);
    pd_engine_destroy(&gpu);
    pd_model_destroy(&m);
}

Test(cuda_backend, a_build_or_machine_without_a_device_answers_plainly)
{
    /* Runs everywhere: with no device the slot says why; with one, it names none. */
    char why[200] = "x";
    const int n = pd_cuda_device_count(why, sizeof(why));
    if (n == 0) {
        cr_assert_neq(why[0], '\0');
        pd_model_t *m = make_model("tiny", PD_ROPE_HALF, 1);
        pd_engine_t *e = NULL;
        const pd_status_t st = pd_engine_create(m, PD_BACKEND_CUDA, 1, &e);
        cr_assert(st == PD_ERR_UNSUPPORTED || st == PD_ERR_NOT_FOUND, "%s", pd_status_name(st));
        cr_assert_null(e);
        pd_model_destroy(&m);
    } else {
        cr_assert_eq(why[0], '\0');
    }
}
