/* Decoding: frame limits first (pd_mp_doc_parse), then every field's type, range and
 * length. Arrays are converted into memory from the doc's own zone, whose size the frame
 * limit bounds, so a decoded message never holds more than its frame allowed. */
#include "pd/proto.h"
#include "proto_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct pd_proto_dec {
    pd_proto_msg_t *msg;
    pd_proto_fault_t *fault;
} pd_proto_dec_t;

#define REQ true
#define OPT false

static pd_status_t pd_proto_dec_fail(pd_proto_dec_t *d, pd_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static pd_status_t pd_proto_dec_fail(pd_proto_dec_t *d, pd_status_t status, const char *fmt, ...)
{
    if (d->fault != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->fault->reason, sizeof(d->fault->reason), fmt, ap);
        va_end(ap);
    }
    return status;
}

static void *pd_proto_dec_alloc(pd_proto_dec_t *d, size_t bytes)
{
    return msgpack_zone_malloc(&d->msg->doc.zone, bytes ? bytes : 1);
}

static pd_status_t pd_proto_dec_missing(pd_proto_dec_t *d, const char *key)
{
    return pd_proto_dec_fail(d, PD_ERR_PROTO, "missing field '%s'", key);
}

/* An unsigned integer in [min, max]; above max gives over_status (PD_ERR_LIMIT for counts,
 * PD_ERR_PROTO for values). */
static pd_status_t pd_proto_dec_u64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                    bool required, uint64_t def, uint64_t min, uint64_t max,
                                    pd_status_t over_status, uint64_t *value_p)
{
    const msgpack_object *o = pd_mp_map_find(m, key);
    if (o == NULL) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *value_p = def;
        return PD_OK;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be an unsigned integer", key);
    if (o->via.u64 < min)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' is below %llu", key,
                                 (unsigned long long)min);
    if (o->via.u64 > max)
        return pd_proto_dec_fail(d, over_status, "field '%s' is above %llu", key,
                                 (unsigned long long)max);
    *value_p = o->via.u64;
    return PD_OK;
}

static pd_status_t pd_proto_dec_u32(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                    bool required, uint32_t def, uint32_t min, uint32_t max,
                                    pd_status_t over_status, uint32_t *value_p)
{
    uint64_t v;
    pd_status_t s = pd_proto_dec_u64(d, m, key, required, def, min, max, over_status, &v);
    if (s == PD_OK)
        *value_p = (uint32_t)v;
    return s;
}

static pd_status_t pd_proto_dec_f64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                    bool required, double def, double min, double max,
                                    double *value_p)
{
    double v;
    pd_status_t s = pd_mp_get_f64(m, key, &v);
    if (s == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *value_p = def;
        return PD_OK;
    }
    if (s != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a number", key);
    if (!isfinite(v) || v < min || v > max)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be in [%g, %g]", key, min, max);
    *value_p = v;
    return PD_OK;
}

static pd_status_t pd_proto_dec_bool(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool def, bool *value_p)
{
    pd_status_t s = pd_mp_get_bool(m, key, value_p);
    if (s == PD_ERR_NOT_FOUND) {
        *value_p = def;
        return PD_OK;
    }
    if (s != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a boolean", key);
    return PD_OK;
}

/* A string into a fixed buffer of cap bytes (NUL included); absent and optional: "". */
static pd_status_t pd_proto_dec_strbuf(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                       bool required, char *dst, size_t cap)
{
    const char *s;
    size_t n;
    pd_status_t st = pd_mp_get_str(m, key, &s, &n);
    if (st == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        dst[0] = '\0';
        return PD_OK;
    }
    if (st != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a string", key);
    if (n + 1 > cap)
        return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' is longer than %zu bytes", key,
                                 cap - 1);
    if (memchr(s, '\0', n) != NULL)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' holds a NUL byte", key);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return PD_OK;
}

/* A string copied into the zone with a NUL after it (it may hold NUL bytes itself). */
static pd_status_t pd_proto_dec_strz(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool required, size_t max_bytes, const char **str_p,
                                     size_t *len_p)
{
    const char *s;
    size_t n;
    pd_status_t st = pd_mp_get_str(m, key, &s, &n);
    if (st == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *str_p = NULL;
        if (len_p != NULL)
            *len_p = 0;
        return PD_OK;
    }
    if (st != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a string", key);
    if (n > max_bytes)
        return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' is longer than %zu bytes", key,
                                 max_bytes);
    char *dst = pd_proto_dec_alloc(d, n + 1);
    if (dst == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    memcpy(dst, s, n);
    dst[n] = '\0';
    *str_p = dst;
    if (len_p != NULL)
        *len_p = n;
    return PD_OK;
}

static pd_status_t pd_proto_dec_bin(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                    bool required, size_t max_bytes, const void **data_p,
                                    size_t *len_p)
{
    pd_status_t st = pd_mp_get_bin(m, key, data_p, len_p);
    if (st == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *data_p = NULL;
        *len_p = 0;
        return PD_OK;
    }
    if (st != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be bin", key);
    if (*len_p > max_bytes)
        return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' is longer than %zu bytes", key,
                                 max_bytes);
    /* msgpack-c's objects point into the frame for str and bin; the message must outlive
     * the frame (callers close the ZeroMQ message first), so the bytes move to the zone. */
    void *copy = pd_proto_dec_alloc(d, *len_p);
    if (copy == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    if (*len_p > 0)
        memcpy(copy, *data_p, *len_p);
    *data_p = copy;
    return PD_OK;
}

static pd_status_t pd_proto_dec_array(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                      bool required, uint32_t max_n,
                                      const msgpack_object_array **array_p)
{
    pd_status_t st = pd_mp_get_array(m, key, array_p);
    if (st == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *array_p = NULL;
        return PD_OK;
    }
    if (st != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be an array", key);
    if ((*array_p)->size > max_n)
        return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' has more than %u elements", key,
                                 max_n);
    return PD_OK;
}

/* Token ids: integers in [0, INT32_MAX]. */
static pd_status_t pd_proto_dec_i32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool required, uint32_t max_n, const int32_t **ids_p,
                                     uint32_t *n_p)
{
    const msgpack_object_array *a;
    pd_status_t st = pd_proto_dec_array(d, m, key, required, max_n, &a);
    if (st != PD_OK)
        return st;
    *ids_p = NULL;
    *n_p = 0;
    if (a == NULL || a->size == 0)
        return PD_OK;
    int32_t *ids = pd_proto_dec_alloc(d, a->size * sizeof(*ids));
    if (ids == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        int64_t v;
        if (pd_mp_obj_i64(&a->ptr[i], 0, PD_PROTO_MAX_TOKEN_ID, &v) != PD_OK)
            return pd_proto_dec_fail(d, PD_ERR_PROTO,
                                     "field '%s'[%u] must be a token id in [0, %d]", key, i,
                                     PD_PROTO_MAX_TOKEN_ID);
        ids[i] = (int32_t)v;
    }
    *ids_p = ids;
    *n_p = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_u64s_obj(pd_proto_dec_t *d, const msgpack_object_array *a,
                                         const char *key, const uint64_t **v_p, uint32_t *n_p)
{
    *v_p = NULL;
    *n_p = 0;
    if (a == NULL || a->size == 0)
        return PD_OK;
    uint64_t *v = pd_proto_dec_alloc(d, a->size * sizeof(*v));
    if (v == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        if (a->ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s'[%u] must be an unsigned integer",
                                     key, i);
        v[i] = a->ptr[i].via.u64;
    }
    *v_p = v;
    *n_p = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_u64s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool required, uint32_t max_n, const uint64_t **v_p,
                                     uint32_t *n_p)
{
    const msgpack_object_array *a;
    pd_status_t st = pd_proto_dec_array(d, m, key, required, max_n, &a);
    if (st != PD_OK)
        return st;
    return pd_proto_dec_u64s_obj(d, a, key, v_p, n_p);
}

static pd_status_t pd_proto_dec_u32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool required, uint32_t max_n, const uint32_t **v_p,
                                     uint32_t *n_p)
{
    const msgpack_object_array *a;
    pd_status_t st = pd_proto_dec_array(d, m, key, required, max_n, &a);
    if (st != PD_OK)
        return st;
    *v_p = NULL;
    *n_p = 0;
    if (a == NULL || a->size == 0)
        return PD_OK;
    uint32_t *v = pd_proto_dec_alloc(d, a->size * sizeof(*v));
    if (v == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        if (a->ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a->ptr[i].via.u64 > UINT32_MAX)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s'[%u] must be a u32", key, i);
        v[i] = (uint32_t)a->ptr[i].via.u64;
    }
    *v_p = v;
    *n_p = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_map(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                    bool required, const msgpack_object **obj_p)
{
    pd_status_t st = pd_mp_get_map(m, key, obj_p);
    if (st == PD_ERR_NOT_FOUND) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *obj_p = NULL;
        return PD_OK;
    }
    if (st != PD_OK)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a map", key);
    return PD_OK;
}

typedef int (*pd_proto_lookup_fn)(const msgpack_object *obj);

static pd_status_t pd_proto_dec_enum(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool required, int def, pd_proto_lookup_fn lookup,
                                     int *value_p)
{
    const msgpack_object *o = pd_mp_map_find(m, key);
    if (o == NULL) {
        if (required)
            return pd_proto_dec_missing(d, key);
        *value_p = def;
        return PD_OK;
    }
    int v = lookup(o);
    if (v < 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' has an unknown value", key);
    *value_p = v;
    return PD_OK;
}

/* A pd_status_t by name; negative_only for error codes. Unknown names read as
 * PD_ERR_INTERNAL, so that a newer peer's code still ends the request. */
static pd_status_t pd_proto_dec_code(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                     bool negative_only, pd_status_t *code_p)
{
    char name[48];
    pd_status_t st = pd_proto_dec_strbuf(d, m, key, REQ, name, sizeof(name));
    if (st != PD_OK)
        return st;
    pd_status_t code = pd_status_from_name(name);
    if (negative_only && code >= 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must name an error", key);
    *code_p = code;
    return PD_OK;
}

static pd_status_t pd_proto_dec_sampling(pd_proto_dec_t *d, const msgpack_object *m,
                                         pd_proto_sampling_t *s)
{
    pd_status_t st;
    if ((st = pd_proto_dec_f64(d, m, "temperature", OPT, 1.0, 0.0, 100.0, &s->temperature)) !=
        PD_OK)
        return st;
    if ((st = pd_proto_dec_f64(d, m, "top_p", OPT, 1.0, 0.0, 1.0, &s->top_p)) != PD_OK)
        return st;
    if (s->top_p <= 0.0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'top_p' must be in (0, 1]");
    return pd_proto_dec_u64(d, m, "seed", OPT, 0, 0, UINT64_MAX, PD_ERR_PROTO, &s->seed);
}

static pd_status_t pd_proto_dec_ttl(pd_proto_dec_t *d, const msgpack_object *o, uint32_t *ttl_p)
{
    if (pd_mp_str_eq(o, "5m"))
        *ttl_p = PD_PROTO_TTL_5M_S;
    else if (pd_mp_str_eq(o, "1h"))
        *ttl_p = PD_PROTO_TTL_1H_S;
    else
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'ttl' must be \"5m\" or \"1h\"");
    return PD_OK;
}

static pd_status_t pd_proto_dec_cache(pd_proto_dec_t *d, const msgpack_object *root,
                                      pd_proto_cache_t *c)
{
    const msgpack_object *m;
    const msgpack_object_array *bps;
    pd_status_t st;
    int mode = 0;

    memset(c, 0, sizeof(*c));
    if ((st = pd_proto_dec_map(d, root, "cache", OPT, &m)) != PD_OK || m == NULL)
        return st;
    if ((st = pd_proto_dec_enum(d, m, "mode", OPT, PD_PROTO_CACHE_AUTO, pd_proto_mode_lookup,
                                &mode)) != PD_OK)
        return st;
    c->mode = (pd_proto_cache_mode_t)mode;
    if ((st = pd_proto_dec_array(d, m, "breakpoints", OPT, PD_PROTO_MAX_BREAKPOINTS, &bps)) !=
        PD_OK)
        return st;
    if (c->mode != PD_PROTO_CACHE_EXPLICIT) {
        if (bps != NULL && bps->size > 0)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "breakpoints need cache mode explicit");
        return PD_OK;
    }
    if (bps == NULL || bps->size == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache mode explicit needs breakpoints");
    for (uint32_t i = 0; i < bps->size; i++) {
        const msgpack_object *bp = &bps->ptr[i];
        pd_proto_breakpoint_t *out = &c->breakpoints[i];
        if (bp->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "breakpoints[%u] must be a map", i);
        if ((st = pd_proto_dec_u32(d, bp, "offset", REQ, 0, 1, PD_PROTO_MAX_PROMPT_TOKENS,
                                   PD_ERR_PROTO, &out->offset_tokens)) != PD_OK)
            return st;
        const msgpack_object *ttl = pd_mp_map_find(bp, "ttl");
        out->ttl_s = PD_PROTO_TTL_5M_S;
        if (ttl != NULL && (st = pd_proto_dec_ttl(d, ttl, &out->ttl_s)) != PD_OK)
            return st;
        if (i > 0 && out->offset_tokens <= c->breakpoints[i - 1].offset_tokens)
            return pd_proto_dec_fail(d, PD_ERR_PROTO,
                                     "breakpoint offsets must be strictly increasing");
    }
    c->n_breakpoints = bps->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_plan(pd_proto_dec_t *d, const msgpack_object *root,
                                     pd_proto_cache_plan_t *p)
{
    const msgpack_object *m;
    const msgpack_object_array *w;
    pd_status_t st;

    memset(p, 0, sizeof(*p));
    if ((st = pd_proto_dec_map(d, root, "cache", REQ, &m)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_u32(d, m, "read_blocks", REQ, 0, 0, PD_PROTO_MAX_BLOCKS, PD_ERR_LIMIT,
                               &p->read_blocks)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_array(d, m, "write", OPT, PD_PROTO_MAX_BREAKPOINTS, &w)) != PD_OK)
        return st;
    for (uint32_t i = 0; w != NULL && i < w->size; i++) {
        const msgpack_object *e = &w->ptr[i];
        if (e->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache.write[%u] must be a map", i);
        if ((st = pd_proto_dec_u32(d, e, "n_blocks", REQ, 0, 1, PD_PROTO_MAX_BLOCKS, PD_ERR_LIMIT,
                                   &p->writes[i].n_blocks)) != PD_OK)
            return st;
        const msgpack_object *ttl = pd_mp_map_find(e, "ttl");
        if (ttl == NULL)
            return pd_proto_dec_missing(d, "ttl");
        if ((st = pd_proto_dec_ttl(d, ttl, &p->writes[i].ttl_s)) != PD_OK)
            return st;
        p->n_writes++;
    }
    return PD_OK;
}

static pd_status_t pd_proto_dec_generate(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_generate_t *g = &d->msg->u.generate;
    pd_status_t st;

    if ((st = pd_proto_dec_strbuf(d, m, "id", OPT, g->id, sizeof(g->id))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_strz(d, m, "prompt", OPT, PD_PROTO_MAX_PROMPT_BYTES, &g->prompt,
                                &g->prompt_bytes)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", OPT, PD_PROTO_MAX_PROMPT_TOKENS, &g->tokens,
                                &g->n_tokens)) != PD_OK)
        return st;
    if ((g->prompt == NULL) == (pd_mp_map_find(m, "tokens") == NULL))
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "exactly one of 'prompt' or 'tokens'");
    if (g->prompt == NULL && g->n_tokens == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'tokens' is empty");
    if (g->prompt != NULL && g->prompt_bytes == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'prompt' is empty");
    if ((st = pd_proto_dec_u32(d, m, "max_tokens", OPT, 64, 1, PD_PROTO_MAX_NEW_TOKENS,
                               PD_ERR_LIMIT, &g->max_tokens)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_sampling(d, m, &g->sampling)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_i32s(d, m, "stop", OPT, PD_PROTO_MAX_STOP, &g->stop, &g->n_stop)) !=
        PD_OK)
        return st;
    if ((st = pd_proto_dec_strbuf(d, m, "tenant", OPT, g->tenant, sizeof(g->tenant))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_cache(d, m, &g->cache)) != PD_OK)
        return st;
    return pd_proto_dec_bool(d, m, "stream", true, &g->stream);
}

static pd_status_t pd_proto_dec_usage(pd_proto_dec_t *d, const msgpack_object *m,
                                      pd_proto_usage_t *u)
{
    const msgpack_object *o;
    pd_status_t st;
    if ((st = pd_proto_dec_map(d, m, "usage", REQ, &o)) != PD_OK)
        return st;
    const uint32_t cap = PD_PROTO_MAX_PROMPT_TOKENS + PD_PROTO_MAX_NEW_TOKENS;
    if ((st = pd_proto_dec_u32(d, o, "input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "cache_creation_input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->cache_creation_input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "cache_read_input_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->cache_read_input_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, o, "output_tokens", REQ, 0, 0, cap, PD_ERR_PROTO,
                               &u->output_tokens)) != PD_OK)
        return st;
    return PD_OK;
}

static pd_status_t pd_proto_dec_timings(pd_proto_dec_t *d, const msgpack_object *m,
                                        pd_proto_timings_t *t)
{
    const msgpack_object *o;
    pd_status_t st;
    const double max = 1e9;
    if ((st = pd_proto_dec_map(d, m, "timings", REQ, &o)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_f64(d, o, "queue_ms", OPT, 0, 0, max, &t->queue_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "prefill_ms", OPT, 0, 0, max, &t->prefill_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "transfer_ms", OPT, 0, 0, max, &t->transfer_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "ttft_ms", OPT, 0, 0, max, &t->ttft_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "tpot_ms", OPT, 0, 0, max, &t->tpot_ms)) != PD_OK ||
        (st = pd_proto_dec_f64(d, o, "total_ms", OPT, 0, 0, max, &t->total_ms)) != PD_OK)
        return st;
    return PD_OK;
}

static pd_status_t pd_proto_dec_done(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_done_t *x = &d->msg->u.done;
    const msgpack_object *w;
    pd_status_t st;
    int fr = 0;

    if ((st = pd_proto_dec_strbuf(d, m, "id", REQ, x->id, sizeof(x->id))) != PD_OK)
        return st;
    if ((st = pd_proto_dec_enum(d, m, "finish_reason", REQ, 0, pd_proto_finish_lookup, &fr)) !=
        PD_OK)
        return st;
    x->finish_reason = (pd_proto_finish_t)fr;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", REQ, PD_PROTO_MAX_NEW_TOKENS, &x->tokens,
                                &x->n_tokens)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_usage(d, m, &x->usage)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_timings(d, m, &x->timings)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_map(d, m, "workers", OPT, &w)) != PD_OK)
        return st;
    x->prefill_worker[0] = x->decode_worker[0] = '\0';
    if (w != NULL) {
        if ((st = pd_proto_dec_strbuf(d, w, "prefill", OPT, x->prefill_worker,
                                      sizeof(x->prefill_worker))) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, w, "decode", OPT, x->decode_worker,
                                      sizeof(x->decode_worker))) != PD_OK)
            return st;
    }
    return PD_OK;
}

static pd_status_t pd_proto_dec_status_reply(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_status_reply_t *x = &d->msg->u.status_reply;
    const msgpack_object_array *a;
    pd_status_t st;

    if ((st = pd_proto_dec_array(d, m, "workers", REQ, PD_PROTO_MAX_WORKERS, &a)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_u64(d, m, "directory_blocks", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                               &x->directory_blocks)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "queue_depth", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->queue_depth)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "requests_in_flight", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->requests_in_flight)) != PD_OK)
        return st;
    x->workers = NULL;
    x->n_workers = 0;
    if (a->size == 0)
        return PD_OK;
    pd_proto_worker_info_t *ws = pd_proto_dec_alloc(d, a->size * sizeof(*ws));
    if (ws == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    memset(ws, 0, a->size * sizeof(*ws));
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *o = &a->ptr[i];
        const msgpack_object *load;
        int role = 0;
        if (o->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "workers[%u] must be a map", i);
        if ((st = pd_proto_dec_strbuf(d, o, "id", REQ, ws[i].id, sizeof(ws[i].id))) != PD_OK ||
            (st = pd_proto_dec_enum(d, o, "role", REQ, 0, pd_proto_role_lookup, &role)) != PD_OK ||
            (st = pd_proto_dec_u64(d, o, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &ws[i].epoch)) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, o, "state", REQ, ws[i].state, sizeof(ws[i].state))) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, o, "n_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].n_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, o, "free_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].free_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, o, "directory_blocks", OPT, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].directory_blocks)) != PD_OK ||
            (st = pd_proto_dec_map(d, o, "load", REQ, &load)) != PD_OK)
            return st;
        ws[i].role = (pd_proto_role_t)role;
        if ((st = pd_proto_dec_u32(d, load, "running", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].running)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "queued", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &ws[i].queued)) != PD_OK)
            return st;
    }
    x->workers = ws;
    x->n_workers = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_client(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_msg_t *msg = d->msg;
    pd_status_t st;

    switch (msg->type) {
    case PD_PROTO_TYPE_GENERATE:
        return pd_proto_dec_generate(d, m);
    case PD_PROTO_TYPE_STATUS:
        return PD_OK;
    case PD_PROTO_TYPE_CANCEL:
        return pd_proto_dec_strbuf(d, m, "id", REQ, msg->u.cancel.id, sizeof(msg->u.cancel.id));
    case PD_PROTO_TYPE_ACCEPTED:
        return pd_proto_dec_strbuf(d, m, "id", REQ, msg->u.accepted.id, sizeof(msg->u.accepted.id));
    case PD_PROTO_TYPE_TOKEN: {
        pd_proto_token_t *x = &msg->u.token;
        if ((st = pd_proto_dec_strbuf(d, m, "id", REQ, x->id, sizeof(x->id))) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "index", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS - 1,
                                   PD_ERR_PROTO, &x->index)) != PD_OK)
            return st;
        uint32_t tok;
        if ((st = pd_proto_dec_u32(d, m, "token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID, PD_ERR_PROTO,
                                   &tok)) != PD_OK)
            return st;
        x->token = (int32_t)tok;
        if ((st = pd_proto_dec_strz(d, m, "text", OPT, PD_PROTO_MAX_PIECE_BYTES, &x->text,
                                    &x->text_bytes)) != PD_OK)
            return st;
        if (x->text == NULL)
            x->text = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_DONE:
        return pd_proto_dec_done(d, m);
    case PD_PROTO_TYPE_ERROR: {
        pd_proto_error_t *x = &msg->u.error;
        if ((st = pd_proto_dec_strbuf(d, m, "id", OPT, x->id, sizeof(x->id))) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "code", true, &x->code)) != PD_OK ||
            (st = pd_proto_dec_strz(d, m, "message", OPT, PD_PROTO_MAX_MESSAGE_BYTES, &x->message,
                                    NULL)) != PD_OK)
            return st;
        if (x->message == NULL)
            x->message = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_STATUS_REPLY:
        return pd_proto_dec_status_reply(d, m);
    default:
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "unknown message type");
    }
}

static pd_status_t pd_proto_dec_register(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_register_t *x = &d->msg->u.reg;
    pd_status_t st;
    int role = 0;
    if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id, sizeof(x->worker_id))) !=
            PD_OK ||
        (st = pd_proto_dec_enum(d, m, "role", REQ, 0, pd_proto_role_lookup, &role)) != PD_OK ||
        (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->epoch)) !=
            PD_OK ||
        (st = pd_proto_dec_strbuf(d, m, "model_id", REQ, x->model_id, sizeof(x->model_id))) !=
            PD_OK ||
        (st = pd_proto_dec_u32(d, m, "block_tokens", REQ, 0, 1, PD_PROTO_MAX_BLOCK_TOKENS,
                               PD_ERR_PROTO, &x->block_tokens)) != PD_OK ||
        (st = pd_proto_dec_u32(d, m, "n_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                               &x->n_blocks)) != PD_OK ||
        (st = pd_proto_dec_bin(d, m, "xfer_desc", REQ, PD_PROTO_MAX_XFER_DESC_BYTES, &x->xfer_desc,
                               &x->xfer_desc_bytes)) != PD_OK ||
        (st = pd_proto_dec_strbuf(d, m, "events_endpoint", OPT, x->events_endpoint,
                                  sizeof(x->events_endpoint))) != PD_OK)
        return st;
    if (x->worker_id[0] == '\0')
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'worker_id' is empty");
    x->role = (pd_proto_role_t)role;
    return PD_OK;
}

/* tokens + block_hashes + sampling + stop + cache plan, shared by reserve and prefill. */
static pd_status_t pd_proto_dec_work(pd_proto_dec_t *d, const msgpack_object *m,
                                     const int32_t **tokens_p, uint32_t *n_tokens_p,
                                     const uint64_t **hashes_p, uint32_t *n_hashes_p,
                                     pd_proto_sampling_t *sampling, pd_proto_cache_plan_t *plan)
{
    const msgpack_object *s;
    pd_status_t st;
    if ((st = pd_proto_dec_i32s(d, m, "tokens", REQ, PD_PROTO_MAX_PROMPT_TOKENS, tokens_p,
                                n_tokens_p)) != PD_OK)
        return st;
    if (*n_tokens_p == 0)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'tokens' is empty");
    if ((st = pd_proto_dec_u64s(d, m, "block_hashes", REQ, PD_PROTO_MAX_BLOCKS, hashes_p,
                                n_hashes_p)) != PD_OK)
        return st;
    if (*n_hashes_p > *n_tokens_p)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "more block hashes than tokens");
    if ((st = pd_proto_dec_map(d, m, "sampling", REQ, &s)) != PD_OK ||
        (st = pd_proto_dec_sampling(d, s, sampling)) != PD_OK)
        return st;
    if ((st = pd_proto_dec_plan(d, m, plan)) != PD_OK)
        return st;
    if (plan->read_blocks > *n_hashes_p)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache.read_blocks beyond block_hashes");
    for (uint32_t i = 0; i < plan->n_writes; i++)
        if (plan->writes[i].n_blocks > *n_hashes_p)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "cache.write beyond block_hashes");
    return PD_OK;
}

static pd_status_t pd_proto_dec_worker(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_msg_t *msg = d->msg;
    pd_status_t st;
    const uint32_t max_in = PD_PROTO_MAX_PROMPT_TOKENS + PD_PROTO_MAX_NEW_TOKENS;

    switch (msg->type) {
    case PD_PROTO_TYPE_REGISTER:
        return pd_proto_dec_register(d, m);
    case PD_PROTO_TYPE_REGISTERED:
        return pd_proto_dec_u32(d, m, "heartbeat_ms", OPT, 1000, 1, 3600000, PD_ERR_PROTO,
                                &msg->u.registered.heartbeat_ms);
    case PD_PROTO_TYPE_HEARTBEAT: {
        pd_proto_heartbeat_t *x = &msg->u.heartbeat;
        const msgpack_object *load;
        if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id,
                                      sizeof(x->worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->epoch)) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "kv_seq", OPT, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->kv_seq)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "load", REQ, &load)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "running", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->running)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "queued", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->queued)) != PD_OK ||
            (st = pd_proto_dec_u32(d, load, "free_blocks", REQ, 0, 0, UINT32_MAX, PD_ERR_PROTO,
                                   &x->free_blocks)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_RESERVE: {
        pd_proto_reserve_t *x = &msg->u.reserve;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_work(d, m, &x->tokens, &x->n_tokens, &x->block_hashes,
                                    &x->n_block_hashes, &x->sampling, &x->cache)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "max_tokens", REQ, 0, 1, PD_PROTO_MAX_NEW_TOKENS,
                                   PD_ERR_LIMIT, &x->max_tokens)) != PD_OK ||
            (st = pd_proto_dec_i32s(d, m, "stop", OPT, PD_PROTO_MAX_STOP, &x->stop, &x->n_stop)) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, m, "deadline_ms", REQ, 0, 0, PD_PROTO_MAX_DEADLINE_MS,
                                   PD_ERR_PROTO, &x->deadline_ms)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_RESERVED: {
        pd_proto_reserved_t *x = &msg->u.reserved;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "status", false, &x->status)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_cached_blocks", OPT, 0, 0, PD_PROTO_MAX_BLOCKS,
                                   PD_ERR_LIMIT, &x->n_cached_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32s(d, m, "block_table", OPT, PD_PROTO_MAX_BLOCKS, &x->block_table,
                                    &x->n_block_table)) != PD_OK)
            return st;
        if (x->status == PD_OK && x->n_cached_blocks > x->n_block_table)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "n_cached_blocks beyond block_table");
        return PD_OK;
    }
    case PD_PROTO_TYPE_PREFILL: {
        pd_proto_prefill_t *x = &msg->u.prefill;
        const msgpack_object *dest;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_work(d, m, &x->tokens, &x->n_tokens, &x->block_hashes,
                                    &x->n_block_hashes, &x->sampling, &x->cache)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_skip_blocks", REQ, 0, 0, x->n_block_hashes,
                                   PD_ERR_PROTO, &x->n_skip_blocks)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "deadline_ms", REQ, 0, 0, PD_PROTO_MAX_DEADLINE_MS,
                                   PD_ERR_PROTO, &x->deadline_ms)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "dest", REQ, &dest)) != PD_OK ||
            (st = pd_proto_dec_strbuf(d, dest, "worker_id", REQ, x->dest_worker_id,
                                      sizeof(x->dest_worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, dest, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->dest_epoch)) != PD_OK ||
            (st = pd_proto_dec_bin(d, dest, "xfer_desc", REQ, PD_PROTO_MAX_XFER_DESC_BYTES,
                                   &x->dest_xfer_desc, &x->dest_xfer_desc_bytes)) != PD_OK ||
            (st = pd_proto_dec_u32s(d, dest, "block_table", REQ, PD_PROTO_MAX_BLOCKS,
                                    &x->dest_block_table, &x->n_dest_block_table)) != PD_OK)
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_PREFILLED: {
        pd_proto_prefilled_t *x = &msg->u.prefilled;
        uint32_t tok;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "first_token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID,
                                   PD_ERR_PROTO, &tok)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_computed_tokens", REQ, 0, 0, max_in, PD_ERR_PROTO,
                                   &x->n_computed_tokens)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "n_cached_tokens", REQ, 0, 0, max_in, PD_ERR_PROTO,
                                   &x->n_cached_tokens)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "cache_creation_input_tokens", OPT, 0, 0, max_in,
                                   PD_ERR_PROTO, &x->cache_creation_input_tokens)) != PD_OK ||
            (st = pd_proto_dec_f64(d, m, "prefill_ms", OPT, 0, 0, 1e9, &x->prefill_ms)) != PD_OK ||
            (st = pd_proto_dec_f64(d, m, "transfer_ms", OPT, 0, 0, 1e9, &x->transfer_ms)) != PD_OK)
            return st;
        x->first_token = (int32_t)tok;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_TOKEN: {
        pd_proto_worker_token_t *x = &msg->u.worker_token;
        uint32_t tok;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "index", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS - 1,
                                   PD_ERR_PROTO, &x->index)) != PD_OK ||
            (st = pd_proto_dec_u32(d, m, "token", REQ, 0, 0, PD_PROTO_MAX_TOKEN_ID, PD_ERR_PROTO,
                                   &tok)) != PD_OK)
            return st;
        x->token = (int32_t)tok;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_DONE: {
        pd_proto_worker_done_t *x = &msg->u.worker_done;
        const msgpack_object *usage, *timings;
        int fr = 0;
        if ((st = pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_enum(d, m, "finish_reason", REQ, 0, pd_proto_finish_lookup, &fr)) !=
                PD_OK ||
            (st = pd_proto_dec_u32(d, m, "output_tokens", REQ, 0, 0, PD_PROTO_MAX_NEW_TOKENS,
                                   PD_ERR_PROTO, &x->output_tokens)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "usage", OPT, &usage)) != PD_OK ||
            (st = pd_proto_dec_map(d, m, "timings", OPT, &timings)) != PD_OK)
            return st;
        x->finish_reason = (pd_proto_finish_t)fr;
        x->cache_read_input_tokens = x->cache_creation_input_tokens = 0;
        x->transfer_wait_ms = x->tpot_ms = 0;
        if (usage != NULL &&
            ((st = pd_proto_dec_u32(d, usage, "cache_read_input_tokens", OPT, 0, 0, max_in,
                                    PD_ERR_PROTO, &x->cache_read_input_tokens)) != PD_OK ||
             (st = pd_proto_dec_u32(d, usage, "cache_creation_input_tokens", OPT, 0, 0, max_in,
                                    PD_ERR_PROTO, &x->cache_creation_input_tokens)) != PD_OK))
            return st;
        if (timings != NULL &&
            ((st = pd_proto_dec_f64(d, timings, "transfer_wait_ms", OPT, 0, 0, 1e9,
                                    &x->transfer_wait_ms)) != PD_OK ||
             (st = pd_proto_dec_f64(d, timings, "tpot_ms", OPT, 0, 0, 1e9, &x->tpot_ms)) != PD_OK))
            return st;
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_ERROR: {
        pd_proto_worker_error_t *x = &msg->u.worker_error;
        if ((st = pd_proto_dec_u64(d, m, "req_id", OPT, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->req_id)) != PD_OK ||
            (st = pd_proto_dec_code(d, m, "code", true, &x->code)) != PD_OK ||
            (st = pd_proto_dec_strz(d, m, "message", OPT, PD_PROTO_MAX_MESSAGE_BYTES, &x->message,
                                    NULL)) != PD_OK)
            return st;
        if (x->message == NULL)
            x->message = "";
        return PD_OK;
    }
    case PD_PROTO_TYPE_WORKER_CANCEL:
        return pd_proto_dec_u64(d, m, "req_id", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO,
                                &msg->u.worker_cancel.req_id);
    case PD_PROTO_TYPE_RESYNC:
        return PD_OK;
    case PD_PROTO_TYPE_KV_SNAPSHOT: {
        pd_proto_kv_snapshot_t *x = &msg->u.kv_snapshot;
        const msgpack_object *by_tier;
        if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id,
                                      sizeof(x->worker_id))) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO,
                                   &x->epoch)) != PD_OK ||
            (st = pd_proto_dec_u64(d, m, "seq", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->seq)) !=
                PD_OK ||
            (st = pd_proto_dec_map(d, m, "hashes_by_tier", REQ, &by_tier)) != PD_OK)
            return st;
        for (int t = 0; t < PD_PROTO_N_TIERS; t++) {
            const char *name = pd_proto_tier_name((pd_proto_tier_t)t);
            if ((st = pd_proto_dec_u64s(d, by_tier, name, OPT, PD_PROTO_MAX_SNAPSHOT_HASHES,
                                        &x->hashes[t], &x->n_hashes[t])) != PD_OK)
                return st;
        }
        return PD_OK;
    }
    default:
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "unknown message type");
    }
}

static pd_status_t pd_proto_dec_kv_event(pd_proto_dec_t *d, const msgpack_object *m)
{
    pd_proto_kv_event_t *x = &d->msg->u.kv_event;
    const msgpack_object_array *a;
    pd_status_t st;

    if ((st = pd_proto_dec_strbuf(d, m, "worker_id", REQ, x->worker_id, sizeof(x->worker_id))) !=
            PD_OK ||
        (st = pd_proto_dec_u64(d, m, "epoch", REQ, 0, 0, UINT64_MAX, PD_ERR_PROTO, &x->epoch)) !=
            PD_OK ||
        (st = pd_proto_dec_u64(d, m, "seq", REQ, 0, 1, UINT64_MAX, PD_ERR_PROTO, &x->seq)) !=
            PD_OK ||
        (st = pd_proto_dec_array(d, m, "events", REQ, PD_PROTO_MAX_EVENTS, &a)) != PD_OK)
        return st;
    x->events = NULL;
    x->n_events = 0;
    if (a->size == 0)
        return PD_OK;
    pd_proto_kv_event_item_t *items = pd_proto_dec_alloc(d, a->size * sizeof(*items));
    if (items == NULL)
        return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *e = &a->ptr[i];
        int kind = 0, tier = 0;
        if (e->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "events[%u] must be a map", i);
        if ((st = pd_proto_dec_enum(d, e, "kind", REQ, 0, pd_proto_kind_lookup, &kind)) != PD_OK ||
            (st = pd_proto_dec_enum(d, e, "tier", REQ, 0, pd_proto_tier_lookup, &tier)) != PD_OK ||
            (st = pd_proto_dec_u64s(d, e, "hashes", REQ, PD_PROTO_MAX_EVENT_HASHES,
                                    &items[i].hashes, &items[i].n_hashes)) != PD_OK)
            return st;
        items[i].kind = (pd_proto_event_kind_t)kind;
        items[i].tier = (pd_proto_tier_t)tier;
    }
    x->events = items;
    x->n_events = a->size;
    return PD_OK;
}

/* Best effort: the request id of a frame that fails later, for the error reply. */
static void pd_proto_dec_fault_ids(pd_proto_fault_t *fault, const msgpack_object *root)
{
    const char *s;
    size_t n;
    uint64_t v;
    if (pd_mp_get_str(root, "id", &s, &n) == PD_OK && n < sizeof(fault->id) &&
        memchr(s, '\0', n) == NULL) {
        memcpy(fault->id, s, n);
        fault->id[n] = '\0';
    }
    if (pd_mp_get_u64(root, "req_id", &v) == PD_OK)
        fault->req_id = v;
}

pd_status_t pd_proto_decode(pd_proto_msg_t *msg, pd_proto_chan_t chan, const void *buf, size_t len,
                            pd_proto_fault_t *fault)
{
    pd_proto_dec_t d = {.msg = msg, .fault = fault};
    const pd_mp_limits_t *limits =
        (chan == PD_PROTO_CHAN_CLIENT) ? &pd_proto_limits_client : &pd_proto_limits_worker;
    const msgpack_object *root;
    const char *type;
    size_t type_len;
    uint64_t version;
    pd_status_t st;

    memset(msg, 0, sizeof(*msg));
    if (fault != NULL)
        memset(fault, 0, sizeof(*fault));
    st = pd_mp_doc_parse(&msg->doc, buf, len, limits);
    if (st != PD_OK)
        return pd_proto_dec_fail(&d, st,
                                 st == PD_ERR_LIMIT ? "frame exceeds a size limit"
                                                    : "frame is not valid msgpack");
    root = &msg->doc.root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "message must be a map");
        goto err_doc;
    }
    if (fault != NULL)
        pd_proto_dec_fault_ids(fault, root);
    if (pd_mp_get_u64(root, "v", &version) != PD_OK) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "missing or invalid field 'v'");
        goto err_doc;
    }
    if (version != PD_PROTO_VERSION) {
        st = pd_proto_dec_fail(&d, PD_ERR_UNSUPPORTED, "protocol version %llu, expected %d",
                               (unsigned long long)version, PD_PROTO_VERSION);
        goto err_doc;
    }
    if (pd_mp_get_str(root, "type", &type, &type_len) != PD_OK) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "missing or invalid field 'type'");
        goto err_doc;
    }
    msg->type = pd_proto_type_lookup(chan, type, type_len);
    if (msg->type == PD_PROTO_TYPE_NONE) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "unknown message type '%.*s'",
                               (int)(type_len < 32 ? type_len : 32), type);
        goto err_doc;
    }
    switch (chan) {
    case PD_PROTO_CHAN_CLIENT:
        st = pd_proto_dec_client(&d, root);
        break;
    case PD_PROTO_CHAN_WORKER:
        st = pd_proto_dec_worker(&d, root);
        break;
    case PD_PROTO_CHAN_EVENTS:
        st = pd_proto_dec_kv_event(&d, root);
        break;
    default:
        st = pd_proto_dec_fail(&d, PD_ERR_INVALID_PARAM, "unknown channel");
        break;
    }
    if (st != PD_OK)
        goto err_doc;
    return PD_OK;

err_doc:
    pd_mp_doc_cleanup(&msg->doc);
    msg->type = PD_PROTO_TYPE_NONE;
    return st;
}

void pd_proto_msg_cleanup(pd_proto_msg_t *msg)
{
    if (msg == NULL)
        return;
    pd_mp_doc_cleanup(&msg->doc);
    msg->type = PD_PROTO_TYPE_NONE;
}
