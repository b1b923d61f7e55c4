/* pd-decode: the decode worker. It reserves KV blocks for the router's requests, receives
 * the prompt's KV from prefill over the transfer fabric into them, and runs the token
 * loop with continuous batching, streaming tokens to the router. With --colocated
 * (role "both") it also prefills its own requests. */
#ifndef PD_DECODE_H
#define PD_DECODE_H

#include "pd/status.h"
#include "pd/worker.h"

typedef struct pd_decode pd_decode_t;

/* Load the model, make the KV pool, block manager, transfer engine and the worker's
 * sockets from args. Returns PD_ERR_* with the reason logged. */
pd_status_t pd_decode_create(const pd_worker_args_t *args, pd_decode_t **decode_p);

/* Release every request's blocks, then everything the decode worker owns; accepts NULL
 * and clears *decode_p. */
void pd_decode_destroy(pd_decode_t **decode_p);

/* Serve until SIGTERM/SIGINT (pd_worker_stopping). */
pd_status_t pd_decode_run(pd_decode_t *d);

/* The whole program: parse argv, create, run, destroy. Returns the exit status. */
int pd_decode_main(int argc, char **argv);

#endif
