/* pdctl up/down: start every role of a manifest on this machine (optionally each in its
 * own network namespace), wait until the router reports all workers, stop them again. */
#ifndef PD_DEPLOY_LAUNCH_H
#define PD_DEPLOY_LAUNCH_H

int pd_cmd_up(int argc, char **argv);
int pd_cmd_down(int argc, char **argv);

/* Ask the router at endpoint for its status; *n_workers_p gets how many workers it lists.
 * Returns 0, or -1 when no reply arrived within timeout_ms. */
int pd_launch_router_workers(const char *endpoint, int timeout_ms, int *n_workers_p);

#endif
