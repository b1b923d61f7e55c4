/* The cluster as a user runs it, for tests: `pdctl up -d` (pd-router, pd-prefill,
 * pd-decode) on loopback ports chosen at run time, a client DEALER speaking the client
 * protocol, `pdctl generate --json` as the reference every token must equal, and the
 * router's status to check that nothing is left reserved. Used by test_cluster.c and
 * test_faults.c. */
#ifndef PD_TEST_CLUSTER_CL_H
#define PD_TEST_CLUSTER_CL_H

#include "pd/mp.h"
#include "pd/ops.h"
#include "pd/proto.h"
#include "test_cluster_util.h"

#include <stdarg.h>
#include <zmq.h>

typedef struct cl {
    pd_tc_env_t env;
    char run_dir[PATH_MAX / 2 + 8];
    char manifest[PATH_MAX];
    char client_ep[64];
    int base_port;
    bool up;
    pid_t pids[16];
    int n_pids;
    void *ctx;
    void *sock;
    pd_mp_writer_t wr;
} cl_t;

typedef struct cl_req {
    char id[PD_PROTO_ID_CAP];
    int32_t prompt[320];
    uint32_t n_prompt;
    const char *text; /* instead of prompt, when set */
    uint32_t max_tokens;
    pd_proto_sampling_t sampling;
    char tenant[32];
    int32_t stop[4];
    uint32_t n_stop;
    pd_proto_cache_t cache; /* zeroed: auto */
    /* results */
    bool accepted;
    int32_t tokens[512];
    uint32_t n_streamed;
    bool order_ok;
    uint32_t n_again;    /* tokens sent again with an index already streamed (and equal) */
    uint32_t n_resumed;  /* `accepted` with `resumed` */
    uint32_t resumed_at; /* its next_index */
    /* A request that had ended when the router was killed, its end not yet journaled:
     * the next router goes on with it again (`accepted` resumed after the terminal) and
     * ends it again, with the same tokens. */
    bool replay;
    uint32_t n_replayed_done;
    int n_terminal;
    bool done;
    pd_proto_done_t d;
    int32_t done_tokens[512];
    pd_status_t err;
} cl_req_t;

static cl_t g;

static inline bool cl_ports_free(int base)
{
    int ports[] = {base, base + 1, base + 11, base + 12, base + 13, base + 14};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)ports[i]);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (!ok)
            return false;
    }
    return true;
}

static inline int cl_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int cl_run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Read the pids `pdctl up -d` recorded, to check later that none is left. */
static inline void cl_read_pids(void)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "cat %s/*.state 2>/dev/null", g.run_dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    char line[512];
    g.n_pids = 0;
    while (fgets(line, sizeof(line), f) != NULL && g.n_pids < 16) {
        int pid;
        if (sscanf(line, "proc %d", &pid) == 1)
            g.pids[g.n_pids++] = pid;
    }
    pclose(f);
}

/* Start a cluster: yaml_roles is the manifest's role/network part. */
/* When set, cl_up serves this preset (made with `pdctl model new --tokenizer`) instead of
 * the tiny byte-level model: {preset, tokenizer directory}. */
static const char *cl_preset[2];
/* The dtype of the tiny model's matrices that cl_up writes (as `pdctl model quantize`). */
static pd_dtype_t cl_dtype = PD_DTYPE_F32;

static inline void cl_up(const char *name, const char *extra_yaml, bool namespaces)
{
    memset(&g, 0, sizeof(g));
    pd_tc_env_init_dtype(&g.env, cl_dtype);
    if (cl_preset[0] != NULL) {
        snprintf(g.env.model, sizeof(g.env.model), "%s/%s", g.env.dir, cl_preset[0]);
        cr_assert_eq(cl_run("%s/pdctl model new --preset %s --seed 1 %s%s -o %s >/dev/null 2>&1",
                            g.env.bin, cl_preset[0], cl_preset[1] != NULL ? "--tokenizer " : "",
                            cl_preset[1] != NULL ? cl_preset[1] : "", g.env.model),
                     0);
    }
    snprintf(g.run_dir, sizeof(g.run_dir), "%s/run", g.env.dir);
    snprintf(g.manifest, sizeof(g.manifest), "%s/%s.yaml", g.env.dir, name);
    for (int tries = 0; tries < 50; tries++) {
        int base =
            20000 +
            (int)((pd_time_now_ns() / 1000 + (uint64_t)getpid() * 7919 + (uint64_t)tries * 104729) %
                  30000);
        if (cl_ports_free(base)) {
            g.base_port = base;
            break;
        }
    }
    cr_assert_gt(g.base_port, 0);
    FILE *f = fopen(g.manifest, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "name: %s\n"
            "model:\n  path: %s\n"
            "router:\n  policy: kv\n  min_cached_prefix: 32\n  block_tokens: 16\n"
            "  worker_timeout_ms: 3000\n"
            "transfer:\n  backend: ucx\n  checksum: true\n  layerwise: true\n"
            "  timeout_ms: 5000\n%s%s",
            name, g.env.model, namespaces ? "  transports: tcp\n" : "", extra_yaml);
    if (!namespaces)
        fprintf(f, "network:\n  host: 127.0.0.1\n  base_port: %d\n", g.base_port);
    fclose(f);
    int rc = cl_run("PD_RUN_DIR=%s PD_BIN_DIR=%s %s/pdctl up -d %s --ready-timeout 60 "
                    ">%s/up.log 2>&1",
                    g.run_dir, g.env.bin, g.env.bin, g.manifest, g.env.dir);
    cl_read_pids();
    if (rc != 0) {
        cl_run("cat %s/up.log %s/*.log 1>&2", g.env.dir, g.run_dir);
        cl_run("PD_RUN_DIR=%s PD_BIN_DIR=%s %s/pdctl down %s >/dev/null 2>&1", g.run_dir, g.env.bin,
               g.env.bin, g.manifest);
        pd_tc_env_cleanup(&g.env, false);
        cr_assert_fail("pdctl up failed (%d)", rc);
    }
    g.up = true;
    /* The client endpoint from the state file. */
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "sed -n 's/^client //p' %s/*.state", g.run_dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(g.client_ep, sizeof(g.client_ep), p));
    pclose(p);
    g.client_ep[strcspn(g.client_ep, "\n")] = '\0';

    pd_mp_writer_init(&g.wr);
    g.ctx = zmq_ctx_new();
    g.sock = zmq_socket(g.ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(g.sock, ZMQ_LINGER, &zero, sizeof(zero));
    /* A routing id of its own, as pd_client has: a restarted router can reach it. */
    char rid[32];
    snprintf(rid, sizeof(rid), "cl-test-%d", (int)getpid());
    zmq_setsockopt(g.sock, ZMQ_ROUTING_ID, rid, strlen(rid));
    cr_assert_eq(zmq_connect(g.sock, g.client_ep), 0);
}

/* Stop the cluster; every recorded process must be gone within 10 s. Also the suite's
 * fini, so that a failed assertion leaves nothing running. Idempotent. */
static inline void cl_down(void)
{
    if (!g.up)
        return;
    g.up = false;
    if (g.sock != NULL)
        zmq_close(g.sock);
    if (g.ctx != NULL)
        zmq_ctx_term(g.ctx);
    pd_mp_writer_cleanup(&g.wr);
    g.sock = g.ctx = NULL;
    if (getenv("PD_TEST_LOGS") != NULL)
        cl_run("tail -n 40 %s/*.log 1>&2", g.run_dir);
    int rc = cl_run("PD_RUN_DIR=%s PD_BIN_DIR=%s %s/pdctl down %s >/dev/null 2>&1", g.run_dir,
                    g.env.bin, g.env.bin, g.manifest);
    cr_expect_eq(rc, 0, "pdctl down failed");
    uint64_t end = pd_time_now_ms() + 10000;
    int alive = 0;
    do {
        alive = 0;
        for (int i = 0; i < g.n_pids; i++)
            if (kill(g.pids[i], 0) == 0)
                alive++;
        if (alive > 0)
            usleep(20000);
    } while (alive > 0 && pd_time_now_ms() < end);
    for (int i = 0; i < g.n_pids && alive > 0; i++)
        if (kill(g.pids[i], 0) == 0)
            kill(g.pids[i], SIGKILL);
    cr_expect_eq(alive, 0, "%d cluster processes still running after pdctl down", alive);
    cr_expect_eq(pd_tc_sanitizer_reports(g.run_dir), 0, "sanitizer reports in the cluster logs");
    pd_tc_env_cleanup(&g.env, false);
}

static inline void cl_send(const pd_proto_msg_t *m)
{
    pd_mp_writer_reset(&g.wr);
    cr_assert_eq(pd_proto_encode(m, &g.wr), PD_OK);
    cr_assert_geq(zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0), 0);
}

/* One reply within timeout_ms: 0 and *m filled, or -1. */
static inline int cl_recv(int timeout_ms, pd_proto_msg_t *m)
{
    zmq_pollitem_t it = {g.sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -1;
    zmq_msg_t f;
    zmq_msg_init(&f);
    cr_assert_geq(zmq_msg_recv(&f, g.sock, 0), 0);
    memset(m, 0, sizeof(*m));
    pd_proto_fault_t fault;
    pd_status_t st =
        pd_proto_decode(m, PD_PROTO_CHAN_CLIENT, zmq_msg_data(&f), zmq_msg_size(&f), &fault);
    zmq_msg_close(&f);
    cr_assert_eq(st, PD_OK, "router reply does not decode: %s", fault.reason);
    return 0;
}

static inline void cl_send_generate(const cl_req_t *q)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_GENERATE;
    pd_proto_generate_t *x = &m.u.generate;
    snprintf(x->id, sizeof(x->id), "%.*s", (int)sizeof(x->id) - 1, q->id);
    if (q->text != NULL) {
        x->prompt = q->text;
        x->prompt_bytes = strlen(q->text);
    } else {
        x->tokens = q->prompt;
        x->n_tokens = q->n_prompt;
    }
    x->max_tokens = q->max_tokens;
    x->sampling = q->sampling;
    snprintf(x->tenant, sizeof(x->tenant), "%s", q->tenant);
    x->stop = q->stop;
    x->n_stop = q->n_stop;
    x->cache = q->cache;
    x->stream = true;
    cl_send(&m);
}

static inline cl_req_t *cl_find(cl_req_t *reqs, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(reqs[i].id, id) == 0)
            return &reqs[i];
    cr_assert_fail("reply for unknown id '%s'", id);
    return NULL;
}

/* Take one client message about reqs (n of them) into its request: accepted, a token (in
 * order?), or a terminal one (counted; the first of a request lowers *n_open_p). Returns
 * false for any other type. m stays the caller's to clean up. */
static inline bool cl_take(cl_req_t *reqs, int n, int *n_open_p, const pd_proto_msg_t *m)
{
    cl_req_t *q = NULL;
    switch (m->type) {
    case PD_PROTO_TYPE_ACCEPTED:
        cl_find(reqs, n, m->u.accepted.id)->accepted = true;
        return true;
    case PD_PROTO_TYPE_TOKEN:
        q = cl_find(reqs, n, m->u.token.id);
        if (m->u.token.index != q->n_streamed || q->n_terminal > 0)
            q->order_ok = false;
        if (q->n_streamed < 512)
            q->tokens[q->n_streamed++] = m->u.token.token;
        return true;
    case PD_PROTO_TYPE_DONE:
        q = cl_find(reqs, n, m->u.done.id);
        if (q->n_terminal++ == 0)
            (*n_open_p)--;
        q->done = true;
        q->d = m->u.done;
        for (uint32_t i = 0; i < m->u.done.n_tokens && i < 512; i++)
            q->done_tokens[i] = m->u.done.tokens[i];
        return true;
    case PD_PROTO_TYPE_ERROR:
        q = cl_find(reqs, n, m->u.error.id);
        if (q->n_terminal++ == 0)
            (*n_open_p)--;
        q->err = m->u.error.code;
        return true;
    default:
        return false;
    }
}

/* Send every request, collect until each has its terminal message, then make sure no more
 * messages come for them for a while. */
static inline void cl_generate(cl_req_t *reqs, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++) {
        reqs[i].order_ok = true;
        cl_send_generate(&reqs[i]);
    }
    int n_open = n;
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    uint64_t quiet_end = 0;
    for (;;) {
        uint64_t now = pd_time_now_ms();
        if (n_open == 0 && quiet_end == 0)
            quiet_end = now + 300;
        if ((quiet_end != 0 && now >= quiet_end) || now >= end)
            break;
        pd_proto_msg_t m;
        if (cl_recv(50, &m) < 0)
            continue;
        if (!cl_take(reqs, n, &n_open, &m))
            cr_expect_fail("unexpected %s", pd_proto_type_name(m.type));
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_open, 0, "%d of %d requests got no terminal message", n_open, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(reqs[i].n_terminal, 1, "%s: %d terminal messages", reqs[i].id,
                     reqs[i].n_terminal);
}

/* `pdctl generate --json` for the request: its tokens into out_p, its finish reason into
 * finish_p (16 bytes). */
static inline uint32_t cl_reference(const cl_req_t *q, int32_t *out_p, char *finish_p)
{
    char cmd[8192];
    int len = snprintf(cmd, sizeof(cmd),
                       "%s/pdctl generate -m %s -n %u --temperature %.9g --top-p %.9g "
                       "--seed %llu --threads 1 --json ",
                       g.env.bin, g.env.model, q->max_tokens, q->sampling.temperature,
                       q->sampling.top_p, (unsigned long long)q->sampling.seed);
    for (uint32_t i = 0; i < q->n_stop; i++)
        len +=
            snprintf(cmd + len, sizeof(cmd) - (size_t)len, "%s%d", i ? "," : "--stop ", q->stop[i]);
    if (q->n_stop > 0)
        len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, " ");
    if (q->text != NULL) {
        len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, "-p '%s'", q->text);
    } else {
        len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, "--tokens ");
        for (uint32_t i = 0; i < q->n_prompt; i++)
            len +=
                snprintf(cmd + len, sizeof(cmd) - (size_t)len, "%s%d", i ? "," : "", q->prompt[i]);
    }
    snprintf(cmd + len, sizeof(cmd) - (size_t)len, " 2>/dev/null");
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    cr_assert_eq(pclose(f), 0, "pdctl generate failed: %s", cmd);
    const char *fr = strstr(out, "\"finish_reason\"");
    cr_assert_not_null(fr, "no finish_reason in: %s", out);
    fr = strchr(fr + 15, '"');
    cr_assert_not_null(fr);
    snprintf(finish_p, 16, "%.*s", (int)strcspn(fr + 1, "\""), fr + 1);
    const char *p = strstr(out, "\"tokens\"");
    cr_assert_not_null(p, "no tokens in: %s", out);
    p = strchr(p, '[');
    cr_assert_not_null(p);
    p++;
    uint32_t k = 0;
    while (*p != ']' && *p != '\0' && k < 512) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) {
            p++;
            continue;
        }
        out_p[k++] = (int32_t)v;
        p = e;
    }
    return k;
}

static inline void cl_expect_reference(const cl_req_t *q)
{
    int32_t ref[512];
    char finish[16];
    uint32_t n = cl_reference(q, ref, finish);
    cr_assert(q->done, "%s: no done (error %s)", q->id, pd_status_name(q->err));
    cr_assert(q->accepted, "%s: no accepted", q->id);
    cr_assert(q->order_ok, "%s: tokens out of order", q->id);
    cr_assert_eq(q->n_streamed, n, "%s: %u tokens streamed, pdctl generate made %u", q->id,
                 q->n_streamed, n);
    cr_assert_eq(q->d.n_tokens, n);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(q->tokens[i], ref[i], "%s: token %u is %d, pdctl generate's %d", q->id, i,
                     q->tokens[i], ref[i]);
        cr_assert_eq(q->done_tokens[i], ref[i]);
    }
    cr_expect_eq(q->d.usage.output_tokens, n);
    cr_expect_str_eq(pd_proto_finish_name(q->d.finish_reason), finish, "%s: finish reason", q->id);
}

static inline void cl_expect_free_blocks(int n_workers, bool skip_dead);

/* The router's status must show every block of every worker unreserved. */
static inline void cl_expect_all_free(int n_workers)
{
    cl_expect_free_blocks(n_workers, false);
}

/* The same, for the workers the router still counts as alive. */
static inline void cl_expect_free_blocks(int n_workers, bool skip_dead)
{
    uint64_t end = pd_time_now_ms() + (skip_dead ? 10000 : 3000);
    char why[256] = "";
    for (;;) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATUS;
        cl_send(&m);
        bool ok = false;
        if (cl_recv(1000, &m) == 0) {
            cr_assert_eq(m.type, PD_PROTO_TYPE_STATUS_REPLY);
            const pd_proto_status_reply_t *s = &m.u.status_reply;
            /* A dead worker may be dropped from the list or shown as "dead". */
            ok =
                (skip_dead ? (int)s->n_workers >= n_workers - 1 : (int)s->n_workers == n_workers) &&
                s->requests_in_flight == 0;
            snprintf(why, sizeof(why), "%u workers, %u in flight", s->n_workers,
                     s->requests_in_flight);
            for (uint32_t i = 0; i < s->n_workers; i++) {
                if (skip_dead && strcmp(s->workers[i].state, "ready") != 0)
                    continue;
                if (s->workers[i].free_blocks != s->workers[i].n_blocks) {
                    ok = false;
                    snprintf(why, sizeof(why), "%s: %u of %u blocks free", s->workers[i].id,
                             s->workers[i].free_blocks, s->workers[i].n_blocks);
                }
            }
            pd_proto_msg_cleanup(&m);
        }
        if (ok)
            return;
        if (pd_time_now_ms() >= end)
            break;
        usleep(100000);
    }
    cr_assert_fail("blocks still reserved after the requests ended: %s", why);
}

static inline void cl_req_init(cl_req_t *q, const char *id, uint32_t n_prompt, uint32_t salt,
                               uint32_t max_tokens, double temperature, uint64_t seed)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->id, sizeof(q->id), "%s", id);
    q->n_prompt = n_prompt;
    pd_tc_prompt(q->prompt, n_prompt, salt);
    q->max_tokens = max_tokens;
    q->sampling.temperature = temperature;
    q->sampling.top_p = temperature > 0 ? 0.9 : 1.0;
    q->sampling.seed = seed;
}

#endif
