/* pdctl submit and pdctl status against pd-router with fake workers. */
#include "fake_worker.h"

#include "pd/time.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Run pdctl with args while pumping the fake cluster; stdout goes to out (cap bytes).
 * Returns the exit status. */
static int run_pdctl(fw_cluster_t *cl, const char *const *args, char *out, size_t cap)
{
    char bin[1024], path[] = "/tmp/pdkv-pdctl-out-XXXXXX";
    snprintf(bin, sizeof(bin), "%s/pdctl", getenv("PD_BIN_DIR"));
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    pid_t got = 0;
    uint64_t until = pd_time_now_ms() + 10000;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && pd_time_now_ms() < until) {
        if (cl != NULL)
            fw_cluster_pump(cl, 10);
        else
            usleep(10000);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    ssize_t len = pread(fd, out, cap - 1, 0);
    out[len > 0 ? len : 0] = '\0';
    close(fd);
    unlink(path);
    cr_assert_neq(got, 0, "pdctl did not finish in 10 s");
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

Test(pdctl_client, submit_streams_and_status_lists_workers)
{
    fw_router_t r;
    const char *const extra[] = {"--tokenizer", "byte", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    uint64_t until = pd_time_now_ms() + 5000;
    while (!(p0.registered && d0.registered) && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert(p0.registered && d0.registered);

    static char out[65536];
    const char *const submit[] = {"submit",
                                  "-r",
                                  r.client_ep,
                                  "--tokens",
                                  "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20",
                                  "-n",
                                  "5",
                                  "--json",
                                  "--cache",
                                  "explicit:16@1h",
                                  NULL};
    cr_assert_eq(run_pdctl(&cl, submit, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "\"finish_reason\":\"length\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"input_tokens\":20") != NULL, "%s", out);
    cr_assert(strstr(out, "\"output_tokens\":5") != NULL, "%s", out);
    cr_assert(strstr(out, "\"decode\":\"decode-0\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"ttft_ms\":") != NULL, "%s", out);

    /* A text prompt: the router tokenizes BOS + 2 bytes. */
    const char *const text[] = {"submit", "-r", r.client_ep, "-p", "hi", "-n", "2", "--json", NULL};
    cr_assert_eq(run_pdctl(&cl, text, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "\"input_tokens\":3") != NULL, "%s", out);

    /* Plain output: tokens on stdout, a newline at the end. */
    const char *const plain[] = {"submit", "-r", r.client_ep, "--tokens", "5,6,7", "-n", "3", NULL};
    cr_assert_eq(run_pdctl(&cl, plain, out, sizeof(out)), 0, "%s", out);
    cr_assert_gt(strlen(out), 0);
    cr_assert_eq(out[strlen(out) - 1], '\n');

    const char *const status[] = {"status", "-r", r.client_ep, "--json", NULL};
    cr_assert_eq(run_pdctl(&cl, status, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "\"id\":\"prefill-0\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"id\":\"decode-0\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"requests_in_flight\":0") != NULL, "%s", out);
    const char *const table[] = {"status", "-r", r.client_ep, NULL};
    cr_assert_eq(run_pdctl(&cl, table, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "2 workers") != NULL, "%s", out);

    /* Usage errors and router errors. */
    const char *const bad_cache[] = {"submit", "-r",      r.client_ep,  "--tokens",
                                     "1",      "--cache", "explicit:0", NULL};
    cr_assert_eq(run_pdctl(&cl, bad_cache, out, sizeof(out)), 2);
    const char *const both[] = {"submit", "-r", r.client_ep, "--tokens", "1", "-p", "x", NULL};
    cr_assert_eq(run_pdctl(&cl, both, out, sizeof(out)), 2);
    const char *const oob[] = {"submit", "-r", r.client_ep, "--tokens", "1,100000", "--json", NULL};
    cr_assert_eq(run_pdctl(&cl, oob, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "PD_ERR_OUT_OF_RANGE") != NULL, "%s", out);

    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}

Test(pdctl_client, status_without_router_fails_in_time)
{
    static char out[4096];
    /* The bound is relative to what starting pdctl costs on this machine right now (on a
     * loaded machine the dynamic loader alone takes seconds): status must give up within
     * its 300 ms timeout plus slack, well before its 5 s default. */
    const char *const help[] = {"status", "--help", NULL};
    uint64_t t0 = pd_time_now_ms();
    cr_assert_eq(run_pdctl(NULL, help, out, sizeof(out)), 0);
    uint64_t start_cost_ms = pd_time_now_ms() - t0;
    const char *const status[] = {"status", "-r", "tcp://127.0.0.1:1", "--timeout-ms", "300", NULL};
    t0 = pd_time_now_ms();
    cr_assert_eq(run_pdctl(NULL, status, out, sizeof(out)), 1);
    uint64_t took_ms = pd_time_now_ms() - t0;
    cr_assert_lt(took_ms, start_cost_ms + 2000, "status took %llu ms, starting pdctl %llu ms",
                 (unsigned long long)took_ms, (unsigned long long)start_cost_ms);
}

Test(pdctl_client, submit_and_status_authenticate_with_curve)
{
    /* Keys the way an operator makes them: pd-router --keygen, saved as printed. */
    char dir[] = "/tmp/pdkv-pdctl-auth-XXXXXX", rkey[64], ckey[64], keys[64], line[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(rkey, sizeof(rkey), "%s/router.key", dir);
    snprintf(ckey, sizeof(ckey), "%s/client.key", dir);
    snprintf(keys, sizeof(keys), "%s/clients", dir);
    char cmd[1200], server_pub[64] = "", client_pub[64] = "";
    snprintf(cmd, sizeof(cmd), "%s/pd-router --keygen > %s && %s/pd-router --keygen > %s",
             getenv("PD_BIN_DIR"), rkey, getenv("PD_BIN_DIR"), ckey);
    cr_assert_eq(system(cmd), 0);
    FILE *f = fopen(rkey, "r");
    cr_assert_eq(fscanf(f, "public %63s", server_pub), 1);
    fclose(f);
    f = fopen(ckey, "r");
    cr_assert_eq(fscanf(f, "public %63s", client_pub), 1);
    fclose(f);
    cr_assert_eq(strlen(server_pub), 40);
    f = fopen(keys, "w");
    snprintf(line, sizeof(line), "ops %s\n", client_pub);
    fputs(line, f);
    fclose(f);

    fw_router_t r;
    const char *const extra[] = {"--curve-secret-file", rkey, "--client-keys", keys, NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    uint64_t until = pd_time_now_ms() + 5000;
    while (!(p0.registered && d0.registered) && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);

    static char out[65536];
    const char *const submit[] = {"submit",
                                  "-r",
                                  r.client_ep,
                                  "--tokens",
                                  "1,2,3",
                                  "-n",
                                  "2",
                                  "--json",
                                  "--curve-server-key",
                                  server_pub,
                                  "--curve-secret-file",
                                  ckey,
                                  NULL};
    cr_assert_eq(run_pdctl(&cl, submit, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "\"output_tokens\":2") != NULL, "%s", out);
    const char *const status[] = {
        "status", "-r", r.client_ep, "--curve-server-key", server_pub, "--curve-secret-file",
        ckey,     NULL};
    cr_assert_eq(run_pdctl(&cl, status, out, sizeof(out)), 0, "%s", out);
    /* Without the keys: no answer. */
    const char *const anon[] = {"status", "-r", r.client_ep, "--timeout-ms", "500", NULL};
    cr_assert_eq(run_pdctl(&cl, anon, out, sizeof(out)), 1);

    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
    unlink(rkey);
    unlink(ckey);
    unlink(keys);
    rmdir(dir);
}
