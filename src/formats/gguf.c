/* GGUF parsing. The file is mapped read-only and a cursor walks it. Every read is
 * bounds-checked, so no length in the file is trusted before it is compared with the
 * bytes that remain. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/mapfile.h"
#include "catscope/gguf.h"
#include "catscope/utf8.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
/* Nesting beyond this is not used by any known writer; the cap keeps recursion bounded. */
#define GGUF_MAX_ARRAY_DEPTH 4

struct gguf_cursor {
	const uint8_t *base;
	uint64_t size;
	uint64_t pos;
	const char *path;
	struct error *err;
};

static int
gguf_fail(struct gguf_cursor *c, const char *what)
{
	return error_set(c->err, "%s: invalid GGUF file: %s at byte %" PRIu64 " (file size %" PRIu64
			 "); the file is damaged or not a GGUF model",
			 c->path, what, c->pos, c->size);
}

static int
gguf_read(struct gguf_cursor *c, void *out, uint64_t n, const char *what)
{
	if (n > c->size - c->pos) {
		char message[256];

		snprintf(message, sizeof(message), "%s is truncated (needs %" PRIu64 " bytes)", what, n);
		return gguf_fail(c, message);
	}
	memcpy(out, c->base + c->pos, n);
	c->pos += n;
	return 0;
}

static int
gguf_read_u32(struct gguf_cursor *c, uint32_t *out, const char *what)
{
	return gguf_read(c, out, 4, what);
}

static int
gguf_read_u64(struct gguf_cursor *c, uint64_t *out, const char *what)
{
	return gguf_read(c, out, 8, what);
}

static int
gguf_read_string(struct gguf_cursor *c, struct gguf_string *out, const char *what)
{
	uint64_t length;

	if (gguf_read_u64(c, &length, what) != 0)
		return -1;
	if (length > c->size - c->pos) {
		char message[256];

		snprintf(message, sizeof(message), "%s length %" PRIu64 " runs past the end of the file",
			 what, length);
		c->pos -= 8;
		return gguf_fail(c, message);
	}
	out->data = (const char *)(c->base + c->pos);
	out->length = length;
	c->pos += length;
	return 0;
}

/* Size in bytes of one scalar value, 0 for strings and arrays. */
static uint64_t
gguf_scalar_size(enum gguf_value_type type)
{
	switch (type) {
	case GGUF_VALUE_UINT8:
	case GGUF_VALUE_INT8:
	case GGUF_VALUE_BOOL:
		return 1;
	case GGUF_VALUE_UINT16:
	case GGUF_VALUE_INT16:
		return 2;
	case GGUF_VALUE_UINT32:
	case GGUF_VALUE_INT32:
	case GGUF_VALUE_FLOAT32:
		return 4;
	case GGUF_VALUE_UINT64:
	case GGUF_VALUE_INT64:
	case GGUF_VALUE_FLOAT64:
		return 8;
	default:
		return 0;
	}
}

static void
gguf_decode_scalar(enum gguf_value_type type, const uint8_t *p, struct gguf_value *v)
{
	v->type = type;
	switch (type) {
	case GGUF_VALUE_UINT8:
		v->as.u64 = p[0];
		break;
	case GGUF_VALUE_BOOL:
		v->as.u64 = p[0] != 0;
		break;
	case GGUF_VALUE_INT8:
		v->as.i64 = (int8_t)p[0];
		break;
	case GGUF_VALUE_UINT16: {
		uint16_t x;
		memcpy(&x, p, 2);
		v->as.u64 = x;
		break;
	}
	case GGUF_VALUE_INT16: {
		int16_t x;
		memcpy(&x, p, 2);
		v->as.i64 = x;
		break;
	}
	case GGUF_VALUE_UINT32: {
		uint32_t x;
		memcpy(&x, p, 4);
		v->as.u64 = x;
		break;
	}
	case GGUF_VALUE_INT32: {
		int32_t x;
		memcpy(&x, p, 4);
		v->as.i64 = x;
		break;
	}
	case GGUF_VALUE_FLOAT32: {
		float x;
		memcpy(&x, p, 4);
		v->as.f64 = x;
		break;
	}
	case GGUF_VALUE_UINT64:
		memcpy(&v->as.u64, p, 8);
		break;
	case GGUF_VALUE_INT64:
		memcpy(&v->as.i64, p, 8);
		break;
	case GGUF_VALUE_FLOAT64:
		memcpy(&v->as.f64, p, 8);
		break;
	default:
		break;
	}
}

static int gguf_read_value(struct gguf_cursor *c, enum gguf_value_type type, struct gguf_value *v,
			   int depth);

static int
gguf_read_array(struct gguf_cursor *c, struct gguf_value *v, int depth)
{
	uint32_t element_type;
	uint64_t count;
	uint64_t element_size;
	uint64_t total;

	if (gguf_read_u32(c, &element_type, "array element type") != 0 ||
	    gguf_read_u64(c, &count, "array length") != 0)
		return -1;
	if (element_type >= GGUF_VALUE_TYPE_COUNT) {
		char message[128];

		snprintf(message, sizeof(message), "unknown array element type %" PRIu32, element_type);
		return gguf_fail(c, message);
	}
	v->type = GGUF_VALUE_ARRAY;
	v->as.array.type = (enum gguf_value_type)element_type;
	v->as.array.count = count;
	v->as.array.data = c->base + c->pos;
	v->as.array.string_offsets = NULL;

	element_size = gguf_scalar_size(element_type);
	if (element_size > 0) {
		if (!alloc_mul_ok(count, element_size, &total) || total > c->size - c->pos) {
			char message[160];

			snprintf(message, sizeof(message),
				 "array of %" PRIu64 " elements runs past the end of the file", count);
			return gguf_fail(c, message);
		}
		c->pos += total;
		return 0;
	}

	/* Strings and nested arrays take at least 8 bytes each, which bounds count by the
	 * bytes left before the offsets table is allocated. */
	if (count > (c->size - c->pos) / 8) {
		char message[160];

		snprintf(message, sizeof(message),
			 "array of %" PRIu64 " elements runs past the end of the file", count);
		return gguf_fail(c, message);
	}
	if (element_type == GGUF_VALUE_STRING)
		v->as.array.string_offsets = alloc_array(count ? count : 1, sizeof(uint64_t));
	for (uint64_t i = 0; i < count; i++) {
		struct gguf_value element;

		if (element_type == GGUF_VALUE_STRING)
			v->as.array.string_offsets[i] = (uint64_t)(c->base + c->pos - v->as.array.data);
		if (gguf_read_value(c, element_type, &element, depth + 1) != 0) {
			free(v->as.array.string_offsets);
			v->as.array.string_offsets = NULL;
			return -1;
		}
		if (element.type == GGUF_VALUE_ARRAY)
			free(element.as.array.string_offsets);
	}
	return 0;
}

static int
gguf_read_value(struct gguf_cursor *c, enum gguf_value_type type, struct gguf_value *v, int depth)
{
	uint8_t bytes[8];
	uint64_t size;

	memset(v, 0, sizeof(*v));
	if (type == GGUF_VALUE_STRING) {
		v->type = type;
		return gguf_read_string(c, &v->as.string, "string value");
	}
	if (type == GGUF_VALUE_ARRAY) {
		if (depth >= GGUF_MAX_ARRAY_DEPTH)
			return gguf_fail(c, "arrays nested too deeply");
		return gguf_read_array(c, v, depth);
	}
	size = gguf_scalar_size(type);
	if (size == 0) {
		char message[128];

		snprintf(message, sizeof(message), "unknown value type %u", (unsigned)type);
		return gguf_fail(c, message);
	}
	if (gguf_read(c, bytes, size, "value") != 0)
		return -1;
	gguf_decode_scalar(type, bytes, v);
	return 0;
}

static char *
gguf_copy_name(struct gguf_cursor *c, const struct gguf_string *s, const char *what)
{
	if (memchr(s->data, '\0', s->length) != NULL || !utf8_is_valid(s->data, s->length)) {
		char message[128];

		snprintf(message, sizeof(message), "%s is not valid UTF-8 text", what);
		gguf_fail(c, message);
		return NULL;
	}
	return alloc_strndup(s->data, s->length);
}

static int
gguf_compare_keys(const void *a, const void *b)
{
	const struct gguf_kv *x = *(const struct gguf_kv *const *)a;
	const struct gguf_kv *y = *(const struct gguf_kv *const *)b;

	return strcmp(x->key, y->key);
}

/* Rejects a key that appears twice, because the format does not say which copy wins and
 * two readers could then see two different models. Sorting keeps this O(n log n). */
static int
gguf_check_unique_keys(struct gguf_cursor *c, const struct gguf_file *file)
{
	const struct gguf_kv **order;
	int rc = 0;

	if (file->n_kv < 2)
		return 0;
	order = alloc_array(file->n_kv, sizeof(*order));
	for (uint64_t i = 0; i < file->n_kv; i++)
		order[i] = &file->kv[i];
	qsort(order, file->n_kv, sizeof(*order), gguf_compare_keys);
	for (uint64_t i = 1; i < file->n_kv && rc == 0; i++) {
		if (strcmp(order[i - 1]->key, order[i]->key) == 0) {
			char message[128];

			snprintf(message, sizeof(message), "metadata key '%.64s' appears twice", order[i]->key);
			rc = gguf_fail(c, message);
		}
	}
	free(order);
	return rc;
}

static int
gguf_read_header_kv(struct gguf_cursor *c, struct gguf_file *file)
{
	/* A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes. */
	if (file->n_kv > (c->size - c->pos) / 13) {
		char message[160];

		snprintf(message, sizeof(message), "metadata count %" PRIu64 " is larger than the file can hold",
			 file->n_kv);
		return gguf_fail(c, message);
	}
	file->kv = alloc_zeroed(file->n_kv ? file->n_kv : 1, sizeof(*file->kv));
	for (uint64_t i = 0; i < file->n_kv; i++) {
		struct gguf_string key;
		uint32_t type;

		if (gguf_read_string(c, &key, "metadata key") != 0)
			return -1;
		file->kv[i].key = gguf_copy_name(c, &key, "metadata key");
		if (file->kv[i].key == NULL)
			return -1;
		if (gguf_read_u32(c, &type, "metadata value type") != 0)
			return -1;
		if (type >= GGUF_VALUE_TYPE_COUNT) {
			char message[256];

			snprintf(message, sizeof(message), "metadata key '%.64s' has unknown value type %" PRIu32,
				 file->kv[i].key, type);
			return gguf_fail(c, message);
		}
		if (gguf_read_value(c, (enum gguf_value_type)type, &file->kv[i].value, 0) != 0) {
			error_prefix(c->err, "key '%.64s'", file->kv[i].key);
			return -1;
		}
	}
	return gguf_check_unique_keys(c, file);
}

static int
gguf_read_tensor_info(struct gguf_cursor *c, struct gguf_tensor *t)
{
	struct gguf_string name;
	uint32_t type;
	char message[256];

	if (gguf_read_string(c, &name, "tensor name") != 0)
		return -1;
	t->name = gguf_copy_name(c, &name, "tensor name");
	if (t->name == NULL)
		return -1;
	if (gguf_read_u32(c, &t->n_dims, "tensor dimension count") != 0)
		return -1;
	if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
		snprintf(message, sizeof(message), "tensor '%.64s' has %" PRIu32 " dimensions (1 to %d allowed)",
			 t->name, t->n_dims, GGUF_MAX_DIMS);
		return gguf_fail(c, message);
	}
	t->n_elements = 1;
	for (uint32_t d = 0; d < t->n_dims; d++) {
		if (gguf_read_u64(c, &t->ne[d], "tensor shape") != 0)
			return -1;
		if (t->ne[d] == 0 || t->ne[d] > INT64_MAX ||
		    !alloc_mul_ok(t->n_elements, t->ne[d], &t->n_elements) ||
		    t->n_elements > INT64_MAX) {
			snprintf(message, sizeof(message), "tensor '%.64s' has an invalid shape (dimension %" PRIu32
				 " is %" PRIu64 ", or the element count overflows)", t->name, d, t->ne[d]);
			return gguf_fail(c, message);
		}
	}
	for (uint32_t d = t->n_dims; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	if (gguf_read_u32(c, &type, "tensor type") != 0 || gguf_read_u64(c, &t->offset, "tensor offset") != 0)
		return -1;
	t->type = (enum ggml_type)type;
	t->size = gguf_type_size(t->type, t->n_elements);
	if (t->size == 0) {
		snprintf(message, sizeof(message),
			 "tensor '%.64s' has type %" PRIu32 " (%s), which catscope does not read, or a row "
			 "length that is not a whole number of blocks", t->name, type, gguf_type_name(t->type));
		return gguf_fail(c, message);
	}
	return 0;
}

static int
gguf_compare_offsets(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int
gguf_compare_names(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;

	return strcmp(x->name, y->name);
}

/* Checks that tensors have distinct names and lie inside the data section without overlapping. */
static int
gguf_check_tensor_layout(struct gguf_file *file, struct error *err)
{
	uint64_t data_size = file->map_size - file->data_offset;
	const struct gguf_tensor **order;
	int rc = 0;

	for (uint64_t i = 0; i < file->n_tensors; i++) {
		struct gguf_tensor *t = &file->tensors[i];

		if (t->offset % file->alignment != 0 || t->offset > data_size ||
		    t->size > data_size - t->offset) {
			return error_set(err, "%s: invalid GGUF file: tensor '%.64s' (offset %" PRIu64 ", %" PRIu64
					 " bytes) lies outside the data section (%" PRIu64 " bytes) or is not "
					 "aligned to %" PRIu64 "; the file is truncated or damaged",
					 file->path, t->name, t->offset, t->size, data_size, file->alignment);
		}
		t->data = file->map + file->data_offset + t->offset;
	}
	if (file->n_tensors < 2)
		return 0;

	order = alloc_array(file->n_tensors, sizeof(*order));
	for (uint64_t i = 0; i < file->n_tensors; i++)
		order[i] = &file->tensors[i];
	qsort(order, file->n_tensors, sizeof(*order), gguf_compare_names);
	for (uint64_t i = 1; i < file->n_tensors && rc == 0; i++) {
		if (strcmp(order[i - 1]->name, order[i]->name) == 0)
			rc = error_set(err, "%s: invalid GGUF file: tensor name '%.64s' appears twice",
				       file->path, order[i]->name);
	}
	qsort(order, file->n_tensors, sizeof(*order), gguf_compare_offsets);
	for (uint64_t i = 1; i < file->n_tensors && rc == 0; i++) {
		if (order[i - 1]->offset + order[i - 1]->size > order[i]->offset)
			rc = error_set(err, "%s: invalid GGUF file: tensors '%.64s' and '%.64s' overlap",
				       file->path, order[i - 1]->name, order[i]->name);
	}
	free(order);
	return rc;
}

static int
gguf_parse(struct gguf_file *file, struct error *err)
{
	struct gguf_cursor c = { file->map, file->map_size, 0, file->path, err };
	uint32_t magic;
	const struct gguf_kv *alignment_kv;

	if (gguf_read_u32(&c, &magic, "magic") != 0)
		return -1;
	if (magic != GGUF_MAGIC)
		return error_set(err, "%s: not a GGUF file (the first four bytes are not \"GGUF\")", file->path);
	if (gguf_read_u32(&c, &file->version, "version") != 0)
		return -1;
	if (file->version != 2 && file->version != 3)
		return error_set(err, "%s: GGUF version %" PRIu32 " is not supported (versions 2 and 3 are); "
				 "convert the model again with a current llama.cpp", file->path, file->version);
	if (gguf_read_u64(&c, &file->n_tensors, "tensor count") != 0 ||
	    gguf_read_u64(&c, &file->n_kv, "metadata count") != 0)
		return -1;
	if (gguf_read_header_kv(&c, file) != 0)
		return -1;

	/* A tensor info takes at least 8 (name length) + 4 + 8 (one dimension) + 4 + 8 bytes. */
	if (file->n_tensors > (c.size - c.pos) / 32) {
		char message[160];

		snprintf(message, sizeof(message), "tensor count %" PRIu64 " is larger than the file can hold",
			 file->n_tensors);
		return gguf_fail(&c, message);
	}
	file->tensors = alloc_zeroed(file->n_tensors ? file->n_tensors : 1, sizeof(*file->tensors));
	for (uint64_t i = 0; i < file->n_tensors; i++) {
		if (gguf_read_tensor_info(&c, &file->tensors[i]) != 0)
			return -1;
	}

	file->alignment = GGUF_DEFAULT_ALIGNMENT;
	alignment_kv = gguf_find_kv(file, "general.alignment");
	if (alignment_kv != NULL) {
		uint64_t a = alignment_kv->value.as.u64;

		if (alignment_kv->value.type != GGUF_VALUE_UINT32 || a == 0 || (a & (a - 1)) != 0 || a > 1 << 20)
			return error_set(err, "%s: invalid GGUF file: general.alignment must be a power of two "
					 "stored as uint32", file->path);
		file->alignment = a;
	}
	file->data_offset = (c.pos + file->alignment - 1) / file->alignment * file->alignment;
	if (file->n_tensors > 0 && file->data_offset > file->map_size)
		return error_set(err, "%s: invalid GGUF file: the tensor data section is missing "
				 "(the file ends at byte %zu); the file is truncated", file->path, file->map_size);
	if (file->data_offset > file->map_size)
		file->data_offset = file->map_size;
	return gguf_check_tensor_layout(file, err);
}

struct gguf_file *
gguf_open(const char *path, struct error *err)
{
	struct gguf_file *file;
	const uint8_t *map;
	size_t map_size;

	if (mapfile_open(path, &map, &map_size, err) != 0)
		return NULL;
	file = alloc_zeroed(1, sizeof(*file));
	file->path = alloc_strdup(path);
	file->map = map;
	file->map_size = map_size;
	if (gguf_parse(file, err) != 0) {
		gguf_close(file);
		return NULL;
	}
	return file;
}

void
gguf_close(struct gguf_file *file)
{
	if (file == NULL)
		return;
	for (uint64_t i = 0; file->kv != NULL && i < file->n_kv; i++) {
		free(file->kv[i].key);
		if (file->kv[i].value.type == GGUF_VALUE_ARRAY)
			free(file->kv[i].value.as.array.string_offsets);
	}
	for (uint64_t i = 0; file->tensors != NULL && i < file->n_tensors; i++)
		free(file->tensors[i].name);
	free(file->kv);
	free(file->tensors);
	mapfile_close(file->map, file->map_size);
	free(file->path);
	free(file);
}
