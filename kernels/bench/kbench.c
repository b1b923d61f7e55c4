/* pd-kbench: compute benchmark. Builds a preset model with random weights and measures
 * decode and prefill speed against the memory bandwidth measured in the same run: on the
 * CPU a memcpy of data that is not in cache, on a GPU (--backend cuda) a device-to-device
 * copy timed with events, beside which it also times decode attention over a paged pool. */
#include "cuda/bench.h"
#include "kbench_gemm.h"
#include "kbench_ipc.h"
#include "pd/log.h"
#include "pd/model.h"
#include "pd/ops.h"
#include "pd/presets.h"
#include "pd/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pd_kbench_opts {
    const char *preset;
    uint32_t prompt_tokens;
    uint32_t decode_tokens;
    uint32_t runs;
    uint32_t batch; /* sequences of the batched decode step */
    uint32_t threads[8];
    uint32_t n_threads_list;
    size_t memcpy_mib;
    int json;
    int cuda;                   /* --backend cuda */
    int gemm;                   /* --gemm: the prompt matmuls beside OpenBLAS */
    pd_dtype_t weights;         /* --weights: the CPU backend's matrices */
    pd_backend_cuda_opts_t gpu; /* --cuda-weights */
    pd_cuda_attn_bench_t attn;  /* --attn-seqs, --attn-ctx, --attn-heads */
} pd_kbench_opts_t;

typedef struct pd_kbench_result {
    uint32_t threads;
    double decode_ms;      /* median per token */
    double prefill_ms;     /* median for the whole prompt */
    double decode_cpu_ms;  /* median process CPU time per token */
    double prefill_cpu_ms; /* median process CPU time for the prompt */
    double batch_ms;       /* median time of a decode step of `batch` sequences */
    double read_gbps;      /* uncached read rate with this many threads (CPU) */
} pd_kbench_result_t;

/* Process CPU time: with one thread, the compute time that other processes on a shared
 * machine cannot inflate by taking the core away. */
static uint64_t pd_kbench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int pd_kbench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pd_kbench_median(double *v, size_t n)
{
    qsort(v, n, sizeof(double), pd_kbench_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median memcpy rate (bytes copied per second) of a buffer larger than every cache. */
static double pd_kbench_memcpy_rate(size_t bytes, uint32_t runs)
{
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (src == NULL || dst == NULL) {
        free(src);
        free(dst);
        return 0.0;
    }
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    double t[16];
    runs = runs > 16 ? 16 : runs;
    for (uint32_t r = 0; r < runs; r++) {
        uint64_t t0 = pd_time_now_ns();
        memcpy(dst, src, bytes);
        t[r] = (double)(pd_time_now_ns() - t0) * 1e-9;
        src[r] = dst[bytes - 1 - r]; /* keep the copy observable */
    }
    double med = pd_kbench_median(t, runs);
    free(src);
    free(dst);
    return (double)bytes / med;
}

static pd_status_t pd_kbench_run(const pd_model_t *model, const pd_kbench_opts_t *o,
                                 uint32_t n_threads, pd_kbench_result_t *res)
{
    const pd_model_config_t *c = &model->config;
    uint32_t n_ctx = o->prompt_tokens + o->decode_tokens;
    pd_kv_layout_t layout = {c->n_layers, c->n_kv_heads, c->head_dim, 16, 0};
    const uint32_t bt = layout.block_tokens;
    /* The batched step shares the prompt's full blocks and gives each sequence its own. */
    const uint32_t shared = o->prompt_tokens / bt, own = (o->decode_tokens + bt - 1) / bt;
    const uint32_t n_single = (n_ctx + bt - 1) / bt;
    layout.n_blocks = n_single + o->batch * own;
    const uint32_t batch_table = shared + own;
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_engine_t *engine = NULL;
    void *pool = NULL;
    uint32_t *table = malloc(layout.n_blocks * sizeof(uint32_t));
    int32_t *tokens = malloc(n_ctx * sizeof(int32_t));
    float *logits = malloc(c->vocab_size * sizeof(float));
    double *times = malloc((o->decode_tokens + o->runs + 1) * sizeof(double));
    double *cpu = malloc((o->decode_tokens + o->runs + 1) * sizeof(double));
    uint32_t *btables = malloc((size_t)o->batch * batch_table * sizeof(uint32_t));
    float *blogits = malloc((size_t)o->batch * c->vocab_size * sizeof(float));
    pd_fwd_seq_t *bseqs = malloc(o->batch * sizeof(pd_fwd_seq_t));
    if (!table || !tokens || !logits || !times || !cpu || !btables || !blogits || !bseqs)
        goto out;
    for (uint32_t i = 0; i < layout.n_blocks; i++)
        table[i] = i;
    for (uint32_t s = 0; s < o->batch; s++)
        for (uint32_t i = 0; i < batch_table; i++)
            btables[s * batch_table + i] = i < shared ? i : n_single + s * own + (i - shared);
    for (uint32_t i = 0; i < n_ctx; i++)
        tokens[i] = (int32_t)((i * 2654435761u) % c->vocab_size);
    st = o->cuda ? pd_engine_create_cuda(model, &o->gpu, &engine)
                 : pd_engine_create(model, PD_BACKEND_CPU, n_threads, &engine);
    if (st != PD_OK)
        goto out;
    /* (n_layers, n_blocks, 2, B, n_kv_heads, head_dim) f32 in the backend's memory */
    st = pd_engine_buf_alloc(engine, pd_kv_pool_bytes(&layout), &pool);
    if (st != PD_OK)
        goto out;
    /* one step of each kind first: GPU module load and handle creation stay out of the times */
    if (o->cuda) {
        pd_fwd_seq_t w = {tokens, o->prompt_tokens, 0, table, layout.n_blocks, logits};
        if ((st = pd_engine_forward(engine, pool, &layout, &w, 1, NULL, NULL)) != PD_OK)
            goto out;
    }

    pd_fwd_seq_t seq = {tokens, o->prompt_tokens, 0, table, layout.n_blocks, logits};
    for (uint32_t r = 0; r < o->runs; r++) {
        uint64_t t0 = pd_time_now_ns(), c0 = pd_kbench_cpu_ns();
        st = pd_engine_forward(engine, pool, &layout, &seq, 1, NULL, NULL);
        times[r] = (double)(pd_time_now_ns() - t0) * 1e-6;
        cpu[r] = (double)(pd_kbench_cpu_ns() - c0) * 1e-6;
        if (st != PD_OK)
            goto out;
    }
    res->prefill_ms = pd_kbench_median(times, o->runs);
    res->prefill_cpu_ms = pd_kbench_median(cpu, o->runs);
    for (uint32_t i = 0; i < o->decode_tokens; i++) {
        pd_fwd_seq_t d = {
            tokens + o->prompt_tokens + i, 1, o->prompt_tokens + i, table, layout.n_blocks, logits};
        uint64_t t0 = pd_time_now_ns(), c0 = pd_kbench_cpu_ns();
        st = pd_engine_forward(engine, pool, &layout, &d, 1, NULL, NULL);
        times[i] = (double)(pd_time_now_ns() - t0) * 1e-6;
        cpu[i] = (double)(pd_kbench_cpu_ns() - c0) * 1e-6;
        if (st != PD_OK)
            goto out;
    }
    res->decode_ms = pd_kbench_median(times, o->decode_tokens);
    res->decode_cpu_ms = pd_kbench_median(cpu, o->decode_tokens);
    for (uint32_t i = 0; i < o->decode_tokens; i++) {
        for (uint32_t s = 0; s < o->batch; s++)
            bseqs[s] = (pd_fwd_seq_t){tokens + o->prompt_tokens + (i + s) % o->decode_tokens,
                                      1,
                                      shared * bt + i,
                                      btables + (size_t)s * batch_table,
                                      batch_table,
                                      blogits + (size_t)s * c->vocab_size};
        uint64_t t0 = pd_time_now_ns();
        st = pd_engine_forward(engine, pool, &layout, bseqs, o->batch, NULL, NULL);
        times[i] = (double)(pd_time_now_ns() - t0) * 1e-6;
        if (st != PD_OK)
            goto out;
    }
    res->batch_ms = pd_kbench_median(times, o->decode_tokens);
    res->threads = pd_engine_n_threads(engine);
out:
    pd_engine_buf_free(engine, pool);
    pd_engine_destroy(&engine);
    free(bseqs);
    free(blogits);
    free(btables);
    free(cpu);
    free(times);
    free(logits);
    free(tokens);
    free(table);
    return st;
}

static void pd_kbench_usage(void)
{
    fprintf(stderr,
            "usage: pd-kbench [--preset NAME] [--prompt N] [--decode N] [--runs N]\n"
            "                 [--batch N] [--threads N[,N...]] [--memcpy-mib N] [--json]\n"
            "                 [--backend cpu|cuda] [--cuda-weights f32|f16|bf16]\n"
            "                 [--weights f32|f16|bf16|int8] [--gemm]\n"
            "                 [--attn-seqs N] [--attn-ctx N] [--attn-heads Q,KV,HD]\n"
            "Decode and prefill speed of a random-weight preset model (m50 by default)\n"
            "on the CPU backend, beside the memory-bandwidth bound of decode, and the\n"
            "throughput of a decode step of --batch sequences (8) sharing the prompt.\n"
            "--weights: the CPU backend's matrices in that dtype (converted from f32; the\n"
            "bound is then the bytes a decode step reads over the uncached read rate).\n"
            "--gemm: instead, one layer's prompt matmuls and the classifier for --prompt\n"
            "tokens, beside OpenBLAS cblas_sgemm on the same f32 matrices, in GFLOP/s.\n"
            "With --backend cuda: the same on the GPU, the bound from a device-to-device copy\n"
            "of --memcpy-mib MiB timed with events, and decode attention of --attn-seqs\n"
            "sequences (64) at --attn-ctx tokens (4096) with Q query heads, KV heads and head\n"
            "dim HD (32,8,128) over a shuffled paged pool, against that copy's bandwidth.\n");
}

static int pd_kbench_parse(int argc, char **argv, pd_kbench_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--gemm") == 0) {
            o->gemm = 1;
            continue;
        }
        if (v == NULL) {
            pd_kbench_usage();
            return -1;
        }
        i++;
        if (strcmp(a, "--preset") == 0) {
            o->preset = v;
        } else if (strcmp(a, "--backend") == 0) {
            if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0) {
                pd_kbench_usage();
                return -1;
            }
            o->cuda = strcmp(v, "cuda") == 0;
        } else if (strcmp(a, "--cuda-weights") == 0) {
            if (strcmp(v, "f32") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_F32;
            else if (strcmp(v, "f16") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_F16;
            else if (strcmp(v, "bf16") == 0)
                o->gpu.weights = PD_CUDA_WEIGHTS_BF16;
            else {
                pd_kbench_usage();
                return -1;
            }
        } else if (strcmp(a, "--weights") == 0) {
            if (pd_dtype_parse(v, &o->weights) != PD_OK) {
                pd_kbench_usage();
                return -1;
            }
        } else if (strcmp(a, "--attn-seqs") == 0) {
            o->attn.n_seqs = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--attn-ctx") == 0) {
            o->attn.ctx = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--attn-heads") == 0) {
            if (sscanf(v, "%u,%u,%u", &o->attn.n_heads, &o->attn.n_kv_heads, &o->attn.head_dim) !=
                3) {
                pd_kbench_usage();
                return -1;
            }
        } else if (strcmp(a, "--prompt") == 0) {
            o->prompt_tokens = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--decode") == 0) {
            o->decode_tokens = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--runs") == 0) {
            o->runs = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--memcpy-mib") == 0) {
            o->memcpy_mib = (size_t)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--threads") == 0) {
            o->n_threads_list = 0;
            char *end = NULL;
            for (const char *p = v; *p && o->n_threads_list < 8; p = end + (*end == ',')) {
                o->threads[o->n_threads_list++] = (uint32_t)strtoul(p, &end, 10);
                if (end == p)
                    break;
            }
        } else {
            pd_kbench_usage();
            return -1;
        }
    }
    if (o->prompt_tokens == 0 || o->decode_tokens == 0 || o->runs == 0 || o->runs > 15 ||
        o->batch == 0 || o->batch > 256 || o->n_threads_list == 0 || o->memcpy_mib == 0 ||
        o->attn.n_seqs == 0 || o->attn.n_seqs > 4096 || o->attn.ctx == 0 ||
        o->attn.ctx > (1u << 20)) {
        pd_kbench_usage();
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    pd_log_init("pd-kbench");
    /* The IPC benchmark's peer is this program again (cuda/bench.h). */
    int peer_rc = pd_cuda_bench_ipc_peer_main();
    if (peer_rc < 0)
        peer_rc = pd_kbench_kv_peer_main();
    if (peer_rc >= 0)
        return peer_rc;
    pd_kbench_opts_t o = {"m50",
                          512,
                          64,
                          5,
                          8,
                          {1, 2},
                          2,
                          1024,
                          0,
                          0,
                          0,
                          PD_DTYPE_F32,
                          {PD_CUDA_WEIGHTS_MODEL, false},
                          {64, 4096, 32, 8, 128, 16, 9, 0, 0, 0, 0}};
    if (pd_kbench_parse(argc, argv, &o) != 0)
        return 2;
    pd_model_config_t cfg;
    if (pd_model_preset(o.preset, &cfg) != PD_OK)
        return 2;
    if (o.prompt_tokens + o.decode_tokens > cfg.max_seq_len) {
        fprintf(stderr, "pd-kbench: prompt + decode exceeds the context of %u\n", cfg.max_seq_len);
        return 2;
    }
    pd_model_t *model = NULL;
    if (pd_model_alloc(&cfg, &model) != PD_OK)
        return 1;
    pd_model_init_random(model, 1);
    pd_model_t *model_f32 = NULL; /* the f32 original when --weights converted it */
    if (!o.cuda && o.weights != PD_DTYPE_F32) {
        model_f32 = model;
        model = NULL;
        if (pd_model_convert(model_f32, o.weights, &model) != PD_OK) {
            pd_model_destroy(&model_f32);
            return 1;
        }
    }
    if (o.gemm) {
        pd_status_t st = pd_kbench_gemm(model, model_f32 ? model_f32 : model, o.prompt_tokens,
                                        o.threads, o.n_threads_list, o.runs, o.json);
        if (st != PD_OK)
            fprintf(stderr, "pd-kbench: the matmul benchmark failed: %s\n", pd_status_str(st));
        pd_model_destroy(&model);
        pd_model_destroy(&model_f32);
        return st == PD_OK ? 0 : 1;
    }
    double model_bytes = (double)pd_model_n_params(&cfg) * sizeof(float);
    if (!o.cuda)
        model_bytes = (double)pd_model_decode_bytes(model);
    if (o.cuda && (o.gpu.weights == PD_CUDA_WEIGHTS_F16 || o.gpu.weights == PD_CUDA_WEIGHTS_BF16))
        model_bytes /= 2; /* the preset is made in f32; 16-bit on the device */
    double rate = 0.0;
    if (o.cuda) {
        o.n_threads_list = 1; /* one stream */
        pd_status_t st = pd_cuda_bench_copy(o.memcpy_mib << 20, 9, &rate);
        if (st != PD_OK) {
            fprintf(stderr, "pd-kbench: the GPU copy benchmark failed: %s\n", pd_status_str(st));
            pd_model_destroy(&model);
            return 1;
        }
        o.attn.seed = (uint64_t)pd_time_now_ns();
        st = pd_cuda_bench_attention(&o.attn);
        if (st != PD_OK) {
            fprintf(stderr, "pd-kbench: the attention benchmark failed: %s\n", pd_status_str(st));
            pd_model_destroy(&model);
            return 1;
        }
        /* KV into another process's pool by CUDA IPC, against the same copy. */
        double ipc_rate = 0.0;
        st = pd_cuda_bench_ipc(o.memcpy_mib << 20, 9, &ipc_rate);
        if (st != PD_OK) {
            fprintf(stderr, "pd-kbench: the IPC copy benchmark failed: %s\n", pd_status_str(st));
            pd_model_destroy(&model);
            return 1;
        }
        /* KV blocks, layer by layer, into another process's pool (pd/xfer_ipc.h). */
        pd_kbench_kv_ipc_t kv;
        memset(&kv, 0, sizeof(kv));
        st = pd_kbench_kv_ipc(o.memcpy_mib << 20, 5, &kv);
        if (st != PD_OK) {
            fprintf(stderr, "pd-kbench: the KV-by-IPC benchmark failed: %s\n", pd_status_str(st));
            pd_model_destroy(&model);
            return 1;
        }
        const double gbps = o.attn.bytes / (o.attn.ms * 1e-3) / 1e9;
        if (o.json)
            printf("{\"gpu_copy_gbps\":%.1f,\"ipc_copy_gbps\":%.1f,\"ipc_vs_copy\":%.3f,"
                   "\"kv_ipc\":{\"blocks\":%u,\"layers\":%u,\"ms\":%.3f,\"gbps\":%.1f,"
                   "\"vs_copy\":%.3f},"
                   "\"attention\":{\"seqs\":%u,\"ctx\":%u,\"heads\":%u,"
                   "\"kv_heads\":%u,\"head_dim\":%u,\"ms\":%.4f,\"kv_bytes\":%.0f,\"bytes\":%.0f,"
                   "\"gbps\":%.1f,\"vs_copy\":%.3f}}\n",
                   rate / 1e9, ipc_rate / 1e9, ipc_rate / rate, kv.n_blocks, kv.n_layers,
                   kv.seconds * 1e3, kv.rate / 1e9, kv.rate / rate, o.attn.n_seqs, o.attn.ctx,
                   o.attn.n_heads, o.attn.n_kv_heads, o.attn.head_dim, o.attn.ms, o.attn.kv_bytes,
                   o.attn.bytes, gbps, gbps * 1e9 / rate);
        else
            printf("gpu: device-to-device copy of %zu MiB %.0f GB/s (read + written, median of 9); "
                   "decode attention of %u sequences x %u tokens (%u/%u heads, head_dim %u, f32 "
                   "KV) %.3f ms, %.0f GB/s = %.0f%% of the copy\n",
                   o.memcpy_mib, rate / 1e9, o.attn.n_seqs, o.attn.ctx, o.attn.n_heads,
                   o.attn.n_kv_heads, o.attn.head_dim, o.attn.ms, gbps, 100.0 * gbps * 1e9 / rate);
        if (!o.json)
            printf("gpu: copy into another process's memory by CUDA IPC %.0f GB/s = %.0f%% of the "
                   "copy\n",
                   ipc_rate / 1e9, 100.0 * ipc_rate / rate);
        if (!o.json)
            printf("gpu: KV of %u blocks x %u layers into another process's pool by CUDA IPC "
                   "(layer-wise, event per layer) %.3f ms, %.0f GB/s = %.0f%% of the copy\n",
                   kv.n_blocks, kv.n_layers, kv.seconds * 1e3, kv.rate / 1e9,
                   100.0 * kv.rate / rate);
    } else {
        rate = pd_kbench_memcpy_rate(o.memcpy_mib << 20, 7);
    }
    double bound = rate / model_bytes;
    const char *wname = pd_dtype_name((pd_dtype_t)pd_model_dtype(model));
    if (o.cuda)
        wname = o.gpu.weights == PD_CUDA_WEIGHTS_F16    ? "f16"
                : o.gpu.weights == PD_CUDA_WEIGHTS_BF16 ? "bf16"
                                                        : "f32";

    if (o.json)
        printf("{\"preset\":\"%s\",\"weights\":\"%s\",\"params\":%llu,\"model_bytes\":%.0f,"
               "\"memcpy_bytes\":%zu,\"memcpy_gbps\":%.3f,\"bound_tok_s\":%.2f,"
               "\"prompt_tokens\":%u,\"decode_tokens\":%u,\"runs\":[",
               o.preset, wname, (unsigned long long)pd_model_n_params(&cfg), model_bytes,
               o.memcpy_mib << 20, rate / 1e9, bound, o.prompt_tokens, o.decode_tokens);
    else
        printf("preset %s: %.1f M params, %.1f MB of %s weights read per decode step; memcpy of "
               "%zu MiB: %.2f GB/s (median of 7) -> decode bound %.1f tokens/s\n",
               o.preset, (double)pd_model_n_params(&cfg) / 1e6, model_bytes / 1e6, wname,
               o.memcpy_mib, rate / 1e9, bound);
    int rc = 0;
    for (uint32_t i = 0; i < o.n_threads_list; i++) {
        pd_kbench_result_t r;
        memset(&r, 0, sizeof(r));
        pd_status_t st = pd_kbench_run(model, &o, o.threads[i], &r);
        if (st != PD_OK) {
            fprintf(stderr, "pd-kbench: run failed: %s\n", pd_status_str(st));
            rc = 1;
            break;
        }
        if (!o.cuda)
            r.read_gbps = pd_cpu_read_rate(o.memcpy_mib << 20, r.threads, 5);
        double read_bound = r.read_gbps * 1e9 / model_bytes;
        double dec_tps = 1e3 / r.decode_ms;
        double pre_tps = o.prompt_tokens * 1e3 / r.prefill_ms;
        if (o.json)
            printf("%s{\"threads\":%u,\"decode_ms_per_token\":%.3f,\"decode_tok_s\":%.2f,"
                   "\"decode_vs_bound\":%.3f,\"prefill_ms\":%.1f,\"prefill_tok_s\":%.1f,"
                   "\"prefill_vs_decode\":%.2f,\"decode_cpu_ms\":%.3f,\"prefill_cpu_ms\":%.1f,"
                   "\"batch\":%u,\"batch_step_ms\":%.3f,\"batch_tok_s\":%.1f,"
                   "\"read_gbps\":%.2f,\"read_bound_tok_s\":%.2f,\"decode_vs_read_bound\":%.3f,"
                   "\"decode_cpu_vs_read_bound\":%.3f}",
                   i ? "," : "", r.threads, r.decode_ms, dec_tps, dec_tps / bound, r.prefill_ms,
                   pre_tps, pre_tps / dec_tps, r.decode_cpu_ms, r.prefill_cpu_ms, o.batch,
                   r.batch_ms, o.batch * 1e3 / r.batch_ms, r.read_gbps, read_bound,
                   read_bound > 0 ? dec_tps / read_bound : 0.0,
                   read_bound > 0 ? 1e3 / r.decode_cpu_ms / read_bound : 0.0);
        else
            printf("threads %u: decode %.2f ms/token = %.1f tokens/s = %.0f%% of the bound; "
                   "prefill of %u tokens %.0f ms = %.0f tokens/s = %.1fx decode per token "
                   "(process CPU: decode %.2f ms/token, prefill %.0f ms); decode of %u sequences "
                   "%.2f ms/step = %.1f tokens/s\n",
                   r.threads, r.decode_ms, dec_tps, 100.0 * dec_tps / bound, o.prompt_tokens,
                   r.prefill_ms, pre_tps, pre_tps / dec_tps, r.decode_cpu_ms, r.prefill_cpu_ms,
                   o.batch, r.batch_ms, o.batch * 1e3 / r.batch_ms);
        if (!o.json && !o.cuda)
            printf("threads %u: uncached read %.2f GB/s -> bound %.1f tokens/s; decode at %.0f%% "
                   "of it (by process CPU time %.0f%%)\n",
                   r.threads, r.read_gbps, read_bound, 100.0 * dec_tps / read_bound,
                   100.0 * 1e3 / r.decode_cpu_ms / read_bound);
        fflush(stdout);
    }
    if (o.json)
        printf("]}\n");
    pd_model_destroy(&model);
    pd_model_destroy(&model_f32);
    return rc;
}
