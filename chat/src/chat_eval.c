/* Chat templates: the evaluator. Values follow Python's semantics where templates can see
 * them (str, int, float, list, dict, None, jinja2's Undefined). Every value lives in a
 * per-render arena with a byte cap, every node evaluated counts a step, the output has a
 * cap: a template cannot take more time or memory than the limits allow. Errors unwind
 * with longjmp to pd_chat_template_render, which frees the arena and the output. */
#include "chat_int.h"
#include "chat_eval.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const pd_chat_limits_t pd_chat_limits_default = {
    .max_output_bytes = 1u << 20,
    .max_memory_bytes = 64u << 20,
    .max_steps = 2000000,
};

_Noreturn void pd_chat_rfail(pd_chat_render_t *r, pd_status_t st, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pd_chat_set_error("chat template line %d: %s", line, msg);
    r->st = st;
    longjmp(r->jb, 1);
}

void *pd_chat_ralloc(pd_chat_render_t *r, size_t n)
{
    void *m = pd_chat_arena_alloc(&r->arena, n);
    if (m == NULL)
        pd_chat_rfail(r, PD_ERR_LIMIT, r->line, "the template used more than %zu bytes of memory",
                      r->lim.max_memory_bytes);
    return m;
}

void pd_chat_step(pd_chat_render_t *r, int line)
{
    r->line = line;
    if (++r->steps > r->lim.max_steps)
        pd_chat_rfail(r, PD_ERR_LIMIT, line,
                      "the template ran more than %llu steps (a loop that does not end?)",
                      (unsigned long long)r->lim.max_steps);
}

/* ---- scopes ---- */

typedef struct pd_chat_var pd_chat_var_t;
struct pd_chat_var {
    const char *name;
    pd_chat_val_t v;
    pd_chat_var_t *next;
};

struct pd_chat_frame {
    pd_chat_var_t *vars;
    pd_chat_frame_t *up;
};

static pd_chat_var_t *pd_chat_find(pd_chat_frame_t *f, const char *name, bool local)
{
    for (; f != NULL; f = local ? NULL : f->up)
        for (pd_chat_var_t *v = f->vars; v != NULL; v = v->next)
            if (strcmp(v->name, name) == 0)
                return v;
    return NULL;
}

void pd_chat_define(pd_chat_render_t *r, pd_chat_frame_t *f, const char *name, pd_chat_val_t v)
{
    pd_chat_var_t *var = pd_chat_find(f, name, true);
    if (var == NULL) {
        var = pd_chat_ralloc(r, sizeof(*var));
        var->name = name;
        var->next = f->vars;
        f->vars = var;
    }
    var->v = v;
}

/* ---- expressions ---- */

static pd_chat_val_t pd_chat_eval(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n);

static pd_chat_val_t pd_chat_attr(pd_chat_render_t *r, pd_chat_val_t obj, const char *name,
                                  size_t len, int line)
{
    pd_chat_val_t u = {.type = PD_CV_UNDEF};
    if (obj.type == PD_CV_UNDEF)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "'%s' of an undefined value", name);
    if (obj.type == PD_CV_DICT) {
        pd_chat_val_t key = pd_chat_str(name, len);
        const pd_chat_val_t *v = pd_chat_dict_get(obj.u.d, key);
        return v != NULL ? *v : u;
    }
    if (obj.type == PD_CV_LOOP) {
        const pd_chat_loop_t *l = obj.u.loop;
        pd_chat_val_t v = {.type = PD_CV_INT};
        if (strcmp(name, "index0") == 0)
            v.u.i = (int64_t)l->index0;
        else if (strcmp(name, "index") == 0)
            v.u.i = (int64_t)l->index0 + 1;
        else if (strcmp(name, "revindex") == 0)
            v.u.i = (int64_t)(l->length - l->index0);
        else if (strcmp(name, "revindex0") == 0)
            v.u.i = (int64_t)(l->length - l->index0 - 1);
        else if (strcmp(name, "length") == 0)
            v.u.i = (int64_t)l->length;
        else if (strcmp(name, "first") == 0)
            v = pd_chat_bool(l->index0 == 0);
        else if (strcmp(name, "last") == 0)
            v = pd_chat_bool(l->index0 + 1 == l->length);
        else
            pd_chat_rfail(r, PD_ERR_UNSUPPORTED, line, "loop.%s is not supported", name);
        return v;
    }
    return u;
}

static pd_chat_val_t pd_chat_item(pd_chat_render_t *r, pd_chat_val_t obj, pd_chat_val_t key,
                                  int line)
{
    pd_chat_val_t u = {.type = PD_CV_UNDEF};
    if (obj.type == PD_CV_UNDEF)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "subscript of an undefined value");
    if (obj.type == PD_CV_DICT) {
        if (key.type != PD_CV_STR)
            return u;
        const pd_chat_val_t *v = pd_chat_dict_get(obj.u.d, key);
        return v != NULL ? *v : u;
    }
    if (obj.type == PD_CV_LOOP && key.type == PD_CV_STR)
        return pd_chat_attr(r, obj, key.u.s.p, key.u.s.n, line);
    if (obj.type != PD_CV_LIST && obj.type != PD_CV_STR)
        return u;
    if (key.type != PD_CV_INT && key.type != PD_CV_BOOL)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "a %s index must be an integer",
                      pd_chat_type_name(obj));
    int64_t i = key.type == PD_CV_BOOL ? key.u.b : key.u.i;
    size_t n = pd_chat_len(obj);
    if (i < 0)
        i += (int64_t)n;
    if (i < 0 || (size_t)i >= n)
        return u;
    if (obj.type == PD_CV_LIST)
        return obj.u.l->v[i];
    return pd_chat_str_slice(r, obj, (size_t)i, (size_t)i + 1);
}

static int64_t pd_chat_slice_arg(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n,
                                 int64_t dflt)
{
    if (n == NULL)
        return dflt;
    pd_chat_val_t v = pd_chat_eval(r, f, n);
    if (v.type == PD_CV_NONE)
        return dflt;
    if (v.type != PD_CV_INT)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "slice bounds must be integers");
    return v.u.i;
}

static pd_chat_val_t pd_chat_slice(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    pd_chat_val_t obj = pd_chat_eval(r, f, n->a);
    if (obj.type != PD_CV_LIST && obj.type != PD_CV_STR)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "slice of a %s", pd_chat_type_name(obj));
    int64_t len = (int64_t)pd_chat_len(obj);
    int64_t step = pd_chat_slice_arg(r, f, n->d, 1);
    if (step == 0)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "slice step cannot be zero");
    int64_t lo = pd_chat_slice_arg(r, f, n->b, step > 0 ? 0 : len - 1);
    int64_t hi = pd_chat_slice_arg(r, f, n->c, step > 0 ? len : -len - 1);
    /* Python's PySlice_AdjustIndices */
    if (lo < 0)
        lo = lo + len < 0 ? (step < 0 ? -1 : 0) : lo + len;
    else if (lo >= len)
        lo = step < 0 ? len - 1 : len;
    if (hi < 0)
        hi = hi + len < 0 ? (step < 0 ? -1 : 0) : hi + len;
    else if (hi >= len)
        hi = step < 0 ? len - 1 : len;
    size_t count = 0;
    if (step > 0 && lo < hi)
        count = (size_t)((hi - lo - 1) / step + 1);
    else if (step < 0 && hi < lo)
        count = (size_t)((lo - hi - 1) / (-step) + 1);
    if (obj.type == PD_CV_STR && step == 1)
        return pd_chat_str_slice(r, obj, (size_t)lo, (size_t)lo + count);
    pd_chat_val_t out = pd_chat_list_new(r, count);
    pd_chat_val_t chars = obj.type == PD_CV_STR ? pd_chat_str_chars(r, obj) : obj;
    for (size_t k = 0; k < count; k++)
        pd_chat_list_push(r, out.u.l, chars.u.l->v[lo + (int64_t)k * step]);
    if (obj.type == PD_CV_STR)
        return pd_chat_join(r, out, pd_chat_str("", 0));
    return out;
}

static pd_chat_val_t pd_chat_call(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    if (n->op == PD_CHAT_FN_RAISE) {
        pd_chat_val_t msg = n->args ? pd_chat_eval(r, f, n->args) : pd_chat_str("", 0);
        pd_chat_val_t s = pd_chat_to_str(r, msg);
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "raise_exception: %.*s",
                      (int)(s.u.s.n > 300 ? 300 : s.u.s.n), s.u.s.p);
    }
    if (n->op == PD_CHAT_FN_NAMESPACE) {
        pd_chat_val_t d = pd_chat_dict_new(r);
        d.u.d->ns = true;
        for (const pd_chat_node_t *a = n->args; a != NULL; a = a->next) {
            pd_chat_val_t v = pd_chat_eval(r, f, a);
            if (a->kw != NULL) {
                pd_chat_dict_set(r, d.u.d, pd_chat_str(a->kw, strlen(a->kw)), v);
            } else if (v.type == PD_CV_DICT) {
                for (size_t i = 0; i < v.u.d->n; i++)
                    pd_chat_dict_set(r, d.u.d, v.u.d->keys[i], v.u.d->vals[i]);
            } else {
                pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line,
                              "namespace() takes keywords or a mapping");
            }
        }
        return d;
    }
    /* range */
    int64_t a[3] = {0, 0, 1};
    size_t k = 0;
    for (const pd_chat_node_t *x = n->args; x != NULL; x = x->next) {
        pd_chat_val_t v = pd_chat_eval(r, f, x);
        if (k >= 3 || v.type != PD_CV_INT || x->kw != NULL)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "range() takes one to three integers");
        a[k++] = v.u.i;
    }
    if (k == 0)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "range() takes one to three integers");
    int64_t lo = k == 1 ? 0 : a[0], hi = k == 1 ? a[0] : a[1], step = k == 3 ? a[2] : 1;
    if (step == 0)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "range() step cannot be zero");
    double count = step > 0 ? ((double)hi - (double)lo) / (double)step
                            : ((double)lo - (double)hi) / (double)-step;
    if (count > (double)(r->lim.max_memory_bytes / sizeof(pd_chat_val_t)))
        pd_chat_rfail(r, PD_ERR_LIMIT, n->line,
                      "range() of %.0f items: more than the template's memory allows", count);
    pd_chat_val_t out = pd_chat_list_new(r, count > 0 ? (size_t)count + 1 : 0);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        pd_chat_step(r, n->line);
        pd_chat_list_push(r, out.u.l, pd_chat_int(i));
    }
    return out;
}

/* Evaluate a call's arguments: positional into pos (up to max), keywords by name. */
size_t pd_chat_eval_args(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *args,
                         pd_chat_val_t *pos, size_t max, const char *const *kws, pd_chat_val_t *kwv,
                         int line)
{
    size_t n = 0;
    for (const pd_chat_node_t *a = args; a != NULL; a = a->next) {
        pd_chat_val_t v = pd_chat_eval(r, f, a);
        if (a->kw == NULL) {
            if (n >= max)
                pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "too many arguments");
            pos[n++] = v;
            continue;
        }
        size_t k = 0;
        while (kws != NULL && kws[k] != NULL && strcmp(kws[k], a->kw) != 0)
            k++;
        if (kws == NULL || kws[k] == NULL)
            pd_chat_rfail(r, PD_ERR_UNSUPPORTED, line, "argument '%s' is not supported", a->kw);
        kwv[k] = v;
    }
    return n;
}

static pd_chat_val_t pd_chat_test(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    pd_chat_val_t v = pd_chat_eval(r, f, n->a);
    pd_chat_val_t arg[1] = {{.type = PD_CV_UNDEF}};
    size_t n_args = pd_chat_eval_args(r, f, n->args, arg, 1, NULL, NULL, n->line);
    const char *t = n->name;
    bool res, num = v.type == PD_CV_INT || v.type == PD_CV_FLOAT || v.type == PD_CV_BOOL;
    if (strcmp(t, "defined") == 0)
        res = v.type != PD_CV_UNDEF;
    else if (strcmp(t, "undefined") == 0)
        res = v.type == PD_CV_UNDEF;
    else if (strcmp(t, "none") == 0)
        res = v.type == PD_CV_NONE;
    else if (strcmp(t, "string") == 0)
        res = v.type == PD_CV_STR;
    else if (strcmp(t, "number") == 0)
        res = num;
    else if (strcmp(t, "integer") == 0)
        res = v.type == PD_CV_INT;
    else if (strcmp(t, "float") == 0)
        res = v.type == PD_CV_FLOAT;
    else if (strcmp(t, "boolean") == 0)
        res = v.type == PD_CV_BOOL;
    else if (strcmp(t, "true") == 0)
        res = v.type == PD_CV_BOOL && v.u.b;
    else if (strcmp(t, "false") == 0)
        res = v.type == PD_CV_BOOL && !v.u.b;
    else if (strcmp(t, "mapping") == 0)
        res = v.type == PD_CV_DICT;
    else if (strcmp(t, "sequence") == 0 || strcmp(t, "iterable") == 0)
        res = v.type == PD_CV_LIST || v.type == PD_CV_STR || v.type == PD_CV_DICT;
    else if (strcmp(t, "odd") == 0 || strcmp(t, "even") == 0) {
        if (v.type != PD_CV_INT)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "'%s' of a %s", t,
                          pd_chat_type_name(v));
        res = ((v.u.i % 2) != 0) == (t[0] == 'o');
    } else {
        if (n_args != 1)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "test '%s' takes one argument", t);
        if (strcmp(t, "in") == 0)
            res = pd_chat_contains(r, arg[0], v, n->line);
        else if (strcmp(t, "sameas") == 0)
            res = v.type == arg[0].type && pd_chat_equal(v, arg[0]) &&
                  (v.type == PD_CV_NONE || v.type == PD_CV_BOOL || v.type == PD_CV_UNDEF);
        else
            res = pd_chat_equal(v, arg[0]) == (strcmp(t, "eq") == 0);
    }
    return pd_chat_bool(n->op ? !res : res);
}

static pd_chat_val_t pd_chat_eval(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    pd_chat_step(r, n->line);
    switch (n->kind) {
    case PD_CE_LIT:
        return n->lit;
    case PD_CE_NAME: {
        pd_chat_var_t *v = pd_chat_find(f, n->name, false);
        pd_chat_val_t u = {.type = PD_CV_UNDEF};
        return v != NULL ? v->v : u;
    }
    case PD_CE_ATTR:
        return pd_chat_attr(r, pd_chat_eval(r, f, n->a), n->name, n->name_len, n->line);
    case PD_CE_ITEM: {
        pd_chat_val_t obj = pd_chat_eval(r, f, n->a);
        return pd_chat_item(r, obj, pd_chat_eval(r, f, n->b), n->line);
    }
    case PD_CE_SLICE:
        return pd_chat_slice(r, f, n);
    case PD_CE_CALL:
        return pd_chat_call(r, f, n);
    case PD_CE_METHOD: {
        pd_chat_val_t obj = pd_chat_eval(r, f, n->a);
        pd_chat_val_t args[3];
        size_t n_args = pd_chat_eval_args(r, f, n->args, args, 3, NULL, NULL, n->line);
        return pd_chat_method(r, obj, n->name, args, n_args, n->line);
    }
    case PD_CE_FILTER: {
        pd_chat_val_t v = pd_chat_eval(r, f, n->a);
        return pd_chat_filter(r, f, v, n);
    }
    case PD_CE_TEST:
        return pd_chat_test(r, f, n);
    case PD_CE_NEG: {
        pd_chat_val_t v = pd_chat_eval(r, f, n->a);
        if (v.type == PD_CV_INT && v.u.i != INT64_MIN)
            return pd_chat_int(-v.u.i);
        if (v.type == PD_CV_FLOAT) {
            v.u.f = -v.u.f;
            return v;
        }
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "'-' of a %s", pd_chat_type_name(v));
    }
    case PD_CE_NOT:
        return pd_chat_bool(!pd_chat_truthy(pd_chat_eval(r, f, n->a)));
    case PD_CE_AND: {
        pd_chat_val_t a = pd_chat_eval(r, f, n->a);
        return pd_chat_truthy(a) ? pd_chat_eval(r, f, n->b) : a;
    }
    case PD_CE_OR: {
        pd_chat_val_t a = pd_chat_eval(r, f, n->a);
        return pd_chat_truthy(a) ? a : pd_chat_eval(r, f, n->b);
    }
    case PD_CE_COND: {
        if (pd_chat_truthy(pd_chat_eval(r, f, n->a)))
            return pd_chat_eval(r, f, n->b);
        pd_chat_val_t u = {.type = PD_CV_UNDEF};
        return n->c != NULL ? pd_chat_eval(r, f, n->c) : u;
    }
    case PD_CE_BIN: {
        pd_chat_val_t a = pd_chat_eval(r, f, n->a);
        pd_chat_val_t b = pd_chat_eval(r, f, n->b);
        return pd_chat_binop(r, n->op, a, b, n->line);
    }
    case PD_CE_LIST: {
        pd_chat_val_t l = pd_chat_list_new(r, 4);
        for (const pd_chat_node_t *a = n->args; a != NULL; a = a->next)
            pd_chat_list_push(r, l.u.l, pd_chat_eval(r, f, a));
        return l;
    }
    case PD_CE_DICT: {
        pd_chat_val_t d = pd_chat_dict_new(r);
        for (const pd_chat_node_t *a = n->args; a != NULL && a->next != NULL; a = a->next->next) {
            pd_chat_val_t k = pd_chat_eval(r, f, a);
            if (k.type != PD_CV_STR)
                pd_chat_rfail(r, PD_ERR_UNSUPPORTED, n->line, "dict keys must be strings");
            pd_chat_dict_set(r, d.u.d, k, pd_chat_eval(r, f, a->next));
        }
        return d;
    }
    default:
        pd_chat_rfail(r, PD_ERR_INTERNAL, n->line, "bad expression node");
    }
}

/* ---- statements ---- */

enum { PD_CHAT_FLOW_NEXT, PD_CHAT_FLOW_BREAK, PD_CHAT_FLOW_CONTINUE };

static void pd_chat_emit(pd_chat_render_t *r, const char *s, size_t n)
{
    if (n > r->lim.max_output_bytes - r->out_len)
        pd_chat_rfail(r, PD_ERR_LIMIT, r->line, "the template rendered more than %zu bytes",
                      r->lim.max_output_bytes);
    if (r->out_len + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 4096;
        while (cap < r->out_len + n + 1)
            cap *= 2;
        char *o = realloc(r->out, cap);
        if (o == NULL)
            pd_chat_rfail(r, PD_ERR_NO_MEMORY, r->line, "out of memory");
        r->out = o;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
    r->out[r->out_len] = '\0';
}

static int pd_chat_exec(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n);

static int pd_chat_exec_for(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    pd_chat_val_t it = pd_chat_eval(r, f, n->a);
    pd_chat_val_t items;
    if (it.type == PD_CV_UNDEF)
        items = pd_chat_list_new(r, 0);
    else if (it.type == PD_CV_LIST)
        items = it;
    else if (it.type == PD_CV_DICT)
        items = pd_chat_dict_keys(r, it);
    else if (it.type == PD_CV_STR)
        items = pd_chat_str_chars(r, it);
    else
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line, "'for' over a %s", pd_chat_type_name(it));
    pd_chat_loop_t *loop = pd_chat_ralloc(r, sizeof(*loop));
    pd_chat_frame_t frame = {.vars = NULL, .up = f};
    /* Bind one item's targets in the loop's frame. */
#define PD_CHAT_BIND(item)                                                                         \
    do {                                                                                           \
        if (n->name2 == NULL) {                                                                    \
            pd_chat_define(r, &frame, n->name, (item));                                            \
        } else {                                                                                   \
            if ((item).type != PD_CV_LIST || (item).u.l->n != 2)                                   \
                pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line,                                    \
                              "'for %s, %s' over items that are not pairs", n->name, n->name2);    \
            pd_chat_define(r, &frame, n->name, (item).u.l->v[0]);                                  \
            pd_chat_define(r, &frame, n->name2, (item).u.l->v[1]);                                 \
        }                                                                                          \
    } while (0)
    /* The filter ("for x in xs if cond") runs first: loop.length counts what passes. */
    if (n->d != NULL) {
        pd_chat_val_t kept = pd_chat_list_new(r, items.u.l->n);
        for (size_t i = 0; i < items.u.l->n; i++) {
            PD_CHAT_BIND(items.u.l->v[i]);
            if (pd_chat_truthy(pd_chat_eval(r, &frame, n->d)))
                pd_chat_list_push(r, kept.u.l, items.u.l->v[i]);
        }
        items = kept;
    }
    size_t len = items.u.l->n;
    loop->length = len;
    /* The frame's variables are reused from one iteration to the next (no allocation per
     * iteration), as Jinja's compiled loops keep their locals. */
    frame.vars = NULL;
    for (size_t i = 0; i < len; i++) {
        pd_chat_step(r, n->line);
        loop->index0 = i;
        PD_CHAT_BIND(items.u.l->v[i]);
        pd_chat_val_t lv = {.type = PD_CV_LOOP, .u.loop = loop};
        pd_chat_define(r, &frame, "loop", lv);
        int flow = PD_CHAT_FLOW_NEXT;
        for (const pd_chat_node_t *s = n->b; s != NULL && flow == PD_CHAT_FLOW_NEXT; s = s->next)
            flow = pd_chat_exec(r, &frame, s);
        if (flow == PD_CHAT_FLOW_BREAK)
            break;
    }
#undef PD_CHAT_BIND
    if (len == 0)
        for (const pd_chat_node_t *s = n->c; s != NULL; s = s->next) {
            int flow = pd_chat_exec(r, f, s);
            if (flow != PD_CHAT_FLOW_NEXT)
                return flow;
        }
    return PD_CHAT_FLOW_NEXT;
}

static int pd_chat_exec(pd_chat_render_t *r, pd_chat_frame_t *f, const pd_chat_node_t *n)
{
    pd_chat_step(r, n->line);
    switch (n->kind) {
    case PD_CN_TEXT:
        pd_chat_emit(r, n->name, n->name_len);
        return PD_CHAT_FLOW_NEXT;
    case PD_CN_OUT: {
        pd_chat_val_t s = pd_chat_to_str(r, pd_chat_eval(r, f, n->a));
        pd_chat_emit(r, s.u.s.p, s.u.s.n);
        return PD_CHAT_FLOW_NEXT;
    }
    case PD_CN_IF: {
        const pd_chat_node_t *body = pd_chat_truthy(pd_chat_eval(r, f, n->a)) ? n->b : n->c;
        for (const pd_chat_node_t *s = body; s != NULL; s = s->next) {
            int flow = pd_chat_exec(r, f, s);
            if (flow != PD_CHAT_FLOW_NEXT)
                return flow;
        }
        return PD_CHAT_FLOW_NEXT;
    }
    case PD_CN_FOR:
        return pd_chat_exec_for(r, f, n);
    case PD_CN_SET: {
        pd_chat_val_t v = pd_chat_eval(r, f, n->b);
        if (n->a == NULL) {
            pd_chat_define(r, f, n->name, v);
            return PD_CHAT_FLOW_NEXT;
        }
        pd_chat_val_t obj = pd_chat_eval(r, f, n->a);
        if (obj.type != PD_CV_DICT || !obj.u.d->ns)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, n->line,
                          "'set %s.%s': only a namespace() takes attributes", n->a->name, n->name);
        pd_chat_dict_set(r, obj.u.d, pd_chat_str(n->name, n->name_len), v);
        return PD_CHAT_FLOW_NEXT;
    }
    case PD_CN_BREAK:
        return PD_CHAT_FLOW_BREAK;
    case PD_CN_CONTINUE:
        return PD_CHAT_FLOW_CONTINUE;
    default:
        pd_chat_rfail(r, PD_ERR_INTERNAL, n->line, "bad statement node");
    }
}

pd_status_t pd_chat_template_render(const pd_chat_template_t *tpl, const pd_chat_vars_t *vars,
                                    const pd_chat_limits_t *lim, char **out_p, size_t *len_p)
{
    if (tpl == NULL || vars == NULL || out_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_chat_render_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return PD_ERR_NO_MEMORY;
    r->lim = lim != NULL ? *lim : pd_chat_limits_default;
    r->arena.cap_bytes = r->lim.max_memory_bytes;
    pd_chat_frame_t globals = {0};
    if (setjmp(r->jb) != 0) {
        pd_status_t st = r->st;
        pd_chat_arena_free(&r->arena);
        free(r->out);
        free(r);
        return st;
    }
    r->line = 1;
    if (vars->extra != NULL) {
        if (pd_json_type(vars->extra) != PD_JSON_OBJECT)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, 0, "template variables must be an object");
        for (size_t i = 0; i < pd_json_len(vars->extra); i++) {
            const char *k = pd_json_object_key_at(vars->extra, i);
            if (strcmp(k, "messages") != 0)
                pd_chat_define(r, &globals, k,
                               pd_chat_from_json(r, pd_json_object_value_at(vars->extra, i)));
        }
    }
    pd_chat_val_t msgs = {.type = PD_CV_UNDEF};
    if (vars->messages != NULL)
        msgs = pd_chat_from_json(r, vars->messages);
    pd_chat_define(r, &globals, "messages", msgs);
    pd_chat_define(r, &globals, "add_generation_prompt", pd_chat_bool(vars->add_generation_prompt));
    const char *bos = vars->bos_token ? vars->bos_token : "";
    const char *eos = vars->eos_token ? vars->eos_token : "";
    pd_chat_define(r, &globals, "bos_token", pd_chat_str(bos, strlen(bos)));
    pd_chat_define(r, &globals, "eos_token", pd_chat_str(eos, strlen(eos)));
    pd_chat_emit(r, "", 0);
    for (const pd_chat_node_t *s = tpl->body; s != NULL; s = s->next)
        (void)pd_chat_exec(r, &globals, s);
    *out_p = r->out;
    if (len_p != NULL)
        *len_p = r->out_len;
    pd_chat_arena_free(&r->arena);
    free(r);
    pd_chat_set_error("%s", "");
    return PD_OK;
}
