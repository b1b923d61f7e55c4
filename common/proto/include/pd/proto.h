/* The pdkv wire protocol (version 1): every message is one ZeroMQ frame holding one
 * msgpack map with "v" (1), "type" (string) and the fields of that type. The fields of
 * every type are described once, in a table (src/proto_schema.c) that the encoder, the
 * decoder and docs/PROTOCOL.md's tables all follow.
 *
 * Three channels carry messages, and a type name means a different message on each:
 *   PD_PROTO_CHAN_CLIENT  client DEALER <-> router ROUTER (client requests, replies)
 *   PD_PROTO_CHAN_WORKER  worker DEALER <-> router ROUTER (registry, requests, tokens)
 *   PD_PROTO_CHAN_EVENTS  worker PUB -> router SUB (KV events)
 *
 * Decoding checks the frame against the channel's limits before msgpack allocates
 * anything, then checks every field's type, range and length. A decoded message owns its
 * memory (one msgpack zone, bounded by the frame size): pointers inside it stay valid until
 * pd_proto_msg_cleanup(). Encoding validates the same limits, so that a sender never
 * produces a frame its receiver rejects. */
#ifndef PD_PROTO_H
#define PD_PROTO_H

#include "pd/mp.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_PROTO_VERSION 1

/* Limits (also written in docs/PROTOCOL.md). Counts, not bytes, unless named _BYTES. */
#define PD_PROTO_MAX_CLIENT_FRAME_BYTES (1u << 20)  /* one client frame */
#define PD_PROTO_MAX_WORKER_FRAME_BYTES (16u << 20) /* one worker or event frame */
#define PD_PROTO_ID_CAP                 65          /* client request id: <= 64 bytes + NUL */
#define PD_PROTO_NAME_CAP               65          /* worker_id, tenant: <= 64 bytes + NUL */
#define PD_PROTO_MODEL_ID_CAP           129         /* model_id: <= 128 bytes + NUL */
#define PD_PROTO_ENDPOINT_CAP           257         /* events_endpoint: <= 256 bytes + NUL */
#define PD_PROTO_MAX_PROMPT_BYTES       (512u << 10)
#define PD_PROTO_MAX_PROMPT_TOKENS      32768
#define PD_PROTO_MAX_NEW_TOKENS         4096
#define PD_PROTO_MAX_TOKEN_ID           INT32_MAX
#define PD_PROTO_MAX_STOP               16
#define PD_PROTO_MAX_BREAKPOINTS        4
#define PD_PROTO_MAX_MESSAGE_BYTES      1024 /* error message text */
#define PD_PROTO_MAX_PIECE_BYTES        256  /* one token's text */
#define PD_PROTO_MAX_XFER_DESC_BYTES    (64u << 10)
#define PD_PROTO_MAX_BLOCKS             65536 /* block_hashes, block_table */
#define PD_PROTO_MAX_BLOCK_TOKENS       4096
#define PD_PROTO_MAX_WORKERS            256        /* status_reply, stats_reply workers */
#define PD_PROTO_MAX_EVENTS             1024       /* kv_event events per batch */
#define PD_PROTO_MAX_EVENT_HASHES       65536      /* hashes in one kv_event item */
#define PD_PROTO_MAX_SNAPSHOT_HASHES    (1u << 20) /* hashes of one tier in kv_snapshot */
#define PD_PROTO_MAX_DEADLINE_MS        (24u * 3600u * 1000u)
#define PD_PROTO_REASON_CAP             160

/* Frame limits handed to pd_mp_check; sockets set ZMQ_MAXMSGSIZE to max_frame_bytes. */
extern const pd_mp_limits_t pd_proto_limits_client;
extern const pd_mp_limits_t pd_proto_limits_worker;

typedef enum pd_proto_chan {
    PD_PROTO_CHAN_CLIENT = 0,
    PD_PROTO_CHAN_WORKER,
    PD_PROTO_CHAN_EVENTS
} pd_proto_chan_t;

typedef enum pd_proto_type {
    PD_PROTO_TYPE_NONE = 0,
    /* client -> router */
    PD_PROTO_TYPE_GENERATE,
    PD_PROTO_TYPE_STATUS,
    PD_PROTO_TYPE_CANCEL,
    /* router -> client */
    PD_PROTO_TYPE_ACCEPTED,
    PD_PROTO_TYPE_TOKEN,
    PD_PROTO_TYPE_DONE,
    PD_PROTO_TYPE_ERROR,
    PD_PROTO_TYPE_STATUS_REPLY,
    /* worker -> router */
    PD_PROTO_TYPE_REGISTER,
    PD_PROTO_TYPE_HEARTBEAT,
    PD_PROTO_TYPE_RESERVED,
    PD_PROTO_TYPE_PREFILLED,
    PD_PROTO_TYPE_WORKER_TOKEN, /* "token" on the worker channel */
    PD_PROTO_TYPE_WORKER_DONE,  /* "done" on the worker channel */
    PD_PROTO_TYPE_WORKER_ERROR, /* "error" on the worker channel (both directions) */
    PD_PROTO_TYPE_KV_SNAPSHOT,
    PD_PROTO_TYPE_PINNED,
    /* router -> worker */
    PD_PROTO_TYPE_REGISTERED,
    PD_PROTO_TYPE_RESERVE,
    PD_PROTO_TYPE_PREFILL,
    PD_PROTO_TYPE_WORKER_CANCEL, /* "cancel" on the worker channel */
    PD_PROTO_TYPE_RESYNC,
    PD_PROTO_TYPE_PIN,
    /* worker PUB -> router SUB */
    PD_PROTO_TYPE_KV_EVENT,
    /* client <-> router (kept after the others so that no earlier value moves) */
    PD_PROTO_TYPE_STATS,       /* client -> router: the cluster's figures */
    PD_PROTO_TYPE_STATS_REPLY, /* router -> client */
    PD_PROTO_TYPE_STOP,        /* client -> router: end a request now, as done */
    PD_PROTO_TYPE_COUNT_
} pd_proto_type_t;

typedef enum pd_proto_role {
    PD_PROTO_ROLE_PREFILL = 0,
    PD_PROTO_ROLE_DECODE,
    PD_PROTO_ROLE_BOTH
} pd_proto_role_t;

typedef enum pd_proto_finish {
    PD_PROTO_FINISH_LENGTH = 0, /* max_tokens reached */
    PD_PROTO_FINISH_STOP,       /* a stop token was generated (it is included) */
    PD_PROTO_FINISH_EOS         /* the model's end-of-sequence token (it is included) */
} pd_proto_finish_t;

typedef enum pd_proto_cache_mode {
    PD_PROTO_CACHE_AUTO = 0,
    PD_PROTO_CACHE_EXPLICIT,
    PD_PROTO_CACHE_OFF
} pd_proto_cache_mode_t;

typedef enum pd_proto_tier {
    PD_PROTO_TIER_G1 = 0,
    PD_PROTO_TIER_G2,
    PD_PROTO_TIER_G3,
    PD_PROTO_N_TIERS
} pd_proto_tier_t;

typedef enum pd_proto_event_kind {
    PD_PROTO_EVENT_STORED = 0, /* the worker now holds hashes in tier */
    PD_PROTO_EVENT_REMOVED,    /* the worker no longer holds hashes in tier */
    PD_PROTO_EVENT_TIER        /* hashes moved to tier from whichever tier held them */
} pd_proto_event_kind_t;

/* Retentions: "5m" and "1h" on the wire. */
#define PD_PROTO_TTL_5M_S 300u
#define PD_PROTO_TTL_1H_S 3600u

typedef struct pd_proto_sampling {
    double temperature; /* >= 0 and <= 100; 0 is greedy. Default 1.0 */
    double top_p;       /* in (0, 1]. Default 1.0 (off), as pdctl generate */
    uint64_t seed;      /* Default 0 */
} pd_proto_sampling_t;

typedef struct pd_proto_breakpoint {
    uint32_t offset_tokens; /* the prefix [0, offset) is cached; 1..n_tokens */
    uint32_t ttl_s;         /* PD_PROTO_TTL_5M_S or PD_PROTO_TTL_1H_S */
} pd_proto_breakpoint_t;

/* The client's cache control: {mode, breakpoints: [{offset, ttl}]}. */
typedef struct pd_proto_cache {
    pd_proto_cache_mode_t mode;
    uint32_t n_breakpoints; /* explicit mode only, 1..4, offsets strictly increasing */
    pd_proto_breakpoint_t breakpoints[PD_PROTO_MAX_BREAKPOINTS];
} pd_proto_cache_t;

/* The router's resolved cache plan for workers: {read_blocks, write: [{n_blocks, ttl}]}.
 * Lookup is allowed on the first read_blocks full blocks. Block i (0-based) is written to
 * the cache when some write entry has i < n_blocks; its retention is the largest ttl of
 * those entries. Mode off: read_blocks 0 and no write entries. */
typedef struct pd_proto_cache_write {
    uint32_t n_blocks;
    uint32_t ttl_s;
} pd_proto_cache_write_t;

typedef struct pd_proto_cache_plan {
    uint32_t read_blocks;
    uint32_t n_writes; /* 0..4 */
    pd_proto_cache_write_t writes[PD_PROTO_MAX_BREAKPOINTS];
} pd_proto_cache_plan_t;

/* ---- client channel ---- */

/* generate: exactly one of prompt (text) or tokens (ids). */
typedef struct pd_proto_generate {
    char id[PD_PROTO_ID_CAP]; /* client's request id, may be "" */
    const char *prompt;       /* NUL-terminated; NULL when tokens are given */
    size_t prompt_bytes;      /* 0..PD_PROTO_MAX_PROMPT_BYTES */
    const int32_t *tokens;    /* (n_tokens) ids >= 0; NULL when prompt is given */
    uint32_t n_tokens;        /* 1..PD_PROTO_MAX_PROMPT_TOKENS */
    uint32_t max_tokens;      /* 1..PD_PROTO_MAX_NEW_TOKENS, default 64, as pdctl generate */
    pd_proto_sampling_t sampling;
    const int32_t *stop;            /* (n_stop) token ids */
    uint32_t n_stop;                /* 0..PD_PROTO_MAX_STOP */
    char tenant[PD_PROTO_NAME_CAP]; /* "" when absent */
    pd_proto_cache_t cache;         /* default mode auto */
    bool stream;                    /* default true */
    uint32_t slo_ttft_ms;           /* optional objectives, 0: the router's */
    uint32_t slo_tpot_ms;
} pd_proto_generate_t;

typedef struct pd_proto_cancel {
    char id[PD_PROTO_ID_CAP];
} pd_proto_cancel_t;

typedef struct pd_proto_accepted {
    char id[PD_PROTO_ID_CAP];
    bool resumed;        /* a restarted router goes on with the request */
    uint32_t next_index; /* with resumed: the next token's index */
} pd_proto_accepted_t;

typedef struct pd_proto_token {
    char id[PD_PROTO_ID_CAP];
    uint32_t index; /* 0-based position among generated tokens */
    int32_t token;
    const char *text; /* whole UTF-8 characters completed by this token (may hold NUL;
                       * not NUL-terminated on encode, NUL-terminated after decode) */
    size_t text_bytes;
    const void *bytes; /* optional: the token's own raw bytes; NULL when not known */
    size_t n_bytes;
} pd_proto_token_t;

typedef struct pd_proto_usage {
    uint32_t input_tokens;                /* computed by prefill */
    uint32_t cache_creation_input_tokens; /* written to a cache */
    uint32_t cache_read_input_tokens;     /* served from a cache */
    uint32_t output_tokens;
    uint32_t fetched_input_tokens; /* optional: read from another worker's cache (part of
                                    * cache_read_input_tokens) */
} pd_proto_usage_t;

typedef struct pd_proto_timings {
    double queue_ms;    /* arrival -> dispatch (reserve sent) */
    double prefill_ms;  /* prefill compute, as prefill measured it */
    double transfer_ms; /* KV push that TTFT waited for (prefill's, less what came after) */
    double ttft_ms;     /* arrival -> first token sent to the client */
    double tpot_ms;     /* mean time per output token after the first */
    double total_ms;    /* arrival -> done */
    /* The rest of TTFT's parts (docs/ARCHITECTURE.md, "Where TTFT goes"): queue_ms +
     * admission_ms + prefill_queue_ms + prefill_ms + transfer_ms + first_step_ms is
     * ttft_ms less what no clock can see (network hops, socket queues). Optional. */
    double admission_ms;     /* reserve sent -> reserved (decode's reservation) */
    double prefill_queue_ms; /* reserved -> prefill sent, + received -> compute started */
    double first_step_ms;    /* prefill's report -> first token, when the token came later */
} pd_proto_timings_t;

typedef struct pd_proto_done {
    char id[PD_PROTO_ID_CAP];
    pd_proto_finish_t finish_reason;
    const int32_t *tokens; /* (n_tokens) every generated token */
    uint32_t n_tokens;     /* 0..PD_PROTO_MAX_NEW_TOKENS */
    pd_proto_usage_t usage;
    pd_proto_timings_t timings;
    char prefill_worker[PD_PROTO_NAME_CAP];
    char decode_worker[PD_PROTO_NAME_CAP];
    /* Optional: prompt blocks computed to fill holes in a reused prefix, by index (they
     * count in usage.input_tokens); NULL when none. */
    const uint32_t *recomputed_blocks;
    uint32_t n_recomputed_blocks;
    /* Optional: text the stream held back at the end (an unfinished character, shown as
     * U+FFFD); NULL when none. */
    const char *text;
    size_t text_bytes;
} pd_proto_done_t;

/* error on the client channel. */
typedef struct pd_proto_error {
    char id[PD_PROTO_ID_CAP]; /* "" when the request id could not be read */
    pd_status_t code;         /* a negative pd_status_t, its name on the wire */
    const char *message;      /* NUL-terminated, <= PD_PROTO_MAX_MESSAGE_BYTES */
} pd_proto_error_t;

typedef struct pd_proto_worker_info {
    char id[PD_PROTO_NAME_CAP];
    pd_proto_role_t role;
    uint64_t epoch;
    char state[16];   /* "ready" or "resyncing" */
    uint32_t running; /* load.running */
    uint32_t queued;  /* load.queued */
    uint32_t n_blocks;
    uint32_t free_blocks;
    uint32_t directory_blocks; /* blocks the directory lists for this worker */
} pd_proto_worker_info_t;

typedef struct pd_proto_status_reply {
    const pd_proto_worker_info_t *workers; /* (n_workers) */
    uint32_t n_workers;                    /* 0..PD_PROTO_MAX_WORKERS */
    uint64_t directory_blocks;             /* distinct hashes in the directory */
    uint32_t queue_depth;
    uint32_t requests_in_flight;
    uint64_t holder_reads;      /* optional: prefills told to read a prefix from a third worker */
    uint64_t recomputed_blocks; /* optional: prompt blocks recomputed to fill holes, in all */
    uint64_t moved_requests;    /* optional: requests continued on another worker after a death */
    uint64_t client_gone_requests; /* optional: requests canceled when their client left */
    uint64_t resumed_requests;     /* optional: the previous router's requests continued */
} pd_proto_status_reply_t;

/* stop: the client has what it needs (e.g. a stop string matched in the text): the
 * router ends the request with `done` (finish_reason stop) carrying the tokens and usage
 * so far, and cancels it at its workers. */
typedef struct pd_proto_stop {
    char id[PD_PROTO_ID_CAP];
} pd_proto_stop_t;

/* A worker's KV cache and transfer figures: sent with its heartbeats, relayed per worker
 * in stats_reply. Blocks are counts of its pool's blocks; counters run since it started. */
typedef struct pd_proto_worker_stats {
    uint32_t g1_cached_blocks; /* G1 blocks findable by hash (pinned or evictable) */
    uint32_t g2_blocks;        /* host-DRAM tier slots, 0: no such tier */
    uint32_t g2_used_blocks;
    uint32_t g3_blocks; /* SSD tier slots, 0: no such tier */
    uint32_t g3_used_blocks;
    uint64_t hit_blocks;      /* blocks found by cache lookups, any tier */
    uint64_t miss_blocks;     /* blocks looked up and not found */
    uint64_t xfer_bytes;      /* KV bytes this worker pushed to other workers */
    uint64_t xfer_bytes_wire; /* of them, the bytes that crossed the wire (compressed) */
} pd_proto_worker_stats_t;

typedef struct pd_proto_stats_worker {
    char id[PD_PROTO_NAME_CAP];
    pd_proto_role_t role;
    char state[16]; /* "ready" or "resyncing" */
    uint32_t running, queued;
    uint32_t n_blocks, free_blocks; /* G1 */
    uint32_t directory_blocks;
    pd_proto_worker_stats_t stats;
} pd_proto_stats_worker_t;

/* stats_reply: what the router and its workers report, summed over the workers; the
 * workers one by one only for clients whose key is marked admin (or with auth off). */
typedef struct pd_proto_stats_reply {
    uint32_t n_prefill, n_decode, n_both; /* registered workers by role */
    uint32_t n_ready;                     /* of them, those whose directory state is current */
    uint32_t queue_depth;                 /* admitted, not yet dispatched */
    uint32_t requests_in_flight;          /* not yet terminated */
    uint64_t requests_total;              /* admitted since the router started */
    uint64_t directory_blocks;            /* distinct hashes in the directory */
    uint64_t holder_reads;      /* optional: prefills told to read a prefix from a third worker */
    uint64_t recomputed_blocks; /* optional: prompt blocks recomputed to fill holes, in all */
    uint64_t g1_blocks, g1_free_blocks, g1_cached_blocks;
    uint64_t g2_blocks, g2_used_blocks, g3_blocks, g3_used_blocks;
    uint64_t hit_blocks, miss_blocks;
    uint64_t xfer_bytes;      /* KV bytes the workers pushed, by their own counters */
    uint64_t xfer_bytes_wire; /* optional: what crossed the wire for them (compressed) */
    uint64_t xfer_count;      /* KV pushes prefill workers reported complete (`prefilled`) */
    double xfer_ms_sum;       /* their transfer times, summed (mean = sum / count) */
    const pd_proto_stats_worker_t *workers; /* (n_workers); NULL: not sent (not admin) */
    uint32_t n_workers;
} pd_proto_stats_reply_t;

/* ---- worker channel ---- */

typedef struct pd_proto_register {
    char worker_id[PD_PROTO_NAME_CAP];
    pd_proto_role_t role;
    uint64_t epoch; /* different on every start of the worker process */
    char model_id[PD_PROTO_MODEL_ID_CAP];
    uint32_t block_tokens; /* 1..PD_PROTO_MAX_BLOCK_TOKENS */
    uint32_t n_blocks;
    const void *xfer_desc; /* (xfer_desc_bytes) opaque to the router */
    size_t xfer_desc_bytes;
    char events_endpoint[PD_PROTO_ENDPOINT_CAP]; /* where the worker's PUB is bound */
} pd_proto_register_t;

typedef struct pd_proto_registered {
    uint32_t heartbeat_ms; /* how often the router expects a heartbeat */
    uint64_t router_epoch; /* the router process's epoch; 0: not sent */
} pd_proto_registered_t;

typedef struct pd_proto_heartbeat {
    char worker_id[PD_PROTO_NAME_CAP];
    uint64_t epoch;
    uint32_t running; /* load.running: requests in the running batch */
    uint32_t queued;  /* load.queued: requests waiting */
    uint32_t free_blocks;
    uint64_t kv_seq; /* optional: seq of the last kv_event published (0: none or unknown);
                      * lets the router notice lost trailing events and resync */
    const pd_proto_worker_stats_t *stats; /* optional; NULL is not sent */
    uint32_t queued_tokens; /* optional, load.queued_tokens: prompt tokens a prefill worker
                             * has still to compute over its prefills */
} pd_proto_heartbeat_t;

/* router -> decode. */
typedef struct pd_proto_reserve {
    uint64_t req_id;       /* router-assigned, unique for the router's life, never 0 */
    const int32_t *tokens; /* (n_tokens) the whole prompt */
    uint32_t n_tokens;
    const uint64_t *block_hashes; /* (n_block_hashes) = n_tokens / block_tokens */
    uint32_t n_block_hashes;
    pd_proto_cache_plan_t cache;
    uint32_t max_tokens;
    pd_proto_sampling_t sampling;
    const int32_t *stop;
    uint32_t n_stop;
    uint32_t deadline_ms; /* milliseconds left until the request's deadline, when sent */
    uint32_t first_step;  /* generated index of the first token sampled here: 0, or the
                           * tokens already streamed when the request moved to this worker */
} pd_proto_reserve_t;

/* decode -> router. */
typedef struct pd_proto_reserved {
    uint64_t req_id;
    pd_status_t status;          /* PD_OK, or why nothing was reserved */
    uint32_t n_cached_blocks;    /* leading blocks already held and now pinned */
    const uint32_t *block_table; /* (n_block_table) every block of prompt + generation */
    uint32_t n_block_table;
} pd_proto_reserved_t;

/* router -> prefill. */
typedef struct pd_proto_prefill {
    uint64_t req_id;
    const int32_t *tokens;
    uint32_t n_tokens;
    const uint64_t *block_hashes;
    uint32_t n_block_hashes;
    uint32_t n_skip_blocks; /* leading blocks decode already holds: never pushed */
    pd_proto_cache_plan_t cache;
    pd_proto_sampling_t sampling;
    char dest_worker_id[PD_PROTO_NAME_CAP];
    uint64_t dest_epoch;
    const void *dest_xfer_desc; /* (dest_xfer_desc_bytes) from the decode's register */
    size_t dest_xfer_desc_bytes;
    const uint32_t *dest_block_table; /* (n_dest_block_table) from reserved */
    uint32_t n_dest_block_table;
    uint32_t deadline_ms;
    uint32_t first_step; /* as in reserve: the sampler step of the token prefill samples */
    /* Optional: another worker that holds the prompt's leading blocks and pinned them for
     * this request (pinned): where each block i < n_src_block_table lies in its pool
     * (PD_PROTO_NO_BLOCK: not held), with the checksum of its bytes. NULL: no holder. */
    const char *src_worker_id;
    uint64_t src_epoch;        /* its epoch: a new one means a new process to connect to */
    const void *src_xfer_desc; /* (src_xfer_desc_bytes) from the holder's register */
    size_t src_xfer_desc_bytes;
    const uint32_t *src_block_table; /* (n_src_block_table) */
    uint32_t n_src_block_table;
    const uint64_t *src_checksums; /* (n_src_checksums) = n_src_block_table */
    uint32_t n_src_checksums;
} pd_proto_prefill_t;

/* prefill -> router. */
typedef struct pd_proto_prefilled {
    uint64_t req_id;
    int32_t first_token;
    uint32_t n_computed_tokens;           /* prompt tokens prefill computed */
    uint32_t n_cached_tokens;             /* prompt tokens not computed (own cache or read) */
    uint32_t cache_creation_input_tokens; /* optional, default 0 */
    double prefill_ms;  /* setup, then first chunk's pass -> first token sampled */
    double transfer_ms; /* first token sampled -> push acknowledged */
    /* Optional: the prompt blocks computed to fill holes in an otherwise reused prefix
     * (missing, or failed their checksum), by index; NULL when none. */
    const uint32_t *recomputed_blocks;
    uint32_t n_recomputed_blocks;
    /* Optional (0: not sent): where its time in the worker went, queue_ms + prefill_ms +
     * transfer_ms being all of it; prefill_ms holds fetch_ms, compute_ms and the passes of
     * other prompts between its chunks. */
    double queue_ms;           /* setup done -> first chunk's pass */
    double compute_ms;         /* the forward passes that held its chunks */
    double fetch_ms;           /* reading reused blocks from other workers */
    uint32_t n_fetched_tokens; /* of n_cached_tokens, those read from another worker */
    uint32_t n_chunks;         /* forward passes its computed tokens took */
} pd_proto_prefilled_t;

/* A block table entry that names no block (a hole in a holder's prefix). */
#define PD_PROTO_NO_BLOCK UINT32_MAX

/* router -> worker: pin the blocks of these hashes that the worker holds (any tier), for
 * a prefill worker to read, until cancel or the deadline. */
typedef struct pd_proto_pin {
    uint64_t req_id;
    const uint64_t *block_hashes; /* (n_block_hashes) chained, from the prompt's first */
    uint32_t n_block_hashes;
    uint32_t deadline_ms; /* the pins go after this many milliseconds at the latest */
} pd_proto_pin_t;

/* worker -> router, answering pin. */
typedef struct pd_proto_pinned {
    uint64_t req_id;
    pd_status_t status;          /* PD_OK, or why nothing was pinned */
    const uint32_t *block_table; /* (n_block_table) per hash: pool index or PD_PROTO_NO_BLOCK */
    uint32_t n_block_table;
    const uint64_t *checksums; /* (n_checksums) per hash: XXH3 of the block, 0 if not held */
    uint32_t n_checksums;
} pd_proto_pinned_t;

/* decode -> router: one generated token. */
typedef struct pd_proto_worker_token {
    uint64_t req_id;
    uint32_t index; /* 0 is the first token (the one prefill sampled) */
    int32_t token;
    bool last; /* the request's last token: its done follows */
} pd_proto_worker_token_t;

/* decode -> router: the request finished. */
typedef struct pd_proto_worker_done {
    uint64_t req_id;
    pd_proto_finish_t finish_reason;
    uint32_t output_tokens;
    uint32_t cache_read_input_tokens;     /* usage: tokens of the pinned prefix */
    uint32_t cache_creation_input_tokens; /* usage: tokens written to decode's cache */
    double transfer_wait_ms;              /* timings: reserve -> KV complete */
    double tpot_ms;                       /* timings */
} pd_proto_worker_done_t;

/* worker -> router and router -> worker: a request failed (req_id 0: not about one). */
typedef struct pd_proto_worker_error {
    uint64_t req_id;
    pd_status_t code;
    const char *message;
} pd_proto_worker_error_t;

/* router -> worker: forget the request and release everything it holds. */
typedef struct pd_proto_worker_cancel {
    uint64_t req_id;
} pd_proto_worker_cancel_t;

/* worker -> router, answering resync: everything the worker holds now. */
typedef struct pd_proto_kv_snapshot {
    char worker_id[PD_PROTO_NAME_CAP];
    uint64_t epoch;
    uint64_t seq; /* the seq of the last event already reflected in this snapshot */
    const uint64_t *hashes[PD_PROTO_N_TIERS]; /* (n_hashes[t]) per tier G1, G2, G3 */
    uint32_t n_hashes[PD_PROTO_N_TIERS];
} pd_proto_kv_snapshot_t;

/* ---- events channel ---- */

typedef struct pd_proto_kv_event_item {
    pd_proto_event_kind_t kind;
    pd_proto_tier_t tier;
    const uint64_t *hashes; /* (n_hashes) */
    uint32_t n_hashes;
} pd_proto_kv_event_item_t;

typedef struct pd_proto_kv_event {
    char worker_id[PD_PROTO_NAME_CAP];
    uint64_t epoch;
    uint64_t seq; /* per worker and epoch, 1 for the first batch, +1 per batch */
    const pd_proto_kv_event_item_t *events; /* (n_events) */
    uint32_t n_events;
} pd_proto_kv_event_t;

/* One message of any type. Set type and the matching union member to encode; decode fills
 * both and owns the memory behind every pointer until pd_proto_msg_cleanup(). */
typedef struct pd_proto_msg {
    pd_proto_type_t type;
    union {
        pd_proto_generate_t generate;
        pd_proto_cancel_t cancel;
        pd_proto_accepted_t accepted;
        pd_proto_token_t token;
        pd_proto_done_t done;
        pd_proto_error_t error;
        pd_proto_status_reply_t status_reply;
        pd_proto_register_t reg;
        pd_proto_registered_t registered;
        pd_proto_heartbeat_t heartbeat;
        pd_proto_reserve_t reserve;
        pd_proto_reserved_t reserved;
        pd_proto_prefill_t prefill;
        pd_proto_prefilled_t prefilled;
        pd_proto_worker_token_t worker_token;
        pd_proto_worker_done_t worker_done;
        pd_proto_worker_error_t worker_error;
        pd_proto_worker_cancel_t worker_cancel;
        pd_proto_pin_t pin;
        pd_proto_pinned_t pinned;
        pd_proto_kv_snapshot_t kv_snapshot;
        pd_proto_kv_event_t kv_event;
        pd_proto_stop_t stop;
        pd_proto_stats_reply_t stats_reply;
    } u;
    pd_mp_doc_t doc; /* decoded frame; private */
} pd_proto_msg_t;

/* What a failed decode could still tell: the reason for the error reply, and the request
 * id if the frame was a map holding a readable one (so the error can name it). */
typedef struct pd_proto_fault {
    char reason[PD_PROTO_REASON_CAP];
    char id[PD_PROTO_ID_CAP]; /* client "id", "" if unreadable */
    uint64_t req_id;          /* worker "req_id", 0 if unreadable */
} pd_proto_fault_t;

/* Decode one frame received on chan into msg (caller storage). Returns PD_OK, or
 * PD_ERR_PROTO (not msgpack, not a map, wrong version, unknown type, missing field, wrong
 * type, value out of range) or PD_ERR_LIMIT (frame, array, string or count over a limit),
 * with fault (may be NULL) filled. On error msg needs no cleanup. */
PD_MUST_CHECK pd_status_t pd_proto_decode(pd_proto_msg_t *msg, pd_proto_chan_t chan,
                                          const void *buf, size_t len, pd_proto_fault_t *fault);

/* Free what decode allocated; accepts a msg that was only zeroed. */
void pd_proto_msg_cleanup(pd_proto_msg_t *msg);

/* Append the encoding of msg to w (call pd_mp_writer_reset first for a fresh frame).
 * Returns PD_OK, or PD_ERR_INVALID_PARAM / PD_ERR_LIMIT when a field breaks the limits
 * a decoder enforces (w may then hold a partial frame: reset it). */
PD_MUST_CHECK pd_status_t pd_proto_encode(const pd_proto_msg_t *msg, pd_mp_writer_t *w);

/* The wire name of a type ("generate", "token", ...); "?" for an invalid type. */
const char *pd_proto_type_name(pd_proto_type_t type);

/* The channel a type travels on, and a channel's name ("client", "worker", "events"). */
pd_proto_chan_t pd_proto_type_chan(pd_proto_type_t type);
const char *pd_proto_chan_name(pd_proto_chan_t chan);

/* Wire strings of the small enums ("prefill", "stop", "G2", "5m", ...). */
const char *pd_proto_role_name(pd_proto_role_t role);
const char *pd_proto_finish_name(pd_proto_finish_t finish);
const char *pd_proto_tier_name(pd_proto_tier_t tier);
const char *pd_proto_cache_mode_name(pd_proto_cache_mode_t mode);

/* Retention of prompt block block_index (0-based) under a plan, in milliseconds: the
 * largest ttl of the write entries that cover it, 0 when the plan does not write it. */
uint64_t pd_proto_cache_plan_block_ttl_ms(const pd_proto_cache_plan_t *plan, uint32_t block_index);

/* Resolve a client's cache control for a prompt of n_tokens into the plan sent to workers:
 * auto caches every full block when n_tokens >= min_cached_prefix_tokens (5m); explicit
 * writes the full blocks of each breakpoint's prefix with its ttl; lookups are allowed on
 * every full block unless the mode is off. */
void pd_proto_cache_plan_make(const pd_proto_cache_t *cache, uint32_t n_tokens,
                              uint32_t block_tokens, uint32_t min_cached_prefix_tokens,
                              pd_proto_cache_plan_t *plan_p);

#endif
