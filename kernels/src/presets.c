/* The preset table: small Llama-family shapes for tests, demos and benchmarks. */
#include "pd/presets.h"

#include "pd/log.h"

#include <stdio.h>
#include <string.h>

/* What a preset copies from a family of real checkpoints, so that their tokenizer runs
 * it: vocabulary, RoPE, architecture, special ids. */
typedef struct pd_preset_family {
    const char *tokenizer; /* the family whose tokenizer.json the model needs */
    pd_arch_t arch;
    uint32_t vocab;
    float theta;
    pd_rope_scaling_t scaling;
    bool tie;
    int32_t bos; /* -1: none */
    int32_t eos[3];
} pd_preset_family_t;

typedef struct pd_preset {
    const char *name;
    uint32_t dim;
    uint32_t hidden_dim;
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t n_kv_heads;
    uint32_t max_seq_len;
    const pd_preset_family_t *family; /* NULL: a Llama with the byte-level tokenizer */
} pd_preset_t;

/* The byte-level tokenizer's vocabulary: 256 bytes plus BOS, EOS and PAD. */
#define PD_PRESET_VOCAB 259u

/* Llama 3.2's config: 128,256 ids, theta 500000, llama3 RoPE scaling, tied embeddings,
 * BOS <|begin_of_text|>, EOS <|end_of_text|> <|eom_id|> <|eot_id|>. */
static const pd_preset_family_t pd_preset_llama3 = {
    .tokenizer = "llama3",
    .arch = PD_ARCH_LLAMA,
    .vocab = 128256,
    .theta = 500000.0f,
    .scaling = {32.0f, 1.0f, 4.0f, 8192},
    .tie = true,
    .bos = 128000,
    .eos = {128001, 128008, 128009},
};

/* Qwen3-0.6B's config: 151,936 ids, theta 1000000, per-head q/k norms, tied embeddings,
 * no BOS, EOS <|im_end|> <|endoftext|>. */
static const pd_preset_family_t pd_preset_qwen3 = {
    .tokenizer = "qwen3",
    .arch = PD_ARCH_QWEN3,
    .vocab = 151936,
    .theta = 1000000.0f,
    .tie = true,
    .bos = -1,
    .eos = {151645, 151643, -1},
};

static const pd_preset_t pd_presets[] = {
    {"tiny", 64, 176, 2, 4, 2, 256, NULL},
    {"small", 256, 688, 4, 8, 4, 2048, NULL},
    {"m50", 768, 2048, 8, 12, 4, 2048, NULL},
    /* The families' configs in miniature. */
    {"llama3-tiny", 64, 192, 2, 4, 2, 2048, &pd_preset_llama3},
    {"qwen3-tiny", 64, 192, 2, 4, 2, 2048, &pd_preset_qwen3},
};

#define PD_N_PRESETS (sizeof(pd_presets) / sizeof(pd_presets[0]))

pd_status_t pd_model_preset(const char *name, pd_model_config_t *config_p)
{
    if (name == NULL || config_p == NULL)
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < PD_N_PRESETS; i++) {
        const pd_preset_t *p = &pd_presets[i];
        if (strcmp(p->name, name) != 0)
            continue;
        const pd_preset_family_t *f = p->family;
        pd_model_config_t c;
        memset(&c, 0, sizeof(c));
        c.dim = p->dim;
        c.hidden_dim = p->hidden_dim;
        c.n_layers = p->n_layers;
        c.n_heads = p->n_heads;
        c.n_kv_heads = p->n_kv_heads;
        c.head_dim = p->dim / p->n_heads;
        c.vocab_size = f != NULL ? f->vocab : PD_PRESET_VOCAB;
        c.max_seq_len = p->max_seq_len;
        c.rms_eps = f != NULL ? 1e-6f : 1e-5f;
        c.rope_theta = f != NULL ? f->theta : 10000.0f;
        c.rope_style = PD_ROPE_HALF;
        c.tie_embeddings = f != NULL && f->tie;
        c.arch = f != NULL ? f->arch : PD_ARCH_LLAMA;
        if (f != NULL)
            c.rope_scaling = f->scaling;
        c.has_bos = f != NULL && f->bos >= 0;
        c.bos_id = c.has_bos ? f->bos : -1;
        for (int k = 0; f != NULL && k < 3 && f->eos[k] >= 0; k++)
            c.eos_ids[c.n_eos++] = f->eos[k];
        snprintf(c.model_id, sizeof(c.model_id), "pdkv-%s", p->name);
        *config_p = c;
        return PD_OK;
    }
    pd_log_error("unknown model preset '%s' (known: tiny, small, m50, llama3-tiny, qwen3-tiny)",
                 name);
    return PD_ERR_NOT_FOUND;
}

size_t pd_model_preset_count(void)
{
    return PD_N_PRESETS;
}

const char *pd_model_preset_name(size_t i)
{
    return i < PD_N_PRESETS ? pd_presets[i].name : NULL;
}

const char *pd_model_preset_tokenizer(const char *name)
{
    for (size_t i = 0; name != NULL && i < PD_N_PRESETS; i++)
        if (strcmp(pd_presets[i].name, name) == 0)
            return pd_presets[i].family != NULL ? pd_presets[i].family->tokenizer : NULL;
    return NULL;
}
