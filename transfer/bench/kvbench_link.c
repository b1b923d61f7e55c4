/* pd-kvbench: utilities and the two processes (receiver child, sender link). */
#include "kvbench_int.h"

#include "pd/log.h"
#include "pd/mp.h"
#include "pd/time.h"

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
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define KB_RECV_WINDOW 64u /* expectations the receiver keeps ahead of the sender */

/* ---- small utilities ---- */

int kb_parse_size(const char *s, size_t *out)
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

int kb_parse_list(const char *arg, char items[][16], int max)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    int n = 0;
    for (char *t = strtok(buf, ","); t != NULL && n < max; t = strtok(NULL, ","))
        snprintf(items[n++], 16, "%s", t);
    return n;
}

const char *kb_size_str(size_t b, char *buf, size_t n)
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

double kb_percentile(double *v, size_t n, double p)
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
uint8_t *kb_pool_alloc(size_t bytes, uint8_t seed)
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
        /* As `ip netns exec` does: a private mount namespace with this network
         * namespace's sysfs, where UCX looks for network devices. */
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            umount2("/sys", MNT_DETACH) != 0 || mount("sysfs", "/sys", "sysfs", 0, NULL) != 0) {
            fprintf(stderr, "pd-kvbench: cannot remount /sys in %s: %s\n", t->netns,
                    strerror(errno));
            return 2;
        }
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
    if (pd_xfer_desc_export(engine, &w) != PD_OK)
        return 2;
    uint32_t len = (uint32_t)pd_mp_writer_size(&w);
    if (!kb_write_all(sock, &len, sizeof(len)) || !kb_write_all(sock, pd_mp_writer_data(&w), len))
        return 2;
    pd_mp_writer_cleanup(&w);
    pd_xfer_recv_t *win[KB_RECV_WINDOW] = {0}; /* recv of id i at i % window */
    pd_xfer_range_t all = {.offset = 0, .bytes = pool_bytes};
    uint64_t first = 0, end = 0, next = 0, n_ok = 0, n_failed = 0;
    int efd = -1; /* without one (loopback) the loop polls */
    pd_status_ignore(pd_xfer_engine_fd(engine, &efd));
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
        if (poll(pfd, 2, getenv("KB_RX_SPIN") ? 0 : 1) <= 0 ||
            !(pfd[0].revents & (POLLIN | POLLHUP)))
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
    pd_status_ignore(pd_xfer_mem_deregister(engine)); /* the engine goes next anyway */
    pd_xfer_engine_destroy(&engine);
    if (register_pool)
        free(pool);
    return 0;
}

/* ---- the sending process ---- */

int kb_link_open(kb_link_t *link, const kb_transport_t *t, bool checksum, bool coalesce,
                 pd_xfer_data_path_t data_path, size_t pool_bytes, bool register_pool)
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
    cfg.data_path = data_path;
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
    pd_status_ignore(pd_xfer_engine_fd(link->engine, &link->efd)); /* -1: the loop polls */
    return st == PD_OK ? 0 : -1;
}

void kb_link_close(kb_link_t *link)
{
    if (link->sock > 0) {
        kb_cmd_t cmd = {.op = 3};
        kb_write_all(link->sock, &cmd, sizeof(cmd));
        close(link->sock);
    }
    pd_xfer_peer_disconnect(&link->peer);
    if (link->engine != NULL) /* the engine goes next anyway */
        pd_status_ignore(pd_xfer_mem_deregister(link->engine));
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
int kb_run_point(kb_link_t *link, const kb_opts_t *o, kb_point_t *pt, double *gbps_p)
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
