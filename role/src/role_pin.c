/* Pins for readers: a worker holding a prompt's leading blocks keeps them in its pool,
 * pinned, while a prefill worker reads them (pin / pinned / cancel, docs/PROTOCOL.md). */
#include "role_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

uint64_t pd_role_block_checksum(const pd_kv_layout_t *l, const void *pool, uint32_t block)
{
    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    XXH3_64bits_reset_withSeed(&state, 0);
    const size_t bytes = pd_kv_block_layer_bytes(l);
    for (uint32_t layer = 0; layer < l->n_layers; layer++)
        XXH3_64bits_update(&state, (const uint8_t *)pool + pd_kv_offset(l, layer, block), bytes);
    return XXH3_64bits_digest(&state);
}

static void pd_role_pin_drop(pd_role_t *rt, pd_role_pin_t *pin)
{
    pd_kvbm_release(rt->bm, pin->ids, pin->n); /* skips PD_KVBM_NO_BLOCK */
    free(pin->ids);
    memset(pin, 0, sizeof(*pin));
}

void pd_role_pins_release(pd_role_t *rt, uint64_t req_id)
{
    for (uint32_t i = 0; rt->pins != NULL && i < PD_ROLE_MAX_PINS; i++) {
        if (rt->pins[i].ids != NULL && rt->pins[i].req_id == req_id)
            pd_role_pin_drop(rt, &rt->pins[i]);
    }
}

void pd_role_pins_expire(pd_role_t *rt, uint64_t now_ms)
{
    for (uint32_t i = 0; rt->pins != NULL && i < PD_ROLE_MAX_PINS; i++) {
        if (rt->pins[i].ids != NULL && now_ms >= rt->pins[i].expire_ms) {
            pd_log_info("%s: pins of request %llu expired", rt->ops->name,
                        (unsigned long long)rt->pins[i].req_id);
            pd_role_pin_drop(rt, &rt->pins[i]);
        }
    }
}

void pd_role_pins_cleanup(pd_role_t *rt)
{
    for (uint32_t i = 0; rt->pins != NULL && i < PD_ROLE_MAX_PINS; i++) {
        if (rt->pins[i].ids != NULL)
            pd_role_pin_drop(rt, &rt->pins[i]);
    }
    free(rt->pins);
    rt->pins = NULL;
}

static void pd_role_pinned_send(pd_role_t *rt, uint64_t req_id, pd_status_t status,
                                const uint32_t *ids, const uint64_t *sums, uint32_t n)
{
    pd_proto_msg_t msg = {.type = PD_PROTO_TYPE_PINNED};
    msg.u.pinned = (pd_proto_pinned_t){req_id, status, ids, n, sums, n};
    pd_status_t st = pd_worker_send(rt->worker, &msg);
    if (st != PD_OK)
        pd_log_warn("%s: cannot answer pin of %llu: %s", rt->ops->name, (unsigned long long)req_id,
                    pd_status_str(st));
}

void pd_role_on_pin(pd_role_t *rt, const pd_proto_pin_t *m)
{
    pd_role_pins_release(rt, m->req_id); /* a repeated pin replaces the earlier one */
    pd_role_pin_t *slot = NULL;
    for (uint32_t i = 0; rt->pins != NULL && i < PD_ROLE_MAX_PINS && slot == NULL; i++) {
        if (rt->pins[i].ids == NULL)
            slot = &rt->pins[i];
    }
    if (slot == NULL) {
        pd_role_pinned_send(rt, m->req_id, PD_ERR_OVERLOADED, NULL, NULL, 0);
        return;
    }
    const uint32_t n = m->n_block_hashes;
    uint32_t *ids = malloc((size_t)n * sizeof(*ids));
    uint64_t *sums = calloc(n, sizeof(*sums));
    size_t n_hit = 0;
    pd_status_t st = (ids == NULL || sums == NULL) ? PD_ERR_NO_MEMORY : PD_OK;
    if (st == PD_OK)
        st = pd_kvbm_lookup_each(rt->bm, m->block_hashes, n, ids, &n_hit);
    if (st != PD_OK) {
        free(ids);
        free(sums);
        pd_role_pinned_send(rt, m->req_id, st, NULL, NULL, 0);
        return;
    }
    /* Hashed now, from the pool as it is: a reader checks what it read against this. */
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] != PD_KVBM_NO_BLOCK)
            sums[i] = pd_role_block_checksum(&rt->layout, rt->fabric.pool, ids[i]);
    }
    pd_log_debug("%s: pinned %zu of %u blocks for request %llu", rt->ops->name, n_hit, n,
                 (unsigned long long)m->req_id);
    pd_role_pinned_send(rt, m->req_id, PD_OK, ids, sums, n);
    free(sums);
    if (n_hit == 0) {
        free(ids);
        return;
    }
    slot->req_id = m->req_id;
    slot->ids = ids;
    slot->n = n;
    slot->expire_ms = pd_time_now_ms() + (m->deadline_ms > 0 ? m->deadline_ms : 1);
}
