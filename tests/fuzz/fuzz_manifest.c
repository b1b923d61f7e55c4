/* Fuzz target for YAML cluster manifests: any bytes load or are refused with a reason,
 * never a crash or a read out of bounds; a manifest that loads gives every role it names
 * a command line. */
#include "fuzz_util.h"
#include "pd/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_manifest_t m;
    static pd_manifest_args_t args;
    char err[512];
    pd_fuzz_quiet();
    if (pd_manifest_load(pd_fuzz_as_file(data, size), &m, err, sizeof(err)) != PD_OK) {
        if (err[0] == '\0')
            abort(); /* a refusal says why */
        return 0;
    }
    static const char *const roles[] = {"router", "prefill", "decode", "both", "gateway"};
    for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
        for (uint32_t i = 0; i < 4; i++) {
            pd_manifest_proc_t proc;
            if (pd_manifest_proc_find(&m, roles[r], i, &proc, err, sizeof(err)) != PD_OK)
                break;
            /* Any input may be refused; only a crash or a sanitizer report fails. */
            pd_status_ignore(pd_manifest_args_build(&m, &proc, "127.0.0.1", "127.0.0.1", &args));
        }
    }
    return 0;
}
