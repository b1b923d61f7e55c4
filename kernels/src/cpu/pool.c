/* The CPU thread pool (see pool_int.h). A job is published by bumping a generation
 * counter; workers spin on it for a short while before sleeping on a condition variable,
 * and the caller waits for a pending count to reach zero. */
#include "cpu/pool_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PD_CPU_RELAX() _mm_pause()
#else
#define PD_CPU_RELAX() ((void)0)
#endif

/* How long an idle worker spins before sleeping, and a waiting caller before yielding. */
#define PD_POOL_SPIN_NS  2000000u
#define PD_POOL_YIELD_NS 1000000u

struct pd_cpu_pool {
    uint32_t n_threads;
    pthread_t *threads; /* (n_threads - 1) */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    _Atomic uint64_t generation; /* bumped once per job */
    _Atomic uint32_t pending;    /* worker shares of the current job not yet finished */
    _Atomic uint32_t n_sleeping;
    _Atomic int stop;
    pd_cpu_job_fn fn; /* written before the generation bump, read after it */
    void *arg;
};

typedef struct pd_cpu_worker_arg {
    pd_cpu_pool_t *pool;
    uint32_t tid;
} pd_cpu_worker_arg_t;

/* Wait until the generation differs from seen; spin first, then sleep. */
static uint64_t pd_cpu_pool_wait_job(pd_cpu_pool_t *pool, uint64_t seen)
{
    uint64_t start = pd_time_now_ns();
    for (uint32_t i = 0;; i++) {
        uint64_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen)
            return g;
        PD_CPU_RELAX();
        if ((i & 255u) == 255u && pd_time_now_ns() - start > PD_POOL_SPIN_NS)
            break;
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->n_sleeping, 1);
    uint64_t g;
    while ((g = atomic_load(&pool->generation)) == seen)
        pthread_cond_wait(&pool->cond, &pool->mutex);
    atomic_fetch_sub(&pool->n_sleeping, 1);
    pthread_mutex_unlock(&pool->mutex);
    return g;
}

static void *pd_cpu_pool_worker(void *p)
{
    pd_cpu_worker_arg_t *wa = p;
    pd_cpu_pool_t *pool = wa->pool;
    uint32_t tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        seen = pd_cpu_pool_wait_job(pool, seen);
        if (atomic_load(&pool->stop))
            break;
        pool->fn(pool->arg, tid, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
    return NULL;
}

static void pd_cpu_pool_publish(pd_cpu_pool_t *pool)
{
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->n_sleeping) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->cond);
        pthread_mutex_unlock(&pool->mutex);
    }
}

pd_status_t pd_cpu_pool_create(uint32_t n_threads, pd_cpu_pool_t **pool_p)
{
    if (n_threads == 0 || n_threads > 1024)
        return PD_ERR_INVALID_PARAM;
    pd_cpu_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return PD_ERR_NO_MEMORY;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->threads = calloc(n_threads, sizeof(pthread_t));
    if (pool->threads == NULL)
        goto err_free_pool;
    uint32_t started = 0;
    for (; started + 1 < n_threads; started++) {
        pd_cpu_worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa == NULL)
            goto err_stop_threads;
        wa->pool = pool;
        wa->tid = started + 1;
        int rc = pthread_create(&pool->threads[started], NULL, pd_cpu_pool_worker, wa);
        if (rc != 0) {
            pd_log_error("pthread_create failed (%d)", rc);
            free(wa);
            goto err_stop_threads;
        }
    }
    *pool_p = pool;
    return PD_OK;

err_stop_threads:
    atomic_store(&pool->stop, 1);
    pd_cpu_pool_publish(pool);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
err_free_pool:
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    return PD_ERR_NO_MEMORY;
}

void pd_cpu_pool_run(pd_cpu_pool_t *pool, pd_cpu_job_fn fn, void *arg)
{
    if (pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    pd_cpu_pool_publish(pool);
    fn(arg, 0, pool->n_threads);
    uint64_t start = 0;
    for (uint32_t i = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) != 0; i++) {
        PD_CPU_RELAX();
        if ((i & 255u) != 255u)
            continue;
        /* A worker that lost its core to another process: stop competing with it. */
        uint64_t now = pd_time_now_ns();
        if (start == 0)
            start = now;
        else if (now - start > PD_POOL_YIELD_NS)
            sched_yield();
    }
}

uint32_t pd_cpu_pool_n_threads(const pd_cpu_pool_t *pool)
{
    return pool->n_threads;
}

void pd_cpu_pool_destroy(pd_cpu_pool_t **pool_p)
{
    if (pool_p == NULL || *pool_p == NULL)
        return;
    pd_cpu_pool_t *pool = *pool_p;
    atomic_store(&pool->stop, 1);
    pd_cpu_pool_publish(pool);
    for (uint32_t i = 0; i + 1 < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    *pool_p = NULL;
}
