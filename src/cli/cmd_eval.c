/* catscope eval: perplexity of a model on text. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/cli.h"
#include "catscope/eval.h"
#include "catscope/export.h"
#include "catscope/simulate.h"
#include "catscope/workspace.h"

static const char eval_usage[] =
	"usage: catscope eval MODEL TEXT... [--ctx N]\n"
	"\n"
	"Measures the perplexity of MODEL (a GGUF file or a Hugging Face directory) on the\n"
	"TEXT files, concatenated. The text is tokenized once with BOS at the start only,\n"
	"cut into non-overlapping windows of N tokens (the remainder is dropped), and each\n"
	"window runs on its own; every position after the first of a window is scored and\n"
	"PPL = exp(mean negative log-likelihood).\n"
	"\n"
	"  --ctx N    window length in tokens (default: 512, at most the model's context)\n"
	"\n"
	"Simulated quantization (needs --calib): every linear layer of the blocks gets\n"
	"W' = Q(W T^-1) and every site input x becomes Q(T x) per token.\n"
	"  --calib CACHE        calibration cache of the model\n"
	"  --transform SPEC     transform of every site (default none)\n"
	"  --wbits B, --abits B bit widths, 2 to 8 (default 4 and 4 once --calib is given)\n"
	"  --weights P, --acts P  full quantizer settings, as for catscope report\n"
	"  --gptq               round weights with GPTQ\n"
	"  --kv-bits B          quantize the KV cache to B bits (asymmetric, one group per head)\n"
	"  --dtype T            f16 (default), bf16 or f32: the precision of the embeddings,\n"
	"                       final norm and output head, as catscope export stores them\n"
	"  --source-rope-order  keep q/k in the source's RoPE order; by default they run in\n"
	"                       Hugging Face's order, as an export stores them, so that this\n"
	"                       simulation and 'catscope eval' of the export agree exactly\n"
	"\n"
	"A directory written by catscope export runs as exported: integer weights, each site's\n"
	"transform applied online, activations and KV cache quantized as recorded in its\n"
	"config.json. It takes no --calib or quantizer options.\n";

static void
eval_release(struct workspace *ws, struct analysis *analysis, struct simulation *sim,
	     struct export_runtime *runtime)
{
	export_runtime_free(runtime);
	simulation_free(sim);
	analysis_free(analysis);
	workspace_close(ws);
}

int
cli_eval(int argc, char **argv)
{
	static const struct option options[] = {
		{ "ctx", required_argument, NULL, 'c' },
		{ "calib", required_argument, NULL, 'C' },
		CLI_QUANTIZER_OPTIONS,
		{ "kv-bits", required_argument, NULL, 'K' },
		{ "dtype", required_argument, NULL, 'd' },
		{ "source-rope-order", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ctx = 512;
	int ctx_given = 0;
	int opt;
	struct error err;
	struct model *model;
	struct workspace ws;
	const char *calib = NULL;
	struct transform_spec spec;
	struct quant_config quant;
	struct cli_quant_given given = { 0 };
	struct analysis *analysis = NULL;
	struct simulation *sim = NULL;
	struct export_runtime *runtime = NULL;
	struct export_hook_chain chain;
	const struct model_hooks *hooks = NULL;
	int kv_bits = 0;
	struct simulation_options sim_options = { SIMULATION_F16, true };
	int quant_given = 0;
	int kv_given = 0;
	char *text;
	size_t length;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	struct progress progress;
	struct eval_result result;

	quant_config_default(&quant);
	transform_spec_parse("none", &spec, &err);
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_parse_int("eval", "--ctx", optarg, 2, 1 << 20, &ctx) != 0)
				return 2;
			ctx_given = 1;
			break;
		case 'C':
			calib = optarg;
			break;
		case 't':
		case 'W':
		case 'A':
		case 'w':
		case 'a':
		case 'g':
			if (cli_parse_quant_option("eval", opt, optarg, &given, &spec, &quant) != 0)
				return 2;
			quant_given = 1;
			break;
		case 'K':
			if (cli_parse_int("eval", "--kv-bits", optarg, QUANT_BITS_MIN, QUANT_BITS_MAX,
					  &kv_bits) != 0)
				return 2;
			kv_given = 1;
			break;
		case 'd':
			if (cli_parse_dtype("eval", optarg, &sim_options.storage) != 0)
				return 2;
			quant_given = 1;
			break;
		case 'r':
			sim_options.hf_rope_order = false;
			quant_given = 1;
			break;
		case 'h':
			fputs(eval_usage, stdout);
			return 0;
		default:
			return cli_option_error("eval", opt, argc, argv);
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("eval", "expected a model and at least one text file");

	if (quant_given && calib == NULL && !export_is_directory(argv[optind]))
		return cli_usage_error("eval", "--transform and the quantizer options simulate "
				       "quantization, which needs --calib CACHE");
	if (export_is_directory(argv[optind]) && (calib != NULL || quant_given || kv_given))
		return cli_usage_error("eval", "%s is an export, which records its own quantization; "
				       "drop --calib and the quantizer options", argv[optind]);
	if (workspace_open(&ws, argv[optind], calib, &err) != 0)
		return cli_fail(&err);
	model = ws.model;
	if (export_is_directory(argv[optind])) {
		runtime = export_runtime_open(model, &err);
		if (runtime == NULL) {
			workspace_close(&ws);
			return cli_fail(&err);
		}
		hooks = &runtime->hooks;
	}
	if (calib != NULL) {
		analysis = workspace_new_analysis(&ws);
		analysis_set_quant(analysis, &quant);
		for (int i = 0; i < analysis->n_sites; i++)
			analysis_set_transform(analysis, i, &spec);
		sim = simulation_new_with(analysis, &sim_options, &err);
		if (sim == NULL) {
			analysis_free(analysis);
			workspace_close(&ws);
			return cli_fail(&err);
		}
		hooks = &sim->hooks;
	}
	if (kv_bits > 0) {
		export_hook_chain_init(&chain, hooks, kv_bits, model->config.head_dim);
		hooks = &chain.hooks;
	}
	if (!ctx_given && ctx > model->config.context_length)
		ctx = model->config.context_length;
	if (cli_check_ctx(model, ctx, &err) != 0) {
		eval_release(&ws, analysis, sim, runtime);
		return cli_fail(&err);
	}
	text = cli_read_texts(argv + optind + 1, argc - optind - 1, &length, &err);
	if (text == NULL || cli_tokenize(model, text, length, &ids, &n_ids, &err) != 0 ||
	    cli_check_text_windows(argv + optind + 1, argc - optind - 1, n_ids, ctx, &err) != 0) {
		free(text);
		free(ids);
		eval_release(&ws, analysis, sim, runtime);
		return cli_fail(&err);
	}
	free(text);

	progress_start(&progress, "eval", "tok", n_ids / (size_t)ctx * (size_t)ctx, NULL, NULL);
	if (eval_perplexity(sim ? &sim->view : model, NULL, hooks, ids, n_ids, ctx, &progress, &result, &err) != 0) {
		progress_finish(&progress);
		free(ids);
		eval_release(&ws, analysis, sim, runtime);
		return cli_fail(&err);
	}
	progress_finish(&progress);
	if (sim != NULL) {
		char wtext[64], atext[64], ttext[64];

		quant_params_format(&quant.weight, wtext, sizeof(wtext));
		quant_params_format(&quant.act, atext, sizeof(atext));
		transform_spec_format(&spec, ttext, sizeof(ttext));
		printf("simulated   weights %s, activations %s, %s rounding, transform %s\n", wtext, atext,
		       quant.rounding == QUANT_GPTQ ? "GPTQ" : "RTN", ttext);
	}
	if (runtime != NULL) {
		char atext[64];

		quant_params_format(&runtime->act, atext, sizeof(atext));
		printf("exported    integer weights, online transforms, activations %s\n", atext);
	}
	if (kv_bits > 0 || (runtime != NULL && runtime->kv.params.bits > 0))
		printf("kv cache    %d bits, asymmetric, one group per head\n",
		       kv_bits > 0 ? kv_bits : runtime->kv.params.bits);
	printf("tokens      %zu (%d windows of %d, %llu scored)\n", n_ids, result.windows, ctx,
	       (unsigned long long)result.scored);
	printf("perplexity  %.4f\n", result.perplexity);
	printf("nll         %.6f nats/token\n", result.mean_nll);
	printf("speed       %.0f tokens/s (%.2f s)\n", result.tokens_per_second, result.seconds);
	free(ids);
	eval_release(&ws, analysis, sim, runtime);
	return 0;
}
