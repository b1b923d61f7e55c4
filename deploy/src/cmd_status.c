/* pdctl status: ask a router for its workers, directory and queue. */
#include "cmd_client.h"
#include "pdctl_int.h"

#include "cli_opt.h"
#include "launch.h"
#include "pd/client.h"
#include "pd/json.h"

#include <stdio.h>
#include <string.h>

static void pd_cmd_status_usage(FILE *out)
{
    fprintf(out, "usage: pdctl status [MANIFEST | -r ROUTER] [--json | --worker ID]\n"
                 "                    [--timeout-ms MS] [-w SECONDS]\n"
                 "                    [--curve-server-key Z85 --curve-secret-file PATH]\n"
                 "\n"
                 "Print the router's workers (role, epoch, state, load, blocks, blocks the\n"
                 "directory lists for each), the directory size, the queue depth and the\n"
                 "requests in flight. Exit status 1 when the router does not answer.\n"
                 "\n"
                 "  MANIFEST            the cluster that 'pdctl up MANIFEST' started (its\n"
                 "                      router's endpoint is read from the run directory)\n"
                 "  -r, --router EP     the router's client endpoint: tcp://HOST:PORT,\n"
                 "                      HOST:PORT or :PORT (default tcp://127.0.0.1:7100)\n"
                 "  -w, --wait SECONDS  wait this long for a router to accept connections\n"
                 "                      (default 0: fail at once when none answers)\n"
                 "  --json              print one JSON object\n"
                 "  --worker ID         print only that worker's state; exit status 0 only\n"
                 "                      when it is registered and ready (a readiness probe)\n"
                 "  --timeout-ms MS     how long to wait for the answer (default 5000)\n"
                 "  --curve-server-key K, --curve-secret-file F  authenticate with CURVE (see\n"
                 "                      'pdctl submit --help')\n");
}

static void pd_cmd_status_print_json(const char *router, const pd_proto_status_reply_t *s)
{
    printf("{\"router\":");
    pd_json_fprint_string(stdout, router, strlen(router));
    printf(",\"workers\":[");
    for (uint32_t i = 0; i < s->n_workers; i++) {
        const pd_proto_worker_info_t *w = &s->workers[i];
        printf("%s{\"id\":", i ? "," : "");
        pd_json_fprint_string(stdout, w->id, strlen(w->id));
        printf(",\"role\":\"%s\",\"epoch\":%llu,\"state\":", pd_proto_role_name(w->role),
               (unsigned long long)w->epoch);
        pd_json_fprint_string(stdout, w->state, strlen(w->state));
        printf(",\"load\":{\"running\":%u,\"queued\":%u},\"n_blocks\":%u,\"free_blocks\":%u,"
               "\"directory_blocks\":%u}",
               w->running, w->queued, w->n_blocks, w->free_blocks, w->directory_blocks);
    }
    printf("],\"directory_blocks\":%llu,\"queue_depth\":%u,\"requests_in_flight\":%u,"
           "\"holder_reads\":%llu,\"recomputed_blocks\":%llu}\n",
           (unsigned long long)s->directory_blocks, s->queue_depth, s->requests_in_flight,
           (unsigned long long)s->holder_reads, (unsigned long long)s->recomputed_blocks);
}

static void pd_cmd_status_print_table(const char *router, const pd_proto_status_reply_t *s)
{
    printf("router %s: %u workers, directory %llu blocks, queue %u, in flight %u, "
           "holder reads %llu, recomputed blocks %llu\n",
           router, s->n_workers, (unsigned long long)s->directory_blocks, s->queue_depth,
           s->requests_in_flight, (unsigned long long)s->holder_reads,
           (unsigned long long)s->recomputed_blocks);
    if (s->n_workers == 0)
        return;
    printf("%-20s %-8s %-20s %-10s %7s %7s %9s %9s %9s\n", "ID", "ROLE", "EPOCH", "STATE",
           "RUNNING", "QUEUED", "BLOCKS", "FREE", "DIR");
    for (uint32_t i = 0; i < s->n_workers; i++) {
        const pd_proto_worker_info_t *w = &s->workers[i];
        printf("%-20s %-8s %-20llu %-10s %7u %7u %9u %9u %9u\n", w->id, pd_proto_role_name(w->role),
               (unsigned long long)w->epoch, w->state, w->running, w->queued, w->n_blocks,
               w->free_blocks, w->directory_blocks);
    }
}

static const pd_cli_opt_t pd_cmd_status_opts[] = {
    PD_CLI_OPT_ROUTER,
    PD_CLI_OPT_JSON,
    PD_CLI_OPT_TIMEOUT_MS,
    PD_CLI_OPT_WAIT,
    {"worker", 0, true, 'I', NULL},
    PD_CLI_OPT_CURVE_KEY,
    PD_CLI_OPT_CURVE_SECRET,
    PD_CLI_OPT_HELP,
    PD_CLI_OPT_END_TABLE,
};

int pd_cmd_status(int argc, char **argv)
{
    char router[300];
    const char *server_key = NULL, *secret_file = NULL, *worker = NULL;
    bool json = false, router_given = false;
    uint32_t timeout_ms = 5000, wait_s = 0;
    pd_cli_parser_t p;
    int ch;

    snprintf(router, sizeof(router), "%s", PD_CLI_DEFAULT_ROUTER);
    pd_cli_parser_init(&p, "status", argc, argv, pd_cmd_status_opts);
    while ((ch = pd_cli_opt_next(&p)) != PD_CLI_OPT_END) {
        switch (ch) {
        case 'r':
            if (!pd_cli_parse_endpoint("--router", p.arg, router, sizeof(router)))
                return PD_CLI_USAGE;
            router_given = true;
            break;
        case 'J':
            json = true;
            break;
        case 'I':
            worker = p.arg;
            break;
        case 'O':
            if (!pd_cli_parse_u32("--timeout-ms", p.arg, 1, 86400000, &timeout_ms))
                return PD_CLI_USAGE;
            break;
        case 'W':
            if (!pd_cli_parse_u32("--wait", p.arg, 0, 3600, &wait_s))
                return PD_CLI_USAGE;
            break;
        case 'V':
            server_key = p.arg;
            break;
        case 'F':
            secret_file = p.arg;
            break;
        case 'h':
            pd_cmd_status_usage(stdout);
            return PD_CLI_OK;
        default:
            return PD_CLI_USAGE;
        }
    }
    if (!pd_cli_parser_want_pos(&p, 0, 1, "MANIFEST"))
        return PD_CLI_USAGE;
    if (p.n_pos == 1) {
        if (router_given) {
            pd_cli_error("status: give a MANIFEST or --router, not both");
            return PD_CLI_USAGE;
        }
        int lrc = pd_launch_client_endpoint(p.pos[0], router, sizeof(router));
        if (lrc != PD_CLI_OK)
            return lrc;
    }
    if (!pd_cli_router_reach("status", router, wait_s))
        return PD_CLI_FAIL;

    pd_client_t *c = NULL;
    int rc = PD_CLI_FAIL;
    if (pd_client_connect_opt("pdctl: status", router, server_key, secret_file, &c) != PD_OK) {
        pd_cli_error("status: cannot connect to %s", router);
        return PD_CLI_FAIL;
    }
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
    if (pd_client_send(c, &m) != PD_OK) {
        fprintf(stderr, "pdctl: status: cannot send to %s\n", router);
        goto out;
    }
    pd_proto_msg_t reply;
    pd_proto_fault_t fault;
    pd_status_t st = pd_client_recv(c, (int)timeout_ms, &reply, &fault);
    if (st == PD_ERR_TIMEOUT) {
        fprintf(stderr, "pdctl: status: no answer from %s in %u ms\n", router, timeout_ms);
        goto out;
    }
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: status: bad answer from %s: %s\n", router,
                st == PD_ERR_CANCELED ? "interrupted" : fault.reason);
        goto out;
    }
    if (reply.type == PD_PROTO_TYPE_STATUS_REPLY && worker != NULL) {
        /* A readiness probe's question: is this worker registered and in sync? */
        const pd_proto_status_reply_t *s = &reply.u.status_reply;
        const char *state = "not registered";
        for (uint32_t i = 0; i < s->n_workers; i++) {
            if (strcmp(s->workers[i].id, worker) == 0)
                state = s->workers[i].state;
        }
        printf("%s: %s\n", worker, state);
        rc = strcmp(state, "ready") == 0 ? PD_CLI_OK : PD_CLI_FAIL;
    } else if (reply.type == PD_PROTO_TYPE_STATUS_REPLY) {
        if (json)
            pd_cmd_status_print_json(router, &reply.u.status_reply);
        else
            pd_cmd_status_print_table(router, &reply.u.status_reply);
        rc = PD_CLI_OK;
    } else if (reply.type == PD_PROTO_TYPE_ERROR) {
        fprintf(stderr, "pdctl: status: %s: %s\n", pd_status_name(reply.u.error.code),
                reply.u.error.message);
    } else {
        fprintf(stderr, "pdctl: status: unexpected '%s' from %s\n", pd_proto_type_name(reply.type),
                router);
    }
    pd_proto_msg_cleanup(&reply);
out:
    pd_client_destroy(&c);
    return rc;
}
