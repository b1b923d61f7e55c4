/* The model object: config validation names the problem, tied embeddings share storage,
 * random initialisation is deterministic per seed. */
#include "pd/model.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

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

Test(model, config_validation_names_the_problem)
{
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("m50", &c), PD_OK);
    cr_assert_eq(pd_model_config_validate(&c), PD_OK);
    uint64_t n = pd_model_n_params(&c);
    cr_assert(n > 49000000ull && n < 52000000ull, "m50 has %llu params", (unsigned long long)n);
    pd_model_config_t bad = c;
    bad.dim = 0;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.n_kv_heads = 5;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.rms_eps = 0.0f;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.rope_theta = -1.0f;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.hidden_dim = 2000000;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.head_dim = 63;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    bad = c;
    bad.vocab_size = 1u << 24;
    bad.dim = 1u << 20;
    bad.n_heads = 1;
    bad.n_kv_heads = 1;
    cr_assert_eq(pd_model_config_validate(&bad), PD_ERR_FORMAT);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&bad, &m), PD_ERR_FORMAT);
    cr_assert_null(m);
    cr_assert_eq(pd_model_preset("nope", &bad), PD_ERR_NOT_FOUND);
    cr_assert_eq(pd_model_preset_count(), 5);
    cr_assert_str_eq(pd_model_preset_name(2), "m50");
    cr_assert_str_eq(pd_model_preset_name(4), "qwen3-tiny");
    cr_assert_null(pd_model_preset_name(5));
    cr_assert_str_eq(pd_model_preset_tokenizer("llama3-tiny"), "llama3");
    cr_assert_null(pd_model_preset_tokenizer("tiny"));
    /* the presets of today's checkpoints carry their ids and variants */
    cr_assert_eq(pd_model_preset("qwen3-tiny", &bad), PD_OK);
    cr_assert_eq(bad.arch, PD_ARCH_QWEN3);
    cr_assert_eq(bad.vocab_size, 151936);
    cr_assert(pd_model_is_eos(&bad, 151645) && pd_model_is_eos(&bad, 151643));
    cr_assert_not(bad.has_bos);
    cr_assert_eq(pd_model_preset("llama3-tiny", &bad), PD_OK);
    cr_assert_float_eq(bad.rope_scaling.factor, 32.0f, 0);
    cr_assert_eq(bad.bos_id, 128000);
    cr_assert_eq(bad.n_eos, 3);
}

Test(model, tied_embeddings_share_storage_and_count_once)
{
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    uint64_t untied = pd_model_n_params(&c);
    c.tie_embeddings = true;
    cr_assert_eq(pd_model_n_params(&c), untied - (uint64_t)c.vocab_size * c.dim);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    cr_assert_eq(m->w.lm_head.data, m->w.tok_embed.data);
    cr_assert_geq(m->storage_bytes, pd_model_n_params(&c) * sizeof(float));
    pd_model_destroy(&m);
    cr_assert_null(m);
    pd_model_destroy(&m);
}

Test(model, random_init_is_deterministic_per_seed)
{
    pd_model_t *a = make_model("tiny", PD_ROPE_HALF, 9);
    pd_model_t *b = make_model("tiny", PD_ROPE_HALF, 9);
    pd_model_t *c = make_model("tiny", PD_ROPE_HALF, 10);
    cr_assert_eq(memcmp(a->storage, b->storage, a->storage_bytes), 0);
    cr_assert_neq(memcmp(a->storage, c->storage, a->storage_bytes), 0);
    cr_assert_eq(a->w.attn_norm[0], 1.0f);
    cr_assert_eq(a->w.final_norm[63], 1.0f);
    double ss = 0;
    size_t n = (size_t)a->config.n_layers * 64 * 64;
    for (size_t i = 0; i < n; i++)
        ss += (double)pd_weight_f32(&a->w.wq)[i] * pd_weight_f32(&a->w.wq)[i];
    cr_assert_float_eq(sqrt(ss / n), 1.0 / 8.0, 0.01); /* std 1/sqrt(dim) */
    pd_model_destroy(&a);
    pd_model_destroy(&b);
    pd_model_destroy(&c);
}
