/* Hugging Face checkpoint directories: config.json and *.safetensors.
 *
 * safetensors: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data section, offsets relative to its start.
 * Everything is checked before the model is allocated: the header against the file, each
 * entry's offsets against the data section and its byte size against dtype and shape,
 * and every tensor the config needs for presence and shape. */
#include "load_int.h"

#include "pd/json.h"
#include "pd/log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PD_ST_MAX_HEADER (100u << 20) /* the safetensors format's own limit */
#define PD_ST_MAX_FILES  256
#define PD_CONFIG_MAX    (1u << 20)

/* One tensor entry of a safetensors header. */
typedef struct pd_st_entry {
    const char *name; /* owned by the file's JSON document */
    int dtype;        /* pd_dtype_t, or -1 for a dtype this loader cannot read */
    const char *dtype_name;
    uint64_t shape[8];
    uint32_t ndim;
    const unsigned char *data; /* inside the mapping */
    uint64_t n_bytes;
    bool used;
} pd_st_entry_t;

typedef struct pd_st_file {
    char path[PATH_MAX];
    pd_load_map_t map;
    pd_json_doc_t *doc;
    pd_st_entry_t *entries;
    size_t n_entries;
} pd_st_file_t;

static pd_status_t pd_hf_get_u32(const pd_json_t *root, const char *path, const char *key,
                                 bool required, uint32_t def, uint32_t min, uint32_t max,
                                 uint32_t *v_p)
{
    const pd_json_t *v = pd_json_object_get(root, key);
    uint64_t u;
    if (v == NULL || pd_json_type(v) == PD_JSON_NULL) {
        if (required) {
            pd_log_error("%s: required field \"%s\" is missing", path, key);
            return PD_ERR_FORMAT;
        }
        *v_p = def;
        return PD_OK;
    }
    if (!pd_json_u64(v, &u)) {
        pd_log_error("%s: \"%s\" must be a non-negative integer", path, key);
        return PD_ERR_FORMAT;
    }
    if (u < min || u > max) {
        pd_log_error("%s: \"%s\" is %llu, outside %u..%u", path, key, (unsigned long long)u, min,
                     max);
        return PD_ERR_FORMAT;
    }
    *v_p = (uint32_t)u;
    return PD_OK;
}

static pd_status_t pd_hf_get_f32(const pd_json_t *root, const char *path, const char *key,
                                 double def, double lo, double hi, float *v_p)
{
    const pd_json_t *v = pd_json_object_get(root, key);
    double d;
    if (v == NULL || pd_json_type(v) == PD_JSON_NULL) {
        *v_p = (float)def;
        return PD_OK;
    }
    if (!pd_json_number(v, &d) || !(d > lo && d < hi)) {
        pd_log_error("%s: \"%s\" must be a number in (%g, %g)", path, key, lo, hi);
        return PD_ERR_FORMAT;
    }
    *v_p = (float)d;
    return PD_OK;
}

/* Read a small text file whole. */
static pd_status_t pd_hf_read_text(const char *path, size_t max_bytes, char **buf_p, size_t *len_p)
{
    pd_load_map_t map;
    pd_status_t status = pd_load_map_open(path, &map);
    if (status != PD_OK)
        return status;
    if (map.size > max_bytes) {
        pd_log_error("%s: %zu bytes, more than the %zu limit", path, map.size, max_bytes);
        pd_load_map_close(&map);
        return PD_ERR_FORMAT;
    }
    char *buf = malloc(map.size + 1);
    if (buf == NULL) {
        pd_load_map_close(&map);
        return PD_ERR_NO_MEMORY;
    }
    if (map.size > 0)
        memcpy(buf, map.data, map.size);
    buf[map.size] = '\0';
    *buf_p = buf;
    *len_p = map.size;
    pd_load_map_close(&map);
    return PD_OK;
}

static pd_status_t pd_hf_parse_config(const char *path, const pd_json_t *root, const char *dir,
                                      pd_model_config_t *c)
{
    pd_status_t st;
    uint32_t head_dim = 0;
    bool tie = false;
    const pd_json_t *v;

    memset(c, 0, sizeof(*c));
    if (pd_json_type(root) != PD_JSON_OBJECT) {
        pd_log_error("%s: not a JSON object", path);
        return PD_ERR_FORMAT;
    }
    if ((st = pd_hf_get_u32(root, path, "hidden_size", true, 0, 1, 1u << 16, &c->dim)) ||
        (st = pd_hf_get_u32(root, path, "intermediate_size", true, 0, 1, 1u << 18,
                            &c->hidden_dim)) ||
        (st = pd_hf_get_u32(root, path, "num_hidden_layers", true, 0, 1, 1024, &c->n_layers)) ||
        (st = pd_hf_get_u32(root, path, "num_attention_heads", true, 0, 1, 1024, &c->n_heads)) ||
        (st = pd_hf_get_u32(root, path, "num_key_value_heads", false, c->n_heads, 1, 1024,
                            &c->n_kv_heads)) ||
        (st = pd_hf_get_u32(root, path, "vocab_size", true, 0, 3, 1u << 22, &c->vocab_size)) ||
        (st = pd_hf_get_u32(root, path, "max_position_embeddings", true, 0, 1, 1u << 22,
                            &c->max_seq_len)) ||
        (st = pd_hf_get_u32(root, path, "head_dim", false, 0, 0, 4096, &head_dim)) ||
        (st = pd_hf_get_f32(root, path, "rms_norm_eps", 1e-6, 0.0, 1.0, &c->rms_eps)) ||
        (st = pd_hf_get_f32(root, path, "rope_theta", 10000.0, 0.0, 1e12, &c->rope_theta)))
        return st;
    v = pd_json_object_get(root, "tie_word_embeddings");
    if (v != NULL && pd_json_type(v) != PD_JSON_NULL && !pd_json_bool(v, &tie)) {
        pd_log_error("%s: \"tie_word_embeddings\" must be true or false", path);
        return PD_ERR_FORMAT;
    }
    c->tie_embeddings = tie;
    if (head_dim == 0) {
        if (c->dim % c->n_heads != 0) {
            pd_log_error("%s: hidden_size %u is not a multiple of num_attention_heads %u", path,
                         c->dim, c->n_heads);
            return PD_ERR_FORMAT;
        }
        head_dim = c->dim / c->n_heads;
    }
    c->head_dim = head_dim;
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0) {
        pd_log_error("%s: num_key_value_heads %u does not divide num_attention_heads %u", path,
                     c->n_kv_heads, c->n_heads);
        return PD_ERR_FORMAT;
    }
    if (head_dim % 2 != 0) {
        pd_log_error("%s: head_dim %u is odd; RoPE needs pairs", path, head_dim);
        return PD_ERR_FORMAT;
    }
    /* Features this engine does not compute: refuse rather than produce wrong numbers. */
    if ((st = pd_hf_check_fields(path, root)) || (st = pd_hf_parse_arch(path, root, c)) ||
        (st = pd_hf_parse_rope_scaling(path, root, c)))
        return st;
    /* Sliding-window attention equals full attention up to the window: cap the context. */
    uint32_t window = 0;
    st = pd_hf_get_u32(root, path, "sliding_window", false, 0, 0, UINT32_MAX, &window);
    if (st != PD_OK)
        return st;
    bool use_window = true;
    pd_json_bool(pd_json_object_get(root, "use_sliding_window"), &use_window);
    if (use_window && window > 0 && window < c->max_seq_len) {
        pd_log_info("%s: context capped at the sliding window, %u tokens", path, window);
        c->max_seq_len = window;
    }
    const char *s;
    v = pd_json_object_get(root, "hidden_act");
    if (v != NULL && (!pd_json_string(v, &s, NULL) || strcmp(s, "silu") != 0)) {
        pd_log_error("%s: hidden_act must be \"silu\"", path);
        return PD_ERR_UNSUPPORTED;
    }
    c->rope_style = PD_ROPE_HALF;
    v = pd_json_object_get(root, "pdkv_model_id");
    if (pd_json_string(v, &s, NULL) && s[0] != '\0') {
        snprintf(c->model_id, sizeof(c->model_id), "%s", s);
    } else {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && dir[b - 1] != '/')
            b--;
        size_t len = n - b < sizeof(c->model_id) - 1 ? n - b : sizeof(c->model_id) - 1;
        memcpy(c->model_id, dir + b, len);
        c->model_id[len] = '\0';
    }
    st = pd_model_config_validate(c);
    if (st != PD_OK)
        pd_log_error("%s: config rejected: %s", path, pd_status_str(st));
    return st;
}

pd_status_t pd_model_config_load_hf(const char *dir, pd_model_config_t *config_p)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    pd_json_doc_t *doc = NULL;
    pd_model_config_t c;
    pd_status_t status;

    if (dir == NULL || config_p == NULL)
        return PD_ERR_INVALID_PARAM;
    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path))
        return PD_ERR_INVALID_PARAM;
    status = pd_hf_read_text(path, PD_CONFIG_MAX, &text, &len);
    if (status != PD_OK)
        return status;
    status = pd_json_parse(text, len, NULL, &doc);
    if (status != PD_OK) {
        pd_log_error("%s: not valid JSON: %s", path, pd_json_last_error());
        status = PD_ERR_FORMAT;
        goto out_free_text;
    }
    status = pd_hf_parse_config(path, pd_json_doc_root(doc), dir, &c);
    if (status == PD_OK) {
        /* generation_config.json beside it, when there is one */
        char gpath[PATH_MAX];
        char *gtext = NULL;
        size_t glen = 0;
        pd_json_doc_t *gdoc = NULL;
        snprintf(gpath, sizeof(gpath), "%s/generation_config.json", dir);
        if (access(gpath, F_OK) == 0) {
            status = pd_hf_read_text(gpath, PD_CONFIG_MAX, &gtext, &glen);
            if (status == PD_OK && pd_json_parse(gtext, glen, NULL, &gdoc) != PD_OK) {
                pd_log_error("%s: not valid JSON: %s", gpath, pd_json_last_error());
                status = PD_ERR_FORMAT;
            }
        }
        if (status == PD_OK)
            status = pd_hf_parse_generation(path, pd_json_doc_root(doc),
                                            gdoc ? pd_json_doc_root(gdoc) : NULL, gpath, &c);
        pd_json_doc_destroy(&gdoc);
        free(gtext);
    }
    if (status == PD_OK)
        *config_p = c;
    pd_json_doc_destroy(&doc);
out_free_text:
    free(text);
    return status;
}

static int pd_st_dtype(const char *s, uint64_t *elem_bytes_p)
{
    static const struct {
        const char *name;
        uint64_t bytes;
        int dtype;
    } known[] = {{"F32", 4, PD_DTYPE_F32},
                 {"F16", 2, PD_DTYPE_F16},
                 {"BF16", 2, PD_DTYPE_BF16},
                 {"F64", 8, -1},
                 {"I64", 8, -1},
                 {"I32", 4, -1},
                 {"U32", 4, -1},
                 {"I16", 2, -1},
                 {"U16", 2, -1},
                 {"I8", 1, PD_DTYPE_I8},
                 {"U8", 1, -1},
                 {"BOOL", 1, -1},
                 {"F8_E4M3", 1, -1},
                 {"F8_E5M2", 1, -1}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(s, known[i].name) == 0) {
            *elem_bytes_p = known[i].bytes;
            return known[i].dtype;
        }
    }
    return -2;
}

/* Map one safetensors file and validate its header and every entry. */
static pd_status_t pd_st_open(pd_st_file_t *f)
{
    pd_status_t status = pd_load_map_open(f->path, &f->map);
    if (status != PD_OK)
        return status;
    const char *path = f->path;
    if (f->map.size < 8) {
        pd_log_error("%s: %zu bytes, too short for a safetensors file", path, f->map.size);
        return PD_ERR_FORMAT;
    }
    uint64_t hlen = pd_load_le64(f->map.data);
    if (hlen > f->map.size - 8) {
        pd_log_error("%s: header length %llu goes beyond the end of the %zu-byte file", path,
                     (unsigned long long)hlen, f->map.size);
        return PD_ERR_FORMAT;
    }
    if (hlen < 2 || hlen > PD_ST_MAX_HEADER) {
        pd_log_error("%s: header length %llu is not in 2..%u", path, (unsigned long long)hlen,
                     PD_ST_MAX_HEADER);
        return PD_ERR_FORMAT;
    }
    const char *hdr = (const char *)f->map.data + 8;
    pd_json_limits_t lim = pd_json_limits_default;
    lim.max_bytes = PD_ST_MAX_HEADER;
    lim.max_depth = 4;
    /* The header may be padded with spaces; a strict parser takes them as whitespace. */
    status = pd_json_parse(hdr, (size_t)hlen, &lim, &f->doc);
    if (status != PD_OK) {
        pd_log_error("%s: header is not valid JSON: %s", path, pd_json_last_error());
        return PD_ERR_FORMAT;
    }
    const pd_json_t *root = pd_json_doc_root(f->doc);
    if (pd_json_type(root) != PD_JSON_OBJECT) {
        pd_log_error("%s: header is not a JSON object", path);
        return PD_ERR_FORMAT;
    }
    const unsigned char *base = f->map.data + 8 + hlen;
    uint64_t data_bytes = f->map.size - 8 - hlen;
    size_t n = pd_json_len(root);
    f->entries = calloc(n > 0 ? n : 1, sizeof(pd_st_entry_t));
    if (f->entries == NULL)
        return PD_ERR_NO_MEMORY;
    for (size_t i = 0; i < n; i++) {
        const char *name = pd_json_object_key_at(root, i);
        const pd_json_t *e = pd_json_object_value_at(root, i);
        if (strcmp(name, "__metadata__") == 0)
            continue;
        pd_st_entry_t *t = &f->entries[f->n_entries];
        const char *dt;
        const pd_json_t *shape = pd_json_object_get(e, "shape");
        const pd_json_t *offs = pd_json_object_get(e, "data_offsets");
        uint64_t esize = 0, begin, end;
        if (pd_json_type(e) != PD_JSON_OBJECT ||
            !pd_json_string(pd_json_object_get(e, "dtype"), &dt, NULL) ||
            pd_json_type(shape) != PD_JSON_ARRAY || pd_json_len(offs) != 2 ||
            !pd_json_u64(pd_json_array_at(offs, 0), &begin) ||
            !pd_json_u64(pd_json_array_at(offs, 1), &end)) {
            pd_log_error("%s: tensor \"%s\" needs dtype, shape and data_offsets [begin, end]", path,
                         name);
            return PD_ERR_FORMAT;
        }
        t->name = name;
        t->dtype_name = dt;
        t->dtype = pd_st_dtype(dt, &esize);
        if (t->dtype == -2) {
            pd_log_error("%s: tensor \"%s\" has unknown dtype \"%s\"", path, name, dt);
            return PD_ERR_FORMAT;
        }
        t->ndim = (uint32_t)pd_json_len(shape);
        if (t->ndim > 8) {
            pd_log_error("%s: tensor \"%s\" has %u dimensions", path, name, t->ndim);
            return PD_ERR_FORMAT;
        }
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (!pd_json_u64(pd_json_array_at(shape, d), &t->shape[d]) ||
                (t->shape[d] != 0 && numel > UINT64_MAX / 4 / 8 / t->shape[d])) {
                pd_log_error("%s: tensor \"%s\" has a bad shape", path, name);
                return PD_ERR_FORMAT;
            }
            numel *= t->shape[d];
        }
        if (begin > end || end > data_bytes) {
            pd_log_error("%s: tensor \"%s\" data_offsets [%llu, %llu] outside the %llu-byte "
                         "data section",
                         path, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_bytes);
            return PD_ERR_FORMAT;
        }
        if (end - begin != numel * esize) {
            pd_log_error("%s: tensor \"%s\" holds %llu bytes, its dtype and shape need %llu", path,
                         name, (unsigned long long)(end - begin),
                         (unsigned long long)(numel * esize));
            return PD_ERR_FORMAT;
        }
        t->data = base + begin;
        t->n_bytes = end - begin;
        f->n_entries++;
    }
    return PD_OK;
}

static void pd_st_close(pd_st_file_t *f)
{
    free(f->entries);
    f->entries = NULL;
    pd_json_doc_destroy(&f->doc);
    pd_load_map_close(&f->map);
}

pd_status_t pd_load_safetensors_check(const char *path, size_t *n_tensors_p)
{
    pd_st_file_t f;
    memset(&f, 0, sizeof(f));
    if (snprintf(f.path, sizeof(f.path), "%s", path) >= (int)sizeof(f.path))
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_st_open(&f);
    if (status == PD_OK && n_tensors_p != NULL)
        *n_tensors_p = f.n_entries;
    pd_st_close(&f);
    return status;
}

static int pd_hf_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.safetensors files of dir, sorted by name. */
static pd_status_t pd_hf_list_files(const char *dir, pd_st_file_t **files_p, size_t *n_p)
{
    char *names[PD_ST_MAX_FILES];
    size_t n = 0;
    pd_status_t status = PD_OK;
    DIR *d = opendir(dir);
    if (d == NULL) {
        int err = errno;
        pd_log_error("%s: cannot open directory: %s", dir, strerror(err));
        return pd_status_from_errno(err);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 12 || strcmp(de->d_name + len - 12, ".safetensors") != 0)
            continue;
        if (n == PD_ST_MAX_FILES) {
            pd_log_error("%s: more than %d safetensors files", dir, PD_ST_MAX_FILES);
            status = PD_ERR_FORMAT;
            break;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            status = PD_ERR_NO_MEMORY;
            break;
        }
        n++;
    }
    closedir(d);
    if (status == PD_OK && n == 0) {
        pd_log_error("%s: no *.safetensors file", dir);
        status = PD_ERR_FORMAT;
    }
    pd_st_file_t *files = NULL;
    if (status == PD_OK) {
        files = calloc(n, sizeof(*files));
        if (files == NULL)
            status = PD_ERR_NO_MEMORY;
    }
    if (status == PD_OK) {
        qsort(names, n, sizeof(names[0]), pd_hf_name_cmp);
        for (size_t i = 0; i < n; i++)
            snprintf(files[i].path, sizeof(files[i].path), "%s/%s", dir, names[i]);
        *files_p = files;
        *n_p = n;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return status;
}

static pd_st_entry_t *pd_hf_find(pd_st_file_t *files, size_t n_files, const char *name)
{
    for (size_t i = 0; i < n_files; i++) {
        for (size_t j = 0; j < files[i].n_entries; j++) {
            if (strcmp(files[i].entries[j].name, name) == 0)
                return &files[i].entries[j];
        }
    }
    return NULL;
}

/* Element i of a float entry (F32, F16, BF16) as f32. */
static float pd_hf_elem_f32(const pd_st_entry_t *e, uint64_t i)
{
    const unsigned char *p = e->data;
    switch ((pd_dtype_t)e->dtype) {
    case PD_DTYPE_F32: {
        uint32_t x = pd_load_le32(p + 4 * i);
        float f;
        memcpy(&f, &x, sizeof(f));
        return f;
    }
    case PD_DTYPE_F16:
        return pd_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    case PD_DTYPE_BF16:
        return pd_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    case PD_DTYPE_I8:
        break;
    }
    return (float)(int8_t)p[i];
}

/* Convert a float entry's data to f32 at dst (n elements). */
static void pd_hf_convert(const pd_st_entry_t *e, float *dst, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        dst[i] = pd_hf_elem_f32(e, i);
}

/* Place entry e (with its row scales for I8) as matrix `index` of the stack mat. The
 * bytes are copied as they are when the dtypes agree (safetensors is little-endian, as is
 * every host this builds for); otherwise each row goes through f32. */
static pd_status_t pd_hf_place(const pd_st_entry_t *e, const pd_st_entry_t *scale, pd_weight_t *mat,
                               uint32_t index)
{
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host");
    pd_weight_t dst = pd_weight_at(mat, index);
    const uint64_t rows = dst.rows, cols = dst.cols;
    if (e->dtype == (int)dst.dtype) {
        memcpy(dst.data, e->data, rows * cols * pd_dtype_size(dst.dtype));
        if (dst.dtype == PD_DTYPE_I8)
            pd_hf_convert(scale, dst.scale, rows);
        return PD_OK;
    }
    pd_weight_t src = {(void *)e->data, NULL, (pd_dtype_t)e->dtype, 1, dst.rows, dst.cols};
    float *scales = NULL;
    if (e->dtype == PD_DTYPE_I8) {
        scales = malloc(rows * sizeof(float));
        if (scales == NULL)
            return PD_ERR_NO_MEMORY;
        pd_hf_convert(scale, scales, rows);
        src.scale = scales;
    }
    pd_status_t st = pd_weight_convert(&src, &dst);
    free(scales);
    return st;
}

pd_status_t pd_model_load_hf(const char *dir, pd_model_t **model_p)
{
    pd_model_config_t config;
    pd_st_file_t *files = NULL;
    size_t n_files = 0;
    pd_load_tensor_t *tensors = NULL;
    pd_st_entry_t **found = NULL, **scales = NULL;
    pd_model_t *model = NULL;
    int dtype = -1; /* the matrices' dtype when they all agree */
    uint32_t n_mats = 0;
    pd_status_t status;

    if (dir == NULL || model_p == NULL)
        return PD_ERR_INVALID_PARAM;
    status = pd_model_config_load_hf(dir, &config);
    if (status != PD_OK)
        return status;
    status = pd_hf_list_files(dir, &files, &n_files);
    if (status != PD_OK)
        return status;
    for (size_t i = 0; i < n_files; i++) {
        status = pd_st_open(&files[i]);
        if (status != PD_OK)
            goto out_close;
    }
    for (size_t i = 0; i < n_files; i++) {
        for (size_t j = 0; j < files[i].n_entries; j++) {
            const char *name = files[i].entries[j].name;
            for (size_t k = 0; k < i; k++) {
                if (pd_hf_find(&files[k], 1, name) != NULL) {
                    pd_log_error("%s: tensor \"%s\" is also in %s", files[i].path, name,
                                 files[k].path);
                    status = PD_ERR_FORMAT;
                    goto out_close;
                }
            }
        }
    }

    /* Every tensor the config needs, present with its shape and a readable dtype. */
    size_t n_tensors = pd_load_tensor_count(&config);
    tensors = calloc(n_tensors, sizeof(*tensors));
    found = calloc(n_tensors, sizeof(*found));
    scales = calloc(n_tensors, sizeof(*scales));
    if (tensors == NULL || found == NULL || scales == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_close;
    }
    pd_load_tensor_list(&config, NULL, tensors);
    for (size_t i = 0; i < n_tensors; i++) {
        const pd_load_tensor_t *t = &tensors[i];
        pd_st_entry_t *e = pd_hf_find(files, n_files, t->name);
        if (e == NULL) {
            pd_log_error("%s: tensor \"%s\" is missing", dir, t->name);
            status = PD_ERR_FORMAT;
            goto out_close;
        }
        if (e->ndim != t->ndim || e->shape[0] != t->shape[0] ||
            (t->ndim == 2 && e->shape[1] != t->shape[1])) {
            char want[64], got[96] = "";
            snprintf(want, sizeof(want), t->ndim == 1 ? "[%llu]" : "[%llu, %llu]",
                     (unsigned long long)t->shape[0], (unsigned long long)t->shape[1]);
            for (uint32_t d = 0; d < e->ndim; d++) {
                size_t l = strlen(got);
                snprintf(got + l, sizeof(got) - l, "%s%llu", d ? ", " : "",
                         (unsigned long long)e->shape[d]);
            }
            pd_log_error("%s: tensor \"%s\" has shape [%s], the config needs %s", dir, t->name, got,
                         want);
            status = PD_ERR_FORMAT;
            goto out_close;
        }
        if (e->dtype < 0 || (e->dtype == PD_DTYPE_I8 && t->ndim != 2)) {
            pd_log_error("%s: tensor \"%s\" has dtype %s; only F32, F16, BF16 (and I8 with "
                         "row scales for matrices) load",
                         dir, t->name, e->dtype_name);
            status = PD_ERR_UNSUPPORTED;
            goto out_close;
        }
        if (e->dtype == PD_DTYPE_I8) {
            /* int8 rows need their scales: "<name>_scale", shape [rows] or [rows, 1]. */
            char sname[sizeof(t->name) + 8];
            snprintf(sname, sizeof(sname), "%s_scale", t->name);
            pd_st_entry_t *se = pd_hf_find(files, n_files, sname);
            if (se == NULL || se->dtype < 0 || se->dtype == PD_DTYPE_I8 ||
                se->shape[0] != t->shape[0] || se->ndim < 1 || se->ndim > 2 ||
                (se->ndim == 2 && se->shape[1] != 1)) {
                pd_log_error("%s: int8 tensor \"%s\" needs a float \"%s\" of shape [%llu] "
                             "or [%llu, 1]",
                             dir, t->name, sname, (unsigned long long)t->shape[0],
                             (unsigned long long)t->shape[0]);
                status = PD_ERR_FORMAT;
                goto out_close;
            }
            se->used = true;
            scales[i] = se;
        }
        e->used = true;
        found[i] = e;
        if (t->ndim == 2)
            dtype = n_mats++ == 0 ? e->dtype : (dtype == e->dtype ? dtype : -1);
    }
    /* An unused tensor inside a layer (a bias, a q/k norm) would change what the layer
     * computes: refuse it. Old checkpoints' rotary inv_freq buffers are recomputed. */
    size_t n_unused = 0;
    for (size_t i = 0; i < n_files; i++) {
        for (size_t j = 0; j < files[i].n_entries; j++) {
            const char *name = files[i].entries[j].name;
            if (files[i].entries[j].used)
                continue;
            if (strncmp(name, "model.layers.", 13) == 0 &&
                strstr(name, "rotary_emb.inv_freq") == NULL) {
                pd_log_error("%s: tensor \"%s\" is part of a layer this engine does not "
                             "compute (biases and extra norms are not supported)",
                             files[i].path, name);
                status = PD_ERR_UNSUPPORTED;
                goto out_close;
            }
            pd_log_info("%s: tensor \"%s\" not used", files[i].path, name);
            n_unused++;
        }
    }
    if (n_unused > 0)
        pd_log_info("%s: %zu tensors not used", dir, n_unused);

    /* Matrices stay in the checkpoint's dtype; a checkpoint that mixes dtypes is widened
     * to f32, the one type that holds them all. */
    if (dtype < 0)
        pd_log_info("%s: matrices in mixed dtypes: loaded as F32", dir);
    status = pd_model_alloc_dtype(&config, dtype < 0 ? PD_DTYPE_F32 : (pd_dtype_t)dtype, &model);
    if (status != PD_OK) {
        pd_log_error("%s: cannot allocate the model's weights: %s", dir, pd_status_str(status));
        goto out_close;
    }
    pd_load_tensor_list(&config, model, tensors);
    for (size_t i = 0; i < n_tensors; i++) {
        if (tensors[i].mat == NULL) {
            pd_hf_convert(found[i], tensors[i].vec, pd_load_tensor_numel(&tensors[i]));
            continue;
        }
        status = pd_hf_place(found[i], scales[i], tensors[i].mat, tensors[i].index);
        if (status != PD_OK)
            goto out_close;
    }
    *model_p = model;
    model = NULL;

out_close:
    for (size_t i = 0; i < n_files; i++)
        pd_st_close(&files[i]);
    free(files);
    free(tensors);
    free(found);
    free(scales);
    pd_model_destroy(&model);
    return status;
}

pd_status_t pd_model_dtype_load_hf(const char *dir, int *dtype_p)
{
    pd_model_config_t config;
    pd_st_file_t *files = NULL;
    size_t n_files = 0;
    pd_load_tensor_t *tensors = NULL;
    if (dir == NULL || dtype_p == NULL)
        return PD_ERR_INVALID_PARAM;
    pd_status_t status = pd_model_config_load_hf(dir, &config);
    if (status != PD_OK)
        return status;
    status = pd_hf_list_files(dir, &files, &n_files);
    if (status != PD_OK)
        return status;
    for (size_t i = 0; i < n_files && status == PD_OK; i++)
        status = pd_st_open(&files[i]);
    size_t n_tensors = pd_load_tensor_count(&config);
    tensors = status == PD_OK ? calloc(n_tensors, sizeof(*tensors)) : NULL;
    if (status == PD_OK && tensors == NULL)
        status = PD_ERR_NO_MEMORY;
    if (status == PD_OK) {
        int dtype = -2; /* none seen yet */
        pd_load_tensor_list(&config, NULL, tensors);
        for (size_t i = 0; i < n_tensors && status == PD_OK; i++) {
            if (tensors[i].ndim != 2)
                continue;
            const pd_st_entry_t *e = pd_hf_find(files, n_files, tensors[i].name);
            if (e == NULL || e->dtype < 0) {
                pd_log_error("%s: tensor \"%s\" is missing or of an unreadable dtype", dir,
                             tensors[i].name);
                status = PD_ERR_FORMAT;
                break;
            }
            dtype = dtype == -2 || dtype == e->dtype ? e->dtype : -1;
        }
        /* mixed dtypes load as F32 (pd_model_load_hf) */
        if (status == PD_OK)
            *dtype_p = dtype < 0 ? PD_DTYPE_F32 : dtype;
    }
    for (size_t i = 0; i < n_files; i++)
        pd_st_close(&files[i]);
    free(files);
    free(tensors);
    return status;
}
