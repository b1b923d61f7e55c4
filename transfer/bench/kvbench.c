/* pd-kvbench: the transfer fabric's microbenchmark.
 *
 * Two processes, one sending and one receiving (forked; descriptors cross a socketpair),
 * move fresh data from pools larger than the caches (512 MiB each by default, walked
 * block range by block range) and report bandwidth and per-batch latency over block
 * size, blocks per batch, layers, data path and transport, beside every ucx_perftest
 * operation on the same transport and size (run between the fabric's repeats, so both
 * see the same machine) and a memcpy of uncached data. */
#include "kvbench_int.h"

#include "pd/log.h"
#include "pd/mp.h"
#include "pd/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- main ---- */

static void kb_usage(FILE *f)
{
    fprintf(
        f, "usage: pd-kvbench [options]\n"
           "\n"
           "Moves KV blocks between two processes through the transfer fabric (one sends,\n"
           "one receives) and reports bandwidth and batch latency beside the fastest\n"
           "ucx_perftest operation on the same transport and size, measured in the same\n"
           "run between the fabric's repeats, and a memcpy of uncached data.\n"
           "\n"
           "  --transports LIST   shm,tcp,netns (default shm,tcp,netns; netns needs root and\n"
           "                      is skipped with a reason otherwise)\n"
           "  --block-sizes LIST  bytes of one block in one layer (default 4K,16K,64K,256K,1M,4M)\n"
           "  --blocks LIST       blocks per batch (default 16)\n"
           "  --layers LIST       layers per batch, posted one by one (default 1)\n"
           "  --checksum MODE     on, off or both (default both)\n"
           "  --coalesce MODE     on, off or both (default on)\n"
           "  --data-path LIST    auto, put, am (default auto: puts where the transport\n"
           "                      does RMA natively, active messages elsewhere, e.g. TCP)\n"
           "  --pool BYTES        pool per side (default 512M; data cycles through it)\n"
           "  --bytes BYTES       data per point and repeat (default 1G)\n"
           "  --max-seconds S     time cap per point and repeat (default 3)\n"
           "  --repeats N         repeats per point; the median is reported (default 3)\n"
           "  --window N          batches in flight (default 4)\n"
           "  --perftest-tests L  ucx_perftest operations to compare with (default\n"
           "                      tag_bw,ucp_am_bw,ucp_put_bw,stream_bw); the ratio is to\n"
           "                      the fastest of them at each size\n"
           "  --perftest-test T   compare with this one operation only\n"
           "  --no-perftest       skip ucx_perftest\n"
           "  --json FILE         write the results as JSON\n"
           "  --plot FILE.png     plot bandwidth over block size with gnuplot\n"
           "  -h, --help          this text\n"
           "\n"
           "Progress goes to stderr, the table to stdout (one transport at a time, once its\n"
           "perftest samples are in). GB/s are 1e9 bytes per second. Over shared memory\n"
           "ucx_perftest re-sends one cache-hot buffer: compare with memcpy there.\n");
}

static int kb_parse_paths(const char *arg, kb_opts_t *o)
{
    char items[KB_MAX_LIST][16];
    int n = kb_parse_list(arg, items, KB_MAX_LIST);
    if (n < 1 || n > 3)
        return -1;
    for (int i = 0; i < n; i++) {
        if (pd_xfer_data_path_parse(items[i], &o->data_paths[i]) != PD_OK)
            return -1;
    }
    o->n_data_paths = n;
    return 0;
}

static int kb_parse_mode(const char *arg, int *modes, int *n)
{
    if (strcmp(arg, "on") == 0) {
        modes[0] = 1;
        *n = 1;
    } else if (strcmp(arg, "off") == 0) {
        modes[0] = 0;
        *n = 1;
    } else if (strcmp(arg, "both") == 0) {
        modes[0] = 0;
        modes[1] = 1;
        *n = 2;
    } else {
        return -1;
    }
    return 0;
}

static int kb_parse_args(int argc, char **argv, kb_opts_t *o)
{
    static const struct option opts[] = {
        {"transports", required_argument, NULL, 't'},
        {"block-sizes", required_argument, NULL, 's'},
        {"blocks", required_argument, NULL, 'b'},
        {"layers", required_argument, NULL, 'l'},
        {"checksum", required_argument, NULL, 'c'},
        {"coalesce", required_argument, NULL, 'C'},
        {"pool", required_argument, NULL, 'p'},
        {"bytes", required_argument, NULL, 'B'},
        {"max-seconds", required_argument, NULL, 'm'},
        {"repeats", required_argument, NULL, 'r'},
        {"window", required_argument, NULL, 'w'},
        {"perftest-test", required_argument, NULL, 'T'},
        {"perftest-tests", required_argument, NULL, 'U'},
        {"data-path", required_argument, NULL, 'D'},
        {"no-perftest", no_argument, NULL, 'N'},
        {"spin", no_argument, NULL, 'S'},
        {"register", no_argument, NULL, 'R'},
        {"json", required_argument, NULL, 'j'},
        {"plot", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char items[KB_MAX_LIST][16];
    int c, n;
    size_t v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->n_transports = kb_parse_list(optarg, o->transports, KB_MAX_LIST);
            break;
        case 's':
            n = kb_parse_list(optarg, items, KB_MAX_LIST);
            for (int i = 0; i < n; i++) {
                if (kb_parse_size(items[i], &o->block_sizes[i]) != 0 || o->block_sizes[i] % 8)
                    return -1;
            }
            o->n_block_sizes = n;
            break;
        case 'b':
        case 'l':
            n = kb_parse_list(optarg, items, KB_MAX_LIST);
            for (int i = 0; i < n; i++) {
                uint32_t x = (uint32_t)strtoul(items[i], NULL, 10);
                if (x == 0)
                    return -1;
                (c == 'b' ? o->blocks : o->layers)[i] = x;
            }
            *(c == 'b' ? &o->n_blocks : &o->n_layers) = n;
            break;
        case 'c':
            if (kb_parse_mode(optarg, o->checksum_modes, &o->n_checksum_modes) != 0)
                return -1;
            break;
        case 'C':
            if (kb_parse_mode(optarg, o->coalesce_modes, &o->n_coalesce_modes) != 0)
                return -1;
            break;
        case 'p':
        case 'B':
            if (kb_parse_size(optarg, &v) != 0)
                return -1;
            if (c == 'p')
                o->pool_bytes = v;
            else
                o->point_bytes = (double)v;
            break;
        case 'm':
            o->max_seconds = atof(optarg);
            break;
        case 'r':
            o->repeats = atoi(optarg);
            break;
        case 'w':
            o->window = (uint32_t)atoi(optarg);
            break;
        case 'T':
            snprintf(o->perftest_ops[0], sizeof(o->perftest_ops[0]), "%s", optarg);
            o->n_perftest_ops = 1;
            break;
        case 'U':
            o->n_perftest_ops = kb_parse_list(optarg, o->perftest_ops, KB_MAX_OPS);
            if (o->n_perftest_ops < 1)
                return -1;
            break;
        case 'D':
            if (kb_parse_paths(optarg, o) != 0)
                return -1;
            break;
        case 'N':
            o->perftest = false;
            break;
        case 'S':
            o->spin = true;
            break;
        case 'R':
            o->register_pool = true;
            break;
        case 'j':
            o->json_path = optarg;
            break;
        case 'P':
            o->plot_path = optarg;
            break;
        case 'h':
            kb_usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (o->repeats < 1 || o->repeats > 15 || o->window < 1 || o->window > 32 ||
        o->max_seconds <= 0 || optind != argc)
        return -1;
    return 0;
}

/* Median per operation of what the samples hold; best_op the fastest of them. */
static void kb_point_perftest(const kb_opts_t *o, kb_perf_samples_t *ps, kb_point_t *p)
{
    p->best_op = -1;
    for (int k = 0; k < o->n_perftest_ops; k++) {
        double v[32];
        int n = 0;
        for (int i = 0; i < ps->n[k]; i++) {
            if (ps->v[k][i] > 0)
                v[n++] = ps->v[k][i];
        }
        p->perftest_gbps[k] = kb_percentile(v, (size_t)n, 0.5);
        if (p->perftest_gbps[k] > 0 &&
            (p->best_op < 0 || p->perftest_gbps[k] > p->perftest_gbps[p->best_op]))
            p->best_op = k;
    }
}

/* One sample of every perftest operation at this size, unless it has enough. */
static void kb_perftest_sample(const kb_opts_t *o, const kb_transport_t *t, size_t size,
                               kb_perf_samples_t *ps, int cap)
{
    for (int k = 0; k < o->n_perftest_ops; k++) {
        if (ps->n[k] >= cap || ps->n[k] >= 32)
            continue;
        char b[32];
        fprintf(stderr, "  ucx_perftest %s %s ...          \r", o->perftest_ops[k],
                kb_size_str(size, b, sizeof(b)));
        ps->v[k][ps->n[k]++] = kb_perftest_gbps(o, t, o->perftest_ops[k], size);
    }
}

/* Every point of one transport: links per (checksum, data path, coalescing), the sweep
 * inside each, ucx_perftest samples after each repeat of the first (blocks, layers). */
static int kb_run_transport(const kb_opts_t *o, const kb_transport_t *t, const kb_memcpy_t *mc,
                            kb_point_t *pts, int *n_pts_p)
{
    kb_perf_samples_t *perf = calloc(KB_MAX_LIST, sizeof(*perf)); /* per block size */
    if (perf == NULL)
        return 1;
    const int cap = o->repeats * o->n_checksum_modes * o->n_data_paths * o->n_coalesce_modes;
    const int first = *n_pts_p;
    int rc = 0;
    for (int ci = 0; ci < o->n_checksum_modes; ci++) {
        for (int di = 0; di < o->n_data_paths; di++) {
            for (int oi = 0; oi < o->n_coalesce_modes; oi++) {
                kb_link_t link;
                bool ck = o->checksum_modes[ci], co = o->coalesce_modes[oi];
                if (kb_link_open(&link, t, ck, co, o->data_paths[di], o->pool_bytes,
                                 o->register_pool) != 0) {
                    fprintf(stderr, "pd-kvbench: %s: cannot connect the two processes\n", t->name);
                    kb_link_close(&link);
                    rc = 1;
                    continue;
                }
                /* Warm-up, not reported: one pass over the whole pool faults in the
                 * sender's mapping of the receiver's pool (shared memory maps lazily). */
                kb_opts_t warm_o = *o;
                warm_o.point_bytes = (double)o->pool_bytes;
                warm_o.max_seconds = 60;
                kb_point_t warm = {.block_bytes = 1u << 20, .blocks = 4, .layers = 1};
                double warm_gbps = 0;
                if (o->pool_bytes >= 4u << 20)
                    kb_run_point(&link, &warm_o, &warm, &warm_gbps);
                char tl[128] = ""; /* left empty when UCX does not say */
                pd_status_ignore(pd_xfer_peer_transports(link.peer, tl, sizeof(tl)));
                pd_xfer_data_path_t path = pd_xfer_peer_data_path(link.peer);
                fprintf(stderr,
                        "pd-kvbench: %s (checksum %s, coalesce %s): UCX uses %s, data "
                        "path %s\n",
                        t->name, ck ? "on" : "off", co ? "on" : "off", tl,
                        pd_xfer_data_path_name(path));
                for (int si = 0; si < o->n_block_sizes; si++) {
                    for (int bi = 0; bi < o->n_blocks; bi++) {
                        for (int li = 0; li < o->n_layers; li++) {
                            kb_point_t *p = &pts[*n_pts_p];
                            memset(p, 0, sizeof(*p));
                            snprintf(p->transport, sizeof(p->transport), "%s", t->name);
                            p->block_bytes = o->block_sizes[si];
                            p->blocks = o->blocks[bi];
                            p->layers = o->layers[li];
                            p->checksum = ck;
                            p->coalesce = co;
                            p->data_path = path;
                            double g[15], m[15];
                            int ok = 0;
                            for (int r = 0; r < o->repeats; r++) {
                                char b[32];
                                fprintf(stderr, "  %s %s x%u x%u ck=%d %s co=%d rep %d/%d   \r",
                                        t->name, kb_size_str(p->block_bytes, b, sizeof(b)),
                                        p->blocks, p->layers, ck, pd_xfer_data_path_name(path), co,
                                        r + 1, o->repeats);
                                /* memcpy right after each repeat, on the same machine. */
                                if (kb_run_point(&link, o, p, &g[ok]) == 0) {
                                    m[ok] = kb_memcpy_once(mc->src, mc->dst, mc->bytes, 1u << 20);
                                    ok++;
                                }
                                if (o->perftest && bi == 0 && li == 0)
                                    kb_perftest_sample(o, t, p->block_bytes, &perf[si], cap);
                            }
                            fprintf(stderr, "\n");
                            if (ok == 0) {
                                fprintf(stderr, "pd-kvbench: point failed or does not fit "
                                                "the pool\n");
                                continue;
                            }
                            p->gbps = kb_percentile(g, (size_t)ok, 0.5);
                            p->memcpy_gbps = kb_percentile(m, (size_t)ok, 0.5);
                            (*n_pts_p)++;
                        }
                    }
                }
                kb_link_close(&link);
            }
        }
    }
    for (int i = first; i < *n_pts_p; i++) {
        for (int si = 0; si < o->n_block_sizes; si++) {
            if (o->block_sizes[si] == pts[i].block_bytes)
                kb_point_perftest(o, &perf[si], &pts[i]);
        }
        kb_table_row(o, &pts[i]);
    }
    free(perf);
    return rc;
}

int main(int argc, char **argv)
{
    pd_log_init("kvbench");
    signal(SIGPIPE, SIG_IGN);
    kb_opts_t o = {
        .pool_bytes = 512u << 20,
        .block_sizes = {4096, 16384, 65536, 262144, 1u << 20, 4u << 20},
        .n_block_sizes = 6,
        .blocks = {16},
        .n_blocks = 1,
        .layers = {1},
        .n_layers = 1,
        .transports = {"shm", "tcp", "netns"},
        .n_transports = 3,
        .checksum_modes = {0, 1},
        .n_checksum_modes = 2,
        .coalesce_modes = {1},
        .n_coalesce_modes = 1,
        .data_paths = {PD_XFER_DATA_PATH_AUTO},
        .n_data_paths = 1,
        .window = 4,
        .point_bytes = 1024.0 * 1024 * 1024,
        .max_seconds = 3,
        .repeats = 3,
        .perftest = true,
        .perftest_ops = {"tag_bw", "ucp_am_bw", "ucp_put_bw", "stream_bw"},
        .n_perftest_ops = 4,
    };
    if (kb_parse_args(argc, argv, &o) != 0) {
        kb_usage(stderr);
        return 2;
    }
    kb_memcpy_t mc = {.bytes = o.pool_bytes};
    mc.src = kb_pool_alloc(o.pool_bytes, 1);
    mc.dst = kb_pool_alloc(o.pool_bytes, 3);
    if (mc.src == NULL || mc.dst == NULL) {
        fprintf(stderr, "pd-kvbench: cannot allocate two %zu-byte pools for memcpy\n",
                o.pool_bytes);
        return 1;
    }
    /* Every ucx_perftest and receiver this process forks would write-protect these pages
     * (copy-on-write), and the next memcpy would take a fault per page: keep them out of
     * the children. */
    if (madvise(mc.src, o.pool_bytes, MADV_DONTFORK) != 0 ||
        madvise(mc.dst, o.pool_bytes, MADV_DONTFORK) != 0)
        fprintf(stderr, "pd-kvbench: madvise(MADV_DONTFORK): %s (memcpy samples may read low)\n",
                strerror(errno));
    fprintf(stderr, "pd-kvbench: memcpy of uncached data (%zu MiB)...\n", o.pool_bytes >> 20);
    double memcpy_gbps = kb_memcpy_gbps(mc.src, mc.dst, o.pool_bytes, 1u << 20, 3);
    printf("memcpy, uncached, 1 thread: %.3f GB/s at start (pool %zu MiB; each row's vs mem "
           "uses copies taken between its repeats)\n",
           memcpy_gbps, o.pool_bytes >> 20);
    double hash_gbps = kb_hash_gbps(mc.src, o.pool_bytes, 16384, 3);
    printf("xxh3 checksum, uncached, 16 KiB pieces, 1 thread: %.3f GB/s\n", hash_gbps);
    size_t max_points = (size_t)o.n_transports * o.n_block_sizes * o.n_blocks * o.n_layers *
                        o.n_checksum_modes * o.n_coalesce_modes * o.n_data_paths;
    kb_point_t *pts = calloc(max_points ? max_points : 1, sizeof(*pts));
    if (pts == NULL)
        return 1;
    char skipped[KB_MAX_LIST][96];
    int n_pts = 0, n_skipped = 0, rc = 0;
    kb_table_header();
    for (int ti = 0; ti < o.n_transports; ti++) {
        kb_transport_t t;
        const char *why = kb_transport_setup(o.transports[ti], &t);
        if (why != NULL) {
            snprintf(skipped[n_skipped++], 96, "%s: %s", o.transports[ti], why);
            printf("# %s skipped: %s\n", o.transports[ti], why);
            continue;
        }
        if (kb_run_transport(&o, &t, &mc, pts, &n_pts) != 0)
            rc = 1;
        kb_netns_teardown();
    }
    if (o.json_path != NULL &&
        kb_json_write(o.json_path, &o, pts, n_pts, memcpy_gbps, hash_gbps, skipped, n_skipped) != 0)
        rc = 1;
    if (o.plot_path != NULL && n_pts > 0 &&
        kb_plot_write(o.plot_path, pts, n_pts, memcpy_gbps) != 0)
        rc = 1;
    free(pts);
    free(mc.src);
    free(mc.dst);
    return rc;
}
