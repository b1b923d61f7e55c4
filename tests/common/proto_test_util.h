/* Helpers of the wire protocol tests: a round trip through the codec, a decode of raw bytes,
 * and a few token, hash and block-table arrays to put in messages. */
#ifndef PD_TEST_PROTO_UTIL_H
#define PD_TEST_PROTO_UTIL_H

#include "pd/proto.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* Encode msg, decode it on chan into out; both must succeed. */
static inline void round_trip(const pd_proto_msg_t *msg, pd_proto_chan_t chan, pd_mp_writer_t *w,
                              pd_proto_msg_t *out)
{
    pd_proto_fault_t fault;
    pd_mp_writer_reset(w);
    cr_assert_eq(pd_proto_encode(msg, w), PD_OK, "encode %s", pd_proto_type_name(msg->type));
    pd_status_t st = pd_proto_decode(out, chan, pd_mp_writer_data(w), pd_mp_writer_size(w), &fault);
    cr_assert_eq(st, PD_OK, "decode %s: %s", pd_proto_type_name(msg->type), fault.reason);
    cr_assert_eq(out->type, msg->type);
}

/* Decode raw bytes and expect a status. */
static inline pd_status_t decode_raw(pd_proto_chan_t chan, const void *buf, size_t len,
                                     pd_proto_fault_t *fault)
{
    pd_proto_msg_t m;
    pd_status_t st = pd_proto_decode(&m, chan, buf, len, fault);
    if (st == PD_OK)
        pd_proto_msg_cleanup(&m);
    return st;
}

static const int32_t k_tokens[] = {1, 450, 4996, 17354, 1701, 0, 32000};
static const uint64_t k_hashes[] = {0x1234567890abcdefull, UINT64_MAX, 7};
static const uint32_t k_table[] = {5, 6, 7, 8, 9};
#endif
