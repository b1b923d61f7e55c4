/* What the tokenizer harnesses do with a tokenizer that loaded: encode a text with every
 * kind of character, decode every id of the vocabulary's first and last few and the
 * encoded ids, and stream them; any status is fine, a crash or a leak is not. */
#ifndef PD_FUZZ_TOK_EXERCISE_H
#define PD_FUZZ_TOK_EXERCISE_H

#include "pd/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static inline void pd_fuzz_tok_exercise(const pd_tokenizer_t *tok)
{
    static const char text[] = "Hello, world! \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 "
                               "\xf0\x9f\x98\x80 <s> </s> <|endoftext|>\n\t  12345 \xff\xfe end";
    int32_t ids[512];
    size_t n = 0;
    pd_tokenizer_span_t span = {6, 20};
    /* Any step may fail on a hostile tokenizer; only a crash or a sanitizer report fails. */
    pd_status_ignore(pd_tokenizer_encode(tok, text, sizeof(text) - 1, 0, ids, 512, &n));
    size_t n2 = 0;
    pd_status_ignore(
        pd_tokenizer_encode_untrusted(tok, text, sizeof(text) - 1, 0, &span, 1, ids, 512, &n2));
    if (n2 > n)
        n = n2;
    uint32_t vocab = pd_tokenizer_vocab_size(tok);
    for (uint32_t k = 0; k < 8 && n < 512; k++) {
        ids[n++] = (int32_t)k;
        if (vocab > k)
            ids[n++] = (int32_t)(vocab - 1 - k);
    }
    char *out = NULL;
    size_t len = 0;
    if (pd_tokenizer_decode_alloc(tok, ids, n, 0, &out, &len) == PD_OK)
        free(out);
    out = NULL;
    if (pd_tokenizer_decode_alloc(tok, ids, n, PD_DETOKENIZE_SKIP_SPECIAL, &out, &len) == PD_OK)
        free(out);
    pd_tokenizer_stream_t *s = NULL;
    if (pd_tokenizer_stream_create(tok, 0, -1, &s) == PD_OK) {
        const char *piece;
        size_t plen;
        for (size_t i = 0; i < n; i++)
            pd_status_ignore(pd_tokenizer_stream_push(s, ids[i], &piece, &plen));
        pd_status_ignore(pd_tokenizer_stream_finish(s, &piece, &plen));
        pd_tokenizer_stream_destroy(&s);
    }
}

#endif
