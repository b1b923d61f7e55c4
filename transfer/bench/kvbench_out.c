/* pd-kvbench: the table, the JSON and the plot. */
#include "kvbench_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The fastest ucx_perftest operation of a point, in GB/s (0 when none ran). */
static double kb_best_gbps(const kb_point_t *p)
{
    return p->best_op >= 0 ? p->perftest_gbps[p->best_op] : 0.0;
}

void kb_table_header(void)
{
    printf("%-6s %6s %6s %6s %3s %4s %3s %8s %5s %9s %10s %10s  %-10s %8s %6s %6s\n", "xport",
           "block", "blocks", "layers", "ck", "path", "co", "batches", "ops/b", "GB/s", "p50 us",
           "p99 us", "best op", "op GB/s", "vs op", "vs mem");
}

void kb_table_row(const kb_opts_t *o, const kb_point_t *p)
{
    char b[32], vs_op[16] = "-", vs_mem[16] = "-";
    double best = kb_best_gbps(p);
    /* Without a comparison point (--no-perftest, or no memcpy figure) there is no ratio:
     * "-", never "0%". */
    if (best > 0)
        snprintf(vs_op, sizeof(vs_op), "%.0f%%", 100.0 * p->gbps / best);
    if (p->memcpy_gbps > 0)
        snprintf(vs_mem, sizeof(vs_mem), "%.0f%%", 100.0 * p->gbps / p->memcpy_gbps);
    char best_str[16] = "-";
    if (best > 0)
        snprintf(best_str, sizeof(best_str), "%.3f", best);
    printf("%-6s %6s %6u %6u %3s %4s %3s %8llu %5llu %9.3f %10.1f %10.1f  %-10s %8s %6s %6s\n",
           p->transport, kb_size_str(p->block_bytes, b, sizeof(b)), p->blocks, p->layers,
           p->checksum ? "on" : "off", pd_xfer_data_path_name(p->data_path),
           p->coalesce ? "on" : "off", (unsigned long long)p->batches,
           (unsigned long long)p->ops_per_batch, p->gbps, p->p50_us, p->p99_us,
           p->best_op >= 0 ? o->perftest_ops[p->best_op] : "-", best_str, vs_op, vs_mem);
    fflush(stdout);
}

int kb_json_write(const char *path, const kb_opts_t *o, const kb_point_t *pts, int n,
                  double memcpy_gbps, double hash_gbps, char skipped[][96], int n_skipped)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pd-kvbench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"pool_bytes\": %zu,\n  \"window\": %u,\n  \"repeats\": %d,\n", o->pool_bytes,
            o->window, o->repeats);
    fprintf(f, "  \"perftest_tests\": [");
    for (int k = 0; k < o->n_perftest_ops; k++)
        fprintf(f, "%s\"%s\"", k ? ", " : "", o->perftest_ops[k]);
    fprintf(f, "],\n  \"memcpy_uncached_gbps_at_start\": %.4f,\n", memcpy_gbps);
    fprintf(f, "  \"xxh3_uncached_gbps\": %.4f,\n", hash_gbps);
    fprintf(f, "  \"skipped\": [");
    for (int i = 0; i < n_skipped; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", skipped[i]);
    fprintf(f, "],\n  \"points\": [\n");
    for (int i = 0; i < n; i++) {
        const kb_point_t *p = &pts[i];
        double best = kb_best_gbps(p);
        fprintf(f,
                "    {\"transport\": \"%s\", \"block_bytes\": %zu, \"blocks\": %u, "
                "\"layers\": %u, \"checksum\": %s, \"data_path\": \"%s\", \"coalesce\": %s, "
                "\"batches\": %llu, \"failed\": %llu, \"ops_per_batch\": %llu, \"gbps\": %.4f, "
                "\"p50_us\": %.2f, \"p99_us\": %.2f, \"perftest_gbps\": {",
                p->transport, p->block_bytes, p->blocks, p->layers, p->checksum ? "true" : "false",
                pd_xfer_data_path_name(p->data_path), p->coalesce ? "true" : "false",
                (unsigned long long)p->batches, (unsigned long long)p->failed,
                (unsigned long long)p->ops_per_batch, p->gbps, p->p50_us, p->p99_us);
        for (int k = 0; k < o->n_perftest_ops; k++)
            fprintf(f, "%s\"%s\": %.4f", k ? ", " : "", o->perftest_ops[k], p->perftest_gbps[k]);
        /* No comparison point: the ratio is null, not 0. */
        char r_op[32] = "null", r_mem[32] = "null";
        if (best > 0)
            snprintf(r_op, sizeof(r_op), "%.4f", p->gbps / best);
        if (p->memcpy_gbps > 0)
            snprintf(r_mem, sizeof(r_mem), "%.4f", p->gbps / p->memcpy_gbps);
        fprintf(f,
                "}, \"best_op\": \"%s\", \"best_op_gbps\": %.4f, \"ratio_best_op\": %s, "
                "\"memcpy_gbps\": %.4f, \"ratio_memcpy\": %s}%s\n",
                p->best_op >= 0 ? o->perftest_ops[p->best_op] : "", best, r_op, p->memcpy_gbps,
                r_mem, i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    return 0;
}

/* One gnuplot series per (transport, checksum, data path, coalesce, blocks, layers) over
 * block size, the best ucx_perftest operation per transport, and the memcpy line. */
int kb_plot_write(const char *path, const kb_point_t *pts, int n, double memcpy_gbps)
{
    char data_path[] = "/tmp/pd-kvbench-XXXXXX";
    int fd = mkstemp(data_path);
    if (fd < 0)
        return -1;
    FILE *d = fdopen(fd, "w");
    char titles[64][112];
    int n_series = 0;
    bool used[1024] = {0};
    for (int i = 0; i < n && i < 1024; i++) {
        if (used[i])
            continue;
        const kb_point_t *a = &pts[i];
        snprintf(titles[n_series], sizeof(titles[0]), "%s %s ck=%s co=%s %ux%u", a->transport,
                 pd_xfer_data_path_name(a->data_path), a->checksum ? "on" : "off",
                 a->coalesce ? "on" : "off", a->blocks, a->layers);
        for (int j = i; j < n && j < 1024; j++) {
            const kb_point_t *b = &pts[j];
            if (strcmp(a->transport, b->transport) == 0 && a->checksum == b->checksum &&
                a->data_path == b->data_path && a->coalesce == b->coalesce &&
                a->blocks == b->blocks && a->layers == b->layers) {
                fprintf(d, "%zu %.4f\n", b->block_bytes, b->gbps);
                used[j] = true;
            }
        }
        fprintf(d, "\n\n");
        if (++n_series == 56)
            break;
    }
    /* The best perftest operation per transport, one point per block size. */
    int first_pt = n_series;
    char pt_names[8][16];
    int n_pt = 0;
    for (int i = 0; i < n && n_pt < 8; i++) {
        bool seen = false;
        for (int k = 0; k < n_pt; k++)
            seen |= strcmp(pt_names[k], pts[i].transport) == 0;
        if (seen || kb_best_gbps(&pts[i]) <= 0)
            continue;
        snprintf(pt_names[n_pt++], 16, "%s", pts[i].transport);
        size_t last = 0;
        for (;;) {
            size_t next = SIZE_MAX;
            double gbps = 0;
            for (int j = 0; j < n; j++) {
                if (strcmp(pts[j].transport, pts[i].transport) == 0 && kb_best_gbps(&pts[j]) > 0 &&
                    pts[j].block_bytes > last && pts[j].block_bytes < next) {
                    next = pts[j].block_bytes;
                    gbps = kb_best_gbps(&pts[j]);
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
    fprintf(g, "set terminal png size 1200,650\nset output '%s'\n", path);
    fprintf(g, "set title 'pd-kvbench: fabric bandwidth over block size'\n");
    fprintf(g, "set termoption noenhanced\nset logscale xy 2\n");
    fprintf(g, "set xlabel 'block size (bytes)'\nset ylabel 'GB/s (log scale)'\n");
    fprintf(g, "set key outside right\nset grid\n");
    fprintf(g, "plot ");
    for (int s = 0; s < n_series; s++)
        fprintf(g, "%s'%s' index %d using 1:2 with linespoints title '%s'", s ? ", " : "",
                data_path, s, titles[s]);
    for (int k = 0; k < n_pt; k++)
        fprintf(g,
                ", '%s' index %d using 1:2 with lines dashtype 2 lw 2 title 'best ucx_perftest "
                "op, %s'",
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
