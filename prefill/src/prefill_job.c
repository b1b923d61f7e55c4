/* One prefill's life in the worker: on arrival it is checked, its blocks are assembled
 * (what is reusable of the prompt's KV: own cache, a holder, the decode worker:
 * prefill_plan.c) and its push to the decode worker's reserved blocks is begun; then it
 * queues for compute, which runs a forward pass at a time over chunks of the queued
 * prompts (prefill_pass.c); once its first token is sampled and the push acknowledged,
 * the router gets `prefilled` with where its time went, and its blocks are released. */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j)
{
    pd_xfer_send_destroy(&j->send);
    if (j->blocks != NULL && j->n_blocks > 0)
        pd_kvbm_release(p->rt->bm, j->blocks, j->n_blocks);
    free(j->blocks);
    free(j->src);
    free(j->dest_blocks);
    free(j->segs);
    free(j->tokens);
    free(j->block_hashes);
    free(j->dest_desc);
    free(j->holes);
    memset(j, 0, sizeof(*j));
    p->n_jobs--;
    pd_worker_load_changed(p->rt->worker);
}

void pd_prefill_fail(pd_prefill_t *p, uint64_t req_id, pd_status_t code, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "prefill %s: %s: %s", p->rt->args.id, why, pd_status_str(code));
    pd_log_warn("req %llu: %s", (unsigned long long)req_id, msg);
    pd_worker_send_error(p->rt->worker, req_id, code, msg);
}

static pd_status_t pd_prefill_check(const pd_prefill_t *p, const pd_proto_prefill_t *m,
                                    const char **why_p)
{
    const uint32_t bt = p->rt->args.block_tokens;
    if (m->n_tokens == 0 || m->tokens == NULL) {
        *why_p = "empty prompt";
        return PD_ERR_INVALID_PARAM;
    }
    if (m->n_tokens > p->rt->model->config.max_seq_len) {
        /* The numbers tell the user how much to cut. One event loop per process: a
         * thread-local buffer outlives the call long enough for the error reply. */
        static _Thread_local char why[128];
        snprintf(why, sizeof(why), "the prompt is %u tokens, the model's context %u", m->n_tokens,
                 p->rt->model->config.max_seq_len);
        *why_p = why;
        return PD_ERR_CONTEXT;
    }
    if (m->n_block_hashes != m->n_tokens / bt || m->n_skip_blocks > m->n_block_hashes) {
        *why_p = "block_hashes or n_skip_blocks do not match the prompt";
        return PD_ERR_INVALID_PARAM;
    }
    if (m->n_dest_block_table < (m->n_tokens + bt - 1) / bt) {
        *why_p = "dest block_table shorter than the prompt";
        return PD_ERR_INVALID_PARAM;
    }
    for (uint32_t i = 0; i < m->n_tokens; i++) {
        if (m->tokens[i] < 0 || (uint32_t)m->tokens[i] >= p->rt->vocab) {
            *why_p = "token id outside the vocabulary";
            return PD_ERR_OUT_OF_RANGE;
        }
    }
    return PD_OK;
}

/* A free job slot for req_id, or NULL with the reason. */
static pd_prefill_job_t *pd_prefill_job_slot(pd_prefill_t *p, uint64_t req_id, pd_status_t *st_p,
                                             const char **why_p)
{
    pd_prefill_job_t *j = NULL;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live && p->jobs[i].req_id == req_id) {
            *why_p = "request id already in flight";
            *st_p = PD_ERR_EXISTS;
            return NULL;
        }
        if (!p->jobs[i].live && j == NULL)
            j = &p->jobs[i];
    }
    if (j == NULL) {
        *why_p = "too many prefills in flight";
        *st_p = PD_ERR_OVERLOADED;
    }
    return j;
}

/* Begin the push: the remote ranges decode reserved for the pushed blocks, per layer and
 * run of blocks consecutive in its pool, are all the transfer may write. */
pd_status_t pd_prefill_push_begin(pd_prefill_t *p, pd_prefill_job_t *j)
{
    pd_prefill_peer_t *peer = NULL;
    pd_status_t st =
        pd_prefill_peer_get(p, j->dest, j->dest_epoch, j->dest_desc, j->dest_desc_bytes, &peer);
    if (st != PD_OK)
        return st;
    const uint32_t n_layers = p->rt->layout.n_layers;
    pd_xfer_range_t *allowed = malloc(((size_t)n_layers * j->n_blocks + 1) * sizeof(*allowed));
    if (allowed == NULL)
        return PD_ERR_NO_MEMORY;
    size_t n_allowed = 0;
    const size_t lb = pd_kv_block_layer_bytes(&j->dest_layout);
    for (uint32_t l = 0; l < n_layers; l++) {
        uint32_t i = j->first_push;
        while (i < j->n_blocks) {
            uint32_t k = i + 1;
            while (k < j->n_blocks && j->dest_blocks[k] == j->dest_blocks[k - 1] + 1)
                k++;
            allowed[n_allowed].offset = pd_kv_offset(&j->dest_layout, l, j->dest_blocks[i]);
            allowed[n_allowed].bytes = (uint64_t)(k - i) * lb;
            n_allowed++;
            i = k;
        }
    }
    st = pd_xfer_send_begin(peer->peer, j->req_id, allowed, n_allowed, p->rt->args.xfer_timeout_ms,
                            &j->send);
    free(allowed);
    return st;
}

/* Copy what the job needs of m past this call. */
static pd_status_t pd_prefill_job_copy(pd_prefill_job_t *j, const pd_proto_prefill_t *m,
                                       uint32_t n_blocks)
{
    j->tokens = malloc((size_t)m->n_tokens * sizeof(*j->tokens));
    j->block_hashes = malloc(((size_t)m->n_block_hashes + 1) * sizeof(*j->block_hashes));
    j->blocks = malloc((size_t)n_blocks * sizeof(*j->blocks));
    j->src = malloc(n_blocks);
    j->dest_blocks = malloc((size_t)n_blocks * sizeof(*j->dest_blocks));
    j->segs = malloc((size_t)n_blocks * sizeof(*j->segs));
    j->dest_desc = malloc(m->dest_xfer_desc_bytes + 1);
    if (j->tokens == NULL || j->block_hashes == NULL || j->blocks == NULL || j->src == NULL ||
        j->dest_blocks == NULL || j->segs == NULL || j->dest_desc == NULL)
        return PD_ERR_NO_MEMORY;
    memcpy(j->dest_desc, m->dest_xfer_desc, m->dest_xfer_desc_bytes);
    j->dest_desc_bytes = m->dest_xfer_desc_bytes;
    j->dest_epoch = m->dest_epoch;
    memcpy(j->tokens, m->tokens, (size_t)m->n_tokens * sizeof(*j->tokens));
    j->n_tokens = m->n_tokens;
    if (m->n_block_hashes > 0)
        memcpy(j->block_hashes, m->block_hashes, (size_t)m->n_block_hashes * sizeof(uint64_t));
    j->n_block_hashes = m->n_block_hashes;
    memcpy(j->dest_blocks, m->dest_block_table, (size_t)n_blocks * sizeof(*j->dest_blocks));
    j->cache = m->cache;
    j->sampling = m->sampling;
    j->first_step = m->first_step;
    j->first_push = m->n_skip_blocks;
    j->n_pushed = m->n_skip_blocks;
    return PD_OK;
}

/* The compute plan of an assembled job: every run of blocks nothing could give is
 * computed, in order; a run before the tail is a hole (its KV needs only the blocks before
 * it, which are all in place by the time it computes); the last run is the tail, with the
 * prompt's last token. */
static pd_status_t pd_prefill_job_plan(pd_prefill_t *p, pd_prefill_job_t *j)
{
    const uint32_t bt = p->rt->args.block_tokens;
    uint32_t tail = j->n_blocks - 1; /* never reused: it holds the last token */
    while (tail > 0 && j->src[tail - 1] == PD_PREFILL_BLOCK_COMPUTE)
        tail--;
    for (uint32_t i = 0; i < tail; i++)
        j->n_holes += j->src[i] == PD_PREFILL_BLOCK_COMPUTE;
    if (j->n_holes > 0) {
        j->holes = malloc(j->n_holes * sizeof(*j->holes));
        if (j->holes == NULL)
            return PD_ERR_NO_MEMORY;
        for (uint32_t i = 0, k = 0; i < tail; i++)
            if (j->src[i] == PD_PREFILL_BLOCK_COMPUTE)
                j->holes[k++] = i;
    }
    for (uint32_t i = 0; i < j->n_blocks; i++) {
        const uint32_t n = i + 1 == j->n_blocks ? j->n_tokens - i * bt : bt;
        if (j->src[i] == PD_PREFILL_BLOCK_COMPUTE)
            j->n_to_compute += n;
        else if (j->src[i] != PD_PREFILL_BLOCK_OWN)
            j->n_fetched_tokens += n;
    }
    j->n_cached_tokens = j->n_tokens - j->n_to_compute;
    /* The first block to compute. */
    uint32_t first = 0;
    while (j->src[first] != PD_PREFILL_BLOCK_COMPUTE)
        first++;
    j->pos = first * bt;
    return PD_OK;
}

void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m)
{
    pd_prefill_t *p = state;
    const uint64_t t_arrival = pd_time_now_ns();
    const uint32_t bt = p->rt->args.block_tokens;
    const char *why = "";
    pd_status_t st = pd_prefill_check(p, m, &why);
    pd_prefill_job_t *j = st == PD_OK ? pd_prefill_job_slot(p, m->req_id, &st, &why) : NULL;
    if (st != PD_OK) {
        pd_prefill_fail(p, m->req_id, st, why);
        return;
    }
    pd_prefill_peer_t *peer = NULL;
    st = pd_prefill_peer_get(p, m->dest_worker_id, m->dest_epoch, m->dest_xfer_desc,
                             m->dest_xfer_desc_bytes, &peer);
    if (st != PD_OK) {
        pd_prefill_fail(p, m->req_id, st, "cannot connect to the decode worker");
        return;
    }
    const uint32_t n_prompt_blocks = (m->n_tokens + bt - 1) / bt;
    for (uint32_t i = 0; i < n_prompt_blocks; i++) {
        if (m->dest_block_table[i] >= peer->layout.n_blocks) {
            pd_prefill_fail(p, m->req_id, PD_ERR_OUT_OF_RANGE, "dest block id outside its pool");
            return;
        }
    }

    memset(j, 0, sizeof(*j));
    j->live = true;
    j->req_id = m->req_id;
    j->seq = p->next_seq++;
    j->t_arrival_ns = t_arrival;
    snprintf(j->dest, sizeof(j->dest), "%s", m->dest_worker_id);
    j->dest_layout = peer->layout;
    p->n_jobs++;
    pd_worker_load_changed(p->rt->worker);
    st = pd_prefill_job_copy(j, m, n_prompt_blocks);
    if (st != PD_OK) {
        why = "out of memory";
        goto fail;
    }
    const uint64_t t_assemble = pd_time_now_ns();
    st = pd_prefill_assemble(p, m, peer, j->blocks, j->src, &why);
    if (st != PD_OK)
        goto fail;
    j->n_blocks = n_prompt_blocks;
    st = pd_prefill_job_plan(p, j);
    if (st != PD_OK) {
        why = "out of memory";
        goto fail;
    }
    if (j->n_fetched_tokens > 0)
        j->fetch_ms = pd_time_ns_to_ms(pd_time_now_ns() - t_assemble);
    j->t_setup_ns = pd_time_now_ns();
    pd_log_debug("req %llu: queued, %u of %u tokens to compute", (unsigned long long)j->req_id,
                 j->n_to_compute, j->n_tokens);
    return;

fail:
    pd_prefill_fail(p, m->req_id, st, why);
    pd_prefill_job_end(p, j);
}

void pd_prefill_poll_jobs(pd_prefill_t *p)
{
    if (p->n_jobs == 0)
        return;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        pd_prefill_job_t *j = &p->jobs[i];
        if (!j->live || !j->sampled)
            continue;
        pd_status_t st = pd_xfer_send_status(j->send);
        if (st == PD_INPROGRESS)
            continue;
        if (st != PD_OK) {
            pd_prefill_fail(p, j->req_id, st, "KV push to the decode worker failed");
            pd_prefill_job_end(p, j);
            continue;
        }
        const uint64_t now = pd_time_now_ns();
        pd_proto_msg_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.type = PD_PROTO_TYPE_PREFILLED;
        pd_proto_prefilled_t *r = &msg.u.prefilled;
        r->req_id = j->req_id;
        r->first_token = j->first_token;
        r->n_computed_tokens = j->n_computed;
        r->n_cached_tokens = j->n_cached_tokens;
        r->cache_creation_input_tokens = j->n_created_tokens;
        /* arrival -> setup done -> (queue) -> first pass -> sampled -> acknowledged: the
         * three parts cover the request's whole time in this worker. */
        const uint64_t t_first = j->t_first_ns != 0 ? j->t_first_ns : j->t_sampled_ns;
        r->queue_ms = pd_time_ns_to_ms(t_first - j->t_setup_ns);
        r->prefill_ms = pd_time_ns_to_ms(j->t_setup_ns - j->t_arrival_ns) +
                        pd_time_ns_to_ms(j->t_sampled_ns - t_first);
        r->transfer_ms = pd_time_ns_to_ms(now - j->t_sampled_ns);
        r->compute_ms = j->compute_ms;
        r->fetch_ms = j->fetch_ms;
        r->n_fetched_tokens = j->n_fetched_tokens;
        r->n_chunks = j->n_chunks;
        r->recomputed_blocks = j->holes;
        r->n_recomputed_blocks = j->n_holes;
        pd_worker_send(p->rt->worker, &msg);
        pd_prefill_job_end(p, j);
    }
}

void pd_prefill_on_step(void *state)
{
    pd_prefill_t *p = state;
    pd_prefill_poll_jobs(p);
    if (pd_prefill_pass_run(p)) {
        pd_xfer_engine_progress(p->rt->fabric.engine);
        pd_prefill_poll_jobs(p);
    }
}

void pd_prefill_on_cancel(void *state, uint64_t req_id)
{
    pd_prefill_t *p = state;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live && p->jobs[i].req_id == req_id) {
            pd_log_info("req %llu: canceled by the router", (unsigned long long)req_id);
            pd_prefill_job_end(p, &p->jobs[i]);
            return;
        }
    }
}
