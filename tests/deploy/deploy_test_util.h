/* Helpers the deploy tests share: a monotonic clock and a shell command run in the test's
 * directory with its output captured. */
#ifndef PD_DEPLOY_TEST_UTIL_H
#define PD_DEPLOY_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

static inline double dt_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run the command fmt/ap with cwd = dir, stdout and stderr into out; its exit status, or
 * -1 when it did not exit. */
static inline int dt_vsh(const char *dir, char *out, size_t cap, const char *fmt, va_list ap)
{
    char cmd[4096];
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    char full[4400];
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } 2>&1", dir, cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
