#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/half.h"
#include "catscope/simulate.h"

/* The forward hook: x <- Q(T x), token by token. */
static void
simulation_site_hook(void *ctx, int block, enum site_kind kind, float *x, int n, int dim)
{
	struct simulation *s = ctx;
	const struct transform *t = &s->transforms[analysis_site_index(block, kind)];

	transform_apply_activations(t, x, n);
	if (s->act.bits > 0)
		quant_fake_rows(x, n, dim, dim, &s->act, NULL);
}

static size_t
simulation_weight_count(const struct model_config *c)
{
	return model_block_linear_count(c) * (size_t)c->n_layers;
}

static int
simulation_build_site(struct simulation *s, struct analysis *a, int index, struct error *err)
{
	const struct analysis_site *site = &a->sites[index];
	struct site_layers layers;
	const struct site_stats *stats;
	float *sigma_t = NULL;
	int rc = 0;

	analysis_site_layers(a, index, &layers);
	stats = a->stats_fn ? a->stats_fn(a->stats_ctx, site->block, site->kind, err) : NULL;
	if (stats == NULL) {
		if (a->stats_fn == NULL)
			error_set(err, "simulated quantization needs calibration statistics; pass --calib");
		return -1;
	}
	if (transform_build(&site->spec, stats, &layers, &s->transforms[index], err) != 0)
		return -1;
	if (a->quant.rounding == QUANT_GPTQ || a->quant.clip_search) {
		sigma_t = alloc_array((size_t)stats->dim * stats->dim, sizeof(float));
		transform_conjugate(&s->transforms[index], stats->second_moment, sigma_t);
	}
	for (int l = 0; l < layers.count && rc == 0; l++) {
		/* layers point at the model's weights; the copy in s->blocks has the same order. */
		float *w = NULL;

		for (int j = 0; j < LINEAR_COUNT; j++) {
			if (a->model->blocks[site->block].linear[j] == layers.layer[l].weight)
				w = s->blocks[site->block].linear[j];
		}
		memcpy(w, layers.layer[l].weight, (size_t)layers.layer[l].rows * stats->dim * sizeof(float));
		transform_apply_weights(&s->transforms[index], w, layers.layer[l].rows);
		unsigned flags = 0;

		rc = engine_quantize_weights(w, layers.layer[l].rows, stats->dim, sigma_t, &a->quant, &flags, err);
	}
	free(sigma_t);
	return rc;
}

void
simulation_options_default(struct simulation_options *opt)
{
	opt->storage = SIMULATION_F32;
	opt->hf_rope_order = false;
}

static float
simulation_round(float v, enum simulation_storage storage)
{
	if (storage == SIMULATION_F16)
		return half_f16_to_f32(half_f32_to_f16(v));
	if (storage == SIMULATION_BF16)
		return half_bf16_to_f32(half_f32_to_bf16(v));
	return v;
}

/* Rounds the embeddings, the final norm and the output head into copies the view uses. */
static void
simulation_round_unquantized(struct simulation *s, enum simulation_storage storage)
{
	const struct model_config *c = &s->model->config;
	size_t table = (size_t)c->vocab_size * c->dim;
	size_t total = table * (c->tied_output ? 1 : 2) + (size_t)c->dim;
	float *p;

	if (storage == SIMULATION_F32)
		return;
	p = s->unquantized = alloc_aligned(total, sizeof(float));
	for (size_t i = 0; i < table; i++)
		p[i] = simulation_round(s->model->token_embedding[i], storage);
	s->view.token_embedding = p;
	s->view.output = p;
	p += table;
	if (!c->tied_output) {
		for (size_t i = 0; i < table; i++)
			p[i] = simulation_round(s->model->output[i], storage);
		s->view.output = p;
		p += table;
	}
	for (int i = 0; i < c->dim; i++)
		p[i] = simulation_round(s->model->output_norm[i], storage);
	s->view.output_norm = p;
}

/* Puts the q and k rows of every block into rotate-half order, head by head. */
static void
simulation_reorder_rope(struct simulation *s)
{
	const struct model_config *c = &s->model->config;

	for (int j = LINEAR_Q; j <= LINEAR_K; j++) {
		int heads = j == LINEAR_Q ? c->n_heads : c->n_kv_heads;
		int rows = heads * c->head_dim;
		int *perm = alloc_array((size_t)rows, sizeof(int));
		float *copy = alloc_array((size_t)rows * c->dim, sizeof(float));

		model_rope_halves_permutation(heads, c->head_dim, perm);
		for (int l = 0; l < c->n_layers; l++) {
			float *w = s->blocks[l].linear[j];

			memcpy(copy, w, (size_t)rows * c->dim * sizeof(float));
			for (int r = 0; r < rows; r++)
				memcpy(w + (size_t)r * c->dim, copy + (size_t)perm[r] * c->dim,
				       (size_t)c->dim * sizeof(float));
		}
		free(perm);
		free(copy);
	}
	s->view.config.rope_style = ROPE_HALVES;
}

struct simulation *
simulation_new(struct analysis *a, struct error *err)
{
	struct simulation_options opt;

	simulation_options_default(&opt);
	return simulation_new_with(a, &opt, err);
}

struct simulation *
simulation_new_with(struct analysis *a, const struct simulation_options *opt, struct error *err)
{
	const struct model_config *c = &a->model->config;
	struct simulation *s = alloc_zeroed(1, sizeof(*s));
	float *p;

	s->model = a->model;
	s->act = a->quant.act;
	s->blocks = alloc_zeroed((size_t)c->n_layers, sizeof(*s->blocks));
	s->transforms = alloc_zeroed((size_t)a->n_sites, sizeof(*s->transforms));
	p = s->storage = alloc_aligned(simulation_weight_count(c), sizeof(float));
	for (int l = 0; l < c->n_layers; l++) {
		s->blocks[l] = a->model->blocks[l];
		for (int j = 0; j < LINEAR_COUNT; j++) {
			int rows, cols;

			model_linear_shape(c, (enum model_linear)j, &rows, &cols);
			s->blocks[l].linear[j] = p;
			p += (size_t)rows * cols;
		}
	}
	for (int i = 0; i < a->n_sites; i++) {
		if (simulation_build_site(s, a, i, err) != 0) {
			error_prefix(err, "site blk.%d.%s", a->sites[i].block, site_kind_name(a->sites[i].kind));
			simulation_free(s);
			return NULL;
		}
	}
	s->hooks.ctx = s;
	s->hooks.site = simulation_site_hook;

	/* The view shares everything with the source model except what the options change;
	 * it owns nothing, so it is never passed to model_free. */
	s->view = *a->model;
	s->view.blocks = s->blocks;
	s->view.storage = NULL;
	simulation_round_unquantized(s, opt->storage);
	/* Biases and per-head norms would need the same reordering; GGUF llama models,
	 * the only adjacent-pair source, have neither. */
	if (opt->hf_rope_order && c->rope_style == ROPE_ADJACENT_PAIRS && !c->qkv_bias && !c->qk_norm)
		simulation_reorder_rope(s);
	return s;
}

void
simulation_free(struct simulation *s)
{
	if (s == NULL)
		return;
	for (int i = 0; s->transforms != NULL && i < s->model->config.n_layers * SITE_KIND_COUNT; i++)
		transform_free(&s->transforms[i]);
	free(s->transforms);
	free(s->blocks);
	free(s->storage);
	free(s->unquantized);
	free(s);
}
