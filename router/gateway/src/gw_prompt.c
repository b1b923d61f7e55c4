/* Prompts: chat rendering, tokenization (in the gateway, never on the router's loop), and
 * cache breakpoints turned from byte offsets of the rendered text into token offsets.
 *
 * A chat request is rendered with the model's chat template (tokenizer_config.json's
 * chat_template, or --chat-template FILE) exactly as `pdctl template` renders the same
 * messages, and tokenized as `pdctl generate --chat` tokenizes it. Without a template the
 * built-in one is plain text, one turn per line, so that any model reads it:
 *
 *   System: <system text>\n
 *   User: <text>\n
 *   Assistant: <text>\n
 *   Assistant:                  <- the generation prompt
 *
 * Special tokens come only from the template's own text: the content of every message is
 * tokenized with special-token strings read as plain text. The bytes of the rendered
 * prompt that are content are found by rendering the messages a second time with a
 * placeholder for each content ("\x1e<index>\x1f", which no template text holds): the
 * text between placeholders is the template's, and each placeholder's stretch of the real
 * rendering is its content (or a piece of it, where the template trims or splits it).
 * The whole prompt is then encoded once with those spans marked untrusted, so the ids are
 * exactly those of encoding the rendered text when the content holds no special-token
 * string; splicing separately encoded pieces would not be (a pre-token may cross the
 * boundary between template text and content). Where a template rewrites content so that
 * it cannot be located this way, the rendering is used as it is only if it holds no more
 * special tokens than the placeholder rendering (the content made none); else the request
 * is refused with a 400, never guessed at.
 *
 * A breakpoint placed after a block covers the tokens that lie wholly inside the text
 * before it, so a token that straddles the boundary is not cached; that keeps the cached
 * prefix identical whatever text follows it. */
#include "gw_int.h"

#include "pd/chat.h"
#include "pd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Placeholder marks: private-use characters U+E000 and U+E001, which no template text
 * holds and which trim and strip (Python's whitespace includes \x1c-\x1f) leave alone. */
#define PD_GW_PH_BEGIN    "\xee\x80\x80"
#define PD_GW_PH_END      "\xee\x80\x81"
#define PD_GW_PH_MARK_LEN 3

pd_status_t pd_gw_prompt_setup(pd_gw_t *gw, const char *file)
{
    char *src = NULL;
    size_t len = 0;
    const char *what;
    if (file != NULL && file[0] != '\0') {
        FILE *f = fopen(file, "rb");
        if (f == NULL) {
            pd_log_error("--chat-template %s: %s", file, strerror(errno));
            return PD_ERR_IO;
        }
        src = malloc(PD_CHAT_MAX_TEMPLATE_BYTES + 1);
        len = src != NULL ? fread(src, 1, PD_CHAT_MAX_TEMPLATE_BYTES + 1, f) : 0;
        bool bad = ferror(f) != 0;
        fclose(f);
        if (src == NULL)
            return PD_ERR_NO_MEMORY;
        if (bad || len > PD_CHAT_MAX_TEMPLATE_BYTES || len == 0) {
            pd_log_error("--chat-template %s: %s", file,
                         bad        ? "read error"
                         : len == 0 ? "empty"
                                    : "larger than 1 MiB");
            free(src);
            return bad ? PD_ERR_IO : PD_ERR_FORMAT;
        }
        what = file;
    } else {
        const char *own = pd_tokenizer_chat_template(gw->tok, &len);
        if (own == NULL) {
            pd_log_info("chat template: the built-in plain-text one (the tokenizer has none)");
            return PD_OK;
        }
        src = malloc(len + 1);
        if (src == NULL)
            return PD_ERR_NO_MEMORY;
        memcpy(src, own, len);
        what = "the tokenizer's chat_template";
    }
    src[len] = '\0';
    /* Parse it now, so a template outside the subset fails the start, not each request. */
    pd_chat_template_t *tpl = NULL;
    pd_status_t st = pd_chat_template_create(src, len, &tpl);
    pd_chat_template_destroy(&tpl);
    if (st != PD_OK) {
        pd_log_error("chat template %s: %s", what, pd_chat_last_error());
        free(src);
        return st;
    }
    gw->chat_tpl = src;
    gw->chat_tpl_len = len;
    pd_log_info("chat template: %s (%zu bytes)", what, len);
    return PD_OK;
}

static bool pd_gw_prompt_span(pd_gw_prompt_t *p, size_t start, size_t end)
{
    pd_tokenizer_span_t sp = {start, end - start};
    return end <= start || pd_gw_buf_append(&p->spans, &sp, sizeof(sp));
}

bool pd_gw_prompt_turn_begin(pd_gw_prompt_t *p, const char *role)
{
    const char *name = strcmp(role, "system") == 0 ? "System"
                       : strcmp(role, "user") == 0 ? "User"
                                                   : "Assistant";
    p->role = role;
    p->content.len = 0;
    p->n_messages++;
    bool ok = pd_gw_buf_printf(&p->text, "%s: ", name);
    p->span_start = p->text.len;
    return ok;
}

bool pd_gw_prompt_turn_text(pd_gw_prompt_t *p, const char *text, size_t len)
{
    return pd_gw_buf_append(&p->text, text, len) && pd_gw_buf_append(&p->content, text, len);
}

/* Close the open turn: its content span, and its message for a chat template. */
static bool pd_gw_prompt_close(pd_gw_prompt_t *p)
{
    if (p->role == NULL)
        return true;
    bool ok = pd_gw_prompt_span(p, p->span_start, p->text.len);
    if (p->messages == NULL)
        p->messages = json_array();
    json_t *m = json_pack("{s:s, s:s%}", "role", p->role, "content",
                          p->content.len > 0 ? pd_gw_buf_data(&p->content) : "", p->content.len);
    ok = ok && m != NULL && p->messages != NULL && json_array_append_new(p->messages, m) == 0;
    p->role = NULL;
    return ok;
}

bool pd_gw_prompt_turn_end(pd_gw_prompt_t *p)
{
    return pd_gw_prompt_close(p) && pd_gw_buf_append(&p->text, "\n", 1);
}

bool pd_gw_prompt_generation(pd_gw_prompt_t *p)
{
    p->generation = true;
    return pd_gw_buf_append(&p->text, "Assistant:", 10);
}

pd_status_t pd_gw_prompt_break(pd_gw_prompt_t *p, uint32_t ttl_s)
{
    if (p->n_breaks == PD_PROTO_MAX_BREAKPOINTS)
        return PD_ERR_LIMIT;
    uint32_t i = p->n_breaks++;
    p->breaks[i] = (uint32_t)p->text.len;
    p->break_ttl_s[i] = ttl_s;
    /* In an open turn: where its content ends so far; after it: the end of the last one. */
    p->break_msg[i] = p->n_messages > 0 ? p->n_messages - 1 : 0;
    p->break_off[i] = p->role != NULL ? (uint32_t)p->content.len : UINT32_MAX;
    return PD_OK;
}

void pd_gw_prompt_cleanup(pd_gw_prompt_t *p)
{
    pd_gw_buf_cleanup(&p->text);
    pd_gw_buf_cleanup(&p->spans);
    pd_gw_buf_cleanup(&p->content);
    json_decref(p->messages);
    p->messages = NULL;
    p->role = NULL;
    p->n_breaks = 0;
}

static void pd_gw_prompt_too_long(pd_gw_err_t *err)
{
    pd_gw_err_set(err, 413, "invalid_request_error", "request_too_large",
                  "the prompt is longer than %u tokens", PD_PROTO_MAX_PROMPT_TOKENS);
}

/* encode(text, len) into req->prompt, special tokens read as text inside the n spans. */
static pd_status_t pd_gw_prompt_encode_spans(pd_gw_req_t *req, const char *text, size_t len,
                                             unsigned flags, const pd_tokenizer_span_t *spans,
                                             size_t n_spans, pd_gw_err_t *err)
{
    int32_t *ids = malloc(PD_PROTO_MAX_PROMPT_TOKENS * sizeof(*ids));
    size_t n = 0;
    if (ids == NULL) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    pd_status_t st = pd_tokenizer_encode_untrusted(req->gw->tok, text, len, flags, spans, n_spans,
                                                   ids, PD_PROTO_MAX_PROMPT_TOKENS, &n);
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

/* BOS + encode(text, len) into req->prompt (a completion prompt: all of it the client's
 * own, special tokens included, as /v1/completions clients expect). */
static pd_status_t pd_gw_prompt_encode(pd_gw_req_t *req, const char *text, size_t len,
                                       pd_gw_err_t *err)
{
    return pd_gw_prompt_encode_spans(req, text, len, PD_TOKENIZE_ADD_SPECIAL, NULL, 0, err);
}

/* How many leading tokens of the prompt lie wholly within its first `bytes` bytes of
 * text: llama2.c and byte tokenizers by their pieces; tokenizer.json (whose pieces depend
 * on their neighbours) as the ids that encoding text[0, bytes) shares with the prompt. */
static uint32_t pd_gw_prompt_tokens_within(const pd_gw_req_t *req, const char *text, uint32_t bytes,
                                           unsigned flags, const pd_tokenizer_span_t *spans,
                                           size_t n_spans)
{
    const char *piece;
    size_t len = 0, at = 0;
    uint32_t k = 0;
    if (req->n_prompt == 0)
        return 0;
    if (pd_tokenizer_piece(req->gw->tok, -1, req->prompt[0], &piece, &len) != PD_ERR_UNSUPPORTED) {
        for (; k < req->n_prompt; k++) {
            if (pd_tokenizer_piece(req->gw->tok, k > 0 ? req->prompt[k - 1] : -1, req->prompt[k],
                                   &piece, &len) != PD_OK)
                break;
            if (at + len > bytes)
                break;
            at += len;
        }
        return k;
    }
    size_t n = 0, n_in = 0;
    pd_tokenizer_span_t *in = malloc((n_spans > 0 ? n_spans : 1) * sizeof(*in));
    int32_t *ids = malloc(((size_t)req->n_prompt + 16) * sizeof(*ids));
    for (size_t i = 0; in != NULL && i < n_spans && spans[i].offset < bytes; i++) {
        in[n_in] = spans[i];
        if (in[n_in].offset + in[n_in].len > bytes)
            in[n_in].len = bytes - in[n_in].offset;
        n_in++;
    }
    /* The prefix may take more ids than the prompt (a straddling token split in two):
     * those past the prompt's length cannot be shared anyway. */
    if (in == NULL || ids == NULL ||
        pd_tokenizer_encode_untrusted(req->gw->tok, text, bytes, flags, in, n_in, ids,
                                      (size_t)req->n_prompt + 16, &n) != PD_OK)
        n = 0;
    /* The shared ids decode to a prefix of text[0, bytes): they lie wholly within it. */
    while (k < n && k < req->n_prompt && ids[k] == req->prompt[k])
        k++;
    free(ids);
    free(in);
    return k;
}

/* Turn the byte offsets of breakpoints into token offsets in req->cache. */
static void pd_gw_prompt_breaks(pd_gw_req_t *req, const pd_gw_prompt_t *p, const uint32_t *bytes,
                                const char *text, unsigned flags, const pd_tokenizer_span_t *spans,
                                size_t n_spans)
{
    pd_proto_cache_t *c = &req->cache;
    memset(c, 0, sizeof(*c));
    c->mode = PD_PROTO_CACHE_EXPLICIT;
    for (uint32_t i = 0; i < p->n_breaks; i++) {
        if (bytes[i] == UINT32_MAX)
            continue; /* its content is nowhere in the prompt */
        uint32_t off = pd_gw_prompt_tokens_within(req, text, bytes[i], flags, spans, n_spans);
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
}

/* Render messages (a JSON array) with the gateway's template. */
static pd_status_t pd_gw_prompt_render(const pd_gw_t *gw, const json_t *messages, bool generation,
                                       char **out_p, size_t *len_p, pd_gw_err_t *err)
{
    char *js = json_dumps(messages, JSON_COMPACT);
    if (js == NULL) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    pd_status_t st = pd_chat_render_json(gw->tok, gw->chat_tpl, gw->chat_tpl_len, js, strlen(js),
                                         generation, out_p, len_p);
    free(js);
    if (st != PD_OK)
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "the model's chat template cannot render these messages: %s",
                      pd_chat_last_error());
    return st;
}

/* Where each message's content lies in a rendering. */
typedef struct pd_gw_located {
    size_t start, len; /* its first stretch in the rendering; len 0 with start SIZE_MAX: none */
    size_t skip;       /* bytes of the content the template left out before it */
} pd_gw_located_t;

/* Match r (the rendering) against q (the same with placeholders): the template's text of q
 * must appear in r in order, and between two pieces of it r holds the content of the
 * placeholder, or a piece of that content. Fills spans and loc; false when r cannot be
 * read that way. */
static bool pd_gw_prompt_locate(const char *q, size_t qn, const char *r, size_t rn,
                                json_t *messages, pd_gw_buf_t *spans, pd_gw_located_t *loc)
{
    size_t qi = 0, ri = 0, n_msg = json_array_size(messages);
    const char *ph = memmem(q, qn, PD_GW_PH_BEGIN, PD_GW_PH_MARK_LEN);
    size_t lit = ph != NULL ? (size_t)(ph - q) : qn;
    if (lit > rn || memcmp(r, q, lit) != 0)
        return false;
    ri = lit;
    qi = lit;
    while (qi < qn) {
        /* The placeholder at qi: U+E000 index U+E001. */
        size_t m = 0, k = qi + PD_GW_PH_MARK_LEN;
        while (k < qn && q[k] >= '0' && q[k] <= '9' && m < n_msg)
            m = m * 10 + (size_t)(q[k++] - '0');
        if (k + PD_GW_PH_MARK_LEN > qn || memcmp(q + k, PD_GW_PH_END, PD_GW_PH_MARK_LEN) != 0 ||
            m >= n_msg)
            return false;
        qi = k + PD_GW_PH_MARK_LEN;
        const char *nx = memmem(q + qi, qn - qi, PD_GW_PH_BEGIN, PD_GW_PH_MARK_LEN);
        bool last = nx == NULL;
        const char *l = q + qi;
        size_t ln = (last ? q + qn : nx) - l;
        json_t *cj = json_object_get(json_array_get(messages, m), "content");
        const char *c = json_string_value(cj);
        size_t cn = json_string_length(cj);
        size_t end = SIZE_MAX, skip = 0;
        /* The content as given, followed by the template's next text. */
        if (ri + cn + ln <= rn && memcmp(r + ri, c, cn) == 0 && memcmp(r + ri + cn, l, ln) == 0 &&
            (!last || ri + cn + ln == rn)) {
            end = ri + cn;
        } else if (last) {
            if (rn >= ri + ln && memcmp(r + rn - ln, l, ln) == 0) {
                const char *in = memmem(c, cn, r + ri, rn - ln - ri);
                if (in != NULL || rn - ln == ri) {
                    end = rn - ln;
                    skip = in != NULL ? (size_t)(in - c) : 0;
                }
            }
        } else {
            /* A piece of it (trimmed, split): the first place the next text follows a
             * piece of the content. */
            for (const char *at = r + ri; at != NULL && end == SIZE_MAX;) {
                at = memmem(at, (size_t)(r + rn - at), l, ln);
                if (at == NULL)
                    break;
                size_t sl = (size_t)(at - (r + ri));
                const char *in = sl == 0 ? c : memmem(c, cn, r + ri, sl);
                if (in != NULL) {
                    end = (size_t)(at - r);
                    skip = (size_t)(in - c);
                }
                at++;
            }
        }
        if (end == SIZE_MAX)
            return false;
        if (loc[m].start == SIZE_MAX) {
            loc[m].start = ri;
            loc[m].len = end - ri;
            loc[m].skip = skip;
        }
        pd_tokenizer_span_t sp = {ri, end - ri};
        if (sp.len > 0 && !pd_gw_buf_append(spans, &sp, sizeof(sp)))
            return false;
        ri = end + ln;
        qi += ln;
    }
    return ri == rn;
}

/* How many special tokens text encodes to with special-token strings matched (the
 * reference's default); SIZE_MAX when it cannot be encoded. */
static size_t pd_gw_prompt_specials(const pd_tokenizer_t *tok, const char *text, size_t len)
{
    size_t cap = pd_tokenizer_max_tokens(tok, len), n = 0, specials = 0;
    int32_t *ids = malloc((cap > 0 ? cap : 1) * sizeof(*ids));
    if (ids == NULL || pd_tokenizer_encode(tok, text, len, 0, ids, cap, &n) != PD_OK) {
        free(ids);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++)
        specials += pd_tokenizer_is_special(tok, ids[i]);
    free(ids);
    return specials;
}

/* The chat template's path: render, locate the content, encode, map the breakpoints. */
static pd_status_t pd_gw_prompt_tokenize_template(pd_gw_req_t *req, pd_gw_prompt_t *p,
                                                  pd_gw_err_t *err)
{
    /* A turn left open (an assistant's answer begun) is continued: render it closed,
     * without the generation prompt, and cut the rendering where its content ends. */
    bool prefilled = p->role != NULL;
    if (!pd_gw_prompt_close(p)) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    size_t n_msg = json_array_size(p->messages);
    json_t *ph = json_array();
    pd_gw_located_t *loc = calloc(n_msg > 0 ? n_msg : 1, sizeof(*loc));
    char *r = NULL, *q = NULL;
    size_t rn = 0, qn = 0;
    pd_gw_buf_t spans = {0};
    pd_status_t st = PD_ERR_NO_MEMORY;
    pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
    if (ph == NULL || loc == NULL)
        goto out;
    for (size_t i = 0; i < n_msg; i++) {
        json_t *m = json_array_get(p->messages, i);
        char mark[32];
        /* Empty content stays empty: a template may branch on it. */
        snprintf(mark, sizeof(mark), PD_GW_PH_BEGIN "%zu" PD_GW_PH_END, i);
        bool empty = json_string_length(json_object_get(m, "content")) == 0;
        json_t *pm = json_pack("{s:O, s:s}", "role", json_object_get(m, "role"), "content",
                               empty ? "" : mark);
        if (pm == NULL || json_array_append_new(ph, pm) != 0)
            goto out;
        loc[i].start = SIZE_MAX;
    }
    bool generation = p->generation && !prefilled;
    if ((st = pd_gw_prompt_render(req->gw, p->messages, generation, &r, &rn, err)) != PD_OK ||
        (st = pd_gw_prompt_render(req->gw, ph, generation, &q, &qn, err)) != PD_OK)
        goto out;
    if (!pd_gw_prompt_locate(q, qn, r, rn, p->messages, &spans, loc)) {
        /* The content cannot be located: the rendering is usable as it is only if its
         * content makes no special token, that is if it holds no more special tokens than
         * the rendering with placeholders (the template's own). */
        spans.len = 0;
        size_t n_r = pd_gw_prompt_specials(req->gw->tok, r, rn);
        size_t n_q = pd_gw_prompt_specials(req->gw->tok, q, qn);
        if (n_r == SIZE_MAX || n_r != n_q) {
            st = PD_ERR_UNSUPPORTED;
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "the model's chat template rewrites message content in a way that "
                          "cannot be told apart from its own text, and the content holds "
                          "special-token strings, which must stay text");
            goto out;
        }
    }
    if (prefilled && n_msg > 0 && loc[n_msg - 1].start != SIZE_MAX)
        rn = loc[n_msg - 1].start + loc[n_msg - 1].len;
    const pd_tokenizer_span_t *sp = (const pd_tokenizer_span_t *)pd_gw_buf_data(&spans);
    size_t n_sp = spans.len / sizeof(*sp);
    while (n_sp > 0 && sp[n_sp - 1].offset >= rn)
        n_sp--; /* cut off with the end of a continued turn */
    if ((st = pd_gw_prompt_encode_spans(req, r, rn, 0, sp, n_sp, err)) != PD_OK)
        goto out;
    if (req->n_prompt == 0) {
        st = PD_ERR_INVALID_PARAM;
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "the model's chat template rendered an empty prompt for these messages");
        goto out;
    }
    if (p->n_breaks > 0) {
        uint32_t bytes[PD_PROTO_MAX_BREAKPOINTS + 1];
        for (uint32_t i = 0; i < p->n_breaks; i++) {
            const pd_gw_located_t *l = p->break_msg[i] < n_msg ? &loc[p->break_msg[i]] : NULL;
            bytes[i] = UINT32_MAX;
            if (l == NULL || l->start == SIZE_MAX)
                continue;
            /* The content's end as given, moved by what the template left out. */
            size_t off = p->break_off[i] == UINT32_MAX ? SIZE_MAX : p->break_off[i];
            size_t in = off == SIZE_MAX || off >= l->skip + l->len ? l->len
                        : off > l->skip                            ? off - l->skip
                                                                   : 0;
            if (l->start + in <= rn)
                bytes[i] = (uint32_t)(l->start + in);
        }
        pd_gw_prompt_breaks(req, p, bytes, r, 0, sp, n_sp);
    }
    st = PD_OK;
out:
    free(r);
    free(q);
    free(loc);
    json_decref(ph);
    pd_gw_buf_cleanup(&spans);
    return st;
}

pd_status_t pd_gw_prompt_tokenize(pd_gw_req_t *req, pd_gw_prompt_t *p, pd_gw_err_t *err)
{
    if (req->gw->chat_tpl != NULL)
        return pd_gw_prompt_tokenize_template(req, p, err);
    /* An open turn (an assistant's answer begun) ends its content where the text ends. */
    if (p->role != NULL && !pd_gw_prompt_span(p, p->span_start, p->text.len)) {
        pd_gw_err_set(err, 500, "server_error", NULL, "out of memory");
        return PD_ERR_NO_MEMORY;
    }
    p->role = NULL;
    const pd_tokenizer_span_t *sp = (const pd_tokenizer_span_t *)pd_gw_buf_data(&p->spans);
    size_t n_sp = p->spans.len / sizeof(*sp);
    const char *text = pd_gw_buf_data(&p->text);
    pd_status_t st =
        pd_gw_prompt_encode_spans(req, text, p->text.len, PD_TOKENIZE_ADD_SPECIAL, sp, n_sp, err);
    if (st != PD_OK || p->n_breaks == 0)
        return st;
    pd_gw_prompt_breaks(req, p, p->breaks, text, PD_TOKENIZE_ADD_SPECIAL, sp, n_sp);
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
