/* pdctl bench: end-to-end load against a running cluster (synthetic Poisson load with
 * prompt/output length mixes and shared prefixes, or replay of a Mooncake-format trace),
 * reported as a table, JSON and a PNG plot. */
#include "bench_client.h"
#include "cli_opt.h"
#include "pdctl_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PD_BENCH_MAX_RATES 32

typedef struct pd_bench_args {
    char endpoint[256];
    pd_bench_workload_t wl;
    pd_bench_client_opts_t client;
    const char *trace_path;
    pd_bench_trace_scale_t scale;
    uint32_t trace_limit;
    uint32_t trace_max_bad;
    bool block_tokens_set;
    const char *json_path;
    const char *plot_path;
    uint32_t block_tokens;            /* the router's block size, for the ideal cache */
    uint32_t wait_s;                  /* --wait: how long to wait for the router to answer */
    double rates[PD_BENCH_MAX_RATES]; /* --rates: a sweep, n_rates of them */
    size_t n_rates;
} pd_bench_args_t;

static void pd_bench_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl bench [options]\n"
            "\n"
            "Open-loop load against a pdkv router (or, with --http, an OpenAI-compatible\n"
            "HTTP API such as pd-gateway): requests leave at their arrival times\n"
            "(Poisson, or a trace's timestamps) whatever the replies do, held back only by\n"
            "--concurrency. Prints TTFT/TPOT p50/p90/p99 (client-measured and as the server\n"
            "timed them), throughput, cache hit rate, the server's queue/prefill/transfer\n"
            "times and the transfer's share of TTFT. Prompts are token ids (3..258, the byte\n"
            "tokenizer's range), so no tokenizer is needed.\n"
            "\n"
            "  -r, --router ENDPOINT    router client socket: tcp://HOST:PORT, HOST:PORT or\n"
            "                           :PORT (default tcp://127.0.0.1:7100)\n"
            "  -w, --wait SECONDS       wait this long for the router to accept connections\n"
            "                           (default 0: fail at once when none answers)\n"
            "  -N, --requests N         requests to send (default 100; -n still works for\n"
            "                           this release, with a warning)\n"
            "      --rate R             Poisson arrivals per second; 0 = all at once (default 0)\n"
            "  -c, --concurrency C      most requests in flight; 0 = no cap (default 0)\n"
            "      --prompt-len A[:B]   prompt tokens, uniform in [A, B] (default 256)\n"
            "      --max-tokens A[:B]   tokens to generate, uniform in [A, B] (default 32;\n"
            "                           --output-len is its old name)\n"
            "      --shared-prefix T    the first T tokens of every prompt are a shared prefix\n"
            "      --prefix-groups G    G distinct shared prefixes; each request draws one\n"
            "                           uniformly (default 1)\n"
            "      --tenants K          requests spread uniformly over K tenants (default 1:\n"
            "                           no tenant field)\n"
            "      --seed S             seeds arrivals, lengths, groups and tokens (default 1)\n"
            "      --temperature T      sampling temperature (default 0: greedy)\n"
            "      --cache auto|off     the requests' cache control (default auto)\n"
            "      --block-tokens B     the router's block size (default 16): the ideal cache\n"
            "                           of shared prefixes counts whole blocks of B tokens (it\n"
            "                           ignores the router's min_cached_prefix)\n"
            "      --timeout-ms MS      a request without done this long after its send is\n"
            "                           canceled and counted as an error (default 300000)\n"
            "  -q, --quiet              no progress lines on stderr\n"
            "      --curve-server-key K the router's CURVE public key (Z85): authenticate;\n"
            "                           the router then takes the tenant from the key\n"
            "      --curve-secret-file F this client's CURVE secret key (Z85) file\n"
            "\n");
    fprintf(out,
            "Through the HTTP front door (every request a streamed POST /v1/completions of\n"
            "its token ids; the server's own timings are not in that API, so their rows\n"
            "stay empty):\n"
            "      --http URL           the server's base URL (http://127.0.0.1:8000 or\n"
            "                           .../v1) instead of --router\n"
            "      --api-key KEY        sent as a Bearer token (default $OPENAI_API_KEY); the\n"
            "                           key decides the tenant, so --tenants stays 1\n"
            "      --model NAME         the model to ask for (default: the first that GET\n"
            "                           /v1/models lists)\n"
            "\n"
            "Trace replay (Mooncake JSONL: timestamp ms, input_length, output_length,\n"
            "hash_ids with one id per 512 tokens; equal hash ids become equal token blocks):\n"
            "      --trace FILE.jsonl   replay this trace instead of the synthetic load\n"
            "      --trace-len-scale F  divide lengths by F (output too; default 8)\n"
            "      --trace-block-tokens b  tokens per hash id after scaling (default 512/F,\n"
            "                           which must then be a whole number; keep it a multiple\n"
            "                           of the router's block size, 16)\n"
            "      --trace-time-scale F multiply the gaps between timestamps by F (default 1)\n"
            "      --trace-limit N      only the first N requests\n"
            "      --trace-max-len N    clip prompt + output to N tokens (whole blocks kept),\n"
            "                           e.g. the model's context length\n"
            "      --trace-max-bad N    refuse the trace past N malformed lines (default 100;\n"
            "                           fewer are skipped with their line numbers)\n"
            "  The ideal infinite cache's hit rate on the same scaled trace is printed beside\n"
            "  the measured one (for synthetic shared prefixes too).\n"
            "\n"
            "Objectives and goodput (a request is within them when its client TTFT and TPOT\n"
            "are; errors and refusals are misses; both are sent with each request, and a\n"
            "router refuses at once with `overloaded` what it predicts would miss them):\n"
            "      --slo-ttft-ms MS     TTFT objective; prints attainment and goodput\n"
            "      --slo-tpot-ms MS     TPOT objective\n"
            "      --rates R1,R2,...    run the synthetic workload once per Poisson rate (the\n"
            "                           same seed each time) and report attainment and\n"
            "                           goodput per rate and the highest rate with >= 90%%\n"
            "                           attainment; --json and --plot then hold the sweep\n"
            "\n"
            "Output:\n"
            "      --json FILE          every request's record plus the summary\n"
            "      --plot FILE.png      TTFT over time, TTFT and TPOT CDFs, server TTFT parts\n"
            "                           (needs gnuplot; skipped with a warning without it)\n"
            "\n"
            "Exit status: 0 when every request completed, 3 when some failed, 1 when the run\n"
            "could not start, 2 for bad usage.\n"
            "\n"
            "Examples:\n"
            "  pdctl bench -N 200 --rate 4 --prompt-len 256:1024 --max-tokens 16:64 --json b.json\n"
            "  pdctl bench -N 64 --rate 2 --prompt-len 1200 --shared-prefix 1024 "
            "--prefix-groups 4\n"
            "  pdctl bench --trace trace.jsonl --trace-limit 200 --trace-time-scale 10 "
            "--trace-max-len 2048\n"
            "  pdctl bench --http http://127.0.0.1:8000 --api-key sk-... -N 200 --rate 4\n");
}

static int pd_bench_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *v_p)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "pdctl: bench: %s wants an integer in %u..%u, not '%s'\n", opt, min, max,
                s);
        return -1;
    }
    *v_p = (uint32_t)v;
    return 0;
}

static int pd_bench_f64(const char *opt, const char *s, double min, double max, double *v_p)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "pdctl: bench: %s wants a number in %g..%g, not '%s'\n", opt, min, max, s);
        return -1;
    }
    *v_p = v;
    return 0;
}

/* "A" or "A:B" with min <= A <= B <= max. */
static int pd_bench_range(const char *opt, const char *s, uint32_t min, uint32_t max,
                          uint32_t *lo_p, uint32_t *hi_p)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *colon = strchr(buf, ':');
    if (colon != NULL)
        *colon = '\0';
    uint32_t lo, hi;
    if (pd_bench_u32(opt, buf, min, max, &lo) != 0)
        return -1;
    hi = lo;
    if (colon != NULL && pd_bench_u32(opt, colon + 1, min, max, &hi) != 0)
        return -1;
    if (hi < lo) {
        fprintf(stderr, "pdctl: bench: %s: %u:%u is an empty range\n", opt, lo, hi);
        return -1;
    }
    *lo_p = lo;
    *hi_p = hi;
    return 0;
}

enum {
    PD_BENCH_OPT_RATE = 256,
    PD_BENCH_OPT_PROMPT,
    PD_BENCH_OPT_OUTPUT,
    PD_BENCH_OPT_PREFIX,
    PD_BENCH_OPT_GROUPS,
    PD_BENCH_OPT_TENANTS,
    PD_BENCH_OPT_SEED,
    PD_BENCH_OPT_TEMP,
    PD_BENCH_OPT_CACHE,
    PD_BENCH_OPT_TIMEOUT,
    PD_BENCH_OPT_TRACE,
    PD_BENCH_OPT_TBLOCK,
    PD_BENCH_OPT_TLEN,
    PD_BENCH_OPT_TTIME,
    PD_BENCH_OPT_TLIMIT,
    PD_BENCH_OPT_TMAXLEN,
    PD_BENCH_OPT_TMAXBAD,
    PD_BENCH_OPT_JSON,
    PD_BENCH_OPT_PLOT,
    PD_BENCH_OPT_BLOCK,
    PD_BENCH_OPT_CURVE_KEY,
    PD_BENCH_OPT_CURVE_SECRET,
    PD_BENCH_OPT_HTTP,
    PD_BENCH_OPT_API_KEY,
    PD_BENCH_OPT_MODEL,
    PD_BENCH_OPT_SLO_TTFT,
    PD_BENCH_OPT_SLO_TPOT,
    PD_BENCH_OPT_RATES,
};

static const pd_cli_opt_t pd_bench_opts[] = {
    PD_CLI_OPT_ROUTER,
    {"requests", 'N', true, 'n', NULL},
    /* -n was --requests here but is --max-tokens in submit and generate. */
    {"-n", 'n', true, 'n', "requests"},
    {"concurrency", 'c', true, 'c', NULL},
    {"quiet", 'q', false, 'q', NULL},
    PD_CLI_OPT_HELP,
    {"rate", 0, true, PD_BENCH_OPT_RATE, NULL},
    {"prompt-len", 0, true, PD_BENCH_OPT_PROMPT, NULL},
    {"max-tokens", 0, true, PD_BENCH_OPT_OUTPUT, NULL},
    {"output-len", 0, true, PD_BENCH_OPT_OUTPUT, "max-tokens"},
    {"shared-prefix", 0, true, PD_BENCH_OPT_PREFIX, NULL},
    {"prefix-groups", 0, true, PD_BENCH_OPT_GROUPS, NULL},
    {"tenants", 0, true, PD_BENCH_OPT_TENANTS, NULL},
    {"seed", 0, true, PD_BENCH_OPT_SEED, NULL},
    {"temperature", 0, true, PD_BENCH_OPT_TEMP, NULL},
    {"cache", 0, true, PD_BENCH_OPT_CACHE, NULL},
    {"timeout-ms", 0, true, PD_BENCH_OPT_TIMEOUT, NULL},
    PD_CLI_OPT_WAIT,
    {"trace", 0, true, PD_BENCH_OPT_TRACE, NULL},
    {"trace-block-tokens", 0, true, PD_BENCH_OPT_TBLOCK, NULL},
    {"trace-len-scale", 0, true, PD_BENCH_OPT_TLEN, NULL},
    {"trace-time-scale", 0, true, PD_BENCH_OPT_TTIME, NULL},
    {"trace-limit", 0, true, PD_BENCH_OPT_TLIMIT, NULL},
    {"trace-max-len", 0, true, PD_BENCH_OPT_TMAXLEN, NULL},
    {"trace-max-bad", 0, true, PD_BENCH_OPT_TMAXBAD, NULL},
    {"json", 0, true, PD_BENCH_OPT_JSON, NULL},
    {"plot", 0, true, PD_BENCH_OPT_PLOT, NULL},
    {"block-tokens", 0, true, PD_BENCH_OPT_BLOCK, NULL},
    {"curve-server-key", 0, true, PD_BENCH_OPT_CURVE_KEY, NULL},
    {"curve-secret-file", 0, true, PD_BENCH_OPT_CURVE_SECRET, NULL},
    {"http", 0, true, PD_BENCH_OPT_HTTP, NULL},
    {"api-key", 0, true, PD_BENCH_OPT_API_KEY, NULL},
    {"model", 0, true, PD_BENCH_OPT_MODEL, NULL},
    {"slo-ttft-ms", 0, true, PD_BENCH_OPT_SLO_TTFT, NULL},
    {"slo-tpot-ms", 0, true, PD_BENCH_OPT_SLO_TPOT, NULL},
    {"rates", 0, true, PD_BENCH_OPT_RATES, NULL},
    PD_CLI_OPT_END_TABLE,
};

/* Returns 0, 1 after --help, or 2 for bad usage. */
static int pd_bench_parse(int argc, char **argv, pd_bench_args_t *a)
{
    a->wl = (pd_bench_workload_t){.n_requests = 100,
                                  .prompt_min = 256,
                                  .prompt_max = 256,
                                  .output_min = 32,
                                  .output_max = 32,
                                  .prefix_groups = 1,
                                  .n_tenants = 1,
                                  .seed = 1};
    a->client = (pd_bench_client_opts_t){.timeout_ms = 300000,
                                         .temperature = 0,
                                         .top_p = 1.0,
                                         .cache_mode = PD_PROTO_CACHE_AUTO,
                                         .progress = true};
    a->scale = (pd_bench_trace_scale_t){.len_scale = 8, .time_scale = 1};
    a->trace_max_bad = 100;
    a->block_tokens = 16;
    snprintf(a->endpoint, sizeof(a->endpoint), "tcp://127.0.0.1:7100");
    int c;
    pd_cli_parser_t p;
    pd_cli_parser_init(&p, "bench", argc, argv, pd_bench_opts);
    while ((c = pd_cli_opt_next(&p)) != PD_CLI_OPT_END) {
        const char *optarg = p.arg;
        int rc = 0;
        if (c == PD_CLI_OPT_ERROR)
            return 2;
        switch (c) {
        case 'r':
            if (!pd_cli_parse_endpoint("--router", optarg, a->endpoint, sizeof(a->endpoint)))
                return 2;
            break;
        case 'W':
            rc = pd_bench_u32("--wait", optarg, 0, 3600, &a->wait_s);
            break;
        case 'n':
            rc = pd_bench_u32("--requests", optarg, 1, 10000000, &a->wl.n_requests);
            break;
        case 'c':
            rc = pd_bench_u32("--concurrency", optarg, 0, 1000000, &a->client.concurrency);
            break;
        case 'q':
            a->client.progress = false;
            break;
        case 'h':
            pd_bench_usage(stdout);
            return 1;
        case PD_BENCH_OPT_RATE:
            rc = pd_bench_f64("--rate", optarg, 0, 1e6, &a->wl.rate_per_s);
            break;
        case PD_BENCH_OPT_PROMPT:
            rc = pd_bench_range("--prompt-len", optarg, 1, PD_PROTO_MAX_PROMPT_TOKENS,
                                &a->wl.prompt_min, &a->wl.prompt_max);
            break;
        case PD_BENCH_OPT_OUTPUT:
            rc = pd_bench_range("--max-tokens", optarg, 1, PD_PROTO_MAX_NEW_TOKENS,
                                &a->wl.output_min, &a->wl.output_max);
            break;
        case PD_BENCH_OPT_PREFIX:
            rc = pd_bench_u32("--shared-prefix", optarg, 0, PD_PROTO_MAX_PROMPT_TOKENS,
                              &a->wl.shared_prefix_tokens);
            break;
        case PD_BENCH_OPT_GROUPS:
            rc = pd_bench_u32("--prefix-groups", optarg, 1, 1000000, &a->wl.prefix_groups);
            break;
        case PD_BENCH_OPT_TENANTS:
            rc = pd_bench_u32("--tenants", optarg, 1, 1000000, &a->wl.n_tenants);
            break;
        case PD_BENCH_OPT_SEED: {
            char *end;
            errno = 0;
            a->wl.seed = strtoull(optarg, &end, 0);
            if (errno != 0 || end == optarg || *end != '\0') {
                fprintf(stderr, "pdctl: bench: --seed wants an integer, not '%s'\n", optarg);
                rc = -1;
            }
            break;
        }
        case PD_BENCH_OPT_TEMP:
            rc = pd_bench_f64("--temperature", optarg, 0, 100, &a->client.temperature);
            break;
        case PD_BENCH_OPT_CACHE:
            if (strcmp(optarg, "auto") == 0) {
                a->client.cache_mode = PD_PROTO_CACHE_AUTO;
            } else if (strcmp(optarg, "off") == 0) {
                a->client.cache_mode = PD_PROTO_CACHE_OFF;
            } else {
                fprintf(stderr, "pdctl: bench: --cache is auto or off, not '%s'\n", optarg);
                rc = -1;
            }
            break;
        case PD_BENCH_OPT_TIMEOUT:
            rc = pd_bench_u32("--timeout-ms", optarg, 1, PD_PROTO_MAX_DEADLINE_MS,
                              &a->client.timeout_ms);
            break;
        case PD_BENCH_OPT_TRACE:
            a->trace_path = optarg;
            break;
        case PD_BENCH_OPT_TBLOCK:
            rc = pd_bench_u32("--trace-block-tokens", optarg, 1, PD_BENCH_TRACE_SRC_BLOCK_TOKENS,
                              &a->scale.block_tokens);
            a->block_tokens_set = true;
            break;
        case PD_BENCH_OPT_TLEN:
            rc = pd_bench_f64("--trace-len-scale", optarg, 1, 512, &a->scale.len_scale);
            break;
        case PD_BENCH_OPT_TTIME:
            rc = pd_bench_f64("--trace-time-scale", optarg, 1e-6, 1e6, &a->scale.time_scale);
            break;
        case PD_BENCH_OPT_TLIMIT:
            rc = pd_bench_u32("--trace-limit", optarg, 1, 100000000, &a->trace_limit);
            break;
        case PD_BENCH_OPT_TMAXLEN:
            rc = pd_bench_u32("--trace-max-len", optarg, 2, PD_PROTO_MAX_PROMPT_TOKENS,
                              &a->scale.max_len);
            break;
        case PD_BENCH_OPT_TMAXBAD:
            rc = pd_bench_u32("--trace-max-bad", optarg, 0, 100000000, &a->trace_max_bad);
            break;
        case PD_BENCH_OPT_JSON:
            a->json_path = optarg;
            break;
        case PD_BENCH_OPT_PLOT:
            a->plot_path = optarg;
            break;
        case PD_BENCH_OPT_SLO_TTFT:
            rc = pd_bench_u32("--slo-ttft-ms", optarg, 1, PD_PROTO_MAX_DEADLINE_MS,
                              &a->client.slo_ttft_ms);
            break;
        case PD_BENCH_OPT_SLO_TPOT:
            rc = pd_bench_u32("--slo-tpot-ms", optarg, 1, PD_PROTO_MAX_DEADLINE_MS,
                              &a->client.slo_tpot_ms);
            break;
        case PD_BENCH_OPT_RATES:
            a->n_rates = pd_bench_parse_rates(optarg, a->rates, PD_BENCH_MAX_RATES);
            if (a->n_rates == 0) {
                fprintf(stderr,
                        "pdctl: bench: --rates wants up to %d rates > 0 separated by commas, "
                        "not '%s'\n",
                        PD_BENCH_MAX_RATES, optarg);
                rc = -1;
            }
            break;
        case PD_BENCH_OPT_CURVE_KEY:
            a->client.curve_server_key = optarg;
            break;
        case PD_BENCH_OPT_CURVE_SECRET:
            a->client.curve_secret_file = optarg;
            break;
        case PD_BENCH_OPT_HTTP:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                fprintf(stderr, "pdctl: bench: --http wants an http:// or https:// URL, not '%s'\n",
                        optarg);
                rc = -1;
            }
            a->client.http_url = optarg;
            break;
        case PD_BENCH_OPT_API_KEY:
            a->client.api_key = optarg;
            break;
        case PD_BENCH_OPT_MODEL:
            a->client.model = optarg;
            break;
        case PD_BENCH_OPT_BLOCK:
            rc = pd_bench_u32("--block-tokens", optarg, 1, PD_PROTO_MAX_BLOCK_TOKENS,
                              &a->block_tokens);
            break;
        default:
            rc = -1;
            break;
        }
        if (rc != 0)
            return 2;
    }
    if (!pd_cli_parser_want_pos(&p, 0, 0, ""))
        return 2;
    if ((a->client.curve_server_key == NULL) != (a->client.curve_secret_file == NULL)) {
        fprintf(stderr, "pdctl: bench: --curve-server-key and --curve-secret-file go together\n");
        return 2;
    }
    if (a->client.http_url != NULL) {
        const char *why = a->client.curve_server_key != NULL ? "--curve-* keys (the router's)"
                          : a->wl.n_tenants > 1 ? "--tenants (over HTTP the API key is the tenant)"
                          : a->client.cache_mode == PD_PROTO_CACHE_OFF
                              ? "--cache off (the OpenAI API has no such control)"
                              : NULL;
        if (why != NULL) {
            fprintf(stderr, "pdctl: bench: --http does not go with %s\n", why);
            return 2;
        }
        if (a->client.api_key == NULL)
            a->client.api_key = getenv("OPENAI_API_KEY");
        snprintf(a->endpoint, sizeof(a->endpoint), "%s", a->client.http_url);
    }
    if (a->n_rates > 0 && (a->trace_path != NULL || a->client.http_url != NULL)) {
        fprintf(stderr, "pdctl: bench: --rates sweeps the synthetic load through --router; "
                        "not with --trace or --http\n");
        return 2;
    }
    if (a->trace_path != NULL && !a->block_tokens_set) {
        double b = (double)PD_BENCH_TRACE_SRC_BLOCK_TOKENS / a->scale.len_scale;
        if (b != floor(b)) {
            fprintf(stderr,
                    "pdctl: bench: 512 / --trace-len-scale %g is not a whole number of tokens; "
                    "pick F dividing 512 (8 gives 64 tokens per hash id) or set "
                    "--trace-block-tokens\n",
                    a->scale.len_scale);
            return 2;
        }
        a->scale.block_tokens = (uint32_t)b;
    }
    if (a->trace_path != NULL && a->scale.block_tokens % 16 != 0)
        fprintf(stderr,
                "pdctl: bench: warning: %u tokens per hash id is not a multiple of 16 (the "
                "router's default block size): shared blocks will not line up with cached "
                "blocks\n",
                a->scale.block_tokens);
    a->scale.n_tenants = a->wl.n_tenants;
    a->scale.seed = a->wl.seed;
    a->client.endpoint = a->endpoint;
    a->client.sampling_seed = a->wl.seed;
    a->client.token_seed = a->wl.seed;
    a->client.n_tenants = a->wl.n_tenants;
    return 0;
}

/* --rates: the synthetic workload once per rate, the same prompts each time. */
static int pd_bench_sweep(pd_bench_args_t *a)
{
    int rc = 1;
    size_t n = a->wl.n_requests, n_rows = 0;
    pd_bench_item_t *items = calloc(n ? n : 1, sizeof(*items));
    pd_bench_rec_t *recs = calloc(n ? n : 1, sizeof(*recs));
    pd_bench_sweep_row_t *rows = calloc(a->n_rates, sizeof(*rows));
    if (items == NULL || recs == NULL || rows == NULL)
        goto out;
    if (!pd_cli_router_reach("bench", a->endpoint, a->wait_s))
        goto out;
    bool interrupted = false;
    for (size_t k = 0; k < a->n_rates && !interrupted; k++) {
        a->wl.rate_per_s = a->rates[k];
        pd_bench_workload_make(&a->wl, items);
        memset(recs, 0, n * sizeof(*recs));
        if (a->client.progress)
            fprintf(stderr, "pdctl: bench: rate %g/s, %zu requests\n", a->rates[k], n);
        pd_status_t st = pd_bench_client_run(&a->client, items, n, recs);
        if (st != PD_OK && st != PD_ERR_CANCELED) {
            fprintf(stderr, "pdctl: bench: run failed: %s\n", pd_status_str(st));
            goto out;
        }
        interrupted = st == PD_ERR_CANCELED;
        pd_bench_sweep_row_t *row = &rows[n_rows];
        row->rate_per_s = a->rates[k];
        if (pd_bench_summarize(recs, n, &row->sum) != PD_OK)
            goto out;
        pd_bench_slo_eval(recs, n, row->sum.duration_s, a->client.slo_ttft_ms,
                          a->client.slo_tpot_ms, &row->slo);
        n_rows++;
    }
    int best =
        pd_bench_sweep_table(stdout, rows, n_rows, a->client.slo_ttft_ms, a->client.slo_tpot_ms);
    rc = interrupted ? 3 : 0;
    if (a->json_path != NULL) {
        if (pd_bench_sweep_json(a->json_path, rows, n_rows, a->client.slo_ttft_ms,
                                a->client.slo_tpot_ms, best) != PD_OK)
            rc = 1;
        else
            printf("wrote %s (the sweep)\n", a->json_path);
    }
    if (a->plot_path != NULL) {
        pd_status_t ps = pd_bench_sweep_plot(a->plot_path, rows, n_rows, a->client.slo_ttft_ms,
                                             a->client.slo_tpot_ms);
        if (ps != PD_OK && ps != PD_ERR_UNSUPPORTED)
            rc = 1;
        else if (ps == PD_OK)
            printf("wrote %s (attainment and goodput against rate)\n", a->plot_path);
    }
    fflush(stdout);
out:
    free(rows);
    free(recs);
    free(items);
    return rc;
}

int pd_cmd_bench(int argc, char **argv)
{
    int rc = 1;
    pd_bench_args_t a;
    memset(&a, 0, sizeof(a));
    pd_bench_trace_t trace = {0};
    pd_bench_item_t *items = NULL;
    pd_bench_rec_t *recs = NULL;
    pd_bench_meta_t meta = {0};
    char workload[512];
    size_t n;
    int prc = pd_bench_parse(argc, argv, &a);
    if (prc != 0)
        return prc == 1 ? 0 : 2;
    if (a.n_rates > 0)
        return pd_bench_sweep(&a);

    if (a.trace_path != NULL) {
        FILE *f = fopen(a.trace_path, "r");
        if (f == NULL) {
            fprintf(stderr, "pdctl: bench: cannot open %s: %s\n", a.trace_path, strerror(errno));
            goto out;
        }
        char err[512];
        pd_status_t st = pd_bench_trace_read(f, a.trace_limit, a.trace_max_bad, stderr, &trace, err,
                                             sizeof(err));
        fclose(f);
        if (st != PD_OK) {
            fprintf(stderr, "pdctl: bench: %s: %s\n", a.trace_path,
                    st == PD_ERR_FORMAT ? err : pd_status_str(st));
            goto out;
        }
        n = trace.n_reqs;
        items = calloc(n, sizeof(*items));
        if (items == NULL)
            goto out;
        meta.n_clipped = pd_bench_trace_items(&trace, &a.scale, items);
        if (pd_bench_ideal_cache(items, n, &meta.ideal_hit_tokens, &meta.ideal_total_tokens) !=
            PD_OK)
            goto out;
        meta.have_ideal = true;
        meta.ideal_what = "on the same scaled trace";
        meta.trace_path = a.trace_path;
        snprintf(workload, sizeof(workload),
                 "trace replay, %zu requests (%zu malformed lines skipped), lengths / %g, "
                 "%u tokens per hash id, time x %g, max len %u, concurrency %u, cache %s",
                 n, trace.n_bad_lines, a.scale.len_scale, a.scale.block_tokens, a.scale.time_scale,
                 a.scale.max_len, a.client.concurrency,
                 pd_proto_cache_mode_name(a.client.cache_mode));
    } else {
        n = a.wl.n_requests;
        items = calloc(n, sizeof(*items));
        if (items == NULL)
            goto out;
        pd_bench_workload_make(&a.wl, items);
        if (a.wl.shared_prefix_tokens > 0) {
            pd_bench_ideal_cache_groups(items, n, a.block_tokens, &meta.ideal_hit_tokens,
                                        &meta.ideal_total_tokens);
            meta.have_ideal = true;
            meta.ideal_what = "shared prefixes, whole blocks";
        }
        snprintf(workload, sizeof(workload),
                 "%u requests, rate %g/s, concurrency %u, prompt %u:%u, output %u:%u, "
                 "shared prefix %u in %u groups, %u tenants, seed %llu, cache %s",
                 a.wl.n_requests, a.wl.rate_per_s, a.client.concurrency, a.wl.prompt_min,
                 a.wl.prompt_max, a.wl.output_min, a.wl.output_max, a.wl.shared_prefix_tokens,
                 a.wl.prefix_groups, a.wl.n_tenants, (unsigned long long)a.wl.seed,
                 pd_proto_cache_mode_name(a.client.cache_mode));
    }
    meta.endpoint = a.endpoint;
    meta.workload = workload;
    if (a.client.http_url == NULL && !pd_cli_router_reach("bench", a.endpoint, a.wait_s))
        goto out;
    recs = calloc(n, sizeof(*recs));
    if (recs == NULL)
        goto out;
    if (a.client.progress)
        fprintf(stderr, "pdctl: bench: %s\n", workload);
    pd_status_t st = a.client.http_url != NULL ? pd_bench_http_run(&a.client, items, n, recs)
                                               : pd_bench_client_run(&a.client, items, n, recs);
    if (st != PD_OK && st != PD_ERR_CANCELED) {
        fprintf(stderr, "pdctl: bench: run failed: %s\n", pd_status_str(st));
        goto out;
    }
    pd_bench_summary_t sum;
    if (pd_bench_summarize(recs, n, &sum) != PD_OK)
        goto out;
    pd_bench_report_table(stdout, &meta, &sum);
    if (a.client.slo_ttft_ms > 0 || a.client.slo_tpot_ms > 0) {
        pd_bench_slo_t slo;
        pd_bench_slo_eval(recs, n, sum.duration_s, a.client.slo_ttft_ms, a.client.slo_tpot_ms,
                          &slo);
        printf("  objectives TTFT <= %u ms, TPOT <= %u ms: attainment %.1f%% (%zu of %zu), "
               "goodput %.3f requests/s, %zu refused\n",
               a.client.slo_ttft_ms, a.client.slo_tpot_ms, 100.0 * slo.attainment, slo.n_met, n,
               slo.goodput, slo.n_refused);
    }
    if (sum.n_errors > 0) {
        /* The first few errors by name, so a failing run says why. */
        size_t shown = 0;
        for (size_t i = 0; i < n && shown < 5; i++) {
            if (recs[i].error == PD_OK)
                continue;
            fprintf(stdout, "  error: request %zu: %s: %s\n", i, pd_status_name(recs[i].error),
                    recs[i].error_msg);
            shown++;
        }
    }
    rc = 0;
    if (a.json_path != NULL) {
        if (pd_bench_report_json(a.json_path, &meta, &sum, recs, n) != PD_OK)
            rc = 1;
        else
            printf("wrote %s (every request's record and the summary)\n", a.json_path);
    }
    if (a.plot_path != NULL) {
        pd_status_t ps = pd_bench_report_plot(a.plot_path, recs, n);
        if (ps != PD_OK && ps != PD_ERR_UNSUPPORTED)
            rc = 1;
        else if (ps == PD_OK)
            printf("wrote %s (TTFT over time, TTFT and TPOT CDFs, server TTFT parts)\n",
                   a.plot_path);
    }
    fflush(stdout);
    if (rc == 0 && (sum.n_errors > 0 || st == PD_ERR_CANCELED))
        rc = 3;
out:
    free(recs);
    free(items);
    pd_bench_trace_cleanup(&trace);
    return rc;
}
