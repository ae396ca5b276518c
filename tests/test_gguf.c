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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_tiny_model_loads),
		cmocka_unit_test(every_truncation_fails_cleanly),
		cmocka_unit_test(damaged_files_fail_cleanly),
		cmocka_unit_test(missing_and_empty_files_fail),
		cmocka_unit_test(real_model_metadata_reads),
	};

	return cmocka_run_group_tests_name("gguf", tests, setup, teardown);
}
