/* Every manifest in deploy/ parses. */
#include "pd/manifest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static void load(const char *name, pd_manifest_t *m)
{
    const char *src = getenv("PD_SOURCE_DIR");
    cr_assert_not_null(src, "PD_SOURCE_DIR unset (run through ctest)");
    char path[512], err[256] = "";
    snprintf(path, sizeof(path), "%s/deploy/%s", src, name);
    cr_assert_eq(pd_manifest_load(path, m, err, sizeof(err)), PD_OK, "%s", err);
}

Test(manifest, shipped_manifests_parse)
{
    pd_manifest_t m;
    load("local.yaml", &m);
    cr_assert_eq(m.prefill.count + m.decode.count, 2);
    load("2p2d.yaml", &m);
    cr_assert_eq(m.prefill.count, 2);
    cr_assert_eq(m.decode.count, 2);
    load("netns.yaml", &m);
    cr_assert(m.namespaces);
    cr_assert_str_eq(m.xfer_transports, "tcp");
    load("colocated.yaml", &m);
    cr_assert_eq(m.both.count, 1);
    cr_assert_eq(m.prefill.count + m.decode.count, 0);
    load("cluster.yaml", &m);
    cr_assert_eq(m.decode.place.gpus, 1);
    cr_assert_str_eq(m.decode.place.rdma, "rdma/hca_shared_devices_a");
}
