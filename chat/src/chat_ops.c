/* Chat templates: values and what templates do with them, with Python's semantics:
 * str(), repr(), json.dumps() as transformers' tojson calls it, operators, the string and
 * dict methods, and the filters. Strings index by character (code point), as in Python. */
#include "chat_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pd_chat_val_t pd_chat_str(const char *p, size_t n)
{
    pd_chat_val_t v = {.type = PD_CV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

pd_chat_val_t pd_chat_int(int64_t i)
{
    pd_chat_val_t v = {.type = PD_CV_INT, .u.i = i};
    return v;
}

pd_chat_val_t pd_chat_bool(bool b)
{
    pd_chat_val_t v = {.type = PD_CV_BOOL, .u.b = b};
    return v;
}

const char *pd_chat_type_name(pd_chat_val_t v)
{
    static const char *const names[] = {
        "undefined value", "None", "bool", "int", "float", "str", "list", "dict", "loop",
        "function"};
    return v.type < sizeof(names) / sizeof(names[0]) ? names[v.type] : "value";
}

bool pd_chat_truthy(pd_chat_val_t v)
{
    switch (v.type) {
    case PD_CV_BOOL:
        return v.u.b;
    case PD_CV_INT:
        return v.u.i != 0;
    case PD_CV_FLOAT:
        return v.u.f != 0.0;
    case PD_CV_STR:
        return v.u.s.n != 0;
    case PD_CV_LIST:
        return v.u.l->n != 0;
    case PD_CV_DICT:
        return v.u.d->n != 0;
    case PD_CV_LOOP:
    case PD_CV_FUNC:
        return true;
    default:
        return false;
    }
}

static size_t pd_chat_utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* Byte offset of character i. */
static size_t pd_chat_utf8_offset(const char *s, size_t n, size_t i)
{
    size_t b = 0;
    for (size_t c = 0; b < n; b++) {
        if (((unsigned char)s[b] & 0xc0) != 0x80) {
            if (c == i)
                return b;
            c++;
        }
    }
    return n;
}

size_t pd_chat_len(pd_chat_val_t v)
{
    if (v.type == PD_CV_STR)
        return pd_chat_utf8_count(v.u.s.p, v.u.s.n);
    if (v.type == PD_CV_LIST)
        return v.u.l->n;
    if (v.type == PD_CV_DICT)
        return v.u.d->n;
    return 0;
}

bool pd_chat_is_num(pd_chat_val_t v)
{
    return v.type == PD_CV_INT || v.type == PD_CV_FLOAT || v.type == PD_CV_BOOL;
}

double pd_chat_num(pd_chat_val_t v)
{
    return v.type == PD_CV_FLOAT ? v.u.f : v.type == PD_CV_INT ? (double)v.u.i : (double)v.u.b;
}

bool pd_chat_equal(pd_chat_val_t a, pd_chat_val_t b)
{
    if (pd_chat_is_num(a) && pd_chat_is_num(b)) {
        if (a.type != PD_CV_FLOAT && b.type != PD_CV_FLOAT)
            return (a.type == PD_CV_INT ? a.u.i : a.u.b) == (b.type == PD_CV_INT ? b.u.i : b.u.b);
        return pd_chat_num(a) == pd_chat_num(b);
    }
    if (a.type != b.type)
        return false;
    switch (a.type) {
    case PD_CV_UNDEF:
    case PD_CV_NONE:
        return true;
    case PD_CV_STR:
        return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case PD_CV_LIST:
        if (a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!pd_chat_equal(a.u.l->v[i], b.u.l->v[i]))
                return false;
        return true;
    case PD_CV_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            const pd_chat_val_t *o = pd_chat_dict_get(b.u.d, a.u.d->keys[i]);
            if (o == NULL || !pd_chat_equal(a.u.d->vals[i], *o))
                return false;
        }
        return true;
    default:
        return a.u.loop == b.u.loop;
    }
}

bool pd_chat_find_sub(pd_chat_val_t hay, pd_chat_val_t needle, size_t from, size_t *at_p)
{
    if (needle.u.s.n == 0) {
        *at_p = from;
        return true;
    }
    for (size_t i = from; i + needle.u.s.n <= hay.u.s.n; i++)
        if (memcmp(hay.u.s.p + i, needle.u.s.p, needle.u.s.n) == 0) {
            *at_p = i;
            return true;
        }
    return false;
}

bool pd_chat_contains(pd_chat_render_t *r, pd_chat_val_t hay, pd_chat_val_t needle, int line)
{
    size_t at;
    switch (hay.type) {
    case PD_CV_STR:
        if (needle.type != PD_CV_STR)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "'in <str>' needs a str, not a %s",
                          pd_chat_type_name(needle));
        return pd_chat_find_sub(hay, needle, 0, &at);
    case PD_CV_LIST:
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (pd_chat_equal(hay.u.l->v[i], needle))
                return true;
        return false;
    case PD_CV_DICT:
        return pd_chat_dict_get(hay.u.d, needle) != NULL;
    case PD_CV_UNDEF:
        return false;
    default:
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "'in' a %s", pd_chat_type_name(hay));
    }
}

/* ---- containers ---- */

pd_chat_val_t pd_chat_list_new(pd_chat_render_t *r, size_t cap)
{
    pd_chat_val_t v = {.type = PD_CV_LIST};
    v.u.l = pd_chat_ralloc(r, sizeof(*v.u.l));
    v.u.l->n = 0;
    v.u.l->cap = cap;
    v.u.l->v = cap ? pd_chat_ralloc(r, cap * sizeof(pd_chat_val_t)) : NULL;
    return v;
}

void pd_chat_list_push(pd_chat_render_t *r, pd_chat_list_t *l, pd_chat_val_t v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        pd_chat_val_t *nv = pd_chat_ralloc(r, cap * sizeof(*nv));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(*nv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

pd_chat_val_t pd_chat_dict_new(pd_chat_render_t *r)
{
    pd_chat_val_t v = {.type = PD_CV_DICT};
    v.u.d = pd_chat_ralloc(r, sizeof(*v.u.d));
    memset(v.u.d, 0, sizeof(*v.u.d));
    return v;
}

const pd_chat_val_t *pd_chat_dict_get(const pd_chat_dict_t *d, pd_chat_val_t key)
{
    for (size_t i = 0; i < d->n; i++)
        if (pd_chat_equal(d->keys[i], key))
            return &d->vals[i];
    return NULL;
}

void pd_chat_dict_set(pd_chat_render_t *r, pd_chat_dict_t *d, pd_chat_val_t key, pd_chat_val_t v)
{
    for (size_t i = 0; i < d->n; i++)
        if (pd_chat_equal(d->keys[i], key)) {
            d->vals[i] = v;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 4;
        pd_chat_val_t *k = pd_chat_ralloc(r, cap * sizeof(*k));
        pd_chat_val_t *nv = pd_chat_ralloc(r, cap * sizeof(*nv));
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(*k));
            memcpy(nv, d->vals, d->n * sizeof(*nv));
        }
        d->keys = k;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = v;
}

pd_chat_val_t pd_chat_dict_keys(pd_chat_render_t *r, pd_chat_val_t d)
{
    pd_chat_val_t l = pd_chat_list_new(r, d.u.d->n);
    for (size_t i = 0; i < d.u.d->n; i++)
        pd_chat_list_push(r, l.u.l, d.u.d->keys[i]);
    return l;
}

pd_chat_val_t pd_chat_dict_items(pd_chat_render_t *r, pd_chat_val_t d)
{
    pd_chat_val_t l = pd_chat_list_new(r, d.u.d->n);
    for (size_t i = 0; i < d.u.d->n; i++) {
        pd_chat_val_t pair = pd_chat_list_new(r, 2);
        pd_chat_list_push(r, pair.u.l, d.u.d->keys[i]);
        pd_chat_list_push(r, pair.u.l, d.u.d->vals[i]);
        pd_chat_list_push(r, l.u.l, pair);
    }
    return l;
}

/* ---- strings ---- */

void pd_chat_sb_add(pd_chat_render_t *r, pd_chat_sb_t *b, const char *s, size_t n)
{
    if (n == 0) /* an empty string on a buffer not yet allocated: nothing to copy from */
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) {
            if (cap > r->lim.max_memory_bytes)
                pd_chat_rfail(r, PD_ERR_LIMIT, r->line,
                              "the template used more than %zu bytes of memory",
                              r->lim.max_memory_bytes);
            cap *= 2;
        }
        char *p = pd_chat_ralloc(r, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void pd_chat_sb_cstr(pd_chat_render_t *r, pd_chat_sb_t *b, const char *s)
{
    pd_chat_sb_add(r, b, s, strlen(s));
}

pd_chat_val_t pd_chat_sb_val(pd_chat_sb_t *b)
{
    return pd_chat_str(b->p ? b->p : "", b->n);
}

pd_chat_val_t pd_chat_str_slice(pd_chat_render_t *r, pd_chat_val_t s, size_t lo, size_t hi)
{
    (void)r;
    size_t a = pd_chat_utf8_offset(s.u.s.p, s.u.s.n, lo);
    size_t b = hi <= lo ? a : pd_chat_utf8_offset(s.u.s.p, s.u.s.n, hi);
    return pd_chat_str(s.u.s.p + a, b - a);
}

pd_chat_val_t pd_chat_str_chars(pd_chat_render_t *r, pd_chat_val_t s)
{
    pd_chat_val_t l = pd_chat_list_new(r, pd_chat_len(s));
    for (size_t i = 0; i < s.u.s.n;) {
        size_t j = i + 1;
        while (j < s.u.s.n && ((unsigned char)s.u.s.p[j] & 0xc0) == 0x80)
            j++;
        pd_chat_list_push(r, l.u.l, pd_chat_str(s.u.s.p + i, j - i));
        i = j;
    }
    return l;
}

pd_chat_val_t pd_chat_join(pd_chat_render_t *r, pd_chat_val_t list, pd_chat_val_t sep)
{
    pd_chat_sb_t b = {0};
    for (size_t i = 0; i < list.u.l->n; i++) {
        if (i > 0)
            pd_chat_sb_add(r, &b, sep.u.s.p, sep.u.s.n);
        pd_chat_val_t s = pd_chat_to_str(r, list.u.l->v[i]);
        pd_chat_sb_add(r, &b, s.u.s.p, s.u.s.n);
    }
    return pd_chat_sb_val(&b);
}

/* Python's repr() of a float: the shortest digits that read back the same. */
static void pd_chat_float_repr(double d, char *out, size_t cap)
{
    if (d != d) {
        snprintf(out, cap, "nan");
        return;
    }
    if (d > 1.7976931348623157e308 || d < -1.7976931348623157e308) {
        snprintf(out, cap, d > 0 ? "inf" : "-inf");
        return;
    }
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e is [-]D[.DDD]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *c = e;
    bool neg = *c == '-';
    if (neg)
        c++;
    for (; *c != 'e'; c++)
        if (*c != '.')
            digits[nd++] = *c;
    int exp = atoi(c + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            o += (size_t)snprintf(out + o, cap - o, "0.");
            for (int k = -1; k > exp; k--)
                out[o++] = '0';
            for (size_t k = 0; k < nd; k++)
                out[o++] = digits[k];
        } else {
            for (int k = 0; k <= exp; k++)
                out[o++] = (size_t)k < nd ? digits[k] : '0';
            out[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t k = (size_t)exp + 1; k < nd; k++)
                    out[o++] = digits[k];
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t k = 1; k < nd; k++)
                out[o++] = digits[k];
        }
        snprintf(out + o, cap - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void pd_chat_repr(pd_chat_render_t *r, pd_chat_sb_t *b, pd_chat_val_t v, int depth);

static void pd_chat_str_into(pd_chat_render_t *r, pd_chat_sb_t *b, pd_chat_val_t v, int depth)
{
    char num[64];
    if (depth > 64)
        pd_chat_rfail(r, PD_ERR_LIMIT, r->line, "value nested too deep to print");
    switch (v.type) {
    case PD_CV_UNDEF:
        return;
    case PD_CV_NONE:
        pd_chat_sb_cstr(r, b, "None");
        return;
    case PD_CV_BOOL:
        pd_chat_sb_cstr(r, b, v.u.b ? "True" : "False");
        return;
    case PD_CV_INT:
        snprintf(num, sizeof(num), "%lld", (long long)v.u.i);
        pd_chat_sb_cstr(r, b, num);
        return;
    case PD_CV_FLOAT:
        pd_chat_float_repr(v.u.f, num, sizeof(num));
        pd_chat_sb_cstr(r, b, num);
        return;
    case PD_CV_STR:
        pd_chat_sb_add(r, b, v.u.s.p, v.u.s.n);
        return;
    case PD_CV_LIST:
        pd_chat_sb_cstr(r, b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                pd_chat_sb_cstr(r, b, ", ");
            pd_chat_repr(r, b, v.u.l->v[i], depth + 1);
        }
        pd_chat_sb_cstr(r, b, "]");
        return;
    case PD_CV_DICT:
        pd_chat_sb_cstr(r, b, v.u.d->ns ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                pd_chat_sb_cstr(r, b, ", ");
            pd_chat_repr(r, b, v.u.d->keys[i], depth + 1);
            pd_chat_sb_cstr(r, b, ": ");
            pd_chat_repr(r, b, v.u.d->vals[i], depth + 1);
        }
        pd_chat_sb_cstr(r, b, v.u.d->ns ? "}>" : "}");
        return;
    default:
        pd_chat_sb_cstr(r, b, "<loop>");
        return;
    }
}

static void pd_chat_repr(pd_chat_render_t *r, pd_chat_sb_t *b, pd_chat_val_t v, int depth)
{
    if (v.type != PD_CV_STR) {
        pd_chat_str_into(r, b, v, depth);
        return;
    }
    bool sq = memchr(v.u.s.p, '\'', v.u.s.n) != NULL, dq = memchr(v.u.s.p, '"', v.u.s.n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    pd_chat_sb_add(r, b, &q, 1);
    for (size_t i = 0; i < v.u.s.n; i++) {
        unsigned char c = (unsigned char)v.u.s.p[i];
        char esc[8];
        if (c == '\\' || c == (unsigned char)q) {
            esc[0] = '\\', esc[1] = (char)c;
            pd_chat_sb_add(r, b, esc, 2);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            pd_chat_sb_add(r, b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            pd_chat_sb_add(r, b, esc, 4);
        } else {
            pd_chat_sb_add(r, b, (const char *)&c, 1);
        }
    }
    pd_chat_sb_add(r, b, &q, 1);
}

pd_chat_val_t pd_chat_to_str(pd_chat_render_t *r, pd_chat_val_t v)
{
    if (v.type == PD_CV_STR)
        return v;
    pd_chat_sb_t b = {0};
    pd_chat_str_into(r, &b, v, 0);
    return pd_chat_sb_val(&b);
}

/* json.dumps(v, ensure_ascii=False, indent=indent) */
void pd_chat_json(pd_chat_render_t *r, pd_chat_sb_t *b, pd_chat_val_t v, int indent, int depth)
{
    if (depth > 64)
        pd_chat_rfail(r, PD_ERR_LIMIT, r->line, "value nested too deep for tojson");
    switch (v.type) {
    case PD_CV_NONE:
        pd_chat_sb_cstr(r, b, "null");
        return;
    case PD_CV_BOOL:
        pd_chat_sb_cstr(r, b, v.u.b ? "true" : "false");
        return;
    case PD_CV_INT:
    case PD_CV_FLOAT:
        if (v.type == PD_CV_FLOAT && (v.u.f != v.u.f || v.u.f - v.u.f != 0))
            pd_chat_sb_cstr(r, b, v.u.f != v.u.f ? "NaN" : v.u.f > 0 ? "Infinity" : "-Infinity");
        else
            pd_chat_str_into(r, b, v, depth);
        return;
    case PD_CV_STR:
        pd_chat_sb_cstr(r, b, "\"");
        for (size_t i = 0; i < v.u.s.n; i++) {
            unsigned char c = (unsigned char)v.u.s.p[i];
            char esc[8];
            const char *e = c == '"'    ? "\\\""
                            : c == '\\' ? "\\\\"
                            : c == '\n' ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
            if (e == NULL && c < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                e = esc;
            }
            if (e != NULL)
                pd_chat_sb_cstr(r, b, e);
            else
                pd_chat_sb_add(r, b, (const char *)&c, 1);
        }
        pd_chat_sb_cstr(r, b, "\"");
        return;
    case PD_CV_LIST:
    case PD_CV_DICT: {
        bool list = v.type == PD_CV_LIST;
        size_t n = list ? v.u.l->n : v.u.d->n;
        pd_chat_sb_cstr(r, b, list ? "[" : "{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                pd_chat_sb_cstr(r, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                pd_chat_sb_cstr(r, b, "\n");
                for (int k = 0; k < indent * (depth + 1); k++)
                    pd_chat_sb_cstr(r, b, " ");
            }
            if (!list) {
                pd_chat_json(r, b, v.u.d->keys[i], indent, depth + 1);
                pd_chat_sb_cstr(r, b, ": ");
            }
            pd_chat_json(r, b, list ? v.u.l->v[i] : v.u.d->vals[i], indent, depth + 1);
        }
        if (indent >= 0 && n > 0) {
            pd_chat_sb_cstr(r, b, "\n");
            for (int k = 0; k < indent * depth; k++)
                pd_chat_sb_cstr(r, b, " ");
        }
        pd_chat_sb_cstr(r, b, list ? "]" : "}");
        return;
    }
    default:
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, r->line, "tojson of a %s", pd_chat_type_name(v));
    }
}

pd_chat_val_t pd_chat_from_json(pd_chat_render_t *r, const pd_json_t *j)
{
    pd_chat_val_t v = {.type = PD_CV_NONE};
    switch (pd_json_type(j)) {
    case PD_JSON_BOOL: {
        bool b = false;
        (void)pd_json_bool(j, &b);
        return pd_chat_bool(b);
    }
    case PD_JSON_NUMBER: {
        double d = 0;
        (void)pd_json_number(j, &d);
        if (d == (double)(int64_t)d && d > -9007199254740992.0 && d < 9007199254740992.0)
            return pd_chat_int((int64_t)d);
        v.type = PD_CV_FLOAT;
        v.u.f = d;
        return v;
    }
    case PD_JSON_STRING: {
        const char *s = "";
        size_t n = 0;
        (void)pd_json_string(j, &s, &n);
        return pd_chat_str(s, n);
    }
    case PD_JSON_ARRAY: {
        pd_chat_val_t l = pd_chat_list_new(r, pd_json_len(j));
        for (size_t i = 0; i < pd_json_len(j); i++)
            pd_chat_list_push(r, l.u.l, pd_chat_from_json(r, pd_json_array_at(j, i)));
        return l;
    }
    case PD_JSON_OBJECT: {
        pd_chat_val_t d = pd_chat_dict_new(r);
        for (size_t i = 0; i < pd_json_len(j); i++) {
            const char *k = pd_json_object_key_at(j, i);
            pd_chat_dict_set(r, d.u.d, pd_chat_str(k, strlen(k)),
                             pd_chat_from_json(r, pd_json_object_value_at(j, i)));
        }
        return d;
    }
    default:
        return v;
    }
}

/* ---- operators ---- */

static pd_chat_val_t pd_chat_repeat(pd_chat_render_t *r, pd_chat_val_t s, int64_t k, int line)
{
    if (k <= 0)
        return s.type == PD_CV_STR ? pd_chat_str("", 0) : pd_chat_list_new(r, 0);
    size_t unit = s.type == PD_CV_STR ? s.u.s.n : s.u.l->n * sizeof(pd_chat_val_t);
    if (unit != 0 && (uint64_t)k > r->lim.max_memory_bytes / unit)
        pd_chat_rfail(r, PD_ERR_LIMIT, line,
                      "repeating a %s %lld times: more than the "
                      "template's memory allows",
                      pd_chat_type_name(s), (long long)k);
    if (s.type == PD_CV_STR) {
        pd_chat_sb_t b = {0};
        for (int64_t i = 0; i < k; i++)
            pd_chat_sb_add(r, &b, s.u.s.p, s.u.s.n);
        return pd_chat_sb_val(&b);
    }
    pd_chat_val_t l = pd_chat_list_new(r, s.u.l->n * (size_t)k);
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < s.u.l->n; j++)
            pd_chat_list_push(r, l.u.l, s.u.l->v[j]);
    return l;
}

static int pd_chat_order(pd_chat_render_t *r, pd_chat_val_t a, pd_chat_val_t b, int line)
{
    if (pd_chat_is_num(a) && pd_chat_is_num(b)) {
        if (a.type == PD_CV_INT && b.type == PD_CV_INT)
            return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        double x = pd_chat_num(a), y = pd_chat_num(b);
        return x < y ? -1 : x > y;
    }
    if (a.type == PD_CV_STR && b.type == PD_CV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = memcmp(a.u.s.p, b.u.s.p, n);
        return c != 0 ? (c < 0 ? -1 : 1) : a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    }
    pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "cannot compare a %s with a %s",
                  pd_chat_type_name(a), pd_chat_type_name(b));
}

pd_chat_val_t pd_chat_binop(pd_chat_render_t *r, int op, pd_chat_val_t a, pd_chat_val_t b, int line)
{
    static const char *const sym[] = {"",   "+",  "-", "*",  "/", "//", "%",  "**",    "~",
                                      "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    switch (op) {
    case PD_COP_EQ:
        return pd_chat_bool(pd_chat_equal(a, b));
    case PD_COP_NE:
        return pd_chat_bool(!pd_chat_equal(a, b));
    case PD_COP_LT:
        return pd_chat_bool(pd_chat_order(r, a, b, line) < 0);
    case PD_COP_LE:
        return pd_chat_bool(pd_chat_order(r, a, b, line) <= 0);
    case PD_COP_GT:
        return pd_chat_bool(pd_chat_order(r, a, b, line) > 0);
    case PD_COP_GE:
        return pd_chat_bool(pd_chat_order(r, a, b, line) >= 0);
    case PD_COP_IN:
        return pd_chat_bool(pd_chat_contains(r, b, a, line));
    case PD_COP_NOTIN:
        return pd_chat_bool(!pd_chat_contains(r, b, a, line));
    case PD_COP_CONCAT: {
        pd_chat_sb_t s = {0};
        pd_chat_str_into(r, &s, a, 0);
        pd_chat_str_into(r, &s, b, 0);
        return pd_chat_sb_val(&s);
    }
    default:
        break;
    }
    if (op == PD_COP_ADD && a.type == PD_CV_STR && b.type == PD_CV_STR) {
        pd_chat_sb_t s = {0};
        pd_chat_sb_add(r, &s, a.u.s.p, a.u.s.n);
        pd_chat_sb_add(r, &s, b.u.s.p, b.u.s.n);
        return pd_chat_sb_val(&s);
    }
    if (op == PD_COP_ADD && a.type == PD_CV_LIST && b.type == PD_CV_LIST) {
        pd_chat_val_t l = pd_chat_list_new(r, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            pd_chat_list_push(r, l.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            pd_chat_list_push(r, l.u.l, b.u.l->v[i]);
        return l;
    }
    if (op == PD_COP_MUL && (a.type == PD_CV_STR || a.type == PD_CV_LIST) && b.type == PD_CV_INT)
        return pd_chat_repeat(r, a, b.u.i, line);
    if (op == PD_COP_MUL && (b.type == PD_CV_STR || b.type == PD_CV_LIST) && a.type == PD_CV_INT)
        return pd_chat_repeat(r, b, a.u.i, line);
    if (!pd_chat_is_num(a) || !pd_chat_is_num(b))
        pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "'%s' of a %s and a %s", sym[op],
                      pd_chat_type_name(a), pd_chat_type_name(b));
    if (a.type != PD_CV_FLOAT && b.type != PD_CV_FLOAT && op != PD_COP_DIV) {
        int64_t x = a.type == PD_CV_INT ? a.u.i : a.u.b, y = b.type == PD_CV_INT ? b.u.i : b.u.b;
        int64_t z = 0;
        bool ovf = false;
        switch (op) {
        case PD_COP_ADD:
            ovf = __builtin_add_overflow(x, y, &z);
            break;
        case PD_COP_SUB:
            ovf = __builtin_sub_overflow(x, y, &z);
            break;
        case PD_COP_MUL:
            ovf = __builtin_mul_overflow(x, y, &z);
            break;
        case PD_COP_FLOORDIV:
        case PD_COP_MOD:
            if (y == 0)
                pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "division by zero");
            if (x == INT64_MIN && y == -1) {
                ovf = true;
                break;
            }
            z = op == PD_COP_MOD ? x % y : x / y;
            if (op == PD_COP_MOD && z != 0 && ((z < 0) != (y < 0)))
                z += y;
            if (op == PD_COP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0)))
                z--;
            break;
        case PD_COP_POW:
            if (y < 0)
                pd_chat_rfail(r, PD_ERR_UNSUPPORTED, line, "negative integer powers");
            z = 1;
            for (int64_t i = 0; i < y && !ovf; i++)
                ovf = __builtin_mul_overflow(z, x, &z);
            break;
        }
        if (ovf)
            pd_chat_rfail(r, PD_ERR_LIMIT, line, "integer overflow in '%s'", sym[op]);
        return pd_chat_int(z);
    }
    double x = pd_chat_num(a), y = pd_chat_num(b), z;
    switch (op) {
    case PD_COP_ADD:
        z = x + y;
        break;
    case PD_COP_SUB:
        z = x - y;
        break;
    case PD_COP_MUL:
        z = x * y;
        break;
    case PD_COP_DIV:
        if (y == 0)
            pd_chat_rfail(r, PD_ERR_INVALID_PARAM, line, "division by zero");
        z = x / y;
        break;
    default:
        pd_chat_rfail(r, PD_ERR_UNSUPPORTED, line, "'%s' of floats is not supported", sym[op]);
    }
    pd_chat_val_t v = {.type = PD_CV_FLOAT, .u.f = z};
    return v;
}
