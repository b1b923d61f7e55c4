/* How every pdkv process is asked to stop. */
#ifndef PD_SIGNALS_H
#define PD_SIGNALS_H

#include <stdbool.h>

/* Run handler on SIGINT and SIGTERM, and on SIGHUP too when hangup is true; ignore
 * SIGPIPE, so that writing to a peer that went away is an error return, not death. */
void pd_signals_install(void (*handler)(int sig), bool hangup);

#endif
