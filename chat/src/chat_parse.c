/* Chat templates: the parser (the lexer is chat_lex.c). It builds the tree in the template's arena
 * and refuses, by name, every construct the evaluator does not implement. Errors unwind with
 * longjmp to pd_chat_template_create: everything allocated lives in the arena, which that function
 * frees. */
#include "chat_parse.h"

#include "pd/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool pd_chat_is_op(const pd_chat_parser_t *p, const char *op)
{
    return p->tt == T_OP && p->tn == strlen(op) && memcmp(p->tp, op, p->tn) == 0;
}

static bool pd_chat_is_name(const pd_chat_parser_t *p, const char *name)
{
    return p->tt == T_NAME && p->tn == strlen(name) && memcmp(p->tp, name, p->tn) == 0;
}

static void pd_chat_expect_op(pd_chat_parser_t *p, const char *op)
{
    if (!pd_chat_is_op(p, op))
        pd_chat_fail(p, PD_ERR_FORMAT, "expected '%s'", op);
    pd_chat_next(p);
}

static const char *pd_chat_take_name(pd_chat_parser_t *p, size_t *len_p)
{
    if (p->tt != T_NAME)
        pd_chat_fail(p, PD_ERR_FORMAT, "expected a name");
    const char *n = pd_chat_pstrdup(p, p->tp, p->tn);
    if (len_p != NULL)
        *len_p = p->tn;
    pd_chat_next(p);
    return n;
}

static pd_chat_node_t *pd_chat_node(pd_chat_parser_t *p, int kind)
{
    pd_chat_node_t *n = pd_chat_palloc(p, sizeof(*n));
    n->kind = (uint8_t)kind;
    n->line = p->tline;
    return n;
}

static pd_chat_node_t *pd_chat_expr(pd_chat_parser_t *p);

static void pd_chat_enter(pd_chat_parser_t *p)
{
    if (++p->depth > PD_CHAT_MAX_PARSE_DEPTH)
        pd_chat_fail(p, PD_ERR_LIMIT, "nested more than %d deep", PD_CHAT_MAX_PARSE_DEPTH);
}

/* "(" already consumed: arguments up to ")", keywords allowed. */
static pd_chat_node_t *pd_chat_args(pd_chat_parser_t *p)
{
    pd_chat_node_t *head = NULL, **tail = &head;
    while (!pd_chat_is_op(p, ")")) {
        const char *kw = NULL;
        if (p->tt == T_NAME) {
            /* name=value: look ahead one character past the name. */
            size_t q = p->pos;
            while (q < p->len && pd_chat_ws(p->src[q]))
                q++;
            if (q + 1 < p->len && p->src[q] == '=' && p->src[q + 1] != '=') {
                kw = pd_chat_take_name(p, NULL);
                pd_chat_expect_op(p, "=");
            }
        }
        pd_chat_node_t *a = pd_chat_expr(p);
        a->kw = kw;
        *tail = a;
        tail = &a->next;
        if (!pd_chat_is_op(p, ","))
            break;
        pd_chat_next(p);
    }
    pd_chat_expect_op(p, ")");
    return head;
}

static pd_chat_node_t *pd_chat_primary(pd_chat_parser_t *p)
{
    pd_chat_node_t *n;
    if (p->tt == T_STR || p->tt == T_INT || p->tt == T_FLOAT) {
        n = pd_chat_node(p, PD_CE_LIT);
        n->lit = p->tval;
        pd_chat_next(p);
        /* adjacent string literals concatenate, as in Python */
        while (n->lit.type == PD_CV_STR && p->tt == T_STR) {
            size_t a = n->lit.u.s.n, b = p->tval.u.s.n;
            char *s = pd_chat_palloc(p, a + b + 1);
            memcpy(s, n->lit.u.s.p, a);
            memcpy(s + a, p->tval.u.s.p, b);
            n->lit.u.s.p = s;
            n->lit.u.s.n = a + b;
            pd_chat_next(p);
        }
        return n;
    }
    if (p->tt == T_NAME) {
        n = pd_chat_node(p, PD_CE_LIT);
        if (pd_chat_is_name(p, "true") || pd_chat_is_name(p, "True")) {
            n->lit.type = PD_CV_BOOL, n->lit.u.b = true;
        } else if (pd_chat_is_name(p, "false") || pd_chat_is_name(p, "False")) {
            n->lit.type = PD_CV_BOOL, n->lit.u.b = false;
        } else if (pd_chat_is_name(p, "none") || pd_chat_is_name(p, "None")) {
            n->lit.type = PD_CV_NONE;
        } else {
            n->kind = PD_CE_NAME;
            n->name = pd_chat_take_name(p, &n->name_len);
            return n;
        }
        pd_chat_next(p);
        return n;
    }
    if (pd_chat_is_op(p, "(")) {
        pd_chat_next(p);
        n = pd_chat_expr(p);
        if (pd_chat_is_op(p, ","))
            pd_chat_fail(p, PD_ERR_UNSUPPORTED, "tuples are not supported");
        pd_chat_expect_op(p, ")");
        return n;
    }
    if (pd_chat_is_op(p, "[")) {
        n = pd_chat_node(p, PD_CE_LIST);
        pd_chat_next(p);
        pd_chat_node_t **tail = &n->args;
        while (!pd_chat_is_op(p, "]")) {
            *tail = pd_chat_expr(p);
            tail = &(*tail)->next;
            if (!pd_chat_is_op(p, ","))
                break;
            pd_chat_next(p);
        }
        pd_chat_expect_op(p, "]");
        return n;
    }
    if (pd_chat_is_op(p, "{")) {
        n = pd_chat_node(p, PD_CE_DICT);
        pd_chat_next(p);
        pd_chat_node_t **tail = &n->args;
        while (!pd_chat_is_op(p, "}")) {
            *tail = pd_chat_expr(p);
            tail = &(*tail)->next;
            pd_chat_expect_op(p, ":");
            *tail = pd_chat_expr(p);
            tail = &(*tail)->next;
            if (!pd_chat_is_op(p, ","))
                break;
            pd_chat_next(p);
        }
        pd_chat_expect_op(p, "}");
        return n;
    }
    if (p->tt == T_END || p->tt == T_EOF)
        pd_chat_fail(p, PD_ERR_FORMAT, "expression expected before the end of the tag");
    pd_chat_fail(p, PD_ERR_FORMAT, "unexpected '%.*s'", (int)p->tn, p->tp);
}

static pd_chat_node_t *pd_chat_postfix(pd_chat_parser_t *p, pd_chat_node_t *n)
{
    for (;;) {
        if (pd_chat_is_op(p, ".")) {
            pd_chat_next(p);
            pd_chat_node_t *a = pd_chat_node(p, PD_CE_ATTR);
            a->a = n;
            a->name = pd_chat_take_name(p, &a->name_len);
            if (pd_chat_is_op(p, "(")) {
                if (!pd_chat_method_known(a->name))
                    pd_chat_fail(p, PD_ERR_UNSUPPORTED, "method '.%s()' is not supported", a->name);
                pd_chat_next(p);
                a->kind = PD_CE_METHOD;
                a->args = pd_chat_args(p);
            }
            n = a;
        } else if (pd_chat_is_op(p, "[")) {
            pd_chat_next(p);
            pd_chat_node_t *a = pd_chat_node(p, PD_CE_ITEM);
            a->a = n;
            pd_chat_node_t *part[3] = {NULL, NULL, NULL};
            int k = 0;
            for (;;) {
                if (!pd_chat_is_op(p, ":") && !pd_chat_is_op(p, "]"))
                    part[k] = pd_chat_expr(p);
                if (pd_chat_is_op(p, ":") && k < 2) {
                    pd_chat_next(p);
                    k++;
                    a->kind = PD_CE_SLICE;
                    continue;
                }
                break;
            }
            pd_chat_expect_op(p, "]");
            if (a->kind == PD_CE_ITEM && part[0] == NULL)
                pd_chat_fail(p, PD_ERR_FORMAT, "empty subscript");
            a->b = part[0], a->c = part[1], a->d = part[2];
            n = a;
        } else if (pd_chat_is_op(p, "(")) {
            if (n->kind != PD_CE_NAME)
                pd_chat_fail(p, PD_ERR_UNSUPPORTED, "only named functions can be called");
            static const char *const fns[] = {"", "raise_exception", "namespace", "range"};
            int fn = 0;
            for (int k = 1; k < 4; k++)
                if (strcmp(n->name, fns[k]) == 0)
                    fn = k;
            if (fn == 0)
                pd_chat_fail(p, PD_ERR_UNSUPPORTED, "function '%s()' is not supported", n->name);
            pd_chat_next(p);
            pd_chat_node_t *a = pd_chat_node(p, PD_CE_CALL);
            a->op = (uint8_t)fn;
            a->name = n->name;
            a->args = pd_chat_args(p);
            n = a;
        } else {
            return n;
        }
    }
}

/* A filter or test name with its optional arguments. */
static pd_chat_node_t *pd_chat_filter_or_test(pd_chat_parser_t *p, pd_chat_node_t *n, int kind)
{
    pd_chat_node_t *f = pd_chat_node(p, kind);
    f->a = n;
    if (kind == PD_CE_TEST && pd_chat_is_name(p, "not")) {
        f->op = 1;
        pd_chat_next(p);
    }
    /* "is none", "is true" and the like are tests named by a keyword */
    f->name = pd_chat_take_name(p, &f->name_len);
    if (kind == PD_CE_FILTER && !pd_chat_filter_known(f->name))
        pd_chat_fail(p, PD_ERR_UNSUPPORTED, "filter '%s' is not supported", f->name);
    if (kind == PD_CE_TEST && !pd_chat_test_known(f->name))
        pd_chat_fail(p, PD_ERR_UNSUPPORTED, "test '%s' is not supported", f->name);
    if (pd_chat_is_op(p, "(")) {
        pd_chat_next(p);
        f->args = pd_chat_args(p);
    } else if (kind == PD_CE_TEST && (p->tt == T_STR || p->tt == T_INT || p->tt == T_FLOAT ||
                                      (p->tt == T_NAME && !pd_chat_is_name(p, "and") &&
                                       !pd_chat_is_name(p, "or") && !pd_chat_is_name(p, "if") &&
                                       !pd_chat_is_name(p, "else") && !pd_chat_is_name(p, "is") &&
                                       !pd_chat_is_name(p, "in") && !pd_chat_is_name(p, "not")))) {
        /* a test's single argument without parentheses: "is sameas false" */
        f->args = pd_chat_postfix(p, pd_chat_primary(p));
    }
    return f;
}

static pd_chat_node_t *pd_chat_unary(pd_chat_parser_t *p)
{
    pd_chat_enter(p);
    pd_chat_node_t *n;
    if (pd_chat_is_op(p, "-")) {
        pd_chat_next(p);
        n = pd_chat_node(p, PD_CE_NEG);
        n->a = pd_chat_unary(p);
    } else if (pd_chat_is_op(p, "+")) {
        pd_chat_next(p);
        n = pd_chat_unary(p);
    } else {
        n = pd_chat_postfix(p, pd_chat_primary(p));
    }
    for (;;) {
        if (pd_chat_is_op(p, "|")) {
            pd_chat_next(p);
            n = pd_chat_filter_or_test(p, n, PD_CE_FILTER);
        } else if (pd_chat_is_name(p, "is")) {
            pd_chat_next(p);
            n = pd_chat_filter_or_test(p, n, PD_CE_TEST);
        } else {
            break;
        }
    }
    p->depth--;
    return n;
}

static pd_chat_node_t *pd_chat_bin(pd_chat_parser_t *p, int op, pd_chat_node_t *a,
                                   pd_chat_node_t *b)
{
    pd_chat_node_t *n = pd_chat_node(p, PD_CE_BIN);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static pd_chat_node_t *pd_chat_pow(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_unary(p);
    while (pd_chat_is_op(p, "**")) {
        pd_chat_next(p);
        n = pd_chat_bin(p, PD_COP_POW, n, pd_chat_unary(p));
    }
    return n;
}

static pd_chat_node_t *pd_chat_math2(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_pow(p);
    for (;;) {
        int op = pd_chat_is_op(p, "*")    ? PD_COP_MUL
                 : pd_chat_is_op(p, "/")  ? PD_COP_DIV
                 : pd_chat_is_op(p, "//") ? PD_COP_FLOORDIV
                 : pd_chat_is_op(p, "%")  ? PD_COP_MOD
                                          : 0;
        if (op == 0)
            return n;
        pd_chat_next(p);
        n = pd_chat_bin(p, op, n, pd_chat_pow(p));
    }
}

static pd_chat_node_t *pd_chat_concat(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_math2(p);
    while (pd_chat_is_op(p, "~")) {
        pd_chat_next(p);
        n = pd_chat_bin(p, PD_COP_CONCAT, n, pd_chat_math2(p));
    }
    return n;
}

static pd_chat_node_t *pd_chat_math1(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_concat(p);
    for (;;) {
        int op = pd_chat_is_op(p, "+") ? PD_COP_ADD : pd_chat_is_op(p, "-") ? PD_COP_SUB : 0;
        if (op == 0)
            return n;
        pd_chat_next(p);
        n = pd_chat_bin(p, op, n, pd_chat_concat(p));
    }
}

static pd_chat_node_t *pd_chat_compare(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_math1(p);
    for (;;) {
        int op = pd_chat_is_op(p, "==")     ? PD_COP_EQ
                 : pd_chat_is_op(p, "!=")   ? PD_COP_NE
                 : pd_chat_is_op(p, "<")    ? PD_COP_LT
                 : pd_chat_is_op(p, "<=")   ? PD_COP_LE
                 : pd_chat_is_op(p, ">")    ? PD_COP_GT
                 : pd_chat_is_op(p, ">=")   ? PD_COP_GE
                 : pd_chat_is_name(p, "in") ? PD_COP_IN
                                            : 0;
        if (op == 0 && pd_chat_is_name(p, "not")) {
            /* "not in" */
            size_t q = p->pos;
            while (q < p->len && pd_chat_ws(p->src[q]))
                q++;
            if (q + 2 <= p->len && memcmp(p->src + q, "in", 2) == 0 &&
                (q + 2 == p->len || pd_chat_ws(p->src[q + 2]) || p->src[q + 2] == '(' ||
                 p->src[q + 2] == '[' || p->src[q + 2] == '\'' || p->src[q + 2] == '"')) {
                pd_chat_next(p);
                op = PD_COP_NOTIN;
            }
        }
        if (op == 0)
            return n;
        pd_chat_next(p);
        n = pd_chat_bin(p, op, n, pd_chat_math1(p));
    }
}

static pd_chat_node_t *pd_chat_not(pd_chat_parser_t *p)
{
    if (pd_chat_is_name(p, "not")) {
        pd_chat_enter(p);
        pd_chat_next(p);
        pd_chat_node_t *n = pd_chat_node(p, PD_CE_NOT);
        n->a = pd_chat_not(p);
        p->depth--;
        return n;
    }
    return pd_chat_compare(p);
}

static pd_chat_node_t *pd_chat_and(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_not(p);
    while (pd_chat_is_name(p, "and")) {
        pd_chat_next(p);
        pd_chat_node_t *a = pd_chat_node(p, PD_CE_AND);
        a->a = n;
        a->b = pd_chat_not(p);
        n = a;
    }
    return n;
}

static pd_chat_node_t *pd_chat_or(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_and(p);
    while (pd_chat_is_name(p, "or")) {
        pd_chat_next(p);
        pd_chat_node_t *a = pd_chat_node(p, PD_CE_OR);
        a->a = n;
        a->b = pd_chat_and(p);
        n = a;
    }
    return n;
}

static pd_chat_node_t *pd_chat_expr(pd_chat_parser_t *p)
{
    pd_chat_enter(p);
    pd_chat_node_t *n = pd_chat_or(p);
    if (pd_chat_is_name(p, "if")) {
        pd_chat_next(p);
        pd_chat_node_t *c = pd_chat_node(p, PD_CE_COND);
        c->b = n;
        c->a = pd_chat_or(p);
        if (pd_chat_is_name(p, "else")) {
            pd_chat_next(p);
            c->c = pd_chat_expr(p);
        }
        n = c;
    }
    p->depth--;
    return n;
}

static void pd_chat_expect_end(pd_chat_parser_t *p)
{
    if (p->tt != T_END)
        pd_chat_fail(p, PD_ERR_FORMAT, "expected the end of the tag, found '%.*s'",
                     (int)(p->tt == T_EOF ? 0 : p->tn), p->tp);
    pd_chat_next(p);
}

/* Statements up to a block tag named in stops (NUL-separated list ending in "").
 * Returns the stop tag's name (consumed, the tag's expression still to read), NULL at the
 * end of the template. */
static const char *pd_chat_body(pd_chat_parser_t *p, pd_chat_node_t **body_p,
                                const char *const *stops);

static pd_chat_node_t *pd_chat_stmt_if(pd_chat_parser_t *p)
{
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    pd_chat_node_t *n = pd_chat_node(p, PD_CN_IF);
    n->a = pd_chat_expr(p);
    pd_chat_expect_end(p);
    const char *stop = pd_chat_body(p, &n->b, stops);
    if (stop == NULL)
        pd_chat_fail(p, PD_ERR_FORMAT, "'if' without 'endif'");
    if (strcmp(stop, "elif") == 0) {
        n->c = pd_chat_stmt_if(p);
        return n;
    }
    if (strcmp(stop, "else") == 0) {
        pd_chat_expect_end(p);
        static const char *const end[] = {"endif", NULL};
        if (pd_chat_body(p, &n->c, end) == NULL)
            pd_chat_fail(p, PD_ERR_FORMAT, "'if' without 'endif'");
    }
    pd_chat_expect_end(p);
    return n;
}

static pd_chat_node_t *pd_chat_stmt_for(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_node(p, PD_CN_FOR);
    n->name = pd_chat_take_name(p, NULL);
    if (pd_chat_is_op(p, ",")) {
        pd_chat_next(p);
        n->name2 = pd_chat_take_name(p, NULL);
    }
    if (!pd_chat_is_name(p, "in"))
        pd_chat_fail(p, PD_ERR_FORMAT, "expected 'in' in 'for'");
    pd_chat_next(p);
    /* the iterable stops before a filtering "if" */
    pd_chat_enter(p);
    n->a = pd_chat_or(p);
    p->depth--;
    if (pd_chat_is_name(p, "if")) {
        pd_chat_next(p);
        n->d = pd_chat_expr(p);
    }
    if (pd_chat_is_name(p, "recursive"))
        pd_chat_fail(p, PD_ERR_UNSUPPORTED, "recursive loops are not supported");
    pd_chat_expect_end(p);
    static const char *const stops[] = {"else", "endfor", NULL};
    const char *stop = pd_chat_body(p, &n->b, stops);
    if (stop == NULL)
        pd_chat_fail(p, PD_ERR_FORMAT, "'for' without 'endfor'");
    if (strcmp(stop, "else") == 0) {
        pd_chat_expect_end(p);
        static const char *const end[] = {"endfor", NULL};
        if (pd_chat_body(p, &n->c, end) == NULL)
            pd_chat_fail(p, PD_ERR_FORMAT, "'for' without 'endfor'");
    }
    pd_chat_expect_end(p);
    return n;
}

static pd_chat_node_t *pd_chat_stmt_set(pd_chat_parser_t *p)
{
    pd_chat_node_t *n = pd_chat_node(p, PD_CN_SET);
    const char *name = pd_chat_take_name(p, NULL);
    if (pd_chat_is_op(p, ".")) {
        pd_chat_next(p);
        pd_chat_node_t *obj = pd_chat_node(p, PD_CE_NAME);
        obj->name = name;
        n->a = obj;
        n->name = pd_chat_take_name(p, &n->name_len);
    } else {
        n->name = name;
    }
    if (pd_chat_is_op(p, ","))
        pd_chat_fail(p, PD_ERR_UNSUPPORTED, "'set' of several names is not supported");
    if (p->tt == T_END)
        pd_chat_fail(p, PD_ERR_UNSUPPORTED, "block 'set' is not supported");
    pd_chat_expect_op(p, "=");
    n->b = pd_chat_expr(p);
    pd_chat_expect_end(p);
    return n;
}

static const char *pd_chat_body(pd_chat_parser_t *p, pd_chat_node_t **body_p,
                                const char *const *stops)
{
    pd_chat_enter(p);
    pd_chat_node_t **tail = body_p;
    for (;;) {
        pd_chat_node_t *n = NULL;
        if (p->tt == T_EOF) {
            p->depth--;
            return NULL;
        }
        if (p->tt == T_TEXT) {
            n = pd_chat_node(p, PD_CN_TEXT);
            n->name = p->tp;
            n->name_len = p->tn;
            pd_chat_next(p);
        } else if (p->tt == T_VAR) {
            pd_chat_next(p);
            n = pd_chat_node(p, PD_CN_OUT);
            n->a = pd_chat_expr(p);
            pd_chat_expect_end(p);
        } else if (p->tt == T_BLOCK) {
            pd_chat_next(p);
            if (p->tt != T_NAME)
                pd_chat_fail(p, PD_ERR_FORMAT, "a tag name expected after '{%%'");
            for (size_t k = 0; stops != NULL && stops[k] != NULL; k++)
                if (pd_chat_is_name(p, stops[k])) {
                    pd_chat_next(p);
                    p->depth--;
                    return stops[k];
                }
            if (pd_chat_is_name(p, "if")) {
                pd_chat_next(p);
                n = pd_chat_stmt_if(p);
            } else if (pd_chat_is_name(p, "for")) {
                pd_chat_next(p);
                n = pd_chat_stmt_for(p);
            } else if (pd_chat_is_name(p, "set")) {
                pd_chat_next(p);
                n = pd_chat_stmt_set(p);
            } else if (pd_chat_is_name(p, "break") || pd_chat_is_name(p, "continue")) {
                n = pd_chat_node(p, pd_chat_is_name(p, "break") ? PD_CN_BREAK : PD_CN_CONTINUE);
                pd_chat_next(p);
                pd_chat_expect_end(p);
            } else {
                pd_chat_fail(p, PD_ERR_UNSUPPORTED, "tag '%.*s' is not supported", (int)p->tn,
                             p->tp);
            }
        } else {
            pd_chat_fail(p, PD_ERR_FORMAT, "unexpected token");
        }
        *tail = n;
        tail = &n->next;
    }
}

pd_status_t pd_chat_template_create(const char *src, size_t len, pd_chat_template_t **tpl_p)
{
    if (src == NULL || tpl_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (len > PD_CHAT_MAX_TEMPLATE_BYTES) {
        pd_chat_set_error("chat template of %zu bytes: more than %u", len,
                          PD_CHAT_MAX_TEMPLATE_BYTES);
        return PD_ERR_LIMIT;
    }
    pd_chat_template_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return PD_ERR_NO_MEMORY;
    t->arena.cap_bytes = 64u * len + (1u << 20);
    /* The source is copied so that text nodes can point into it. */
    char *copy = pd_chat_arena_alloc(&t->arena, len + 1);
    if (copy == NULL) {
        free(t);
        return PD_ERR_NO_MEMORY;
    }
    memcpy(copy, src, len);
    copy[len] = '\0';
    pd_chat_parser_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        pd_chat_arena_free(&t->arena);
        free(t);
        return PD_ERR_NO_MEMORY;
    }
    p->src = copy;
    p->len = len;
    p->line = 1;
    p->line_start = true;
    p->arena = &t->arena;
    if (setjmp(p->jb) != 0) {
        pd_status_t st = p->st;
        free(p);
        pd_chat_template_destroy(&t);
        return st;
    }
    pd_chat_next(p);
    if (pd_chat_body(p, &t->body, NULL) != NULL)
        pd_chat_fail(p, PD_ERR_FORMAT, "unexpected end tag");
    free(p);
    pd_chat_set_error("%s", "");
    *tpl_p = t;
    return PD_OK;
}

void pd_chat_template_destroy(pd_chat_template_t **tpl_p)
{
    if (tpl_p == NULL || *tpl_p == NULL)
        return;
    pd_chat_arena_free(&(*tpl_p)->arena);
    free(*tpl_p);
    *tpl_p = NULL;
}
