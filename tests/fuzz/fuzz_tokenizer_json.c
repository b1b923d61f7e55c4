/* Fuzz target for Hugging Face tokenizer.json (and its tokenizer_config.json after a
 * "\n----\n" line): any bytes load or are refused with a status, never a crash, a leak or
 * a read out of bounds; a tokenizer that loads encodes, decodes and streams without one
 * either. */
#include "fuzz_tok_exercise.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pd_fuzz_quiet();
    char *json, *config;
    size_t json_len, config_len;
    pd_fuzz_split(data, size, &json, &json_len, &config, &config_len);
    pd_tokenizer_t *tok = NULL;
    if (pd_tokenizer_load_hf_mem(json, json_len, config, config_len, "fuzz", &tok) == PD_OK) {
        pd_fuzz_tok_exercise(tok);
        pd_tokenizer_destroy(&tok);
    } else if (tok != NULL) {
        abort();
    }
    free(json);
    free(config);
    return 0;
}
