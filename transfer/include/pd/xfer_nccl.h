/* The NCCL transfer backend's host-side half: KV between GPU workers by NCCL send/recv.
 *
 * Each (prefill, decode) pair that moves KV shares one two-rank communicator: the decode
 * worker (the receiver) makes the NCCL unique id and exports it in its descriptor, which
 * travels over the authenticated control channel like the fabric's; the prefill worker
 * joins as rank 0 (sender), the decode worker is rank 1. NCCL moves bytes, not messages:
 * every layer a sender posts goes as one frame (below) naming the destination ranges,
 * followed by the bytes of each range in order. The receiver reads the frame first and
 * checks it against what it reserved for that transfer before it posts a single receive
 * into its pool; the notification (first token) still goes through the fabric once every
 * layer's receives completed.
 *
 * NCCL refuses two ranks on one GPU, and the machines lent for GPU checks here have one
 * GPU each: the GPU run of this backend needs a machine with two GPUs. What needs no GPU
 * is here and tested on every machine: descriptor, pair planning, frame encoding and its
 * checks. */
#ifndef PD_XFER_NCCL_H
#define PD_XFER_NCCL_H

#include "pd/kv_layout.h"
#include "pd/mp.h"
#include "pd/status.h"
#include "pd/xfer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size of ncclUniqueId (NCCL_UNIQUE_ID_BYTES) and of a CUDA device UUID. */
#define PD_XFER_NCCL_UID_BYTES  128
#define PD_XFER_NCCL_UUID_BYTES 16

/* What a receiver exports. */
typedef struct pd_xfer_nccl_desc {
    uint8_t uid[PD_XFER_NCCL_UID_BYTES];          /* the pair communicator's unique id */
    uint8_t device_uuid[PD_XFER_NCCL_UUID_BYTES]; /* the receiver's GPU */
    uint64_t pool_bytes;
    pd_kv_layout_t layout;
} pd_xfer_nccl_desc_t;

void pd_xfer_nccl_desc_write(const pd_xfer_nccl_desc_t *d, pd_mp_writer_t *w);

/* Read and check a descriptor (sizes, a layout whose pool is pool_bytes). PD_ERR_PROTO
 * on a malformed map; *d_p set only on success. */
PD_MUST_CHECK pd_status_t pd_xfer_nccl_desc_read(const msgpack_object *obj,
                                                 pd_xfer_nccl_desc_t *d_p);

/* A sender's place in the pair communicator. */
typedef struct pd_xfer_nccl_pair {
    int n_ranks; /* 2 */
    int rank;    /* 0: the sender (prefill) */
    int peer;    /* 1: the receiver (decode) */
} pd_xfer_nccl_pair_t;

/* Plan the sender's side of a pair with the receiver of descriptor d: PD_ERR_UNSUPPORTED
 * (reason in why) when both are on one GPU, which NCCL refuses. */
PD_MUST_CHECK pd_status_t pd_xfer_nccl_pair_plan(const uint8_t *sender_device_uuid,
                                                 const pd_xfer_nccl_desc_t *d,
                                                 pd_xfer_nccl_pair_t *pair_p, char *why,
                                                 size_t why_bytes);

/* Frame: "PDNC", version 1, then xfer_id, layer, n_segs and per segment (remote offset,
 * bytes), little-endian. */
#define PD_XFER_NCCL_FRAME_MAGIC     0x434e4450u /* "PDNC" */
#define PD_XFER_NCCL_FRAME_VERSION   1u
#define PD_XFER_NCCL_FRAME_HEAD      24u
#define PD_XFER_NCCL_FRAME_MAX_SEGS  4096u
#define PD_XFER_NCCL_FRAME_MAX_BYTES (PD_XFER_NCCL_FRAME_HEAD + 16u * PD_XFER_NCCL_FRAME_MAX_SEGS)

/* Bytes of a frame of n_segs segments. */
static inline size_t pd_xfer_nccl_frame_bytes(size_t n_segs)
{
    return PD_XFER_NCCL_FRAME_HEAD + 16 * n_segs;
}

/* Encode one layer's frame into buf (cap bytes); *len_p set on success. */
PD_MUST_CHECK pd_status_t pd_xfer_nccl_frame_pack(uint64_t xfer_id, uint32_t layer,
                                                  const pd_xfer_seg_t *segs, size_t n_segs,
                                                  void *buf, size_t cap, size_t *len_p);

/* What a receiver expects of a transfer. */
typedef struct pd_xfer_nccl_expect {
    uint64_t xfer_id;
    const pd_xfer_range_t *ranges; /* the byte ranges of its pool reserved for it */
    size_t n_ranges;
    uint64_t pool_bytes;
    uint32_t n_layers;
} pd_xfer_nccl_expect_t;

/* Decode a frame of len bytes and check it against e: magic, version, the transfer id,
 * the layer, every segment inside one reserved range (so inside the pool). Writes the
 * segments' (remote_offset, bytes) into segs (cap entries; local_offset 0) and sets
 * *n_segs_p, *layer_p and *bytes_p (the bytes that follow the frame). PD_ERR_PROTO on a
 * malformed frame, PD_ERR_OUT_OF_RANGE on a segment outside what was reserved,
 * PD_ERR_NOT_FOUND on another transfer's id. Nothing is set on error. */
PD_MUST_CHECK pd_status_t pd_xfer_nccl_frame_unpack(const void *buf, size_t len,
                                                    const pd_xfer_nccl_expect_t *e,
                                                    pd_xfer_seg_t *segs, size_t cap,
                                                    size_t *n_segs_p, uint32_t *layer_p,
                                                    uint64_t *bytes_p);

#endif
