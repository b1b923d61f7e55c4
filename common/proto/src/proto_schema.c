/* Every message of the protocol, field by field: the one description from which the
 * codec encodes and decodes (with these limits) and docs/PROTOCOL.md's tables are written.
 *
 * To add an optional field: add the member to its struct in pd/proto.h and one line to its
 * table below (key, kind, flags, offset, limits, doc), in the position it takes on the
 * wire; then `pd-proto-doc --update docs/PROTOCOL.md`. A new message: a type in
 * pd_proto_type_t, its struct in the union, a table here and an entry in
 * pd_proto_type_defs. A rule between fields is a check function on the field after which
 * it can be decided (`.after`), worded once more in the type's `rule` for the docs. */
#include "proto_int.h"

#include <stddef.h>

#define REQ   PD_PROTO_REQ
#define OPT   0u
#define OMIT  PD_PROTO_OMIT
#define LIMIT PD_PROTO_LIMIT
#define U64   PD_PROTO_K_U64
#define U32   PD_PROTO_K_U32
#define TOKEN PD_PROTO_K_TOKEN
#define F64   PD_PROTO_K_F64
#define BOOL  PD_PROTO_K_BOOL
#define STR   PD_PROTO_K_STR
#define TEXT  PD_PROTO_K_TEXT
#define BIN   PD_PROTO_K_BIN
#define ENUM  PD_PROTO_K_ENUM
#define CODE  PD_PROTO_K_CODE
#define TTL   PD_PROTO_K_TTL
#define IDS   PD_PROTO_K_TOKENS
#define U64S  PD_PROTO_K_U64S
#define U32S  PD_PROTO_K_U32S
#define MAP   PD_PROTO_K_MAP
#define INL   PD_PROTO_K_INLINE
#define MAPS  PD_PROTO_K_MAPS

/* Offsets and sizes within the struct T that the table being written describes. */
#define O(m)       .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define N(m)       .n_off = offsetof(T, m), .has_n = true
#define MAXU32     .max = UINT32_MAX
#define MAXU64     .max = UINT64_MAX
#define NAMES(arr) .names = arr, .n_names = sizeof(arr) / sizeof(arr[0])
#define FIELDS(id) static const pd_proto_field_t f_##id[]
#define SCHEMA(id)                                                                                 \
    static const pd_proto_schema_t s_##id = {f_##id, sizeof(f_##id) / sizeof(f_##id[0]), sizeof(T)}

/* Token counts in usage: a prompt plus what was generated. */
#define MAX_IN (PD_PROTO_MAX_PROMPT_TOKENS + PD_PROTO_MAX_NEW_TOKENS)

static const char *const pd_proto_kind_names[] = {"stored", "removed", "tier"};

/* ---- rules between fields ---- */

static const char *pd_proto_check_prompt(const void *x)
{
    const pd_proto_generate_t *g = x;
    return ((g->prompt == NULL) == (g->tokens == NULL)) ? "exactly one of 'prompt' or 'tokens'"
                                                        : NULL;
}

static const char *pd_proto_check_breakpoints(const void *x)
{
    const pd_proto_generate_t *g = x;
    if ((g->cache.mode == PD_PROTO_CACHE_EXPLICIT) != (g->cache.n_breakpoints > 0))
        return g->cache.n_breakpoints > 0 ? "breakpoints need cache mode explicit"
                                          : "cache mode explicit needs breakpoints";
    for (uint32_t i = 1; i < g->cache.n_breakpoints; i++)
        if (g->cache.breakpoints[i].offset_tokens <= g->cache.breakpoints[i - 1].offset_tokens)
            return "breakpoint offsets must be strictly increasing";
    return NULL;
}

/* The block hashes and cache plan of reserve and prefill must agree with the prompt. */
static const char *pd_proto_check_hashes(uint32_t n_tokens, uint32_t n_hashes)
{
    return n_hashes > n_tokens ? "more block hashes than tokens" : NULL;
}

static const char *pd_proto_check_plan(uint32_t n_hashes, const pd_proto_cache_plan_t *plan)
{
    if (plan->read_blocks > n_hashes)
        return "cache.read_blocks beyond block_hashes";
    for (uint32_t i = 0; i < plan->n_writes; i++)
        if (plan->writes[i].n_blocks > n_hashes)
            return "cache.write beyond block_hashes";
    return NULL;
}

#define WORK_CHECKS(name, S)                                                                       \
    static const char *name##_hashes(const void *x)                                                \
    {                                                                                              \
        return pd_proto_check_hashes(((const S *)x)->n_tokens, ((const S *)x)->n_block_hashes);    \
    }                                                                                              \
    static const char *name##_plan(const void *x)                                                  \
    {                                                                                              \
        return pd_proto_check_plan(((const S *)x)->n_block_hashes, &((const S *)x)->cache);        \
    }
WORK_CHECKS(pd_proto_check_reserve, pd_proto_reserve_t)
WORK_CHECKS(pd_proto_check_prefill, pd_proto_prefill_t)

static const char *pd_proto_check_skip(const void *x)
{
    const pd_proto_prefill_t *p = x;
    return p->n_skip_blocks > p->n_block_hashes
               ? "field 'n_skip_blocks' is above the number of block hashes"
               : NULL;
}

static const char *pd_proto_check_src(const void *x)
{
    const pd_proto_prefill_t *p = x;
    bool any = p->src_worker_id != NULL || p->src_xfer_desc != NULL || p->src_block_table != NULL ||
               p->src_checksums != NULL;
    if (!any)
        return NULL;
    if (p->src_worker_id == NULL || p->src_worker_id[0] == '\0' || p->src_xfer_desc == NULL ||
        p->src_block_table == NULL || p->src_checksums == NULL)
        return "src_worker_id, src_xfer_desc, src_block_table and src_checksums go together";
    if (p->n_src_checksums != p->n_src_block_table)
        return "src_checksums and src_block_table differ in length";
    if (p->n_src_block_table > p->n_block_hashes)
        return "src_block_table beyond block_hashes";
    return NULL;
}

static const char *pd_proto_check_pinned(const void *x)
{
    const pd_proto_pinned_t *p = x;
    return p->n_checksums != p->n_block_table ? "checksums and block_table differ in length" : NULL;
}

static const char *pd_proto_check_reserved(const void *x)
{
    const pd_proto_reserved_t *r = x;
    if (r->status == PD_OK && r->n_cached_blocks > r->n_block_table)
        return "n_cached_blocks beyond block_table";
    return NULL;
}

/* The tables: one field a line, as a table reads best. */
/* clang-format off */

/* ---- groups shared by several messages ---- */

#define T pd_proto_sampling_t
FIELDS(sampling) = {
    {"temperature", F64, OPT, O(temperature), .fmax = 100, .fdef = 1, .doc = "0 is greedy"},
    {"top_p", F64, OPT | PD_PROTO_XMIN, O(top_p), .fmax = 1, .fdef = 1, .doc = "nucleus sampling; 1 is off"},
    {"seed", U64, OPT, O(seed), MAXU64, .doc = "sampler seed"},
};
SCHEMA(sampling);
#undef T

#define T pd_proto_breakpoint_t
FIELDS(breakpoint) = {
    {"offset", U32, REQ, O(offset_tokens), .min = 1, .max = PD_PROTO_MAX_PROMPT_TOKENS, .doc = "the prefix [0, offset) is cached"},
    {"ttl", TTL, OPT, O(ttl_s), .def = PD_PROTO_TTL_5M_S, .doc = "its retention"},
};
SCHEMA(breakpoint);
#undef T

#define T pd_proto_cache_t
FIELDS(cache) = {
    {"mode", ENUM, OPT, O(mode), NAMES(pd_proto_mode_names), .doc = "`auto`: prompts of at least `--min-cached-prefix` tokens are cached; `explicit`: the prefixes ending at the breakpoints; `off`: nothing read or written"},
    {"breakpoints", MAPS, OPT | LIMIT, O(breakpoints), N(n_breakpoints), .max = PD_PROTO_MAX_BREAKPOINTS, .sub = &s_breakpoint, .doc = "only (and at least one) with `explicit`; offsets strictly increasing"},
};
SCHEMA(cache);
#undef T

#define T pd_proto_cache_write_t
FIELDS(cache_write) = {
    {"n_blocks", U32, REQ | LIMIT, O(n_blocks), .min = 1, .max = PD_PROTO_MAX_BLOCKS, .doc = "blocks 0 .. n_blocks are written"},
    {"ttl", TTL, REQ, O(ttl_s), .doc = "their retention (the largest entry covering a block wins)"},
};
SCHEMA(cache_write);
#undef T

#define T pd_proto_cache_plan_t
FIELDS(plan) = {
    {"read_blocks", U32, REQ | LIMIT, O(read_blocks), .max = PD_PROTO_MAX_BLOCKS, .doc = "lookups are allowed on the first read_blocks full blocks"},
    {"write", MAPS, OPT | LIMIT, O(writes), N(n_writes), .max = PD_PROTO_MAX_BREAKPOINTS, .sub = &s_cache_write, .doc = "which blocks are written to the cache"},
};
SCHEMA(plan);
#undef T

/* ---- client channel ---- */

#define T pd_proto_generate_t
FIELDS(generate) = {
    {"id", STR, OPT, O(id), .doc = "the client's request id, echoed in every reply"},
    {"prompt", TEXT, OMIT | LIMIT, O(prompt), N(prompt_bytes), .min = 1, .max = PD_PROTO_MAX_PROMPT_BYTES, .doc = "text; the router tokenizes it as BOS + encode(text), like `pdctl generate -p`"},
    {"tokens", IDS, OMIT | LIMIT, O(tokens), N(n_tokens), .min = 1, .max = PD_PROTO_MAX_PROMPT_TOKENS, .after = pd_proto_check_prompt, .doc = "token ids, used as given (no BOS added)"},
    {"max_tokens", U32, OPT | LIMIT, O(max_tokens), .min = 1, .max = PD_PROTO_MAX_NEW_TOKENS, .def = 64, .doc = "tokens to generate (the defaults are `pdctl generate`'s)"},
    {"sampling", INL, OPT, O(sampling), .sub = &s_sampling},
    {"stop", IDS, OPT | LIMIT, O(stop), N(n_stop), .max = PD_PROTO_MAX_STOP, .doc = "stop token ids (the stop token is part of the output)"},
    {"tenant", STR, OPT, O(tenant), .doc = "cache isolation key while auth is off; with auth on, the tenant of the client's key, unless that key is marked `gateway` and this is not empty"},
    {"cache", MAP, OPT, O(cache), .sub = &s_cache, .after = pd_proto_check_breakpoints, .doc = "cache control (default `auto`)"},
    {"stream", BOOL, OPT, O(stream), .def = 1, .doc = "false: no `token` messages, only `accepted` and the terminal message"},
    {"slo_ttft_ms", U32, OPT | OMIT, O(slo_ttft_ms), .max = PD_PROTO_MAX_DEADLINE_MS, .doc = "time-to-first-token objective; the router refuses with `overloaded` what it predicts will miss it; absent or 0: the router's --slo-ttft-ms"},
    {"slo_tpot_ms", U32, OPT | OMIT, O(slo_tpot_ms), .max = PD_PROTO_MAX_DEADLINE_MS, .doc = "time-per-output-token objective, checked against decode's measured step time; absent or 0: the router's --slo-tpot-ms"},
};
SCHEMA(generate);
#undef T

#define T pd_proto_cancel_t
FIELDS(cancel) = {
    {"id", STR, REQ, O(id), .doc = "the request to end"},
};
SCHEMA(cancel);
#undef T

#define T pd_proto_accepted_t
FIELDS(accepted) = {
    {"id", STR, REQ, O(id), .doc = "the request, admitted and queued"},
    {"resumed", BOOL, OPT | OMIT, O(resumed), .doc = "sent again by a router that restarted while the request ran and goes on with it (from its `--journal`): the stream continues at `next_index`"},
    {"next_index", U32, OPT | OMIT, O(next_index), .max = PD_PROTO_MAX_NEW_TOKENS, .doc = "with `resumed`: the index of the next `token` sent; tokens from there on that the client already has come again with the same index and token"},
};
SCHEMA(accepted);
#undef T

#define T pd_proto_token_t
FIELDS(token) = {
    {"id", STR, REQ, O(id), .doc = "the request"},
    {"index", U32, REQ, O(index), .max = PD_PROTO_MAX_NEW_TOKENS - 1, .doc = "position among generated tokens, from 0, each sent once and in order"},
    {"token", TOKEN, REQ, O(token), .max = PD_PROTO_MAX_TOKEN_ID, .doc = "the token id"},
    {"text", TEXT, OPT | LIMIT, O(text), N(text_bytes), .max = PD_PROTO_MAX_PIECE_BYTES, .doc = "the text this token completes: whole UTF-8 characters only (a token that ends inside a character sends `\"\"` and the character comes with the token that finishes it; `done.text` flushes the rest); `\"\"` without a tokenizer"},
    {"bytes", BIN, OMIT | LIMIT, O(bytes), N(n_bytes), .max = PD_PROTO_MAX_PIECE_BYTES, .doc = "the token's own raw bytes, maybe part of a UTF-8 sequence (llama2.c and byte tokenizers); absent where a token's bytes depend on its neighbours"},
};
SCHEMA(token);
#undef T

#define T pd_proto_usage_t
FIELDS(usage) = {
    {"input_tokens", U32, REQ, O(input_tokens), .max = MAX_IN, .doc = "prompt tokens computed by prefill"},
    {"cache_creation_input_tokens", U32, REQ, O(cache_creation_input_tokens), .max = MAX_IN, .doc = "prompt tokens written to a cache"},
    {"cache_read_input_tokens", U32, REQ, O(cache_read_input_tokens), .max = MAX_IN, .doc = "prompt tokens served from a cache (the longer of decode's pinned prefix and prefill's own hits)"},
    {"output_tokens", U32, REQ, O(output_tokens), .max = MAX_IN, .doc = "tokens generated"},
    {"fetched_input_tokens", U32, OPT | OMIT, O(fetched_input_tokens), .max = MAX_IN, .doc = "of cache_read_input_tokens, those prefill read from another worker's cache"},
};
SCHEMA(usage);
#undef T

#define T  pd_proto_timings_t
#define MS .fmax = 1e9
FIELDS(timings) = {
    {"queue_ms", F64, OPT, O(queue_ms), MS, .doc = "arrival -> reserve sent"},
    {"prefill_ms", F64, OPT, O(prefill_ms), MS, .doc = "prefill compute, as prefill measured it"},
    {"transfer_ms", F64, OPT, O(transfer_ms), MS, .doc = "exposed KV push: compute end -> push final, as prefill measured it, less what came after the first token"},
    {"ttft_ms", F64, OPT, O(ttft_ms), MS, .doc = "arrival -> first token sent to the client"},
    {"tpot_ms", F64, OPT, O(tpot_ms), MS, .doc = "mean gap between tokens after the first, as the router saw them"},
    {"total_ms", F64, OPT, O(total_ms), MS, .doc = "arrival -> done"},
    {"admission_ms", F64, OPT | OMIT, O(admission_ms), MS, .doc = "reserve sent -> reserved: decode's reservation"},
    {"prefill_queue_ms", F64, OPT | OMIT, O(prefill_queue_ms), MS, .doc = "reserved -> prefill sent (a holder's pin, or the prefill worker's room, in the router), plus prefill received -> its compute started (as prefill measured it)"},
    {"first_step_ms", F64, OPT | OMIT, O(first_step_ms), MS, .doc = "prefill's report -> first token, when decode sent it later than prefill reported"},
};
SCHEMA(timings);
#undef T

#define T pd_proto_done_t
FIELDS(done_workers) = {
    {"prefill", STR, OPT, O(prefill_worker), .doc = "the prefill worker's id"},
    {"decode", STR, OPT, O(decode_worker), .doc = "the decode worker's id"},
};
SCHEMA(done_workers);
FIELDS(done) = {
    {"id", STR, REQ, O(id), .doc = "the request"},
    {"finish_reason", ENUM, REQ, O(finish_reason), NAMES(pd_proto_finish_names), .doc = "max_tokens reached; a stop id; the model's EOS"},
    {"tokens", IDS, REQ | LIMIT, O(tokens), N(n_tokens), .max = PD_PROTO_MAX_NEW_TOKENS, .doc = "every generated token, in order (equal to the streamed ones)"},
    {"usage", MAP, REQ, O(usage), .sub = &s_usage, .doc = "token accounting"},
    {"timings", MAP, REQ, O(timings), .sub = &s_timings, .doc = "milliseconds"},
    {"workers", MAP, OPT, .off = 0, .sub = &s_done_workers, .doc = "where the request ran"},
    {"recomputed_blocks", U32S, OMIT | LIMIT, O(recomputed_blocks), N(n_recomputed_blocks), .max = PD_PROTO_MAX_BLOCKS, .doc = "prompt blocks (by index) computed to fill holes in an otherwise reused prefix: missing from every cache, or failed their checksum; counted in `usage.input_tokens`; absent when none"},
    {"text", TEXT, OMIT | LIMIT, O(text), N(text_bytes), .max = PD_PROTO_MAX_PIECE_BYTES, .doc = "text the stream held back at the end, after the last `token`: an unfinished character as U+FFFD; absent when nothing was held"},
};
SCHEMA(done);
#undef T

#define T pd_proto_error_t
FIELDS(error) = {
    {"id", STR, OPT, O(id), .doc = "the request; `\"\"` when its id could not be read"},
    {"code", CODE, REQ | PD_PROTO_ERR, O(code), .doc = "a `pd_status_t` name (table above)"},
    {"message", TEXT, OPT | LIMIT, O(message), .max = PD_PROTO_MAX_MESSAGE_BYTES, .doc = "a human-readable reason"},
};
SCHEMA(error);
#undef T

#define T pd_proto_worker_info_t
FIELDS(info_load) = {
    {"running", U32, REQ, O(running), MAXU32, .doc = "requests in the running batch"},
    {"queued", U32, REQ, O(queued), MAXU32, .doc = "requests waiting"},
};
SCHEMA(info_load);
FIELDS(info) = {
    {"id", STR, REQ, O(id), .doc = "worker id"},
    {"role", ENUM, REQ, O(role), NAMES(pd_proto_role_names), .doc = "its role"},
    {"epoch", U64, REQ, O(epoch), MAXU64, .doc = "its epoch"},
    {"state", STR, REQ, O(state), .doc = "`ready` when the directory holds its snapshot and every event since, `resyncing` while it waits for a `kv_snapshot`"},
    {"load", MAP, REQ, .off = 0, .sub = &s_info_load, .doc = "its last heartbeat's load"},
    {"n_blocks", U32, REQ, O(n_blocks), MAXU32, .doc = "KV pool size in blocks"},
    {"free_blocks", U32, REQ, O(free_blocks), MAXU32, .doc = "free blocks"},
    {"directory_blocks", U32, OPT, O(directory_blocks), MAXU32, .doc = "blocks the directory lists for this worker"},
};
SCHEMA(info);
#undef T

#define T pd_proto_status_reply_t
FIELDS(status_reply) = {
    {"workers", MAPS, REQ | LIMIT | PD_PROTO_PTR, O(workers), N(n_workers), .max = PD_PROTO_MAX_WORKERS, .sub = &s_info, .doc = "the registered workers (a dead one is removed)"},
    {"directory_blocks", U64, REQ, O(directory_blocks), MAXU64, .doc = "distinct block hashes in the directory"},
    {"queue_depth", U32, REQ, O(queue_depth), MAXU32, .doc = "requests admitted but not yet dispatched"},
    {"requests_in_flight", U32, REQ, O(requests_in_flight), MAXU32, .doc = "requests not yet terminated"},
    {"holder_reads", U64, OMIT, O(holder_reads), MAXU64, .doc = "prefills told to read a prefix from a third worker that holds it"},
    {"recomputed_blocks", U64, OMIT, O(recomputed_blocks), MAXU64, .doc = "prompt blocks recomputed to fill holes in reused prefixes, since the router started"},
    {"moved_requests", U64, OMIT, O(moved_requests), MAXU64, .doc = "requests that continued on another worker after one of theirs died, since the router started"},
    {"client_gone_requests", U64, OMIT, O(client_gone_requests), MAXU64, .doc = "requests canceled because their client's connection closed, since the router started"},
    {"resumed_requests", U64, OMIT, O(resumed_requests), MAXU64, .doc = "requests of the previous router (from its `--journal`) this one went on with"},
};
SCHEMA(status_reply);
#undef T

#define T pd_proto_stop_t
FIELDS(stop) = {
    {"id", STR, REQ, O(id), .doc = "the request to end now, as `done`"},
};
SCHEMA(stop);
#undef T

#define T pd_proto_worker_stats_t
FIELDS(worker_stats) = {
    {"g1_cached_blocks", U32, OPT, O(g1_cached_blocks), MAXU32, .doc = "G1 blocks findable by hash (pinned or evictable)"},
    {"g2_blocks", U32, OPT, O(g2_blocks), MAXU32, .doc = "host-DRAM tier (G2) slots; 0: no such tier"},
    {"g2_used_blocks", U32, OPT, O(g2_used_blocks), MAXU32, .doc = "G2 slots holding a block"},
    {"g3_blocks", U32, OPT, O(g3_blocks), MAXU32, .doc = "SSD tier (G3) slots; 0: no such tier"},
    {"g3_used_blocks", U32, OPT, O(g3_used_blocks), MAXU32, .doc = "G3 slots holding a block"},
    {"hit_blocks", U64, OPT, O(hit_blocks), MAXU64, .doc = "blocks found by cache lookups (any tier) since the worker started"},
    {"miss_blocks", U64, OPT, O(miss_blocks), MAXU64, .doc = "blocks looked up and not found since it started"},
    {"xfer_bytes", U64, OPT, O(xfer_bytes), MAXU64, .doc = "KV bytes it pushed to other workers since it started"},
    {"xfer_bytes_wire", U64, OPT, O(xfer_bytes_wire), MAXU64, .doc = "the bytes those pushes put on the wire (fewer with a KV codec)"},
};
SCHEMA(worker_stats);
#undef T

#define T pd_proto_stats_worker_t
FIELDS(stats_worker_load) = {
    {"running", U32, REQ, O(running), MAXU32, .doc = "requests in the running batch"},
    {"queued", U32, REQ, O(queued), MAXU32, .doc = "requests waiting"},
};
SCHEMA(stats_worker_load);
FIELDS(stats_worker) = {
    {"id", STR, REQ, O(id), .doc = "worker id"},
    {"role", ENUM, REQ, O(role), NAMES(pd_proto_role_names), .doc = "its role"},
    {"state", STR, REQ, O(state), .doc = "`ready` or `resyncing`, as in `status_reply`"},
    {"load", MAP, REQ, .off = 0, .sub = &s_stats_worker_load, .doc = "its last heartbeat's load"},
    {"n_blocks", U32, REQ, O(n_blocks), MAXU32, .doc = "G1 pool size in blocks"},
    {"free_blocks", U32, REQ, O(free_blocks), MAXU32, .doc = "free G1 blocks"},
    {"directory_blocks", U32, OPT, O(directory_blocks), MAXU32, .doc = "blocks the directory lists for it"},
    {"stats", MAP, OPT, O(stats), .sub = &s_worker_stats, .doc = "its last heartbeat's `stats` (zeros when it sent none)"},
};
SCHEMA(stats_worker);
#undef T

#define T pd_proto_stats_reply_t
FIELDS(stats_roles) = {
    {"prefill", U32, REQ, O(n_prefill), MAXU32, .doc = "prefill workers"},
    {"decode", U32, REQ, O(n_decode), MAXU32, .doc = "decode workers"},
    {"both", U32, REQ, O(n_both), MAXU32, .doc = "colocated workers"},
    {"ready", U32, OPT, O(n_ready), MAXU32, .doc = "of them, those whose directory state is current (not resyncing)"},
};
SCHEMA(stats_roles);
FIELDS(stats_router) = {
    {"queue_depth", U32, REQ, O(queue_depth), MAXU32, .doc = "requests admitted but not yet dispatched"},
    {"requests_in_flight", U32, REQ, O(requests_in_flight), MAXU32, .doc = "requests not yet terminated"},
    {"requests_total", U64, REQ, O(requests_total), MAXU64, .doc = "requests admitted since the router started"},
    {"directory_blocks", U64, REQ, O(directory_blocks), MAXU64, .doc = "distinct block hashes in the directory"},
    {"holder_reads", U64, OMIT, O(holder_reads), MAXU64, .doc = "prefills told to read a prefix from a third worker that holds it"},
    {"recomputed_blocks", U64, OMIT, O(recomputed_blocks), MAXU64, .doc = "prompt blocks recomputed to fill holes in reused prefixes, since the router started"},
};
SCHEMA(stats_router);
FIELDS(stats_pool) = {
    {"g1_blocks", U64, REQ, O(g1_blocks), MAXU64, .doc = "G1 pool blocks"},
    {"g1_free_blocks", U64, REQ, O(g1_free_blocks), MAXU64, .doc = "free G1 blocks"},
    {"g1_cached_blocks", U64, REQ, O(g1_cached_blocks), MAXU64, .doc = "G1 blocks findable by hash"},
    {"g2_blocks", U64, REQ, O(g2_blocks), MAXU64, .doc = "G2 slots"},
    {"g2_used_blocks", U64, REQ, O(g2_used_blocks), MAXU64, .doc = "G2 slots in use"},
    {"g3_blocks", U64, REQ, O(g3_blocks), MAXU64, .doc = "G3 slots"},
    {"g3_used_blocks", U64, REQ, O(g3_used_blocks), MAXU64, .doc = "G3 slots in use"},
    {"hit_blocks", U64, REQ, O(hit_blocks), MAXU64, .doc = "blocks found by cache lookups"},
    {"miss_blocks", U64, REQ, O(miss_blocks), MAXU64, .doc = "blocks looked up and not found"},
};
SCHEMA(stats_pool);
FIELDS(stats_transfer) = {
    {"bytes", U64, REQ, O(xfer_bytes), MAXU64, .doc = "KV bytes the workers pushed"},
    {"bytes_wire", U64, OPT, O(xfer_bytes_wire), MAXU64, .doc = "the bytes those pushes put on the wire (fewer with a KV codec)"},
    {"count", U64, REQ, O(xfer_count), MAXU64, .doc = "KV pushes reported complete by prefill workers"},
    {"ms_sum", F64, REQ, O(xfer_ms_sum), .fmax = 1e18, .doc = "their transfer times, summed (ms)"},
};
SCHEMA(stats_transfer);
FIELDS(stats_reply) = {
    {"workers_by_role", MAP, REQ, .off = 0, .sub = &s_stats_roles, .doc = "registered workers by role"},
    {"router", MAP, REQ, .off = 0, .sub = &s_stats_router, .doc = "the router's own figures"},
    {"pool", MAP, REQ, .off = 0, .sub = &s_stats_pool, .doc = "the workers' KV pools and tiers, summed (blocks)"},
    {"transfer", MAP, REQ, .off = 0, .sub = &s_stats_transfer, .doc = "KV transfer between workers"},
    {"workers", MAPS, OPT | OMIT | LIMIT | PD_PROTO_PTR, O(workers), N(n_workers), .max = PD_PROTO_MAX_WORKERS, .sub = &s_stats_worker, .doc = "every worker's figures; only to clients whose key is marked `admin` (or with auth off)"},
};
SCHEMA(stats_reply);
#undef T

/* ---- worker channel ---- */

#define T pd_proto_register_t
FIELDS(register) = {
    {"worker_id", STR, REQ, O(worker_id), .min = 1, .doc = "stable name (`prefill-0`)"},
    {"role", ENUM, REQ, O(role), NAMES(pd_proto_role_names), .doc = "`both`: colocated, takes both sides of a request"},
    {"epoch", U64, REQ, O(epoch), MAXU64, .doc = "different on every start of the process (time in ns ^ pid)"},
    {"model_id", STR, REQ, O(model_id), .doc = "should equal the router's `--model-id`; a mismatch is logged"},
    {"block_tokens", U32, REQ, O(block_tokens), .min = 1, .max = PD_PROTO_MAX_BLOCK_TOKENS, .doc = "must equal the router's `--block-tokens`, else `error` `PD_ERR_INVALID_PARAM`"},
    {"n_blocks", U32, REQ, O(n_blocks), MAXU32, .doc = "KV pool size in blocks"},
    {"xfer_desc", BIN, REQ | LIMIT, O(xfer_desc), N(xfer_desc_bytes), .max = PD_PROTO_MAX_XFER_DESC_BYTES, .doc = "the transfer descriptor (opaque to the router, handed to prefill in `prefill.dest`)"},
    {"events_endpoint", STR, OPT, O(events_endpoint), .doc = "where the worker's PUB is bound (`tcp://127.0.0.1:7201`); `\"\"` for none"},
};
SCHEMA(register);
#undef T

#define T pd_proto_registered_t
FIELDS(registered) = {
    {"heartbeat_ms", U32, OPT, O(heartbeat_ms), .min = 1, .max = 3600000, .def = 1000, .doc = "how often the router expects a heartbeat"},
    {"router_epoch", U64, OPT | OMIT, O(router_epoch), MAXU64, .doc = "the router process's epoch (random at its start); a worker that sees it change drops every request it holds: a restarted router knows none of them. 0: not sent"},
};
SCHEMA(registered);
#undef T

#define T pd_proto_heartbeat_t
FIELDS(heartbeat_load) = {
    {"running", U32, REQ, O(running), MAXU32, .doc = "requests in the running batch"},
    {"queued", U32, REQ, O(queued), MAXU32, .doc = "requests waiting"},
    {"free_blocks", U32, REQ, O(free_blocks), MAXU32, .doc = "free KV blocks"},
    {"queued_tokens", U32, OPT | OMIT, O(queued_tokens), MAXU32, .doc = "prompt tokens a prefill worker has still to compute, over its queued and running prefills"},
};
SCHEMA(heartbeat_load);
FIELDS(heartbeat) = {
    {"worker_id", STR, REQ, O(worker_id), .doc = "the worker"},
    {"epoch", U64, REQ, O(epoch), MAXU64, .doc = "its epoch"},
    {"kv_seq", U64, OPT, O(kv_seq), MAXU64, .doc = "seq of the last `kv_event` published (0: none or unknown)"},
    {"load", MAP, REQ, .off = 0, .sub = &s_heartbeat_load, .doc = "current load"},
    {"stats", MAP, OPT | OMIT | PD_PROTO_PTR, O(stats), .sub = &s_worker_stats, .doc = "its KV cache and transfer figures (relayed in `stats_reply`)"},
};
SCHEMA(heartbeat);
#undef T

/* The first fields of reserve and prefill, in the struct T of the table they open, with the
 * rules CHECK_hashes and CHECK_plan. */
#define WORK_FIELDS(CHECK) \
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "router-assigned, unique for the router's life"}, \
    {"tokens", IDS, REQ | LIMIT, O(tokens), N(n_tokens), .min = 1, .max = PD_PROTO_MAX_PROMPT_TOKENS, .doc = "the whole prompt"}, \
    {"block_hashes", U64S, REQ | LIMIT, O(block_hashes), N(n_block_hashes), .max = PD_PROTO_MAX_BLOCKS, .after = CHECK##_hashes, .doc = "chained hashes of the prompt's full blocks"}, \
    {"sampling", MAP, REQ, O(sampling), .sub = &s_sampling, .doc = "sampling parameters"}, \
    {"cache", MAP, REQ, O(cache), .sub = &s_plan, .after = CHECK##_plan, .doc = "the resolved cache plan"}, \
    {"deadline_ms", U32, REQ, O(deadline_ms), .max = PD_PROTO_MAX_DEADLINE_MS, .doc = "milliseconds left until the request's deadline when sent"}, \
    {"first_step", U32, OMIT, O(first_step), .max = PD_PROTO_MAX_NEW_TOKENS, .doc = "generated index of the first token sampled here (the sampler's step, and the index of the first `token` sent): absent or 0, or the tokens already streamed when the request continues after its decode worker died; `tokens` then ends with them"}

#define T pd_proto_reserve_t
FIELDS(reserve) = {
    WORK_FIELDS(pd_proto_check_reserve),
    {"max_tokens", U32, REQ | LIMIT, O(max_tokens), .min = 1, .max = PD_PROTO_MAX_NEW_TOKENS, .doc = "tokens to generate"},
    {"stop", IDS, OPT | LIMIT, O(stop), N(n_stop), .max = PD_PROTO_MAX_STOP, .doc = "stop token ids"},
};
SCHEMA(reserve);
#undef T

#define T pd_proto_reserved_t
FIELDS(reserved) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request"},
    {"status", CODE, REQ, O(status), .doc = "`PD_OK`, or why nothing was reserved (the request fails with that code)"},
    {"n_cached_blocks", U32, OPT | LIMIT, O(n_cached_blocks), .max = PD_PROTO_MAX_BLOCKS, .doc = "leading prompt blocks decode already holds and has pinned (<= `read_blocks`)"},
    {"block_table", U32S, OPT | LIMIT, O(block_table), N(n_block_table), .max = PD_PROTO_MAX_BLOCKS, .after = pd_proto_check_reserved, .doc = "pool indices of every block of the request, prompt and generation; the first `n_cached_blocks` are the pinned ones"},
};
SCHEMA(reserved);
#undef T

#define T pd_proto_prefill_t
FIELDS(dest) = {
    {"worker_id", STR, REQ, O(dest_worker_id), .doc = "the decode worker"},
    {"epoch", U64, REQ, O(dest_epoch), MAXU64, .doc = "its epoch"},
    {"xfer_desc", BIN, REQ | LIMIT, O(dest_xfer_desc), N(dest_xfer_desc_bytes), .max = PD_PROTO_MAX_XFER_DESC_BYTES, .doc = "its transfer descriptor from its `register`"},
    {"block_table", U32S, REQ | LIMIT, O(dest_block_table), N(n_dest_block_table), .max = PD_PROTO_MAX_BLOCKS, .doc = "`reserved.block_table`"},
};
SCHEMA(dest);
FIELDS(prefill) = {
    WORK_FIELDS(pd_proto_check_prefill),
    {"n_skip_blocks", U32, REQ, O(n_skip_blocks), MAXU32, .after = pd_proto_check_skip, .doc = "leading blocks decode already holds (`reserved.n_cached_blocks`), never pushed; <= len(block_hashes)"},
    {"dest", MAP, REQ, .off = 0, .sub = &s_dest, .doc = "where the KV goes"},
    {"src_worker_id", TEXT, OMIT | LIMIT, O(src_worker_id), .max = PD_PROTO_NAME_CAP - 1, .doc = "a third worker holding leading blocks, pinned for this request (`pin`)"},
    {"src_epoch", U64, OMIT, O(src_epoch), MAXU64, .doc = "its epoch"},
    {"src_xfer_desc", BIN, OMIT | LIMIT, O(src_xfer_desc), N(src_xfer_desc_bytes), .max = PD_PROTO_MAX_XFER_DESC_BYTES, .doc = "its transfer descriptor from its `register`"},
    {"src_block_table", U32S, OMIT | LIMIT, O(src_block_table), N(n_src_block_table), .max = PD_PROTO_MAX_BLOCKS, .doc = "`pinned.block_table`: block i of the prompt at that index of its pool, or 4294967295 where it holds none"},
    {"src_checksums", U64S, OMIT | LIMIT, O(src_checksums), N(n_src_checksums), .max = PD_PROTO_MAX_BLOCKS, .after = pd_proto_check_src, .doc = "`pinned.checksums`: what a block read from it must hash to"},
};
SCHEMA(prefill);
#undef T

#define T pd_proto_prefilled_t
FIELDS(prefilled) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request"},
    {"first_token", TOKEN, REQ, O(first_token), .max = PD_PROTO_MAX_TOKEN_ID, .doc = "the token prefill sampled"},
    {"n_computed_tokens", U32, REQ, O(n_computed_tokens), .max = MAX_IN, .doc = "prompt tokens prefill computed"},
    {"n_cached_tokens", U32, REQ, O(n_cached_tokens), .max = MAX_IN, .doc = "prompt tokens not computed: from its own cache or read from another worker"},
    {"cache_creation_input_tokens", U32, OPT, O(cache_creation_input_tokens), .max = MAX_IN, .doc = "prompt tokens it wrote to its cache"},
    {"prefill_ms", F64, OPT, O(prefill_ms), .fmax = 1e9, .doc = "its setup (block lookups and reads, `fetch_ms`) plus its first chunk's pass -> first token sampled (`compute_ms` and the other prompts' passes between its chunks); `queue_ms` + `prefill_ms` + `transfer_ms` is its whole time in the worker"},
    {"transfer_ms", F64, OPT, O(transfer_ms), .fmax = 1e9, .doc = "first token sampled -> KV push acknowledged (the exposed part of the push)"},
    {"recomputed_blocks", U32S, OMIT | LIMIT, O(recomputed_blocks), N(n_recomputed_blocks), .max = PD_PROTO_MAX_BLOCKS, .doc = "prompt blocks computed to fill holes in a reused prefix (missing, or failed their checksum), by index; absent when none"},
    {"queue_ms", F64, OPT | OMIT, O(queue_ms), .fmax = 1e9, .doc = "time it waited in the worker's queue, after its setup, for its first chunk's pass"},
    {"compute_ms", F64, OPT | OMIT, O(compute_ms), .fmax = 1e9, .doc = "wall time of the forward passes that computed its chunks (a pass may hold other prompts' chunks too)"},
    {"fetch_ms", F64, OPT | OMIT, O(fetch_ms), .fmax = 1e9, .doc = "time reading reused blocks from other workers"},
    {"n_fetched_tokens", U32, OPT | OMIT, O(n_fetched_tokens), .max = MAX_IN, .doc = "of `n_cached_tokens`, those read from another worker (a holder or the decode worker)"},
    {"n_chunks", U32, OPT | OMIT, O(n_chunks), MAXU32, .doc = "forward passes its computed tokens took (chunks of at most `--chunk-tokens` tokens)"},
};
SCHEMA(prefilled);
#undef T

#define T pd_proto_pin_t
FIELDS(pin) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request the pins belong to"},
    {"block_hashes", U64S, REQ | LIMIT, O(block_hashes), N(n_block_hashes), .min = 1, .max = PD_PROTO_MAX_BLOCKS, .doc = "chained hashes of the prompt's leading full blocks"},
    {"deadline_ms", U32, REQ, O(deadline_ms), .max = PD_PROTO_MAX_DEADLINE_MS, .doc = "the pins are released after this many milliseconds, or on `cancel`"},
};
SCHEMA(pin);
#undef T

#define T pd_proto_pinned_t
FIELDS(pinned) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request"},
    {"status", CODE, REQ, O(status), .doc = "`PD_OK`, or why nothing was pinned"},
    {"block_table", U32S, OPT | LIMIT, O(block_table), N(n_block_table), .max = PD_PROTO_MAX_BLOCKS, .doc = "per hash, the pool index of the pinned block, or 4294967295 where the worker holds none"},
    {"checksums", U64S, OPT | LIMIT, O(checksums), N(n_checksums), .max = PD_PROTO_MAX_BLOCKS, .after = pd_proto_check_pinned, .doc = "per hash, XXH3-64 (seed 0) of the block's bytes, its layers in order; 0 where not held"},
};
SCHEMA(pinned);
#undef T

#define T pd_proto_worker_token_t
FIELDS(worker_token) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request"},
    {"index", U32, REQ, O(index), .max = PD_PROTO_MAX_NEW_TOKENS - 1, .doc = "0 is the first token (the one prefill sampled)"},
    {"token", TOKEN, REQ, O(token), .max = PD_PROTO_MAX_TOKEN_ID, .doc = "the token id"},
    {"last", BOOL, OPT | OMIT, O(last), .doc = "the request's last token (EOS, a stop id or max_tokens): if the worker dies before its `done`, the router ends the request with the tokens it has rather than moving it on"},
};
SCHEMA(worker_token);
#undef T

#define T pd_proto_worker_done_t
FIELDS(worker_usage) = {
    {"cache_read_input_tokens", U32, OPT, O(cache_read_input_tokens), .max = MAX_IN, .doc = "tokens of the pinned prefix"},
    {"cache_creation_input_tokens", U32, OPT, O(cache_creation_input_tokens), .max = MAX_IN, .doc = "tokens written to decode's cache"},
};
SCHEMA(worker_usage);
FIELDS(worker_timings) = {
    {"transfer_wait_ms", F64, OPT, O(transfer_wait_ms), .fmax = 1e9, .doc = "reserve -> KV complete"},
    {"tpot_ms", F64, OPT, O(tpot_ms), .fmax = 1e9, .doc = "mean time per output token"},
};
SCHEMA(worker_timings);
FIELDS(worker_done) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request"},
    {"finish_reason", ENUM, REQ, O(finish_reason), NAMES(pd_proto_finish_names), .doc = "why it ended"},
    {"output_tokens", U32, REQ, O(output_tokens), .max = PD_PROTO_MAX_NEW_TOKENS, .doc = "tokens generated"},
    {"usage", MAP, OPT, .off = 0, .sub = &s_worker_usage, .doc = "decode's token accounting"},
    {"timings", MAP, OPT, .off = 0, .sub = &s_worker_timings, .doc = "milliseconds"},
};
SCHEMA(worker_done);
#undef T

#define T pd_proto_worker_error_t
FIELDS(worker_error) = {
    {"req_id", U64, OPT, O(req_id), MAXU64, .doc = "the request; 0: about the worker itself"},
    {"code", CODE, REQ | PD_PROTO_ERR, O(code), .doc = "a `pd_status_t` name"},
    {"message", TEXT, OPT | LIMIT, O(message), .max = PD_PROTO_MAX_MESSAGE_BYTES, .doc = "a human-readable reason"},
};
SCHEMA(worker_error);
#undef T

#define T pd_proto_worker_cancel_t
FIELDS(worker_cancel) = {
    {"req_id", U64, REQ, O(req_id), .min = 1, MAXU64, .doc = "the request to forget"},
};
SCHEMA(worker_cancel);
#undef T

#define T pd_proto_kv_snapshot_t
FIELDS(by_tier) = {
    {"G1", U64S, OPT | LIMIT, O(hashes[0]), N(n_hashes[0]), .max = PD_PROTO_MAX_SNAPSHOT_HASHES, .doc = "hashes held in compute memory"},
    {"G2", U64S, OPT | LIMIT, O(hashes[1]), N(n_hashes[1]), .max = PD_PROTO_MAX_SNAPSHOT_HASHES, .doc = "hashes held in host DRAM"},
    {"G3", U64S, OPT | LIMIT, O(hashes[2]), N(n_hashes[2]), .max = PD_PROTO_MAX_SNAPSHOT_HASHES, .doc = "hashes held on local SSD"},
};
SCHEMA(by_tier);
FIELDS(kv_snapshot) = {
    {"worker_id", STR, REQ, O(worker_id), .doc = "the worker"},
    {"epoch", U64, REQ, O(epoch), MAXU64, .doc = "its epoch"},
    {"seq", U64, REQ, O(seq), MAXU64, .doc = "seq of the last `kv_event` already reflected in it (0 if none was published)"},
    {"hashes_by_tier", MAP, REQ, .off = 0, .sub = &s_by_tier, .doc = "every block hash it holds, by tier"},
};
SCHEMA(kv_snapshot);
#undef T

/* ---- events channel ---- */

#define T pd_proto_kv_event_item_t
FIELDS(event_item) = {
    {"kind", ENUM, REQ, O(kind), NAMES(pd_proto_kind_names), .doc = "`stored`: now held in `tier`; `removed`: no longer held there; `tier`: moved to `tier` from whichever tier held them"},
    {"tier", ENUM, REQ, O(tier), NAMES(pd_proto_tier_names), .doc = "`G1` compute memory, `G2` host DRAM, `G3` local SSD"},
    {"hashes", U64S, REQ | LIMIT, O(hashes), N(n_hashes), .max = PD_PROTO_MAX_EVENT_HASHES, .doc = "the block hashes"},
};
SCHEMA(event_item);
#undef T

#define T pd_proto_kv_event_t
FIELDS(kv_event) = {
    {"worker_id", STR, REQ, O(worker_id), .doc = "the worker"},
    {"epoch", U64, REQ, O(epoch), MAXU64, .doc = "its epoch"},
    {"seq", U64, REQ, O(seq), .min = 1, MAXU64, .doc = "1 for the first batch of an epoch, +1 per batch"},
    {"events", MAPS, REQ | LIMIT | PD_PROTO_PTR, O(events), N(n_events), .max = PD_PROTO_MAX_EVENTS, .sub = &s_event_item, .doc = "what changed, in order"},
};
SCHEMA(kv_event);
#undef T

/* ---- the messages ---- */

#define C PD_PROTO_CHAN_CLIENT
#define W PD_PROTO_CHAN_WORKER
const pd_proto_type_def_t pd_proto_type_defs[PD_PROTO_TYPE_COUNT_] = {
    [PD_PROTO_TYPE_NONE] = {"?", C, NULL, NULL},
    [PD_PROTO_TYPE_GENERATE] = {"generate", C, &s_generate,
                                "exactly one of `prompt` and `tokens`; `cache.breakpoints` "
                                "only (and at least one) with mode `explicit`, offsets "
                                "strictly increasing"},
    [PD_PROTO_TYPE_STATUS] = {"status", C, NULL, NULL},
    [PD_PROTO_TYPE_CANCEL] = {"cancel", C, &s_cancel, NULL},
    [PD_PROTO_TYPE_ACCEPTED] = {"accepted", C, &s_accepted, NULL},
    [PD_PROTO_TYPE_TOKEN] = {"token", C, &s_token, NULL},
    [PD_PROTO_TYPE_DONE] = {"done", C, &s_done, NULL},
    [PD_PROTO_TYPE_ERROR] = {"error", C, &s_error, NULL},
    [PD_PROTO_TYPE_STATUS_REPLY] = {"status_reply", C, &s_status_reply, NULL},
    [PD_PROTO_TYPE_REGISTER] = {"register", W, &s_register, NULL},
    [PD_PROTO_TYPE_HEARTBEAT] = {"heartbeat", W, &s_heartbeat, NULL},
    [PD_PROTO_TYPE_RESERVED] = {"reserved", W, &s_reserved,
                                "with `PD_OK`, `n_cached_blocks` <= len(`block_table`)"},
    [PD_PROTO_TYPE_PREFILLED] = {"prefilled", W, &s_prefilled, NULL},
    [PD_PROTO_TYPE_WORKER_TOKEN] = {"token", W, &s_worker_token, NULL},
    [PD_PROTO_TYPE_WORKER_DONE] = {"done", W, &s_worker_done, NULL},
    [PD_PROTO_TYPE_WORKER_ERROR] = {"error", W, &s_worker_error, NULL},
    [PD_PROTO_TYPE_KV_SNAPSHOT] = {"kv_snapshot", W, &s_kv_snapshot, NULL},
    [PD_PROTO_TYPE_REGISTERED] = {"registered", W, &s_registered, NULL},
    [PD_PROTO_TYPE_RESERVE] = {"reserve", W, &s_reserve,
                               "len(`block_hashes`) <= len(`tokens`); `cache.read_blocks` and "
                               "every `cache.write[].n_blocks` <= len(`block_hashes`)"},
    [PD_PROTO_TYPE_PREFILL] = {"prefill", W, &s_prefill,
                               "as `reserve`, and `n_skip_blocks` <= "
                               "len(`block_hashes`); `src_worker_id` (not empty), "
                               "`src_xfer_desc`, `src_block_table` and `src_checksums` all or "
                               "none, the two lists of one length <= "
                               "len(`block_hashes`)"},
    [PD_PROTO_TYPE_WORKER_CANCEL] = {"cancel", W, &s_worker_cancel, NULL},
    [PD_PROTO_TYPE_RESYNC] = {"resync", W, NULL, NULL},
    [PD_PROTO_TYPE_PIN] = {"pin", W, &s_pin, NULL},
    [PD_PROTO_TYPE_PINNED] = {"pinned", W, &s_pinned,
                              "len(`checksums`) = len(`block_table`)"},
    [PD_PROTO_TYPE_KV_EVENT] = {"kv_event", PD_PROTO_CHAN_EVENTS, &s_kv_event, NULL},
    [PD_PROTO_TYPE_STATS] = {"stats", C, NULL, NULL},
    [PD_PROTO_TYPE_STATS_REPLY] = {"stats_reply", C, &s_stats_reply, NULL},
    [PD_PROTO_TYPE_STOP] = {"stop", C, &s_stop, NULL},
};
/* clang-format on */
