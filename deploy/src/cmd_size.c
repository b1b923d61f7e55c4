/* pdctl size: KV cache arithmetic for a model (f32 K and V, the CPU compute type), and
 * its weights' bytes and decode bound. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/json.h"
#include "pd/kv_layout.h"
#include "pd/loader.h"
#include "pd/model.h"
#include "pd/presets.h"

#include <stdio.h>
#include <string.h>

static void pd_cmd_size_usage(FILE *out)
{
    fprintf(out, "usage: pdctl size (-m MODEL | --preset NAME) [--tokens N] [--pool-mb M]\n"
                 "                  [--block-tokens B] [--dtype T] [--read-gbps R] [--json]\n"
                 "\n"
                 "KV cache size of a model: bytes per token (2 x layers x kv_heads x head_dim x 4\n"
                 "for f32), per block of B tokens, for N tokens (whole blocks), and how many\n"
                 "blocks and tokens a pool of M MiB holds. Then the weights: their bytes in the\n"
                 "model's dtype (or --dtype), the bytes a decode step reads, and the decode\n"
                 "rate that allows at this machine's uncached read rate (measured, about a\n"
                 "second, or --read-gbps). Reads only the model's config and file headers.\n"
                 "\n"
                 "  -m, --model PATH    checkpoint directory or llama2.c .bin\n"
                 "  --preset NAME       a preset instead of a model file\n"
                 "  --tokens N          tokens to size (default: the model's context)\n"
                 "  --pool-mb M         pool size in MiB (default 1024)\n"
                 "  --block-tokens B    tokens per block (default 16)\n"
                 "  --dtype T           weights in f32, f16, bf16 or int8 (default: the\n"
                 "                      model's own; f32 for a preset)\n"
                 "  --read-gbps R       read rate in GB/s instead of measuring it\n"
                 "  --json              one JSON object on stdout\n");
}

int pd_cmd_size(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"model", 'm', true, 'm', NULL},      {"preset", 0, true, 'P', NULL},
        {"tokens", 0, true, 'n', NULL},       {"pool-mb", 0, true, 'M', NULL},
        {"block-tokens", 0, true, 'B', NULL}, {"dtype", 0, true, 'd', NULL},
        {"read-gbps", 0, true, 'r', NULL},    {"json", 0, false, 'j', NULL},
        {"help", 'h', false, 'h', NULL},      PD_CLI_OPT_END_TABLE,
    };
    const char *model = NULL, *preset = NULL;
    uint64_t n_tokens = 0, pool_mb = 1024;
    uint32_t block_tokens = 16;
    bool json = false, have_tokens = false, have_dtype = false;
    pd_dtype_t dtype = PD_DTYPE_F32;
    float read_gbps = 0.0f;
    int c;

    pd_cli_parser_t pcli;
    pd_cli_parser_init(&pcli, "size", argc, argv, opts);
    while ((c = pd_cli_opt_next(&pcli)) != PD_CLI_OPT_END) {
        const char *optarg = pcli.arg;
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'P':
            preset = optarg;
            break;
        case 'n':
            if (!pd_cli_parse_u64("--tokens", optarg, 0, 1ull << 40, &n_tokens))
                return PD_CLI_USAGE;
            have_tokens = true;
            break;
        case 'M':
            if (!pd_cli_parse_u64("--pool-mb", optarg, 0, 1ull << 30, &pool_mb))
                return PD_CLI_USAGE;
            break;
        case 'B':
            if (!pd_cli_parse_u32("--block-tokens", optarg, 1, 1u << 16, &block_tokens))
                return PD_CLI_USAGE;
            break;
        case 'd':
            if (pd_dtype_parse(optarg, &dtype) != PD_OK) {
                fprintf(stderr, "pdctl: --dtype: '%s' is not f32, f16, bf16 or int8\n", optarg);
                return PD_CLI_USAGE;
            }
            have_dtype = true;
            break;
        case 'r':
            if (!pd_cli_parse_f32("--read-gbps", optarg, 0.001f, 1e6f, &read_gbps))
                return PD_CLI_USAGE;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            pd_cmd_size_usage(stdout);
            return PD_CLI_OK;
        default:
            /* the parser said what was wrong */
            return PD_CLI_USAGE;
        }
    }
    if (pcli.n_pos != 0 || (model == NULL) == (preset == NULL)) {
        fprintf(stderr, "pdctl: size needs exactly one of -m MODEL and --preset NAME\n");
        pd_cmd_size_usage(stderr);
        return PD_CLI_USAGE;
    }

    pd_model_config_t config;
    pd_status_t status =
        model != NULL ? pd_model_config_load(model, &config) : pd_model_preset(preset, &config);
    if (status != PD_OK) {
        fprintf(stderr, "pdctl: cannot read the config of %s: %s\n", model != NULL ? model : preset,
                pd_status_str(status));
        return PD_CLI_FAIL;
    }
    if (!have_tokens)
        n_tokens = config.max_seq_len;
    if (!have_dtype && model != NULL && pd_model_dtype_load(model, &dtype) != PD_OK) {
        fprintf(stderr, "pdctl: cannot read the weight dtype of %s\n", model);
        return PD_CLI_FAIL;
    }
    pd_cli_weights_t wf;
    pd_cli_weights_measure(&config, dtype, read_gbps, &wf);
    pd_kv_layout_t layout = {
        .n_layers = config.n_layers,
        .n_kv_heads = config.n_kv_heads,
        .head_dim = config.head_dim,
        .block_tokens = block_tokens,
        .n_blocks = 1,
    };
    uint64_t token_bytes = 2 * (uint64_t)layout.n_layers * pd_kv_token_bytes(&layout);
    uint64_t block_bytes = pd_kv_block_bytes(&layout);
    uint64_t n_blocks = (n_tokens + block_tokens - 1) / block_tokens;
    uint64_t pool_bytes = pool_mb << 20;
    uint64_t pool_blocks = pool_bytes / block_bytes;
    uint64_t pool_tokens = pool_blocks * block_tokens;

    if (json) {
        printf("{\"model_id\":");
        pd_json_fprint_string(stdout, config.model_id, strlen(config.model_id));
        printf(",\"n_layers\":%u,\"n_kv_heads\":%u,\"head_dim\":%u,"
               "\"max_seq_len\":%u,\"dtype\":\"f32\",\"kv_bytes_per_token\":%llu,"
               "\"block_tokens\":%u,\"kv_bytes_per_block\":%llu,\"tokens\":%llu,"
               "\"blocks\":%llu,\"kv_bytes\":%llu,\"pool_mb\":%llu,\"pool_blocks\":%llu,"
               "\"pool_tokens\":%llu",
               config.n_layers, config.n_kv_heads, config.head_dim, config.max_seq_len,
               (unsigned long long)token_bytes, block_tokens, (unsigned long long)block_bytes,
               (unsigned long long)n_tokens, (unsigned long long)n_blocks,
               (unsigned long long)(n_blocks * block_bytes), (unsigned long long)pool_mb,
               (unsigned long long)pool_blocks, (unsigned long long)pool_tokens);
        pd_cli_weights_print_json(&wf);
        printf("}\n");
        return PD_CLI_OK;
    }
    printf("model %s: %u layers, %u KV heads, head_dim %u, context %u\n", config.model_id,
           config.n_layers, config.n_kv_heads, config.head_dim, config.max_seq_len);
    printf("KV per token:          %llu bytes (f32)\n", (unsigned long long)token_bytes);
    printf("KV per block (%u tok): %llu bytes\n", block_tokens, (unsigned long long)block_bytes);
    printf("%llu tokens:           %llu blocks, %.2f MiB\n", (unsigned long long)n_tokens,
           (unsigned long long)n_blocks, (double)(n_blocks * block_bytes) / (1 << 20));
    printf("pool of %llu MiB:      %llu blocks, %llu tokens\n", (unsigned long long)pool_mb,
           (unsigned long long)pool_blocks, (unsigned long long)pool_tokens);
    pd_cli_weights_print(&wf);
    return PD_CLI_OK;
}
