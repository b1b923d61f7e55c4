/* The protocol described once: every message is a schema, a list of fields (key, kind,
 * limits, required, offset into the message's C struct), from which proto_codec.c encodes
 * and decodes and proto_doc.c writes the tables of docs/PROTOCOL.md. The schemas
 * themselves are in proto_schema.c. */
#ifndef PD_PROTO_INT_H
#define PD_PROTO_INT_H

#include "pd/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pd_proto_kind {
    PD_PROTO_K_U64,    /* uint64_t in [min, max] */
    PD_PROTO_K_U32,    /* uint32_t in [min, max] */
    PD_PROTO_K_TOKEN,  /* int32_t token id in [0, PD_PROTO_MAX_TOKEN_ID], a uint on the wire */
    PD_PROTO_K_F64,    /* double in [fmin, fmax]; any msgpack number on the wire */
    PD_PROTO_K_BOOL,   /* bool */
    PD_PROTO_K_STR,    /* char[size] holding a NUL-free string of min..size-1 bytes */
    PD_PROTO_K_TEXT,   /* const char * (+ size_t length at n_off when has_n), min..max bytes,
                        * may hold NUL bytes; NUL-terminated after decode */
    PD_PROTO_K_BIN,    /* const void * + size_t length at n_off, <= max bytes */
    PD_PROTO_K_ENUM,   /* an int-sized enum, by its name in names[] on the wire */
    PD_PROTO_K_CODE,   /* pd_status_t, by its name on the wire */
    PD_PROTO_K_TTL,    /* uint32_t seconds, PD_PROTO_TTL_5M_S or _1H_S, "5m" or "1h" */
    PD_PROTO_K_TOKENS, /* const int32_t * + uint32_t count at n_off: token ids */
    PD_PROTO_K_U64S,   /* const uint64_t * + uint32_t count at n_off */
    PD_PROTO_K_U32S,   /* const uint32_t * + uint32_t count at n_off */
    PD_PROTO_K_MAP,    /* a nested map of sub's fields, their offsets relative to off, or
                        * (PD_PROTO_PTR) to the struct a pointer at off points to, which the
                        * decoder allocates; with PD_PROTO_OMIT a NULL pointer is not sent */
    PD_PROTO_K_INLINE, /* sub's fields at this level of the map (shared groups) */
    PD_PROTO_K_MAPS    /* an array of maps of sub's fields, count (uint32_t) at n_off: the
                        * elements are behind a pointer at off (PD_PROTO_PTR) or an array of
                        * size bytes at off */
} pd_proto_kind_t;

/* Field flags. */
#define PD_PROTO_REQ 0x01u /* decoding fails when the key is absent */
#define PD_PROTO_OMIT                                                                              \
    0x02u                    /* pointer fields: NULL is not written, and absent decodes as NULL;   \
                              * U64/U32/F64 (not REQ): 0 is not written, absent decodes as def */
#define PD_PROTO_LIMIT 0x04u /* above max is PD_ERR_LIMIT (a size) rather than a bad value */
#define PD_PROTO_XMIN  0x08u /* floats: fmin itself is out of range */
#define PD_PROTO_ERR   0x10u /* codes: must name an error (a negative status) */
#define PD_PROTO_PTR   0x20u /* MAPS, MAP: behind a pointer the decoder allocates */

typedef struct pd_proto_schema pd_proto_schema_t;

/* A rule between fields, checked as soon as the field that carries it is read (so the first
 * broken rule of a frame is the one reported): NULL when x, the struct of the field, keeps
 * it, else the reason. Encoding then fails with PD_ERR_INVALID_PARAM, decoding with
 * PD_ERR_PROTO. */
typedef const char *(*pd_proto_check_fn)(const void *x);

typedef struct pd_proto_field {
    const char *key;
    pd_proto_kind_t kind;
    unsigned flags;
    size_t off;        /* the value, from the start of the enclosing struct */
    size_t size;       /* bytes of the member at off (STR: its capacity) */
    size_t n_off;      /* the count or length, when has_n */
    bool has_n;        /* TEXT with a length; every array, BIN */
    uint64_t min, max; /* integers; lengths of strings and bins; counts of arrays */
    uint64_t def;      /* integers, bools, enums and TTLs when absent */
    double fmin, fmax, fdef;
    const pd_proto_schema_t *sub; /* MAP, INLINE, MAPS */
    const char *const *names;     /* ENUM: wire names by value */
    uint32_t n_names;
    pd_proto_check_fn after; /* a rule checked once this field is read */
    const char *doc;         /* one sentence for docs/PROTOCOL.md */
} pd_proto_field_t;

struct pd_proto_schema {
    const pd_proto_field_t *fields;
    uint32_t n_fields;
    size_t size; /* bytes of the struct the offsets refer to */
};

typedef struct pd_proto_type_def {
    const char *name;
    pd_proto_chan_t chan;
    const pd_proto_schema_t *schema; /* NULL: no fields */
    const char *rule;                /* the fields' `after` rules, in words, for the docs */
} pd_proto_type_def_t;

/* Indexed by pd_proto_type_t. */
extern const pd_proto_type_def_t pd_proto_type_defs[PD_PROTO_TYPE_COUNT_];

/* Wire names of the enums, by value (proto.c). */
extern const char *const pd_proto_role_names[3];
extern const char *const pd_proto_finish_names[3];
extern const char *const pd_proto_tier_names[3];
extern const char *const pd_proto_mode_names[3];
extern const char *const pd_proto_ttl_names[2]; /* "5m", "1h" */
extern const uint32_t pd_proto_ttl_seconds[2];  /* PD_PROTO_TTL_5M_S, PD_PROTO_TTL_1H_S */

pd_proto_type_t pd_proto_type_lookup(pd_proto_chan_t chan, const char *name, size_t n);

#endif
