/* Chained, tenant-salted KV block hashes (XXH3, 64-bit).
 *
 * h_{-1} = H(tenant salt, model id); h_i = H(h_{i-1}, tokens of block i). Only full blocks
 * are hashed. Because the tenant enters the first link, equal text of two tenants never
 * produces an equal hash anywhere in the chain. */
#ifndef PD_HASH_H
#define PD_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t pd_block_hash_t;

/* XXH3-64 of bytes with a seed. */
uint64_t pd_hash_bytes(const void *data, size_t n_bytes, uint64_t seed);

/* The chain's root for a tenant (may be "" for none) and a model id. */
pd_block_hash_t pd_block_hash_root(const char *tenant, const char *model_id);

/* The next link: the hash of one block of tokens given the previous link. */
pd_block_hash_t pd_block_hash_next(pd_block_hash_t prev, const int32_t *tokens, size_t n_tokens);

/* Hash the full blocks of a token sequence into hashes_p[0 .. n_tokens / block_tokens).
 * Returns the number of full blocks written (at most max_blocks). */
size_t pd_block_hash_chain(pd_block_hash_t root, const int32_t *tokens, size_t n_tokens,
                           size_t block_tokens, pd_block_hash_t *hashes_p, size_t max_blocks);

#endif
