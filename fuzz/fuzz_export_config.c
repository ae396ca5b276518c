/* Fuzz target: config.json of a directory written by catscope export. The input is
 * written as config.json into a real export of stories260K, then the directory goes
 * through the export loader (model_load), the export runtime and one forward step of
 * a few tokens with the runtime's hooks.
 *
 * The export is built once at start-up from the real model and text in the folder
 * that make check reads ($CATSCOPE_DATA). It has 4-bit symmetric per-channel weights
 * and 4-bit activations and KV cache. Every site has cat except blk.0.ffn_down
 * (hadamard) and blk.1.attn_in (none), so the checkpoint has every kind of transform
 * tensor. Seeds written with the same options load completely, so their mutations
 * reach the weights and the forward pass. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/calib.h"
#include "catscope/calib_cache.h"
#include "catscope/export.h"
#include "catscope/model.h"
#include "catscope/model_load.h"
#include "catscope/testutil.h"
#include "catscope/tokenizer.h"
#include "catscope/workspace.h"
#include "fuzz_common.h"

/* Enough calibration text for the statistics of every site. More only costs start-up
 * time. */
#define CALIB_BYTES 20000
#define CALIB_CTX 128
/* Tokens of the forward step; the prompt below encodes to more than this. */
#define FORWARD_TOKENS 4

static const char *fuzz_dir;

static void
die(const char *what, const struct error *err)
{
	fprintf(stderr, "fuzz_export_config: %s: %s\n", what, err ? err->message : "failed");
	exit(1);
}

/* Calibrates the real model on the start of the real text and writes the cache. */
static void
write_cache(const char *model_path, const char *cache_path)
{
	struct calib_options options = { .max_tokens = 0, .sample_size = 64, .seed = 0 };
	struct error err;
	struct model *model = model_load(model_path, &err);
	struct calib_result *r;
	char *text = alloc_bytes(CALIB_BYTES);
	size_t length;
	int32_t *ids;
	size_t n_ids;
	FILE *f;

	if (model == NULL)
		die("loading the real model failed; set CATSCOPE_DATA to the shared data folder", &err);
	f = fopen(testutil_data_path("tinystories_train_sample.txt"), "rb");
	if (f == NULL)
		die("tinystories_train_sample.txt is missing; set CATSCOPE_DATA to the shared data folder",
		    NULL);
	length = fread(text, 1, CALIB_BYTES, f);
	fclose(f);
	if (tokenizer_encode(model->tokenizer, text, length, true, &ids, &n_ids, &err) != 0)
		die("tokenizing the calibration text failed", &err);
	r = calib_run(model, ids, n_ids, CALIB_CTX, &options, NULL, &err);
	if (r == NULL || calib_cache_write(cache_path, r, &err) != 0)
		die("calibration failed", &err);
	calib_result_free(r);
	free(ids);
	free(text);
	model_free(model);
}

/* Moves every file of the folder from into the folder to, then removes from. The
 * removal at exit handles no subfolders, so the export must not stay in one. */
static void
move_files(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *e;
	char old_path[8192], new_path[8192];

	if (d == NULL)
		die("the export folder is missing", NULL);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(old_path, sizeof(old_path), "%s/%s", from, e->d_name);
		snprintf(new_path, sizeof(new_path), "%s/%s", to, e->d_name);
		if (rename(old_path, new_path) != 0)
			die("moving the export failed", NULL);
	}
	closedir(d);
	rmdir(from);
}

static void
set_site(struct analysis *a, int block, enum site_kind kind, const char *text)
{
	struct transform_spec spec;
	struct error err;

	if (transform_spec_parse(text, &spec, &err) != 0)
		die(text, &err);
	analysis_set_transform(a, analysis_site_index(block, kind), &spec);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char model_path[4096], cache_path[4200], export_path[4200];
	struct export_options opt;
	struct export_summary summary;
	struct workspace ws;
	struct quant_config qc;
	struct analysis *a;
	struct error err;

	(void)argc;
	(void)argv;
	fuzz_dir = fuzz_temp_dir();
	snprintf(model_path, sizeof(model_path), "%s", testutil_data_path("stories260K.gguf"));
	snprintf(cache_path, sizeof(cache_path), "%s/stories.cache", fuzz_dir);
	snprintf(export_path, sizeof(export_path), "%s/export", fuzz_dir);
	write_cache(model_path, cache_path);
	if (workspace_open(&ws, model_path, cache_path, &err) != 0)
		die("opening the calibration cache failed", &err);

	a = workspace_new_analysis(&ws);
	quant_config_default(&qc);
	analysis_set_quant(a, &qc);
	for (int i = 0; i < a->n_sites; i++)
		set_site(a, i / SITE_KIND_COUNT, (enum site_kind)(i % SITE_KIND_COUNT), "cat");
	set_site(a, 0, SITE_FFN_DOWN, "hadamard");
	set_site(a, 1, SITE_ATTN_IN, "none");
	export_options_default(&opt);
	opt.kv_bits = 4;
	if (export_write(a, &opt, export_path, &summary, &err) != 0)
		die("exporting the real model failed", &err);
	analysis_free(a);
	workspace_close(&ws);
	unlink(cache_path);
	move_files(export_path, fuzz_dir);
	return 0;
}

/* Encodes a short prompt and runs its first tokens through the exported model, as
 * catscope generate does. */
static void
exercise_model(struct model *m, const struct export_runtime *rt)
{
	static const char prompt[] = "Once upon a time there was";
	struct error err;
	int32_t *ids = NULL;
	size_t n_ids = 0;

	if (tokenizer_encode(m->tokenizer, prompt, sizeof(prompt) - 1, true, &ids, &n_ids, &err) == 0 &&
	    n_ids > 0) {
		int n = n_ids < FORWARD_TOKENS ? (int)n_ids : FORWARD_TOKENS;

		if (n > m->config.context_length)
			n = m->config.context_length;

		struct model_kv_cache *cache = model_kv_cache_new(&m->config, n);
		struct model_workspace *ws = model_workspace_new(&m->config, n, n);
		float *logits = malloc((size_t)n * m->config.vocab_size * sizeof(float));

		model_forward(m, NULL, ws, cache, ids, n, logits, &rt->hooks, &err);
		free(logits);
		model_workspace_free(ws);
		model_kv_cache_free(cache);
	}
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct export_runtime *rt;
	struct error err;
	struct model *m;

	fuzz_write_file(fuzz_dir, EXPORT_CONFIG_FILE, data, size);
	m = model_load_export(fuzz_dir, &err);
	if (m == NULL)
		return 0;
	rt = export_runtime_open(m, &err);
	if (rt != NULL) {
		exercise_model(m, rt);
		export_runtime_free(rt);
	}
	model_free(m);
	return 0;
}
