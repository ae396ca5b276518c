/* Consistency checks of an export's config.json, run before its weights are read.
 *
 * The catscope section is what catscope runs. The Hugging Face keys and the
 * compressed-tensors quantization_config beside it are what other tools read, so an
 * edit that makes them disagree would let the same directory mean two different
 * models. Such a file is rejected rather than trusted in one of its halves. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catscope/quant.h"
#include "model_export_check.h"

/* Keys of each object that catscope export writes (format_version 1). NULL ends a
 * list. */
static const char *const catscope_keys[] = {
	"format_version", "model", "norms_folded", "weights", "rounding", "clip_search",
	"gptq_damp", "input_activations", "kv_cache", "unquantized_dtype", "tokenizer",
	"transforms", "sites", "provenance", NULL
};
static const char *const model_keys[] = {
	"architecture", "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
	"vocab_size", "context_length", "norm_eps", "rope_theta", "rope_style",
	"rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor",
	"rope_original_context", "qkv_bias", "qk_norm", "tied_output", NULL
};
static const char *const weights_keys[] = { "spec", "bits", "symmetric", "group_size", "clip",
					     "scale_dtype", NULL };
static const char *const activations_keys[] = { "spec", "bits", "symmetric", "group_size", "clip",
						 NULL };
static const char *const kv_cache_keys[] = { "bits", "symmetric", "group_size", "strategy", NULL };
static const char *const transforms_keys[] = { "attn_in", "attn_out", "ffn_in", "ffn_down", NULL };
static const char *const site_keys[] = { "site", "transform", "tensors", NULL };
static const char *const provenance_keys[] = { "source", "fingerprint", "calibration", "session",
						"catscope_version", NULL };
static const char *const calibration_keys[] = { "path", "hash", NULL };

static int
check_known_keys(const json_t *object, const char *json_path, const char *const *known,
		 const char *path, struct error *err)
{
	const char *key;
	const json_t *value;

	if (!json_is_object(object))
		return 0;
	json_object_foreach((json_t *)object, key, value) {
		bool found = false;

		for (int i = 0; known[i] != NULL && !found; i++)
			found = strcmp(key, known[i]) == 0;
		if (!found)
			return error_set(err, "%s: unknown key '%s.%.64s' in the catscope section; this "
					 "catscope reads format_version 1 exports, so remove the key or "
					 "export again", path, json_path, key);
	}
	return 0;
}

static int
check_catscope_keys(const json_t *cat, const char *path, struct error *err)
{
	const json_t *sites = json_object_get(cat, "sites");
	const json_t *provenance = json_object_get(cat, "provenance");
	const json_t *site;
	size_t i;

	if (check_known_keys(cat, "catscope", catscope_keys, path, err) != 0 ||
	    check_known_keys(json_object_get(cat, "model"), "catscope.model", model_keys, path, err) != 0 ||
	    check_known_keys(json_object_get(cat, "weights"), "catscope.weights", weights_keys, path,
			     err) != 0 ||
	    check_known_keys(json_object_get(cat, "input_activations"), "catscope.input_activations",
			     activations_keys, path, err) != 0 ||
	    check_known_keys(json_object_get(cat, "kv_cache"), "catscope.kv_cache", kv_cache_keys, path,
			     err) != 0 ||
	    check_known_keys(json_object_get(cat, "transforms"), "catscope.transforms", transforms_keys,
			     path, err) != 0 ||
	    check_known_keys(provenance, "catscope.provenance", provenance_keys, path, err) != 0 ||
	    check_known_keys(json_object_get(provenance, "calibration"), "catscope.provenance.calibration",
			     calibration_keys, path, err) != 0)
		return -1;
	json_array_foreach((json_t *)sites, i, site) {
		char site_path[64];

		snprintf(site_path, sizeof(site_path), "catscope.sites[%zu]", i);
		if (check_known_keys(site, site_path, site_keys, path, err) != 0)
			return -1;
	}
	return 0;
}

/* Formats a JSON value for a message: integers, booleans, null and short strings as
 * JSON writes them, anything else by its type. */
static void
format_value(const json_t *value, char *buf, size_t size)
{
	if (value == NULL)
		snprintf(buf, size, "missing");
	else if (json_is_integer(value))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
	else if (json_is_boolean(value))
		snprintf(buf, size, "%s", json_is_true(value) ? "true" : "false");
	else if (json_is_null(value))
		snprintf(buf, size, "null");
	else if (json_is_string(value))
		snprintf(buf, size, "\"%.40s\"", json_string_value(value));
	else
		snprintf(buf, size, "%s", json_is_real(value) ? "a number" : "not a scalar");
}

/* Fails unless value equals expected, naming both keys and both values. */
static int
check_equal(const json_t *value, const char *key, const json_t *expected, const char *expected_key,
	    const char *path, struct error *err)
{
	char seen[64], want[64];

	if (value != NULL && expected != NULL && json_equal((json_t *)value, (json_t *)expected))
		return 0;
	format_value(value, seen, sizeof(seen));
	format_value(expected, want, sizeof(want));
	return error_set(err, "%s: %s is %s, but %s is %s; the catscope section is what catscope runs, "
			 "so export again or make them agree", path, key, seen, expected_key, want);
}

/* Checks a compressed-tensors quantization scheme against the catscope quantizer
 * object it was written from. */
static int
check_scheme(const json_t *scheme, const char *scheme_path, const json_t *ours, const char *ours_path,
	     bool activations, const char *path, struct error *err)
{
	const json_t *bits = json_object_get(ours, "bits");
	const json_t *group_size = json_object_get(ours, "group_size");
	char key[160], our_key[96];
	bool grouped = json_integer_value(group_size) > 0;

	snprintf(our_key, sizeof(our_key), "%s.bits", ours_path);
	if (json_integer_value(bits) == 0) {
		/* The writer stores null for an unquantized input, because it has no scheme. */
		if (scheme == NULL || json_is_null(scheme))
			return 0;
		return error_set(err, "%s: %s is a quantization scheme, but %s is 0 (not quantized); the "
				 "catscope section is what catscope runs, so export again or make them "
				 "agree", path, scheme_path, our_key);
	}
	if (!json_is_object(scheme))
		return error_set(err, "%s: %s is missing or not an object, but %s is %" JSON_INTEGER_FORMAT
				 "; export again", path, scheme_path, our_key, json_integer_value(bits));

	snprintf(key, sizeof(key), "%s.num_bits", scheme_path);
	if (check_equal(json_object_get(scheme, "num_bits"), key, bits, our_key, path, err) != 0)
		return -1;
	snprintf(key, sizeof(key), "%s.symmetric", scheme_path);
	snprintf(our_key, sizeof(our_key), "%s.symmetric", ours_path);
	if (check_equal(json_object_get(scheme, "symmetric"), key, json_object_get(ours, "symmetric"),
			our_key, path, err) != 0)
		return -1;

	/* Group size 0 (one group per row) is written as null. */
	const json_t *written = json_object_get(scheme, "group_size");

	snprintf(our_key, sizeof(our_key), "%s.group_size", ours_path);
	if (grouped ? !json_is_integer(written) || json_integer_value(written) != json_integer_value(group_size)
		    : !json_is_null(written)) {
		char seen[64];

		format_value(written, seen, sizeof(seen));
		return error_set(err, "%s: %s.group_size is %s, but %s is %" JSON_INTEGER_FORMAT "%s; "
				 "export again or make them agree", path, scheme_path, seen, our_key,
				 json_integer_value(group_size), grouped ? "" : " (one group per row, null)");
	}

	/* One group per row is "channel" for weights and "token" for activations. */
	const char *strategy = "group";

	written = json_object_get(scheme, "strategy");

	if (!grouped)
		strategy = activations ? "token" : "channel";
	if (!json_is_string(written) || strcmp(json_string_value(written), strategy) != 0) {
		char seen[64];

		format_value(written, seen, sizeof(seen));
		return error_set(err, "%s: %s.strategy is %s, but %s %" JSON_INTEGER_FORMAT " means "
				 "\"%s\"; export again or make them agree", path, scheme_path, seen,
				 our_key, json_integer_value(group_size), strategy);
	}
	written = json_object_get(scheme, "dynamic");
	if (!json_is_boolean(written) || json_is_true(written) != activations) {
		char seen[64];

		format_value(written, seen, sizeof(seen));
		return error_set(err, "%s: %s.dynamic is %s, but catscope quantizes %s; export again or "
				 "make them agree", path, scheme_path, seen,
				 activations ? "input activations at run time (true)" :
				 "weights ahead of time (false)");
	}
	return 0;
}

/* Checks that the spec string of a catscope quantizer object, which the runtime
 * parses, matches its bits, symmetric and group_size fields. */
static int
check_spec(const json_t *ours, const char *ours_path, const char *path, struct error *err)
{
	const json_t *spec = json_object_get(ours, "spec");
	struct quant_params p;
	struct error perr;
	char key[96];

	if (!json_is_object(ours))
		return error_set(err, "%s: %s is missing or not an object; export again", path, ours_path);
	if (!json_is_string(spec) || quant_params_parse(json_string_value(spec), &p, &perr) != 0)
		return error_set(err, "%s: %s.spec is missing or invalid; export again", path, ours_path);
	if (json_integer_value(json_object_get(ours, "bits")) != p.bits ||
	    json_is_true(json_object_get(ours, "symmetric")) != (p.mode == QUANT_SYMMETRIC) ||
	    json_integer_value(json_object_get(ours, "group_size")) != p.group_size) {
		snprintf(key, sizeof(key), "%s.spec", ours_path);
		return error_set(err, "%s: %s \"%.40s\" disagrees with %s.bits, .symmetric or "
				 ".group_size; export again or make them agree", path, key,
				 json_string_value(spec), ours_path);
	}
	return 0;
}

static int
check_quantization_config(const json_t *config, const json_t *cat, const char *path, struct error *err)
{
	const json_t *qcfg = json_object_get(config, "quantization_config");
	const json_t *group = json_object_get(json_object_get(qcfg, "config_groups"), "group_0");
	const json_t *method = json_object_get(qcfg, "quant_method");
	const json_t *format = json_object_get(qcfg, "format");

	if (check_spec(json_object_get(cat, "weights"), "catscope.weights", path, err) != 0 ||
	    check_spec(json_object_get(cat, "input_activations"), "catscope.input_activations", path,
		       err) != 0)
		return -1;
	/* Without quantization_config other tools see no quantization, which contradicts
	 * nothing that catscope reads. */
	if (qcfg == NULL)
		return 0;
	if (!json_is_object(qcfg))
		return error_set(err, "%s: quantization_config is not an object; export again", path);
	if (!json_is_string(method) || strcmp(json_string_value(method), "compressed-tensors") != 0 ||
	    !json_is_string(format) || strcmp(json_string_value(format), "pack-quantized") != 0)
		return error_set(err, "%s: quantization_config.quant_method and .format must be "
				 "\"compressed-tensors\" and \"pack-quantized\", as catscope export "
				 "writes them; export again", path);
	if (json_object_size(json_object_get(qcfg, "config_groups")) != 1 || !json_is_object(group))
		return error_set(err, "%s: quantization_config.config_groups must have exactly one group, "
				 "group_0, as catscope export writes it; export again", path);
	if (check_scheme(json_object_get(group, "weights"), "quantization_config.config_groups.group_0.weights",
			 json_object_get(cat, "weights"), "catscope.weights", false, path, err) != 0 ||
	    check_scheme(json_object_get(group, "input_activations"),
			 "quantization_config.config_groups.group_0.input_activations",
			 json_object_get(cat, "input_activations"), "catscope.input_activations", true,
			 path, err) != 0)
		return -1;
	return 0;
}

/* The Hugging Face keys that export_build_config writes from catscope.model. */
static const struct {
	const char *hf_key;
	const char *catscope_key;
} hf_model_keys[] = {
	{ "hidden_size", "dim" },
	{ "intermediate_size", "hidden_dim" },
	{ "num_hidden_layers", "n_layers" },
	{ "num_attention_heads", "n_heads" },
	{ "num_key_value_heads", "n_kv_heads" },
	{ "head_dim", "head_dim" },
	{ "vocab_size", "vocab_size" },
	{ "max_position_embeddings", "context_length" },
	{ "tie_word_embeddings", "tied_output" },
	{ "attention_bias", "qkv_bias" },
};

/* Compares each Hugging Face key that is present with its catscope.model value. */
static int
check_hf_keys(const json_t *config, const json_t *cat, const char *path, struct error *err)
{
	const json_t *model = json_object_get(cat, "model");

	for (size_t i = 0; i < sizeof(hf_model_keys) / sizeof(hf_model_keys[0]); i++) {
		const json_t *value = json_object_get(config, hf_model_keys[i].hf_key);
		char key[64];

		if (value == NULL)
			continue;
		snprintf(key, sizeof(key), "catscope.model.%s", hf_model_keys[i].catscope_key);
		if (check_equal(value, hf_model_keys[i].hf_key,
				json_object_get(model, hf_model_keys[i].catscope_key), key, path, err) != 0)
			return -1;
	}
	return 0;
}

int
model_export_check_config(const json_t *config, const char *path, struct error *err)
{
	const json_t *cat = json_object_get(config, "catscope");

	if (check_catscope_keys(cat, path, err) != 0 || check_hf_keys(config, cat, path, err) != 0)
		return -1;
	return check_quantization_config(config, cat, path, err);
}

/* Parses the N of "model.layers.N." at the start of name; -1 for other names. An N
 * above MODEL_LAYER_INDEX_MAX reads as that value, which no n_layers matches, so that
 * the caller's arithmetic cannot overflow. */
#define MODEL_LAYER_INDEX_MAX 1000000000L

static long
layer_of_tensor(const char *name)
{
	static const char prefix[] = "model.layers.";
	const char *digits = name + sizeof(prefix) - 1;
	char *end;
	long layer;

	if (strncmp(name, prefix, sizeof(prefix) - 1) != 0 || *digits < '0' || *digits > '9')
		return -1;
	errno = 0;
	layer = strtol(digits, &end, 10);
	if (*end != '.')
		return -1;
	return errno != 0 || layer > MODEL_LAYER_INDEX_MAX ? MODEL_LAYER_INDEX_MAX : layer;
}

int
model_export_check_layers(const struct safetensors_checkpoint *ckpt, int n_layers, const char *path,
			  struct error *err)
{
	long last = -1;
	const char *last_name = NULL;

	for (size_t f = 0; f < ckpt->n_files; f++) {
		const struct safetensors_file *file = ckpt->files[f];

		for (size_t i = 0; i < file->n_tensors; i++) {
			long layer = layer_of_tensor(file->tensors[i].name);

			if (layer > last) {
				last = layer;
				last_name = file->tensors[i].name;
			}
		}
	}
	if (last < 0)
		return error_set(err, "%s: catscope.model.n_layers is %d, but the checkpoint has no "
				 "model.layers tensors; the export is damaged", path, n_layers);
	if (last + 1 != n_layers)
		return error_set(err, "%s: catscope.model.n_layers is %d, but the checkpoint has tensors "
				 "up to layer %ld (%.96s); export again or set n_layers to %ld", path,
				 n_layers, last, last_name, last + 1);
	return 0;
}
