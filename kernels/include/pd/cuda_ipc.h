/* CUDA IPC between GPU processes of one host, through the CUDA module: export the IPC
 * handle of a device allocation (a KV pool from pd_engine_buf_alloc), open a peer's, and
 * a copy stream whose events order layer-wise copies (the signatures of
 * pd_xfer_ipc_dev_ops_t in pd/xfer_ipc.h). Every call answers PD_ERR_UNSUPPORTED in a
 * build or on a machine without CUDA, with the reason logged. */
#ifndef PD_CUDA_IPC_H
#define PD_CUDA_IPC_H

#include "pd/status.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes of an IPC handle (cudaIpcMemHandle_t). */
#define PD_CUDA_IPC_HANDLE_BYTES 64

/* The handle of the allocation dev_ptr starts (PD_CUDA_IPC_HANDLE_BYTES into handle). */
PD_MUST_CHECK pd_status_t pd_cuda_ipc_export(const void *dev_ptr, void *handle);

/* Map a peer's allocation; *dev_ptr_p is valid until pd_cuda_ipc_close. */
PD_MUST_CHECK pd_status_t pd_cuda_ipc_open(const void *handle, void **dev_ptr_p);
void pd_cuda_ipc_close(void *dev_ptr);

/* A copy stream with n_events events (the most layers in flight at once). */
PD_MUST_CHECK pd_status_t pd_cuda_ipc_stream_create(uint32_t n_events, void **stream_p);
void pd_cuda_ipc_stream_destroy(void *stream);
PD_MUST_CHECK pd_status_t pd_cuda_ipc_copy_async(void *stream, void *dst, const void *src,
                                                 size_t bytes);
PD_MUST_CHECK pd_status_t pd_cuda_ipc_event_record(void *stream, uint32_t *event_p);
/* PD_OK when done, PD_INPROGRESS before, an error when a copy before it failed. */
PD_MUST_CHECK pd_status_t pd_cuda_ipc_event_query(void *stream, uint32_t event);

/* Pin bytes of host memory at p for fast copies to and from the device (the host pool a
 * GPU worker stages KV through); unregister before the memory is freed. */
PD_MUST_CHECK pd_status_t pd_cuda_host_register(void *p, size_t bytes);
void pd_cuda_host_unregister(void *p);

/* Plain device memory on the first visible device, for benchmarks and tests of IPC:
 * allocate (the allocation an IPC handle names), free, fill with values from seed (the
 * fill is complete when the call returns), and copy to the host (waits). */
PD_MUST_CHECK pd_status_t pd_cuda_dev_alloc(size_t bytes, void **p_p);
void pd_cuda_dev_free(void *p);
PD_MUST_CHECK pd_status_t pd_cuda_dev_fill(void *p, size_t bytes, uint64_t seed);
PD_MUST_CHECK pd_status_t pd_cuda_dev_to_host(void *host, const void *dev, size_t bytes);

#endif
