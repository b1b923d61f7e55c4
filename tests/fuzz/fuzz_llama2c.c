/* Fuzz target for the header of llama2.c checkpoints: any bytes give a model shape that
 * is consistent or a refusal, never a crash, an overflow (UBSan) or a read out of bounds. */
#include "fuzz_util.h"
#include "load_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pd_fuzz_quiet();
    /* A copy of exactly size bytes, so that ASan sees any read past them. */
    unsigned char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    pd_load_map_t map = {copy, size};
    pd_model_config_t c;
    bool shared = false;
    if (pd_load_llama2c_config("fuzz", &map, &c, &shared) == PD_OK &&
        (c.dim == 0 || c.n_heads == 0 || c.n_kv_heads == 0 || c.dim % c.n_heads != 0))
        abort();
    free(copy);
    return 0;
}
