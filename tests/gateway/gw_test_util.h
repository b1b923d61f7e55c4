/* Helpers of the gateway tests: a real cluster (pd-router, pd-prefill, pd-decode) and
 * pd-gateway processes on loopback ports chosen at run time, HTTP through libcurl, raw
 * sockets for clients that misbehave, and the router's own status for what the cluster
 * holds. Everything started is stopped by gt_stop(), also the suites' fini. */
#ifndef PD_GW_TEST_UTIL_H
#define PD_GW_TEST_UTIL_H

#include "pd/client.h"
#include "test_cluster_util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <netinet/tcp.h>
#include <sodium.h>

typedef struct gt {
    pd_tc_env_t env;
    char model[PATH_MAX];          /* the model directory (preset small, seed 1, byte tokenizer) */
    char tokenizer[PATH_MAX + 32]; /* what --tokenizer names: the model's tokenizer.bin */
    char client_ep[128];           /* the router's client socket */
    char workers_ep[128];
    char url[128]; /* the first gateway's base URL */
    pid_t gw_pid;  /* the last gateway started */
} gt_t;

typedef struct gt_resp {
    long status;
    char *body; /* NUL-terminated, owned */
    size_t len;
    char headers[4096];
    json_t *json; /* the body parsed, when it is JSON */
} gt_resp_t;

static gt_t gt;

/* Run argv given as one string (no quoting: paths here have no spaces). */
static inline pid_t gt_spawn(const char *name, const char *cmdline)
{
    static char buf[PD_TC_MAX_PROCS][6 * PATH_MAX];
    int slot = gt.env.n_procs;
    cr_assert_lt(slot, PD_TC_MAX_PROCS);
    snprintf(buf[slot], sizeof(buf[slot]), "%s", cmdline);
    char *argv[96];
    int a = 0;
    for (char *save = NULL, *t = strtok_r(buf[slot], " ", &save); t != NULL && a < 95;
         t = strtok_r(NULL, " ", &save))
        argv[a++] = t;
    argv[a] = NULL;
    return pd_tc_spawn(&gt.env, name, argv);
}

/* Wait for a ready file and read KEY=VALUE from it into out. */
static inline void gt_ready_value(const char *path, const char *key, char *out, size_t cap)
{
    uint64_t end = pd_time_now_ms() + 20000;
    char line[512];
    size_t klen = strlen(key);
    while (pd_time_now_ms() < end) {
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            while (fgets(line, sizeof(line), f) != NULL) {
                if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
                    line[strcspn(line, "\n")] = '\0';
                    size_t vlen = strlen(line + klen + 1);
                    cr_assert_lt(vlen, cap, "%s: %s= is too long", path, key);
                    memcpy(out, line + klen + 1, vlen + 1);
                    fclose(f);
                    return;
                }
            }
            fclose(f);
        }
        usleep(10000);
    }
    cr_assert_fail("%s: no %s= within 20 s", path, key);
}

/* The test directory with a small model (context 2048, so generations can run long). */
static inline void gt_init(void)
{
    memset(&gt, 0, sizeof(gt));
    pd_tc_env_init(&gt.env);
    snprintf(gt.model, sizeof(gt.model), "%s/small", gt.env.dir);
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("small", &c), PD_OK);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 1);
    cr_assert_eq(pd_model_save_hf(m, gt.model, PD_DTYPE_F32, NULL, NULL), PD_OK);
    pd_model_destroy(&m);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/tokenizer.bin", gt.model);
    cr_assert_eq(pd_tokenizer_save(tok, path), PD_OK);
    snprintf(gt.tokenizer, sizeof(gt.tokenizer), "%s", path);
    pd_tokenizer_destroy(&tok);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* pd-router on free ports, heartbeats every 100 ms so that the workers' pool figures are
 * fresh; extra: more flags. */
static inline void gt_start_router(const char *extra)
{
    char cmd[6 * PATH_MAX], ready[PATH_MAX];
    snprintf(ready, sizeof(ready), "%s/router.ready", gt.env.dir);
    int n = snprintf(cmd, sizeof(cmd),
                     "%s/pd-router --client tcp://127.0.0.1:* --workers tcp://127.0.0.1:* "
                     "--ready-file %s --tokenizer %s --model-id %s --heartbeat-ms 100 "
                     "--worker-timeout-ms 5000 %s",
                     gt.env.bin, ready, gt.tokenizer, gt.model, extra != NULL ? extra : "");
    cr_assert(n > 0 && (size_t)n < sizeof(cmd), "the router's command line is too long");
    gt_spawn("router", cmd);
    gt_ready_value(ready, "client", gt.client_ep, sizeof(gt.client_ep));
    gt_ready_value(ready, "workers", gt.workers_ep, sizeof(gt.workers_ep));
    /* A wildcard bind reports 0.0.0.0 or 127.0.0.1 as bound: connect to loopback. */
}

static inline void gt_start_workers(void)
{
    static const char *const roles[] = {"prefill", "decode"};
    for (int i = 0; i < 2; i++) {
        char cmd[6 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "%s/pd-%s --router %s --id %s-0 --model %s --threads 1 --pool-mb 64 "
                 "--block-tokens 16 --events tcp://127.0.0.1:* --ip 127.0.0.1 --xfer-backend ucx "
                 "--xfer-timeout-ms 5000%s",
                 gt.env.bin, roles[i], gt.workers_ep, roles[i], gt.model,
                 i == 1 ? " --max-batch 8" : "");
        gt_spawn(roles[i], cmd);
    }
}

/* A pd-gateway on a free port in front of the router; its URL goes to url (may be
 * gt.url). */
static inline void gt_start_gateway(const char *name, const char *extra, char *url, size_t cap)
{
    char cmd[6 * PATH_MAX], ready[PATH_MAX];
    snprintf(ready, sizeof(ready), "%s/%s.ready", gt.env.dir, name);
    int n = snprintf(cmd, sizeof(cmd),
                     "%s/pd-gateway --listen 127.0.0.1:0 --ready-file %s --router %s "
                     "--tokenizer %s --model small --status-interval-ms 100 %s",
                     gt.env.bin, ready, gt.client_ep, gt.tokenizer, extra != NULL ? extra : "");
    cr_assert(n > 0 && (size_t)n < sizeof(cmd), "the gateway's command line is too long");
    gt.gw_pid = gt_spawn(name, cmd);
    gt_ready_value(ready, "http", url, cap);
}

static size_t gt_curl_body(char *p, size_t size, size_t n, void *cls)
{
    gt_resp_t *r = cls;
    size_t add = size * n;
    char *grown = realloc(r->body, r->len + add + 1);
    cr_assert_not_null(grown);
    memcpy(grown + r->len, p, add);
    r->body = grown;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t gt_curl_header(char *p, size_t size, size_t n, void *cls)
{
    gt_resp_t *r = cls;
    size_t have = strlen(r->headers), add = size * n;
    if (have + add + 1 < sizeof(r->headers)) {
        memcpy(r->headers + have, p, add);
        r->headers[have + add] = '\0';
    }
    return add;
}

static inline void gt_resp_free(gt_resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* One HTTP request (10 s timeout). key: sent as Authorization: Bearer (NULL: none). */
static inline void gt_http(const char *method, const char *path, const char *key, const char *body,
                           gt_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    char url[512];
    snprintf(url, sizeof(url), "%s%s", gt.url, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[256];
    if (key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, gt_curl_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, gt_curl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body != NULL)
        r->json = json_loads(r->body, 0, NULL);
}

/* Wait until GET /ready answers 200 (60 s: on a machine at load 25 the workers took
 * over 15 s to load UCX and register; a ready cluster answers at once). */
static inline void gt_wait_ready(void)
{
    uint64_t end = pd_time_now_ms() + 60000;
    gt_resp_t r;
    for (;;) {
        gt_http("GET", "/ready", NULL, NULL, &r);
        long st = r.status;
        gt_resp_free(&r);
        if (st == 200)
            return;
        cr_assert_lt(pd_time_now_ms(), end, "/ready did not answer 200 within 60 s");
        usleep(50000);
    }
}

/* Write an API key file line for key (tenant, options) to f. */
static inline void gt_key_line(FILE *f, const char *key, const char *rest)
{
    uint8_t hash[32];
    char hex[65];
    crypto_hash_sha256(hash, (const unsigned char *)key, strlen(key));
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    fprintf(f, "sha256:%s %s\n", hex, rest);
}

/* An API key file at path (atomically): lines holds pairs of key, "TENANT [options]". */
static inline void gt_write_keys(const char *path, const char *const *lines, int n)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "# test keys\n");
    for (int i = 0; i < n; i += 2)
        gt_key_line(f, lines[i], lines[i + 1]);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

/* The whole cluster and one gateway (extra: its flags). */
static inline void gt_up(const char *gateway_extra)
{
    gt_init();
    gt_start_router(NULL);
    gt_start_workers();
    gt_start_gateway("gateway", gateway_extra, gt.url, sizeof(gt.url));
    gt_wait_ready();
}

/* Stop everything; a process that does not exit 0 on SIGTERM or a sanitizer report in a
 * log fails the test. Idempotent. */
static inline void gt_stop(void)
{
    if (gt.env.dir[0] == '\0')
        return;
    int bad = pd_tc_stop_all(&gt.env);
    int reports = pd_tc_sanitizer_reports(gt.env.dir);
    bool failed = bad != 0 || reports != 0 || getenv("PD_TEST_LOGS") != NULL;
    pd_tc_env_cleanup(&gt.env, failed);
    curl_global_cleanup();
    cr_expect_eq(bad, 0, "%d processes did not stop cleanly", bad);
    cr_expect_eq(reports, 0, "sanitizer reports in the logs");
}

/* A TCP connection to the gateway (raw, for clients that misbehave). */
static inline int gt_connect(void)
{
    int port = 0;
    cr_assert_eq(sscanf(gt.url, "http://127.0.0.1:%d", &port), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

/* The router's status, straight from its client socket: free and total blocks of the
 * worker named id, and the requests in its running batch (running_p may be NULL). */
static inline void gt_worker_status(const char *id, uint32_t *free_p, uint32_t *total_p,
                                    uint32_t *running_p)
{
    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(gt.client_ep, &c), PD_OK);
    pd_proto_msg_t m = {.type = PD_PROTO_TYPE_STATUS};
    cr_assert_eq(pd_client_send(c, &m), PD_OK);
    pd_proto_msg_t r;
    cr_assert_eq(pd_client_recv(c, 5000, &r, NULL), PD_OK);
    cr_assert_eq(r.type, PD_PROTO_TYPE_STATUS_REPLY);
    *free_p = *total_p = 0;
    for (uint32_t i = 0; i < r.u.status_reply.n_workers; i++) {
        if (strcmp(r.u.status_reply.workers[i].id, id) == 0) {
            *free_p = r.u.status_reply.workers[i].free_blocks;
            *total_p = r.u.status_reply.workers[i].n_blocks;
            if (running_p != NULL)
                *running_p = r.u.status_reply.workers[i].running;
        }
    }
    pd_proto_msg_cleanup(&r);
    pd_client_destroy(&c);
}

static inline void gt_worker_blocks(const char *id, uint32_t *free_p, uint32_t *total_p)
{
    gt_worker_status(id, free_p, total_p, NULL);
}

/* The resident memory of pid, kB. */
static inline long gt_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

#endif
