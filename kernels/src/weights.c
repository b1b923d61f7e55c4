/* Weight dtypes: names, sizes, widening a row to f32, and converting a whole model to
 * another dtype (rounding to bf16/f16, or quantizing rows to int8). */
#include "pd/loader.h"
#include "pd/log.h"
#include "pd/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *pd_dtype_name(pd_dtype_t dtype)
{
    switch (dtype) {
    case PD_DTYPE_F32:
        return "F32";
    case PD_DTYPE_F16:
        return "F16";
    case PD_DTYPE_BF16:
        return "BF16";
    case PD_DTYPE_I8:
        return "I8";
    }
    return "?";
}

pd_status_t pd_dtype_parse(const char *name, pd_dtype_t *dtype_p)
{
    static const struct {
        const char *name;
        pd_dtype_t dtype;
    } names[] = {{"f32", PD_DTYPE_F32},     {"float32", PD_DTYPE_F32}, {"f16", PD_DTYPE_F16},
                 {"float16", PD_DTYPE_F16}, {"bf16", PD_DTYPE_BF16},   {"bfloat16", PD_DTYPE_BF16},
                 {"int8", PD_DTYPE_I8},     {"i8", PD_DTYPE_I8}};
    if (name == NULL || dtype_p == NULL)
        return PD_ERR_INVALID_PARAM;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *dtype_p = names[i].dtype;
            return PD_OK;
        }
    }
    return PD_ERR_INVALID_PARAM;
}

size_t pd_dtype_size(pd_dtype_t dtype)
{
    switch (dtype) {
    case PD_DTYPE_F32:
        return 4;
    case PD_DTYPE_F16:
    case PD_DTYPE_BF16:
        return 2;
    case PD_DTYPE_I8:
        return 1;
    }
    return 0;
}

uint64_t pd_weight_bytes(const pd_weight_t *w)
{
    uint64_t rows = (uint64_t)w->n_mats * w->rows;
    return rows * w->cols * pd_dtype_size(w->dtype) +
           (w->dtype == PD_DTYPE_I8 ? rows * sizeof(float) : 0);
}

void pd_weight_row_f32(const pd_weight_t *w, uint32_t m, uint32_t r, float *out)
{
    const size_t row = (size_t)m * w->rows + r;
    const size_t first = row * w->cols;
    switch (w->dtype) {
    case PD_DTYPE_F32:
        memcpy(out, (const float *)w->data + first, w->cols * sizeof(float));
        break;
    case PD_DTYPE_F16: {
        const uint16_t *h = (const uint16_t *)w->data + first;
        for (uint32_t i = 0; i < w->cols; i++)
            out[i] = pd_f16_to_f32(h[i]);
        break;
    }
    case PD_DTYPE_BF16: {
        const uint16_t *h = (const uint16_t *)w->data + first;
        for (uint32_t i = 0; i < w->cols; i++)
            out[i] = pd_bf16_to_f32(h[i]);
        break;
    }
    case PD_DTYPE_I8: {
        const int8_t *q = (const int8_t *)w->data + first;
        const float s = w->scale[row];
        for (uint32_t i = 0; i < w->cols; i++)
            out[i] = s * (float)q[i];
        break;
    }
    }
}

void pd_weight_quantize_row(const float *x, uint32_t n, int8_t *q, float *scale_p)
{
    float amax = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax; /* a NaN never raises amax */
    }
    if (!(amax > 0.0f) || !isfinite(amax)) {
        /* All zeros (or a row no scale can hold): store zeros rather than garbage. */
        if (amax != 0.0f)
            pd_log_warn("quantize: a row with max |w| = %g is stored as zeros", (double)amax);
        memset(q, 0, n);
        *scale_p = 0.0f;
        return;
    }
    const float inv = 127.0f / amax;
    for (uint32_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)(v == v ? lrintf(v) : 0);
    }
    *scale_p = amax / 127.0f;
}

/* Write row r of matrix m of dst (in dst's dtype) from f32 values src (cols). */
static void pd_weight_row_set(pd_weight_t *dst, uint32_t m, uint32_t r, const float *src)
{
    const size_t row = (size_t)m * dst->rows + r;
    const size_t first = row * dst->cols;
    switch (dst->dtype) {
    case PD_DTYPE_F32:
        memcpy((float *)dst->data + first, src, dst->cols * sizeof(float));
        break;
    case PD_DTYPE_F16:
        for (uint32_t i = 0; i < dst->cols; i++)
            ((uint16_t *)dst->data)[first + i] = pd_f32_to_f16(src[i]);
        break;
    case PD_DTYPE_BF16:
        for (uint32_t i = 0; i < dst->cols; i++)
            ((uint16_t *)dst->data)[first + i] = pd_f32_to_bf16(src[i]);
        break;
    case PD_DTYPE_I8:
        pd_weight_quantize_row(src, dst->cols, (int8_t *)dst->data + first, &dst->scale[row]);
        break;
    }
}

pd_status_t pd_weight_convert(const pd_weight_t *src, pd_weight_t *dst)
{
    if (src->n_mats != dst->n_mats || src->rows != dst->rows || src->cols != dst->cols)
        return PD_ERR_INVALID_PARAM;
    if (src->dtype == dst->dtype) {
        memcpy(dst->data, src->data,
               (size_t)src->n_mats * src->rows * src->cols * pd_dtype_size(src->dtype));
        if (src->scale != NULL)
            memcpy(dst->scale, src->scale, (size_t)src->n_mats * src->rows * sizeof(float));
        return PD_OK;
    }
    float *row = malloc((size_t)src->cols * sizeof(float));
    if (row == NULL)
        return PD_ERR_NO_MEMORY;
    for (uint32_t m = 0; m < src->n_mats; m++)
        for (uint32_t r = 0; r < src->rows; r++) {
            pd_weight_row_f32(src, m, r, row);
            pd_weight_row_set(dst, m, r, row);
        }
    free(row);
    return PD_OK;
}

pd_status_t pd_model_convert(const pd_model_t *model, pd_dtype_t dtype, pd_model_t **out_p)
{
    if (model == NULL || out_p == NULL || (unsigned)dtype >= PD_DTYPE_COUNT)
        return PD_ERR_INVALID_PARAM;
    const pd_model_config_t *c = &model->config;
    pd_model_t *out = NULL;
    pd_status_t st = pd_model_alloc_dtype(c, dtype, &out);
    if (st != PD_OK)
        return st;
    const size_t nd = (size_t)c->n_layers * c->dim * sizeof(float);
    memcpy(out->w.attn_norm, model->w.attn_norm, nd);
    memcpy(out->w.ffn_norm, model->w.ffn_norm, nd);
    memcpy(out->w.final_norm, model->w.final_norm, c->dim * sizeof(float));
    const size_t qb = (size_t)c->n_layers * c->n_heads * c->head_dim * sizeof(float);
    const size_t kb = (size_t)c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float);
    const size_t hb = (size_t)c->n_layers * c->head_dim * sizeof(float);
    if (model->w.bq != NULL) {
        memcpy(out->w.bq, model->w.bq, qb);
        memcpy(out->w.bk, model->w.bk, kb);
        memcpy(out->w.bv, model->w.bv, kb);
    }
    if (model->w.q_norm != NULL) {
        memcpy(out->w.q_norm, model->w.q_norm, hb);
        memcpy(out->w.k_norm, model->w.k_norm, hb);
    }
    bool changed = false;
    for (uint32_t i = 0; i < PD_MODEL_N_MATS; i++) {
        if (i == PD_MODEL_N_MATS - 1 && c->tie_embeddings)
            break;
        const pd_weight_t *src = pd_model_mat((pd_model_weights_t *)&model->w, i);
        changed |= src->dtype != dtype;
        st = pd_weight_convert(src, pd_model_mat(&out->w, i));
        if (st != PD_OK) {
            pd_model_destroy(&out);
            return st;
        }
    }
    if (changed) {
        char id[sizeof(c->model_id)];
        char suffix[8];
        snprintf(suffix, sizeof(suffix), "-%s",
                 dtype == PD_DTYPE_I8 ? "int8" : pd_dtype_name(dtype));
        for (char *p = suffix; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        size_t keep = strlen(c->model_id);
        if (keep + strlen(suffix) >= sizeof(id))
            keep = sizeof(id) - 1 - strlen(suffix);
        snprintf(id, sizeof(id), "%.*s%s", (int)keep, c->model_id, suffix);
        memcpy(out->config.model_id, id, sizeof(id));
    }
    *out_p = out;
    return PD_OK;
}

/* Rows [0, n_heads * hd) of matrix m of w, head by head, from pair order to half order. */
static void pd_weight_rows_to_half(pd_weight_t *w, uint32_t m, uint32_t n_heads, uint32_t hd,
                                   char *tmp, float *tmp_scale)
{
    const size_t row = (size_t)w->cols * pd_dtype_size(w->dtype);
    char *base = (char *)w->data + (size_t)m * w->rows * row;
    float *scale = w->scale != NULL ? w->scale + (size_t)m * w->rows : NULL;
    for (uint32_t h = 0; h < n_heads; h++) {
        char *head = base + (size_t)h * hd * row;
        for (uint32_t j = 0; j < hd; j++) {
            uint32_t i = j / 2, c = j % 2; /* old row j = 2i + c goes to c * hd / 2 + i */
            memcpy(tmp + (size_t)(c * hd / 2 + i) * row, head + (size_t)j * row, row);
            if (scale != NULL)
                tmp_scale[c * hd / 2 + i] = scale[h * hd + j];
        }
        memcpy(head, tmp, (size_t)hd * row);
        if (scale != NULL)
            memcpy(scale + (size_t)h * hd, tmp_scale, hd * sizeof(float));
    }
}

pd_status_t pd_model_rope_to_half(pd_model_t *model)
{
    pd_model_config_t *c = &model->config;
    if (c->rope_style == PD_ROPE_HALF)
        return PD_OK;
    if (model->w.bq != NULL || model->w.q_norm != NULL) /* not in any pair-order format */
        return PD_ERR_UNSUPPORTED;
    pd_weight_t *ws[2] = {&model->w.wq, &model->w.wk};
    const uint32_t heads[2] = {c->n_heads, c->n_kv_heads};
    size_t row = (size_t)c->dim * sizeof(float); /* the widest row any dtype has */
    char *tmp = malloc((size_t)c->head_dim * row);
    float *tmp_scale = malloc((size_t)c->head_dim * sizeof(float));
    if (tmp == NULL || tmp_scale == NULL) {
        free(tmp);
        free(tmp_scale);
        return PD_ERR_NO_MEMORY;
    }
    for (uint32_t k = 0; k < 2; k++)
        for (uint32_t l = 0; l < ws[k]->n_mats; l++)
            pd_weight_rows_to_half(ws[k], l, heads[k], c->head_dim, tmp, tmp_scale);
    free(tmp);
    free(tmp_scale);
    c->rope_style = PD_ROPE_HALF;
    return PD_OK;
}
