/* Tests of the safetensors reader: the real hf-stories260K checkpoint, hostile files
 * written here (each must fail with a message naming the file and the problem), sharded
 * checkpoints with a bad index, and the catscope binary on a hostile checkpoint. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catscope/safetensors.h"
#include "catscope/testutil.h"
#include "safetensors_writer.h"

static char scratch[4096];

static int
make_scratch(void **state)
{
	snprintf(scratch, sizeof(scratch), "%s", testutil_scratch_dir());
	return 0;
}

static int
remove_scratch(void **state)
{
	char command[4352];

	snprintf(command, sizeof(command), "rm -rf '%s'", scratch);
	return system(command) == 0 ? 0 : -1;
}

static const char *
scratch_path(const char *name)
{
	static char path[8192];

	snprintf(path, sizeof(path), "%s/%s", scratch, name);
	return path;
}

static void
expect_open_fails(const char *path, const char *needle)
{
	struct error err;
	struct safetensors_file *f = safetensors_open(path, &err);

	assert_null(f);
	print_message("%s\n", err.message);
	assert_non_null(strstr(err.message, path));
	assert_non_null(strstr(err.message, needle));
}

static void
real_checkpoint_parses(void **state)
{
	struct error err;
	struct safetensors_file *f = safetensors_open(testutil_data_path("hf-stories260K/model.safetensors"),
						      &err);
	const struct safetensors_tensor *t;
	uint64_t parameters = 0;

	assert_non_null(f);
	assert_int_equal(f->n_tensors, 47);
	assert_int_equal(f->data_offset, 4864);
	for (size_t i = 0; i < f->n_tensors; i++)
		parameters += f->tensors[i].n_elements;
	assert_int_equal(parameters, 260032);
	t = safetensors_find(f, "model.embed_tokens.weight");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_F32);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->shape[0], 512);
	assert_int_equal(t->shape[1], 64);
	assert_null(safetensors_find(f, "lm_head.weight"));
	safetensors_close(f);
}

static void
truncated_files_rejected(void **state)
{
	struct error err;
	struct safetensors_file *real = safetensors_open(testutil_data_path("hf-stories260K/model.safetensors"),
							 &err);
	/* Inside the length field, inside the header, at the end of the header, inside
	 * the data, one byte short. */
	const size_t cuts[] = { 0, 5, 8, 100, 4864, 4864 + 1001, 0 };
	const char *needles[] = { "too short", "too short", "runs past the end", "runs past the end",
				  "past the end of the data section", "past the end of the data section",
				  "past the end of the data section" };

	assert_non_null(real);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		size_t cut = i == 6 ? real->map_size - 1 : cuts[i];
		FILE *out = fopen(scratch_path("truncated.safetensors"), "wb");

		assert_non_null(out);
		fwrite(real->map, 1, cut, out);
		fclose(out);
		expect_open_fails(scratch_path("truncated.safetensors"), needles[i]);
	}
	safetensors_close(real);
}

static void
header_length_rejected(void **state)
{
	const char *header = "{}      ";
	const char *path = scratch_path("length.safetensors");
	int fd;

	st_write_raw(path, 1000, header, 8, NULL, 0);
	expect_open_fails(path, "header length 1000 runs past the end");
	st_write_raw(path, UINT64_MAX, header, 8, NULL, 0);
	expect_open_fails(path, "runs past the end");
	st_write_raw(path, UINT64_MAX - 7, header, 8, NULL, 0);
	expect_open_fails(path, "runs past the end");

	/* A sparse file larger than the cap, so that only the cap can reject it. */
	st_write_raw(path, SAFETENSORS_MAX_HEADER + 1ull, header, 8, NULL, 0);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)SAFETENSORS_MAX_HEADER + 64), 0);
	close(fd);
	expect_open_fails(path, "larger than the 100000000-byte limit");
	unlink(path);
}

struct header_case {
	const char *header;
	size_t data_size;
	const char *needle;
};

static const struct header_case bad_headers[] = {
	{ "{\"a\": ", 0, "JSON header is invalid" },
	{ "[1, 2]", 0, "not an object" },
	{ "{\"a\": 5}", 0, "not a JSON object" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
	  "past the end of the data section" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
	  " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
	  "overlap" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 8,
	  "bytes 4 to 8 at the end of the data section belong to no tensor" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	  " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12,
	  "bytes 4 to 8 of the data section belong to no tensor (before 'b')" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
	  "bytes 0 to 4 of the data section belong to no tensor" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	  " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
	  "duplicate" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
	  "\"data_offsets\": [0, 4]}}", 4, "64 bits" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
	  "need 12" },
	{ "{\"a\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4,
	  "dtype 'I8'" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
	  "not a non-negative integer" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
	  "end before they begin" },
	{ "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "no \"dtype\"" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
	  "data_offsets" },
	{ "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], "
	  "\"data_offsets\": [0, 4]}}", 4, "9 dimensions" },
};

static void
bad_headers_rejected(void **state)
{
	const char *path = scratch_path("header.safetensors");
	static const uint8_t zeros[16];

	for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
		size_t n = strlen(bad_headers[i].header);

		st_write_raw(path, n, bad_headers[i].header, n, zeros, bad_headers[i].data_size);
		expect_open_fails(path, bad_headers[i].needle);
	}
}

static void
good_header_accepted(void **state)
{
	const char *header = "{\"__metadata__\": {\"format\": \"pt\"}, "
			     "\"b\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [4, 8]}, "
			     "\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}, "
			     "\"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [8, 8]}}   ";
	const uint16_t data[4] = { 0x3c00, 0xc000, 0x3f80, 0x4040 }; /* F16 1 and -2, then BF16 1 and 3 */
	const char *path = scratch_path("good.safetensors");
	struct error err;
	struct safetensors_file *f;
	float values[2];

	st_write_raw(path, strlen(header), header, strlen(header), data, sizeof(data));
	f = safetensors_open(path, &err);
	assert_non_null(f);
	assert_int_equal(f->n_tensors, 3);
	safetensors_tensor_to_f32(safetensors_find(f, "a"), values);
	assert_true(values[0] == 1.0f);
	assert_true(values[1] == -2.0f);
	safetensors_tensor_to_f32(safetensors_find(f, "b"), values);
	assert_true(values[0] == 1.0f);
	assert_true(values[1] == 3.0f);
	assert_int_equal(safetensors_find(f, "e")->n_elements, 0);
	assert_null(safetensors_find(f, "__metadata__"));
	safetensors_close(f);
}

static void
write_index(const char *dir, const char *weight_map)
{
	char path[8192];
	FILE *f;

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "{\"metadata\": {}, \"weight_map\": %s}\n", weight_map);
	fclose(f);
}

static void
bad_index_rejected(void **state)
{
	const char *header = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}";
	const float shard_value = 1.0f;
	char dir[4352];
	struct error err;
	struct safetensors_checkpoint *ckpt;
	static const struct {
		const char *weight_map;
		const char *needle;
	} cases[] = {
		{ "{\"a\": \"../shard.safetensors\"}", "'../shard.safetensors' in weight_map is not a plain file name" },
		{ "{\"a\": \"/tmp/shard.safetensors\"}", "not a plain file name" },
		{ "{\"a\": \"..\"}", "not a plain file name" },
		{ "{\"a\": \"missing.safetensors\"}", "shard 'missing.safetensors'" },
		{ "{\"b\": \"shard.safetensors\"}", "puts tensor 'b'" },
		{ "{}", "\"weight_map\" is missing or empty" },
		{ "{\"a\": 3}", "not a file name string" },
	};

	snprintf(dir, sizeof(dir), "%s/sharded", scratch);
	mkdir(dir, 0700);
	st_write_raw(scratch_path("sharded/shard.safetensors"), strlen(header), header, strlen(header),
		     &shard_value, 4);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_index(dir, cases[i].weight_map);
		ckpt = safetensors_checkpoint_open(dir, &err);
		assert_null(ckpt);
		print_message("%s\n", err.message);
		assert_non_null(strstr(err.message, "model.safetensors.index.json"));
		assert_non_null(strstr(err.message, cases[i].needle));
	}

	write_index(dir, "{\"a\": \"shard.safetensors\"}");
	ckpt = safetensors_checkpoint_open(dir, &err);
	assert_non_null(ckpt);
	assert_non_null(safetensors_checkpoint_find(ckpt, "a", NULL));
	assert_null(safetensors_checkpoint_find(ckpt, "b", NULL));
	safetensors_checkpoint_close(ckpt);
}

static void
empty_directory_rejected(void **state)
{
	char dir[4352];
	struct error err;

	snprintf(dir, sizeof(dir), "%s/empty", scratch);
	mkdir(dir, 0700);
	assert_null(safetensors_checkpoint_open(dir, &err));
	assert_non_null(strstr(err.message, "neither model.safetensors"));
}

/* A FIFO under the name of the index or of the single file is rejected at once.
 * Opening one without O_NONBLOCK would wait for a writer forever, so an alarm turns
 * that hang into a failure. */
static void
fifo_checkpoint_rejected(void **state)
{
	static const char *const names[] = { "model.safetensors.index.json", "model.safetensors" };
	char dir[4352], path[8192];
	struct error err;

	snprintf(dir, sizeof(dir), "%s/fifo", scratch);
	mkdir(dir, 0700);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(mkfifo(path, 0600), 0);
		alarm(10);
		assert_null(safetensors_checkpoint_open(dir, &err));
		alarm(0);
		print_message("%s\n", err.message);
		assert_non_null(strstr(err.message, path));
		assert_non_null(strstr(err.message, "not a regular file"));
		unlink(path);
	}
}

/* Runs catscope eval on dir and returns its exit status; stores stderr in out. */
static int
run_eval(const char *dir, char *out, size_t size)
{
	const char *bin = getenv("CATSCOPE_BIN");
	char command[16384];
	FILE *p;
	size_t n;
	int status;

	snprintf(command, sizeof(command), "'%s' eval '%s' '%s' 2>&1 >/dev/null", bin, dir,
		 testutil_data_path("tinystories_train_sample.txt"));
	p = popen(command, "r");
	assert_non_null(p);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
expect_binary_fails(const char *dir, const char *needle)
{
	char message[4096];
	char *newline;

	assert_int_equal(run_eval(dir, message, sizeof(message)), 1);
	print_message("%s", message);
	newline = strchr(message, '\n');
	assert_non_null(newline);
	assert_string_equal(newline + 1, "");
	assert_non_null(strstr(message, dir));
	assert_non_null(strstr(message, needle));
}

/* Every hostile header, a truncated file and a shard outside the directory make the
 * binary exit with status 1 and one line on stderr that names the file. */
static void
binary_rejects_hostile_checkpoint(void **state)
{
	static const uint8_t zeros[16];
	char dir[4352], link[8192];

	if (getenv("CATSCOPE_BIN") == NULL)
		skip();
	snprintf(dir, sizeof(dir), "%s/hostile-model", scratch);
	mkdir(dir, 0700);
	snprintf(link, sizeof(link), "%s/config.json", dir);
	unlink(link);
	assert_int_equal(symlink(testutil_data_path("hf-stories260K/config.json"), link), 0);
	for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
		size_t n = strlen(bad_headers[i].header);

		st_write_raw(scratch_path("hostile-model/model.safetensors"), n, bad_headers[i].header, n,
			     zeros, bad_headers[i].data_size);
		expect_binary_fails(dir, bad_headers[i].needle);
	}
	st_write_raw(scratch_path("hostile-model/model.safetensors"), 4856, "{", 1, NULL, 0);
	expect_binary_fails(dir, "runs past the end");

	unlink(scratch_path("hostile-model/model.safetensors"));
	write_index(dir, "{\"a\": \"../hf-stories260K/model.safetensors\"}");
	expect_binary_fails(dir, "not a plain file name");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(real_checkpoint_parses),
		cmocka_unit_test(truncated_files_rejected),
		cmocka_unit_test(header_length_rejected),
		cmocka_unit_test(bad_headers_rejected),
		cmocka_unit_test(good_header_accepted),
		cmocka_unit_test(bad_index_rejected),
		cmocka_unit_test(empty_directory_rejected),
		cmocka_unit_test(fifo_checkpoint_rejected),
		cmocka_unit_test(binary_rejects_hostile_checkpoint),
	};

	return cmocka_run_group_tests_name("safetensors", tests, make_scratch, remove_scratch);
}
