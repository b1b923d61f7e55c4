/* Private to the chat template evaluator: the render state and the value operations
 * (chat_ops.c) that chat_eval.c calls. Every function here may longjmp out on error. */
#ifndef PD_CHAT_EVAL_H
#define PD_CHAT_EVAL_H

#include "chat_int.h"

typedef struct pd_chat_frame pd_chat_frame_t;

typedef struct pd_chat_render {
    pd_chat_limits_t lim;
    pd_chat_arena_t arena;
    uint64_t steps;
    int line;
    char *out; /* malloc'd, NUL-terminated */
    size_t out_len, out_cap;
    jmp_buf jb;
    pd_status_t st;
} pd_chat_render_t;

_Noreturn void pd_chat_rfail(pd_chat_render_t *r, pd_status_t st, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void *pd_chat_ralloc(pd_chat_render_t *r, size_t n);
void pd_chat_step(pd_chat_render_t *r, int line);
void pd_chat_define(pd_chat_render_t *r, pd_chat_frame_t *f, const char *name, pd_chat_val_t v);
size_t pd_chat_eval_args(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *args,
                         pd_chat_val_t *pos, size_t max, const char *const *kws, pd_chat_val_t *kwv,
                         int line);

pd_chat_val_t pd_chat_str(const char *p, size_t n);
pd_chat_val_t pd_chat_int(int64_t i);
pd_chat_val_t pd_chat_bool(bool b);
const char *pd_chat_type_name(pd_chat_val_t v);
bool pd_chat_truthy(pd_chat_val_t v);
size_t pd_chat_len(pd_chat_val_t v); /* characters of a str, items of a list or dict */
bool pd_chat_equal(pd_chat_val_t a, pd_chat_val_t b);
bool pd_chat_contains(pd_chat_render_t *r, pd_chat_val_t hay, pd_chat_val_t needle, int line);

pd_chat_val_t pd_chat_list_new(pd_chat_render_t *r, size_t cap);
void pd_chat_list_push(pd_chat_render_t *r, pd_chat_list_t *l, pd_chat_val_t v);
pd_chat_val_t pd_chat_dict_new(pd_chat_render_t *r);
const pd_chat_val_t *pd_chat_dict_get(const pd_chat_dict_t *d, pd_chat_val_t key);
void pd_chat_dict_set(pd_chat_render_t *r, pd_chat_dict_t *d, pd_chat_val_t key, pd_chat_val_t v);
pd_chat_val_t pd_chat_dict_keys(pd_chat_render_t *r, pd_chat_val_t d);

pd_chat_val_t pd_chat_str_slice(pd_chat_render_t *r, pd_chat_val_t s, size_t lo, size_t hi);
pd_chat_val_t pd_chat_str_chars(pd_chat_render_t *r, pd_chat_val_t s);
pd_chat_val_t pd_chat_join(pd_chat_render_t *r, pd_chat_val_t list, pd_chat_val_t sep);
pd_chat_val_t pd_chat_to_str(pd_chat_render_t *r, pd_chat_val_t v);
pd_chat_val_t pd_chat_from_json(pd_chat_render_t *r, const pd_json_t *j);

/* Shared by chat_ops.c (values, operators) and chat_methods.c (methods, filters). */
typedef struct pd_chat_sb { /* a growing string in the render's arena */
    char *p;
    size_t n, cap;
} pd_chat_sb_t;
void pd_chat_sb_add(pd_chat_render_t *r, pd_chat_sb_t *b, const char *s, size_t n);
pd_chat_val_t pd_chat_sb_val(pd_chat_sb_t *b);
bool pd_chat_is_num(pd_chat_val_t v);
double pd_chat_num(pd_chat_val_t v);
bool pd_chat_find_sub(pd_chat_val_t hay, pd_chat_val_t needle, size_t from, size_t *at_p);
pd_chat_val_t pd_chat_dict_items(pd_chat_render_t *r, pd_chat_val_t d);
void pd_chat_json(pd_chat_render_t *r, pd_chat_sb_t *b, pd_chat_val_t v, int indent, int depth);

pd_chat_val_t pd_chat_binop(pd_chat_render_t *r, int op, pd_chat_val_t a, pd_chat_val_t b,
                            int line);
pd_chat_val_t pd_chat_method(pd_chat_render_t *r, pd_chat_val_t obj, const char *name,
                             const pd_chat_val_t *args, size_t n_args, int line);
pd_chat_val_t pd_chat_filter(pd_chat_render_t *r, pd_chat_frame_t *f, pd_chat_val_t v,
                             const pd_chat_node_t *n);

#endif
