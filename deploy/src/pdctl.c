/* pdctl: the pdkv command-line tool. main() only dispatches: each subcommand is a
 * function in its own file, listed in the table below. */
#include "pdctl_int.h"

#include "cmd_client.h"
#include "launch.h"
#include "pd/log.h"
#include "pd/strdist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const pd_cli_cmd_t pd_cli_cmds[] = {
    {"model", "make, inspect, quantize or compare model files: 'model new|info|quantize|compare'",
     pd_cmd_model},
    {"generate", "run a prompt through a model in this process (no cluster)", pd_cmd_generate},
    {"tokenize", "text to token ids with a tokenizer.json or tokenizer.bin", pd_cmd_tokenize},
    {"detokenize", "token ids back to text", pd_cmd_detokenize},
    {"template", "render a conversation with a tokenizer's chat template", pd_cmd_template},
    {"size", "KV cache bytes per token and block, and what a pool holds", pd_cmd_size},
    {"up", "start the roles of a cluster manifest on this machine", pd_cmd_up},
    {"down", "stop a cluster started with 'up -d'", pd_cmd_down},
    {"render", "the manifest as a Slurm batch script or Kubernetes objects", pd_cmd_render},
    {"submit", "send one request to a router and stream its tokens", pd_cmd_submit},
    {"status", "a router's workers, block directory and queue", pd_cmd_status},
    {"bench", "open-loop load against a router: TTFT/TPOT, throughput, cache hits", pd_cmd_bench},
};

#define PD_CLI_N_CMDS (sizeof(pd_cli_cmds) / sizeof(pd_cli_cmds[0]))

static void pd_cli_usage(FILE *out)
{
    fprintf(out, "usage: pdctl <command> [options]\n"
                 "\n"
                 "pdkv, a disaggregated prefill/decode LLM serving cluster.\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < PD_CLI_N_CMDS; i++)
        fprintf(out, "  %-10s %s\n", pd_cli_cmds[i].name, pd_cli_cmds[i].summary);
    fprintf(out, "\n'pdctl <command> --help' describes a command's options.\n"
                 "PD_LOG_LEVEL=error|warn|info|debug|trace sets how much is logged to "
                 "stderr.\n");
}

int main(int argc, char **argv)
{
    pd_log_init("pdctl");
    /* Library errors read like pdctl's own ("pdctl: what: why") unless the user asked
     * for a log level, and with it the full log format. */
    const char *level = getenv("PD_LOG_LEVEL");
    if (level == NULL || level[0] == '\0')
        pd_log_set_plain(1);
    if (argc < 2) {
        pd_cli_usage(stderr);
        return PD_CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        pd_cli_usage(stdout);
        return PD_CLI_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("pdctl (pdkv) 0.1.0\n");
        return PD_CLI_OK;
    }
    for (size_t i = 0; i < PD_CLI_N_CMDS; i++) {
        if (strcmp(name, pd_cli_cmds[i].name) == 0)
            return pd_cli_cmds[i].run(argc - 1, argv + 1);
    }
    const char *names[PD_CLI_N_CMDS];
    for (size_t i = 0; i < PD_CLI_N_CMDS; i++)
        names[i] = pd_cli_cmds[i].name;
    const char *close = pd_str_closest(name, names, PD_CLI_N_CMDS);
    if (close != NULL) {
        fprintf(stderr, "pdctl: unknown command '%s'; did you mean '%s'?\n", name, close);
        return PD_CLI_USAGE;
    }
    fprintf(stderr, "pdctl: unknown command '%s'\n\n", name);
    pd_cli_usage(stderr);
    return PD_CLI_USAGE;
}
