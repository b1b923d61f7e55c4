/* The router's queue: late binding, shortest first, and admission against a TTFT
 * objective (docs/ARCHITECTURE.md, 11b).
 *
 * A request waits in the router until a prefill worker can start it soon: each worker
 * holds at most --prefill-depth committed prefills (a prompt much shorter than all it
 * holds may go up to twice that to a worker that computes in chunks, fewest remaining
 * tokens first, since it starts it at its next chunk). Until then the request can still go to any
 * worker, with the cached prefix and load of the moment it is committed, or be cancelled
 * or refused. The queue is ordered by arrival time plus expected compute time: short
 * prompts pass long ones, yet every key is fixed at arrival, so nothing waits forever.
 *
 * Rates are measured, never configured: prefill milliseconds per computed token from each
 * `prefilled`, decode step time from the gaps between a request's tokens. */
#include "router_int.h"

#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>

/* Weight of a new measurement in the running averages. */
#define PD_ROUTER_SCHED_ALPHA 0.2
/* A prefill is "much shorter" than the ones a worker holds at this ratio. */
#define PD_ROUTER_SCHED_SHORT_RATIO 4u
/* Prefills computing fewer tokens than this say little about the rate. */
#define PD_ROUTER_SCHED_MIN_RATE_TOKENS 16u
/* Expected cost of a token before anything was measured, to order the queue. */
#define PD_ROUTER_SCHED_PRIOR_MS_PER_TOKEN 1.0

static double pd_router_sched_avg(double avg, double v)
{
    return avg > 0 ? (1.0 - PD_ROUTER_SCHED_ALPHA) * avg + PD_ROUTER_SCHED_ALPHA * v : v;
}

static double pd_router_sched_mpt(const pd_router_t *r)
{
    return r->ms_per_token > 0 ? r->ms_per_token : PD_ROUTER_SCHED_PRIOR_MS_PER_TOKEN;
}

void pd_router_sched_arrive(pd_router_t *r, pd_router_req_t *req)
{
    uint32_t cached[PD_DIR_MAX_WORKERS];
    uint32_t n_lookup =
        req->plan.read_blocks < req->n_hashes ? req->plan.read_blocks : req->n_hashes;
    uint32_t best = 0;
    if (n_lookup > 0) {
        pd_dir_lookup_prefix(r->dir, req->hashes, n_lookup, cached);
        for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++)
            if (r->workers[s].used && cached[s] > best)
                best = cached[s];
    }
    uint64_t cached_tokens = (uint64_t)best * r->cfg.block_tokens;
    /* The last token is always computed: it gives the first sampled token. */
    req->est_tokens = cached_tokens < req->n_tokens ? req->n_tokens - (uint32_t)cached_tokens : 1;
    req->sched_key_ms =
        pd_time_ns_to_ms(req->arrival_ns) + (double)req->est_tokens * pd_router_sched_mpt(r);
}

pd_status_t pd_router_sched_admit(pd_router_t *r, const pd_router_req_t *req, char *why,
                                  size_t why_bytes)
{
    if (req->slo_ttft_ms == 0 || r->ms_per_token <= 0)
        return PD_OK; /* no objective, or nothing measured to predict with yet */
    uint64_t ahead = 0;
    for (const pd_router_req_t *q = r->head; q != NULL; q = q->next)
        if (q->state == PD_REQ_QUEUED && q != req && q->sched_key_ms <= req->sched_key_ms)
            ahead += q->est_tokens;
    uint32_t n_workers = 0;
    double worker_wait_ms = -1;
    for (uint32_t s = 0; s < PD_DIR_MAX_WORKERS; s++) {
        const pd_router_worker_t *wk = &r->workers[s];
        if (!pd_router_worker_can_prefill(wk))
            continue;
        n_workers++;
        double mpt = wk->ms_per_token > 0 ? wk->ms_per_token : r->ms_per_token;
        double wait = (double)wk->prefill_tokens * mpt;
        if (worker_wait_ms < 0 || wait < worker_wait_ms)
            worker_wait_ms = wait;
    }
    if (n_workers == 0)
        return PD_OK; /* it waits for a worker; its deadline bounds the wait */
    double own_ms = (double)req->est_tokens * r->ms_per_token;
    double queue_ms = (double)ahead * r->ms_per_token / n_workers + worker_wait_ms;
    if (own_ms + queue_ms <= req->slo_ttft_ms)
        return PD_OK;
    snprintf(why, why_bytes,
             "predicted TTFT %.0f ms misses the objective of %u ms (%u tokens to "
             "compute at %.3f ms per token, %.0f ms of work ahead of it)",
             own_ms + queue_ms, req->slo_ttft_ms, req->est_tokens, r->ms_per_token, queue_ms);
    return PD_ERR_OVERLOADED;
}

bool pd_router_sched_prefill_room(const pd_router_t *r, const pd_router_worker_t *wk,
                                  const pd_router_req_t *req)
{
    if (wk->busy_until_ms > pd_time_now_ms())
        return false;
    /* One more than the depth is reserved ahead on a worker that computes one prompt at a
     * time: its prefill waits here (request.c) and goes the moment the worker has room,
     * so the worker never idles through decode's reservation. */
    if (wk->n_prefilling < r->cfg.prefill_depth + (wk->chunked ? 0u : 1u))
        return true;
    /* Beyond the depth only where the worker interleaves prompts: elsewhere the short one
     * would only wait in its socket instead of here. */
    if (req == NULL || !wk->chunked || wk->n_prefilling >= 2 * r->cfg.prefill_depth)
        return false;
    for (const pd_router_req_t *q = r->head; q != NULL; q = q->next)
        if (q->prefill_assigned && q->prefill_slot == (int)wk->slot && !q->prefilled &&
            (uint64_t)q->est_tokens < (uint64_t)req->est_tokens * PD_ROUTER_SCHED_SHORT_RATIO)
            return false;
    return true;
}

bool pd_router_sched_decode_room(const pd_router_t *r, const pd_router_worker_t *wk,
                                 const pd_router_req_t *req, uint64_t now_ms)
{
    if (wk->n_assigned >= r->cfg.max_inflight_per_worker || wk->busy_until_ms > now_ms)
        return false;
    uint32_t tpot = req != NULL ? req->slo_tpot_ms : r->cfg.slo_tpot_ms;
    /* An idle worker always may: its step time falls when its batch does. */
    return tpot == 0 || wk->step_ms <= 0 || wk->step_ms <= tpot || wk->n_assigned == 0;
}

void pd_router_sched_commit(pd_router_t *r, pd_router_worker_t *wk, pd_router_req_t *req)
{
    (void)r;
    wk->n_prefilling++;
    wk->prefill_tokens += req->est_tokens;
}

void pd_router_sched_uncommit(pd_router_worker_t *wk, pd_router_req_t *req)
{
    if (wk->n_prefilling > 0)
        wk->n_prefilling--;
    wk->prefill_tokens =
        wk->prefill_tokens > req->est_tokens ? wk->prefill_tokens - req->est_tokens : 0;
}

void pd_router_sched_on_prefilled(pd_router_t *r, pd_router_worker_t *wk,
                                  const pd_proto_prefilled_t *m)
{
    if (m->n_chunks > 1)
        wk->chunked = true;
    if (m->n_computed_tokens < PD_ROUTER_SCHED_MIN_RATE_TOKENS)
        return;
    /* The passes that computed it; without that figure, its whole compute time. */
    double ms = m->compute_ms > 0 ? m->compute_ms : m->prefill_ms;
    if (ms <= 0)
        return;
    double per_token = ms / m->n_computed_tokens;
    wk->ms_per_token = pd_router_sched_avg(wk->ms_per_token, per_token);
    r->ms_per_token = pd_router_sched_avg(r->ms_per_token, per_token);
}

void pd_router_sched_on_token_gap(pd_router_worker_t *wk, double gap_ms)
{
    if (gap_ms > 0)
        wk->step_ms = pd_router_sched_avg(wk->step_ms, gap_ms);
}

static int pd_router_sched_cmp(const void *a, const void *b)
{
    const pd_router_req_t *x = *(pd_router_req_t *const *)a;
    const pd_router_req_t *y = *(pd_router_req_t *const *)b;
    if (x->sched_key_ms != y->sched_key_ms)
        return x->sched_key_ms < y->sched_key_ms ? -1 : 1;
    return x->req_id < y->req_id ? -1 : x->req_id > y->req_id;
}

uint32_t pd_router_sched_order(pd_router_t *r)
{
    if (r->n_queued > r->sched_cap) {
        uint32_t cap = r->n_queued < 64 ? 64 : r->n_queued * 2;
        pd_router_req_t **buf = realloc(r->sched_buf, cap * sizeof(*buf));
        if (buf == NULL)
            return 0; /* tried again at the next event */
        r->sched_buf = buf;
        r->sched_cap = cap;
    }
    uint32_t n = 0;
    for (pd_router_req_t *q = r->head; q != NULL && n < r->sched_cap; q = q->next)
        if (q->state == PD_REQ_QUEUED)
            r->sched_buf[n++] = q;
    qsort(r->sched_buf, n, sizeof(*r->sched_buf), pd_router_sched_cmp);
    return n;
}

void pd_router_sched_cleanup(pd_router_t *r)
{
    free(r->sched_buf);
    r->sched_buf = NULL;
    r->sched_cap = 0;
}
