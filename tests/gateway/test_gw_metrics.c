/* GET /metrics sees the cluster: the router's and the workers' own figures (workers per
 * role, KV pool blocks per tier, directory size, transfer bytes and times, queue depth)
 * read from a real cluster after real requests, and checked against what those requests
 * must have left behind. The router authenticates its clients (CURVE): the gateway's key
 * is marked `admin` (every worker's figures) and `gateway` (each API key's tenant reaches
 * the cache); a second gateway on a plain key sees the sums only. */
#include "gw_test_util.h"

#include <zmq.h>

TestSuite(gw_metrics, .fini = gt_stop, .timeout = 120);

/* The value of the sample `series` (name and labels, exactly as printed) in a metrics
 * body; -1 when it is absent. */
static double gm_value(const char *body, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = body; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void gm_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* One completions request of `prompt` (bytes: one token each after BOS) as key. */
static void gm_complete(const char *key, const char *prompt, int max_tokens)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"small\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", prompt,
             max_tokens);
    gt_resp_t r;
    gt_http("POST", "/v1/completions", key, body, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    gt_resp_free(&r);
}

/* Scrape until the cluster figures show `requests` requests done and nothing in flight
 * (the workers' heartbeats and the gateway's polling are both every 100 ms). */
static void gm_scrape_settled(const char *key, int requests, gt_resp_t *r)
{
    uint64_t end = pd_time_now_ms() + 10000;
    for (;;) {
        gt_http("GET", "/metrics", key, NULL, r);
        cr_assert_eq(r->status, 200, "%s", r->body);
        if (gm_value(r->body, "pdkv_router_requests_total") == requests &&
            gm_value(r->body, "pdkv_router_requests_in_flight") == 0 &&
            gm_value(r->body, "pdkv_transfer_seconds_count") == requests &&
            gm_value(r->body, "pdkv_router_directory_blocks") == 12 &&
            gm_value(r->body, "pdkv_pool_blocks{tier=\"G1\",state=\"cached\"}") == 24)
            return;
        cr_assert_lt(pd_time_now_ms(), end, "the figures did not settle in 10 s:\n%s", r->body);
        gt_resp_free(r);
        usleep(100000);
    }
}

Test(gw_metrics, one_scrape_sees_router_and_workers)
{
    gt_init();
    char server_pub[41], server_sec[41], admin_pub[41], admin_sec[41], plain_pub[41], plain_sec[41];
    cr_assert_eq(zmq_curve_keypair(server_pub, server_sec), 0);
    cr_assert_eq(zmq_curve_keypair(admin_pub, admin_sec), 0);
    cr_assert_eq(zmq_curve_keypair(plain_pub, plain_sec), 0);
    char path[4][PATH_MAX], text[256];
    const char *names[] = {"router.key", "clients", "gw-admin.key", "gw-plain.key"};
    for (int i = 0; i < 4; i++)
        snprintf(path[i], sizeof(path[i]), "%s/%s", gt.env.dir, names[i]);
    snprintf(text, sizeof(text), "%s\n", server_sec);
    gm_write(path[0], text);
    snprintf(text, sizeof(text), "front %s admin gateway\nside %s\n", admin_pub, plain_pub);
    gm_write(path[1], text);
    snprintf(text, sizeof(text), "%s\n", admin_sec);
    gm_write(path[2], text);
    snprintf(text, sizeof(text), "%s\n", plain_sec);
    gm_write(path[3], text);
    char keys[PATH_MAX];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *lines[] = {"key-alice", "alice", "key-bob", "bob", "key-ops", "ops admin"};
    gt_write_keys(keys, lines, 6);

    char extra[2 * PATH_MAX];
    int n = snprintf(extra, sizeof(extra),
                     "--min-cached-prefix 64 --curve-secret-file %s "
                     "--client-keys %s",
                     path[0], path[1]);
    cr_assert(n > 0 && (size_t)n < sizeof(extra));
    gt_start_router(extra);
    gt_start_workers();
    n = snprintf(extra, sizeof(extra), "--keys %s --curve-server-key %s --curve-secret-file %s",
                 keys, server_pub, path[2]);
    cr_assert(n > 0 && (size_t)n < sizeof(extra));
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();

    /* 100 bytes: BOS + 100 tokens, 6 full blocks of 16 and 5 tokens more; with 4 tokens out
     * (the last one is never fed back) the sequence stays within 7 blocks. alice twice, bob
     * once: the second alice request reads her 6 blocks from decode's cache, bob's are his
     * own (the gateway key passes each API key's tenant on). */
    char prompt[101];
    for (int i = 0; i < 100; i++)
        prompt[i] = (char)('a' + (i * 7) % 26);
    prompt[100] = '\0';
    gm_complete("key-alice", prompt, 4);
    gm_complete("key-alice", prompt, 4);
    gm_complete("key-bob", prompt, 4);

    gt_resp_t r;
    gm_scrape_settled("key-ops", 3, &r);
    const char *b = r.body;
    cr_assert_eq(gm_value(b, "pdkv_router_up"), 1);
    cr_assert_eq(gm_value(b, "pdkv_workers{role=\"prefill\"}"), 1);
    cr_assert_eq(gm_value(b, "pdkv_workers{role=\"decode\"}"), 1);
    cr_assert_eq(gm_value(b, "pdkv_workers{role=\"both\"}"), 0);
    cr_assert_eq(gm_value(b, "pdkv_workers_ready"), 2);
    cr_assert_eq(gm_value(b, "pdkv_router_queue_depth"), 0);
    cr_assert_eq(gm_value(b, "pdkv_gateway_cache_read_tokens_total"), 96);

    /* The pool: every block of both workers is used or free; each holds the 12 full
     * blocks (6 per tenant) cached; no G2/G3 tier is configured. */
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("small", &c), PD_OK);
    pd_kv_layout_t layout = {.n_layers = c.n_layers,
                             .n_kv_heads = c.n_kv_heads,
                             .head_dim = c.head_dim,
                             .block_tokens = 16,
                             .n_blocks = 1};
    size_t block_bytes = pd_kv_block_bytes(&layout);
    double per_worker = (double)((64u << 20) / block_bytes); /* --pool-mb 64 */
    double used = gm_value(b, "pdkv_pool_blocks{tier=\"G1\",state=\"used\"}");
    double free_blocks = gm_value(b, "pdkv_pool_blocks{tier=\"G1\",state=\"free\"}");
    cr_assert_eq(used + free_blocks, 2 * per_worker, "used %.0f + free %.0f", used, free_blocks);
    cr_assert_eq(gm_value(b, "pdkv_pool_blocks{tier=\"G2\",state=\"free\"}"), 0);
    cr_assert_eq(gm_value(b, "pdkv_pool_blocks{tier=\"G3\",state=\"used\"}"), 0);
    cr_assert_eq(gm_value(b, "pdkv_worker_directory_blocks{worker=\"decode-0\",role=\"decode\"}"),
                 12);
    cr_assert_eq(gm_value(b, "pdkv_worker_directory_blocks{worker=\"prefill-0\",role=\"prefill\"}"),
                 12);
    cr_assert_eq(gm_value(b, "pdkv_worker_pool_blocks{worker=\"decode-0\",role=\"decode\","
                             "tier=\"G1\",state=\"cached\"}"),
                 12);

    /* Transfer: the first alice request and bob's push all 7 blocks of their prompt; the
     * second alice request pushes only the 7th (decode holds the other 6). Only prefill
     * pushes. The times are prefill's own, each > 0. */
    double xfer = gm_value(b, "pdkv_transfer_bytes_total");
    cr_assert_eq(xfer, (double)(15 * block_bytes), "%.0f bytes, blocks of %zu", xfer, block_bytes);
    cr_assert_eq(gm_value(b, "pdkv_worker_transfer_bytes_total{worker=\"prefill-0\","
                             "role=\"prefill\"}"),
                 xfer);
    cr_assert_gt(gm_value(b, "pdkv_transfer_seconds_sum"), 0);
    /* decode found alice's 6 blocks once */
    cr_assert_geq(gm_value(b, "pdkv_cache_hit_blocks_total"), 6);
    gt_resp_free(&r);

    /* A gateway on a key that is not admin: the same sums, no worker one by one. */
    char url2[128];
    n = snprintf(extra, sizeof(extra), "--curve-server-key %s --curve-secret-file %s", server_pub,
                 path[3]);
    cr_assert(n > 0 && (size_t)n < sizeof(extra));
    gt_start_gateway("gateway-side", extra, url2, sizeof(url2));
    memcpy(gt.url, url2, sizeof(url2));
    gm_scrape_settled(NULL, 3, &r);
    cr_assert_eq(gm_value(r.body, "pdkv_workers{role=\"decode\"}"), 1);
    cr_assert_eq(gm_value(r.body, "pdkv_transfer_bytes_total"), xfer);
    cr_assert(strstr(r.body, "pdkv_worker_") == NULL, "%s", r.body);
    gt_resp_free(&r);
}
