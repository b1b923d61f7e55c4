/* pd-router internals: the worker registry, the request table and the loop's state. */
#ifndef PD_ROUTER_INT_H
#define PD_ROUTER_INT_H

#include "pd/directory.h"
#include "pd/mp.h"
#include "pd/proto.h"
#include "pd/router.h"
#include "pd/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_ROUTER_RID_CAP         256 /* ZeroMQ routing ids are at most 255 bytes */
#define PD_ROUTER_REQ_BUCKETS     4096
#define PD_ROUTER_RESYNC_RETRY_MS 2000
#define PD_ROUTER_MAX_CLIENT_KEYS 1024
#define PD_ROUTER_Z85_KEY_CHARS   40
#define PD_ROUTER_PIN_WAIT_MS     500 /* prefill waits this long for a holder's pinned */
#define PD_ROUTER_SUSPECT_MIN_MS  200 /* heartbeats this soon after a failed push prove nothing */

/* One client allowed by --client-keys: its CURVE public key, the tenant it acts as, and
 * its roles: `admin` sees every worker's figures in stats_reply; `gateway` may name the
 * tenant of each request (an HTTP gateway that authenticates its own users). */
typedef struct pd_router_client_key {
    uint8_t key[32];
    char tenant[PD_PROTO_NAME_CAP];
    bool admin;
    bool gateway;
} pd_router_client_key_t;

/* One worker key allowed by --worker-keys: its CURVE public key and the worker id it may
 * register under ("" for any id no other key holds). */
typedef struct pd_router_worker_key {
    uint8_t key[32];
    char id[PD_PROTO_NAME_CAP];
} pd_router_worker_key_t;

#define PD_ROUTER_MAX_WORKER_KEYS 1024

/* ZAP domains of the two CURVE server sockets: one handler serves both. */
#define PD_ROUTER_ZAP_CLIENTS "pdkv"
#define PD_ROUTER_ZAP_WORKERS "pdkv-workers"

/* ZAP metadata property that carries a client key's roles to every message it sends. */
#define PD_ROUTER_ROLES_PROPERTY "X-Pdkv-Roles"

typedef struct pd_router_rid {
    unsigned char bytes[PD_ROUTER_RID_CAP];
    size_t n;
} pd_router_rid_t;

typedef struct pd_router_worker {
    bool used;
    uint32_t slot; /* index in router->workers, also the directory slot */
    char id[PD_PROTO_NAME_CAP];
    pd_proto_role_t role;
    uint64_t epoch;
    pd_router_rid_t rid;
    char key[PD_ROUTER_Z85_KEY_CHARS + 1]; /* worker auth: the CURVE key it registered with */
    uint32_t n_blocks;
    void *xfer_desc; /* (xfer_desc_bytes) owned */
    size_t xfer_desc_bytes;
    char events_endpoint[PD_PROTO_ENDPOINT_CAP];
    bool sub_connected;
    uint64_t last_seen_ms;
    /* From the last heartbeat. */
    uint32_t running, queued, free_blocks;
    pd_proto_worker_stats_t stats; /* from the last heartbeat that carried them */
    /* The router's own view, current to the message: requests assigned and their tokens. */
    uint32_t n_assigned;
    uint64_t assigned_tokens;
    bool resync_pending;
    uint64_t resync_sent_ms;
    uint64_t behind_since_ms; /* heartbeat kv_seq ahead of the directory since, 0: not */
    /* Scheduling (sched.c): prefills committed and not yet reported, their estimated
     * tokens to compute, measured prefill ms per computed token and decode step time
     * (running averages, 0: not measured), and a busy mark after it turned work away. */
    uint32_t n_prefilling;   /* committed: reserving, held or sent */
    uint32_t n_prefill_sent; /* of them, sent to the worker */
    uint64_t prefill_tokens;
    double ms_per_token;
    double step_ms;
    uint64_t busy_until_ms;
    bool chunked; /* it reported a prompt computed in several chunks: it interleaves */
    /* A KV push into it failed at this time (0: none): it takes nothing new, and the
     * requests whose push failed wait, until a heartbeat says it lives (they fail: the
     * link failed) or it is removed (they move on). */
    uint64_t suspect_ms;
} pd_router_worker_t;

/* queued -> reserving -> prefilling -> decoding -> (terminal: freed). */
typedef enum pd_router_req_state {
    PD_REQ_QUEUED = 0,
    PD_REQ_RESERVING,
    PD_REQ_PREFILLING,
    PD_REQ_DECODING
} pd_router_req_state_t;

typedef struct pd_router_req {
    uint64_t req_id;
    struct pd_router_req *next_hash;   /* bucket chain */
    struct pd_router_req *prev, *next; /* all requests, arrival order */
    pd_router_req_state_t state;
    pd_router_rid_t client;
    int client_fd; /* the client connection it came in on (clients.c), -1: unknown */
    char id[PD_PROTO_ID_CAP];
    char tenant[PD_PROTO_NAME_CAP];

    /* What the workers are asked to compute: the prompt, and after a move to another
     * decode worker the tokens already streamed (the work tokens). */
    int32_t *tokens; /* (n_tokens) of (n_prompt + max_tokens), owned */
    uint32_t n_tokens;
    uint64_t *hashes; /* (n_hashes) full-block chain of the work tokens, owned */
    uint32_t n_hashes;
    uint32_t n_prompt; /* the client's prompt, tokens[0 .. n_prompt) */
    uint32_t max_tokens;
    uint32_t first_step; /* tokens streamed before the current decode worker took over */
    uint32_t n_moves;    /* times it continued on another decode worker */
    /* Scheduling (sched.c): tokens it is expected to compute (the prompt less the longest
     * cached prefix at arrival), its place in the router's queue (arrival plus expected
     * compute: shortest first, never starved), its objectives (0: none) and how many
     * times a busy worker turned it back. */
    uint32_t est_tokens;
    double sched_key_ms;
    uint32_t slo_ttft_ms, slo_tpot_ms;
    uint32_t n_rerouted;
    bool prefill_held;    /* reserved, its prefill kept here until the worker has room */
    bool prefill_counted; /* counted in its prefill worker's n_prefill_sent */
    uint64_t reserved_ns; /* decode's reservation came */
    bool keep_usage;      /* the first prefill's figures stand (it ran before the move) */
    pd_proto_sampling_t sampling;
    int32_t stop[PD_PROTO_MAX_STOP];
    uint32_t n_stop;
    pd_proto_cache_plan_t plan;
    bool stream;

    int prefill_slot; /* -1 until chosen */
    int decode_slot;
    uint64_t prefill_epoch, decode_epoch;
    bool prefill_assigned; /* counted in the prefill worker's load */
    bool decode_assigned;
    uint32_t *block_table; /* (n_block_table) from reserved, owned */
    uint32_t n_block_table;
    uint32_t n_cached_blocks;
    bool prefill_sent;

    /* A third worker holding more of the prefix than both sides (-1: none): pinned there
     * for prefill to read (docs/PROTOCOL.md, pin). */
    int holder_slot;
    uint64_t holder_epoch;
    bool pin_waiting; /* pin sent, no pinned yet */
    bool pin_held;    /* the holder may hold pins: cancel it when done */
    uint64_t pin_sent_ms;
    uint32_t *src_table; /* (n_src) from pinned, owned */
    uint64_t *src_sums;  /* (n_src) */
    uint32_t n_src;
    uint32_t *recomputed; /* (n_recomputed) from prefilled: holes prefill computed, owned */
    uint32_t n_recomputed;

    bool prefilled;
    int32_t prefill_first_token;
    uint32_t n_computed_tokens, n_prefill_cached_tokens, prefill_cc_tokens;
    double prefill_ms, transfer_ms, prefill_queue_ms;
    uint32_t n_fetched_tokens;
    bool decode_done;
    bool last_streamed;                /* decode flagged the last token: the stream is complete */
    pd_status_t push_error;            /* prefill's KV push into decode failed (PD_OK: no) */
    char push_from[PD_PROTO_NAME_CAP]; /* ... from this prefill worker */
    /* --journal (journal.c): tokens written to it, and n_out and last_streamed as its
     * previous write saw them (what is written lags the stream by one write). */
    uint32_t n_journaled, journal_mark;
    bool journal_mark_last;
    bool journaled_last; /* the last token written was flagged final */
    uint8_t *jframe;     /* (jframe_len) its generate as journaled, owned */
    uint32_t jframe_len;
    pd_proto_worker_done_t done;

    int32_t *out; /* (max_tokens) generated tokens, owned */
    uint32_t n_out;
    pd_tokenizer_stream_t *detok; /* text of the streamed tokens, made at the first one */

    /* On the router's clock: arrival, reserve sent, prefill sent, prefilled received. */
    uint64_t arrival_ns, dispatch_ns, prefill_sent_ns, prefilled_ns, first_token_ns, last_token_ns;
    uint64_t deadline_ms; /* on the router's monotonic clock */
} pd_router_req_t;

struct pd_router {
    pd_router_config_t cfg;
    uint64_t epoch; /* this process's, sent in registered: workers see a restart */
    void *ctx;
    void *client_sock;       /* ROUTER */
    void *worker_sock;       /* ROUTER */
    void *event_sock;        /* SUB */
    void *zap_sock;          /* REP, the ZAP handler (auth only) */
    void *client_mon;        /* PAIR: the client socket's monitor (clients.c) */
    int client_fd_now;       /* connection of the client frame being handled */
    uint8_t *client_fd_gone; /* (n_client_fd_gone) 1: connection closed */
    size_t n_client_fd_gone;
    uint64_t n_client_gone_reqs;      /* requests canceled because their client left */
    int journal_fd;                   /* --journal, -1: none (journal.c) */
    struct pd_router_orphan *orphans; /* (n_orphans) the previous router's live requests */
    uint32_t n_orphans, cap_orphans;
    uint64_t orphans_until_ms;
    uint64_t n_orphans_told;
    uint64_t n_resumed; /* the previous router's requests continued */
    uint64_t journal_tick_ms;
    uint64_t journal_bytes; /* written since it was opened or compacted */
    pd_mp_writer_t jw;      /* the journal's encoder */
    char *jbuf;             /* (jbuf_cap) the journal's line buffer, owned */
    size_t jbuf_cap;
    /* Requests ended since the previous journal write (ended_new) and before it
     * (ended_old): their E lines lag like the tokens, so that a done still in the socket
     * at a kill is sent again by the next router. Each (n_*) of cap_ended, owned. */
    uint64_t *ended_new, *ended_old;
    uint32_t n_ended_new, n_ended_old, cap_ended;
    bool auth;                           /* CURVE on the client socket: tenants come from keys */
    pd_router_client_key_t *client_keys; /* (n_client_keys) owned */
    uint32_t n_client_keys;
    bool worker_auth;                    /* CURVE on the worker and event sockets */
    pd_router_worker_key_t *worker_keys; /* (n_worker_keys) owned */
    uint32_t n_worker_keys;
    pd_tokenizer_t *tok;
    pd_dir_t *dir;
    pd_mp_writer_t w;
    bool stop;

    pd_router_worker_t workers[PD_DIR_MAX_WORKERS];
    uint32_t rr_prefill, rr_decode;

    pd_router_req_t *buckets[PD_ROUTER_REQ_BUCKETS];
    pd_router_req_t *head, *tail; /* all live requests */
    uint32_t n_queued;
    uint32_t n_live;
    uint64_t next_req_id;
    uint64_t requests_total;      /* admitted since start */
    uint64_t xfer_count;          /* KV pushes prefill reported complete */
    double xfer_ms_sum;           /* ... and their transfer times */
    uint64_t n_holder_reads;      /* prefills sent with a third holder's blocks */
    uint64_t n_recomputed_blocks; /* holes prefill reported computing */
    uint64_t n_moved;             /* requests continued on another worker after a death */
    double ms_per_token;          /* prefill ms per computed token over all workers, 0: unknown */
    uint64_t n_slo_rejected;      /* refused because their TTFT objective could not be met */
    uint64_t n_rerouted;          /* sent back to the queue by a busy worker */
    pd_router_req_t **sched_buf;  /* (sched_cap) dispatch order scratch, owned */
    uint32_t sched_cap;
};

/* auth.c */
/* Read the keys and make the client socket (--client-keys) and the worker socket
 * (--worker-keys) CURVE servers with a ZAP handler, and the event SUB a CURVE client, as
 * configured. */
PD_MUST_CHECK pd_status_t pd_router_auth_setup(pd_router_t *r);
/* The allowed worker key of Z85 text key_z85, or NULL. */
const pd_router_worker_key_t *pd_router_auth_worker_key(const pd_router_t *r, const char *key_z85);
/* Answer waiting ZAP requests. */
void pd_router_auth_serve(pd_router_t *r);

/* journal.c: the requests in flight on disk, for the router that starts next. */
typedef struct pd_router_orphan pd_router_orphan_t;
PD_MUST_CHECK pd_status_t pd_router_journal_open(pd_router_t *r);
void pd_router_journal_close(pd_router_t *r);
/* g: the request as the client sent it (its prompt is written as req's tokens). */
void pd_router_journal_accept(pd_router_t *r, pd_router_req_t *req, const pd_proto_generate_t *g);
void pd_router_journal_end(pd_router_t *r, const pd_router_req_t *req);
void pd_router_journal_tick(pd_router_t *r, uint64_t now_ms);
/* A generate from client with id that the previous router had in flight (its client saw
 * no accepted and sent it again): that request goes on; true when there was one. */
bool pd_router_journal_claim(pd_router_t *r, const pd_router_rid_t *client, const char *id);
/* Write the tokens streamed (called every turn of the loop; it keeps its own pace). */
void pd_router_journal_tokens(pd_router_t *r, uint64_t now_ms);

/* clients.c: requests end when their client's connection closes. */
PD_MUST_CHECK pd_status_t pd_router_clients_watch_setup(pd_router_t *r);
void pd_router_clients_watch_cleanup(pd_router_t *r);
/* Read the monitor's events: cancel the requests of closed connections. */
void pd_router_clients_watch_drain(pd_router_t *r);
/* True if connection fd is closed (a frame its client sent just before leaving). */
bool pd_router_client_fd_gone(pd_router_t *r, int fd);

/* registry.c */
pd_router_worker_t *pd_router_worker_by_rid(pd_router_t *r, const pd_router_rid_t *rid);
pd_router_worker_t *pd_router_worker_by_id(pd_router_t *r, const char *id);
/* key_z85: the sender's CURVE key with worker auth, NULL without. */
void pd_router_worker_on_message(pd_router_t *r, const pd_router_rid_t *rid, const char *key_z85,
                                 const pd_proto_msg_t *msg);
/* A frame from a worker that did not decode but named req_id: fail that request now
 * (if the worker serves it) rather than at its deadline. */
void pd_router_worker_on_garbage(pd_router_t *r, const pd_router_rid_t *rid, uint64_t req_id,
                                 pd_status_t code);
void pd_router_worker_on_event(pd_router_t *r, const pd_proto_kv_event_t *ev);
/* Heartbeat timeouts and resync retries. */
void pd_router_workers_tick(pd_router_t *r, uint64_t now_ms);
/* Remove a worker: fail its requests with code, drop its directory entries. */
void pd_router_worker_remove(pd_router_t *r, pd_router_worker_t *wk, pd_status_t code,
                             const char *why);
void pd_router_workers_cleanup(pd_router_t *r);
bool pd_router_worker_can_prefill(const pd_router_worker_t *wk);
bool pd_router_worker_can_decode(const pd_router_worker_t *wk);

/* request.c */
/* Dispatch queued requests while workers have room. */
void pd_router_dispatch(pd_router_t *r);
/* tenant: the authenticated tenant, or NULL to take the body's (auth off). */
void pd_router_on_generate(pd_router_t *r, const pd_router_rid_t *client,
                           const pd_proto_generate_t *g, const char *tenant);
void pd_router_on_cancel(pd_router_t *r, const pd_router_rid_t *client, const char *id);
/* A request of the previous router (from its journal) whose client is back: it goes on
 * after the n_out tokens already streamed (last: the final one among them), or ends now. */
void pd_router_req_resume(pd_router_t *r, const pd_router_rid_t *client,
                          const pd_proto_generate_t *g, const int32_t *out, uint32_t n_out,
                          bool last);
/* The client's `stop`: end the request now with `done` (finish_reason stop). */
void pd_router_on_stop(pd_router_t *r, const pd_router_rid_t *client, const char *id);
pd_router_req_t *pd_router_req_find(pd_router_t *r, uint64_t req_id);
/* A worker of req died: continue it on other workers (prefill of prompt + tokens
 * streamed, sampling from the next step) if the switch and the limit allow; true when it
 * was queued again, false when it must fail. */
bool pd_router_req_move(pd_router_t *r, pd_router_req_t *req, const char *why);
/* The terminal `done` from what req has (decode finished). */
void pd_router_req_finish_now(pd_router_t *r, pd_router_req_t *req);
/* End req with one error to its client, cancel at its workers, free it. */
void pd_router_req_fail(pd_router_t *r, pd_router_req_t *req, pd_status_t code,
                        const char *message);
/* Shared by request.c and request_worker.c. */
/* The worker in slot if it still has epoch, else NULL. */
pd_router_worker_t *pd_router_req_worker(pd_router_t *r, int slot, uint64_t epoch);
void pd_router_req_release_prefill(pd_router_t *r, pd_router_req_t *req);
void pd_router_req_release_decode(pd_router_t *r, pd_router_req_t *req);
void pd_router_req_release_holder(pd_router_t *r, pd_router_req_t *req);
/* The terminal `done` to the client, then req is freed. */
void pd_router_req_finish(pd_router_t *r, pd_router_req_t *req);
double pd_router_ms_between(uint64_t from_ns, uint64_t to_ns);
/* wk turned req away for lack of room: back to the queue, wk busy for a while. */
void pd_router_req_reroute(pd_router_t *r, pd_router_req_t *req, pd_router_worker_t *wk,
                           const char *why);
/* request_worker.c */
void pd_router_req_send_prefill(pd_router_t *r, pd_router_req_t *req);
void pd_router_req_on_reserved(pd_router_t *r, pd_router_worker_t *wk,
                               const pd_proto_reserved_t *m);
void pd_router_req_on_pinned(pd_router_t *r, pd_router_worker_t *wk, const pd_proto_pinned_t *m);
void pd_router_req_on_prefilled(pd_router_t *r, pd_router_worker_t *wk,
                                const pd_proto_prefilled_t *m);
void pd_router_req_on_token(pd_router_t *r, pd_router_worker_t *wk,
                            const pd_proto_worker_token_t *m);
void pd_router_req_on_done(pd_router_t *r, pd_router_worker_t *wk, const pd_proto_worker_done_t *m);
void pd_router_req_on_error(pd_router_t *r, pd_router_worker_t *wk,
                            const pd_proto_worker_error_t *m);
/* dw, suspected after a failed KV push, sent a heartbeat: it lives, so the requests whose
 * push into it failed end with that failure. */
void pd_router_req_on_suspect_alive(pd_router_t *r, pd_router_worker_t *dw);
/* Deadlines. */
void pd_router_reqs_tick(pd_router_t *r, uint64_t now_ms);
/* Fail every live request (shutdown). */
void pd_router_reqs_cleanup(pd_router_t *r, pd_status_t code, const char *message);

/* sched.c: the router's queue (docs/ARCHITECTURE.md, 11b). */
/* At arrival: the tokens req is expected to compute and its place in the queue. */
void pd_router_sched_arrive(pd_router_t *r, pd_router_req_t *req);
/* PD_OK, or PD_ERR_OVERLOADED with the reason in why when req's TTFT objective cannot be
 * met (predicted from measured rates, the queue ahead of it and its cached prefix). */
PD_MUST_CHECK pd_status_t pd_router_sched_admit(pd_router_t *r, const pd_router_req_t *req,
                                                char *why, size_t why_bytes);
/* Whether wk may take req's prefill now (the depth bound), or its decode. */
bool pd_router_sched_prefill_room(const pd_router_t *r, const pd_router_worker_t *wk,
                                  const pd_router_req_t *req);
bool pd_router_sched_decode_room(const pd_router_t *r, const pd_router_worker_t *wk,
                                 const pd_router_req_t *req, uint64_t now_ms);
/* Count req's prefill on wk, or stop counting it. */
void pd_router_sched_commit(pd_router_t *r, pd_router_worker_t *wk, pd_router_req_t *req);
void pd_router_sched_uncommit(pd_router_worker_t *wk, pd_router_req_t *req);
/* Measured rates: a prefill's report, a gap between two tokens of one request. */
void pd_router_sched_on_prefilled(pd_router_t *r, pd_router_worker_t *wk,
                                  const pd_proto_prefilled_t *m);
void pd_router_sched_on_token_gap(pd_router_worker_t *wk, double gap_ms);
/* The queued requests in dispatch order into r->sched_buf; returns how many. */
uint32_t pd_router_sched_order(pd_router_t *r);
void pd_router_sched_cleanup(pd_router_t *r);

/* router.c: sending. Each returns PD_OK or the encode/send failure, which it logs; a
 * caller may drop the status: a peer that is gone is found by its own means (a client's
 * closed connection, a worker's missed heartbeats). */
pd_status_t pd_router_send_client(pd_router_t *r, const pd_router_rid_t *client,
                                  const pd_proto_msg_t *msg);
pd_status_t pd_router_send_worker(pd_router_t *r, const pd_router_worker_t *wk,
                                  const pd_proto_msg_t *msg);
pd_status_t pd_router_send_rid(pd_router_t *r, void *sock, const pd_router_rid_t *rid,
                               const pd_proto_msg_t *msg);
void pd_router_send_client_error(pd_router_t *r, const pd_router_rid_t *client, const char *id,
                                 pd_status_t code, const char *message);
void pd_router_send_cancel(pd_router_t *r, const pd_router_worker_t *wk, uint64_t req_id);
/* status_reply; details: the directory's block counts (admin keys, or no client auth). */
void pd_router_send_status(pd_router_t *r, const pd_router_rid_t *client, bool details);
/* stats_reply; details: with every worker's figures. */
void pd_router_send_stats(pd_router_t *r, const pd_router_rid_t *client, bool details);

#endif
