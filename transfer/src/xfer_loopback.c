/* The loopback backend: engines of one process copy into each other's regions. It plays
 * the part UCX's "self" transport plays for UCX's tests: every code path above the
 * backend runs with no network and no second process. */
#include "xfer_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct pd_xfer__lb_engine {
    struct pd_xfer__lb_engine *next; /* registry of live loopback engines */
    pd_xfer_engine_t *engine;
    int efd;
} pd_xfer__lb_engine_t;

typedef struct pd_xfer__lb_peer {
    uint64_t remote_id;
} pd_xfer__lb_peer_t;

static pthread_mutex_t pd_xfer__lb_lock = PTHREAD_MUTEX_INITIALIZER;
static pd_xfer__lb_engine_t *pd_xfer__lb_registry;

/* The live engine with this id, or NULL. Callers hold the lock. */
static pd_xfer_engine_t *pd_xfer__lb_find(uint64_t id)
{
    for (pd_xfer__lb_engine_t *e = pd_xfer__lb_registry; e != NULL; e = e->next) {
        if (e->engine->id == id)
            return e->engine;
    }
    return NULL;
}

static pd_status_t pd_xfer__lb_engine_init(pd_xfer_engine_t *engine)
{
    pd_xfer__lb_engine_t *lb = calloc(1, sizeof(*lb));
    if (lb == NULL)
        return PD_ERR_NO_MEMORY;
    lb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lb->efd < 0) {
        free(lb);
        return PD_ERR_IO;
    }
    lb->engine = engine;
    engine->be = lb;
    pthread_mutex_lock(&pd_xfer__lb_lock);
    lb->next = pd_xfer__lb_registry;
    pd_xfer__lb_registry = lb;
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    return PD_OK;
}

static void pd_xfer__lb_engine_cleanup(pd_xfer_engine_t *engine)
{
    pd_xfer__lb_engine_t *lb = engine->be;
    pthread_mutex_lock(&pd_xfer__lb_lock);
    for (pd_xfer__lb_engine_t **pp = &pd_xfer__lb_registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == lb) {
            *pp = lb->next;
            break;
        }
    }
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    if (engine->registered && engine->allocated)
        free(engine->base);
    close(lb->efd);
    free(lb);
    engine->be = NULL;
}

static pd_status_t pd_xfer__lb_mem_register(pd_xfer_engine_t *engine)
{
    if (engine->allocated) {
        engine->base = aligned_alloc(4096, (engine->bytes + 4095) & ~(size_t)4095);
        if (engine->base == NULL)
            return PD_ERR_NO_MEMORY;
    }
    return PD_OK;
}

static void pd_xfer__lb_mem_deregister(pd_xfer_engine_t *engine)
{
    if (engine->allocated)
        free(engine->base);
}

static pd_status_t pd_xfer__lb_desc_pack(pd_xfer_engine_t *engine, pd_mp_writer_t *w)
{
    (void)engine;
    (void)w;
    return PD_OK;
}

static pd_status_t pd_xfer__lb_peer_connect(pd_xfer_peer_t *peer, const msgpack_object *desc)
{
    (void)desc;
    pthread_mutex_lock(&pd_xfer__lb_lock);
    pd_xfer_engine_t *remote = pd_xfer__lb_find(peer->remote_id);
    /* The descriptor's base must be the live engine's: a stale descriptor is refused. */
    bool ok = remote != NULL && remote->registered &&
              (uint64_t)(uintptr_t)remote->base == peer->remote_base &&
              remote->bytes == peer->remote_bytes;
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    if (!ok)
        return PD_ERR_UNREACHABLE;
    pd_xfer__lb_peer_t *lp = calloc(1, sizeof(*lp));
    if (lp == NULL)
        return PD_ERR_NO_MEMORY;
    lp->remote_id = peer->remote_id;
    peer->be = lp;
    return PD_OK;
}

static void pd_xfer__lb_peer_close(pd_xfer_peer_t *peer)
{
    free(peer->be);
    peer->be = NULL;
}

/* Take the registry's lock and return peer's engine, still registered, with the lock
 * held; NULL (the lock released) when it is gone. */
static pd_xfer_engine_t *pd_xfer__lb_lock_remote(pd_xfer_peer_t *peer)
{
    pd_xfer__lb_peer_t *lp = peer->be;
    pthread_mutex_lock(&pd_xfer__lb_lock);
    pd_xfer_engine_t *remote = pd_xfer__lb_find(lp->remote_id);
    if (remote == NULL || !remote->registered) {
        pthread_mutex_unlock(&pd_xfer__lb_lock);
        return NULL;
    }
    return remote;
}

static pd_status_t pd_xfer__lb_put(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *local,
                                   uint64_t remote_offset, size_t bytes,
                                   const pd_xfer__data_hdr_t *hdr)
{
    (void)send;
    pd_xfer_engine_t *remote = pd_xfer__lb_lock_remote(peer);
    if (remote == NULL)
        return PD_ERR_PEER;
    pd_status_t st = PD_OK;
    if (hdr != NULL) {
        /* A data message: the receiver's checks decide where it lands, if anywhere (a
         * refusal comes back to the sender, as a refused rendezvous does over UCX). */
        pd_xfer_recv_t *recv = NULL;
        void *dest = NULL;
        st = pd_xfer__data_accept(remote, hdr, bytes, &recv, &dest);
        if (st == PD_OK && hdr->raw_bytes != 0) {
            pd_xfer__data_restore(remote, hdr, dest, local);
            pd_xfer__data_landed(recv, hdr->raw_bytes, PD_OK, false);
        } else if (st == PD_OK) {
            memcpy(dest, local, bytes);
            pd_xfer__data_landed(recv, bytes, PD_OK, false);
        }
    } else {
        memcpy(remote->base + remote_offset, local, bytes);
    }
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    return st;
}

static pd_status_t pd_xfer__lb_get(pd_xfer_peer_t *peer, const pd_xfer_seg_t *segs, size_t n_segs,
                                   uint64_t deadline_ns)
{
    (void)deadline_ns; /* synchronous copies */
    pd_xfer_engine_t *remote = pd_xfer__lb_lock_remote(peer);
    if (remote == NULL)
        return PD_ERR_PEER;
    for (size_t i = 0; i < n_segs; i++)
        memcpy(peer->engine->base + segs[i].local_offset, remote->base + segs[i].remote_offset,
               segs[i].bytes);
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    return PD_OK;
}

static pd_status_t pd_xfer__lb_flush(pd_xfer_peer_t *peer, pd_xfer_send_t *send)
{
    (void)peer;
    pd_xfer__send_flushed(send, PD_OK); /* puts and data messages are synchronous copies */
    return PD_OK;
}

/* Both data paths are copies here; am (when configured) runs the receiver's checks of data
 * messages, so that tests reach them with no network. */
static pd_xfer_data_path_t pd_xfer__lb_data_path(pd_xfer_peer_t *peer)
{
    return peer->engine->cfg.data_path == PD_XFER_DATA_PATH_AM ? PD_XFER_DATA_PATH_AM
                                                               : PD_XFER_DATA_PATH_PUT;
}

/* Queue msg at engine id and wake its fd. */
static pd_status_t pd_xfer__lb_deliver(uint64_t to_id, uint64_t from_id, const void *msg,
                                       size_t bytes)
{
    pthread_mutex_lock(&pd_xfer__lb_lock);
    pd_xfer_engine_t *remote = pd_xfer__lb_find(to_id);
    if (remote == NULL) {
        pthread_mutex_unlock(&pd_xfer__lb_lock);
        return PD_ERR_PEER;
    }
    pd_xfer__msg_deliver(remote, msg, bytes, (void *)(uintptr_t)from_id);
    pd_xfer__lb_engine_t *lb = remote->be;
    uint64_t one = 1;
    ssize_t n = write(lb->efd, &one, sizeof(one));
    (void)n; /* a full counter still wakes the poller */
    pthread_mutex_unlock(&pd_xfer__lb_lock);
    return PD_OK;
}

static pd_status_t pd_xfer__lb_notify(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *msg,
                                      size_t bytes)
{
    (void)send;
    pd_xfer__lb_peer_t *lp = peer->be;
    return pd_xfer__lb_deliver(lp->remote_id, peer->engine->id, msg, bytes);
}

static pd_status_t pd_xfer__lb_reply(pd_xfer_engine_t *engine, void *reply_ctx, const void *msg,
                                     size_t bytes)
{
    return pd_xfer__lb_deliver((uint64_t)(uintptr_t)reply_ctx, engine->id, msg, bytes);
}

static int pd_xfer__lb_progress(pd_xfer_engine_t *engine)
{
    (void)engine;
    return 0;
}

static pd_status_t pd_xfer__lb_get_fd(pd_xfer_engine_t *engine, int *fd_p)
{
    pd_xfer__lb_engine_t *lb = engine->be;
    *fd_p = lb->efd;
    return PD_OK;
}

static pd_status_t pd_xfer__lb_arm(pd_xfer_engine_t *engine)
{
    pd_xfer__lb_engine_t *lb = engine->be;
    uint64_t count;
    /* Drain the counter; the caller checked the queue is empty. */
    while (read(lb->efd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        ;
    return engine->msg_head != NULL ? PD_ERR_BUSY : PD_OK;
}

static pd_status_t pd_xfer__lb_transports(pd_xfer_peer_t *peer, char *buf, size_t buf_bytes)
{
    (void)peer;
    strncpy(buf, "loopback", buf_bytes - 1);
    buf[buf_bytes - 1] = '\0';
    return PD_OK;
}

const pd_xfer_backend_ops_t pd_xfer_loopback_ops = {
    .name = "loopback",
    .engine_init = pd_xfer__lb_engine_init,
    .engine_cleanup = pd_xfer__lb_engine_cleanup,
    .mem_register = pd_xfer__lb_mem_register,
    .mem_deregister = pd_xfer__lb_mem_deregister,
    .n_desc_pairs = 0,
    .desc_pack = pd_xfer__lb_desc_pack,
    .peer_connect = pd_xfer__lb_peer_connect,
    .peer_close = pd_xfer__lb_peer_close,
    .data_path = pd_xfer__lb_data_path,
    .put = pd_xfer__lb_put,
    .get = pd_xfer__lb_get,
    .flush = pd_xfer__lb_flush,
    .notify = pd_xfer__lb_notify,
    .reply = pd_xfer__lb_reply,
    .progress = pd_xfer__lb_progress,
    .get_fd = pd_xfer__lb_get_fd,
    .arm = pd_xfer__lb_arm,
    .transports = pd_xfer__lb_transports,
};
