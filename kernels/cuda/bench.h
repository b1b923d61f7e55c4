/* GPU microbenchmarks behind pd-kbench --backend cuda: the device's copy bandwidth (the
 * ceiling memory-bound kernels are measured against) and decode attention over a paged
 * pool, both timed with CUDA events in the same process. PD_ERR_UNSUPPORTED without
 * CUDA, PD_ERR_NOT_FOUND without a device. */
#ifndef PD_CUDA_BENCH_H
#define PD_CUDA_BENCH_H

#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

/* Median rate of a device-to-device copy of bytes over runs, counting the bytes read and
 * the bytes written (rate_p in bytes per second). */
PD_MUST_CHECK pd_status_t pd_cuda_bench_copy(size_t bytes, uint32_t runs, double *rate_p);

/* One decode step's attention (one layer): n_seqs sequences, each one query row at
 * context ctx, over a pool of exactly their blocks in a shuffled order; K, V and q drawn
 * from a fresh seed; the output poisoned and checked written. */
typedef struct pd_cuda_attn_bench {
    uint32_t n_seqs, ctx, n_heads, n_kv_heads, head_dim, block_tokens, runs;
    uint64_t seed;
    double ms;       /* median time of one call */
    double kv_bytes; /* K and V bytes one call reads */
    double bytes;    /* every byte one call reads or writes (K, V, q, partials, out) */
} pd_cuda_attn_bench_t;

PD_MUST_CHECK pd_status_t pd_cuda_bench_attention(pd_cuda_attn_bench_t *b);

/* Median rate of a copy of bytes from this process's device memory into another
 * process's, through CUDA IPC (bytes read + written, as pd_cuda_bench_copy counts them).
 * The other process is this program again, started with PD_CUDA_IPC_PEER set: a program
 * that offers this benchmark calls pd_cuda_bench_ipc_peer_main first thing in main. The
 * copied bytes are read back through the mapping and checked. */
PD_MUST_CHECK pd_status_t pd_cuda_bench_ipc(size_t bytes, uint32_t runs, double *rate_p);

/* When PD_CUDA_IPC_PEER is set, serve as the peer of pd_cuda_bench_ipc and return the
 * process's exit status; -1 otherwise (carry on with main). */
int pd_cuda_bench_ipc_peer_main(void);

#endif
