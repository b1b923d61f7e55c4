/* Fuzz target for pd-gateway's request bodies: the first byte picks the API (OpenAI
 * completions, chat completions, Anthropic messages), the rest is the body. Any bytes are
 * parsed into a request or refused with a 4xx and a message, never with a crash, a leak
 * or a read out of bounds; a request that parses has a prompt and a token budget. The
 * prompt is rendered with the built-in chat template and the byte tokenizer (with
 * PD_FUZZ_CHAT_TEMPLATE=FILE, that template). */
#include "fuzz_util.h"
#include "gw_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_gw_t gw;
    static bool ready;
    pd_fuzz_quiet();
    if (!ready) {
        pd_gw_config_defaults(&gw.cfg);
        const char *tpl = getenv("PD_FUZZ_CHAT_TEMPLATE");
        if (pd_tokenizer_create_byte(&gw.tok) != PD_OK ||
            pd_gw_prompt_setup(&gw, tpl != NULL ? tpl : "") != PD_OK)
            abort();
        ready = true;
    }
    if (size == 0)
        return 0;
    static const pd_gw_route_t routes[] = {PD_GW_ROUTE_COMPLETIONS, PD_GW_ROUTE_CHAT,
                                           PD_GW_ROUTE_MESSAGES};
    pd_gw_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        abort();
    req->gw = &gw;
    req->fd = -1;
    req->route = routes[data[0] % 3];
    if (size > 1 && !pd_gw_buf_append(&req->body, data + 1, size - 1))
        abort();
    pd_gw_err_t err;
    memset(&err, 0, sizeof(err));
    pd_status_t st = pd_gw_gen_parse(req, &err);
    if (st == PD_OK) {
        if (req->n_prompt == 0 || req->prompt == NULL || req->max_tokens == 0)
            abort();
    } else if (err.status < 400 || err.message[0] == '\0') {
        abort(); /* a refusal is an HTTP error with a reason */
    }
    pd_gw_gen_end(req);
    free(req);
    return 0;
}
