/* GET /metrics: the gateway's own figures and the cluster's, in the Prometheus text
 * exposition format (version 0.0.4), so that one scrape of any gateway sees the cluster.
 * Latencies are histograms in seconds, as Prometheus names them. The cluster figures
 * come from the router's last stats reply (the gateway polls it, docs/API.md). */
#include "gw_int.h"

#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The HTTP statuses counted one by one; anything else counts as "other". 499 (nginx's
 * "client closed request") counts requests whose client left before the end. */
static const unsigned pd_gw_statuses[] = {200, 400, 401, 403, 404, 405, 413,
                                          429, 431, 499, 500, 502, 503, 504};
#define PD_GW_N_STATUSES (sizeof(pd_gw_statuses) / sizeof(pd_gw_statuses[0]))

/* TTFT and end-to-end latency, seconds. */
const double pd_gw_latency_bounds[PD_GW_N_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
/* Time per output token, seconds. */
const double pd_gw_tpot_bounds[PD_GW_N_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60};

static const char *const pd_gw_route_names[PD_GW_N_ROUTES] = {
    "/health",      "/ready", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
    "/v1/messages", "other"};

const char *pd_gw_route_name(pd_gw_route_t route)
{
    return route < PD_GW_N_ROUTES ? pd_gw_route_names[route] : "other";
}

void pd_gw_metrics_count(pd_gw_metrics_t *m, pd_gw_route_t route, unsigned status)
{
    size_t i = 0;
    while (i < PD_GW_N_STATUSES && pd_gw_statuses[i] != status)
        i++;
    if (route >= PD_GW_N_ROUTES)
        route = PD_GW_ROUTE_OTHER;
    m->requests[route][i]++; /* i == PD_GW_N_STATUSES: "other" */
}

void pd_gw_histogram_observe(pd_gw_histogram_t *h, const double *bounds, double v)
{
    size_t i = 0;
    while (i < PD_GW_N_BUCKETS && v > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

static void pd_gw_metrics_histogram(pd_gw_buf_t *b, const char *name, const char *help,
                                    const pd_gw_histogram_t *h, const double *bounds)
{
    pd_gw_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < PD_GW_N_BUCKETS; i++) {
        cum += h->counts[i];
        pd_gw_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                         (unsigned long long)cum);
    }
    cum += h->counts[PD_GW_N_BUCKETS];
    pd_gw_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                     (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

static void pd_gw_metrics_scalar(pd_gw_buf_t *b, const char *name, const char *type,
                                 const char *help, unsigned long long v)
{
    pd_gw_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

/* A label value with \, " and newline escaped, as the format asks. */
static void pd_gw_metrics_label(pd_gw_buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            pd_gw_buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            pd_gw_buf_append(b, "\\n", 2);
        else
            pd_gw_buf_append(b, s, 1);
    }
}

static void pd_gw_metrics_gateway(pd_gw_buf_t *b, const pd_gw_t *gw)
{
    const pd_gw_metrics_t *m = &gw->metrics;
    pd_gw_buf_printf(b, "# HELP pdkv_gateway_requests_total HTTP requests answered, by path "
                        "and status\n# TYPE pdkv_gateway_requests_total counter\n");
    for (int r = 0; r < PD_GW_N_ROUTES; r++) {
        for (size_t i = 0; i <= PD_GW_N_STATUSES; i++) {
            if (m->requests[r][i] == 0)
                continue;
            char status[8];
            if (i < PD_GW_N_STATUSES)
                snprintf(status, sizeof(status), "%u", pd_gw_statuses[i]);
            else
                snprintf(status, sizeof(status), "other");
            pd_gw_buf_printf(b, "pdkv_gateway_requests_total{path=\"%s\",status=\"%s\"} %llu\n",
                             pd_gw_route_names[r], status, (unsigned long long)m->requests[r][i]);
        }
    }
    pd_gw_metrics_scalar(b, "pdkv_gateway_requests_in_flight", "gauge",
                         "generation requests sent to the router and not yet ended",
                         gw->n_inflight);
    pd_gw_metrics_scalar(b, "pdkv_gateway_connections", "gauge", "open HTTP connections",
                         gw->n_conns);
    pd_gw_metrics_histogram(b, "pdkv_gateway_ttft_seconds",
                            "request arrival to its first token, as the gateway saw it", &m->ttft,
                            pd_gw_latency_bounds);
    pd_gw_metrics_histogram(b, "pdkv_gateway_tpot_seconds",
                            "mean time between a request's tokens after the first", &m->tpot,
                            pd_gw_tpot_bounds);
    pd_gw_metrics_histogram(b, "pdkv_gateway_e2e_seconds",
                            "request arrival to its last byte queued", &m->e2e,
                            pd_gw_latency_bounds);
    pd_gw_metrics_scalar(b, "pdkv_gateway_prompt_tokens_total", "counter",
                         "prompt tokens of finished requests", m->prompt_tokens);
    pd_gw_metrics_scalar(b, "pdkv_gateway_completion_tokens_total", "counter",
                         "tokens generated for finished requests", m->completion_tokens);
    pd_gw_metrics_scalar(b, "pdkv_gateway_cache_read_tokens_total", "counter",
                         "prompt tokens served from the KV cache", m->cache_read_tokens);
    pd_gw_metrics_scalar(b, "pdkv_gateway_cache_write_tokens_total", "counter",
                         "prompt tokens written to the KV cache", m->cache_write_tokens);
    pd_gw_metrics_scalar(b, "pdkv_gateway_client_disconnects_total", "counter",
                         "requests canceled because the client went away", m->disconnects);
    pd_gw_metrics_scalar(b, "pdkv_gateway_key_rejections_total", "counter",
                         "requests refused by a key's rate or concurrency limit",
                         m->key_rejections);
}

/* a - b, or 0 where the figures of one heartbeat do not add up (the worker's pool moved
 * between its reads): a gauge never wraps around to 2^64. */
static unsigned long long pd_gw_metrics_sub(uint64_t a, uint64_t b)
{
    return a > b ? (unsigned long long)(a - b) : 0;
}

/* One labelled gauge line per worker (the label values escaped). */
static void pd_gw_metrics_worker(pd_gw_buf_t *b, const char *name, const pd_proto_stats_worker_t *w,
                                 const char *labels, unsigned long long v)
{
    pd_gw_buf_printf(b, "%s{worker=\"", name);
    pd_gw_metrics_label(b, w->id);
    pd_gw_buf_printf(b, "\",role=\"%s\"%s} %llu\n", pd_proto_role_name(w->role), labels, v);
}

static void pd_gw_metrics_details(pd_gw_buf_t *b, const pd_gw_cluster_t *c)
{
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"pdkv_worker_pool_blocks", "KV blocks of one worker by tier and state"},
        {"pdkv_worker_running", "requests in one worker's running batch"},
        {"pdkv_worker_queued", "requests waiting at one worker"},
        {"pdkv_worker_directory_blocks", "KV blocks the directory lists for one worker"},
        {"pdkv_worker_transfer_bytes_total", "KV bytes one worker pushed to others"},
    };
    for (size_t k = 0; k < sizeof(gauges) / sizeof(gauges[0]); k++) {
        pd_gw_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", gauges[k].name, gauges[k].help,
                         gauges[k].name, k == 4 ? "counter" : "gauge");
        for (uint32_t i = 0; i < c->n_workers; i++) {
            const pd_proto_stats_worker_t *w = &c->workers[i];
            const pd_proto_worker_stats_t *st = &w->stats;
            switch (k) {
            case 0: {
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G1\",state=\"used\"",
                                     pd_gw_metrics_sub(w->n_blocks, w->free_blocks));
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G1\",state=\"free\"",
                                     w->free_blocks);
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G1\",state=\"cached\"",
                                     st->g1_cached_blocks);
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G2\",state=\"used\"",
                                     st->g2_used_blocks);
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G2\",state=\"free\"",
                                     pd_gw_metrics_sub(st->g2_blocks, st->g2_used_blocks));
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G3\",state=\"used\"",
                                     st->g3_used_blocks);
                pd_gw_metrics_worker(b, gauges[k].name, w, ",tier=\"G3\",state=\"free\"",
                                     pd_gw_metrics_sub(st->g3_blocks, st->g3_used_blocks));
                break;
            }
            case 1:
                pd_gw_metrics_worker(b, gauges[k].name, w, "", w->running);
                break;
            case 2:
                pd_gw_metrics_worker(b, gauges[k].name, w, "", w->queued);
                break;
            case 3:
                pd_gw_metrics_worker(b, gauges[k].name, w, "", w->directory_blocks);
                break;
            default:
                pd_gw_metrics_worker(b, gauges[k].name, w, "", st->xfer_bytes);
                break;
            }
        }
    }
}

static void pd_gw_metrics_cluster(pd_gw_buf_t *b, const pd_gw_t *gw)
{
    const pd_gw_cluster_t *c = &gw->cluster;
    const pd_proto_stats_reply_t *s = &c->s;
    uint64_t now = pd_time_now_ms();
    pd_gw_metrics_scalar(b, "pdkv_router_up", "gauge",
                         "1 when the router answered a stats request recently",
                         pd_gw_link_router_up(gw, now) ? 1 : 0);
    if (!c->have)
        return;
    pd_gw_buf_printf(b,
                     "# HELP pdkv_router_stats_age_seconds age of the cluster figures below\n"
                     "# TYPE pdkv_router_stats_age_seconds gauge\n"
                     "pdkv_router_stats_age_seconds %.3f\n",
                     (double)(now - c->at_ms) / 1000.0);
    pd_gw_metrics_scalar(b, "pdkv_router_queue_depth", "gauge",
                         "requests admitted by the router and waiting for a worker pair",
                         s->queue_depth);
    pd_gw_metrics_scalar(b, "pdkv_router_requests_in_flight", "gauge",
                         "requests the router holds, queued or running", s->requests_in_flight);
    pd_gw_metrics_scalar(b, "pdkv_router_requests_total", "counter",
                         "requests the router admitted since it started", s->requests_total);
    pd_gw_metrics_scalar(b, "pdkv_router_directory_blocks", "gauge",
                         "distinct KV block hashes in the router's global directory",
                         s->directory_blocks);
    pd_gw_metrics_scalar(b, "pdkv_router_holder_reads_total", "counter",
                         "prefills that read a prompt's prefix from a third worker holding it",
                         s->holder_reads);
    pd_gw_metrics_scalar(b, "pdkv_router_recomputed_blocks_total", "counter",
                         "prompt blocks recomputed to fill holes in otherwise reused prefixes",
                         s->recomputed_blocks);
    pd_gw_buf_printf(b,
                     "# HELP pdkv_workers registered workers by role\n"
                     "# TYPE pdkv_workers gauge\n"
                     "pdkv_workers{role=\"prefill\"} %u\npdkv_workers{role=\"decode\"} %u\n"
                     "pdkv_workers{role=\"both\"} %u\n",
                     s->n_prefill, s->n_decode, s->n_both);
    pd_gw_metrics_scalar(b, "pdkv_workers_ready", "gauge",
                         "registered workers whose directory state is current (not resyncing)",
                         s->n_ready);
    pd_gw_buf_printf(
        b,
        "# HELP pdkv_pool_blocks KV blocks of every worker, by tier and state (cached: G1 "
        "blocks findable by hash, a part of used or free)\n"
        "# TYPE pdkv_pool_blocks gauge\n"
        "pdkv_pool_blocks{tier=\"G1\",state=\"used\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G1\",state=\"free\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G1\",state=\"cached\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G2\",state=\"used\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G2\",state=\"free\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G3\",state=\"used\"} %llu\n"
        "pdkv_pool_blocks{tier=\"G3\",state=\"free\"} %llu\n",
        pd_gw_metrics_sub(s->g1_blocks, s->g1_free_blocks), (unsigned long long)s->g1_free_blocks,
        (unsigned long long)s->g1_cached_blocks, (unsigned long long)s->g2_used_blocks,
        pd_gw_metrics_sub(s->g2_blocks, s->g2_used_blocks), (unsigned long long)s->g3_used_blocks,
        pd_gw_metrics_sub(s->g3_blocks, s->g3_used_blocks));
    pd_gw_metrics_scalar(b, "pdkv_cache_hit_blocks_total", "counter",
                         "KV blocks found by the workers' cache lookups", s->hit_blocks);
    pd_gw_metrics_scalar(b, "pdkv_cache_miss_blocks_total", "counter",
                         "KV blocks looked up and not found", s->miss_blocks);
    pd_gw_metrics_scalar(b, "pdkv_transfer_bytes_total", "counter",
                         "KV bytes the workers pushed to each other", s->xfer_bytes);
    pd_gw_metrics_scalar(b, "pdkv_transfer_wire_bytes_total", "counter",
                         "bytes those pushes put on the wire (fewer with a KV codec)",
                         s->xfer_bytes_wire);
    pd_gw_buf_printf(b,
                     "# HELP pdkv_transfer_seconds KV pushes from prefill to decode, as "
                     "prefill timed them\n# TYPE pdkv_transfer_seconds summary\n"
                     "pdkv_transfer_seconds_sum %.6f\npdkv_transfer_seconds_count %llu\n",
                     s->xfer_ms_sum / 1000.0, (unsigned long long)s->xfer_count);
    if (c->details)
        pd_gw_metrics_details(b, c);
}

char *pd_gw_metrics_render(const pd_gw_t *gw, size_t *len_p)
{
    pd_gw_buf_t b = {0};
    pd_gw_metrics_gateway(&b, gw);
    pd_gw_metrics_cluster(&b, gw);
    if (b.data == NULL || b.off != 0) {
        pd_gw_buf_cleanup(&b);
        return NULL;
    }
    *len_p = b.len;
    return b.data; /* the caller frees it */
}
