#include "pd/loader.h"
#include "pd/model.h"
#include "pd/presets.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tmp_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "/tmp/pd_test_load_%d_%s", (int)getpid(), name);
}

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

static unsigned char *read_file(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    buf[len] = 0;
    *len_p = (size_t)len;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A tiny preset model with random weights. */
static pd_model_t *tiny_model(uint64_t seed)
{
    pd_model_config_t c;
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, seed);
    return m;
}

static size_t n_weight_floats(const pd_model_config_t *c)
{
    return (size_t)pd_model_n_params(c);
}

/* Compare every tensor of two models with the same config exactly, as f32 values. */
static void assert_same_weights(const pd_model_t *a, const pd_model_t *b)
{
    const pd_model_config_t *c = &a->config;
    size_t d = c->dim, L = c->n_layers;
    pd_model_t *fa = NULL, *fb = NULL;
    cr_assert_eq(pd_model_convert(a, PD_DTYPE_F32, &fa), PD_OK);
    cr_assert_eq(pd_model_convert(b, PD_DTYPE_F32, &fb), PD_OK);
    for (uint32_t i = 0; i < PD_MODEL_N_MATS; i++) {
        const pd_weight_t *x = pd_model_mat(&fa->w, i), *y = pd_model_mat(&fb->w, i);
        size_t n = (size_t)x->n_mats * x->rows * x->cols;
        cr_assert(memcmp(x->data, y->data, n * sizeof(float)) == 0, "matrix %u differs", i);
    }
    cr_assert(memcmp(a->w.attn_norm, b->w.attn_norm, L * d * 4) == 0, "attn_norm differs");
    cr_assert(memcmp(a->w.ffn_norm, b->w.ffn_norm, L * d * 4) == 0, "ffn_norm differs");
    cr_assert(memcmp(a->w.final_norm, b->w.final_norm, d * 4) == 0, "final_norm differs");
    pd_model_destroy(&fa);
    pd_model_destroy(&fb);
}

/* Round every weight through dtype so that it is exactly representable. */
static void quantize(pd_model_t *m, pd_dtype_t dtype)
{
    float *w = m->storage;
    size_t n = m->storage_bytes / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        if (dtype == PD_DTYPE_F16)
            w[i] = pd_f16_to_f32(pd_f32_to_f16(w[i]));
        else if (dtype == PD_DTYPE_BF16)
            w[i] = pd_bf16_to_f32(pd_f32_to_bf16(w[i]));
    }
}

Test(load, half_conversions_are_exact_and_round_to_nearest_even)
{
    const float exact[] = {0.0f,
                           -0.0f,
                           1.0f,
                           -2.5f,
                           65504.0f,
                           6.103515625e-05f,
                           5.9604644775390625e-08f /* smallest subnormal */,
                           0.333251953125f};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        float back = pd_f16_to_f32(pd_f32_to_f16(exact[i]));
        cr_assert(memcmp(&back, &exact[i], 4) == 0, "f16 %g -> %g", exact[i], back);
    }
    cr_assert_eq(pd_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(pd_f32_to_f16(65520.0f), 0x7c00);           /* overflow to infinity */
    cr_assert_eq(pd_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie, to even */
    cr_assert_eq(pd_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie, to even (up) */
    cr_assert(isnan(pd_f16_to_f32(pd_f32_to_f16(NAN))));
    cr_assert(isinf(pd_f16_to_f32(0x7c00)));
    cr_assert_eq(pd_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(pd_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); /* tie, to even */
    cr_assert_float_eq(pd_bf16_to_f32(0xc040), -3.0f, 0.0f);
    cr_assert(isnan(pd_bf16_to_f32(pd_f32_to_bf16(NAN))));
    pd_dtype_t dt;
    cr_assert_eq(pd_dtype_parse("BF16", &dt), PD_OK);
    cr_assert_eq(dt, PD_DTYPE_BF16);
    cr_assert_eq(pd_dtype_parse("f8", &dt), PD_ERR_INVALID_PARAM);
}

static void round_trip(pd_dtype_t dtype, const char *name)
{
    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), name);
    pd_model_t *m = tiny_model(7);
    if (dtype == PD_DTYPE_I8) {
        /* an int8 model is written as it is: its rows and scales */
        pd_model_t *q = NULL;
        cr_assert_eq(pd_model_convert(m, PD_DTYPE_I8, &q), PD_OK);
        pd_model_destroy(&m);
        m = q;
    }
    snprintf(m->config.model_id, sizeof(m->config.model_id), "rt-%s", name);
    quantize(m, dtype);
    cr_assert_eq(pd_model_save_hf(m, dir, dtype, NULL, NULL), PD_OK);
    pd_model_t *back = NULL;
    cr_assert_eq(pd_model_load(dir, &back), PD_OK);
    const pd_model_config_t *a = &m->config, *b = &back->config;
    cr_assert_eq(a->dim, b->dim);
    cr_assert_eq(a->hidden_dim, b->hidden_dim);
    cr_assert_eq(a->n_layers, b->n_layers);
    cr_assert_eq(a->n_heads, b->n_heads);
    cr_assert_eq(a->n_kv_heads, b->n_kv_heads);
    cr_assert_eq(a->head_dim, b->head_dim);
    cr_assert_eq(a->vocab_size, b->vocab_size);
    cr_assert_eq(a->max_seq_len, b->max_seq_len);
    cr_assert_eq(a->rms_eps, b->rms_eps);
    cr_assert_eq(a->rope_theta, b->rope_theta);
    cr_assert_eq(b->rope_style, PD_ROPE_HALF);
    cr_assert_eq(a->tie_embeddings, b->tie_embeddings);
    cr_assert_str_eq(b->model_id, a->model_id);
    assert_same_weights(m, back);
    cr_assert_eq(pd_model_dtype(back), (int)dtype, "the weights stay in the file's dtype");
    /* The file holds 2 bytes a weight for the half types. */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    size_t n = n_weight_floats(a);
    size_t want = dtype == PD_DTYPE_I8 ? n : n * pd_dtype_size(dtype);
    cr_assert_gt((size_t)st.st_size, want);
    cr_assert_lt((size_t)st.st_size, want + (dtype == PD_DTYPE_I8 ? 16384 : 8192));
    cr_assert_eq((size_t)st.st_size - want < 16384, 1);
    pd_model_config_t only;
    cr_assert_eq(pd_model_config_load(dir, &only), PD_OK);
    cr_assert_eq(only.n_layers, a->n_layers);
    /* A file of the directory stands for the directory. */
    pd_model_t *by_file = NULL;
    cr_assert_eq(pd_model_load(path, &by_file), PD_OK);
    assert_same_weights(m, by_file);
    pd_model_destroy(&by_file);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cr_assert_eq(pd_model_config_load(path, &only), PD_OK);
    cr_assert_str_eq(only.model_id, a->model_id);
    pd_model_destroy(&m);
    pd_model_destroy(&back);
    cr_assert_null(back);
    rm_rf(dir);
}

Test(load, safetensors_round_trip_f32)
{
    round_trip(PD_DTYPE_F32, "f32");
}

Test(load, safetensors_round_trip_f16)
{
    round_trip(PD_DTYPE_F16, "f16");
}

Test(load, safetensors_round_trip_int8)
{
    round_trip(PD_DTYPE_I8, "i8");
}

Test(load, safetensors_round_trip_bf16)
{
    round_trip(PD_DTYPE_BF16, "bf16");
}

Test(load, tied_embeddings_need_no_lm_head)
{
    char dir[PATH_MAX];
    tmp_dir(dir, sizeof(dir), "tied");
    pd_model_config_t c;
    pd_model_t *m = NULL, *back = NULL;
    cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
    c.tie_embeddings = true;
    cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
    pd_model_init_random(m, 3);
    cr_assert_eq(pd_model_save_hf(m, dir, PD_DTYPE_F32, NULL, NULL), PD_OK);
    cr_assert_eq(pd_model_load(dir, &back), PD_OK);
    cr_assert(back->config.tie_embeddings);
    cr_assert_eq(back->w.lm_head.data, back->w.tok_embed.data);
    assert_same_weights(m, back);
    pd_model_destroy(&m);
    pd_model_destroy(&back);
    rm_rf(dir);
}

/* Write a tiny llama2.c checkpoint whose every float is its own index, so that each
 * tensor's place in the file can be checked. */
static void write_llama2c(const char *path, int32_t vocab_field, size_t drop_bytes,
                          size_t *n_floats_p)
{
    const int32_t dim = 8, hid = 16, L = 2, nh = 2, nkv = 1, seq = 16;
    int32_t V = vocab_field < 0 ? -vocab_field : vocab_field;
    int32_t hd = dim / nh, kv = nkv * hd;
    size_t n = (size_t)V * dim +
               (size_t)L * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hid * dim) + dim +
               (size_t)seq * hd + (vocab_field < 0 ? (size_t)V * dim : 0);
    int32_t hdr[7] = {dim, hid, L, nh, nkv, vocab_field, seq};
    size_t bytes = sizeof(hdr) + n * 4;
    unsigned char *buf = malloc(bytes);
    memcpy(buf, hdr, sizeof(hdr));
    float *f = (float *)(buf + sizeof(hdr));
    for (size_t i = 0; i < n; i++)
        f[i] = (float)i;
    write_file(path, buf, bytes - drop_bytes);
    free(buf);
    if (n_floats_p != NULL)
        *n_floats_p = n;
}

Test(load, llama2c_checkpoint_places_every_tensor)
{
    char path[PATH_MAX + 64];
    tmp_dir(path, sizeof(path), "l2c.bin");
    write_llama2c(path, -300, 0, NULL);
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_load(path, &m), PD_OK);
    const pd_model_config_t *c = &m->config;
    cr_assert_eq(c->dim, 8);
    cr_assert_eq(c->hidden_dim, 16);
    cr_assert_eq(c->n_layers, 2);
    cr_assert_eq(c->n_heads, 2);
    cr_assert_eq(c->n_kv_heads, 1);
    cr_assert_eq(c->head_dim, 4);
    cr_assert_eq(c->vocab_size, 300);
    cr_assert_eq(c->max_seq_len, 16);
    cr_assert_eq(c->rope_style, PD_ROPE_PAIR);
    cr_assert_not(c->tie_embeddings);
    char want_id[64];
    snprintf(want_id, sizeof(want_id), "pd_test_load_%d_l2c", (int)getpid());
    cr_assert_str_eq(c->model_id, want_id);
    /* Offsets in floats of each tensor in the file. */
    size_t o = 0, V = 300, d = 8, L = 2, h = 16, kv = 4;
    cr_assert_eq(pd_weight_f32(&m->w.tok_embed)[5], (float)(o + 5));
    o += V * d;
    cr_assert_eq(m->w.attn_norm[9], (float)(o + 9));
    o += L * d;
    cr_assert_eq(pd_weight_f32(&m->w.wq)[70], (float)(o + 70));
    o += L * d * d;
    cr_assert_eq(pd_weight_f32(&m->w.wk)[33], (float)(o + 33));
    o += L * kv * d;
    cr_assert_eq(pd_weight_f32(&m->w.wv)[1], (float)(o + 1));
    o += L * kv * d;
    cr_assert_eq(pd_weight_f32(&m->w.wo)[127], (float)(o + 127));
    o += L * d * d;
    cr_assert_eq(m->w.ffn_norm[0], (float)o);
    o += L * d;
    cr_assert_eq(pd_weight_f32(&m->w.w_gate)[200], (float)(o + 200)); /* w1 */
    o += L * h * d;
    cr_assert_eq(pd_weight_f32(&m->w.w_down)[3], (float)(o + 3)); /* w2 */
    o += L * d * h;
    cr_assert_eq(pd_weight_f32(&m->w.w_up)[255], (float)(o + 255)); /* w3 */
    o += L * h * d;
    cr_assert_eq(m->w.final_norm[7], (float)(o + 7));
    o += d + 16 * 4; /* rms_final, freq_cis_real + freq_cis_imag */
    cr_assert_eq(pd_weight_f32(&m->w.lm_head)[0], (float)o);
    cr_assert_eq(pd_weight_f32(&m->w.lm_head)[V * d - 1], (float)(o + V * d - 1));
    pd_model_destroy(&m);

    /* Positive vocab_size: the classifier is the embedding. */
    write_llama2c(path, 300, 0, NULL);
    cr_assert_eq(pd_model_load(path, &m), PD_OK);
    cr_assert(m->config.tie_embeddings);
    cr_assert_eq(pd_weight_f32(&m->w.lm_head)[17], 17.0f);
    pd_model_config_t only;
    cr_assert_eq(pd_model_config_load(path, &only), PD_OK);
    cr_assert_eq(only.vocab_size, 300);
    pd_model_destroy(&m);
    unlink(path);
}

Test(load, llama2c_rejects_bad_files)
{
    char path[PATH_MAX + 64];
    tmp_dir(path, sizeof(path), "bad.bin");
    pd_model_t *m = NULL;
    write_llama2c(path, 300, 4, NULL);
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_FORMAT);
    write_file(path, "abc", 3);
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_FORMAT);
    int32_t hdr[7] = {8, 16, 2, 3, 1, 300, 16}; /* dim not a multiple of n_heads */
    write_file(path, hdr, sizeof(hdr));
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_FORMAT);
    int32_t neg[7] = {8, 16, -2, 2, 1, 300, 16};
    write_file(path, neg, sizeof(neg));
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_FORMAT);
    uint32_t v1[8] = {0x616b3432u, 1, 8, 16, 2, 2, 1, 300};
    write_file(path, v1, sizeof(v1));
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_UNSUPPORTED);
    const char text[] = "{\"hidden_size\": 8, \"this is\": \"not a checkpoint\"}";
    write_file(path, text, sizeof(text));
    cr_assert_eq(pd_model_load(path, &m), PD_ERR_FORMAT);
    cr_assert_null(m);
    cr_assert_eq(pd_model_load("/nonexistent/model.bin", &m), PD_ERR_NOT_FOUND);
    unlink(path);
}

/* A saved tiny model in a fresh directory, for the corruption tests. */
static void saved_tiny(char *dir, size_t cap, const char *name)
{
    tmp_dir(dir, cap, name);
    pd_model_t *m = tiny_model(1);
    cr_assert_eq(pd_model_save_hf(m, dir, PD_DTYPE_F32, NULL, NULL), PD_OK);
    pd_model_destroy(&m);
}

/* Replace the first `from` in the safetensors header with `to` and rewrite the file
 * with the new header length. */
static void edit_header(const char *dir, const char *from, const char *to)
{
    char path[PATH_MAX + 64];
    size_t len;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    unsigned char *buf = read_file(path, &len);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    char *hdr = strndup((char *)buf + 8, hlen);
    char *at = strstr(hdr, from);
    cr_assert_not_null(at, "'%s' not in the header", from);
    size_t nl = hlen - strlen(from) + strlen(to);
    unsigned char *out = malloc(8 + nl + (len - 8 - hlen));
    uint64_t nl64 = nl;
    memcpy(out, &nl64, 8);
    size_t pre = (size_t)(at - hdr);
    memcpy(out + 8, hdr, pre);
    memcpy(out + 8 + pre, to, strlen(to));
    memcpy(out + 8 + pre + strlen(to), at + strlen(from), hlen - pre - strlen(from));
    memcpy(out + 8 + nl, buf + 8 + hlen, len - 8 - hlen);
    write_file(path, out, 8 + nl + (len - 8 - hlen));
    free(out);
    free(hdr);
    free(buf);
}

static void expect_load(const char *dir, pd_status_t want)
{
    pd_model_t *m = NULL;
    cr_assert_eq(pd_model_load(dir, &m), want, "%s", dir);
    if (want == PD_OK) {
        cr_assert_not_null(m);
        pd_model_destroy(&m);
    }
    cr_assert_null(m);
}

Test(load, rejects_truncated_and_corrupt_safetensors)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    size_t len;
    saved_tiny(dir, sizeof(dir), "trunc");
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    unsigned char *buf = read_file(path, &len);

    write_file(path, buf, len - 100); /* data cut short: last tensor out of range */
    expect_load(dir, PD_ERR_FORMAT);
    write_file(path, buf, 200); /* cut inside the header: length beyond the file */
    expect_load(dir, PD_ERR_FORMAT);
    write_file(path, buf, 5);
    expect_load(dir, PD_ERR_FORMAT);
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    write_file(path, huge, sizeof(huge));
    expect_load(dir, PD_ERR_FORMAT);
    /* Garbage in the header JSON. */
    unsigned char *bad = malloc(len);
    memcpy(bad, buf, len);
    bad[8] = '#'; /* not JSON at all */
    write_file(path, bad, len);
    expect_load(dir, PD_ERR_FORMAT);
    free(bad);
    write_file(path, buf, len);
    expect_load(dir, PD_OK); /* the intact file still loads */
    free(buf);
    rm_rf(dir);
}

Test(load, rejects_bad_tensor_entries)
{
    char dir[PATH_MAX];
    saved_tiny(dir, sizeof(dir), "entries");
    edit_header(dir, "model.norm.weight", "model.nope.weight");
    expect_load(dir, PD_ERR_FORMAT); /* missing tensor */
    rm_rf(dir);

    saved_tiny(dir, sizeof(dir), "shape");
    edit_header(dir, "\"shape\":[64]", "\"shape\":[8,8]");
    expect_load(dir, PD_ERR_FORMAT); /* wrong shape for a norm */
    rm_rf(dir);

    saved_tiny(dir, sizeof(dir), "offsets");
    edit_header(dir, "\"data_offsets\":[0,", "\"data_offsets\":[99999999,");
    expect_load(dir, PD_ERR_FORMAT); /* begin > end */
    rm_rf(dir);

    saved_tiny(dir, sizeof(dir), "dtype");
    edit_header(dir, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
    expect_load(dir, PD_ERR_UNSUPPORTED); /* a needed tensor in a dtype we cannot read */
    rm_rf(dir);

    saved_tiny(dir, sizeof(dir), "dtype2");
    edit_header(dir, "\"dtype\":\"F32\"", "\"dtype\":\"Q4\"");
    expect_load(dir, PD_ERR_FORMAT);
    rm_rf(dir);

    saved_tiny(dir, sizeof(dir), "extra");
    edit_header(dir, "{\"__metadata__\"",
                "{\"rotary_emb.inv_freq\":{\"dtype\":\"F32\",\"shape\":[0],"
                "\"data_offsets\":[0,0]},\"__metadata__\"");
    expect_load(dir, PD_OK); /* unused tensors are fine */
    rm_rf(dir);

    /* A layer tensor the engine does not compute (Qwen2-style biases) is refused. */
    saved_tiny(dir, sizeof(dir), "bias");
    edit_header(dir, "{\"__metadata__\"",
                "{\"model.layers.0.self_attn.q_proj.bias\":{\"dtype\":\"F32\",\"shape\":[0],"
                "\"data_offsets\":[0,0]},\"__metadata__\"");
    expect_load(dir, PD_ERR_UNSUPPORTED);
    rm_rf(dir);
    saved_tiny(dir, sizeof(dir), "invfreq");
    edit_header(dir, "{\"__metadata__\"",
                "{\"model.layers.1.self_attn.rotary_emb.inv_freq\":{\"dtype\":\"F32\","
                "\"shape\":[0],\"data_offsets\":[0,0]},\"__metadata__\"");
    expect_load(dir, PD_OK);
    rm_rf(dir);
}

static void write_config(const char *dir, const char *json)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    write_file(path, json, strlen(json));
}

Test(load, rejects_bad_config_fields)
{
    char dir[PATH_MAX];
    saved_tiny(dir, sizeof(dir), "config");
    const char *tail = "\"intermediate_size\": 176, \"num_hidden_layers\": 2, "
                       "\"num_key_value_heads\": 2, \"vocab_size\": 259, "
                       "\"max_position_embeddings\": 256}";
    char json[1024];
    struct {
        const char *head;
        pd_status_t want;
    } cases[] = {
        {"{\"num_attention_heads\": 4, ", PD_ERR_FORMAT},                       /* no hidden_size */
        {"{\"hidden_size\": 0, \"num_attention_heads\": 4, ", PD_ERR_FORMAT},   /* zero */
        {"{\"hidden_size\": -64, \"num_attention_heads\": 4, ", PD_ERR_FORMAT}, /* negative */
        {"{\"hidden_size\": \"64\", \"num_attention_heads\": 4, ", PD_ERR_FORMAT},
        {"{\"hidden_size\": 64.5, \"num_attention_heads\": 4, ", PD_ERR_FORMAT},
        {"{\"hidden_size\": 99999999999, \"num_attention_heads\": 4, ", PD_ERR_FORMAT},
        {"{\"hidden_size\": 64, \"num_attention_heads\": 3, ", PD_ERR_FORMAT}, /* 64 % 3 */
        {"{\"hidden_size\": 64, \"num_attention_heads\": 4, \"rms_norm_eps\": -1, ", PD_ERR_FORMAT},
        {"{\"hidden_size\": 64, \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": "
         "\"linear\"}, ",
         PD_ERR_UNSUPPORTED},
        {"{\"hidden_size\": 64, \"num_attention_heads\": 4, \"head_dim\": 16, ", PD_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json), "%s%s", cases[i].head, tail);
        write_config(dir, json);
        expect_load(dir, cases[i].want);
    }
    /* A sliding window shorter than the context caps the context (Mistral). */
    snprintf(json, sizeof(json),
             "{\"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"sliding_window\": 100, %s",
             tail);
    write_config(dir, json);
    pd_model_config_t cfg;
    cr_assert_eq(pd_model_config_load(dir, &cfg), PD_OK);
    cr_assert_eq(cfg.max_seq_len, 100);
    snprintf(json, sizeof(json),
             "{\"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"sliding_window\": 100, \"use_sliding_window\": false, %s",
             tail);
    write_config(dir, json);
    cr_assert_eq(pd_model_config_load(dir, &cfg), PD_OK);
    cr_assert_eq(cfg.max_seq_len, 256);
    write_config(dir, "{\"hidden_size\": 64,");
    expect_load(dir, PD_ERR_FORMAT);
    write_config(dir, "[1, 2]");
    expect_load(dir, PD_ERR_FORMAT);
    /* num_key_value_heads must divide num_attention_heads. */
    write_config(dir, "{\"hidden_size\": 64, \"num_attention_heads\": 4, "
                      "\"intermediate_size\": 176, \"num_hidden_layers\": 2, "
                      "\"num_key_value_heads\": 3, \"vocab_size\": 259, "
                      "\"max_position_embeddings\": 256}");
    expect_load(dir, PD_ERR_FORMAT);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    unlink(path);
    expect_load(dir, PD_ERR_NOT_FOUND);
    rm_rf(dir);
}

/* A config.json of the tiny shape with extra fields. */
static void write_tiny_config(const char *dir, const char *extra)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"hidden_size\": 64, \"num_attention_heads\": 4, \"intermediate_size\": 176, "
             "\"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"vocab_size\": 259, "
             "\"max_position_embeddings\": 256%s%s}",
             extra[0] ? ", " : "", extra);
    write_config(dir, json);
}

static void expect_config(const char *dir, const char *extra, pd_status_t want,
                          pd_model_config_t *c_p)
{
    write_tiny_config(dir, extra);
    pd_model_config_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(pd_model_config_load(dir, &c), want, "config with %s", extra);
    if (c_p != NULL)
        *c_p = c;
}

Test(load, config_generation_settings_variants_and_refusals)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    saved_tiny(dir, sizeof(dir), "cfgvar");
    pd_model_config_t c;
    /* eos_token_id: an int, a list; bos_token_id */
    expect_config(dir, "\"eos_token_id\": 2, \"bos_token_id\": 1", PD_OK, &c);
    cr_assert_eq(c.n_eos, 1);
    cr_assert_eq(c.eos_ids[0], 2);
    cr_assert(c.has_bos);
    cr_assert_eq(c.bos_id, 1);
    cr_assert(pd_model_is_eos(&c, 2));
    cr_assert_not(pd_model_is_eos(&c, 1));
    expect_config(dir, "\"eos_token_id\": [0, 7, 258], \"bos_token_id\": null", PD_OK, &c);
    cr_assert_eq(c.n_eos, 3);
    cr_assert(pd_model_is_eos(&c, 0) && pd_model_is_eos(&c, 7) && pd_model_is_eos(&c, 258));
    cr_assert_not(c.has_bos);
    expect_config(dir, "\"eos_token_id\": [1, 259]", PD_ERR_FORMAT, NULL);
    expect_config(dir, "\"eos_token_id\": \"</s>\"", PD_ERR_FORMAT, NULL);
    expect_config(dir, "\"eos_token_id\": [1, 2, 3, 4, 5, 6, 7, 8, 9]", PD_ERR_LIMIT, NULL);
    /* generation_config.json adds its eos ids and gives the sampling defaults */
    snprintf(path, sizeof(path), "%s/generation_config.json", dir);
    const char *gen = "{\"bos_token_id\": 5, \"eos_token_id\": [2, 9], \"do_sample\": true, "
                      "\"temperature\": 0.6, \"top_p\": 0.9, \"top_k\": 20, "
                      "\"transformers_version\": \"4.51.0\"}";
    write_file(path, gen, strlen(gen));
    expect_config(dir, "\"eos_token_id\": 2", PD_OK, &c);
    cr_assert_eq(c.n_eos, 2);
    cr_assert(pd_model_is_eos(&c, 2) && pd_model_is_eos(&c, 9));
    cr_assert_eq(c.bos_id, 5);
    cr_assert_eq(c.gen_given, PD_GEN_HAS_TEMPERATURE | PD_GEN_HAS_TOP_P | PD_GEN_HAS_TOP_K);
    cr_assert_float_eq(c.gen_temperature, 0.6f, 1e-6);
    cr_assert_float_eq(c.gen_top_p, 0.9f, 1e-6);
    cr_assert_eq(c.gen_top_k, 20);
    gen = "{\"do_sample\": false, \"top_p\": 2}";
    write_file(path, gen, strlen(gen));
    expect_config(dir, "", PD_ERR_FORMAT, NULL);
    write_file(path, "{\"do_sample\": false", 19);
    expect_config(dir, "", PD_ERR_FORMAT, NULL);
    unlink(path);
    /* variants */
    expect_config(dir, "\"model_type\": \"qwen2\"", PD_OK, &c);
    cr_assert_eq(c.arch, PD_ARCH_QWEN2);
    expect_config(dir, "\"model_type\": \"qwen3\", \"attention_bias\": false, \"head_dim\": 16",
                  PD_OK, &c);
    cr_assert_eq(c.arch, PD_ARCH_QWEN3);
    expect_config(dir, "\"model_type\": \"mistral\"", PD_OK, &c);
    cr_assert_eq(c.arch, PD_ARCH_LLAMA);
    expect_config(dir, "\"model_type\": \"gemma2\"", PD_ERR_UNSUPPORTED, NULL);
    expect_config(dir, "\"model_type\": \"qwen3\", \"attention_bias\": true", PD_ERR_UNSUPPORTED,
                  NULL);
    expect_config(dir, "\"model_type\": \"llama\", \"attention_bias\": true", PD_ERR_UNSUPPORTED,
                  NULL);
    /* rope_scaling: llama3 computed, others refused by their type */
    expect_config(dir,
                  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, "
                  "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                  "\"original_max_position_embeddings\": 8192}",
                  PD_OK, &c);
    cr_assert_float_eq(c.rope_scaling.factor, 32.0f, 0);
    cr_assert_eq(c.rope_scaling.original_max_position, 8192);
    expect_config(dir, "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
                  PD_ERR_UNSUPPORTED, NULL);
    expect_config(dir,
                  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                  "\"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
                  "\"original_max_position_embeddings\": 8192}",
                  PD_ERR_FORMAT, NULL);
    expect_config(dir,
                  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                  "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                  "\"original_max_position_embeddings\": 8192, \"beta\": 1}",
                  PD_ERR_UNSUPPORTED, NULL);
    /* a field pdkv does not know is refused; known metadata is not */
    expect_config(dir, "\"quantization_config\": {\"bits\": 4}", PD_ERR_UNSUPPORTED, NULL);
    expect_config(dir, "\"num_experts\": 8", PD_ERR_UNSUPPORTED, NULL);
    expect_config(dir, "\"rope_interleaved\": true", PD_ERR_UNSUPPORTED, NULL);
    /* SmolLM2's config carries these two */
    expect_config(dir, "\"rope_interleaved\": false, \"is_llama_config\": true", PD_OK, NULL);
    expect_config(dir,
                  "\"architectures\": [\"LlamaForCausalLM\"], \"torch_dtype\": \"bfloat16\", "
                  "\"transformers_version\": \"4.45.0\", \"use_cache\": true, "
                  "\"initializer_range\": 0.02, \"pretraining_tp\": 1, "
                  "\"attention_dropout\": 0.0, \"pad_token_id\": null",
                  PD_OK, NULL);
    rm_rf(dir);
}

/* The variants' tensors survive a save and a load; the CUDA backend refuses the variants
 * it does not compute, by name, before touching a device. */
Test(load, variants_round_trip_and_cuda_refuses_them)
{
    for (int arch = PD_ARCH_QWEN2; arch <= PD_ARCH_QWEN3; arch++) {
        pd_model_config_t c;
        cr_assert_eq(pd_model_preset("tiny", &c), PD_OK);
        c.arch = (pd_arch_t)arch;
        c.n_eos = 2;
        c.eos_ids[0] = 2;
        c.eos_ids[1] = 7;
        c.rope_scaling = (pd_rope_scaling_t){8.0f, 1.0f, 4.0f, 64};
        pd_model_t *m = NULL, *back = NULL;
        cr_assert_eq(pd_model_alloc(&c, &m), PD_OK);
        pd_model_init_random(m, 5);
        char dir[PATH_MAX];
        tmp_dir(dir, sizeof(dir), pd_arch_name(c.arch));
        cr_assert_eq(pd_model_save_hf(m, dir, PD_DTYPE_F32, NULL, NULL), PD_OK);
        cr_assert_eq(pd_model_load(dir, &back), PD_OK);
        cr_assert_eq(back->config.arch, c.arch);
        cr_assert_eq(back->config.n_eos, 2);
        cr_assert(pd_model_is_eos(&back->config, 7));
        cr_assert_float_eq(back->config.rope_scaling.factor, 8.0f, 0);
        size_t qb = (size_t)c.n_layers * c.n_heads * c.head_dim * sizeof(float);
        size_t hb = (size_t)c.n_layers * c.head_dim * sizeof(float);
        if (arch == PD_ARCH_QWEN2)
            cr_assert_eq(memcmp(m->w.bq, back->w.bq, qb), 0);
        else
            cr_assert_eq(memcmp(m->w.k_norm, back->w.k_norm, hb), 0);
        assert_same_weights(m, back);
        pd_engine_t *e = NULL;
        cr_assert_eq(pd_engine_create(back, PD_BACKEND_CUDA, 1, &e), PD_ERR_UNSUPPORTED);
        cr_assert_null(e);
        pd_model_destroy(&m);
        pd_model_destroy(&back);
        rm_rf(dir);
    }
}
