/* The CPU thread pool (see pool_int.h).
 *
 * One 64-bit word describes the current job: (job id: 24 bits, n_chunks: 20, next: 20).
 * A thread claims chunk `next` by a compare-and-swap that bumps it, which succeeds only
 * while the word still names the same job and next < n_chunks; the job cannot finish
 * before a claimed chunk is done, so the function and argument read after a successful
 * claim are that job's. The caller publishes a job by storing a new word (release) after
 * writing fn and arg, and the workers take the job from the word (acquire). */
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
#define PD_POOL_SPIN_NS  100000u
#define PD_POOL_YIELD_NS 20000u

#define PD_POOL_ID_SHIFT 40
#define PD_POOL_N_SHIFT  20
#define PD_POOL_MASK20   ((1ull << 20) - 1)

struct pd_cpu_pool {
    uint32_t n_threads;
    pthread_t *threads; /* (n_threads - 1) */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    _Atomic uint64_t word; /* the current job: (id, n_chunks, next) */
    _Atomic uint32_t done; /* chunks of the current job finished */
    _Atomic uint32_t n_sleeping;
    _Atomic int stop;
    _Atomic(pd_cpu_job_fn) fn;
    _Atomic(void *) arg;
    _Atomic uint32_t chunk_base; /* jobs above PD_CPU_POOL_MAX_CHUNKS run in slices */
    uint64_t job_id;             /* caller side: id of the last job */
};

typedef struct pd_cpu_worker_arg {
    pd_cpu_pool_t *pool;
    uint32_t tid;
} pd_cpu_worker_arg_t;

/* Claim and run chunks of the job named by word w until none are left. */
static void pd_cpu_pool_work(pd_cpu_pool_t *pool, uint64_t w, uint32_t tid)
{
    for (;;) {
        uint64_t n = (w >> PD_POOL_N_SHIFT) & PD_POOL_MASK20, next = w & PD_POOL_MASK20;
        if (next >= n)
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool->word, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire)) {
            continue; /* w now holds the current word, perhaps of a newer job */
        }
        pd_cpu_job_fn fn = atomic_load_explicit(&pool->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&pool->arg, memory_order_relaxed);
        uint32_t base = atomic_load_explicit(&pool->chunk_base, memory_order_relaxed);
        fn(arg, base + (uint32_t)next, tid);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        w = atomic_load_explicit(&pool->word, memory_order_acquire);
    }
}

/* Wait until the job id differs from seen_id; spin first, then sleep. */
static uint64_t pd_cpu_pool_wait_job(pd_cpu_pool_t *pool, uint64_t seen_id)
{
    uint64_t start = pd_time_now_ns();
    for (uint32_t i = 0;; i++) {
        uint64_t w = atomic_load_explicit(&pool->word, memory_order_acquire);
        if ((w >> PD_POOL_ID_SHIFT) != seen_id || atomic_load(&pool->stop))
            return w;
        PD_CPU_RELAX();
        if ((i & 255u) == 255u && pd_time_now_ns() - start > PD_POOL_SPIN_NS)
            break;
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->n_sleeping, 1);
    uint64_t w;
    while (((w = atomic_load(&pool->word)) >> PD_POOL_ID_SHIFT) == seen_id &&
           !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->cond, &pool->mutex);
    atomic_fetch_sub(&pool->n_sleeping, 1);
    pthread_mutex_unlock(&pool->mutex);
    return w;
}

static void *pd_cpu_pool_worker(void *p)
{
    pd_cpu_worker_arg_t *wa = p;
    pd_cpu_pool_t *pool = wa->pool;
    uint32_t tid = wa->tid;
    free(wa);
    uint64_t seen_id = 0;
    for (;;) {
        uint64_t w = pd_cpu_pool_wait_job(pool, seen_id);
        if (atomic_load(&pool->stop))
            break;
        seen_id = w >> PD_POOL_ID_SHIFT;
        pd_cpu_pool_work(pool, w, tid);
    }
    return NULL;
}

static void pd_cpu_pool_wake(pd_cpu_pool_t *pool)
{
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
    pd_cpu_pool_wake(pool);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
err_free_pool:
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    return PD_ERR_NO_MEMORY;
}

/* Run chunks base .. base + n_chunks - 1, n_chunks <= PD_CPU_POOL_MAX_CHUNKS. */
static void pd_cpu_pool_run_slice(pd_cpu_pool_t *pool, pd_cpu_job_fn fn, void *arg, uint32_t base,
                                  uint32_t n_chunks)
{
    pool->job_id = (pool->job_id + 1) & ((1ull << 24) - 1);
    if (pool->job_id == 0)
        pool->job_id = 1; /* 0 is the id the workers start from */
    atomic_store_explicit(&pool->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&pool->chunk_base, base, memory_order_relaxed);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint64_t w = (pool->job_id << PD_POOL_ID_SHIFT) | ((uint64_t)n_chunks << PD_POOL_N_SHIFT);
    atomic_store_explicit(&pool->word, w, memory_order_seq_cst);
    pd_cpu_pool_wake(pool);
    pd_cpu_pool_work(pool, w, 0);
    uint64_t start = 0;
    for (uint32_t i = 0; atomic_load_explicit(&pool->done, memory_order_acquire) != n_chunks; i++) {
        PD_CPU_RELAX();
        if ((i & 63u) != 63u)
            continue;
        /* A worker that lost its core holds a chunk: let it run. */
        uint64_t now = pd_time_now_ns();
        if (start == 0)
            start = now;
        else if (now - start > PD_POOL_YIELD_NS)
            sched_yield();
    }
}

void pd_cpu_pool_run(pd_cpu_pool_t *pool, pd_cpu_job_fn fn, void *arg, uint32_t n_chunks)
{
    if (pool->n_threads == 1 || n_chunks <= 1) {
        for (uint32_t c = 0; c < n_chunks; c++)
            fn(arg, c, 0);
        return;
    }
    for (uint32_t base = 0; base < n_chunks; base += PD_CPU_POOL_MAX_CHUNKS) {
        uint32_t n = n_chunks - base;
        pd_cpu_pool_run_slice(pool, fn, arg, base,
                              n < PD_CPU_POOL_MAX_CHUNKS ? n : PD_CPU_POOL_MAX_CHUNKS);
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
    pd_cpu_pool_wake(pool);
    for (uint32_t i = 0; i + 1 < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    *pool_p = NULL;
}
