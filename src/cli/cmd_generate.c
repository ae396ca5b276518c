/* catscope generate: greedy continuation of a prompt. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/cli.h"
#include "catscope/export.h"

static const char generate_usage[] =
	"usage: catscope generate MODEL [--prompt TEXT] [-n N]\n"
	"\n"
	"Continues TEXT (default: nothing, so generation starts from BOS alone) with the\n"
	"most likely token at every step (temperature 0) and prints the text as it grows.\n"
	"\n"
	"  --prompt TEXT   text to continue\n"
	"  -n N            tokens to generate (default 256); stops early at EOS, or at\n"
	"                  the end of the model's context with a message\n"
	"\n"
	"MODEL may be a directory written by catscope export; it then runs quantized, with\n"
	"each site's transform applied online.\n";

static int
generate_argmax(const float *logits, int vocab)
{
	int best = 0;

	for (int j = 1; j < vocab; j++)
		best = logits[j] > logits[best] ? j : best;
	return best;
}

int
cli_generate(int argc, char **argv)
{
	static const struct option options[] = {
		{ "prompt", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prompt = "";
	int n_new = 256;
	int opt;
	struct error err;
	struct model *model;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	size_t printed = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, ":n:h", options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			prompt = optarg;
			break;
		case 'n':
			if (cli_parse_int("generate", "-n", optarg, 0, 1 << 20, &n_new) != 0)
				return 2;
			break;
		case 'h':
			fputs(generate_usage, stdout);
			return 0;
		default:
			return cli_option_error("generate", opt, argc, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("generate", "expected exactly one model");
	model = model_load(argv[optind], &err);
	if (model == NULL)
		return cli_fail(&err);

	struct export_runtime *runtime = NULL;

	if (export_is_directory(argv[optind])) {
		runtime = export_runtime_open(model, &err);
		if (runtime == NULL) {
			model_free(model);
			return cli_fail(&err);
		}
	}
	if (cli_tokenize(model, prompt, strlen(prompt), &ids, &n_ids, &err) != 0) {
		model_free(model);
		return cli_fail(&err);
	}

	const struct model_config *c = &model->config;
	int capacity = c->context_length;

	/* Without a BOS token in the vocabulary an empty prompt gives no token to start
	 * from. */
	if (n_ids == 0) {
		fprintf(stderr, "catscope: --prompt: the prompt encodes to no tokens and %s has no BOS "
			"token to start from; give a non-empty prompt with --prompt TEXT\n", argv[optind]);
		free(ids);
		export_runtime_free(runtime);
		model_free(model);
		return 1;
	}
	/* The prompt includes BOS, and one position must stay free for the first new token. */
	if (n_ids >= (size_t)capacity) {
		fprintf(stderr, "catscope: --prompt: the prompt has %zu tokens, but %s has a context "
			"of %d; shorten the prompt to at most %d tokens\n", n_ids, argv[optind],
			capacity, capacity - 1);
		free(ids);
		export_runtime_free(runtime);
		model_free(model);
		return 1;
	}
	/* The KV cache needs room for the prompt and the new tokens only, not for the
	 * whole context a model declares. */
	if ((size_t)capacity > n_ids + (size_t)n_new)
		capacity = (int)(n_ids + (size_t)n_new);
	struct model_workspace *ws = model_workspace_new(c, (int)n_ids, capacity);
	struct model_kv_cache *cache = model_kv_cache_new(c, capacity);
	float *logits = alloc_array(n_ids * (size_t)c->vocab_size, sizeof(float));
	int rc = 0;

	ids = alloc_resize(ids, n_ids + (size_t)n_new + 1, sizeof(*ids));
	/* The whole prompt goes through in one window; then one token at a time. */
	size_t fed = n_ids;
	int step_tokens = (int)n_ids;
	const int32_t *step_input = ids;
	int generated = 0;
	bool at_eos = false;

	for (int i = 0; i < n_new && cache->length + step_tokens <= capacity; i++) {
		if (model_forward(model, NULL, ws, cache, step_input, step_tokens, logits,
				  runtime ? &runtime->hooks : NULL, &err) != 0) {
			rc = cli_fail(&err);
			break;
		}
		int next = generate_argmax(logits + (size_t)(step_tokens - 1) * c->vocab_size, c->vocab_size);

		if (next == tokenizer_eos_id(model->tokenizer)) {
			at_eos = true;
			break;
		}
		ids[fed++] = next;
		generated++;
		step_input = ids + fed - 1;
		step_tokens = 1;

		/* Decoding the whole sequence each time keeps multi-byte characters that span
		 * tokens intact; the new suffix is what gets printed. */
		char *text = tokenizer_decode(model->tokenizer, ids, fed);
		size_t length = strlen(text);

		if (length > printed) {
			fwrite(text + printed, 1, length - printed, stdout);
			fflush(stdout);
			printed = length;
		}
		free(text);
	}
	if (rc == 0)
		putchar('\n');
	/* A short output is expected at EOS, but at the end of the context it would look
	 * like a bug without a word. */
	if (rc == 0 && !at_eos && generated < n_new) {
		fflush(stdout);
		fprintf(stderr, "catscope: stopped after %d of %d tokens at the end of the context "
			"of %s (%d tokens with the prompt)\n", generated, n_new, argv[optind],
			c->context_length);
	}
	free(logits);
	free(ids);
	model_kv_cache_free(cache);
	model_workspace_free(ws);
	export_runtime_free(runtime);
	model_free(model);
	return rc;
}
