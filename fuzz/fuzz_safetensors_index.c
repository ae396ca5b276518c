/* Fuzz target: a sharded checkpoint. The input is written as
 * model.safetensors.index.json into a folder that also contains two small valid shards,
 * shard-a.safetensors and shard-b.safetensors, so that an index which names them
 * reaches the shard lookup, and every tensor the checkpoint accepts is converted. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catscope/safetensors.h"
#include "fuzz_common.h"

static const char *fuzz_dir;

/* Writes a valid safetensors file with the given header and a zeroed data section. */
static void
write_shard(const char *name, const char *header, size_t data_size)
{
	size_t header_size = strlen(header);
	size_t size = 8 + header_size + data_size;
	uint8_t *bytes = calloc(1, size);

	for (int i = 0; i < 8; i++)
		bytes[i] = (uint8_t)((uint64_t)header_size >> (8 * i));
	memcpy(bytes + 8, header, header_size);
	fuzz_write_file(fuzz_dir, name, bytes, size);
	free(bytes);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_dir = fuzz_temp_dir();
	write_shard("shard-a.safetensors",
		    "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
		    "\"a.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]}}", 30);
	write_shard("shard-b.safetensors",
		    "{\"__metadata__\":{\"format\":\"pt\"},"
		    "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
		    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "a.weight", "a.bias", "b.weight", "empty", "missing", "" };
	struct error err;
	struct safetensors_checkpoint *ckpt;

	fuzz_write_file(fuzz_dir, "model.safetensors.index.json", data, size);
	ckpt = safetensors_checkpoint_open(fuzz_dir, &err);
	if (ckpt == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct safetensors_file *file = NULL;
		const struct safetensors_tensor *t = safetensors_checkpoint_find(ckpt, names[i], &file);
		float out[8];

		if (t != NULL && t->n_elements <= 8)
			safetensors_tensor_to_f32(t, out);
	}
	safetensors_checkpoint_close(ckpt);
	return 0;
}
