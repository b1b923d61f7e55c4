/* Private state of pd-prefill: its KV pool and block manager (its own prefix cache), the
 * compute engine, the transfer engine with one peer per decode worker epoch, and the
 * prefills whose KV push is still in flight. One event-loop thread. */
#ifndef PD_PREFILL_INT_H
#define PD_PREFILL_INT_H

#include "pd/kvblock.h"
#include "pd/model.h"
#include "pd/prefill.h"
#include "pd/proto.h"
#include "pd/sample.h"
#include "pd/worker.h"
#include "pd/xfer.h"
#include "pd/xfer_worker.h"

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

struct pd_prefill {
    pd_worker_args_t args;
    pd_model_t *model;
    pd_engine_t *engine;
    pd_kv_layout_t layout;
    /* The transfer engine and the KV pool it moves: xp.pool is
     * (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32. */
    pd_xfer_worker_pool_t xp;
    pd_kvbm_t *bm;
    pd_worker_t *worker;
    uint32_t vocab;
    float *logits;  /* (vocab) */
    float *scratch; /* (2 * vocab) */
    pd_prefill_peer_t peers[PD_PREFILL_MAX_PEERS];
    pd_prefill_job_t jobs[PD_PREFILL_MAX_JOBS];
    uint32_t n_jobs;
    uint64_t next_expire_ms;
    /* What computing and fetching have cost so far (running averages), for the choice to
     * fetch a prefix the decode worker holds instead of recomputing it; 0 = not seen. */
    double compute_ms_per_token;
    double fetch_ms_per_byte;
};

/* prefill_job.c */
void pd_prefill_on_prefill(pd_prefill_t *p, const pd_proto_prefill_t *m);
void pd_prefill_on_cancel(pd_prefill_t *p, uint64_t req_id);
/* Finish jobs whose push is final: prefilled or error to the router, release. */
void pd_prefill_poll_jobs(pd_prefill_t *p);
void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j);

#endif
