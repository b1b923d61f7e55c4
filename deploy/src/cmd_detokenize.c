/* pdctl detokenize: token ids back to text. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/json.h"
#include "pd/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pd_cmd_detokenize_usage(FILE *out)
{
    fprintf(out,
            "usage: pdctl detokenize -t TOKENIZER (--ids IDS | --lines FILE) [--skip-special]\n"
            "                        [--json]\n"
            "\n"
            "Print the text of token ids. IDS is a JSON array or a comma-separated list;\n"
            "FILE holds one JSON array per line (what 'pdctl tokenize --lines' prints; '-'\n"
            "reads stdin) and gives one line of text each.\n"
            "\n"
            "  -t, --tokenizer PATH  tokenizer.json, its directory, or a tokenizer.bin\n"
            "  --ids IDS             the ids to decode\n"
            "  --lines FILE          decode every line of FILE\n"
            "  --skip-special        special tokens (BOS, EOS, ...) produce no text\n"
            "  --json                print each text as a JSON string (a text with newlines\n"
            "                        stays on one line)\n");
}

/* Parse "[1,2]" or "1,2" into a malloc'd array. */
static int pd_cmd_detok_parse(const char *s, size_t len, int32_t **ids_p, size_t *n_p)
{
    pd_json_doc_t *doc = NULL;
    char *wrapped = NULL;
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == len || s[i] != '[') {
        wrapped = malloc(len + 3);
        if (wrapped == NULL)
            return PD_CLI_FAIL;
        wrapped[0] = '[';
        memcpy(wrapped + 1, s, len);
        wrapped[len + 1] = ']';
        s = wrapped;
        len += 2;
    }
    pd_status_t st = pd_json_parse(s, len, NULL, &doc);
    free(wrapped);
    const pd_json_t *arr = st == PD_OK ? pd_json_doc_root(doc) : NULL;
    if (pd_json_type(arr) != PD_JSON_ARRAY) {
        fprintf(stderr, "pdctl: detokenize: not a list of ids: %.*s\n", (int)(len > 80 ? 80 : len),
                s);
        pd_json_doc_destroy(&doc);
        return PD_CLI_USAGE;
    }
    size_t n = pd_json_len(arr);
    int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
    for (size_t k = 0; ids != NULL && k < n; k++) {
        uint64_t v;
        if (!pd_json_u64(pd_json_array_at(arr, k), &v) || v > INT32_MAX) {
            fprintf(stderr, "pdctl: detokenize: element %zu is not a token id\n", k);
            free(ids);
            pd_json_doc_destroy(&doc);
            return PD_CLI_USAGE;
        }
        ids[k] = (int32_t)v;
    }
    pd_json_doc_destroy(&doc);
    if (ids == NULL)
        return PD_CLI_FAIL;
    *ids_p = ids;
    *n_p = n;
    return PD_CLI_OK;
}

static int pd_cmd_detok_one(const pd_tokenizer_t *tok, const char *s, size_t len, unsigned flags,
                            bool json)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = pd_cmd_detok_parse(s, len, &ids, &n);
    if (rc != PD_CLI_OK)
        return rc;
    char *text = NULL;
    size_t text_len = 0;
    pd_status_t st = pd_tokenizer_decode_alloc(tok, ids, n, flags, &text, &text_len);
    free(ids);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: detokenize: %s\n", pd_status_str(st));
        return PD_CLI_FAIL;
    }
    if (json)
        pd_json_fprint_string(stdout, text, text_len);
    else
        fwrite(text, 1, text_len, stdout);
    putchar('\n');
    free(text);
    return PD_CLI_OK;
}

/* One line of a --lines file. */
typedef struct pd_cmd_detok_line {
    const pd_tokenizer_t *tok;
    unsigned flags;
    bool json;
} pd_cmd_detok_line_t;

static int pd_cmd_detok_line(void *arg, const char *line, size_t len)
{
    const pd_cmd_detok_line_t *l = arg;
    return pd_cmd_detok_one(l->tok, line, len, l->flags, l->json);
}

/* What the options of pdctl detokenize ask for. */
typedef struct pd_cmd_detokenize_args {
    const char *ids, *lines;
    unsigned flags;
    bool json;
} pd_cmd_detokenize_args_t;

static void pd_cmd_detokenize_take(void *arg, int opt, const char *value)
{
    pd_cmd_detokenize_args_t *a = arg;
    if (opt == 'i')
        a->ids = value;
    else if (opt == 'L')
        a->lines = value;
    else if (opt == 's')
        a->flags |= PD_DETOKENIZE_SKIP_SPECIAL;
    else if (opt == 'j')
        a->json = true;
}

static bool pd_cmd_detokenize_ready(const void *arg)
{
    const pd_cmd_detokenize_args_t *a = arg;
    return (a->ids == NULL) != (a->lines == NULL);
}

int pd_cmd_detokenize(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"tokenizer", 't', true, 't', NULL},
        {"ids", 0, true, 'i', NULL},
        {"lines", 0, true, 'L', NULL},
        {"skip-special", 0, false, 's', NULL},
        {"json", 0, false, 'j', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    static const pd_cli_tok_cmd_t cmd = {"detokenize", opts, pd_cmd_detokenize_usage,
                                         pd_cmd_detokenize_take, pd_cmd_detokenize_ready};
    pd_cmd_detokenize_args_t a = {0};
    pd_tokenizer_t *tok = NULL;
    int rc = pd_cli_tok_cmd_start(&cmd, argc, argv, &a, &tok);
    if (tok == NULL)
        return rc;
    if (a.ids != NULL) {
        rc = pd_cmd_detok_one(tok, a.ids, strlen(a.ids), a.flags, a.json);
    } else {
        pd_cmd_detok_line_t line = {tok, a.flags, a.json};
        rc = pd_cli_each_line(a.lines, pd_cmd_detok_line, &line);
    }
    pd_tokenizer_destroy(&tok);
    return rc;
}
