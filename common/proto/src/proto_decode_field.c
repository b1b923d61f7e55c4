/* The decoder's typed field readers: each checks presence, type, range and length, and
 * copies what it returns into the message's zone. */
#include "proto_dec_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

pd_status_t pd_proto_dec_fail(pd_proto_dec_t *d, pd_status_t status, const char *fmt, ...)
{
    if (d->fault != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->fault->reason, sizeof(d->fault->reason), fmt, ap);
        va_end(ap);
    }
    return status;
}

void *pd_proto_dec_alloc(pd_proto_dec_t *d, size_t bytes)
{
    return msgpack_zone_malloc(&d->msg->doc.zone, bytes ? bytes : 1);
}

pd_status_t pd_proto_dec_missing(pd_proto_dec_t *d, const char *key)
{
    return pd_proto_dec_fail(d, PD_ERR_PROTO, "missing field '%s'", key);
}

/* An unsigned integer in [min, max]; above max gives over_status (PD_ERR_LIMIT for counts,
 * PD_ERR_PROTO for values). */
pd_status_t pd_proto_dec_u64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
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

pd_status_t pd_proto_dec_u32(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, uint32_t def, uint32_t min, uint32_t max,
                             pd_status_t over_status, uint32_t *value_p)
{
    uint64_t v = 0;
    pd_status_t s = pd_proto_dec_u64(d, m, key, required, def, min, max, over_status, &v);
    if (s == PD_OK)
        *value_p = (uint32_t)v;
    return s;
}

pd_status_t pd_proto_dec_f64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, double def, double min, double max, double *value_p)
{
    double v = 0;
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

pd_status_t pd_proto_dec_bool(pd_proto_dec_t *d, const msgpack_object *m, const char *key, bool def,
                              bool *value_p)
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
pd_status_t pd_proto_dec_strbuf(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
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
pd_status_t pd_proto_dec_strz(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, size_t max_bytes, const char **str_p, size_t *len_p)
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

pd_status_t pd_proto_dec_bin(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, size_t max_bytes, const void **data_p, size_t *len_p)
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

pd_status_t pd_proto_dec_array(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                               bool required, uint32_t max_n, const msgpack_object_array **array_p)
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
pd_status_t pd_proto_dec_i32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const int32_t **ids_p, uint32_t *n_p)
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

pd_status_t pd_proto_dec_u64s_obj(pd_proto_dec_t *d, const msgpack_object_array *a, const char *key,
                                  const uint64_t **v_p, uint32_t *n_p)
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

pd_status_t pd_proto_dec_u64s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const uint64_t **v_p, uint32_t *n_p)
{
    const msgpack_object_array *a;
    pd_status_t st = pd_proto_dec_array(d, m, key, required, max_n, &a);
    if (st != PD_OK)
        return st;
    return pd_proto_dec_u64s_obj(d, a, key, v_p, n_p);
}

pd_status_t pd_proto_dec_u32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const uint32_t **v_p, uint32_t *n_p)
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

pd_status_t pd_proto_dec_map(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
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

pd_status_t pd_proto_dec_enum(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, int def, pd_proto_lookup_fn lookup, int *value_p)
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
pd_status_t pd_proto_dec_code(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
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

pd_status_t pd_proto_dec_sampling(pd_proto_dec_t *d, const msgpack_object *m,
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

pd_status_t pd_proto_dec_ttl(pd_proto_dec_t *d, const msgpack_object *o, uint32_t *ttl_p)
{
    if (pd_mp_str_eq(o, "5m"))
        *ttl_p = PD_PROTO_TTL_5M_S;
    else if (pd_mp_str_eq(o, "1h"))
        *ttl_p = PD_PROTO_TTL_1H_S;
    else
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field 'ttl' must be \"5m\" or \"1h\"");
    return PD_OK;
}

pd_status_t pd_proto_dec_cache(pd_proto_dec_t *d, const msgpack_object *root, pd_proto_cache_t *c)
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

pd_status_t pd_proto_dec_plan(pd_proto_dec_t *d, const msgpack_object *root,
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
