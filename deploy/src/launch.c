/* pdctl up / pdctl down: the local launcher for cluster manifests.
 *
 * up: makes the model if the manifest names a preset and the path is missing, optionally
 * builds a bridge and one network namespace per process, starts pd-router and every
 * worker, and waits until the router lists all workers. In the foreground it relays every
 * child's output with a "[role-i]" prefix and stops the cluster on Ctrl-C; with -d it
 * writes logs to the run directory and returns. A state file in the run directory
 * (.pdkv/run/NAME.state, or $PD_RUN_DIR) records the pids and namespaces for down. */
#include "launch.h"

#include "pd/log.h"
#include "pd/manifest.h"
#include "pd/mp.h"
#include "pd/time.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define PD_LAUNCH_MAX_PROCS 160
#define PD_LAUNCH_MAX_ARGS  64

typedef struct pd_launch_proc {
    pid_t pid;
    char name[32];   /* "router", "prefill-0", ... */
    char ns[32];     /* network namespace, "" for none */
    char ip[64];     /* address it binds */
    int out_fd;      /* foreground: read end of its stdout+stderr, else -1 */
    char line[2048]; /* partial line not yet printed */
    size_t line_len;
    bool exited;
} pd_launch_proc_t;

typedef struct pd_launch {
    pd_manifest_t m;
    char run_dir[1024];
    char state_path[PATH_MAX];
    char bin_dir[1024];
    char bridge[16];
    bool detach;
    int ready_timeout_s;
    pd_launch_proc_t procs[PD_LAUNCH_MAX_PROCS];
    int n_procs;
} pd_launch_t;

static volatile sig_atomic_t pd_launch_stop;

static void pd_launch_on_signal(int sig)
{
    (void)sig;
    pd_launch_stop = 1;
}

static void pd_launch_run_dir(char *dir, size_t n)
{
    const char *env = getenv("PD_RUN_DIR");
    snprintf(dir, n, "%s", (env != NULL && env[0] != '\0') ? env : ".pdkv/run");
}

static int pd_launch_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return (mkdir(tmp, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

/* Run argv to completion, quietly; returns its exit status or -1. */
static int pd_launch_run(char *const argv[], bool quiet)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (quiet) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) {
                dup2(devnull, STDOUT_FILENO);
                dup2(devnull, STDERR_FILENO);
            }
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* printf-style command line split on spaces (our names never hold spaces). */
static int pd_launch_sh(bool quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pd_launch_sh(bool quiet, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char *argv[PD_LAUNCH_MAX_ARGS];
    int argc = 0;
    for (char *tok = strtok(cmd, " "); tok != NULL && argc < PD_LAUNCH_MAX_ARGS - 1;
         tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    int rc = pd_launch_run(argv, quiet);
    if (rc != 0 && !quiet)
        fprintf(stderr, "pdctl: '%s' failed (exit %d)\n", cmd, rc);
    return rc;
}

int pd_launch_router_workers(const char *endpoint, int timeout_ms, int *n_workers_p)
{
    int rc = -1;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    int64_t maxmsg = 16 << 20;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (zmq_connect(s, endpoint) != 0)
        goto out;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 2);
    pd_mp_put_str(&w, "v");
    pd_mp_put_u64(&w, 1);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "status");
    int sent = zmq_send(s, pd_mp_writer_data(&w), pd_mp_writer_size(&w), ZMQ_DONTWAIT);
    pd_mp_writer_cleanup(&w);
    if (sent < 0)
        goto out;
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    uint64_t deadline = pd_time_now_ms() + (uint64_t)timeout_ms;
    while (pd_time_now_ms() < deadline) {
        if (zmq_poll(&item, 1, 100) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s, 0) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        pd_mp_doc_t doc;
        if (pd_mp_doc_parse(&doc, zmq_msg_data(&msg), zmq_msg_size(&msg), &pd_mp_limits_default) ==
            PD_OK) {
            const msgpack_object_array *workers;
            if (pd_mp_get_array(&doc.root, "workers", &workers) == PD_OK) {
                *n_workers_p = (int)workers->size;
                rc = 0;
            }
            pd_mp_doc_cleanup(&doc);
        }
        zmq_msg_close(&msg);
        break;
    }
out:
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

/* --- namespaces ------------------------------------------------------------------- */

static void pd_launch_ns_names(const pd_launch_t *l, int idx, char *ns, char *veth, char *peer)
{
    snprintf(ns, 32, "pd%u-%d", l->m.base_port, idx);
    snprintf(veth, 16, "pv%u-%d", l->m.base_port % 100000, idx % 1000);
    snprintf(peer, 16, "pe%u-%d", l->m.base_port % 100000, idx % 1000);
}

static int pd_launch_ns_setup(pd_launch_t *l)
{
    if (geteuid() != 0) {
        fprintf(stderr, "pdctl: network namespaces need root (ip netns, veth, bridge)\n");
        return -1;
    }
    snprintf(l->bridge, sizeof(l->bridge), "pdbr%u", l->m.base_port);
    const char *sub = l->m.ns_subnet;
    pd_launch_sh(true, "ip link del %s", l->bridge);
    if (pd_launch_sh(false, "ip link add %s type bridge", l->bridge) != 0 ||
        pd_launch_sh(false, "ip addr add %s.1/24 dev %s", sub, l->bridge) != 0 ||
        pd_launch_sh(false, "ip link set %s up", l->bridge) != 0)
        return -1;
    for (int i = 0; i < l->n_procs; i++) {
        char ns[32], veth[16], peer[16];
        pd_launch_ns_names(l, i, ns, veth, peer);
        pd_launch_sh(true, "ip netns del %s", ns);
        if (pd_launch_sh(false, "ip netns add %s", ns) != 0 ||
            pd_launch_sh(false, "ip link add %s type veth peer name %s", veth, peer) != 0 ||
            pd_launch_sh(false, "ip link set %s netns %s", peer, ns) != 0 ||
            pd_launch_sh(false, "ip netns exec %s ip addr add %s/24 dev %s", ns, l->procs[i].ip,
                         peer) != 0 ||
            pd_launch_sh(false, "ip netns exec %s ip link set %s up", ns, peer) != 0 ||
            pd_launch_sh(false, "ip netns exec %s ip link set lo up", ns) != 0 ||
            pd_launch_sh(false, "ip link set %s master %s", veth, l->bridge) != 0 ||
            pd_launch_sh(false, "ip link set %s up", veth) != 0)
            return -1;
        snprintf(l->procs[i].ns, sizeof(l->procs[i].ns), "%s", ns);
    }
    return 0;
}

static void pd_launch_ns_teardown(const char *bridge, char ns[][32], int n)
{
    for (int i = 0; i < n; i++) {
        if (ns[i][0] != '\0')
            pd_launch_sh(true, "ip netns del %s", ns[i]);
    }
    if (bridge[0] != '\0')
        pd_launch_sh(true, "ip link del %s", bridge);
}

/* --- processes ---------------------------------------------------------------------- */

/* The plan: router first, then prefill, decode and colocated workers, with addresses. */
static void pd_launch_plan(pd_launch_t *l)
{
    const pd_manifest_t *m = &l->m;
    l->n_procs = 0;
    struct {
        const char *role;
        uint32_t count;
    } roles[] = {{"router", 1},
                 {"prefill", m->prefill.count},
                 {"decode", m->decode.count},
                 {"both", m->both.count}};
    int worker_idx = 0;
    for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
        for (uint32_t i = 0; i < roles[r].count && l->n_procs < PD_LAUNCH_MAX_PROCS; i++) {
            pd_launch_proc_t *p = &l->procs[l->n_procs];
            memset(p, 0, sizeof(*p));
            p->out_fd = -1;
            if (r == 0)
                snprintf(p->name, sizeof(p->name), "router");
            else
                snprintf(p->name, sizeof(p->name), "%s-%u", roles[r].role, i);
            if (m->namespaces)
                snprintf(p->ip, sizeof(p->ip), "%s.%d", m->ns_subnet, r == 0 ? 2 : 10 + worker_idx);
            else
                snprintf(p->ip, sizeof(p->ip), "%s", m->host);
            if (r != 0)
                worker_idx++;
            l->n_procs++;
        }
    }
}

/* Build the argv of process idx into args (storage) and argv: the manifest's options
 * for that process (the same a scheduler-started role builds), behind "ip netns exec"
 * when the process has its own namespace. */
static int pd_launch_argv(const pd_launch_t *l, int idx, char args[][PATH_MAX], char **argv)
{
    const pd_manifest_t *m = &l->m;
    const pd_launch_proc_t *p = &l->procs[idx];
    int n = 0;
#define PD_ARG(...) (snprintf(args[n], PATH_MAX, __VA_ARGS__), argv[n] = args[n], n++)
    if (p->ns[0] != '\0') {
        PD_ARG("ip");
        PD_ARG("netns");
        PD_ARG("exec");
        PD_ARG("%s", p->ns);
    }
    char role[16];
    uint32_t index = 0;
    const char *dash = strrchr(p->name, '-');
    if (idx == 0 || dash == NULL) {
        snprintf(role, sizeof(role), "router");
    } else {
        snprintf(role, sizeof(role), "%.*s", (int)(dash - p->name), p->name);
        index = (uint32_t)strtoul(dash + 1, NULL, 10);
    }
    pd_manifest_proc_t proc;
    char err[256];
    static pd_manifest_args_t margs;
    if (pd_manifest_proc_find(m, role, index, &proc, err, sizeof(err)) != PD_OK ||
        pd_manifest_args_build(m, &proc, p->ip, l->procs[0].ip, &margs) != PD_OK) {
        fprintf(stderr, "pdctl: %s: cannot build its command line\n", p->name);
        return -1;
    }
    bool prefill = strcmp(role, "prefill") == 0;
    PD_ARG("%s/%s", l->bin_dir, idx == 0 ? "pd-router" : prefill ? "pd-prefill" : "pd-decode");
    for (int i = 0; i < margs.argc && n < PD_LAUNCH_MAX_ARGS - 1; i++)
        PD_ARG("%s", margs.argv[i]);
#undef PD_ARG
    argv[n] = NULL;
    return 0;
}

static int pd_launch_spawn(pd_launch_t *l, int idx)
{
    pd_launch_proc_t *p = &l->procs[idx];
    static char args[PD_LAUNCH_MAX_ARGS][PATH_MAX];
    char *argv[PD_LAUNCH_MAX_ARGS];
    if (pd_launch_argv(l, idx, args, argv) != 0)
        return -1;

    int fds[2] = {-1, -1};
    int log_fd = -1;
    if (l->detach) {
        char log_path[PATH_MAX];
        snprintf(log_path, sizeof(log_path), "%s/%s-%s.log", l->run_dir, l->m.name, p->name);
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            fprintf(stderr, "pdctl: cannot write %s: %s\n", log_path, strerror(errno));
            return -1;
        }
    } else if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int out = l->detach ? log_fd : fds[1];
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        setsid(); /* Ctrl-C reaches pdctl, which stops the children in order */
        if (l->m.xfer_transports[0] != '\0')
            setenv("UCX_TLS", l->m.xfer_transports, 1);
        if (p->ns[0] != '\0') {
            char dev[16], ns[32], veth[16];
            pd_launch_ns_names(l, idx, ns, veth, dev);
            setenv("UCX_NET_DEVICES", dev, 1);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "pdctl: cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    if (l->detach) {
        close(log_fd);
    } else {
        close(fds[1]);
        p->out_fd = fds[0];
        fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* Print complete lines of one child's output with its prefix. */
static void pd_launch_relay(pd_launch_proc_t *p)
{
    for (;;) {
        size_t room = sizeof(p->line) - p->line_len - 1;
        ssize_t got = read(p->out_fd, p->line + p->line_len, room);
        if (got <= 0) {
            if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (p->line_len > 0)
                    printf("[%s] %.*s\n", p->name, (int)p->line_len, p->line);
                p->line_len = 0;
                close(p->out_fd);
                p->out_fd = -1;
            }
            break;
        }
        p->line_len += (size_t)got;
        char *start = p->line;
        char *nl;
        while ((nl = memchr(start, '\n', p->line_len - (size_t)(start - p->line))) != NULL) {
            printf("[%s] %.*s\n", p->name, (int)(nl - start), start);
            start = nl + 1;
        }
        size_t rest = p->line_len - (size_t)(start - p->line);
        if (rest == sizeof(p->line) - 1) { /* a line longer than the buffer: flush it */
            printf("[%s] %.*s\n", p->name, (int)rest, start);
            rest = 0;
        }
        memmove(p->line, start, rest);
        p->line_len = rest;
    }
    fflush(stdout);
}

/* Reap children that exited; returns how many are still running. */
static int pd_launch_reap(pd_launch_t *l, bool report)
{
    int alive = 0;
    for (int i = 0; i < l->n_procs; i++) {
        pd_launch_proc_t *p = &l->procs[i];
        if (p->exited || p->pid <= 0)
            continue;
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->exited = true;
            if (report) {
                if (WIFSIGNALED(st))
                    fprintf(stderr, "pdctl: %s (pid %d) killed by signal %d\n", p->name,
                            (int)p->pid, WTERMSIG(st));
                else
                    fprintf(stderr, "pdctl: %s (pid %d) exited with %d\n", p->name, (int)p->pid,
                            WEXITSTATUS(st));
            }
        } else {
            alive++;
        }
    }
    return alive;
}

/* Stop pids: SIGTERM, then SIGKILL after grace_ms. Works for our children and for pids
 * read back from a state file (not our children: probed with kill(pid, 0)). */
static void pd_launch_stop_pids(pid_t *pids, int n, int grace_ms)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0)
            kill(pids[i], SIGTERM);
    }
    uint64_t deadline = pd_time_now_ms() + (uint64_t)grace_ms;
    for (;;) {
        int alive = 0;
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            int st;
            pid_t r = waitpid(pids[i], &st, WNOHANG);
            if (r == pids[i] || (r < 0 && kill(pids[i], 0) != 0))
                pids[i] = 0;
            else
                alive++;
        }
        if (alive == 0)
            return;
        if (pd_time_now_ms() >= deadline)
            break;
        usleep(20000);
    }
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }
}

static int pd_launch_write_state(const pd_launch_t *l)
{
    FILE *f = fopen(l->state_path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "bridge %s\n", l->bridge[0] ? l->bridge : "-");
    fprintf(f, "client tcp://%s:%u\n", l->procs[0].ip, l->m.base_port);
    for (int i = 0; i < l->n_procs; i++)
        fprintf(f, "proc %d %s %s\n", (int)l->procs[i].pid, l->procs[i].name,
                l->procs[i].ns[0] ? l->procs[i].ns : "-");
    return fclose(f) == 0 ? 0 : -1;
}

/* Stop everything recorded in a state file and delete the file. */
static int pd_launch_down_state(const char *state_path)
{
    FILE *f = fopen(state_path, "r");
    if (f == NULL) {
        fprintf(stderr, "pdctl: no running cluster recorded at %s\n", state_path);
        return 1;
    }
    pid_t pids[PD_LAUNCH_MAX_PROCS];
    char ns[PD_LAUNCH_MAX_PROCS][32];
    char bridge[16] = "";
    int n = 0;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL && n < PD_LAUNCH_MAX_PROCS) {
        char name[64], nsname[32], br[16];
        int pid;
        if (sscanf(line, "proc %d %63s %31s", &pid, name, nsname) == 3) {
            pids[n] = pid;
            snprintf(ns[n], sizeof(ns[n]), "%s", strcmp(nsname, "-") ? nsname : "");
            n++;
        } else if (sscanf(line, "bridge %15s", br) == 1 && strcmp(br, "-") != 0) {
            snprintf(bridge, sizeof(bridge), "%s", br);
        }
    }
    fclose(f);
    /* Workers first (they release and deregister), the router last. */
    if (n > 1)
        pd_launch_stop_pids(pids + 1, n - 1, 5000);
    if (n > 0)
        pd_launch_stop_pids(pids, 1, 5000);
    pd_launch_ns_teardown(bridge, ns, n);
    unlink(state_path);
    return 0;
}

static int pd_launch_ensure_model(const pd_launch_t *l)
{
    struct stat st;
    if (stat(l->m.model_path, &st) == 0)
        return 0;
    if (l->m.model_preset[0] == '\0') {
        fprintf(stderr, "pdctl: model %s not found and the manifest names no preset\n",
                l->m.model_path);
        return -1;
    }
    fprintf(stderr, "pdctl: making model %s (preset %s, seed %llu)\n", l->m.model_path,
            l->m.model_preset, (unsigned long long)l->m.model_seed);
    char pdctl[PATH_MAX + 8], seed[32];
    snprintf(pdctl, sizeof(pdctl), "%s/pdctl", l->bin_dir);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)l->m.model_seed);
    char *argv[] = {pdctl,
                    "model",
                    "new",
                    "--preset",
                    (char *)l->m.model_preset,
                    "--seed",
                    seed,
                    "-o",
                    (char *)l->m.model_path,
                    NULL};
    return pd_launch_run(argv, false) == 0 ? 0 : -1;
}

static void pd_launch_bin_dir(char *dir, size_t n)
{
    const char *env = getenv("PD_BIN_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(dir, n, "%s", env);
        return;
    }
    ssize_t len = readlink("/proc/self/exe", dir, n - 1);
    if (len <= 0) {
        snprintf(dir, n, ".");
        return;
    }
    dir[len] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
}

static void pd_launch_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl up MANIFEST [-d] [--set KEY=VALUE]... [--ready-timeout S]\n"
            "\n"
            "Start every role of a cluster manifest on this machine and wait until the\n"
            "router reports all workers registered. In the foreground, every process's\n"
            "output is printed with a [role-i] prefix and Ctrl-C stops the cluster; with -d\n"
            "logs go to the run directory ($PD_RUN_DIR, default .pdkv/run) and pdctl returns.\n"
            "\n"
            "  -d, --detach          run in the background; stop with 'pdctl down MANIFEST'\n"
            "  --set KEY=VALUE       override a manifest key, e.g. --set decode.count=2\n"
            "                        --set network.base_port=9100\n"
            "  --ready-timeout S     seconds to wait for the workers (default 120)\n");
}

static int pd_launch_parse(int argc, char **argv, pd_launch_t *l, bool down)
{
    static const struct option opts[] = {{"detach", no_argument, NULL, 'd'},
                                         {"set", required_argument, NULL, 's'},
                                         {"ready-timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sets[32];
    int n_sets = 0;
    int c;
    optind = 1;
    l->ready_timeout_s = 120;
    while ((c = getopt_long(argc, argv, "ds:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            l->detach = true;
            break;
        case 's':
            if (n_sets == 32) {
                fprintf(stderr, "pdctl: too many --set options\n");
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 't':
            l->ready_timeout_s = atoi(optarg);
            if (l->ready_timeout_s <= 0 || l->ready_timeout_s > 3600) {
                fprintf(stderr, "pdctl: --ready-timeout must be 1..3600 seconds\n");
                return 2;
            }
            break;
        case 'h':
            if (down)
                printf("usage: pdctl down MANIFEST [--set network.base_port=N]\n\n"
                       "Stop a cluster started with 'pdctl up -d MANIFEST': workers first, "
                       "then the\nrouter (SIGTERM, SIGKILL after 5 s), and remove its network "
                       "namespaces.\n");
            else
                pd_launch_usage(stdout);
            exit(0);
        default:
            if (down)
                fprintf(stderr, "usage: pdctl down MANIFEST\n");
            else
                pd_launch_usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        if (down)
            fprintf(stderr, "usage: pdctl down MANIFEST\n");
        else
            pd_launch_usage(stderr);
        return 2;
    }
    char err[512] = "";
    if (pd_manifest_load(argv[optind], &l->m, err, sizeof(err)) != PD_OK) {
        fprintf(stderr, "pdctl: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n_sets; i++) {
        if (pd_manifest_set(&l->m, sets[i], err, sizeof(err)) != PD_OK) {
            fprintf(stderr, "pdctl: --set %s: %s\n", sets[i], err);
            return 1;
        }
    }
    pd_launch_run_dir(l->run_dir, sizeof(l->run_dir));
    snprintf(l->state_path, sizeof(l->state_path), "%s/%s-%u.state", l->run_dir, l->m.name,
             l->m.base_port);
    pd_launch_bin_dir(l->bin_dir, sizeof(l->bin_dir));
    return 0;
}

int pd_cmd_down(int argc, char **argv)
{
    pd_launch_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return 1;
    int rc = pd_launch_parse(argc, argv, l, true);
    if (rc == 0)
        rc = pd_launch_down_state(l->state_path);
    free(l);
    return rc;
}

int pd_cmd_up(int argc, char **argv)
{
    int rc = 1;
    pd_launch_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return 1;
    rc = pd_launch_parse(argc, argv, l, false);
    if (rc != 0)
        goto out;
    rc = 1;
    if (access(l->state_path, F_OK) == 0) {
        fprintf(stderr,
                "pdctl: %s exists: cluster '%s' on port %u looks up already "
                "('pdctl down' first)\n",
                l->state_path, l->m.name, l->m.base_port);
        goto out;
    }
    if (pd_launch_mkdirs(l->run_dir) != 0) {
        fprintf(stderr, "pdctl: cannot create %s: %s\n", l->run_dir, strerror(errno));
        goto out;
    }
    if (pd_launch_ensure_model(l) != 0)
        goto out;
    pd_launch_plan(l);
    if (l->m.namespaces && pd_launch_ns_setup(l) != 0) {
        char ns[PD_LAUNCH_MAX_PROCS][32];
        for (int i = 0; i < l->n_procs; i++)
            pd_launch_ns_names(l, i, ns[i], (char[16]){0}, (char[16]){0});
        pd_launch_ns_teardown(l->bridge, ns, l->n_procs);
        goto out;
    }

    struct sigaction sa = {.sa_handler = pd_launch_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (int i = 0; i < l->n_procs; i++) {
        if (pd_launch_spawn(l, i) != 0)
            goto fail;
    }
    if (pd_launch_write_state(l) != 0) {
        fprintf(stderr, "pdctl: cannot write %s\n", l->state_path);
        goto fail;
    }

    /* Wait until the router lists every worker, relaying output meanwhile. */
    char client[128];
    snprintf(client, sizeof(client), "tcp://%s:%u", l->procs[0].ip, l->m.base_port);
    int want = l->n_procs - 1;
    uint64_t deadline = pd_time_now_ms() + (uint64_t)l->ready_timeout_s * 1000;
    uint64_t next_probe = 0;
    bool ready = false;
    while (!pd_launch_stop) {
        struct pollfd pfd[PD_LAUNCH_MAX_PROCS];
        int map[PD_LAUNCH_MAX_PROCS], n = 0;
        for (int i = 0; i < l->n_procs; i++) {
            if (l->procs[i].out_fd >= 0) {
                pfd[n] = (struct pollfd){l->procs[i].out_fd, POLLIN, 0};
                map[n++] = i;
            }
        }
        int pr = poll(pfd, (nfds_t)n, 100);
        for (int k = 0; pr > 0 && k < n; k++) {
            if (pfd[k].revents != 0)
                pd_launch_relay(&l->procs[map[k]]);
        }
        int alive = pd_launch_reap(l, true);
        if (alive < l->n_procs) {
            fprintf(stderr, "pdctl: a process of cluster '%s' ended; stopping the rest%s\n",
                    l->m.name, l->detach ? " (logs in the run directory)" : "");
            goto fail;
        }
        if (ready)
            continue;
        uint64_t now = pd_time_now_ms();
        if (now >= next_probe) {
            next_probe = now + 250;
            int n_workers = 0;
            if (pd_launch_router_workers(client, 200, &n_workers) == 0 && n_workers >= want) {
                ready = true;
                printf("pdctl: cluster '%s' ready: %d workers, router at %s\n", l->m.name, want,
                       client);
                fflush(stdout);
                if (l->detach) {
                    rc = 0;
                    goto out;
                }
            }
        }
        if (!ready && pd_time_now_ms() >= deadline) {
            fprintf(stderr, "pdctl: cluster '%s' not ready after %d s\n", l->m.name,
                    l->ready_timeout_s);
            goto fail;
        }
    }
    /* Ctrl-C in the foreground: an orderly stop is success. */
    rc = 0;
    fprintf(stderr, "pdctl: stopping cluster '%s'\n", l->m.name);
fail:
    for (int i = 0; i < l->n_procs; i++) {
        if (l->procs[i].out_fd >= 0)
            pd_launch_relay(&l->procs[i]);
    }
    if (access(l->state_path, F_OK) == 0) {
        pd_launch_down_state(l->state_path);
    } else {
        pid_t pids[PD_LAUNCH_MAX_PROCS];
        char ns[PD_LAUNCH_MAX_PROCS][32];
        for (int i = 0; i < l->n_procs; i++) {
            pids[i] = l->procs[i].exited ? 0 : l->procs[i].pid;
            snprintf(ns[i], sizeof(ns[i]), "%s", l->procs[i].ns);
        }
        pd_launch_stop_pids(pids, l->n_procs, 5000);
        pd_launch_ns_teardown(l->bridge, ns, l->n_procs);
    }
out:
    for (int i = 0; i < l->n_procs; i++) {
        if (l->procs[i].out_fd >= 0)
            close(l->procs[i].out_fd);
    }
    free(l);
    return rc;
}
