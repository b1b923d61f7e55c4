/* Test helpers: start pd-router as a process on loopback ports it picks itself (read
 * back from --ready-file), and fake prefill/decode workers with real ZeroMQ sockets that
 * follow docs/PROTOCOL.md, all driven from the test's own thread. */
#ifndef PD_TEST_FAKE_WORKER_H
#define PD_TEST_FAKE_WORKER_H

#include "pd/client.h"
#include "pd/proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FW_MAX_REQS   256
#define FW_MAX_HELD   4096
#define FW_MAX_WORKER 8

typedef struct fw_router {
    pid_t pid;
    char dir[256];
    char client_ep[512];
    char worker_ep[512];
} fw_router_t;

/* Start pd-router with extra arguments (NULL-terminated); asserts it came up. */
void fw_router_start(fw_router_t *r, const char *const *extra);
/* SIGTERM, wait (5 s, then SIGKILL); asserts it exited by itself. */
void fw_router_stop(fw_router_t *r);

typedef struct fw_req {
    bool used;
    uint64_t req_id;
    uint32_t n_tokens, max_tokens;
    bool ready; /* decode: the first token arrived from prefill */
    int32_t first_token;
    uint32_t n_cached_blocks;
} fw_req_t;

typedef struct fw_worker {
    char id[64];
    pd_proto_role_t role;
    uint64_t epoch;
    void *ctx;
    void *dealer;
    void *pub;
    char events_ep[256];
    bool registered;
    bool heartbeats;       /* send heartbeats (false: act dead) */
    bool hang;             /* decode: reserve but never stream */
    uint32_t end_after;    /* decode: stream this many tokens, flag the last, send no done */
    pd_status_t fail_push; /* prefill: answer the next prefill with this error, once */
    const pd_proto_worker_stats_t *hb_stats; /* sent with every heartbeat (NULL: none) */
    const int32_t *script;                   /* decode: stream these ids (NULL: made up) */
    uint32_t n_script;
    uint64_t last_hb_ms;
    uint64_t seq;
    uint64_t held[FW_MAX_HELD]; /* hashes held in G1 */
    uint32_t n_held;
    fw_req_t reqs[FW_MAX_REQS];
    uint32_t n_reserve, n_prefill, n_cancel, n_resync;
    uint64_t last_cancel;
    uint32_t n_pin;       /* pin messages answered */
    uint32_t last_src;    /* prefill: blocks the last one named at a holder (src_*) */
    char last_src_id[64]; /* prefill: that holder */
} fw_worker_t;

/* All fake workers of a test, so that prefill can hand the first token to decode. */
typedef struct fw_cluster {
    fw_worker_t *workers[FW_MAX_WORKER];
    uint32_t n;
} fw_cluster_t;

void fw_worker_start(fw_cluster_t *cl, fw_worker_t *w, const fw_router_t *r, const char *id,
                     pd_proto_role_t role);
/* The same with CurveZMQ: server_public is the router's key (Z85), secret this worker's;
 * its events PUB is a CURVE server with that key. */
void fw_worker_start_curve(fw_cluster_t *cl, fw_worker_t *w, const fw_router_t *r, const char *id,
                           pd_proto_role_t role, const char *server_public, const char *secret);
void fw_worker_stop(fw_worker_t *w);
/* Publish a kv_event "stored" of hashes (and remember them for snapshots). */
void fw_worker_store(fw_worker_t *w, const uint64_t *hashes, uint32_t n);
/* Record hashes as stored and use up a seq, but publish nothing: a lost event. */
void fw_worker_store_lost(fw_worker_t *w, const uint64_t *hashes, uint32_t n);
/* Send one message as this worker (to the router, or a kv_event on its PUB). */
void fw_worker_send(fw_worker_t *w, const pd_proto_msg_t *m);
/* Serve every worker's sockets for up to ms milliseconds. */
void fw_cluster_pump(fw_cluster_t *cl, int ms);

/* Client side: send a generate of n tokens (tokens[i] = base + i). */
void fw_send_generate(pd_client_t *c, const char *id, const int32_t *tokens, uint32_t n,
                      uint32_t max_tokens, const char *tenant);
/* Poll the router's status until pred(status) or timeout, pumping the cluster. */
bool fw_wait_status(pd_client_t *c, fw_cluster_t *cl, int timeout_ms,
                    bool (*pred)(const pd_proto_status_reply_t *s, void *arg), void *arg);

#endif
