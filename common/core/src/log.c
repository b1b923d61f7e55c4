#include "pd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

pd_log_level_t pd_log_level_current = PD_LOG_LEVEL_WARN;
static char pd_log_component[32] = "pdkv";
static FILE *pd_log_stream; /* NULL = stderr */

static const char *const pd_log_names[] = {"error", "warn", "info", "debug", "trace"};

int pd_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(pd_log_names) / sizeof(pd_log_names[0])); i++) {
        if (strcmp(name, pd_log_names[i]) == 0)
            return i;
    }
    return -1;
}

void pd_log_init(const char *component)
{
    if (component != NULL)
        snprintf(pd_log_component, sizeof(pd_log_component), "%s", component);
    /* Under a scheduler (a role started from PD_MANIFEST, or PD_LOG_STDOUT=1) the log goes
     * to stdout, line by line, where Slurm's and Kubernetes' log collection expects it. */
    const char *to_stdout = getenv("PD_LOG_STDOUT");
    const char *manifest = getenv("PD_MANIFEST");
    if ((to_stdout != NULL && strcmp(to_stdout, "1") == 0) ||
        (manifest != NULL && manifest[0] != '\0' &&
         (to_stdout == NULL || strcmp(to_stdout, "0") != 0))) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        pd_log_stream = stdout;
    }
    const char *env = getenv("PD_LOG_LEVEL");
    if (env != NULL) {
        int level = pd_log_level_parse(env);
        if (level >= 0)
            pd_log_level_current = (pd_log_level_t)level;
    }
}

static int pd_log_plain;

void pd_log_set_plain(int plain)
{
    pd_log_plain = plain;
}

void pd_log_set_level(pd_log_level_t level)
{
    pd_log_level_current = level;
}

void pd_log_write(pd_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (pd_log_plain) {
        fprintf(stderr, "%s: %s%s\n", pd_log_component,
                level == PD_LOG_LEVEL_WARN ? "warning: " : "", msg);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    const char *base = strrchr(file, '/');
    base = (base != NULL) ? base + 1 : file;
    /* One fprintf per line keeps lines from different threads whole. */
    fprintf(pd_log_stream != NULL ? pd_log_stream : stderr,
            "%02d:%02d:%02d.%03ld %s %-5s %s:%d %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, pd_log_component, pd_log_names[level], base, line, msg);
}
