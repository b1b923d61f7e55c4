/* pd-gateway's command line. */
#include "gw_int.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pd_gw_config_defaults(pd_gw_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
    c->listen_port = 8000;
    snprintf(c->router_endpoint, sizeof(c->router_endpoint), "tcp://127.0.0.1:7100");
    snprintf(c->model_name, sizeof(c->model_name), "pdkv");
    c->max_connections = 4096;
    c->max_body_bytes = 4u << 20;
    c->read_timeout_ms = 30000;
    c->request_timeout_ms = 125000;
    c->default_max_tokens = PD_PROTO_MAX_NEW_TOKENS;
    c->status_interval_ms = 1000;
    c->max_inflight = 4096;
}

static void pd_gw_config_usage(FILE *f)
{
    fprintf(
        f, "usage: pd-gateway --tokenizer PATH|byte [options]\n"
           "       pd-gateway --keygen TENANT | --hash-key < KEYFILE\n"
           "\n"
           "The HTTP front door of a pdkv cluster: the OpenAI API (/v1/models,\n"
           "/v1/completions, /v1/chat/completions) and the Anthropic Messages API\n"
           "(/v1/messages), streaming as Server-Sent Events, with /health, /ready and\n"
           "/metrics. Prompts are rendered and tokenized here; the router gets token ids.\n"
           "Reference: docs/API.md.\n"
           "\n"
           "  --listen HOST:PORT        HTTP address ([::1]:PORT for IPv6; port 0 picks a free\n"
           "                            one, see --ready-file) [127.0.0.1:8000]\n"
           "  --router EP               the router's client socket [tcp://127.0.0.1:7100]\n"
           "  --curve-server-key Z85    the router's CURVE public key (router auth on)\n"
           "  --curve-secret-file PATH  this gateway's CURVE secret key file\n"
           "  --tokenizer PATH          the model's directory, tokenizer.json or llama2.c\n"
           "                            tokenizer.bin (as pd-router takes it), or 'byte'\n"
           "  --chat-template FILE      a Jinja chat template for chat and messages requests,\n"
           "                            instead of the model's own (tokenizer_config.json's\n"
           "                            chat_template); without either, the built-in\n"
           "                            plain-text one\n"
           "  --model NAME              the model name clients ask for [pdkv]\n"
           "  --keys PATH               API key file: 'sha256:HEX TENANT [admin] [rpm=N]\n"
           "                            [concurrency=N]' lines; read again on SIGHUP.\n"
           "                            Without it every request is served as tenant \"\"\n"
           "  --ready-file PATH         once listening, write 'http=URL' and 'pid=N' (atomically)\n"
           "  --max-connections N       open HTTP connections at most [4096]\n"
           "  --max-body-bytes N        larger request bodies get 413 [4194304]\n"
           "  --read-timeout-ms MS      a connection must deliver a whole request (headers and\n"
           "                            body) within MS of opening or of its last response,\n"
           "                            else it is closed (slow clients, idle keep-alive) [30000]\n"
           "  --request-timeout-ms MS   a generation without an answer this long ends with\n"
           "                            504 [125000]\n"
           "  --default-max-tokens N    max_tokens of requests that name none [4096]\n"
           "  --status-interval-ms MS   how often the router's status is polled for /ready\n"
           "                            and /metrics [1000]\n"
           "  --max-inflight N          generations in flight before new ones get 429 [4096]\n"
           "  --keygen TENANT           (alone) print a new API key and its key-file line\n"
           "  --hash-key                (alone) read a key from stdin, print its key-file line\n"
           "  -h, --help                this text\n"
           "\n"
           "SIGHUP reloads the key file; SIGINT/SIGTERM stop (requests in flight are\n"
           "answered and canceled). PD_LOG_LEVEL=error|warn|info|debug|trace.\n");
}

static bool pd_gw_parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max,
                            uint32_t *v_p)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "pd-gateway: %s: '%s' is not an integer in %u..%u\n", opt, s, min, max);
        return false;
    }
    *v_p = (uint32_t)v;
    return true;
}

static bool pd_gw_copy(const char *opt, const char *s, char *dst, size_t cap)
{
    if (strlen(s) + 1 > cap) {
        fprintf(stderr, "pd-gateway: %s: longer than %zu bytes\n", opt, cap - 1);
        return false;
    }
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

/* HOST:PORT, [V6]:PORT. */
static bool pd_gw_parse_listen(const char *s, pd_gw_config_t *c)
{
    const char *colon;
    char host[PD_GW_ENDPOINT_CAP];
    uint32_t port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            goto bad;
        colon = close + 1;
        if ((size_t)(close - s - 1) >= sizeof(host))
            goto bad;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    if (host[0] == '\0' || !pd_gw_parse_u32("--listen port", colon + 1, 0, 65535, &port))
        goto bad;
    memcpy(c->listen_host, host, strlen(host) + 1);
    c->listen_port = (uint16_t)port;
    return true;
bad:
    fprintf(stderr, "pd-gateway: --listen: '%s' is not HOST:PORT\n", s);
    return false;
}

enum {
    OPT_LISTEN = 256,
    OPT_ROUTER,
    OPT_CURVE_SERVER,
    OPT_CURVE_SECRET,
    OPT_TOKENIZER,
    OPT_CHAT_TEMPLATE,
    OPT_MODEL,
    OPT_KEYS,
    OPT_READY,
    OPT_MAX_CONN,
    OPT_MAX_BODY,
    OPT_READ_TIMEOUT,
    OPT_REQ_TIMEOUT,
    OPT_DEFAULT_MAX,
    OPT_STATUS_INTERVAL,
    OPT_MAX_INFLIGHT,
};

pd_status_t pd_gw_config_parse(int argc, char **argv, pd_gw_config_t *c)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"router", required_argument, NULL, OPT_ROUTER},
        {"curve-server-key", required_argument, NULL, OPT_CURVE_SERVER},
        {"curve-secret-file", required_argument, NULL, OPT_CURVE_SECRET},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"chat-template", required_argument, NULL, OPT_CHAT_TEMPLATE},
        {"model", required_argument, NULL, OPT_MODEL},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY},
        {"read-timeout-ms", required_argument, NULL, OPT_READ_TIMEOUT},
        {"request-timeout-ms", required_argument, NULL, OPT_REQ_TIMEOUT},
        {"default-max-tokens", required_argument, NULL, OPT_DEFAULT_MAX},
        {"status-interval-ms", required_argument, NULL, OPT_STATUS_INTERVAL},
        {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    pd_gw_config_defaults(c);
    optind = 1;
    int opt;
    bool ok = true;
    while (ok && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
            ok = pd_gw_parse_listen(optarg, c);
            break;
        case OPT_ROUTER:
            ok = pd_gw_copy("--router", optarg, c->router_endpoint, sizeof(c->router_endpoint));
            break;
        case OPT_CURVE_SERVER:
            ok = strlen(optarg) == 40 &&
                 pd_gw_copy("--curve-server-key", optarg, c->curve_server_key,
                            sizeof(c->curve_server_key));
            if (!ok)
                fprintf(stderr, "pd-gateway: --curve-server-key: a 40-character Z85 key\n");
            break;
        case OPT_CURVE_SECRET:
            ok = pd_gw_copy("--curve-secret-file", optarg, c->curve_secret_file,
                            sizeof(c->curve_secret_file));
            break;
        case OPT_TOKENIZER:
            ok = pd_gw_copy("--tokenizer", optarg, c->tokenizer_path, sizeof(c->tokenizer_path));
            break;
        case OPT_CHAT_TEMPLATE:
            ok = optarg[0] != '\0' && pd_gw_copy("--chat-template", optarg, c->chat_template_file,
                                                 sizeof(c->chat_template_file));
            break;
        case OPT_MODEL:
            ok = optarg[0] != '\0' &&
                 pd_gw_copy("--model", optarg, c->model_name, sizeof(c->model_name));
            break;
        case OPT_KEYS:
            ok = pd_gw_copy("--keys", optarg, c->keys_file, sizeof(c->keys_file));
            break;
        case OPT_READY:
            ok = pd_gw_copy("--ready-file", optarg, c->ready_file, sizeof(c->ready_file));
            break;
        case OPT_MAX_CONN:
            ok = pd_gw_parse_u32("--max-connections", optarg, 1, 1000000, &c->max_connections);
            break;
        case OPT_MAX_BODY:
            ok = pd_gw_parse_u32("--max-body-bytes", optarg, 1024, 1u << 30, &c->max_body_bytes);
            break;
        case OPT_READ_TIMEOUT:
            ok = pd_gw_parse_u32("--read-timeout-ms", optarg, 100, 3600000, &c->read_timeout_ms);
            break;
        case OPT_REQ_TIMEOUT:
            ok = pd_gw_parse_u32("--request-timeout-ms", optarg, 100, PD_PROTO_MAX_DEADLINE_MS,
                                 &c->request_timeout_ms);
            break;
        case OPT_DEFAULT_MAX:
            ok = pd_gw_parse_u32("--default-max-tokens", optarg, 1, PD_PROTO_MAX_NEW_TOKENS,
                                 &c->default_max_tokens);
            break;
        case OPT_STATUS_INTERVAL:
            ok = pd_gw_parse_u32("--status-interval-ms", optarg, 10, 60000, &c->status_interval_ms);
            break;
        case OPT_MAX_INFLIGHT:
            ok = pd_gw_parse_u32("--max-inflight", optarg, 1, 1000000, &c->max_inflight);
            break;
        case 'h':
            pd_gw_config_usage(stdout);
            return PD_INPROGRESS;
        default:
            ok = false;
            break;
        }
    }
    if (ok && optind < argc) {
        fprintf(stderr, "pd-gateway: unexpected argument '%s'\n", argv[optind]);
        ok = false;
    }
    if (ok && c->tokenizer_path[0] == '\0') {
        fprintf(stderr, "pd-gateway: --tokenizer is required (the model's tokenizer.bin, or "
                        "'byte')\n");
        ok = false;
    }
    if (ok && (c->curve_server_key[0] != '\0') != (c->curve_secret_file[0] != '\0')) {
        fprintf(stderr, "pd-gateway: --curve-server-key and --curve-secret-file go together\n");
        ok = false;
    }
    if (!ok) {
        fprintf(stderr, "pd-gateway: see --help\n");
        return PD_ERR_INVALID_PARAM;
    }
    return PD_OK;
}
