/* Cache control (DESIGN section 7): which of a request's blocks may be read from the
 * prefix cache, which are written to it and for how long, and the usage numbers every
 * `done` carries. Pure functions; no state.
 *
 *   auto      every full block of a prompt of at least min_cached_prefix_tokens is written
 *             (with retention_ms); lookups always allowed.
 *   explicit  up to 4 breakpoints (token offsets, each with 5m or 1h retention): a
 *             breakpoint at offset t writes the prefix of floor(t / B) full blocks; a block
 *             covered by several breakpoints takes the longest retention. Lookups allowed.
 *   off       nothing is read or written. */
#ifndef PD_CACHE_POLICY_H
#define PD_CACHE_POLICY_H

#include "pd/status.h"

#include <stdint.h>

#define PD_CACHE_MAX_BREAKPOINTS           4
#define PD_CACHE_MIN_PREFIX_TOKENS_DEFAULT 1024u
#define PD_CACHE_RETENTION_5M_MS           (5ull * 60ull * 1000ull)
#define PD_CACHE_RETENTION_1H_MS           (60ull * 60ull * 1000ull)

typedef enum pd_cache_mode {
    PD_CACHE_MODE_AUTO = 0,
    PD_CACHE_MODE_EXPLICIT = 1,
    PD_CACHE_MODE_OFF = 2
} pd_cache_mode_t;

typedef struct pd_cache_breakpoint {
    uint32_t offset_tokens; /* the prefix [0, offset_tokens) is to be cached */
    uint64_t retention_ms;  /* PD_CACHE_RETENTION_5M_MS or PD_CACHE_RETENTION_1H_MS */
} pd_cache_breakpoint_t;

/* A request's cache control, as decoded from its `generate` message. */
typedef struct pd_cache_control {
    pd_cache_mode_t mode;
    uint32_t min_cached_prefix_tokens; /* auto: prompts shorter than this write nothing */
    uint64_t retention_ms;             /* auto: retention of what it writes */
    uint32_t n_breakpoints;            /* explicit: 1 .. PD_CACHE_MAX_BREAKPOINTS */
    pd_cache_breakpoint_t breakpoints[PD_CACHE_MAX_BREAKPOINTS];
} pd_cache_control_t;

/* What a request may read and must write, for one prompt length and block size. */
typedef struct pd_cache_plan {
    int read;                /* 1: prefix lookups allowed */
    uint32_t n_full_blocks;  /* full blocks in the prompt */
    uint32_t n_write_blocks; /* blocks [0, n_write_blocks) are written; 0: none */
    /* Block i < n_write_blocks takes the retention of the first segment whose end_block
     * exceeds i; segments ascend and the last ends at n_write_blocks. */
    uint32_t n_segments;
    struct {
        uint32_t end_block;
        uint64_t retention_ms;
    } segments[PD_CACHE_MAX_BREAKPOINTS];
} pd_cache_plan_t;

/* The usage numbers of a `done`. input_tokens + cache_read_input_tokens is the prompt
 * length; cache_creation_input_tokens counts the computed tokens this request newly
 * wrote to the cache (a part of input_tokens). */
typedef struct pd_usage {
    uint32_t input_tokens;                /* computed by prefill */
    uint32_t cache_creation_input_tokens; /* written to cache, newly, by this request */
    uint32_t cache_read_input_tokens;     /* served from cache */
    uint32_t output_tokens;               /* generated */
} pd_usage_t;

/* Fill *cc with the defaults: auto, 1024 tokens, 5 minutes, no breakpoints. */
void pd_cache_control_init(pd_cache_control_t *cc);

/* Check a decoded cache control: a known mode, explicit with 1 to 4 breakpoints, every
 * retention 5m or 1h. PD_ERR_INVALID_PARAM names nothing; the caller replies `error`. */
pd_status_t pd_cache_control_validate(const pd_cache_control_t *cc);

/* "auto" | "explicit" | "off" -> *mode_p (set only on success). */
pd_status_t pd_cache_mode_parse(const char *name, pd_cache_mode_t *mode_p);

/* The name of a mode ("auto", "explicit", "off", "unknown"). */
const char *pd_cache_mode_name(pd_cache_mode_t mode);

/* "5m" | "1h" -> milliseconds in *ms_p (set only on success). */
pd_status_t pd_cache_retention_parse(const char *text, uint64_t *ms_p);

/* Work out the plan of a request of n_tokens prompt tokens with blocks of block_tokens.
 * Breakpoints beyond the prompt count as at its end. Validates cc first; *plan_p is set
 * only on success. */
pd_status_t pd_cache_plan_make(const pd_cache_control_t *cc, uint32_t n_tokens,
                               uint32_t block_tokens, pd_cache_plan_t *plan_p);

/* Retention with which block block_index is to be committed; 0 if it is not written. */
uint64_t pd_cache_plan_block_retention_ms(const pd_cache_plan_t *plan, uint32_t block_index);

/* Usage of a request: n_read_blocks full blocks served from cache (capped at the prompt),
 * n_created_blocks newly written (capped at what was computed). */
void pd_usage_compute(uint32_t n_prompt_tokens, uint32_t block_tokens, uint32_t n_read_blocks,
                      uint32_t n_created_blocks, uint32_t n_output_tokens, pd_usage_t *usage_p);

#endif
