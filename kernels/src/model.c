/* Model configs, parameter counts, the one-allocation weight layout, random weights. */
#include "pd/model.h"

#include "pd/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Limits far beyond any model this project serves but small enough that every size
 * computed from them fits in 64 bits. */
#define PD_MODEL_MAX_DIM    (1u << 20)
#define PD_MODEL_MAX_VOCAB  (1u << 24)
#define PD_MODEL_MAX_LAYERS 4096u
#define PD_MODEL_MAX_HEADS  4096u
#define PD_MODEL_MAX_HDIM   4096u
#define PD_MODEL_MAX_SEQ    (1u << 20)
#define PD_MODEL_MAX_PARAMS (1ull << 38)

static pd_status_t pd_model_bad(const char *what, unsigned long long v, const char *why)
{
    pd_log_error("model config: %s = %llu %s", what, v, why);
    return PD_ERR_FORMAT;
}

pd_status_t pd_model_config_validate(const pd_model_config_t *c)
{
    if (c == NULL) {
        pd_log_error("model config: missing");
        return PD_ERR_INVALID_PARAM;
    }
    const struct {
        const char *name;
        uint32_t value;
        uint32_t max;
    } fields[] = {
        {"dim", c->dim, PD_MODEL_MAX_DIM},
        {"hidden_dim", c->hidden_dim, PD_MODEL_MAX_DIM},
        {"n_layers", c->n_layers, PD_MODEL_MAX_LAYERS},
        {"n_heads", c->n_heads, PD_MODEL_MAX_HEADS},
        {"n_kv_heads", c->n_kv_heads, PD_MODEL_MAX_HEADS},
        {"head_dim", c->head_dim, PD_MODEL_MAX_HDIM},
        {"vocab_size", c->vocab_size, PD_MODEL_MAX_VOCAB},
        {"max_seq_len", c->max_seq_len, PD_MODEL_MAX_SEQ},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].value == 0)
            return pd_model_bad(fields[i].name, 0, "(missing or zero)");
        if (fields[i].value > fields[i].max)
            return pd_model_bad(fields[i].name, fields[i].value, "(absurdly large)");
    }
    if (c->n_heads % c->n_kv_heads != 0)
        return pd_model_bad("n_heads", c->n_heads, "is not a multiple of n_kv_heads");
    if (c->head_dim % 2 != 0)
        return pd_model_bad("head_dim", c->head_dim, "is odd (RoPE rotates pairs)");
    if ((uint64_t)c->n_heads * c->head_dim > PD_MODEL_MAX_DIM)
        return pd_model_bad("n_heads * head_dim", (uint64_t)c->n_heads * c->head_dim,
                            "(absurdly large)");
    if (!(c->rms_eps > 0.0f) || !(c->rms_eps < 1.0f)) {
        pd_log_error("model config: rms_eps = %g must be in (0, 1)", (double)c->rms_eps);
        return PD_ERR_FORMAT;
    }
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta)) {
        pd_log_error("model config: rope_theta = %g must be positive", (double)c->rope_theta);
        return PD_ERR_FORMAT;
    }
    if (c->rope_style != PD_ROPE_HALF && c->rope_style != PD_ROPE_PAIR)
        return pd_model_bad("rope_style", (unsigned long long)c->rope_style, "is unknown");
    if ((unsigned)c->arch > PD_ARCH_QWEN3)
        return pd_model_bad("arch", (unsigned long long)c->arch, "is unknown");
    if (c->n_eos > PD_MODEL_MAX_EOS)
        return pd_model_bad("n_eos", c->n_eos, "is more than the eos ids a config holds");
    for (uint32_t i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || (uint32_t)c->eos_ids[i] >= c->vocab_size)
            return pd_model_bad("eos id", (unsigned long long)c->eos_ids[i],
                                "is outside the vocabulary");
    const pd_rope_scaling_t *rs = &c->rope_scaling;
    if (rs->factor != 0.0f &&
        (!(rs->factor >= 1.0f) || !isfinite(rs->factor) || !(rs->low_freq_factor > 0.0f) ||
         !(rs->high_freq_factor > rs->low_freq_factor) || !isfinite(rs->high_freq_factor) ||
         rs->original_max_position == 0)) {
        pd_log_error("model config: rope scaling (factor %g, low_freq_factor %g, "
                     "high_freq_factor %g, original_max_position_embeddings %u) is not valid",
                     (double)rs->factor, (double)rs->low_freq_factor, (double)rs->high_freq_factor,
                     rs->original_max_position);
        return PD_ERR_FORMAT;
    }
    if (memchr(c->model_id, '\0', sizeof(c->model_id)) == NULL) {
        pd_log_error("model config: model_id is not terminated");
        return PD_ERR_FORMAT;
    }
    uint64_t n = pd_model_n_params(c);
    if (n > PD_MODEL_MAX_PARAMS)
        return pd_model_bad("parameters", n, "(too many for f32 weights in memory)");
    return PD_OK;
}

/* Element counts of the tensors in pd_model_weights_t order (lm_head 0 when tied). */
#define PD_MODEL_N_SLOTS 17

typedef struct pd_model_sizes {
    uint64_t n[PD_MODEL_N_SLOTS];
} pd_model_sizes_t;

static pd_model_sizes_t pd_model_sizes(const pd_model_config_t *c)
{
    uint64_t d = c->dim, h = c->hidden_dim, L = c->n_layers, v = c->vocab_size;
    uint64_t qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    pd_model_sizes_t s = {{
        v * d,                        /* tok_embed */
        L * d,                        /* attn_norm */
        L * qd * d,                   /* wq */
        L * kvd * d,                  /* wk */
        L * kvd * d,                  /* wv */
        L * d * qd,                   /* wo */
        L * d,                        /* ffn_norm */
        L * h * d,                    /* w_gate */
        L * h * d,                    /* w_up */
        L * d * h,                    /* w_down */
        d,                            /* final_norm */
        c->tie_embeddings ? 0 : v * d /* lm_head */
    }};
    /* the variants' vectors: q, k, v biases (Qwen2), q and k norms (Qwen3) */
    bool bias = c->arch == PD_ARCH_QWEN2, qk = c->arch == PD_ARCH_QWEN3;
    s.n[12] = bias ? L * qd : 0;
    s.n[13] = bias ? L * kvd : 0;
    s.n[14] = bias ? L * kvd : 0;
    s.n[15] = qk ? L * c->head_dim : 0;
    s.n[16] = qk ? L * c->head_dim : 0;
    return s;
}

uint64_t pd_model_n_params(const pd_model_config_t *config)
{
    pd_model_sizes_t s = pd_model_sizes(config);
    uint64_t total = 0;
    for (int i = 0; i < PD_MODEL_N_SLOTS; i++)
        total += s.n[i];
    return total;
}

/* Slot i of pd_model_weights_t order: a matrix stack (its shape) or an f32 vector. */
typedef struct pd_model_slot {
    bool is_mat;
    uint32_t n_mats, rows, cols;
} pd_model_slot_t;

static void pd_model_slots(const pd_model_config_t *c, pd_model_slot_t slots[PD_MODEL_N_SLOTS])
{
    uint32_t d = c->dim, h = c->hidden_dim, L = c->n_layers, v = c->vocab_size;
    uint32_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const pd_model_slot_t s[12] = {
        {true, 1, v, d},   {false, L, d, 1}, {true, L, qd, d}, {true, L, kvd, d},
        {true, L, kvd, d}, {true, L, d, qd}, {false, L, d, 1}, {true, L, h, d},
        {true, L, h, d},   {true, L, d, h},  {false, 1, d, 1}, {true, 1, v, d},
    };
    memcpy(slots, s, sizeof(s));
    pd_model_sizes_t n = pd_model_sizes(c);
    for (int i = 12; i < PD_MODEL_N_SLOTS; i++)
        slots[i] = (pd_model_slot_t){false, 1, (uint32_t)n.n[i], 1};
}

/* Bytes of a stack's data, and of its I8 row scales. */
static uint64_t pd_model_mat_data_bytes(const pd_model_slot_t *s, pd_dtype_t dtype)
{
    return (uint64_t)s->n_mats * s->rows * s->cols * pd_dtype_size(dtype);
}

static uint64_t pd_model_mat_scale_bytes(const pd_model_slot_t *s, pd_dtype_t dtype)
{
    return dtype == PD_DTYPE_I8 ? (uint64_t)s->n_mats * s->rows * sizeof(float) : 0;
}

/* Tensors start on 64-byte boundaries so that vector loads of a row stay aligned. */
static uint64_t pd_model_pad(uint64_t bytes)
{
    return (bytes + 63) & ~(uint64_t)63;
}

/* The bytes of config's weights in dtype: each vector, and each matrix's data and int8
 * scales; padded, each of those parts rounded up as pd_model_alloc_dtype lays them out. */
static uint64_t pd_model_weights_size(const pd_model_config_t *config, pd_dtype_t dtype,
                                      bool padded)
{
    pd_model_slot_t slots[PD_MODEL_N_SLOTS];
    pd_model_slots(config, slots);
    uint64_t total = 0;
    for (int i = 0; i < PD_MODEL_N_SLOTS; i++) {
        if (i == 11 && config->tie_embeddings)
            continue;
        uint64_t data, scale = 0;
        if (!slots[i].is_mat) {
            data = (uint64_t)slots[i].n_mats * slots[i].rows * sizeof(float);
        } else {
            data = pd_model_mat_data_bytes(&slots[i], dtype);
            scale = pd_model_mat_scale_bytes(&slots[i], dtype);
        }
        total += padded ? pd_model_pad(data) + pd_model_pad(scale) : data + scale;
    }
    return total;
}

uint64_t pd_model_config_weight_bytes(const pd_model_config_t *config, pd_dtype_t dtype)
{
    return pd_model_weights_size(config, dtype, false);
}

uint64_t pd_model_config_decode_bytes(const pd_model_config_t *config, pd_dtype_t dtype)
{
    pd_model_slot_t slots[PD_MODEL_N_SLOTS];
    pd_model_slots(config, slots);
    uint64_t total = pd_model_config_weight_bytes(config, dtype);
    uint64_t embed =
        pd_model_mat_data_bytes(&slots[0], dtype) + pd_model_mat_scale_bytes(&slots[0], dtype);
    /* A tied table is read whole as lm_head; an untied one only for its row. */
    if (!config->tie_embeddings)
        total -= embed - embed / config->vocab_size;
    return total;
}

pd_weight_t *pd_model_mat(pd_model_weights_t *w, uint32_t i)
{
    pd_weight_t *mats[PD_MODEL_N_MATS] = {&w->tok_embed, &w->wq,   &w->wk,     &w->wv,     &w->wo,
                                          &w->w_gate,    &w->w_up, &w->w_down, &w->lm_head};
    return i < PD_MODEL_N_MATS ? mats[i] : NULL;
}

uint64_t pd_model_weight_bytes(const pd_model_t *model)
{
    const pd_model_weights_t *w = &model->w;
    const pd_model_config_t *c = &model->config;
    pd_model_sizes_t s = pd_model_sizes(c);
    uint64_t total = ((uint64_t)2 * c->n_layers + 1) * c->dim * sizeof(float);
    for (int i = 12; i < PD_MODEL_N_SLOTS; i++)
        total += s.n[i] * sizeof(float);
    for (uint32_t i = 0; i < PD_MODEL_N_MATS; i++) {
        if (i == PD_MODEL_N_MATS - 1 && c->tie_embeddings)
            break;
        total += pd_weight_bytes(pd_model_mat((pd_model_weights_t *)w, i));
    }
    return total;
}

uint64_t pd_model_decode_bytes(const pd_model_t *model)
{
    uint64_t total = pd_model_weight_bytes(model);
    if (!model->config.tie_embeddings) {
        uint64_t embed = pd_weight_bytes(&model->w.tok_embed);
        total -= embed - embed / model->config.vocab_size;
    }
    return total;
}

int pd_model_dtype(const pd_model_t *model)
{
    pd_model_weights_t *w = (pd_model_weights_t *)&model->w;
    int dtype = (int)w->tok_embed.dtype;
    for (uint32_t i = 1; i < PD_MODEL_N_MATS; i++)
        if ((int)pd_model_mat(w, i)->dtype != dtype)
            return -1;
    return dtype;
}

static void pd_model_storage_free(void *storage, size_t bytes)
{
    (void)bytes;
    free(storage);
}

pd_status_t pd_model_alloc_dtype(const pd_model_config_t *config, pd_dtype_t dtype,
                                 pd_model_t **model_p)
{
    if (model_p == NULL || (unsigned)dtype >= PD_DTYPE_COUNT)
        return PD_ERR_INVALID_PARAM;
    pd_status_t st = pd_model_config_validate(config);
    if (st != PD_OK)
        return st;
    size_t bytes = (size_t)pd_model_weights_size(config, dtype, true);
    pd_model_slot_t slots[PD_MODEL_N_SLOTS];
    pd_model_slots(config, slots);
    pd_model_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return PD_ERR_NO_MEMORY;
    /* 2 MiB-aligned and advised for transparent huge pages: decode streams every weight
     * once per token, and huge pages take the TLB misses out of that stream. */
    const size_t huge = (size_t)2 << 20;
    size_t alloc_bytes = (bytes + huge - 1) / huge * huge;
    char *base = aligned_alloc(huge, alloc_bytes ? alloc_bytes : huge);
    if (base == NULL) {
        pd_log_error("model: cannot allocate %zu bytes of weights", bytes);
        free(m);
        return PD_ERR_NO_MEMORY;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(base, alloc_bytes, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    memset(base, 0, bytes);
    float **vecs[PD_MODEL_N_SLOTS] = {NULL,
                                      &m->w.attn_norm,
                                      NULL,
                                      NULL,
                                      NULL,
                                      NULL,
                                      &m->w.ffn_norm,
                                      NULL,
                                      NULL,
                                      NULL,
                                      &m->w.final_norm,
                                      NULL,
                                      &m->w.bq,
                                      &m->w.bk,
                                      &m->w.bv,
                                      &m->w.q_norm,
                                      &m->w.k_norm};
    pd_weight_t *mats[PD_MODEL_N_SLOTS] = {&m->w.tok_embed, NULL,         &m->w.wq, &m->w.wk,
                                           &m->w.wv,        &m->w.wo,     NULL,     &m->w.w_gate,
                                           &m->w.w_up,      &m->w.w_down, NULL,     &m->w.lm_head};
    uint64_t off = 0;
    for (int i = 0; i < PD_MODEL_N_SLOTS; i++) {
        const pd_model_slot_t *s = &slots[i];
        if (i == 11 && config->tie_embeddings) {
            m->w.lm_head = m->w.tok_embed;
            continue;
        }
        if (!s->is_mat && (uint64_t)s->n_mats * s->rows == 0) {
            *vecs[i] = NULL; /* a variant's vector this config does not have */
            continue;
        }
        if (!s->is_mat) {
            *vecs[i] = (float *)(base + off);
            off += pd_model_pad((uint64_t)s->n_mats * s->rows * sizeof(float));
            continue;
        }
        pd_weight_t *w = mats[i];
        w->dtype = dtype;
        w->n_mats = s->n_mats;
        w->rows = s->rows;
        w->cols = s->cols;
        w->data = base + off;
        off += pd_model_pad(pd_model_mat_data_bytes(s, dtype));
        w->scale = dtype == PD_DTYPE_I8 ? (float *)(base + off) : NULL;
        off += pd_model_pad(pd_model_mat_scale_bytes(s, dtype));
    }
    m->config = *config;
    m->storage = base;
    m->storage_bytes = bytes;
    m->storage_free = pd_model_storage_free;
    *model_p = m;
    return PD_OK;
}

pd_status_t pd_model_alloc(const pd_model_config_t *config, pd_model_t **model_p)
{
    return pd_model_alloc_dtype(config, PD_DTYPE_F32, model_p);
}

static uint64_t pd_model_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform values of standard deviation std: element i of tensor id depends only on
 * (seed, id, i), so a tensor's values do not depend on the others' shapes. */
static void pd_model_fill(float *t, uint64_t n, uint64_t seed, uint64_t id, double std)
{
    const double a = std * sqrt(3.0); /* U(-a, a) has standard deviation a / sqrt(3) */
    uint64_t key = pd_model_mix64(seed ^ pd_model_mix64(id));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = pd_model_mix64(key + i);
        double u = (double)(r >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
        t[i] = (float)((2.0 * u - 1.0) * a);
    }
}

static void pd_model_fill_const(float *t, uint64_t n, float v)
{
    for (uint64_t i = 0; i < n; i++)
        t[i] = v;
}

void pd_model_init_random(pd_model_t *model, uint64_t seed)
{
    const pd_model_config_t *c = &model->config;
    pd_model_weights_t *w = &model->w;
    if (pd_model_dtype(model) != PD_DTYPE_F32) {
        pd_log_error("model: random init needs f32 weights (convert afterwards)");
        return;
    }
    pd_model_sizes_t s = pd_model_sizes(c);
    double d = c->dim, h = c->hidden_dim, qd = (double)c->n_heads * c->head_dim;
    /* Matrices scaled by 1/sqrt(fan_in) keep unit-RMS inputs near unit-RMS outputs; the
     * two residual writers are damped by the depth so the stream stays sane. */
    double damp = 1.0 / sqrt(2.0 * c->n_layers);
    pd_model_fill(pd_weight_f32(&w->tok_embed), s.n[0], seed, 0, 1.0);
    pd_model_fill_const(w->attn_norm, s.n[1], 1.0f);
    pd_model_fill(pd_weight_f32(&w->wq), s.n[2], seed, 2, 1.0 / sqrt(d));
    pd_model_fill(pd_weight_f32(&w->wk), s.n[3], seed, 3, 1.0 / sqrt(d));
    pd_model_fill(pd_weight_f32(&w->wv), s.n[4], seed, 4, 1.0 / sqrt(d));
    pd_model_fill(pd_weight_f32(&w->wo), s.n[5], seed, 5, damp / sqrt(qd));
    pd_model_fill_const(w->ffn_norm, s.n[6], 1.0f);
    pd_model_fill(pd_weight_f32(&w->w_gate), s.n[7], seed, 7, 1.0 / sqrt(d));
    pd_model_fill(pd_weight_f32(&w->w_up), s.n[8], seed, 8, 1.0 / sqrt(d));
    pd_model_fill(pd_weight_f32(&w->w_down), s.n[9], seed, 9, damp / sqrt(h));
    pd_model_fill_const(w->final_norm, s.n[10], 1.0f);
    if (!c->tie_embeddings)
        pd_model_fill(pd_weight_f32(&w->lm_head), s.n[11], seed, 11, 1.0 / sqrt(d));
    /* Biases of the size a trained Qwen2 has relative to its products; q/k norm weights
     * around 1, so that both variants change the numbers a test sees. */
    if (w->bq != NULL) {
        pd_model_fill(w->bq, s.n[12], seed, 12, 0.5);
        pd_model_fill(w->bk, s.n[13], seed, 13, 0.5);
        pd_model_fill(w->bv, s.n[14], seed, 14, 0.5);
    }
    if (w->q_norm != NULL) {
        pd_model_fill(w->q_norm, s.n[15], seed, 15, 0.25);
        pd_model_fill(w->k_norm, s.n[16], seed, 16, 0.25);
        for (uint64_t i = 0; i < s.n[15]; i++) {
            w->q_norm[i] += 1.0f;
            w->k_norm[i] += 1.0f;
        }
    }
}

const char *pd_arch_name(pd_arch_t arch)
{
    return arch == PD_ARCH_QWEN2 ? "qwen2" : arch == PD_ARCH_QWEN3 ? "qwen3" : "llama";
}

bool pd_model_is_eos(const pd_model_config_t *config, int32_t id)
{
    for (uint32_t i = 0; i < config->n_eos && i < PD_MODEL_MAX_EOS; i++)
        if (config->eos_ids[i] == id)
            return true;
    return false;
}

void pd_model_destroy(pd_model_t **model_p)
{
    if (model_p == NULL || *model_p == NULL)
        return;
    pd_model_t *m = *model_p;
    if (m->storage != NULL && m->storage_free != NULL)
        m->storage_free(m->storage, m->storage_bytes);
    free(m);
    *model_p = NULL;
}
