/* catscope MODEL: the interactive explorer. */
#include "config.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/analysis.h"
#include "catscope/cli.h"
#include "catscope/session.h"
#include "catscope/tui.h"
#include "catscope/workspace.h"

static const char explore_usage[] =
	"usage: catscope MODEL [--calib CACHE] [--heldout TEXT [--ctx N]] [--no-color] [--ascii]\n"
	"                      [quantizer options]\n"
	"\n"
	"Opens the explorer on MODEL (a GGUF file or a Hugging Face directory): one row per\n"
	"quantized input site with its concentration, alignment and SQNR, a detail view per\n"
	"site and keys to try transforms and quantizers. Press ? inside for every key.\n"
	"F2 saves the session (see catscope-session(5)); 'catscope replay' reopens it.\n"
	"\n"
	"  --calib CACHE  calibration statistics from 'catscope calibrate MODEL TEXT -o CACHE';\n"
	"                 without it the activations are assumed isotropic\n"
	"  --heldout TEXT held-out text for the p key, which measures the perplexity of the\n"
	"                 current settings (simulated as 'catscope export' writes them)\n"
	"                 beside the full-precision model\n"
	"  --ctx N        window length of that perplexity in tokens (default: 512, at most\n"
	"                 the model's context)\n"
	"  --wbits B, --abits B  weight and activation bits, 2 to 8 (default 4)\n"
	"  --weights PARAMS      weight quantizer: BITS[:sym|:asym][:gSIZE][:clip=R]\n"
	"  --acts PARAMS         activation quantizer, same form\n"
	"  --gptq                round weights with GPTQ instead of RTN\n"
	"  --no-color     monochrome (also when NO_COLOR is set)\n"
	"  --ascii        ASCII bars instead of Unicode block characters\n";

/* Tokenizes the held-out text and fits the window length to the model: the
 * default of 512 shrinks to the model's context, a longer --ctx is an error. */
static int
explore_read_heldout(const struct model *model, const char *path, bool ctx_given, int *ctx,
		     int32_t **ids, size_t *n_ids, struct error *err)
{
	char *paths[1] = { (char *)path };
	char *text;
	size_t length;
	int rc;

	if (!ctx_given && *ctx > model->config.context_length)
		*ctx = model->config.context_length;
	if (*ctx > model->config.context_length)
		return error_set(err, "--ctx %d is longer than the model's context of %d tokens", *ctx,
				 model->config.context_length);
	text = cli_read_texts(paths, 1, &length, err);
	if (text == NULL)
		return -1;
	rc = cli_tokenize(model, text, length, ids, n_ids, err);
	free(text);
	if (rc != 0)
		return -1;
	if (*n_ids < (size_t)*ctx) {
		free(*ids);
		*ids = NULL;
		return error_set(err, "%s has %zu tokens, fewer than one window of %d; use a shorter "
				 "--ctx or more text", path, *n_ids, *ctx);
	}
	return 0;
}

int
cli_explore(int argc, char **argv)
{
	static const struct option options[] = {
		{ "calib", required_argument, NULL, 'c' },
		{ "no-color", no_argument, NULL, 'n' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "wbits", required_argument, NULL, 'W' },
		{ "abits", required_argument, NULL, 'A' },
		{ "weights", required_argument, NULL, 'w' },
		{ "acts", required_argument, NULL, 'x' },
		{ "gptq", no_argument, NULL, 'g' },
		{ "heldout", required_argument, NULL, 'H' },
		{ "ctx", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tui_options topt = { 0 };
	const char *calib = NULL;
	const char *heldout = NULL;
	int ctx = 512;
	bool ctx_given = false;
	int32_t *heldout_ids = NULL;
	size_t n_heldout_ids = 0;
	int opt;
	struct error err;
	struct workspace ws;
	struct analysis *a;
	struct quant_config qc;
	struct cli_quant_given given = { 0 };
	const char *slash;
	int rc;

	quant_config_default(&qc);

	/* argv[0] is MODEL, so getopt starts after it and the options follow it. */
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			calib = optarg;
			break;
		case 'H':
			heldout = optarg;
			break;
		case 'C':
			if (cli_parse_int("explore", "--ctx", optarg, 2, 1 << 20, &ctx) != 0)
				return 2;
			ctx_given = true;
			break;
		case 'n':
			topt.no_color = true;
			break;
		case 'a':
			topt.ascii = true;
			break;
		case 'W':
		case 'A':
		case 'w':
		case 'g':
			if (cli_parse_quant_option("explore", opt, optarg, &given, NULL, &qc) != 0)
				return 2;
			break;
		case 'x':
			if (cli_parse_quant_option("explore", 'a', optarg, &given, NULL, &qc) != 0)
				return 2;
			break;
		case 'h':
			fputs(explore_usage, stdout);
			return 0;
		default:
			return cli_option_error("explore", opt, argc, argv);
		}
	}
	if (optind != argc)
		return cli_usage_error("explore", "unexpected argument '%s' after the model",
				       argv[optind]);
	if (ctx_given && heldout == NULL)
		return cli_usage_error("explore", "--ctx sets the window of --heldout, which is missing");
	if (!tui_terminal_available()) {
		fprintf(stderr, "catscope: the explorer needs a terminal on standard input and output; "
			"use 'catscope report' in scripts\n");
		return 1;
	}
	if (cli_check_not_export(argv[0], &err) != 0 || workspace_open(&ws, argv[0], calib, &err) != 0)
		return cli_fail(&err);
	if (heldout != NULL &&
	    explore_read_heldout(ws.model, heldout, ctx_given, &ctx, &heldout_ids, &n_heldout_ids,
				 &err) != 0) {
		workspace_close(&ws);
		return cli_fail(&err);
	}
	topt.heldout_tokens = heldout_ids;
	topt.n_heldout_tokens = n_heldout_ids;
	topt.heldout_ctx = ctx;
	a = workspace_new_analysis(&ws);
	analysis_set_quant(a, &qc);

	slash = strrchr(argv[0], '/');
	topt.model_name = slash != NULL && slash[1] != '\0' ? slash + 1 : argv[0];
	topt.calib_name = calib;
	/* The journal starts from the quantizer given on the command line. */
	topt.session = session_new(argv[0], ws.model, calib, ws.cache, a);
	analysis_worker_start(a);
	rc = tui_run(a, &topt, &err);
	session_free(topt.session);
	analysis_free(a);
	free(heldout_ids);
	workspace_close(&ws);
	if (rc != 0)
		return cli_fail(&err);
	return 0;
}
