/* pd-prefill's setup, teardown and event-loop hooks. */
#include "pd/log.h"
#include "pd/time.h"
#include "prefill_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PD_PREFILL_EXPIRE_EVERY_MS 1000u

static void pd_prefill_on_message(void *arg, const pd_proto_msg_t *msg)
{
    pd_prefill_t *p = arg;
    switch (msg->type) {
    case PD_PROTO_TYPE_PREFILL:
        pd_prefill_on_prefill(p, &msg->u.prefill);
        break;
    case PD_PROTO_TYPE_WORKER_CANCEL:
        pd_prefill_on_cancel(p, msg->u.worker_cancel.req_id);
        break;
    case PD_PROTO_TYPE_WORKER_ERROR:
        if (msg->u.worker_error.req_id != 0)
            pd_prefill_on_cancel(p, msg->u.worker_error.req_id);
        else
            pd_log_warn("prefill: router error: %s: %s", pd_status_name(msg->u.worker_error.code),
                        msg->u.worker_error.message);
        break;
    case PD_PROTO_TYPE_RESERVE:
        pd_worker_send_error(p->worker, msg->u.reserve.req_id, PD_ERR_UNSUPPORTED,
                             "a prefill worker does not reserve decode blocks");
        break;
    default:
        break;
    }
}

static void pd_prefill_on_step(void *arg)
{
    pd_prefill_t *p = arg;
    pd_xfer_engine_progress(p->xp.engine);
    pd_prefill_poll_jobs(p);
    uint64_t now = pd_time_now_ms();
    if (now >= p->next_expire_ms) {
        pd_kvbm_expire(p->bm);
        p->next_expire_ms = now + PD_PREFILL_EXPIRE_EVERY_MS;
    }
}

static long pd_prefill_wait_ms(void *arg)
{
    pd_prefill_t *p = arg;
    if (pd_xfer_engine_progress(p->xp.engine) > 0)
        return 0;
    if (pd_xfer_engine_arm(p->xp.engine) == PD_ERR_BUSY)
        return 0;
    long wait = pd_xfer_engine_next_deadline_ms(p->xp.engine);
    uint64_t now = pd_time_now_ms();
    long expire = p->next_expire_ms > now ? (long)(p->next_expire_ms - now) : 0;
    if (wait < 0 || wait > expire)
        wait = expire;
    if (p->n_jobs > 0 && wait > 2)
        wait = 2;
    return wait;
}

static void pd_prefill_load(void *arg, pd_proto_heartbeat_t *hb)
{
    pd_prefill_t *p = arg;
    hb->running = p->n_jobs;
    hb->queued = 0;
    hb->free_blocks = pd_worker_kvbm_free_blocks(p->bm);
}

pd_status_t pd_prefill_create(const pd_worker_args_t *args, pd_prefill_t **prefill_p)
{
    pd_status_t st;
    pd_prefill_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    p->args = *args;
    pd_mp_writer_t desc;
    pd_mp_writer_init(&desc);

    st = pd_model_load(args->model, &p->model);
    if (st != PD_OK) {
        pd_log_error("prefill: cannot load model %s: %s", args->model, pd_status_str(st));
        goto err;
    }
    const pd_model_config_t *c = &p->model->config;
    p->vocab = c->vocab_size;
    st = pd_engine_create(p->model, PD_BACKEND_CPU, args->threads, &p->engine);
    if (st != PD_OK) {
        pd_log_error("prefill: cannot create the compute engine: %s", pd_status_str(st));
        goto err;
    }

    p->layout.n_layers = c->n_layers;
    p->layout.n_kv_heads = c->n_kv_heads;
    p->layout.head_dim = c->head_dim;
    p->layout.block_tokens = args->block_tokens;
    p->layout.n_blocks = 1;
    size_t block_bytes = pd_kv_block_bytes(&p->layout);
    size_t n_blocks = ((size_t)args->pool_mb << 20) / block_bytes;
    if (n_blocks == 0 || n_blocks > PD_PROTO_MAX_BLOCKS * 64) {
        pd_log_error("prefill: --pool-mb %u holds %zu blocks of %zu bytes", args->pool_mb, n_blocks,
                     block_bytes);
        st = PD_ERR_INVALID_PARAM;
        goto err;
    }
    p->layout.n_blocks = (uint32_t)n_blocks;
    /* The prefill pool is only read by the fabric (puts from it), so the heap will do. */
    st = pd_xfer_worker_pool_open(args, "prefill", &p->layout, false, &desc, &p->xp);
    if (st != PD_OK)
        goto err;
    pd_worker_reg_t reg = {p->layout.n_blocks, pd_mp_writer_data(&desc), pd_mp_writer_size(&desc)};
    st = pd_worker_create(args, &reg, &p->worker);
    if (st == PD_OK)
        st = pd_worker_kvbm_create(p->worker, args, &p->layout, p->xp.pool, &p->bm);
    if (st != PD_OK)
        goto err;
    p->logits = calloc(p->vocab, sizeof(float));
    p->scratch = calloc(2 * (size_t)p->vocab, sizeof(float));
    if (p->logits == NULL || p->scratch == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto err;
    }
    pd_mp_writer_cleanup(&desc);
    pd_log_info("prefill %s: %u blocks of %u tokens (%zu MiB), layerwise %d", args->id,
                p->layout.n_blocks, args->block_tokens, p->xp.pool_bytes >> 20, args->layerwise);
    *prefill_p = p;
    return PD_OK;

err:
    pd_mp_writer_cleanup(&desc);
    pd_prefill_destroy(&p);
    return st;
}

void pd_prefill_destroy(pd_prefill_t **prefill_p)
{
    if (prefill_p == NULL || *prefill_p == NULL)
        return;
    pd_prefill_t *p = *prefill_p;
    for (uint32_t i = 0; i < PD_PREFILL_MAX_JOBS; i++)
        if (p->jobs[i].live)
            pd_prefill_job_end(p, &p->jobs[i]);
    for (uint32_t i = 0; i < PD_PREFILL_MAX_PEERS; i++)
        pd_xfer_peer_disconnect(&p->peers[i].peer);
    pd_kvbm_destroy(&p->bm);
    pd_worker_destroy(&p->worker);
    pd_xfer_worker_pool_close(&p->xp);
    pd_engine_destroy(&p->engine);
    pd_model_destroy(&p->model);
    free(p->logits);
    free(p->scratch);
    free(p);
    *prefill_p = NULL;
}

pd_status_t pd_prefill_run(pd_prefill_t *p)
{
    pd_worker_hooks_t hooks = {p, pd_prefill_on_message, pd_prefill_on_step, pd_prefill_wait_ms,
                               pd_prefill_load};
    return pd_worker_run(p->worker, &hooks, p->xp.fd);
}

int pd_prefill_main(int argc, char **argv)
{
    pd_log_init("pd-prefill");
    pd_worker_args_t args;
    pd_status_t st = pd_worker_args_parse(argc, argv, PD_PROTO_ROLE_PREFILL, &args);
    if (st == PD_INPROGRESS)
        return 0;
    if (st != PD_OK)
        return 2;
    pd_worker_signals_install();
    pd_prefill_t *p = NULL;
    st = pd_prefill_create(&args, &p);
    if (st != PD_OK) {
        fprintf(stderr, "pd-prefill: %s\n", pd_status_str(st));
        return 1;
    }
    st = pd_prefill_run(p);
    pd_prefill_destroy(&p);
    return st == PD_OK ? 0 : 1;
}
