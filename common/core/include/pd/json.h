/* A small strict JSON parser (RFC 8259) with limits, for config.json and safetensors
 * headers, plus a string writer for JSON output. The parser builds a read-only tree in
 * one document; every count is checked against a limit before anything is allocated. */
#ifndef PD_JSON_H
#define PD_JSON_H

#include "pd/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum pd_json_type {
    PD_JSON_NULL = 0,
    PD_JSON_BOOL,
    PD_JSON_NUMBER,
    PD_JSON_STRING,
    PD_JSON_ARRAY,
    PD_JSON_OBJECT
} pd_json_type_t;

typedef struct pd_json_limits {
    size_t max_bytes;     /* input size */
    uint32_t max_depth;   /* nesting of arrays and objects */
    size_t max_values;    /* values in the whole document */
    size_t max_str_bytes; /* one string (key or value) after unescaping */
} pd_json_limits_t;

/* 64 MiB, depth 32, 4 M values, 1 MiB strings. */
extern const pd_json_limits_t pd_json_limits_default;

typedef struct pd_json_doc pd_json_doc_t;
typedef struct pd_json pd_json_t; /* one value inside a document */

/* Parse len bytes of text (need not be NUL-terminated) under limits (NULL: default).
 * Rejects trailing garbage, duplicate object keys, invalid UTF-8 and control characters
 * in strings, leading zeros, lone surrogates. PD_ERR_FORMAT for bad syntax (logged at
 * debug level with the byte offset), PD_ERR_LIMIT past a limit, PD_ERR_NO_MEMORY. */
PD_MUST_CHECK pd_status_t pd_json_parse(const char *text, size_t len,
                                        const pd_json_limits_t *limits, pd_json_doc_t **doc_p);

/* The reason and byte offset of the last failure of pd_json_parse in this thread, for
 * error messages ("expected ':' at byte 17"); "" after a success. */
const char *pd_json_last_error(void);

/* Free a document and every value in it; accepts NULL and clears the caller's pointer. */
void pd_json_doc_destroy(pd_json_doc_t **doc_p);

/* Write code point cp (at most U+10FFFF) as UTF-8 at dst, which has room for 4 bytes;
 * returns the bytes written (1-4). */
size_t pd_utf8_put(char *dst, uint32_t cp);

/* The value of hex digit c (0-9, a-f, A-F), or -1 when c is not one. */
int pd_hex_digit(int c);

/* The root value; owned by the document. */
const pd_json_t *pd_json_doc_root(const pd_json_doc_t *doc);

/* The type of v; PD_JSON_NULL for a NULL v too, so that the result of a lookup can be
 * tested directly. Every accessor below accepts NULL and reports a type mismatch. */
pd_json_type_t pd_json_type(const pd_json_t *v);

/* Elements of an array or members of an object; 0 for other types. */
size_t pd_json_len(const pd_json_t *v);

/* Element i of an array; NULL past the end or for other types. */
const pd_json_t *pd_json_array_at(const pd_json_t *arr, size_t i);

/* Member i of an object (in document order): key and value; NULL past the end. */
const char *pd_json_object_key_at(const pd_json_t *obj, size_t i);
const pd_json_t *pd_json_object_value_at(const pd_json_t *obj, size_t i);

/* The value of key in an object; NULL when absent or obj is not an object. */
const pd_json_t *pd_json_object_get(const pd_json_t *obj, const char *key);

/* Scalar accessors; each returns false when v has another type. */
bool pd_json_bool(const pd_json_t *v, bool *b_p);
bool pd_json_number(const pd_json_t *v, double *d_p);
/* An integer literal (no fraction or exponent) that fits in uint64_t. */
bool pd_json_u64(const pd_json_t *v, uint64_t *u_p);
/* NUL-terminated (strings may hold U+0000, hence *len_p, which may be NULL). */
bool pd_json_string(const pd_json_t *v, const char **s_p, size_t *len_p);

/* Write bytes as a JSON string literal with quotes to f; control characters are
 * escaped and bytes that are not valid UTF-8 become U+FFFD, so the output is always
 * valid JSON whatever the input. */
void pd_json_fprint_string(FILE *f, const char *s, size_t len);

#endif
