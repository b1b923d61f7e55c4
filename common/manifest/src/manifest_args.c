/* Every role's command line from the manifest alone: what `pdctl up` runs locally and
 * what a role started by a scheduler (Slurm, Kubernetes) builds from PD_MANIFEST and the
 * environment, so both start the same cluster. */
#include "manifest_int.h"
#include "pd/manifest.h"
#include "pd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const pd_manifest_place_t *pd_manifest_place(const pd_manifest_t *m, const char *role)
{
    if (strcmp(role, "prefill") == 0)
        return &m->prefill.place;
    if (strcmp(role, "decode") == 0)
        return &m->decode.place;
    if (strcmp(role, "both") == 0)
        return &m->both.place;
    if (strcmp(role, "gateway") == 0)
        return &m->gateway_place;
    return &m->router_place;
}

const char *const pd_manifest_roles[PD_MANIFEST_N_ROLES] = {"router", "prefill", "decode", "both",
                                                            "gateway"};

uint32_t pd_manifest_role_count(const pd_manifest_t *m, const char *role)
{
    if (strcmp(role, "router") == 0)
        return 1;
    if (strcmp(role, "prefill") == 0)
        return m->prefill.count;
    if (strcmp(role, "decode") == 0)
        return m->decode.count;
    if (strcmp(role, "both") == 0)
        return m->both.count;
    if (strcmp(role, "gateway") == 0)
        return m->gateway_count;
    return 0;
}

pd_status_t pd_manifest_proc_find(const pd_manifest_t *m, const char *role, uint32_t index,
                                  pd_manifest_proc_t *proc_p, char *errbuf, size_t errbuf_bytes)
{
    uint32_t base = 0;
    for (size_t r = 0; r < PD_MANIFEST_N_ROLES; r++) {
        uint32_t count = pd_manifest_role_count(m, pd_manifest_roles[r]);
        if (strcmp(role, pd_manifest_roles[r]) == 0) {
            if (index >= count) {
                pd_mf_err(errbuf, errbuf_bytes, "%s index %u is past the manifest's %u", role,
                          index, count);
                return PD_ERR_INVALID_PARAM;
            }
            pd_manifest_proc_t p;
            memset(&p, 0, sizeof(p));
            snprintf(p.role, sizeof(p.role), "%s", role);
            p.index = index;
            p.global_index = base + index;
            if (r == 0)
                snprintf(p.name, sizeof(p.name), "router");
            else
                snprintf(p.name, sizeof(p.name), "%s-%u", role, index);
            *proc_p = p;
            return PD_OK;
        }
        base += count;
    }
    pd_mf_err(errbuf, errbuf_bytes, "unknown role '%s' (router, prefill, decode, both or gateway)",
              role);
    return PD_ERR_INVALID_PARAM;
}

pd_status_t pd_manifest_args_build(const pd_manifest_t *m, const pd_manifest_proc_t *proc,
                                   const char *host, const char *router_host,
                                   pd_manifest_args_t *args)
{
    int n = 0;
    bool fit = true;
#define PD_MF_ARG(...)                                                                             \
    do {                                                                                           \
        if (n >= PD_MANIFEST_MAX_ARGS) {                                                           \
            fit = false;                                                                           \
            break;                                                                                 \
        }                                                                                          \
        int len_ = snprintf(args->buf[n], PD_MANIFEST_ARG, __VA_ARGS__);                           \
        if (len_ < 0 || len_ >= PD_MANIFEST_ARG)                                                   \
            fit = false;                                                                           \
        args->argv[n] = args->buf[n];                                                              \
        n++;                                                                                       \
    } while (0)
    const char *tokenizer = m->tokenizer[0] != '\0' ? m->tokenizer : m->model_path;
    /* Worker auth (docs/MANIFEST.md, auth): key files from the keys directory, named after
     * each process. With auth on and no directory the roles run without it. */
    bool auth = strcmp(m->auth, "off") != 0 && m->auth_keys[0] != '\0';
    if (strcmp(proc->role, "router") == 0) {
        PD_MF_ARG("--client");
        PD_MF_ARG("tcp://%s:%u", host, m->base_port);
        PD_MF_ARG("--workers");
        PD_MF_ARG("tcp://%s:%u", host, m->base_port + 1);
        PD_MF_ARG("--tokenizer");
        PD_MF_ARG("%s", tokenizer);
        PD_MF_ARG("--model-id");
        PD_MF_ARG("%s", m->model_path);
        PD_MF_ARG("--block-tokens");
        PD_MF_ARG("%u", m->block_tokens);
        PD_MF_ARG("--policy");
        PD_MF_ARG("%s", m->policy);
        PD_MF_ARG("--max-queue");
        PD_MF_ARG("%u", m->max_queue);
        PD_MF_ARG("--min-cached-prefix");
        PD_MF_ARG("%u", m->min_cached_prefix);
        PD_MF_ARG("--request-timeout-ms");
        PD_MF_ARG("%u", m->request_timeout_ms);
        PD_MF_ARG("--worker-timeout-ms");
        PD_MF_ARG("%u", m->worker_timeout_ms);
        PD_MF_ARG("--max-migrations");
        PD_MF_ARG("%u", m->migrate ? m->max_migrations : 0u);
        PD_MF_ARG("--prefill-depth");
        PD_MF_ARG("%u", m->prefill_depth);
        PD_MF_ARG("--slo-ttft-ms");
        PD_MF_ARG("%u", m->slo_ttft_ms);
        PD_MF_ARG("--slo-tpot-ms");
        PD_MF_ARG("%u", m->slo_tpot_ms);
        if (auth) {
            PD_MF_ARG("--curve-secret-file");
            PD_MF_ARG("%s/router.key", m->auth_keys);
            PD_MF_ARG("--worker-keys");
            PD_MF_ARG("%s/workers.keys", m->auth_keys);
        }
    } else if (strcmp(proc->role, "gateway") == 0) {
        /* HTTP on its own port per process, so that gateways can share a host. */
        PD_MF_ARG("--listen");
        PD_MF_ARG("%s:%u", host, m->gateway_port + proc->index);
        PD_MF_ARG("--router");
        PD_MF_ARG("tcp://%s:%u", router_host, m->base_port);
        PD_MF_ARG("--tokenizer");
        PD_MF_ARG("%s", tokenizer);
        PD_MF_ARG("--model");
        PD_MF_ARG("%s", m->gateway_model);
        if (m->gateway_keys[0] != '\0') {
            PD_MF_ARG("--keys");
            PD_MF_ARG("%s", m->gateway_keys);
        }
        if (m->gateway_chat_template[0] != '\0') {
            PD_MF_ARG("--chat-template");
            PD_MF_ARG("%s", m->gateway_chat_template);
        }
    } else {
        bool prefill = strcmp(proc->role, "prefill") == 0;
        bool both = strcmp(proc->role, "both") == 0;
        const pd_manifest_role_t *role = prefill ? &m->prefill : both ? &m->both : &m->decode;
        PD_MF_ARG("--router");
        PD_MF_ARG("tcp://%s:%u", router_host, m->base_port + 1);
        PD_MF_ARG("--id");
        PD_MF_ARG("%s", proc->name);
        PD_MF_ARG("--model");
        PD_MF_ARG("%s", m->model_path);
        PD_MF_ARG("--threads");
        PD_MF_ARG("%u", role->threads);
        PD_MF_ARG("--pool-mb");
        PD_MF_ARG("%u", role->pool_mb);
        PD_MF_ARG("--block-tokens");
        PD_MF_ARG("%u", m->block_tokens);
        /* Ports differ per process, so that any number of workers can share a host. */
        PD_MF_ARG("--events");
        PD_MF_ARG("tcp://%s:%u", host, m->base_port + 10 + proc->global_index);
        PD_MF_ARG("--ip");
        PD_MF_ARG("%s", host);
        PD_MF_ARG("--backend");
        PD_MF_ARG("%s", m->compute_backend);
        PD_MF_ARG("--kv-staging");
        PD_MF_ARG("%d", m->kv_staging ? 1 : 0);
        PD_MF_ARG("--xfer-backend");
        PD_MF_ARG("%s", m->xfer_backend);
        PD_MF_ARG("--checksum");
        PD_MF_ARG("%d", m->xfer_checksum ? 1 : 0);
        PD_MF_ARG("--layerwise");
        PD_MF_ARG("%d", m->xfer_layerwise ? 1 : 0);
        PD_MF_ARG("--fetch");
        PD_MF_ARG("%d", m->xfer_fetch ? 1 : 0);
        PD_MF_ARG("--xfer-timeout-ms");
        PD_MF_ARG("%u", m->xfer_timeout_ms);
        if (strcmp(m->xfer_kv_codec, "none") != 0 && strcmp(m->xfer_kv_codec, "off") != 0) {
            PD_MF_ARG("--kv-codec");
            PD_MF_ARG("%s", m->xfer_kv_codec);
        }
        if (!prefill) {
            PD_MF_ARG("--max-batch");
            PD_MF_ARG("%u", role->max_batch);
        } else {
            PD_MF_ARG("--chunk-tokens");
            PD_MF_ARG("%u", role->chunk_tokens);
        }
        if (both)
            PD_MF_ARG("--colocated");
        if (m->host_tier_mb > 0) {
            PD_MF_ARG("--host-mb");
            PD_MF_ARG("%u", m->host_tier_mb);
        }
        if (m->ssd_dir[0] != '\0') {
            PD_MF_ARG("--ssd-dir");
            PD_MF_ARG("%s/%s", m->ssd_dir, proc->name);
            PD_MF_ARG("--ssd-mb");
            PD_MF_ARG("%u", m->ssd_tier_mb);
        }
        if (auth) {
            PD_MF_ARG("--curve-server-key");
            PD_MF_ARG("%s/router.pub", m->auth_keys);
            PD_MF_ARG("--curve-secret-file");
            PD_MF_ARG("%s/%s.key", m->auth_keys, proc->name);
        }
    }
#undef PD_MF_ARG
    args->argc = n;
    args->argv[n] = NULL;
    return fit ? PD_OK : PD_ERR_INVALID_PARAM;
}

/* An address as the roles bind it: no spaces, no scheme, no port. */
static bool pd_mf_host_ok(const char *h)
{
    if (h[0] == '\0' || strlen(h) >= 64)
        return false;
    for (const char *p = h; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

pd_status_t pd_manifest_env_argv(const char *roles, int argc, char **argv, pd_manifest_args_t *args,
                                 int *argc_p, char ***argv_p, char *errbuf, size_t errbuf_bytes)
{
    const char *path = getenv("PD_MANIFEST");
    if (path == NULL || path[0] == '\0') {
        *argc_p = argc;
        *argv_p = argv;
        return PD_OK;
    }
    pd_manifest_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return PD_ERR_NO_MEMORY;
    pd_status_t st = pd_manifest_load(path, m, errbuf, errbuf_bytes);
    if (st != PD_OK)
        goto out;

    const char *role = getenv("PD_ROLE");
    char want[64];
    snprintf(want, sizeof(want), ",%s,", roles);
    char have[32];
    snprintf(have, sizeof(have), ",%s,", role != NULL ? role : "");
    if (role == NULL || role[0] == '\0' || strchr(role, ',') != NULL ||
        strstr(want, have) == NULL) {
        pd_mf_err(errbuf, errbuf_bytes, "PD_ROLE is '%s'; this program runs %s",
                  role != NULL ? role : "", roles);
        st = PD_ERR_INVALID_PARAM;
        goto out;
    }
    uint32_t index = 0;
    const char *index_env = getenv("PD_INDEX");
    if (index_env != NULL && index_env[0] != '\0') {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(index_env, &end, 10);
        if (index_env[0] == '-' || *end != '\0' || errno != 0 || v > UINT32_MAX) {
            pd_mf_err(errbuf, errbuf_bytes, "PD_INDEX must be a number, not '%s'", index_env);
            st = PD_ERR_INVALID_PARAM;
            goto out;
        }
        index = (uint32_t)v;
    }
    pd_manifest_proc_t proc;
    st = pd_manifest_proc_find(m, role, index, &proc, errbuf, errbuf_bytes);
    if (st != PD_OK)
        goto out;
    const char *host = getenv("PD_HOST");
    if (host == NULL || host[0] == '\0')
        host = m->host;
    const char *router = getenv("PD_ROUTER");
    if (router == NULL || router[0] == '\0')
        router = host;
    if (!pd_mf_host_ok(host) || !pd_mf_host_ok(router)) {
        pd_mf_err(errbuf, errbuf_bytes,
                  "PD_HOST '%s' and PD_ROUTER '%s' must be host names or IP addresses", host,
                  router);
        st = PD_ERR_INVALID_PARAM;
        goto out;
    }
    st = pd_manifest_args_build(m, &proc, host, router, args);
    if (st != PD_OK) {
        pd_mf_err(errbuf, errbuf_bytes, "the manifest's options do not fit");
        goto out;
    }
    if (argc - 1 > PD_MANIFEST_MAX_ARGS) {
        pd_mf_err(errbuf, errbuf_bytes, "too many options besides PD_MANIFEST");
        st = PD_ERR_INVALID_PARAM;
        goto out;
    }
    int n = 0;
    args->merged[n++] = argv[0];
    for (int i = 0; i < args->argc; i++)
        args->merged[n++] = args->argv[i];
    for (int i = 1; i < argc; i++)
        args->merged[n++] = argv[i];
    args->merged[n] = NULL;
    *argc_p = n;
    *argv_p = args->merged;
out:
    free(m);
    return st;
}

bool pd_manifest_main_argv(const char *roles, const char *prog, int *argc_p, char ***argv_p)
{
    static pd_manifest_args_t args; /* what *argv_p points into, for the process's life */
    char err[512];
    if (pd_manifest_env_argv(roles, *argc_p, *argv_p, &args, argc_p, argv_p, err, sizeof(err)) !=
        PD_OK) {
        pd_log_error("%s: %s", prog, err);
        return false;
    }
    return true;
}
