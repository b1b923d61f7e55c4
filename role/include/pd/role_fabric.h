/* The fabric side of a worker's start-up (part of the role runtime, pd/role.h): a transfer
 * engine configured from the worker's arguments, with the worker's KV pool as its one
 * region, and the descriptor the worker sends in `register`. */
#ifndef PD_ROLE_FABRIC_H
#define PD_ROLE_FABRIC_H

#include "pd/kv_layout.h"
#include "pd/mp.h"
#include "pd/status.h"
#include "pd/worker.h"
#include "pd/xfer.h"

#include <stdbool.h>

typedef struct pd_role_fabric {
    pd_xfer_engine_t *engine;
    void *pool;        /* pool_bytes, zeroed */
    size_t pool_bytes; /* pd_kv_pool_bytes(layout) */
    bool owned;        /* pool from aligned_alloc, freed by pd_role_fabric_close */
    int fd;            /* pd_xfer_engine_fd: readable when the engine has work */
} pd_role_fabric_t;

/* Start the engine named by args (--xfer-backend, --xfer-timeout-ms, --checksum) and give
 * it a zeroed pool of pd_kv_pool_bytes(layout) bytes: allocated by the fabric when
 * fabric_alloc (the pool peers write into: on one host a shared mapping), else from the
 * heap and registered (a pool that is only read by the fabric). Appends the engine's
 * descriptor to desc. `who` prefixes the log lines ("decode", "prefill"). On failure
 * everything made is undone and the reason logged. */
PD_MUST_CHECK pd_status_t pd_role_fabric_open(const pd_worker_args_t *args, const char *who,
                                              const pd_kv_layout_t *layout, bool fabric_alloc,
                                              pd_mp_writer_t *desc, pd_role_fabric_t *out);

/* Destroy the engine and free the pool. Idempotent. */
void pd_role_fabric_close(pd_role_fabric_t *wp);

#endif
