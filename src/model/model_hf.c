/* Loading a Hugging Face model directory: hyper-parameters from config.json, weights
 * from safetensors (one file or shards), tokenizer from tokenizer.json.
 *
 * Hugging Face Llama-family checkpoints store q_proj and k_proj rows for rotate-half
 * RoPE, so the weights are used unchanged with ROPE_HALVES. Linear weights are stored
 * as torch nn.Linear [out_features, in_features], which is the row-major rows x cols
 * layout the model uses. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/hash.h"
#include "catscope/model.h"
#include "catscope/model_load.h"
#include "catscope/safetensors.h"

enum hf_family { HF_LLAMA, HF_MISTRAL, HF_QWEN2, HF_QWEN3 };

static const struct {
	const char *class_name;
	const char *architecture; /* model_config.architecture, as GGUF names it */
	enum hf_family family;
} hf_architectures[] = {
	{ "LlamaForCausalLM", "llama", HF_LLAMA },
	{ "MistralForCausalLM", "mistral", HF_MISTRAL },
	{ "Qwen2ForCausalLM", "qwen2", HF_QWEN2 },
	{ "Qwen3ForCausalLM", "qwen3", HF_QWEN3 },
};

struct hf_loader {
	const char *dir;
	char config_path[4096];
	json_t *config;
	enum hf_family family;
	struct safetensors_checkpoint *ckpt;
};

/* Writes value as compact JSON into buf for a message, cut to fit. */
static const char *
hf_value_text(const json_t *value, char *buf, size_t size)
{
	char *text = value ? json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

	snprintf(buf, size, "%s", text ? text : "(missing)");
	free(text);
	return buf;
}

static int
hf_reject(const struct hf_loader *h, const char *key, const json_t *value, const char *why,
	  struct error *err)
{
	char text[128];

	return error_set(err, "%s: '%s' is %s, which catscope does not support: %s", h->config_path,
			 key, hf_value_text(value, text, sizeof(text)), why);
}

/* Reads an integer key. A missing or null key takes fallback, or is an error when
 * fallback is negative. */
static int
hf_config_int(const struct hf_loader *h, const char *key, int fallback, int *out, struct error *err)
{
	const json_t *value = json_object_get(h->config, key);

	if (value == NULL || json_is_null(value)) {
		if (fallback < 0)
			return error_set(err, "%s: the required key '%s' is missing", h->config_path, key);
		*out = fallback;
		return 0;
	}
	if (!json_is_integer(value) || json_integer_value(value) < 0 ||
	    json_integer_value(value) > INT32_MAX) {
		char text[128];

		return error_set(err, "%s: '%s' is %s but must be a non-negative integer", h->config_path,
				 key, hf_value_text(value, text, sizeof(text)));
	}
	*out = (int)json_integer_value(value);
	return 0;
}

static int
hf_config_float(const struct hf_loader *h, const json_t *object, const char *key, float fallback,
		float *out, struct error *err)
{
	const json_t *value = json_object_get(object, key);

	if (value == NULL || json_is_null(value)) {
		if (fallback < 0.0f)
			return error_set(err, "%s: the required key '%s' is missing", h->config_path, key);
		*out = fallback;
		return 0;
	}
	if (!json_is_number(value)) {
		char text[128];

		return error_set(err, "%s: '%s' is %s but must be a number", h->config_path, key,
				 hf_value_text(value, text, sizeof(text)));
	}
	*out = (float)json_number_value(value);
	return 0;
}

static int
hf_config_bool(const struct hf_loader *h, const char *key, bool fallback, bool *out,
	       struct error *err)
{
	const json_t *value = json_object_get(h->config, key);

	if (value == NULL || json_is_null(value)) {
		*out = fallback;
		return 0;
	}
	if (!json_is_boolean(value)) {
		char text[128];

		return error_set(err, "%s: '%s' is %s but must be true or false", h->config_path, key,
				 hf_value_text(value, text, sizeof(text)));
	}
	*out = json_is_true(value);
	return 0;
}

static int
hf_config_architecture(struct hf_loader *h, struct model_config *c, struct error *err)
{
	const json_t *list = json_object_get(h->config, "architectures");
	const char *name = json_string_value(json_array_get(list, 0));

	if (name == NULL)
		return error_set(err, "%s: 'architectures' is missing; expected a list such as "
				 "[\"LlamaForCausalLM\"]", h->config_path);
	for (size_t i = 0; i < sizeof(hf_architectures) / sizeof(hf_architectures[0]); i++) {
		if (strcmp(name, hf_architectures[i].class_name) == 0) {
			h->family = hf_architectures[i].family;
			snprintf(c->architecture, sizeof(c->architecture), "%s",
				 hf_architectures[i].architecture);
			return 0;
		}
	}
	return hf_reject(h, "architectures", list, "catscope runs LlamaForCausalLM, "
			 "MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM", err);
}

/* Accepts no scaling (null, absent or rope_type "default") and Llama 3.1 scaling. Newer
 * transformers configs put the same keys, and rope_theta, in "rope_parameters". */
static int
hf_config_rope_scaling(const struct hf_loader *h, struct model_config *c, struct error *err)
{
	const char *key = "rope_scaling";
	const json_t *scaling = json_object_get(h->config, key);
	const char *type;

	if (scaling == NULL || json_is_null(scaling)) {
		key = "rope_parameters";
		scaling = json_object_get(h->config, key);
	}
	if (scaling == NULL || json_is_null(scaling))
		return 0;
	if (!json_is_object(scaling))
		return hf_reject(h, key, scaling, "it must be null or an object", err);
	if (json_object_get(h->config, "rope_theta") == NULL &&
	    hf_config_float(h, scaling, "rope_theta", 10000.0f, &c->rope_theta, err) != 0)
		return -1;
	/* transformers reads "rope_type" and, in older configs, "type". */
	type = json_string_value(json_object_get(scaling, "rope_type"));
	if (type == NULL)
		type = json_string_value(json_object_get(scaling, "type"));
	if (type != NULL && strcmp(type, "default") == 0)
		return 0;
	if (type == NULL || strcmp(type, "llama3") != 0)
		return hf_reject(h, key, scaling, "the only RoPE scaling catscope runs is "
				 "rope_type \"llama3\"", err);

	const json_t *original = json_object_get(scaling, "original_max_position_embeddings");

	if (hf_config_float(h, scaling, "factor", -1.0f, &c->rope_scaling_factor, err) != 0 ||
	    hf_config_float(h, scaling, "low_freq_factor", -1.0f, &c->rope_low_freq_factor, err) != 0 ||
	    hf_config_float(h, scaling, "high_freq_factor", -1.0f, &c->rope_high_freq_factor, err) != 0)
		return -1;
	if (!json_is_integer(original) || json_integer_value(original) <= 0 ||
	    json_integer_value(original) > INT32_MAX)
		return hf_reject(h, key, scaling, "original_max_position_embeddings must be "
				 "a positive integer", err);
	c->rope_original_context = (int)json_integer_value(original);
	if (!(c->rope_scaling_factor >= 1.0f) || !(c->rope_low_freq_factor > 0.0f) ||
	    !(c->rope_high_freq_factor > c->rope_low_freq_factor))
		return hf_reject(h, key, scaling, "llama3 scaling needs factor >= 1 and "
				 "0 < low_freq_factor < high_freq_factor", err);
	return 0;
}

/* Rejects the config features that the forward pass does not implement, so that a
 * model is never run with a computation other than the one its config describes. */
static int
hf_config_features(const struct hf_loader *h, struct model_config *c, struct error *err)
{
	const json_t *act = json_object_get(h->config, "hidden_act");
	const json_t *partial = json_object_get(h->config, "partial_rotary_factor");
	const json_t *window = json_object_get(h->config, "sliding_window");
	bool attention_bias, mlp_bias, use_window;

	if (act != NULL && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
		return hf_reject(h, "hidden_act", act, "the feed-forward blocks must use \"silu\" "
				 "(SwiGLU)", err);
	if (partial != NULL && !json_is_null(partial) &&
	    !(json_is_number(partial) && json_number_value(partial) == 1.0))
		return hf_reject(h, "partial_rotary_factor", partial, "RoPE must rotate the whole head",
				 err);
	if (hf_config_bool(h, "mlp_bias", false, &mlp_bias, err) != 0 ||
	    hf_config_bool(h, "attention_bias", false, &attention_bias, err) != 0)
		return -1;
	if (mlp_bias)
		return hf_reject(h, "mlp_bias", json_true(), "the feed-forward layers have no bias", err);
	/* Qwen2 always has q/k/v biases and no o_proj bias. In Llama and Qwen3,
	 * attention_bias also adds an o_proj bias, which the forward pass lacks. */
	c->qkv_bias = h->family == HF_QWEN2;
	if (attention_bias && h->family != HF_QWEN2)
		return hf_reject(h, "attention_bias", json_true(), "it adds a bias to o_proj, and "
				 "catscope runs attention biases only on q/k/v (Qwen2)", err);
	c->qk_norm = h->family == HF_QWEN3;

	/* Within the window, sliding-window attention equals full attention, so a window
	 * at least as long as the context changes nothing. Qwen configs carry a window
	 * size that applies only with use_sliding_window. */
	if (hf_config_bool(h, "use_sliding_window", h->family == HF_MISTRAL, &use_window, err) != 0)
		return -1;
	if (use_window && window != NULL && !json_is_null(window)) {
		if (!json_is_integer(window) || json_integer_value(window) <= 0)
			return hf_reject(h, "sliding_window", window, "it must be null or a positive integer",
					 err);
		/* NOTE: the context could be cut to the window instead; the model would then
		 * run exactly, but only on windows up to sliding_window tokens. */
		if (json_integer_value(window) < c->context_length)
			return hf_reject(h, "sliding_window", window, "the window is shorter than "
					 "max_position_embeddings and catscope runs only full attention, "
					 "which equals sliding-window attention only on inputs up to the "
					 "window; set max_position_embeddings to at most the window to run "
					 "the model on such inputs", err);
	}
	return 0;
}

static int
hf_config(struct hf_loader *h, struct model_config *c, struct error *err)
{
	memset(c, 0, sizeof(*c));
	if (hf_config_architecture(h, c, err) != 0)
		return -1;
	if (hf_config_int(h, "hidden_size", -1, &c->dim, err) != 0 ||
	    hf_config_int(h, "intermediate_size", -1, &c->hidden_dim, err) != 0 ||
	    hf_config_int(h, "num_hidden_layers", -1, &c->n_layers, err) != 0 ||
	    hf_config_int(h, "num_attention_heads", -1, &c->n_heads, err) != 0 ||
	    hf_config_int(h, "vocab_size", -1, &c->vocab_size, err) != 0 ||
	    hf_config_int(h, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err) != 0 ||
	    hf_config_int(h, "max_position_embeddings", 2048, &c->context_length, err) != 0 ||
	    hf_config_float(h, h->config, "rms_norm_eps", 1e-6f, &c->norm_eps, err) != 0 ||
	    hf_config_float(h, h->config, "rope_theta", 10000.0f, &c->rope_theta, err) != 0)
		return -1;
	const json_t *head_dim = json_object_get(h->config, "head_dim");

	if (c->n_heads <= 0 || ((head_dim == NULL || json_is_null(head_dim)) && c->dim % c->n_heads != 0))
		return error_set(err, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
				 h->config_path, c->dim, c->n_heads);
	if (hf_config_int(h, "head_dim", c->dim / c->n_heads, &c->head_dim, err) != 0)
		return -1;
	if (c->context_length <= 0)
		c->context_length = 2048;
	c->rope_style = ROPE_HALVES;
	if (hf_config_rope_scaling(h, c, err) != 0 || hf_config_features(h, c, err) != 0)
		return -1;

	bool tied;

	/* transformers' Llama, Mistral and Qwen configs default to untied; a checkpoint
	 * without the key and without lm_head.weight can only be tied. */
	if (hf_config_bool(h, "tie_word_embeddings",
			   safetensors_checkpoint_find(h->ckpt, "lm_head.weight", NULL) == NULL, &tied,
			   err) != 0)
		return -1;
	c->tied_output = tied;
	return model_check_config(c, h->config_path, err);
}

/* Finds a tensor, checks that it has shape [rows, cols] (or [cols] when rows is 0), and
 * converts it into dst unless dst is NULL. */
static int
hf_tensor(const struct hf_loader *h, const char *name, int rows, int cols, float *dst,
	  struct error *err)
{
	const struct safetensors_file *file;
	const struct safetensors_tensor *t = safetensors_checkpoint_find(h->ckpt, name, &file);
	int n_dims = rows > 0 ? 2 : 1;

	if (t == NULL)
		return error_set(err, "%s: tensor '%s' is missing; the checkpoint does not match the "
				 "architecture in config.json", h->dir, name);
	if (t->n_dims != n_dims || t->shape[n_dims - 1] != (uint64_t)cols ||
	    (rows > 0 && t->shape[0] != (uint64_t)rows)) {
		char shape[160] = "";
		size_t used = 0;

		for (int i = 0; i < t->n_dims && used < sizeof(shape); i++)
			used += (size_t)snprintf(shape + used, sizeof(shape) - used, "%s%llu", i ? ", " : "",
						 (unsigned long long)t->shape[i]);
		if (rows > 0)
			return error_set(err, "%s: tensor '%s' has shape [%s], expected [%d, %d] from "
					 "config.json", file->path, name, shape, rows, cols);
		return error_set(err, "%s: tensor '%s' has shape [%s], expected [%d] from config.json",
				 file->path, name, shape, cols);
	}
	if (dst != NULL)
		safetensors_tensor_to_f32(t, dst);
	return 0;
}

static const char *const hf_linear_names[LINEAR_COUNT] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

/* Checks or reads (when b is not NULL) the tensors of block l other than its linear
 * weights: q/k/v biases and q/k norms. */
static int
hf_block_extras(const struct hf_loader *h, const struct model_config *c, int l,
		struct model_block *b, struct error *err)
{
	int q_dim = c->n_heads * c->head_dim;
	int kv_dim = c->n_kv_heads * c->head_dim;
	char name[96];

	if (c->qkv_bias) {
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_proj.bias", l);
		if (hf_tensor(h, name, 0, q_dim, b ? b->bias_q : NULL, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_proj.bias", l);
		if (hf_tensor(h, name, 0, kv_dim, b ? b->bias_k : NULL, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.v_proj.bias", l);
		if (hf_tensor(h, name, 0, kv_dim, b ? b->bias_v : NULL, err) != 0)
			return -1;
	}
	if (c->qk_norm) {
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
		if (hf_tensor(h, name, 0, c->head_dim, b ? b->q_norm : NULL, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
		if (hf_tensor(h, name, 0, c->head_dim, b ? b->k_norm : NULL, err) != 0)
			return -1;
	}
	return 0;
}

/* Checks every tensor's presence and shape before any weight buffer is allocated, so
 * that a config.json that does not match the checkpoint cannot size an allocation. */
static int
hf_check_shapes(const struct hf_loader *h, const struct model_config *c, struct error *err)
{
	char name[96];

	if (hf_tensor(h, "model.embed_tokens.weight", c->vocab_size, c->dim, NULL, err) != 0 ||
	    hf_tensor(h, "model.norm.weight", 0, c->dim, NULL, err) != 0)
		return -1;
	if (!c->tied_output && hf_tensor(h, "lm_head.weight", c->vocab_size, c->dim, NULL, err) != 0)
		return -1;
	for (int l = 0; l < c->n_layers; l++) {
		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, hf_linear_names[j]);
			if (hf_tensor(h, name, rows, cols, NULL, err) != 0)
				return -1;
		}
		snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
		if (hf_tensor(h, name, 0, c->dim, NULL, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
		if (hf_tensor(h, name, 0, c->dim, NULL, err) != 0)
			return -1;
		if (hf_block_extras(h, c, l, NULL, err) != 0)
			return -1;
	}
	return 0;
}

static size_t
hf_block_floats(const struct model_config *c)
{
	size_t n = model_block_linear_count(c);

	if (c->qkv_bias)
		n += (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
	if (c->qk_norm)
		n += 2 * (size_t)c->head_dim;
	return n;
}

/* Reads the weights of block l into memory at *p and folds the two RMSNorm gains. The
 * attention gain folds into q/k/v exactly even with q/k/v biases, because the bias is
 * added after the product. */
static int
hf_block(const struct hf_loader *h, const struct model_config *c, int l, struct model_block *b,
	 float **p, float *gain, struct error *err)
{
	char name[96];

	for (int j = 0; j < LINEAR_COUNT; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		b->linear[j] = *p;
		*p += (size_t)rows * cols;
		snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, hf_linear_names[j]);
		if (hf_tensor(h, name, rows, cols, b->linear[j], err) != 0)
			return -1;
	}
	if (c->qkv_bias) {
		b->bias_q = *p;
		*p += (size_t)c->n_heads * c->head_dim;
		b->bias_k = *p;
		*p += (size_t)c->n_kv_heads * c->head_dim;
		b->bias_v = *p;
		*p += (size_t)c->n_kv_heads * c->head_dim;
	}
	if (c->qk_norm) {
		b->q_norm = *p;
		*p += c->head_dim;
		b->k_norm = *p;
		*p += c->head_dim;
	}
	if (hf_block_extras(h, c, l, b, err) != 0)
		return -1;

	snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
	if (hf_tensor(h, name, 0, c->dim, gain, err) != 0)
		return -1;
	for (int j = LINEAR_Q; j <= LINEAR_V; j++)
		model_fold_gain(b->linear[j], j == LINEAR_Q ? c->n_heads * c->head_dim :
				c->n_kv_heads * c->head_dim, c->dim, gain);
	snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
	if (hf_tensor(h, name, 0, c->dim, gain, err) != 0)
		return -1;
	model_fold_gain(b->linear[LINEAR_GATE], c->hidden_dim, c->dim, gain);
	model_fold_gain(b->linear[LINEAR_UP], c->hidden_dim, c->dim, gain);
	return 0;
}

static int
hf_weights(const struct hf_loader *h, struct model *m, struct error *err)
{
	const struct model_config *c = &m->config;
	size_t embedding = (size_t)c->vocab_size * c->dim;
	float *p, *gain;
	int rc = 0;

	if (hf_check_shapes(h, c, err) != 0)
		return -1;
	m->storage = alloc_aligned(embedding * (c->tied_output ? 1 : 2) + (size_t)c->dim +
				   hf_block_floats(c) * (size_t)c->n_layers, sizeof(float));
	m->blocks = alloc_zeroed((size_t)c->n_layers, sizeof(*m->blocks));
	p = m->storage;

	m->token_embedding = p;
	p += embedding;
	if (hf_tensor(h, "model.embed_tokens.weight", c->vocab_size, c->dim, m->token_embedding,
		      err) != 0)
		return -1;
	if (c->tied_output) {
		m->output = m->token_embedding;
	} else {
		m->output = p;
		p += embedding;
		if (hf_tensor(h, "lm_head.weight", c->vocab_size, c->dim, m->output, err) != 0)
			return -1;
	}
	m->output_norm = p;
	p += c->dim;
	if (hf_tensor(h, "model.norm.weight", 0, c->dim, m->output_norm, err) != 0)
		return -1;

	gain = alloc_array((size_t)c->dim, sizeof(float));
	for (int l = 0; l < c->n_layers && rc == 0; l++)
		rc = hf_block(h, c, l, &m->blocks[l], &p, gain, err);
	free(gain);
	return rc;
}

static int
hf_tokenizer(const struct hf_loader *h, struct model *m, struct error *err)
{
	m->tokenizer = tokenizer_load_hf(h->dir, err);
	if (m->tokenizer == NULL)
		return -1;
	if (tokenizer_vocab_size(m->tokenizer) > (size_t)m->config.vocab_size)
		return error_set(err, "%s: tokenizer.json has %zu tokens but the model's vocab_size is %d; "
				 "the tokenizer does not belong to this model", h->dir,
				 tokenizer_vocab_size(m->tokenizer), m->config.vocab_size);
	return 0;
}

/* Extends the shared fingerprint with the tensors that only some architectures have,
 * so that two models that differ only in their q/k/v biases or q/k norms differ. */
static void
hf_fingerprint_extras(struct model *m)
{
	const struct model_config *c = &m->config;
	size_t q_bytes = (size_t)c->n_heads * c->head_dim * sizeof(float);
	size_t kv_bytes = (size_t)c->n_kv_heads * c->head_dim * sizeof(float);
	size_t norm_bytes = (size_t)c->head_dim * sizeof(float);
	uint64_t h = m->fingerprint;

	for (int l = 0; l < c->n_layers; l++) {
		const struct model_block *b = &m->blocks[l];

		if (c->qkv_bias) {
			h = hash_update(h, b->bias_q, q_bytes);
			h = hash_update(h, b->bias_k, kv_bytes);
			h = hash_update(h, b->bias_v, kv_bytes);
		}
		if (c->qk_norm) {
			h = hash_update(h, b->q_norm, norm_bytes);
			h = hash_update(h, b->k_norm, norm_bytes);
		}
	}
	m->fingerprint = h;
}

static int
hf_open_config(struct hf_loader *h, struct error *err)
{
	json_error_t json_err;
	struct stat st;
	int fd;

	snprintf(h->config_path, sizeof(h->config_path), "%s/config.json", h->dir);
	if (access(h->config_path, F_OK) != 0)
		return error_set(err, "%s: not a regular file, and not a Hugging Face model directory "
				 "because it has no config.json", h->dir);
	/* O_NONBLOCK and the regular-file check keep a FIFO named config.json from
	 * blocking the load. */
	fd = open(h->config_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return error_set(err, "%s: cannot open the model config: %s", h->config_path,
				 strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error_set(err, "%s: the model config is not a regular file", h->config_path);
	}
	h->config = json_loadfd(fd, JSON_REJECT_DUPLICATES, &json_err);
	close(fd);
	if (h->config == NULL)
		return error_set(err, "%s: cannot read the model config: %s (line %d, column %d)",
				 h->config_path, json_err.text, json_err.line, json_err.column);
	if (!json_is_object(h->config))
		return error_set(err, "%s: the model config is not a JSON object", h->config_path);
	return 0;
}

struct model *
model_load_hf(const char *dir, struct error *err)
{
	struct hf_loader h = { .dir = dir };
	struct model *m = alloc_zeroed(1, sizeof(*m));
	int rc;

	m->path = alloc_strdup(dir);
	rc = hf_open_config(&h, err);
	if (rc == 0) {
		h.ckpt = safetensors_checkpoint_open(dir, err);
		rc = h.ckpt == NULL ? -1 : 0;
	}
	if (rc == 0)
		rc = hf_config(&h, &m->config, err);
	if (rc == 0)
		rc = hf_weights(&h, m, err);
	if (rc == 0)
		rc = hf_tokenizer(&h, m, err);
	safetensors_checkpoint_close(h.ckpt);
	json_decref(h.config);
	if (rc != 0) {
		model_free(m);
		return NULL;
	}
	model_compute_fingerprint(m);
	hf_fingerprint_extras(m);
	return m;
}
