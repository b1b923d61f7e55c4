/* pd-gateway's process: the libmicrohttpd daemon in "external" epoll mode, the router
 * link, and one epoll loop that waits on both plus the sockets of requests in flight.
 *
 * Slow clients are bounded three ways: a connection must deliver a whole request within
 * --read-timeout-ms of opening (or of its previous response), checked here because
 * libmicrohttpd's own timeout only measures silence, which a client that trickles one
 * byte at a time never keeps; libmicrohttpd's per-connection memory bounds the headers;
 * --max-connections bounds the rest. */
#include "gw_int.h"

#include "pd/log.h"
#include "pd/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PD_GW_TICK_MS     50
#define PD_GW_TAG_MHD     1
#define PD_GW_TAG_ZMQ     2
#define PD_GW_CONN_MEMORY (64u << 10) /* per connection: headers and write buffer */
#define PD_GW_SHUTDOWN_MS 2000

static void pd_gw_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (PD_LOG_LEVEL_DEBUG > pd_log_level_current)
        return;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    pd_log_debug("http: %s", line);
}

static void pd_gw_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                enum MHD_ConnectionNotificationCode toe)
{
    pd_gw_t *gw = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        pd_gw_conn_t *c = calloc(1, sizeof(*c));
        if (c == NULL)
            return; /* no deadline for this one; libmicrohttpd's timeout still applies */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci != NULL ? ci->connect_fd : -1;
        c->read_deadline_ms = pd_time_now_ms() + gw->cfg.read_timeout_ms;
        /* The hang-up watch for every request this connection will carry, registered
         * once: edge-triggered, so a client that half-closes an idle keep-alive
         * connection wakes the loop once, not on every turn until libmicrohttpd closes it
         * (a per-request watch cost two epoll_ctl calls per request). */
        struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLET,
                                 .data.u64 = PD_GW_EPOLL_CONN_BIT | (uint64_t)(uintptr_t)c};
        c->watched = c->fd >= 0 && epoll_ctl(gw->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0;
        c->next = gw->conns;
        if (gw->conns != NULL)
            gw->conns->prev = c;
        gw->conns = c;
        gw->n_conns++;
        *socket_context = c;
        return;
    }
    pd_gw_conn_t *c = *socket_context;
    if (c == NULL)
        return;
    if (c->watched)
        epoll_ctl(gw->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->req != NULL)
        c->req->c = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        gw->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    gw->n_conns--;
    free(c);
    *socket_context = NULL;
}

/* Close connections past their read deadline: a shutdown makes libmicrohttpd read the end
 * of the stream and close the connection itself. */
static void pd_gw_sweep_conns(pd_gw_t *gw, uint64_t now_ms)
{
    for (pd_gw_conn_t *c = gw->conns; c != NULL; c = c->next) {
        if (c->read_deadline_ms != 0 && now_ms >= c->read_deadline_ms && c->fd >= 0) {
            c->read_deadline_ms = 0;
            pd_log_debug("connection fd %d: no whole request within %u ms; closed", c->fd,
                         gw->cfg.read_timeout_ms);
            shutdown(c->fd, SHUT_RDWR);
        }
    }
}

static pd_status_t pd_gw_write_ready(const pd_gw_t *gw)
{
    const char *path = gw->cfg.ready_file;
    char tmp[PD_GW_PATH_CAP + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        pd_log_error("ready file %s: %s", tmp, strerror(errno));
        return PD_ERR_IO;
    }
    bool v6 = strchr(gw->cfg.listen_host, ':') != NULL;
    fprintf(f, "http=http://%s%s%s:%u\npid=%d\n", v6 ? "[" : "", gw->cfg.listen_host, v6 ? "]" : "",
            gw->port, (int)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        pd_log_error("ready file %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    return PD_OK;
}

static pd_status_t pd_gw_start_http(pd_gw_t *gw)
{
    const pd_gw_config_t *c = &gw->cfg;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", c->listen_port);
    int rc = getaddrinfo(c->listen_host, port, &hints, &ai);
    if (rc != 0) {
        hints.ai_flags = AI_PASSIVE;
        rc = getaddrinfo(c->listen_host, port, &hints, &ai);
    }
    if (rc != 0) {
        pd_log_error("--listen %s: %s", c->listen_host, gai_strerror(rc));
        return PD_ERR_INVALID_PARAM;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned timeout_s = (c->read_timeout_ms + 999) / 1000;
    gw->mhd = MHD_start_daemon(flags, c->listen_port, NULL, NULL, pd_gw_http_on_request, gw,
                               MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
                               pd_gw_http_on_completed, gw, MHD_OPTION_NOTIFY_CONNECTION,
                               pd_gw_on_connection, gw, MHD_OPTION_CONNECTION_LIMIT,
                               (unsigned)c->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                               timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                               (size_t)PD_GW_CONN_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                               MHD_OPTION_EXTERNAL_LOGGER, pd_gw_mhd_log, gw, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (gw->mhd == NULL) {
        pd_log_error("cannot listen on %s:%u (in use, or not an address of this machine)",
                     c->listen_host, c->listen_port);
        return PD_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_BIND_PORT);
    gw->port = di != NULL ? di->port : c->listen_port;
    di = MHD_get_daemon_info(gw->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (di == NULL)
        return PD_ERR_IO;
    gw->mhd_fd = di->epoll_fd;
    return PD_OK;
}

static pd_status_t pd_gw_epoll_add(pd_gw_t *gw, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    if (epoll_ctl(gw->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        pd_log_error("epoll_ctl: %s", strerror(errno));
        return PD_ERR_IO;
    }
    return PD_OK;
}

pd_status_t pd_gw_create(const pd_gw_config_t *config, pd_gw_t **gw_p)
{
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_gw_t *gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        return PD_ERR_NO_MEMORY;
    gw->cfg = *config;
    gw->epfd = gw->mhd_fd = gw->zmq_fd = -1;
    pd_mp_writer_init(&gw->w);
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0, sizeof(rnd));
    for (int i = 0; i < 8; i++)
        snprintf(gw->id_prefix + 2 * i, 3, "%02x", rnd[i]);
    memcpy(&gw->rng, rnd + 8, sizeof(gw->rng));

    /* Idle connections each hold a descriptor: allow as many as the hard limit does. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (strcmp(config->tokenizer_path, "byte") == 0)
        st = pd_tokenizer_create_byte(&gw->tok);
    else
        st = pd_tokenizer_open(config->tokenizer_path, 0, &gw->tok); /* as the router opens it */
    if (st != PD_OK) {
        pd_log_error("tokenizer %s: %s", config->tokenizer_path, pd_status_str(st));
        goto err;
    }
    if ((st = pd_gw_prompt_setup(gw, config->chat_template_file)) != PD_OK)
        goto err;
    if (config->keys_file[0] != '\0' &&
        (st = pd_gw_keys_load(config->keys_file, NULL, &gw->keys)) != PD_OK)
        goto err;
    st = PD_ERR_IO;
    gw->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (gw->epfd < 0)
        goto err;
    if ((st = pd_gw_link_open(gw)) != PD_OK || (st = pd_gw_start_http(gw)) != PD_OK ||
        (st = pd_gw_epoll_add(gw, gw->mhd_fd, PD_GW_TAG_MHD)) != PD_OK ||
        (st = pd_gw_epoll_add(gw, gw->zmq_fd, PD_GW_TAG_ZMQ)) != PD_OK)
        goto err;
    if (config->ready_file[0] != '\0' && (st = pd_gw_write_ready(gw)) != PD_OK)
        goto err;
    pd_log_info("listening on http://%s:%u, router %s, model '%s', %s", config->listen_host,
                gw->port, config->router_endpoint, config->model_name,
                gw->keys != NULL ? "API keys required" : "no API keys (open)");
    *gw_p = gw;
    return PD_OK;

err:
    pd_gw_destroy(&gw);
    return st;
}

static void pd_gw_reload_keys(pd_gw_t *gw)
{
    if (gw->cfg.keys_file[0] == '\0') {
        pd_log_info("SIGHUP: no --keys file to reload");
        return;
    }
    pd_gw_keys_t *keys = NULL;
    if (pd_gw_keys_load(gw->cfg.keys_file, gw->keys, &keys) != PD_OK) {
        pd_log_error("SIGHUP: %s not reloaded; the previous keys stay in force", gw->cfg.keys_file);
        return;
    }
    pd_gw_keys_destroy(&gw->keys);
    gw->keys = keys;
    pd_log_info("SIGHUP: %u keys from %s", keys->n, gw->cfg.keys_file);
}

/* libmicrohttpd and the router link, until neither has anything left to do now: a token
 * from the router resumes a connection, which only MHD_run writes out. Returns true when
 * resumed connections are still waiting for MHD_run. */
static bool pd_gw_pump(pd_gw_t *gw)
{
    for (int k = 0; k < 8; k++) {
        gw->n_resumed = 0;
        MHD_run(gw->mhd);
        pd_gw_link_drain(gw);
        if (gw->n_resumed == 0)
            return false;
    }
    return true;
}

/* One epoll wait and what it woke. */
static void pd_gw_turn(pd_gw_t *gw, int timeout_ms, uint64_t *last_tick_ms)
{
    struct epoll_event evs[64];
    MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
    if (MHD_get_timeout(gw->mhd, &mhd_ms) == MHD_YES && mhd_ms < (MHD_UNSIGNED_LONG_LONG)timeout_ms)
        timeout_ms = (int)mhd_ms;
    int n = epoll_wait(gw->epfd, evs, 64, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == PD_GW_TAG_MHD || tag == PD_GW_TAG_ZMQ)
            continue; /* served by the pump below */
        if (tag & PD_GW_EPOLL_CONN_BIT) {
            /* Records are freed only in the pump below, after this batch is served. */
            pd_gw_conn_t *c = (pd_gw_conn_t *)(uintptr_t)(tag & ~PD_GW_EPOLL_CONN_BIT);
            if (c->req != NULL)
                pd_gw_req_on_hangup(c->req);
            continue;
        }
        pd_gw_req_t *req = pd_gw_gen_from_tag(gw, tag);
        if (req != NULL)
            pd_gw_req_on_hangup(req);
    }
    bool again = pd_gw_pump(gw);
    uint64_t now = pd_time_now_ms();
    if (now >= *last_tick_ms + PD_GW_TICK_MS) {
        *last_tick_ms = now;
        pd_gw_link_tick(gw, now);
        pd_gw_sweep_conns(gw, now);
        again = pd_gw_pump(gw) || again;
    }
    if (again)
        pd_gw_pump(gw);
}

/* Answer and cancel everything in flight, then let the answers go out. */
static void pd_gw_shutdown(pd_gw_t *gw)
{
    gw->stopping = true;
    for (uint32_t b = 0; b < PD_GW_REQ_BUCKETS; b++) {
        pd_gw_req_t *q = gw->buckets[b];
        while (q != NULL) {
            pd_gw_req_t *next = q->next_hash;
            pd_gw_link_cancel(gw, q);
            pd_gw_req_on_error(q, PD_ERR_CANCELED, "the gateway is shutting down");
            q = next;
        }
    }
    uint64_t end = pd_time_now_ms() + PD_GW_SHUTDOWN_MS, tick = 0;
    while (gw->n_suspended > 0 && pd_time_now_ms() < end)
        pd_gw_turn(gw, 20, &tick);
    pd_gw_pump(gw);
}

pd_status_t pd_gw_run(pd_gw_t *gw, volatile int *stop_flag, volatile int *reload_flag)
{
    uint64_t last_tick = 0;
    pd_gw_link_tick(gw, pd_time_now_ms()); /* the first status request, at once */
    while (stop_flag == NULL || !*stop_flag) {
        if (reload_flag != NULL && *reload_flag) {
            *reload_flag = 0;
            pd_gw_reload_keys(gw);
        }
        pd_gw_turn(gw, PD_GW_TICK_MS, &last_tick);
    }
    pd_gw_shutdown(gw);
    return PD_OK;
}

void pd_gw_destroy(pd_gw_t **gw_p)
{
    if (gw_p == NULL || *gw_p == NULL)
        return;
    pd_gw_t *gw = *gw_p;
    if (gw->mhd != NULL)
        MHD_stop_daemon(gw->mhd); /* completes (and frees) every request left */
    pd_gw_link_close(gw);
    if (gw->epfd >= 0)
        close(gw->epfd);
    pd_gw_keys_destroy(&gw->keys);
    pd_tokenizer_destroy(&gw->tok);
    free(gw->chat_tpl);
    pd_mp_writer_cleanup(&gw->w);
    free(gw);
    *gw_p = NULL;
}
