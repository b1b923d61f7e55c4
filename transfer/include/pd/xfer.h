/* The KV transfer fabric: one asynchronous API over several backends.
 *
 * A process owns one engine and registers one memory region with it (its KV pool). The
 * engine exports a descriptor (msgpack; docs/PROTOCOL.md) that travels to a peer over the
 * authenticated control channel; the peer imports it with pd_xfer_peer_connect and may
 * then write into the region with one-sided puts.
 *
 * A transfer moves a batch of segments (local offset, remote offset, bytes) and ends with
 * one notification that reaches the receiver only after every byte of the batch landed.
 * The sender computes an XXH3 checksum per segment (one block of one layer, in the way
 * prefill posts them) and the notification carries them; the receiver verifies them
 * over the landed bytes before it reports the transfer valid, then acknowledges, and the
 * acknowledgement completes the transfer on the sender.
 *
 * The receiver announces what it expects first (pd_xfer_recv_expect: transfer id, the
 * byte ranges of the blocks it reserved, a deadline); a notification for an unknown id,
 * or one that claims bytes outside those ranges, is refused and nothing it wrote is ever
 * reported valid. The sender refuses, before any byte moves, a segment outside its own
 * registered region, outside the peer's registered region or outside the ranges it was
 * told the peer reserved.
 *
 * Everything is driven by pd_xfer_engine_progress from the owner's event loop; the
 * engine's fd (pd_xfer_engine_fd) becomes readable when progress is due, after
 * pd_xfer_engine_arm returned PD_OK. No call blocks. Not thread-safe: one thread per
 * engine. */
#ifndef PD_XFER_H
#define PD_XFER_H

#include "pd/kv_layout.h"
#include "pd/mp.h"
#include "pd/status.h"
#include "pd/xfer_codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pd_xfer_backend {
    PD_XFER_BACKEND_UCX = 0,  /* any UCX transport: shared memory, TCP, verbs */
    PD_XFER_BACKEND_LOOPBACK, /* in-process copy between engines of one process (tests) */
    PD_XFER_BACKEND_NCCL      /* GPU to GPU; PD_ERR_UNSUPPORTED when not built */
} pd_xfer_backend_t;

/* How a peer's bytes move (pd_xfer_config_t.data_path, pd_xfer_peer_data_path). */
typedef enum pd_xfer_data_path {
    PD_XFER_DATA_PATH_AUTO = 0, /* per peer: puts where the transport has native RMA, else am */
    PD_XFER_DATA_PATH_PUT,      /* one-sided puts, then a flush */
    PD_XFER_DATA_PATH_AM        /* active messages received into the reserved blocks */
} pd_xfer_data_path_t;

typedef struct pd_xfer_config {
    pd_xfer_backend_t backend;
    /* UCX transports (UCX_TLS syntax, e.g. "posix,sysv,cma,self" or "tcp"); NULL or ""
     * leaves the choice to UCX and its environment. */
    const char *transports;
    /* UCX network devices (UCX_NET_DEVICES syntax, e.g. "lo" or "veth0"); NULL for all. */
    const char *net_devices;
    /* Default deadline of a transfer, both sides, when a call passes 0. */
    uint32_t timeout_ms;
    /* Verify per-segment checksums on the receiver (the sender always sends them when
     * this is on for it; a receiver with it off accepts without hashing). */
    bool verify_checksums;
    /* Merge runs of segments contiguous on both sides into one operation. */
    bool coalesce;
    /* Ask UCX for peer failure handling (UCP_ERR_HANDLING_MODE_PEER). Off by default:
     * UCX 1.13 shared-memory transports refuse it and silently fall back to TCP. */
    bool ucx_peer_err_mode;
    /* How bytes move to a peer; AUTO decides per peer at connect time (the sender's
     * choice: a receiver accepts either). */
    pd_xfer_data_path_t data_path;
    /* Compression on the wire (pd/xfer_codec.h), the sender's choice, off by default.
     * Applied to segments that are one whole block-layer slice, sent to a peer on the am
     * path whose pool layout has this engine's geometry; everything else goes as it is.
     * Lossy: the receiver holds the restored values, and checksums cover those. */
    pd_xfer_codec_t codec;
} pd_xfer_config_t;

/* One contiguous range of bytes from the start of a registered region. */
typedef struct pd_xfer_range {
    uint64_t offset;
    uint64_t bytes;
} pd_xfer_range_t;

/* One segment of a batch: bytes at local_offset of this engine's region go to
 * remote_offset of the peer's region. */
typedef struct pd_xfer_seg {
    uint64_t local_offset;
    uint64_t remote_offset;
    uint64_t bytes;
} pd_xfer_seg_t;

/* Counters for tests and benchmarks. */
typedef struct pd_xfer_stats {
    uint64_t n_segs_posted; /* segments accepted by pd_xfer_send_post */
    uint64_t n_ops_issued;  /* backend operations after coalescing */
    uint64_t bytes_posted;
    uint64_t n_notify_refused; /* notifications the receiver refused */
    uint64_t n_data_refused;   /* data messages refused (unknown transfer, outside its ranges) */
    uint64_t bytes_received;   /* bytes that landed through data messages (restored sizes) */
    uint64_t bytes_wire;       /* bytes handed to the transport as puts or messages (packed) */
} pd_xfer_stats_t;

typedef struct pd_xfer_engine pd_xfer_engine_t;
typedef struct pd_xfer_peer pd_xfer_peer_t;
typedef struct pd_xfer_send pd_xfer_send_t;
typedef struct pd_xfer_recv pd_xfer_recv_t;

/* Called on the receiver after a batch landed and before its checksums are verified;
 * tests use it to corrupt bytes. */
typedef void (*pd_xfer_verify_hook_fn)(void *arg, void *base, const pd_xfer_seg_t *segs,
                                       size_t n_segs);

/* Fill cfg with the defaults: ucx, UCX's own transport choice, 5000 ms, checksums on,
 * coalescing on, UCP_ERR_HANDLING_MODE_NONE. */
void pd_xfer_config_default(pd_xfer_config_t *cfg);

/* Parse "ucx", "loopback" or "nccl"; PD_ERR_INVALID_PARAM otherwise. */
PD_MUST_CHECK pd_status_t pd_xfer_backend_parse(const char *name, pd_xfer_backend_t *backend_p);

/* Parse "auto", "put" or "am"; PD_ERR_INVALID_PARAM otherwise. */
PD_MUST_CHECK pd_status_t pd_xfer_data_path_parse(const char *name, pd_xfer_data_path_t *path_p);

/* "auto", "put" or "am". */
const char *pd_xfer_data_path_name(pd_xfer_data_path_t path);

/* Create an engine (one per process for ucx). cfg is copied. Returns PD_ERR_UNSUPPORTED
 * for a backend this build lacks, PD_ERR_IO when UCX fails to start. */
PD_MUST_CHECK pd_status_t pd_xfer_engine_create(const pd_xfer_config_t *cfg,
                                                pd_xfer_engine_t **engine_p);

/* Destroy an engine: fails what is in flight, disconnects every peer, deregisters memory
 * and clears *engine_p. Send and recv handles still held by the caller must be destroyed
 * before. Accepts NULL and a pointer to NULL. */
void pd_xfer_engine_destroy(pd_xfer_engine_t **engine_p);

/* Make progress: move bytes, deliver notifications, verify, acknowledge, expire
 * deadlines. Returns the number of transfers that completed (either way) in this call. */
int pd_xfer_engine_progress(pd_xfer_engine_t *engine);

/* The fd to poll for readability (zmq_poll accepts it as a plain fd). */
PD_MUST_CHECK pd_status_t pd_xfer_engine_fd(pd_xfer_engine_t *engine, int *fd_p);

/* Arm the fd before sleeping on it: PD_OK when it is safe to sleep, PD_ERR_BUSY when
 * events are already pending (call pd_xfer_engine_progress again instead). Deadlines do
 * not wake the fd: sleep at most pd_xfer_engine_next_deadline_ms. */
PD_MUST_CHECK pd_status_t pd_xfer_engine_arm(pd_xfer_engine_t *engine);

/* Milliseconds until the nearest transfer deadline, -1 if none (a zmq_poll timeout). */
long pd_xfer_engine_next_deadline_ms(const pd_xfer_engine_t *engine);

/* Counters since creation. */
void pd_xfer_engine_stats(const pd_xfer_engine_t *engine, pd_xfer_stats_t *stats_p);

/* Install a hook run before checksum verification (NULL removes it). */
void pd_xfer_engine_set_verify_hook(pd_xfer_engine_t *engine, pd_xfer_verify_hook_fn fn, void *arg);

/* Register the engine's one region (the KV pool): base, bytes and, optionally, its
 * layout (NULL if the region is not a KV pool) which the descriptor carries. The memory
 * stays owned by the caller and must outlive the registration. PD_ERR_EXISTS if a region
 * is already registered. */
PD_MUST_CHECK pd_status_t pd_xfer_mem_register(pd_xfer_engine_t *engine, void *base, size_t bytes,
                                               const pd_kv_layout_t *layout);

/* Allocate the engine's one region through the backend and register it: for UCX, memory
 * from UCX's allocator (a shared-memory segment when a shared-memory transport is on), so
 * that a peer on the same host writes it with a plain copy into its mapping; memory the
 * caller registers instead is reached through UCX's slower emulated puts on shared memory.
 * The engine owns the memory: pd_xfer_mem_deregister frees it. Sets *base_p. */
PD_MUST_CHECK pd_status_t pd_xfer_mem_alloc(pd_xfer_engine_t *engine, size_t bytes,
                                            const pd_kv_layout_t *layout, void **base_p);

/* Deregister the region (and free it if pd_xfer_mem_alloc made it); PD_ERR_BUSY while
 * transfers that use it are in flight. */
PD_MUST_CHECK pd_status_t pd_xfer_mem_deregister(pd_xfer_engine_t *engine);

/* Append this engine's descriptor (one msgpack map) to w. Requires a registered region. */
PD_MUST_CHECK pd_status_t pd_xfer_desc_export(pd_xfer_engine_t *engine, pd_mp_writer_t *w);

/* Import a peer's descriptor (desc_bytes of msgpack, checked against limits) and
 * connect to it. The peer belongs to the engine; pd_xfer_peer_disconnect releases it. */
PD_MUST_CHECK pd_status_t pd_xfer_peer_connect(pd_xfer_engine_t *engine, const void *desc,
                                               size_t desc_bytes, pd_xfer_peer_t **peer_p);

/* Fail every transfer to the peer with PD_ERR_CANCELED, close it and clear *peer_p.
 * Send handles stay valid (their status is final) until destroyed. Accepts NULL. */
void pd_xfer_peer_disconnect(pd_xfer_peer_t **peer_p);

/* Declare the peer dead (the control channel lost it, a heartbeat stopped): every
 * transfer to it, now or later, fails with status (an error code). */
void pd_xfer_peer_fail(pd_xfer_peer_t *peer, pd_status_t status);

/* The peer's registered region size and layout (layout_p may be NULL; PD_ERR_NOT_FOUND
 * when the descriptor carried none). */
PD_MUST_CHECK pd_status_t pd_xfer_peer_region(const pd_xfer_peer_t *peer, uint64_t *bytes_p,
                                              pd_kv_layout_t *layout_p);

/* Read from the peer's region into this engine's: segment i copies bytes from remote
 * offset remote_offset to local offset local_offset (one-sided gets; the peer's process
 * only has to keep progressing its engine). Blocks until every byte arrived or timeout_ms
 * (0: the engine default) passed. Both sides' bounds are checked first
 * (PD_ERR_OUT_OF_RANGE). On PD_ERR_TIMEOUT or another failure the local bytes are
 * unspecified and the caller should disconnect the peer, which cancels what is still
 * in flight. No checksum: the caller trusts what the peer's region holds. */
PD_MUST_CHECK pd_status_t pd_xfer_get(pd_xfer_peer_t *peer, const pd_xfer_seg_t *segs,
                                      size_t n_segs, uint32_t timeout_ms);

/* The data path this engine uses to write into the peer (never AUTO: the one chosen). */
pd_xfer_data_path_t pd_xfer_peer_data_path(const pd_xfer_peer_t *peer);

/* Write a short description of the transports UCX chose for the peer, e.g.
 * "posix/memory cma/memory" or "tcp/lo", into buf (NUL-terminated). */
PD_MUST_CHECK pd_status_t pd_xfer_peer_transports(pd_xfer_peer_t *peer, char *buf,
                                                  size_t buf_bytes);

/* Start a transfer to peer. xfer_id is agreed with the receiver (it expects it);
 * allowed lists the remote byte ranges reserved for this transfer (copied; NULL and 0
 * allow the peer's whole region); timeout_ms bounds the whole transfer (0 takes the
 * engine default). */
PD_MUST_CHECK pd_status_t pd_xfer_send_begin(pd_xfer_peer_t *peer, uint64_t xfer_id,
                                             const pd_xfer_range_t *allowed, size_t n_allowed,
                                             uint32_t timeout_ms, pd_xfer_send_t **send_p);

/* Post a batch (typically one layer) and return; the bytes move during progress. All
 * segments are checked first: PD_ERR_OUT_OF_RANGE (outside a region or the allowed
 * ranges, or offset + bytes overflows) and nothing of the batch moves. The local bytes
 * must not change until the transfer completes. */
PD_MUST_CHECK pd_status_t pd_xfer_send_post(pd_xfer_send_t *send, const pd_xfer_seg_t *segs,
                                            size_t n_segs);

/* Close the transfer: once every posted byte is remotely complete, send the notification
 * with payload (copied, at most PD_XFER_PAYLOAD_MAX bytes; e.g. the first token). */
PD_MUST_CHECK pd_status_t pd_xfer_send_finish(pd_xfer_send_t *send, const void *payload,
                                              size_t payload_bytes);

#define PD_XFER_PAYLOAD_MAX 4096

/* PD_INPROGRESS until the receiver acknowledged the verified batch (PD_OK) or the
 * transfer failed (timeout, peer failure, receiver refusal, checksum mismatch). */
PD_MUST_CHECK pd_status_t pd_xfer_send_status(const pd_xfer_send_t *send);

/* Release a send handle; an unfinished transfer is canceled first. Accepts NULL. */
void pd_xfer_send_destroy(pd_xfer_send_t **send_p);

/* Expect transfer xfer_id into ranges of this engine's region (copied), within
 * timeout_ms (0: engine default). PD_ERR_EXISTS if the id is already expected,
 * PD_ERR_OUT_OF_RANGE if a range leaves the region. */
PD_MUST_CHECK pd_status_t pd_xfer_recv_expect(pd_xfer_engine_t *engine, uint64_t xfer_id,
                                              const pd_xfer_range_t *ranges, size_t n_ranges,
                                              uint32_t timeout_ms, pd_xfer_recv_t **recv_p);

/* PD_INPROGRESS until the notification arrived and every checksum matched (PD_OK: the
 * bytes are valid) or the transfer failed (PD_ERR_TIMEOUT, PD_ERR_CHECKSUM,
 * PD_ERR_OUT_OF_RANGE, PD_ERR_CANCELED). */
PD_MUST_CHECK pd_status_t pd_xfer_recv_status(const pd_xfer_recv_t *recv);

/* The notification's payload and the verified segments (in this engine's offsets) of a
 * transfer whose status is PD_OK. Pointers stay valid until pd_xfer_recv_destroy. */
PD_MUST_CHECK pd_status_t pd_xfer_recv_payload(const pd_xfer_recv_t *recv, const void **payload_p,
                                               size_t *payload_bytes_p);
PD_MUST_CHECK pd_status_t pd_xfer_recv_segments(const pd_xfer_recv_t *recv,
                                                const pd_xfer_seg_t **segs_p, size_t *n_segs_p);

/* Stop expecting (a pending expectation fails with PD_ERR_CANCELED) and free the handle.
 * Accepts NULL. */
void pd_xfer_recv_destroy(pd_xfer_recv_t **recv_p);

#endif
