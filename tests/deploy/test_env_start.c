/* Roles started the way a scheduler starts them: no options, only PD_MANIFEST, PD_ROLE,
 * PD_INDEX, PD_HOST and PD_ROUTER. The workers register, a gateway answers /ready, the
 * cluster serves the tokens `pdctl generate` gives, they log to stdout (nothing on stderr),
 * re-register with a restarted router, stop with status 0 on SIGTERM, and refuse a wrong
 * environment with status 2. */
#include "deploy_test_util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static pid_t procs[4]; /* router, prefill-0, decode-0, gateway-0 */

static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int st = dt_vsh(dir, out, cap, fmt, ap);
    va_end(ap);
    return st;
}

/* A base port with 16 free ports above it. */
static int free_base_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int p = 20000 + (int)(((unsigned)getpid() * 7907u + (unsigned)tries * 104723u) % 30000u);
        bool ok = true;
        for (int k = 0; k < 16 && ok; k++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)(p + k)),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
            close(fd);
        }
        if (ok)
            return p;
    }
    cr_assert_fail("no free port range");
    return 0;
}

/* Start bin/prog with the environment of role (and no options); stdout and stderr go to
 * NAME.out and NAME.err in the test directory. */
static pid_t start_role(const char *prog, const char *role, const char *name)
{
    const char *bin = getenv("PD_BIN_DIR");
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s.out", dir, name);
        int out = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        snprintf(path, sizeof(path), "%s/%s.err", dir, name);
        int err = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out, 1);
        dup2(err, 2);
        snprintf(path, sizeof(path), "%s/m.yaml", dir);
        setenv("PD_MANIFEST", path, 1);
        setenv("PD_ROLE", role, 1);
        setenv("PD_INDEX", "0", 1);
        setenv("PD_HOST", "127.0.0.1", 1);
        setenv("PD_ROUTER", "127.0.0.1", 1);
        setenv("PD_LOG_LEVEL", "info", 1);
        unsetenv("PD_LOG_STDOUT");
        snprintf(path, sizeof(path), "%s/%s", bin, prog);
        execl(path, prog, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* SIGTERM, then the exit status (-1 if it had to be killed). */
static int stop(pid_t *pid)
{
    if (*pid <= 0)
        return -1;
    kill(*pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 100; i++) {
        if (waitpid(*pid, &st, WNOHANG) == *pid) {
            *pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        usleep(100000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
    return -1;
}

static void teardown(void)
{
    for (int i = 3; i >= 0; i--)
        stop(&procs[i]);
    if (dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            cr_log_info("could not remove %s", dir);
    }
}

static void wait_ready(const char *router, const char *worker)
{
    static char out[4096];
    double t0 = dt_now_s();
    while (sh(out, sizeof(out), "'%s/pdctl' status -r %s --worker %s --timeout-ms 1000",
              getenv("PD_BIN_DIR"), router, worker) != 0) {
        cr_assert_lt(dt_now_s() - t0, 90.0, "%s not ready: %s", worker, out);
        usleep(200000);
    }
    cr_assert(strstr(out, "ready") != NULL, "%s", out);
}

static const char *tokens_of(const char *json, char *buf, size_t cap)
{
    const char *p = strstr(json, "\"tokens\":[");
    const char *end = p != NULL ? strchr(p, ']') : NULL;
    if (end == NULL)
        return "";
    snprintf(buf, cap, "%.*s", (int)(end - p + 1), p);
    return buf;
}

TestSuite(env_start, .timeout = 200, .fini = teardown);

Test(env_start, roles_run_from_the_manifest_and_environment_alone)
{
    const char *bin = getenv("PD_BIN_DIR");
    if (bin == NULL)
        cr_skip_test("PD_BIN_DIR is not set (run through ctest)");
    snprintf(dir, sizeof(dir), "/tmp/pd_envstart_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    static char out[1 << 16];
    int base = free_base_port();
    cr_assert_eq(sh(out, sizeof(out),
                    "'%s/pdctl' model new --preset tiny --seed 3 -o model >/dev/null && "
                    "printf 'name: env\\nmodel:\\n  path: %s/model\\n  preset: \"\"\\n"
                    "network:\\n  base_port: %d\\nrouter:\\n  worker_timeout_ms: 3000\\n"
                    "gateway:\\n  count: 1\\n  port: %d\\n' > m.yaml",
                    bin, dir, base, base + 13),
                 0, "%s", out);
    char router[64];
    snprintf(router, sizeof(router), "tcp://127.0.0.1:%d", base);

    procs[0] = start_role("pd-router", "router", "router");
    procs[1] = start_role("pd-prefill", "prefill", "prefill");
    procs[2] = start_role("pd-decode", "decode", "decode");
    wait_ready(router, "prefill-0");
    wait_ready(router, "decode-0");
    procs[3] = start_role("pd-gateway", "gateway", "gateway");
    double t0 = dt_now_s();
    while (sh(out, sizeof(out), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/ready",
              base + 13) != 0 ||
           strcmp(out, "200") != 0) {
        cr_assert_lt(dt_now_s() - t0, 60.0, "the gateway is not ready: %s", out);
        usleep(200000);
    }

    char got[4096], want[4096], gt[1024], wt[1024];
    cr_assert_eq(sh(got, sizeof(got),
                    "'%s/pdctl' submit -r %s --tokens 1,2,3,4,5 -n 10 --seed 7 --json 2>/dev/null",
                    bin, router),
                 0, "%s", got);
    cr_assert_eq(sh(want, sizeof(want),
                    "'%s/pdctl' generate -m model --tokens 1,2,3,4,5 -n 10 --seed 7 --json "
                    "2>/dev/null",
                    bin),
                 0, "%s", want);
    cr_assert_str_eq(tokens_of(got, gt, sizeof(gt)), tokens_of(want, wt, sizeof(wt)));
    cr_assert_neq(gt[0], '\0');

    /* A restarted router: the workers register again. */
    cr_assert_eq(stop(&procs[0]), 0, "the router stops with status 0 on SIGTERM");
    procs[0] = start_role("pd-router", "router", "router");
    wait_ready(router, "prefill-0");
    wait_ready(router, "decode-0");
    cr_assert_eq(sh(got, sizeof(got),
                    "'%s/pdctl' submit -r %s --tokens 1,2,3,4,5 -n 10 --seed 7 --json 2>/dev/null",
                    bin, router),
                 0, "%s", got);
    cr_assert_str_eq(tokens_of(got, gt, sizeof(gt)), wt, "the same tokens after the restart");

    for (int i = 3; i >= 0; i--)
        cr_assert_eq(stop(&procs[i]), 0, "process %d stops with status 0 on SIGTERM", i);

    /* Logs on stdout, nothing on stderr. */
    cr_assert_eq(sh(out, sizeof(out), "grep -c 'registered' router.out"), 0, "%s", out);
    cr_assert_geq(atoi(out), 4, "two registrations per router start: %s", out);
    cr_assert_eq(sh(out, sizeof(out), "grep -l register decode.out prefill.out | wc -l"), 0);
    cr_assert_eq(atoi(out), 2, "the workers log to stdout");
    cr_assert_eq(sh(out, sizeof(out), "cat router.err prefill.err decode.err gateway.err | wc -c"),
                 0);
    cr_assert_eq(atoi(out), 0, "nothing on stderr");

    /* A wrong environment: the reason, and status 2. */
    cr_assert_eq(
        sh(out, sizeof(out), "PD_MANIFEST=m.yaml PD_ROLE=decode '%s/pd-prefill' --help", bin), 2,
        "%s", out);
    cr_assert(strstr(out, "PD_ROLE is 'decode'") != NULL, "%s", out);
    cr_assert_eq(
        sh(out, sizeof(out), "PD_MANIFEST=m.yaml PD_ROLE=decode PD_INDEX=1 '%s/pd-decode'", bin), 2,
        "%s", out);
    cr_assert(strstr(out, "decode index 1 is past the manifest's 1") != NULL, "%s", out);
    cr_assert_eq(
        sh(out, sizeof(out), "PD_MANIFEST=nonexistent.yaml PD_ROLE=router '%s/pd-router'", bin), 2,
        "%s", out);
    cr_assert(strstr(out, "cannot open") != NULL, "%s", out);
}
