/* pdctl up's child processes: spawn one (its output to a pipe in the foreground, to a log
 * file with -d), relay its lines with a [name] prefix, note the likely cause of its death,
 * reap, and stop with SIGTERM then SIGKILL. */
#include "launch_int.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/time.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int pd_launch_spawn(pd_launch_t *l, int idx)
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
void pd_launch_relay(pd_launch_proc_t *p)
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
int pd_launch_reap(pd_launch_t *l, bool report)
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
void pd_launch_stop_pids(pid_t *pids, int n, int grace_ms)
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
