/* Calibration statistics of one quantized input site: what the engine needs to know
 * about the activations that reach a group of linear layers. Produced by the
 * calibration part (accumulated over the forward pass or read from a cache) and
 * consumed by the diagnostics engine. */
#ifndef CATSCOPE_SITESTATS_H
#define CATSCOPE_SITESTATS_H

#include <stdint.h>

enum site_kind {
	SITE_ATTN_IN,  /* RMSNorm output before q, k, v (norm weight folded into them) */
	SITE_ATTN_OUT, /* concatenated head outputs before o */
	SITE_FFN_IN,   /* RMSNorm output before gate and up (norm weight folded) */
	SITE_FFN_DOWN, /* silu(gate) * up before down */
	SITE_KIND_COUNT
};

struct site_stats {
	int dim;                /* d, the input width of the site's layers */
	uint64_t n_tokens;      /* tokens accumulated */
	double *second_moment;  /* d x d, row-major: E[x x^T] (not centred) */
	double *mean;           /* d: E[x] */
	float *absmax;          /* d: max |x_i| over all tokens */
	double mean_sq_norm;    /* E ||x||^2 */
	double mean_sq_range_sym;  /* E[(2 max_i |x_i|)^2] over tokens */
	double mean_sq_range_asym; /* E[(max_i x_i - min_i x_i)^2] over tokens */
	int n_sample;           /* rows kept in sample */
	float *sample;          /* n_sample x d, row-major: a seeded reservoir sample of tokens */
	uint64_t nonfinite;     /* tokens that contained NaN or Inf (excluded from the sums) */
};

/* Returns "attn_in", "attn_out", "ffn_in" or "ffn_down". */
const char *site_kind_name(enum site_kind kind);

#endif
