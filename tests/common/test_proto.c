/* Every message type survives a round trip through the codec with its fields intact. */
#include "proto_test_util.h"

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

Test(proto, round_trips_generate_with_prompt_and_defaults)
{
    /* A minimal hand-written frame: defaults fill what is absent. */
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 3);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "prompt");
    pd_mp_put_str(&w, "Once upon a time");
    pd_proto_msg_t out;
    pd_proto_fault_t fault;
    cr_assert_eq(pd_proto_decode(&out, PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w),
                                 pd_mp_writer_size(&w), &fault),
                 PD_OK, "%s", fault.reason);
    const pd_proto_generate_t *g = &out.u.generate;
    cr_assert_str_eq(g->prompt, "Once upon a time");
    cr_assert_eq(g->prompt_bytes, 16);
    cr_assert_eq(g->n_tokens, 0);
    cr_assert_eq(g->max_tokens, 64);
    cr_assert_float_eq(g->sampling.temperature, 1.0, 1e-12);
    cr_assert_float_eq(g->sampling.top_p, 1.0, 1e-12);
    cr_assert_eq(g->cache.mode, PD_PROTO_CACHE_AUTO);
    cr_assert_eq(g->stream, true);
    cr_assert_str_eq(g->id, "");
    pd_proto_msg_cleanup(&out);

    /* And the encoder's own prompt form. */
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_GENERATE};
    m.u.generate.prompt = "hi";
    m.u.generate.prompt_bytes = 2;
    m.u.generate.max_tokens = 3;
    m.u.generate.sampling = (pd_proto_sampling_t){0.0, 1.0, 0};
    m.u.generate.cache.mode = PD_PROTO_CACHE_OFF;
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    cr_assert_str_eq(out.u.generate.prompt, "hi");
    cr_assert_eq(out.u.generate.cache.mode, PD_PROTO_CACHE_OFF);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_small_client_messages)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m, out;

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_STATUS;
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_CANCEL;
    strcpy(m.u.cancel.id, "abc");
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    cr_assert_str_eq(out.u.cancel.id, "abc");
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_ACCEPTED;
    strcpy(m.u.accepted.id, "r9");
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    cr_assert_str_eq(out.u.accepted.id, "r9");
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_TOKEN;
    strcpy(m.u.token.id, "r9");
    m.u.token.index = 4095;
    m.u.token.token = 31999;
    m.u.token.text = " a\0b";
    m.u.token.text_bytes = 4;
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    cr_assert_eq(out.u.token.index, 4095);
    cr_assert_eq(out.u.token.token, 31999);
    cr_assert_eq(out.u.token.text_bytes, 4);
    cr_assert_eq(memcmp(out.u.token.text, " a\0b", 4), 0);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_ERROR;
    strcpy(m.u.error.id, "r9");
    m.u.error.code = PD_ERR_OVERLOADED;
    m.u.error.message = "queue full";
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    cr_assert_eq(out.u.error.code, PD_ERR_OVERLOADED);
    cr_assert_str_eq(out.u.error.message, "queue full");
    cr_assert_str_eq(out.u.error.id, "r9");
    pd_proto_msg_cleanup(&out);
    /* PD_OK is not an error code. */
    m.u.error.code = PD_OK;
    pd_mp_writer_reset(&w);
    cr_assert_eq(pd_proto_encode(&m, &w), PD_ERR_INVALID_PARAM);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_done)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_DONE}, out;
    pd_proto_done_t *d = &m.u.done;
    strcpy(d->id, "x");
    d->finish_reason = PD_PROTO_FINISH_EOS;
    d->tokens = k_tokens;
    d->n_tokens = 3;
    d->usage = (pd_proto_usage_t){100, 64, 1024, 3, 0};
    d->timings = (pd_proto_timings_t){1.5, 20.25, 3.0, 30.0, 12.5, 60.0, 2.0, 4.5, 0.5};
    strcpy(d->prefill_worker, "p0");
    strcpy(d->decode_worker, "d1");
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    const pd_proto_done_t *o = &out.u.done;
    cr_assert_eq(o->finish_reason, PD_PROTO_FINISH_EOS);
    cr_assert_eq(o->n_tokens, 3);
    cr_assert_eq(o->tokens[1], 450);
    cr_assert_eq(o->usage.input_tokens, 100);
    cr_assert_eq(o->usage.cache_creation_input_tokens, 64);
    cr_assert_eq(o->usage.cache_read_input_tokens, 1024);
    cr_assert_eq(o->usage.output_tokens, 3);
    cr_assert_float_eq(o->timings.prefill_ms, 20.25, 1e-12);
    cr_assert_float_eq(o->timings.tpot_ms, 12.5, 1e-12);
    cr_assert_float_eq(o->timings.total_ms, 60.0, 1e-12);
    cr_assert_float_eq(o->timings.admission_ms, 2.0, 1e-12);
    cr_assert_float_eq(o->timings.prefill_queue_ms, 4.5, 1e-12);
    cr_assert_float_eq(o->timings.first_step_ms, 0.5, 1e-12);
    cr_assert_str_eq(o->prefill_worker, "p0");
    cr_assert_str_eq(o->decode_worker, "d1");
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_status_reply)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_worker_info_t ws[2] = {
        {.id = "p0",
         .role = PD_PROTO_ROLE_PREFILL,
         .epoch = 77,
         .state = "ready",
         .running = 1,
         .queued = 2,
         .n_blocks = 100,
         .free_blocks = 50,
         .directory_blocks = 9},
        {.id = "d0", .role = PD_PROTO_ROLE_BOTH, .epoch = UINT64_MAX, .state = "resyncing"},
    };
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS_REPLY}, out;
    m.u.status_reply = (pd_proto_status_reply_t){ws, 2, 12345, 3, 4, 0, 0, 0, 0, 0};
    round_trip(&m, PD_PROTO_CHAN_CLIENT, &w, &out);
    const pd_proto_status_reply_t *o = &out.u.status_reply;
    cr_assert_eq(o->n_workers, 2);
    cr_assert_str_eq(o->workers[0].id, "p0");
    cr_assert_eq(o->workers[0].queued, 2);
    cr_assert_eq(o->workers[0].free_blocks, 50);
    cr_assert_eq(o->workers[0].directory_blocks, 9);
    cr_assert_eq(o->workers[1].role, PD_PROTO_ROLE_BOTH);
    cr_assert_eq(o->workers[1].epoch, UINT64_MAX);
    cr_assert_str_eq(o->workers[1].state, "resyncing");
    cr_assert_eq(o->directory_blocks, 12345);
    cr_assert_eq(o->queue_depth, 3);
    cr_assert_eq(o->requests_in_flight, 4);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_registry_messages)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m, out;
    const unsigned char desc[] = {0, 1, 2, 0xff};

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_REGISTER;
    strcpy(m.u.reg.worker_id, "decode-0");
    m.u.reg.role = PD_PROTO_ROLE_DECODE;
    m.u.reg.epoch = 0xdeadbeefcafeull;
    strcpy(m.u.reg.model_id, "stories15M");
    m.u.reg.block_tokens = 16;
    m.u.reg.n_blocks = 4096;
    m.u.reg.xfer_desc = desc;
    m.u.reg.xfer_desc_bytes = sizeof(desc);
    strcpy(m.u.reg.events_endpoint, "tcp://127.0.0.1:7200");
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_str_eq(out.u.reg.worker_id, "decode-0");
    cr_assert_eq(out.u.reg.role, PD_PROTO_ROLE_DECODE);
    cr_assert_eq(out.u.reg.epoch, 0xdeadbeefcafeull);
    cr_assert_str_eq(out.u.reg.model_id, "stories15M");
    cr_assert_eq(out.u.reg.block_tokens, 16);
    cr_assert_eq(out.u.reg.n_blocks, 4096);
    cr_assert_eq(out.u.reg.xfer_desc_bytes, 4);
    cr_assert_eq(memcmp(out.u.reg.xfer_desc, desc, 4), 0);
    cr_assert_str_eq(out.u.reg.events_endpoint, "tcp://127.0.0.1:7200");
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_REGISTERED;
    m.u.registered.heartbeat_ms = 250;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.registered.heartbeat_ms, 250);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_HEARTBEAT;
    strcpy(m.u.heartbeat.worker_id, "decode-0");
    m.u.heartbeat.epoch = 5;
    m.u.heartbeat.running = 3;
    m.u.heartbeat.queued = 4;
    m.u.heartbeat.free_blocks = 1000;
    m.u.heartbeat.kv_seq = 77;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.heartbeat.kv_seq, 77);
    cr_assert_eq(out.u.heartbeat.running, 3);
    cr_assert_eq(out.u.heartbeat.queued, 4);
    cr_assert_eq(out.u.heartbeat.free_blocks, 1000);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_RESYNC;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_WORKER_CANCEL;
    m.u.worker_cancel.req_id = 99;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.worker_cancel.req_id, 99);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_WORKER_ERROR;
    m.u.worker_error.req_id = 99;
    m.u.worker_error.code = PD_ERR_NO_RESOURCE;
    m.u.worker_error.message = "pool full";
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.worker_error.req_id, 99);
    cr_assert_eq(out.u.worker_error.code, PD_ERR_NO_RESOURCE);
    cr_assert_str_eq(out.u.worker_error.message, "pool full");
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_reserve_and_reserved)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_RESERVE}, out;
    pd_proto_reserve_t *r = &m.u.reserve;
    r->req_id = 1ull << 40;
    r->tokens = k_tokens;
    r->n_tokens = 7;
    r->block_hashes = k_hashes;
    r->n_block_hashes = 3;
    r->cache.read_blocks = 3;
    r->cache.n_writes = 2;
    r->cache.writes[0] = (pd_proto_cache_write_t){1, PD_PROTO_TTL_1H_S};
    r->cache.writes[1] = (pd_proto_cache_write_t){3, PD_PROTO_TTL_5M_S};
    r->max_tokens = 8;
    r->sampling = (pd_proto_sampling_t){0.0, 1.0, 7};
    int32_t stop[] = {2};
    r->stop = stop;
    r->n_stop = 1;
    r->deadline_ms = 30000;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    const pd_proto_reserve_t *o = &out.u.reserve;
    cr_assert_eq(o->req_id, 1ull << 40);
    cr_assert_arr_eq(o->tokens, k_tokens, sizeof(k_tokens));
    cr_assert_arr_eq(o->block_hashes, k_hashes, sizeof(k_hashes));
    cr_assert_eq(o->cache.read_blocks, 3);
    cr_assert_eq(o->cache.n_writes, 2);
    cr_assert_eq(o->cache.writes[0].ttl_s, PD_PROTO_TTL_1H_S);
    cr_assert_eq(o->cache.writes[1].n_blocks, 3);
    cr_assert_eq(o->max_tokens, 8);
    cr_assert_eq(o->sampling.seed, 7);
    cr_assert_eq(o->n_stop, 1);
    cr_assert_eq(o->deadline_ms, 30000);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_RESERVED;
    m.u.reserved.req_id = 3;
    m.u.reserved.status = PD_OK;
    m.u.reserved.n_cached_blocks = 2;
    m.u.reserved.block_table = k_table;
    m.u.reserved.n_block_table = 5;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.reserved.status, PD_OK);
    cr_assert_eq(out.u.reserved.n_cached_blocks, 2);
    cr_assert_arr_eq(out.u.reserved.block_table, k_table, sizeof(k_table));
    pd_proto_msg_cleanup(&out);

    m.u.reserved.status = PD_ERR_NO_RESOURCE;
    m.u.reserved.n_cached_blocks = 0;
    m.u.reserved.n_block_table = 0;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.reserved.status, PD_ERR_NO_RESOURCE);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_prefill_and_prefilled)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    const unsigned char desc[] = {9, 8, 7};
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_PREFILL}, out;
    pd_proto_prefill_t *p = &m.u.prefill;
    p->req_id = 12;
    p->tokens = k_tokens;
    p->n_tokens = 7;
    p->block_hashes = k_hashes;
    p->n_block_hashes = 3;
    p->n_skip_blocks = 2;
    p->cache.read_blocks = 3;
    p->sampling = (pd_proto_sampling_t){1.0, 0.9, 3};
    strcpy(p->dest_worker_id, "decode-0");
    p->dest_epoch = 44;
    p->dest_xfer_desc = desc;
    p->dest_xfer_desc_bytes = 3;
    p->dest_block_table = k_table;
    p->n_dest_block_table = 5;
    p->deadline_ms = 100;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    const pd_proto_prefill_t *o = &out.u.prefill;
    cr_assert_eq(o->req_id, 12);
    cr_assert_eq(o->n_tokens, 7);
    cr_assert_eq(o->n_block_hashes, 3);
    cr_assert_eq(o->block_hashes[1], UINT64_MAX);
    cr_assert_eq(o->n_skip_blocks, 2);
    cr_assert_eq(o->cache.n_writes, 0);
    cr_assert_str_eq(o->dest_worker_id, "decode-0");
    cr_assert_eq(o->dest_epoch, 44);
    cr_assert_eq(o->dest_xfer_desc_bytes, 3);
    cr_assert_eq(memcmp(o->dest_xfer_desc, desc, 3), 0);
    cr_assert_arr_eq(o->dest_block_table, k_table, sizeof(k_table));
    cr_assert_eq(o->deadline_ms, 100);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_PREFILLED;
    m.u.prefilled = (pd_proto_prefilled_t){.req_id = 12,
                                           .first_token = 29871,
                                           .n_computed_tokens = 500,
                                           .n_cached_tokens = 524,
                                           .cache_creation_input_tokens = 16,
                                           .prefill_ms = 45.5,
                                           .transfer_ms = 2.25};
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.prefilled.first_token, 29871);
    cr_assert_eq(out.u.prefilled.n_computed_tokens, 500);
    cr_assert_eq(out.u.prefilled.n_cached_tokens, 524);
    cr_assert_eq(out.u.prefilled.cache_creation_input_tokens, 16);
    cr_assert_float_eq(out.u.prefilled.prefill_ms, 45.5, 1e-12);
    cr_assert_float_eq(out.u.prefilled.transfer_ms, 2.25, 1e-12);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

/* The timing breakdown a prefill worker reports, and its queue in the heartbeat: sent
 * when set, absent (and decoded as 0) when 0, so that frames without them stay as they
 * were. */
Test(proto, prefill_breakdown_fields_round_trip_and_zeros_stay_off_the_wire)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_PREFILLED}, out;
    m.u.prefilled = (pd_proto_prefilled_t){.req_id = 3,
                                           .first_token = 7,
                                           .n_computed_tokens = 300,
                                           .n_cached_tokens = 64,
                                           .prefill_ms = 9.5,
                                           .transfer_ms = 0.5,
                                           .queue_ms = 12.25,
                                           .compute_ms = 8.0,
                                           .fetch_ms = 1.5,
                                           .n_fetched_tokens = 48,
                                           .n_chunks = 5};
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    const size_t full = pd_mp_writer_size(&w);
    cr_assert_float_eq(out.u.prefilled.queue_ms, 12.25, 1e-12);
    cr_assert_float_eq(out.u.prefilled.compute_ms, 8.0, 1e-12);
    cr_assert_float_eq(out.u.prefilled.fetch_ms, 1.5, 1e-12);
    cr_assert_eq(out.u.prefilled.n_fetched_tokens, 48);
    cr_assert_eq(out.u.prefilled.n_chunks, 5);
    pd_proto_msg_cleanup(&out);
    m.u.prefilled.queue_ms = m.u.prefilled.compute_ms = m.u.prefilled.fetch_ms = 0;
    m.u.prefilled.n_fetched_tokens = m.u.prefilled.n_chunks = 0;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    /* Five keys fewer, each of at least 8 characters and a value. */
    cr_assert_lt(pd_mp_writer_size(&w) + 5 * (1 + 8 + 1), full + 1);
    cr_assert_eq(out.u.prefilled.n_chunks, 0);
    cr_assert_float_eq(out.u.prefilled.queue_ms, 0.0, 1e-12);
    pd_proto_msg_cleanup(&out);

    m = (pd_proto_msg_t){.type = PD_PROTO_TYPE_HEARTBEAT};
    m.u.heartbeat = (pd_proto_heartbeat_t){.worker_id = "prefill-0",
                                           .epoch = 5,
                                           .running = 1,
                                           .queued = 2,
                                           .free_blocks = 10,
                                           .queued_tokens = 4000};
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.heartbeat.queued_tokens, 4000);
    cr_assert_eq(out.u.heartbeat.queued, 2);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_decode_stream)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_WORKER_TOKEN}, out;
    m.u.worker_token = (pd_proto_worker_token_t){5, 0, 13, false};
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert_eq(out.u.worker_token.req_id, 5);
    cr_assert_eq(out.u.worker_token.index, 0);
    cr_assert_eq(out.u.worker_token.token, 13);
    cr_assert(!out.u.worker_token.last);
    size_t bytes_not_last = pd_mp_writer_size(&w);
    pd_proto_msg_cleanup(&out);
    /* The last token says so; a token that is not the last carries no "last" key. */
    m.u.worker_token.last = true;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    cr_assert(out.u.worker_token.last);
    cr_assert_eq(pd_mp_writer_size(&w), bytes_not_last + 6, "\"last\": true is 6 bytes");
    pd_proto_msg_cleanup(&out);
    /* "token" on the client channel is a different message: it needs "id". */
    pd_proto_fault_t fault;
    cr_assert_eq(
        decode_raw(PD_PROTO_CHAN_CLIENT, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &fault),
        PD_ERR_PROTO);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_WORKER_DONE;
    m.u.worker_done = (pd_proto_worker_done_t){5, PD_PROTO_FINISH_STOP, 9, 32, 48, 1.25, 8.5};
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    const pd_proto_worker_done_t *o = &out.u.worker_done;
    cr_assert_eq(o->finish_reason, PD_PROTO_FINISH_STOP);
    cr_assert_eq(o->output_tokens, 9);
    cr_assert_eq(o->cache_read_input_tokens, 32);
    cr_assert_eq(o->cache_creation_input_tokens, 48);
    cr_assert_float_eq(o->transfer_wait_ms, 1.25, 1e-12);
    cr_assert_float_eq(o->tpot_ms, 8.5, 1e-12);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}

Test(proto, round_trips_kv_event_and_snapshot)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_proto_kv_event_item_t items[2] = {
        {PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, k_hashes, 3},
        {PD_PROTO_EVENT_TIER, PD_PROTO_TIER_G3, k_hashes + 2, 1},
    };
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_KV_EVENT}, out;
    strcpy(m.u.kv_event.worker_id, "w");
    m.u.kv_event.epoch = 8;
    m.u.kv_event.seq = 1;
    m.u.kv_event.events = items;
    m.u.kv_event.n_events = 2;
    round_trip(&m, PD_PROTO_CHAN_EVENTS, &w, &out);
    const pd_proto_kv_event_t *e = &out.u.kv_event;
    cr_assert_eq(e->seq, 1);
    cr_assert_eq(e->n_events, 2);
    cr_assert_eq(e->events[0].kind, PD_PROTO_EVENT_STORED);
    cr_assert_eq(e->events[0].n_hashes, 3);
    cr_assert_eq(e->events[0].hashes[0], k_hashes[0]);
    cr_assert_eq(e->events[1].kind, PD_PROTO_EVENT_TIER);
    cr_assert_eq(e->events[1].tier, PD_PROTO_TIER_G3);
    pd_proto_msg_cleanup(&out);

    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_KV_SNAPSHOT;
    strcpy(m.u.kv_snapshot.worker_id, "w");
    m.u.kv_snapshot.epoch = 8;
    m.u.kv_snapshot.seq = 41;
    m.u.kv_snapshot.hashes[PD_PROTO_TIER_G1] = k_hashes;
    m.u.kv_snapshot.n_hashes[PD_PROTO_TIER_G1] = 2;
    m.u.kv_snapshot.hashes[PD_PROTO_TIER_G3] = k_hashes + 2;
    m.u.kv_snapshot.n_hashes[PD_PROTO_TIER_G3] = 1;
    round_trip(&m, PD_PROTO_CHAN_WORKER, &w, &out);
    const pd_proto_kv_snapshot_t *s = &out.u.kv_snapshot;
    cr_assert_eq(s->seq, 41);
    cr_assert_eq(s->n_hashes[0], 2);
    cr_assert_eq(s->n_hashes[1], 0);
    cr_assert_eq(s->n_hashes[2], 1);
    cr_assert_eq(s->hashes[2][0], 7);
    pd_proto_msg_cleanup(&out);
    pd_mp_writer_cleanup(&w);
}
