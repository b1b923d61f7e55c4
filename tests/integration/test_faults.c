/* The fault suite: a real cluster (`pdctl up -d`: pd-router, pd-prefill, pd-decode on
 * loopback) hit the way faults hit it: kill -9 and SIGSTOP of a worker, a client that
 * vanishes. Every case asserts one terminal reply per request, no request left hanging,
 * and every block free afterwards; requests that survive a fault must carry exactly the
 * tokens of an undisturbed run (`pdctl generate`, one process). The model is the `small`
 * preset, slow enough on the CPU that work is still in flight when the fault lands. */
#include "cluster_cl.h"

#include <sys/wait.h>

/* A spare decode worker: a dead one's requests continue there. */
static const char *const fx_1p2d = "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 32\n"
                                   "decode:\n  count: 2\n  threads: 1\n  pool_mb: 32\n"
                                   "  max_batch: 16\n";
static const char *const fx_2p1d = "prefill:\n  count: 2\n  threads: 1\n  pool_mb: 32\n"
                                   "decode:\n  count: 1\n  threads: 1\n  pool_mb: 32\n"
                                   "  max_batch: 16\n";
static const char *const fx_1p1d = "prefill:\n  count: 1\n  threads: 1\n  pool_mb: 32\n"
                                   "decode:\n  count: 1\n  threads: 1\n  pool_mb: 32\n"
                                   "  max_batch: 16\n";

static void fx_up(const char *name, const char *roles)
{
    cl_preset[0] = "small";
    cl_preset[1] = NULL;
    cl_up(name, roles, false);
}

/* The pid `pdctl up` recorded for a role process ("decode-0"). */
static pid_t fx_pid(const char *proc)
{
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "sed -n 's/^proc \\([0-9]*\\) %s .*/\\1/p' %s/*.state", proc,
             g.run_dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    int pid = 0;
    cr_assert_eq(fscanf(f, "%d", &pid), 1, "no pid for %s", proc);
    pclose(f);
    return (pid_t)pid;
}

/* The router's status (caller cleans up). */
static void fx_status(pd_proto_msg_t *m)
{
    for (int tries = 0; tries < 10; tries++) {
        pd_proto_msg_t q;
        memset(&q, 0, sizeof(q));
        q.type = PD_PROTO_TYPE_STATUS;
        cl_send(&q);
        /* Replies of earlier requests may come first: skip to the status. */
        uint64_t end = pd_time_now_ms() + 2000;
        while (pd_time_now_ms() < end) {
            if (cl_recv(200, m) != 0)
                continue;
            if (m->type == PD_PROTO_TYPE_STATUS_REPLY)
                return;
            pd_proto_msg_cleanup(m);
        }
    }
    cr_assert_fail("no status reply");
}

/* A worker's epoch in the status, 0 when it is not listed as ready. */
static uint64_t fx_epoch(const char *worker)
{
    pd_proto_msg_t m;
    fx_status(&m);
    uint64_t e = 0;
    for (uint32_t i = 0; i < m.u.status_reply.n_workers; i++)
        if (strcmp(m.u.status_reply.workers[i].id, worker) == 0 &&
            strcmp(m.u.status_reply.workers[i].state, "ready") == 0)
            e = m.u.status_reply.workers[i].epoch;
    pd_proto_msg_cleanup(&m);
    return e;
}

/* Requests with sampled output (seeded), long enough to be running when the fault hits. */
static void fx_reqs(cl_req_t *reqs, int n, uint32_t max_tokens)
{
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "f%d", i);
        cl_req_init(&reqs[i], id, 20 + (uint32_t)i * 3, (uint32_t)i + 11, max_tokens,
                    i % 3 == 0 ? 0.0 : 0.8, 1000 + (uint64_t)i);
        reqs[i].order_ok = true;
    }
}

/* Read replies until every request has its terminal message or timeout_ms passed; with
 * fault != NULL, call it once when at least min_streamed tokens have been streamed. */
static void fx_collect(cl_req_t *reqs, int n, int timeout_ms, uint32_t min_streamed,
                       void (*fault)(void))
{
    int n_open = n;
    uint32_t streamed = 0;
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    while (n_open > 0 && pd_time_now_ms() < end) {
        if (fault != NULL && streamed >= min_streamed) {
            fault();
            fault = NULL;
        }
        pd_proto_msg_t m;
        if (cl_recv(50, &m) < 0)
            continue;
        cl_req_t *q = NULL;
        switch (m.type) {
        case PD_PROTO_TYPE_ACCEPTED:
            q = cl_find(reqs, n, m.u.accepted.id);
            q->accepted = true;
            if (m.u.accepted.resumed && q->n_terminal > 0) {
                q->replay = true;
            } else if (m.u.accepted.resumed) {
                q->n_resumed++;
                q->resumed_at = m.u.accepted.next_index;
                if (q->resumed_at > q->n_streamed) /* a gap: tokens it never got */
                    q->order_ok = false;
            }
            break;
        case PD_PROTO_TYPE_TOKEN:
            q = cl_find(reqs, n, m.u.token.id);
            if (q->replay) {
                if (m.u.token.index >= q->n_streamed ||
                    q->tokens[m.u.token.index] != m.u.token.token)
                    q->order_ok = false;
                q->n_again++;
                break;
            }
            if (m.u.token.index < q->n_streamed && q->n_resumed > 0 && q->n_terminal == 0) {
                /* Sent again after a router restart: the same token at the same index. */
                if (q->tokens[m.u.token.index] != m.u.token.token)
                    q->order_ok = false;
                q->n_again++;
                break;
            }
            if (m.u.token.index != q->n_streamed || q->n_terminal > 0)
                q->order_ok = false;
            if (q->n_streamed < 512)
                q->tokens[q->n_streamed++] = m.u.token.token;
            streamed++;
            break;
        case PD_PROTO_TYPE_DONE:
            q = cl_find(reqs, n, m.u.done.id);
            if (q->replay && q->done) {
                /* The same end again: equal tokens, or the test fails. */
                if (m.u.done.n_tokens != q->d.n_tokens)
                    q->order_ok = false;
                for (uint32_t i = 0; i < m.u.done.n_tokens && i < 512; i++)
                    if (m.u.done.tokens[i] != q->done_tokens[i])
                        q->order_ok = false;
                q->n_replayed_done++;
                break;
            }
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
            break; /* status replies of a fault's own checks */
        }
        pd_proto_msg_cleanup(&m);
    }
    cr_assert(fault == NULL, "the fault never fired: only %u tokens streamed", streamed);
    cr_assert_eq(n_open, 0, "%d of %d requests hung (no terminal message in %d ms)", n_open, n,
                 timeout_ms);
    /* No second terminal message, no token after it. */
    uint64_t quiet = pd_time_now_ms() + 300;
    while (pd_time_now_ms() < quiet) {
        pd_proto_msg_t m;
        if (cl_recv(50, &m) < 0)
            continue;
        if (m.type == PD_PROTO_TYPE_ACCEPTED && m.u.accepted.resumed)
            cl_find(reqs, n, m.u.accepted.id)->replay = true;
        if (m.type == PD_PROTO_TYPE_DONE || m.type == PD_PROTO_TYPE_ERROR ||
            m.type == PD_PROTO_TYPE_TOKEN) {
            cl_req_t *q = cl_find(reqs, n,
                                  m.type == PD_PROTO_TYPE_DONE    ? m.u.done.id
                                  : m.type == PD_PROTO_TYPE_ERROR ? m.u.error.id
                                                                  : m.u.token.id);
            if (q->replay && m.type != PD_PROTO_TYPE_ERROR)
                q->n_replayed_done += m.type == PD_PROTO_TYPE_DONE; /* a repeat, not a 2nd end */
            else if (m.type == PD_PROTO_TYPE_TOKEN)
                q->order_ok = false;
            else
                q->n_terminal++;
        }
        pd_proto_msg_cleanup(&m);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(reqs[i].n_terminal, 1, "%s: %d terminal messages", reqs[i].id,
                     reqs[i].n_terminal);
}

static uint64_t fx_moved(void)
{
    pd_proto_msg_t m;
    fx_status(&m);
    uint64_t moved = m.u.status_reply.moved_requests;
    pd_proto_msg_cleanup(&m);
    return moved;
}

static uint64_t fx_wait_free(uint64_t since, uint32_t n_workers);
static pid_t fx_victim;
static uint64_t fx_fault_ms;

static void fx_kill9(void)
{
    fx_fault_ms = pd_time_now_ms();
    cr_assert_eq(kill(fx_victim, SIGKILL), 0);
}

static void fx_stop(void)
{
    fx_fault_ms = pd_time_now_ms();
    cr_assert_eq(kill(fx_victim, SIGSTOP), 0);
}

TestSuite(faults, .timeout = 150, .fini = cl_down);

/* kill -9 of a decode worker with a spare: every request completes, each with exactly the
 * tokens of an undisturbed run; the ones it was serving moved and kept streaming. */
Test(faults, decode_kill9_with_a_spare_every_request_completes_exactly)
{
    fx_up("fkd", fx_1p2d);
    fx_victim = fx_pid("decode-0");
    static cl_req_t reqs[8];
    fx_reqs(reqs, 8, 160);
    for (int i = 0; i < 8; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 8, 60000, 40, fx_kill9);
    uint64_t moved = fx_moved();
    for (int i = 0; i < 8; i++)
        cl_expect_reference(&reqs[i]);
    cr_expect_gt(moved, 0, "no request was on the killed worker");
    fprintf(stderr, "decode-0 killed: 8 of 8 done with reference tokens, %llu moved\n",
            (unsigned long long)moved);
    cl_expect_free_blocks(3, true);
    cl_down();
}

/* SIGSTOP of a decode worker past the worker timeout: its requests move on and complete
 * exactly; when it wakes it is told it was dropped, comes back as a new epoch holding
 * nothing of the old one, and every block of every worker is free. */
Test(faults, decode_sigstop_returns_as_a_new_epoch_and_drops_the_old_one)
{
    fx_up("fsd", fx_1p2d);
    fx_victim = fx_pid("decode-0");
    uint64_t epoch0 = fx_epoch("decode-0");
    cr_assert_neq(epoch0, 0);
    static cl_req_t reqs[8];
    fx_reqs(reqs, 8, 160);
    for (int i = 0; i < 8; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 8, 60000, 40, fx_stop);
    for (int i = 0; i < 8; i++)
        cl_expect_reference(&reqs[i]);
    cr_expect_gt(fx_moved(), 0, "no request was on the stopped worker");
    /* Its requests went elsewhere only once the router declared it dead. */
    uint64_t end = pd_time_now_ms() + 10000;
    while (fx_epoch("decode-0") == epoch0 && pd_time_now_ms() < end)
        usleep(100000);
    cr_assert_eq(kill(fx_victim, SIGCONT), 0);
    uint64_t epoch1 = 0;
    end = pd_time_now_ms() + 10000;
    while (((epoch1 = fx_epoch("decode-0")) == 0 || epoch1 == epoch0) && pd_time_now_ms() < end)
        usleep(100000);
    cr_assert(epoch1 != 0 && epoch1 != epoch0, "decode-0 did not come back as a new epoch");
    /* Blocks of requests dropped before their KV came stay out of use until a push into
     * them has surely passed its deadline: the transfer timeout (5 s) + 0.5 s. */
    uint64_t elapsed = fx_wait_free(pd_time_now_ms(), 3);
    cr_assert_leq(elapsed, 5000 + 1000, "blocks back %llu ms after the return",
                  (unsigned long long)elapsed);
    /* And it serves again. */
    cl_req_t q;
    cl_req_init(&q, "after", 25, 3, 12, 0.0, 2);
    cl_generate(&q, 1, 20000);
    cl_expect_reference(&q);
    cl_down();
}

/* kill -9 of a prefill worker: requests it had not finished go to the other one. */
Test(faults, prefill_kill9_every_request_completes_exactly)
{
    fx_up("fkp", fx_2p1d);
    fx_victim = fx_pid("prefill-0");
    static cl_req_t reqs[8];
    fx_reqs(reqs, 8, 40);
    for (int i = 0; i < 8; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 8, 60000, 0, fx_kill9);
    uint64_t moved = fx_moved();
    for (int i = 0; i < 8; i++)
        cl_expect_reference(&reqs[i]);
    cr_expect_gt(moved, 0, "no request was on the killed worker");
    fprintf(stderr, "prefill-0 killed: 8 of 8 done with reference tokens, %llu moved\n",
            (unsigned long long)moved);
    cl_expect_free_blocks(3, true);
    cl_down();
}

static void fx_pause_2s(void)
{
    fx_fault_ms = pd_time_now_ms();
    cr_assert_eq(kill(fx_victim, SIGSTOP), 0);
    usleep(2000000);
    cr_assert_eq(kill(fx_victim, SIGCONT), 0);
}

/* SIGSTOP of the router for 2 s, then SIGCONT: nothing is lost, the streams go on. */
Test(faults, router_sigstop_loses_nothing)
{
    fx_up("fsr", fx_1p1d);
    fx_victim = fx_pid("router");
    static cl_req_t reqs[6];
    fx_reqs(reqs, 6, 120);
    for (int i = 0; i < 6; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 6, 60000, 20, fx_pause_2s);
    for (int i = 0; i < 6; i++)
        cl_expect_reference(&reqs[i]);
    cl_expect_all_free(2);
    cl_down();
}

/* A client process that sends a long request and is killed while it streams: the
 * request stops and its blocks are back within a second. */
Test(faults, client_kill9_blocks_back_within_a_second)
{
    fx_up("fcv", fx_1p1d);
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        /* The vanishing client: its own context and socket, nothing inherited in use. */
        void *ctx = zmq_ctx_new();
        void *sock = zmq_socket(ctx, ZMQ_DEALER);
        if (sock == NULL || zmq_connect(sock, g.client_ep) != 0)
            _exit(2);
        pd_mp_writer_t w;
        pd_mp_writer_init(&w);
        static int32_t prompt[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        pd_proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PD_PROTO_TYPE_GENERATE;
        snprintf(m.u.generate.id, sizeof(m.u.generate.id), "gone");
        m.u.generate.tokens = prompt;
        m.u.generate.n_tokens = 10;
        m.u.generate.max_tokens = 1500;
        m.u.generate.sampling.temperature = 0.8; /* 560 tokens before its EOS */
        m.u.generate.sampling.top_p = 0.9;
        m.u.generate.sampling.seed = 3;
        m.u.generate.stream = true;
        if (pd_proto_encode(&m, &w) != PD_OK ||
            zmq_send(sock, pd_mp_writer_data(&w), pd_mp_writer_size(&w), 0) < 0)
            _exit(3);
        int n_tokens = 0;
        while (n_tokens < 20) {
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, sock, 0) < 0)
                _exit(4);
            pd_proto_msg_t r;
            pd_proto_fault_t fault;
            if (pd_proto_decode(&r, PD_PROTO_CHAN_CLIENT, zmq_msg_data(&f), zmq_msg_size(&f),
                                &fault) == PD_OK) {
                if (r.type == PD_PROTO_TYPE_TOKEN)
                    n_tokens++;
                else if (r.type == PD_PROTO_TYPE_DONE || r.type == PD_PROTO_TYPE_ERROR)
                    _exit(5);
                pd_proto_msg_cleanup(&r);
            }
            zmq_msg_close(&f);
        }
        if (write(ready[1], "r", 1) != 1)
            _exit(6);
        pause(); /* streaming on, until killed */
        _exit(0);
    }
    close(ready[1]);
    char c = 0;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the client never streamed");
    close(ready[0]);
    pd_proto_msg_t m;
    fx_status(&m);
    cr_assert_eq(m.u.status_reply.requests_in_flight, 1, "the request is not running");
    pd_proto_msg_cleanup(&m);

    uint64_t t0 = pd_time_now_ms();
    cr_assert_eq(kill(child, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    bool freed = false;
    uint64_t gone = 0;
    uint64_t elapsed = 0;
    while (!freed && (elapsed = pd_time_now_ms() - t0) < 3000) {
        fx_status(&m);
        const pd_proto_status_reply_t *s = &m.u.status_reply;
        freed = s->requests_in_flight == 0;
        for (uint32_t i = 0; i < s->n_workers; i++)
            freed = freed && s->workers[i].free_blocks == s->workers[i].n_blocks;
        gone = s->client_gone_requests;
        pd_proto_msg_cleanup(&m);
        if (!freed)
            usleep(20000);
    }
    fprintf(stderr, "client killed: request ended and blocks back after %llu ms\n",
            (unsigned long long)elapsed);
    cr_assert(freed, "blocks still held %llu ms after the client died",
              (unsigned long long)elapsed);
    cr_assert_lt(elapsed, 1000, "blocks back after %llu ms", (unsigned long long)elapsed);
    cr_assert_eq(gone, 1, "the router counts %llu requests of departed clients",
                 (unsigned long long)gone);
    cl_down();
}

/* The P-D link in network namespaces (UCX over TCP, as between machines): pdctl up puts
 * each role in its own namespace; iptables in the decode worker's namespace drops what
 * comes from or goes to the prefill worker's address (tc netem is not in this kernel). */
static char fx_ns_decode[32], fx_ip_prefill[32];

static void fx_netns_up(const char *name, const char *roles)
{
    if (geteuid() != 0)
        cr_skip_test("network namespaces need root");
    if (system("ip netns add pdkv-probe >/dev/null 2>&1 && ip netns del pdkv-probe") != 0)
        cr_skip_test("'ip netns' does not work here");
    if (system("iptables --version >/dev/null 2>&1") != 0)
        cr_skip_test("iptables is not installed (deploy/install-deps.sh installs it)");
    char yaml[1024];
    int sub = 100 + (int)(getpid() % 100);
    snprintf(yaml, sizeof(yaml),
             "%snetwork:\n  namespaces: true\n  subnet: 10.%d.9\n  base_port: %d\n"
             "  host: 127.0.0.1\n",
             roles, sub, 20000 + (int)(getpid() % 20000));
    cl_preset[0] = "small";
    cl_preset[1] = NULL;
    cl_up(name, yaml, true);
    char cmd[PATH_MAX + 256];
    snprintf(cmd, sizeof(cmd), "sed -n 's/^proc [0-9]* decode-0 \\([^ ]*\\).*/\\1/p' %s/*.state",
             g.run_dir);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(fx_ns_decode, sizeof(fx_ns_decode), f));
    pclose(f);
    fx_ns_decode[strcspn(fx_ns_decode, "\n")] = '\0';
    snprintf(cmd, sizeof(cmd),
             "ip -n $(sed -n 's/^proc [0-9]* prefill-0 \\([^ ]*\\).*/\\1/p' %s/*.state) -4 -o "
             "addr show scope global | awk '{print $4}' | cut -d/ -f1",
             g.run_dir);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(fx_ip_prefill, sizeof(fx_ip_prefill), f));
    pclose(f);
    fx_ip_prefill[strcspn(fx_ip_prefill, "\n")] = '\0';
    cr_assert(fx_ns_decode[0] != '\0' && fx_ip_prefill[0] != '\0', "namespace or address");
}

/* Drop the P-D link's packets in both directions, all of them (match "") or a random
 * share ("-m statistic --mode random --probability 0.3"); on == false removes the rules. */
static void fx_pd_link(bool on, const char *match)
{
    char cmd[512];
    const char *op = on ? "-A" : "-D";
    snprintf(cmd, sizeof(cmd),
             "ip netns exec %s iptables %s INPUT -s %s %s -j DROP && "
             "ip netns exec %s iptables %s OUTPUT -d %s %s -j DROP",
             fx_ns_decode, op, fx_ip_prefill, match, fx_ns_decode, op, fx_ip_prefill, match);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Milliseconds from since until the router shows n_workers workers, nothing in flight and
 * every block free; fails after 15 s. */
static uint64_t fx_wait_free(uint64_t since, uint32_t n_workers)
{
    bool freed = false;
    uint64_t elapsed = 0;
    char why[128] = "";
    while (!freed && (elapsed = pd_time_now_ms() - since) < 15000) {
        pd_proto_msg_t m;
        fx_status(&m);
        const pd_proto_status_reply_t *s = &m.u.status_reply;
        freed = s->requests_in_flight == 0 && s->n_workers == n_workers;
        snprintf(why, sizeof(why), "%u in flight, %u workers", s->requests_in_flight, s->n_workers);
        for (uint32_t i = 0; i < s->n_workers; i++) {
            if (s->workers[i].free_blocks != s->workers[i].n_blocks) {
                freed = false;
                snprintf(why, sizeof(why), "%s: %u of %u blocks free", s->workers[i].id,
                         s->workers[i].free_blocks, s->workers[i].n_blocks);
            }
        }
        pd_proto_msg_cleanup(&m);
        if (!freed)
            usleep(50000);
    }
    cr_assert(freed, "not free %llu ms on: %s", (unsigned long long)elapsed, why);
    return elapsed;
}

static void fx_cut(void)
{
    fx_fault_ms = pd_time_now_ms();
    fx_pd_link(true, "");
}

/* An 8 s partition of the P-D link while requests are being sent: each request ends
 * exactly once (done, or an error once the push passed the transfer timeout), and the
 * blocks are back within the transfer timeout + 1 s of the link healing. */
Test(faults, pd_link_partition_8s_blocks_back_after_heal)
{
    fx_netns_up("fpp", fx_1p1d);
    static cl_req_t reqs[6];
    fx_reqs(reqs, 6, 24);
    fx_cut();
    for (int i = 0; i < 6; i++)
        cl_send_generate(&reqs[i]);
    usleep(8000000);
    fx_pd_link(false, "");
    uint64_t heal = pd_time_now_ms();
    fx_collect(reqs, 6, 30000, 0, NULL);
    int n_done = 0;
    for (int i = 0; i < 6; i++) {
        if (reqs[i].done) {
            cl_expect_reference(&reqs[i]);
            n_done++;
        }
    }
    uint64_t elapsed = fx_wait_free(heal, 2);
    fprintf(stderr, "P-D partition 8 s: %d done, %d errors; blocks back %llu ms after the heal\n",
            n_done, 6 - n_done, (unsigned long long)elapsed);
    cr_assert_leq(elapsed, 5000 + 1000,
                  "blocks back %llu ms after the heal (transfer timeout "
                  "5000 ms + 1 s)",
                  (unsigned long long)elapsed);
    cl_req_t q;
    cl_req_init(&q, "after", 25, 3, 12, 0.0, 2);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
    cl_down();
}

/* 30% of the P-D link's packets dropped at random: TCP carries the KV through or the push
 * fails by its timeout; either way one terminal reply each, exact tokens for the ones
 * done, and every block free afterwards. */
Test(faults, pd_link_30pct_loss_every_request_ends_once)
{
    fx_netns_up("fpl", fx_1p1d);
    static cl_req_t reqs[6];
    fx_reqs(reqs, 6, 24);
    fx_pd_link(true, "-m statistic --mode random --probability 0.3");
    for (int i = 0; i < 6; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 6, 60000, 0, NULL);
    uint64_t end = pd_time_now_ms();
    fx_pd_link(false, "-m statistic --mode random --probability 0.3");
    int n_done = 0;
    for (int i = 0; i < 6; i++) {
        if (reqs[i].done) {
            cl_expect_reference(&reqs[i]);
            n_done++;
        } else {
            fprintf(stderr, "  %s: %s\n", reqs[i].id, pd_status_name(reqs[i].err));
        }
    }
    uint64_t elapsed = fx_wait_free(end, 2);
    fprintf(stderr,
            "P-D link 30%% loss: %d done, %d errors; blocks back %llu ms after the last "
            "reply\n",
            n_done, 6 - n_done, (unsigned long long)elapsed);
    cr_assert_leq(elapsed, 5000 + 1000, "blocks back %llu ms after the last reply",
                  (unsigned long long)elapsed);
    cl_down();
}

/* kill -9 of the router mid-stream and a restart with the same command line, as a
 * supervisor would: the new router reads the journal of the old one and goes on with
 * every request in flight once its client is back; the workers register again and drop
 * what they held for the old router. */
static char fx_router_argv_buf[8192];
static char *fx_router_argv[128];
static pid_t fx_router2;
static uint64_t fx_restart_ms;

static void fx_router_restart(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)fx_victim);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(fx_router_argv_buf, 1, sizeof(fx_router_argv_buf) - 1, f);
    fclose(f);
    int argc = 0;
    for (size_t i = 0; i < n && argc < 127; i += strlen(fx_router_argv_buf + i) + 1)
        fx_router_argv[argc++] = fx_router_argv_buf + i;
    fx_router_argv[argc] = NULL;
    cr_assert_gt(argc, 1);
    fx_fault_ms = pd_time_now_ms();
    cr_assert_eq(kill(fx_victim, SIGKILL), 0);
    int st;
    waitpid(fx_victim, &st, WNOHANG);
    usleep(200000);
    char log[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/router-restarted.log", g.run_dir);
    fx_router2 = fork();
    cr_assert_geq(fx_router2, 0);
    if (fx_router2 == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(fx_router_argv[0], fx_router_argv);
        _exit(127);
    }
    fx_restart_ms = pd_time_now_ms();
}

static void fx_router2_stop(void)
{
    if (fx_router2 > 0) {
        kill(fx_router2, SIGTERM);
        if (pd_tc_wait(fx_router2, 5000) < 0)
            kill(fx_router2, SIGKILL);
        fx_router2 = 0;
    }
    cl_down();
}

/* kill -9 of the router while every request streams, and a new router on the same
 * journal: each request goes on from the tokens its client has and ends with the tokens
 * of an undisturbed run, none missing and none out of place. */
Test(faults, router_kill9_and_restart_during_streaming_loses_no_request, .fini = fx_router2_stop)
{
    fx_up("fkr", fx_1p1d);
    fx_victim = fx_pid("router");
    static cl_req_t reqs[6];
    fx_reqs(reqs, 6, 200);
    for (int i = 0; i < 6; i++)
        cl_send_generate(&reqs[i]);
    fx_collect(reqs, 6, 60000, 300, fx_router_restart);
    int n_done_before = 0, n_resumed = 0;
    uint32_t n_again = 0;
    for (int i = 0; i < 6; i++) {
        cl_expect_reference(&reqs[i]);
        cr_expect_leq(reqs[i].n_resumed, 1, "%s: resumed %u times", reqs[i].id, reqs[i].n_resumed);
        n_resumed += reqs[i].n_resumed > 0;
        n_done_before += reqs[i].n_resumed == 0;
        n_again += reqs[i].n_again;
        if (reqs[i].n_resumed > 0)
            fprintf(stderr, "  %s: went on from token %u, %u sent again\n", reqs[i].id,
                    reqs[i].resumed_at, reqs[i].n_again);
        if (reqs[i].n_replayed_done > 0)
            fprintf(stderr, "  %s: ended just before the kill, ended again (same tokens)\n",
                    reqs[i].id);
    }
    fprintf(stderr,
            "router killed and restarted: 6 of 6 done with reference tokens (%d went "
            "on after the restart, %d ended before it, %u tokens sent again)\n",
            n_resumed, n_done_before, n_again);
    cr_assert_gt(n_resumed, 0, "no request was in flight at the kill");
    /* The workers dropped what they held for the old router; every block comes back. */
    uint64_t free_ms = fx_wait_free(fx_restart_ms, 2);
    fprintf(stderr, "router restarted: every block free %llu ms after the restart\n",
            (unsigned long long)free_ms);
    cr_assert_leq(free_ms, 5000 + 2000, "blocks back %llu ms after the restart",
                  (unsigned long long)free_ms);
    cl_req_t q;
    cl_req_init(&q, "after", 25, 3, 12, 0.0, 2);
    cl_generate(&q, 1, 30000);
    cl_expect_reference(&q);
}
