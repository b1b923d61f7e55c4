/* The keys of a cluster that `pdctl up` starts: CURVE key pairs for the router and every
 * worker, the router's list of allowed worker keys, and the check that a cluster without
 * them stays on loopback (docs/MANIFEST.md, auth). */
#include "launch.h"

#include "pd/manifest.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* Write text to dir/name with mode 0600 (replacing any file there). */
static int pd_launch_keys_write(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        fprintf(stderr, "pdctl: up: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len;
    if (close(fd) != 0 || !ok) {
        fprintf(stderr, "pdctl: up: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static bool pd_launch_keys_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0;
}

int pd_launch_keys_make(struct pd_manifest *m, const char *dir_default, const char (*names)[32],
                        int n)
{
    if (strcmp(m->auth, "off") == 0) {
        if (m->namespaces || !pd_launch_keys_loopback(m->host)) {
            fprintf(stderr,
                    "pdctl: up: 'auth: off' binds to loopback only: network.host must be a "
                    "127.x address and network.namespaces false (here '%s'%s)\n",
                    m->host, m->namespaces ? ", namespaces on" : "");
            return 1;
        }
        printf("pdctl: up: auth: off: workers join without keys; every role binds to %s only\n",
               m->host);
        return 0;
    }
    if (!zmq_has("curve")) {
        fprintf(stderr, "pdctl: up: this libzmq has no CURVE: set 'auth: off' to run without "
                        "worker authentication on loopback\n");
        return 1;
    }
    if (m->auth_keys[0] == '\0') {
        if (strlen(dir_default) >= sizeof(m->auth_keys)) {
            fprintf(stderr, "pdctl: up: keys directory %s: path too long\n", dir_default);
            return 1;
        }
        snprintf(m->auth_keys, sizeof(m->auth_keys), "%s", dir_default);
    }
    const char *dir = m->auth_keys;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "pdctl: up: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (chmod(dir, 0700) != 0) {
        fprintf(stderr, "pdctl: up: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    /* Fresh keys each time: a cluster's keys are good for that cluster only. */
    char pub[41], sec[41], text[160];
    static char list[160 * 64 * 5];
    size_t used = 0;
    if (zmq_curve_keypair(pub, sec) != 0)
        return 1;
    snprintf(text, sizeof(text), "public %s\nsecret %s\n", pub, sec);
    if (pd_launch_keys_write(dir, "router.key", text) != 0)
        return 1;
    snprintf(text, sizeof(text), "%s\n", pub);
    if (pd_launch_keys_write(dir, "router.pub", text) != 0)
        return 1;
    used += (size_t)snprintf(list, sizeof(list), "# worker id, CURVE public key\n");
    for (int i = 0; i < n; i++) {
        char file[64];
        if (zmq_curve_keypair(pub, sec) != 0)
            return 1;
        snprintf(text, sizeof(text), "public %s\nsecret %s\n", pub, sec);
        snprintf(file, sizeof(file), "%s.key", names[i]);
        if (pd_launch_keys_write(dir, file, text) != 0)
            return 1;
        if (used < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s %s\n", names[i], pub);
    }
    memset(sec, 0, sizeof(sec));
    if (used >= sizeof(list) || pd_launch_keys_write(dir, "workers.keys", list) != 0)
        return 1;
    printf("pdctl: up: worker authentication on: keys for the router and %d workers in %s\n", n,
           dir);
    return 0;
}
