/* The BPE model of tokenizer.json: vocabulary and merge tables, the merge loop, and a
 * word cache.
 *
 * The merge loop is Hugging Face's Word::merge_all: a heap of candidate pairs ordered by
 * merge rank, then position; a popped candidate whose pair no longer merges into the
 * same id is stale and skipped. A word's initial symbols are its characters (after the
 * byte-level mapping for byte-level tokenizers), a character outside the vocabulary
 * becomes its <0xNN> byte tokens (byte_fallback) or the unknown token (fused with a
 * preceding unknown when fuse_unk), or is dropped when there is no unknown token, as
 * the reference does. English text repeats its words, so words and their ids are
 * cached: most of an encode is lookups. */
#include "tok_int.h"

#include "pd/hash.h"

#include <stdlib.h>
#include <string.h>

#define PD_TOK_CACHE_SLOTS     (1u << 16)
#define PD_TOK_CACHE_MAX_WORD  256u       /* longer words are not cached */
#define PD_TOK_CACHE_MAX_BYTES (8u << 20) /* words pool size before a reset */

/* ---- byte-level alphabet ---- */

uint32_t pd_tok_byte_char(unsigned char b)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 maps to itself, the other 68 bytes to
     * U+0100.. in byte order. */
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))
        return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae)))
            n++;
    return 256 + n;
}

int pd_tok_char_byte(uint32_t cp)
{
    static int16_t table[324];
    static bool ready; /* benign race: every thread writes the same values */
    if (!ready) {
        for (size_t i = 0; i < 324; i++)
            table[i] = -1;
        for (unsigned b = 0; b < 256; b++)
            table[pd_tok_byte_char((unsigned char)b)] = (int16_t)b;
        ready = true;
    }
    return cp < 324 ? table[cp] : -1;
}

/* ---- vocabulary ---- */

static uint64_t pd_tok_hash(const char *s, size_t n)
{
    return pd_hash_bytes(s, n, 0x9e3779b97f4a7c15ull);
}

int32_t pd_tok_vocab_get(const pd_tok_hf_t *hf, const char *s, size_t n)
{
    const pd_tok_strmap_t *m = &hf->vocab;
    if (m->cap == 0)
        return -1;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)pd_tok_hash(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = m->slots[i];
        if (v == 0)
            return -1;
        uint32_t id = v - 1;
        if (hf->lens[id] == n && memcmp(hf->pool + hf->offs[id], s, n) == 0)
            return (int32_t)id;
    }
}

/* Index every id that belongs to the model vocabulary (not the added tokens). */
pd_status_t pd_tok_vocab_index(pd_tok_hf_t *hf)
{
    uint32_t cap = 16;
    while (cap < 2 * hf->n_ids + 16)
        cap *= 2;
    hf->vocab.slots = calloc(cap, sizeof(uint32_t));
    if (hf->vocab.slots == NULL)
        return PD_ERR_NO_MEMORY;
    hf->vocab.cap = cap;
    for (uint32_t id = 0; id < hf->n_ids; id++) {
        if (!(hf->flags[id] & PD_TOK_ID_VOCAB))
            continue;
        const char *s = hf->pool + hf->offs[id];
        uint32_t i = (uint32_t)pd_tok_hash(s, hf->lens[id]) & (cap - 1);
        while (hf->vocab.slots[i] != 0)
            i = (i + 1) & (cap - 1);
        hf->vocab.slots[i] = id + 1;
    }
    return PD_OK;
}

/* ---- merges ---- */

static uint32_t pd_tok_merge_slot(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & mask;
}

void pd_tok_merge_put(pd_tok_hf_t *hf, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = hf->merge_cap - 1;
    for (uint32_t i = pd_tok_merge_slot(key, mask);; i = (i + 1) & mask) {
        pd_tok_merge_entry_t *e = &hf->merges[i];
        if (e->key == UINT64_MAX || e->key == key) {
            /* A repeated pair takes the later rank, as the reference's map insert does. */
            e->key = key;
            e->rank = rank;
            e->id = id;
            return;
        }
    }
}

pd_status_t pd_tok_bpe_build(pd_tok_hf_t *hf, uint32_t n_merges)
{
    uint32_t cap = 16;
    while (cap < 2 * n_merges + 16)
        cap *= 2;
    hf->merges = malloc((size_t)cap * sizeof(pd_tok_merge_entry_t));
    if (hf->merges == NULL)
        return PD_ERR_NO_MEMORY;
    for (uint32_t i = 0; i < cap; i++)
        hf->merges[i].key = UINT64_MAX;
    hf->merge_cap = cap;
    return PD_OK;
}

static const pd_tok_merge_entry_t *pd_tok_merge_get(const pd_tok_hf_t *hf, int32_t a, int32_t b)
{
    if (hf->merge_cap == 0)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = hf->merge_cap - 1;
    for (uint32_t i = pd_tok_merge_slot(key, mask);; i = (i + 1) & mask) {
        const pd_tok_merge_entry_t *e = &hf->merges[i];
        if (e->key == key)
            return e;
        if (e->key == UINT64_MAX)
            return NULL;
    }
}

/* ---- the merge loop ---- */

typedef struct pd_tok_sym {
    int32_t id;
    int32_t prev, next; /* positions, -1 at the ends */
    bool dead;
} pd_tok_sym_t;

typedef struct pd_tok_cand {
    uint32_t rank;
    uint32_t pos;
    int32_t id;
} pd_tok_cand_t;

static bool pd_tok_cand_less(const pd_tok_cand_t *a, const pd_tok_cand_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void pd_tok_heap_push(pd_tok_cand_t *h, size_t *n, pd_tok_cand_t c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pd_tok_cand_less(&c, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static pd_tok_cand_t pd_tok_heap_pop(pd_tok_cand_t *h, size_t *n)
{
    pd_tok_cand_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pd_tok_cand_less(&h[c + 1], &h[c]))
            c++;
        if (!pd_tok_cand_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static void pd_tok_consider(const pd_tok_hf_t *hf, const pd_tok_sym_t *sym, uint32_t pos,
                            pd_tok_cand_t *heap, size_t *n_heap)
{
    if (sym[pos].next < 0)
        return;
    const pd_tok_merge_entry_t *e = pd_tok_merge_get(hf, sym[pos].id, sym[sym[pos].next].id);
    if (e != NULL)
        pd_tok_heap_push(heap, n_heap, (pd_tok_cand_t){e->rank, pos, e->id});
}

/* Merge sym[0..n) in place and append the surviving ids to out. */
static pd_status_t pd_tok_merge_all(const pd_tok_hf_t *hf, pd_tok_sym_t *sym, size_t n,
                                    pd_tok_ids_t *out)
{
    /* Each merge adds at most two candidates: n initial + 2n. */
    pd_tok_cand_t stack_heap[96];
    pd_tok_cand_t *heap = 3 * n <= 96 ? stack_heap : malloc(3 * n * sizeof(pd_tok_cand_t));
    size_t n_heap = 0;
    if (heap == NULL)
        return PD_ERR_NO_MEMORY;
    for (size_t i = 0; i + 1 < n; i++)
        pd_tok_consider(hf, sym, (uint32_t)i, heap, &n_heap);
    while (n_heap > 0) {
        pd_tok_cand_t c = pd_tok_heap_pop(heap, &n_heap);
        pd_tok_sym_t *s = &sym[c.pos];
        if (s->dead || s->next < 0)
            continue;
        pd_tok_sym_t *r = &sym[s->next];
        const pd_tok_merge_entry_t *e = pd_tok_merge_get(hf, s->id, r->id);
        if (e == NULL || e->id != c.id)
            continue; /* stale */
        s->id = c.id;
        r->dead = true;
        s->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = (int32_t)c.pos;
        if (s->prev >= 0)
            pd_tok_consider(hf, sym, (uint32_t)s->prev, heap, &n_heap);
        pd_tok_consider(hf, sym, c.pos, heap, &n_heap);
    }
    if (heap != stack_heap)
        free(heap);
    pd_status_t st = PD_OK;
    for (int32_t i = 0; i >= 0 && st == PD_OK; i = sym[i].next)
        st = pd_tok_ids_push(out, sym[i].id);
    return st;
}

/* ---- the word cache ---- */

void pd_tok_cache_init(pd_tok_cache_t *c)
{
    pthread_mutex_init(&c->lock, NULL);
}

void pd_tok_cache_free(pd_tok_cache_t *c)
{
    free(c->slots);
    pd_tok_buf_free(&c->words);
    pd_tok_ids_free(&c->ids);
    pthread_mutex_destroy(&c->lock);
}

static void pd_tok_cache_reset(pd_tok_cache_t *c)
{
    for (uint32_t i = 0; i < c->cap; i++)
        c->slots[i].word_len = UINT32_MAX;
    c->used = 0;
    c->words.len = 0;
    c->ids.len = 0;
}

static pd_tok_cache_slot_t *pd_tok_cache_find(pd_tok_cache_t *c, uint64_t h, const char *w,
                                              size_t n)
{
    uint32_t mask = c->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        pd_tok_cache_slot_t *s = &c->slots[i];
        if (s->word_len == UINT32_MAX)
            return s;
        if (s->hash == h && s->word_len == n && memcmp(c->words.p + s->word_off, w, n) == 0)
            return s;
    }
}

/* ---- one word ---- */

static pd_status_t pd_tok_bpe_compute(const pd_tok_hf_t *hf, const char *w, size_t n,
                                      bool byte_level, pd_tok_ids_t *out)
{
    pd_status_t st = PD_OK;
    char mapped_stack[512];
    char *mapped = NULL;
    const char *word = w;
    size_t word_len = n;

    if (byte_level) {
        /* The word in the byte-level alphabet: each byte becomes 1 or 2 UTF-8 bytes. */
        mapped = 2 * n <= sizeof(mapped_stack) ? mapped_stack : malloc(2 * n);
        if (mapped == NULL)
            return PD_ERR_NO_MEMORY;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += pd_tok_utf8_put(pd_tok_byte_char((unsigned char)w[i]), mapped + k);
        word = mapped;
        word_len = k;
    }
    if (hf->ignore_merges) {
        int32_t id = pd_tok_vocab_get(hf, word, word_len);
        if (id >= 0) {
            st = pd_tok_ids_push(out, id);
            goto out;
        }
    }

    pd_tok_sym_t stack_sym[64];
    pd_tok_sym_t *sym = NULL;
    /* At most 4 symbols per character (byte fallback), one character per byte. */
    size_t cap = 4 * word_len;
    sym = cap <= 64 ? stack_sym : malloc(cap * sizeof(pd_tok_sym_t));
    if (sym == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto out;
    }
    size_t n_sym = 0;
    bool prev_unk = false;
    bool direct = byte_level && hf->cont_prefix_len == 0 && hf->eow_suffix_len == 0;
    for (size_t i = 0; direct && i < n; i++)
        direct = hf->byte_level_id[(unsigned char)w[i]] >= 0;
    if (direct) {
        /* Every byte's character is a token: no lookups needed. */
        for (size_t i = 0; i < n; i++)
            sym[n_sym++] = (pd_tok_sym_t){hf->byte_level_id[(unsigned char)w[i]], 0, 0, false};
        word_len = 0;
    }
    char buf[PD_TOK_HF_MAX_TOKEN > 64 ? 64 : PD_TOK_HF_MAX_TOKEN];
    for (size_t i = 0; i < word_len;) {
        size_t k;
        int32_t id = -1;
        k = pd_tok_utf8_next((const unsigned char *)word + i, word_len - i, NULL);
        if (k == 0)
            k = 1; /* cannot happen on sanitized text; keep going byte by byte */
        const char *s = word + i;
        size_t sl = k;
        bool affixed =
            (i > 0 && hf->cont_prefix_len > 0) || (i + k == word_len && hf->eow_suffix_len > 0);
        if (affixed) {
            size_t pl = i > 0 ? hf->cont_prefix_len : 0;
            size_t sx = i + k == word_len ? hf->eow_suffix_len : 0;
            if (pl + k + sx <= sizeof(buf)) {
                memcpy(buf, hf->cont_prefix, pl);
                memcpy(buf + pl, word + i, k);
                memcpy(buf + pl + k, hf->eow_suffix, sx);
                s = buf;
                sl = pl + k + sx;
            }
        }
        id = pd_tok_vocab_get(hf, s, sl);
        i += k;
        if (id >= 0) {
            sym[n_sym++] = (pd_tok_sym_t){id, 0, 0, false};
            prev_unk = false;
            continue;
        }
        if (hf->byte_fallback) {
            bool all = true;
            for (size_t j = 0; j < sl; j++)
                all = all && hf->byte_fallback_id[(unsigned char)s[j]] >= 0;
            if (all) {
                for (size_t j = 0; j < sl; j++)
                    sym[n_sym++] =
                        (pd_tok_sym_t){hf->byte_fallback_id[(unsigned char)s[j]], 0, 0, false};
                prev_unk = false;
                continue;
            }
        }
        if (hf->unk_id >= 0) {
            if (!(hf->fuse_unk && prev_unk))
                sym[n_sym++] = (pd_tok_sym_t){hf->unk_id, 0, 0, false};
            prev_unk = true;
        }
    }
    for (size_t i = 0; i < n_sym; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n_sym ? (int32_t)i + 1 : -1;
    }
    if (n_sym > 0)
        st = pd_tok_merge_all(hf, sym, n_sym, out);
    if (sym != stack_sym)
        free(sym);
out:
    if (mapped != mapped_stack)
        free(mapped);
    return st;
}

pd_status_t pd_tok_bpe_word(pd_tok_hf_t *hf, const char *w, size_t n, bool byte_level,
                            bool use_cache, pd_tok_ids_t *out)
{
    pd_tok_cache_t *c = &hf->cache;
    if (n == 0)
        return PD_OK;
    if (!use_cache || n > PD_TOK_CACHE_MAX_WORD || c->slots == NULL)
        return pd_tok_bpe_compute(hf, w, n, byte_level, out);
    uint64_t h = pd_tok_hash(w, n) ^ (byte_level ? 0x5bd1e995u : 0);
    pd_tok_cache_slot_t *s = pd_tok_cache_find(c, h, w, n);
    if (s->word_len != UINT32_MAX) {
        for (uint32_t i = 0; i < s->n_ids; i++) {
            pd_status_t st = pd_tok_ids_push(out, c->ids.p[s->ids_off + i]);
            if (st != PD_OK)
                return st;
        }
        return PD_OK;
    }
    size_t before = out->len;
    pd_status_t st = pd_tok_bpe_compute(hf, w, n, byte_level, out);
    if (st != PD_OK)
        return st;
    if (c->used >= c->cap / 2 || c->words.len + n > PD_TOK_CACHE_MAX_BYTES) {
        pd_tok_cache_reset(c);
        s = pd_tok_cache_find(c, h, w, n);
    }
    size_t word_off = c->words.len, ids_off = c->ids.len;
    if (pd_tok_buf_put(&c->words, w, n) != PD_OK)
        return PD_OK; /* the cache is an optimisation: leave it out */
    for (size_t i = before; i < out->len; i++)
        if (pd_tok_ids_push(&c->ids, out->p[i]) != PD_OK) {
            c->words.len = word_off;
            c->ids.len = ids_off;
            return PD_OK;
        }
    *s = (pd_tok_cache_slot_t){h, (uint32_t)word_off, (uint32_t)n, (uint32_t)ids_off,
                               (uint32_t)(out->len - before)};
    c->used++;
    return PD_OK;
}

/* Allocate the cache's table (called once at load). */
pd_status_t pd_tok_cache_alloc(pd_tok_cache_t *c)
{
    c->slots = malloc(PD_TOK_CACHE_SLOTS * sizeof(pd_tok_cache_slot_t));
    if (c->slots == NULL)
        return PD_ERR_NO_MEMORY;
    c->cap = PD_TOK_CACHE_SLOTS;
    pd_tok_cache_reset(c);
    return PD_OK;
}
