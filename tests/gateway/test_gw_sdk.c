/* The official SDKs as clients: npm `openai` and `@anthropic-ai/sdk` (exact versions in
 * tests/js/sdk/package-lock.json) run their scripts against pd-gateway in front of a real
 * cluster. The scripts check tokens against `pdctl generate` and usage against the
 * cluster's cache accounting; this side starts the cluster and reads their verdict. Skips
 * when Node.js or the packages are not installed (deploy/install-deps.sh installs both). */
#include "gw_test_util.h"

TestSuite(gateway_sdk, .fini = gt_stop, .timeout = 180);

static bool sdk_available(const char *package, char *why, size_t cap)
{
    if (system("node --version >/dev/null 2>&1") != 0) {
        snprintf(why, cap, "node is not installed (deploy/install-deps.sh installs it)");
        return false;
    }
    const char *src = getenv("PD_SOURCE_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tests/js/sdk/node_modules/%s/package.json",
             src != NULL ? src : ".", package);
    if (access(path, R_OK) != 0) {
        snprintf(why, cap,
                 "%s is not installed: run deploy/install-deps.sh (npm ci in tests/js/sdk)",
                 package);
        return false;
    }
    return true;
}

/* The cluster and a gateway with two keys, then `node SCRIPT`; its output is printed. */
static void sdk_run(const char *script)
{
    gt_init();
    cr_assert_geq(sodium_init(), 0);
    char keys[PATH_MAX], extra[PATH_MAX + 16];
    snprintf(keys, sizeof(keys), "%s/keys", gt.env.dir);
    const char *lines[] = {"sk-test-alice", "alice", "sk-test-bob", "bob"};
    gt_write_keys(keys, lines, 4);
    snprintf(extra, sizeof(extra), "--keys %s", keys);
    gt_start_router("--min-cached-prefix 64");
    gt_start_workers();
    gt_start_gateway("gateway", extra, gt.url, sizeof(gt.url));
    gt_wait_ready();

    const char *src = getenv("PD_SOURCE_DIR");
    char bin[PATH_MAX];
    cr_assert_not_null(realpath(gt.env.bin, bin), "%s: %s", gt.env.bin, strerror(errno));
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof(cmd),
             "cd %s/tests/js/sdk && PD_GW_URL=%s PD_KEY_A=sk-test-alice PD_KEY_B=sk-test-bob "
             "PD_PDCTL=%s/pdctl PD_MODEL=%s PD_MODEL_NAME=small timeout 120 node %s 2>&1",
             src != NULL ? src : ".", gt.url, bin, gt.model, script);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[4096];
    int n_ok = 0;
    while (fgets(line, sizeof(line), p) != NULL) {
        fprintf(stderr, "%s", line);
        if (strncmp(line, "ok   ", 5) == 0)
            n_ok++;
    }
    int st = pclose(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %s failed (status 0x%x)", script, st);
    cr_assert_gt(n_ok, 0, "node %s checked nothing", script);
}

Test(gateway_sdk, openai)
{
    char why[256];
    if (!sdk_available("openai", why, sizeof(why)))
        cr_skip_test("%s", why);
    sdk_run("openai.test.mjs");
}

Test(gateway_sdk, anthropic)
{
    char why[256];
    if (!sdk_available("@anthropic-ai/sdk", why, sizeof(why)))
        cr_skip_test("%s", why);
    sdk_run("anthropic.test.mjs");
}
