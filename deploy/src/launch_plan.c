/* pdctl up's plan: the run and binary directories, the processes a manifest asks for (each
 * with its role and index, stored here and used by every later step), their command lines
 * and the model they serve. */
#include "launch_int.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void pd_launch_run_dir(char *dir, size_t n)
{
    const char *env = getenv("PD_RUN_DIR");
    snprintf(dir, n, "%s", (env != NULL && env[0] != '\0') ? env : ".pdkv/run");
}

int pd_launch_mkdirs(const char *path)
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
int pd_launch_run(char *const argv[], bool quiet)
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

/* The plan: router first, then prefill, decode and colocated workers, then gateways, with
 * addresses. */
void pd_launch_plan(pd_launch_t *l)
{
    const pd_manifest_t *m = &l->m;
    l->n_procs = 0;
    int worker_idx = 0;
    for (size_t r = 0; r < PD_MANIFEST_N_ROLES; r++) {
        const char *role = pd_manifest_roles[r];
        uint32_t count = pd_manifest_role_count(m, role);
        for (uint32_t i = 0; i < count && l->n_procs < PD_LAUNCH_MAX_PROCS; i++) {
            pd_launch_proc_t *p = &l->procs[l->n_procs];
            memset(p, 0, sizeof(*p));
            p->out_fd = -1;
            snprintf(p->role, sizeof(p->role), "%s", role);
            p->index = i;
            if (r == 0)
                snprintf(p->name, sizeof(p->name), "router");
            else
                snprintf(p->name, sizeof(p->name), "%s-%u", role, i);
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
int pd_launch_argv(const pd_launch_t *l, int idx, char args[][PATH_MAX], char **argv)
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
    const char *role = p->role;
    pd_manifest_proc_t proc;
    char err[256];
    static pd_manifest_args_t margs;
    if (pd_manifest_proc_find(m, role, p->index, &proc, err, sizeof(err)) != PD_OK ||
        pd_manifest_args_build(m, &proc, p->ip, l->procs[0].ip, &margs) != PD_OK) {
        fprintf(stderr, "pdctl: %s: cannot build its command line\n", p->name);
        return -1;
    }
    /* "decode" and "both" run pd-decode. */
    const char *bin = strcmp(role, "router") == 0    ? "pd-router"
                      : strcmp(role, "prefill") == 0 ? "pd-prefill"
                      : strcmp(role, "gateway") == 0 ? "pd-gateway"
                                                     : "pd-decode";
    PD_ARG("%s/%s", l->bin_dir, bin);
    for (int i = 0; i < margs.argc && n < PD_LAUNCH_MAX_ARGS - 1; i++)
        PD_ARG("%s", margs.argv[i]);
    /* The router's requests in flight go to the run directory: a router restarted there
     * tells the clients of the one that died. */
    if (strcmp(role, "router") == 0 && n < PD_LAUNCH_MAX_ARGS - 3) {
        PD_ARG("--journal");
        PD_ARG("%s/%s-%u.journal", l->run_dir, m->name, m->base_port);
    }
#undef PD_ARG
    argv[n] = NULL;
    return 0;
}

int pd_launch_ensure_model(const pd_launch_t *l)
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

void pd_launch_bin_dir(char *dir, size_t n)
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
