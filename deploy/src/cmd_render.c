/* pdctl render slurm|k8s MANIFEST: hand a manifest to the schedulers clusters already
 * run, instead of a launcher of our own (docs/DEPLOY.md). */
#include "cli_opt.h"
#include "pdctl_int.h"
#include "render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PD_RENDER_MAX_MANIFEST_BYTES (1u << 20)

static void pd_cmd_render_usage(FILE *out)
{
    fprintf(out, "usage: pdctl render slurm|k8s MANIFEST [-o FILE] [--bin-dir DIR]\n"
                 "\n"
                 "Write what a scheduler needs to run the cluster of MANIFEST on many machines:\n"
                 "  slurm  an sbatch script: a heterogeneous job with one component per role\n"
                 "  k8s    Kubernetes objects: a ConfigMap with the manifest, Services, a\n"
                 "         Deployment for the router and a StatefulSet per worker role\n"
                 "Every role then starts from the manifest and its environment alone. The\n"
                 "manifest's placement keys (hosts, node_label, nodes, cpus, memory_mb, gpus,\n"
                 "rdma, image) say where; see docs/DEPLOY.md.\n"
                 "\n"
                 "  -o, --output FILE  write there instead of stdout\n"
                 "  --bin-dir DIR      slurm: where pd-router, pd-prefill, pd-decode and pdctl\n"
                 "                     are on the nodes (default: the directory of this pdctl)\n");
}

/* The whole file, NUL-terminated, or NULL with the reason on stderr. */
static char *pd_cmd_render_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "pdctl render: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PD_RENDER_MAX_MANIFEST_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, PD_RENDER_MAX_MANIFEST_BYTES + 1, f) : 0;
    bool bad = buf == NULL || ferror(f) || n > PD_RENDER_MAX_MANIFEST_BYTES;
    fclose(f);
    if (bad) {
        fprintf(stderr, "pdctl render: cannot read %s (at most %u bytes)\n", path,
                PD_RENDER_MAX_MANIFEST_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        fprintf(stderr, "pdctl render: %s holds a NUL byte\n", path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* The directory of this pdctl, where the role binaries are built and installed. */
static void pd_cmd_render_bin_dir(char *dir, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", dir, n - 1);
    if (len <= 0) {
        dir[0] = '\0';
        return;
    }
    dir[len] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
}

int pd_cmd_render(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"output", 'o', true, 'o', NULL},
        {"bin-dir", 0, true, 'B', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    const char *output = NULL;
    char bin_dir[1024] = "";
    bool bin_dir_set = false;
    int ch;
    pd_cli_parser_t pcli;
    pd_cli_parser_init(&pcli, "render", argc, argv, opts);
    while ((ch = pd_cli_opt_next(&pcli)) != PD_CLI_OPT_END) {
        const char *optarg = pcli.arg;
        switch (ch) {
        case 'o':
            output = optarg;
            break;
        case 'B':
            if (strlen(optarg) >= sizeof(bin_dir) || strpbrk(optarg, "'\n") != NULL) {
                fprintf(stderr, "pdctl render: --bin-dir must be a path without quotes\n");
                return PD_CLI_USAGE;
            }
            snprintf(bin_dir, sizeof(bin_dir), "%s", optarg);
            bin_dir_set = true;
            break;
        case 'h':
            pd_cmd_render_usage(stdout);
            return PD_CLI_OK;
        default:
            /* the parser said what was wrong */
            return PD_CLI_USAGE;
        }
    }
    if (pcli.n_pos != 2 || (strcmp(pcli.pos[0], "slurm") != 0 && strcmp(pcli.pos[0], "k8s") != 0)) {
        pd_cmd_render_usage(stderr);
        return PD_CLI_USAGE;
    }
    const char *target = pcli.pos[0];
    const char *path = pcli.pos[1];
    if (!bin_dir_set)
        pd_cmd_render_bin_dir(bin_dir, sizeof(bin_dir));

    pd_render_input_t *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return PD_CLI_FAIL;
    int rc = PD_CLI_FAIL;
    char err[512];
    char *text = pd_cmd_render_read(path);
    if (text == NULL)
        goto out;
    if (pd_manifest_load(path, &in->m, err, sizeof(err)) != PD_OK) {
        fprintf(stderr, "pdctl render: %s\n", err);
        goto out;
    }
    in->text = text;
    in->source = path;
    in->bin_dir = bin_dir;

    FILE *out = stdout;
    if (output != NULL && (out = fopen(output, "w")) == NULL) {
        fprintf(stderr, "pdctl render: cannot write %s: %s\n", output, strerror(errno));
        goto out;
    }
    int st = strcmp(target, "slurm") == 0 ? pd_render_slurm(in, out) : pd_render_k8s(in, out);
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(stderr, "pdctl render: write error\n");
        st = -1;
    }
    if (out != stdout && fclose(out) != 0)
        st = -1;
    if (st != 0 && output != NULL)
        remove(output);
    rc = st == 0 ? PD_CLI_OK : PD_CLI_FAIL;
out:
    free(text);
    free(in);
    return rc;
}

uint32_t pd_render_memory_mb(const pd_manifest_t *m, const char *role)
{
    const pd_manifest_place_t *p = pd_manifest_place(m, role);
    if (p->memory_mb > 0)
        return p->memory_mb;
    if (strcmp(role, "router") == 0 || strcmp(role, "gateway") == 0)
        return 512;
    const pd_manifest_role_t *r = strcmp(role, "prefill") == 0 ? &m->prefill
                                  : strcmp(role, "both") == 0  ? &m->both
                                                               : &m->decode;
    return 512 + r->pool_mb + m->host_tier_mb;
}

uint32_t pd_render_cpus(const pd_manifest_t *m, const char *role)
{
    const pd_manifest_place_t *p = pd_manifest_place(m, role);
    if (p->cpus > 0)
        return p->cpus;
    if (strcmp(role, "router") == 0 || strcmp(role, "gateway") == 0)
        return 1;
    const pd_manifest_role_t *r = strcmp(role, "prefill") == 0 ? &m->prefill
                                  : strcmp(role, "both") == 0  ? &m->both
                                                               : &m->decode;
    return r->threads > 0 ? r->threads : 1;
}
