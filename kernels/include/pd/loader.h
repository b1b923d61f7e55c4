/* Model files: Hugging Face checkpoint directories (config.json + *.safetensors) and
 * llama2.c .bin checkpoints, read into pd_model_t weights in the checkpoint's dtype; and the
 * safetensors writer behind `pdctl model new`. pd_model_load() (pd/model.h) dispatches to these.
 *
 * Every reader validates before it allocates or copies: sizes against the file, offsets
 * against the data section, shapes against the config. Bad input gives PD_ERR_FORMAT
 * (or PD_ERR_IO / PD_ERR_UNSUPPORTED) with the reason logged at error level. */
#ifndef PD_LOADER_H
#define PD_LOADER_H

#include "pd/model.h"
#include "pd/status.h"

#include <stdint.h>

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN). */
float pd_f16_to_f32(uint16_t h);
uint16_t pd_f32_to_f16(float f);
float pd_bf16_to_f32(uint16_t h);
uint16_t pd_f32_to_bf16(float f);

/* Read only the config of a model at path (checkpoint directory or llama2.c .bin),
 * without its weights: cheap, for `pdctl size` and for the router's model id. */
PD_MUST_CHECK pd_status_t pd_model_config_load(const char *path, pd_model_config_t *config_p);

/* The dtype the matrices of the model at path will have in memory once loaded (that of
 * the checkpoint's matrices; F32 for a llama2.c file or a checkpoint that mixes dtypes),
 * read from the file headers only. */
PD_MUST_CHECK pd_status_t pd_model_dtype_load(const char *path, pd_dtype_t *dtype_p);
PD_MUST_CHECK pd_status_t pd_model_dtype_load_hf(const char *dir, int *dtype_p);

/* Read DIR/config.json. model_id is the config's "pdkv_model_id" when present, else the
 * directory's base name. rope_style is PD_ROPE_HALF. */
PD_MUST_CHECK pd_status_t pd_model_config_load_hf(const char *dir, pd_model_config_t *config_p);

/* Load a Hugging Face checkpoint directory: config.json and every *.safetensors in it
 * (sharded checkpoints are the union of their files). Matrices keep the checkpoint's
 * dtype (F32, F16, BF16, or I8 with a "<name>_scale" tensor of row scales); a checkpoint
 * that mixes dtypes loads as F32; norm vectors convert to f32. Unused tensors are ignored
 * (logged at info level). */
PD_MUST_CHECK pd_status_t pd_model_load_hf(const char *dir, pd_model_t **model_p);

/* Load a llama2.c checkpoint (legacy version-0 export: 7 int32 header, f32 weights;
 * negative vocab_size means an untied classifier). rope_style is PD_ROPE_PAIR, model_id
 * the file's base name without extension. */
PD_MUST_CHECK pd_status_t pd_model_load_llama2c(const char *path, pd_model_t **model_p);

/* Progress of a long write: bytes written so far of total_bytes. */
typedef void (*pd_model_progress_cb)(void *arg, uint64_t done_bytes, uint64_t total_bytes);

/* Write model as a Hugging Face checkpoint: DIR/config.json and DIR/model.safetensors
 * with matrices in dtype (HF tensor names, tied lm_head omitted; I8 matrices are followed
 * by F32 "<name>_scale" tensors of shape [rows, 1], and norms are F32). DIR is created if
 * missing. progress (may be NULL) is called as tensors are written. */
PD_MUST_CHECK pd_status_t pd_model_save_hf(const pd_model_t *model, const char *dir,
                                           pd_dtype_t dtype, pd_model_progress_cb progress,
                                           void *progress_arg);

#endif
