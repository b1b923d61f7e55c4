/* pdctl bench against a real cluster: a local 1P1D cluster of the tiny model on a port
 * picked at run time, a short synthetic load and a short trace replay, the JSON checked
 * record by record, and nothing left running afterwards. */
#include "pd/json.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char pd_test_dir[PATH_MAX];
static char pd_test_bin[PATH_MAX];
static char pd_test_src[PATH_MAX];
static unsigned pd_test_port;
static int pd_test_up;

/* Run a shell command (its output to the test's stderr) with a 120 s limit; the exit
 * status, or -1 when killed. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[4 * PATH_MAX + 64];
    snprintf(full, sizeof(full), "timeout 120 sh -c '%s' 1>&2", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cluster_down(void)
{
    if (!pd_test_up)
        return;
    sh("PD_RUN_DIR=%s/run %s/pdctl down %s/deploy/local.yaml --set network.base_port=%u",
       pd_test_dir, pd_test_bin, pd_test_src, pd_test_port);
    pd_test_up = 0;
}

/* True when 127.0.0.1 ports base .. base + n - 1 can all be bound right now. */
static int ports_free(unsigned base, unsigned n)
{
    int ok = 1;
    for (unsigned i = 0; i < n && ok; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + i))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
    }
    return ok;
}

static void setup(void)
{
    const char *bin = getenv("PD_BIN_DIR"), *src = getenv("PD_SOURCE_DIR");
    cr_assert_not_null(bin, "PD_BIN_DIR is not set");
    cr_assert_not_null(src, "PD_SOURCE_DIR is not set");
    snprintf(pd_test_bin, sizeof(pd_test_bin), "%s", bin);
    snprintf(pd_test_src, sizeof(pd_test_src), "%s", src);
    snprintf(pd_test_dir, sizeof(pd_test_dir), "/tmp/pd_test_bench_%d", (int)getpid());
    mkdir(pd_test_dir, 0755);
    /* A free port range chosen at run time, starting from a slot of the process id. */
    pd_test_port = 0;
    for (unsigned k = 0; k < 400 && pd_test_port == 0; k++) {
        unsigned base = 21000u + (((unsigned)getpid() + k) % 400u) * 20u;
        if (ports_free(base, 20))
            pd_test_port = base;
    }
    cr_assert_neq(pd_test_port, 0, "no free port range");
}

static void teardown(void)
{
    cluster_down();
    sh("rm -rf %s", pd_test_dir);
}

static const pd_json_t *get(const pd_json_t *obj, const char *key)
{
    const pd_json_t *v = pd_json_object_get(obj, key);
    cr_assert_not_null(v, "no '%s'", key);
    return v;
}

static uint64_t get_u64(const pd_json_t *obj, const char *key)
{
    uint64_t u = 0;
    cr_assert(pd_json_u64(get(obj, key), &u), "'%s' is not an integer", key);
    return u;
}

static pd_json_doc_t *load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse(buf, (size_t)n, NULL, &doc), PD_OK, "%s: %s", path,
                 pd_json_last_error());
    free(buf);
    return doc;
}

/* Every request completed, streamed as many tokens as it reports, and has timings. */
static void check_records(const pd_json_t *root, uint64_t n_requests)
{
    const pd_json_t *sum = get(root, "summary");
    cr_assert_eq(get_u64(sum, "requests"), n_requests);
    cr_assert_eq(get_u64(sum, "completed"), n_requests);
    cr_assert_eq(get_u64(sum, "errors"), 0);
    const pd_json_t *reqs = get(root, "requests");
    cr_assert_eq(pd_json_len(reqs), n_requests);
    uint64_t prompt = 0;
    for (size_t i = 0; i < n_requests; i++) {
        const pd_json_t *r = pd_json_array_at(reqs, i);
        const char *status;
        cr_assert(pd_json_string(get(r, "status"), &status, NULL));
        cr_assert_str_eq(status, "done", "request %zu", i);
        const pd_json_t *usage = get(r, "usage");
        uint64_t out = get_u64(usage, "output_tokens");
        cr_assert_geq(out, 1);
        cr_assert_eq(get_u64(r, "tokens_received"), out, "request %zu", i);
        /* Computed plus cached covers the prompt (more when decode held a longer prefix
         * than prefill, which then computes what decode already has). */
        cr_assert_geq(get_u64(usage, "input_tokens") + get_u64(usage, "cache_read_input_tokens"),
                      get_u64(r, "prompt_tokens"), "request %zu", i);
        prompt += get_u64(r, "prompt_tokens");
        double ttft = 0, server_ttft = 0;
        cr_assert(pd_json_number(get(r, "ttft_ms"), &ttft));
        cr_assert(pd_json_number(get(get(r, "server"), "ttft_ms"), &server_ttft));
        cr_assert_gt(ttft, 0.0);
        /* The client sees the first token after the router sent it. */
        cr_assert_geq(ttft + 0.5, server_ttft, "request %zu: %g < %g", i, ttft, server_ttft);
        /* Every part of TTFT is there, and together they do not exceed it: each was timed
         * once, none twice. */
        static const char *const parts[] = {"queue_ms",         "admission_ms", "prefill_ms",
                                            "prefill_queue_ms", "transfer_ms",  "first_step_ms"};
        double sum_parts = 0;
        for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
            double v = -1;
            const pd_json_t *x = get(get(r, "server"), parts[k]);
            cr_assert(pd_json_number(x, &v), "request %zu: no %s", i, parts[k]);
            cr_assert_geq(v, 0.0, "request %zu: %s %g", i, parts[k], v);
            sum_parts += v;
        }
        cr_assert_leq(sum_parts, server_ttft + 0.5, "request %zu: parts %g > TTFT %g", i, sum_parts,
                      server_ttft);
    }
    const pd_json_t *unacc = get(sum, "unaccounted_ms");
    cr_assert_eq(get_u64(unacc, "n"), n_requests);
    cr_assert_eq(get_u64(sum, "prompt_tokens"), prompt);
}

TestSuite(bench_cluster, .init = setup, .fini = teardown, .timeout = 300);

Test(bench_cluster, measures_a_local_cluster_and_replays_a_trace)
{
    char model[PATH_MAX + 16];
    snprintf(model, sizeof(model), "%s/tiny", pd_test_dir);
    pd_test_up = 1;
    cr_assert_eq(sh("PD_RUN_DIR=%s/run %s/pdctl up -d %s/deploy/local.yaml "
                    "--set network.base_port=%u --set model.preset=tiny --set model.path=%s "
                    "--set router.min_cached_prefix=32",
                    pd_test_dir, pd_test_bin, pd_test_src, pd_test_port, model),
                 0, "pdctl up failed");

    /* Synthetic: 12 requests over 2 shared 64-token prefixes. */
    cr_assert_eq(sh("%s/pdctl bench -q -r 127.0.0.1:%u -N 12 --rate 20 -c 4 "
                    "--prompt-len 80:120 --max-tokens 4:8 --shared-prefix 64 "
                    "--prefix-groups 2 --json %s/syn.json > %s/syn.txt",
                    pd_test_bin, pd_test_port, pd_test_dir, pd_test_dir),
                 0, "pdctl bench failed");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/syn.json", pd_test_dir);
    pd_json_doc_t *doc = load_json(path);
    check_records(pd_json_doc_root(doc), 12);
    /* Prefixes of 64 tokens (4 blocks) repeat: the cache must have served some. */
    const pd_json_t *sum = get(pd_json_doc_root(doc), "summary");
    cr_assert_gt(get_u64(sum, "cache_read_input_tokens"), 0);
    pd_json_doc_destroy(&doc);

    /* A trace: two requests share their first hash id (16 tokens after scaling by 32);
     * line 3 is malformed and skipped. */
    snprintf(path, sizeof(path), "%s/trace.jsonl", pd_test_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"timestamp\": 0, \"input_length\": 2048, \"output_length\": 64, "
               "\"hash_ids\": [1, 2, 3, 4]}\n"
               "{\"timestamp\": 50, \"input_length\": 1600, \"output_length\": 96, "
               "\"hash_ids\": [1, 2, 5, 6]}\n"
               "{\"timestamp\": 60, \"input_length\": 1600}\n"
               "{\"timestamp\": 90, \"input_length\": 700, \"output_length\": 32, "
               "\"hash_ids\": [9, 10]}\n");
    fclose(f);
    cr_assert_eq(sh("%s/pdctl bench -q -r 127.0.0.1:%u --trace %s --trace-len-scale 32 "
                    "--json %s/trace.json > %s/trace.txt",
                    pd_test_bin, pd_test_port, path, pd_test_dir, pd_test_dir),
                 0, "pdctl bench --trace failed");
    snprintf(path, sizeof(path), "%s/trace.json", pd_test_dir);
    doc = load_json(path);
    check_records(pd_json_doc_root(doc), 3);
    sum = get(pd_json_doc_root(doc), "summary");
    /* Ideal: request 2 reuses hash ids 1 and 2, 32 of 64 + 50 + 22 prompt tokens. */
    cr_assert_eq(get_u64(sum, "ideal_cache_hit_tokens"), 32);
    cr_assert_eq(get_u64(sum, "ideal_cache_total_tokens"), 64 + 50 + 22);
    pd_json_doc_destroy(&doc);

    cluster_down();
    /* Nothing of the cluster is left. */
    cr_assert_neq(sh("pgrep -f \"[t]cp://127.0.0.1:%u \"", pd_test_port), 0,
                  "processes on port %u still running", pd_test_port);
}
