/* pdctl up's network namespaces: a bridge, and per process a namespace joined to it by a
 * veth pair, built and torn down with ip(8). */
#include "launch_int.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

void pd_launch_ns_names(const pd_launch_t *l, int idx, char *ns, char *veth, char *peer)
{
    snprintf(ns, 32, "pd%u-%d", l->m.base_port, idx);
    snprintf(veth, 16, "pv%u-%d", l->m.base_port % 100000, idx % 1000);
    snprintf(peer, 16, "pe%u-%d", l->m.base_port % 100000, idx % 1000);
}

int pd_launch_ns_setup(pd_launch_t *l)
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

void pd_launch_ns_teardown(const char *bridge, char ns[][32], int n)
{
    for (int i = 0; i < n; i++) {
        if (ns[i][0] != '\0')
            pd_launch_sh(true, "ip netns del %s", ns[i]);
    }
    if (bridge[0] != '\0')
        pd_launch_sh(true, "ip link del %s", bridge);
}
