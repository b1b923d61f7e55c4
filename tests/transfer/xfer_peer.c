/* pd-xfer-peer: the other process of the transfer integration tests.
 *
 *   pd-xfer-peer recv [--tls T] [--net-devices D] [--pool BYTES] [--register] [--layout L,H,D,B,N]
 *   pd-xfer-peer send [--tls T] [--net-devices D] [--pool BYTES] [--seed S]
 *                     [--die-after-layers K]
 *
 * It talks to the test over stdin/stdout in frames (u32 length + msgpack map, "op" key).
 * recv: writes its descriptor, then per {"op":"expect"} writes "ready" and, when the
 * transfer ends, "result" (status, payload, and the whole pool when asked).
 * send: reads the receiver's descriptor, writes "connected", then per {"op":"send"}
 * posts the segments layer by layer and writes "result". */
#include "xfer_test_util.h"

#include "pd/log.h"

#include <getopt.h>

typedef struct peer_opts {
    const char *tls;
    const char *net_devices;
    size_t pool_bytes;
    uint64_t seed;
    int die_after_layers;
    bool register_pool;
    bool has_layout;
    pd_kv_layout_t layout; /* --layout L,H,D,B,N: the pool is a KV pool of this shape */
} peer_opts_t;

/* The receiver lets the fabric allocate its pool (the decode path) unless --register;
 * the sender registers its own memory. */
static pd_xfer_engine_t *engine_start(const peer_opts_t *o, uint8_t **pool_p)
{
    pd_xfer_config_t cfg;
    pd_xfer_config_default(&cfg);
    cfg.transports = o->tls;
    cfg.net_devices = o->net_devices;
    pd_xfer_engine_t *engine = NULL;
    if (pd_xfer_engine_create(&cfg, &engine) != PD_OK)
        return NULL;
    pd_status_t st;
    if (*pool_p != NULL) {
        st =
            pd_xfer_mem_register(engine, *pool_p, o->pool_bytes, o->has_layout ? &o->layout : NULL);
    } else {
        void *base = NULL;
        st = pd_xfer_mem_alloc(engine, o->pool_bytes, o->has_layout ? &o->layout : NULL, &base);
        if (st == PD_OK)
            *pool_p = base;
    }
    if (st != PD_OK) {
        pd_xfer_engine_destroy(&engine);
        return NULL;
    }
    return engine;
}

/* Wait for a frame on stdin while keeping the engine progressing. */
static bool frame_wait(pd_xfer_engine_t *engine, void **buf_p, size_t *len_p)
{
    for (;;) {
        pd_xfer_engine_progress(engine);
        struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
        if (pd_xfer_engine_arm(engine) == PD_OK) /* no fd (loopback): poll times out */
            pd_status_ignore(pd_xfer_engine_fd(engine, &pfd[1].fd));
        int r = poll(pfd, 2, 10);
        if (r > 0 && (pfd[0].revents & (POLLIN | POLLHUP)))
            return xt_frame_recv(0, buf_p, len_p, 10000);
    }
}

static bool recv_done(void *arg)
{
    return pd_xfer_recv_status(arg) != PD_INPROGRESS;
}

static bool send_done(void *arg)
{
    return pd_xfer_send_status(arg) != PD_INPROGRESS;
}

static int run_recv(const peer_opts_t *o)
{
    uint8_t *pool = NULL; /* (pool_bytes) filled with 0xEE */
    if (o->register_pool && (pool = malloc(o->pool_bytes)) == NULL)
        return 2;
    pd_xfer_engine_t *engine = engine_start(o, &pool);
    if (engine == NULL)
        return 2;
    memset(pool, 0xEE, o->pool_bytes);
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    if (pd_xfer_desc_export(engine, &w) != PD_OK)
        return 2;
    xt_frame_send(1, &w);
    int rc = 0;
    for (;;) {
        void *buf = NULL;
        size_t len = 0;
        if (!frame_wait(engine, &buf, &len))
            break;
        pd_mp_doc_t doc;
        if (pd_mp_doc_parse(&doc, buf, len, xt_limits()) != PD_OK) {
            free(buf);
            rc = 3;
            break;
        }
        const msgpack_object *op = pd_mp_map_find(&doc.root, "op");
        if (op == NULL || pd_mp_str_eq(op, "quit")) {
            pd_mp_doc_cleanup(&doc);
            free(buf);
            break;
        }
        /* Each field is optional: an absent one keeps its default here. */
        uint64_t xfer_id = 0, timeout_ms = 0, reset = 0, dump = 0;
        const void *ranges = NULL;
        size_t ranges_bytes = 0;
        pd_status_ignore(pd_mp_get_u64(&doc.root, "xfer", &xfer_id));
        pd_status_ignore(pd_mp_get_u64(&doc.root, "timeout_ms", &timeout_ms));
        pd_status_ignore(pd_mp_get_u64(&doc.root, "reset", &reset));
        pd_status_ignore(pd_mp_get_u64(&doc.root, "dump", &dump));
        pd_status_ignore(pd_mp_get_bin(&doc.root, "ranges", &ranges, &ranges_bytes));
        if (reset)
            memset(pool, 0xEE, o->pool_bytes);
        size_t n_ranges = ranges_bytes / sizeof(pd_xfer_range_t);
        pd_xfer_range_t *r = malloc((n_ranges ? n_ranges : 1) * sizeof(*r));
        memcpy(r, ranges, n_ranges * sizeof(*r));
        pd_xfer_recv_t *recv = NULL;
        pd_status_t st =
            pd_xfer_recv_expect(engine, xfer_id, r, n_ranges, (uint32_t)timeout_ms, &recv);
        free(r);
        pd_mp_doc_cleanup(&doc);
        free(buf);
        pd_mp_writer_reset(&w);
        pd_mp_put_map(&w, 2);
        pd_mp_put_str(&w, "op");
        pd_mp_put_str(&w, "ready");
        pd_mp_put_str(&w, "status");
        pd_mp_put_i64(&w, st);
        xt_frame_send(1, &w);
        if (st != PD_OK)
            continue;
        xt_wait(engine, NULL, recv_done, recv, (uint32_t)timeout_ms + 5000);
        st = pd_xfer_recv_status(recv);
        const void *payload = "";
        size_t payload_bytes = 0;
        if (st == PD_OK && pd_xfer_recv_payload(recv, &payload, &payload_bytes) != PD_OK)
            st = PD_ERR_PROTO;
        pd_mp_writer_reset(&w);
        pd_mp_put_map(&w, 4);
        pd_mp_put_str(&w, "op");
        pd_mp_put_str(&w, "result");
        pd_mp_put_str(&w, "status");
        pd_mp_put_i64(&w, st);
        pd_mp_put_str(&w, "payload");
        pd_mp_put_bin(&w, payload, payload_bytes);
        pd_mp_put_str(&w, "pool");
        pd_mp_put_bin(&w, pool, dump ? o->pool_bytes : 0);
        xt_frame_send(1, &w);
        pd_xfer_recv_destroy(&recv);
    }
    pd_mp_writer_cleanup(&w);
    pd_status_ignore(pd_xfer_mem_deregister(engine)); /* the engine goes next anyway */
    pd_xfer_engine_destroy(&engine);
    if (o->register_pool)
        free(pool);
    return rc;
}

static int run_send(const peer_opts_t *o)
{
    uint8_t *pool = malloc(o->pool_bytes); /* (pool_bytes) pattern of seed */
    if (pool == NULL)
        return 2;
    xt_fill(pool, o->pool_bytes, o->seed);
    pd_xfer_engine_t *engine = engine_start(o, &pool);
    if (engine == NULL)
        return 2;
    void *buf = NULL;
    size_t len = 0;
    pd_xfer_peer_t *peer = NULL;
    if (!xt_frame_recv(0, &buf, &len, 10000) ||
        pd_xfer_peer_connect(engine, buf, len, &peer) != PD_OK)
        return 3;
    free(buf);
    char tls[256] = ""; /* left empty when UCX does not say */
    pd_status_ignore(pd_xfer_peer_transports(peer, tls, sizeof(tls)));
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 3);
    pd_mp_put_str(&w, "op");
    pd_mp_put_str(&w, "connected");
    pd_mp_put_str(&w, "transports");
    pd_mp_put_str(&w, tls);
    pd_mp_put_str(&w, "data_path");
    pd_mp_put_str(&w, pd_xfer_data_path_name(pd_xfer_peer_data_path(peer)));
    xt_frame_send(1, &w);
    int rc = 0;
    for (;;) {
        if (!frame_wait(engine, &buf, &len))
            break;
        pd_mp_doc_t doc;
        if (pd_mp_doc_parse(&doc, buf, len, xt_limits()) != PD_OK) {
            free(buf);
            rc = 3;
            break;
        }
        const msgpack_object *op = pd_mp_map_find(&doc.root, "op");
        if (op == NULL || pd_mp_str_eq(op, "quit")) {
            pd_mp_doc_cleanup(&doc);
            free(buf);
            break;
        }
        /* Each field is optional: an absent one keeps its default here. */
        uint64_t xfer_id = 0, timeout_ms = 0, layers = 1;
        const void *segs = NULL, *payload = NULL;
        size_t segs_bytes = 0, payload_bytes = 0;
        pd_status_ignore(pd_mp_get_u64(&doc.root, "xfer", &xfer_id));
        pd_status_ignore(pd_mp_get_u64(&doc.root, "timeout_ms", &timeout_ms));
        pd_status_ignore(pd_mp_get_u64(&doc.root, "layers", &layers));
        pd_status_ignore(pd_mp_get_bin(&doc.root, "segs", &segs, &segs_bytes));
        pd_status_ignore(pd_mp_get_bin(&doc.root, "payload", &payload, &payload_bytes));
        size_t n_segs = segs_bytes / sizeof(pd_xfer_seg_t);
        pd_xfer_seg_t *sg = malloc((n_segs ? n_segs : 1) * sizeof(*sg));
        memcpy(sg, segs, n_segs * sizeof(*sg));
        pd_xfer_send_t *send = NULL;
        pd_status_t st = pd_xfer_send_begin(peer, xfer_id, NULL, 0, (uint32_t)timeout_ms, &send);
        size_t per_layer = layers ? (n_segs + layers - 1) / layers : n_segs;
        for (size_t l = 0; st == PD_OK && l * per_layer < n_segs; l++) {
            size_t n = n_segs - l * per_layer < per_layer ? n_segs - l * per_layer : per_layer;
            st = pd_xfer_send_post(send, sg + l * per_layer, n);
            if (o->die_after_layers > 0 && (int)l + 1 >= o->die_after_layers) {
                /* Let the first layers move, then die mid-batch without a notification. */
                for (int i = 0; i < 50; i++) {
                    pd_xfer_engine_progress(engine);
                    usleep(1000);
                }
                _exit(9);
            }
        }
        if (st == PD_OK)
            st = pd_xfer_send_finish(send, payload, payload_bytes);
        if (st == PD_OK) {
            xt_wait(engine, NULL, send_done, send, (uint32_t)timeout_ms + 5000);
            st = pd_xfer_send_status(send);
        }
        pd_xfer_send_destroy(&send);
        free(sg);
        pd_mp_doc_cleanup(&doc);
        free(buf);
        pd_mp_writer_reset(&w);
        pd_mp_put_map(&w, 2);
        pd_mp_put_str(&w, "op");
        pd_mp_put_str(&w, "result");
        pd_mp_put_str(&w, "status");
        pd_mp_put_i64(&w, st);
        xt_frame_send(1, &w);
    }
    pd_mp_writer_cleanup(&w);
    pd_xfer_peer_disconnect(&peer);
    pd_xfer_engine_destroy(&engine);
    free(pool);
    return rc;
}

int main(int argc, char **argv)
{
    pd_log_init("xfer-peer");
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: pd-xfer-peer recv|send [--tls T] [--net-devices D] "
                        "[--pool BYTES] [--seed S] [--die-after-layers K]\n");
        return 1;
    }
    peer_opts_t o = {.pool_bytes = 1u << 20, .seed = 1};
    static const struct option long_opts[] = {
        {"tls", required_argument, NULL, 't'},
        {"net-devices", required_argument, NULL, 'n'},
        {"pool", required_argument, NULL, 'p'},
        {"seed", required_argument, NULL, 's'},
        {"die-after-layers", required_argument, NULL, 'd'},
        {"register", no_argument, NULL, 'r'},
        {"layout", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o.tls = optarg;
            break;
        case 'n':
            o.net_devices = optarg;
            break;
        case 'p':
            o.pool_bytes = strtoull(optarg, NULL, 0);
            break;
        case 's':
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case 'd':
            o.die_after_layers = atoi(optarg);
            break;
        case 'r':
            o.register_pool = true;
            break;
        case 'l':
            if (sscanf(optarg, "%u,%u,%u,%u,%u", &o.layout.n_layers, &o.layout.n_kv_heads,
                       &o.layout.head_dim, &o.layout.block_tokens, &o.layout.n_blocks) != 5)
                return 1;
            o.has_layout = true;
            break;
        default:
            return 1;
        }
    }
    if (strcmp(argv[1], "recv") == 0)
        return run_recv(&o);
    if (strcmp(argv[1], "send") == 0)
        return run_send(&o);
    fprintf(stderr, "pd-xfer-peer: unknown mode %s\n", argv[1]);
    return 1;
}
