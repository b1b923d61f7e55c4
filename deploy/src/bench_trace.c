/* pdctl bench: Mooncake-format JSONL traces (timestamp ms, input_length, output_length,
 * hash_ids with one id per 512-token block), read strictly and scaled to requests. */
#include "bench_lib.h"

#include "pd/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static pd_status_t pd_bench_trace_fail(char *err, size_t err_bytes, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pd_status_t pd_bench_trace_fail(char *err, size_t err_bytes, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && err_bytes > 0)
        vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
    return PD_ERR_FORMAT;
}

static bool pd_bench_trace_uint(const pd_json_t *obj, const char *key, uint64_t max,
                                uint64_t *value_p)
{
    uint64_t u;
    if (!pd_json_u64(pd_json_object_get(obj, key), &u) || u > max)
        return false;
    *value_p = u;
    return true;
}

pd_status_t pd_bench_trace_parse_line(const char *line, size_t len, uint32_t line_no,
                                      pd_bench_trace_req_t *req, char *err, size_t err_bytes)
{
    pd_json_doc_t *doc = NULL;
    uint64_t *ids = NULL;
    pd_status_t status;
    if (len > PD_BENCH_TRACE_MAX_LINE_BYTES)
        return pd_bench_trace_fail(err, err_bytes, "line longer than %u bytes",
                                   PD_BENCH_TRACE_MAX_LINE_BYTES);
    status = pd_json_parse(line, len, NULL, &doc);
    if (status != PD_OK) {
        status = pd_bench_trace_fail(err, err_bytes, "not JSON: %s", pd_json_last_error());
        goto out;
    }
    const pd_json_t *root = pd_json_doc_root(doc);
    status = PD_ERR_FORMAT;
    if (pd_json_type(root) != PD_JSON_OBJECT) {
        pd_bench_trace_fail(err, err_bytes, "not a JSON object");
        goto out;
    }
    double ts;
    if (!pd_json_number(pd_json_object_get(root, "timestamp"), &ts) || !isfinite(ts) || ts < 0) {
        pd_bench_trace_fail(err, err_bytes, "timestamp: missing or not a number >= 0");
        goto out;
    }
    uint64_t in_len, out_len;
    if (!pd_bench_trace_uint(root, "input_length", PD_BENCH_TRACE_MAX_INPUT, &in_len) ||
        in_len == 0) {
        pd_bench_trace_fail(err, err_bytes, "input_length: missing or not an integer in 1..%u",
                            PD_BENCH_TRACE_MAX_INPUT);
        goto out;
    }
    if (!pd_bench_trace_uint(root, "output_length", PD_BENCH_TRACE_MAX_OUTPUT, &out_len)) {
        pd_bench_trace_fail(err, err_bytes, "output_length: missing or not an integer in 0..%u",
                            PD_BENCH_TRACE_MAX_OUTPUT);
        goto out;
    }
    const pd_json_t *arr = pd_json_object_get(root, "hash_ids");
    if (pd_json_type(arr) != PD_JSON_ARRAY) {
        pd_bench_trace_fail(err, err_bytes, "hash_ids: missing or not an array");
        goto out;
    }
    size_t n = pd_json_len(arr);
    uint64_t want =
        (in_len + PD_BENCH_TRACE_SRC_BLOCK_TOKENS - 1) / PD_BENCH_TRACE_SRC_BLOCK_TOKENS;
    if (n != want) {
        pd_bench_trace_fail(err, err_bytes,
                            "hash_ids has %zu ids but input_length %llu needs %llu (one per "
                            "%u tokens)",
                            n, (unsigned long long)in_len, (unsigned long long)want,
                            PD_BENCH_TRACE_SRC_BLOCK_TOKENS);
        goto out;
    }
    ids = malloc(n * sizeof(uint64_t));
    if (ids == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pd_json_u64(pd_json_array_at(arr, i), &ids[i])) {
            pd_bench_trace_fail(err, err_bytes, "hash_ids[%zu]: not a non-negative integer", i);
            goto out;
        }
    }
    req->timestamp_ms = ts;
    req->input_length = (uint32_t)in_len;
    req->output_length = (uint32_t)out_len;
    req->hash_ids = ids;
    req->n_hash_ids = (uint32_t)n;
    req->line = line_no;
    ids = NULL;
    status = PD_OK;
out:
    free(ids);
    pd_json_doc_destroy(&doc);
    return status;
}

static bool pd_bench_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

pd_status_t pd_bench_trace_read(FILE *f, size_t limit, size_t max_bad, FILE *warn,
                                pd_bench_trace_t *trace, char *err, size_t err_bytes)
{
    char *line = NULL;
    size_t line_cap = 0;
    pd_status_t status = PD_ERR_NO_MEMORY;
    memset(trace, 0, sizeof(*trace));
    size_t cap = 0;
    ssize_t got;
    while ((limit == 0 || trace->n_reqs < limit) && (got = getline(&line, &line_cap, f)) >= 0) {
        trace->n_lines++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (pd_bench_blank(line, len))
            continue;
        if (trace->n_reqs == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            pd_bench_trace_req_t *r = realloc(trace->reqs, ncap * sizeof(*r));
            if (r == NULL)
                goto fail;
            trace->reqs = r;
            cap = ncap;
        }
        char why[256];
        pd_status_t st = pd_bench_trace_parse_line(line, len, (uint32_t)trace->n_lines,
                                                   &trace->reqs[trace->n_reqs], why, sizeof(why));
        if (st == PD_ERR_NO_MEMORY)
            goto fail;
        if (st != PD_OK) {
            trace->n_bad_lines++;
            if (warn != NULL)
                fprintf(warn, "pdctl: bench: trace line %zu skipped: %s\n", trace->n_lines, why);
            if (trace->n_bad_lines > max_bad) {
                status = pd_bench_trace_fail(err, err_bytes,
                                             "more than %zu malformed lines (the last at "
                                             "line %zu: %s); refusing the trace",
                                             max_bad, trace->n_lines, why);
                goto fail;
            }
            continue;
        }
        trace->n_reqs++;
    }
    if (trace->n_reqs == 0) {
        status =
            pd_bench_trace_fail(err, err_bytes, "no valid request in %zu lines", trace->n_lines);
        goto fail;
    }
    free(line);
    return PD_OK;
fail:
    free(line);
    pd_bench_trace_cleanup(trace);
    return status;
}

void pd_bench_trace_cleanup(pd_bench_trace_t *trace)
{
    for (size_t i = 0; i < trace->n_reqs; i++)
        free(trace->reqs[i].hash_ids);
    free(trace->reqs);
    trace->reqs = NULL;
    trace->n_reqs = 0;
}

size_t pd_bench_trace_items(const pd_bench_trace_t *trace, const pd_bench_trace_scale_t *sc,
                            pd_bench_item_t *items)
{
    pd_bench_rng_t rng;
    pd_bench_rng_seed(&rng, sc->seed ^ 0x74656e616e74ull /* "tenant" */);
    size_t n_clipped = 0;
    double t0 = trace->n_reqs ? trace->reqs[0].timestamp_ms : 0;
    for (size_t i = 0; i < trace->n_reqs; i++) {
        const pd_bench_trace_req_t *r = &trace->reqs[i];
        pd_bench_item_t *it = &items[i];
        memset(it, 0, sizeof(*it));
        double dt = r->timestamp_ms - t0;
        it->arrival_ms = (dt > 0 ? dt : 0) * sc->time_scale;
        it->group = UINT32_MAX;
        it->block_ids = r->hash_ids;
        it->n_blocks = r->n_hash_ids;
        it->block_tokens = sc->block_tokens;
        uint32_t src_last = r->input_length - (r->n_hash_ids - 1) * PD_BENCH_TRACE_SRC_BLOCK_TOKENS;
        uint64_t last =
            ((uint64_t)src_last * sc->block_tokens + PD_BENCH_TRACE_SRC_BLOCK_TOKENS - 1) /
            PD_BENCH_TRACE_SRC_BLOCK_TOKENS;
        it->last_block_tokens = last < 1 ? 1 : (uint32_t)last;
        it->n_input = (r->n_hash_ids - 1) * sc->block_tokens + it->last_block_tokens;
        double out = ceil((double)r->output_length / sc->len_scale);
        it->n_output =
            out < 1 ? 1 : (out > PD_PROTO_MAX_NEW_TOKENS ? PD_PROTO_MAX_NEW_TOKENS : (uint32_t)out);
        it->tenant = pd_bench_rng_range(&rng, 0, sc->n_tenants ? sc->n_tenants - 1 : 0);
        it->src_line = r->line;
        if (sc->max_len > 0 && it->n_input + it->n_output > sc->max_len) {
            /* Keep whole leading blocks: the clipped prompt is a prefix of the original,
             * so the trace's sharing survives. */
            if (it->n_output >= sc->max_len)
                it->n_output = sc->max_len / 2 ? sc->max_len / 2 : 1;
            uint32_t keep = sc->max_len - it->n_output;
            if (keep < 1)
                keep = 1;
            if (keep >= it->n_input)
                continue;
            uint32_t n_blocks = (keep + sc->block_tokens - 1) / sc->block_tokens;
            it->n_blocks = n_blocks;
            it->last_block_tokens = keep - (n_blocks - 1) * sc->block_tokens;
            it->n_input = keep;
            n_clipped++;
        }
    }
    return n_clipped;
}
