/* Reading tokenizer.json into the pipeline of tok_int.h. Every component is checked
 * against what pdkv implements; anything else is refused by its name ("pre-tokenizer
 * BertPreTokenizer is not supported") rather than encoded differently from the
 * reference. */
#include "tok_int.h"

#include "pd/json.h"
#include "pd/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pd_tok_loader {
    pd_tok_hf_t *hf;
    const char *what;
} pd_tok_loader_t;

static const char *pd_tok_jstr(const pd_json_t *obj, const char *key, size_t *len_p)
{
    const char *s = NULL;
    size_t n = 0;
    if (!pd_json_string(pd_json_object_get(obj, key), &s, &n))
        return NULL;
    if (len_p != NULL)
        *len_p = n;
    return s;
}

static bool pd_tok_jbool(const pd_json_t *obj, const char *key, bool dflt)
{
    bool b;
    return pd_json_bool(pd_json_object_get(obj, key), &b) ? b : dflt;
}

static char *pd_tok_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* A {"String": s} or {"Regex": r} pattern. */
static pd_status_t pd_tok_pattern(const pd_tok_loader_t *ld, const pd_json_t *pat,
                                  const char *where, pd_tok_regex_t **re_p, char **str_p,
                                  size_t *str_len_p)
{
    size_t n;
    const char *s;
    if ((s = pd_tok_jstr(pat, "Regex", &n)) != NULL)
        return pd_tok_regex_compile(s, n, false, ld->what, re_p);
    if ((s = pd_tok_jstr(pat, "String", &n)) != NULL) {
        if (str_p != NULL) {
            *str_p = pd_tok_dup(s, n);
            *str_len_p = n;
            return *str_p ? PD_OK : PD_ERR_NO_MEMORY;
        }
        return pd_tok_regex_compile(s, n, true, ld->what, re_p);
    }
    pd_log_error("%s: %s: pattern is neither {\"String\": ...} nor {\"Regex\": ...}", ld->what,
                 where);
    return PD_ERR_FORMAT;
}

static pd_status_t pd_tok_unsupported(const pd_tok_loader_t *ld, const char *kind, const char *type)
{
    pd_log_error("%s: %s %s is not supported", ld->what, kind, type ? type : "(without a type)");
    return PD_ERR_UNSUPPORTED;
}

static pd_status_t pd_tok_too_many(const pd_tok_loader_t *ld, const char *kind)
{
    pd_log_error("%s: more than %u %ss", ld->what, PD_TOK_HF_MAX_STAGES, kind);
    return PD_ERR_LIMIT;
}

static pd_status_t pd_tok_prepend_scheme(const pd_tok_loader_t *ld, const pd_json_t *obj,
                                         pd_tok_prepend_t *p)
{
    const char *s = pd_tok_jstr(obj, "prepend_scheme", NULL);
    *p = pd_tok_jbool(obj, "add_prefix_space", true) ? PD_TOK_PREPEND_ALWAYS : PD_TOK_PREPEND_NEVER;
    if (s == NULL)
        return PD_OK;
    if (strcmp(s, "always") == 0)
        *p = PD_TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *p = PD_TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0)
        *p = PD_TOK_PREPEND_NEVER;
    else {
        pd_log_error("%s: Metaspace prepend_scheme \"%s\" is not always, first or never", ld->what,
                     s);
        return PD_ERR_FORMAT;
    }
    return PD_OK;
}

static pd_status_t pd_tok_replacement(const pd_tok_loader_t *ld, const pd_json_t *obj, char *repl,
                                      size_t *len_p)
{
    size_t n = 0;
    const char *s = pd_tok_jstr(obj, "replacement", &n);
    if (s == NULL) {
        s = "\xe2\x96\x81"; /* U+2581 */
        n = 3;
    }
    if (n == 0 || n > 4 || pd_tok_utf8_next((const unsigned char *)s, n, NULL) != n) {
        pd_log_error("%s: Metaspace replacement must be one character", ld->what);
        return PD_ERR_FORMAT;
    }
    memcpy(repl, s, n);
    *len_p = n;
    return PD_OK;
}

/* ---- normalizers ---- */

static pd_status_t pd_tok_load_norm(pd_tok_loader_t *ld, const pd_json_t *v)
{
    pd_tok_hf_t *hf = ld->hf;
    if (pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    const char *type = pd_tok_jstr(v, "type", NULL);
    if (type != NULL && strcmp(type, "Sequence") == 0) {
        const pd_json_t *list = pd_json_object_get(v, "normalizers");
        for (size_t i = 0; i < pd_json_len(list); i++) {
            pd_status_t st = pd_tok_load_norm(ld, pd_json_array_at(list, i));
            if (st != PD_OK)
                return st;
        }
        return PD_OK;
    }
    if (hf->n_norms == PD_TOK_HF_MAX_STAGES)
        return pd_tok_too_many(ld, "normalizer");
    pd_tok_norm_t *nm = &hf->norms[hf->n_norms];
    memset(nm, 0, sizeof(*nm));
    if (type == NULL)
        return pd_tok_unsupported(ld, "normalizer", NULL);
    static const struct {
        const char *name;
        pd_tok_norm_kind_t kind;
    } simple[] = {{"NFC", PD_TOK_NORM_NFC},
                  {"NFD", PD_TOK_NORM_NFD},
                  {"NFKC", PD_TOK_NORM_NFKC},
                  {"NFKD", PD_TOK_NORM_NFKD},
                  {"Lowercase", PD_TOK_NORM_LOWERCASE},
                  {"StripAccents", PD_TOK_NORM_STRIP_ACCENTS}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (strcmp(type, simple[i].name) == 0) {
            nm->kind = simple[i].kind;
            hf->n_norms++;
            return PD_OK;
        }
    if (strcmp(type, "Prepend") == 0) {
        size_t n = 0;
        const char *s = pd_tok_jstr(v, "prepend", &n);
        if (s == NULL) {
            pd_log_error("%s: normalizer Prepend without a \"prepend\" string", ld->what);
            return PD_ERR_FORMAT;
        }
        nm->kind = PD_TOK_NORM_PREPEND;
        if ((nm->str = pd_tok_dup(s, n)) == NULL)
            return PD_ERR_NO_MEMORY;
        nm->str_len = n;
    } else if (strcmp(type, "Replace") == 0) {
        size_t n = 0;
        const char *s = pd_tok_jstr(v, "content", &n);
        if (s == NULL) {
            pd_log_error("%s: normalizer Replace without a \"content\" string", ld->what);
            return PD_ERR_FORMAT;
        }
        nm->kind = PD_TOK_NORM_REPLACE;
        if ((nm->str = pd_tok_dup(s, n)) == NULL)
            return PD_ERR_NO_MEMORY;
        nm->str_len = n;
        hf->n_norms++; /* owned from here, freed with the rest */
        return pd_tok_pattern(ld, pd_json_object_get(v, "pattern"), "normalizer Replace", &nm->re,
                              &nm->pat, &nm->pat_len);
    } else if (strcmp(type, "Strip") == 0) {
        nm->kind = PD_TOK_NORM_STRIP;
        nm->left = pd_tok_jbool(v, "strip_left", true);
        nm->right = pd_tok_jbool(v, "strip_right", true);
    } else {
        return pd_tok_unsupported(ld, "normalizer", type);
    }
    hf->n_norms++;
    return PD_OK;
}

/* ---- pre-tokenizers ---- */

static const char pd_tok_gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pd_status_t pd_tok_behavior(const pd_tok_loader_t *ld, const pd_json_t *v,
                                   pd_tok_split_behavior_t *b_p)
{
    static const struct {
        const char *name;
        pd_tok_split_behavior_t b;
    } names[] = {{"Removed", PD_TOK_SPLIT_REMOVED},
                 {"Isolated", PD_TOK_SPLIT_ISOLATED},
                 {"MergedWithPrevious", PD_TOK_SPLIT_MERGED_PREV},
                 {"MergedWithNext", PD_TOK_SPLIT_MERGED_NEXT},
                 {"Contiguous", PD_TOK_SPLIT_CONTIGUOUS}};
    const char *s = pd_tok_jstr(v, "behavior", NULL);
    if (s == NULL) {
        *b_p = PD_TOK_SPLIT_ISOLATED;
        return PD_OK;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0) {
            *b_p = names[i].b;
            return PD_OK;
        }
    pd_log_error("%s: split behavior \"%s\" is not supported", ld->what, s);
    return PD_ERR_UNSUPPORTED;
}

static pd_status_t pd_tok_load_pre(pd_tok_loader_t *ld, const pd_json_t *v)
{
    pd_tok_hf_t *hf = ld->hf;
    pd_status_t st = PD_OK;
    if (pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    const char *type = pd_tok_jstr(v, "type", NULL);
    if (type != NULL && strcmp(type, "Sequence") == 0) {
        const pd_json_t *list = pd_json_object_get(v, "pretokenizers");
        for (size_t i = 0; i < pd_json_len(list) && st == PD_OK; i++)
            st = pd_tok_load_pre(ld, pd_json_array_at(list, i));
        return st;
    }
    if (hf->n_pres == PD_TOK_HF_MAX_STAGES)
        return pd_tok_too_many(ld, "pre-tokenizer");
    pd_tok_pre_t *pre = &hf->pres[hf->n_pres];
    memset(pre, 0, sizeof(*pre));
    if (type == NULL)
        return pd_tok_unsupported(ld, "pre-tokenizer", NULL);
    if (strcmp(type, "Split") == 0) {
        pre->kind = PD_TOK_PRE_SPLIT;
        pre->invert = pd_tok_jbool(v, "invert", false);
        if ((st = pd_tok_behavior(ld, v, &pre->behavior)) != PD_OK)
            return st;
        st = pd_tok_pattern(ld, pd_json_object_get(v, "pattern"), "pre-tokenizer Split", &pre->re,
                            NULL, NULL);
    } else if (strcmp(type, "ByteLevel") == 0) {
        pre->kind = PD_TOK_PRE_BYTELEVEL;
        pre->add_prefix_space = pd_tok_jbool(v, "add_prefix_space", true);
        if (pd_tok_jbool(v, "use_regex", true))
            st = pd_tok_regex_compile(pd_tok_gpt2_re, sizeof(pd_tok_gpt2_re) - 1, false, ld->what,
                                      &pre->re);
    } else if (strcmp(type, "Metaspace") == 0) {
        pre->kind = PD_TOK_PRE_METASPACE;
        pre->split = pd_tok_jbool(v, "split", true);
        if ((st = pd_tok_replacement(ld, v, pre->repl, &pre->repl_len)) == PD_OK)
            st = pd_tok_prepend_scheme(ld, v, &pre->prepend);
    } else if (strcmp(type, "Digits") == 0) {
        pre->kind = PD_TOK_PRE_DIGITS;
        pre->behavior = pd_tok_jbool(v, "individual_digits", false) ? PD_TOK_SPLIT_ISOLATED
                                                                    : PD_TOK_SPLIT_CONTIGUOUS;
        st = pd_tok_regex_compile("\\p{N}", 5, false, ld->what, &pre->re);
    } else if (strcmp(type, "Whitespace") == 0) {
        pre->kind = PD_TOK_PRE_WHITESPACE;
        pre->behavior = PD_TOK_SPLIT_REMOVED;
        pre->invert = true;
        st = pd_tok_regex_compile("\\w+|[^\\w\\s]+", 12, false, ld->what, &pre->re);
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        pre->kind = PD_TOK_PRE_WSPLIT;
        pre->behavior = PD_TOK_SPLIT_REMOVED;
        st = pd_tok_regex_compile("\\s", 2, false, ld->what, &pre->re);
    } else if (strcmp(type, "Punctuation") == 0) {
        static const char punct[] = "[\\p{P}!-/:-@\\[-`{-~]";
        pre->kind = PD_TOK_PRE_PUNCT;
        if ((st = pd_tok_behavior(ld, v, &pre->behavior)) == PD_OK)
            st = pd_tok_regex_compile(punct, sizeof(punct) - 1, false, ld->what, &pre->re);
    } else {
        return pd_tok_unsupported(ld, "pre-tokenizer", type);
    }
    hf->n_pres++;
    return st;
}

/* ---- decoders ---- */

static pd_status_t pd_tok_load_dec(pd_tok_loader_t *ld, const pd_json_t *v)
{
    pd_tok_hf_t *hf = ld->hf;
    pd_status_t st = PD_OK;
    if (pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    hf->has_decoder = true;
    const char *type = pd_tok_jstr(v, "type", NULL);
    if (type != NULL && strcmp(type, "Sequence") == 0) {
        const pd_json_t *list = pd_json_object_get(v, "decoders");
        for (size_t i = 0; i < pd_json_len(list) && st == PD_OK; i++)
            st = pd_tok_load_dec(ld, pd_json_array_at(list, i));
        return st;
    }
    if (hf->n_decs == PD_TOK_HF_MAX_STAGES)
        return pd_tok_too_many(ld, "decoder");
    pd_tok_dec_t *d = &hf->decs[hf->n_decs];
    memset(d, 0, sizeof(*d));
    if (type == NULL)
        return pd_tok_unsupported(ld, "decoder", NULL);
    if (strcmp(type, "ByteLevel") == 0) {
        d->kind = PD_TOK_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->kind = PD_TOK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = PD_TOK_DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        size_t n = 0;
        const char *s = pd_tok_jstr(v, "content", &n);
        uint64_t a = 0, b = 0;
        (void)pd_json_u64(pd_json_object_get(v, "start"), &a);
        (void)pd_json_u64(pd_json_object_get(v, "stop"), &b);
        if (s == NULL || n == 0 || pd_tok_utf8_next((const unsigned char *)s, n, NULL) != n ||
            a > 1024 || b > 1024) {
            pd_log_error("%s: decoder Strip needs one character and small start/stop", ld->what);
            return PD_ERR_FORMAT;
        }
        d->kind = PD_TOK_DEC_STRIP;
        if ((d->str = pd_tok_dup(s, n)) == NULL)
            return PD_ERR_NO_MEMORY;
        d->str_len = n;
        d->start = (uint32_t)a;
        d->stop = (uint32_t)b;
    } else if (strcmp(type, "Replace") == 0) {
        size_t n = 0, pn = 0;
        const char *s = pd_tok_jstr(v, "content", &n);
        const char *p = pd_tok_jstr(pd_json_object_get(v, "pattern"), "String", &pn);
        if (s == NULL || p == NULL || pn == 0) {
            pd_log_error("%s: decoder Replace needs a String pattern and a content (a Regex "
                         "pattern is not supported)",
                         ld->what);
            return PD_ERR_UNSUPPORTED;
        }
        d->kind = PD_TOK_DEC_REPLACE;
        d->str = pd_tok_dup(s, n);
        d->pat = pd_tok_dup(p, pn);
        if (d->str == NULL || d->pat == NULL) {
            free(d->str);
            free(d->pat);
            return PD_ERR_NO_MEMORY;
        }
        d->str_len = n;
        d->pat_len = pn;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = PD_TOK_DEC_METASPACE;
        if ((st = pd_tok_replacement(ld, v, d->repl, &d->repl_len)) == PD_OK)
            st = pd_tok_prepend_scheme(ld, v, &d->prepend);
    } else {
        return pd_tok_unsupported(ld, "decoder", type);
    }
    hf->n_decs++;
    return st;
}

/* ---- post-processors ---- */

static pd_status_t pd_tok_post_add(pd_tok_loader_t *ld, bool before, int32_t id)
{
    pd_tok_hf_t *hf = ld->hf;
    uint32_t *n = before ? &hf->n_pre_ids : &hf->n_post_ids;
    if (*n == PD_TOK_HF_MAX_SPECIAL) {
        pd_log_error("%s: the post-processor adds more than %u tokens", ld->what,
                     PD_TOK_HF_MAX_SPECIAL);
        return PD_ERR_LIMIT;
    }
    if (id < 0 || (uint32_t)id >= hf->n_ids) {
        pd_log_error("%s: the post-processor adds id %d, outside the vocabulary", ld->what, id);
        return PD_ERR_FORMAT;
    }
    (before ? hf->pre_ids : hf->post_ids)[(*n)++] = id;
    return PD_OK;
}

static pd_status_t pd_tok_load_post(pd_tok_loader_t *ld, const pd_json_t *v, int depth)
{
    pd_status_t st = PD_OK;
    if (pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    const char *type = pd_tok_jstr(v, "type", NULL);
    if (type == NULL)
        return pd_tok_unsupported(ld, "post-processor", NULL);
    if (strcmp(type, "Sequence") == 0 && depth < 4) {
        const pd_json_t *list = pd_json_object_get(v, "processors");
        for (size_t i = 0; i < pd_json_len(list) && st == PD_OK; i++)
            st = pd_tok_load_post(ld, pd_json_array_at(list, i), depth + 1);
        return st;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return PD_OK; /* offsets only */
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        uint64_t cls, sep;
        if (!pd_json_u64(pd_json_array_at(pd_json_object_get(v, "cls"), 1), &cls) ||
            !pd_json_u64(pd_json_array_at(pd_json_object_get(v, "sep"), 1), &sep) ||
            cls > INT32_MAX || sep > INT32_MAX) {
            pd_log_error("%s: post-processor %s without cls/sep ids", ld->what, type);
            return PD_ERR_FORMAT;
        }
        if ((st = pd_tok_post_add(ld, true, (int32_t)cls)) != PD_OK)
            return st;
        return pd_tok_post_add(ld, false, (int32_t)sep);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return pd_tok_unsupported(ld, "post-processor", type);
    const pd_json_t *single = pd_json_object_get(v, "single");
    const pd_json_t *specials = pd_json_object_get(v, "special_tokens");
    bool seen_a = false;
    for (size_t i = 0; i < pd_json_len(single) && st == PD_OK; i++) {
        const pd_json_t *item = pd_json_array_at(single, i);
        const pd_json_t *sp = pd_json_object_get(item, "SpecialToken");
        if (pd_json_object_get(item, "Sequence") != NULL) {
            seen_a = true;
            continue;
        }
        const char *name = pd_tok_jstr(sp, "id", NULL);
        const pd_json_t *ids =
            pd_json_object_get(pd_json_object_get(specials, name ? name : ""), "ids");
        if (name == NULL || pd_json_type(ids) != PD_JSON_ARRAY) {
            pd_log_error("%s: TemplateProcessing names special token \"%s\" without ids", ld->what,
                         name ? name : "?");
            return PD_ERR_FORMAT;
        }
        for (size_t k = 0; k < pd_json_len(ids) && st == PD_OK; k++) {
            uint64_t id;
            if (!pd_json_u64(pd_json_array_at(ids, k), &id) || id > INT32_MAX) {
                pd_log_error("%s: TemplateProcessing: a bad id for \"%s\"", ld->what, name);
                return PD_ERR_FORMAT;
            }
            st = pd_tok_post_add(ld, !seen_a, (int32_t)id);
        }
    }
    return st;
}

/* ---- vocabulary, added tokens, merges ---- */

static pd_status_t pd_tok_load_vocab(pd_tok_loader_t *ld, const pd_json_t *vocab,
                                     const pd_json_t *added)
{
    pd_tok_hf_t *hf = ld->hf;
    uint64_t max_id = 0;
    size_t pool = 0;
    size_t n_vocab = pd_json_len(vocab), n_added = pd_json_len(added);
    if (pd_json_type(vocab) != PD_JSON_OBJECT) {
        pd_log_error("%s: model.vocab is not an object", ld->what);
        return PD_ERR_FORMAT;
    }
    for (size_t i = 0; i < n_vocab + n_added; i++) {
        uint64_t id;
        const pd_json_t *idv = i < n_vocab
                                   ? pd_json_object_value_at(vocab, i)
                                   : pd_json_object_get(pd_json_array_at(added, i - n_vocab), "id");
        const char *s = i < n_vocab
                            ? pd_json_object_key_at(vocab, i)
                            : pd_tok_jstr(pd_json_array_at(added, i - n_vocab), "content", NULL);
        if (!pd_json_u64(idv, &id) || s == NULL) {
            pd_log_error("%s: %s %zu has no integer id or no text", ld->what,
                         i < n_vocab ? "vocabulary entry" : "added token",
                         i < n_vocab ? i : i - n_vocab);
            return PD_ERR_FORMAT;
        }
        if (id >= PD_TOK_HF_MAX_VOCAB) {
            pd_log_error("%s: token id %llu, more than the %u ids allowed", ld->what,
                         (unsigned long long)id, PD_TOK_HF_MAX_VOCAB);
            return PD_ERR_LIMIT;
        }
        max_id = id > max_id ? id : max_id;
    }
    hf->n_ids = (uint32_t)max_id + 1;
    hf->offs = calloc(hf->n_ids, sizeof(uint32_t));
    hf->lens = calloc(hf->n_ids, sizeof(uint32_t));
    hf->flags = calloc(hf->n_ids, 1);
    hf->added = calloc(n_added ? n_added : 1, sizeof(pd_tok_added_t));
    if (hf->offs == NULL || hf->lens == NULL || hf->flags == NULL || hf->added == NULL)
        return PD_ERR_NO_MEMORY;
    /* Sizes first, so that the pool is one allocation. */
    for (size_t i = 0; i < n_vocab; i++)
        pool += strlen(pd_json_object_key_at(vocab, i)) + 1;
    for (size_t i = 0; i < n_added; i++) {
        size_t n = 0;
        (void)pd_tok_jstr(pd_json_array_at(added, i), "content", &n);
        pool += n + 1;
    }
    if (pool > UINT32_MAX) {
        pd_log_error("%s: the vocabulary holds more than 4 GiB of text", ld->what);
        return PD_ERR_LIMIT;
    }
    hf->pool = malloc(pool ? pool : 1);
    if (hf->pool == NULL)
        return PD_ERR_NO_MEMORY;
    size_t w = 0;
    for (size_t i = 0; i < n_vocab; i++) {
        uint64_t id;
        const char *s = pd_json_object_key_at(vocab, i);
        size_t n = 0;
        (void)pd_json_u64(pd_json_object_value_at(vocab, i), &id);
        n = strlen(s);
        if (n > PD_TOK_HF_MAX_TOKEN) {
            pd_log_error("%s: vocabulary entry %zu is %zu bytes long, more than %u", ld->what, i, n,
                         PD_TOK_HF_MAX_TOKEN);
            return PD_ERR_LIMIT;
        }
        if (hf->flags[id] & PD_TOK_ID_VOCAB) {
            pd_log_error("%s: id %llu appears twice in the vocabulary", ld->what,
                         (unsigned long long)id);
            return PD_ERR_FORMAT;
        }
        memcpy(hf->pool + w, s, n + 1);
        hf->offs[id] = (uint32_t)w;
        hf->lens[id] = (uint32_t)n;
        hf->flags[id] |= PD_TOK_ID_PRESENT | PD_TOK_ID_VOCAB;
        w += n + 1;
        if (n > hf->max_token_bytes)
            hf->max_token_bytes = (uint32_t)n;
    }
    for (size_t i = 0; i < n_added; i++) {
        const pd_json_t *a = pd_json_array_at(added, i);
        uint64_t id;
        size_t n = 0;
        const char *s = pd_tok_jstr(a, "content", &n);
        (void)pd_json_u64(pd_json_object_get(a, "id"), &id);
        if (n > PD_TOK_HF_MAX_TOKEN) {
            pd_log_error("%s: added token %zu is %zu bytes long, more than %u", ld->what, i, n,
                         PD_TOK_HF_MAX_TOKEN);
            return PD_ERR_LIMIT;
        }
        pd_tok_added_t *at = &hf->added[hf->n_added++];
        at->id = (int32_t)id;
        at->special = pd_tok_jbool(a, "special", false);
        at->lstrip = pd_tok_jbool(a, "lstrip", false);
        at->rstrip = pd_tok_jbool(a, "rstrip", false);
        at->single_word = pd_tok_jbool(a, "single_word", false);
        at->normalized = pd_tok_jbool(a, "normalized", !at->special);
        memcpy(hf->pool + w, s, n + 1);
        at->content = hf->pool + w;
        at->len = n;
        /* An added token's text is what its id decodes to. */
        hf->offs[id] = (uint32_t)w;
        hf->lens[id] = (uint32_t)n;
        hf->flags[id] |=
            PD_TOK_ID_PRESENT | PD_TOK_ID_ADDED | (at->special ? PD_TOK_ID_SPECIAL : 0);
        w += n + 1;
    }
    return pd_tok_vocab_index(hf);
}

/* Build the tries; normalized tokens are matched in their normalized form. */
static pd_status_t pd_tok_load_tries(pd_tok_loader_t *ld)
{
    pd_tok_hf_t *hf = ld->hf;
    pd_status_t st = PD_OK;
    for (uint32_t i = 0; i < hf->n_added && st == PD_OK; i++) {
        const pd_tok_added_t *at = &hf->added[i];
        if (!at->normalized || hf->n_norms == 0) {
            pd_tok_trie_t *t = at->normalized ? &hf->trie_norm : &hf->trie_raw;
            pd_tok_trie_t *tn = at->normalized ? &hf->trie_norm_ns : &hf->trie_raw_ns;
            st = pd_tok_trie_add(t, at->content, at->len, (int32_t)i);
            if (st == PD_OK && !at->special)
                st = pd_tok_trie_add(tn, at->content, at->len, (int32_t)i);
            continue;
        }
        pd_tok_scratch_t scr = {0};
        const char *ns;
        size_t nn;
        st = pd_tok_normalize(hf, at->content, at->len, &scr, &ns, &nn);
        if (st == PD_OK)
            st = pd_tok_trie_add(&hf->trie_norm, ns, nn, (int32_t)i);
        if (st == PD_OK && !at->special)
            st = pd_tok_trie_add(&hf->trie_norm_ns, ns, nn, (int32_t)i);
        pd_tok_scratch_free(&scr);
    }
    return st;
}

static pd_status_t pd_tok_load_merges(pd_tok_loader_t *ld, const pd_json_t *merges)
{
    pd_tok_hf_t *hf = ld->hf;
    size_t n = pd_json_len(merges);
    char *cat = NULL;
    pd_status_t st;
    if (n > PD_TOK_HF_MAX_MERGES) {
        pd_log_error("%s: %zu merges, more than the %u allowed", ld->what, n, PD_TOK_HF_MAX_MERGES);
        return PD_ERR_LIMIT;
    }
    if ((st = pd_tok_bpe_build(hf, (uint32_t)n)) != PD_OK)
        return st;
    cat = malloc(2 * (size_t)PD_TOK_HF_MAX_TOKEN + 1);
    if (cat == NULL)
        return PD_ERR_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        const pd_json_t *m = pd_json_array_at(merges, i);
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (pd_json_type(m) == PD_JSON_ARRAY && pd_json_len(m) == 2) {
            (void)pd_json_string(pd_json_array_at(m, 0), &a, &la);
            (void)pd_json_string(pd_json_array_at(m, 1), &b, &lb);
        } else if (pd_json_string(m, &a, &la)) {
            const char *sp = memchr(a, ' ', la);
            if (sp != NULL && memchr(sp + 1, ' ', la - (size_t)(sp - a) - 1) == NULL) {
                b = sp + 1;
                lb = la - (size_t)(sp - a) - 1;
                la = (size_t)(sp - a);
            } else {
                a = NULL;
            }
        }
        if (a == NULL || b == NULL || la > PD_TOK_HF_MAX_TOKEN || lb > PD_TOK_HF_MAX_TOKEN) {
            pd_log_error("%s: merge %zu is not a pair of tokens", ld->what, i);
            st = PD_ERR_FORMAT;
            break;
        }
        int32_t ia = pd_tok_vocab_get(hf, a, la), ib = pd_tok_vocab_get(hf, b, lb);
        size_t skip = 0;
        if (hf->cont_prefix_len > 0 && lb >= hf->cont_prefix_len &&
            memcmp(b, hf->cont_prefix, hf->cont_prefix_len) == 0)
            skip = hf->cont_prefix_len;
        memcpy(cat, a, la);
        memcpy(cat + la, b + skip, lb - skip);
        int32_t in = pd_tok_vocab_get(hf, cat, la + lb - skip);
        if (ia < 0 || ib < 0 || in < 0) {
            pd_log_error("%s: merge %zu (\"%.*s\" \"%.*s\") names a token that is not in the "
                         "vocabulary",
                         ld->what, i, (int)(la > 64 ? 64 : la), a, (int)(lb > 64 ? 64 : lb), b);
            st = PD_ERR_FORMAT;
            break;
        }
        pd_tok_merge_put(hf, ia, ib, (uint32_t)i, in);
    }
    free(cat);
    return st;
}

static pd_status_t pd_tok_load_model(pd_tok_loader_t *ld, const pd_json_t *model,
                                     const pd_json_t *added)
{
    pd_tok_hf_t *hf = ld->hf;
    pd_status_t st;
    const char *type = pd_tok_jstr(model, "type", NULL);
    if (type == NULL && pd_json_object_get(model, "merges") != NULL)
        type = "BPE";
    if (type == NULL || strcmp(type, "BPE") != 0)
        return pd_tok_unsupported(ld, "model", type);
    double dropout = 0;
    const pd_json_t *dv = pd_json_object_get(model, "dropout");
    if (pd_json_type(dv) != PD_JSON_NULL && (!pd_json_number(dv, &dropout) || dropout != 0.0)) {
        pd_log_error("%s: BPE dropout is random; pdkv encodes deterministically and refuses it",
                     ld->what);
        return PD_ERR_UNSUPPORTED;
    }
    hf->fuse_unk = pd_tok_jbool(model, "fuse_unk", false);
    hf->byte_fallback = pd_tok_jbool(model, "byte_fallback", false);
    hf->ignore_merges = pd_tok_jbool(model, "ignore_merges", false);
    size_t n;
    const char *s;
    if ((s = pd_tok_jstr(model, "continuing_subword_prefix", &n)) != NULL && n > 0) {
        if ((hf->cont_prefix = pd_tok_dup(s, n)) == NULL)
            return PD_ERR_NO_MEMORY;
        hf->cont_prefix_len = n;
    }
    if ((s = pd_tok_jstr(model, "end_of_word_suffix", &n)) != NULL && n > 0) {
        if ((hf->eow_suffix = pd_tok_dup(s, n)) == NULL)
            return PD_ERR_NO_MEMORY;
        hf->eow_suffix_len = n;
    }
    if ((st = pd_tok_load_vocab(ld, pd_json_object_get(model, "vocab"), added)) != PD_OK)
        return st;
    hf->unk_id = -1;
    if ((s = pd_tok_jstr(model, "unk_token", &n)) != NULL) {
        hf->unk_id = pd_tok_vocab_get(hf, s, n);
        if (hf->unk_id < 0) {
            pd_log_error("%s: unk_token \"%.*s\" is not in the vocabulary", ld->what,
                         (int)(n > 64 ? 64 : n), s);
            return PD_ERR_FORMAT;
        }
    }
    for (unsigned b = 0; b < 256; b++) {
        char name[8], ch[4];
        snprintf(name, sizeof(name), "<0x%02X>", b);
        hf->byte_fallback_id[b] = pd_tok_vocab_get(hf, name, 6);
        size_t k = pd_tok_utf8_put(pd_tok_byte_char((unsigned char)b), ch);
        hf->byte_level_id[b] = pd_tok_vocab_get(hf, ch, k);
    }
    return pd_tok_load_merges(ld, pd_json_object_get(model, "merges"));
}

void pd_tok_hf_destroy(pd_tok_hf_t **hf_p)
{
    if (hf_p == NULL || *hf_p == NULL)
        return;
    pd_tok_hf_t *hf = *hf_p;
    free(hf->pool);
    free(hf->offs);
    free(hf->lens);
    free(hf->flags);
    free(hf->vocab.slots);
    free(hf->added);
    pd_tok_trie_free(&hf->trie_raw);
    pd_tok_trie_free(&hf->trie_norm);
    pd_tok_trie_free(&hf->trie_raw_ns);
    pd_tok_trie_free(&hf->trie_norm_ns);
    for (uint32_t i = 0; i < hf->n_norms; i++) {
        free(hf->norms[i].str);
        free(hf->norms[i].pat);
        pd_tok_regex_free(&hf->norms[i].re);
    }
    free(hf->norms);
    for (uint32_t i = 0; i < hf->n_pres; i++)
        pd_tok_regex_free(&hf->pres[i].re);
    /* A stage that failed half-way may hold a compiled regex past n_pres. */
    if (hf->pres != NULL && hf->n_pres < PD_TOK_HF_MAX_STAGES)
        pd_tok_regex_free(&hf->pres[hf->n_pres].re);
    free(hf->pres);
    for (uint32_t i = 0; i < hf->n_decs; i++) {
        free(hf->decs[i].str);
        free(hf->decs[i].pat);
    }
    free(hf->decs);
    free(hf->merges);
    free(hf->cont_prefix);
    free(hf->eow_suffix);
    pd_tok_cache_free(&hf->cache);
    free(hf);
    *hf_p = NULL;
}

pd_status_t pd_tok_hf_create(const char *text, size_t len, const char *what, pd_tok_hf_t **hf_p)
{
    pd_json_doc_t *doc = NULL;
    pd_json_limits_t lim = pd_json_limits_default;
    pd_status_t st;
    lim.max_bytes = PD_TOK_HF_MAX_FILE;
    lim.max_values = 16u << 20;
    lim.max_str_bytes = PD_TOK_HF_MAX_TOKEN > PD_TOK_HF_MAX_PATTERN ? 1u << 20 : 1u << 20;
    st = pd_json_parse(text, len, &lim, &doc);
    if (st != PD_OK) {
        pd_log_error("%s: not valid JSON within limits: %s", what, pd_json_last_error());
        return st == PD_ERR_LIMIT ? PD_ERR_LIMIT : PD_ERR_FORMAT;
    }
    const pd_json_t *root = pd_json_doc_root(doc);
    pd_tok_hf_t *hf = calloc(1, sizeof(*hf));
    if (hf == NULL) {
        pd_json_doc_destroy(&doc);
        return PD_ERR_NO_MEMORY;
    }
    pd_tok_cache_init(&hf->cache);
    pd_tok_loader_t ld = {hf, what};
    hf->norms = calloc(PD_TOK_HF_MAX_STAGES, sizeof(pd_tok_norm_t));
    hf->pres = calloc(PD_TOK_HF_MAX_STAGES, sizeof(pd_tok_pre_t));
    hf->decs = calloc(PD_TOK_HF_MAX_STAGES, sizeof(pd_tok_dec_t));
    if (hf->norms == NULL || hf->pres == NULL || hf->decs == NULL) {
        st = PD_ERR_NO_MEMORY;
        goto fail;
    }
    if (pd_json_type(root) != PD_JSON_OBJECT ||
        pd_json_type(pd_json_object_get(root, "model")) != PD_JSON_OBJECT) {
        pd_log_error("%s: not a tokenizer.json (no \"model\" object)", what);
        st = PD_ERR_FORMAT;
        goto fail;
    }
    const pd_json_t *added = pd_json_object_get(root, "added_tokens");
    if (pd_json_type(added) != PD_JSON_NULL && pd_json_type(added) != PD_JSON_ARRAY) {
        pd_log_error("%s: added_tokens is not an array", what);
        st = PD_ERR_FORMAT;
        goto fail;
    }
    if ((st = pd_tok_load_model(&ld, pd_json_object_get(root, "model"), added)) != PD_OK ||
        (st = pd_tok_load_norm(&ld, pd_json_object_get(root, "normalizer"))) != PD_OK ||
        (st = pd_tok_load_pre(&ld, pd_json_object_get(root, "pre_tokenizer"))) != PD_OK ||
        (st = pd_tok_load_post(&ld, pd_json_object_get(root, "post_processor"), 0)) != PD_OK ||
        (st = pd_tok_load_dec(&ld, pd_json_object_get(root, "decoder"))) != PD_OK ||
        (st = pd_tok_load_tries(&ld)) != PD_OK || (st = pd_tok_cache_alloc(&hf->cache)) != PD_OK)
        goto fail;
    if (pd_json_type(pd_json_object_get(root, "truncation")) != PD_JSON_NULL ||
        pd_json_type(pd_json_object_get(root, "padding")) != PD_JSON_NULL)
        pd_log_info("%s: truncation and padding settings are ignored", what);
    pd_json_doc_destroy(&doc);
    *hf_p = hf;
    return PD_OK;
fail:
    pd_json_doc_destroy(&doc);
    pd_tok_hf_destroy(&hf);
    return st;
}
