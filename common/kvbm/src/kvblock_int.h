/* Private parts of the KV block manager: the per-tier slot tables, the prefix index and
 * the G2/G3 copy helpers. */
#ifndef PD_KVBLOCK_INT_H
#define PD_KVBLOCK_INT_H

#include "pd/kvblock.h"

#include <stddef.h>
#include <stdint.h>

#define PD_KVBM_NIL UINT32_MAX

/* State of one slot of a tier. G2 and G3 slots are FREE or CACHED only. */
enum { PD_KVBM_SLOT_FREE = 0, PD_KVBM_SLOT_RESERVED = 1, PD_KVBM_SLOT_CACHED = 2 };

/* An intrusive doubly linked list over a tier's prev/next arrays; head is the least
 * recently used. */
typedef struct pd_kvbm_list {
    uint32_t head, tail, n;
} pd_kvbm_list_t;

/* One tier's slots, as parallel arrays of n_slots entries. In G1 a slot is a pool block
 * id; in G2 an index into the host copies; in G3 a file. A slot is on the free stack
 * (linked by next), in the LRU, or (G1 only) on neither while referenced. */
typedef struct pd_kvbm_tier {
    pd_kv_tier_t tier;
    uint32_t n_slots;
    pd_block_hash_t *hash;  /* valid when CACHED */
    uint64_t *expiry_ms;    /* when an unpinned CACHED slot stops being findable */
    uint64_t *retention_ms; /* longest retention any commit gave it */
    uint32_t *prev, *next;  /* LRU links; next also links the free stack */
    uint32_t *refcount;     /* G1 only, else NULL */
    uint8_t *state;         /* PD_KVBM_SLOT_* */
    uint32_t free_head;
    uint32_t n_free;
    pd_kvbm_list_t lru;
} pd_kvbm_tier_t;

/* Open-addressing (linear probing, backward-shift deletion) map hash -> location, where a
 * location packs the tier into the top 2 bits and the slot into the low 30. */
typedef struct pd_kvbm_index {
    pd_block_hash_t *keys;
    uint32_t *locs; /* PD_KVBM_NIL: empty */
    uint32_t mask;  /* capacity - 1, capacity a power of two */
    uint32_t n;
} pd_kvbm_index_t;

#define PD_KVBM_LOC(tier, slot) (((uint32_t)(tier) << 30) | (uint32_t)(slot))
#define PD_KVBM_LOC_TIER(loc)   ((pd_kv_tier_t)((loc) >> 30))
#define PD_KVBM_LOC_SLOT(loc)   ((loc)&0x3fffffffu)
#define PD_KVBM_MAX_SLOTS       0x3fffffffu

struct pd_kvbm {
    pd_kv_layout_t layout;
    size_t block_bytes;       /* one block, all layers */
    size_t block_layer_bytes; /* one block, one layer */
    unsigned char *pool_base; /* (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32 */
    pd_kvbm_copy_fn_t copy;
    void *copy_arg;
    uint64_t default_retention_ms;
    pd_kvbm_clock_fn_t clock_ms;
    void *clock_arg;
    pd_kvbm_event_fn_t on_event;
    void *event_arg;
    pd_kvbm_take_fn_t on_take; /* pd_kvbm_set_take_hook */
    void *take_arg;

    pd_kvbm_tier_t g1, g2, g3; /* g2/g3.n_slots == 0 when not configured */
    pd_kvbm_index_t index;

    unsigned char *host;     /* G2 copies: (n_host_blocks, n_layers, 2, B, kvh, hd) f32 */
    unsigned char *staging;  /* one block, (n_layers, 2, B, kvh, hd) f32, for G3 writes */
    unsigned char *incoming; /* one block, same shape, for bring-back */
    char *disk_dir;
    char *model_id; /* sanitised for file names */
    char *path;     /* buffer for one G3 file path */
    size_t path_cap;

    pd_kvbm_stats_t counters; /* the counter fields only */
};

/* kvblock_index.c */
PD_MUST_CHECK pd_status_t pd_kvbm_index_init(pd_kvbm_index_t *index, size_t n_entries);
void pd_kvbm_index_cleanup(pd_kvbm_index_t *index);
/* Location of hash, or PD_KVBM_NIL. */
uint32_t pd_kvbm_index_find(const pd_kvbm_index_t *index, pd_block_hash_t hash);
/* Insert or overwrite hash -> loc; the table never fills (sized at init). */
void pd_kvbm_index_put(pd_kvbm_index_t *index, pd_block_hash_t hash, uint32_t loc);
/* Remove hash if present. */
void pd_kvbm_index_remove(pd_kvbm_index_t *index, pd_block_hash_t hash);

/* kvblock_tier.c */
PD_MUST_CHECK pd_status_t pd_kvbm_tier_init(pd_kvbm_tier_t *t, pd_kv_tier_t tier, uint32_t n_slots);
void pd_kvbm_tier_cleanup(pd_kvbm_tier_t *t);
void pd_kvbm_list_remove(pd_kvbm_tier_t *t, uint32_t slot);
void pd_kvbm_list_push_tail(pd_kvbm_tier_t *t, uint32_t slot);
/* Pop a free slot, or PD_KVBM_NIL. */
uint32_t pd_kvbm_free_pop(pd_kvbm_tier_t *t);
void pd_kvbm_free_push(pd_kvbm_tier_t *t, uint32_t slot);
/* G1 block <-> contiguous block bytes (n_layers, 2, B, kvh, hd) f32. */
void pd_kvbm_gather(pd_kvbm_t *bm, uint32_t block, void *dst);
void pd_kvbm_scatter(pd_kvbm_t *bm, const void *src, uint32_t block);
/* Make this manager's own G3 directory, <dir>/kvbm-<pid>-XXXXXX, so that several
 * workers (prefill and decode, or two decodes) may share one SSD directory; directories
 * of processes that are gone are swept first. Fills disk_dir, model_id, path, staging. */
PD_MUST_CHECK pd_status_t pd_kvbm_disk_open(pd_kvbm_t *bm, const char *dir, const char *model_id);
/* Delete the files of every G3 slot and the directory; frees what disk_open allocated. */
void pd_kvbm_disk_close(pd_kvbm_t *bm);
/* Write src (one block) to hash's G3 file; PD_ERR_IO on failure (no file left). */
PD_MUST_CHECK pd_status_t pd_kvbm_disk_write(pd_kvbm_t *bm, pd_block_hash_t hash, const void *src);
/* Read and verify hash's G3 file into dst: PD_ERR_IO if unreadable, PD_ERR_FORMAT or
 * PD_ERR_CHECKSUM if corrupt. The caller deletes a bad file. */
PD_MUST_CHECK pd_status_t pd_kvbm_disk_read(pd_kvbm_t *bm, pd_block_hash_t hash, void *dst);
void pd_kvbm_disk_unlink(pd_kvbm_t *bm, pd_block_hash_t hash);
/* The G3 file path of a hash, in bm->path. */
const char *pd_kvbm_disk_path(pd_kvbm_t *bm, pd_block_hash_t hash);

#endif
