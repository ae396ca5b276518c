/* Model lifetime, layer shapes, weight folding and the fingerprint. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "catscope/alloc.h"
#include "catscope/hash.h"
#include "catscope/model.h"
#include "catscope/model_load.h"

static const char *const model_linear_names[LINEAR_COUNT] = {
	"q", "k", "v", "o", "gate", "up", "down",
};

const char *
model_linear_name(enum model_linear linear)
{
	return (unsigned)linear < LINEAR_COUNT ? model_linear_names[linear] : "unknown";
}

void
model_linear_shape(const struct model_config *c, enum model_linear linear, int *rows, int *cols)
{
	int q_dim = c->n_heads * c->head_dim;
	int kv_dim = c->n_kv_heads * c->head_dim;

	switch (linear) {
	case LINEAR_Q:
		*rows = q_dim;
		*cols = c->dim;
		break;
	case LINEAR_K:
	case LINEAR_V:
		*rows = kv_dim;
		*cols = c->dim;
		break;
	case LINEAR_O:
		*rows = c->dim;
		*cols = q_dim;
		break;
	case LINEAR_GATE:
	case LINEAR_UP:
		*rows = c->hidden_dim;
		*cols = c->dim;
		break;
	default:
		*rows = c->dim;
		*cols = c->hidden_dim;
		break;
	}
}

void
model_rope_halves_permutation(int n_heads, int head_dim, int *perm)
{
	int half = head_dim / 2;

	for (int h = 0; h < n_heads; h++)
		for (int j = 0; j < 2; j++)
			for (int i = 0; i < half; i++)
				perm[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
}

size_t
model_block_linear_count(const struct model_config *c)
{
	size_t total = 0;

	for (int j = 0; j < LINEAR_COUNT; j++) {
		int rows, cols;

		model_linear_shape(c, (enum model_linear)j, &rows, &cols);
		total += (size_t)rows * cols;
	}
	return total;
}

enum site_kind
model_linear_site(enum model_linear linear)
{
	switch (linear) {
	case LINEAR_Q:
	case LINEAR_K:
	case LINEAR_V:
		return SITE_ATTN_IN;
	case LINEAR_O:
		return SITE_ATTN_OUT;
	case LINEAR_GATE:
	case LINEAR_UP:
		return SITE_FFN_IN;
	default:
		return SITE_FFN_DOWN;
	}
}

int
model_check_config(const struct model_config *c, const char *path, struct error *err)
{
	/* Limits far above any released model, so that a hostile header cannot ask for
	 * absurd buffers before the tensor shapes are compared with the file. */
	if (c->dim <= 0 || c->dim > 65536 || c->hidden_dim <= 0 || c->hidden_dim > 262144 ||
	    c->n_layers <= 0 || c->n_layers > 1024 || c->n_heads <= 0 || c->n_heads > 1024 ||
	    c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0 ||
	    c->head_dim <= 0 || c->head_dim > 1024 || c->head_dim % 2 != 0 || c->vocab_size <= 0 ||
	    c->vocab_size > 4194304)
		return error_set(err, "%s: the model hyper-parameters are invalid (dim %d, hidden %d, "
				 "layers %d, heads %d, kv heads %d, head dim %d, vocab %d)",
				 path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
				 c->head_dim, c->vocab_size);
	/* Two positions are the least that eval (one to predict from, one to score) and
	 * generate (the prompt and one new token) can use. */
	if (c->context_length < 2 || c->context_length > MODEL_CONTEXT_MAX)
		return error_set(err, "%s: the context length %d is invalid; expected 2 to %d", path,
				 c->context_length, MODEL_CONTEXT_MAX);
	if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
		return error_set(err, "%s: the RMSNorm epsilon %g is invalid", path, (double)c->norm_eps);
	if (!(c->rope_theta > 0.0f) || isinf(c->rope_theta))
		return error_set(err, "%s: the RoPE base %g is invalid", path, (double)c->rope_theta);
	return 0;
}

void
model_fold_gain(float *w, int rows, int cols, const float *gain)
{
	for (int r = 0; r < rows; r++) {
		float *row = w + (size_t)r * cols;

		for (int i = 0; i < cols; i++)
			row[i] *= gain[i];
	}
}

void
model_compute_fingerprint(struct model *m)
{
	const struct model_config *c = &m->config;
	int shape[8] = { c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
			 c->vocab_size, c->tied_output };
	uint64_t h = hash_update(HASH_SEED, shape, sizeof(shape));

	h = hash_update(h, m->token_embedding, (size_t)c->vocab_size * c->dim * sizeof(float));
	h = hash_update(h, m->output_norm, (size_t)c->dim * sizeof(float));
	if (!c->tied_output)
		h = hash_update(h, m->output, (size_t)c->vocab_size * c->dim * sizeof(float));
	for (int l = 0; l < c->n_layers; l++) {
		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			h = hash_update(h, m->blocks[l].linear[j], (size_t)rows * cols * sizeof(float));
		}
	}
	m->fingerprint = h;
}

struct model *
model_load(const char *path, struct error *err)
{
	struct stat st;

	/* A directory is a Hugging Face checkpoint; anything else is read as GGUF, whose
	 * reader rejects other files by their magic. */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return model_is_export(path) ? model_load_export(path, err) : model_load_hf(path, err);
	return model_load_gguf(path, err);
}

void
model_free(struct model *m)
{
	if (m == NULL)
		return;
	tokenizer_free(m->tokenizer);
	free(m->storage);
	free(m->blocks);
	free(m->path);
	free(m);
}
