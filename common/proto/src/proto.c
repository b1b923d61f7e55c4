/* Protocol tables shared by the encoder and the decoder: names, channels, limits, and the
 * resolution of a client's cache control into the plan workers follow. */
#include "pd/proto.h"
#include "proto_int.h"

#include <string.h>

const pd_mp_limits_t pd_proto_limits_client = {
    .max_frame_bytes = PD_PROTO_MAX_CLIENT_FRAME_BYTES,
    .max_array_len = PD_PROTO_MAX_PROMPT_TOKENS,
    .max_map_len = 32,
    .max_str_bytes = PD_PROTO_MAX_PROMPT_BYTES,
    .max_bin_bytes = 0,
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

typedef struct pd_proto_type_entry {
    const char *name;
    pd_proto_chan_t chan;
} pd_proto_type_entry_t;

static const pd_proto_type_entry_t pd_proto_types[PD_PROTO_TYPE_COUNT_] = {
    [PD_PROTO_TYPE_NONE] = {"?", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_GENERATE] = {"generate", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_STATUS] = {"status", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_CANCEL] = {"cancel", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_ACCEPTED] = {"accepted", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_TOKEN] = {"token", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_DONE] = {"done", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_ERROR] = {"error", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_STATUS_REPLY] = {"status_reply", PD_PROTO_CHAN_CLIENT},
    [PD_PROTO_TYPE_REGISTER] = {"register", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_HEARTBEAT] = {"heartbeat", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_RESERVED] = {"reserved", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_PREFILLED] = {"prefilled", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_WORKER_TOKEN] = {"token", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_WORKER_DONE] = {"done", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_WORKER_ERROR] = {"error", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_KV_SNAPSHOT] = {"kv_snapshot", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_REGISTERED] = {"registered", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_RESERVE] = {"reserve", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_PREFILL] = {"prefill", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_WORKER_CANCEL] = {"cancel", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_RESYNC] = {"resync", PD_PROTO_CHAN_WORKER},
    [PD_PROTO_TYPE_KV_EVENT] = {"kv_event", PD_PROTO_CHAN_EVENTS},
};

const char *pd_proto_type_name(pd_proto_type_t type)
{
    if ((int)type <= PD_PROTO_TYPE_NONE || type >= PD_PROTO_TYPE_COUNT_)
        return "?";
    return pd_proto_types[type].name;
}

pd_proto_chan_t pd_proto_type_chan(pd_proto_type_t type)
{
    if ((int)type <= PD_PROTO_TYPE_NONE || type >= PD_PROTO_TYPE_COUNT_)
        return PD_PROTO_CHAN_CLIENT;
    return pd_proto_types[type].chan;
}

pd_proto_type_t pd_proto_type_lookup(pd_proto_chan_t chan, const char *name, size_t n)
{
    for (int t = PD_PROTO_TYPE_NONE + 1; t < PD_PROTO_TYPE_COUNT_; t++) {
        const pd_proto_type_entry_t *e = &pd_proto_types[t];
        if (e->chan == chan && strlen(e->name) == n && memcmp(e->name, name, n) == 0)
            return (pd_proto_type_t)t;
    }
    return PD_PROTO_TYPE_NONE;
}

static const char *const pd_proto_role_names[] = {"prefill", "decode", "both"};
static const char *const pd_proto_finish_names[] = {"length", "stop", "eos"};
static const char *const pd_proto_tier_names[] = {"G1", "G2", "G3"};
static const char *const pd_proto_mode_names[] = {"auto", "explicit", "off"};
static const char *const pd_proto_kind_names[] = {"stored", "removed", "tier"};

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

const char *pd_proto_event_kind_name(pd_proto_event_kind_t kind)
{
    return ((unsigned)kind < 3) ? pd_proto_kind_names[kind] : "?";
}

const char *pd_proto_ttl_name(uint32_t ttl_s)
{
    return (ttl_s == PD_PROTO_TTL_1H_S) ? "1h" : "5m";
}

/* Index of the string obj in names[0..n), or -1. */
int pd_proto_enum_lookup(const msgpack_object *obj, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (pd_mp_str_eq(obj, names[i]))
            return i;
    return -1;
}

int pd_proto_role_lookup(const msgpack_object *obj)
{
    return pd_proto_enum_lookup(obj, pd_proto_role_names, 3);
}

int pd_proto_finish_lookup(const msgpack_object *obj)
{
    return pd_proto_enum_lookup(obj, pd_proto_finish_names, 3);
}

int pd_proto_tier_lookup(const msgpack_object *obj)
{
    return pd_proto_enum_lookup(obj, pd_proto_tier_names, 3);
}

int pd_proto_mode_lookup(const msgpack_object *obj)
{
    return pd_proto_enum_lookup(obj, pd_proto_mode_names, 3);
}

int pd_proto_kind_lookup(const msgpack_object *obj)
{
    return pd_proto_enum_lookup(obj, pd_proto_kind_names, 3);
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
