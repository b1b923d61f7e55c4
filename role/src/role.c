/* The role runtime (pd/role.h): start-up, the loop's hooks around the role's handlers,
 * and shutdown. */
#include "role_int.h"

#include "pd/manifest.h"

#include "pd/log.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often unpinned cached blocks past their retention are evicted. */
#define PD_ROLE_EXPIRE_EVERY_MS 1000u

/* The pool: as many blocks of this model's layout as --pool-mb holds. */
static pd_status_t pd_role_layout(pd_role_t *rt)
{
    const pd_model_config_t *c = &rt->model->config;
    rt->layout = (pd_kv_layout_t){.n_layers = c->n_layers,
                                  .n_kv_heads = c->n_kv_heads,
                                  .head_dim = c->head_dim,
                                  .block_tokens = rt->args.block_tokens,
                                  .n_blocks = 1};
    size_t block_bytes = pd_kv_block_bytes(&rt->layout);
    size_t n_blocks = ((size_t)rt->args.pool_mb << 20) / block_bytes;
    if (n_blocks == 0 || n_blocks > PD_PROTO_MAX_BLOCKS * 64) {
        pd_log_error("%s: --pool-mb %u holds %zu blocks of %zu bytes", rt->ops->name,
                     rt->args.pool_mb, n_blocks, block_bytes);
        return PD_ERR_INVALID_PARAM;
    }
    rt->layout.n_blocks = (uint32_t)n_blocks;
    return PD_OK;
}

pd_status_t pd_role_create(const pd_role_ops_t *ops, const pd_worker_args_t *args, pd_role_t **rt_p)
{
    pd_status_t st;
    pd_role_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return PD_ERR_NO_MEMORY;
    rt->args = *args;
    rt->ops = ops;
    rt->fabric.fd = -1;
    pd_mp_writer_t desc;
    pd_mp_writer_init(&desc);

    if ((st = pd_model_load(args->model, &rt->model)) != PD_OK) {
        pd_log_error("%s: cannot load model %s: %s", ops->name, args->model, pd_status_str(st));
        goto err;
    }
    rt->vocab = rt->model->config.vocab_size;
    const bool cuda = strcmp(args->backend, "cuda") == 0;
    if ((st = pd_engine_create(rt->model, cuda ? PD_BACKEND_CUDA : PD_BACKEND_CPU, args->threads,
                               &rt->engine)) != PD_OK) {
        pd_log_error("%s: cannot create the compute engine on the %s backend: %s", ops->name,
                     args->backend, pd_status_str(st));
        goto err;
    }
    if ((st = pd_role_layout(rt)) != PD_OK ||
        (st = pd_role_fabric_open(args, ops->name, &rt->layout, ops->pool_from_fabric, &desc,
                                  &rt->fabric)) != PD_OK)
        goto err;
    pd_worker_reg_t reg = {rt->layout.n_blocks, pd_mp_writer_data(&desc), pd_mp_writer_size(&desc)};
    if ((st = pd_worker_create(args, &reg, &rt->worker)) != PD_OK ||
        (st = pd_worker_kvbm_create(rt->worker, args, &rt->layout, rt->fabric.pool, &rt->bm)) !=
            PD_OK ||
        (cuda || args->kv_staging ? (st = pd_role_stage_open(rt)) : PD_OK) != PD_OK ||
        (st = ops->create(rt, &rt->state)) != PD_OK)
        goto err;
    rt->pins = calloc(PD_ROLE_MAX_PINS, sizeof(*rt->pins));
    if (rt->pins == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto err;
    }
    pd_mp_writer_cleanup(&desc);
    pd_log_info("%s %s: %u blocks of %u tokens (%zu MiB), %s, %s backend%s", ops->name, args->id,
                rt->layout.n_blocks, args->block_tokens, rt->fabric.pool_bytes >> 20,
                pd_proto_role_name(args->role), args->backend,
                rt->kv_valid != NULL ? ", compute pool staged through the host pool" : "");
    *rt_p = rt;
    return PD_OK;

err:
    pd_mp_writer_cleanup(&desc);
    pd_role_destroy(&rt);
    return st;
}

void pd_role_destroy(pd_role_t **rt_p)
{
    if (rt_p == NULL || *rt_p == NULL)
        return;
    pd_role_t *rt = *rt_p;
    if (rt->state != NULL)
        rt->ops->destroy(rt->state);
    pd_role_pins_cleanup(rt);
    pd_role_stage_close(rt);
    pd_kvbm_destroy(&rt->bm);
    pd_worker_destroy(&rt->worker);
    pd_role_fabric_close(&rt->fabric);
    pd_engine_destroy(&rt->engine);
    pd_model_destroy(&rt->model);
    free(rt);
    *rt_p = NULL;
}

static void pd_role_unsupported(pd_role_t *rt, uint64_t req_id, const char *what)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "a %s worker does not handle %s", pd_proto_role_name(rt->args.role),
             what);
    pd_worker_send_error(rt->worker, req_id, PD_ERR_UNSUPPORTED, msg);
}

void pd_role_dispatch(pd_role_t *rt, const pd_proto_msg_t *msg)
{
    const pd_role_ops_t *ops = rt->ops;
    switch (msg->type) {
    case PD_PROTO_TYPE_RESERVE:
        if (ops->on_reserve != NULL)
            ops->on_reserve(rt->state, &msg->u.reserve);
        else
            pd_role_unsupported(rt, msg->u.reserve.req_id, "reserve");
        break;
    case PD_PROTO_TYPE_PREFILL:
        if (ops->on_prefill != NULL)
            ops->on_prefill(rt->state, &msg->u.prefill);
        else
            pd_role_unsupported(rt, msg->u.prefill.req_id, "prefill");
        break;
    case PD_PROTO_TYPE_PIN:
        pd_role_on_pin(rt, &msg->u.pin);
        break;
    case PD_PROTO_TYPE_WORKER_CANCEL:
        pd_role_pins_release(rt, msg->u.worker_cancel.req_id);
        ops->on_cancel(rt->state, msg->u.worker_cancel.req_id);
        break;
    case PD_PROTO_TYPE_WORKER_ERROR:
        /* About a request: the router gave up on it, as with a cancel. */
        if (msg->u.worker_error.req_id != 0) {
            pd_role_pins_release(rt, msg->u.worker_error.req_id);
            ops->on_cancel(rt->state, msg->u.worker_error.req_id);
        } else
            pd_log_warn("%s: router error: %s: %s", ops->name,
                        pd_status_name(msg->u.worker_error.code), msg->u.worker_error.message);
        break;
    default:
        pd_log_debug("%s: ignoring %s from the router", ops->name, pd_proto_type_name(msg->type));
        break;
    }
}

static void pd_role_on_message(void *arg, const pd_proto_msg_t *msg)
{
    pd_role_dispatch(arg, msg);
}

void pd_role_step(pd_role_t *rt)
{
    pd_xfer_engine_progress(rt->fabric.engine);
    rt->ops->on_step(rt->state);
    uint64_t now = pd_time_now_ms();
    if (now >= rt->next_expire_ms) {
        pd_role_pins_expire(rt, now);
        pd_kvbm_expire(rt->bm);
        rt->next_expire_ms = now + PD_ROLE_EXPIRE_EVERY_MS;
    }
}

static void pd_role_on_step(void *arg)
{
    pd_role_step(arg);
}

/* The shortest of: the role's bound, the fabric's next deadline, the next expiry. 0 while
 * the fabric has work, or cannot arm its fd. */
static long pd_role_wait_ms(void *arg)
{
    pd_role_t *rt = arg;
    if (pd_xfer_engine_progress(rt->fabric.engine) > 0)
        return 0;
    long role = rt->ops->wait_ms(rt->state);
    if (role == 0 || pd_xfer_engine_arm(rt->fabric.engine) == PD_ERR_BUSY)
        return 0;
    long wait = pd_xfer_engine_next_deadline_ms(rt->fabric.engine);
    uint64_t now = pd_time_now_ms();
    long expire = rt->next_expire_ms > now ? (long)(rt->next_expire_ms - now) : 0;
    if (wait < 0 || wait > expire)
        wait = expire;
    return (role >= 0 && role < wait) ? role : wait;
}

/* The heartbeat: the role's load, and the runtime's pool, tier and transfer figures,
 * which the router sums for its clients (stats_reply, the HTTP gateway's /metrics). */
static void pd_role_load(void *arg, pd_proto_heartbeat_t *hb)
{
    pd_role_t *rt = arg;
    rt->ops->load(rt->state, hb);
    pd_kvbm_stats_t ks;
    pd_kvbm_stats(rt->bm, &ks);
    hb->free_blocks = pd_worker_kvbm_free_blocks(rt->bm);
    pd_proto_worker_stats_t *s = &rt->hb_stats;
    memset(s, 0, sizeof(*s));
    s->g1_cached_blocks = ks.n_cached;
    s->g2_blocks = ks.n_host_blocks;
    s->g2_used_blocks = ks.n_host_cached;
    s->g3_blocks = ks.n_disk_blocks;
    s->g3_used_blocks = ks.n_disk_cached;
    s->hit_blocks = ks.n_hits;
    s->miss_blocks = ks.n_misses;
    if (rt->fabric.engine != NULL) {
        pd_xfer_stats_t xs;
        pd_xfer_engine_stats(rt->fabric.engine, &xs);
        s->xfer_bytes = xs.bytes_posted;
        s->xfer_bytes_wire = xs.bytes_wire;
    }
    hb->stats = s;
}

/* A new epoch: nothing of the old one is kept for anybody (pins, requests). */
static void pd_role_on_reset(void *arg)
{
    pd_role_t *rt = arg;
    pd_role_pins_expire(rt, UINT64_MAX);
    if (rt->ops->cancel_all != NULL)
        rt->ops->cancel_all(rt->state);
}

pd_status_t pd_role_run(pd_role_t *rt)
{
    pd_worker_hooks_t hooks = {rt,           pd_role_on_message, pd_role_on_step, pd_role_wait_ms,
                               pd_role_load, pd_role_on_reset};
    return pd_worker_run(rt->worker, &hooks, rt->fabric.fd);
}

int pd_role_main(const pd_role_ops_t *ops, int argc, char **argv)
{
    char prog[32];
    snprintf(prog, sizeof(prog), "pd-%s", ops->name);
    pd_log_init(prog);
    /* Under a scheduler the whole configuration comes from PD_MANIFEST and PD_ROLE,
     * PD_INDEX, PD_HOST, PD_ROUTER; options on the command line still win. */
    if (!pd_manifest_main_argv(strcmp(ops->name, "decode") == 0 ? "decode,both" : ops->name, prog,
                               &argc, &argv))
        return 2;
    pd_worker_args_t args;
    pd_status_t st = pd_worker_args_parse(argc, argv, ops->role, &args);
    if (st == PD_INPROGRESS)
        return 0;
    if (st != PD_OK)
        return 2;
    pd_worker_signals_install();
    pd_role_t *rt = NULL;
    if ((st = pd_role_create(ops, &args, &rt)) != PD_OK) {
        fprintf(stderr, "%s: %s\n", prog, pd_status_str(st));
        return 1;
    }
    st = pd_role_run(rt);
    pd_role_destroy(&rt);
    return st == PD_OK ? 0 : 1;
}
