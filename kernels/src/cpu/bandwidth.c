/* The machine's uncached read rate: what a decode step that streams every weight once can
 * reach at best. Each thread sums its share of a buffer larger than every cache with
 * vector loads; the rate is the buffer's bytes over the slowest thread's time. */
#include "pd/ops.h"

#include "cpu/simd_int.h"
#include "pd/time.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct pd_bw_part {
    const float *data; /* (n) */
    size_t n;
    uint64_t ns;
    float sink;
} pd_bw_part_t;

static void *pd_bw_read(void *arg)
{
    pd_bw_part_t *p = arg;
    uint64_t t0 = pd_time_now_ns();
    pd_v16_t a = pd_v16_zero(), b = pd_v16_zero(), c = pd_v16_zero(), d = pd_v16_zero();
    const pd_v16_t one = pd_v16_set1(1.0f);
    size_t i = 0;
    for (; i + 64 <= p->n; i += 64) {
        a = pd_v16_fma(pd_v16_load(p->data + i), one, a);
        b = pd_v16_fma(pd_v16_load(p->data + i + 16), one, b);
        c = pd_v16_fma(pd_v16_load(p->data + i + 32), one, c);
        d = pd_v16_fma(pd_v16_load(p->data + i + 48), one, d);
    }
    p->ns = pd_time_now_ns() - t0;
    p->sink = pd_v16_hsum(a) + pd_v16_hsum(b) + pd_v16_hsum(c) + pd_v16_hsum(d);
    return NULL;
}

double pd_cpu_read_rate(size_t bytes, uint32_t n_threads, uint32_t runs)
{
    if (n_threads == 0 || n_threads > 256 || runs == 0 || bytes < ((size_t)1 << 20))
        return 0.0;
    size_t n = bytes / sizeof(float);
    float *data = aligned_alloc(64, n * sizeof(float));
    pd_bw_part_t *parts = calloc(n_threads, sizeof(*parts));
    pthread_t *threads = calloc(n_threads, sizeof(*threads));
    double *rates = calloc(runs, sizeof(double));
    double best = 0.0;
    if (data == NULL || parts == NULL || threads == NULL || rates == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        data[i] = (float)(i & 1023);
    size_t per = n / n_threads / 64 * 64;
    for (uint32_t r = 0; r < runs; r++) {
        /* Each thread times its own share; the slowest one sets the rate. */
        uint32_t started = 1;
        for (uint32_t t = 0; t < n_threads; t++)
            parts[t] = (pd_bw_part_t){data + t * per, per, 0, 0.0f};
        for (; started < n_threads; started++)
            if (pthread_create(&threads[started], NULL, pd_bw_read, &parts[started]) != 0)
                break;
        pd_bw_read(&parts[0]);
        uint64_t slowest = parts[0].ns;
        for (uint32_t t = 1; t < started; t++) {
            pthread_join(threads[t], NULL);
            slowest = parts[t].ns > slowest ? parts[t].ns : slowest;
        }
        if (started < n_threads) /* cannot start the threads: no figure */
            goto out;
        rates[r] = slowest > 0 ? (double)(per * n_threads * sizeof(float)) / (double)slowest : 0;
    }
    /* the median run */
    for (uint32_t i = 1; i < runs; i++)
        for (uint32_t j = i; j > 0 && rates[j - 1] > rates[j]; j--) {
            double t = rates[j];
            rates[j] = rates[j - 1];
            rates[j - 1] = t;
        }
    best = rates[runs / 2];
out:
    free(rates);
    free(threads);
    free(parts);
    free(data);
    return best;
}
