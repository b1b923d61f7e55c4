/* A Llama-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU), f32 compute,
 * run over a backend ops table and a paged KV pool (see pd/kv_layout.h). */
#ifndef PD_MODEL_H
#define PD_MODEL_H

#include "pd/kv_layout.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum pd_rope_style {
    PD_ROPE_HALF = 0, /* rotate-half (Hugging Face Llama): pairs (i, i + head_dim/2) */
    PD_ROPE_PAIR = 1  /* interleaved pairs (llama2.c, Meta): pairs (2i, 2i + 1) */
} pd_rope_style_t;

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
} pd_model_config_t;

/* Weights, all f32, row-major (out, in): y = W x is y[o] = sum_i W[o*in + i] x[i]. */
typedef struct pd_model_weights {
    float *tok_embed;  /* (vocab, dim) */
    float *attn_norm;  /* (n_layers, dim) */
    float *wq;         /* (n_layers, n_heads * head_dim, dim) */
    float *wk;         /* (n_layers, n_kv_heads * head_dim, dim) */
    float *wv;         /* (n_layers, n_kv_heads * head_dim, dim) */
    float *wo;         /* (n_layers, dim, n_heads * head_dim) */
    float *ffn_norm;   /* (n_layers, dim) */
    float *w_gate;     /* (n_layers, hidden_dim, dim) */
    float *w_up;       /* (n_layers, hidden_dim, dim) */
    float *w_down;     /* (n_layers, dim, hidden_dim) */
    float *final_norm; /* (dim) */
    float *lm_head;    /* (vocab, dim); equals tok_embed when tied */
} pd_model_weights_t;

typedef struct pd_model {
    pd_model_config_t config;
    pd_model_weights_t w;
    void *storage; /* owner of the weight memory (one allocation or a mapping) */
    size_t storage_bytes;
    void (*storage_free)(void *storage, size_t bytes);
} pd_model_t;

/* Check a config for missing or absurd values; PD_ERR_FORMAT with a logged reason. */
pd_status_t pd_model_config_validate(const pd_model_config_t *config);

/* Number of parameters (lm_head counted once when tied). */
uint64_t pd_model_n_params(const pd_model_config_t *config);

/* Allocate zeroed f32 weights for config and point every tensor into one allocation. */
pd_status_t pd_model_alloc(const pd_model_config_t *config, pd_model_t **model_p);

/* Fill weights with a seeded random initialisation (deterministic for a seed). */
void pd_model_init_random(pd_model_t *model, uint64_t seed);

/* Free a model from any loader; accepts NULL and clears the caller's pointer. */
void pd_model_destroy(pd_model_t **model_p);

/* Load a model: a Hugging Face checkpoint directory (config.json + *.safetensors) or a
 * llama2.c .bin file. PD_ERR_FORMAT / PD_ERR_IO with a logged reason on bad input. */
pd_status_t pd_model_load(const char *path, pd_model_t **model_p);

/* The compute engine: a backend (ops table + context) and its threads. */
typedef struct pd_engine pd_engine_t;

typedef enum pd_backend_kind { PD_BACKEND_CPU = 0, PD_BACKEND_CUDA = 1 } pd_backend_kind_t;

/* Create an engine for a model on a backend with n_threads compute threads (0: all
 * cores). The model is borrowed and must outlive the engine. */
pd_status_t pd_engine_create(const pd_model_t *model, pd_backend_kind_t kind, uint32_t n_threads,
                             pd_engine_t **engine_p);
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
 * kv_pool: (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32 per `layout`.
 * Each sequence's results are bitwise independent of the other sequences in the batch.
 * Returns PD_ERR_OUT_OF_RANGE for a token id outside the vocabulary, PD_ERR_CONTEXT past
 * max_seq_len, PD_ERR_INVALID_PARAM for a short block table or a bad block id. */
pd_status_t pd_engine_forward(pd_engine_t *engine, float *kv_pool, const pd_kv_layout_t *layout,
                              pd_fwd_seq_t *seqs, uint32_t n_seqs, pd_fwd_layer_cb on_layer,
                              void *cb_arg);

#endif
