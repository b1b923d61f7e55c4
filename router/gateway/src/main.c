/* pd-gateway: parse the command line, run the gateway until SIGINT or SIGTERM; SIGHUP
 * reloads the key file. `--keygen TENANT` and `--hash-key` are key tools that run alone. */
#include "gw_int.h"

#include "pd/log.h"
#include "pd/manifest.h"
#include "pd/signals.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile int pd_gw_main_stop;
static volatile int pd_gw_main_reload;

static void pd_gw_main_on_signal(int sig)
{
    if (sig == SIGHUP)
        pd_gw_main_reload = 1;
    else
        pd_gw_main_stop = 1;
}

int main(int argc, char **argv)
{
    pd_gw_config_t config;
    pd_gw_t *gw = NULL;
    pd_status_t st;

    if (argc >= 2 && strcmp(argv[1], "--keygen") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: pd-gateway --keygen TENANT\n");
            return 2;
        }
        return pd_gw_keys_keygen(argv[2]);
    }
    if (argc == 2 && strcmp(argv[1], "--hash-key") == 0)
        return pd_gw_keys_hash_stdin();

    pd_log_init("gateway");
    /* Under a scheduler the whole configuration comes from PD_MANIFEST (PD_ROLE=gateway,
     * PD_HOST: the address to listen on, PD_ROUTER); options given here still win. */
    if (!pd_manifest_main_argv("gateway", "pd-gateway", &argc, &argv))
        return 2;
    st = pd_gw_config_parse(argc, argv, &config);
    if (st == PD_INPROGRESS)
        return 0;
    if (st != PD_OK)
        return 2;

    pd_signals_install(pd_gw_main_on_signal, true);

    st = pd_gw_create(&config, &gw);
    if (st != PD_OK) {
        fprintf(stderr, "pd-gateway: %s\n", pd_status_str(st));
        return 1;
    }
    st = pd_gw_run(gw, &pd_gw_main_stop, &pd_gw_main_reload);
    pd_gw_destroy(&gw);
    return st == PD_OK ? 0 : 1;
}
