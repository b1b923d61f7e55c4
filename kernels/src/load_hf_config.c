/* The parts of a Hugging Face config.json beyond the decoder's shape: the architecture
 * (model_type), RoPE scaling, which fields are understood at all, and the generation
 * settings of config.json and generation_config.json (EOS ids, BOS, sampling defaults). */
#include "load_int.h"

#include "pd/log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Fields a config may carry: each is used, or known not to change the numbers of the
 * models pdkv computes. Anything else is refused by name: a field pdkv has never heard of
 * may change the model, and a wrong model must not load silently. */
static const char *const pd_hf_known_fields[] = {
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "max_position_embeddings", "head_dim", "rms_norm_eps",
    "rope_theta", "rope_scaling", "tie_word_embeddings", "sliding_window", "use_sliding_window",
    "max_window_layers", "attention_bias", "mlp_bias", "hidden_act", "model_type", "pdkv_model_id",
    "bos_token_id", "eos_token_id", "pad_token_id", "layer_types", "rope_interleaved", "use_mrope",
    "is_llama_config",
    /* metadata and training-only settings */
    "architectures", "torch_dtype", "dtype", "transformers_version", "initializer_range",
    "use_cache", "attention_dropout", "pretraining_tp", "_name_or_path", "tokenizer_class",
    "unsloth_fixed", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
    "use_return_dict", NULL};

pd_status_t pd_hf_check_fields(const char *path, const pd_json_t *root)
{
    for (size_t i = 0; i < pd_json_len(root); i++) {
        const char *k = pd_json_object_key_at(root, i);
        size_t j = 0;
        while (pd_hf_known_fields[j] != NULL && strcmp(pd_hf_known_fields[j], k) != 0)
            j++;
        if (pd_hf_known_fields[j] == NULL) {
            pd_log_error("%s: field \"%s\" is not supported (pdkv does not know whether it "
                         "changes the model)",
                         path, k);
            return PD_ERR_UNSUPPORTED;
        }
    }
    const pd_json_t *lt = pd_json_object_get(root, "layer_types");
    for (size_t i = 0; lt != NULL && i < pd_json_len(lt); i++) {
        const char *s = NULL;
        if (!pd_json_string(pd_json_array_at(lt, i), &s, NULL) ||
            strcmp(s, "full_attention") != 0) {
            pd_log_error("%s: layer_types[%zu] is not \"full_attention\": not supported", path, i);
            return PD_ERR_UNSUPPORTED;
        }
    }
    /* flags that would change the computation when true */
    static const char *const must_be_false[] = {"rope_interleaved", "use_mrope"};
    for (size_t i = 0; i < 2; i++) {
        bool b = false;
        if (pd_json_bool(pd_json_object_get(root, must_be_false[i]), &b) && b) {
            pd_log_error("%s: %s true is not supported", path, must_be_false[i]);
            return PD_ERR_UNSUPPORTED;
        }
    }
    double tp = 1;
    if (pd_json_number(pd_json_object_get(root, "pretraining_tp"), &tp) && tp != 1) {
        /* pretraining_tp > 1 splits the products into slices: the same sums in another
         * order, so the numbers pdkv computes stay those of the model */
        pd_log_info("%s: pretraining_tp %g computed as one product per matrix", path, tp);
    }
    return PD_OK;
}

pd_status_t pd_hf_parse_arch(const char *path, const pd_json_t *root, pd_model_config_t *c)
{
    const char *s = "llama";
    const pd_json_t *v = pd_json_object_get(root, "model_type");
    if (v != NULL && !pd_json_string(v, &s, NULL)) {
        pd_log_error("%s: model_type must be a string", path);
        return PD_ERR_FORMAT;
    }
    if (strcmp(s, "llama") == 0 || strcmp(s, "mistral") == 0) {
        c->arch = PD_ARCH_LLAMA;
    } else if (strcmp(s, "qwen2") == 0) {
        c->arch = PD_ARCH_QWEN2;
    } else if (strcmp(s, "qwen3") == 0) {
        c->arch = PD_ARCH_QWEN3;
    } else {
        pd_log_error("%s: model_type \"%s\" is not supported (llama, mistral, qwen2, qwen3)", path,
                     s);
        return PD_ERR_UNSUPPORTED;
    }
    /* Qwen2 always has q/k/v biases (and no o_proj bias); Llama's attention_bias would put
     * biases on all four projections, Qwen3's on q, k, v and o: neither is computed. */
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++) {
        bool b = false;
        if (pd_json_bool(pd_json_object_get(root, biases[i]), &b) && b) {
            pd_log_error("%s: %s is not supported for model_type \"%s\"", path, biases[i], s);
            return PD_ERR_UNSUPPORTED;
        }
    }
    return PD_OK;
}

static pd_status_t pd_hf_scaling_num(const char *path, const pd_json_t *rs, const char *key,
                                     double *out)
{
    if (!pd_json_number(pd_json_object_get(rs, key), out) || !isfinite(*out) || *out <= 0) {
        pd_log_error("%s: rope_scaling.%s must be a positive number", path, key);
        return PD_ERR_FORMAT;
    }
    return PD_OK;
}

pd_status_t pd_hf_parse_rope_scaling(const char *path, const pd_json_t *root, pd_model_config_t *c)
{
    memset(&c->rope_scaling, 0, sizeof(c->rope_scaling));
    const pd_json_t *rs = pd_json_object_get(root, "rope_scaling");
    if (rs == NULL || pd_json_type(rs) == PD_JSON_NULL)
        return PD_OK;
    if (pd_json_type(rs) != PD_JSON_OBJECT) {
        pd_log_error("%s: rope_scaling must be an object or null", path);
        return PD_ERR_FORMAT;
    }
    const char *type = NULL;
    if (!pd_json_string(pd_json_object_get(rs, "rope_type"), &type, NULL) &&
        !pd_json_string(pd_json_object_get(rs, "type"), &type, NULL)) {
        pd_log_error("%s: rope_scaling has no rope_type", path);
        return PD_ERR_FORMAT;
    }
    if (strcmp(type, "default") == 0)
        return PD_OK;
    if (strcmp(type, "llama3") != 0) {
        pd_log_error("%s: rope_scaling of rope_type \"%s\" is not supported (llama3 is)", path,
                     type);
        return PD_ERR_UNSUPPORTED;
    }
    static const char *const keys[] = {"rope_type",
                                       "type",
                                       "factor",
                                       "low_freq_factor",
                                       "high_freq_factor",
                                       "original_max_position_embeddings",
                                       NULL};
    for (size_t i = 0; i < pd_json_len(rs); i++) {
        const char *k = pd_json_object_key_at(rs, i);
        size_t j = 0;
        while (keys[j] != NULL && strcmp(keys[j], k) != 0)
            j++;
        if (keys[j] == NULL) {
            pd_log_error("%s: rope_scaling field \"%s\" is not supported", path, k);
            return PD_ERR_UNSUPPORTED;
        }
    }
    double f, lo, hi, old;
    pd_status_t st;
    if ((st = pd_hf_scaling_num(path, rs, "factor", &f)) ||
        (st = pd_hf_scaling_num(path, rs, "low_freq_factor", &lo)) ||
        (st = pd_hf_scaling_num(path, rs, "high_freq_factor", &hi)) ||
        (st = pd_hf_scaling_num(path, rs, "original_max_position_embeddings", &old)))
        return st;
    if (f < 1 || hi <= lo || old > (1u << 22) || old != floor(old)) {
        pd_log_error("%s: rope_scaling (factor %g, low_freq_factor %g, high_freq_factor %g, "
                     "original_max_position_embeddings %g) is not valid",
                     path, f, lo, hi, old);
        return PD_ERR_FORMAT;
    }
    c->rope_scaling.factor = (float)f;
    c->rope_scaling.low_freq_factor = (float)lo;
    c->rope_scaling.high_freq_factor = (float)hi;
    c->rope_scaling.original_max_position = (uint32_t)old;
    return PD_OK;
}

/* Add the ids of v (an int, a list of ints, or null) to c's eos ids. */
static pd_status_t pd_hf_add_eos(const char *path, const pd_json_t *v, pd_model_config_t *c)
{
    if (v == NULL || pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    size_t n = pd_json_type(v) == PD_JSON_ARRAY ? pd_json_len(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const pd_json_t *e = pd_json_type(v) == PD_JSON_ARRAY ? pd_json_array_at(v, i) : v;
        uint64_t id = 0;
        if (!pd_json_u64(e, &id) || id >= c->vocab_size) {
            pd_log_error("%s: eos_token_id must be an id below vocab_size %u, or a list of them",
                         path, c->vocab_size);
            return PD_ERR_FORMAT;
        }
        if (pd_model_is_eos(c, (int32_t)id))
            continue;
        if (c->n_eos == PD_MODEL_MAX_EOS) {
            pd_log_error("%s: more than %d eos_token_id values", path, PD_MODEL_MAX_EOS);
            return PD_ERR_LIMIT;
        }
        c->eos_ids[c->n_eos++] = (int32_t)id;
    }
    return PD_OK;
}

static pd_status_t pd_hf_get_bos(const char *path, const pd_json_t *obj, pd_model_config_t *c)
{
    const pd_json_t *v = pd_json_object_get(obj, "bos_token_id");
    uint64_t id = 0;
    if (v == NULL || pd_json_type(v) == PD_JSON_NULL)
        return PD_OK;
    if (!pd_json_u64(v, &id) || id >= c->vocab_size) {
        pd_log_error("%s: bos_token_id must be an id below vocab_size %u", path, c->vocab_size);
        return PD_ERR_FORMAT;
    }
    c->bos_id = (int32_t)id;
    c->has_bos = true;
    return PD_OK;
}

pd_status_t pd_hf_parse_generation(const char *path, const pd_json_t *root, const pd_json_t *gen,
                                   const char *gen_path, pd_model_config_t *c)
{
    pd_status_t st;
    c->n_eos = 0;
    c->has_bos = false;
    c->bos_id = -1;
    c->gen_given = 0;
    if ((st = pd_hf_add_eos(path, pd_json_object_get(root, "eos_token_id"), c)) ||
        (st = pd_hf_get_bos(path, root, c)))
        return st;
    if (gen == NULL)
        return PD_OK;
    if (pd_json_type(gen) != PD_JSON_OBJECT) {
        pd_log_error("%s: not a JSON object", gen_path);
        return PD_ERR_FORMAT;
    }
    /* generation_config.json is what generate() reads: its ids join config.json's */
    if ((st = pd_hf_add_eos(gen_path, pd_json_object_get(gen, "eos_token_id"), c)) ||
        (st = pd_hf_get_bos(gen_path, gen, c)))
        return st;
    double d;
    bool sample = true;
    (void)pd_json_bool(pd_json_object_get(gen, "do_sample"), &sample);
    if (pd_json_number(pd_json_object_get(gen, "temperature"), &d)) {
        if (!(d >= 0) || d > 100) {
            pd_log_error("%s: temperature %g is out of range", gen_path, d);
            return PD_ERR_FORMAT;
        }
        c->gen_temperature = (float)d;
        c->gen_given |= PD_GEN_HAS_TEMPERATURE;
    }
    if (!sample) { /* greedy decoding */
        c->gen_temperature = 0.0f;
        c->gen_given |= PD_GEN_HAS_TEMPERATURE;
    }
    if (pd_json_number(pd_json_object_get(gen, "top_p"), &d)) {
        if (!(d > 0) || d > 1) {
            pd_log_error("%s: top_p %g is out of range (0, 1]", gen_path, d);
            return PD_ERR_FORMAT;
        }
        c->gen_top_p = (float)d;
        c->gen_given |= PD_GEN_HAS_TOP_P;
    }
    if (pd_json_number(pd_json_object_get(gen, "top_k"), &d)) {
        if (!(d >= 0) || d > 1e9 || d != floor(d)) {
            pd_log_error("%s: top_k %g is not a count", gen_path, d);
            return PD_ERR_FORMAT;
        }
        c->gen_top_k = (uint32_t)d;
        c->gen_given |= PD_GEN_HAS_TOP_K;
    }
    return PD_OK;
}
