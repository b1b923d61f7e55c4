/* Cluster manifests (YAML): the model, the roles with their counts, threads and memory,
 * addresses, transfer settings and tiers. Unknown keys and absurd values are errors. */
#ifndef PD_MANIFEST_H
#define PD_MANIFEST_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_MANIFEST_STR 256

/* Where a role's processes run under a scheduler (Slurm, Kubernetes) and what each one
 * asks of its host. `pdctl up` ignores placement: it runs everything on this machine. */
typedef struct pd_manifest_place {
    char hosts[PD_MANIFEST_STR]; /* allowed hosts, comma-separated, "" = any */
    char node_label[128];        /* "key=value" (Kubernetes label, Slurm feature) */
    uint32_t nodes;              /* Slurm nodes for the role's component */
    uint32_t cpus;               /* CPUs per process, 0 = the role's threads */
    uint32_t memory_mb;          /* memory per process, 0 = derived from the pools */
    uint32_t gpus;               /* GPUs per process */
    char rdma[128];              /* RDMA device resource name, "" = none */
    char image[PD_MANIFEST_STR]; /* container image, "" = the manifest's image */
} pd_manifest_place_t;

typedef struct pd_manifest_role {
    uint32_t count;        /* processes of this role */
    uint32_t threads;      /* compute threads per process */
    uint32_t pool_mb;      /* KV pool (G1) per process */
    uint32_t max_batch;    /* running sequences per decode step */
    uint32_t chunk_tokens; /* prefill: most prompt tokens one forward pass computes */
    pd_manifest_place_t place;
} pd_manifest_role_t;

typedef struct pd_manifest {
    char name[64];
    char model_path[PD_MANIFEST_STR]; /* checkpoint dir or llama2.c .bin */
    char model_preset[32];            /* made at model_path if missing ("" = never) */
    uint64_t model_seed;
    char tokenizer[PD_MANIFEST_STR]; /* "" = model_path/tokenizer.bin */

    char host[64];      /* IP every socket binds and connects to */
    uint32_t base_port; /* router clients, +1 workers, +10.. worker events */
    char policy[8];     /* "kv" or "rr" */
    uint32_t max_queue;
    uint32_t min_cached_prefix;
    uint32_t block_tokens;
    uint32_t request_timeout_ms;
    uint32_t worker_timeout_ms;
    bool migrate;            /* a dead worker's requests continue on others */
    uint32_t max_migrations; /* ... at most this many times per request */
    uint32_t prefill_depth;  /* prefills committed to one prefill worker at once */
    uint32_t slo_ttft_ms;    /* default objectives, 0: none */
    uint32_t slo_tpot_ms;

    pd_manifest_place_t router_place;
    char image[PD_MANIFEST_STR]; /* container image every role runs by default */

    pd_manifest_role_t prefill;
    pd_manifest_role_t decode;
    pd_manifest_role_t both; /* colocated workers that prefill for themselves */

    uint32_t gateway_count; /* pd-gateway processes (HTTP APIs), 0 = none */
    uint32_t gateway_port;  /* gateway i listens on gateway_port + i (one port per pod) */
    char gateway_keys[PD_MANIFEST_STR];          /* API key file ("" = open: no keys asked) */
    char gateway_model[64];                      /* the model name clients ask for */
    char gateway_chat_template[PD_MANIFEST_STR]; /* a Jinja file ("" = the model's own) */
    pd_manifest_place_t gateway_place;

    char compute_backend[8]; /* "cpu" or "cuda": every worker's compute backend */
    bool kv_staging;         /* compute pool apart from the transfer pool (cuda: always) */

    char xfer_backend[16];    /* "ucx" or "loopback" */
    char xfer_transports[64]; /* UCX_TLS value, "" = UCX's choice */
    bool xfer_checksum;
    bool xfer_layerwise; /* push each layer as soon as it is computed */
    bool xfer_fetch;     /* prefill may read a prefix from the decode worker's pool */
    uint32_t xfer_timeout_ms;
    char xfer_kv_codec[8]; /* "none", "int8" or "fp8": KV compressed on the wire (lossy) */

    uint32_t host_tier_mb;         /* G2 per worker, 0 = off */
    char ssd_dir[PD_MANIFEST_STR]; /* G3 root, "" = off */
    uint32_t ssd_tier_mb;

    bool namespaces;    /* each role in its own network namespace */
    char ns_subnet[32]; /* e.g. "10.77.0" */

    char auth[8];                    /* "on": CURVE on the worker and event sockets; "off" */
    char auth_keys[PD_MANIFEST_STR]; /* the keys' directory ("" = pdctl up's own, under its
                                       run directory) */
} pd_manifest_t;

/* Fill m with the defaults (1 prefill, 1 decode, small model, ports from 7100; every
 * default is in docs/MANIFEST.md). */
void pd_manifest_defaults(pd_manifest_t *m);

/* Parse a YAML manifest over the defaults. On error, errbuf gets a line-numbered reason
 * and m is left unspecified. */
PD_MUST_CHECK pd_status_t pd_manifest_load(const char *path, pd_manifest_t *m, char *errbuf,
                                           size_t errbuf_bytes);

/* Apply one "key=value" override with the same dotted keys as the YAML
 * ("decode.count=2", "base_port=9100"). */
PD_MUST_CHECK pd_status_t pd_manifest_set(pd_manifest_t *m, const char *assignment, char *errbuf,
                                          size_t errbuf_bytes);

/* The i-th settable key's dotted name ("decode.count"), NULL past the last: what
 * docs/MANIFEST.md documents, one row each. */
const char *pd_manifest_key(size_t i);

/* One process of a cluster: its role, its index within the role and its name. */
typedef struct pd_manifest_proc {
    char role[16];         /* "router", "prefill", "decode", "both" or "gateway" */
    uint32_t index;        /* within the role */
    uint32_t global_index; /* 0 = router, then prefill, decode, both workers, gateways */
    char name[32];         /* "router", "prefill-0", ... (the worker id) */
} pd_manifest_proc_t;

/* Find the index-th process of role in m. Fails with PD_ERR_INVALID_PARAM and a reason
 * in errbuf when the role is unknown or the index is past the role's count. */
PD_MUST_CHECK pd_status_t pd_manifest_proc_find(const pd_manifest_t *m, const char *role,
                                                uint32_t index, pd_manifest_proc_t *proc_p,
                                                char *errbuf, size_t errbuf_bytes);

/* The role's placement (router_place or the worker role's place). */
const pd_manifest_place_t *pd_manifest_place(const pd_manifest_t *m, const char *role);

#define PD_MANIFEST_MAX_ARGS 64
#define PD_MANIFEST_ARG      (PD_MANIFEST_STR + 64)

/* The roles in start order: router, prefill, decode, both (colocated), gateway. */
#define PD_MANIFEST_N_ROLES 5
extern const char *const pd_manifest_roles[PD_MANIFEST_N_ROLES];
/* How many processes of role the manifest asks for (router: 1; 0 for an unknown role). */
uint32_t pd_manifest_role_count(const pd_manifest_t *m, const char *role);

/* A role's command line (without the program name), built from the manifest alone. */
typedef struct pd_manifest_args {
    int argc;
    char *argv[PD_MANIFEST_MAX_ARGS + 1]; /* NULL-terminated, points into buf */
    char buf[PD_MANIFEST_MAX_ARGS][PD_MANIFEST_ARG];
    char *merged[2 * PD_MANIFEST_MAX_ARGS + 2]; /* pd_manifest_env_argv's result */
} pd_manifest_args_t;

/* Build proc's options: host is the address it binds and advertises, router_host the
 * router's address (the same for the router itself). The one source of every role's
 * options, for pdctl up and for roles started by a scheduler. */
PD_MUST_CHECK pd_status_t pd_manifest_args_build(const pd_manifest_t *m,
                                                 const pd_manifest_proc_t *proc, const char *host,
                                                 const char *router_host, pd_manifest_args_t *args);

/* Start-from-environment for a role binary: when PD_MANIFEST is set, load it, take
 * PD_ROLE (which must be one of roles, comma-separated), PD_INDEX (default 0), PD_HOST
 * (default network.host) and PD_ROUTER (default PD_HOST), and build argv_p =
 * {argv[0], manifest options..., argv[1..]} so explicit options still win. Returns
 * PD_OK with *argc_p = argc and *argv_p = argv unchanged when PD_MANIFEST is unset, an
 * error (reason in errbuf) on a bad manifest or environment. args is the storage. */
PD_MUST_CHECK pd_status_t pd_manifest_env_argv(const char *roles, int argc, char **argv,
                                               pd_manifest_args_t *args, int *argc_p,
                                               char ***argv_p, char *errbuf, size_t errbuf_bytes);

/* pd_manifest_env_argv for a role binary's main(), with storage of its own (call it once
 * per process): false after logging "PROG: reason" at error level. */
bool pd_manifest_main_argv(const char *roles, const char *prog, int *argc_p, char ***argv_p);

#endif
