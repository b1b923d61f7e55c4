/* The KV block manager: block ids of one KV pool, their reference counts, the prefix index
 * (chained, tenant-salted block hash -> cached block), LRU eviction, retention, and the
 * lower memory tiers that evicted blocks move to.
 *
 * Tiers: G1 is the pool itself (pd_kv_layout_t; the caller owns its memory), G2 is a
 * bounded set of host DRAM copies (owned by the manager), G3 is a bounded set of files
 * under a local directory (one per block, checksummed). Every cached hash lives in
 * exactly one tier at a time: eviction moves a block down (G1 -> G2 -> G3) while its
 * retention lasts, a lookup that hits G2 or G3 moves it back into G1.
 *
 * Life of a G1 block:
 *   FREE --alloc--> reserved (refcount 1, not findable)
 *        --commit(hash)--> cached (findable; pinned while refcount > 0)
 *        --release to 0--> cached and unpinned: in the LRU, evictable
 *        --evicted or expired--> moved down a tier, or dropped; the id is FREE again.
 * A reserved block that is released to 0 without a commit (or whose commit found the hash
 * already cached in another G1 block) goes straight back to FREE.
 *
 * Pinned blocks (refcount > 0) are never evicted and never expire. An unpinned cached
 * block expires at max(last commit, last read, last release) + retention, where retention
 * is the longest one any commit gave it.
 *
 * Typical use by a decode worker, per request:
 *   reserve:  pd_kvbm_reserve(bm, prompt_hashes, n_full, n_total, ids, &n_hit)
 *             (or pd_kvbm_lookup_prefix then pd_kvbm_alloc; pd_kvbm_lookup_each for a
 *             perforated prefix); ids[n_hit ..] are what prefill must fill.
 *   verified: for each block i >= n_hit whose content arrived and passed its checksum,
 *             with r = pd_proto_cache_plan_block_ttl_ms(&plan, i) != 0 (pd/proto.h):
 *             pd_kvbm_commit(bm, ids[i], prompt_hashes[i], r, &stored); sum stored for
 *             usage.cache_creation_input_tokens.
 *   end:      pd_kvbm_release(bm, ids, n_total), exactly once, whatever the outcome.
 * A periodic timer calls pd_kvbm_expire; on_event feeds the KV event publisher.
 *
 * Not thread-safe by design: one manager belongs to one event loop (docs/ARCHITECTURE.md section
 * 2). Nothing here knows the wire; workers turn events into KV event messages. */
#ifndef PD_KVBLOCK_H
#define PD_KVBLOCK_H

#include "pd/hash.h"
#include "pd/kv_layout.h"
#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

/* A block id that names no block (a miss in a perforated lookup; skipped by release). */
#define PD_KVBM_NO_BLOCK UINT32_MAX

/* Retentions of docs/ARCHITECTURE.md section 7. */
#define PD_KVBM_RETENTION_DEFAULT_MS  (5u * 60u * 1000u)
#define PD_KVBM_RETENTION_EXTENDED_MS (60u * 60u * 1000u)

typedef enum pd_kv_tier {
    PD_KV_TIER_NONE = 0, /* not held */
    PD_KV_TIER_G1 = 1,   /* the KV pool (compute memory) */
    PD_KV_TIER_G2 = 2,   /* host DRAM copies */
    PD_KV_TIER_G3 = 3    /* local SSD files */
} pd_kv_tier_t;

typedef enum pd_kvbm_event_kind {
    PD_KVBM_EVENT_STORED = 1,  /* hash became findable, in tier */
    PD_KVBM_EVENT_REMOVED,     /* hash is held nowhere any more; tier is where it was */
    PD_KVBM_EVENT_TIER_CHANGED /* hash moved from from_tier to tier */
} pd_kvbm_event_kind_t;

typedef struct pd_kvbm_event {
    pd_kvbm_event_kind_t kind;
    pd_block_hash_t hash;
    pd_kv_tier_t tier;      /* where the block is now (REMOVED: where it was) */
    pd_kv_tier_t from_tier; /* TIER_CHANGED only; PD_KV_TIER_NONE otherwise */
} pd_kvbm_event_t;

/* Called synchronously for every event. It must not call back into the manager. */
typedef void (*pd_kvbm_event_fn_t)(void *arg, const pd_kvbm_event_t *event);

/* Milliseconds on some monotonic clock; tests pass a clock they move by hand. */
typedef uint64_t (*pd_kvbm_clock_fn_t)(void *arg);

/* Copies n_bytes between the pool and host memory (either direction). The default is
 * memcpy; a GPU pool passes a copy that understands device pointers. */
typedef void (*pd_kvbm_copy_fn_t)(void *arg, void *dst, const void *src, size_t n_bytes);

typedef struct pd_kvbm_config {
    /* The pool: layout.n_blocks is the number of G1 block ids. Required. */
    pd_kv_layout_t layout;
    /* Base of the pool memory, (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32,
     * borrowed for the manager's lifetime. Required when G2 or G3 is configured (blocks
     * are copied in and out of it); may be NULL otherwise. */
    void *pool_base;
    pd_kvbm_copy_fn_t copy; /* NULL: memcpy */
    void *copy_arg;

    /* G2: number of host DRAM block copies; 0 disables G2. */
    uint32_t n_host_blocks;
    /* G3: directory for block files (created if missing) and the number of files;
     * NULL or 0 disables G3. The manager works in its own subdirectory,
     * kvbm-<pid>-XXXXXX, so workers may share one directory; subdirectories of processes
     * that no longer run are swept at create. The string is copied. */
    const char *disk_dir;
    uint32_t n_disk_blocks;
    /* Model id, part of every G3 file name (with the salted hash). NULL: "model". */
    const char *model_id;

    /* Retention for commits that pass 0. 0: PD_KVBM_RETENTION_DEFAULT_MS. */
    uint64_t default_retention_ms;
    /* Clock; NULL: pd_time_now_ms. */
    pd_kvbm_clock_fn_t clock_ms;
    void *clock_arg;
    /* Events; NULL: none. */
    pd_kvbm_event_fn_t on_event;
    void *event_arg;
} pd_kvbm_config_t;

typedef struct pd_kvbm_stats {
    /* G1, a snapshot. n_free + n_reserved + n_evictable == n_blocks. */
    uint32_t n_blocks;    /* pool size */
    uint32_t n_free;      /* not referenced, not cached */
    uint32_t n_reserved;  /* refcount > 0 (cached or not) */
    uint32_t n_cached;    /* findable in G1 (pinned or not) */
    uint32_t n_pinned;    /* findable in G1 and refcount > 0 */
    uint32_t n_evictable; /* findable in G1, refcount 0: in the LRU */
    /* G2 and G3, a snapshot. */
    uint32_t n_host_blocks, n_host_cached;
    uint32_t n_disk_blocks, n_disk_cached;
    /* Counters since create. */
    uint64_t n_hits;       /* blocks found by lookups, any tier */
    uint64_t n_hits_host;  /* ... of which brought back from G2 */
    uint64_t n_hits_disk;  /* ... of which brought back from G3 */
    uint64_t n_misses;     /* blocks asked for and not found */
    uint64_t n_stored;     /* commits that made a hash findable */
    uint64_t n_duplicates; /* commits of a hash already findable */
    uint64_t n_evictions;  /* G1 blocks taken from the LRU for reuse */
    uint64_t n_offloads;   /* moves down a tier */
    uint64_t n_dropped;    /* hashes removed by eviction with nowhere to go */
    uint64_t n_expired;    /* hashes removed because their retention ran out */
    uint64_t n_corrupt;    /* G3 files that failed verification (treated as misses) */
    uint64_t n_io_errors;  /* G3 writes that failed (the block was dropped) */
} pd_kvbm_stats_t;

typedef struct pd_kvbm pd_kvbm_t;

/* Create a manager for cfg->layout.n_blocks pool blocks, all free; every metadata array
 * and the G2 copies are allocated here, none later. Returns PD_ERR_INVALID_PARAM for a bad
 * config, PD_ERR_IO if the G3 directory cannot be made. *bm_p is set only on success. */
PD_MUST_CHECK pd_status_t pd_kvbm_create(const pd_kvbm_config_t *cfg, pd_kvbm_t **bm_p);

/* Free the manager and delete its G3 files and directory; accepts NULL, clears *bm_p. Logs an
 * error naming the count if blocks are still reserved (a leak in the caller). */
void pd_kvbm_destroy(pd_kvbm_t **bm_p);

/* Called with a G1 block id each time the manager hands that block out for new content
 * (pd_kvbm_alloc, and a G2/G3 hit brought back into G1) before anything writes it: a
 * worker whose compute keeps its own copy of the pool (device memory) forgets that
 * block's copy. */
typedef void (*pd_kvbm_take_fn_t)(void *arg, uint32_t block);

/* Install (or, with NULL, remove) the take hook. */
void pd_kvbm_set_take_hook(pd_kvbm_t *bm, pd_kvbm_take_fn_t fn, void *arg);

/* Reserve n_blocks G1 blocks with refcount 1, not findable: free blocks first, then the
 * least recently used unpinned cached blocks (moved down a tier or dropped, with events).
 * All or nothing: PD_ERR_NO_RESOURCE, and nothing changes, when fewer than n_blocks are
 * free or evictable. block_ids_p (n_blocks entries, caller's) is set only on success. */
PD_MUST_CHECK pd_status_t pd_kvbm_alloc(pd_kvbm_t *bm, size_t n_blocks, uint32_t *block_ids_p);

/* Add one reference to each block (which must already be referenced); PD_KVBM_NO_BLOCK
 * entries are skipped. PD_ERR_INVALID_PARAM, and nothing changes, on a bad id. */
PD_MUST_CHECK pd_status_t pd_kvbm_retain(pd_kvbm_t *bm, const uint32_t *block_ids, size_t n_blocks);

/* Drop one reference from each block; PD_KVBM_NO_BLOCK entries are skipped. A block that
 * reaches 0 joins the LRU if it is cached (its retention clock restarts) or becomes free.
 * Bad ids (out of range, not referenced) are skipped, logged, and make it return
 * PD_ERR_INVALID_PARAM; the good ones are released regardless. A caller may drop the
 * status: a bad id is a bug that has been logged, and nothing is left to undo. */
pd_status_t pd_kvbm_release(pd_kvbm_t *bm, const uint32_t *block_ids, size_t n_blocks);

/* Make a reserved block findable under hash, once its content is valid (computed, or
 * received and checksum-verified); retention_ms 0 means the configured default, and the
 * longer retention wins if the hash is committed again. If the hash is already cached in
 * another G1 block, that one is kept (its retention extended) and this block stays
 * unfindable, to be freed by its last release; if it is held in G2 or G3, this G1 copy
 * replaces it. *stored_p (may be NULL) is set to 1 when the hash was not held anywhere
 * before (counts as cache creation), else 0. PD_ERR_INVALID_PARAM if the block is not
 * referenced or already cached under another hash. */
PD_MUST_CHECK pd_status_t pd_kvbm_commit(pd_kvbm_t *bm, uint32_t block_id, pd_block_hash_t hash,
                                         uint64_t retention_ms, int *stored_p);

/* A request's blocks in one step (decode's `reserve`): pin the longest cached prefix of
 * hashes (as pd_kvbm_lookup_prefix), then allocate fresh blocks for the rest of the
 * request's n_blocks (n_hashes <= n_blocks: the prompt's full blocks, then its partial
 * block and room for generated tokens). block_ids_p (n_blocks entries) receives the
 * prefix ids then the fresh ones; *n_hit_p the prefix length. All or nothing: on
 * PD_ERR_NO_RESOURCE every pin is dropped again (blocks brought back into G1 stay there,
 * cached). Pass n_hashes 0 when the cache mode forbids reads. Release all n_blocks ids
 * with one pd_kvbm_release when the request ends. */
PD_MUST_CHECK pd_status_t pd_kvbm_reserve(pd_kvbm_t *bm, const pd_block_hash_t *hashes,
                                          size_t n_hashes, size_t n_blocks, uint32_t *block_ids_p,
                                          size_t *n_hit_p);

/* Find and pin the longest leading run of hashes held in any tier; G2/G3 hits are brought
 * back into G1 (which may evict others). block_ids_p[0 .. *n_hit_p) receive G1 ids, each
 * with one added reference for the caller to release; entries past *n_hit_p are
 * scratch. Hits refresh the blocks' retention. A G3 file that fails verification is
 * deleted and counts as a miss. When G1 has no room to bring back a block, the run's
 * tail pinned so far is given up to make some, and the run ends where room runs out.
 * n_hashes may be 0. */
PD_MUST_CHECK pd_status_t pd_kvbm_lookup_prefix(pd_kvbm_t *bm, const pd_block_hash_t *hashes,
                                                size_t n_hashes, uint32_t *block_ids_p,
                                                size_t *n_hit_p);

/* The perforated form of pd_kvbm_lookup_prefix: every hash of the chain is looked up, and
 * block_ids_p[i] (n_hashes entries) receives a pinned G1 id or PD_KVBM_NO_BLOCK, so that a
 * caller can recompute a missing middle block and keep the later ones. A G2/G3 hit that
 * finds no room in G1 becomes a hole too. *n_hit_p is the number of ids pinned. */
PD_MUST_CHECK pd_status_t pd_kvbm_lookup_each(pd_kvbm_t *bm, const pd_block_hash_t *hashes,
                                              size_t n_hashes, uint32_t *block_ids_p,
                                              size_t *n_hit_p);

/* Report, without pinning, refreshing or moving anything, the tier holding each hash:
 * tiers_p[i] (n_hashes entries, may be NULL) is a pd_kv_tier_t, PD_KV_TIER_NONE for a
 * miss; *n_prefix_p (may be NULL) is the length of the leading run held. Expired entries
 * met on the way are dropped (with events). */
PD_MUST_CHECK pd_status_t pd_kvbm_probe(pd_kvbm_t *bm, const pd_block_hash_t *hashes,
                                        size_t n_hashes, uint8_t *tiers_p, size_t *n_prefix_p);

/* Drop every unpinned cached block, in any tier, whose retention has run out at the
 * clock's now; returns how many were dropped (each with a REMOVED event). */
size_t pd_kvbm_expire(pd_kvbm_t *bm);

/* The hash a G1 block was committed under: PD_OK and *hash_p if the block is findable,
 * PD_ERR_NOT_FOUND if not, PD_ERR_INVALID_PARAM for an id out of range. */
PD_MUST_CHECK pd_status_t pd_kvbm_block_hash(const pd_kvbm_t *bm, uint32_t block_id,
                                             pd_block_hash_t *hash_p);

/* Reference count of a G1 block (0 for free, cached-unpinned or out-of-range ids). */
uint32_t pd_kvbm_refcount(const pd_kvbm_t *bm, uint32_t block_id);

/* Snapshot the counts and counters into *stats_p. */
void pd_kvbm_stats(const pd_kvbm_t *bm, pd_kvbm_stats_t *stats_p);

/* This manager's G3 directory (made under cfg->disk_dir at create, removed at destroy),
 * or NULL without G3. Owned by the manager. */
const char *pd_kvbm_disk_dir(const pd_kvbm_t *bm);

/* Name of a tier for logs and status replies ("G1", "G2", "G3", "none"). */
const char *pd_kv_tier_name(pd_kv_tier_t tier);

#endif
