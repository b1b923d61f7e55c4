/* A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU): weights in
 * their dtype (f32, f16, bf16 or int8), f32 activations and accumulation, run over a backend ops
 * table and a paged KV pool (see pd/kv_layout.h). */
#ifndef PD_MODEL_H
#define PD_MODEL_H

#include "pd/kv_layout.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pd_rope_style {
    PD_ROPE_HALF = 0, /* rotate-half (Hugging Face Llama): pairs (i, i + head_dim/2) */
    PD_ROPE_PAIR = 1  /* interleaved pairs (llama2.c, Meta): pairs (2i, 2i + 1) */
} pd_rope_style_t;

typedef enum pd_arch {
    PD_ARCH_LLAMA = 0, /* model_type llama, mistral */
    PD_ARCH_QWEN2 = 1, /* qwen2: q, k, v projections with biases */
    PD_ARCH_QWEN3 = 2  /* qwen3: per-head RMSNorm of q and k (q_norm, k_norm) */
} pd_arch_t;

/* "llama", "qwen2", "qwen3". */
const char *pd_arch_name(pd_arch_t arch);

typedef struct pd_rope_scaling {
    float factor; /* 0: no scaling */
    float low_freq_factor;
    float high_freq_factor;
    uint32_t original_max_position; /* original_max_position_embeddings */
} pd_rope_scaling_t;

/* Bits of pd_model_config_t.gen_given. */
enum { PD_GEN_HAS_TEMPERATURE = 1u << 0, PD_GEN_HAS_TOP_P = 1u << 1, PD_GEN_HAS_TOP_K = 1u << 2 };

/* Most eos ids a config carries. */
#define PD_MODEL_MAX_EOS 8

typedef struct pd_model_config {
    uint32_t dim;        /* hidden size */
    uint32_t hidden_dim; /* SwiGLU intermediate size */
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t n_kv_heads; /* divides n_heads */
    uint32_t head_dim;   /* dim / n_heads unless the checkpoint says otherwise */
    uint32_t vocab_size;
    uint32_t max_seq_len; /* context length */
    float rms_eps;
    float rope_theta;
    pd_rope_style_t rope_style;
    bool tie_embeddings; /* lm_head shares tok_embed */
    char model_id[64];   /* stable name, salts block hashes */
    /* The decoder variant: Llama, Qwen2/2.5 (biases on q, k and v), Qwen3 (RMSNorm of
     * every q and k head before RoPE). */
    pd_arch_t arch;
    /* Llama 3.x RoPE frequency scaling (rope_scaling of rope_type "llama3"); factor 0:
     * none. */
    pd_rope_scaling_t rope_scaling;
    /* Generation: the ids that end it (config.json's and generation_config.json's
     * eos_token_id, an int or a list; none: the tokenizer's EOS), BOS (bos_token_id, when
     * has_bos), and the checkpoint's sampling defaults (generation_config.json), each
     * valid when its PD_GEN_HAS_* bit is set in gen_given. */
    int32_t eos_ids[PD_MODEL_MAX_EOS];
    uint32_t n_eos;
    int32_t bos_id;
    bool has_bos;
    uint32_t gen_given;
    float gen_temperature;
    float gen_top_p;
    uint32_t gen_top_k;
} pd_model_config_t;

/* Whether id ends generation for config (one of its eos_ids). */
bool pd_model_is_eos(const pd_model_config_t *config, int32_t id);

/* Element types of weight matrices. F16 and BF16 are IEEE half and bfloat16; I8 is
 * symmetric int8 with one f32 scale per matrix row (w = scale[row] * q). */
typedef enum pd_dtype {
    PD_DTYPE_F32 = 0,
    PD_DTYPE_F16 = 1,
    PD_DTYPE_BF16 = 2,
    PD_DTYPE_I8 = 3
} pd_dtype_t;

#define PD_DTYPE_COUNT 4

/* "F32", "F16", "BF16", "I8" (the safetensors names). */
const char *pd_dtype_name(pd_dtype_t dtype);

/* Parse "f32"/"f16"/"bf16"/"int8" (any case; also "float32", "float16", "bfloat16",
 * "i8"); PD_ERR_INVALID_PARAM for anything else. */
PD_MUST_CHECK pd_status_t pd_dtype_parse(const char *name, pd_dtype_t *dtype_p);

/* Bytes of one element of dtype (the row scales of I8 are not counted). */
size_t pd_dtype_size(pd_dtype_t dtype);

/* A stack of n_mats weight matrices of shape (rows, cols), row-major, all in one dtype:
 * element (m, r, c) is at index (m * rows + r) * cols + c of data. An I8 stack also has
 * scale (n_mats, rows): the value of an element is scale[m * rows + r] * q. This is the
 * form every backend reads weights in; y = W x is y[r] = sum_c W[r][c] x[c]. */
typedef struct pd_weight {
    void *data;   /* (n_mats, rows, cols) elements of dtype */
    float *scale; /* (n_mats, rows) row scales when dtype is PD_DTYPE_I8, else NULL */
    pd_dtype_t dtype;
    uint32_t n_mats;
    uint32_t rows;
    uint32_t cols;
} pd_weight_t;

/* Matrix i of a stack, as a stack of one sharing its memory. */
static inline pd_weight_t pd_weight_at(const pd_weight_t *w, uint32_t i)
{
    pd_weight_t v = *w;
    size_t per = (size_t)w->rows * w->cols;
    v.data = (char *)w->data + (size_t)i * per * pd_dtype_size(w->dtype);
    v.scale = w->scale != NULL ? w->scale + (size_t)i * w->rows : NULL;
    v.n_mats = 1;
    return v;
}

/* The f32 data of a stack, or NULL when it is in another dtype. */
static inline float *pd_weight_f32(const pd_weight_t *w)
{
    return w->dtype == PD_DTYPE_F32 ? (float *)w->data : NULL;
}

/* Bytes of a stack's data and scales. */
uint64_t pd_weight_bytes(const pd_weight_t *w);

/* Row r of matrix m of a stack widened to f32: out (cols). */
void pd_weight_row_f32(const pd_weight_t *w, uint32_t m, uint32_t r, float *out);

/* Quantize x (n) to q (n) with one scale: scale = max |x| / 127, q = round(x / scale) (to
 * nearest even, in [-127, 127]); a row of zeros (or with no finite maximum) gets scale 0
 * and q 0. */
void pd_weight_quantize_row(const float *x, uint32_t n, int8_t *q, float *scale_p);

/* Copy src into dst of the same shape in dst's dtype (see pd_model_convert).
 * PD_ERR_INVALID_PARAM when the shapes differ. */
PD_MUST_CHECK pd_status_t pd_weight_convert(const pd_weight_t *src, pd_weight_t *dst);

/* Weights: matrices in their dtype (pd_weight_t), norm vectors always f32. */
typedef struct pd_model_weights {
    pd_weight_t tok_embed; /* (1, vocab, dim) */
    float *attn_norm;      /* (n_layers, dim) */
    pd_weight_t wq;        /* (n_layers, n_heads * head_dim, dim) */
    pd_weight_t wk;        /* (n_layers, n_kv_heads * head_dim, dim) */
    pd_weight_t wv;        /* (n_layers, n_kv_heads * head_dim, dim) */
    pd_weight_t wo;        /* (n_layers, dim, n_heads * head_dim) */
    float *ffn_norm;       /* (n_layers, dim) */
    pd_weight_t w_gate;    /* (n_layers, hidden_dim, dim) */
    pd_weight_t w_up;      /* (n_layers, hidden_dim, dim) */
    pd_weight_t w_down;    /* (n_layers, dim, hidden_dim) */
    float *final_norm;     /* (dim) */
    pd_weight_t lm_head;   /* (1, vocab, dim); the same memory as tok_embed when tied */
    float *bq;             /* (n_layers, n_heads * head_dim), PD_ARCH_QWEN2 only, else NULL */
    float *bk;             /* (n_layers, n_kv_heads * head_dim), PD_ARCH_QWEN2 only */
    float *bv;             /* (n_layers, n_kv_heads * head_dim), PD_ARCH_QWEN2 only */
    float *q_norm;         /* (n_layers, head_dim), PD_ARCH_QWEN3 only, else NULL */
    float *k_norm;         /* (n_layers, head_dim), PD_ARCH_QWEN3 only */
} pd_model_weights_t;

/* Number of matrix stacks in pd_model_weights_t, and stack i of it (tok_embed, wq, wk,
 * wv, wo, w_gate, w_up, w_down, lm_head in that order). */
#define PD_MODEL_N_MATS 9
pd_weight_t *pd_model_mat(pd_model_weights_t *w, uint32_t i);

typedef struct pd_model {
    pd_model_config_t config;
    pd_model_weights_t w;
    void *storage; /* owner of the weight memory (one allocation or a mapping) */
    size_t storage_bytes;
    void (*storage_free)(void *storage, size_t bytes);
} pd_model_t;

/* Check a config for missing or absurd values; PD_ERR_FORMAT with a logged reason. */
PD_MUST_CHECK pd_status_t pd_model_config_validate(const pd_model_config_t *config);

/* Number of parameters (lm_head counted once when tied). */
uint64_t pd_model_n_params(const pd_model_config_t *config);

/* Allocate zeroed f32 weights for config and point every tensor into one allocation. */
PD_MUST_CHECK pd_status_t pd_model_alloc(const pd_model_config_t *config, pd_model_t **model_p);

/* The same with every matrix in dtype (I8 scales zeroed); norms stay f32. */
PD_MUST_CHECK pd_status_t pd_model_alloc_dtype(const pd_model_config_t *config, pd_dtype_t dtype,
                                               pd_model_t **model_p);

/* Bytes of all weights (data and scales; a tied lm_head once), and of the weights one
 * decode step reads: every matrix but the embedding table, of which it reads one row. */
uint64_t pd_model_weight_bytes(const pd_model_t *model);
uint64_t pd_model_decode_bytes(const pd_model_t *model);

/* The same two figures for a config whose matrices would all be in dtype. */
uint64_t pd_model_config_weight_bytes(const pd_model_config_t *config, pd_dtype_t dtype);
uint64_t pd_model_config_decode_bytes(const pd_model_config_t *config, pd_dtype_t dtype);

/* The dtype of the model's matrices, or -1 when they differ. */
int pd_model_dtype(const pd_model_t *model);

/* A copy of model with every matrix in dtype: F32/F16/BF16 round to nearest even from
 * f32 values; I8 quantizes each row symmetrically (scale = max |w| / 127, q = round(w /
 * scale)). The copy's model_id is the source's plus "-<dtype>" (lower case) when any
 * matrix changed dtype, since its results differ. PD_ERR_NO_MEMORY on failure. */
PD_MUST_CHECK pd_status_t pd_model_convert(const pd_model_t *model, pd_dtype_t dtype,
                                           pd_model_t **out_p);

/* Reorder the q and k rows of every head from interleaved-pair RoPE (llama2.c, Meta) to
 * rotate-half RoPE (Hugging Face): new row c * head_dim / 2 + i of a head is old row
 * 2i + c, as Hugging Face's Llama converter does; any dtype (row scales move with their
 * rows). The model then computes the same function with PD_ROPE_HALF, up to the order of
 * its sums, and can be written as a Hugging Face checkpoint. The weights must be writable
 * (the llama2.c loader's are). No-op for a half model; PD_ERR_UNSUPPORTED for q/k biases
 * or norms; PD_ERR_NO_MEMORY when a row buffer cannot be had. */
PD_MUST_CHECK pd_status_t pd_model_rope_to_half(pd_model_t *model);

/* Fill weights with a seeded random initialisation (deterministic for a seed). */
void pd_model_init_random(pd_model_t *model, uint64_t seed);

/* Free a model from any loader; accepts NULL and clears the caller's pointer. */
void pd_model_destroy(pd_model_t **model_p);

/* Load a model: a Hugging Face checkpoint directory (config.json + *.safetensors) or a
 * llama2.c .bin file. PD_ERR_FORMAT / PD_ERR_IO with a logged reason on bad input. */
PD_MUST_CHECK pd_status_t pd_model_load(const char *path, pd_model_t **model_p);

/* Load a model as pd_model_load does, then convert its matrices to dtype when they are
 * not all in it already (pd_model_convert: the model id gains "-<dtype>"). The file's own
 * dtype is kept by pd_model_load. */
PD_MUST_CHECK pd_status_t pd_model_load_dtype(const char *path, pd_dtype_t dtype,
                                              pd_model_t **model_p);

/* The compute engine: a backend (ops table + context) and its threads. */
typedef struct pd_engine pd_engine_t;

typedef enum pd_backend_kind { PD_BACKEND_CPU = 0, PD_BACKEND_CUDA = 1 } pd_backend_kind_t;

/* Create an engine for a model on a backend with n_threads compute threads (0: all
 * cores). The model is borrowed and must outlive the engine. */
PD_MUST_CHECK pd_status_t pd_engine_create(const pd_model_t *model, pd_backend_kind_t kind,
                                           uint32_t n_threads, pd_engine_t **engine_p);
void pd_engine_destroy(pd_engine_t **engine_p);

/* One sequence's part of a forward step. The sequence already has `pos` tokens in its
 * KV blocks; this step appends n_tokens more at positions pos .. pos + n_tokens - 1 and
 * writes their K and V into the blocks named by block_table (block i of the sequence
 * holds positions i*B .. i*B + B - 1). block_table must cover pos + n_tokens tokens. */
typedef struct pd_fwd_seq {
    const int32_t *tokens; /* (n_tokens) */
    uint32_t n_tokens;
    uint32_t pos;
    const uint32_t *block_table; /* (n_table) block ids in the pool */
    uint32_t n_table;
    float *logits; /* (vocab) logits of the last new token, or NULL */
} pd_fwd_seq_t;

/* Called after layer `layer`'s K and V of every sequence in the step are in the pool,
 * before the next layer computes: prefill pushes that layer while the rest computes. */
typedef void (*pd_fwd_layer_cb)(void *arg, uint32_t layer);

/* Run one step over a batch of sequences (prefill chunks and decode tokens mixed).
 * kv_pool: (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32 per `layout`, in the
 * engine's backend memory (pd_engine_buf_alloc; host memory on the CPU backend).
 * Each sequence's results are bitwise independent of the other sequences in the batch.
 * Returns PD_ERR_OUT_OF_RANGE for a token id outside the vocabulary, PD_ERR_CONTEXT past
 * max_seq_len, PD_ERR_INVALID_PARAM for a short block table or a bad block id. */
PD_MUST_CHECK pd_status_t pd_engine_forward(pd_engine_t *engine, float *kv_pool,
                                            const pd_kv_layout_t *layout, pd_fwd_seq_t *seqs,
                                            uint32_t n_seqs, pd_fwd_layer_cb on_layer,
                                            void *cb_arg);

#endif
