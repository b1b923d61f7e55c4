/* CUDA IPC for KV between GPU processes of one host (transfer/include/pd/xfer_ipc.h has
 * the host-side half): export and open a pool allocation's handle, a stream with events
 * for layer-wise copies into a mapped peer pool, and pd-kbench's IPC copy benchmark,
 * which measures the copy into a second process's memory against the same-process
 * device-to-device copy. */
#include "cuda/common.cuh"

extern "C" {
#include "cuda/module.h"
}

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static_assert(sizeof(cudaIpcMemHandle_t) == PD_CUDA_IPC_HANDLE_BYTES, "IPC handle size");

extern "C" pd_status_t pd_cuda_mod_ipc_export(const void *dev_ptr, void *handle)
{
    /* The handle names the whole allocation: dev_ptr must be what cudaMalloc returned
     * (the pools are one allocation each, made by buf_alloc). */
    cudaIpcMemHandle_t h;
    pd_status_t st = pd_cuda_check(cudaIpcGetMemHandle(&h, const_cast<void *>(dev_ptr)),
                                   "IPC handle of the pool");
    if (st == PD_OK)
        memcpy(handle, &h, sizeof(h));
    return st;
}

extern "C" pd_status_t pd_cuda_mod_ipc_open(const void *handle, void **dev_ptr_p)
{
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof(h));
    void *p = NULL;
    pd_status_t st = pd_cuda_check(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess),
                                   "open a peer's IPC handle");
    if (st == PD_OK)
        *dev_ptr_p = p;
    return st;
}

extern "C" void pd_cuda_mod_ipc_close(void *dev_ptr)
{
    if (dev_ptr != NULL)
        pd_cuda_check(cudaIpcCloseMemHandle(dev_ptr), "close a peer's IPC mapping");
}

extern "C" pd_status_t pd_cuda_mod_host_register(void *p, size_t bytes)
{
    return pd_cuda_check(cudaHostRegister(p, bytes, cudaHostRegisterDefault), "pin host memory");
}

extern "C" void pd_cuda_mod_host_unregister(void *p)
{
    if (p != NULL)
        pd_cuda_check(cudaHostUnregister(p), "unpin host memory");
}

/* Bytes from (seed, index): fresh data for IPC checks without a host round trip. */
__global__ void pd_cuda_ipc_fill(unsigned char *p, size_t n, uint64_t seed)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + (i / 8) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        p[i] = (unsigned char)(z >> (8 * (i % 8)));
    }
}

extern "C" pd_status_t pd_cuda_mod_dev_alloc(size_t bytes, void **p_p)
{
    void *p = NULL;
    pd_status_t st = pd_cuda_check(cudaSetDevice(0), "set device");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMalloc(&p, bytes ? bytes : 1), "device memory");
    if (st == PD_OK)
        *p_p = p;
    return st;
}

extern "C" void pd_cuda_mod_dev_free(void *p)
{
    if (p != NULL)
        cudaFree(p);
}

extern "C" pd_status_t pd_cuda_mod_dev_fill(void *p, size_t bytes, uint64_t seed)
{
    pd_cuda_ipc_fill<<<1024, 256>>>((unsigned char *)p, bytes, seed);
    pd_status_t st = pd_cuda_launched("fill");
    return st == PD_OK ? pd_cuda_check(cudaDeviceSynchronize(), "fill") : st;
}

extern "C" pd_status_t pd_cuda_mod_dev_to_host(void *host, const void *dev, size_t bytes)
{
    return pd_cuda_check(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "copy to host");
}

/* A copy stream with a ring of events: one event per layer of a transfer in flight. */
struct pd_cuda_ipc_stream {
    cudaStream_t stream;
    cudaEvent_t *events;
    uint32_t n_events, next;
};

extern "C" void pd_cuda_mod_ipc_stream_destroy(void *ctx)
{
    pd_cuda_ipc_stream *s = (pd_cuda_ipc_stream *)ctx;
    if (s == NULL)
        return;
    if (s->stream != NULL)
        cudaStreamSynchronize(s->stream);
    for (uint32_t i = 0; s->events != NULL && i < s->n_events; i++)
        if (s->events[i] != NULL)
            cudaEventDestroy(s->events[i]);
    free(s->events);
    if (s->stream != NULL)
        cudaStreamDestroy(s->stream);
    free(s);
}

extern "C" pd_status_t pd_cuda_mod_ipc_stream_create(uint32_t n_events, void **ctx_p)
{
    if (n_events == 0 || ctx_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_cuda_ipc_stream *s = (pd_cuda_ipc_stream *)calloc(1, sizeof(*s));
    if (s == NULL)
        return PD_ERR_NO_MEMORY;
    s->events = (cudaEvent_t *)calloc(n_events, sizeof(cudaEvent_t));
    s->n_events = n_events;
    pd_status_t st = s->events == NULL ? PD_ERR_NO_MEMORY : PD_OK;
    if (st == PD_OK)
        st = pd_cuda_check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
                           "IPC copy stream");
    for (uint32_t i = 0; st == PD_OK && i < n_events; i++)
        st = pd_cuda_check(cudaEventCreateWithFlags(&s->events[i], cudaEventDisableTiming),
                           "IPC event");
    if (st != PD_OK) {
        pd_cuda_mod_ipc_stream_destroy(s);
        return st;
    }
    *ctx_p = s;
    return PD_OK;
}

extern "C" pd_status_t pd_cuda_mod_ipc_copy_async(void *ctx, void *dst, const void *src,
                                                 size_t bytes)
{
    pd_cuda_ipc_stream *s = (pd_cuda_ipc_stream *)ctx;
    return pd_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s->stream),
                         "IPC copy");
}

extern "C" pd_status_t pd_cuda_mod_ipc_event_record(void *ctx, uint32_t *event_p)
{
    /* The ring is as long as the most layers in flight; an event reused is one whose
     * layer the caller has already seen complete. */
    pd_cuda_ipc_stream *s = (pd_cuda_ipc_stream *)ctx;
    const uint32_t e = s->next;
    pd_status_t st = pd_cuda_check(cudaEventRecord(s->events[e], s->stream), "IPC event record");
    if (st != PD_OK)
        return st;
    s->next = (e + 1) % s->n_events;
    *event_p = e;
    return PD_OK;
}

extern "C" pd_status_t pd_cuda_mod_ipc_event_query(void *ctx, uint32_t event)
{
    pd_cuda_ipc_stream *s = (pd_cuda_ipc_stream *)ctx;
    if (event >= s->n_events)
        return PD_ERR_INVALID_PARAM;
    cudaError_t err = cudaEventQuery(s->events[event]);
    if (err == cudaErrorNotReady)
        return PD_INPROGRESS;
    return pd_cuda_check(err, "IPC copy");
}

/* The benchmark's peer process: allocate bytes on device 0, send the IPC handle on
 * fd_out, wait for one byte on fd_in (the parent's copies are done), exit. */
extern "C" int pd_cuda_mod_bench_ipc_peer(size_t bytes, int fd_in, int fd_out)
{
    void *buf = NULL;
    cudaIpcMemHandle_t h;
    if (pd_cuda_check(cudaSetDevice(0), "set device") != PD_OK ||
        pd_cuda_check(cudaMalloc(&buf, bytes), "IPC peer buffer") != PD_OK ||
        pd_cuda_check(cudaIpcGetMemHandle(&h, buf), "IPC handle") != PD_OK)
        return 1;
    int rc = write(fd_out, &h, sizeof(h)) == (ssize_t)sizeof(h) ? 0 : 1;
    char c;
    if (rc == 0 && read(fd_in, &c, 1) != 1)
        rc = 1;
    cudaFree(buf);
    return rc;
}

/* Read exactly n bytes from fd within the peer's lifetime. */
static bool pd_cuda_read_all(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

extern "C" pd_status_t pd_cuda_mod_bench_ipc(size_t bytes, uint32_t runs, double *rate_p)
{
    if (runs == 0 || runs > 64 || bytes < 4 || bytes % 4 != 0)
        return PD_ERR_INVALID_PARAM;
    /* The peer is a fresh process (this program again, told by the environment to serve),
     * not a fork: a forked child cannot use CUDA its parent initialised. */
    int to_peer[2] = {-1, -1}, from_peer[2] = {-1, -1};
    if (pipe(to_peer) != 0 || pipe(from_peer) != 0)
        return PD_ERR_IO;
    /* Only the peer's ends cross the exec. */
    fcntl(to_peer[1], F_SETFD, FD_CLOEXEC);
    fcntl(from_peer[0], F_SETFD, FD_CLOEXEC);
    char env_val[96];
    snprintf(env_val, sizeof(env_val), "%zu,%d,%d", bytes, to_peer[0], from_peer[1]);
    setenv("PD_CUDA_IPC_PEER", env_val, 1);
    char exe[] = "/proc/self/exe";
    char *argv[] = {exe, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
    unsetenv("PD_CUDA_IPC_PEER");
    close(to_peer[0]);
    close(from_peer[1]);
    if (err != 0) {
        close(to_peer[1]);
        close(from_peer[0]);
        pd_log_error("cuda bench: cannot start the IPC peer: %s", strerror(err));
        return PD_ERR_IO;
    }
    cudaIpcMemHandle_t h;
    pd_status_t st = pd_cuda_read_all(from_peer[0], &h, sizeof(h)) ? PD_OK : PD_ERR_PEER;
    if (st != PD_OK)
        pd_log_error("cuda bench: the IPC peer sent no handle");
    void *a = NULL, *peer = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    cudaStream_t stream = NULL;
    float t[64];
    if (st == PD_OK)
        st = pd_cuda_check(cudaSetDevice(0), "set device");
    if (st == PD_OK)
        st = pd_cuda_check(cudaIpcOpenMemHandle(&peer, h, cudaIpcMemLazyEnablePeerAccess),
                           "open the peer's handle");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMalloc(&a, bytes), "copy source");
    if (st == PD_OK)
        st = pd_cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    if (st == PD_OK)
        st = pd_cuda_check(cudaEventCreate(&e0), "event");
    if (st == PD_OK)
        st = pd_cuda_check(cudaEventCreate(&e1), "event");
    /* Fresh data: the source differs from anything the peer holds. */
    const uint32_t n_words = (uint32_t)(bytes / 4 < 256 ? bytes / 4 : 256);
    uint32_t probe[256], back[256];
    for (uint32_t i = 0; i < n_words; i++)
        probe[i] = 0x9e3779b9u * (i + 1) ^ (uint32_t)bytes;
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemset(a, 0x5c, bytes), "fill");
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemcpy(a, probe, n_words * 4, cudaMemcpyHostToDevice), "probe");
    if (st == PD_OK) /* warm-up: maps the peer's pages */
        st = pd_cuda_check(cudaMemcpy(peer, a, bytes, cudaMemcpyDeviceToDevice), "IPC copy");
    for (uint32_t r = 0; r < runs && st == PD_OK; r++) {
        cudaEventRecord(e0, stream);
        cudaMemcpyAsync(peer, a, bytes, cudaMemcpyDeviceToDevice, stream);
        cudaEventRecord(e1, stream);
        st = pd_cuda_check(cudaEventSynchronize(e1), "IPC copy");
        if (st == PD_OK)
            st = pd_cuda_check(cudaEventElapsedTime(&t[r], e0, e1), "elapsed");
    }
    /* The bytes are in the peer's memory: read them back through the mapping. */
    if (st == PD_OK)
        st = pd_cuda_check(cudaMemcpy(back, peer, n_words * 4, cudaMemcpyDeviceToHost), "read back");
    if (st == PD_OK && memcmp(back, probe, n_words * 4) != 0) {
        pd_log_error("cuda bench: the peer's memory does not hold what was copied");
        st = PD_ERR_CHECKSUM;
    }
    if (st == PD_OK) {
        qsort(t, runs, sizeof(float), [](const void *x, const void *y) {
            const float p = *(const float *)x, q = *(const float *)y;
            return (p > q) - (p < q);
        });
        const float med = runs % 2 ? t[runs / 2] : 0.5f * (t[runs / 2 - 1] + t[runs / 2]);
        *rate_p = 2.0 * (double)bytes / (med * 1e-3);
    }
    if (peer != NULL)
        cudaIpcCloseMemHandle(peer);
    if (e1)
        cudaEventDestroy(e1);
    if (e0)
        cudaEventDestroy(e0);
    if (stream)
        cudaStreamDestroy(stream);
    cudaFree(a);
    /* Let the peer go and reap it. */
    char c = 1;
    if (write(to_peer[1], &c, 1) != 1)
        st = st == PD_OK ? PD_ERR_PEER : st;
    close(to_peer[1]);
    close(from_peer[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    if (st == PD_OK && (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)) {
        pd_log_error("cuda bench: the IPC peer failed");
        st = PD_ERR_PEER;
    }
    return st;
}
