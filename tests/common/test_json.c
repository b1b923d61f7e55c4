#include "pd/json.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pd_status_t parse(const char *text, pd_json_doc_t **doc_p)
{
    return pd_json_parse(text, strlen(text), NULL, doc_p);
}

Test(json, parses_a_config_object)
{
    const char *text = "{\n \"hidden_size\": 256, \"rms_norm_eps\": 1e-05, \"tie\": false,\n"
                       " \"name\": \"a\\\"b\\u00e9\\ud83d\\ude00\", \"shape\": [4, 0, "
                       "18446744073709551615], \"none\": null, \"neg\": -2.5}";
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(parse(text, &doc), PD_OK);
    const pd_json_t *root = pd_json_doc_root(doc);
    cr_assert_eq(pd_json_type(root), PD_JSON_OBJECT);
    cr_assert_eq(pd_json_len(root), 7);
    cr_assert_str_eq(pd_json_object_key_at(root, 1), "rms_norm_eps");
    uint64_t u = 0;
    cr_assert(pd_json_u64(pd_json_object_get(root, "hidden_size"), &u));
    cr_assert_eq(u, 256);
    double d = 0;
    cr_assert(pd_json_number(pd_json_object_get(root, "rms_norm_eps"), &d));
    cr_assert_float_eq(d, 1e-5, 1e-12);
    cr_assert_not(pd_json_u64(pd_json_object_get(root, "rms_norm_eps"), &u));
    cr_assert_not(pd_json_u64(pd_json_object_get(root, "neg"), &u));
    bool b = true;
    cr_assert(pd_json_bool(pd_json_object_get(root, "tie"), &b));
    cr_assert_not(b);
    const char *s;
    size_t len;
    cr_assert(pd_json_string(pd_json_object_get(root, "name"), &s, &len));
    cr_assert_str_eq(s, "a\"b\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(len, 9);
    const pd_json_t *shape = pd_json_object_get(root, "shape");
    cr_assert_eq(pd_json_len(shape), 3);
    cr_assert(pd_json_u64(pd_json_array_at(shape, 2), &u));
    cr_assert_eq(u, UINT64_MAX);
    cr_assert_null(pd_json_array_at(shape, 3));
    cr_assert_eq(pd_json_type(pd_json_object_get(root, "none")), PD_JSON_NULL);
    cr_assert_null(pd_json_object_get(root, "absent"));
    cr_assert_not(pd_json_string(pd_json_object_get(root, "hidden_size"), &s, &len));
    pd_json_doc_destroy(&doc);
    cr_assert_null(doc);
    pd_json_doc_destroy(&doc);
}

Test(json, accepts_scalars_and_empty_containers)
{
    const char *ok[] = {"0",
                        "-0",
                        "1.5e3",
                        " true ",
                        "null",
                        "\"\"",
                        "[]",
                        "{}",
                        "[[],{}]",
                        "{\"a\":{\"b\":[1,2,{\"c\":\"d\"}]}}",
                        "\"\\/\\b\\f\\n\\r\\t\""};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pd_json_doc_t *doc = NULL;
        cr_assert_eq(parse(ok[i], &doc), PD_OK, "rejected %s", ok[i]);
        pd_json_doc_destroy(&doc);
    }
}

Test(json, rejects_malformed_documents)
{
    const char *bad[] = {"",
                         "{",
                         "[1,]",
                         "{\"a\":1,}",
                         "{\"a\" 1}",
                         "{a:1}",
                         "01",
                         "1.",
                         ".5",
                         "1e",
                         "+1",
                         "tru",
                         "nul",
                         "[1] x",
                         "\"abc",
                         "\"a\x01\"",
                         "\"\\x\"",
                         "\"\\ud800\"",
                         "\"\\udc00\"",
                         "\"\xff\"",
                         "\"\xc0\xaf\"",
                         "{\"a\":1,\"a\":2}",
                         "1e999",
                         "NaN",
                         "'a'",
                         "[1 2]",
                         "{\"a\":}",
                         "\"\\u12\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pd_json_doc_t *doc = NULL;
        cr_assert_eq(parse(bad[i], &doc), PD_ERR_FORMAT, "accepted '%s'", bad[i]);
        cr_assert_null(doc);
        cr_assert_neq(pd_json_last_error()[0], '\0');
    }
    /* A NUL byte inside the text is not whitespace. */
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse("[1]\0", 4, NULL, &doc), PD_ERR_FORMAT);
}

Test(json, enforces_limits)
{
    pd_json_limits_t lim = pd_json_limits_default;
    lim.max_depth = 4;
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse("[[[[[1]]]]]", 11, &lim, &doc), PD_ERR_LIMIT);
    cr_assert_eq(pd_json_parse("[[[[1]]]]", 9, &lim, &doc), PD_OK);
    pd_json_doc_destroy(&doc);
    lim = pd_json_limits_default;
    lim.max_values = 3;
    cr_assert_eq(pd_json_parse("[1,2,3]", 7, &lim, &doc), PD_ERR_LIMIT);
    lim = pd_json_limits_default;
    lim.max_str_bytes = 3;
    cr_assert_eq(pd_json_parse("\"abcd\"", 6, &lim, &doc), PD_ERR_LIMIT);
    lim = pd_json_limits_default;
    lim.max_bytes = 4;
    cr_assert_eq(pd_json_parse("[1,2]", 5, &lim, &doc), PD_ERR_LIMIT);
    /* Deep nesting past the default limit fails cleanly, no stack overflow. */
    size_t n = 100000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    cr_assert_eq(pd_json_parse(deep, n, NULL, &doc), PD_ERR_LIMIT);
    free(deep);
}

Test(json, prints_any_bytes_as_a_valid_string)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char in[] = "a\"\\\n\x01\xc3\xa9\xff";
    pd_json_fprint_string(f, in, sizeof(in) - 1);
    fclose(f);
    cr_assert_str_eq(buf, "\"a\\\"\\\\\\n\\u0001\xc3\xa9\xef\xbf\xbd\"");
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse(buf, len, NULL, &doc), PD_OK);
    pd_json_doc_destroy(&doc);
    free(buf);
}

Test(json, random_inputs_never_crash)
{
    static const char alphabet[] = "{}[]\",:\\/ \n0123456789-+.eEtrufalsn\xc3\xa9\xff\x01u";
    uint64_t s = 1;
    char buf[64];
    int n_ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (s >> 33) % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = alphabet[(s >> 33) % (sizeof(alphabet) - 1)];
        }
        pd_json_doc_t *doc = NULL;
        pd_status_t st = pd_json_parse(buf, n, NULL, &doc);
        if (st == PD_OK) {
            n_ok++;
            cr_assert_not_null(doc);
            pd_json_doc_destroy(&doc);
        } else {
            cr_assert(st == PD_ERR_FORMAT || st == PD_ERR_LIMIT, "status %d", st);
            cr_assert_null(doc);
        }
    }
    cr_assert_gt(n_ok, 0);
}
