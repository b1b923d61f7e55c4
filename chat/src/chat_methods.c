/* Chat templates: the string methods and the filters that templates call, with Python's
 * semantics (str.strip/split/replace/upper/lower/..., and Jinja's filters). The values
 * and operators they work on are in chat_ops.c. */
#include "chat_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- methods and filters ---- */

static pd_chat_val_t pd_chat_strip(pd_chat_render_t *r, pd_chat_val_t s, const pd_chat_val_t *chars,
                                   bool left, bool right, int line)
{
    if (chars != NULL && chars->type != PD_CV_STR && chars->type != PD_CV_NONE)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "strip characters must be a str");
    bool ws = chars == NULL || chars->type == PD_CV_NONE;
    const char *p = s.u.s.p;
    size_t lo = 0, hi = s.u.s.n;
    /* one character at a time, ws or a member of chars */
    for (;;) {
        if (!left || lo >= hi)
            break;
        size_t n = 1;
        while (lo + n < hi && ((unsigned char)p[lo + n] & 0xc0) == 0x80)
            n++;
        bool strip = ws ? pd_chat_is_space(p + lo, hi - lo, &n)
                        : pd_chat_find_sub(*chars, pd_chat_str(p + lo, n), 0, &(size_t){0});
        if (!strip)
            break;
        lo += n;
    }
    while (right && hi > lo) {
        size_t st = hi - 1;
        while (st > lo && ((unsigned char)p[st] & 0xc0) == 0x80)
            st--;
        size_t n = hi - st;
        size_t m = n;
        bool strip = ws ? (pd_chat_is_space(p + st, n, &m) && m == n)
                        : pd_chat_find_sub(*chars, pd_chat_str(p + st, n), 0, &(size_t){0});
        if (!strip)
            break;
        hi = st;
    }
    return pd_chat_str(p + lo, hi - lo);
}

static pd_chat_val_t pd_chat_split(pd_chat_render_t *r, pd_chat_val_t s, const pd_chat_val_t *args,
                                   size_t n_args, int line)
{
    pd_chat_val_t out = pd_chat_list_new(r, 4);
    int64_t max = n_args > 1 && args[1].type == PD_CV_INT ? args[1].u.i : -1;
    if (n_args == 0 || args[0].type == PD_CV_NONE) {
        size_t i = 0, n;
        for (;;) {
            while (i < s.u.s.n && pd_chat_is_space(s.u.s.p + i, s.u.s.n - i, &n))
                i += n;
            if (i >= s.u.s.n)
                break;
            size_t j = i;
            if (max == 0) {
                j = s.u.s.n;
                /* the remainder keeps its inner whitespace, loses the trailing */
                pd_chat_val_t rest =
                    pd_chat_strip(r, pd_chat_str(s.u.s.p + i, j - i), NULL, false, true, line);
                pd_chat_list_push(r, out.u.l, rest);
                break;
            }
            while (j < s.u.s.n && !pd_chat_is_space(s.u.s.p + j, s.u.s.n - j, &n))
                j++;
            pd_chat_list_push(r, out.u.l, pd_chat_str(s.u.s.p + i, j - i));
            i = j;
            if (max > 0)
                max--;
        }
        return out;
    }
    if (args[0].type != PD_CV_STR || args[0].u.s.n == 0)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "split() needs a non-empty str separator");
    size_t from = 0, at;
    while (max != 0 && pd_chat_find_sub(s, args[0], from, &at)) {
        pd_chat_list_push(r, out.u.l, pd_chat_str(s.u.s.p + from, at - from));
        from = at + args[0].u.s.n;
        if (max > 0)
            max--;
    }
    pd_chat_list_push(r, out.u.l, pd_chat_str(s.u.s.p + from, s.u.s.n - from));
    return out;
}

static pd_chat_val_t pd_chat_case(pd_chat_render_t *r, pd_chat_val_t s, int mode)
{
    /* ASCII case mapping; other characters are left as they are */
    char *d = pd_chat_ralloc(r, s.u.s.n + 1);
    bool word_start = true;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = mode == 'u' || ((mode == 't' || mode == 'c') && word_start && alpha);
        if (mode == 'c' && i > 0)
            up = false;
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!up && mode != 'u' && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        d[i] = c;
        word_start = mode == 't' ? !alpha : false;
    }
    return pd_chat_str(d, s.u.s.n);
}

static pd_chat_val_t pd_chat_replace(pd_chat_render_t *r, pd_chat_val_t s, pd_chat_val_t old,
                                     pd_chat_val_t new, int64_t count, int line)
{
    if (old.type != PD_CV_STR || new.type != PD_CV_STR)
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "replace() takes two str");
    if (old.u.s.n == 0)
        pd_chat_rfail(r, PD_ERR_UNSUPPORTED, line, "replace() of the empty string");
    pd_chat_sb_t b = {0};
    size_t from = 0, at;
    while (count != 0 && pd_chat_find_sub(s, old, from, &at)) {
        pd_chat_sb_add(r, &b, s.u.s.p + from, at - from);
        pd_chat_sb_add(r, &b, new.u.s.p, new.u.s.n);
        from = at + old.u.s.n;
        if (count > 0)
            count--;
    }
    pd_chat_sb_add(r, &b, s.u.s.p + from, s.u.s.n - from);
    return pd_chat_sb_val(&b);
}

pd_chat_val_t pd_chat_method(pd_chat_render_t *r, pd_chat_val_t obj, const char *name,
                             const pd_chat_val_t *args, size_t n_args, int line)
{
    if (obj.type == PD_CV_STR) {
        if (strcmp(name, "strip") == 0 || strcmp(name, "lstrip") == 0 ||
            strcmp(name, "rstrip") == 0)
            return pd_chat_strip(r, obj, n_args ? &args[0] : NULL, name[0] != 'r', name[0] != 'l',
                                 line);
        if (strcmp(name, "split") == 0)
            return pd_chat_split(r, obj, args, n_args, line);
        if (strcmp(name, "startswith") == 0 || strcmp(name, "endswith") == 0) {
            if (n_args != 1 || args[0].type != PD_CV_STR)
                pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "%s() takes one str", name);
            size_t n = args[0].u.s.n;
            if (n > obj.u.s.n)
                return pd_chat_bool(false);
            const char *at = name[0] == 's' ? obj.u.s.p : obj.u.s.p + obj.u.s.n - n;
            return pd_chat_bool(memcmp(at, args[0].u.s.p, n) == 0);
        }
        if (strcmp(name, "upper") == 0 || strcmp(name, "lower") == 0 ||
            strcmp(name, "title") == 0 || strcmp(name, "capitalize") == 0)
            return pd_chat_case(r, obj, name[0]);
        if (strcmp(name, "replace") == 0 && n_args >= 2)
            return pd_chat_replace(r, obj, args[0], args[1],
                                   n_args > 2 && args[2].type == PD_CV_INT ? args[2].u.i : -1,
                                   line);
    } else if (obj.type == PD_CV_DICT) {
        if (strcmp(name, "items") == 0)
            return pd_chat_dict_items(r, obj);
        if (strcmp(name, "keys") == 0)
            return pd_chat_dict_keys(r, obj);
        if (strcmp(name, "values") == 0) {
            pd_chat_val_t l = pd_chat_list_new(r, obj.u.d->n);
            for (size_t i = 0; i < obj.u.d->n; i++)
                pd_chat_list_push(r, l.u.l, obj.u.d->vals[i]);
            return l;
        }
        if (strcmp(name, "get") == 0 && n_args >= 1) {
            const pd_chat_val_t *v = pd_chat_dict_get(obj.u.d, args[0]);
            pd_chat_val_t none = {.type = PD_CV_NONE};
            return v != NULL ? *v : n_args > 1 ? args[1] : none;
        }
    } else if (obj.type == PD_CV_UNDEF) {
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "'.%s()' of an undefined value", name);
    }
    pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "a %s has no method '%s' (with %zu arguments)",
                  pd_chat_type_name(obj), name, n_args);
}

pd_chat_val_t pd_chat_filter(pd_chat_render_t *r, pd_chat_frame_t *f, pd_chat_val_t v,
                             const pd_chat_node_t *n)
{
    static const char *const kws[] = {"indent", "boolean", NULL};
    pd_chat_val_t args[3], kwv[2] = {{.type = PD_CV_UNDEF}, {.type = PD_CV_UNDEF}};
    size_t n_args = pd_chat_eval_args(r, f, n->args, args, 3, kws, kwv, n->line);
    const char *name = n->name;
    int line = n->line;
    if (strcmp(name, "default") == 0 || strcmp(name, "d") == 0) {
        bool boolean = (n_args > 1 && pd_chat_truthy(args[1])) || pd_chat_truthy(kwv[1]);
        bool use = v.type == PD_CV_UNDEF || (boolean && !pd_chat_truthy(v));
        return use ? (n_args > 0 ? args[0] : pd_chat_str("", 0)) : v;
    }
    if (strcmp(name, "safe") == 0)
        return v;
    if (strcmp(name, "string") == 0)
        return pd_chat_to_str(r, v);
    if (strcmp(name, "tojson") == 0) {
        pd_chat_val_t ind = n_args > 0 ? args[0] : kwv[0];
        int indent = ind.type == PD_CV_INT && ind.u.i >= 0 && ind.u.i <= 16 ? (int)ind.u.i : -1;
        pd_chat_sb_t b = {0};
        pd_chat_json(r, &b, v, indent, 0);
        return pd_chat_sb_val(&b);
    }
    if (strcmp(name, "length") == 0 || strcmp(name, "count") == 0) {
        if (v.type != PD_CV_STR && v.type != PD_CV_LIST && v.type != PD_CV_DICT &&
            v.type != PD_CV_UNDEF)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "length of a %s", pd_chat_type_name(v));
        return pd_chat_int((int64_t)pd_chat_len(v));
    }
    if (strcmp(name, "list") == 0) {
        if (v.type == PD_CV_LIST)
            return v;
        if (v.type == PD_CV_STR)
            return pd_chat_str_chars(r, v);
        if (v.type == PD_CV_DICT)
            return pd_chat_dict_keys(r, v);
    }
    if (strcmp(name, "items") == 0 && v.type == PD_CV_DICT)
        return pd_chat_dict_items(r, v);
    if ((strcmp(name, "first") == 0 || strcmp(name, "last") == 0) &&
        (v.type == PD_CV_LIST || v.type == PD_CV_STR)) {
        size_t len = pd_chat_len(v);
        pd_chat_val_t u = {.type = PD_CV_UNDEF};
        if (len == 0)
            return u;
        size_t i = name[0] == 'f' ? 0 : len - 1;
        return v.type == PD_CV_LIST ? v.u.l->v[i] : pd_chat_str_slice(r, v, i, i + 1);
    }
    if (strcmp(name, "reverse") == 0 && (v.type == PD_CV_LIST || v.type == PD_CV_STR)) {
        pd_chat_val_t items = v.type == PD_CV_STR ? pd_chat_str_chars(r, v) : v;
        pd_chat_val_t out = pd_chat_list_new(r, items.u.l->n);
        for (size_t i = items.u.l->n; i > 0; i--)
            pd_chat_list_push(r, out.u.l, items.u.l->v[i - 1]);
        return v.type == PD_CV_STR ? pd_chat_join(r, out, pd_chat_str("", 0)) : out;
    }
    if (strcmp(name, "join") == 0 && v.type == PD_CV_LIST) {
        pd_chat_val_t sep = n_args > 0 ? pd_chat_to_str(r, args[0]) : pd_chat_str("", 0);
        return pd_chat_join(r, v, sep);
    }
    if (strcmp(name, "int") == 0) {
        if (v.type == PD_CV_INT)
            return v;
        if (v.type == PD_CV_FLOAT && v.u.f > -9e18 && v.u.f < 9e18)
            return pd_chat_int((int64_t)v.u.f);
        if (v.type == PD_CV_BOOL)
            return pd_chat_int(v.u.b);
        if (v.type == PD_CV_STR) {
            char buf[32];
            size_t k = v.u.s.n < sizeof(buf) - 1 ? v.u.s.n : sizeof(buf) - 1;
            memcpy(buf, v.u.s.p, k);
            buf[k] = '\0';
            char *e;
            long long x = strtoll(buf, &e, 10);
            return pd_chat_int(e != buf && *e == '\0' ? x : 0);
        }
        return pd_chat_int(0);
    }
    if (strcmp(name, "float") == 0 && pd_chat_is_num(v)) {
        pd_chat_val_t x = {.type = PD_CV_FLOAT, .u.f = pd_chat_num(v)};
        return x;
    }
    if (strcmp(name, "abs") == 0 && pd_chat_is_num(v)) {
        if (v.type == PD_CV_INT)
            return v.u.i < 0 && v.u.i != INT64_MIN ? pd_chat_int(-v.u.i) : v;
        pd_chat_val_t x = {.type = PD_CV_FLOAT,
                           .u.f = pd_chat_num(v) < 0 ? -pd_chat_num(v) : pd_chat_num(v)};
        return x;
    }
    if (v.type == PD_CV_STR || v.type == PD_CV_UNDEF || v.type == PD_CV_NONE || pd_chat_is_num(v)) {
        /* string filters convert their input with str() first */
        pd_chat_val_t s = pd_chat_to_str(r, v);
        if (strcmp(name, "trim") == 0)
            return pd_chat_strip(r, s, n_args ? &args[0] : NULL, true, true, line);
        if (strcmp(name, "upper") == 0 || strcmp(name, "lower") == 0 ||
            strcmp(name, "title") == 0 || strcmp(name, "capitalize") == 0)
            return pd_chat_case(r, s, name[0]);
        if (strcmp(name, "replace") == 0 && n_args >= 2)
            return pd_chat_replace(r, s, args[0], args[1],
                                   n_args > 2 && args[2].type == PD_CV_INT ? args[2].u.i : -1,
                                   line);
    }
    pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "filter '%s' of a %s", name, pd_chat_type_name(v));
}
