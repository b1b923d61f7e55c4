/* The preset table: small Llama-family shapes for tests, demos and benchmarks. */
#include "pd/presets.h"

#include "pd/log.h"

#include <stdio.h>
#include <string.h>

typedef struct pd_preset {
    const char *name;
    uint32_t dim;
    uint32_t hidden_dim;
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t n_kv_heads;
    uint32_t max_seq_len;
} pd_preset_t;

/* The byte-level tokenizer's vocabulary: 256 bytes plus BOS, EOS and PAD. */
#define PD_PRESET_VOCAB 259u

static const pd_preset_t pd_presets[] = {
    {"tiny", 64, 176, 2, 4, 2, 256},
    {"small", 256, 688, 4, 8, 4, 2048},
    {"m50", 768, 2048, 8, 12, 4, 2048},
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
        pd_model_config_t c;
        memset(&c, 0, sizeof(c));
        c.dim = p->dim;
        c.hidden_dim = p->hidden_dim;
        c.n_layers = p->n_layers;
        c.n_heads = p->n_heads;
        c.n_kv_heads = p->n_kv_heads;
        c.head_dim = p->dim / p->n_heads;
        c.vocab_size = PD_PRESET_VOCAB;
        c.max_seq_len = p->max_seq_len;
        c.rms_eps = 1e-5f;
        c.rope_theta = 10000.0f;
        c.rope_style = PD_ROPE_HALF;
        c.tie_embeddings = false;
        snprintf(c.model_id, sizeof(c.model_id), "pdkv-%s", p->name);
        *config_p = c;
        return PD_OK;
    }
    pd_log_error("unknown model preset '%s' (known: tiny, small, m50)", name);
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
