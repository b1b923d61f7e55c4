/* pdctl up's state file, NAME-PORT.state in the run directory: the bridge, the client
 * endpoint, and per process its pid, name and namespace, which is all 'pdctl down' and
 * 'pdctl status MANIFEST' need. */
#include "launch_int.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int pd_launch_write_state(const pd_launch_t *l)
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

int pd_launch_state_read(const char *state_path, pd_launch_state_t *st)
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
int pd_launch_state_alive(const pd_launch_state_t *st)
{
    int alive = 0;
    for (int i = 0; i < st->n; i++)
        if (st->pids[i] > 0 && (kill(st->pids[i], 0) == 0 || errno == EPERM))
            alive++;
    return alive;
}

/* Stop everything recorded in a state file and delete the file. With report, say what
 * was stopped (or that nothing ran any more) on stdout. */
int pd_launch_down_state(const char *state_path, const char *name, bool report)
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

/* With no --set network.base_port, a cluster of this name started on another port
 * (by 'up --set network.base_port=N') is found by its state file NAME-PORT.state.
 * Returns 0 (state_path updated when one other file matched), or 1 after printing why
 * when several do. */
int pd_launch_state_by_name(pd_launch_t *l)
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
