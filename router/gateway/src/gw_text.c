/* Text out of token ids: byte buffers, UTF-8 that JSON can carry, and stop strings.
 *
 * A token's piece can end in the middle of a UTF-8 character (byte-fallback tokens carry
 * one byte each), and JSON strings must be valid UTF-8, so decoded bytes wait in `raw`
 * until they form whole characters; a sequence that can never become valid is replaced
 * by U+FFFD, as the Hugging Face decoders do. Stop strings are matched on that text: the
 * last max_stop_len - 1 bytes stay in `hold` until no stop string can start in them, so
 * a stop string split across tokens is still found and never streamed. */
#include "gw_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char pd_gw_replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

static bool pd_gw_buf_reserve(pd_gw_buf_t *b, size_t extra)
{
    if (b->off > 0 && b->off + b->len + extra > b->cap) {
        /* Reuse the consumed front before growing. */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    size_t need = b->off + b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return false;
    b->data = d;
    b->cap = cap;
    return true;
}

bool pd_gw_buf_append(pd_gw_buf_t *b, const void *data, size_t n)
{
    if (!pd_gw_buf_reserve(b, n))
        return false;
    if (n > 0)
        memcpy(b->data + b->off + b->len, data, n);
    b->len += n;
    b->data[b->off + b->len] = '\0';
    return true;
}

bool pd_gw_buf_printf(pd_gw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !pd_gw_buf_reserve(b, (size_t)n))
        return false;
    va_start(ap, fmt);
    vsnprintf(b->data + b->off + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

static int pd_gw_buf_json_cb(const char *data, size_t n, void *cls)
{
    return pd_gw_buf_append(cls, data, n) ? 0 : -1;
}

bool pd_gw_buf_json(pd_gw_buf_t *b, const json_t *j)
{
    return json_dump_callback(j, pd_gw_buf_json_cb, b, JSON_COMPACT) == 0;
}

void pd_gw_buf_consume(pd_gw_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->off = b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

void pd_gw_buf_cleanup(pd_gw_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Length of the UTF-8 sequence at s (n bytes left): > 0 for a whole valid character,
 * 0 for a valid but incomplete prefix, -1 for an invalid first byte or continuation
 * (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF). */
static int pd_gw_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i)
            return -1;
    }
    return len;
}

size_t pd_gw_utf8_sanitize(const char *s, size_t n, bool partial_ok, pd_gw_buf_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the valid bytes not yet copied */
    while (i < n) {
        int len = pd_gw_utf8_seq(u + i, n - i);
        if (len > 0) {
            i += (size_t)len;
            continue;
        }
        pd_gw_buf_append(out, s + run, i - run);
        if (len == 0 && partial_ok)
            return i; /* wait for the rest of the character */
        /* An invalid byte (or the start of a character cut off at the end): one
         * replacement per byte, as `pdctl generate --json` writes them. */
        pd_gw_buf_append(out, pd_gw_replacement, 3);
        i++;
        run = i;
    }
    pd_gw_buf_append(out, s + run, n - run);
    return n;
}

void pd_gw_text_init(pd_gw_text_t *t, const pd_tokenizer_t *tok, int32_t prev)
{
    memset(t, 0, sizeof(*t));
    t->tok = tok;
    t->prev = prev;
    t->stop_index = -1;
}

pd_status_t pd_gw_text_add_stop(pd_gw_text_t *t, const char *s, size_t len)
{
    if (t->n_stops == PD_GW_MAX_STOPS || len > PD_GW_MAX_STOP_BYTES)
        return PD_ERR_LIMIT;
    if (len == 0)
        return PD_OK; /* an empty stop string stops nothing */
    char *copy = malloc(len);
    if (copy == NULL)
        return PD_ERR_NO_MEMORY;
    memcpy(copy, s, len);
    t->stops[t->n_stops] = copy;
    t->stop_len[t->n_stops] = len;
    t->n_stops++;
    if (len > t->max_stop_len)
        t->max_stop_len = len;
    return PD_OK;
}

/* Release what hold can give up: up to the first stop string (then true), or all but a
 * tail that might begin one. */
static bool pd_gw_text_release(pd_gw_text_t *t, pd_gw_buf_t *out, bool final)
{
    const char *h = pd_gw_buf_data(&t->hold);
    size_t first = SIZE_MAX;
    for (uint32_t k = 0; k < t->n_stops; k++) {
        const char *at = memmem(h, t->hold.len, t->stops[k], t->stop_len[k]);
        if (at != NULL && (size_t)(at - h) < first) {
            first = (size_t)(at - h);
            t->stop_index = (int)k;
        }
    }
    if (first != SIZE_MAX) {
        pd_gw_buf_append(out, h, first);
        pd_gw_buf_consume(&t->hold, t->hold.len);
        return true;
    }
    size_t keep = (final || t->n_stops == 0) ? 0 : t->max_stop_len - 1;
    if (t->hold.len <= keep)
        return false;
    size_t cut = t->hold.len - keep;
    /* Never split a character: hold is valid UTF-8, so back up over continuation bytes. */
    while (cut > 0 && cut < t->hold.len && ((unsigned char)h[cut] & 0xC0) == 0x80)
        cut--;
    pd_gw_buf_append(out, h, cut);
    pd_gw_buf_consume(&t->hold, cut);
    return false;
}

bool pd_gw_text_push(pd_gw_text_t *t, int32_t token, pd_gw_buf_t *out)
{
    const char *piece = "";
    size_t len = 0;
    if (t->tok != NULL && pd_tokenizer_piece(t->tok, t->prev, token, &piece, &len) != PD_OK)
        len = 0; /* an id outside the vocabulary has no text */
    t->prev = token;
    if (len == 0)
        return false;
    pd_gw_buf_append(&t->raw, piece, len);
    size_t used = pd_gw_utf8_sanitize(pd_gw_buf_data(&t->raw), t->raw.len, true, &t->hold);
    pd_gw_buf_consume(&t->raw, used);
    return pd_gw_text_release(t, out, false);
}

void pd_gw_text_finish(pd_gw_text_t *t, pd_gw_buf_t *out)
{
    if (t->raw.len > 0) {
        pd_gw_utf8_sanitize(pd_gw_buf_data(&t->raw), t->raw.len, false, &t->hold);
        pd_gw_buf_consume(&t->raw, t->raw.len);
    }
    pd_gw_text_release(t, out, true);
}

void pd_gw_text_cleanup(pd_gw_text_t *t)
{
    for (uint32_t k = 0; k < t->n_stops; k++)
        free(t->stops[k]);
    pd_gw_buf_cleanup(&t->raw);
    pd_gw_buf_cleanup(&t->hold);
    t->n_stops = 0;
}
