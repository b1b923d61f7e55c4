/* pdctl as a new user meets it, through the real binary: one option spelling per
 * meaning in every subcommand (old spellings warned), endpoints in three forms, "did
 * you mean" for typos, a fast clear failure when no router answers, a printed random
 * seed, up/status/down of a real cluster (workers printed as they register, logs at
 * info level, down idempotent and found by name, stale state cleared, the cause of a
 * role's death named with its log), errors in one style with their numbers. */
#include "pdctl_run.h"
#include "test_cluster_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The run succeeded or failed with exactly code, and needle is in its stderr (or
 * stdout when on_out). */
static void expect(const run_result_t *r, int code, bool on_out, const char *needle)
{
    cr_assert_eq(r->signal, 0, "died of signal %d; stderr: %s", r->signal, r->err);
    cr_assert_eq(r->code, code, "exit %d, want %d; stdout: %s; stderr: %s", r->code, code, r->out,
                 r->err);
    if (needle != NULL)
        cr_assert_not_null(strstr(on_out ? r->out : r->err, needle), "'%s' not in %s: %s", needle,
                           on_out ? "stdout" : "stderr", on_out ? r->out : r->err);
}

static void run_expect(const char *const *args, int code, const char *needle)
{
    run_result_t r = run_pdctl(args);
    expect(&r, code, false, needle);
    /* One error style: every line of a failure's stderr starts with "pdctl: ". */
    if (code != 0) {
        for (const char *line = r.err; *line != '\0';) {
            cr_assert_eq(strncmp(line, "pdctl: ", 7), 0, "stray stderr line: %s", line);
            const char *nl = strchr(line, '\n');
            line = nl ? nl + 1 : line + strlen(line);
        }
    }
    run_free(&r);
}

Test(pdctl_cli, options_mean_the_same_everywhere)
{
    /* -n is --max-tokens in submit and generate, and both say so. */
    const char *cmds[] = {"submit", "generate"};
    for (int i = 0; i < 2; i++) {
        const char *help[] = {cmds[i], "--help", NULL};
        run_result_t r = run_pdctl(help);
        expect(&r, 0, true, "-n, --max-tokens N");
        run_free(&r);
    }
    /* bench takes --max-tokens too; --output-len is an alias with a warning. */
    const char *bhelp[] = {"bench", "--help", NULL};
    run_result_t r = run_pdctl(bhelp);
    expect(&r, 0, true, "--max-tokens");
    run_free(&r);
    const char *old[] = {"bench", "-r", ":1", "--output-len", "4", "--requests", "1", NULL};
    r = run_pdctl(old);
    expect(&r, 1, false, "'--output-len' is deprecated");
    cr_assert_not_null(strstr(r.err, "use '--max-tokens'"), "%s", r.err);
    run_free(&r);
    const char *old_n[] = {"bench", "-r", ":1", "-n", "1", NULL};
    r = run_pdctl(old_n);
    expect(&r, 1, false, "'-n' is deprecated");
    run_free(&r);
    /* Typos get a suggestion and exit 2, in every subcommand. */
    const char *typo1[] = {"submit", "-p", "hi", "--max-tokes", "3", NULL};
    run_expect(typo1, 2, "unknown option --max-tokes; did you mean --max-tokens?");
    const char *typo2[] = {"generate", "-m", "x", "-p", "hi", "--temprature", "0", NULL};
    run_expect(typo2, 2, "did you mean --temperature?");
    const char *typo3[] = {"status", "--jsn", NULL};
    run_expect(typo3, 2, "did you mean --json?");
    const char *typo4[] = {"bench", "--reqests", "3", NULL};
    run_expect(typo4, 2, "did you mean --requests?");
    const char *typo5[] = {"up", "--detatch", "m.yaml", NULL};
    run_expect(typo5, 2, "did you mean --detach?");
    const char *typo6[] = {"size", "--preest", "tiny", NULL};
    run_expect(typo6, 2, "did you mean --preset?");
    const char *typo7[] = {"model", "new", "--preset", "tiny", "--ouptut", "x", NULL};
    run_expect(typo7, 2, "did you mean --output?");
    const char *typo8[] = {"tokenize", "-t", "x", "--txt", "hi", NULL};
    run_expect(typo8, 2, "did you mean --text?");
    const char *single_dash[] = {"submit", "-p", "hi", "-max-tokens", "3", NULL};
    run_expect(single_dash, 2, "did you mean --max-tokens?");
    const char *noval[] = {"submit", "-p", "hi", "-n", NULL};
    run_expect(noval, 2, "-n needs a value");
    const char *flagval[] = {"submit", "-p", "hi", "--json=yes", NULL};
    run_expect(flagval, 2, "--json takes no value");
    const char *bad_ep[] = {"submit", "-p", "hi", "-r", "localhost", NULL};
    run_expect(bad_ep, 2, "'localhost' is not an endpoint");
    const char *bad_port[] = {"status", "-r", "tcp://127.0.0.1:99999", NULL};
    run_expect(bad_port, 2, "is not an endpoint");
}

Test(pdctl_cli, no_router_fails_fast_in_every_endpoint_form)
{
    int port = pd_tc_free_port();
    char hp[64], colon[32], full[80], want[96];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
    snprintf(colon, sizeof(colon), ":%d", port);
    snprintf(full, sizeof(full), "tcp://127.0.0.1:%d", port);
    snprintf(want, sizeof(want), "cannot reach router at tcp://127.0.0.1:%d: Connection refused",
             port);
    const char *forms[] = {hp, colon, full};
    for (int i = 0; i < 3; i++) {
        /* The 60 s alarm of run_pdctl would end a submit that waited as it once did. */
        const char *submit[] = {"submit", "-r", forms[i], "-p", "hi", NULL};
        run_expect(submit, 1, want);
        const char *status[] = {"status", "-r", forms[i], NULL};
        run_expect(status, 1, want);
        const char *bench[] = {"bench", "-r", forms[i], "--requests", "1", NULL};
        run_expect(bench, 1, want);
    }
    const char *waited[] = {"submit", "-r", colon, "-p", "hi", "--wait", "1", NULL};
    run_expect(waited, 1, "(waited 1 s)");
}

/* The pids a state file records ("proc PID NAME NS" lines); returns how many. */
static int state_pids(const char *run_dir, pid_t *pids, int cap)
{
    DIR *d = opendir(run_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 6, ".state") != 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", run_dir, e->d_name);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        char line[256];
        int pid;
        while (fgets(line, sizeof(line), f) != NULL && n < cap)
            if (sscanf(line, "proc %d", &pid) == 1)
                pids[n++] = pid;
        fclose(f);
    }
    closedir(d);
    return n;
}

/* The JSON member "seed" of a submit --json line. */
static unsigned long long json_seed(const char *out)
{
    const char *s = strstr(out, "\"seed\":");
    cr_assert_not_null(s, "no seed in %s", out);
    return strtoull(s + 7, NULL, 10);
}

static char *json_tokens(const char *out)
{
    const char *s = strstr(out, "\"tokens\":[");
    cr_assert_not_null(s, "no tokens in %s", out);
    const char *e = strchr(s, ']');
    return strndup(s, (size_t)(e - s + 1));
}

/* Whatever assertion ends the cluster test, nothing of its cluster stays behind. */
static void cluster_fini(void)
{
    const char *bin_dir = getenv("PD_BIN_DIR");
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd),
             "PD_RUN_DIR=/tmp/pd_test_cli_%d/run '%s/pdctl' down /tmp/pd_test_cli_%d/m.yaml "
             ">/dev/null 2>&1; rm -rf /tmp/pd_test_cli_%d",
             (int)getpid(), bin_dir ? bin_dir : ".", (int)getpid(), (int)getpid());
    if (system(cmd) != 0)
        cr_log_info("cleanup of /tmp/pd_test_cli_%d failed", (int)getpid());
}

Test(pdctl_cli, up_status_submit_down_as_a_new_user, .timeout = 300, .fini = cluster_fini)
{
    char dir[PATH_MAX / 2], path[PATH_MAX], run_dir[PATH_MAX], env_run[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "/tmp/pd_test_cli_%d", (int)getpid());
    snprintf(run_dir, sizeof(run_dir), "%s/run", dir);
    snprintf(env_run, sizeof(env_run), "PD_RUN_DIR=%s", run_dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    /* The manifest names port 1100; the cluster runs where --set puts it, and status and
     * down find it by the manifest's name alone. */
    char name[32];
    snprintf(name, sizeof(name), "cli%d", (int)getpid());
    snprintf(path, sizeof(path), "%s/m.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "name: %s\nmodel:\n  path: %s/model\n  preset: tiny\n  seed: 1\nnetwork:\n"
            "  host: 127.0.0.1\n  base_port: 1100\nprefill:\n  count: 1\n  threads: 1\n"
            "  pool_mb: 16\ndecode:\n  count: 1\n  threads: 1\n  pool_mb: 16\n",
            name, dir);
    fclose(f);
    int port = pd_tc_free_port();
    char set_port[64], ep[32];
    snprintf(set_port, sizeof(set_port), "network.base_port=%d", port);
    snprintf(ep, sizeof(ep), ":%d", port);
    const char *env[] = {env_run, NULL};

    const char *up[] = {"up", "-d", path, "--set", set_port, NULL};
    run_result_t r = run_pdctl_env(env, up);
    expect(&r, 0, true, "worker prefill-0 (prefill) registered");
    cr_assert_not_null(strstr(r.out, "worker decode-0 (decode) registered"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "ready: 2 workers"), "%s", r.out);
    run_free(&r);

    const char *status[] = {"status", path, NULL};
    r = run_pdctl_env(env, status);
    expect(&r, 0, true, ": 2 workers");
    char want_ep[64];
    snprintf(want_ep, sizeof(want_ep), "router tcp://127.0.0.1:%d", port);
    cr_assert_not_null(strstr(r.out, want_ep), "%s", r.out);
    run_free(&r);

    /* No --seed: a random one, printed; repeating it repeats the tokens. */
    const char *sub[] = {"submit", "-r", ep, "--tokens", "5,6,7,8", "-n", "6", "--json", NULL};
    r = run_pdctl_env(env, sub);
    expect(&r, 0, true, "\"seed\":");
    unsigned long long seed1 = json_seed(r.out);
    char *tokens1 = json_tokens(r.out);
    run_free(&r);
    r = run_pdctl_env(env, sub);
    expect(&r, 0, true, "\"seed\":");
    unsigned long long seed2 = json_seed(r.out);
    run_free(&r);
    cr_assert_neq(seed1, seed2, "two runs drew the same seed %llu", seed1);
    char seed_arg[32];
    snprintf(seed_arg, sizeof(seed_arg), "%llu", seed1);
    const char *again[] = {"submit", "-r",     ep,       "--tokens", "5,6,7,8", "-n",
                           "6",      "--json", "--seed", seed_arg,   NULL};
    r = run_pdctl_env(env, again);
    expect(&r, 0, true, tokens1);
    run_free(&r);
    free(tokens1);
    const char *plain[] = {"submit", "-r", ep, "--tokens", "5,6,7,8", "-n", "2", NULL};
    r = run_pdctl_env(env, plain);
    expect(&r, 0, false, ", seed ");
    run_free(&r);

    /* Limits come with their numbers: the tiny model's context is 256 tokens. */
    char long_ids[300 * 2 + 1];
    for (int i = 0; i < 300; i++)
        memcpy(long_ids + 2 * i, "5,", 2);
    long_ids[2 * 300 - 1] = '\0'; /* the last comma */
    const char *too_long[] = {"submit", "-r", ep, "--tokens", long_ids, "-n", "2", NULL};
    r = run_pdctl_env(env, too_long);
    expect(&r, 1, false, "the prompt is 300 tokens, the model's context 256");
    run_free(&r);

    /* bench: the unit stands with the row's name, and it says what it wrote. */
    char json[PATH_MAX];
    snprintf(json, sizeof(json), "%s/b.json", dir);
    const char *bench[] = {"bench", "-q",           "-r", ep,       "-N", "4", "--prompt-len",
                           "20",    "--max-tokens", "2",  "--json", json, NULL};
    r = run_pdctl_env(env, bench);
    expect(&r, 0, true, "TTFT client (ms)");
    char wrote[PATH_MAX + 16];
    snprintf(wrote, sizeof(wrote), "wrote %s", json);
    cr_assert_not_null(strstr(r.out, wrote), "%s", r.out);
    cr_assert_null(strstr(r.out, " ms\n"), "a count glued to a unit: %s", r.out);
    run_free(&r);

    /* The roles' logs are at info level: registration and requests are in them. */
    char log[PATH_MAX + 64];
    snprintf(log, sizeof(log), "%s/%s-router.log", run_dir, name);
    char *text = slurp(log);
    cr_assert_not_null(strstr(text, " info "), "router log: %s", text);
    cr_assert_not_null(strstr(text, "registered"), "router log: %s", text);
    free(text);

    pid_t pids[8];
    int n = state_pids(run_dir, pids, 8);
    cr_assert_eq(n, 3);
    const char *down[] = {"down", path, NULL};
    r = run_pdctl_env(env, down);
    expect(&r, 0, true, "stopped cluster");
    cr_assert_not_null(strstr(r.out, "3 processes"), "%s", r.out);
    run_free(&r);
    for (int i = 0; i < n; i++)
        cr_assert_neq(kill(pids[i], 0), 0, "pid %d still runs after down", (int)pids[i]);
    r = run_pdctl_env(env, down);
    expect(&r, 0, true, "is not running");
    run_free(&r);

    /* A cluster whose processes all died: up clears its record and starts afresh. */
    r = run_pdctl_env(env, up);
    expect(&r, 0, true, "ready");
    run_free(&r);
    n = state_pids(run_dir, pids, 8);
    cr_assert_eq(n, 3);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 100 && kill(pids[i], 0) == 0; k++)
            usleep(20000);
    r = run_pdctl_env(env, up);
    expect(&r, 0, true, "ready");
    cr_assert_not_null(strstr(r.err, "none of its 3 processes is running"), "%s", r.err);
    run_free(&r);
    /* Up twice names what runs. */
    r = run_pdctl_env(env, up);
    expect(&r, 1, false, "is already running");
    run_free(&r);
    r = run_pdctl_env(env, down);
    expect(&r, 0, true, "stopped cluster");
    run_free(&r);

    /* The router's port taken: up names the cause and the log. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 1), 0);
    r = run_pdctl_env(env, up);
    expect(&r, 1, false, "router (pid ");
    cr_assert_not_null(strstr(r.err, "Address already in use"), "%s", r.err);
    cr_assert_not_null(strstr(r.err, "-router.log"), "%s", r.err);
    run_free(&r);
    close(fd);
    r = run_pdctl_env(env, down);
    expect(&r, 0, true, "not running");
    run_free(&r);
}

Test(pdctl_cli, errors_name_the_cause_and_the_numbers)
{
    /* A missing model is "not found", not an I/O error. */
    const char *missing[] = {"generate", "-m", "/nonexistent/model", "-p", "hi", NULL};
    run_result_t r = run_pdctl(missing);
    expect(&r, 1, false, "/nonexistent/model");
    cr_assert_not_null(strstr(r.err, "not found"), "%s", r.err);
    cr_assert_null(strstr(r.err, "input/output"), "%s", r.err);
    run_free(&r);
    /* Library log lines read like pdctl's own: no timestamps, one "pdctl: " style. */
    const char *missing2[] = {"generate", "-m", "/nonexistent/model", "-p", "hi", NULL};
    run_expect(missing2, 1, "pdctl: model /nonexistent/model: No such file or directory");
    const char *cmd_typo[] = {"sumbit", NULL};
    run_expect(cmd_typo, 2, "unknown command 'sumbit'; did you mean 'submit'?");

    /* Manifest errors name the file, the line and the key, and suggest. */
    char path[128];
    snprintf(path, sizeof(path), "/tmp/pd_test_cli_m_%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: typo\nrouter:\n  polcy: kv\n");
    fclose(f);
    const char *typo[] = {"up", "-d", path, NULL};
    run_expect(typo, 1, "line 3: unknown key 'router.polcy'; did you mean 'router.policy'?");
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: typo\nrouter:\n  block_tokens: 16\n  policy: fastest\n");
    fclose(f);
    run_expect(typo, 1, "line 4: 'router.policy' = 'fastest': must be kv or rr");
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: typo\ntransfer:\n  checksum: maybe\n");
    fclose(f);
    run_expect(typo, 1, "line 3: 'transfer.checksum' must be true or false, not 'maybe'");
    /* Without worker keys a cluster stays on loopback. */
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: open\nauth: off\nnetwork:\n  host: 10.1.2.3\n  base_port: 1100\n");
    fclose(f);
    run_expect(typo, 1, "'auth: off' binds to loopback only");
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: open\nauth: maybe\n");
    fclose(f);
    run_expect(typo, 1, "line 2: 'auth' = 'maybe': must be on or off");
    /* yes/no and 1/0 are booleans too, as the manifest reference says: this manifest
     * loads, and status goes on to look for its router (base_port 1100: none). */
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "name: typo\nnetwork:\n  base_port: 1100\ntransfer:\n  checksum: yes\n"
               "  layerwise: 0\n");
    fclose(f);
    const char *st[] = {"status", path, NULL};
    run_expect(st, 1, "cannot reach router at tcp://127.0.0.1:1100");
    unlink(path);
    const char *nofile[] = {"down", "/nonexistent/m.yaml", NULL};
    run_expect(nofile, 1, "cannot open /nonexistent/m.yaml: No such file or directory");
}

Test(pdctl_cli, kvbench_without_perftest_prints_no_ratio, .timeout = 120)
{
    const char *bin_dir = getenv("PD_BIN_DIR");
    cr_assert_not_null(bin_dir);
    char cmd[PATH_MAX + 256], out[64];
    snprintf(out, sizeof(out), "/tmp/pd_test_cli_kb_%d.txt", (int)getpid());
    snprintf(cmd, sizeof(cmd),
             "%s/pd-kvbench --transports shm --block-sizes 4K --blocks 4 --checksum off "
             "--pool 1M --bytes 1M --repeats 1 --max-seconds 1 --no-perftest > %s 2>/dev/null",
             bin_dir, out);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "pd-kvbench failed (%d)", rc);
    char *text = slurp(out);
    unlink(out);
    /* The row: ... best op "-", op GB/s "-", vs op "-", vs mem a percentage. */
    const char *row = strstr(text, "\nshm");
    cr_assert_not_null(row, "no shm row: %s", text);
    char line[512], *tok[20], *save = NULL;
    snprintf(line, sizeof(line), "%.*s", (int)strcspn(row + 1, "\n"), row + 1);
    int n = 0;
    for (char *t = strtok_r(line, " ", &save); t != NULL && n < 20; t = strtok_r(NULL, " ", &save))
        tok[n++] = t;
    cr_assert_eq(n, 16, "%d columns: %s", n, row);
    cr_assert_str_eq(tok[12], "-", "best op: %s", row);
    cr_assert_str_eq(tok[13], "-", "op GB/s: %s", row);
    cr_assert_str_eq(tok[14], "-", "vs op: %s", row);
    cr_assert_eq(tok[15][strlen(tok[15]) - 1], '%', "vs mem: %s", row);
    free(text);
}
