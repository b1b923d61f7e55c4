/* pd-router: parse the command line, run the router until SIGINT or SIGTERM. */
#include "pd/log.h"
#include "pd/manifest.h"
#include "pd/router.h"
#include "pd/signals.h"

#include <stdio.h>

static volatile int pd_router_main_stop;

static void pd_router_main_on_signal(int sig)
{
    (void)sig;
    pd_router_main_stop = 1;
}

int main(int argc, char **argv)
{
    pd_router_config_t config;
    pd_router_t *router = NULL;
    pd_status_t st;

    pd_log_init("router");
    /* Under a scheduler the whole configuration comes from PD_MANIFEST (PD_ROLE=router,
     * PD_HOST: the address to bind); options on the command line still win. */
    if (!pd_manifest_main_argv("router", "pd-router", &argc, &argv))
        return 2;
    st = pd_router_config_parse(argc, argv, &config);
    if (st == PD_INPROGRESS)
        return 0;
    if (st != PD_OK)
        return 2;

    pd_signals_install(pd_router_main_on_signal, false);

    st = pd_router_create(&config, &router);
    if (st != PD_OK) {
        fprintf(stderr, "pd-router: %s\n", pd_status_str(st));
        return 1;
    }
    st = pd_router_run(router, &pd_router_main_stop);
    pd_router_destroy(&router);
    return st == PD_OK ? 0 : 1;
}
