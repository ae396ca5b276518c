/* safetensors writer: collects named tensors in memory, then writes them into a
 * directory as model.safetensors, or as shards model-0000i-of-0000n.safetensors with a
 * model.safetensors.index.json when they exceed the shard size.
 *
 * Each file is the 8-byte little-endian header length, a JSON header padded with
 * spaces to a multiple of 8 bytes, then the tensors back to back in the order they were
 * added (the format allows no gaps). Files are written plainly into the directory; the
 * caller makes the directory appear atomically (see export.h). */
#ifndef CATSCOPE_SAFETENSORS_WRITE_H
#define CATSCOPE_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "catscope/error.h"
#include "catscope/safetensors.h"

struct safetensors_writer;

/* Returns an empty writer; the caller frees it with safetensors_writer_free(). */
struct safetensors_writer *safetensors_writer_new(void);
void safetensors_writer_free(struct safetensors_writer *w); /* NULL is a no-op */

/* Adds a tensor of shape[0..n_dims) (row-major) whose n_elements * dtype-size bytes
 * are at data. Takes ownership of data, which must come from the alloc_* functions.
 * name is copied. Names must be unique; a duplicate fails at write time. */
void safetensors_writer_add(struct safetensors_writer *w, const char *name,
			    enum safetensors_dtype dtype, int n_dims, const uint64_t *shape,
			    void *data);
/* Copies a float32 array into a tensor of the given dtype (F32, F16 or BF16). */
void safetensors_writer_add_f32(struct safetensors_writer *w, const char *name,
				enum safetensors_dtype dtype, int n_dims, const uint64_t *shape,
				const float *values);

/* Called between tensors while writing; a nonzero return stops the write with an
 * "interrupted" error (used to honour deferred signals). */
typedef int (*safetensors_write_stop_fn)(void);

/* Writes every tensor into dir, splitting into shards of at most shard_size bytes of
 * tensor data (a tensor larger than that gets a shard of its own); shard_size 0 means
 * never split. Adds the file names written to *files (caller frees each and the array)
 * and their total size to *bytes. On failure some files may already exist in dir. */
int safetensors_writer_write(struct safetensors_writer *w, const char *dir, uint64_t shard_size,
			     safetensors_write_stop_fn stop, char ***files, int *n_files,
			     uint64_t *bytes, struct error *err);

#endif
