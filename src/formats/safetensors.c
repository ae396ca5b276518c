/* safetensors parsing. The header length is checked against a cap and the file size
 * before jansson parses the header, and every tensor's size and offsets are checked
 * against its shape and the data section before its data pointer is formed. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/mapfile.h"
#include "catscope/half.h"
#include "catscope/safetensors.h"

struct safetensors_entry {
	char *name;
	size_t file; /* index into checkpoint->files */
};

static const char *const safetensors_dtype_names[] = { "F32", "F16", "BF16", "I32", "I64" };
static const uint64_t safetensors_dtype_sizes[] = { 4, 2, 2, 4, 8 };

const char *
safetensors_dtype_name(enum safetensors_dtype dtype)
{
	return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? safetensors_dtype_names[dtype] : "unknown";
}

static int
safetensors_fail(const struct safetensors_file *f, struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
safetensors_fail(const struct safetensors_file *f, struct error *err, const char *fmt, ...)
{
	char what[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return error_set(err, "%s: invalid safetensors file: %s; the file is damaged or not a "
			 "safetensors checkpoint", f->path, what);
}

static int
safetensors_parse_dtype(const struct safetensors_file *f, const char *name, const json_t *value,
			enum safetensors_dtype *out, struct error *err)
{
	const char *dtype = json_string_value(value);

	if (dtype == NULL)
		return safetensors_fail(f, err, "tensor '%s' has no \"dtype\" string", name);
	for (int i = 0; i < SAFETENSORS_DTYPE_COUNT; i++) {
		if (strcmp(dtype, safetensors_dtype_names[i]) == 0) {
			*out = (enum safetensors_dtype)i;
			return 0;
		}
	}
	return error_set(err, "%s: tensor '%s' has dtype '%.32s', which catscope does not read; the "
			 "supported dtypes are F32, F16, BF16, I32 and I64, so convert the checkpoint to one of "
			 "them",
			 f->path, name, dtype);
}

static int
safetensors_parse_shape(const struct safetensors_file *f, const char *name, const json_t *value,
			struct safetensors_tensor *t, struct error *err)
{
	size_t i;
	json_t *dim;

	if (!json_is_array(value))
		return safetensors_fail(f, err, "tensor '%s' has no \"shape\" array", name);
	if (json_array_size(value) > SAFETENSORS_MAX_DIMS)
		return safetensors_fail(f, err, "tensor '%s' has %zu dimensions, more than the %d catscope "
					"reads", name, json_array_size(value), SAFETENSORS_MAX_DIMS);
	t->n_dims = (int)json_array_size(value);
	t->n_elements = 1;
	json_array_foreach(value, i, dim) {
		if (!json_is_integer(dim) || json_integer_value(dim) < 0)
			return safetensors_fail(f, err, "dimension %zu of tensor '%s' is not a non-negative "
						"integer", i, name);
		t->shape[i] = (uint64_t)json_integer_value(dim);
		if (!alloc_mul_ok(t->n_elements, t->shape[i], &t->n_elements))
			return safetensors_fail(f, err, "the shape of tensor '%s' has more elements than "
						"fit in 64 bits", name);
	}
	if (!alloc_mul_ok(t->n_elements, safetensors_dtype_sizes[t->dtype], &t->size))
		return safetensors_fail(f, err, "the size of tensor '%s' does not fit in 64 bits", name);
	return 0;
}

static int
safetensors_parse_offsets(const struct safetensors_file *f, const char *name, const json_t *value,
			  struct safetensors_tensor *t, struct error *err)
{
	uint64_t data_size = f->map_size - f->data_offset;
	const json_t *first = json_array_get(value, 0);
	const json_t *second = json_array_get(value, 1);
	uint64_t begin, end;

	if (!json_is_array(value) || json_array_size(value) != 2 || !json_is_integer(first) ||
	    !json_is_integer(second) || json_integer_value(first) < 0 || json_integer_value(second) < 0)
		return safetensors_fail(f, err, "tensor '%s' has no \"data_offsets\" pair of "
					"non-negative integers", name);
	begin = (uint64_t)json_integer_value(first);
	end = (uint64_t)json_integer_value(second);
	if (begin > end)
		return safetensors_fail(f, err, "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
					"] that end before they begin", name, begin, end);
	if (end > data_size)
		return safetensors_fail(f, err, "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
					"] past the end of the data section (%" PRIu64 " bytes)",
					name, begin, end, data_size);
	if (end - begin != t->size)
		return safetensors_fail(f, err, "tensor '%s' has %" PRIu64 " bytes of data but its "
					"shape and dtype %s need %" PRIu64, name, end - begin,
					safetensors_dtype_name(t->dtype), t->size);
	t->data = f->map + f->data_offset + begin;
	return 0;
}

static int
safetensors_compare_data(const void *a, const void *b)
{
	const struct safetensors_tensor *x = a, *y = b;
	const uint8_t *px = x->data, *py = y->data;

	return px < py ? -1 : px > py;
}

static int
safetensors_compare_name(const void *a, const void *b)
{
	const struct safetensors_tensor *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Sorts the tensors by position and checks that they tile the data section: two
 * tensors that share bytes could alias weights, and bytes that belong to no tensor
 * could hide another file. The format's README (huggingface/safetensors) requires a
 * byte buffer "entirely indexed" without holes. Tensors of zero bytes may sit
 * anywhere. */
static int
safetensors_check_layout(struct safetensors_file *f, struct error *err)
{
	const struct safetensors_tensor *previous = NULL;
	const uint8_t *data = f->map + f->data_offset, *next = data;
	uint64_t data_size = f->map_size - f->data_offset;

	qsort(f->tensors, f->n_tensors, sizeof(*f->tensors), safetensors_compare_data);
	for (size_t i = 0; i < f->n_tensors; i++) {
		const struct safetensors_tensor *t = &f->tensors[i];
		const uint8_t *begin = t->data;

		if (t->size == 0)
			continue;
		if (begin < next)
			return safetensors_fail(f, err, "tensors '%s' and '%s' overlap in the data section",
						previous->name, t->name);
		if (begin > next)
			return safetensors_fail(f, err, "bytes %" PRIu64 " to %" PRIu64 " of the data "
						"section belong to no tensor (before '%s')",
						(uint64_t)(next - data), (uint64_t)(begin - data), t->name);
		next = begin + t->size;
		previous = t;
	}
	if ((uint64_t)(next - data) != data_size)
		return safetensors_fail(f, err, "bytes %" PRIu64 " to %" PRIu64 " at the end of the "
					"data section belong to no tensor",
					(uint64_t)(next - data), data_size);
	return 0;
}

static int
safetensors_parse_tensors(struct safetensors_file *f, json_t *root, struct error *err)
{
	const char *name;
	json_t *value;

	f->tensors = alloc_zeroed(json_object_size(root), sizeof(*f->tensors));
	json_object_foreach(root, name, value) {
		struct safetensors_tensor *t = &f->tensors[f->n_tensors];

		if (strcmp(name, "__metadata__") == 0)
			continue;
		if (!json_is_object(value))
			return safetensors_fail(f, err, "the entry for tensor '%s' is not a JSON object", name);
		t->name = alloc_strdup(name);
		f->n_tensors++;
		if (safetensors_parse_dtype(f, name, json_object_get(value, "dtype"), &t->dtype, err) != 0 ||
		    safetensors_parse_shape(f, name, json_object_get(value, "shape"), t, err) != 0 ||
		    safetensors_parse_offsets(f, name, json_object_get(value, "data_offsets"), t, err) != 0)
			return -1;
	}
	if (safetensors_check_layout(f, err) != 0)
		return -1;
	qsort(f->tensors, f->n_tensors, sizeof(*f->tensors), safetensors_compare_name);
	return 0;
}

static int
safetensors_parse(struct safetensors_file *f, struct error *err)
{
	uint64_t header_length = 0;
	json_error_t json_err;
	json_t *root;
	int rc;

	if (f->map_size < 8)
		return safetensors_fail(f, err, "the file is %zu bytes, too short for the 8-byte header "
					"length", f->map_size);
	for (int i = 7; i >= 0; i--)
		header_length = header_length << 8 | f->map[i];
	if (header_length > f->map_size - 8)
		return safetensors_fail(f, err, "the header length %" PRIu64 " runs past the end of the "
					"file (%zu bytes)", header_length, f->map_size);
	if (header_length > SAFETENSORS_MAX_HEADER)
		return safetensors_fail(f, err, "the header length %" PRIu64 " is larger than the %u-byte "
					"limit", header_length, SAFETENSORS_MAX_HEADER);
	f->data_offset = 8 + header_length;

	/* Duplicate names are rejected by the parser, so no tensor can shadow another. */
	root = json_loadb((const char *)f->map + 8, (size_t)header_length, JSON_REJECT_DUPLICATES,
			  &json_err);
	if (root == NULL)
		return safetensors_fail(f, err, "the JSON header is invalid: %s (header line %d, column %d)",
					json_err.text, json_err.line, json_err.column);
	if (!json_is_object(root)) {
		json_decref(root);
		return safetensors_fail(f, err, "the JSON header is not an object");
	}
	rc = safetensors_parse_tensors(f, root, err);
	json_decref(root);
	return rc;
}

struct safetensors_file *
safetensors_open(const char *path, struct error *err)
{
	struct safetensors_file *file;
	const uint8_t *map;
	size_t map_size;

	if (mapfile_open(path, &map, &map_size, err) != 0)
		return NULL;
	file = alloc_zeroed(1, sizeof(*file));
	file->path = alloc_strdup(path);
	file->map = map;
	file->map_size = map_size;
	if (safetensors_parse(file, err) != 0) {
		safetensors_close(file);
		return NULL;
	}
	return file;
}

void
safetensors_close(struct safetensors_file *file)
{
	if (file == NULL)
		return;
	for (size_t i = 0; file->tensors != NULL && i < file->n_tensors; i++)
		free(file->tensors[i].name);
	free(file->tensors);
	mapfile_close(file->map, file->map_size);
	free(file->path);
	free(file);
}

const struct safetensors_tensor *
safetensors_find(const struct safetensors_file *file, const char *name)
{
	struct safetensors_tensor key = { .name = (char *)name };

	if (file->n_tensors == 0)
		return NULL;
	return bsearch(&key, file->tensors, file->n_tensors, sizeof(*file->tensors),
		       safetensors_compare_name);
}

/* NOTE: assumes a little-endian host, as the safetensors format stores little-endian data. */
void
safetensors_tensor_to_f32(const struct safetensors_tensor *t, float *dst)
{
	const uint8_t *src = t->data;

	if (t->dtype == SAFETENSORS_F32) {
		memcpy(dst, src, t->n_elements * sizeof(float));
		return;
	}
	if (t->dtype == SAFETENSORS_I32 || t->dtype == SAFETENSORS_I64) {
		for (uint64_t i = 0; i < t->n_elements; i++) {
			int32_t v32;
			int64_t v64;

			if (t->dtype == SAFETENSORS_I32) {
				memcpy(&v32, src + 4 * i, 4);
				dst[i] = (float)v32;
			} else {
				memcpy(&v64, src + 8 * i, 8);
				dst[i] = (float)v64;
			}
		}
		return;
	}
	for (uint64_t i = 0; i < t->n_elements; i++) {
		uint16_t h;

		memcpy(&h, src + 2 * i, 2);
		dst[i] = t->dtype == SAFETENSORS_F16 ? half_f16_to_f32(h) : half_bf16_to_f32(h);
	}
}

/* ---- Checkpoints: one file or an index of shards. */

static int
safetensors_compare_entry(const void *a, const void *b)
{
	const struct safetensors_entry *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* Returns the index of shard in ckpt->files, opening it on first use. Shard names come
 * from the index and are joined to dir, so anything but a plain file name is rejected
 * to keep the checkpoint from reading files outside its directory. */
static int
safetensors_open_shard(struct safetensors_checkpoint *ckpt, const char *index_path,
		       const char *shard, size_t *out, struct error *err)
{
	const char *base;
	char *path;
	struct safetensors_file *file;

	for (size_t i = 0; i < ckpt->n_files; i++) {
		base = strrchr(ckpt->files[i]->path, '/') + 1;
		if (strcmp(base, shard) == 0) {
			*out = i;
			return 0;
		}
	}
	if (shard[0] == '\0' || strchr(shard, '/') != NULL || strchr(shard, '\\') != NULL ||
	    strstr(shard, "..") != NULL)
		return error_set(err, "%s: shard name '%.200s' in weight_map is not a plain file name; "
				 "shards must be files in the same directory as the index", index_path, shard);
	path = alloc_array(strlen(ckpt->dir) + strlen(shard) + 2, 1);
	sprintf(path, "%s/%s", ckpt->dir, shard);
	file = safetensors_open(path, err);
	free(path);
	if (file == NULL) {
		error_prefix(err, "%s: shard '%.200s'", index_path, shard);
		return -1;
	}
	ckpt->files = alloc_resize(ckpt->files, ckpt->n_files + 1, sizeof(*ckpt->files));
	ckpt->files[ckpt->n_files] = file;
	*out = ckpt->n_files++;
	return 0;
}

/* Parses the index at path. It is opened with O_NONBLOCK and must be a regular file,
 * so that a FIFO or device under the index's name fails instead of blocking. */
static json_t *
safetensors_read_index_json(const char *path, struct error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	json_error_t json_err;
	struct stat st;
	json_t *root;

	if (fd < 0) {
		error_set(err, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		error_set(err, "%s: not a regular file", path);
		return NULL;
	}
	root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &json_err);
	close(fd);
	if (root == NULL)
		error_set(err, "%s: invalid JSON: %s (line %d, column %d)", path, json_err.text,
			  json_err.line, json_err.column);
	return root;
}

static int
safetensors_load_index(struct safetensors_checkpoint *ckpt, const char *index_path,
		       struct error *err)
{
	json_t *root = safetensors_read_index_json(index_path, err);
	json_t *weight_map, *value;
	const char *name;
	int rc = -1;

	if (root == NULL)
		return -1;
	weight_map = json_object_get(root, "weight_map");
	if (!json_is_object(weight_map) || json_object_size(weight_map) == 0) {
		error_set(err, "%s: \"weight_map\" is missing or empty; it must map tensor names to "
			  "shard files", index_path);
		goto out;
	}
	ckpt->entries = alloc_zeroed(json_object_size(weight_map), sizeof(*ckpt->entries));
	json_object_foreach(weight_map, name, value) {
		struct safetensors_entry *e = &ckpt->entries[ckpt->n_entries];

		if (!json_is_string(value)) {
			error_set(err, "%s: weight_map entry '%.200s' is not a file name string",
				  index_path, name);
			goto out;
		}
		if (safetensors_open_shard(ckpt, index_path, json_string_value(value), &e->file, err) != 0)
			goto out;
		if (safetensors_find(ckpt->files[e->file], name) == NULL) {
			error_set(err, "%s: weight_map puts tensor '%.200s' in '%s', which does not "
				  "contain it", index_path, name, ckpt->files[e->file]->path);
			goto out;
		}
		e->name = alloc_strdup(name);
		ckpt->n_entries++;
	}
	qsort(ckpt->entries, ckpt->n_entries, sizeof(*ckpt->entries), safetensors_compare_entry);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

struct safetensors_checkpoint *
safetensors_checkpoint_open(const char *dir, struct error *err)
{
	struct safetensors_checkpoint *ckpt = alloc_zeroed(1, sizeof(*ckpt));
	char *path = alloc_array(strlen(dir) + 40, 1);
	struct safetensors_file *file;

	ckpt->dir = alloc_strdup(dir);
	sprintf(path, "%s/model.safetensors.index.json", dir);
	if (access(path, F_OK) == 0) {
		if (safetensors_load_index(ckpt, path, err) != 0)
			goto fail;
		free(path);
		return ckpt;
	}
	sprintf(path, "%s/model.safetensors", dir);
	if (access(path, F_OK) != 0) {
		error_set(err, "%s: neither model.safetensors nor model.safetensors.index.json exists; "
			  "catscope reads Hugging Face checkpoints in safetensors format", dir);
		goto fail;
	}
	file = safetensors_open(path, err);
	if (file == NULL)
		goto fail;
	ckpt->files = alloc_array(1, sizeof(*ckpt->files));
	ckpt->files[0] = file;
	ckpt->n_files = 1;
	free(path);
	return ckpt;
fail:
	free(path);
	safetensors_checkpoint_close(ckpt);
	return NULL;
}

void
safetensors_checkpoint_close(struct safetensors_checkpoint *ckpt)
{
	if (ckpt == NULL)
		return;
	for (size_t i = 0; i < ckpt->n_files; i++)
		safetensors_close(ckpt->files[i]);
	for (size_t i = 0; i < ckpt->n_entries; i++)
		free(ckpt->entries[i].name);
	free(ckpt->files);
	free(ckpt->entries);
	free(ckpt->dir);
	free(ckpt);
}

const struct safetensors_tensor *
safetensors_checkpoint_find(const struct safetensors_checkpoint *ckpt, const char *name,
			    const struct safetensors_file **file)
{
	const struct safetensors_file *f;

	if (ckpt->entries == NULL) {
		f = ckpt->files[0];
	} else {
		struct safetensors_entry key = { .name = (char *)name };
		const struct safetensors_entry *e = bsearch(&key, ckpt->entries, ckpt->n_entries,
							    sizeof(*ckpt->entries),
							    safetensors_compare_entry);

		if (e == NULL)
			return NULL;
		f = ckpt->files[e->file];
	}
	if (file != NULL)
		*file = f;
	return safetensors_find(f, name);
}
