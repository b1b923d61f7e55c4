/* pdctl render slurm: the manifest as an sbatch script. One heterogeneous job, one
 * component per role (router first), one `srun` step per component; the router's
 * address is the address Slurm gives the component's first node (NodeAddr), handed to
 * the workers as PD_ROUTER; every task finds its own address the same way (PD_HOST) and
 * its index from SLURM_PROCID (PD_INDEX). scancel signals the steps, whose roles stop on
 * SIGTERM; a role that exits ends the job, so that nothing runs half a cluster. */
#include "render.h"

#include <string.h>

/* The line that ends the manifest's here-document; a manifest may not hold it. */
#define PD_RENDER_SLURM_EOF "PDKV_MANIFEST_END"

/* Text in single quotes for bash: ' becomes '\''. */
static void pd_render_sh_quote(FILE *out, const char *s)
{
    fputc('\'', out);
    for (; *s != '\0'; s++) {
        if (*s == '\'')
            fputs("'\\''", out);
        else
            fputc(*s, out);
    }
    fputc('\'', out);
}

/* Worker authentication (docs/MANIFEST.md, auth): the job makes a key pair for the router
 * and every worker once, where every node reads it (the submit directory's file system),
 * and names that directory in the job's copy of the manifest when the manifest does not. */
static void pd_render_slurm_keys(FILE *out, const pd_manifest_t *m)
{
    if (strcmp(m->auth, "off") == 0)
        return;
    fprintf(out, "\n# Worker keys: one CURVE key pair per process, files 0600 (docs/DEPLOY.md).\n");
    if (m->auth_keys[0] != '\0') {
        fprintf(out, "keys=");
        pd_render_sh_quote(out, m->auth_keys);
        fprintf(out, "\n");
    } else {
        fprintf(out, "keys=\"$PWD/.pdkv/run/%s-$SLURM_JOB_ID.keys\"\n", m->name);
        fprintf(out, "echo \"auth_keys: $keys\" >> \"$PD_MANIFEST\"\n");
    }
    fprintf(out, "pd_keygen() {\n"
                 "    env -u PD_MANIFEST \"$PD_BIN_DIR/pd-router\" --keygen > \"$keys/$1.key\" &&\n"
                 "        awk '/^public/ { print $2 }' \"$keys/$1.key\"\n"
                 "}\n"
                 "if [ ! -e \"$keys/router.key\" ]; then\n"
                 "    (umask 077 && mkdir -p \"$keys\" &&\n"
                 "        pd_keygen router > \"$keys/router.pub\" &&\n"
                 "        for w in");
    const struct {
        const char *role;
        uint32_t count;
    } workers[] = {
        {"prefill", m->prefill.count}, {"decode", m->decode.count}, {"both", m->both.count}};
    for (size_t r = 0; r < sizeof(workers) / sizeof(workers[0]); r++)
        for (uint32_t i = 0; i < workers[r].count; i++)
            fprintf(out, " %s-%u", workers[r].role, i);
    fprintf(out, "; do\n"
                 "            k=$(pd_keygen \"$w\") && [ -n \"$k\" ] && echo \"$w $k\" || exit 1\n"
                 "        done > \"$keys/workers.keys\") || exit 1\n"
                 "fi\n");
}

#define PD_RENDER_SLURM_N_ROLES 5
static const char *const pd_render_slurm_bins[] = {"pd-router", "pd-prefill", "pd-decode",
                                                   "pd-decode", "pd-gateway"};
static const char *const pd_render_slurm_roles[] = {"router", "prefill", "decode", "both",
                                                    "gateway"};

int pd_render_slurm(const pd_render_input_t *in, FILE *out)
{
    const pd_manifest_t *m = &in->m;
    if (strstr(in->text, PD_RENDER_SLURM_EOF) != NULL) {
        fprintf(stderr, "pdctl render: the manifest may not contain '%s'\n", PD_RENDER_SLURM_EOF);
        return -1;
    }
    uint32_t counts[PD_RENDER_SLURM_N_ROLES] = {1, m->prefill.count, m->decode.count, m->both.count,
                                                m->gateway_count};
    for (int r = 0; r < PD_RENDER_SLURM_N_ROLES; r++) {
        const pd_manifest_place_t *p = pd_manifest_place(m, pd_render_slurm_roles[r]);
        uint32_t n_hosts = 0;
        for (const char *h = p->hosts; *h != '\0'; h++)
            n_hosts += (h == p->hosts || h[-1] == ',') ? 1 : 0;
        /* Slurm runs a component on every node of its --nodelist. */
        if (counts[r] > 0 && n_hosts > 0 && n_hosts != p->nodes) {
            fprintf(stderr,
                    "pdctl render: %s.hosts names %u hosts; Slurm runs the component on all of "
                    "them: set %s.nodes to %u\n",
                    pd_render_slurm_roles[r], n_hosts, pd_render_slurm_roles[r], n_hosts);
            return -1;
        }
        if (counts[r] > 0 && p->nodes > counts[r]) {
            fprintf(stderr, "pdctl render: %s.nodes = %u is more than its %u processes\n",
                    pd_render_slurm_roles[r], p->nodes, counts[r]);
            return -1;
        }
    }

    fprintf(out, "#!/bin/bash\n");
    fprintf(out, "# pdkv cluster '%s' as a Slurm heterogeneous job, one component per role.\n",
            m->name);
    fprintf(out,
            "# Rendered by 'pdctl render slurm %s'. Submit: sbatch THIS_FILE; stop: scancel "
            "JOBID.\n",
            in->source);
    fprintf(out,
            "# Clients connect to the router at tcp://ROUTER:%u (the job's output names "
            "ROUTER).\n",
            m->base_port);
    fprintf(out,
            "# The submit directory must be visible from every node: the manifest copy\n"
            "# and the model (%s) are read from there.\n",
            m->model_path);
    fprintf(out, "#SBATCH --job-name=pdkv-%s\n", m->name);
    fprintf(out, "#SBATCH --output=pdkv-%s-%%j.out\n", m->name);
    bool first = true;
    for (int r = 0; r < PD_RENDER_SLURM_N_ROLES; r++) {
        if (counts[r] == 0)
            continue;
        const char *role = pd_render_slurm_roles[r];
        const pd_manifest_place_t *p = pd_manifest_place(m, role);
        uint32_t per_node = (counts[r] + p->nodes - 1) / p->nodes;
        if (!first)
            fprintf(out, "#SBATCH hetjob\n");
        first = false;
        fprintf(out, "#SBATCH --ntasks=%u --nodes=%u --cpus-per-task=%u --mem=%uM", counts[r],
                p->nodes, pd_render_cpus(m, role), pd_render_memory_mb(m, role) * per_node);
        if (p->hosts[0] != '\0')
            fprintf(out, " --nodelist=%s", p->hosts);
        if (p->node_label[0] != '\0')
            fprintf(out, " --constraint=%s", strchr(p->node_label, '=') + 1);
        if (p->gpus > 0)
            fprintf(out, " --gpus-per-task=%u", p->gpus);
        fprintf(out, "\n");
    }
    fprintf(out, "\nset -u\n");
    fprintf(out, "export PD_BIN_DIR=${PD_BIN_DIR:-");
    pd_render_sh_quote(out, in->bin_dir);
    fprintf(out, "}\n");
    fprintf(out, "export PD_LOG_STDOUT=1 PD_LOG_LEVEL=${PD_LOG_LEVEL:-info}\n");
    if (m->xfer_transports[0] != '\0') {
        fprintf(out, "export UCX_TLS=");
        pd_render_sh_quote(out, m->xfer_transports);
        fprintf(out, "\n");
    }
    fprintf(out, "cd \"${SLURM_SUBMIT_DIR:-.}\" || exit 1\n");
    fprintf(out, "\n# The manifest, verbatim: every role reads its configuration from it.\n");
    fprintf(out, "export PD_MANIFEST=\"$PWD/.pdkv/run/%s-$SLURM_JOB_ID.yaml\"\n", m->name);
    fprintf(out, "mkdir -p \"${PD_MANIFEST%%/*}\" || exit 1\n");
    fprintf(out, "cat > \"$PD_MANIFEST\" <<'%s'\n%s%s%s\n", PD_RENDER_SLURM_EOF, in->text,
            in->text[0] != '\0' && in->text[strlen(in->text) - 1] != '\n' ? "\n" : "",
            PD_RENDER_SLURM_EOF);
    pd_render_slurm_keys(out, m);
    if (m->model_preset[0] != '\0') {
        fprintf(out, "\n# The model, made once from its preset when missing.\n");
        fprintf(out, "if [ ! -e ");
        pd_render_sh_quote(out, m->model_path);
        fprintf(out, " ]; then\n    \"$PD_BIN_DIR/pdctl\" model new --preset ");
        pd_render_sh_quote(out, m->model_preset);
        fprintf(out, " --seed %llu -o ", (unsigned long long)m->model_seed);
        pd_render_sh_quote(out, m->model_path);
        fprintf(out, " || exit 1\nfi\n");
    }
    fprintf(
        out,
        "\n# A node's address as Slurm knows it (NodeAddr), as an IPv4 address.\n"
        "pd_addr() {\n"
        "    local addr ip\n"
        "    addr=$(scontrol show node \"$1\" -o | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')\n"
        "    addr=${addr:-$1}\n"
        "    ip=$(getent ahostsv4 \"$addr\" | awk 'NR == 1 { print $1 }')\n"
        "    echo \"${ip:-$addr}\"\n"
        "}\n"
        "export -f pd_addr\n"
        "router_node=$(scontrol show hostnames \"$SLURM_JOB_NODELIST_HET_GROUP_0\" | head -n 1)\n"
        "export PD_ROUTER=$(pd_addr \"$router_node\")\n"
        "echo \"pdkv: router on $router_node, clients tcp://$PD_ROUTER:%u\"\n",
        m->base_port);
    fprintf(out, "\n# One step per role; each task takes its index and address from Slurm.\n"
                 "step='export PD_INDEX=$SLURM_PROCID PD_HOST=$(pd_addr \"$SLURMD_NODENAME\"); "
                 "exec \"$PD_BIN_DIR/$0\"'\n"
                 "pids=()\n");
    int group = 0;
    for (int r = 0; r < PD_RENDER_SLURM_N_ROLES; r++) {
        if (counts[r] == 0)
            continue;
        fprintf(out,
                "srun --het-group=%d --label --unbuffered --export=ALL,PD_ROLE=%s bash -c "
                "\"$step\" %s &\npids+=($!)\n",
                group++, pd_render_slurm_roles[r], pd_render_slurm_bins[r]);
    }
    fprintf(out, "\n# scancel (or the time limit) stops every step; so does any role ending.\n"
                 "stop() {\n"
                 "    trap - TERM INT\n"
                 "    kill -TERM \"${pids[@]}\" 2>/dev/null\n"
                 "    wait\n"
                 "}\n"
                 "trap 'stop; exit 143' TERM INT\n"
                 "wait -n\n"
                 "status=$?\n"
                 "echo \"pdkv: a role ended with status $status; stopping the job\" >&2\n"
                 "stop\n"
                 "exit $((status == 0 ? 1 : status))\n");
    return 0;
}
