/* pdctl generate: one prompt through a model in this process, no cluster and no transfer.
 * This is the reference the cluster's output must equal (docs/ARCHITECTURE.md section 8): the whole
 * prompt is prefilled in one forward call, token 0 is sampled with step 0, and each
 * later token k is one decode forward call sampled with step k. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/json.h"
#include "pd/kv_layout.h"
#include "pd/log.h"
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/sample.h"
#include "pd/time.h"
#include "pd/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PD_GEN_BLOCK_TOKENS 16u
#define PD_GEN_MAX_TOKENS   (1u << 20)
#define PD_GEN_MAX_STOP     16u /* as the wire protocol's limit */

typedef struct pd_gen_opts {
    const char *model;
    const char *tokenizer;
    const char *prompt;
    const char *tokens;
    const char *stop;
    uint32_t max_tokens;
    pd_sampling_t sampling;
    uint32_t n_threads;
    bool json;
    bool cuda;                  /* --backend cuda */
    pd_backend_cuda_opts_t gpu; /* --cuda-weights */
    pd_cli_chat_t chat;         /* --chat, --system, --user, --template */
} pd_gen_opts_t;

static void pd_cmd_generate_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl generate -m MODEL [-t TOKENIZER] (-p TEXT | --tokens 1,2,3 |\n"
            "                      --chat FILE | [--system TEXT] --user TEXT...)\n"
            "                      [-n N] [--temperature T] [--top-p P] [--seed S]\n"
            "                      [--stop 2,13] [--threads N] [--json]\n"
            "                      [--backend cpu|cuda] [--cuda-weights f32|f16|bf16]\n"
            "\n"
            "Generate up to N tokens for a prompt in this process (no cluster): prefill the\n"
            "prompt in one step, then decode one token per step, stopping at N tokens, at\n"
            "the end-of-sequence token or at a stop id. The text streams to stdout; timings\n"
            "go to stderr. For a fixed model, prompt and seed the tokens equal the\n"
            "cluster's.\n"
            "\n"
            "  -m, --model PATH     checkpoint directory (config.json + *.safetensors) or a\n"
            "                       llama2.c .bin\n"
            "  -t, --tokenizer PATH llama2.c tokenizer.bin (default: MODEL/tokenizer.bin)\n"
            "  -p, --prompt TEXT    prompt text; BOS is prepended\n"
            "  --tokens LIST        prompt token ids, comma-separated (no BOS added)\n"
            "  --chat FILE          a conversation (JSON messages, as for pdctl template)\n"
            "                       rendered by the tokenizer's chat template with the\n"
            "                       assistant's turn opened\n"
            "  --system TEXT, --user TEXT  the conversation as messages, in order\n"
            "  --template FILE      a Jinja chat template instead of the tokenizer's\n"
            "  -n, --max-tokens N   tokens to generate (default 64)\n"
            "  --temperature T      0 is greedy (default 1.0)\n"
            "  --top-p P            nucleus sampling, 1 is off (default 1.0)\n"
            "  --seed S             sampling seed (default: a random one, printed with the\n"
            "                       timings or in the JSON, so the run can be repeated)\n"
            "  --stop LIST          stop token ids, comma-separated (up to 16); the stop\n"
            "                       token is the last one output, as in the cluster\n"
            "  --threads N          compute threads, 0 for all cores (default 0)\n"
            "  --backend NAME       cpu (default) or cuda: the model on the first GPU that\n"
            "                       CUDA_VISIBLE_DEVICES leaves, its KV pool in device memory\n"
            "  --cuda-weights T     weight matrices on the GPU in f32, f16 or bf16 (default: the\n"
            "                       model's dtype; int8 becomes bf16)\n"
            "  --json               print one JSON object: prompt_tokens, tokens, text,\n"
            "                       seed, finish_reason (length, eos or stop), timings\n");
}

static const pd_cli_opt_t pd_gen_opts[] = {
    PD_CLI_OPT_MODEL_PATH,
    {"tokenizer", 't', true, 't', NULL},
    PD_CLI_OPTS_REQUEST,
    {"threads", 0, true, 'j', NULL},
    {"stop", 0, true, 'X', NULL},
    PD_CLI_OPT_JSON,
    {"backend", 0, true, 'B', NULL},
    {"cuda-weights", 0, true, 'W', NULL},
    PD_CLI_CHAT_OPTIONS,
    PD_CLI_OPT_HELP,
    PD_CLI_OPT_END_TABLE,
};

static int pd_gen_parse(int argc, char **argv, pd_gen_opts_t *o)
{
    pd_cli_parser_t p;
    bool seeded = false;
    int c;
    memset(o, 0, sizeof(*o));
    o->max_tokens = 64;
    o->sampling.temperature = 1.0f;
    o->sampling.top_p = 1.0f;
    pd_cli_parser_init(&p, "generate", argc, argv, pd_gen_opts);
    while ((c = pd_cli_opt_next(&p)) != PD_CLI_OPT_END) {
        const char *optarg = p.arg;
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 't':
            o->tokenizer = optarg;
            break;
        case 'p':
            o->prompt = optarg;
            break;
        case 'K':
            o->tokens = optarg;
            break;
        case 'n':
            if (!pd_cli_parse_u32("--max-tokens", optarg, 1, PD_GEN_MAX_TOKENS, &o->max_tokens))
                return PD_CLI_USAGE;
            break;
        case 'T':
            if (!pd_cli_parse_f32("--temperature", optarg, 0.0f, 100.0f, &o->sampling.temperature))
                return PD_CLI_USAGE;
            break;
        case 'P':
            if (!pd_cli_parse_f32("--top-p", optarg, 0.0f, 1.0f, &o->sampling.top_p))
                return PD_CLI_USAGE;
            if (o->sampling.top_p <= 0.0f) {
                fprintf(stderr, "pdctl: --top-p must be in (0, 1]\n");
                return PD_CLI_USAGE;
            }
            break;
        case 'S':
            if (!pd_cli_parse_u64("--seed", optarg, 0, UINT64_MAX, &o->sampling.seed))
                return PD_CLI_USAGE;
            seeded = true;
            break;
        case 'j':
            if (!pd_cli_parse_u32("--threads", optarg, 0, 1024, &o->n_threads))
                return PD_CLI_USAGE;
            break;
        case 'J':
            o->json = true;
            break;
        case 'B':
            if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "cuda") != 0) {
                fprintf(stderr, "pdctl: --backend must be cpu or cuda, not '%s'\n", optarg);
                return PD_CLI_USAGE;
            }
            o->cuda = strcmp(optarg, "cuda") == 0;
            break;
        case 'W':
            if (strcmp(optarg, "f32") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_F32;
            else if (strcmp(optarg, "f16") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_F16;
            else if (strcmp(optarg, "bf16") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_BF16;
            else {
                fprintf(stderr, "pdctl: --cuda-weights must be f32, f16 or bf16, not '%s'\n",
                        optarg);
                return PD_CLI_USAGE;
            }
            break;
        case 'X':
            o->stop = optarg;
            break;
        case PD_CLI_OPT_CHAT:
        case PD_CLI_OPT_SYSTEM:
        case PD_CLI_OPT_USER:
        case PD_CLI_OPT_TEMPLATE:
            if (!pd_cli_chat_option(&o->chat, c, optarg))
                return PD_CLI_USAGE;
            break;
        case 'h':
            pd_cmd_generate_usage(stdout);
            exit(PD_CLI_OK);
        default:
            return PD_CLI_USAGE;
        }
    }
    if (!seeded)
        o->sampling.seed = pd_cli_random_seed();
    if (p.n_pos > 0) {
        pd_cli_error("generate: unexpected argument '%s'", p.pos[0]);
        return PD_CLI_USAGE;
    }
    int n_inputs = (o->prompt != NULL) + (o->tokens != NULL) + pd_cli_chat_given(&o->chat);
    if (o->model == NULL || n_inputs != 1) {
        fprintf(stderr, "pdctl: generate needs -m MODEL and exactly one of -p TEXT, "
                        "--tokens LIST and a conversation (--chat or --system/--user)\n");
        pd_cmd_generate_usage(stderr);
        return PD_CLI_USAGE;
    }
    return PD_CLI_OK;
}

/* Parse "1,2,3" into a new array; ids are range-checked later against the model. */
static int pd_gen_parse_ids(const char *list, int32_t **ids_p, size_t *n_p)
{
    size_t cap = 1;
    for (const char *s = list; *s != '\0'; s++)
        cap += *s == ',';
    int32_t *ids = malloc(cap * sizeof(int32_t));
    if (ids == NULL)
        return PD_CLI_FAIL;
    size_t n = 0;
    const char *s = list;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno != 0 || v < INT32_MIN || v > INT32_MAX ||
            (*end != ',' && *end != '\0')) {
            fprintf(stderr, "pdctl: --tokens: '%s' is not a comma-separated list of ids\n", list);
            free(ids);
            return PD_CLI_USAGE;
        }
        ids[n++] = (int32_t)v;
        if (*end == '\0')
            break;
        s = end + 1;
    }
    *ids_p = ids;
    *n_p = n;
    return PD_CLI_OK;
}

/* The tokenizer to use: -t, else the model directory's tokenizer.json or tokenizer.bin
 * when it has one, else none (only --tokens prompts then, and the text is not decoded). */
static pd_status_t pd_gen_tokenizer(const pd_gen_opts_t *o, uint32_t vocab, pd_tokenizer_t **tok_p)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    struct stat st;
    *tok_p = NULL;
    if (o->tokenizer != NULL)
        return pd_tokenizer_open(o->tokenizer, vocab, tok_p);
    if (stat(o->model, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof(dir), "%s", o->model);
    } else {
        /* A config.json or .safetensors file stands for its directory. */
        const char *base = strrchr(o->model, '/');
        base = base != NULL ? base + 1 : o->model;
        size_t n = strlen(o->model);
        if (strcmp(base, "config.json") != 0 &&
            (n <= 12 || strcmp(o->model + n - 12, ".safetensors") != 0))
            return PD_OK;
        snprintf(dir, sizeof(dir), "%.*s.", (int)(base - o->model), o->model);
    }
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    if (access(path, F_OK) == 0)
        return pd_tokenizer_open(path, vocab, tok_p);
    snprintf(path, sizeof(path), "%s/tokenizer.bin", dir);
    if (access(path, F_OK) == 0)
        return pd_tokenizer_open(path, vocab, tok_p);
    return PD_OK;
}

static void pd_gen_print_json(const int32_t *prompt, size_t n_prompt, const int32_t *out,
                              size_t n_out, const pd_cli_text_t *text, bool have_text,
                              const char *finish, double prefill_ms, double decode_ms,
                              uint64_t seed)
{
    printf("{\"prompt_tokens\":[");
    for (size_t i = 0; i < n_prompt; i++)
        printf("%s%d", i ? "," : "", prompt[i]);
    printf("],\"tokens\":[");
    for (size_t i = 0; i < n_out; i++)
        printf("%s%d", i ? "," : "", out[i]);
    printf("],\"text\":");
    if (have_text)
        pd_json_fprint_string(stdout, text->data != NULL ? text->data : "", text->len);
    else
        printf("null");
    double prefill_tps = prefill_ms > 0 ? (double)n_prompt / (prefill_ms / 1e3) : 0.0;
    double decode_tps =
        (decode_ms > 0 && n_out > 1) ? (double)(n_out - 1) / (decode_ms / 1e3) : 0.0;
    printf(",\"seed\":%llu", (unsigned long long)seed);
    printf(",\"finish_reason\":\"%s\",\"timings\":{\"prefill_ms\":%.3f,\"decode_ms\":%.3f,"
           "\"prefill_tokens_per_s\":%.1f,\"decode_tokens_per_s\":%.1f}}\n",
           finish, prefill_ms, decode_ms, prefill_tps, decode_tps);
}

int pd_cmd_generate(int argc, char **argv)
{
    pd_gen_opts_t o;
    int rc = pd_gen_parse(argc, argv, &o);
    if (rc != PD_CLI_OK)
        return rc;

    pd_model_t *model = NULL;
    pd_tokenizer_t *tok = NULL;
    pd_tokenizer_stream_t *detok = NULL;
    pd_engine_t *engine = NULL;
    int32_t *prompt = NULL, *out = NULL, *stop = NULL;
    size_t n_prompt = 0, n_out = 0, n_stop = 0;
    void *kv = NULL;
    float *logits = NULL, *scratch = NULL;
    uint32_t *table = NULL;
    pd_cli_text_t text = {0};
    pd_status_t status;
    rc = PD_CLI_FAIL;

    status = pd_model_load(o.model, &model);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot load model %s: %s\n", o.model, pd_status_str(status));
        goto out;
    }
    const pd_model_config_t *c = &model->config;
    status = pd_gen_tokenizer(&o, c->vocab_size, &tok);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot load tokenizer %s: %s\n",
                o.tokenizer != NULL ? o.tokenizer : "(model directory)", pd_status_str(status));
        goto out;
    }

    if (pd_cli_chat_given(&o.chat)) {
        if (tok == NULL) {
            fprintf(stderr, "pdctl: a conversation needs the model's tokenizer.json (or -t)\n");
            rc = PD_CLI_USAGE;
            goto out;
        }
        rc = pd_cli_chat_tokens(&o.chat, tok, &prompt, &n_prompt);
        if (rc != PD_CLI_OK)
            goto out;
        rc = PD_CLI_FAIL;
    } else if (o.prompt != NULL) {
        if (tok == NULL) {
            fprintf(stderr, "pdctl: %s has no tokenizer.bin; give -t TOKENIZER or --tokens\n",
                    o.model);
            rc = PD_CLI_USAGE;
            goto out;
        }
        size_t len = strlen(o.prompt), cap = pd_tokenizer_max_tokens(tok, len);
        prompt = malloc(cap * sizeof(int32_t));
        if (prompt == NULL)
            goto out;
        status = pd_tokenizer_encode(tok, o.prompt, len, PD_TOKENIZE_ADD_SPECIAL, prompt, cap,
                                     &n_prompt);
        if (status != PD_OK) {
            fprintf(stderr, "pdctl: cannot tokenize the prompt: %s\n", pd_status_str(status));
            goto out;
        }
    } else {
        rc = pd_gen_parse_ids(o.tokens, &prompt, &n_prompt);
        if (rc != PD_CLI_OK)
            goto out;
        rc = PD_CLI_FAIL;
        for (size_t i = 0; i < n_prompt; i++) {
            if (prompt[i] < 0 || (uint32_t)prompt[i] >= c->vocab_size) {
                fprintf(stderr,
                        "pdctl: prompt token %d (position %zu) is out of range: the "
                        "vocabulary has %u tokens\n",
                        prompt[i], i, c->vocab_size);
                goto out;
            }
        }
    }
    if (n_prompt == 0) {
        fprintf(stderr, "pdctl: the prompt is empty\n");
        goto out;
    }
    if (o.stop != NULL) {
        rc = pd_gen_parse_ids(o.stop, &stop, &n_stop);
        if (rc != PD_CLI_OK)
            goto out;
        rc = PD_CLI_FAIL;
        if (n_stop > PD_GEN_MAX_STOP) {
            fprintf(stderr, "pdctl: --stop: %zu ids, at most %u\n", n_stop, PD_GEN_MAX_STOP);
            rc = PD_CLI_USAGE;
            goto out;
        }
    }
    if (n_prompt > c->max_seq_len) {
        fprintf(stderr,
                "pdctl: the prompt is %zu tokens, longer than the model's context of "
                "%u\n",
                n_prompt, c->max_seq_len);
        goto out;
    }
    /* Token k (k >= 1) is computed at position n_prompt + k - 1, so the context allows
     * max_seq_len - n_prompt + 1 generated tokens. */
    uint32_t max_new = c->max_seq_len - (uint32_t)n_prompt + 1;
    uint32_t n_gen = o.max_tokens;
    if (n_gen > max_new) {
        pd_log_warn("generating at most %u tokens: the context is %u", max_new, c->max_seq_len);
        n_gen = max_new;
    }

    pd_kv_layout_t layout = {
        .n_layers = c->n_layers,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .block_tokens = PD_GEN_BLOCK_TOKENS,
        .n_blocks = (uint32_t)((n_prompt + n_gen + PD_GEN_BLOCK_TOKENS - 1) / PD_GEN_BLOCK_TOKENS),
    };
    table = malloc(layout.n_blocks * sizeof(uint32_t));
    logits = malloc((size_t)c->vocab_size * sizeof(float));      /* (vocab) */
    scratch = malloc(2 * (size_t)c->vocab_size * sizeof(float)); /* (2 * vocab) */
    out = malloc((size_t)n_gen * sizeof(int32_t));
    if (table == NULL || logits == NULL || scratch == NULL || out == NULL) {
        fprintf(stderr, "pdctl: out of memory\n");
        goto out;
    }
    for (uint32_t i = 0; i < layout.n_blocks; i++)
        table[i] = i;
    status = o.cuda ? pd_engine_create_cuda(model, &o.gpu, &engine)
                    : pd_engine_create(model, PD_BACKEND_CPU, o.n_threads, &engine);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot start the %s compute engine: %s\n", o.cuda ? "cuda" : "cpu",
                pd_status_str(status));
        goto out;
    }
    /* kv: (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32, in the backend's memory */
    status = pd_engine_buf_alloc(engine, pd_kv_pool_bytes(&layout), &kv);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: no memory for a %zu-byte KV pool: %s\n", pd_kv_pool_bytes(&layout),
                pd_status_str(status));
        goto out;
    }

    const char *finish = "length";
    uint64_t t0 = pd_time_now_ns(), t1 = t0;
    for (uint32_t k = 0; k < n_gen; k++) {
        pd_fwd_seq_t seq = {
            .tokens = k == 0 ? prompt : &out[k - 1],
            .n_tokens = k == 0 ? (uint32_t)n_prompt : 1,
            .pos = k == 0 ? 0 : (uint32_t)n_prompt + k - 1,
            .block_table = table,
            .n_table = layout.n_blocks,
            .logits = logits,
        };
        status = pd_engine_forward(engine, kv, &layout, &seq, 1, NULL, NULL);
        if (status != PD_OK) {
            fprintf(stderr, "\npdctl: forward step %u failed: %s\n", k, pd_status_str(status));
            goto out;
        }
        int32_t id = pd_sample_token(&o.sampling, logits, c->vocab_size, k, scratch);
        out[n_out++] = id;
        if (k == 0)
            t1 = pd_time_now_ns();
        if (tok != NULL) {
            const char *piece;
            size_t plen;
            if (detok == NULL &&
                pd_tokenizer_stream_create(tok, 0, n_prompt > 0 ? prompt[n_prompt - 1] : -1,
                                           &detok) != PD_OK)
                goto out;
            if (pd_tokenizer_stream_push(detok, id, &piece, &plen) == PD_OK) {
                if (!pd_cli_text_append(&text, piece, plen))
                    goto out;
                /* Like llama2.c's safe_printf: a lone control byte is not printed. */
                bool control =
                    plen == 1 &&
                    ((unsigned char)piece[0] < 0x20 || (unsigned char)piece[0] == 0x7f) &&
                    piece[0] != '\n' && piece[0] != '\t';
                if (!o.json && !control) {
                    fwrite(piece, 1, plen, stdout);
                    fflush(stdout);
                }
            }
        } else if (!o.json) {
            printf("%s%d", k ? " " : "", id);
            fflush(stdout);
        }
        /* The ids of the model's config (eos_token_id of config.json and
         * generation_config.json), else the tokenizer's EOS (2 for llama2.c and the byte
         * tokenizer). Finish reasons are the cluster's: eos, stop (a --stop id), length. */
        if (model->config.n_eos > 0 ? pd_model_is_eos(&model->config, id)
                                    : id == (tok != NULL ? pd_tokenizer_eos(tok) : 2)) {
            finish = "eos";
            break;
        }
        bool is_stop = false;
        for (size_t i = 0; i < n_stop; i++)
            is_stop = is_stop || stop[i] == id;
        if (is_stop) {
            finish = "stop";
            break;
        }
    }
    uint64_t t2 = pd_time_now_ns();
    if (detok != NULL) {
        /* A character the last token left unfinished shows as U+FFFD. */
        const char *rest;
        size_t rest_len;
        if (pd_tokenizer_stream_finish(detok, &rest, &rest_len) == PD_OK && rest_len > 0) {
            if (!pd_cli_text_append(&text, rest, rest_len))
                goto out;
            if (!o.json)
                fwrite(rest, 1, rest_len, stdout);
        }
    }
    double prefill_ms = pd_time_ns_to_ms(t1 - t0);
    double decode_ms = pd_time_ns_to_ms(t2 - t1);
    if (o.json) {
        pd_gen_print_json(prompt, n_prompt, out, n_out, &text, tok != NULL, finish, prefill_ms,
                          decode_ms, o.sampling.seed);
    } else {
        printf("\n");
        fflush(stdout);
        fprintf(stderr,
                "pdctl: prompt %zu tokens in %.1f ms (%.1f tok/s), generated %zu tokens, "
                "%.1f ms decoding (%.1f tok/s), finish %s, seed %llu\n",
                n_prompt, prefill_ms, prefill_ms > 0 ? n_prompt / (prefill_ms / 1e3) : 0.0, n_out,
                decode_ms, decode_ms > 0 && n_out > 1 ? (n_out - 1) / (decode_ms / 1e3) : 0.0,
                finish, (unsigned long long)o.sampling.seed);
    }
    fflush(stdout);
    rc = PD_CLI_OK;
out:
    pd_engine_buf_free(engine, kv);
    pd_engine_destroy(&engine);
    pd_model_destroy(&model);
    pd_tokenizer_stream_destroy(&detok);
    pd_tokenizer_destroy(&tok);
    free(prompt);
    free(stop);
    free(out);
    free(table);
    free(logits);
    free(scratch);
    free(text.data);
    return rc;
}
