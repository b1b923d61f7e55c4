/* pd-kbench --gemm: a model's prompt matmuls beside OpenBLAS sgemm (kbench_gemm.c). */
#ifndef PD_KBENCH_GEMM_H
#define PD_KBENCH_GEMM_H

#include "pd/model.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stdint.h>

/* True when this build links OpenBLAS, the comparison of pd_kbench_gemm. */
bool pd_kbench_gemm_have_blas(void);

/* Time the products of layer 0 and the classifier of model for n tokens on the CPU
 * backend with each of threads (n_threads_list) thread counts, median of runs (1-15),
 * beside cblas_sgemm on the same matrices of model_f32 (the f32 form of model); print a
 * table, or one JSON object when json is set. */
PD_MUST_CHECK pd_status_t pd_kbench_gemm(const pd_model_t *model, const pd_model_t *model_f32,
                                         uint32_t n, const uint32_t *threads,
                                         uint32_t n_threads_list, uint32_t runs, int json);

#endif
