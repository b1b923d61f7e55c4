/* Private state of pd-decode beside what the role runtime holds (model, engine, KV pool and
 * the fabric that receives KV from prefill, block manager): the requests it holds
 * reservations for, and the running batch. Everything runs on the one event-loop thread;
 * compute fans out to the engine's threads inside pd_engine_forward. */
#ifndef PD_DECODE_INT_H
#define PD_DECODE_INT_H

#include "pd/decode.h"
#include "pd/role.h"
#include "pd/sample.h"
#include "pd/xfer.h"

#include <stdbool.h>
#include <stdint.h>

#define PD_DECODE_MAX_REQS 1024

typedef enum pd_decode_req_state {
    PD_DECODE_REQ_FREE = 0,
    PD_DECODE_REQ_WAIT_KV, /* reserved; waiting for prefill's KV (or a local prefill) */
    PD_DECODE_REQ_READY,   /* KV complete, token 0 known; waiting for a batch slot */
    PD_DECODE_REQ_RUNNING  /* in the running batch */
} pd_decode_req_state_t;

/* One request: its reservation, its tokens and its timings. The single release path is
 * pd_decode_req_end. */
typedef struct pd_decode_req {
    pd_decode_req_state_t state;
    uint64_t req_id;
    int32_t *tokens;   /* (n_tokens + max_tokens) the prompt, then the generated tokens */
    uint32_t n_tokens; /* prompt tokens */
    uint32_t max_tokens;
    uint32_t n_gen;   /* generated so far (token 0 is prefill's) */
    uint32_t first_step; /* generated index of token 0 here (> 0: continued from another worker) */
    uint64_t *hashes; /* (n_hashes) full prompt blocks */
    uint32_t n_hashes;
    pd_proto_cache_plan_t plan;
    pd_sampling_t sampling;
    int32_t stop[PD_PROTO_MAX_STOP];
    uint32_t n_stop;
    uint32_t *blocks; /* (n_blocks) prompt + generation */
    uint32_t n_blocks;
    uint32_t n_cached;         /* leading blocks pinned from the cache */
    uint32_t n_created_tokens; /* tokens this worker wrote to its cache */
    pd_xfer_recv_t *recv;
    float *logits; /* (vocab) */
    uint64_t t_reserve_ns, t_kv_ns, t_first_ns, t_last_ns;
    uint64_t admit_seq; /* FIFO order into the batch */
} pd_decode_req_t;

/* Blocks of a request that ended before its KV arrived. Prefill may still be writing into
 * them with one-sided puts (it learns of the cancel later), so they are released only once
 * any such transfer has passed its own deadline. */
typedef struct pd_decode_quarantine {
    uint32_t *blocks; /* (n_blocks) owned */
    uint32_t n_blocks;
    uint64_t release_ms;
} pd_decode_quarantine_t;

typedef struct pd_decode {
    pd_role_t *rt; /* the shared parts: args, model, engine, layout, fabric, bm, worker */
    int32_t eos[PD_MODEL_MAX_EOS]; /* the ids that end generation */
    uint32_t n_eos;

    pd_decode_req_t reqs[PD_DECODE_MAX_REQS];
    uint32_t n_live;
    uint64_t next_admit;

    /* The running batch, rebuilt between steps. */
    pd_decode_req_t **batch; /* (max_batch) */
    pd_fwd_seq_t *seqs;      /* (max_batch) */
    uint32_t n_batch;
    float *scratch; /* (2 * vocab) sampling scratch */
    pd_decode_quarantine_t quarantine[PD_DECODE_MAX_REQS];
    uint32_t n_quarantine;
} pd_decode_t;

/* decode_req.c; the handlers take the role state (a pd_decode_t). */
pd_decode_req_t *pd_decode_req_find(pd_decode_t *d, uint64_t req_id);
void pd_decode_on_reserve(void *state, const pd_proto_reserve_t *r);
void pd_decode_on_prefill(void *state, const pd_proto_prefill_t *p);
void pd_decode_on_cancel(void *state, uint64_t req_id);
/* Check every request waiting for KV; move completed ones to READY, fail broken ones. */
void pd_decode_poll_recvs(pd_decode_t *d);
/* Release everything the request holds and free its slot. */
void pd_decode_req_end(pd_decode_t *d, pd_decode_req_t *q);
/* Release quarantined blocks whose time has come (all of them when force). Returns the
 * milliseconds until the next one is due, -1 if none is left. */
long pd_decode_quarantine_poll(pd_decode_t *d, bool force);
/* Fail a request: error to the router, then release. */
void pd_decode_req_fail(pd_decode_t *d, pd_decode_req_t *q, pd_status_t code, const char *why);

/* decode_batch.c */
/* Token index k of q is known (q->n_gen == k + 1): stream it and finish if it ends the
 * request. Returns true if the request ended. */
bool pd_decode_emit(pd_decode_t *d, pd_decode_req_t *q);
/* Admit READY requests up to max_batch and run one decode step. Returns true if it ran. */
bool pd_decode_step(pd_decode_t *d);
/* True when some request can make compute progress now. */
bool pd_decode_has_work(const pd_decode_t *d);

#endif
