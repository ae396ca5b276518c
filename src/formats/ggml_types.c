/* Sizes of ggml tensor types and their conversion to float32. */
#include "config.h"

#include <string.h>

#include "catscope/gguf.h"
#include "catscope/alloc.h"
#include "catscope/half.h"

/* Q8_0: blocks of 32 values, one float16 scale then 32 int8 codes. */
#define Q8_0_BLOCK 32
#define Q8_0_BYTES (2 + Q8_0_BLOCK)

struct ggml_type_info {
	enum ggml_type type;
	const char *name;
	uint64_t block_elements;
	uint64_t block_bytes;
};

static const struct ggml_type_info ggml_types[] = {
	{ GGML_TYPE_F32, "F32", 1, 4 },
	{ GGML_TYPE_F16, "F16", 1, 2 },
	{ GGML_TYPE_Q4_0, "Q4_0", 32, 18 },
	{ GGML_TYPE_Q4_1, "Q4_1", 32, 20 },
	{ GGML_TYPE_Q5_0, "Q5_0", 32, 22 },
	{ GGML_TYPE_Q5_1, "Q5_1", 32, 24 },
	{ GGML_TYPE_Q8_0, "Q8_0", Q8_0_BLOCK, Q8_0_BYTES },
	{ GGML_TYPE_BF16, "BF16", 1, 2 },
};

static const struct ggml_type_info *
ggml_type_find(enum ggml_type type)
{
	for (size_t i = 0; i < sizeof(ggml_types) / sizeof(ggml_types[0]); i++) {
		if (ggml_types[i].type == type)
			return &ggml_types[i];
	}
	return NULL;
}

uint64_t
gguf_type_size(enum ggml_type type, uint64_t n_elements)
{
	const struct ggml_type_info *info = ggml_type_find(type);
	uint64_t size;

	if (info == NULL || n_elements % info->block_elements != 0)
		return 0;
	if (!alloc_mul_ok(n_elements / info->block_elements, info->block_bytes, &size))
		return 0;
	return size;
}

const char *
gguf_type_name(enum ggml_type type)
{
	const struct ggml_type_info *info = ggml_type_find(type);

	return info ? info->name : "unknown";
}

int
gguf_tensor_to_f32(const struct gguf_tensor *tensor, float *out, struct error *err)
{
	const uint8_t *src = tensor->data;
	uint64_t n = tensor->n_elements;

	switch (tensor->type) {
	case GGML_TYPE_F32:
		memcpy(out, src, n * sizeof(float));
		return 0;
	case GGML_TYPE_F16:
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h;

			memcpy(&h, src + 2 * i, 2);
			out[i] = half_f16_to_f32(h);
		}
		return 0;
	case GGML_TYPE_BF16:
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h;

			memcpy(&h, src + 2 * i, 2);
			out[i] = half_bf16_to_f32(h);
		}
		return 0;
	case GGML_TYPE_Q8_0:
		for (uint64_t b = 0; b < n / Q8_0_BLOCK; b++) {
			const uint8_t *block = src + b * Q8_0_BYTES;
			uint16_t h;
			float scale;

			memcpy(&h, block, 2);
			scale = half_f16_to_f32(h);
			for (int j = 0; j < Q8_0_BLOCK; j++)
				out[b * Q8_0_BLOCK + j] = scale * (float)(int8_t)block[2 + j];
		}
		return 0;
	default:
		return error_set(err, "tensor '%s' has type %s, which catscope cannot convert to float32 "
				 "(it reads F32, F16, BF16 and Q8_0); convert the model to one of those",
				 tensor->name, gguf_type_name(tensor->type));
	}
}
