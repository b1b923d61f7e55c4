/* Monotonic time. */
#ifndef PD_TIME_H
#define PD_TIME_H

#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t pd_time_now_ns(void);

static inline double pd_time_ns_to_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* Milliseconds on CLOCK_MONOTONIC. */
static inline uint64_t pd_time_now_ms(void)
{
    return pd_time_now_ns() / 1000000u;
}

/* A new epoch: a random, nonzero id of one process's lifetime (a worker's, the
 * router's), below 2^53 so that JSON readers of status replies keep it exact. */
uint64_t pd_time_epoch_new(void);

#endif
