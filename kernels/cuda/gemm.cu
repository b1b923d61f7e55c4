/* GEMM: cuBLASLt with a pinned algorithm, and a plain tiled kernel.
 *
 * Numerics: a row of y must not depend on how many rows the product has (a token decoded
 * alone equals the same token in a batch, or in a prefill). cuBLAS's heuristic picks a
 * different kernel (and split-K) for different n, so each weight shape gets one algorithm,
 * chosen once for the largest n with split-K off, and runs it for every n. The tiled
 * kernel is the fallback: each output is one fused multiply-add chain in k order. */
#include "cuda/gemm.cuh"
#include "cuda/get_rows.cuh"

#include <stdlib.h>
#include <string.h>

#define PD_CUDA_GEMM_MAX_SHAPES 32
#define PD_CUDA_GEMM_WORKSPACE  (32u << 20)
#define PD_CUDA_TILE            16

typedef struct pd_cuda_gemm_shape {
    pd_cuda_dtype_t dtype;
    uint32_t out, in;
    pd_cuda_gemm_impl_t impl;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c; /* b and c get their column count per call */
    cublasLtMatmulAlgo_t algo;
} pd_cuda_gemm_shape_t;

struct pd_cuda_gemm {
    pd_cuda_gemm_impl_t impl;
    cublasLtHandle_t lt;
    void *workspace;
    void *xh; /* (cap_xh elements) 16-bit activations */
    size_t cap_xh;
    pd_cuda_gemm_shape_t shapes[PD_CUDA_GEMM_MAX_SHAPES];
    uint32_t n_shapes;
};

static pd_status_t pd_cuda_blas_check(cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return PD_OK;
    /* (cublasGetStatusString lives in libcublas, which nothing else here needs) */
    pd_log_error("cublasLt: %s: status %d", what, (int)st);
    return st == CUBLAS_STATUS_ALLOC_FAILED ? PD_ERR_NO_MEMORY : PD_ERR_INTERNAL;
}

static cudaDataType_t pd_cuda_blas_type(pd_cuda_dtype_t t)
{
    return t == PD_CUDA_F32 ? CUDA_R_32F : t == PD_CUDA_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

/* y[t][o] (+)= sum_k w[o][k] x[t][k], k in increasing order, one accumulator. */
template <typename T>
__global__ void pd_cuda_gemm_tiled_kernel(const T *__restrict__ w, const float *__restrict__ x,
                                          float *__restrict__ y, uint32_t n, uint32_t out,
                                          uint32_t in, int accumulate)
{
    __shared__ float ws[PD_CUDA_TILE][PD_CUDA_TILE + 1];
    __shared__ float xs[PD_CUDA_TILE][PD_CUDA_TILE + 1];
    const uint32_t o = blockIdx.x * PD_CUDA_TILE + threadIdx.x;
    const uint32_t t = blockIdx.y * PD_CUDA_TILE + threadIdx.y;
    const uint32_t wo = blockIdx.x * PD_CUDA_TILE + threadIdx.y; /* row this thread loads */
    float acc = 0.0f;
    for (uint32_t k0 = 0; k0 < in; k0 += PD_CUDA_TILE) {
        const uint32_t k = k0 + threadIdx.x;
        ws[threadIdx.y][threadIdx.x] =
            wo < out && k < in ? pd_cuda_to_f32(w[(size_t)wo * in + k]) : 0.0f;
        xs[threadIdx.y][threadIdx.x] = t < n && k < in ? x[(size_t)t * in + k] : 0.0f;
        __syncthreads();
        const uint32_t nk = in - k0 < PD_CUDA_TILE ? in - k0 : PD_CUDA_TILE;
        for (uint32_t kk = 0; kk < nk; kk++)
            acc = fmaf(ws[threadIdx.x][kk], xs[threadIdx.y][kk], acc);
        __syncthreads();
    }
    if (o < out && t < n) {
        float *dst = y + (size_t)t * out + o;
        *dst = accumulate ? *dst + acc : acc;
    }
}

static pd_status_t pd_cuda_gemm_tiled(cudaStream_t stream, const pd_cuda_mat_t *w, const float *x,
                                      float *y, uint32_t n, bool accumulate)
{
    dim3 block(PD_CUDA_TILE, PD_CUDA_TILE);
    dim3 grid((w->out + PD_CUDA_TILE - 1) / PD_CUDA_TILE, (n + PD_CUDA_TILE - 1) / PD_CUDA_TILE);
    switch (w->dtype) {
    case PD_CUDA_F32:
        pd_cuda_gemm_tiled_kernel<<<grid, block, 0, stream>>>((const float *)w->data, x, y, n,
                                                              w->out, w->in, accumulate);
        break;
    case PD_CUDA_F16:
        pd_cuda_gemm_tiled_kernel<<<grid, block, 0, stream>>>((const __half *)w->data, x, y, n,
                                                              w->out, w->in, accumulate);
        break;
    case PD_CUDA_BF16:
        pd_cuda_gemm_tiled_kernel<<<grid, block, 0, stream>>>((const __nv_bfloat16 *)w->data, x, y,
                                                              n, w->out, w->in, accumulate);
        break;
    default:
        return PD_ERR_UNSUPPORTED;
    }
    return pd_cuda_launched("gemm tiled");
}

pd_status_t pd_cuda_gemm_create(pd_cuda_gemm_impl_t impl, pd_cuda_gemm_t **gemm_p)
{
    pd_cuda_gemm_t *g = (pd_cuda_gemm_t *)calloc(1, sizeof(*g));
    if (g == NULL)
        return PD_ERR_NO_MEMORY;
    g->impl = impl;
    pd_status_t st = PD_OK;
    if (impl == PD_CUDA_GEMM_CUBLASLT) {
        st = pd_cuda_blas_check(cublasLtCreate(&g->lt), "create");
        if (st == PD_OK)
            st = pd_cuda_check(cudaMalloc(&g->workspace, PD_CUDA_GEMM_WORKSPACE), "gemm workspace");
    }
    if (st != PD_OK) {
        pd_cuda_gemm_destroy(&g);
        return st;
    }
    *gemm_p = g;
    return PD_OK;
}

static void pd_cuda_gemm_shape_cleanup(pd_cuda_gemm_shape_t *s)
{
    if (s->c)
        cublasLtMatrixLayoutDestroy(s->c);
    if (s->b)
        cublasLtMatrixLayoutDestroy(s->b);
    if (s->a)
        cublasLtMatrixLayoutDestroy(s->a);
    if (s->desc)
        cublasLtMatmulDescDestroy(s->desc);
    s->a = s->b = s->c = NULL;
    s->desc = NULL;
}

void pd_cuda_gemm_destroy(pd_cuda_gemm_t **gemm_p)
{
    if (gemm_p == NULL || *gemm_p == NULL)
        return;
    pd_cuda_gemm_t *g = *gemm_p;
    for (uint32_t i = 0; i < g->n_shapes; i++)
        pd_cuda_gemm_shape_cleanup(&g->shapes[i]);
    cudaFree(g->xh);
    cudaFree(g->workspace);
    if (g->lt)
        cublasLtDestroy(g->lt);
    free(g);
    *gemm_p = NULL;
}

static pd_cuda_gemm_shape_t *pd_cuda_gemm_find(const pd_cuda_gemm_t *g, pd_cuda_dtype_t dtype,
                                               uint32_t out, uint32_t in)
{
    for (uint32_t i = 0; i < g->n_shapes; i++) {
        const pd_cuda_gemm_shape_t *s = &g->shapes[i];
        if (s->dtype == dtype && s->out == out && s->in == in)
            return (pd_cuda_gemm_shape_t *)s;
    }
    return NULL;
}

pd_cuda_gemm_impl_t pd_cuda_gemm_shape_impl(const pd_cuda_gemm_t *gemm, pd_cuda_dtype_t dtype,
                                            uint32_t out, uint32_t in)
{
    const pd_cuda_gemm_shape_t *s = pd_cuda_gemm_find(gemm, dtype, out, in);
    return s != NULL ? s->impl : PD_CUDA_GEMM_TILED;
}

/* Column-major view: C (out, n) = A^T B with A = W as (in, out), B = x as (in, n). */
static pd_status_t pd_cuda_gemm_layouts(pd_cuda_gemm_shape_t *s, uint32_t n)
{
    const cudaDataType_t ab = pd_cuda_blas_type(s->dtype);
    pd_status_t st = pd_cuda_blas_check(
        cublasLtMatmulDescCreate(&s->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    if (st == PD_OK)
        st = pd_cuda_blas_check(
            cublasLtMatmulDescSetAttribute(s->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
            "transa");
    if (st == PD_OK)
        st = pd_cuda_blas_check(
            cublasLtMatmulDescSetAttribute(s->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
            "transb");
    if (st == PD_OK)
        st = pd_cuda_blas_check(cublasLtMatrixLayoutCreate(&s->a, ab, s->in, s->out, s->in), "A");
    if (st == PD_OK)
        st = pd_cuda_blas_check(cublasLtMatrixLayoutCreate(&s->b, ab, s->in, n, s->in), "B");
    if (st == PD_OK)
        st = pd_cuda_blas_check(cublasLtMatrixLayoutCreate(&s->c, CUDA_R_32F, s->out, n, s->out),
                                "C");
    return st;
}

static pd_status_t pd_cuda_gemm_set_n(pd_cuda_gemm_shape_t *s, uint32_t n)
{
    const uint64_t cols = n;
    pd_status_t st = pd_cuda_blas_check(
        cublasLtMatrixLayoutSetAttribute(s->b, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols)),
        "B cols");
    if (st == PD_OK)
        st = pd_cuda_blas_check(cublasLtMatrixLayoutSetAttribute(s->c, CUBLASLT_MATRIX_LAYOUT_COLS,
                                                                 &cols, sizeof(cols)),
                                "C cols");
    return st;
}

/* An algorithm with split-K forced off that passes the check for n = 1 and n = max_n. */
static bool pd_cuda_gemm_pick(pd_cuda_gemm_t *g, pd_cuda_gemm_shape_t *s, uint32_t max_n)
{
    cublasLtMatmulPreference_t pref = NULL;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS)
        return false;
    const uint64_t ws = PD_CUDA_GEMM_WORKSPACE;
    const uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none,
                                         sizeof(none));
    cublasLtMatmulHeuristicResult_t res[8];
    int n_res = 0;
    bool found = false;
    if (pd_cuda_gemm_set_n(s, max_n) == PD_OK &&
        cublasLtMatmulAlgoGetHeuristic(g->lt, s->desc, s->a, s->b, s->c, s->c, pref, 8, res,
                                       &n_res) == CUBLAS_STATUS_SUCCESS) {
        for (int i = 0; i < n_res && !found; i++) {
            cublasLtMatmulAlgo_t algo = res[i].algo;
            const int32_t one = 1;
            /* an algorithm without the split-K attribute cannot split */
            cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
                                                 sizeof(one));
            cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                                 &none, sizeof(none));
            cublasLtMatmulHeuristicResult_t chk;
            bool ok = true;
            const uint32_t ns[2] = {1, max_n};
            for (int k = 0; k < 2 && ok; k++)
                ok = pd_cuda_gemm_set_n(s, ns[k]) == PD_OK &&
                     cublasLtMatmulAlgoCheck(g->lt, s->desc, s->a, s->b, s->c, s->c, &algo, &chk) ==
                         CUBLAS_STATUS_SUCCESS &&
                     chk.workspaceSize <= PD_CUDA_GEMM_WORKSPACE;
            if (ok) {
                s->algo = algo;
                found = true;
            }
        }
    }
    cublasLtMatmulPreferenceDestroy(pref);
    return found;
}

pd_status_t pd_cuda_gemm_plan(pd_cuda_gemm_t *gemm, pd_cuda_dtype_t dtype, uint32_t out,
                              uint32_t in, uint32_t max_n)
{
    if (gemm == NULL || out == 0 || in == 0 || max_n == 0)
        return PD_ERR_INVALID_PARAM;
    if (pd_cuda_gemm_find(gemm, dtype, out, in) != NULL)
        return PD_OK;
    if (gemm->n_shapes == PD_CUDA_GEMM_MAX_SHAPES)
        return PD_ERR_LIMIT;
    pd_cuda_gemm_shape_t *s = &gemm->shapes[gemm->n_shapes];
    memset(s, 0, sizeof(*s));
    s->dtype = dtype;
    s->out = out;
    s->in = in;
    s->impl = PD_CUDA_GEMM_TILED;
    if (gemm->impl == PD_CUDA_GEMM_CUBLASLT) {
        pd_status_t st = pd_cuda_gemm_layouts(s, max_n);
        if (st != PD_OK) {
            pd_cuda_gemm_shape_cleanup(s);
            return st;
        }
        if (pd_cuda_gemm_pick(gemm, s, max_n))
            s->impl = PD_CUDA_GEMM_CUBLASLT;
        else
            pd_log_warn("cublasLt: no single algorithm for (%u x %u) over 1 .. %u rows; the tiled "
                        "kernel runs that shape",
                        out, in, max_n);
    }
    gemm->n_shapes++;
    return PD_OK;
}

pd_status_t pd_cuda_gemm_run(pd_cuda_gemm_t *gemm, cudaStream_t stream, const pd_cuda_mat_t *w,
                             const float *x, float *y, uint32_t n, bool accumulate)
{
    if (n == 0)
        return PD_OK;
    pd_cuda_gemm_shape_t *s = pd_cuda_gemm_find(gemm, w->dtype, w->out, w->in);
    if (s == NULL) {
        pd_log_error("gemm: shape (%u x %u) was not planned", w->out, w->in);
        return PD_ERR_INVALID_PARAM;
    }
    if (s->impl == PD_CUDA_GEMM_TILED)
        return pd_cuda_gemm_tiled(stream, w, x, y, n, accumulate);
    const void *b = x;
    if (w->dtype != PD_CUDA_F32) {
        const size_t need = (size_t)n * w->in;
        if (need > gemm->cap_xh) {
            /* grows only past the largest step so far; the stream is ordered after it */
            cudaStreamSynchronize(stream);
            cudaFree(gemm->xh);
            gemm->xh = NULL;
            gemm->cap_xh = 0;
            pd_status_t st = pd_cuda_check(cudaMalloc(&gemm->xh, need * 2), "gemm activations");
            if (st != PD_OK)
                return st;
            gemm->cap_xh = need;
        }
        pd_status_t st = pd_cuda_convert(stream, x, gemm->xh, w->dtype, need);
        if (st != PD_OK)
            return st;
        b = gemm->xh;
    }
    pd_status_t st = pd_cuda_gemm_set_n(s, n);
    if (st != PD_OK)
        return st;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    return pd_cuda_blas_check(cublasLtMatmul(gemm->lt, s->desc, &alpha, w->data, s->a, b, s->b,
                                             &beta, y, s->c, y, s->c, &s->algo, gemm->workspace,
                                             PD_CUDA_GEMM_WORKSPACE, stream),
                              "matmul");
}
