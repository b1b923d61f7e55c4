/* The worker command line: the flags deploy/src/launch.c passes to pd-prefill and
 * pd-decode, with --help. */
#include "pd/client.h"
#include "pd/log.h"
#include "pd/worker.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    PD_WORKER_OPT_ROUTER = 256,
    PD_WORKER_OPT_ID,
    PD_WORKER_OPT_MODEL,
    PD_WORKER_OPT_THREADS,
    PD_WORKER_OPT_BACKEND,
    PD_WORKER_OPT_KV_STAGING,
    PD_WORKER_OPT_POOL_MB,
    PD_WORKER_OPT_BLOCK_TOKENS,
    PD_WORKER_OPT_EVENTS,
    PD_WORKER_OPT_IP,
    PD_WORKER_OPT_XFER_BACKEND,
    PD_WORKER_OPT_CHECKSUM,
    PD_WORKER_OPT_LAYERWISE,
    PD_WORKER_OPT_FETCH,
    PD_WORKER_OPT_XFER_TIMEOUT,
    PD_WORKER_OPT_KV_CODEC,
    PD_WORKER_OPT_MAX_BATCH,
    PD_WORKER_OPT_CHUNK_TOKENS,
    PD_WORKER_OPT_COLOCATED,
    PD_WORKER_OPT_HOST_MB,
    PD_WORKER_OPT_SSD_DIR,
    PD_WORKER_OPT_SSD_MB,
    PD_WORKER_OPT_CURVE_SERVER_KEY,
    PD_WORKER_OPT_CURVE_SECRET_FILE,
    PD_WORKER_OPT_HELP
};

void pd_worker_args_usage(const char *prog, pd_proto_role_t role)
{
    printf("usage: %s --router tcp://IP:PORT --id NAME --model PATH [options]\n\n"
           "  --router EP          the router's worker ROUTER socket (required)\n"
           "  --id NAME            worker id, unique in the cluster (required)\n"
           "  --model PATH         model directory or llama2.c .bin; also the model id\n"
           "  --threads N          compute threads (0: all cores; default 1)\n"
           "  --backend NAME       compute backend: cpu or cuda (KV pool in device memory,\n"
           "                       moved through the host pool; default cpu)\n"
           "  --kv-staging 0|1     keep the compute pool apart from the transfer pool, as\n"
           "                       cuda does, on the CPU too (default 0; cuda: always)\n"
           "  --pool-mb M          KV pool size in MiB (default 64)\n"
           "  --block-tokens B     tokens per KV block (default 16)\n"
           "  --events EP          where to bind the KV event PUB (default tcp://127.0.0.1:0)\n"
           "  --ip IP              the address this worker binds (default 127.0.0.1)\n"
           "  --xfer-backend NAME  ucx or loopback (default ucx)\n"
           "  --checksum 0|1       verify per-block checksums of transfers (default 1)\n"
           "  --layerwise 0|1      push each layer while later layers compute (default 1)\n"
           "  --fetch 0|1          prefill: read a prefix the decode worker holds from its\n"
           "                       pool when cheaper than computing it (default 1)\n"
           "  --xfer-timeout-ms T  deadline of one KV transfer (default 5000)\n"
           "  --kv-codec NAME      KV this worker sends over TCP: none, int8 or fp8\n"
           "                       (lossy, about 4x fewer bytes; default none)\n",
           prog);
    if (role == PD_PROTO_ROLE_PREFILL)
        printf("  --chunk-tokens N     most prompt tokens one forward pass computes: a long\n"
               "                       prompt computes in chunks, shorter ones pass between\n"
               "                       them (default 256)\n");
    if (role != PD_PROTO_ROLE_PREFILL)
        printf("  --max-batch N        requests in the running batch (default 32)\n"
               "  --colocated          role \"both\": prefill this worker's own requests\n");
    printf("  --host-mb H          G2 host DRAM tier in MiB (default 0: none)\n"
           "  --ssd-dir DIR        G3 SSD tier directory (default: none)\n"
           "  --ssd-mb S           G3 tier size in MiB\n"
           "  --curve-server-key K the router's CURVE public key (Z85), or a file holding\n"
           "                       it: the router connection and the events socket use\n"
           "                       CURVE, and only the router may subscribe to events\n"
           "  --curve-secret-file F this worker's CURVE secret key file\n"
           "  --help               this text\n"
           "\n"
           "Under a scheduler: PD_MANIFEST=FILE PD_ROLE=prefill|decode|both [PD_INDEX=i]\n"
           "[PD_HOST=ADDR] [PD_ROUTER=ADDR] take every option from the manifest (options\n"
           "given here still win) and log to stdout (docs/DEPLOY.md).\n");
}

static int pd_worker_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *v_p)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return -1;
    *v_p = (uint32_t)v;
    return 0;
}

static int pd_worker_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

pd_status_t pd_worker_args_parse(int argc, char **argv, pd_proto_role_t role,
                                 pd_worker_args_t *args_p)
{
    static const struct option opts[] = {
        {"router", required_argument, NULL, PD_WORKER_OPT_ROUTER},
        {"id", required_argument, NULL, PD_WORKER_OPT_ID},
        {"model", required_argument, NULL, PD_WORKER_OPT_MODEL},
        {"threads", required_argument, NULL, PD_WORKER_OPT_THREADS},
        {"backend", required_argument, NULL, PD_WORKER_OPT_BACKEND},
        {"kv-staging", required_argument, NULL, PD_WORKER_OPT_KV_STAGING},
        {"pool-mb", required_argument, NULL, PD_WORKER_OPT_POOL_MB},
        {"block-tokens", required_argument, NULL, PD_WORKER_OPT_BLOCK_TOKENS},
        {"events", required_argument, NULL, PD_WORKER_OPT_EVENTS},
        {"ip", required_argument, NULL, PD_WORKER_OPT_IP},
        {"xfer-backend", required_argument, NULL, PD_WORKER_OPT_XFER_BACKEND},
        {"checksum", required_argument, NULL, PD_WORKER_OPT_CHECKSUM},
        {"layerwise", required_argument, NULL, PD_WORKER_OPT_LAYERWISE},
        {"fetch", required_argument, NULL, PD_WORKER_OPT_FETCH},
        {"xfer-timeout-ms", required_argument, NULL, PD_WORKER_OPT_XFER_TIMEOUT},
        {"kv-codec", required_argument, NULL, PD_WORKER_OPT_KV_CODEC},
        {"max-batch", required_argument, NULL, PD_WORKER_OPT_MAX_BATCH},
        {"chunk-tokens", required_argument, NULL, PD_WORKER_OPT_CHUNK_TOKENS},
        {"colocated", no_argument, NULL, PD_WORKER_OPT_COLOCATED},
        {"host-mb", required_argument, NULL, PD_WORKER_OPT_HOST_MB},
        {"ssd-dir", required_argument, NULL, PD_WORKER_OPT_SSD_DIR},
        {"ssd-mb", required_argument, NULL, PD_WORKER_OPT_SSD_MB},
        {"curve-server-key", required_argument, NULL, PD_WORKER_OPT_CURVE_SERVER_KEY},
        {"curve-secret-file", required_argument, NULL, PD_WORKER_OPT_CURVE_SECRET_FILE},
        {"help", no_argument, NULL, PD_WORKER_OPT_HELP},
        {NULL, 0, NULL, 0}};
    const char *prog = argc > 0 ? argv[0] : "pd-worker";
    pd_worker_args_t a;
    memset(&a, 0, sizeof(a));
    a.role = role;
    a.threads = 1;
    snprintf(a.backend, sizeof(a.backend), "cpu");
    a.pool_mb = 64;
    a.block_tokens = 16;
    snprintf(a.events, sizeof(a.events), "tcp://127.0.0.1:0");
    snprintf(a.ip, sizeof(a.ip), "127.0.0.1");
    snprintf(a.xfer_backend, sizeof(a.xfer_backend), "ucx");
    a.checksum = true;
    a.layerwise = true;
    a.fetch = true;
    a.xfer_timeout_ms = 5000;
    snprintf(a.kv_codec, sizeof(a.kv_codec), "none");
    a.max_batch = 32;
    a.chunk_tokens = 256;

    optind = 1;
    opterr = 0;
    int c;
    uint32_t flag = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case PD_WORKER_OPT_ROUTER:
            bad = pd_worker_copy(a.router, sizeof(a.router), optarg);
            break;
        case PD_WORKER_OPT_ID:
            bad = pd_worker_copy(a.id, sizeof(a.id), optarg);
            break;
        case PD_WORKER_OPT_MODEL:
            bad = pd_worker_copy(a.model, sizeof(a.model), optarg);
            break;
        case PD_WORKER_OPT_THREADS:
            bad = pd_worker_parse_u32(optarg, 0, 1024, &a.threads);
            break;
        case PD_WORKER_OPT_POOL_MB:
            bad = pd_worker_parse_u32(optarg, 1, 1u << 20, &a.pool_mb);
            break;
        case PD_WORKER_OPT_BLOCK_TOKENS:
            bad = pd_worker_parse_u32(optarg, 1, PD_PROTO_MAX_BLOCK_TOKENS, &a.block_tokens);
            break;
        case PD_WORKER_OPT_EVENTS:
            bad = pd_worker_copy(a.events, sizeof(a.events), optarg);
            break;
        case PD_WORKER_OPT_IP:
            bad = pd_worker_copy(a.ip, sizeof(a.ip), optarg);
            break;
        case PD_WORKER_OPT_XFER_BACKEND:
            bad = pd_worker_copy(a.xfer_backend, sizeof(a.xfer_backend), optarg);
            break;
        case PD_WORKER_OPT_CHECKSUM:
            bad = pd_worker_parse_u32(optarg, 0, 1, &flag);
            a.checksum = flag != 0;
            break;
        case PD_WORKER_OPT_BACKEND:
            bad = strcmp(optarg, "cpu") != 0 && strcmp(optarg, "cuda") != 0
                      ? -1
                      : pd_worker_copy(a.backend, sizeof(a.backend), optarg);
            break;
        case PD_WORKER_OPT_KV_STAGING:
            bad = pd_worker_parse_u32(optarg, 0, 1, &flag);
            a.kv_staging = flag != 0;
            break;
        case PD_WORKER_OPT_LAYERWISE:
            bad = pd_worker_parse_u32(optarg, 0, 1, &flag);
            a.layerwise = flag != 0;
            break;
        case PD_WORKER_OPT_FETCH:
            bad = pd_worker_parse_u32(optarg, 0, 1, &flag);
            a.fetch = flag != 0;
            break;
        case PD_WORKER_OPT_XFER_TIMEOUT:
            bad = pd_worker_parse_u32(optarg, 1, PD_PROTO_MAX_DEADLINE_MS, &a.xfer_timeout_ms);
            break;
        case PD_WORKER_OPT_KV_CODEC:
            /* The names pd_xfer_codec_parse takes ("off" is "none"). */
            bad = strcmp(optarg, "none") != 0 && strcmp(optarg, "off") != 0 &&
                          strcmp(optarg, "int8") != 0 && strcmp(optarg, "fp8") != 0
                      ? -1
                      : pd_worker_copy(a.kv_codec, sizeof(a.kv_codec), optarg);
            break;
        case PD_WORKER_OPT_MAX_BATCH:
            bad = role == PD_PROTO_ROLE_PREFILL ||
                  pd_worker_parse_u32(optarg, 1, 4096, &a.max_batch) != 0;
            break;
        case PD_WORKER_OPT_CHUNK_TOKENS:
            bad = role != PD_PROTO_ROLE_PREFILL ||
                  pd_worker_parse_u32(optarg, 1, PD_PROTO_MAX_PROMPT_TOKENS, &a.chunk_tokens) != 0;
            break;
        case PD_WORKER_OPT_COLOCATED:
            bad = role == PD_PROTO_ROLE_PREFILL;
            a.role = PD_PROTO_ROLE_BOTH;
            break;
        case PD_WORKER_OPT_HOST_MB:
            bad = pd_worker_parse_u32(optarg, 0, 1u << 24, &a.host_mb);
            break;
        case PD_WORKER_OPT_SSD_DIR:
            bad = pd_worker_copy(a.ssd_dir, sizeof(a.ssd_dir), optarg);
            break;
        case PD_WORKER_OPT_SSD_MB:
            bad = pd_worker_parse_u32(optarg, 0, 1u << 24, &a.ssd_mb);
            break;
        case PD_WORKER_OPT_CURVE_SERVER_KEY:
            /* The key itself, or a file that holds it (`pdctl up` writes router.pub). */
            if (strlen(optarg) == 40 && access(optarg, F_OK) != 0)
                bad = pd_worker_copy(a.curve_server_key, sizeof(a.curve_server_key), optarg);
            else
                bad = pd_client_read_key_file(optarg, a.curve_server_key) != PD_OK;
            break;
        case PD_WORKER_OPT_CURVE_SECRET_FILE:
            bad = pd_worker_copy(a.curve_secret_file, sizeof(a.curve_secret_file), optarg);
            break;
        case PD_WORKER_OPT_HELP:
            pd_worker_args_usage(prog, role);
            return PD_INPROGRESS;
        default:
            fprintf(stderr, "%s: unknown option or missing value: %s\n", prog,
                    argv[optind > 0 && optind <= argc ? optind - 1 : 0]);
            return PD_ERR_INVALID_PARAM;
        }
        if (bad) {
            fprintf(stderr, "%s: bad value for %s: '%s'\n", prog,
                    argv[optind - 2 >= 0 ? optind - 2 : 0], optarg != NULL ? optarg : "");
            return PD_ERR_INVALID_PARAM;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        return PD_ERR_INVALID_PARAM;
    }
    if (a.router[0] == '\0' || a.id[0] == '\0' || a.model[0] == '\0') {
        fprintf(stderr, "%s: --router, --id and --model are required (see --help)\n", prog);
        return PD_ERR_INVALID_PARAM;
    }
    if ((a.curve_server_key[0] == '\0') != (a.curve_secret_file[0] == '\0')) {
        fprintf(stderr, "%s: --curve-server-key and --curve-secret-file go together\n", prog);
        return PD_ERR_INVALID_PARAM;
    }
    if (strcmp(a.xfer_backend, "ucx") != 0 && strcmp(a.xfer_backend, "loopback") != 0 &&
        strcmp(a.xfer_backend, "nccl") != 0) {
        fprintf(stderr, "%s: --xfer-backend must be ucx or loopback\n", prog);
        return PD_ERR_INVALID_PARAM;
    }
    *args_p = a;
    return PD_OK;
}

pd_status_t pd_worker_mkdirs(const char *path)
{
    char tmp[PD_WORKER_PATH_CAP];
    if (path == NULL || strlen(path) >= sizeof(tmp))
        return PD_ERR_INVALID_PARAM;
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            int err = errno;
            pd_log_error("worker: cannot create %s: %s", tmp, strerror(err));
            return pd_status_from_errno(err);
        }
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        int err = errno;
        pd_log_error("worker: cannot create %s: %s", tmp, strerror(err));
        return pd_status_from_errno(err);
    }
    return PD_OK;
}
