/* Private to the model loaders (load*.c). */
#ifndef PD_LOAD_INT_H
#define PD_LOAD_INT_H

#include "pd/json.h"
#include "pd/loader.h"

#include <stddef.h>
#include <stdint.h>

/* One tensor of the Hugging Face layout: its name, where it lives in the model (matrix
 * `index` of a weight stack, or an f32 vector), and its shape (ndim 1 or 2). */
typedef struct pd_load_tensor {
    char name[96];
    pd_weight_t *mat; /* the stack holding a matrix (ndim 2), else NULL */
    uint32_t index;   /* which matrix of mat */
    float *vec;       /* the f32 data of a vector (ndim 1) */
    uint64_t shape[2];
    uint32_t ndim;
} pd_load_tensor_t;

/* Fill tensors_p[0 .. n) with the HF tensors of a config (lm_head only when untied);
 * mat and vec are NULL when model is NULL. tensors_p has room for
 * pd_load_tensor_count(config) entries. Returns the count. */
size_t pd_load_tensor_count(const pd_model_config_t *config);
size_t pd_load_tensor_list(const pd_model_config_t *config, pd_model_t *model,
                           pd_load_tensor_t *tensors_p);

/* Elements of a tensor. */
static inline uint64_t pd_load_tensor_numel(const pd_load_tensor_t *t)
{
    return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* A read-only mapping of a whole regular file. */
typedef struct pd_load_map {
    const unsigned char *data;
    size_t size;
} pd_load_map_t;

PD_MUST_CHECK pd_status_t pd_load_map_open(const char *path, pd_load_map_t *map);
void pd_load_map_close(pd_load_map_t *map);

/* Little-endian reads. */
static inline uint32_t pd_load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t pd_load_le64(const unsigned char *p)
{
    return (uint64_t)pd_load_le32(p) | ((uint64_t)pd_load_le32(p + 4) << 32);
}

/* Map the safetensors file at path and validate its header and every entry, as loading
 * does (the fuzz target of the format); *n_tensors_p (may be NULL) gets the tensor count. */
PD_MUST_CHECK pd_status_t pd_load_safetensors_check(const char *path, size_t *n_tensors_p);

/* Read the 7-int32 header of a llama2.c checkpoint at path into a config. */
PD_MUST_CHECK pd_status_t pd_load_llama2c_config(const char *path, const pd_load_map_t *map,
                                                 pd_model_config_t *config_p, bool *shared_p);

/* config.json beyond the shape (load_hf_config.c): every field known
 * (PD_ERR_UNSUPPORTED naming the first that is not), model_type, rope_scaling, and the
 * generation settings of config.json and generation_config.json (gen may be NULL). */
PD_MUST_CHECK pd_status_t pd_hf_check_fields(const char *path, const pd_json_t *root);
PD_MUST_CHECK pd_status_t pd_hf_parse_arch(const char *path, const pd_json_t *root,
                                           pd_model_config_t *c);
PD_MUST_CHECK pd_status_t pd_hf_parse_rope_scaling(const char *path, const pd_json_t *root,
                                                   pd_model_config_t *c);
PD_MUST_CHECK pd_status_t pd_hf_parse_generation(const char *path, const pd_json_t *root,
                                                 const pd_json_t *gen, const char *gen_path,
                                                 pd_model_config_t *c);

#endif
