/* Incremental detokenization and stop strings.
 *
 * A stream keeps a short window of ids: the ids of the text it last emitted (context,
 * so that decoders that treat the first token specially, such as a stripped leading
 * space, see the same neighbours as a whole decode would) and the ids not yet emitted.
 * Each push decodes the window; when its text grows past the context's text and does
 * not end inside a character (tokenizer.json decoders show an unfinished character as
 * U+FFFD; llama2.c pieces are raw bytes), the new part is emitted and the window moves
 * on. This is the approach of Hugging Face's DecodeStream and vLLM's detokenizer. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

/* Ids held without emitting before the text is forced out (with U+FFFD): a character
 * has at most 4 bytes, so this only happens on ill-formed output. */
#define PD_TOK_STREAM_MAX_PENDING 16u

struct pd_tokenizer_stream {
    const pd_tokenizer_t *tok;
    unsigned flags;
    int32_t ids[PD_TOK_STREAM_MAX_PENDING * 2 + 8];
    size_t n_ids;        /* window: ids[0 .. n_ids) */
    size_t read;         /* ids[0 .. read) are context whose text was emitted */
    int32_t prev;        /* the id before the window (llama2.c leading-space rule) */
    pd_tok_buf_t prefix; /* text of the context */
    pd_tok_buf_t text;   /* scratch: text of the window */
    pd_tok_buf_t out;    /* what the last call returned */
};

static pd_status_t pd_tok_stream_decode(pd_tokenizer_stream_t *s, size_t n, pd_tok_buf_t *b)
{
    b->len = 0;
    if (s->tok->hf != NULL)
        return pd_tok_hf_decode(s->tok->hf, s->ids, n, s->flags, b);
    return pd_tok_l2c_decode(s->tok, s->prev, s->ids, n, b);
}

pd_status_t pd_tokenizer_stream_create(const pd_tokenizer_t *tok, unsigned flags, int32_t prev,
                                       pd_tokenizer_stream_t **stream_p)
{
    if (tok == NULL || stream_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_tokenizer_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PD_ERR_NO_MEMORY;
    s->tok = tok;
    s->flags = flags;
    s->prev = -1;
    pd_status_t st = PD_OK;
    if (prev >= 0 && (uint32_t)prev < pd_tokenizer_vocab_size(tok)) {
        s->ids[s->n_ids++] = prev;
        s->read = 1;
        st = pd_tok_stream_decode(s, s->n_ids, &s->prefix);
    }
    if (st == PD_OK)
        st = pd_tok_buf_reserve(&s->out, 16);
    if (st != PD_OK) {
        pd_tokenizer_stream_destroy(&s);
        return st;
    }
    *stream_p = s;
    return PD_OK;
}

void pd_tokenizer_stream_destroy(pd_tokenizer_stream_t **stream_p)
{
    if (stream_p == NULL || *stream_p == NULL)
        return;
    pd_tokenizer_stream_t *s = *stream_p;
    pd_tok_buf_free(&s->prefix);
    pd_tok_buf_free(&s->text);
    pd_tok_buf_free(&s->out);
    free(s);
    *stream_p = NULL;
}

/* Whether the window's text ends inside a character. */
static bool pd_tok_stream_unfinished(const pd_tokenizer_stream_t *s, const pd_tok_buf_t *t)
{
    if (s->tok->hf != NULL)
        return t->len >= 3 && memcmp(t->p + t->len - 3, "\xef\xbf\xbd", 3) == 0;
    return pd_tok_utf8_incomplete_tail(t->p, t->len) > 0;
}

/* Emit text[from ..) (made valid UTF-8) and make the unread ids the new context. */
static pd_status_t pd_tok_stream_emit(pd_tokenizer_stream_t *s, size_t from)
{
    pd_status_t st = pd_tok_utf8_sanitize(s->text.p + from, s->text.len - from, &s->out);
    if (st != PD_OK)
        return st;
    /* Keep the ids just read as context; drop the older ones. */
    size_t keep = s->n_ids - s->read;
    if (s->read > 0)
        s->prev = s->ids[s->read - 1];
    memmove(s->ids, s->ids + s->read, keep * sizeof(int32_t));
    s->n_ids = keep;
    s->read = keep;
    return pd_tok_stream_decode(s, s->n_ids, &s->prefix);
}

pd_status_t pd_tokenizer_stream_push(pd_tokenizer_stream_t *s, int32_t id, const char **text_p,
                                     size_t *len_p)
{
    if (s == NULL || text_p == NULL || len_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (id < 0 || (uint32_t)id >= pd_tokenizer_vocab_size(s->tok))
        return PD_ERR_OUT_OF_RANGE;
    s->out.len = 0;
    s->out.p[0] = '\0';
    *text_p = s->out.p;
    *len_p = 0;
    s->ids[s->n_ids++] = id;
    pd_status_t st = pd_tok_stream_decode(s, s->n_ids, &s->text);
    if (st != PD_OK) {
        s->n_ids--;
        return st;
    }
    bool forced = s->n_ids - s->read >= PD_TOK_STREAM_MAX_PENDING;
    if (s->text.len > s->prefix.len && (forced || !pd_tok_stream_unfinished(s, &s->text))) {
        size_t from = s->prefix.len;
        if (s->prefix.len > 0 && memcmp(s->text.p, s->prefix.p, s->prefix.len) != 0) {
            /* The context decodes differently with the new id after it (a character
             * completed across the window's start): emit from the first difference. */
            from = 0;
            while (from < s->prefix.len && s->text.p[from] == s->prefix.p[from])
                from++;
            while (from > 0 && ((unsigned char)s->text.p[from] & 0xc0) == 0x80)
                from--;
        }
        if ((st = pd_tok_stream_emit(s, from)) != PD_OK)
            return st;
    } else if (forced) {
        /* Nothing new to show after many ids (special tokens skipped): reset the window. */
        if ((st = pd_tok_stream_emit(s, s->text.len)) != PD_OK)
            return st;
    }
    *text_p = s->out.p;
    *len_p = s->out.len;
    return PD_OK;
}

pd_status_t pd_tokenizer_stream_finish(pd_tokenizer_stream_t *s, const char **text_p, size_t *len_p)
{
    if (s == NULL || text_p == NULL || len_p == NULL)
        return PD_ERR_INVALID_PARAM;
    s->out.len = 0;
    s->out.p[0] = '\0';
    pd_status_t st = pd_tok_stream_decode(s, s->n_ids, &s->text);
    if (st == PD_OK && s->text.len > s->prefix.len &&
        memcmp(s->text.p, s->prefix.p, s->prefix.len) == 0)
        st = pd_tok_stream_emit(s, s->prefix.len);
    *text_p = s->out.p;
    *len_p = s->out.len;
    return st;
}

/* ---- stop strings ---- */

struct pd_tokenizer_stop {
    char **stops;
    size_t *lens;
    size_t n;
    pd_tok_buf_t held; /* text that may still begin a stop string */
    pd_tok_buf_t out;
    bool hit;
    int which;
};

pd_status_t pd_tokenizer_stop_create(const char *const *stops, const size_t *lens, size_t n,
                                     pd_tokenizer_stop_t **stop_p)
{
    if ((n > 0 && (stops == NULL || lens == NULL)) || stop_p == NULL)
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n; i++)
        if (stops[i] == NULL || lens[i] == 0)
            return PD_ERR_INVALID_PARAM;
    pd_tokenizer_stop_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PD_ERR_NO_MEMORY;
    s->which = -1;
    s->stops = calloc(n ? n : 1, sizeof(char *));
    s->lens = calloc(n ? n : 1, sizeof(size_t));
    if (s->stops == NULL || s->lens == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if ((s->stops[i] = malloc(lens[i])) == NULL)
            goto fail;
        memcpy(s->stops[i], stops[i], lens[i]);
        s->lens[i] = lens[i];
        s->n++;
    }
    if (pd_tok_buf_reserve(&s->out, 16) != PD_OK || pd_tok_buf_reserve(&s->held, 16) != PD_OK)
        goto fail;
    *stop_p = s;
    return PD_OK;
fail:
    pd_tokenizer_stop_destroy(&s);
    return PD_ERR_NO_MEMORY;
}

void pd_tokenizer_stop_destroy(pd_tokenizer_stop_t **stop_p)
{
    if (stop_p == NULL || *stop_p == NULL)
        return;
    pd_tokenizer_stop_t *s = *stop_p;
    for (size_t i = 0; i < s->n; i++)
        free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    pd_tok_buf_free(&s->held);
    pd_tok_buf_free(&s->out);
    free(s);
    *stop_p = NULL;
}

pd_status_t pd_tokenizer_stop_feed(pd_tokenizer_stop_t *s, const char *text, size_t len,
                                   const char **out_p, size_t *out_len_p, bool *hit_p)
{
    if (s == NULL || (text == NULL && len > 0) || out_p == NULL || out_len_p == NULL)
        return PD_ERR_INVALID_PARAM;
    s->out.len = 0;
    s->out.p[0] = '\0';
    *out_p = s->out.p;
    *out_len_p = 0;
    if (hit_p != NULL)
        *hit_p = s->hit;
    if (s->hit)
        return PD_OK;
    pd_status_t st = pd_tok_buf_put(&s->held, text, len);
    if (st != PD_OK)
        return st;
    /* The earliest complete stop string (the first listed on a tie). */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++) {
        const char *p = memmem(s->held.p, s->held.len, s->stops[i], s->lens[i]);
        if (p != NULL && (size_t)(p - s->held.p) < best) {
            best = (size_t)(p - s->held.p);
            s->which = (int)i;
        }
    }
    size_t emit;
    if (best != SIZE_MAX) {
        s->hit = true;
        emit = best;
    } else {
        /* Hold back the longest tail that is a proper prefix of a stop string. */
        size_t keep = 0;
        for (size_t i = 0; i < s->n; i++) {
            size_t max = s->lens[i] - 1 < s->held.len ? s->lens[i] - 1 : s->held.len;
            for (size_t k = max; k > keep; k--)
                if (memcmp(s->held.p + s->held.len - k, s->stops[i], k) == 0) {
                    keep = k;
                    break;
                }
        }
        emit = s->held.len - keep;
    }
    if ((st = pd_tok_buf_put(&s->out, s->held.p, emit)) != PD_OK)
        return st;
    memmove(s->held.p, s->held.p + emit, s->held.len - emit);
    s->held.len -= emit;
    if (s->hit)
        s->held.len = 0;
    *out_p = s->out.p;
    *out_len_p = s->out.len;
    if (hit_p != NULL)
        *hit_p = s->hit;
    return PD_OK;
}

pd_status_t pd_tokenizer_stop_finish(pd_tokenizer_stop_t *s, const char **out_p, size_t *out_len_p)
{
    if (s == NULL || out_p == NULL || out_len_p == NULL)
        return PD_ERR_INVALID_PARAM;
    s->out.len = 0;
    pd_status_t st = pd_tok_buf_put(&s->out, s->held.p, s->held.len);
    s->held.len = 0;
    *out_p = s->out.p;
    *out_len_p = s->out.len;
    return st;
}

int pd_tokenizer_stop_which(const pd_tokenizer_stop_t *s)
{
    return s->which;
}
