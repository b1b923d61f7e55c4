/* pdctl bench's pure parts: trace parsing and scaling, arrivals, percentiles, prompt
 * tokens, the ideal cache and the summary. */
#include "bench_lib.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pd_status_t parse(const char *line, pd_bench_trace_req_t *req, char *err)
{
    return pd_bench_trace_parse_line(line, strlen(line), 7, req, err, 256);
}

Test(bench_trace, parses_a_mooncake_line)
{
    pd_bench_trace_req_t req;
    char err[256] = "";
    cr_assert_eq(parse("{\"timestamp\": 1500, \"input_length\": 1100, \"output_length\": 6, "
                       "\"hash_ids\": [0, 1, 46]}",
                       &req, err),
                 PD_OK, "%s", err);
    cr_assert_float_eq(req.timestamp_ms, 1500.0, 1e-9);
    cr_assert_eq(req.input_length, 1100);
    cr_assert_eq(req.output_length, 6);
    cr_assert_eq(req.n_hash_ids, 3);
    cr_assert_eq(req.hash_ids[2], 46);
    cr_assert_eq(req.line, 7);
    free(req.hash_ids);
}

Test(bench_trace, rejects_malformed_lines_with_a_reason)
{
    static const struct {
        const char *line;
        const char *why;
    } cases[] = {
        {"{\"timestamp\": 0, \"input_length\": 10", "not JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{\"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}", "timestamp"},
        {"{\"timestamp\": -5, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}",
         "timestamp"},
        {"{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 1, \"hash_ids\": []}",
         "input_length"},
        {"{\"timestamp\": 0, \"input_length\": 10.5, \"output_length\": 1, \"hash_ids\": [1]}",
         "input_length"},
        {"{\"timestamp\": 0, \"input_length\": 10, \"hash_ids\": [1]}", "output_length"},
        {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": 3}",
         "hash_ids: missing"},
        {"{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 1, \"hash_ids\": [1, 2]}",
         "needs 3"},
        {"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [-1]}",
         "hash_ids[0]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pd_bench_trace_req_t req;
        memset(&req, 0xab, sizeof(req));
        char err[256] = "";
        cr_assert_eq(parse(cases[i].line, &req, err), PD_ERR_FORMAT, "case %zu", i);
        cr_assert(strstr(err, cases[i].why) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                  cases[i].why);
        cr_assert_eq(req.input_length, 0xabababab, "case %zu touched req", i);
    }
}

static const char *pd_test_trace =
    "{\"timestamp\": 100, \"input_length\": 1536, \"output_length\": 20, \"hash_ids\": [1, 2, "
    "3]}\n"
    "\n"
    "this is not json\n"
    "{\"timestamp\": 300, \"input_length\": 1280, \"output_length\": 3, \"hash_ids\": [1, 2, "
    "4]}\n"
    "{\"timestamp\": 350, \"input_length\": 1280, \"output_length\": 3, \"hash_ids\": [1]}\n"
    "{\"timestamp\": 600, \"input_length\": 1024, \"output_length\": 8, \"hash_ids\": [5, "
    "2]}\r\n";

Test(bench_trace, skips_bad_lines_and_reports_their_numbers)
{
    FILE *in = fmemopen((void *)pd_test_trace, strlen(pd_test_trace), "r");
    char *warn_buf = NULL;
    size_t warn_len = 0;
    FILE *warn = open_memstream(&warn_buf, &warn_len);
    pd_bench_trace_t trace;
    char err[256] = "";
    cr_assert_eq(pd_bench_trace_read(in, 0, 10, warn, &trace, err, sizeof(err)), PD_OK, "%s", err);
    fclose(warn);
    fclose(in);
    cr_assert_eq(trace.n_reqs, 3);
    cr_assert_eq(trace.n_bad_lines, 2);
    cr_assert_eq(trace.n_lines, 6);
    cr_assert_eq(trace.reqs[0].line, 1);
    cr_assert_eq(trace.reqs[1].line, 4);
    cr_assert_eq(trace.reqs[2].line, 6);
    cr_assert(strstr(warn_buf, "line 3 skipped: not JSON") != NULL, "%s", warn_buf);
    cr_assert(strstr(warn_buf, "line 5 skipped: hash_ids has 1 ids") != NULL, "%s", warn_buf);
    free(warn_buf);
    pd_bench_trace_cleanup(&trace);
    cr_assert_null(trace.reqs);
}

Test(bench_trace, refuses_a_trace_past_max_bad_and_honours_limit)
{
    FILE *in = fmemopen((void *)pd_test_trace, strlen(pd_test_trace), "r");
    pd_bench_trace_t trace;
    char err[256] = "";
    cr_assert_eq(pd_bench_trace_read(in, 0, 1, NULL, &trace, err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "line 5") != NULL, "%s", err);
    fclose(in);

    in = fmemopen((void *)pd_test_trace, strlen(pd_test_trace), "r");
    cr_assert_eq(pd_bench_trace_read(in, 2, 0, NULL, &trace, err, sizeof(err)), PD_ERR_FORMAT,
                 "line 3 is bad and max_bad is 0");
    fclose(in);

    in = fmemopen((void *)pd_test_trace, strlen(pd_test_trace), "r");
    cr_assert_eq(pd_bench_trace_read(in, 1, 0, NULL, &trace, err, sizeof(err)), PD_OK);
    cr_assert_eq(trace.n_reqs, 1);
    pd_bench_trace_cleanup(&trace);
    fclose(in);

    const char *empty = "\n\n";
    in = fmemopen((void *)empty, strlen(empty), "r");
    cr_assert_eq(pd_bench_trace_read(in, 0, 0, NULL, &trace, err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "no valid request") != NULL, "%s", err);
    fclose(in);
}

/* Build items from a trace text with 64 tokens per hash id (512 / 8). */
static size_t load_items(const char *text, double time_scale, uint32_t max_len, uint32_t n_tenants,
                         pd_bench_trace_t *trace, pd_bench_item_t *items)
{
    FILE *in = fmemopen((void *)text, strlen(text), "r");
    char err[256] = "";
    cr_assert_eq(pd_bench_trace_read(in, 0, 100, NULL, trace, err, sizeof(err)), PD_OK, "%s", err);
    fclose(in);
    pd_bench_trace_scale_t sc = {.len_scale = 8,
                                 .time_scale = time_scale,
                                 .block_tokens = 64,
                                 .max_len = max_len,
                                 .n_tenants = n_tenants,
                                 .seed = 3};
    return pd_bench_trace_items(trace, &sc, items);
}

Test(bench_trace, scales_lengths_blocks_and_time)
{
    pd_bench_trace_t trace;
    pd_bench_item_t items[8];
    cr_assert_eq(load_items(pd_test_trace, 2.0, 0, 1, &trace, items), 0);
    /* 1536 = 3 full blocks -> 192 tokens; 20 / 8 -> 3 output tokens. */
    cr_assert_eq(items[0].n_input, 192);
    cr_assert_eq(items[0].last_block_tokens, 64);
    cr_assert_eq(items[0].n_output, 3);
    cr_assert_float_eq(items[0].arrival_ms, 0.0, 1e-9);
    /* 1280 = 2 full + 256 -> 64 + 64 + 32. */
    cr_assert_eq(items[1].n_input, 160);
    cr_assert_eq(items[1].last_block_tokens, 32);
    cr_assert_eq(items[1].n_output, 1);
    cr_assert_float_eq(items[1].arrival_ms, 400.0, 1e-9);
    cr_assert_float_eq(items[2].arrival_ms, 1000.0, 1e-9);
    pd_bench_trace_cleanup(&trace);
}

Test(bench_trace, clips_to_max_len_keeping_leading_blocks)
{
    pd_bench_trace_t trace;
    pd_bench_item_t items[8];
    /* 192 + 3 > 100: keep 97 prompt tokens = one block of 64 and 33 of the next. */
    cr_assert_eq(load_items(pd_test_trace, 1.0, 100, 1, &trace, items), 3);
    cr_assert_eq(items[0].n_input, 97);
    cr_assert_eq(items[0].n_blocks, 2);
    cr_assert_eq(items[0].last_block_tokens, 33);
    cr_assert_eq(items[0].n_input + items[0].n_output, 100);
    pd_bench_trace_cleanup(&trace);
}

Test(bench_ideal_cache, counts_prefix_chain_hits_in_tokens)
{
    const char *text =
        /* A: 3 full blocks, 192 tokens, all new */
        "{\"timestamp\": 0, \"input_length\": 1536, \"output_length\": 1, \"hash_ids\": [1, 2, "
        "3]}\n"
        /* B: 64 + 64 + 32; blocks 1 and 2 hit (128) */
        "{\"timestamp\": 1, \"input_length\": 1280, \"output_length\": 1, \"hash_ids\": [1, 2, "
        "4]}\n"
        /* C: id 2 after another prefix is a different chain: no hit, 128 tokens */
        "{\"timestamp\": 2, \"input_length\": 1024, \"output_length\": 1, \"hash_ids\": [5, "
        "2]}\n"
        /* D: 64 + 64 + ceil(100 * 64 / 512) = 13; all of it hits (141) */
        "{\"timestamp\": 3, \"input_length\": 1124, \"output_length\": 1, \"hash_ids\": [1, 2, "
        "3]}\n"
        /* E: id 6 first seen partial (40 -> 5 tokens) ... */
        "{\"timestamp\": 4, \"input_length\": 552, \"output_length\": 1, \"hash_ids\": [1, "
        "6]}\n"
        /* F: ... then full: 64 + min(64, 5) = 69 of 128 hit */
        "{\"timestamp\": 5, \"input_length\": 1024, \"output_length\": 1, \"hash_ids\": [1, "
        "6]}\n";
    pd_bench_trace_t trace;
    pd_bench_item_t items[8];
    load_items(text, 1.0, 0, 1, &trace, items);
    cr_assert_eq(trace.n_reqs, 6);
    cr_assert_eq(items[3].n_input, 141);
    cr_assert_eq(items[4].n_input, 69);
    uint64_t hit = 0, total = 0;
    cr_assert_eq(pd_bench_ideal_cache(items, 6, &hit, &total), PD_OK);
    cr_assert_eq(total, 192 + 160 + 128 + 141 + 69 + 128);
    cr_assert_eq(hit, 0 + 128 + 0 + 141 + 64 + 69);

    /* The same requests under two tenants: D's twin from the other tenant misses. */
    items[3].tenant = 1;
    cr_assert_eq(pd_bench_ideal_cache(items, 6, &hit, &total), PD_OK);
    cr_assert_eq(hit, 0 + 128 + 0 + 0 + 64 + 69);
    pd_bench_trace_cleanup(&trace);
}

Test(bench_ideal_cache, many_distinct_blocks_grow_the_table)
{
    enum { N = 5000 };
    static uint64_t ids[N];
    static pd_bench_item_t items[2];
    for (int i = 0; i < N; i++)
        ids[i] = (uint64_t)i * 7919u;
    for (int k = 0; k < 2; k++)
        items[k] = (pd_bench_item_t){.n_input = N * 16,
                                     .block_ids = ids,
                                     .n_blocks = N,
                                     .block_tokens = 16,
                                     .last_block_tokens = 16,
                                     .group = UINT32_MAX};
    uint64_t hit, total;
    cr_assert_eq(pd_bench_ideal_cache(items, 2, &hit, &total), PD_OK);
    cr_assert_eq(total, 2u * N * 16);
    cr_assert_eq(hit, (uint64_t)N * 16);
}

Test(bench_arrivals, poisson_is_deterministic_and_has_the_right_rate)
{
    enum { N = 20000 };
    static double a[N], b[N], c[N];
    pd_bench_poisson_arrivals(50.0, 42, N, a);
    pd_bench_poisson_arrivals(50.0, 42, N, b);
    pd_bench_poisson_arrivals(50.0, 43, N, c);
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_neq(memcmp(a, c, sizeof(a)), 0);
    cr_assert_gt(a[0], 0.0);
    for (int i = 1; i < N; i++)
        cr_assert_geq(a[i], a[i - 1]);
    /* Mean gap 20 ms: within 3% over 20000 gaps (the standard error is 0.7%). */
    double mean_gap = a[N - 1] / N;
    cr_assert(fabs(mean_gap - 20.0) < 0.6, "mean gap %g ms", mean_gap);
    /* Exponential gaps: about e^-1 of them exceed the mean. */
    int longer = 0;
    for (int i = 1; i < N; i++)
        longer += (a[i] - a[i - 1]) > 20.0;
    cr_assert(fabs((double)longer / N - exp(-1.0)) < 0.02, "%d longer", longer);

    pd_bench_poisson_arrivals(0.0, 42, 5, a);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(a[i], 0.0);
}

Test(bench_percentile, interpolates_between_ranks)
{
    double v[] = {5, 1, 4, 2, 3};
    pd_bench_sort(v, 5);
    cr_assert_eq(v[0], 1.0);
    cr_assert_eq(v[4], 5.0);
    cr_assert_float_eq(pd_bench_percentile(v, 5, 50), 3.0, 1e-12);
    cr_assert_float_eq(pd_bench_percentile(v, 5, 0), 1.0, 1e-12);
    cr_assert_float_eq(pd_bench_percentile(v, 5, 100), 5.0, 1e-12);
    cr_assert_float_eq(pd_bench_percentile(v, 5, 25), 2.0, 1e-12);
    cr_assert_float_eq(pd_bench_percentile(v, 5, 90), 4.6, 1e-12);
    double w[100];
    for (int i = 0; i < 100; i++)
        w[i] = i + 1;
    cr_assert_float_eq(pd_bench_percentile(w, 100, 99), 99.01, 1e-9);
    cr_assert_float_eq(pd_bench_percentile(w, 100, 50), 50.5, 1e-9);
    double one = 7;
    cr_assert_float_eq(pd_bench_percentile(&one, 1, 99), 7.0, 1e-12);
    cr_assert(isnan(pd_bench_percentile(NULL, 0, 50)));
}

Test(bench_workload, shared_prefixes_are_equal_token_runs)
{
    pd_bench_workload_t wl = {.n_requests = 64,
                              .rate_per_s = 10,
                              .prompt_min = 100,
                              .prompt_max = 200,
                              .output_min = 4,
                              .output_max = 4,
                              .shared_prefix_tokens = 80,
                              .prefix_groups = 3,
                              .n_tenants = 2,
                              .seed = 9};
    pd_bench_item_t items[64], again[64];
    pd_bench_workload_make(&wl, items);
    pd_bench_workload_make(&wl, again);
    cr_assert_eq(memcmp(items, again, sizeof(items)), 0, "same seed, same workload");
    int32_t a[200], b[200];
    int seen_groups[3] = {0};
    int same_group_pairs = 0, other_group_pairs = 0;
    for (uint32_t i = 0; i < 64; i++) {
        cr_assert_geq(items[i].n_input, 100);
        cr_assert_leq(items[i].n_input, 200);
        cr_assert_eq(items[i].n_prefix, 80);
        cr_assert_lt(items[i].group, 3);
        cr_assert_lt(items[i].tenant, 2);
        seen_groups[items[i].group]++;
        pd_bench_item_tokens(&items[i], i, wl.seed, a);
        for (uint32_t t = 0; t < items[i].n_input; t++)
            cr_assert(a[t] >= PD_BENCH_TOKEN_MIN &&
                      a[t] < PD_BENCH_TOKEN_MIN + PD_BENCH_TOKEN_SPAN);
        uint32_t j = (i + 1) % 64;
        pd_bench_item_tokens(&items[j], j, wl.seed, b);
        bool prefix_equal = memcmp(a, b, 80 * sizeof(int32_t)) == 0;
        cr_assert_eq(prefix_equal, items[i].group == items[j].group, "requests %u and %u", i, j);
        same_group_pairs += prefix_equal;
        other_group_pairs += !prefix_equal;
        /* Past the prefix the prompts differ. */
        cr_assert_neq(memcmp(a + 80, b + 80, 16 * sizeof(int32_t)), 0);
    }
    cr_assert(same_group_pairs > 0 && other_group_pairs > 0);
    for (int g = 0; g < 3; g++)
        cr_assert_gt(seen_groups[g], 5, "group %d drawn %d times", g, seen_groups[g]);
    double t[64];
    pd_bench_poisson_arrivals(10, 9, 64, t);
    cr_assert_float_eq(items[63].arrival_ms, t[63], 1e-9);
}

Test(bench_workload, equal_hash_ids_give_equal_blocks)
{
    uint64_t ids_a[] = {10, 11, 12};
    uint64_t ids_b[] = {10, 11, 13};
    pd_bench_item_t a = {.n_input = 64 + 64 + 20,
                         .block_ids = ids_a,
                         .n_blocks = 3,
                         .block_tokens = 64,
                         .last_block_tokens = 20,
                         .group = UINT32_MAX};
    pd_bench_item_t b = a;
    b.block_ids = ids_b;
    b.n_input = 64 + 64 + 64;
    b.last_block_tokens = 64;
    int32_t ta[192], tb[192], tc[192];
    pd_bench_item_tokens(&a, 0, 1, ta);
    pd_bench_item_tokens(&b, 1, 1, tb);
    cr_assert_eq(memcmp(ta, tb, 128 * sizeof(int32_t)), 0);
    cr_assert_neq(memcmp(ta + 128, tb + 128, 20 * sizeof(int32_t)), 0);
    /* A partial block is the prefix of the full block with the same id. */
    b.block_ids = ids_a;
    pd_bench_item_tokens(&b, 1, 1, tc);
    cr_assert_eq(memcmp(ta, tc, 148 * sizeof(int32_t)), 0);
    /* Another seed, other tokens. */
    pd_bench_item_tokens(&a, 0, 2, tc);
    cr_assert_neq(memcmp(ta, tc, 64 * sizeof(int32_t)), 0);
}

Test(bench_summary, aggregates_records)
{
    pd_bench_rec_t r[4];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 3; i++) {
        r[i].sent = r[i].finished = true;
        r[i].send_ms = 100.0 * i;
        r[i].first_ms = r[i].send_ms + 10.0 * (i + 1); /* TTFT 10, 20, 30 */
        r[i].n_recv = 5;
        r[i].last_ms = r[i].first_ms + 4 * 2.0; /* TPOT 2 */
        r[i].end_ms = r[i].last_ms + 1;
        r[i].n_input = 100;
        r[i].usage.output_tokens = 5;
        r[i].usage.cache_read_input_tokens = i == 2 ? 64 : 0;
        r[i].timings.ttft_ms = 10.0 * (i + 1);
        r[i].timings.transfer_ms = 0.5 * (i + 1); /* share 5% each */
        /* Parts of 2, 4, 6 ms besides transfer: 7.5, 15, 22.5 of 10, 20, 30 accounted. */
        r[i].timings.queue_ms = 1.0 * (i + 1);
        r[i].timings.admission_ms = 0.5 * (i + 1);
        r[i].timings.prefill_queue_ms = 0.25 * (i + 1);
        r[i].timings.prefill_ms = 4.0 * (i + 1);
        r[i].timings.first_step_ms = 0.25 * (i + 1);
    }
    r[3].sent = true;
    r[3].send_ms = 50;
    r[3].end_ms = 500;
    r[3].error = PD_ERR_TIMEOUT;
    pd_bench_summary_t s;
    cr_assert_eq(pd_bench_summarize(r, 4, &s), PD_OK);
    cr_assert_eq(s.n_completed, 3);
    cr_assert_eq(s.n_errors, 1);
    cr_assert_float_eq(s.duration_s, 0.5, 1e-9);
    cr_assert_float_eq(s.req_per_s, 6.0, 1e-9);
    cr_assert_float_eq(s.out_tok_per_s, 30.0, 1e-9);
    cr_assert_float_eq(s.cache_hit_rate, 64.0 / 300.0, 1e-12);
    cr_assert_float_eq(s.ttft_ms.p50, 20.0, 1e-9);
    cr_assert_float_eq(s.tpot_ms.p50, 2.0, 1e-9);
    cr_assert_float_eq(s.transfer_share.p50, 0.05, 1e-12);
    cr_assert_float_eq(s.unaccounted_ms.p50, 7.0, 1e-9); /* 3.5, 7, 10.5 */
    cr_assert_float_eq(s.unaccounted_share.p90, 0.35, 1e-9);
    cr_assert_float_eq(s.admission_ms.p50, 1.0, 1e-9);
    cr_assert_float_eq(s.prefill_queue_ms.p50, 0.5, 1e-9);
    cr_assert_float_eq(s.first_step_ms.p50, 0.5, 1e-9);
    cr_assert_eq(s.ttft_cold_ms.n, 2);
    cr_assert_float_eq(s.ttft_cold_ms.p50, 15.0, 1e-9);
    cr_assert_eq(s.ttft_warm_ms.n, 1);
    cr_assert_float_eq(s.ttft_warm_ms.p50, 30.0, 1e-9);
}

Test(bench_ideal_cache, shared_prefix_groups_hit_whole_blocks)
{
    pd_bench_item_t it[5];
    memset(it, 0, sizeof(it));
    /* group 0 twice, group 1 once, group 0 from another tenant, no group */
    uint32_t groups[5] = {0, 1, 0, 0, UINT32_MAX};
    uint32_t prefix[5] = {40, 50, 70, 70, 0};
    uint32_t tenant[5] = {0, 0, 0, 1, 0};
    for (int i = 0; i < 5; i++)
        it[i] = (pd_bench_item_t){
            .n_input = 100, .group = groups[i], .n_prefix = prefix[i], .tenant = tenant[i]};
    uint64_t hit, total;
    pd_bench_ideal_cache_groups(it, 5, 16, &hit, &total);
    cr_assert_eq(total, 500);
    /* Request 2 shares min(40, 70) = 40 tokens with request 0: 2 whole blocks. */
    cr_assert_eq(hit, 32);
    /* Once 70 tokens were seen, a later 70-token prefix hits 4 blocks. */
    it[4] = (pd_bench_item_t){.n_input = 100, .group = 0, .n_prefix = 70, .tenant = 0};
    pd_bench_ideal_cache_groups(it, 5, 16, &hit, &total);
    cr_assert_eq(hit, 32 + 64);
}

Test(bench_summary, counts_requests_per_worker)
{
    pd_bench_rec_t r[3];
    memset(r, 0, sizeof(r));
    const char *pw[3] = {"prefill-0", "prefill-1", "prefill-0"};
    for (int i = 0; i < 3; i++) {
        r[i].sent = r[i].finished = true;
        snprintf(r[i].prefill_worker, sizeof(r[i].prefill_worker), "%s", pw[i]);
        snprintf(r[i].decode_worker, sizeof(r[i].decode_worker), "decode-0");
    }
    pd_bench_summary_t s;
    cr_assert_eq(pd_bench_summarize(r, 3, &s), PD_OK);
    cr_assert_eq(s.n_prefill_places, 2);
    cr_assert_str_eq(s.prefill_places[0].worker, "prefill-0");
    cr_assert_eq(s.prefill_places[0].n, 2);
    cr_assert_eq(s.prefill_places[1].n, 1);
    cr_assert_eq(s.n_decode_places, 1);
    cr_assert_eq(s.decode_places[0].n, 3);
}

Test(bench_slo, counts_requests_within_both_objectives)
{
    pd_bench_rec_t r[5];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 4; i++) {
        r[i].sent = r[i].finished = true;
        r[i].send_ms = 0;
        r[i].n_recv = 3;
    }
    r[0].first_ms = 100, r[0].last_ms = 120; /* TTFT 100, TPOT 10: within */
    r[1].first_ms = 300, r[1].last_ms = 320; /* TTFT 300: misses TTFT */
    r[2].first_ms = 100, r[2].last_ms = 200; /* TPOT 50: misses TPOT */
    r[3].first_ms = 200, r[3].last_ms = 200; /* TTFT 200 exactly, TPOT 0: within */
    r[4].sent = true;
    r[4].error = PD_ERR_OVERLOADED; /* refused: a miss */
    pd_bench_slo_t s;
    pd_bench_slo_eval(r, 5, 2.0, 200, 20, &s);
    cr_assert_eq(s.n_met, 2);
    cr_assert_eq(s.n_refused, 1);
    cr_assert_float_eq(s.attainment, 0.4, 1e-12);
    cr_assert_float_eq(s.goodput, 1.0, 1e-12);
    /* An objective of 0 is not checked. */
    pd_bench_slo_eval(r, 5, 2.0, 0, 20, &s);
    cr_assert_eq(s.n_met, 3);
}

Test(bench_slo, parses_a_rate_list)
{
    double v[4];
    cr_assert_eq(pd_bench_parse_rates("0.5,1,2", v, 4), 3);
    cr_assert_float_eq(v[0], 0.5, 1e-12);
    cr_assert_float_eq(v[2], 2.0, 1e-12);
    cr_assert_eq(pd_bench_parse_rates("1,,2", v, 4), 0);
    cr_assert_eq(pd_bench_parse_rates("1,2,", v, 4), 0);
    cr_assert_eq(pd_bench_parse_rates("0,1", v, 4), 0);
    cr_assert_eq(pd_bench_parse_rates("1,x", v, 4), 0);
    cr_assert_eq(pd_bench_parse_rates("1,2,3,4,5", v, 4), 0);
}
