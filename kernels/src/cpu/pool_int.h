/* A persistent pthread pool for the CPU backend. A job is a number of independent chunks;
 * the caller and the workers claim chunks from one atomic word until none are left, so a
 * worker that lost its core to another process delays nothing it has not claimed. Which
 * thread runs a chunk never changes what the chunk computes. Idle workers spin briefly on
 * the job word and then sleep, so a busy token loop pays only atomics per job and an idle
 * engine burns no CPU. */
#ifndef PD_CPU_POOL_INT_H
#define PD_CPU_POOL_INT_H

#include "pd/status.h"

#include <stdint.h>

typedef struct pd_cpu_pool pd_cpu_pool_t;

/* Chunks published at once; larger jobs run as several slices. */
#define PD_CPU_POOL_MAX_CHUNKS ((1u << 20) - 1)

/* Run chunk `chunk` of a job on the thread with index tid in [0, n_threads). */
typedef void (*pd_cpu_job_fn)(void *arg, uint32_t chunk, uint32_t tid);

/* Start n_threads - 1 worker threads (n_threads >= 1). */
PD_MUST_CHECK pd_status_t pd_cpu_pool_create(uint32_t n_threads, pd_cpu_pool_t **pool_p);

/* Run chunks 0 .. n_chunks - 1 of fn and return when all have finished. One caller at a
 * time. */
void pd_cpu_pool_run(pd_cpu_pool_t *pool, pd_cpu_job_fn fn, void *arg, uint32_t n_chunks);

uint32_t pd_cpu_pool_n_threads(const pd_cpu_pool_t *pool);

/* Stop and join the workers; accepts NULL and clears the caller's pointer. */
void pd_cpu_pool_destroy(pd_cpu_pool_t **pool_p);

#endif
