/* catscope info: provenance and per-site summary of a calibration cache. */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "catscope/calib_cache.h"
#include "catscope/cli.h"
#include "catscope/number_format.h"

static const char info_usage[] =
	"usage: catscope info CACHE [--model MODEL]\n"
	"\n"
	"Checks every record checksum of the calibration CACHE and prints where it came from\n"
	"and one line per site: block, site, width d, tokens, E||x||^2, the concentration\n"
	"C(x) = E||x||^2 / E[(2 max|x_i|)^2] in dB (symmetric grid) over all calibration\n"
	"tokens, the largest channel absmax with its channel index, and the sample rows\n"
	"kept. The 'C(x) all' column equals report's cx_raw_db. Report's cx_db and the\n"
	"explorer's C(x) are computed on the stored sample after the transform instead.\n"
	"\n"
	"  --model MODEL  also check that CACHE was made for MODEL (same fingerprint)\n";

static void
info_print_provenance(const char *path, const struct calib_provenance *p)
{
	const struct model_config *c = &p->config;

	printf("cache        %s\n", path);
	printf("model        fingerprint %016" PRIx64 ", dim %d, hidden %d, %d blocks, %d heads "
	       "(%d kv) of %d, vocab %d\n", p->fingerprint, c->dim, c->hidden_dim, c->n_layers,
	       c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size);
	printf("tokens       %" PRIu64 " (%d windows of %d)\n", p->n_tokens, p->n_windows, p->ctx);
	printf("sample       %d tokens per site requested, seed %" PRIu64 "\n", p->sample_size,
	       p->seed);
	printf("written by   catscope %s\n", p->version);
	for (int i = 0; i < p->n_texts; i++)
		printf("text         %s (%" PRIu64 " bytes, hash %016" PRIx64 ")\n", p->texts[i].name,
		       p->texts[i].size, p->texts[i].hash);
}

static void
info_print_sites(const struct calib_cache *cache)
{
	printf("\n%5s %-8s %6s %9s %12s %11s %10s %7s %6s %9s\n", "block", "site", "d", "tokens",
	       "E|x|^2", "C(x) all dB", "absmax", "channel", "sample", "nonfinite");
	for (int b = 0; b < calib_cache_n_blocks(cache); b++) {
		for (int k = 0; k < SITE_KIND_COUNT; k++) {
			const struct calib_site_summary *s = calib_cache_summary(cache, b, k);
			double concentration = s->mean_sq_range_sym > 0.0
						       ? 10.0 * log10(s->mean_sq_norm / s->mean_sq_range_sym)
						       : NAN;

			printf("%5d %-8s %6d %9" PRIu64 " %12.5g %11.2f %10.5g %7d %6d %9" PRIu64 "\n", b,
			       site_kind_name(k), s->dim, s->n_tokens, s->mean_sq_norm,
			       number_drop_negative_zero(concentration, 2),
			       s->max_absmax, s->max_absmax_channel, s->n_sample, s->nonfinite);
		}
	}
}

int
cli_info(int argc, char **argv)
{
	static const struct option options[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model_path = NULL;
	struct model *model = NULL;
	struct calib_cache *cache;
	struct error err;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'm':
			model_path = optarg;
			break;
		case 'h':
			fputs(info_usage, stdout);
			return 0;
		default:
			return cli_option_error("info", opt, argc, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("info", "expected one cache file");
	if (model_path != NULL) {
		model = model_load(model_path, &err);
		if (model == NULL)
			return cli_fail(&err);
	}
	cache = calib_cache_open(argv[optind], model, &err);
	model_free(model);
	if (cache == NULL || calib_cache_verify(cache, &err) != 0) {
		calib_cache_close(cache);
		return cli_fail(&err);
	}
	info_print_provenance(argv[optind], calib_cache_provenance(cache));
	info_print_sites(cache);
	printf("\nall %d records verified\n", calib_cache_n_blocks(cache) * SITE_KIND_COUNT);
	calib_cache_close(cache);
	return 0;
}
