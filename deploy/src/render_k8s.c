/* pdctl render k8s: the manifest as Kubernetes objects. A ConfigMap holds the manifest
 * verbatim; the router is a Deployment of one behind a Service for its client and worker
 * sockets; each worker role is a StatefulSet (stable names: the pod's ordinal is the
 * worker's index, so a restarted pod re-registers under the same id with a new epoch)
 * behind a headless Service. Every container starts from PD_MANIFEST and PD_ROLE, its
 * pod address (PD_HOST) and the router Service's name (PD_ROUTER). */
#include "render.h"

#include <stdbool.h>
#include <string.h>

#define PD_RENDER_K8S_WORKDIR "/var/lib/pdkv"
#define PD_RENDER_K8S_ETC     "/etc/pdkv"

/* A YAML double-quoted scalar (JSON string rules, which YAML accepts). */
static void pd_render_q(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* The object name prefix: "pdkv-" + the manifest name made a DNS label (lower case,
 * other characters as '-'), so that every object name is valid. */
static int pd_render_k8s_base(const pd_manifest_t *m, char *base, size_t n)
{
    size_t len = (size_t)snprintf(base, n, "pdkv-");
    for (const char *p = m->name; *p != '\0' && len + 1 < n; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '-';
        base[len++] = c;
    }
    while (len > 0 && base[len - 1] == '-')
        len--;
    base[len] = '\0';
    /* "-prefill" plus a StatefulSet pod's "-NN" and its controller hash must fit 63. */
    if (len > 40) {
        fprintf(stderr,
                "pdctl render: the manifest name '%s' is too long for Kubernetes "
                "names (at most 35 characters)\n",
                m->name);
        return -1;
    }
    return 0;
}

/* The manifest's text as a literal block scalar (as written, comments included), or
 * quoted where it holds characters a block cannot. */
static void pd_render_k8s_text(FILE *out, const char *text)
{
    size_t len = strlen(text);
    bool block = len > 0;
    for (const char *p = text; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            block = false;
    }
    if (!block) {
        pd_render_q(out, text);
        fprintf(out, "\n");
        return;
    }
    /* Chomping keeps the file's last line break exactly: none "-", one "", more "+". */
    const char *chomp = text[len - 1] != '\n' ? "-" : (len > 1 && text[len - 2] == '\n') ? "+" : "";
    fprintf(out, "|2%s\n", chomp);
    for (const char *line = text; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (n > 0)
            fprintf(out, "    %.*s", (int)n, line);
        fprintf(out, "\n");
        line += n + (nl != NULL ? 1 : 0);
    }
}

static void pd_render_k8s_labels(FILE *out, int indent, const char *instance, const char *role)
{
    fprintf(out, "%*sapp.kubernetes.io/name: pdkv\n", indent, "");
    fprintf(out, "%*sapp.kubernetes.io/instance: ", indent, "");
    pd_render_q(out, instance);
    fprintf(out, "\n");
    if (role[0] != '\0')
        fprintf(out, "%*sapp.kubernetes.io/component: %s\n", indent, "", role);
}

/* The absolute path of p inside the container. */
static void pd_render_k8s_abs(const char *p, char *buf, size_t n)
{
    if (p[0] == '/')
        snprintf(buf, n, "%s", p);
    else
        snprintf(buf, n, "%s/%s", PD_RENDER_K8S_WORKDIR, p);
}

/* Where the model's emptyDir is mounted when the pods make the model themselves: the
 * directory that holds model.path. */
static int pd_render_k8s_model_dir(const pd_manifest_t *m, char *dir, size_t n)
{
    pd_render_k8s_abs(m->model_path, dir, n);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        fprintf(stderr, "pdctl render: model.path '%s' needs a parent directory other than /\n",
                m->model_path);
        return -1;
    }
    *slash = '\0';
    return 0;
}

static void pd_render_k8s_env(FILE *out, const pd_manifest_t *m, const char *role,
                              const char *router_svc)
{
    fprintf(out, "        env:\n");
    fprintf(out, "        - name: PD_MANIFEST\n          value: %s/manifest.yaml\n",
            PD_RENDER_K8S_ETC);
    fprintf(out, "        - name: PD_ROLE\n          value: %s\n", role);
    /* Workers bind and advertise the pod's address. The router advertises nothing (it is
     * reached through its Service) and binds every address, so that kubectl
     * port-forward, which connects to the pod's loopback, reaches it too. */
    if (strcmp(role, "router") == 0 || strcmp(role, "gateway") == 0)
        fprintf(out, "        - name: PD_HOST\n          value: 0.0.0.0\n");
    else
        fprintf(out, "        - name: PD_HOST\n          valueFrom:\n"
                     "            fieldRef:\n              fieldPath: status.podIP\n");
    fprintf(out, "        - name: PD_ROUTER\n          value: %s\n", router_svc);
    fprintf(out, "        - name: PD_LOG_STDOUT\n          value: \"1\"\n");
    fprintf(out, "        - name: PD_LOG_LEVEL\n          value: info\n");
    if (m->xfer_transports[0] != '\0') {
        fprintf(out, "        - name: UCX_TLS\n          value: ");
        pd_render_q(out, m->xfer_transports);
        fprintf(out, "\n");
    }
}

static void pd_render_k8s_resources(FILE *out, const pd_manifest_t *m, const char *role)
{
    const pd_manifest_place_t *p = pd_manifest_place(m, role);
    uint32_t cpus = pd_render_cpus(m, role);
    uint32_t mem = pd_render_memory_mb(m, role);
    fprintf(out, "        resources:\n");
    fprintf(out,
            "          requests:\n            cpu: \"%u\"\n"
            "            memory: %uMi\n",
            cpus, mem);
    fprintf(out, "          limits:\n            memory: %uMi\n", mem);
    if (p->gpus > 0)
        fprintf(out, "            nvidia.com/gpu: \"%u\"\n", p->gpus);
    if (p->rdma[0] != '\0')
        fprintf(out, "            %s: \"1\"\n", p->rdma);
    if (p->rdma[0] != '\0') /* registering memory with the HCA needs locked pages */
        fprintf(out, "        securityContext:\n          capabilities:\n"
                     "            add:\n            - IPC_LOCK\n");
}

/* Placement: hosts (node names), node_label (nodeSelector), decode anti-affinity. */
static void pd_render_k8s_placement(FILE *out, const char *base, const pd_manifest_t *m,
                                    const char *role)
{
    const pd_manifest_place_t *p = pd_manifest_place(m, role);
    if (p->node_label[0] != '\0') {
        const char *eq = strchr(p->node_label, '=');
        fprintf(out, "      nodeSelector:\n        ");
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p->node_label), p->node_label);
        pd_render_q(out, key);
        fprintf(out, ": ");
        pd_render_q(out, eq + 1);
        fprintf(out, "\n");
    }
    bool spread = strcmp(role, "decode") == 0 || strcmp(role, "both") == 0;
    if (p->hosts[0] == '\0' && !spread)
        return;
    fprintf(out, "      affinity:\n");
    if (p->hosts[0] != '\0') {
        fprintf(out, "        nodeAffinity:\n"
                     "          requiredDuringSchedulingIgnoredDuringExecution:\n"
                     "            nodeSelectorTerms:\n"
                     "            - matchExpressions:\n"
                     "              - key: kubernetes.io/hostname\n"
                     "                operator: In\n"
                     "                values:\n");
        for (const char *h = p->hosts; *h != '\0';) {
            const char *end = strchr(h, ',');
            size_t len = end != NULL ? (size_t)(end - h) : strlen(h);
            char host[64];
            snprintf(host, sizeof(host), "%.*s", (int)len, h);
            fprintf(out, "                - ");
            pd_render_q(out, host);
            fprintf(out, "\n");
            h += len + (end != NULL ? 1 : 0);
        }
    }
    if (spread) {
        /* Decode workers hold the KV pools: one per node where the nodes allow it. */
        fprintf(out, "        podAntiAffinity:\n"
                     "          preferredDuringSchedulingIgnoredDuringExecution:\n"
                     "          - weight: 100\n"
                     "            podAffinityTerm:\n"
                     "              topologyKey: kubernetes.io/hostname\n"
                     "              labelSelector:\n"
                     "                matchLabels:\n");
        pd_render_k8s_labels(out, 18, base, role);
    }
}

static void pd_render_k8s_image(FILE *out, const pd_manifest_t *m, const char *role)
{
    const pd_manifest_place_t *p = pd_manifest_place(m, role);
    pd_render_q(out, p->image[0] != '\0' ? p->image : m->image);
}

/* The pod template's spec up to the main container's name line. */
/* Where the worker keys are mounted from the Secret BASE-keys (docs/DEPLOY.md), or NULL
 * when the manifest names no keys directory (or says auth: off). */
static const char *pd_render_k8s_keys(const pd_manifest_t *m)
{
    return strcmp(m->auth, "off") != 0 && m->auth_keys[0] != '\0' ? m->auth_keys : NULL;
}

static void pd_render_k8s_pod(FILE *out, const char *base, const pd_manifest_t *m, const char *role,
                              const char *model_dir)
{
    fprintf(out, "    spec:\n");
    pd_render_k8s_placement(out, base, m, role);
    if (model_dir != NULL) {
        fprintf(out, "      initContainers:\n"
                     "      - name: model\n"
                     "        image: ");
        pd_render_k8s_image(out, m, role);
        fprintf(out, "\n        workingDir: %s\n", PD_RENDER_K8S_WORKDIR);
        /* The preset and seed make the same weights in every pod. */
        fprintf(out, "        command:\n        - sh\n        - -c\n"
                     "        - ");
        char cmd[PD_MANIFEST_STR * 3];
        snprintf(cmd, sizeof(cmd),
                 "test -e '%s' || exec pdctl model new --preset '%s' --seed %llu -o '%s'",
                 m->model_path, m->model_preset, (unsigned long long)m->model_seed, m->model_path);
        pd_render_q(out, cmd);
        fprintf(out, "\n        volumeMounts:\n        - name: model\n"
                     "          mountPath: ");
        pd_render_q(out, model_dir);
        fprintf(out, "\n");
    }
    fprintf(out,
            "      volumes:\n"
            "      - name: manifest\n"
            "        configMap:\n"
            "          name: %s-manifest\n",
            base);
    if (model_dir != NULL)
        fprintf(out, "      - name: model\n        emptyDir: {}\n");
    if (pd_render_k8s_keys(m) != NULL && strcmp(role, "gateway") != 0)
        fprintf(out,
                "      - name: keys\n"
                "        secret:\n"
                "          secretName: %s-keys\n"
                "          defaultMode: 256\n",
                base);
    fprintf(out, "      containers:\n");
}

static void pd_render_k8s_mounts(FILE *out, const char *model_dir, const char *keys_dir)
{
    fprintf(out,
            "        volumeMounts:\n"
            "        - name: manifest\n"
            "          mountPath: %s\n"
            "          readOnly: true\n",
            PD_RENDER_K8S_ETC);
    if (model_dir != NULL) {
        fprintf(out, "        - name: model\n          mountPath: ");
        pd_render_q(out, model_dir);
        fprintf(out, "\n");
    }
    if (keys_dir != NULL) {
        fprintf(out, "        - name: keys\n          mountPath: ");
        pd_render_q(out, keys_dir);
        fprintf(out, "\n          readOnly: true\n");
    }
}

static void pd_render_k8s_probe(FILE *out, const char *kind, const char *shell, const char *cmd,
                                uint32_t period_s, uint32_t failures)
{
    fprintf(out, "        %s:\n", kind);
    fprintf(out,
            "          exec:\n            command:\n            - %s\n"
            "            - -c\n            - ",
            shell);
    pd_render_q(out, cmd);
    fprintf(out,
            "\n          periodSeconds: %u\n          timeoutSeconds: 5\n"
            "          failureThreshold: %u\n",
            period_s, failures);
}

int pd_render_k8s(const pd_render_input_t *in, FILE *out)
{
    const pd_manifest_t *m = &in->m;
    char base[64], router_svc[80], model_dir_buf[PD_MANIFEST_STR + 32];
    if (pd_render_k8s_base(m, base, sizeof(base)) != 0)
        return -1;
    /* network.namespaces and network.host place roles on one machine; here every pod
     * has its own address (PD_HOST), so they do not apply. */
    const char *model_dir = NULL;
    if (m->model_preset[0] != '\0') {
        if (strpbrk(m->model_path, "'\"\\") != NULL || strpbrk(m->model_preset, "'\"\\") != NULL) {
            fprintf(stderr, "pdctl render: model.path and model.preset may not hold quotes\n");
            return -1;
        }
        if (pd_render_k8s_model_dir(m, model_dir_buf, sizeof(model_dir_buf)) != 0)
            return -1;
        model_dir = model_dir_buf;
    }
    snprintf(router_svc, sizeof(router_svc), "%s-router", base);
    fprintf(out, "# pdkv cluster '%s' as Kubernetes objects.\n", m->name);
    fprintf(out, "# Rendered by 'pdctl render k8s %s'; apply with: kubectl apply -f THIS_FILE\n",
            in->source);
    fprintf(out, "# Clients connect to tcp://%s:%u inside the cluster.\n", router_svc,
            m->base_port);

    /* The manifest, verbatim, as every role reads it. */
    fprintf(out,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s-manifest\n"
            "  labels:\n",
            base);
    pd_render_k8s_labels(out, 4, base, "");
    fprintf(out, "data:\n  manifest.yaml: ");
    pd_render_k8s_text(out, in->text);

    /* The router's Service: clients and workers reach it by this name. */
    fprintf(out, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  labels:\n",
            router_svc);
    pd_render_k8s_labels(out, 4, base, "router");
    fprintf(out, "spec:\n  selector:\n");
    pd_render_k8s_labels(out, 4, base, "router");
    fprintf(out,
            "  ports:\n"
            "  - name: client\n    port: %u\n    targetPort: client\n"
            "  - name: workers\n    port: %u\n    targetPort: workers\n",
            m->base_port, m->base_port + 1);

    /* The router: one replica; a new one replaces it (Recreate), the workers re-register. */
    fprintf(out,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n"
            "  labels:\n",
            router_svc);
    pd_render_k8s_labels(out, 4, base, "router");
    fprintf(out, "spec:\n  replicas: 1\n  strategy:\n    type: Recreate\n  selector:\n"
                 "    matchLabels:\n");
    pd_render_k8s_labels(out, 6, base, "router");
    fprintf(out, "  template:\n    metadata:\n      labels:\n");
    pd_render_k8s_labels(out, 8, base, "router");
    pd_render_k8s_pod(out, base, m, "router", model_dir);
    fprintf(out, "      - name: router\n        image: ");
    pd_render_k8s_image(out, m, "router");
    fprintf(out, "\n        workingDir: %s\n        command:\n        - pd-router\n",
            PD_RENDER_K8S_WORKDIR);
    pd_render_k8s_env(out, m, "router", router_svc);
    fprintf(out,
            "        ports:\n"
            "        - name: client\n          containerPort: %u\n"
            "        - name: workers\n          containerPort: %u\n",
            m->base_port, m->base_port + 1);
    char cmd[256];
    /* The router answers status from its own loop: alive and serving. */
    snprintf(cmd, sizeof(cmd),
             "exec pdctl status -r tcp://127.0.0.1:%u --timeout-ms 3000 >/dev/null", m->base_port);
    pd_render_k8s_probe(out, "readinessProbe", "sh", cmd, 5, 3);
    pd_render_k8s_probe(out, "livenessProbe", "sh", cmd, 10, 6);
    pd_render_k8s_resources(out, m, "router");
    pd_render_k8s_mounts(out, model_dir, pd_render_k8s_keys(m));

    static const char *const roles[] = {"prefill", "decode", "both"};
    const uint32_t counts[] = {m->prefill.count, m->decode.count, m->both.count};
    for (int r = 0; r < 3; r++) {
        if (counts[r] == 0)
            continue;
        const char *role = roles[r];
        pd_manifest_proc_t first;
        char err[128];
        if (pd_manifest_proc_find(m, role, 0, &first, err, sizeof(err)) != PD_OK)
            return -1;
        /* A headless Service: the StatefulSet's pods get stable DNS names. */
        fprintf(out,
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s-%s\n"
                "  labels:\n",
                base, role);
        pd_render_k8s_labels(out, 4, base, role);
        fprintf(out, "spec:\n  clusterIP: None\n  selector:\n");
        pd_render_k8s_labels(out, 4, base, role);

        fprintf(out,
                "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: %s-%s\n"
                "  labels:\n",
                base, role);
        pd_render_k8s_labels(out, 4, base, role);
        fprintf(out,
                "spec:\n  serviceName: %s-%s\n  replicas: %u\n"
                "  podManagementPolicy: Parallel\n  selector:\n    matchLabels:\n",
                base, role, counts[r]);
        pd_render_k8s_labels(out, 6, base, role);
        fprintf(out, "  template:\n    metadata:\n      labels:\n");
        pd_render_k8s_labels(out, 8, base, role);
        pd_render_k8s_pod(out, base, m, role, model_dir);
        fprintf(out, "      - name: %s\n        image: ", role);
        pd_render_k8s_image(out, m, role);
        /* The pod's ordinal (the end of its name) is the worker's index. */
        fprintf(out,
                "\n        workingDir: %s\n        command:\n        - sh\n"
                "        - -c\n        - \"export PD_INDEX=${HOSTNAME##*-}; exec %s\"\n",
                PD_RENDER_K8S_WORKDIR, strcmp(role, "prefill") == 0 ? "pd-prefill" : "pd-decode");
        pd_render_k8s_env(out, m, role, router_svc);
        snprintf(cmd, sizeof(cmd),
                 "exec pdctl status -r tcp://$PD_ROUTER:%u --worker %s-${HOSTNAME##*-} "
                 "--timeout-ms 3000",
                 m->base_port, role);
        pd_render_k8s_probe(out, "readinessProbe", "sh", cmd, 5, 3);
        /* Alive: the worker's own event socket accepts a connection. Worker i's is
         * base_port + 10 + its process number, so the probe computes it. */
        snprintf(cmd, sizeof(cmd), "exec 3<>/dev/tcp/$PD_HOST/$((%u + ${HOSTNAME##*-}))",
                 m->base_port + 10 + first.global_index);
        pd_render_k8s_probe(out, "livenessProbe", "bash", cmd, 10, 6);
        pd_render_k8s_resources(out, m, role);
        pd_render_k8s_mounts(out, model_dir, pd_render_k8s_keys(m));
    }
    if (m->gateway_count > 0) {
        /* The HTTP gateways: stateless, any number behind one Service; each answers
         * /health (alive) and /ready (it reaches the router and workers) itself. */
        fprintf(out,
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s-gateway\n"
                "  labels:\n",
                base);
        pd_render_k8s_labels(out, 4, base, "gateway");
        fprintf(out, "spec:\n  selector:\n");
        pd_render_k8s_labels(out, 4, base, "gateway");
        fprintf(out, "  ports:\n  - name: http\n    port: %u\n    targetPort: http\n",
                m->gateway_port);
        fprintf(out,
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s-gateway\n"
                "  labels:\n",
                base);
        pd_render_k8s_labels(out, 4, base, "gateway");
        fprintf(out, "spec:\n  replicas: %u\n  selector:\n    matchLabels:\n", m->gateway_count);
        pd_render_k8s_labels(out, 6, base, "gateway");
        fprintf(out, "  template:\n    metadata:\n      labels:\n");
        pd_render_k8s_labels(out, 8, base, "gateway");
        pd_render_k8s_pod(out, base, m, "gateway", model_dir);
        fprintf(out, "      - name: gateway\n        image: ");
        pd_render_k8s_image(out, m, "gateway");
        fprintf(out, "\n        workingDir: %s\n        command:\n        - pd-gateway\n",
                PD_RENDER_K8S_WORKDIR);
        pd_render_k8s_env(out, m, "gateway", router_svc);
        fprintf(out, "        ports:\n        - name: http\n          containerPort: %u\n",
                m->gateway_port);
        fprintf(out, "        readinessProbe:\n          httpGet:\n            path: /ready\n"
                     "            port: http\n          periodSeconds: 5\n"
                     "          failureThreshold: 3\n");
        fprintf(out, "        livenessProbe:\n          httpGet:\n            path: /health\n"
                     "            port: http\n          periodSeconds: 10\n"
                     "          failureThreshold: 6\n");
        pd_render_k8s_resources(out, m, "gateway");
        pd_render_k8s_mounts(out, model_dir, NULL);
    }
    return 0;
}
