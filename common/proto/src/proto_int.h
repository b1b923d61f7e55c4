/* Private helpers shared by proto.c, proto_encode.c and proto_decode.c. */
#ifndef PD_PROTO_INT_H
#define PD_PROTO_INT_H

#include "pd/proto.h"

pd_proto_type_t pd_proto_type_lookup(pd_proto_chan_t chan, const char *name, size_t n);
const char *pd_proto_event_kind_name(pd_proto_event_kind_t kind);
const char *pd_proto_ttl_name(uint32_t ttl_s);

/* Index of a wire string in its enum's names, or -1. */
int pd_proto_enum_lookup(const msgpack_object *obj, const char *const *names, int n);
int pd_proto_role_lookup(const msgpack_object *obj);
int pd_proto_finish_lookup(const msgpack_object *obj);
int pd_proto_tier_lookup(const msgpack_object *obj);
int pd_proto_mode_lookup(const msgpack_object *obj);
int pd_proto_kind_lookup(const msgpack_object *obj);

#endif
