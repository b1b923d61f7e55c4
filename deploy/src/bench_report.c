/* pdctl bench: the reports: a table on the terminal, every record as JSON, and a PNG
 * drawn by gnuplot in a child process. */
#include "bench_client.h"

#include "pd/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void pd_bench_table_row(FILE *f, const char *name, const pd_bench_dist_t *d, double mul,
                               const char *unit)
{
    /* The unit goes with the name, so that no number stands next to another's unit. */
    char label[64];
    snprintf(label, sizeof(label), "%s (%s)", name, unit);
    if (d->n == 0) {
        fprintf(f, "  %-28s %10s %10s %10s %10s %6s\n", label, "-", "-", "-", "-", "0");
        return;
    }
    fprintf(f, "  %-28s %10.2f %10.2f %10.2f %10.2f %6zu\n", label, d->p50 * mul, d->p90 * mul,
            d->p99 * mul, d->mean * mul, d->n);
}

/* The ideal cache's hit rate, times scale (1 or 100), 0 for no prompt tokens. */
static double pd_bench_ideal_rate(const pd_bench_meta_t *meta, double scale)
{
    return meta->ideal_total_tokens
               ? scale * (double)meta->ideal_hit_tokens / (double)meta->ideal_total_tokens
               : 0.0;
}

/* The workers of one side (0 prefill, 1 decode), each with the requests it served. */
static const pd_bench_place_t *pd_bench_side_places(const pd_bench_summary_t *sum, int side,
                                                    size_t *n_p)
{
    *n_p = side ? sum->n_decode_places : sum->n_prefill_places;
    return side ? sum->decode_places : sum->prefill_places;
}

void pd_bench_report_table(FILE *f, const pd_bench_meta_t *meta, const pd_bench_summary_t *sum)
{
    fprintf(f, "\nbench: %s\n", meta->workload);
    fprintf(f, "  %s %s%s%s\n", strncmp(meta->endpoint, "http", 4) == 0 ? "server" : "router",
            meta->endpoint, meta->trace_path ? ", trace " : "",
            meta->trace_path ? meta->trace_path : "");
    fprintf(f, "  requests %zu: %zu completed, %zu errors, in %.2f s\n", sum->n_requests,
            sum->n_completed, sum->n_errors, sum->duration_s);
    fprintf(f, "  throughput %.2f requests/s, %.1f output tokens/s\n", sum->req_per_s,
            sum->out_tok_per_s);
    fprintf(f,
            "  cache hit rate %.1f%% (%llu of %llu prompt tokens read from cache; %llu "
            "computed, %llu written)\n",
            100.0 * sum->cache_hit_rate, (unsigned long long)sum->cache_read_tokens,
            (unsigned long long)sum->prompt_tokens, (unsigned long long)sum->computed_tokens,
            (unsigned long long)sum->cache_creation_tokens);
    if (meta->have_ideal)
        fprintf(f, "  ideal infinite cache (%s): %.1f%% (%llu of %llu)\n", meta->ideal_what,
                pd_bench_ideal_rate(meta, 100.0), (unsigned long long)meta->ideal_hit_tokens,
                (unsigned long long)meta->ideal_total_tokens);
    for (int side = 0; side < 2; side++) {
        size_t np;
        const pd_bench_place_t *pl = pd_bench_side_places(sum, side, &np);
        if (np == 0)
            continue;
        fprintf(f, "  %s workers:", side ? "decode" : "prefill");
        for (size_t k = 0; k < np; k++)
            fprintf(f, " %s %zu%s", pl[k].worker, pl[k].n, k + 1 < np ? "," : "");
        fprintf(f, "\n");
    }
    if (meta->n_clipped > 0)
        fprintf(f, "  %zu trace prompts clipped by --trace-max-len\n", meta->n_clipped);
    fprintf(f, "  %-28s %10s %10s %10s %10s %6s\n", "", "p50", "p90", "p99", "mean", "n");
    pd_bench_table_row(f, "TTFT client", &sum->ttft_ms, 1, "ms");
    pd_bench_table_row(f, "TTFT server", &sum->server_ttft_ms, 1, "ms");
    pd_bench_table_row(f, "TTFT client, cold", &sum->ttft_cold_ms, 1, "ms");
    pd_bench_table_row(f, "TTFT client, cache hit", &sum->ttft_warm_ms, 1, "ms");
    pd_bench_table_row(f, "TPOT client", &sum->tpot_ms, 1, "ms");
    pd_bench_table_row(f, "TPOT server", &sum->server_tpot_ms, 1, "ms");
    fprintf(f, "  server TTFT, part by part:\n");
    pd_bench_table_row(f, "router queue", &sum->queue_ms, 1, "ms");
    pd_bench_table_row(f, "decode admission", &sum->admission_ms, 1, "ms");
    pd_bench_table_row(f, "prefill queue", &sum->prefill_queue_ms, 1, "ms");
    pd_bench_table_row(f, "prefill compute", &sum->prefill_ms, 1, "ms");
    pd_bench_table_row(f, "exposed transfer", &sum->transfer_ms, 1, "ms");
    pd_bench_table_row(f, "first step", &sum->first_step_ms, 1, "ms");
    pd_bench_table_row(f, "unaccounted", &sum->unaccounted_ms, 1, "ms");
    pd_bench_table_row(f, "unaccounted / TTFT", &sum->unaccounted_share, 100, "%");
    if (sum->prompt_tokens > 0)
        fprintf(f, "  prompt tokens: %.1f%% computed, %.1f%% fetched, %.1f%% cached\n",
                100.0 * (double)sum->computed_tokens / (double)sum->prompt_tokens,
                100.0 * (double)sum->fetched_tokens / (double)sum->prompt_tokens,
                100.0 * (double)(sum->prompt_tokens - sum->computed_tokens - sum->fetched_tokens) /
                    (double)sum->prompt_tokens);
    pd_bench_table_row(f, "transfer / TTFT", &sum->transfer_share, 100, "%");
    pd_bench_table_row(f, "end to end client", &sum->e2e_ms, 1, "ms");
}

/* A number, or null for NaN and infinities (JSON has neither). */
static void pd_bench_jnum(FILE *f, const char *key, double v, bool comma)
{
    if (isfinite(v))
        fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
    else
        fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
}

static void pd_bench_jdist(FILE *f, const char *key, const pd_bench_dist_t *d)
{
    fprintf(f, "    \"%s\": {\"n\": %zu, ", key, d->n);
    pd_bench_jnum(f, "p50", d->p50, true);
    pd_bench_jnum(f, "p90", d->p90, true);
    pd_bench_jnum(f, "p99", d->p99, true);
    pd_bench_jnum(f, "mean", d->mean, false);
    fprintf(f, "},\n");
}

static void pd_bench_jstr(FILE *f, const char *s)
{
    pd_json_fprint_string(f, s, strlen(s));
}

pd_status_t pd_bench_report_json(const char *path, const pd_bench_meta_t *meta,
                                 const pd_bench_summary_t *sum, const pd_bench_rec_t *recs,
                                 size_t n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pdctl: bench: cannot write %s: %s\n", path, strerror(errno));
        return PD_ERR_IO;
    }
    fprintf(f, "{\n  \"meta\": {\"endpoint\": ");
    pd_bench_jstr(f, meta->endpoint);
    fprintf(f, ", \"workload\": ");
    pd_bench_jstr(f, meta->workload);
    fprintf(f, ", \"trace\": ");
    if (meta->trace_path != NULL)
        pd_bench_jstr(f, meta->trace_path);
    else
        fprintf(f, "null");
    fprintf(f, ", \"trace_clipped\": %zu},\n", meta->n_clipped);
    fprintf(f, "  \"summary\": {\n");
    fprintf(f,
            "    \"requests\": %zu, \"completed\": %zu, \"errors\": %zu, \"duration_s\": "
            "%.6g,\n",
            sum->n_requests, sum->n_completed, sum->n_errors, sum->duration_s);
    fprintf(f, "    \"requests_per_s\": %.6g, \"output_tokens_per_s\": %.6g,\n", sum->req_per_s,
            sum->out_tok_per_s);
    fprintf(f,
            "    \"prompt_tokens\": %llu, \"cache_read_input_tokens\": %llu, "
            "\"cache_creation_input_tokens\": %llu, \"input_tokens\": %llu, \"output_tokens\": "
            "%llu,\n",
            (unsigned long long)sum->prompt_tokens, (unsigned long long)sum->cache_read_tokens,
            (unsigned long long)sum->cache_creation_tokens,
            (unsigned long long)sum->computed_tokens, (unsigned long long)sum->output_tokens);
    fprintf(f, "    \"cache_hit_rate\": %.6g,\n", sum->cache_hit_rate);
    if (meta->have_ideal)
        fprintf(f,
                "    \"ideal_cache_hit_rate\": %.6g, \"ideal_cache_hit_tokens\": %llu, "
                "\"ideal_cache_total_tokens\": %llu,\n",
                pd_bench_ideal_rate(meta, 1.0), (unsigned long long)meta->ideal_hit_tokens,
                (unsigned long long)meta->ideal_total_tokens);
    for (int side = 0; side < 2; side++) {
        size_t np;
        const pd_bench_place_t *pl = pd_bench_side_places(sum, side, &np);
        fprintf(f, "    \"%s_workers\": {", side ? "decode" : "prefill");
        for (size_t k = 0; k < np; k++) {
            pd_bench_jstr(f, pl[k].worker);
            fprintf(f, ": %zu%s", pl[k].n, k + 1 < np ? ", " : "");
        }
        fprintf(f, "},\n");
    }
    pd_bench_jdist(f, "ttft_ms", &sum->ttft_ms);
    pd_bench_jdist(f, "server_ttft_ms", &sum->server_ttft_ms);
    pd_bench_jdist(f, "ttft_cold_ms", &sum->ttft_cold_ms);
    pd_bench_jdist(f, "ttft_cache_hit_ms", &sum->ttft_warm_ms);
    pd_bench_jdist(f, "tpot_ms", &sum->tpot_ms);
    pd_bench_jdist(f, "server_tpot_ms", &sum->server_tpot_ms);
    pd_bench_jdist(f, "queue_ms", &sum->queue_ms);
    pd_bench_jdist(f, "prefill_ms", &sum->prefill_ms);
    pd_bench_jdist(f, "transfer_ms", &sum->transfer_ms);
    pd_bench_jdist(f, "transfer_share_of_ttft", &sum->transfer_share);
    pd_bench_jdist(f, "admission_ms", &sum->admission_ms);
    pd_bench_jdist(f, "prefill_queue_ms", &sum->prefill_queue_ms);
    pd_bench_jdist(f, "first_step_ms", &sum->first_step_ms);
    pd_bench_jdist(f, "unaccounted_ms", &sum->unaccounted_ms);
    pd_bench_jdist(f, "unaccounted_share_of_ttft", &sum->unaccounted_share);
    fprintf(f, "    \"fetched_tokens\": %llu,\n", (unsigned long long)sum->fetched_tokens);
    pd_bench_jdist(f, "e2e_ms", &sum->e2e_ms);
    fprintf(f, "    \"complete\": true\n  },\n  \"requests\": [\n");
    for (size_t i = 0; i < n; i++) {
        const pd_bench_rec_t *r = &recs[i];
        fprintf(f, "    {\"index\": %zu, \"prompt_tokens\": %u, \"max_tokens\": %u, ", i,
                r->n_input, r->n_output_req);
        if (r->group != UINT32_MAX)
            fprintf(f, "\"group\": %u, ", r->group);
        fprintf(f, "\"tenant\": %u, \"sent\": %s, ", r->tenant, r->sent ? "true" : "false");
        pd_bench_jnum(f, "sched_ms", r->sched_ms, true);
        pd_bench_jnum(f, "send_ms", r->send_ms, true);
        pd_bench_jnum(f, "ttft_ms", r->n_recv ? r->first_ms - r->send_ms : NAN, true);
        pd_bench_jnum(f, "tpot_ms", pd_bench_rec_tpot_ms(r), true);
        pd_bench_jnum(f, "e2e_ms", r->sent ? r->end_ms - r->send_ms : NAN, true);
        fprintf(f, "\"tokens_received\": %u, ", r->n_recv);
        if (r->finished) {
            fprintf(f, "\"status\": \"done\", \"finish_reason\": \"%s\", ",
                    pd_proto_finish_name(r->finish_reason));
            fprintf(f,
                    "\"usage\": {\"input_tokens\": %u, \"cache_read_input_tokens\": %u, "
                    "\"cache_creation_input_tokens\": %u, \"output_tokens\": %u}, ",
                    r->usage.input_tokens, r->usage.cache_read_input_tokens,
                    r->usage.cache_creation_input_tokens, r->usage.output_tokens);
            fprintf(f, "\"server\": {");
            pd_bench_jnum(f, "queue_ms", r->timings.queue_ms, true);
            pd_bench_jnum(f, "prefill_ms", r->timings.prefill_ms, true);
            pd_bench_jnum(f, "transfer_ms", r->timings.transfer_ms, true);
            pd_bench_jnum(f, "admission_ms", r->timings.admission_ms, true);
            pd_bench_jnum(f, "prefill_queue_ms", r->timings.prefill_queue_ms, true);
            pd_bench_jnum(f, "first_step_ms", r->timings.first_step_ms, true);
            pd_bench_jnum(f, "ttft_ms", r->timings.ttft_ms, true);
            pd_bench_jnum(f, "tpot_ms", r->timings.tpot_ms, true);
            pd_bench_jnum(f, "total_ms", r->timings.total_ms, false);
            fprintf(f, "}, \"prefill_worker\": ");
            pd_bench_jstr(f, r->prefill_worker);
            fprintf(f, ", \"decode_worker\": ");
            pd_bench_jstr(f, r->decode_worker);
        } else if (r->error != PD_OK) {
            fprintf(f, "\"status\": \"error\", \"error\": \"%s\", \"message\": ",
                    pd_status_name(r->error));
            pd_bench_jstr(f, r->error_msg);
        } else {
            fprintf(f, "\"status\": \"not_sent\"");
        }
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "pdctl: bench: writing %s failed\n", path);
        return PD_ERR_IO;
    }
    return PD_OK;
}

/* True when an executable named name is on PATH. */
static bool pd_bench_on_path(const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    char *copy = strdup(path);
    bool found = false;
    if (copy == NULL)
        return false;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir != NULL && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char full[PATH_MAX];
        if (snprintf(full, sizeof(full), "%s/%s", dir[0] ? dir : ".", name) < (int)sizeof(full))
            found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void pd_bench_plot_cdf(FILE *f, const char *block, double *v, size_t n)
{
    pd_bench_sort(v, n);
    fprintf(f, "$%s << EOD\n", block);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%.6g %.6g\n", v[i], (double)(i + 1) / (double)n);
    if (n == 0)
        fprintf(f, "0 0\n");
    fprintf(f, "EOD\n");
}

pd_status_t pd_bench_gnuplot(const char *path, pd_bench_gnuplot_write_t write, const void *ctx)
{
    if (strpbrk(path, "'\"\n\\") != NULL) {
        fprintf(stderr, "pdctl: bench: --plot path must not hold quotes or backslashes\n");
        return PD_ERR_INVALID_PARAM;
    }
    if (!pd_bench_on_path("gnuplot")) {
        fprintf(stderr, "pdctl: bench: warning: gnuplot not found on PATH; no plot written\n");
        return PD_ERR_UNSUPPORTED;
    }
    pd_status_t status = PD_ERR_IO;
    char script[] = "/tmp/pdctl-bench-XXXXXX";
    FILE *f = NULL;
    int fd = mkstemp(script);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "pdctl: bench: cannot write a gnuplot script: %s\n", strerror(errno));
        goto out;
    }
    fd = -1;
    status = write(f, path, ctx);
    if (fclose(f) != 0 && status == PD_OK)
        status = PD_ERR_IO;
    f = NULL;
    if (status != PD_OK)
        goto out;
    status = PD_ERR_IO;
    pid_t pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
        status = PD_OK;
    else
        fprintf(stderr, "pdctl: bench: gnuplot failed (script %s kept)\n", script);
out:
    if (f != NULL)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (status == PD_OK)
        unlink(script);
    return status;
}

typedef struct pd_bench_plot_recs {
    const pd_bench_rec_t *recs;
    size_t n;
} pd_bench_plot_recs_t;

static pd_status_t pd_bench_plot_recs_write(FILE *f, const char *path, const void *ctx)
{
    const pd_bench_plot_recs_t *pr = ctx;
    const pd_bench_rec_t *recs = pr->recs;
    size_t n = pr->n;
    double *ttft = malloc((n ? n : 1) * sizeof(double));
    double *tpot = malloc((n ? n : 1) * sizeof(double));
    if (ttft == NULL || tpot == NULL) {
        free(ttft);
        free(tpot);
        return PD_ERR_NO_MEMORY;
    }
    size_t n_ttft = 0, n_tpot = 0;
    fprintf(f, "$req << EOD\n");
    for (size_t i = 0; i < n; i++) {
        const pd_bench_rec_t *r = &recs[i];
        if (!r->finished || r->n_recv == 0)
            continue;
        double t = r->first_ms - r->send_ms;
        double p = pd_bench_rec_tpot_ms(r);
        ttft[n_ttft++] = t;
        if (isfinite(p))
            tpot[n_tpot++] = p;
        fprintf(f, "%.6g %.6g %.6g %.6g %.6g %.6g\n", r->send_ms / 1000.0, t, r->timings.ttft_ms,
                r->timings.queue_ms, r->timings.prefill_ms, r->timings.transfer_ms);
    }
    if (n_ttft == 0)
        fprintf(f, "0 0 0 0 0 0\n");
    fprintf(f, "EOD\n");
    pd_bench_plot_cdf(f, "ttft", ttft, n_ttft);
    pd_bench_plot_cdf(f, "tpot", tpot, n_tpot);
    fprintf(f,
            "set terminal pngcairo size 1400,1000 noenhanced\n"
            "set output '%s'\n"
            "set multiplot layout 2,2 title 'pdctl bench (%zu completed requests)'\n"
            "set grid\n"
            "set key top left opaque box\n"
            "set title 'TTFT over the run'\nset xlabel 'send time (s)'\nset ylabel 'ms'\n"
            "set yrange [0:*]\n"
            "plot $req using 1:2 with points pt 7 ps 0.6 title 'TTFT (client)', "
            "$req using 1:3 with points pt 6 ps 0.6 title 'TTFT (server)'\n"
            "set title 'TTFT CDF (client)'\nset xlabel 'ms'\nset ylabel 'fraction'\n"
            "set yrange [0:1]\n"
            "plot $ttft using 1:2 with steps lw 2 title 'TTFT'\n"
            "set title 'TPOT CDF (client)'\n"
            "plot $tpot using 1:2 with steps lw 2 title 'TPOT'\n"
            "set yrange [0:*]\n"
            "set title 'server TTFT parts'\nset xlabel 'send time (s)'\nset ylabel 'ms'\n"
            "plot $req using 1:4 with points pt 7 ps 0.5 title 'queue', "
            "$req using 1:5 with points pt 7 ps 0.5 title 'prefill', "
            "$req using 1:6 with points pt 7 ps 0.5 title 'transfer'\n"
            "unset multiplot\n",
            path, n_ttft);
    free(ttft);
    free(tpot);
    return PD_OK;
}

pd_status_t pd_bench_report_plot(const char *path, const pd_bench_rec_t *recs, size_t n)
{
    pd_bench_plot_recs_t pr = {recs, n};
    return pd_bench_gnuplot(path, pd_bench_plot_recs_write, &pr);
}
