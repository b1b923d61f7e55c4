/* pd-kvbench: comparison points (memcpy, ucx_perftest) and transports (shm, tcp, netns). */
#include "kvbench_int.h"

#include "pd/hash.h"
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- comparison points ---- */

/* One copy of the whole pool into another buffer of the same size, chunk by chunk: the
 * rate of a memcpy of data that is not in cache, in 1e9 bytes per second. */
double kb_memcpy_once(const uint8_t *src, uint8_t *dst, size_t bytes, size_t chunk)
{
    uint64_t t0 = pd_time_now_ns();
    for (size_t off = 0; off + chunk <= bytes; off += chunk)
        memcpy(dst + off, src + off, chunk);
    return (double)(bytes - bytes % chunk) / ((double)(pd_time_now_ns() - t0));
}

/* Median of reps copies (kb_memcpy_once). */
double kb_memcpy_gbps(const uint8_t *src, uint8_t *dst, size_t bytes, size_t chunk, int reps)
{
    double r[8];
    if (reps > 8)
        reps = 8;
    for (int k = 0; k < reps; k++)
        r[k] = kb_memcpy_once(src, dst, bytes, chunk);
    return kb_percentile(r, (size_t)reps, 0.5);
}

/* XXH3 (pd_hash_bytes) over the whole pool in chunk-sized pieces: what a checksum costs
 * per byte on uncached data. Median of reps, in 1e9 bytes per second. */
double kb_hash_gbps(const uint8_t *src, size_t bytes, size_t chunk, int reps)
{
    double r[8];
    uint64_t sink = 0;
    if (reps > 8)
        reps = 8;
    for (int k = 0; k < reps; k++) {
        uint64_t t0 = pd_time_now_ns();
        for (size_t off = 0; off + chunk <= bytes; off += chunk)
            sink ^= pd_hash_bytes(src + off, chunk, 0);
        r[k] = (double)(bytes - bytes % chunk) / ((double)(pd_time_now_ns() - t0));
    }
    if (sink == 42)
        fprintf(stderr, " ");
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
double kb_perftest_gbps(const kb_opts_t *o, const kb_transport_t *t, const char *test, size_t size)
{
    char port[16], size_s[32], iters[32], warmup[32];
    snprintf(port, sizeof(port), "%d", kb_free_port());
    snprintf(size_s, sizeof(size_s), "%zu", size);
    /* The same bytes as a fabric point, at least 64 messages; a tenth of that again to
     * warm up (the default, 10000 messages, is minutes of emulated puts at 4 MiB). */
    double n = o->point_bytes / (double)size;
    n = n < 64 ? 64 : n > 200000 ? 200000 : n;
    snprintf(iters, sizeof(iters), "%.0f", n);
    snprintf(warmup, sizeof(warmup), "%.0f", n / 10 < 8 ? 8 : n / 10);
    char *server_plain[] = {"ucx_perftest", "-p", port, NULL};
    char *server_ns[] = {"ip", "netns", "exec", (char *)t->netns, "ucx_perftest", "-p", port, NULL};
    pid_t server = kb_spawn(t->netns[0] ? server_ns : server_plain, t->tls, t->rx_devices, -1);
    if (server < 0)
        return 0;
    double gbps = 0;
    bool gave_up = false; /* retry only a client that found no server yet */
    for (int attempt = 0; attempt < 5 && gbps == 0 && !gave_up; attempt++) {
        usleep(300000);
        int pfd[2];
        if (pipe(pfd) != 0)
            break;
        char *client[] = {"ucx_perftest",
                          (char *)t->rx_host,
                          "-p",
                          port,
                          "-t",
                          (char *)test,
                          "-s",
                          size_s,
                          "-n",
                          iters,
                          "-w",
                          warmup,
                          NULL};
        pid_t pid = kb_spawn(client, t->tls, t->tx_devices, pfd[1]);
        close(pfd[1]);
        /* Read its output until it exits, or give up at the deadline: an operation
         * that cannot move a point's bytes in that time is not the one to compare with. */
        char out[8192];
        size_t used = 0;
        uint64_t deadline = pd_time_now_ns() + (uint64_t)(o->max_seconds * 10 + 10) * 1000000000u;
        for (;;) {
            uint64_t now = pd_time_now_ns();
            if (now >= deadline) {
                gave_up = true;
                break;
            }
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
                continue;
            ssize_t got = read(pfd[0], out + used, sizeof(out) - 1 - used);
            if (got <= 0)
                break;
            used += (size_t)got;
            if (used == sizeof(out) - 1) /* keep the tail, where "Final:" is */
                memmove(out, out + used / 2, used - used / 2), used -= used / 2;
        }
        out[used] = '\0';
        close(pfd[0]);
        for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
            double it, p50, avg, overall, bw_avg, bw_overall;
            if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &it, &p50, &avg, &overall, &bw_avg,
                       &bw_overall) == 6)
                gbps = bw_overall * 1048576.0 / 1e9;
        }
        kb_reap(pid, 1000);
        if (gbps == 0)
            fprintf(stderr, "pd-kvbench: ucx_perftest %s -s %zu gave no result\n", test, size);
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

void kb_netns_teardown(void)
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
const char *kb_transport_setup(const char *name, kb_transport_t *t)
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
