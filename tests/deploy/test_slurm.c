/* Slurm for real: this test runs munged, slurmctld and three slurmd (nodes n1-n3 on
 * loopback) as its own processes under a private slurm.conf, submits the script that
 * `pdctl render slurm` writes for deploy/2p2d.yaml (its base port moved to a free one),
 * waits until the router lists every worker ready, checks that the cluster's tokens
 * equal `pdctl generate`'s, then scancels the job and checks that no job and no process
 * of it is left. Root only (slurmd runs jobs as their users); skips with the reason
 * when not root or when Slurm or MUNGE is not installed (deploy/install-deps.sh
 * installs them). */
#include "deploy_test_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_NODES 3

static char dir[64];
static pid_t daemons[2 + N_NODES]; /* munged, slurmctld, slurmd n1..n3 */
static int n_daemons;
static char job_id[32];

/* Run a shell command with SLURM_CONF set and cwd = the test directory; exit status,
 * output (stdout and stderr) in out. */
static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int st = dt_vsh(dir, out, cap, fmt, ap);
    va_end(ap);
    return st;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A base port with room for the cluster's ports above it (router +0, +1; workers +10..). */
static int free_base_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int p = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)tries * 104729u) % 30000u);
        bool ok = true;
        for (int k = 0; k < 16 && ok; k++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)(p + k)),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
            close(fd);
        }
        if (ok)
            return p;
    }
    cr_assert_fail("no free port range");
    return 0;
}

/* Start a daemon in the foreground as a child of the test, its output in log. */
static void spawn(const char *log, char *const argv[])
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, log);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setsid();
        execv(argv[0], argv);
        _exit(127);
    }
    daemons[n_daemons++] = pid;
}

static bool installed(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Does any process still run from the test directory (the job's tasks and the batch
 * script run there)? Fills who with the first one found. */
static bool process_left(char *who, size_t cap)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return false;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char link[300], cwd[512];
        snprintf(link, sizeof(link), "/proc/%s/cwd", e->d_name);
        ssize_t n = readlink(link, cwd, sizeof(cwd) - 1);
        if (n <= 0)
            continue;
        cwd[n] = '\0';
        if (strncmp(cwd, dir, strlen(dir)) != 0)
            continue;
        char comm[64] = "";
        snprintf(link, sizeof(link), "/proc/%s/comm", e->d_name);
        FILE *f = fopen(link, "r");
        if (f != NULL) {
            if (fgets(comm, sizeof(comm), f) == NULL)
                comm[0] = '\0';
            fclose(f);
        }
        comm[strcspn(comm, "\n")] = '\0';
        /* A zombie of ours (a daemon not yet reaped) does not count. */
        if (comm[0] != '\0') {
            snprintf(who, cap, "pid %s (%s)", e->d_name, comm);
            found = true;
        }
    }
    closedir(d);
    return found;
}

static void teardown(void)
{
    char out[4096];
    if (job_id[0] != '\0' && dir[0] != '\0')
        sh(out, sizeof(out), "scancel %s", job_id);
    /* slurmd first (they end their job steps), then the controller, then munged. */
    for (int i = n_daemons - 1; i >= 0; i--) {
        if (daemons[i] <= 0)
            continue;
        kill(daemons[i], SIGTERM);
        for (int k = 0; k < 100 && waitpid(daemons[i], NULL, WNOHANG) == 0; k++)
            usleep(100000);
        if (waitpid(daemons[i], NULL, WNOHANG) == 0) {
            kill(daemons[i], SIGKILL);
            waitpid(daemons[i], NULL, 0);
        }
        daemons[i] = 0;
    }
    if (dir[0] != '\0' && getenv("PD_KEEP_SLURM_DIR") == NULL) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            cr_log_info("could not remove %s", dir);
    }
}

/* The tokens array of a JSON answer ("tokens":[...]), copied into buf. */
static const char *tokens_of(const char *json, char *buf, size_t cap)
{
    const char *p = strstr(json, "\"tokens\":[");
    if (p == NULL)
        return "";
    const char *end = strchr(p, ']');
    if (end == NULL)
        return "";
    snprintf(buf, cap, "%.*s", (int)(end - p + 1), p);
    return buf;
}

TestSuite(slurm, .timeout = 280, .fini = teardown);

Test(slurm, rendered_2p2d_job_serves_exact_tokens_and_scancel_leaves_nothing)
{
    const char *src = getenv("PD_SOURCE_DIR"), *bin = getenv("PD_BIN_DIR");
    if (src == NULL || bin == NULL)
        cr_skip_test("PD_SOURCE_DIR or PD_BIN_DIR is not set (run through ctest)");
    if (geteuid() != 0)
        cr_skip_test("needs root: slurmd starts job steps as the submitting user");
    static const char *const need[] = {"/usr/sbin/munged", "/usr/sbin/slurmctld",
                                       "/usr/sbin/slurmd", "/usr/bin/sbatch",
                                       "/usr/bin/scancel", "/usr/bin/squeue"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!installed(need[i]))
            cr_skip_test("%s is not installed (deploy/install-deps.sh installs slurm-wlm and "
                         "munge)",
                         need[i]);
    }
    snprintf(dir, sizeof(dir), "/tmp/pd_slurm_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    chmod(dir, 0755);
    static char out[1 << 16];
    char host[256];
    cr_assert_eq(gethostname(host, sizeof(host)), 0);
    host[strcspn(host, ".")] = '\0';

    /* MUNGE with a private key and socket. */
    cr_assert_eq(sh(out, sizeof(out),
                    "head -c 1024 /dev/urandom > munge.key && chmod 400 munge.key && "
                    "mkdir -p state log spool/n1 spool/n2 spool/n3"),
                 0, "%s", out);
    char a[6][300];
    snprintf(a[0], sizeof(a[0]), "--socket=%s/munge.sock", dir);
    snprintf(a[1], sizeof(a[1]), "--key-file=%s/munge.key", dir);
    snprintf(a[2], sizeof(a[2]), "--pid-file=%s/munged.pid", dir);
    snprintf(a[3], sizeof(a[3]), "--log-file=%s/log/munged.log", dir);
    snprintf(a[4], sizeof(a[4]), "--seed-file=%s/munge.seed", dir);
    char *munged[] = {
        "/usr/sbin/munged", "--foreground", "--force", a[0], a[1], a[2], a[3], a[4], NULL};
    spawn("munged.out", munged);

    /* slurm.conf: three nodes on loopback, each slurmd on its own port. */
    int ctld_port = free_port();
    char conf[8192];
    int len = snprintf(conf, sizeof(conf),
                       "ClusterName=pdkvtest\n"
                       "SlurmctldHost=%s(127.0.0.1)\n"
                       "SlurmctldPort=%d\n"
                       "AuthType=auth/munge\nCredType=cred/munge\n"
                       "AuthInfo=socket=%s/munge.sock\n"
                       "StateSaveLocation=%s/state\n"
                       "SlurmdSpoolDir=%s/spool/%%n\n"
                       "SlurmctldPidFile=%s/slurmctld.pid\n"
                       "SlurmdPidFile=%s/slurmd-%%n.pid\n"
                       "SlurmctldLogFile=%s/log/slurmctld.log\n"
                       "SlurmdLogFile=%s/log/slurmd-%%n.log\n"
                       "ProctrackType=proctrack/pgid\nTaskPlugin=task/none\n"
                       "JobAcctGatherType=jobacct_gather/none\n"
                       "AccountingStorageType=accounting_storage/none\n"
                       "JobCompType=jobcomp/none\n"
                       "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
                       "SchedulerType=sched/backfill\n"
                       "SchedulerParameters=bf_interval=1,sched_interval=1\n"
                       "SlurmUser=root\nSlurmdUser=root\nMpiDefault=none\n"
                       "ReturnToService=2\nSlurmdParameters=config_overrides\n"
                       "KillWait=5\nMessageTimeout=20\n",
                       host, ctld_port, dir, dir, dir, dir, dir, dir, dir);
    for (int i = 1; i <= N_NODES; i++)
        len += snprintf(conf + len, sizeof(conf) - (size_t)len,
                        "NodeName=n%d NodeAddr=127.0.0.1 NodeHostname=%s Port=%d CPUs=4 "
                        "RealMemory=8000\n",
                        i, host, free_port());
    snprintf(conf + len, sizeof(conf) - (size_t)len,
             "PartitionName=pdkv Nodes=n[1-%d] Default=YES MaxTime=30 State=UP\n", N_NODES);
    char conf_path[128];
    snprintf(conf_path, sizeof(conf_path), "%s/slurm.conf", dir);
    FILE *f = fopen(conf_path, "w");
    cr_assert_not_null(f);
    fputs(conf, f);
    fclose(f);
    setenv("SLURM_CONF", conf_path, 1);

    /* The MUNGE socket first: the Slurm daemons authenticate through it at start. */
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/munge.sock", dir);
    for (double t0 = dt_now_s(); access(sock, F_OK) != 0; usleep(100000))
        cr_assert_lt(dt_now_s() - t0, 20.0, "munged did not start");
    char *ctld[] = {"/usr/sbin/slurmctld", "-D", "-c", "-f", conf_path, NULL};
    spawn("slurmctld.out", ctld);
    char names[N_NODES][8];
    for (int i = 0; i < N_NODES; i++) {
        snprintf(names[i], sizeof(names[i]), "n%d", i + 1);
        char *slurmd[] = {"/usr/sbin/slurmd", "-D", "-N", names[i], "-f", conf_path, NULL};
        spawn(names[i], slurmd);
    }
    double t0 = dt_now_s();
    while (sh(out, sizeof(out), "sinfo -h -o '%%T %%D' -t idle") != 0 ||
           strstr(out, "idle 3") == NULL) {
        cr_assert_lt(dt_now_s() - t0, 60.0, "the three nodes did not come up: %s", out);
        usleep(300000);
    }
    cr_log_info("slurm: 3 nodes idle after %.1f s", dt_now_s() - t0);

    /* The rendered job for deploy/2p2d.yaml, at a free base port. */
    int base = free_base_port();
    cr_assert_eq(sh(out, sizeof(out),
                    "sed 's/^  base_port: .*/  base_port: %d/' '%s/deploy/2p2d.yaml' > 2p2d.yaml "
                    "&& grep -q 'base_port: %d' 2p2d.yaml && "
                    "'%s/pdctl' render slurm 2p2d.yaml --bin-dir '%s' -o job.sh",
                    base, src, base, bin, bin),
                 0, "%s", out);
    cr_assert_eq(sh(out, sizeof(out), "sbatch --parsable job.sh"), 0, "%s", out);
    snprintf(job_id, sizeof(job_id), "%.*s", (int)strspn(out, "0123456789"), out);
    cr_assert_neq(job_id[0], '\0', "sbatch said: %s", out);
    cr_log_info("slurm: job %s submitted", job_id);

    /* Wait for the router to list all four workers ready. */
    char router[64];
    snprintf(router, sizeof(router), "tcp://127.0.0.1:%d", base);
    static const char *const workers[] = {"prefill-0", "prefill-1", "decode-0", "decode-1"};
    t0 = dt_now_s();
    for (int w = 0; w < 4;) {
        if (sh(out, sizeof(out), "'%s/pdctl' status -r %s --worker %s --timeout-ms 1000", bin,
               router, workers[w]) == 0) {
            w++;
            continue;
        }
        if (dt_now_s() - t0 > 180.0) {
            char log[1 << 14];
            sh(log, sizeof(log), "squeue; tail -n 40 pdkv-2p2d-%s.out", job_id);
            cr_assert_fail("%s not ready after 180 s: %s\n%s", workers[w], out, log);
        }
        usleep(500000);
    }
    cr_log_info("slurm: router and 4 workers ready after %.1f s", dt_now_s() - t0);
    /* The job made the workers' keys and the router enforces them. */
    cr_assert_eq(sh(out, sizeof(out),
                    "grep -q 'authentication on: .*, 4 worker keys' "
                    "pdkv-2p2d-%s.out",
                    job_id),
                 0, "the router of the job does not authenticate its workers");
    cr_assert_eq(sh(out, sizeof(out), "squeue -h -j %s -o '%%T' | sort -u", job_id), 0);
    cr_assert_str_eq(out, "RUNNING\n", "every component runs");

    /* The cluster's tokens are pdctl generate's, for prompts of several lengths. */
    static const char *const prompts[] = {"1,2,3", "5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21",
                                          "9,8,7,6,5,4,3,2,1,100,200,250,40,50,60,70,80,"
                                          "90,100,11,12,13,14,15,16,17,18,19,20,21,22,23,24"};
    for (size_t i = 0; i < sizeof(prompts) / sizeof(prompts[0]); i++) {
        char got[4096], want[4096], gt[2048], wt[2048];
        cr_assert_eq(sh(got, sizeof(got),
                        "'%s/pdctl' submit -r %s --tokens %s -n 12 --seed %zu --json 2>/dev/null",
                        bin, router, prompts[i], i + 1),
                     0, "%s", got);
        cr_assert_eq(sh(want, sizeof(want),
                        "'%s/pdctl' generate -m .pdkv/models/small --tokens %s -n 12 --seed %zu "
                        "--json 2>/dev/null",
                        bin, prompts[i], i + 1),
                     0, "%s", want);
        tokens_of(got, gt, sizeof(gt));
        tokens_of(want, wt, sizeof(wt));
        cr_assert_neq(gt[0], '\0', "no tokens from the cluster: %s", got);
        cr_assert_str_eq(gt, wt, "prompt %zu: cluster %s, generate %s", i, gt, wt);
    }

    /* scancel: the job ends and nothing of it is left. */
    cr_assert_eq(sh(out, sizeof(out), "scancel %s", job_id), 0, "%s", out);
    t0 = dt_now_s();
    char who[400] = "";
    for (;;) {
        int rc = sh(out, sizeof(out), "squeue -h -o '%%i %%T'");
        bool no_job = rc == 0 && out[0] == '\0';
        bool no_proc = !process_left(who, sizeof(who));
        if (no_job && no_proc)
            break;
        cr_assert_lt(dt_now_s() - t0, 60.0, "after scancel: jobs '%s', process %s", out,
                     no_proc ? "none" : who);
        usleep(300000);
    }
    cr_log_info("slurm: job and processes gone %.1f s after scancel", dt_now_s() - t0);
    cr_assert_eq(sh(out, sizeof(out), "'%s/pdctl' status -r %s --timeout-ms 500", bin, router), 1,
                 "the router is gone: %s", out);
    cr_assert_eq(
        sh(out, sizeof(out), "scontrol show job %s | grep -o 'JobState=[A-Z]*' | head -1", job_id),
        0);
    cr_assert_str_eq(out, "JobState=CANCELLED\n");
    job_id[0] = '\0';
}
