/* The tensors of an export: packed integer weights and their scales, each site's
 * transform in compact form, and the unquantized embeddings, norms and head. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "export_impl.h"

const char *const export_linear_names[LINEAR_COUNT] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

/* Tries step s: every v[i] / s must round to an integer n_i inside the grid with
 * n_i * s == v[i] exactly. */
static int
export_try_step(const float *v, int n, const struct quant_params *p, float s, uint8_t *codes,
		int32_t *zero)
{
	int lo = 1 << 30, hi = -(1 << 30);

	for (int i = 0; i < n; i++) {
		float q = nearbyintf(v[i] / s);

		if (q * s != v[i] || fabsf(q) > 256.0f)
			return -1;
		if ((int)q < lo)
			lo = (int)q;
		if ((int)q > hi)
			hi = (int)q;
	}
	if (p->mode == QUANT_SYMMETRIC) {
		*zero = 1 << (p->bits - 1);
		if (lo < -*zero || hi > *zero - 1)
			return -1;
	} else {
		if (hi - lo > (1 << p->bits) - 1)
			return -1;
		*zero = -lo;
	}
	for (int i = 0; i < n; i++)
		codes[i] = (uint8_t)((int)nearbyintf(v[i] / s) + *zero);
	return 0;
}

int
export_recover_group(const float *v, int n, const struct quant_params *p, uint8_t *codes,
		     float *step, int32_t *zero)
{
	int max_level = p->mode == QUANT_SYMMETRIC ? 1 << (p->bits - 1) : (1 << p->bits) - 1;
	float amax = 0;

	for (int i = 0; i < n; i++)
		if (fabsf(v[i]) > amax)
			amax = fabsf(v[i]);
	if (amax == 0) {
		*step = 1.0f;
		*zero = p->mode == QUANT_SYMMETRIC ? 1 << (p->bits - 1) : 0;
		memset(codes, *zero, (size_t)n);
		return 0;
	}

	/* The largest value sits k steps from zero for some k on the grid; the division
	 * may miss the original step by an ulp or two, so the neighbours are tried too. */
	for (int k = 1; k <= max_level; k++) {
		float s0 = amax / (float)k;
		float candidates[5] = { s0, nextafterf(s0, INFINITY), nextafterf(s0, 0),
					nextafterf(nextafterf(s0, INFINITY), INFINITY),
					nextafterf(nextafterf(s0, 0), 0) };

		for (int c = 0; c < 5; c++) {
			if (export_try_step(v, n, p, candidates[c], codes, zero) == 0) {
				*step = candidates[c];
				return 0;
			}
		}
	}
	quant_group_step(v, n, p, 1.0f, step, zero);
	for (int i = 0; i < n; i++)
		codes[i] = quant_code(v[i], p, *step, *zero);
	return 1;
}

/* Reorders the rows of a rows x cols matrix of elements of size bytes by perm. */
static void
export_permute_rows(void *data, int rows, size_t row_bytes, const int *perm)
{
	uint8_t *copy = alloc_array((size_t)rows, row_bytes);

	memcpy(copy, data, (size_t)rows * row_bytes);
	for (int r = 0; r < rows; r++)
		memcpy((uint8_t *)data + (size_t)r * row_bytes, copy + (size_t)perm[r] * row_bytes,
		       row_bytes);
	free(copy);
}

/* The q or k rows of block tensors need the halves order when the source used
 * adjacent-pair RoPE and the export uses Hugging Face order; returns the permutation
 * or NULL. */
static int *
export_linear_permutation(const struct model_config *c, enum model_linear j, bool hf_order)
{
	int heads = j == LINEAR_Q ? c->n_heads : c->n_kv_heads;
	int *perm;

	if (!hf_order || c->rope_style != ROPE_ADJACENT_PAIRS || (j != LINEAR_Q && j != LINEAR_K))
		return NULL;
	perm = alloc_array((size_t)heads * c->head_dim, sizeof(int));
	model_rope_halves_permutation(heads, c->head_dim, perm);
	return perm;
}

static int
export_add_linear(struct safetensors_writer *w, const struct model_config *c, int l,
		  enum model_linear j, const float *weight, const struct quant_params *p,
		  bool hf_order, int *inexact, struct error *err)
{
	int rows, cols, groups, g_size;
	int64_t words;
	char name[160];
	uint8_t *codes;
	float *scales;
	int32_t *zeros, *packed;
	int64_t *shape_values;
	int *perm = export_linear_permutation(c, j, hf_order);

	model_linear_shape(c, j, &rows, &cols);
	groups = quant_group_count(p, cols);
	g_size = groups == 1 ? cols : p->group_size;
	words = quant_packed_words(cols, p->bits);
	codes = alloc_array((size_t)rows * cols, 1);
	scales = alloc_array((size_t)rows * groups, sizeof(float));
	zeros = alloc_array((size_t)rows * groups, sizeof(int32_t));
	for (int r = 0; r < rows; r++)
		for (int g = 0; g < groups; g++) {
			int start = g * g_size;
			int n = start + g_size <= cols ? g_size : cols - start;
			size_t at = (size_t)r * groups + g;

			*inexact += export_recover_group(weight + (size_t)r * cols + start, n, p,
							 codes + (size_t)r * cols + start, &scales[at],
							 &zeros[at]);
		}
	if (perm != NULL) {
		export_permute_rows(codes, rows, (size_t)cols, perm);
		export_permute_rows(scales, rows, groups * sizeof(float), perm);
		export_permute_rows(zeros, rows, groups * sizeof(int32_t), perm);
		free(perm);
	}

	/* Codes are packed row by row, so each row starts a new int32 word. */
	packed = alloc_array((size_t)rows * words, sizeof(int32_t));
	for (int r = 0; r < rows; r++)
		if (quant_pack(codes + (size_t)r * cols, cols, p->bits, packed + (size_t)r * words, err) < 0) {
			free(codes);
			free(scales);
			free(zeros);
			free(packed);
			return -1;
		}
	free(codes);

	uint64_t packed_shape[2] = { (uint64_t)rows, (uint64_t)words };
	uint64_t scale_shape[2] = { (uint64_t)rows, (uint64_t)groups };
	uint64_t two = 2;

	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_packed", l, export_linear_names[j]);
	safetensors_writer_add(w, name, SAFETENSORS_I32, 2, packed_shape, packed);
	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_scale", l, export_linear_names[j]);
	safetensors_writer_add(w, name, SAFETENSORS_F32, 2, scale_shape, scales);
	shape_values = alloc_array(2, sizeof(int64_t));
	shape_values[0] = rows;
	shape_values[1] = cols;
	snprintf(name, sizeof(name), "model.layers.%d.%s.weight_shape", l, export_linear_names[j]);
	safetensors_writer_add(w, name, SAFETENSORS_I64, 1, &two, shape_values);
	if (p->mode == QUANT_ASYMMETRIC) {
		/* NOTE: zero points stay unpacked int32, because catscope's asymmetric zero
		 * point is not clamped to the 4-bit range; compressed-tensors packs them. */
		snprintf(name, sizeof(name), "model.layers.%d.%s.weight_zero_point", l,
			 export_linear_names[j]);
		safetensors_writer_add(w, name, SAFETENSORS_I32, 2, scale_shape, zeros);
	} else {
		free(zeros);
	}
	return 0;
}

/* Adds a vector of n floats (optionally reordered by perm) in dtype. */
static void
export_add_vector(struct safetensors_writer *w, const char *name, enum safetensors_dtype dtype,
		  const float *values, int n, const int *perm)
{
	float *copy = alloc_array((size_t)n, sizeof(float));
	uint64_t shape = (uint64_t)n;

	for (int i = 0; i < n; i++)
		copy[i] = values[perm ? perm[i] : i];
	safetensors_writer_add_f32(w, name, dtype, 1, &shape, copy);
	free(copy);
}

static void
export_add_int_scalar(struct safetensors_writer *w, const char *name, int value)
{
	int32_t *data = alloc_array(1, sizeof(int32_t));
	uint64_t one = 1;

	data[0] = value;
	safetensors_writer_add(w, name, SAFETENSORS_I32, 1, &one, data);
}

/* Stores T = H . B . D of one site under model.layers.N.catscope.<site>. */
static void
export_add_transform(struct safetensors_writer *w, int l, enum site_kind kind,
		     const struct transform *t)
{
	char name[160];
	int d = t->dim;

	if (t->scale != NULL) {
		uint64_t shape = (uint64_t)d;

		snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.scale", l, site_kind_name(kind));
		safetensors_writer_add_f32(w, name, SAFETENSORS_F32, 1, &shape, t->scale);
	}
	if (t->dense_block > 0) {
		int k = t->dense_block;
		int full = d / k, tail = d % k;
		uint64_t shape[3] = { (uint64_t)full, (uint64_t)k, (uint64_t)k };

		if (full > 0) {
			snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.blocks", l,
				 site_kind_name(kind));
			safetensors_writer_add_f32(w, name, SAFETENSORS_F32, 3, shape, t->dense);
		}
		if (tail > 0) {
			uint64_t tail_shape[2] = { (uint64_t)tail, (uint64_t)tail };

			snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.blocks_tail", l,
				 site_kind_name(kind));
			safetensors_writer_add_f32(w, name, SAFETENSORS_F32, 2, tail_shape,
						   t->dense + (size_t)full * k * k);
		}
	}
	if (t->hadamard_block > 0) {
		snprintf(name, sizeof(name), "model.layers.%d.catscope.%s.hadamard_block", l,
			 site_kind_name(kind));
		export_add_int_scalar(w, name, t->hadamard_block);
	}
}

/* Embeddings, norms (ones: the gains are folded into the next layers), biases, q/k
 * norms and the output head. */
static void
export_add_unquantized(struct safetensors_writer *w, const struct model *m,
		       enum safetensors_dtype dtype, bool hf_order)
{
	const struct model_config *c = &m->config;
	uint64_t table[2] = { (uint64_t)c->vocab_size, (uint64_t)c->dim };
	float *ones = alloc_array((size_t)c->dim, sizeof(float));
	char name[160];

	for (int i = 0; i < c->dim; i++)
		ones[i] = 1.0f;
	safetensors_writer_add_f32(w, "model.embed_tokens.weight", dtype, 2, table, m->token_embedding);
	for (int l = 0; l < c->n_layers; l++) {
		const struct model_block *b = &m->blocks[l];
		int *perm_q = export_linear_permutation(c, LINEAR_Q, hf_order);
		int *perm_k = export_linear_permutation(c, LINEAR_K, hf_order);
		int *perm_head = NULL;
		int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;

		snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
		export_add_vector(w, name, dtype, ones, c->dim, NULL);
		snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
		export_add_vector(w, name, dtype, ones, c->dim, NULL);
		if (c->qkv_bias) {
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_proj.bias", l);
			export_add_vector(w, name, dtype, b->bias_q, q_dim, perm_q);
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_proj.bias", l);
			export_add_vector(w, name, dtype, b->bias_k, kv_dim, perm_k);
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.v_proj.bias", l);
			export_add_vector(w, name, dtype, b->bias_v, kv_dim, NULL);
		}
		if (c->qk_norm) {
			if (perm_q != NULL) {
				perm_head = alloc_array((size_t)c->head_dim, sizeof(int));
				model_rope_halves_permutation(1, c->head_dim, perm_head);
			}
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
			export_add_vector(w, name, dtype, b->q_norm, c->head_dim, perm_head);
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
			export_add_vector(w, name, dtype, b->k_norm, c->head_dim, perm_head);
		}
		free(perm_q);
		free(perm_k);
		free(perm_head);
	}
	export_add_vector(w, "model.norm.weight", dtype, m->output_norm, c->dim, NULL);
	if (!c->tied_output)
		safetensors_writer_add_f32(w, "lm_head.weight", dtype, 2, table, m->output);
	free(ones);
}

int
export_add_tensors(struct safetensors_writer *w, const struct simulation *sim,
		   const struct quant_config *qc, const struct export_options *opt, int *inexact,
		   struct error *err)
{
	const struct model *m = sim->model;
	const struct model_config *c = &m->config;
	int built = 0;

	export_add_unquantized(w, m, opt->dtype, !opt->source_rope_order);
	for (int l = 0; l < c->n_layers; l++) {
		for (int j = 0; j < LINEAR_COUNT; j++) {
			if (opt->interrupt_after >= 0 && built == opt->interrupt_after)
				raise(SIGINT);
			if (atomic_interrupted())
				return error_set(err, "interrupted");
			if (opt->fail_after >= 0 && built >= opt->fail_after)
				return error_set(err, "injected failure after %d layers", built);
			if (export_add_linear(w, c, l, (enum model_linear)j, sim->blocks[l].linear[j],
					      &qc->weight, !opt->source_rope_order, inexact,
					      err) != 0) {
				error_prefix(err, "blk.%d.%s", l, model_linear_name((enum model_linear)j));
				return -1;
			}
			built++;
		}
		for (int k = 0; k < SITE_KIND_COUNT; k++)
			export_add_transform(w, l, (enum site_kind)k,
					     &sim->transforms[analysis_site_index(l, (enum site_kind)k)]);
	}
	return 0;
}
