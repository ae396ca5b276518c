/* Tests of catscope export: packing, the exported model against the simulation,
 * atomicity, the documented layout, damaged exports, and the cancel check of
 * eval_perplexity that the explorer uses. Uses stories260K.gguf and
 * a calibration cache built here from the TinyStories sample. */
#include "config.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/calib.h"
#include "catscope/calib_cache.h"
#include "catscope/eval.h"
#include "catscope/export.h"
#include "catscope/safetensors_write.h"
#include "catscope/simulate.h"
#include "catscope/testutil.h"
#include "catscope/workspace.h"
#include "../src/export/export_impl.h"

#define CALIB_TOKENS 8192
#define CALIB_CTX 256
#define EVAL_CTX 128
/* Held-out text: 20,000 bytes from 1,000,000 onward, past the calibration tokens. */
#define HELD_OFFSET 1000000
#define HELD_BYTES 20000

static char scratch[4096];
static char cache_path[8192];
static struct workspace ws;
static int32_t *held_ids;
static size_t n_held;
static char *held_text;
static size_t held_length;

static const char *
scratch_path(const char *name)
{
	static char path[4][8192];
	static int turn;

	turn = (turn + 1) % 4;
	snprintf(path[turn], sizeof(path[turn]), "%s/%s", scratch, name);
	return path[turn];
}

static int
setup_group(void **state)
{
	struct calib_options options = { .max_tokens = CALIB_TOKENS, .sample_size = 256, .seed = 0 };
	struct error err;
	struct model *model;
	struct calib_result *r;
	FILE *f;
	char *text = alloc_bytes(400000);
	size_t length;
	int32_t *ids;
	size_t n_ids;

	(void)state;
	snprintf(scratch, sizeof(scratch), "%s", testutil_scratch_dir());
	model = model_load(testutil_data_path("stories260K.gguf"), &err);
	f = fopen(testutil_data_path("tinystories_train_sample.txt"), "rb");
	if (model == NULL || f == NULL) {
		fprintf(stderr, "the real data is missing: %s\n", model ? "text" : err.message);
		return -1;
	}
	length = fread(text, 1, 400000, f);
	if (fseek(f, HELD_OFFSET, SEEK_SET) == 0) {
		held_text = alloc_bytes(HELD_BYTES + 1);
		held_length = fread(held_text, 1, HELD_BYTES, f);
		held_text[held_length] = '\0';
	}
	fclose(f);
	if (tokenizer_encode(model->tokenizer, text, length, true, &ids, &n_ids, &err) != 0 ||
	    tokenizer_encode(model->tokenizer, held_text, held_length, true, &held_ids, &n_held, &err) != 0)
		return -1;
	free(text);
	r = calib_run(model, ids, n_ids, CALIB_CTX, &options, NULL, &err);
	free(ids);
	snprintf(cache_path, sizeof(cache_path), "%s/cache.bin", scratch);
	if (r == NULL || calib_cache_write(cache_path, r, &err) != 0) {
		fprintf(stderr, "calibration failed: %s\n", err.message);
		return -1;
	}
	calib_result_free(r);
	model_free(model);
	if (workspace_open(&ws, testutil_data_path("stories260K.gguf"), cache_path, &err) != 0) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	return 0;
}

static int
teardown_group(void **state)
{
	char command[8300];

	(void)state;
	workspace_close(&ws);
	free(held_ids);
	free(held_text);
	snprintf(command, sizeof(command), "rm -rf '%s'", scratch);
	return system(command) == 0 ? 0 : -1;
}

/* An analysis of the shared workspace with one transform everywhere. */
static struct analysis *
new_analysis(const char *transform, enum quant_rounding rounding)
{
	struct analysis *a = workspace_new_analysis(&ws);
	struct transform_spec spec;
	struct quant_config qc;
	struct error err;

	quant_config_default(&qc);
	qc.rounding = rounding;
	assert_int_equal(transform_spec_parse(transform, &spec, &err), 0);
	analysis_set_quant(a, &qc);
	for (int i = 0; i < a->n_sites; i++)
		analysis_set_transform(a, i, &spec);
	return a;
}

static void
write_export(struct analysis *a, const struct export_options *opt, const char *dir)
{
	struct export_summary summary;
	struct error err;

	if (export_write(a, opt, dir, &summary, &err) != 0)
		fail_msg("export to %s failed: %s", dir, err.message);
	assert_int_equal(summary.inexact_groups, 0);
	assert_true(summary.bytes > 0);
}

static double
perplexity(const struct model *m, const struct model_block *blocks, const struct model_hooks *hooks)
{
	struct eval_result result;
	struct error err;

	if (eval_perplexity(m, blocks, hooks, held_ids, n_held, EVAL_CTX, NULL, &result, &err) != 0)
		fail_msg("eval failed: %s", err.message);
	return result.perplexity;
}

static bool
path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Counts entries of the scratch directory whose name contains needle. */
static int
scratch_entries_containing(const char *needle)
{
	DIR *d = opendir(scratch);
	struct dirent *e;
	int count = 0;

	while (d != NULL && (e = readdir(d)) != NULL)
		count += strstr(e->d_name, needle) != NULL;
	if (d != NULL)
		closedir(d);
	return count;
}

static char *
read_whole(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	char *data;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*size = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	data = alloc_bytes(*size + 1);
	assert_int_equal(fread(data, 1, *size, f), *size);
	fclose(f);
	return data;
}

/* ---- Packing */

static void
test_export_pack_matches_scalar(void **state)
{
	const int n = 61; /* not a multiple of 8, so the last word is padded */
	uint8_t codes[61], back[61];
	int32_t packed[8];
	struct error err;

	(void)state;
	srand(7);
	for (int i = 0; i < n; i++)
		codes[i] = (uint8_t)(rand() % 16);
	assert_int_equal(quant_pack(codes, n, 4, packed, &err), 8);
	for (int w = 0; w < 8; w++) {
		uint32_t expected = 0;

		for (int j = 0; j < 8; j++) {
			int i = w * 8 + j;

			if (i < n)
				expected += (uint32_t)codes[i] * (uint32_t)pow(16, j);
		}
		assert_int_equal((uint32_t)packed[w], expected);
	}
	assert_int_equal(quant_unpack(packed, n, 4, back, &err), 0);
	assert_memory_equal(back, codes, (size_t)n);
}

static void
test_export_recover_group_exact(void **state)
{
	static const struct quant_params cases[] = {
		{ .bits = 4, .mode = QUANT_SYMMETRIC, .group_size = 0, .clip = 1.0f },
		{ .bits = 4, .mode = QUANT_SYMMETRIC, .group_size = 0, .clip = 0.8f },
		{ .bits = 4, .mode = QUANT_ASYMMETRIC, .group_size = 0, .clip = 1.0f },
		{ .bits = 2, .mode = QUANT_SYMMETRIC, .group_size = 0, .clip = 1.0f },
		{ .bits = 8, .mode = QUANT_ASYMMETRIC, .group_size = 0, .clip = 0.9f },
	};

	(void)state;
	srand(11);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int trial = 0; trial < 200; trial++) {
			float v[96], out[96];
			uint8_t codes[96];
			float step;
			int32_t zero;

			for (int i = 0; i < 96; i++)
				v[i] = ((float)rand() / RAND_MAX - 0.3f) * (float)(trial + 1) * 1e-3f;
			quant_fake_rows(v, 1, 96, 96, &cases[c], NULL);
			assert_int_equal(export_recover_group(v, 96, &cases[c], codes, &step, &zero), 0);
			quant_dequantize(codes, 1, 96, &cases[c], &step, &zero, out);
			assert_memory_equal(out, v, sizeof(v));
		}
	}
}

/* ---- The exported model against the simulation */

static void
check_export_equals_simulation(const char *transform, enum quant_rounding rounding, int kv_bits)
{
	struct analysis *a = new_analysis(transform, rounding);
	struct export_options opt;
	struct simulation *sim;
	struct export_hook_chain chain;
	struct export_runtime *rt;
	struct model *exported;
	struct error err;
	const char *dir = scratch_path("equal");
	double simulated, measured;
	char command[8300];

	export_options_default(&opt);
	opt.dtype = SAFETENSORS_F32;
	opt.source_rope_order = true;
	opt.kv_bits = kv_bits;
	write_export(a, &opt, dir);
	sim = simulation_new(a, &err);
	assert_non_null(sim);
	export_hook_chain_init(&chain, &sim->hooks, kv_bits, ws.model->config.head_dim);
	simulated = perplexity(ws.model, sim->blocks, &chain.hooks);

	exported = model_load(dir, &err);
	if (exported == NULL)
		fail_msg("loading the export failed: %s", err.message);
	rt = export_runtime_open(exported, &err);
	if (rt == NULL)
		fail_msg("opening the runtime failed: %s", err.message);
	assert_int_equal(rt->kv.params.bits, kv_bits);
	measured = perplexity(exported, NULL, &rt->hooks);
	print_message("%s %s kv%d: simulated %.6f, exported %.6f, relative difference %.2e\n",
		      transform, rounding == QUANT_GPTQ ? "gptq" : "rtn", kv_bits, simulated, measured,
		      fabs(measured - simulated) / simulated);
	assert_true(fabs(measured - simulated) <= 1e-3 * simulated);
	export_runtime_free(rt);
	model_free(exported);
	simulation_free(sim);
	analysis_free(a);
	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	assert_int_equal(system(command), 0);
}

static void
test_export_eval_equals_simulation_cat(void **state)
{
	(void)state;
	check_export_equals_simulation("cat", QUANT_RTN, 0);
}

static void
test_export_eval_equals_simulation_gptq_kv4(void **state)
{
	(void)state;
	check_export_equals_simulation("hadamard", QUANT_GPTQ, 4);
}

static void
test_export_tokenizes_identically(void **state)
{
	struct analysis *a = new_analysis("none", QUANT_RTN);
	struct export_options opt;
	const char *dir = scratch_path("tokenizer");
	struct model *exported;
	struct error err;
	int32_t *ids;
	size_t n_ids;
	char *decoded;
	const char *sample = "Once upon a time, Lily saw a big  dog.\nIt said \"hi\" \xc3\xa9!";

	(void)state;
	export_options_default(&opt);
	write_export(a, &opt, dir);
	exported = model_load(dir, &err);
	if (exported == NULL)
		fail_msg("loading the export failed: %s", err.message);
	assert_int_equal(tokenizer_vocab_size(exported->tokenizer), tokenizer_vocab_size(ws.model->tokenizer));
	assert_int_equal(tokenizer_bos_id(exported->tokenizer), tokenizer_bos_id(ws.model->tokenizer));
	assert_int_equal(tokenizer_eos_id(exported->tokenizer), tokenizer_eos_id(ws.model->tokenizer));
	assert_int_equal(tokenizer_encode(exported->tokenizer, held_text, held_length, true, &ids, &n_ids,
					  &err), 0);
	assert_int_equal(n_ids, n_held);
	assert_memory_equal(ids, held_ids, n_ids * sizeof(int32_t));
	free(ids);
	assert_int_equal(tokenizer_encode(exported->tokenizer, sample, strlen(sample), true, &ids, &n_ids,
					  &err), 0);
	decoded = tokenizer_decode(exported->tokenizer, ids, n_ids);
	assert_string_equal(decoded, sample);
	free(decoded);
	free(ids);
	model_free(exported);
	analysis_free(a);
}

/* ---- Layout */

static void
test_export_layout_matches_documentation(void **state)
{
	struct analysis *a = new_analysis("cat", QUANT_RTN);
	struct export_options opt;
	const char *dir = scratch_path("layout");
	const struct model_config *c = &ws.model->config;
	struct safetensors_file *f;
	const struct safetensors_tensor *t;
	json_t *config, *qc, *group, *cat;
	struct error err;
	char path[8400];

	(void)state;
	export_options_default(&opt);
	opt.calib_path = cache_path;
	write_export(a, &opt, dir);
	analysis_free(a);

	snprintf(path, sizeof(path), "%s/config.json", dir);
	config = json_load_file(path, 0, NULL);
	assert_non_null(config);
	assert_string_equal(json_string_value(json_array_get(json_object_get(config, "architectures"), 0)),
			    "LlamaForCausalLM");
	assert_int_equal(json_integer_value(json_object_get(config, "hidden_size")), c->dim);
	assert_int_equal(json_integer_value(json_object_get(config, "num_hidden_layers")), c->n_layers);
	assert_string_equal(json_string_value(json_object_get(config, "torch_dtype")), "float16");
	qc = json_object_get(config, "quantization_config");
	assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "compressed-tensors");
	assert_string_equal(json_string_value(json_object_get(qc, "format")), "pack-quantized");
	assert_string_equal(json_string_value(json_array_get(json_object_get(qc, "ignore"), 0)), "lm_head");
	group = json_object_get(json_object_get(qc, "config_groups"), "group_0");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(group, "weights"), "num_bits")), 4);
	assert_string_equal(json_string_value(json_object_get(json_object_get(group, "weights"), "strategy")),
			    "channel");
	assert_true(json_is_true(json_object_get(json_object_get(group, "weights"), "symmetric")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(group, "input_activations"),
							      "strategy")), "token");
	assert_true(json_is_true(json_object_get(json_object_get(group, "input_activations"), "dynamic")));
	cat = json_object_get(config, "catscope");
	assert_int_equal(json_integer_value(json_object_get(cat, "format_version")), 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(cat, "transforms"), "attn_in")),
			    "cat");
	assert_string_equal(json_string_value(json_object_get(cat, "rounding")), "rtn");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(cat, "kv_cache"), "bits")), 0);
	assert_non_null(json_string_value(json_object_get(json_object_get(cat, "provenance"), "fingerprint")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(cat, "provenance"),
									       "calibration"), "path")), cache_path);
	assert_int_equal(json_array_size(json_object_get(cat, "sites")), (size_t)c->n_layers * SITE_KIND_COUNT);
	json_decref(config);

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	f = safetensors_open(path, &err);
	if (f == NULL)
		fail_msg("%s", err.message);
	t = safetensors_find(f, "model.layers.0.self_attn.q_proj.weight_packed");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_I32);
	assert_int_equal(t->shape[0], (uint64_t)c->n_heads * c->head_dim);
	assert_int_equal(t->shape[1], (uint64_t)(c->dim + 7) / 8);
	t = safetensors_find(f, "model.layers.0.mlp.down_proj.weight_packed");
	assert_non_null(t);
	assert_int_equal(t->shape[1], (uint64_t)(c->hidden_dim + 7) / 8);
	t = safetensors_find(f, "model.layers.0.mlp.down_proj.weight_scale");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_F32);
	assert_int_equal(t->shape[0], (uint64_t)c->dim);
	assert_int_equal(t->shape[1], 1);
	t = safetensors_find(f, "model.layers.0.mlp.down_proj.weight_shape");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_I64);
	assert_null(safetensors_find(f, "model.layers.0.mlp.down_proj.weight_zero_point"));
	t = safetensors_find(f, "model.layers.0.catscope.attn_in.blocks");
	assert_non_null(t);
	assert_int_equal(t->n_dims, 3);
	assert_int_equal(t->shape[0] * t->shape[1], (uint64_t)c->dim);
	t = safetensors_find(f, "model.layers.0.catscope.attn_in.hadamard_block");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_I32);
	t = safetensors_find(f, "model.embed_tokens.weight");
	assert_non_null(t);
	assert_int_equal(t->dtype, SAFETENSORS_F16);
	assert_non_null(safetensors_find(f, "model.norm.weight"));
	assert_non_null(safetensors_find(f, "model.layers.4.post_attention_layernorm.weight"));
	assert_true(c->tied_output || safetensors_find(f, "lm_head.weight") != NULL);
	safetensors_close(f);
}

static void
test_export_shards_and_reloads(void **state)
{
	struct analysis *a = new_analysis("hadamard", QUANT_RTN);
	struct export_options opt;
	const char *dir = scratch_path("sharded");
	struct model *exported;
	struct export_runtime *rt;
	struct error err;
	char path[8400];

	(void)state;
	export_options_default(&opt);
	opt.shard_size = 100 * 1024;
	write_export(a, &opt, dir);
	analysis_free(a);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	assert_false(path_exists(path));
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	assert_true(path_exists(path));
	snprintf(path, sizeof(path), "%s/model-00001-of-00003.safetensors", dir);
	assert_true(path_exists(path));
	snprintf(path, sizeof(path), "%s/model-00003-of-00003.safetensors", dir);
	assert_true(path_exists(path));
	exported = model_load(dir, &err);
	if (exported == NULL)
		fail_msg("loading the sharded export failed: %s", err.message);
	rt = export_runtime_open(exported, &err);
	assert_non_null(rt);
	assert_true(isfinite(perplexity(exported, NULL, &rt->hooks)));
	export_runtime_free(rt);
	model_free(exported);
}

/* ---- Atomicity */

static void
test_export_failure_leaves_nothing(void **state)
{
	struct analysis *a = new_analysis("cat", QUANT_RTN);
	struct export_options opt;
	struct export_summary summary;
	struct error err;
	const char *dir = scratch_path("failing");
	const char *kept = scratch_path("kept");
	char path[8400];
	char *before, *after;
	size_t n_before, n_after;

	(void)state;
	export_options_default(&opt);
	opt.fail_after = 3;
	assert_int_equal(export_write(a, &opt, dir, &summary, &err), -1);
	assert_non_null(strstr(err.message, "injected failure"));
	assert_false(path_exists(dir));
	assert_int_equal(scratch_entries_containing(".tmp-"), 0);

	/* An existing export survives a failing --force and a missing --force. */
	export_options_default(&opt);
	write_export(a, &opt, kept);
	snprintf(path, sizeof(path), "%s/model.safetensors", kept);
	before = read_whole(path, &n_before);
	assert_int_equal(export_write(a, &opt, kept, &summary, &err), -1);
	assert_non_null(strstr(err.message, "--force"));
	opt.force = true;
	opt.fail_after = 10;
	assert_int_equal(export_write(a, &opt, kept, &summary, &err), -1);
	after = read_whole(path, &n_after);
	assert_int_equal(n_after, n_before);
	assert_memory_equal(after, before, n_before);
	free(after);
	assert_int_equal(scratch_entries_containing(".tmp-"), 0);
	assert_int_equal(scratch_entries_containing(".old-"), 0);

	/* A successful --force replaces it and leaves no old copy. */
	opt.fail_after = -1;
	opt.dtype = SAFETENSORS_F32;
	write_export(a, &opt, kept);
	after = read_whole(path, &n_after);
	assert_true(n_after > n_before);
	free(after);
	free(before);
	assert_int_equal(scratch_entries_containing(".old-"), 0);
	assert_int_equal(scratch_entries_containing(".tmp-"), 0);
	analysis_free(a);
}

static void
test_export_rejects_foreign_directory(void **state)
{
	struct analysis *a = new_analysis("none", QUANT_RTN);
	struct export_options opt;
	struct export_summary summary;
	struct error err;
	const char *dir = scratch_path("foreign");

	(void)state;
	assert_int_equal(mkdir(dir, 0755), 0);
	export_options_default(&opt);
	opt.force = true;
	assert_int_equal(export_write(a, &opt, dir, &summary, &err), -1);
	assert_non_null(strstr(err.message, "not a catscope export"));
	assert_true(path_exists(dir));
	analysis_free(a);
}

/* Runs an export in a child that gets SIGINT after `after` layers. */
static void
interrupt_export(const char *dir, bool force)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct analysis *a = new_analysis("cat", QUANT_RTN);
		struct export_options opt;
		struct export_summary summary;
		struct error err;

		atomic_install_signal_cleanup();
		export_options_default(&opt);
		opt.force = force;
		opt.interrupt_after = 5;
		_exit(export_write(a, &opt, dir, &summary, &err) == -1 &&
		      strcmp(err.message, "interrupted") == 0 ? 42 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 42);
}

static void
test_export_sigint_leaves_nothing(void **state)
{
	const char *dir = scratch_path("interrupted");
	const char *kept = scratch_path("kept-interrupted");
	struct analysis *a = new_analysis("none", QUANT_RTN);
	struct export_options opt;
	char path[8400];
	char *before, *after;
	size_t n_before, n_after;

	(void)state;
	interrupt_export(dir, false);
	assert_false(path_exists(dir));
	assert_int_equal(scratch_entries_containing(".tmp-"), 0);

	export_options_default(&opt);
	write_export(a, &opt, kept);
	analysis_free(a);
	snprintf(path, sizeof(path), "%s/model.safetensors", kept);
	before = read_whole(path, &n_before);
	interrupt_export(kept, true);
	after = read_whole(path, &n_after);
	assert_int_equal(n_after, n_before);
	assert_memory_equal(after, before, n_before);
	free(before);
	free(after);
	assert_int_equal(scratch_entries_containing(".tmp-"), 0);
}

/* ---- Damaged exports */

/* Copies the tensors of src/model.safetensors into dst/model.safetensors, leaving out
 * drop and giving reshape one row less. */
static void
rewrite_checkpoint(const char *src, const char *dst, const char *drop, const char *reshape)
{
	char path[8400], command[17000];
	struct safetensors_file *f;
	struct safetensors_writer *w = safetensors_writer_new();
	struct error err;
	char **files = NULL;
	int n_files = 0;
	uint64_t bytes = 0;

	snprintf(command, sizeof(command), "rm -rf '%s' && cp -r '%s' '%s' && rm '%s/model.safetensors'",
		 dst, src, dst, dst);
	assert_int_equal(system(command), 0);
	snprintf(path, sizeof(path), "%s/model.safetensors", src);
	f = safetensors_open(path, &err);
	assert_non_null(f);
	for (size_t i = 0; i < f->n_tensors; i++) {
		const struct safetensors_tensor *t = &f->tensors[i];
		uint64_t shape[SAFETENSORS_MAX_DIMS];
		uint64_t size = t->size;
		void *data;

		if (drop != NULL && strcmp(t->name, drop) == 0)
			continue;
		memcpy(shape, t->shape, sizeof(shape));
		if (reshape != NULL && strcmp(t->name, reshape) == 0) {
			size -= size / shape[0];
			shape[0]--;
		}
		data = alloc_bytes(size ? size : 1);
		memcpy(data, t->data, size);
		safetensors_writer_add(w, t->name, t->dtype, t->n_dims, shape, data);
	}
	safetensors_close(f);
	assert_int_equal(safetensors_writer_write(w, dst, 0, NULL, &files, &n_files, &bytes, &err), 0);
	for (int i = 0; i < n_files; i++)
		free(files[i]);
	free(files);
	safetensors_writer_free(w);
}

/* Copies src into dst with the full-width blocks tensor of one site moved into its
 * blocks_tail, and the blocks tensor left with no block of the given size. */
static void
rewrite_blocks_as_tail(const char *src, const char *dst, const char *site, uint64_t empty_block)
{
	char path[8400], command[17000], blocks[160], tail[160];
	struct safetensors_file *f;
	struct safetensors_writer *w = safetensors_writer_new();
	struct error err;
	char **files = NULL;
	int n_files = 0;
	uint64_t bytes = 0;

	snprintf(blocks, sizeof(blocks), "%s.blocks", site);
	snprintf(tail, sizeof(tail), "%s.blocks_tail", site);
	snprintf(command, sizeof(command), "rm -rf '%s' && cp -r '%s' '%s' && rm '%s/model.safetensors'",
		 dst, src, dst, dst);
	assert_int_equal(system(command), 0);
	snprintf(path, sizeof(path), "%s/model.safetensors", src);
	f = safetensors_open(path, &err);
	assert_non_null(f);
	for (size_t i = 0; i < f->n_tensors; i++) {
		const struct safetensors_tensor *t = &f->tensors[i];
		void *data = alloc_bytes(t->size ? t->size : 1);

		memcpy(data, t->data, t->size);
		if (strcmp(t->name, blocks) == 0) {
			uint64_t tail_shape[2] = { t->shape[1], t->shape[2] };
			uint64_t empty_shape[3] = { 0, empty_block, empty_block };

			assert_int_equal(t->shape[0], 1);
			safetensors_writer_add(w, tail, t->dtype, 2, tail_shape, data);
			safetensors_writer_add(w, blocks, t->dtype, 3, empty_shape, alloc_bytes(1));
			continue;
		}
		safetensors_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, data);
	}
	safetensors_close(f);
	assert_int_equal(safetensors_writer_write(w, dst, 0, NULL, &files, &n_files, &bytes, &err), 0);
	for (int i = 0; i < n_files; i++)
		free(files[i]);
	free(files);
	safetensors_writer_free(w);
}

static void
test_export_rejects_damaged(void **state)
{
	struct analysis *a = new_analysis("cat", QUANT_RTN);
	struct export_options opt;
	const char *good = scratch_path("good");
	const char *bad = scratch_path("damaged");
	struct model *m;
	struct export_runtime *rt;
	struct error err;

	(void)state;
	export_options_default(&opt);
	write_export(a, &opt, good);
	analysis_free(a);

	rewrite_checkpoint(good, bad, "model.layers.2.mlp.up_proj.weight_scale", NULL);
	assert_null(model_load(bad, &err));
	assert_non_null(strstr(err.message, bad));
	assert_non_null(strstr(err.message, "model.layers.2.mlp.up_proj.weight_scale"));
	assert_non_null(strstr(err.message, "missing"));

	rewrite_checkpoint(good, bad, NULL, "model.layers.1.self_attn.o_proj.weight_packed");
	assert_null(model_load(bad, &err));
	assert_non_null(strstr(err.message, "model.safetensors"));
	assert_non_null(strstr(err.message, "model.layers.1.self_attn.o_proj.weight_packed"));
	assert_non_null(strstr(err.message, "shape"));

	/* The weights load, but a transform no longer covers its site. */
	rewrite_checkpoint(good, bad, NULL, "model.layers.3.catscope.ffn_down.blocks");
	m = model_load(bad, &err);
	assert_non_null(m);
	rt = export_runtime_open(m, &err);
	assert_null(rt);
	assert_non_null(strstr(err.message, bad));
	assert_non_null(strstr(err.message, "model.layers.3.catscope.ffn_down"));
	model_free(m);

	/* No blocks of 2^32 + 5 columns, beside a full-width tail. Narrowed to int, the
	 * block size would read as 5, and the runtime would apply 5 x 5 blocks of the
	 * 64 x 64 matrix. */
	rewrite_blocks_as_tail(good, bad, "model.layers.0.catscope.attn_in", ((uint64_t)1 << 32) + 5);
	m = model_load(bad, &err);
	assert_non_null(m);
	rt = export_runtime_open(m, &err);
	assert_null(rt);
	assert_non_null(strstr(err.message, "model.layers.0.catscope.attn_in"));
	assert_non_null(strstr(err.message, "do not cover the width 64"));
	model_free(m);
}
/* Returns true from the third call on, so that eval scores two windows. */
static bool
cancel_after_two_windows(void *ctx)
{
	int *calls = ctx;

	return ++*calls > 2;
}

/* The explorer's p key relies on eval_perplexity stopping between windows. */
static void
test_eval_cancel_between_windows(void **state)
{
	struct progress progress;
	struct eval_result result;
	struct error err;
	int calls = 0;

	(void)state;
	assert_true(n_held / EVAL_CTX > 2);
	progress_start(&progress, "eval", "tok", n_held, NULL, &calls);
	progress.draw_on_stderr = 0;
	progress.cancelled = cancel_after_two_windows;
	assert_int_equal(eval_perplexity(ws.model, NULL, NULL, held_ids, n_held, EVAL_CTX, &progress,
					 &result, &err), -1);
	assert_non_null(strstr(err.message, "cancelled after 2 of"));
	assert_int_equal(calls, 3);
	assert_int_equal(progress.done, 2 * EVAL_CTX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export_pack_matches_scalar),
		cmocka_unit_test(test_export_recover_group_exact),
		cmocka_unit_test(test_export_eval_equals_simulation_cat),
		cmocka_unit_test(test_export_eval_equals_simulation_gptq_kv4),
		cmocka_unit_test(test_export_tokenizes_identically),
		cmocka_unit_test(test_export_layout_matches_documentation),
		cmocka_unit_test(test_export_shards_and_reloads),
		cmocka_unit_test(test_export_failure_leaves_nothing),
		cmocka_unit_test(test_export_rejects_foreign_directory),
		cmocka_unit_test(test_export_sigint_leaves_nothing),
		cmocka_unit_test(test_export_rejects_damaged),
		cmocka_unit_test(test_eval_cancel_between_windows),
	};

	return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
