/* The prefix index: block hash -> (tier, slot), open addressing with linear probing and
 * backward-shift deletion (no tombstones, so lookups stay short after many evictions). */
#include "kvblock_int.h"

#include <stdlib.h>

static uint32_t index_home(const pd_kvbm_index_t *index, pd_block_hash_t hash)
{
    /* Block hashes are XXH3 outputs, but tests and peers may use small integers: mix. */
    uint64_t h = hash * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & index->mask;
}

pd_status_t pd_kvbm_index_init(pd_kvbm_index_t *index, size_t n_entries)
{
    /* Load factor at most 1/2. */
    size_t cap = 16;
    while (cap < 2 * n_entries)
        cap *= 2;
    if (cap > (size_t)UINT32_MAX)
        return PD_ERR_LIMIT;
    index->keys = malloc(cap * sizeof(*index->keys));
    index->locs = malloc(cap * sizeof(*index->locs));
    if (index->keys == NULL || index->locs == NULL) {
        pd_kvbm_index_cleanup(index);
        return PD_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < cap; i++)
        index->locs[i] = PD_KVBM_NIL;
    index->mask = (uint32_t)(cap - 1);
    index->n = 0;
    return PD_OK;
}

void pd_kvbm_index_cleanup(pd_kvbm_index_t *index)
{
    free(index->keys);
    free(index->locs);
    index->keys = NULL;
    index->locs = NULL;
    index->n = 0;
}

static uint32_t index_probe(const pd_kvbm_index_t *index, pd_block_hash_t hash)
{
    uint32_t i = index_home(index, hash);
    while (index->locs[i] != PD_KVBM_NIL && index->keys[i] != hash)
        i = (i + 1) & index->mask;
    return i;
}

uint32_t pd_kvbm_index_find(const pd_kvbm_index_t *index, pd_block_hash_t hash)
{
    return index->locs[index_probe(index, hash)];
}

void pd_kvbm_index_put(pd_kvbm_index_t *index, pd_block_hash_t hash, uint32_t loc)
{
    uint32_t i = index_probe(index, hash);
    if (index->locs[i] == PD_KVBM_NIL) {
        index->keys[i] = hash;
        index->n++;
    }
    index->locs[i] = loc;
}

void pd_kvbm_index_remove(pd_kvbm_index_t *index, pd_block_hash_t hash)
{
    uint32_t i = index_probe(index, hash);
    if (index->locs[i] == PD_KVBM_NIL)
        return;
    index->n--;
    /* Shift later members of the probe run back into the hole when their home position
     * does not lie cyclically in (hole, j]. */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & index->mask;
        if (index->locs[j] == PD_KVBM_NIL)
            break;
        uint32_t k = index_home(index, index->keys[j]);
        int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        index->keys[i] = index->keys[j];
        index->locs[i] = index->locs[j];
        i = j;
    }
    index->locs[i] = PD_KVBM_NIL;
}
