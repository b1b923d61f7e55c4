/* The CPU thread pool behind every op: each chunk of a job runs exactly once, on some
 * thread, however many threads and jobs there are. */
#include "pool_int.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct count_job {
    _Atomic uint32_t *counts; /* (n) */
    _Atomic uint32_t threads_seen;
} count_job_t;

static void count_chunk(void *arg, uint32_t chunk, uint32_t tid)
{
    count_job_t *j = arg;
    atomic_fetch_add_explicit(&j->counts[chunk], 1, memory_order_relaxed);
    atomic_fetch_or_explicit(&j->threads_seen, 1u << (tid & 31), memory_order_relaxed);
}

static void run_and_check(pd_cpu_pool_t *pool, uint32_t n)
{
    count_job_t j;
    j.counts = calloc(n ? n : 1, sizeof(*j.counts));
    cr_assert_not_null(j.counts);
    atomic_init(&j.threads_seen, 0);
    pd_cpu_pool_run(pool, count_chunk, &j, n);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&j.counts[i]), 1, "chunk %u of %u ran %u times", i, n,
                     atomic_load(&j.counts[i]));
    free(j.counts);
}

Test(cpu_pool, every_chunk_runs_once_for_any_thread_count)
{
    const uint32_t threads[] = {1, 2, 4};
    const uint32_t sizes[] = {0, 1, 2, 7, 1000, PD_CPU_POOL_MAX_CHUNKS + 5};
    for (int t = 0; t < 3; t++) {
        pd_cpu_pool_t *pool = NULL;
        cr_assert_eq(pd_cpu_pool_create(threads[t], &pool), PD_OK);
        cr_assert_eq(pd_cpu_pool_n_threads(pool), threads[t]);
        for (int s = 0; s < 6; s++)
            run_and_check(pool, sizes[s]);
        pd_cpu_pool_destroy(&pool);
        cr_assert_null(pool);
    }
    pd_cpu_pool_destroy(NULL);
}

Test(cpu_pool, many_small_jobs_back_to_back_and_after_sleeping)
{
    pd_cpu_pool_t *pool = NULL;
    cr_assert_eq(pd_cpu_pool_create(3, &pool), PD_OK);
    for (int i = 0; i < 20000; i++)
        run_and_check(pool, (uint32_t)(i % 9) + 2);
    /* Let the workers fall asleep, then wake them with a job. */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    count_job_t j;
    j.counts = calloc(64, sizeof(*j.counts));
    atomic_init(&j.threads_seen, 0);
    pd_cpu_pool_run(pool, count_chunk, &j, 64);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(atomic_load(&j.counts[i]), 1);
    free(j.counts);
    pd_cpu_pool_destroy(&pool);
}
