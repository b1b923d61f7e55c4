/* llama2.c checkpoints (legacy version-0 export, run.c's format):
 *
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   f32 token_embedding (vocab, dim)
 *   f32 rms_att (layer, dim), wq (layer, dim, dim), wk (layer, kv_dim, dim),
 *       wv (layer, kv_dim, dim), wo (layer, dim, dim), rms_ffn (layer, dim),
 *       w1 (layer, hidden, dim), w2 (layer, dim, hidden), w3 (layer, hidden, dim)
 *   f32 rms_final (dim), freq_cis_real (seq_len, head/2), freq_cis_imag (seq_len, head/2)
 *   f32 wcls (vocab, dim) only when vocab_size < 0 (untied)
 *
 * Matrices are row-major (out, in) like pdkv's; w1 is the gate, w3 the up projection. */
#include "load_int.h"

#include "pd/log.h"

#include <string.h>

#define PD_L2C_HEADER_BYTES 28u
#define PD_L2C_MAGIC        0x616b3432u /* "ak42": the version 1+ exports */

pd_status_t pd_load_llama2c_config(const char *path, const pd_load_map_t *map,
                                   pd_model_config_t *config_p, bool *shared_p)
{
    int32_t h[7];
    if (map->size < PD_L2C_HEADER_BYTES) {
        pd_log_error("%s: %zu bytes, too short for a llama2.c checkpoint", path, map->size);
        return PD_ERR_FORMAT;
    }
    if (pd_load_le32(map->data) == PD_L2C_MAGIC) {
        pd_log_error("%s: a llama2.c version %u export; only the legacy (version 0) format "
                     "loads (export with --version 0)",
                     path, pd_load_le32(map->data + 4));
        return PD_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)pd_load_le32(map->data + 4 * i);
    static const char *const names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t max[7] = {1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 22, 1 << 22};
    for (int i = 0; i < 7; i++) {
        /* INT32_MIN has no negation: refused below before any arithmetic on it. */
        int32_t v = h[i] == INT32_MIN ? 0 : i == 5 && h[i] < 0 ? -h[i] : h[i];
        if (h[i] == INT32_MIN || v <= 0 || v > max[i]) {
            pd_log_error("%s: header field %s is %d, outside 1..%d; not a llama2.c checkpoint",
                         path, names[i], h[i], max[i]);
            return PD_ERR_FORMAT;
        }
    }
    pd_model_config_t c;
    memset(&c, 0, sizeof(c));
    c.dim = (uint32_t)h[0];
    c.hidden_dim = (uint32_t)h[1];
    c.n_layers = (uint32_t)h[2];
    c.n_heads = (uint32_t)h[3];
    c.n_kv_heads = (uint32_t)h[4];
    c.vocab_size = (uint32_t)(h[5] < 0 ? -h[5] : h[5]);
    c.max_seq_len = (uint32_t)h[6];
    c.tie_embeddings = h[5] > 0;
    if (c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 || (c.dim / c.n_heads) % 2 != 0) {
        pd_log_error("%s: dim %u, n_heads %u, n_kv_heads %u do not form whole, even heads", path,
                     c.dim, c.n_heads, c.n_kv_heads);
        return PD_ERR_FORMAT;
    }
    c.head_dim = c.dim / c.n_heads;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.rope_style = PD_ROPE_PAIR;
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t len = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base)
        len = (size_t)(dot - base);
    if (len > sizeof(c.model_id) - 1)
        len = sizeof(c.model_id) - 1;
    memcpy(c.model_id, base, len);
    c.model_id[len] = '\0';
    pd_status_t status = pd_model_config_validate(&c);
    if (status != PD_OK) {
        pd_log_error("%s: config rejected: %s", path, pd_status_str(status));
        return status;
    }
    *config_p = c;
    *shared_p = c.tie_embeddings;
    return PD_OK;
}

pd_status_t pd_model_load_llama2c(const char *path, pd_model_t **model_p)
{
    pd_load_map_t map;
    pd_model_config_t c;
    pd_model_t *model = NULL;
    bool shared;
    pd_status_t status;

    if (path == NULL || model_p == NULL)
        return PD_ERR_INVALID_PARAM;
    status = pd_load_map_open(path, &map);
    if (status != PD_OK)
        return status;
    status = pd_load_llama2c_config(path, &map, &c, &shared);
    if (status != PD_OK)
        goto out_unmap;

    const uint64_t dim = c.dim, hid = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
    const uint64_t kv_dim = (uint64_t)c.n_kv_heads * c.head_dim;
    const uint64_t freq = (uint64_t)c.max_seq_len * c.head_dim; /* real + imag halves */
    uint64_t n_floats = V * dim + L * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hid * dim) +
                        dim + freq + (shared ? 0 : V * dim);
    uint64_t want = PD_L2C_HEADER_BYTES + n_floats * 4;
    if (map.size < want) {
        pd_log_error("%s: %zu bytes, the header's shapes need %llu; truncated or not a "
                     "llama2.c checkpoint",
                     path, map.size, (unsigned long long)want);
        status = PD_ERR_FORMAT;
        goto out_unmap;
    }
    if (map.size > want)
        pd_log_warn("%s: %llu bytes after the weights ignored", path,
                    (unsigned long long)(map.size - want));

    status = pd_model_alloc(&c, &model);
    if (status != PD_OK) {
        pd_log_error("%s: cannot allocate the model's weights: %s", path, pd_status_str(status));
        goto out_unmap;
    }
    const unsigned char *p = map.data + PD_L2C_HEADER_BYTES;
#define PD_TAKE(dst, count)                                                                        \
    do {                                                                                           \
        memcpy((dst), p, (size_t)(count) * sizeof(float));                                         \
        p += (size_t)(count) * sizeof(float);                                                      \
    } while (0)
    pd_model_weights_t *w = &model->w;
    PD_TAKE(pd_weight_f32(&w->tok_embed), V * dim);
    PD_TAKE(w->attn_norm, L * dim);
    PD_TAKE(pd_weight_f32(&w->wq), L * dim * dim);
    PD_TAKE(pd_weight_f32(&w->wk), L * kv_dim * dim);
    PD_TAKE(pd_weight_f32(&w->wv), L * kv_dim * dim);
    PD_TAKE(pd_weight_f32(&w->wo), L * dim * dim);
    PD_TAKE(w->ffn_norm, L * dim);
    PD_TAKE(pd_weight_f32(&w->w_gate), L * hid * dim);
    PD_TAKE(pd_weight_f32(&w->w_down), L * dim * hid);
    PD_TAKE(pd_weight_f32(&w->w_up), L * hid * dim);
    PD_TAKE(w->final_norm, dim);
    p += freq * sizeof(float);
    if (!shared)
        PD_TAKE(pd_weight_f32(&w->lm_head), V * dim);
#undef PD_TAKE
    *model_p = model;
out_unmap:
    pd_load_map_close(&map);
    return status;
}
