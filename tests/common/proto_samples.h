/* Sample messages of every type, with the optional branches each can take (prompt or
 * tokens, text or none, empty and full arrays, extreme values). test_proto_wire.c encodes
 * them and compares the bytes with frames recorded from the encoder the table-driven one
 * replaced; the decoder fuzz target seeds its corpus with them. */
#ifndef PD_TEST_PROTO_SAMPLES_H
#define PD_TEST_PROTO_SAMPLES_H

#include "pd/proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const int32_t pd_sample_tokens[] = {1, 450, 4996, 17354, 1701, 0, INT32_MAX};
static const int32_t pd_sample_stop[] = {2, 13};
static const uint64_t pd_sample_hashes[] = {0x1234567890abcdefull, UINT64_MAX, 7, 0};
static const uint32_t pd_sample_table[] = {5, 6, 7, 8, UINT32_MAX};
static const unsigned char pd_sample_desc[] = {0x82, 0xa1, 'v', 0x01, 0x00, 0xff};
static const uint32_t pd_sample_src_table[] = {12, UINT32_MAX, 14};
static const uint64_t pd_sample_src_sums[] = {0xfedcba9876543210ull, 0, 1};
static const uint32_t pd_sample_holes[] = {1};
static const pd_proto_worker_info_t pd_sample_workers[] = {
    {"prefill-0", PD_PROTO_ROLE_PREFILL, 1, "ready", 1, 2, 4096, 4000, 12},
    {"decode-0", PD_PROTO_ROLE_DECODE, UINT64_MAX, "resyncing", 0, 0, 0, 0, 0},
    {"both-0", PD_PROTO_ROLE_BOTH, 7, "ready", UINT32_MAX, 3, 5, 6, 7},
};
static const pd_proto_worker_stats_t pd_sample_worker_stats = {
    4000, 8192, 17, UINT32_MAX, 0, 123456789, UINT64_MAX, 1ull << 40, 1ull << 38};
static const pd_proto_stats_worker_t pd_sample_stats_workers[] = {
    {"prefill-0",
     PD_PROTO_ROLE_PREFILL,
     "ready",
     1,
     0,
     4096,
     4000,
     12,
     {100, 0, 0, 0, 0, 7, 3, 65536, 16640}},
    {"decode-0", PD_PROTO_ROLE_DECODE, "resyncing", 0, 2, 8192, 0, 0, {0}},
};
static const pd_proto_kv_event_item_t pd_sample_events[] = {
    {PD_PROTO_EVENT_STORED, PD_PROTO_TIER_G1, pd_sample_hashes, 4},
    {PD_PROTO_EVENT_REMOVED, PD_PROTO_TIER_G2, NULL, 0},
    {PD_PROTO_EVENT_TIER, PD_PROTO_TIER_G3, pd_sample_hashes + 1, 2},
};

/* Fill m with sample k; false past the last. */
static inline bool pd_sample_msg(int k, pd_proto_msg_t *m)
{
    const pd_proto_sampling_t greedy = {0.0, 1.0, 0}, sampled = {0.7, 0.95, UINT64_MAX};
    const pd_proto_cache_plan_t plan = {3, 2, {{2, PD_PROTO_TTL_1H_S}, {3, PD_PROTO_TTL_5M_S}}};
    memset(m, 0, sizeof(*m));
    switch (k) {
    case 0: /* generate: tokens, explicit cache, no stream */
        m->type = PD_PROTO_TYPE_GENERATE;
        strcpy(m->u.generate.id, "req-1");
        m->u.generate.tokens = pd_sample_tokens;
        m->u.generate.n_tokens = 7;
        m->u.generate.max_tokens = 4096;
        m->u.generate.sampling = sampled;
        m->u.generate.stop = pd_sample_stop;
        m->u.generate.n_stop = 2;
        strcpy(m->u.generate.tenant, "acme");
        m->u.generate.cache.mode = PD_PROTO_CACHE_EXPLICIT;
        m->u.generate.cache.n_breakpoints = 2;
        m->u.generate.cache.breakpoints[0] = (pd_proto_breakpoint_t){16, PD_PROTO_TTL_5M_S};
        m->u.generate.cache.breakpoints[1] = (pd_proto_breakpoint_t){1024, PD_PROTO_TTL_1H_S};
        return true;
    case 1: /* generate: a prompt holding multi-byte UTF-8, defaults elsewhere */
        m->type = PD_PROTO_TYPE_GENERATE;
        m->u.generate.prompt = "Once upon a time, caf\xc3\xa9";
        m->u.generate.prompt_bytes = strlen(m->u.generate.prompt);
        m->u.generate.max_tokens = 1;
        m->u.generate.sampling = greedy;
        m->u.generate.cache.mode = PD_PROTO_CACHE_OFF;
        m->u.generate.stream = true;
        return true;
    case 2:
        m->type = PD_PROTO_TYPE_STATUS;
        return true;
    case 3:
        m->type = PD_PROTO_TYPE_CANCEL;
        strcpy(m->u.cancel.id, "req-1");
        return true;
    case 4:
        m->type = PD_PROTO_TYPE_ACCEPTED;
        strcpy(m->u.accepted.id, "");
        return true;
    case 5: /* token with a piece holding a NUL byte */
        m->type = PD_PROTO_TYPE_TOKEN;
        strcpy(m->u.token.id, "r9");
        m->u.token.index = 4095;
        m->u.token.token = 31999;
        m->u.token.text = " a\0b";
        m->u.token.text_bytes = 4;
        return true;
    case 6: /* token without a tokenizer */
        m->type = PD_PROTO_TYPE_TOKEN;
        strcpy(m->u.token.id, "r9");
        m->u.token.token = INT32_MAX;
        return true;
    case 7:
        m->type = PD_PROTO_TYPE_DONE;
        strcpy(m->u.done.id, "x");
        m->u.done.finish_reason = PD_PROTO_FINISH_EOS;
        m->u.done.tokens = pd_sample_tokens;
        m->u.done.n_tokens = 3;
        m->u.done.usage = (pd_proto_usage_t){100, 64, 1024, 3, 0};
        m->u.done.timings = (pd_proto_timings_t){1.5, 20.25, 3.0, 30.0, 12.5, 1e9, 0, 0, 0};
        strcpy(m->u.done.prefill_worker, "prefill-0");
        strcpy(m->u.done.decode_worker, "decode-1");
        return true;
    case 8:
        m->type = PD_PROTO_TYPE_ERROR;
        strcpy(m->u.error.id, "r9");
        m->u.error.code = PD_ERR_OVERLOADED;
        m->u.error.message = "queue full";
        return true;
    case 9: /* error without a message */
        m->type = PD_PROTO_TYPE_ERROR;
        m->u.error.code = PD_ERR_INTERNAL;
        return true;
    case 10:
        m->type = PD_PROTO_TYPE_STATUS_REPLY;
        m->u.status_reply = (pd_proto_status_reply_t){
            pd_sample_workers, 3, UINT64_MAX, 17, UINT32_MAX, 0, 0, 0, 0, 0};
        return true;
    case 11:
        m->type = PD_PROTO_TYPE_STATUS_REPLY;
        return true;
    case 12:
        m->type = PD_PROTO_TYPE_REGISTER;
        strcpy(m->u.reg.worker_id, "decode-0");
        m->u.reg.role = PD_PROTO_ROLE_DECODE;
        m->u.reg.epoch = 0xfedcba9876543210ull;
        strcpy(m->u.reg.model_id, "pdkv-small-s1");
        m->u.reg.block_tokens = 16;
        m->u.reg.n_blocks = 65536;
        m->u.reg.xfer_desc = pd_sample_desc;
        m->u.reg.xfer_desc_bytes = sizeof(pd_sample_desc);
        strcpy(m->u.reg.events_endpoint, "tcp://127.0.0.1:7201");
        return true;
    case 13:
        m->type = PD_PROTO_TYPE_REGISTERED;
        m->u.registered.heartbeat_ms = 1000;
        return true;
    case 14:
        m->type = PD_PROTO_TYPE_HEARTBEAT;
        m->u.heartbeat = (pd_proto_heartbeat_t){.worker_id = "prefill-0",
                                                .epoch = 42,
                                                .running = 3,
                                                .queued = 1,
                                                .free_blocks = 4000,
                                                .kv_seq = 99};
        return true;
    case 15:
        m->type = PD_PROTO_TYPE_RESERVE;
        m->u.reserve = (pd_proto_reserve_t){.req_id = UINT64_MAX,
                                            .tokens = pd_sample_tokens,
                                            .n_tokens = 7,
                                            .block_hashes = pd_sample_hashes,
                                            .n_block_hashes = 3,
                                            .cache = plan,
                                            .max_tokens = 64,
                                            .sampling = sampled,
                                            .stop = pd_sample_stop,
                                            .n_stop = 2,
                                            .deadline_ms = PD_PROTO_MAX_DEADLINE_MS};
        return true;
    case 16: /* reserve with nothing cached and no stop ids */
        m->type = PD_PROTO_TYPE_RESERVE;
        m->u.reserve = (pd_proto_reserve_t){.req_id = 1,
                                            .tokens = pd_sample_tokens,
                                            .n_tokens = 1,
                                            .max_tokens = 1,
                                            .sampling = greedy};
        return true;
    case 17:
        m->type = PD_PROTO_TYPE_RESERVED;
        m->u.reserved = (pd_proto_reserved_t){9, PD_OK, 2, pd_sample_table, 5};
        return true;
    case 18: /* a refused reservation */
        m->type = PD_PROTO_TYPE_RESERVED;
        m->u.reserved = (pd_proto_reserved_t){9, PD_ERR_NO_RESOURCE, 0, NULL, 0};
        return true;
    case 19:
        m->type = PD_PROTO_TYPE_PREFILL;
        m->u.prefill = (pd_proto_prefill_t){.req_id = 9,
                                            .tokens = pd_sample_tokens,
                                            .n_tokens = 7,
                                            .block_hashes = pd_sample_hashes,
                                            .n_block_hashes = 4,
                                            .n_skip_blocks = 2,
                                            .cache = plan,
                                            .sampling = sampled,
                                            .dest_worker_id = "decode-0",
                                            .dest_epoch = 5,
                                            .dest_xfer_desc = pd_sample_desc,
                                            .dest_xfer_desc_bytes = sizeof(pd_sample_desc),
                                            .dest_block_table = pd_sample_table,
                                            .n_dest_block_table = 5,
                                            .deadline_ms = 120000};
        return true;
    case 20:
        m->type = PD_PROTO_TYPE_PREFILLED;
        m->u.prefilled = (pd_proto_prefilled_t){.req_id = 9,
                                                .first_token = 450,
                                                .n_computed_tokens = 1536,
                                                .n_cached_tokens = 512,
                                                .cache_creation_input_tokens = 1024,
                                                .prefill_ms = 812.5,
                                                .transfer_ms = 3.25};
        return true;
    case 21:
        m->type = PD_PROTO_TYPE_WORKER_TOKEN;
        m->u.worker_token = (pd_proto_worker_token_t){9, 0, 450, false};
        return true;
    case 22:
        m->type = PD_PROTO_TYPE_WORKER_DONE;
        m->u.worker_done =
            (pd_proto_worker_done_t){9, PD_PROTO_FINISH_STOP, 32, 512, 256, 45.5, 11.125};
        return true;
    case 23:
        m->type = PD_PROTO_TYPE_WORKER_ERROR;
        m->u.worker_error = (pd_proto_worker_error_t){0, PD_ERR_NOT_FOUND, "unknown worker"};
        return true;
    case 24:
        m->type = PD_PROTO_TYPE_WORKER_CANCEL;
        m->u.worker_cancel.req_id = 9;
        return true;
    case 25:
        m->type = PD_PROTO_TYPE_RESYNC;
        return true;
    case 26:
        m->type = PD_PROTO_TYPE_KV_SNAPSHOT;
        m->u.kv_snapshot =
            (pd_proto_kv_snapshot_t){.worker_id = "decode-0",
                                     .epoch = 5,
                                     .seq = 12,
                                     .hashes = {pd_sample_hashes, NULL, pd_sample_hashes + 2},
                                     .n_hashes = {4, 0, 1}};
        return true;
    case 27:
        m->type = PD_PROTO_TYPE_KV_EVENT;
        m->u.kv_event = (pd_proto_kv_event_t){.worker_id = "decode-0",
                                              .epoch = 5,
                                              .seq = 13,
                                              .events = pd_sample_events,
                                              .n_events = 3};
        return true;
    /* Types and fields added after the table-driven codec took over: their frames were
     * recorded from it. */
    case 28: /* heartbeat with stats */
        m->type = PD_PROTO_TYPE_HEARTBEAT;
        m->u.heartbeat = (pd_proto_heartbeat_t){.worker_id = "decode-0",
                                                .epoch = 43,
                                                .running = 2,
                                                .free_blocks = 12,
                                                .stats = &pd_sample_worker_stats};
        return true;
    case 29:
        m->type = PD_PROTO_TYPE_STOP;
        snprintf(m->u.stop.id, sizeof(m->u.stop.id), "g1f");
        return true;
    case 30:
        m->type = PD_PROTO_TYPE_STATS;
        return true;
    case 31: /* stats_reply for a client that is not admin: no workers */
        m->type = PD_PROTO_TYPE_STATS_REPLY;
        m->u.stats_reply = (pd_proto_stats_reply_t){.n_prefill = 1,
                                                    .n_decode = 2,
                                                    .n_both = 0,
                                                    .n_ready = 2,
                                                    .queue_depth = 3,
                                                    .requests_in_flight = 9,
                                                    .requests_total = UINT64_MAX,
                                                    .directory_blocks = 77,
                                                    .g1_blocks = 12288,
                                                    .g1_free_blocks = 12000,
                                                    .g1_cached_blocks = 80,
                                                    .g2_blocks = 1024,
                                                    .g2_used_blocks = 5,
                                                    .hit_blocks = 1000,
                                                    .miss_blocks = 2000,
                                                    .xfer_bytes = 1ull << 33,
                                                    .xfer_bytes_wire = 1ull << 31,
                                                    .xfer_count = 41,
                                                    .xfer_ms_sum = 123.25};
        return true;
    case 32: /* stats_reply with the workers */
        m->type = PD_PROTO_TYPE_STATS_REPLY;
        m->u.stats_reply = (pd_proto_stats_reply_t){.n_prefill = 1,
                                                    .n_decode = 1,
                                                    .n_ready = 1,
                                                    .workers = pd_sample_stats_workers,
                                                    .n_workers = 2};
        return true;
    case 33:
        m->type = PD_PROTO_TYPE_PIN;
        m->u.pin = (pd_proto_pin_t){9, pd_sample_hashes, 4, 60000};
        return true;
    case 34: /* a holder with a hole at block 1 */
        m->type = PD_PROTO_TYPE_PINNED;
        m->u.pinned = (pd_proto_pinned_t){9, PD_OK, pd_sample_src_table, 3, pd_sample_src_sums, 3};
        return true;
    case 35: /* prefill reading from a third holder */
        m->type = PD_PROTO_TYPE_PREFILL;
        m->u.prefill = (pd_proto_prefill_t){.req_id = 9,
                                            .tokens = pd_sample_tokens,
                                            .n_tokens = 7,
                                            .block_hashes = pd_sample_hashes,
                                            .n_block_hashes = 4,
                                            .n_skip_blocks = 0,
                                            .cache = plan,
                                            .sampling = greedy,
                                            .dest_worker_id = "decode-0",
                                            .dest_epoch = 5,
                                            .dest_xfer_desc = pd_sample_desc,
                                            .dest_xfer_desc_bytes = sizeof(pd_sample_desc),
                                            .dest_block_table = pd_sample_table,
                                            .n_dest_block_table = 5,
                                            .deadline_ms = 120000,
                                            .src_worker_id = "decode-1",
                                            .src_epoch = 6,
                                            .src_xfer_desc = pd_sample_desc,
                                            .src_xfer_desc_bytes = sizeof(pd_sample_desc),
                                            .src_block_table = pd_sample_src_table,
                                            .n_src_block_table = 3,
                                            .src_checksums = pd_sample_src_sums,
                                            .n_src_checksums = 3};
        return true;
    case 36: /* prefilled after filling a hole */
        m->type = PD_PROTO_TYPE_PREFILLED;
        m->u.prefilled = (pd_proto_prefilled_t){.req_id = 9,
                                                .first_token = 450,
                                                .n_computed_tokens = 32,
                                                .n_cached_tokens = 16,
                                                .prefill_ms = 2.5,
                                                .transfer_ms = 0.25,
                                                .recomputed_blocks = pd_sample_holes,
                                                .n_recomputed_blocks = 1};
        return true;
    case 37: /* done after filling a hole */
        m->type = PD_PROTO_TYPE_DONE;
        strcpy(m->u.done.id, "y");
        m->u.done.finish_reason = PD_PROTO_FINISH_LENGTH;
        m->u.done.tokens = pd_sample_tokens;
        m->u.done.n_tokens = 1;
        m->u.done.usage = (pd_proto_usage_t){32, 0, 16, 1, 0};
        m->u.done.recomputed_blocks = pd_sample_holes;
        m->u.done.n_recomputed_blocks = 1;
        return true;
    case 38: /* status with the holder counters */
        m->type = PD_PROTO_TYPE_STATUS_REPLY;
        m->u.status_reply = (pd_proto_status_reply_t){NULL, 0, 5, 0, 1, 3, 2, 0, 0, 0};
        return true;
    default:
        return false;
    }
}

#endif
