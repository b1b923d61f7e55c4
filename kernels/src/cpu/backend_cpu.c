/* The CPU backend: the ops table over the kernels in ops.c. Every op is a pool job cut
 * into chunks of output rows, tokens or (token, KV head) units, never inside a reduction,
 * and a chunk computes the same bytes whichever thread claims it, so results do not
 * depend on the number of threads. */
#include "pd/ops.h"

#include "cpu/pool_int.h"
#include "pd/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pd_cpu_backend {
    pd_cpu_pool_t *pool;
    uint32_t n_threads;
    size_t scores_per_thread;
    float *scores; /* (n_threads, max_q_per_kv * max_ctx) attention scratch */
    /* A matmul's input prepared for bf16 or int8 weights (pd_cpu_act_prepare), per dtype;
     * grown when a step has a larger input than any before it. */
    void *act_buf[PD_DTYPE_COUNT];
    size_t act_cap[PD_DTYPE_COUNT];
} pd_cpu_backend_t;

static uint32_t pd_cpu_min(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Rows per matmul chunk: a multiple of 4, at most 64, and enough chunks to share. */
static uint32_t pd_cpu_rows_per_chunk(const pd_cpu_backend_t *be, uint32_t out)
{
    uint32_t want = out / (4 * be->n_threads);
    want = (want + 3) & ~3u;
    return want < 16 ? 16 : want > 64 ? 64 : want;
}

/* Grow the prepared-input buffer of dtype to need bytes; false when there is no memory. */
static bool pd_cpu_act_grow(pd_cpu_backend_t *be, pd_dtype_t dtype, size_t need)
{
    if (need <= be->act_cap[dtype])
        return true;
    size_t cap = (need + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, cap);
    if (p == NULL) {
        pd_log_error("cpu backend: no memory for a %zu-byte matmul input", cap);
        return false;
    }
    free(be->act_buf[dtype]);
    be->act_buf[dtype] = p;
    be->act_cap[dtype] = cap;
    return true;
}

/* Prepare x (n, in) for weights of dtype; false when there is no memory for it. */
static bool pd_cpu_act_get(pd_cpu_backend_t *be, pd_dtype_t dtype, const float *x, uint32_t n,
                           uint32_t in, pd_cpu_act_t *act)
{
    if (!pd_cpu_act_grow(be, dtype, pd_cpu_act_bytes(dtype, n, in)))
        return false;
    pd_cpu_act_prepare(dtype, x, n, in, be->act_buf[dtype], act);
    return true;
}

static pd_status_t pd_cpu_backend_reserve(void *ctx, pd_dtype_t dtype, uint32_t n, uint32_t in)
{
    pd_cpu_backend_t *be = ctx;
    if ((unsigned)dtype >= PD_DTYPE_COUNT)
        return PD_ERR_INVALID_PARAM;
    return pd_cpu_act_grow(be, dtype, pd_cpu_act_bytes(dtype, n, in)) ? PD_OK : PD_ERR_NO_MEMORY;
}

static uint32_t pd_cpu_backend_n_threads(void *ctx)
{
    return ((pd_cpu_backend_t *)ctx)->n_threads;
}

static void pd_cpu_get_rows(void *ctx, const pd_weight_t *table, const int32_t *ids, float *out,
                            uint32_t n)
{
    (void)ctx;
    for (uint32_t i = 0; i < n; i++)
        pd_weight_row_f32(table, 0, (uint32_t)ids[i], out + (size_t)i * table->cols);
}

#define PD_CPU_ROWS_PER_CHUNK 8

typedef struct pd_cpu_rmsnorm_job {
    const float *x;      /* (n, dim) */
    const float *weight; /* (dim) */
    float *y;            /* (n, dim) */
    uint32_t n, dim;
    float eps;
} pd_cpu_rmsnorm_job_t;

static void pd_cpu_rmsnorm_run(void *arg, uint32_t chunk, uint32_t tid)
{
    (void)tid;
    pd_cpu_rmsnorm_job_t *j = arg;
    uint32_t b = chunk * PD_CPU_ROWS_PER_CHUNK, e = pd_cpu_min(b + PD_CPU_ROWS_PER_CHUNK, j->n);
    for (uint32_t i = b; i < e; i++)
        pd_cpu_rmsnorm(j->x + (size_t)i * j->dim, j->weight, j->y + (size_t)i * j->dim, j->dim,
                       j->eps);
}

static void pd_cpu_add_bias_op(void *ctx, float *y, const float *bias, uint32_t n, uint32_t cols)
{
    (void)ctx;
    for (uint32_t r = 0; r < n; r++) {
        float *row = y + (size_t)r * cols;
        for (uint32_t c = 0; c < cols; c++)
            row[c] += bias[c];
    }
}

static void pd_cpu_rmsnorm_op(void *ctx, const float *x, const float *weight, float *y, uint32_t n,
                              uint32_t dim, float eps)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_rmsnorm_job_t j = {x, weight, y, n, dim, eps};
    pd_cpu_pool_run(be->pool, pd_cpu_rmsnorm_run, &j,
                    (n + PD_CPU_ROWS_PER_CHUNK - 1) / PD_CPU_ROWS_PER_CHUNK);
}

/* Up to four products of one input; chunk c covers rows of one product. */
typedef struct pd_cpu_matmul_job {
    pd_cpu_act_t x[4]; /* the input prepared for each product's weights */
    uint32_t n;
    uint32_t n_outs;
    pd_matmul_out_t outs[4];
    uint32_t rows[4];        /* rows per chunk of each product */
    uint32_t first_chunk[5]; /* chunk ranges of the products */
} pd_cpu_matmul_job_t;

static void pd_cpu_matmul_run(void *arg, uint32_t chunk, uint32_t tid)
{
    (void)tid;
    pd_cpu_matmul_job_t *j = arg;
    uint32_t m = 0;
    while (chunk >= j->first_chunk[m + 1])
        m++;
    const pd_matmul_out_t *o = &j->outs[m];
    uint32_t b = (chunk - j->first_chunk[m]) * j->rows[m];
    uint32_t e = pd_cpu_min(b + j->rows[m], o->w.rows);
    pd_cpu_matmul_w(&o->w, &j->x[m], o->y, j->n, b, e, o->accumulate);
}

/* Prepare x for each weight dtype among outs (once per dtype) into acts (n_outs). */
static bool pd_cpu_act_for(pd_cpu_backend_t *be, const float *x, uint32_t n,
                           const pd_weight_t *const *ws, uint32_t n_ws, pd_cpu_act_t *acts)
{
    for (uint32_t m = 0; m < n_ws; m++) {
        uint32_t same = 0;
        while (same < m && ws[same]->dtype != ws[m]->dtype)
            same++;
        if (same < m)
            acts[m] = acts[same];
        else if (!pd_cpu_act_get(be, ws[m]->dtype, x, n, ws[m]->cols, &acts[m]))
            return false;
    }
    return true;
}

static void pd_cpu_matmul_n_op(void *ctx, const float *x, uint32_t n, const pd_matmul_out_t *outs,
                               uint32_t n_outs)
{
    pd_cpu_backend_t *be = ctx;
    for (uint32_t base = 0; base < n_outs; base += 4) {
        pd_cpu_matmul_job_t j;
        const pd_weight_t *ws[4];
        j.n = n;
        j.n_outs = pd_cpu_min(4, n_outs - base);
        j.first_chunk[0] = 0;
        for (uint32_t m = 0; m < j.n_outs; m++) {
            j.outs[m] = outs[base + m];
            ws[m] = &j.outs[m].w;
            j.rows[m] = pd_cpu_rows_per_chunk(be, j.outs[m].w.rows);
            j.first_chunk[m + 1] =
                j.first_chunk[m] + (j.outs[m].w.rows + j.rows[m] - 1) / j.rows[m];
        }
        if (!pd_cpu_act_for(be, x, n, ws, j.n_outs, j.x))
            continue; /* logged; the outputs stay as they were */
        pd_cpu_pool_run(be->pool, pd_cpu_matmul_run, &j, j.first_chunk[j.n_outs]);
    }
}

static void pd_cpu_matmul_op(void *ctx, const pd_weight_t *w, const float *x, float *y, uint32_t n,
                             bool accumulate)
{
    pd_matmul_out_t o = {*w, y, accumulate};
    pd_cpu_matmul_n_op(ctx, x, n, &o, 1);
}

typedef struct pd_cpu_ffn_job {
    const pd_weight_t *w_gate, *w_up; /* (hidden, in) */
    pd_cpu_act_t x[2];                /* the input prepared for w_gate and w_up */
    float *h, *up;                    /* (n, hidden) */
    uint32_t n, rows;
} pd_cpu_ffn_job_t;

static void pd_cpu_ffn_run(void *arg, uint32_t chunk, uint32_t tid)
{
    (void)tid;
    pd_cpu_ffn_job_t *j = arg;
    const uint32_t hidden = j->w_gate->rows;
    uint32_t b = chunk * j->rows, e = pd_cpu_min(b + j->rows, hidden);
    pd_cpu_matmul_w(j->w_gate, &j->x[0], j->h, j->n, b, e, false);
    pd_cpu_matmul_w(j->w_up, &j->x[1], j->up, j->n, b, e, false);
    for (uint32_t t = 0; t < j->n; t++) {
        size_t off = (size_t)t * hidden + b;
        pd_cpu_swiglu(j->h + off, j->up + off, j->h + off, e - b);
    }
}

static void pd_cpu_ffn_gate_up_op(void *ctx, const pd_weight_t *w_gate, const pd_weight_t *w_up,
                                  const float *x, float *h, float *up, uint32_t n)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_ffn_job_t j = {w_gate, w_up, {{0}}, h, up, n, 0};
    const pd_weight_t *ws[2] = {w_gate, w_up};
    if (!pd_cpu_act_for(be, x, n, ws, 2, j.x))
        return;
    j.rows = pd_cpu_rows_per_chunk(be, w_gate->rows);
    pd_cpu_pool_run(be->pool, pd_cpu_ffn_run, &j, (w_gate->rows + j.rows - 1) / j.rows);
}

typedef struct pd_cpu_rope_job {
    float *q;             /* (n, n_heads, hd) */
    float *k;             /* (n, n_kv_heads, hd) */
    const float *v;       /* (n, n_kv_heads, hd) */
    const uint32_t *pos;  /* (n) */
    const size_t *kv_off; /* (n) */
    uint32_t n;
    const float *cs; /* (max_pos, hd) */
    const pd_model_config_t *config;
    const pd_kv_layout_t *layout;
    float *pool_layer; /* (n_blocks, 2, B, n_kv_heads, hd) */
} pd_cpu_rope_job_t;

static void pd_cpu_rope_run(void *arg, uint32_t chunk, uint32_t tid)
{
    (void)tid;
    pd_cpu_rope_job_t *j = arg;
    const pd_model_config_t *c = j->config;
    const size_t q_row = (size_t)c->n_heads * c->head_dim;
    const size_t kv_row = (size_t)c->n_kv_heads * c->head_dim;
    const size_t v_skip = (size_t)j->layout->block_tokens * kv_row;
    uint32_t b = chunk * PD_CPU_ROWS_PER_CHUNK, e = pd_cpu_min(b + PD_CPU_ROWS_PER_CHUNK, j->n);
    for (uint32_t i = b; i < e; i++) {
        const float *cs = j->cs + (size_t)j->pos[i] * c->head_dim;
        float *q = j->q + i * q_row;
        float *k = j->k + i * kv_row;
        pd_cpu_rope(q, c->n_heads, c->head_dim, cs, c->rope_style);
        pd_cpu_rope(k, c->n_kv_heads, c->head_dim, cs, c->rope_style);
        memcpy(j->pool_layer + j->kv_off[i], k, kv_row * sizeof(float));
        memcpy(j->pool_layer + j->kv_off[i] + v_skip, j->v + i * kv_row, kv_row * sizeof(float));
    }
}

static void pd_cpu_rope_store_op(void *ctx, float *q, float *k, const float *v, const uint32_t *pos,
                                 const size_t *kv_off, uint32_t n, const float *cs,
                                 const pd_model_config_t *config, const pd_kv_layout_t *layout,
                                 float *pool_layer)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_rope_job_t j = {q, k, v, pos, kv_off, n, cs, config, layout, pool_layer};
    pd_cpu_pool_run(be->pool, pd_cpu_rope_run, &j,
                    (n + PD_CPU_ROWS_PER_CHUNK - 1) / PD_CPU_ROWS_PER_CHUNK);
}

/* Query rows of one sequence that one attention unit takes together: they share every
 * load of K and V (prefill; a decode row is alone). */
#define PD_CPU_ATTN_ROWS 4

/* Attention units are (run of up to rows_per_unit tokens of one sequence, KV head); a
 * chunk is a run of units. */
typedef struct pd_cpu_attn_job {
    pd_cpu_backend_t *be;
    const float *q; /* (n, n_heads, hd) */
    const float *pool_layer;
    const pd_kv_layout_t *layout;
    const pd_attn_seq_t *seqs; /* (n_seqs) */
    uint32_t n_seqs, n_heads, rows_per_unit, n_units, units_per_chunk;
    float *out; /* (n, n_heads, hd) */
} pd_cpu_attn_job_t;

static uint32_t pd_cpu_attn_seq_units(const pd_cpu_attn_job_t *j, const pd_attn_seq_t *sq)
{
    return (sq->n_tokens + j->rows_per_unit - 1) / j->rows_per_unit * j->layout->n_kv_heads;
}

static void pd_cpu_attn_run(void *arg, uint32_t chunk, uint32_t tid)
{
    pd_cpu_attn_job_t *j = arg;
    const uint32_t hd = j->layout->head_dim, kvh = j->layout->n_kv_heads;
    const uint32_t group = j->n_heads / kvh, rpu = j->rows_per_unit;
    const size_t stride = (size_t)j->n_heads * hd;
    float *scores = j->be->scores + (size_t)tid * j->be->scores_per_thread;
    uint32_t u = chunk * j->units_per_chunk, u_end = pd_cpu_min(u + j->units_per_chunk, j->n_units);
    /* The sequence of unit u and the index of its first unit. */
    uint32_t s = 0, base = 0;
    for (; u < u_end; u++) {
        while (u >= base + pd_cpu_attn_seq_units(j, &j->seqs[s])) {
            base += pd_cpu_attn_seq_units(j, &j->seqs[s]);
            s++;
        }
        const pd_attn_seq_t *sq = &j->seqs[s];
        const uint32_t r0 = (u - base) / kvh * rpu, g = (u - base) % kvh;
        const uint32_t n_rows = pd_cpu_min(rpu, sq->n_tokens - r0);
        size_t off = (size_t)(sq->first_row + r0) * stride + (size_t)g * group * hd;
        pd_cpu_attention_rows(j->q + off, stride, n_rows, group, j->pool_layer, j->layout,
                              sq->block_table, sq->pos + r0 + 1, g, j->out + off, scores);
    }
}

static void pd_cpu_attention_op(void *ctx, const float *q, const float *pool_layer,
                                const pd_kv_layout_t *layout, const pd_attn_seq_t *seqs,
                                uint32_t n_seqs, uint32_t n_heads, float *out)
{
    pd_cpu_backend_t *be = ctx;
    if (n_seqs == 0)
        return;
    const uint32_t group = n_heads / layout->n_kv_heads;
    uint32_t rpu = group >= PD_CPU_ATTN_MAX_Q ? 1 : PD_CPU_ATTN_MAX_Q / group;
    rpu = rpu > PD_CPU_ATTN_ROWS ? PD_CPU_ATTN_ROWS : rpu;
    pd_cpu_attn_job_t j = {be, q, pool_layer, layout, seqs, n_seqs, n_heads, rpu, 0, 0, out};
    for (uint32_t s = 0; s < n_seqs; s++)
        j.n_units += pd_cpu_attn_seq_units(&j, &seqs[s]);
    /* Small chunks: causal rows grow in cost, and claiming balances what splitting cannot. */
    uint32_t per = j.n_units / (8 * be->n_threads);
    j.units_per_chunk = per < 1 ? 1 : per > 16 ? 16 : per;
    pd_cpu_pool_run(be->pool, pd_cpu_attn_run, &j,
                    (j.n_units + j.units_per_chunk - 1) / j.units_per_chunk);
}

typedef struct pd_cpu_swiglu_job {
    const float *gate, *up; /* (n) */
    float *out;             /* (n) */
    size_t n;
} pd_cpu_swiglu_job_t;

#define PD_CPU_SWIGLU_CHUNK 4096

static void pd_cpu_swiglu_run(void *arg, uint32_t chunk, uint32_t tid)
{
    (void)tid;
    pd_cpu_swiglu_job_t *j = arg;
    size_t b = (size_t)chunk * PD_CPU_SWIGLU_CHUNK;
    size_t e = b + PD_CPU_SWIGLU_CHUNK < j->n ? b + PD_CPU_SWIGLU_CHUNK : j->n;
    pd_cpu_swiglu(j->gate + b, j->up + b, j->out + b, e - b);
}

static void pd_cpu_swiglu_op(void *ctx, const float *gate, const float *up, float *out, size_t n)
{
    pd_cpu_backend_t *be = ctx;
    for (size_t off = 0; off < n; off += (size_t)UINT32_MAX * PD_CPU_SWIGLU_CHUNK) {
        size_t part = n - off;
        if (part > (size_t)UINT32_MAX * PD_CPU_SWIGLU_CHUNK)
            part = (size_t)UINT32_MAX * PD_CPU_SWIGLU_CHUNK;
        pd_cpu_swiglu_job_t j = {gate + off, up + off, out + off, part};
        pd_cpu_pool_run(be->pool, pd_cpu_swiglu_run, &j,
                        (uint32_t)((part + PD_CPU_SWIGLU_CHUNK - 1) / PD_CPU_SWIGLU_CHUNK));
    }
}

static pd_status_t pd_cpu_buf_alloc(void *ctx, size_t bytes, void **buf_p)
{
    (void)ctx;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    memset(p, 0, rounded);
    *buf_p = p;
    return PD_OK;
}

static void pd_cpu_buf_free(void *ctx, void *buf)
{
    (void)ctx;
    free(buf);
}

static void pd_cpu_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    memcpy(dst, src, bytes);
}

static pd_status_t pd_cpu_copy_host(void *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    memcpy(dst, src, bytes);
    return PD_OK;
}

static void pd_cpu_backend_destroy(void *ctx)
{
    pd_cpu_backend_t *be = ctx;
    if (be == NULL)
        return;
    pd_cpu_pool_destroy(&be->pool);
    for (int d = 0; d < PD_DTYPE_COUNT; d++)
        free(be->act_buf[d]);
    free(be->scores);
    free(be);
}

static const pd_backend_ops_t pd_cpu_backend_ops = {
    .name = "cpu",
    .destroy = pd_cpu_backend_destroy,
    .n_threads = pd_cpu_backend_n_threads,
    .reserve = pd_cpu_backend_reserve,
    .host_memory = true,
    .buf_alloc = pd_cpu_buf_alloc,
    .buf_free = pd_cpu_buf_free,
    .copy = pd_cpu_copy,
    .copy_to_host = pd_cpu_copy_host,
    .copy_from_host = pd_cpu_copy_host,
    .get_rows = pd_cpu_get_rows,
    .rmsnorm = pd_cpu_rmsnorm_op,
    .add_bias = pd_cpu_add_bias_op,
    .matmul = pd_cpu_matmul_op,
    .matmul_n = pd_cpu_matmul_n_op,
    .ffn_gate_up = pd_cpu_ffn_gate_up_op,
    .rope_store = pd_cpu_rope_store_op,
    .attention = pd_cpu_attention_op,
    .swiglu = pd_cpu_swiglu_op,
};

pd_status_t pd_backend_cpu_create(uint32_t n_threads, uint32_t max_ctx, uint32_t max_q_per_kv,
                                  pd_backend_t *backend_p)
{
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (uint32_t)n : 1;
    }
    if (n_threads > 256 || max_ctx == 0 || max_q_per_kv == 0 || backend_p == NULL) {
        pd_log_error("cpu backend: bad n_threads %u, max_ctx %u or max_q_per_kv %u", n_threads,
                     max_ctx, max_q_per_kv);
        return PD_ERR_INVALID_PARAM;
    }
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_cpu_backend_t *be = calloc(1, sizeof(*be));
    if (be == NULL)
        return PD_ERR_NO_MEMORY;
    be->n_threads = n_threads;
    /* One attention call's scores: up to PD_CPU_ATTN_ROWS rows of max_q_per_kv queries,
     * at most PD_CPU_ATTN_MAX_Q, each over up to max_ctx positions. */
    size_t q_per_call = (size_t)max_q_per_kv * PD_CPU_ATTN_ROWS;
    q_per_call = q_per_call > PD_CPU_ATTN_MAX_Q ? PD_CPU_ATTN_MAX_Q : q_per_call;
    be->scores_per_thread = (q_per_call * max_ctx + 15) & ~(size_t)15;
    be->scores = malloc(n_threads * be->scores_per_thread * sizeof(float));
    if (be->scores == NULL)
        goto err_free_be;
    st = pd_cpu_pool_create(n_threads, &be->pool);
    if (st != PD_OK)
        goto err_free_scores;
    backend_p->ops = &pd_cpu_backend_ops;
    backend_p->ctx = be;
    return PD_OK;

err_free_scores:
    free(be->scores);
err_free_be:
    free(be);
    return st;
}

void pd_backend_destroy(pd_backend_t *backend)
{
    if (backend == NULL || backend->ops == NULL)
        return;
    backend->ops->destroy(backend->ctx);
    backend->ops = NULL;
    backend->ctx = NULL;
}
