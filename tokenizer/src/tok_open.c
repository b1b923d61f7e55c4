/* Opening a tokenizer from whatever a user points at, tokenizer_config.json, and the
 * public calls that dispatch between tokenizer.json and the llama2.c tokenizers. */
#include "tok_int.h"

#include "pd/json.h"
#include "pd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PD_TOK_MAX_TEMPLATE (1u << 20)

static bool pd_tok_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool pd_tok_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool pd_tok_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A token given as "text" or {"content": "text", ...} in tokenizer_config.json. */
static const char *pd_tok_cfg_token(const pd_json_t *v)
{
    const char *s = NULL;
    if (pd_json_string(v, &s, NULL))
        return s;
    if (pd_json_string(pd_json_object_get(v, "content"), &s, NULL))
        return s;
    return NULL;
}

static pd_status_t pd_tok_set_template(pd_tokenizer_t *t, const char *s, size_t n)
{
    free(t->chat_template);
    t->chat_template = malloc(n + 1);
    if (t->chat_template == NULL)
        return PD_ERR_NO_MEMORY;
    memcpy(t->chat_template, s, n);
    t->chat_template[n] = '\0';
    t->chat_template_len = n;
    return PD_OK;
}

/* Control tokens and the chat template from tokenizer_config.json. */
static pd_status_t pd_tok_apply_config(pd_tokenizer_t *t, const char *text, size_t len,
                                       const char *what)
{
    pd_json_doc_t *doc = NULL;
    pd_json_limits_t lim = pd_json_limits_default;
    lim.max_bytes = 64u << 20;
    pd_status_t st = pd_json_parse(text, len, &lim, &doc);
    if (st != PD_OK) {
        pd_log_error("%s: not valid JSON within limits: %s", what, pd_json_last_error());
        return PD_ERR_FORMAT;
    }
    const pd_json_t *root = pd_json_doc_root(doc);
    static const char *const keys[] = {"bos_token", "eos_token", "pad_token"};
    for (int k = 0; k < 3 && st == PD_OK; k++) {
        const char *s = pd_tok_cfg_token(pd_json_object_get(root, keys[k]));
        if (s == NULL)
            continue;
        int32_t id = pd_tokenizer_token_id(t, s, strlen(s));
        if (id < 0) {
            pd_log_error("%s: %s \"%s\" is not a token of the tokenizer", what, keys[k], s);
            st = PD_ERR_FORMAT;
            break;
        }
        if (k == 0) {
            t->bos_id = id;
            free(t->bos_text);
            t->bos_text = strdup(s);
        } else if (k == 1) {
            t->eos_id = id;
            free(t->eos_text);
            t->eos_text = strdup(s);
        } else {
            t->pad_id = id;
        }
        if ((k == 0 && t->bos_text == NULL) || (k == 1 && t->eos_text == NULL))
            st = PD_ERR_NO_MEMORY;
    }
    const pd_json_t *tpl = pd_json_object_get(root, "chat_template");
    const char *s = NULL;
    size_t n = 0;
    if (st == PD_OK && pd_json_type(tpl) == PD_JSON_ARRAY) {
        /* Named templates: take "default". */
        for (size_t i = 0; i < pd_json_len(tpl); i++) {
            const pd_json_t *e = pd_json_array_at(tpl, i);
            const char *name = NULL;
            if (pd_json_string(pd_json_object_get(e, "name"), &name, NULL) &&
                strcmp(name, "default") == 0)
                (void)pd_json_string(pd_json_object_get(e, "template"), &s, &n);
        }
    } else if (st == PD_OK) {
        (void)pd_json_string(tpl, &s, &n);
    }
    if (st == PD_OK && s != NULL)
        st = pd_tok_set_template(t, s, n);
    pd_json_doc_destroy(&doc);
    return st;
}

pd_status_t pd_tokenizer_load_hf_mem(const char *json, size_t len, const char *config_json,
                                     size_t config_len, const char *what, pd_tokenizer_t **tok_p)
{
    if (json == NULL || tok_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_tokenizer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PD_ERR_NO_MEMORY;
    t->bos_id = t->eos_id = t->pad_id = -1;
    t->space_id = -1;
    pd_status_t st = pd_tok_hf_create(json, len, what ? what : "tokenizer.json", &t->hf);
    if (st == PD_OK && config_json != NULL)
        st = pd_tok_apply_config(t, config_json, config_len, "tokenizer_config.json");
    if (st != PD_OK) {
        pd_tokenizer_destroy(&t);
        return st;
    }
    *tok_p = t;
    return PD_OK;
}

/* Load tokenizer.json at json_path with the config files beside it. */
static pd_status_t pd_tok_open_hf(const char *json_path, pd_tokenizer_t **tok_p)
{
    unsigned char *json = NULL, *cfg = NULL, *tpl = NULL;
    size_t json_len = 0, cfg_len = 0, tpl_len = 0;
    char dir[4096], path[4200];
    pd_status_t st = pd_tok_read_file(json_path, &json, &json_len);
    if (st != PD_OK)
        return st;
    snprintf(dir, sizeof(dir), "%s", json_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if (pd_tok_path_exists(path) && (st = pd_tok_read_file(path, &cfg, &cfg_len)) != PD_OK)
        goto out;
    st = pd_tokenizer_load_hf_mem((const char *)json, json_len, (const char *)cfg, cfg_len,
                                  json_path, tok_p);
    if (st != PD_OK)
        goto out;
    /* Newer checkpoints keep the template in its own file, which then wins. */
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    if (pd_tok_path_exists(path)) {
        if ((st = pd_tok_read_file(path, &tpl, &tpl_len)) == PD_OK) {
            if (tpl_len > PD_TOK_MAX_TEMPLATE) {
                pd_log_error("%s: %zu bytes, more than a chat template may have", path, tpl_len);
                st = PD_ERR_LIMIT;
            } else {
                st = pd_tok_set_template(*tok_p, (const char *)tpl, tpl_len);
            }
        }
        if (st != PD_OK)
            pd_tokenizer_destroy(tok_p);
    }
out:
    free(json);
    free(cfg);
    free(tpl);
    return st;
}

pd_status_t pd_tokenizer_open(const char *path, uint32_t vocab_size, pd_tokenizer_t **tok_p)
{
    char buf[4200];
    pd_status_t st;
    if (path == NULL || tok_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (pd_tok_path_is_dir(path)) {
        snprintf(buf, sizeof(buf), "%s/tokenizer.json", path);
        if (!pd_tok_path_exists(buf)) {
            snprintf(buf, sizeof(buf), "%s/tokenizer.bin", path);
            if (!pd_tok_path_exists(buf)) {
                pd_log_error("tokenizer %s: a directory with neither tokenizer.json nor "
                             "tokenizer.bin",
                             path);
                return PD_ERR_NOT_FOUND;
            }
        }
        path = buf;
    }
    if (!pd_tok_ends_with(path, ".json"))
        return pd_tokenizer_load(path, vocab_size, tok_p);
    if ((st = pd_tok_open_hf(path, tok_p)) != PD_OK)
        return st;
    if (vocab_size != 0 && pd_tokenizer_vocab_size(*tok_p) > vocab_size) {
        pd_log_error("tokenizer %s: ids up to %u, the model has %u", path,
                     pd_tokenizer_vocab_size(*tok_p) - 1, vocab_size);
        pd_tokenizer_destroy(tok_p);
        return PD_ERR_FORMAT;
    }
    return PD_OK;
}

const char *pd_tokenizer_bos_text(const pd_tokenizer_t *tok)
{
    return tok->bos_text != NULL ? tok->bos_text : tok->hf == NULL ? "<s>" : "";
}

const char *pd_tokenizer_eos_text(const pd_tokenizer_t *tok)
{
    return tok->eos_text != NULL ? tok->eos_text : tok->hf == NULL ? "</s>" : "";
}

const char *pd_tokenizer_chat_template(const pd_tokenizer_t *tok, size_t *len_p)
{
    if (len_p != NULL)
        *len_p = tok->chat_template_len;
    return tok->chat_template;
}

int32_t pd_tokenizer_token_id(const pd_tokenizer_t *tok, const char *text, size_t len)
{
    const pd_tok_hf_t *hf = tok->hf;
    if (hf == NULL) {
        for (uint32_t i = 0; i < tok->vocab_size; i++)
            if (tok->lens[i] == len && memcmp(tok->pool + tok->offs[i], text, len) == 0)
                return (int32_t)i;
        return -1;
    }
    for (uint32_t i = 0; i < hf->n_added; i++)
        if (hf->added[i].len == len && memcmp(hf->added[i].content, text, len) == 0)
            return hf->added[i].id;
    return pd_tok_vocab_get(hf, text, len);
}

bool pd_tokenizer_is_special(const pd_tokenizer_t *tok, int32_t id)
{
    if (tok->hf == NULL)
        return id == tok->bos_id || id == tok->eos_id || id == 0;
    return id >= 0 && (uint32_t)id < tok->hf->n_ids && (tok->hf->flags[id] & PD_TOK_ID_SPECIAL);
}

size_t pd_tokenizer_max_tokens(const pd_tokenizer_t *tok, size_t len)
{
    /* One token per byte at most (byte fallback or byte-level), plus the replacement
     * of ill-formed bytes (3 bytes for 1), a prepended word boundary and the
     * post-processor's tokens. */
    if (tok->hf == NULL)
        return len + 2;
    return 3 * len + 4 + tok->hf->n_pre_ids + tok->hf->n_post_ids;
}

pd_status_t pd_tokenizer_encode(const pd_tokenizer_t *tok, const char *text, size_t len,
                                unsigned flags, int32_t *ids_p, size_t max_ids, size_t *n_ids_p)
{
    return pd_tokenizer_encode_untrusted(tok, text, len, flags, NULL, 0, ids_p, max_ids, n_ids_p);
}

pd_status_t pd_tokenizer_encode_untrusted(const pd_tokenizer_t *tok, const char *text, size_t len,
                                          unsigned flags, const pd_tokenizer_span_t *untrusted,
                                          size_t n_untrusted, int32_t *ids_p, size_t max_ids,
                                          size_t *n_ids_p)
{
    if (tok == NULL || (text == NULL && len > 0) || n_ids_p == NULL ||
        (ids_p == NULL && max_ids > 0) || (untrusted == NULL && n_untrusted > 0))
        return PD_ERR_INVALID_PARAM;
    if (tok->hf == NULL)
        return pd_tok_l2c_encode(tok, text, len, (flags & PD_TOKENIZE_ADD_SPECIAL) != 0, ids_p,
                                 max_ids, n_ids_p);
    pd_tok_ids_t ids = {0};
    /* The tokenizer is logically const: only its word cache changes, under a lock. */
    pd_status_t st =
        pd_tok_hf_encode_spans(tok->hf, text ? text : "", len, flags, untrusted, n_untrusted, &ids);
    if (st == PD_OK && ids.len > max_ids)
        st = PD_ERR_LIMIT;
    if (st == PD_OK) {
        if (ids.len > 0)
            memcpy(ids_p, ids.p, ids.len * sizeof(int32_t));
        *n_ids_p = ids.len;
    }
    pd_tok_ids_free(&ids);
    return st;
}

/* Decode into a growable buffer: valid UTF-8 for tokenizer.json, raw bytes otherwise. */
static pd_status_t pd_tok_decode_buf(const pd_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                     unsigned flags, pd_tok_buf_t *out)
{
    if (tok->hf != NULL)
        return pd_tok_hf_decode(tok->hf, ids, n_ids, flags, out);
    return pd_tok_l2c_decode(tok, -1, ids, n_ids, out);
}

pd_status_t pd_tokenizer_decode(const pd_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                unsigned flags, char *buf, size_t cap, size_t *len_p)
{
    pd_tok_buf_t out = {0};
    if (tok == NULL || (ids == NULL && n_ids > 0) || buf == NULL || cap == 0)
        return PD_ERR_INVALID_PARAM;
    buf[0] = '\0';
    pd_status_t st = pd_tok_decode_buf(tok, ids, n_ids, flags, &out);
    if (st == PD_OK && out.len + 1 > cap)
        st = PD_ERR_LIMIT;
    if (st == PD_OK) {
        memcpy(buf, out.p, out.len);
        buf[out.len] = '\0';
        if (len_p != NULL)
            *len_p = out.len;
    }
    pd_tok_buf_free(&out);
    return st;
}

pd_status_t pd_tokenizer_decode_alloc(const pd_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                      unsigned flags, char **text_p, size_t *len_p)
{
    pd_tok_buf_t out = {0};
    if (tok == NULL || (ids == NULL && n_ids > 0) || text_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t st = pd_tok_decode_buf(tok, ids, n_ids, flags, &out);
    if (st == PD_OK)
        st = pd_tok_buf_reserve(&out, 0);
    if (st != PD_OK) {
        pd_tok_buf_free(&out);
        return st;
    }
    out.p[out.len] = '\0';
    *text_p = out.p;
    if (len_p != NULL)
        *len_p = out.len;
    return PD_OK;
}
