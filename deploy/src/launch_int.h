/* Internals of pdctl up/down, one file per job: the plan and command lines
 * (launch_plan.c), network namespaces (launch_ns.c), child processes and their output
 * (launch_proc.c), the state file (launch_state.c), and the commands (launch.c). */
#ifndef PD_DEPLOY_LAUNCH_INT_H
#define PD_DEPLOY_LAUNCH_INT_H

#include "launch.h"

#include "pd/manifest.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PD_LAUNCH_MAX_PROCS 160
#define PD_LAUNCH_MAX_ARGS  64

typedef struct pd_launch_proc {
    pid_t pid;
    char name[32];   /* "router", "prefill-0", ... */
    char role[16];   /* the manifest's role: "router", "prefill", "decode", "both", "gateway" */
    uint32_t index;  /* its index within the role */
    char ns[32];     /* network namespace, "" for none */
    char ip[64];     /* address it binds */
    int out_fd;      /* foreground: read end of its stdout+stderr, else -1 */
    char line[2048]; /* partial line not yet printed */
    size_t line_len;
    char cause[256]; /* its last error line, or its last line */
    bool cause_is_error;
    bool exited;
} pd_launch_proc_t;

typedef struct pd_launch {
    pd_manifest_t m;
    char run_dir[1024];
    char state_path[PATH_MAX];
    char bin_dir[1024];
    char bridge[16];
    const char *manifest_path; /* as given on the command line */
    bool detach;
    int ready_timeout_s;
    pd_launch_proc_t procs[PD_LAUNCH_MAX_PROCS];
    int n_procs;
} pd_launch_t;

/* What a state file records. */
typedef struct pd_launch_state {
    pid_t pids[PD_LAUNCH_MAX_PROCS];
    char names[PD_LAUNCH_MAX_PROCS][32];
    char ns[PD_LAUNCH_MAX_PROCS][32];
    char bridge[16];
    char client[128];
    int n;
} pd_launch_state_t;

/* launch_plan.c: where things are, what runs, with which command line. */
void pd_launch_run_dir(char *dir, size_t n);
void pd_launch_bin_dir(char *dir, size_t n);
int pd_launch_mkdirs(const char *path);
int pd_launch_run(char *const argv[], bool quiet);
void pd_launch_plan(pd_launch_t *l);
int pd_launch_argv(const pd_launch_t *l, int idx, char args[][PATH_MAX], char **argv);
int pd_launch_ensure_model(const pd_launch_t *l);

/* launch_ns.c: one network namespace per process on a bridge (root only). */
void pd_launch_ns_names(const pd_launch_t *l, int idx, char *ns, char *veth, char *peer);
int pd_launch_ns_setup(pd_launch_t *l);
void pd_launch_ns_teardown(const char *bridge, char ns[][32], int n);

/* launch_proc.c: spawn, relay output, reap, stop. */
int pd_launch_spawn(pd_launch_t *l, int idx);
void pd_launch_relay(pd_launch_proc_t *p);
int pd_launch_reap(pd_launch_t *l, bool report);
void pd_launch_stop_pids(pid_t *pids, int n, int grace_ms);

/* launch_state.c: the state file in the run directory. */
int pd_launch_write_state(const pd_launch_t *l);
int pd_launch_state_read(const char *state_path, pd_launch_state_t *st);
int pd_launch_state_alive(const pd_launch_state_t *st);
int pd_launch_down_state(const char *state_path, const char *name, bool report);
int pd_launch_state_by_name(pd_launch_t *l);

#endif
