/* The request fields the OpenAI and Anthropic APIs share: model, stream, max_tokens,
 * sampling, stop strings. Every field is checked for its JSON type and range; a value
 * pdkv cannot honour is refused with 400 rather than silently ignored. */
#include "gw_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static pd_status_t pd_gw_parse_bad(pd_gw_err_t *err, const char *key, const char *what)
{
    pd_gw_err_set(err, 400, "invalid_request_error", NULL, "%s must be %s", key, what);
    return PD_ERR_INVALID_PARAM;
}

/* A number in [lo, hi] at key, or the default when absent or null. */
static pd_status_t pd_gw_parse_number(json_t *body, const char *key, double lo, double hi,
                                      double *v_p, pd_gw_err_t *err)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL || json_is_null(v))
        return PD_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < lo ||
        json_number_value(v) > hi) {
        char what[64];
        snprintf(what, sizeof(what), "a number in [%g, %g]", lo, hi);
        return pd_gw_parse_bad(err, key, what);
    }
    *v_p = json_number_value(v);
    return PD_OK;
}

static pd_status_t pd_gw_parse_stops(pd_gw_req_t *req, json_t *stop, const char *key,
                                     pd_gw_err_t *err)
{
    if (stop == NULL || json_is_null(stop))
        return PD_OK;
    if (json_is_string(stop))
        return pd_gw_text_add_stop(&req->text, json_string_value(stop), json_string_length(stop)) ==
                       PD_OK
                   ? PD_OK
                   : pd_gw_parse_bad(err, key, "at most 256 bytes");
    if (!json_is_array(stop) || json_array_size(stop) > PD_GW_MAX_STOPS)
        return pd_gw_parse_bad(err, key, "a string or an array of at most 4 strings");
    size_t i;
    json_t *s;
    json_array_foreach(stop, i, s)
    {
        if (!json_is_string(s) ||
            pd_gw_text_add_stop(&req->text, json_string_value(s), json_string_length(s)) != PD_OK)
            return pd_gw_parse_bad(err, key, "an array of strings of at most 256 bytes each");
    }
    return PD_OK;
}

pd_status_t pd_gw_parse_common(pd_gw_req_t *req, json_t *body, const char *max_tokens_key,
                               const char *stop_key, pd_gw_err_t *err)
{
    const pd_gw_config_t *cfg = &req->gw->cfg;
    pd_status_t st;
    json_t *v = json_object_get(body, "model");
    if (!json_is_string(v))
        return pd_gw_parse_bad(err, "model", "a string (GET /v1/models lists the models)");
    if (strcmp(json_string_value(v), cfg->model_name) != 0) {
        pd_gw_err_set(err, 404, "invalid_request_error", "model_not_found",
                      "the model '%.100s' does not exist; this gateway serves '%s'",
                      json_string_value(v), cfg->model_name);
        return PD_ERR_NOT_FOUND;
    }
    snprintf(req->model, sizeof(req->model), "%s", cfg->model_name);

    v = json_object_get(body, "stream");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
        return pd_gw_parse_bad(err, "stream", "a boolean");
    req->stream = json_is_true(v);
    v = json_object_get(body, "return_token_ids");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
        return pd_gw_parse_bad(err, "return_token_ids", "a boolean");
    req->return_token_ids = json_is_true(v);

    req->max_tokens = cfg->default_max_tokens;
    v = json_object_get(body, max_tokens_key);
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > PD_PROTO_MAX_NEW_TOKENS) {
            char what[64];
            snprintf(what, sizeof(what), "an integer in [1, %d]", PD_PROTO_MAX_NEW_TOKENS);
            return pd_gw_parse_bad(err, max_tokens_key, what);
        }
        req->max_tokens = (uint32_t)json_integer_value(v);
    }

    req->sampling.temperature = 1.0;
    req->sampling.top_p = 1.0;
    double top_p = 1.0;
    double t_max = req->api == PD_GW_API_MESSAGES ? 1.0 : 2.0;
    if ((st = pd_gw_parse_number(body, "temperature", 0.0, t_max, &req->sampling.temperature,
                                 err)) != PD_OK ||
        (st = pd_gw_parse_number(body, "top_p", 0.0, 1.0, &top_p, err)) != PD_OK)
        return st;
    /* top_p 0 keeps the single most likely token: greedy, which pdkv spells temperature 0. */
    if (top_p == 0.0)
        req->sampling.temperature = 0.0;
    else
        req->sampling.top_p = top_p;

    v = json_object_get(body, "seed");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return pd_gw_parse_bad(err, "seed", "a non-negative integer");
        req->sampling.seed = (uint64_t)json_integer_value(v);
        req->seeded = true;
    }
    v = json_object_get(body, "top_k");
    if (v != NULL && !json_is_null(v))
        return pd_gw_parse_bad(err, "top_k", "absent: pdkv samples with temperature and top_p");
    v = json_object_get(body, "n");
    if (v != NULL && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        return pd_gw_parse_bad(err, "n", "1: one choice per request");
    v = json_object_get(body, "user");
    if (v != NULL && !json_is_null(v) && !json_is_string(v))
        return pd_gw_parse_bad(err, "user", "a string");
    return pd_gw_parse_stops(req, json_object_get(body, stop_key), stop_key, err);
}
