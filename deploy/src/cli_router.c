/* Reaching a router before talking to it: ZeroMQ connects lazily and would queue a
 * request forever for a router that is not there (and deliver it to whichever process
 * binds the port later), so pdctl first checks that something accepts connections at
 * the endpoint, for --wait seconds at most, and fails at once with the reason if not. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/time.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t pd_cli_random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (uint64_t)pd_time_now_ns() ^ ((uint64_t)getpid() << 32);
    /* Keep it short enough to retype: 0..2^31-1 still gives plenty of variety. */
    return seed & 0x7fffffffu;
}

/* One TCP connection attempt to host:port; 0 on success, else an errno value. */
static int pd_cli_tcp_try(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return rc == EAI_SYSTEM ? errno : EHOSTUNREACH;
    int err = ECONNREFUSED;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            close(fd);
            freeaddrinfo(res);
            return 0;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

bool pd_cli_router_reach(const char *cmd, const char *endpoint, uint32_t wait_s)
{
    char host[300], port[16];
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct stat st;
        uint64_t deadline = pd_time_now_ms() + (uint64_t)wait_s * 1000;
        while (stat(endpoint + 6, &st) != 0) {
            if (pd_time_now_ms() >= deadline) {
                pd_cli_error("%s: cannot reach router at %s: %s", cmd, endpoint, strerror(errno));
                return false;
            }
            usleep(100 * 1000);
        }
        return true;
    }
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return true;
    const char *hp = endpoint + 6;
    const char *colon = strrchr(hp, ':');
    if (colon == NULL || (size_t)(colon - hp) >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
        return true; /* not ours to judge: ZeroMQ reports it */
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (host[0] == '[') { /* [::1] */
        memmove(host, host + 1, strlen(host));
        char *rb = strchr(host, ']');
        if (rb != NULL)
            *rb = '\0';
    }
    uint64_t deadline = pd_time_now_ms() + (uint64_t)wait_s * 1000;
    bool told = false;
    for (;;) {
        int err = pd_cli_tcp_try(host, port);
        if (err == 0)
            return true;
        if (pd_time_now_ms() >= deadline) {
            if (wait_s > 0)
                pd_cli_error("%s: cannot reach router at %s: %s (waited %u s)", cmd, endpoint,
                             strerror(err), wait_s);
            else
                pd_cli_error("%s: cannot reach router at %s: %s (is a cluster up? 'pdctl up "
                             "MANIFEST' starts one; --wait SECONDS waits for it)",
                             cmd, endpoint, strerror(err));
            return false;
        }
        if (!told) {
            fprintf(stderr, "pdctl: %s: waiting up to %u s for a router at %s\n", cmd, wait_s,
                    endpoint);
            told = true;
        }
        usleep(200 * 1000);
    }
}
