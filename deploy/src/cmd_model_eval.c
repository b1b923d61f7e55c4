/* pdctl model compare: how far a model (e.g. an int8 or bf16 conversion) is from a
 * reference model on the same prompts. For each seeded random prompt the reference
 * generates greedily; the model then reads the same tokens (teacher forcing), and at
 * every generated position the two next-token distributions are compared: KL(ref || model)
 * and whether their argmax agree. The model's own greedy continuation is also run, and
 * the number of tokens it shares with the reference's before the first difference is
 * counted.
 *
 * With --kv-codec the model under test is the reference itself whose prompt KV went
 * through the wire codec, as a decode worker holds it after a compressed transfer: the
 * prompt is computed exactly (prefill samples the first token from its own KV), then every
 * block-layer slice of the prompt's KV is packed and restored, and the generated tokens
 * attend to the restored values. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/kv_layout.h"
#include "pd/log.h"
#include "pd/model.h"
#include "pd/xfer_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pd_eval_opts {
    const char *model, *ref;
    uint32_t n_prompts, prompt_tokens, gen_tokens, n_threads;
    uint64_t seed;
    bool json;
    pd_xfer_codec_t codec; /* --kv-codec: the model is ref with its prompt KV through this */
} pd_eval_opts_t;

static void pd_eval_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl model compare -m MODEL --ref MODEL [--prompts N] [--prompt-tokens N]\n"
            "                           [--tokens N] [--seed S] [--threads N] [--json]\n"
            "       pdctl model compare -m MODEL --kv-codec int8|fp8 [options]\n"
            "\n"
            "Compare MODEL's next-token distributions with REF's (same vocabulary) on N\n"
            "seeded random prompts: REF generates --tokens greedily, MODEL reads the same\n"
            "tokens, and at each generated position the report gives the mean and largest\n"
            "KL(REF || MODEL) in nats and how often the two argmax agree; then MODEL\n"
            "generates greedily on its own, and the report gives how many tokens it shares\n"
            "with REF's before the first difference.\n"
            "With --kv-codec, REF is MODEL itself and MODEL's prompt KV is packed and\n"
            "restored by the wire codec, as after a compressed transfer; the report adds the\n"
            "KV bytes per token on the wire, uncompressed and packed.\n"
            "\n"
            "  -m, --model PATH     the model under test (e.g. from 'model quantize')\n"
            "  --ref PATH           the reference model\n"
            "  --kv-codec NAME      int8 or fp8: compare compressed KV with exact KV\n"
            "  --prompts N          prompts (default 8)\n"
            "  --prompt-tokens N    tokens per prompt (default 32)\n"
            "  --tokens N           tokens generated per prompt (default 64)\n"
            "  --seed S             prompt seed (default 1)\n"
            "  --threads N          compute threads, 0 for all cores (default 0)\n"
            "  --json               one JSON object on stdout\n");
}

static int pd_eval_parse(int argc, char **argv, pd_eval_opts_t *o)
{
    static const pd_cli_opt_t opts[] = {
        {"model", 'm', true, 'm', NULL},
        {"ref", 0, true, 'r', NULL},
        {"prompts", 0, true, 'P', NULL},
        {"prompt-tokens", 0, true, 'L', NULL},
        {"tokens", 0, true, 'n', NULL},
        {"seed", 0, true, 's', NULL},
        {"threads", 0, true, 'j', NULL},
        {"json", 0, false, 'J', NULL},
        {"kv-codec", 0, true, 'K', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    *o = (pd_eval_opts_t){NULL, NULL, 8, 32, 64, 0, 1, false, PD_XFER_CODEC_NONE};
    int c;
    pd_cli_parser_t pcli;
    pd_cli_parser_init(&pcli, "model compare", argc, argv, opts);
    while ((c = pd_cli_opt_next(&pcli)) != PD_CLI_OPT_END) {
        const char *optarg = pcli.arg;
        bool ok = true;
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'r':
            o->ref = optarg;
            break;
        case 'P':
            ok = pd_cli_parse_u32("--prompts", optarg, 1, 10000, &o->n_prompts);
            break;
        case 'L':
            ok = pd_cli_parse_u32("--prompt-tokens", optarg, 1, 1u << 20, &o->prompt_tokens);
            break;
        case 'n':
            ok = pd_cli_parse_u32("--tokens", optarg, 1, 1u << 20, &o->gen_tokens);
            break;
        case 's':
            ok = pd_cli_parse_u64("--seed", optarg, 0, UINT64_MAX, &o->seed);
            break;
        case 'j':
            ok = pd_cli_parse_u32("--threads", optarg, 0, 1024, &o->n_threads);
            break;
        case 'J':
            o->json = true;
            break;
        case 'K':
            ok = pd_xfer_codec_parse(optarg, &o->codec) == PD_OK;
            if (!ok)
                fprintf(stderr, "pdctl: --kv-codec is int8 or fp8, not '%s'\n", optarg);
            break;
        case 'h':
            pd_eval_usage(stdout);
            return -1;
        default:
            /* the parser said what was wrong */
            return PD_CLI_USAGE;
        }
        if (!ok)
            return PD_CLI_USAGE;
    }
    if (o->codec != PD_XFER_CODEC_NONE && o->ref == NULL)
        o->ref = o->model;
    if (pcli.n_pos != 0 || o->model == NULL || o->ref == NULL) {
        fprintf(stderr, "pdctl: model compare needs -m MODEL and --ref MODEL (or --kv-codec)\n");
        pd_eval_usage(stderr);
        return PD_CLI_USAGE;
    }
    return PD_CLI_OK;
}

/* One model with its engine and a KV pool for one sequence. */
typedef struct pd_eval_side {
    pd_model_t *model;
    pd_engine_t *engine;
    pd_kv_layout_t layout;
    float *kv;             /* (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32 */
    uint32_t *table;       /* (n_blocks) */
    pd_xfer_codec_t codec; /* NONE, or the codec the prompt's KV goes through */
    uint8_t *packed;       /* (pd_xfer_codec_block_bytes) one packed block-layer slice */
} pd_eval_side_t;

static void pd_eval_side_free(pd_eval_side_t *s)
{
    pd_engine_destroy(&s->engine);
    pd_model_destroy(&s->model);
    free(s->kv);
    free(s->table);
    free(s->packed);
}

static pd_status_t pd_eval_side_open(pd_eval_side_t *s, const char *path, uint32_t n_ctx,
                                     uint32_t n_threads)
{
    memset(s, 0, sizeof(*s));
    pd_status_t st = pd_model_load(path, &s->model);
    if (st != PD_OK)
        return st;
    const pd_model_config_t *c = &s->model->config;
    if (n_ctx > c->max_seq_len) {
        fprintf(stderr, "pdctl: %u tokens exceed the context of %s (%u)\n", n_ctx, path,
                c->max_seq_len);
        return PD_ERR_CONTEXT;
    }
    s->layout = (pd_kv_layout_t){c->n_layers, c->n_kv_heads, c->head_dim, 16, (n_ctx + 15) / 16};
    s->kv = calloc(1, pd_kv_pool_bytes(&s->layout));
    s->table = malloc(s->layout.n_blocks * sizeof(uint32_t));
    if (s->kv == NULL || s->table == NULL)
        return PD_ERR_NO_MEMORY;
    for (uint32_t i = 0; i < s->layout.n_blocks; i++)
        s->table[i] = i;
    return pd_engine_create(s->model, PD_BACKEND_CPU, n_threads, &s->engine);
}

static uint32_t pd_eval_argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        best = x[i] > x[best] ? i : best;
    return best;
}

/* Pack and restore every block-layer slice holding the first n_tokens positions, as a
 * compressed transfer of those blocks does. */
static void pd_eval_codec_roundtrip(pd_eval_side_t *s, uint32_t n_tokens)
{
    const pd_kv_layout_t *l = &s->layout;
    const size_t slice = 2ull * l->block_tokens * l->n_kv_heads * l->head_dim; /* floats */
    const uint32_t n_used = (n_tokens + l->block_tokens - 1) / l->block_tokens;
    for (uint32_t layer = 0; layer < l->n_layers; layer++) {
        for (uint32_t b = 0; b < n_used; b++) {
            float *x = s->kv + ((size_t)layer * l->n_blocks + b) * slice;
            pd_xfer_codec_pack(s->codec, l, x, s->packed);
            pd_xfer_codec_unpack(s->codec, l, s->packed, x);
        }
    }
}

/* Run tokens (n_prompt + n_gen) through a side: logits (n_gen, vocab) of each generated
 * position. When greedy, generated token k is the argmax of logits k and is written into
 * tokens; otherwise tokens are read as given (teacher forcing). */
static pd_status_t pd_eval_run(pd_eval_side_t *s, int32_t *tokens, uint32_t n_prompt,
                               uint32_t n_gen, bool greedy, float *logits)
{
    const uint32_t vocab = s->model->config.vocab_size;
    if (s->codec != PD_XFER_CODEC_NONE) /* a partial last block packs zeros past the prompt */
        memset(s->kv, 0, pd_kv_pool_bytes(&s->layout));
    for (uint32_t k = 0; k < n_gen; k++) {
        pd_fwd_seq_t seq = {k == 0 ? tokens : tokens + n_prompt + k - 1,
                            k == 0 ? n_prompt : 1,
                            k == 0 ? 0 : n_prompt + k - 1,
                            s->table,
                            s->layout.n_blocks,
                            logits + (size_t)k * vocab};
        pd_status_t st = pd_engine_forward(s->engine, s->kv, &s->layout, &seq, 1, NULL, NULL);
        if (st != PD_OK)
            return st;
        if (greedy)
            tokens[n_prompt + k] = (int32_t)pd_eval_argmax(logits + (size_t)k * vocab, vocab);
        if (k == 0 && s->codec != PD_XFER_CODEC_NONE)
            pd_eval_codec_roundtrip(s, n_prompt);
    }
    return PD_OK;
}

/* KL(p || q) in nats of the softmaxes of logits a (p) and b (q), both (n). */
static double pd_eval_kl(const float *a, const float *b, uint32_t n)
{
    double ma = a[0], mb = b[0], za = 0, zb = 0, kl = 0;
    for (uint32_t i = 1; i < n; i++) {
        ma = a[i] > ma ? a[i] : ma;
        mb = b[i] > mb ? b[i] : mb;
    }
    for (uint32_t i = 0; i < n; i++) {
        za += exp(a[i] - ma);
        zb += exp(b[i] - mb);
    }
    for (uint32_t i = 0; i < n; i++) {
        double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);
        kl += exp(la) * (la - lb);
    }
    return kl > 0 ? kl : 0;
}

static uint64_t pd_eval_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int pd_cmd_model_compare(int argc, char **argv)
{
    pd_eval_opts_t o;
    int rc = pd_eval_parse(argc, argv, &o);
    if (rc != PD_CLI_OK)
        return rc < 0 ? PD_CLI_OK : rc;
    const uint32_t n_ctx = o.prompt_tokens + o.gen_tokens;
    pd_eval_side_t m, r;
    int32_t *ref_tok = NULL, *own_tok = NULL;
    float *lr = NULL, *lm = NULL;
    rc = PD_CLI_FAIL;
    pd_status_t st = pd_eval_side_open(&r, o.ref, n_ctx, o.n_threads);
    if (st == PD_OK)
        st = pd_eval_side_open(&m, o.model, n_ctx, o.n_threads);
    else
        memset(&m, 0, sizeof(m));
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: cannot open the models: %s\n", pd_status_str(st));
        goto out;
    }
    const uint32_t vocab = r.model->config.vocab_size;
    size_t raw_token_bytes = pd_kv_block_bytes(&m.layout) / m.layout.block_tokens;
    size_t wire_token_bytes = raw_token_bytes;
    if (o.codec != PD_XFER_CODEC_NONE) {
        const size_t packed = pd_xfer_codec_block_bytes(o.codec, &m.layout);
        m.codec = o.codec;
        m.packed = packed > 0 ? malloc(packed) : NULL;
        if (m.packed == NULL) {
            fprintf(stderr, "pdctl: the %s codec cannot pack this model's KV (%u heads of %u)\n",
                    pd_xfer_codec_name(o.codec), m.layout.n_kv_heads, m.layout.head_dim);
            goto out;
        }
        wire_token_bytes = packed * m.layout.n_layers / m.layout.block_tokens;
    }
    if (m.model->config.vocab_size != vocab) {
        fprintf(stderr, "pdctl: the vocabularies differ (%u and %u tokens)\n",
                m.model->config.vocab_size, vocab);
        goto out;
    }
    ref_tok = malloc(n_ctx * sizeof(int32_t));
    own_tok = malloc(n_ctx * sizeof(int32_t));
    lr = malloc((size_t)o.gen_tokens * vocab * sizeof(float));
    lm = malloc((size_t)o.gen_tokens * vocab * sizeof(float));
    if (ref_tok == NULL || own_tok == NULL || lr == NULL || lm == NULL) {
        fprintf(stderr, "pdctl: out of memory\n");
        goto out;
    }
    double kl_sum = 0, kl_max = 0, shared_sum = 0;
    uint64_t agree = 0, positions = 0, identical = 0;
    for (uint32_t p = 0; p < o.n_prompts; p++) {
        for (uint32_t i = 0; i < o.prompt_tokens; i++)
            ref_tok[i] =
                (int32_t)(pd_eval_mix(o.seed ^ pd_eval_mix(((uint64_t)p << 32) | i)) % vocab);
        memcpy(own_tok, ref_tok, o.prompt_tokens * sizeof(int32_t));
        st = pd_eval_run(&r, ref_tok, o.prompt_tokens, o.gen_tokens, true, lr);
        if (st == PD_OK)
            st = pd_eval_run(&m, ref_tok, o.prompt_tokens, o.gen_tokens, false, lm);
        if (st != PD_OK) {
            fprintf(stderr, "pdctl: forward failed: %s\n", pd_status_str(st));
            goto out;
        }
        for (uint32_t k = 0; k < o.gen_tokens; k++) {
            double kl = pd_eval_kl(lr + (size_t)k * vocab, lm + (size_t)k * vocab, vocab);
            kl_sum += kl;
            kl_max = kl > kl_max ? kl : kl_max;
            agree += pd_eval_argmax(lr + (size_t)k * vocab, vocab) ==
                     pd_eval_argmax(lm + (size_t)k * vocab, vocab);
            positions++;
        }
        st = pd_eval_run(&m, own_tok, o.prompt_tokens, o.gen_tokens, true, lm);
        if (st != PD_OK) {
            fprintf(stderr, "pdctl: forward failed: %s\n", pd_status_str(st));
            goto out;
        }
        uint32_t shared = 0;
        while (shared < o.gen_tokens &&
               own_tok[o.prompt_tokens + shared] == ref_tok[o.prompt_tokens + shared])
            shared++;
        shared_sum += shared;
        identical += shared == o.gen_tokens;
        if (!o.json)
            fprintf(stderr, "pdctl: prompt %u/%u: greedy tokens shared %u of %u\n", p + 1,
                    o.n_prompts, shared, o.gen_tokens);
    }
    double kl_mean = kl_sum / (double)positions, top1 = (double)agree / (double)positions;
    double shared_mean = shared_sum / o.n_prompts;
    if (o.json) {
        printf("{\"model\":\"%s\",\"ref\":\"%s\",\"model_dtype\":\"%s\",\"ref_dtype\":\"%s\","
               "\"prompts\":%u,\"prompt_tokens\":%u,\"tokens\":%u,\"kl_mean\":%.6g,"
               "\"kl_max\":%.6g,\"top1_agreement\":%.6f,\"greedy_shared_mean\":%.3f,"
               "\"greedy_identical\":%llu,\"kv_codec\":\"%s\",\"kv_bytes_per_token\":%zu,"
               "\"kv_wire_bytes_per_token\":%zu}\n",
               m.model->config.model_id, r.model->config.model_id,
               pd_model_dtype(m.model) < 0 ? "mixed" : pd_dtype_name(pd_model_dtype(m.model)),
               pd_model_dtype(r.model) < 0 ? "mixed" : pd_dtype_name(pd_model_dtype(r.model)),
               o.n_prompts, o.prompt_tokens, o.gen_tokens, kl_mean, kl_max, top1, shared_mean,
               (unsigned long long)identical, pd_xfer_codec_name(o.codec), raw_token_bytes,
               wire_token_bytes);
    } else {
        printf("model %s%s%s against %s: %u prompts of %u tokens, %u generated\n",
               m.model->config.model_id, o.codec != PD_XFER_CODEC_NONE ? " with KV through " : "",
               o.codec != PD_XFER_CODEC_NONE ? pd_xfer_codec_name(o.codec) : "",
               r.model->config.model_id, o.n_prompts, o.prompt_tokens, o.gen_tokens);
        if (o.codec != PD_XFER_CODEC_NONE)
            printf("KV on the wire      %zu bytes per token (f32 %zu, %.2fx fewer)\n",
                   wire_token_bytes, raw_token_bytes,
                   (double)raw_token_bytes / (double)wire_token_bytes);
        printf("KL(ref || model)   mean %.3g nats, max %.3g\n", kl_mean, kl_max);
        printf("argmax agreement   %.2f%% of %llu positions (teacher-forced)\n", 100.0 * top1,
               (unsigned long long)positions);
        printf("greedy run         %.1f of %u tokens shared before the first difference on "
               "average; %llu of %u prompts identical\n",
               shared_mean, o.gen_tokens, (unsigned long long)identical, o.n_prompts);
    }
    rc = PD_CLI_OK;
out:
    free(ref_tok);
    free(own_tok);
    free(lr);
    free(lm);
    pd_eval_side_free(&m);
    pd_eval_side_free(&r);
    return rc;
}
