/* tokenizer.json normalizers and pre-tokenizers.
 *
 * Regular expressions are PCRE2 (UTF, Unicode properties, JIT). Hugging Face compiles
 * them with Oniguruma, whose \s is the Unicode White_Space property; PCRE2's \s differs
 * (it takes U+180E), so \s and \S are rewritten into that explicit set before compiling.
 * Unicode normalization and lowercasing are ICU's. */
#include "tok_int.h"

#include "pd/log.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <stdlib.h>
#include <string.h>

/* Every match is bounded: a hostile pattern fails with an error instead of running for
 * minutes. */
#define PD_TOK_RE_MATCH_LIMIT 10000000u

struct pd_tok_regex {
    pcre2_code *code;
    pcre2_match_context *mctx;
    pcre2_match_data *md; /* guarded by the tokenizer's encode lock */
    pthread_mutex_t lock;
};

/* Unicode White_Space, as a class body (Oniguruma's \s). */
static const char pd_tok_ws_class[] = "\\t\\n\\x{0b}\\f\\r\\x{20}\\x{85}\\x{a0}\\x{1680}"
                                      "\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
                                      "\\x{205f}\\x{3000}";

/* Rewrite \s and \S (outside classes) into the White_Space set. */
static pd_status_t pd_tok_regex_translate(const char *p, size_t n, pd_tok_buf_t *out)
{
    pd_status_t st = PD_OK;
    int depth = 0; /* inside [...] */
    for (size_t i = 0; i < n && st == PD_OK; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            if (e == 's') {
                if (depth > 0)
                    st = pd_tok_buf_put(out, pd_tok_ws_class, sizeof(pd_tok_ws_class) - 1);
                else if ((st = pd_tok_buf_put(out, "[", 1)) == PD_OK &&
                         (st = pd_tok_buf_put(out, pd_tok_ws_class, sizeof(pd_tok_ws_class) - 1)) ==
                             PD_OK)
                    st = pd_tok_buf_put(out, "]", 1);
            } else if (e == 'S' && depth == 0) {
                if ((st = pd_tok_buf_put(out, "[^", 2)) == PD_OK &&
                    (st = pd_tok_buf_put(out, pd_tok_ws_class, sizeof(pd_tok_ws_class) - 1)) ==
                        PD_OK)
                    st = pd_tok_buf_put(out, "]", 1);
            } else {
                st = pd_tok_buf_put(out, p + i, 2);
            }
            i++;
            continue;
        }
        if (c == '[') {
            /* POSIX [:name:] inside a class is not a nested class. */
            if (depth > 0 && i + 1 < n && p[i + 1] == ':') {
                const char *close = memmem(p + i + 2, n - i - 2, ":]", 2);
                if (close != NULL) {
                    size_t k = (size_t)(close - p) + 2;
                    st = pd_tok_buf_put(out, p + i, k - i);
                    i = k - 1;
                    continue;
                }
            }
            st = pd_tok_buf_put(out, "[", 1);
            depth++;
            /* A ']' right after '[' or '[^' is a literal. */
            if (i + 1 < n && p[i + 1] == '^' && st == PD_OK) {
                st = pd_tok_buf_put(out, "^", 1);
                i++;
            }
            if (i + 1 < n && p[i + 1] == ']' && st == PD_OK) {
                st = pd_tok_buf_put(out, "]", 1);
                i++;
            }
            continue;
        }
        if (c == ']' && depth > 0)
            depth--;
        st = pd_tok_buf_put(out, &c, 1);
    }
    return st;
}

pd_status_t pd_tok_regex_compile(const char *pattern, size_t len, bool literal, const char *what,
                                 pd_tok_regex_t **re_p)
{
    pd_tok_buf_t tr = {0};
    pd_status_t st;
    int err = 0;
    PCRE2_SIZE off = 0;
    if (len > PD_TOK_HF_MAX_PATTERN) {
        pd_log_error("%s: a pattern of %zu bytes, more than the %u allowed", what, len,
                     PD_TOK_HF_MAX_PATTERN);
        return PD_ERR_LIMIT;
    }
    pd_tok_regex_t *re = calloc(1, sizeof(*re));
    if (re == NULL)
        return PD_ERR_NO_MEMORY;
    pthread_mutex_init(&re->lock, NULL);
    if (literal)
        st = pd_tok_buf_put(&tr, pattern, len);
    else
        st = pd_tok_regex_translate(pattern, len, &tr);
    if (st != PD_OK)
        goto fail;
    re->code =
        pcre2_compile((PCRE2_SPTR)tr.p, tr.len,
                      PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &err, &off, NULL);
    if (re->code == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof(msg));
        pd_log_error("%s: the regex \"%.*s\" does not compile: %s at offset %zu", what,
                     (int)(len > 200 ? 200 : len), pattern, (const char *)msg, (size_t)off);
        st = PD_ERR_FORMAT;
        goto fail;
    }
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE); /* interpreter when JIT fails */
    re->mctx = pcre2_match_context_create(NULL);
    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (re->mctx == NULL || re->md == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto fail;
    }
    pcre2_set_match_limit(re->mctx, PD_TOK_RE_MATCH_LIMIT);
    pd_tok_buf_free(&tr);
    *re_p = re;
    return PD_OK;
fail:
    pd_tok_buf_free(&tr);
    pd_tok_regex_free(&re);
    return st;
}

void pd_tok_regex_free(pd_tok_regex_t **re_p)
{
    if (re_p == NULL || *re_p == NULL)
        return;
    pd_tok_regex_t *re = *re_p;
    pcre2_match_data_free(re->md);
    pcre2_match_context_free(re->mctx);
    pcre2_code_free(re->code);
    pthread_mutex_destroy(&re->lock);
    free(re);
    *re_p = NULL;
}

/* 1: a match in [*ms_p, *me_p); 0: none; PD_ERR_LIMIT: the match limit was hit. */
static int pd_tok_regex_exec(pd_tok_regex_t *re, pcre2_match_data *md, const char *s, size_t n,
                             size_t start, size_t *ms_p, size_t *me_p)
{
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, re->mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        pd_log_error("tokenizer: regex match failed: %s", (const char *)msg);
        return PD_ERR_LIMIT;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms_p = ov[0];
    *me_p = ov[1];
    return 1;
}

/* Matches of re over s as alternating (offset, is_match) segments covering s, the way
 * Hugging Face's Pattern::find_matches gives them (empty matches included, later
 * dropped). Calls emit for each segment. */
typedef pd_status_t (*pd_tok_seg_fn)(void *arg, size_t a, size_t b, bool is_match);

static pd_status_t pd_tok_regex_segments(pd_tok_regex_t *re, const char *s, size_t n,
                                         pd_tok_seg_fn emit, void *arg)
{
    pd_status_t st = PD_OK;
    pthread_mutex_t *lock = &re->lock;
    pcre2_match_data *md = re->md;
    pcre2_match_data *own = NULL;
    /* The shared match data is used when free; a concurrent caller makes its own. */
    if (pthread_mutex_trylock(lock) != 0) {
        lock = NULL;
        own = md = pcre2_match_data_create_from_pattern(re->code, NULL);
        if (md == NULL)
            return PD_ERR_NO_MEMORY;
    }
    size_t prev = 0, pos = 0;
    while (pos <= n) {
        size_t ms, me;
        int rc = pd_tok_regex_exec(re, md, s, n, pos, &ms, &me);
        if (rc < 0) {
            st = (pd_status_t)rc;
            break;
        }
        if (rc == 0)
            break;
        if (prev != ms && (st = emit(arg, prev, ms, false)) != PD_OK)
            break;
        if ((st = emit(arg, ms, me, true)) != PD_OK)
            break;
        prev = me;
        if (me > ms) {
            pos = me;
        } else {
            /* Empty match: step over one character. */
            if (ms >= n)
                break;
            size_t k = pd_tok_utf8_next((const unsigned char *)s + ms, n - ms, NULL);
            pos = ms + (k > 0 ? k : 1);
        }
    }
    if (st == PD_OK && prev != n)
        st = emit(arg, prev, n, false);
    if (lock != NULL)
        pthread_mutex_unlock(lock);
    pcre2_match_data_free(own);
    return st;
}

bool pd_tok_regex_find(pd_tok_regex_t *re, const char *s, size_t n, size_t start, size_t *ms_p,
                       size_t *me_p)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (md == NULL)
        return false;
    int rc = pd_tok_regex_exec(re, md, s, n, start, ms_p, me_p);
    pcre2_match_data_free(md);
    return rc == 1;
}

/* ---- scratch and pieces ---- */

char *pd_tok_scratch_alloc(pd_tok_scratch_t *s, size_t n)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **c = realloc(s->chunks, cap * sizeof(char *));
        if (c == NULL)
            return NULL;
        s->chunks = c;
        s->cap = cap;
    }
    char *p = malloc(n ? n : 1);
    if (p != NULL)
        s->chunks[s->n++] = p;
    return p;
}

void pd_tok_scratch_free(pd_tok_scratch_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->chunks[i]);
    free(s->chunks);
    s->chunks = NULL;
    s->n = s->cap = 0;
}

pd_status_t pd_tok_pieces_push(pd_tok_pieces_t *v, const char *p, size_t len, bool byte_level,
                               bool first)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        pd_tok_piece_t *n = realloc(v->p, cap * sizeof(*n));
        if (n == NULL)
            return PD_ERR_NO_MEMORY;
        v->p = n;
        v->cap = cap;
    }
    v->p[v->len++] = (pd_tok_piece_t){p, len, byte_level, first};
    return PD_OK;
}

/* ---- normalizers ---- */

static bool pd_tok_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Run an ICU transform of UTF-16 text: normalization or lowercasing. */
static pd_status_t pd_tok_icu(pd_tok_norm_kind_t kind, const char *s, size_t n,
                              pd_tok_scratch_t *scr, const char **out_p, size_t *out_len_p)
{
    UErrorCode err = U_ZERO_ERROR;
    int32_t n16 = 0;
    if (n > INT32_MAX / 4)
        return PD_ERR_LIMIT;
    UChar *src = malloc((n + 1) * sizeof(UChar));
    size_t cap16 = 4 * n + 16; /* NFKD expands at most 18x per char, but not in practice */
    UChar *dst = NULL;
    pd_status_t st = PD_ERR_NO_MEMORY;
    if (src == NULL)
        goto out;
    u_strFromUTF8(src, (int32_t)n + 1, &n16, s, (int32_t)n, &err);
    if (U_FAILURE(err)) {
        st = PD_ERR_FORMAT;
        goto out;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        free(dst);
        dst = malloc(cap16 * sizeof(UChar));
        if (dst == NULL)
            goto out;
        err = U_ZERO_ERROR;
        int32_t got;
        if (kind == PD_TOK_NORM_LOWERCASE) {
            got = u_strToLower(dst, (int32_t)cap16, src, n16, "", &err);
        } else {
            const UNormalizer2 *nz = kind == PD_TOK_NORM_NFC    ? unorm2_getNFCInstance(&err)
                                     : kind == PD_TOK_NORM_NFD  ? unorm2_getNFDInstance(&err)
                                     : kind == PD_TOK_NORM_NFKC ? unorm2_getNFKCInstance(&err)
                                                                : unorm2_getNFKDInstance(&err);
            if (U_FAILURE(err)) {
                st = PD_ERR_INTERNAL;
                goto out;
            }
            got = unorm2_normalize(nz, src, n16, dst, (int32_t)cap16, &err);
        }
        if (err == U_BUFFER_OVERFLOW_ERROR) {
            cap16 = (size_t)got + 16;
            continue;
        }
        if (U_FAILURE(err)) {
            st = PD_ERR_INTERNAL;
            goto out;
        }
        int32_t n8 = 0;
        err = U_ZERO_ERROR;
        u_strToUTF8(NULL, 0, &n8, dst, got, &err);
        char *o = pd_tok_scratch_alloc(scr, (size_t)n8 + 1);
        if (o == NULL)
            goto out;
        err = U_ZERO_ERROR;
        u_strToUTF8(o, n8 + 1, &n8, dst, got, &err);
        if (U_FAILURE(err)) {
            st = PD_ERR_INTERNAL;
            goto out;
        }
        *out_p = o;
        *out_len_p = (size_t)n8;
        st = PD_OK;
        goto out;
    }
    st = PD_ERR_INTERNAL;
out:
    free(src);
    free(dst);
    return st;
}

static bool pd_tok_is_white(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* Replace every occurrence of pat in s (literal, non-overlapping, left to right). */
static pd_status_t pd_tok_replace_str(const char *s, size_t n, const char *pat, size_t pat_len,
                                      const char *with, size_t with_len, pd_tok_scratch_t *scr,
                                      const char **out_p, size_t *out_len_p)
{
    size_t count = 0;
    if (pat_len == 0)
        return PD_OK;
    for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), pat, pat_len)) != NULL;
         p += pat_len)
        count++;
    if (count == 0) {
        *out_p = s;
        *out_len_p = n;
        return PD_OK;
    }
    size_t out_len = n - count * pat_len + count * with_len;
    char *o = pd_tok_scratch_alloc(scr, out_len + 1);
    if (o == NULL)
        return PD_ERR_NO_MEMORY;
    size_t w = 0;
    const char *p = s;
    for (const char *q; (q = memmem(p, (size_t)(s + n - p), pat, pat_len)) != NULL;
         p = q + pat_len) {
        memcpy(o + w, p, (size_t)(q - p));
        w += (size_t)(q - p);
        memcpy(o + w, with, with_len);
        w += with_len;
    }
    memcpy(o + w, p, (size_t)(s + n - p));
    w += (size_t)(s + n - p);
    *out_p = o;
    *out_len_p = w;
    return PD_OK;
}

typedef struct pd_tok_re_repl {
    const char *s;
    const char *with;
    size_t with_len;
    pd_tok_buf_t out;
} pd_tok_re_repl_t;

static pd_status_t pd_tok_re_repl_seg(void *arg, size_t a, size_t b, bool is_match)
{
    pd_tok_re_repl_t *r = arg;
    if (is_match)
        return pd_tok_buf_put(&r->out, r->with, r->with_len);
    return pd_tok_buf_put(&r->out, r->s + a, b - a);
}

static pd_status_t pd_tok_norm_one(const pd_tok_norm_t *nm, const char *s, size_t n,
                                   pd_tok_scratch_t *scr, const char **out_p, size_t *out_len_p)
{
    *out_p = s;
    *out_len_p = n;
    switch (nm->kind) {
    case PD_TOK_NORM_NFC:
    case PD_TOK_NORM_NFD:
    case PD_TOK_NORM_NFKC:
    case PD_TOK_NORM_NFKD:
    case PD_TOK_NORM_LOWERCASE:
        if (pd_tok_is_ascii(s, n)) {
            if (nm->kind != PD_TOK_NORM_LOWERCASE)
                return PD_OK;
            char *o = pd_tok_scratch_alloc(scr, n + 1);
            if (o == NULL)
                return PD_ERR_NO_MEMORY;
            for (size_t i = 0; i < n; i++)
                o[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
            *out_p = o;
            return PD_OK;
        }
        return pd_tok_icu(nm->kind, s, n, scr, out_p, out_len_p);
    case PD_TOK_NORM_PREPEND: {
        if (n == 0)
            return PD_OK;
        char *o = pd_tok_scratch_alloc(scr, nm->str_len + n + 1);
        if (o == NULL)
            return PD_ERR_NO_MEMORY;
        memcpy(o, nm->str, nm->str_len);
        memcpy(o + nm->str_len, s, n);
        *out_p = o;
        *out_len_p = nm->str_len + n;
        return PD_OK;
    }
    case PD_TOK_NORM_REPLACE:
        if (nm->re == NULL)
            return pd_tok_replace_str(s, n, nm->pat, nm->pat_len, nm->str, nm->str_len, scr, out_p,
                                      out_len_p);
        else {
            pd_tok_re_repl_t r = {.s = s, .with = nm->str, .with_len = nm->str_len};
            pd_status_t st = pd_tok_regex_segments(nm->re, s, n, pd_tok_re_repl_seg, &r);
            if (st == PD_OK) {
                char *o = pd_tok_scratch_alloc(scr, r.out.len + 1);
                if (o == NULL)
                    st = PD_ERR_NO_MEMORY;
                else {
                    if (r.out.len > 0)
                        memcpy(o, r.out.p, r.out.len);
                    *out_p = o;
                    *out_len_p = r.out.len;
                }
            }
            pd_tok_buf_free(&r.out);
            return st;
        }
    case PD_TOK_NORM_STRIP: {
        const unsigned char *u = (const unsigned char *)s;
        size_t a = 0, b = n;
        uint32_t cp;
        size_t k;
        while (nm->left && a < b && (k = pd_tok_utf8_next(u + a, b - a, &cp)) > 0 &&
               pd_tok_is_white(cp))
            a += k;
        while (nm->right && b > a) {
            size_t st = b - 1;
            while (st > a && (u[st] & 0xc0) == 0x80)
                st--;
            if ((k = pd_tok_utf8_next(u + st, b - st, &cp)) == 0 || !pd_tok_is_white(cp))
                break;
            b = st;
        }
        *out_p = s + a;
        *out_len_p = b - a;
        return PD_OK;
    }
    case PD_TOK_NORM_STRIP_ACCENTS: {
        char *o = pd_tok_scratch_alloc(scr, n + 1);
        if (o == NULL)
            return PD_ERR_NO_MEMORY;
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = pd_tok_utf8_next((const unsigned char *)s + i, n - i, &cp);
            if (k == 0)
                k = 1;
            else if (u_charType((UChar32)cp) == U_NON_SPACING_MARK) {
                i += k;
                continue;
            }
            memcpy(o + w, s + i, k);
            w += k;
            i += k;
        }
        *out_p = o;
        *out_len_p = w;
        return PD_OK;
    }
    }
    return PD_ERR_INTERNAL;
}

pd_status_t pd_tok_normalize(const pd_tok_hf_t *hf, const char *s, size_t n, pd_tok_scratch_t *scr,
                             const char **out_p, size_t *out_len_p)
{
    *out_p = s;
    *out_len_p = n;
    for (uint32_t i = 0; i < hf->n_norms; i++) {
        pd_status_t st = pd_tok_norm_one(&hf->norms[i], *out_p, *out_len_p, scr, out_p, out_len_p);
        if (st != PD_OK)
            return st;
    }
    return PD_OK;
}

/* ---- pre-tokenizers ---- */

/* The segments of one piece, then Hugging Face's split behaviours over them (the folds
 * of NormalizedString::split, including MergedWithNext's right-to-left one). */
typedef struct pd_tok_seg {
    size_t a, b;
    bool match; /* after inversion; for Removed: dropped */
} pd_tok_seg_t;

typedef struct pd_tok_segs {
    pd_tok_seg_t *p;
    size_t len, cap;
    bool invert;
} pd_tok_segs_t;

static pd_status_t pd_tok_segs_add(void *arg, size_t a, size_t b, bool is_match)
{
    pd_tok_segs_t *v = arg;
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        pd_tok_seg_t *n = realloc(v->p, cap * sizeof(*n));
        if (n == NULL)
            return PD_ERR_NO_MEMORY;
        v->p = n;
        v->cap = cap;
    }
    v->p[v->len++] = (pd_tok_seg_t){a, b, is_match != v->invert};
    return PD_OK;
}

static pd_status_t pd_tok_split_piece(pd_tok_regex_t *re, pd_tok_split_behavior_t behavior,
                                      bool invert, const pd_tok_piece_t *src, pd_tok_pieces_t *out)
{
    pd_tok_segs_t v = {.invert = invert};
    pd_status_t st = pd_tok_regex_segments(re, src->p, src->len, pd_tok_segs_add, &v);
    size_t n = 0; /* folded segments, in place */
    bool prev = false;
    if (st != PD_OK)
        goto out;
    switch (behavior) {
    case PD_TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < v.len; i++)
            v.p[i].match = false;
        n = v.len;
        break;
    case PD_TOK_SPLIT_REMOVED:
        n = v.len;
        break;
    case PD_TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < v.len; i++) {
            bool m = v.p[i].match;
            if (m == prev && n > 0)
                v.p[n - 1].b = v.p[i].b;
            else
                v.p[n++] = (pd_tok_seg_t){v.p[i].a, v.p[i].b, false};
            prev = m;
        }
        break;
    case PD_TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < v.len; i++) {
            bool m = v.p[i].match;
            if (m && !prev && n > 0)
                v.p[n - 1].b = v.p[i].b;
            else
                v.p[n++] = (pd_tok_seg_t){v.p[i].a, v.p[i].b, false};
            prev = m;
        }
        break;
    case PD_TOK_SPLIT_MERGED_NEXT: {
        /* Fold from the right into the tail of the array, then shift down. */
        size_t w = v.len;
        for (size_t i = v.len; i-- > 0;) {
            bool m = v.p[i].match;
            if (m && !prev && w < v.len)
                v.p[w].a = v.p[i].a;
            else
                v.p[--w] = (pd_tok_seg_t){v.p[i].a, v.p[i].b, false};
            prev = m;
        }
        n = v.len - w;
        memmove(v.p, v.p + w, n * sizeof(pd_tok_seg_t));
        break;
    }
    }
    for (size_t i = 0; i < n && st == PD_OK; i++) {
        const pd_tok_seg_t *s = &v.p[i];
        if (s->match || s->b == s->a)
            continue;
        st = pd_tok_pieces_push(out, src->p + s->a, s->b - s->a, src->byte_level,
                                src->first && s->a == 0);
    }
out:
    free(v.p);
    return st;
}

/* Replace ' ' with the replacement and prepend it (Metaspace). */
static pd_status_t pd_tok_metaspace(const pd_tok_pre_t *pre, const pd_tok_piece_t *src,
                                    pd_tok_scratch_t *scr, pd_tok_piece_t *dst)
{
    size_t spaces = 0;
    for (size_t i = 0; i < src->len; i++)
        spaces += src->p[i] == ' ';
    bool prepend = pre->prepend == PD_TOK_PREPEND_ALWAYS ||
                   (pre->prepend == PD_TOK_PREPEND_FIRST && src->first);
    size_t cap = src->len + spaces * pre->repl_len + pre->repl_len + 1;
    char *o = pd_tok_scratch_alloc(scr, cap);
    if (o == NULL)
        return PD_ERR_NO_MEMORY;
    size_t w = 0;
    for (size_t i = 0; i < src->len; i++) {
        if (src->p[i] == ' ') {
            memcpy(o + w, pre->repl, pre->repl_len);
            w += pre->repl_len;
        } else {
            o[w++] = src->p[i];
        }
    }
    if (prepend && !(w >= pre->repl_len && memcmp(o, pre->repl, pre->repl_len) == 0)) {
        memmove(o + pre->repl_len, o, w);
        memcpy(o, pre->repl, pre->repl_len);
        w += pre->repl_len;
    }
    *dst = (pd_tok_piece_t){o, w, src->byte_level, src->first};
    return PD_OK;
}

pd_status_t pd_tok_pretokenize(const pd_tok_hf_t *hf, pd_tok_pieces_t *pieces,
                               pd_tok_scratch_t *scr)
{
    pd_tok_pieces_t next = {0};
    pd_status_t st = PD_OK;
    for (uint32_t k = 0; k < hf->n_pres && st == PD_OK; k++) {
        const pd_tok_pre_t *pre = &hf->pres[k];
        next.len = 0;
        for (size_t i = 0; i < pieces->len && st == PD_OK; i++) {
            pd_tok_piece_t pc = pieces->p[i];
            switch (pre->kind) {
            case PD_TOK_PRE_BYTELEVEL:
                if (pre->add_prefix_space && (pc.len == 0 || pc.p[0] != ' ')) {
                    char *o = pd_tok_scratch_alloc(scr, pc.len + 2);
                    if (o == NULL) {
                        st = PD_ERR_NO_MEMORY;
                        break;
                    }
                    o[0] = ' ';
                    memcpy(o + 1, pc.p, pc.len);
                    pc.p = o;
                    pc.len++;
                }
                pc.byte_level = true;
                if (pre->re != NULL)
                    st = pd_tok_split_piece(pre->re, PD_TOK_SPLIT_ISOLATED, false, &pc, &next);
                else
                    st = pd_tok_pieces_push(&next, pc.p, pc.len, true, pc.first);
                break;
            case PD_TOK_PRE_METASPACE: {
                pd_tok_piece_t m;
                if ((st = pd_tok_metaspace(pre, &pc, scr, &m)) != PD_OK)
                    break;
                if (!pre->split) {
                    st = pd_tok_pieces_push(&next, m.p, m.len, m.byte_level, m.first);
                    break;
                }
                /* Split before each replacement character (MergedWithNext). */
                size_t a = 0;
                for (size_t j = 1; j + pre->repl_len <= m.len; j++) {
                    if (memcmp(m.p + j, pre->repl, pre->repl_len) == 0) {
                        if ((st = pd_tok_pieces_push(&next, m.p + a, j - a, m.byte_level,
                                                     m.first && a == 0)) != PD_OK)
                            break;
                        a = j;
                        j += pre->repl_len - 1;
                    }
                }
                if (st == PD_OK && m.len > a)
                    st = pd_tok_pieces_push(&next, m.p + a, m.len - a, m.byte_level,
                                            m.first && a == 0);
                break;
            }
            default:
                st = pd_tok_split_piece(pre->re, pre->behavior, pre->invert, &pc, &next);
                break;
            }
        }
        pd_tok_pieces_t tmp = *pieces;
        *pieces = next;
        next = tmp;
    }
    free(next.p);
    return st;
}
