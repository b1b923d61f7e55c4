/* pdctl up / pdctl down: the local launcher for cluster manifests.
 *
 * up: makes the model if the manifest names a preset and the path is missing, optionally
 * builds a bridge and one network namespace per process, starts pd-router and every
 * worker, and waits until the router lists all workers. In the foreground it relays every
 * child's output with a "[role-i]" prefix and stops the cluster on Ctrl-C; with -d it
 * writes logs to the run directory and returns. A state file in the run directory
 * (.pdkv/run/NAME.state, or $PD_RUN_DIR) records the pids and namespaces for down. */
#include "launch.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/log.h"
#include "pd/manifest.h"
#include "pd/mp.h"
#include "pd/time.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
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
    char cause[256]; /* its last error line, or its last line */
    bool cause_is_error;
    bool exited;
} pd_launch_proc_t;

typedef struct pd_launch {
    pd_manifest_t m;
    char run_dir[1024];
    char state_path[PATH_MAX];
    char bin_dir[1024];
    char bridge[16];
    const char *manifest_path; /* as given on the command line */
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

int pd_launch_router_workers(const char *endpoint, int timeout_ms, int *n_workers_p,
                             char (*ids)[80], int cap)
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
                for (uint32_t i = 0; ids != NULL && i < workers->size && (int)i < cap; i++) {
                    char id[48] = "?", role[16] = "?";
                    pd_mp_get_strcpy(&workers->ptr[i], "id", id, sizeof(id));
                    pd_mp_get_strcpy(&workers->ptr[i], "role", role, sizeof(role));
                    snprintf(ids[i], 80, "%s (%s)", id, role);
                }
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

/* The plan: router first, then prefill, decode and colocated workers, then gateways, with
 * addresses. */
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
                 {"both", m->both.count},
                 {"gateway", m->gateway_count}};
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
    bool gateway = strcmp(role, "gateway") == 0;
    PD_ARG("%s/%s", l->bin_dir,
           idx == 0  ? "pd-router"
           : prefill ? "pd-prefill"
           : gateway ? "pd-gateway"
                     : "pd-decode");
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
        /* Logs are what a user reads when something went wrong: info unless the user
         * chose a level. */
        setenv("PD_LOG_LEVEL", "info", 0);
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

/* Keep line as the likely cause of a process's death: the last line logged at ERROR
 * level wins; any line does while none was. The log prefix (time, component, level,
 * file:line) is dropped. */
static void pd_launch_note_cause(char *cause, size_t n, bool *is_error, const char *line)
{
    const char *err = strstr(line, " error ");
    if (err == NULL) {
        if (line[0] != '\0' && !*is_error)
            snprintf(cause, n, "%s", line);
        return;
    }
    const char *msg = err + 7; /* " error " */
    while (*msg == ' ')
        msg++;
    const char *sp = strchr(msg, ' '); /* skip "file.c:123 " */
    if (sp != NULL && memchr(msg, ':', (size_t)(sp - msg)) != NULL)
        msg = sp + 1;
    snprintf(cause, n, "%s", msg);
    *is_error = true;
}

/* The cause of a detached process's death: read from its log file. */
static void pd_launch_cause_from_log(const char *path, pd_launch_proc_t *p)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[2048];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        pd_launch_note_cause(p->cause, sizeof(p->cause), &p->cause_is_error, line);
    }
    fclose(f);
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
            *nl = '\0';
            pd_launch_note_cause(p->cause, sizeof(p->cause), &p->cause_is_error, start);
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
                char log_path[PATH_MAX] = "";
                if (l->detach) {
                    snprintf(log_path, sizeof(log_path), "%s/%s-%s.log", l->run_dir, l->m.name,
                             p->name);
                    pd_launch_cause_from_log(log_path, p);
                }
                char how[64];
                if (WIFSIGNALED(st))
                    snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(st));
                else
                    snprintf(how, sizeof(how), "exited with %d", WEXITSTATUS(st));
                pd_cli_error("up: %s (pid %d) %s: %s%s%s", p->name, (int)p->pid, how,
                             p->cause[0] ? p->cause : "no output", log_path[0] ? "; log: " : "",
                             log_path);
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

/* What a state file records. */
typedef struct pd_launch_state {
    pid_t pids[PD_LAUNCH_MAX_PROCS];
    char names[PD_LAUNCH_MAX_PROCS][32];
    char ns[PD_LAUNCH_MAX_PROCS][32];
    char bridge[16];
    char client[128];
    int n;
} pd_launch_state_t;

static int pd_launch_state_read(const char *state_path, pd_launch_state_t *st)
{
    memset(st, 0, sizeof(*st));
    FILE *f = fopen(state_path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL && st->n < PD_LAUNCH_MAX_PROCS) {
        char name[32], nsname[32], br[16], client[128];
        int pid;
        if (sscanf(line, "proc %d %31s %31s", &pid, name, nsname) == 3) {
            st->pids[st->n] = pid;
            snprintf(st->names[st->n], sizeof(st->names[0]), "%s", name);
            snprintf(st->ns[st->n], sizeof(st->ns[0]), "%s", strcmp(nsname, "-") ? nsname : "");
            st->n++;
        } else if (sscanf(line, "bridge %15s", br) == 1 && strcmp(br, "-") != 0) {
            snprintf(st->bridge, sizeof(st->bridge), "%s", br);
        } else if (sscanf(line, "client %127s", client) == 1) {
            snprintf(st->client, sizeof(st->client), "%s", client);
        }
    }
    fclose(f);
    return 0;
}

/* How many of the recorded processes still run (kill(pid, 0) finds them). */
static int pd_launch_state_alive(const pd_launch_state_t *st)
{
    int alive = 0;
    for (int i = 0; i < st->n; i++)
        if (st->pids[i] > 0 && (kill(st->pids[i], 0) == 0 || errno == EPERM))
            alive++;
    return alive;
}

/* Stop everything recorded in a state file and delete the file. With report, say what
 * was stopped (or that nothing ran any more) on stdout. */
static int pd_launch_down_state(const char *state_path, const char *name, bool report)
{
    pd_launch_state_t st;
    if (pd_launch_state_read(state_path, &st) != 0) {
        pd_cli_error("down: cannot read %s: %s", state_path, strerror(errno));
        return 1;
    }
    bool was_alive[PD_LAUNCH_MAX_PROCS];
    pid_t recorded[PD_LAUNCH_MAX_PROCS];
    memcpy(recorded, st.pids, sizeof(recorded));
    int n_alive = 0;
    for (int i = 0; i < st.n; i++) {
        was_alive[i] = st.pids[i] > 0 && (kill(st.pids[i], 0) == 0 || errno == EPERM);
        n_alive += was_alive[i];
    }
    /* Workers first (they release and deregister), the router last. */
    if (st.n > 1)
        pd_launch_stop_pids(st.pids + 1, st.n - 1, 5000);
    if (st.n > 0)
        pd_launch_stop_pids(st.pids, 1, 5000);
    pd_launch_ns_teardown(st.bridge, st.ns, st.n);
    unlink(state_path);
    if (!report)
        return 0;
    if (n_alive == 0) {
        printf("pdctl: cluster '%s' was not running (its %d processes had exited); removed %s\n",
               name, st.n, state_path);
    } else {
        printf("pdctl: stopped cluster '%s': %d processes (", name, n_alive);
        int k = 0;
        for (int i = 0; i < st.n; i++)
            if (was_alive[i])
                printf("%s%s pid %d", k++ ? ", " : "", st.names[i], (int)recorded[i]);
        printf(")\n");
    }
    fflush(stdout);
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

static const pd_cli_opt_t pd_launch_opts[] = {
    {"detach", 'd', false, 'd', NULL},
    PD_CLI_OPT_SET,
    {"ready-timeout", 0, true, 't', NULL},
    PD_CLI_OPT_HELP,
    PD_CLI_OPT_END_TABLE,
};

static const pd_cli_opt_t pd_launch_down_opts[] = {
    PD_CLI_OPT_SET,
    PD_CLI_OPT_HELP,
    PD_CLI_OPT_END_TABLE,
};

static void pd_launch_down_usage(FILE *out)
{
    fprintf(out, "usage: pdctl down MANIFEST [--set network.base_port=N]\n"
                 "\n"
                 "Stop a cluster started with 'pdctl up -d MANIFEST': workers first, then the\n"
                 "router (SIGTERM, SIGKILL after 5 s), and remove its network namespaces. The\n"
                 "cluster is found by the manifest's name in the run directory, so a --set\n"
                 "given to 'up' need not be repeated unless two clusters of that name run.\n"
                 "Stopping a cluster that is not running is not an error.\n");
}

/* With no --set network.base_port, a cluster of this name started on another port
 * (by 'up --set network.base_port=N') is found by its state file NAME-PORT.state.
 * Returns 0 (state_path updated when one other file matched), or 1 after printing why
 * when several do. */
static int pd_launch_state_by_name(pd_launch_t *l)
{
    if (access(l->state_path, F_OK) == 0)
        return 0;
    DIR *d = opendir(l->run_dir);
    if (d == NULL)
        return 0;
    char found[PATH_MAX] = "", ports[256] = "";
    int n_found = 0;
    size_t name_len = strlen(l->m.name);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *f = e->d_name;
        size_t len = strlen(f);
        char *end = NULL;
        if (len <= name_len + 7 || strncmp(f, l->m.name, name_len) != 0 || f[name_len] != '-' ||
            strcmp(f + len - 6, ".state") != 0)
            continue;
        unsigned long port = strtoul(f + name_len + 1, &end, 10);
        if (end != f + len - 6 || port == 0 || port > 65535)
            continue;
        n_found++;
        snprintf(found, sizeof(found), "%s/%s", l->run_dir, f);
        size_t used = strlen(ports);
        snprintf(ports + used, sizeof(ports) - used, "%s%lu", used ? ", " : "", port);
    }
    closedir(d);
    if (n_found == 1) {
        snprintf(l->state_path, sizeof(l->state_path), "%s", found);
    } else if (n_found > 1) {
        pd_cli_error("several clusters named '%s' are up (base ports %s): add --set "
                     "network.base_port=PORT",
                     l->m.name, ports);
        return 1;
    }
    return 0;
}

static int pd_launch_parse(int argc, char **argv, pd_launch_t *l, bool down)
{
    const char *cmd = argv[0];
    const char *sets[32];
    int n_sets = 0;
    bool port_set = false;
    pd_cli_parser_t p;
    int c;
    l->ready_timeout_s = 120;
    pd_cli_parser_init(&p, cmd, argc, argv, down ? pd_launch_down_opts : pd_launch_opts);
    while ((c = pd_cli_opt_next(&p)) != PD_CLI_OPT_END) {
        switch (c) {
        case 'd':
            l->detach = true;
            break;
        case 's':
            if (n_sets == 32) {
                pd_cli_error("%s: more than 32 --set options", cmd);
                return 2;
            }
            if (strncmp(p.arg, "network.base_port=", 18) == 0)
                port_set = true;
            sets[n_sets++] = p.arg;
            break;
        case 't': {
            uint32_t t;
            if (!pd_cli_parse_u32("--ready-timeout", p.arg, 1, 3600, &t))
                return 2;
            l->ready_timeout_s = (int)t;
            break;
        }
        case 'h':
            if (down)
                pd_launch_down_usage(stdout);
            else
                pd_launch_usage(stdout);
            return -1;
        default:
            return 2;
        }
    }
    if (!pd_cli_parser_want_pos(&p, 1, 1, "MANIFEST"))
        return 2;
    char err[512] = "";
    l->manifest_path = p.pos[0];
    pd_status_t st = pd_manifest_load(p.pos[0], &l->m, err, sizeof(err));
    if (st != PD_OK) {
        pd_cli_error("%s", err);
        return 1;
    }
    for (int i = 0; i < n_sets; i++) {
        if (pd_manifest_set(&l->m, sets[i], err, sizeof(err)) != PD_OK) {
            pd_cli_error("--set %s: %s", sets[i], err);
            return 2;
        }
    }
    pd_launch_run_dir(l->run_dir, sizeof(l->run_dir));
    snprintf(l->state_path, sizeof(l->state_path), "%s/%s-%u.state", l->run_dir, l->m.name,
             l->m.base_port);
    pd_launch_bin_dir(l->bin_dir, sizeof(l->bin_dir));
    if (down && !port_set)
        return pd_launch_state_by_name(l);
    return 0;
}

int pd_launch_client_endpoint(const char *manifest, char *out, size_t n)
{
    pd_launch_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return 1;
    char *argv[] = {"status", (char *)manifest, NULL};
    int rc = pd_launch_parse(2, argv, l, true);
    if (rc == 0) {
        pd_launch_state_t st;
        if (pd_launch_state_read(l->state_path, &st) == 0 && st.client[0] != '\0')
            snprintf(out, n, "%s", st.client);
        else
            snprintf(out, n, "tcp://%s:%u", l->m.host, l->m.base_port);
    }
    free(l);
    return rc;
}

int pd_cmd_down(int argc, char **argv)
{
    pd_launch_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return 1;
    int rc = pd_launch_parse(argc, argv, l, true);
    if (rc < 0) {
        rc = 0;
    } else if (rc == 0) {
        if (access(l->state_path, F_OK) != 0) {
            printf("pdctl: cluster '%s' is not running (no %s)\n", l->m.name, l->state_path);
        } else {
            rc = pd_launch_down_state(l->state_path, l->m.name, true);
        }
    }
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
    if (rc != 0) {
        rc = rc < 0 ? 0 : rc; /* -1: --help was printed */
        goto out;
    }
    rc = 1;
    if (access(l->state_path, F_OK) == 0) {
        pd_launch_state_t st;
        if (pd_launch_state_read(l->state_path, &st) == 0 && pd_launch_state_alive(&st) == 0) {
            /* A cluster that died without 'down' (machine reboot, kill -9): its record is
             * all that is left; clear it, with its namespaces, and start afresh. */
            fprintf(stderr, "pdctl: up: removing %s: none of its %d processes is running\n",
                    l->state_path, st.n);
            pd_launch_down_state(l->state_path, l->m.name, false);
        } else {
            pd_cli_error("up: cluster '%s' on port %u is already running (%d of its processes; "
                         "see %s): 'pdctl down %s' first",
                         l->m.name, l->m.base_port, pd_launch_state_alive(&st), l->state_path,
                         l->manifest_path);
            goto out;
        }
    }
    if (pd_launch_mkdirs(l->run_dir) != 0) {
        fprintf(stderr, "pdctl: cannot create %s: %s\n", l->run_dir, strerror(errno));
        goto out;
    }
    pd_launch_plan(l);
    /* Keys for the router and every worker (gateways use the client socket). */
    static char key_names[PD_LAUNCH_MAX_PROCS][32];
    int n_keys = 0;
    for (int i = 1; i < l->n_procs; i++)
        if (strncmp(l->procs[i].name, "gateway-", 8) != 0)
            memcpy(key_names[n_keys++], l->procs[i].name, sizeof(key_names[0]));
    char keys_dir[PATH_MAX];
    snprintf(keys_dir, sizeof(keys_dir), "%s/%s-%u.keys", l->run_dir, l->m.name, l->m.base_port);
    if (pd_launch_keys_make(&l->m, keys_dir, (const char(*)[32])key_names, n_keys) != 0)
        goto out;
    if (pd_launch_ensure_model(l) != 0)
        goto out;
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
    int want = l->n_procs - 1 - (int)l->m.gateway_count; /* gateways do not register */
    uint64_t deadline = pd_time_now_ms() + (uint64_t)l->ready_timeout_s * 1000;
    uint64_t next_probe = 0;
    bool ready = false;
    static char ids[PD_LAUNCH_MAX_PROCS][80], seen_ids[PD_LAUNCH_MAX_PROCS][80];
    int n_seen = 0;
    printf("pdctl: up: started %d processes of cluster '%s'; waiting up to %d s for %d workers "
           "to register (logs: %s)\n",
           l->n_procs, l->m.name, l->ready_timeout_s, want,
           l->detach ? l->run_dir : "below, prefixed [role-i]");
    fflush(stdout);
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
            pd_cli_error("up: a process of cluster '%s' ended; stopping the rest", l->m.name);
            goto fail;
        }
        if (ready)
            continue;
        uint64_t now = pd_time_now_ms();
        if (now >= next_probe) {
            next_probe = now + 250;
            int n_workers = 0;
            int got = pd_launch_router_workers(client, 200, &n_workers, ids, PD_LAUNCH_MAX_PROCS);
            for (int i = 0; got == 0 && i < n_workers && i < PD_LAUNCH_MAX_PROCS; i++) {
                bool seen = false;
                for (int k = 0; k < n_seen && !seen; k++)
                    seen = strcmp(seen_ids[k], ids[i]) == 0;
                if (!seen && n_seen < PD_LAUNCH_MAX_PROCS) {
                    memcpy(seen_ids[n_seen++], ids[i], sizeof(seen_ids[0]));
                    printf("pdctl: up: worker %s registered (%d of %d)\n", ids[i], n_seen, want);
                    fflush(stdout);
                }
            }
            if (got == 0 && n_workers >= want) {
                ready = true;
                printf("pdctl: cluster '%s' ready: %d workers, router at %s\n", l->m.name, want,
                       client);
                for (uint32_t g = 0; g < l->m.gateway_count; g++)
                    printf("pdctl: gateway-%u at http://%s:%u\n", g,
                           l->procs[l->n_procs - (int)l->m.gateway_count + (int)g].ip,
                           l->m.gateway_port + g);
                fflush(stdout);
                if (l->detach) {
                    rc = 0;
                    goto out;
                }
            }
        }
        if (!ready && pd_time_now_ms() >= deadline) {
            pd_cli_error("up: cluster '%s' not ready after %d s: %d of %d workers registered "
                         "(--ready-timeout S waits longer)",
                         l->m.name, l->ready_timeout_s, n_seen, want);
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
        pd_launch_down_state(l->state_path, l->m.name, false);
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
