/* The wire protocol refuses what breaks its limits: bad fields, garbage, bombs, wrong versions
 * and inconsistent worker messages; cache plans; and decoded messages own their bytes. */
#include "proto_test_util.h"

/* A generate frame built by hand so that single fields can be broken. extra_key/extra
 * writes one more field (its value written by fn). */
typedef void (*put_fn)(pd_mp_writer_t *w);

static pd_status_t decode_generate_with(const char *key, put_fn fn, pd_proto_fault_t *fault)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 4);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "id");
    pd_mp_put_str(&w, "bad-1");
    pd_mp_put_str(&w, key);
    fn(&w);
    pd_status_t st =
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), fault);
    pd_mp_writer_cleanup(&w);
    return st;
}

static void put_neg_tokens(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, 2);
    pd_mp_put_i64(w, 1);
    pd_mp_put_i64(w, -5);
}

static void put_str_tokens(pd_mp_writer_t *w)
{
    pd_mp_put_str(w, "1 2 3");
}

static void put_float_tokens(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, 1);
    pd_mp_put_f64(w, 1.5);
}

static void put_too_many_tokens(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, PD_PROTO_MAX_PROMPT_TOKENS + 1);
    for (uint32_t i = 0; i < PD_PROTO_MAX_PROMPT_TOKENS + 1; i++)
        pd_mp_put_u64(w, 1);
}

static void put_big_token(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, 1);
    pd_mp_put_u64(w, 1ull << 31);
}

static void put_empty_tokens(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, 0);
}

Test(proto, rejects_bad_token_arrays)
{
    pd_proto_fault_t f;
    cr_assert_eq(decode_generate_with("tokens", put_neg_tokens, &f), PD_ERR_PROTO);
    cr_assert(strstr(f.reason, "tokens") != NULL, "%s", f.reason);
    cr_assert_str_eq(f.id, "bad-1");
    cr_assert_eq(decode_generate_with("tokens", put_str_tokens, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_generate_with("tokens", put_float_tokens, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_generate_with("tokens", put_too_many_tokens, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_generate_with("tokens", put_big_token, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_generate_with("tokens", put_empty_tokens, &f), PD_ERR_PROTO);
}

static void put_long_prompt(pd_mp_writer_t *w)
{
    static char big[PD_PROTO_MAX_PROMPT_BYTES + 2];
    memset(big, 'a', sizeof(big) - 1);
    pd_mp_put_strn(w, big, PD_PROTO_MAX_PROMPT_BYTES + 1);
}

static void put_int(pd_mp_writer_t *w)
{
    pd_mp_put_u64(w, 5);
}

Test(proto, rejects_missing_and_oversized_prompt)
{
    pd_proto_fault_t f;
    /* No prompt and no tokens at all. */
    cr_assert_eq(decode_generate_with("max_tokens", put_int, &f), PD_ERR_PROTO);
    cr_assert(strstr(f.reason, "prompt") != NULL, "%s", f.reason);
    /* The frame limit (1 MiB) is above the prompt limit: this reaches the field check,
     * which the mp string limit catches first (both are PD_ERR_LIMIT). */
    cr_assert_eq(decode_generate_with("prompt", put_long_prompt, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_generate_with("prompt", put_int, &f), PD_ERR_PROTO);
}

/* A generate with tokens [1] plus one more field. */
static pd_status_t decode_tokens_plus(const char *key, put_fn fn, pd_proto_fault_t *fault)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 4);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "tokens");
    pd_mp_put_array(&w, 1);
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, key);
    fn(&w);
    pd_status_t st =
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), fault);
    pd_mp_writer_cleanup(&w);
    return st;
}

static void put_4097(pd_mp_writer_t *w)
{
    pd_mp_put_u64(w, PD_PROTO_MAX_NEW_TOKENS + 1);
}

static void put_zero(pd_mp_writer_t *w)
{
    pd_mp_put_u64(w, 0);
}

static void put_neg(pd_mp_writer_t *w)
{
    pd_mp_put_i64(w, -1);
}

static void put_str(pd_mp_writer_t *w)
{
    pd_mp_put_str(w, "x");
}

static void put_two(pd_mp_writer_t *w)
{
    pd_mp_put_f64(w, 2.0);
}

static void put_long_id(pd_mp_writer_t *w)
{
    char id[PD_PROTO_ID_CAP + 1];
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    pd_mp_put_str(w, id);
}

static void put_cache_5_breakpoints(pd_mp_writer_t *w)
{
    pd_mp_put_map(w, 2);
    pd_mp_put_str(w, "mode");
    pd_mp_put_str(w, "explicit");
    pd_mp_put_str(w, "breakpoints");
    pd_mp_put_array(w, 5);
    for (int i = 0; i < 5; i++) {
        pd_mp_put_map(w, 2);
        pd_mp_put_str(w, "offset");
        pd_mp_put_u64(w, 16 * (i + 1));
        pd_mp_put_str(w, "ttl");
        pd_mp_put_str(w, "5m");
    }
}

static void put_cache_bad_ttl(pd_mp_writer_t *w)
{
    pd_mp_put_map(w, 2);
    pd_mp_put_str(w, "mode");
    pd_mp_put_str(w, "explicit");
    pd_mp_put_str(w, "breakpoints");
    pd_mp_put_array(w, 1);
    pd_mp_put_map(w, 2);
    pd_mp_put_str(w, "offset");
    pd_mp_put_u64(w, 16);
    pd_mp_put_str(w, "ttl");
    pd_mp_put_str(w, "2h");
}

static void put_cache_bad_mode(pd_mp_writer_t *w)
{
    pd_mp_put_map(w, 1);
    pd_mp_put_str(w, "mode");
    pd_mp_put_str(w, "always");
}

static void put_too_many_stops(pd_mp_writer_t *w)
{
    pd_mp_put_array(w, PD_PROTO_MAX_STOP + 1);
    for (int i = 0; i < PD_PROTO_MAX_STOP + 1; i++)
        pd_mp_put_u64(w, 2);
}

Test(proto, rejects_out_of_range_fields)
{
    pd_proto_fault_t f;
    cr_assert_eq(decode_tokens_plus("max_tokens", put_4097, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_tokens_plus("max_tokens", put_zero, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("max_tokens", put_neg, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("max_tokens", put_str, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("temperature", put_neg, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("top_p", put_two, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("top_p", put_zero, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("seed", put_neg, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("stream", put_int, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("id", put_long_id, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_tokens_plus("tenant", put_long_id, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_tokens_plus("stop", put_too_many_stops, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_tokens_plus("cache", put_cache_5_breakpoints, &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_tokens_plus("cache", put_cache_bad_ttl, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("cache", put_cache_bad_mode, &f), PD_ERR_PROTO);
    cr_assert_eq(decode_tokens_plus("cache", put_int, &f), PD_ERR_PROTO);
    /* Unknown fields are ignored (forward compatible within version 1). */
    cr_assert_eq(decode_tokens_plus("future_field", put_int, &f), PD_OK);
}

Test(proto, rejects_garbage_truncation_and_bombs)
{
    pd_proto_fault_t f;
    const unsigned char bomb[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, bomb, sizeof(bomb), &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_WORKER, bomb, sizeof(bomb), &f), PD_ERR_LIMIT);
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_EVENTS, bomb, sizeof(bomb), &f), PD_ERR_LIMIT);
    const unsigned char map_bomb[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_WORKER, map_bomb, sizeof(map_bomb), &f), PD_ERR_LIMIT);
    const unsigned char garbage[] = "GET / HTTP/1.1\r\n\r\n";
    cr_assert_neq(decode_raw(PD_PROTO_CHAN_CLIENT, garbage, sizeof(garbage) - 1, &f), PD_OK);
    const unsigned char not_map[] = {0x93, 0x01, 0x02, 0x03};
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, not_map, sizeof(not_map), &f), PD_ERR_PROTO);
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, NULL, 0, &f), PD_ERR_PROTO);

    /* Every strict prefix of a valid frame is rejected. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_RESERVE};
    m.u.reserve = (pd_proto_reserve_t){.req_id = 1,
                                       .tokens = k_tokens,
                                       .n_tokens = 7,
                                       .block_hashes = k_hashes,
                                       .n_block_hashes = 3,
                                       .max_tokens = 2,
                                       .sampling = {1.0, 0.9, 0},
                                       .deadline_ms = 10};
    cr_assert_eq(pd_proto_encode(&m, &w), PD_OK);
    for (size_t n = 0; n < pd_mp_writer_size(&w); n++)
        cr_assert_neq(decode_raw(PD_PROTO_CHAN_WORKER, pd_mp_writer_data(&w), n, &f), PD_OK,
                      "prefix of %zu bytes", n);
    pd_mp_writer_cleanup(&w);
}

Test(proto, rejects_version_type_and_frame_size)
{
    pd_proto_fault_t f;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    /* Wrong version. */
    pd_mp_put_map(&w, 2);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 2);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &f),
                 PD_ERR_UNSUPPORTED);
    /* Missing version. */
    pd_mp_writer_reset(&w);
    pd_mp_put_map(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &f),
                 PD_ERR_PROTO);
    /* Unknown type; worker type on the client channel. */
    const char *bad_types[] = {"launch", "register", "reserve", "kv_event"};
    for (size_t i = 0; i < 4; i++) {
        pd_mp_writer_reset(&w);
        pd_mp_put_map(&w, 2);
        pd_mp_put_str(&w, "v");
        pd_mp_put_u64(&w, 1);
        pd_mp_put_str(&w, "type");
        pd_mp_put_str(&w, bad_types[i]);
        cr_assert_eq(
            decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &f),
            PD_ERR_PROTO, "%s", bad_types[i]);
    }
    /* A client frame over 1 MiB is refused before parsing. */
    pd_mp_writer_reset(&w);
    static char big[PD_PROTO_MAX_CLIENT_FRAME_BYTES];
    memset(big, 'a', sizeof(big));
    pd_mp_put_map(&w, 1);
    pd_mp_put_str(&w, "x");
    pd_mp_put_strn(&w, big, sizeof(big));
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &f),
                 PD_ERR_LIMIT);
    pd_mp_writer_cleanup(&w);
}

static pd_status_t encode_worker(pd_proto_msg_t *m, pd_proto_fault_t *f, pd_proto_msg_t *out)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_status_t st = pd_proto_encode(m, &w);
    if (st == PD_OK)
        st = pd_proto_decode(out, PD_PROTO_CHAN_WORKER, pd_mp_writer_data(&w),
                             pd_mp_writer_size(&w), f);
    pd_mp_writer_cleanup(&w);
    return st;
}

Test(proto, rejects_inconsistent_worker_messages)
{
    pd_proto_fault_t f;
    pd_proto_msg_t out;
    /* The encoder refuses what a decoder would refuse. */
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_RESERVE};
    m.u.reserve = (pd_proto_reserve_t){.req_id = 1,
                                       .tokens = k_tokens,
                                       .n_tokens = 2,
                                       .block_hashes = k_hashes,
                                       .n_block_hashes = 3,
                                       .max_tokens = 2,
                                       .sampling = {1.0, 0.9, 0}};
    cr_assert_eq(encode_worker(&m, &f, &out), PD_ERR_INVALID_PARAM);
    m.u.reserve.n_tokens = 7;
    m.u.reserve.max_tokens = PD_PROTO_MAX_NEW_TOKENS + 1;
    cr_assert_eq(encode_worker(&m, &f, &out), PD_ERR_LIMIT);
    m.u.reserve.max_tokens = 1;
    m.u.reserve.req_id = 0;
    cr_assert_eq(encode_worker(&m, &f, &out), PD_ERR_INVALID_PARAM);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_REGISTER;
    m.u.reg.role = PD_PROTO_ROLE_DECODE;
    m.u.reg.block_tokens = 16;
    cr_assert_eq(encode_worker(&m, &f, &out), PD_ERR_INVALID_PARAM); /* empty worker_id */

    /* A hand-written kv_event with seq 0 and a bad tier. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 6);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "kv_event");
    pd_mp_put_str(&w, "worker_id");
    pd_mp_put_str(&w, "w");
    pd_mp_put_str(&w, "epoch");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "seq");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "events");
    pd_mp_put_array(&w, 1);
    pd_mp_put_map(&w, 3);
    pd_mp_put_str(&w, "kind");
    pd_mp_put_str(&w, "stored");
    pd_mp_put_str(&w, "tier");
    pd_mp_put_str(&w, "G4");
    pd_mp_put_str(&w, "hashes");
    pd_mp_put_array(&w, 0);
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_EVENTS, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &f),
                 PD_ERR_PROTO);
    cr_assert(strstr(f.reason, "tier") != NULL, "%s", f.reason);
    pd_mp_writer_cleanup(&w);
}

Test(proto, resolves_cache_plans)
{
    pd_proto_cache_t c = {.mode = PD_PROTO_CACHE_AUTO};
    pd_proto_cache_plan_t p;
    pd_proto_cache_plan_make(&c, 1030, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 64);
    cr_assert_eq(p.n_writes, 1);
    cr_assert_eq(p.writes[0].n_blocks, 64);
    cr_assert_eq(p.writes[0].ttl_s, PD_PROTO_TTL_5M_S);
    /* Shorter than min_cached_prefix: read but do not write. */
    pd_proto_cache_plan_make(&c, 1000, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 62);
    cr_assert_eq(p.n_writes, 0);
    c.mode = PD_PROTO_CACHE_OFF;
    pd_proto_cache_plan_make(&c, 1030, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 0);
    cr_assert_eq(p.n_writes, 0);
    c.mode = PD_PROTO_CACHE_EXPLICIT;
    c.n_breakpoints = 3;
    c.breakpoints[0] = (pd_proto_breakpoint_t){10, PD_PROTO_TTL_1H_S}; /* < 1 block */
    c.breakpoints[1] = (pd_proto_breakpoint_t){40, PD_PROTO_TTL_1H_S};
    c.breakpoints[2] = (pd_proto_breakpoint_t){5000, PD_PROTO_TTL_5M_S}; /* past the end */
    pd_proto_cache_plan_make(&c, 100, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 6);
    cr_assert_eq(p.n_writes, 2);
    cr_assert_eq(p.writes[0].n_blocks, 2);
    cr_assert_eq(p.writes[0].ttl_s, PD_PROTO_TTL_1H_S);
    cr_assert_eq(p.writes[1].n_blocks, 6);
    cr_assert_eq(p.writes[1].ttl_s, PD_PROTO_TTL_5M_S);
}

Test(proto, explicit_breakpoints_write_only_their_prefixes_with_the_longest_ttl)
{
    /* 300 tokens = 18 full blocks. Breakpoints (any order) at 250 (15 blocks, 5m), 100 (6
     * blocks, 1h), 40 (2 blocks, 5m) and 120 (7 blocks, 1h): blocks 0..6 live 1h, 7..14
     * 5m, 15..17 are not written. */
    pd_proto_cache_t c = {.mode = PD_PROTO_CACHE_EXPLICIT, .n_breakpoints = 4};
    c.breakpoints[0] = (pd_proto_breakpoint_t){250, PD_PROTO_TTL_5M_S};
    c.breakpoints[1] = (pd_proto_breakpoint_t){100, PD_PROTO_TTL_1H_S};
    c.breakpoints[2] = (pd_proto_breakpoint_t){40, PD_PROTO_TTL_5M_S};
    c.breakpoints[3] = (pd_proto_breakpoint_t){120, PD_PROTO_TTL_1H_S};
    pd_proto_cache_plan_t p;
    pd_proto_cache_plan_make(&c, 300, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 18);
    for (uint32_t i = 0; i < 18; i++) {
        uint64_t want = (i < 7) ? 3600000u : (i < 15) ? 300000u : 0u;
        cr_assert_eq(pd_proto_cache_plan_block_ttl_ms(&p, i), want, "block %u", i);
    }
    /* A prompt shorter than a breakpoint caches its full blocks up to its end. */
    pd_proto_cache_plan_make(&c, 70, 16, 1024, &p);
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_eq(pd_proto_cache_plan_block_ttl_ms(&p, i), 3600000u, "block %u", i);
    cr_assert_eq(pd_proto_cache_plan_block_ttl_ms(&p, 4), 0);
    /* A breakpoint inside the first block writes nothing, but lookups stay allowed. */
    c.n_breakpoints = 1;
    c.breakpoints[0] = (pd_proto_breakpoint_t){15, PD_PROTO_TTL_1H_S};
    pd_proto_cache_plan_make(&c, 300, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 18);
    for (uint32_t i = 0; i < 18; i++)
        cr_assert_eq(pd_proto_cache_plan_block_ttl_ms(&p, i), 0);
    /* Off: nothing read, nothing written, whatever the length. */
    c.mode = PD_PROTO_CACHE_OFF;
    pd_proto_cache_plan_make(&c, 4000, 16, 1024, &p);
    cr_assert_eq(p.read_blocks, 0);
    for (uint32_t i = 0; i < 250; i++)
        cr_assert_eq(pd_proto_cache_plan_block_ttl_ms(&p, i), 0);
}

Test(proto, decoded_message_outlives_its_frame)
{
    /* Callers close the ZeroMQ frame before using the message: nothing may point into it. */
    const unsigned char desc[] = {1, 2, 3, 4, 5};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_PREFILL}, out;
    pd_proto_prefill_t *p = &m.u.prefill;
    p->req_id = 1;
    p->tokens = k_tokens;
    p->n_tokens = 7;
    p->sampling = (pd_proto_sampling_t){1.0, 1.0, 0};
    strcpy(p->dest_worker_id, "d");
    p->dest_xfer_desc = desc;
    p->dest_xfer_desc_bytes = sizeof(desc);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    cr_assert_eq(pd_proto_encode(&m, &w), PD_OK);
    size_t n = pd_mp_writer_size(&w);
    unsigned char *frame = malloc(n);
    memcpy(frame, pd_mp_writer_data(&w), n);
    pd_mp_writer_cleanup(&w);
    cr_assert_eq(pd_proto_decode(&out, PD_PROTO_CHAN_WORKER, frame, n, NULL), PD_OK);
    memset(frame, 0, n);
    free(frame);
    cr_assert_eq(out.u.prefill.dest_xfer_desc_bytes, sizeof(desc));
    cr_assert_eq(memcmp(out.u.prefill.dest_xfer_desc, desc, sizeof(desc)), 0);
    cr_assert_str_eq(out.u.prefill.dest_worker_id, "d");
    cr_assert_eq(out.u.prefill.tokens[6], 32000);
    pd_proto_msg_cleanup(&out);
}

/* Every single-byte mutation and every truncation of valid frames of each message type,
 * decoded on every channel: a status comes back, nothing crashes (run it under ASan). */
Test(proto, survives_mutated_frames)
{
    const unsigned char desc[] = {1, 2, 3};
    pd_proto_kv_event_item_t item = {PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G2, k_hashes, 3};
    pd_proto_worker_info_t wi = {.id = "w", .state = "ready"};
    pd_proto_msg_t msgs[8];
    memset(msgs, 0, sizeof(msgs));
    msgs[0].type = PD_PROTO_TYPE_GENERATE;
    msgs[0].u.generate = (pd_proto_generate_t){
        .id = "g",
        .tokens = k_tokens,
        .n_tokens = 7,
        .max_tokens = 3,
        .sampling = {1.0, 1.0, 0},
        .cache = {.mode = PD_PROTO_CACHE_EXPLICIT, .n_breakpoints = 1, .breakpoints = {{16, 300}}}};
    msgs[1].type = PD_PROTO_TYPE_DONE;
    msgs[1].u.done = (pd_proto_done_t){.id = "g", .tokens = k_tokens, .n_tokens = 3};
    msgs[2].type = PD_PROTO_TYPE_STATUS_REPLY;
    msgs[2].u.status_reply = (pd_proto_status_reply_t){&wi, 1, 5, 1, 2, 0, 0, 0, 0, 0};
    msgs[3].type = PD_PROTO_TYPE_REGISTER;
    msgs[3].u.reg = (pd_proto_register_t){
        .worker_id = "w", .block_tokens = 16, .xfer_desc = desc, .xfer_desc_bytes = 3};
    msgs[4].type = PD_PROTO_TYPE_PREFILL;
    msgs[4].u.prefill =
        (pd_proto_prefill_t){.req_id = 9,
                             .tokens = k_tokens,
                             .n_tokens = 7,
                             .block_hashes = k_hashes,
                             .n_block_hashes = 3,
                             .cache = {.read_blocks = 3, .n_writes = 1, .writes = {{2, 300}}},
                             .sampling = {1.0, 1.0, 0},
                             .dest_worker_id = "d",
                             .dest_xfer_desc = desc,
                             .dest_xfer_desc_bytes = 3,
                             .dest_block_table = k_table,
                             .n_dest_block_table = 5};
    msgs[5].type = PD_PROTO_TYPE_RESERVED;
    msgs[5].u.reserved = (pd_proto_reserved_t){9, PD_OK, 1, k_table, 5};
    msgs[6].type = PD_PROTO_TYPE_KV_EVENT;
    msgs[6].u.kv_event = (pd_proto_kv_event_t){
        .worker_id = "w", .epoch = 1, .seq = 2, .events = &item, .n_events = 1};
    msgs[7].type = PD_PROTO_TYPE_KV_SNAPSHOT;
    msgs[7].u.kv_snapshot =
        (pd_proto_kv_snapshot_t){.worker_id = "w", .seq = 3, .hashes = {k_hashes}, .n_hashes = {3}};
    const unsigned char values[] = {0x00, 0x01, 0x7f, 0x80, 0x90, 0xa0, 0xc0, 0xc1, 0xc4,
                                    0xcc, 0xcf, 0xd3, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    size_t n_ok = 0, n_total = 0;
    for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++) {
        pd_mp_writer_reset(&w);
        cr_assert_eq(pd_proto_encode(&msgs[k], &w), PD_OK, "message %zu", k);
        size_t n = pd_mp_writer_size(&w);
        unsigned char *buf = malloc(n);
        for (size_t i = 0; i < n; i++) {
            for (size_t v = 0; v < sizeof(values); v++) {
                memcpy(buf, pd_mp_writer_data(&w), n);
                buf[i] = values[v];
                for (int chan = 0; chan < 3; chan++) {
                    pd_proto_fault_t f;
                    n_ok += decode_raw((pd_proto_chan_t)chan, buf, n, &f) == PD_OK;
                    n_total++;
                }
            }
            for (int chan = 0; chan < 3; chan++)
                cr_assert_neq(decode_raw((pd_proto_chan_t)chan, pd_mp_writer_data(&w), i, NULL),
                              PD_OK);
        }
        free(buf);
    }
    pd_mp_writer_cleanup(&w);
    cr_assert_lt(n_ok, n_total);
}

/* Frames a strict reader could read two ways are refused: a key twice (at the top or
 * nested anywhere), a key that is not a string; a bin where a string belongs is named. */
Test(proto, rejects_duplicate_and_integer_keys_and_names_a_bin_tenant)
{
    pd_mp_writer_t w;
    pd_proto_fault_t fault;
    pd_mp_writer_init(&w);

    /* The control: a plain status. */
    pd_mp_put_map(&w, 2);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, PD_PROTO_VERSION);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    cr_assert_eq(
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
        PD_OK);

    /* "type" twice: status, then stats. */
    pd_mp_writer_reset(&w);
    pd_mp_put_map(&w, 3);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, PD_PROTO_VERSION);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "stats");
    cr_assert_eq(
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
        PD_ERR_PROTO);
    cr_assert_str_eq(fault.reason, "key 'type' appears twice");

    /* The empty key twice (a key with no bytes; found by fuzzing, where it met memcmp
     * with a null pointer). */
    static const unsigned char empty_twice[] = {0x83, 0xa0, 0x71, 0xa0, 0x71, 0x6e, 0x63};
    cr_assert_eq(decode_raw(PD_PROTO_CHAN_CLIENT, empty_twice, sizeof(empty_twice), &fault),
                 PD_ERR_PROTO);
    cr_assert_str_eq(fault.reason, "key '' appears twice");

    /* A duplicate inside a nested map (a field no schema reads) and inside a map in an
     * array, on the worker channel too. */
    for (int nested_in_array = 0; nested_in_array < 2; nested_in_array++) {
        pd_mp_writer_reset(&w);
        pd_mp_put_map(&w, 3);
        pd_mp_put_str(&w, "v");
        pd_mp_put_u64(&w, PD_PROTO_VERSION);
        pd_mp_put_str(&w, "type");
        pd_mp_put_str(&w, "status");
        pd_mp_put_str(&w, "extra");
        if (nested_in_array)
            pd_mp_put_array(&w, 1);
        pd_mp_put_map(&w, 2);
        pd_mp_put_str(&w, "seed");
        pd_mp_put_u64(&w, 1);
        pd_mp_put_str(&w, "seed");
        pd_mp_put_u64(&w, 2);
        cr_assert_eq(
            decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
            PD_ERR_PROTO);
        cr_assert_str_eq(fault.reason, "key 'seed' appears twice");
        cr_assert_eq(
            decode_raw(PD_PROTO_CHAN_WORKER, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
            PD_ERR_PROTO);
    }

    /* An integer key. */
    pd_mp_writer_reset(&w);
    pd_mp_put_map(&w, 3);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, PD_PROTO_VERSION);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    pd_mp_put_u64(&w, 7);
    pd_mp_put_u64(&w, 1);
    cr_assert_eq(
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
        PD_ERR_PROTO);
    cr_assert_str_eq(fault.reason, "map keys must be strings");

    /* A generate whose tenant is bin: the field is named, not a size limit. */
    pd_mp_writer_reset(&w);
    pd_mp_put_map(&w, 5);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, PD_PROTO_VERSION);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "id");
    pd_mp_put_str(&w, "g1");
    pd_mp_put_str(&w, "tokens");
    pd_mp_put_array(&w, 2);
    pd_mp_put_u64(&w, 1);
    pd_mp_put_u64(&w, 2);
    pd_mp_put_str(&w, "tenant");
    pd_mp_put_bin(&w, "acme", 4);
    cr_assert_eq(
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
        PD_ERR_PROTO);
    cr_assert_str_eq(fault.reason, "field 'tenant' must be a string");
    cr_assert_str_eq(fault.id, "g1");
    pd_mp_writer_cleanup(&w);
}
