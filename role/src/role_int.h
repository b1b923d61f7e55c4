/* Private to the role runtime: pins held for readers (role_pin.c). */
#ifndef PD_ROLE_INT_H
#define PD_ROLE_INT_H

#include "pd/role.h"

/* Requests that may hold pins on one worker at a time. */
#define PD_ROLE_MAX_PINS 64u

/* The blocks one request pinned here for a reader, until cancel or expire_ms. */
struct pd_role_pin {
    uint64_t req_id;
    uint32_t *ids; /* (n) pool indices, PD_KVBM_NO_BLOCK where not held; NULL: free slot */
    uint32_t n;
    uint64_t expire_ms;
};

void pd_role_on_pin(pd_role_t *rt, const pd_proto_pin_t *m);
void pd_role_pins_release(pd_role_t *rt, uint64_t req_id);
void pd_role_pins_expire(pd_role_t *rt, uint64_t now_ms);
void pd_role_pins_cleanup(pd_role_t *rt);

/* The compute pool apart from the host pool (role_stage.c): allocate it in the engine's
 * memory and start tracking which blocks it holds; close frees it (NULL-safe). */
PD_MUST_CHECK pd_status_t pd_role_stage_open(pd_role_t *rt);
void pd_role_stage_close(pd_role_t *rt);

#endif
