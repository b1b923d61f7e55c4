/* The engine: the Llama forward pass written once over a backend ops table, with the
 * step's validation, scratch management and the paged KV writes. */
#include "pd/model.h"
#include "pd/ops.h"

#include "pd/log.h"

#include <stdlib.h>
#include <string.h>

struct pd_engine {
    const pd_model_t *model; /* borrowed */
    pd_backend_t be;
    /* Activations (x .. up, lx, lout) are backend memory; index arrays are host memory. */
    float *rope_cs; /* (max_seq_len, head_dim) */
    /* Step scratch, sized for cap_tokens rows and cap_seqs sequences; grown rarely. */
    uint32_t cap_tokens;
    uint32_t cap_seqs;
    float *x;             /* (cap_tokens, dim) residual stream */
    float *xn;            /* (cap_tokens, dim) normed input of a block */
    float *q;             /* (cap_tokens, n_heads * head_dim) */
    float *k;             /* (cap_tokens, n_kv_heads * head_dim) */
    float *v;             /* (cap_tokens, n_kv_heads * head_dim) */
    float *att;           /* (cap_tokens, n_heads * head_dim) */
    float *gate;          /* (cap_tokens, hidden_dim) */
    float *up;            /* (cap_tokens, hidden_dim) */
    int32_t *ids;         /* (cap_tokens) */
    uint32_t *pos;        /* (cap_tokens) */
    size_t *kv_off;       /* (cap_tokens) float offset of each token's K row in a layer slice */
    pd_attn_seq_t *aseqs; /* (cap_seqs) */
    float *lx;            /* (cap_seqs, dim) last rows of the sequences that want logits */
    float *lout;          /* (cap_seqs, vocab) */
    uint32_t *lseq;       /* (cap_seqs) which sequence each logits row belongs to */
};

static void pd_engine_buf_release(pd_engine_t *e, float **buf_p)
{
    e->be.ops->buf_free(e->be.ctx, *buf_p);
    *buf_p = NULL;
}

static void pd_engine_scratch_free(pd_engine_t *e)
{
    pd_engine_buf_release(e, &e->x);
    pd_engine_buf_release(e, &e->xn);
    pd_engine_buf_release(e, &e->q);
    pd_engine_buf_release(e, &e->k);
    pd_engine_buf_release(e, &e->v);
    pd_engine_buf_release(e, &e->att);
    pd_engine_buf_release(e, &e->gate);
    pd_engine_buf_release(e, &e->up);
    free(e->ids);
    free(e->pos);
    free(e->kv_off);
    e->x = e->xn = e->q = e->k = e->v = e->att = e->gate = e->up = NULL;
    e->ids = NULL;
    e->pos = NULL;
    e->kv_off = NULL;
    e->cap_tokens = 0;
}

static void pd_engine_seq_scratch_free(pd_engine_t *e)
{
    free(e->aseqs);
    pd_engine_buf_release(e, &e->lx);
    pd_engine_buf_release(e, &e->lout);
    free(e->lseq);
    e->aseqs = NULL;
    e->lx = e->lout = NULL;
    e->lseq = NULL;
    e->cap_seqs = 0;
}

static void *pd_engine_alloc_f(size_t n)
{
    return aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
}

/* n floats of backend memory, or NULL. */
static float *pd_engine_buf_f(pd_engine_t *e, size_t n)
{
    void *p = NULL;
    return e->be.ops->buf_alloc(e->be.ctx, n * sizeof(float), &p) == PD_OK ? p : NULL;
}

/* Make room for n_tokens rows and n_seqs sequences; existing contents are not kept. */
static pd_status_t pd_engine_scratch_reserve(pd_engine_t *e, uint32_t n_tokens, uint32_t n_seqs)
{
    const pd_model_config_t *c = &e->model->config;
    if (n_tokens > e->cap_tokens) {
        uint32_t cap = e->cap_tokens ? e->cap_tokens : 16;
        while (cap < n_tokens)
            cap = cap > UINT32_MAX / 2 ? n_tokens : cap * 2;
        pd_engine_scratch_free(e);
        size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
        e->x = pd_engine_buf_f(e, (size_t)cap * c->dim);
        e->xn = pd_engine_buf_f(e, (size_t)cap * c->dim);
        e->q = pd_engine_buf_f(e, cap * qd);
        e->k = pd_engine_buf_f(e, cap * kvd);
        e->v = pd_engine_buf_f(e, cap * kvd);
        e->att = pd_engine_buf_f(e, cap * qd);
        e->gate = pd_engine_buf_f(e, (size_t)cap * c->hidden_dim);
        e->up = pd_engine_buf_f(e, (size_t)cap * c->hidden_dim);
        e->ids = malloc(cap * sizeof(int32_t));
        e->pos = malloc(cap * sizeof(uint32_t));
        e->kv_off = malloc(cap * sizeof(size_t));
        if (!e->x || !e->xn || !e->q || !e->k || !e->v || !e->att || !e->gate || !e->up ||
            !e->ids || !e->pos || !e->kv_off) {
            pd_engine_scratch_free(e);
            pd_log_error("engine: no memory for %u tokens of scratch", cap);
            return PD_ERR_NO_MEMORY;
        }
        e->cap_tokens = cap;
        /* The matmul inputs prepared for each weight dtype the model has. */
        pd_model_weights_t *w = (pd_model_weights_t *)&e->model->w;
        /* (the embedding table is only read by row; lm_head sees one row a sequence) */
        for (uint32_t i = 1; i + 1 < PD_MODEL_N_MATS; i++) {
            const pd_weight_t *m = pd_model_mat(w, i);
            pd_status_t st = e->be.ops->reserve(e->be.ctx, m->dtype, cap, m->cols);
            if (st != PD_OK) {
                pd_engine_scratch_free(e);
                pd_log_error("engine: no memory for %u tokens of matmul input", cap);
                return st;
            }
        }
    }
    if (n_seqs > e->cap_seqs) {
        uint32_t cap = e->cap_seqs ? e->cap_seqs : 8;
        while (cap < n_seqs)
            cap = cap > UINT32_MAX / 2 ? n_seqs : cap * 2;
        pd_engine_seq_scratch_free(e);
        e->aseqs = malloc(cap * sizeof(pd_attn_seq_t));
        e->lx = pd_engine_buf_f(e, (size_t)cap * c->dim);
        e->lout = pd_engine_buf_f(e, (size_t)cap * c->vocab_size);
        e->lseq = malloc(cap * sizeof(uint32_t));
        if (!e->aseqs || !e->lx || !e->lout || !e->lseq) {
            pd_engine_seq_scratch_free(e);
            pd_log_error("engine: no memory for %u sequences of scratch", cap);
            return PD_ERR_NO_MEMORY;
        }
        e->cap_seqs = cap;
        const pd_weight_t *lm = &e->model->w.lm_head;
        pd_status_t st = e->be.ops->reserve(e->be.ctx, lm->dtype, cap, lm->cols);
        if (st != PD_OK) {
            pd_engine_seq_scratch_free(e);
            pd_log_error("engine: no memory for %u sequences of matmul input", cap);
            return st;
        }
    }
    return PD_OK;
}

/* An engine on the backend of kind (cuda options in cuda_opts). */
static pd_status_t pd_engine_create_on(const pd_model_t *model, pd_backend_kind_t kind,
                                       uint32_t n_threads, const pd_backend_cuda_opts_t *cuda_opts,
                                       pd_engine_t **engine_p)
{
    if (model == NULL || engine_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t st = pd_model_config_validate(&model->config);
    if (st != PD_OK)
        return st;
    if (kind != PD_BACKEND_CPU && kind != PD_BACKEND_CUDA) {
        pd_log_error("engine: backend %d is not built into this library", (int)kind);
        return PD_ERR_UNSUPPORTED;
    }
    const pd_model_config_t *c = &model->config;
    /* The CUDA backend computes the Llama decoder only: refuse the variants by name
     * rather than run them without their biases or norms. */
    if (kind == PD_BACKEND_CUDA && c->arch != PD_ARCH_LLAMA) {
        pd_log_error("engine: the cuda backend does not implement %s (%s); use the cpu "
                     "backend",
                     pd_arch_name(c->arch),
                     c->arch == PD_ARCH_QWEN2 ? "q/k/v projection biases" : "per-head q/k RMSNorm");
        return PD_ERR_UNSUPPORTED;
    }
    pd_engine_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return PD_ERR_NO_MEMORY;
    e->model = model;
    st = PD_ERR_NO_MEMORY;
    e->rope_cs = pd_engine_alloc_f((size_t)c->max_seq_len * c->head_dim);
    if (e->rope_cs == NULL)
        goto err_free_engine;
    pd_cpu_rope_table(e->rope_cs, c->max_seq_len, c->head_dim, c->rope_theta, &c->rope_scaling);
    if (kind == PD_BACKEND_CUDA)
        st = pd_backend_cuda_create(cuda_opts, c, &e->be);
    else
        st = pd_backend_cpu_create(n_threads, c->max_seq_len, c->n_heads / c->n_kv_heads, &e->be);
    if (st != PD_OK)
        goto err_free_rope;
    if (model->w.bq != NULL && e->be.ops->add_bias == NULL) {
        pd_log_error("engine: the %s backend does not implement q/k/v biases (%s)", e->be.ops->name,
                     pd_arch_name(c->arch));
        st = PD_ERR_UNSUPPORTED;
        goto err_destroy_backend;
    }
    if (e->be.ops->bind != NULL) {
        st = e->be.ops->bind(e->be.ctx, model, e->rope_cs);
        if (st != PD_OK)
            goto err_destroy_backend;
    }
    /* A first scratch size that covers decode batches without growing. */
    st = pd_engine_scratch_reserve(e, 64, 16);
    if (st != PD_OK)
        goto err_destroy_backend;
    *engine_p = e;
    return PD_OK;

err_destroy_backend:
    pd_engine_scratch_free(e);
    pd_engine_seq_scratch_free(e);
    pd_backend_destroy(&e->be);
err_free_rope:
    free(e->rope_cs);
err_free_engine:
    free(e);
    return st;
}

pd_status_t pd_engine_create(const pd_model_t *model, pd_backend_kind_t kind, uint32_t n_threads,
                             pd_engine_t **engine_p)
{
    const pd_backend_cuda_opts_t cuda = {PD_CUDA_WEIGHTS_MODEL, false};
    return pd_engine_create_on(model, kind, n_threads, &cuda, engine_p);
}

pd_status_t pd_engine_create_cuda(const pd_model_t *model, const pd_backend_cuda_opts_t *opts,
                                  pd_engine_t **engine_p)
{
    if (opts == NULL)
        return PD_ERR_INVALID_PARAM;
    return pd_engine_create_on(model, PD_BACKEND_CUDA, 1, opts, engine_p);
}

pd_status_t pd_engine_buf_alloc(pd_engine_t *engine, size_t bytes, void **buf_p)
{
    if (engine == NULL || buf_p == NULL)
        return PD_ERR_INVALID_PARAM;
    return engine->be.ops->buf_alloc(engine->be.ctx, bytes, buf_p);
}

void pd_engine_buf_free(pd_engine_t *engine, void *buf)
{
    if (engine != NULL && buf != NULL)
        engine->be.ops->buf_free(engine->be.ctx, buf);
}

pd_status_t pd_engine_copy_to_host(pd_engine_t *engine, void *dst_host, const void *src,
                                   size_t bytes)
{
    return engine->be.ops->copy_to_host(engine->be.ctx, dst_host, src, bytes);
}

pd_status_t pd_engine_copy_from_host(pd_engine_t *engine, void *dst, const void *src_host,
                                     size_t bytes)
{
    return engine->be.ops->copy_from_host(engine->be.ctx, dst, src_host, bytes);
}

pd_status_t pd_engine_copy_ranges(pd_engine_t *engine, void *host, void *dev,
                                  const pd_buf_range_t *r, size_t n, bool to_host)
{
    const pd_backend_ops_t *ops = engine->be.ops;
    if (ops->copy_ranges != NULL)
        return ops->copy_ranges(engine->be.ctx, host, dev, r, n, to_host);
    unsigned char *h = host, *d = dev;
    for (size_t i = 0; i < n; i++) {
        pd_status_t st =
            to_host
                ? ops->copy_to_host(engine->be.ctx, h + r[i].offset, d + r[i].offset, r[i].bytes)
                : ops->copy_from_host(engine->be.ctx, d + r[i].offset, h + r[i].offset, r[i].bytes);
        if (st != PD_OK)
            return st;
    }
    return PD_OK;
}

const pd_backend_t *pd_engine_backend(const pd_engine_t *engine)
{
    return &engine->be;
}

const char *pd_engine_backend_name(const pd_engine_t *engine)
{
    return engine->be.ops->name;
}

void pd_engine_destroy(pd_engine_t **engine_p)
{
    if (engine_p == NULL || *engine_p == NULL)
        return;
    pd_engine_t *e = *engine_p;
    pd_engine_scratch_free(e);
    pd_engine_seq_scratch_free(e);
    pd_backend_destroy(&e->be);
    free(e->rope_cs);
    free(e);
    *engine_p = NULL;
}

pd_status_t pd_engine_reserve(pd_engine_t *engine, uint32_t max_tokens, uint32_t max_seqs)
{
    if (engine == NULL || max_tokens > UINT32_MAX / 2 || max_seqs > UINT32_MAX / 2)
        return PD_ERR_INVALID_PARAM;
    pd_engine_t *e = engine;
    pd_status_t st = pd_engine_scratch_reserve(e, max_tokens, max_seqs);
    if (st != PD_OK)
        return st;
    /* Touch every page now rather than in the first step that needs them (device memory
     * is backed when it is allocated). */
    if (!e->be.ops->host_memory)
        return PD_OK;
    const pd_model_config_t *c = &e->model->config;
    size_t cap = e->cap_tokens;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    memset(e->x, 0, cap * c->dim * sizeof(float));
    memset(e->xn, 0, cap * c->dim * sizeof(float));
    memset(e->q, 0, cap * qd * sizeof(float));
    memset(e->k, 0, cap * kvd * sizeof(float));
    memset(e->v, 0, cap * kvd * sizeof(float));
    memset(e->att, 0, cap * qd * sizeof(float));
    memset(e->gate, 0, cap * c->hidden_dim * sizeof(float));
    memset(e->up, 0, cap * c->hidden_dim * sizeof(float));
    memset(e->lout, 0, (size_t)e->cap_seqs * c->vocab_size * sizeof(float));
    return PD_OK;
}

uint32_t pd_engine_n_threads(const pd_engine_t *engine)
{
    return engine->be.ops->n_threads(engine->be.ctx);
}

/* Check the whole step before anything is computed or written. */
static pd_status_t pd_engine_validate(const pd_engine_t *e, const float *kv_pool,
                                      const pd_kv_layout_t *l, const pd_fwd_seq_t *seqs,
                                      uint32_t n_seqs, uint32_t *n_tokens_p)
{
    const pd_model_config_t *c = &e->model->config;
    if (kv_pool == NULL || l == NULL || (seqs == NULL && n_seqs > 0)) {
        pd_log_warn("forward: missing pool, layout or sequences");
        return PD_ERR_INVALID_PARAM;
    }
    if (l->n_layers != c->n_layers || l->n_kv_heads != c->n_kv_heads ||
        l->head_dim != c->head_dim || l->block_tokens == 0 || l->n_blocks == 0) {
        pd_log_warn("forward: KV layout (%u layers, %u kv heads, head_dim %u, B %u, %u blocks) "
                    "does not fit the model",
                    l->n_layers, l->n_kv_heads, l->head_dim, l->block_tokens, l->n_blocks);
        return PD_ERR_INVALID_PARAM;
    }
    uint64_t total = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const pd_fwd_seq_t *sq = &seqs[s];
        if (sq->n_tokens == 0 || sq->tokens == NULL) {
            pd_log_warn("forward: sequence %u has no tokens", s);
            return PD_ERR_INVALID_PARAM;
        }
        for (uint32_t i = 0; i < sq->n_tokens; i++)
            if (sq->tokens[i] < 0 || (uint32_t)sq->tokens[i] >= c->vocab_size) {
                pd_log_warn("forward: sequence %u token %u id %d outside vocabulary of %u", s, i,
                            sq->tokens[i], c->vocab_size);
                return PD_ERR_OUT_OF_RANGE;
            }
        uint64_t end = (uint64_t)sq->pos + sq->n_tokens;
        if (end > c->max_seq_len) {
            pd_log_warn("forward: sequence %u reaches %llu tokens, past the context of %u", s,
                        (unsigned long long)end, c->max_seq_len);
            return PD_ERR_CONTEXT;
        }
        uint64_t need = (end + l->block_tokens - 1) / l->block_tokens;
        if (sq->block_table == NULL || sq->n_table < need) {
            pd_log_warn("forward: sequence %u needs %llu blocks, its table has %u", s,
                        (unsigned long long)need, sq->block_table ? sq->n_table : 0);
            return PD_ERR_INVALID_PARAM;
        }
        for (uint64_t b = 0; b < need; b++)
            if (sq->block_table[b] >= l->n_blocks) {
                pd_log_warn("forward: sequence %u block %llu is pool block %u of %u", s,
                            (unsigned long long)b, sq->block_table[b], l->n_blocks);
                return PD_ERR_INVALID_PARAM;
            }
        total += sq->n_tokens;
    }
    if (total > UINT32_MAX / 2) {
        pd_log_warn("forward: %llu tokens in one step", (unsigned long long)total);
        return PD_ERR_LIMIT;
    }
    *n_tokens_p = (uint32_t)total;
    return PD_OK;
}

pd_status_t pd_engine_forward(pd_engine_t *engine, float *kv_pool, const pd_kv_layout_t *layout,
                              pd_fwd_seq_t *seqs, uint32_t n_seqs, pd_fwd_layer_cb on_layer,
                              void *cb_arg)
{
    if (engine == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_engine_t *e = engine;
    uint32_t n = 0;
    pd_status_t st = pd_engine_validate(e, kv_pool, layout, seqs, n_seqs, &n);
    if (st != PD_OK)
        return st;
    if (n_seqs == 0)
        return PD_OK;
    st = pd_engine_scratch_reserve(e, n, n_seqs);
    if (st != PD_OK)
        return st;

    const pd_model_config_t *c = &e->model->config;
    const pd_model_weights_t *w = &e->model->w;
    const pd_backend_ops_t *ops = e->be.ops;
    void *ctx = e->be.ctx;
    const uint32_t dim = c->dim, kvd = c->n_kv_heads * c->head_dim;
    const uint32_t bt = layout->block_tokens;
    const size_t blk = pd_kv_block_layer_bytes(layout) / sizeof(float);
    const size_t layer_stride = pd_kv_layer_stride_bytes(layout) / sizeof(float);

    /* Flatten the batch: row r of every activation is one new token. */
    uint32_t r = 0, n_logits = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const pd_fwd_seq_t *sq = &seqs[s];
        e->aseqs[s] = (pd_attn_seq_t){r, sq->n_tokens, sq->pos, sq->block_table};
        for (uint32_t i = 0; i < sq->n_tokens; i++, r++) {
            uint32_t p = sq->pos + i;
            e->ids[r] = sq->tokens[i];
            e->pos[r] = p;
            e->kv_off[r] = sq->block_table[p / bt] * blk + (size_t)(p % bt) * kvd;
        }
        if (sq->logits != NULL)
            e->lseq[n_logits++] = s;
    }

    if (ops->step_begin != NULL) {
        st = ops->step_begin(ctx, e->ids, e->pos, e->kv_off, n, e->aseqs, n_seqs, layout,
                             c->n_heads);
        if (st != PD_OK)
            return st;
    }
    ops->get_rows(ctx, &w->tok_embed, e->ids, e->x, n);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        float *pool_layer = kv_pool + l * layer_stride;
        ops->rmsnorm(ctx, e->x, w->attn_norm + (size_t)l * dim, e->xn, n, dim, c->rms_eps);
        const pd_matmul_out_t qkv[3] = {{pd_weight_at(&w->wq, l), e->q, false},
                                        {pd_weight_at(&w->wk, l), e->k, false},
                                        {pd_weight_at(&w->wv, l), e->v, false}};
        ops->matmul_n(ctx, e->xn, n, qkv, 3);
        if (w->bq != NULL) { /* Qwen2 */
            ops->add_bias(ctx, e->q, w->bq + (size_t)l * c->n_heads * c->head_dim, n,
                          c->n_heads * c->head_dim);
            ops->add_bias(ctx, e->k, w->bk + (size_t)l * kvd, n, kvd);
            ops->add_bias(ctx, e->v, w->bv + (size_t)l * kvd, n, kvd);
        }
        if (w->q_norm != NULL) { /* Qwen3: RMSNorm of every head of q and k before RoPE */
            ops->rmsnorm(ctx, e->q, w->q_norm + (size_t)l * c->head_dim, e->q, n * c->n_heads,
                         c->head_dim, c->rms_eps);
            ops->rmsnorm(ctx, e->k, w->k_norm + (size_t)l * c->head_dim, e->k, n * c->n_kv_heads,
                         c->head_dim, c->rms_eps);
        }
        ops->rope_store(ctx, e->q, e->k, e->v, e->pos, e->kv_off, n, e->rope_cs, c, layout,
                        pool_layer);
        if (on_layer != NULL) {
            /* the callback reads the layer's K and V from the pool: they must be there */
            if (ops->sync != NULL && (st = ops->sync(ctx)) != PD_OK)
                return st;
            on_layer(cb_arg, l);
        }
        ops->attention(ctx, e->q, pool_layer, layout, e->aseqs, n_seqs, c->n_heads, e->att);
        const pd_weight_t wo = pd_weight_at(&w->wo, l);
        ops->matmul(ctx, &wo, e->att, e->x, n, true);
        ops->rmsnorm(ctx, e->x, w->ffn_norm + (size_t)l * dim, e->xn, n, dim, c->rms_eps);
        const pd_weight_t wg = pd_weight_at(&w->w_gate, l), wu = pd_weight_at(&w->w_up, l);
        ops->ffn_gate_up(ctx, &wg, &wu, e->xn, e->gate, e->up, n);
        const pd_weight_t wd = pd_weight_at(&w->w_down, l);
        ops->matmul(ctx, &wd, e->gate, e->x, n, true);
    }

    if (n_logits == 0)
        return ops->sync != NULL ? ops->sync(ctx) : PD_OK;
    for (uint32_t i = 0; i < n_logits; i++) {
        const pd_attn_seq_t *as = &e->aseqs[e->lseq[i]];
        const float *last = e->x + (size_t)(as->first_row + as->n_tokens - 1) * dim;
        ops->copy(ctx, e->lx + (size_t)i * dim, last, dim * sizeof(float));
    }
    ops->rmsnorm(ctx, e->lx, w->final_norm, e->lx, n_logits, dim, c->rms_eps);
    ops->matmul(ctx, &w->lm_head, e->lx, e->lout, n_logits, false);
    /* logits to the host, where sampling runs */
    for (uint32_t i = 0; i < n_logits && st == PD_OK; i++)
        st = ops->copy_to_host(ctx, seqs[e->lseq[i]].logits, e->lout + (size_t)i * c->vocab_size,
                               c->vocab_size * sizeof(float));
    return st;
}
