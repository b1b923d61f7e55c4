/* Private to transfer/: the engine's state and the backend ops table. */
#ifndef PD_XFER_INT_H
#define PD_XFER_INT_H

#include "pd/xfer.h"
#include "pd/xfer_codec.h"

#include <msgpack.h>

/* Every control message of the fabric travels under this UCP active-message id. */
#define PD_XFER_AM_ID 0x70u
/* Data messages (the am data path) travel under this one, with a pd_xfer__data_hdr_t. */
#define PD_XFER_AM_DATA_ID 0x71u

/* The header of a data message: which transfer, from which engine, where in the
 * receiver's region its bytes go, and whether they are packed (pd/xfer_codec.h: then
 * the message holds raw_bytes / block-layer slices, packed, and restores to raw_bytes).
 * Native byte order (little-endian hosts). */
typedef struct pd_xfer__data_hdr {
    uint64_t xfer_id;
    uint64_t src;       /* the sending engine's id */
    uint64_t offset;    /* destination offset in the receiver's region */
    uint64_t raw_bytes; /* 0: the bytes as they are; else what the packed slices restore to */
    uint32_t codec;     /* pd_xfer_codec_t of the packed slices */
    uint32_t reserved;  /* 0 */
} pd_xfer__data_hdr_t;

/* Packed bytes a send keeps until it is released (data messages point into them). */
typedef struct pd_xfer__stage {
    struct pd_xfer__stage *next;
    uint8_t data[]; /* packed block-layer slices */
} pd_xfer__stage_t;

/* Headers of data messages in flight stay where they are until the send handle goes:
 * UCX 1.13 reads a message's header when it sends it, which may be after the call. */
typedef struct pd_xfer__hdr_chunk {
    struct pd_xfer__hdr_chunk *next;
    size_t n_used, n_cap;
    pd_xfer__data_hdr_t hdrs[]; /* (n_cap) */
} pd_xfer__hdr_chunk_t;

typedef enum pd_xfer__send_state {
    PD_XFER_SEND_OPEN = 0, /* posts accepted */
    PD_XFER_SEND_FLUSHING, /* finish called, waiting for remote completion of the puts */
    PD_XFER_SEND_NOTIFIED, /* notification sent, waiting for the receiver's ack */
    PD_XFER_SEND_DONE      /* status is final */
} pd_xfer__send_state_t;

/* A backend: a const table chosen at engine creation; nothing on the hot path branches
 * on the backend kind. Completions come back through pd_xfer__send_flushed and
 * pd_xfer__msg_deliver. */
typedef struct pd_xfer_backend_ops {
    const char *name;
    pd_status_t (*engine_init)(pd_xfer_engine_t *engine);
    /* Stop everything in flight, then deregister the region if engine->registered, then
     * free the backend: no request may write into the region once it is gone. */
    void (*engine_cleanup)(pd_xfer_engine_t *engine);
    /* Register engine->base; or, when engine->allocated, allocate engine->bytes and set
     * engine->base. Deregister frees what was allocated. */
    pd_status_t (*mem_register)(pd_xfer_engine_t *engine);
    void (*mem_deregister)(pd_xfer_engine_t *engine);
    /* Append the backend's descriptor pairs ("addr", "rkey", ...) to w; n_desc_pairs
     * of them. */
    uint32_t n_desc_pairs;
    pd_status_t (*desc_pack)(pd_xfer_engine_t *engine, pd_mp_writer_t *w);
    pd_status_t (*peer_connect)(pd_xfer_peer_t *peer, const msgpack_object *desc);
    void (*peer_close)(pd_xfer_peer_t *peer);
    /* Decide the peer's data path after connect (peer->data_path: PUT or AM). */
    pd_xfer_data_path_t (*data_path)(pd_xfer_peer_t *peer);
    /* Move bytes from local to the peer's region at remote_offset, by the peer's data
     * path: a put, or a data message whose header hdr (kept alive by the send) names the
     * transfer and offset. A data message counts in send->n_data_open until it completes
     * (pd_xfer__send_data_done). With hdr->raw_bytes set, local is packed staging memory
     * outside the registered region, bytes its length. */
    pd_status_t (*put)(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *local,
                       uint64_t remote_offset, size_t bytes, const pd_xfer__data_hdr_t *hdr);
    /* Gets of segs (bounds checked) from the peer's region into the engine's; returns when
     * all completed or at deadline_ns (PD_ERR_TIMEOUT). */
    pd_status_t (*get)(pd_xfer_peer_t *peer, const pd_xfer_seg_t *segs, size_t n_segs,
                       uint64_t deadline_ns);
    /* Call pd_xfer__send_flushed(send, status) once every put to the peer so far is
     * remotely complete, and every data message of send delivered (possibly before
     * returning). */
    pd_status_t (*flush)(pd_xfer_peer_t *peer, pd_xfer_send_t *send);
    /* Send a message the sender keeps alive until the send handle is released; the
     * receiver can answer through the reply context it gets. */
    pd_status_t (*notify)(pd_xfer_peer_t *peer, pd_xfer_send_t *send, const void *msg,
                          size_t bytes);
    /* Answer a message through its reply context (msg is copied). */
    pd_status_t (*reply)(pd_xfer_engine_t *engine, void *reply_ctx, const void *msg, size_t bytes);
    int (*progress)(pd_xfer_engine_t *engine);
    pd_status_t (*get_fd)(pd_xfer_engine_t *engine, int *fd_p);
    pd_status_t (*arm)(pd_xfer_engine_t *engine);
    pd_status_t (*transports)(pd_xfer_peer_t *peer, char *buf, size_t buf_bytes);
} pd_xfer_backend_ops_t;

extern const pd_xfer_backend_ops_t pd_xfer_ucx_ops;
extern const pd_xfer_backend_ops_t pd_xfer_loopback_ops;

/* A message received and not yet handled. */
typedef struct pd_xfer__msg {
    struct pd_xfer__msg *next;
    void *reply_ctx;
    size_t bytes;
    unsigned char data[]; /* (bytes) msgpack */
} pd_xfer__msg_t;

struct pd_xfer_engine {
    pd_xfer_config_t cfg;
    const pd_xfer_backend_ops_t *ops;
    void *be;    /* backend state */
    uint64_t id; /* random, names the engine in descriptors and messages */

    unsigned char *base; /* (bytes) the registered region, caller-owned */
    size_t bytes;
    bool registered;
    bool allocated; /* base came from the backend's allocator */
    bool has_layout;
    pd_kv_layout_t layout;

    pd_xfer_peer_t *peers;               /* list */
    pd_xfer_send_t *sends;               /* list, including orphans */
    pd_xfer_recv_t *recvs;               /* list */
    pd_xfer__msg_t *msg_head, *msg_tail; /* queue of received messages */
    int n_completed;                     /* completions counted during one progress call */

    pd_xfer_verify_hook_fn verify_hook;
    void *verify_hook_arg;
    pd_xfer_stats_t stats;
    uint32_t n_orphan_recvs; /* destroyed while data still landed in them */
    float *scratch; /* (scratch_bytes) one restored slice, for the packed path's checksums */
    size_t scratch_bytes;
};

struct pd_xfer_peer {
    pd_xfer_engine_t *engine;
    pd_xfer_peer_t *prev, *next;
    void *be;
    uint64_t remote_id;
    uint64_t remote_base;
    uint64_t remote_bytes;
    bool has_layout;
    pd_kv_layout_t layout;
    pd_status_t fail_status;       /* PD_OK while alive */
    pd_xfer_data_path_t data_path; /* PUT or AM, chosen at connect */
};

struct pd_xfer_send {
    pd_xfer_engine_t *engine;
    pd_xfer_peer_t *peer; /* NULL once disconnected */
    pd_xfer_send_t *prev, *next;
    uint64_t xfer_id;
    uint64_t remote_id;
    pd_xfer_range_t *allowed; /* (n_allowed) sorted, merged */
    size_t n_allowed;
    uint64_t deadline_ns;
    pd_xfer__send_state_t state;
    pd_status_t status;
    bool flushed;
    pd_status_t flush_status;
    uint32_t n_refs; /* backend requests that still point here */
    bool orphan;     /* the caller released it; freed at n_refs == 0 */
    uint64_t *recs;  /* (n_recs, 3) remote offset, bytes, xxh3 per segment */
    size_t n_recs, cap_recs;
    pd_mp_writer_t msg;
    bool msg_live;
    /* The am data path: messages not yet delivered, the first failure among them, the
     * bytes they carry, whether finish waits for them, and their headers. */
    uint32_t n_data_open;
    pd_status_t data_status;
    uint64_t data_bytes;
    bool flush_on_data;
    pd_xfer__hdr_chunk_t *hdr_chunks;
    pd_xfer__stage_t *stages;
};

struct pd_xfer_recv {
    pd_xfer_engine_t *engine;
    pd_xfer_recv_t *prev, *next;
    uint64_t xfer_id;
    pd_xfer_range_t *ranges; /* (n_ranges) sorted, merged */
    size_t n_ranges;
    uint64_t deadline_ns;
    pd_status_t status;
    void *payload; /* (payload_bytes) */
    size_t payload_bytes;
    pd_xfer_seg_t *segs; /* (n_segs) verified segments */
    size_t n_segs;
    /* The am data path: bytes landed, receives still writing into the region, the sender
     * of the first data message, and a notification parked until its bytes land. */
    uint64_t bytes_landed;
    uint32_t n_landing;
    uint64_t data_src;
    pd_xfer__msg_t *parked;
    uint64_t parked_need; /* bytes the parked notification says were sent as messages */
    bool orphan;          /* destroyed by the caller; freed when n_landing reaches 0 */
};

/* Backends report here. */
void pd_xfer__send_flushed(pd_xfer_send_t *send, pd_status_t status);
/* A data message of send completed (delivered, or failed with status). */
void pd_xfer__send_data_done(pd_xfer_send_t *send, pd_status_t status);
/* A data message of wire_bytes arrived: the live expectation it belongs to and where its
 * restored bytes start (hdr->offset in the region), or an error (the message is refused
 * and counted; nothing is written). A packed message must be whole block-layer slices of
 * this engine's layout, at block boundaries. */
PD_MUST_CHECK pd_status_t pd_xfer__data_accept(pd_xfer_engine_t *engine,
                                               const pd_xfer__data_hdr_t *hdr, uint64_t wire_bytes,
                                               pd_xfer_recv_t **recv_p, void **dest_p);
/* Restore an accepted packed message into dest: from packed (separate memory), or, when
 * packed is NULL, from the tail of dest's raw range where it landed. */
void pd_xfer__data_restore(pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr, void *dest,
                           const void *packed);
/* Bytes a data message takes on the wire (hdr->raw_bytes restores from them). */
uint64_t pd_xfer__data_wire_bytes(const pd_xfer_engine_t *engine, const pd_xfer__data_hdr_t *hdr);
/* Bytes of an accepted message finished landing in recv (status PD_OK), or failed.
 * in_flight: the message was counted in recv->n_landing. */
void pd_xfer__data_landed(pd_xfer_recv_t *recv, uint64_t bytes, pd_status_t status, bool in_flight);
void pd_xfer__send_ref(pd_xfer_send_t *send);
void pd_xfer__send_unref(pd_xfer_send_t *send);
/* Queue a received message (copied) for the next progress pass. */
void pd_xfer__msg_deliver(pd_xfer_engine_t *engine, const void *data, size_t bytes,
                          void *reply_ctx);

/* xfer_send.c: a header for one more data message of send (NULL without memory); one
 * put or data message of bytes of the region (coalesced run). */
pd_xfer__data_hdr_t *pd_xfer__hdr_next(pd_xfer_send_t *send, uint64_t remote_offset);
PD_MUST_CHECK pd_status_t pd_xfer__put(pd_xfer_send_t *send, uint64_t local_offset,
                                       uint64_t remote_offset, uint64_t bytes);
/* xfer_send_packed.c: whether send's segments are packed (a codec, the am path, matching
 * layouts), and posting them so: recs are reserved, bounds checked. */
bool pd_xfer__send_packs(const pd_xfer_send_t *send);
PD_MUST_CHECK pd_status_t pd_xfer__send_post_packed(pd_xfer_send_t *send, const pd_xfer_seg_t *segs,
                                                    size_t n_segs);

/* Advance sends whose flush completed and expire deadlines (xfer_send.c). */
void pd_xfer__sends_progress(pd_xfer_engine_t *engine, uint64_t now_ns);
/* Apply the receiver's answer to the notification of xfer_id (xfer_send.c). */
void pd_xfer__sends_ack(pd_xfer_engine_t *engine, uint64_t xfer_id, uint64_t from_id,
                        pd_status_t status);

/* Sort and merge ranges in place; returns the new count. */
size_t pd_xfer__ranges_merge(pd_xfer_range_t *ranges, size_t n);
/* True if [offset, offset + bytes) lies within one of the merged ranges, without
 * overflow. */
bool pd_xfer__ranges_contain(const pd_xfer_range_t *ranges, size_t n, uint64_t offset,
                             uint64_t bytes);

/* The five fields of a KV layout as msgpack key/value pairs (n_layers, n_kv_heads,
 * head_dim, block_tokens, n_blocks), inside a map the caller opened: every descriptor that
 * carries a layout writes it this way. */
void pd_xfer__layout_put_fields(pd_mp_writer_t *w, const pd_kv_layout_t *l);

#endif
