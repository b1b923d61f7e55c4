/* Private to the chat template engine: the syntax tree, values, the arena they live in. */
#ifndef PD_CHAT_INT_H
#define PD_CHAT_INT_H

#include "pd/chat.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bump allocator over a chain of blocks, with a cap on the total. */
typedef struct pd_chat_arena_block pd_chat_arena_block_t;
typedef struct pd_chat_arena {
    pd_chat_arena_block_t *head;
    size_t used_bytes, cap_bytes;
} pd_chat_arena_t;

void *pd_chat_arena_alloc(pd_chat_arena_t *a, size_t n); /* NULL past the cap */
void pd_chat_arena_free(pd_chat_arena_t *a);

typedef enum pd_chat_vtype {
    PD_CV_UNDEF = 0,
    PD_CV_NONE,
    PD_CV_BOOL,
    PD_CV_INT,
    PD_CV_FLOAT,
    PD_CV_STR,
    PD_CV_LIST,
    PD_CV_DICT, /* also a namespace(): a dict whose attributes can be set */
    PD_CV_LOOP,
    PD_CV_FUNC, /* a global function: raise_exception, namespace, range */
} pd_chat_vtype_t;

typedef struct pd_chat_list pd_chat_list_t;
typedef struct pd_chat_dict pd_chat_dict_t;
typedef struct pd_chat_loop pd_chat_loop_t;

typedef struct pd_chat_val {
    uint8_t type; /* pd_chat_vtype_t */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        pd_chat_list_t *l;
        pd_chat_dict_t *d;
        const pd_chat_loop_t *loop;
        int fn;
    } u;
} pd_chat_val_t;

struct pd_chat_list {
    size_t n, cap;
    pd_chat_val_t *v;
};

struct pd_chat_dict {
    size_t n, cap;
    pd_chat_val_t *keys; /* strings */
    pd_chat_val_t *vals;
    bool ns; /* a namespace(): attributes may be assigned */
};

struct pd_chat_loop {
    size_t index0, length;
};

/* Syntax tree. Statements chain through next; so do call arguments and list items. */
typedef enum pd_chat_kind {
    PD_CN_TEXT,
    PD_CN_OUT,
    PD_CN_IF,  /* a: condition, b: then, c: else */
    PD_CN_FOR, /* name/name2: targets, a: iterable, b: body, c: else, d: filter */
    PD_CN_SET, /* name (or a: object, name: attribute), b: value */
    PD_CN_BREAK,
    PD_CN_CONTINUE,
    PD_CE_LIT,
    PD_CE_NAME,
    PD_CE_ATTR,   /* a.name */
    PD_CE_ITEM,   /* a[b] */
    PD_CE_SLICE,  /* a[b:c:d], any of b c d NULL */
    PD_CE_CALL,   /* a(args) */
    PD_CE_METHOD, /* a.name(args) */
    PD_CE_FILTER, /* a | name(args) */
    PD_CE_TEST,   /* a is [not] name(args); op 1 for not */
    PD_CE_NEG,
    PD_CE_NOT,
    PD_CE_BIN, /* a op b */
    PD_CE_AND,
    PD_CE_OR,
    PD_CE_COND, /* b if a else c */
    PD_CE_LIST,
    PD_CE_DICT, /* args: key, value, key, value... */
} pd_chat_kind_t;

enum {
    PD_COP_ADD = 1,
    PD_COP_SUB,
    PD_COP_MUL,
    PD_COP_DIV,
    PD_COP_FLOORDIV,
    PD_COP_MOD,
    PD_COP_POW,
    PD_COP_CONCAT,
    PD_COP_EQ,
    PD_COP_NE,
    PD_COP_LT,
    PD_COP_LE,
    PD_COP_GT,
    PD_COP_GE,
    PD_COP_IN,
    PD_COP_NOTIN,
};

typedef struct pd_chat_node pd_chat_node_t;
struct pd_chat_node {
    uint8_t kind, op;
    int line;
    const char *name, *name2; /* NUL-terminated, in the template's arena */
    size_t name_len;
    const char *kw; /* keyword of a call argument, NULL when positional */
    pd_chat_val_t lit;
    pd_chat_node_t *a, *b, *c, *d;
    pd_chat_node_t *args;
    pd_chat_node_t *next;
};

struct pd_chat_template {
    pd_chat_arena_t arena;
    pd_chat_node_t *body;
};

/* Global functions a template may call. */
enum { PD_CHAT_FN_RAISE = 1, PD_CHAT_FN_NAMESPACE, PD_CHAT_FN_RANGE };

/* The error text of this thread (pd_chat_last_error). */
void pd_chat_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Names the engine knows; the parser refuses others. */
bool pd_chat_filter_known(const char *name);
bool pd_chat_test_known(const char *name);
bool pd_chat_method_known(const char *name);

/* Python's whitespace for str.strip() and str.split(). n_p: bytes of the character at s. */
bool pd_chat_is_space(const char *s, size_t left, size_t *n_p);

#endif
