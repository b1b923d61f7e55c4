/* pd-prefill: the prefill worker, a role of the role runtime (pd/role.h). For each
 * `prefill` from the router it reuses its own cached prefix, computes the rest of the
 * prompt in chunks of at most --chunk-tokens tokens, one forward pass at a time, the
 * prompt with the fewest tokens left first, so that a short or mostly cached prompt passes
 * between the chunks of a long one; pushes the KV of the blocks the decode worker lacks
 * into the blocks it reserved (layer by layer while later layers compute, a block as soon
 * as a chunk completes it), samples the first token and notifies decode with it. */
#ifndef PD_PREFILL_H
#define PD_PREFILL_H

#include "pd/role.h"

#include <stdint.h>

/* The role's handlers: pd_role_main(&pd_prefill_role, argc, argv) is the program. */
extern const pd_role_ops_t pd_prefill_role;

/* Most prompts in one forward pass. */
#define PD_PREFILL_MAX_PASS_SEQS 16

/* Passes a ready prompt may be left out of before it goes first (no starvation). */
#define PD_PREFILL_MAX_PASSED_OVER 8

/* A prompt with tokens to compute, as the chunk scheduler sees it. */
typedef struct pd_prefill_sched_item {
    uint32_t remaining_tokens; /* tokens it has still to compute */
    uint32_t run_tokens;       /* of them, those one chunk may take now (its current run) */
    uint64_t seq;              /* arrival order: earlier first among equals */
    uint32_t n_passed_over;    /* passes it was ready for and left out of */
} pd_prefill_sched_item_t;

/* Plan the next forward pass over items (n_items): order them by fewest remaining tokens,
 * then arrival, except that one left out of PD_PREFILL_MAX_PASSED_OVER passes goes first;
 * the first gets a chunk of up to chunk_tokens of its run; the next ones join the pass,
 * in that order, while each can finish in it (all its remaining tokens within what is
 * left of the chunk_tokens budget) and max_seqs allows. Writes the chosen items' indices
 * to pick (max_seqs) in that order and their chunks' token counts to take (max_seqs);
 * returns how many (0 when no item has run_tokens). */
uint32_t pd_prefill_sched_plan(const pd_prefill_sched_item_t *items, uint32_t n_items,
                               uint32_t chunk_tokens, uint32_t max_seqs, uint32_t *pick,
                               uint32_t *take);

#endif
