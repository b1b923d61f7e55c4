#include "pd/manifest.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum pd_mf_type { PD_MF_STR, PD_MF_U32, PD_MF_U64, PD_MF_BOOL } pd_mf_type_t;

/* One settable key: dotted path, type, where it lives, bounds for numbers. */
typedef struct pd_mf_key {
    const char *path;
    pd_mf_type_t type;
    size_t offset;
    size_t size; /* string capacity */
    uint64_t min;
    uint64_t max;
} pd_mf_key_t;

#define PD_MF_S(path, field)                                                                       \
    {                                                                                              \
        path, PD_MF_STR, offsetof(pd_manifest_t, field), sizeof(((pd_manifest_t *)0)->field), 0, 0 \
    }
#define PD_MF_N(path, field, lo, hi)                                                               \
    {                                                                                              \
        path, PD_MF_U32, offsetof(pd_manifest_t, field), 0, lo, hi                                 \
    }
#define PD_MF_B(path, field)                                                                       \
    {                                                                                              \
        path, PD_MF_BOOL, offsetof(pd_manifest_t, field), 0, 0, 1                                  \
    }
#define PD_MF_ROLE(r)                                                                              \
    PD_MF_N(#r ".count", r.count, 0, 64), PD_MF_N(#r ".threads", r.threads, 0, 256),               \
        PD_MF_N(#r ".pool_mb", r.pool_mb, 1, 1u << 20),                                            \
        PD_MF_N(#r ".max_batch", r.max_batch, 1, 1024)

static const pd_mf_key_t pd_mf_keys[] = {
    PD_MF_S("name", name),
    PD_MF_S("model.path", model_path),
    PD_MF_S("model.preset", model_preset),
    {"model.seed", PD_MF_U64, offsetof(pd_manifest_t, model_seed), 0, 0, UINT64_MAX},
    PD_MF_S("model.tokenizer", tokenizer),
    PD_MF_S("network.host", host),
    PD_MF_N("network.base_port", base_port, 1024, 65000),
    PD_MF_B("network.namespaces", namespaces),
    PD_MF_S("network.subnet", ns_subnet),
    PD_MF_S("router.policy", policy),
    PD_MF_N("router.max_queue", max_queue, 1, 1u << 20),
    PD_MF_N("router.min_cached_prefix", min_cached_prefix, 0, 1u << 20),
    PD_MF_N("router.block_tokens", block_tokens, 1, 1024),
    PD_MF_N("router.request_timeout_ms", request_timeout_ms, 100, 86400000),
    PD_MF_N("router.worker_timeout_ms", worker_timeout_ms, 100, 3600000),
    PD_MF_ROLE(prefill),
    PD_MF_ROLE(decode),
    PD_MF_ROLE(both),
    PD_MF_S("transfer.backend", xfer_backend),
    PD_MF_S("transfer.transports", xfer_transports),
    PD_MF_B("transfer.checksum", xfer_checksum),
    PD_MF_B("transfer.layerwise", xfer_layerwise),
    PD_MF_B("transfer.fetch", xfer_fetch),
    PD_MF_N("transfer.timeout_ms", xfer_timeout_ms, 10, 3600000),
    PD_MF_N("tiers.host_mb", host_tier_mb, 0, 1u << 20),
    PD_MF_S("tiers.ssd_dir", ssd_dir),
    PD_MF_N("tiers.ssd_mb", ssd_tier_mb, 0, 1u << 24),
};

const char *pd_manifest_key(size_t i)
{
    return i < sizeof(pd_mf_keys) / sizeof(pd_mf_keys[0]) ? pd_mf_keys[i].path : NULL;
}

void pd_manifest_defaults(pd_manifest_t *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "local");
    snprintf(m->model_path, sizeof(m->model_path), ".pdkv/models/small");
    snprintf(m->model_preset, sizeof(m->model_preset), "small");
    m->model_seed = 1;
    snprintf(m->host, sizeof(m->host), "127.0.0.1");
    m->base_port = 7100;
    snprintf(m->policy, sizeof(m->policy), "kv");
    m->max_queue = 256;
    m->min_cached_prefix = 1024;
    m->block_tokens = 16;
    m->request_timeout_ms = 120000;
    m->worker_timeout_ms = 10000;
    m->prefill = (pd_manifest_role_t){.count = 1, .threads = 1, .pool_mb = 256, .max_batch = 1};
    m->decode = (pd_manifest_role_t){.count = 1, .threads = 1, .pool_mb = 256, .max_batch = 32};
    m->both = (pd_manifest_role_t){.count = 0, .threads = 1, .pool_mb = 256, .max_batch = 32};
    snprintf(m->xfer_backend, sizeof(m->xfer_backend), "ucx");
    m->xfer_checksum = true;
    m->xfer_layerwise = true;
    m->xfer_fetch = true;
    m->xfer_timeout_ms = 5000;
    snprintf(m->ns_subnet, sizeof(m->ns_subnet), "10.77.0");
}

static void pd_mf_err(char *errbuf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pd_mf_err(char *errbuf, size_t n, const char *fmt, ...)
{
    if (errbuf == NULL || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, n, fmt, ap);
    va_end(ap);
}

/* Set one key from its text form; errors name the key. */
static pd_status_t pd_mf_assign(pd_manifest_t *m, const char *path, const char *value, char *errbuf,
                                size_t n)
{
    const pd_mf_key_t *key = NULL;
    for (size_t i = 0; i < sizeof(pd_mf_keys) / sizeof(pd_mf_keys[0]); i++) {
        if (strcmp(pd_mf_keys[i].path, path) == 0)
            key = &pd_mf_keys[i];
    }
    if (key == NULL) {
        pd_mf_err(errbuf, n, "unknown key '%s'", path);
        return PD_ERR_FORMAT;
    }
    char *field = (char *)m + key->offset;
    switch (key->type) {
    case PD_MF_STR:
        if (strlen(value) >= key->size) {
            pd_mf_err(errbuf, n, "'%s' is longer than %zu bytes", path, key->size - 1);
            return PD_ERR_FORMAT;
        }
        memcpy(field, value, strlen(value) + 1);
        return PD_OK;
    case PD_MF_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0) {
            *(bool *)field = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "0") == 0) {
            *(bool *)field = false;
        } else {
            pd_mf_err(errbuf, n, "'%s' must be true or false, not '%s'", path, value);
            return PD_ERR_FORMAT;
        }
        return PD_OK;
    case PD_MF_U32:
    case PD_MF_U64: {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno != 0) {
            pd_mf_err(errbuf, n, "'%s' must be a non-negative integer, not '%s'", path, value);
            return PD_ERR_FORMAT;
        }
        if (v < key->min || v > key->max) {
            pd_mf_err(errbuf, n, "'%s' = %llu is outside [%llu, %llu]", path, v,
                      (unsigned long long)key->min, (unsigned long long)key->max);
            return PD_ERR_FORMAT;
        }
        if (key->type == PD_MF_U32)
            *(uint32_t *)field = (uint32_t)v;
        else
            *(uint64_t *)field = (uint64_t)v;
        return PD_OK;
    }
    }
    return PD_ERR_INTERNAL;
}

/* Cross-field checks once every key is in. */
static pd_status_t pd_mf_check(const pd_manifest_t *m, char *errbuf, size_t n)
{
    if (strcmp(m->policy, "kv") != 0 && strcmp(m->policy, "rr") != 0) {
        pd_mf_err(errbuf, n, "router.policy must be kv or rr, not '%s'", m->policy);
        return PD_ERR_FORMAT;
    }
    if (strcmp(m->xfer_backend, "ucx") != 0 && strcmp(m->xfer_backend, "loopback") != 0) {
        pd_mf_err(errbuf, n, "transfer.backend must be ucx or loopback, not '%s'", m->xfer_backend);
        return PD_ERR_FORMAT;
    }
    if (m->both.count == 0 && (m->prefill.count == 0 || m->decode.count == 0)) {
        pd_mf_err(errbuf, n, "a cluster needs prefill and decode workers, or 'both' workers");
        return PD_ERR_FORMAT;
    }
    if (m->model_path[0] == '\0') {
        pd_mf_err(errbuf, n, "model.path is required");
        return PD_ERR_FORMAT;
    }
    uint32_t n_workers = m->prefill.count + m->decode.count + m->both.count;
    if ((uint64_t)m->base_port + 10 + n_workers > 65535) {
        pd_mf_err(errbuf, n, "network.base_port %u leaves no room for %u workers", m->base_port,
                  n_workers);
        return PD_ERR_FORMAT;
    }
    return PD_OK;
}

pd_status_t pd_manifest_set(pd_manifest_t *m, const char *assignment, char *errbuf,
                            size_t errbuf_bytes)
{
    const char *eq = strchr(assignment, '=');
    char path[128];
    if (eq == NULL || (size_t)(eq - assignment) >= sizeof(path)) {
        pd_mf_err(errbuf, errbuf_bytes, "override '%s' is not key=value", assignment);
        return PD_ERR_INVALID_PARAM;
    }
    memcpy(path, assignment, (size_t)(eq - assignment));
    path[eq - assignment] = '\0';
    pd_status_t status = pd_mf_assign(m, path, eq + 1, errbuf, errbuf_bytes);
    if (status != PD_OK)
        return status;
    return pd_mf_check(m, errbuf, errbuf_bytes);
}

/* Walk a mapping node, assigning scalars under prefix. */
static pd_status_t pd_mf_walk(yaml_document_t *doc, yaml_node_t *node, const char *prefix,
                              pd_manifest_t *m, char *errbuf, size_t n, int depth)
{
    if (node->type != YAML_MAPPING_NODE || depth > 3) {
        pd_mf_err(errbuf, n, "line %zu: expected a mapping%s%s", node->start_mark.line + 1,
                  prefix[0] ? " under " : "", prefix);
        return PD_ERR_FORMAT;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE) {
            pd_mf_err(errbuf, n, "line %zu: keys must be plain words", node->start_mark.line + 1);
            return PD_ERR_FORMAT;
        }
        char path[128];
        int len = snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                           (const char *)k->data.scalar.value);
        if (len < 0 || (size_t)len >= sizeof(path)) {
            pd_mf_err(errbuf, n, "line %zu: key too long", k->start_mark.line + 1);
            return PD_ERR_FORMAT;
        }
        pd_status_t status;
        if (v->type == YAML_MAPPING_NODE) {
            status = pd_mf_walk(doc, v, path, m, errbuf, n, depth + 1);
        } else if (v->type == YAML_SCALAR_NODE) {
            char why[200];
            status = pd_mf_assign(m, path, (const char *)v->data.scalar.value, why, sizeof(why));
            if (status != PD_OK)
                pd_mf_err(errbuf, n, "line %zu: %s", v->start_mark.line + 1, why);
        } else {
            pd_mf_err(errbuf, n, "line %zu: '%s' must be a scalar or a mapping",
                      v->start_mark.line + 1, path);
            status = PD_ERR_FORMAT;
        }
        if (status != PD_OK)
            return status;
    }
    return PD_OK;
}

pd_status_t pd_manifest_load(const char *path, pd_manifest_t *m, char *errbuf, size_t errbuf_bytes)
{
    pd_status_t status = PD_OK;
    yaml_parser_t parser;
    yaml_document_t doc;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        pd_mf_err(errbuf, errbuf_bytes, "cannot open %s: %s", path, strerror(errno));
        return PD_ERR_IO;
    }
    pd_manifest_defaults(m);
    if (!yaml_parser_initialize(&parser)) {
        status = PD_ERR_NO_MEMORY;
        goto out_close;
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        pd_mf_err(errbuf, errbuf_bytes, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                  parser.problem ? parser.problem : "YAML syntax error");
        status = PD_ERR_FORMAT;
        goto out_parser;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        pd_mf_err(errbuf, errbuf_bytes, "%s: empty manifest", path);
        status = PD_ERR_FORMAT;
        goto out_doc;
    }
    char why[256] = "";
    status = pd_mf_walk(&doc, root, "", m, why, sizeof(why), 0);
    if (status == PD_OK)
        status = pd_mf_check(m, why, sizeof(why));
    if (status != PD_OK)
        pd_mf_err(errbuf, errbuf_bytes, "%s: %s", path, why);
out_doc:
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
out_close:
    fclose(f);
    return status;
}
