/* The role runtime: what a worker process is around its role. pd-prefill and pd-decode are
 * each a table of handlers (pd_role_ops_t) plugged into it; the runtime owns the rest:
 * the command line, the model and its compute engine, the KV pool with its transfer
 * engine (the fabric), the block manager with its tiers, the worker loop (router
 * connection, heartbeats, KV events, signals) and shutdown in reverse order.
 *
 * A role reads the shared parts through pd_role_t's public fields and never frees them.
 * Every handler runs on the loop's one thread. */
#ifndef PD_ROLE_H
#define PD_ROLE_H

#include "pd/kvblock.h"
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/proto.h"
#include "pd/role_fabric.h"
#include "pd/status.h"
#include "pd/worker.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct pd_role pd_role_t;
typedef struct pd_role_pin pd_role_pin_t;

/* What a role supplies. Handlers left NULL are answered by the runtime: a message the
 * role does not handle gets `error` PD_ERR_UNSUPPORTED. */
typedef struct pd_role_ops {
    const char *name;      /* "prefill", "decode": log prefix, program pd-<name> */
    pd_proto_role_t role;  /* the role argv parsing starts from (--colocated: both) */
    bool pool_from_fabric; /* peers write into the pool: the fabric allocates it */
    /* Make the role's state once the shared parts exist; PD_ERR_* with the reason logged. */
    pd_status_t (*create)(pd_role_t *rt, void **state_p);
    /* Release what the role holds (requests, blocks, transfers) and free its state; runs
     * before the shared parts go. */
    void (*destroy)(void *state);
    void (*on_reserve)(void *state, const pd_proto_reserve_t *m);
    void (*on_prefill)(void *state, const pd_proto_prefill_t *m);
    /* The router gave up on a request (`cancel`, or `error` about it). */
    void (*on_cancel)(void *state, uint64_t req_id);
    /* The router dropped this worker's epoch: end every request as a cancel would. */
    void (*cancel_all)(void *state);
    /* Once per loop iteration, after transfer progress: finish what completed, compute. */
    void (*on_step)(void *state);
    /* The role's bound on the loop's sleep in ms: 0 when it has work ready, -1 for none. */
    long (*wait_ms)(void *state);
    /* The load fields of a heartbeat: running, queued (free_blocks is the runtime's). */
    void (*load)(void *state, pd_proto_heartbeat_t *hb);
} pd_role_ops_t;

struct pd_role {
    pd_worker_args_t args;
    pd_model_t *model;
    pd_engine_t *engine;
    uint32_t vocab;
    pd_kv_layout_t layout; /* this worker's KV pool */
    /* The transfer engine and the pool it moves: fabric.pool is
     * (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32. */
    pd_role_fabric_t fabric;
    pd_kvbm_t *bm;
    pd_worker_t *worker;
    /* Private to the runtime. */
    const pd_role_ops_t *ops;
    void *state;
    uint64_t next_expire_ms;
    pd_proto_worker_stats_t hb_stats; /* what the last heartbeat carried */
    pd_role_pin_t *pins;              /* (PD_ROLE_MAX_PINS) blocks pinned for readers, by request */
    /* The compute pool when it is apart from fabric.pool (--backend cuda: device memory;
     * --kv-staging 1 on the CPU: a second host pool), same layout; NULL when compute runs
     * on fabric.pool itself. kv_valid (layout.n_blocks) marks the blocks whose copy there
     * equals the host's. role_stage.c. */
    float *kv_compute;
    uint8_t *kv_valid;
    bool host_pinned;             /* fabric.pool is registered with CUDA (pinned) */
    pd_buf_range_t *stage_ranges; /* (stage_cap) scratch of a step's copies */
    size_t stage_cap;
    uint64_t stage_blocks_up;  /* blocks uploaded to the compute pool */
    uint64_t stage_bytes_down; /* bytes copied back to the host pool */
};

/* XXH3-64 (seed 0) of a block's bytes in pool (layout l), its layer slices in order: what
 * `pinned` reports and a reader checks. */
uint64_t pd_role_block_checksum(const pd_kv_layout_t *l, const void *pool, uint32_t block);

/* Run one forward step over the worker's KV (pd_engine_forward's arguments): over the
 * host pool itself, or over the compute pool with the staging that keeps the host pool
 * authoritative (role_stage.c): blocks uploaded before the step reads them, written rows
 * copied back after each layer, before on_layer runs. */
PD_MUST_CHECK pd_status_t pd_role_forward(pd_role_t *rt, pd_fwd_seq_t *seqs, uint32_t n_seqs,
                                          pd_fwd_layer_cb on_layer, void *cb_arg);

/* The byte ranges of pool layout l that hold K and V of positions pos .. pos + n - 1 of
 * one sequence (block table `table`) in one layer: two ranges (K rows, V rows) per block
 * partly written, one per run of whole blocks consecutive in the pool. out needs
 * 2 * (n / B + 2) entries. Returns the count. */
size_t pd_role_stage_row_ranges(const pd_kv_layout_t *l, uint32_t layer, const uint32_t *table,
                                uint32_t pos, uint32_t n, pd_buf_range_t *out);

/* Make everything a worker of role ops is made of from args: model, engine, pool, fabric,
 * worker sockets, block manager, then the role's state. Returns PD_ERR_* with the reason
 * logged; nothing is left made on error. */
PD_MUST_CHECK pd_status_t pd_role_create(const pd_role_ops_t *ops, const pd_worker_args_t *args,
                                         pd_role_t **rt_p);

/* The role's state first, then the shared parts; accepts NULL and clears *rt_p. */
void pd_role_destroy(pd_role_t **rt_p);

/* Hand one router message to the role's handlers (what the loop does with each message
 * other than registered/resync); for tests that drive a role without a loop. */
void pd_role_dispatch(pd_role_t *rt, const pd_proto_msg_t *msg);

/* One loop iteration's work without the sockets: transfer progress, expiry, on_step. */
void pd_role_step(pd_role_t *rt);

/* Serve until SIGTERM/SIGINT (pd_worker_stopping). */
PD_MUST_CHECK pd_status_t pd_role_run(pd_role_t *rt);

/* A worker program: parse argv, create, run, destroy. Returns the exit status: 0, 1 on
 * failure, 2 on a usage error. */
int pd_role_main(const pd_role_ops_t *ops, int argc, char **argv);

#endif
