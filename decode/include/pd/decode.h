/* pd-decode: the decode worker, a role of the role runtime (pd/role.h). It reserves KV
 * blocks for the router's requests, receives the prompt's KV from prefill over the
 * transfer fabric into them, and runs the token loop with continuous batching, streaming
 * tokens to the router. With --colocated (role "both") it also prefills its own requests. */
#ifndef PD_DECODE_H
#define PD_DECODE_H

#include "pd/role.h"

/* The role's handlers: pd_role_main(&pd_decode_role, argc, argv) is the program. */
extern const pd_role_ops_t pd_decode_role;

#endif
