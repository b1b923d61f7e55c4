/* pdctl bench: open-loop load against a pdkv router. The pure parts (random numbers,
 * Poisson arrivals, workloads, Mooncake trace parsing and scaling, the ideal-cache hit
 * rate, percentiles and the summary) live here so that tests link them without a
 * cluster; the client loop and the reports use them. */
#ifndef PD_DEPLOY_BENCH_LIB_H
#define PD_DEPLOY_BENCH_LIB_H

#include "pd/proto.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Mooncake traces hash one id per 512 tokens. */
#define PD_BENCH_TRACE_SRC_BLOCK_TOKENS 512u
/* The byte tokenizer of the default models maps bytes to ids 3..258. */
#define PD_BENCH_TOKEN_MIN  3
#define PD_BENCH_TOKEN_SPAN 256
/* Limits on one trace line, so that a bad line cannot ask for absurd memory. */
#define PD_BENCH_TRACE_MAX_LINE_BYTES (4u << 20)
#define PD_BENCH_TRACE_MAX_INPUT      (16u << 20)
#define PD_BENCH_TRACE_MAX_OUTPUT     (1u << 20)

/* ---- random numbers (splitmix64: tiny, seedable, identical on every platform) ---- */

typedef struct pd_bench_rng {
    uint64_t state;
} pd_bench_rng_t;

void pd_bench_rng_seed(pd_bench_rng_t *rng, uint64_t seed);
uint64_t pd_bench_rng_next(pd_bench_rng_t *rng);
/* Uniform in [0, 1). */
double pd_bench_rng_uniform(pd_bench_rng_t *rng);
/* Uniform integer in [lo, hi] (inclusive; lo <= hi). */
uint32_t pd_bench_rng_range(pd_bench_rng_t *rng, uint32_t lo, uint32_t hi);

/* Arrival times in ms from the start for n requests: a Poisson process of rate_per_s
 * (exponential gaps, the first request at its first gap), or all at 0 when rate_per_s is
 * 0. The same seed gives the same times. t_ms: (n). */
void pd_bench_poisson_arrivals(double rate_per_s, uint64_t seed, size_t n, double *t_ms);

/* ---- percentiles ---- */

/* Sort values ascending in place. */
void pd_bench_sort(double *values, size_t n);

/* The p-th percentile (0..100) of ascending values, interpolating linearly between the
 * closest ranks (numpy's default); NAN when n is 0. */
double pd_bench_percentile(const double *sorted, size_t n, double p);

/* ---- workloads ---- */

/* One request to send. Its prompt tokens are made on demand by pd_bench_item_tokens(),
 * so that a long run never holds every prompt in memory. */
typedef struct pd_bench_item {
    double arrival_ms; /* when to send, from the start of the run */
    uint32_t n_input;  /* prompt tokens */
    uint32_t n_output; /* max_tokens */
    uint32_t tenant;   /* 0..n_tenants-1 */
    /* synthetic prompts: n_prefix tokens of group `group`'s shared prefix, then tokens
     * unique to the request (seeded by its index) */
    uint32_t group; /* UINT32_MAX: no shared prefix */
    uint32_t n_prefix;
    /* trace prompts: one token block per hash id; every block has block_tokens tokens
     * except the last, which has last_block_tokens (1..block_tokens) */
    const uint64_t *block_ids; /* (n_blocks), borrowed from the trace */
    uint32_t n_blocks;
    uint32_t block_tokens;
    uint32_t last_block_tokens;
    uint32_t src_line; /* trace line number, 0 for synthetic */
} pd_bench_item_t;

/* What a synthetic workload looks like (the command line's options). */
typedef struct pd_bench_workload {
    uint32_t n_requests;
    double rate_per_s; /* 0: all at once */
    uint32_t prompt_min, prompt_max;
    uint32_t output_min, output_max;
    uint32_t shared_prefix_tokens; /* 0: none */
    uint32_t prefix_groups;        /* >= 1 */
    uint32_t n_tenants;            /* >= 1 */
    uint64_t seed;
} pd_bench_workload_t;

/* Fill items (n_requests of them, caller storage) from a synthetic workload: prompt and
 * output lengths uniform in their ranges, a group drawn uniformly for each request when
 * shared_prefix_tokens > 0 (its prefix is min(shared_prefix_tokens, n_input - 1) tokens),
 * a tenant drawn uniformly. Deterministic in seed. */
void pd_bench_workload_make(const pd_bench_workload_t *wl, pd_bench_item_t *items);

/* Write item idx's prompt into tokens (n_input of them, ids in 3..258). Equal shared
 * prefix groups and equal trace hash ids give equal token runs; the rest depends on seed
 * and idx. */
void pd_bench_item_tokens(const pd_bench_item_t *item, uint32_t idx, uint64_t seed,
                          int32_t *tokens);

/* ---- Mooncake traces ---- */

typedef struct pd_bench_trace_req {
    double timestamp_ms;
    uint32_t input_length;
    uint32_t output_length;
    uint64_t *hash_ids; /* (n_hash_ids), owned by the trace */
    uint32_t n_hash_ids;
    uint32_t line; /* 1-based line number in the file */
} pd_bench_trace_req_t;

typedef struct pd_bench_trace {
    pd_bench_trace_req_t *reqs; /* (n_reqs) in file order */
    size_t n_reqs;
    size_t n_bad_lines; /* malformed lines skipped */
    size_t n_lines;     /* lines read, blank ones included */
} pd_bench_trace_t;

/* Parse one JSONL line into req (caller storage; req->hash_ids is malloc'd, free it).
 * Checks: a JSON object with a number timestamp >= 0, integer input_length (1..16M) and
 * output_length (0..1M), and hash_ids, an array of non-negative integers holding exactly
 * ceil(input_length / 512) ids. On failure PD_ERR_FORMAT with a reason in err and req
 * untouched. */
PD_MUST_CHECK pd_status_t pd_bench_trace_parse_line(const char *line, size_t len, uint32_t line_no,
                                                    pd_bench_trace_req_t *req, char *err,
                                                    size_t err_bytes);

/* Read the first limit requests (0: all) of a JSONL trace from f. Blank lines are
 * ignored; a malformed line is reported on warn (when not NULL) with its line number and
 * skipped. PD_ERR_FORMAT (with a reason in err) when no valid request is left or when more
 * than max_bad lines were malformed; PD_ERR_NO_MEMORY. On success the caller frees the
 * trace with pd_bench_trace_cleanup(). */
PD_MUST_CHECK pd_status_t pd_bench_trace_read(FILE *f, size_t limit, size_t max_bad, FILE *warn,
                                              pd_bench_trace_t *trace, char *err, size_t err_bytes);

void pd_bench_trace_cleanup(pd_bench_trace_t *trace);

/* How a trace becomes requests. */
typedef struct pd_bench_trace_scale {
    double len_scale;      /* > 0: divide lengths (output too, rounded up, at least 1) */
    double time_scale;     /* > 0: multiply gaps between timestamps */
    uint32_t block_tokens; /* tokens per hash id after scaling (>= 1) */
    uint32_t max_len;      /* 0, or clip prompt + output to this many tokens */
    uint32_t n_tenants;    /* >= 1; tenants drawn uniformly with seed */
    uint64_t seed;
} pd_bench_trace_scale_t;

/* Turn trace requests into items (n_reqs of them, caller storage; they borrow the
 * trace's hash ids). Every full 512-token source block becomes block_tokens tokens; the
 * last, partial block keeps its fraction (rounded up). Arrival times start at 0 for the
 * first request. Returns how many prompts max_len clipped. */
size_t pd_bench_trace_items(const pd_bench_trace_t *trace, const pd_bench_trace_scale_t *sc,
                            pd_bench_item_t *items);

/* The hit rate of an ideal infinite cache over trace items in send order: a block is a
 * hit when the chain of hash ids ending at it (its prefix, for the same tenant) was seen
 * before; a hit counts min(its tokens, the most tokens seen for that chain). Sets the
 * totals in prompt tokens. PD_ERR_NO_MEMORY. */
PD_MUST_CHECK pd_status_t pd_bench_ideal_cache(const pd_bench_item_t *items, size_t n,
                                               uint64_t *hit_tokens_p, uint64_t *total_tokens_p);

/* The hit rate of an ideal infinite cache over synthetic items in send order: a request
 * hits the full blocks (block_tokens each) of its shared prefix that an earlier request of
 * the same group and tenant already had, as a cache of whole blocks would. Sets the totals
 * in prompt tokens. */
void pd_bench_ideal_cache_groups(const pd_bench_item_t *items, size_t n, uint32_t block_tokens,
                                 uint64_t *hit_tokens_p, uint64_t *total_tokens_p);

/* ---- results ---- */

/* What one request measured: client times in ms from the start of the run. */
typedef struct pd_bench_rec {
    double sched_ms; /* arrival time from the workload */
    double send_ms;  /* when it was sent (later than sched_ms when concurrency held it) */
    double first_ms; /* first token received, 0 if none */
    double last_ms;  /* last token received */
    double end_ms;   /* done or error received */
    uint32_t n_recv; /* token messages received */
    uint32_t n_input;
    uint32_t n_output_req;
    uint32_t group;
    uint32_t tenant;
    bool sent;
    bool accepted;     /* got accepted */
    uint32_t n_resent; /* sent again for want of an accepted (a router that restarted) */
    double resent_ms;  /* when last sent again */
    bool finished;     /* got done */
    pd_status_t error; /* PD_OK, or the error code (PD_ERR_TIMEOUT from the client) */
    char error_msg[128];
    pd_proto_finish_t finish_reason;
    pd_proto_usage_t usage;
    pd_proto_timings_t timings;
    char prefill_worker[PD_PROTO_NAME_CAP];
    char decode_worker[PD_PROTO_NAME_CAP];
} pd_bench_rec_t;

/* Start the records of a run (recs: n, caller storage): each from its item (arrival,
 * lengths, group, tenant), nothing measured yet. Returns the longest prompt (at least 1),
 * the size of the caller's scratch prompt. */
uint32_t pd_bench_recs_init(const pd_bench_item_t *items, size_t n, pd_bench_rec_t *recs);

/* order (n, caller storage): the item indices by arrival time, ties by index. */
void pd_bench_order_by_arrival(const pd_bench_item_t *items, size_t n, size_t *order);

/* p50/p99 (and mean) of one metric over the requests that have it. */
typedef struct pd_bench_dist {
    size_t n;
    double p50, p90, p99, mean;
} pd_bench_dist_t;

/* How many completed requests one worker served. */
#define PD_BENCH_MAX_PLACES 16
typedef struct pd_bench_place {
    char worker[PD_PROTO_NAME_CAP];
    size_t n;
} pd_bench_place_t;

typedef struct pd_bench_summary {
    size_t n_requests, n_completed, n_errors;
    double duration_s;      /* first send -> last reply */
    double req_per_s;       /* completed requests per second of duration */
    double out_tok_per_s;   /* output tokens per second of duration */
    uint64_t prompt_tokens; /* of completed requests */
    uint64_t cache_read_tokens, cache_creation_tokens, computed_tokens, output_tokens;
    double cache_hit_rate;          /* cache_read_tokens / prompt_tokens */
    pd_bench_dist_t ttft_ms;        /* client: send -> first token */
    pd_bench_dist_t server_ttft_ms; /* done.timings.ttft_ms */
    pd_bench_dist_t tpot_ms;        /* client: (last - first) / (n - 1) */
    pd_bench_dist_t server_tpot_ms;
    pd_bench_dist_t queue_ms, prefill_ms, transfer_ms;
    pd_bench_dist_t transfer_share; /* transfer_ms / ttft_ms per request */
    pd_bench_dist_t e2e_ms;         /* client: send -> done */
    /* The rest of the server's TTFT breakdown (docs/ARCHITECTURE.md, "Where TTFT goes"),
     * and what it leaves unaccounted: server TTFT less the sum of its parts. */
    pd_bench_dist_t admission_ms, prefill_queue_ms, first_step_ms;
    pd_bench_dist_t unaccounted_ms, unaccounted_share;
    uint64_t fetched_tokens; /* of cache_read_tokens, read from another worker */
    /* client TTFT split by whether the request read anything from a cache */
    pd_bench_dist_t ttft_cold_ms, ttft_warm_ms;
    /* completed requests per worker (the first PD_BENCH_MAX_PLACES names seen) */
    pd_bench_place_t prefill_places[PD_BENCH_MAX_PLACES], decode_places[PD_BENCH_MAX_PLACES];
    size_t n_prefill_places, n_decode_places;
} pd_bench_summary_t;

/* Client-measured TPOT of one record: (last - first) / (n_recv - 1); NAN with fewer than
 * two tokens. */
double pd_bench_rec_tpot_ms(const pd_bench_rec_t *rec);

/* Service-level objectives met: a request counts when it completed with client TTFT
 * <= ttft_ms and client TPOT <= tpot_ms (one with fewer than two tokens has no TPOT);
 * an objective of 0 is not checked. Errors and refusals are misses. */
typedef struct pd_bench_slo {
    size_t n_met;      /* requests within both objectives */
    size_t n_refused;  /* ended with PD_ERR_OVERLOADED */
    double attainment; /* n_met / requests */
    double goodput;    /* n_met per second of the run's duration */
} pd_bench_slo_t;

void pd_bench_slo_eval(const pd_bench_rec_t *recs, size_t n, double duration_s, double ttft_ms,
                       double tpot_ms, pd_bench_slo_t *slo);

/* Parse "0.5,1,2" into rates (at most max, each in (0, 1e6]); returns how many, or 0
 * when the list is malformed. */
size_t pd_bench_parse_rates(const char *s, double *rates, size_t max);

/* Server TTFT less the sum of its parts (router queue, admission, prefill queue, prefill
 * compute, exposed transfer, first step); NAN when a part or TTFT is missing. */
double pd_bench_rec_unaccounted_ms(const pd_bench_rec_t *rec);

/* Compute the summary of n records. PD_ERR_NO_MEMORY. */
PD_MUST_CHECK pd_status_t pd_bench_summarize(const pd_bench_rec_t *recs, size_t n,
                                             pd_bench_summary_t *sum);

#endif
