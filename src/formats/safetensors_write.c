/* safetensors writer: tensors collected in memory, written as one file or as shards
 * with an index. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/half.h"
#include "catscope/safetensors_write.h"

struct safetensors_pending {
	char *name;
	enum safetensors_dtype dtype;
	int n_dims;
	uint64_t shape[SAFETENSORS_MAX_DIMS];
	uint64_t size;  /* bytes */
	void *data;
	int shard;      /* assigned at write time */
};

struct safetensors_writer {
	size_t count;
	size_t capacity;
	struct safetensors_pending *tensors;
};

static const uint64_t safetensors_write_sizes[SAFETENSORS_DTYPE_COUNT] = { 4, 2, 2, 4, 8 };

struct safetensors_writer *
safetensors_writer_new(void)
{
	return alloc_zeroed(1, sizeof(struct safetensors_writer));
}

void
safetensors_writer_free(struct safetensors_writer *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->count; i++) {
		free(w->tensors[i].name);
		free(w->tensors[i].data);
	}
	free(w->tensors);
	free(w);
}

void
safetensors_writer_add(struct safetensors_writer *w, const char *name, enum safetensors_dtype dtype,
		       int n_dims, const uint64_t *shape, void *data)
{
	struct safetensors_pending *t;
	uint64_t n = 1;

	if (w->count == w->capacity) {
		w->capacity = w->capacity ? 2 * w->capacity : 64;
		w->tensors = alloc_resize(w->tensors, w->capacity, sizeof(*w->tensors));
	}
	t = &w->tensors[w->count++];
	memset(t, 0, sizeof(*t));
	t->name = alloc_strdup(name);
	t->dtype = dtype;
	t->n_dims = n_dims;
	for (int i = 0; i < n_dims; i++) {
		t->shape[i] = shape[i];
		n *= shape[i];
	}
	t->size = n * safetensors_write_sizes[dtype];
	t->data = data;
}

void
safetensors_writer_add_f32(struct safetensors_writer *w, const char *name,
			   enum safetensors_dtype dtype, int n_dims, const uint64_t *shape,
			   const float *values)
{
	uint64_t n = 1;
	void *data;

	for (int i = 0; i < n_dims; i++)
		n *= shape[i];
	if (dtype == SAFETENSORS_F32) {
		data = alloc_array(n ? n : 1, sizeof(float));
		memcpy(data, values, n * sizeof(float));
	} else {
		uint16_t *h = alloc_array(n ? n : 1, sizeof(uint16_t));

		for (uint64_t i = 0; i < n; i++)
			h[i] = dtype == SAFETENSORS_F16 ? half_f32_to_f16(values[i]) :
							  half_f32_to_bf16(values[i]);
		data = h;
	}
	safetensors_writer_add(w, name, dtype, n_dims, shape, data);
}

/* The JSON header of one shard, padded with spaces to a multiple of 8 bytes. */
static char *
safetensors_shard_header(const struct safetensors_writer *w, int shard, size_t *length)
{
	json_t *root = json_object();
	json_t *meta = json_object();
	uint64_t offset = 0;
	char *text, *padded;
	size_t n;

	json_object_set_new(meta, "format", json_string("pt"));
	json_object_set_new(root, "__metadata__", meta);
	for (size_t i = 0; i < w->count; i++) {
		const struct safetensors_pending *t = &w->tensors[i];
		json_t *entry, *shape, *offsets;

		if (t->shard != shard)
			continue;
		entry = json_object();
		shape = json_array();
		offsets = json_array();
		for (int d = 0; d < t->n_dims; d++)
			json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
		json_array_append_new(offsets, json_integer((json_int_t)offset));
		json_array_append_new(offsets, json_integer((json_int_t)(offset + t->size)));
		json_object_set_new(entry, "dtype", json_string(safetensors_dtype_name(t->dtype)));
		json_object_set_new(entry, "shape", shape);
		json_object_set_new(entry, "data_offsets", offsets);
		json_object_set_new(root, t->name, entry);
		offset += t->size;
	}
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(root);
	n = strlen(text);
	*length = (n + 7) / 8 * 8;
	padded = alloc_bytes(*length + 1);
	memcpy(padded, text, n);
	memset(padded + n, ' ', *length - n);
	padded[*length] = '\0';
	free(text);
	return padded;
}

static int
safetensors_write_shard(const struct safetensors_writer *w, int shard, const char *path,
			safetensors_write_stop_fn stop, uint64_t *bytes, struct error *err)
{
	size_t header_length;
	char *header = safetensors_shard_header(w, shard, &header_length);
	FILE *f = fopen(path, "wb");
	uint8_t prefix[8];
	int ok;

	if (f == NULL) {
		free(header);
		return error_set(err, "%s: cannot create the file: %s", path, strerror(errno));
	}
	for (int i = 0; i < 8; i++)
		prefix[i] = (uint8_t)((uint64_t)header_length >> (8 * i));
	ok = fwrite(prefix, 1, 8, f) == 8 && fwrite(header, 1, header_length, f) == header_length;
	*bytes += 8 + header_length;
	free(header);
	for (size_t i = 0; i < w->count && ok; i++) {
		const struct safetensors_pending *t = &w->tensors[i];

		if (t->shard != shard)
			continue;
		if (stop != NULL && stop()) {
			fclose(f);
			return error_set(err, "%s: interrupted while writing", path);
		}
		ok = fwrite(t->data, 1, t->size, f) == t->size;
		*bytes += t->size;
	}
	ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok)
		return error_set(err, "%s: writing failed: %s", path, strerror(errno));
	return 0;
}

static int
safetensors_check_names(const struct safetensors_writer *w, struct error *err)
{
	json_t *seen = json_object();
	int rc = 0;

	for (size_t i = 0; i < w->count && rc == 0; i++) {
		if (json_object_get(seen, w->tensors[i].name) != NULL)
			rc = error_set(err, "tensor name '%s' is used twice", w->tensors[i].name);
		json_object_set_new(seen, w->tensors[i].name, json_true());
	}
	json_decref(seen);
	return rc;
}

static int
safetensors_write_index(const struct safetensors_writer *w, const char *dir, int n_shards,
			uint64_t total, uint64_t *bytes, struct error *err)
{
	json_t *root = json_object();
	json_t *meta = json_object();
	json_t *map = json_object();
	char path[4096], shard_name[64];
	int rc = 0;

	json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
	for (size_t i = 0; i < w->count; i++) {
		snprintf(shard_name, sizeof(shard_name), "model-%05d-of-%05d.safetensors",
			 w->tensors[i].shard + 1, n_shards);
		json_object_set_new(map, w->tensors[i].name, json_string(shard_name));
	}
	json_object_set_new(root, "metadata", meta);
	json_object_set_new(root, "weight_map", map);
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	if (json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		rc = error_set(err, "%s: writing failed", path);
	json_decref(root);
	if (rc == 0) {
		FILE *f = fopen(path, "rb");

		if (f != NULL) {
			fseek(f, 0, SEEK_END);
			*bytes += (uint64_t)ftell(f);
			fclose(f);
		}
	}
	return rc;
}

int
safetensors_writer_write(struct safetensors_writer *w, const char *dir, uint64_t shard_size,
			 safetensors_write_stop_fn stop, char ***files, int *n_files,
			 uint64_t *bytes, struct error *err)
{
	int n_shards = 1;
	uint64_t in_shard = 0, total = 0;
	char path[4096], name[64];

	if (safetensors_check_names(w, err) != 0)
		return -1;

	/* Greedy split in insertion order, so a layer's tensors stay together. */
	for (size_t i = 0; i < w->count; i++) {
		struct safetensors_pending *t = &w->tensors[i];

		if (shard_size > 0 && in_shard > 0 && in_shard + t->size > shard_size) {
			n_shards++;
			in_shard = 0;
		}
		t->shard = n_shards - 1;
		in_shard += t->size;
		total += t->size;
	}
	for (int s = 0; s < n_shards; s++) {
		if (n_shards == 1)
			snprintf(name, sizeof(name), "model.safetensors");
		else
			snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", s + 1, n_shards);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		*files = alloc_resize(*files, (size_t)*n_files + 1, sizeof(char *));
		(*files)[(*n_files)++] = alloc_strdup(name);
		if (safetensors_write_shard(w, s, path, stop, bytes, err) != 0)
			return -1;
	}
	if (n_shards > 1) {
		*files = alloc_resize(*files, (size_t)*n_files + 1, sizeof(char *));
		(*files)[(*n_files)++] = alloc_strdup("model.safetensors.index.json");
		return safetensors_write_index(w, dir, n_shards, total, bytes, err);
	}
	return 0;
}
