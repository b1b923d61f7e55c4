/* Chat templates: the lexer's and parser's shared state (chat_lex.c, chat_parse.c).
 * Errors unwind with longjmp to pd_chat_template_create. */
#ifndef PD_CHAT_PARSE_H
#define PD_CHAT_PARSE_H

#include "chat_int.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>

#define PD_CHAT_MAX_PARSE_DEPTH 64

enum { T_EOF, T_TEXT, T_VAR, T_BLOCK, T_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct pd_chat_parser {
    const char *src;
    size_t len, pos;
    int line;
    bool in_tag, tag_is_var, line_start;
    int braces; /* open "{" of dict literals inside the current tag */
    pd_chat_arena_t *arena;
    int depth;
    /* the current token */
    int tt, tline;
    const char *tp;
    size_t tn;
    pd_chat_val_t tval;
    jmp_buf jb;
    pd_status_t st;
} pd_chat_parser_t;

/* Record the error "chat template line N: ..." and unwind. */
_Noreturn void pd_chat_fail(pd_chat_parser_t *p, pd_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* n bytes from the template's arena (zeroed), or unwind with PD_ERR_NO_MEMORY. */
void *pd_chat_palloc(pd_chat_parser_t *p, size_t n);
/* A NUL-terminated copy of s[0..n) in the arena. */
char *pd_chat_pstrdup(pd_chat_parser_t *p, const char *s, size_t n);
bool pd_chat_ws(char c);
/* Read the next token into p->tt, p->tp/p->tn, p->tval. */
void pd_chat_next(pd_chat_parser_t *p);

#endif
