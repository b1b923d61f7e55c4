/* The worker's sockets and its one event loop: registration (again after every reconnect),
 * heartbeats with load, resync, and the hand-off of requests to the role's hooks. */
#include "pd/client.h"
#include "pd/log.h"
#include "pd/signals.h"
#include "pd/time.h"
#include "pd/zap.h"
#include "worker_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define PD_WORKER_REGISTER_RETRY_MS    1000u
#define PD_WORKER_REGISTER_AGAIN_MS    200u /* a NOT_FOUND sooner answers an older message */
#define PD_WORKER_HEARTBEAT_DEFAULT_MS 1000u
#define PD_WORKER_LOAD_MIN_GAP_MS      20u
#define PD_WORKER_MAX_DRAIN            64

static volatile sig_atomic_t pd_worker_stop_flag;

static void pd_worker_on_signal(int sig)
{
    (void)sig;
    pd_worker_stop_flag = 1;
}

void pd_worker_signals_install(void)
{
    pd_signals_install(pd_worker_on_signal, false);
}

bool pd_worker_stopping(void)
{
    return pd_worker_stop_flag != 0;
}

void pd_worker_stop(void)
{
    pd_worker_stop_flag = 1;
}

/* The endpoint a peer can reach: the bound one, with a wildcard replaced by --ip. */
static void pd_worker_public_endpoint(const pd_worker_t *w, const char *bound, char *out,
                                      size_t cap)
{
    const char *star = strstr(bound, "://*:");
    const char *any = strstr(bound, "://0.0.0.0:");
    if (star != NULL)
        snprintf(out, cap, "%.*s://%s:%s", (int)(star - bound), bound, w->args.ip, star + 5);
    else if (any != NULL)
        snprintf(out, cap, "%.*s://%s:%s", (int)(any - bound), bound, w->args.ip, any + 11);
    else
        snprintf(out, cap, "%s", bound);
}

/* CURVE on the DEALER: the router's public key, this worker's key pair (the public half
 * derived from the secret). On the events PUB: a CURVE server with this worker's key whose
 * ZAP handler admits the router's key alone, bound before the PUB is. A worker asked for
 * CURVE never falls back to plain text. */
static pd_status_t pd_worker_curve_setup(pd_worker_t *w)
{
    char secret[41], public_key[41];
    pd_status_t st = pd_client_read_key_file(w->args.curve_secret_file, secret);
    if (st != PD_OK) {
        pd_log_error("worker: %s: %s", w->args.curve_secret_file,
                     st == PD_ERR_IO ? "cannot read" : "not a 40-character Z85 key");
        return st;
    }
    st = PD_OK;
    if (!zmq_has("curve")) {
        pd_log_error("worker: CURVE requested but this libzmq has no CURVE support");
        st = PD_ERR_UNSUPPORTED;
    } else if (zmq_curve_public(public_key, secret) != 0 ||
               zmq_setsockopt(w->dealer, ZMQ_CURVE_SERVERKEY, w->args.curve_server_key, 41) != 0 ||
               zmq_setsockopt(w->dealer, ZMQ_CURVE_PUBLICKEY, public_key, 41) != 0 ||
               zmq_setsockopt(w->dealer, ZMQ_CURVE_SECRETKEY, secret, 41) != 0 ||
               zmq_z85_decode(w->router_key, w->args.curve_server_key) == NULL) {
        pd_log_error("worker: bad CURVE key: %s", zmq_strerror(zmq_errno()));
        st = PD_ERR_INVALID_PARAM;
    } else {
        int server = 1;
        w->zap = pd_zap_bind(w->zctx);
        if (w->zap == NULL ||
            zmq_setsockopt(w->pub, ZMQ_CURVE_SERVER, &server, sizeof(server)) != 0 ||
            zmq_setsockopt(w->pub, ZMQ_CURVE_SECRETKEY, secret, 41) != 0 ||
            zmq_setsockopt(w->pub, ZMQ_ZAP_DOMAIN, "pdkv-events", 11) != 0) {
            pd_log_error("worker: CURVE on the events socket: %s", zmq_strerror(zmq_errno()));
            st = PD_ERR_IO;
        }
    }
    memset(secret, 0, sizeof(secret));
    return st;
}

/* Answer the events socket's handshakes: the router's key is the one subscriber. */
static void pd_worker_zap_serve(pd_worker_t *w)
{
    pd_zap_request_t q;
    for (int k = 0; k < 16 && pd_zap_recv(w->zap, &q); k++) {
        bool ok = q.curve && memcmp(q.key, w->router_key, sizeof(q.key)) == 0;
        if (!ok)
            pd_log_warn("worker: events subscriber refused: %s",
                        q.curve ? "not the router's key" : "not CURVE");
        pd_zap_reply(w->zap, &q, ok, NULL, NULL, 0);
    }
}

pd_status_t pd_worker_create(const pd_worker_args_t *args, const pd_worker_reg_t *reg,
                             pd_worker_t **worker_p)
{
    pd_status_t st = PD_ERR_IO;
    pd_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return PD_ERR_NO_MEMORY;
    w->args = *args;
    w->epoch = pd_time_epoch_new();
    w->n_blocks = reg->n_blocks;
    w->heartbeat_ms = PD_WORKER_HEARTBEAT_DEFAULT_MS;
    pd_mp_writer_init(&w->w);
    pd_mp_writer_init(&w->w_event);
    if (reg->xfer_desc_bytes > 0) {
        w->desc = malloc(reg->xfer_desc_bytes);
        if (w->desc == NULL) {
            st = PD_ERR_NO_MEMORY;
            goto err_free;
        }
        memcpy(w->desc, reg->xfer_desc, reg->xfer_desc_bytes);
        w->desc_bytes = reg->xfer_desc_bytes;
    }
    st = pd_worker_events_init(w);
    if (st != PD_OK)
        goto err_free;
    st = PD_ERR_IO;

    w->zctx = zmq_ctx_new();
    if (w->zctx == NULL)
        goto err_free;
    w->dealer = zmq_socket(w->zctx, ZMQ_DEALER);
    w->pub = zmq_socket(w->zctx, ZMQ_PUB);
    if (w->dealer == NULL || w->pub == NULL)
        goto err_sockets;
    int zero = 0;
    int64_t maxmsg = PD_PROTO_MAX_WORKER_FRAME_BYTES;
    int hwm = 100000;
    int reconnect_ms = 100, reconnect_max_ms = 1000;
    zmq_setsockopt(w->dealer, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(w->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    zmq_setsockopt(w->dealer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(w->dealer, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(w->dealer, ZMQ_RECONNECT_IVL, &reconnect_ms, sizeof(reconnect_ms));
    zmq_setsockopt(w->dealer, ZMQ_RECONNECT_IVL_MAX, &reconnect_max_ms, sizeof(reconnect_max_ms));
    /* Without auth the router routes by the worker's id; with it, by ids of its own, so
     * that no peer can take over a worker's route by naming itself after it. */
    if (args->curve_server_key[0] == '\0')
        zmq_setsockopt(w->dealer, ZMQ_ROUTING_ID, args->id, strlen(args->id));
    zmq_setsockopt(w->pub, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(w->pub, ZMQ_SNDHWM, &hwm, sizeof(hwm));

    char mon_ep[64];
    snprintf(mon_ep, sizeof(mon_ep), "inproc://pd-worker-monitor-%p", (void *)w);
    if (zmq_socket_monitor(w->dealer, mon_ep, ZMQ_EVENT_CONNECTED) != 0)
        goto err_sockets;
    w->monitor = zmq_socket(w->zctx, ZMQ_PAIR);
    if (w->monitor == NULL || zmq_connect(w->monitor, mon_ep) != 0)
        goto err_sockets;
    zmq_setsockopt(w->monitor, ZMQ_LINGER, &zero, sizeof(zero));

    if (args->curve_server_key[0] != '\0' && pd_worker_curve_setup(w) != PD_OK)
        goto err_sockets;
    if (zmq_bind(w->pub, args->events) != 0) {
        pd_log_error("worker: cannot bind events PUB to %s: %s", args->events,
                     zmq_strerror(zmq_errno()));
        goto err_sockets;
    }
    char bound[PD_PROTO_ENDPOINT_CAP];
    size_t bound_len = sizeof(bound);
    if (zmq_getsockopt(w->pub, ZMQ_LAST_ENDPOINT, bound, &bound_len) != 0)
        snprintf(bound, sizeof(bound), "%s", args->events);
    pd_worker_public_endpoint(w, bound, w->events_endpoint, sizeof(w->events_endpoint));
    if (zmq_connect(w->dealer, args->router) != 0) {
        pd_log_error("worker: cannot connect to router %s: %s", args->router,
                     zmq_strerror(zmq_errno()));
        goto err_sockets;
    }
    *worker_p = w;
    return PD_OK;

err_sockets:
    if (w->zap != NULL)
        zmq_close(w->zap);
    if (w->monitor != NULL)
        zmq_close(w->monitor);
    if (w->dealer != NULL)
        zmq_close(w->dealer);
    if (w->pub != NULL)
        zmq_close(w->pub);
    zmq_ctx_term(w->zctx);
err_free:
    pd_worker_events_cleanup(w);
    pd_mp_writer_cleanup(&w->w);
    pd_mp_writer_cleanup(&w->w_event);
    free(w->desc);
    free(w);
    return st;
}

void pd_worker_destroy(pd_worker_t **worker_p)
{
    if (worker_p == NULL || *worker_p == NULL)
        return;
    pd_worker_t *w = *worker_p;
    pd_worker_events_flush(w);
    zmq_socket_monitor(w->dealer, NULL, 0);
    zmq_close(w->monitor);
    if (w->zap != NULL)
        zmq_close(w->zap);
    zmq_close(w->dealer);
    zmq_close(w->pub);
    zmq_ctx_term(w->zctx);
    pd_worker_events_cleanup(w);
    pd_mp_writer_cleanup(&w->w);
    pd_mp_writer_cleanup(&w->w_event);
    free(w->desc);
    free(w);
    *worker_p = NULL;
}

uint64_t pd_worker_epoch(const pd_worker_t *w)
{
    return w->epoch;
}

const pd_worker_args_t *pd_worker_get_args(const pd_worker_t *w)
{
    return &w->args;
}

const char *pd_worker_events_endpoint(const pd_worker_t *w)
{
    return w->events_endpoint;
}

pd_status_t pd_worker_send(pd_worker_t *w, const pd_proto_msg_t *msg)
{
    pd_mp_writer_reset(&w->w);
    pd_status_t st = pd_proto_encode(msg, &w->w);
    if (st != PD_OK) {
        pd_log_error("worker: cannot encode %s: %s", pd_proto_type_name(msg->type),
                     pd_status_str(st));
        return st;
    }
    if (zmq_send(w->dealer, pd_mp_writer_data(&w->w), pd_mp_writer_size(&w->w), ZMQ_DONTWAIT) < 0) {
        pd_log_warn("worker: %s to router dropped: %s", pd_proto_type_name(msg->type),
                    zmq_strerror(zmq_errno()));
        return PD_ERR_BUSY;
    }
    return PD_OK;
}

void pd_worker_send_error(pd_worker_t *w, uint64_t req_id, pd_status_t code, const char *message)
{
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_WORKER_ERROR;
    msg.u.worker_error.req_id = req_id;
    msg.u.worker_error.code = code < 0 ? code : PD_ERR_INTERNAL;
    msg.u.worker_error.message = message != NULL ? message : pd_status_str(code);
    pd_worker_send(w, &msg);
}

void pd_worker_load_changed(pd_worker_t *w)
{
    w->load_changed = true;
}

static void pd_worker_register_send(pd_worker_t *w)
{
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_REGISTER;
    pd_proto_register_t *r = &msg.u.reg;
    snprintf(r->worker_id, sizeof(r->worker_id), "%s", w->args.id);
    r->role = w->args.role;
    r->epoch = w->epoch;
    snprintf(r->model_id, sizeof(r->model_id), "%.128s", w->args.model);
    r->block_tokens = w->args.block_tokens;
    r->n_blocks = w->n_blocks;
    r->xfer_desc = w->desc;
    r->xfer_desc_bytes = w->desc_bytes;
    snprintf(r->events_endpoint, sizeof(r->events_endpoint), "%s", w->events_endpoint);
    w->register_sent_ms = pd_time_now_ms();
    if (pd_worker_send(w, &msg) == PD_OK)
        pd_log_info("worker: register %s (%s, epoch %llu) to %s", w->args.id,
                    pd_proto_role_name(w->args.role), (unsigned long long)w->epoch, w->args.router);
}

static void pd_worker_heartbeat_send(pd_worker_t *w, const pd_worker_hooks_t *hooks, uint64_t now)
{
    pd_proto_msg_t msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = PD_PROTO_TYPE_HEARTBEAT;
    pd_proto_heartbeat_t *hb = &msg.u.heartbeat;
    snprintf(hb->worker_id, sizeof(hb->worker_id), "%s", w->args.id);
    hb->epoch = w->epoch;
    /* Events of this iteration go out first, so kv_seq never runs ahead of the PUB. */
    pd_worker_events_flush(w);
    hb->kv_seq = w->seq;
    if (hooks->load != NULL)
        hooks->load(hooks->arg, hb);
    pd_worker_send(w, &msg);
    w->load_changed = false;
    w->heartbeat_last_ms = now;
    w->heartbeat_due_ms = now + w->heartbeat_ms;
}

/* The DEALER connected (again): a router that restarted has forgotten us. */
static void pd_worker_monitor_drain(pd_worker_t *w)
{
    for (;;) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, w->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&frame) >= 2)
            memcpy(&event, zmq_msg_data(&frame), sizeof(event));
        int more = zmq_msg_more(&frame);
        zmq_msg_close(&frame);
        while (more) {
            zmq_msg_init(&frame);
            if (zmq_msg_recv(&frame, w->monitor, 0) < 0)
                more = 0;
            else
                more = zmq_msg_more(&frame);
            zmq_msg_close(&frame);
        }
        if (event == ZMQ_EVENT_CONNECTED) {
            w->n_connects++;
            if (w->n_connects > 1) {
                pd_log_warn("worker: reconnected to the router; registering again");
                w->registered = false;
                pd_worker_register_send(w);
            }
        }
    }
}

/* A new epoch: events so far go out under the old one, the role drops every request. */
static void pd_worker_reset(pd_worker_t *w, const pd_worker_hooks_t *hooks, const char *why)
{
    pd_worker_events_flush(w);
    uint64_t old = w->epoch;
    do
        w->epoch = pd_time_epoch_new();
    while (w->epoch == old);
    w->seq = 0;
    w->n_resets++;
    pd_log_warn("worker: the router dropped epoch %llu (%s): its requests are dropped; "
                "registering as epoch %llu",
                (unsigned long long)old, why, (unsigned long long)w->epoch);
    if (hooks->on_reset != NULL)
        hooks->on_reset(hooks->arg);
}

static void pd_worker_handle(pd_worker_t *w, const pd_worker_hooks_t *hooks, const void *buf,
                             size_t len)
{
    pd_proto_msg_t msg;
    pd_proto_fault_t fault;
    memset(&msg, 0, sizeof(msg));
    memset(&fault, 0, sizeof(fault));
    pd_status_t st = pd_proto_decode(&msg, PD_PROTO_CHAN_WORKER, buf, len, &fault);
    if (st != PD_OK) {
        pd_log_warn("worker: bad message from router (%zu bytes): %s: %s", len, pd_status_name(st),
                    fault.reason);
        pd_worker_send_error(w, fault.req_id, st, fault.reason[0] ? fault.reason : NULL);
        return;
    }
    switch (msg.type) {
    case PD_PROTO_TYPE_REGISTERED:
        if (msg.u.registered.router_epoch != 0 && w->router_epoch != 0 &&
            msg.u.registered.router_epoch != w->router_epoch) {
            /* A new router process: it knows none of the requests we hold (their clients
             * hear it from its journal), so they go now, not at their deadlines. Nothing
             * of the new router's has arrived yet (registered comes first on the
             * connection), so everything held is the old one's; the epoch stays, the
             * directory is rebuilt by the resync that follows. */
            pd_log_warn("worker: a new router process (epoch %llu, was %llu): the requests of "
                        "the previous one are dropped",
                        (unsigned long long)msg.u.registered.router_epoch,
                        (unsigned long long)w->router_epoch);
            if (hooks->on_reset != NULL)
                hooks->on_reset(hooks->arg);
        }
        if (msg.u.registered.router_epoch != 0)
            w->router_epoch = msg.u.registered.router_epoch;
        w->registered = true;
        w->heartbeat_ms = msg.u.registered.heartbeat_ms > 0 ? msg.u.registered.heartbeat_ms
                                                            : PD_WORKER_HEARTBEAT_DEFAULT_MS;
        /* Beat a bit faster than asked, so one late beat is never a miss. */
        if (w->heartbeat_ms > 4)
            w->heartbeat_ms = w->heartbeat_ms * 3 / 4;
        w->heartbeat_due_ms = 0;
        pd_log_info("worker: registered; heartbeat every %u ms", w->heartbeat_ms);
        break;
    case PD_PROTO_TYPE_RESYNC:
        pd_worker_snapshot_send(w);
        break;
    case PD_PROTO_TYPE_RESERVE:
    case PD_PROTO_TYPE_PREFILL:
    case PD_PROTO_TYPE_PIN:
    case PD_PROTO_TYPE_WORKER_CANCEL:
    case PD_PROTO_TYPE_WORKER_ERROR:
        if (msg.type == PD_PROTO_TYPE_WORKER_ERROR && msg.u.worker_error.req_id == 0 &&
            msg.u.worker_error.code == PD_ERR_NOT_FOUND) {
            /* The router does not know this worker. While registered, that means it
             * declared us dead (a stop, a partition): what we hold was failed there, so
             * it goes, and we come back as a new epoch that owns nothing of the old one.
             * A router that restarted answers our register (sent on reconnect) with a
             * new router_epoch, and what we hold goes then: see PD_PROTO_TYPE_REGISTERED. */
            if (w->registered)
                pd_worker_reset(w, hooks, msg.u.worker_error.message);
            else if (pd_time_now_ms() - w->register_sent_ms < PD_WORKER_REGISTER_AGAIN_MS)
                break; /* answers to what we sent before our register reached it */
            else
                pd_log_info("worker: router does not know us yet (%s); registering again",
                            msg.u.worker_error.message);
            w->registered = false;
            pd_worker_register_send(w);
            break;
        }
        if (hooks->on_message != NULL)
            hooks->on_message(hooks->arg, &msg);
        break;
    default:
        pd_log_warn("worker: unexpected %s from router", pd_proto_type_name(msg.type));
        pd_worker_send_error(w, 0, PD_ERR_PROTO, "unexpected message type for a worker");
        break;
    }
    pd_proto_msg_cleanup(&msg);
}

static void pd_worker_dealer_drain(pd_worker_t *w, const pd_worker_hooks_t *hooks)
{
    for (int i = 0; i < PD_WORKER_MAX_DRAIN; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, w->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        /* A router may put an empty delimiter first; the payload is the last frame. */
        while (zmq_msg_more(&frame)) {
            zmq_msg_close(&frame);
            zmq_msg_init(&frame);
            if (zmq_msg_recv(&frame, w->dealer, 0) < 0)
                break;
        }
        if (zmq_msg_size(&frame) > 0)
            pd_worker_handle(w, hooks, zmq_msg_data(&frame), zmq_msg_size(&frame));
        zmq_msg_close(&frame);
    }
}

void pd_worker_tick(pd_worker_t *w)
{
    if (w->hooks == NULL || !w->registered)
        return;
    uint64_t now = pd_time_now_ms();
    if (now >= w->heartbeat_due_ms)
        pd_worker_heartbeat_send(w, w->hooks, now);
}

pd_status_t pd_worker_run(pd_worker_t *w, const pd_worker_hooks_t *hooks, int extra_fd)
{
    w->hooks = hooks;
    pd_worker_register_send(w);
    while (!pd_worker_stopping()) {
        uint64_t now = pd_time_now_ms();
        if (!w->registered && now - w->register_sent_ms >= PD_WORKER_REGISTER_RETRY_MS)
            pd_worker_register_send(w);
        if (w->registered &&
            (now >= w->heartbeat_due_ms ||
             (w->load_changed && now >= w->heartbeat_last_ms + PD_WORKER_LOAD_MIN_GAP_MS)))
            pd_worker_heartbeat_send(w, hooks, now);

        long timeout = hooks->wait_ms != NULL ? hooks->wait_ms(hooks->arg) : -1;
        long until_timer;
        if (!w->registered)
            until_timer = (long)(w->register_sent_ms + PD_WORKER_REGISTER_RETRY_MS - now);
        else if (w->load_changed)
            until_timer = (long)(w->heartbeat_last_ms + PD_WORKER_LOAD_MIN_GAP_MS - now);
        else
            until_timer = (long)(w->heartbeat_due_ms - now);
        if (until_timer < 0)
            until_timer = 0;
        if (timeout < 0 || timeout > until_timer)
            timeout = until_timer;

        zmq_pollitem_t items[4] = {{w->dealer, 0, ZMQ_POLLIN, 0},
                                   {w->monitor, 0, ZMQ_POLLIN, 0},
                                   {w->zap, 0, ZMQ_POLLIN, 0},
                                   {NULL, extra_fd, ZMQ_POLLIN, 0}};
        int n_items = 2;
        if (w->zap != NULL)
            n_items++;
        if (extra_fd >= 0)
            items[n_items++] = (zmq_pollitem_t){NULL, extra_fd, ZMQ_POLLIN, 0};
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && zmq_errno() != EINTR) {
            pd_log_error("worker: zmq_poll: %s", zmq_strerror(zmq_errno()));
            w->hooks = NULL;
            return PD_ERR_IO;
        }
        if (pd_worker_stopping())
            break;
        if (w->zap != NULL)
            pd_worker_zap_serve(w);
        pd_worker_monitor_drain(w);
        pd_worker_dealer_drain(w, hooks);
        if (hooks->on_step != NULL)
            hooks->on_step(hooks->arg);
        pd_worker_events_flush(w);
    }
    pd_worker_events_flush(w);
    w->hooks = NULL;
    return PD_OK;
}
