/* tokenizer.json encoding: added tokens are found in the text first (leftmost-longest,
 * as the reference's Aho-Corasick automaton finds them), the text between them is
 * normalized, split again on the added tokens that match normalized text, pre-tokenized
 * and run through BPE; the post-processor's tokens go around the result. */
#include "tok_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- added-token trie ---- */

static pd_status_t pd_tok_trie_node(pd_tok_trie_t *t, uint32_t *node_p)
{
    if (t->n_nodes == t->cap_nodes) {
        uint32_t cap = t->cap_nodes ? t->cap_nodes * 2 : 64;
        uint32_t *cf = realloc(t->child_first, cap * sizeof(uint32_t));
        if (cf == NULL)
            return PD_ERR_NO_MEMORY;
        t->child_first = cf;
        int32_t *na = realloc(t->node_added, cap * sizeof(int32_t));
        if (na == NULL)
            return PD_ERR_NO_MEMORY;
        t->node_added = na;
        t->cap_nodes = cap;
    }
    t->child_first[t->n_nodes] = UINT32_MAX;
    t->node_added[t->n_nodes] = -1;
    *node_p = t->n_nodes++;
    return PD_OK;
}

static uint32_t pd_tok_trie_child(const pd_tok_trie_t *t, uint32_t node, unsigned char b)
{
    for (uint32_t e = t->child_first[node]; e != UINT32_MAX; e = t->edge_next[e])
        if (t->edge_byte[e] == b)
            return t->edge_node[e];
    return UINT32_MAX;
}

pd_status_t pd_tok_trie_add(pd_tok_trie_t *t, const char *s, size_t n, int32_t added_index)
{
    pd_status_t st;
    uint32_t node = 0;
    if (n == 0)
        return PD_OK; /* an empty added token can never match */
    if (t->n_nodes == 0 && (st = pd_tok_trie_node(t, &node)) != PD_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        uint32_t next = pd_tok_trie_child(t, node, b);
        if (next == UINT32_MAX) {
            if ((st = pd_tok_trie_node(t, &next)) != PD_OK)
                return st;
            if (t->n_edges == t->cap_edges) {
                uint32_t cap = t->cap_edges ? t->cap_edges * 2 : 64;
                uint32_t *en = realloc(t->edge_next, cap * sizeof(uint32_t));
                if (en == NULL)
                    return PD_ERR_NO_MEMORY;
                t->edge_next = en;
                uint32_t *nd = realloc(t->edge_node, cap * sizeof(uint32_t));
                if (nd == NULL)
                    return PD_ERR_NO_MEMORY;
                t->edge_node = nd;
                unsigned char *eb = realloc(t->edge_byte, cap);
                if (eb == NULL)
                    return PD_ERR_NO_MEMORY;
                t->edge_byte = eb;
                t->cap_edges = cap;
            }
            uint32_t e = t->n_edges++;
            t->edge_byte[e] = b;
            t->edge_node[e] = next;
            t->edge_next[e] = t->child_first[node];
            t->child_first[node] = e;
        }
        node = next;
    }
    /* The first token with this content wins, as in the reference's map. */
    if (t->node_added[node] < 0)
        t->node_added[node] = added_index;
    t->first_byte[(unsigned char)s[0]] = true;
    t->empty = false;
    return PD_OK;
}

int32_t pd_tok_trie_find(const pd_tok_trie_t *t, const char *s, size_t n, size_t start,
                         size_t *ms_p, size_t *me_p)
{
    if (t->n_nodes == 0)
        return -1;
    for (size_t i = start; i < n; i++) {
        if (!t->first_byte[(unsigned char)s[i]])
            continue;
        uint32_t node = 0;
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            node = pd_tok_trie_child(t, node, (unsigned char)s[j]);
            if (node == UINT32_MAX)
                break;
            if (t->node_added[node] >= 0) {
                best = t->node_added[node];
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms_p = i;
            *me_p = best_end;
            return best;
        }
    }
    return -1;
}

void pd_tok_trie_free(pd_tok_trie_t *t)
{
    free(t->child_first);
    free(t->node_added);
    free(t->edge_next);
    free(t->edge_node);
    free(t->edge_byte);
    memset(t, 0, sizeof(*t));
}

/* ---- added-token splitting ---- */

static bool pd_tok_is_ws(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* The code point that ends at s[n) (n > 0). */
static uint32_t pd_tok_last_cp(const char *s, size_t n, size_t *len_p)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t a = n - 1;
    while (a > 0 && (u[a] & 0xc0) == 0x80 && n - a < 4)
        a--;
    uint32_t cp = 0;
    size_t k = pd_tok_utf8_next(u + a, n - a, &cp);
    *len_p = k ? k : 1;
    return k ? cp : u[n - 1];
}

/* A "word" character for single_word: alphanumeric or underscore (ASCII and Latin-1 are
 * enough to decide the boundaries the added tokens in use need). */
static bool pd_tok_is_word_cp(uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_' || cp >= 0xc0;
}

typedef pd_status_t (*pd_tok_section_fn)(void *arg, const char *s, size_t n, size_t off,
                                         int32_t added_id);

/* Byte ranges of the raw text in which special tokens read as text (none: n 0). */
typedef struct pd_tok_untrusted {
    const pd_tokenizer_span_t *spans;
    size_t n;
} pd_tok_untrusted_t;

static bool pd_tok_untrusted_overlaps(const pd_tok_untrusted_t *u, size_t start, size_t end)
{
    for (size_t i = 0; u != NULL && i < u->n; i++)
        if (u->spans[i].offset < end && start < u->spans[i].offset + u->spans[i].len)
            return true;
    return false;
}

/* Split s into sections between added-token matches of trie; calls fn for every section
 * (added_id -1) and every added token (its id), in order. */
static pd_status_t pd_tok_split_added(const pd_tok_hf_t *hf, const pd_tok_trie_t *trie,
                                      const char *s, size_t n, const pd_tok_untrusted_t *u,
                                      pd_tok_section_fn fn, void *arg)
{
    size_t start_offset = 0, pos = 0;
    pd_status_t st;
    while (pos < n) {
        size_t ms, me;
        int32_t idx = pd_tok_trie_find(trie, s, n, pos, &ms, &me);
        if (idx < 0)
            break;
        const pd_tok_added_t *at = &hf->added[idx];
        if (at->special && pd_tok_untrusted_overlaps(u, ms, me)) {
            pos = ms + 1; /* plain text here: look for a match that starts later */
            continue;
        }
        pos = me;
        if (at->single_word) {
            size_t k;
            bool start_ok = ms == 0 || !pd_tok_is_word_cp(pd_tok_last_cp(s, ms, &k));
            uint32_t next_cp = 0;
            bool stop_ok = me == n ||
                           pd_tok_utf8_next((const unsigned char *)s + me, n - me, &next_cp) == 0 ||
                           !pd_tok_is_word_cp(next_cp);
            if (!start_ok || !stop_ok)
                continue;
        }
        if (at->lstrip) {
            size_t a = ms, k;
            while (a > start_offset && pd_tok_is_ws(pd_tok_last_cp(s, a, &k)))
                a -= k;
            ms = a;
        }
        if (at->rstrip) {
            uint32_t cp;
            size_t k;
            while (me < n && (k = pd_tok_utf8_next((const unsigned char *)s + me, n - me, &cp)) &&
                   pd_tok_is_ws(cp))
                me += k;
            pos = me;
        }
        if (ms > start_offset &&
            (st = fn(arg, s + start_offset, ms - start_offset, start_offset, -1)) != PD_OK)
            return st;
        if ((st = fn(arg, s + ms, me - ms, ms, at->id)) != PD_OK)
            return st;
        start_offset = me;
    }
    if (start_offset < n)
        return fn(arg, s + start_offset, n - start_offset, start_offset, -1);
    return PD_OK;
}

typedef struct pd_tok_enc {
    pd_tok_hf_t *hf;
    unsigned flags;
    bool use_cache;
    bool first; /* the current raw section starts the text */
    pd_tok_ids_t *out;
    const pd_tok_untrusted_t *untrusted; /* NULL: none */
    pd_tok_scratch_t scr;
    pd_tok_pieces_t pieces;
} pd_tok_enc_t;

static pd_status_t pd_tok_enc_normalized(void *arg, const char *s, size_t n, size_t off,
                                         int32_t added_id)
{
    pd_tok_enc_t *e = arg;
    if (added_id >= 0)
        return pd_tok_ids_push(e->out, added_id);
    e->pieces.len = 0;
    pd_status_t st = pd_tok_pieces_push(&e->pieces, s, n, false, e->first && off == 0);
    if (st == PD_OK)
        st = pd_tok_pretokenize(e->hf, &e->pieces, &e->scr);
    for (size_t i = 0; i < e->pieces.len && st == PD_OK; i++) {
        const pd_tok_piece_t *pc = &e->pieces.p[i];
        st = pd_tok_bpe_word(e->hf, pc->p, pc->len, pc->byte_level, e->use_cache, e->out);
    }
    return st;
}

static pd_status_t pd_tok_enc_raw(void *arg, const char *s, size_t n, size_t off, int32_t added_id)
{
    pd_tok_enc_t *e = arg;
    if (added_id >= 0)
        return pd_tok_ids_push(e->out, added_id);
    const char *ns;
    size_t nn;
    pd_status_t st = pd_tok_normalize(e->hf, s, n, &e->scr, &ns, &nn);
    if (st != PD_OK || nn == 0)
        return st;
    e->first = off == 0;
    /* Offsets of the normalized text no longer map onto the raw one: a section that
     * holds untrusted bytes matches no special token after normalization. */
    bool as_text = (e->flags & PD_TOKENIZE_SPECIAL_AS_TEXT) != 0 ||
                   pd_tok_untrusted_overlaps(e->untrusted, off, off + n);
    const pd_tok_trie_t *trie = as_text ? &e->hf->trie_norm_ns : &e->hf->trie_norm;
    return pd_tok_split_added(e->hf, trie, ns, nn, NULL, pd_tok_enc_normalized, e);
}

pd_status_t pd_tok_hf_encode(pd_tok_hf_t *hf, const char *text, size_t len, unsigned flags,
                             pd_tok_ids_t *out)
{
    return pd_tok_hf_encode_spans(hf, text, len, flags, NULL, 0, out);
}

pd_status_t pd_tok_hf_encode_spans(pd_tok_hf_t *hf, const char *text, size_t len, unsigned flags,
                                   const pd_tokenizer_span_t *untrusted, size_t n_untrusted,
                                   pd_tok_ids_t *out)
{
    pd_tok_buf_t clean = {0};
    pd_status_t st = PD_OK;
    pd_tok_untrusted_t u = {.spans = untrusted, .n = n_untrusted};
    pd_tok_enc_t e = {.hf = hf, .flags = flags, .out = out, .untrusted = n_untrusted ? &u : NULL};

    if ((flags & PD_TOKENIZE_ADD_SPECIAL) != 0)
        for (uint32_t i = 0; i < hf->n_pre_ids && st == PD_OK; i++)
            st = pd_tok_ids_push(out, hf->pre_ids[i]);
    if (st != PD_OK)
        return st;
    if (!pd_tok_utf8_valid(text, len)) {
        if ((st = pd_tok_utf8_sanitize(text, len, &clean)) != PD_OK)
            return st;
        text = clean.p;
        len = clean.len;
        /* Replacement characters moved the offsets: read all of it as untrusted. */
        if (n_untrusted > 0) {
            flags |= PD_TOKENIZE_SPECIAL_AS_TEXT;
            e.flags = flags;
            e.untrusted = NULL;
        }
    }
    /* The cache is shared: one encode at a time uses it, others compute. */
    e.use_cache = pthread_mutex_trylock(&hf->cache.lock) == 0;
    const pd_tok_trie_t *trie =
        (flags & PD_TOKENIZE_SPECIAL_AS_TEXT) ? &hf->trie_raw_ns : &hf->trie_raw;
    st = pd_tok_split_added(hf, trie, text, len, e.untrusted, pd_tok_enc_raw, &e);
    if (e.use_cache)
        pthread_mutex_unlock(&hf->cache.lock);
    if (st == PD_OK && (flags & PD_TOKENIZE_ADD_SPECIAL) != 0)
        for (uint32_t i = 0; i < hf->n_post_ids && st == PD_OK; i++)
            st = pd_tok_ids_push(out, hf->post_ids[i]);
    free(e.pieces.p);
    pd_tok_scratch_free(&e.scr);
    pd_tok_buf_free(&clean);
    return st;
}
