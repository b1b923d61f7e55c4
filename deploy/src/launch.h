/* pdctl up/down: start every role of a manifest on this machine (optionally each in its
 * own network namespace), wait until the router reports all workers, stop them again. */
#ifndef PD_DEPLOY_LAUNCH_H
#define PD_DEPLOY_LAUNCH_H

#include <stddef.h>

int pd_cmd_up(int argc, char **argv);
int pd_cmd_down(int argc, char **argv);

/* Ask the router at endpoint for its status; *n_workers_p gets how many workers it lists
 * and ids (may be NULL) up to cap of them as "ID (ROLE)". Returns 0, or -1 when no reply
 * arrived within timeout_ms. */
int pd_launch_router_workers(const char *endpoint, int timeout_ms, int *n_workers_p,
                             char (*ids)[80], int cap);

/* The client endpoint of the cluster that 'pdctl up MANIFEST' started (read from its
 * state file in the run directory; the manifest's address when none is recorded) into
 * out. Returns 0, or an exit code after printing why. */
int pd_launch_client_endpoint(const char *manifest, char *out, size_t n);

/* Worker authentication for `pdctl up` (launch_keys.c). With the manifest's auth on: make
 * a key pair for the router and for each worker named in names (n of them) in the keys
 * directory (the manifest's auth_keys, else dir_default, which is then written into
 * m->auth_keys), mode 0700, every file 0600. With auth off: refuse an address that is not
 * loopback, and say so. Returns 0, or 1 after printing why. */
struct pd_manifest;
int pd_launch_keys_make(struct pd_manifest *m, const char *dir_default, const char (*names)[32],
                        int n);

#endif
