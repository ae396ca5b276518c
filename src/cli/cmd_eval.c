/* catscope eval: perplexity of a model on text. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/cli.h"
#include "catscope/eval.h"

static const char eval_usage[] =
	"usage: catscope eval MODEL TEXT... [--ctx N]\n"
	"\n"
	"Measures the perplexity of MODEL (a GGUF file or a Hugging Face directory) on the\n"
	"TEXT files, concatenated. The text is tokenized once with BOS at the start only,\n"
	"cut into non-overlapping windows of N tokens (the remainder is dropped), and each\n"
	"window runs on its own; every position after the first of a window is scored and\n"
	"PPL = exp(mean negative log-likelihood).\n"
	"\n"
	"  --ctx N    window length in tokens (default: 512, at most the model's context)\n";

int
cli_eval(int argc, char **argv)
{
	static const struct option options[] = {
		{ "ctx", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ctx = 512;
	int ctx_given = 0;
	int opt;
	struct error err;
	struct model *model;
	char *text;
	size_t length;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	struct progress progress;
	struct eval_result result;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_parse_int("eval", "--ctx", optarg, 2, 1 << 20, &ctx) != 0)
				return 2;
			ctx_given = 1;
			break;
		case 'h':
			fputs(eval_usage, stdout);
			return 0;
		default:
			return cli_usage_error("eval", "unknown option");
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("eval", "expected a model and at least one text file");

	model = model_load(argv[optind], &err);
	if (model == NULL)
		return cli_fail(&err);
	if (!ctx_given && ctx > model->config.context_length)
		ctx = model->config.context_length;
	if (ctx > model->config.context_length) {
		fprintf(stderr, "catscope: --ctx %d is longer than the model's context of %d tokens\n", ctx,
			model->config.context_length);
		model_free(model);
		return 1;
	}
	text = cli_read_texts(argv + optind + 1, argc - optind - 1, &length, &err);
	if (text == NULL || cli_tokenize(model, text, length, &ids, &n_ids, &err) != 0) {
		free(text);
		model_free(model);
		return cli_fail(&err);
	}
	free(text);

	progress_start(&progress, "eval", "tok", n_ids / (size_t)ctx * (size_t)ctx, NULL, NULL);
	if (eval_perplexity(model, NULL, NULL, ids, n_ids, ctx, &progress, &result, &err) != 0) {
		progress_finish(&progress);
		free(ids);
		model_free(model);
		return cli_fail(&err);
	}
	progress_finish(&progress);
	printf("tokens      %zu (%d windows of %d, %llu scored)\n", n_ids, result.windows, ctx,
	       (unsigned long long)result.scored);
	printf("perplexity  %.4f\n", result.perplexity);
	printf("nll         %.6f nats/token\n", result.mean_nll);
	printf("speed       %.0f tokens/s (%.2f s)\n", result.tokens_per_second, result.seconds);
	free(ids);
	model_free(model);
	return 0;
}
