/* Fuzz target: one safetensors file. Every tensor that the reader accepts is looked up
 * by name and converted to float32, so that an offset or size the reader let through
 * shows up as an out-of-bounds read. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "catscope/safetensors.h"
#include "fuzz_common.h"

/* Tensors larger than this are not converted, so that one input stays fast. */
#define FUZZ_MAX_CONVERT_ELEMENTS (1u << 16)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_memory_file(data, size);
	struct error err;
	struct safetensors_file *f = safetensors_open(path, &err);

	if (f == NULL)
		return 0;
	for (size_t i = 0; i < f->n_tensors; i++) {
		const struct safetensors_tensor *t = &f->tensors[i];
		float *out;

		if (safetensors_find(f, t->name) != t)
			abort();
		if (t->n_elements > FUZZ_MAX_CONVERT_ELEMENTS)
			continue;
		out = malloc(t->n_elements * sizeof(float) + 1);
		safetensors_tensor_to_f32(t, out);
		free(out);
	}
	safetensors_find(f, "");
	safetensors_close(f);
	return 0;
}
