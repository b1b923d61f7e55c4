/* The codec: one walk over a message's schema (proto_schema.c) checks and encodes it,
 * another decodes it. Encoding checks the whole message before writing a byte, against the
 * limits decoding enforces, so a sender never produces a frame its receiver rejects.
 * Decoding checks the frame against the channel's limits before msgpack allocates anything
 * (pd_mp_doc_parse), then every field's type, range and length; what it returns lives in
 * the doc's zone, whose size the frame limit bounds. */
#include "proto_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The member of type `type` at byte offset off of a struct. */
#define AT(base, off, type)  ((type *)(void *)((char *)(base) + (off)))
#define CAT(base, off, type) ((const type *)(const void *)((const char *)(base) + (off)))

static bool pd_proto_is_array(pd_proto_kind_t k)
{
    return k == PD_PROTO_K_TOKENS || k == PD_PROTO_K_U64S || k == PD_PROTO_K_U32S ||
           k == PD_PROTO_K_MAPS;
}

/* The length of a TEXT or BIN, or the count of an array. */
static size_t pd_proto_len(const pd_proto_field_t *f, const void *base)
{
    if (!f->has_n)
        return 0;
    if (pd_proto_is_array(f->kind))
        return *CAT(base, f->n_off, uint32_t);
    return *CAT(base, f->n_off, size_t);
}

/* The pointer a TEXT, BIN or array field holds (inline MAPS arrays are their own
 * storage); NULL for the other kinds, which hold no pointer. */
static const void *pd_proto_ptr(const pd_proto_field_t *f, const void *base)
{
    if (f->kind == PD_PROTO_K_MAPS && !(f->flags & PD_PROTO_PTR))
        return CAT(base, f->off, char);
    if (f->kind == PD_PROTO_K_MAP)
        return (f->flags & PD_PROTO_PTR) ? *CAT(base, f->off, void *) : NULL;
    if (f->kind == PD_PROTO_K_TEXT || f->kind == PD_PROTO_K_BIN || pd_proto_is_array(f->kind))
        return *CAT(base, f->off, void *);
    return NULL;
}

static bool pd_proto_omitted(const pd_proto_field_t *f, const void *base)
{
    if (!(f->flags & PD_PROTO_OMIT))
        return false;
    /* Integers: 0 is not written, so that a field added later leaves older frames as
     * they were. */
    if (f->kind == PD_PROTO_K_U64)
        return *CAT(base, f->off, uint64_t) == 0;
    if (f->kind == PD_PROTO_K_U32)
        return *CAT(base, f->off, uint32_t) == 0;
    if (f->kind == PD_PROTO_K_F64)
        return *CAT(base, f->off, double) == 0.0;
    if (f->kind == PD_PROTO_K_BOOL)
        return !*CAT(base, f->off, bool);
    return pd_proto_ptr(f, base) == NULL;
}

/* ---- encoding ---- */

static pd_status_t pd_proto_enc_fields(pd_mp_writer_t *w, const pd_proto_schema_t *s,
                                       const void *base);

/* Keys written at this level of the map. */
static uint32_t pd_proto_n_keys(const pd_proto_schema_t *s, const void *base)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const pd_proto_field_t *f = &s->fields[i];
        if (f->kind == PD_PROTO_K_INLINE)
            n += pd_proto_n_keys(f->sub, CAT(base, f->off, char));
        else
            n += !pd_proto_omitted(f, base);
    }
    return n;
}

static pd_status_t pd_proto_enc_map(pd_mp_writer_t *w, const pd_proto_schema_t *s, const void *base)
{
    if (w != NULL)
        pd_mp_put_map(w, pd_proto_n_keys(s, base));
    return pd_proto_enc_fields(w, s, base);
}

/* Below min is a bad value; above max a size over its limit or a bad value. */
static pd_status_t pd_proto_enc_range(const pd_proto_field_t *f, uint64_t v)
{
    if (v < f->min)
        return PD_ERR_INVALID_PARAM;
    if (v > f->max)
        return (f->flags & PD_PROTO_LIMIT) ? PD_ERR_LIMIT : PD_ERR_INVALID_PARAM;
    return PD_OK;
}

/* Check one value against what the decoder accepts; with w, write it too. */
static pd_status_t pd_proto_enc_value(pd_mp_writer_t *w, const pd_proto_field_t *f,
                                      const void *base)
{
    const void *at = CAT(base, f->off, char), *p = pd_proto_ptr(f, base);
    size_t n = pd_proto_len(f, base);
    pd_status_t st = PD_OK;

    switch (f->kind) {
    case PD_PROTO_K_U64:
    case PD_PROTO_K_U32:
    case PD_PROTO_K_TOKEN: {
        uint64_t v = (f->kind == PD_PROTO_K_U64) ? *(const uint64_t *)at
                                                 : *(const uint32_t *)at; /* a token < 0: huge */
        if ((st = pd_proto_enc_range(f, v)) == PD_OK && w != NULL)
            pd_mp_put_u64(w, v);
        return st == PD_OK || f->kind != PD_PROTO_K_TOKEN ? st : PD_ERR_INVALID_PARAM;
    }
    case PD_PROTO_K_F64: {
        double v = *(const double *)at;
        if (!isfinite(v) || v < f->fmin || v > f->fmax ||
            ((f->flags & PD_PROTO_XMIN) && v == f->fmin))
            return PD_ERR_INVALID_PARAM;
        if (w != NULL)
            pd_mp_put_f64(w, v);
        return PD_OK;
    }
    case PD_PROTO_K_BOOL:
        if (w != NULL)
            pd_mp_put_bool(w, *(const bool *)at);
        return PD_OK;
    case PD_PROTO_K_STR:
    case PD_PROTO_K_TEXT:
    case PD_PROTO_K_BIN: {
        size_t max = (f->kind == PD_PROTO_K_STR) ? f->size - 1 : f->max;
        if (f->kind == PD_PROTO_K_STR)
            p = at;
        if (!f->has_n) /* a NUL-terminated string: its length, or max + 1 when longer */
            n = (p == NULL) ? 0 : strnlen(p, max + 1);
        if (p == NULL && n > 0)
            return PD_ERR_INVALID_PARAM;
        if (n > max || n < f->min)
            return n > max ? PD_ERR_LIMIT : PD_ERR_INVALID_PARAM;
        if (w != NULL && f->kind == PD_PROTO_K_BIN)
            pd_mp_put_bin(w, p ? p : "", n);
        else if (w != NULL)
            pd_mp_put_strn(w, p ? p : "", n);
        return PD_OK;
    }
    case PD_PROTO_K_ENUM:
    case PD_PROTO_K_TTL:
    case PD_PROTO_K_CODE: {
        int v = *(const int *)at;
        const char *name = NULL;
        if (f->kind == PD_PROTO_K_ENUM && (unsigned)v < f->n_names)
            name = f->names[v];
        else if (f->kind == PD_PROTO_K_TTL && (v == PD_PROTO_TTL_5M_S || v == PD_PROTO_TTL_1H_S))
            name = pd_proto_ttl_names[v == PD_PROTO_TTL_1H_S];
        else if (f->kind == PD_PROTO_K_CODE && !((f->flags & PD_PROTO_ERR) && v >= 0))
            name = pd_status_name(v);
        if (name == NULL)
            return PD_ERR_INVALID_PARAM;
        if (w != NULL)
            pd_mp_put_str(w, name);
        return PD_OK;
    }
    case PD_PROTO_K_TOKENS:
    case PD_PROTO_K_U64S:
    case PD_PROTO_K_U32S:
    case PD_PROTO_K_MAPS:
        if (n > f->max)
            return PD_ERR_LIMIT;
        if ((n > 0 && p == NULL) || n < f->min)
            return PD_ERR_INVALID_PARAM;
        if (w != NULL)
            pd_mp_put_array(w, (uint32_t)n);
        for (size_t i = 0; i < n && st == PD_OK; i++) {
            uint64_t v =
                (f->kind == PD_PROTO_K_U64S) ? ((const uint64_t *)p)[i] : ((const uint32_t *)p)[i];
            if (f->kind == PD_PROTO_K_MAPS)
                st = pd_proto_enc_map(w, f->sub, (const char *)p + i * f->sub->size);
            else if (f->kind == PD_PROTO_K_TOKENS && v > PD_PROTO_MAX_TOKEN_ID)
                st = PD_ERR_INVALID_PARAM;
            else if (w != NULL)
                pd_mp_put_u64(w, v);
        }
        return st;
    case PD_PROTO_K_MAP:
        if ((f->flags & PD_PROTO_PTR) && p == NULL)
            return PD_ERR_INVALID_PARAM; /* an optional one is PD_PROTO_OMIT as well */
        return pd_proto_enc_map(w, f->sub, (f->flags & PD_PROTO_PTR) ? p : at);
    case PD_PROTO_K_INLINE:
        break;
    }
    return PD_ERR_INTERNAL;
}

/* Check the fields of s (w NULL), or write them (every check passed). */
static pd_status_t pd_proto_enc_fields(pd_mp_writer_t *w, const pd_proto_schema_t *s,
                                       const void *base)
{
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const pd_proto_field_t *f = &s->fields[i];
        pd_status_t st = PD_OK;
        if (f->kind == PD_PROTO_K_INLINE) {
            st = pd_proto_enc_fields(w, f->sub, CAT(base, f->off, char));
        } else if (!pd_proto_omitted(f, base)) {
            if (w != NULL)
                pd_mp_put_str(w, f->key);
            st = pd_proto_enc_value(w, f, base);
        }
        if (st == PD_OK && w == NULL && f->after != NULL && f->after(base) != NULL)
            st = PD_ERR_INVALID_PARAM;
        if (st != PD_OK)
            return st;
    }
    return PD_OK;
}

pd_status_t pd_proto_encode(const pd_proto_msg_t *msg, pd_mp_writer_t *w)
{
    if ((int)msg->type <= PD_PROTO_TYPE_NONE || msg->type >= PD_PROTO_TYPE_COUNT_)
        return PD_ERR_INVALID_PARAM;
    const pd_proto_type_def_t *t = &pd_proto_type_defs[msg->type];
    const void *body = &msg->u;
    /* The whole message is checked before a byte is written. */
    pd_status_t st = t->schema ? pd_proto_enc_fields(NULL, t->schema, body) : PD_OK;
    if (st != PD_OK)
        return st;
    pd_mp_put_map(w, 2 + (t->schema ? pd_proto_n_keys(t->schema, body) : 0));
    pd_mp_put_str(w, "v");
    pd_mp_put_u64(w, PD_PROTO_VERSION);
    pd_mp_put_str(w, "type");
    pd_mp_put_str(w, t->name);
    return t->schema ? pd_proto_enc_fields(w, t->schema, body) : PD_OK;
}

/* ---- decoding ---- */

typedef struct pd_proto_dec {
    pd_proto_msg_t *msg;
    pd_proto_fault_t *fault;
} pd_proto_dec_t;

__attribute__((format(printf, 3, 4))) static pd_status_t
pd_proto_dec_fail(pd_proto_dec_t *d, pd_status_t status, const char *fmt, ...)
{
    if (d->fault != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->fault->reason, sizeof(d->fault->reason), fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Zeroed memory from the doc's zone, for what outlives the frame: msgpack-c's str and bin
 * objects point into the frame, which callers close before they use the message. */
static void *pd_proto_dec_alloc(pd_proto_dec_t *d, size_t n)
{
    void *p = msgpack_zone_malloc(&d->msg->doc.zone, n ? n : 1);
    return p ? memset(p, 0, n ? n : 1) : NULL;
}

static pd_status_t pd_proto_dec_fields(pd_proto_dec_t *d, const pd_proto_schema_t *s,
                                       const msgpack_object *m, void *base);

/* An absent field: its default. The message was zeroed before decoding, so only defaults
 * other than zero and NULL need writing. */
static pd_status_t pd_proto_dec_default(pd_proto_dec_t *d, const pd_proto_field_t *f, void *base)
{
    switch (f->kind) {
    case PD_PROTO_K_U64:
        *AT(base, f->off, uint64_t) = f->def;
        break;
    case PD_PROTO_K_U32:
    case PD_PROTO_K_TTL:
    case PD_PROTO_K_ENUM:
        *AT(base, f->off, uint32_t) = (uint32_t)f->def;
        break;
    case PD_PROTO_K_F64:
        *AT(base, f->off, double) = f->fdef;
        break;
    case PD_PROTO_K_BOOL:
        *AT(base, f->off, bool) = f->def != 0;
        break;
    case PD_PROTO_K_TEXT:
        if (!(f->flags & PD_PROTO_OMIT))
            *AT(base, f->off, const char *) = "";
        break;
    case PD_PROTO_K_MAP:
        if (f->flags & PD_PROTO_PTR)
            break; /* absent: NULL */
        return pd_proto_dec_fields(d, f->sub, NULL, AT(base, f->off, char));
    default:
        break;
    }
    return PD_OK;
}

/* A string's type and length against [min, max] (STR, TEXT, CODE). */
static pd_status_t pd_proto_dec_str(pd_proto_dec_t *d, const pd_proto_field_t *f,
                                    const msgpack_object *o, size_t max)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a string", f->key);
    if (o->via.str.size > max)
        return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' is longer than %zu bytes", f->key,
                                 max);
    /* Only TEXT may hold NUL bytes: the others become C strings. */
    if (f->kind != PD_PROTO_K_TEXT && memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' holds a NUL byte", f->key);
    if (o->via.str.size < f->min)
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' is empty", f->key);
    return PD_OK;
}

/* An array's elements: numbers into zone memory, maps into zone memory or the struct's
 * own array. */
static pd_status_t pd_proto_dec_array(pd_proto_dec_t *d, const pd_proto_field_t *f,
                                      const msgpack_object_array *a, void *base)
{
    size_t elem = (f->kind == PD_PROTO_K_MAPS)   ? f->sub->size
                  : (f->kind == PD_PROTO_K_U64S) ? 8
                                                 : 4;
    char *v = AT(base, f->off, char);
    pd_status_t st;
    if (f->kind != PD_PROTO_K_MAPS || (f->flags & PD_PROTO_PTR)) {
        if (a->size > 0 && (v = pd_proto_dec_alloc(d, a->size * elem)) == NULL)
            return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
        *AT(base, f->off, void *) = a->size > 0 ? v : NULL;
    }
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *e = &a->ptr[i];
        int64_t id;
        if (f->kind == PD_PROTO_K_MAPS) {
            if (e->type != MSGPACK_OBJECT_MAP)
                return pd_proto_dec_fail(d, PD_ERR_PROTO, "%s[%u] must be a map", f->key, i);
            if ((st = pd_proto_dec_fields(d, f->sub, e, v + i * elem)) != PD_OK)
                return st;
        } else if (f->kind == PD_PROTO_K_TOKENS) {
            if (pd_mp_obj_i64(e, 0, PD_PROTO_MAX_TOKEN_ID, &id) != PD_OK)
                return pd_proto_dec_fail(d, PD_ERR_PROTO,
                                         "field '%s'[%u] must be a token id in [0, %d]", f->key, i,
                                         PD_PROTO_MAX_TOKEN_ID);
            ((int32_t *)(void *)v)[i] = (int32_t)id;
        } else if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                   (elem == 4 && e->via.u64 > UINT32_MAX)) {
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s'[%u] must be an unsigned %s",
                                     f->key, i, elem == 4 ? "32-bit integer" : "integer");
        } else if (elem == 8) {
            ((uint64_t *)(void *)v)[i] = e->via.u64;
        } else {
            ((uint32_t *)(void *)v)[i] = (uint32_t)e->via.u64;
        }
    }
    *AT(base, f->n_off, uint32_t) = a->size;
    return PD_OK;
}

static pd_status_t pd_proto_dec_field(pd_proto_dec_t *d, const pd_proto_field_t *f,
                                      const msgpack_object *o, void *base)
{
    pd_status_t st;
    switch (f->kind) {
    case PD_PROTO_K_U64:
    case PD_PROTO_K_U32:
    case PD_PROTO_K_TOKEN: {
        uint64_t v = o->via.u64;
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be an unsigned integer",
                                     f->key);
        if (v < f->min || v > f->max)
            return pd_proto_dec_fail(
                d, v > f->max && (f->flags & PD_PROTO_LIMIT) ? PD_ERR_LIMIT : PD_ERR_PROTO,
                "field '%s' is %s %llu", f->key, v < f->min ? "below" : "above",
                (unsigned long long)(v < f->min ? f->min : f->max));
        if (f->kind == PD_PROTO_K_U64)
            *AT(base, f->off, uint64_t) = v;
        else /* a token id is at most INT32_MAX: the bits of an int32_t */
            *AT(base, f->off, uint32_t) = (uint32_t)v;
        return PD_OK;
    }
    case PD_PROTO_K_F64: {
        double x = (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)   ? (double)o->via.u64
                   : (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) ? (double)o->via.i64
                                                                  : o->via.f64;
        bool xmin = (f->flags & PD_PROTO_XMIN) != 0;
        if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64 &&
            o->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
            o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a number", f->key);
        if (!isfinite(x) || x < f->fmin || x > f->fmax || (xmin && x == f->fmin))
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be in %c%g, %g]", f->key,
                                     xmin ? '(' : '[', f->fmin, f->fmax);
        *AT(base, f->off, double) = x;
        return PD_OK;
    }
    case PD_PROTO_K_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a boolean", f->key);
        *AT(base, f->off, bool) = o->via.boolean;
        return PD_OK;
    case PD_PROTO_K_STR:
        if ((st = pd_proto_dec_str(d, f, o, f->size - 1)) != PD_OK)
            return st;
        memcpy(AT(base, f->off, char), o->via.str.ptr, o->via.str.size);
        AT(base, f->off, char)[o->via.str.size] = '\0';
        return PD_OK;
    case PD_PROTO_K_TEXT:
    case PD_PROTO_K_BIN: {
        bool text = (f->kind == PD_PROTO_K_TEXT);
        if (text && (st = pd_proto_dec_str(d, f, o, f->max)) != PD_OK)
            return st;
        if (!text && o->type != MSGPACK_OBJECT_BIN)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be bin", f->key);
        if (!text && o->via.bin.size > f->max)
            return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' is longer than %zu bytes", f->key,
                                     (size_t)f->max);
        size_t n = text ? o->via.str.size : o->via.bin.size;
        char *copy = pd_proto_dec_alloc(d, n + text); /* zeroed: a TEXT ends with a NUL */
        if (copy == NULL)
            return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
        memcpy(copy, text ? o->via.str.ptr : o->via.bin.ptr, n);
        *AT(base, f->off, const void *) = copy;
        if (f->has_n)
            *AT(base, f->n_off, size_t) = n;
        return PD_OK;
    }
    case PD_PROTO_K_ENUM:
    case PD_PROTO_K_TTL:
        for (uint32_t i = 0; i < (f->kind == PD_PROTO_K_TTL ? 2 : f->n_names); i++) {
            if (pd_mp_str_eq(o, f->kind == PD_PROTO_K_TTL ? pd_proto_ttl_names[i] : f->names[i])) {
                *AT(base, f->off, uint32_t) =
                    f->kind == PD_PROTO_K_TTL ? pd_proto_ttl_seconds[i] : i;
                return PD_OK;
            }
        }
        return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' has an unknown value", f->key);
    case PD_PROTO_K_CODE: {
        /* Unknown names read as PD_ERR_INTERNAL, so a newer peer's code still ends a request. */
        char name[48]; /* longer than any status name */
        if ((st = pd_proto_dec_str(d, f, o, sizeof(name) - 1)) != PD_OK)
            return st;
        memcpy(name, o->via.str.ptr, o->via.str.size);
        name[o->via.str.size] = '\0';
        pd_status_t code = pd_status_from_name(name);
        if ((f->flags & PD_PROTO_ERR) && code >= 0)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must name an error", f->key);
        *AT(base, f->off, pd_status_t) = code;
        return PD_OK;
    }
    case PD_PROTO_K_TOKENS:
    case PD_PROTO_K_U64S:
    case PD_PROTO_K_U32S:
    case PD_PROTO_K_MAPS:
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be an array", f->key);
        if (o->via.array.size > f->max)
            return pd_proto_dec_fail(d, PD_ERR_LIMIT, "field '%s' has more than %llu elements",
                                     f->key, (unsigned long long)f->max);
        if (o->via.array.size < f->min)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' is empty", f->key);
        return pd_proto_dec_array(d, f, &o->via.array, base);
    case PD_PROTO_K_MAP: {
        if (o->type != MSGPACK_OBJECT_MAP)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "field '%s' must be a map", f->key);
        char *into = AT(base, f->off, char);
        if (f->flags & PD_PROTO_PTR) {
            if ((into = pd_proto_dec_alloc(d, f->sub->size)) == NULL)
                return pd_proto_dec_fail(d, PD_ERR_NO_MEMORY, "out of memory");
            *AT(base, f->off, void *) = into;
        }
        return pd_proto_dec_fields(d, f->sub, o, into);
    }
    case PD_PROTO_K_INLINE:
        break;
    }
    return PD_ERR_INTERNAL;
}

/* The fields of s from the map m into base; m NULL (an absent optional map): defaults. */
static pd_status_t pd_proto_dec_fields(pd_proto_dec_t *d, const pd_proto_schema_t *s,
                                       const msgpack_object *m, void *base)
{
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const pd_proto_field_t *f = &s->fields[i];
        const msgpack_object *o = pd_mp_map_find(m, f->key);
        pd_status_t st;
        if (f->kind == PD_PROTO_K_INLINE)
            st = pd_proto_dec_fields(d, f->sub, m, AT(base, f->off, char));
        else if (o != NULL)
            st = pd_proto_dec_field(d, f, o, base);
        else if (m != NULL && (f->flags & PD_PROTO_REQ))
            st = pd_proto_dec_fail(d, PD_ERR_PROTO, "missing field '%s'", f->key);
        else
            st = pd_proto_dec_default(d, f, base);
        if (st != PD_OK)
            return st;
        const char *why = (f->after != NULL) ? f->after(base) : NULL;
        if (why != NULL)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "%s", why);
    }
    return PD_OK;
}

/* Every map's keys are strings, each once: the schema reads the first of two equal keys
 * while a strict reader of the same frame could take the last, and no pdkv message has an
 * integer key. Maps hold at most 32 keys (the channel limits), so pairs are compared. */
static pd_status_t pd_proto_dec_keys(pd_proto_dec_t *d, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type == MSGPACK_OBJECT_ARRAY || e->type == MSGPACK_OBJECT_MAP) {
                pd_status_t st = pd_proto_dec_keys(d, e);
                if (st != PD_OK)
                    return st;
            }
        }
        return PD_OK;
    }
    if (o->type != MSGPACK_OBJECT_MAP)
        return PD_OK;
    const msgpack_object_kv *kv = o->via.map.ptr;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        if (kv[i].key.type != MSGPACK_OBJECT_STR)
            return pd_proto_dec_fail(d, PD_ERR_PROTO, "map keys must be strings");
        const msgpack_object_str *k = &kv[i].key.via.str;
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object_str *p = &kv[j].key.via.str;
            /* An empty key has no bytes (ptr may be NULL): equal to another empty one. */
            if (p->size == k->size && (k->size == 0 || memcmp(p->ptr, k->ptr, k->size) == 0))
                return pd_proto_dec_fail(d, PD_ERR_PROTO, "key '%.*s' appears twice",
                                         (int)(k->size < 32 ? k->size : 32),
                                         k->size > 0 ? k->ptr : "");
        }
        pd_status_t st = pd_proto_dec_keys(d, &kv[i].val);
        if (st != PD_OK)
            return st;
    }
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
    const msgpack_object *root = &msg->doc.root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        st = pd_proto_dec_fail(&d, PD_ERR_PROTO, "message must be a map");
        goto err_doc;
    }
    if (fault != NULL)
        pd_proto_dec_fault_ids(fault, root);
    if ((st = pd_proto_dec_keys(&d, root)) != PD_OK)
        goto err_doc;
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
    const pd_proto_schema_t *schema = pd_proto_type_defs[msg->type].schema;
    if (schema != NULL && (st = pd_proto_dec_fields(&d, schema, root, &msg->u)) != PD_OK)
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
