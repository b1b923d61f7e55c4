/* pd-chunkbench: what chunked prefill costs and what sharing a forward pass gains, on the
 * engine alone (no worker, no transfer), with a preset model and random weights:
 *
 *   chunks: a long prompt computed in one step, then in chunks of C tokens for each C of
 *           --chunks (the cost of cutting a prompt: more steps, each reading the weights);
 *   batch:  K short prompts computed one step each, then all in one step (what a shared
 *           pass saves);
 *   fill:   a short prompt alone in a step, then sharing a step with a chunk of a long
 *           prompt deep in its context, the step filled up to C tokens (what the short one
 *           waits for when the pass is filled, and what the long one gains).
 *
 * Each figure is the median of --runs runs, wall time and the process's CPU time (with
 * one thread, what other processes on a shared machine cannot inflate). */
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/presets.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CHUNKS 8
#define MAX_RUNS   64

typedef struct pd_cb_opts {
    const char *preset;
    uint32_t threads;
    uint32_t runs;
    uint32_t long_tokens;  /* --long */
    uint32_t short_tokens; /* --short */
    uint32_t n_short;      /* --batch */
    uint32_t chunks[MAX_CHUNKS];
    uint32_t n_chunks;
} pd_cb_opts_t;

typedef struct pd_cb {
    const pd_cb_opts_t *o;
    pd_engine_t *engine;
    void *pool;
    pd_kv_layout_t layout;
    uint32_t *tables; /* (1 + n_short, per_seq) */
    uint32_t per_seq;
    int32_t *tokens; /* (long_tokens) */
    float *logits;   /* (1 + n_short, vocab) */
    uint32_t vocab;
} pd_cb_t;

static uint64_t pd_cb_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int pd_cb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pd_cb_median(double *v, uint32_t n)
{
    qsort(v, n, sizeof(double), pd_cb_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Sequence s (0: the long prompt, 1..: the short ones) from pos, n tokens. */
static pd_fwd_seq_t pd_cb_seq(pd_cb_t *b, uint32_t s, uint32_t pos, uint32_t n, bool logits)
{
    return (pd_fwd_seq_t){b->tokens + pos,
                          n,
                          pos,
                          b->tables + (size_t)s * b->per_seq,
                          b->per_seq,
                          logits ? b->logits + (size_t)s * b->vocab : NULL};
}

/* One timed step; adds its wall and CPU ms. */
static pd_status_t pd_cb_step(pd_cb_t *b, pd_fwd_seq_t *seqs, uint32_t n, double *ms,
                              double *cpu_ms)
{
    uint64_t t0 = pd_time_now_ns(), c0 = pd_cb_cpu_ns();
    pd_status_t st = pd_engine_forward(b->engine, b->pool, &b->layout, seqs, n, NULL, NULL);
    *ms += (double)(pd_time_now_ns() - t0) * 1e-6;
    *cpu_ms += (double)(pd_cb_cpu_ns() - c0) * 1e-6;
    return st;
}

/* The long prompt in chunks of c tokens (c = long: one step). */
static pd_status_t pd_cb_chunked(pd_cb_t *b, uint32_t c, double *ms, double *cpu_ms)
{
    const uint32_t n = b->o->long_tokens;
    pd_status_t st = PD_OK;
    for (uint32_t pos = 0; pos < n && st == PD_OK; pos += c) {
        uint32_t k = n - pos < c ? n - pos : c;
        pd_fwd_seq_t s = pd_cb_seq(b, 0, pos, k, pos + k == n);
        st = pd_cb_step(b, &s, 1, ms, cpu_ms);
    }
    return st;
}

/* The short prompts, one step each (together 0) or all in one (together 1). */
static pd_status_t pd_cb_shorts(pd_cb_t *b, bool together, double *ms, double *cpu_ms)
{
    pd_fwd_seq_t seqs[64];
    pd_status_t st = PD_OK;
    for (uint32_t s = 0; s < b->o->n_short; s++)
        seqs[s] = pd_cb_seq(b, 1 + s, 0, b->o->short_tokens, true);
    if (together)
        return pd_cb_step(b, seqs, b->o->n_short, ms, cpu_ms);
    for (uint32_t s = 0; s < b->o->n_short && st == PD_OK; s++)
        st = pd_cb_step(b, &seqs[s], 1, ms, cpu_ms);
    return st;
}

/* Median wall and CPU ms of what() over the runs. */
#define PD_CB_MEASURE(b, wall_p, cpu_p, call)                                                      \
    do {                                                                                           \
        double w_[MAX_RUNS], c_[MAX_RUNS];                                                         \
        for (uint32_t r_ = 0; r_ < (b)->o->runs; r_++) {                                           \
            double ms = 0, cpu_ms = 0;                                                             \
            if ((call) != PD_OK)                                                                   \
                return PD_ERR_INTERNAL;                                                            \
            w_[r_] = ms;                                                                           \
            c_[r_] = cpu_ms;                                                                       \
        }                                                                                          \
        *(wall_p) = pd_cb_median(w_, (b)->o->runs);                                                \
        *(cpu_p) = pd_cb_median(c_, (b)->o->runs);                                                 \
    } while (0)

static pd_status_t pd_cb_report(pd_cb_t *b)
{
    const pd_cb_opts_t *o = b->o;
    double w1, c1, w, c;
    printf("chunks: a %u-token prompt\n", o->long_tokens);
    printf("  %-28s %10s %10s %8s\n", "", "wall ms", "cpu ms", "vs one");
    PD_CB_MEASURE(b, &w1, &c1, pd_cb_chunked(b, o->long_tokens, &ms, &cpu_ms));
    printf("  %-28s %10.2f %10.2f %8.3f\n", "one step", w1, c1, 1.0);
    for (uint32_t i = 0; i < o->n_chunks; i++) {
        char name[64];
        snprintf(name, sizeof(name), "chunks of %u", o->chunks[i]);
        PD_CB_MEASURE(b, &w, &c, pd_cb_chunked(b, o->chunks[i], &ms, &cpu_ms));
        printf("  %-28s %10.2f %10.2f %8.3f\n", name, w, c, c / c1);
    }

    printf("batch: %u prompts of %u tokens\n", o->n_short, o->short_tokens);
    PD_CB_MEASURE(b, &w1, &c1, pd_cb_shorts(b, false, &ms, &cpu_ms));
    printf("  %-28s %10.2f %10.2f %8.3f\n", "one step each", w1, c1, 1.0);
    PD_CB_MEASURE(b, &w, &c, pd_cb_shorts(b, true, &ms, &cpu_ms));
    printf("  %-28s %10.2f %10.2f %8.3f\n", "all in one step", w, c, c / c1);

    /* The long prompt's KV up to deep is in place (the chunked runs wrote it all). */
    const uint32_t deep = o->long_tokens * 3 / 4;
    printf("fill: a %u-token prompt beside a chunk of the long one at position %u\n",
           o->short_tokens, deep);
    double ws, cs;
    {
        pd_fwd_seq_t s = pd_cb_seq(b, 1, 0, o->short_tokens, true);
        PD_CB_MEASURE(b, &ws, &cs, pd_cb_step(b, &s, 1, &ms, &cpu_ms));
    }
    printf("  %-28s %10.2f %10.2f %8.3f\n", "short alone", ws, cs, 1.0);
    for (uint32_t i = 0; i < o->n_chunks; i++) {
        const uint32_t c_tok = o->chunks[i];
        if (c_tok <= o->short_tokens || deep + c_tok - o->short_tokens > o->long_tokens)
            continue;
        const uint32_t rest = c_tok - o->short_tokens;
        char name[64];
        double wl, cl;
        pd_fwd_seq_t l = pd_cb_seq(b, 0, deep, rest, false);
        PD_CB_MEASURE(b, &wl, &cl, pd_cb_step(b, &l, 1, &ms, &cpu_ms));
        snprintf(name, sizeof(name), "long chunk of %u alone", rest);
        printf("  %-28s %10.2f %10.2f %8.3f\n", name, wl, cl, cl / cs);
        pd_fwd_seq_t both[2] = {pd_cb_seq(b, 1, 0, o->short_tokens, true),
                                pd_cb_seq(b, 0, deep, rest, false)};
        PD_CB_MEASURE(b, &w, &c, pd_cb_step(b, both, 2, &ms, &cpu_ms));
        snprintf(name, sizeof(name), "both in a %u-token step", c_tok);
        printf("  %-28s %10.2f %10.2f %8.3f  (%.3f of the two apart)\n", name, w, c, c / cs,
               c / (cs + cl));
    }
    return PD_OK;
}

static void pd_cb_usage(void)
{
    fprintf(stderr, "usage: pd-chunkbench [--preset NAME] [--threads N] [--runs N] [--long N]\n"
                    "                     [--short N] [--batch K] [--chunks C[,C...]]\n"
                    "Defaults: small, 1 thread, 9 runs, --long 1900, --short 64, --batch 4,\n"
                    "--chunks 64,128,256,512.\n");
}

static int pd_cb_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *v_p)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return -1;
    *v_p = (uint32_t)v;
    return 0;
}

static int pd_cb_parse(int argc, char **argv, pd_cb_opts_t *o)
{
    *o = (pd_cb_opts_t){"small", 1, 9, 1900, 64, 4, {64, 128, 256, 512}, 4};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = v == NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (bad)
            return -1;
        if (strcmp(a, "--preset") == 0) {
            o->preset = v;
        } else if (strcmp(a, "--threads") == 0) {
            bad = pd_cb_u32(v, 0, 256, &o->threads);
        } else if (strcmp(a, "--runs") == 0) {
            bad = pd_cb_u32(v, 1, MAX_RUNS, &o->runs);
        } else if (strcmp(a, "--long") == 0) {
            bad = pd_cb_u32(v, 2, 1u << 20, &o->long_tokens);
        } else if (strcmp(a, "--short") == 0) {
            bad = pd_cb_u32(v, 1, 1u << 20, &o->short_tokens);
        } else if (strcmp(a, "--batch") == 0) {
            bad = pd_cb_u32(v, 1, 64, &o->n_short);
        } else if (strcmp(a, "--chunks") == 0) {
            char buf[256];
            snprintf(buf, sizeof(buf), "%s", v);
            o->n_chunks = 0;
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL && !bad;
                 t = strtok_r(NULL, ",", &save))
                bad = o->n_chunks == MAX_CHUNKS ||
                      pd_cb_u32(t, 1, 1u << 20, &o->chunks[o->n_chunks++]) != 0;
        } else {
            return -1;
        }
        if (bad)
            return -1;
        i++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    pd_cb_opts_t o;
    int rc = pd_cb_parse(argc, argv, &o);
    if (rc != 0) {
        pd_cb_usage();
        return rc > 0 ? 0 : 2;
    }
    pd_model_config_t c;
    pd_model_t *model = NULL;
    if (pd_model_preset(o.preset, &c) != PD_OK)
        return 2;
    if (o.long_tokens > c.max_seq_len || o.short_tokens > c.max_seq_len) {
        fprintf(stderr, "pd-chunkbench: prompts longer than the model's context (%u)\n",
                c.max_seq_len);
        return 2;
    }
    if (pd_model_alloc(&c, &model) != PD_OK)
        return 1;
    pd_model_init_random(model, 1);
    pd_cb_t b = {.o = &o, .vocab = c.vocab_size};
    const uint32_t bt = 16;
    b.per_seq = (o.long_tokens > o.short_tokens ? o.long_tokens : o.short_tokens) / bt + 1;
    b.layout =
        (pd_kv_layout_t){c.n_layers, c.n_kv_heads, c.head_dim, bt, (1 + o.n_short) * b.per_seq};
    b.tables = malloc((size_t)b.layout.n_blocks * sizeof(uint32_t));
    b.tokens = malloc((size_t)(o.long_tokens > o.short_tokens ? o.long_tokens : o.short_tokens) *
                      sizeof(int32_t));
    b.logits = malloc((size_t)(1 + o.n_short) * c.vocab_size * sizeof(float));
    pd_status_t st = PD_ERR_NO_MEMORY;
    if (b.tables != NULL && b.tokens != NULL && b.logits != NULL) {
        for (uint32_t i = 0; i < b.layout.n_blocks; i++)
            b.tables[i] = i;
        for (uint32_t i = 0; i < o.long_tokens || i < o.short_tokens; i++)
            b.tokens[i] = (int32_t)((i * 2654435761u) % c.vocab_size);
        st = pd_engine_create(model, PD_BACKEND_CPU, o.threads, &b.engine);
    }
    if (st == PD_OK)
        st = pd_engine_buf_alloc(b.engine, pd_kv_pool_bytes(&b.layout), &b.pool);
    if (st == PD_OK) {
        printf("pd-chunkbench: preset %s, %u thread(s), median of %u runs\n", o.preset,
               pd_engine_n_threads(b.engine), o.runs);
        st = pd_cb_report(&b);
    }
    if (st != PD_OK)
        fprintf(stderr, "pd-chunkbench: %s\n", pd_status_str(st));
    pd_engine_buf_free(b.engine, b.pool);
    pd_engine_destroy(&b.engine);
    free(b.tables);
    free(b.tokens);
    free(b.logits);
    pd_model_destroy(&model);
    return st == PD_OK ? 0 : 1;
}
