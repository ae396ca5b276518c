/* Typed access to GGUF metadata and tensors. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "catscope/gguf.h"

static const char *const gguf_value_type_names[GGUF_VALUE_TYPE_COUNT] = {
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
};

const struct gguf_kv *
gguf_find_kv(const struct gguf_file *file, const char *key)
{
	for (uint64_t i = 0; i < file->n_kv; i++) {
		if (file->kv[i].key != NULL && strcmp(file->kv[i].key, key) == 0)
			return &file->kv[i];
	}
	return NULL;
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf_file *file, const char *name)
{
	for (uint64_t i = 0; i < file->n_tensors; i++) {
		if (strcmp(file->tensors[i].name, name) == 0)
			return &file->tensors[i];
	}
	return NULL;
}

static const struct gguf_kv *
gguf_require(const struct gguf_file *file, const char *key, struct error *err)
{
	const struct gguf_kv *kv = gguf_find_kv(file, key);

	if (kv == NULL)
		error_set(err, "%s: the metadata key '%s' is missing", file->path, key);
	return kv;
}

static int
gguf_type_mismatch(const struct gguf_file *file, const char *key, const struct gguf_kv *kv,
		   const char *wanted, struct error *err)
{
	unsigned type = kv->value.type;

	return error_set(err, "%s: metadata key '%s' is %s, expected %s", file->path, key,
			 type < GGUF_VALUE_TYPE_COUNT ? gguf_value_type_names[type] : "unknown", wanted);
}

static int
gguf_is_unsigned(enum gguf_value_type t)
{
	return t == GGUF_VALUE_UINT8 || t == GGUF_VALUE_UINT16 || t == GGUF_VALUE_UINT32 ||
	       t == GGUF_VALUE_UINT64;
}

static int
gguf_is_signed(enum gguf_value_type t)
{
	return t == GGUF_VALUE_INT8 || t == GGUF_VALUE_INT16 || t == GGUF_VALUE_INT32 ||
	       t == GGUF_VALUE_INT64;
}

int
gguf_get_u32(const struct gguf_file *file, const char *key, uint32_t *out, struct error *err)
{
	const struct gguf_kv *kv = gguf_require(file, key, err);

	if (kv == NULL)
		return -1;
	if (gguf_is_unsigned(kv->value.type) && kv->value.as.u64 <= UINT32_MAX) {
		*out = (uint32_t)kv->value.as.u64;
		return 0;
	}
	if (gguf_is_signed(kv->value.type) && kv->value.as.i64 >= 0 && kv->value.as.i64 <= UINT32_MAX) {
		*out = (uint32_t)kv->value.as.i64;
		return 0;
	}
	return gguf_type_mismatch(file, key, kv, "an unsigned 32-bit integer", err);
}

int
gguf_get_f32(const struct gguf_file *file, const char *key, float *out, struct error *err)
{
	const struct gguf_kv *kv = gguf_require(file, key, err);

	if (kv == NULL)
		return -1;
	if (kv->value.type != GGUF_VALUE_FLOAT32 && kv->value.type != GGUF_VALUE_FLOAT64)
		return gguf_type_mismatch(file, key, kv, "a float", err);
	*out = (float)kv->value.as.f64;
	return 0;
}

int
gguf_get_string(const struct gguf_file *file, const char *key, struct gguf_string *out,
		struct error *err)
{
	const struct gguf_kv *kv = gguf_require(file, key, err);

	if (kv == NULL)
		return -1;
	if (kv->value.type != GGUF_VALUE_STRING)
		return gguf_type_mismatch(file, key, kv, "a string", err);
	*out = kv->value.as.string;
	return 0;
}

const struct gguf_value *
gguf_get_array(const struct gguf_file *file, const char *key, enum gguf_value_type element_type,
	       struct error *err)
{
	const struct gguf_kv *kv = gguf_require(file, key, err);

	if (kv == NULL)
		return NULL;
	if (kv->value.type != GGUF_VALUE_ARRAY || kv->value.as.array.type != element_type) {
		char wanted[64];

		snprintf(wanted, sizeof(wanted), "an array of %s", gguf_value_type_names[element_type]);
		gguf_type_mismatch(file, key, kv, wanted, err);
		return NULL;
	}
	return &kv->value;
}

struct gguf_string
gguf_array_string(const struct gguf_value *array, uint64_t i)
{
	struct gguf_string s;
	const uint8_t *p = array->as.array.data + array->as.array.string_offsets[i];

	memcpy(&s.length, p, 8);
	s.data = (const char *)(p + 8);
	return s;
}
