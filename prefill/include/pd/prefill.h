/* pd-prefill: the prefill worker, a role of the role runtime (pd/role.h). For each
 * `prefill` from the router it reuses its own cached prefix, computes the rest of the
 * prompt, pushes the KV of the blocks the decode worker lacks into the blocks it reserved
 * (layer by layer while later layers compute), samples the first token and notifies decode
 * with it. */
#ifndef PD_PREFILL_H
#define PD_PREFILL_H

#include "pd/role.h"

/* The role's handlers: pd_role_main(&pd_prefill_role, argc, argv) is the program. */
extern const pd_role_ops_t pd_prefill_role;

#endif
