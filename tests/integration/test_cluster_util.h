/* Helpers of the cluster integration tests: a temporary directory with the tiny model,
 * processes started with a log file and stopped with a timeout, free loopback ports, and
 * the reference generation (the same loop as `pdctl generate`) to compare tokens with. */
#ifndef PD_TEST_CLUSTER_UTIL_H
#define PD_TEST_CLUSTER_UTIL_H

#include "pd/kv_layout.h"
#include "pd/loader.h"
#include "pd/model.h"
#include "pd/presets.h"
#include "pd/sample.h"
#include "pd/time.h"
#include "pd/tokenizer.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PD_TC_MAX_PROCS 16

typedef struct pd_tc_proc {
    pid_t pid;
    char name[32];
} pd_tc_proc_t;

typedef struct pd_tc_env {
    char dir[PATH_MAX / 2]; /* temporary directory */
    char model[PATH_MAX];   /* dir/model */
    char bin[PATH_MAX];     /* $PD_BIN_DIR */
    pd_tc_proc_t procs[PD_TC_MAX_PROCS];
    int n_procs;
} pd_tc_env_t;

/* A free TCP port on 127.0.0.1 (bind to 0, read it, close). */
static inline int pd_tc_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Make the temp dir and the tiny model (preset tiny, seed 1) the way `pdctl model new`
 * (and `pdctl model quantize` for another dtype) does: weights in dtype in the Hugging
 * Face layout plus the byte tokenizer. */
static inline void pd_tc_env_init_dtype(pd_tc_env_t *e, pd_dtype_t dtype)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/pd-cluster-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    const char *bin = getenv("PD_BIN_DIR");
    snprintf(e->bin, sizeof(e->bin), "%s", bin != NULL ? bin : "build/bin");
    snprintf(e->model, sizeof(e->model), "%s/model", e->dir);
    pd_model_config_t c;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 1);
    if (dtype != PD_DTYPE_F32) {
        pd_model_t *conv = NULL;
        cr_assert_eq(pd_model_convert(m, dtype, &conv), PD_OK);
        pd_model_destroy(&m);
        m = conv;
    }
    cr_assert_eq(pd_model_save_hf(m, e->model, dtype, NULL, NULL), PD_OK);
    pd_model_destroy(&m);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/tokenizer.bin", e->model);
    cr_assert_eq(pd_tokenizer_save(tok, path), PD_OK);
    pd_tokenizer_destroy(&tok);
}

static inline void pd_tc_env_init(pd_tc_env_t *e)
{
    pd_tc_env_init_dtype(e, PD_DTYPE_F32);
}

/* Start argv[0] (a path) with its output in dir/name.log. */
static inline pid_t pd_tc_spawn(pd_tc_env_t *e, const char *name, char *const argv[])
{
    cr_assert_lt(e->n_procs, PD_TC_MAX_PROCS);
    char log_path[PATH_MAX + 64];
    snprintf(log_path, sizeof(log_path), "%s/%s.log", e->dir, name);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* If the test process dies (a crash, a failed assertion), so does the worker. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    e->procs[e->n_procs].pid = pid;
    snprintf(e->procs[e->n_procs].name, sizeof(e->procs[0].name), "%s", name);
    e->n_procs++;
    return pid;
}

/* Wait up to timeout_ms until pid catches SIGTERM (its handler is installed: bit 15 of
 * SigCgt in /proc/PID/status); false on timeout or when pid is gone. */
static inline bool pd_tc_wait_catches_sigterm(pid_t pid, int timeout_ms)
{
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    do {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            return false;
        unsigned long long mask = 0;
        while (fgets(line, sizeof(line), f) != NULL)
            if (strncmp(line, "SigCgt:", 7) == 0)
                mask = strtoull(line + 7, NULL, 16);
        fclose(f);
        if (mask & (1ull << (SIGTERM - 1)))
            return true;
        usleep(20000);
    } while (pd_time_now_ms() < end);
    return false;
}

/* Wait for pid up to timeout_ms; returns its wait status or -1 on timeout. */
static inline int pd_tc_wait(pid_t pid, int timeout_ms)
{
    uint64_t end = pd_time_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            return -2;
        if (pd_time_now_ms() >= end)
            return -1;
        usleep(5000);
    }
}

/* SIGTERM every process (last started first), wait up to 5 s each, SIGKILL what is left.
 * A process still starting (a binary linked with large libraries can take seconds on a
 * loaded machine) is given up to 10 s to install its handler first: a SIGTERM before it
 * would kill it by default instead of stopping it cleanly. Returns the number that did
 * not exit 0 on SIGTERM. */
static inline int pd_tc_stop_all(pd_tc_env_t *e)
{
    int bad = 0;
    for (int i = e->n_procs - 1; i >= 0; i--) {
        pd_tc_proc_t *p = &e->procs[i];
        if (p->pid <= 0)
            continue;
        uint64_t end = pd_time_now_ms() + 10000;
        for (;;) {
            siginfo_t info = {0};
            bool exited = waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
                          info.si_pid != 0; /* not reaped: pd_tc_wait reads its status */
            /* one look (and a 20 ms nap when it does not catch it yet) */
            if (exited || pd_tc_wait_catches_sigterm(p->pid, 0) || pd_time_now_ms() >= end)
                break;
        }
        kill(p->pid, SIGTERM);
        int st = pd_tc_wait(p->pid, 5000);
        if (st == -1) {
            kill(p->pid, SIGKILL);
            pd_tc_wait(p->pid, 2000);
            bad++;
            fprintf(stderr, "%s did not stop on SIGTERM\n", p->name);
        } else if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bad++;
            fprintf(stderr, "%s exited with status 0x%x\n", p->name, st);
        }
        p->pid = 0;
    }
    e->n_procs = 0;
    return bad;
}

/* Sanitizer reports in any log under dir (UBSan only prints, it does not stop the
 * process; ASan and LSan reports of a process stopped by SIGTERM are easy to miss).
 * Returns the number of report lines, printing them. */
static inline int pd_tc_sanitizer_reports(const char *dir)
{
    char cmd[PATH_MAX + 160];
    snprintf(cmd, sizeof(cmd),
             "grep -rhE -A24 'runtime error:|ERROR: (Address|Leak|Thread)Sanitizer|WARNING: "
             "ThreadSanitizer|Sanitizer: failed' %s --include='*.log' 2>/dev/null",
             dir);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        fprintf(stderr, "sanitizer: %s", line); /* the report, with its stacks */
        if (strstr(line, "runtime error:") != NULL || strstr(line, "Sanitizer") != NULL)
            n++;
    }
    pclose(f);
    return n;
}

/* Print the logs (on failure) and remove the temp dir. */
static inline void pd_tc_env_cleanup(pd_tc_env_t *e, bool print_logs)
{
    if (e->dir[0] == '\0')
        return;
    pd_tc_stop_all(e);
    if (print_logs) {
        char cmd[PATH_MAX + 128];
        snprintf(cmd, sizeof(cmd), "tail -n 30 %s/*.log 1>&2", e->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no logs)\n");
    }
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", e->dir);
    e->dir[0] = '\0';
}

/* The reference: `pdctl generate`'s loop (whole prompt in one forward, token k sampled
 * with step k, stop after EOS 2). Returns the number of tokens written to out_p. */
static inline uint32_t pd_tc_reference(const pd_model_t *m, const int32_t *prompt,
                                       uint32_t n_prompt, uint32_t max_tokens,
                                       const pd_sampling_t *s, int32_t *out_p)
{
    const pd_model_config_t *c = &m->config;
    pd_kv_layout_t layout = {c->n_layers, c->n_kv_heads, c->head_dim, 16,
                             (n_prompt + max_tokens + 15) / 16};
    float *kv = calloc(1, pd_kv_pool_bytes(&layout)); /* (layers, blocks, 2, 16, kvh, hd) */
    uint32_t *table = malloc(layout.n_blocks * sizeof(uint32_t));
    float *logits = malloc(c->vocab_size * sizeof(float));              /* (vocab) */
    float *scratch = malloc(2 * (size_t)c->vocab_size * sizeof(float)); /* (2 * vocab) */
    cr_assert(kv != NULL && table != NULL && logits != NULL && scratch != NULL);
    for (uint32_t i = 0; i < layout.n_blocks; i++)
        table[i] = i;
    pd_engine_t *eng = NULL;
    cr_assert_eq(pd_engine_create(m, PD_BACKEND_CPU, 1, &eng), PD_OK);
    uint32_t n = 0;
    for (uint32_t k = 0; k < max_tokens; k++) {
        pd_fwd_seq_t seq = {k == 0 ? prompt : &out_p[k - 1],
                            k == 0 ? n_prompt : 1,
                            k == 0 ? 0 : n_prompt + k - 1,
                            table,
                            layout.n_blocks,
                            logits};
        cr_assert_eq(pd_engine_forward(eng, kv, &layout, &seq, 1, NULL, NULL), PD_OK);
        out_p[n++] = pd_sample_token(s, logits, c->vocab_size, k, scratch);
        if (out_p[n - 1] == 2)
            break;
    }
    pd_engine_destroy(&eng);
    free(kv);
    free(table);
    free(logits);
    free(scratch);
    return n;
}

/* A deterministic prompt of n tokens (BOS, then bytes of a pattern varied by salt). */
static inline void pd_tc_prompt(int32_t *out, uint32_t n, uint32_t salt)
{
    out[0] = 1;
    for (uint32_t i = 1; i < n; i++)
        out[i] = 3 + (int32_t)((i * 7u + salt * 13u + (i * i) % 11u) % 256u);
}

#endif
