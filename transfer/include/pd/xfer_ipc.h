/* KV between GPU processes on one host by CUDA IPC: the host-side half.
 *
 * The decode worker's KV pool lives in device memory. It exports a CUDA IPC handle of the
 * pool's allocation in a descriptor (below) that travels over the authenticated control
 * channel beside the fabric's own descriptor. A prefill worker on the same host opens the
 * handle once per peer and writes each layer's blocks straight into the decode worker's
 * pool with device-to-device copies on its own stream, layer by layer as its forward pass
 * produces them; after each layer's copies it records an event. The notification (the
 * fabric's, carrying the first token) goes out only once the events of every layer have
 * completed: the receiver never learns of a transfer before its bytes are in its pool.
 *
 * This file holds what needs no GPU and is tested on every machine: the descriptor's
 * encoding and checks, the plan of copies for a layer (which block goes where, coalesced,
 * bounds-checked against the pool and the blocks the receiver reserved) and the ordering
 * of a transfer (notify after data, fail on any copy error). The device operations come
 * through pd_xfer_ipc_dev_ops_t, which the CUDA module supplies (kernels/cuda/ipc.cu). */
#ifndef PD_XFER_IPC_H
#define PD_XFER_IPC_H

#include "pd/kv_layout.h"
#include "pd/mp.h"
#include "pd/status.h"
#include "pd/xfer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of cudaIpcMemHandle_t (CUDA_IPC_HANDLE_SIZE). */
#define PD_XFER_IPC_HANDLE_BYTES 64

/* What a receiver exports: enough for a peer on the same host to map its pool. */
typedef struct pd_xfer_ipc_desc {
    uint8_t handle[PD_XFER_IPC_HANDLE_BYTES]; /* the pool allocation's IPC handle */
    uint64_t pool_offset;                     /* the pool's offset in that allocation */
    uint64_t pool_bytes;
    uint64_t host_id; /* pd_xfer_ipc_host_id() of the exporting host */
    uint32_t pid;     /* the exporting process (a handle cannot be opened by its owner) */
    int32_t device;   /* the exporter's device ordinal (informational) */
    pd_kv_layout_t layout;
} pd_xfer_ipc_desc_t;

/* An identifier of this host's boot (XXH3 of /proc/sys/kernel/random/boot_id; 0 when
 * unreadable): IPC handles only open between processes of one host and boot. */
uint64_t pd_xfer_ipc_host_id(void);

/* Append the descriptor as one msgpack map. */
void pd_xfer_ipc_desc_write(const pd_xfer_ipc_desc_t *d, pd_mp_writer_t *w);

/* Read a descriptor from a decoded msgpack map (obj), checking every field: the handle's
 * size, a layout whose pool fits pool_bytes, no offset overflow. PD_ERR_PROTO on a
 * malformed map; *d_p is set only on success. */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_desc_read(const msgpack_object *obj, pd_xfer_ipc_desc_t *d_p);

/* Whether a peer with descriptor d can be reached by IPC from this process: same host and
 * boot, another process, host_id known. Writes the reason it cannot into why (may be
 * NULL) when it returns false. */
bool pd_xfer_ipc_reachable(const pd_xfer_ipc_desc_t *d, uint64_t host_id, uint32_t pid, char *why,
                           size_t why_bytes);

/* The copies that move `n` blocks of one layer: block src_blocks[i] of the local pool
 * (src layout) to block dst_blocks[i] of the peer's pool (dst layout, dst_pool_bytes),
 * runs of blocks consecutive on both sides merged into one segment. Every destination
 * range must lie inside the peer's pool and inside one of the `allowed` ranges (NULL and
 * 0: the whole pool); the layouts must agree on the block shape. Writes at most n
 * segments into segs (caller storage, n entries) and their count into *n_segs_p.
 * PD_ERR_OUT_OF_RANGE or PD_ERR_INVALID_PARAM with nothing to copy otherwise. */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_plan_layer(const pd_kv_layout_t *src,
                                                 const pd_kv_layout_t *dst, uint64_t dst_pool_bytes,
                                                 uint32_t layer, const uint32_t *src_blocks,
                                                 const uint32_t *dst_blocks, uint32_t n,
                                                 const pd_xfer_range_t *allowed, size_t n_allowed,
                                                 pd_xfer_seg_t *segs, size_t *n_segs_p);

/* Device operations of an IPC transfer (the CUDA module's, or a host-memory stand-in on
 * machines without a GPU). Events are small integers the ops hand out. */
typedef struct pd_xfer_ipc_dev_ops {
    /* Queue a copy of bytes from src (local device memory) to dst (the peer's mapped
     * pool) on the transfer's stream. */
    pd_status_t (*copy_async)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Record an event after the copies queued so far; *event_p names it. */
    pd_status_t (*event_record)(void *ctx, uint32_t *event_p);
    /* PD_OK when the event completed, PD_INPROGRESS before, an error if a copy failed. */
    pd_status_t (*event_query)(void *ctx, uint32_t event);
    void *ctx;
} pd_xfer_ipc_dev_ops_t;

/* Most layers one transfer orders. */
#define PD_XFER_IPC_MAX_LAYERS 512

/* One transfer by IPC into a mapped peer pool (caller storage; pd_xfer_ipc_send_init). */
typedef struct pd_xfer_ipc_send {
    const pd_xfer_ipc_dev_ops_t *ops;
    unsigned char *src_base; /* the local pool (device memory) */
    unsigned char *dst_base; /* the peer's pool, mapped */
    uint32_t n_layers;       /* layers that must be posted before finish */
    uint32_t n_posted;       /* layers posted */
    uint32_t n_done;         /* layers whose event completed (in posting order) */
    uint32_t events[PD_XFER_IPC_MAX_LAYERS];
    uint64_t bytes_posted;
    bool finished; /* finish was called */
    pd_status_t status;
} pd_xfer_ipc_send_t;

/* Start a transfer of n_layers layers from src_base to the mapped dst_base. */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_send_init(pd_xfer_ipc_send_t *s,
                                                const pd_xfer_ipc_dev_ops_t *ops, void *src_base,
                                                void *dst_base, uint32_t n_layers);

/* Queue one layer's copies (a plan from pd_xfer_ipc_plan_layer) and record its event.
 * Layers may come in any order, each once; the first error fails the transfer. */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_send_post(pd_xfer_ipc_send_t *s, const pd_xfer_seg_t *segs,
                                                size_t n_segs);

/* No more layers: PD_ERR_INVALID_PARAM if fewer than n_layers were posted. */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_send_finish(pd_xfer_ipc_send_t *s);

/* Poll the events in posting order. PD_OK once the transfer was finished and every
 * layer's copies completed (and from then on): only then may the notification go out.
 * PD_INPROGRESS before; the transfer's error when a copy failed (no notification). */
PD_MUST_CHECK pd_status_t pd_xfer_ipc_send_progress(pd_xfer_ipc_send_t *s);

#endif
