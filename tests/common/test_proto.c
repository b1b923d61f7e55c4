#include "pd/proto.h"

#include <criterion/criterion.h>
#include <string.h>

/* Encode msg, decode it on chan into out; both must succeed. */
static void round_trip(const pd_proto_msg_t *msg, pd_proto_chan_t chan, pd_mp_writer_t *w,
                       pd_proto_msg_t *out)
{
    pd_proto_fault_t fault;
    pd_mp_writer_reset(w);
    cr_assert_eq(pd_proto_encode(msg, w), PD_OK, "encode %s", pd_proto_type_name(msg->type));
    pd_status_t st =
        pd_proto_decode(out, chan, pd_mp_writer_data(w), pd_mp_writer_size(w), &fault);
    cr_assert_eq(st, PD_OK, "decode %s: %s", pd_proto_type_name(msg->type), fault.reason);
    cr_assert_eq(out->type, msg->type);
}

/* Decode raw bytes and expect a status. */
static pd_status_t decode_raw(pd_proto_chan_t chan, const void *buf, size_t len,
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

Test(proto, round_trips_generate_with_tokens_and_cache)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_GENERATE}, out;
    pd_proto_generate_t *g = &m.u.generate;
    strcpy(g->id, "req-1");
    g->tokens = k_tokens;
    g->n_tokens = 7;
    g->max_tokens = 4096;
    g->sampling = (pd_proto_sampling_t){.temperature = 0.7, .top_p = 0.95, .seed = 42};
    int32_t stop[] = {2, 13};
    g->stop = stop;
    g->n_stop = 2;
    strcpy(g->tenant, "acme");
    g->cache.mode = PD_PROTO_CACHE_EXPLICIT;
    g->cache.n_breakpoints = 2;
    g->cache.breakpoints[0] = (pd_proto_breakpoint_t){16, PD_PROTO_TTL_5M_S};
    g->cache.breakpoints[1] = (pd_proto_breakpoint_t){1024, PD_PROTO_TTL_1H_S};
    g->stream = false;
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    const pd_proto_generate_t *o = &out.u.generate;
    cr_assert_str_eq(o->id, "req-1");
    cr_assert_null(o->prompt);
    cr_assert_eq(o->n_tokens, 7);
    cr_assert_arr_eq(o->tokens, k_tokens, sizeof(k_tokens));
    cr_assert_eq(o->max_tokens, 4096);
    cr_assert_float_eq(o->sampling.temperature, 0.7, 1e-12);
    cr_assert_float_eq(o->sampling.top_p, 0.95, 1e-12);
    cr_assert_eq(o->sampling.seed, 42);
    cr_assert_eq(o->n_stop, 2);
    cr_assert_eq(o->stop[1], 13);
    cr_assert_str_eq(o->tenant, "acme");
    cr_assert_eq(o->cache.mode, PD_PROTO_CACHE_EXPLICIT);
    cr_assert_eq(o->cache.n_breakpoints, 2);
    cr_assert_eq(o->cache.breakpoints[1].offset_tokens, 1024);
    cr_assert_eq(o->cache.breakpoints[1].ttl_s, PD_PROTO_TTL_1H_S);
    cr_assert_eq(o->stream, false);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}
