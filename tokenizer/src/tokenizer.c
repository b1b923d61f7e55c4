/* llama2.c tokenizer.bin and the built-in byte-level tokenizer, one code path.
 *
 * File format (little-endian): int32 max_token_length, then per token float32 score,
 * int32 len, len bytes. Ids 0, 1, 2 are <unk>, BOS, EOS and ids 3 + b are the byte
 * fallback tokens "<0xNN>". The byte tokenizer is the same structure built in memory
 * (259 tokens, no merges), so pd_tokenizer_save() of it writes a file that
 * pd_tokenizer_load() reads back into an identical tokenizer.
 *
 * Encoding follows llama2.c: a dummy-prefix " " token when the vocabulary has one (the
 * sentencepiece convention; a byte-level vocabulary has none), one token per UTF-8
 * code point that is in the vocabulary or its bytes as fallback tokens, then repeated
 * merges of the adjacent pair whose concatenation is in the vocabulary with the highest
 * score (the leftmost on ties). */
#include "tok_int.h"

#include "pd/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PD_TOK_BYTE_BASE   3
#define PD_TOK_MAX_PIECE   4096u /* longest token a file may declare */
#define PD_TOK_HF_MAX_FILE (256u << 20)
#define PD_TOK_BYTE_VOCAB  259u

/* Each byte as a one-byte string, for the pieces of byte fallback tokens. */
static const char pd_tok_bytes[256] = {
#define PD_B4(n)  (char)(n), (char)((n) + 1), (char)((n) + 2), (char)((n) + 3)
#define PD_B16(n) PD_B4(n), PD_B4((n) + 4), PD_B4((n) + 8), PD_B4((n) + 12)
#define PD_B64(n) PD_B16(n), PD_B16((n) + 16), PD_B16((n) + 32), PD_B16((n) + 48)
    PD_B64(0), PD_B64(64), PD_B64(128), PD_B64(192)
#undef PD_B64
#undef PD_B16
#undef PD_B4
};

static int pd_tok_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

static int pd_tok_sort_cmp(const void *a, const void *b, void *ctx)
{
    const pd_tokenizer_t *t = ctx;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    int c =
        pd_tok_bytes_cmp(t->pool + t->offs[ia], t->lens[ia], t->pool + t->offs[ib], t->lens[ib]);
    return c != 0 ? c : (ia > ib) - (ia < ib);
}

/* The lowest id whose bytes equal s[0..len), or -1. */
static int32_t pd_tok_lookup(const pd_tokenizer_t *t, const char *s, size_t len)
{
    size_t lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = t->sorted[mid];
        if (pd_tok_bytes_cmp(t->pool + t->offs[id], t->lens[id], s, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->vocab_size) {
        uint32_t id = t->sorted[lo];
        if (pd_tok_bytes_cmp(t->pool + t->offs[id], t->lens[id], s, len) == 0)
            return (int32_t)id;
    }
    return -1;
}

int pd_tok_byte_of(const char *s, size_t len)
{
    if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int h = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                         : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static pd_tokenizer_t *pd_tok_new(uint32_t vocab_size, size_t pool_bytes)
{
    pd_tokenizer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->vocab_size = vocab_size;
    t->pool = malloc(pool_bytes);
    t->offs = calloc(vocab_size, sizeof(uint32_t));
    t->lens = calloc(vocab_size, sizeof(uint32_t));
    t->scores = calloc(vocab_size, sizeof(float));
    t->sorted = calloc(vocab_size, sizeof(uint32_t));
    if (t->pool == NULL || t->offs == NULL || t->lens == NULL || t->scores == NULL ||
        t->sorted == NULL)
        pd_tokenizer_destroy(&t);
    return t;
}

/* Build the lookup index and check the structure every vocabulary must have. */
static pd_status_t pd_tok_finish(pd_tokenizer_t *t, const char *what)
{
    if (t->vocab_size < PD_TOK_BYTE_VOCAB) {
        pd_log_error("%s: %u tokens, fewer than the 259 of <unk>, <s>, </s> and 256 byte "
                     "fallback tokens",
                     what, t->vocab_size);
        return PD_ERR_FORMAT;
    }
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t id = PD_TOK_BYTE_BASE + b;
        if (pd_tok_byte_of(t->pool + t->offs[id], t->lens[id]) != (int)b) {
            pd_log_error("%s: token %u is not the byte fallback token <0x%02X>; not a "
                         "llama2.c tokenizer with byte fallback",
                         what, id, b);
            return PD_ERR_FORMAT;
        }
    }
    for (uint32_t i = 0; i < t->vocab_size; i++)
        t->sorted[i] = i;
    qsort_r(t->sorted, t->vocab_size, sizeof(uint32_t), pd_tok_sort_cmp, t);
    t->space_id = pd_tok_lookup(t, " ", 1);
    t->bos_id = 1;
    t->eos_id = 2;
    t->pad_id = -1;
    return PD_OK;
}

static uint32_t pd_tok_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Read a whole regular file of at most max_bytes. */
pd_status_t pd_tok_read_file(const char *path, unsigned char **buf_p, size_t *len_p)
{
    pd_status_t status = PD_ERR_IO;
    unsigned char *buf = NULL;
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        pd_log_error("tokenizer %s: cannot open: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        pd_log_error("tokenizer %s: not a regular file", path);
        goto out_close;
    }
    if ((uint64_t)st.st_size > PD_TOK_HF_MAX_FILE) {
        pd_log_error("tokenizer %s: %lld bytes, more than the %u MiB limit", path,
                     (long long)st.st_size, PD_TOK_HF_MAX_FILE >> 20);
        status = PD_ERR_FORMAT;
        goto out_close;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_close;
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        pd_log_error("tokenizer %s: short read", path);
        free(buf);
        goto out_close;
    }
    buf[st.st_size] = '\0'; /* JSON readers may rely on it */
    *buf_p = buf;
    *len_p = (size_t)st.st_size;
    status = PD_OK;
out_close:
    fclose(f);
    return status;
}

pd_status_t pd_tokenizer_load(const char *path, uint32_t vocab_size, pd_tokenizer_t **tok_p)
{
    pd_status_t status;
    unsigned char *buf = NULL;
    size_t len = 0;
    pd_tokenizer_t *t = NULL;

    if (path == NULL || tok_p == NULL)
        return PD_ERR_INVALID_PARAM;
    status = pd_tok_read_file(path, &buf, &len);
    if (status != PD_OK)
        return status;

    status = PD_ERR_FORMAT;
    if (len < 4) {
        pd_log_error("tokenizer %s: %zu bytes, too short for a llama2.c tokenizer.bin", path, len);
        goto out_free_buf;
    }
    uint32_t max_len = pd_tok_le32(buf);
    if (max_len == 0 || max_len > PD_TOK_MAX_PIECE) {
        pd_log_error("tokenizer %s: max_token_length %d is not in 1..%u; not a llama2.c "
                     "tokenizer.bin",
                     path, (int32_t)max_len, PD_TOK_MAX_PIECE);
        goto out_free_buf;
    }

    /* First pass: validate every record and count tokens and bytes. */
    size_t off = 4, n_tokens = 0, pool_bytes = 0;
    while (off < len && (vocab_size == 0 || n_tokens < vocab_size)) {
        if (len - off < 8) {
            pd_log_error("tokenizer %s: truncated record of token %zu at byte %zu", path, n_tokens,
                         off);
            goto out_free_buf;
        }
        float score;
        uint32_t raw = pd_tok_le32(buf + off);
        memcpy(&score, &raw, sizeof(score));
        uint32_t tlen = pd_tok_le32(buf + off + 4);
        if (!isfinite(score)) {
            pd_log_error("tokenizer %s: token %zu has a non-finite score", path, n_tokens);
            goto out_free_buf;
        }
        if (tlen == 0 || tlen > max_len) {
            pd_log_error("tokenizer %s: token %zu has length %d, not in 1..%u "
                         "(max_token_length)",
                         path, n_tokens, (int32_t)tlen, max_len);
            goto out_free_buf;
        }
        if (len - off - 8 < tlen) {
            pd_log_error("tokenizer %s: token %zu runs past the end of the file", path, n_tokens);
            goto out_free_buf;
        }
        off += 8 + tlen;
        pool_bytes += tlen + 1;
        n_tokens++;
        if (n_tokens > (1u << 24)) {
            pd_log_error("tokenizer %s: more than %u tokens", path, 1u << 24);
            goto out_free_buf;
        }
    }
    if (vocab_size != 0 && n_tokens < vocab_size) {
        pd_log_error("tokenizer %s: %zu tokens, the model expects %u", path, n_tokens, vocab_size);
        goto out_free_buf;
    }
    if (off < len)
        pd_log_info("tokenizer %s: %zu bytes after token %zu ignored", path, len - off, n_tokens);

    t = pd_tok_new((uint32_t)n_tokens, pool_bytes);
    if (t == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_free_buf;
    }
    t->max_token_length = max_len;
    off = 4;
    size_t pos = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        uint32_t raw = pd_tok_le32(buf + off);
        memcpy(&t->scores[i], &raw, sizeof(float));
        uint32_t tlen = pd_tok_le32(buf + off + 4);
        t->offs[i] = (uint32_t)pos;
        t->lens[i] = tlen;
        memcpy(t->pool + pos, buf + off + 8, tlen);
        t->pool[pos + tlen] = '\0';
        pos += tlen + 1;
        off += 8 + tlen;
    }
    status = pd_tok_finish(t, path);
    if (status != PD_OK) {
        pd_tokenizer_destroy(&t);
        goto out_free_buf;
    }
    *tok_p = t;
out_free_buf:
    free(buf);
    return status;
}

pd_status_t pd_tokenizer_create_byte(pd_tokenizer_t **tok_p)
{
    static const char *const specials[PD_TOK_BYTE_BASE] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    if (tok_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_tokenizer_t *t = pd_tok_new(PD_TOK_BYTE_VOCAB, 32 + 256 * 7);
    if (t == NULL)
        return PD_ERR_NO_MEMORY;
    size_t pos = 0;
    for (uint32_t i = 0; i < PD_TOK_BYTE_VOCAB; i++) {
        char piece[8];
        if (i < PD_TOK_BYTE_BASE)
            snprintf(piece, sizeof(piece), "%s", specials[i]);
        else
            snprintf(piece, sizeof(piece), "<0x%02X>", i - PD_TOK_BYTE_BASE);
        size_t n = strlen(piece);
        t->offs[i] = (uint32_t)pos;
        t->lens[i] = (uint32_t)n;
        memcpy(t->pool + pos, piece, n + 1);
        pos += n + 1;
        if (n > t->max_token_length)
            t->max_token_length = (uint32_t)n;
    }
    pd_status_t status = pd_tok_finish(t, "byte tokenizer");
    if (status != PD_OK) {
        pd_tokenizer_destroy(&t);
        return status;
    }
    *tok_p = t;
    return PD_OK;
}

void pd_tokenizer_destroy(pd_tokenizer_t **tok_p)
{
    if (tok_p == NULL || *tok_p == NULL)
        return;
    pd_tokenizer_t *t = *tok_p;
    pd_tok_hf_destroy(&t->hf);
    free(t->bos_text);
    free(t->eos_text);
    free(t->chat_template);
    free(t->pool);
    free(t->offs);
    free(t->lens);
    free(t->scores);
    free(t->sorted);
    free(t);
    *tok_p = NULL;
}

uint32_t pd_tokenizer_vocab_size(const pd_tokenizer_t *tok)
{
    return tok->hf != NULL ? tok->hf->n_ids : tok->vocab_size;
}

int32_t pd_tokenizer_bos(const pd_tokenizer_t *tok)
{
    return tok->bos_id;
}

int32_t pd_tokenizer_eos(const pd_tokenizer_t *tok)
{
    return tok->eos_id;
}

/* A candidate merge of the adjacent tokens at positions left and right (indices into
 * the initial sequence, so left < right keeps sequence order) into id. */
typedef struct pd_tok_cand {
    float score;
    uint32_t left;
    uint32_t right;
    uint32_t ver_left; /* versions of both positions when the candidate was made */
    uint32_t ver_right;
    int32_t id;
} pd_tok_cand_t;

/* Heap order: higher score first, then the leftmost pair, as llama2.c's scan picks. */
static bool pd_tok_cand_before(const pd_tok_cand_t *a, const pd_tok_cand_t *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

typedef struct pd_tok_merger {
    const pd_tokenizer_t *tok;
    int32_t *ids;   /* (n) token at each initial position */
    uint32_t *next; /* (n) next live position, UINT32_MAX at the end */
    uint32_t *prev; /* (n) previous live position, UINT32_MAX at the start */
    uint32_t *ver;  /* (n) bumped whenever a position's token changes or dies */
    pd_tok_cand_t *heap;
    size_t n_heap;
    char *cat; /* (2 * max_token_length) */
} pd_tok_merger_t;

static void pd_tok_heap_push(pd_tok_merger_t *m, const pd_tok_cand_t *c)
{
    size_t i = m->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pd_tok_cand_before(c, &m->heap[parent]))
            break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = *c;
}

static pd_tok_cand_t pd_tok_heap_pop(pd_tok_merger_t *m)
{
    pd_tok_cand_t top = m->heap[0];
    pd_tok_cand_t last = m->heap[--m->n_heap];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= m->n_heap)
            break;
        if (child + 1 < m->n_heap && pd_tok_cand_before(&m->heap[child + 1], &m->heap[child]))
            child++;
        if (!pd_tok_cand_before(&m->heap[child], &last))
            break;
        m->heap[i] = m->heap[child];
        i = child;
    }
    if (m->n_heap > 0)
        m->heap[i] = last;
    return top;
}

/* Push the merge of positions left and next[left] when the vocabulary has it. */
static void pd_tok_consider(pd_tok_merger_t *m, uint32_t left)
{
    const pd_tokenizer_t *tok = m->tok;
    if (left == UINT32_MAX || m->next[left] == UINT32_MAX)
        return;
    uint32_t right = m->next[left];
    uint32_t a = (uint32_t)m->ids[left], b = (uint32_t)m->ids[right];
    size_t la = tok->lens[a], lb = tok->lens[b];
    if (la + lb > tok->max_token_length)
        return;
    memcpy(m->cat, tok->pool + tok->offs[a], la);
    memcpy(m->cat + la, tok->pool + tok->offs[b], lb);
    int32_t id = pd_tok_lookup(tok, m->cat, la + lb);
    if (id < 0)
        return;
    pd_tok_cand_t c = {tok->scores[id], left, right, m->ver[left], m->ver[right], id};
    pd_tok_heap_push(m, &c);
}

/* Apply merges to ids[0 .. *n_p) until none applies, in llama2.c's order (best score,
 * leftmost on ties), in O(n log n): a heap of candidate pairs over a linked list, where a
 * candidate whose positions changed since it was made is dropped when popped. Each merge
 * makes at most two candidates, so the heap never holds more than 3n. */
static pd_status_t pd_tok_merge(const pd_tokenizer_t *tok, int32_t *ids, size_t *n_p)
{
    size_t n = *n_p;
    pd_status_t status = PD_OK;
    pd_tok_merger_t m = {.tok = tok, .ids = ids};
    if (n < 2)
        return PD_OK;
    m.next = malloc(n * sizeof(uint32_t));
    m.prev = malloc(n * sizeof(uint32_t));
    m.ver = calloc(n, sizeof(uint32_t));
    m.heap = malloc(3 * n * sizeof(pd_tok_cand_t));
    m.cat = malloc(2 * (size_t)tok->max_token_length + 1);
    if (m.next == NULL || m.prev == NULL || m.ver == NULL || m.heap == NULL || m.cat == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        m.next[i] = i + 1 < n ? (uint32_t)(i + 1) : UINT32_MAX;
        m.prev[i] = i > 0 ? (uint32_t)(i - 1) : UINT32_MAX;
    }
    for (size_t i = 0; i + 1 < n; i++)
        pd_tok_consider(&m, (uint32_t)i);
    while (m.n_heap > 0) {
        pd_tok_cand_t c = pd_tok_heap_pop(&m);
        if (m.next[c.left] != c.right || m.ver[c.left] != c.ver_left ||
            m.ver[c.right] != c.ver_right)
            continue; /* stale */
        ids[c.left] = c.id;
        m.ver[c.left]++;
        m.ver[c.right]++;
        m.next[c.left] = m.next[c.right];
        if (m.next[c.right] != UINT32_MAX)
            m.prev[m.next[c.right]] = c.left;
        m.next[c.right] = UINT32_MAX; /* dead: no candidate can match it again */
        pd_tok_consider(&m, m.prev[c.left]);
        pd_tok_consider(&m, c.left);
    }
    /* Compact the live positions in order. */
    size_t out = 0;
    for (uint32_t i = 0; i != UINT32_MAX; i = m.next[i])
        ids[out++] = ids[i];
    *n_p = out;
out_free:
    free(m.next);
    free(m.prev);
    free(m.ver);
    free(m.heap);
    free(m.cat);
    return status;
}

/* llama2.c encoding: add_bos prepends BOS. */
pd_status_t pd_tok_l2c_encode(const pd_tokenizer_t *tok, const char *text, size_t len, bool add_bos,
                              int32_t *ids_p, size_t max_ids, size_t *n_ids_p)
{
    pd_status_t status = PD_OK;
    int32_t *ids = NULL;
    size_t n = 0;

    /* At most one token per byte, plus the dummy prefix. */
    ids = malloc((len + 1) * sizeof(int32_t));
    if (ids == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_free;
    }
    if (len > 0 && tok->space_id >= 0)
        ids[n++] = tok->space_id;
    for (size_t i = 0; i < len;) {
        /* A code point: a lead byte and up to 3 continuation bytes, as llama2.c groups. */
        size_t j = i + 1;
        while (j < len && j - i < 4 && ((unsigned char)text[j] & 0xc0) == 0x80)
            j++;
        int32_t id = pd_tok_lookup(tok, text + i, j - i);
        if (id >= 0) {
            ids[n++] = id;
        } else {
            for (size_t k = i; k < j; k++)
                ids[n++] = PD_TOK_BYTE_BASE + (unsigned char)text[k];
        }
        i = j;
    }
    status = pd_tok_merge(tok, ids, &n);
    if (status != PD_OK)
        goto out_free;
    size_t total = n + (add_bos ? 1 : 0);
    if (total > max_ids) {
        status = PD_ERR_LIMIT;
        goto out_free;
    }
    size_t o = 0;
    if (add_bos)
        ids_p[o++] = pd_tokenizer_bos(tok);
    if (n > 0)
        memcpy(ids_p + o, ids, n * sizeof(int32_t));
    *n_ids_p = total;
out_free:
    free(ids);
    return status;
}

pd_status_t pd_tokenizer_piece(const pd_tokenizer_t *tok, int32_t prev, int32_t id,
                               const char **piece_p, size_t *len_p)
{
    if (tok == NULL || piece_p == NULL || len_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (tok->hf != NULL)
        return PD_ERR_UNSUPPORTED;
    if (id < 0 || (uint32_t)id >= tok->vocab_size)
        return PD_ERR_OUT_OF_RANGE;
    /* Control tokens have no text. */
    if (id == pd_tokenizer_bos(tok) || id == pd_tokenizer_eos(tok)) {
        *piece_p = "";
        *len_p = 0;
        return PD_OK;
    }
    const char *s = tok->pool + tok->offs[id];
    size_t n = tok->lens[id];
    /* After BOS, sentencepiece drops the leading space of the first piece. */
    if (prev == pd_tokenizer_bos(tok) && n > 0 && s[0] == ' ') {
        s++;
        n--;
    }
    int b = pd_tok_byte_of(s, n);
    if (b >= 0) {
        s = &pd_tok_bytes[b];
        n = 1;
    }
    *piece_p = s;
    *len_p = n;
    return PD_OK;
}

pd_status_t pd_tok_l2c_decode(const pd_tokenizer_t *tok, int32_t prev, const int32_t *ids,
                              size_t n_ids, pd_tok_buf_t *out)
{
    for (size_t i = 0; i < n_ids; i++) {
        const char *piece;
        size_t plen;
        pd_status_t status = pd_tokenizer_piece(tok, prev, ids[i], &piece, &plen);
        if (status != PD_OK)
            return status;
        if ((status = pd_tok_buf_put(out, piece, plen)) != PD_OK)
            return status;
        prev = ids[i];
    }
    return pd_tok_buf_reserve(out, 0);
}

pd_status_t pd_tokenizer_save(const pd_tokenizer_t *tok, const char *path)
{
    pd_status_t status = PD_ERR_IO;
    if (tok == NULL || path == NULL)
        return PD_ERR_INVALID_PARAM;
    if (tok->hf != NULL)
        return PD_ERR_UNSUPPORTED;
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        int err = errno;
        pd_log_error("tokenizer %s: cannot create: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    int32_t max_len = (int32_t)tok->max_token_length;
    if (fwrite(&max_len, sizeof(max_len), 1, f) != 1)
        goto out_close;
    for (uint32_t i = 0; i < tok->vocab_size; i++) {
        int32_t tlen = (int32_t)tok->lens[i];
        if (fwrite(&tok->scores[i], sizeof(float), 1, f) != 1 ||
            fwrite(&tlen, sizeof(tlen), 1, f) != 1 ||
            fwrite(tok->pool + tok->offs[i], 1, tok->lens[i], f) != tok->lens[i])
            goto out_close;
    }
    status = PD_OK;
out_close:
    if (fclose(f) != 0)
        status = PD_ERR_IO;
    if (status != PD_OK)
        pd_log_error("tokenizer %s: write failed: %s", path, strerror(errno));
    return status;
}
