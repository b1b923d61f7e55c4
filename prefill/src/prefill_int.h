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
    uint32_t *holes; /* (n_holes) prompt blocks computed to fill holes in a reused prefix */
    uint32_t n_holes;
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
    uint64_t n_checksum_failures; /* blocks read from a holder that failed their checksum */
} pd_prefill_t;

/* Where a prompt block's KV comes from (pd_prefill_assemble). */
typedef enum pd_prefill_block_src {
    PD_PREFILL_BLOCK_COMPUTE = 0, /* computed by this job */
    PD_PREFILL_BLOCK_OWN,         /* this worker's cache */
    PD_PREFILL_BLOCK_HOLDER,      /* read from a third worker, checksum verified */
    PD_PREFILL_BLOCK_DEST         /* read from the decode worker's pinned prefix, unchecked */
} pd_prefill_block_src_t;

/* prefill_plan.c: the transfer peer of a worker at an epoch (cached; a new epoch
 * reconnects); and the job's blocks: blocks[i] (n_prompt_blocks) receives a pool block
 * for every prompt block (pinned cache hits or fresh ones, all to release at the end) and
 * src[i] a pd_prefill_block_src_t, holder and decode reads done. Fails only when the pool
 * has no room (*why_p says so; nothing is left pinned). */
pd_status_t pd_prefill_peer_get(pd_prefill_t *p, const char *worker_id, uint64_t epoch,
                                const void *desc, size_t desc_bytes, pd_prefill_peer_t **peer_p);
pd_status_t pd_prefill_assemble(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                pd_prefill_peer_t *dest, uint32_t *blocks, uint8_t *src,
                                const char **why_p);

/* prefill_job.c; the handlers take the role state (a pd_prefill_t). */
void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m);
void pd_prefill_on_cancel(void *state, uint64_t req_id);
/* Finish jobs whose push is final: prefilled or error to the router, release. */
void pd_prefill_poll_jobs(void *state);
void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j);

#endif
