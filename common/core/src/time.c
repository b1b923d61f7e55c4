#include "pd/time.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t pd_time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pd_time_epoch_new(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
        e = pd_time_now_ns() ^ ((uint64_t)getpid() << 32);
    e &= (1ULL << 53) - 1;
    return e != 0 ? e : 1;
}
