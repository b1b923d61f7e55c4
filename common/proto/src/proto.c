/* What the encoder and the decoder share besides the schemas: frame limits, type and enum
 * names, and the resolution of a client's cache control into the plan workers follow. */
#include "pd/proto.h"
#include "proto_int.h"

#include <string.h>

const pd_mp_limits_t pd_proto_limits_client = {
    .max_frame_bytes = PD_PROTO_MAX_CLIENT_FRAME_BYTES,
    .max_array_len = PD_PROTO_MAX_PROMPT_TOKENS,
    .max_map_len = 32,
    .max_str_bytes = PD_PROTO_MAX_PROMPT_BYTES,
    /* No client field is bin, but one sent where a string belongs gets the schema's
     * "must be a string" rather than a size limit: the frame limit bounds it anyway. */
    .max_bin_bytes = PD_PROTO_MAX_PROMPT_BYTES,
    .max_depth = 4,
    .max_objects = PD_PROTO_MAX_PROMPT_TOKENS + 1024,
};

const pd_mp_limits_t pd_proto_limits_worker = {
    .max_frame_bytes = PD_PROTO_MAX_WORKER_FRAME_BYTES,
    .max_array_len = PD_PROTO_MAX_SNAPSHOT_HASHES,
    .max_map_len = 32,
    .max_str_bytes = PD_PROTO_MAX_PROMPT_BYTES,
    .max_bin_bytes = PD_PROTO_MAX_XFER_DESC_BYTES,
    .max_depth = 5,
    .max_objects = 3 * PD_PROTO_MAX_SNAPSHOT_HASHES + 4096,
};

const char *pd_proto_type_name(pd_proto_type_t type)
{
    if ((int)type <= PD_PROTO_TYPE_NONE || type >= PD_PROTO_TYPE_COUNT_)
        return "?";
    return pd_proto_type_defs[type].name;
}

pd_proto_chan_t pd_proto_type_chan(pd_proto_type_t type)
{
    if ((int)type <= PD_PROTO_TYPE_NONE || type >= PD_PROTO_TYPE_COUNT_)
        return PD_PROTO_CHAN_CLIENT;
    return pd_proto_type_defs[type].chan;
}

const char *pd_proto_chan_name(pd_proto_chan_t chan)
{
    static const char *const names[] = {"client", "worker", "events"};
    return ((unsigned)chan < 3) ? names[chan] : "?";
}

pd_proto_type_t pd_proto_type_lookup(pd_proto_chan_t chan, const char *name, size_t n)
{
    for (int t = PD_PROTO_TYPE_NONE + 1; t < PD_PROTO_TYPE_COUNT_; t++) {
        const pd_proto_type_def_t *e = &pd_proto_type_defs[t];
        if (e->chan == chan && strlen(e->name) == n && memcmp(e->name, name, n) == 0)
            return (pd_proto_type_t)t;
    }
    return PD_PROTO_TYPE_NONE;
}

const char *const pd_proto_role_names[3] = {"prefill", "decode", "both"};
const char *const pd_proto_finish_names[3] = {"length", "stop", "eos"};
const char *const pd_proto_tier_names[3] = {"G1", "G2", "G3"};
const char *const pd_proto_mode_names[3] = {"auto", "explicit", "off"};
const char *const pd_proto_ttl_names[2] = {"5m", "1h"};
const uint32_t pd_proto_ttl_seconds[2] = {PD_PROTO_TTL_5M_S, PD_PROTO_TTL_1H_S};

const char *pd_proto_role_name(pd_proto_role_t role)
{
    return ((unsigned)role < 3) ? pd_proto_role_names[role] : "?";
}

const char *pd_proto_finish_name(pd_proto_finish_t finish)
{
    return ((unsigned)finish < 3) ? pd_proto_finish_names[finish] : "?";
}

const char *pd_proto_tier_name(pd_proto_tier_t tier)
{
    return ((unsigned)tier < 3) ? pd_proto_tier_names[tier] : "?";
}

const char *pd_proto_cache_mode_name(pd_proto_cache_mode_t mode)
{
    return ((unsigned)mode < 3) ? pd_proto_mode_names[mode] : "?";
}

uint64_t pd_proto_cache_plan_block_ttl_ms(const pd_proto_cache_plan_t *plan, uint32_t block_index)
{
    uint32_t ttl = 0;
    for (uint32_t w = 0; w < plan->n_writes && w < PD_PROTO_MAX_BREAKPOINTS; w++) {
        if (block_index < plan->writes[w].n_blocks && plan->writes[w].ttl_s > ttl)
            ttl = plan->writes[w].ttl_s;
    }
    return (uint64_t)ttl * 1000u;
}

void pd_proto_cache_plan_make(const pd_proto_cache_t *cache, uint32_t n_tokens,
                              uint32_t block_tokens, uint32_t min_cached_prefix_tokens,
                              pd_proto_cache_plan_t *plan_p)
{
    pd_proto_cache_plan_t plan;
    uint32_t n_full = (block_tokens == 0) ? 0 : n_tokens / block_tokens;

    memset(&plan, 0, sizeof(plan));
    switch (cache->mode) {
    case PD_PROTO_CACHE_OFF:
        break;
    case PD_PROTO_CACHE_AUTO:
        plan.read_blocks = n_full;
        if (n_tokens >= min_cached_prefix_tokens && n_full > 0) {
            plan.writes[0].n_blocks = n_full;
            plan.writes[0].ttl_s = PD_PROTO_TTL_5M_S;
            plan.n_writes = 1;
        }
        break;
    case PD_PROTO_CACHE_EXPLICIT:
        plan.read_blocks = n_full;
        for (uint32_t i = 0; i < cache->n_breakpoints && i < PD_PROTO_MAX_BREAKPOINTS; i++) {
            uint32_t off = cache->breakpoints[i].offset_tokens;
            uint32_t nb = (off > n_tokens ? n_tokens : off) / (block_tokens ? block_tokens : 1);
            if (nb == 0)
                continue;
            plan.writes[plan.n_writes].n_blocks = nb;
            plan.writes[plan.n_writes].ttl_s = cache->breakpoints[i].ttl_s;
            plan.n_writes++;
        }
        break;
    }
    *plan_p = plan;
}
