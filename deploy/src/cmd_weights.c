/* The weight figures `pdctl model info` and `pdctl size` print: bytes in memory, bytes a
 * decode step reads, and the decode rate that reading them allows at this machine's
 * uncached read rate (measured, or given with --read-gbps). */
#include "pdctl_int.h"

#include "pd/ops.h"

#include <stdio.h>
#include <unistd.h>

/* Buffer for the read-rate measurement: larger than the caches of any machine here. */
#define PD_CLI_READ_BYTES ((size_t)256 << 20)

void pd_cli_weights_measure(const pd_model_config_t *c, pd_dtype_t dtype, double read_gbps,
                            pd_cli_weights_t *w)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    w->dtype = dtype;
    w->weight_bytes = pd_model_config_weight_bytes(c, dtype);
    w->decode_bytes = pd_model_config_decode_bytes(c, dtype);
    w->n_cores = n > 0 ? (uint32_t)n : 1;
    w->measured = read_gbps <= 0.0;
    if (w->measured) {
        w->gbps_1 = pd_cpu_read_rate(PD_CLI_READ_BYTES, 1, 3);
        w->gbps_all =
            w->n_cores > 1 ? pd_cpu_read_rate(PD_CLI_READ_BYTES, w->n_cores, 3) : w->gbps_1;
    } else {
        w->gbps_1 = w->gbps_all = read_gbps;
    }
}

static double pd_cli_bound(const pd_cli_weights_t *w, double gbps)
{
    return w->decode_bytes > 0 ? gbps * 1e9 / (double)w->decode_bytes : 0.0;
}

void pd_cli_weights_print(const pd_cli_weights_t *w)
{
    printf("weights       %s, %.1f MB (a decode step reads %.1f MB)\n", pd_dtype_name(w->dtype),
           (double)w->weight_bytes / 1e6, (double)w->decode_bytes / 1e6);
    if (w->measured)
        printf("decode bound  %.0f tokens/s at %.1f GB/s (uncached read, 1 thread); %.0f "
               "tokens/s at %.1f GB/s (%u threads)\n",
               pd_cli_bound(w, w->gbps_1), w->gbps_1, pd_cli_bound(w, w->gbps_all), w->gbps_all,
               w->n_cores);
    else
        printf("decode bound  %.0f tokens/s at %.1f GB/s (--read-gbps)\n",
               pd_cli_bound(w, w->gbps_1), w->gbps_1);
}

void pd_cli_weights_print_json(const pd_cli_weights_t *w)
{
    printf(",\"weight_dtype\":\"%s\",\"weight_bytes\":%llu,\"decode_bytes_per_token\":%llu,"
           "\"read_gbps_1\":%.3f,\"read_gbps_all\":%.3f,\"read_measured\":%s,"
           "\"decode_bound_tok_s_1\":%.1f,\"decode_bound_tok_s_all\":%.1f,\"cores\":%u",
           pd_dtype_name(w->dtype), (unsigned long long)w->weight_bytes,
           (unsigned long long)w->decode_bytes, w->gbps_1, w->gbps_all,
           w->measured ? "true" : "false", pd_cli_bound(w, w->gbps_1), pd_cli_bound(w, w->gbps_all),
           w->n_cores);
}
