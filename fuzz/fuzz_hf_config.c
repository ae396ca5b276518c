/* Fuzz target: config.json of a Hugging Face model directory. The input is written as
 * config.json into a folder that also contains a tiny valid model.safetensors and
 * tokenizer.json, then the folder goes through the HF loader. The weights fit a
 * Llama-style config with hidden_size 8, intermediate_size 16, one layer, two heads
 * of 4, one key/value head and vocab_size 8, and also contain Qwen2 biases and Qwen3 head
 * norms, so mutations of the seeds can load and run one forward step. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catscope/model.h"
#include "catscope/model_load.h"
#include "catscope/tokenizer.h"
#include "fuzz_common.h"

#define TINY_DIM 8
#define TINY_HIDDEN 16
#define TINY_HEAD 4
#define TINY_Q (2 * TINY_HEAD)
#define TINY_KV TINY_HEAD
#define TINY_VOCAB 8

static const char *fuzz_dir;

static const struct {
	const char *name;
	int rows, cols; /* rows 0: a vector of cols */
} tiny_tensors[] = {
	{ "model.embed_tokens.weight", TINY_VOCAB, TINY_DIM },
	{ "lm_head.weight", TINY_VOCAB, TINY_DIM },
	{ "model.norm.weight", 0, TINY_DIM },
	{ "model.layers.0.self_attn.q_proj.weight", TINY_Q, TINY_DIM },
	{ "model.layers.0.self_attn.k_proj.weight", TINY_KV, TINY_DIM },
	{ "model.layers.0.self_attn.v_proj.weight", TINY_KV, TINY_DIM },
	{ "model.layers.0.self_attn.o_proj.weight", TINY_DIM, TINY_Q },
	{ "model.layers.0.mlp.gate_proj.weight", TINY_HIDDEN, TINY_DIM },
	{ "model.layers.0.mlp.up_proj.weight", TINY_HIDDEN, TINY_DIM },
	{ "model.layers.0.mlp.down_proj.weight", TINY_DIM, TINY_HIDDEN },
	{ "model.layers.0.input_layernorm.weight", 0, TINY_DIM },
	{ "model.layers.0.post_attention_layernorm.weight", 0, TINY_DIM },
	{ "model.layers.0.self_attn.q_proj.bias", 0, TINY_Q },
	{ "model.layers.0.self_attn.k_proj.bias", 0, TINY_KV },
	{ "model.layers.0.self_attn.v_proj.bias", 0, TINY_KV },
	{ "model.layers.0.self_attn.q_norm.weight", 0, TINY_HEAD },
	{ "model.layers.0.self_attn.k_norm.weight", 0, TINY_HEAD },
};

/* Writes model.safetensors with the tensors above as F32. Values are small and
 * deterministic, and every norm gain is 1. */
static void
write_weights(void)
{
	size_t n = sizeof(tiny_tensors) / sizeof(tiny_tensors[0]);
	char header[8192];
	size_t used = 0, data_size = 0, header_size;
	uint8_t *bytes;
	float *values;

	used += (size_t)snprintf(header + used, sizeof(header) - used, "{");
	for (size_t i = 0; i < n; i++) {
		size_t count = (size_t)(tiny_tensors[i].rows ? tiny_tensors[i].rows : 1) * tiny_tensors[i].cols;

		if (tiny_tensors[i].rows)
			used += (size_t)snprintf(header + used, sizeof(header) - used,
						 "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
						 "\"data_offsets\":[%zu,%zu]}", i ? "," : "",
						 tiny_tensors[i].name, tiny_tensors[i].rows,
						 tiny_tensors[i].cols, data_size, data_size + 4 * count);
		else
			used += (size_t)snprintf(header + used, sizeof(header) - used,
						 "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
						 "\"data_offsets\":[%zu,%zu]}", i ? "," : "",
						 tiny_tensors[i].name, tiny_tensors[i].cols, data_size,
						 data_size + 4 * count);
		data_size += 4 * count;
	}
	used += (size_t)snprintf(header + used, sizeof(header) - used, "}");
	if (used >= sizeof(header))
		abort();
	header_size = used;
	bytes = calloc(1, 8 + header_size + data_size);
	for (int i = 0; i < 8; i++)
		bytes[i] = (uint8_t)((uint64_t)header_size >> (8 * i));
	memcpy(bytes + 8, header, header_size);
	values = (float *)(void *)(bytes + 8 + header_size);
	for (size_t i = 0, at = 0; i < n; i++) {
		size_t count = (size_t)(tiny_tensors[i].rows ? tiny_tensors[i].rows : 1) * tiny_tensors[i].cols;
		int gain = strstr(tiny_tensors[i].name, "norm") != NULL;

		for (size_t j = 0; j < count; j++, at++) {
			float v = gain ? 1.0f : (float)((int)((at * 37) % 19) - 9) / 32.0f;

			memcpy((uint8_t *)values + 4 * at, &v, 4);
		}
	}
	fuzz_write_file(fuzz_dir, "model.safetensors", bytes, 8 + header_size + data_size);
	free(bytes);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char tokenizer[] =
		"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3},"
		"\"merges\":[\"a b\"]}}";
	fuzz_dir = fuzz_temp_dir();
	write_weights();
	fuzz_write_file(fuzz_dir, "tokenizer.json", (const uint8_t *)tokenizer, sizeof(tokenizer) - 1);
	return 0;
}

/* Encodes a short text and runs it through one forward step of two tokens. */
static void
exercise_model(struct model *m)
{
	struct error err;
	int32_t *ids = NULL;
	size_t n_ids = 0;

	if (tokenizer_encode(m->tokenizer, "abcab", 5, false, &ids, &n_ids, &err) == 0 && n_ids > 0) {
		int n = n_ids < 2 ? (int)n_ids : 2;
		struct model_kv_cache *cache = model_kv_cache_new(&m->config, n);
		struct model_workspace *ws = model_workspace_new(&m->config, n, n);
		float *logits = malloc((size_t)n * m->config.vocab_size * sizeof(float));

		model_forward(m, NULL, ws, cache, ids, n, logits, NULL, &err);
		free(logits);
		model_workspace_free(ws);
		model_kv_cache_free(cache);
	}
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct error err;
	struct model *m;

	fuzz_write_file(fuzz_dir, "config.json", data, size);
	m = model_load_hf(fuzz_dir, &err);
	if (m == NULL)
		return 0;
	exercise_model(m);
	model_free(m);
	return 0;
}
