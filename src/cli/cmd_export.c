/* catscope export: write the fully quantized model as a checkpoint directory. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/alloc.h"
#include "catscope/atomicfile.h"
#include "catscope/cli.h"
#include "catscope/session.h"
#include "catscope/export.h"
#include "catscope/workspace.h"

static const char export_usage[] =
	"usage: catscope export MODEL --calib CACHE [--transform SPEC] [options] -o DIR\n"
	"       catscope export MODEL --session FILE [--calib CACHE] [options] -o DIR\n"
	"\n"
	"Writes the quantized model that 'catscope eval MODEL --calib CACHE' simulates with the\n"
	"same options as a checkpoint directory: packed integer weights W' = Q(W T^-1) in the\n"
	"compressed-tensors pack-quantized layout, each site's transform T for the runtime to\n"
	"apply online, config.json and the tokenizer. 'catscope eval DIR' and 'catscope\n"
	"generate DIR' run it. man 5 catscope-export describes the layout.\n"
	"\n"
	"  --calib CACHE        calibration cache of the model (required without --session;\n"
	"                       with it, the default is the cache the session names)\n"
	"  --transform SPEC     transform of every site (default none)\n"
	"  --site NAME=SPEC     transform of one site, such as blk.0.ffn_down=cat:64;\n"
	"                       repeatable, once per site\n"
	"  --wbits B, --abits B bit widths (default 4 and 4); packed weights need 2, 4 or 8\n"
	"  --weights P, --acts P  full quantizer settings, as for catscope report\n"
	"  --gptq               round weights with GPTQ\n"
	"  --kv-bits B          quantize the KV cache to B bits (asymmetric, per head;\n"
	"                       default: unquantized)\n"
	"  --dtype T            f16 (default), bf16 or f32 for the embeddings, norms and head\n"
	"  --shard-size BYTES   split model.safetensors above this size (suffix K, M or G;\n"
	"                       default 2G; 0 never splits)\n"
	"  -o, --output DIR     the directory to create\n"
	"  --force              replace DIR if it is an earlier export\n"
	"  --source-rope-order  keep q/k rows in the source's RoPE order (for a GGUF source:\n"
	"                       adjacent pairs) instead of Hugging Face's; 'catscope eval\n"
	"                       --calib' with the same --dtype and --source-rope-order\n"
	"                       simulates the export bit for bit\n"
	"  --session FILE       take every site's transform and the quantizer from a session\n"
	"                       saved in the explorer (F2); its model and cache fingerprints\n"
	"                       must match MODEL and CACHE, and no option skips that check\n";

static int
export_parse_size(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;
	uint64_t unit = 1;

	errno = 0;
	if (!isdigit((unsigned char)text[0]))
		return -1;
	value = strtoull(text, &end, 10);
	if (errno != 0 || end == text)
		return -1;
	if (*end == 'K' || *end == 'k')
		unit = 1024;
	else if (*end == 'M' || *end == 'm')
		unit = 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		unit = 1024 * 1024 * 1024;
	else if (*end != '\0')
		return -1;
	if (unit > 1 && end[1] != '\0')
		return -1;
	if (!alloc_mul_ok(value, unit, out))
		return -1;
	return 0;
}

/* Applies "blk.N.KIND=SPEC" to one site of the analysis. given[i] is the --site text
 * already applied to site i, or NULL, so that a second one for the same site is
 * rejected instead of replacing the first. */
static int
export_apply_site(struct analysis *a, const char *text, const char **given)
{
	const char *eq = strchr(text, '=');
	struct transform_spec spec;
	struct error err;
	int block;
	char kind[32];

	if (eq == NULL || sscanf(text, "blk.%d.%31[a-z_]", &block, kind) != 2 ||
	    (size_t)(eq - text) != strlen("blk..") + strlen(kind) + (size_t)snprintf(NULL, 0, "%d", block))
		return cli_usage_error("export", "--site expects blk.N.KIND=SPEC, got '%s'", text);
	if (block < 0 || block >= a->model->config.n_layers)
		return cli_usage_error("export", "--site %s: the model has blocks 0 to %d", text,
				       a->model->config.n_layers - 1);
	for (int k = 0; k < SITE_KIND_COUNT; k++) {
		int site = analysis_site_index(block, (enum site_kind)k);

		if (strcmp(kind, site_kind_name((enum site_kind)k)) != 0)
			continue;
		if (given[site] != NULL)
			return cli_usage_error("export", "--site blk.%d.%s given twice ('%s' and '%s'); "
					       "give each site once", block, kind,
					       strchr(given[site], '=') + 1, eq + 1);
		if (transform_spec_parse(eq + 1, &spec, &err) != 0)
			return cli_usage_error("export", "--site %s: %s", text, err.message);
		analysis_set_transform(a, site, &spec);
		given[site] = text;
		return 0;
	}
	return cli_usage_error("export", "--site %s: unknown site kind '%s'; expected attn_in, "
			       "attn_out, ffn_in or ffn_down", text, kind);
}

/* Appends to a session_check message what fixes the mismatch for export. No export
 * option skips the check, because export's --force only replaces the output directory. */
static void
export_mismatch_advice(const struct session *session, const struct model *model,
		       struct error *err)
{
	const char *recorded_cache = session_cache_path(session);

	if (model->fingerprint != session_model_fingerprint(session))
		error_append(err, "; export the model the session was saved with (%s). No export "
			     "option skips this check", session_model_path(session));
	else if (recorded_cache != NULL)
		error_append(err, "; pass the cache the session was saved with (--calib %s, or no "
			     "--calib). No export option skips this check", recorded_cache);
}

int
cli_export(int argc, char **argv)
{
	static const struct option options[] = {
		{ "calib", required_argument, NULL, 'C' },
		CLI_QUANTIZER_OPTIONS,
		{ "site", required_argument, NULL, 's' },
		{ "kv-bits", required_argument, NULL, 'K' },
		{ "dtype", required_argument, NULL, 'd' },
		{ "shard-size", required_argument, NULL, 'S' },
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "session", required_argument, NULL, 'x' },
		{ "source-rope-order", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct export_options opt;
	struct export_summary summary;
	struct transform_spec spec;
	struct quant_config quant;
	struct cli_quant_given given = { 0 };
	struct workspace ws;
	struct analysis *analysis;
	const char *session_path = NULL;
	struct session *session = NULL;
	struct error err;
	const char *output = NULL;
	const char **site_specs = NULL;
	const char **site_given;
	int n_site_specs = 0;
	bool quant_given = false;
	int opt_code, rc;

	export_options_default(&opt);
	quant_config_default(&quant);
	transform_spec_parse("none", &spec, &err);
	optind = 1;
	while ((opt_code = getopt_long(argc, argv, ":ho:", options, NULL)) != -1) {
		switch (opt_code) {
		case 'C':
			opt.calib_path = optarg;
			break;
		case 't':
		case 'W':
		case 'A':
		case 'w':
		case 'a':
		case 'g':
			if (cli_parse_quant_option("export", opt_code, optarg, &given, &spec,
						   &quant) != 0) {
				free(site_specs);
				return 2;
			}
			quant_given = true;
			break;
		case 's':
			site_specs = realloc(site_specs, sizeof(*site_specs) * (size_t)(n_site_specs + 1));
			if (site_specs == NULL)
				return cli_usage_error("export", "out of memory");
			site_specs[n_site_specs++] = optarg;
			break;
		case 'K':
			if (cli_parse_int("export", "--kv-bits", optarg, QUANT_BITS_MIN, QUANT_BITS_MAX,
					  &opt.kv_bits) != 0) {
				free(site_specs);
				return 2;
			}
			break;
		case 'd': {
			enum simulation_storage storage;
			static const enum safetensors_dtype dtypes[] = {
				[SIMULATION_F32] = SAFETENSORS_F32,
				[SIMULATION_F16] = SAFETENSORS_F16,
				[SIMULATION_BF16] = SAFETENSORS_BF16,
			};

			if (cli_parse_dtype("export", optarg, &storage) != 0) {
				free(site_specs);
				return 2;
			}
			opt.dtype = dtypes[storage];
			break;
		}
		case 'S':
			if (export_parse_size(optarg, &opt.shard_size) != 0) {
				free(site_specs);
				return cli_usage_error("export", "--shard-size expects a byte count such as "
						       "2G or 500M, got '%s'", optarg);
			}
			break;
		case 'o':
			output = optarg;
			break;
		case 'f':
			opt.force = true;
			break;
		case 'r':
			opt.source_rope_order = true;
			break;
		case 'x':
			session_path = optarg;
			break;
		case 'h':
			free(site_specs);
			fputs(export_usage, stdout);
			return 0;
		default:
			free(site_specs);
			return cli_option_error("export", opt_code, argc, argv);
		}
	}
	if (argc - optind != 1 || output == NULL || (opt.calib_path == NULL && session_path == NULL)) {
		free(site_specs);
		return cli_usage_error("export", "expected one model, --calib CACHE (or --session FILE) "
				       "and -o DIR");
	}

	/* The model and the cache load first, so a directory that could never be
	 * created must fail before. */
	if (atomic_check_directory(output, &err) != 0) {
		free(site_specs);
		error_prefix(&err, "-o");
		return cli_fail(&err);
	}
	if (session_path != NULL && (quant_given || n_site_specs > 0)) {
		free(site_specs);
		return cli_usage_error("export", "--session sets the transforms and the quantizer; "
				       "drop --transform, --site and the quantizer options");
	}
	if (session_path != NULL && session_load(session_path, &session, &err) != 0) {
		free(site_specs);
		return cli_fail(&err);
	}
	/* As catscope --replay does, a session supplies its own cache, resolved from the
	 * session file's directory. */
	if (opt.calib_path == NULL) {
		opt.calib_path = session_cache_path(session);
		if (opt.calib_path == NULL) {
			free(site_specs);
			session_free(session);
			return cli_usage_error("export", "%s records no calibration cache; pass --calib "
					       "CACHE", session_path);
		}
	}
	if (cli_check_not_export(argv[optind], &err) != 0 ||
	    workspace_open(&ws, argv[optind], opt.calib_path, &err) != 0) {
		free(site_specs);
		session_free(session);
		return cli_fail(&err);
	}
	analysis = workspace_new_analysis(&ws);
	rc = 0;
	if (session != NULL) {
		opt.session_path = session_path;
		/* The session's messages start with its file name already. */
		if (session_check(session, ws.model, argv[optind], ws.cache, opt.calib_path, &err) != 0) {
			export_mismatch_advice(session, ws.model, &err);
			rc = cli_fail(&err);
		} else if (session_apply(session, analysis, &err) != 0) {
			rc = cli_fail(&err);
		}
		quant = analysis->quant;
		transform_spec_parse("none", &spec, NULL);
	} else {
		analysis_set_quant(analysis, &quant);
		for (int i = 0; i < analysis->n_sites; i++)
			analysis_set_transform(analysis, i, &spec);
	}
	site_given = alloc_array((size_t)analysis->n_sites, sizeof(*site_given));
	for (int i = 0; i < analysis->n_sites; i++)
		site_given[i] = NULL;
	for (int i = 0; i < n_site_specs && rc == 0; i++)
		rc = export_apply_site(analysis, site_specs[i], site_given);
	free(site_given);
	free(site_specs);
	if (rc == 0 && export_write(analysis, &opt, output, &summary, &err) != 0)
		rc = cli_fail(&err);
	if (rc == 0) {
		char wtext[64], atext[64], ttext[64];

		quant_params_format(&quant.weight, wtext, sizeof(wtext));
		quant_params_format(&quant.act, atext, sizeof(atext));
		if (session != NULL)
			snprintf(ttext, sizeof(ttext), "per site");
		else
			transform_spec_format(&spec, ttext, sizeof(ttext));
		printf("exported    %s\n", output);
		printf("quantized   weights %s, activations %s, %s rounding, transform %s%s, KV cache %s\n",
		       wtext, atext, quant.rounding == QUANT_GPTQ ? "GPTQ" : "RTN", ttext,
		       session != NULL ? " (from the session)" :
		       n_site_specs > 0 ? " (with per-site overrides)" : "",
		       opt.kv_bits > 0 ? "quantized" : "float");
		if (opt.kv_bits > 0)
			printf("kv cache    %d bits, asymmetric, one group per head\n", opt.kv_bits);
		printf("size        %.2f MiB in %d files (%d safetensors shard%s)\n",
		       (double)summary.bytes / (1024.0 * 1024.0), summary.n_files, summary.n_shards,
		       summary.n_shards == 1 ? "" : "s");
		printf("time        %.2f s\n", summary.seconds);
		if (summary.inexact_groups > 0)
			fprintf(stderr, "catscope: warning: %d weight groups could not be stored bit for bit "
					"as the simulation computed them\n", summary.inexact_groups);
	}
	analysis_free(analysis);
	workspace_close(&ws);
	session_free(session);
	return rc;
}
