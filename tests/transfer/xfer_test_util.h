/* Shared by the transfer tests and pd-xfer-peer: length-prefixed msgpack frames over
 * pipes, child processes, byte patterns, and waiting on an engine with a deadline. */
#ifndef PD_XFER_TEST_UTIL_H
#define PD_XFER_TEST_UTIL_H

#include "pd/mp.h"
#include "pd/time.h"
#include "pd/xfer.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The byte at offset i of a pool filled for seed. */
static inline uint8_t xt_pattern(uint64_t i, uint64_t seed)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xC2B2AE3D27D4EB4Full);
    x ^= x >> 29;
    return (uint8_t)(x ^ (x >> 8));
}

static inline void xt_fill(uint8_t *base, size_t bytes, uint64_t seed)
{
    for (size_t i = 0; i < bytes; i++)
        base[i] = xt_pattern(i, seed);
}

static inline bool xt_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Read exactly n bytes, waiting at most until deadline_ns. */
static inline bool xt_read_all(int fd, void *buf, size_t n, uint64_t deadline_ns)
{
    uint8_t *p = buf;
    while (n > 0) {
        uint64_t now = pd_time_now_ns();
        if (now >= deadline_ns)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)((deadline_ns - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

static inline bool xt_frame_send(int fd, const pd_mp_writer_t *w)
{
    uint32_t len = (uint32_t)pd_mp_writer_size(w);
    return xt_write_all(fd, &len, sizeof(len)) && xt_write_all(fd, pd_mp_writer_data(w), len);
}

/* Read one frame into *buf_p (malloc'd, caller frees); false on timeout or EOF. */
static inline bool xt_frame_recv(int fd, void **buf_p, size_t *len_p, uint32_t timeout_ms)
{
    uint64_t deadline = pd_time_now_ns() + (uint64_t)timeout_ms * 1000000u;
    uint32_t len = 0;
    /* timeout_ms bounds the wait for a frame to start; once its length is in, the rest
     * gets 10 s, so that a short poll never consumes half a frame. */
    if (!xt_read_all(fd, &len, sizeof(len), deadline) || len > (64u << 20))
        return false;
    deadline = pd_time_now_ns() + 10000000000ull;
    void *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return false;
    if (!xt_read_all(fd, buf, len, deadline)) {
        free(buf);
        return false;
    }
    *buf_p = buf;
    *len_p = len;
    return true;
}

static inline const pd_mp_limits_t *xt_limits(void)
{
    static pd_mp_limits_t limits;
    limits = pd_mp_limits_default;
    limits.max_frame_bytes = 64u << 20;
    limits.max_bin_bytes = 64u << 20;
    return &limits;
}

/* Progress engines until done(arg) or timeout_ms, sleeping on the first engine's fd
 * when it is armed. Returns true if done. */
static inline bool xt_wait(pd_xfer_engine_t *a, pd_xfer_engine_t *b, bool (*done)(void *),
                           void *arg, uint32_t timeout_ms)
{
    uint64_t deadline = pd_time_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        pd_xfer_engine_progress(a);
        if (b != NULL)
            pd_xfer_engine_progress(b);
        if (done(arg))
            return true;
        if (pd_time_now_ns() >= deadline)
            return false;
        if (b == NULL && pd_xfer_engine_arm(a) == PD_OK) {
            int fd = -1; /* none (loopback): poll just waits 5 ms */
            pd_status_ignore(pd_xfer_engine_fd(a, &fd));
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, 1, 5);
        }
    }
}

typedef struct xt_child {
    pid_t pid;
    int to_fd;   /* its stdin */
    int from_fd; /* its stdout */
} xt_child_t;

/* Start argv[0] (a path) with pipes on stdin and stdout. */
static inline bool xt_child_start(char *const argv[], xt_child_t *child)
{
    int in[2], out[2];
    if (pipe(in) != 0)
        return false;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return false;
    }
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    child->pid = pid;
    child->to_fd = in[1];
    child->from_fd = out[0];
    return true;
}

/* Wait for the child to exit within timeout_ms, then kill it; returns its wait status. */
static inline int xt_child_reap(xt_child_t *child, uint32_t timeout_ms)
{
    if (child->pid <= 0)
        return -1;
    close(child->to_fd);
    close(child->from_fd);
    uint64_t deadline = pd_time_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status = -1;
    for (;;) {
        pid_t r = waitpid(child->pid, &status, WNOHANG);
        if (r == child->pid)
            break;
        if (pd_time_now_ns() >= deadline) {
            kill(child->pid, SIGKILL);
            waitpid(child->pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    child->pid = 0;
    return status;
}

/* The helper's path: $PD_BIN_DIR/pd-xfer-peer. */
static inline const char *xt_peer_path(void)
{
    static char path[4096];
    const char *dir = getenv("PD_BIN_DIR");
    snprintf(path, sizeof(path), "%s/pd-xfer-peer", dir ? dir : ".");
    return path;
}

#endif
