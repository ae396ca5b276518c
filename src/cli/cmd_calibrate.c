/* catscope calibrate: run a model over text and write the calibration cache. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/atomicfile.h"
#include "catscope/calib.h"
#include "catscope/calib_cache.h"
#include "catscope/cli.h"

static const char calibrate_usage[] =
	"usage: catscope calibrate MODEL TEXT... -o CACHE [--ctx N] [--tokens N] [--sample N]\n"
	"                          [--seed S]\n"
	"\n"
	"Runs MODEL (a GGUF file or a Hugging Face directory) over the TEXT files,\n"
	"concatenated, and writes the statistics of the input of every quantized layer\n"
	"(second moment, channel mean and absmax, concentration terms, a token sample) to\n"
	"CACHE; see catscope-cache(5). The text is tokenized and windowed as eval does:\n"
	"BOS at the start only, non-overlapping windows of N tokens, the remainder dropped.\n"
	"An existing CACHE must be an earlier cache or empty. It is replaced only by a\n"
	"complete new file; Ctrl-C leaves it as it was.\n"
	"\n"
	"  -o, --output CACHE  the cache file to write\n"
	"  --ctx N             window length in tokens (default: 512, at most the model's context)\n"
	"  --tokens N          use at most N tokens, in whole windows (default: all)\n"
	"  --sample N          tokens kept per site in the reservoir sample (default: 1024)\n"
	"  --seed S            seed of the reservoir sample (default: 0)\n";

static int
calibrate_parse_seed(const char *text, uint64_t *seed)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 0);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
		cli_usage_error("calibrate", "--seed expects a whole number from 0 to 2^64-1, got '%s'",
				text);
		return -1;
	}
	*seed = value;
	return 0;
}

static int
calibrate_run_and_write(struct model *model, const int32_t *ids, size_t n_ids, int ctx,
			const struct calib_options *options, char *const *texts, int n_texts,
			const char *output, struct error *err)
{
	uint64_t n = options->max_tokens != 0 && options->max_tokens < n_ids ? options->max_tokens
									 : n_ids;
	struct progress progress;
	struct calib_result *result;
	int rc = 0;

	atomic_defer_signals(1);
	progress_start(&progress, "calibrate", "tok", n / (uint64_t)ctx * (uint64_t)ctx, NULL, NULL);
	result = calib_run(model, ids, n_ids, ctx, options, &progress, err);
	progress_finish(&progress);
	for (int i = 0; result != NULL && i < n_texts && rc == 0; i++)
		rc = calib_result_add_text(result, texts[i], err);
	if (result == NULL || rc != 0 || calib_cache_write(output, result, err) != 0) {
		calib_result_free(result);
		atomic_defer_signals(0);
		return -1;
	}
	printf("tokens   %" PRIu64 " (%d windows of %d)\n", result->provenance.n_tokens,
	       result->provenance.n_windows, ctx);
	printf("sites    %d (%d blocks)\n", result->n_blocks * SITE_KIND_COUNT, result->n_blocks);
	printf("sample   %d tokens per site, seed %" PRIu64 "\n", result->sites[0].n_sample,
	       options->seed);
	printf("written  %s\n", output);
	calib_result_free(result);
	atomic_defer_signals(0);
	return 0;
}

int
cli_calibrate(int argc, char **argv)
{
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "ctx", required_argument, NULL, 'c' },
		{ "tokens", required_argument, NULL, 't' },
		{ "sample", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct calib_options calib = { .sample_size = CALIB_DEFAULT_SAMPLE };
	const char *output = NULL;
	int ctx = CALIB_DEFAULT_CTX;
	int ctx_given = 0;
	int value;
	int opt;
	struct error err;
	struct model *model;
	char *text;
	size_t length;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	int rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
		switch (opt) {
		case 'o':
			output = optarg;
			break;
		case 'c':
			if (cli_parse_int("calibrate", "--ctx", optarg, 2, 1 << 20, &ctx) != 0)
				return 2;
			ctx_given = 1;
			break;
		case 't':
			if (cli_parse_int("calibrate", "--tokens", optarg, 1, INT32_MAX, &value) != 0)
				return 2;
			calib.max_tokens = (uint64_t)value;
			break;
		case 's':
			if (cli_parse_int("calibrate", "--sample", optarg, 0, 1 << 20, &calib.sample_size) != 0)
				return 2;
			break;
		case 'S':
			if (calibrate_parse_seed(optarg, &calib.seed) != 0)
				return 2;
			break;
		case 'h':
			fputs(calibrate_usage, stdout);
			return 0;
		default:
			return cli_option_error("calibrate", opt, argc, argv);
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("calibrate", "expected a model and at least one text file");
	if (output == NULL)
		return cli_usage_error("calibrate", "missing -o CACHE, the file to write");
	/* Calibrating a large model can take hours, so a cache that could never be written
	 * must fail now. */
	if (atomic_check_destination(output, &err) != 0 ||
	    calib_cache_check_replaceable(output, &err) != 0) {
		error_prefix(&err, "-o");
		return cli_fail(&err);
	}

	if (cli_check_not_export(argv[optind], &err) != 0)
		return cli_fail(&err);
	model = model_load(argv[optind], &err);
	if (model == NULL)
		return cli_fail(&err);
	if (!ctx_given && ctx > model->config.context_length)
		ctx = model->config.context_length;
	if (cli_check_ctx(model, ctx, &err) != 0) {
		model_free(model);
		return cli_fail(&err);
	}
	if (calib.max_tokens != 0 && calib.max_tokens < (uint64_t)ctx) {
		model_free(model);
		fprintf(stderr, "catscope: --tokens %" PRIu64 " is less than one window of %d tokens; "
			"raise --tokens or lower --ctx\n", calib.max_tokens, ctx);
		return 1;
	}
	/* NOTE: as in eval, the whole text and its token ids (4 bytes per token) stay in
	 * memory, so RSS grows with the input size but not with --tokens. */
	text = cli_read_texts(argv + optind + 1, argc - optind - 1, &length, &err);
	if (text == NULL || cli_tokenize(model, text, length, &ids, &n_ids, &err) != 0 ||
	    cli_check_text_windows(argv + optind + 1, argc - optind - 1, n_ids, ctx, &err) != 0) {
		free(text);
		free(ids);
		model_free(model);
		return cli_fail(&err);
	}
	free(text);

	rc = calibrate_run_and_write(model, ids, n_ids, ctx, &calib, argv + optind + 1,
				     argc - optind - 1, output, &err);
	free(ids);
	model_free(model);
	return rc == 0 ? 0 : cli_fail(&err);
}
