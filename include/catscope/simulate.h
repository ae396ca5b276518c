/* Simulated quantization of a whole model: what the analysis's settings do to its
 * output. Every site's layers get W' = Q(W T^-1) (RTN or GPTQ as configured) and a
 * forward hook replaces each site input x by Q(T x) per token, so model_forward with
 * these blocks and hooks computes the fake-quantized model end to end. */
#ifndef CATSCOPE_SIMULATE_H
#define CATSCOPE_SIMULATE_H

#include "catscope/analysis.h"

struct simulation {
	const struct model *model;
	struct model_block *blocks;    /* quantized copies of every linear layer */
	struct transform *transforms;  /* one per site, index as in the analysis */
	struct quant_params act;       /* activation quantizer (bits 0: unquantized) */
	struct model_hooks hooks;
	void *storage;
};

/* Builds the quantized weights and transforms from the analysis's current settings
 * (needs the site statistics: the transforms and GPTQ use them). */
struct simulation *simulation_new(struct analysis *a, struct error *err);
void simulation_free(struct simulation *s);

#endif
