/* The CUDA backend as a loadable module.
 *
 * Everything that needs the CUDA runtime or cuBLASLt lives in lib/libpdkv-cuda.so, which
 * the programs open with dlopen the first time something asks for CUDA (--backend cuda, a
 * device count). Linking cudart and cuBLASLt into every program cost each process start
 * about half a second of CPU on the build machines, although most runs never touch a GPU.
 *
 * The module exports one symbol, pd_cuda_module_ops, returning the table below; the
 * programs' side (loader.c) forwards the public CUDA entry points of pd/ops.h and
 * cuda/bench.h through it. The module in turn calls a few functions of the program
 * (logging, status names, weight rows), which the programs export by a dynamic list
 * (host.syms); a program missing one of them fails to load the module with a clear error
 * instead of crashing. */
#ifndef PD_CUDA_MODULE_H
#define PD_CUDA_MODULE_H

#include "pd/cuda_ipc.h"
#include "pd/ops.h"
#include "pd/status.h"

#include "cuda/bench.h"

#include <stddef.h>
#include <stdint.h>

/* Changes whenever the table changes; the loader refuses a module of another version
 * (a stale libpdkv-cuda.so beside newer programs). */
#define PD_CUDA_MODULE_ABI 4

/* The module's file name, looked for in ../lib beside the program's bin/ directory unless
 * the environment variable PD_CUDA_MODULE names a file. */
#define PD_CUDA_MODULE_FILE "libpdkv-cuda.so"

typedef struct pd_cuda_module_ops {
    uint32_t abi; /* PD_CUDA_MODULE_ABI of the module's build */
    int (*device_count)(char *why, size_t why_bytes);
    pd_status_t (*backend_create)(const pd_backend_cuda_opts_t *opts,
                                  const pd_model_config_t *config, pd_backend_t *backend_p);
    pd_status_t (*bench_copy)(size_t bytes, uint32_t runs, double *rate_p);
    pd_status_t (*bench_attention)(pd_cuda_attn_bench_t *b);
    pd_status_t (*bench_ipc)(size_t bytes, uint32_t runs, double *rate_p);
    int (*bench_ipc_peer)(size_t bytes, int fd_in, int fd_out);
    pd_status_t (*ipc_export)(const void *dev_ptr, void *handle);
    pd_status_t (*ipc_open)(const void *handle, void **dev_ptr_p);
    void (*ipc_close)(void *dev_ptr);
    pd_status_t (*ipc_stream_create)(uint32_t n_events, void **ctx_p);
    void (*ipc_stream_destroy)(void *ctx);
    pd_status_t (*ipc_copy_async)(void *ctx, void *dst, const void *src, size_t bytes);
    pd_status_t (*ipc_event_record)(void *ctx, uint32_t *event_p);
    pd_status_t (*ipc_event_query)(void *ctx, uint32_t event);
    pd_status_t (*host_register)(void *p, size_t bytes);
    void (*host_unregister)(void *p);
    pd_status_t (*dev_alloc)(size_t bytes, void **p_p);
    void (*dev_free)(void *p);
    pd_status_t (*dev_fill)(void *p, size_t bytes, uint64_t seed);
    pd_status_t (*dev_to_host)(void *host, const void *dev, size_t bytes);
} pd_cuda_module_ops_t;

/* The module's one export (a const table with static storage). */
typedef const pd_cuda_module_ops_t *(*pd_cuda_module_ops_fn)(void);
#define PD_CUDA_MODULE_SYMBOL "pd_cuda_module_ops"

/* The module's table, opening the module on the first call (thread-safe); NULL when it
 * cannot be loaded, with the reason in why (why_bytes, may be NULL). */
const pd_cuda_module_ops_t *pd_cuda_module_get(char *why, size_t why_bytes);

/* Inside the module: the functions the table points at. */
#ifdef __cplusplus
extern "C" {
#endif
int pd_cuda_mod_device_count(char *why, size_t why_bytes);
PD_MUST_CHECK pd_status_t pd_cuda_mod_backend_create(const pd_backend_cuda_opts_t *opts,
                                                     const pd_model_config_t *config,
                                                     pd_backend_t *backend_p);
PD_MUST_CHECK pd_status_t pd_cuda_mod_bench_copy(size_t bytes, uint32_t runs, double *rate_p);
PD_MUST_CHECK pd_status_t pd_cuda_mod_bench_attention(pd_cuda_attn_bench_t *b);
PD_MUST_CHECK pd_status_t pd_cuda_mod_bench_ipc(size_t bytes, uint32_t runs, double *rate_p);
int pd_cuda_mod_bench_ipc_peer(size_t bytes, int fd_in, int fd_out);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_export(const void *dev_ptr, void *handle);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_open(const void *handle, void **dev_ptr_p);
void pd_cuda_mod_ipc_close(void *dev_ptr);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_stream_create(uint32_t n_events, void **ctx_p);
void pd_cuda_mod_ipc_stream_destroy(void *ctx);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_copy_async(void *ctx, void *dst, const void *src,
                                                     size_t bytes);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_event_record(void *ctx, uint32_t *event_p);
PD_MUST_CHECK pd_status_t pd_cuda_mod_ipc_event_query(void *ctx, uint32_t event);
PD_MUST_CHECK pd_status_t pd_cuda_mod_host_register(void *p, size_t bytes);
void pd_cuda_mod_host_unregister(void *p);
PD_MUST_CHECK pd_status_t pd_cuda_mod_dev_alloc(size_t bytes, void **p_p);
void pd_cuda_mod_dev_free(void *p);
PD_MUST_CHECK pd_status_t pd_cuda_mod_dev_fill(void *p, size_t bytes, uint64_t seed);
PD_MUST_CHECK pd_status_t pd_cuda_mod_dev_to_host(void *host, const void *dev, size_t bytes);
#ifdef __cplusplus
}
#endif

#endif
