/* The CPU backend: the ops table over the kernels in ops.c, each op split across the
 * thread pool by output rows, tokens or heads, never inside a reduction, so a result does
 * not depend on the number of threads. */
#include "pd/ops.h"

#include "cpu/pool_int.h"
#include "pd/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pd_cpu_backend {
    pd_cpu_pool_t *pool;
    uint32_t n_threads;
    uint32_t max_ctx;
    float *scores; /* (n_threads, max_ctx) attention scratch */
} pd_cpu_backend_t;

/* Thread tid's share [*begin, *end) of n items, in multiples of align. */
static void pd_cpu_split(uint32_t n, uint32_t align, uint32_t tid, uint32_t n_threads,
                         uint32_t *begin, uint32_t *end)
{
    uint32_t units = (n + align - 1) / align;
    uint32_t per = units / n_threads, extra = units % n_threads;
    uint32_t b = tid * per + (tid < extra ? tid : extra);
    uint32_t e = b + per + (tid < extra ? 1 : 0);
    b *= align;
    e *= align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

static uint32_t pd_cpu_backend_n_threads(void *ctx)
{
    return ((pd_cpu_backend_t *)ctx)->n_threads;
}

static void pd_cpu_get_rows(void *ctx, const float *table, const int32_t *ids, float *out,
                            uint32_t n, uint32_t dim)
{
    (void)ctx;
    for (uint32_t i = 0; i < n; i++)
        memcpy(out + (size_t)i * dim, table + (size_t)ids[i] * dim, dim * sizeof(float));
}

typedef struct pd_cpu_rmsnorm_job {
    const float *x;      /* (n, dim) */
    const float *weight; /* (dim) */
    float *y;            /* (n, dim) */
    uint32_t n, dim;
    float eps;
} pd_cpu_rmsnorm_job_t;

static void pd_cpu_rmsnorm_run(void *arg, uint32_t tid, uint32_t n_threads)
{
    pd_cpu_rmsnorm_job_t *j = arg;
    uint32_t b, e;
    pd_cpu_split(j->n, 1, tid, n_threads, &b, &e);
    for (uint32_t i = b; i < e; i++)
        pd_cpu_rmsnorm(j->x + (size_t)i * j->dim, j->weight, j->y + (size_t)i * j->dim, j->dim,
                       j->eps);
}

static void pd_cpu_rmsnorm_op(void *ctx, const float *x, const float *weight, float *y, uint32_t n,
                              uint32_t dim, float eps)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_rmsnorm_job_t j = {x, weight, y, n, dim, eps};
    if (n < 4)
        pd_cpu_rmsnorm_run(&j, 0, 1);
    else
        pd_cpu_pool_run(be->pool, pd_cpu_rmsnorm_run, &j);
}

typedef struct pd_cpu_matmul_job {
    const float *w; /* (out, in) */
    const float *x; /* (n, in) */
    float *y;       /* (n, out) */
    uint32_t n, out, in;
    bool accumulate;
} pd_cpu_matmul_job_t;

static void pd_cpu_matmul_run(void *arg, uint32_t tid, uint32_t n_threads)
{
    pd_cpu_matmul_job_t *j = arg;
    uint32_t b, e;
    pd_cpu_split(j->out, 4, tid, n_threads, &b, &e);
    if (b < e)
        pd_cpu_matmul(j->w, j->x, j->y, j->n, j->out, j->in, b, e, j->accumulate);
}

static void pd_cpu_matmul_op(void *ctx, const float *w, const float *x, float *y, uint32_t n,
                             uint32_t out, uint32_t in, bool accumulate)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_matmul_job_t j = {w, x, y, n, out, in, accumulate};
    pd_cpu_pool_run(be->pool, pd_cpu_matmul_run, &j);
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

static void pd_cpu_rope_run(void *arg, uint32_t tid, uint32_t n_threads)
{
    pd_cpu_rope_job_t *j = arg;
    const pd_model_config_t *c = j->config;
    const size_t q_row = (size_t)c->n_heads * c->head_dim;
    const size_t kv_row = (size_t)c->n_kv_heads * c->head_dim;
    const size_t v_skip = (size_t)j->layout->block_tokens * kv_row;
    uint32_t b, e;
    pd_cpu_split(j->n, 1, tid, n_threads, &b, &e);
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
    if (n < 8)
        pd_cpu_rope_run(&j, 0, 1);
    else
        pd_cpu_pool_run(be->pool, pd_cpu_rope_run, &j);
}

typedef struct pd_cpu_attn_job {
    pd_cpu_backend_t *be;
    const float *q; /* (n, n_heads, hd) */
    const float *pool_layer;
    const pd_kv_layout_t *layout;
    const pd_attn_seq_t *seqs; /* (n_seqs) */
    uint32_t n_seqs, n_heads;
    float *out; /* (n, n_heads, hd) */
} pd_cpu_attn_job_t;

static void pd_cpu_attn_run(void *arg, uint32_t tid, uint32_t n_threads)
{
    pd_cpu_attn_job_t *j = arg;
    const uint32_t hd = j->layout->head_dim;
    const uint32_t group = j->n_heads / j->layout->n_kv_heads;
    float *scores = j->be->scores + (size_t)tid * j->be->max_ctx;
    /* Units (row, head) are dealt round-robin: causal rows grow in cost, heads do not. */
    uint64_t unit = 0;
    for (uint32_t s = 0; s < j->n_seqs; s++) {
        const pd_attn_seq_t *sq = &j->seqs[s];
        for (uint32_t t = 0; t < sq->n_tokens; t++) {
            size_t row = (size_t)(sq->first_row + t) * j->n_heads * hd;
            for (uint32_t h = 0; h < j->n_heads; h++, unit++) {
                if (unit % n_threads != tid)
                    continue;
                pd_cpu_attention_head(j->q + row + (size_t)h * hd, j->pool_layer, j->layout,
                                      sq->block_table, sq->pos + t + 1, h / group,
                                      j->out + row + (size_t)h * hd, scores);
            }
        }
    }
}

static void pd_cpu_attention_op(void *ctx, const float *q, const float *pool_layer,
                                const pd_kv_layout_t *layout, const pd_attn_seq_t *seqs,
                                uint32_t n_seqs, uint32_t n_heads, float *out)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_attn_job_t j = {be, q, pool_layer, layout, seqs, n_seqs, n_heads, out};
    pd_cpu_pool_run(be->pool, pd_cpu_attn_run, &j);
}

typedef struct pd_cpu_swiglu_job {
    const float *gate, *up; /* (n) */
    float *out;             /* (n) */
    size_t n;
} pd_cpu_swiglu_job_t;

static void pd_cpu_swiglu_run(void *arg, uint32_t tid, uint32_t n_threads)
{
    pd_cpu_swiglu_job_t *j = arg;
    size_t per = (j->n / n_threads + 15) & ~(size_t)15;
    size_t b = per * tid, e = b + per;
    if (tid + 1 == n_threads || e > j->n)
        e = j->n;
    if (b < e)
        pd_cpu_swiglu(j->gate + b, j->up + b, j->out + b, e - b);
}

static void pd_cpu_swiglu_op(void *ctx, const float *gate, const float *up, float *out, size_t n)
{
    pd_cpu_backend_t *be = ctx;
    pd_cpu_swiglu_job_t j = {gate, up, out, n};
    pd_cpu_pool_run(be->pool, pd_cpu_swiglu_run, &j);
}

static void pd_cpu_backend_destroy(void *ctx)
{
    pd_cpu_backend_t *be = ctx;
    if (be == NULL)
        return;
    pd_cpu_pool_destroy(&be->pool);
    free(be->scores);
    free(be);
}

static const pd_backend_ops_t pd_cpu_backend_ops = {
    .name = "cpu",
    .destroy = pd_cpu_backend_destroy,
    .n_threads = pd_cpu_backend_n_threads,
    .get_rows = pd_cpu_get_rows,
    .rmsnorm = pd_cpu_rmsnorm_op,
    .matmul = pd_cpu_matmul_op,
    .rope_store = pd_cpu_rope_store_op,
    .attention = pd_cpu_attention_op,
    .swiglu = pd_cpu_swiglu_op,
};

pd_status_t pd_backend_cpu_create(uint32_t n_threads, uint32_t max_ctx, pd_backend_t *backend_p)
{
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (uint32_t)n : 1;
    }
    if (n_threads > 256 || max_ctx == 0) {
        pd_log_error("cpu backend: bad n_threads %u or max_ctx %u", n_threads, max_ctx);
        return PD_ERR_INVALID_PARAM;
    }
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_cpu_backend_t *be = calloc(1, sizeof(*be));
    if (be == NULL)
        return PD_ERR_NO_MEMORY;
    be->n_threads = n_threads;
    be->max_ctx = max_ctx;
    be->scores = malloc((size_t)n_threads * max_ctx * sizeof(float));
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
