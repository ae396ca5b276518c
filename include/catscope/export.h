/* Export of a fully quantized model, and the runtime that runs an exported directory.
 *
 * export_write turns an analysis (model, calibration statistics, one transform per
 * site, one quantizer) into a directory that holds the model a simulation computes:
 * every linear layer of the blocks as packed integer codes of W' = Q(W T^-1) with
 * their scales (the compressed-tensors "pack-quantized" layout), each site's transform
 * T = H . B . D in compact form, embeddings, norms and the output head unquantized, a
 * config.json and the tokenizer. man/catscope-export.5 documents every name.
 *
 * The directory appears atomically: it is written under a temporary name next to the
 * destination and renamed into place. An existing destination is replaced only with
 * force, and then also atomically (the old directory is renamed away, the new one in,
 * and only then is the old one removed).
 *
 * Loading: model_load() on an exported directory returns the model with its weights
 * dequantized (still in the transformed basis); export_runtime_open() adds the hooks
 * that apply each site's T online and quantize activations (and the KV cache), so that
 * model_forward(model, NULL, ..., &runtime->hooks) computes the exported model. */
#ifndef CATSCOPE_EXPORT_H
#define CATSCOPE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "catscope/analysis.h"
#include "catscope/model.h"
#include "catscope/quant.h"
#include "catscope/safetensors.h"

/* Default shard size: checkpoints above 2 GiB of tensor data are split. */
#define EXPORT_DEFAULT_SHARD_SIZE ((uint64_t)2 << 30)

/* The file every export has; its "catscope" object marks the directory as an export. */
#define EXPORT_CONFIG_FILE "config.json"
/* The vocabulary of a GGUF source, for which no tokenizer.json exists. */
#define EXPORT_GGUF_TOKENIZER_FILE "tokenizer.catscope.json"
#define EXPORT_FORMAT_VERSION 1

struct export_options {
	const char *calib_path;             /* recorded in the provenance; may be NULL */
	const char *session_path;           /* recorded in the provenance; may be NULL */
	enum safetensors_dtype dtype;       /* embeddings, norms, output head: F16, BF16 or F32 */
	int kv_bits;                        /* 0: KV cache unquantized; else 2..8 */
	uint64_t shard_size;                /* 0: never split */
	bool force;                         /* replace an existing destination */
	/* Keep q/k rows in the source's RoPE order (GGUF: adjacent pairs) instead of the
	 * Hugging Face halves order. Reordering is exact in real arithmetic but changes
	 * float rounding in attention, and 4-bit activations amplify that. With the source
	 * order the export computes bit for bit what a simulation in the source order
	 * computes (struct simulation_options.hf_rope_order false). */
	bool source_rope_order;
	/* For tests: fail, or raise SIGINT, once this many linear layers are built
	 * (negative: never). */
	int fail_after;
	int interrupt_after;
};

void export_options_default(struct export_options *opt);

struct export_summary {
	uint64_t bytes;          /* total size of the files written */
	int n_files;
	int n_shards;
	double seconds;
	int inexact_groups;      /* weight groups whose codes do not reproduce the simulation
				    bit for bit (0 expected) */
};

/* Writes the export of a into dir (see the top of this file). A SIGINT, SIGTERM or
 * SIGHUP during the export stops it at the next tensor and removes the temporary
 * directory; the function then fails with "interrupted". */
int export_write(struct analysis *a, const struct export_options *opt, const char *dir,
		 struct export_summary *summary, struct error *err);

/* KV-cache quantization: asymmetric, per token, one group per head (group = head_dim),
 * applied to the new keys (after RoPE) and values before they enter the cache. */
struct export_kv_quant {
	struct quant_params params;   /* bits 0: off */
};
void export_kv_quant_init(struct export_kv_quant *kv, int bits, int head_dim);
void export_kv_quant_apply(const struct export_kv_quant *kv, float *x, int n_tokens, int kv_dim);

/* Hooks that call inner's site hook (inner may be NULL) and quantize the KV cache; for
 * "catscope eval --calib --kv-bits" so that the simulation matches an export. */
struct export_hook_chain {
	const struct model_hooks *inner;
	struct export_kv_quant kv;
	struct model_hooks hooks;
};
void export_hook_chain_init(struct export_hook_chain *chain, const struct model_hooks *inner,
			    int kv_bits, int head_dim);

/* Returns true if dir is a directory whose config.json has a "catscope" object. */
bool export_is_directory(const char *dir);

/* The transforms and quantizers an exported model needs besides its weights. */
struct export_runtime {
	const struct model *model;
	int n_sites;
	struct transform *transforms;   /* one per site, index as in analysis_site_index */
	struct quant_params act;        /* activation quantizer (bits 0: unquantized) */
	struct export_kv_quant kv;
	struct model_hooks hooks;
};

/* Reads the transforms and quantizer settings of the export that model was loaded
 * from (model->path), checking every tensor's shape. Caller frees with
 * export_runtime_free(). Returns NULL with a message naming the file on failure. */
struct export_runtime *export_runtime_open(const struct model *model, struct error *err);
void export_runtime_free(struct export_runtime *rt); /* NULL is a no-op */

#endif
