/* GPU microbenchmarks (bench.h): events around the timed region, a warm-up first,
 * medians of several runs, data several times larger than L2. */
#include "cuda/attention.cuh"

extern "C" {
#include "cuda/bench.h"
}

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int pd_cuda_bench_cmp(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float pd_cuda_bench_median(float *v, uint32_t n)
{
    qsort(v, n, sizeof(float), pd_cuda_bench_cmp);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

/* Uniform values in [-1, 1) from (seed, index): fresh data without a host round trip. */
__global__ void pd_cuda_bench_fill(float *x, size_t n, uint64_t seed)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + i * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = (float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
}

static pd_status_t pd_cuda_bench_device(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        pd_log_error("cuda bench: no CUDA device");
        return PD_ERR_NOT_FOUND;
    }
    return pd_cuda_check(cudaSetDevice(0), "set device");
}

extern "C" pd_status_t pd_cuda_mod_bench_copy(size_t bytes, uint32_t runs, double *rate_p)
{
    pd_status_t st = pd_cuda_bench_device();
    if (st != PD_OK)
        return st;
    if (runs == 0 || runs > 64 || bytes < 4)
        return PD_ERR_INVALID_PARAM;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float t[64];
    st = pd_cuda_check(cudaMalloc(&a, bytes), "copy source");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMalloc(&b, bytes), "copy destination");
    if (st == PD_OK)
        st = pd_cuda_check(cudaEventCreate(&e0), "event");
    if (st == PD_OK)
        st = pd_cuda_check(cudaEventCreate(&e1), "event");
    if (st == PD_OK) {
        pd_cuda_bench_fill<<<1024, 256>>>((float *)a, bytes / 4, 7);
        st = pd_cuda_launched("fill");
    }
    /* warm-up, then runs timed one by one */
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "copy");
    for (uint32_t r = 0; r < runs && st == PD_OK; r++) {
        cudaEventRecord(e0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        st = pd_cuda_check(cudaEventSynchronize(e1), "copy");
        if (st == PD_OK)
            st = pd_cuda_check(cudaEventElapsedTime(&t[r], e0, e1), "elapsed");
    }
    if (st == PD_OK)
        *rate_p = 2.0 * (double)bytes / (pd_cuda_bench_median(t, runs) * 1e-3);
    if (e1)
        cudaEventDestroy(e1);
    if (e0)
        cudaEventDestroy(e0);
    cudaFree(b);
    cudaFree(a);
    return st;
}

static pd_status_t pd_cuda_grow_host(void *arg, unsigned char **buf_p, size_t *cap_p, size_t want)
{
    (void)arg;
    void *p = realloc(*buf_p, want);
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    *buf_p = (unsigned char *)p;
    *cap_p = want;
    return PD_OK;
}

extern "C" pd_status_t pd_cuda_mod_bench_attention(pd_cuda_attn_bench_t *b)
{
    pd_status_t st = pd_cuda_bench_device();
    if (st != PD_OK)
        return st;
    pd_cuda_attn_shape_t shape;
    if (b->n_seqs == 0 || b->ctx == 0 || b->n_kv_heads == 0 || b->n_heads % b->n_kv_heads ||
        b->block_tokens == 0 || b->runs == 0 || b->runs > 64 ||
        pd_cuda_attn_shape(b->head_dim, &shape) != PD_OK)
        return PD_ERR_INVALID_PARAM;
    const uint32_t n = b->n_seqs, bt = b->block_tokens;
    const uint32_t per_seq = (b->ctx + bt - 1) / bt;
    pd_kv_layout_t l = {1, b->n_kv_heads, b->head_dim, bt, n * per_seq};
    const size_t pool_n = pd_kv_pool_bytes(&l) / 4, qn = (size_t)n * b->n_heads * b->head_dim;
    /* host side: tables over a shuffled pool, one decode row per sequence */
    uint32_t *tables = (uint32_t *)malloc((size_t)n * per_seq * 4);
    int32_t *ids = (int32_t *)calloc(n, 4);
    uint32_t *pos = (uint32_t *)malloc((size_t)n * 4);
    size_t *kv_off = (size_t *)malloc((size_t)n * sizeof(size_t));
    pd_attn_seq_t *seqs = (pd_attn_seq_t *)malloc((size_t)n * sizeof(pd_attn_seq_t));
    pd_cuda_step_plan_t plan;
    memset(&plan, 0, sizeof(plan));
    float *pool = NULL, *q = NULL, *out = NULL, *partials = NULL, *host_out = NULL;
    unsigned char *dplan = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float t[64];
    if (!tables || !ids || !pos || !kv_off || !seqs) {
        st = PD_ERR_NO_MEMORY;
        goto out;
    }
    for (uint32_t i = 0; i < n * per_seq; i++)
        tables[i] = i;
    for (uint32_t i = n * per_seq - 1; i > 0; i--) { /* Fisher-Yates from the seed */
        uint64_t z = (b->seed + i) * 0x9e3779b97f4a7c15ull;
        z ^= z >> 29;
        const uint32_t j = (uint32_t)(z % (i + 1));
        const uint32_t tmp = tables[i];
        tables[i] = tables[j];
        tables[j] = tmp;
    }
    for (uint32_t s = 0; s < n; s++) {
        const uint32_t p = b->ctx - 1;
        seqs[s] = (pd_attn_seq_t){s, 1, p, tables + (size_t)s * per_seq};
        pos[s] = p;
        kv_off[s] = (size_t)seqs[s].block_table[p / bt] * (pd_kv_block_layer_bytes(&l) / 4) +
                    (size_t)(p % bt) * b->n_kv_heads * b->head_dim;
    }
    st = pd_cuda_plan_build(&plan, ids, pos, kv_off, n, seqs, n, &l, b->n_heads, pd_cuda_grow_host,
                            NULL);
    if (st != PD_OK)
        goto out;
    {
        const size_t slots = (size_t)plan.n_parts * b->n_heads;
        const size_t part_n = ((2 * slots + 3) & ~(size_t)3) + slots * b->head_dim;
        st = pd_cuda_check(cudaMalloc((void **)&pool, pool_n * 4), "pool");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc((void **)&q, qn * 4), "q");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc((void **)&out, qn * 4), "out");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc((void **)&partials, part_n * 4), "partials");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc((void **)&dplan, plan.bytes), "plan");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMemcpy(dplan, plan.buf, plan.bytes, cudaMemcpyHostToDevice),
                               "plan upload");
        if (st == PD_OK) {
            pd_cuda_bench_fill<<<4096, 256>>>(pool, pool_n, b->seed);
            pd_cuda_bench_fill<<<256, 256>>>(q, qn, b->seed ^ 0x5555);
            cudaMemset(out, 0xff, qn * 4); /* NaN: every element must be written */
            st = pd_cuda_launched("fill");
        }
        if (st == PD_OK)
            st = pd_cuda_check(cudaEventCreate(&e0), "event");
        if (st == PD_OK)
            st = pd_cuda_check(cudaEventCreate(&e1), "event");
        const pd_cuda_attn_item_t *items = (const pd_cuda_attn_item_t *)(dplan + plan.off_items);
        const uint32_t *dtab = (const uint32_t *)(dplan + plan.off_tables);
        const uint32_t *dpart = (const uint32_t *)(dplan + plan.off_part);
        for (uint32_t r = 0; r <= b->runs && st == PD_OK; r++) { /* run 0 warms up */
            cudaEventRecord(e0);
            st = pd_cuda_attention(0, q, pool, &l, b->n_heads, items, plan.n_items, dtab, dpart, n,
                                   plan.n_parts, partials, out);
            cudaEventRecord(e1);
            if (st == PD_OK)
                st = pd_cuda_check(cudaEventSynchronize(e1), "attention");
            if (st == PD_OK && r > 0)
                st = pd_cuda_check(cudaEventElapsedTime(&t[r - 1], e0, e1), "elapsed");
        }
        if (st == PD_OK) {
            host_out = (float *)malloc(qn * 4);
            if (host_out == NULL)
                st = PD_ERR_NO_MEMORY;
            else
                st =
                    pd_cuda_check(cudaMemcpy(host_out, out, qn * 4, cudaMemcpyDeviceToHost), "out");
            for (size_t i = 0; i < qn && st == PD_OK; i++)
                if (!isfinite(host_out[i])) {
                    pd_log_error("cuda bench: attention output %zu is not finite", i);
                    st = PD_ERR_INTERNAL;
                }
        }
        if (st == PD_OK) {
            b->ms = pd_cuda_bench_median(t, b->runs);
            b->kv_bytes = 2.0 * n * (double)b->ctx * b->n_kv_heads * b->head_dim * 4;
            b->bytes = b->kv_bytes + 2.0 * qn * 4 + 2.0 * part_n * 4;
        }
    }
out:
    if (e1)
        cudaEventDestroy(e1);
    if (e0)
        cudaEventDestroy(e0);
    cudaFree(dplan);
    cudaFree(partials);
    cudaFree(out);
    cudaFree(q);
    cudaFree(pool);
    free(host_out);
    free(plan.buf);
    free(seqs);
    free(kv_off);
    free(pos);
    free(ids);
    free(tables);
    return st;
}
