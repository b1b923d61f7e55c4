/* One prefill: gather what is reusable of the prompt's KV (own cache, a holder, the
 * decode worker: prefill_plan.c), compute the rest: each hole in the reused prefix alone,
 * attending over the blocks before it, then the tail; push the KV of blocks
 * n_skip_blocks .. (the last, partial one included) into the decode worker's reserved
 * blocks layer by layer while the tail's later layers compute, sample token 0, notify
 * decode with it, and answer the router once the push is final. */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the per-layer callback needs. */
typedef struct pd_prefill_push {
    pd_prefill_t *p;
    pd_xfer_send_t *send;
    const pd_kv_layout_t *dest_layout;
    const uint32_t *dest_blocks; /* (n_prompt_blocks) */
    const uint32_t *own_blocks;  /* (n_prompt_blocks) */
    uint32_t first;              /* first block pushed (n_skip_blocks) */
    uint32_t n_prompt_blocks;
    pd_xfer_seg_t *segs; /* (n_prompt_blocks) */
    pd_status_t status;
    bool active; /* the forward pass computing the tail: every block is final per layer */
} pd_prefill_push_t;

static void pd_prefill_push_layer(pd_prefill_push_t *x, uint32_t layer)
{
    if (x->status != PD_OK || !x->active || x->first >= x->n_prompt_blocks)
        return;
    const size_t lb = pd_kv_block_layer_bytes(&x->p->rt->layout);
    size_t n = 0;
    for (uint32_t i = x->first; i < x->n_prompt_blocks; i++, n++) {
        x->segs[n].local_offset = pd_kv_offset(&x->p->rt->layout, layer, x->own_blocks[i]);
        x->segs[n].remote_offset = pd_kv_offset(x->dest_layout, layer, x->dest_blocks[i]);
        x->segs[n].bytes = lb;
    }
    x->status = pd_xfer_send_post(x->send, x->segs, n);
    pd_xfer_engine_progress(x->p->rt->fabric.engine);
}

static void pd_prefill_on_layer(void *arg, uint32_t layer)
{
    pd_prefill_push_t *x = arg;
    if (x->p->rt->args.layerwise)
        pd_prefill_push_layer(x, layer);
    pd_worker_tick(x->p->rt->worker);
}

void pd_prefill_job_end(pd_prefill_t *p, pd_prefill_job_t *j)
{
    pd_xfer_send_destroy(&j->send);
    if (j->blocks != NULL && j->n_blocks > 0)
        pd_kvbm_release(p->rt->bm, j->blocks, j->n_blocks);
    free(j->blocks);
    free(j->holes);
    memset(j, 0, sizeof(*j));
    p->n_jobs--;
    pd_worker_load_changed(p->rt->worker);
}

static void pd_prefill_fail(pd_prefill_t *p, uint64_t req_id, pd_status_t code, const char *why)
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

void pd_prefill_on_prefill(void *state, const pd_proto_prefill_t *m)
{
    pd_prefill_t *p = state;
    const uint32_t bt = p->rt->args.block_tokens;
    const char *why = "";
    pd_status_t st = pd_prefill_check(p, m, &why);
    pd_prefill_job_t *j = NULL;
    for (uint32_t i = 0; st == PD_OK && i < PD_PREFILL_MAX_JOBS; i++) {
        if (p->jobs[i].live && p->jobs[i].req_id == m->req_id) {
            why = "request id already in flight";
            st = PD_ERR_EXISTS;
        } else if (!p->jobs[i].live && j == NULL) {
            j = &p->jobs[i];
        }
    }
    if (st == PD_OK && j == NULL) {
        why = "too many prefills in flight";
        st = PD_ERR_OVERLOADED;
    }
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

    uint64_t t0 = pd_time_now_ns();
    memset(j, 0, sizeof(*j));
    j->live = true;
    j->req_id = m->req_id;
    snprintf(j->dest, sizeof(j->dest), "%s", m->dest_worker_id);
    p->n_jobs++;
    pd_worker_load_changed(p->rt->worker);
    j->blocks = malloc((size_t)n_prompt_blocks * sizeof(*j->blocks));
    uint8_t *src = malloc(n_prompt_blocks);
    pd_xfer_seg_t *segs = malloc((size_t)n_prompt_blocks * sizeof(*segs));
    pd_xfer_range_t *allowed =
        malloc(((size_t)p->rt->layout.n_layers * n_prompt_blocks + 1) * sizeof(*allowed));
    if (j->blocks == NULL || src == NULL || segs == NULL || allowed == NULL) {
        st = PD_ERR_NO_MEMORY;
        why = "out of memory";
        goto fail;
    }
    st = pd_prefill_assemble(p, m, peer, j->blocks, src, &why);
    if (st != PD_OK)
        goto fail;
    j->n_blocks = n_prompt_blocks;

    /* The remote ranges decode reserved for the pushed blocks, per layer and run. */
    size_t n_allowed = 0;
    const size_t lb = pd_kv_block_layer_bytes(&peer->layout);
    for (uint32_t l = 0; l < p->rt->layout.n_layers; l++) {
        uint32_t i = m->n_skip_blocks;
        while (i < n_prompt_blocks) {
            uint32_t k = i + 1;
            while (k < n_prompt_blocks && m->dest_block_table[k] == m->dest_block_table[k - 1] + 1)
                k++;
            allowed[n_allowed].offset = pd_kv_offset(&peer->layout, l, m->dest_block_table[i]);
            allowed[n_allowed].bytes = (uint64_t)(k - i) * lb;
            n_allowed++;
            i = k;
        }
    }
    if (peer->peer == NULL) { /* a failed read from it disconnected it */
        st = pd_prefill_peer_get(p, m->dest_worker_id, m->dest_epoch, m->dest_xfer_desc,
                                 m->dest_xfer_desc_bytes, &peer);
        if (st != PD_OK) {
            why = "cannot connect to the decode worker";
            goto fail;
        }
    }
    st = pd_xfer_send_begin(peer->peer, m->req_id, allowed, n_allowed, p->rt->args.xfer_timeout_ms,
                            &j->send);
    if (st != PD_OK) {
        why = "cannot start the KV transfer";
        goto fail;
    }

    /* Compute every run of blocks nothing could give, in order: a run before the tail is a
     * hole (its KV needs only the blocks before it, which are all in place by then); the
     * last run is the tail, with the prompt's last token, and pushes as it computes. */
    uint32_t tail = n_prompt_blocks - 1; /* never reused: it holds the last token */
    while (tail > 0 && src[tail - 1] == PD_PREFILL_BLOCK_COMPUTE)
        tail--;
    for (uint32_t i = 0; i < tail; i++)
        j->n_holes += src[i] == PD_PREFILL_BLOCK_COMPUTE;
    if (j->n_holes > 0) {
        j->holes = malloc(j->n_holes * sizeof(*j->holes));
        if (j->holes == NULL) {
            st = PD_ERR_NO_MEMORY;
            why = "out of memory";
            goto fail;
        }
        for (uint32_t i = 0, k = 0; i < tail; i++)
            if (src[i] == PD_PREFILL_BLOCK_COMPUTE)
                j->holes[k++] = i;
    }
    pd_prefill_push_t push = {p,
                              j->send,
                              &peer->layout,
                              m->dest_block_table,
                              j->blocks,
                              m->n_skip_blocks,
                              n_prompt_blocks,
                              segs,
                              PD_OK,
                              false};
    const uint64_t t_forward = pd_time_now_ns();
    uint32_t n_computed = 0;
    for (uint32_t a = 0; a < n_prompt_blocks;) {
        if (src[a] != PD_PREFILL_BLOCK_COMPUTE) {
            a++;
            continue;
        }
        uint32_t b = a + 1;
        while (b < n_prompt_blocks && src[b] == PD_PREFILL_BLOCK_COMPUTE)
            b++;
        const uint32_t start = a * bt;
        const uint32_t end = b == n_prompt_blocks ? m->n_tokens : b * bt;
        push.active = b == n_prompt_blocks;
        /* Only the tail's last token needs logits. */
        pd_fwd_seq_t seq = {m->tokens + start, end - start, start,
                            j->blocks,         b,           push.active ? p->logits : NULL};
        st = pd_role_forward(p->rt, &seq, 1, pd_prefill_on_layer, &push);
        if (st != PD_OK) {
            why = "prefill compute failed";
            goto fail;
        }
        n_computed += end - start;
        a = b;
    }
    pd_sampling_t s = {(float)m->sampling.temperature, (float)m->sampling.top_p, m->sampling.seed};
    j->first_token = pd_sample_token(&s, p->logits, p->rt->vocab, m->first_step, p->scratch);
    j->t_compute_end_ns = pd_time_now_ns();
    j->prefill_ms = pd_time_ns_to_ms(j->t_compute_end_ns - t0);
    j->n_computed_tokens = n_computed;
    j->n_cached_tokens = m->n_tokens - n_computed;
    if (j->n_computed_tokens >= 16) {
        double per_token = pd_time_ns_to_ms(j->t_compute_end_ns - t_forward) / j->n_computed_tokens;
        p->compute_ms_per_token = p->compute_ms_per_token > 0
                                      ? 0.8 * p->compute_ms_per_token + 0.2 * per_token
                                      : per_token;
    }
    if (!p->rt->args.layerwise)
        for (uint32_t l = 0; l < p->rt->layout.n_layers; l++)
            pd_prefill_push_layer(&push, l);
    if (push.status != PD_OK) {
        st = push.status;
        why = "KV push refused";
        goto fail;
    }
    uint8_t payload[PD_WORKER_KV_PAYLOAD_BYTES];
    pd_worker_kv_payload_t pl = {m->req_id, j->first_token, j->n_computed_tokens};
    pd_worker_kv_payload_pack(&pl, payload);
    st = pd_xfer_send_finish(j->send, payload, sizeof(payload));
    if (st != PD_OK) {
        why = "cannot finish the KV transfer";
        goto fail;
    }

    /* Blocks whose content this worker can vouch for become findable per the plan: those
     * read from a holder and checked, and those computed over only such blocks. What was
     * read from the decode worker carries no checksum, so neither it nor anything
     * computed after it is cached here. They stay pinned, unchanged, until the push is
     * final. */
    for (uint32_t i = 0; i < m->n_block_hashes; i++) {
        if (src[i] == PD_PREFILL_BLOCK_DEST)
            break;
        uint64_t ttl_ms = pd_proto_cache_plan_block_ttl_ms(&m->cache, i);
        int stored = 0;
        if (src[i] != PD_PREFILL_BLOCK_OWN && ttl_ms > 0 &&
            pd_kvbm_commit(p->rt->bm, j->blocks[i], m->block_hashes[i], ttl_ms, &stored) == PD_OK &&
            stored)
            j->n_created_tokens += bt;
    }
    free(src);
    free(segs);
    free(allowed);
    pd_xfer_engine_progress(p->rt->fabric.engine);
    pd_prefill_poll_jobs(p);
    return;

fail:
    free(src);
    free(segs);
    free(allowed);
    pd_prefill_fail(p, m->req_id, st, why);
    pd_prefill_job_end(p, j);
}

void pd_prefill_poll_jobs(void *state)
{
    pd_prefill_t *p = state;
    if (p->n_jobs == 0)
        return;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++) {
        pd_prefill_job_t *j = &p->jobs[i];
        if (!j->live || j->send == NULL)
            continue;
        pd_status_t st = pd_xfer_send_status(j->send);
        if (st == PD_INPROGRESS)
            continue;
        if (st != PD_OK) {
            pd_prefill_fail(p, j->req_id, st, "KV push to the decode worker failed");
            pd_prefill_job_end(p, j);
            continue;
        }
        pd_proto_msg_t msg;
        memset(&msg, 0, sizeof(msg));
        msg.type = PD_PROTO_TYPE_PREFILLED;
        pd_proto_prefilled_t *r = &msg.u.prefilled;
        r->req_id = j->req_id;
        r->first_token = j->first_token;
        r->n_computed_tokens = j->n_computed_tokens;
        r->n_cached_tokens = j->n_cached_tokens;
        r->cache_creation_input_tokens = j->n_created_tokens;
        r->prefill_ms = j->prefill_ms;
        r->transfer_ms = pd_time_ns_to_ms(pd_time_now_ns() - j->t_compute_end_ns);
        r->recomputed_blocks = j->holes;
        r->n_recomputed_blocks = j->n_holes;
        pd_worker_send(p->rt->worker, &msg);
        pd_prefill_job_end(p, j);
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
