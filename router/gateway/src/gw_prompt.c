/* Prompts: the built-in chat template, tokenization (in the gateway, never on the router's
 * loop), and cache breakpoints turned from byte offsets of the rendered text into token
 * offsets of the prompt.
 *
 * The built-in template is plain text, one turn per line, so that any model reads it and
 * `pdctl generate -p` of the same text gives the same tokens:
 *
 *   System: <system text>\n
 *   User: <text>\n
 *   Assistant: <text>\n
 *   Assistant:                  <- the generation prompt
 *
 * A breakpoint placed after a block covers the tokens that lie wholly inside the text
 * before it, so a token that straddles the boundary is not cached; that keeps the cached
 * prefix identical whatever text follows it. */
#include "gw_int.h"

#include <stdlib.h>
#include <string.h>

bool pd_gw_prompt_turn_begin(pd_gw_prompt_t *p, const char *role)
{
    return pd_gw_buf_printf(&p->text, "%s: ", role);
}

bool pd_gw_prompt_turn_text(pd_gw_prompt_t *p, const char *text, size_t len)
{
    return pd_gw_buf_append(&p->text, text, len);
}

bool pd_gw_prompt_turn_end(pd_gw_prompt_t *p)
{
    return pd_gw_buf_append(&p->text, "\n", 1);
}

bool pd_gw_prompt_generation(pd_gw_prompt_t *p)
{
    return pd_gw_buf_append(&p->text, "Assistant:", 10);
}

pd_status_t pd_gw_prompt_break(pd_gw_prompt_t *p, uint32_t ttl_s)
{
    if (p->n_breaks == PD_PROTO_MAX_BREAKPOINTS)
        return PD_ERR_LIMIT;
    p->breaks[p->n_breaks] = (uint32_t)p->text.len;
    p->break_ttl_s[p->n_breaks] = ttl_s;
    p->n_breaks++;
    return PD_OK;
}

void pd_gw_prompt_cleanup(pd_gw_prompt_t *p)
{
    pd_gw_buf_cleanup(&p->text);
    p->n_breaks = 0;
}

static void pd_gw_prompt_too_long(pd_gw_err_t *err)
{
    pd_gw_err_set(err, 413, "invalid_request_error", "request_too_large",
                  "the prompt is longer than %u tokens", PD_PROTO_MAX_PROMPT_TOKENS);
}

/* BOS + encode(text, len) into req->prompt. */
static pd_status_t pd_gw_prompt_encode(pd_gw_req_t *req, const char *text, size_t len,
                                       pd_gw_err_t *err)
{
    int32_t *ids = malloc(PD_PROTO_MAX_PROMPT_TOKENS * sizeof(*ids));
    size_t n = 0;
    if (ids == NULL) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    pd_status_t st =
        pd_tokenizer_encode(req->gw->tok, text, len, true, ids, PD_PROTO_MAX_PROMPT_TOKENS, &n);
    if (st != PD_OK) {
        free(ids);
        if (st == PD_ERR_LIMIT)
            pd_gw_prompt_too_long(err);
        else
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "the prompt could not be tokenized: %s", pd_status_str(st));
        return st;
    }
    /* Keep only what the prompt uses: a request may wait minutes for its answer. */
    int32_t *fit = realloc(ids, (n > 0 ? n : 1) * sizeof(*ids));
    free(req->prompt);
    req->prompt = fit != NULL ? fit : ids;
    req->n_prompt = (uint32_t)n;
    return PD_OK;
}

/* How many leading tokens of the prompt decode to at most `bytes` bytes of the text. */
static uint32_t pd_gw_prompt_tokens_within(const pd_gw_req_t *req, uint32_t bytes)
{
    size_t at = 0;
    uint32_t k = 0;
    for (; k < req->n_prompt; k++) {
        const char *piece;
        size_t len = 0;
        if (pd_tokenizer_piece(req->gw->tok, k > 0 ? req->prompt[k - 1] : -1, req->prompt[k],
                               &piece, &len) != PD_OK)
            break;
        if (at + len > bytes)
            break;
        at += len;
    }
    return k;
}

pd_status_t pd_gw_prompt_tokenize(pd_gw_req_t *req, pd_gw_prompt_t *p, pd_gw_err_t *err)
{
    pd_status_t st = pd_gw_prompt_encode(req, pd_gw_buf_data(&p->text), p->text.len, err);
    if (st != PD_OK || p->n_breaks == 0)
        return st;
    pd_proto_cache_t *c = &req->cache;
    memset(c, 0, sizeof(*c));
    c->mode = PD_PROTO_CACHE_EXPLICIT;
    for (uint32_t i = 0; i < p->n_breaks; i++) {
        uint32_t off = pd_gw_prompt_tokens_within(req, p->breaks[i]);
        if (off == 0)
            continue;
        /* Two blocks that end at the same token share a breakpoint, at the longer ttl. */
        if (c->n_breakpoints > 0 && c->breakpoints[c->n_breakpoints - 1].offset_tokens >= off) {
            pd_proto_breakpoint_t *last = &c->breakpoints[c->n_breakpoints - 1];
            if (p->break_ttl_s[i] > last->ttl_s)
                last->ttl_s = p->break_ttl_s[i];
            continue;
        }
        c->breakpoints[c->n_breakpoints].offset_tokens = off;
        c->breakpoints[c->n_breakpoints].ttl_s = p->break_ttl_s[i];
        c->n_breakpoints++;
    }
    if (c->n_breakpoints == 0)
        c->mode = PD_PROTO_CACHE_OFF; /* every breakpoint fell before the first token */
    return PD_OK;
}

pd_status_t pd_gw_prompt_from_json(pd_gw_req_t *req, const json_t *prompt, pd_gw_err_t *err)
{
    /* A batch of one is the prompt itself (clients send ["text"] or [[ids]]). */
    if (json_is_array(prompt) && json_array_size(prompt) == 1 &&
        !json_is_integer(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt)) {
        if (json_string_length(prompt) == 0) {
            pd_gw_err_set(err, 400, "invalid_request_error", NULL, "prompt is empty");
            return PD_ERR_INVALID_PARAM;
        }
        return pd_gw_prompt_encode(req, json_string_value(prompt), json_string_length(prompt), err);
    }
    if (!json_is_array(prompt) || json_array_size(prompt) == 0) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "prompt must be a string or an array of token ids (one prompt per "
                      "request)");
        return PD_ERR_INVALID_PARAM;
    }
    size_t n = json_array_size(prompt);
    if (n > PD_PROTO_MAX_PROMPT_TOKENS) {
        pd_gw_prompt_too_long(err);
        return PD_ERR_LIMIT;
    }
    int32_t *ids = malloc(n * sizeof(*ids));
    if (ids == NULL) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    uint32_t vocab = pd_tokenizer_vocab_size(req->gw->tok);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(prompt, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= (json_int_t)vocab) {
            free(ids);
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "prompt[%zu] is not a token id of the vocabulary (0..%u)", i, vocab - 1);
            return PD_ERR_OUT_OF_RANGE;
        }
        ids[i] = (int32_t)id;
    }
    free(req->prompt);
    req->prompt = ids;
    req->n_prompt = (uint32_t)n;
    return PD_OK;
}
