/* Fuzz target for chat templates (the Jinja subset of pd/chat.h): a template, and after
 * a "\n----\n" line the JSON of the conversation (messages and other variables; a fixed
 * conversation without it). Any template parses or is refused, and renders or is refused,
 * within the limits, never with a crash, a leak or a read out of bounds. */
#include "fuzz_util.h"
#include "pd/chat.h"
#include "pd/tokenizer.h"

static const char pd_fuzz_chat_default[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
    "{\"role\": \"user\", \"content\": \"Hi <s> \\u00e9\"}, "
    "{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"Hello\"}]}, "
    "{\"role\": \"user\", \"content\": \"2 + 2?\"}], \"tools\": [{\"name\": \"calc\"}], "
    "\"bos_token\": \"<s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_tokenizer_t *tok;
    pd_fuzz_quiet();
    if (tok == NULL && pd_tokenizer_create_byte(&tok) != PD_OK)
        abort();
    char *tpl, *msgs;
    size_t tpl_len, msgs_len;
    pd_fuzz_split(data, size, &tpl, &tpl_len, &msgs, &msgs_len);
    char *out = NULL;
    size_t out_len = 0;
    pd_status_t st = pd_chat_render_json(
        tok, tpl, tpl_len, msgs != NULL ? msgs : pd_fuzz_chat_default,
        msgs != NULL ? msgs_len : sizeof(pd_fuzz_chat_default) - 1, true, &out, &out_len);
    if (st == PD_OK)
        free(out);
    free(tpl);
    free(msgs);
    return 0;
}
