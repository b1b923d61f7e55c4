/* The OpenAI API: POST /v1/completions and POST /v1/chat/completions, whole or streamed
 * as Server-Sent Events ("data: {chunk}" ... "data: [DONE]"), in the shapes of
 * platform.openai.com/docs/api-reference. Prompt caching is automatic (pdkv's `auto`
 * mode) and reported as usage.prompt_tokens_details.cached_tokens. */
#include "gw_int.h"

#include <string.h>

static const char *pd_gw_openai_finish(const pd_gw_req_t *req)
{
    if (req->finish == NULL)
        return NULL;
    return strcmp(req->finish, "length") == 0 ? "length" : "stop";
}

/* {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details{cached_tokens}} */
static json_t *pd_gw_openai_usage(const pd_gw_req_t *req)
{
    uint32_t out = req->stopped ? req->n_counted : req->n_out;
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (json_int_t)req->n_prompt,
                     "completion_tokens", (json_int_t)out, "total_tokens",
                     (json_int_t)(req->n_prompt + out), "prompt_tokens_details", "cached_tokens",
                     (json_int_t)req->usage.cache_read_input_tokens);
}

static json_t *pd_gw_openai_ids(const int32_t *ids, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n && a != NULL; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static pd_status_t pd_gw_openai_refuse(json_t *body, pd_gw_err_t *err)
{
    static const char *const unsupported[] = {"tools", "functions", "logprobs",
                                              "echo",  "suffix",    "audio"};
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        json_t *v = json_object_get(body, unsupported[i]);
        if (v != NULL && !json_is_null(v) && !json_is_false(v) &&
            !(json_is_array(v) && json_array_size(v) == 0)) {
            pd_gw_err_set(err, 400, "invalid_request_error", "unsupported_parameter",
                          "%s is not supported by pdkv", unsupported[i]);
            return PD_ERR_UNSUPPORTED;
        }
    }
    json_t *v = json_object_get(body, "best_of");
    if (v != NULL && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        pd_gw_err_set(err, 400, "invalid_request_error", "unsupported_parameter",
                      "best_of must be 1");
        return PD_ERR_UNSUPPORTED;
    }
    v = json_object_get(body, "response_format");
    json_t *type = json_object_get(v, "type");
    if (v != NULL && !json_is_null(v) &&
        !(json_is_string(type) && strcmp(json_string_value(type), "text") == 0)) {
        pd_gw_err_set(err, 400, "invalid_request_error", "unsupported_parameter",
                      "response_format must be {\"type\": \"text\"}");
        return PD_ERR_UNSUPPORTED;
    }
    return PD_OK;
}

static pd_status_t pd_gw_openai_stream_options(pd_gw_req_t *req, json_t *body, pd_gw_err_t *err)
{
    json_t *so = json_object_get(body, "stream_options");
    if (so == NULL || json_is_null(so))
        return PD_OK;
    json_t *iu = json_object_get(so, "include_usage");
    if (!json_is_object(so) || (iu != NULL && !json_is_boolean(iu))) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "stream_options must be {\"include_usage\": boolean}");
        return PD_ERR_INVALID_PARAM;
    }
    req->include_usage = json_is_true(iu);
    return PD_OK;
}

static pd_status_t pd_gw_completions_parse(pd_gw_req_t *req, json_t *body, pd_gw_err_t *err)
{
    pd_status_t st;
    if ((st = pd_gw_parse_common(req, body, "max_tokens", "stop", err)) != PD_OK ||
        (st = pd_gw_openai_refuse(body, err)) != PD_OK ||
        (st = pd_gw_openai_stream_options(req, body, err)) != PD_OK)
        return st;
    json_t *prompt = json_object_get(body, "prompt");
    if (prompt == NULL) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL, "prompt is required");
        return PD_ERR_INVALID_PARAM;
    }
    return pd_gw_prompt_from_json(req, prompt, err);
}

/* A message's content: a string or an array of {type: "text", text} parts. */
static pd_status_t pd_gw_chat_content(pd_gw_prompt_t *p, json_t *content, size_t i,
                                      pd_gw_err_t *err)
{
    if (content == NULL || json_is_null(content))
        return PD_OK;
    if (json_is_string(content)) {
        pd_gw_prompt_turn_text(p, json_string_value(content), json_string_length(content));
        return PD_OK;
    }
    if (!json_is_array(content))
        goto bad;
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part)
    {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text))
            goto bad;
        pd_gw_prompt_turn_text(p, json_string_value(text), json_string_length(text));
    }
    return PD_OK;
bad:
    pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                  "messages[%zu].content must be a string or an array of text parts", i);
    return PD_ERR_INVALID_PARAM;
}

static pd_status_t pd_gw_chat_parse(pd_gw_req_t *req, json_t *body, pd_gw_err_t *err)
{
    pd_status_t st;
    const char *max_key = json_object_get(body, "max_completion_tokens") != NULL
                              ? "max_completion_tokens"
                              : "max_tokens";
    if ((st = pd_gw_parse_common(req, body, max_key, "stop", err)) != PD_OK ||
        (st = pd_gw_openai_refuse(body, err)) != PD_OK ||
        (st = pd_gw_openai_stream_options(req, body, err)) != PD_OK)
        return st;
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                      "messages must be a non-empty array");
        return PD_ERR_INVALID_PARAM;
    }
    pd_gw_prompt_t p = {0};
    size_t i;
    json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        json_t *role = json_object_get(msg, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        const char *name = strcmp(r, "system") == 0 || strcmp(r, "developer") == 0 ? "system"
                           : strcmp(r, "user") == 0                                ? "user"
                           : strcmp(r, "assistant") == 0                           ? "assistant"
                                                                                   : NULL;
        if (name == NULL) {
            pd_gw_err_set(err, 400, "invalid_request_error", NULL,
                          "messages[%zu].role must be system, developer, user or assistant", i);
            st = PD_ERR_INVALID_PARAM;
            goto out;
        }
        pd_gw_prompt_turn_begin(&p, name);
        if ((st = pd_gw_chat_content(&p, json_object_get(msg, "content"), i, err)) != PD_OK)
            goto out;
        pd_gw_prompt_turn_end(&p);
    }
    pd_gw_prompt_generation(&p);
    st = pd_gw_prompt_tokenize(req, &p, err);
out:
    pd_gw_prompt_cleanup(&p);
    return st;
}

/* The fields every chunk and response carries. */
static json_t *pd_gw_openai_head(const pd_gw_req_t *req, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", req->resp_id, "object", object, "created",
                     (json_int_t)req->created, "model", req->model);
}

static void pd_gw_openai_sse(pd_gw_buf_t *out, json_t *chunk)
{
    pd_gw_buf_append(out, "data: ", 6);
    pd_gw_buf_json(out, chunk);
    pd_gw_buf_append(out, "\n\n", 2);
    json_decref(chunk);
}

/* One chunk with one choice; choice is taken over. */
static void pd_gw_openai_chunk(pd_gw_req_t *req, json_t *choice, pd_gw_buf_t *out)
{
    bool chat = req->api == PD_GW_API_CHAT;
    json_t *c = pd_gw_openai_head(req, chat ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(choice, "index", json_integer(0));
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(c, "choices", json_pack("[o]", choice));
    if (chat)
        json_object_set_new(c, "system_fingerprint", json_null());
    if (req->include_usage)
        json_object_set_new(c, "usage", json_null());
    pd_gw_openai_sse(out, c);
}

static void pd_gw_openai_stream_start(pd_gw_req_t *req, pd_gw_buf_t *out)
{
    if (req->api != PD_GW_API_CHAT)
        return;
    pd_gw_openai_chunk(req,
                       json_pack("{s:{s:s, s:s}, s:n}", "delta", "role", "assistant", "content", "",
                                 "finish_reason"),
                       out);
}

static void pd_gw_openai_stream_delta(pd_gw_req_t *req, const char *text, size_t len,
                                      const int32_t *ids, uint32_t n_ids, pd_gw_buf_t *out)
{
    json_t *choice =
        req->api == PD_GW_API_CHAT
            ? json_pack("{s:{s:s%}, s:n}", "delta", "content", text, len, "finish_reason")
            : json_pack("{s:s%, s:n}", "text", text, len, "finish_reason");
    if (req->return_token_ids)
        json_object_set_new(choice, "token_ids", pd_gw_openai_ids(ids, n_ids));
    pd_gw_openai_chunk(req, choice, out);
}

static void pd_gw_openai_stream_finish(pd_gw_req_t *req, pd_gw_buf_t *out)
{
    json_t *choice =
        req->api == PD_GW_API_CHAT
            ? json_pack("{s:{}, s:s}", "delta", "finish_reason", pd_gw_openai_finish(req))
            : json_pack("{s:s, s:s}", "text", "", "finish_reason", pd_gw_openai_finish(req));
    pd_gw_openai_chunk(req, choice, out);
    if (req->include_usage) {
        bool chat = req->api == PD_GW_API_CHAT;
        json_t *c = pd_gw_openai_head(req, chat ? "chat.completion.chunk" : "text_completion");
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", pd_gw_openai_usage(req));
        pd_gw_openai_sse(out, c);
    }
    pd_gw_buf_append(out, "data: [DONE]\n\n", 14);
}

static void pd_gw_openai_stream_error(pd_gw_req_t *req, const pd_gw_err_t *err, pd_gw_buf_t *out)
{
    (void)req;
    pd_gw_openai_sse(out, pd_gw_openai_error(err));
    pd_gw_buf_append(out, "data: [DONE]\n\n", 14);
}

static json_t *pd_gw_openai_full(pd_gw_req_t *req)
{
    bool chat = req->api == PD_GW_API_CHAT;
    const char *text = pd_gw_buf_data(&req->all_text);
    size_t len = req->all_text.len;
    json_t *r = pd_gw_openai_head(req, chat ? "chat.completion" : "text_completion");
    json_t *choice =
        chat ? json_pack("{s:i, s:{s:s, s:s%, s:n}, s:n, s:s}", "index", 0, "message", "role",
                         "assistant", "content", len ? text : "", len, "refusal", "logprobs",
                         "finish_reason", pd_gw_openai_finish(req))
             : json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", len ? text : "", len,
                         "logprobs", "finish_reason", pd_gw_openai_finish(req));
    if (req->return_token_ids) {
        json_object_set_new(choice, "token_ids",
                            pd_gw_openai_ids(req->out, req->stopped ? req->n_counted : req->n_out));
        json_object_set_new(r, "prompt_token_ids", pd_gw_openai_ids(req->prompt, req->n_prompt));
    }
    json_object_set_new(r, "choices", json_pack("[o]", choice));
    if (chat)
        json_object_set_new(r, "system_fingerprint", json_null());
    json_object_set_new(r, "usage", pd_gw_openai_usage(req));
    return r;
}

json_t *pd_gw_openai_error(const pd_gw_err_t *err)
{
    json_t *code = err->code != NULL ? json_string(err->code) : json_null();
    return json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", err->message, "type",
                     err->type != NULL ? err->type : "server_error", "param", "code", code);
}

const pd_gw_api_ops_t pd_gw_openai_completions_ops = {
    .parse = pd_gw_completions_parse,
    .stream_start = pd_gw_openai_stream_start,
    .stream_delta = pd_gw_openai_stream_delta,
    .stream_finish = pd_gw_openai_stream_finish,
    .stream_error = pd_gw_openai_stream_error,
    .full = pd_gw_openai_full,
    .error = pd_gw_openai_error,
};

const pd_gw_api_ops_t pd_gw_openai_chat_ops = {
    .parse = pd_gw_chat_parse,
    .stream_start = pd_gw_openai_stream_start,
    .stream_delta = pd_gw_openai_stream_delta,
    .stream_finish = pd_gw_openai_stream_finish,
    .stream_error = pd_gw_openai_stream_error,
    .full = pd_gw_openai_full,
    .error = pd_gw_openai_error,
};
