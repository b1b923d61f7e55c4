/* pd-decode as a role of the role runtime (pd/role.h): its state and its handlers. */
#include "decode_int.h"
#include "pd/log.h"
#include "pd/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* EOS of the model's tokenizer (DIR/tokenizer.json or DIR/tokenizer.bin), else the byte
 * tokenizer's (2); used when the model's config names no eos_token_id. */
static int32_t pd_decode_eos(const char *model_path, uint32_t vocab)
{
    char path[PATH_MAX];
    struct stat sb;
    pd_tokenizer_t *tok = NULL;
    int32_t eos = 2;
    snprintf(path, sizeof(path), "%s/tokenizer.json", model_path);
    if (stat(path, &sb) != 0)
        snprintf(path, sizeof(path), "%s/tokenizer.bin", model_path);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        pd_tokenizer_open(path, vocab, &tok) == PD_OK) {
        eos = pd_tokenizer_eos(tok);
        pd_tokenizer_destroy(&tok);
    } else if (pd_tokenizer_create_byte(&tok) == PD_OK) {
        eos = pd_tokenizer_eos(tok);
        pd_tokenizer_destroy(&tok);
    }
    return eos;
}

static void pd_decode_destroy(void *state);

static pd_status_t pd_decode_create(pd_role_t *rt, void **state_p)
{
    pd_decode_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return PD_ERR_NO_MEMORY;
    d->rt = rt;
    const pd_model_config_t *mc = &rt->model->config;
    if (mc->n_eos > 0) {
        memcpy(d->eos, mc->eos_ids, mc->n_eos * sizeof(int32_t));
        d->n_eos = mc->n_eos;
    } else {
        d->eos[0] = pd_decode_eos(rt->args.model, rt->vocab);
        d->n_eos = 1;
    }
    d->batch = calloc(rt->args.max_batch, sizeof(*d->batch));
    d->seqs = calloc(rt->args.max_batch, sizeof(*d->seqs));
    d->scratch = calloc(2 * (size_t)rt->vocab, sizeof(float));
    if (d->batch == NULL || d->seqs == NULL || d->scratch == NULL) {
        pd_decode_destroy(d);
        return PD_ERR_NO_MEMORY;
    }
    pd_log_info("decode %s: max batch %u, eos %d (%u eos ids)", rt->args.id, rt->args.max_batch,
                d->eos[0], d->n_eos);
    *state_p = d;
    return PD_OK;
}

static void pd_decode_destroy(void *state)
{
    pd_decode_t *d = state;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state != PD_DECODE_REQ_FREE)
            pd_decode_req_end(d, &d->reqs[i]);
    pd_decode_quarantine_poll(d, true);
    free(d->batch);
    free(d->seqs);
    free(d->scratch);
    free(d);
}

static void pd_decode_cancel_all(void *state)
{
    pd_decode_t *d = state;
    uint32_t n = 0;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++) {
        if (d->reqs[i].state != PD_DECODE_REQ_FREE) {
            pd_decode_req_end(d, &d->reqs[i]);
            n++;
        }
    }
    if (n > 0)
        pd_log_info("decode %s: %u request(s) the router no longer has ended", d->rt->args.id, n);
    pd_worker_load_changed(d->rt->worker);
}

static void pd_decode_on_step(void *state)
{
    pd_decode_t *d = state;
    pd_decode_poll_recvs(d);
    pd_decode_step(d);
    if (d->n_quarantine > 0)
        pd_decode_quarantine_poll(d, false);
}

static long pd_decode_wait_ms(void *state)
{
    pd_decode_t *d = state;
    pd_decode_poll_recvs(d);
    if (pd_decode_has_work(d))
        return 0;
    long wait = d->n_quarantine > 0 ? pd_decode_quarantine_poll(d, false) : -1;
    /* While transfers are expected, look again soon even if the fabric's fd stays quiet. */
    if (d->n_live > 0 && (wait < 0 || wait > 5))
        wait = 5;
    return wait;
}

static void pd_decode_load(void *state, pd_proto_heartbeat_t *hb)
{
    const pd_decode_t *d = state;
    uint32_t ready = 0;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state == PD_DECODE_REQ_READY || d->reqs[i].state == PD_DECODE_REQ_WAIT_KV)
            ready++;
    hb->running = d->n_batch;
    hb->queued = ready;
}

const pd_role_ops_t pd_decode_role = {
    .name = "decode",
    .role = PD_PROTO_ROLE_DECODE,
    .pool_from_fabric = true, /* prefill workers put into it: on one host a shared mapping */
    .create = pd_decode_create,
    .destroy = pd_decode_destroy,
    .on_reserve = pd_decode_on_reserve,
    .on_prefill = pd_decode_on_prefill,
    .on_cancel = pd_decode_on_cancel,
    .cancel_all = pd_decode_cancel_all,
    .on_step = pd_decode_on_step,
    .wait_ms = pd_decode_wait_ms,
    .load = pd_decode_load,
};
