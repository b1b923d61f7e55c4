/* TCP between two network namespaces over a veth pair: what crosses a real network stack
 * is tested on one machine. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); skips otherwise. */
#include "xfer_test_side.h"

#include <stdarg.h>

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[600];
    snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
    int rc = system(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(xfer_netns, tcp_between_namespaces_over_veth)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to create network namespaces (uid %d)", (int)geteuid());
    if (sh("ip -V") != 0)
        cr_skip_test("iproute2 (ip) is not installed");
    unsigned id = (unsigned)getpid() % 100000u;
    char ns[32], va[16], vb[16];
    snprintf(ns, sizeof(ns), "pdxns%u", id);
    snprintf(va, sizeof(va), "pdxa%u", id);
    snprintf(vb, sizeof(vb), "pdxb%u", id);
    unsigned net = 1 + id % 250u;
    if (sh("ip netns add %s", ns) != 0)
        cr_skip_test("cannot create a network namespace here (no CAP_SYS_ADMIN?)");
    bool ok = sh("ip link add %s type veth peer name %s", va, vb) == 0 &&
              sh("ip link set %s netns %s", vb, ns) == 0 &&
              sh("ip addr add 10.213.%u.1/24 dev %s", net, va) == 0 &&
              sh("ip link set %s up", va) == 0 &&
              sh("ip netns exec %s ip addr add 10.213.%u.2/24 dev %s", ns, net, vb) == 0 &&
              sh("ip netns exec %s ip link set %s up", ns, vb) == 0 &&
              sh("ip netns exec %s ip link set lo up", ns) == 0;
    if (!ok) {
        sh("ip link del %s", va);
        sh("ip netns del %s", ns);
        cr_skip_test("cannot set up a veth pair into the namespace");
    }
    /* This side uses the root end of the veth, the peer the namespace end. */
    char want[32];
    snprintf(want, sizeof(want), "tcp/%s", va);
    run_intact_in(ns, "tcp", va, vb, want, "posix", 20);
    sh("ip link del %s", va);
    cr_assert_eq(sh("ip netns del %s", ns), 0);
    cr_assert_neq(sh("ip netns list | grep -q '^%s'", ns), 0, "namespace %s left behind", ns);
}
