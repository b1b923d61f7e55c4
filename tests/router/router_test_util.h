/* Helpers of the pd-router process tests: what a client saw of each request, a loop that runs
 * until every request ended, and a wait for the fake workers to register. */
#ifndef PD_TEST_ROUTER_UTIL_H
#define PD_TEST_ROUTER_UTIL_H

#include "fake_worker.h"

#include "pd/hash.h"
#include "pd/manifest.h"
#include "pd/router.h"
#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define N_CONC 32

/* What a client saw of one request. */
typedef struct seen {
    char id[PD_PROTO_ID_CAP];
    int accepted;
    int n_done;
    int n_error;
    pd_status_t error_code;
    uint32_t n_tokens;
    int32_t tokens[64];
    bool tokens_in_order;
    bool done_matches_stream;
    pd_proto_usage_t usage;
    pd_proto_timings_t timings;
    char decode_worker[PD_PROTO_NAME_CAP];
    uint32_t recomputed[8]; /* done.recomputed_blocks */
    uint32_t n_recomputed;
} seen_t;

static inline seen_t *seen_find(seen_t *s, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].id, id) == 0)
            return &s[i];
    return NULL;
}

static inline void seen_apply(seen_t *s, int n, const pd_proto_msg_t *m)
{
    seen_t *x;
    switch (m->type) {
    case PD_PROTO_TYPE_ACCEPTED:
        x = seen_find(s, n, m->u.accepted.id);
        cr_assert_not_null(x, "accepted for unknown id '%s'", m->u.accepted.id);
        x->accepted++;
        break;
    case PD_PROTO_TYPE_TOKEN:
        x = seen_find(s, n, m->u.token.id);
        cr_assert_not_null(x);
        if (m->u.token.index != x->n_tokens)
            x->tokens_in_order = false;
        if (x->n_tokens < 64)
            x->tokens[x->n_tokens] = m->u.token.token;
        x->n_tokens++;
        break;
    case PD_PROTO_TYPE_DONE:
        x = seen_find(s, n, m->u.done.id);
        cr_assert_not_null(x);
        x->n_done++;
        x->done_matches_stream =
            m->u.done.n_tokens == x->n_tokens &&
            memcmp(m->u.done.tokens, x->tokens, x->n_tokens * sizeof(int32_t)) == 0;
        x->usage = m->u.done.usage;
        x->timings = m->u.done.timings;
        memcpy(x->decode_worker, m->u.done.decode_worker, sizeof(x->decode_worker));
        x->n_recomputed = m->u.done.n_recomputed_blocks < 8 ? m->u.done.n_recomputed_blocks : 8;
        if (x->n_recomputed > 0)
            memcpy(x->recomputed, m->u.done.recomputed_blocks, x->n_recomputed * sizeof(uint32_t));
        break;
    case PD_PROTO_TYPE_ERROR:
        x = seen_find(s, n, m->u.error.id);
        cr_assert_not_null(x, "error for unknown id '%s': %s", m->u.error.id, m->u.error.message);
        x->n_error++;
        x->error_code = m->u.error.code;
        break;
    default:
        break;
    }
}

static inline int seen_terminals(const seen_t *s, int n)
{
    int t = 0;
    for (int i = 0; i < n; i++)
        t += (s[i].n_done + s[i].n_error) > 0;
    return t;
}

/* Pump workers and read the client until every request has a terminal message (or
 * timeout), then keep listening for linger_ms to catch duplicates. */
static inline void run_until_terminal(pd_client_t *c, fw_cluster_t *cl, seen_t *s, int n,
                                      int timeout_ms, int linger_ms)
{
    uint64_t until = pd_time_now_ms() + (uint64_t)timeout_ms;
    uint64_t linger_until = 0;
    for (;;) {
        uint64_t now = pd_time_now_ms();
        if (linger_until == 0 && (seen_terminals(s, n) == n || now >= until))
            linger_until = now + (uint64_t)linger_ms;
        if (linger_until != 0 && now >= linger_until)
            break;
        if (cl != NULL)
            fw_cluster_pump(cl, 2);
        pd_proto_msg_t m;
        while (pd_client_recv(c, cl != NULL ? 0 : 5, &m, NULL) == PD_OK) {
            seen_apply(s, n, &m);
            pd_proto_msg_cleanup(&m);
        }
    }
}

static inline bool all_registered(fw_cluster_t *cl)
{
    for (uint32_t i = 0; i < cl->n; i++)
        if (cl->workers[i]->ctx != NULL && !cl->workers[i]->registered)
            return false;
    return true;
}

static inline void wait_registered(fw_cluster_t *cl)
{
    uint64_t until = pd_time_now_ms() + 5000;
    while (!all_registered(cl) && pd_time_now_ms() < until)
        fw_cluster_pump(cl, 10);
    cr_assert(all_registered(cl), "workers did not get 'registered' in 5 s");
}

typedef struct dir_goal {
    const char *worker;
    uint32_t blocks;
} dir_goal_t;

/* Wait goal: the directory lists `blocks` blocks of a ready `worker`. */
static inline bool worker_has_blocks(const pd_proto_status_reply_t *s, void *arg)
{
    const dir_goal_t *g = arg;
    for (uint32_t i = 0; i < s->n_workers; i++)
        if (strcmp(s->workers[i].id, g->worker) == 0 &&
            s->workers[i].directory_blocks == g->blocks &&
            strcmp(s->workers[i].state, "ready") == 0)
            return true;
    return false;
}

#endif
