/* Fuzz target: the GGUF reader, then the llama model loader and its tokenizer on the
 * same bytes. Every input must either load or fail with a message; the sanitizers
 * turn any out-of-bounds access, leak or undefined behaviour into a crash.
 *
 * NOTE: byte mutations rarely keep a file loadable, so the model loader, tokenizer and
 * forward pass are reached mostly through the seeds; tests/test_gguf.c covers those
 * paths with hand-built hostile files. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/gguf.h"
#include "catscope/model.h"
#include "catscope/tokenizer.h"
#include "fuzz_common.h"

/* Tensors larger than this are not converted, so that one input stays fast. */
#define FUZZ_MAX_CONVERT_ELEMENTS (1u << 16)

/* Reads every metadata value and tensor the way a consumer would. */
static void
exercise_file(const struct gguf_file *f)
{
	struct error err;

	for (uint64_t i = 0; i < f->n_kv; i++) {
		const struct gguf_value *v = &f->kv[i].value;
		uint32_t u;
		float x;
		struct gguf_string s;

		gguf_get_u32(f, f->kv[i].key, &u, &err);
		gguf_get_f32(f, f->kv[i].key, &x, &err);
		gguf_get_string(f, f->kv[i].key, &s, &err);
		if (v->type == GGUF_VALUE_ARRAY && v->as.array.type == GGUF_VALUE_STRING) {
			volatile uint8_t sink = 0;

			for (uint64_t j = 0; j < v->as.array.count; j++) {
				s = gguf_array_string(v, j);
				if (s.length > 0)
					sink ^= (uint8_t)s.data[s.length - 1];
			}
			(void)sink;
		}
	}
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		float *out;

		if (gguf_find_tensor(f, t->name) == NULL)
			abort();
		if (t->n_elements > FUZZ_MAX_CONVERT_ELEMENTS)
			continue;
		out = malloc(t->n_elements * sizeof(float));
		gguf_tensor_to_f32(t, out, &err);
		free(out);
	}
}

/* Runs the tokenizer and two forward steps of a model that loaded. */
static void
exercise_model(struct model *m)
{
	static const char text[] = "Once upon a time \xe2\x96\x81 <s> \xff\xfe caf\xc3\xa9";
	struct error err;
	int32_t *ids = NULL;
	size_t n_ids = 0;

	if (tokenizer_encode(m->tokenizer, text, sizeof(text) - 1, true, &ids, &n_ids, &err) == 0) {
		char *decoded = tokenizer_decode(m->tokenizer, ids, n_ids);
		size_t len;

		free(decoded);
		for (size_t i = 0; i < n_ids; i++)
			tokenizer_decode_token(m->tokenizer, i ? ids[i - 1] : -1, ids[i], &len);
	}

	/* The forward pass only on small models, which the seeds are. */
	if (n_ids > 0 && (uint64_t)m->config.dim * m->config.vocab_size <= (1u << 16) &&
	    m->config.n_layers <= 4 && m->config.hidden_dim <= 1024) {
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
	const char *path = fuzz_memory_file(data, size);
	struct error err;
	struct gguf_file *f;
	struct model *m;

	f = gguf_open(path, &err);
	if (f == NULL)
		return 0;
	exercise_file(f);
	gguf_close(f);

	m = model_load(path, &err);
	if (m != NULL) {
		exercise_model(m);
		model_free(m);
	}
	return 0;
}
