/* Chat templates for a tokenizer: a conversation given as JSON, rendered with the
 * tokenizer's template (or a user's) and its BOS/EOS texts. */
#include "chat_int.h"

#include "pd/log.h"

#include <string.h>

pd_status_t pd_chat_render_json(const pd_tokenizer_t *tok, const char *template_src,
                                size_t template_len, const char *messages_json, size_t json_len,
                                bool add_generation_prompt, char **out_p, size_t *len_p)
{
    if (tok == NULL || messages_json == NULL || out_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (template_src == NULL)
        template_src = pd_tokenizer_chat_template(tok, &template_len);
    if (template_src == NULL) {
        pd_chat_set_error("the tokenizer has no chat_template (tokenizer_config.json); give a "
                          "template file");
        pd_log_error("%s", pd_chat_last_error());
        return PD_ERR_NOT_FOUND;
    }
    pd_json_doc_t *doc = NULL;
    pd_json_limits_t lim = pd_json_limits_default;
    lim.max_bytes = 16u << 20;
    pd_status_t st = pd_json_parse(messages_json, json_len, &lim, &doc);
    if (st != PD_OK) {
        pd_chat_set_error("messages: not valid JSON within limits: %s", pd_json_last_error());
        pd_log_error("%s", pd_chat_last_error());
        return st;
    }
    const pd_json_t *root = pd_json_doc_root(doc);
    pd_chat_vars_t vars = {
        .messages = root,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = pd_tokenizer_bos_text(tok),
        .eos_token = pd_tokenizer_eos_text(tok),
    };
    if (pd_json_type(root) == PD_JSON_OBJECT) {
        vars.messages = pd_json_object_get(root, "messages");
        vars.extra = root;
    }
    if (pd_json_type(vars.messages) != PD_JSON_ARRAY) {
        pd_chat_set_error("messages: expected a JSON array of messages, or an object with one "
                          "under \"messages\"");
        st = PD_ERR_INVALID_PARAM;
        goto out;
    }
    for (size_t i = 0; i < pd_json_len(vars.messages); i++) {
        const pd_json_t *m = pd_json_array_at(vars.messages, i);
        const char *role = NULL;
        if (pd_json_type(m) != PD_JSON_OBJECT ||
            !pd_json_string(pd_json_object_get(m, "role"), &role, NULL)) {
            pd_chat_set_error("messages[%zu]: expected an object with a \"role\" string", i);
            st = PD_ERR_INVALID_PARAM;
            goto out;
        }
    }
    pd_chat_template_t *tpl = NULL;
    st = pd_chat_template_create(template_src, template_len, &tpl);
    if (st == PD_OK) {
        st = pd_chat_template_render(tpl, &vars, NULL, out_p, len_p);
        pd_chat_template_destroy(&tpl);
    }
out:
    if (st != PD_OK)
        pd_log_error("%s", pd_chat_last_error());
    pd_json_doc_destroy(&doc);
    return st;
}
