/* pd-prefill: the prefill worker. For each `prefill` from the router it reuses its own
 * cached prefix, computes the rest of the prompt, pushes the KV of the blocks the decode
 * worker lacks into the blocks it reserved (layer by layer while later layers compute),
 * samples the first token and notifies decode with it. */
#ifndef PD_PREFILL_H
#define PD_PREFILL_H

#include "pd/status.h"
#include "pd/worker.h"

typedef struct pd_prefill pd_prefill_t;

/* Load the model, make the KV pool, block manager, transfer engine and the worker's
 * sockets from args. Returns PD_ERR_* with the reason logged. */
pd_status_t pd_prefill_create(const pd_worker_args_t *args, pd_prefill_t **prefill_p);

/* Cancel what is in flight, release every block, free everything; accepts NULL and
 * clears *prefill_p. */
void pd_prefill_destroy(pd_prefill_t **prefill_p);

/* Serve until SIGTERM/SIGINT (pd_worker_stopping). */
pd_status_t pd_prefill_run(pd_prefill_t *p);

/* The whole program: parse argv, create, run, destroy. Returns the exit status. */
int pd_prefill_main(int argc, char **argv);

#endif
