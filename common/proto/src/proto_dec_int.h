/* Private to the decoder: the decoding context and the typed field readers shared by
 * proto_decode.c (client channel, entry point) and proto_decode_worker.c (worker and
 * event channels). Each reader returns PD_OK or the status with the reason in d->fault. */
#ifndef PD_PROTO_DEC_INT_H
#define PD_PROTO_DEC_INT_H

#include "pd/proto.h"
#include "proto_int.h"

#include <stdbool.h>

#define REQ true
#define OPT false

typedef struct pd_proto_dec {
    pd_proto_msg_t *msg;
    pd_proto_fault_t *fault;
} pd_proto_dec_t;

typedef int (*pd_proto_lookup_fn)(const msgpack_object *obj);

pd_status_t pd_proto_dec_fail(pd_proto_dec_t *d, pd_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *pd_proto_dec_alloc(pd_proto_dec_t *d, size_t bytes);
pd_status_t pd_proto_dec_missing(pd_proto_dec_t *d, const char *key);
pd_status_t pd_proto_dec_u64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, uint64_t def, uint64_t min, uint64_t max,
                             pd_status_t over_status, uint64_t *value_p);
pd_status_t pd_proto_dec_u32(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, uint32_t def, uint32_t min, uint32_t max,
                             pd_status_t over_status, uint32_t *value_p);
pd_status_t pd_proto_dec_f64(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, double def, double min, double max, double *value_p);
pd_status_t pd_proto_dec_bool(pd_proto_dec_t *d, const msgpack_object *m, const char *key, bool def,
                              bool *value_p);
pd_status_t pd_proto_dec_strbuf(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                                bool required, char *dst, size_t cap);
pd_status_t pd_proto_dec_strz(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, size_t max_bytes, const char **str_p, size_t *len_p);
pd_status_t pd_proto_dec_bin(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, size_t max_bytes, const void **data_p, size_t *len_p);
pd_status_t pd_proto_dec_array(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                               bool required, uint32_t max_n, const msgpack_object_array **array_p);
pd_status_t pd_proto_dec_i32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const int32_t **ids_p, uint32_t *n_p);
pd_status_t pd_proto_dec_u64s_obj(pd_proto_dec_t *d, const msgpack_object_array *a, const char *key,
                                  const uint64_t **v_p, uint32_t *n_p);
pd_status_t pd_proto_dec_u64s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const uint64_t **v_p, uint32_t *n_p);
pd_status_t pd_proto_dec_u32s(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, uint32_t max_n, const uint32_t **v_p, uint32_t *n_p);
pd_status_t pd_proto_dec_map(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                             bool required, const msgpack_object **obj_p);
pd_status_t pd_proto_dec_enum(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool required, int def, pd_proto_lookup_fn lookup, int *value_p);
pd_status_t pd_proto_dec_code(pd_proto_dec_t *d, const msgpack_object *m, const char *key,
                              bool negative_only, pd_status_t *code_p);
pd_status_t pd_proto_dec_sampling(pd_proto_dec_t *d, const msgpack_object *m,
                                  pd_proto_sampling_t *s);
pd_status_t pd_proto_dec_ttl(pd_proto_dec_t *d, const msgpack_object *o, uint32_t *ttl_p);
pd_status_t pd_proto_dec_cache(pd_proto_dec_t *d, const msgpack_object *root, pd_proto_cache_t *c);
pd_status_t pd_proto_dec_plan(pd_proto_dec_t *d, const msgpack_object *root,
                              pd_proto_cache_plan_t *p);

/* The worker and events channels (proto_decode_worker.c). */
pd_status_t pd_proto_dec_worker(pd_proto_dec_t *d, const msgpack_object *m);
pd_status_t pd_proto_dec_kv_event(pd_proto_dec_t *d, const msgpack_object *m);

#endif
