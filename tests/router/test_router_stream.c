/* The client stream as a strict reader sees it: pd-router with the byte tokenizer and a
 * fake decode worker that streams a script of byte tokens splitting characters. */
#include "fake_worker.h"

#include "pd/time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* Whether s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF), as a strict msgpack reader checks a str. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (len == 0 || i + len > n || (len == 2 && c < 0xc2))
            return false;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

Test(router_stream, text_fields_hold_whole_characters_and_bytes_hold_the_rest, .timeout = 30)
{
    /* "a", "é" in two tokens, an emoji in four, then half of "€": the byte tokenizer's
     * ids are byte + 3. */
    static const unsigned char raw[] = {'a', 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80, 0xe2, 0x82};
    enum { N = sizeof(raw) };
    static int32_t script[N];
    for (int i = 0; i < N; i++)
        script[i] = raw[i] + 3;

    fw_router_t r;
    const char *const extra[] = {"--tokenizer", "byte", NULL};
    fw_router_start(&r, extra);
    fw_cluster_t cl = {0};
    static fw_worker_t p0, d0;
    fw_worker_start(&cl, &p0, &r, "prefill-0", PD_PROTO_ROLE_PREFILL);
    fw_worker_start(&cl, &d0, &r, "decode-0", PD_PROTO_ROLE_DECODE);
    d0.script = script;
    d0.n_script = N;
    uint64_t until = pd_time_now_ms() + 5000;
    while (!(p0.registered && d0.registered) && pd_time_now_ms() < until)
        fw_cluster_pump(&cl, 10);
    cr_assert(p0.registered && d0.registered);

    pd_client_t *c = NULL;
    cr_assert_eq(pd_client_connect(r.client_ep, &c), PD_OK);
    int32_t prompt[8] = {1, 'h' + 3, 'i' + 3, ' ' + 3, 'y' + 3, 'o' + 3, 'u' + 3, ' ' + 3};
    fw_send_generate(c, "s", prompt, 8, N, "t");

    char text[256] = "", tail[64] = "";
    unsigned char bytes[64];
    size_t n_text = 0, n_bytes = 0;
    uint32_t n_tokens = 0, n_empty = 0;
    bool done = false;
    until = pd_time_now_ms() + 10000;
    while (!done && pd_time_now_ms() < until) {
        fw_cluster_pump(&cl, 2);
        pd_proto_msg_t m;
        while (pd_client_recv(c, 0, &m, NULL) == PD_OK) {
            if (m.type == PD_PROTO_TYPE_TOKEN) {
                const pd_proto_token_t *t = &m.u.token;
                cr_assert(utf8_valid((const unsigned char *)t->text, t->text_bytes),
                          "token %u: text is not whole UTF-8", t->index);
                cr_assert_lt(n_text + t->text_bytes, sizeof(text));
                memcpy(text + n_text, t->text, t->text_bytes);
                n_text += t->text_bytes;
                n_empty += t->text_bytes == 0;
                cr_assert_not_null(t->bytes, "token %u: no bytes", t->index);
                cr_assert_eq(t->n_bytes, 1);
                bytes[n_bytes++] = *(const unsigned char *)t->bytes;
                n_tokens++;
            } else if (m.type == PD_PROTO_TYPE_DONE) {
                done = true;
                cr_assert_not_null(m.u.done.text, "the held-back half character was dropped");
                cr_assert(utf8_valid((const unsigned char *)m.u.done.text, m.u.done.text_bytes));
                snprintf(tail, sizeof(tail), "%.*s", (int)m.u.done.text_bytes, m.u.done.text);
            } else if (m.type == PD_PROTO_TYPE_ERROR) {
                cr_assert_fail("error: %s", m.u.error.message);
            }
            pd_proto_msg_cleanup(&m);
        }
    }
    cr_assert(done, "no done in 10 s");
    cr_assert_eq(n_tokens, N);
    text[n_text] = '\0';
    /* Whole characters only: "a", "é", the emoji; six tokens ended inside a character. */
    cr_assert_str_eq(text, "a\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(n_empty, 6);
    /* The half "€" flushed at the end as U+FFFD, and every raw byte in the bin fields. */
    cr_assert(strncmp(tail, "\xef\xbf\xbd", 3) == 0, "done.text is '%s'", tail);
    cr_assert_eq(n_bytes, N);
    cr_assert_arr_eq(bytes, raw, N);

    pd_client_destroy(&c);
    fw_worker_stop(&p0);
    fw_worker_stop(&d0);
    fw_router_stop(&r);
}
