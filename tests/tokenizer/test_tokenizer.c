#include "pd/tokenizer.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A unique path under /tmp for a file a test writes. */
static void tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "/tmp/pd_test_tok_%d_%s", (int)getpid(), name);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Append one llama2.c record (score, len, bytes) to f. */
static void put_token(FILE *f, float score, const char *s)
{
    int32_t len = (int32_t)strlen(s);
    fwrite(&score, sizeof(score), 1, f);
    fwrite(&len, sizeof(len), 1, f);
    fwrite(s, 1, (size_t)len, f);
}

/* A small sentencepiece-style vocabulary: specials, 256 byte tokens, then pieces with
 * scores that rank the merges: "he" < "ll" < "hell" < "hello" < " " ... */
static void write_small_vocab(const char *path)
{
    static const struct {
        const char *s;
        float score;
    } pieces[] = {
        {" ", -1000.0f}, {"h", -10.0f},    {"e", -10.0f},     {"l", -10.0f}, {"o", -10.0f},
        {"w", -10.0f},   {"r", -10.0f},    {"d", -10.0f},     {"he", -5.0f}, {"ll", -4.0f},
        {"hell", -3.0f}, {"hello", -2.0f}, {" hello", -1.0f}, {"or", -6.0f}, {" w", -6.5f},
        {" wor", -5.5f}, {"ld", -6.0f},    {" world", -1.5f},
    };
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    int32_t max_len = 16;
    fwrite(&max_len, sizeof(max_len), 1, f);
    put_token(f, 0.0f, "<unk>");
    put_token(f, 0.0f, "\n<s>\n");
    put_token(f, 0.0f, "\n</s>\n");
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof(s), "<0x%02X>", b);
        put_token(f, 0.0f, s);
    }
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
        put_token(f, pieces[i].score, pieces[i].s);
    fclose(f);
}

static void round_trip(const pd_tokenizer_t *tok, const char *text)
{
    int32_t ids[1024];
    size_t n = 0;
    char out[4096];
    size_t out_len = 0;
    cr_assert_eq(pd_tokenizer_encode(tok, text, strlen(text), true, ids, 1024, &n), PD_OK);
    cr_assert_eq(ids[0], pd_tokenizer_bos(tok));
    cr_assert_eq(pd_tokenizer_decode(tok, ids, n, 0, out, sizeof(out), &out_len), PD_OK);
    cr_assert_eq(out_len, strlen(text), "'%s' -> '%s'", text, out);
    cr_assert_str_eq(out, text);
}

Test(tokenizer, byte_tokenizer_maps_bytes_to_3_plus_b)
{
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    cr_assert_eq(pd_tokenizer_vocab_size(tok), 259);
    cr_assert_eq(pd_tokenizer_bos(tok), 1);
    cr_assert_eq(pd_tokenizer_eos(tok), 2);
    int32_t ids[16];
    size_t n = 0;
    cr_assert_eq(pd_tokenizer_encode(tok, "hi \xff", 4, true, ids, 16, &n), PD_OK);
    cr_assert_eq(n, 5);
    int32_t want[] = {1, 3 + 'h', 3 + 'i', 3 + ' ', 3 + 0xff};
    cr_assert_arr_eq(ids, want, sizeof(want));
    /* No BOS, and the limit on ids is enforced. */
    cr_assert_eq(pd_tokenizer_encode(tok, "hi", 2, false, ids, 16, &n), PD_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 3 + 'h');
    cr_assert_eq(pd_tokenizer_encode(tok, "hello", 5, true, ids, 5, &n), PD_ERR_LIMIT);
    round_trip(tok, "Hello, world! \xc3\xa9t\xc3\xa9 \x01\x7f");
    pd_tokenizer_destroy(&tok);
    cr_assert_null(tok);
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer, decode_rejects_out_of_range_and_short_buffers)
{
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    char buf[4];
    size_t len;
    int32_t bad[] = {3 + 'a', 259};
    cr_assert_eq(pd_tokenizer_decode(tok, bad, 2, 0, buf, sizeof(buf), &len), PD_ERR_OUT_OF_RANGE);
    int32_t neg[] = {-1};
    cr_assert_eq(pd_tokenizer_decode(tok, neg, 1, 0, buf, sizeof(buf), &len), PD_ERR_OUT_OF_RANGE);
    int32_t many[] = {3 + 'a', 3 + 'b', 3 + 'c', 3 + 'd'};
    cr_assert_eq(pd_tokenizer_decode(tok, many, 4, 0, buf, sizeof(buf), &len), PD_ERR_LIMIT);
    cr_assert_eq(pd_tokenizer_decode(tok, many, 3, 0, buf, sizeof(buf), &len), PD_OK);
    cr_assert_str_eq(buf, "abc");
    const char *piece;
    cr_assert_eq(pd_tokenizer_piece(tok, -1, 2, &piece, &len), PD_OK);
    cr_assert_eq(len, 0);
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer, saved_byte_tokenizer_loads_back_identical)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof(path), "byte.bin");
    pd_tokenizer_t *tok = NULL, *back = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&tok), PD_OK);
    cr_assert_eq(pd_tokenizer_save(tok, path), PD_OK);
    cr_assert_eq(pd_tokenizer_load(path, 259, &back), PD_OK);
    cr_assert_eq(pd_tokenizer_vocab_size(back), 259);
    const char *text = "The quick brown fox \xe2\x82\xac";
    int32_t a[64], b[64];
    size_t na, nb;
    cr_assert_eq(pd_tokenizer_encode(tok, text, strlen(text), true, a, 64, &na), PD_OK);
    cr_assert_eq(pd_tokenizer_encode(back, text, strlen(text), true, b, 64, &nb), PD_OK);
    cr_assert_eq(na, nb);
    cr_assert_arr_eq(a, b, na * sizeof(int32_t));
    round_trip(back, text);
    pd_tokenizer_destroy(&tok);
    pd_tokenizer_destroy(&back);
    unlink(path);
}

Test(tokenizer, llama2c_format_merges_by_score)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof(path), "small.bin");
    write_small_vocab(path);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_OK);
    cr_assert_eq(pd_tokenizer_vocab_size(tok), 259 + 18);
    int32_t ids[64];
    size_t n = 0;
    cr_assert_eq(pd_tokenizer_encode(tok, "hello world", 11, true, ids, 64, &n), PD_OK);
    /* BOS, " hello", " world": the dummy prefix merges into the first word. */
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[1], 259 + 12);
    cr_assert_eq(ids[2], 259 + 17);
    round_trip(tok, "hello world");
    /* Unknown characters fall back to bytes and still round-trip. */
    round_trip(tok, "hello \xe2\x82\xac world!");
    /* Without BOS the dummy prefix space stays in the decoded text. */
    char out[64];
    cr_assert_eq(pd_tokenizer_encode(tok, "hello", 5, false, ids, 64, &n), PD_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(pd_tokenizer_decode(tok, ids, n, 0, out, sizeof(out), NULL), PD_OK);
    cr_assert_str_eq(out, " hello");
    /* The leading-space rule applies only after BOS. */
    const char *piece;
    size_t len;
    cr_assert_eq(pd_tokenizer_piece(tok, 1, 259 + 12, &piece, &len), PD_OK);
    cr_assert_eq(len, 5);
    cr_assert_eq(pd_tokenizer_piece(tok, 259 + 12, 259 + 12, &piece, &len), PD_OK);
    cr_assert_eq(len, 6);
    /* A model vocabulary larger than the file is a format error. */
    pd_tokenizer_t *bad = NULL;
    cr_assert_eq(pd_tokenizer_load(path, 1000, &bad), PD_ERR_FORMAT);
    cr_assert_null(bad);
    pd_tokenizer_destroy(&tok);
    unlink(path);
}

Test(tokenizer, rejects_files_of_the_wrong_format)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof(path), "bad.bin");
    pd_tokenizer_t *tok = NULL;

    const char json[] = "{\"model\": {\"type\": \"BPE\"}}";
    write_bytes(path, json, sizeof(json) - 1);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    write_bytes(path, "ab", 2);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    write_bytes(path, "", 0);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);

    /* A valid file cut in the middle of a record. */
    pd_tokenizer_t *byte = NULL;
    cr_assert_eq(pd_tokenizer_create_byte(&byte), PD_OK);
    cr_assert_eq(pd_tokenizer_save(byte, path), PD_OK);
    pd_tokenizer_destroy(&byte);
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    write_bytes(path, buf, len - 3);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    /* A negative token length. */
    int32_t neg = -5;
    memcpy(buf + 4 + 4, &neg, 4);
    write_bytes(path, buf, len);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    /* A NaN score. */
    cr_assert_eq(pd_tokenizer_create_byte(&byte), PD_OK);
    cr_assert_eq(pd_tokenizer_save(byte, path), PD_OK);
    pd_tokenizer_destroy(&byte);
    f = fopen(path, "rb");
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    uint32_t nan_bits = 0x7fc00000u;
    memcpy(buf + 4, &nan_bits, 4);
    write_bytes(path, buf, len);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    /* Too few tokens to hold the byte fallback range. */
    uint32_t zero = 0;
    memcpy(buf + 4, &zero, 4);
    write_bytes(path, buf, 4 + 3 * 8 + 5 + 5 + 6);
    cr_assert_eq(pd_tokenizer_load(path, 0, &tok), PD_ERR_FORMAT);
    cr_assert_null(tok);
    cr_assert_eq(pd_tokenizer_load("/nonexistent/tokenizer.bin", 0, &tok), PD_ERR_NOT_FOUND);
    cr_assert_eq(pd_tokenizer_load("/tmp", 0, &tok), PD_ERR_IO);
    unlink(path);
}

Test(tokenizer, real_llama2c_tokenizer_encodes_english)
{
    const char *src = getenv("PD_SOURCE_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/../shared/data/llama2c_tokenizer.bin",
             src != NULL ? src : ".");
    if (access(path, R_OK) != 0)
        cr_skip("llama2c_tokenizer.bin not present at %s", path);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load(path, 32000, &tok), PD_OK);
    cr_assert_eq(pd_tokenizer_vocab_size(tok), 32000);
    const char *text = "hello world";
    int32_t ids[64];
    size_t n = 0;
    cr_assert_eq(pd_tokenizer_encode(tok, text, strlen(text), true, ids, 64, &n), PD_OK);
    /* Llama's vocabulary has whole-word pieces: BOS, " hello", " world". */
    cr_assert_eq(n, 3, "got %zu tokens", n);
    cr_assert_eq(ids[1], 22172);
    cr_assert_eq(ids[2], 3186);
    round_trip(tok, text);
    const char *para = "The quick brown fox jumps over the lazy dog. It was a sunny day, "
                       "and the children played in the park until the evening came.";
    cr_assert_eq(pd_tokenizer_encode(tok, para, strlen(para), true, ids, 64, &n), PD_OK);
    cr_assert_lt(n, strlen(para) / 2, "%zu tokens for %zu bytes", n, strlen(para));
    round_trip(tok, para);
    /* Characters outside the vocabulary go through byte fallback and come back. */
    round_trip(tok, "emoji \xf0\x9f\x98\x80 and tabs\tand\nnewlines");
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer, mutated_files_never_crash)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof(path), "fuzz.bin");
    write_small_vocab(path);
    FILE *f = fopen(path, "rb");
    unsigned char orig[8192], buf[8192];
    size_t len = fread(orig, 1, sizeof(orig), f);
    fclose(f);
    cr_assert_lt(len, sizeof(orig));
    uint64_t s = 7;
    int n_ok = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(buf, orig, len);
        size_t n = len;
        for (int k = 0; k < 3; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[(s >> 33) % len] = (unsigned char)(s >> 17);
        }
        if (iter % 5 == 0)
            n = (size_t)((s >> 21) % len);
        write_bytes(path, buf, n);
        pd_tokenizer_t *tok = NULL;
        pd_status_t st = pd_tokenizer_load(path, 0, &tok);
        if (st != PD_OK) {
            cr_assert_eq(st, PD_ERR_FORMAT);
            cr_assert_null(tok);
            continue;
        }
        n_ok++;
        /* Whatever vocabulary loaded, encode and decode stay in bounds. */
        int32_t ids[64];
        size_t n_ids;
        char out[512];
        const char *text = "hello world \xe2\x82\xac";
        cr_assert_eq(pd_tokenizer_encode(tok, text, strlen(text), true, ids, 64, &n_ids), PD_OK);
        cr_assert_eq(pd_tokenizer_decode(tok, ids, n_ids, 0, out, sizeof(out), NULL), PD_OK);
        pd_tokenizer_destroy(&tok);
    }
    cr_assert_gt(n_ok, 0);
    unlink(path);
}

Test(tokenizer, long_prompts_encode_in_near_linear_time)
{
    const char *src = getenv("PD_SOURCE_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/../shared/data/llama2c_tokenizer.bin",
             src != NULL ? src : ".");
    if (access(path, R_OK) != 0)
        cr_skip("llama2c_tokenizer.bin not present at %s", path);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load(path, 32000, &tok), PD_OK);
    const char *para = "The quick brown fox jumps over the lazy dog. Once upon a time, "
                       "there was a little girl named Lily who loved to play outside. ";
    size_t plen = strlen(para), n = 0, cap = 64 * 1024;
    char *text = malloc(cap + 1);
    while (n + plen <= cap) {
        memcpy(text + n, para, plen);
        n += plen;
    }
    text[n] = '\0';
    int32_t *ids = malloc((n + 2) * sizeof(int32_t));
    size_t n_ids = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(pd_tokenizer_encode(tok, text, n, true, ids, n + 2, &n_ids), PD_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* The quadratic merge loop of llama2.c takes minutes here; this takes milliseconds. */
    cr_assert_lt(s, 5.0, "%.2f s for %zu bytes", s, n);
    cr_assert_lt(n_ids, n / 3);
    char *back = malloc(n + 1);
    size_t back_len = 0;
    cr_assert_eq(pd_tokenizer_decode(tok, ids, n_ids, 0, back, n + 1, &back_len), PD_OK);
    cr_assert_eq(back_len, n);
    cr_assert(memcmp(back, text, n) == 0);
    free(back);
    free(ids);
    free(text);
    pd_tokenizer_destroy(&tok);
}
