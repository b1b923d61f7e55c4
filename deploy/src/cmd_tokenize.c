/* pdctl tokenize: text to token ids with any tokenizer pdkv reads. */
#include "cli_opt.h"
#include "pdctl_int.h"

#include "pd/log.h"
#include "pd/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pd_cmd_tokenize_usage(FILE *out)
{
    fprintf(out, "usage: pdctl tokenize -t TOKENIZER (--text T | --lines FILE) [--add-special]\n"
                 "                      [--special-as-text]\n"
                 "\n"
                 "Print the token ids of a text as one JSON array, or of every line of FILE (one\n"
                 "array per line; '-' reads stdin). TOKENIZER is a tokenizer.json, a directory\n"
                 "holding one (or a tokenizer.bin), or a llama2.c tokenizer.bin.\n"
                 "\n"
                 "  -t, --tokenizer PATH  the tokenizer\n"
                 "  --text T              encode T\n"
                 "  --lines FILE          encode each line of FILE (without its newline)\n"
                 "  --add-special         add the tokenizer's special tokens around each text\n"
                 "                        (BOS and the like); none are added without it\n"
                 "  --special-as-text     read special-token strings such as <|eot_id|> in the\n"
                 "                        text as plain text (for untrusted input)\n");
}

char *pd_cli_read_all(const char *path, size_t *len_p)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "pdctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (len + 1 < cap)
            break;
        char *nb = cap < (1u << 30) ? realloc(buf, cap * 2) : NULL;
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            fprintf(stderr, "pdctl: %s: too large\n", path);
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (buf != NULL && ferror(f)) {
        fprintf(stderr, "pdctl: %s: read error\n", path);
        free(buf);
        buf = NULL;
    }
    if (f != stdin)
        fclose(f);
    if (buf != NULL) {
        buf[len] = '\0';
        *len_p = len;
    }
    return buf;
}

int pd_cli_tokenizer_open(const char *path, pd_tokenizer_t **tok_p)
{
    pd_status_t st = pd_tokenizer_open(path, 0, tok_p);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: tokenizer %s: %s\n", path, pd_status_str(st));
        return PD_CLI_FAIL;
    }
    return PD_CLI_OK;
}

int pd_cli_tok_cmd_start(const pd_cli_tok_cmd_t *cmd, int argc, char **argv, void *arg,
                         pd_tokenizer_t **tok_p)
{
    const char *tok_path = NULL;
    int c;
    pd_cli_parser_t pcli;
    *tok_p = NULL;
    pd_cli_parser_init(&pcli, cmd->name, argc, argv, cmd->opts);
    while ((c = pd_cli_opt_next(&pcli)) != PD_CLI_OPT_END) {
        if (c == PD_CLI_OPT_ERROR)
            return PD_CLI_USAGE; /* the parser said what was wrong */
        if (c == 'h') {
            cmd->usage(stdout);
            return PD_CLI_OK;
        }
        if (c == 't')
            tok_path = pcli.arg;
        else
            cmd->take(arg, c, pcli.arg);
    }
    if (pcli.n_pos != 0 || tok_path == NULL || !cmd->ready(arg)) {
        cmd->usage(stderr);
        return PD_CLI_USAGE;
    }
    if (pd_cli_tokenizer_open(tok_path, tok_p) != PD_CLI_OK)
        return PD_CLI_FAIL;
    return PD_CLI_OK;
}

int pd_cli_each_line(const char *path, int (*fn)(void *arg, const char *line, size_t len),
                     void *arg)
{
    size_t len = 0;
    char *buf = pd_cli_read_all(path, &len);
    if (buf == NULL)
        return PD_CLI_FAIL;
    int rc = PD_CLI_OK;
    for (size_t a = 0; a < len && rc == PD_CLI_OK;) {
        char *nl = memchr(buf + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - buf) : len;
        rc = fn(arg, buf + a, b - a);
        a = b + 1;
    }
    free(buf);
    return rc;
}

static int pd_cmd_tokenize_one(const pd_tokenizer_t *tok, const char *text, size_t len,
                               unsigned flags)
{
    size_t cap = pd_tokenizer_max_tokens(tok, len), n = 0;
    int32_t *ids = malloc((cap ? cap : 1) * sizeof(int32_t));
    if (ids == NULL)
        return PD_CLI_FAIL;
    pd_status_t st = pd_tokenizer_encode(tok, text, len, flags, ids, cap, &n);
    if (st != PD_OK) {
        fprintf(stderr, "pdctl: tokenize: %s\n", pd_status_str(st));
        free(ids);
        return PD_CLI_FAIL;
    }
    putchar('[');
    for (size_t i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", ids[i]);
    fputs("]\n", stdout);
    free(ids);
    return PD_CLI_OK;
}

/* One line of a --lines file. */
typedef struct pd_cmd_tokenize_line {
    const pd_tokenizer_t *tok;
    unsigned flags;
} pd_cmd_tokenize_line_t;

static int pd_cmd_tokenize_line(void *arg, const char *line, size_t len)
{
    const pd_cmd_tokenize_line_t *l = arg;
    return pd_cmd_tokenize_one(l->tok, line, len, l->flags);
}

/* What the options of pdctl tokenize ask for. */
typedef struct pd_cmd_tokenize_args {
    const char *text, *lines;
    unsigned flags;
} pd_cmd_tokenize_args_t;

static void pd_cmd_tokenize_take(void *arg, int opt, const char *value)
{
    pd_cmd_tokenize_args_t *a = arg;
    if (opt == 'T')
        a->text = value;
    else if (opt == 'L')
        a->lines = value;
    else if (opt == 'a')
        a->flags |= PD_TOKENIZE_ADD_SPECIAL;
    else if (opt == 's')
        a->flags |= PD_TOKENIZE_SPECIAL_AS_TEXT;
}

static bool pd_cmd_tokenize_ready(const void *arg)
{
    const pd_cmd_tokenize_args_t *a = arg;
    return (a->text == NULL) != (a->lines == NULL);
}

int pd_cmd_tokenize(int argc, char **argv)
{
    static const pd_cli_opt_t opts[] = {
        {"tokenizer", 't', true, 't', NULL},
        {"text", 0, true, 'T', NULL},
        {"lines", 0, true, 'L', NULL},
        {"add-special", 0, false, 'a', NULL},
        {"special-as-text", 0, false, 's', NULL},
        {"help", 'h', false, 'h', NULL},
        PD_CLI_OPT_END_TABLE,
    };
    static const pd_cli_tok_cmd_t cmd = {"tokenize", opts, pd_cmd_tokenize_usage,
                                         pd_cmd_tokenize_take, pd_cmd_tokenize_ready};
    pd_cmd_tokenize_args_t a = {0};
    pd_tokenizer_t *tok = NULL;
    int rc = pd_cli_tok_cmd_start(&cmd, argc, argv, &a, &tok);
    if (tok == NULL)
        return rc;
    if (a.text != NULL) {
        rc = pd_cmd_tokenize_one(tok, a.text, strlen(a.text), a.flags);
    } else {
        pd_cmd_tokenize_line_t line = {tok, a.flags};
        rc = pd_cli_each_line(a.lines, pd_cmd_tokenize_line, &line);
    }
    pd_tokenizer_destroy(&tok);
    return rc;
}
