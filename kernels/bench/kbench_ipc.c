/* pd-kbench --backend cuda: KV moved into another GPU process's pool by CUDA IPC, the way
 * a prefill worker writes a decode worker's pool on one host: the peer (this program
 * again, PD_KBENCH_KV_PEER set) allocates a pool and exports its IPC descriptor
 * (pd/xfer_ipc.h) over a pipe; this process opens it, plans each layer's copies (runs of
 * blocks into a shuffled destination, as a fragmented pool gives them), posts layer by
 * layer on one stream with an event per layer, and times until every layer's event
 * completed, which is when a notification could go. The bytes are read back through the
 * mapping and compared with the source. */
#include "kbench_ipc.h"

#include "pd/cuda_ipc.h"
#include "pd/log.h"
#include "pd/time.h"
#include "pd/xfer_ipc.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* A pool shaped like an 8B model's: 32 layers, 8 KV heads of 128, blocks of 16 tokens
 * (128 KiB per block and layer); n_blocks from the size asked for. */
static pd_kv_layout_t pd_kbench_kv_layout(size_t bytes)
{
    pd_kv_layout_t l = {32, 8, 128, 16, 1};
    l.n_blocks = (uint32_t)(bytes / pd_kv_block_bytes(&l));
    return l;
}

static int pd_kbench_read_all(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int pd_kbench_kv_peer_main(void)
{
    const char *v = getenv("PD_KBENCH_KV_PEER");
    if (v == NULL)
        return -1;
    unsigned long long bytes = 0;
    int fd_in = -1, fd_out = -1;
    if (sscanf(v, "%llu,%d,%d", &bytes, &fd_in, &fd_out) != 3 || fd_in < 0 || fd_out < 0)
        return 2;
    pd_xfer_ipc_desc_t d;
    memset(&d, 0, sizeof(d));
    d.layout = pd_kbench_kv_layout((size_t)bytes);
    d.pool_bytes = pd_kv_pool_bytes(&d.layout);
    d.host_id = pd_xfer_ipc_host_id();
    d.pid = (uint32_t)getpid();
    void *pool = NULL;
    if (d.layout.n_blocks == 0 || pd_cuda_dev_alloc(d.pool_bytes, &pool) != PD_OK ||
        pd_cuda_ipc_export(pool, d.handle) != PD_OK)
        return 1;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_xfer_ipc_desc_write(&d, &w);
    const uint32_t n = (uint32_t)pd_mp_writer_size(&w);
    int rc = write(fd_out, &n, sizeof(n)) == (ssize_t)sizeof(n) &&
                     write(fd_out, pd_mp_writer_data(&w), n) == (ssize_t)n
                 ? 0
                 : 1;
    pd_mp_writer_cleanup(&w);
    char c;
    if (rc == 0 && read(fd_in, &c, 1) != 1)
        rc = 1;
    pd_cuda_dev_free(pool);
    return rc;
}

static const pd_xfer_ipc_dev_ops_t pd_kbench_ipc_ops = {
    pd_cuda_ipc_copy_async, pd_cuda_ipc_event_record, pd_cuda_ipc_event_query, NULL};

/* Move every block of src's pool, layer by layer, into the peer's pool at dst; the
 * destination order is a shuffle of runs of `run` blocks. */
static pd_status_t pd_kbench_kv_move(const pd_kv_layout_t *l, void *src, void *dst, void *stream,
                                     uint32_t run, uint64_t seed, double *seconds_p)
{
    const uint32_t n = l->n_blocks;
    const uint32_t n_runs = (n + run - 1) / run;
    uint32_t *order = malloc(n_runs * sizeof(*order));
    uint32_t *sb = malloc(n * sizeof(*sb)), *db = malloc(n * sizeof(*db));
    pd_xfer_seg_t *segs = malloc(n * sizeof(*segs));
    pd_status_t st = order && sb && db && segs ? PD_OK : PD_ERR_NO_MEMORY;
    for (uint32_t i = 0; st == PD_OK && i < n_runs; i++)
        order[i] = i;
    for (uint32_t i = n_runs; st == PD_OK && i > 1; i--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t j = (uint32_t)((seed >> 33) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0, k = 0; st == PD_OK && i < n_runs; i++)
        for (uint32_t b = order[i] * run; b < (order[i] + 1) * run && b < n; b++, k++) {
            sb[k] = k;
            db[k] = b;
        }
    pd_xfer_ipc_dev_ops_t ops = pd_kbench_ipc_ops;
    ops.ctx = stream;
    pd_xfer_ipc_send_t s;
    const uint64_t t0 = pd_time_now_ns();
    if (st == PD_OK)
        st = pd_xfer_ipc_send_init(&s, &ops, src, dst, l->n_layers);
    for (uint32_t layer = 0; st == PD_OK && layer < l->n_layers; layer++) {
        size_t n_segs = 0;
        st = pd_xfer_ipc_plan_layer(l, l, pd_kv_pool_bytes(l), layer, sb, db, n, NULL, 0, segs,
                                    &n_segs);
        if (st == PD_OK)
            st = pd_xfer_ipc_send_post(&s, segs, n_segs);
    }
    if (st == PD_OK)
        st = pd_xfer_ipc_send_finish(&s);
    while (st == PD_OK && (st = pd_xfer_ipc_send_progress(&s)) == PD_INPROGRESS)
        ;
    *seconds_p = (double)(pd_time_now_ns() - t0) * 1e-9;
    /* Spot check: a few blocks of the first and last layer landed where planned. */
    size_t bl = pd_kv_block_layer_bytes(l);
    unsigned char *a = malloc(bl), *b = malloc(bl);
    for (uint32_t i = 0; st == PD_OK && i < n; i += n / 7 + 1)
        for (uint32_t layer = 0; st == PD_OK && layer < l->n_layers; layer += l->n_layers - 1) {
            st = pd_cuda_dev_to_host(a, (unsigned char *)src + pd_kv_offset(l, layer, sb[i]), bl);
            if (st == PD_OK)
                st = pd_cuda_dev_to_host(b, (unsigned char *)dst + pd_kv_offset(l, layer, db[i]),
                                         bl);
            if (st == PD_OK && memcmp(a, b, bl) != 0) {
                pd_log_error("kv by ipc: block %u of layer %u did not land", db[i], layer);
                st = PD_ERR_CHECKSUM;
            }
            if (l->n_layers == 1)
                break;
        }
    free(a);
    free(b);
    free(order);
    free(sb);
    free(db);
    free(segs);
    return st;
}

pd_status_t pd_kbench_kv_ipc(size_t bytes, uint32_t runs, pd_kbench_kv_ipc_t *out)
{
    const pd_kv_layout_t l = pd_kbench_kv_layout(bytes);
    if (l.n_blocks == 0 || runs == 0 || runs > 64)
        return PD_ERR_INVALID_PARAM;
    int to_peer[2] = {-1, -1}, from_peer[2] = {-1, -1};
    if (pipe(to_peer) != 0)
        return PD_ERR_IO;
    if (pipe(from_peer) != 0) {
        close(to_peer[0]);
        close(to_peer[1]);
        return PD_ERR_IO;
    }
    fcntl(to_peer[1], F_SETFD, FD_CLOEXEC);
    fcntl(from_peer[0], F_SETFD, FD_CLOEXEC);
    char env[96];
    snprintf(env, sizeof(env), "%zu,%d,%d", bytes, to_peer[0], from_peer[1]);
    setenv("PD_KBENCH_KV_PEER", env, 1);
    char exe[] = "/proc/self/exe";
    char *argv[] = {exe, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
    unsetenv("PD_KBENCH_KV_PEER");
    close(to_peer[0]);
    close(from_peer[1]);
    if (err != 0) {
        close(to_peer[1]);
        close(from_peer[0]);
        return PD_ERR_IO;
    }
    pd_status_t st = PD_OK;
    uint32_t n = 0;
    unsigned char *buf = NULL;
    pd_xfer_ipc_desc_t d;
    if (pd_kbench_read_all(from_peer[0], &n, sizeof(n)) != 0 || n == 0 || n > 4096 ||
        (buf = malloc(n)) == NULL || pd_kbench_read_all(from_peer[0], buf, n) != 0)
        st = PD_ERR_PEER;
    pd_mp_doc_t doc;
    if (st == PD_OK && (st = pd_mp_doc_parse(&doc, buf, n, &pd_mp_limits_default)) == PD_OK) {
        st = pd_xfer_ipc_desc_read(&doc.root, &d);
        pd_mp_doc_cleanup(&doc);
    }
    free(buf);
    char why[128];
    if (st == PD_OK &&
        !pd_xfer_ipc_reachable(&d, pd_xfer_ipc_host_id(), (uint32_t)getpid(), why, sizeof(why))) {
        pd_log_error("kv by ipc: %s", why);
        st = PD_ERR_UNREACHABLE;
    }
    void *src = NULL, *dst = NULL, *stream = NULL;
    if (st == PD_OK)
        st = pd_cuda_ipc_open(d.handle, &dst);
    if (st == PD_OK)
        st = pd_cuda_dev_alloc(pd_kv_pool_bytes(&l), &src);
    if (st == PD_OK)
        st = pd_cuda_dev_fill(src, pd_kv_pool_bytes(&l), pd_time_now_ns());
    if (st == PD_OK)
        st = pd_cuda_ipc_stream_create(l.n_layers, &stream);
    double t[64];
    double warm = 0;
    if (st == PD_OK) /* warm-up: maps the peer's pages */
        st = pd_kbench_kv_move(&l, src, (unsigned char *)dst + d.pool_offset, stream, 16, 1, &warm);
    for (uint32_t r = 0; st == PD_OK && r < runs; r++)
        st = pd_kbench_kv_move(&l, src, (unsigned char *)dst + d.pool_offset, stream, 16, r + 2,
                               &t[r]);
    if (st == PD_OK) {
        for (uint32_t i = 1; i < runs; i++)
            for (uint32_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
                double x = t[j];
                t[j] = t[j - 1];
                t[j - 1] = x;
            }
        const double med = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
        out->bytes = (double)pd_kv_pool_bytes(&l);
        out->seconds = med;
        out->rate = 2.0 * out->bytes / med; /* read + written, as the copy benchmark */
        out->n_blocks = l.n_blocks;
        out->n_layers = l.n_layers;
    }
    pd_cuda_ipc_stream_destroy(stream);
    pd_cuda_dev_free(src);
    pd_cuda_ipc_close(dst);
    char c = 1;
    if (write(to_peer[1], &c, 1) != 1 && st == PD_OK)
        st = PD_ERR_PEER;
    close(to_peer[1]);
    close(from_peer[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    if (st == PD_OK && (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0))
        st = PD_ERR_PEER;
    return st;
}
