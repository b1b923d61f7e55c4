#include "pd/mp.h"

#include <string.h>

const pd_mp_limits_t pd_mp_limits_default = {
    .max_frame_bytes = 16u << 20,
    .max_array_len = 1u << 20,
    .max_map_len = 1024,
    .max_str_bytes = 4u << 20,
    .max_bin_bytes = 4u << 20,
    .max_depth = 16,
    .max_objects = 4u << 20,
};

/* Big-endian reads of n bytes at p. */
static uint64_t pd_mp_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

pd_status_t pd_mp_check(const void *buf, size_t len, const pd_mp_limits_t *limits)
{
    const unsigned char *p = buf;
    const unsigned char *end = p + len;
    /* Stack of containers: how many objects each still expects. */
    uint64_t pending[64];
    uint32_t depth = 0;
    uint64_t n_objects = 0;
    uint32_t max_depth = limits->max_depth < 63 ? limits->max_depth : 63;

    if (buf == NULL || len == 0)
        return PD_ERR_PROTO;
    if (len > limits->max_frame_bytes)
        return PD_ERR_LIMIT;

    pending[0] = 1; /* the root object */
    for (;;) {
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (depth == 0 && pending[0] == 0)
            break;
        pending[depth]--;
        if (p >= end)
            return PD_ERR_PROTO;
        if (++n_objects > limits->max_objects)
            return PD_ERR_LIMIT;

        unsigned char t = *p++;
        size_t left = (size_t)(end - p);
        uint64_t n = 0;    /* payload bytes to skip, or element count */
        int container = 0; /* 1 array, 2 map */
        int hdr = 0;       /* length field bytes */
        int kind = 0;      /* 1 str, 2 bin */

        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            continue;
        } else if (t >= 0x80 && t <= 0x8f) {
            container = 2;
            n = t & 0x0f;
        } else if (t >= 0x90 && t <= 0x9f) {
            container = 1;
            n = t & 0x0f;
        } else if (t >= 0xa0 && t <= 0xbf) {
            kind = 1;
            n = t & 0x1f;
        } else {
            /* One line per type byte, as in the msgpack spec's table. */
            /* clang-format off */
            switch (t) {
            case 0xc4: kind = 2; hdr = 1; break;
            case 0xc5: kind = 2; hdr = 2; break;
            case 0xc6: kind = 2; hdr = 4; break;
            case 0xd9: kind = 1; hdr = 1; break;
            case 0xda: kind = 1; hdr = 2; break;
            case 0xdb: kind = 1; hdr = 4; break;
            case 0xdc: container = 1; hdr = 2; break;
            case 0xdd: container = 1; hdr = 4; break;
            case 0xde: container = 2; hdr = 2; break;
            case 0xdf: container = 2; hdr = 4; break;
            case 0xca: n = 4; break;
            case 0xcb: n = 8; break;
            case 0xcc: case 0xd0: n = 1; break;
            case 0xcd: case 0xd1: n = 2; break;
            case 0xce: case 0xd2: n = 4; break;
            case 0xcf: case 0xd3: n = 8; break;
            default:
                /* 0xc1 is reserved; ext types are not part of the pdkv protocol. */
                return PD_ERR_PROTO;
            }
            /* clang-format on */
            if (hdr > 0) {
                if (left < (size_t)hdr)
                    return PD_ERR_PROTO;
                n = pd_mp_be(p, hdr);
                p += hdr;
                left -= (size_t)hdr;
            }
        }

        if (container == 0) {
            if (kind == 1 && n > limits->max_str_bytes)
                return PD_ERR_LIMIT;
            if (kind == 2 && n > limits->max_bin_bytes)
                return PD_ERR_LIMIT;
            if (n > left)
                return PD_ERR_PROTO;
            p += n;
            continue;
        }
        if (container == 1 && n > limits->max_array_len)
            return PD_ERR_LIMIT;
        if (container == 2 && n > limits->max_map_len)
            return PD_ERR_LIMIT;
        uint64_t elems = (container == 2) ? 2 * n : n;
        /* Every element takes at least one byte: a count beyond the bytes left is a lie. */
        if (elems > left)
            return PD_ERR_PROTO;
        if (elems == 0)
            continue;
        if (depth + 1 > max_depth)
            return PD_ERR_LIMIT;
        pending[++depth] = elems;
    }
    return (p == end) ? PD_OK : PD_ERR_PROTO;
}

pd_status_t pd_mp_doc_parse(pd_mp_doc_t *doc, const void *buf, size_t len,
                            const pd_mp_limits_t *limits)
{
    pd_status_t status = pd_mp_check(buf, len, limits);
    if (status != PD_OK)
        return status;
    if (!msgpack_zone_init(&doc->zone, 4096))
        return PD_ERR_NO_MEMORY;
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack(buf, len, &off, &doc->zone, &doc->root);
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_zone_destroy(&doc->zone);
        return (ret == MSGPACK_UNPACK_NOMEM_ERROR) ? PD_ERR_NO_MEMORY : PD_ERR_PROTO;
    }
    doc->zone_live = true;
    return PD_OK;
}

void pd_mp_doc_cleanup(pd_mp_doc_t *doc)
{
    if (doc->zone_live) {
        msgpack_zone_destroy(&doc->zone);
        doc->zone_live = false;
    }
}

bool pd_mp_str_eq(const msgpack_object *obj, const char *s)
{
    size_t n = strlen(s);
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == n &&
           memcmp(obj->via.str.ptr, s, n) == 0;
}

const msgpack_object *pd_mp_map_find(const msgpack_object *obj, const char *key)
{
    if (obj == NULL || obj->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        if (pd_mp_str_eq(&kv->key, key))
            return &kv->val;
    }
    return NULL;
}

pd_status_t pd_mp_obj_i64(const msgpack_object *obj, int64_t min, int64_t max, int64_t *value_p)
{
    int64_t v;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (obj->via.u64 > (uint64_t)INT64_MAX)
            return PD_ERR_PROTO;
        v = (int64_t)obj->via.u64;
    } else if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = obj->via.i64;
    } else {
        return PD_ERR_PROTO;
    }
    if (v < min || v > max)
        return PD_ERR_PROTO;
    *value_p = v;
    return PD_OK;
}

pd_status_t pd_mp_get_u64(const msgpack_object *map, const char *key, uint64_t *value_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return PD_ERR_PROTO;
    *value_p = o->via.u64;
    return PD_OK;
}

pd_status_t pd_mp_get_i64(const msgpack_object *map, const char *key, int64_t *value_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    return pd_mp_obj_i64(o, INT64_MIN, INT64_MAX, value_p);
}

pd_status_t pd_mp_get_f64(const msgpack_object *map, const char *key, double *value_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *value_p = o->via.f64;
        return PD_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *value_p = (double)o->via.u64;
        return PD_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *value_p = (double)o->via.i64;
        return PD_OK;
    default:
        return PD_ERR_PROTO;
    }
}

pd_status_t pd_mp_get_bool(const msgpack_object *map, const char *key, bool *value_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return PD_ERR_PROTO;
    *value_p = o->via.boolean;
    return PD_OK;
}

pd_status_t pd_mp_get_str(const msgpack_object *map, const char *key, const char **str_p,
                          size_t *len_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_STR)
        return PD_ERR_PROTO;
    *str_p = o->via.str.ptr;
    *len_p = o->via.str.size;
    return PD_OK;
}

pd_status_t pd_mp_get_strcpy(const msgpack_object *map, const char *key, char *dst,
                             size_t dst_bytes)
{
    const char *s;
    size_t n;
    pd_status_t status = pd_mp_get_str(map, key, &s, &n);
    if (status != PD_OK)
        return status;
    if (n + 1 > dst_bytes || memchr(s, '\0', n) != NULL)
        return PD_ERR_LIMIT;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return PD_OK;
}

pd_status_t pd_mp_get_bin(const msgpack_object *map, const char *key, const void **data_p,
                          size_t *len_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_BIN)
        return PD_ERR_PROTO;
    *data_p = o->via.bin.ptr;
    *len_p = o->via.bin.size;
    return PD_OK;
}

pd_status_t pd_mp_get_array(const msgpack_object *map, const char *key,
                            const msgpack_object_array **array_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return PD_ERR_PROTO;
    *array_p = &o->via.array;
    return PD_OK;
}

pd_status_t pd_mp_get_map(const msgpack_object *map, const char *key, const msgpack_object **obj_p)
{
    const msgpack_object *o = pd_mp_map_find(map, key);
    if (o == NULL)
        return PD_ERR_NOT_FOUND;
    if (o->type != MSGPACK_OBJECT_MAP)
        return PD_ERR_PROTO;
    *obj_p = o;
    return PD_OK;
}

void pd_mp_writer_init(pd_mp_writer_t *w)
{
    msgpack_sbuffer_init(&w->sbuf);
    msgpack_packer_init(&w->pk, &w->sbuf, msgpack_sbuffer_write);
}

void pd_mp_writer_cleanup(pd_mp_writer_t *w)
{
    msgpack_sbuffer_destroy(&w->sbuf);
}

void pd_mp_writer_reset(pd_mp_writer_t *w)
{
    msgpack_sbuffer_clear(&w->sbuf);
}

void pd_mp_put_map(pd_mp_writer_t *w, uint32_t n_pairs)
{
    msgpack_pack_map(&w->pk, n_pairs);
}

void pd_mp_put_array(pd_mp_writer_t *w, uint32_t n)
{
    msgpack_pack_array(&w->pk, n);
}

void pd_mp_put_strn(pd_mp_writer_t *w, const char *s, size_t n)
{
    msgpack_pack_str(&w->pk, n);
    msgpack_pack_str_body(&w->pk, s, n);
}

void pd_mp_put_str(pd_mp_writer_t *w, const char *s)
{
    pd_mp_put_strn(w, s, strlen(s));
}

void pd_mp_put_u64(pd_mp_writer_t *w, uint64_t v)
{
    msgpack_pack_uint64(&w->pk, v);
}

void pd_mp_put_i64(pd_mp_writer_t *w, int64_t v)
{
    msgpack_pack_int64(&w->pk, v);
}

void pd_mp_put_f64(pd_mp_writer_t *w, double v)
{
    msgpack_pack_double(&w->pk, v);
}

void pd_mp_put_bool(pd_mp_writer_t *w, bool v)
{
    if (v)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void pd_mp_put_nil(pd_mp_writer_t *w)
{
    msgpack_pack_nil(&w->pk);
}

void pd_mp_put_bin(pd_mp_writer_t *w, const void *data, size_t n)
{
    msgpack_pack_bin(&w->pk, n);
    msgpack_pack_bin_body(&w->pk, data, n);
}
