/* Running the real pdctl binary from a Criterion test: exit status, signal, stdout and
 * stderr of one run. Header-only: each test program includes it once. */
#ifndef PD_TESTS_PDCTL_RUN_H
#define PD_TESTS_PDCTL_RUN_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct run_result {
    int code;   /* exit status, or -1 when killed by a signal */
    int signal; /* the signal, or 0 */
    char *out;  /* stdout, NUL-terminated */
    char *err;  /* stderr */
} run_result_t;

static inline char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Run pdctl with args (NULL-terminated) under a 60 s alarm; capture both streams. env:
 * NULL or "NAME=VALUE" strings (NULL-terminated) added to the environment. */
static inline run_result_t run_pdctl_env(const char *const *env, const char *const *args)
{
    const char *bin_dir = getenv("PD_BIN_DIR");
    cr_assert_not_null(bin_dir, "PD_BIN_DIR is not set");
    char exe[PATH_MAX], out_path[64], err_path[64];
    snprintf(exe, sizeof(exe), "%s/pdctl", bin_dir);
    snprintf(out_path, sizeof(out_path), "/tmp/pd_test_pdctl_%d.out", (int)getpid());
    snprintf(err_path, sizeof(err_path), "/tmp/pd_test_pdctl_%d.err", (int)getpid());
    const char *argv[64];
    size_t n = 0;
    argv[n++] = exe;
    for (size_t i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        alarm(60); /* survives exec: a hang ends in SIGALRM, which the test reports */
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    run_result_t r = {.code = -1, .signal = 0};
    if (WIFEXITED(st))
        r.code = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        r.signal = WTERMSIG(st);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    unlink(out_path);
    unlink(err_path);
    return r;
}

static inline run_result_t run_pdctl(const char *const *args)
{
    return run_pdctl_env(NULL, args);
}

static inline void run_free(run_result_t *r)
{
    free(r->out);
    free(r->err);
}

/* The command failed cleanly: no signal, a non-zero exit, a message on stderr. */
static inline void expect_clean_failure(const char *const *args, int code, const char *needle)
{
    run_result_t r = run_pdctl(args);
    cr_assert_eq(r.signal, 0, "pdctl %s died of signal %d; stderr: %s", args[0], r.signal, r.err);
    cr_assert_neq(r.code, 0, "pdctl %s %s succeeded", args[0], args[1] ? args[1] : "");
    if (code > 0)
        cr_assert_eq(r.code, code, "exit %d, want %d; stderr: %s", r.code, code, r.err);
    cr_assert_neq(r.err[0], '\0', "no message on stderr");
    if (needle != NULL)
        cr_assert_not_null(strstr(r.err, needle), "'%s' not in stderr: %s", needle, r.err);
    run_free(&r);
}

#endif
