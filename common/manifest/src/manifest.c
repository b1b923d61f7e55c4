#include "manifest_int.h"
#include "pd/manifest.h"
#include "pd/strdist.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum pd_mf_type { PD_MF_STR, PD_MF_U32, PD_MF_U64, PD_MF_BOOL } pd_mf_type_t;

/* A string key's syntax check: NULL when value is acceptable, else why not. */
typedef const char *(*pd_mf_check_fn)(const char *value);

/* One settable key: dotted path, type, where it lives, bounds for numbers. */
typedef struct pd_mf_key {
    const char *path;
    pd_mf_type_t type;
    size_t offset;
    size_t size; /* string capacity */
    uint64_t min;
    uint64_t max;
    pd_mf_check_fn check; /* strings only, NULL = any text */
    bool list;            /* may be a YAML sequence of scalars, stored comma-separated */
} pd_mf_key_t;

static bool pd_mf_in(char c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr(extra, c) != NULL);
}

/* A DNS-style name part: 1..63 of [A-Za-z0-9._-], starting and ending alphanumeric. */
static bool pd_mf_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63 || !pd_mf_in(s[0], "") || !pd_mf_in(s[len - 1], ""))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!pd_mf_in(s[i], "._-"))
            return false;
    }
    return true;
}

/* Host names, comma-separated: what Slurm's --nodelist and Kubernetes' node names take. */
static const char *pd_mf_check_hosts(const char *v)
{
    if (v[0] == '\0')
        return NULL;
    for (const char *p = v;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (!pd_mf_name_ok(p, len))
            return "each host must be 1-63 letters, digits, '.', '_' or '-'";
        if (end == NULL)
            return NULL;
        p = end + 1;
    }
}

/* A Kubernetes label selector "key=value" with an optional "prefix/" on the key. */
static const char *pd_mf_check_label(const char *v)
{
    if (v[0] == '\0')
        return NULL;
    const char *eq = strchr(v, '=');
    if (eq == NULL)
        return "must be key=value";
    const char *slash = memchr(v, '/', (size_t)(eq - v));
    const char *key = slash != NULL ? slash + 1 : v;
    if (slash != NULL && !pd_mf_name_ok(v, (size_t)(slash - v)))
        return "the label key's prefix must be a DNS name";
    if (!pd_mf_name_ok(key, (size_t)(eq - key)))
        return "the label key must be 1-63 letters, digits, '.', '_' or '-'";
    if (eq[1] != '\0' && !pd_mf_name_ok(eq + 1, strlen(eq + 1)))
        return "the label value must be 0-63 letters, digits, '.', '_' or '-'";
    return NULL;
}

/* An extended resource name, "vendor.example/name" (e.g. rdma/hca_shared_devices_a). */
static const char *pd_mf_check_resource(const char *v)
{
    if (v[0] == '\0')
        return NULL;
    const char *slash = strchr(v, '/');
    if (slash == NULL || !pd_mf_name_ok(v, (size_t)(slash - v)) ||
        !pd_mf_name_ok(slash + 1, strlen(slash + 1)))
        return "must be a resource name such as rdma/hca_shared_devices_a";
    return NULL;
}

/* A container image reference: registry/path:tag or @sha256:digest, no spaces. */
static const char *pd_mf_check_image(const char *v)
{
    if (v[0] == '\0')
        return NULL;
    if (!pd_mf_in(v[0], ""))
        return "an image must start with a letter or digit";
    for (const char *p = v; *p != '\0'; p++) {
        if (!pd_mf_in(*p, "._-/:@"))
            return "an image may hold only letters, digits and . _ - / : @";
    }
    return NULL;
}

/* Words from a closed set, checked where the line of the value is still known. */
static const char *pd_mf_check_policy(const char *v)
{
    return strcmp(v, "kv") == 0 || strcmp(v, "rr") == 0 ? NULL : "must be kv or rr";
}

static const char *pd_mf_check_auth(const char *v)
{
    return strcmp(v, "on") == 0 || strcmp(v, "off") == 0 ? NULL : "must be on or off";
}

static const char *pd_mf_check_compute(const char *v)
{
    return strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0 ? NULL : "must be cpu or cuda";
}

static const char *pd_mf_check_xfer(const char *v)
{
    return strcmp(v, "ucx") == 0 || strcmp(v, "loopback") == 0 ? NULL : "must be ucx or loopback";
}

static const char *pd_mf_check_codec(const char *v)
{
    return strcmp(v, "none") == 0 || strcmp(v, "off") == 0 || strcmp(v, "int8") == 0 ||
                   strcmp(v, "fp8") == 0
               ? NULL
               : "must be none, int8 or fp8";
}

#define PD_MF_S(path, field)                                                                       \
    {                                                                                              \
        path, PD_MF_STR, offsetof(pd_manifest_t, field), sizeof(((pd_manifest_t *)0)->field), 0,   \
            0, NULL, false                                                                         \
    }
#define PD_MF_SC(path, field, fn, is_list)                                                         \
    {                                                                                              \
        path, PD_MF_STR, offsetof(pd_manifest_t, field), sizeof(((pd_manifest_t *)0)->field), 0,   \
            0, fn, is_list                                                                         \
    }
#define PD_MF_N(path, field, lo, hi)                                                               \
    {                                                                                              \
        path, PD_MF_U32, offsetof(pd_manifest_t, field), 0, lo, hi, NULL, false                    \
    }
#define PD_MF_B(path, field)                                                                       \
    {                                                                                              \
        path, PD_MF_BOOL, offsetof(pd_manifest_t, field), 0, 0, 1, NULL, false                     \
    }
#define PD_MF_ROLE(r)                                                                              \
    PD_MF_N(#r ".count", r.count, 0, 64), PD_MF_N(#r ".threads", r.threads, 0, 256),               \
        PD_MF_N(#r ".pool_mb", r.pool_mb, 1, 1u << 20),                                            \
        PD_MF_N(#r ".max_batch", r.max_batch, 1, 1024), PD_MF_PLACE(#r, r.place)
#define PD_MF_PLACE(r, f)                                                                          \
    PD_MF_SC(r ".hosts", f.hosts, pd_mf_check_hosts, true),                                        \
        PD_MF_SC(r ".node_label", f.node_label, pd_mf_check_label, false),                         \
        PD_MF_N(r ".nodes", f.nodes, 1, 4096), PD_MF_N(r ".cpus", f.cpus, 0, 1024),                \
        PD_MF_N(r ".memory_mb", f.memory_mb, 0, 1u << 24), PD_MF_N(r ".gpus", f.gpus, 0, 64),      \
        PD_MF_SC(r ".rdma", f.rdma, pd_mf_check_resource, false),                                  \
        PD_MF_SC(r ".image", f.image, pd_mf_check_image, false)

static const pd_mf_key_t pd_mf_keys[] = {
    PD_MF_S("name", name),
    PD_MF_S("model.path", model_path),
    PD_MF_S("model.preset", model_preset),
    {"model.seed", PD_MF_U64, offsetof(pd_manifest_t, model_seed), 0, 0, UINT64_MAX, NULL, false},
    PD_MF_SC("image", image, pd_mf_check_image, false),
    PD_MF_S("model.tokenizer", tokenizer),
    PD_MF_S("network.host", host),
    PD_MF_N("network.base_port", base_port, 1024, 65000),
    PD_MF_B("network.namespaces", namespaces),
    PD_MF_S("network.subnet", ns_subnet),
    PD_MF_SC("auth", auth, pd_mf_check_auth, false),
    PD_MF_S("auth_keys", auth_keys),
    PD_MF_SC("router.policy", policy, pd_mf_check_policy, false),
    PD_MF_N("router.max_queue", max_queue, 1, 1u << 20),
    PD_MF_N("router.min_cached_prefix", min_cached_prefix, 0, 1u << 20),
    PD_MF_N("router.block_tokens", block_tokens, 1, 1024),
    PD_MF_N("router.request_timeout_ms", request_timeout_ms, 100, 86400000),
    PD_MF_N("router.worker_timeout_ms", worker_timeout_ms, 100, 3600000),
    PD_MF_B("router.migrate", migrate),
    PD_MF_N("router.max_migrations", max_migrations, 1, 64),
    PD_MF_N("router.prefill_depth", prefill_depth, 1, 1024),
    PD_MF_N("router.slo_ttft_ms", slo_ttft_ms, 0, 86400000),
    PD_MF_N("router.slo_tpot_ms", slo_tpot_ms, 0, 86400000),
    PD_MF_PLACE("router", router_place),
    PD_MF_ROLE(prefill),
    PD_MF_N("prefill.chunk_tokens", prefill.chunk_tokens, 1, 32768),
    PD_MF_ROLE(decode),
    PD_MF_ROLE(both),
    PD_MF_N("gateway.count", gateway_count, 0, 64),
    PD_MF_N("gateway.port", gateway_port, 1024, 65000),
    PD_MF_S("gateway.keys", gateway_keys),
    PD_MF_S("gateway.model", gateway_model),
    PD_MF_S("gateway.chat_template", gateway_chat_template),
    PD_MF_PLACE("gateway", gateway_place),
    PD_MF_SC("compute.backend", compute_backend, pd_mf_check_compute, false),
    PD_MF_B("compute.kv_staging", kv_staging),
    PD_MF_SC("transfer.backend", xfer_backend, pd_mf_check_xfer, false),
    PD_MF_S("transfer.transports", xfer_transports),
    PD_MF_B("transfer.checksum", xfer_checksum),
    PD_MF_B("transfer.layerwise", xfer_layerwise),
    PD_MF_B("transfer.fetch", xfer_fetch),
    PD_MF_N("transfer.timeout_ms", xfer_timeout_ms, 10, 3600000),
    PD_MF_SC("transfer.kv_codec", xfer_kv_codec, pd_mf_check_codec, false),
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
    m->max_queue = 1024; /* pd-router's own default */
    m->min_cached_prefix = 1024;
    m->block_tokens = 16;
    m->request_timeout_ms = 120000;
    m->worker_timeout_ms = 10000;
    m->migrate = true;
    m->max_migrations = 2;
    m->prefill_depth = 1;
    m->prefill = (pd_manifest_role_t){
        .count = 1, .threads = 1, .pool_mb = 256, .max_batch = 1, .chunk_tokens = 256};
    m->decode = (pd_manifest_role_t){.count = 1, .threads = 1, .pool_mb = 256, .max_batch = 32};
    m->both = (pd_manifest_role_t){.count = 0, .threads = 1, .pool_mb = 256, .max_batch = 32};
    snprintf(m->compute_backend, sizeof(m->compute_backend), "cpu");
    snprintf(m->xfer_backend, sizeof(m->xfer_backend), "ucx");
    m->xfer_checksum = true;
    m->xfer_layerwise = true;
    m->xfer_fetch = true;
    m->xfer_timeout_ms = 5000;
    snprintf(m->xfer_kv_codec, sizeof(m->xfer_kv_codec), "none");
    snprintf(m->ns_subnet, sizeof(m->ns_subnet), "10.77.0");
    snprintf(m->auth, sizeof(m->auth), "on");
    snprintf(m->image, sizeof(m->image), "pdkv:latest");
    m->router_place.nodes = 1;
    m->prefill.place.nodes = 1;
    m->decode.place.nodes = 1;
    m->both.place.nodes = 1;
    m->gateway_port = 8000;
    snprintf(m->gateway_model, sizeof(m->gateway_model), "pdkv");
    m->gateway_place.nodes = 1;
}

void pd_mf_err(char *errbuf, size_t n, const char *fmt, ...)
{
    if (errbuf == NULL || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, n, fmt, ap);
    va_end(ap);
}

static const pd_mf_key_t *pd_mf_key_find(const char *path)
{
    for (size_t i = 0; i < sizeof(pd_mf_keys) / sizeof(pd_mf_keys[0]); i++) {
        if (strcmp(pd_mf_keys[i].path, path) == 0)
            return &pd_mf_keys[i];
    }
    return NULL;
}

/* Set one key from its text form; errors name the key. */
static pd_status_t pd_mf_assign(pd_manifest_t *m, const char *path, const char *value, char *errbuf,
                                size_t n)
{
    const pd_mf_key_t *key = pd_mf_key_find(path);
    if (key == NULL) {
        const char *names[sizeof(pd_mf_keys) / sizeof(pd_mf_keys[0])];
        for (size_t i = 0; i < sizeof(pd_mf_keys) / sizeof(pd_mf_keys[0]); i++)
            names[i] = pd_mf_keys[i].path;
        const char *close = pd_str_closest(path, names, sizeof(names) / sizeof(names[0]));
        if (close != NULL)
            pd_mf_err(errbuf, n, "unknown key '%s'; did you mean '%s'?", path, close);
        else
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
        const char *why = key->check != NULL ? key->check(value) : NULL;
        if (why != NULL) {
            pd_mf_err(errbuf, n, "'%s' = '%s': %s", path, value, why);
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
    if (strcmp(m->compute_backend, "cpu") != 0 && strcmp(m->compute_backend, "cuda") != 0) {
        pd_mf_err(errbuf, n, "compute.backend must be cpu or cuda, not '%s'", m->compute_backend);
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
    if (m->gateway_count > 0) {
        uint64_t lo = m->gateway_port, hi = (uint64_t)m->gateway_port + m->gateway_count;
        if (hi > 65536 || (lo < (uint64_t)m->base_port + 10 + n_workers && hi > m->base_port)) {
            pd_mf_err(errbuf, n,
                      "gateway.port %u..%llu overlaps the router's and workers' ports from "
                      "network.base_port %u",
                      m->gateway_port, (unsigned long long)hi - 1, m->base_port);
            return PD_ERR_FORMAT;
        }
    }
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

/* A sequence of scalars for a list key: joined with commas, then assigned (and checked)
 * like the comma-separated scalar form. */
static pd_status_t pd_mf_list(yaml_document_t *doc, yaml_node_t *seq, const char *path,
                              pd_manifest_t *m, char *errbuf, size_t n)
{
    char joined[PD_MANIFEST_STR * 2] = "";
    size_t used = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (item == NULL || item->type != YAML_SCALAR_NODE) {
            pd_mf_err(errbuf, n, "line %zu: '%s' must be a list of names", seq->start_mark.line + 1,
                      path);
            return PD_ERR_FORMAT;
        }
        const char *text = (const char *)item->data.scalar.value;
        if (text[0] == '\0' || strchr(text, ',') != NULL ||
            used + strlen(text) + 2 > sizeof(joined)) {
            pd_mf_err(errbuf, n, "line %zu: '%s' has an empty, comma-holding or too long item",
                      item->start_mark.line + 1, path);
            return PD_ERR_FORMAT;
        }
        used +=
            (size_t)snprintf(joined + used, sizeof(joined) - used, "%s%s", used ? "," : "", text);
    }
    if (used == 0) {
        pd_mf_err(errbuf, n, "line %zu: '%s' is an empty list", seq->start_mark.line + 1, path);
        return PD_ERR_FORMAT;
    }
    char why[200];
    pd_status_t status = pd_mf_assign(m, path, joined, why, sizeof(why));
    if (status != PD_OK)
        pd_mf_err(errbuf, n, "line %zu: %s", seq->start_mark.line + 1, why);
    return status;
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
        } else if (v->type == YAML_SEQUENCE_NODE && pd_mf_key_find(path) != NULL &&
                   pd_mf_key_find(path)->list) {
            status = pd_mf_list(doc, v, path, m, errbuf, n);
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
        int err = errno;
        pd_mf_err(errbuf, errbuf_bytes, "cannot open %s: %s", path, strerror(err));
        return pd_status_from_errno(err);
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
