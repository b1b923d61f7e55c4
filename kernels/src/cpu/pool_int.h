/* A persistent pthread pool for the CPU backend: the caller is thread 0 and runs one
 * share of every job itself; the others spin briefly between jobs and then sleep, so a
 * busy token loop pays only an atomic flag per job and an idle engine burns no CPU. */
#ifndef PD_CPU_POOL_INT_H
#define PD_CPU_POOL_INT_H

#include "pd/status.h"

#include <stdint.h>

typedef struct pd_cpu_pool pd_cpu_pool_t;

/* A job: called once on every thread with its index tid in [0, n_threads). */
typedef void (*pd_cpu_job_fn)(void *arg, uint32_t tid, uint32_t n_threads);

/* Start n_threads - 1 worker threads (n_threads >= 1). */
pd_status_t pd_cpu_pool_create(uint32_t n_threads, pd_cpu_pool_t **pool_p);

/* Run fn on all threads and return when every share has finished. Not reentrant: one
 * caller at a time. */
void pd_cpu_pool_run(pd_cpu_pool_t *pool, pd_cpu_job_fn fn, void *arg);

uint32_t pd_cpu_pool_n_threads(const pd_cpu_pool_t *pool);

/* Stop and join the workers; accepts NULL and clears the caller's pointer. */
void pd_cpu_pool_destroy(pd_cpu_pool_t **pool_p);

#endif
