/* pdctl up / pdctl down: the local launcher for cluster manifests.
 *
 * up: makes the model if the manifest names a preset and the path is missing, optionally
 * builds a bridge and one network namespace per process, starts pd-router and every
 * worker, and waits until the router lists all workers. In the foreground it relays every
 * child's output with a "[role-i]" prefix and stops the cluster on Ctrl-C; with -d it
 * writes logs to the run directory and returns. A state file in the run directory
 * (.pdkv/run/NAME-PORT.state, or under $PD_RUN_DIR) records the pids and namespaces for
 * down. The jobs live in launch_plan.c, launch_ns.c, launch_proc.c and launch_state.c. */
#include "launch_int.h"

#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/client.h"
#include "pd/log.h"
#include "pd/signals.h"
#include "pd/time.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t pd_launch_stop;

static void pd_launch_on_signal(int sig)
{
    (void)sig;
    pd_launch_stop = 1;
}

/* The router's workers, asked as 'pdctl status' asks (pd/client.h): a status request on
 * the client socket. */
int pd_launch_router_workers(const char *endpoint, int timeout_ms, int *n_workers_p,
                             char (*ids)[80], int cap)
{
    pd_client_t *c = NULL;
    if (pd_client_connect(endpoint, &c) != PD_OK)
        return -1;
    int rc = -1;
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
    pd_proto_msg_t reply;
    pd_proto_fault_t fault;
    if (pd_client_send(c, &m) != PD_OK || pd_client_recv(c, timeout_ms, &reply, &fault) != PD_OK)
        goto out;
    if (reply.type == PD_PROTO_TYPE_STATUS_REPLY) {
        const pd_proto_status_reply_t *s = &reply.u.status_reply;
        *n_workers_p = (int)s->n_workers;
        for (uint32_t i = 0; ids != NULL && i < s->n_workers && (int)i < cap; i++)
            snprintf(ids[i], 80, "%s (%s)", s->workers[i].id,
                     pd_proto_role_name(s->workers[i].role));
        rc = 0;
    }
    pd_proto_msg_cleanup(&reply);
out:
    pd_client_destroy(&c);
    return rc;
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

    pd_signals_install(pd_launch_on_signal, false);

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
