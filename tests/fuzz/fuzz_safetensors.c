/* Fuzz target for safetensors files (u64 header length, JSON header, tensor data): any
 * bytes are validated as loading validates them or refused with a status, never with a
 * crash, an overflow (UBSan) or a read out of bounds. The input is the whole file. */
#include "fuzz_util.h"
#include "load_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pd_fuzz_quiet();
    size_t n = 0;
    /* Any input may be refused; only a crash or a sanitizer report fails. */
    pd_status_ignore(pd_load_safetensors_check(pd_fuzz_as_file(data, size), &n));
    return 0;
}
