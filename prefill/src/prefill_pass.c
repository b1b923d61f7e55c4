/* Chunked prefill: the worker computes its prompts a forward pass at a time, each pass over
 * chunks of up to --chunk-tokens tokens in all, the prompt with the fewest tokens left
 * first (pd_prefill_sched_plan), so that a short or mostly cached prompt that arrives
 * while a long one computes waits for one pass at most, not for the whole long prompt.
 * Between passes the loop reads the router's messages. A pass pushes, layer by layer, the
 * blocks its chunks complete; the pass that computes a prompt's last token samples its
 * first token and closes its push. The engine's rows are independent of each other and of
 * how a prompt is cut into steps, so the KV and the first token are those of the prompt
 * computed alone in one step (tests/kernels/test_forward.c). */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <string.h>

uint32_t pd_prefill_sched_plan(const pd_prefill_sched_item_t *items, uint32_t n_items,
                               uint32_t chunk_tokens, uint32_t max_seqs, uint32_t *pick,
                               uint32_t *take)
{
    uint32_t n = 0, budget = chunk_tokens;
    /* Selection by repeated scans: n_items and max_seqs are small. */
    while (n < max_seqs && budget > 0) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < n_items; i++) {
            if (items[i].run_tokens == 0)
                continue;
            bool taken = false;
            for (uint32_t k = 0; k < n && !taken; k++)
                taken = pick[k] == i;
            if (taken)
                continue;
            if (best == UINT32_MAX) {
                best = i;
                continue;
            }
            const pd_prefill_sched_item_t *a = &items[i], *b = &items[best];
            bool a_starved = a->n_passed_over >= PD_PREFILL_MAX_PASSED_OVER;
            bool b_starved = b->n_passed_over >= PD_PREFILL_MAX_PASSED_OVER;
            if (a_starved != b_starved) {
                if (a_starved)
                    best = i;
            } else if (a_starved
                           ? a->seq < b->seq
                           : a->remaining_tokens < b->remaining_tokens ||
                                 (a->remaining_tokens == b->remaining_tokens && a->seq < b->seq)) {
                best = i;
            }
        }
        if (best == UINT32_MAX)
            break;
        uint32_t t = items[best].run_tokens < budget ? items[best].run_tokens : budget;
        /* Only prompts that finish in it join a pass after its first: a partial chunk
         * beside them would delay their first token by its own compute and gain little
         * (pd-chunkbench, docs/PERFORMANCE.md); in this order no later one would finish. */
        if (n > 0 && t < items[best].remaining_tokens)
            break;
        pick[n] = best;
        take[n] = t;
        n++;
        budget -= t;
    }
    return n;
}

uint32_t pd_prefill_job_run_tokens(const pd_prefill_t *p, const pd_prefill_job_t *j)
{
    if (j->sampled || j->n_computed >= j->n_to_compute)
        return 0;
    const uint32_t bt = p->rt->args.block_tokens;
    uint32_t b = j->pos / bt;
    while (b < j->n_blocks && j->src[b] == PD_PREFILL_BLOCK_COMPUTE)
        b++;
    const uint32_t end = b == j->n_blocks ? j->n_tokens : b * bt;
    return end - j->pos;
}

/* After a chunk of n tokens: the next token to compute, at the start of the next run of
 * blocks to compute when this one is done. */
static void pd_prefill_job_advance(const pd_prefill_t *p, pd_prefill_job_t *j, uint32_t n)
{
    const uint32_t bt = p->rt->args.block_tokens;
    j->pos += n;
    j->n_computed += n;
    if (j->n_computed >= j->n_to_compute || j->pos % bt != 0)
        return;
    uint32_t b = j->pos / bt;
    while (b < j->n_blocks && j->src[b] != PD_PREFILL_BLOCK_COMPUTE)
        b++;
    j->pos = b * bt;
}

/* Post layer `layer` of the blocks n_pushed .. end - 1. */
static void pd_prefill_push_layer(pd_prefill_t *p, pd_prefill_job_t *j, uint32_t layer,
                                  uint32_t end)
{
    if (j->push_status != PD_OK || j->n_pushed >= end)
        return;
    const size_t lb = pd_kv_block_layer_bytes(&p->rt->layout);
    size_t n = 0;
    for (uint32_t i = j->n_pushed; i < end; i++, n++) {
        j->segs[n].local_offset = pd_kv_offset(&p->rt->layout, layer, j->blocks[i]);
        j->segs[n].remote_offset = pd_kv_offset(&j->dest_layout, layer, j->dest_blocks[i]);
        j->segs[n].bytes = lb;
    }
    j->push_status = pd_xfer_send_post(j->send, j->segs, n);
}

/* Every layer of the pass is in the pool: push what its chunks completed. */
static void pd_prefill_on_layer(void *arg, uint32_t layer)
{
    pd_prefill_t *p = arg;
    if (p->rt->args.layerwise) {
        for (uint32_t k = 0; k < p->n_pass; k++)
            pd_prefill_push_layer(p, p->pass[k], layer, p->pass[k]->pass_push_end);
        pd_xfer_engine_progress(p->rt->fabric.engine);
    }
    pd_worker_tick(p->rt->worker);
}

/* The prompt's last token is computed: sample the first token, push what is left, close
 * the push with the notification decode waits for, and make the blocks findable. */
static void pd_prefill_job_finish(pd_prefill_t *p, pd_prefill_job_t *j, float *logits)
{
    pd_sampling_t s = {(float)j->sampling.temperature, (float)j->sampling.top_p, j->sampling.seed};
    j->first_token = pd_sample_token(&s, logits, p->rt->vocab, j->first_step, p->scratch);
    j->t_sampled_ns = pd_time_now_ns();
    for (uint32_t l = 0; l < p->rt->layout.n_layers && j->n_pushed < j->n_blocks; l++)
        pd_prefill_push_layer(p, j, l, j->n_blocks);
    j->n_pushed = j->n_blocks;
    const char *why = "KV push refused";
    pd_status_t st = j->push_status;
    if (st == PD_OK) {
        uint8_t payload[PD_WORKER_KV_PAYLOAD_BYTES];
        pd_worker_kv_payload_t pl = {j->req_id, j->first_token, j->n_computed};
        pd_worker_kv_payload_pack(&pl, payload);
        st = pd_xfer_send_finish(j->send, payload, sizeof(payload));
        why = "cannot finish the KV transfer";
    }
    if (st != PD_OK) {
        pd_prefill_fail(p, j->req_id, st, why);
        pd_prefill_job_end(p, j);
        return;
    }
    /* Blocks whose content this worker can vouch for become findable per the plan: those
     * read from a holder and checked, and those computed over only such blocks. What was
     * read from the decode worker carries no checksum, so neither it nor anything
     * computed after it is cached here. They stay pinned, unchanged, until the push is
     * final. */
    const uint32_t bt = p->rt->args.block_tokens;
    for (uint32_t i = 0; i < j->n_block_hashes; i++) {
        if (j->src[i] == PD_PREFILL_BLOCK_DEST)
            break;
        uint64_t ttl_ms = pd_proto_cache_plan_block_ttl_ms(&j->cache, i);
        int stored = 0;
        if (j->src[i] != PD_PREFILL_BLOCK_OWN && ttl_ms > 0 &&
            pd_kvbm_commit(p->rt->bm, j->blocks[i], j->block_hashes[i], ttl_ms, &stored) == PD_OK &&
            stored)
            j->n_created_tokens += bt;
    }
    j->sampled = true;
}

bool pd_prefill_pass_run(pd_prefill_t *p)
{
    const uint32_t bt = p->rt->args.block_tokens;
    uint32_t n_items = 0;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS && n_items < p->n_jobs; i++) {
        const pd_prefill_job_t *j = &p->jobs[i];
        uint32_t run = j->live ? pd_prefill_job_run_tokens(p, j) : 0;
        if (run == 0)
            continue;
        p->items[n_items] = (pd_prefill_sched_item_t){j->n_to_compute - j->n_computed, run, j->seq,
                                                      j->n_passed_over};
        p->item_job[n_items] = i;
        n_items++;
    }
    if (n_items == 0)
        return false;
    uint32_t pick[PD_PREFILL_MAX_PASS_SEQS], take[PD_PREFILL_MAX_PASS_SEQS];
    const uint32_t n_pick = pd_prefill_sched_plan(p->items, n_items, p->rt->args.chunk_tokens,
                                                  PD_PREFILL_MAX_PASS_SEQS, pick, take);
    for (uint32_t i = 0; i < n_items; i++)
        p->jobs[p->item_job[i]].n_passed_over++;
    /* A prompt's push begins with its first chunk. */
    for (uint32_t i = 0; i < n_pick; i++) {
        pd_prefill_job_t *j = &p->jobs[p->item_job[pick[i]]];
        j->n_passed_over = 0;
        pd_status_t st = j->send == NULL ? pd_prefill_push_begin(p, j) : PD_OK;
        if (st != PD_OK) {
            pd_prefill_fail(p, j->req_id, st, "cannot start the KV transfer");
            pd_prefill_job_end(p, j);
            pick[i] = UINT32_MAX;
        }
    }
    const uint64_t t0 = pd_time_now_ns();
    uint32_t n_tokens = 0, n_seqs = 0;
    for (uint32_t i = 0; i < n_pick; i++) {
        if (pick[i] == UINT32_MAX)
            continue;
        pd_prefill_job_t *j = &p->jobs[p->item_job[pick[i]]];
        const uint32_t k = n_seqs++;
        take[k] = take[i];
        const bool last = j->n_computed + take[k] == j->n_to_compute;
        if (j->n_chunks == 0) {
            j->t_first_ns = t0;
            pd_worker_load_changed(p->rt->worker); /* queued -> running */
        }
        /* The blocks this chunk completes; the last chunk completes them all. */
        uint32_t end = last ? j->n_blocks : (j->pos + take[k]) / bt;
        j->pass_push_end = end > j->n_pushed ? end : j->n_pushed;
        p->seqs[k] = (pd_fwd_seq_t){
            j->tokens + j->pos, take[k],     j->pos,
            j->blocks,          j->n_blocks, last ? p->logits + (size_t)k * p->rt->vocab : NULL};
        p->pass[k] = j;
        n_tokens += take[k];
    }
    if (n_seqs == 0)
        return true;
    const uint32_t n = n_seqs;
    p->n_pass = n;
    pd_status_t st = pd_role_forward(p->rt, p->seqs, n, pd_prefill_on_layer, p);
    const double ms = pd_time_ns_to_ms(pd_time_now_ns() - t0);
    p->n_pass = 0;
    p->n_passes++;
    if (n_tokens >= 16) {
        double per_token = ms / n_tokens;
        p->compute_ms_per_token = p->compute_ms_per_token > 0
                                      ? 0.8 * p->compute_ms_per_token + 0.2 * per_token
                                      : per_token;
    }
    for (uint32_t k = 0; k < n; k++) {
        pd_prefill_job_t *j = p->pass[k];
        if (st != PD_OK) {
            pd_prefill_fail(p, j->req_id, st, "prefill compute failed");
            pd_prefill_job_end(p, j);
            continue;
        }
        j->compute_ms += ms;
        j->n_chunks++;
        if (p->rt->args.layerwise)
            j->n_pushed = j->pass_push_end;
        pd_prefill_job_advance(p, j, take[k]);
        if (j->n_computed == j->n_to_compute)
            pd_prefill_job_finish(p, j, p->seqs[k].logits);
    }
    pd_log_debug("prefill pass %llu: %u prompts, %u tokens, %.2f ms",
                 (unsigned long long)p->n_passes, n, n_tokens, ms);
    return true;
}
