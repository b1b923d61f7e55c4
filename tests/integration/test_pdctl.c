/* The real pdctl binary: help and usage errors, model new, generate (deterministic, and
 * greedy equal to the argmax path computed here through the API), size, and bad inputs
 * that must end in a message and a non-zero exit, never a signal. */
#include "pd/json.h"
#include "pd/model.h"
#include "pd/presets.h"
#include "pd/sample.h"
#include "pdctl_run.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void tmp_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "/tmp/pd_test_pdctl_%d_%s", (int)getpid(), name);
}

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

static void make_tiny(const char *dir, const char *dtype)
{
    const char *args[] = {"model", "new", "--preset", "tiny", "--seed", "1",
                          "-o",    dir,   "--dtype",  dtype,  NULL};
    run_result_t r = run_pdctl(args);
    cr_assert_eq(r.code, 0, "model new failed: %s", r.err);
    run_free(&r);
}

/* Parse pdctl --json output; the caller destroys the document. */
static pd_json_doc_t *parse_json(const char *text)
{
    pd_json_doc_t *doc = NULL;
    cr_assert_eq(pd_json_parse(text, strlen(text), NULL, &doc), PD_OK, "not JSON: %s", text);
    return doc;
}

static size_t json_ids(const pd_json_t *root, const char *key, int32_t *ids, size_t cap)
{
    const pd_json_t *arr = pd_json_object_get(root, key);
    cr_assert_eq(pd_json_type(arr), PD_JSON_ARRAY, "%s is not an array", key);
    size_t n = pd_json_len(arr);
    cr_assert_leq(n, cap);
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        cr_assert(pd_json_u64(pd_json_array_at(arr, i), &u));
        ids[i] = (int32_t)u;
    }
    return n;
}

Test(pdctl, help_and_usage_errors)
{
    const char *help[] = {"--help", NULL};
    run_result_t r = run_pdctl(help);
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "generate"));
    cr_assert_not_null(strstr(r.out, "model"));
    run_free(&r);
    const char *cmds[] = {"generate", "size", "model"};
    for (size_t i = 0; i < 3; i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        r = run_pdctl(args);
        cr_assert_eq(r.code, 0, "%s --help: %d", cmds[i], r.code);
        cr_assert_not_null(strstr(r.out, "usage: pdctl"), "%s --help: %s", cmds[i], r.out);
        run_free(&r);
    }
    const char *none[] = {NULL};
    expect_clean_failure(none, 2, "usage");
    const char *unknown[] = {"frobnicate", NULL};
    expect_clean_failure(unknown, 2, "unknown command");
    const char *bad_opt[] = {"generate", "-m", "x", "-p", "hi", "--bogus", NULL};
    expect_clean_failure(bad_opt, 2, "unknown option --bogus");
    const char *bad_num[] = {"generate", "-m", "x", "-p", "hi", "-n", "ten", NULL};
    expect_clean_failure(bad_num, 2, "--max-tokens: 'ten'");
    const char *both[] = {"generate", "-m", "x", "-p", "hi", "--tokens", "1,2", NULL};
    expect_clean_failure(both, 2, "exactly one");
    const char *size_none[] = {"size", NULL};
    expect_clean_failure(size_none, 2, "usage");
    const char *preset[] = {"model", "new", "--preset", "huge", "-o", "/tmp/x", NULL};
    expect_clean_failure(preset, 2, "huge");
}

Test(pdctl, generate_json_is_deterministic_for_a_seed)
{
    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "det");
    make_tiny(dir, "f32");
    const char *args[] = {
        "generate", "-m",      dir,    "-p",     "Hello", "-n",        "12", "--temperature",
        "0.9",      "--top-p", "0.95", "--seed", "5",     "--threads", "1",  "--json",
        NULL};
    run_result_t a = run_pdctl(args);
    run_result_t b = run_pdctl(args);
    cr_assert_eq(a.code, 0, "%s", a.err);
    cr_assert_eq(b.code, 0, "%s", b.err);
    pd_json_doc_t *da = parse_json(a.out), *db = parse_json(b.out);
    const pd_json_t *ra = pd_json_doc_root(da), *rb = pd_json_doc_root(db);
    int32_t pa[16], ta[16], tb[16];
    size_t np = json_ids(ra, "prompt_tokens", pa, 16);
    int32_t want_prompt[] = {1, 3 + 'H', 3 + 'e', 3 + 'l', 3 + 'l', 3 + 'o'};
    cr_assert_eq(np, 6);
    cr_assert_arr_eq(pa, want_prompt, sizeof(want_prompt));
    size_t na = json_ids(ra, "tokens", ta, 16), nb = json_ids(rb, "tokens", tb, 16);
    cr_assert_eq(na, nb);
    cr_assert_arr_eq(ta, tb, na * sizeof(int32_t));
    cr_assert(na == 12 || ta[na - 1] == 2, "%zu tokens without EOS", na);
    const char *sa, *sb;
    size_t la, lb;
    cr_assert(pd_json_string(pd_json_object_get(ra, "text"), &sa, &la));
    cr_assert(pd_json_string(pd_json_object_get(rb, "text"), &sb, &lb));
    cr_assert_eq(la, lb);
    cr_assert(memcmp(sa, sb, la) == 0);
    const pd_json_t *timings = pd_json_object_get(ra, "timings");
    double ms;
    cr_assert(pd_json_number(pd_json_object_get(timings, "prefill_ms"), &ms));
    cr_assert_geq(ms, 0.0);
    cr_assert(pd_json_number(pd_json_object_get(timings, "decode_tokens_per_s"), &ms));
    pd_json_doc_destroy(&da);
    pd_json_doc_destroy(&db);
    run_free(&a);
    run_free(&b);

    /* Plain output streams the text to stdout. */
    const char *plain[] = {"generate", "-m", dir, "-p", "Hi", "-n", "4", "--threads", "1", NULL};
    run_result_t p = run_pdctl(plain);
    cr_assert_eq(p.code, 0, "%s", p.err);
    cr_assert_not_null(strstr(p.err, "generated"));
    run_free(&p);
    rm_rf(dir);
}

Test(pdctl, greedy_equals_the_argmax_path)
{
    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "greedy");
    make_tiny(dir, "bf16");
    const char *args[] = {
        "generate",      "-m", dir,         "--tokens", "1,10,20,30,40", "-n", "10",
        "--temperature", "0",  "--threads", "1",        "--json",        NULL};
    run_result_t r = run_pdctl(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    pd_json_doc_t *doc = parse_json(r.out);
    int32_t got[16];
    size_t n_got = json_ids(pd_json_doc_root(doc), "tokens", got, 16);

    /* The same computation through the API, one token at a time, argmax by hand. */
    pd_model_t *model = NULL;
    pd_engine_t *engine = NULL;
    cr_assert_eq(pd_model_load(dir, &model), PD_OK);
    cr_assert_eq(pd_engine_create(model, PD_BACKEND_CPU, 1, &engine), PD_OK);
    const pd_model_config_t *c = &model->config;
    pd_kv_layout_t layout = {c->n_layers, c->n_kv_heads, c->head_dim, 16, 2};
    float *kv = calloc(1, pd_kv_pool_bytes(&layout));
    float *logits = malloc(c->vocab_size * sizeof(float));
    uint32_t table[2] = {0, 1};
    int32_t seq[32] = {1, 10, 20, 30, 40};
    uint32_t n_seq = 5, pos = 0;
    int32_t want[16];
    size_t n_want = 0;
    while (n_want < 10) {
        pd_fwd_seq_t s = {seq + pos, n_seq - pos, pos, table, 2, logits};
        cr_assert_eq(pd_engine_forward(engine, kv, &layout, &s, 1, NULL, NULL), PD_OK);
        int32_t best = 0;
        for (uint32_t v = 1; v < c->vocab_size; v++)
            if (logits[v] > logits[best])
                best = (int32_t)v;
        want[n_want++] = best;
        pos = n_seq;
        seq[n_seq++] = best;
        if (best == 2)
            break;
    }
    cr_assert_eq(n_got, n_want);
    cr_assert_arr_eq(got, want, n_want * sizeof(int32_t));
    /* With the 4th token as a stop id, the output ends at that id's first occurrence,
     * finish_reason stop. */
    char stop_arg[16];
    snprintf(stop_arg, sizeof(stop_arg), "%d", want[3]);
    size_t first = 0;
    while (want[first] != want[3])
        first++;
    const char *stop_args[] = {
        "generate", "-m",        dir, "--tokens", "1,10,20,30,40", "-n",     "10", "--temperature",
        "0",        "--threads", "1", "--stop",   stop_arg,        "--json", NULL};
    run_result_t rs = run_pdctl(stop_args);
    cr_assert_eq(rs.code, 0, "%s", rs.err);
    pd_json_doc_t *ds = parse_json(rs.out);
    int32_t got_stop[16];
    size_t n_stop = json_ids(pd_json_doc_root(ds), "tokens", got_stop, 16);
    cr_assert_eq(n_stop, first + 1);
    cr_assert_arr_eq(got_stop, want, n_stop * sizeof(int32_t));
    const char *fin;
    cr_assert(
        pd_json_string(pd_json_object_get(pd_json_doc_root(ds), "finish_reason"), &fin, NULL));
    cr_assert_str_eq(fin, want[first] == 2 ? "eos" : "stop");
    pd_json_doc_destroy(&ds);
    run_free(&rs);
    free(kv);
    free(logits);
    pd_engine_destroy(&engine);
    pd_model_destroy(&model);
    pd_json_doc_destroy(&doc);
    run_free(&r);
    rm_rf(dir);
}

Test(pdctl, size_reports_kv_bytes)
{
    const char *args[] = {"size",      "--preset", "tiny",   "--tokens", "100",
                          "--pool-mb", "1",        "--json", NULL};
    run_result_t r = run_pdctl(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    pd_json_doc_t *doc = parse_json(r.out);
    const pd_json_t *root = pd_json_doc_root(doc);
    uint64_t u;
    /* tiny: 2 layers, 2 KV heads, head_dim 16: 2 x 2 x 2 x 16 x 4 bytes. */
    cr_assert(pd_json_u64(pd_json_object_get(root, "kv_bytes_per_token"), &u));
    cr_assert_eq(u, 512);
    cr_assert(pd_json_u64(pd_json_object_get(root, "kv_bytes_per_block"), &u));
    cr_assert_eq(u, 8192);
    cr_assert(pd_json_u64(pd_json_object_get(root, "blocks"), &u));
    cr_assert_eq(u, 7);
    cr_assert(pd_json_u64(pd_json_object_get(root, "pool_blocks"), &u));
    cr_assert_eq(u, 128);
    cr_assert(pd_json_u64(pd_json_object_get(root, "pool_tokens"), &u));
    cr_assert_eq(u, 2048);
    pd_json_doc_destroy(&doc);
    run_free(&r);

    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "size");
    make_tiny(dir, "f16");
    const char *by_model[] = {"size", "-m", dir, NULL};
    r = run_pdctl(by_model);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "512 bytes"), "%s", r.out);
    run_free(&r);
    const char *info[] = {"model", "info", "-m", dir, "--json", NULL};
    r = run_pdctl(info);
    cr_assert_eq(r.code, 0, "%s", r.err);
    doc = parse_json(r.out);
    root = pd_json_doc_root(doc);
    const char *id;
    cr_assert(pd_json_string(pd_json_object_get(root, "model_id"), &id, NULL));
    cr_assert_str_eq(id, "pdkv-tiny-s1-f16");
    cr_assert(pd_json_u64(pd_json_object_get(root, "n_layers"), &u));
    cr_assert_eq(u, 2);
    pd_model_config_t tiny;
    cr_assert_eq(pd_model_preset("tiny", &tiny), PD_OK);
    cr_assert(pd_json_u64(pd_json_object_get(root, "n_params"), &u));
    cr_assert_eq(u, pd_model_n_params(&tiny));
    pd_json_doc_destroy(&doc);
    run_free(&r);
    rm_rf(dir);
}

static double json_num(const pd_json_t *root, const char *key)
{
    double v;
    cr_assert(pd_json_number(pd_json_object_get(root, key), &v), "%s is not a number", key);
    return v;
}

Test(pdctl, quantize_info_compare_and_generate_int8)
{
    char dir[PATH_MAX], q8[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "qsrc");
    tmp_dir(q8, sizeof(q8), "q8");
    make_tiny(dir, "f32");
    const char *quant[] = {"model", "quantize", "-m", dir, "-o", q8, NULL};
    run_result_t r = run_pdctl(quant);
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_free(&r);
    /* Converting it again is refused, and so is an unknown dtype. */
    const char *again[] = {"model", "quantize", "-m", q8, "-o", dir, "--force", NULL};
    r = run_pdctl(again);
    cr_assert_eq(r.code, 1);
    cr_assert_not_null(strstr(r.err, "already"), "%s", r.err);
    run_free(&r);
    const char *bad[] = {"model", "quantize", "-m", dir, "-o", q8, "--dtype", "int4", NULL};
    r = run_pdctl(bad);
    cr_assert_eq(r.code, 2);
    run_free(&r);

    const char *info[] = {"model", "info", "-m", q8, "--read-gbps", "10", "--json", NULL};
    r = run_pdctl(info);
    cr_assert_eq(r.code, 0, "%s", r.err);
    pd_json_doc_t *doc = parse_json(r.out);
    const pd_json_t *root = pd_json_doc_root(doc);
    const char *s;
    cr_assert(pd_json_string(pd_json_object_get(root, "model_id"), &s, NULL));
    cr_assert_str_eq(s, "pdkv-tiny-s1-int8");
    cr_assert(pd_json_string(pd_json_object_get(root, "weight_dtype"), &s, NULL));
    cr_assert_str_eq(s, "I8");
    pd_model_config_t tiny;
    cr_assert_eq(pd_model_preset("tiny", &tiny), PD_OK);
    uint64_t want = pd_model_config_weight_bytes(&tiny, PD_DTYPE_I8);
    cr_assert_eq((uint64_t)json_num(root, "weight_bytes"), want);
    /* int8: one byte a weight, one f32 scale a row; a quarter of f32 and a bit */
    cr_assert_lt(want, pd_model_config_weight_bytes(&tiny, PD_DTYPE_F32) / 3);
    double dec = json_num(root, "decode_bytes_per_token");
    cr_assert_float_eq(json_num(root, "decode_bound_tok_s_1"), 10e9 / dec, 0.1);
    pd_json_doc_destroy(&doc);
    run_free(&r);

    const char *cmp[] = {"model",     "compare", "-m",       q8,  "--ref",  dir,
                         "--prompts", "2",       "--tokens", "8", "--json", NULL};
    r = run_pdctl(cmp);
    cr_assert_eq(r.code, 0, "%s", r.err);
    doc = parse_json(r.out);
    root = pd_json_doc_root(doc);
    double kl = json_num(root, "kl_mean"), top1 = json_num(root, "top1_agreement");
    cr_assert_gt(kl, 0.0, "int8 changes the distributions a little");
    cr_assert_lt(kl, 0.05);
    cr_assert_geq(top1, 0.75);
    pd_json_doc_destroy(&doc);
    run_free(&r);
    /* A model compared with itself is identical. */
    const char *self[] = {"model",     "compare", "-m",       q8,  "--ref",  q8,
                          "--prompts", "1",       "--tokens", "4", "--json", NULL};
    r = run_pdctl(self);
    cr_assert_eq(r.code, 0, "%s", r.err);
    doc = parse_json(r.out);
    cr_assert_eq(json_num(pd_json_doc_root(doc), "kl_mean"), 0.0);
    cr_assert_eq(json_num(pd_json_doc_root(doc), "top1_agreement"), 1.0);
    pd_json_doc_destroy(&doc);
    run_free(&r);

    /* KV through the wire codecs: the model against itself with exact KV. The first
     * generated position reads exact KV (prefill's own), so KL is 0 there, small after;
     * int8 and fp8 put a quarter of f32's bytes on the wire, plus a scale per head. */
    const char *const codecs[] = {"int8", "fp8"};
    for (int c = 0; c < 2; c++) {
        const char *kvc[] = {"model",     "compare", "-m",       dir, "--kv-codec", codecs[c],
                             "--prompts", "2",       "--tokens", "8", "--json",     NULL};
        r = run_pdctl(kvc);
        cr_assert_eq(r.code, 0, "%s", r.err);
        doc = parse_json(r.out);
        root = pd_json_doc_root(doc);
        cr_assert(pd_json_string(pd_json_object_get(root, "kv_codec"), &s, NULL));
        cr_assert_str_eq(s, codecs[c]);
        kl = json_num(root, "kl_mean");
        cr_assert_gt(kl, 0.0, "%s changes the distributions", codecs[c]);
        cr_assert_lt(kl, 0.01, "%s", codecs[c]);
        cr_assert_geq(json_num(root, "top1_agreement"), 0.75);
        const double raw = json_num(root, "kv_bytes_per_token");
        const double wire = json_num(root, "kv_wire_bytes_per_token");
        /* tiny: 2 (K, V) x kv_heads x head_dim f32 per layer */
        cr_assert_eq(raw, (double)tiny.n_layers * 2 * tiny.n_kv_heads * tiny.head_dim * 4);
        cr_assert_lt(wire, raw / 3.5);
        cr_assert_gt(wire, raw / 4.0);
        pd_json_doc_destroy(&doc);
        run_free(&r);
    }
    const char *badc[] = {"model", "compare", "-m", dir, "--kv-codec", "int4", NULL};
    r = run_pdctl(badc);
    cr_assert_eq(r.code, 2);
    cr_assert_not_null(strstr(r.err, "int8 or fp8"), "%s", r.err);
    run_free(&r);

    const char *gen[] = {"generate", "-m", q8, "-p", "hi", "-n", "4", "--json", NULL};
    r = run_pdctl(gen);
    cr_assert_eq(r.code, 0, "%s", r.err);
    run_free(&r);
    rm_rf(dir);
    rm_rf(q8);
}

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

Test(pdctl, bad_inputs_fail_cleanly)
{
    char dir[PATH_MAX], path[PATH_MAX + 64], cfg[PATH_MAX + 64];
    tmp_dir(dir, sizeof(dir), "bad");
    make_tiny(dir, "f32");
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);

    /* A second model new into the same directory refuses to overwrite. */
    const char *again[] = {"model", "new", "--preset", "tiny", "-o", dir, NULL};
    expect_clean_failure(again, 1, "exists");

    const char *missing[] = {"generate", "-m", "/nonexistent/model", "-p", "hi", NULL};
    expect_clean_failure(missing, 1, "cannot load model");
    const char *range[] = {"generate", "-m", dir, "--tokens", "1,5,259", NULL};
    expect_clean_failure(range, 1, "out of range");
    const char *negative[] = {"generate", "-m", dir, "--tokens", "1,-4", NULL};
    expect_clean_failure(negative, 1, "out of range");
    char long_prompt[400];
    memset(long_prompt, 'a', sizeof(long_prompt) - 1);
    long_prompt[sizeof(long_prompt) - 1] = '\0';
    const char *too_long[] = {"generate", "-m", dir, "-p", long_prompt, NULL};
    expect_clean_failure(too_long, 1, "context");
    const char *bad_tok[] = {"generate", "-m", dir, "-t", cfg, "-p", "hi", NULL};
    expect_clean_failure(bad_tok, 1, "tokenizer");

    /* Corrupt the config, then the weights. */
    char *config = slurp(cfg);
    write_text(cfg, "{\"hidden_size\": 64", 18);
    const char *gen[] = {"generate", "-m", dir, "-p", "hi", NULL};
    expect_clean_failure(gen, 1, "config.json");
    write_text(cfg, config, strlen(config));
    char *zero = strstr(config, "\"num_attention_heads\": 4");
    cr_assert_not_null(zero);
    zero[strlen("\"num_attention_heads\": ")] = '0';
    write_text(cfg, config, strlen(config));
    expect_clean_failure(gen, 1, "num_attention_heads");
    zero[strlen("\"num_attention_heads\": ")] = '4';
    write_text(cfg, config, strlen(config));
    free(config);

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    char *weights = slurp(path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    write_text(path, weights, (size_t)st.st_size / 2);
    expect_clean_failure(gen, 1, "data_offsets");
    write_text(path, weights, 100);
    expect_clean_failure(gen, 1, "header length");
    /* A tensor renamed in place (same header length): missing. */
    char *name = memmem(weights, 4096, "model.norm.weight", 17);
    cr_assert_not_null(name);
    name[16] = 's';
    write_text(path, weights, (size_t)st.st_size);
    expect_clean_failure(gen, 1, "missing");
    name[16] = 't';
    weights[8] = '[';
    write_text(path, weights, (size_t)st.st_size);
    expect_clean_failure(gen, 1, "JSON");
    free(weights);

    /* A llama2.c checkpoint needs a tokenizer for a text prompt. */
    snprintf(path, sizeof(path), "%s/model.bin", dir);
    int32_t hdr[7] = {8, 16, 1, 2, 2, 259, 8};
    write_text(path, (const char *)hdr, sizeof(hdr));
    const char *l2c[] = {"generate", "-m", path, "-p", "hi", NULL};
    expect_clean_failure(l2c, 1, "truncated");
    /* The same header with all its (zero) weights: loads, but text needs -t. */
    size_t n_floats = 259 * 8 + (2 * 8 + 2 * 64 + 2 * 64 + 3 * 128) + 8 + 8 * 4;
    size_t bytes = sizeof(hdr) + n_floats * 4;
    char *full = calloc(1, bytes);
    memcpy(full, hdr, sizeof(hdr));
    write_text(path, full, bytes);
    free(full);
    expect_clean_failure(l2c, 2, "-t TOKENIZER");
    char tok[PATH_MAX + 64];
    snprintf(tok, sizeof(tok), "%s/tokenizer.bin", dir);
    const char *l2c_tok[] = {"generate",      "-m", path,     "-t", tok, "-p", "hi", "-n", "3",
                             "--temperature", "0",  "--json", NULL};
    run_result_t r = run_pdctl(l2c_tok);
    cr_assert_eq(r.code, 0, "%s", r.err);
    /* All-zero weights give all-zero logits: greedy picks the lowest id, 0. */
    cr_assert_not_null(strstr(r.out, "\"tokens\":[0,0,0]"), "%s", r.out);
    run_free(&r);
    rm_rf(dir);
}

Test(pdctl, engine_rejects_bad_ids_and_positions_at_the_api)
{
    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "api");
    make_tiny(dir, "f32");
    pd_model_t *model = NULL;
    pd_engine_t *engine = NULL;
    cr_assert_eq(pd_model_load(dir, &model), PD_OK);
    cr_assert_eq(pd_engine_create(model, PD_BACKEND_CPU, 1, &engine), PD_OK);
    const pd_model_config_t *c = &model->config;
    uint32_t n_blocks = c->max_seq_len / 16 + 1;
    pd_kv_layout_t layout = {c->n_layers, c->n_kv_heads, c->head_dim, 16, n_blocks};
    float *kv = calloc(1, pd_kv_pool_bytes(&layout));
    float *logits = malloc(c->vocab_size * sizeof(float));
    uint32_t *table = malloc(n_blocks * sizeof(uint32_t));
    for (uint32_t i = 0; i < n_blocks; i++)
        table[i] = i;
    int32_t bad[] = {1, (int32_t)c->vocab_size};
    pd_fwd_seq_t s = {bad, 2, 0, table, n_blocks, logits};
    cr_assert_eq(pd_engine_forward(engine, kv, &layout, &s, 1, NULL, NULL), PD_ERR_OUT_OF_RANGE);
    int32_t neg[] = {-1};
    s = (pd_fwd_seq_t){neg, 1, 0, table, n_blocks, logits};
    cr_assert_eq(pd_engine_forward(engine, kv, &layout, &s, 1, NULL, NULL), PD_ERR_OUT_OF_RANGE);
    int32_t one[] = {5};
    s = (pd_fwd_seq_t){one, 1, c->max_seq_len, table, n_blocks, logits};
    cr_assert_eq(pd_engine_forward(engine, kv, &layout, &s, 1, NULL, NULL), PD_ERR_CONTEXT);
    s = (pd_fwd_seq_t){one, 1, c->max_seq_len - 1, table, n_blocks, logits};
    cr_assert_eq(pd_engine_forward(engine, kv, &layout, &s, 1, NULL, NULL), PD_OK);
    free(kv);
    free(logits);
    free(table);
    pd_engine_destroy(&engine);
    pd_model_destroy(&model);
    rm_rf(dir);
}

Test(pdctl, generation_stops_at_eos)
{
    /* A llama2.c model whose every hidden state is all ones (attention and MLP weights
     * zero, embeddings and norms one) and whose classifier favours only id 2: greedy
     * decoding picks EOS at once. */
    char path[PATH_MAX];
    tmp_dir(path, sizeof(path), "eos.bin");
    const size_t dim = 8, hid = 16, V = 259, seq = 8, hd = 4;
    int32_t hdr[7] = {(int32_t)dim, (int32_t)hid, 1, 2, 2, -(int32_t)V, (int32_t)seq};
    size_t n = V * dim + (2 * dim + 2 * dim * dim + 2 * dim * dim + 3 * hid * dim) + dim +
               seq * hd + V * dim;
    float *w = calloc(n, sizeof(float));
    size_t o = 0;
    for (size_t i = 0; i < V * dim; i++)
        w[o++] = 1.0f; /* token embeddings */
    for (size_t i = 0; i < dim; i++)
        w[o++] = 1.0f; /* attention norm */
    o += 2 * dim * dim + 2 * dim * dim;
    for (size_t i = 0; i < dim; i++)
        w[o++] = 1.0f; /* ffn norm */
    o += 3 * hid * dim;
    for (size_t i = 0; i < dim; i++)
        w[o++] = 1.0f; /* final norm */
    o += seq * hd;
    for (size_t i = 0; i < dim; i++)
        w[o + 2 * dim + i] = 1.0f; /* classifier row of id 2 */
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(hdr, sizeof(hdr), 1, f), 1);
    cr_assert_eq(fwrite(w, sizeof(float), n, f), n);
    fclose(f);
    free(w);
    const char *args[] = {"generate",      "-m", path,        "--tokens", "1,5,6",  "-n", "5",
                          "--temperature", "0",  "--threads", "1",        "--json", NULL};
    run_result_t r = run_pdctl(args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "\"tokens\":[2]"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"finish_reason\":\"eos\""), "%s", r.out);
    run_free(&r);
    unlink(path);
}
