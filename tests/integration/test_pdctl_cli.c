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
    cr_assert_eq(r->code, code, "exit %d, want %d; stdout: %s; stderr: %s", r->code, code,
                 r->out, r->err);
    if (needle != NULL)
        cr_assert_not_null(strstr(on_out ? r->out : r->err, needle), "'%s' not in %s: %s",
                           needle, on_out ? "stdout" : "stderr", on_out ? r->out : r->err);
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

