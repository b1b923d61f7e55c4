/* The Anthropic Messages API: POST /v1/messages, whole or streamed (message_start,
 * content_block_start, content_block_delta, content_block_stop, message_delta,
 * message_stop), in the shapes of docs.anthropic.com/en/api/messages.
 *
 * Prompt caching follows Anthropic's contract: nothing is cached unless blocks carry
 * cache_control {"type": "ephemeral", "ttl": "5m"|"1h"} (at most 4, in system and
 * message content, or one at the top level for the end of the prompt); each becomes one
 * of pdkv's explicit breakpoints. Usage reports input_tokens (neither read from nor
 * written to the cache), cache_creation_input_tokens and cache_read_input_tokens, the
 * last two exactly as the cluster accounted them. */
#include "gw_int.h"

#include <string.h>

/* A block's cache_control: no breakpoint (PD_OK, *ttl_s_p 0), one, or a 400. */
static pd_status_t pd_gw_anthropic_cache_control(json_t *owner, uint32_t *ttl_s_p, pd_gw_err_t *err)
{
    *ttl_s_p = 0;
    json_t *cc = json_object_get(owner, "cache_control");
    if (cc == NULL || json_is_null(cc))
        return PD_OK;
    json_t *type = json_object_get(cc, "type"), *ttl = json_object_get(cc, "ttl");
    if (!json_is_string(type) || strcmp(json_string_value(type), "ephemeral") != 0)
        goto bad;
    if (ttl == NULL || (json_is_string(ttl) && strcmp(json_string_value(ttl), "5m") == 0))
        *ttl_s_p = PD_PROTO_TTL_5M_S;
    else if (json_is_string(ttl) && strcmp(json_string_value(ttl), "1h") == 0)
        *ttl_s_p = PD_PROTO_TTL_1H_S;
    else
        goto bad;
    return PD_OK;
bad:
    pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                  "cache_control must be {\"type\": \"ephemeral\", \"ttl\": \"5m\" or \"1h\"}");
    return PD_ERR_INVALID_PARAM;
}

static pd_status_t pd_gw_anthropic_break(pd_gw_prompt_t *p, json_t *owner, pd_gw_err_t *err)
{
    uint32_t ttl_s;
    pd_status_t st = pd_gw_anthropic_cache_control(owner, &ttl_s, err);
    if (st != PD_OK || ttl_s == 0)
        return st;
    if (pd_gw_prompt_break(p, ttl_s) != PD_OK) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "A maximum of 4 blocks with cache_control may be provided");
        return PD_ERR_LIMIT;
    }
    return PD_OK;
}

/* Content: a string, or text blocks (each may carry cache_control). where names the
 * field in errors. */
static pd_status_t pd_gw_anthropic_content(pd_gw_prompt_t *p, json_t *content, const char *where,
                                           pd_gw_err_t *err)
{
    if (json_is_string(content)) {
        pd_gw_prompt_turn_text(p, json_string_value(content), json_string_length(content));
        return PD_OK;
    }
    if (!json_is_array(content)) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "%s must be a string or an array of content blocks", where);
        return PD_ERR_INVALID_PARAM;
    }
    size_t k;
    json_t *block;
    json_array_foreach(content, k, block)
    {
        json_t *type = json_object_get(block, "type"), *text = json_object_get(block, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "%s.%zu: only text blocks are supported", where, k);
            return PD_ERR_UNSUPPORTED;
        }
        pd_gw_prompt_turn_text(p, json_string_value(text), json_string_length(text));
        pd_status_t st = pd_gw_anthropic_break(p, block, err);
        if (st != PD_OK)
            return st;
    }
    return PD_OK;
}

static pd_status_t pd_gw_anthropic_parse(pd_gw_req_t *req, json_t *body, pd_gw_err_t *err)
{
    pd_status_t st;
    if (json_object_get(body, "max_tokens") == NULL) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL, "max_tokens: Field required");
        return PD_ERR_INVALID_PARAM;
    }
    if ((st = pd_gw_parse_common(req, body, "max_tokens", "stop_sequences", err)) != PD_OK)
        return st;
    json_t *tools = json_object_get(body, "tools");
    json_t *thinking = json_object_get(json_object_get(body, "thinking"), "type");
    if ((json_is_array(tools) && json_array_size(tools) > 0) ||
        (json_is_string(thinking) && strcmp(json_string_value(thinking), "enabled") == 0)) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "tools and extended thinking are not supported by pdkv");
        return PD_ERR_UNSUPPORTED;
    }
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "messages: at least one message is required");
        return PD_ERR_INVALID_PARAM;
    }
    pd_gw_prompt_t p = {0};
    json_t *system = json_object_get(body, "system");
    if (system != NULL && !json_is_null(system)) {
        pd_gw_prompt_turn_begin(&p, "system");
        if ((st = pd_gw_anthropic_content(&p, system, "system", err)) != PD_OK)
            goto out;
        pd_gw_prompt_turn_end(&p);
    }
    size_t i, n = json_array_size(messages);
    json_t *msg;
    bool prefilled = false;
    json_array_foreach(messages, i, msg)
    {
        json_t *role = json_object_get(msg, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        bool user = strcmp(r, "user") == 0, assistant = strcmp(r, "assistant") == 0;
        if (!user && !assistant) {
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "messages.%zu.role must be user or assistant", i);
            st = PD_ERR_INVALID_PARAM;
            goto out;
        }
        char where[48];
        snprintf(where, sizeof(where), "messages.%zu.content", i);
        pd_gw_prompt_turn_begin(&p, user ? "user" : "assistant");
        if ((st = pd_gw_anthropic_content(&p, json_object_get(msg, "content"), where, err)) !=
            PD_OK)
            goto out;
        /* A last assistant turn is the start of the answer: the model continues it. */
        prefilled = assistant && i + 1 == n;
        if (!prefilled)
            pd_gw_prompt_turn_end(&p);
    }
    if ((st = pd_gw_anthropic_break(&p, body, err)) != PD_OK)
        goto out;
    if (!prefilled)
        pd_gw_prompt_generation(&p);
    st = pd_gw_prompt_tokenize(req, &p, err);
    /* Anthropic caches only what cache_control names. */
    if (st == PD_OK && p.n_breaks == 0)
        req->cache.mode = PD_PROTO_CACHE_OFF;
out:
    pd_gw_prompt_cleanup(&p);
    return st;
}

static const char *pd_gw_anthropic_stop_reason(const pd_gw_req_t *req)
{
    if (req->stopped)
        return "stop_sequence";
    if (req->finish != NULL && strcmp(req->finish, "length") == 0)
        return "max_tokens";
    return "end_turn";
}

static json_t *pd_gw_anthropic_stop_sequence(const pd_gw_req_t *req)
{
    int k = req->text.stop_index;
    if (!req->stopped || k < 0)
        return json_null();
    return json_stringn(req->text.stops[k], req->text.stop_len[k]);
}

/* input_tokens counts what was neither read from nor written to the cache, so that the
 * three add up to the prompt, as Anthropic's usage does. */
static json_t *pd_gw_anthropic_usage(const pd_gw_req_t *req, bool final)
{
    uint32_t read = req->usage.cache_read_input_tokens;
    uint32_t write = req->usage.cache_creation_input_tokens;
    uint32_t input = req->n_prompt > read + write ? req->n_prompt - read - write : 0;
    uint32_t out = req->stopped ? req->n_counted : req->n_out;
    if (!final) /* message_start: the split is not known before the end */
        return json_pack("{s:i, s:i, s:i, s:i}", "input_tokens", (json_int_t)req->n_prompt,
                         "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0,
                         "output_tokens", 0);
    return json_pack("{s:i, s:i, s:i, s:i}", "input_tokens", (json_int_t)input,
                     "cache_creation_input_tokens", (json_int_t)write, "cache_read_input_tokens",
                     (json_int_t)read, "output_tokens", (json_int_t)out);
}

static void pd_gw_anthropic_event(pd_gw_buf_t *out, const char *name, json_t *data)
{
    pd_gw_buf_printf(out, "event: %s\ndata: ", name);
    pd_gw_buf_json(out, data);
    pd_gw_buf_append(out, "\n\n", 2);
    json_decref(data);
}

static json_t *pd_gw_anthropic_ids(const int32_t *ids, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n && a != NULL; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static json_t *pd_gw_anthropic_message(pd_gw_req_t *req, bool final)
{
    const char *text = pd_gw_buf_data(&req->all_text);
    size_t len = req->all_text.len;
    json_t *content = final
                          ? json_pack("[{s:s, s:s%}]", "type", "text", "text", len ? text : "", len)
                          : json_array();
    json_t *m =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", req->resp_id, "type", "message",
                  "role", "assistant", "model", req->model, "content", content, "stop_reason",
                  final ? json_string(pd_gw_anthropic_stop_reason(req)) : json_null(),
                  "stop_sequence", final ? pd_gw_anthropic_stop_sequence(req) : json_null(),
                  "usage", pd_gw_anthropic_usage(req, final));
    if (final && req->return_token_ids) {
        json_object_set_new(
            m, "token_ids",
            pd_gw_anthropic_ids(req->out, req->stopped ? req->n_counted : req->n_out));
        json_object_set_new(m, "prompt_token_ids", pd_gw_anthropic_ids(req->prompt, req->n_prompt));
    }
    return m;
}

static void pd_gw_anthropic_stream_start(pd_gw_req_t *req, pd_gw_buf_t *out)
{
    json_t *start = json_pack("{s:s, s:o}", "type", "message_start", "message",
                              pd_gw_anthropic_message(req, false));
    if (req->return_token_ids)
        json_object_set_new(json_object_get(start, "message"), "prompt_token_ids",
                            pd_gw_anthropic_ids(req->prompt, req->n_prompt));
    pd_gw_anthropic_event(out, "message_start", start);
    pd_gw_anthropic_event(out, "content_block_start",
                          json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start",
                                    "index", 0, "content_block", "type", "text", "text", ""));
    pd_gw_anthropic_event(out, "ping", json_pack("{s:s}", "type", "ping"));
}

static void pd_gw_anthropic_stream_delta(pd_gw_req_t *req, const char *text, size_t len,
                                         const int32_t *ids, uint32_t n_ids, pd_gw_buf_t *out)
{
    json_t *ev = json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index", 0,
                           "delta", "type", "text_delta", "text", text, len);
    if (req->return_token_ids)
        json_object_set_new(ev, "token_ids", pd_gw_anthropic_ids(ids, n_ids));
    pd_gw_anthropic_event(out, "content_block_delta", ev);
}

static void pd_gw_anthropic_stream_finish(pd_gw_req_t *req, pd_gw_buf_t *out)
{
    pd_gw_anthropic_event(out, "content_block_stop",
                          json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
    pd_gw_anthropic_event(out, "message_delta",
                          json_pack("{s:s, s:{s:s, s:o}, s:o}", "type", "message_delta", "delta",
                                    "stop_reason", pd_gw_anthropic_stop_reason(req),
                                    "stop_sequence", pd_gw_anthropic_stop_sequence(req), "usage",
                                    pd_gw_anthropic_usage(req, true)));
    pd_gw_anthropic_event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static void pd_gw_anthropic_stream_error(pd_gw_req_t *req, const pd_gw_err_t *err, pd_gw_buf_t *out)
{
    (void)req;
    pd_gw_anthropic_event(out, "error", pd_gw_anthropic_error(err));
}

static json_t *pd_gw_anthropic_full(pd_gw_req_t *req)
{
    return pd_gw_anthropic_message(req, true);
}

json_t *pd_gw_anthropic_error(const pd_gw_err_t *err)
{
    const char *type = "api_error";
    switch (err->status) {
    case 400:
        type = "invalid_request_error";
        break;
    case 401:
        type = "authentication_error";
        break;
    case 403:
        type = "permission_error";
        break;
    case 404:
        type = "not_found_error";
        break;
    case 413:
        type = "request_too_large";
        break;
    case 429:
        type = "rate_limit_error";
        break;
    case 503:
    case 529:
        type = "overloaded_error";
        break;
    case 504:
        type = "timeout_error";
        break;
    default:
        break;
    }
    return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message",
                     err->message);
}

const pd_gw_api_ops_t pd_gw_anthropic_ops = {
    .parse = pd_gw_anthropic_parse,
    .stream_start = pd_gw_anthropic_stream_start,
    .stream_delta = pd_gw_anthropic_stream_delta,
    .stream_finish = pd_gw_anthropic_stream_finish,
    .stream_error = pd_gw_anthropic_stream_error,
    .full = pd_gw_anthropic_full,
    .error = pd_gw_anthropic_error,
};
