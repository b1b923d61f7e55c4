/* Named model shapes used by `pdctl model new --preset` and the tests and benchmarks, so
 * that everything runs with no download: "tiny", "small", "m50" with the byte-level
 * vocabulary, and "llama3-tiny", "qwen3-tiny" in the shape of those checkpoints (their
 * vocabulary size, RoPE, architecture, BOS/EOS ids) for use with their real
 * tokenizer.json. */
#ifndef PD_PRESETS_H
#define PD_PRESETS_H

#include "pd/model.h"
#include "pd/status.h"

#include <stddef.h>

/* Fill *config_p with the preset called name; PD_ERR_NOT_FOUND (logged) for an unknown
 * name. The byte-level presets use that vocabulary (259), rotate-half RoPE and untied
 * embeddings; model_id is "pdkv-<name>". config_p is written only on success. */
PD_MUST_CHECK pd_status_t pd_model_preset(const char *name, pd_model_config_t *config_p);

/* Number of presets, and the name of preset i (NULL past the end); for help texts. */
size_t pd_model_preset_count(void);
const char *pd_model_preset_name(size_t i);

/* The tokenizer family a preset needs ("llama3", "qwen3"), NULL for the byte-level ones
 * and unknown names. */
const char *pd_model_preset_tokenizer(const char *name);

#endif
