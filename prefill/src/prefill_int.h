/* Private state of pd-prefill beside what the role runtime holds (model, engine, KV pool
 * and fabric, block manager: its own prefix cache): one transfer peer per decode worker
 * epoch, and the prefills it holds, from their arrival until their KV push is final.
 * One event-loop thread. */
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

/* One prefill, from its arrival to the end of its push. Its blocks are assembled (reused
 * ones pinned, read ones read, the rest allocated) and its push begun on arrival; then it
 * waits for its chunks to be computed, a forward pass at a time (prefill_pass.c), samples
 * its first token after the last one, and waits for the push to be acknowledged. Its
 * blocks stay pinned until the push is final. */
typedef struct pd_prefill_job {
    bool live;
    bool sampled; /* first token sampled and the push closed: only the acknowledgement left */
    uint64_t req_id;
    uint64_t seq; /* arrival order */
    char dest[PD_PROTO_NAME_CAP];
    int32_t *tokens; /* (n_tokens) the prompt */
    uint32_t n_tokens;
    uint64_t *block_hashes; /* (n_block_hashes) chained hashes of its full blocks */
    uint32_t n_block_hashes;
    pd_proto_cache_plan_t cache;
    pd_proto_sampling_t sampling;
    uint32_t first_step; /* the sampler step of the token sampled here (migrated: > 0) */
    uint32_t *blocks;    /* (n_blocks) this worker's blocks of the prompt */
    uint8_t *src;        /* (n_blocks) pd_prefill_block_src_t of each */
    uint32_t n_blocks;
    /* The push: decode's blocks, its pool's layout, blocks first_push .. n_blocks - 1 to
     * push, those below n_pushed already pushed (every layer). It begins with the first
     * chunk (a prompt canceled while queued has not touched the decode worker), with the
     * peer found again by id, epoch and descriptor. */
    uint32_t *dest_blocks; /* (n_blocks) */
    pd_kv_layout_t dest_layout;
    uint64_t dest_epoch;
    void *dest_desc; /* (dest_desc_bytes) the decode worker's transfer descriptor */
    size_t dest_desc_bytes;
    uint32_t first_push;
    uint32_t n_pushed;
    uint32_t pass_push_end; /* blocks the pass in progress completes (pushed per layer) */
    pd_xfer_seg_t *segs;    /* (n_blocks) scratch of one layer's post */
    pd_xfer_send_t *send;
    pd_status_t push_status; /* the first post refused, PD_OK while none was */
    /* Compute: the next token to compute (pos), the tokens to compute in all. */
    uint32_t pos;
    uint32_t n_to_compute;
    uint32_t n_computed;
    uint32_t n_chunks;
    uint32_t n_passed_over; /* passes since it last computed while it was ready */
    int32_t first_token;
    uint32_t n_cached_tokens;  /* not computed: own cache or read */
    uint32_t n_fetched_tokens; /* of them, read from another worker */
    uint32_t n_created_tokens;
    uint32_t *holes; /* (n_holes) prompt blocks computed to fill holes in a reused prefix */
    uint32_t n_holes;
    /* Timings: arrival, setup (assembly and reads) done, first chunk's pass began, first
     * token sampled; fetch_ms (reads) and compute_ms (its passes) summed. */
    uint64_t t_arrival_ns, t_setup_ns, t_first_ns, t_sampled_ns;
    double fetch_ms;
    double compute_ms;
} pd_prefill_job_t;

typedef struct pd_prefill {
    pd_role_t *rt;           /* the shared parts: args, model, engine, layout, fabric, bm, worker */
    float *logits;           /* (PD_PREFILL_MAX_PASS_SEQS, vocab) of the prompts a pass finishes */
    float *scratch;          /* (2 * vocab) */
    pd_fwd_seq_t *seqs;      /* (PD_PREFILL_MAX_PASS_SEQS) the pass's sequences */
    pd_prefill_job_t **pass; /* (PD_PREFILL_MAX_PASS_SEQS) their jobs */
    uint32_t n_pass;
    pd_prefill_sched_item_t *items; /* (PD_PREFILL_MAX_JOBS) scratch of the plan */
    uint32_t *item_job;             /* (PD_PREFILL_MAX_JOBS) job index of each item */
    pd_prefill_peer_t peers[PD_PREFILL_MAX_PEERS];
    pd_prefill_job_t jobs[PD_PREFILL_MAX_JOBS];
    uint32_t n_jobs;
    uint64_t next_seq;
    /* What computing and fetching have cost so far (running averages), for the choice to
     * fetch a prefix the decode worker holds instead of recomputing it; 0 = not seen. */
    double compute_ms_per_token;
    double fetch_ms_per_byte;
    uint64_t n_checksum_failures; /* blocks read from a holder that failed their checksum */
    uint64_t n_passes;            /* forward passes run */
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
PD_MUST_CHECK pd_status_t pd_prefill_peer_get(pd_prefill_t *p, const char *worker_id,
                                              uint64_t epoch, const void *desc, size_t desc_bytes,
                                              pd_prefill_peer_t **peer_p);
PD_MUST_CHECK pd_status_t pd_prefill_assemble(pd_prefill_t *p, const pd_proto_prefill_t *m,
                                              pd_prefill_peer_t *dest, uint32_t *blocks,
                                              uint8_t *src, const char **why_p);

/* prefill_job.c; the handlers take the role state (a pd_prefill_t). */
void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m);
void pd_prefill_on_cancel(void *state, uint64_t req_id);
/* Finish jobs whose push is final (prefilled or error to the router, release), then run
 * the next forward pass if a job has tokens to compute. */
void pd_prefill_on_step(void *state);
void pd_prefill_poll_jobs(pd_prefill_t *p);
void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j);
/* Begin the job's push to its decode worker (before its first chunk). */
PD_MUST_CHECK pd_status_t pd_prefill_push_begin(pd_prefill_t *p, pd_prefill_job_t *j);
/* Send an error about req_id to the router (and log it). */
void pd_prefill_fail(pd_prefill_t *p, uint64_t req_id, pd_status_t code, const char *why);

/* prefill_pass.c: the tokens a job can compute in one chunk from pos (up to the end of its
 * current run of blocks to compute; 0 when it has none left); one forward pass over the
 * chunks the plan picks, pushing the blocks it completes, sampling and closing the push of
 * the prompts it finishes. Returns true if it ran a pass. */
uint32_t pd_prefill_job_run_tokens(const pd_prefill_t *p, const pd_prefill_job_t *j);
bool pd_prefill_pass_run(pd_prefill_t *p);

#endif
