/* Tokenizers behind one interface: Hugging Face tokenizer.json (BPE, byte-level and
 * SentencePiece-style, added and special tokens), llama2.c tokenizer.bin (score-ranked
 * BPE with byte fallback) and a built-in byte-level one; raw token ids need none.
 *
 * Also here: incremental detokenization that never splits a UTF-8 character across two
 * pieces of output (pd_tokenizer_stream_*), and stop strings matched on text
 * (pd_tokenizer_stop_*). A tokenizer is read-only after loading and may be shared by
 * threads; a stream or a stop matcher belongs to one request. */
#ifndef PD_TOKENIZER_H
#define PD_TOKENIZER_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pd_tokenizer pd_tokenizer_t;

/* Flags of pd_tokenizer_encode. */
enum {
    /* Add what the tokenizer adds around a text: BOS (llama2.c), the post-processor's
     * tokens (tokenizer.json: TemplateProcessing, Bert/Roberta). */
    PD_TOKENIZE_ADD_SPECIAL = 1u << 0,
    /* Read special-token strings in the text ("<|eot_id|>") as plain text, for content
     * from untrusted users; added tokens that are not special still match. Without it,
     * special tokens in the text become their ids, as the reference does by default. */
    PD_TOKENIZE_SPECIAL_AS_TEXT = 1u << 1,
};

/* Flags of pd_tokenizer_decode and pd_tokenizer_stream_create. */
enum {
    PD_DETOKENIZE_SKIP_SPECIAL = 1u << 0, /* special tokens produce no text */
};

/* Open whatever path names: a directory (its tokenizer.json, else its tokenizer.bin), a
 * tokenizer.json file, or a llama2.c tokenizer.bin. For tokenizer.json, the
 * tokenizer_config.json (and chat_template.jinja) beside it supply the BOS/EOS tokens and
 * the chat template when present. vocab_size (0: any) is the model's: every id the
 * tokenizer can produce must be below it. PD_ERR_FORMAT / PD_ERR_UNSUPPORTED (naming the
 * component) / PD_ERR_IO with the reason logged. */
PD_MUST_CHECK pd_status_t pd_tokenizer_open(const char *path, uint32_t vocab_size,
                                            pd_tokenizer_t **tok_p);

/* Load a llama2.c tokenizer.bin for a model of vocab_size tokens (0: take the file's).
 * PD_ERR_FORMAT with a logged reason for a file of the wrong format. */
PD_MUST_CHECK pd_status_t pd_tokenizer_load(const char *path, uint32_t vocab_size,
                                            pd_tokenizer_t **tok_p);

/* Parse a tokenizer.json held in memory (len bytes); config_json (may be NULL) is the
 * text of a tokenizer_config.json. what names the source in error messages. */
PD_MUST_CHECK pd_status_t pd_tokenizer_load_hf_mem(const char *json, size_t len,
                                                   const char *config_json, size_t config_len,
                                                   const char *what, pd_tokenizer_t **tok_p);

/* The built-in byte-level tokenizer: ids 0 <unk>, 1 <s>, 2 </s>, 3 + b for byte b. */
PD_MUST_CHECK pd_status_t pd_tokenizer_create_byte(pd_tokenizer_t **tok_p);

void pd_tokenizer_destroy(pd_tokenizer_t **tok_p);

/* Number of ids (the largest id + 1). */
uint32_t pd_tokenizer_vocab_size(const pd_tokenizer_t *tok);
/* BOS and EOS ids; -1 when the tokenizer has none. For tokenizer.json they come from
 * tokenizer_config.json (bos_token, eos_token). A model's generation may stop at more
 * ids than this one (config.json's eos_token_id list). */
int32_t pd_tokenizer_bos(const pd_tokenizer_t *tok);
int32_t pd_tokenizer_eos(const pd_tokenizer_t *tok);
/* Text of BOS and EOS ("<|begin_of_text|>"); "" when none. For chat templates. */
const char *pd_tokenizer_bos_text(const pd_tokenizer_t *tok);
const char *pd_tokenizer_eos_text(const pd_tokenizer_t *tok);
/* tokenizer_config.json's chat_template (or chat_template.jinja); NULL when none. */
const char *pd_tokenizer_chat_template(const pd_tokenizer_t *tok, size_t *len_p);
/* The id of a token given by its text (an added token or a vocabulary entry); -1. */
int32_t pd_tokenizer_token_id(const pd_tokenizer_t *tok, const char *text, size_t len);
/* Whether id is a special token (BOS/EOS/control). */
bool pd_tokenizer_is_special(const pd_tokenizer_t *tok, int32_t id);

/* The most ids an encode of len bytes can produce: size ids_p with it. */
size_t pd_tokenizer_max_tokens(const pd_tokenizer_t *tok, size_t len);

/* Encode text (len bytes) into ids_p (capacity max_ids) with PD_TOKENIZE_* flags. Bytes
 * that are not valid UTF-8 read as U+FFFD for tokenizer.json (as a browser or Python's
 * errors="replace" would decode them); llama2.c tokenizers encode them as byte tokens.
 * PD_ERR_LIMIT when more than max_ids tokens would be needed. Thread-safe. */
PD_MUST_CHECK pd_status_t pd_tokenizer_encode(const pd_tokenizer_t *tok, const char *text,
                                              size_t len, unsigned flags, int32_t *ids_p,
                                              size_t max_ids, size_t *n_ids_p);

/* A byte range of a text: offset and len in bytes. */
typedef struct pd_tokenizer_span {
    size_t offset;
    size_t len;
} pd_tokenizer_span_t;

/* As pd_tokenizer_encode, for a text of which parts are untrusted: a special-token string
 * that overlaps any of the n_untrusted spans (sorted by offset, not overlapping) is read
 * as plain text, as PD_TOKENIZE_SPECIAL_AS_TEXT reads it; special tokens elsewhere
 * become their ids. Used for a prompt rendered from a chat template, whose own text holds
 * special tokens while the messages' content must never produce one. The text is split
 * at added tokens exactly as pd_tokenizer_encode splits it, so with no special string in
 * the spans the ids are those of pd_tokenizer_encode. llama2.c and byte tokenizers match
 * no special strings in text: for them this is pd_tokenizer_encode. */
PD_MUST_CHECK pd_status_t pd_tokenizer_encode_untrusted(const pd_tokenizer_t *tok, const char *text,
                                                        size_t len, unsigned flags,
                                                        const pd_tokenizer_span_t *untrusted,
                                                        size_t n_untrusted, int32_t *ids_p,
                                                        size_t max_ids, size_t *n_ids_p);

/* Write the text of ids to buf (capacity cap, NUL-terminated, valid UTF-8 for
 * tokenizer.json); *len_p gets the length. flags: PD_DETOKENIZE_*. PD_ERR_OUT_OF_RANGE for
 * an id outside the vocabulary, PD_ERR_LIMIT if buf is short. */
PD_MUST_CHECK pd_status_t pd_tokenizer_decode(const pd_tokenizer_t *tok, const int32_t *ids,
                                              size_t n_ids, unsigned flags, char *buf, size_t cap,
                                              size_t *len_p);

/* As pd_tokenizer_decode, into a malloc'd NUL-terminated string the caller frees. */
PD_MUST_CHECK pd_status_t pd_tokenizer_decode_alloc(const pd_tokenizer_t *tok, const int32_t *ids,
                                                    size_t n_ids, unsigned flags, char **text_p,
                                                    size_t *len_p);

/* The bytes of one token as it appears after prev (leading-space rule of llama2.c);
 * llama2.c and byte tokenizers only (PD_ERR_UNSUPPORTED for tokenizer.json, whose
 * pieces depend on their neighbours: use a stream). */
PD_MUST_CHECK pd_status_t pd_tokenizer_piece(const pd_tokenizer_t *tok, int32_t prev, int32_t id,
                                             const char **piece_p, size_t *len_p);

/* Write tok as a llama2.c tokenizer.bin at path (created or truncated); llama2.c and
 * byte tokenizers only. The file reads back into the same vocabulary and encodings. */
PD_MUST_CHECK pd_status_t pd_tokenizer_save(const pd_tokenizer_t *tok, const char *path);

/* ---- incremental detokenization ---- */

typedef struct pd_tokenizer_stream pd_tokenizer_stream_t;

/* A stream of generated ids that follow the id prev (the prompt's last token, or -1),
 * which gives context (a leading space is not stripped from the first generated
 * token). tok is borrowed and must outlive the stream. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stream_create(const pd_tokenizer_t *tok, unsigned flags,
                                                     int32_t prev,
                                                     pd_tokenizer_stream_t **stream_p);
void pd_tokenizer_stream_destroy(pd_tokenizer_stream_t **stream_p);

/* Add one id. *text_p and *len_p get the text it completes: whole UTF-8 characters only
 * (possibly none: a character whose bytes are still coming is held back). The text is
 * owned by the stream and valid until its next call. PD_ERR_OUT_OF_RANGE for a bad id. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stream_push(pd_tokenizer_stream_t *stream, int32_t id,
                                                   const char **text_p, size_t *len_p);

/* End of the stream: whatever is held back, an incomplete character as U+FFFD. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stream_finish(pd_tokenizer_stream_t *stream,
                                                     const char **text_p, size_t *len_p);

/* ---- stop strings ---- */

typedef struct pd_tokenizer_stop pd_tokenizer_stop_t;

/* A matcher of n stop strings (each non-empty, lens[i] bytes). The strings are copied. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stop_create(const char *const *stops, const size_t *lens,
                                                   size_t n, pd_tokenizer_stop_t **stop_p);
void pd_tokenizer_stop_destroy(pd_tokenizer_stop_t **stop_p);

/* Feed generated text. *out_p and *out_len_p get the text that can be shown now: text that
 * may still turn out to start a stop string is held back. When a stop string completes,
 * *hit_p is true (else false), the output ends just before it, and later feeds give
 * nothing. *out_p is owned by the matcher and valid until its next call. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stop_feed(pd_tokenizer_stop_t *stop, const char *text,
                                                 size_t len, const char **out_p, size_t *out_len_p,
                                                 bool *hit_p);

/* End of generation without a stop string: the text held back. */
PD_MUST_CHECK pd_status_t pd_tokenizer_stop_finish(pd_tokenizer_stop_t *stop, const char **out_p,
                                                   size_t *out_len_p);

/* Index of the stop string that matched, or -1. */
int pd_tokenizer_stop_which(const pd_tokenizer_stop_t *stop);

#endif
