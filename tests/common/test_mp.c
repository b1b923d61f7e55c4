#include "pd/mp.h"

#include <criterion/criterion.h>
#include <string.h>

static pd_status_t check(const void *buf, size_t len)
{
    return pd_mp_check(buf, len, &pd_mp_limits_default);
}

Test(mp, round_trips_a_request_map)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 4);
    pd_mp_put_str(&w, "type");
    pd_mp_put_str(&w, "generate");
    pd_mp_put_str(&w, "max_tokens");
    pd_mp_put_u64(&w, 32);
    pd_mp_put_str(&w, "temperature");
    pd_mp_put_f64(&w, 0.5);
    pd_mp_put_str(&w, "tokens");
    pd_mp_put_array(&w, 3);
    for (int i = 0; i < 3; i++)
        pd_mp_put_i64(&w, 10 + i);

    pd_mp_doc_t doc;
    cr_assert_eq(
        pd_mp_doc_parse(&doc, pd_mp_writer_data(&w), pd_mp_writer_size(&w), &pd_mp_limits_default),
        PD_OK);
    char type[16];
    cr_assert_eq(pd_mp_get_strcpy(&doc.root, "type", type, sizeof(type)), PD_OK);
    cr_assert_str_eq(type, "generate");
    uint64_t max_tokens = 0;
    cr_assert_eq(pd_mp_get_u64(&doc.root, "max_tokens", &max_tokens), PD_OK);
    cr_assert_eq(max_tokens, 32);
    double t = 0;
    cr_assert_eq(pd_mp_get_f64(&doc.root, "temperature", &t), PD_OK);
    cr_assert_float_eq(t, 0.5, 1e-12);
    const msgpack_object_array *arr;
    cr_assert_eq(pd_mp_get_array(&doc.root, "tokens", &arr), PD_OK);
    cr_assert_eq(arr->size, 3);
    cr_assert_eq(arr->ptr[2].via.u64, 12);
    /* Wrong type and absent keys are told apart. */
    cr_assert_eq(pd_mp_get_u64(&doc.root, "type", &max_tokens), PD_ERR_PROTO);
    cr_assert_eq(pd_mp_get_u64(&doc.root, "nope", &max_tokens), PD_ERR_NOT_FOUND);
    pd_mp_doc_cleanup(&doc);
    pd_mp_writer_cleanup(&w);
}

Test(mp, rejects_array32_count_beyond_bytes_left)
{
    /* The classic: dd ff 00 00 00 asks msgpack-c for ~4G objects (~96 GB). */
    const unsigned char bomb[] = {0xdd, 0xff, 0x00, 0x00, 0x00};
    pd_mp_limits_t big = pd_mp_limits_default;
    big.max_array_len = UINT32_MAX;
    cr_assert_eq(pd_mp_check(bomb, sizeof(bomb), &big), PD_ERR_PROTO);
    cr_assert_eq(check(bomb, sizeof(bomb)), PD_ERR_LIMIT);
    pd_mp_doc_t doc;
    cr_assert_neq(pd_mp_doc_parse(&doc, bomb, sizeof(bomb), &big), PD_OK);
}

Test(mp, rejects_truncated_trailing_and_reserved)
{
    const unsigned char trunc_str[] = {0xa5, 'a', 'b'};
    cr_assert_eq(check(trunc_str, sizeof(trunc_str)), PD_ERR_PROTO);
    const unsigned char trailing[] = {0x01, 0x02};
    cr_assert_eq(check(trailing, sizeof(trailing)), PD_ERR_PROTO);
    const unsigned char reserved[] = {0xc1};
    cr_assert_eq(check(reserved, sizeof(reserved)), PD_ERR_PROTO);
    const unsigned char ext[] = {0xd4, 0x01, 0x00};
    cr_assert_eq(check(ext, sizeof(ext)), PD_ERR_PROTO);
    const unsigned char map_short[] = {0x81, 0xa1, 'k'};
    cr_assert_eq(check(map_short, sizeof(map_short)), PD_ERR_PROTO);
    cr_assert_eq(check(NULL, 0), PD_ERR_PROTO);
}

Test(mp, enforces_depth_string_and_frame_limits)
{
    unsigned char deep[40];
    memset(deep, 0x91, sizeof(deep) - 1); /* 39 nested one-element arrays */
    deep[sizeof(deep) - 1] = 0x00;
    cr_assert_eq(check(deep, sizeof(deep)), PD_ERR_LIMIT);
    pd_mp_limits_t lim = pd_mp_limits_default;
    lim.max_depth = 64;
    cr_assert_eq(pd_mp_check(deep, sizeof(deep), &lim), PD_OK);

    lim = pd_mp_limits_default;
    lim.max_str_bytes = 3;
    const unsigned char s4[] = {0xa4, 'a', 'b', 'c', 'd'};
    cr_assert_eq(pd_mp_check(s4, sizeof(s4), &lim), PD_ERR_LIMIT);
    lim = pd_mp_limits_default;
    lim.max_frame_bytes = 4;
    cr_assert_eq(pd_mp_check(s4, sizeof(s4), &lim), PD_ERR_LIMIT);
}

Test(mp, every_prefix_of_a_valid_frame_is_rejected)
{
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    pd_mp_put_map(&w, 2);
    pd_mp_put_str(&w, "bin");
    unsigned char payload[300];
    memset(payload, 7, sizeof(payload));
    pd_mp_put_bin(&w, payload, sizeof(payload));
    pd_mp_put_str(&w, "n");
    pd_mp_put_u64(&w, 1ull << 40);
    size_t n = pd_mp_writer_size(&w);
    cr_assert_eq(check(pd_mp_writer_data(&w), n), PD_OK);
    for (size_t cut = 1; cut < n; cut++)
        cr_assert_neq(check(pd_mp_writer_data(&w), cut), PD_OK, "prefix %zu accepted", cut);
    pd_mp_writer_cleanup(&w);
}
