/* The token loop: continuous batching over the requests whose KV is complete. Requests
 * join and leave between steps; each step feeds every running request its last token at
 * its next position and samples the next one with step = its generated index (counted
 * from the request's first token, also when it continued here from another worker), so a
 * token does not depend on which other requests shared the step or which worker ran it. */
#include "decode_int.h"
#include "pd/log.h"
#include "pd/time.h"

#include <string.h>

static bool pd_decode_is_stop(const pd_decode_req_t *q, int32_t token)
{
    for (uint32_t i = 0; i < q->n_stop; i++)
        if (q->stop[i] == token)
            return true;
    return false;
}

static void pd_decode_done_send(pd_decode_t *d, pd_decode_req_t *q, pd_proto_finish_t finish)
{
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_WORKER_DONE;
    pd_proto_worker_done_t *done = &msg.u.worker_done;
    done->req_id = q->req_id;
    done->finish_reason = finish;
    done->output_tokens = q->first_step + q->n_gen;
    done->cache_read_input_tokens = q->n_cached * d->rt->args.block_tokens;
    done->cache_creation_input_tokens = q->n_created_tokens;
    done->transfer_wait_ms = pd_time_ns_to_ms(q->t_kv_ns - q->t_reserve_ns);
    done->tpot_ms =
        q->n_gen > 1 ? pd_time_ns_to_ms(q->t_last_ns - q->t_first_ns) / (q->n_gen - 1) : 0.0;
    pd_worker_send(d->rt->worker, &msg);
}

bool pd_decode_emit(pd_decode_t *d, pd_decode_req_t *q)
{
    const uint32_t index = q->n_gen - 1;
    const int32_t token = q->tokens[q->n_tokens + index];
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_WORKER_TOKEN;
    msg.u.worker_token.req_id = q->req_id;
    msg.u.worker_token.index = q->first_step + index;
    msg.u.worker_token.token = token;

    bool finished = true;
    pd_proto_finish_t finish = PD_PROTO_FINISH_LENGTH;
    bool eos = false;
    for (uint32_t i = 0; i < d->n_eos; i++)
        eos = eos || token == d->eos[i];
    if (eos)
        finish = PD_PROTO_FINISH_EOS;
    else if (pd_decode_is_stop(q, token))
        finish = PD_PROTO_FINISH_STOP;
    else if (q->n_gen < q->max_tokens)
        finished = false;
    msg.u.worker_token.last = finished;
    pd_worker_send(d->rt->worker, &msg);
    q->t_last_ns = pd_time_now_ns();
    if (!finished)
        return false;
    pd_decode_done_send(d, q, finish);
    pd_log_debug("req %llu: done, %u tokens (%s)", (unsigned long long)q->req_id, q->n_gen,
                 pd_proto_finish_name(finish));
    pd_decode_req_end(d, q);
    return true;
}

bool pd_decode_has_work(const pd_decode_t *d)
{
    if (d->n_batch > 0)
        return true;
    if (d->n_live == 0)
        return false;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state == PD_DECODE_REQ_READY)
            return true;
    return false;
}

/* Move READY requests into the batch, oldest first, while there is room. */
static void pd_decode_admit(pd_decode_t *d)
{
    while (d->n_batch < d->rt->args.max_batch) {
        pd_decode_req_t *best = NULL;
        for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++) {
            pd_decode_req_t *q = &d->reqs[i];
            if (q->state == PD_DECODE_REQ_READY && (best == NULL || q->admit_seq < best->admit_seq))
                best = q;
        }
        if (best == NULL)
            return;
        best->state = PD_DECODE_REQ_RUNNING;
        d->batch[d->n_batch++] = best;
    }
}

bool pd_decode_step(pd_decode_t *d)
{
    if (d->n_live == 0)
        return false;
    pd_decode_admit(d);
    if (d->n_batch == 0)
        return false;
    const uint32_t n = d->n_batch;
    for (uint32_t i = 0; i < n; i++) {
        pd_decode_req_t *q = d->batch[i];
        uint32_t pos = q->n_tokens + q->n_gen - 1;
        d->seqs[i] = (pd_fwd_seq_t){&q->tokens[pos], 1, pos, q->blocks, q->n_blocks, q->logits};
    }
    pd_status_t st = pd_role_forward(d->rt, d->seqs, n, NULL, NULL);
    if (st != PD_OK) {
        pd_log_error("decode step of %u requests failed: %s", n, pd_status_str(st));
        for (uint32_t i = n; i-- > 0;)
            pd_decode_req_fail(d, d->batch[i], st, "decode step failed");
        return true;
    }
    /* Backwards, so that a request leaving the batch shifts only ones already done. */
    for (uint32_t i = n; i-- > 0;) {
        pd_decode_req_t *q = d->batch[i];
        int32_t token =
            pd_sample_token(&q->sampling, q->logits, d->rt->vocab, q->first_step + q->n_gen,
                            d->scratch);
        q->tokens[q->n_tokens + q->n_gen] = token;
        q->n_gen++;
        pd_decode_emit(d, q);
    }
    return true;
}
