/* Writing a model as a Hugging Face checkpoint directory (config.json and one
 * model.safetensors). The safetensors file is written under a temporary name and renamed
 * into place last, so a directory with model.safetensors is always complete. */
#include "load_int.h"

#include "pd/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PD_WRITE_CHUNK (1u << 20) /* elements converted per write */

/* mkdir -p. */
static pd_status_t pd_write_mkdirs(const char *dir)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return PD_ERR_INVALID_PARAM;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                int err = errno;
                pd_log_error("%s: cannot create directory: %s", buf, strerror(err));
                return pd_status_from_errno(err);
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        pd_log_error("%s: not a directory", dir);
        return PD_ERR_IO;
    }
    return PD_OK;
}

static pd_status_t pd_write_config(const pd_model_config_t *c, const char *dir, pd_dtype_t dtype)
{
    char path[PATH_MAX];
    static const char *const torch[] = {"float32", "float16", "bfloat16", "int8"};
    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path))
        return PD_ERR_INVALID_PARAM;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        int err = errno;
        pd_log_error("%s: cannot create: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    static const char *const archs[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
    fprintf(f,
            "{\n"
            "  \"architectures\": [\"%s\"],\n"
            "  \"model_type\": \"%s\",\n"
            "  \"hidden_size\": %u,\n"
            "  \"intermediate_size\": %u,\n"
            "  \"num_hidden_layers\": %u,\n"
            "  \"num_attention_heads\": %u,\n"
            "  \"num_key_value_heads\": %u,\n"
            "  \"head_dim\": %u,\n"
            "  \"vocab_size\": %u,\n"
            "  \"max_position_embeddings\": %u,\n"
            "  \"rms_norm_eps\": %.9g,\n"
            "  \"rope_theta\": %.9g,\n"
            "  \"tie_word_embeddings\": %s,\n"
            "  \"hidden_act\": \"silu\",\n",
            archs[c->arch], pd_arch_name(c->arch), c->dim, c->hidden_dim, c->n_layers, c->n_heads,
            c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len, (double)c->rms_eps,
            (double)c->rope_theta, c->tie_embeddings ? "true" : "false");
    const pd_rope_scaling_t *rs = &c->rope_scaling;
    if (rs->factor > 0.0f)
        fprintf(f,
                "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %.9g, "
                "\"low_freq_factor\": %.9g, \"high_freq_factor\": %.9g, "
                "\"original_max_position_embeddings\": %u},\n",
                (double)rs->factor, (double)rs->low_freq_factor, (double)rs->high_freq_factor,
                rs->original_max_position);
    /* Without ids of its own, a model stops at the byte tokenizer's BOS/EOS (1, 2). */
    if (c->has_bos || c->n_eos == 0)
        fprintf(f, "  \"bos_token_id\": %d,\n", c->has_bos ? c->bos_id : 1);
    else
        fprintf(f, "  \"bos_token_id\": null,\n");
    if (c->n_eos == 0) {
        fprintf(f, "  \"eos_token_id\": 2,\n");
    } else {
        fprintf(f, "  \"eos_token_id\": [");
        for (uint32_t i = 0; i < c->n_eos; i++)
            fprintf(f, i ? ", %d" : "%d", c->eos_ids[i]);
        fprintf(f, "],\n");
    }
    fprintf(f,
            "  \"torch_dtype\": \"%s\",\n"
            "  \"pdkv_model_id\": \"",
            torch[dtype]);
    /* model_id is written as plain ASCII; anything else becomes '_'. */
    for (const char *s = c->model_id; *s != '\0'; s++)
        fputc((*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? *s : '_', f);
    fprintf(f, "\"\n}\n");
    if (fclose(f) != 0) {
        int err = errno;
        pd_log_error("%s: write failed: %s", path, strerror(err));
        return pd_status_from_errno(err);
    }
    return PD_OK;
}

/* The file dtype of tensor t when the model is written in dtype: vectors (norms) stay
 * float, F32 when the matrices are int8. */
static pd_dtype_t pd_write_tensor_dtype(const pd_load_tensor_t *t, pd_dtype_t dtype)
{
    return t->ndim == 1 && dtype == PD_DTYPE_I8 ? PD_DTYPE_F32 : dtype;
}

/* Write n floats of src to f converted to dtype, little-endian. */
static pd_status_t pd_write_data(FILE *f, const float *src, uint64_t n, pd_dtype_t dtype,
                                 unsigned char *buf)
{
    while (n > 0) {
        size_t m = n < PD_WRITE_CHUNK ? (size_t)n : PD_WRITE_CHUNK;
        size_t bytes = 0;
        for (size_t i = 0; i < m; i++) {
            if (dtype == PD_DTYPE_F32) {
                uint32_t x;
                memcpy(&x, &src[i], 4);
                buf[bytes++] = (unsigned char)x;
                buf[bytes++] = (unsigned char)(x >> 8);
                buf[bytes++] = (unsigned char)(x >> 16);
                buf[bytes++] = (unsigned char)(x >> 24);
            } else {
                uint16_t h = dtype == PD_DTYPE_F16 ? pd_f32_to_f16(src[i]) : pd_f32_to_bf16(src[i]);
                buf[bytes++] = (unsigned char)h;
                buf[bytes++] = (unsigned char)(h >> 8);
            }
        }
        if (fwrite(buf, 1, bytes, f) != bytes)
            return PD_ERR_IO;
        src += m;
        n -= m;
    }
    return PD_OK;
}

/* Write tensor t of the model in dtype; an int8 matrix's row scales follow it as a
 * separate F32 tensor. row: (cols) f32 scratch, q: (cols) bytes, scales: (rows). */
static pd_status_t pd_write_tensor(FILE *f, const pd_load_tensor_t *t, pd_dtype_t dtype,
                                   unsigned char *buf, float *row, int8_t *q, float *scales)
{
    if (t->mat == NULL)
        return pd_write_data(f, t->vec, pd_load_tensor_numel(t), dtype, buf);
    const pd_weight_t m = pd_weight_at(t->mat, t->index);
    for (uint32_t r = 0; r < m.rows; r++) {
        pd_status_t st = PD_OK;
        if (dtype != PD_DTYPE_I8) {
            pd_weight_row_f32(&m, 0, r, row);
            st = pd_write_data(f, row, m.cols, dtype, buf);
        } else if (m.dtype == PD_DTYPE_I8) {
            scales[r] = m.scale[r];
            if (fwrite((const int8_t *)m.data + (size_t)r * m.cols, 1, m.cols, f) != m.cols)
                st = PD_ERR_IO;
        } else {
            pd_weight_row_f32(&m, 0, r, row);
            pd_weight_quantize_row(row, m.cols, q, &scales[r]);
            if (fwrite(q, 1, m.cols, f) != m.cols)
                st = PD_ERR_IO;
        }
        if (st != PD_OK)
            return st;
    }
    if (dtype == PD_DTYPE_I8)
        return pd_write_data(f, scales, m.rows, PD_DTYPE_F32, buf);
    return PD_OK;
}

pd_status_t pd_model_save_hf(const pd_model_t *model, const char *dir, pd_dtype_t dtype,
                             pd_model_progress_cb progress, void *progress_arg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    pd_load_tensor_t *tensors = NULL;
    unsigned char *buf = NULL;
    char *hdr = NULL;
    size_t hdr_len = 0;
    FILE *f = NULL;
    pd_status_t status;

    float *row = NULL, *scales = NULL;
    int8_t *q = NULL;
    if (model == NULL || dir == NULL || (unsigned)dtype >= PD_DTYPE_COUNT)
        return PD_ERR_INVALID_PARAM;
    const pd_model_config_t *c = &model->config;
    if (c->rope_style != PD_ROPE_HALF) {
        pd_log_error("%s: only rotate-half RoPE models are written as Hugging Face checkpoints",
                     dir);
        return PD_ERR_UNSUPPORTED;
    }
    if (snprintf(path, sizeof(path), "%s/model.safetensors", dir) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.model.safetensors.tmp", dir) >= (int)sizeof(tmp))
        return PD_ERR_INVALID_PARAM;
    status = pd_write_mkdirs(dir);
    if (status != PD_OK)
        return status;
    status = pd_write_config(c, dir, dtype);
    if (status != PD_OK)
        return status;

    size_t n = pd_load_tensor_count(c);
    tensors = calloc(n, sizeof(*tensors));
    buf = malloc((size_t)PD_WRITE_CHUNK * 4);
    uint32_t widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    widest = widest > c->n_heads * c->head_dim ? widest : c->n_heads * c->head_dim;
    uint32_t tallest = widest > c->vocab_size ? widest : c->vocab_size;
    row = malloc((size_t)widest * sizeof(float));
    q = malloc(widest);
    scales = malloc((size_t)tallest * sizeof(float));
    if (tensors == NULL || buf == NULL || row == NULL || q == NULL || scales == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_free;
    }
    pd_load_tensor_list(c, (pd_model_t *)model, tensors);

    /* Header: tensors in order, contiguous, padded with spaces to 8 bytes. */
    FILE *h = open_memstream(&hdr, &hdr_len);
    if (h == NULL) {
        status = PD_ERR_NO_MEMORY;
        goto out_free;
    }
    uint64_t off = 0, total = 0;
    fprintf(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        pd_dtype_t td = pd_write_tensor_dtype(&tensors[i], dtype);
        uint64_t bytes = pd_load_tensor_numel(&tensors[i]) * pd_dtype_size(td);
        fprintf(h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", tensors[i].name, pd_dtype_name(td),
                (unsigned long long)tensors[i].shape[0]);
        if (tensors[i].ndim == 2)
            fprintf(h, ",%llu", (unsigned long long)tensors[i].shape[1]);
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + bytes));
        off += bytes;
        if (tensors[i].ndim == 2 && dtype == PD_DTYPE_I8) {
            /* the row scales, named and shaped as compressed-tensors' int8 channel scales */
            bytes = tensors[i].shape[0] * sizeof(float);
            fprintf(h,
                    ",\"%s_scale\":{\"dtype\":\"F32\",\"shape\":[%llu,1],"
                    "\"data_offsets\":[%llu,%llu]}",
                    tensors[i].name, (unsigned long long)tensors[i].shape[0],
                    (unsigned long long)off, (unsigned long long)(off + bytes));
            off += bytes;
        }
    }
    fputc('}', h);
    while ((ftell(h) % 8) != 0)
        fputc(' ', h);
    if (fclose(h) != 0) {
        status = PD_ERR_NO_MEMORY;
        goto out_free;
    }
    total = off;

    f = fopen(tmp, "wb");
    if (f == NULL) {
        pd_log_error("%s: cannot create: %s", tmp, strerror(errno));
        status = PD_ERR_IO;
        goto out_free;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hdr_len >> (8 * i));
    status = PD_ERR_IO;
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hdr_len, f) != hdr_len)
        goto out_write_failed;
    uint64_t done = 0;
    for (size_t i = 0; i < n; i++) {
        pd_dtype_t td = pd_write_tensor_dtype(&tensors[i], dtype);
        if (pd_write_tensor(f, &tensors[i], td, buf, row, q, scales) != PD_OK)
            goto out_write_failed;
        done += pd_load_tensor_numel(&tensors[i]) * pd_dtype_size(td) +
                (tensors[i].ndim == 2 && dtype == PD_DTYPE_I8 ? tensors[i].shape[0] * 4 : 0);
        if (progress != NULL)
            progress(progress_arg, done, total);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        goto out_write_failed;
    int rc = fclose(f);
    f = NULL;
    if (rc != 0)
        goto out_write_failed;
    if (rename(tmp, path) != 0)
        goto out_write_failed;
    status = PD_OK;
    goto out_free;

out_write_failed:
    pd_log_error("%s: write failed: %s", tmp, strerror(errno));
    if (f != NULL)
        fclose(f);
    unlink(tmp);
out_free:
    free(row);
    free(q);
    free(scales);
    free(hdr);
    free(buf);
    free(tensors);
    return status;
}
