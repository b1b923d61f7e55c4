/* pdctl bench --http: the same open-loop load as bench_client.c, through an
 * OpenAI-compatible HTTP API (pd-gateway, or any server that speaks it). Every request is
 * a streamed POST /v1/completions of token ids (libcurl's multi interface, one connection
 * per request in flight, reused when free); its Server-Sent Events give the token times,
 * and the last chunk the usage (stream_options.include_usage). The server's own timings
 * are not in the OpenAI API: those columns stay empty. */
#include "bench_client.h"

#include "pd/time.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* One SSE line or one error body longer than this fails the request: the client's bound
 * on what a server may make it hold. */
#define PD_BENCH_HTTP_MAX_LINE (1u << 20)

static volatile sig_atomic_t pd_bench_http_interrupted;

static void pd_bench_http_on_sigint(int sig)
{
    (void)sig;
    pd_bench_http_interrupted = 1;
}

typedef struct pd_bench_http pd_bench_http_t;

/* A request in flight. */
typedef struct pd_bench_http_req {
    pd_bench_http_t *c;
    size_t idx;
    CURL *easy;
    char *body; /* the JSON request, owned (libcurl does not copy it) */
    char *buf;  /* an unfinished SSE line, or the error body */
    size_t len, cap;
    long status;     /* HTTP status, once the headers are in */
    bool saw_done;   /* data: [DONE] */
    bool have_usage; /* a chunk carried usage */
    char error[128]; /* an error event's message, "" when none */
} pd_bench_http_req_t;

struct pd_bench_http {
    const pd_bench_client_opts_t *opts;
    const pd_bench_item_t *items;
    pd_bench_rec_t *recs;
    size_t n;
    size_t *order;
    pd_bench_http_req_t **live; /* (n) the state of request i while it is in flight */
    size_t *inflight;           /* (n) indices of requests in flight, unordered */
    size_t *slot;               /* (n) position of a request in inflight */
    size_t n_inflight;
    int32_t *tokens; /* (max_input) scratch prompt */
    char base[512];  /* ".../v1" */
    char model[256];
    struct curl_slist *headers;
    CURLM *multi;
    uint64_t t0_ns;
    size_t n_sent, n_ended;
};

static double pd_bench_http_now(const pd_bench_http_t *c)
{
    return pd_time_ns_to_ms(pd_time_now_ns() - c->t0_ns);
}

/* Take request idx off the wire (closing its connection mid-stream tells the server to
 * cancel it) and record its end. */
static void pd_bench_http_end(pd_bench_http_t *c, size_t idx)
{
    pd_bench_http_req_t *q = c->live[idx];
    c->recs[idx].end_ms = pd_bench_http_now(c);
    if (q != NULL) {
        curl_multi_remove_handle(c->multi, q->easy);
        curl_easy_cleanup(q->easy);
        free(q->body);
        free(q->buf);
        free(q);
        c->live[idx] = NULL;
    }
    size_t pos = c->slot[idx], last = c->inflight[--c->n_inflight];
    c->inflight[pos] = last;
    c->slot[last] = pos;
    c->n_ended++;
}

static void pd_bench_http_fail(pd_bench_http_t *c, size_t idx, pd_status_t code, const char *msg)
{
    pd_bench_rec_t *r = &c->recs[idx];
    r->error = code;
    size_t l = strlen(msg); /* cut to fit: the report shows the start */
    if (l >= sizeof(r->error_msg))
        l = sizeof(r->error_msg) - 1;
    memcpy(r->error_msg, msg, l);
    r->error_msg[l] = '\0';
    pd_bench_http_end(c, idx);
}

/* An HTTP error status as the closest pdkv status (docs/API.md lists the mapping). */
static pd_status_t pd_bench_http_status(long http)
{
    switch (http) {
    case 400:
        return PD_ERR_INVALID_PARAM;
    case 401:
    case 403:
        return PD_ERR_AUTH;
    case 404:
        return PD_ERR_NOT_FOUND;
    case 413:
        return PD_ERR_LIMIT;
    case 429:
        return PD_ERR_OVERLOADED;
    case 503:
        return PD_ERR_UNREACHABLE;
    case 504:
        return PD_ERR_TIMEOUT;
    default:
        return PD_ERR_PEER;
    }
}

/* One `data:` payload of the stream. */
static void pd_bench_http_event(pd_bench_http_req_t *q, const char *data, size_t len)
{
    pd_bench_rec_t *r = &q->c->recs[q->idx];
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        q->saw_done = true;
        return;
    }
    /* A token may be any byte, NUL too: the server writes it as \u0000, valid JSON. */
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
    if (j == NULL) {
        snprintf(q->error, sizeof(q->error), "a stream event is not JSON (%.60s at byte %d)",
                 jerr.text, jerr.position);
        return;
    }
    json_t *err = json_object_get(j, "error");
    if (err != NULL) {
        const char *m = json_string_value(json_object_get(err, "message"));
        snprintf(q->error, sizeof(q->error), "%s", m != NULL ? m : "error event");
    }
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    if (choice != NULL) {
        /* pd-gateway sends each token's id (return_token_ids); other servers are counted a
         * token per chunk that carries text. */
        json_t *ids = json_object_get(choice, "token_ids");
        const char *text = json_string_value(json_object_get(choice, "text"));
        size_t k = json_is_array(ids) ? json_array_size(ids) : (text != NULL && *text != '\0');
        if (k > 0) {
            double now = pd_bench_http_now(q->c);
            if (r->n_recv == 0)
                r->first_ms = now;
            r->last_ms = now;
            r->n_recv += (uint32_t)k;
        }
        const char *fin = json_string_value(json_object_get(choice, "finish_reason"));
        if (fin != NULL)
            r->finish_reason =
                strcmp(fin, "length") == 0 ? PD_PROTO_FINISH_LENGTH : PD_PROTO_FINISH_STOP;
    }
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage)) {
        json_int_t prompt = json_integer_value(json_object_get(usage, "prompt_tokens"));
        json_int_t out = json_integer_value(json_object_get(usage, "completion_tokens"));
        json_int_t cached = json_integer_value(
            json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
        if (prompt >= cached && cached >= 0 && out >= 0) {
            r->usage.input_tokens = (uint32_t)(prompt - cached);
            r->usage.cache_read_input_tokens = (uint32_t)cached;
            r->usage.output_tokens = (uint32_t)out;
            q->have_usage = true;
        }
    }
    json_decref(j);
}

static size_t pd_bench_http_on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    pd_bench_http_req_t *q = arg;
    size_t add = size * nmemb;
    if (q->status == 0)
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
    if (q->len + add > PD_BENCH_HTTP_MAX_LINE) {
        snprintf(q->error, sizeof(q->error), "a line of the reply is longer than %u bytes",
                 PD_BENCH_HTTP_MAX_LINE);
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    }
    if (q->len + add + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + add + 1)
            cap *= 2;
        char *grown = realloc(q->buf, cap);
        if (grown == NULL)
            return 0;
        q->buf = grown;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, p, add);
    q->len += add;
    q->buf[q->len] = '\0';
    if (q->status != 200)
        return add; /* an error body: read at the end */
    /* Whole lines: `data: ...` is an event; blank lines, comments and other fields are
     * skipped. A trailing partial line waits for the next call. */
    size_t start = 0;
    for (char *nl; (nl = memchr(q->buf + start, '\n', q->len - start)) != NULL;) {
        size_t end = (size_t)(nl - q->buf), l = end - start;
        if (l > 0 && q->buf[end - 1] == '\r')
            l--;
        if (l >= 5 && memcmp(q->buf + start, "data:", 5) == 0) {
            size_t skip = (l > 5 && q->buf[start + 5] == ' ') ? 6 : 5;
            pd_bench_http_event(q, q->buf + start + skip, l - skip);
        }
        start = end + 1;
    }
    memmove(q->buf, q->buf + start, q->len - start);
    q->len -= start;
    return add;
}

/* Queue request idx. Returns 0, or -1 when it could not be built (it is failed). */
static int pd_bench_http_send(pd_bench_http_t *c, size_t idx)
{
    const pd_bench_item_t *it = &c->items[idx];
    const pd_bench_client_opts_t *o = c->opts;
    pd_bench_rec_t *r = &c->recs[idx];
    pd_bench_item_tokens(it, (uint32_t)idx, o->token_seed, c->tokens);
    json_t *ids = json_array();
    for (uint32_t i = 0; ids != NULL && i < it->n_input; i++)
        json_array_append_new(ids, json_integer(c->tokens[i]));
    json_t *req =
        json_pack("{s:s, s:o, s:i, s:f, s:f, s:I, s:b, s:{s:b}, s:b}", "model", c->model, "prompt",
                  ids, "max_tokens", (int)it->n_output, "temperature", o->temperature, "top_p",
                  o->top_p, "seed", (json_int_t)(o->sampling_seed + idx), "stream", 1,
                  "stream_options", "include_usage", 1, "return_token_ids", 1);
    pd_bench_http_req_t *q = calloc(1, sizeof(*q));
    char url[600];
    snprintf(url, sizeof(url), "%s/completions", c->base);
    if (req != NULL && q != NULL)
        q->body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (q != NULL && q->body != NULL)
        q->easy = curl_easy_init();
    r->sent = true;
    c->slot[idx] = c->n_inflight;
    c->inflight[c->n_inflight++] = idx;
    if (q == NULL || q->easy == NULL) {
        if (q != NULL)
            free(q->body);
        free(q);
        r->send_ms = pd_bench_http_now(c);
        pd_bench_http_fail(c, idx, PD_ERR_NO_MEMORY, "request could not be built");
        return -1;
    }
    q->c = c;
    q->idx = idx;
    curl_easy_setopt(q->easy, CURLOPT_URL, url);
    curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(q->easy, CURLOPT_WRITEFUNCTION, pd_bench_http_on_data);
    curl_easy_setopt(q->easy, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(q->easy, CURLOPT_PRIVATE, q);
    curl_easy_setopt(q->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(q->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    c->live[idx] = q;
    /* As for the router: the clock is read before the request leaves. */
    r->send_ms = pd_bench_http_now(c);
    if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK) {
        pd_bench_http_fail(c, idx, PD_ERR_IO, "curl_multi_add_handle failed");
        return -1;
    }
    c->n_sent++;
    return 0;
}

/* A transfer ended: done, an HTTP error, an error event, or a broken connection. */
static void pd_bench_http_finish(pd_bench_http_t *c, pd_bench_http_req_t *q, CURLcode rc)
{
    size_t idx = q->idx;
    pd_bench_rec_t *r = &c->recs[idx];
    char msg[160];
    if (q->error[0] != '\0') {
        pd_bench_http_fail(c, idx, q->status == 200 ? PD_ERR_PEER : pd_bench_http_status(q->status),
                           q->error);
        return;
    }
    if (rc != CURLE_OK) {
        snprintf(msg, sizeof(msg), "HTTP transfer failed: %s", curl_easy_strerror(rc));
        pd_bench_http_fail(c, idx, PD_ERR_IO, msg);
        return;
    }
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
    if (q->status != 200) {
        json_t *j = q->buf != NULL ? json_loadb(q->buf, q->len, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        snprintf(msg, sizeof(msg), "HTTP %ld: %s", q->status, m != NULL ? m : "no error message");
        json_decref(j);
        pd_bench_http_fail(c, idx, pd_bench_http_status(q->status), msg);
        return;
    }
    if (!q->saw_done) {
        pd_bench_http_fail(c, idx, PD_ERR_PEER, "the stream ended without data: [DONE]");
        return;
    }
    if (!q->have_usage) {
        r->usage.input_tokens = r->n_input;
        r->usage.output_tokens = r->n_recv;
    }
    r->finished = true;
    pd_bench_http_end(c, idx);
}

/* GET /v1/models (5 s): the server answers, accepts the key, and names the model to ask
 * for when --model is not given. */
static pd_status_t pd_bench_http_check(pd_bench_http_t *c)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return PD_ERR_NO_MEMORY;
    pd_bench_http_req_t q = {.c = c, .easy = e, .status = 1 /* collect the body whole */};
    char url[600];
    snprintf(url, sizeof(url), "%s/models", c->base);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, pd_bench_http_on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &q);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    json_t *j = (rc == CURLE_OK && q.buf != NULL) ? json_loadb(q.buf, q.len, 0, NULL) : NULL;
    free(q.buf);
    pd_status_t st = PD_OK;
    if (rc != CURLE_OK) {
        fprintf(stderr, "pdctl: bench: GET %s: %s\n", url, curl_easy_strerror(rc));
        st = PD_ERR_UNREACHABLE;
    } else if (status != 200) {
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "pdctl: bench: GET %s: HTTP %ld: %s\n", url, status, m != NULL ? m : "");
        st = status == 401 || status == 403 ? PD_ERR_AUTH : PD_ERR_UNREACHABLE;
    } else if (c->model[0] == '\0') {
        const char *id =
            json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
        if (id == NULL || strlen(id) >= sizeof(c->model)) {
            fprintf(stderr, "pdctl: bench: GET %s names no model; give --model\n", url);
            st = PD_ERR_PROTO;
        } else {
            memcpy(c->model, id, strlen(id) + 1);
        }
    }
    if (st == PD_OK && c->opts->progress)
        fprintf(stderr, "pdctl: bench: %s serves model '%s'\n", c->base, c->model);
    json_decref(j);
    return st;
}

static pd_status_t pd_bench_http_setup(pd_bench_http_t *c)
{
    const pd_bench_client_opts_t *o = c->opts;
    /* The OpenAI clients' base URL ends in /v1; a bare server address gets it added. */
    size_t l = strlen(o->http_url);
    while (l > 0 && o->http_url[l - 1] == '/')
        l--;
    bool v1 = l >= 3 && memcmp(o->http_url + l - 3, "/v1", 3) == 0;
    if (l + 4 >= sizeof(c->base)) {
        fprintf(stderr, "pdctl: bench: --http URL is too long\n");
        return PD_ERR_INVALID_PARAM;
    }
    snprintf(c->base, sizeof(c->base), "%.*s%s", (int)l, o->http_url, v1 ? "" : "/v1");
    snprintf(c->model, sizeof(c->model), "%s", o->model != NULL ? o->model : "");
    char auth[600];
    /* Expect: off, or libcurl waits for 100-continue before sending a body over 1 KiB. */
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (o->api_key != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->api_key);
        c->headers = curl_slist_append(c->headers, auth);
    }
    c->multi = curl_multi_init();
    return c->headers != NULL && c->multi != NULL ? PD_OK : PD_ERR_NO_MEMORY;
}

pd_status_t pd_bench_http_run(const pd_bench_client_opts_t *opts, const pd_bench_item_t *items,
                              size_t n, pd_bench_rec_t *recs)
{
    pd_status_t status = PD_ERR_NO_MEMORY;
    pd_bench_http_t c = {.opts = opts, .items = items, .recs = recs, .n = n};
    struct sigaction sa_old, sa = {0};
    bool sig_set = false;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return PD_ERR_IO;
    uint32_t max_input = pd_bench_recs_init(items, n, recs);
    /* Not in the OpenAI API: left out of the summary (NaN is skipped, null in JSON). */
    for (size_t i = 0; i < n; i++)
        recs[i].timings = (pd_proto_timings_t){.queue_ms = NAN,
                                               .prefill_ms = NAN,
                                               .transfer_ms = NAN,
                                               .ttft_ms = NAN,
                                               .tpot_ms = NAN,
                                               .total_ms = NAN,
                                               .admission_ms = NAN,
                                               .prefill_queue_ms = NAN,
                                               .first_step_ms = NAN};
    c.order = malloc((n ? n : 1) * sizeof(size_t));
    c.inflight = malloc((n ? n : 1) * sizeof(size_t));
    c.slot = malloc((n ? n : 1) * sizeof(size_t));
    c.live = calloc(n ? n : 1, sizeof(*c.live));
    c.tokens = malloc(max_input * sizeof(int32_t));
    if (c.order == NULL || c.inflight == NULL || c.slot == NULL || c.live == NULL ||
        c.tokens == NULL)
        goto out;
    pd_bench_order_by_arrival(items, n, c.order);
    if ((status = pd_bench_http_setup(&c)) != PD_OK || (status = pd_bench_http_check(&c)) != PD_OK)
        goto out;

    pd_bench_http_interrupted = 0;
    sa.sa_handler = pd_bench_http_on_sigint;
    sigemptyset(&sa.sa_mask);
    sig_set = sigaction(SIGINT, &sa, &sa_old) == 0;
    c.t0_ns = pd_time_now_ns();
    size_t next = 0;
    double last_progress = 0, last_timeout_check = 0;
    while (c.n_ended < n && !pd_bench_http_interrupted) {
        double now = pd_bench_http_now(&c);
        while (next < n && items[c.order[next]].arrival_ms <= now &&
               (opts->concurrency == 0 || c.n_inflight < opts->concurrency))
            pd_bench_http_send(&c, c.order[next++]);
        int running = 0;
        curl_multi_perform(c.multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c.multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            pd_bench_http_req_t *q = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            if (q != NULL)
                pd_bench_http_finish(&c, q, m->data.result);
        }
        now = pd_bench_http_now(&c);
        if (now - last_timeout_check >= 100) {
            for (size_t k = 0; k < c.n_inflight;) {
                size_t idx = c.inflight[k];
                if (now - recs[idx].send_ms > (double)opts->timeout_ms) {
                    pd_bench_http_fail(&c, idx, PD_ERR_TIMEOUT, "no end within --timeout-ms");
                    continue; /* the slot now holds another request */
                }
                k++;
            }
            last_timeout_check = now;
        }
        if (opts->progress && now - last_progress >= 1000) {
            fprintf(stderr, "pdctl: bench: %6.1f s  sent %zu/%zu  ended %zu  in flight %zu\n",
                    now / 1000.0, c.n_sent, n, c.n_ended, c.n_inflight);
            last_progress = now;
        }
        long timeout = 100;
        if (next < n && (opts->concurrency == 0 || c.n_inflight < opts->concurrency)) {
            double wait = items[c.order[next]].arrival_ms - pd_bench_http_now(&c);
            if (wait < 100)
                timeout = wait > 0 ? (long)ceil(wait) : 0;
        }
        if (c.n_ended < n)
            curl_multi_poll(c.multi, NULL, 0, (int)timeout, NULL);
    }
    if (pd_bench_http_interrupted) {
        fprintf(stderr, "pdctl: bench: interrupted; closing %zu requests in flight\n",
                c.n_inflight);
        while (c.n_inflight > 0)
            pd_bench_http_fail(&c, c.inflight[0], PD_ERR_CANCELED, "interrupted");
    }
    status = pd_bench_http_interrupted ? PD_ERR_CANCELED : PD_OK;
out:
    if (sig_set)
        sigaction(SIGINT, &sa_old, NULL);
    while (c.live != NULL && c.n_inflight > 0) /* only after a failed setup: none */
        pd_bench_http_end(&c, c.inflight[0]);
    if (c.multi != NULL)
        curl_multi_cleanup(c.multi);
    curl_slist_free_all(c.headers);
    free(c.order);
    free(c.inflight);
    free(c.slot);
    free(c.live);
    free(c.tokens);
    curl_global_cleanup();
    return status;
}
