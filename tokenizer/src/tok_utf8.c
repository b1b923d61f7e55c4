/* UTF-8 helpers and the growable buffers of the tokenizer. Ill-formed input is replaced
 * by U+FFFD one maximal subpart at a time (Unicode 15, section 3.9, "U+FFFD Substitution
 * of Maximal Subparts"), the practice of Rust's from_utf8_lossy, Python's
 * errors="replace" and the WHATWG decoder that JavaScript uses, so that pdkv and the
 * reference tokenizers see the same text for the same bytes. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

pd_status_t pd_tok_buf_reserve(pd_tok_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return PD_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            return PD_ERR_NO_MEMORY;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return PD_ERR_NO_MEMORY;
    b->p = p;
    b->cap = cap;
    return PD_OK;
}

pd_status_t pd_tok_buf_put(pd_tok_buf_t *b, const void *s, size_t n)
{
    pd_status_t st = pd_tok_buf_reserve(b, n);
    if (st != PD_OK)
        return st;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return PD_OK;
}

void pd_tok_buf_free(pd_tok_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

pd_status_t pd_tok_ids_push(pd_tok_ids_t *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof(int32_t));
        if (p == NULL)
            return PD_ERR_NO_MEMORY;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->len++] = id;
    return PD_OK;
}

void pd_tok_ids_free(pd_tok_ids_t *v)
{
    free(v->p);
    v->p = NULL;
    v->len = v->cap = 0;
}

size_t pd_tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp_p)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    uint32_t cp;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c < 0x80) {
        if (cp_p != NULL)
            *cp_p = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
            return 0;
        cp = (cp << 6) | (b & 0x3f);
    }
    if (cp_p != NULL)
        *cp_p = cp;
    return len;
}

size_t pd_tok_utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

bool pd_tok_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = pd_tok_utf8_next(p + i, n - i, NULL);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* Length of the maximal subpart at s: the longest prefix of a well-formed sequence
 * (at least 1, for a byte that cannot start one). */
static size_t pd_tok_utf8_subpart(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 1;
    }
    size_t i = 1;
    while (i < len && i < n) {
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
            break;
        i++;
    }
    return i;
}

pd_status_t pd_tok_utf8_sanitize(const char *s, size_t n, pd_tok_buf_t *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    pd_status_t st = pd_tok_buf_reserve(out, n + n / 2);
    if (st != PD_OK)
        return st;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = pd_tok_utf8_next(p + i, n - i, NULL);
        if (k > 0) {
            i += k;
            continue;
        }
        if ((st = pd_tok_buf_put(out, s + run, i - run)) != PD_OK ||
            (st = pd_tok_buf_put(out, "\xef\xbf\xbd", 3)) != PD_OK)
            return st;
        i += pd_tok_utf8_subpart(p + i, n - i);
        run = i;
    }
    return pd_tok_buf_put(out, s + run, n - run);
}

size_t pd_tok_utf8_incomplete_tail(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    /* Look back at most 3 bytes for a lead byte whose sequence runs past the end. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = p[n - back];
        if (c >= 0x80 && c < 0xc0)
            continue; /* continuation byte: keep looking for its lead */
        if (c < 0xc2 || c > 0xf4)
            return 0;
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (need <= back)
            return 0;
        /* A proper prefix of a well-formed sequence? */
        return pd_tok_utf8_subpart(p + n - back, back) == back ? back : 0;
    }
    return 0;
}
