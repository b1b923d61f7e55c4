/* Private to pd_tokenizer: the tokenizer object, the Hugging Face tokenizer.json pipeline
 * (added tokens, normalizers, pre-tokenizers, BPE, post-processor, decoders) and the
 * UTF-8 helpers they share. */
#ifndef PD_TOK_INT_H
#define PD_TOK_INT_H

#include "pd/tokenizer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what a tokenizer.json may declare; a file past one is refused by name. */
#define PD_TOK_HF_MAX_FILE    (256u << 20)
#define PD_TOK_HF_MAX_VOCAB   (4u << 20) /* ids */
#define PD_TOK_HF_MAX_MERGES  (8u << 20)
#define PD_TOK_HF_MAX_TOKEN   (64u << 10) /* bytes of one token or added token */
#define PD_TOK_HF_MAX_STAGES  64u         /* normalizers, pre-tokenizers, decoders */
#define PD_TOK_HF_MAX_PATTERN (16u << 10) /* bytes of one regex */
#define PD_TOK_HF_MAX_SPECIAL 16u         /* tokens a post-processor adds */

/* A growable byte buffer. */
typedef struct pd_tok_buf {
    char *p;
    size_t len;
    size_t cap;
} pd_tok_buf_t;

PD_MUST_CHECK pd_status_t pd_tok_buf_reserve(pd_tok_buf_t *b, size_t extra);
PD_MUST_CHECK pd_status_t pd_tok_buf_put(pd_tok_buf_t *b, const void *s, size_t n);
void pd_tok_buf_free(pd_tok_buf_t *b);

/* A growable id vector. */
typedef struct pd_tok_ids {
    int32_t *p;
    size_t len;
    size_t cap;
} pd_tok_ids_t;

PD_MUST_CHECK pd_status_t pd_tok_ids_push(pd_tok_ids_t *v, int32_t id);
void pd_tok_ids_free(pd_tok_ids_t *v);

/* ---- UTF-8 (tok_utf8.c) ---- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one (overlong,
 * surrogate, past U+10FFFF, truncated); *cp_p gets the code point when not NULL. */
size_t pd_tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp_p);
/* Bytes of code point cp written to out (at most 4). */
size_t pd_tok_utf8_put(uint32_t cp, char *out);
bool pd_tok_utf8_valid(const char *s, size_t n);
/* Append s to out with every ill-formed subsequence replaced by U+FFFD, one per maximal
 * subpart (the Unicode and WHATWG practice that Rust, Python and JavaScript share). */
PD_MUST_CHECK pd_status_t pd_tok_utf8_sanitize(const char *s, size_t n, pd_tok_buf_t *out);
/* Bytes at the end of s[0..n) that start a character still missing bytes (0..3). */
size_t pd_tok_utf8_incomplete_tail(const char *s, size_t n);

/* ---- tokenizer.json model (tok_hf_*.c) ---- */

typedef struct pd_tok_regex pd_tok_regex_t; /* compiled PCRE2 pattern */

typedef enum pd_tok_norm_kind {
    PD_TOK_NORM_NFC,
    PD_TOK_NORM_NFD,
    PD_TOK_NORM_NFKC,
    PD_TOK_NORM_NFKD,
    PD_TOK_NORM_LOWERCASE,
    PD_TOK_NORM_PREPEND,
    PD_TOK_NORM_REPLACE,
    PD_TOK_NORM_STRIP,
    PD_TOK_NORM_STRIP_ACCENTS,
} pd_tok_norm_kind_t;

typedef struct pd_tok_norm {
    pd_tok_norm_kind_t kind;
    char *str; /* Prepend / Replace: the text put in */
    size_t str_len;
    char *pat; /* Replace with a String pattern */
    size_t pat_len;
    pd_tok_regex_t *re; /* Replace with a Regex pattern */
    bool left, right;   /* Strip */
} pd_tok_norm_t;

typedef enum pd_tok_split_behavior {
    PD_TOK_SPLIT_REMOVED,
    PD_TOK_SPLIT_ISOLATED,
    PD_TOK_SPLIT_MERGED_PREV,
    PD_TOK_SPLIT_MERGED_NEXT,
    PD_TOK_SPLIT_CONTIGUOUS,
} pd_tok_split_behavior_t;

typedef enum pd_tok_pre_kind {
    PD_TOK_PRE_SPLIT,      /* regex or string, behavior, invert */
    PD_TOK_PRE_BYTELEVEL,  /* optional GPT-2 regex, prefix space; marks words byte-level */
    PD_TOK_PRE_METASPACE,  /* ' ' -> replacement, prepend, split */
    PD_TOK_PRE_DIGITS,     /* runs of digits, or each digit */
    PD_TOK_PRE_WHITESPACE, /* \w+|[^\w\s]+ */
    PD_TOK_PRE_WSPLIT,     /* split on whitespace */
    PD_TOK_PRE_PUNCT,      /* isolate punctuation */
} pd_tok_pre_kind_t;

typedef enum pd_tok_prepend {
    PD_TOK_PREPEND_ALWAYS,
    PD_TOK_PREPEND_FIRST,
    PD_TOK_PREPEND_NEVER
} pd_tok_prepend_t;

typedef struct pd_tok_pre {
    pd_tok_pre_kind_t kind;
    pd_tok_regex_t *re;
    pd_tok_split_behavior_t behavior;
    bool invert;
    bool add_prefix_space; /* ByteLevel */
    char repl[8];          /* Metaspace replacement, UTF-8 */
    size_t repl_len;
    pd_tok_prepend_t prepend;
    bool split;
} pd_tok_pre_t;

typedef enum pd_tok_dec_kind {
    PD_TOK_DEC_BYTELEVEL,
    PD_TOK_DEC_BYTEFALLBACK,
    PD_TOK_DEC_FUSE,
    PD_TOK_DEC_STRIP,
    PD_TOK_DEC_REPLACE,
    PD_TOK_DEC_METASPACE,
} pd_tok_dec_kind_t;

typedef struct pd_tok_dec {
    pd_tok_dec_kind_t kind;
    char *pat, *str; /* Replace: String pattern and its replacement; Strip: content */
    size_t pat_len, str_len;
    uint32_t start, stop; /* Strip */
    char repl[8];         /* Metaspace */
    size_t repl_len;
    pd_tok_prepend_t prepend;
} pd_tok_dec_t;

typedef struct pd_tok_added {
    char *content;
    size_t len;
    int32_t id;
    bool special;
    bool lstrip, rstrip, single_word, normalized;
} pd_tok_added_t;

/* A byte trie over added-token contents for leftmost-longest matching. */
typedef struct pd_tok_trie {
    uint32_t *child_first; /* (n_nodes) first edge index, or UINT32_MAX */
    uint32_t *edge_next;   /* (n_edges) sibling edge */
    uint32_t *edge_node;   /* (n_edges) target node */
    unsigned char *edge_byte;
    int32_t *node_added; /* (n_nodes) index into added[] ending here, or -1 */
    uint32_t n_nodes, n_edges, cap_nodes, cap_edges;
    bool first_byte[256];
    bool empty;
} pd_tok_trie_t;

/* Open-addressing hash of byte strings to ids (vocabulary lookup). */
typedef struct pd_tok_strmap {
    uint32_t *slots; /* (cap) id + 1, 0 = empty */
    uint32_t cap;    /* power of two */
} pd_tok_strmap_t;

/* Merge table: (left id, right id) -> (rank, merged id). */
typedef struct pd_tok_merge_entry {
    uint64_t key; /* left << 32 | right, UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} pd_tok_merge_entry_t;

/* Word cache: raw word bytes -> ids, cleared whole when full. */
typedef struct pd_tok_cache_slot {
    uint64_t hash;
    uint32_t word_off, word_len; /* in words pool */
    uint32_t ids_off, n_ids;     /* in ids pool */
} pd_tok_cache_slot_t;

typedef struct pd_tok_cache {
    pthread_mutex_t lock;
    pd_tok_cache_slot_t *slots; /* (cap), word_len == UINT32_MAX = empty */
    uint32_t cap, used;
    pd_tok_buf_t words;
    pd_tok_ids_t ids;
} pd_tok_cache_t;

typedef struct pd_tok_hf {
    /* Vocabulary: id -> bytes for every id (model vocab and added tokens). */
    uint32_t n_ids;
    char *pool;
    uint32_t *offs;        /* (n_ids) */
    uint32_t *lens;        /* (n_ids) */
    uint8_t *flags;        /* (n_ids) PD_TOK_ID_* */
    pd_tok_strmap_t vocab; /* model vocabulary only */

    /* Added tokens, matched in the raw text (normalized == false) and after normalizing. */
    pd_tok_added_t *added;
    uint32_t n_added;
    pd_tok_trie_t trie_raw, trie_norm;       /* every added token */
    pd_tok_trie_t trie_raw_ns, trie_norm_ns; /* only the non-special ones */

    pd_tok_norm_t *norms;
    uint32_t n_norms;
    pd_tok_pre_t *pres;
    uint32_t n_pres;
    pd_tok_dec_t *decs;
    uint32_t n_decs;
    bool has_decoder;

    /* BPE. */
    pd_tok_merge_entry_t *merges; /* (merge_cap) */
    uint32_t merge_cap;
    int32_t unk_id; /* -1 when none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *cont_prefix, *eow_suffix;
    size_t cont_prefix_len, eow_suffix_len;
    int32_t byte_fallback_id[256]; /* "<0xNN>" ids, -1 when absent */
    int32_t byte_level_id[256];    /* id of the byte-level char of each byte, -1 absent */
    uint32_t max_token_bytes;

    /* Post-processor (TemplateProcessing single, Bert/Roberta): ids around the text. */
    int32_t pre_ids[PD_TOK_HF_MAX_SPECIAL];
    uint32_t n_pre_ids;
    int32_t post_ids[PD_TOK_HF_MAX_SPECIAL];
    uint32_t n_post_ids;

    pd_tok_cache_t cache;
} pd_tok_hf_t;

#define PD_TOK_ID_PRESENT 1u
#define PD_TOK_ID_ADDED   2u
#define PD_TOK_ID_SPECIAL 4u
#define PD_TOK_ID_VOCAB   8u /* in the model vocabulary (BPE sees it) */

/* Parse a tokenizer.json document (text of len bytes); what names the file in errors. */
PD_MUST_CHECK pd_status_t pd_tok_hf_create(const char *text, size_t len, const char *what,
                                           pd_tok_hf_t **hf_p);
void pd_tok_hf_destroy(pd_tok_hf_t **hf_p);

PD_MUST_CHECK pd_status_t pd_tok_hf_encode(pd_tok_hf_t *hf, const char *text, size_t len,
                                           unsigned flags, pd_tok_ids_t *out);
/* As pd_tok_hf_encode; special tokens that overlap an untrusted span read as text. */
PD_MUST_CHECK pd_status_t pd_tok_hf_encode_spans(pd_tok_hf_t *hf, const char *text, size_t len,
                                                 unsigned flags,
                                                 const pd_tokenizer_span_t *untrusted,
                                                 size_t n_untrusted, pd_tok_ids_t *out);
/* Decode ids into out (valid UTF-8). */
PD_MUST_CHECK pd_status_t pd_tok_hf_decode(const pd_tok_hf_t *hf, const int32_t *ids, size_t n,
                                           unsigned flags, pd_tok_buf_t *out);

/* Pieces of the pipeline, used by the encoder. */
PD_MUST_CHECK pd_status_t pd_tok_regex_compile(const char *pattern, size_t len, bool literal,
                                               const char *what, pd_tok_regex_t **re_p);
void pd_tok_regex_free(pd_tok_regex_t **re_p);
/* Find the first match at or after start in s[0..n): *ms_p, *me_p; false when none. */
bool pd_tok_regex_find(pd_tok_regex_t *re, const char *s, size_t n, size_t start, size_t *ms_p,
                       size_t *me_p);

/* A list of pieces (byte ranges of owned strings). */
typedef struct pd_tok_piece {
    const char *p;
    size_t len;
    bool byte_level; /* bytes still to be mapped to the byte-level alphabet */
    bool first;      /* starts at offset 0 of the original text (Metaspace "first") */
} pd_tok_piece_t;

typedef struct pd_tok_pieces {
    pd_tok_piece_t *p;
    size_t len, cap;
} pd_tok_pieces_t;

PD_MUST_CHECK pd_status_t pd_tok_pieces_push(pd_tok_pieces_t *v, const char *p, size_t len,
                                             bool byte_level, bool first);

/* Scratch memory of one encode call: strings made by normalizers and pre-tokenizers live
 * in chunks that are freed together. */
typedef struct pd_tok_scratch {
    char **chunks;
    size_t n, cap;
} pd_tok_scratch_t;

char *pd_tok_scratch_alloc(pd_tok_scratch_t *s, size_t n);
void pd_tok_scratch_free(pd_tok_scratch_t *s);

PD_MUST_CHECK pd_status_t pd_tok_normalize(const pd_tok_hf_t *hf, const char *s, size_t n,
                                           pd_tok_scratch_t *scr, const char **out_p,
                                           size_t *out_len_p);
PD_MUST_CHECK pd_status_t pd_tok_pretokenize(const pd_tok_hf_t *hf, pd_tok_pieces_t *pieces,
                                             pd_tok_scratch_t *scr);

/* BPE on one word; appends ids. */
PD_MUST_CHECK pd_status_t pd_tok_bpe_word(pd_tok_hf_t *hf, const char *w, size_t n, bool byte_level,
                                          bool use_cache, pd_tok_ids_t *out);
PD_MUST_CHECK pd_status_t pd_tok_cache_alloc(pd_tok_cache_t *c);
PD_MUST_CHECK pd_status_t pd_tok_bpe_build(pd_tok_hf_t *hf, uint32_t n_merges);
int32_t pd_tok_vocab_get(const pd_tok_hf_t *hf, const char *s, size_t n);
PD_MUST_CHECK pd_status_t pd_tok_vocab_index(pd_tok_hf_t *hf);
void pd_tok_merge_put(pd_tok_hf_t *hf, int32_t a, int32_t b, uint32_t rank, int32_t id);
void pd_tok_cache_init(pd_tok_cache_t *c);
void pd_tok_cache_free(pd_tok_cache_t *c);

/* Byte-level alphabet (GPT-2's bytes_to_unicode): the code point of each byte. */
uint32_t pd_tok_byte_char(unsigned char b);
/* The byte of a byte-level code point, or -1. */
int pd_tok_char_byte(uint32_t cp);
/* The byte of a fallback token "<0xNN>", or -1 when s is not one (tokenizer.c). */
int pd_tok_byte_of(const char *s, size_t len);

/* Added-token trie. */
PD_MUST_CHECK pd_status_t pd_tok_trie_add(pd_tok_trie_t *t, const char *s, size_t n,
                                          int32_t added_index);
/* Leftmost-longest match at or after start: *ms_p, *me_p, index into added[]; -1 none. */
int32_t pd_tok_trie_find(const pd_tok_trie_t *t, const char *s, size_t n, size_t start,
                         size_t *ms_p, size_t *me_p);
void pd_tok_trie_free(pd_tok_trie_t *t);

/* ---- the tokenizer object ---- */

struct pd_tokenizer {
    pd_tok_hf_t *hf; /* tokenizer.json; NULL for the llama2.c and byte tokenizers */

    /* llama2.c and byte tokenizers. */
    uint32_t vocab_size;
    uint32_t max_token_length;
    char *pool;       /* every token's bytes, each NUL-terminated */
    uint32_t *offs;   /* (vocab) offset of token i in pool */
    uint32_t *lens;   /* (vocab) */
    float *scores;    /* (vocab) */
    uint32_t *sorted; /* (vocab) ids sorted by bytes, for lookup */
    int32_t space_id; /* id of " ", or -1 */

    /* Both kinds: control tokens and the chat template from tokenizer_config.json. */
    int32_t bos_id, eos_id, pad_id;
    char *bos_text, *eos_text; /* NULL when none */
    char *chat_template;       /* NULL when none */
    size_t chat_template_len;
};

/* llama2.c and byte tokenizers (tokenizer.c). */
PD_MUST_CHECK pd_status_t pd_tok_read_file(const char *path, unsigned char **buf_p, size_t *len_p);
PD_MUST_CHECK pd_status_t pd_tok_l2c_encode(const pd_tokenizer_t *tok, const char *text, size_t len,
                                            bool add_bos, int32_t *ids_p, size_t max_ids,
                                            size_t *n_ids_p);
/* The raw bytes of ids after prev (may end inside a character). */
PD_MUST_CHECK pd_status_t pd_tok_l2c_decode(const pd_tokenizer_t *tok, int32_t prev,
                                            const int32_t *ids, size_t n_ids, pd_tok_buf_t *out);

#endif
