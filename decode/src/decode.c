/* pd-decode's setup, teardown and event-loop hooks. */
#include "decode_int.h"
#include "pd/log.h"
#include "pd/time.h"
#include "pd/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PD_DECODE_EXPIRE_EVERY_MS 1000u

/* EOS of the model's tokenizer (DIR/tokenizer.bin), else the byte tokenizer's (2). */
static int32_t pd_decode_eos(const char *model_path, uint32_t vocab)
{
    char path[PATH_MAX];
    struct stat sb;
    pd_tokenizer_t *tok = NULL;
    int32_t eos = 2;
    snprintf(path, sizeof(path), "%s/tokenizer.bin", model_path);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        pd_tokenizer_load(path, vocab, &tok) == PD_OK) {
        eos = pd_tokenizer_eos(tok);
        pd_tokenizer_destroy(&tok);
    } else if (pd_tokenizer_create_byte(&tok) == PD_OK) {
        eos = pd_tokenizer_eos(tok);
        pd_tokenizer_destroy(&tok);
    }
    return eos;
}

static void pd_decode_on_message(void *arg, const pd_proto_msg_t *msg)
{
    pd_decode_t *d = arg;
    switch (msg->type) {
    case PD_PROTO_TYPE_RESERVE:
        pd_decode_on_reserve(d, &msg->u.reserve);
        break;
    case PD_PROTO_TYPE_PREFILL:
        pd_decode_on_prefill(d, &msg->u.prefill);
        break;
    case PD_PROTO_TYPE_WORKER_CANCEL:
        pd_decode_on_cancel(d, msg->u.worker_cancel.req_id);
        break;
    case PD_PROTO_TYPE_WORKER_ERROR:
        /* The router gave up on a request: same as a cancel. */
        if (msg->u.worker_error.req_id != 0)
            pd_decode_on_cancel(d, msg->u.worker_error.req_id);
        else
            pd_log_warn("decode: router error: %s: %s", pd_status_name(msg->u.worker_error.code),
                        msg->u.worker_error.message);
        break;
    default:
        break;
    }
}

static void pd_decode_on_step(void *arg)
{
    pd_decode_t *d = arg;
    pd_xfer_engine_progress(d->xp.engine);
    pd_decode_poll_recvs(d);
    pd_decode_step(d);
    if (d->n_quarantine > 0)
        pd_decode_quarantine_poll(d, false);
    uint64_t now = pd_time_now_ms();
    if (now >= d->next_expire_ms) {
        pd_kvbm_expire(d->bm);
        d->next_expire_ms = now + PD_DECODE_EXPIRE_EVERY_MS;
    }
}

static long pd_decode_wait_ms(void *arg)
{
    pd_decode_t *d = arg;
    if (pd_decode_has_work(d))
        return 0;
    if (pd_xfer_engine_progress(d->xp.engine) > 0)
        return 0;
    pd_decode_poll_recvs(d);
    if (pd_decode_has_work(d))
        return 0;
    if (pd_xfer_engine_arm(d->xp.engine) == PD_ERR_BUSY)
        return 0;
    long wait = pd_xfer_engine_next_deadline_ms(d->xp.engine);
    uint64_t now = pd_time_now_ms();
    long expire = d->next_expire_ms > now ? (long)(d->next_expire_ms - now) : 0;
    if (wait < 0 || wait > expire)
        wait = expire;
    long q = d->n_quarantine > 0 ? pd_decode_quarantine_poll(d, false) : -1;
    if (q >= 0 && q < wait)
        wait = q;
    /* While transfers are expected, look again soon even if the fd stays quiet. */
    if (d->n_live > 0 && wait > 5)
        wait = 5;
    return wait;
}

static void pd_decode_load(void *arg, pd_proto_heartbeat_t *hb)
{
    pd_decode_t *d = arg;
    uint32_t ready = 0;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state == PD_DECODE_REQ_READY || d->reqs[i].state == PD_DECODE_REQ_WAIT_KV)
            ready++;
    hb->running = d->n_batch;
    hb->queued = ready;
    hb->free_blocks = pd_worker_kvbm_free_blocks(d->bm);
}

pd_status_t pd_decode_create(const pd_worker_args_t *args, pd_decode_t **decode_p)
{
    pd_status_t st;
    pd_decode_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return PD_ERR_NO_MEMORY;
    d->args = *args;
    pd_mp_writer_t desc;
    pd_mp_writer_init(&desc);

    st = pd_model_load(args->model, &d->model);
    if (st != PD_OK) {
        pd_log_error("decode: cannot load model %s: %s", args->model, pd_status_str(st));
        goto err;
    }
    const pd_model_config_t *c = &d->model->config;
    d->vocab = c->vocab_size;
    d->eos = pd_decode_eos(args->model, c->vocab_size);
    st = pd_engine_create(d->model, PD_BACKEND_CPU, args->threads, &d->engine);
    if (st != PD_OK) {
        pd_log_error("decode: cannot create the compute engine: %s", pd_status_str(st));
        goto err;
    }

    d->layout.n_layers = c->n_layers;
    d->layout.n_kv_heads = c->n_kv_heads;
    d->layout.head_dim = c->head_dim;
    d->layout.block_tokens = args->block_tokens;
    d->layout.n_blocks = 1;
    size_t block_bytes = pd_kv_block_bytes(&d->layout);
    size_t n_blocks = ((size_t)args->pool_mb << 20) / block_bytes;
    if (n_blocks == 0 || n_blocks > PD_PROTO_MAX_BLOCKS * 64) {
        pd_log_error("decode: --pool-mb %u holds %zu blocks of %zu bytes", args->pool_mb, n_blocks,
                     block_bytes);
        st = PD_ERR_INVALID_PARAM;
        goto err;
    }
    d->layout.n_blocks = (uint32_t)n_blocks;
    st = pd_xfer_worker_pool_open(args, "decode", &d->layout, true, &desc, &d->xp);
    if (st != PD_OK)
        goto err;
    pd_worker_reg_t reg = {d->layout.n_blocks, pd_mp_writer_data(&desc), pd_mp_writer_size(&desc)};
    st = pd_worker_create(args, &reg, &d->worker);
    if (st == PD_OK)
        st = pd_worker_kvbm_create(d->worker, args, &d->layout, d->xp.pool, &d->bm);
    if (st != PD_OK)
        goto err;

    d->batch = calloc(args->max_batch, sizeof(*d->batch));
    d->seqs = calloc(args->max_batch, sizeof(*d->seqs));
    d->scratch = calloc(2 * (size_t)d->vocab, sizeof(float));
    if (d->batch == NULL || d->seqs == NULL || d->scratch == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto err;
    }
    pd_mp_writer_cleanup(&desc);
    pd_log_info("decode %s: %u blocks of %u tokens (%zu MiB), max batch %u, %s, eos %d", args->id,
                d->layout.n_blocks, args->block_tokens, d->xp.pool_bytes >> 20, args->max_batch,
                pd_proto_role_name(args->role), d->eos);
    *decode_p = d;
    return PD_OK;

err:
    pd_mp_writer_cleanup(&desc);
    pd_decode_destroy(&d);
    return st;
}

void pd_decode_destroy(pd_decode_t **decode_p)
{
    if (decode_p == NULL || *decode_p == NULL)
        return;
    pd_decode_t *d = *decode_p;
    for (uint32_t i = 0; i < PD_DECODE_MAX_REQS; i++)
        if (d->reqs[i].state != PD_DECODE_REQ_FREE)
            pd_decode_req_end(d, &d->reqs[i]);
    if (d->bm != NULL)
        pd_decode_quarantine_poll(d, true);
    pd_kvbm_destroy(&d->bm);
    pd_worker_destroy(&d->worker);
    pd_xfer_worker_pool_close(&d->xp);
    pd_engine_destroy(&d->engine);
    pd_model_destroy(&d->model);
    free(d->batch);
    free(d->seqs);
    free(d->scratch);
    free(d);
    *decode_p = NULL;
}

pd_status_t pd_decode_run(pd_decode_t *d)
{
    pd_worker_hooks_t hooks = {d, pd_decode_on_message, pd_decode_on_step, pd_decode_wait_ms,
                               pd_decode_load};
    return pd_worker_run(d->worker, &hooks, d->xp.fd);
}

int pd_decode_main(int argc, char **argv)
{
    pd_log_init("pd-decode");
    pd_worker_args_t args;
    pd_status_t st = pd_worker_args_parse(argc, argv, PD_PROTO_ROLE_DECODE, &args);
    if (st == PD_INPROGRESS)
        return 0;
    if (st != PD_OK)
        return 2;
    pd_worker_signals_install();
    pd_decode_t *d = NULL;
    st = pd_decode_create(&args, &d);
    if (st != PD_OK) {
        fprintf(stderr, "pd-decode: %s\n", pd_status_str(st));
        return 1;
    }
    st = pd_decode_run(d);
    pd_decode_destroy(&d);
    return st == PD_OK ? 0 : 1;
}
