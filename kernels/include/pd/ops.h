/* CPU compute ops and the backend ops table the forward pass runs over.
 *
 * Numerics: every product is computed in a fixed order that depends on nothing but its
 * own operands, so that a row's result never depends on the batch it was computed in,
 * the tile it fell into or the thread that ran it. Matmul rows and RMSNorm use the
 * canonical dot: element k of a length-n dot goes to lane k mod 16; each lane accumulates
 * its elements with fused multiply-add in increasing k; the 16 lanes are then summed
 * pairwise (lane i + lane i+8, then +4, +2, +1). Attention scores use the same lanes and
 * a fixed transposing reduction of 16 keys at a time in which no key's sum touches
 * another's. The AVX-512, AVX2 and scalar builds each keep these orders. */
#ifndef PD_OPS_H
#define PD_OPS_H

#include "pd/kv_layout.h"
#include "pd/model.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The canonical dot product of a (n) and b (n). */
float pd_cpu_dot(const float *a, const float *b, uint32_t n);

/* y (n_tokens, out) = x (n_tokens, in) W^T for output rows [row_begin, row_end), with
 * w (out, in) row-major; accumulate adds the product to y instead of storing it. Every
 * y[t][o] is pd_cpu_dot(w + o*in, x + t*in, in) (plus y[t][o] when accumulating). */
void pd_cpu_matmul(const float *w, const float *x, float *y, uint32_t n_tokens, uint32_t out,
                   uint32_t in, uint32_t row_begin, uint32_t row_end, bool accumulate);

/* The input of a matmul prepared for the weights' dtype: f32 rows for F32 and F16
 * weights, rows rounded to bf16 for BF16 weights, rows quantized to int8 (one scale per
 * row, max |x| / 127) for I8 weights. Each row is prepared on its own, so a token's
 * prepared input never depends on the other tokens. */
typedef struct pd_cpu_act {
    pd_dtype_t dtype;
    const float *f;       /* (n, in) f32 rows */
    const uint16_t *b;    /* (n, in) bf16 rows (BF16) */
    const int8_t *q;      /* (n, in) int8 rows (I8) */
    const float *q_scale; /* (n) scales of q */
    const int32_t *q_sum; /* (n) sums of the elements of each row of q */
} pd_cpu_act_t;

/* Bytes of buffer pd_cpu_act_prepare needs for n rows of in elements (0 for F32, F16). */
size_t pd_cpu_act_bytes(pd_dtype_t dtype, uint32_t n, uint32_t in);

/* Prepare x (n, in) for weights of dtype into buf (pd_cpu_act_bytes, 64-byte aligned). */
void pd_cpu_act_prepare(pd_dtype_t dtype, const float *x, uint32_t n, uint32_t in, void *buf,
                        pd_cpu_act_t *act);

/* f to bf16, round to nearest even, as the activation rounding of pd_cpu_act_prepare. */
uint16_t pd_cpu_bf16_round(float f);

/* Quantize x (n) to q (n) for an int8 matmul: scale = max |x| / 127, q = round(x / scale)
 * (nearest even); returns the sum of q. A zero row gets scale 0; a row with a non-finite
 * element gets scale NaN. */
int32_t pd_cpu_quantize_act(const float *x, uint32_t n, int8_t *q, float *scale_p);

/* y (n_tokens, out) (+)= x W^T for output rows [row_begin, row_end) of one weight matrix w
 * (n_mats 1, rows out, cols in) in any dtype, x prepared for w's dtype. Each y[t][o]
 * depends only on row o of w and row t of x (see matmul.c for the order per dtype). */
void pd_cpu_matmul_w(const pd_weight_t *w, const pd_cpu_act_t *x, float *y, uint32_t n_tokens,
                     uint32_t row_begin, uint32_t row_end, bool accumulate);

/* y (dim) = x (dim) / sqrt(mean(x^2) + eps) * weight (dim); y may equal x. */
void pd_cpu_rmsnorm(const float *x, const float *weight, float *y, uint32_t dim, float eps);

/* Fill the rotation table cs (n_pos, head_dim): for position p, cs[p*head_dim + i] is
 * cos(p * theta^(-2i/head_dim)) for i < head_dim/2 and the sine at i + head_dim/2.
 * Angles are computed in double precision. head_dim must be even. */
void pd_cpu_rope_table(float *cs, uint32_t n_pos, uint32_t head_dim, float theta,
                       const pd_rope_scaling_t *scaling);

/* The RoPE frequencies inv_freq (head_dim / 2): theta^(-2i/head_dim), then, when scaling
 * is given with a factor, Llama 3's adjustment as the reference computes it
 * (transformers' _compute_llama3_parameters): wavelengths 2 pi / f longer than
 * original_max_position / low_freq_factor divide f by factor, shorter than
 * original_max_position / high_freq_factor keep f, and those between blend the two with
 * s = (original_max_position / wavelength - low) / (high - low):
 * f' = (1 - s) f / factor + s f. */
void pd_rope_inv_freq(uint32_t head_dim, float theta, const pd_rope_scaling_t *scaling,
                      double *inv_freq);

/* Rotate x (n_heads, head_dim) in place for one position, cs (head_dim) being that
 * position's row of the rotation table, in the given pairing convention. */
void pd_cpu_rope(float *x, uint32_t n_heads, uint32_t head_dim, const float *cs,
                 pd_rope_style_t style);

/* out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)); out may alias gate or up. */
void pd_cpu_swiglu(const float *gate, const float *up, float *out, size_t n);

/* In-place softmax of x (n), max-subtracted, summed in index order. */
void pd_cpu_softmax(float *x, uint32_t n);

/* Causal attention of one query head over the paged KV pool for one layer.
 * q: (head_dim) already rotated; pool_layer: (n_blocks, 2, B, n_kv_heads, head_dim) f32,
 * the layer's slice of the pool; block_table maps logical block i to a pool block; the
 * query attends positions 0 .. n_ctx - 1; kv_head picks the shared K/V head (grouped-query
 * attention); out: (head_dim); scores: (n_ctx) scratch. The caller validated the table. */
void pd_cpu_attention_head(const float *q, const float *pool_layer, const pd_kv_layout_t *layout,
                           const uint32_t *block_table, uint32_t n_ctx, uint32_t kv_head,
                           float *out, float *scores);

/* The same for n_q query heads that share kv_head: q (n_q, head_dim), out (n_q, head_dim),
 * scores (min(n_q, PD_CPU_ATTN_MAX_Q), n_ctx) scratch. Each query's result equals
 * pd_cpu_attention_head's bitwise. */
void pd_cpu_attention_group(const float *q, uint32_t n_q, const float *pool_layer,
                            const pd_kv_layout_t *layout, const uint32_t *block_table,
                            uint32_t n_ctx, uint32_t kv_head, float *out, float *scores);

/* Queries one attention call handles together (sharing K and V loads); more are split. */
#define PD_CPU_ATTN_MAX_Q 64

/* Attention of consecutive query rows of one sequence: n_rows x group query heads sharing
 * kv_head, query (r, h) at q + r * stride + h * head_dim attending positions
 * 0 .. n_ctx0 + r - 1 (causal), its output at the same offset of out; scores
 * (min(n_rows * group, PD_CPU_ATTN_MAX_Q), n_ctx0 + n_rows - 1) scratch. Each query's
 * result equals pd_cpu_attention_head's bitwise: the rows only share the loads of K and
 * V, as the heads of a group do. */
void pd_cpu_attention_rows(const float *q, size_t stride, uint32_t n_rows, uint32_t group,
                           const float *pool_layer, const pd_kv_layout_t *layout,
                           const uint32_t *block_table, uint32_t n_ctx0, uint32_t kv_head,
                           float *out, float *scores);

/* One sequence of a batch as the attention op sees it: its new tokens are rows
 * first_row .. first_row + n_tokens - 1 of the step's activations, at positions
 * pos .. pos + n_tokens - 1. */
typedef struct pd_attn_seq {
    uint32_t first_row;
    uint32_t n_tokens;
    uint32_t pos;
    const uint32_t *block_table; /* (>= ceil((pos + n_tokens) / B)) */
} pd_attn_seq_t;

/* One product of a shared input in pd_backend_ops_t.matmul_n. */
typedef struct pd_matmul_out {
    pd_weight_t w;   /* one matrix (out, in) */
    float *y;        /* (n, out) */
    bool accumulate; /* y += x W^T instead of y = x W^T */
} pd_matmul_out_t;

/* A compute backend: a const table of operations and its context (ggml style). The
 * forward pass (engine.c) is written once over this table.
 *
 * Memory: activations and the KV pool are backend memory (buf_alloc); weights, norm
 * vectors and the rotation table are passed as host pointers into the model and the
 * engine's table, which a backend with memory of its own took in bind() and translates;
 * index arrays (ids, pos, kv_off, seqs and their block tables) are host memory, which
 * such a backend took in step_begin(). On the CPU backend everything is host memory and
 * each op finishes before it returns; on the CUDA backend ops are queued in order and
 * sync() waits for them and reports the first error. */
/* A byte range at the same offset in two buffers (pd_engine_copy_ranges). */
typedef struct pd_buf_range {
    uint64_t offset;
    uint64_t bytes;
} pd_buf_range_t;

typedef struct pd_backend_ops {
    const char *name;
    void (*destroy)(void *ctx);
    /* Number of compute threads (or streams) the backend runs. */
    uint32_t (*n_threads)(void *ctx);
    /* True when backend memory is host memory (the CPU backend). */
    bool host_memory;
    /* bytes of zeroed backend memory, 64-byte aligned; buf_free releases it (NULL is a
     * no-op). */
    pd_status_t (*buf_alloc)(void *ctx, size_t bytes, void **buf_p);
    void (*buf_free)(void *ctx, void *buf);
    /* Copy bytes within backend memory (ordered with the ops). */
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Copy bytes from backend memory to host memory, or back; both wait until the bytes
     * are there and return the first error of the queued ops. */
    pd_status_t (*copy_to_host)(void *ctx, void *dst_host, const void *src, size_t bytes);
    pd_status_t (*copy_from_host)(void *ctx, void *dst, const void *src_host, size_t bytes);
    /* Copy n ranges between host memory at host and backend memory at dev (same offsets
     * on both sides; to_host picks the direction), waiting once for all of them; NULL:
     * the engine copies range by range. */
    pd_status_t (*copy_ranges)(void *ctx, void *host, void *dev, const pd_buf_range_t *r, size_t n,
                               bool to_host);
    /* Take what the ops will read of model and of the rotation table cs (max_seq_len,
     * head_dim) into backend memory; NULL when ops read host memory directly. */
    pd_status_t (*bind)(void *ctx, const pd_model_t *model, const float *cs);
    /* Take the step's index arrays (n rows, n_seqs sequences, per the ops below) into
     * backend memory before its ops run; NULL when ops read them where they are. */
    pd_status_t (*step_begin)(void *ctx, const int32_t *ids, const uint32_t *pos,
                              const size_t *kv_off, uint32_t n, const pd_attn_seq_t *seqs,
                              uint32_t n_seqs, const pd_kv_layout_t *layout, uint32_t n_heads);
    /* Wait for every queued op; the first error since the last call. NULL: ops finish as
     * they return and cannot fail. */
    pd_status_t (*sync)(void *ctx);
    /* Make room for inputs of up to n rows of up to in elements to matmuls with weights
     * of dtype, so that steps of that size allocate nothing; PD_ERR_NO_MEMORY when it
     * cannot. */
    pd_status_t (*reserve)(void *ctx, pd_dtype_t dtype, uint32_t n, uint32_t in);
    /* out (n, cols) = rows ids (n) of the table (one matrix), widened to f32. */
    void (*get_rows)(void *ctx, const pd_weight_t *table, const int32_t *ids, float *out,
                     uint32_t n);
    /* y (n, dim) = rmsnorm of each row of x (n, dim) times weight (dim). */
    void (*rmsnorm)(void *ctx, const float *x, const float *weight, float *y, uint32_t n,
                    uint32_t dim, float eps);
    /* y (n, out) (+)= x (n, in) W^T, w one matrix (out, in) in any dtype. */
    void (*matmul)(void *ctx, const pd_weight_t *w, const float *x, float *y, uint32_t n,
                   bool accumulate);
    /* Several products of one input x (n, in), e.g. Q, K and V, as one parallel job. */
    void (*matmul_n)(void *ctx, const float *x, uint32_t n, const pd_matmul_out_t *outs,
                     uint32_t n_outs);
    /* h (n, hidden) = silu(x W_gate^T) * (x W_up^T) with x (n, in) and both weights one
     * matrix (hidden, in); up (n, hidden) is scratch. */
    void (*ffn_gate_up)(void *ctx, const pd_weight_t *w_gate, const pd_weight_t *w_up,
                        const float *x, float *h, float *up, uint32_t n);
    /* Rotate q (n, n_heads, hd) and k (n, n_kv_heads, hd) at positions pos (n) using cs
     * (max_pos, hd), then store k and v (n, n_kv_heads, hd) into the pool layer at the
     * float offsets kv_off (n) (K row; V is B * n_kv_heads * hd floats after it). */
    void (*rope_store)(void *ctx, float *q, float *k, const float *v, const uint32_t *pos,
                       const size_t *kv_off, uint32_t n, const float *cs,
                       const pd_model_config_t *config, const pd_kv_layout_t *layout,
                       float *pool_layer);
    /* out (n, n_heads, hd) = causal attention of q (n, n_heads, hd) over the pool layer for
     * the sequences seqs (n_seqs) that cover the n rows. */
    void (*attention)(void *ctx, const float *q, const float *pool_layer,
                      const pd_kv_layout_t *layout, const pd_attn_seq_t *seqs, uint32_t n_seqs,
                      uint32_t n_heads, float *out);
    /* out (n) = silu(gate (n)) * up (n). */
    void (*swiglu)(void *ctx, const float *gate, const float *up, float *out, size_t n);
    /* y (n, cols) += bias (cols) on every row (Qwen2's q, k, v biases); NULL in a backend
     * without it, which then refuses such models when the engine is created. */
    void (*add_bias)(void *ctx, float *y, const float *bias, uint32_t n, uint32_t cols);
} pd_backend_ops_t;

typedef struct pd_backend {
    const pd_backend_ops_t *ops;
    void *ctx;
} pd_backend_t;

/* The uncached read rate in GB/s (1e9 bytes per second) of n_threads threads streaming a
 * buffer of `bytes` (larger than every cache) once, the median of `runs` runs; 0 when it
 * cannot be measured. The bound of a decode step that reads every weight once is this
 * rate over the bytes it reads. */
double pd_cpu_read_rate(size_t bytes, uint32_t n_threads, uint32_t runs);

/* Create the CPU backend with n_threads threads (0: one per online core); max_ctx is the
 * longest context attention will see and max_q_per_kv the most query heads sharing a KV
 * head (together they size the per-thread score scratch). */
PD_MUST_CHECK pd_status_t pd_backend_cpu_create(uint32_t n_threads, uint32_t max_ctx,
                                                uint32_t max_q_per_kv, pd_backend_t *backend_p);

/* Element types of weight matrices on the CUDA device. */
typedef enum pd_cuda_weights {
    PD_CUDA_WEIGHTS_MODEL = 0, /* the model's own dtype; int8 stacks are widened to bf16 */
    PD_CUDA_WEIGHTS_F32 = 1,
    PD_CUDA_WEIGHTS_F16 = 2,
    PD_CUDA_WEIGHTS_BF16 = 3
} pd_cuda_weights_t;

/* Options of the CUDA backend. The device is the first one CUDA_VISIBLE_DEVICES leaves. */
typedef struct pd_backend_cuda_opts {
    pd_cuda_weights_t weights; /* matrices on the device: f32 (cuBLAS f32 products) or 16-bit
                                * (tensor cores, activations rounded to the same type) */
    bool tiled_gemm;           /* the plain tiled kernel instead of cuBLASLt (comparison) */
} pd_backend_cuda_opts_t;

/* Create the CUDA backend for models of config: a stream, cuBLASLt, the attention kernels
 * for config's head_dim (16, 32, 64, 128 or 256). PD_ERR_UNSUPPORTED when this build has
 * no CUDA or the shape is not built, PD_ERR_NOT_FOUND when no device answers. */
PD_MUST_CHECK pd_status_t pd_backend_cuda_create(const pd_backend_cuda_opts_t *opts,
                                                 const pd_model_config_t *config,
                                                 pd_backend_t *backend_p);

/* CUDA devices this process can use: 0 when the build has no CUDA or no device answers,
 * with the reason in why (why_bytes, may be NULL). */
int pd_cuda_device_count(char *why, size_t why_bytes);

/* Destroy a backend created by any pd_backend_*_create; accepts a zeroed backend. */
void pd_backend_destroy(pd_backend_t *backend);

/* Size an engine's step scratch for up to max_tokens new tokens in max_seqs sequences
 * and touch its pages now, so that no later step of that size allocates or faults
 * (workers call it at startup; steps still grow the scratch when they need more).
 * PD_ERR_NO_MEMORY leaves the engine usable with its previous scratch freed. */
PD_MUST_CHECK pd_status_t pd_engine_reserve(pd_engine_t *engine, uint32_t max_tokens,
                                            uint32_t max_seqs);

/* An engine on the CUDA backend with opts (pd_engine_create with PD_BACKEND_CUDA keeps the
 * model's dtype and uses cuBLASLt). PD_ERR_UNSUPPORTED in a build without CUDA, PD_ERR_NOT_FOUND
 * without a device. */
PD_MUST_CHECK pd_status_t pd_engine_create_cuda(const pd_model_t *model,
                                                const pd_backend_cuda_opts_t *opts,
                                                pd_engine_t **engine_p);

/* Memory of the engine's backend (the KV pool a forward step takes): bytes, zeroed; on
 * the CPU backend host memory, on the CUDA backend device memory. */
PD_MUST_CHECK pd_status_t pd_engine_buf_alloc(pd_engine_t *engine, size_t bytes, void **buf_p);
void pd_engine_buf_free(pd_engine_t *engine, void *buf);

/* Copy between host memory and the engine's backend memory; both wait for the bytes. */
PD_MUST_CHECK pd_status_t pd_engine_copy_to_host(pd_engine_t *engine, void *dst_host,
                                                 const void *src, size_t bytes);
PD_MUST_CHECK pd_status_t pd_engine_copy_from_host(pd_engine_t *engine, void *dst,
                                                   const void *src_host, size_t bytes);

/* Copy n ranges between host memory at host and the engine's backend memory at dev, the
 * same offsets on both sides, to the host or from it; one wait for all of them. */
PD_MUST_CHECK pd_status_t pd_engine_copy_ranges(pd_engine_t *engine, void *host, void *dev,
                                                const pd_buf_range_t *r, size_t n, bool to_host);

/* The engine's backend (its ops after bind: tests and benchmarks call single ops). */
const pd_backend_t *pd_engine_backend(const pd_engine_t *engine);

/* "cpu" or "cuda". */
const char *pd_engine_backend_name(const pd_engine_t *engine);

/* Compute threads an engine runs (n_threads of pd_engine_create, 0 resolved). */
uint32_t pd_engine_n_threads(const pd_engine_t *engine);

#endif
