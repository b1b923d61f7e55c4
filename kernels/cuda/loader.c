/* The programs' side of the CUDA module (module.h): open lib/libpdkv-cuda.so on first use
 * and forward the public CUDA entry points through its table, so that no program maps the
 * CUDA runtime or cuBLASLt unless it asks for CUDA. */
#include "cuda/module.h"

#include "pd/log.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t pd_cuda_module_once = PTHREAD_ONCE_INIT;
static const pd_cuda_module_ops_t *pd_cuda_module_table;
static char pd_cuda_module_why[PATH_MAX + 256];

/* The module's path: $PD_CUDA_MODULE, else ../lib/ beside the directory of the running
 * program (build/bin -> build/lib, PREFIX/bin -> PREFIX/lib). */
static int pd_cuda_module_path(char *path, size_t path_bytes)
{
    const char *env = getenv("PD_CUDA_MODULE");
    if (env != NULL && env[0] != '\0')
        return snprintf(path, path_bytes, "%s", env) < (int)path_bytes ? 0 : -1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    return snprintf(path, path_bytes, "%s/../lib/%s", exe, PD_CUDA_MODULE_FILE) < (int)path_bytes
               ? 0
               : -1;
}

static void pd_cuda_module_open(void)
{
    char path[PATH_MAX];
    if (pd_cuda_module_path(path, sizeof(path)) != 0) {
        snprintf(pd_cuda_module_why, sizeof(pd_cuda_module_why),
                 "no CUDA: cannot locate %s (set PD_CUDA_MODULE to its path)", PD_CUDA_MODULE_FILE);
        return;
    }
    /* RTLD_NOW: a missing symbol is reported here, not as a crash in the middle of a run. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
#ifdef PD_CUDA_MODULE_BUILT
        snprintf(pd_cuda_module_why, sizeof(pd_cuda_module_why),
                 "no CUDA: cannot load the CUDA module: %s", dlerror());
#else
        snprintf(pd_cuda_module_why, sizeof(pd_cuda_module_why),
                 "no CUDA: this build has no CUDA module (configured without a CUDA toolkit "
                 "or with -DPD_WITH_CUDA=OFF): %s",
                 dlerror());
#endif
        return;
    }
    pd_cuda_module_ops_fn fn;
    /* POSIX's sanctioned way to turn dlsym's object pointer into a function pointer. */
    *(void **)(&fn) = dlsym(h, PD_CUDA_MODULE_SYMBOL);
    const pd_cuda_module_ops_t *ops = fn != NULL ? fn() : NULL;
    if (ops == NULL || ops->abi != PD_CUDA_MODULE_ABI) {
        snprintf(pd_cuda_module_why, sizeof(pd_cuda_module_why),
                 "no CUDA: %s is not a CUDA module of this build (interface %u, expected %u)", path,
                 ops != NULL ? ops->abi : 0u, (unsigned)PD_CUDA_MODULE_ABI);
        dlclose(h);
        return;
    }
    /* The handle stays open for the life of the process: backends point into it. */
    pd_cuda_module_table = ops;
}

const pd_cuda_module_ops_t *pd_cuda_module_get(char *why, size_t why_bytes)
{
    pthread_once(&pd_cuda_module_once, pd_cuda_module_open);
    if (pd_cuda_module_table == NULL && why != NULL && why_bytes > 0)
        snprintf(why, why_bytes, "%s", pd_cuda_module_why);
    return pd_cuda_module_table;
}

int pd_cuda_device_count(char *why, size_t why_bytes)
{
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, why_bytes);
    return m != NULL ? m->device_count(why, why_bytes) : 0;
}

pd_status_t pd_backend_cuda_create(const pd_backend_cuda_opts_t *opts,
                                   const pd_model_config_t *config, pd_backend_t *backend_p)
{
    char why[sizeof(pd_cuda_module_why)];
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));
    if (m == NULL) {
        pd_log_error("cuda backend: %s", why);
        return PD_ERR_UNSUPPORTED;
    }
    return m->backend_create(opts, config, backend_p);
}

pd_status_t pd_cuda_bench_copy(size_t bytes, uint32_t runs, double *rate_p)
{
    char why[sizeof(pd_cuda_module_why)];
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));
    if (m == NULL) {
        pd_log_error("cuda bench: %s", why);
        return PD_ERR_UNSUPPORTED;
    }
    return m->bench_copy(bytes, runs, rate_p);
}

pd_status_t pd_cuda_bench_attention(pd_cuda_attn_bench_t *b)
{
    char why[sizeof(pd_cuda_module_why)];
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));
    if (m == NULL) {
        pd_log_error("cuda bench: %s", why);
        return PD_ERR_UNSUPPORTED;
    }
    return m->bench_attention(b);
}

pd_status_t pd_cuda_bench_ipc(size_t bytes, uint32_t runs, double *rate_p)
{
    char why[sizeof(pd_cuda_module_why)];
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));
    if (m == NULL) {
        pd_log_error("cuda bench: %s", why);
        return PD_ERR_UNSUPPORTED;
    }
    return m->bench_ipc(bytes, runs, rate_p);
}

int pd_cuda_bench_ipc_peer_main(void)
{
    const char *v = getenv("PD_CUDA_IPC_PEER");
    if (v == NULL)
        return -1;
    unsigned long long bytes = 0;
    int fd_in = -1, fd_out = -1;
    if (sscanf(v, "%llu,%d,%d", &bytes, &fd_in, &fd_out) != 3 || bytes == 0 || fd_in < 0 ||
        fd_out < 0) {
        pd_log_error("cuda bench: malformed PD_CUDA_IPC_PEER '%s'", v);
        return 2;
    }
    char why[sizeof(pd_cuda_module_why)];
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));
    if (m == NULL) {
        pd_log_error("cuda bench: %s", why);
        return 1;
    }
    return m->bench_ipc_peer((size_t)bytes, fd_in, fd_out);
}

/* IPC (pd/cuda_ipc.h): the module's functions, or "no CUDA". */
#define PD_CUDA_IPC_MODULE(m)                                                                      \
    char why[sizeof(pd_cuda_module_why)];                                                          \
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(why, sizeof(why));                          \
    if (m == NULL) {                                                                               \
        pd_log_error("cuda ipc: %s", why);                                                         \
        return PD_ERR_UNSUPPORTED;                                                                 \
    }

pd_status_t pd_cuda_ipc_export(const void *dev_ptr, void *handle)
{
    PD_CUDA_IPC_MODULE(m)
    return m->ipc_export(dev_ptr, handle);
}

pd_status_t pd_cuda_ipc_open(const void *handle, void **dev_ptr_p)
{
    PD_CUDA_IPC_MODULE(m)
    return m->ipc_open(handle, dev_ptr_p);
}

void pd_cuda_ipc_close(void *dev_ptr)
{
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(NULL, 0);
    if (m != NULL && dev_ptr != NULL)
        m->ipc_close(dev_ptr);
}

pd_status_t pd_cuda_ipc_stream_create(uint32_t n_events, void **stream_p)
{
    PD_CUDA_IPC_MODULE(m)
    return m->ipc_stream_create(n_events, stream_p);
}

void pd_cuda_ipc_stream_destroy(void *stream)
{
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(NULL, 0);
    if (m != NULL && stream != NULL)
        m->ipc_stream_destroy(stream);
}

/* Per-copy and per-event calls: the stream exists, so the module is loaded. */
pd_status_t pd_cuda_ipc_copy_async(void *stream, void *dst, const void *src, size_t bytes)
{
    return pd_cuda_module_table->ipc_copy_async(stream, dst, src, bytes);
}

pd_status_t pd_cuda_ipc_event_record(void *stream, uint32_t *event_p)
{
    return pd_cuda_module_table->ipc_event_record(stream, event_p);
}

pd_status_t pd_cuda_ipc_event_query(void *stream, uint32_t event)
{
    return pd_cuda_module_table->ipc_event_query(stream, event);
}

pd_status_t pd_cuda_host_register(void *p, size_t bytes)
{
    PD_CUDA_IPC_MODULE(m)
    return m->host_register(p, bytes);
}

void pd_cuda_host_unregister(void *p)
{
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(NULL, 0);
    if (m != NULL && p != NULL)
        m->host_unregister(p);
}

pd_status_t pd_cuda_dev_alloc(size_t bytes, void **p_p)
{
    PD_CUDA_IPC_MODULE(m)
    return m->dev_alloc(bytes, p_p);
}

void pd_cuda_dev_free(void *p)
{
    const pd_cuda_module_ops_t *m = pd_cuda_module_get(NULL, 0);
    if (m != NULL && p != NULL)
        m->dev_free(p);
}

pd_status_t pd_cuda_dev_fill(void *p, size_t bytes, uint64_t seed)
{
    PD_CUDA_IPC_MODULE(m)
    return m->dev_fill(p, bytes, seed);
}

pd_status_t pd_cuda_dev_to_host(void *host, const void *dev, size_t bytes)
{
    PD_CUDA_IPC_MODULE(m)
    return m->dev_to_host(host, dev, bytes);
}
