#include "pd/manifest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void write_manifest(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/pd_manifest_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(manifest, parses_roles_and_overrides)
{
    write_manifest("name: two\nmodel:\n  path: /m\n  preset: tiny\n  seed: 7\n"
                   "prefill:\n  count: 2\n  threads: 1\ndecode:\n  count: 2\n  pool_mb: 64\n"
                   "network:\n  base_port: 9100\ntransfer:\n  transports: tcp\n"
                   "  checksum: false\n");
    pd_manifest_t m;
    char err[256] = "";
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_OK, "%s", err);
    unlink(path);
    cr_assert_str_eq(m.name, "two");
    cr_assert_str_eq(m.model_preset, "tiny");
    cr_assert_eq(m.model_seed, 7);
    cr_assert_eq(m.prefill.count, 2);
    cr_assert_eq(m.decode.count, 2);
    cr_assert_eq(m.decode.pool_mb, 64);
    cr_assert_eq(m.decode.max_batch, 32, "defaults stay where not given");
    cr_assert_eq(m.base_port, 9100);
    cr_assert_str_eq(m.xfer_transports, "tcp");
    cr_assert_eq(m.xfer_checksum, false);
    cr_assert_eq(pd_manifest_set(&m, "decode.count=3", err, sizeof(err)), PD_OK);
    cr_assert_eq(m.decode.count, 3);
}

Test(manifest, rejects_unknown_keys_and_absurd_values_with_line_numbers)
{
    pd_manifest_t m;
    char err[256] = "";
    write_manifest("decode:\n  cuont: 2\n");
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "decode.cuont") != NULL, "%s", err);
    unlink(path);

    write_manifest("decode:\n  count: -1\n");
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "line 2") != NULL, "%s", err);
    unlink(path);

    write_manifest("network:\n  base_port: 99999999999\n");
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT);
    unlink(path);

    write_manifest("prefill:\n  count: 0\n");
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "prefill and decode") != NULL, "%s", err);
    unlink(path);

    write_manifest("router: [1, 2\n");
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT);
    unlink(path);

    cr_assert_eq(pd_manifest_load("/nonexistent/x.yaml", &m, err, sizeof(err)), PD_ERR_NOT_FOUND);
    pd_manifest_defaults(&m);
    cr_assert_eq(pd_manifest_set(&m, "router.policy=fastest", err, sizeof(err)), PD_ERR_FORMAT);
}

/* docs/MANIFEST.md's table and the parser list the same keys, with the same defaults and
 * the same numeric ranges. */
Test(manifest, reference_table_matches_the_parser)
{
    const char *src = getenv("PD_SOURCE_DIR");
    if (src == NULL)
        cr_skip_test("PD_SOURCE_DIR is not set (run through ctest)");
    char doc[4096];
    snprintf(doc, sizeof(doc), "%s/docs/MANIFEST.md", src);
    FILE *f = fopen(doc, "r");
    cr_assert_not_null(f, "cannot open %s", doc);
    pd_manifest_t def, m;
    pd_manifest_defaults(&def);
    char line[1024], err[256];
    size_t n_rows = 0;
    bool seen[128] = {false};
    while (fgets(line, sizeof(line), f) != NULL) {
        /* | `key` | `default` | range | meaning | */
        char key[128], dflt[300], range[64] = "";
        if (sscanf(line, "| `%127[^`]` | `%299[^`]` | %63[^|]|", key, dflt, range) < 2)
            continue;
        n_rows++;
        size_t k = 0;
        while (pd_manifest_key(k) != NULL && strcmp(pd_manifest_key(k), key) != 0)
            k++;
        cr_assert_not_null(pd_manifest_key(k), "documented key %s is not a manifest key", key);
        cr_assert_lt(k, 128);
        seen[k] = true;
        /* The default: setting it changes nothing. */
        const char *value = strcmp(dflt, "\"\"") == 0 ? "" : dflt;
        char set[512];
        snprintf(set, sizeof(set), "%s=%s", key, value);
        m = def;
        cr_assert_eq(pd_manifest_set(&m, set, err, sizeof(err)), PD_OK, "%s: %s", set, err);
        cr_assert_eq(memcmp(&m, &def, sizeof(m)), 0, "%s is not the default", set);
        /* A numeric range lo-hi: both ends are accepted, one past either is refused. The
         * probes start from a manifest with a colocated worker, so that no prefill or no
         * decode workers is still a cluster. */
        pd_manifest_t base = def;
        if (strcmp(key, "both.count") != 0)
            base.both.count = 1;
        unsigned long long lo, hi;
        if (sscanf(range, "%llu-%llu", &lo, &hi) == 2) {
            const unsigned long long probe[4] = {lo, hi, lo - 1, hi + 1};
            for (int i = 0; i < 4; i++) {
                if (i == 2 && lo == 0)
                    continue;
                snprintf(set, sizeof(set), "%s=%llu", key, probe[i]);
                m = base;
                pd_status_t st = pd_manifest_set(&m, set, err, sizeof(err));
                cr_assert_eq(st == PD_OK, i < 2, "%s: %s", set, pd_status_str(st));
            }
        }
    }
    fclose(f);
    size_t n_keys = 0;
    for (; pd_manifest_key(n_keys) != NULL; n_keys++)
        cr_expect(seen[n_keys], "manifest key %s is not in docs/MANIFEST.md",
                  pd_manifest_key(n_keys));
    cr_expect_eq(n_rows, n_keys);
}

Test(manifest, parses_placement_as_list_or_text)
{
    write_manifest(
        "image: registry.example/pdkv:1.0\n"
        "router:\n  hosts: [gpu-a]\n  cpus: 2\n"
        "decode:\n  count: 2\n  hosts:\n    - gpu-b\n    - gpu-c.rack1\n"
        "  node_label: pdkv.io/pool=decode\n  gpus: 1\n  rdma: rdma/hca_shared_devices_a\n"
        "  memory_mb: 4096\n  nodes: 2\n"
        "prefill:\n  hosts: gpu-d,gpu-e\n  image: other:2\n");
    pd_manifest_t m;
    char err[256] = "";
    cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_OK, "%s", err);
    unlink(path);
    cr_assert_str_eq(m.image, "registry.example/pdkv:1.0");
    cr_assert_str_eq(m.router_place.hosts, "gpu-a");
    cr_assert_eq(m.router_place.cpus, 2);
    cr_assert_str_eq(m.decode.place.hosts, "gpu-b,gpu-c.rack1");
    cr_assert_str_eq(m.decode.place.node_label, "pdkv.io/pool=decode");
    cr_assert_eq(m.decode.place.gpus, 1);
    cr_assert_eq(m.decode.place.nodes, 2);
    cr_assert_eq(m.decode.place.memory_mb, 4096);
    cr_assert_str_eq(m.decode.place.rdma, "rdma/hca_shared_devices_a");
    cr_assert_str_eq(m.prefill.place.hosts, "gpu-d,gpu-e");
    cr_assert_str_eq(m.prefill.place.image, "other:2");
    cr_assert_eq(m.prefill.place.nodes, 1, "defaults stay where not given");
    cr_assert_str_eq(pd_manifest_place(&m, "both")->image, "");
}

/* Each bad placement value is refused with its line and the reason. */
Test(manifest, rejects_bad_placement_with_line_numbers)
{
    static const struct {
        const char *text;
        const char *line;
        const char *why;
    } cases[] = {
        {"decode:\n  count: 1\n  hosts: [ok, \"bad host\"]\n", "line 3", "each host"},
        {"decode:\n  hosts: a,,b\n", "line 2", "each host"},
        {"decode:\n  hosts: []\n", "line 2", "empty list"},
        {"decode:\n  hosts:\n    - {a: 1}\n", "line 3", "list of names"},
        {"prefill:\n  node_label: gpu\n", "line 2", "key=value"},
        {"prefill:\n  node_label: a=b c\n", "line 2", "label value"},
        {"router:\n  rdma: hca\n", "line 2", "resource name"},
        {"\n\nimage: \"pdkv latest\"\n", "line 3", "image may hold"},
        {"both:\n  nodes: 0\n", "line 2", "outside"},
        {"decode:\n  gpus: 65\n", "line 2", "outside"},
        {"decode:\n  threads: [1, 2]\n", "line 2", "scalar or a mapping"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_manifest(cases[i].text);
        pd_manifest_t m;
        char err[256] = "";
        cr_assert_eq(pd_manifest_load(path, &m, err, sizeof(err)), PD_ERR_FORMAT, "case %zu", i);
        unlink(path);
        cr_assert(strstr(err, cases[i].line) != NULL, "case %zu: %s", i, err);
        cr_assert(strstr(err, cases[i].why) != NULL, "case %zu: %s", i, err);
    }
}

static const char *arg_after(char **argv, const char *opt)
{
    for (int i = 0; argv[i] != NULL; i++) {
        if (strcmp(argv[i], opt) == 0)
            return argv[i + 1];
    }
    return NULL;
}

/* transfer.kv_codec: off unless asked for, then passed to every worker; a bad name is
 * refused with its key. */
Test(manifest, kv_codec_reaches_the_workers_only_when_set)
{
    pd_manifest_t m;
    char err[256] = "";
    pd_manifest_defaults(&m);
    cr_assert_str_eq(m.xfer_kv_codec, "none");
    static pd_manifest_args_t args;
    pd_manifest_proc_t proc;
    cr_assert_eq(pd_manifest_proc_find(&m, "decode", 0, &proc, err, sizeof(err)), PD_OK, "%s", err);
    cr_assert_eq(pd_manifest_args_build(&m, &proc, "127.0.0.1", "127.0.0.1", &args), PD_OK);
    cr_assert_null(arg_after(args.argv, "--kv-codec"), "no codec option by default");
    cr_assert_eq(pd_manifest_set(&m, "transfer.kv_codec=fp8", err, sizeof(err)), PD_OK, "%s", err);
    const char *const roles[] = {"prefill", "decode"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pd_manifest_proc_find(&m, roles[i], 0, &proc, err, sizeof(err)), PD_OK);
        cr_assert_eq(pd_manifest_args_build(&m, &proc, "127.0.0.1", "127.0.0.1", &args), PD_OK);
        cr_assert_str_eq(arg_after(args.argv, "--kv-codec"), "fp8");
    }
    cr_assert_eq(pd_manifest_set(&m, "transfer.kv_codec=int4", err, sizeof(err)), PD_ERR_FORMAT);
    cr_assert(strstr(err, "transfer.kv_codec") != NULL, "%s", err);
}

/* A role started by a scheduler builds its options from PD_MANIFEST and PD_ROLE, PD_INDEX,
 * PD_HOST, PD_ROUTER alone; explicit options come after them and so win. */
Test(manifest, env_start_builds_the_roles_options)
{
    write_manifest("prefill:\n  count: 2\ndecode:\n  count: 2\n  pool_mb: 64\n"
                   "network:\n  base_port: 9100\n");
    setenv("PD_MANIFEST", path, 1);
    setenv("PD_ROLE", "decode", 1);
    setenv("PD_INDEX", "1", 1);
    setenv("PD_HOST", "10.1.2.3", 1);
    setenv("PD_ROUTER", "router.ns.svc", 1);
    static pd_manifest_args_t args;
    char *argv_in[] = {"pd-decode", "--threads", "3", NULL};
    int argc = 0;
    char **argv = NULL;
    char err[256] = "";
    cr_assert_eq(
        pd_manifest_env_argv("decode,both", 3, argv_in, &args, &argc, &argv, err, sizeof(err)),
        PD_OK, "%s", err);
    cr_assert_str_eq(argv[0], "pd-decode");
    cr_assert_str_eq(arg_after(argv, "--router"), "tcp://router.ns.svc:9101");
    cr_assert_str_eq(arg_after(argv, "--id"), "decode-1");
    cr_assert_str_eq(arg_after(argv, "--ip"), "10.1.2.3");
    /* router 0, prefill 1-2, decode 3-4: decode-1 is process 4 */
    cr_assert_str_eq(arg_after(argv, "--events"), "tcp://10.1.2.3:9114");
    cr_assert_str_eq(arg_after(argv, "--pool-mb"), "64");
    cr_assert_str_eq(argv[argc - 2], "--threads", "explicit options come last");
    cr_assert_null(argv[argc]);

    setenv("PD_ROLE", "router", 1);
    setenv("PD_INDEX", "0", 1);
    cr_assert_eq(pd_manifest_env_argv("router", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_OK, "%s", err);
    cr_assert_str_eq(arg_after(argv, "--client"), "tcp://10.1.2.3:9100");
    cr_assert_str_eq(arg_after(argv, "--workers"), "tcp://10.1.2.3:9101");

    /* Wrong role for the program, index past the count, bad address, bad manifest. */
    setenv("PD_ROLE", "prefill", 1);
    cr_assert_eq(
        pd_manifest_env_argv("decode,both", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
        PD_ERR_INVALID_PARAM);
    cr_assert(strstr(err, "PD_ROLE") != NULL, "%s", err);
    setenv("PD_INDEX", "2", 1);
    cr_assert_eq(pd_manifest_env_argv("prefill", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_ERR_INVALID_PARAM);
    cr_assert(strstr(err, "past") != NULL, "%s", err);
    setenv("PD_INDEX", "0", 1);
    setenv("PD_HOST", "tcp://x:1", 1);
    cr_assert_eq(pd_manifest_env_argv("prefill", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_ERR_INVALID_PARAM);
    unlink(path);
    cr_assert_eq(pd_manifest_env_argv("prefill", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_ERR_NOT_FOUND);

    unsetenv("PD_MANIFEST");
    cr_assert_eq(pd_manifest_env_argv("prefill", 3, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_OK);
    cr_assert_eq(argv, argv_in, "without PD_MANIFEST the command line is untouched");
}

Test(manifest, gateway_options_from_the_manifest)
{
    write_manifest("gateway:\n  count: 2\n  port: 8100\n  keys: /etc/pdkv/keys\n"
                   "  model: tiny-chat\n  chat_template: /etc/pdkv/chat.jinja\n"
                   "network:\n  base_port: 9100\n");
    setenv("PD_MANIFEST", path, 1);
    setenv("PD_ROLE", "gateway", 1);
    setenv("PD_INDEX", "1", 1);
    setenv("PD_HOST", "10.1.2.3", 1);
    setenv("PD_ROUTER", "router.ns.svc", 1);
    static pd_manifest_args_t args;
    char *argv_in[] = {"pd-gateway", NULL};
    int argc = 0;
    char **argv = NULL;
    char err[256] = "";
    cr_assert_eq(pd_manifest_env_argv("gateway", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_OK, "%s", err);
    cr_assert_str_eq(arg_after(argv, "--listen"), "10.1.2.3:8101");
    cr_assert_str_eq(arg_after(argv, "--router"), "tcp://router.ns.svc:9100");
    cr_assert_str_eq(arg_after(argv, "--keys"), "/etc/pdkv/keys");
    cr_assert_str_eq(arg_after(argv, "--model"), "tiny-chat");
    cr_assert_str_eq(arg_after(argv, "--chat-template"), "/etc/pdkv/chat.jinja");

    /* Without keys the gateway is open: no --keys at all, and the default model name. */
    unlink(path);
    write_manifest("gateway:\n  count: 1\n");
    setenv("PD_MANIFEST", path, 1);
    setenv("PD_INDEX", "0", 1);
    cr_assert_eq(pd_manifest_env_argv("gateway", 1, argv_in, &args, &argc, &argv, err, sizeof(err)),
                 PD_OK, "%s", err);
    cr_assert_null(arg_after(argv, "--keys"));
    cr_assert_null(arg_after(argv, "--chat-template"));
    cr_assert_str_eq(arg_after(argv, "--model"), "pdkv");
    unlink(path);
    unsetenv("PD_MANIFEST");
    unsetenv("PD_ROLE");
    unsetenv("PD_INDEX");
    unsetenv("PD_HOST");
    unsetenv("PD_ROUTER");
}
