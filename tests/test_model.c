/* Tests of the model part on the real stories260K model: hyper-parameters, the forward
 * pass against a plain scalar reference written here, incremental decoding, and greedy
 * generation against the model's published output. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/gguf.h"
#include "catscope/model.h"
#include "catscope/testutil.h"

/* The first 40 greedy tokens from BOS, as published for stories260K (llama2.c
 * doc/stories260K.md). They spell "Once upon a time, there was a little girl named
 * Lily. She loved to play outside in the park. One day, she saw a big, r". */
static const int32_t golden_ids[40] = {
	403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
	410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
};

static struct model *shared_model;

static int
load_model(void **state)
{
	struct error err;

	shared_model = model_load(testutil_data_path("stories260K.gguf"), &err);
	if (shared_model == NULL) {
		fprintf(stderr, "cannot load the real model: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int
free_model(void **state)
{
	model_free(shared_model);
	return 0;
}

static void
config_matches_published_shapes(void **state)
{
	const struct model_config *c = &shared_model->config;

	assert_int_equal(c->dim, 64);
	assert_int_equal(c->hidden_dim, 172);
	assert_int_equal(c->n_layers, 5);
	assert_int_equal(c->n_heads, 8);
	assert_int_equal(c->n_kv_heads, 4);
	assert_int_equal(c->head_dim, 8);
	assert_int_equal(c->vocab_size, 512);
	assert_true(fabsf(c->norm_eps - 1e-5f) < 1e-9f);
	assert_true(fabsf(c->rope_theta - 10000.0f) < 1e-3f);
	assert_true(c->tied_output == false); /* the GGUF stores a copy as output.weight */
}

/* ---- A plain scalar reference, token by token, in double, straight from the file's
 * tensors (no folding, no BLAS), following llama2.c's run.c semantics. */

struct reference {
	const struct gguf_file *file;
	int dim, hidden, layers, heads, kv_heads, head_dim, vocab;
	double *key_cache, *value_cache; /* layers x positions x kv_dim */
	int max_positions;
};

static double
ref_weight(const struct reference *r, const char *name, int row, int col, int cols)
{
	const struct gguf_tensor *t = gguf_find_tensor(r->file, name);
	float value;

	assert_non_null(t);
	assert_int_equal(t->type, GGML_TYPE_F32);
	memcpy(&value, (const char *)t->data + ((size_t)row * cols + col) * 4, 4);
	return value;
}

static void
ref_matvec(const struct reference *r, const char *name, const double *x, int rows, int cols, double *y)
{
	for (int i = 0; i < rows; i++) {
		double sum = 0.0;

		for (int j = 0; j < cols; j++)
			sum += ref_weight(r, name, i, j, cols) * x[j];
		y[i] = sum;
	}
}

static void
ref_rmsnorm(const struct reference *r, const char *gain, const double *x, double *out)
{
	double ss = 0.0;

	for (int i = 0; i < r->dim; i++)
		ss += x[i] * x[i];
	ss = 1.0 / sqrt(ss / r->dim + 1e-5);
	for (int i = 0; i < r->dim; i++)
		out[i] = x[i] * ss * ref_weight(r, gain, 0, i, r->dim);
}

static void
ref_step(struct reference *r, int token, int pos, double *logits)
{
	int kv_dim = r->kv_heads * r->head_dim;
	double x[64], xb[64], q[64], k[32], v[32], att_out[64], o[64];
	double h1[172], h3[172], down[64], scores[512];
	char name[64];

	for (int i = 0; i < r->dim; i++)
		x[i] = ref_weight(r, "token_embd.weight", token, i, r->dim);
	for (int l = 0; l < r->layers; l++) {
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
		ref_rmsnorm(r, name, x, xb);
		snprintf(name, sizeof(name), "blk.%d.attn_q.weight", l);
		ref_matvec(r, name, xb, r->dim, r->dim, q);
		snprintf(name, sizeof(name), "blk.%d.attn_k.weight", l);
		ref_matvec(r, name, xb, kv_dim, r->dim, k);
		snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l);
		ref_matvec(r, name, xb, kv_dim, r->dim, v);
		/* RoPE on adjacent pairs, frequency 10000^(-(i mod head_dim)/head_dim). */
		for (int i = 0; i < r->dim; i += 2) {
			double freq = pow(10000.0, -(double)(i % r->head_dim) / r->head_dim);
			double c = cos(pos * freq), s = sin(pos * freq);
			double q0 = q[i], q1 = q[i + 1];

			q[i] = q0 * c - q1 * s;
			q[i + 1] = q0 * s + q1 * c;
			if (i < kv_dim) {
				double k0 = k[i], k1 = k[i + 1];

				k[i] = k0 * c - k1 * s;
				k[i + 1] = k0 * s + k1 * c;
			}
		}
		memcpy(r->key_cache + ((size_t)l * r->max_positions + pos) * kv_dim, k, sizeof(double) * kv_dim);
		memcpy(r->value_cache + ((size_t)l * r->max_positions + pos) * kv_dim, v, sizeof(double) * kv_dim);
		for (int h = 0; h < r->heads; h++) {
			int g = h / (r->heads / r->kv_heads);
			double max = -INFINITY, sum = 0.0;

			for (int t = 0; t <= pos; t++) {
				const double *kt = r->key_cache + ((size_t)l * r->max_positions + t) * kv_dim + g * r->head_dim;
				double dot = 0.0;

				for (int i = 0; i < r->head_dim; i++)
					dot += q[h * r->head_dim + i] * kt[i];
				scores[t] = dot / sqrt((double)r->head_dim);
				max = fmax(max, scores[t]);
			}
			for (int t = 0; t <= pos; t++) {
				scores[t] = exp(scores[t] - max);
				sum += scores[t];
			}
			for (int i = 0; i < r->head_dim; i++) {
				double acc = 0.0;

				for (int t = 0; t <= pos; t++)
					acc += scores[t] / sum *
					       r->value_cache[((size_t)l * r->max_positions + t) * kv_dim + g * r->head_dim + i];
				att_out[h * r->head_dim + i] = acc;
			}
		}
		snprintf(name, sizeof(name), "blk.%d.attn_output.weight", l);
		ref_matvec(r, name, att_out, r->dim, r->dim, o);
		for (int i = 0; i < r->dim; i++)
			x[i] += o[i];
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
		ref_rmsnorm(r, name, x, xb);
		snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", l);
		ref_matvec(r, name, xb, r->hidden, r->dim, h1);
		snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
		ref_matvec(r, name, xb, r->hidden, r->dim, h3);
		for (int i = 0; i < r->hidden; i++)
			h1[i] = h1[i] / (1.0 + exp(-h1[i])) * h3[i];
		snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
		ref_matvec(r, name, h1, r->dim, r->hidden, down);
		for (int i = 0; i < r->dim; i++)
			x[i] += down[i];
	}
	ref_rmsnorm(r, "output_norm.weight", x, xb);
	ref_matvec(r, "output.weight", xb, r->vocab, r->dim, logits);
}

static void
forward_matches_scalar_reference(void **state)
{
	enum { N = 48 };
	struct error err;
	struct gguf_file *file = gguf_open(testutil_data_path("stories260K.gguf"), &err);
	struct reference r = { file, 64, 172, 5, 8, 4, 8, 512, NULL, NULL, N };
	const struct model_config *c = &shared_model->config;
	int32_t tokens[N];
	float *logits = malloc(sizeof(float) * N * 512);
	double ref_logits[512];
	double max_diff = 0.0;

	assert_non_null(file);
	tokens[0] = 1;
	for (int i = 1; i < N; i++)
		tokens[i] = golden_ids[(i - 1) % 40];
	r.key_cache = calloc((size_t)5 * N * 32, sizeof(double));
	r.value_cache = calloc((size_t)5 * N * 32, sizeof(double));

	struct model_workspace *ws = model_workspace_new(c, N, N);
	struct model_kv_cache *cache = model_kv_cache_new(c, N);

	assert_int_equal(model_forward(shared_model, NULL, ws, cache, tokens, N, logits, NULL, &err), 0);
	for (int t = 0; t < N; t++) {
		ref_step(&r, tokens[t], t, ref_logits);
		for (int j = 0; j < 512; j++)
			max_diff = fmax(max_diff, fabs(ref_logits[j] - logits[(size_t)t * 512 + j]));
	}
	print_message("max |logit - reference| over %d positions: %.3g\n", N, max_diff);
	assert_true(max_diff <= 1e-4);

	model_kv_cache_free(cache);
	model_workspace_free(ws);
	free(r.key_cache);
	free(r.value_cache);
	free(logits);
	gguf_close(file);
}

static void
incremental_decoding_matches_window(void **state)
{
	enum { N = 32 };
	const struct model_config *c = &shared_model->config;
	struct model_workspace *ws = model_workspace_new(c, N, N);
	struct model_kv_cache *window = model_kv_cache_new(c, N);
	struct model_kv_cache *steps = model_kv_cache_new(c, N);
	float *all = malloc(sizeof(float) * N * 512);
	float one[512];
	int32_t tokens[N];
	struct error err;
	double max_diff = 0.0;

	tokens[0] = 1;
	for (int i = 1; i < N; i++)
		tokens[i] = golden_ids[i - 1];
	assert_int_equal(model_forward(shared_model, NULL, ws, window, tokens, N, all, NULL, &err), 0);
	for (int t = 0; t < N; t++) {
		assert_int_equal(model_forward(shared_model, NULL, ws, steps, tokens + t, 1, one, NULL, &err), 0);
		for (int j = 0; j < 512; j++)
			max_diff = fmax(max_diff, fabs(one[j] - all[(size_t)t * 512 + j]));
	}
	assert_true(max_diff <= 1e-4);
	model_kv_cache_free(window);
	model_kv_cache_free(steps);
	model_workspace_free(ws);
	free(all);
}

static void
greedy_generation_matches_published(void **state)
{
	const struct model_config *c = &shared_model->config;
	struct model_workspace *ws = model_workspace_new(c, 1, 64);
	struct model_kv_cache *cache = model_kv_cache_new(c, 64);
	float logits[512];
	int32_t token = 1;
	struct error err;

	for (int i = 0; i < 40; i++) {
		int best = 0;

		assert_int_equal(model_forward(shared_model, NULL, ws, cache, &token, 1, logits, NULL, &err), 0);
		for (int j = 1; j < 512; j++)
			best = logits[j] > logits[best] ? j : best;
		assert_int_equal(best, golden_ids[i]);
		token = best;
	}
	model_kv_cache_free(cache);
	model_workspace_free(ws);
}

static void
forward_rejects_bad_token(void **state)
{
	const struct model_config *c = &shared_model->config;
	struct model_workspace *ws = model_workspace_new(c, 2, 2);
	struct model_kv_cache *cache = model_kv_cache_new(c, 2);
	int32_t tokens[2] = { 1, 512 };
	struct error err;

	assert_int_equal(model_forward(shared_model, NULL, ws, cache, tokens, 2, NULL, NULL, &err), -1);
	assert_non_null(strstr(err.message, "512"));
	model_kv_cache_free(cache);
	model_workspace_free(ws);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_matches_published_shapes),
		cmocka_unit_test(forward_matches_scalar_reference),
		cmocka_unit_test(incremental_decoding_matches_window),
		cmocka_unit_test(greedy_generation_matches_published),
		cmocka_unit_test(forward_rejects_bad_token),
	};

	return cmocka_run_group_tests_name("model", tests, load_model, free_model);
}
