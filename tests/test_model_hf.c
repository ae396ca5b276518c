/* Tests of the Hugging Face loader on hf-stories260K. The logits, greedy output and
 * tokenizer are compared with the GGUF copy of the same model. Half-precision, sharded,
 * Qwen2 and Qwen3 checkpoints are written here from the real weights, and patched
 * configs check what the loader rejects. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/model.h"
#include "catscope/safetensors.h"
#include "catscope/testutil.h"
#include "safetensors_writer.h"

enum { WINDOW = 64, VOCAB = 512 };

/* The first 40 greedy tokens from BOS, as published for stories260K (llama2.c
 * doc/stories260K.md). */
static const int32_t golden_ids[40] = {
	403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
	410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
};

static struct model *gguf_model, *hf_model;
static int32_t window[WINDOW];   /* BOS and the first 63 tokens of the TinyStories sample */
static float *hf_logits;         /* WINDOW x VOCAB logits of hf_model on window */
static char scratch[4096];

static char *
read_text(const char *path, size_t *length)
{
	FILE *f = fopen(path, "rb");
	char *text = malloc(1 << 16);

	assert_non_null(f);
	*length = fread(text, 1, (1 << 16) - 1, f);
	text[*length] = '\0';
	fclose(f);
	return text;
}

static float *
window_logits(const struct model *m)
{
	struct error err;
	struct model_workspace *ws = model_workspace_new(&m->config, WINDOW, WINDOW);
	struct model_kv_cache *cache = model_kv_cache_new(&m->config, WINDOW);
	float *logits = malloc(sizeof(float) * WINDOW * VOCAB);

	if (model_forward(m, NULL, ws, cache, window, WINDOW, logits, NULL, &err) != 0) {
		fprintf(stderr, "forward failed: %s\n", err.message);
		exit(1);
	}
	model_kv_cache_free(cache);
	model_workspace_free(ws);
	return logits;
}

static double
max_difference(const float *a, const float *b)
{
	double max = 0.0;

	for (size_t i = 0; i < (size_t)WINDOW * VOCAB; i++)
		max = fmax(max, fabs((double)a[i] - b[i]));
	return max;
}

static int
argmax(const float *logits)
{
	int best = 0;

	for (int j = 1; j < VOCAB; j++)
		best = logits[j] > logits[best] ? j : best;
	return best;
}

static int
setup(void **state)
{
	struct error err;
	size_t length, n_ids;
	int32_t *ids;
	char *text;

	snprintf(scratch, sizeof(scratch), "%s", testutil_scratch_dir());
	gguf_model = model_load(testutil_data_path("stories260K.gguf"), &err);
	if (gguf_model == NULL) {
		fprintf(stderr, "cannot load the GGUF model: %s\n", err.message);
		return -1;
	}
	hf_model = model_load(testutil_data_path("hf-stories260K"), &err);
	if (hf_model == NULL) {
		fprintf(stderr, "cannot load the HF model: %s\n", err.message);
		return -1;
	}
	text = read_text(testutil_data_path("tinystories_train_sample.txt"), &length);
	if (tokenizer_encode(gguf_model->tokenizer, text, 1000, true, &ids, &n_ids, &err) != 0 ||
	    n_ids < WINDOW) {
		fprintf(stderr, "cannot tokenize the sample\n");
		return -1;
	}
	memcpy(window, ids, sizeof(window));
	free(ids);
	free(text);
	hf_logits = window_logits(hf_model);
	return 0;
}

static int
teardown(void **state)
{
	char command[4352];

	model_free(gguf_model);
	model_free(hf_model);
	free(hf_logits);
	snprintf(command, sizeof(command), "rm -rf '%s'", scratch);
	return system(command) == 0 ? 0 : -1;
}

static void
config_read_from_json(void **state)
{
	const struct model_config *c = &hf_model->config;

	assert_string_equal(c->architecture, "llama");
	assert_int_equal(c->dim, 64);
	assert_int_equal(c->hidden_dim, 172);
	assert_int_equal(c->n_layers, 5);
	assert_int_equal(c->n_heads, 8);
	assert_int_equal(c->n_kv_heads, 4);
	assert_int_equal(c->head_dim, 8);
	assert_int_equal(c->vocab_size, 512);
	assert_int_equal(c->context_length, 512);
	assert_int_equal(c->rope_style, ROPE_HALVES);
	assert_true(c->tied_output);
	assert_false(c->qkv_bias);
	assert_false(c->qk_norm);
	assert_true(c->rope_scaling_factor == 0.0f);
	assert_true(hf_model->output == hf_model->token_embedding);
}

static void
logits_match_gguf(void **state)
{
	float *gguf_logits = window_logits(gguf_model);
	double diff = max_difference(gguf_logits, hf_logits);

	print_message("max |logit HF - logit GGUF| over %d positions: %.3g\n", WINDOW, diff);
	assert_true(diff <= 1e-4);
	for (int t = 0; t < WINDOW; t++)
		assert_int_equal(argmax(hf_logits + (size_t)t * VOCAB),
				 argmax(gguf_logits + (size_t)t * VOCAB));
	free(gguf_logits);
}

static void
greedy_matches_published(void **state)
{
	const struct model_config *c = &hf_model->config;
	struct model_workspace *ws = model_workspace_new(c, 1, 64);
	struct model_kv_cache *cache = model_kv_cache_new(c, 64);
	float logits[VOCAB];
	int32_t token = 1;
	struct error err;

	for (int i = 0; i < 40; i++) {
		assert_int_equal(model_forward(hf_model, NULL, ws, cache, &token, 1, logits, NULL, &err), 0);
		token = argmax(logits);
		assert_int_equal(token, golden_ids[i]);
	}
	model_kv_cache_free(cache);
	model_workspace_free(ws);
}

static void
tokenizer_matches_gguf(void **state)
{
	size_t length, lines = 0;
	char *text = read_text(testutil_data_path("tinystories_train_sample.txt"), &length);
	char *line = text;
	struct error err;

	while (line < text + length && lines < 200) {
		char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		int32_t *a, *b;
		size_t n_a, n_b;

		assert_int_equal(tokenizer_encode(gguf_model->tokenizer, line, n, true, &a, &n_a, &err), 0);
		assert_int_equal(tokenizer_encode(hf_model->tokenizer, line, n, true, &b, &n_b, &err), 0);
		assert_int_equal(n_a, n_b);
		assert_memory_equal(a, b, n_a * sizeof(int32_t));
		free(a);
		free(b);
		lines++;
		line += n + 1;
	}
	assert_true(lines >= 50);
	free(text);
}

/* Makes dir with links to the real config.json and tokenizer files. */
static void
make_model_dir(const char *dir, bool link_config)
{
	static const char *const names[] = { "tokenizer.json", "tokenizer_config.json", "config.json" };
	char target[8192], link[8192];

	mkdir(dir, 0700);
	for (int i = 0; i < (link_config ? 3 : 2); i++) {
		snprintf(target, sizeof(target), "%s/%s",
			 testutil_data_path("hf-stories260K"), names[i]);
		snprintf(link, sizeof(link), "%s/%s", dir, names[i]);
		unlink(link);
		assert_int_equal(symlink(target, link), 0);
	}
}

static size_t
read_real_tensors(struct st_tensor **list)
{
	struct error err;
	struct safetensors_file *f = safetensors_open(testutil_data_path("hf-stories260K/model.safetensors"),
						      &err);
	size_t n;

	assert_non_null(f);
	n = st_read_all(f, list);
	safetensors_close(f);
	return n;
}

static struct model *
load_dir(const char *dir)
{
	struct error err;
	struct model *m = model_load(dir, &err);

	if (m == NULL)
		print_message("%s\n", err.message);
	assert_non_null(m);
	return m;
}

/* Rounding each weight to F16 (relative error up to 2^-11) or BF16 (up to 2^-9) moves
 * the logits, which reach about 22 here, by that relative error accumulated over the
 * layers. Measured on this window: 0.0215 for F16 and 0.129 for BF16 (x86-64,
 * OpenBLAS). The bounds are 3x those, so the test catches a wrong conversion (a
 * swapped F16/BF16 decoder moves the logits by far more) without depending on the
 * exact rounding. */
static void
half_precision_copies_close(void **state)
{
	static const struct {
		const char *dtype;
		double tolerance;
	} cases[] = { { "F16", 0.065 }, { "BF16", 0.4 } };
	struct st_tensor *list;
	size_t n = read_real_tensors(&list);
	char dir[4352], path[8192];

	for (size_t i = 0; i < 2; i++) {
		struct model *m;
		float *logits;
		double diff;
		const float *embedding = NULL;

		snprintf(dir, sizeof(dir), "%s/%s", scratch, cases[i].dtype);
		make_model_dir(dir, true);
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		st_write_tensors(path, cases[i].dtype, list, n);
		m = load_dir(dir);

		/* The embedding is not folded, so it must be the exact rounding of the F32 one. */
		for (size_t j = 0; j < n; j++)
			if (strcmp(list[j].name, "model.embed_tokens.weight") == 0)
				embedding = list[j].values;
		assert_non_null(embedding);
		for (size_t e = 0; e < (size_t)VOCAB * 64; e++) {
			float rounded = i == 0 ? half_f16_to_f32(half_f32_to_f16(embedding[e])) :
				half_bf16_to_f32(half_f32_to_bf16(embedding[e]));

			assert_true(m->token_embedding[e] == rounded);
		}

		logits = window_logits(m);
		diff = max_difference(logits, hf_logits);
		print_message("%s copy: max |logit - F32 logit| = %.3g (bound %.3g)\n", cases[i].dtype,
			      diff, cases[i].tolerance);
		assert_true(diff > 0.0);
		assert_true(diff <= cases[i].tolerance);
		assert_true(m->fingerprint != hf_model->fingerprint);
		free(logits);
		model_free(m);
	}
	st_free_all(list, n);
}

static void
sharded_copy_identical(void **state)
{
	struct st_tensor *list;
	size_t n = read_real_tensors(&list);
	size_t half = n / 2;
	char dir[4352], path[8192];
	json_t *index = json_object(), *weight_map = json_object();
	struct model *m;
	float *logits;

	snprintf(dir, sizeof(dir), "%s/sharded", scratch);
	make_model_dir(dir, true);
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", dir);
	st_write_tensors(path, "F32", list, half);
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
	st_write_tensors(path, "F32", list + half, n - half);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(weight_map, list[i].name,
				    json_string(i < half ? "model-00001-of-00002.safetensors" :
						"model-00002-of-00002.safetensors"));
	json_object_set_new(index, "metadata", json_pack("{s:I}", "total_size", (json_int_t)1039872));
	json_object_set_new(index, "weight_map", weight_map);
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	assert_int_equal(json_dump_file(index, path, JSON_INDENT(2)), 0);
	json_decref(index);

	m = load_dir(dir);
	logits = window_logits(m);
	assert_true(max_difference(logits, hf_logits) == 0.0);
	assert_true(m->fingerprint == hf_model->fingerprint);
	free(logits);
	model_free(m);
	st_free_all(list, n);
}

/* Writes dir/config.json: the real config with the keys of patch (a JSON object)
 * replaced, and keys whose patch value is the string "(delete)" removed. */
static void
write_config(const char *dir, const char *patch)
{
	json_error_t json_err;
	json_t *config = json_load_file(testutil_data_path("hf-stories260K/config.json"), 0, &json_err);
	json_t *changes = json_loads(patch, 0, &json_err);
	const char *key;
	json_t *value;
	char path[8192];

	assert_non_null(config);
	assert_non_null(changes);
	json_object_foreach(changes, key, value) {
		if (json_is_string(value) && strcmp(json_string_value(value), "(delete)") == 0)
			json_object_del(config, key);
		else
			json_object_set(config, key, value);
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	assert_int_equal(json_dump_file(config, path, JSON_INDENT(2)), 0);
	json_decref(config);
	json_decref(changes);
}

static void
make_patched_dir(const char *dir, const char *patch)
{
	char target[8192], link[8192];

	make_model_dir(dir, false);
	snprintf(target, sizeof(target), "%s", testutil_data_path("hf-stories260K/model.safetensors"));
	snprintf(link, sizeof(link), "%s/model.safetensors", dir);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
	write_config(dir, patch);
}

static void
unsupported_configs_rejected(void **state)
{
	static const struct {
		const char *patch;
		const char *needle;
	} cases[] = {
		{ "{\"hidden_act\": \"gelu\"}", "'hidden_act' is \"gelu\"" },
		{ "{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", "\"rope_type\":\"yarn\"" },
		{ "{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", "\"type\":\"linear\"" },
		{ "{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}",
		  "required key 'low_freq_factor' is missing" },
		{ "{\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
		  "'rope_parameters' is {\"rope_type\":\"yarn\"" },
		{ "{\"architectures\": [\"GPT2LMHeadModel\"]}", "'architectures' is [\"GPT2LMHeadModel\"]" },
		{ "{\"architectures\": \"(delete)\"}", "'architectures' is missing" },
		{ "{\"attention_bias\": true}", "'attention_bias' is true" },
		{ "{\"mlp_bias\": true}", "'mlp_bias' is true" },
		{ "{\"partial_rotary_factor\": 0.5}", "'partial_rotary_factor' is 0.5" },
		{ "{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": 256}",
		  "'sliding_window' is 256" },
		{ "{\"architectures\": [\"Qwen2ForCausalLM\"], \"use_sliding_window\": true, "
		  "\"sliding_window\": 128}", "'sliding_window' is 128" },
		{ "{\"hidden_size\": \"(delete)\"}", "required key 'hidden_size' is missing" },
		{ "{\"hidden_size\": 64.5}", "'hidden_size' is 64.5 but must be a non-negative integer" },
		{ "{\"hidden_size\": 96}", "tensor 'model.embed_tokens.weight' has shape [512, 64], "
		  "expected [512, 96]" },
		{ "{\"num_attention_heads\": 6}", "hyper-parameters are invalid" },
		{ "{\"max_position_embeddings\": 16777217}",
		  "the context length 16777217 is invalid; expected 2 to 16777216" },
		{ "{\"max_position_embeddings\": 1}",
		  "the context length 1 is invalid; expected 2 to 16777216" },
		{ "{\"max_position_embeddings\": -5}", "'max_position_embeddings' is -5" },
		{ "{\"tie_word_embeddings\": false}", "tensor 'lm_head.weight' is missing" },
		{ "{\"architectures\": [\"Qwen2ForCausalLM\"]}",
		  "tensor 'model.layers.0.self_attn.q_proj.bias' is missing" },
		{ "{\"architectures\": [\"Qwen3ForCausalLM\"]}",
		  "tensor 'model.layers.0.self_attn.q_norm.weight' is missing" },
		{ "{\"vocab_size\": 500}", "expected [500, 64]" },
	};
	char dir[4352];
	struct error err;

	snprintf(dir, sizeof(dir), "%s/patched", scratch);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_patched_dir(dir, cases[i].patch);
		assert_null(model_load(dir, &err));
		print_message("%s\n", err.message);
		assert_non_null(strstr(err.message, dir));
		assert_non_null(strstr(err.message, cases[i].needle));
	}
}

/* A FIFO named config.json is rejected at once instead of blocking the load, and the
 * alarm turns a hang into a failure. */
static void
fifo_config_rejected(void **state)
{
	char dir[4352], path[8192];
	struct error err;

	snprintf(dir, sizeof(dir), "%s/fifo-config", scratch);
	make_model_dir(dir, false);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10);
	assert_null(model_load(dir, &err));
	alarm(0);
	print_message("%s\n", err.message);
	assert_non_null(strstr(err.message, path));
	assert_non_null(strstr(err.message, "not a regular file"));
}

static void
supported_variants_accepted(void **state)
{
	char dir[4352];
	struct model *m;
	float *logits;

	snprintf(dir, sizeof(dir), "%s/variant", scratch);

	/* Llama 3.1 scaling with an original context shorter than the window moves the
	 * low frequencies, so the logits change but stay finite. */
	make_patched_dir(dir, "{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
			 "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
			 "\"original_max_position_embeddings\": 16}}");
	m = load_dir(dir);
	assert_true(m->config.rope_scaling_factor == 8.0f);
	assert_true(m->config.rope_low_freq_factor == 1.0f);
	assert_true(m->config.rope_high_freq_factor == 4.0f);
	assert_int_equal(m->config.rope_original_context, 16);
	logits = window_logits(m);
	assert_true(max_difference(logits, hf_logits) > 1e-3);
	for (size_t i = 0; i < (size_t)WINDOW * VOCAB; i++)
		assert_true(isfinite(logits[i]));
	free(logits);
	model_free(m);

	/* Mistral without a window, or with one no shorter than the context, is full
	 * attention and must give the Llama logits exactly. */
	make_patched_dir(dir, "{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": 512}");
	m = load_dir(dir);
	assert_string_equal(m->config.architecture, "mistral");
	logits = window_logits(m);
	assert_true(max_difference(logits, hf_logits) == 0.0);
	free(logits);
	model_free(m);

	make_patched_dir(dir, "{\"rope_scaling\": {\"rope_type\": \"default\"}, \"rope_theta\": 10000}");
	m = load_dir(dir);
	assert_true(m->config.rope_scaling_factor == 0.0f);
	model_free(m);

	/* Newer transformers configs keep rope_theta inside rope_parameters. */
	make_patched_dir(dir, "{\"rope_theta\": \"(delete)\", \"rope_scaling\": \"(delete)\", "
			 "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500.0}}");
	m = load_dir(dir);
	assert_true(m->config.rope_theta == 500.0f);
	assert_true(m->config.rope_scaling_factor == 0.0f);
	model_free(m);
}

/* Adds to list, after the real tensors, one tensor per layer named suffix with n values
 * from fill(layer, i). Returns the new count. */
static size_t
add_layer_tensors(struct st_tensor **list, size_t n, const char *suffix, uint64_t length,
		  float (*fill)(int layer, uint64_t i))
{
	*list = realloc(*list, (n + 5) * sizeof(**list));
	for (int l = 0; l < 5; l++) {
		struct st_tensor *t = &(*list)[n + l];

		memset(t, 0, sizeof(*t));
		snprintf(t->name, sizeof(t->name), "model.layers.%d.%s", l, suffix);
		t->n_dims = 1;
		t->shape[0] = length;
		t->n_elements = length;
		t->values = malloc(length * sizeof(float));
		for (uint64_t i = 0; i < length; i++)
			t->values[i] = fill(l, i);
	}
	return n + 5;
}

static float
fill_zero(int layer, uint64_t i)
{
	return 0.0f;
}

static float
fill_pattern(int layer, uint64_t i)
{
	return 1.0f + 0.125f * (float)layer - 0.0625f * (float)i;
}

/* Qwen2 with all-zero q/k/v biases computes exactly what Llama does; the biases must
 * load into the blocks in order. */
static void
qwen2_zero_bias_matches_llama(void **state)
{
	struct st_tensor *list;
	size_t n = read_real_tensors(&list);
	char dir[4352], path[8192];
	struct model *m;
	float *logits;

	n = add_layer_tensors(&list, n, "self_attn.q_proj.bias", 64, fill_zero);
	n = add_layer_tensors(&list, n, "self_attn.k_proj.bias", 32, fill_pattern);
	n = add_layer_tensors(&list, n, "self_attn.v_proj.bias", 32, fill_zero);
	snprintf(dir, sizeof(dir), "%s/qwen2", scratch);
	make_model_dir(dir, false);
	write_config(dir, "{\"architectures\": [\"Qwen2ForCausalLM\"]}");
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	st_write_tensors(path, "F32", list, n);
	m = load_dir(dir);
	assert_true(m->config.qkv_bias);
	assert_string_equal(m->config.architecture, "qwen2");
	for (int l = 0; l < 5; l++) {
		for (int i = 0; i < 32; i++)
			assert_true(m->blocks[l].bias_k[i] == fill_pattern(l, (uint64_t)i));
		assert_true(m->blocks[l].bias_q[63] == 0.0f);
		assert_true(m->blocks[l].bias_v[31] == 0.0f);
	}
	assert_true(m->fingerprint != hf_model->fingerprint);
	model_free(m);

	/* With the k bias also zero, the logits must equal the Llama ones. */
	for (size_t i = n - 10; i < n - 5; i++)
		memset(list[i].values, 0, list[i].n_elements * sizeof(float));
	st_write_tensors(path, "F32", list, n);
	m = load_dir(dir);
	logits = window_logits(m);
	assert_true(max_difference(logits, hf_logits) == 0.0);
	free(logits);
	model_free(m);
	st_free_all(list, n);
}

static void
qwen3_head_norms_loaded(void **state)
{
	struct st_tensor *list;
	size_t n = read_real_tensors(&list);
	char dir[4352], path[8192];
	struct model *m;
	float *logits;

	n = add_layer_tensors(&list, n, "self_attn.q_norm.weight", 8, fill_pattern);
	n = add_layer_tensors(&list, n, "self_attn.k_norm.weight", 8, fill_pattern);
	snprintf(dir, sizeof(dir), "%s/qwen3", scratch);
	make_model_dir(dir, false);
	write_config(dir, "{\"architectures\": [\"Qwen3ForCausalLM\"]}");
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	st_write_tensors(path, "BF16", list, n);
	m = load_dir(dir);
	assert_true(m->config.qk_norm);
	assert_false(m->config.qkv_bias);
	for (int l = 0; l < 5; l++) {
		for (int i = 0; i < 8; i++) {
			assert_true(m->blocks[l].q_norm[i] == fill_pattern(l, (uint64_t)i));
			assert_true(m->blocks[l].k_norm[i] == fill_pattern(l, (uint64_t)i));
		}
	}
	logits = window_logits(m);
	for (size_t i = 0; i < (size_t)WINDOW * VOCAB; i++)
		assert_true(isfinite(logits[i]));
	free(logits);
	model_free(m);
	st_free_all(list, n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_read_from_json),
		cmocka_unit_test(logits_match_gguf),
		cmocka_unit_test(greedy_matches_published),
		cmocka_unit_test(tokenizer_matches_gguf),
		cmocka_unit_test(half_precision_copies_close),
		cmocka_unit_test(sharded_copy_identical),
		cmocka_unit_test(unsupported_configs_rejected),
		cmocka_unit_test(fifo_config_rejected),
		cmocka_unit_test(supported_variants_accepted),
		cmocka_unit_test(qwen2_zero_bias_matches_llama),
		cmocka_unit_test(qwen3_head_norms_loaded),
	};

	return cmocka_run_group_tests_name("model_hf", tests, setup, teardown);
}
