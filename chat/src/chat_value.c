/* Chat templates: the arena, the thread's error text, Python's whitespace, and the names
 * of the filters, tests and methods the engine implements (the parser refuses others). */
#include "chat_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pd_chat_arena_block {
    pd_chat_arena_block_t *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define PD_CHAT_ARENA_BLOCK (64u * 1024u)

void *pd_chat_arena_alloc(pd_chat_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    pd_chat_arena_block_t *b = a->head;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > PD_CHAT_ARENA_BLOCK / 2 ? n : PD_CHAT_ARENA_BLOCK;
        if (a->cap_bytes != 0 && a->used_bytes + cap > a->cap_bytes)
            return NULL;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->used = 0;
        b->cap = cap;
        /* A big allocation gets its own block behind the current one, so the rest of
         * the current block stays in use. */
        if (a->head != NULL && cap != PD_CHAT_ARENA_BLOCK) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
        a->used_bytes += cap;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void pd_chat_arena_free(pd_chat_arena_t *a)
{
    pd_chat_arena_block_t *b = a->head;
    while (b != NULL) {
        pd_chat_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

static _Thread_local char pd_chat_err[512];

void pd_chat_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pd_chat_err, sizeof(pd_chat_err), fmt, ap);
    va_end(ap);
}

const char *pd_chat_last_error(void)
{
    return pd_chat_err;
}

bool pd_chat_is_space(const char *s, size_t left, size_t *n_p)
{
    const unsigned char *u = (const unsigned char *)s;
    if (left == 0)
        return false;
    if (u[0] < 0x80) {
        *n_p = 1;
        return u[0] == ' ' || (u[0] >= 0x09 && u[0] <= 0x0d) || (u[0] >= 0x1c && u[0] <= 0x1f);
    }
    /* U+0085, U+00A0 */
    if (left >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0)) {
        *n_p = 2;
        return true;
    }
    if (left >= 3) {
        uint32_t cp =
            ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
        if ((u[0] & 0xf0) == 0xe0 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
             cp == 0x202f || cp == 0x205f || cp == 0x3000)) {
            *n_p = 3;
            return true;
        }
    }
    return false;
}

static bool pd_chat_in(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

bool pd_chat_filter_known(const char *name)
{
    static const char *const f[] = {"trim",  "length",     "count",   "tojson", "upper",   "lower",
                                    "title", "capitalize", "string",  "int",    "float",   "first",
                                    "last",  "join",       "default", "d",      "reverse", "list",
                                    "items", "replace",    "safe",    "abs",    NULL};
    return pd_chat_in(name, f);
}

bool pd_chat_test_known(const char *name)
{
    static const char *const t[] = {"defined", "undefined", "none",     "string", "number",
                                    "integer", "float",     "boolean",  "true",   "false",
                                    "mapping", "sequence",  "iterable", "odd",    "even",
                                    "eq",      "ne",        "sameas",   "in",     NULL};
    return pd_chat_in(name, t);
}

bool pd_chat_method_known(const char *name)
{
    static const char *const m[] = {
        "strip", "lstrip",     "rstrip",  "split", "startswith", "endswith", "upper", "lower",
        "title", "capitalize", "replace", "items", "keys",       "values",   "get",   NULL};
    return pd_chat_in(name, m);
}
