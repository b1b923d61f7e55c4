/* Chat templates: the lexer. It applies Jinja's whitespace rules as transformers
 * configures them (trim_blocks, lstrip_blocks, "-" and "+" markers) and reads the tokens
 * inside tags; errors unwind through pd_chat_fail. */
#include "chat_parse.h"

#include "pd/json.h"
#include "pd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void pd_chat_fail(pd_chat_parser_t *p, pd_status_t st, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pd_chat_set_error("chat template line %d: %s", p->tline ? p->tline : p->line, msg);
    p->st = st;
    longjmp(p->jb, 1);
}

void *pd_chat_palloc(pd_chat_parser_t *p, size_t n)
{
    void *m = pd_chat_arena_alloc(p->arena, n);
    if (m == NULL)
        pd_chat_fail(p, PD_ERR_NO_MEMORY, "out of memory");
    memset(m, 0, n);
    return m;
}

char *pd_chat_pstrdup(pd_chat_parser_t *p, const char *s, size_t n)
{
    char *d = pd_chat_palloc(p, n + 1);
    memcpy(d, s, n);
    return d;
}

bool pd_chat_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void pd_chat_advance(pd_chat_parser_t *p, size_t n)
{
    for (size_t i = 0; i < n && p->pos < p->len; i++)
        if (p->src[p->pos++] == '\n')
            p->line++;
}

/* After a tag's closing delimiter: "-" strips all whitespace, a block or comment drops
 * the newline right after it (trim_blocks). */
static void pd_chat_after_tag(pd_chat_parser_t *p, bool minus, bool block)
{
    if (minus) {
        while (p->pos < p->len && pd_chat_ws(p->src[p->pos]))
            pd_chat_advance(p, 1);
    } else if (block && p->pos < p->len && p->src[p->pos] == '\n') {
        pd_chat_advance(p, 1);
    }
    p->line_start = p->pos == 0 || p->src[p->pos - 1] == '\n';
}

/* Text mode: the text up to the next tag (whitespace rules applied), then the tag opener.
 * Comments are skipped here. */
static void pd_chat_next_text(pd_chat_parser_t *p)
{
    for (;;) {
        size_t start = p->pos, q = p->pos;
        int start_line = p->line;
        while (q + 1 < p->len &&
               !(p->src[q] == '{' &&
                 (p->src[q + 1] == '{' || p->src[q + 1] == '%' || p->src[q + 1] == '#')))
            q++;
        if (q + 1 >= p->len)
            q = p->len;
        size_t end = q;
        char kind = q < p->len ? p->src[q + 1] : 0;
        char mark = q + 2 < p->len ? p->src[q + 2] : 0;
        if (kind != 0) {
            if (mark == '-') {
                while (end > start && pd_chat_ws(p->src[end - 1]))
                    end--;
            } else if ((kind == '%' || kind == '#') && mark != '+') {
                /* lstrip_blocks: spaces and tabs alone between the line start and the tag. */
                size_t ls = end;
                while (ls > start && (p->src[ls - 1] == ' ' || p->src[ls - 1] == '\t'))
                    ls--;
                if ((ls > start && p->src[ls - 1] == '\n') || (ls == start && p->line_start))
                    end = ls;
            }
        }
        pd_chat_advance(p, q - p->pos);
        if (end > start) {
            p->tt = T_TEXT;
            p->tp = p->src + start;
            p->tn = end - start;
            p->tline = start_line;
            if (kind != 0) {
                /* leave the tag for the next call */
            }
            return;
        }
        if (kind == 0) {
            p->tt = T_EOF;
            p->tline = p->line;
            return;
        }
        p->tline = p->line;
        pd_chat_advance(p, (mark == '-' || mark == '+') ? 3 : 2);
        if (kind == '#') {
            const char *e = NULL;
            for (size_t i = p->pos; i + 1 < p->len; i++)
                if (p->src[i] == '#' && p->src[i + 1] == '}') {
                    e = p->src + i;
                    break;
                }
            if (e == NULL)
                pd_chat_fail(p, PD_ERR_FORMAT, "comment not closed");
            bool minus = e > p->src + p->pos && e[-1] == '-';
            pd_chat_advance(p, (size_t)(e - (p->src + p->pos)) + 2);
            pd_chat_after_tag(p, minus, true);
            continue;
        }
        p->tt = kind == '{' ? T_VAR : T_BLOCK;
        p->in_tag = true;
        p->tag_is_var = kind == '{';
        p->braces = 0;
        return;
    }
}

/* A string literal with Python's escapes; p->pos is on the opening quote. */
static void pd_chat_lex_string(pd_chat_parser_t *p)
{
    char q = p->src[p->pos];
    size_t i = p->pos + 1;
    while (i < p->len && p->src[i] != q) {
        if (p->src[i] == '\\')
            i++;
        i++;
    }
    if (i >= p->len)
        pd_chat_fail(p, PD_ERR_FORMAT, "string literal not closed");
    const char *s = p->src + p->pos + 1;
    size_t n = i - p->pos - 1;
    char *d = pd_chat_palloc(p, n + 1), *o = d;
    for (size_t k = 0; k < n; k++) {
        if (s[k] != '\\' || k + 1 >= n) {
            *o++ = s[k];
            continue;
        }
        char c = s[++k];
        int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (digits > 0) {
            uint32_t cp = 0;
            int got = 0;
            while (got < digits && k + 1 < n && pd_hex_digit(s[k + 1]) >= 0)
                cp = cp * 16 + (uint32_t)pd_hex_digit(s[++k]), got++;
            if (got != digits || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                pd_chat_fail(p, PD_ERR_FORMAT, "bad \\%c escape in a string literal", c);
            o += pd_utf8_put(o, cp);
            continue;
        }
        switch (c) {
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'v':
            *o++ = '\v';
            break;
        case 'a':
            *o++ = '\a';
            break;
        case '0':
            *o++ = '\0';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\'':
            *o++ = '\'';
            break;
        case '"':
            *o++ = '"';
            break;
        case '\n':
            break;
        default:
            *o++ = '\\';
            *o++ = c;
        }
    }
    p->tt = T_STR;
    p->tval.type = PD_CV_STR;
    p->tval.u.s.p = d;
    p->tval.u.s.n = (size_t)(o - d);
    pd_chat_advance(p, i + 1 - p->pos);
}

/* The next token: text mode outside tags, expression tokens inside. */
void pd_chat_next(pd_chat_parser_t *p)
{
    if (!p->in_tag) {
        pd_chat_next_text(p);
        return;
    }
    while (p->pos < p->len && pd_chat_ws(p->src[p->pos]))
        pd_chat_advance(p, 1);
    p->tline = p->line;
    if (p->pos >= p->len)
        pd_chat_fail(p, PD_ERR_FORMAT, "tag not closed");
    const char *c = p->src + p->pos;
    size_t left = p->len - p->pos;
    char close = p->tag_is_var ? '}' : '%';
    bool minus = c[0] == '-' && left >= 3 && c[1] == close && c[2] == '}';
    if (minus || (left >= 2 && c[0] == close && c[1] == '}' && (close == '%' || p->braces == 0))) {
        pd_chat_advance(p, minus ? 3 : 2);
        p->in_tag = false;
        p->tt = T_END;
        pd_chat_after_tag(p, minus, !p->tag_is_var);
        return;
    }
    if (c[0] == '\'' || c[0] == '"') {
        pd_chat_lex_string(p);
        return;
    }
    if ((c[0] >= 'a' && c[0] <= 'z') || (c[0] >= 'A' && c[0] <= 'Z') || c[0] == '_') {
        size_t n = 1;
        while (n < left && ((c[n] >= 'a' && c[n] <= 'z') || (c[n] >= 'A' && c[n] <= 'Z') ||
                            (c[n] >= '0' && c[n] <= '9') || c[n] == '_'))
            n++;
        p->tt = T_NAME;
        p->tp = c;
        p->tn = n;
        pd_chat_advance(p, n);
        return;
    }
    if (c[0] >= '0' && c[0] <= '9') {
        size_t n = 0;
        bool flt = false;
        while (n < left && ((c[n] >= '0' && c[n] <= '9') || c[n] == '_'))
            n++;
        if (n + 1 < left && c[n] == '.' && c[n + 1] >= '0' && c[n + 1] <= '9') {
            flt = true;
            n++;
            while (n < left && c[n] >= '0' && c[n] <= '9')
                n++;
        }
        if (n + 1 < left && (c[n] == 'e' || c[n] == 'E')) {
            size_t m = n + 1;
            if (m < left && (c[m] == '+' || c[m] == '-'))
                m++;
            if (m < left && c[m] >= '0' && c[m] <= '9') {
                flt = true;
                n = m;
                while (n < left && c[n] >= '0' && c[n] <= '9')
                    n++;
            }
        }
        char buf[64];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof(buf); i++)
            if (c[i] != '_')
                buf[k++] = c[i];
        buf[k] = '\0';
        if (n >= sizeof(buf))
            pd_chat_fail(p, PD_ERR_LIMIT, "number literal too long");
        if (flt) {
            p->tt = T_FLOAT;
            p->tval.type = PD_CV_FLOAT;
            p->tval.u.f = strtod(buf, NULL);
        } else {
            char *e;
            p->tt = T_INT;
            p->tval.type = PD_CV_INT;
            p->tval.u.i = (int64_t)strtoll(buf, &e, 10);
            if (k > 18)
                pd_chat_fail(p, PD_ERR_LIMIT, "integer literal too large");
        }
        pd_chat_advance(p, n);
        return;
    }
    static const char *const two[] = {"//", "**", "==", "!=", "<=", ">="};
    p->tt = T_OP;
    p->tp = c;
    p->tn = 1;
    for (size_t k = 0; k < sizeof(two) / sizeof(two[0]); k++)
        if (left >= 2 && c[0] == two[k][0] && c[1] == two[k][1])
            p->tn = 2;
    if (p->tn == 1 && !strchr("()[]{}.,:|+-*/%~<>=", c[0]))
        pd_chat_fail(p, PD_ERR_FORMAT, "unexpected character '%c'", c[0]);
    if (c[0] == '{')
        p->braces++;
    else if (c[0] == '}' && p->braces > 0)
        p->braces--;
    pd_chat_advance(p, p->tn);
}
