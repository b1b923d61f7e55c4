/* What pd-prefill and pd-decode share: the command line, the DEALER to the router
 * (register, registered, heartbeat, resync -> kv_snapshot), the PUB for KV events (one
 * kv_event per loop iteration, seq +1 per batch, one epoch per process start), the record
 * of every hash the worker holds (from its own events, for snapshots), signal handling,
 * and the one event loop (zmq_poll over the router socket plus one extra fd, the transfer
 * engine's).
 *
 * Nothing here knows the transfer fabric or the model: a role hands in hooks that make
 * transfer progress, run compute and answer the requests the router sends. */
#ifndef PD_WORKER_H
#define PD_WORKER_H

#include "pd/kvblock.h"
#include "pd/proto.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_WORKER_PATH_CAP 1024

/* The flags `pdctl up` passes (deploy/src/launch.c), with their values. */
typedef struct pd_worker_args {
    pd_proto_role_t role;               /* prefill, decode, or both (decode with --colocated) */
    char router[PD_PROTO_ENDPOINT_CAP]; /* --router tcp://IP:PORT (the worker ROUTER) */
    char id[PD_PROTO_NAME_CAP];         /* --id NAME */
    char model[PD_WORKER_PATH_CAP];     /* --model PATH; also the model_id sent in register */
    uint32_t threads;                   /* --threads N (0: all cores) */
    char backend[8];                    /* --backend cpu|cuda: the compute backend */
    bool kv_staging;                    /* --kv-staging 0|1: compute pool apart (cuda: always) */
    uint32_t pool_mb;                   /* --pool-mb M: the KV pool */
    uint32_t block_tokens;              /* --block-tokens B */
    char events[PD_PROTO_ENDPOINT_CAP]; /* --events tcp://IP:PORT: where the PUB binds */
    char ip[64];                        /* --ip IP: the address this worker uses */
    char xfer_backend[16];              /* --xfer-backend ucx|loopback */
    bool checksum;                      /* --checksum 0|1 */
    bool layerwise;                     /* --layerwise 0|1 */
    bool fetch;                         /* --fetch 0|1: prefill reads decode's prefix */
    uint32_t xfer_timeout_ms;           /* --xfer-timeout-ms T */
    char kv_codec[8];                   /* --kv-codec none|int8|fp8: KV compressed on the wire */
    uint32_t max_batch;                 /* --max-batch N (decode) */
    uint32_t chunk_tokens;              /* --chunk-tokens N (prefill): tokens per pass */
    uint32_t host_mb;                   /* --host-mb H: G2 tier, 0 for none */
    char ssd_dir[PD_WORKER_PATH_CAP];   /* --ssd-dir DIR: G3 tier, "" for none */
    uint32_t ssd_mb;                    /* --ssd-mb S */
    /* CurveZMQ on the router connection (docs/ARCHITECTURE.md section 10), both or neither:
     * --curve-server-key Z85 (the router's worker-socket public key) and
     * --curve-secret-file FILE (this worker's secret key, bare or `pd-router --keygen`
     * output). "" when off. */
    char curve_server_key[41];
    char curve_secret_file[PD_WORKER_PATH_CAP];
} pd_worker_args_t;

/* Parse argv for a worker of program name prog (role prefill or decode; --colocated turns
 * decode into both). Returns PD_OK, PD_INPROGRESS after printing --help (exit 0), or
 * PD_ERR_INVALID_PARAM after printing what was wrong and the usage to stderr. */
PD_MUST_CHECK pd_status_t pd_worker_args_parse(int argc, char **argv, pd_proto_role_t role,
                                               pd_worker_args_t *args_p);

/* Print the usage of a worker program to stdout. */
void pd_worker_args_usage(const char *prog, pd_proto_role_t role);

/* Create a directory and its missing parents (mode 0755), like mkdir -p; PD_ERR_IO with
 * the reason logged when that fails. Used for --ssd-dir. */
PD_MUST_CHECK pd_status_t pd_worker_mkdirs(const char *path);

/* Install SIGTERM/SIGINT handlers that ask every running loop to stop; SIGPIPE ignored. */
void pd_worker_signals_install(void);

/* True once SIGTERM or SIGINT arrived (or pd_worker_stop was called). */
bool pd_worker_stopping(void);

/* Ask the loop to return after its current iteration. */
void pd_worker_stop(void);

/* What the role tells the loop. Every hook runs on the loop's thread. */
typedef struct pd_worker_hooks {
    void *arg;
    /* A message from the router other than registered/resync (reserve, prefill, cancel,
     * error). msg is valid only during the call. */
    void (*on_message)(void *arg, const pd_proto_msg_t *msg);
    /* Once per iteration after the sockets were served: make transfer progress, run one
     * compute step. */
    void (*on_step)(void *arg);
    /* The longest the loop may sleep before the next on_step, in ms: 0 when work is ready,
     * -1 for no limit (the loop still wakes for the router, the extra fd and heartbeats). */
    long (*wait_ms)(void *arg);
    /* Fill the load fields of a heartbeat (running, queued, free_blocks). */
    void (*load)(void *arg, pd_proto_heartbeat_t *hb);
    /* The router dropped this worker (declared it dead) while it ran: drop every request
     * of the old epoch, nobody waits for them. The loop then registers under a new epoch.
     * May be NULL. */
    void (*on_reset)(void *arg);
} pd_worker_hooks_t;

/* What the worker registers with. */
typedef struct pd_worker_reg {
    uint32_t n_blocks;     /* KV pool blocks */
    const void *xfer_desc; /* (xfer_desc_bytes) the transfer descriptor, copied */
    size_t xfer_desc_bytes;
} pd_worker_reg_t;

typedef struct pd_worker pd_worker_t;

/* Create the sockets (connect the DEALER, bind the PUB) and pick this start's epoch;
 * args and reg are copied. Returns PD_ERR_IO if a socket cannot be made or bound. */
PD_MUST_CHECK pd_status_t pd_worker_create(const pd_worker_args_t *args, const pd_worker_reg_t *reg,
                                           pd_worker_t **worker_p);

/* Close the sockets and free the worker; accepts NULL and clears *worker_p. */
void pd_worker_destroy(pd_worker_t **worker_p);

/* This start's epoch (random, never 0). */
uint64_t pd_worker_epoch(const pd_worker_t *w);

/* The parsed arguments the worker was made with. */
const pd_worker_args_t *pd_worker_get_args(const pd_worker_t *w);

/* The endpoint the events PUB is bound to, as register announces it (a port chosen by the
 * system when --events asked for one with `*`); owned by the worker. */
const char *pd_worker_events_endpoint(const pd_worker_t *w);

/* Encode msg and send it to the router without blocking. PD_ERR_LIMIT / PD_ERR_INVALID_PARAM
 * from the encoder, PD_ERR_BUSY when the socket's queue is full (the message is dropped).
 * It logs its own failure, and a caller may drop the status: a router that does not hear
 * from a worker fails or moves its requests (heartbeats, deadlines). */
pd_status_t pd_worker_send(pd_worker_t *w, const pd_proto_msg_t *msg);

/* Send an error about req_id (0: about no request) with code and a message. */
void pd_worker_send_error(pd_worker_t *w, uint64_t req_id, pd_status_t code, const char *message);

/* Send a heartbeat at the next iteration rather than when its period ends (the load
 * changed). */
void pd_worker_load_changed(pd_worker_t *w);

/* Record one KV event for the next kv_event batch and the hash record. kind and tier are
 * wire values; tier for PD_PROTO_EVENT_TIER is where the hash is now. Never allocates once
 * the worker is created, except when the batch grows past what it held before. */
void pd_worker_kv_event(pd_worker_t *w, pd_proto_event_kind_t kind, pd_proto_tier_t tier,
                        uint64_t hash);

/* Publish the events recorded since the last flush as one kv_event (if any). The loop calls
 * it every iteration; roles may call it earlier. */
void pd_worker_events_flush(pd_worker_t *w);

/* Number of hashes the worker's record lists in tier (for tests and status). */
uint32_t pd_worker_held_count(const pd_worker_t *w, pd_proto_tier_t tier);

/* Send a heartbeat now if one is due; for long compute inside one loop iteration (a
 * prefill's per-layer callback), so that the router does not take a busy worker for a
 * dead one. Only from the loop's thread, while pd_worker_run is running. */
void pd_worker_tick(pd_worker_t *w);

/* Run the loop until pd_worker_stopping(): register (again whenever the router forgets
 * the worker), heartbeat, answer resync, hand every other router message to hooks,
 * publish events. extra_fd (-1 for none) is polled for readability. Returns PD_OK on a
 * requested stop. */
PD_MUST_CHECK pd_status_t pd_worker_run(pd_worker_t *w, const pd_worker_hooks_t *hooks,
                                        int extra_fd);

/* The kvbm event callback (pd_kvbm_config_t.on_event with event_arg = the worker): turns
 * block manager events into KV events. */
void pd_worker_kvbm_event(void *worker, const pd_kvbm_event_t *event);

/* The worker's block manager over its KV pool (layout, pool_base), with the G2 and G3
 * tiers that --host-mb, --ssd-mb and --ssd-dir ask for (the directory is made if
 * missing), its events turned into the worker's KV events. */
PD_MUST_CHECK pd_status_t pd_worker_kvbm_create(pd_worker_t *w, const pd_worker_args_t *args,
                                                const pd_kv_layout_t *layout, void *pool_base,
                                                pd_kvbm_t **bm_p);

/* Load fields every role reports: free_blocks = blocks not reserved (free or cached and
 * unpinned, which an allocation may evict). */
uint32_t pd_worker_kvbm_free_blocks(const pd_kvbm_t *bm);

/* The payload of the notification that ends a KV transfer from prefill to decode
 * (docs/PROTOCOL.md, "KV transfer"): 16 bytes, little-endian:
 *   u64 req_id, i32 first_token, u32 n_computed_tokens. */
#define PD_WORKER_KV_PAYLOAD_BYTES 16

typedef struct pd_worker_kv_payload {
    uint64_t req_id;
    int32_t first_token;
    uint32_t n_computed_tokens;
} pd_worker_kv_payload_t;

/* Write p into out (PD_WORKER_KV_PAYLOAD_BYTES bytes). */
void pd_worker_kv_payload_pack(const pd_worker_kv_payload_t *p, uint8_t *out);

/* Read a payload of len bytes; PD_ERR_PROTO unless len is PD_WORKER_KV_PAYLOAD_BYTES. */
PD_MUST_CHECK pd_status_t pd_worker_kv_payload_unpack(const void *buf, size_t len,
                                                      pd_worker_kv_payload_t *p_p);

#endif
