/* catscope MODEL: the interactive explorer. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/analysis.h"
#include "catscope/cli.h"
#include "catscope/tui.h"

static const char explore_usage[] =
	"usage: catscope MODEL [--calib CACHE] [--no-color] [--ascii] [--wbits B] [--abits B]\n"
	"\n"
	"Opens the explorer on MODEL (a GGUF file or a Hugging Face directory): one row per\n"
	"quantized input site with its concentration, alignment and SQNR, a detail view per\n"
	"site and keys to try transforms and quantizers. Press ? inside for every key.\n"
	"\n"
	"  --calib CACHE  calibration statistics from 'catscope calibrate MODEL TEXT -o CACHE';\n"
	"                 without it the activations are assumed isotropic\n"
	"  --wbits B      weight bits, 2..8 (default 4)\n"
	"  --abits B      activation bits, 2..8 (default 4)\n"
	"  --no-color     monochrome (also when NO_COLOR is set)\n"
	"  --ascii        ASCII bars instead of Unicode block characters\n";

int
cli_explore(int argc, char **argv)
{
	static const struct option options[] = {
		{ "calib", required_argument, NULL, 'c' },
		{ "no-color", no_argument, NULL, 'n' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "wbits", required_argument, NULL, 'w' },
		{ "abits", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tui_options topt = { 0 };
	const char *calib = NULL;
	int wbits = 0, abits = 0;
	int opt;
	struct error err;
	struct model *model;
	struct analysis *a;
	struct quant_config qc;
	const char *slash;
	int rc;

	/* argv[0] is MODEL, so getopt starts after it and the options follow it. */
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			calib = optarg;
			break;
		case 'n':
			topt.no_color = true;
			break;
		case 'a':
			topt.ascii = true;
			break;
		case 'w':
			if (cli_parse_int("explore", "--wbits", optarg, QUANT_BITS_MIN, QUANT_BITS_MAX,
					  &wbits) != 0)
				return 2;
			break;
		case 'x':
			if (cli_parse_int("explore", "--abits", optarg, QUANT_BITS_MIN, QUANT_BITS_MAX,
					  &abits) != 0)
				return 2;
			break;
		case 'h':
			fputs(explore_usage, stdout);
			return 0;
		default:
			return cli_usage_error("explore", "unknown option");
		}
	}
	if (optind != argc)
		return cli_usage_error("explore", "unexpected argument '%s' after the model",
				       argv[optind]);
	if (calib != NULL) {
		/* TODO: wire the calibration cache once its API lands (calib.h). */
		fprintf(stderr, "catscope: --calib %s: calibration caches are not supported by this "
				"build yet; run without --calib for isotropic activations\n",
			calib);
		return 1;
	}

	model = model_load(argv[0], &err);
	if (model == NULL)
		return cli_fail(&err);
	a = analysis_new(model, NULL, NULL);
	qc = a->quant;
	if (wbits > 0)
		qc.weight.bits = wbits;
	if (abits > 0)
		qc.act.bits = abits;
	analysis_set_quant(a, &qc);

	slash = strrchr(argv[0], '/');
	topt.model_name = slash != NULL && slash[1] != '\0' ? slash + 1 : argv[0];
	topt.calib_name = calib;
	analysis_worker_start(a);
	rc = tui_run(a, &topt, &err);
	analysis_free(a);
	model_free(model);
	if (rc != 0)
		return cli_fail(&err);
	return 0;
}
