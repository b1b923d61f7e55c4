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
