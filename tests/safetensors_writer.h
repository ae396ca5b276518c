/* A small safetensors writer for tests: valid files from tensors, and raw files with
 * any header text and header length, for fault tests. */
#ifndef TESTS_SAFETENSORS_WRITER_H
#define TESTS_SAFETENSORS_WRITER_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/half.h"
#include "catscope/safetensors.h"

/* Writes the 8-byte length field (which need not match), the header text and data. */
static inline void
st_write_raw(const char *path, uint64_t length_field, const char *header, size_t header_size,
	     const void *data, size_t data_size)
{
	FILE *f = fopen(path, "wb");
	uint8_t length[8];

	if (f == NULL) {
		perror(path);
		exit(1);
	}
	for (int i = 0; i < 8; i++)
		length[i] = (uint8_t)(length_field >> (8 * i));
	fwrite(length, 1, 8, f);
	fwrite(header, 1, header_size, f);
	if (data_size > 0)
		fwrite(data, 1, data_size, f);
	fclose(f);
}

/* A tensor held in memory as float32 values. */
struct st_tensor {
	char name[128];
	int n_dims;
	uint64_t shape[SAFETENSORS_MAX_DIMS];
	uint64_t n_elements;
	float *values;
};

/* Copies every tensor of f into a new array (free with st_free_all). */
static inline size_t
st_read_all(const struct safetensors_file *f, struct st_tensor **out)
{
	struct st_tensor *list = calloc(f->n_tensors + 1, sizeof(*list));

	for (size_t i = 0; i < f->n_tensors; i++) {
		const struct safetensors_tensor *t = &f->tensors[i];

		snprintf(list[i].name, sizeof(list[i].name), "%s", t->name);
		list[i].n_dims = t->n_dims;
		memcpy(list[i].shape, t->shape, sizeof(t->shape));
		list[i].n_elements = t->n_elements;
		list[i].values = malloc(t->n_elements * sizeof(float) + 1);
		safetensors_tensor_to_f32(t, list[i].values);
	}
	*out = list;
	return f->n_tensors;
}

static inline void
st_free_all(struct st_tensor *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i].values);
	free(list);
}

/* Writes n tensors to path, converted to dtype ("F32", "F16" or "BF16") and packed
 * back to back. The header is padded with spaces so that the data starts at a
 * multiple of 8, as in the real checkpoint. */
static inline void
st_write_tensors(const char *path, const char *dtype, const struct st_tensor *list, size_t n)
{
	size_t element = strcmp(dtype, "F32") == 0 ? 4 : 2;
	json_t *header = json_object();
	size_t total = 0;
	uint8_t *data;
	char *text;
	size_t text_size, padded;

	json_object_set_new(header, "__metadata__", json_pack("{s:s}", "format", "pt"));
	for (size_t i = 0; i < n; i++) {
		json_t *shape = json_array();
		size_t size = list[i].n_elements * element;

		for (int d = 0; d < list[i].n_dims; d++)
			json_array_append_new(shape, json_integer((json_int_t)list[i].shape[d]));
		json_object_set_new(header, list[i].name,
				    json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype, "shape", shape,
					      "data_offsets", (json_int_t)total, (json_int_t)(total + size)));
		total += size;
	}
	data = malloc(total ? total : 1);
	total = 0;
	for (size_t i = 0; i < n; i++) {
		for (uint64_t e = 0; e < list[i].n_elements; e++) {
			float value = list[i].values[e];
			uint16_t h;

			if (element == 4) {
				memcpy(data + total, &value, 4);
			} else {
				h = strcmp(dtype, "F16") == 0 ? half_f32_to_f16(value) : half_f32_to_bf16(value);
				memcpy(data + total, &h, 2);
			}
			total += element;
		}
	}
	text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
	text_size = strlen(text);
	padded = (text_size + 7) / 8 * 8;
	text = realloc(text, padded);
	memset(text + text_size, ' ', padded - text_size);
	st_write_raw(path, padded, text, padded, data, total);
	free(text);
	free(data);
	json_decref(header);
}

#endif
