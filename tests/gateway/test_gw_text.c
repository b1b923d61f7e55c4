/* The gateway's text path: UTF-8 that JSON can carry, characters split across tokens,
 * stop strings split across tokens, and held-back text released at the end. */
#include "gw_int.h"

#include <criterion/criterion.h>
#include <string.h>

static pd_tokenizer_t *tok;

static void setup(void)
{
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
}

static void teardown(void)
{
    pd_tokenizer_destroy(&tok);
}

TestSuite(gw_text, .init = setup, .fini = teardown);

static void sanitize_eq(const char *in, size_t n, bool partial, const char *want, size_t used)
{
    pd_gw_buf_t out = {0};
    size_t got_used = pd_gw_utf8_sanitize(in, n, partial, &out);
    cr_assert_eq(got_used, used);
    cr_assert_eq(out.len, strlen(want), "got '%s' want '%s'", out.data ? out.data : "", want);
    cr_assert(out.len == 0 || memcmp(pd_gw_buf_data(&out), want, out.len) == 0);
    pd_gw_buf_cleanup(&out);
}

Test(gw_text, utf8_valid_invalid_and_partial)
{
    sanitize_eq("abc", 3, true, "abc", 3);
    sanitize_eq("\xC3\xA9", 2, true, "\xC3\xA9", 2);                    /* é */
    sanitize_eq("a\xE2\x82", 3, true, "a", 1);                          /* € cut: waits */
    sanitize_eq("a\xE2\x82", 3, false, "a\xEF\xBF\xBD\xEF\xBF\xBD", 3); /* at the end */
    sanitize_eq("\xFF"
                "b",
                2, true,
                "\xEF\xBF\xBD"
                "b",
                2);                                                  /* never valid */
    sanitize_eq("\xC0\xAF", 2, true, "\xEF\xBF\xBD\xEF\xBF\xBD", 2); /* overlong '/' */
    sanitize_eq("\xED\xA0\x80", 3, true, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 3); /* surrogate */
    sanitize_eq("\xF4\x90\x80\x80", 4, true, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD",
                4);                                                  /* > U+10FFFF */
    sanitize_eq("\xF0\x9F\x98\x80", 4, true, "\xF0\x9F\x98\x80", 4); /* 😀 */
}

/* Push the byte tokens of s (3 + byte) one at a time; returns the released text. */
static char *push_all(pd_gw_text_t *t, const char *s, size_t n, int *stopped_at)
{
    pd_gw_buf_t out = {0};
    *stopped_at = -1;
    for (size_t i = 0; i < n; i++) {
        if (pd_gw_text_push(t, 3 + (unsigned char)s[i], &out)) {
            *stopped_at = (int)i;
            break;
        }
    }
    if (*stopped_at < 0)
        pd_gw_text_finish(t, &out);
    char *r = strndup(out.data ? pd_gw_buf_data(&out) : "", out.len);
    pd_gw_buf_cleanup(&out);
    return r;
}

Test(gw_text, characters_split_across_tokens_are_whole)
{
    pd_gw_text_t t;
    pd_gw_text_init(&t, tok, 1);
    pd_gw_buf_t out = {0};
    /* "€" is three byte tokens: nothing is released until the third. */
    cr_assert(!pd_gw_text_push(&t, 3 + 0xE2, &out));
    cr_assert(!pd_gw_text_push(&t, 3 + 0x82, &out));
    cr_assert_eq(out.len, 0);
    cr_assert(!pd_gw_text_push(&t, 3 + 0xAC, &out));
    cr_assert_eq(out.len, 3);
    cr_assert(memcmp(pd_gw_buf_data(&out), "\xE2\x82\xAC", 3) == 0);
    /* EOS and BOS have no text. */
    cr_assert(!pd_gw_text_push(&t, 2, &out));
    cr_assert_eq(out.len, 3);
    pd_gw_buf_cleanup(&out);
    pd_gw_text_cleanup(&t);
}

Test(gw_text, stop_string_across_tokens)
{
    pd_gw_text_t t;
    pd_gw_text_init(&t, tok, 1);
    cr_assert_eq(pd_gw_text_add_stop(&t, "END", 3), PD_OK);
    cr_assert_eq(pd_gw_text_add_stop(&t, "xyz!", 4), PD_OK);
    int at;
    char *s = push_all(&t, "hello ENDING", 12, &at);
    cr_assert_str_eq(s, "hello ");
    cr_assert_eq(at, 8); /* the D completed it */
    cr_assert_eq(t.stop_index, 0);
    free(s);
    pd_gw_text_cleanup(&t);

    /* A near miss is released whole at the end. */
    pd_gw_text_init(&t, tok, 1);
    cr_assert_eq(pd_gw_text_add_stop(&t, "END", 3), PD_OK);
    s = push_all(&t, "the EN", 6, &at);
    cr_assert_eq(at, -1);
    cr_assert_str_eq(s, "the EN");
    free(s);
    pd_gw_text_cleanup(&t);
}

Test(gw_text, stop_limits)
{
    pd_gw_text_t t;
    pd_gw_text_init(&t, tok, 1);
    char big[PD_GW_MAX_STOP_BYTES + 1];
    memset(big, 'a', sizeof(big));
    cr_assert_eq(pd_gw_text_add_stop(&t, big, sizeof(big)), PD_ERR_LIMIT);
    for (int i = 0; i < PD_GW_MAX_STOPS; i++)
        cr_assert_eq(pd_gw_text_add_stop(&t, "ab", 2), PD_OK);
    cr_assert_eq(pd_gw_text_add_stop(&t, "ab", 2), PD_ERR_LIMIT);
    pd_gw_text_cleanup(&t);
}

Test(gw_text, leading_space_after_bos_follows_the_tokenizer)
{
    /* A llama2.c-style vocabulary drops the first piece's leading space after BOS. */
    pd_gw_text_t t;
    pd_gw_text_init(&t, tok, 1);
    int at;
    char *s = push_all(&t, " a", 2, &at);
    const char *piece;
    size_t len;
    cr_assert_eq(pd_tokenizer_piece(tok, 1, 3 + ' ', &piece, &len), PD_OK);
    cr_assert_eq(strlen(s), len + 1, "the gateway's text must follow pd_tokenizer_piece");
    free(s);
    pd_gw_text_cleanup(&t);
}
