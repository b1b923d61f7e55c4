/* pd-router: client socket, admission, scheduling, the global block directory and the
 * worker registry, in one zmq_poll loop. main() parses the command line, creates a
 * router and runs it until SIGINT/SIGTERM. */
#ifndef PD_ROUTER_H
#define PD_ROUTER_H

#include "pd/proto.h"
#include "pd/status.h"

#include <stdbool.h>
#include <stdint.h>

#define PD_ROUTER_PATH_CAP 1024

typedef enum pd_router_policy {
    PD_ROUTER_POLICY_KV = 0, /* score cached prefix against load */
    PD_ROUTER_POLICY_RR      /* round robin, for comparison */
} pd_router_policy_t;

typedef struct pd_router_config {
    char client_endpoint[PD_PROTO_ENDPOINT_CAP]; /* --client, bind */
    char worker_endpoint[PD_PROTO_ENDPOINT_CAP]; /* --workers, bind */
    char tokenizer_path[PD_ROUTER_PATH_CAP];     /* --tokenizer: "" none, "byte" built-in */
    char model_id[PD_PROTO_MODEL_ID_CAP];        /* --model-id */
    char ready_file[PD_ROUTER_PATH_CAP];         /* --ready-file: "" none */
    char journal_path[PD_ROUTER_PATH_CAP];       /* --journal: requests in flight, "" none */
    char curve_secret_file[PD_ROUTER_PATH_CAP];  /* --curve-secret-file: "" auth off */
    char client_keys_file[PD_ROUTER_PATH_CAP];   /* --client-keys: "" auth off */
    char worker_keys_file[PD_ROUTER_PATH_CAP];   /* --worker-keys: "" worker auth off */
    uint32_t block_tokens;                       /* --block-tokens */
    pd_router_policy_t policy;                   /* --policy */
    uint32_t max_queue;                          /* --max-queue */
    uint32_t max_inflight_per_worker;            /* --max-inflight */
    uint32_t min_cached_prefix_tokens;           /* --min-cached-prefix */
    uint32_t heartbeat_ms;                       /* --heartbeat-ms */
    uint32_t worker_timeout_ms;                  /* --worker-timeout-ms */
    uint32_t request_timeout_ms;                 /* --request-timeout-ms */
    uint32_t max_migrations;      /* --max-migrations: moves per request after a death, 0: off */
    uint32_t journal_compact_kb;  /* --journal-compact-kb: the journal's size before compaction */
    uint32_t prefill_depth;       /* --prefill-depth: prefills committed to a worker at once */
    uint32_t slo_ttft_ms;         /* --slo-ttft-ms: default TTFT objective, 0: none */
    uint32_t slo_tpot_ms;         /* --slo-tpot-ms: default TPOT objective, 0: none */
    uint32_t client_heartbeat_ms; /* ZMTP pings to clients; 3 missed close it (0: none) */
    double kv_weight;             /* --kv-weight */
    double load_weight;           /* --load-weight */
} pd_router_config_t;

typedef struct pd_router pd_router_t;

/* Fill config with the defaults (ports 7100 and 7101 on all interfaces, block 16, policy kv). */
void pd_router_config_defaults(pd_router_config_t *config);

/* Parse argv into config (defaults first). Returns PD_OK, PD_INPROGRESS after printing
 * --help to stdout, or PD_ERR_INVALID_PARAM after printing the problem to stderr. */
PD_MUST_CHECK pd_status_t pd_router_config_parse(int argc, char **argv, pd_router_config_t *config);

/* Print the usage to f (a FILE *). */
void pd_router_config_usage(void *f);

/* Create a router: load the tokenizer, bind both sockets, write the ready file.
 * Returns PD_OK, PD_ERR_IO (bind failed), PD_ERR_FORMAT (tokenizer) or PD_ERR_NO_MEMORY. */
PD_MUST_CHECK pd_status_t pd_router_create(const pd_router_config_t *config,
                                           pd_router_t **router_p);

/* Run the loop until pd_router_stop() or a signal handled by the caller sets *stop_flag
 * (may be NULL). Every request still in flight when it returns has had its terminal
 * message and its workers a cancel. */
PD_MUST_CHECK pd_status_t pd_router_run(pd_router_t *router, volatile int *stop_flag);

/* Ask the loop to return (from the loop's own thread, e.g. a hook in tests). */
void pd_router_stop(pd_router_t *router);

/* Close sockets, free everything, clear *router_p; accepts NULL. */
void pd_router_destroy(pd_router_t **router_p);

#endif
