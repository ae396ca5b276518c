/* Simulated quantization of a whole model: what the analysis's settings do to its
 * output. Every site's layers get W' = Q(W T^-1) (RTN or GPTQ as configured) and a
 * forward hook replaces each site input x by Q(T x) per token, so model_forward with
 * these blocks and hooks computes the fake-quantized model end to end. */
#ifndef CATSCOPE_SIMULATE_H
#define CATSCOPE_SIMULATE_H

#include <stdbool.h>

#include "catscope/analysis.h"

/* Storage precision of the parts that stay unquantized, as an export stores them. */
enum simulation_storage { SIMULATION_F32, SIMULATION_F16, SIMULATION_BF16 };

struct simulation_options {
	/* Embeddings, final norm and output head rounded to this precision. */
	enum simulation_storage storage;
	/* Run q/k in Hugging Face's rotate-half order (rows permuted, RoPE on halves) when
	 * the source uses adjacent pairs, as an export in that order computes. */
	bool hf_rope_order;
};

/* F32 storage in the source's RoPE order: the model itself, only quantized. */
void simulation_options_default(struct simulation_options *opt);

struct simulation {
	const struct model *model;
	/* The simulated model: the source with its linear layers replaced, its unquantized
	 * parts rounded and its q/k order changed as the options request. Pass it to
	 * model_forward with blocks NULL and the hooks below. */
	struct model view;
	struct model_block *blocks;    /* quantized copies of every linear layer */
	struct transform *transforms;  /* one per site, index as in the analysis */
	struct quant_params act;       /* activation quantizer (bits 0: unquantized) */
	struct model_hooks hooks;
	void *storage;
	float *unquantized;            /* rounded embeddings, head and final norm, or NULL */
};

/* Builds the quantized weights and transforms from the analysis's current settings
 * (needs the site statistics: the transforms and GPTQ use them). */
struct simulation *simulation_new(struct analysis *a, struct error *err);
struct simulation *simulation_new_with(struct analysis *a, const struct simulation_options *opt,
				       struct error *err);
void simulation_free(struct simulation *s);

#endif
