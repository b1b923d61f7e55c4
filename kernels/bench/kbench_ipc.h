/* pd-kbench's KV-by-IPC benchmark (kbench_ipc.c). */
#ifndef PD_KBENCH_IPC_H
#define PD_KBENCH_IPC_H

#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pd_kbench_kv_ipc {
    double bytes;   /* KV moved per run */
    double seconds; /* median, first post to the last layer's event */
    double rate;    /* bytes read + written per second */
    uint32_t n_blocks, n_layers;
} pd_kbench_kv_ipc_t;

/* Move a pool of about `bytes` of KV into another process's by IPC, runs times. */
PD_MUST_CHECK pd_status_t pd_kbench_kv_ipc(size_t bytes, uint32_t runs, pd_kbench_kv_ipc_t *out);

/* Serve as the peer when PD_KBENCH_KV_PEER is set (returns the exit status); -1 else. */
int pd_kbench_kv_peer_main(void);

#endif
