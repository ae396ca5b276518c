/* Perplexity over a token stream, with the protocol of the GPTQ/QuaRot line of work:
 * non-overlapping windows of ctx tokens (the remainder dropped), each run on its own,
 * every position after the first of a window scored, PPL = exp(mean NLL). */
#ifndef CATSCOPE_EVAL_H
#define CATSCOPE_EVAL_H

#include <stdint.h>

#include "catscope/model.h"
#include "catscope/progress.h"

struct eval_result {
	int windows;
	uint64_t scored;      /* predictions scored: windows * (ctx - 1) */
	double mean_nll;      /* nats per scored token */
	double perplexity;
	double seconds;
	double tokens_per_second; /* tokens through the forward pass, per second */
};

/* Scores tokens[0..n) in windows of ctx. blocks and hooks are passed to
 * model_forward (NULL for the plain model). Fails if n < ctx, or when the progress's
 * cancel check (checked before each window) requests a stop. */
int eval_perplexity(const struct model *model, const struct model_block *blocks,
		    const struct model_hooks *hooks, const int32_t *tokens, size_t n, int ctx,
		    struct progress *progress, struct eval_result *result, struct error *err);

#endif
