/* Model loading entry points, dtype conversions, the HF tensor list and file mapping. */
#include "load_int.h"

#include "pd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t pd_load_f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    return x;
}

static float pd_load_bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof(f));
    return f;
}

float pd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        return pd_load_bits_f32(sign | 0x7f800000u | (mant << 13));
    return pd_load_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t pd_f32_to_f16(float f)
{
    uint32_t x = pd_load_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u)
        return (uint16_t)(sign | (absx > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (absx >= 0x477ff000u) /* rounds to 65536 or more: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* below 2^-14: a half subnormal or zero */
        uint32_t e = absx >> 23;
        uint32_t shift = 126 - e;
        if (e == 0 || shift > 24)
            return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; /* rebias the exponent from 127 to 15 */
    uint32_t h = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float pd_bf16_to_f32(uint16_t h)
{
    return pd_load_bits_f32((uint32_t)h << 16);
}

uint16_t pd_f32_to_bf16(float f)
{
    uint32_t x = pd_load_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

size_t pd_load_tensor_count(const pd_model_config_t *config)
{
    size_t per_layer =
        9 + (config->arch == PD_ARCH_QWEN2 ? 3 : 0) + (config->arch == PD_ARCH_QWEN3 ? 2 : 0);
    return 2 + (size_t)config->n_layers * per_layer + (config->tie_embeddings ? 0 : 1);
}

/* layer UINT32_MAX: a global tensor named what; else "model.layers.<layer>.<what>.weight".
 * A matrix is matrix `index` of mat (cols > 0), a vector lives at vec (cols 0). */
static void pd_load_tensor_set(pd_load_tensor_t *t, pd_weight_t *mat, uint32_t index, float *vec,
                               uint64_t rows, uint64_t cols, const char *what, uint32_t layer)
{
    if (layer == UINT32_MAX)
        snprintf(t->name, sizeof(t->name), "%s", what);
    else
        snprintf(t->name, sizeof(t->name), "model.layers.%u.%s%s", layer, what,
                 strstr(what, ".bias") != NULL ? "" : ".weight");
    t->mat = mat;
    t->index = index;
    t->vec = vec;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->ndim = cols == 0 ? 1 : 2;
}

size_t pd_load_tensor_list(const pd_model_config_t *c, pd_model_t *model,
                           pd_load_tensor_t *tensors_p)
{
    const uint64_t dim = c->dim, hid = c->hidden_dim;
    const uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim;
    const uint64_t kv_dim = (uint64_t)c->n_kv_heads * c->head_dim;
    pd_model_weights_t *w = model != NULL ? &model->w : NULL;
    size_t n = 0;

#define PD_M(field) (w != NULL ? &w->field : NULL)
#define PD_V(field) (w != NULL ? w->field + (size_t)l * dim : NULL)
    pd_load_tensor_set(&tensors_p[n++], PD_M(tok_embed), 0, NULL, c->vocab_size, dim,
                       "model.embed_tokens.weight", UINT32_MAX);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        pd_load_tensor_set(&tensors_p[n++], NULL, 0, PD_V(attn_norm), dim, 0, "input_layernorm", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(wq), l, NULL, q_dim, dim, "self_attn.q_proj", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(wk), l, NULL, kv_dim, dim, "self_attn.k_proj", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(wv), l, NULL, kv_dim, dim, "self_attn.v_proj", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(wo), l, NULL, dim, q_dim, "self_attn.o_proj", l);
        pd_load_tensor_set(&tensors_p[n++], NULL, 0, PD_V(ffn_norm), dim, 0,
                           "post_attention_layernorm", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(w_gate), l, NULL, hid, dim, "mlp.gate_proj", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(w_up), l, NULL, hid, dim, "mlp.up_proj", l);
        pd_load_tensor_set(&tensors_p[n++], PD_M(w_down), l, NULL, dim, hid, "mlp.down_proj", l);
        if (c->arch == PD_ARCH_QWEN2) {
            pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->bq + (size_t)l * q_dim : NULL,
                               q_dim, 0, "self_attn.q_proj.bias", l);
            pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->bk + (size_t)l * kv_dim : NULL,
                               kv_dim, 0, "self_attn.k_proj.bias", l);
            pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->bv + (size_t)l * kv_dim : NULL,
                               kv_dim, 0, "self_attn.v_proj.bias", l);
        }
        if (c->arch == PD_ARCH_QWEN3) {
            const uint64_t hd = c->head_dim;
            pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->q_norm + (size_t)l * hd : NULL, hd,
                               0, "self_attn.q_norm", l);
            pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->k_norm + (size_t)l * hd : NULL, hd,
                               0, "self_attn.k_norm", l);
        }
    }
    pd_load_tensor_set(&tensors_p[n++], NULL, 0, w ? w->final_norm : NULL, dim, 0,
                       "model.norm.weight", UINT32_MAX);
    if (!c->tie_embeddings)
        pd_load_tensor_set(&tensors_p[n++], PD_M(lm_head), 0, NULL, c->vocab_size, dim,
                           "lm_head.weight", UINT32_MAX);
#undef PD_M
#undef PD_V
    return n;
}

pd_status_t pd_load_map_open(const char *path, pd_load_map_t *map)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        pd_log_error("%s: cannot open: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        pd_log_error("%s: not a regular file", path);
        close(fd);
        return PD_ERR_IO;
    }
    map->size = (size_t)st.st_size;
    map->data = NULL;
    if (map->size > 0) {
        void *p = mmap(NULL, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            pd_log_error("%s: cannot map: %s", path, strerror(errno));
            close(fd);
            return PD_ERR_IO;
        }
        map->data = p;
    }
    close(fd);
    return PD_OK;
}

void pd_load_map_close(pd_load_map_t *map)
{
    if (map->data != NULL)
        munmap((void *)map->data, map->size);
    map->data = NULL;
    map->size = 0;
}

/* When path is a config.json or a .safetensors file, its directory into dir. */
static bool pd_load_checkpoint_dir(const char *path, char *dir, size_t cap)
{
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    bool hf =
        strcmp(base, "config.json") == 0 || (n > 12 && strcmp(path + n - 12, ".safetensors") == 0);
    if (!hf)
        return false;
    size_t len = (size_t)(base - path);
    if (len == 0)
        return snprintf(dir, cap, ".") < (int)cap;
    if (len >= cap)
        return false;
    memcpy(dir, path, len);
    dir[len] = '\0';
    return true;
}

/* The Hugging Face checkpoint directory that path names into *hf_p: path itself, or the
 * directory of its config.json or .safetensors file (a file of a checkpoint directory
 * names the directory), copied into dir (cap bytes); NULL for a llama2.c file. */
static pd_status_t pd_load_find_hf(const char *path, char *dir, size_t cap, const char **hf_p)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int err = errno;
        pd_log_error("model %s: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    if (S_ISDIR(st.st_mode))
        *hf_p = path;
    else
        *hf_p = pd_load_checkpoint_dir(path, dir, cap) ? dir : NULL;
    return PD_OK;
}

pd_status_t pd_model_config_load(const char *path, pd_model_config_t *config_p)
{
    char dir[PATH_MAX];
    const char *hf = NULL;
    if (path == NULL || config_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_load_find_hf(path, dir, sizeof(dir), &hf);
    if (status != PD_OK)
        return status;
    if (hf != NULL)
        return pd_model_config_load_hf(hf, config_p);
    pd_load_map_t map;
    status = pd_load_map_open(path, &map);
    if (status != PD_OK)
        return status;
    bool shared;
    status = pd_load_llama2c_config(path, &map, config_p, &shared);
    pd_load_map_close(&map);
    return status;
}

pd_status_t pd_model_load(const char *path, pd_model_t **model_p)
{
    char dir[PATH_MAX];
    const char *hf = NULL;
    if (path == NULL || model_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_load_find_hf(path, dir, sizeof(dir), &hf);
    if (status != PD_OK)
        return status;
    if (hf != NULL)
        return pd_model_load_hf(hf, model_p);
    return pd_model_load_llama2c(path, model_p);
}

pd_status_t pd_model_load_dtype(const char *path, pd_dtype_t dtype, pd_model_t **model_p)
{
    pd_model_t *model = NULL, *converted = NULL;
    if (model_p == NULL || (unsigned)dtype >= PD_DTYPE_COUNT)
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_model_load(path, &model);
    if (status != PD_OK)
        return status;
    if (pd_model_dtype(model) == (int)dtype) {
        *model_p = model;
        return PD_OK;
    }
    status = pd_model_convert(model, dtype, &converted);
    pd_model_destroy(&model);
    if (status != PD_OK) {
        pd_log_error("model %s: cannot convert to %s: %s", path, pd_dtype_name(dtype),
                     pd_status_str(status));
        return status;
    }
    *model_p = converted;
    return PD_OK;
}

pd_status_t pd_model_dtype_load(const char *path, pd_dtype_t *dtype_p)
{
    char dir[PATH_MAX];
    const char *hf = NULL;
    int dtype = PD_DTYPE_F32;
    if (path == NULL || dtype_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_load_find_hf(path, dir, sizeof(dir), &hf);
    if (status == PD_OK && hf != NULL)
        status = pd_model_dtype_load_hf(hf, &dtype);
    if (status == PD_OK)
        *dtype_p = (pd_dtype_t)dtype;
    return status;
}
