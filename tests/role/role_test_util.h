/* Helpers of the tests that drive a role's handlers in this process, without a loop: a
 * temporary directory with the tiny model, a ZeroMQ ROUTER that plays the router (the
 * worker's DEALER connects to it; what the handlers send arrives there), and a role made
 * by pd_role_create over the loopback transfer backend. */
#ifndef PD_TEST_ROLE_TEST_UTIL_H
#define PD_TEST_ROLE_TEST_UTIL_H

#include "pd/loader.h"
#include "pd/model.h"
#include "pd/presets.h"
#include "pd/proto.h"
#include "pd/role.h"
#include "pd/time.h"
#include "pd/tokenizer.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct rt_env {
    char dir[64];         /* temporary directory */
    char model[PATH_MAX]; /* dir/model: preset tiny, seed 1, byte tokenizer */
    void *zctx;
    void *router; /* ROUTER bound to ep */
    char ep[64];
} rt_env_t;

/* The directory, the model and the router socket. */
static inline void rt_env_init(rt_env_t *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/pd-role-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->model, sizeof(e->model), "%s/model", e->dir);
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 1);
    cr_assert_eq(pd_model_save_hf(m, e->model, PD_DTYPE_F32, NULL, NULL), PD_OK);
    pd_model_destroy(&m);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/tokenizer.bin", e->model);
    cr_assert_eq(pd_tokenizer_save(tok, path), PD_OK);
    pd_tokenizer_destroy(&tok);

    e->zctx = zmq_ctx_new();
    e->router = zmq_socket(e->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(e->router, ZMQ_LINGER, &zero, sizeof(zero));
    cr_assert_eq(zmq_bind(e->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof(e->ep);
    cr_assert_eq(zmq_getsockopt(e->router, ZMQ_LAST_ENDPOINT, e->ep, &len), 0);
}

static inline void rt_env_cleanup(rt_env_t *e)
{
    zmq_close(e->router);
    zmq_ctx_term(e->zctx);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    cr_expect_eq(system(cmd), 0);
}

/* A role of ops named id over the tiny model: one thread, B = 16, loopback transfers with
 * a timeout of xfer_timeout_ms, a pool of pool_mb, then extra arguments (n_extra). */
static inline pd_role_t *rt_role_create(rt_env_t *e, const pd_role_ops_t *ops, const char *id,
                                        const char *pool_mb, const char *xfer_timeout_ms,
                                        const char **extra, int n_extra)
{
    const char *argv[32] = {"pd-role",
                            "--router",
                            e->ep,
                            "--id",
                            id,
                            "--model",
                            e->model,
                            "--threads",
                            "1",
                            "--pool-mb",
                            pool_mb,
                            "--block-tokens",
                            "16",
                            "--events",
                            "tcp://127.0.0.1:*",
                            "--ip",
                            "127.0.0.1",
                            "--xfer-backend",
                            "loopback",
                            "--xfer-timeout-ms",
                            xfer_timeout_ms};
    int argc = 21;
    cr_assert_leq(argc + n_extra, 32);
    for (int i = 0; i < n_extra; i++)
        argv[argc++] = extra[i];
    pd_worker_args_t a;
    cr_assert_eq(pd_worker_args_parse(argc, (char **)argv, ops->role, &a), PD_OK);
    pd_role_t *rt = NULL;
    cr_assert_eq(pd_role_create(ops, &a, &rt), PD_OK);
    return rt;
}

/* The next message a worker sent the router within timeout_ms into *m (to clean up):
 * true, or false if none came. */
static inline bool rt_recv(rt_env_t *e, int timeout_ms, pd_proto_msg_t *m)
{
    zmq_pollitem_t it = {e->router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    zmq_msg_t id, f;
    zmq_msg_init(&id);
    zmq_msg_init(&f);
    cr_assert_geq(zmq_msg_recv(&id, e->router, 0), 0);
    cr_assert(zmq_msg_more(&id), "a frame without a payload");
    cr_assert_geq(zmq_msg_recv(&f, e->router, 0), 0);
    memset(m, 0, sizeof(*m));
    pd_proto_fault_t fault;
    pd_status_t st =
        pd_proto_decode(m, PD_PROTO_CHAN_WORKER, zmq_msg_data(&f), zmq_msg_size(&f), &fault);
    zmq_msg_close(&id);
    zmq_msg_close(&f);
    cr_assert_eq(st, PD_OK, "a worker message does not decode: %s", fault.reason);
    return true;
}

/* The next message must be of type `type` (within 2 s); *m to clean up. */
static inline void rt_expect(rt_env_t *e, pd_proto_type_t type, pd_proto_msg_t *m)
{
    cr_assert(rt_recv(e, 2000, m), "no %s", pd_proto_type_name(type));
    cr_assert_eq(m->type, type, "%s instead of %s", pd_proto_type_name(m->type),
                 pd_proto_type_name(type));
}

/* Nothing more reaches the router within timeout_ms (a deliberate wait). */
/* The prompt of request req_id: n tokens (n <= 64), one block hash per full block of 16. */
typedef struct rt_prompt {
    int32_t tokens[64];
    uint64_t hashes[4];
    uint32_t n;
} rt_prompt_t;

static inline void rt_prompt_make(rt_prompt_t *p, uint64_t req_id, uint32_t n)
{
    p->n = n;
    for (uint32_t i = 0; i < n; i++)
        p->tokens[i] = (int32_t)(3 + (req_id * 31 + i * 7) % 200);
    for (uint32_t i = 0; i < n / 16; i++)
        p->hashes[i] = req_id << 8 | i;
}

/* The router's prefill of req_id with prompt p to the decode worker "d0"; the caller adds
 * the destination (epoch, descriptor, blocks) where there is one. */
static inline void rt_prefill_msg(pd_proto_msg_t *m, uint64_t req_id, const rt_prompt_t *p)
{
    memset(m, 0, sizeof(*m));
    m->type = PD_PROTO_TYPE_PREFILL;
    pd_proto_prefill_t *x = &m->u.prefill;
    x->req_id = req_id;
    x->tokens = p->tokens;
    x->n_tokens = p->n;
    x->block_hashes = p->hashes;
    x->n_block_hashes = p->n / 16;
    x->sampling.top_p = 1.0;
    snprintf(x->dest_worker_id, sizeof(x->dest_worker_id), "d0");
}

/* The router's reserve of req_id with prompt p and max_tokens. */
static inline void rt_reserve_msg(pd_proto_msg_t *m, uint64_t req_id, const rt_prompt_t *p,
                                  uint32_t max_tokens)
{
    memset(m, 0, sizeof(*m));
    m->type = PD_PROTO_TYPE_RESERVE;
    pd_proto_reserve_t *x = &m->u.reserve;
    x->req_id = req_id;
    x->tokens = p->tokens;
    x->n_tokens = p->n;
    x->block_hashes = p->hashes;
    x->n_block_hashes = p->n / 16;
    x->max_tokens = max_tokens;
    x->sampling.top_p = 1.0;
}

static inline void rt_expect_quiet(rt_env_t *e, int timeout_ms)
{
    pd_proto_msg_t m;
    if (rt_recv(e, timeout_ms, &m)) {
        cr_expect_fail("unexpected %s", pd_proto_type_name(m.type));
        pd_proto_msg_cleanup(&m);
    }
}

#endif
