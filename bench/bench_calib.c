/* Calibration speed next to forward-only speed on real text: stories260K over about
 * 50k TinyStories tokens in windows of 512. The ratio is the cost of the site hook
 * (double conversion, SYRK, per-token terms, reservoir). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "catscope/alloc.h"
#include "catscope/calib.h"
#include "catscope/model.h"
#include "catscope/progress.h"
#include "catscope/testutil.h"

#define BENCH_CTX 512
#define BENCH_TOKENS 50176 /* 98 windows */

static char *
bench_read_text(const char *path, size_t *length)
{
	FILE *f = fopen(path, "rb");
	char *text;

	if (f == NULL) {
		fprintf(stderr, "bench_calib: cannot open %s; set CATSCOPE_DATA\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	*length = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	text = alloc_bytes(*length + 1);
	if (fread(text, 1, *length, f) != *length) {
		fprintf(stderr, "bench_calib: reading %s failed\n", path);
		exit(1);
	}
	fclose(f);
	return text;
}

static double
bench_forward_only(const struct model *model, const int32_t *ids, size_t windows)
{
	struct model_workspace *ws = model_workspace_new(&model->config, BENCH_CTX, BENCH_CTX);
	struct model_kv_cache *cache = model_kv_cache_new(&model->config, BENCH_CTX);
	double start = progress_now();
	struct error err;

	for (size_t w = 0; w < windows; w++) {
		cache->length = 0;
		if (model_forward(model, NULL, ws, cache, ids + w * BENCH_CTX, BENCH_CTX, NULL, NULL,
				  &err) != 0) {
			fprintf(stderr, "bench_calib: %s\n", err.message);
			exit(1);
		}
	}
	model_workspace_free(ws);
	model_kv_cache_free(cache);
	return progress_now() - start;
}

int
main(void)
{
	struct error err;
	struct model *model = model_load(testutil_data_path("stories260K.gguf"), &err);
	struct calib_options options = { .max_tokens = BENCH_TOKENS,
					 .sample_size = CALIB_DEFAULT_SAMPLE };
	struct calib_result *result;
	int32_t *ids;
	size_t n_ids, length, windows;
	char *text;
	double forward_s, calib_s, start;

	if (model == NULL) {
		fprintf(stderr, "bench_calib: %s\n", err.message);
		return 1;
	}
	text = bench_read_text(testutil_data_path("tinystories_train_sample.txt"), &length);
	if (tokenizer_encode(model->tokenizer, text, length, true, &ids, &n_ids, &err) != 0) {
		fprintf(stderr, "bench_calib: %s\n", err.message);
		return 1;
	}
	free(text);
	windows = (n_ids < BENCH_TOKENS ? n_ids : BENCH_TOKENS) / BENCH_CTX;

	forward_s = bench_forward_only(model, ids, windows);
	start = progress_now();
	result = calib_run(model, ids, n_ids, BENCH_CTX, &options, NULL, &err);
	calib_s = progress_now() - start;
	if (result == NULL) {
		fprintf(stderr, "bench_calib: %s\n", err.message);
		return 1;
	}

	printf("bench_calib: stories260K, %zu tokens of tinystories_train_sample.txt, windows of %d, "
	       "sample %d per site\n", windows * BENCH_CTX, BENCH_CTX, CALIB_DEFAULT_SAMPLE);
	printf("  forward only   %10.0f tokens/s  (%.3f s)\n", windows * BENCH_CTX / forward_s,
	       forward_s);
	printf("  calibration    %10.0f tokens/s  (%.3f s)\n", windows * BENCH_CTX / calib_s, calib_s);
	printf("  overhead       %10.2fx the forward-only time\n", calib_s / forward_s);
	calib_result_free(result);
	free(ids);
	model_free(model);
	return 0;
}
