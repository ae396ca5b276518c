/* catscope report: the diagnostics of every site, for scripts. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/cli.h"
#include "catscope/report.h"
#include "catscope/workspace.h"

#define REPORT_MAX_TRANSFORMS 16

static const char report_usage[] =
	"usage: catscope report MODEL [--calib CACHE] [--transform SPEC]... [options]\n"
	"\n"
	"Prints, for every quantized input site, the concentration C(x) and C(W), the\n"
	"alignment A and the best reachable alignments, and the predicted and measured\n"
	"SQNR (all in dB) for the given transform and quantizer. Each --transform adds one\n"
	"run over all sites; the default is one run with none.\n"
	"\n"
	"  --calib CACHE       calibration cache from 'catscope calibrate'; without it the\n"
	"                      activations are assumed isotropic (weight-side numbers only)\n"
	"  --transform SPEC    none, smooth[:ALPHA], hadamard[:K], random[:SEED[:K]], cat1,\n"
	"                      cat[:K], cat:full\n"
	"  --weights PARAMS    weight quantizer: BITS[:sym|:asym][:gSIZE][:clip=R] (default 4)\n"
	"  --acts PARAMS       activation quantizer, same form (default 4)\n"
	"  --wbits B, --abits B  shorthand for the bit widths (2 to 8)\n"
	"  --gptq              round weights with GPTQ instead of RTN\n"
	"  --clip-search       search a clipping ratio per weight row\n"
	"  --format F          table (default), csv or json\n";

struct report_request {
	const char *calib;
	const char *transforms[REPORT_MAX_TRANSFORMS];
	int n_transforms;
	struct quant_config quant;
	enum report_format format;
};

static int
report_parse(int argc, char **argv, struct report_request *req)
{
	static const struct option options[] = {
		{ "calib", required_argument, NULL, 'c' },
		CLI_QUANTIZER_OPTIONS,
		{ "clip-search", no_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct error err;
	int opt;
	struct cli_quant_given given = { 0 };

	memset(req, 0, sizeof(*req));
	quant_config_default(&req->quant);
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			req->calib = optarg;
			break;
		case 't':
			if (req->n_transforms == REPORT_MAX_TRANSFORMS)
				return cli_usage_error("report", "at most %d --transform options", REPORT_MAX_TRANSFORMS);
			req->transforms[req->n_transforms++] = optarg;
			break;
		case 'w':
		case 'a':
		case 'W':
		case 'A':
		case 'g':
			if (cli_parse_quant_option("report", opt, optarg, &given, NULL, &req->quant) != 0)
				return 2;
			break;
		case 's':
			req->quant.clip_search = true;
			break;
		case 'f':
			if (report_format_parse(optarg, &req->format, &err) != 0)
				return cli_usage_error("report", "%s", err.message);
			break;
		case 'h':
			fputs(report_usage, stdout);
			return 1;
		default:
			return cli_option_error("report", opt, argc, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("report", "expected exactly one model");
	if (req->n_transforms == 0)
		req->transforms[req->n_transforms++] = "none";
	return 0;
}

int
cli_report(int argc, char **argv)
{
	struct report_request req;
	struct workspace ws;
	struct analysis *runs[REPORT_MAX_TRANSFORMS] = { 0 };
	struct transform_spec specs[REPORT_MAX_TRANSFORMS];
	struct error err;
	int failed = 0;
	int rc = 0;

	rc = report_parse(argc, argv, &req);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	for (int k = 0; k < req.n_transforms; k++) {
		if (transform_spec_parse(req.transforms[k], &specs[k], &err) != 0)
			return cli_usage_error("report", "%s", err.message);
	}
	if (quant_params_check(&req.quant.weight, &err) != 0 || quant_params_check(&req.quant.act, &err) != 0)
		return cli_usage_error("report", "%s", err.message);
	if (cli_check_not_export(argv[optind], &err) != 0 ||
	    workspace_open(&ws, argv[optind], req.calib, &err) != 0)
		return cli_fail(&err);

	for (int k = 0; k < req.n_transforms; k++) {
		runs[k] = workspace_new_analysis(&ws);
		analysis_set_quant(runs[k], &req.quant);
		for (int i = 0; i < runs[k]->n_sites; i++)
			analysis_set_transform(runs[k], i, &specs[k]);
		/* A failing site is reported in its row and the others still print, but the
		 * exit status marks the report as incomplete. */
		if (analysis_compute_all(runs[k], &err) != 0 && failed++ == 0)
			fprintf(stderr, "catscope: %s\n", err.message);
	}
	report_write(stdout, runs, req.n_transforms, req.format);
	for (int k = 0; k < req.n_transforms; k++)
		analysis_free(runs[k]);
	workspace_close(&ws);
	return failed ? 1 : rc;
}
