/* The forward pass: against a double-precision reference without a cache, decode with the
 * paged cache against a full recompute, and the bitwise batch and thread independence. */
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define B 4 /* small blocks so that short prompts cross many of them */

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

/* The same model with its matrices in dtype. */
static pd_model_t *make_model_as(const char *preset, pd_rope_style_t style, uint64_t seed,
                                 pd_dtype_t dtype)
{
    pd_model_t *m = make_model(preset, style, seed), *c = NULL;
    if (dtype == PD_DTYPE_F32)
        return m;
    cr_assert_eq(pd_model_convert(m, dtype, &c), PD_OK);
    cr_assert_eq(pd_model_dtype(c), (int)dtype);
    pd_model_destroy(&m);
    return c;
}

static const pd_dtype_t all_dtypes[] = {PD_DTYPE_F32, PD_DTYPE_F16, PD_DTYPE_BF16, PD_DTYPE_I8};

static pd_kv_layout_t layout_for(const pd_model_t *m, uint32_t n_blocks)
{
    pd_kv_layout_t l = {m->config.n_layers, m->config.n_kv_heads, m->config.head_dim, B, n_blocks};
    return l;
}

static float *new_pool(const pd_kv_layout_t *l)
{
    float *p = calloc(pd_kv_pool_bytes(l), 1);
    cr_assert_not_null(p);
    return p;
}

static void tokens_for(int32_t *t, uint32_t n, uint32_t salt)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (int32_t)((i * 131u + salt * 17u + 5u) % 259u);
}

/* Frequency i of RoPE as transformers computes it: base^(-2i/dim), then for rope_type
 * "llama3" (_compute_llama3_parameters) low-frequency wavelengths divided by the factor,
 * high ones kept, the band between smoothed. Written from the reference, not from pdkv. */
static double ref_inv_freq(const pd_model_config_t *c, uint32_t i)
{
    double inv_freq = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
    const pd_rope_scaling_t *r = &c->rope_scaling;
    if (r->factor == 0.0f)
        return inv_freq;
    double factor = r->factor, low = r->low_freq_factor, high = r->high_freq_factor;
    double old_context_len = r->original_max_position;
    double low_freq_wavelen = old_context_len / low, high_freq_wavelen = old_context_len / high;
    double wavelen = 2 * M_PI / inv_freq;
    double inv_freq_llama = wavelen > low_freq_wavelen ? inv_freq / factor : inv_freq;
    double smooth_factor = (old_context_len / wavelen - low) / (high - low);
    double smoothed =
        (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
    bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    return is_medium ? smoothed : inv_freq_llama;
}

/* Plain double-precision forward over the whole sequence, no cache: logits of the last.
 * Qwen2's q/k/v biases and Qwen3's per-head q/k norms when the model has them. */
static void ref_forward(const pd_model_t *m, const int32_t *tok, uint32_t n, double *logits)
{
    const pd_model_config_t *c = &m->config;
    /* Every matrix widened to f32 (exact for every dtype: what the weights hold). */
    pd_model_t *f = NULL;
    cr_assert_eq(pd_model_convert(m, PD_DTYPE_F32, &f), PD_OK);
    const pd_model_weights_t *w = &f->w;
    const float *tok_embed = pd_weight_f32(&w->tok_embed), *lm_head = pd_weight_f32(&w->lm_head);
    const float *wq = pd_weight_f32(&w->wq), *wk = pd_weight_f32(&w->wk);
    const float *wv = pd_weight_f32(&w->wv), *wo = pd_weight_f32(&w->wo);
    const float *w_gate = pd_weight_f32(&w->w_gate), *w_up = pd_weight_f32(&w->w_up);
    const float *w_down = pd_weight_f32(&w->w_down);
    uint32_t D = c->dim, H = c->hidden_dim, NH = c->n_heads, KV = c->n_kv_heads;
    uint32_t HD = c->head_dim, QD = NH * HD, KD = KV * HD;
    double *x = calloc((size_t)n * D, sizeof(double)), *xn = calloc(D, sizeof(double));
    double *q = calloc((size_t)n * QD, sizeof(double)), *k = calloc((size_t)n * KD, 8);
    double *v = calloc((size_t)n * KD, 8), *att = calloc((size_t)n * QD, 8);
    double *hb = calloc(H, 8), *sc = calloc(n, 8);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < D; i++)
            x[t * D + i] = tok_embed[(size_t)tok[t] * D + i];
    for (uint32_t l = 0; l < c->n_layers; l++) {
        for (uint32_t t = 0; t < n; t++) {
            double ss = 0;
            for (uint32_t i = 0; i < D; i++)
                ss += x[t * D + i] * x[t * D + i];
            double s = 1.0 / sqrt(ss / D + c->rms_eps);
            for (uint32_t i = 0; i < D; i++)
                xn[i] = x[t * D + i] * s * w->attn_norm[l * D + i];
            for (uint32_t o = 0; o < QD; o++) {
                double a = 0;
                for (uint32_t i = 0; i < D; i++)
                    a += wq[((size_t)l * QD + o) * D + i] * xn[i];
                q[t * QD + o] = a;
            }
            for (uint32_t o = 0; o < KD; o++) {
                double a = 0, b = 0;
                for (uint32_t i = 0; i < D; i++) {
                    a += wk[((size_t)l * KD + o) * D + i] * xn[i];
                    b += wv[((size_t)l * KD + o) * D + i] * xn[i];
                }
                k[t * KD + o] = a;
                v[t * KD + o] = b;
            }
            if (w->bq != NULL) {
                for (uint32_t o = 0; o < QD; o++)
                    q[t * QD + o] += w->bq[(size_t)l * QD + o];
                for (uint32_t o = 0; o < KD; o++) {
                    k[t * KD + o] += w->bk[(size_t)l * KD + o];
                    v[t * KD + o] += w->bv[(size_t)l * KD + o];
                }
            }
            if (w->q_norm != NULL) {
                for (uint32_t h = 0; h < NH + KV; h++) {
                    double *vec = h < NH ? q + t * QD + h * HD : k + t * KD + (h - NH) * HD;
                    const float *nw = (h < NH ? w->q_norm : w->k_norm) + (size_t)l * HD;
                    double hs = 0;
                    for (uint32_t i = 0; i < HD; i++)
                        hs += vec[i] * vec[i];
                    double r = 1.0 / sqrt(hs / HD + c->rms_eps);
                    for (uint32_t i = 0; i < HD; i++)
                        vec[i] = vec[i] * r * nw[i];
                }
            }
            /* RoPE on every head of q and k at position t. */
            for (uint32_t h = 0; h < NH + KV; h++) {
                double *vec = h < NH ? q + t * QD + h * HD : k + t * KD + (h - NH) * HD;
                for (uint32_t i = 0; i < HD / 2; i++) {
                    double ang = t * ref_inv_freq(c, i);
                    uint32_t i0 = c->rope_style == PD_ROPE_PAIR ? 2 * i : i;
                    uint32_t i1 = c->rope_style == PD_ROPE_PAIR ? 2 * i + 1 : i + HD / 2;
                    double a = vec[i0], b = vec[i1];
                    vec[i0] = a * cos(ang) - b * sin(ang);
                    vec[i1] = a * sin(ang) + b * cos(ang);
                }
            }
        }
        for (uint32_t t = 0; t < n; t++)
            for (uint32_t h = 0; h < NH; h++) {
                uint32_t g = h / (NH / KV);
                double mx = -1e300, sum = 0;
                for (uint32_t j = 0; j <= t; j++) {
                    double d = 0;
                    for (uint32_t i = 0; i < HD; i++)
                        d += q[t * QD + h * HD + i] * k[j * KD + g * HD + i];
                    sc[j] = d / sqrt((double)HD);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (uint32_t j = 0; j <= t; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (uint32_t i = 0; i < HD; i++) {
                    double a = 0;
                    for (uint32_t j = 0; j <= t; j++)
                        a += sc[j] / sum * v[j * KD + g * HD + i];
                    att[t * QD + h * HD + i] = a;
                }
            }
        for (uint32_t t = 0; t < n; t++) {
            for (uint32_t o = 0; o < D; o++) {
                double a = 0;
                for (uint32_t i = 0; i < QD; i++)
                    a += wo[((size_t)l * D + o) * QD + i] * att[t * QD + i];
                x[t * D + o] += a;
            }
            double ss = 0;
            for (uint32_t i = 0; i < D; i++)
                ss += x[t * D + i] * x[t * D + i];
            double s = 1.0 / sqrt(ss / D + c->rms_eps);
            for (uint32_t i = 0; i < D; i++)
                xn[i] = x[t * D + i] * s * w->ffn_norm[l * D + i];
            for (uint32_t o = 0; o < H; o++) {
                double g = 0, u = 0;
                for (uint32_t i = 0; i < D; i++) {
                    g += w_gate[((size_t)l * H + o) * D + i] * xn[i];
                    u += w_up[((size_t)l * H + o) * D + i] * xn[i];
                }
                hb[o] = g / (1.0 + exp(-g)) * u;
            }
            for (uint32_t o = 0; o < D; o++) {
                double a = 0;
                for (uint32_t i = 0; i < H; i++)
                    a += w_down[((size_t)l * D + o) * H + i] * hb[i];
                x[t * D + o] += a;
            }
        }
    }
    double ss = 0;
    const double *last = x + (size_t)(n - 1) * D;
    for (uint32_t i = 0; i < D; i++)
        ss += last[i] * last[i];
    double s = 1.0 / sqrt(ss / D + c->rms_eps);
    for (uint32_t i = 0; i < D; i++)
        xn[i] = last[i] * s * w->final_norm[i];
    for (uint32_t o = 0; o < c->vocab_size; o++) {
        double a = 0;
        for (uint32_t i = 0; i < D; i++)
            a += lm_head[(size_t)o * D + i] * xn[i];
        logits[o] = a;
    }
    free(x);
    free(xn);
    free(q);
    free(k);
    free(v);
    free(att);
    free(hb);
    free(sc);
    pd_model_destroy(&f);
}

/* Prefill tokens (n) into a fresh pool through table; logits of the last token. */
static pd_status_t prefill(pd_engine_t *e, const pd_model_t *m, const uint32_t *table,
                           uint32_t n_table, const int32_t *tok, uint32_t n, float *pool,
                           const pd_kv_layout_t *l, float *logits)
{
    (void)m;
    pd_fwd_seq_t s = {tok, n, 0, table, n_table, logits};
    return pd_engine_forward(e, pool, l, &s, 1, NULL, NULL);
}

/* A tiny model of each decoder variant, its logits against the double reference: the
 * variant's extra weights are random (biases, norms around 1), so leaving one out of the
 * forward pass is seen. */
static void check_variant(pd_arch_t arch, bool llama3_rope)
{
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    c.arch = arch;
    if (llama3_rope) {
        /* head_dim 16, theta 10000: wavelengths 6.3 ... 19869, so with an original context
         * of 256 (low 1, high 4) the frequencies fall in all three bands */
        c.rope_scaling = (pd_rope_scaling_t){8.0f, 1.0f, 4.0f, 256};
    }
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 11);
    cr_assert((arch == PD_ARCH_QWEN2) == (m->w.bq != NULL));
    cr_assert((arch == PD_ARCH_QWEN3) == (m->w.q_norm != NULL));
    pd_kv_layout_t l = layout_for(m, 16);
    float *pool = new_pool(&l);
    uint32_t table[16];
    for (uint32_t i = 0; i < 16; i++)
        table[i] = i;
    int32_t tok[40];
    tokens_for(tok, 40, 3);
    float logits[259];
    double ref[259];
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    cr_assert_eq(prefill(e, m, table, 16, tok, 40, pool, &l, logits), PD_OK);
    ref_forward(m, tok, 40, ref);
    double max_err = 0, max_ref = 0;
    for (int i = 0; i < 259; i++) {
        max_err = fmax(max_err, fabs(logits[i] - ref[i]));
        max_ref = fmax(max_ref, fabs(ref[i]));
    }
    cr_assert_gt(max_ref, 0.1, "logits are degenerate");
    cr_assert_leq(max_err, 1e-4, "%s: max error %g", pd_arch_name(arch), max_err);
    /* the same model without the variant gives other logits: the check above has teeth */
    pd_model_config_t plain = c;
    plain.arch = PD_ARCH_LLAMA;
    plain.rope_scaling.factor = 0.0f;
    pd_model_t *p = NULL;
    cr_assert_eq(pd_model_alloc(&plain, &p), PD_OK);
    pd_model_init_random(p, 11);
    double other[259], diff = 0;
    ref_forward(p, tok, 40, other);
    for (int i = 0; i < 259; i++)
        diff = fmax(diff, fabs(other[i] - ref[i]));
    cr_assert_gt(diff, 1e-2, "%s: the variant changes nothing (%g)", pd_arch_name(arch), diff);
    pd_model_destroy(&p);
    pd_engine_destroy(&e);
    free(pool);
    pd_model_destroy(&m);
}

Test(forward, qwen2_qkv_biases_match_reference)
{
    check_variant(PD_ARCH_QWEN2, false);
}

Test(forward, qwen3_qk_norms_match_reference)
{
    check_variant(PD_ARCH_QWEN3, false);
}

Test(forward, llama3_rope_scaling_matches_reference)
{
    check_variant(PD_ARCH_LLAMA, true);
}

/* tol: the largest logit error allowed against the reference of the widened weights;
 * bf16 and int8 round the activations too, which the reference does not. */
static void check_against_reference(pd_rope_style_t style, pd_dtype_t dtype, double tol)
{
    pd_model_t *m = make_model_as("tiny", style, 7, dtype);
    pd_kv_layout_t l = layout_for(m, 16);
    float *pool = new_pool(&l);
    uint32_t table[16];
    for (uint32_t i = 0; i < 16; i++)
        table[i] = 15 - i;
    int32_t tok[23];
    tokens_for(tok, 23, 1);
    float logits[259];
    double ref[259];
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    cr_assert_eq(prefill(e, m, table, 16, tok, 23, pool, &l, logits), PD_OK);
    ref_forward(m, tok, 23, ref);
    double max_err = 0, max_ref = 0;
    for (int i = 0; i < 259; i++) {
        max_err = fmax(max_err, fabs(logits[i] - ref[i]));
        max_ref = fmax(max_ref, fabs(ref[i]));
    }
    cr_assert_gt(max_ref, 0.1, "logits are degenerate");
    cr_assert_leq(max_err, tol, "%s: max error %g", pd_dtype_name(dtype), max_err);
    pd_engine_destroy(&e);
    cr_assert_null(e);
    free(pool);
    pd_model_destroy(&m);
}

Test(forward, matches_double_reference_rope_half)
{
    check_against_reference(PD_ROPE_HALF, PD_DTYPE_F32, 1e-4);
}

Test(forward, matches_double_reference_rope_pair)
{
    check_against_reference(PD_ROPE_PAIR, PD_DTYPE_F32, 1e-4);
}

Test(forward, every_weight_dtype_matches_the_reference_of_its_weights)
{
    check_against_reference(PD_ROPE_HALF, PD_DTYPE_F16, 1e-4); /* f32 arithmetic */
    check_against_reference(PD_ROPE_HALF, PD_DTYPE_BF16, 0.05);
    check_against_reference(PD_ROPE_PAIR, PD_DTYPE_I8, 0.05);
}

Test(forward, odd_shapes_match_reference_and_decode_equals_prefill)
{
    /* Dimensions that are not multiples of 16 (vector tails everywhere), 3 query heads
     * per KV head, tied embeddings and interleaved RoPE. */
    pd_model_config_t c;
    memset(&c, 0, sizeof(c));
    c.dim = 72;
    c.hidden_dim = 100;
    c.n_layers = 2;
    c.n_heads = 3;
    c.n_kv_heads = 1;
    c.head_dim = 24;
    c.vocab_size = 50;
    c.max_seq_len = 64;
    c.rms_eps = 1e-5f;
    c.rope_theta = 500.0f;
    c.rope_style = PD_ROPE_PAIR;
    c.tie_embeddings = true;
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 12);
    pd_kv_layout_t l = {2, 1, 24, 5, 16};
    float *pool = new_pool(&l), *pool2 = new_pool(&l);
    uint32_t table[16];
    for (uint32_t i = 0; i < 16; i++)
        table[i] = (i * 5 + 3) % 16;
    int32_t tok[21];
    for (uint32_t i = 0; i < 21; i++)
        tok[i] = (int32_t)((i * 7 + 1) % 50);
    float logits[50], step[50];
    double ref[50];
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    cr_assert_eq(prefill(e, m, table, 16, tok, 21, pool, &l, logits), PD_OK);
    ref_forward(m, tok, 21, ref);
    for (int i = 0; i < 50; i++)
        cr_assert_float_eq(logits[i], ref[i], 1e-4, "logit %d: %g vs %g", i, logits[i], ref[i]);
    for (uint32_t i = 0; i < 21; i++) {
        pd_fwd_seq_t s1 = {tok + i, 1, i, table, 16, step};
        cr_assert_eq(pd_engine_forward(e, pool2, &l, &s1, 1, NULL, NULL), PD_OK);
    }
    cr_assert_eq(memcmp(step, logits, sizeof(step)), 0);
    cr_assert_eq(memcmp(pool, pool2, pd_kv_pool_bytes(&l)), 0);
    pd_engine_destroy(&e);
    free(pool);
    free(pool2);
    pd_model_destroy(&m);
}

static void check_cached_equals_recompute(pd_dtype_t dtype)
{
    pd_model_t *m = make_model_as("small", PD_ROPE_HALF, 3, dtype);
    pd_kv_layout_t l = layout_for(m, 32);
    float *pool = new_pool(&l), *pool2 = new_pool(&l);
    uint32_t table[32];
    for (uint32_t i = 0; i < 32; i++)
        table[i] = (i * 7) % 32;
    const uint32_t n = 30;
    int32_t tok[30];
    tokens_for(tok, n, 2);
    float step_logits[259], full_logits[259];
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    /* Token by token through the cache ... */
    for (uint32_t i = 0; i < n; i++) {
        pd_fwd_seq_t s = {tok + i, 1, i, table, 32, step_logits};
        cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_OK);
        /* ... equals recomputing the whole prefix with no cache. */
        memset(pool2, 0, pd_kv_pool_bytes(&l));
        cr_assert_eq(prefill(e, m, table, 32, tok, i + 1, pool2, &l, full_logits), PD_OK);
        cr_assert_eq(memcmp(step_logits, full_logits, sizeof(full_logits)), 0, "position %u", i);
    }
    /* The caches hold the same bytes too. */
    cr_assert_eq(memcmp(pool, pool2, pd_kv_pool_bytes(&l)), 0);
    /* Prefill then decode equals decode of the same token on the prefilled cache. */
    memset(pool2, 0, pd_kv_pool_bytes(&l));
    cr_assert_eq(prefill(e, m, table, 32, tok, n - 1, pool2, &l, NULL), PD_OK);
    pd_fwd_seq_t s = {tok + n - 1, 1, n - 1, table, 32, full_logits};
    cr_assert_eq(pd_engine_forward(e, pool2, &l, &s, 1, NULL, NULL), PD_OK);
    cr_assert_eq(memcmp(step_logits, full_logits, sizeof(full_logits)), 0);
    pd_engine_destroy(&e);
    free(pool);
    free(pool2);
    pd_model_destroy(&m);
}

Test(forward, cached_decode_equals_full_recompute_bitwise)
{
    for (size_t d = 0; d < sizeof(all_dtypes) / sizeof(all_dtypes[0]); d++)
        check_cached_equals_recompute(all_dtypes[d]);
}

Test(forward, scattered_block_table_equals_contiguous_bitwise)
{
    pd_model_t *m = make_model("tiny", PD_ROPE_PAIR, 4);
    pd_kv_layout_t l = layout_for(m, 40);
    float *pa = new_pool(&l), *pb = new_pool(&l);
    uint32_t ta[40], tb[40];
    for (uint32_t i = 0; i < 40; i++) {
        ta[i] = i;
        tb[i] = (i * 17 + 11) % 40; /* a permutation */
    }
    int32_t tok[50];
    tokens_for(tok, 50, 3);
    float la[259], lb[259];
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 1, &e), PD_OK);
    cr_assert_eq(prefill(e, m, ta, 40, tok, 45, pa, &l, la), PD_OK);
    cr_assert_eq(prefill(e, m, tb, 40, tok, 45, pb, &l, lb), PD_OK);
    cr_assert_eq(memcmp(la, lb, sizeof(la)), 0);
    for (uint32_t i = 45; i < 50; i++) {
        pd_fwd_seq_t sa = {tok + i, 1, i, ta, 40, la}, sb = {tok + i, 1, i, tb, 40, lb};
        cr_assert_eq(pd_engine_forward(e, pa, &l, &sa, 1, NULL, NULL), PD_OK);
        cr_assert_eq(pd_engine_forward(e, pb, &l, &sb, 1, NULL, NULL), PD_OK);
        cr_assert_eq(memcmp(la, lb, sizeof(la)), 0, "position %u", i);
    }
    pd_engine_destroy(&e);
    free(pa);
    free(pb);
    pd_model_destroy(&m);
}

/* Three sequences in disjoint blocks: prefill of 13, decode at 9 after a prefill of 9,
 * prefill of 6 continuing at 5. Run alone, then together, and compare bytes. */
static void run_mixed(uint32_t n_threads, float out[3][259], float **pool_p, const pd_model_t *m,
                      const pd_kv_layout_t *l, int together)
{
    static const uint32_t tables[3][4] = {{0, 1, 2, 3}, {4, 5, 6, 7}, {11, 10, 9, 8}};
    int32_t tok[3][16];
    for (uint32_t s = 0; s < 3; s++)
        tokens_for(tok[s], 16, s + 10);
    float *pool = new_pool(l);
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, n_threads, &e), PD_OK);
    /* Setup: sequence 1 has 9 tokens cached, sequence 2 has 5. */
    pd_fwd_seq_t pre[2] = {{tok[1], 9, 0, tables[1], 4, NULL}, {tok[2], 5, 0, tables[2], 4, NULL}};
    cr_assert_eq(pd_engine_forward(e, pool, l, pre, 2, NULL, NULL), PD_OK);
    pd_fwd_seq_t step[3] = {{tok[0], 13, 0, tables[0], 4, out[0]},
                            {tok[1] + 9, 1, 9, tables[1], 4, out[1]},
                            {tok[2] + 5, 6, 5, tables[2], 4, out[2]}};
    if (together) {
        cr_assert_eq(pd_engine_forward(e, pool, l, step, 3, NULL, NULL), PD_OK);
    } else {
        for (int s = 2; s >= 0; s--)
            cr_assert_eq(pd_engine_forward(e, pool, l, &step[s], 1, NULL, NULL), PD_OK);
    }
    pd_engine_destroy(&e);
    *pool_p = pool;
}

Test(forward, batch_rows_equal_solo_runs_bitwise)
{
    for (size_t d = 0; d < sizeof(all_dtypes) / sizeof(all_dtypes[0]); d++) {
        pd_model_t *m = make_model_as("small", PD_ROPE_HALF, 5, all_dtypes[d]);
        pd_kv_layout_t l = layout_for(m, 12);
        float alone[3][259], batch[3][259];
        float *pa = NULL, *pb = NULL;
        run_mixed(2, alone, &pa, m, &l, 0);
        run_mixed(2, batch, &pb, m, &l, 1);
        for (int s = 0; s < 3; s++)
            cr_assert_eq(memcmp(alone[s], batch[s], sizeof(alone[s])), 0, "%s sequence %d",
                         pd_dtype_name(all_dtypes[d]), s);
        cr_assert_eq(memcmp(pa, pb, pd_kv_pool_bytes(&l)), 0);
        free(pa);
        free(pb);
        pd_model_destroy(&m);
    }
}

/* Chunked prefill as pd-prefill runs it: three prompts cut into chunks at positions that
 * are not block boundaries, the chunks of different prompts sharing steps, give the same
 * logits and KV bytes as each prompt computed alone in one step. */
static void check_chunked_interleaved(pd_dtype_t dtype)
{
    pd_model_t *m = make_model_as("small", PD_ROPE_HALF, 8, dtype);
    pd_kv_layout_t l = layout_for(m, 24);
    /* A: 45 tokens in blocks 0-11, P: 30 in 12-19 (scattered), C: 9 in 20-22. */
    uint32_t ta[12], tp[8], tc[3];
    for (uint32_t i = 0; i < 12; i++)
        ta[i] = i;
    for (uint32_t i = 0; i < 8; i++)
        tp[i] = 12 + (i * 3) % 8;
    for (uint32_t i = 0; i < 3; i++)
        tc[i] = 22 - i;
    int32_t a[45], pt[30], c[9];
    tokens_for(a, 45, 21);
    tokens_for(pt, 30, 22);
    tokens_for(c, 9, 23);
    float alone[3][259], chunked[3][259];
    float *p1 = new_pool(&l), *p2 = new_pool(&l);
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    pd_fwd_seq_t solo[3] = {
        {a, 45, 0, ta, 12, alone[0]}, {pt, 30, 0, tp, 8, alone[1]}, {c, 9, 0, tc, 3, alone[2]}};
    for (int s = 0; s < 3; s++)
        cr_assert_eq(pd_engine_forward(e, p1, &l, &solo[s], 1, NULL, NULL), PD_OK);
    /* Four passes: A in chunks of 7, 7, 7 and 24; P in 11, 11 and 8; C whole in pass 2. */
    pd_fwd_seq_t s1[2] = {{a, 7, 0, ta, 12, NULL}, {pt, 11, 0, tp, 8, NULL}};
    pd_fwd_seq_t s2[2] = {{c, 9, 0, tc, 3, chunked[2]}, {a + 7, 7, 7, ta, 12, NULL}};
    pd_fwd_seq_t s3[2] = {{pt + 11, 11, 11, tp, 8, NULL}, {a + 14, 7, 14, ta, 12, NULL}};
    pd_fwd_seq_t s4[2] = {{pt + 22, 8, 22, tp, 8, chunked[1]},
                          {a + 21, 24, 21, ta, 12, chunked[0]}};
    cr_assert_eq(pd_engine_forward(e, p2, &l, s1, 2, NULL, NULL), PD_OK);
    cr_assert_eq(pd_engine_forward(e, p2, &l, s2, 2, NULL, NULL), PD_OK);
    cr_assert_eq(pd_engine_forward(e, p2, &l, s3, 2, NULL, NULL), PD_OK);
    cr_assert_eq(pd_engine_forward(e, p2, &l, s4, 2, NULL, NULL), PD_OK);
    for (int s = 0; s < 3; s++)
        cr_assert_eq(memcmp(alone[s], chunked[s], sizeof(alone[s])), 0, "%s prompt %d",
                     pd_dtype_name(dtype), s);
    cr_assert_eq(memcmp(p1, p2, pd_kv_pool_bytes(&l)), 0, "%s KV", pd_dtype_name(dtype));
    pd_engine_destroy(&e);
    free(p1);
    free(p2);
    pd_model_destroy(&m);
}

Test(forward, chunked_interleaved_prefill_equals_each_prompt_alone_bitwise)
{
    for (size_t d = 0; d < sizeof(all_dtypes) / sizeof(all_dtypes[0]); d++)
        check_chunked_interleaved(all_dtypes[d]);
}

static void check_thread_counts(pd_dtype_t dtype)
{
    pd_model_t *m = make_model_as("small", PD_ROPE_PAIR, 6, dtype);
    pd_kv_layout_t l = layout_for(m, 12);
    float r1[3][259], r2[3][259], r3[3][259];
    float *p1 = NULL, *p2 = NULL, *p3 = NULL;
    run_mixed(1, r1, &p1, m, &l, 1);
    run_mixed(2, r2, &p2, m, &l, 1);
    run_mixed(3, r3, &p3, m, &l, 1);
    cr_assert_eq(memcmp(r1, r2, sizeof(r1)), 0);
    cr_assert_eq(memcmp(r1, r3, sizeof(r1)), 0);
    cr_assert_eq(memcmp(p1, p2, pd_kv_pool_bytes(&l)), 0);
    cr_assert_eq(memcmp(p1, p3, pd_kv_pool_bytes(&l)), 0);
    free(p1);
    free(p2);
    free(p3);
    pd_model_destroy(&m);
}

Test(forward, one_thread_equals_two_and_three_threads_bitwise)
{
    for (size_t d = 0; d < sizeof(all_dtypes) / sizeof(all_dtypes[0]); d++)
        check_thread_counts(all_dtypes[d]);
}

Test(forward, rejects_bad_steps_with_the_right_codes_and_writes_nothing)
{
    pd_model_t *m = make_model("tiny", PD_ROPE_HALF, 1);
    pd_kv_layout_t l = layout_for(m, 80);
    float *pool = new_pool(&l);
    uint32_t table[80];
    for (uint32_t i = 0; i < 80; i++)
        table[i] = i;
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    int32_t bad_lo[2] = {1, -1}, bad_hi[2] = {1, 259}, ok[2] = {1, 258};
    pd_fwd_seq_t s = {bad_lo, 2, 0, table, 80, NULL};
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_OUT_OF_RANGE);
    s.tokens = bad_hi;
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_OUT_OF_RANGE);
    /* tiny has a 256-token context */
    s.tokens = ok;
    s.pos = 255;
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_CONTEXT);
    s.pos = 254;
    s.n_table = 63; /* 256 tokens need 64 blocks of 4 */
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_INVALID_PARAM);
    s.n_table = 64;
    table[10] = 80; /* past the pool */
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_INVALID_PARAM);
    table[10] = 10;
    pd_kv_layout_t wrong = l;
    wrong.head_dim = 8;
    cr_assert_eq(pd_engine_forward(e, pool, &wrong, &s, 1, NULL, NULL), PD_ERR_INVALID_PARAM);
    s.n_tokens = 0;
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_ERR_INVALID_PARAM);
    /* A bad sequence anywhere in the batch fails the step before anything is written. */
    pd_fwd_seq_t two[2] = {{ok, 2, 0, table, 80, NULL}, {bad_hi, 2, 0, table + 40, 40, NULL}};
    cr_assert_eq(pd_engine_forward(e, pool, &l, two, 2, NULL, NULL), PD_ERR_OUT_OF_RANGE);
    for (size_t i = 0; i < pd_kv_pool_bytes(&l) / sizeof(float); i++)
        cr_assert_eq(pool[i], 0.0f);
    s.n_tokens = 2;
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, NULL, NULL), PD_OK);
    pd_engine_destroy(&e);
    free(pool);
    pd_model_destroy(&m);
}

typedef struct layer_probe {
    const float *pool;
    const pd_kv_layout_t *l;
    uint32_t calls;
    uint32_t order_ok;
} layer_probe_t;

static int slice_written(const float *pool, const pd_kv_layout_t *l, uint32_t layer)
{
    const float *s = pool + pd_kv_offset(l, layer, 0) / sizeof(float);
    for (size_t i = 0; i < pd_kv_block_layer_bytes(l) / sizeof(float); i++)
        if (s[i] != 0.0f)
            return 1;
    return 0;
}

static void on_layer(void *arg, uint32_t layer)
{
    layer_probe_t *p = arg;
    int ok = p->calls == layer && slice_written(p->pool, p->l, layer) &&
             (layer + 1 == p->l->n_layers || !slice_written(p->pool, p->l, layer + 1));
    p->order_ok += ok;
    p->calls++;
}

Test(forward, layer_callback_sees_each_layer_written_before_the_next)
{
    pd_model_t *m = make_model("small", PD_ROPE_HALF, 2);
    pd_kv_layout_t l = layout_for(m, 4);
    float *pool = new_pool(&l);
    uint32_t table[4] = {0, 1, 2, 3};
    int32_t tok[3] = {1, 2, 3};
    pd_engine_t *e = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &e), PD_OK);
    layer_probe_t p = {pool, &l, 0, 0};
    pd_fwd_seq_t s = {tok, 3, 0, table, 1, NULL};
    cr_assert_eq(pd_engine_forward(e, pool, &l, &s, 1, on_layer, &p), PD_OK);
    cr_assert_eq(p.calls, m->config.n_layers);
    cr_assert_eq(p.order_ok, m->config.n_layers);
    pd_engine_destroy(&e);
    free(pool);
    pd_model_destroy(&m);
}

Test(forward, reserved_scratch_gives_the_same_bytes)
{
    pd_model_t *m = make_model("tiny", PD_ROPE_HALF, 8);
    pd_kv_layout_t l = layout_for(m, 40);
    float *pa = new_pool(&l), *pb = new_pool(&l);
    uint32_t table[40];
    for (uint32_t i = 0; i < 40; i++)
        table[i] = i;
    int32_t tok[150];
    tokens_for(tok, 150, 4);
    float la[259], lb[259];
    pd_engine_t *a = NULL, *b = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &a), PD_OK);
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 2, &b), PD_OK);
    cr_assert_eq(pd_engine_reserve(b, 300, 40), PD_OK);
    cr_assert_eq(pd_engine_reserve(NULL, 1, 1), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_engine_n_threads(b), 2);
    cr_assert_eq(prefill(a, m, table, 40, tok, 150, pa, &l, la), PD_OK);
    cr_assert_eq(prefill(b, m, table, 40, tok, 150, pb, &l, lb), PD_OK);
    cr_assert_eq(memcmp(la, lb, sizeof(la)), 0);
    cr_assert_eq(memcmp(pa, pb, pd_kv_pool_bytes(&l)), 0);
    pd_engine_destroy(&a);
    pd_engine_destroy(&b);
    free(pa);
    free(pb);
    pd_model_destroy(&m);
}
