/* Fuzz target for llama2.c tokenizer.bin files: any bytes load or are refused with a
 * status, never a crash, a leak or a read out of bounds; a tokenizer that loads encodes,
 * decodes and streams without one either. */
#include "fuzz_tok_exercise.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pd_fuzz_quiet();
    pd_tokenizer_t *tok = NULL;
    if (pd_tokenizer_load(pd_fuzz_as_file(data, size), 0, &tok) == PD_OK) {
        pd_fuzz_tok_exercise(tok);
        pd_tokenizer_destroy(&tok);
    } else if (tok != NULL) {
        abort(); /* a refusal leaves no tokenizer behind */
    }
    return 0;
}
