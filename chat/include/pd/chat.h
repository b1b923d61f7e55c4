/* Chat templates: the subset of Jinja that Hugging Face chat templates use, rendered the
 * way transformers' apply_chat_template renders them (trim_blocks and lstrip_blocks on,
 * loop controls, raise_exception, namespace, tojson).
 *
 * A template is parsed once (pd_chat_template_create) and may then be rendered by any
 * number of threads. Whatever the template does, a render stays within the limits given:
 * output bytes, memory for the values it builds, evaluation steps (which bound its time).
 * A construct outside the subset is refused when the template is parsed, with an error
 * that names it; nothing is ever rendered half-understood. */
#ifndef PD_CHAT_H
#define PD_CHAT_H

#include "pd/json.h"
#include "pd/status.h"
#include "pd/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pd_chat_template pd_chat_template_t;

typedef struct pd_chat_limits {
    size_t max_output_bytes; /* rendered prompt */
    size_t max_memory_bytes; /* every value built while rendering, output included */
    uint64_t max_steps;      /* statements and expression nodes evaluated */
} pd_chat_limits_t;

/* 1 MiB of output, 64 MiB of memory, 2 million steps (well under a second). */
extern const pd_chat_limits_t pd_chat_limits_default;

/* Largest template source accepted (1 MiB). */
#define PD_CHAT_MAX_TEMPLATE_BYTES (1u << 20)

/* Parse a template (len bytes of UTF-8). PD_ERR_FORMAT for a syntax error,
 * PD_ERR_UNSUPPORTED for a tag, filter, test, method or function outside the subset,
 * PD_ERR_LIMIT for a source over the size or nesting limits; pd_chat_last_error() then
 * says what and where (line). */
PD_MUST_CHECK pd_status_t pd_chat_template_create(const char *src, size_t len,
                                                  pd_chat_template_t **tpl_p);

void pd_chat_template_destroy(pd_chat_template_t **tpl_p);

/* What a template sees. */
typedef struct pd_chat_vars {
    const pd_json_t *messages; /* array of objects: "role", "content", others as given */
    bool add_generation_prompt;
    const char *bos_token; /* NULL reads as "" */
    const char *eos_token;
    const pd_json_t *extra; /* an object of further variables (tools, enable_thinking...) */
} pd_chat_vars_t;

/* Render tpl with vars within lim (NULL: the defaults). On success *out_p is a
 * NUL-terminated string the caller frees, *len_p its length. Errors: PD_ERR_LIMIT (output,
 * memory or steps over the limit), PD_ERR_INVALID_PARAM (raise_exception, an operation on
 * the wrong types or on an undefined value), with pd_chat_last_error() set. */
PD_MUST_CHECK pd_status_t pd_chat_template_render(const pd_chat_template_t *tpl,
                                                  const pd_chat_vars_t *vars,
                                                  const pd_chat_limits_t *lim, char **out_p,
                                                  size_t *len_p);

/* Text of the last error of a pd_chat_* call on this thread ("" when none). */
const char *pd_chat_last_error(void);

/* Render a conversation for tok: messages_json is a JSON array of messages, or an object
 * {"messages": [...], other variables...}. template_src (may be NULL) overrides the
 * tokenizer's chat template. Errors are logged once and left in pd_chat_last_error(). */
PD_MUST_CHECK pd_status_t pd_chat_render_json(const pd_tokenizer_t *tok, const char *template_src,
                                              size_t template_len, const char *messages_json,
                                              size_t json_len, bool add_generation_prompt,
                                              char **out_p, size_t *len_p);

#endif
