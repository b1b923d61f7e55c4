/* Private state of a worker (common/src/worker*.c). */
#ifndef PD_WORKER_INT_H
#define PD_WORKER_INT_H

#include "pd/mp.h"
#include "pd/proto.h"
#include "pd/worker.h"

#include <stdbool.h>
#include <stdint.h>

/* The record of held hashes: open addressing, linear probing, backward-shift deletion. */
typedef struct pd_worker_held {
    uint64_t *keys; /* (cap) */
    uint8_t *tiers; /* (cap) wire tier + 1, 0 for an empty slot */
    uint32_t cap;   /* power of two */
    uint32_t n;
    uint32_t n_tier[PD_PROTO_N_TIERS];
} pd_worker_held_t;

/* One pending kv_event item: hashes [first, first + n) of the batch's hash array. */
typedef struct pd_worker_item {
    pd_proto_event_kind_t kind;
    pd_proto_tier_t tier;
    uint32_t first;
    uint32_t n;
} pd_worker_item_t;

struct pd_worker {
    pd_worker_args_t args;
    uint64_t epoch;
    void *zctx;
    void *dealer;           /* to the router's worker ROUTER */
    void *pub;              /* KV events */
    void *monitor;          /* PAIR receiving the DEALER's connect events */
    void *zap;              /* REP, the events socket's ZAP handler (CURVE only) */
    uint8_t router_key[32]; /* CURVE: the one key the events socket admits */
    char events_endpoint[PD_PROTO_ENDPOINT_CAP];
    void *desc; /* (desc_bytes) the transfer descriptor */
    size_t desc_bytes;
    uint32_t n_blocks;

    pd_mp_writer_t w;       /* encoder for router messages */
    pd_mp_writer_t w_event; /* encoder for events */

    const pd_worker_hooks_t *hooks; /* while pd_worker_run runs */
    bool registered;
    uint64_t register_sent_ms;
    uint32_t heartbeat_ms;
    uint64_t heartbeat_due_ms;
    uint64_t heartbeat_last_ms;
    bool load_changed;
    uint64_t router_epoch; /* from registered; 0: not known yet */
    uint64_t n_connects;
    uint64_t n_resets; /* epochs dropped by the router */

    /* KV events of the current batch. */
    uint64_t seq;
    pd_worker_item_t *items; /* (items_cap) */
    uint32_t n_items, items_cap;
    uint64_t *hashes; /* (hashes_cap) */
    uint32_t n_hashes, hashes_cap;
    pd_proto_kv_event_item_t *wire_items; /* (items_cap) */

    pd_worker_held_t held;
};

/* worker_events.c */
PD_MUST_CHECK pd_status_t pd_worker_held_init(pd_worker_held_t *h);
void pd_worker_held_cleanup(pd_worker_held_t *h);
PD_MUST_CHECK pd_status_t pd_worker_events_init(pd_worker_t *w);
void pd_worker_events_cleanup(pd_worker_t *w);
/* Build and send a kv_snapshot of the record (after flushing pending events). */
void pd_worker_snapshot_send(pd_worker_t *w);

#endif
