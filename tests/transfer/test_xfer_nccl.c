/* The NCCL backend's host-side half (pd/xfer_nccl.h) on every machine: descriptor round
 * trip and checks, pair planning (one GPU is refused, as NCCL does), frames that round
 * trip and frames a receiver refuses before any byte lands. Its GPU run needs two GPUs. */
#include "pd/xfer_nccl.h"

#include <criterion/criterion.h>
#include <string.h>

static const pd_kv_layout_t L = {4, 2, 8, 16, 32};

static pd_xfer_nccl_desc_t sample(void)
{
    pd_xfer_nccl_desc_t d;
    memset(&d, 0, sizeof(d));
    for (int i = 0; i < PD_XFER_NCCL_UID_BYTES; i++)
        d.uid[i] = (uint8_t)(255 - i);
    for (int i = 0; i < PD_XFER_NCCL_UUID_BYTES; i++)
        d.device_uuid[i] = (uint8_t)(i + 1);
    d.layout = L;
    d.pool_bytes = pd_kv_pool_bytes(&L);
    return d;
}

static pd_status_t round_trip(const pd_xfer_nccl_desc_t *d, pd_xfer_nccl_desc_t *out)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_xfer_nccl_desc_write(d, &w);
    pd_mp_doc_t doc;
    cr_assert_eq(
        pd_mp_doc_parse(&doc, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &pd_mp_limits_default),
        PD_OK);
    pd_status_t st = pd_xfer_nccl_desc_read(&doc.root, out);
    pd_mp_doc_cleanup(&doc);
    pd_mp_writer_cleanup(&w);
    return st;
}

Test(xfer_nccl, descriptor_round_trips_and_inconsistent_ones_are_refused)
{
    pd_xfer_nccl_desc_t d = sample(), e;
    cr_assert_eq(round_trip(&d, &e), PD_OK);
    cr_assert_eq(memcmp(&d, &e, sizeof(d)), 0);
    d.pool_bytes += 4;
    cr_assert_eq(round_trip(&d, &e), PD_ERR_PROTO);
    d = sample();
    d.layout.head_dim = 0;
    cr_assert_eq(round_trip(&d, &e), PD_ERR_PROTO);
}

Test(xfer_nccl, a_pair_on_one_gpu_is_refused_with_the_reason)
{
    pd_xfer_nccl_desc_t d = sample();
    pd_xfer_nccl_pair_t pair = {-1, -1, -1};
    char why[160] = "";
    cr_assert_eq(pd_xfer_nccl_pair_plan(d.device_uuid, &d, &pair, why, sizeof(why)),
                 PD_ERR_UNSUPPORTED);
    cr_assert(strstr(why, "one GPU") != NULL, "%s", why);
    cr_assert_eq(pair.rank, -1);
    uint8_t other[PD_XFER_NCCL_UUID_BYTES];
    memcpy(other, d.device_uuid, sizeof(other));
    other[15] ^= 0x80;
    cr_assert_eq(pd_xfer_nccl_pair_plan(other, &d, &pair, why, sizeof(why)), PD_OK);
    cr_assert_eq(pair.n_ranks, 2);
    cr_assert_eq(pair.rank, 0);
    cr_assert_eq(pair.peer, 1);
}

static const pd_xfer_range_t reserved[] = {{0, 4096}, {65536, 8192}};

static pd_xfer_nccl_expect_t expect(void)
{
    return (pd_xfer_nccl_expect_t){77, reserved, 2, pd_kv_pool_bytes(&L), L.n_layers};
}

Test(xfer_nccl, frame_round_trips)
{
    const pd_xfer_seg_t segs[] = {{123, 0, 1024}, {456, 65536 + 4096, 4096}, {0, 1024, 3072}};
    unsigned char buf[PD_XFER_NCCL_FRAME_MAX_BYTES];
    size_t len = 0;
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 3, segs, 3, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(len, pd_xfer_nccl_frame_bytes(3));
    /* Little-endian magic "PDNC" first. */
    cr_assert_eq(memcmp(buf, "PDNC", 4), 0);
    pd_xfer_nccl_expect_t e = expect();
    pd_xfer_seg_t out[8];
    size_t n = 0;
    uint32_t layer = 0;
    uint64_t bytes = 0;
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes), PD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(layer, 3);
    cr_assert_eq(bytes, 1024 + 4096 + 3072);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(out[i].remote_offset, segs[i].remote_offset);
        cr_assert_eq(out[i].bytes, segs[i].bytes);
    }
    /* Too small a buffer to pack into. */
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 3, segs, 3, buf, len - 1, &len), PD_ERR_LIMIT);
}

Test(xfer_nccl, frames_outside_the_reservation_or_malformed_are_refused)
{
    unsigned char buf[PD_XFER_NCCL_FRAME_MAX_BYTES];
    size_t len = 0, n = 99;
    uint32_t layer = 99;
    uint64_t bytes = 99;
    pd_xfer_seg_t out[8];
    pd_xfer_nccl_expect_t e = expect();
    /* Straddles the end of a reserved range. */
    const pd_xfer_seg_t over = {0, 4096 - 16, 32};
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 0, &over, 1, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes),
                 PD_ERR_OUT_OF_RANGE);
    /* Offset + bytes wraps around. */
    const pd_xfer_seg_t wrap = {0, UINT64_MAX - 8, 64};
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 0, &wrap, 1, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes),
                 PD_ERR_OUT_OF_RANGE);
    /* Another transfer's frame; a layer the pool does not have. */
    const pd_xfer_seg_t ok = {0, 0, 64};
    cr_assert_eq(pd_xfer_nccl_frame_pack(78, 0, &ok, 1, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes),
                 PD_ERR_NOT_FOUND);
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 4, &ok, 1, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes),
                 PD_ERR_OUT_OF_RANGE);
    /* Truncated, a segment count that disagrees with the length, bad magic, bad version. */
    cr_assert_eq(pd_xfer_nccl_frame_pack(77, 0, &ok, 1, buf, sizeof(buf), &len), PD_OK);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len - 1, &e, out, 8, &n, &layer, &bytes),
                 PD_ERR_PROTO);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, 10, &e, out, 8, &n, &layer, &bytes), PD_ERR_PROTO);
    buf[20] = 2;
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes), PD_ERR_PROTO);
    buf[20] = 1;
    buf[0] ^= 1;
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes), PD_ERR_PROTO);
    buf[0] ^= 1;
    buf[4] = 9;
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes), PD_ERR_PROTO);
    buf[4] = 1;
    /* More segments than the caller has room for. */
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 0, &n, &layer, &bytes), PD_ERR_LIMIT);
    /* Nothing was set by any refusal. */
    cr_assert_eq(n, 99);
    cr_assert_eq(layer, 99);
    cr_assert_eq(bytes, 99);
    cr_assert_eq(pd_xfer_nccl_frame_unpack(buf, len, &e, out, 8, &n, &layer, &bytes), PD_OK);
    cr_assert_eq(n, 1);
}
