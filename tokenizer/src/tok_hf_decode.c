/* tokenizer.json decoding: ids become their token strings (special ones dropped on
 * request), then the decoder chain rewrites that list of strings, as the reference's
 * decode_chain does, and the strings are joined. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

/* A list of strings in one buffer. */
typedef struct pd_tok_strs {
    pd_tok_buf_t data;
    size_t *off, *len;
    size_t n, cap;
} pd_tok_strs_t;

static pd_status_t pd_tok_strs_begin(pd_tok_strs_t *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        size_t *o = realloc(l->off, cap * sizeof(size_t));
        if (o == NULL)
            return PD_ERR_NO_MEMORY;
        l->off = o;
        size_t *n = realloc(l->len, cap * sizeof(size_t));
        if (n == NULL)
            return PD_ERR_NO_MEMORY;
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = l->data.len;
    l->len[l->n] = 0;
    l->n++;
    return PD_OK;
}

/* Append to the string begun last. */
static pd_status_t pd_tok_strs_put(pd_tok_strs_t *l, const char *s, size_t n)
{
    pd_status_t st = pd_tok_buf_put(&l->data, s, n);
    if (st == PD_OK)
        l->len[l->n - 1] += n;
    return st;
}

static pd_status_t pd_tok_strs_add(pd_tok_strs_t *l, const char *s, size_t n)
{
    pd_status_t st = pd_tok_strs_begin(l);
    return st == PD_OK ? pd_tok_strs_put(l, s, n) : st;
}

static void pd_tok_strs_free(pd_tok_strs_t *l)
{
    pd_tok_buf_free(&l->data);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof(*l));
}

#define PD_TOK_STR(l, i) ((l)->data.p + (l)->off[i])

static pd_status_t pd_tok_dec_one(const pd_tok_dec_t *d, const pd_tok_strs_t *in,
                                  pd_tok_strs_t *out)
{
    pd_status_t st = PD_OK;
    switch (d->kind) {
    case PD_TOK_DEC_BYTELEVEL: {
        /* Every token's characters back to bytes (a token with a character outside the
         * alphabet stays as it is), the whole as one string, ill-formed UTF-8 replaced. */
        pd_tok_buf_t raw = {0};
        for (size_t i = 0; i < in->n && st == PD_OK; i++) {
            const unsigned char *s = (const unsigned char *)PD_TOK_STR(in, i);
            size_t n = in->len[i], mark = raw.len;
            bool ok = true;
            for (size_t j = 0; j < n && ok && st == PD_OK;) {
                uint32_t cp;
                size_t k = pd_tok_utf8_next(s + j, n - j, &cp);
                int b = k > 0 ? pd_tok_char_byte(cp) : -1;
                if (b < 0) {
                    ok = false;
                    break;
                }
                char c = (char)b;
                st = pd_tok_buf_put(&raw, &c, 1);
                j += k;
            }
            if (!ok && st == PD_OK) {
                raw.len = mark;
                st = pd_tok_buf_put(&raw, s, n);
            }
        }
        if (st == PD_OK && (st = pd_tok_strs_begin(out)) == PD_OK) {
            size_t before = out->data.len;
            st = pd_tok_utf8_sanitize(raw.p ? raw.p : "", raw.len, &out->data);
            out->len[out->n - 1] = out->data.len - before;
        }
        pd_tok_buf_free(&raw);
        return st;
    }
    case PD_TOK_DEC_BYTEFALLBACK: {
        /* Runs of <0xNN> tokens become their bytes; a run that is not valid UTF-8 becomes
         * one U+FFFD per byte, as the reference does. */
        unsigned char run[256];
        size_t n_run = 0;
        for (size_t i = 0; i <= in->n && st == PD_OK; i++) {
            int b = i < in->n ? pd_tok_byte_of(PD_TOK_STR(in, i), in->len[i]) : -1;
            if (b >= 0 && n_run < sizeof(run)) {
                run[n_run++] = (unsigned char)b;
                continue;
            }
            if (n_run > 0) {
                if (pd_tok_utf8_valid((const char *)run, n_run))
                    st = pd_tok_strs_add(out, (const char *)run, n_run);
                else
                    for (size_t k = 0; k < n_run && st == PD_OK; k++)
                        st = pd_tok_strs_add(out, "\xef\xbf\xbd", 3);
                n_run = 0;
            }
            if (b >= 0)
                run[n_run++] = (unsigned char)b;
            else if (i < in->n && st == PD_OK)
                st = pd_tok_strs_add(out, PD_TOK_STR(in, i), in->len[i]);
        }
        return st;
    }
    case PD_TOK_DEC_FUSE:
        if ((st = pd_tok_strs_begin(out)) != PD_OK)
            return st;
        for (size_t i = 0; i < in->n && st == PD_OK; i++)
            st = pd_tok_strs_put(out, PD_TOK_STR(in, i), in->len[i]);
        return st;
    case PD_TOK_DEC_STRIP:
        for (size_t i = 0; i < in->n && st == PD_OK; i++) {
            const char *s = PD_TOK_STR(in, i);
            size_t a = 0, b = in->len[i];
            for (uint32_t k = 0;
                 k < d->start && b - a >= d->str_len && memcmp(s + a, d->str, d->str_len) == 0; k++)
                a += d->str_len;
            for (uint32_t k = 0; k < d->stop && b - a >= d->str_len &&
                                 memcmp(s + b - d->str_len, d->str, d->str_len) == 0;
                 k++)
                b -= d->str_len;
            st = pd_tok_strs_add(out, s + a, b - a);
        }
        return st;
    case PD_TOK_DEC_REPLACE:
        for (size_t i = 0; i < in->n && st == PD_OK; i++) {
            const char *s = PD_TOK_STR(in, i), *end = s + in->len[i];
            if ((st = pd_tok_strs_begin(out)) != PD_OK)
                break;
            for (const char *q;
                 st == PD_OK && (q = memmem(s, (size_t)(end - s), d->pat, d->pat_len)) != NULL;
                 s = q + d->pat_len) {
                if ((st = pd_tok_strs_put(out, s, (size_t)(q - s))) == PD_OK)
                    st = pd_tok_strs_put(out, d->str, d->str_len);
            }
            if (st == PD_OK)
                st = pd_tok_strs_put(out, s, (size_t)(end - s));
        }
        return st;
    case PD_TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->n && st == PD_OK; i++) {
            const char *s = PD_TOK_STR(in, i), *end = s + in->len[i];
            bool strip = i == 0 && d->prepend != PD_TOK_PREPEND_NEVER;
            if ((st = pd_tok_strs_begin(out)) != PD_OK)
                break;
            for (const char *q;
                 st == PD_OK && (q = memmem(s, (size_t)(end - s), d->repl, d->repl_len)) != NULL;
                 s = q + d->repl_len) {
                st = pd_tok_strs_put(out, s, (size_t)(q - s));
                /* The space the encoder prepended to the first token goes. */
                if (st == PD_OK && !(strip && out->len[out->n - 1] == 0))
                    st = pd_tok_strs_put(out, " ", 1);
                strip = false;
            }
            if (st == PD_OK)
                st = pd_tok_strs_put(out, s, (size_t)(end - s));
        }
        return st;
    }
    return PD_ERR_INTERNAL;
}

pd_status_t pd_tok_hf_decode(const pd_tok_hf_t *hf, const int32_t *ids, size_t n, unsigned flags,
                             pd_tok_buf_t *out)
{
    pd_tok_strs_t a = {0}, b = {0};
    pd_status_t st = PD_OK;
    for (size_t i = 0; i < n && st == PD_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || (uint32_t)id >= hf->n_ids || !(hf->flags[id] & PD_TOK_ID_PRESENT)) {
            st = PD_ERR_OUT_OF_RANGE;
            break;
        }
        if ((flags & PD_DETOKENIZE_SKIP_SPECIAL) && (hf->flags[id] & PD_TOK_ID_SPECIAL))
            continue;
        st = pd_tok_strs_add(&a, hf->pool + hf->offs[id], hf->lens[id]);
    }
    for (uint32_t k = 0; k < hf->n_decs && st == PD_OK; k++) {
        b.n = 0;
        b.data.len = 0;
        st = pd_tok_dec_one(&hf->decs[k], &a, &b);
        pd_tok_strs_t t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n && st == PD_OK; i++) {
        if (!hf->has_decoder && i > 0)
            st = pd_tok_buf_put(out, " ", 1);
        if (st == PD_OK)
            st = pd_tok_utf8_sanitize(PD_TOK_STR(&a, i), a.len[i], out);
    }
    if (st == PD_OK)
        st = pd_tok_buf_reserve(out, 0); /* NUL-terminated even when empty */
    if (st == PD_OK)
        out->p[out->len] = '\0';
    pd_tok_strs_free(&a);
    pd_tok_strs_free(&b);
    return st;
}
