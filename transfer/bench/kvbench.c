/* pd-kvbench: the transfer fabric's microbenchmark.
 *
 * Two processes, one sending and one receiving (forked; descriptors cross a socketpair),
 * move fresh data from pools larger than the caches (512 MiB each by default, walked
 * block range by block range) and report bandwidth and per-batch latency over block
 * size, blocks per batch, layers and transport, beside ucx_perftest's figure for the
 * same transport and size from the same run, and a memcpy of uncached data. */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- output ---- */

static void kb_table_header(void)
{
    printf("%-6s %6s %6s %6s %3s %3s %8s %5s %9s %10s %10s %10s %7s\n", "xport", "block", "blocks",
           "layers", "ck", "co", "batches", "ops/b", "GB/s", "p50 us", "p99 us", "perftest",
           "ratio");
}

static void kb_table_row(const kb_point_t *p)
{
    char b[32];
    printf("%-6s %6s %6u %6u %3s %3s %8llu %5llu %9.3f %10.1f %10.1f %10.3f %6.0f%%\n",
           p->transport, kb_size_str(p->block_bytes, b, sizeof(b)), p->blocks, p->layers,
           p->checksum ? "on" : "off", p->coalesce ? "on" : "off", (unsigned long long)p->batches,
           (unsigned long long)p->ops_per_batch, p->gbps, p->p50_us, p->p99_us, p->perftest_gbps,
           p->perftest_gbps > 0 ? 100.0 * p->gbps / p->perftest_gbps : 0.0);
    fflush(stdout);
}

static int kb_json_write(const char *path, const kb_opts_t *o, const kb_point_t *pts, int n,
                         double memcpy_gbps, double hash_gbps, char skipped[][96], int n_skipped)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pd-kvbench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"pool_bytes\": %zu,\n  \"window\": %u,\n  \"repeats\": %d,\n", o->pool_bytes,
            o->window, o->repeats);
    fprintf(f, "  \"perftest_test\": \"%s\",\n  \"memcpy_uncached_gbps\": %.4f,\n",
            o->perftest_test, memcpy_gbps);
    fprintf(f, "  \"xxh3_uncached_gbps\": %.4f,\n", hash_gbps);
    fprintf(f, "  \"skipped\": [");
    for (int i = 0; i < n_skipped; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", skipped[i]);
    fprintf(f, "],\n  \"points\": [\n");
    for (int i = 0; i < n; i++) {
        const kb_point_t *p = &pts[i];
        fprintf(f,
                "    {\"transport\": \"%s\", \"block_bytes\": %zu, \"blocks\": %u, "
                "\"layers\": %u, \"checksum\": %s, \"coalesce\": %s, \"batches\": %llu, "
                "\"failed\": %llu, \"ops_per_batch\": %llu, \"gbps\": %.4f, \"p50_us\": %.2f, "
                "\"p99_us\": %.2f, \"perftest_gbps\": %.4f, \"ratio_perftest\": %.4f, "
                "\"ratio_memcpy\": %.4f}%s\n",
                p->transport, p->block_bytes, p->blocks, p->layers, p->checksum ? "true" : "false",
                p->coalesce ? "true" : "false", (unsigned long long)p->batches,
                (unsigned long long)p->failed, (unsigned long long)p->ops_per_batch, p->gbps,
                p->p50_us, p->p99_us, p->perftest_gbps,
                p->perftest_gbps > 0 ? p->gbps / p->perftest_gbps : 0.0,
                memcpy_gbps > 0 ? p->gbps / memcpy_gbps : 0.0, i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    return 0;
}

/* One gnuplot series per (transport, checksum, coalesce, blocks, layers) over block size,
 * plus ucx_perftest per transport and the memcpy line. */
static int kb_plot_write(const char *path, const kb_point_t *pts, int n, double memcpy_gbps)
{
    char data_path[] = "/tmp/pd-kvbench-XXXXXX";
    int fd = mkstemp(data_path);
    if (fd < 0)
        return -1;
    FILE *d = fdopen(fd, "w");
    char titles[64][96];
    int n_series = 0;
    bool used[1024] = {0};
    for (int i = 0; i < n && i < 1024; i++) {
        if (used[i])
            continue;
        const kb_point_t *a = &pts[i];
        snprintf(titles[n_series], sizeof(titles[0]), "%s ck=%s co=%s %ux%u", a->transport,
                 a->checksum ? "on" : "off", a->coalesce ? "on" : "off", a->blocks, a->layers);
        for (int j = i; j < n && j < 1024; j++) {
            const kb_point_t *b = &pts[j];
            if (strcmp(a->transport, b->transport) == 0 && a->checksum == b->checksum &&
                a->coalesce == b->coalesce && a->blocks == b->blocks && a->layers == b->layers) {
                fprintf(d, "%zu %.4f\n", b->block_bytes, b->gbps);
                used[j] = true;
            }
        }
        fprintf(d, "\n\n");
        if (++n_series == 60)
            break;
    }
    /* perftest series: one per transport. */
    int first_pt = n_series;
    char pt_names[8][16];
    int n_pt = 0;
    for (int i = 0; i < n && n_pt < 8; i++) {
        bool seen = false;
        for (int k = 0; k < n_pt; k++)
            seen |= strcmp(pt_names[k], pts[i].transport) == 0;
        if (seen || pts[i].perftest_gbps <= 0)
            continue;
        snprintf(pt_names[n_pt++], 16, "%s", pts[i].transport);
        /* One point per block size, in increasing order (the sweep repeats sizes). */
        size_t last = 0;
        for (;;) {
            size_t next = SIZE_MAX;
            double gbps = 0;
            for (int j = 0; j < n; j++) {
                if (strcmp(pts[j].transport, pts[i].transport) == 0 && pts[j].perftest_gbps > 0 &&
                    pts[j].block_bytes > last && pts[j].block_bytes < next) {
                    next = pts[j].block_bytes;
                    gbps = pts[j].perftest_gbps;
                }
            }
            if (next == SIZE_MAX)
                break;
            fprintf(d, "%zu %.4f\n", next, gbps);
            last = next;
        }
        fprintf(d, "\n\n");
    }
    fclose(d);
    char script_path[] = "/tmp/pd-kvbench-gp-XXXXXX";
    fd = mkstemp(script_path);
    if (fd < 0) {
        unlink(data_path);
        return -1;
    }
    FILE *g = fdopen(fd, "w");
    fprintf(g, "set terminal png size 1100,650\nset output '%s'\n", path);
    fprintf(g, "set title 'pd-kvbench: fabric bandwidth over block size'\n");
    fprintf(g, "set termoption noenhanced\nset logscale xy 2\n");
    fprintf(g, "set xlabel 'block size (bytes)'\nset ylabel 'GB/s (log scale)'\n");
    fprintf(g, "set key outside right\nset grid\n");
    fprintf(g, "plot ");
    for (int s = 0; s < n_series; s++)
        fprintf(g, "%s'%s' index %d using 1:2 with linespoints title '%s'", s ? ", " : "",
                data_path, s, titles[s]);
    for (int k = 0; k < n_pt; k++)
        fprintf(g, ", '%s' index %d using 1:2 with lines dashtype 2 lw 2 title 'ucx_perftest %s'",
                data_path, first_pt + k, pt_names[k]);
    if (memcpy_gbps > 0)
        fprintf(g, ", %.4f with lines dashtype 3 lw 2 title 'memcpy, uncached'", memcpy_gbps);
    fprintf(g, "\n");
    fclose(g);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "gnuplot %s", script_path);
    int rc = system(cmd);
    unlink(data_path);
    unlink(script_path);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "pd-kvbench: gnuplot failed\n");
        return -1;
    }
    return 0;
}

/* ---- main ---- */

static void kb_usage(FILE *f)
{
    fprintf(
        f, "usage: pd-kvbench [options]\n"
           "\n"
           "Moves KV blocks between two processes through the transfer fabric (one sends,\n"
           "one receives) and reports bandwidth and batch latency beside ucx_perftest for\n"
           "the same transport and size, and a memcpy of uncached data.\n"
           "\n"
           "  --transports LIST   shm,tcp,netns (default shm,tcp,netns; netns needs root and\n"
           "                      is skipped with a reason otherwise)\n"
           "  --block-sizes LIST  bytes of one block in one layer (default 4K,16K,64K,256K,1M,4M)\n"
           "  --blocks LIST       blocks per batch (default 16)\n"
           "  --layers LIST       layers per batch, posted one by one (default 1)\n"
           "  --checksum MODE     on, off or both (default both)\n"
           "  --coalesce MODE     on, off or both (default on)\n"
           "  --pool BYTES        pool per side (default 512M; data cycles through it)\n"
           "  --bytes BYTES       data per point and repeat (default 1G)\n"
           "  --max-seconds S     time cap per point and repeat (default 3)\n"
           "  --repeats N         repeats per point; the median is reported (default 3)\n"
           "  --window N          batches in flight (default 4)\n"
           "  --perftest-test T   ucx_perftest test (default ucp_put_bw; the fabric puts)\n"
           "  --no-perftest       skip ucx_perftest\n"
           "  --json FILE         write the results as JSON\n"
           "  --plot FILE.png     plot bandwidth over block size with gnuplot\n"
           "  -h, --help          this text\n"
           "\n"
           "Progress goes to stderr, the table to stdout. GB/s are 1e9 bytes per second.\n");
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
            o->perftest_test = optarg;
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
        .window = 4,
        .point_bytes = 1024.0 * 1024 * 1024,
        .max_seconds = 3,
        .repeats = 3,
        .perftest = true,
        .perftest_test = "ucp_put_bw",
    };
    if (kb_parse_args(argc, argv, &o) != 0) {
        kb_usage(stderr);
        return 2;
    }
    uint8_t *pool = kb_pool_alloc(o.pool_bytes, 1); /* (pool_bytes) memcpy source */
    if (pool == NULL) {
        fprintf(stderr, "pd-kvbench: cannot allocate a %zu-byte pool\n", o.pool_bytes);
        return 1;
    }
    fprintf(stderr, "pd-kvbench: memcpy of uncached data (%zu MiB)...\n", o.pool_bytes >> 20);
    double memcpy_gbps = kb_memcpy_gbps(pool, o.pool_bytes, 1u << 20, 3);
    printf("memcpy, uncached, 1 thread: %.3f GB/s (pool %zu MiB)\n", memcpy_gbps,
           o.pool_bytes >> 20);
    double hash_gbps = kb_hash_gbps(pool, o.pool_bytes, 16384, 3);
    printf("xxh3 checksum, uncached, 16 KiB pieces, 1 thread: %.3f GB/s\n", hash_gbps);
    free(pool);
    pool = NULL;
    size_t max_points = (size_t)o.n_transports * o.n_block_sizes * o.n_blocks * o.n_layers *
                        o.n_checksum_modes * o.n_coalesce_modes;
    kb_point_t *pts = calloc(max_points ? max_points : 1, sizeof(*pts));
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
        double perftest_cache[KB_MAX_LIST] = {0};
        for (int ci = 0; ci < o.n_checksum_modes; ci++) {
            for (int oi = 0; oi < o.n_coalesce_modes; oi++) {
                kb_link_t link;
                bool ck = o.checksum_modes[ci], co = o.coalesce_modes[oi];
                if (kb_link_open(&link, &t, ck, co, o.pool_bytes, o.register_pool) != 0) {
                    fprintf(stderr, "pd-kvbench: %s: cannot connect the two processes\n", t.name);
                    kb_link_close(&link);
                    rc = 1;
                    continue;
                }
                /* Warm-up, not reported: one pass over the whole pool faults in the
                 * sender's mapping of the receiver's pool (shared memory maps lazily). */
                kb_opts_t warm_o = o;
                warm_o.point_bytes = (double)o.pool_bytes;
                warm_o.max_seconds = 60;
                kb_point_t warm = {.block_bytes = 1u << 20, .blocks = 4, .layers = 1};
                double warm_gbps = 0;
                if (o.pool_bytes >= 4u << 20)
                    kb_run_point(&link, &warm_o, &warm, &warm_gbps);
                char tl[128] = "";
                pd_xfer_peer_transports(link.peer, tl, sizeof(tl));
                fprintf(stderr, "pd-kvbench: %s (checksum %s, coalesce %s): UCX uses %s\n", t.name,
                        ck ? "on" : "off", co ? "on" : "off", tl);
                for (int si = 0; si < o.n_block_sizes; si++) {
                    for (int bi = 0; bi < o.n_blocks; bi++) {
                        for (int li = 0; li < o.n_layers; li++) {
                            kb_point_t *p = &pts[n_pts];
                            memset(p, 0, sizeof(*p));
                            snprintf(p->transport, sizeof(p->transport), "%s", t.name);
                            p->block_bytes = o.block_sizes[si];
                            p->blocks = o.blocks[bi];
                            p->layers = o.layers[li];
                            p->checksum = ck;
                            p->coalesce = co;
                            double g[15];
                            int ok = 0;
                            for (int r = 0; r < o.repeats; r++) {
                                char b[32];
                                fprintf(stderr, "  %s %s x%u x%u ck=%d co=%d rep %d/%d\r", t.name,
                                        kb_size_str(p->block_bytes, b, sizeof(b)), p->blocks,
                                        p->layers, ck, co, r + 1, o.repeats);
                                if (kb_run_point(&link, &o, p, &g[ok]) == 0)
                                    ok++;
                            }
                            fprintf(stderr, "\n");
                            if (ok == 0) {
                                fprintf(stderr, "pd-kvbench: point failed or does not fit "
                                                "the pool\n");
                                continue;
                            }
                            p->gbps = kb_percentile(g, (size_t)ok, 0.5);
                            p->memcpy_gbps = memcpy_gbps;
                            if (o.perftest) {
                                if (perftest_cache[si] == 0) {
                                    fprintf(stderr, "  ucx_perftest %s -s %zu ...\n",
                                            o.perftest_test, p->block_bytes);
                                    perftest_cache[si] = kb_perftest_gbps(&o, &t, p->block_bytes);
                                }
                                p->perftest_gbps = perftest_cache[si];
                            }
                            kb_table_row(p);
                            n_pts++;
                        }
                    }
                }
                kb_link_close(&link);
            }
        }
        kb_netns_teardown();
    }
    if (o.json_path != NULL &&
        kb_json_write(o.json_path, &o, pts, n_pts, memcpy_gbps, hash_gbps, skipped, n_skipped) != 0)
        rc = 1;
    if (o.plot_path != NULL && n_pts > 0 &&
        kb_plot_write(o.plot_path, pts, n_pts, memcpy_gbps) != 0)
        rc = 1;
    free(pts);
    free(pool);
    return rc;
}
