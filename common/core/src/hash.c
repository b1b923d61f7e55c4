#include "pd/hash.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

uint64_t pd_hash_bytes(const void *data, size_t n_bytes, uint64_t seed)
{
    return XXH3_64bits_withSeed(data, n_bytes, seed);
}

pd_block_hash_t pd_block_hash_root(const char *tenant, const char *model_id)
{
    /* Length-prefix both strings so ("ab","c") and ("a","bc") differ. */
    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    XXH3_64bits_reset_withSeed(&state, 0x70646b76u /* "pdkv" */);
    uint64_t n = strlen(tenant);
    XXH3_64bits_update(&state, &n, sizeof(n));
    XXH3_64bits_update(&state, tenant, n);
    n = strlen(model_id);
    XXH3_64bits_update(&state, &n, sizeof(n));
    XXH3_64bits_update(&state, model_id, n);
    return XXH3_64bits_digest(&state);
}

pd_block_hash_t pd_block_hash_next(pd_block_hash_t prev, const int32_t *tokens, size_t n_tokens)
{
    return XXH3_64bits_withSeed(tokens, n_tokens * sizeof(int32_t), prev);
}

size_t pd_block_hash_chain(pd_block_hash_t root, const int32_t *tokens, size_t n_tokens,
                           size_t block_tokens, pd_block_hash_t *hashes_p, size_t max_blocks)
{
    size_t n_blocks = (block_tokens == 0) ? 0 : n_tokens / block_tokens;
    if (n_blocks > max_blocks)
        n_blocks = max_blocks;
    pd_block_hash_t h = root;
    for (size_t i = 0; i < n_blocks; i++) {
        h = pd_block_hash_next(h, tokens + i * block_tokens, block_tokens);
        hashes_p[i] = h;
    }
    return n_blocks;
}
