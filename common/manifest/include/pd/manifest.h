/* Cluster manifests (YAML): the model, the roles with their counts, threads and memory,
 * addresses, transfer settings and tiers. Unknown keys and absurd values are errors. */
#ifndef PD_MANIFEST_H
#define PD_MANIFEST_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_MANIFEST_STR 256

typedef struct pd_manifest_role {
    uint32_t count;     /* processes of this role */
    uint32_t threads;   /* compute threads per process */
    uint32_t pool_mb;   /* KV pool (G1) per process */
    uint32_t max_batch; /* running sequences per decode step */
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

    pd_manifest_role_t prefill;
    pd_manifest_role_t decode;
    pd_manifest_role_t both; /* colocated workers that prefill for themselves */

    char xfer_backend[16];    /* "ucx" or "loopback" */
    char xfer_transports[64]; /* UCX_TLS value, "" = UCX's choice */
    bool xfer_checksum;
    bool xfer_layerwise; /* push each layer as soon as it is computed */
    bool xfer_fetch;     /* prefill may read a prefix from the decode worker's pool */
    uint32_t xfer_timeout_ms;

    uint32_t host_tier_mb;         /* G2 per worker, 0 = off */
    char ssd_dir[PD_MANIFEST_STR]; /* G3 root, "" = off */
    uint32_t ssd_tier_mb;

    bool namespaces;    /* each role in its own network namespace */
    char ns_subnet[32]; /* e.g. "10.77.0" */
} pd_manifest_t;

/* Fill m with the defaults (1 prefill, 1 decode, small model, ports from 7100; every
 * default is in docs/MANIFEST.md). */
void pd_manifest_defaults(pd_manifest_t *m);

/* Parse a YAML manifest over the defaults. On error, errbuf gets a line-numbered reason
 * and m is left unspecified. */
pd_status_t pd_manifest_load(const char *path, pd_manifest_t *m, char *errbuf, size_t errbuf_bytes);

/* Apply one "key=value" override with the same dotted keys as the YAML
 * ("decode.count=2", "base_port=9100"). */
pd_status_t pd_manifest_set(pd_manifest_t *m, const char *assignment, char *errbuf,
                            size_t errbuf_bytes);

/* The i-th settable key's dotted name ("decode.count"), NULL past the last: what
 * docs/MANIFEST.md documents, one row each. */
const char *pd_manifest_key(size_t i);

#endif
