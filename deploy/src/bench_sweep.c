/* pdctl bench --rates: the same workload at several Poisson rates against TTFT and TPOT
 * objectives, reported as SLO attainment and goodput per rate, the highest rate that
 * keeps at least 90% of requests within both, as a table, JSON and a PNG. */
#include "bench_client.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The attainment a rate must reach to count as served. */
#define PD_BENCH_SWEEP_ATTAINMENT 0.9

int pd_bench_sweep_table(FILE *f, const pd_bench_sweep_row_t *rows, size_t n, double slo_ttft_ms,
                         double slo_tpot_ms)
{
    int best = -1;
    fprintf(f, "\nrate sweep, objectives TTFT <= %g ms, TPOT <= %g ms (0: not checked)\n",
            slo_ttft_ms, slo_tpot_ms);
    fprintf(f, "  %8s %11s %12s %8s %8s %10s %10s %10s\n", "rate/s", "attainment", "goodput/s",
            "done", "refused", "TTFT p50", "TTFT p90", "TPOT p50");
    for (size_t i = 0; i < n; i++) {
        const pd_bench_sweep_row_t *r = &rows[i];
        fprintf(f, "  %8.3g %10.1f%% %12.3f %8zu %8zu %10.1f %10.1f %10.2f\n", r->rate_per_s,
                100.0 * r->slo.attainment, r->slo.goodput, r->sum.n_completed, r->slo.n_refused,
                r->sum.ttft_ms.p50, r->sum.ttft_ms.p90, r->sum.tpot_ms.p50);
        if (r->slo.attainment >= PD_BENCH_SWEEP_ATTAINMENT &&
            (best < 0 || r->rate_per_s > rows[best].rate_per_s))
            best = (int)i;
    }
    if (best >= 0)
        fprintf(f, "  highest rate with >= 90%% attainment: %g/s, goodput %.3f requests/s\n",
                rows[best].rate_per_s, rows[best].slo.goodput);
    else
        fprintf(f, "  no rate reached 90%% attainment\n");
    return best;
}

pd_status_t pd_bench_sweep_json(const char *path, const pd_bench_sweep_row_t *rows, size_t n,
                                double slo_ttft_ms, double slo_tpot_ms, int best)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pdctl: bench: cannot write %s\n", path);
        return PD_ERR_IO;
    }
    fprintf(f, "{\n  \"slo_ttft_ms\": %g,\n  \"slo_tpot_ms\": %g,\n", slo_ttft_ms, slo_tpot_ms);
    if (best >= 0)
        fprintf(f, "  \"max_rate_90\": %g,\n  \"goodput_at_max_rate_90\": %.6g,\n",
                rows[best].rate_per_s, rows[best].slo.goodput);
    else
        fprintf(f, "  \"max_rate_90\": null,\n  \"goodput_at_max_rate_90\": null,\n");
    fprintf(f, "  \"rates\": [\n");
    for (size_t i = 0; i < n; i++) {
        const pd_bench_sweep_row_t *r = &rows[i];
        fprintf(f,
                "    {\"rate\": %g, \"requests\": %zu, \"completed\": %zu, \"errors\": %zu, "
                "\"refused\": %zu, \"met\": %zu, \"attainment\": %.6g, \"goodput\": %.6g, "
                "\"duration_s\": %.6g",
                r->rate_per_s, r->sum.n_requests, r->sum.n_completed, r->sum.n_errors,
                r->slo.n_refused, r->slo.n_met, r->slo.attainment, r->slo.goodput,
                r->sum.duration_s);
        const double v[] = {r->sum.ttft_ms.p50, r->sum.ttft_ms.p90, r->sum.tpot_ms.p50,
                            r->sum.tpot_ms.p90};
        const char *k[] = {"ttft_p50_ms", "ttft_p90_ms", "tpot_p50_ms", "tpot_p90_ms"};
        for (size_t j = 0; j < 4; j++) {
            if (isfinite(v[j]))
                fprintf(f, ", \"%s\": %.6g", k[j], v[j]);
            else
                fprintf(f, ", \"%s\": null", k[j]);
        }
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? PD_OK : PD_ERR_IO;
}

typedef struct pd_bench_sweep_plot_ctx {
    const pd_bench_sweep_row_t *rows;
    size_t n;
    double slo_ttft_ms, slo_tpot_ms;
} pd_bench_sweep_plot_ctx_t;

static pd_status_t pd_bench_sweep_write(FILE *f, const char *path, const void *ctx)
{
    const pd_bench_sweep_plot_ctx_t *c = ctx;
    fprintf(f, "$rows << EOD\n");
    for (size_t i = 0; i < c->n; i++)
        fprintf(f, "%.6g %.6g %.6g\n", c->rows[i].rate_per_s, 100.0 * c->rows[i].slo.attainment,
                c->rows[i].slo.goodput);
    fprintf(f, "EOD\n");
    fprintf(
        f,
        "set terminal pngcairo size 1000,600 noenhanced\n"
        "set output '%s'\n"
        "set title 'SLO attainment and goodput (TTFT <= %g ms, TPOT <= %g ms)'\n"
        "set grid\nset key bottom left opaque box\n"
        "set xlabel 'offered rate (requests/s)'\n"
        "set ylabel 'attainment (%%)'\nset yrange [0:105]\n"
        "set y2label 'goodput (requests/s)'\nset y2range [0:*]\nset y2tics\nset ytics nomirror\n"
        "plot $rows using 1:2 with linespoints lw 2 pt 7 title 'attainment', "
        "90 with lines dt 2 lc rgb 'gray' title '90%%', "
        "$rows using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'goodput'\n",
        path, c->slo_ttft_ms, c->slo_tpot_ms);
    return PD_OK;
}

pd_status_t pd_bench_sweep_plot(const char *path, const pd_bench_sweep_row_t *rows, size_t n,
                                double slo_ttft_ms, double slo_tpot_ms)
{
    pd_bench_sweep_plot_ctx_t c = {rows, n, slo_ttft_ms, slo_tpot_ms};
    return pd_bench_gnuplot(path, pd_bench_sweep_write, &c);
}
