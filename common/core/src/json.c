/* Strict recursive-descent JSON parser. Values of a document live in one arena; each
 * container's children are gathered in a temporary vector and copied into the arena
 * once complete, so lookups by index are O(1). */
#include "pd/json.h"

#include "pd/arena.h"
#include "pd/log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const pd_json_limits_t pd_json_limits_default = {
    .max_bytes = 64u << 20,
    .max_depth = 32,
    .max_values = 4u << 20,
    .max_str_bytes = 1u << 20,
};

/* Recursion is bounded by this whatever the caller's limits say. */
#define PD_JSON_DEPTH_CAP 256u

struct pd_json {
    pd_json_type_t type;
    bool is_u64;
    union {
        bool b;
        struct {
            double d;
            uint64_t u;
        } num;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            pd_json_t *items; /* (n) */
            char **keys;      /* (n) for objects, NULL for arrays */
            size_t n;
        } c;
    } u;
};

struct pd_json_doc {
    pd_arena_t *arena;
    pd_json_t root;
};

typedef struct pd_json_parser {
    const unsigned char *p;
    const unsigned char *start;
    const unsigned char *end;
    const pd_json_limits_t *limits;
    pd_arena_t *arena;
    size_t n_values;
    pd_status_t status;
} pd_json_parser_t;

static _Thread_local char pd_json_error[160];

const char *pd_json_last_error(void)
{
    return pd_json_error;
}

/* Record the first failure with its offset; returns the status for chaining. */
static pd_status_t pd_json_fail(pd_json_parser_t *ps, pd_status_t status, const char *what)
{
    if (ps->status == PD_OK) {
        ps->status = status;
        snprintf(pd_json_error, sizeof(pd_json_error), "%s at byte %zu", what,
                 (size_t)(ps->p - ps->start));
        pd_log_debug("json: %s", pd_json_error);
    }
    return status;
}

static void pd_json_skip_ws(pd_json_parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static pd_status_t pd_json_parse_value(pd_json_parser_t *ps, pd_json_t *out, uint32_t depth);

int pd_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Read 4 hex digits of a \u escape. */
static pd_status_t pd_json_u4(pd_json_parser_t *ps, uint32_t *cp_p)
{
    uint32_t cp = 0;
    if (ps->end - ps->p < 4)
        return pd_json_fail(ps, PD_ERR_FORMAT, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        int h = pd_hex_digit(ps->p[i]);
        if (h < 0)
            return pd_json_fail(ps, PD_ERR_FORMAT, "bad hex digit in \\u escape");
        cp = (cp << 4) | (uint32_t)h;
    }
    ps->p += 4;
    *cp_p = cp;
    return PD_OK;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not valid. */
static size_t pd_json_utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (avail >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

size_t pd_utf8_put(char *dst, uint32_t cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parse a string literal (at its opening quote) into the arena. The unescaped form is
 * never longer than the literal, so the literal's length bounds the allocation. */
static pd_status_t pd_json_parse_string(pd_json_parser_t *ps, char **s_p, size_t *len_p)
{
    const unsigned char *q = ++ps->p;
    while (q < ps->end && *q != '"') {
        if (*q == '\\' && q + 1 < ps->end)
            q++;
        q++;
    }
    if (q >= ps->end)
        return pd_json_fail(ps, PD_ERR_FORMAT, "unterminated string");
    size_t raw = (size_t)(q - ps->p);
    if (raw > ps->limits->max_str_bytes * 6 + 6)
        return pd_json_fail(ps, PD_ERR_LIMIT, "string longer than the limit");
    char *dst = pd_arena_alloc(ps->arena, raw + 1);
    if (dst == NULL)
        return pd_json_fail(ps, PD_ERR_NO_MEMORY, "out of memory");
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = *ps->p;
        if (c < 0x20)
            return pd_json_fail(ps, PD_ERR_FORMAT, "control character in string");
        if (c != '\\') {
            size_t l = pd_json_utf8_len(ps->p, ps->end);
            if (l == 0)
                return pd_json_fail(ps, PD_ERR_FORMAT, "invalid UTF-8 in string");
            memcpy(dst + n, ps->p, l);
            n += l;
            ps->p += l;
            continue;
        }
        ps->p++;
        c = *ps->p++;
        switch (c) {
        case '"':
            dst[n++] = '"';
            break;
        case '\\':
            dst[n++] = '\\';
            break;
        case '/':
            dst[n++] = '/';
            break;
        case 'b':
            dst[n++] = '\b';
            break;
        case 'f':
            dst[n++] = '\f';
            break;
        case 'n':
            dst[n++] = '\n';
            break;
        case 'r':
            dst[n++] = '\r';
            break;
        case 't':
            dst[n++] = '\t';
            break;
        case 'u': {
            uint32_t cp;
            if (pd_json_u4(ps, &cp) != PD_OK)
                return ps->status;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return pd_json_fail(ps, PD_ERR_FORMAT, "lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                    return pd_json_fail(ps, PD_ERR_FORMAT, "lone high surrogate");
                ps->p += 2;
                if (pd_json_u4(ps, &lo) != PD_OK)
                    return ps->status;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return pd_json_fail(ps, PD_ERR_FORMAT, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            n += pd_utf8_put(dst + n, cp);
            break;
        }
        default:
            ps->p--;
            return pd_json_fail(ps, PD_ERR_FORMAT, "bad escape in string");
        }
    }
    ps->p++; /* closing quote */
    if (n > ps->limits->max_str_bytes)
        return pd_json_fail(ps, PD_ERR_LIMIT, "string longer than the limit");
    dst[n] = '\0';
    *s_p = dst;
    *len_p = n;
    return PD_OK;
}

static pd_status_t pd_json_parse_number(pd_json_parser_t *ps, pd_json_t *out)
{
    const unsigned char *s = ps->p;
    const unsigned char *q = s;
    bool integer = true;
    if (q < ps->end && *q == '-')
        q++;
    if (q >= ps->end || *q < '0' || *q > '9')
        return pd_json_fail(ps, PD_ERR_FORMAT, "bad number");
    if (*q == '0') {
        q++;
        if (q < ps->end && *q >= '0' && *q <= '9')
            return pd_json_fail(ps, PD_ERR_FORMAT, "leading zero in number");
    } else {
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && *q == '.') {
        integer = false;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return pd_json_fail(ps, PD_ERR_FORMAT, "digit expected after '.'");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integer = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return pd_json_fail(ps, PD_ERR_FORMAT, "digit expected in exponent");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    size_t n = (size_t)(q - s);
    char buf[64];
    if (n >= sizeof(buf))
        return pd_json_fail(ps, PD_ERR_LIMIT, "number literal too long");
    memcpy(buf, s, n);
    buf[n] = '\0';
    out->type = PD_JSON_NUMBER;
    out->u.num.d = strtod(buf, NULL);
    if (!isfinite(out->u.num.d))
        return pd_json_fail(ps, PD_ERR_FORMAT, "number out of range");
    out->is_u64 = false;
    if (integer && buf[0] != '-') {
        errno = 0;
        unsigned long long u = strtoull(buf, NULL, 10);
        if (errno == 0) {
            out->is_u64 = true;
            out->u.num.u = (uint64_t)u;
        }
    }
    ps->p = q;
    return PD_OK;
}

static pd_status_t pd_json_literal(pd_json_parser_t *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return pd_json_fail(ps, PD_ERR_FORMAT, "unexpected character");
    ps->p += n;
    return PD_OK;
}

/* Growable temporary vector of children (and keys) of one container. */
typedef struct pd_json_vec {
    pd_json_t *items;
    char **keys;
    size_t n;
    size_t cap;
} pd_json_vec_t;

static pd_status_t pd_json_vec_push(pd_json_vec_t *v, bool with_keys)
{
    if (v->n < v->cap)
        return PD_OK;
    size_t cap = v->cap ? v->cap * 2 : 8;
    pd_json_t *items = realloc(v->items, cap * sizeof(*items));
    if (items == NULL)
        return PD_ERR_NO_MEMORY;
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, cap * sizeof(*keys));
        if (keys == NULL)
            return PD_ERR_NO_MEMORY;
        v->keys = keys;
    }
    v->cap = cap;
    return PD_OK;
}

/* Parse an array or object (at its opening bracket). */
#define PD_JSON_DUP_SORT 16u

static int pd_json_key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* PD_ERR_FORMAT (recorded in ps) when two of the n keys are equal. */
static pd_status_t pd_json_has_dup(char **keys, size_t n, pd_json_parser_t *ps)
{
    char **sorted = malloc(n * sizeof(char *));
    if (sorted == NULL)
        return pd_json_fail(ps, PD_ERR_NO_MEMORY, "out of memory");
    memcpy(sorted, keys, n * sizeof(char *));
    qsort(sorted, n, sizeof(char *), pd_json_key_cmp);
    pd_status_t st = PD_OK;
    for (size_t i = 1; i < n && st == PD_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            st = pd_json_fail(ps, PD_ERR_FORMAT, "duplicate object key");
    free(sorted);
    return st;
}

static pd_status_t pd_json_parse_container(pd_json_parser_t *ps, pd_json_t *out, uint32_t depth,
                                           bool object)
{
    pd_json_vec_t v = {0};
    unsigned char close = object ? '}' : ']';

    if (depth >= ps->limits->max_depth || depth >= PD_JSON_DEPTH_CAP)
        return pd_json_fail(ps, PD_ERR_LIMIT, "nesting deeper than the limit");
    ps->p++;
    pd_json_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        goto done;
    }
    for (;;) {
        if (pd_json_vec_push(&v, object) != PD_OK) {
            pd_json_fail(ps, PD_ERR_NO_MEMORY, "out of memory");
            goto out_free_vec;
        }
        if (object) {
            size_t klen;
            pd_json_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') {
                pd_json_fail(ps, PD_ERR_FORMAT, "object key expected");
                goto out_free_vec;
            }
            if (pd_json_parse_string(ps, &v.keys[v.n], &klen) != PD_OK)
                goto out_free_vec;
            if (strlen(v.keys[v.n]) != klen) {
                pd_json_fail(ps, PD_ERR_FORMAT, "NUL in object key");
                goto out_free_vec;
            }
            /* Small objects are checked for duplicates here, large ones once at the end
             * by sorting (a vocabulary of 150,000 keys would be quadratic). */
            for (size_t i = 0; i < v.n && v.n < PD_JSON_DUP_SORT; i++) {
                if (strcmp(v.keys[i], v.keys[v.n]) == 0) {
                    pd_json_fail(ps, PD_ERR_FORMAT, "duplicate object key");
                    goto out_free_vec;
                }
            }
            pd_json_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                pd_json_fail(ps, PD_ERR_FORMAT, "':' expected");
                goto out_free_vec;
            }
            ps->p++;
        }
        if (pd_json_parse_value(ps, &v.items[v.n], depth + 1) != PD_OK)
            goto out_free_vec;
        v.n++;
        pd_json_skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        pd_json_fail(ps, PD_ERR_FORMAT, object ? "',' or '}' expected" : "',' or ']' expected");
        goto out_free_vec;
    }
done:
    if (object && v.n > PD_JSON_DUP_SORT && pd_json_has_dup(v.keys, v.n, ps) != PD_OK)
        goto out_free_vec;
    out->type = object ? PD_JSON_OBJECT : PD_JSON_ARRAY;
    out->u.c.n = v.n;
    out->u.c.items = NULL;
    out->u.c.keys = NULL;
    if (v.n > 0) {
        out->u.c.items = pd_arena_alloc(ps->arena, v.n * sizeof(pd_json_t));
        if (out->u.c.items == NULL) {
            pd_json_fail(ps, PD_ERR_NO_MEMORY, "out of memory");
            goto out_free_vec;
        }
        memcpy(out->u.c.items, v.items, v.n * sizeof(pd_json_t));
        if (object) {
            out->u.c.keys = pd_arena_alloc(ps->arena, v.n * sizeof(char *));
            if (out->u.c.keys == NULL) {
                pd_json_fail(ps, PD_ERR_NO_MEMORY, "out of memory");
                goto out_free_vec;
            }
            memcpy(out->u.c.keys, v.keys, v.n * sizeof(char *));
        }
    }
out_free_vec:
    free(v.items);
    free(v.keys);
    return ps->status;
}

static pd_status_t pd_json_parse_value(pd_json_parser_t *ps, pd_json_t *out, uint32_t depth)
{
    memset(out, 0, sizeof(*out));
    if (++ps->n_values > ps->limits->max_values)
        return pd_json_fail(ps, PD_ERR_LIMIT, "more values than the limit");
    pd_json_skip_ws(ps);
    if (ps->p >= ps->end)
        return pd_json_fail(ps, PD_ERR_FORMAT, "value expected");
    switch (*ps->p) {
    case '{':
        return pd_json_parse_container(ps, out, depth, true);
    case '[':
        return pd_json_parse_container(ps, out, depth, false);
    case '"':
        out->type = PD_JSON_STRING;
        return pd_json_parse_string(ps, &out->u.str.s, &out->u.str.len);
    case 't':
        out->type = PD_JSON_BOOL;
        out->u.b = true;
        return pd_json_literal(ps, "true");
    case 'f':
        out->type = PD_JSON_BOOL;
        out->u.b = false;
        return pd_json_literal(ps, "false");
    case 'n':
        out->type = PD_JSON_NULL;
        return pd_json_literal(ps, "null");
    default:
        return pd_json_parse_number(ps, out);
    }
}

pd_status_t pd_json_parse(const char *text, size_t len, const pd_json_limits_t *limits,
                          pd_json_doc_t **doc_p)
{
    pd_json_doc_t *doc = NULL;
    pd_json_parser_t ps;

    pd_json_error[0] = '\0';
    if (text == NULL || doc_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (limits == NULL)
        limits = &pd_json_limits_default;
    memset(&ps, 0, sizeof(ps));
    ps.start = ps.p = (const unsigned char *)text;
    ps.end = ps.p + len;
    ps.limits = limits;
    if (len > limits->max_bytes)
        return pd_json_fail(&ps, PD_ERR_LIMIT, "document larger than the limit");

    doc = calloc(1, sizeof(*doc));
    if (doc == NULL)
        return PD_ERR_NO_MEMORY;
    doc->arena = pd_arena_create(len < 4096 ? 4096 : (len < (1u << 20) ? len : (1u << 20)));
    if (doc->arena == NULL)
        goto err_free_doc;
    ps.arena = doc->arena;
    if (pd_json_parse_value(&ps, &doc->root, 0) != PD_OK)
        goto err_free_doc;
    pd_json_skip_ws(&ps);
    if (ps.p != ps.end) {
        pd_json_fail(&ps, PD_ERR_FORMAT, "trailing characters after the document");
        goto err_free_doc;
    }
    *doc_p = doc;
    return PD_OK;

err_free_doc:
    pd_json_doc_destroy(&doc);
    return ps.status != PD_OK ? ps.status : PD_ERR_NO_MEMORY;
}

void pd_json_doc_destroy(pd_json_doc_t **doc_p)
{
    if (doc_p == NULL || *doc_p == NULL)
        return;
    pd_arena_destroy(&(*doc_p)->arena);
    free(*doc_p);
    *doc_p = NULL;
}

const pd_json_t *pd_json_doc_root(const pd_json_doc_t *doc)
{
    return &doc->root;
}

pd_json_type_t pd_json_type(const pd_json_t *v)
{
    if (v == NULL)
        return PD_JSON_NULL;
    return v->type;
}

size_t pd_json_len(const pd_json_t *v)
{
    if (v == NULL || (v->type != PD_JSON_ARRAY && v->type != PD_JSON_OBJECT))
        return 0;
    return v->u.c.n;
}

const pd_json_t *pd_json_array_at(const pd_json_t *arr, size_t i)
{
    if (arr == NULL || arr->type != PD_JSON_ARRAY || i >= arr->u.c.n)
        return NULL;
    return &arr->u.c.items[i];
}

const char *pd_json_object_key_at(const pd_json_t *obj, size_t i)
{
    if (obj == NULL || obj->type != PD_JSON_OBJECT || i >= obj->u.c.n)
        return NULL;
    return obj->u.c.keys[i];
}

const pd_json_t *pd_json_object_value_at(const pd_json_t *obj, size_t i)
{
    if (obj == NULL || obj->type != PD_JSON_OBJECT || i >= obj->u.c.n)
        return NULL;
    return &obj->u.c.items[i];
}

const pd_json_t *pd_json_object_get(const pd_json_t *obj, const char *key)
{
    if (obj == NULL || obj->type != PD_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->u.c.n; i++) {
        if (strcmp(obj->u.c.keys[i], key) == 0)
            return &obj->u.c.items[i];
    }
    return NULL;
}

bool pd_json_bool(const pd_json_t *v, bool *b_p)
{
    if (v == NULL || v->type != PD_JSON_BOOL)
        return false;
    *b_p = v->u.b;
    return true;
}

bool pd_json_number(const pd_json_t *v, double *d_p)
{
    if (v == NULL || v->type != PD_JSON_NUMBER)
        return false;
    *d_p = v->u.num.d;
    return true;
}

bool pd_json_u64(const pd_json_t *v, uint64_t *u_p)
{
    if (v == NULL || v->type != PD_JSON_NUMBER || !v->is_u64)
        return false;
    *u_p = v->u.num.u;
    return true;
}

bool pd_json_string(const pd_json_t *v, const char **s_p, size_t *len_p)
{
    if (v == NULL || v->type != PD_JSON_STRING)
        return false;
    *s_p = v->u.str.s;
    if (len_p != NULL)
        *len_p = v->u.str.len;
    return true;
}

void pd_json_fprint_string(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    fputc('"', f);
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c == '\n') {
            fputs("\\n", f);
            p++;
        } else if (c == '\t') {
            fputs("\\t", f);
            p++;
        } else if (c == '\r') {
            fputs("\\r", f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else {
            size_t l = pd_json_utf8_len(p, end);
            if (l == 0) {
                fputs("\xef\xbf\xbd", f); /* U+FFFD */
                p++;
            } else {
                fwrite(p, 1, l, f);
                p += l;
            }
        }
    }
    fputc('"', f);
}
