/* pd-prefill as a role of the role runtime (pd/role.h): its state and its handlers. */
#include "pd/log.h"
#include "prefill_int.h"

#include <stdlib.h>

static void pd_prefill_free(pd_prefill_t *p)
{
    free(p->logits);
    free(p->scratch);
    free(p->seqs);
    free(p->pass);
    free(p->items);
    free(p->item_job);
    free(p);
}

static pd_status_t pd_prefill_create(pd_role_t *rt, void **state_p)
{
    pd_prefill_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    p->rt = rt;
    p->logits = calloc((size_t)PD_PREFILL_MAX_PASS_SEQS * rt->vocab, sizeof(float));
    p->scratch = calloc(2 * (size_t)rt->vocab, sizeof(float));
    p->seqs = calloc(PD_PREFILL_MAX_PASS_SEQS, sizeof(*p->seqs));
    p->pass = calloc(PD_PREFILL_MAX_PASS_SEQS, sizeof(*p->pass));
    p->items = calloc(PD_PREFILL_MAX_JOBS, sizeof(*p->items));
    p->item_job = calloc(PD_PREFILL_MAX_JOBS, sizeof(*p->item_job));
    if (p->logits == NULL || p->scratch == NULL || p->seqs == NULL || p->pass == NULL ||
        p->items == NULL || p->item_job == NULL) {
        pd_prefill_free(p);
        return PD_ERR_NO_MEMORY;
    }
    pd_log_info("prefill %s: chunks of %u tokens, layerwise push %d, prefix fetch %d", rt->args.id,
                rt->args.chunk_tokens, rt->args.layerwise, rt->args.fetch);
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
    pd_prefill_free(p);
}

/* The router dropped this worker's epoch, or a new router process knows none of its
 * prompts: every prompt it held ends, unanswered. */
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
        pd_log_info("prefill %s: %u job(s) the router no longer has ended", p->rt->args.id, n);
}

/* A chunk to compute: no sleep. Pushes in flight: look at them again soon even if the
 * fabric's fd is quiet. */
static long pd_prefill_wait_ms(void *state)
{
    const pd_prefill_t *p = state;
    if (p->n_jobs == 0)
        return -1;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++)
        if (p->jobs[i].live && !p->jobs[i].sampled)
            return 0;
    return 2;
}

/* running: prompts with a chunk computed (or pushing); queued: those waiting for their
 * first; queued_tokens: what all of them have still to compute. */
static void pd_prefill_load(void *state, pd_proto_heartbeat_t *hb)
{
    const pd_prefill_t *p = state;
    uint32_t running = 0, queued = 0, tokens = 0;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        const pd_prefill_job_t *j = &p->jobs[i];
        if (!j->live)
            continue;
        if (j->n_chunks > 0 || j->sampled)
            running++;
        else
            queued++;
        tokens += j->n_to_compute - j->n_computed;
    }
    hb->running = running;
    hb->queued = queued;
    hb->queued_tokens = tokens;
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
    .on_step = pd_prefill_on_step,
    .wait_ms = pd_prefill_wait_ms,
    .load = pd_prefill_load,
};
