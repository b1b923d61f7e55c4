/* tokenizer.json from someone who means harm: truncated files, deep nesting, ids that
 * would size a huge table, vocabularies past the limits, merges of tokens that do not
 * exist, regular expressions that do not compile, components pdkv does not implement.
 * Each is refused with an error status in bounded time, never a crash or a hang. */
#include "pd/tokenizer.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A small valid byte-free BPE: a, b, ab and the merge "a b"; %s slots for the parts the
 * cases replace. */
static const char *const base_fmt =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,"
    " \"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"single_word\": false,"
    " \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": %s,"
    " \"post_processor\": null, \"decoder\": null,"
    " \"model\": {\"type\": \"%s\", \"dropout\": null, \"unk_token\": null,"
    " \"fuse_unk\": false, \"byte_fallback\": false,"
    " \"vocab\": %s, \"merges\": %s}}";

static const char *const ok_pre =
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Isolated\","
    " \"invert\": false}";
static const char *const ok_vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2, \" \": 4}";
static const char *const ok_merges = "[\"a b\"]";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *make(const char *pre, const char *type, const char *vocab, const char *merges)
{
    size_t n = strlen(base_fmt) + strlen(pre) + strlen(type) + strlen(vocab) + strlen(merges);
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    snprintf(s, n + 1, base_fmt, pre, type, vocab, merges);
    return s;
}

/* The longest a refusal may take: a few seconds, except where the input itself is tens of
 * megabytes (then the time is that of reading it once). */
static double max_s = 5.0;

/* Load text; it must load (ok) or be refused with an error, within max_s. */
static void expect(const char *what, const char *text, size_t len, bool ok)
{
    pd_tokenizer_t *tok = NULL;
    double t0 = now_s();
    pd_status_t st = pd_tokenizer_load_hf_mem(text, len, NULL, 0, what, &tok);
    double dt = now_s() - t0;
    if (ok) {
        cr_assert_eq(st, PD_OK, "%s: %s", what, pd_status_str(st));
        cr_assert_not_null(tok);
        pd_tokenizer_destroy(&tok);
    } else {
        cr_assert_neq(st, PD_OK, "%s: accepted", what);
        cr_assert_null(tok, "%s: a tokenizer came back with an error", what);
    }
    cr_assert_lt(dt, max_s, "%s: %.2f s", what, dt);
    cr_log_info("%s: %s in %.3f s", what, pd_status_str(st), dt);
}

Test(tokenizer_hostile, the_base_file_is_valid_and_encodes)
{
    char *s = make(ok_pre, "BPE", ok_vocab, ok_merges);
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_load_hf_mem(s, strlen(s), NULL, 0, "base", &tok), PD_OK);
    int32_t ids[8];
    size_t n = 0;
    cr_assert_eq(pd_tokenizer_encode(tok, "ab a", 4, 0, ids, 8, &n), PD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 2); /* "ab", merged */
    cr_assert_eq(ids[1], 4);
    cr_assert_eq(ids[2], 0);
    pd_tokenizer_destroy(&tok);
    free(s);
}

Test(tokenizer_hostile, every_truncation_is_refused, .timeout = 60)
{
    char *s = make(ok_pre, "BPE", ok_vocab, ok_merges);
    size_t len = strlen(s);
    for (size_t cut = 0; cut < len; cut++) {
        pd_tokenizer_t *tok = NULL;
        cr_assert_neq(pd_tokenizer_load_hf_mem(s, cut, NULL, 0, "truncated", &tok), PD_OK,
                      "accepted the first %zu of %zu bytes", cut, len);
        cr_assert_null(tok);
    }
    free(s);
}

Test(tokenizer_hostile, deep_nesting_is_refused_by_the_parser, .timeout = 30)
{
    size_t depth = 1000000;
    char *s = malloc(2 * depth + 64);
    size_t o = (size_t)sprintf(s, "{\"model\": ");
    memset(s + o, '[', depth);
    o += depth;
    memset(s + o, ']', depth);
    o += depth;
    s[o++] = '}';
    expect("a million nested arrays", s, o, false);
    /* nesting inside a component, within the parser's depth but meaningless */
    char pre[4096] = "";
    size_t k = 0;
    for (int i = 0; i < 30; i++)
        k += (size_t)sprintf(pre + k, "{\"type\": \"Sequence\", \"pretokenizers\": [");
    k += (size_t)sprintf(pre + k, "%s", ok_pre);
    for (int i = 0; i < 30; i++)
        k += (size_t)sprintf(pre + k, "]}");
    char *t = make(pre, "BPE", ok_vocab, ok_merges);
    expect("30 nested Sequence pre-tokenizers", t, strlen(t), false);
    free(t);
    free(s);
}

Test(tokenizer_hostile, ids_and_vocabularies_past_the_limits_are_refused, .timeout = 60)
{
    /* one id that would size a table of billions of entries */
    char *s = make(ok_pre, "BPE", "{\"a\": 0, \"b\": 1, \"ab\": 4000000000}", ok_merges);
    expect("an id of 4e9", s, strlen(s), false);
    free(s);
    s = make(ok_pre, "BPE", "{\"a\": 0, \"b\": 1, \"ab\": -1}", ok_merges);
    expect("a negative id", s, strlen(s), false);
    free(s);
    s = make(ok_pre, "BPE", "{\"a\": 0, \"b\": 1, \"ab\": 1}", ok_merges);
    expect("an id given twice", s, strlen(s), false);
    free(s);
    /* a token of 1 MiB */
    size_t big = 1u << 20;
    char *vocab = malloc(big + 64);
    size_t o = (size_t)sprintf(vocab, "{\"a\": 0, \"b\": 1, \"ab\": 2, \"");
    memset(vocab + o, 'x', big);
    o += big;
    sprintf(vocab + o, "\": 5}");
    s = make(ok_pre, "BPE", vocab, ok_merges);
    expect("a 1 MiB token", s, strlen(s), false);
    free(s);
    free(vocab);
    /* more entries than the limit of 4 Mi ids: 4.5 M short entries */
    size_t n = 4500000;
    vocab = malloc(n * 32 + 64);
    o = (size_t)sprintf(vocab, "{\"a\": 0, \"b\": 1, \"ab\": 2");
    for (size_t i = 3; i < n; i++)
        o += (size_t)sprintf(vocab + o, ", \"t%zx\": %zu", i, i + 2);
    vocab[o++] = '}';
    vocab[o] = '\0';
    s = make(ok_pre, "BPE", vocab, ok_merges);
    max_s = 60.0; /* 90 MB of JSON, parsed once on a shared machine */
    expect("4.5 million vocabulary entries", s, strlen(s), false);
    free(s);
    free(vocab);
}

Test(tokenizer_hostile, merges_of_unknown_tokens_and_bad_components_are_refused)
{
    struct {
        const char *what, *pre, *type, *vocab, *merges;
    } cases[] = {
        {"a merge naming an unknown token", ok_pre, "BPE", ok_vocab, "[\"a zz\"]"},
        {"a merge whose result is unknown", ok_pre, "BPE", "{\"a\": 0, \"b\": 1}", ok_merges},
        {"a merge that is not a pair", ok_pre, "BPE", ok_vocab, "[\"a b c\"]"},
        {"a merge that is a number", ok_pre, "BPE", ok_vocab, "[7]"},
        {"a regex that does not compile",
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed[\"}, \"behavior\": "
         "\"Isolated\", \"invert\": false}",
         "BPE", ok_vocab, ok_merges},
        {"a regex with a bad property",
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{NoSuchCategory}+\"}, "
         "\"behavior\": \"Isolated\", \"invert\": false}",
         "BPE", ok_vocab, ok_merges},
        {"an unknown pre-tokenizer", "{\"type\": \"Mystery\"}", "BPE", ok_vocab, ok_merges},
        {"a model type pdkv does not implement", ok_pre, "Unigram", ok_vocab, ok_merges},
        {"vocab that is a list", ok_pre, "BPE", "[\"a\", \"b\"]", ok_merges},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = make(cases[i].pre, cases[i].type, cases[i].vocab, cases[i].merges);
        expect(cases[i].what, s, strlen(s), false);
        free(s);
    }
}

Test(tokenizer_hostile, random_mutations_never_crash, .timeout = 60)
{
    char *s = make(ok_pre, "BPE", ok_vocab, ok_merges);
    size_t len = strlen(s);
    char *m = malloc(len + 1);
    uint64_t x = 88172645463325252ull;
    size_t n_ok = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(m, s, len + 1);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            m[x % len] = (char)(x >> 32);
        }
        pd_tokenizer_t *tok = NULL;
        if (pd_tokenizer_load_hf_mem(m, len, NULL, 0, "mutated", &tok) == PD_OK) {
            int32_t ids[64];
            size_t n = 0;
            /* A mutated file may load and still refuse this text: only crashes fail. */
            pd_status_ignore(pd_tokenizer_encode(tok, "ab ba <s> aab", 13, PD_TOKENIZE_ADD_SPECIAL,
                                                 ids, 64, &n));
            n_ok++;
            pd_tokenizer_destroy(&tok);
        }
    }
    cr_log_info("%zu of 3000 mutated files still loaded (and encoded)", n_ok);
    free(m);
    free(s);
}
