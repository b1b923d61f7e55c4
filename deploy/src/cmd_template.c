/* pdctl template: render a conversation with a tokenizer's chat template; and the chat
 * prompt that generate --chat and submit --chat build the same way. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/chat.h"
#include "pd/log.h"
#include "pd/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pd_cmd_template_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl template -t TOKENIZER --messages FILE [--no-generation-prompt]\n"
            "                     [--template FILE] [--ids]\n"
            "\n"
            "Print the prompt that the tokenizer's chat template (tokenizer_config.json's\n"
            "chat_template, or chat_template.jinja beside it) renders for a conversation.\n"
            "FILE is a JSON array of messages ({\"role\": ..., \"content\": ...}), or an object\n"
            "with them under \"messages\" and further template variables beside ('-' reads\n"
            "stdin).\n"
            "\n"
            "  -t, --tokenizer PATH      a tokenizer.json or the directory holding it\n"
            "  --messages FILE           the conversation\n"
            "  --no-generation-prompt    do not open an assistant turn at the end\n"
            "  --template FILE           use this Jinja template instead of the tokenizer's\n"
            "  --ids                     print the prompt's token ids (one JSON array) instead\n");
}

/* Append s to buf as a JSON string; false when out of memory. */
static bool pd_cli_json_str(char **buf, size_t *len, size_t *cap, const char *pre, const char *s)
{
    size_t need = *len + strlen(pre) + 6 * strlen(s) + 8;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (nb == NULL)
            return false;
        *buf = nb;
        *cap = nc;
    }
    char *o = *buf + *len;
    o += sprintf(o, "%s\"", pre);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            o += sprintf(o, "\\u%04x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = '\0';
    *len = (size_t)(o - *buf);
    return true;
}

char *pd_cli_chat_messages_json(const char *const *roles, const char *const *texts, size_t n)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++)
        ok = pd_cli_json_str(&buf, &len, &cap, i == 0 ? "[{\"role\":" : "},{\"role\":", roles[i]) &&
             pd_cli_json_str(&buf, &len, &cap, ",\"content\":", texts[i]);
    if (ok)
        ok = pd_cli_json_str(&buf, &len, &cap, "", "");
    if (!ok) {
        free(buf);
        return NULL;
    }
    /* replace the empty string written last by the closing brackets */
    len -= 2;
    snprintf(buf + len, cap - len, n > 0 ? "}]" : "[]");
    return buf;
}

int pd_cli_chat_prompt(const pd_tokenizer_t *tok, const char *messages_path,
                       const char *messages_json, const char *template_path,
                       bool add_generation_prompt, char **prompt_p, size_t *len_p)
{
    size_t json_len = 0, tpl_len = 0;
    char *json = NULL, *tpl = NULL;
    if (messages_path != NULL) {
        if ((json = pd_cli_read_all(messages_path, &json_len)) == NULL)
            return PD_CLI_FAIL;
    } else {
        json_len = strlen(messages_json);
    }
    if (template_path != NULL && (tpl = pd_cli_read_all(template_path, &tpl_len)) == NULL) {
        free(json);
        return PD_CLI_FAIL;
    }
    pd_status_t st = pd_chat_render_json(tok, tpl, tpl_len, json ? json : messages_json, json_len,
                                         add_generation_prompt, prompt_p, len_p);
    free(json);
    free(tpl);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: chat template: %s\n", pd_chat_last_error());
        return PD_CLI_FAIL;
    }
    return PD_CLI_OK;
}

/* What the options of pdctl template ask for. */
typedef struct pd_cmd_template_args {
    const char *messages, *template_path;
    bool no_gen, ids;
} pd_cmd_template_args_t;

static void pd_cmd_template_take(void *arg, int opt, const char *value)
{
    pd_cmd_template_args_t *a = arg;
    if (opt == 'm')
        a->messages = value;
    else if (opt == 'n')
        a->no_gen = true;
    else if (opt == 'T')
        a->template_path = value;
    else if (opt == 'i')
        a->ids = true;
}

static bool pd_cmd_template_ready(const void *arg)
{
    const pd_cmd_template_args_t *a = arg;
    return a->messages != NULL;
}

int pd_cmd_template(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"tokenizer", 't', true, 't', NULL},
        {"messages", 0, true, 'm', NULL},
        {"no-generation-prompt", 0, false, 'n', NULL},
        {"template", 0, true, 'T', NULL},
        {"ids", 0, false, 'i', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    static const pd_cli_tok_cmd_t cmd = {"template", opts, pd_cmd_template_usage,
                                         pd_cmd_template_take, pd_cmd_template_ready};
    pd_cmd_template_args_t a = {0};
    pd_tokenizer_t *tok = NULL;
    int rc = pd_cli_tok_cmd_start(&cmd, argc, argv, &a, &tok);
    if (tok == NULL)
        return rc;
    char *prompt = NULL;
    size_t len = 0;
    rc = pd_cli_chat_prompt(tok, a.messages, NULL, a.template_path, !a.no_gen, &prompt, &len);
    if (rc == PD_CLI_OK && !a.ids) {
        fwrite(prompt, 1, len, stdout);
    } else if (rc == PD_CLI_OK) {
        size_t cap = pd_tokenizer_max_tokens(tok, len), n = 0;
        int32_t *v = malloc((cap ? cap : 1) * sizeof(int32_t));
        pd_status_t st =
            v ? pd_tokenizer_encode(tok, prompt, len, 0, v, cap, &n) : PD_ERR_NO_MEMORY;
        if (st != PD_OK) {
            fprintf(stderr, "pdctl: tokenize: %s\n", pd_status_str(st));
            rc = PD_CLI_FAIL;
        } else {
            putchar('[');
            for (size_t i = 0; i < n; i++)
                printf(i ? ",%d" : "%d", v[i]);
            fputs("]\n", stdout);
        }
        free(v);
    }
    free(prompt);
    pd_tokenizer_destroy(&tok);
    return rc;
}

bool pd_cli_chat_option(pd_cli_chat_t *chat, int opt, const char *arg)
{
    if (opt == PD_CLI_OPT_CHAT) {
        chat->file = arg;
    } else if (opt == PD_CLI_OPT_TEMPLATE) {
        chat->template_path = arg;
    } else {
        if (chat->n == PD_CLI_CHAT_MAX_MESSAGES) {
            fprintf(stderr, "pdctl: more than %d --system/--user messages\n",
                    PD_CLI_CHAT_MAX_MESSAGES);
            return false;
        }
        chat->roles[chat->n] = opt == PD_CLI_OPT_SYSTEM ? "system" : "user";
        chat->texts[chat->n++] = arg;
    }
    return true;
}

bool pd_cli_chat_given(const pd_cli_chat_t *chat)
{
    return chat->file != NULL || chat->n > 0;
}

int pd_cli_chat_tokens(const pd_cli_chat_t *chat, const pd_tokenizer_t *tok, int32_t **ids_p,
                       size_t *n_p)
{
    if ((chat->file != NULL) == (chat->n > 0)) {
        fprintf(stderr, "pdctl: give the conversation as --chat FILE or as --system/--user, "
                        "not both\n");
        return PD_CLI_USAGE;
    }
    char *json = NULL;
    if (chat->n > 0 &&
        (json = pd_cli_chat_messages_json(chat->roles, chat->texts, chat->n)) == NULL)
        return PD_CLI_FAIL;
    char *prompt = NULL;
    size_t len = 0;
    int rc = pd_cli_chat_prompt(tok, chat->file, json, chat->template_path, true, &prompt, &len);
    free(json);
    if (rc != PD_CLI_OK)
        return rc;
    size_t cap = pd_tokenizer_max_tokens(tok, len), n = 0;
    int32_t *ids = malloc((cap ? cap : 1) * sizeof(int32_t));
    pd_status_t st =
        ids ? pd_tokenizer_encode(tok, prompt, len, 0, ids, cap, &n) : PD_ERR_NO_MEMORY;
    free(prompt);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: cannot tokenize the chat prompt: %s\n", pd_status_str(st));
        free(ids);
        return PD_CLI_FAIL;
    }
    *ids_p = ids;
    *n_p = n;
    return PD_CLI_OK;
}
