/* The KV block manager: allocation, reference counts, the prefix index, LRU eviction down
 * the tiers, retention, and bring-back on a hit. See pd/kvblock.h for the block life. */
#include "kvblock_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* block_ids_p marker for a hit that still has to be brought back into G1. */
#define PD_KVBM_PENDING (UINT32_MAX - 1)

static uint64_t kvbm_default_clock(void *arg)
{
    (void)arg;
    return pd_time_now_ms();
}

static void kvbm_default_copy(void *arg, void *dst, const void *src, size_t n_bytes)
{
    (void)arg;
    memcpy(dst, src, n_bytes);
}

static pd_kvbm_tier_t *kvbm_tier(pd_kvbm_t *bm, pd_kv_tier_t tier)
{
    switch (tier) {
    case PD_KV_TIER_G1:
        return &bm->g1;
    case PD_KV_TIER_G2:
        return &bm->g2;
    default:
        return &bm->g3;
    }
}

static void kvbm_emit(pd_kvbm_t *bm, pd_kvbm_event_kind_t kind, pd_block_hash_t hash,
                      pd_kv_tier_t tier, pd_kv_tier_t from_tier)
{
    if (bm->on_event == NULL)
        return;
    pd_kvbm_event_t ev = {.kind = kind, .hash = hash, .tier = tier, .from_tier = from_tier};
    bm->on_event(bm->event_arg, &ev);
}

static unsigned char *kvbm_host_copy(pd_kvbm_t *bm, uint32_t slot)
{
    return bm->host + (size_t)slot * bm->block_bytes;
}

static int kvbm_expired(const pd_kvbm_tier_t *t, uint32_t slot, uint64_t now_ms)
{
    if (t->refcount != NULL && t->refcount[slot] > 0)
        return 0; /* pinned blocks never expire */
    return t->expiry_ms[slot] <= now_ms;
}

static void kvbm_refresh(pd_kvbm_tier_t *t, uint32_t slot, uint64_t now_ms)
{
    uint64_t e = now_ms + t->retention_ms[slot];
    if (e > t->expiry_ms[slot])
        t->expiry_ms[slot] = e;
}

static void kvbm_move_meta(pd_kvbm_tier_t *dst, uint32_t ds, const pd_kvbm_tier_t *src, uint32_t ss)
{
    dst->hash[ds] = src->hash[ss];
    dst->expiry_ms[ds] = src->expiry_ms[ss];
    dst->retention_ms[ds] = src->retention_ms[ss];
    dst->state[ds] = PD_KVBM_SLOT_CACHED;
}

/* Forget an unpinned cached slot (it is in its tier's LRU): out of the index and the LRU,
 * its file deleted, the slot back on the free stack, a REMOVED event. */
static void kvbm_slot_drop(pd_kvbm_t *bm, pd_kvbm_tier_t *t, uint32_t slot, int expired)
{
    pd_block_hash_t hash = t->hash[slot];
    pd_kvbm_index_remove(&bm->index, hash);
    pd_kvbm_list_remove(t, slot);
    if (t->tier == PD_KV_TIER_G3)
        pd_kvbm_disk_unlink(bm, hash);
    pd_kvbm_free_push(t, slot);
    if (expired)
        bm->counters.n_expired++;
    else
        bm->counters.n_dropped++;
    kvbm_emit(bm, PD_KVBM_EVENT_REMOVED, hash, t->tier, PD_KV_TIER_NONE);
}

/* Location of hash if it is held and its retention lasts; an expired entry is dropped. */
static uint32_t kvbm_find_live(pd_kvbm_t *bm, pd_block_hash_t hash, uint64_t now_ms)
{
    uint32_t loc = pd_kvbm_index_find(&bm->index, hash);
    if (loc == PD_KVBM_NIL)
        return loc;
    pd_kvbm_tier_t *t = kvbm_tier(bm, PD_KVBM_LOC_TIER(loc));
    uint32_t slot = PD_KVBM_LOC_SLOT(loc);
    if (kvbm_expired(t, slot, now_ms)) {
        kvbm_slot_drop(bm, t, slot, 1);
        return PD_KVBM_NIL;
    }
    return loc;
}

/* A G3 slot for a new file: a free one, else the LRU file is deleted. NIL if G3 is off. */
static uint32_t kvbm_g3_take_slot(pd_kvbm_t *bm, uint64_t now_ms)
{
    pd_kvbm_tier_t *t = &bm->g3;
    uint32_t s = pd_kvbm_free_pop(t);
    if (s != PD_KVBM_NIL || t->lru.head == PD_KVBM_NIL)
        return s;
    s = t->lru.head;
    kvbm_slot_drop(bm, t, s, kvbm_expired(t, s, now_ms));
    return pd_kvbm_free_pop(t); /* s, just pushed */
}

/* Write hash (its bytes at src, its metadata at src_t/src_slot) to a G3 file. Returns 0
 * when it now lives in G3 (index and LRU updated, TIER_CHANGED emitted), -1 otherwise. */
static int kvbm_to_g3(pd_kvbm_t *bm, const void *src, pd_kvbm_tier_t *src_t, uint32_t src_slot,
                      uint64_t now_ms)
{
    pd_kvbm_tier_t *g3 = &bm->g3;
    if (g3->n_slots == 0)
        return -1;
    uint32_t s = kvbm_g3_take_slot(bm, now_ms);
    if (s == PD_KVBM_NIL)
        return -1;
    pd_block_hash_t hash = src_t->hash[src_slot];
    if (pd_kvbm_disk_write(bm, hash, src) != PD_OK) {
        bm->counters.n_io_errors++;
        pd_kvbm_free_push(g3, s);
        return -1;
    }
    kvbm_move_meta(g3, s, src_t, src_slot);
    pd_kvbm_list_push_tail(g3, s);
    pd_kvbm_index_put(&bm->index, hash, PD_KVBM_LOC(PD_KV_TIER_G3, s));
    bm->counters.n_offloads++;
    kvbm_emit(bm, PD_KVBM_EVENT_TIER_CHANGED, hash, PD_KV_TIER_G3, src_t->tier);
    return 0;
}

/* A G2 slot for a new copy: a free one, else the LRU copy moves to G3 (retention lasting)
 * or is dropped. NIL if G2 is off or every copy is being brought back. */
static uint32_t kvbm_g2_take_slot(pd_kvbm_t *bm, uint64_t now_ms)
{
    pd_kvbm_tier_t *t = &bm->g2;
    uint32_t s = pd_kvbm_free_pop(t);
    if (s != PD_KVBM_NIL || t->lru.head == PD_KVBM_NIL)
        return s;
    s = t->lru.head;
    int expired = kvbm_expired(t, s, now_ms);
    if (!expired) {
        pd_kvbm_list_remove(t, s);
        if (kvbm_to_g3(bm, kvbm_host_copy(bm, s), t, s, now_ms) == 0) {
            t->state[s] = PD_KVBM_SLOT_FREE;
            return s;
        }
        pd_kvbm_list_push_tail(t, s); /* so that kvbm_slot_drop finds it listed */
    }
    kvbm_slot_drop(bm, t, s, expired);
    return pd_kvbm_free_pop(t);
}

/* Take the G1 LRU block for reuse: its hash moves down a tier while its retention lasts
 * and a tier has room, else it is dropped. Returns the block, now unowned and unlisted,
 * or NIL when nothing is evictable. */
static uint32_t kvbm_g1_evict(pd_kvbm_t *bm, uint64_t now_ms)
{
    pd_kvbm_tier_t *g1 = &bm->g1;
    uint32_t b = g1->lru.head;
    if (b == PD_KVBM_NIL)
        return b;
    bm->counters.n_evictions++;
    pd_block_hash_t hash = g1->hash[b];
    int expired = kvbm_expired(g1, b, now_ms);
    if (!expired) {
        pd_kvbm_list_remove(g1, b);
        uint32_t s = (bm->g2.n_slots > 0) ? kvbm_g2_take_slot(bm, now_ms) : PD_KVBM_NIL;
        if (s != PD_KVBM_NIL) {
            pd_kvbm_gather(bm, b, kvbm_host_copy(bm, s));
            kvbm_move_meta(&bm->g2, s, g1, b);
            pd_kvbm_list_push_tail(&bm->g2, s);
            pd_kvbm_index_put(&bm->index, hash, PD_KVBM_LOC(PD_KV_TIER_G2, s));
            bm->counters.n_offloads++;
            kvbm_emit(bm, PD_KVBM_EVENT_TIER_CHANGED, hash, PD_KV_TIER_G2, PD_KV_TIER_G1);
            g1->state[b] = PD_KVBM_SLOT_FREE;
            return b;
        }
        if (bm->g3.n_slots > 0) {
            pd_kvbm_gather(bm, b, bm->staging);
            if (kvbm_to_g3(bm, bm->staging, g1, b, now_ms) == 0) {
                g1->state[b] = PD_KVBM_SLOT_FREE;
                return b;
            }
        }
        pd_kvbm_list_push_tail(g1, b);
    }
    kvbm_slot_drop(bm, g1, b, expired);
    /* kvbm_slot_drop put b on the free stack, on top. */
    return pd_kvbm_free_pop(g1);
}

static uint32_t kvbm_g1_take(pd_kvbm_t *bm, uint64_t now_ms)
{
    uint32_t b = pd_kvbm_free_pop(&bm->g1);
    if (b == PD_KVBM_NIL)
        b = kvbm_g1_evict(bm, now_ms);
    if (b != PD_KVBM_NIL && bm->on_take != NULL)
        bm->on_take(bm->take_arg, b);
    return b;
}

void pd_kvbm_set_take_hook(pd_kvbm_t *bm, pd_kvbm_take_fn_t fn, void *arg)
{
    bm->on_take = fn;
    bm->take_arg = arg;
}

/* G1 blocks that are free or evictable. */
static uint32_t kvbm_g1_room(const pd_kvbm_t *bm)
{
    return bm->g1.n_free + bm->g1.lru.n;
}

/* Move a G2/G3 hit back into a new G1 block, pinned once. Returns the block, or NIL when
 * G1 has no room or the file fails verification (then it is deleted: a miss). */
static uint32_t kvbm_bring_back(pd_kvbm_t *bm, uint32_t loc, uint64_t now_ms)
{
    pd_kvbm_tier_t *t = kvbm_tier(bm, PD_KVBM_LOC_TIER(loc));
    uint32_t s = PD_KVBM_LOC_SLOT(loc);
    pd_block_hash_t hash = t->hash[s];
    if (kvbm_g1_room(bm) == 0)
        return PD_KVBM_NIL;
    const unsigned char *src = bm->incoming; /* (n_layers, 2, B, kvh, hd) f32 */
    if (t->tier == PD_KV_TIER_G3) {
        pd_status_t st = pd_kvbm_disk_read(bm, hash, bm->incoming);
        if (st != PD_OK) {
            if (st == PD_ERR_IO)
                bm->counters.n_io_errors++;
            else
                bm->counters.n_corrupt++;
            kvbm_slot_drop(bm, t, s, 0);
            return PD_KVBM_NIL;
        }
        bm->counters.n_hits_disk++;
    } else if (bm->g1.n_free == 0) {
        /* Making room will evict a G1 block down into G2, perhaps into this very slot:
         * take the bytes out first. */
        memcpy(bm->incoming, kvbm_host_copy(bm, s), bm->block_bytes);
        bm->counters.n_hits_host++;
    } else {
        src = kvbm_host_copy(bm, s); /* a free G1 block: nothing moves */
        bm->counters.n_hits_host++;
    }
    /* The source slot is freed before the G1 block is taken, so that the eviction this may
     * cause can move a block into it (an exchange) rather than drop one. */
    uint64_t expiry_ms = t->expiry_ms[s], retention_ms = t->retention_ms[s];
    pd_kvbm_list_remove(t, s);
    pd_kvbm_index_remove(&bm->index, hash);
    if (t->tier == PD_KV_TIER_G3)
        pd_kvbm_disk_unlink(bm, hash);
    pd_kvbm_free_push(t, s);
    uint32_t b = kvbm_g1_take(bm, now_ms); /* room was checked */
    assert(b != PD_KVBM_NIL);
    pd_kvbm_scatter(bm, src, b);
    pd_kvbm_tier_t *g1 = &bm->g1;
    g1->hash[b] = hash;
    g1->expiry_ms[b] = expiry_ms;
    g1->retention_ms[b] = retention_ms;
    g1->state[b] = PD_KVBM_SLOT_CACHED;
    g1->refcount[b] = 1;
    pd_kvbm_index_put(&bm->index, hash, PD_KVBM_LOC(PD_KV_TIER_G1, b));
    kvbm_emit(bm, PD_KVBM_EVENT_TIER_CHANGED, hash, PD_KV_TIER_G1, t->tier);
    return b;
}

static void kvbm_pin(pd_kvbm_t *bm, uint32_t b)
{
    if (bm->g1.refcount[b]++ == 0 && bm->g1.state[b] == PD_KVBM_SLOT_CACHED)
        pd_kvbm_list_remove(&bm->g1, b);
}

static void kvbm_unpin(pd_kvbm_t *bm, uint32_t b, uint64_t now_ms)
{
    pd_kvbm_tier_t *g1 = &bm->g1;
    if (--g1->refcount[b] > 0)
        return;
    if (g1->state[b] == PD_KVBM_SLOT_CACHED) {
        kvbm_refresh(g1, b, now_ms);
        pd_kvbm_list_push_tail(g1, b);
    } else {
        pd_kvbm_free_push(g1, b);
    }
}

pd_status_t pd_kvbm_create(const pd_kvbm_config_t *cfg, pd_kvbm_t **bm_p)
{
    if (cfg == NULL || bm_p == NULL)
        return PD_ERR_INVALID_PARAM;
    const pd_kv_layout_t *l = &cfg->layout;
    uint32_t n_disk = (cfg->disk_dir != NULL) ? cfg->n_disk_blocks : 0;
    int tiered = cfg->n_host_blocks > 0 || n_disk > 0;
    if (l->n_blocks == 0 || l->n_blocks > PD_KVBM_MAX_SLOTS ||
        cfg->n_host_blocks > PD_KVBM_MAX_SLOTS || n_disk > PD_KVBM_MAX_SLOTS)
        return PD_ERR_INVALID_PARAM;
    if (tiered && (cfg->pool_base == NULL || pd_kv_block_bytes(l) == 0))
        return PD_ERR_INVALID_PARAM;

    pd_status_t status = PD_ERR_NO_MEMORY;
    pd_kvbm_t *bm = calloc(1, sizeof(*bm));
    if (bm == NULL)
        return PD_ERR_NO_MEMORY;
    bm->layout = *l;
    bm->block_bytes = pd_kv_block_bytes(l);
    bm->block_layer_bytes = pd_kv_block_layer_bytes(l);
    bm->pool_base = cfg->pool_base;
    bm->copy = (cfg->copy != NULL) ? cfg->copy : kvbm_default_copy;
    bm->copy_arg = cfg->copy_arg;
    bm->default_retention_ms =
        (cfg->default_retention_ms != 0) ? cfg->default_retention_ms : PD_KVBM_RETENTION_DEFAULT_MS;
    bm->clock_ms = (cfg->clock_ms != NULL) ? cfg->clock_ms : kvbm_default_clock;
    bm->clock_arg = cfg->clock_arg;
    bm->on_event = cfg->on_event;
    bm->event_arg = cfg->event_arg;

    status = pd_kvbm_tier_init(&bm->g1, PD_KV_TIER_G1, l->n_blocks);
    if (status == PD_OK)
        status = pd_kvbm_tier_init(&bm->g2, PD_KV_TIER_G2, cfg->n_host_blocks);
    if (status == PD_OK)
        status = pd_kvbm_tier_init(&bm->g3, PD_KV_TIER_G3, n_disk);
    if (status == PD_OK)
        status = pd_kvbm_index_init(&bm->index, (size_t)l->n_blocks + cfg->n_host_blocks + n_disk);
    if (status != PD_OK)
        goto err_destroy;
    if (cfg->n_host_blocks > 0) {
        bm->host = malloc((size_t)cfg->n_host_blocks * bm->block_bytes);
        if (bm->host == NULL) {
            status = PD_ERR_NO_MEMORY;
            goto err_destroy;
        }
    }
    if (tiered) {
        bm->incoming = malloc(bm->block_bytes);
        if (bm->incoming == NULL) {
            status = PD_ERR_NO_MEMORY;
            goto err_destroy;
        }
    }
    if (n_disk > 0) {
        status = pd_kvbm_disk_open(bm, cfg->disk_dir, cfg->model_id);
        if (status != PD_OK)
            goto err_destroy;
    }
    *bm_p = bm;
    return PD_OK;

err_destroy:
    pd_kvbm_destroy(&bm);
    return status;
}

void pd_kvbm_destroy(pd_kvbm_t **bm_p)
{
    if (bm_p == NULL || *bm_p == NULL)
        return;
    pd_kvbm_t *bm = *bm_p;
    if (bm->g1.refcount != NULL) {
        uint32_t n_reserved = 0;
        for (uint32_t b = 0; b < bm->g1.n_slots; b++)
            n_reserved += (bm->g1.refcount[b] > 0);
        if (n_reserved > 0)
            pd_log_error("kvbm: destroyed with %u blocks still reserved", n_reserved);
    }
    pd_kvbm_disk_close(bm);
    pd_kvbm_tier_cleanup(&bm->g1);
    pd_kvbm_tier_cleanup(&bm->g2);
    pd_kvbm_tier_cleanup(&bm->g3);
    pd_kvbm_index_cleanup(&bm->index);
    free(bm->host);
    free(bm->staging);
    free(bm->incoming);
    free(bm);
    *bm_p = NULL;
}

pd_status_t pd_kvbm_alloc(pd_kvbm_t *bm, size_t n_blocks, uint32_t *block_ids_p)
{
    if (bm == NULL || (n_blocks > 0 && block_ids_p == NULL))
        return PD_ERR_INVALID_PARAM;
    if (n_blocks > (size_t)bm->g1.n_free + bm->g1.lru.n)
        return PD_ERR_NO_RESOURCE;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    for (size_t i = 0; i < n_blocks; i++) {
        uint32_t b = kvbm_g1_take(bm, now_ms);
        /* Counted above; nothing between the check and here pins a block. */
        if (b == PD_KVBM_NIL) {
            pd_log_error("kvbm: free and evictable counts disagree with the lists");
            pd_kvbm_release(bm, block_ids_p, i);
            return PD_ERR_INTERNAL;
        }
        bm->g1.refcount[b] = 1;
        bm->g1.state[b] = PD_KVBM_SLOT_RESERVED;
        block_ids_p[i] = b;
    }
    return PD_OK;
}

static int kvbm_is_referenced(const pd_kvbm_t *bm, uint32_t b)
{
    return b < bm->g1.n_slots && bm->g1.refcount[b] > 0;
}

pd_status_t pd_kvbm_retain(pd_kvbm_t *bm, const uint32_t *block_ids, size_t n_blocks)
{
    if (bm == NULL || (n_blocks > 0 && block_ids == NULL))
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n_blocks; i++)
        if (block_ids[i] != PD_KVBM_NO_BLOCK && !kvbm_is_referenced(bm, block_ids[i]))
            return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n_blocks; i++)
        if (block_ids[i] != PD_KVBM_NO_BLOCK)
            bm->g1.refcount[block_ids[i]]++;
    return PD_OK;
}

pd_status_t pd_kvbm_release(pd_kvbm_t *bm, const uint32_t *block_ids, size_t n_blocks)
{
    if (bm == NULL || (n_blocks > 0 && block_ids == NULL))
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = PD_OK;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    for (size_t i = 0; i < n_blocks; i++) {
        uint32_t b = block_ids[i];
        if (b == PD_KVBM_NO_BLOCK)
            continue;
        if (!kvbm_is_referenced(bm, b)) {
            pd_log_error("kvbm: release of block %u, which is not reserved", b);
            status = PD_ERR_INVALID_PARAM;
            continue;
        }
        kvbm_unpin(bm, b, now_ms);
    }
    return status;
}

pd_status_t pd_kvbm_commit(pd_kvbm_t *bm, uint32_t block_id, pd_block_hash_t hash,
                           uint64_t retention_ms, int *stored_p)
{
    if (bm == NULL || !kvbm_is_referenced(bm, block_id))
        return PD_ERR_INVALID_PARAM;
    pd_kvbm_tier_t *g1 = &bm->g1;
    uint32_t b = block_id;
    uint64_t ret = (retention_ms != 0) ? retention_ms : bm->default_retention_ms;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    int stored = 0;

    if (g1->state[b] == PD_KVBM_SLOT_CACHED) {
        if (g1->hash[b] != hash)
            return PD_ERR_INVALID_PARAM;
        if (ret > g1->retention_ms[b])
            g1->retention_ms[b] = ret;
        kvbm_refresh(g1, b, now_ms);
        goto out;
    }
    uint32_t loc = kvbm_find_live(bm, hash, now_ms);
    if (loc != PD_KVBM_NIL && PD_KVBM_LOC_TIER(loc) == PD_KV_TIER_G1) {
        /* Another block holds it: keep that one; this one is freed by its last release. */
        uint32_t c = PD_KVBM_LOC_SLOT(loc);
        if (ret > g1->retention_ms[c])
            g1->retention_ms[c] = ret;
        kvbm_refresh(g1, c, now_ms);
        bm->counters.n_duplicates++;
        goto out;
    }
    g1->hash[b] = hash;
    g1->retention_ms[b] = ret;
    g1->expiry_ms[b] = now_ms + ret;
    g1->state[b] = PD_KVBM_SLOT_CACHED;
    if (loc != PD_KVBM_NIL) {
        /* A lower tier holds it: this G1 copy replaces it. */
        pd_kvbm_tier_t *t = kvbm_tier(bm, PD_KVBM_LOC_TIER(loc));
        uint32_t s = PD_KVBM_LOC_SLOT(loc);
        if (t->retention_ms[s] > g1->retention_ms[b])
            g1->retention_ms[b] = t->retention_ms[s];
        if (t->expiry_ms[s] > g1->expiry_ms[b])
            g1->expiry_ms[b] = t->expiry_ms[s];
        pd_kvbm_list_remove(t, s);
        if (t->tier == PD_KV_TIER_G3)
            pd_kvbm_disk_unlink(bm, hash);
        pd_kvbm_free_push(t, s);
        pd_kvbm_index_put(&bm->index, hash, PD_KVBM_LOC(PD_KV_TIER_G1, b));
        bm->counters.n_duplicates++;
        kvbm_emit(bm, PD_KVBM_EVENT_TIER_CHANGED, hash, PD_KV_TIER_G1, t->tier);
        goto out;
    }
    pd_kvbm_index_put(&bm->index, hash, PD_KVBM_LOC(PD_KV_TIER_G1, b));
    bm->counters.n_stored++;
    stored = 1;
    kvbm_emit(bm, PD_KVBM_EVENT_STORED, hash, PD_KV_TIER_G1, PD_KV_TIER_NONE);
out:
    if (stored_p != NULL)
        *stored_p = stored;
    return PD_OK;
}

/* Pin what the chain holds. Pass 1 pins the G1 hits, so that the evictions of pass 2,
 * which brings G2/G3 hits back, cannot take them. Without perforated, the run stops at the
 * first miss, and a bring-back that fails for lack of room first gives up the run's
 * tail, then stops the run. */
static pd_status_t kvbm_lookup(pd_kvbm_t *bm, const pd_block_hash_t *hashes, size_t n_hashes,
                               int perforated, uint32_t *block_ids_p, size_t *n_hit_p)
{
    if (bm == NULL || n_hit_p == NULL || (n_hashes > 0 && (hashes == NULL || block_ids_p == NULL)))
        return PD_ERR_INVALID_PARAM;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    size_t n_run = n_hashes;
    for (size_t i = 0; i < n_hashes; i++) {
        uint32_t loc = kvbm_find_live(bm, hashes[i], now_ms);
        if (loc == PD_KVBM_NIL) {
            if (!perforated) {
                n_run = i;
                break;
            }
            block_ids_p[i] = PD_KVBM_NO_BLOCK;
        } else if (PD_KVBM_LOC_TIER(loc) == PD_KV_TIER_G1) {
            uint32_t b = PD_KVBM_LOC_SLOT(loc);
            kvbm_pin(bm, b);
            kvbm_refresh(&bm->g1, b, now_ms);
            block_ids_p[i] = b;
        } else {
            block_ids_p[i] = PD_KVBM_PENDING;
        }
    }
    for (size_t i = 0; i < n_run; i++) {
        if (block_ids_p[i] != PD_KVBM_PENDING)
            continue;
        /* Earlier bring-backs may have moved or dropped it: look again. */
        uint32_t loc = kvbm_find_live(bm, hashes[i], now_ms);
        uint32_t b = PD_KVBM_NIL;
        if (loc != PD_KVBM_NIL && PD_KVBM_LOC_TIER(loc) == PD_KV_TIER_G1) {
            b = PD_KVBM_LOC_SLOT(loc); /* the chain named this hash twice */
            kvbm_pin(bm, b);
        } else if (loc != PD_KVBM_NIL) {
            b = kvbm_bring_back(bm, loc, now_ms);
            /* No room: give up the run's tail, pinned in pass 1, to make some. */
            while (b == PD_KVBM_NIL && !perforated && n_run > i + 1 && kvbm_g1_room(bm) == 0) {
                n_run--;
                if (block_ids_p[n_run] == PD_KVBM_PENDING)
                    continue;
                kvbm_unpin(bm, block_ids_p[n_run], now_ms);
                loc = kvbm_find_live(bm, hashes[i], now_ms);
                if (loc == PD_KVBM_NIL)
                    break;
                b = kvbm_bring_back(bm, loc, now_ms);
            }
        }
        if (b != PD_KVBM_NIL) {
            kvbm_refresh(&bm->g1, b, now_ms);
            block_ids_p[i] = b;
        } else if (perforated) {
            block_ids_p[i] = PD_KVBM_NO_BLOCK;
        } else {
            for (size_t j = i + 1; j < n_run; j++)
                if (block_ids_p[j] != PD_KVBM_PENDING)
                    kvbm_unpin(bm, block_ids_p[j], now_ms);
            n_run = i;
        }
    }
    size_t n_hit = 0;
    if (perforated) {
        for (size_t i = 0; i < n_hashes; i++)
            n_hit += (block_ids_p[i] != PD_KVBM_NO_BLOCK);
    } else {
        n_hit = n_run;
    }
    bm->counters.n_hits += n_hit;
    bm->counters.n_misses += n_hashes - n_hit;
    *n_hit_p = n_hit;
    return PD_OK;
}

pd_status_t pd_kvbm_lookup_prefix(pd_kvbm_t *bm, const pd_block_hash_t *hashes, size_t n_hashes,
                                  uint32_t *block_ids_p, size_t *n_hit_p)
{
    return kvbm_lookup(bm, hashes, n_hashes, 0, block_ids_p, n_hit_p);
}

pd_status_t pd_kvbm_reserve(pd_kvbm_t *bm, const pd_block_hash_t *hashes, size_t n_hashes,
                            size_t n_blocks, uint32_t *block_ids_p, size_t *n_hit_p)
{
    if (bm == NULL || n_hit_p == NULL || n_hashes > n_blocks ||
        (n_blocks > 0 && block_ids_p == NULL))
        return PD_ERR_INVALID_PARAM;
    size_t n_hit = 0;
    pd_status_t status = kvbm_lookup(bm, hashes, n_hashes, 0, block_ids_p, &n_hit);
    if (status != PD_OK)
        return status;
    status = pd_kvbm_alloc(bm, n_blocks - n_hit, block_ids_p + n_hit);
    if (status != PD_OK) {
        pd_kvbm_release(bm, block_ids_p, n_hit);
        return status;
    }
    *n_hit_p = n_hit;
    return PD_OK;
}

pd_status_t pd_kvbm_lookup_each(pd_kvbm_t *bm, const pd_block_hash_t *hashes, size_t n_hashes,
                                uint32_t *block_ids_p, size_t *n_hit_p)
{
    return kvbm_lookup(bm, hashes, n_hashes, 1, block_ids_p, n_hit_p);
}

pd_status_t pd_kvbm_probe(pd_kvbm_t *bm, const pd_block_hash_t *hashes, size_t n_hashes,
                          uint8_t *tiers_p, size_t *n_prefix_p)
{
    if (bm == NULL || (n_hashes > 0 && hashes == NULL))
        return PD_ERR_INVALID_PARAM;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    size_t n_prefix = 0;
    int in_run = 1;
    for (size_t i = 0; i < n_hashes; i++) {
        uint32_t loc = kvbm_find_live(bm, hashes[i], now_ms);
        pd_kv_tier_t tier = (loc == PD_KVBM_NIL) ? PD_KV_TIER_NONE : PD_KVBM_LOC_TIER(loc);
        if (tier == PD_KV_TIER_NONE)
            in_run = 0;
        n_prefix += in_run;
        if (tiers_p != NULL)
            tiers_p[i] = (uint8_t)tier;
    }
    if (n_prefix_p != NULL)
        *n_prefix_p = n_prefix;
    return PD_OK;
}

static size_t kvbm_expire_tier(pd_kvbm_t *bm, pd_kvbm_tier_t *t, uint64_t now_ms)
{
    size_t n = 0;
    for (uint32_t s = 0; s < t->n_slots; s++) {
        if (t->state[s] == PD_KVBM_SLOT_CACHED && kvbm_expired(t, s, now_ms)) {
            kvbm_slot_drop(bm, t, s, 1);
            n++;
        }
    }
    return n;
}

size_t pd_kvbm_expire(pd_kvbm_t *bm)
{
    if (bm == NULL)
        return 0;
    uint64_t now_ms = bm->clock_ms(bm->clock_arg);
    return kvbm_expire_tier(bm, &bm->g1, now_ms) + kvbm_expire_tier(bm, &bm->g2, now_ms) +
           kvbm_expire_tier(bm, &bm->g3, now_ms);
}

pd_status_t pd_kvbm_block_hash(const pd_kvbm_t *bm, uint32_t block_id, pd_block_hash_t *hash_p)
{
    if (bm == NULL || hash_p == NULL || block_id >= bm->g1.n_slots)
        return PD_ERR_INVALID_PARAM;
    if (bm->g1.state[block_id] != PD_KVBM_SLOT_CACHED)
        return PD_ERR_NOT_FOUND;
    *hash_p = bm->g1.hash[block_id];
    return PD_OK;
}

uint32_t pd_kvbm_refcount(const pd_kvbm_t *bm, uint32_t block_id)
{
    if (bm == NULL || block_id >= bm->g1.n_slots)
        return 0;
    return bm->g1.refcount[block_id];
}

void pd_kvbm_stats(const pd_kvbm_t *bm, pd_kvbm_stats_t *stats_p)
{
    if (bm == NULL || stats_p == NULL)
        return;
    pd_kvbm_stats_t st = bm->counters;
    const pd_kvbm_tier_t *g1 = &bm->g1;
    st.n_blocks = g1->n_slots;
    st.n_free = g1->n_free;
    st.n_evictable = g1->lru.n;
    st.n_cached = 0;
    st.n_pinned = 0;
    for (uint32_t b = 0; b < g1->n_slots; b++) {
        if (g1->state[b] != PD_KVBM_SLOT_CACHED)
            continue;
        st.n_cached++;
        st.n_pinned += (g1->refcount[b] > 0);
    }
    st.n_reserved = g1->n_slots - g1->n_free - g1->lru.n;
    st.n_host_blocks = bm->g2.n_slots;
    st.n_host_cached = bm->g2.n_slots - bm->g2.n_free;
    st.n_disk_blocks = bm->g3.n_slots;
    st.n_disk_cached = bm->g3.n_slots - bm->g3.n_free;
    *stats_p = st;
}

const char *pd_kvbm_disk_dir(const pd_kvbm_t *bm)
{
    return (bm != NULL) ? bm->disk_dir : NULL;
}

const char *pd_kv_tier_name(pd_kv_tier_t tier)
{
    switch (tier) {
    case PD_KV_TIER_G1:
        return "G1";
    case PD_KV_TIER_G2:
        return "G2";
    case PD_KV_TIER_G3:
        return "G3";
    default:
        return "none";
    }
}
