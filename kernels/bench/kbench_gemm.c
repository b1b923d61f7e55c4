/* pd-kbench --gemm: the prompt matmuls of a model (one layer's products and the
 * classifier, at the prompt's token count) through the CPU backend's matmul op, beside
 * OpenBLAS cblas_sgemm on the same f32 weights and inputs, in GFLOP/s. OpenBLAS is a
 * yardstick only: the engine keeps its own tile kernel, whose result for a token does not
 * depend on the batch (docs/KERNELS.md). Built without OpenBLAS, the comparison column is
 * absent and the run says why. */
#include "kbench_gemm.h"

#include "pd/ops.h"
#include "pd/time.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PD_WITH_OPENBLAS
#include <cblas.h>
#endif

#define PD_KBENCH_GEMM_MAX_RUNS 15

static int pd_kbench_gemm_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pd_kbench_gemm_median(double *v, uint32_t n)
{
    qsort(v, n, sizeof(double), pd_kbench_gemm_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Process CPU time in seconds: on a shared machine, what the product costs when it has
 * its cores (with one thread the steadier figure; with more, CPU-seconds of all threads,
 * spinning included). */
static double pd_kbench_gemm_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Medians of a product's wall and CPU seconds. */
typedef struct pd_kbench_gemm_t {
    double wall_s, cpu_s;
} pd_kbench_gemm_t;

/* One product of the bench: name, the matrix under test (any dtype) and its f32 twin. */
typedef struct pd_kbench_gemm_shape {
    const char *name;
    pd_weight_t w;   /* (1, rows, cols) in the model's dtype */
    pd_weight_t w32; /* the same matrix from the f32 model */
    uint32_t count;  /* products of this shape per layer (0: once per model) */
} pd_kbench_gemm_shape_t;

bool pd_kbench_gemm_have_blas(void)
{
#ifdef PD_WITH_OPENBLAS
    return true;
#else
    return false;
#endif
}

/* Median seconds of pdkv's product and of sgemm, timed alternately; the largest difference
 * of pdkv's result from sgemm's, relative to sgemm's largest output, in *err_p (rounding
 * only with f32 weights; the weights' own rounding with bf16 or int8). */
static void pd_kbench_gemm_time(pd_backend_t *be, const pd_kbench_gemm_shape_t *s, const float *x,
                                float *y, float *y_blas, uint32_t n, uint32_t runs,
                                pd_kbench_gemm_t *pd_p, pd_kbench_gemm_t *blas_p, double *err_p)
{
    double tp[PD_KBENCH_GEMM_MAX_RUNS], tb[PD_KBENCH_GEMM_MAX_RUNS];
    double cp[PD_KBENCH_GEMM_MAX_RUNS], cb[PD_KBENCH_GEMM_MAX_RUNS];
    (void)y_blas;
    for (uint32_t r = 0; r <= runs; r++) { /* run 0 warms caches and the pool */
        uint64_t t0 = pd_time_now_ns();
        double c0 = pd_kbench_gemm_cpu_s();
        be->ops->matmul(be->ctx, &s->w, x, y, n, false);
        if (r > 0) {
            tp[r - 1] = (double)(pd_time_now_ns() - t0) * 1e-9;
            cp[r - 1] = pd_kbench_gemm_cpu_s() - c0;
        }
#ifdef PD_WITH_OPENBLAS
        t0 = pd_time_now_ns();
        c0 = pd_kbench_gemm_cpu_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)s->w32.rows,
                    (int)s->w32.cols, 1.0f, x, (int)s->w32.cols, (const float *)s->w32.data,
                    (int)s->w32.cols, 0.0f, y_blas, (int)s->w32.rows);
        if (r > 0) {
            tb[r - 1] = (double)(pd_time_now_ns() - t0) * 1e-9;
            cb[r - 1] = pd_kbench_gemm_cpu_s() - c0;
        }
#else
        if (r > 0)
            tb[r - 1] = cb[r - 1] = 0.0;
#endif
    }
    pd_p->wall_s = pd_kbench_gemm_median(tp, runs);
    pd_p->cpu_s = pd_kbench_gemm_median(cp, runs);
    blas_p->wall_s = pd_kbench_gemm_median(tb, runs);
    blas_p->cpu_s = pd_kbench_gemm_median(cb, runs);
    double err = 0.0;
#ifdef PD_WITH_OPENBLAS
    double diff = 0.0, mag = 0.0;
    for (size_t i = 0; i < (size_t)n * s->w32.rows; i++) {
        double d = fabs((double)y[i] - (double)y_blas[i]);
        if (!(d <= diff)) /* NaN too */
            diff = d;
        mag = fabs((double)y_blas[i]) > mag ? fabs((double)y_blas[i]) : mag;
    }
    err = mag > 0 ? diff / mag : diff;
#endif
    *err_p = err;
}

pd_status_t pd_kbench_gemm(const pd_model_t *model, const pd_model_t *model_f32, uint32_t n,
                           const uint32_t *threads, uint32_t n_threads_list, uint32_t runs,
                           int json)
{
    if (runs == 0 || runs > PD_KBENCH_GEMM_MAX_RUNS)
        return PD_ERR_INVALID_PARAM;
    const pd_model_weights_t *w = &model->w, *w32 = &model_f32->w;
    pd_kbench_gemm_shape_t shapes[] = {
        {"q", pd_weight_at(&w->wq, 0), pd_weight_at(&w32->wq, 0), 1},
        {"k", pd_weight_at(&w->wk, 0), pd_weight_at(&w32->wk, 0), 1},
        {"v", pd_weight_at(&w->wv, 0), pd_weight_at(&w32->wv, 0), 1},
        {"o", pd_weight_at(&w->wo, 0), pd_weight_at(&w32->wo, 0), 1},
        {"gate", pd_weight_at(&w->w_gate, 0), pd_weight_at(&w32->w_gate, 0), 1},
        {"up", pd_weight_at(&w->w_up, 0), pd_weight_at(&w32->w_up, 0), 1},
        {"down", pd_weight_at(&w->w_down, 0), pd_weight_at(&w32->w_down, 0), 1},
        {"lm_head", pd_weight_at(&w->lm_head, 0), pd_weight_at(&w32->lm_head, 0), 0},
    };
    const uint32_t n_shapes = sizeof(shapes) / sizeof(shapes[0]);
    uint32_t max_in = 0, max_out = 0;
    for (uint32_t i = 0; i < n_shapes; i++) {
        max_in = shapes[i].w.cols > max_in ? shapes[i].w.cols : max_in;
        max_out = shapes[i].w.rows > max_out ? shapes[i].w.rows : max_out;
    }
    pd_status_t st = PD_ERR_NO_MEMORY;
    float *x = malloc((size_t)n * max_in * sizeof(float));
    float *y = malloc((size_t)n * max_out * sizeof(float));
    float *yb = malloc((size_t)n * max_out * sizeof(float));
    if (x == NULL || y == NULL || yb == NULL)
        goto out;
    /* activations of the spread a normalised residual has */
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < (size_t)n * max_in; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    const char *dtype = pd_dtype_name((pd_dtype_t)pd_model_dtype(model));
    if (!json)
        printf("prompt matmuls of %u tokens, %s weights, GFLOP/s (median of %u, alternating "
               "with sgemm)%s\n",
               n, dtype, runs,
               pd_kbench_gemm_have_blas()
                   ? ""
                   : "; no OpenBLAS in this build (install libopenblas-dev and reconfigure): "
                     "no comparison");
    else
        printf("{\"gemm\":{\"tokens\":%u,\"weights\":\"%s\",\"runs\":%u,\"openblas\":%s,"
               "\"threads\":[",
               n, dtype, runs, pd_kbench_gemm_have_blas() ? "true" : "false");
    for (uint32_t ti = 0; ti < n_threads_list; ti++) {
        pd_backend_t be = {NULL, NULL};
        if ((st = pd_backend_cpu_create(threads[ti], 16, 1, &be)) != PD_OK)
            goto out;
        st = be.ops->reserve(be.ctx, shapes[0].w.dtype, n, max_in);
        if (st != PD_OK) {
            pd_backend_destroy(&be);
            goto out;
        }
#ifdef PD_WITH_OPENBLAS
        openblas_set_num_threads((int)threads[ti]);
#endif
        double layer_flop = 0;
        pd_kbench_gemm_t layer_pd = {0, 0}, layer_blas = {0, 0};
        if (json)
            printf("%s{\"threads\":%u,\"shapes\":[", ti ? "," : "", threads[ti]);
        for (uint32_t i = 0; i < n_shapes; i++) {
            const pd_kbench_gemm_shape_t *sh = &shapes[i];
            pd_kbench_gemm_t t_pd, t_blas;
            double err;
            pd_kbench_gemm_time(&be, sh, x, y, yb, n, runs, &t_pd, &t_blas, &err);
            double flop = 2.0 * n * sh->w.rows * sh->w.cols;
            double g_pd = flop / t_pd.wall_s * 1e-9;
            double g_blas = t_blas.wall_s > 0 ? flop / t_blas.wall_s * 1e-9 : 0;
            double c_pd = flop / t_pd.cpu_s * 1e-9;
            double c_blas = t_blas.cpu_s > 0 ? flop / t_blas.cpu_s * 1e-9 : 0;
            if (sh->count) {
                layer_flop += flop * sh->count;
                layer_pd.wall_s += t_pd.wall_s * sh->count;
                layer_pd.cpu_s += t_pd.cpu_s * sh->count;
                layer_blas.wall_s += t_blas.wall_s * sh->count;
                layer_blas.cpu_s += t_blas.cpu_s * sh->count;
            }
            if (json)
                printf("%s{\"name\":\"%s\",\"out\":%u,\"in\":%u,\"pdkv_gflops\":%.2f,"
                       "\"openblas_gflops\":%.2f,\"ratio\":%.3f,\"pdkv_cpu_gflops\":%.2f,"
                       "\"openblas_cpu_gflops\":%.2f,\"cpu_ratio\":%.3f,"
                       "\"max_diff_of_max\":%.2e}",
                       i ? "," : "", sh->name, sh->w.rows, sh->w.cols, g_pd, g_blas,
                       g_blas > 0 ? g_pd / g_blas : 0.0, c_pd, c_blas,
                       c_blas > 0 ? c_pd / c_blas : 0.0, err);
            else
                printf("  threads %u %-7s (%4u x %4u): pdkv %6.1f  sgemm %6.1f  = %5.1f%%; "
                       "per CPU-second %6.1f %6.1f = %5.1f%%  (max diff %.1e of max |y|)\n",
                       threads[ti], sh->name, sh->w.rows, sh->w.cols, g_pd, g_blas,
                       g_blas > 0 ? 100.0 * g_pd / g_blas : 0.0, c_pd, c_blas,
                       c_blas > 0 ? 100.0 * c_pd / c_blas : 0.0, err);
        }
        double g_pd = layer_flop / layer_pd.wall_s * 1e-9;
        double g_blas = layer_blas.wall_s > 0 ? layer_flop / layer_blas.wall_s * 1e-9 : 0;
        double c_pd = layer_flop / layer_pd.cpu_s * 1e-9;
        double c_blas = layer_blas.cpu_s > 0 ? layer_flop / layer_blas.cpu_s * 1e-9 : 0;
        if (json)
            printf("],\"layer_pdkv_gflops\":%.2f,\"layer_openblas_gflops\":%.2f,"
                   "\"layer_ratio\":%.3f,\"layer_pdkv_cpu_gflops\":%.2f,"
                   "\"layer_openblas_cpu_gflops\":%.2f,\"layer_cpu_ratio\":%.3f}",
                   g_pd, g_blas, g_blas > 0 ? g_pd / g_blas : 0.0, c_pd, c_blas,
                   c_blas > 0 ? c_pd / c_blas : 0.0);
        else
            printf("  threads %u one layer (q k v o gate up down): pdkv %.1f  sgemm %.1f  = "
                   "%.1f%%; per CPU-second %.1f %.1f = %.1f%%\n",
                   threads[ti], g_pd, g_blas, g_blas > 0 ? 100.0 * g_pd / g_blas : 0.0, c_pd,
                   c_blas, c_blas > 0 ? 100.0 * c_pd / c_blas : 0.0);
        fflush(stdout);
        pd_backend_destroy(&be);
    }
    if (json)
        printf("]}}\n");
    st = PD_OK;
out:
    free(yb);
    free(y);
    free(x);
    return st;
}
