/* pd-kvbench: the transfer fabric's microbenchmark.
 *
 * Two processes, one sending and one receiving (forked; descriptors cross a socketpair),
 * move fresh data from pools larger than the caches (512 MiB each by default, walked
 * block range by block range) and report bandwidth and per-batch latency over block
 * size, blocks per batch, layers and transport, beside ucx_perftest's figure for the
 * same transport and size from the same run, and a memcpy of uncached data. */
#include "pd/log.h"
#include "pd/mp.h"
#include "pd/time.h"
#include "pd/xfer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define KB_MAX_LIST    16
#define KB_RECV_WINDOW 64u /* expectations the receiver keeps ahead of the sender */

typedef struct kb_transport {
    char name[16];
    const char *tls;
    char tx_devices[32]; /* sender's UCX_NET_DEVICES ("" for all) */
    char rx_devices[32]; /* receiver's */
    char netns[32];      /* receiver's namespace ("" for none) */
    char rx_host[32];    /* receiver's address for ucx_perftest */
} kb_transport_t;

typedef struct kb_opts {
    size_t pool_bytes;
    size_t block_sizes[KB_MAX_LIST];
    int n_block_sizes;
    uint32_t blocks[KB_MAX_LIST];
    int n_blocks;
    uint32_t layers[KB_MAX_LIST];
    int n_layers;
    char transports[KB_MAX_LIST][16];
    int n_transports;
    int checksum_modes[2]; /* 1 on, 0 off */
    int n_checksum_modes;
    int coalesce_modes[2];
    int n_coalesce_modes;
    uint32_t window;
    double point_bytes;
    double max_seconds;
    int repeats;
    bool perftest;
    bool spin;
    bool register_pool;
    const char *perftest_test;
    const char *json_path;
    const char *plot_path;
} kb_opts_t;

typedef struct kb_point {
    char transport[16];
    size_t block_bytes;
    uint32_t blocks, layers;
    bool checksum, coalesce;
    uint64_t batches, failed;
    uint64_t ops_per_batch;
    double gbps;           /* median over repeats, 1e9 bytes per second */
    double p50_us, p99_us; /* batch latency, begin to acknowledged */
    double perftest_gbps;  /* ucx_perftest, same transport, size = block size */
    double memcpy_gbps;
} kb_point_t;

/* ---- small utilities ---- */

static int kb_parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        return -1;
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024;
        end++;
        break;
    case 'm':
    case 'M':
        v *= 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        v *= 1024.0 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = (size_t)v;
    return 0;
}

static int kb_parse_list(const char *arg, char items[][16], int max)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    int n = 0;
    for (char *t = strtok(buf, ","); t != NULL && n < max; t = strtok(NULL, ","))
        snprintf(items[n++], 16, "%s", t);
    return n;
}

static const char *kb_size_str(size_t b, char *buf, size_t n)
{
    if (b >= (1u << 20) && b % (1u << 20) == 0)
        snprintf(buf, n, "%zuM", b >> 20);
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(buf, n, "%zuK", b >> 10);
    else
        snprintf(buf, n, "%zu", b);
    return buf;
}

static int kb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double kb_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), kb_cmp_double);
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i >= n ? n - 1 : i];
}

static bool kb_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool kb_read_all(int fd, void *buf, size_t n, int timeout_ms)
{
    char *p = buf;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t got = read(fd, p, n);
        if (got <= 0)
            return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

/* Pool memory with every page touched, so that no first-touch fault lands in a timing. */
static uint8_t *kb_pool_alloc(size_t bytes, uint8_t seed)
{
    uint8_t *p = aligned_alloc(1u << 21, bytes); /* (bytes) */
    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < bytes; i += 4096)
        memset(p + i, (int)(seed + i / 4096), 4096 < bytes - i ? 4096 : bytes - i);
    return p;
}

/* The engine's pool: allocated by the fabric (shared memory that a local peer maps), or
 * with --register plain memory registered with it. Every page is touched. */
static int kb_pool_open(pd_xfer_engine_t *engine, size_t bytes, uint8_t seed, bool register_pool,
                        uint8_t **pool_p)
{
    uint8_t *pool = NULL;
    if (register_pool) {
        pool = kb_pool_alloc(bytes, seed);
        if (pool == NULL || pd_xfer_mem_register(engine, pool, bytes, NULL) != PD_OK) {
            free(pool);
            return -1;
        }
    } else {
        void *base = NULL;
        if (pd_xfer_mem_alloc(engine, bytes, NULL, &base) != PD_OK)
            return -1;
        pool = base;
        for (size_t i = 0; i < bytes; i += 4096)
            memset(pool + i, (int)(seed + i / 4096), 4096 < bytes - i ? 4096 : bytes - i);
    }
    *pool_p = pool;
    return 0;
}

/* ---- the receiving process ---- */

typedef struct kb_cmd {
    uint32_t op; /* 1 start, 2 stop, 3 quit */
    uint32_t pad;
    uint64_t first_id;
    uint64_t n;
} kb_cmd_t;

typedef struct kb_reply {
    uint64_t n_ok, n_failed;
} kb_reply_t;

/* Keep the window of expectations full, in id order. */
static int kb_child_fill(pd_xfer_engine_t *engine, pd_xfer_recv_t **win, uint64_t *next_p,
                         uint64_t end, uint64_t settled, const pd_xfer_range_t *all)
{
    uint64_t next = *next_p;
    while (next < end && next < settled + KB_RECV_WINDOW && win[next % KB_RECV_WINDOW] == NULL) {
        if (pd_xfer_recv_expect(engine, next, all, 1, 0, &win[next % KB_RECV_WINDOW]) != PD_OK)
            return -1;
        next++;
    }
    *next_p = next;
    return 0;
}

static int kb_child_main(int sock, const kb_transport_t *t, bool checksum, size_t pool_bytes,
                         bool register_pool)
{
    if (t->netns[0] != '\0') {
        char path[96];
        snprintf(path, sizeof(path), "/var/run/netns/%s", t->netns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
            fprintf(stderr, "pd-kvbench: cannot enter namespace %s: %s\n", t->netns,
                    strerror(errno));
            return 2;
        }
        close(fd);
    }
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.transports = t->tls;
    cfg.net_devices = t->rx_devices[0] ? t->rx_devices : NULL;
    cfg.verify_checksums = checksum;
    cfg.timeout_ms = 30000;
    pd_xfer_engine_t *engine = NULL;
    uint8_t *pool = NULL; /* (pool_bytes) */
    if (pd_xfer_engine_create(&cfg, &engine) != PD_OK ||
        kb_pool_open(engine, pool_bytes, 0, register_pool, &pool) != 0)
        return 2;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_xfer_desc_export(engine, &w);
    uint32_t len = (uint32_t)pd_mp_writer_size(&w);
    if (!kb_write_all(sock, &len, sizeof(len)) || !kb_write_all(sock, pd_mp_writer_data(&w), len))
        return 2;
    pd_mp_writer_cleanup(&w);
    pd_xfer_recv_t *win[KB_RECV_WINDOW] = {0}; /* recv of id i at i % window */
    pd_xfer_range_t all = {.offset = 0, .bytes = pool_bytes};
    uint64_t first = 0, end = 0, next = 0, n_ok = 0, n_failed = 0;
    int efd = -1;
    pd_xfer_engine_fd(engine, &efd);
    for (;;) {
        pd_xfer_engine_progress(engine);
        for (uint32_t i = 0; i < KB_RECV_WINDOW; i++) {
            pd_xfer_recv_t *r = win[i];
            if (r == NULL || pd_xfer_recv_status(r) == PD_INPROGRESS)
                continue;
            if (pd_xfer_recv_status(r) == PD_OK)
                n_ok++;
            else
                n_failed++;
            pd_xfer_recv_destroy(&win[i]);
        }
        if (kb_child_fill(engine, win, &next, end, first + n_ok + n_failed, &all) != 0)
            return 3;
        struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
        if (pd_xfer_engine_arm(engine) == PD_OK)
            pfd[1].fd = efd;
        else
            continue;
        if (poll(pfd, 2, getenv("KB_RX_SPIN") ? 0 : 1) <= 0 || !(pfd[0].revents & (POLLIN | POLLHUP)))
            continue;
        kb_cmd_t cmd;
        if (!kb_read_all(sock, &cmd, sizeof(cmd), 1000) || cmd.op == 3)
            break;
        if (cmd.op == 1) {
            first = next = cmd.first_id;
            end = cmd.first_id + cmd.n;
            n_ok = n_failed = 0;
            /* Expect before answering: the sender starts on our answer. */
            if (kb_child_fill(engine, win, &next, end, first, &all) != 0)
                return 3;
        } else if (cmd.op == 2) {
            for (uint32_t i = 0; i < KB_RECV_WINDOW; i++)
                pd_xfer_recv_destroy(&win[i]);
            kb_reply_t rep = {n_ok, n_failed};
            end = next;
            kb_write_all(sock, &rep, sizeof(rep));
            continue;
        }
        uint8_t ok = 1;
        kb_write_all(sock, &ok, 1);
    }
    for (uint32_t i = 0; i < KB_RECV_WINDOW; i++)
        pd_xfer_recv_destroy(&win[i]);
    pd_xfer_mem_deregister(engine);
    pd_xfer_engine_destroy(&engine);
    if (register_pool)
        free(pool);
    return 0;
}

/* ---- the sending process ---- */

typedef struct kb_link {
    pid_t child;
    int sock;
    pd_xfer_engine_t *engine;
    pd_xfer_peer_t *peer;
    uint8_t *pool; /* (pool_bytes) sender's pool */
    bool register_pool;
    int efd;
    uint64_t next_id;
} kb_link_t;

static int kb_link_open(kb_link_t *link, const kb_transport_t *t, bool checksum, bool coalesce,
                        size_t pool_bytes, bool register_pool)
{
    memset(link, 0, sizeof(*link));
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(sv[0]);
        _exit(kb_child_main(sv[1], t, checksum, pool_bytes, register_pool));
    }
    close(sv[1]);
    link->child = pid;
    link->sock = sv[0];
    link->register_pool = register_pool;
    link->next_id = 1;
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.transports = t->tls;
    cfg.net_devices = t->tx_devices[0] ? t->tx_devices : NULL;
    cfg.verify_checksums = checksum;
    cfg.coalesce = coalesce;
    cfg.timeout_ms = 30000;
    if (pd_xfer_engine_create(&cfg, &link->engine) != PD_OK ||
        kb_pool_open(link->engine, pool_bytes, 1, register_pool, &link->pool) != 0)
        return -1;
    uint32_t len = 0;
    if (!kb_read_all(link->sock, &len, sizeof(len), 30000) || len > (1u << 20))
        return -1;
    void *desc = malloc(len);
    if (desc == NULL || !kb_read_all(link->sock, desc, len, 5000)) {
        free(desc);
        return -1;
    }
    pd_status_t st = pd_xfer_peer_connect(link->engine, desc, len, &link->peer);
    free(desc);
    pd_xfer_engine_fd(link->engine, &link->efd);
    return st == PD_OK ? 0 : -1;
}

static void kb_link_close(kb_link_t *link)
{
    if (link->sock > 0) {
        kb_cmd_t cmd = {.op = 3};
        kb_write_all(link->sock, &cmd, sizeof(cmd));
        close(link->sock);
    }
    pd_xfer_peer_disconnect(&link->peer);
    if (link->engine != NULL)
        pd_xfer_mem_deregister(link->engine);
    pd_xfer_engine_destroy(&link->engine);
    if (link->register_pool)
        free(link->pool);
    link->pool = NULL;
    if (link->child > 0) {
        for (int i = 0; i < 500; i++) {
            if (waitpid(link->child, NULL, WNOHANG) == link->child) {
                link->child = 0;
                break;
            }
            usleep(10000);
        }
        if (link->child > 0) {
            kill(link->child, SIGKILL);
            waitpid(link->child, NULL, 0);
        }
    }
}

/* Issue one batch: per layer, blocks consecutive blocks starting at first_block. */
static pd_status_t kb_batch_issue(kb_link_t *link, const pd_kv_layout_t *l, uint32_t first_block,
                                  uint32_t blocks, uint64_t id, pd_xfer_seg_t *segs,
                                  pd_xfer_send_t **send_p)
{
    pd_xfer_send_t *send = NULL;
    pd_status_t st = pd_xfer_send_begin(link->peer, id, NULL, 0, 0, &send);
    if (st != PD_OK)
        return st;
    size_t bl = pd_kv_block_layer_bytes(l);
    for (uint32_t layer = 0; layer < l->n_layers && st == PD_OK; layer++) {
        for (uint32_t b = 0; b < blocks; b++) {
            segs[b].local_offset = pd_kv_offset(l, layer, first_block + b);
            segs[b].remote_offset = segs[b].local_offset;
            segs[b].bytes = bl;
        }
        st = pd_xfer_send_post(send, segs, blocks);
    }
    const int32_t first_token = 1;
    if (st == PD_OK)
        st = pd_xfer_send_finish(send, &first_token, sizeof(first_token));
    if (st != PD_OK) {
        pd_xfer_send_destroy(&send);
        return st;
    }
    *send_p = send;
    return PD_OK;
}

/* One measurement: returns 0 and fills gbps, latencies and counts. */
static int kb_run_point(kb_link_t *link, const kb_opts_t *o, kb_point_t *pt, double *gbps_p)
{
    pd_kv_layout_t l = {
        .n_layers = pt->layers, .n_kv_heads = 1, .head_dim = 0, .block_tokens = 1, .n_blocks = 0};
    /* Block bytes = 2 * block_tokens * n_kv_heads * head_dim * 4. */
    l.head_dim = (uint32_t)(pt->block_bytes / 8);
    l.n_blocks = (uint32_t)(o->pool_bytes / ((size_t)pt->layers * pt->block_bytes));
    if (l.n_blocks < pt->blocks)
        return -1;
    double batch_bytes = (double)pt->block_bytes * pt->blocks * pt->layers;
    uint64_t n_batches = (uint64_t)ceil(o->point_bytes / batch_bytes);
    if (n_batches < 8)
        n_batches = 8;
    kb_cmd_t cmd = {.op = 1, .first_id = link->next_id, .n = n_batches};
    uint8_t ok = 0;
    if (!kb_write_all(link->sock, &cmd, sizeof(cmd)) || !kb_read_all(link->sock, &ok, 1, 10000))
        return -1;
    pd_xfer_seg_t *segs = malloc(pt->blocks * sizeof(*segs));
    double *lat = malloc(n_batches * sizeof(*lat));
    pd_xfer_send_t **slot = calloc(o->window, sizeof(*slot));
    uint64_t *slot_t0 = calloc(o->window, sizeof(*slot_t0));
    if (segs == NULL || lat == NULL || slot == NULL || slot_t0 == NULL)
        return -1;
    pd_xfer_stats_t s0, s1;
    pd_xfer_engine_stats(link->engine, &s0);
    uint64_t issued = 0, done = 0, failed = 0;
    uint32_t cursor = 0, in_flight = 0;
    const uint64_t t_start = pd_time_now_ns();
    const uint64_t t_stop = t_start + (uint64_t)(o->max_seconds * 1e9);
    const uint64_t t_abort = t_start + (uint64_t)((o->max_seconds + 30) * 1e9);
    int rc = 0;
    for (;;) {
        uint64_t now = pd_time_now_ns();
        bool more = issued < n_batches && now < t_stop;
        for (uint32_t i = 0; i < o->window && more; i++) {
            if (slot[i] != NULL)
                continue;
            if (cursor + pt->blocks > l.n_blocks)
                cursor = 0; /* wrap: cycle through the whole pool */
            if (kb_batch_issue(link, &l, cursor, pt->blocks, link->next_id + issued, segs,
                               &slot[i]) != PD_OK) {
                rc = -1;
                goto out;
            }
            slot_t0[i] = pd_time_now_ns();
            cursor += pt->blocks;
            issued++;
            in_flight++;
            more = issued < n_batches && now < t_stop;
        }
        pd_xfer_engine_progress(link->engine);
        for (uint32_t i = 0; i < o->window; i++) {
            if (slot[i] == NULL || pd_xfer_send_status(slot[i]) == PD_INPROGRESS)
                continue;
            if (pd_xfer_send_status(slot[i]) != PD_OK)
                failed++;
            lat[done++] = (double)(pd_time_now_ns() - slot_t0[i]) / 1000.0;
            pd_xfer_send_destroy(&slot[i]);
            in_flight--;
        }
        if (in_flight == 0 && !(issued < n_batches && pd_time_now_ns() < t_stop))
            break;
        /* Window full: sleep on the fabric's fd rather than spin, leaving the cores to the
         * receiver (the way an event loop would wait). */
        if (!o->spin && in_flight == o->window && pd_xfer_engine_arm(link->engine) == PD_OK) {
            struct pollfd pfd = {.fd = link->efd, .events = POLLIN};
            poll(&pfd, 1, 1);
        }
        if (pd_time_now_ns() > t_abort) {
            fprintf(stderr, "pd-kvbench: point stuck, abandoning it\n");
            rc = -1;
            goto out;
        }
    }
    double secs = (double)(pd_time_now_ns() - t_start) / 1e9;
    pd_xfer_engine_stats(link->engine, &s1);
    *gbps_p = batch_bytes * (double)(done - failed) / secs / 1e9;
    pt->batches = done;
    pt->failed = failed;
    pt->ops_per_batch = done ? (s1.n_ops_issued - s0.n_ops_issued) / done : 0;
    pt->p50_us = kb_percentile(lat, done, 0.50);
    pt->p99_us = kb_percentile(lat, done, 0.99);
out:
    for (uint32_t i = 0; i < o->window; i++)
        pd_xfer_send_destroy(&slot[i]);
    link->next_id += n_batches;
    cmd.op = 2;
    kb_reply_t rep;
    if (!kb_write_all(link->sock, &cmd, sizeof(cmd)) ||
        !kb_read_all(link->sock, &rep, sizeof(rep), 30000))
        rc = -1;
    else if (rep.n_failed > 0)
        pt->failed += rep.n_failed;
    free(segs);
    free(lat);
    free(slot);
    free(slot_t0);
    return rc;
}

/* ---- comparison points ---- */

/* Copy the whole pool into another buffer of the same size, chunk by chunk: the rate of a
 * memcpy of data that is not in cache. Median of reps, in 1e9 bytes per second. */
static double kb_memcpy_gbps(const uint8_t *src, size_t bytes, size_t chunk, int reps)
{
    uint8_t *dst = kb_pool_alloc(bytes, 3); /* (bytes) */
    if (dst == NULL)
        return 0;
    double r[8];
    if (reps > 8)
        reps = 8;
    for (int k = 0; k < reps; k++) {
        uint64_t t0 = pd_time_now_ns();
        for (size_t off = 0; off + chunk <= bytes; off += chunk)
            memcpy(dst + off, src + off, chunk);
        r[k] = (double)(bytes - bytes % chunk) / ((double)(pd_time_now_ns() - t0));
    }
    free(dst);
    return kb_percentile(r, (size_t)reps, 0.5);
}

static int kb_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static pid_t kb_spawn(char *const argv[], const char *tls, const char *devices, int out_fd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("UCX_TLS", tls, 1);
        if (devices != NULL && devices[0] != '\0')
            setenv("UCX_NET_DEVICES", devices, 1);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(out_fd >= 0 ? out_fd : devnull, 1);
        dup2(devnull, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void kb_reap(pid_t pid, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ucx_perftest as a server and client pair; the "Final:" line's overall bandwidth
 * (MB/s of 2^20 bytes) in 1e9 bytes per second, or 0 when it could not run. */
static double kb_perftest_gbps(const kb_opts_t *o, const kb_transport_t *t, size_t size)
{
    char port[16], size_s[32], iters[32];
    snprintf(port, sizeof(port), "%d", kb_free_port());
    snprintf(size_s, sizeof(size_s), "%zu", size);
    double n = o->point_bytes / (double)size;
    snprintf(iters, sizeof(iters), "%.0f", n < 1000 ? 1000 : n > 200000 ? 200000 : n);
    char *server_plain[] = {"ucx_perftest", "-p", port, NULL};
    char *server_ns[] = {"ip", "netns", "exec", (char *)t->netns, "ucx_perftest", "-p", port, NULL};
    pid_t server = kb_spawn(t->netns[0] ? server_ns : server_plain, t->tls, t->rx_devices, -1);
    if (server < 0)
        return 0;
    double gbps = 0;
    for (int attempt = 0; attempt < 5 && gbps == 0; attempt++) {
        usleep(300000);
        int pfd[2];
        if (pipe(pfd) != 0)
            break;
        char *client[] = {"ucx_perftest",
                          (char *)t->rx_host,
                          "-p",
                          port,
                          "-t",
                          (char *)o->perftest_test,
                          "-s",
                          size_s,
                          "-n",
                          iters,
                          NULL};
        pid_t pid = kb_spawn(client, t->tls, t->tx_devices, pfd[1]);
        close(pfd[1]);
        FILE *f = fdopen(pfd[0], "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            double it, p50, avg, overall, bw_avg, bw_overall;
            if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &it, &p50, &avg, &overall, &bw_avg,
                       &bw_overall) == 6)
                gbps = bw_overall * 1048576.0 / 1e9;
        }
        if (f != NULL)
            fclose(f);
        kb_reap(pid, 60000);
    }
    kb_reap(server, 5000);
    return gbps;
}

/* ---- transports ---- */

static int kb_sh(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
    int rc = system(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char kb_netns_name[32];
static char kb_veth_name[16];

static void kb_netns_teardown(void)
{
    char cmd[128];
    if (kb_veth_name[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "ip link del %s", kb_veth_name);
        kb_sh(cmd);
        kb_veth_name[0] = '\0';
    }
    if (kb_netns_name[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "ip netns del %s", kb_netns_name);
        kb_sh(cmd);
        kb_netns_name[0] = '\0';
    }
}

/* Fill t for name; returns NULL when usable, else the reason to skip. */
static const char *kb_transport_setup(const char *name, kb_transport_t *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->rx_host, sizeof(t->rx_host), "127.0.0.1");
    if (strcmp(name, "shm") == 0) {
        t->tls = "posix,sysv,cma,self";
        return NULL;
    }
    if (strcmp(name, "tcp") == 0) {
        t->tls = "tcp";
        snprintf(t->tx_devices, sizeof(t->tx_devices), "lo");
        snprintf(t->rx_devices, sizeof(t->rx_devices), "lo");
        return NULL;
    }
    if (strcmp(name, "netns") != 0)
        return "unknown transport (shm, tcp, netns)";
    if (geteuid() != 0)
        return "needs root to create a network namespace";
    unsigned id = (unsigned)getpid() % 100000u;
    char cmd[256];
    snprintf(kb_netns_name, sizeof(kb_netns_name), "pdkvb%u", id);
    snprintf(cmd, sizeof(cmd), "ip netns add %s", kb_netns_name);
    if (kb_sh(cmd) != 0) {
        kb_netns_name[0] = '\0';
        return "cannot create a network namespace (no CAP_SYS_ADMIN?)";
    }
    snprintf(kb_veth_name, sizeof(kb_veth_name), "pdkva%u", id);
    snprintf(t->tx_devices, sizeof(t->tx_devices), "%s", kb_veth_name);
    snprintf(t->rx_devices, sizeof(t->rx_devices), "pdkvb%u", id);
    snprintf(t->netns, sizeof(t->netns), "%s", kb_netns_name);
    snprintf(t->rx_host, sizeof(t->rx_host), "10.214.%u.2", 1 + id % 250u);
    unsigned net = 1 + id % 250u;
    char steps[7][200];
    snprintf(steps[0], 200, "ip link add %s type veth peer name %s", t->tx_devices, t->rx_devices);
    snprintf(steps[1], 200, "ip link set %s netns %s", t->rx_devices, t->netns);
    snprintf(steps[2], 200, "ip addr add 10.214.%u.1/24 dev %s", net, t->tx_devices);
    snprintf(steps[3], 200, "ip link set %s up", t->tx_devices);
    snprintf(steps[4], 200, "ip netns exec %s ip addr add 10.214.%u.2/24 dev %s", t->netns, net,
             t->rx_devices);
    snprintf(steps[5], 200, "ip netns exec %s ip link set %s up", t->netns, t->rx_devices);
    snprintf(steps[6], 200, "ip netns exec %s ip link set lo up", t->netns);
    for (int i = 0; i < 7; i++) {
        if (kb_sh(steps[i]) != 0) {
            kb_netns_teardown();
            return "cannot set up a veth pair into the namespace";
        }
    }
    t->tls = "tcp";
    return NULL;
}

/* ---- output ---- */

static void kb_table_header(void)
{
    printf("%-6s %6s %6s %6s %3s %3s %8s %5s %9s %10s %10s %10s %7s\n", "xport", "block", "blocks",
           "layers", "ck", "co", "batches", "ops/b", "GB/s", "p50 us", "p99 us", "perftest",
           "ratio");
}

static void kb_table_row(const kb_point_t *p)
{
    char b[32];
    printf("%-6s %6s %6u %6u %3s %3s %8llu %5llu %9.3f %10.1f %10.1f %10.3f %6.0f%%\n",
           p->transport, kb_size_str(p->block_bytes, b, sizeof(b)), p->blocks, p->layers,
           p->checksum ? "on" : "off", p->coalesce ? "on" : "off", (unsigned long long)p->batches,
           (unsigned long long)p->ops_per_batch, p->gbps, p->p50_us, p->p99_us, p->perftest_gbps,
           p->perftest_gbps > 0 ? 100.0 * p->gbps / p->perftest_gbps : 0.0);
    fflush(stdout);
}

static int kb_json_write(const char *path, const kb_opts_t *o, const kb_point_t *pts, int n,
                         double memcpy_gbps, char skipped[][96], int n_skipped)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pd-kvbench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"pool_bytes\": %zu,\n  \"window\": %u,\n  \"repeats\": %d,\n", o->pool_bytes,
            o->window, o->repeats);
    fprintf(f, "  \"perftest_test\": \"%s\",\n  \"memcpy_uncached_gbps\": %.4f,\n",
            o->perftest_test, memcpy_gbps);
    fprintf(f, "  \"skipped\": [");
    for (int i = 0; i < n_skipped; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", skipped[i]);
    fprintf(f, "],\n  \"points\": [\n");
    for (int i = 0; i < n; i++) {
        const kb_point_t *p = &pts[i];
        fprintf(f,
                "    {\"transport\": \"%s\", \"block_bytes\": %zu, \"blocks\": %u, "
                "\"layers\": %u, \"checksum\": %s, \"coalesce\": %s, \"batches\": %llu, "
                "\"failed\": %llu, \"ops_per_batch\": %llu, \"gbps\": %.4f, \"p50_us\": %.2f, "
                "\"p99_us\": %.2f, \"perftest_gbps\": %.4f, \"ratio_perftest\": %.4f, "
                "\"ratio_memcpy\": %.4f}%s\n",
                p->transport, p->block_bytes, p->blocks, p->layers, p->checksum ? "true" : "false",
                p->coalesce ? "true" : "false", (unsigned long long)p->batches,
                (unsigned long long)p->failed, (unsigned long long)p->ops_per_batch, p->gbps,
                p->p50_us, p->p99_us, p->perftest_gbps,
                p->perftest_gbps > 0 ? p->gbps / p->perftest_gbps : 0.0,
                memcpy_gbps > 0 ? p->gbps / memcpy_gbps : 0.0, i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    return 0;
}

/* One gnuplot series per (transport, checksum, coalesce, blocks, layers) over block size,
 * plus ucx_perftest per transport and the memcpy line. */
static int kb_plot_write(const char *path, const kb_point_t *pts, int n, double memcpy_gbps)
{
    char data_path[] = "/tmp/pd-kvbench-XXXXXX";
    int fd = mkstemp(data_path);
    if (fd < 0)
        return -1;
    FILE *d = fdopen(fd, "w");
    char titles[64][96];
    int n_series = 0;
    bool used[1024] = {0};
    for (int i = 0; i < n && i < 1024; i++) {
        if (used[i])
            continue;
        const kb_point_t *a = &pts[i];
        snprintf(titles[n_series], sizeof(titles[0]), "%s ck=%s co=%s %ux%u", a->transport,
                 a->checksum ? "on" : "off", a->coalesce ? "on" : "off", a->blocks, a->layers);
        for (int j = i; j < n && j < 1024; j++) {
            const kb_point_t *b = &pts[j];
            if (strcmp(a->transport, b->transport) == 0 && a->checksum == b->checksum &&
                a->coalesce == b->coalesce && a->blocks == b->blocks && a->layers == b->layers) {
                fprintf(d, "%zu %.4f\n", b->block_bytes, b->gbps);
                used[j] = true;
            }
        }
        fprintf(d, "\n\n");
        if (++n_series == 60)
            break;
    }
    /* perftest series: one per transport. */
    int first_pt = n_series;
    char pt_names[8][16];
    int n_pt = 0;
    for (int i = 0; i < n && n_pt < 8; i++) {
        bool seen = false;
        for (int k = 0; k < n_pt; k++)
            seen |= strcmp(pt_names[k], pts[i].transport) == 0;
        if (seen || pts[i].perftest_gbps <= 0)
            continue;
        snprintf(pt_names[n_pt++], 16, "%s", pts[i].transport);
        size_t last = 0;
        for (int j = 0; j < n; j++) {
            if (strcmp(pts[j].transport, pts[i].transport) == 0 && pts[j].perftest_gbps > 0 &&
                pts[j].block_bytes != last) {
                fprintf(d, "%zu %.4f\n", pts[j].block_bytes, pts[j].perftest_gbps);
                last = pts[j].block_bytes;
            }
        }
        fprintf(d, "\n\n");
    }
    fclose(d);
    char script_path[] = "/tmp/pd-kvbench-gp-XXXXXX";
    fd = mkstemp(script_path);
    if (fd < 0) {
        unlink(data_path);
        return -1;
    }
    FILE *g = fdopen(fd, "w");
    fprintf(g, "set terminal png size 1100,650\nset output '%s'\n", path);
    fprintf(g, "set title 'pd-kvbench: fabric bandwidth over block size'\n");
    fprintf(g, "set logscale x 2\nset xlabel 'block size (bytes)'\nset ylabel 'GB/s'\n");
    fprintf(g, "set key outside right\nset grid\n");
    fprintf(g, "plot ");
    for (int s = 0; s < n_series; s++)
        fprintf(g, "%s'%s' index %d using 1:2 with linespoints title '%s'", s ? ", " : "",
                data_path, s, titles[s]);
    for (int k = 0; k < n_pt; k++)
        fprintf(g, ", '%s' index %d using 1:2 with lines dashtype 2 lw 2 title 'ucx_perftest %s'",
                data_path, first_pt + k, pt_names[k]);
    if (memcpy_gbps > 0)
        fprintf(g, ", %.4f with lines dashtype 3 lw 2 title 'memcpy, uncached'", memcpy_gbps);
    fprintf(g, "\n");
    fclose(g);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "gnuplot %s", script_path);
    int rc = system(cmd);
    unlink(data_path);
    unlink(script_path);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "pd-kvbench: gnuplot failed\n");
        return -1;
    }
    return 0;
}

/* ---- main ---- */

static void kb_usage(FILE *f)
{
    fprintf(
        f, "usage: pd-kvbench [options]\n"
           "\n"
           "Moves KV blocks between two processes through the transfer fabric (one sends,\n"
           "one receives) and reports bandwidth and batch latency beside ucx_perftest for\n"
           "the same transport and size, and a memcpy of uncached data.\n"
           "\n"
           "  --transports LIST   shm,tcp,netns (default shm,tcp,netns; netns needs root and\n"
           "                      is skipped with a reason otherwise)\n"
           "  --block-sizes LIST  bytes of one block in one layer (default 4K,16K,64K,256K,1M,4M)\n"
           "  --blocks LIST       blocks per batch (default 16)\n"
           "  --layers LIST       layers per batch, posted one by one (default 1)\n"
           "  --checksum MODE     on, off or both (default both)\n"
           "  --coalesce MODE     on, off or both (default on)\n"
           "  --pool BYTES        pool per side (default 512M; data cycles through it)\n"
           "  --bytes BYTES       data per point and repeat (default 1G)\n"
           "  --max-seconds S     time cap per point and repeat (default 3)\n"
           "  --repeats N         repeats per point; the median is reported (default 3)\n"
           "  --window N          batches in flight (default 4)\n"
           "  --perftest-test T   ucx_perftest test (default ucp_put_bw; the fabric puts)\n"
           "  --no-perftest       skip ucx_perftest\n"
           "  --json FILE         write the results as JSON\n"
           "  --plot FILE.png     plot bandwidth over block size with gnuplot\n"
           "  -h, --help          this text\n"
           "\n"
           "Progress goes to stderr, the table to stdout. GB/s are 1e9 bytes per second.\n");
}

static int kb_parse_mode(const char *arg, int *modes, int *n)
{
    if (strcmp(arg, "on") == 0) {
        modes[0] = 1;
        *n = 1;
    } else if (strcmp(arg, "off") == 0) {
        modes[0] = 0;
        *n = 1;
    } else if (strcmp(arg, "both") == 0) {
        modes[0] = 0;
        modes[1] = 1;
        *n = 2;
    } else {
        return -1;
    }
    return 0;
}

static int kb_parse_args(int argc, char **argv, kb_opts_t *o)
{
    static const struct option opts[] = {
        {"transports", required_argument, NULL, 't'},
        {"block-sizes", required_argument, NULL, 's'},
        {"blocks", required_argument, NULL, 'b'},
        {"layers", required_argument, NULL, 'l'},
        {"checksum", required_argument, NULL, 'c'},
        {"coalesce", required_argument, NULL, 'C'},
        {"pool", required_argument, NULL, 'p'},
        {"bytes", required_argument, NULL, 'B'},
        {"max-seconds", required_argument, NULL, 'm'},
        {"repeats", required_argument, NULL, 'r'},
        {"window", required_argument, NULL, 'w'},
        {"perftest-test", required_argument, NULL, 'T'},
        {"no-perftest", no_argument, NULL, 'N'},
        {"spin", no_argument, NULL, 'S'},
        {"register", no_argument, NULL, 'R'},
        {"json", required_argument, NULL, 'j'},
        {"plot", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char items[KB_MAX_LIST][16];
    int c, n;
    size_t v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->n_transports = kb_parse_list(optarg, o->transports, KB_MAX_LIST);
            break;
        case 's':
            n = kb_parse_list(optarg, items, KB_MAX_LIST);
            for (int i = 0; i < n; i++) {
                if (kb_parse_size(items[i], &o->block_sizes[i]) != 0 || o->block_sizes[i] % 8)
                    return -1;
            }
            o->n_block_sizes = n;
            break;
        case 'b':
        case 'l':
            n = kb_parse_list(optarg, items, KB_MAX_LIST);
            for (int i = 0; i < n; i++) {
                uint32_t x = (uint32_t)strtoul(items[i], NULL, 10);
                if (x == 0)
                    return -1;
                (c == 'b' ? o->blocks : o->layers)[i] = x;
            }
            *(c == 'b' ? &o->n_blocks : &o->n_layers) = n;
            break;
        case 'c':
            if (kb_parse_mode(optarg, o->checksum_modes, &o->n_checksum_modes) != 0)
                return -1;
            break;
        case 'C':
            if (kb_parse_mode(optarg, o->coalesce_modes, &o->n_coalesce_modes) != 0)
                return -1;
            break;
        case 'p':
        case 'B':
            if (kb_parse_size(optarg, &v) != 0)
                return -1;
            if (c == 'p')
                o->pool_bytes = v;
            else
                o->point_bytes = (double)v;
            break;
        case 'm':
            o->max_seconds = atof(optarg);
            break;
        case 'r':
            o->repeats = atoi(optarg);
            break;
        case 'w':
            o->window = (uint32_t)atoi(optarg);
            break;
        case 'T':
            o->perftest_test = optarg;
            break;
        case 'N':
            o->perftest = false;
            break;
        case 'S':
            o->spin = true;
            break;
        case 'R':
            o->register_pool = true;
            break;
        case 'j':
            o->json_path = optarg;
            break;
        case 'P':
            o->plot_path = optarg;
            break;
        case 'h':
            kb_usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (o->repeats < 1 || o->repeats > 15 || o->window < 1 || o->window > 32 ||
        o->max_seconds <= 0 || optind != argc)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    pd_log_init("kvbench");
    signal(SIGPIPE, SIG_IGN);
    kb_opts_t o = {
        .pool_bytes = 512u << 20,
        .block_sizes = {4096, 16384, 65536, 262144, 1u << 20, 4u << 20},
        .n_block_sizes = 6,
        .blocks = {16},
        .n_blocks = 1,
        .layers = {1},
        .n_layers = 1,
        .transports = {"shm", "tcp", "netns"},
        .n_transports = 3,
        .checksum_modes = {0, 1},
        .n_checksum_modes = 2,
        .coalesce_modes = {1},
        .n_coalesce_modes = 1,
        .window = 4,
        .point_bytes = 1024.0 * 1024 * 1024,
        .max_seconds = 3,
        .repeats = 3,
        .perftest = true,
        .perftest_test = "ucp_put_bw",
    };
    if (kb_parse_args(argc, argv, &o) != 0) {
        kb_usage(stderr);
        return 2;
    }
    uint8_t *pool = kb_pool_alloc(o.pool_bytes, 1); /* (pool_bytes) memcpy source */
    if (pool == NULL) {
        fprintf(stderr, "pd-kvbench: cannot allocate a %zu-byte pool\n", o.pool_bytes);
        return 1;
    }
    fprintf(stderr, "pd-kvbench: memcpy of uncached data (%zu MiB)...\n", o.pool_bytes >> 20);
    double memcpy_gbps = kb_memcpy_gbps(pool, o.pool_bytes, 1u << 20, 3);
    printf("memcpy, uncached, 1 thread: %.3f GB/s (pool %zu MiB)\n", memcpy_gbps,
           o.pool_bytes >> 20);
    free(pool);
    pool = NULL;
    size_t max_points = (size_t)o.n_transports * o.n_block_sizes * o.n_blocks * o.n_layers *
                        o.n_checksum_modes * o.n_coalesce_modes;
    kb_point_t *pts = calloc(max_points ? max_points : 1, sizeof(*pts));
    char skipped[KB_MAX_LIST][96];
    int n_pts = 0, n_skipped = 0, rc = 0;
    kb_table_header();
    for (int ti = 0; ti < o.n_transports; ti++) {
        kb_transport_t t;
        const char *why = kb_transport_setup(o.transports[ti], &t);
        if (why != NULL) {
            snprintf(skipped[n_skipped++], 96, "%s: %s", o.transports[ti], why);
            printf("# %s skipped: %s\n", o.transports[ti], why);
            continue;
        }
        double perftest_cache[KB_MAX_LIST] = {0};
        for (int ci = 0; ci < o.n_checksum_modes; ci++) {
            for (int oi = 0; oi < o.n_coalesce_modes; oi++) {
                kb_link_t link;
                bool ck = o.checksum_modes[ci], co = o.coalesce_modes[oi];
                if (kb_link_open(&link, &t, ck, co, o.pool_bytes, o.register_pool) != 0) {
                    fprintf(stderr, "pd-kvbench: %s: cannot connect the two processes\n", t.name);
                    kb_link_close(&link);
                    rc = 1;
                    continue;
                }
                char tl[128] = "";
                pd_xfer_peer_transports(link.peer, tl, sizeof(tl));
                fprintf(stderr, "pd-kvbench: %s (checksum %s, coalesce %s): UCX uses %s\n", t.name,
                        ck ? "on" : "off", co ? "on" : "off", tl);
                for (int si = 0; si < o.n_block_sizes; si++) {
                    for (int bi = 0; bi < o.n_blocks; bi++) {
                        for (int li = 0; li < o.n_layers; li++) {
                            kb_point_t *p = &pts[n_pts];
                            memset(p, 0, sizeof(*p));
                            snprintf(p->transport, sizeof(p->transport), "%s", t.name);
                            p->block_bytes = o.block_sizes[si];
                            p->blocks = o.blocks[bi];
                            p->layers = o.layers[li];
                            p->checksum = ck;
                            p->coalesce = co;
                            double g[15];
                            int ok = 0;
                            for (int r = 0; r < o.repeats; r++) {
                                char b[32];
                                fprintf(stderr, "  %s %s x%u x%u ck=%d co=%d rep %d/%d\r", t.name,
                                        kb_size_str(p->block_bytes, b, sizeof(b)), p->blocks,
                                        p->layers, ck, co, r + 1, o.repeats);
                                if (kb_run_point(&link, &o, p, &g[ok]) == 0)
                                    ok++;
                            }
                            fprintf(stderr, "\n");
                            if (ok == 0) {
                                fprintf(stderr, "pd-kvbench: point failed or does not fit "
                                                "the pool\n");
                                continue;
                            }
                            p->gbps = kb_percentile(g, (size_t)ok, 0.5);
                            p->memcpy_gbps = memcpy_gbps;
                            if (o.perftest) {
                                if (perftest_cache[si] == 0) {
                                    fprintf(stderr, "  ucx_perftest %s -s %zu ...\n",
                                            o.perftest_test, p->block_bytes);
                                    perftest_cache[si] = kb_perftest_gbps(&o, &t, p->block_bytes);
                                }
                                p->perftest_gbps = perftest_cache[si];
                            }
                            kb_table_row(p);
                            n_pts++;
                        }
                    }
                }
                kb_link_close(&link);
            }
        }
        kb_netns_teardown();
    }
    if (o.json_path != NULL &&
        kb_json_write(o.json_path, &o, pts, n_pts, memcpy_gbps, skipped, n_skipped) != 0)
        rc = 1;
    if (o.plot_path != NULL && n_pts > 0 &&
        kb_plot_write(o.plot_path, pts, n_pts, memcpy_gbps) != 0)
        rc = 1;
    free(pts);
    free(pool);
    return rc;
}
