/* pd-gateway: the HTTP front door of a pdkv cluster. It speaks the OpenAI API
 * (/v1/models, /v1/completions, /v1/chat/completions) and the Anthropic Messages API
 * (/v1/messages), streaming as Server-Sent Events, maps API keys to tenants, renders chat
 * prompts and tokenizes them, and hands token ids to pd-router over the client socket.
 * It holds no cluster state, so any number of gateways can stand in front of one router.
 * /health, /ready and /metrics (Prometheus text) serve operators. docs/API.md is the
 * user's reference. */
#ifndef PD_GATEWAY_H
#define PD_GATEWAY_H

#include "pd/status.h"

#include <stdbool.h>
#include <stdint.h>

#define PD_GW_PATH_CAP     1024
#define PD_GW_NAME_CAP     129 /* model name: <= 128 bytes + NUL */
#define PD_GW_ENDPOINT_CAP 257

typedef struct pd_gw_config {
    char listen_host[PD_GW_ENDPOINT_CAP];     /* --listen HOST:PORT, the host part */
    uint16_t listen_port;                     /* 0 picks a free port (see ready_file) */
    char router_endpoint[PD_GW_ENDPOINT_CAP]; /* --router */
    char curve_server_key[64];                /* --curve-server-key: "" no CURVE */
    char curve_secret_file[PD_GW_PATH_CAP];   /* --curve-secret-file */
    char tokenizer_path[PD_GW_PATH_CAP];      /* --tokenizer: a tokenizer.bin or "byte" */
    char chat_template_file[PD_GW_PATH_CAP];  /* --chat-template: "" the tokenizer's own */
    char model_name[PD_GW_NAME_CAP];          /* --model: the name clients ask for */
    char keys_file[PD_GW_PATH_CAP];           /* --keys: "" accepts every request */
    char ready_file[PD_GW_PATH_CAP];          /* --ready-file: "" none */
    uint32_t max_connections;                 /* --max-connections */
    uint32_t max_body_bytes;                  /* --max-body-bytes */
    uint32_t read_timeout_ms;                 /* --read-timeout-ms */
    uint32_t request_timeout_ms;              /* --request-timeout-ms */
    uint32_t default_max_tokens;              /* --default-max-tokens */
    uint32_t status_interval_ms;              /* --status-interval-ms */
    uint32_t max_inflight;                    /* --max-inflight */
} pd_gw_config_t;

typedef struct pd_gw pd_gw_t;

/* Fill config with the defaults (listen 127.0.0.1:8000, router tcp://127.0.0.1:7100). */
void pd_gw_config_defaults(pd_gw_config_t *config);

/* Parse argv into config (defaults first). Returns PD_OK, PD_INPROGRESS after printing
 * --help (or after --keygen / --hash-key did their job), or PD_ERR_INVALID_PARAM after
 * printing the problem to stderr. */
PD_MUST_CHECK pd_status_t pd_gw_config_parse(int argc, char **argv, pd_gw_config_t *config);

/* Create a gateway: load the tokenizer and the key file, connect to the router, bind the
 * HTTP socket, write the ready file. Returns PD_OK, PD_ERR_IO (bind or connect failed),
 * PD_ERR_FORMAT (tokenizer or key file), PD_ERR_NO_MEMORY. */
PD_MUST_CHECK pd_status_t pd_gw_create(const pd_gw_config_t *config, pd_gw_t **gw_p);

/* Run the event loop until *stop_flag becomes nonzero. *reload_flag (may be NULL) asks
 * for the key file to be read again (SIGHUP); the loop clears it. Every request still in
 * flight when it returns has been answered and canceled in the cluster. */
PD_MUST_CHECK pd_status_t pd_gw_run(pd_gw_t *gw, volatile int *stop_flag,
                                    volatile int *reload_flag);

/* Close every socket, free everything, clear *gw_p; accepts NULL. */
void pd_gw_destroy(pd_gw_t **gw_p);

#endif
