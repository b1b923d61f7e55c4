/* pd-gateway internals. One thread runs one epoll loop over libmicrohttpd's epoll fd (in
 * "external" polling mode), the router DEALER's ZMQ_FD, and the sockets of connections
 * whose request is waiting on the cluster (watched for EPOLLRDHUP, because libmicrohttpd
 * does not watch a suspended connection and a client that hangs up must cancel its
 * request at once). No locks: every callback below runs on that thread.
 *
 * A generation request's life:
 *
 *   reading body -> parsed, prompt tokenized -> `generate` sent (waiting, connection
 *   suspended) -> first token: 200 + SSE headers queued (streaming) -> tokens -> `done`
 *   or `error` (terminal) -> response finished -> libmicrohttpd's completion callback
 *   frees the request.
 *
 * An error before the first token becomes an HTTP status; after it, an error event in
 * the stream. A request whose connection goes away before its terminal message sends
 * `cancel` to the router (exactly once) and is forgotten. */
#ifndef PD_GW_INT_H
#define PD_GW_INT_H

#include "pd/client.h"
#include "pd/gateway.h"
#include "pd/proto.h"
#include "pd/tokenizer.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_GW_REQ_BUCKETS    4096
#define PD_GW_MAX_STOPS      4
#define PD_GW_MAX_STOP_BYTES 256
#define PD_GW_KEY_HASH_BYTES 32 /* SHA-256 */

/* ---- a growable byte buffer ---- */

typedef struct pd_gw_buf {
    char *data;
    size_t len; /* bytes held, from data[off] */
    size_t off; /* bytes already consumed at the front */
    size_t cap;
} pd_gw_buf_t;

bool pd_gw_buf_append(pd_gw_buf_t *b, const void *data, size_t n);
bool pd_gw_buf_printf(pd_gw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append the compact encoding of j (jansson) and nothing else. */
bool pd_gw_buf_json(pd_gw_buf_t *b, const json_t *j);
void pd_gw_buf_consume(pd_gw_buf_t *b, size_t n);
void pd_gw_buf_cleanup(pd_gw_buf_t *b);
/* The bytes held ("" for a buffer never written: no arithmetic on a null pointer). */
static inline const char *pd_gw_buf_data(const pd_gw_buf_t *b)
{
    return b->data != NULL ? b->data + b->off : "";
}

/* ---- API keys (gw_keys.c) ---- */

/* One key of the key file. Shared by the table and by the requests that use it, so that
 * a reload never frees a key a request still counts against. */
typedef struct pd_gw_key {
    uint32_t refs;
    uint8_t hash[PD_GW_KEY_HASH_BYTES];
    char tenant[PD_PROTO_NAME_CAP];
    bool admin;           /* may read /metrics */
    uint32_t rpm;         /* requests per minute, 0: no limit */
    uint32_t concurrency; /* requests in flight, 0: no limit */
    /* Usage, kept across reloads (the object is reused when the hash is listed again). */
    uint32_t in_flight;
    double bucket;      /* rpm token bucket: requests that may start now */
    uint64_t bucket_ms; /* when bucket was last refilled */
} pd_gw_key_t;

typedef struct pd_gw_keys {
    pd_gw_key_t **keys; /* (n) sorted by hash */
    uint32_t n;
} pd_gw_keys_t;

/* Read path into a new table; keys listed in old (may be NULL) keep their usage. */
PD_MUST_CHECK pd_status_t pd_gw_keys_load(const char *path, const pd_gw_keys_t *old,
                                          pd_gw_keys_t **keys_p);
void pd_gw_keys_destroy(pd_gw_keys_t **keys_p);
/* The key whose SHA-256 matches secret, or NULL. */
pd_gw_key_t *pd_gw_keys_find(const pd_gw_keys_t *keys, const char *secret, size_t len);
void pd_gw_key_ref(pd_gw_key_t *key);
void pd_gw_key_unref(pd_gw_key_t **key_p);
/* Admission under the key's limits: PD_OK (counted in flight), or PD_ERR_OVERLOADED with
 * *retry_after_s_p, the seconds after which a retry can pass. */
PD_MUST_CHECK pd_status_t pd_gw_key_admit(pd_gw_key_t *key, uint64_t now_ms,
                                          uint32_t *retry_after_s_p);
void pd_gw_key_release(pd_gw_key_t *key);
/* Print a new random key and its key-file line (--keygen TENANT); the hash of a key read
 * from stdin (--hash-key). Return a process exit code. */
int pd_gw_keys_keygen(const char *tenant);
int pd_gw_keys_hash_stdin(void);

/* ---- detokenization and stop strings (gw_text.c) ---- */

typedef struct pd_gw_text {
    const pd_tokenizer_t *tok;
    int32_t prev;     /* the token before the next one (leading-space rule) */
    pd_gw_buf_t raw;  /* decoded bytes that are not yet whole UTF-8 characters */
    pd_gw_buf_t hold; /* valid text that might still begin a stop string */
    char *stops[PD_GW_MAX_STOPS];
    size_t stop_len[PD_GW_MAX_STOPS];
    uint32_t n_stops;
    size_t max_stop_len;
    int stop_index; /* the stop string that ended the text, -1 none */
} pd_gw_text_t;

void pd_gw_text_init(pd_gw_text_t *t, const pd_tokenizer_t *tok, int32_t prev);
/* Add a stop string (copied); PD_ERR_LIMIT past PD_GW_MAX_STOPS or PD_GW_MAX_STOP_BYTES. */
PD_MUST_CHECK pd_status_t pd_gw_text_add_stop(pd_gw_text_t *t, const char *s, size_t len);
/* Decode one token and append to out the text that can be released now (whole UTF-8
 * characters that cannot start a stop string). Returns true when a stop string completed:
 * out then ends just before it and later tokens must be ignored. */
bool pd_gw_text_push(pd_gw_text_t *t, int32_t token, pd_gw_buf_t *out);
/* Release everything held at the end (an incomplete character becomes U+FFFD). */
void pd_gw_text_finish(pd_gw_text_t *t, pd_gw_buf_t *out);
void pd_gw_text_cleanup(pd_gw_text_t *t);
/* Append bytes to out as valid UTF-8: each invalid or truncated sequence becomes U+FFFD.
 * Returns the number of bytes of s consumed: all but a trailing incomplete sequence when
 * partial_ok, else all. */
size_t pd_gw_utf8_sanitize(const char *s, size_t n, bool partial_ok, pd_gw_buf_t *out);

/* ---- metrics (gw_metrics.c) ---- */

typedef enum pd_gw_route {
    PD_GW_ROUTE_HEALTH = 0,
    PD_GW_ROUTE_READY,
    PD_GW_ROUTE_METRICS,
    PD_GW_ROUTE_MODELS,
    PD_GW_ROUTE_COMPLETIONS,
    PD_GW_ROUTE_CHAT,
    PD_GW_ROUTE_MESSAGES,
    PD_GW_ROUTE_OTHER, /* unknown path or method */
    PD_GW_N_ROUTES
} pd_gw_route_t;

#define PD_GW_N_BUCKETS 16

typedef struct pd_gw_histogram {
    uint64_t counts[PD_GW_N_BUCKETS + 1]; /* per bucket, the last is +Inf */
    double sum;
    uint64_t n;
} pd_gw_histogram_t;

typedef struct pd_gw_metrics {
    uint64_t requests[PD_GW_N_ROUTES][16]; /* by route and status class index */
    pd_gw_histogram_t ttft, tpot, e2e;     /* seconds */
    uint64_t prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens;
    uint64_t disconnects; /* requests canceled because the client went away */
    uint64_t key_rejections;
} pd_gw_metrics_t;

void pd_gw_metrics_count(pd_gw_metrics_t *m, pd_gw_route_t route, unsigned status);
void pd_gw_histogram_observe(pd_gw_histogram_t *h, const double *bounds, double v);
extern const double pd_gw_latency_bounds[PD_GW_N_BUCKETS];
extern const double pd_gw_tpot_bounds[PD_GW_N_BUCKETS];
const char *pd_gw_route_name(pd_gw_route_t route);

/* ---- requests ---- */

typedef enum pd_gw_api {
    PD_GW_API_COMPLETIONS = 0, /* OpenAI /v1/completions */
    PD_GW_API_CHAT,            /* OpenAI /v1/chat/completions */
    PD_GW_API_MESSAGES         /* Anthropic /v1/messages */
} pd_gw_api_t;

typedef enum pd_gw_phase {
    PD_GW_PHASE_READING = 0, /* headers seen, body arriving */
    PD_GW_PHASE_WAITING,     /* sent to the router, no response queued yet */
    PD_GW_PHASE_STREAMING,   /* SSE response queued, events flowing */
    PD_GW_PHASE_ANSWERED     /* a complete response is queued */
} pd_gw_phase_t;

/* What an error reply says; each API renders it in its own shape. */
typedef struct pd_gw_err {
    unsigned status;  /* HTTP status */
    const char *type; /* OpenAI-style type; the Anthropic one is derived from status */
    const char *code; /* OpenAI code, may be NULL */
    char message[256];
    uint32_t retry_after_s; /* Retry-After header when nonzero */
} pd_gw_err_t;

typedef struct pd_gw_conn pd_gw_conn_t;
typedef struct pd_gw pd_gw_t;
typedef struct pd_gw_req pd_gw_req_t;

/* The parts of a generation that are not shared by every API. */
typedef struct pd_gw_api_ops {
    /* Parse the body into req's generation (prompt, sampling, stops, cache). PD_OK or an
     * error with err filled (status 400 or 404 ...). */
    pd_status_t (*parse)(pd_gw_req_t *req, json_t *body, pd_gw_err_t *err);
    /* Streaming: the first events, sent with the headers (before the first text). */
    void (*stream_start)(pd_gw_req_t *req, pd_gw_buf_t *out);
    /* Streaming: a piece of text (valid UTF-8, may be empty with ids) and its token ids. */
    void (*stream_delta)(pd_gw_req_t *req, const char *text, size_t len, const int32_t *ids,
                         uint32_t n_ids, pd_gw_buf_t *out);
    /* Streaming: the closing events once the request ended. */
    void (*stream_finish)(pd_gw_req_t *req, pd_gw_buf_t *out);
    /* Streaming: an error after the headers went out. */
    void (*stream_error)(pd_gw_req_t *req, const pd_gw_err_t *err, pd_gw_buf_t *out);
    /* Not streaming: the whole response body. */
    json_t *(*full)(pd_gw_req_t *req);
    /* An error body in this API's shape. */
    json_t *(*error)(const pd_gw_err_t *err);
} pd_gw_api_ops_t;

extern const pd_gw_api_ops_t pd_gw_openai_completions_ops;
extern const pd_gw_api_ops_t pd_gw_openai_chat_ops;
extern const pd_gw_api_ops_t pd_gw_anthropic_ops;
json_t *pd_gw_openai_error(const pd_gw_err_t *err);
json_t *pd_gw_anthropic_error(const pd_gw_err_t *err);

struct pd_gw_req {
    pd_gw_t *gw;
    struct MHD_Connection *conn;
    pd_gw_conn_t *c;
    pd_gw_route_t route;
    const pd_gw_api_ops_t *ops;
    pd_gw_api_t api;
    pd_gw_phase_t phase;
    bool anthropic_shape; /* errors in Anthropic's shape */

    pd_gw_buf_t body;
    bool body_too_large;

    pd_gw_key_t *key; /* the authenticated key (a reference), NULL when keys are off */
    bool key_counted; /* admitted under key's limits, to be released once */
    char tenant[PD_PROTO_NAME_CAP];

    /* The generation. */
    uint64_t seq;                /* the wire id is "g<seq>" */
    struct pd_gw_req *next_hash; /* in gw->buckets while the router knows it */
    bool in_table;
    int fd;           /* watched for EPOLLRDHUP, -1 when not */
    char resp_id[48]; /* "chatcmpl-...", "cmpl-...", "msg_..." */
    char model[PD_GW_NAME_CAP];
    int64_t created; /* unix seconds */
    bool stream, include_usage, return_token_ids;
    int32_t *prompt; /* (n_prompt) owned */
    uint32_t n_prompt;
    uint32_t max_tokens;
    bool seeded;
    pd_proto_sampling_t sampling;
    pd_proto_cache_t cache;
    pd_gw_text_t text;
    pd_gw_buf_t all_text; /* every released byte (non-streaming responses) */
    int32_t *out;         /* (max_tokens) generated ids, owned */
    uint32_t n_out;
    uint32_t n_counted; /* ids up to the stop string, when one matched */
    bool stopped;       /* a stop string matched: stop sent, waiting for done */
    const char *finish; /* "length", "stop", "eos" */
    pd_proto_usage_t usage;
    bool have_usage;
    bool terminal; /* done or error received (or synthesized) */

    /* The response. */
    bool suspended;
    bool started;    /* the first stream events are written */
    bool aborted;    /* the client went away: end the response with an error */
    pd_gw_buf_t sse; /* stream bytes not yet taken by libmicrohttpd */
    bool sse_done;   /* the last event is in sse */
    unsigned status; /* what was (or will be) answered */
    json_t *reply;   /* a complete response waiting to be queued on resume */
    pd_gw_err_t reply_err;
    uint64_t arrival_ns, first_ns, last_ns;
    uint64_t deadline_ms;
    /* The router's accepted; with none, the request is sent again (gw_link.c). */
    bool accepted;
    uint64_t sent_ms;
    uint32_t n_resent;
};

/* ---- the gateway ---- */

/* The router's last stats reply, as the gateway saw it. */
typedef struct pd_gw_cluster {
    bool have;                        /* a reply ever came */
    uint64_t at_ms;                   /* when the last one came */
    pd_proto_stats_reply_t s;         /* its sums; s.workers is not used */
    pd_proto_stats_worker_t *workers; /* (n_workers) owned; only when the router sent them */
    uint32_t n_workers;
    bool details; /* the router sent the workers (admin key, or no auth) */
} pd_gw_cluster_t;

struct pd_gw_conn {
    pd_gw_conn_t *prev, *next;
    int fd;
    uint64_t read_deadline_ms; /* a whole request must have arrived by then, 0: none */
    bool watched;              /* fd is in the gateway's epoll set for EPOLLRDHUP */
    pd_gw_req_t *req;          /* the generation in flight on it, NULL: none */
};

/* An epoll tag for a connection record: its address with this bit set. */
#define PD_GW_EPOLL_CONN_BIT (1ull << 62)

struct pd_gw {
    pd_gw_config_t cfg;
    struct MHD_Daemon *mhd;
    int epfd;
    int mhd_fd;
    uint16_t port;
    pd_client_t *client;
    void *sock; /* the client's DEALER */
    pd_mp_writer_t w;
    int zmq_fd;
    pd_tokenizer_t *tok;
    char *chat_tpl; /* the chat template's source (owned); NULL: the built-in template */
    size_t chat_tpl_len;
    pd_gw_keys_t *keys;
    pd_gw_metrics_t metrics;
    pd_gw_cluster_t cluster;
    bool status_pending;
    uint64_t status_sent_ms;

    pd_gw_req_t *buckets[PD_GW_REQ_BUCKETS];
    uint32_t n_inflight; /* requests the router knows */
    uint64_t next_seq;
    char id_prefix[17]; /* random per process: response ids differ across gateways */
    uint64_t rng;       /* seeds for requests that name none */

    pd_gw_conn_t *conns; /* every open connection */
    uint32_t n_conns;
    uint32_t n_resumed;   /* connections resumed since the last MHD_run */
    uint32_t n_suspended; /* connections suspended now */
    bool stopping;
};

/* gw_link.c: the router side. */
PD_MUST_CHECK pd_status_t pd_gw_link_open(pd_gw_t *gw);
void pd_gw_link_close(pd_gw_t *gw);
/* Read every message waiting on the DEALER. */
void pd_gw_link_drain(pd_gw_t *gw);
/* Send req's generate; on failure err is filled. */
PD_MUST_CHECK pd_status_t pd_gw_link_submit(pd_gw_t *gw, pd_gw_req_t *req, pd_gw_err_t *err);
/* Send cancel for req and forget it on this side (idempotent). */
void pd_gw_link_cancel(pd_gw_t *gw, pd_gw_req_t *req);
/* Send stop for req: the router answers with done (usage so far); req stays in flight. */
void pd_gw_link_stop(pd_gw_t *gw, pd_gw_req_t *req);
/* Periodic: stats polling, request deadlines. */
void pd_gw_link_tick(pd_gw_t *gw, uint64_t now_ms);
/* The router answered a stats request within the last few periods. */
bool pd_gw_link_router_up(const pd_gw_t *gw, uint64_t now_ms);
pd_gw_req_t *pd_gw_req_find(pd_gw_t *gw, uint64_t seq);
void pd_gw_req_link(pd_gw_t *gw, pd_gw_req_t *req);
void pd_gw_req_unlink(pd_gw_t *gw, pd_gw_req_t *req);

/* gw_http.c: requests and responses. */
enum MHD_Result pd_gw_http_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls);
void pd_gw_http_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                             enum MHD_RequestTerminationCode toe);
/* gw_gen.c: a generation's life. Check and send the request (PD_OK: it is in flight). */
PD_MUST_CHECK pd_status_t pd_gw_gen_start(pd_gw_req_t *req, pd_gw_err_t *err);
/* The first step of pd_gw_gen_start: parse the body held in req->body as the API of
 * req->route asks (JSON, every field checked, the prompt rendered and tokenized) into req;
 * 400s into err. Touches nothing outside req: the body parser's fuzz target calls it. */
PD_MUST_CHECK pd_status_t pd_gw_gen_parse(pd_gw_req_t *req, pd_gw_err_t *err);
/* The request's HTTP exchange is over (completed, failed or the client left): cancel it
 * in the cluster if it is still there and release what it holds. */
void pd_gw_gen_end(pd_gw_req_t *req);
/* Suspend req's connection until the router side has something for it; wake it. */
void pd_gw_req_suspend(pd_gw_req_t *req);
void pd_gw_req_wake(pd_gw_req_t *req);
/* From the router: a token, the end, or an error for req. */
void pd_gw_req_on_token(pd_gw_req_t *req, uint32_t index, int32_t token);
void pd_gw_req_on_done(pd_gw_req_t *req, const pd_proto_done_t *d);
void pd_gw_req_on_error(pd_gw_req_t *req, pd_status_t code, const char *message);
/* The client hung up (EPOLLRDHUP) while its request was in flight. */
void pd_gw_req_on_hangup(pd_gw_req_t *req);
/* The epoll tag of a request socket, and the request in flight a tag names (or NULL). */
uint64_t pd_gw_gen_tag(uint64_t seq);
pd_gw_req_t *pd_gw_gen_from_tag(pd_gw_t *gw, uint64_t tag);
/* Map a cluster error to an HTTP error. */
void pd_gw_err_from_status(pd_status_t code, const char *message, pd_gw_err_t *err);
void pd_gw_err_set(pd_gw_err_t *err, unsigned status, const char *type, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* gw_prompt.c: chat rendering and tokenization. */
typedef struct pd_gw_prompt {
    pd_gw_buf_t text;    /* the built-in template's rendering */
    pd_gw_buf_t spans;   /* pd_tokenizer_span_t of the content in text */
    size_t span_start;   /* where the open turn's content began in text */
    json_t *messages;    /* [{role, content}] for a chat template (owned) */
    pd_gw_buf_t content; /* the open turn's content */
    const char *role;    /* the open turn's role; NULL: none open */
    uint32_t n_messages; /* turns begun */
    bool generation;     /* the generation prompt was asked for */
    /* Cache breakpoints: a byte offset of text (built-in), and a message with a byte
     * offset of its content (chat template). */
    uint32_t breaks[PD_PROTO_MAX_BREAKPOINTS + 1];
    uint32_t break_msg[PD_PROTO_MAX_BREAKPOINTS + 1];
    uint32_t break_off[PD_PROTO_MAX_BREAKPOINTS + 1];
    uint32_t break_ttl_s[PD_PROTO_MAX_BREAKPOINTS + 1];
    uint32_t n_breaks;
} pd_gw_prompt_t;

/* Load the chat template at start: file (may be "") overrides the tokenizer's own; with
 * neither, the built-in template. Logs which. PD_ERR_IO / PD_ERR_FORMAT /
 * PD_ERR_UNSUPPORTED with the reason logged for a template that cannot be used. */
PD_MUST_CHECK pd_status_t pd_gw_prompt_setup(pd_gw_t *gw, const char *file);

/* Append one turn: role is "system", "user" or "assistant"; the content comes in parts.
 * A turn left open at tokenization is the start of the answer (the model continues it). */
bool pd_gw_prompt_turn_begin(pd_gw_prompt_t *p, const char *role);
bool pd_gw_prompt_turn_text(pd_gw_prompt_t *p, const char *text, size_t len);
bool pd_gw_prompt_turn_end(pd_gw_prompt_t *p);
/* Ask for the generation prompt (the assistant's turn). */
bool pd_gw_prompt_generation(pd_gw_prompt_t *p);
/* Mark a cache breakpoint where the content given so far ends. PD_ERR_LIMIT past 4. */
PD_MUST_CHECK pd_status_t pd_gw_prompt_break(pd_gw_prompt_t *p, uint32_t ttl_s);
/* Render the turns (the gateway's chat template, or the built-in one), tokenize them with
 * special tokens only from the template's own text into req->prompt, and turn the
 * breakpoints into token offsets in req->cache (mode explicit when there are any). */
PD_MUST_CHECK pd_status_t pd_gw_prompt_tokenize(pd_gw_req_t *req, pd_gw_prompt_t *p,
                                                pd_gw_err_t *err);
void pd_gw_prompt_cleanup(pd_gw_prompt_t *p);
/* Tokenize a completion prompt given as text (BOS + encode) or as token ids. */
PD_MUST_CHECK pd_status_t pd_gw_prompt_from_json(pd_gw_req_t *req, const json_t *prompt,
                                                 pd_gw_err_t *err);

/* gw_parse.c: the sampling fields the APIs share. */
PD_MUST_CHECK pd_status_t pd_gw_parse_common(pd_gw_req_t *req, json_t *body,
                                             const char *max_tokens_key, const char *stop_key,
                                             pd_gw_err_t *err);

/* gw_metrics.c: GET /metrics. */
char *pd_gw_metrics_render(const pd_gw_t *gw, size_t *len_p);

#endif
