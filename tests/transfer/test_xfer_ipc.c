/* The host-side half of CUDA IPC transfers (pd/xfer_ipc.h), on every machine: descriptor
 * round trip and rejection of malformed ones, the copy plan (placement, coalescing, bounds
 * and reserved ranges), and notify-after-data ordering. The device operations here are
 * host memcpy with events whose completion each test controls, standing in for a GPU
 * stream that this machine does not have; the real ones are in kernels/cuda/ipc.cu and run
 * in deploy/gpu/device-check.sh. */
#include "pd/xfer_ipc.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const pd_kv_layout_t L = {4, 2, 8, 16, 32}; /* layers, kv heads, head_dim, B, blocks */

static pd_xfer_ipc_desc_t sample_desc(void)
{
    pd_xfer_ipc_desc_t d;
    memset(&d, 0, sizeof(d));
    for (int i = 0; i < PD_XFER_IPC_HANDLE_BYTES; i++)
        d.handle[i] = (uint8_t)(i * 7 + 3);
    d.layout = L;
    d.pool_bytes = pd_kv_pool_bytes(&L);
    d.pool_offset = 4096;
    d.host_id = 0x1234567890abcdefull;
    d.pid = 4242;
    d.device = 1;
    return d;
}

/* Encode d, then decode it back through the size-checked parser. */
static pd_status_t round_trip(const pd_xfer_ipc_desc_t *d, pd_xfer_ipc_desc_t *out)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_xfer_ipc_desc_write(d, &w);
    pd_mp_doc_t doc;
    pd_status_t st =
        pd_mp_doc_parse(&doc, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &pd_mp_limits_default);
    cr_assert_eq(st, PD_OK);
    st = pd_xfer_ipc_desc_read(&doc.root, out);
    pd_mp_doc_cleanup(&doc);
    pd_mp_writer_cleanup(&w);
    return st;
}

Test(xfer_ipc, descriptor_round_trips_every_field)
{
    pd_xfer_ipc_desc_t d = sample_desc(), e;
    memset(&e, 0xa5, sizeof(e));
    cr_assert_eq(round_trip(&d, &e), PD_OK);
    cr_assert_eq(memcmp(e.handle, d.handle, sizeof(d.handle)), 0);
    cr_assert_eq(e.pool_offset, 4096);
    cr_assert_eq(e.pool_bytes, pd_kv_pool_bytes(&L));
    cr_assert_eq(e.host_id, d.host_id);
    cr_assert_eq(e.pid, 4242);
    cr_assert_eq(e.device, 1);
    cr_assert_eq(memcmp(&e.layout, &L, sizeof(L)), 0);
}

Test(xfer_ipc, descriptor_with_inconsistent_sizes_is_refused_and_leaves_output_alone)
{
    pd_xfer_ipc_desc_t out, before;
    memset(&out, 0x5a, sizeof(out));
    before = out;
    pd_xfer_ipc_desc_t d = sample_desc();
    d.pool_bytes -= 1; /* the layout says otherwise */
    cr_assert_eq(round_trip(&d, &out), PD_ERR_PROTO);
    d = sample_desc();
    d.layout.n_blocks = 0;
    d.pool_bytes = 0;
    cr_assert_eq(round_trip(&d, &out), PD_ERR_PROTO);
    d = sample_desc();
    d.pool_offset = UINT64_MAX - 10; /* offset + bytes overflows */
    cr_assert_eq(round_trip(&d, &out), PD_ERR_PROTO);
    d = sample_desc();
    d.layout.n_blocks = UINT32_MAX; /* a pool of 2^32 blocks x 4096 layers cannot be */
    d.layout.n_layers = 4096;
    d.layout.head_dim = 4096;
    cr_assert_eq(round_trip(&d, &out), PD_ERR_PROTO);
    cr_assert_eq(memcmp(&out, &before, sizeof(out)), 0);
}

Test(xfer_ipc, descriptor_with_a_short_handle_or_missing_key_is_refused)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 1);
    pd_mp_put_str(&w, "handle");
    pd_mp_put_bin(&w, "abc", 3);
    pd_mp_doc_t doc;
    cr_assert_eq(
        pd_mp_doc_parse(&doc, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &pd_mp_limits_default),
        PD_OK);
    pd_xfer_ipc_desc_t out;
    cr_assert_eq(pd_xfer_ipc_desc_read(&doc.root, &out), PD_ERR_PROTO);
    pd_mp_doc_cleanup(&doc);
    pd_mp_writer_cleanup(&w);
}

Test(xfer_ipc, only_another_process_of_this_host_and_boot_is_reachable)
{
    const uint64_t me = pd_xfer_ipc_host_id();
    cr_assert_neq(me, 0, "boot_id unreadable");
    cr_assert_eq(me, pd_xfer_ipc_host_id()); /* stable */
    pd_xfer_ipc_desc_t d = sample_desc();
    d.host_id = me;
    char why[128];
    cr_assert(pd_xfer_ipc_reachable(&d, me, (uint32_t)getpid(), why, sizeof(why)));
    d.pid = (uint32_t)getpid();
    cr_assert_not(pd_xfer_ipc_reachable(&d, me, (uint32_t)getpid(), why, sizeof(why)));
    cr_assert(strstr(why, "this process") != NULL, "%s", why);
    d.pid = 4242;
    d.host_id = me ^ 1;
    cr_assert_not(pd_xfer_ipc_reachable(&d, me, (uint32_t)getpid(), why, sizeof(why)));
    cr_assert(strstr(why, "another host") != NULL, "%s", why);
    d.host_id = 0;
    cr_assert_not(pd_xfer_ipc_reachable(&d, me, (uint32_t)getpid(), NULL, 0));
}

Test(xfer_ipc, plan_places_each_block_and_merges_runs_consecutive_on_both_sides)
{
    pd_kv_layout_t dl = L;
    dl.n_blocks = 64; /* the receiver's pool is larger: offsets differ from the sender's */
    const uint64_t bl = pd_kv_block_layer_bytes(&L);
    /* 3,4,5 -> 10,11,12 merge; 6 -> 20 breaks the run on the remote side; 9 -> 21 breaks it
     * locally; 10 -> 22 merges with 9 -> 21. */
    const uint32_t src[] = {3, 4, 5, 6, 9, 10};
    const uint32_t dst[] = {10, 11, 12, 20, 21, 22};
    pd_xfer_seg_t segs[6];
    size_t n = 99;
    cr_assert_eq(
        pd_xfer_ipc_plan_layer(&L, &dl, pd_kv_pool_bytes(&dl), 2, src, dst, 6, NULL, 0, segs, &n),
        PD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(segs[0].local_offset, pd_kv_offset(&L, 2, 3));
    cr_assert_eq(segs[0].remote_offset, pd_kv_offset(&dl, 2, 10));
    cr_assert_eq(segs[0].bytes, 3 * bl);
    cr_assert_eq(segs[1].local_offset, pd_kv_offset(&L, 2, 6));
    cr_assert_eq(segs[1].remote_offset, pd_kv_offset(&dl, 2, 20));
    cr_assert_eq(segs[1].bytes, bl);
    cr_assert_eq(segs[2].local_offset, pd_kv_offset(&L, 2, 9));
    cr_assert_eq(segs[2].remote_offset, pd_kv_offset(&dl, 2, 21));
    cr_assert_eq(segs[2].bytes, 2 * bl);
}

Test(xfer_ipc, plan_refuses_blocks_outside_the_pools_or_the_reserved_ranges)
{
    pd_xfer_seg_t segs[2];
    size_t n = 0;
    const uint32_t ok[] = {1}, far[] = {32};
    const uint64_t pool = pd_kv_pool_bytes(&L);
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 0, far, ok, 1, NULL, 0, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 0, ok, far, 1, NULL, 0, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 4, ok, ok, 1, NULL, 0, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    /* The peer's region is smaller than its layout claims. */
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool - 1, 0, ok, ok, 1, NULL, 0, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    /* Reserved: block 1 of layer 0 only; block 2 of layer 0 and block 1 of layer 1 are not. */
    const pd_xfer_range_t allowed = {pd_kv_offset(&L, 0, 1), pd_kv_block_layer_bytes(&L)};
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 0, ok, ok, 1, &allowed, 1, segs, &n), PD_OK);
    cr_assert_eq(n, 1);
    const uint32_t two[] = {2};
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 0, ok, two, 1, &allowed, 1, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, 1, ok, ok, 1, &allowed, 1, segs, &n),
                 PD_ERR_OUT_OF_RANGE);
    /* Another block shape. */
    pd_kv_layout_t other = L;
    other.head_dim = 16;
    cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &other, pd_kv_pool_bytes(&other), 0, ok, ok, 1, NULL, 0,
                                        segs, &n),
                 PD_ERR_INVALID_PARAM);
}

/* Host-memory stand-in for a stream: copies happen when the test releases events, in
 * order, as a GPU stream would complete them. */
typedef struct fake_stream {
    struct {
        void *dst;
        const void *src;
        size_t bytes;
    } q[64];
    uint32_t n_q, n_run;
    uint32_t event_at[64]; /* queue length when event i was recorded */
    uint32_t n_events;
    uint32_t released; /* events allowed to complete */
    int fail_copy_at;  /* copy index that fails (-1: none) */
} fake_stream_t;

static pd_status_t fake_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    fake_stream_t *f = ctx;
    if ((int)f->n_q == f->fail_copy_at)
        return PD_ERR_IO;
    f->q[f->n_q].dst = dst;
    f->q[f->n_q].src = src;
    f->q[f->n_q].bytes = bytes;
    f->n_q++;
    return PD_OK;
}

static pd_status_t fake_record(void *ctx, uint32_t *event_p)
{
    fake_stream_t *f = ctx;
    f->event_at[f->n_events] = f->n_q;
    *event_p = f->n_events++;
    return PD_OK;
}

static pd_status_t fake_query(void *ctx, uint32_t event)
{
    fake_stream_t *f = ctx;
    if (event >= f->released)
        return PD_INPROGRESS;
    while (f->n_run < f->event_at[event]) {
        memcpy(f->q[f->n_run].dst, f->q[f->n_run].src, f->q[f->n_run].bytes);
        f->n_run++;
    }
    return PD_OK;
}

Test(xfer_ipc, notification_waits_for_every_layer_and_the_bytes_are_there_when_it_goes)
{
    const uint32_t n_layers = L.n_layers;
    const size_t pool = pd_kv_pool_bytes(&L);
    unsigned char *src = malloc(pool), *dst = calloc(1, pool);
    for (size_t i = 0; i < pool; i++)
        src[i] = (unsigned char)(i * 31 + 7);
    fake_stream_t f;
    memset(&f, 0, sizeof(f));
    f.fail_copy_at = -1;
    const pd_xfer_ipc_dev_ops_t ops = {fake_copy, fake_record, fake_query, &f};
    pd_xfer_ipc_send_t s;
    cr_assert_eq(pd_xfer_ipc_send_init(&s, &ops, src, dst, n_layers), PD_OK);
    const uint32_t sb[] = {0, 1, 7}, db[] = {5, 6, 30};
    for (uint32_t l = 0; l < n_layers; l++) {
        pd_xfer_seg_t segs[3];
        size_t n;
        cr_assert_eq(pd_xfer_ipc_plan_layer(&L, &L, pool, l, sb, db, 3, NULL, 0, segs, &n), PD_OK);
        cr_assert_eq(pd_xfer_ipc_send_post(&s, segs, n), PD_OK);
        /* Earlier layers may complete while later ones are posted: still no notification. */
        f.released = l + 1;
        cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_INPROGRESS);
    }
    cr_assert_eq(s.n_done, n_layers);
    /* Every copy done but not finished: the sender may still post; no notification. */
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_INPROGRESS);
    cr_assert_eq(pd_xfer_ipc_send_finish(&s), PD_OK);
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_OK);
    cr_assert_eq(s.bytes_posted, (uint64_t)n_layers * 3 * pd_kv_block_layer_bytes(&L));
    const size_t bl = pd_kv_block_layer_bytes(&L);
    for (uint32_t l = 0; l < n_layers; l++)
        for (int i = 0; i < 3; i++)
            cr_assert_eq(
                memcmp(dst + pd_kv_offset(&L, l, db[i]), src + pd_kv_offset(&L, l, sb[i]), bl), 0);
    /* Nothing else was written. */
    size_t nonzero = 0;
    for (size_t i = 0; i < pool; i++)
        nonzero += dst[i] != 0;
    cr_assert_leq(nonzero, (size_t)n_layers * 3 * bl);
    cr_assert_gt(nonzero, (size_t)n_layers * 3 * bl * 9 / 10);
    free(src);
    free(dst);
}

Test(xfer_ipc, finish_waits_for_the_last_layer_event_even_when_called_early)
{
    const size_t pool = pd_kv_pool_bytes(&L);
    unsigned char *src = calloc(1, pool), *dst = calloc(1, pool);
    fake_stream_t f;
    memset(&f, 0, sizeof(f));
    f.fail_copy_at = -1;
    const pd_xfer_ipc_dev_ops_t ops = {fake_copy, fake_record, fake_query, &f};
    pd_xfer_ipc_send_t s;
    cr_assert_eq(pd_xfer_ipc_send_init(&s, &ops, src, dst, 2), PD_OK);
    pd_xfer_seg_t seg = {0, 0, 64};
    cr_assert_eq(pd_xfer_ipc_send_post(&s, &seg, 1), PD_OK);
    /* Finishing before every layer was posted is a caller error that fails the transfer. */
    pd_xfer_ipc_send_t s2 = s;
    cr_assert_eq(pd_xfer_ipc_send_finish(&s2), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_xfer_ipc_send_progress(&s2), PD_ERR_INVALID_PARAM);
    cr_assert_eq(pd_xfer_ipc_send_post(&s, &seg, 1), PD_OK);
    cr_assert_eq(pd_xfer_ipc_send_finish(&s), PD_OK);
    f.released = 1; /* layer 0 done, layer 1 not */
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_INPROGRESS);
    f.released = 2;
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_OK);
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_OK);
    /* A layer beyond n_layers is refused. */
    cr_assert_neq(pd_xfer_ipc_send_post(&s, &seg, 1), PD_INPROGRESS);
    free(src);
    free(dst);
}

Test(xfer_ipc, a_failed_copy_fails_the_transfer_and_it_never_notifies)
{
    const size_t pool = pd_kv_pool_bytes(&L);
    unsigned char *src = calloc(1, pool), *dst = calloc(1, pool);
    fake_stream_t f;
    memset(&f, 0, sizeof(f));
    f.fail_copy_at = 1;
    const pd_xfer_ipc_dev_ops_t ops = {fake_copy, fake_record, fake_query, &f};
    pd_xfer_ipc_send_t s;
    cr_assert_eq(pd_xfer_ipc_send_init(&s, &ops, src, dst, 2), PD_OK);
    pd_xfer_seg_t seg = {0, 0, 64};
    cr_assert_eq(pd_xfer_ipc_send_post(&s, &seg, 1), PD_OK);
    cr_assert_eq(pd_xfer_ipc_send_post(&s, &seg, 1), PD_ERR_IO);
    cr_assert_eq(pd_xfer_ipc_send_finish(&s), PD_ERR_IO);
    f.released = 2;
    cr_assert_eq(pd_xfer_ipc_send_progress(&s), PD_ERR_IO);
    free(src);
    free(dst);
}
