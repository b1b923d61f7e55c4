/* Private state of pd-prefill beside what the role runtime holds (model, engine, KV pool
 * and fabric, block manager: its own prefix cache): one transfer peer per decode worker
 * epoch, and the prefills whose KV push is still in flight. One event-loop thread. */
#ifndef PD_PREFILL_INT_H
#define PD_PREFILL_INT_H

#include "pd/prefill.h"
#include "pd/role.h"
#include "pd/sample.h"
#include "pd/xfer.h"

#include <stdbool.h>
#include <stdint.h>

#define PD_PREFILL_MAX_JOBS  256
#define PD_PREFILL_MAX_PEERS 64

/* A connected decode worker, by (worker_id, epoch). */
typedef struct pd_prefill_peer {
    char worker_id[PD_PROTO_NAME_CAP];
    uint64_t epoch;
    pd_xfer_peer_t *peer;
    pd_kv_layout_t layout; /* the peer's pool */
    uint64_t last_used_ms;
} pd_prefill_peer_t;

/* One prefill whose push is in flight; its blocks stay pinned until the push is final. */
typedef struct pd_prefill_job {
    bool live;
    uint64_t req_id;
    uint32_t *blocks; /* (n_blocks) this worker's blocks of the prompt */
    uint32_t n_blocks;
    pd_xfer_send_t *send;
    int32_t first_token;
    uint32_t n_computed_tokens;
    uint32_t n_cached_tokens;
    uint32_t n_created_tokens;
    double prefill_ms;
    uint64_t t_compute_end_ns;
    char dest[PD_PROTO_NAME_CAP];
} pd_prefill_job_t;

typedef struct pd_prefill {
    pd_role_t *rt;  /* the shared parts: args, model, engine, layout, fabric, bm, worker */
    float *logits;  /* (vocab) */
    float *scratch; /* (2 * vocab) */
    pd_prefill_peer_t peers[PD_PREFILL_MAX_PEERS];
    pd_prefill_job_t jobs[PD_PREFILL_MAX_JOBS];
    uint32_t n_jobs;
    /* What computing and fetching have cost so far (running averages), for the choice to
     * fetch a prefix the decode worker holds instead of recomputing it; 0 = not seen. */
    double compute_ms_per_token;
    double fetch_ms_per_byte;
} pd_prefill_t;

/* prefill_job.c; the handlers take the role state (a pd_prefill_t). */
void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m);
void pd_prefill_on_cancel(void *state, uint64_t req_id);
/* Finish jobs whose push is final: prefilled or error to the router, release. */
void pd_prefill_poll_jobs(void *state);
void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j);

#endif
