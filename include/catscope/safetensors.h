/* safetensors reader: one file, or a checkpoint sharded by model.safetensors.index.json.
 *
 * A file is an 8-byte little-endian header length, a JSON header that maps tensor names
 * to {dtype, shape, data_offsets}, then the data section. Offsets are relative to the
 * start of the data section. The file is mapped read-only.
 *
 * Every shape, size and offset is checked against the file before use. Tensors must lie
 * inside the file, must not overlap, and must be exactly as large as their shape and
 * dtype imply. A hostile file therefore fails with a message, not a crash or a large
 * allocation. */
#ifndef CATSCOPE_SAFETENSORS_H
#define CATSCOPE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"

/* Longer headers are rejected before they are parsed. Real checkpoints have a few
 * hundred bytes per tensor, so even 100,000 tensors stay far below this. */
#define SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)
#define SAFETENSORS_MAX_DIMS 8

/* The element types catscope reads. Other dtypes are rejected by name. The integer
 * types carry packed quantized weights and shapes (catscope export). */
enum safetensors_dtype {
	SAFETENSORS_F32,
	SAFETENSORS_F16,
	SAFETENSORS_BF16,
	SAFETENSORS_I32,
	SAFETENSORS_I64,
	SAFETENSORS_DTYPE_COUNT
};

struct safetensors_tensor {
	char *name;
	enum safetensors_dtype dtype;
	int n_dims;
	uint64_t shape[SAFETENSORS_MAX_DIMS]; /* shape[n_dims - 1] varies fastest (row-major) */
	uint64_t n_elements;
	uint64_t size;                        /* bytes */
	const void *data;                     /* in the map; may be unaligned */
};

struct safetensors_file {
	char *path;
	const uint8_t *map;
	size_t map_size;
	uint64_t data_offset;  /* 8 + header length */
	size_t n_tensors;
	struct safetensors_tensor *tensors; /* sorted by name */
};

/* Maps and parses path. On failure returns NULL and a message naming the file. */
struct safetensors_file *safetensors_open(const char *path, struct error *err);
void safetensors_close(struct safetensors_file *file); /* NULL is a no-op */

const struct safetensors_tensor *safetensors_find(const struct safetensors_file *file,
						  const char *name);
const char *safetensors_dtype_name(enum safetensors_dtype dtype);
/* Converts all elements of t to float32 in dst (t->n_elements floats); integers are
 * converted by value. */
void safetensors_tensor_to_f32(const struct safetensors_tensor *t, float *dst);

struct safetensors_entry;

/* The weights of a Hugging Face model directory: dir/model.safetensors, or the shards
 * that dir/model.safetensors.index.json lists in its weight_map. */
struct safetensors_checkpoint {
	char *dir;
	size_t n_files;
	struct safetensors_file **files;
	size_t n_entries;
	struct safetensors_entry *entries; /* weight_map sorted by name; NULL for one file */
};

/* Opens the checkpoint in dir. With an index, shard names must be plain file names in
 * dir (no '/', no ".."), every shard must open, and every tensor that weight_map names
 * must be present in its shard. */
struct safetensors_checkpoint *safetensors_checkpoint_open(const char *dir, struct error *err);
void safetensors_checkpoint_close(struct safetensors_checkpoint *ckpt); /* NULL is a no-op */
/* Finds name in the checkpoint and stores the file that contains it in *file (which may
 * be NULL). Returns NULL if the tensor is absent. */
const struct safetensors_tensor *safetensors_checkpoint_find(const struct safetensors_checkpoint *ckpt,
							     const char *name,
							     const struct safetensors_file **file);

#endif
