/* GGUF reader (versions 2 and 3): header, metadata, tensor infos and tensor data
 * through a read-only mmap of the file.
 *
 * Every count, length, shape, offset and size is checked against the bytes left in
 * the file before anything is allocated or read, so a hostile file fails with a
 * message instead of a crash or a large allocation. Strings in the file are not
 * NUL-terminated: values carry a pointer into the map and a length. Keys and tensor
 * names are copied and NUL-terminated, and must be valid UTF-8. */
#ifndef CATSCOPE_GGUF_H
#define CATSCOPE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catscope/error.h"

enum gguf_value_type {
	GGUF_VALUE_UINT8 = 0,
	GGUF_VALUE_INT8 = 1,
	GGUF_VALUE_UINT16 = 2,
	GGUF_VALUE_INT16 = 3,
	GGUF_VALUE_UINT32 = 4,
	GGUF_VALUE_INT32 = 5,
	GGUF_VALUE_FLOAT32 = 6,
	GGUF_VALUE_BOOL = 7,
	GGUF_VALUE_STRING = 8,
	GGUF_VALUE_ARRAY = 9,
	GGUF_VALUE_UINT64 = 10,
	GGUF_VALUE_INT64 = 11,
	GGUF_VALUE_FLOAT64 = 12,
	GGUF_VALUE_TYPE_COUNT
};

/* ggml tensor types that catscope can read; others are rejected by name and number. */
enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_BF16 = 30,
};

#define GGUF_MAX_DIMS 4

struct gguf_string {
	const char *data; /* points into the map; not NUL-terminated */
	uint64_t length;
};

struct gguf_value {
	enum gguf_value_type type;
	union {
		uint64_t u64;  /* all unsigned integers and bool */
		int64_t i64;   /* all signed integers */
		double f64;    /* float32 and float64 */
		struct gguf_string string;
		struct {
			enum gguf_value_type type;
			uint64_t count;
			const uint8_t *data;     /* first element, in the map */
			uint64_t *string_offsets; /* for string arrays: offset of each element from data */
		} array;
	} as;
};

struct gguf_kv {
	char *key;
	struct gguf_value value;
};

struct gguf_tensor {
	char *name;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length) */
	uint64_t n_elements;
	enum ggml_type type;
	uint64_t offset;            /* from the start of the data section */
	uint64_t size;              /* bytes */
	const void *data;           /* in the map */
};

struct gguf_file {
	char *path;
	const uint8_t *map;
	size_t map_size;
	uint32_t version;
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors;
	struct gguf_tensor *tensors;
	uint64_t alignment;
	uint64_t data_offset;
};

/* Maps and parses path. On failure returns NULL and a message naming the file. */
struct gguf_file *gguf_open(const char *path, struct error *err);
void gguf_close(struct gguf_file *file);

const struct gguf_kv *gguf_find_kv(const struct gguf_file *file, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *file, const char *name);

/* Typed lookups: return -1 with a message naming the file and key if the key is
 * missing or its value does not fit the requested type. Integer getters accept any
 * integer type whose value fits. */
int gguf_get_u32(const struct gguf_file *file, const char *key, uint32_t *out, struct error *err);
int gguf_get_f32(const struct gguf_file *file, const char *key, float *out, struct error *err);
int gguf_get_string(const struct gguf_file *file, const char *key, struct gguf_string *out,
		    struct error *err);
/* Returns the array value of key if its elements have the given type, else NULL with a message. */
const struct gguf_value *gguf_get_array(const struct gguf_file *file, const char *key,
					enum gguf_value_type element_type, struct error *err);
/* Element i of a string array. */
struct gguf_string gguf_array_string(const struct gguf_value *array, uint64_t i);

/* Bytes that a tensor of n elements of type takes, or 0 if the type is unknown or n
 * is not a whole number of blocks. */
uint64_t gguf_type_size(enum ggml_type type, uint64_t n_elements);
const char *gguf_type_name(enum ggml_type type);
/* Converts n elements of a tensor's data to float32; returns -1 for a type catscope
 * cannot convert (F32, F16, BF16 and Q8_0 are supported). */
int gguf_tensor_to_f32(const struct gguf_tensor *tensor, float *out, struct error *err);

#endif
