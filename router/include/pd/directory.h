/* The global block directory: which worker holds which KV block hash, in which tier.
 *
 * Workers are named by a slot (0 .. PD_DIR_MAX_WORKERS-1) that the registry assigns; the
 * directory keeps, per slot, the epoch it trusts and the KV-event sequence it has applied.
 * Entries are one open-addressing table keyed by block hash, each holding one bit mask of
 * slots per tier, so that the longest cached prefix of every worker comes out of one walk
 * over a request's hashes. */
#ifndef PD_DIRECTORY_H
#define PD_DIRECTORY_H

#include "pd/proto.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stdint.h>

#define PD_DIR_MAX_WORKERS 64

typedef struct pd_dir pd_dir_t;

/* What applying a kv_event did. */
typedef enum pd_dir_verdict {
    PD_DIR_APPLIED = 0, /* seq was the next one: applied */
    PD_DIR_IGNORED,     /* already reflected (old seq) or waiting for a snapshot */
    PD_DIR_NEED_RESYNC  /* a gap or another epoch: ask the worker for a kv_snapshot */
} pd_dir_verdict_t;

/* Create an empty directory holding at most max_entries distinct hashes (0: 16M). */
PD_MUST_CHECK pd_status_t pd_dir_create(uint64_t max_entries, pd_dir_t **dir_p);

/* Free the directory and clear *dir_p; accepts NULL and a pointer to NULL. */
void pd_dir_destroy(pd_dir_t **dir_p);

/* Start trusting slot at epoch: its entries are dropped and events are ignored until a
 * snapshot arrives (pd_dir_apply_snapshot). */
void pd_dir_worker_reset(pd_dir_t *dir, uint32_t slot, uint64_t epoch);

/* The worker in slot is gone: drop all its entries and stop trusting the slot. */
void pd_dir_worker_drop(pd_dir_t *dir, uint32_t slot);

/* Mark slot as waiting for a snapshot (after a resync was asked for). */
void pd_dir_worker_unsync(pd_dir_t *dir, uint32_t slot);

/* True when slot has a snapshot and every event since. */
bool pd_dir_worker_synced(const pd_dir_t *dir, uint32_t slot);

/* The seq of the last event reflected for slot (snapshot or applied event). */
uint64_t pd_dir_worker_seq(const pd_dir_t *dir, uint32_t slot);

/* Apply one kv_event batch of the worker in slot. */
pd_dir_verdict_t pd_dir_apply_event(pd_dir_t *dir, uint32_t slot, const pd_proto_kv_event_t *ev);

/* Replace every entry of slot with the snapshot and expect seq + 1 next. Returns PD_OK,
 * PD_ERR_PEER when the epoch is not the trusted one (ignored), PD_ERR_LIMIT when the
 * table is full (the entries that fit are kept). */
PD_MUST_CHECK pd_status_t pd_dir_apply_snapshot(pd_dir_t *dir, uint32_t slot,
                                                const pd_proto_kv_snapshot_t *snap);

/* For every slot, how many leading hashes of hashes[0..n) it holds in any tier:
 * prefix_p[slot] for slot < PD_DIR_MAX_WORKERS (caller storage, all written). */
void pd_dir_lookup_prefix(const pd_dir_t *dir, const uint64_t *hashes, uint32_t n,
                          uint32_t *prefix_p);

/* The tiers (bit t for tier t) in which slot holds hash; 0 if it does not. */
uint32_t pd_dir_holder_tiers(const pd_dir_t *dir, uint64_t hash, uint32_t slot);

/* Distinct hashes held by anyone. */
uint64_t pd_dir_n_hashes(const pd_dir_t *dir);

/* Distinct hashes slot holds (in any tier). */
uint64_t pd_dir_worker_n_hashes(const pd_dir_t *dir, uint32_t slot);

#endif
