/* msgpack with limits: every frame is walked and checked (frame bytes, array/map/str/bin
 * lengths, nesting, each count against the bytes left) before msgpack-c allocates
 * anything for it. Encoding is a thin writer over msgpack-c's packer. */
#ifndef PD_MP_H
#define PD_MP_H

#include "pd/status.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pd_mp_limits {
    size_t max_frame_bytes; /* whole encoded message */
    uint32_t max_array_len; /* elements of one array */
    uint32_t max_map_len;   /* pairs of one map */
    uint32_t max_str_bytes; /* one string */
    uint32_t max_bin_bytes; /* one bin */
    uint32_t max_depth;     /* nesting of arrays and maps */
    uint32_t max_objects;   /* objects in the whole frame */
} pd_mp_limits_t;

/* 16 MiB frames, 1M-element arrays, 1 KiB maps, 4 MiB strings and bins, depth 16. */
extern const pd_mp_limits_t pd_mp_limits_default;

/* Walk one encoded object filling exactly len bytes and check it against limits.
 * No allocation. Returns PD_OK, PD_ERR_LIMIT (a limit is exceeded) or PD_ERR_PROTO
 * (truncated, trailing bytes, reserved or unsupported type such as ext). */
PD_MUST_CHECK pd_status_t pd_mp_check(const void *buf, size_t len, const pd_mp_limits_t *limits);

/* A decoded message; root points into zone memory owned by the doc. */
typedef struct pd_mp_doc {
    msgpack_zone zone;
    msgpack_object root;
    bool zone_live;
} pd_mp_doc_t;

/* Check buf, then unpack it into doc (caller storage). On error doc needs no cleanup. */
PD_MUST_CHECK pd_status_t pd_mp_doc_parse(pd_mp_doc_t *doc, const void *buf, size_t len,
                                          const pd_mp_limits_t *limits);
void pd_mp_doc_cleanup(pd_mp_doc_t *doc);

/* Find a string key in a map object; NULL if obj is not a map or lacks key. */
const msgpack_object *pd_mp_map_find(const msgpack_object *obj, const char *key);

/* Typed getters on a map: PD_ERR_NOT_FOUND when the key is absent, PD_ERR_PROTO when
 * it has the wrong type or does not fit. Output arguments are set only on success. */
PD_MUST_CHECK pd_status_t pd_mp_get_u64(const msgpack_object *map, const char *key,
                                        uint64_t *value_p);
PD_MUST_CHECK pd_status_t pd_mp_get_i64(const msgpack_object *map, const char *key,
                                        int64_t *value_p);
PD_MUST_CHECK pd_status_t pd_mp_get_f64(const msgpack_object *map, const char *key,
                                        double *value_p);
PD_MUST_CHECK pd_status_t pd_mp_get_bool(const msgpack_object *map, const char *key, bool *value_p);
/* The string is not NUL-terminated: use len_p. It points into the doc. */
PD_MUST_CHECK pd_status_t pd_mp_get_str(const msgpack_object *map, const char *key,
                                        const char **str_p, size_t *len_p);
PD_MUST_CHECK pd_status_t pd_mp_get_bin(const msgpack_object *map, const char *key,
                                        const void **data_p, size_t *len_p);
PD_MUST_CHECK pd_status_t pd_mp_get_array(const msgpack_object *map, const char *key,
                                          const msgpack_object_array **array_p);
PD_MUST_CHECK pd_status_t pd_mp_get_map(const msgpack_object *map, const char *key,
                                        const msgpack_object **obj_p);
/* Copy a string field into dst (NUL-terminated); PD_ERR_LIMIT if it does not fit. */
PD_MUST_CHECK pd_status_t pd_mp_get_strcpy(const msgpack_object *map, const char *key, char *dst,
                                           size_t dst_bytes);
/* True if the object is a string equal to s. */
bool pd_mp_str_eq(const msgpack_object *obj, const char *s);
/* Convert one object to an integer of the given range; PD_ERR_PROTO otherwise. */
PD_MUST_CHECK pd_status_t pd_mp_obj_i64(const msgpack_object *obj, int64_t min, int64_t max,
                                        int64_t *value_p);

/* A growable buffer plus packer. */
typedef struct pd_mp_writer {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} pd_mp_writer_t;

void pd_mp_writer_init(pd_mp_writer_t *w);
void pd_mp_writer_cleanup(pd_mp_writer_t *w);
void pd_mp_writer_reset(pd_mp_writer_t *w);
static inline const void *pd_mp_writer_data(const pd_mp_writer_t *w)
{
    return w->sbuf.data;
}
static inline size_t pd_mp_writer_size(const pd_mp_writer_t *w)
{
    return w->sbuf.size;
}

void pd_mp_put_map(pd_mp_writer_t *w, uint32_t n_pairs);
void pd_mp_put_array(pd_mp_writer_t *w, uint32_t n);
void pd_mp_put_str(pd_mp_writer_t *w, const char *s);
void pd_mp_put_strn(pd_mp_writer_t *w, const char *s, size_t n);
void pd_mp_put_u64(pd_mp_writer_t *w, uint64_t v);
void pd_mp_put_i64(pd_mp_writer_t *w, int64_t v);
void pd_mp_put_f64(pd_mp_writer_t *w, double v);
void pd_mp_put_bool(pd_mp_writer_t *w, bool v);
void pd_mp_put_nil(pd_mp_writer_t *w);
void pd_mp_put_bin(pd_mp_writer_t *w, const void *data, size_t n);

#endif
