/* pdctl render: Kubernetes objects that validate against the API schemas for every
 * shipped manifest, a golden rendering, the Slurm script's shape, and bad input. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_or_skip(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL)
        cr_skip_test("%s is not set (run through ctest)", name);
    return v;
}

/* Run a shell command in the source directory; its exit status, output in out. */
static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[4400];
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } 2>&1", getenv("PD_SOURCE_DIR"), cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    *len_p = n;
    return buf;
}

/* The rendering of deploy/2p2d.yaml is the file in tests/deploy/golden/. When the
 * renderer changes on purpose: pdctl render k8s deploy/2p2d.yaml -o
 * tests/deploy/golden/2p2d.k8s.yaml (from the source directory), and review the diff. */
Test(render, k8s_matches_the_golden_file)
{
    const char *src = env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    static char out[1 << 20];
    char tmp[] = "/tmp/pd_render_XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    cr_assert_eq(
        sh(out, sizeof(out), "'%s/pdctl' render k8s deploy/2p2d.yaml -o '%s/k.yaml'", bin, tmp), 0,
        "%s", out);
    size_t n_got = 0, n_want = 0;
    char path[512];
    snprintf(path, sizeof(path), "%s/k.yaml", tmp);
    char *got = strdup(slurp(path, &n_got));
    snprintf(path, sizeof(path), "%s/tests/deploy/golden/2p2d.k8s.yaml", src);
    char *want = slurp(path, &n_want);
    cr_assert_not_null(want, "no golden file %s", path);
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i])
        i++;
    cr_assert(i == n_got && i == n_want, "rendering differs from %s at byte %zu: ...%.60s", path, i,
              got + (i > 20 ? i - 20 : 0));
    free(got);
    snprintf(path, sizeof(path), "rm -rf '%s'", tmp);
    cr_assert_eq(system(path), 0);
}

/* Every object rendered from every manifest in deploy/ validates against the Kubernetes
 * API schemas (tests/js/k8s: the kubernetes-models validators, installed by
 * deploy/install-deps.sh). */
Test(render, k8s_objects_validate_for_every_shipped_manifest)
{
    const char *src = env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/js/k8s/node_modules/kubernetes-models", src);
    struct stat stt;
    if (stat(path, &stt) != 0)
        cr_skip_test("the Kubernetes validators are not installed (deploy/install-deps.sh)");
    static char out[1 << 16];
    if (sh(out, sizeof(out), "command -v node") != 0)
        cr_skip_test("node is not installed (deploy/install-deps.sh)");
    char tmp[] = "/tmp/pd_render_XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(path, sizeof(path), "%s/deploy", src);
    DIR *d = opendir(path);
    cr_assert_not_null(d);
    int n_manifests = 0;
    char files[4096] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render k8s 'deploy/%s' -o '%s/%s'", bin,
                        e->d_name, tmp, e->d_name),
                     0, "%s: %s", e->d_name, out);
        size_t used = strlen(files);
        snprintf(files + used, sizeof(files) - used, " '%s/%s'", tmp, e->d_name);
        n_manifests++;
    }
    closedir(d);
    cr_assert_geq(n_manifests, 4, "the shipped manifests are there");
    int rc = sh(out, sizeof(out), "node tests/js/k8s/validate.mjs%s", files);
    cr_log_info("%s", out);
    cr_assert_eq(rc, 0, "%s", out);
    /* 2p2d: ConfigMap, router Service + Deployment, per worker role Service + StatefulSet. */
    cr_assert(strstr(out, "2p2d.yaml: apps/v1/StatefulSet pdkv-2p2d-decode: valid") != NULL, "%s",
              out);
    /* The validator is not a rubber stamp: a broken object fails. */
    cr_assert_neq(sh(out, sizeof(out),
                     "sed 's/replicas: 2/replicas: two/' '%s/2p2d.yaml' > '%s/bad.yaml' && "
                     "node tests/js/k8s/validate.mjs '%s/bad.yaml'",
                     tmp, tmp, tmp),
                  0);
    cr_assert(strstr(out, "replicas must be integer") != NULL, "%s", out);
    snprintf(path, sizeof(path), "rm -rf '%s'", tmp);
    cr_assert_eq(system(path), 0);
}

/* What placement turns into: GPUs, the RDMA resource and its locked memory, node labels,
 * decode anti-affinity, the image. */
/* auth_keys: the router and worker pods mount the Secret NAME-keys there, gateways not. */
Test(render, k8s_mounts_the_worker_keys_secret)
{
    env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    static char out[1 << 20];
    cr_assert_eq(sh(out, sizeof(out),
                    "f=$(mktemp) && printf 'name: k\nauth_keys: /etc/pdkv/keys\n"
                    "gateway:\n  count: 1\n' > $f && '%s/pdctl' render k8s $f; rc=$?; rm -f $f; "
                    "exit $rc",
                    bin),
                 0, "%s", out);
    int n_volumes = 0, n_mounts = 0;
    for (const char *p = out; (p = strstr(p, "secretName: pdkv-k-keys")) != NULL; p++)
        n_volumes++;
    for (const char *p = out;
         (p = strstr(p, "- name: keys\n          mountPath: \"/etc/pdkv/keys\"\n"
                        "          readOnly: true\n")) != NULL;
         p++)
        n_mounts++;
    /* The router, the prefill and the decode workers; not the gateway. */
    cr_assert_eq(n_volumes, 3, "%s", out);
    cr_assert_eq(n_mounts, 3, "%s", out);
    /* Without auth_keys, nothing is mounted. */
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render k8s deploy/2p2d.yaml", bin), 0);
    cr_assert_null(strstr(out, "secretName"));
}

Test(render, k8s_placement_becomes_resources_and_affinity)
{
    env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    static char out[1 << 20];
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render k8s deploy/cluster.yaml", bin), 0, "%s",
                 out);
    static const char *const want[] = {
        "nvidia.com/gpu: \"1\"",
        "rdma/hca_shared_devices_a: \"1\"",
        "- IPC_LOCK",
        "\"pdkv.example.com/role\": \"decode\"",
        "podAntiAffinity:",
        "image: \"registry.example.com/pdkv:latest\"",
        "value: pdkv-cluster-router",
        "port: 7300",
        "cpu: \"2\"",
        "memory: 1536Mi",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(out, want[i]) != NULL, "no '%s' in the rendering", want[i]);

    /* hosts: the pods may run on those nodes only. */
    cr_assert_eq(sh(out, sizeof(out),
                    "f=$(mktemp) && printf 'name: h\\ndecode:\\n  hosts: [node-a, node-b]\\n' "
                    "> $f && '%s/pdctl' render k8s $f; rc=$?; rm -f $f; exit $rc",
                    bin),
                 0, "%s", out);
    cr_assert(strstr(out, "              - key: kubernetes.io/hostname\n"
                          "                operator: In\n"
                          "                values:\n"
                          "                - \"node-a\"\n"
                          "                - \"node-b\"\n") != NULL,
              "%s", out);
}

Test(render, slurm_script_has_one_component_per_role)
{
    env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    static char out[1 << 20];
    cr_assert_eq(
        sh(out, sizeof(out), "'%s/pdctl' render slurm deploy/netns.yaml --bin-dir /opt/b", bin), 0,
        "%s", out);
    int n_het = 0;
    for (const char *p = out; (p = strstr(p, "#SBATCH hetjob")) != NULL; p++)
        n_het++;
    cr_assert_eq(n_het, 2, "router, prefill, decode: three components\n%s", out);
    static const char *const want[] = {
        "export UCX_TLS='tcp'",
        "export PD_BIN_DIR=${PD_BIN_DIR:-'/opt/b'}",
        "srun --het-group=0 --label --unbuffered --export=ALL,PD_ROLE=router",
        "srun --het-group=2 --label --unbuffered --export=ALL,PD_ROLE=decode",
        "SLURM_JOB_NODELIST_HET_GROUP_0",
        "trap 'stop; exit 143' TERM INT",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(out, want[i]) != NULL, "no '%s' in\n%s", want[i], out);
    /* The script is valid bash. */
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render slurm deploy/2p2d.yaml | bash -n", bin), 0,
                 "%s", out);
}

Test(render, bad_input_gets_a_reason_and_an_exit_status)
{
    env_or_skip("PD_SOURCE_DIR");
    const char *bin = env_or_skip("PD_BIN_DIR");
    static char out[1 << 16];
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render helm deploy/2p2d.yaml", bin), 2);
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render k8s", bin), 2);
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' render k8s /nonexistent.yaml", bin), 1);
    cr_assert(strstr(out, "cannot open") != NULL, "%s", out);
    char tmp[] = "/tmp/pd_render_XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    /* More Slurm nodes than processes; a bad placement value, with its line. */
    cr_assert_eq(sh(out, sizeof(out),
                    "printf 'decode:\\n  count: 1\\n  nodes: 2\\n' > '%s/a.yaml' && "
                    "'%s/pdctl' render slurm '%s/a.yaml'",
                    tmp, bin, tmp),
                 1);
    cr_assert(strstr(out, "decode.nodes = 2 is more than its 1 processes") != NULL, "%s", out);
    cr_assert_eq(sh(out, sizeof(out),
                    "printf 'prefill:\\n  count: 2\\n  hosts: [a, b]\\n' > '%s/h.yaml' && "
                    "'%s/pdctl' render slurm '%s/h.yaml'",
                    tmp, bin, tmp),
                 1);
    cr_assert(strstr(out, "prefill.hosts names 2 hosts") != NULL, "%s", out);
    cr_assert_eq(sh(out, sizeof(out),
                    "printf 'prefill:\\n  count: 2\\n  nodes: 2\\n  hosts: [a, b]\\n' > "
                    "'%s/h.yaml' && '%s/pdctl' render slurm '%s/h.yaml' | grep -c 'nodelist=a,b'",
                    tmp, bin, tmp),
                 0, "%s", out);
    cr_assert_eq(sh(out, sizeof(out),
                    "printf 'decode:\\n  gpus: x\\n' > '%s/b.yaml' && "
                    "'%s/pdctl' render k8s '%s/b.yaml' -o '%s/out.yaml'",
                    tmp, bin, tmp, tmp),
                 1);
    cr_assert(strstr(out, "line 2") != NULL, "%s", out);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "test ! -e '%s/out.yaml' && rm -rf '%s'", tmp, tmp);
    cr_assert_eq(system(cmd), 0);
}
