/* pd-prefill as a role of the role runtime (pd/role.h): its state and its handlers. */
#include "pd/log.h"
#include "prefill_int.h"

#include <stdlib.h>

static pd_status_t pd_prefill_create(pd_role_t *rt, void **state_p)
{
    pd_prefill_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    p->rt = rt;
    p->logits = calloc(rt->vocab, sizeof(float));
    p->scratch = calloc(2 * (size_t)rt->vocab, sizeof(float));
    if (p->logits == NULL || p->scratch == NULL) {
        free(p->logits);
        free(p->scratch);
        free(p);
        return PD_ERR_NO_MEMORY;
    }
    pd_log_info("prefill %s: layerwise push %d, prefix fetch %d", rt->args.id, rt->args.layerwise,
                rt->args.fetch);
    *state_p = p;
    return PD_OK;
}

static void pd_prefill_destroy(void *state)
{
    pd_prefill_t *p = state;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++)
        if (p->jobs[i].live)
            pd_prefill_job_end(p, &p->jobs[i]);
    for (uint32_t i = 0; i < PD_PREFILL_MAX_PEERS; i++)
        pd_xfer_peer_disconnect(&p->peers[i].peer);
    free(p->logits);
    free(p->scratch);
    free(p);
}

static void pd_prefill_cancel_all(void *state)
{
    pd_prefill_t *p = state;
    uint32_t n = 0;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live) {
            pd_prefill_job_end(p, &p->jobs[i]);
            n++;
        }
    }
    if (n > 0)
        pd_log_info("prefill %s: %u job(s) of the dropped epoch ended", p->rt->args.id, n);
}

/* While pushes are in flight, look at them again soon even if the fabric's fd is quiet. */
static long pd_prefill_wait_ms(void *state)
{
    const pd_prefill_t *p = state;
    return p->n_jobs > 0 ? 2 : -1;
}

static void pd_prefill_load(void *state, pd_proto_heartbeat_t *hb)
{
    const pd_prefill_t *p = state;
    hb->running = p->n_jobs;
    hb->queued = 0;
}

const pd_role_ops_t pd_prefill_role = {
    .name = "prefill",
    .role = PD_PROTO_ROLE_PREFILL,
    .pool_from_fabric = false, /* only read by the fabric (puts from it): the heap will do */
    .create = pd_prefill_create,
    .destroy = pd_prefill_destroy,
    .on_prefill = pd_prefill_on_prefill,
    .on_cancel = pd_prefill_on_cancel,
    .cancel_all = pd_prefill_cancel_all,
    .on_step = pd_prefill_poll_jobs,
    .wait_ms = pd_prefill_wait_ms,
    .load = pd_prefill_load,
};
