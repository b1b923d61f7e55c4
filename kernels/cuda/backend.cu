/* The CUDA backend: the ops table over the kernels of this folder, on one stream.
 *
 * Weights: bind() copies every tensor of the model to the device (matrices in the chosen
 * dtype, norms and the rotation table in f32) and keeps a table from each host range to
 * its device copy; ops translate the host pointers the engine passes. Steps: step_begin()
 * lays the step's index arrays and attention work items into one pinned buffer
 * (plan.c) and uploads it with one copy; the ops of the step read that copy. */
#include "cuda/attention.cuh"
#include "cuda/gemm.cuh"
#include "cuda/get_rows.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope.cuh"
#include "cuda/swiglu.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows one product takes at most; longer steps are cut (rows are independent). */
#define PD_CUDA_GEMM_MAX_N 16384u
/* Host floats staged per upload copy when matrices are converted on the device. */
#define PD_CUDA_STAGE_FLOATS ((size_t)16 << 20)
#define PD_CUDA_MAX_RANGES   16

/* A host tensor (n elements of host_dtype) and its copy on the device. */
typedef struct pd_cuda_range {
    const char *host;
    size_t n;
    pd_dtype_t host_dtype;
    void *dev;
    pd_cuda_dtype_t dtype;
} pd_cuda_range_t;

typedef struct pd_cuda_backend {
    cudaStream_t stream;
    pd_cuda_gemm_t *gemm;
    pd_cuda_weights_t weights; /* opts.weights */
    pd_model_config_t config;
    pd_status_t err; /* first error since the last sync */
    pd_cuda_range_t ranges[PD_CUDA_MAX_RANGES];
    uint32_t n_ranges;
    float *cs; /* (max_seq_len, head_dim) device rotation table */
    /* the current step */
    pd_cuda_step_plan_t plan; /* host image in pinned memory */
    unsigned char *plan_dev;
    size_t plan_dev_cap;
    float *partials;     /* attention partials */
    size_t partials_cap; /* floats */
} pd_cuda_backend_t;

static void pd_cuda_note(pd_cuda_backend_t *be, pd_status_t st)
{
    if (st != PD_OK && be->err == PD_OK)
        be->err = st;
}

static uint32_t pd_cuda_n_threads(void *ctx)
{
    (void)ctx;
    return 1;
}

static pd_status_t pd_cuda_buf_alloc(void *ctx, size_t bytes, void **buf_p)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    void *p = NULL;
    pd_status_t st = pd_cuda_check(cudaMalloc(&p, bytes ? bytes : 1), "alloc");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemsetAsync(p, 0, bytes, be->stream), "memset");
    if (st == PD_OK)
        st = pd_cuda_check(cudaStreamSynchronize(be->stream), "memset sync");
    if (st != PD_OK) {
        cudaFree(p);
        return st;
    }
    *buf_p = p;
    return PD_OK;
}

static void pd_cuda_buf_free(void *ctx, void *buf)
{
    (void)ctx;
    if (buf != NULL)
        cudaFree(buf);
}

static void pd_cuda_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err == PD_OK)
        pd_cuda_note(be, pd_cuda_check(
                             cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be->stream),
                             "copy"));
}

static pd_status_t pd_cuda_sync(void *ctx)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    pd_cuda_note(be, pd_cuda_check(cudaStreamSynchronize(be->stream), "sync"));
    pd_status_t st = be->err;
    be->err = PD_OK;
    return st;
}

static pd_status_t pd_cuda_copy_to_host(void *ctx, void *dst, const void *src, size_t bytes)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err == PD_OK)
        pd_cuda_note(
            be, pd_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, be->stream),
                              "copy to host"));
    return pd_cuda_sync(ctx);
}

static pd_status_t pd_cuda_copy_from_host(void *ctx, void *dst, const void *src, size_t bytes)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err == PD_OK)
        pd_cuda_note(
            be, pd_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, be->stream),
                              "copy from host"));
    return pd_cuda_sync(ctx);
}

static pd_status_t pd_cuda_copy_ranges(void *ctx, void *host, void *dev, const pd_buf_range_t *r,
                                       size_t n, bool to_host)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    unsigned char *h = (unsigned char *)host, *d = (unsigned char *)dev;
    for (size_t i = 0; i < n && be->err == PD_OK; i++)
        pd_cuda_note(be, pd_cuda_check(
                             to_host ? cudaMemcpyAsync(h + r[i].offset, d + r[i].offset, r[i].bytes,
                                                       cudaMemcpyDeviceToHost, be->stream)
                                     : cudaMemcpyAsync(d + r[i].offset, h + r[i].offset, r[i].bytes,
                                                       cudaMemcpyHostToDevice, be->stream),
                             "copy ranges"));
    return pd_cuda_sync(ctx);
}

/* The range holding host memory p, and p's element offset in it. */
static const pd_cuda_range_t *pd_cuda_lookup(const pd_cuda_backend_t *be, const void *p,
                                             size_t *elem_p)
{
    const char *c = (const char *)p;
    for (uint32_t i = 0; i < be->n_ranges; i++) {
        const pd_cuda_range_t *r = &be->ranges[i];
        const size_t es = pd_dtype_size(r->host_dtype);
        if (c >= r->host && c < r->host + r->n * es) {
            *elem_p = (size_t)(c - r->host) / es;
            return r;
        }
    }
    return NULL;
}

static const float *pd_cuda_dev_f32(pd_cuda_backend_t *be, const float *host)
{
    size_t e = 0;
    const pd_cuda_range_t *r = pd_cuda_lookup(be, host, &e);
    if (r == NULL || r->dtype != PD_CUDA_F32) {
        pd_log_error("cuda: a vector the backend did not bind");
        pd_cuda_note(be, PD_ERR_INTERNAL);
        return NULL;
    }
    return (const float *)r->dev + e;
}

/* The device copy of one weight matrix (n_mats 1) the engine passes. */
static bool pd_cuda_dev_mat(pd_cuda_backend_t *be, const pd_weight_t *w, pd_cuda_mat_t *mat)
{
    size_t e = 0;
    const pd_cuda_range_t *r = pd_cuda_lookup(be, w->data, &e);
    if (r == NULL || r->host_dtype != w->dtype || e + (size_t)w->rows * w->cols > r->n) {
        pd_log_error("cuda: a (%u x %u) matrix the backend did not bind", w->rows, w->cols);
        pd_cuda_note(be, PD_ERR_INTERNAL);
        return false;
    }
    mat->data = (const char *)r->dev + e * pd_cuda_dtype_size(r->dtype);
    mat->dtype = r->dtype;
    mat->out = w->rows;
    mat->in = w->cols;
    return true;
}

/* The device dtype of a host stack: its own, or the one the options force. */
static pd_cuda_dtype_t pd_cuda_dev_dtype(const pd_cuda_backend_t *be, pd_dtype_t host)
{
    switch (be->weights) {
    case PD_CUDA_WEIGHTS_F32:
        return PD_CUDA_F32;
    case PD_CUDA_WEIGHTS_F16:
        return PD_CUDA_F16;
    case PD_CUDA_WEIGHTS_BF16:
        return PD_CUDA_BF16;
    default:
        return host == PD_DTYPE_I8 ? PD_CUDA_BF16 : host;
    }
}

static pd_status_t pd_cuda_range_add(pd_cuda_backend_t *be, const void *host, size_t n,
                                     pd_dtype_t host_dtype, void *dev, pd_cuda_dtype_t dtype)
{
    if (be->n_ranges == PD_CUDA_MAX_RANGES) {
        cudaFree(dev);
        return PD_ERR_LIMIT;
    }
    be->ranges[be->n_ranges++] = (pd_cuda_range_t){(const char *)host, n, host_dtype, dev, dtype};
    return PD_OK;
}

/* n host f32 values (norms, the rotation table) to a new device tensor. */
static pd_status_t pd_cuda_upload_f32(pd_cuda_backend_t *be, const float *host, size_t n)
{
    void *dev = NULL;
    pd_status_t st = pd_cuda_check(cudaMalloc(&dev, n * sizeof(float)), "weights");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemcpy(dev, host, n * sizeof(float), cudaMemcpyHostToDevice),
                           "weights upload");
    if (st != PD_OK) {
        cudaFree(dev);
        return st;
    }
    return pd_cuda_range_add(be, host, n, PD_DTYPE_F32, dev, PD_CUDA_F32);
}

/* A weight stack to the device: copied as it is when its dtype stays, else widened to f32
 * row by row on the host (pd_weight_row_f32: int8 with its scales) and rounded on the
 * device, a staging buffer at a time. */
static pd_status_t pd_cuda_upload_stack(pd_cuda_backend_t *be, const pd_weight_t *w)
{
    size_t e = 0;
    if (pd_cuda_lookup(be, w->data, &e) != NULL)
        return PD_OK; /* tied lm_head: the embedding's copy */
    const size_t n = (size_t)w->n_mats * w->rows * w->cols;
    const pd_cuda_dtype_t dt = pd_cuda_dev_dtype(be, w->dtype);
    void *dev = NULL;
    pd_status_t st = pd_cuda_check(cudaMalloc(&dev, n * pd_cuda_dtype_size(dt)), "weights");
    if (st != PD_OK)
        return st;
    if (dt == w->dtype) {
        st = pd_cuda_check(
            cudaMemcpy(dev, w->data, n * pd_cuda_dtype_size(dt), cudaMemcpyHostToDevice),
            "weights upload");
    } else {
        /* whole rows per stage; a row longer than the stage is not a model shape */
        const size_t rows_per = PD_CUDA_STAGE_FLOATS / w->cols;
        float *host = NULL, *stage = NULL;
        if (rows_per == 0)
            st = PD_ERR_LIMIT;
        if (st == PD_OK)
            st = pd_cuda_check(cudaMallocHost((void **)&host, rows_per * w->cols * sizeof(float)),
                               "upload stage (host)");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc((void **)&stage, rows_per * w->cols * sizeof(float)),
                               "upload stage");
        const size_t total_rows = (size_t)w->n_mats * w->rows;
        for (size_t r0 = 0; r0 < total_rows && st == PD_OK; r0 += rows_per) {
            const size_t nr = total_rows - r0 < rows_per ? total_rows - r0 : rows_per;
            for (size_t r = 0; r < nr; r++)
                pd_weight_row_f32(w, (uint32_t)((r0 + r) / w->rows), (uint32_t)((r0 + r) % w->rows),
                                  host + r * w->cols);
            st = pd_cuda_check(cudaMemcpyAsync(stage, host, nr * w->cols * sizeof(float),
                                               cudaMemcpyHostToDevice, be->stream),
                               "weights upload");
            if (st == PD_OK)
                st = pd_cuda_convert(be->stream, stage,
                                     (char *)dev + r0 * w->cols * pd_cuda_dtype_size(dt), dt,
                                     nr * w->cols);
            if (st == PD_OK)
                st = pd_cuda_check(cudaStreamSynchronize(be->stream), "weights convert");
        }
        cudaFree(stage);
        cudaFreeHost(host);
    }
    if (st != PD_OK) {
        cudaFree(dev);
        return st;
    }
    return pd_cuda_range_add(be, w->data, n, w->dtype, dev, dt);
}

static pd_status_t pd_cuda_bind(void *ctx, const pd_model_t *model, const float *cs)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    const pd_model_config_t *c = &model->config;
    pd_model_weights_t *w = (pd_model_weights_t *)&model->w; /* read only */
    const size_t L = c->n_layers, dim = c->dim;
    pd_status_t st = PD_OK;
    for (uint32_t i = 0; i < PD_MODEL_N_MATS && st == PD_OK; i++)
        st = pd_cuda_upload_stack(be, pd_model_mat(w, i));
    const struct {
        const float *host;
        size_t n;
    } v[] = {{w->attn_norm, L * dim},
             {w->ffn_norm, L * dim},
             {w->final_norm, dim},
             {cs, (size_t)c->max_seq_len * c->head_dim}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) && st == PD_OK; i++)
        st = pd_cuda_upload_f32(be, v[i].host, v[i].n);
    if (st == PD_OK)
        be->cs = (float *)pd_cuda_dev_f32(be, cs);
    /* One pinned algorithm per product shape (see gemm.cu); the embedding is only read by
     * row. */
    for (uint32_t i = 1; i < PD_MODEL_N_MATS && st == PD_OK; i++) {
        const pd_weight_t *m = pd_model_mat(w, i);
        st = pd_cuda_gemm_plan(be->gemm, pd_cuda_dev_dtype(be, m->dtype), m->rows, m->cols,
                               PD_CUDA_GEMM_MAX_N);
    }
    if (st != PD_OK)
        pd_log_error("cuda: binding the model's weights failed: %s", pd_status_str(st));
    return st;
}

static pd_status_t pd_cuda_plan_grow(void *arg, unsigned char **buf_p, size_t *cap_p, size_t want)
{
    (void)arg;
    size_t cap = *cap_p ? *cap_p : 4096;
    while (cap < want)
        cap *= 2;
    void *p = NULL;
    pd_status_t st = pd_cuda_check(cudaHostAlloc(&p, cap, cudaHostAllocDefault), "plan buffer");
    if (st != PD_OK)
        return st;
    cudaFreeHost(*buf_p);
    *buf_p = (unsigned char *)p;
    *cap_p = cap;
    return PD_OK;
}

static pd_status_t pd_cuda_step_begin(void *ctx, const int32_t *ids, const uint32_t *pos,
                                      const size_t *kv_off, uint32_t n, const pd_attn_seq_t *seqs,
                                      uint32_t n_seqs, const pd_kv_layout_t *layout,
                                      uint32_t n_heads)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    /* The previous step's upload must be done before its pinned image is rewritten. */
    pd_status_t st = pd_cuda_sync(ctx);
    if (st != PD_OK)
        return st;
    pd_cuda_step_plan_t *p = &be->plan;
    st = pd_cuda_plan_build(p, ids, pos, kv_off, n, seqs, n_seqs, layout, n_heads,
                            pd_cuda_plan_grow, NULL);
    if (st != PD_OK)
        return st;
    if (p->bytes > be->plan_dev_cap) {
        cudaFree(be->plan_dev);
        be->plan_dev = NULL;
        be->plan_dev_cap = 0;
        st = pd_cuda_check(cudaMalloc((void **)&be->plan_dev, p->cap_bytes), "plan on device");
        if (st != PD_OK)
            return st;
        be->plan_dev_cap = p->cap_bytes;
    }
    const size_t slots = (size_t)p->n_parts * n_heads;
    const size_t need = ((2 * slots + 3) & ~(size_t)3) + slots * layout->head_dim;
    if (need > be->partials_cap) {
        cudaFree(be->partials);
        be->partials = NULL;
        be->partials_cap = 0;
        size_t cap = need + need / 2;
        st = pd_cuda_check(cudaMalloc((void **)&be->partials, cap * sizeof(float)), "partials");
        if (st != PD_OK)
            return st;
        be->partials_cap = cap;
    }
    return pd_cuda_check(
        cudaMemcpyAsync(be->plan_dev, p->buf, p->bytes, cudaMemcpyHostToDevice, be->stream),
        "plan upload");
}

static pd_status_t pd_cuda_reserve(void *ctx, pd_dtype_t dtype, uint32_t n, uint32_t in)
{
    /* products keep their inputs in f32 or convert them in gemm.cu's scratch */
    (void)ctx;
    (void)dtype;
    (void)n;
    (void)in;
    return PD_OK;
}

static void pd_cuda_get_rows_op(void *ctx, const pd_weight_t *table, const int32_t *ids, float *out,
                                uint32_t n)
{
    (void)ids; /* the step's copy */
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    pd_cuda_mat_t m;
    if (be->err != PD_OK || !pd_cuda_dev_mat(be, table, &m))
        return;
    pd_cuda_note(be, pd_cuda_get_rows(be->stream, m.data, m.dtype,
                                      (const int32_t *)(be->plan_dev + be->plan.off_ids), out, n,
                                      m.in));
}

static void pd_cuda_rmsnorm_op(void *ctx, const float *x, const float *weight, float *y, uint32_t n,
                               uint32_t dim, float eps)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    const float *w = be->err == PD_OK ? pd_cuda_dev_f32(be, weight) : NULL;
    if (w != NULL)
        pd_cuda_note(be, pd_cuda_rmsnorm(be->stream, x, w, y, n, dim, eps));
}

static void pd_cuda_matmul_op(void *ctx, const pd_weight_t *w, const float *x, float *y, uint32_t n,
                              bool accumulate)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    pd_cuda_mat_t m;
    if (be->err != PD_OK || !pd_cuda_dev_mat(be, w, &m))
        return;
    for (uint32_t r = 0; r < n && be->err == PD_OK; r += PD_CUDA_GEMM_MAX_N) {
        const uint32_t nr = n - r < PD_CUDA_GEMM_MAX_N ? n - r : PD_CUDA_GEMM_MAX_N;
        pd_cuda_note(be, pd_cuda_gemm_run(be->gemm, be->stream, &m, x + (size_t)r * m.in,
                                          y + (size_t)r * m.out, nr, accumulate));
    }
}

static void pd_cuda_matmul_n_op(void *ctx, const float *x, uint32_t n, const pd_matmul_out_t *outs,
                                uint32_t n_outs)
{
    for (uint32_t i = 0; i < n_outs; i++)
        pd_cuda_matmul_op(ctx, &outs[i].w, x, outs[i].y, n, outs[i].accumulate);
}

static void pd_cuda_swiglu_op(void *ctx, const float *gate, const float *up, float *out, size_t n)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err == PD_OK)
        pd_cuda_note(be, pd_cuda_swiglu(be->stream, gate, up, out, n));
}

static void pd_cuda_ffn_gate_up_op(void *ctx, const pd_weight_t *w_gate, const pd_weight_t *w_up,
                                   const float *x, float *h, float *up, uint32_t n)
{
    pd_cuda_matmul_op(ctx, w_gate, x, h, n, false);
    pd_cuda_matmul_op(ctx, w_up, x, up, n, false);
    pd_cuda_swiglu_op(ctx, h, up, h, (size_t)n * w_gate->rows);
}

static void pd_cuda_rope_store_op(void *ctx, float *q, float *k, const float *v,
                                  const uint32_t *pos, const size_t *kv_off, uint32_t n,
                                  const float *cs, const pd_model_config_t *config,
                                  const pd_kv_layout_t *layout, float *pool_layer)
{
    (void)pos;
    (void)kv_off;
    (void)cs; /* the step's copies and the bound table */
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err != PD_OK)
        return;
    const unsigned char *d = be->plan_dev;
    pd_cuda_note(be,
                 pd_cuda_rope_store(be->stream, q, k, v, (const uint32_t *)(d + be->plan.off_pos),
                                    (const uint64_t *)(d + be->plan.off_kv), n, be->cs,
                                    config->n_heads, config->n_kv_heads, config->head_dim,
                                    config->rope_style, layout->block_tokens, pool_layer));
}

static void pd_cuda_attention_op(void *ctx, const float *q, const float *pool_layer,
                                 const pd_kv_layout_t *layout, const pd_attn_seq_t *seqs,
                                 uint32_t n_seqs, uint32_t n_heads, float *out)
{
    (void)seqs;
    (void)n_seqs; /* planned in step_begin */
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be->err != PD_OK)
        return;
    const pd_cuda_step_plan_t *p = &be->plan;
    const unsigned char *d = be->plan_dev;
    pd_cuda_note(be, pd_cuda_attention(be->stream, q, pool_layer, layout, n_heads,
                                       (const pd_cuda_attn_item_t *)(d + p->off_items), p->n_items,
                                       (const uint32_t *)(d + p->off_tables),
                                       (const uint32_t *)(d + p->off_part), p->n_rows, p->n_parts,
                                       be->partials, out));
}

static void pd_cuda_backend_destroy(void *ctx)
{
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)ctx;
    if (be == NULL)
        return;
    if (be->stream)
        cudaStreamSynchronize(be->stream);
    for (uint32_t i = 0; i < be->n_ranges; i++)
        cudaFree(be->ranges[i].dev);
    cudaFree(be->plan_dev);
    cudaFree(be->partials);
    cudaFreeHost(be->plan.buf);
    pd_cuda_gemm_destroy(&be->gemm);
    if (be->stream)
        cudaStreamDestroy(be->stream);
    free(be);
}

static const pd_backend_ops_t pd_cuda_backend_ops = {
    .name = "cuda",
    .destroy = pd_cuda_backend_destroy,
    .n_threads = pd_cuda_n_threads,
    .host_memory = false,
    .buf_alloc = pd_cuda_buf_alloc,
    .buf_free = pd_cuda_buf_free,
    .copy = pd_cuda_copy,
    .copy_to_host = pd_cuda_copy_to_host,
    .copy_from_host = pd_cuda_copy_from_host,
    .copy_ranges = pd_cuda_copy_ranges,
    .bind = pd_cuda_bind,
    .step_begin = pd_cuda_step_begin,
    .sync = pd_cuda_sync,
    .reserve = pd_cuda_reserve,
    .get_rows = pd_cuda_get_rows_op,
    .rmsnorm = pd_cuda_rmsnorm_op,
    .matmul = pd_cuda_matmul_op,
    .matmul_n = pd_cuda_matmul_n_op,
    .ffn_gate_up = pd_cuda_ffn_gate_up_op,
    .rope_store = pd_cuda_rope_store_op,
    .attention = pd_cuda_attention_op,
    .swiglu = pd_cuda_swiglu_op,
    .add_bias = NULL, /* Qwen2 biases: refused when the engine is created */
};

extern "C" int pd_cuda_mod_device_count(char *why, size_t why_bytes)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n <= 0) {
        if (why != NULL && why_bytes > 0)
            snprintf(why, why_bytes, "no CUDA device: %s",
                     err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        return 0;
    }
    if (why != NULL && why_bytes > 0)
        why[0] = '\0';
    return n;
}

extern "C" pd_status_t pd_cuda_mod_backend_create(const pd_backend_cuda_opts_t *opts,
                                                  const pd_model_config_t *config,
                                                  pd_backend_t *backend_p)
{
    if (opts == NULL || config == NULL || backend_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_cuda_attn_shape_t shape;
    if (pd_cuda_attn_shape(config->head_dim, &shape) != PD_OK) {
        pd_log_error("cuda backend: head_dim %u is not built (16, 32, 64, 128 or 256)",
                     config->head_dim);
        return PD_ERR_UNSUPPORTED;
    }
    char why[160];
    if (pd_cuda_mod_device_count(why, sizeof(why)) == 0) {
        pd_log_error("cuda backend: %s", why);
        return PD_ERR_NOT_FOUND;
    }
    pd_cuda_backend_t *be = (pd_cuda_backend_t *)calloc(1, sizeof(*be));
    if (be == NULL)
        return PD_ERR_NO_MEMORY;
    be->config = *config;
    be->weights = opts->weights;
    pd_status_t st = pd_cuda_check(cudaSetDevice(0), "set device");
    if (st == PD_OK)
        st = pd_cuda_check(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking), "stream");
    if (st == PD_OK)
        st = pd_cuda_gemm_create(opts->tiled_gemm ? PD_CUDA_GEMM_TILED : PD_CUDA_GEMM_CUBLASLT,
                                 &be->gemm);
    if (st != PD_OK) {
        pd_cuda_backend_destroy(be);
        return st;
    }
    backend_p->ops = &pd_cuda_backend_ops;
    backend_p->ctx = be;
    return PD_OK;
}
