/* Loader of directories written by catscope export: the catscope.model object of
 * config.json, integer weights unpacked and scaled back to float32 (still in each
 * site's transformed basis), unquantized tensors, and the tokenizer. The online
 * transforms and activation quantizers are not applied here; export_runtime_open()
 * supplies them as forward hooks. */
#include "config.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/jsonfile.h"
#include "catscope/model_load.h"
#include "catscope/safetensors.h"
#include "model_export_check.h"

struct export_loader {
	const char *dir;
	char config_path[PATH_MAX];
	json_t *config;
	const json_t *cat;    /* the "catscope" object */
	struct safetensors_checkpoint *ckpt;
	int bits;
	bool symmetric;
	int group_size;
};

static const char *const export_loader_linear_names[LINEAR_COUNT] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

bool
model_is_export(const char *dir)
{
	char path[PATH_MAX];
	json_t *config;
	bool found;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (access(path, F_OK) != 0)
		return false;
	config = jsonfile_load(path, 0, NULL);
	found = json_is_object(json_object_get(config, "catscope"));
	json_decref(config);
	return found;
}

static int
export_loader_int(const struct export_loader *h, const json_t *o, const char *key, int *out,
		  struct error *err)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
		return error_set(err, "%s: catscope key '%s' is missing or not an integer", h->config_path, key);
	*out = (int)json_integer_value(v);
	return 0;
}

static int
export_loader_float(const struct export_loader *h, const json_t *o, const char *key, float *out,
		    struct error *err)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		return error_set(err, "%s: catscope key '%s' is missing or not a number", h->config_path, key);
	*out = (float)json_number_value(v);
	return 0;
}

static int
export_loader_config(struct export_loader *h, struct model_config *c, struct error *err)
{
	const json_t *m = json_object_get(h->cat, "model");
	const json_t *w = json_object_get(h->cat, "weights");
	const json_t *version = json_object_get(h->cat, "format_version");
	const char *arch = json_string_value(json_object_get(m, "architecture"));

	memset(c, 0, sizeof(*c));
	if (!json_is_integer(version) || json_integer_value(version) != 1)
		return error_set(err, "%s: catscope.format_version is not 1; this export needs another "
				      "catscope version", h->config_path);
	if (!json_is_object(m) || !json_is_object(w))
		return error_set(err, "%s: the catscope object has no \"model\" or \"weights\" object",
				 h->config_path);
	snprintf(c->architecture, sizeof(c->architecture), "%s", arch ? arch : "llama");
	if (export_loader_int(h, m, "dim", &c->dim, err) != 0 ||
	    export_loader_int(h, m, "hidden_dim", &c->hidden_dim, err) != 0 ||
	    export_loader_int(h, m, "n_layers", &c->n_layers, err) != 0 ||
	    export_loader_int(h, m, "n_heads", &c->n_heads, err) != 0 ||
	    export_loader_int(h, m, "n_kv_heads", &c->n_kv_heads, err) != 0 ||
	    export_loader_int(h, m, "head_dim", &c->head_dim, err) != 0 ||
	    export_loader_int(h, m, "vocab_size", &c->vocab_size, err) != 0 ||
	    export_loader_int(h, m, "context_length", &c->context_length, err) != 0 ||
	    export_loader_int(h, m, "rope_original_context", &c->rope_original_context, err) != 0 ||
	    export_loader_float(h, m, "norm_eps", &c->norm_eps, err) != 0 ||
	    export_loader_float(h, m, "rope_theta", &c->rope_theta, err) != 0 ||
	    export_loader_float(h, m, "rope_scaling_factor", &c->rope_scaling_factor, err) != 0 ||
	    export_loader_float(h, m, "rope_low_freq_factor", &c->rope_low_freq_factor, err) != 0 ||
	    export_loader_float(h, m, "rope_high_freq_factor", &c->rope_high_freq_factor, err) != 0)
		return -1;
	const char *rope = json_string_value(json_object_get(m, "rope_style"));

	if (rope != NULL && strcmp(rope, "halves") == 0)
		c->rope_style = ROPE_HALVES;
	else if (rope != NULL && strcmp(rope, "adjacent_pairs") == 0)
		c->rope_style = ROPE_ADJACENT_PAIRS;
	else
		return error_set(err, "%s: catscope.model.rope_style must be \"halves\" or "
				      "\"adjacent_pairs\"", h->config_path);
	/* The context length sizes the KV cache of generate and bounds --ctx. */
	if (c->context_length < 2 || c->context_length > MODEL_CONTEXT_MAX)
		return error_set(err, "%s: catscope.model.context_length is %d; expected 2 to %d",
				 h->config_path, c->context_length, MODEL_CONTEXT_MAX);
	if (c->rope_original_context < 0 || c->rope_original_context > MODEL_CONTEXT_MAX)
		return error_set(err, "%s: catscope.model.rope_original_context is %d; expected 0 to %d",
				 h->config_path, c->rope_original_context, MODEL_CONTEXT_MAX);
	/* Factor 0 is no scaling. Any other factor is Llama 3 scaling, which needs the same
	 * values as the Hugging Face loader accepts, or the forward pass divides by zero. */
	if (c->rope_scaling_factor != 0.0f &&
	    (!(c->rope_scaling_factor >= 1.0f) || isinf(c->rope_scaling_factor) ||
	     !(c->rope_low_freq_factor > 0.0f) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
	     isinf(c->rope_high_freq_factor) || c->rope_original_context < 1))
		return error_set(err, "%s: catscope.model.rope_scaling_factor is %g; expected 0 (no "
				 "scaling), or a finite factor of at least 1 with 0 < rope_low_freq_factor "
				 "< rope_high_freq_factor and rope_original_context above 0", h->config_path,
				 (double)c->rope_scaling_factor);
	c->qkv_bias = json_is_true(json_object_get(m, "qkv_bias"));
	c->qk_norm = json_is_true(json_object_get(m, "qk_norm"));
	c->tied_output = json_is_true(json_object_get(m, "tied_output"));
	if (export_loader_int(h, w, "bits", &h->bits, err) != 0 ||
	    export_loader_int(h, w, "group_size", &h->group_size, err) != 0)
		return -1;
	if (h->bits != 2 && h->bits != 4 && h->bits != 8)
		return error_set(err, "%s: catscope.weights.bits is %d; packed weights have 2, 4 or 8 bits",
				 h->config_path, h->bits);
	h->symmetric = json_is_true(json_object_get(w, "symmetric"));
	return model_check_config(c, h->config_path, err);
}

/* Finds a tensor and checks its dtype and shape; names the file in every error. */
static const struct safetensors_tensor *
export_loader_tensor(const struct export_loader *h, const char *name, enum safetensors_dtype dtype,
		     bool any_float, uint64_t d0, uint64_t d1, struct error *err)
{
	const struct safetensors_file *file;
	const struct safetensors_tensor *t = safetensors_checkpoint_find(h->ckpt, name, &file);
	int n_dims = d1 > 0 ? 2 : 1;

	if (t == NULL) {
		error_set(err, "%s: tensor '%s' is missing", h->dir, name);
		return NULL;
	}
	if (any_float ? t->dtype > SAFETENSORS_BF16 : t->dtype != dtype) {
		error_set(err, "%s: tensor '%s' has dtype %s, expected %s", file->path, name,
			  safetensors_dtype_name(t->dtype), any_float ? "F32, F16 or BF16" :
									safetensors_dtype_name(dtype));
		return NULL;
	}
	if (t->n_dims != n_dims || t->shape[0] != d0 || (n_dims == 2 && t->shape[1] != d1)) {
		error_set(err, "%s: tensor '%s' has shape [%" PRIu64 "%s%" PRIu64 "], expected [%" PRIu64
			       "%s%" PRIu64 "]", file->path, name, t->shape[0], t->n_dims > 1 ? ", " : "",
			  t->n_dims > 1 ? t->shape[1] : 0, d0, n_dims == 2 ? ", " : "", n_dims == 2 ? d1 : 0);
		return NULL;
	}
	return t;
}

static int
export_loader_floats(const struct export_loader *h, const char *name, uint64_t d0, uint64_t d1,
		     float *dst, struct error *err)
{
	const struct safetensors_tensor *t = export_loader_tensor(h, name, SAFETENSORS_F32, true, d0, d1, err);

	if (t == NULL)
		return -1;
	safetensors_tensor_to_f32(t, dst);
	/* Scales and unquantized tensors of a real export are finite; anything else is damage
	 * that would only show up as a NaN perplexity. */
	for (uint64_t i = 0; i < t->n_elements; i++) {
		if (!isfinite(dst[i]))
			return error_set(err, "%s: tensor '%s' has NaN or Inf values; the export is damaged",
					 h->dir, name);
	}
	return 0;
}

/* Unpacks and scales one linear layer: w[r][i] = (code - zero) * scale. */
static int
export_loader_linear(const struct export_loader *h, int l, enum model_linear j, int rows, int cols,
		     float *w, struct error *err)
{
	const char *base = export_loader_linear_names[j];
	int groups = h->group_size <= 0 || h->group_size >= cols ? 1 :
		     (cols + h->group_size - 1) / h->group_size;
	int g_size = groups == 1 ? cols : h->group_size;
	int per_word = 32 / h->bits;
	uint64_t words = ((uint64_t)cols + per_word - 1) / per_word;
	const struct safetensors_tensor *packed, *scale, *shape, *zero = NULL;
	char name[160];
	int64_t dims[2];

	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_packed", l, base);
	packed = export_loader_tensor(h, name, SAFETENSORS_I32, false, (uint64_t)rows, words, err);
	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_scale", l, base);
	scale = packed ? export_loader_tensor(h, name, SAFETENSORS_F32, false, (uint64_t)rows,
					      (uint64_t)groups, err) : NULL;
	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_shape", l, base);
	shape = scale ? export_loader_tensor(h, name, SAFETENSORS_I64, false, 2, 0, err) : NULL;
	if (shape == NULL)
		return -1;
	memcpy(dims, shape->data, sizeof(dims));
	if (dims[0] != rows || dims[1] != cols)
		return error_set(err, "%s: tensor '%s' is [%" PRId64 ", %" PRId64 "], expected [%d, %d]",
				 h->dir, name, dims[0], dims[1], rows, cols);
	if (!h->symmetric) {
		snprintf(name, sizeof(name), "model.layers.%d.%s.weight_zero_point", l, base);
		zero = export_loader_tensor(h, name, SAFETENSORS_I32, false, (uint64_t)rows, (uint64_t)groups, err);
		if (zero == NULL)
			return -1;
	}

	const uint8_t *pdata = packed->data, *sdata = scale->data;
	const uint8_t *zdata = zero ? zero->data : NULL;
	uint32_t mask = (1u << h->bits) - 1;

	for (int64_t at = 0; at < rows * (int64_t)groups; at++) {
		float s;

		memcpy(&s, sdata + 4 * at, 4);
		if (!isfinite(s))
			return error_set(err, "%s: tensor 'model.layers.%d.%s.weight_scale' has NaN or Inf "
					      "values; the export is damaged", h->dir, l, base);
	}

	for (int64_t r = 0; r < rows; r++)
		for (int i = 0; i < cols; i++) {
			int64_t at = r * groups + i / g_size;
			uint32_t word;
			float s;
			int32_t z = 1 << (h->bits - 1);

			/* Codes are packed per row, first code in the lowest bits. */
			memcpy(&word, pdata + 4 * (r * (int64_t)words + i / per_word), 4);
			memcpy(&s, sdata + 4 * at, 4);
			if (zdata != NULL)
				memcpy(&z, zdata + 4 * at, 4);
			w[r * cols + i] = ((float)((word >> ((i % per_word) * h->bits)) & mask) - (float)z) * s;
		}
	return 0;
}

static size_t
export_loader_block_floats(const struct model_config *c)
{
	size_t total = model_block_linear_count(c);

	total += 2 * (size_t)c->dim; /* norm gains while folding */
	if (c->qkv_bias)
		total += (size_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
	if (c->qk_norm)
		total += 2 * (size_t)c->head_dim;
	return total;
}

static int
export_loader_block(const struct export_loader *h, const struct model_config *c, int l,
		    struct model_block *b, float **cursor, struct error *err)
{
	float *p = *cursor;
	float *attn_norm, *ffn_norm;
	char name[160];
	int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;

	for (int j = 0; j < LINEAR_COUNT; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		b->linear[j] = p;
		p += (size_t)rows * cols;
		if (export_loader_linear(h, l, (enum model_linear)j, rows, cols, b->linear[j], err) != 0)
			return -1;
	}
	attn_norm = p;
	ffn_norm = p + c->dim;
	p += 2 * (size_t)c->dim;
	snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
	if (export_loader_floats(h, name, (uint64_t)c->dim, 0, attn_norm, err) != 0)
		return -1;
	snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
	if (export_loader_floats(h, name, (uint64_t)c->dim, 0, ffn_norm, err) != 0)
		return -1;

	/* The exporter stores ones (gains already folded); folding keeps other gains right. */
	for (int j = LINEAR_Q; j <= LINEAR_V; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		model_fold_gain(b->linear[j], rows, cols, attn_norm);
	}
	for (int j = LINEAR_GATE; j <= LINEAR_UP; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		model_fold_gain(b->linear[j], rows, cols, ffn_norm);
	}
	if (c->qkv_bias) {
		b->bias_q = p;
		b->bias_k = p + q_dim;
		b->bias_v = p + q_dim + kv_dim;
		p += (size_t)q_dim + 2 * (size_t)kv_dim;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_proj.bias", l);
		if (export_loader_floats(h, name, (uint64_t)q_dim, 0, b->bias_q, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_proj.bias", l);
		if (export_loader_floats(h, name, (uint64_t)kv_dim, 0, b->bias_k, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.v_proj.bias", l);
		if (export_loader_floats(h, name, (uint64_t)kv_dim, 0, b->bias_v, err) != 0)
			return -1;
	}
	if (c->qk_norm) {
		b->q_norm = p;
		b->k_norm = p + c->head_dim;
		p += 2 * (size_t)c->head_dim;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
		if (export_loader_floats(h, name, (uint64_t)c->head_dim, 0, b->q_norm, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
		if (export_loader_floats(h, name, (uint64_t)c->head_dim, 0, b->k_norm, err) != 0)
			return -1;
	}
	*cursor = p;
	return 0;
}

static int
export_loader_weights(const struct export_loader *h, struct model *m, struct error *err)
{
	const struct model_config *c = &m->config;
	size_t table = (size_t)c->vocab_size * c->dim;
	size_t total = table * (c->tied_output ? 1 : 2) + (size_t)c->dim +
		       export_loader_block_floats(c) * (size_t)c->n_layers;
	float *p;

	p = m->storage = alloc_aligned(total, sizeof(float));
	m->blocks = alloc_zeroed((size_t)c->n_layers, sizeof(*m->blocks));
	m->token_embedding = p;
	p += table;
	if (export_loader_floats(h, "model.embed_tokens.weight", (uint64_t)c->vocab_size,
				 (uint64_t)c->dim, m->token_embedding, err) != 0)
		return -1;
	if (c->tied_output) {
		m->output = m->token_embedding;
	} else {
		m->output = p;
		p += table;
		if (export_loader_floats(h, "lm_head.weight", (uint64_t)c->vocab_size, (uint64_t)c->dim,
					 m->output, err) != 0)
			return -1;
	}
	m->output_norm = p;
	p += c->dim;
	if (export_loader_floats(h, "model.norm.weight", (uint64_t)c->dim, 0, m->output_norm, err) != 0)
		return -1;
	for (int l = 0; l < c->n_layers; l++)
		if (export_loader_block(h, c, l, &m->blocks[l], &p, err) != 0)
			return -1;
	return 0;
}

/* Reads the optional special token id key of the vocabulary into *id: -1 when the key
 * is missing or null. Any other value outside 0..n-1 is damage, which would silently
 * drop BOS or EOS. */
static int
export_loader_token_id(const json_t *root, const char *key, size_t n, const char *path, int32_t *id,
		       struct error *err)
{
	const json_t *value = json_object_get(root, key);

	*id = -1;
	if (value == NULL || json_is_null(value))
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < 0 || (size_t)json_integer_value(value) >= n)
		return error_set(err, "%s: \"%s\" must be null or a token id from 0 to %zu; the export is "
				 "damaged, export again", path, key, n - 1);
	*id = (int32_t)json_integer_value(value);
	return 0;
}

/* Reads tokenizer.catscope.json, the SentencePiece vocabulary of a GGUF source. */
static int
export_loader_spm_vocab(const char *path, struct model *m, struct error *err)
{
	json_t *root = jsonfile_load(path, JSON_REJECT_DUPLICATES, err);
	const json_t *tokens = json_object_get(root, "tokens");
	const json_t *scores = json_object_get(root, "scores");
	const json_t *types = json_object_get(root, "token_types");
	struct tokenizer_spm_vocab vocab;
	size_t n;
	int rc = -1;

	if (root == NULL)
		return -1;
	n = json_array_size(tokens);
	if (n == 0 || json_array_size(scores) != n || (!json_is_null(types) && json_array_size(types) != n) ||
	    n > (size_t)m->config.vocab_size) {
		json_decref(root);
		return error_set(err, "%s: \"tokens\", \"scores\" and \"token_types\" must be arrays of the "
				      "same length, at most the vocab size %d", path, m->config.vocab_size);
	}

	const char **pieces = alloc_array(n, sizeof(char *));
	size_t *lengths = alloc_array(n, sizeof(size_t));
	float *score_values = alloc_array(n, sizeof(float));
	int32_t *type_values = json_is_null(types) ? NULL : alloc_array(n, sizeof(int32_t));
	bool valid = true;

	for (size_t i = 0; i < n && valid; i++) {
		const json_t *piece = json_array_get(tokens, i);

		valid = json_is_string(piece) && json_is_number(json_array_get(scores, i)) &&
			(type_values == NULL || json_is_integer(json_array_get(types, i)));
		if (!valid)
			break;
		pieces[i] = json_string_value(piece);
		lengths[i] = json_string_length(piece);
		score_values[i] = (float)json_number_value(json_array_get(scores, i));
		if (type_values != NULL)
			type_values[i] = (int32_t)json_integer_value(json_array_get(types, i));
	}
	memset(&vocab, 0, sizeof(vocab));
	if (!valid) {
		error_set(err, "%s: an entry of \"tokens\", \"scores\" or \"token_types\" has the wrong type",
			  path);
	} else if (export_loader_token_id(root, "bos_token_id", n, path, &vocab.bos_id, err) == 0 &&
		   export_loader_token_id(root, "eos_token_id", n, path, &vocab.eos_id, err) == 0 &&
		   export_loader_token_id(root, "unknown_token_id", n, path, &vocab.unknown_id, err) == 0) {
		vocab.n_tokens = n;
		vocab.pieces = pieces;
		vocab.piece_lengths = lengths;
		vocab.scores = score_values;
		vocab.types = type_values;
		vocab.add_bos = !json_is_false(json_object_get(root, "add_bos_token"));
		m->tokenizer = tokenizer_new_spm(&vocab, err);
		if (m->tokenizer == NULL)
			error_prefix(err, "%s", path);
		else
			rc = 0;
	}
	free(pieces);
	free(lengths);
	free(score_values);
	free(type_values);
	json_decref(root);
	return rc;
}

static int
export_loader_tokenizer(const struct export_loader *h, struct model *m, struct error *err)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/tokenizer.catscope.json", h->dir);
	if (access(path, F_OK) == 0)
		return export_loader_spm_vocab(path, m, err);
	m->tokenizer = tokenizer_load_hf(h->dir, err);
	return m->tokenizer == NULL ? -1 : 0;
}

struct model *
model_load_export(const char *dir, struct error *err)
{
	struct export_loader h = { .dir = dir };
	struct model *m = alloc_zeroed(1, sizeof(*m));
	int rc = -1;

	m->path = alloc_strdup(dir);
	snprintf(h.config_path, sizeof(h.config_path), "%s/config.json", dir);
	h.config = jsonfile_load(h.config_path, JSON_REJECT_DUPLICATES, err);
	h.cat = json_object_get(h.config, "catscope");
	if (h.config == NULL) {
		rc = -1; /* jsonfile_load has set err */
	} else if (!json_is_object(h.cat)) {
		error_set(err, "%s: no \"catscope\" object; not a catscope export", h.config_path);
	} else if (export_loader_config(&h, &m->config, err) == 0 &&
		   model_export_check_config(h.config, h.config_path, err) == 0 &&
		   (h.ckpt = safetensors_checkpoint_open(dir, err)) != NULL &&
		   model_export_check_layers(h.ckpt, m->config.n_layers, h.config_path, err) == 0 &&
		   export_loader_weights(&h, m, err) == 0 && export_loader_tokenizer(&h, m, err) == 0) {
		rc = 0;
	}
	safetensors_checkpoint_close(h.ckpt);
	json_decref(h.config);
	if (rc != 0) {
		model_free(m);
		return NULL;
	}
	model_compute_fingerprint(m);
	return m;
}
