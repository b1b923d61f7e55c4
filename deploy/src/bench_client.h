/* pdctl bench: the client loop that drives a router, and the reports it writes. */
#ifndef PD_DEPLOY_BENCH_CLIENT_H
#define PD_DEPLOY_BENCH_CLIENT_H

#include "bench_lib.h"

typedef struct pd_bench_client_opts {
    const char *endpoint;          /* the router's client socket, e.g. tcp://127.0.0.1:7100 */
    const char *curve_server_key;  /* the router's CURVE public key (Z85), NULL: no CURVE */
    const char *curve_secret_file; /* this client's CURVE secret key file */
    uint32_t concurrency;          /* most requests in flight, 0: no cap */
    uint32_t timeout_ms;           /* a request without done this long after its send fails */
    double temperature;
    double top_p;
    uint64_t sampling_seed; /* request i samples with seed sampling_seed + i */
    uint64_t token_seed;    /* prompts: see pd_bench_item_tokens() */
    uint32_t n_tenants;     /* > 1: requests carry tenant "tenant-<k>" */
    pd_proto_cache_mode_t cache_mode;
    bool progress;                     /* a line on stderr every second */
    uint32_t slo_ttft_ms, slo_tpot_ms; /* objectives sent with each request, 0: none */
    /* --http: an OpenAI-compatible server instead of the router (bench_http.c) */
    const char *http_url; /* base URL, with or without the trailing /v1 */
    const char *api_key;  /* sent as Authorization: Bearer, NULL: none */
    const char *model;    /* the model to ask for, NULL: the first of GET /v1/models */
} pd_bench_client_opts_t;

/* Check that the router answers a status request (5 s), then send n items at their
 * arrival times and fill recs (n, caller storage) with what each request measured.
 * Returns PD_OK when every request ended (done, error or timeout),
 * PD_ERR_CANCELED when interrupted by SIGINT (the records hold what was measured), or
 * PD_ERR_UNREACHABLE / PD_ERR_IO / PD_ERR_NO_MEMORY when nothing could run. */
PD_MUST_CHECK pd_status_t pd_bench_client_run(const pd_bench_client_opts_t *opts,
                                              const pd_bench_item_t *items, size_t n,
                                              pd_bench_rec_t *recs);

/* The same run through an OpenAI-compatible HTTP API (opts->http_url): each request a
 * streamed POST /v1/completions of its token ids. Checks GET /v1/models first (5 s).
 * Records carry no server timings (NaN: left out of the summary). Returns as
 * pd_bench_client_run, or PD_ERR_AUTH when the server refuses the key. */
PD_MUST_CHECK pd_status_t pd_bench_http_run(const pd_bench_client_opts_t *opts,
                                            const pd_bench_item_t *items, size_t n,
                                            pd_bench_rec_t *recs);

/* What the run was, for the reports' header. */
typedef struct pd_bench_meta {
    const char *endpoint;
    const char *workload;   /* one line describing the load */
    const char *trace_path; /* NULL for synthetic load */
    bool have_ideal;
    const char *ideal_what; /* what the ideal cache saw, for the table */
    uint64_t ideal_hit_tokens, ideal_total_tokens;
    size_t n_clipped;
} pd_bench_meta_t;

/* The summary table, on f. */
void pd_bench_report_table(FILE *f, const pd_bench_meta_t *meta, const pd_bench_summary_t *sum);

/* Every record plus the summary as one JSON document at path. Returns PD_OK or PD_ERR_IO. */
PD_MUST_CHECK pd_status_t pd_bench_report_json(const char *path, const pd_bench_meta_t *meta,
                                               const pd_bench_summary_t *sum,
                                               const pd_bench_rec_t *recs, size_t n);

/* A PNG at path (TTFT over time, TTFT CDF, TPOT CDF) drawn by gnuplot in a child process.
 * PD_ERR_UNSUPPORTED (with a warning) when gnuplot is not installed, PD_ERR_IO when it
 * failed. */
PD_MUST_CHECK pd_status_t pd_bench_report_plot(const char *path, const pd_bench_rec_t *recs,
                                               size_t n);

/* Draw a PNG at path with gnuplot in a child process: write() puts the script (which sets
 * its output to path) on f. Returns as pd_bench_report_plot, or write()'s failure. */
typedef pd_status_t (*pd_bench_gnuplot_write_t)(FILE *f, const char *path, const void *ctx);
PD_MUST_CHECK pd_status_t pd_bench_gnuplot(const char *path, pd_bench_gnuplot_write_t write,
                                           const void *ctx);

/* One rate of a --rates sweep. */
typedef struct pd_bench_sweep_row {
    double rate_per_s;
    pd_bench_summary_t sum;
    pd_bench_slo_t slo;
} pd_bench_sweep_row_t;

/* The sweep as a table on f: per rate, attainment, goodput and latencies; then the
 * highest rate with at least 90% attainment and its goodput. Returns that row's index,
 * or -1 when no rate reached 90%. */
int pd_bench_sweep_table(FILE *f, const pd_bench_sweep_row_t *rows, size_t n, double slo_ttft_ms,
                         double slo_tpot_ms);
/* The sweep as JSON at path; a PNG of attainment and goodput against rate. */
PD_MUST_CHECK pd_status_t pd_bench_sweep_json(const char *path, const pd_bench_sweep_row_t *rows,
                                              size_t n, double slo_ttft_ms, double slo_tpot_ms,
                                              int best);
PD_MUST_CHECK pd_status_t pd_bench_sweep_plot(const char *path, const pd_bench_sweep_row_t *rows,
                                              size_t n, double slo_ttft_ms, double slo_tpot_ms);

#endif
