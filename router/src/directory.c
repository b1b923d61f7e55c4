/* The global block directory: an open-addressing table (linear probing, backward-shift
 * deletion) from block hash to one slot bit mask per tier. An entry whose masks are all
 * zero is an empty bucket, so a hash nobody holds takes no room. */
#include "pd/directory.h"
#include "pd/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct pd_dir_entry {
    uint64_t hash;
    uint64_t tiers[PD_PROTO_N_TIERS]; /* bit s: slot s holds hash in this tier */
} pd_dir_entry_t;

typedef struct pd_dir_worker {
    bool trusted; /* slot in use */
    bool synced;  /* a snapshot arrived and every event since */
    uint64_t epoch;
    uint64_t seq; /* last applied */
    uint64_t n_hashes;
} pd_dir_worker_t;

struct pd_dir {
    pd_dir_entry_t *entries; /* (cap) */
    uint64_t cap;            /* power of two */
    uint64_t n_used;
    uint64_t max_entries;
    pd_dir_worker_t workers[PD_DIR_MAX_WORKERS];
};

#define PD_DIR_INITIAL_CAP 1024u

static inline uint64_t pd_dir_entry_mask(const pd_dir_entry_t *e)
{
    return e->tiers[0] | e->tiers[1] | e->tiers[2];
}

static inline uint64_t pd_dir_home(const pd_dir_t *dir, uint64_t hash)
{
    /* Block hashes are XXH3 outputs; mixing the halves is enough. */
    return (hash ^ (hash >> 29) ^ (hash >> 47)) & (dir->cap - 1);
}

pd_status_t pd_dir_create(uint64_t max_entries, pd_dir_t **dir_p)
{
    pd_dir_t *dir = calloc(1, sizeof(*dir));
    if (dir == NULL)
        return PD_ERR_NO_MEMORY;
    dir->cap = PD_DIR_INITIAL_CAP;
    dir->max_entries = max_entries ? max_entries : (16u << 20);
    dir->entries = calloc(dir->cap, sizeof(*dir->entries));
    if (dir->entries == NULL) {
        free(dir);
        return PD_ERR_NO_MEMORY;
    }
    *dir_p = dir;
    return PD_OK;
}

void pd_dir_destroy(pd_dir_t **dir_p)
{
    if (dir_p == NULL || *dir_p == NULL)
        return;
    free((*dir_p)->entries);
    free(*dir_p);
    *dir_p = NULL;
}

static pd_dir_entry_t *pd_dir_find(const pd_dir_t *dir, uint64_t hash)
{
    uint64_t i = pd_dir_home(dir, hash);
    for (;;) {
        pd_dir_entry_t *e = &dir->entries[i];
        if (pd_dir_entry_mask(e) == 0)
            return NULL;
        if (e->hash == hash)
            return e;
        i = (i + 1) & (dir->cap - 1);
    }
}

/* Put every non-empty entry of old (old_cap) into dir's fresh table. */
static void pd_dir_reinsert(pd_dir_t *dir, const pd_dir_entry_t *old, uint64_t old_cap)
{
    dir->n_used = 0;
    for (uint64_t k = 0; k < old_cap; k++) {
        if (pd_dir_entry_mask(&old[k]) == 0)
            continue;
        uint64_t i = pd_dir_home(dir, old[k].hash);
        while (pd_dir_entry_mask(&dir->entries[i]) != 0)
            i = (i + 1) & (dir->cap - 1);
        dir->entries[i] = old[k];
        dir->n_used++;
    }
}

static pd_status_t pd_dir_grow(pd_dir_t *dir)
{
    uint64_t old_cap = dir->cap;
    pd_dir_entry_t *old = dir->entries;
    pd_dir_entry_t *fresh = calloc(old_cap * 2, sizeof(*fresh));
    if (fresh == NULL)
        return PD_ERR_NO_MEMORY;
    dir->entries = fresh;
    dir->cap = old_cap * 2;
    pd_dir_reinsert(dir, old, old_cap);
    free(old);
    return PD_OK;
}

/* The entry of hash, created empty-masked at its slot if absent (the caller sets a bit
 * at once). NULL when full. */
static pd_dir_entry_t *pd_dir_find_or_add(pd_dir_t *dir, uint64_t hash)
{
    pd_dir_entry_t *e = pd_dir_find(dir, hash);
    if (e != NULL)
        return e;
    if (dir->n_used >= dir->max_entries)
        return NULL;
    if ((dir->n_used + 1) * 2 > dir->cap && pd_dir_grow(dir) != PD_OK)
        return NULL;
    uint64_t i = pd_dir_home(dir, hash);
    while (pd_dir_entry_mask(&dir->entries[i]) != 0)
        i = (i + 1) & (dir->cap - 1);
    e = &dir->entries[i];
    e->hash = hash;
    dir->n_used++;
    return e;
}

/* Remove the (now empty-masked) entry at e, shifting later entries of its run back. */
static void pd_dir_delete_at(pd_dir_t *dir, pd_dir_entry_t *e)
{
    uint64_t mask = dir->cap - 1;
    uint64_t i = (uint64_t)(e - dir->entries);
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        pd_dir_entry_t *ej = &dir->entries[j];
        if (pd_dir_entry_mask(ej) == 0)
            break;
        uint64_t k = pd_dir_home(dir, ej->hash);
        /* ej may move to i when its home k is not cyclically within (i, j]. */
        bool k_in_range = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!k_in_range) {
            dir->entries[i] = *ej;
            i = j;
        }
    }
    memset(&dir->entries[i], 0, sizeof(dir->entries[i]));
    dir->n_used--;
}

static bool pd_dir_set(pd_dir_t *dir, uint32_t slot, uint64_t hash, pd_proto_tier_t tier)
{
    uint64_t bit = 1ull << slot;
    pd_dir_entry_t *e = pd_dir_find_or_add(dir, hash);
    if (e == NULL)
        return false;
    if ((pd_dir_entry_mask(e) & bit) == 0)
        dir->workers[slot].n_hashes++;
    e->tiers[tier] |= bit;
    return true;
}

/* Clear slot's bit for hash in the tiers of tier_mask. */
static void pd_dir_clear(pd_dir_t *dir, uint32_t slot, uint64_t hash, uint32_t tier_mask)
{
    uint64_t bit = 1ull << slot;
    pd_dir_entry_t *e = pd_dir_find(dir, hash);
    if (e == NULL || (pd_dir_entry_mask(e) & bit) == 0)
        return;
    for (int t = 0; t < PD_PROTO_N_TIERS; t++)
        if (tier_mask & (1u << t))
            e->tiers[t] &= ~bit;
    if ((pd_dir_entry_mask(e) & bit) == 0)
        dir->workers[slot].n_hashes--;
    if (pd_dir_entry_mask(e) == 0)
        pd_dir_delete_at(dir, e);
}

/* Drop every entry of slot. A deletion shifts later entries back, possibly into a bucket
 * already passed (when a run wraps around the end), so passes repeat until one finds
 * nothing: usually two. */
static void pd_dir_clear_slot(pd_dir_t *dir, uint32_t slot)
{
    uint64_t bit = 1ull << slot;
    bool found;
    do {
        found = false;
        for (uint64_t k = 0; k < dir->cap; k++) {
            pd_dir_entry_t *e = &dir->entries[k];
            while ((pd_dir_entry_mask(e) & bit) != 0) {
                found = true;
                for (int t = 0; t < PD_PROTO_N_TIERS; t++)
                    e->tiers[t] &= ~bit;
                if (pd_dir_entry_mask(e) != 0)
                    break;
                /* Another entry may now sit in bucket k: look at it again. */
                pd_dir_delete_at(dir, e);
            }
        }
    } while (found);
    dir->workers[slot].n_hashes = 0;
}

void pd_dir_worker_reset(pd_dir_t *dir, uint32_t slot, uint64_t epoch)
{
    if (slot >= PD_DIR_MAX_WORKERS)
        return;
    pd_dir_clear_slot(dir, slot);
    dir->workers[slot] = (pd_dir_worker_t){.trusted = true, .epoch = epoch};
}

void pd_dir_worker_drop(pd_dir_t *dir, uint32_t slot)
{
    if (slot >= PD_DIR_MAX_WORKERS)
        return;
    pd_dir_clear_slot(dir, slot);
    memset(&dir->workers[slot], 0, sizeof(dir->workers[slot]));
}

void pd_dir_worker_unsync(pd_dir_t *dir, uint32_t slot)
{
    if (slot < PD_DIR_MAX_WORKERS)
        dir->workers[slot].synced = false;
}

bool pd_dir_worker_synced(const pd_dir_t *dir, uint32_t slot)
{
    return slot < PD_DIR_MAX_WORKERS && dir->workers[slot].synced;
}

static void pd_dir_apply_item(pd_dir_t *dir, uint32_t slot, const pd_proto_kv_event_item_t *it,
                              uint64_t *n_dropped_p)
{
    for (uint32_t i = 0; i < it->n_hashes; i++) {
        uint64_t h = it->hashes[i];
        switch (it->kind) {
        case PD_PROTO_EVENT_STORED:
            if (!pd_dir_set(dir, slot, h, it->tier))
                (*n_dropped_p)++;
            break;
        case PD_PROTO_EVENT_REMOVED:
            pd_dir_clear(dir, slot, h, 1u << it->tier);
            break;
        case PD_PROTO_EVENT_TIER: {
            /* Set the new tier first so the entry never looks empty in between. */
            if (!pd_dir_set(dir, slot, h, it->tier)) {
                (*n_dropped_p)++;
                break;
            }
            uint32_t others = 0x7u & ~(1u << it->tier);
            pd_dir_entry_t *e = pd_dir_find(dir, h);
            for (int t = 0; t < PD_PROTO_N_TIERS; t++)
                if (others & (1u << t))
                    e->tiers[t] &= ~(1ull << slot);
            break;
        }
        }
    }
}

pd_dir_verdict_t pd_dir_apply_event(pd_dir_t *dir, uint32_t slot, const pd_proto_kv_event_t *ev)
{
    if (slot >= PD_DIR_MAX_WORKERS || !dir->workers[slot].trusted)
        return PD_DIR_IGNORED;
    pd_dir_worker_t *w = &dir->workers[slot];
    if (ev->epoch != w->epoch) {
        w->synced = false;
        return PD_DIR_NEED_RESYNC;
    }
    if (!w->synced || ev->seq <= w->seq)
        return PD_DIR_IGNORED;
    if (ev->seq != w->seq + 1) {
        w->synced = false;
        return PD_DIR_NEED_RESYNC;
    }
    uint64_t n_dropped = 0;
    for (uint32_t i = 0; i < ev->n_events; i++)
        pd_dir_apply_item(dir, slot, &ev->events[i], &n_dropped);
    if (n_dropped > 0)
        pd_log_warn("directory full: %llu hashes of worker slot %u not recorded",
                    (unsigned long long)n_dropped, slot);
    w->seq = ev->seq;
    return PD_DIR_APPLIED;
}

pd_status_t pd_dir_apply_snapshot(pd_dir_t *dir, uint32_t slot, const pd_proto_kv_snapshot_t *snap)
{
    if (slot >= PD_DIR_MAX_WORKERS || !dir->workers[slot].trusted ||
        snap->epoch != dir->workers[slot].epoch)
        return PD_ERR_PEER;
    pd_dir_clear_slot(dir, slot);
    uint64_t n_dropped = 0;
    for (int t = 0; t < PD_PROTO_N_TIERS; t++) {
        pd_proto_kv_event_item_t it = {PD_PROTO_EVENT_STORED, (pd_proto_tier_t)t, snap->hashes[t],
                                       snap->n_hashes[t]};
        pd_dir_apply_item(dir, slot, &it, &n_dropped);
    }
    dir->workers[slot].seq = snap->seq;
    dir->workers[slot].synced = true;
    return n_dropped ? PD_ERR_LIMIT : PD_OK;
}

void pd_dir_lookup_prefix(const pd_dir_t *dir, const uint64_t *hashes, uint32_t n,
                          uint32_t *prefix_p)
{
    uint64_t alive = 0;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        prefix_p[s] = 0;
        if (dir->workers[s].trusted && dir->workers[s].n_hashes > 0)
            alive |= 1ull << s;
    }
    uint32_t i = 0;
    for (; i < n && alive != 0; i++) {
        const pd_dir_entry_t *e = pd_dir_find(dir, hashes[i]);
        uint64_t m = (e != NULL) ? pd_dir_entry_mask(e) : 0;
        uint64_t gone = alive & ~m;
        while (gone != 0) {
            int s = __builtin_ctzll(gone);
            prefix_p[s] = i;
            gone &= gone - 1;
        }
        alive &= m;
    }
    while (alive != 0) {
        int s = __builtin_ctzll(alive);
        prefix_p[s] = i;
        alive &= alive - 1;
    }
}

uint32_t pd_dir_holder_tiers(const pd_dir_t *dir, uint64_t hash, uint32_t slot)
{
    const pd_dir_entry_t *e = pd_dir_find(dir, hash);
    uint32_t tiers = 0;
    if (e == NULL || slot >= PD_DIR_MAX_WORKERS)
        return 0;
    for (int t = 0; t < PD_PROTO_N_TIERS; t++)
        if (e->tiers[t] & (1ull << slot))
            tiers |= 1u << t;
    return tiers;
}

uint64_t pd_dir_worker_seq(const pd_dir_t *dir, uint32_t slot)
{
    return slot < PD_DIR_MAX_WORKERS ? dir->workers[slot].seq : 0;
}

uint64_t pd_dir_n_hashes(const pd_dir_t *dir)
{
    return dir->n_used;
}

uint64_t pd_dir_worker_n_hashes(const pd_dir_t *dir, uint32_t slot)
{
    return slot < PD_DIR_MAX_WORKERS ? dir->workers[slot].n_hashes : 0;
}
