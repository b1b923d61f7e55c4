/* pd-gateway in front of a real cluster (pd-router, pd-prefill, pd-decode on loopback
 * ports chosen at run time), driven over HTTP: exact tokens and cache accounting per key,
 * every error status in each API's shape, a client that hangs up, slow and idle clients,
 * and key reloads. The official SDKs are in test_gw_sdk.c. */
#include "gw_test_util.h"

#include <sys/resource.h>

TestSuite(gateway, .fini = gt_stop, .timeout = 120);

/* The json integer at a path of object keys (NULL-terminated), -1 when absent. */
static json_int_t gt_int(json_t *j, ...)
{
    va_list ap;
    va_start(ap, j);
    for (const char *k; j != NULL && (k = va_arg(ap, const char *)) != NULL;)
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(k)) : json_object_get(j, k);
    va_end(ap);
    return json_is_integer(j) ? json_integer_value(j) : -1;
}

static uint32_t gt_ids(json_t *a, int32_t *out, uint32_t cap)
{
    uint32_t n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (n < cap)
            out[n++] = (int32_t)json_integer_value(v);
    }
    return n;
}

/* The token ids of an SSE completions stream (choices[0].token_ids of every chunk) and
 * the usage of its last chunk. */
static uint32_t gt_sse_ids(const char *body, int32_t *out, uint32_t cap, json_t **usage_p,
                           bool *done_p)
{
    uint32_t n = 0;
    *usage_p = NULL;
    *done_p = false;
    for (const char *p = body; (p = strstr(p, "data: ")) != NULL; p += 6) {
        if (strncmp(p + 6, "[DONE]", 6) == 0) {
            *done_p = true;
            continue;
        }
        json_t *chunk = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, NULL);
        cr_assert_not_null(chunk, "a chunk is not JSON: %.80s", p);
        json_t *ids =
            json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "token_ids");
        if (ids != NULL)
            n += gt_ids(ids, out + n, cap - n);
        json_t *u = json_object_get(chunk, "usage");
        if (json_is_object(u)) {
            json_decref(*usage_p);
            *usage_p = json_incref(u);
        }
        json_decref(chunk);
    }
    return n;
}

Test(gateway, tokens_exact_and_cache_per_key)
{
    gt_init();
    char keys[PATH_MAX], extra[PATH_MAX + 16];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *lines[] = {"key-alice", "alice", "key-bob", "bob"};
    gt_write_keys(keys, lines, 4);
    snprintf(extra, sizeof(extra), "--keys %s", keys);
    gt_start_router("--min-cached-prefix 64");
    gt_start_workers();
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();

    /* 100 bytes of text: BOS + 100 byte tokens, 6 full blocks of 16. */
    char prompt[101];
    for (int i = 0; i < 100; i++)
        prompt[i] = (char)('a' + (i * 7) % 26);
    prompt[100] = '\0';
    char body[512];
    snprintf(body, sizeof(body),
             "{\"model\":\"small\",\"prompt\":\"%s\",\"max_tokens\":12,\"seed\":7,"
             "\"temperature\":0.8,\"return_token_ids\":true}",
             prompt);

    /* The reference: `pdctl generate`'s loop on the same prompt, seed and temperature. */
    int32_t ids[128], ref[16];
    ids[0] = 1;
    for (int i = 0; i < 100; i++)
        ids[i + 1] = 3 + (unsigned char)prompt[i];
    pd_model_t *model = NULL;
    cr_assert_eq(pd_model_load(gt.model, &model), PD_OK);
    pd_sampling_t s = {.temperature = 0.8f, .top_p = 1.0f, .seed = 7};
    uint32_t n_ref = pd_tc_reference(model, ids, 101, 12, &s, ref);
    pd_model_destroy(&model);

    gt_resp_t r;
    gt_http("POST", "/v1/completions", "key-alice", body, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    int32_t got[128];
    json_t *choice = json_array_get(json_object_get(r.json, "choices"), 0);
    uint32_t n = gt_ids(json_object_get(choice, "token_ids"), got, 128);
    cr_assert_eq(n, n_ref);
    cr_assert_arr_eq(got, ref, n * sizeof(int32_t), "tokens differ from the reference");
    cr_assert_eq(gt_ids(json_object_get(r.json, "prompt_token_ids"), got, 128), 101);
    cr_assert_arr_eq(got, ids, 101 * sizeof(int32_t));
    cr_assert_eq(gt_int(r.json, "usage", "prompt_tokens", NULL), 101);
    cr_assert_eq(gt_int(r.json, "usage", "completion_tokens", NULL), n_ref);
    cr_assert_eq(gt_int(r.json, "usage", "prompt_tokens_details", "cached_tokens", NULL), 0);
    gt_resp_free(&r);

    /* Again, streamed: the same tokens, and the 6 full blocks come from the cache. */
    char sbody[600];
    snprintf(sbody, sizeof(sbody),
             "%.*s,\"stream\":true,\"stream_options\":"
             "{\"include_usage\":true}}",
             (int)strlen(body) - 1, body);
    gt_http("POST", "/v1/completions", "key-alice", sbody, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.headers, "text/event-stream") != NULL);
    json_t *usage = NULL;
    bool done = false;
    n = gt_sse_ids(r.body, got, 128, &usage, &done);
    cr_assert(done, "no data: [DONE]");
    cr_assert_eq(n, n_ref);
    cr_assert_arr_eq(got, ref, n * sizeof(int32_t), "streamed tokens differ");
    cr_assert_eq(gt_int(usage, "prompt_tokens_details", "cached_tokens", NULL), 96);
    json_decref(usage);
    gt_resp_free(&r);

    /* Another key is another tenant: nothing of alice's cache is visible to bob. */
    gt_http("POST", "/v1/completions", "key-bob", body, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    choice = json_array_get(json_object_get(r.json, "choices"), 0);
    n = gt_ids(json_object_get(choice, "token_ids"), got, 128);
    cr_assert_arr_eq(got, ref, n * sizeof(int32_t));
    cr_assert_eq(gt_int(r.json, "usage", "prompt_tokens_details", "cached_tokens", NULL), 0);
    gt_resp_free(&r);

    /* The built-in chat template: "User: hi\nAssistant:" after BOS. */
    gt_http("POST", "/v1/chat/completions", "key-alice",
            "{\"model\":\"small\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
            "\"max_tokens\":40,\"temperature\":0,\"return_token_ids\":true}",
            &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(gt_ids(json_object_get(r.json, "prompt_token_ids"), got, 128), 20);
    cr_assert_eq(got[1], 3 + 'U');
    cr_assert_eq(got[19], 3 + ':');
    choice = json_array_get(json_object_get(r.json, "choices"), 0);
    const char *text =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    cr_assert_not_null(text);
    char *full = strdup(text);
    gt_resp_free(&r);

    /* A stop string (the answer's second character) ends the text just before it. */
    size_t first = 1;
    while (full[first] != '\0' && ((unsigned char)full[first] & 0xC0) == 0x80)
        first++;
    size_t second = first + 1;
    while (full[second] != '\0' && ((unsigned char)full[second] & 0xC0) == 0x80)
        second++;
    cr_assert_gt(second, first, "the answer is too short: '%s'", full);
    json_t *req = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:i, s:s%}", "model", "small", "messages",
                            "role", "user", "content", "hi", "max_tokens", 40, "temperature", 0,
                            "stop", full + first, second - first);
    char *sreq = json_dumps(req, 0);
    json_decref(req);
    gt_http("POST", "/v1/chat/completions", "key-alice", sreq, &r);
    free(sreq);
    cr_assert_eq(r.status, 200, "%s", r.body);
    choice = json_array_get(json_object_get(r.json, "choices"), 0);
    const char *cut =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    char *stop = strndup(full + first, second - first);
    size_t expect = (size_t)(strstr(full, stop) - full);
    cr_assert_eq(strlen(cut), expect, "'%s' should end before '%s' in '%s'", cut, stop, full);
    cr_assert_eq(strncmp(cut, full, expect), 0);
    cr_assert_str_eq(json_string_value(json_object_get(choice, "finish_reason")), "stop");
    cr_assert_leq(gt_int(r.json, "usage", "completion_tokens", NULL), 40);
    free(stop);
    free(full);
    gt_resp_free(&r);
}

Test(gateway, error_statuses_in_each_shape)
{
    gt_init();
    char keys[PATH_MAX], extra[PATH_MAX + 64];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *lines[] = {"key-user", "alice", "key-slow", "slow rpm=1", "key-ops", "ops admin"};
    gt_write_keys(keys, lines, 6);
    snprintf(extra, sizeof(extra), "--keys %s --max-body-bytes 65536", keys);
    gt_start_router(NULL);
    gt_start_workers();
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();
    const char *ok_body = "{\"model\":\"small\",\"prompt\":\"x\",\"max_tokens\":2}";
    gt_resp_t r;

    gt_http("POST", "/v1/completions", "key-user", "{\"model\": \"small\", \"prompt\": ", &r);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "type")),
                     "invalid_request_error");
    gt_resp_free(&r);
    gt_http("POST", "/v1/completions", "key-user",
            "{\"model\":\"small\",\"prompt\":\"x\",\"temperature\":7}", &r);
    cr_assert_eq(r.status, 400);
    gt_resp_free(&r);
    gt_http("POST", "/v1/messages", "key-user", "[1,2]", &r);
    cr_assert_eq(r.status, 400);
    /* Anthropic's shape on Anthropic's path. */
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "type")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "type")),
                     "invalid_request_error");
    gt_resp_free(&r);

    gt_http("POST", "/v1/completions", NULL, ok_body, &r);
    cr_assert_eq(r.status, 401);
    gt_resp_free(&r);
    gt_http("POST", "/v1/messages", "key-wrong", ok_body, &r);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "type")),
                     "authentication_error");
    gt_resp_free(&r);

    gt_http("POST", "/v1/completions", "key-user",
            "{\"model\":\"gpt-9\",\"prompt\":\"x\",\"max_tokens\":2}", &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "code")),
                     "model_not_found");
    gt_resp_free(&r);
    gt_http("GET", "/v2/nothing", "key-user", NULL, &r);
    cr_assert_eq(r.status, 404);
    gt_resp_free(&r);
    gt_http("GET", "/v1/chat/completions", "key-user", NULL, &r);
    cr_assert_eq(r.status, 405);
    gt_resp_free(&r);

    /* 413: a body over --max-body-bytes, declared up front or not. */
    char *big = malloc(70000);
    cr_assert_not_null(big);
    memset(big, ' ', 69999);
    big[0] = '{';
    big[69998] = '}';
    big[69999] = '\0';
    gt_http("POST", "/v1/completions", "key-user", big, &r);
    cr_assert_eq(r.status, 413);
    gt_resp_free(&r);
    free(big);
    int fd = gt_connect();
    const char *chunked = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          "key-user\r\nTransfer-Encoding: chunked\r\n\r\n";
    cr_assert_gt(write(fd, chunked, strlen(chunked)), 0);
    char chunk[8192 + 16];
    int hl = snprintf(chunk, sizeof(chunk), "2000\r\n");
    memset(chunk + hl, 'a', 8192);
    memcpy(chunk + hl + 8192, "\r\n", 2);
    for (int i = 0; i < 9; i++)
        cr_assert_gt(write(fd, chunk, (size_t)hl + 8194), 0);
    cr_assert_gt(write(fd, "0\r\n\r\n", 5), 0);
    char reply[512] = "";
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_gt(read(fd, reply, sizeof(reply) - 1), 0);
    cr_assert(strncmp(reply, "HTTP/1.1 413", 12) == 0, "%s", reply);
    close(fd);

    /* 429: a key over its rate, with Retry-After. */
    gt_http("POST", "/v1/completions", "key-slow", ok_body, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    gt_resp_free(&r);
    gt_http("POST", "/v1/completions", "key-slow", ok_body, &r);
    cr_assert_eq(r.status, 429);
    cr_assert(strcasestr(r.headers, "Retry-After: ") != NULL, "%s", r.headers);
    gt_resp_free(&r);

    /* /metrics is for admin keys once keys are on. */
    gt_http("GET", "/metrics", "key-user", NULL, &r);
    cr_assert_eq(r.status, 403);
    gt_resp_free(&r);
    gt_http("GET", "/metrics", "key-ops", NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "pdkv_workers{role=\"decode\"} 1\n") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "pdkv_gateway_requests_total{path=\"/v1/completions\","
                             "status=\"429\"} 1\n") != NULL);
    cr_assert(strstr(r.body, "pdkv_worker_pool_blocks{worker=\"decode-0\"") != NULL);
    gt_resp_free(&r);

    /* 504: a gateway whose deadline is shorter than the generation; the cluster is told. */
    char url504[128], extra504[PATH_MAX + 64];
    snprintf(extra504, sizeof(extra504), "--request-timeout-ms 300");
    gt_start_gateway("gateway504", extra504, url504, sizeof(url504));
    char saved[128];
    snprintf(saved, sizeof(saved), "%s", gt.url);
    snprintf(gt.url, sizeof(gt.url), "%s", url504);
    gt_wait_ready();
    gt_http("POST", "/v1/completions", NULL,
            "{\"model\":\"small\",\"prompt\":\"Once\",\"max_tokens\":2000,\"temperature\":0}", &r);
    cr_assert_eq(r.status, 504, "%ld %s", r.status, r.body);
    gt_resp_free(&r);
    uint32_t free_blocks = 0, total = 0;
    uint64_t end = pd_time_now_ms() + 2000;
    do {
        usleep(20000);
        gt_worker_blocks("decode-0", &free_blocks, &total);
    } while (free_blocks != total && pd_time_now_ms() < end);
    cr_assert_eq(free_blocks, total, "the timed-out request still holds decode blocks");

    /* 503: a gateway before a router with no workers. */
    char keep_client[128];
    snprintf(keep_client, sizeof(keep_client), "%s", gt.client_ep);
    char ready[PATH_MAX], cmd[6 * PATH_MAX];
    snprintf(ready, sizeof(ready), "%s/router2.ready", gt.env.dir);
    snprintf(cmd, sizeof(cmd),
             "%s/pd-router --client tcp://127.0.0.1:* --workers tcp://127.0.0.1:* "
             "--ready-file %s --tokenizer byte",
             gt.env.bin, ready);
    gt_spawn("router2", cmd);
    gt_ready_value(ready, "client", gt.client_ep, sizeof(gt.client_ep));
    char url503[128];
    gt_start_gateway("gateway503", NULL, url503, sizeof(url503));
    snprintf(gt.url, sizeof(gt.url), "%s", url503);
    end = pd_time_now_ms() + 5000;
    do {
        usleep(50000);
        gt_http("GET", "/ready", NULL, NULL, &r);
        bool router_seen = json_is_true(json_object_get(r.json, "router"));
        long st = r.status;
        gt_resp_free(&r);
        if (router_seen) {
            cr_assert_eq(st, 503);
            break;
        }
    } while (pd_time_now_ms() < end);
    gt_http("POST", "/v1/messages", NULL,
            "{\"model\":\"small\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\","
            "\"content\":\"x\"}]}",
            &r);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert(strcasestr(r.headers, "Retry-After: ") != NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "type")),
                     "overloaded_error");
    gt_resp_free(&r);
    snprintf(gt.url, sizeof(gt.url), "%s", saved);
    snprintf(gt.client_ep, sizeof(gt.client_ep), "%s", keep_client);
}

/* Write a streaming request on a raw socket and wait for its first event. */
static int gt_start_stream(bool stream)
{
    int fd = gt_connect();
    char body[256], req[512];
    int bl = snprintf(body, sizeof(body),
                      "{\"model\":\"small\",\"prompt\":\"Once\",\"max_tokens\":2000,"
                      "\"temperature\":0,\"stream\":%s}",
                      stream ? "true" : "false");
    int rl = snprintf(req, sizeof(req),
                      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "application/json\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    cr_assert_eq(write(fd, req, (size_t)rl), rl);
    if (stream) {
        char buf[4096];
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        cr_assert_gt(n, 0);
        buf[n] = '\0';
        cr_assert(strstr(buf, "200 OK") != NULL, "%s", buf);
    }
    return fd;
}

/* Hang up on fd once its request is in decode's running batch; its blocks must be free
 * within 1 s. (A request canceled while its KV is still on the way keeps its blocks until
 * the transfer deadline, so that a late push cannot land in reused memory: docs/API.md.) */
static void gt_hangup_frees(int fd)
{
    uint32_t free_blocks = 0, total = 0, running = 0;
    uint64_t end = pd_time_now_ms() + 5000;
    do {
        gt_worker_status("decode-0", &free_blocks, &total, &running);
        if (free_blocks < total && running > 0)
            break;
        usleep(10000);
    } while (pd_time_now_ms() < end);
    cr_assert_gt(running, 0, "the request never reached decode's running batch");
    cr_assert_lt(free_blocks, total, "decode never held blocks for the request");
    uint64_t t0 = pd_time_now_ms();
    close(fd);
    do {
        usleep(10000);
        gt_worker_blocks("decode-0", &free_blocks, &total);
    } while (free_blocks != total && pd_time_now_ms() < t0 + 3000);
    uint64_t took = pd_time_now_ms() - t0;
    cr_assert_eq(free_blocks, total, "blocks still held 3 s after the client left");
    cr_assert_lt(took, 1000, "blocks freed only after %llu ms", (unsigned long long)took);
}

Test(gateway, hangup_cancels_and_frees_blocks)
{
    gt_up(NULL);
    gt_hangup_frees(gt_start_stream(true));  /* mid-stream */
    gt_hangup_frees(gt_start_stream(false)); /* waiting for a whole answer */

    /* A client that sends its request and leaves at once: its hang-up may be seen before
     * the request has started (libmicrohttpd reads the request and the end of the stream
     * together); the request must still not run for nobody (2,000 tokens would keep
     * decode busy for seconds). */
    int fd = gt_connect();
    const char *body = "{\"model\":\"small\",\"prompt\":\"Once\",\"max_tokens\":2000,"
                       "\"temperature\":0,\"stream\":true}";
    char req[512];
    int rl = snprintf(req, sizeof(req),
                      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    cr_assert_eq(write(fd, req, (size_t)rl), rl);
    close(fd);
    usleep(1500 * 1000);
    uint32_t free_blocks = 0, total = 0, running = 0;
    gt_worker_status("decode-0", &free_blocks, &total, &running);
    cr_assert_eq(running, 0, "a request whose client left at once still runs");
    /* Canceled while its KV may still be on the way: its blocks come back by the transfer
     * deadline (5 s here) at the latest. */
    uint64_t end = pd_time_now_ms() + 6000;
    while (free_blocks != total && pd_time_now_ms() < end) {
        usleep(20000);
        gt_worker_blocks("decode-0", &free_blocks, &total);
    }
    cr_assert_eq(free_blocks, total, "a request whose client left at once still holds blocks");

    gt_resp_t r;
    gt_http("GET", "/metrics", NULL, NULL, &r);
    /* 2, or 3 when the last request had started before its client was seen to leave. */
    cr_assert(strstr(r.body, "pdkv_gateway_client_disconnects_total 2\n") != NULL ||
                  strstr(r.body, "pdkv_gateway_client_disconnects_total 3\n") != NULL,
              "%s", r.body);
    cr_assert(strstr(r.body, "pdkv_gateway_requests_in_flight 0\n") != NULL);
    gt_resp_free(&r);
}

/* Whether the peer closed fd within timeout_ms (read gives 0 or an error). */
static bool gt_closed_within(int fd, const char *trickle, int timeout_ms)
{
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    size_t i = 0;
    while (pd_time_now_ms() < end) {
        struct timeval tv = {.tv_usec = 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        cr_assert_leq(n, 0, "the gateway answered a request that never completed");
        if (trickle != NULL && trickle[i] != '\0' && send(fd, &trickle[i], 1, MSG_NOSIGNAL) == 1)
            i++;
    }
    return false;
}

Test(gateway, slow_and_idle_clients_are_bounded)
{
    gt_up("--read-timeout-ms 2500");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    /* 1000 idle connections: memory stays bounded and the gateway keeps answering. */
    long rss0 = gt_rss_kb(gt.gw_pid);
    static int idle[1000];
    for (int i = 0; i < 1000; i++)
        idle[i] = gt_connect();
    for (int i = 0; i < 1000; i += 2) /* half of them sent a piece of a request line */
        cr_assert_eq(write(idle[i], "GET /hea", 8), 8);
    uint64_t t0 = pd_time_now_ms();
    gt_resp_t r;
    gt_http("GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    gt_resp_free(&r);
    gt_http("POST", "/v1/completions", NULL,
            "{\"model\":\"small\",\"prompt\":\"x\",\"max_tokens\":4}", &r);
    cr_assert_eq(r.status, 200);
    gt_resp_free(&r);
    cr_assert_lt(pd_time_now_ms() - t0, 2000);
    gt_http("GET", "/metrics", NULL, NULL, &r);
    cr_assert(strstr(r.body, "pdkv_gateway_connections 100") != NULL, "%s", r.body);
    gt_resp_free(&r);
    long rss1 = gt_rss_kb(gt.gw_pid);
    cr_assert_lt(rss1 - rss0, 32 * 1024, "1000 idle connections cost %ld kB", rss1 - rss0);

    /* Slow loris: headers one byte at a time, and a body that trickles. Both are cut at
     * the read deadline however steadily they send. */
    int hdr = gt_connect(), body = gt_connect();
    const char *slow_hdr = "GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: "
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *post = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    cr_assert_gt(write(body, post, strlen(post)), 0);
    cr_assert(gt_closed_within(hdr, slow_hdr, 6000), "a slow header writer was never cut");
    cr_assert(gt_closed_within(body, "{\"model\":\"small\",\"prompt\":\"xxxxxxxxxxxxxxxxxx", 2000),
              "a slow body writer was never cut");
    close(hdr);
    close(body);

    /* By now the idle connections are past their deadline too. */
    uint64_t end = pd_time_now_ms() + 3000;
    bool gone = false;
    while (!gone && pd_time_now_ms() < end) {
        gt_http("GET", "/metrics", NULL, NULL, &r);
        json_int_t n = -1;
        const char *at = strstr(r.body, "pdkv_gateway_connections ");
        if (at != NULL)
            n = atoll(at + 25);
        gone = n >= 0 && n <= 2;
        gt_resp_free(&r);
        usleep(100000);
    }
    cr_assert(gone, "idle connections were not closed at the read deadline");
    for (int i = 0; i < 1000; i++)
        close(idle[i]);
}

Test(gateway, keys_reload_on_sighup)
{
    gt_init();
    char keys[PATH_MAX], extra[PATH_MAX + 16];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *one[] = {"key-alice", "alice"};
    gt_write_keys(keys, one, 2);
    snprintf(extra, sizeof(extra), "--keys %s", keys);
    gt_start_router(NULL);
    gt_start_workers();
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();
    gt_resp_t r;
    gt_http("GET", "/v1/models", "key-bob", NULL, &r);
    cr_assert_eq(r.status, 401);
    gt_resp_free(&r);

    const char *two[] = {"key-bob", "bob"};
    gt_write_keys(keys, two, 2);
    kill(gt.gw_pid, SIGHUP);
    uint64_t end = pd_time_now_ms() + 3000;
    long st = 0;
    do {
        usleep(20000);
        gt_http("GET", "/v1/models", "key-bob", NULL, &r);
        st = r.status;
        gt_resp_free(&r);
    } while (st != 200 && pd_time_now_ms() < end);
    cr_assert_eq(st, 200, "bob's key did not work after SIGHUP");
    gt_http("GET", "/v1/models", "key-alice", NULL, &r);
    cr_assert_eq(r.status, 401, "alice's key still works after it was removed");
    gt_resp_free(&r);

    /* A broken file is refused and the keys in force stay. */
    FILE *f = fopen(keys, "w");
    cr_assert_not_null(f);
    fprintf(f, "sha256:nothex bob\n");
    fclose(f);
    kill(gt.gw_pid, SIGHUP);
    usleep(300000);
    gt_http("GET", "/v1/models", "key-bob", NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(
                         json_object_get(json_array_get(json_object_get(r.json, "data"), 0), "id")),
                     "small");
    gt_resp_free(&r);
}
