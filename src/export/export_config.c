/* config.json of an export and its tokenizer files. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catscope/alloc.h"
#include "catscope/gguf.h"
#include "catscope/hash.h"
#include "catscope/mapfile.h"
#include "export_impl.h"

static const char *
export_dtype_torch_name(enum safetensors_dtype dtype)
{
	switch (dtype) {
	case SAFETENSORS_F16:
		return "float16";
	case SAFETENSORS_BF16:
		return "bfloat16";
	default:
		return "float32";
	}
}

static json_t *
export_hex(uint64_t value)
{
	char text[32];

	snprintf(text, sizeof(text), "%016" PRIx64, value);
	return json_string(text);
}

/* The compressed-tensors description of one quantizer; NULL when unquantized. */
static json_t *
export_quant_args(const struct quant_params *p, bool activations)
{
	json_t *o;

	if (p->bits == 0)
		return json_null();
	o = json_object();
	json_object_set_new(o, "num_bits", json_integer(p->bits));
	json_object_set_new(o, "type", json_string("int"));
	json_object_set_new(o, "symmetric", json_boolean(p->mode == QUANT_SYMMETRIC));
	if (activations)
		json_object_set_new(o, "strategy", json_string(p->group_size > 0 ? "group" : "token"));
	else
		json_object_set_new(o, "strategy", json_string(p->group_size > 0 ? "group" : "channel"));
	json_object_set_new(o, "group_size", p->group_size > 0 ? json_integer(p->group_size) : json_null());
	json_object_set_new(o, "dynamic", json_boolean(activations));
	return o;
}

static json_t *
export_quantization_config(const struct quant_config *qc)
{
	json_t *qcfg = json_object();
	json_t *groups = json_object();
	json_t *group = json_object();
	json_t *ignore = json_array();

	json_object_set_new(group, "targets", json_pack("[s]", "Linear"));
	json_object_set_new(group, "weights", export_quant_args(&qc->weight, false));
	json_object_set_new(group, "input_activations", export_quant_args(&qc->act, true));
	json_object_set_new(group, "output_activations", json_null());
	json_object_set_new(groups, "group_0", group);
	json_array_append_new(ignore, json_string("lm_head"));
	json_object_set_new(qcfg, "quant_method", json_string("compressed-tensors"));
	json_object_set_new(qcfg, "format", json_string("pack-quantized"));
	json_object_set_new(qcfg, "quantization_status", json_string("compressed"));
	json_object_set_new(qcfg, "config_groups", groups);
	json_object_set_new(qcfg, "ignore", ignore);
	/* The dynamic per-head KV quantization has no compressed-tensors form; it is in
	 * the catscope object. */
	json_object_set_new(qcfg, "kv_cache_scheme", json_null());
	return qcfg;
}

/* The exact model_config, so that the loader needs no Hugging Face defaults. */
static json_t *
export_model_object(const struct model_config *c, bool source_rope_order)
{
	json_t *o = json_object();

	json_object_set_new(o, "architecture", json_string(c->architecture));
	json_object_set_new(o, "dim", json_integer(c->dim));
	json_object_set_new(o, "hidden_dim", json_integer(c->hidden_dim));
	json_object_set_new(o, "n_layers", json_integer(c->n_layers));
	json_object_set_new(o, "n_heads", json_integer(c->n_heads));
	json_object_set_new(o, "n_kv_heads", json_integer(c->n_kv_heads));
	json_object_set_new(o, "head_dim", json_integer(c->head_dim));
	json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
	json_object_set_new(o, "context_length", json_integer(c->context_length));
	json_object_set_new(o, "norm_eps", json_real(c->norm_eps));
	json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
	/* q and k rows are in the halves order unless the source order was kept. */
	json_object_set_new(o, "rope_style",
			    json_string(source_rope_order && c->rope_style == ROPE_ADJACENT_PAIRS ?
					"adjacent_pairs" : "halves"));
	json_object_set_new(o, "rope_scaling_factor", json_real(c->rope_scaling_factor));
	json_object_set_new(o, "rope_low_freq_factor", json_real(c->rope_low_freq_factor));
	json_object_set_new(o, "rope_high_freq_factor", json_real(c->rope_high_freq_factor));
	json_object_set_new(o, "rope_original_context", json_integer(c->rope_original_context));
	json_object_set_new(o, "qkv_bias", json_boolean(c->qkv_bias));
	json_object_set_new(o, "qk_norm", json_boolean(c->qk_norm));
	json_object_set_new(o, "tied_output", json_boolean(c->tied_output));
	return o;
}

static json_t *
export_quant_object(const struct quant_params *p)
{
	char text[64];
	json_t *o = json_object();

	quant_params_format(p, text, sizeof(text));
	json_object_set_new(o, "spec", json_string(text));
	json_object_set_new(o, "bits", json_integer(p->bits));
	json_object_set_new(o, "symmetric", json_boolean(p->mode == QUANT_SYMMETRIC));
	json_object_set_new(o, "group_size", json_integer(p->group_size));
	json_object_set_new(o, "clip", json_real(p->clip));
	return o;
}

/* Hash of a file's bytes, or 0 when it cannot be read. */
static uint64_t
export_file_hash(const char *path)
{
	const uint8_t *data;
	size_t size;
	struct error err;
	uint64_t h;

	if (path == NULL || mapfile_open(path, &data, &size, &err) != 0)
		return 0;
	h = hash_update(HASH_SEED, data, size);
	mapfile_close(data, size);
	return h;
}

static json_t *
export_catscope_object(const struct analysis *a, const struct export_options *opt,
		       const char *tokenizer_file)
{
	const struct quant_config *qc = &a->quant;
	const struct model *m = a->model;
	json_t *o = json_object();
	json_t *sites = json_array();
	json_t *by_kind = json_object();
	json_t *kv = json_object();
	json_t *prov = json_object();
	json_t *calib = json_object();
	char text[64];

	json_object_set_new(o, "format_version", json_integer(EXPORT_FORMAT_VERSION));
	json_object_set_new(o, "model", export_model_object(&m->config, opt->source_rope_order));
	json_object_set_new(o, "norms_folded", json_true());
	json_object_set_new(o, "weights", export_quant_object(&qc->weight));
	json_object_set_new(json_object_get(o, "weights"), "scale_dtype", json_string("F32"));
	json_object_set_new(o, "rounding", json_string(qc->rounding == QUANT_GPTQ ? "gptq" : "rtn"));
	json_object_set_new(o, "clip_search", json_boolean(qc->clip_search));
	json_object_set_new(o, "gptq_damp", json_real(qc->gptq_damp));
	json_object_set_new(o, "input_activations", export_quant_object(&qc->act));
	json_object_set_new(kv, "bits", json_integer(opt->kv_bits));
	json_object_set_new(kv, "symmetric", json_false());
	json_object_set_new(kv, "group_size", json_integer(m->config.head_dim));
	json_object_set_new(kv, "strategy", json_string("token, one group per head, dynamic"));
	json_object_set_new(o, "kv_cache", kv);
	json_object_set_new(o, "unquantized_dtype", json_string(safetensors_dtype_name(opt->dtype)));
	json_object_set_new(o, "tokenizer", json_string(tokenizer_file));
	for (int i = 0; i < a->n_sites; i++) {
		const struct analysis_site *s = &a->sites[i];
		json_t *site = json_object();
		char name[64], prefix[96];

		transform_spec_format(&s->spec, text, sizeof(text));
		snprintf(name, sizeof(name), "blk.%d.%s", s->block, site_kind_name(s->kind));
		snprintf(prefix, sizeof(prefix), "model.layers.%d.catscope.%s", s->block,
			 site_kind_name(s->kind));
		json_object_set_new(site, "site", json_string(name));
		json_object_set_new(site, "transform", json_string(text));
		json_object_set_new(site, "tensors", json_string(prefix));
		json_array_append_new(sites, site);

		/* Per kind: the spec when all blocks agree, else "mixed". */
		const char *kind = site_kind_name(s->kind);
		json_t *seen = json_object_get(by_kind, kind);

		if (seen == NULL)
			json_object_set_new(by_kind, kind, json_string(text));
		else if (strcmp(json_string_value(seen), text) != 0)
			json_object_set_new(by_kind, kind, json_string("mixed"));
	}
	json_object_set_new(o, "transforms", by_kind);
	json_object_set_new(o, "sites", sites);

	json_object_set_new(prov, "source", json_string(m->path ? m->path : ""));
	json_object_set_new(prov, "fingerprint", export_hex(m->fingerprint));
	json_object_set_new(calib, "path", opt->calib_path ? json_string(opt->calib_path) : json_null());
	json_object_set_new(calib, "hash", opt->calib_path ? export_hex(export_file_hash(opt->calib_path)) :
								  json_null());
	json_object_set_new(prov, "calibration", calib);
	json_object_set_new(prov, "session", opt->session_path ? json_string(opt->session_path) : json_null());
	json_object_set_new(prov, "catscope_version", json_string(PACKAGE_VERSION));
	json_object_set_new(o, "provenance", prov);
	return o;
}

json_t *
export_build_config(const struct analysis *a, const struct export_options *opt,
		    const char *tokenizer_file)
{
	const struct model *m = a->model;
	const struct model_config *c = &m->config;
	json_t *root = json_object();
	const char *arch = "LlamaForCausalLM";
	const char *type = "llama";

	/* Per-head q/k norms mean Qwen3; q/k/v biases without them mean Qwen2. */
	if (c->qk_norm) {
		arch = "Qwen3ForCausalLM";
		type = "qwen3";
	} else if (c->qkv_bias) {
		arch = "Qwen2ForCausalLM";
		type = "qwen2";
	}

	json_object_set_new(root, "architectures", json_pack("[s]", arch));
	json_object_set_new(root, "model_type", json_string(type));
	json_object_set_new(root, "hidden_size", json_integer(c->dim));
	json_object_set_new(root, "intermediate_size", json_integer(c->hidden_dim));
	json_object_set_new(root, "num_hidden_layers", json_integer(c->n_layers));
	json_object_set_new(root, "num_attention_heads", json_integer(c->n_heads));
	json_object_set_new(root, "num_key_value_heads", json_integer(c->n_kv_heads));
	json_object_set_new(root, "head_dim", json_integer(c->head_dim));
	json_object_set_new(root, "vocab_size", json_integer(c->vocab_size));
	json_object_set_new(root, "max_position_embeddings", json_integer(c->context_length));
	json_object_set_new(root, "rms_norm_eps", json_real(c->norm_eps));
	json_object_set_new(root, "rope_theta", json_real(c->rope_theta));
	if (c->rope_scaling_factor > 0)
		json_object_set_new(root, "rope_scaling",
				    json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor",
					      (double)c->rope_scaling_factor, "low_freq_factor",
					      (double)c->rope_low_freq_factor, "high_freq_factor",
					      (double)c->rope_high_freq_factor,
					      "original_max_position_embeddings", c->rope_original_context));
	json_object_set_new(root, "attention_bias", json_boolean(c->qkv_bias));
	json_object_set_new(root, "hidden_act", json_string("silu"));
	json_object_set_new(root, "tie_word_embeddings", json_boolean(c->tied_output));
	json_object_set_new(root, "torch_dtype", json_string(export_dtype_torch_name(opt->dtype)));
	if (m->tokenizer != NULL) {
		int32_t bos = tokenizer_bos_id(m->tokenizer), eos = tokenizer_eos_id(m->tokenizer);

		json_object_set_new(root, "bos_token_id", bos >= 0 ? json_integer(bos) : json_null());
		json_object_set_new(root, "eos_token_id", eos >= 0 ? json_integer(eos) : json_null());
	}
	json_object_set_new(root, "quantization_config", export_quantization_config(&a->quant));
	json_object_set_new(root, "catscope", export_catscope_object(a, opt, tokenizer_file));
	return root;
}

static int
export_copy_file(const char *from, const char *to, struct error *err)
{
	const uint8_t *data;
	size_t size;
	FILE *f;
	int ok;

	if (mapfile_open(from, &data, &size, err) != 0)
		return -1;
	f = fopen(to, "wb");
	if (f == NULL) {
		mapfile_close(data, size);
		return error_set(err, "%s: cannot create the file: %s", to, strerror(errno));
	}
	ok = fwrite(data, 1, size, f) == size;
	ok = fclose(f) == 0 && ok;
	mapfile_close(data, size);
	return ok ? 0 : error_set(err, "%s: writing failed", to);
}

static void
export_note_file(char ***files, int *n_files, const char *name)
{
	*files = alloc_resize(*files, (size_t)*n_files + 1, sizeof(char *));
	(*files)[(*n_files)++] = alloc_strdup(name);
}

/* Returns a special token id of the GGUF file as JSON, or null when the key is missing
 * or the id is not below n_tokens. The GGUF loader runs without such a token, and the
 * export loader rejects an id outside the vocabulary. */
static json_t *
export_gguf_token_id(const struct gguf_file *f, const char *key, uint64_t n_tokens)
{
	uint32_t id;

	if (gguf_get_u32(f, key, &id, NULL) != 0 || id >= n_tokens)
		return json_null();
	return json_integer(id);
}

/* Writes the SentencePiece vocabulary of a GGUF file as tokenizer.catscope.json. */
static int
export_write_gguf_vocab(const char *gguf_path, const char *out_path, struct error *err)
{
	struct gguf_file *f = gguf_open(gguf_path, err);
	const struct gguf_value *tokens, *scores, *types = NULL;
	json_t *root, *pieces, *score_list, *type_list;
	int rc = -1;

	if (f == NULL)
		return -1;
	tokens = gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_VALUE_STRING, err);
	scores = tokens ? gguf_get_array(f, "tokenizer.ggml.scores", GGUF_VALUE_FLOAT32, err) : NULL;
	if (scores != NULL && gguf_find_kv(f, "tokenizer.ggml.token_type") != NULL)
		types = gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_VALUE_INT32, err);
	if (tokens == NULL || scores == NULL ||
	    (gguf_find_kv(f, "tokenizer.ggml.token_type") != NULL && types == NULL)) {
		gguf_close(f);
		return -1;
	}
	root = json_object();
	pieces = json_array();
	score_list = json_array();
	type_list = json_array();
	for (uint64_t i = 0; i < tokens->as.array.count; i++) {
		struct gguf_string s = gguf_array_string(tokens, i);
		json_t *piece = json_stringn(s.data, (size_t)s.length);

		if (piece == NULL) {
			error_set(err, "%s: token %" PRIu64 " is not valid UTF-8 and cannot be stored in "
				       "%s", gguf_path, i, EXPORT_GGUF_TOKENIZER_FILE);
			goto out;
		}
		/* GGUF arrays need not be aligned in the file, so values are copied out. */
		float score;
		int32_t type;

		json_array_append_new(pieces, piece);
		memcpy(&score, scores->as.array.data + i * sizeof(score), sizeof(score));
		json_array_append_new(score_list, json_real(score));
		if (types != NULL) {
			memcpy(&type, types->as.array.data + i * sizeof(type), sizeof(type));
			json_array_append_new(type_list, json_integer(type));
		}
	}
	json_object_set_new(root, "format", json_string("catscope-spm-vocab"));
	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(root, "tokens", pieces);
	pieces = NULL;
	json_object_set_new(root, "scores", score_list);
	score_list = NULL;
	json_object_set_new(root, "token_types", types ? type_list : json_null());
	if (types != NULL)
		type_list = NULL;
	json_object_set_new(root, "bos_token_id",
			    export_gguf_token_id(f, "tokenizer.ggml.bos_token_id", tokens->as.array.count));
	json_object_set_new(root, "eos_token_id",
			    export_gguf_token_id(f, "tokenizer.ggml.eos_token_id", tokens->as.array.count));
	json_object_set_new(root, "unknown_token_id",
			    export_gguf_token_id(f, "tokenizer.ggml.unknown_token_id", tokens->as.array.count));
	const struct gguf_kv *add_bos = gguf_find_kv(f, "tokenizer.ggml.add_bos_token");

	json_object_set_new(root, "add_bos_token",
			    json_boolean(add_bos == NULL || add_bos->value.type != GGUF_VALUE_BOOL ||
					 add_bos->value.as.u64 != 0));
	if (json_dump_file(root, out_path, JSON_COMPACT) != 0)
		error_set(err, "%s: writing failed", out_path);
	else
		rc = 0;
out:
	json_decref(pieces);
	json_decref(score_list);
	json_decref(type_list);
	json_decref(root);
	gguf_close(f);
	return rc;
}

int
export_write_tokenizer(const struct model *model, const char *dir, char ***files, int *n_files,
		       const char **tokenizer_file, struct error *err)
{
	static const char *const hf_files[] = { "tokenizer.json", "tokenizer_config.json",
						"special_tokens_map.json", "generation_config.json" };
	struct stat st;
	char from[4096], to[4096];

	if (stat(model->path, &st) == 0 && S_ISDIR(st.st_mode)) {
		for (size_t i = 0; i < sizeof(hf_files) / sizeof(hf_files[0]); i++) {
			snprintf(from, sizeof(from), "%s/%s", model->path, hf_files[i]);
			if (access(from, F_OK) != 0)
				continue;
			snprintf(to, sizeof(to), "%s/%s", dir, hf_files[i]);
			if (export_copy_file(from, to, err) != 0)
				return -1;
			export_note_file(files, n_files, hf_files[i]);
		}
		*tokenizer_file = "tokenizer.json";
		return 0;
	}
	snprintf(to, sizeof(to), "%s/%s", dir, EXPORT_GGUF_TOKENIZER_FILE);
	if (export_write_gguf_vocab(model->path, to, err) != 0)
		return -1;
	export_note_file(files, n_files, EXPORT_GGUF_TOKENIZER_FILE);
	*tokenizer_file = EXPORT_GGUF_TOKENIZER_FILE;
	return 0;
}
