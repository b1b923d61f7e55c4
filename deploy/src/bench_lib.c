/* pdctl bench, the pure parts: random numbers, arrivals, workloads, prompt tokens, the
 * ideal cache and the summary statistics. */
#include "bench_lib.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pd_bench_rng_seed(pd_bench_rng_t *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t pd_bench_rng_next(pd_bench_rng_t *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double pd_bench_rng_uniform(pd_bench_rng_t *rng)
{
    /* 53 random bits: every double in [0, 1) on a 2^-53 grid. */
    return (double)(pd_bench_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint32_t pd_bench_rng_range(pd_bench_rng_t *rng, uint32_t lo, uint32_t hi)
{
    uint64_t span = (uint64_t)hi - lo + 1;
    return lo + (uint32_t)(pd_bench_rng_next(rng) % span);
}

void pd_bench_poisson_arrivals(double rate_per_s, uint64_t seed, size_t n, double *t_ms)
{
    pd_bench_rng_t rng;
    pd_bench_rng_seed(&rng, seed ^ 0x61727269766c73ull /* "arrivls" */);
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        if (rate_per_s > 0) {
            /* 1 - u is in (0, 1], so the log is finite. */
            double u = pd_bench_rng_uniform(&rng);
            t += -log(1.0 - u) / rate_per_s * 1000.0;
        }
        t_ms[i] = t;
    }
}

static int pd_bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void pd_bench_sort(double *values, size_t n)
{
    if (n > 1)
        qsort(values, n, sizeof(double), pd_bench_cmp_double);
}

double pd_bench_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)rank;
    double frac = rank - (double)lo;
    if (lo + 1 >= n)
        return sorted[n - 1];
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

void pd_bench_workload_make(const pd_bench_workload_t *wl, pd_bench_item_t *items)
{
    double *t = malloc((wl->n_requests ? wl->n_requests : 1) * sizeof(double));
    pd_bench_rng_t rng;
    pd_bench_rng_seed(&rng, wl->seed);
    if (t != NULL)
        pd_bench_poisson_arrivals(wl->rate_per_s, wl->seed, wl->n_requests, t);
    for (uint32_t i = 0; i < wl->n_requests; i++) {
        pd_bench_item_t *it = &items[i];
        memset(it, 0, sizeof(*it));
        it->arrival_ms = t != NULL ? t[i] : 0;
        it->n_input = pd_bench_rng_range(&rng, wl->prompt_min, wl->prompt_max);
        it->n_output = pd_bench_rng_range(&rng, wl->output_min, wl->output_max);
        it->group = UINT32_MAX;
        uint32_t g = pd_bench_rng_range(&rng, 0, wl->prefix_groups ? wl->prefix_groups - 1 : 0);
        if (wl->shared_prefix_tokens > 0 && it->n_input > 1) {
            it->group = g;
            it->n_prefix =
                wl->shared_prefix_tokens < it->n_input ? wl->shared_prefix_tokens : it->n_input - 1;
        }
        it->tenant = pd_bench_rng_range(&rng, 0, wl->n_tenants ? wl->n_tenants - 1 : 0);
    }
    free(t);
}

/* n pseudo-random token ids in the byte tokenizer's range, a pure function of key. */
static void pd_bench_fill_tokens(uint64_t key, int32_t *tokens, uint32_t n)
{
    pd_bench_rng_t rng;
    pd_bench_rng_seed(&rng, key);
    uint64_t bits = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            bits = pd_bench_rng_next(&rng);
        tokens[i] = PD_BENCH_TOKEN_MIN + (int32_t)(bits & 0xff);
        bits >>= 8;
    }
}

static uint64_t pd_bench_mix(uint64_t a, uint64_t b)
{
    pd_bench_rng_t rng;
    pd_bench_rng_seed(&rng, a * 0xff51afd7ed558ccdull ^ b);
    return pd_bench_rng_next(&rng);
}

void pd_bench_item_tokens(const pd_bench_item_t *item, uint32_t idx, uint64_t seed, int32_t *tokens)
{
    if (item->block_ids != NULL) {
        uint32_t pos = 0;
        for (uint32_t b = 0; b < item->n_blocks && pos < item->n_input; b++) {
            uint32_t len = b + 1 == item->n_blocks ? item->last_block_tokens : item->block_tokens;
            if (len > item->n_input - pos)
                len = item->n_input - pos;
            /* A partial block is a prefix of the full block with the same id. */
            pd_bench_fill_tokens(pd_bench_mix(seed ^ 0x74726163ull, item->block_ids[b]),
                                 tokens + pos, len);
            pos += len;
        }
        if (pos < item->n_input)
            pd_bench_fill_tokens(pd_bench_mix(seed, 0x100000000ull + idx), tokens + pos,
                                 item->n_input - pos);
        return;
    }
    uint32_t n_prefix = item->group == UINT32_MAX ? 0 : item->n_prefix;
    if (n_prefix > 0)
        pd_bench_fill_tokens(pd_bench_mix(seed ^ 0x70726566ull, item->group), tokens, n_prefix);
    pd_bench_fill_tokens(pd_bench_mix(seed, 0x100000000ull + idx), tokens + n_prefix,
                         item->n_input - n_prefix);
}

/* ---- the ideal cache: an open-addressing map from prefix-chain key to tokens seen ---- */

typedef struct pd_bench_cmap {
    uint64_t *keys; /* (cap), 0 = empty (a real key of 0 is stored as 1) */
    uint32_t *lens; /* (cap) */
    size_t cap, n;
} pd_bench_cmap_t;

static int pd_bench_cmap_grow(pd_bench_cmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = calloc(cap, sizeof(uint64_t));
    uint32_t *lens = calloc(cap, sizeof(uint32_t));
    if (keys == NULL || lens == NULL) {
        free(keys);
        free(lens);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == 0)
            continue;
        size_t j = m->keys[i] & (cap - 1);
        while (keys[j] != 0)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        lens[j] = m->lens[i];
    }
    free(m->keys);
    free(m->lens);
    m->keys = keys;
    m->lens = lens;
    m->cap = cap;
    return 0;
}

/* The slot of key: its entry, or the empty slot where it would go. */
static size_t pd_bench_cmap_slot(const pd_bench_cmap_t *m, uint64_t key)
{
    size_t j = key & (m->cap - 1);
    while (m->keys[j] != 0 && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    return j;
}

pd_status_t pd_bench_ideal_cache(const pd_bench_item_t *items, size_t n, uint64_t *hit_tokens_p,
                                 uint64_t *total_tokens_p)
{
    pd_bench_cmap_t m = {0};
    uint64_t hit = 0, total = 0;
    pd_status_t status = PD_ERR_NO_MEMORY;
    if (pd_bench_cmap_grow(&m) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const pd_bench_item_t *it = &items[i];
        total += it->n_input;
        uint64_t chain = pd_bench_mix(0x6964656cull, it->tenant);
        uint32_t pos = 0;
        for (uint32_t b = 0; b < it->n_blocks && pos < it->n_input; b++) {
            uint32_t len = b + 1 == it->n_blocks ? it->last_block_tokens : it->block_tokens;
            if (len > it->n_input - pos)
                len = it->n_input - pos;
            pos += len;
            chain = pd_bench_mix(chain, it->block_ids[b]);
            uint64_t key = chain ? chain : 1;
            if ((m.n + 1) * 2 > m.cap && pd_bench_cmap_grow(&m) != 0)
                goto out;
            size_t j = pd_bench_cmap_slot(&m, key);
            if (m.keys[j] == key) {
                hit += len < m.lens[j] ? len : m.lens[j];
                if (len > m.lens[j])
                    m.lens[j] = len;
            } else {
                m.keys[j] = key;
                m.lens[j] = len;
                m.n++;
            }
        }
    }
    *hit_tokens_p = hit;
    *total_tokens_p = total;
    status = PD_OK;
out:
    free(m.keys);
    free(m.lens);
    return status;
}

void pd_bench_ideal_cache_groups(const pd_bench_item_t *items, size_t n, uint32_t block_tokens,
                                 uint64_t *hit_tokens_p, uint64_t *total_tokens_p)
{
    /* A linear list of (group, tenant, longest prefix seen): workloads have few groups. */
    typedef struct {
        uint32_t group, tenant, n_prefix;
    } seen_t;
    seen_t *seen = NULL;
    size_t n_seen = 0, cap = 0;
    uint64_t hit = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        const pd_bench_item_t *it = &items[i];
        total += it->n_input;
        if (it->group == UINT32_MAX || it->n_prefix == 0)
            continue;
        size_t k;
        for (k = 0; k < n_seen; k++)
            if (seen[k].group == it->group && seen[k].tenant == it->tenant)
                break;
        if (k < n_seen) {
            uint32_t common = it->n_prefix < seen[k].n_prefix ? it->n_prefix : seen[k].n_prefix;
            if (block_tokens > 0)
                hit += common / block_tokens * block_tokens;
            if (it->n_prefix > seen[k].n_prefix)
                seen[k].n_prefix = it->n_prefix;
            continue;
        }
        if (n_seen == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            seen_t *ns = realloc(seen, ncap * sizeof(*ns));
            if (ns == NULL)
                continue; /* an unrecorded group only lowers the ideal */
            seen = ns;
            cap = ncap;
        }
        seen[n_seen++] = (seen_t){it->group, it->tenant, it->n_prefix};
    }
    free(seen);
    *hit_tokens_p = hit;
    *total_tokens_p = total;
}

/* ---- summary ---- */

double pd_bench_rec_tpot_ms(const pd_bench_rec_t *rec)
{
    if (rec->n_recv < 2)
        return NAN;
    return (rec->last_ms - rec->first_ms) / (double)(rec->n_recv - 1);
}

static void pd_bench_dist_make(double *v, size_t n, pd_bench_dist_t *d)
{
    memset(d, 0, sizeof(*d));
    d->n = n;
    d->p50 = d->p90 = d->p99 = d->mean = NAN;
    if (n == 0)
        return;
    pd_bench_sort(v, n);
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    d->mean = s / (double)n;
    d->p50 = pd_bench_percentile(v, n, 50);
    d->p90 = pd_bench_percentile(v, n, 90);
    d->p99 = pd_bench_percentile(v, n, 99);
}

/* The metrics collected per completed record, one column each. */
enum {
    PD_BENCH_COL_TTFT,
    PD_BENCH_COL_STTFT,
    PD_BENCH_COL_TPOT,
    PD_BENCH_COL_STPOT,
    PD_BENCH_COL_QUEUE,
    PD_BENCH_COL_PREFILL,
    PD_BENCH_COL_XFER,
    PD_BENCH_COL_SHARE,
    PD_BENCH_COL_E2E,
    PD_BENCH_COL_COLD,
    PD_BENCH_COL_WARM,
    PD_BENCH_COL_ADMIT,
    PD_BENCH_COL_PQUEUE,
    PD_BENCH_COL_FSTEP,
    PD_BENCH_COL_UNACC,
    PD_BENCH_COL_UNACC_SHARE,
    PD_BENCH_N_COLS
};

static void pd_bench_place_add(pd_bench_place_t *places, size_t *n_places, const char *worker)
{
    if (worker[0] == '\0')
        return;
    for (size_t k = 0; k < *n_places; k++) {
        if (strcmp(places[k].worker, worker) == 0) {
            places[k].n++;
            return;
        }
    }
    if (*n_places == PD_BENCH_MAX_PLACES)
        return;
    snprintf(places[*n_places].worker, sizeof(places[*n_places].worker), "%s", worker);
    places[(*n_places)++].n = 1;
}

uint32_t pd_bench_recs_init(const pd_bench_item_t *items, size_t n, pd_bench_rec_t *recs)
{
    uint32_t max_input = 1;
    for (size_t i = 0; i < n; i++) {
        if (items[i].n_input > max_input)
            max_input = items[i].n_input;
        memset(&recs[i], 0, sizeof(recs[i]));
        recs[i].sched_ms = items[i].arrival_ms;
        recs[i].n_input = items[i].n_input;
        recs[i].n_output_req = items[i].n_output;
        recs[i].group = items[i].group;
        recs[i].tenant = items[i].tenant;
    }
    return max_input;
}

static int pd_bench_cmp_arrival(const void *a, const void *b, void *arg)
{
    const pd_bench_item_t *items = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double x = items[i].arrival_ms, y = items[j].arrival_ms;
    if (x != y)
        return (x > y) - (x < y);
    return (i > j) - (i < j);
}

void pd_bench_order_by_arrival(const pd_bench_item_t *items, size_t n, size_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(size_t), pd_bench_cmp_arrival, (void *)items);
}

double pd_bench_rec_unaccounted_ms(const pd_bench_rec_t *rec)
{
    const pd_proto_timings_t *t = &rec->timings;
    double parts = t->queue_ms + t->admission_ms + t->prefill_queue_ms + t->prefill_ms +
                   t->transfer_ms + t->first_step_ms;
    return isfinite(parts) && isfinite(t->ttft_ms) && t->ttft_ms > 0 ? t->ttft_ms - parts : NAN;
}

static void pd_bench_col_add(double *cols[], size_t *ns, int col, double v)
{
    if (isfinite(v))
        cols[col][ns[col]++] = v;
}

pd_status_t pd_bench_summarize(const pd_bench_rec_t *recs, size_t n, pd_bench_summary_t *sum)
{
    double *cols[PD_BENCH_N_COLS] = {0};
    size_t ns[PD_BENCH_N_COLS] = {0};
    pd_status_t status = PD_ERR_NO_MEMORY;
    for (int c = 0; c < PD_BENCH_N_COLS; c++) {
        cols[c] = malloc((n ? n : 1) * sizeof(double));
        if (cols[c] == NULL)
            goto out;
    }
    memset(sum, 0, sizeof(*sum));
    sum->n_requests = n;
    double t0 = INFINITY, t1 = 0;
    for (size_t i = 0; i < n; i++) {
        const pd_bench_rec_t *r = &recs[i];
        if (r->sent && r->send_ms < t0)
            t0 = r->send_ms;
        if (r->end_ms > t1)
            t1 = r->end_ms;
        if (!r->finished) {
            if (r->sent || r->error != PD_OK)
                sum->n_errors++;
            continue;
        }
        sum->n_completed++;
        pd_bench_place_add(sum->prefill_places, &sum->n_prefill_places, r->prefill_worker);
        pd_bench_place_add(sum->decode_places, &sum->n_decode_places, r->decode_worker);
        sum->prompt_tokens += r->n_input;
        sum->cache_read_tokens += r->usage.cache_read_input_tokens;
        sum->cache_creation_tokens += r->usage.cache_creation_input_tokens;
        sum->computed_tokens += r->usage.input_tokens;
        sum->fetched_tokens += r->usage.fetched_input_tokens;
        sum->output_tokens += r->usage.output_tokens;
        double ttft = r->n_recv > 0 ? r->first_ms - r->send_ms : NAN;
        pd_bench_col_add(cols, ns, PD_BENCH_COL_TTFT, ttft);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_STTFT, r->timings.ttft_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_TPOT, pd_bench_rec_tpot_ms(r));
        if (r->usage.output_tokens > 1)
            pd_bench_col_add(cols, ns, PD_BENCH_COL_STPOT, r->timings.tpot_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_QUEUE, r->timings.queue_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_PREFILL, r->timings.prefill_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_XFER, r->timings.transfer_ms);
        if (r->timings.ttft_ms > 0)
            pd_bench_col_add(cols, ns, PD_BENCH_COL_SHARE,
                             r->timings.transfer_ms / r->timings.ttft_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_ADMIT, r->timings.admission_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_PQUEUE, r->timings.prefill_queue_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_FSTEP, r->timings.first_step_ms);
        double unacc = pd_bench_rec_unaccounted_ms(r);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_UNACC, unacc);
        if (r->timings.ttft_ms > 0)
            pd_bench_col_add(cols, ns, PD_BENCH_COL_UNACC_SHARE, unacc / r->timings.ttft_ms);
        pd_bench_col_add(cols, ns, PD_BENCH_COL_E2E, r->end_ms - r->send_ms);
        pd_bench_col_add(
            cols, ns, r->usage.cache_read_input_tokens > 0 ? PD_BENCH_COL_WARM : PD_BENCH_COL_COLD,
            ttft);
    }
    sum->duration_s = (t1 > t0) ? (t1 - t0) / 1000.0 : 0;
    if (sum->duration_s > 0) {
        sum->req_per_s = (double)sum->n_completed / sum->duration_s;
        sum->out_tok_per_s = (double)sum->output_tokens / sum->duration_s;
    }
    sum->cache_hit_rate =
        sum->prompt_tokens ? (double)sum->cache_read_tokens / (double)sum->prompt_tokens : 0;
    pd_bench_dist_make(cols[PD_BENCH_COL_TTFT], ns[PD_BENCH_COL_TTFT], &sum->ttft_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_STTFT], ns[PD_BENCH_COL_STTFT], &sum->server_ttft_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_TPOT], ns[PD_BENCH_COL_TPOT], &sum->tpot_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_STPOT], ns[PD_BENCH_COL_STPOT], &sum->server_tpot_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_QUEUE], ns[PD_BENCH_COL_QUEUE], &sum->queue_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_PREFILL], ns[PD_BENCH_COL_PREFILL], &sum->prefill_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_XFER], ns[PD_BENCH_COL_XFER], &sum->transfer_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_SHARE], ns[PD_BENCH_COL_SHARE], &sum->transfer_share);
    pd_bench_dist_make(cols[PD_BENCH_COL_E2E], ns[PD_BENCH_COL_E2E], &sum->e2e_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_ADMIT], ns[PD_BENCH_COL_ADMIT], &sum->admission_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_PQUEUE], ns[PD_BENCH_COL_PQUEUE], &sum->prefill_queue_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_FSTEP], ns[PD_BENCH_COL_FSTEP], &sum->first_step_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_UNACC], ns[PD_BENCH_COL_UNACC], &sum->unaccounted_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_UNACC_SHARE], ns[PD_BENCH_COL_UNACC_SHARE],
                       &sum->unaccounted_share);
    pd_bench_dist_make(cols[PD_BENCH_COL_COLD], ns[PD_BENCH_COL_COLD], &sum->ttft_cold_ms);
    pd_bench_dist_make(cols[PD_BENCH_COL_WARM], ns[PD_BENCH_COL_WARM], &sum->ttft_warm_ms);
    status = PD_OK;
out:
    for (int c = 0; c < PD_BENCH_N_COLS; c++)
        free(cols[c]);
    return status;
}

void pd_bench_slo_eval(const pd_bench_rec_t *recs, size_t n, double duration_s, double ttft_ms,
                       double tpot_ms, pd_bench_slo_t *slo)
{
    memset(slo, 0, sizeof(*slo));
    for (size_t i = 0; i < n; i++) {
        const pd_bench_rec_t *r = &recs[i];
        if (r->error == PD_ERR_OVERLOADED)
            slo->n_refused++;
        if (!r->finished || r->n_recv == 0)
            continue;
        double ttft = r->first_ms - r->send_ms;
        double tpot = pd_bench_rec_tpot_ms(r);
        if (ttft_ms > 0 && !(ttft <= ttft_ms))
            continue;
        if (tpot_ms > 0 && isfinite(tpot) && tpot > tpot_ms)
            continue;
        slo->n_met++;
    }
    slo->attainment = n > 0 ? (double)slo->n_met / (double)n : 0.0;
    slo->goodput = duration_s > 0 ? (double)slo->n_met / duration_s : 0.0;
}

size_t pd_bench_parse_rates(const char *s, double *rates, size_t max)
{
    size_t n = 0;
    const char *p = s;
    while (*p != '\0') {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno != 0 || !isfinite(v) || v <= 0 || v > 1e6 || n == max ||
            (*end != ',' && *end != '\0'))
            return 0;
        rates[n++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0')
            return 0; /* a trailing comma */
    }
    return n;
}
