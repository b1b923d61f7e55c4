/* pd-router's command line. */
#include "pd/router.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

void pd_router_config_defaults(pd_router_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->client_endpoint, sizeof(c->client_endpoint), "tcp://*:7100");
    snprintf(c->worker_endpoint, sizeof(c->worker_endpoint), "tcp://*:7101");
    c->block_tokens = 16;
    c->policy = PD_ROUTER_POLICY_KV;
    c->max_queue = 1024;
    c->max_inflight_per_worker = 64;
    c->min_cached_prefix_tokens = 1024;
    c->heartbeat_ms = 1000;
    c->worker_timeout_ms = 10000;
    c->request_timeout_ms = 120000;
    c->client_heartbeat_ms = 1000;
    c->max_migrations = 2;
    c->journal_compact_kb = 65536;
    c->prefill_depth = 1;
    c->kv_weight = 1.0;
    c->load_weight = 0.1;
}

void pd_router_config_usage(void *f)
{
    fprintf((FILE *)f,
            "usage: pd-router [options]\n"
            "\n"
            "The pdkv router: admits client requests, picks a (prefill, decode) worker pair\n"
            "per request from the global block directory and the workers' load, and\n"
            "streams the decode worker's tokens back. Protocol: docs/PROTOCOL.md.\n"
            "\n"
            "  --client EP              client ROUTER bind endpoint [tcp://*:7100]\n"
            "  --workers EP             worker ROUTER bind endpoint [tcp://*:7101]\n"
            "                           (tcp://127.0.0.1:* picks a free port: see --ready-file)\n"
            "  --ready-file PATH        once bound, write 'client=EP' and 'workers=EP' lines\n"
            "                           with the resolved endpoints to PATH (atomically)\n"
            "  --tokenizer PATH         tokenizer.json, its directory, or a llama2.c\n"
            "                           tokenizer.bin for text prompts ('byte' for\n"
            "                           the built-in byte tokenizer); prompts become\n"
            "                           BOS + encode(text). Without it only token prompts work\n"
            "  --curve-secret-file PATH  the router's CURVE secret key (Z85, 40 characters):\n"
            "                           with --client-keys, clients must authenticate; with\n"
            "                           --worker-keys, workers must\n"
            "  --client-keys PATH       lines 'TENANT Z85PUBLICKEY [admin] [gateway]' (#\n"
            "                           starts a comment line): the clients allowed and the\n"
            "                           tenant each acts as (the body's tenant is ignored,\n"
            "                           except from a `gateway` key); `admin` keys see every\n"
            "                           worker's figures in stats replies\n"
            "  --worker-keys PATH       lines '[WORKER_ID] Z85PUBLICKEY' (# starts a comment\n"
            "                           line): the workers allowed on the worker socket (CURVE\n"
            "                           with --curve-secret-file); a key listed with an id may\n"
            "                           register only under that id, one without under any id\n"
            "                           not held by another key\n"
            "  --model-id ID            model id salted into block hashes [\"\"]\n"
            "  --block-tokens N         tokens per KV block; workers must match [16]\n"
            "  --policy kv|rr           worker choice: KV-aware score or round robin [kv]\n"
            "  --kv-weight W            score weight of a cached prompt token [1.0]\n"
            "  --load-weight W          score weight of a token of assigned load [0.1]\n"
            "  --max-queue N            requests waiting for dispatch before new ones get\n"
            "                           PD_ERR_OVERLOADED [1024]\n"
            "  --max-inflight N         requests in flight per worker before the rest wait\n"
            "                           in the queue [64]\n");
    fprintf((FILE *)f,
            "  --prefill-depth N        prompts committed to one prefill worker at once; the\n"
            "                           rest wait in the router, shortest first, where they\n"
            "                           can still go to any worker, be cancelled or refused\n"
            "                           (one much shorter than all a worker holds may go\n"
            "                           beyond it, up to twice N, to a worker that\n"
            "                           prefills in chunks) [1]\n"
            "  --slo-ttft-ms MS         TTFT objective of requests that name none: a request\n"
            "                           predicted to miss it is refused with\n"
            "                           PD_ERR_OVERLOADED (0: no objective) [0]\n"
            "  --slo-tpot-ms MS         TPOT objective: a decode worker whose measured step\n"
            "                           time is above it takes no new request (0: none) [0]\n"
            "  --min-cached-prefix N    auto cache mode writes prompts of >= N tokens [1024]\n"
            "  --heartbeat-ms MS        heartbeat period asked of workers [1000]\n"
            "  --worker-timeout-ms MS   a worker silent this long is dead [10000]\n"
            "  --journal FILE           requests in flight, on disk: a router started on the\n"
            "                           file of one that died goes on with them\n"
            "  --journal-compact-kb KB  past this size the journal is rewritten with only\n"
            "                           the requests in flight [65536]\n"
            "  --max-migrations N       times a request continues on another worker after\n"
            "                           one of its workers died (0: it fails instead) [2]\n"
            "  --request-timeout-ms MS  a request not done this long after arrival ends with\n"
            "                           PD_ERR_TIMEOUT [120000]\n"
            "  --keygen                 print a new CURVE key pair ('public Z85' and 'secret\n"
            "                           Z85' lines) and exit\n"
            "  -h, --help               this text\n"
            "\n"
            "score(worker) = kv_weight * cached_prefix_tokens - load_weight * assigned_tokens,\n"
            "where assigned_tokens sums prompt + max_tokens of the requests the router has\n"
            "in flight on that worker. PD_LOG_LEVEL=error|warn|info|debug|trace.\n"
            "Under a scheduler: PD_MANIFEST=FILE PD_ROLE=router [PD_HOST=ADDR to bind] take\n"
            "every option from the manifest (options given here still win) and log to\n"
            "stdout (docs/DEPLOY.md).\n");
}

static bool pd_router_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max,
                                uint32_t *v_p)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "pd-router: %s: '%s' is not an integer in %u..%u\n", opt, s, min, max);
        return false;
    }
    *v_p = (uint32_t)v;
    return true;
}

static bool pd_router_parse_f64(const char *opt, const char *s, double *v_p)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0) {
        fprintf(stderr, "pd-router: %s: '%s' is not a non-negative number\n", opt, s);
        return false;
    }
    *v_p = v;
    return true;
}

static bool pd_router_copy(const char *opt, const char *s, char *dst, size_t cap)
{
    if (strlen(s) + 1 > cap) {
        fprintf(stderr, "pd-router: %s: longer than %zu bytes\n", opt, cap - 1);
        return false;
    }
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

enum {
    OPT_CLIENT = 256,
    OPT_WORKERS,
    OPT_READY,
    OPT_TOKENIZER,
    OPT_MODEL_ID,
    OPT_BLOCK_TOKENS,
    OPT_POLICY,
    OPT_KV_WEIGHT,
    OPT_LOAD_WEIGHT,
    OPT_MAX_QUEUE,
    OPT_MAX_INFLIGHT,
    OPT_MIN_PREFIX,
    OPT_HEARTBEAT,
    OPT_WORKER_TIMEOUT,
    OPT_MAX_MIGRATIONS,
    OPT_PREFILL_DEPTH,
    OPT_SLO_TTFT,
    OPT_SLO_TPOT,
    OPT_JOURNAL,
    OPT_JOURNAL_COMPACT,
    OPT_REQUEST_TIMEOUT,
    OPT_CURVE_SECRET,
    OPT_CLIENT_KEYS,
    OPT_WORKER_KEYS,
    OPT_KEYGEN,
};

pd_status_t pd_router_config_parse(int argc, char **argv, pd_router_config_t *c)
{
    static const struct option opts[] = {
        {"client", required_argument, NULL, OPT_CLIENT},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"model-id", required_argument, NULL, OPT_MODEL_ID},
        {"block-tokens", required_argument, NULL, OPT_BLOCK_TOKENS},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"kv-weight", required_argument, NULL, OPT_KV_WEIGHT},
        {"load-weight", required_argument, NULL, OPT_LOAD_WEIGHT},
        {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
        {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
        {"min-cached-prefix", required_argument, NULL, OPT_MIN_PREFIX},
        {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT},
        {"worker-timeout-ms", required_argument, NULL, OPT_WORKER_TIMEOUT},
        {"max-migrations", required_argument, NULL, OPT_MAX_MIGRATIONS},
        {"prefill-depth", required_argument, NULL, OPT_PREFILL_DEPTH},
        {"slo-ttft-ms", required_argument, NULL, OPT_SLO_TTFT},
        {"slo-tpot-ms", required_argument, NULL, OPT_SLO_TPOT},
        {"journal", required_argument, NULL, OPT_JOURNAL},
        {"journal-compact-kb", required_argument, NULL, OPT_JOURNAL_COMPACT},
        {"request-timeout-ms", required_argument, NULL, OPT_REQUEST_TIMEOUT},
        {"curve-secret-file", required_argument, NULL, OPT_CURVE_SECRET},
        {"client-keys", required_argument, NULL, OPT_CLIENT_KEYS},
        {"worker-keys", required_argument, NULL, OPT_WORKER_KEYS},
        {"keygen", no_argument, NULL, OPT_KEYGEN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool ok = true;
    int ch;

    pd_router_config_defaults(c);
    optind = 1;
    while (ok && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_CLIENT:
            ok = pd_router_copy("--client", optarg, c->client_endpoint, sizeof(c->client_endpoint));
            break;
        case OPT_WORKERS:
            ok =
                pd_router_copy("--workers", optarg, c->worker_endpoint, sizeof(c->worker_endpoint));
            break;
        case OPT_READY:
            ok = pd_router_copy("--ready-file", optarg, c->ready_file, sizeof(c->ready_file));
            break;
        case OPT_TOKENIZER:
            ok =
                pd_router_copy("--tokenizer", optarg, c->tokenizer_path, sizeof(c->tokenizer_path));
            break;
        case OPT_MODEL_ID:
            ok = pd_router_copy("--model-id", optarg, c->model_id, sizeof(c->model_id));
            break;
        case OPT_BLOCK_TOKENS:
            ok = pd_router_parse_u32("--block-tokens", optarg, 1, PD_PROTO_MAX_BLOCK_TOKENS,
                                     &c->block_tokens);
            break;
        case OPT_POLICY:
            if (strcmp(optarg, "kv") == 0) {
                c->policy = PD_ROUTER_POLICY_KV;
            } else if (strcmp(optarg, "rr") == 0) {
                c->policy = PD_ROUTER_POLICY_RR;
            } else {
                fprintf(stderr, "pd-router: --policy: '%s' is not kv or rr\n", optarg);
                ok = false;
            }
            break;
        case OPT_KV_WEIGHT:
            ok = pd_router_parse_f64("--kv-weight", optarg, &c->kv_weight);
            break;
        case OPT_LOAD_WEIGHT:
            ok = pd_router_parse_f64("--load-weight", optarg, &c->load_weight);
            break;
        case OPT_MAX_QUEUE:
            ok = pd_router_parse_u32("--max-queue", optarg, 0, 1u << 20, &c->max_queue);
            break;
        case OPT_MAX_INFLIGHT:
            ok = pd_router_parse_u32("--max-inflight", optarg, 1, 1u << 20,
                                     &c->max_inflight_per_worker);
            break;
        case OPT_MIN_PREFIX:
            ok = pd_router_parse_u32("--min-cached-prefix", optarg, 0, UINT32_MAX,
                                     &c->min_cached_prefix_tokens);
            break;
        case OPT_HEARTBEAT:
            ok = pd_router_parse_u32("--heartbeat-ms", optarg, 1, 3600000, &c->heartbeat_ms);
            break;
        case OPT_PREFILL_DEPTH:
            ok = pd_router_parse_u32("--prefill-depth", optarg, 1, 1024, &c->prefill_depth);
            break;
        case OPT_SLO_TTFT:
            ok = pd_router_parse_u32("--slo-ttft-ms", optarg, 0, PD_PROTO_MAX_DEADLINE_MS,
                                     &c->slo_ttft_ms);
            break;
        case OPT_SLO_TPOT:
            ok = pd_router_parse_u32("--slo-tpot-ms", optarg, 0, PD_PROTO_MAX_DEADLINE_MS,
                                     &c->slo_tpot_ms);
            break;
        case OPT_JOURNAL:
            ok = pd_router_copy("--journal", optarg, c->journal_path, sizeof(c->journal_path));
            break;
        case OPT_JOURNAL_COMPACT:
            ok = pd_router_parse_u32("--journal-compact-kb", optarg, 1, 16u << 20,
                                     &c->journal_compact_kb);
            break;
        case OPT_MAX_MIGRATIONS:
            ok = pd_router_parse_u32("--max-migrations", optarg, 0, 64, &c->max_migrations);
            break;
        case OPT_WORKER_TIMEOUT:
            ok = pd_router_parse_u32("--worker-timeout-ms", optarg, 1, 86400000,
                                     &c->worker_timeout_ms);
            break;
        case OPT_REQUEST_TIMEOUT:
            ok = pd_router_parse_u32("--request-timeout-ms", optarg, 1, PD_PROTO_MAX_DEADLINE_MS,
                                     &c->request_timeout_ms);
            break;
        case OPT_CURVE_SECRET:
            ok = pd_router_copy("--curve-secret-file", optarg, c->curve_secret_file,
                                sizeof(c->curve_secret_file));
            break;
        case OPT_CLIENT_KEYS:
            ok = pd_router_copy("--client-keys", optarg, c->client_keys_file,
                                sizeof(c->client_keys_file));
            break;
        case OPT_WORKER_KEYS:
            ok = pd_router_copy("--worker-keys", optarg, c->worker_keys_file,
                                sizeof(c->worker_keys_file));
            break;
        case OPT_KEYGEN: {
            char pub[41], sec[41];
            if (zmq_curve_keypair(pub, sec) != 0) {
                fprintf(stderr, "pd-router: --keygen: this libzmq has no CURVE\n");
                return PD_ERR_UNSUPPORTED;
            }
            printf("public %s\nsecret %s\n", pub, sec);
            return PD_INPROGRESS;
        }
        case 'h':
            pd_router_config_usage(stdout);
            return PD_INPROGRESS;
        default:
            ok = false;
            break;
        }
    }
    if (ok && optind < argc) {
        fprintf(stderr, "pd-router: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (!ok) {
        fprintf(stderr, "pd-router: see --help\n");
        return PD_ERR_INVALID_PARAM;
    }
    return PD_OK;
}
