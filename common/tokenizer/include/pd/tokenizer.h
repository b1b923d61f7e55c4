/* Tokenizers: llama2.c tokenizer.bin (score-ranked BPE with byte fallback), a built-in
 * byte-level one, and raw token ids (no tokenizer at all, handled by callers). */
#ifndef PD_TOKENIZER_H
#define PD_TOKENIZER_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pd_tokenizer pd_tokenizer_t;

/* Load a llama2.c tokenizer.bin for a model of vocab_size tokens (0: take the file's).
 * PD_ERR_FORMAT with a logged reason for a file of the wrong format. */
pd_status_t pd_tokenizer_load(const char *path, uint32_t vocab_size, pd_tokenizer_t **tok_p);

/* The built-in byte-level tokenizer: ids 0 <unk>, 1 <s>, 2 </s>, 3 + b for byte b. */
pd_status_t pd_tokenizer_create_byte(pd_tokenizer_t **tok_p);

void pd_tokenizer_destroy(pd_tokenizer_t **tok_p);

uint32_t pd_tokenizer_vocab_size(const pd_tokenizer_t *tok);
int32_t pd_tokenizer_bos(const pd_tokenizer_t *tok);
int32_t pd_tokenizer_eos(const pd_tokenizer_t *tok);

/* Encode text (len bytes) into ids_p (capacity max_ids), with BOS first when add_bos.
 * PD_ERR_LIMIT when more than max_ids tokens would be needed. */
pd_status_t pd_tokenizer_encode(const pd_tokenizer_t *tok, const char *text, size_t len,
                                bool add_bos, int32_t *ids_p, size_t max_ids, size_t *n_ids_p);

/* Append the text of ids to buf (capacity cap, NUL-terminated); *len_p gets the length.
 * PD_ERR_OUT_OF_RANGE for an id outside the vocabulary, PD_ERR_LIMIT if buf is short. */
pd_status_t pd_tokenizer_decode(const pd_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                char *buf, size_t cap, size_t *len_p);

/* The bytes of one token as it appears after prev (leading-space rule of llama2.c);
 * points into the tokenizer or a static table; *len_p gets the length. */
pd_status_t pd_tokenizer_piece(const pd_tokenizer_t *tok, int32_t prev, int32_t id,
                               const char **piece_p, size_t *len_p);

/* Write tok as a llama2.c tokenizer.bin at path (created or truncated); the file reads
 * back with pd_tokenizer_load into the same vocabulary, scores and encodings. */
pd_status_t pd_tokenizer_save(const pd_tokenizer_t *tok, const char *path);

#endif
