/* Tests of the GGUF reader and the GGUF model loader on files written by the test:
 * one valid tiny model and a damaged copy for every kind of fault. Each fault must
 * give an error naming the file (never a crash or a large allocation), and the
 * catscope binary must print one line and exit with status 1. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catscope/gguf.h"
#include "catscope/model.h"
#include "catscope/testutil.h"
#include "gguf_builder.h"

static char scratch[4096];

static const char *
scratch_file(const char *name)
{
	static char path[8192];

	snprintf(path, sizeof(path), "%s/%s", scratch, name);
	return path;
}

static int
setup(void **state)
{
	snprintf(scratch, sizeof(scratch), "%s", testutil_scratch_dir());
	return 0;
}

static int
teardown(void **state)
{
	char command[8300];

	snprintf(command, sizeof(command), "rm -rf '%s'", scratch);
	return system(command) == 0 ? 0 : -1;
}

/* Runs "catscope eval FILE FILE" and checks exit status 1 and one line naming FILE. */
static void
assert_cli_rejects(const char *path)
{
	const char *binary = getenv("CATSCOPE_BIN");
	char command[17000];
	char output[4096];
	FILE *p;
	size_t n;
	int status;
	int lines = 0;

	if (binary == NULL)
		return;
	snprintf(command, sizeof(command), "'%s' eval '%s' '%s' 2>&1 >/dev/null", binary, path, path);
	p = popen(command, "r");
	assert_non_null(p);
	n = fread(output, 1, sizeof(output) - 1, p);
	output[n] = '\0';
	status = pclose(p);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	for (size_t i = 0; i < n; i++)
		lines += output[i] == '\n';
	if (lines != 1 || strstr(output, path) == NULL)
		fail_msg("expected one line naming %s, got: %s", path, output);
}

static void
assert_load_fails(const char *path, const char *expected)
{
	struct error err;
	struct model *m;

	error_clear(&err);
	m = model_load(path, &err);
	if (m != NULL) {
		model_free(m);
		fail_msg("%s loaded, expected an error about '%s'", path, expected);
	}
	if (strstr(err.message, path) == NULL || strstr(err.message, expected) == NULL)
		fail_msg("error for %s should name the file and mention '%s': %s", path, expected,
			 err.message);
	assert_cli_rejects(path);
}

static void
valid_tiny_model_loads(void **state)
{
	struct gguf_builder_options o = { 0 };
	const char *path = scratch_file("valid.gguf");
	struct error err;
	struct model *m;

	assert_true(gguf_builder_write(path, &o) > 0);
	m = model_load(path, &err);
	if (m == NULL)
		fail_msg("%s", err.message);
	assert_int_equal(m->config.dim, GB_DIM);
	assert_int_equal(m->config.n_kv_heads, GB_KV_HEADS);
	assert_true(m->config.tied_output);
	model_free(m);
}

static void
every_truncation_fails_cleanly(void **state)
{
	struct gguf_builder_options o = { 0 };
	const char *full = scratch_file("full.gguf");
	const char *cut = scratch_file("cut.gguf");
	size_t size = gguf_builder_write(full, &o);
	unsigned char *bytes = malloc(size);
	FILE *f = fopen(full, "rb");

	assert_non_null(f);
	assert_int_equal(fread(bytes, 1, size, f), size);
	fclose(f);
	for (size_t length = 0; length < size; length++) {
		struct error err;
		struct model *m;

		f = fopen(cut, "wb");
		fwrite(bytes, 1, length, f);
		fclose(f);
		m = model_load(cut, &err);
		if (m != NULL)
			fail_msg("the file cut to %zu of %zu bytes loaded", length, size);
		assert_non_null(strstr(err.message, cut));
	}
	/* A few cut points through the binary as well: header, metadata, tensor table, data. */
	size_t points[] = { 3, 20, 100, size / 2, size - 1 };
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		f = fopen(cut, "wb");
		fwrite(bytes, 1, points[i], f);
		fclose(f);
		assert_cli_rejects(cut);
	}
	free(bytes);
}

struct damage_case {
	const char *name;
	struct gguf_builder_options options;
	const char *expected; /* a word the message must contain */
};

static void
damaged_files_fail_cleanly(void **state)
{
	const struct damage_case cases[] = {
		{ "magic", { .magic = 0x46554746u }, "not a GGUF file" },
		{ "version1", { .version = 1 }, "version 1" },
		{ "version99", { .version = 99 }, "version 99" },
		{ "tensor-count", { .extra_tensor_count = (uint64_t)1 << 62 }, "tensor count" },
		{ "kv-count", { .extra_kv_count = (uint64_t)1 << 62 }, "metadata count" },
		{ "kv-count-2^32", { .extra_kv_count = (uint64_t)1 << 32 }, "metadata count" },
		{ "key-length", { .key_length_override = (uint64_t)1 << 40 }, "past the end" },
		{ "key-length-2^64", { .key_length_override = UINT64_MAX }, "past the end" },
		{ "offset", { .q_offset_add = 1 << 20 }, "outside the data section" },
		{ "misaligned", { .q_offset_add = 4 }, "aligned" },
		{ "shape-overflow", { .q_ne0_override = (uint64_t)1 << 33 }, "invalid shape" },
		{ "type", { .q_type = 99 }, "type 99" },
		{ "q4-type", { .q_type = 12 }, "type 12" },
		{ "architecture", { .architecture = "gpt2" }, "architecture 'gpt2'" },
		{ "missing", { .skip_tensor = "blk.0.ffn_up.weight" }, "blk.0.ffn_up.weight' is missing" },
		{ "wrong-shape", { .q_rows = 4 }, "blk.0.attn_q.weight' has shape" },
		{ "duplicate", { .rename_tensor = "blk.0.attn_v.weight" }, "appears twice" },
		{ "overlap", { .overlap_q_k = 1 }, "overlap" },
		{ "bad-name", { .bad_name_tensor = "blk.0.ffn_down.weight" }, "UTF-8" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[64];
		const char *path;

		snprintf(name, sizeof(name), "%s.gguf", cases[i].name);
		path = scratch_file(name);
		assert_true(gguf_builder_write(path, &cases[i].options) > 0);
		assert_load_fails(path, cases[i].expected);
	}
}

static void
missing_and_empty_files_fail(void **state)
{
	const char *empty = scratch_file("empty.gguf");
	FILE *f = fopen(empty, "wb");

	fclose(f);
	assert_load_fails(empty, "truncated");
	assert_load_fails(scratch_file("does-not-exist.gguf"), "cannot open");
	assert_load_fails(scratch, "not a regular file");
}

static void
real_model_metadata_reads(void **state)
{
	struct error err;
	struct gguf_file *f = gguf_open(testutil_data_path("stories260K.gguf"), &err);
	struct gguf_string s;
	uint32_t value;
	const struct gguf_value *tokens;

	if (f == NULL)
		fail_msg("%s", err.message);
	assert_int_equal(f->version, 3);
	assert_int_equal(f->n_tensors, 48);
	assert_int_equal(f->n_kv, 19);
	assert_int_equal(f->data_offset, 14176);
	assert_int_equal(gguf_get_string(f, "general.architecture", &s, &err), 0);
	assert_int_equal(s.length, 5);
	assert_memory_equal(s.data, "llama", 5);
	assert_int_equal(gguf_get_u32(f, "llama.block_count", &value, &err), 0);
	assert_int_equal(value, 5);
	/* The separator key is stored as 0xFFFFFFFF, which fits a u32 but no int. */
	assert_int_equal(gguf_get_u32(f, "tokenizer.ggml.seperator_token_id", &value, &err), 0);
	assert_int_equal(value, 0xFFFFFFFFu);
	tokens = gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_VALUE_STRING, &err);
	assert_non_null(tokens);
	assert_int_equal(tokens->as.array.count, 512);
	s = gguf_array_string(tokens, 259);
	assert_int_equal(s.length, 4);
	assert_memory_equal(s.data, "\xe2\x96\x81t", 4); /* "▁t" */
	assert_int_equal(gguf_get_u32(f, "general.name", &value, &err), -1);
	assert_non_null(strstr(err.message, "general.name"));
	gguf_close(f);
}

/* Shapes of a hostile metadata pair appended to the valid tiny model. */
enum hostile_kv_shape {
	KV_STRING_LENGTH, /* a string value whose length field is count */
	KV_ARRAY,         /* an array of count elements of type, with 16 bytes after it
			   * unless it is empty */
	KV_NESTED,        /* depth arrays of one array each, the innermost of count of type */
	KV_VALUE_TYPE,    /* a value of type, followed by 8 bytes */
	KV_RAW_KEY,       /* a uint32 value under the key bytes */
};

struct hostile_kv_case {
	const char *name;
	enum hostile_kv_shape shape;
	uint32_t type;
	uint64_t count;
	int depth;
	const char *key;
	const char *expected; /* NULL when the file must load */
};

static void
hostile_kv_bytes(const struct hostile_kv_case *k, struct gb_buffer *b)
{
	static const unsigned char filler[16] = { 0 };

	gb_string(b, k->shape == KV_RAW_KEY ? k->key : "hostile.key");
	switch (k->shape) {
	case KV_STRING_LENGTH:
		gb_u32(b, 8);
		gb_u64(b, k->count);
		gb_put(b, "abcd", 4);
		break;
	case KV_ARRAY:
		gb_u32(b, 9);
		gb_u32(b, k->type);
		gb_u64(b, k->count);
		/* An empty array must be followed by the next pair at once. */
		if (k->count > 0)
			gb_put(b, filler, sizeof(filler));
		break;
	case KV_NESTED:
		gb_u32(b, 9);
		for (int d = 1; d < k->depth; d++) {
			gb_u32(b, 9);
			gb_u64(b, 1);
		}
		gb_u32(b, k->type);
		gb_u64(b, k->count);
		gb_put(b, filler, 4);
		break;
	case KV_VALUE_TYPE:
		gb_u32(b, k->type);
		gb_put(b, filler, 8);
		break;
	case KV_RAW_KEY:
		gb_u32(b, 4);
		gb_u32(b, 7);
		break;
	}
}

static void
hostile_metadata_fails_cleanly(void **state)
{
	const uint64_t two32 = (uint64_t)1 << 32;
	const struct hostile_kv_case cases[] = {
		{ "string-2^32", KV_STRING_LENGTH, 0, two32, 0, NULL, "past the end" },
		{ "string-2^63", KV_STRING_LENGTH, 0, (uint64_t)1 << 63, 0, NULL, "past the end" },
		{ "string-2^64", KV_STRING_LENGTH, 0, UINT64_MAX, 0, NULL, "past the end" },
		{ "string-2^64-8", KV_STRING_LENGTH, 0, UINT64_MAX - 7, 0, NULL, "past the end" },
		{ "u8-array-2^32", KV_ARRAY, 0, two32, 0, NULL, "past the end" },
		{ "u8-array-2^64", KV_ARRAY, 0, UINT64_MAX, 0, NULL, "past the end" },
		{ "u32-array-2^62", KV_ARRAY, 4, (uint64_t)1 << 62, 0, NULL, "past the end" },
		{ "u64-array-2^61", KV_ARRAY, 10, (uint64_t)1 << 61, 0, NULL, "past the end" },
		{ "f64-array-2^64", KV_ARRAY, 12, UINT64_MAX, 0, NULL, "past the end" },
		{ "string-array-2^32", KV_ARRAY, 8, two32, 0, NULL, "past the end" },
		{ "string-array-2^61", KV_ARRAY, 8, (uint64_t)1 << 61, 0, NULL, "past the end" },
		{ "string-array-2^64", KV_ARRAY, 8, UINT64_MAX, 0, NULL, "past the end" },
		{ "string-array-3", KV_ARRAY, 8, 3, 0, NULL, "past the end" },
		{ "array-array-2^64", KV_ARRAY, 9, UINT64_MAX, 0, NULL, "past the end" },
		{ "array-type-13", KV_ARRAY, 13, 1, 0, NULL, "element type 13" },
		{ "array-type-2^32", KV_ARRAY, UINT32_MAX, 1, 0, NULL, "element type 4294967295" },
		{ "nested-4-u8-2^64", KV_NESTED, 0, UINT64_MAX, 4, NULL, "past the end" },
		{ "nested-4-strings-2^32", KV_NESTED, 8, two32, 4, NULL, "past the end" },
		{ "nested-5", KV_NESTED, 0, 4, 5, NULL, "nested too deeply" },
		{ "nested-100", KV_NESTED, 0, 4, 100, NULL, "nested too deeply" },
		{ "value-type-13", KV_VALUE_TYPE, 13, 0, 0, NULL, "unknown value type 13" },
		{ "value-type-2^32", KV_VALUE_TYPE, UINT32_MAX, 0, 0, NULL, "unknown value type 4294967295" },
		{ "key-latin1", KV_RAW_KEY, 0, 0, 0, "caf\xe9", "UTF-8" },
		{ "key-overlong", KV_RAW_KEY, 0, 0, 0, "\xc0\xaf", "UTF-8" },
		{ "key-surrogate", KV_RAW_KEY, 0, 0, 0, "\xed\xa0\x80", "UTF-8" },
		{ "key-duplicate", KV_RAW_KEY, 0, 0, 0, "llama.block_count", "appears twice" },
		/* These are valid and must load. */
		{ "nested-4", KV_NESTED, 0, 4, 4, NULL, NULL },
		{ "empty-string-array", KV_ARRAY, 8, 0, 0, NULL, NULL },
		{ "key-utf8", KV_RAW_KEY, 0, 0, 0, "caf\xc3\xa9.\xe2\x96\x81", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gguf_builder_options o = { 0 };
		struct gb_buffer kv = { 0 };
		char name[64];
		const char *path;

		hostile_kv_bytes(&cases[i], &kv);
		o.extra_kv = kv.data;
		o.extra_kv_size = kv.size;
		o.extra_kv_entries = 1;
		snprintf(name, sizeof(name), "kv-%s.gguf", cases[i].name);
		path = scratch_file(name);
		assert_true(gguf_builder_write(path, &o) > 0);
		free(kv.data);
		if (cases[i].expected != NULL) {
			assert_load_fails(path, cases[i].expected);
		} else {
			struct error err;
			struct model *m = model_load(path, &err);

			if (m == NULL)
				fail_msg("%s should load: %s", cases[i].name, err.message);
			model_free(m);
		}
	}
}

struct hostile_tensor_case {
	const char *name;
	uint64_t name_length; /* 0: the length of "hostile" */
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	uint32_t type;
	uint64_t offset;
	const char *expected;
};

static void
hostile_tensor_infos_fail_cleanly(void **state)
{
	const uint64_t two32 = (uint64_t)1 << 32;
	const struct hostile_tensor_case cases[] = {
		{ "name-2^32", two32, 1, { 32 }, 0, 0, "past the end" },
		{ "name-2^64", UINT64_MAX, 1, { 32 }, 0, 0, "past the end" },
		{ "dims-0", 0, 0, { 32 }, 0, 0, "0 dimensions" },
		{ "dims-5", 0, 5, { 32 }, 0, 0, "5 dimensions" },
		{ "dims-2^32", 0, UINT32_MAX, { 32 }, 0, 0, "4294967295 dimensions" },
		{ "ne-0", 0, 2, { 32, 0 }, 0, 0, "invalid shape" },
		{ "ne-2^63", 0, 1, { (uint64_t)1 << 63 }, 0, 0, "invalid shape" },
		{ "ne-2^64", 0, 1, { UINT64_MAX }, 0, 0, "invalid shape" },
		{ "ne-2^32-squared", 0, 2, { two32, two32 }, 0, 0, "invalid shape" },
		{ "ne-4d-overflow", 0, 4, { 1 << 16, 1 << 16, 1 << 16, 1 << 16 }, 0, 0, "invalid shape" },
		{ "f32-bytes-overflow", 0, 1, { (uint64_t)1 << 62 }, 0, 0, "does not read" },
		{ "type-2^32", 0, 1, { 32 }, UINT32_MAX, 0, "type 4294967295" },
		{ "q8-partial-block", 0, 1, { 33 }, 8, 0, "whole number of blocks" },
		{ "offset-2^64", 0, 1, { 32 }, 0, UINT64_MAX - 31, "outside the data section" },
		{ "offset-2^63", 0, 1, { 32 }, 0, (uint64_t)1 << 63, "outside the data section" },
		{ "offset-2^32", 0, 1, { 32 }, 0, two32, "outside the data section" },
		{ "size-2^42", 0, 2, { two32, 1024 }, 0, 0, "outside the data section" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hostile_tensor_case *k = &cases[i];
		struct gguf_builder_options o = { 0 };
		struct gb_buffer info = { 0 };
		char name[64];
		const char *path;

		gb_u64(&info, k->name_length ? k->name_length : strlen("hostile"));
		gb_put(&info, "hostile", strlen("hostile"));
		gb_u32(&info, k->n_dims);
		for (uint32_t d = 0; d < k->n_dims && d < GGUF_MAX_DIMS; d++)
			gb_u64(&info, k->ne[d]);
		gb_u32(&info, k->type);
		gb_u64(&info, k->offset);
		o.extra_tensor = info.data;
		o.extra_tensor_size = info.size;
		snprintf(name, sizeof(name), "tensor-%s.gguf", k->name);
		path = scratch_file(name);
		assert_true(gguf_builder_write(path, &o) > 0);
		free(info.data);
		assert_load_fails(path, k->expected);
	}
}

/* Loads path in a child process and returns how far the child's peak RSS rose, in KB. */
static long
load_rss_growth_kb(const char *path)
{
	int fds[2];
	pid_t pid;
	long growth = -1;
	int status;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rusage before, after;
		struct error err;
		struct model *m;

		close(fds[0]);
		getrusage(RUSAGE_SELF, &before);
		m = model_load(path, &err);
		getrusage(RUSAGE_SELF, &after);
		growth = m == NULL ? after.ru_maxrss - before.ru_maxrss : -2;
		model_free(m);
		if (write(fds[1], &growth, sizeof(growth)) != sizeof(growth))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], &growth, sizeof(growth)) != sizeof(growth))
		growth = -3;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return growth;
}

/* A tensor that declares 4 TiB must be rejected by comparing it with the file before
 * any buffer of that size is allocated or touched. */
static void
huge_declarations_fail_before_allocation(void **state)
{
	struct gguf_builder_options o = { 0 };
	struct gb_buffer info = { 0 };
	const char *tensor_path = scratch_file("huge-tensor.gguf");
	long growth;

	gb_string(&info, "huge.weight");
	gb_u32(&info, 2);
	gb_u64(&info, (uint64_t)1 << 30);
	gb_u64(&info, 1024);
	gb_u32(&info, 0);
	gb_u64(&info, 0);
	o.extra_tensor = info.data;
	o.extra_tensor_size = info.size;
	assert_true(gguf_builder_write(tensor_path, &o) > 0);
	free(info.data);
	growth = load_rss_growth_kb(tensor_path);
	if (growth < 0 || growth > 32 * 1024)
		fail_msg("loading %s grew the peak RSS by %ld KB (at most 32 MB expected)", tensor_path,
			 growth);
}

/* Runs two tokens through a model and returns how many logits are not finite. */
static int
count_nonfinite_logits(struct model *m)
{
	const int32_t tokens[2] = { 1, 4 };
	struct model_kv_cache *cache = model_kv_cache_new(&m->config, 2);
	struct model_workspace *ws = model_workspace_new(&m->config, 2, 2);
	float *logits = calloc((size_t)2 * m->config.vocab_size, sizeof(float));
	struct error err;
	int nonfinite = 0;

	assert_non_null(logits);
	if (model_forward(m, NULL, ws, cache, tokens, 2, logits, NULL, &err) == 0) {
		for (int i = 0; i < 2 * m->config.vocab_size; i++)
			nonfinite += !isfinite(logits[i]);
	} else {
		/* A clear error is an accepted outcome too; it must name something. */
		assert_true(err.message[0] != '\0');
		nonfinite = -1;
	}
	free(logits);
	model_workspace_free(ws);
	model_kv_cache_free(cache);
	return nonfinite;
}

static void
nonfinite_weights_load_and_run(void **state)
{
	const float values[] = { NAN, INFINITY, -INFINITY };
	const char *names[] = { "nan", "inf", "-inf" };

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct gguf_builder_options o = { 0 };
		char name[64];
		const char *path;
		struct error err;
		struct model *m;
		int nonfinite;

		o.nan_in_weights = values[i];
		o.inf_in_norm = values[i];
		snprintf(name, sizeof(name), "weights-%s.gguf", names[i]);
		path = scratch_file(name);
		assert_true(gguf_builder_write(path, &o) > 0);
		m = model_load(path, &err);
		if (m == NULL)
			fail_msg("%s should load: %s", path, err.message);
		nonfinite = count_nonfinite_logits(m);
		if (nonfinite == 0)
			fail_msg("%s: a %s weight gave only finite logits", path, names[i]);
		model_free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_tiny_model_loads),
		cmocka_unit_test(every_truncation_fails_cleanly),
		cmocka_unit_test(damaged_files_fail_cleanly),
		cmocka_unit_test(missing_and_empty_files_fail),
		cmocka_unit_test(real_model_metadata_reads),
		cmocka_unit_test(hostile_metadata_fails_cleanly),
		cmocka_unit_test(hostile_tensor_infos_fail_cleanly),
		cmocka_unit_test(huge_declarations_fail_before_allocation),
		cmocka_unit_test(nonfinite_weights_load_and_run),
	};

	return cmocka_run_group_tests_name("gguf", tests, setup, teardown);
}
