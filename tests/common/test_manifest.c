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

    cr_assert_eq(pd_manifest_load("/nonexistent/x.yaml", &m, err, sizeof(err)), PD_ERR_IO);
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
    bool seen[64] = {false};
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
        cr_assert_lt(k, 64);
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
