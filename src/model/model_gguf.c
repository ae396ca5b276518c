/* Loading a Llama-family model from GGUF: hyper-parameters from the metadata, tensors
 * checked against the shapes they imply, weights converted to float32, tokenizer
 * from the tokenizer.ggml.* arrays. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/gguf.h"
#include "catscope/model.h"
#include "catscope/model_load.h"

static int
gguf_key_u32(const struct gguf_file *f, const char *arch, const char *suffix, int *out,
	     int fallback, struct error *err)
{
	char key[128];
	uint32_t value;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	if (gguf_find_kv(f, key) == NULL && fallback >= 0) {
		*out = fallback;
		return 0;
	}
	if (gguf_get_u32(f, key, &value, err) != 0)
		return -1;
	if (value > INT32_MAX)
		return error_set(err, "%s: metadata key '%s' is out of range (%" PRIu32 ")", f->path, key,
				 value);
	*out = (int)value;
	return 0;
}

static int
gguf_key_f32(const struct gguf_file *f, const char *arch, const char *suffix, float *out,
	     float fallback, struct error *err)
{
	char key[128];

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	if (gguf_find_kv(f, key) == NULL) {
		*out = fallback;
		return 0;
	}
	return gguf_get_f32(f, key, out, err);
}

static int
model_gguf_config(const struct gguf_file *f, struct model_config *c, struct error *err)
{
	struct gguf_string arch;
	const char *a;

	memset(c, 0, sizeof(*c));
	if (gguf_get_string(f, "general.architecture", &arch, err) != 0)
		return -1;
	if (arch.length >= sizeof(c->architecture) || arch.length != strnlen(arch.data, arch.length))
		return error_set(err, "%s: general.architecture is not a valid name", f->path);
	memcpy(c->architecture, arch.data, arch.length);
	if (strcmp(c->architecture, "llama") != 0)
		return error_set(err, "%s: architecture '%s' is not supported; catscope runs GGUF models "
				 "of the 'llama' architecture (Llama, Mistral, TinyLlama, SmolLM)",
				 f->path, c->architecture);
	a = c->architecture;
	if (gguf_key_u32(f, a, "embedding_length", &c->dim, -1, err) != 0 ||
	    gguf_key_u32(f, a, "feed_forward_length", &c->hidden_dim, -1, err) != 0 ||
	    gguf_key_u32(f, a, "block_count", &c->n_layers, -1, err) != 0 ||
	    gguf_key_u32(f, a, "attention.head_count", &c->n_heads, -1, err) != 0 ||
	    gguf_key_u32(f, a, "attention.head_count_kv", &c->n_kv_heads, c->n_heads, err) != 0 ||
	    gguf_key_u32(f, a, "context_length", &c->context_length, 2048, err) != 0 ||
	    gguf_key_f32(f, a, "attention.layer_norm_rms_epsilon", &c->norm_eps, 1e-5f, err) != 0 ||
	    gguf_key_f32(f, a, "rope.freq_base", &c->rope_theta, 10000.0f, err) != 0)
		return -1;
	if (c->n_heads <= 0 || c->dim % c->n_heads != 0)
		return error_set(err, "%s: embedding_length %d is not a multiple of head_count %d", f->path,
				 c->dim, c->n_heads);
	if (gguf_key_u32(f, a, "attention.key_length", &c->head_dim, c->dim / c->n_heads, err) != 0)
		return -1;

	int rope_dims;

	if (gguf_key_u32(f, a, "rope.dimension_count", &rope_dims, c->head_dim, err) != 0)
		return -1;
	if (rope_dims != c->head_dim)
		return error_set(err, "%s: %s.rope.dimension_count is %d but the head size is %d; partial "
				 "rotary embeddings are not supported", f->path, a, rope_dims, c->head_dim);
	c->rope_style = ROPE_ADJACENT_PAIRS;
	if (c->context_length <= 0)
		c->context_length = 2048;

	const struct gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");

	if (embd == NULL)
		return error_set(err, "%s: tensor 'token_embd.weight' is missing", f->path);
	if (embd->ne[1] > INT32_MAX)
		return error_set(err, "%s: tensor 'token_embd.weight' is too large", f->path);
	c->vocab_size = (int)embd->ne[1];
	c->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
	return model_check_config(c, f->path, err);
}

/* Finds a tensor, checks that it has rows x cols elements laid out as ggml's
 * [cols, rows], and converts it into dst unless dst is NULL. */
static int
model_gguf_tensor(const struct gguf_file *f, const char *name, int rows, int cols, float *dst,
		  struct error *err)
{
	const struct gguf_tensor *t = gguf_find_tensor(f, name);

	if (t == NULL)
		return error_set(err, "%s: tensor '%s' is missing; the file is not a complete llama model",
				 f->path, name);
	if (t->ne[0] != (uint64_t)cols || t->ne[1] != (uint64_t)rows || t->ne[2] != 1 || t->ne[3] != 1)
		return error_set(err, "%s: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %"
				 PRIu64 "], expected [%d, %d] from the hyper-parameters",
				 f->path, name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], cols, rows);
	if (dst != NULL && gguf_tensor_to_f32(t, dst, err) != 0) {
		error_prefix(err, "%s", f->path);
		return -1;
	}
	return 0;
}

static int
model_gguf_tokenizer(const struct gguf_file *f, struct model *m, struct error *err)
{
	struct gguf_string kind;
	const struct gguf_value *tokens, *scores, *types;
	struct tokenizer_spm_vocab vocab;
	uint32_t id;
	int rc = -1;

	if (gguf_get_string(f, "tokenizer.ggml.model", &kind, err) != 0)
		return -1;
	if (kind.length != 5 || memcmp(kind.data, "llama", 5) != 0)
		return error_set(err, "%s: tokenizer model '%.*s' is not supported; catscope reads the "
				 "SentencePiece-style 'llama' tokenizer from GGUF (use a Hugging Face "
				 "directory with tokenizer.json for byte-level BPE models)",
				 f->path, (int)(kind.length > 32 ? 32 : kind.length), kind.data);
	tokens = gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_VALUE_STRING, err);
	if (tokens == NULL)
		return -1;
	scores = gguf_get_array(f, "tokenizer.ggml.scores", GGUF_VALUE_FLOAT32, err);
	if (scores == NULL)
		return -1;
	types = gguf_find_kv(f, "tokenizer.ggml.token_type") ?
		gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_VALUE_INT32, err) : NULL;
	if (gguf_find_kv(f, "tokenizer.ggml.token_type") && types == NULL)
		return -1;
	if (tokens->as.array.count != (uint64_t)m->config.vocab_size ||
	    scores->as.array.count != tokens->as.array.count ||
	    (types && types->as.array.count != tokens->as.array.count))
		return error_set(err, "%s: the tokenizer arrays (%" PRIu64 " tokens, %" PRIu64 " scores) do "
				 "not match the embedding's %d rows", f->path, tokens->as.array.count,
				 scores->as.array.count, m->config.vocab_size);

	size_t n = (size_t)tokens->as.array.count;
	const char **pieces = alloc_array(n, sizeof(*pieces));
	size_t *lengths = alloc_array(n, sizeof(*lengths));
	float *score_values = alloc_array(n, sizeof(float));
	int32_t *type_values = types ? alloc_array(n, sizeof(int32_t)) : NULL;

	for (size_t i = 0; i < n; i++) {
		struct gguf_string s = gguf_array_string(tokens, i);

		pieces[i] = s.data;
		lengths[i] = (size_t)s.length;
	}
	memcpy(score_values, scores->as.array.data, n * sizeof(float));
	if (types)
		memcpy(type_values, types->as.array.data, n * sizeof(int32_t));

	memset(&vocab, 0, sizeof(vocab));
	vocab.n_tokens = n;
	vocab.pieces = pieces;
	vocab.piece_lengths = lengths;
	vocab.scores = score_values;
	vocab.types = type_values;
	vocab.bos_id = gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &id, NULL) == 0 && id < n ? (int32_t)id : -1;
	vocab.eos_id = gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &id, NULL) == 0 && id < n ? (int32_t)id : -1;
	vocab.unknown_id = gguf_get_u32(f, "tokenizer.ggml.unknown_token_id", &id, NULL) == 0 && id < n ?
		(int32_t)id : -1;
	vocab.add_bos = true;
	const struct gguf_kv *add_bos = gguf_find_kv(f, "tokenizer.ggml.add_bos_token");

	if (add_bos != NULL && add_bos->value.type == GGUF_VALUE_BOOL)
		vocab.add_bos = add_bos->value.as.u64 != 0;

	m->tokenizer = tokenizer_new_spm(&vocab, err);
	if (m->tokenizer == NULL)
		error_prefix(err, "%s", f->path);
	else
		rc = 0;
	free(pieces);
	free(lengths);
	free(score_values);
	free(type_values);
	return rc;
}

static const char *const model_gguf_linear_names[LINEAR_COUNT] = {
	"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

/* Checks every tensor's presence and shape before any weight buffer is allocated, so
 * that hyper-parameters in a hostile header cannot size an allocation that the
 * file's real tensors do not back. */
static int
model_gguf_check_shapes(const struct gguf_file *f, const struct model_config *c, struct error *err)
{
	char name[96];

	if (model_gguf_tensor(f, "token_embd.weight", c->vocab_size, c->dim, NULL, err) != 0)
		return -1;
	if (!c->tied_output && model_gguf_tensor(f, "output.weight", c->vocab_size, c->dim, NULL, err) != 0)
		return -1;
	if (model_gguf_tensor(f, "output_norm.weight", 1, c->dim, NULL, err) != 0)
		return -1;
	for (int l = 0; l < c->n_layers; l++) {
		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l, model_gguf_linear_names[j]);
			if (model_gguf_tensor(f, name, rows, cols, NULL, err) != 0)
				return -1;
		}
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
		if (model_gguf_tensor(f, name, 1, c->dim, NULL, err) != 0)
			return -1;
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
		if (model_gguf_tensor(f, name, 1, c->dim, NULL, err) != 0)
			return -1;
	}
	return 0;
}

static int
model_gguf_weights(const struct gguf_file *f, struct model *m, struct error *err)
{
	const struct model_config *c = &m->config;
	size_t per_block = 0;
	size_t total;
	float *p;
	float *gain;
	char name[96];

	if (model_gguf_check_shapes(f, c, err) != 0)
		return -1;
	per_block = model_block_linear_count(c);
	total = (size_t)c->vocab_size * c->dim * (c->tied_output ? 1 : 2) + (size_t)c->dim +
		per_block * (size_t)c->n_layers;
	m->storage = alloc_aligned(total, sizeof(float));
	m->blocks = alloc_zeroed((size_t)c->n_layers, sizeof(*m->blocks));
	p = m->storage;

	m->token_embedding = p;
	p += (size_t)c->vocab_size * c->dim;
	if (model_gguf_tensor(f, "token_embd.weight", c->vocab_size, c->dim, m->token_embedding, err) != 0)
		return -1;
	if (c->tied_output) {
		m->output = m->token_embedding;
	} else {
		m->output = p;
		p += (size_t)c->vocab_size * c->dim;
		if (model_gguf_tensor(f, "output.weight", c->vocab_size, c->dim, m->output, err) != 0)
			return -1;
	}
	m->output_norm = p;
	p += c->dim;
	if (model_gguf_tensor(f, "output_norm.weight", 1, c->dim, m->output_norm, err) != 0)
		return -1;

	gain = alloc_array((size_t)c->dim, sizeof(float));
	for (int l = 0; l < c->n_layers; l++) {
		struct model_block *b = &m->blocks[l];

		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			b->linear[j] = p;
			p += (size_t)rows * cols;
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l, model_gguf_linear_names[j]);
			if (model_gguf_tensor(f, name, rows, cols, b->linear[j], err) != 0)
				goto fail;
		}
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
		if (model_gguf_tensor(f, name, 1, c->dim, gain, err) != 0)
			goto fail;
		for (int j = LINEAR_Q; j <= LINEAR_V; j++)
			model_fold_gain(b->linear[j], j == LINEAR_Q ? c->n_heads * c->head_dim :
					c->n_kv_heads * c->head_dim, c->dim, gain);
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
		if (model_gguf_tensor(f, name, 1, c->dim, gain, err) != 0)
			goto fail;
		model_fold_gain(b->linear[LINEAR_GATE], c->hidden_dim, c->dim, gain);
		model_fold_gain(b->linear[LINEAR_UP], c->hidden_dim, c->dim, gain);
	}
	free(gain);
	return 0;
fail:
	free(gain);
	return -1;
}

struct model *
model_load_gguf(const char *path, struct error *err)
{
	struct gguf_file *f = gguf_open(path, err);
	struct model *m;

	if (f == NULL)
		return NULL;
	m = alloc_zeroed(1, sizeof(*m));
	m->path = alloc_strdup(path);
	if (model_gguf_config(f, &m->config, err) != 0 || model_gguf_weights(f, m, err) != 0 ||
	    model_gguf_tokenizer(f, m, err) != 0) {
		gguf_close(f);
		model_free(m);
		return NULL;
	}
	gguf_close(f);
	model_compute_fingerprint(m);
	return m;
}
